"""torch_timing.py: how torch_bench.py and torch_classify.py time PyTorch on the GPU, the
same way fleet's benches time fleet: after warm-up, each call synchronised, the median of
the calls made in about the given seconds."""
import statistics
import time

import torch


def median_s(once, seconds):
    """The median wall time, in seconds, of once() with the GPU synchronised after each
    call: 3 warm-up calls first (cudnn.benchmark tries its algorithms there), then calls
    for about `seconds`, at least 5."""
    times = []
    with torch.inference_mode():
        for _ in range(3):
            once()
        torch.cuda.synchronize()
        end = time.perf_counter() + seconds
        while len(times) < 5 or time.perf_counter() < end:
            t0 = time.perf_counter()
            once()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
