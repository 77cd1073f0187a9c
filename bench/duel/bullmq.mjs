// bench/duel/bullmq.mjs: the BullMQ side of the duel (bench/duel/run.sh), one role per
// process so that duel.mjs can read each one's CPU from /proc on its own.
//
//   node bullmq.mjs add     --port P --jobs N --inflight 64 --input JSON
//        queue.add N jobs, 64 awaited at a time; prints one JSON line {secs, cpu_s}
//   node bullmq.mjs worker  --port P [--concurrency C]
//        a Worker whose processor returns its data; runs until SIGTERM
//   node bullmq.mjs latency --port P --jobs N [--rate R] [--warmup 10] --input JSON
//        add + job.waitUntilFinished(QueueEvents): one at a time (no --rate), or open
//        loop at R jobs/s (latency from the scheduled send); prints {n, p50_ms, p99_ms, ...}
//
// BullMQ is loaded through require() (its CommonJS build): that build finds the ioredis
// that package.json pins, which its ESM build cannot load by itself.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { drive, percentile } from './util.mjs';

const require = createRequire(import.meta.url);
const { Queue, Worker, QueueEvents } = require('bullmq');

const QUEUE = 'duel';

const { positionals, values: o } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string' },
    jobs: { type: 'string', default: '1000' },
    inflight: { type: 'string', default: '64' },
    concurrency: { type: 'string', default: '1' },
    rate: { type: 'string', default: '0' },
    input: { type: 'string', default: '{"text":"hello"}' },
    warmup: { type: 'string', default: '10' },
  },
});
const role = positionals[0];
const connection = { host: '127.0.0.1', port: Number(o.port) };
const jobs = Number(o.jobs);
const data = JSON.parse(o.input);

function cpuSeconds(since) {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

async function add() {
  const queue = new Queue(QUEUE, { connection });
  await queue.waitUntilReady();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  // Each lane awaits its add before the next one: `inflight` adds outstanding at a time.
  async function lane() {
    while (sent < jobs) {
      sent++;
      await queue.add('echo', data);
    }
  }
  await Promise.all(Array.from({ length: Number(o.inflight) }, lane));
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ jobs, secs, cpu_s: cpuSeconds(cpu0) }));
  await queue.close();
}

async function worker() {
  const w = new Worker(QUEUE, async (job) => job.data, {
    connection,
    concurrency: Number(o.concurrency),
  });
  await w.waitUntilReady();
  const stop = async () => {
    await w.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function latency() {
  const queue = new Queue(QUEUE, { connection });
  const events = new QueueEvents(QUEUE, { connection });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const rate = Number(o.rate);
  // A few jobs first, not counted, as fleet_client.mjs does. They also wait out the start
  // of QueueEvents: its waitUntilReady resolves before its first XREAD of the events
  // stream, and a job that finishes in between never reports, so these waits are short
  // and go on until one has seen its job finish.
  const warmDeadline = performance.now() + 20000;
  for (let i = 0, seen = false; i < Number(o.warmup) || !seen; i++) {
    if (performance.now() > warmDeadline) throw new Error('QueueEvents reported no finished job in 20 s');
    const job = await queue.add('echo', data);
    try {
      await job.waitUntilFinished(events, 1000);
      seen = true;
    } catch {
      /* not listening yet */
    }
  }
  const lat = [];
  let failed = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const one = async (scheduled) => {
    try {
      const job = await queue.add('echo', data);
      await job.waitUntilFinished(events, 30000);
      lat.push(performance.now() - scheduled);
    } catch {
      failed++;
    }
  };
  await drive(jobs, rate, t0, one);
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  console.log(JSON.stringify({
    n: lat.length, failed, secs, cpu_s: cpuSeconds(cpu0),
    p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99), max_ms: percentile(lat, 100),
  }));
  await events.close();
  await queue.close();
}

const roles = { add, worker, latency };
if (!roles[role] || !o.port) {
  console.error('usage: node bullmq.mjs add|worker|latency --port P [options]');
  process.exit(2);
}
roles[role]().catch((e) => {
  console.error(`bullmq.mjs ${role}: ${e.stack || e}`);
  process.exit(1);
});
