// bench.mjs: ONNX Runtime's speed on a model export.mjs wrote, printed in the columns of
// fleet-embed-bench and fleet-classify-bench (bench/onnx/run.sh puts them side by side).
//
//   node bench.mjs embed    MODEL.onnx [--threads N] [--batches 1,8,64] [--tokens 128] [--seconds 3]
//   node bench.mjs classify MODEL.onnx [--threads N] [--batches 1,8,64,256] [--seconds 3]
//
// The session is ONNX Runtime at its best on a CPU: the CPU execution provider, every
// graph optimisation on ('all'), sequential execution, one inter-op thread and
// --threads intra-op threads (default 1), the memory arena and patterns on (defaults).
// For each batch size: one warm-up run of that shape, then repeated runs for about
// --seconds (at least 3), and one line: backend "ort", batch, (tokens,) items/s, the
// median ms per batch (items/s = batch / median), the runs, and cpu%: the process's CPU
// time over the wall time of those runs (100 per busy core; ONNX Runtime's waiting
// threads spin, and count), which shows how many threads really worked. Every embed sequence is exactly
// --tokens ids ([CLS] = 2, random ids in [1000, 30522), [SEP] = 3) with an attention mask
// of ones, as fleet-embed-bench's are; classify images are random bytes / 255.
//
// Exit code: 0 when it ran, 1 when the model could not be run, 2 on misuse.
import { parseArgs } from 'node:util';

import ort from 'onnxruntime-node';

const USAGE =
    'usage: node bench.mjs embed|classify MODEL.onnx [--threads N] [--batches 1,8,64] [--tokens 128] [--seconds 3]';

function misuse(msg) {
    console.error(`bench.mjs: ${msg}\n${USAGE}`);
    process.exit(2);
}

let args;
try {
    args = parseArgs({
        allowPositionals: true,
        options: {
            threads: { type: 'string', default: '1' },
            batches: { type: 'string' },
            tokens: { type: 'string', default: '128' },
            seconds: { type: 'string', default: '3' },
        },
    });
} catch (e) {
    misuse(e.message);
}
const [kind, modelPath] = args.positionals;
if (!['embed', 'classify'].includes(kind) || !modelPath || args.positionals.length !== 2) misuse('a kind and a model');
const whole = (name, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) misuse(`--${name}: an integer in [${lo}, ${hi}]`);
    return n;
};
const threads = whole('threads', args.values.threads, 1, 1024);
const tokens = whole('tokens', args.values.tokens, 2, 100000);
const seconds = whole('seconds', args.values.seconds, 0, 3600);
const batches = (args.values.batches ?? (kind === 'embed' ? '1,8,64' : '1,8,64,256'))
    .split(',')
    .map((b) => whole('batches', b, 1, 100000));

// A fixed PRNG (xorshift32) for the inputs: their values do not change the work.
let seed = 7;
const rand = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
};

function feeds(batch) {
    if (kind === 'embed') {
        const ids = new BigInt64Array(batch * tokens);
        for (let s = 0; s < batch; s++) {
            ids[s * tokens] = 2n;
            for (let j = 1; j < tokens - 1; j++) ids[s * tokens + j] = BigInt(1000 + Math.floor(rand() * 29522));
            ids[s * tokens + tokens - 1] = 3n;
        }
        const mask = new BigInt64Array(batch * tokens).fill(1n);
        return {
            input_ids: new ort.Tensor('int64', ids, [batch, tokens]),
            attention_mask: new ort.Tensor('int64', mask, [batch, tokens]),
        };
    }
    const img = new Float32Array(batch * 784);
    for (let i = 0; i < img.length; i++) img[i] = Math.floor(rand() * 256) / 255;
    return { image: new ort.Tensor('float32', img, [batch, 1, 28, 28]) };
}

let session;
try {
    session = await ort.InferenceSession.create(modelPath, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
    });
} catch (e) {
    console.error(`bench.mjs: ${modelPath}: ${e.message}`);
    process.exit(1);
}

const unit = kind === 'embed' ? 'sentences/s' : 'images/s';
const pad = (s, n) => String(s).padStart(n);
console.log(
    `${'backend'.padEnd(8)} ${pad('batch', 6)}${kind === 'embed' ? ` ${pad('tokens', 7)}` : ''} ${pad(unit, 12)} ${pad('ms/batch(med)', 14)} ${pad('runs', 6)} ${pad('cpu%', 5)}`,
);
for (const batch of batches) {
    const f = feeds(batch);
    await session.run(f); // warm-up: the first run of a shape plans its memory
    const times = [];
    const start = performance.now(), cpu0 = process.cpuUsage();
    do {
        const t = performance.now();
        await session.run(f);
        times.push((performance.now() - t) / 1e3);
    } while (times.length < 3 || performance.now() - start < seconds * 1e3);
    const cpu = process.cpuUsage(cpu0);
    const busy = (100 * (cpu.user + cpu.system)) / 1e3 / (performance.now() - start);
    times.sort((a, b) => a - b);
    const n = times.length;
    const med = n % 2 ? times[(n - 1) / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
    console.log(
        `${'ort'.padEnd(8)} ${pad(batch, 6)}${kind === 'embed' ? ` ${pad(tokens, 7)}` : ''} ${pad((batch / med).toFixed(1), 12)} ${pad((med * 1e3).toFixed(kind === 'embed' ? 2 : 3), 14)} ${pad(n, 6)} ${pad(busy.toFixed(0), 5)}`,
    );
}
