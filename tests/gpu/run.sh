#!/usr/bin/env bash
# run.sh: the models' GPU checks and timings (embed, then classify), for a machine with an
# NVIDIA GPU, the CUDA toolkit (nvcc), cuDNN and PyTorch with transformers. CI has no GPU
# and does not run this; docs/benchmarks.md ("embed on a GPU", "classify on a GPU") holds
# what it printed and where.
#
#   tests/gpu/run.sh [OUTDIR]          (default OUTDIR: $OUT, else /tmp/fleet-gpu)
#
# With this workplace's device tool: run tests/gpu/fetch-debs.sh here first, then
#   run(command="bash tests/gpu/run.sh", carry=[".gpu-debs"], timeout_s=600)
# (about 5 minutes for embed and 2 for classify on an H100; the log comes back as
# $OUT/gpu-run.txt).
#
# 1. Builds only the models' backends, their checks and benches (cmake
#    -DFLEET_EMBED_ONLY=ON: needs CUDA, cuDNN, jansson, OpenBLAS and zlib, none of the
#    server's libraries) into build-gpu/. A machine without jansson/OpenBLAS/zlib and
#    without a package registry gets them from .gpu-debs/ (tests/gpu/fetch-debs.sh, run
#    beforehand on a Debian machine), unpacked into a private sysroot, never into /.
# embed:
# 2. fleet-embed-check: CUDA against the CPU backend on fresh random batches, buffers
#    poisoned with NaN before every call, both softmaxes and every GEMM mode (limit 1e-3;
#    1e-2 for the opt-in tf32).
# 3. tests/gpu/torch_bench.py: the same vectors from PyTorch (limit 1e-3), and PyTorch's
#    sentences/s at batch 1, 8, 64 x 128 tokens on the same weights.
# 4. fleet-embed-bench: fleet's sentences/s for the same shapes: CUDA with our softmax,
#    with cuDNN's, with 3xTF32 and with TF32 GEMMs; and the CPU backend for scale.
# classify (models/classify/model.safetensors):
# 5. fleet-classify-check: cuDNN against the CPU backend on random images, batches of 1,
#    2, 7, 63, 64, 65, 1024 images and random sizes, buffers poisoned with NaN before every
#    call, fused and separate convolutions in float32 (limit 1e-5 absolute on each
#    probability, the same class) and the opt-in tf32 (1e-2); it prints the convolution
#    algorithms cuDNN was given.
# 6. tests/gpu/torch_classify.py: fleet's probabilities against PyTorch in float64 on the
#    same weights (limit 1e-5), and PyTorch's images/s at batch 1, 8, 64, 256, 1024 in
#    float32 (cudnn.benchmark on, TF32 off, then on), end to end and on the device.
# 7. fleet-classify-bench: fleet's images/s for the same batches: fused and separate
#    convolutions in float32, fused in tf32; and the CPU backend for scale.
# Exit: nonzero when a build or a check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${1:-${OUT:-/tmp/fleet-gpu}}
mkdir -p "$out"
log="$out/gpu-run.txt"
exec > >(tee "$log") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -n 2
nproc

# ---------------------------------------------------------------- dependencies --------
sysroot=/tmp/fleet-gpu-sysroot
cmake_args=()
if compgen -G ".gpu-debs/*.deb" >/dev/null; then
  mkdir -p "$sysroot"
  for f in .gpu-debs/*.deb; do dpkg -x "$f" "$sysroot"; done
  lib="$sysroot/usr/lib/x86_64-linux-gnu"
  export PKG_CONFIG_SYSROOT_DIR="$sysroot"
  export PKG_CONFIG_LIBDIR="$lib/openblas-pthread/pkgconfig:$lib/pkgconfig:$sysroot/usr/share/pkgconfig"
  export LD_LIBRARY_PATH="$lib/openblas-pthread:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! command -v pkg-config >/dev/null; then
    cmake_args+=("-DPKG_CONFIG_EXECUTABLE=$sysroot/usr/bin/pkgconf")
  fi
  # zlib (the classify model's PNG decoder) is found by CMake's FindZLIB, not pkg-config.
  if [[ ! -e /usr/include/zlib.h && -e "$sysroot/usr/include/zlib.h" ]]; then
    cmake_args+=("-DZLIB_ROOT=$sysroot/usr")
  fi
fi
# cuDNN: from the toolkit's directory, else from the nvidia-cudnn wheel PyTorch brings.
if [[ ! -e /usr/local/cuda/include/cudnn.h ]]; then
  cudnn=$(python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' \
          2>/dev/null || true)
  if [[ -n "$cudnn" && -e "$cudnn/include/cudnn.h" ]]; then
    lib=$(ls "$cudnn"/lib/libcudnn.so* | head -n 1)
    cmake_args+=("-DCUDNN_INCLUDE_DIR=$cudnn/include" "-DCUDNN_LIBRARY=$lib")
    export LD_LIBRARY_PATH="$cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

echo "== build"
cmake -S . -B build-gpu -DFLEET_EMBED_ONLY=ON -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" \
  | grep -E "fleet|CUDA" || true
cmake --build build-gpu -j"$(nproc)" >"$out/build.log" 2>&1 || { tail -n 60 "$out/build.log"; exit 1; }
bin=build-gpu/bin

# ---------------------------------------------------------------- correctness ---------
model=/tmp/fleet-gpu-minilm
rm -rf "$model" && mkdir -p "$model"
echo "== fleet-embed-check (CUDA vs CPU)"
rc=0
"$bin/fleet-embed-check" --model-dir "$model" --dump "$out/dump.txt" --rounds 24 || rc=1

echo "== PyTorch: parity and timings"
PYTHONUNBUFFERED=1 python3 tests/gpu/torch_bench.py "$model" --dump "$out/dump.txt" \
  --batches 1,8,64 --tokens 128 --seconds 2 || rc=1

# ---------------------------------------------------------------- timings -------------
echo "== fleet-embed-bench, CUDA (own softmax, float32 GEMMs)"
"$bin/fleet-embed-bench" --model-dir "$model" --backend cuda --batches 1,8,64 --tokens 128 \
  --seconds 2 || rc=1
echo "== fleet-embed-bench, CUDA (cuDNN softmax)"
FLEET_EMBED_SOFTMAX=cudnn "$bin/fleet-embed-bench" --model-dir "$model" --backend cuda \
  --batches 1,8,64 --tokens 128 --seconds 2 || echo "(cuDNN softmax not available)"
for gemm in 3xtf32 tf32; do
  echo "== fleet-embed-bench, CUDA (FLEET_EMBED_GEMM=$gemm)"
  FLEET_EMBED_GEMM=$gemm "$bin/fleet-embed-bench" --model-dir "$model" --backend cuda \
    --batches 1,8,64 --tokens 128 --seconds 2 || rc=1
done
echo "== fleet-embed-bench, CPU ($(nproc) cores)"
"$bin/fleet-embed-bench" --model-dir "$model" --backend cpu --batches 1,8,64 --tokens 128 \
  --seconds 2 || rc=1

# ---------------------------------------------------------------- classify ------------
batches=1,8,64,256,1024
dump="$out/classify-dump.json"
rm -f "$dump"
echo "== fleet-classify-check (cuDNN vs CPU)"
"$bin/fleet-classify-check" --dump "$dump" --rounds 24 || rc=1

echo "== PyTorch: classify parity and timings"
torch_args=(--weights models/classify/model.safetensors --batches "$batches" --seconds 1)
if [[ -s "$dump" ]]; then
  torch_args+=(--dump "$dump")
else
  echo "(no dump from fleet-classify-check: parity not checked)"
  rc=1
fi
PYTHONUNBUFFERED=1 python3 tests/gpu/torch_classify.py "${torch_args[@]}" || rc=1

for config in "fused fp32" "separate fp32" "fused tf32"; do
  read -r conv math <<<"$config"
  echo "== fleet-classify-bench, CUDA (FLEET_CLASSIFY_CONV=$conv FLEET_CLASSIFY_MATH=$math)"
  FLEET_CLASSIFY_CONV=$conv FLEET_CLASSIFY_MATH=$math "$bin/fleet-classify-bench" \
    --backend cuda --batches "$batches" --seconds 1 || rc=1
done
echo "== fleet-classify-bench, CPU ($(nproc) cores)"
"$bin/fleet-classify-bench" --backend cpu --batches "$batches" --seconds 1 || rc=1

echo "== done: rc=$rc (log: $log)"
exit $rc
