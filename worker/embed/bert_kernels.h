/* bert_kernels.h: the CUDA kernels of the embed model's GPU backend (bert_kernels.cu),
 * callable from C. bert_cuda.c calls them in the order of the forward pass; cuBLAS does
 * the GEMMs in between.
 *
 * Layouts (row-major, float32, device memory):
 *   packed   [T, width]             one row per real token; sequence b holds rows
 *                                   [start[b], start[b] + len[b]); T = sum of len
 *   padded   [B * heads, L, d]      per sequence and head, L = the call's longest
 *                                   sequence; rows i >= len[b] are zero
 *   scores   [B * heads, L, L]      attention scores, then probabilities
 * Per token (packed): tok_seq[t] = b, tok_pos[t] = i (its position in sequence b).
 *
 * Every function launches on `stream` and returns the launch's cudaError_t as an int (0
 * is success); errors during execution surface at the next synchronising call.
 */
#ifndef EMBED_BERT_KERNELS_H
#define EMBED_BERT_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *fbk_stream;

/* x[t] = LayerNorm(word[ids[t]] + position[tok_pos[t]] + type0) (gamma g, beta b). */
int fbk_embed_layernorm(const int32_t *ids, const int32_t *tok_pos, int T, int H, const float *word,
                        const float *position, const float *type0, const float *g, const float *b,
                        float eps, float *x, fbk_stream stream);

/* x[t] = LayerNorm(x[t] + y[t] + bias) (gamma g, beta b): a linear layer's bias, the
 * residual and the norm in one pass. */
int fbk_bias_residual_layernorm(float *x, const float *y, const float *bias, int T, int H,
                                const float *g, const float *b, float eps, fbk_stream stream);

/* y[t, j] = GELU(y[t, j] + bias[j]), the exact erf form, in place; y is [T, I]. */
int fbk_bias_gelu(float *y, const float *bias, int T, int I, fbk_stream stream);

/* Splits the fused projection qkv [T, 3H] (+ bias [3H]) into padded q, k, v
 * [B * heads, L, d]; q is multiplied by `scale` (1/sqrt(d)); padding rows are zeroed. */
int fbk_split_heads(const float *qkv, const float *bias, const int32_t *start, const int32_t *len,
                    int B, int L, int heads, int d, float scale, float *q, float *k, float *v,
                    fbk_stream stream);

/* Softmax over each row of scores [B * heads, L, L] in place, keys j >= len[b] masked
 * out (probability 0). */
int fbk_masked_softmax(float *scores, const int32_t *len, int B, int heads, int L,
                       fbk_stream stream);

/* Sets scores[bh, i, j] = -inf for j >= len[b]: the mask alone, for cuDNN's softmax. */
int fbk_mask_scores(float *scores, const int32_t *len, int B, int heads, int L, fbk_stream stream);

/* Gathers the padded context [B * heads, L, d] back to packed rows out [T, heads * d]. */
int fbk_merge_heads(const float *ctx, const int32_t *tok_seq, const int32_t *tok_pos, int T, int L,
                    int heads, int d, float *out, fbk_stream stream);

/* out[b] = mean of x's rows [start[b], start[b] + len[b]), divided by max(||.||, 1e-12)
 * when normalize; out is [B, H]. */
int fbk_mean_pool(const float *x, const int32_t *start, const int32_t *len, int B, int H,
                  int normalize, float *out, fbk_stream stream);

/* Splits x[0..n) into hi = x rounded to TF32 (10-bit mantissa, to nearest; exact as a
 * TF32 input) and lo = x - hi (exact in float32; the tensor cores round it to TF32,
 * which costs about 2^-22 relative of x): three TF32 GEMMs (hi*hi + hi*lo + lo*hi)
 * then give float32 accuracy on tensor cores. hi may be x itself (in place). */
int fbk_split_tf32(const float *x, long n, float *hi, float *lo, fbk_stream stream);

/* Sets n floats to NaN: poisons a buffer so that a kernel that skips an element shows. */
int fbk_poison(float *p, long n, fbk_stream stream);

#ifdef __cplusplus
}
#endif

#endif
