// bench/duel/util.mjs: small helpers shared by the duel's scripts.
import { readFileSync } from 'node:fs';

// Nearest-rank percentile of an ascending array (p in 0..100); NaN when empty.
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// USER_HZ, what /proc/<pid>/stat counts in: run.sh passes `getconf CLK_TCK`.
const CLK_TCK = Number(process.env.DUEL_CLK_TCK) || 100;

// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; NaN once
// it is gone. The command name may hold spaces and parentheses: fields count from the
// last ')'.
export function cpuOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of stat(5)
  } catch {
    return NaN;
  }
}

// Runs one(scheduled) for `jobs` jobs: one after another when rate <= 0 (a lone client),
// else open loop: job i is due at t0 + i/rate whatever the earlier ones are doing, and
// its latency counts from that moment, so a stall shows in the figures. Returns when
// every job has ended.
export async function drive(jobs, rate, t0, one) {
  if (rate <= 0) {
    for (let i = 0; i < jobs; i++) await one(performance.now());
    return;
  }
  const pending = [];
  for (let i = 0; i < jobs; i++) {
    const due = t0 + (i * 1000) / rate;
    const ahead = due - performance.now();
    if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
    pending.push(one(due));
  }
  await Promise.all(pending);
}
