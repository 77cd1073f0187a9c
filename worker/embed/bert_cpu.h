/* bert_cpu.h: the embed model's forward pass on the CPU, its matrix products in OpenBLAS.
 *
 * A sentence-transformers BERT (all-MiniLM-L6-v2 and anything shaped like it):
 *
 *   ids --> word + position + token_type(0) embeddings --> LayerNorm
 *       --> N x [ self-attention (padded keys never seen) --> +residual --> LayerNorm
 *                 --> dense --> GELU(erf) --> dense --> +residual --> LayerNorm ]
 *       --> mean over the sequence's real tokens --> / max(||v||, 1e-12) (if Normalize)
 *
 * This is the reference for correctness (tests/embed/reference.py computes the same with
 * torch; tests/unit/bert_cpu_test.c holds it to 1e-4 relative); other backends implement
 * the same three functions.
 *
 * Products: every linear layer is one cblas_sgemm over all the call's tokens (query, key
 * and value stacked into one); attention is two sgemms per sequence and head (scores =
 * q k^T, ctx = p v) on strided views of the packed rows. Softmax, GELU and pooling are
 * plain loops; LayerNorm and pooling statistics are summed in double.
 *
 * Batches: the sequences of one call are packed end to end (no padding rows at all), and
 * attention runs per sequence over its own tokens, so no sequence sees another's. A
 * sequence's vector alone and in any batch agrees within 1e-6 relative (not bit for bit:
 * OpenBLAS may block or split a product differently for a different number of rows).
 *
 * Threads: OpenBLAS's own pool, sized by OPENBLAS_NUM_THREADS (read at process start;
 * default one per online CPU), or by FLEET_CPU_THREADS=N, which bert_cpu_load
 * applies with openblas_set_num_threads (process-wide; a value outside [1, 1024] fails
 * the load).
 *
 * Errors: 0 or -1; on -1 `err` holds a one-line message (errlen bytes, truncated as
 * snprintf does), e.g. "config.json: cannot read: ..." or "safetensors: DIR/model.
 * safetensors: ...", "embed: sequence 3: id 40000 outside the vocabulary (30522)".
 *
 * Ownership: a bert_cpu owns F32 copies of every weight (converted from F32, F16
 * or BF16 once at load; linear weights kept [out, in] as in the checkpoint); the safetensors
 * mapping is closed before bert_cpu_load returns. bert_cpu_embed allocates
 * its scratch per call and only reads the model, so threads may share one model.
 */
#ifndef EMBED_BERT_CPU_H
#define EMBED_BERT_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "bert.h"
#include "bert_config.h"

/* The most sequences per bert_cpu_embed call through bert_cpu_ops (a direct
 * call takes any number; this keeps progress reports and cancel checks frequent). */
#define BERT_CPU_MAX_SEQS 32

typedef struct bert_cpu bert_cpu;

/* bert_cpu_load reads the model directory `dir` (bert_config_load), opens
 * dir/model.safetensors, checks its tensors against the config (bert_check_tensors)
 * and converts them to F32. */
int bert_cpu_load(const char *dir, bert_cpu **out, char *err, size_t errlen);

/* The configuration the model was loaded with; lives as long as the model. */
const bert_config *bert_cpu_config(const bert_cpu *m);

/* bert_cpu_embed embeds n sequences: ids[i] holds lens[i] token ids, already
 * tokenized with [CLS]/[SEP] and truncated. Each length must be in
 * [1, max_position_embeddings], each id in [0, vocab_size). Writes n x hidden_size floats
 * to `out`, row i for sequence i: mean-pooled over its tokens, L2-normalised when the
 * model lists a Normalize module. Token type ids are all 0. n == 0 does nothing. On -1
 * `out` is untouched. */
int bert_cpu_embed(bert_cpu *m, const int32_t *const *ids, const size_t *lens, size_t n, float *out,
                   char *err, size_t errlen);

/* The threads OpenBLAS uses for one product now (after FLEET_CPU_THREADS, if a load
 * applied it). */
int bert_cpu_threads(void);

/* Accepts NULL. */
void bert_cpu_free(bert_cpu *m);

#endif
