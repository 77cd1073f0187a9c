/* minilm_test: the embed model on the real all-MiniLM-L6-v2 weights against the model's
 * published outputs:
 *
 *   - cosine similarities of "The weather is lovely today.", "It's so sunny outside!",
 *     "He drove to the stadium.": [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411],
 *     [0.1046, 0.1411, 1]], within 1e-3;
 *   - "hello world" -> first five values [-0.034478, 0.03102, 0.00673, 0.02611,
 *     -0.039362], within 1e-3.
 *
 * The weights (model.safetensors, 90.9 MB) are not in the repository and cannot be
 * fetched by the tests: the directory comes from FLEET_MINILM_DIR, else
 * ../shared/models/all-MiniLM-L6-v2 when it holds model.safetensors; without either the
 * test says "skipped". Every backend of the build whose device is present runs it (the
 * CPU always, CUDA when there is a GPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "testlib.h"
#include "tokenizer.h"

#include "bert_module.h"

#define SHARED_DIR TEST_SOURCE_DIR "/../shared/models/all-MiniLM-L6-v2"

static const char *model_dir(void) {
    const char *env = getenv("FLEET_MINILM_DIR");
    if (env && env[0]) return env;
    if (access(SHARED_DIR "/model.safetensors", R_OK) == 0) return SHARED_DIR;
    return NULL;
}

static void vocab_free_cb(void *v) { tok_vocab_free(v); }

/* Embeds texts[0..n) with the backend into out (n x 384). */
static void embed_texts(const bert_ops *ops, const char *dir, const char *const *texts, size_t n,
                        float *out) {
    char err[512] = "";
    tok_vocab *v = NULL;
    if (tok_vocab_load(tl_printf("%s/vocab.txt", dir), &v, err, sizeof err) != 0)
        FAILF("vocab: %s", err);
    tl_defer(vocab_free_cb, v);
    void *m = NULL;
    if (ops->load(dir, &m, err, sizeof err) != 0) FAILF("%s backend: %s", ops->name, err);
    const bert_config *c = ops->config(m);
    ASSERT_EQ_INT(c->hidden_size, 384);
    tok_opts o = {.lower_case = c->do_lower_case, .max_len = (size_t)c->max_seq_length};
    int32_t ids[8][256];
    const int32_t *rows[8];
    size_t lens[8];
    ASSERT_TRUE(n <= 8);
    for (size_t i = 0; i < n; i++) {
        long k = tok_encode(v, &o, texts[i], strlen(texts[i]), ids[i], 256, err, sizeof err);
        if (k < 0) FAILF("tokenize: %s", err);
        rows[i] = ids[i];
        lens[i] = (size_t)k;
    }
    int rc = ops->embed(m, rows, lens, n, out, err, sizeof err);
    ops->free(m);
    if (rc != 0) FAILF("%s backend: %s", ops->name, err);
}

static double cosine(const float *a, const float *b) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < 384; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    return ab / sqrt(aa * bb);
}

static void published_outputs(const char *backend) {
    const char *dir = model_dir();
    if (!dir)
        TL_SKIP("skipped: the real all-MiniLM-L6-v2 weights are not present (set "
                "FLEET_MINILM_DIR to a directory holding them)");
    const bert_ops *ops = &bert_cpu_ops;
    if (strcmp(backend, "cuda") == 0) {
        /* The CUDA backend is the module the build wrote next to the fleet binaries. */
        char err[512];
        bert_module_use("cuda", TL_BIN_DIR "/fleet-embed-cuda.so");
        const bert_module *m = bert_module_open("cuda", err, sizeof err);
        if (!m) TL_SKIP("skipped: no CUDA backend: %s", err);
        if (!m->present()) TL_SKIP("skipped: no GPU");
        ops = m->ops;
    }
    static const char *const texts[] = {"The weather is lovely today.", "It's so sunny outside!",
                                        "He drove to the stadium.", "hello world"};
    float out[4 * 384];
    embed_texts(ops, dir, texts, 4, out);
    static const double want_sim[3][3] = {{1, 0.6660, 0.1046},
                                          {0.6660, 1, 0.1411},
                                          {0.1046, 0.1411, 1}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double s = cosine(out + i * 384, out + j * 384);
            if (fabs(s - want_sim[i][j]) > 1e-3)
                FAILF("%s: cosine(%d, %d) = %.5f, published %.4f", backend, i, j, s,
                      want_sim[i][j]);
        }
    static const double want_hello[5] = {-0.034478, 0.03102, 0.00673, 0.02611, -0.039362};
    for (int j = 0; j < 5; j++)
        if (fabs(out[3 * 384 + j] - want_hello[j]) > 1e-3)
            FAILF("%s: \"hello world\"[%d] = %.6f, published %.6f", backend, j, out[3 * 384 + j],
                  want_hello[j]);
}

TL_TEST(cpu_matches_published_outputs) { published_outputs("cpu"); }
TL_TEST(cuda_matches_published_outputs) { published_outputs("cuda"); }

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(cpu_matches_published_outputs),
        TL_CASE(cuda_matches_published_outputs),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
