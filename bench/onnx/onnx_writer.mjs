// onnx_writer.mjs: the few ONNX messages export.mjs needs, in protobuf's wire format.
//
// Only what an inference graph of plain operators needs is written: ModelProto (ir_version,
// opset_import, producer, graph), GraphProto (node, initializer, input, output), NodeProto,
// AttributeProto (float, int, ints), TensorProto (dims, data_type, name, raw_data) and a
// tensor ValueInfoProto with fixed or named dimensions. Field numbers are those of
// onnx/onnx.proto (IR version 8). Tensors carry raw_data, little-endian as the format
// requires; this host is little-endian as fleet is.

// ------------------------------------------------------------------ wire format ---------

const WIRE_VARINT = 0;
const WIRE_I32 = 5;
const WIRE_LEN = 2;

function varint(v) {
    let n = BigInt.asUintN(64, BigInt(v)); // negative int64 values take ten bytes
    const out = [];
    do {
        let b = Number(n & 0x7fn);
        n >>= 7n;
        if (n) b |= 0x80;
        out.push(b);
    } while (n);
    return Buffer.from(out);
}

const key = (field, wire) => varint((field << 3) | wire);

// A message is a list of encoded fields (Buffers), joined at the end.
class Msg {
    constructor() {
        this.parts = [];
    }
    int(field, v) {
        this.parts.push(key(field, WIRE_VARINT), varint(v));
        return this;
    }
    float(field, v) {
        const b = Buffer.alloc(4);
        b.writeFloatLE(v);
        this.parts.push(key(field, WIRE_I32), b);
        return this;
    }
    bytes(field, buf) {
        this.parts.push(key(field, WIRE_LEN), varint(buf.length), buf);
        return this;
    }
    str(field, s) {
        return this.bytes(field, Buffer.from(s, 'utf8'));
    }
    msg(field, m) {
        return this.bytes(field, m.encode());
    }
    packedInts(field, vs) {
        return this.bytes(field, Buffer.concat(vs.map(varint)));
    }
    encode() {
        return Buffer.concat(this.parts);
    }
}

// ------------------------------------------------------------------ ONNX ----------------

export const DT = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7 };
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 };

// A TensorProto: dims, data_type, name, raw_data (a Float32Array, BigInt64Array, ...).
function tensorProto(name, dtype, dims, data) {
    const m = new Msg();
    for (const d of dims) m.int(1, d);
    m.int(2, dtype).str(8, name);
    m.bytes(9, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return m;
}

// A ValueInfoProto of a tensor; dims are numbers or names ("batch").
function valueInfo(name, dtype, dims) {
    const shape = new Msg();
    for (const d of dims) {
        const dim = new Msg();
        if (typeof d === 'number') dim.int(1, d);
        else dim.str(2, d);
        shape.msg(1, dim);
    }
    const tensorType = new Msg().int(1, dtype).msg(2, shape);
    return new Msg().str(1, name).msg(2, new Msg().msg(1, tensorType));
}

// An attribute: a list of integers (INTS), f32(x) (FLOAT), or an integer (INT).
function attribute(name, v) {
    const m = new Msg().str(1, name);
    if (Array.isArray(v)) return m.packedInts(8, v).int(20, ATTR.INTS);
    if (typeof v === 'object' && v.float) return m.float(2, v.value).int(20, ATTR.FLOAT);
    if (Number.isInteger(v)) return m.int(3, v).int(20, ATTR.INT);
    throw new Error(`attribute ${name}: write a float as f32(${v})`);
}

// A float attribute, which a bare number would not say (1 is an integer too).
export const f32 = (v) => ({ float: true, value: v });

// Graph builds one GraphProto: node() appends a node and returns its output names,
// init() an initializer; names are made unique by a counter.
export class Graph {
    constructor(name) {
        this.name = name;
        this.nodes = [];
        this.inits = [];
        this.inputs = [];
        this.outputs = [];
        this.count = 0;
    }
    fresh(hint) {
        return `${hint}_${this.count++}`;
    }
    input(name, dtype, dims) {
        this.inputs.push(valueInfo(name, dtype, dims));
        return name;
    }
    output(name, dtype, dims) {
        this.outputs.push(valueInfo(name, dtype, dims));
        return name;
    }
    init(hint, dtype, dims, data) {
        const name = this.fresh(hint);
        this.inits.push(tensorProto(name, dtype, dims, data));
        return name;
    }
    f32(hint, dims, values) {
        return this.init(hint, DT.FLOAT, dims, values instanceof Float32Array ? values : Float32Array.from(values));
    }
    i64(hint, values) {
        return this.init(hint, DT.INT64, [values.length], BigInt64Array.from(values.map(BigInt)));
    }
    // A node of op_type op over inputs ("" skips an optional input); attrs {name: value};
    // returns its one output's name (or the given output name). An op written
    // "com.microsoft.Attention" is in that domain (ONNX Runtime's own operators).
    node(op, inputs, attrs = {}, out = null) {
        const dot = op.lastIndexOf('.');
        const domain = dot < 0 ? '' : op.slice(0, dot);
        const type = op.slice(dot + 1);
        const name = out ?? this.fresh(type.toLowerCase());
        const m = new Msg();
        for (const i of inputs) m.str(1, i);
        m.str(2, name).str(3, `${type}_${this.count++}`).str(4, type);
        for (const [k, v] of Object.entries(attrs)) m.msg(5, attribute(k, v));
        if (domain) m.str(7, domain);
        this.nodes.push(m);
        return name;
    }
    encode() {
        const g = new Msg();
        for (const n of this.nodes) g.msg(1, n);
        g.str(2, this.name);
        for (const t of this.inits) g.msg(5, t);
        for (const i of this.inputs) g.msg(11, i);
        for (const o of this.outputs) g.msg(12, o);
        return g;
    }
}

// A ModelProto of IR version 8 over the default domain at `opset` (and ONNX Runtime's
// com.microsoft domain, version 1, for the graphs that use its operators).
export function modelBytes(graph, opset) {
    return new Msg()
        .int(1, 8)
        .str(2, 'fleet bench/onnx/export.mjs')
        .str(3, '1')
        .msg(7, graph.encode())
        .msg(8, new Msg().str(1, '').int(2, opset))
        .msg(8, new Msg().str(1, 'com.microsoft').int(2, 1))
        .encode();
}
