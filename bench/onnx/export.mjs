// export.mjs: writes fleet's two CPU models as ONNX graphs from the very weights fleet
// loads, so ONNX Runtime and fleet run the same model (bench/onnx/run.sh).
//
//   node export.mjs embed MODEL_DIR OUT.onnx       the BERT encoder of worker/embed
//   node export.mjs embed-fused MODEL_DIR OUT.onnx the same with ONNX Runtime's operators
//   node export.mjs classify WEIGHTS OUT.onnx      the CNN of worker/classify
//
// embed: MODEL_DIR is a sentence-transformers BERT directory (config.json, modules.json,
// model.safetensors with all-MiniLM-L6-v2's tensor names, with or without "bert."), as
// tests/lib/bert_gen.c writes it. The graph is what bert_cpu.h describes, spelled as
// PyTorch's exporter spells a Hugging Face BERT at opset 17: inputs input_ids and
// attention_mask, int64 [batch, tokens]; word + position + token type 0 embeddings,
// LayerNormalization; per layer query, key and value as three MatMul + Add, heads by
// Reshape/Transpose, scores / sqrt(head_dim) + (1 - mask) * -10000, Softmax, the output
// dense + residual + LayerNormalization, the intermediate dense, GELU as x/2 (1 +
// erf(x / sqrt 2)), the output dense + residual + LayerNormalization; then the mean over
// the tokens the mask keeps and, when modules.json lists Normalize, v / max(||v||, 1e-12).
// Output "embedding", float [batch, hidden]. With a mask of all ones (every sequence full
// length, as fleet-embed-bench's are) this is exactly fleet's computation; ONNX Runtime's
// graph optimiser fuses some of these patterns into its own kernels (at level 'all' on
// ONNX Runtime 1.31: the bias + GELU and some MatMuls, not the attention nor the
// residual + LayerNorm).
//
// embed-fused: the same model written with ONNX Runtime's contrib operators for BERT, as
// its Python transformers optimiser (onnxruntime.transformers.optimizer) leaves a BERT
// export: per layer one com.microsoft.Attention (query, key and value weights side by side
// in one [hidden, 3 hidden] matrix, the mask as int32 [batch, tokens]), MatMul +
// SkipLayerNormalization (residual + bias + LayerNorm) after the attention and after the
// feed-forward, MatMul + BiasGelu (the exact erf GELU) between. Same inputs and output.
//
// classify: WEIGHTS is models/classify/model.safetensors (cnn.h): input "image", float
// [batch, 1, 28, 28] holding pixel / 255; Conv 3x3 pad 1 (1 -> 16), Relu, MaxPool 2x2
// stride 2, Conv 3x3 pad 1 (16 -> 32), Relu, MaxPool, Flatten (channel, row, column), Gemm
// with fc.weight transposed, Softmax; output "probs", float [batch, 10].
//
// Only float32 weights are read (what bert_gen.c and the trainer write); anything else is
// refused rather than converted.
import fs from 'node:fs';
import path from 'node:path';

import { DT, Graph, f32, modelBytes } from './onnx_writer.mjs';

const OPSET = 17; // LayerNormalization is there; GELU is the Erf subgraph PyTorch emits

// ------------------------------------------------------------------ safetensors ---------

// The tensors of a safetensors file: {name: {shape, data: Float32Array}}.
function readSafetensors(file) {
    const buf = fs.readFileSync(file);
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
    const base = 8 + hlen;
    const out = {};
    for (const [name, t] of Object.entries(header)) {
        if (name === '__metadata__') continue;
        if (t.dtype !== 'F32') throw new Error(`${file}: ${name} is ${t.dtype}; only F32 is exported`);
        const [a, b] = t.data_offsets;
        const bytes = buf.subarray(base + a, base + b);
        // A copy: the file's offsets need not be 4-byte aligned in the Buffer's memory.
        const data = new Float32Array(bytes.length / 4);
        Buffer.from(data.buffer).set(bytes);
        const n = t.shape.reduce((x, y) => x * y, 1);
        if (n !== data.length) throw new Error(`${file}: ${name}: shape ${t.shape} holds ${n} values, not ${data.length}`);
        out[name] = { shape: t.shape, data };
    }
    return out;
}

// w [rows, cols] row-major -> its transpose [cols, rows].
function transpose(w, rows, cols) {
    const t = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
    return t;
}

// ------------------------------------------------------------------ embed ---------------

function exportEmbed(dir, fused) {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const modules = JSON.parse(fs.readFileSync(path.join(dir, 'modules.json'), 'utf8'));
    const normalize = modules.some((m) => m.type === 'sentence_transformers.models.Normalize');
    const st = readSafetensors(path.join(dir, 'model.safetensors'));
    const prefix = st['bert.embeddings.word_embeddings.weight'] ? 'bert.' : '';
    const T = (name) => {
        const t = st[prefix + name];
        if (!t) throw new Error(`${dir}: tensor ${prefix + name} missing`);
        return t;
    };
    const h = cfg.hidden_size, heads = cfg.num_attention_heads, d = h / heads;
    const inter = cfg.intermediate_size, eps = cfg.layer_norm_eps ?? 1e-12;

    const g = new Graph('fleet_embed');
    const ids = g.input('input_ids', DT.INT64, ['batch', 'tokens']);
    const mask = g.input('attention_mask', DT.INT64, ['batch', 'tokens']);

    const one = fused ? null : g.f32('one', [], [1]);
    const layerNorm = (x, base) =>
        g.node('LayerNormalization', [x, g.f32(`${base}.w`, [h], T(`${base}.weight`).data), g.f32(`${base}.b`, [h], T(`${base}.bias`).data)], {
            axis: -1,
            epsilon: f32(eps),
        });
    // y = x W^T + b, W [out, in] as the checkpoint holds it.
    const linear = (x, base, inDim, outDim) => {
        const w = g.f32(`${base}.wT`, [inDim, outDim], transpose(T(`${base}.weight`).data, outDim, inDim));
        return g.node('Add', [g.node('MatMul', [x, w]), g.f32(`${base}.b`, [outDim], T(`${base}.bias`).data)]);
    };

    // Embeddings: word rows, positions 0 .. tokens-1, token type 0.
    const word = g.node('Gather', [g.f32('word', T('embeddings.word_embeddings.weight').shape, T('embeddings.word_embeddings.weight').data), ids], { axis: 0 });
    const tokens = g.node('Shape', [ids], { start: 1, end: 2 });
    const posTable = g.f32('position', T('embeddings.position_embeddings.weight').shape, T('embeddings.position_embeddings.weight').data);
    const pos = g.node('Slice', [posTable, g.i64('zero', [0]), tokens, g.i64('axis0', [0])]);
    const type0 = g.f32('type0', [h], T('embeddings.token_type_embeddings.weight').data.subarray(0, h));
    let x = g.node('Add', [g.node('Add', [word, pos]), type0]);
    x = layerNorm(x, 'embeddings.LayerNorm');

    // The additive mask [batch, 1, 1, tokens]: 0 where kept, -10000 where padded.
    const maskF = g.node('Cast', [mask], { to: DT.FLOAT });
    const ext = fused ? null : g.node('Mul', [g.node('Sub', [one, g.node('Unsqueeze', [maskF, g.i64('axes12', [1, 2])])]), g.f32('neg', [], [-10000])]);

    const maskI = fused ? g.node('Cast', [mask], { to: DT.INT32 }) : null;
    // y = x W^T (no bias: the fused operator after it adds it).
    const matmul = (x, base, inDim, outDim) =>
        g.node('MatMul', [x, g.f32(`${base}.wT`, [inDim, outDim], transpose(T(`${base}.weight`).data, outDim, inDim))]);
    const bias = (base, n) => g.f32(`${base}.b`, [n], T(`${base}.bias`).data);
    const skipNorm = (x, skip, base, lnBase) =>
        g.node('com.microsoft.SkipLayerNormalization', [x, skip, g.f32(`${lnBase}.w`, [h], T(`${lnBase}.weight`).data), g.f32(`${lnBase}.b`, [h], T(`${lnBase}.bias`).data), bias(base, h)], {
            epsilon: f32(eps),
        });

    for (let l = 0; l < cfg.num_hidden_layers && fused; l++) {
        // ONNX Runtime's own operators, as its transformers optimiser writes a BERT: one
        // Attention (q, k and v weights side by side in one [hidden, 3 hidden] matrix),
        // SkipLayerNormalization (residual + bias + LayerNorm), BiasGelu (exact erf GELU).
        const L = `encoder.layer.${l}`;
        const qkvW = new Float32Array(h * 3 * h), qkvB = new Float32Array(3 * h);
        ['query', 'key', 'value'].forEach((p, i) => {
            const wT = transpose(T(`${L}.attention.self.${p}.weight`).data, h, h);
            for (let r = 0; r < h; r++) qkvW.set(wT.subarray(r * h, (r + 1) * h), r * 3 * h + i * h);
            qkvB.set(T(`${L}.attention.self.${p}.bias`).data, i * h);
        });
        const ctx = g.node('com.microsoft.Attention', [x, g.f32(`${L}.qkv.w`, [h, 3 * h], qkvW), g.f32(`${L}.qkv.b`, [3 * h], qkvB), maskI], { num_heads: heads });
        x = skipNorm(matmul(ctx, `${L}.attention.output.dense`, h, h), x, `${L}.attention.output.dense`, `${L}.attention.output.LayerNorm`);
        const mid = g.node('com.microsoft.BiasGelu', [matmul(x, `${L}.intermediate.dense`, h, inter), bias(`${L}.intermediate.dense`, inter)]);
        x = skipNorm(matmul(mid, `${L}.output.dense`, inter, h), x, `${L}.output.dense`, `${L}.output.LayerNorm`);
    }

    const headShape = fused ? null : g.i64('heads_shape', [0, 0, heads, d]);
    const flatShape = fused ? null : g.i64('hidden_shape', [0, 0, h]);
    const scale = fused ? null : g.f32('sqrt_d', [], [Math.sqrt(d)]);
    const sqrt2 = fused ? null : g.f32('sqrt2', [], [Math.SQRT2]);
    const half = fused ? null : g.f32('half', [], [0.5]);
    for (let l = 0; l < cfg.num_hidden_layers && !fused; l++) {
        const L = `encoder.layer.${l}`;
        const split = (t, perm) => g.node('Transpose', [g.node('Reshape', [t, headShape])], { perm });
        const q = split(linear(x, `${L}.attention.self.query`, h, h), [0, 2, 1, 3]);
        const k = split(linear(x, `${L}.attention.self.key`, h, h), [0, 2, 3, 1]);
        const v = split(linear(x, `${L}.attention.self.value`, h, h), [0, 2, 1, 3]);
        const scores = g.node('Add', [g.node('Div', [g.node('MatMul', [q, k]), scale]), ext]);
        const probs = g.node('Softmax', [scores], { axis: -1 });
        const ctx = g.node('Reshape', [g.node('Transpose', [g.node('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), flatShape]);
        const attn = linear(ctx, `${L}.attention.output.dense`, h, h);
        x = layerNorm(g.node('Add', [attn, x]), `${L}.attention.output.LayerNorm`);
        const mid = linear(x, `${L}.intermediate.dense`, h, inter);
        const erf = g.node('Erf', [g.node('Div', [mid, sqrt2])]);
        const gelu = g.node('Mul', [g.node('Mul', [mid, g.node('Add', [erf, one])]), half]);
        const out = linear(gelu, `${L}.output.dense`, inter, h);
        x = layerNorm(g.node('Add', [out, x]), `${L}.output.LayerNorm`);
    }

    // Mean over the kept tokens, then L2.
    const m3 = g.node('Unsqueeze', [maskF, g.i64('axes2', [2])]);
    const axis1 = g.i64('axes1', [1]);
    const sum = g.node('ReduceSum', [g.node('Mul', [x, m3]), axis1], { keepdims: 0 });
    const count = g.node('Clip', [g.node('ReduceSum', [m3, axis1], { keepdims: 0 }), g.f32('min_count', [], [1e-9])]);
    const mean = g.node('Div', [sum, count], {}, normalize ? null : 'embedding');
    if (normalize) {
        const norm = g.node('ReduceL2', [mean], { axes: [1], keepdims: 1 });
        g.node('Div', [mean, g.node('Max', [norm, g.f32('min_norm', [], [1e-12])])], {}, 'embedding');
    }
    g.output('embedding', DT.FLOAT, ['batch', h]);
    return g;
}

// ------------------------------------------------------------------ classify ------------

function exportClassify(file) {
    const st = readSafetensors(file);
    const want = { 'conv1.weight': [16, 1, 3, 3], 'conv1.bias': [16], 'conv2.weight': [32, 16, 3, 3], 'conv2.bias': [32], 'fc.weight': [10, 1568], 'fc.bias': [10] };
    for (const [name, shape] of Object.entries(want)) {
        if (!st[name] || st[name].shape.join() !== shape.join()) throw new Error(`${file}: ${name} must be [${shape}]`);
    }
    const W = (name) => g.f32(name, st[name].shape, st[name].data);
    const g = new Graph('fleet_classify');
    let x = g.input('image', DT.FLOAT, ['batch', 1, 28, 28]);
    for (const c of ['conv1', 'conv2']) {
        x = g.node('Conv', [x, W(`${c}.weight`), W(`${c}.bias`)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
        x = g.node('Relu', [x]);
        x = g.node('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] });
    }
    x = g.node('Flatten', [x], { axis: 1 });
    x = g.node('Gemm', [x, W('fc.weight'), W('fc.bias')], { transB: 1 });
    g.node('Softmax', [x], { axis: 1 }, 'probs');
    g.output('probs', DT.FLOAT, ['batch', 10]);
    return g;
}

// ------------------------------------------------------------------ main ----------------

const [kind, src, out] = process.argv.slice(2);
if (!['embed', 'embed-fused', 'classify'].includes(kind) || !src || !out) {
    console.error('usage: node export.mjs embed|embed-fused MODEL_DIR OUT.onnx | classify WEIGHTS OUT.onnx');
    process.exit(2);
}
const graph = kind === 'classify' ? exportClassify(src) : exportEmbed(src, kind === 'embed-fused');
fs.writeFileSync(out, modelBytes(graph, OPSET));
console.log(`export.mjs: ${kind} from ${src} -> ${out} (${(fs.statSync(out).size / 1e6).toFixed(1)} MB, opset ${OPSET})`);
