/* tl_tiny_bert.c: the tiny BERT model directory of tl_tiny_bert.h, written by the
 * harness-free generator bert_gen.c (shared with bench/embed_bench.c), which documents
 * the PRNG. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bert_gen.h"
#include "testlib.h"
#include "tl_tiny_bert.h"

enum {
    HIDDEN = TL_TINY_HIDDEN,
    LAYERS = TL_TINY_LAYERS,
    HEADS = TL_TINY_HEADS,
    INTER = TL_TINY_INTER,
    VOCAB = TL_TINY_VOCAB,
    MAX_POS = TL_TINY_MAX_POS,
};

void tl_write_file(const char *dir, const char *rel, const void *data, size_t len) {
    const char *path = tl_printf("%s/%s", dir, rel);
    FILE *f = fopen(path, "wb");
    if (!f) FAILF("cannot write %s", path);
    ASSERT_EQ_INT(fwrite(data, 1, len, f), len);
    ASSERT_EQ_INT(fclose(f), 0);
}

const char *tl_tiny_bert_write(const char *name, bool f16, const char *prefix) {
    const char *dir = tl_printf("%s/%s", tl_tmpdir(), name);
    ASSERT_EQ_INT(mkdir(dir, 0755), 0);
    static const bert_gen_shape tiny = {
        .hidden = HIDDEN,
        .layers = LAYERS,
        .heads = HEADS,
        .inter = INTER,
        .vocab = VOCAB,
        .max_pos = MAX_POS,
        .max_seq_length = 64,
    };
    char err[512] = "";
    if (bert_gen_write(dir, &tiny, f16, prefix, err, sizeof err) != 0) FAILF("tiny BERT: %s", err);
    return dir;
}
