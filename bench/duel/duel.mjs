// bench/duel/duel.mjs: runs fleet and BullMQ side by side against one Redis and prints
// the figures of issue 12 (docs/benchmarks.md, "fleet vs BullMQ (the duel)"). Started by
// bench/duel/run.sh, which builds fleet, installs BullMQ and starts the Redis; every
// setting comes from the environment that run.sh passes on.
//
// Each round runs every phase for both systems, one after the other (fleet first in odd
// rounds, BullMQ first in even ones), with FLUSHALL and fresh processes before each run.
// It prints figures and never passes or fails on them.
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuOf, median } from './util.mjs';

const require = createRequire(import.meta.url);
const Redis = require('ioredis');

const env = process.env;
const HERE = path.dirname(new URL(import.meta.url).pathname);
const BIN = env.DUEL_BIN;
const TMP = env.DUEL_TMP;
const REDIS_PORT = Number(env.DUEL_REDIS_PORT);
const REDIS_PID = Number(env.DUEL_REDIS_PID);
const ROUNDS = Number(env.DUEL_ROUNDS || 3);
const JOBS = Number(env.DUEL_JOBS || 20000);
const DRAIN_JOBS = Number(env.DUEL_DRAIN_JOBS || 50000);
const LATENCY_JOBS = Number(env.DUEL_LATENCY_JOBS || 2000);
const LOAD_RATE = Number(env.DUEL_LOAD_RATE || 500);
const LOAD_SECS = Number(env.DUEL_LOAD_SECS || 5);
const INFLIGHT = Number(env.DUEL_INFLIGHT || 64);
const FLEET_WORKER_ARGS = (env.DUEL_FLEET_WORKER_ARGS || '').split(/\s+/).filter(Boolean);
// The 200-byte JSON input of every job, on both sides: {"text":"xxx...x"}.
const INPUT = JSON.stringify({ text: 'x'.repeat(200 - '{"text":""}'.length) });

// ------------------------------------------------------------------ processes -----------

const children = new Set();
let logSeq = 0;

// Starts a long-running process with its output in a log file under TMP; its pid goes to
// DUEL_PIDS too, so that run.sh can end it should this script die without cleaning up.
function start(name, cmd, args, childEnv) {
  const log = path.join(TMP, `${String(++logSeq).padStart(3, '0')}-${name}.log`);
  const fd = openSync(log, 'a');
  const p = spawn(cmd, args, { env: childEnv, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  p.log = log;
  p.label = name;
  p.exited = new Promise((resolve) => p.on('exit', (code, sig) => resolve({ code, sig })));
  p.on('error', () => {});
  children.add(p);
  p.exited.then(() => children.delete(p));
  if (env.DUEL_PIDS) appendFileSync(env.DUEL_PIDS, `${p.pid}\n`);
  return p;
}

function alive(p) {
  return p.exitCode === null && p.signalCode === null;
}

async function stop(p) {
  if (!p || !alive(p)) return;
  p.kill('SIGTERM');
  const done = await Promise.race([p.exited.then(() => true), sleep(10000).then(() => false)]);
  if (!done) {
    p.kill('SIGKILL');
    await p.exited;
  }
}

function tail(file, n = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

// Runs a command to its end; resolves with its stdout, rejects with its output's tail.
function run(name, cmd, args, childEnv, timeoutMs = 600000) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => reject(new Error(`${name}: ${e.message}`)));
    p.on('exit', (code, sig) => {
      clearTimeout(timer);
      children.delete(p);
      if (code === 0) resolve({ out, err });
      else reject(new Error(`${name} exited with ${code ?? sig}:\n${(out + err).trim().slice(-2000)}`));
    });
  });
}

function killAll(sig) {
  for (const p of children) if (alive(p)) p.kill(sig);
}
process.on('exit', () => killAll('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll('SIGTERM');
    process.exit(130);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, fn, timeoutMs, proc) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      /* not yet */
    }
    if (proc && !alive(proc)) throw new Error(`${what}: the process exited\n${tail(proc.log)}`);
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen within ${timeoutMs / 1000} s` +
        (proc ? `\n${tail(proc.log)}` : ''));
    }
    await sleep(50);
  }
}

// ------------------------------------------------------------------ Redis ---------------

const redis = new Redis({ host: '127.0.0.1', port: REDIS_PORT, lazyConnect: true });

function infoField(text, name) {
  const m = text.match(new RegExp(`^${name}:([^\\r\\n]*)`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function redisCpu() {
  const t = await redis.info('cpu');
  return infoField(t, 'used_cpu_sys') + infoField(t, 'used_cpu_user');
}

async function redisMemory() {
  return infoField(await redis.info('memory'), 'used_memory');
}

async function flush() {
  await redis.flushall();
}

// A snapshot of the clocks: wall time, Redis' CPU (INFO) and each named process' CPU.
async function mark(procs) {
  const cpu = {};
  for (const [name, pid] of Object.entries(procs)) cpu[name] = cpuOf(pid);
  return { t: performance.now() / 1000, redis: await redisCpu(), cpu };
}

// Cores each process used between two marks ("redis" from INFO cpu, the others from
// /proc), as "redis 0.81, gateway 0.45".
function cores(a, b, extra = {}) {
  const dt = b.t - a.t;
  const parts = [`redis ${((b.redis - a.redis) / dt).toFixed(2)}`];
  for (const name of Object.keys(b.cpu)) {
    const d = b.cpu[name] - a.cpu[name];
    if (Number.isFinite(d)) parts.push(`${name} ${(d / dt).toFixed(2)}`);
  }
  for (const [name, cpuS] of Object.entries(extra)) parts.push(`${name} ${(cpuS / dt).toFixed(2)}`);
  return `${parts.join(', ')} cores over ${dt.toFixed(2)} s`;
}

// Polls count() until it reaches n. The drain is timed from the first poll that sees a
// finished job to the one that sees n, so neither worker's start-up is counted.
async function waitDrain(what, count, n, proc) {
  const deadline = Date.now() + Math.max(120000, n * 2);
  let first = null;
  let firstCount = 0;
  for (;;) {
    const c = await count();
    const now = performance.now() / 1000;
    if (first === null && c > 0) {
      first = now;
      firstCount = c;
    }
    if (c >= n) {
      const secs = now - first;
      return { secs, rate: secs > 0 ? (n - firstCount) / secs : NaN };
    }
    if (!alive(proc)) throw new Error(`${what}: the worker exited\n${tail(proc.log)}`);
    if (Date.now() > deadline) throw new Error(`${what}: only ${c} of ${n} finished`);
    await sleep(10);
  }
}

// ------------------------------------------------------------------ fleet ---------------

// The environment of fleet's processes: every FLEET_* of the caller's removed, so that
// the gateway and the worker run with their defaults.
function fleetEnv(extra) {
  const e = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('FLEET_')) e[k] = v;
  return { ...e, FLEET_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`, ...extra };
}

const fleet = {
  name: 'fleet',

  // A fresh gateway on the flushed Redis, and an admin tenant (API keys on, as in
  // production; an admin key reads the global /v1/stats).
  async up() {
    const port = await freePort();
    const gw = start('fleet-gateway', path.join(BIN, 'fleet-gateway'), [],
      fleetEnv({ FLEET_LISTEN: `127.0.0.1:${port}`, FLEET_MODELS: 'echo' }));
    const url = `http://127.0.0.1:${port}`;
    await waitFor('fleet-gateway /readyz', async () => (await fetch(`${url}/readyz`)).status === 200,
      20000, gw);
    const { out } = await run('fleetctl tenant add', path.join(BIN, 'fleetctl'),
      ['--redis-url', `redis://127.0.0.1:${REDIS_PORT}`, '--json', 'tenant', 'add', 'duel', '--admin'],
      fleetEnv({}));
    const key = JSON.parse(out).api_key;
    if (!key) throw new Error(`fleetctl tenant add printed no api_key: ${out}`);
    return { gw, url, key, procs: { gateway: gw.pid } };
  },

  async down(ctx) {
    await stop(ctx.worker);
    await stop(ctx.gw);
  },

  // fleet-bench submit: exactly n POST /v1/jobs over INFLIGHT keep-alive connections.
  async submit(ctx, n) {
    const { out } = await run('fleet-bench submit', path.join(BIN, 'fleet-bench'),
      ['--url', ctx.url, '--api-key', ctx.key, '--connections', String(INFLIGHT),
        '--requests', String(n), '--input', INPUT, 'submit'], fleetEnv({}));
    const m = out.match(/responses: (\d+) in ([\d.]+) s = \d+ requests\/s \(202: (\d+)/);
    const cpu = out.match(/fleet-bench itself: ([\d.]+) s CPU/);
    if (!m) throw new Error(`fleet-bench printed no figures:\n${out}`);
    const accepted = Number(m[3]);
    if (accepted !== n) throw new Error(`fleet accepted ${accepted} of ${n} jobs:\n${out}`);
    return { secs: Number(m[2]), cpuS: cpu ? Number(cpu[1]) : NaN, client: 'fleet-bench' };
  },

  startWorker(ctx, { debug = false } = {}) {
    const extra = debug ? { FLEET_LOG_LEVEL: 'debug' } : {};
    ctx.worker = start('fleet-worker', path.join(BIN, 'fleet-worker'),
      ['--model', 'echo', ...FLEET_WORKER_ARGS], fleetEnv(extra));
    ctx.procs.worker = ctx.worker.pid;
    return ctx.worker;
  },

  // Jobs of the echo model in a final state, from GET /v1/stats.
  async finished(ctx) {
    const res = await fetch(`${ctx.url}/v1/stats`, { headers: { Authorization: `Bearer ${ctx.key}` } });
    const m = (await res.json()).models?.echo ?? {};
    return (m.succeeded ?? 0) + (m.failed ?? 0) + (m.cancelled ?? 0);
  },

  async latency(ctx, jobs, rate) {
    const { out } = await run('fleet_client.mjs', process.execPath,
      [path.join(HERE, 'fleet_client.mjs'), '--url', ctx.url, '--api-key', ctx.key,
        '--jobs', String(jobs), '--rate', String(rate), '--input', INPUT], env);
    return JSON.parse(out.trim().split('\n').pop());
  },

  async waitWorkerReady(ctx) {
    // Registered workers show in /v1/models; the first measured job must not wait for
    // the worker's start-up.
    await waitFor('the fleet worker in /v1/models', async () => {
      const res = await fetch(`${ctx.url}/v1/models`, { headers: { Authorization: `Bearer ${ctx.key}` } });
      const text = await res.text();
      return /"workers"\s*:\s*[1-9]/.test(text);
    }, 15000, ctx.worker).catch(() => sleep(1000));
  },
};

// ------------------------------------------------------------------ BullMQ --------------

const BULL = path.join(HERE, 'bullmq.mjs');

const bullmq = {
  name: 'BullMQ',

  async up() {
    return { procs: {} };
  },

  async down(ctx) {
    await stop(ctx.worker);
  },

  async submit(ctx, n) {
    const { out } = await run('bullmq.mjs add', process.execPath,
      [BULL, 'add', '--port', String(REDIS_PORT), '--jobs', String(n), '--inflight', String(INFLIGHT),
        '--input', INPUT], env);
    const r = JSON.parse(out.trim().split('\n').pop());
    return { secs: r.secs, cpuS: r.cpu_s, client: 'node' };
  },

  startWorker(ctx, { concurrency = 1 } = {}) {
    ctx.worker = start('bullmq-worker', process.execPath,
      [BULL, 'worker', '--port', String(REDIS_PORT), '--concurrency', String(concurrency)], env);
    ctx.procs.worker = ctx.worker.pid;
    return ctx.worker;
  },

  async finished() {
    const [c, f] = await Promise.all([redis.zcard('bull:duel:completed'), redis.zcard('bull:duel:failed')]);
    return c + f;
  },

  async latency(ctx, jobs, rate) {
    const { out } = await run('bullmq.mjs latency', process.execPath,
      [BULL, 'latency', '--port', String(REDIS_PORT), '--jobs', String(jobs), '--rate', String(rate),
        '--input', INPUT], env);
    return JSON.parse(out.trim().split('\n').pop());
  },

  async waitWorkerReady() {
    // The Worker is waiting on Redis once its blocking connection is open; the warm-up
    // jobs of bullmq.mjs latency cover the rest.
    await sleep(500);
  },
};

// ------------------------------------------------------------------ phases --------------

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', {
  minimumFractionDigits: d, maximumFractionDigits: d }) : '-');

// 1, 2 and 4: n jobs submitted with INFLIGHT in flight and no worker (submit rate, Redis
// memory per queued job), then drained by one worker (Redis CPU per job over both).
async function lifecycle(sys) {
  await flush();
  const ctx = await sys.up();
  try {
    await sleep(300);
    const mem0 = await redisMemory();
    const m0 = await mark(ctx.procs);
    const sub = await sys.submit(ctx, JOBS);
    const m1 = await mark(ctx.procs);
    const mem1 = await redisMemory();
    const w = sys.startWorker(ctx, { concurrency: 64 });
    const m1w = await mark(ctx.procs);
    const dr = await waitDrain(`${sys.name} lifecycle drain`, () => sys.finished(ctx), JOBS, w);
    const m2 = await mark(ctx.procs);
    const r = {
      cpuUs: ((m2.redis - m0.redis) / JOBS) * 1e6,
      memB: (mem1 - mem0) / JOBS,
      submitRate: JOBS / sub.secs,
    };
    console.log(`   ${sys.name.padEnd(6)}  Redis CPU ${fmt(r.cpuUs, 1)} µs/job, memory ${fmt(r.memB)} B/job, ` +
      `submit ${fmt(r.submitRate)}/s`);
    console.log(`           submit: ${cores(m0, m1, { [sub.client]: sub.cpuS })}`);
    console.log(`           drain:  ${cores(m1w, m2)} (${fmt(dr.rate)} jobs/s)`);
    return r;
  } finally {
    await sys.down(ctx);
  }
}

// 3: one worker drains DRAIN_JOBS queued jobs.
async function drain(sys) {
  await flush();
  const ctx = await sys.up();
  try {
    await sys.submit(ctx, DRAIN_JOBS);
    const m0 = await mark(ctx.procs);
    const w = sys.startWorker(ctx, { concurrency: 64 });
    ctx.procs.worker = w.pid;
    m0.cpu.worker = 0;
    const dr = await waitDrain(`${sys.name} drain`, () => sys.finished(ctx), DRAIN_JOBS, w);
    const m1 = await mark(ctx.procs);
    console.log(`   ${sys.name.padEnd(6)}  ${fmt(dr.rate)} jobs/s (${fmt(dr.secs, 2)} s); ${cores(m0, m1)}`);
    // Under this load the worker's batches should be full (its --max-batch).
    if (sys === fleet && w.log) {
      console.log(`           batches: ${describeBatches(batchSizes(w.log, 0, 'batch done'), 'batch done')}`);
    }
    return { drainRate: dr.rate };
  } finally {
    await sys.down(ctx);
  }
}

// The sizes of the batches the fleet worker logged from byte `from` of its log on: lines
// whose msg is `msg` ("running a batch" at debug level, "batch done" at info), field jobs.
function batchSizes(log, from, msg = 'running a batch') {
  const sizes = [];
  let text = '';
  try {
    text = readFileSync(log, 'utf8').slice(from);
  } catch {
    return sizes;
  }
  for (const line of text.split('\n')) {
    if (!line.includes(msg)) continue;
    try {
      const j = JSON.parse(line);
      if (j.msg === msg) sizes.push(Number(j.jobs));
    } catch {
      /* a line cut short by the log's end */
    }
  }
  return sizes;
}

function describeBatches(sizes, msg = 'running a batch') {
  if (sizes.length === 0) return `the worker logged no '${msg}' lines: batch sizes unknown`;
  const hist = new Map();
  for (const s of sizes) hist.set(s, (hist.get(s) ?? 0) + 1);
  const keys = [...hist.keys()].sort((a, b) => a - b);
  const total = sizes.reduce((a, b) => a + b, 0);
  return `${fmt(sizes.length)} batches, ${fmt(total / sizes.length, 2)} jobs per batch on average, ` +
    `max ${keys[keys.length - 1]}; size:count ${keys.map((k) => `${k}:${hist.get(k)}`).join(' ')}`;
}

// 5: a lone client, one job at a time, then an open loop at LOAD_RATE jobs/s, against one
// worker with its default settings (fleet's at debug level, to log its batch sizes).
async function latency(sys) {
  await flush();
  const ctx = await sys.up();
  try {
    const w = sys.startWorker(ctx, { debug: true });
    await sys.waitWorkerReady(ctx);
    const m0 = await mark(ctx.procs);
    const lone = await sys.latency(ctx, LATENCY_JOBS, 0);
    const m1 = await mark(ctx.procs);
    const logFrom = w.log && sys === fleet ? statSync(w.log).size : 0;
    const load = await sys.latency(ctx, Math.round(LOAD_RATE * LOAD_SECS), LOAD_RATE);
    const m2 = await mark(ctx.procs);
    const bad = (r) => (r.failed ? ` (${r.failed} FAILED)` : '');
    console.log(`   ${sys.name.padEnd(6)}  lone client: p50 ${fmt(lone.p50_ms, 2)} ms, p99 ${fmt(lone.p99_ms, 2)} ms ` +
      `over ${fmt(lone.n)} jobs${bad(lone)}; ${cores(m0, m1, { client: lone.cpu_s })}`);
    console.log(`           at ${LOAD_RATE} jobs/s: p50 ${fmt(load.p50_ms, 2)} ms, p99 ${fmt(load.p99_ms, 2)} ms ` +
      `over ${fmt(load.n)} jobs${bad(load)}; ${cores(m1, m2, { client: load.cpu_s })}`);
    if (sys === fleet) console.log(`           batches under load: ${describeBatches(batchSizes(w.log, logFrom))}`);
    return { loneP50: lone.p50_ms, loneP99: lone.p99_ms, loadP50: load.p50_ms, loadP99: load.p99_ms };
  } finally {
    await sys.down(ctx);
  }
}

// ------------------------------------------------------------------ report --------------

// [key, label, unit, decimals, goal of issue 12 as a ratio fleet/BullMQ or a note]
const FIGURES = [
  ['cpuUs', 'Redis CPU per job lifecycle', 'µs', 1, '<= 0.5'],
  ['memB', 'Redis memory per queued job', 'B', 0, '<= 0.6'],
  ['drainRate', `one worker draining ${fmt(DRAIN_JOBS)} jobs`, 'jobs/s', 0, '>= 1.5'],
  ['submitRate', `submit, ${INFLIGHT} in flight`, 'jobs/s', 0, '>= 1'],
  ['loneP50', 'lone client p50', 'ms', 2, 'fleet <= 1 ms'],
  ['loneP99', 'lone client p99', 'ms', 2, ''],
  ['loadP50', `at ${LOAD_RATE} jobs/s p50`, 'ms', 2, ''],
  ['loadP99', `at ${LOAD_RATE} jobs/s p99`, 'ms', 2, ''],
];

function table(title, a, b) {
  console.log(title);
  console.log(`   ${'figure'.padEnd(36)}${'fleet'.padStart(16)}${'BullMQ'.padStart(16)}${'fleet/BullMQ'.padStart(14)}   goal`);
  for (const [key, label, unit, d, goal] of FIGURES) {
    const x = a[key];
    const y = b[key];
    const ratio = Number.isFinite(x) && Number.isFinite(y) && y !== 0 ? (x / y).toFixed(2) : '-';
    console.log(`   ${label.padEnd(36)}${`${fmt(x, d)} ${unit}`.padStart(16)}${`${fmt(y, d)} ${unit}`.padStart(16)}` +
      `${ratio.padStart(14)}   ${goal}`);
  }
}

async function main() {
  await redis.connect();
  const ver = (await redis.info('server')).match(/^redis_version:(\S+)/m)?.[1] ?? '?';
  const bullVersion = require('bullmq/package.json').version;
  console.log(`== the duel: fleet vs BullMQ ${bullVersion} on one redis-server ${ver} ` +
    `(port ${REDIS_PORT}, pid ${REDIS_PID}, no persistence)`);
  console.log(`rounds ${ROUNDS}; jobs ${fmt(JOBS)} (lifecycle, memory, submit), ${fmt(DRAIN_JOBS)} (drain), ` +
    `${fmt(LATENCY_JOBS)} (lone client), ${LOAD_RATE}/s for ${LOAD_SECS} s (load); ${INFLIGHT} in flight; ` +
    `input ${INPUT.length} bytes of JSON`);
  console.log(`fleet: one fleet-gateway, one fleet-worker --model echo${FLEET_WORKER_ARGS.length ? ` ${FLEET_WORKER_ARGS.join(' ')}` : ''} ` +
    '(defaults otherwise), submits from fleet-bench (C, HTTP keep-alive) and latency from node (Prefer: wait=30)');
  console.log('BullMQ: one Worker process (concurrency 64 to drain, default 1 for latency), ' +
    'queue.add from node, latency with add + waitUntilFinished(QueueEvents)');
  console.log(`processes' logs: ${TMP}`);

  const per = { fleet: [], BullMQ: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 ? [fleet, bullmq] : [bullmq, fleet];
    // Other work on the machine moves the throughput figures: the load average says how much.
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`\n== round ${round} of ${ROUNDS} (${order[0].name} first; load average ${load})`);
    const res = { fleet: {}, BullMQ: {} };
    const phases = [
      [`-- lifecycle: ${fmt(JOBS)} jobs submitted with ${INFLIGHT} in flight, no worker; then one worker drains them`, lifecycle],
      [`-- drain: one worker, ${fmt(DRAIN_JOBS)} queued jobs`, drain],
      [`-- latency: lone client (${fmt(LATENCY_JOBS)} jobs, one at a time), then ${LOAD_RATE} jobs/s open loop; worker defaults`, latency],
    ];
    for (const [title, phase] of phases) {
      console.log(title);
      for (const sys of order) Object.assign(res[sys.name], await phase(sys));
    }
    per.fleet.push(res.fleet);
    per.BullMQ.push(res.BullMQ);
    table(`-- round ${round}`, res.fleet, res.BullMQ);
  }
  if (ROUNDS > 1) {
    const med = (rows) => Object.fromEntries(FIGURES.map(([k]) => [k, median(rows.map((r) => r[k]))]));
    console.log('');
    table(`== medians of ${ROUNDS} rounds (the ratio is of the medians)`, med(per.fleet), med(per.BullMQ));
  }
  await redis.quit();
}

main().catch((e) => {
  console.error(`\nbench/duel: ${e.message}`);
  killAll('SIGTERM');
  process.exit(1);
});
