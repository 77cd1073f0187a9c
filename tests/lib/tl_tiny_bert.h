/* tl_tiny_bert.h: a tiny 2-layer BERT model directory for tests (tl_tiny_bert.c), the one
 * tests/embed/reference.py builds from the same PRNG: hidden 32, 4 heads, intermediate
 * 64, vocabulary 100, 64 positions, max_seq_length 64, mean pooling + Normalize.
 * The generator here and the one in reference.py must stay in step. */
#ifndef TL_TINY_BERT_H
#define TL_TINY_BERT_H

#include <stdbool.h>
#include <stddef.h>

#define TL_TINY_HIDDEN 32
#define TL_TINY_LAYERS 2
#define TL_TINY_HEADS 4
#define TL_TINY_INTER 64
#define TL_TINY_VOCAB 100
#define TL_TINY_MAX_POS 64

/* tl_tiny_bert_write writes a fresh model directory tl_tmpdir()/name: config.json,
 * modules.json, 1_Pooling/config.json, sentence_bert_config.json, tokenizer_config.json
 * (do_lower_case true), vocab.txt (TL_TINY_VOCAB lines: [PAD] [UNK] [CLS] [SEP] [MASK],
 * some lowercase words and pieces, then filler) and model.safetensors with F32 or (f16)
 * F16 weights whose names are prefixed with `prefix` ("" or "bert."). Fails the case on
 * an I/O error. Returns the directory (harness-owned). */
const char *tl_tiny_bert_write(const char *name, bool f16, const char *prefix);

/* Writes len bytes to dir/rel, failing the case on an error. */
void tl_write_file(const char *dir, const char *rel, const void *data, size_t len);

#endif
