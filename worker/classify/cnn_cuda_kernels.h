/* cnn_cuda_kernels.h: the classify model's one CUDA kernel of its own (cnn_cuda_kernels.cu),
 * callable from C; cuDNN and cuBLAS do the rest of the network (cnn_cuda.c). */
#ifndef CLASSIFY_CNN_CUDA_KERNELS_H
#define CLASSIFY_CNN_CUDA_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *cnk_stream;

/* out[i] = in[i] * (1.0f / 255.0f) for i in [0, n): pixel bytes (0 black .. 255 white) to
 * the network's input, rounded as the CPU backend rounds them (cnn_cpu.c), so both start
 * from the same floats. Launches on stream; returns the launch's cudaError_t as an int
 * (0 is success); errors while running surface at the next synchronising call. */
int cnk_bytes_to_unit(const unsigned char *in, long n, float *out, cnk_stream stream);

#ifdef __cplusplus
}
#endif

#endif
