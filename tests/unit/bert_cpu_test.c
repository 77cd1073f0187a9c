/* bert_cpu_test: the CPU forward pass (worker/embed/bert_cpu.c) on a tiny 2-layer BERT
 * whose weights come from a documented PRNG, against golden vectors that
 * tests/embed/reference.py computed with torch from the same PRNG (see its header for
 * the model, the PRNG and the command that regenerates tests/embed/tiny_golden.txt).
 * The generator (tests/lib/tl_tiny_bert.c) and the one in reference.py must stay in step. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert_cpu.h"
#include "bert_gen.h"
#include "safetensors.h"
#include "testlib.h"
#include "tl_tiny_bert.h"

/* OpenBLAS's thread count (cblas.h is not on this test's include path). */
int openblas_get_num_threads(void);

#define GOLDEN_PATH TEST_SOURCE_DIR "/tests/embed/tiny_golden.txt"

enum {
    HIDDEN = TL_TINY_HIDDEN,
    LAYERS = TL_TINY_LAYERS,
    HEADS = TL_TINY_HEADS,
    INTER = TL_TINY_INTER,
    VOCAB = TL_TINY_VOCAB,
    MAX_POS = TL_TINY_MAX_POS,
    NSEQ = 5
};
static const size_t seq_lens[NSEQ] = {3, 7, 12, 20, 5};

/* ------------------------------------------------------------ the tiny model ------ */

/* The model directory comes from tests/lib/tl_tiny_bert.c (shared with the embed
 * integration test). The faults case rewrites config.json with write_text. */
static void write_text(const char *dir, const char *rel, const char *text) {
    tl_write_file(dir, rel, text, strlen(text));
}

/* reference.py's sequences: [2, 4 + (37 s + 11 j) % 96 ..., 3]. */
static int32_t *tiny_seq(size_t s) {
    size_t n = seq_lens[s];
    int32_t *ids = tl_alloc(n * sizeof *ids);
    for (size_t j = 0; j < n; j++)
        ids[j] = j == 0 ? 2 : j == n - 1 ? 3 : (int32_t)(4 + (37 * s + 11 * j) % 96);
    return ids;
}

/* ------------------------------------------------------------ comparing ---------- */

static float *read_golden(void) {
    size_t len;
    char *text = tl_read_file(GOLDEN_PATH, &len);
    if (!text) FAILF("cannot read %s", GOLDEN_PATH);
    float *g = tl_alloc(NSEQ * HIDDEN * sizeof *g);
    char *p = text;
    for (int i = 0; i < NSEQ * HIDDEN; i++) {
        char *end;
        g[i] = strtof(p, &end);
        if (end == p) FAILF("%s: value %d missing or malformed", GOLDEN_PATH, i);
        p = end;
    }
    return g;
}

/* max |a - b| / max |b| over n values. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0 ? md / mb : md;
}

static bert_cpu *load_ok(const char *dir) {
    bert_cpu *m;
    char err[512] = "";
    if (bert_cpu_load(dir, &m, err, sizeof err) != 0) FAILF("load %s: %s", dir, err);
    return m;
}

/* How close a sequence's vector in a batch must be to its vector alone (bert_cpu.h: BLAS
 * may round a product differently for another number of rows, so not bit for bit). */
#define BATCH_TOL 1e-6

/* Embeds the sequences one by one and all in one batch; checks both against the goldens
 * (within tol) and the batch against the singles (within BATCH_TOL). */
static void check_model(const char *dir, double tol) {
    bert_cpu *m = load_ok(dir);
    ASSERT_EQ_INT(bert_cpu_config(m)->hidden_size, HIDDEN);
    const float *golden = read_golden();
    const int32_t *ids[NSEQ];
    for (size_t s = 0; s < NSEQ; s++) ids[s] = tiny_seq(s);
    char err[512] = "";
    float *single = tl_alloc(NSEQ * HIDDEN * sizeof *single);
    float *batch = tl_alloc(NSEQ * HIDDEN * sizeof *batch);
    double worst = 0;
    for (size_t s = 0; s < NSEQ; s++) {
        if (bert_cpu_embed(m, &ids[s], &seq_lens[s], 1, single + s * HIDDEN, err, sizeof err) != 0)
            FAILF("embed %zu: %s", s, err);
        double d = rel_diff(single + s * HIDDEN, golden + s * HIDDEN, HIDDEN);
        tl_log("sequence %zu (len %zu): relative difference to golden %.3g", s, seq_lens[s], d);
        if (d > tol) FAILF("sequence %zu differs from the golden by %.3g (> %.3g)", s, d, tol);
        worst = fmax(worst, d);
        double norm = 0;
        for (int j = 0; j < HIDDEN; j++)
            norm += (double)single[s * HIDDEN + j] * single[s * HIDDEN + j];
        ASSERT_TRUE(fabs(sqrt(norm) - 1.0) < 1e-5);
    }
    if (bert_cpu_embed(m, ids, seq_lens, NSEQ, batch, err, sizeof err) != 0)
        FAILF("embed batch: %s", err);
    double dbatch = rel_diff(batch, single, NSEQ * HIDDEN);
    double dgold = rel_diff(batch, golden, NSEQ * HIDDEN);
    tl_log("max relative difference: singles vs golden %.3g, batch vs golden %.3g, batch vs "
           "singles %.3g",
           worst, dgold, dbatch);
    if (dbatch > BATCH_TOL) FAILF("batch differs from singles by %.3g", dbatch);
    if (dgold > tol) FAILF("batch differs from the golden by %.3g", dgold);
    /* Another order (longest first) gives the same rows. */
    const int32_t *rids[NSEQ];
    size_t rlens[NSEQ];
    for (size_t s = 0; s < NSEQ; s++) {
        rids[s] = ids[NSEQ - 1 - s];
        rlens[s] = seq_lens[NSEQ - 1 - s];
    }
    ASSERT_EQ_INT(bert_cpu_embed(m, rids, rlens, NSEQ, batch, err, sizeof err), 0);
    for (size_t s = 0; s < NSEQ; s++)
        ASSERT_TRUE(rel_diff(batch + s * HIDDEN, single + (NSEQ - 1 - s) * HIDDEN, HIDDEN) <=
                    BATCH_TOL);
    bert_cpu_free(m);
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(f32_matches_torch_reference) { check_model(tl_tiny_bert_write("f32", false, ""), 1e-4); }

TL_TEST(bert_prefixed_names_match_too) {
    check_model(tl_tiny_bert_write("prefixed", false, "bert."), 1e-4);
}

TL_TEST(f16_weights_are_close) {
    check_model(tl_tiny_bert_write("f16", true, ""), 3e-3); /* measured 7e-4 */
}

/* A text gives the same vector alone and inside a large batch of mixed lengths (1 to 64
 * tokens, 200 sequences, so the products have thousands of rows): attention never
 * crosses sequences, and BLAS rounding stays within BATCH_TOL. */
TL_TEST(same_vector_alone_and_in_a_mixed_batch) {
    enum { N = 200 };
    bert_cpu *m = load_ok(tl_tiny_bert_write("mixed", false, ""));
    const int32_t *ids[N];
    size_t lens[N];
    uint64_t state = 1;
    for (size_t s = 0; s < N; s++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        lens[s] = s % 3 == 0 ? MAX_POS : 1 + (size_t)((state >> 33) % MAX_POS);
        int32_t *seq = tl_alloc(lens[s] * sizeof *seq);
        for (size_t j = 0; j < lens[s]; j++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            seq[j] = j == 0 ? 2 : j == lens[s] - 1 ? 3 : (int32_t)(4 + (state >> 33) % 96);
        }
        ids[s] = seq;
    }
    char err[512] = "";
    float *batch = tl_alloc((size_t)N * HIDDEN * sizeof *batch);
    float one[HIDDEN];
    if (bert_cpu_embed(m, ids, lens, N, batch, err, sizeof err) != 0) FAILF("embed batch: %s", err);
    double worst = 0;
    for (size_t s = 0; s < N; s++) {
        if (bert_cpu_embed(m, &ids[s], &lens[s], 1, one, err, sizeof err) != 0)
            FAILF("embed %zu: %s", s, err);
        double d = rel_diff(batch + s * HIDDEN, one, HIDDEN);
        if (d > BATCH_TOL)
            FAILF("sequence %zu (len %zu): batch differs from alone by %.3g", s, lens[s], d);
        worst = fmax(worst, d);
    }
    tl_log("%d sequences: worst relative difference, batch vs alone, %.3g", N, worst);
    bert_cpu_free(m);
}

TL_TEST(faults_are_named) {
    char err[512] = "";
    bert_cpu *m = (bert_cpu *)&err; /* must be reset to NULL on failure */

    const char *dir = tl_tiny_bert_write("nofile", false, "");
    ASSERT_EQ_INT(unlink(tl_printf("%s/model.safetensors", dir)), 0);
    ASSERT_EQ_INT(bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_NULL(m);
    tl_log("refused: %s", err);
    ASSERT_STR_CONTAINS(err, "model.safetensors");
    ASSERT_STR_CONTAINS(err, "No such file");

    dir = tl_tiny_bert_write("noconfig", false, "");
    ASSERT_EQ_INT(unlink(tl_printf("%s/config.json", dir)), 0);
    ASSERT_EQ_INT(bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "config.json: cannot read");

    /* Weights that do not fit the config: vocabulary 101 in config.json. */
    dir = tl_tiny_bert_write("mismatch", false, "");
    write_text(dir, "config.json",
               tl_printf("{\"model_type\": \"bert\", \"hidden_size\": %d, "
                         "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                         "\"intermediate_size\": %d, \"max_position_embeddings\": %d, "
                         "\"vocab_size\": 101, \"type_vocab_size\": 2, "
                         "\"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}",
                         HIDDEN, LAYERS, HEADS, INTER, MAX_POS));
    ASSERT_EQ_INT(bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "embeddings.word_embeddings.weight has shape [100, 32]");

    /* Bad inputs to embed; out is left alone. */
    m = load_ok(tl_tiny_bert_write("ok", false, ""));
    float out[2 * HIDDEN];
    for (int i = 0; i < 2 * HIDDEN; i++) out[i] = 7.0f;
    int32_t good[] = {2, 5, 3}, bad[] = {2, 100, 3};
    const int32_t *ids[2] = {good, bad};
    size_t lens[2] = {3, 3};
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: id 100 outside the vocabulary (100)");
    bad[1] = -1;
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "id -1 outside");
    lens[1] = 0;
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: length 0, must be in [1, 64]");
    int32_t *longer = tl_alloc(65 * sizeof *longer);
    for (int i = 0; i < 65; i++) longer[i] = 5;
    ids[1] = longer;
    lens[1] = 65;
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: length 65, must be in [1, 64]");
    for (int i = 0; i < 2 * HIDDEN; i++) ASSERT_TRUE(out[i] == 7.0f);
    /* The full 64 positions work; n == 0 does nothing. */
    lens[1] = 64;
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), 0);
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, lens, 0, NULL, err, sizeof err), 0);
    bert_cpu_free(m);
    bert_cpu_free(NULL);
}

/* ------------------------------------------------------------ odd shapes --------- */

/* A model whose sizes are multiples of nothing the kernels work in (hidden 40 = 2.5
 * vector registers, head size 10, intermediate 72) and whose positions allow sequences of
 * 127 and 129 tokens (one either side of a multiple of 8, 16 and 32). */
static const bert_gen_shape odd_shape = {
    .hidden = 40,
    .layers = 2,
    .heads = 4,
    .inter = 72,
    .vocab = 100,
    .max_pos = 160,
    .max_seq_length = 160,
};

static const char *odd_model(void) {
    const char *dir = tl_printf("%s/odd", tl_tmpdir());
    char err[512] = "";
    if (mkdir(dir, 0755) != 0) FAILF("mkdir %s: %s", dir, strerror(errno));
    if (bert_gen_write(dir, &odd_shape, false, "", err, sizeof err) != 0)
        FAILF("bert_gen_write: %s", err);
    return dir;
}

/* The forward pass again, plainly and in double (exact erf and exp), from the same
 * safetensors file: what the fast paths (vector kernels, row blocks, threads) must
 * agree with. */
typedef struct ref_model {
    st_file *st;
    size_t h, inter, heads;
    int layers;
    double eps;
} ref_model;

static void ref_close(void *st) { st_close(st); }

static const float *ref_tensor(const ref_model *r, const char *name) {
    const st_tensor *t = st_find(r->st, name);
    if (!t) FAILF("tensor %s missing", name);
    float *f = tl_alloc(t->nbytes / st_dtype_size(t->dtype) * sizeof *f);
    char err[256];
    if (st_read_f32(t, f, err, sizeof err) != 0) FAILF("%s", err);
    return f;
}

/* y[rows, out] = x[rows, in] w^T + b, w [out, in]. */
static void ref_linear(const double *x, size_t rows, size_t in, const float *w, const float *b,
                       size_t out, double *y) {
    for (size_t t = 0; t < rows; t++)
        for (size_t o = 0; o < out; o++) {
            double acc = b[o];
            for (size_t k = 0; k < in; k++) acc += x[t * in + k] * (double)w[o * in + k];
            y[t * out + o] = acc;
        }
}

static void ref_norm(double *x, size_t rows, size_t h, const float *w, const float *b, double eps) {
    for (size_t t = 0; t < rows; t++) {
        double *xr = x + t * h, mean = 0, var = 0;
        for (size_t j = 0; j < h; j++) mean += xr[j];
        mean /= (double)h;
        for (size_t j = 0; j < h; j++) var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)h;
        for (size_t j = 0; j < h; j++) xr[j] = (xr[j] - mean) / sqrt(var + eps) * w[j] + b[j];
    }
}

static void ref_embed(const ref_model *r, const int32_t *ids, size_t n, float *out) {
    size_t h = r->h, d = h / r->heads;
    const float *word = ref_tensor(r, "embeddings.word_embeddings.weight");
    const float *pos = ref_tensor(r, "embeddings.position_embeddings.weight");
    const float *type = ref_tensor(r, "embeddings.token_type_embeddings.weight");
    double *x = tl_alloc(n * h * sizeof *x), *qkv[3], *ctx = tl_alloc(n * h * sizeof *ctx);
    double *tmp = tl_alloc(n * h * sizeof *tmp), *mid = tl_alloc(n * r->inter * sizeof *mid);
    double *p = tl_alloc(n * sizeof *p);
    for (int i = 0; i < 3; i++) qkv[i] = tl_alloc(n * h * sizeof *qkv[i]);
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < h; j++)
            x[t * h + j] = (double)word[(size_t)ids[t] * h + j] + pos[t * h + j] + type[j];
    ref_norm(x, n, h, ref_tensor(r, "embeddings.LayerNorm.weight"),
             ref_tensor(r, "embeddings.LayerNorm.bias"), r->eps);
    static const char *qkv_names[3] = {"query", "key", "value"};
    for (int l = 0; l < r->layers; l++) {
#define W(fmt) ref_tensor(r, tl_printf("encoder.layer.%d." fmt, l))
        for (int i = 0; i < 3; i++)
            ref_linear(x, n, h,
                       ref_tensor(r, tl_printf("encoder.layer.%d.attention.self.%s.weight", l,
                                               qkv_names[i])),
                       ref_tensor(r, tl_printf("encoder.layer.%d.attention.self.%s.bias", l,
                                               qkv_names[i])),
                       h, qkv[i]);
        for (size_t hd = 0; hd < r->heads; hd++)
            for (size_t i = 0; i < n; i++) {
                double max = -INFINITY, sum = 0;
                for (size_t j = 0; j < n; j++) {
                    double sc = 0;
                    for (size_t k = 0; k < d; k++)
                        sc += qkv[0][i * h + hd * d + k] * qkv[1][j * h + hd * d + k];
                    p[j] = sc / sqrt((double)d);
                    max = fmax(max, p[j]);
                }
                for (size_t j = 0; j < n; j++) sum += (p[j] = exp(p[j] - max));
                for (size_t k = 0; k < d; k++) {
                    double acc = 0;
                    for (size_t j = 0; j < n; j++) acc += p[j] / sum * qkv[2][j * h + hd * d + k];
                    ctx[i * h + hd * d + k] = acc;
                }
            }
        ref_linear(ctx, n, h, W("attention.output.dense.weight"), W("attention.output.dense.bias"),
                   h, tmp);
        for (size_t i = 0; i < n * h; i++) x[i] += tmp[i];
        ref_norm(x, n, h, W("attention.output.LayerNorm.weight"),
                 W("attention.output.LayerNorm.bias"), r->eps);
        ref_linear(x, n, h, W("intermediate.dense.weight"), W("intermediate.dense.bias"), r->inter,
                   mid);
        for (size_t i = 0; i < n * r->inter; i++)
            mid[i] = 0.5 * mid[i] * (1.0 + erf(mid[i] / sqrt(2.0)));
        ref_linear(mid, n, r->inter, W("output.dense.weight"), W("output.dense.bias"), h, tmp);
        for (size_t i = 0; i < n * h; i++) x[i] += tmp[i];
        ref_norm(x, n, h, W("output.LayerNorm.weight"), W("output.LayerNorm.bias"), r->eps);
#undef W
    }
    double norm2 = 0, *mean = tl_alloc(h * sizeof *mean);
    for (size_t j = 0; j < h; j++) {
        for (size_t t = 0; t < n; t++) mean[j] += x[t * h + j];
        mean[j] /= (double)n;
        norm2 += mean[j] * mean[j];
    }
    for (size_t j = 0; j < h; j++) out[j] = (float)(mean[j] / fmax(sqrt(norm2), 1e-12));
}

/* Sequences of 1, 3, 127 and 129 tokens among others, in one mixed batch, on 1 and on 3
 * threads, alone and together: every vector within 1e-4 relative of the double
 * reference (the goldens' tolerance), and within BATCH_TOL of each other. */
TL_TEST(odd_lengths_and_threads_match_a_double_reference) {
    enum { N = 8 };
    static const size_t lens[N] = {1, 3, 127, 129, 2, 16, 33, 64};
    const char *dir = odd_model();
    const size_t h = (size_t)odd_shape.hidden;
    const int32_t *ids[N];
    uint64_t state = 5;
    for (size_t s = 0; s < N; s++) {
        int32_t *seq = tl_alloc(lens[s] * sizeof *seq);
        for (size_t j = 0; j < lens[s]; j++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            seq[j] = j == 0 ? 2 : j == lens[s] - 1 ? 3 : (int32_t)(4 + (state >> 33) % 96);
        }
        ids[s] = seq;
    }
    ref_model r = {.h = h,
                   .inter = (size_t)odd_shape.inter,
                   .heads = (size_t)odd_shape.heads,
                   .layers = odd_shape.layers,
                   .eps = 1e-12};
    char err[512] = "";
    if (st_open(tl_printf("%s/model.safetensors", dir), &r.st, err, sizeof err) != 0)
        FAILF("%s", err);
    tl_defer(ref_close, r.st);
    float *ref = tl_alloc(N * h * sizeof *ref);
    for (size_t s = 0; s < N; s++) ref_embed(&r, ids[s], lens[s], ref + s * h);

    float *got[2][2]; /* [1 thread, 3 threads][alone, batch] */
    static const char *threads[2] = {"1", "3"};
    for (int t = 0; t < 2; t++) {
        ASSERT_EQ_INT(setenv("FLEET_CPU_THREADS", threads[t], 1), 0);
        bert_cpu *m = load_ok(dir);
        ASSERT_EQ_INT(bert_cpu_threads(), atoi(threads[t]));
        got[t][0] = tl_alloc(N * h * sizeof(float));
        got[t][1] = tl_alloc(N * h * sizeof(float));
        for (size_t s = 0; s < N; s++)
            if (bert_cpu_embed(m, &ids[s], &lens[s], 1, got[t][0] + s * h, err, sizeof err) != 0)
                FAILF("embed %zu: %s", s, err);
        if (bert_cpu_embed(m, ids, lens, N, got[t][1], err, sizeof err) != 0)
            FAILF("embed batch: %s", err);
        bert_cpu_free(m);
    }
    double worst = 0;
    for (int t = 0; t < 2; t++)
        for (int b = 0; b < 2; b++)
            for (size_t s = 0; s < N; s++) {
                double d = rel_diff(got[t][b] + s * h, ref + s * h, h);
                if (d > 1e-4)
                    FAILF("%s thread(s), %s: sequence of %zu tokens differs from the reference by "
                          "%.3g",
                          threads[t], b ? "batch" : "alone", lens[s], d);
                worst = fmax(worst, d);
                double e = rel_diff(got[t][b] + s * h, got[0][0] + s * h, h);
                if (e > BATCH_TOL)
                    FAILF("%s thread(s), %s: sequence of %zu tokens differs from 1 thread alone "
                          "by %.3g",
                          threads[t], b ? "batch" : "alone", lens[s], e);
            }
    tl_log("worst relative difference to the double reference: %.3g", worst);
}

/* ------------------------------------------------------------ threads ------------ */

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) FAILF("/proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* FLEET_CPU_THREADS=3 gives the model a pool of 3 (the caller and 2 threads it starts,
 * which end with the model), OpenBLAS is held to one thread, so the products inside the
 * pool's tasks never add threads of their own (no oversubscription), and a forward pass
 * starts no thread. (OpenBLAS may keep idle threads of its own, started when it was
 * loaded or first configured; they are never woken at one thread.) */
TL_TEST(cpu_threads_size_the_pool_and_blas_runs_on_one) {
    const char *dir = tl_tiny_bert_write("threads", false, "");
    ASSERT_EQ_INT(setenv("FLEET_CPU_THREADS", "3", 1), 0);
    bert_cpu *m = load_ok(dir);
    ASSERT_EQ_INT(bert_cpu_threads(), 3);
    ASSERT_EQ_INT(openblas_get_num_threads(), 1);
    int loaded = count_threads();
    const int32_t *ids[1] = {tiny_seq(3)};
    float out[HIDDEN];
    char err[512] = "";
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, &seq_lens[3], 1, out, err, sizeof err), 0);
    ASSERT_EQ_INT(count_threads(), loaded);
    bert_cpu_free(m);
    ASSERT_EQ_INT(count_threads(), loaded - 2);
}

/* Two threads embedding with one model at once (bert_cpu.h: calls take the model's
 * mutex, the scratch memory being the model's) get what one thread alone gets. */
typedef struct caller {
    bert_cpu *m;
    const int32_t *const *ids;
    float out[NSEQ * HIDDEN];
    int failed;
} caller;

static void *caller_main(void *arg) {
    caller *c = arg;
    char err[512];
    for (int r = 0; r < 50; r++) {
        float got[NSEQ * HIDDEN];
        if (bert_cpu_embed(c->m, c->ids, seq_lens, NSEQ, got, err, sizeof err) != 0 ||
            (r > 0 && rel_diff(got, c->out, NSEQ * HIDDEN) > BATCH_TOL))
            c->failed++;
        memcpy(c->out, got, sizeof got);
    }
    return NULL;
}

TL_TEST(two_callers_share_one_model) {
    ASSERT_EQ_INT(setenv("FLEET_CPU_THREADS", "2", 1), 0);
    bert_cpu *m = load_ok(tl_tiny_bert_write("shared", false, ""));
    const int32_t *ids[NSEQ];
    for (size_t s = 0; s < NSEQ; s++) ids[s] = tiny_seq(s);
    float alone[NSEQ * HIDDEN];
    char err[512] = "";
    ASSERT_EQ_INT(bert_cpu_embed(m, ids, seq_lens, NSEQ, alone, err, sizeof err), 0);
    caller *c = tl_alloc(2 * sizeof *c);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        c[i].m = m;
        c[i].ids = ids;
        ASSERT_EQ_INT(pthread_create(&t[i], NULL, caller_main, &c[i]), 0);
    }
    for (int i = 0; i < 2; i++) ASSERT_EQ_INT(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ_INT(c[i].failed, 0);
        ASSERT_TRUE(rel_diff(c[i].out, alone, NSEQ * HIDDEN) <= BATCH_TOL);
    }
    bert_cpu_free(m);
}

/* A FLEET_CPU_THREADS that is not an integer in [1, 1024] fails the load, naming it, and
 * starts no thread. */
TL_TEST(bad_cpu_threads_fail_the_load) {
    const char *dir = tl_tiny_bert_write("badthreads", false, "");
    static const char *bad[] = {"0", "1025", "two", "4x", "-1"};
    int before = count_threads();
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        char err[512] = "";
        bert_cpu *m = (bert_cpu *)&err;
        ASSERT_EQ_INT(setenv("FLEET_CPU_THREADS", bad[i], 1), 0);
        ASSERT_EQ_INT(bert_cpu_load(dir, &m, err, sizeof err), -1);
        ASSERT_NULL(m);
        ASSERT_EQ_STR(err,
                      tl_printf("FLEET_CPU_THREADS=%s: must be an integer in [1, 1024]", bad[i]));
        ASSERT_EQ_INT(count_threads(), before);
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(f32_matches_torch_reference),
        TL_CASE(bert_prefixed_names_match_too),
        TL_CASE(f16_weights_are_close),
        TL_CASE(same_vector_alone_and_in_a_mixed_batch),
        TL_CASE(faults_are_named),
        TL_CASE(odd_lengths_and_threads_match_a_double_reference),
        TL_CASE(cpu_threads_size_the_pool_and_blas_runs_on_one),
        TL_CASE(bad_cpu_threads_fail_the_load),
        TL_CASE(two_callers_share_one_model),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
