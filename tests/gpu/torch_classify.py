#!/usr/bin/env python3
"""torch_classify.py: PyTorch's side of the classify model's GPU comparison (tests/gpu/run.sh).

    python3 tests/gpu/torch_classify.py [--weights FILE] [--dump FILE]
                                        [--batches 1,8,64,256,1024] [--seconds 2]

Builds the network of worker/classify/cnn.h as a torch.nn.Module (conv 3x3 pad 1 1->16,
ReLU, max pool 2; conv 16->32, ReLU, max pool 2; dense 1568->10; softmax) and loads
--weights (default models/classify/model.safetensors, the file fleet's backends load),
read here with struct and json (no safetensors package needed), then on the GPU:

  * with --dump (written by fleet-classify-check: {"pixels": [[784 bytes]...],
    "probs": [[10 floats]...]} from fleet's CUDA backend): classifies the same pixels
    (/ 255) in float64, the exact reference, and fails when a probability of fleet's is
    more than 1e-5 away or a most likely class differs (unless PyTorch's two best are
    within 1e-5 of each other); it also prints, for information, how far PyTorch's own
    float32 answer is (cuDNN may pick FFT or Winograd algorithms for it, whose rounding
    fleet's choice excludes: that difference is PyTorch's, not a verdict on fleet);
  * for each batch size: images/s in float32 with torch.backends.cudnn.benchmark=True,
    TF32 off (as fleet's default FLEET_CLASSIFY_MATH=fp32), then with TF32 allowed (as
    fleet's opt-in tf32). "end to end" is what fleet-classify-bench times for fleet: the
    uint8 pixels from host memory to the GPU, / 255, the network, the probabilities back
    to host memory; "on the device" leaves the pixels and probabilities on the GPU. Both
    after warm-up, synchronised, median of the runs of about --seconds.

Exit: 0, or 1 when the parity check fails.
"""
import argparse
import json
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

from torch_timing import median_s

SIDE, CLASSES, FEATURES = 28, 10, 32 * 7 * 7
TOL = 1e-5
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class Classify(nn.Module):
    """worker/classify/cnn.h's network; parameter names are the file's tensor names."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.softmax(self.fc(x.flatten(1)), dim=1)


def read_safetensors(path):
    """The tensors of a safetensors file (an 8-byte little-endian header length, a JSON
    header of name -> dtype, shape, data_offsets, then the data) as float32 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            sys.exit(f"torch_classify: {path}: tensor {name} is {info['dtype']}, not F32/F16/BF16")
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = t.float()
    return tensors


def load_model(path):
    model = Classify()
    model.load_state_dict(read_safetensors(path), strict=True)
    return model.eval().cuda()


def parity(model, dump):
    with open(dump) as f:
        d = json.load(f)
    pixels = torch.tensor(d["pixels"], dtype=torch.uint8)
    ours = torch.tensor(d["probs"], dtype=torch.float64)
    n = pixels.shape[0]
    x = pixels.reshape(n, 1, SIDE, SIDE).cuda()
    with torch.inference_mode():
        ref = model.double()(x.double() / 255).cpu()
        model.float()
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        f32 = model(x.float() / 255).double().cpu()
    worst = (ours - ref).abs().max().item()
    worst32 = (f32 - ref).abs().max().item()
    classes = 0
    for i in range(n):
        if ours[i].argmax() != ref[i].argmax():
            top2 = ref[i].topk(2).values
            if (top2[0] - top2[1]).item() > TOL:
                classes += 1
    return n, worst, worst32, classes


def bench(model, batch, seconds, on_device):
    g = torch.Generator().manual_seed(batch)
    host = torch.randint(0, 256, (batch, 1, SIDE, SIDE), dtype=torch.uint8, generator=g)
    dev = host.cuda()

    def once():
        if on_device:
            return model(dev.float() / 255)
        return model(host.cuda().float() / 255).cpu()

    med = median_s(once, seconds)
    return batch / med, med * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="models/classify/model.safetensors")
    ap.add_argument("--dump")
    ap.add_argument("--batches", default="1,8,64,256,1024")
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name(0)}")
    model = load_model(a.weights)
    rc = 0
    if a.dump:
        n, worst, worst32, classes = parity(model, a.dump)
        ok = worst <= TOL and classes == 0
        rc |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} fleet CUDA vs PyTorch float64: {n} images, "
              f"probabilities at most {worst:.3g} apart (limit {TOL:g}), {classes} other classes")
        print(f"     (for information: PyTorch float32 vs float64 at most {worst32:.3g} apart)")
    model.float()
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        label = "torch-tf32" if tf32 else "torch-fp32"
        for b in map(int, a.batches.split(",")):
            ips, ms = bench(model, b, a.seconds, on_device=False)
            dips, dms = bench(model, b, a.seconds, on_device=True)
            print(f"{label} batch {b:5d}: {ips:12.1f} images/s {ms:8.3f} ms/batch end to end; "
                  f"{dips:12.1f} images/s {dms:8.3f} ms/batch on the device")
    return rc


if __name__ == "__main__":
    sys.exit(main())
