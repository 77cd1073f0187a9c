#!/usr/bin/env python3
"""torch_bench.py: PyTorch's side of the embed model's GPU comparison (tests/gpu/run.sh).

    python3 tests/gpu/torch_bench.py MODEL_DIR [--dump FILE] [--batches 1,8,64]
                                     [--tokens 128] [--seconds 2]

Builds a transformers BertModel from MODEL_DIR/config.json, loads MODEL_DIR/model.safetensors
(the same file fleet's CUDA backend loads), and on the GPU in float32:

  * with --dump (written by fleet-embed-check): embeds the same token ids, with mean pooling
    over the attention mask and L2 normalisation as sentence-transformers does, and prints
    the largest relative difference from fleet's CUDA vectors (limit 1e-3);
  * for each batch size: sequences of exactly --tokens ids, timed after warm-up (the
    forward pass, pooling and normalisation, synchronised), printing sentences/s and the
    median ms per batch, for the model's default attention ("sdpa") and for "eager".

TF32 stays off (PyTorch's default for float32 matmuls), as in fleet's default.
Exit: 0, or 1 when the parity check fails.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from torch_timing import median_s


def load_model(model_dir, attn):
    with open(os.path.join(model_dir, "config.json")) as f:
        fields = json.load(f)
    fields.pop("model_type", None)  # BertConfig's own
    cfg = BertConfig(**fields, attn_implementation=attn)
    cfg._attn_implementation = attn  # what BertModel reads, in transformers 4 and 5
    model = BertModel(cfg, add_pooling_layer=False)
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    state = {k[len("bert."):] if k.startswith("bert.") else k: v.float() for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        sys.exit(f"torch_bench: weights do not fit: missing {missing}, unexpected {unexpected}")
    return model.eval().cuda()


def embed(model, ids, mask):
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(out.dtype)
    pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1, eps=1e-12)


def parity(model, dump):
    with open(dump) as f:
        n, dim = map(int, f.readline().split())
        seqs, vecs = [], []
        for _ in range(n):
            row = list(map(int, f.readline().split()))
            seqs.append(row[1:1 + row[0]])
            vecs.append(list(map(float, f.readline().split())))
    L = max(len(s) for s in seqs)
    ids = torch.zeros((n, L), dtype=torch.long)
    mask = torch.zeros((n, L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    with torch.inference_mode():
        ref = embed(model, ids.cuda(), mask.cuda()).double().cpu()
    ours = torch.tensor(vecs, dtype=torch.float64)
    worst = 0.0
    for i in range(n):
        err = ((ours[i] - ref[i]).abs().max() / ref[i].abs().max().clamp(min=1e-12)).item()
        worst = max(worst, err)
    return n, worst


def bench(model, vocab, batch, tokens, seconds):
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(1000, vocab, (batch, tokens), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    ids, mask = ids.cuda(), torch.ones_like(ids).cuda()
    med = median_s(lambda: embed(model, ids, mask), seconds)
    return batch / med, med * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--dump")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
          f"tf32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    rc = 0
    for attn in ("sdpa", "eager"):
        model = load_model(a.model_dir, attn)
        if a.dump and attn == "sdpa":
            n, worst = parity(model, a.dump)
            ok = worst <= 1e-3
            rc |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} fleet CUDA vs PyTorch ({attn}): {n} sequences, "
                  f"max relative error {worst:.3g} (limit 1e-3)")
        for b in map(int, a.batches.split(",")):
            sps, ms = bench(model, model.config.vocab_size, b, a.tokens, a.seconds)
            print(f"torch-{attn:5s} batch {b:3d} tokens {a.tokens}: {sps:10.1f} sentences/s "
                  f"{ms:8.3f} ms/batch")
        del model
        torch.cuda.empty_cache()
    return rc


if __name__ == "__main__":
    sys.exit(main())
