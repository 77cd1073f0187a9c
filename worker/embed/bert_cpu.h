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
 * Products: every linear layer is one product per block of rows (query, key and value
 * stacked into one layer); attention is two products per sequence and head (scores =
 * q k^T, ctx = p v) on strided views of the packed rows. On x86-64 CPUs with AVX-512 they
 * run on bert_cpu.c's own kernel, the layers' weights packed for it once at load;
 * elsewhere on OpenBLAS's cblas_sgemm. Softmax, GELU, LayerNorm and pooling are row
 * loops written to vectorize (exp and erf as branch-free polynomials); LayerNorm and
 * pooling statistics are summed in double.
 *
 * Batches: the sequences of one call are packed end to end (no padding rows at all), and
 * attention runs per sequence over its own tokens, so no sequence sees another's. A
 * sequence's vector alone and in any batch, on any number of threads, agrees within 1e-6
 * relative; with the AVX-512 kernel bit for bit (a row's sums never depend on the other
 * rows), with OpenBLAS not quite (it may block a product differently for a different
 * number of rows).
 *
 * Threads: the model's own pool (cpu_pool.h) of FLEET_CPU_THREADS threads (the caller's
 * included; a value outside [1, 1024] fails the load); without it, OPENBLAS_NUM_THREADS
 * (as before the pool, when it sized OpenBLAS's threads), else one per CPU the process
 * may use (its affinity mask).
 * Each linear layer is split by blocks of rows, each block's bias, GELU or residual +
 * LayerNorm done by the same thread while its rows are in cache; attention by (sequence,
 * head); the embeddings by rows; pooling by sequence. OpenBLAS itself runs on one thread
 * (openblas_set_num_threads(1) at the first load, process-wide), inside the pool's tasks,
 * so the cores are never oversubscribed. Between calls the pool's threads sleep.
 *
 * Errors: 0 or -1; on -1 `err` holds a one-line message (errlen bytes, truncated as
 * snprintf does), e.g. "config.json: cannot read: ..." or "safetensors: DIR/model.
 * safetensors: ...", "embed: sequence 3: id 40000 outside the vocabulary (30522)".
 *
 * Ownership: a bert_cpu owns F32 copies of every weight (converted from F32, F16
 * or BF16 once at load; linear weights kept [out, in] as in the checkpoint, or only in
 * the kernel's packed order where it is used, padded to 32 outputs), its thread
 * pool, and its scratch memory, which grows to the largest call seen and is kept until
 * bert_cpu_free; the safetensors mapping is closed before bert_cpu_load returns. Threads
 * may share one model: bert_cpu_embed takes the model's mutex, so calls run one at a
 * time, each with all the pool's threads.
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

/* The threads a model loaded now would use for its forward pass (as above; an invalid
 * FLEET_CPU_THREADS, which fails a load, counts as unset here). */
int bert_cpu_threads(void);

/* Accepts NULL. */
void bert_cpu_free(bert_cpu *m);

#endif
