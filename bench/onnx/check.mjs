// check.mjs: ONNX Runtime and fleet compute the same numbers on the same inputs.
//
//   node check.mjs embed    MODEL.onnx DUMP.json [--tolerance 1e-4]
//   node check.mjs classify MODEL.onnx DUMP.json [--tolerance 1e-5]
//
// DUMP.json is what `fleet-embed-bench --dump` or `fleet-classify-bench --dump` wrote:
// the inputs fleet ran and its outputs. This runs the same inputs through MODEL.onnx
// (export.mjs) on ONNX Runtime and prints the largest absolute difference per item and
// overall. embed: {"ids": [[...]], "vectors": [[...]]}, sequences of different lengths,
// sent as one batch padded with id 0 and an attention mask (so the export's mask and
// mean over kept tokens are checked too); classify: {"pixels": [[784 bytes]], "probs":
// [[10]]}, sent as pixel / 255.
//
// Exit code: 0 when every difference is within the tolerance, 1 when one is not (or the
// model could not be run), 2 on misuse.
import fs from 'node:fs';
import { parseArgs } from 'node:util';

import ort from 'onnxruntime-node';

let args;
try {
    args = parseArgs({ allowPositionals: true, options: { tolerance: { type: 'string' } } });
} catch (e) {
    console.error(`check.mjs: ${e.message}`);
    process.exit(2);
}
const [kind, modelPath, dumpPath] = args.positionals;
if (!['embed', 'classify'].includes(kind) || !modelPath || !dumpPath || args.positionals.length !== 3) {
    console.error('usage: node check.mjs embed|classify MODEL.onnx DUMP.json [--tolerance X]');
    process.exit(2);
}
const tol = Number(args.values.tolerance ?? (kind === 'embed' ? 1e-4 : 1e-5));
if (!(tol > 0)) {
    console.error('check.mjs: --tolerance: a number above 0');
    process.exit(2);
}

const dump = JSON.parse(fs.readFileSync(dumpPath, 'utf8'));
const session = await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });

let feeds, want, got, width;
if (kind === 'embed') {
    const n = dump.ids.length, T = Math.max(...dump.ids.map((s) => s.length));
    const ids = new BigInt64Array(n * T), mask = new BigInt64Array(n * T);
    dump.ids.forEach((s, i) => s.forEach((id, j) => {
        ids[i * T + j] = BigInt(id);
        mask[i * T + j] = 1n;
    }));
    feeds = { input_ids: new ort.Tensor('int64', ids, [n, T]), attention_mask: new ort.Tensor('int64', mask, [n, T]) };
    want = dump.vectors;
    got = (await session.run(feeds)).embedding.data;
    width = want[0].length;
} else {
    const n = dump.pixels.length;
    const img = new Float32Array(n * 784);
    dump.pixels.forEach((p, i) => p.forEach((v, j) => (img[i * 784 + j] = v / 255)));
    feeds = { image: new ort.Tensor('float32', img, [n, 1, 28, 28]) };
    want = dump.probs;
    got = (await session.run(feeds)).probs.data;
    width = 10;
}

let worst = 0;
const per = want.map((row, i) => {
    let m = 0;
    row.forEach((v, j) => (m = Math.max(m, Math.abs(v - got[i * width + j]))));
    worst = Math.max(worst, m);
    return m;
});
const what = kind === 'embed' ? `${want.length} sequences (lengths ${dump.ids.map((s) => s.length).join(', ')})` : `${want.length} images`;
console.log(`check ${kind}: ${what}: max |fleet - ort| = ${worst.toExponential(2)} (per item up to ${per.map((x) => x.toExponential(1)).slice(0, 8).join(' ')}${per.length > 8 ? ' ...' : ''}), tolerance ${tol}`);
if (!(worst <= tol)) {
    console.error(`check.mjs: fleet and ONNX Runtime disagree on ${modelPath}: ${worst} > ${tol}`);
    process.exit(1);
}
