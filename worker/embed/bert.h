/* bert.h: one BERT sentence encoder, whichever backend runs it.
 *
 * A backend is a constant table of four functions over its own model type. Every backend
 * computes the same thing (bert_cpu.h describes the forward pass, tests/embed/reference.py
 * spells it in torch) from the same model directory:
 *
 *   load(dir) --> embed(ids, lens, n) --> embed(...) --> ... --> free()
 *
 * embed(m, ids, lens, n, out): n sequences, ids[i] holding lens[i] token ids (already
 * tokenized with [CLS]/[SEP] and truncated); each length in [1, max_position_embeddings]
 * and at most max_seqs() sequences per call. Writes n x hidden_size floats to out, row i
 * for sequence i. Returns 0, or -1 with a one-line message in err (out untouched).
 *
 * "cpu" (bert_cpu.c) and "cuda" (bert_cuda.c, built when fleet was configured with the
 * CUDA toolkit) live in the modules fleet-embed-cpu.so and fleet-embed-cuda.so, opened the
 * first time they are asked for (bert_module.h); bert_backend returns NULL when the
 * module cannot be opened or is refused. Programs that link the fleet_embed library (the
 * tests, fleet-embed-bench) may also use bert_cpu_ops directly.
 */
#ifndef EMBED_BERT_H
#define EMBED_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "bert_config.h"

typedef struct bert_ops {
    const char *name; /* "cpu", "cuda" */
    int (*load)(const char *dir, void **model, char *err, size_t errlen);
    const bert_config *(*config)(const void *model);
    /* The most sequences one embed call takes (callers split larger batches). */
    size_t (*max_seqs)(const void *model);
    int (*embed)(void *model, const int32_t *const *ids, const size_t *lens, size_t n, float *out,
                 char *err, size_t errlen);
    void (*free)(void *model); /* accepts NULL */
} bert_ops;

/* In bert_cpu.c: in the fleet_embed library and fleet-embed-cpu.so, not in fleet-worker. */
extern const bert_ops bert_cpu_ops;

/* The backend called name ("cpu", "cuda"), or NULL when unknown or its module does not
 * open; bert_module_open (bert_module.h) says why. */
const bert_ops *bert_backend(const char *name);

/* The backend names, separated by '|': "cpu|cuda" (each there when its module opens). */
const char *bert_backend_names(void);

#endif
