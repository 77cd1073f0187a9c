#!/usr/bin/env python3
"""reference.py: golden embeddings for the tiny BERT of tests/unit/bert_cpu_test.c.

Regenerate (from the repository root; needs python3 and torch, e.g. apt-get install -y
python3-torch):

    /usr/bin/python3 tests/embed/reference.py > tests/embed/tiny_golden.txt

(/usr/bin/python3: the Debian interpreter that python3-torch installs into.)

The tiny model (the C test writes the same one as a model directory):
  hidden 32, 2 layers, 4 heads, intermediate 64, vocab 100, max_position 64,
  type_vocab 2, layer_norm_eps 1e-12, gelu (erf), mean pooling, Normalize.

Weights, one PRNG stream over the tensors in TENSOR ORDER below, each row-major as the
checkpoint stores it ([out, in] for linear weights):
  splitmix64, seed 42:  state += 0x9E3779B97F4A7C15; z = state;
                        z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
                        z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^= z >> 31
  u = (z >> 40) / 2^24                     (exact, in [0, 1))
  v = (2u - 1) * 0.1                       (in double), then rounded to float32
  LayerNorm weights are 1 + v (in double, then float32); everything else is v.

Sequences (SEQ_LENS): sequence s has ids[0] = 2, ids[len-1] = 3 and in between
ids[j] = 4 + (37 s + 11 j) % 96; token type 0; positions 0..len-1.

Computed here by hand with torch.nn.functional on a padded batch with an attention mask,
as sentence-transformers does: post-LayerNorm BERT, masked mean pooling, L2 normalisation.
Output: one line per sequence, HIDDEN floats printed with %.9g.
"""
import math
import sys

import torch
import torch.nn.functional as F

HIDDEN, LAYERS, HEADS, INTER, VOCAB, MAX_POS, TYPE_VOCAB = 32, 2, 4, 64, 100, 64, 2
EPS = 1e-12
SEED = 42
SEQ_LENS = [3, 7, 12, 20, 5]

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def tensor_order():
    """(name, shape) in generation order; the C test lists the same."""
    t = [("embeddings.word_embeddings.weight", [VOCAB, HIDDEN]),
         ("embeddings.position_embeddings.weight", [MAX_POS, HIDDEN]),
         ("embeddings.token_type_embeddings.weight", [TYPE_VOCAB, HIDDEN]),
         ("embeddings.LayerNorm.weight", [HIDDEN]),
         ("embeddings.LayerNorm.bias", [HIDDEN])]
    for l in range(LAYERS):
        p = "encoder.layer.%d." % l
        for mod, o, i in [("attention.self.query", HIDDEN, HIDDEN),
                          ("attention.self.key", HIDDEN, HIDDEN),
                          ("attention.self.value", HIDDEN, HIDDEN),
                          ("attention.output.dense", HIDDEN, HIDDEN)]:
            t += [(p + mod + ".weight", [o, i]), (p + mod + ".bias", [o])]
        t += [(p + "attention.output.LayerNorm.weight", [HIDDEN]),
              (p + "attention.output.LayerNorm.bias", [HIDDEN]),
              (p + "intermediate.dense.weight", [INTER, HIDDEN]),
              (p + "intermediate.dense.bias", [INTER]),
              (p + "output.dense.weight", [HIDDEN, INTER]),
              (p + "output.dense.bias", [HIDDEN]),
              (p + "output.LayerNorm.weight", [HIDDEN]),
              (p + "output.LayerNorm.bias", [HIDDEN])]
    return t


def weights():
    rng = SplitMix64(SEED)
    w = {}
    for name, shape in tensor_order():
        n = math.prod(shape)
        base = 1.0 if name.endswith("LayerNorm.weight") else 0.0
        vals = []
        for _ in range(n):
            u = (rng.next() >> 40) / 16777216.0
            vals.append(base + (2.0 * u - 1.0) * 0.1)
        # float64 -> float32 rounds to nearest, as the C cast does.
        w[name] = torch.tensor(vals, dtype=torch.float64).to(torch.float32).reshape(shape)
    return w


def sequences():
    seqs = []
    for s, n in enumerate(SEQ_LENS):
        ids = [2] + [4 + (37 * s + 11 * j) % 96 for j in range(1, n - 1)] + [3]
        seqs.append(ids)
    return seqs


def embed(w, seqs):
    b, L = len(seqs), max(len(s) for s in seqs)
    ids = torch.zeros(b, L, dtype=torch.long)
    mask = torch.zeros(b, L, dtype=torch.float32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    pos = torch.arange(L)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][pos][None]
         + w["embeddings.token_type_embeddings.weight"][0][None, None])
    x = F.layer_norm(x, [HIDDEN], w["embeddings.LayerNorm.weight"],
                     w["embeddings.LayerNorm.bias"], EPS)
    d = HIDDEN // HEADS
    bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    for l in range(LAYERS):
        p = "encoder.layer.%d." % l

        def lin(t, mod):
            return F.linear(t, w[p + mod + ".weight"], w[p + mod + ".bias"])

        def heads(t):
            return t.view(b, L, HEADS, d).transpose(1, 2)
        q = heads(lin(x, "attention.self.query"))
        k = heads(lin(x, "attention.self.key"))
        v = heads(lin(x, "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        ctx = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, L, HIDDEN)
        x = F.layer_norm(x + lin(ctx, "attention.output.dense"), [HIDDEN],
                         w[p + "attention.output.LayerNorm.weight"],
                         w[p + "attention.output.LayerNorm.bias"], EPS)
        h = F.gelu(lin(x, "intermediate.dense"))  # exact erf form (approximate='none')
        x = F.layer_norm(x + lin(h, "output.dense"), [HIDDEN],
                         w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], EPS)
    m = mask[:, :, None]
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1, eps=1e-12)


def main():
    torch.set_num_threads(1)
    out = embed(weights(), sequences())
    for row in out.tolist():
        sys.stdout.write(" ".join("%.9g" % v for v in row) + "\n")


if __name__ == "__main__":
    main()
