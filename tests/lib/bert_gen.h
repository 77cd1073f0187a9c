/* bert_gen.h: writes a sentence-transformers BERT model directory with PRNG weights, of
 * any shape. Pure C (no test harness), so both the tests (tl_tiny_bert.c, the tiny model
 * that tests/embed/reference.py builds too) and bench/embed_bench.c (a MiniLM-shaped
 * model) use it.
 *
 * Weights come from one splitmix64 stream (seed 42), uniform in base +- 0.1 (base 1 for
 * LayerNorm weights, 0 otherwise), in reference.py's tensor order. This generator and the
 * one in reference.py must stay in step. */
#ifndef TL_BERT_GEN_H
#define TL_BERT_GEN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bert_gen_shape {
    int hidden, layers, heads, inter, vocab, max_pos;
    int max_seq_length; /* sentence_bert_config.json */
} bert_gen_shape;

/* bert_gen_write fills the existing directory `dir`: config.json, modules.json,
 * 1_Pooling/config.json (mean pooling), sentence_bert_config.json,
 * tokenizer_config.json (do_lower_case true), vocab.txt (vocab lines: [PAD] [UNK] [CLS]
 * [SEP] [MASK], some lowercase words and pieces, then [unusedN] filler) and
 * model.safetensors with F32 or (f16) F16 weights whose names are prefixed with `prefix`
 * ("" or "bert."). Returns 0, or -1 with a one-line message in err. */
int bert_gen_write(const char *dir, const bert_gen_shape *shape, bool f16, const char *prefix,
                   char *err, size_t errlen);

#endif
