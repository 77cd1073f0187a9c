// cnn_cuda_kernels.cu: the classify model's own CUDA kernel; see cnn_cuda_kernels.h.
//
// The pixels arrive as bytes; the network reads floats. One element-wise pass converts
// them exactly as the CPU backend does (scaling inside the first convolution instead,
// alpha = 1/255, would round differently from the CPU, which scales each pixel first).
#include <cuda_runtime.h>

#include "cnn_cuda_kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr long kMaxBlocks = 4096; // the kernel loops beyond this

__global__ void bytes_to_unit_kernel(const unsigned char *in, long n, float *out) {
    const float scale = 1.0f / 255.0f;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x)
        out[i] = (float)in[i] * scale;
}

} // namespace

extern "C" int cnk_bytes_to_unit(const unsigned char *in, long n, float *out, cnk_stream stream) {
    if (n <= 0) return (int)cudaSuccess;
    long blocks = (n + kThreads - 1) / kThreads;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    bytes_to_unit_kernel<<<(unsigned)blocks, kThreads, 0, stream>>>(in, n, out);
    return (int)cudaGetLastError();
}
