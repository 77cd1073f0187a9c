// bench/duel/fleet_client.mjs: a fleet client that waits for its jobs, the counterpart of
// `bullmq.mjs latency` (the same runtime on both sides of the latency figures).
//
//   node fleet_client.mjs --url http://127.0.0.1:P --api-key K --jobs N [--rate R]
//                         [--warmup 10] --input JSON
//
// Each job is POST /v1/jobs with `Prefer: wait=30`, answered 200 with its result once it
// is final. Without --rate one job at a time; with it, an open loop at R jobs/s whose
// latency counts from each job's scheduled send. Prints one JSON line
// {n, failed, secs, cpu_s, p50_ms, p99_ms, max_ms}.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { drive, percentile } from './util.mjs';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string' },
    'api-key': { type: 'string', default: '' },
    jobs: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '0' },
    input: { type: 'string', default: '{"text":"hello"}' },
    warmup: { type: 'string', default: '10' },
    model: { type: 'string', default: 'echo' },
  },
});
const url = new URL(o.url);
const body = JSON.stringify({ model: o.model, input: JSON.parse(o.input) });
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const headers = {
  'Content-Type': 'application/json',
  'Content-Length': Buffer.byteLength(body),
  Prefer: 'wait=30',
};
if (o['api-key']) headers.Authorization = `Bearer ${o['api-key']}`;

let firstError = null;

function submit() {
  return new Promise((resolve) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: '/v1/jobs', method: 'POST', agent, headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          // 200 with a succeeded job is the only success: a 202 means the wait ran out.
          const ok = res.statusCode === 200 && /"status"\s*:\s*"succeeded"/.test(text);
          if (!ok && !firstError) firstError = `${res.statusCode} ${text.slice(0, 200)}`;
          resolve(ok);
        });
      },
    );
    req.on('error', (e) => {
      if (!firstError) firstError = String(e);
      resolve(false);
    });
    req.end(body);
  });
}

const jobs = Number(o.jobs);
const rate = Number(o.rate);
// A few jobs first, not counted: the connection, the gateway's auth cache and the
// worker's first claim are set up before the measured ones.
for (let i = 0; i < Number(o.warmup); i++) await submit();
firstError = null;
const lat = [];
let failed = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const one = async (scheduled) => {
  if (await submit()) lat.push(performance.now() - scheduled);
  else failed++;
};
await drive(jobs, rate, t0, one);
const secs = (performance.now() - t0) / 1000;
const u = process.cpuUsage(cpu0);
lat.sort((a, b) => a - b);
if (firstError) console.error(`fleet_client: first failure: ${firstError}`);
console.log(JSON.stringify({
  n: lat.length, failed, secs, cpu_s: (u.user + u.system) / 1e6,
  p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99), max_ms: percentile(lat, 100),
}));
agent.destroy();
