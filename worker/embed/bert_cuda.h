/* bert_cuda.h: the embed model's forward pass on a CUDA GPU; built only when the CUDA
 * toolkit was found (FLEET_HAVE_CUDA). Same model, same numbers (within 1e-3 relative)
 * as the CPU backend (bert_cpu.h); bert.h is the contract both keep.
 *
 * What load does, once per worker:
 *   - reads the directory like the CPU backend (config, model.safetensors: F32/F16/BF16),
 *     converts the weights to float32 and uploads them in one device allocation, the
 *     query/key/value projections concatenated into one [3H, H] matrix;
 *   - allocates every buffer a call can need (max_seqs sequences of max_seq_length
 *     tokens) plus pinned host buffers, so embed allocates nothing;
 *   - creates one stream, a cuBLAS handle bound to it with a workspace of ours (so cuBLAS
 *     allocates nothing either), and (FLEET_EMBED_SOFTMAX=cudnn) a cuDNN handle;
 *   - checks itself: a few sequences of different lengths, one batch, against the CPU
 *     backend on the same weights; a difference over 1e-3 relative or a NaN refuses the
 *     load (a wrong driver, a broken card or a bad build does not serve wrong numbers).
 *
 * What embed does per call: one host-to-device copy of the token ids and offsets, the
 * kernels of bert_kernels.h and cuBLAS GEMMs on the stream (GEMMs over the real tokens
 * only; attention over the call's longest sequence, padded keys masked out), one
 * device-to-host copy of the pooled vectors, one synchronisation. Every CUDA, cuBLAS and
 * cuDNN call is checked; a failure returns -1 with "cuda: <what>: <error>".
 *
 * Settings (environment, read at load):
 *   FLEET_EMBED_SOFTMAX=own|cudnn   attention softmax: our fused masked kernel (default)
 *                                    or a mask kernel + cudnnSoftmaxForward
 *   FLEET_EMBED_GEMM=fp32|tf32|3xtf32
 *                                    how the linear layers multiply: cuBLAS float32
 *                                    (default); one TF32 tensor-core product (fastest,
 *                                    about 1e-3 less exact; the self-check then allows
 *                                    1e-2); or three TF32 products of split operands
 *                                    (hi*hi + hi*lo + lo*hi: float32 accuracy on tensor
 *                                    cores, weights held three times)
 *   FLEET_EMBED_POISON=1             fill every work buffer with NaN before each call, so
 *                                    a kernel that skips an element shows (tests/gpu/)
 *
 * Limits: a sequence may hold at most min(max_seq_length, max_position_embeddings) tokens
 * (the tokenizer truncates to that); a call at most BERT_CUDA_MAX_SEQS sequences.
 * One model per thread at a time: embed uses the model's buffers.
 */
#ifndef EMBED_BERT_CUDA_H
#define EMBED_BERT_CUDA_H

#include "bert.h"

#define BERT_CUDA_MAX_SEQS 64

extern const bert_ops bert_cuda_ops;

/* Nonzero when the CUDA runtime sees at least one GPU (the driver is loaded and
 * CUDA_VISIBLE_DEVICES leaves one); never fails, never allocates device memory. */
int bert_cuda_present(void);

/* Nonzero when this build has cuDNN (FLEET_EMBED_SOFTMAX=cudnn can be used). */
int bert_cuda_has_cudnn(void);

#endif
