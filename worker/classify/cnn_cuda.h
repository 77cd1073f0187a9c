/* cnn_cuda.h: the classify network (cnn.h) on a CUDA GPU, through cuDNN and cuBLAS; built
 * only when fleet was configured with the CUDA toolkit and cuDNN. Same model, same numbers
 * (within 1e-5 absolute on every probability) as the CPU backend (cnn_cpu.h).
 *
 * What load does, once per worker:
 *   - uploads the weights (one device allocation);
 *   - creates one stream, a cuDNN handle and a cuBLAS handle bound to it (cuBLAS with a
 *     workspace of ours, so it allocates nothing after load);
 *   - describes the layers to cuDNN in NCHW float32: conv1 (1 -> 16, 3x3, pad 1) with its
 *     bias and ReLU, max pooling 2x2 stride 2, conv2 (16 -> 32) likewise, then softmax
 *     (CUDNN_SOFTMAX_ACCURATE, per image); the dense layer is one cuBLAS sgemm over the
 *     batch, its bias added by cudnnAddTensor;
 *   - picks each convolution's algorithm for CNN_CUDA_MAX_BATCH images
 *     (cudnnGetConvolutionForwardAlgorithm_v7: the fastest by cuDNN's heuristics among
 *     those that run in float32 (unless TF32 was asked for), need at most
 *     CNN_CUDA_WORKSPACE_LIMIT bytes of workspace, and are not FFT-based, whose rounding
 *     is coarser), that takes every batch size 1..CNN_CUDA_MAX_BATCH and runs when tried
 *     (at the largest batch and at one image, fused or not as classify calls it; cuDNN
 *     may refuse a combination only when called: the next algorithm is tried then), and
 *     allocates the largest workspace the two chosen need, once;
 *   - allocates every buffer for CNN_CUDA_MAX_BATCH images, plus pinned host buffers for
 *     the pixels and the probabilities, so classify allocates nothing;
 *   - checks itself: a batch of fixed pseudo-random images (with the all-black and the
 *     all-white one) through this backend and through cnn_cpu_ops on the same weights; a
 *     NaN, a probability more than 1e-5 away (absolute), or another most likely class
 *     refuses the load: a wrong driver, a broken card or a bad build does not serve wrong
 *     classes.
 *
 * What classify does per call: one host-to-device copy of the n x 784 pixel bytes (from
 * the pinned staging buffer), bytes to float / 255 on the device (cnn_cuda_kernels.cu),
 * the layers on the stream, one device-to-host copy of the n x 10 probabilities, one
 * synchronisation. The tensor descriptors are set for each call's n (host-side calls,
 * cheap); the filter, convolution, pooling and activation descriptors are made once.
 * Every CUDA, cuDNN and cuBLAS call is checked; a failure returns -1 with
 * "cuda: <what>: <error>".
 *
 * Settings (environment, read at load):
 *   FLEET_CLASSIFY_MATH=fp32|tf32     how the convolutions and the dense layer multiply:
 *                                      float32 on the FMA units (default; cuDNN and cuBLAS
 *                                      are kept off TF32), or TF32 tensor cores (opt-in,
 *                                      10-bit mantissas: the self-check then allows 1e-2;
 *                                      products rounded to TF32 move a probability by up
 *                                      to 1.75e-3 on 2,048 random images, float32 ones by
 *                                      8.8e-7, both against float64)
 *   FLEET_CLASSIFY_CONV=fused|separate each convolution with its bias and ReLU in one
 *                                      cudnnConvolutionBiasActivationForward (default), or
 *                                      as three calls (cudnnConvolutionForward,
 *                                      cudnnAddTensor, cudnnActivationForward)
 *   FLEET_CLASSIFY_POISON=1            fill every work buffer (device, and the pinned
 *                                      output) with NaN before each call, so a layer that
 *                                      leaves an element unwritten shows (tests/gpu/)
 *
 * Limits: at most CNN_CUDA_MAX_BATCH images a call (callers split larger batches). One
 * call at a time per model: classify uses the model's buffers.
 */
#ifndef CLASSIFY_CNN_CUDA_H
#define CLASSIFY_CNN_CUDA_H

#include <stddef.h>

#include "cnn.h"

#define CNN_CUDA_MAX_BATCH 1024
#define CNN_CUDA_WORKSPACE_LIMIT ((size_t)256 << 20) /* per convolution algorithm */

extern const cnn_ops cnn_cuda_ops;

/* Nonzero when the CUDA runtime sees at least one GPU (the driver is loaded and
 * CUDA_VISIBLE_DEVICES leaves one); never fails, never allocates device memory. */
int cnn_cuda_present(void);

/* Writes one line to buf saying how a loaded model runs: the math mode, fused or
 * separate convolutions, and each convolution's algorithm with its workspace, e.g.
 * "math fp32, conv fused, conv1 IMPLICIT_PRECOMP_GEMM (0 B of workspace), conv2 ...". */
void cnn_cuda_describe(const void *model, char *buf, size_t len);

#endif
