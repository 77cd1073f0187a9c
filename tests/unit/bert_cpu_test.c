/* bert_cpu_test: the CPU forward pass (worker/embed/bert_cpu.c) on a tiny 2-layer BERT
 * whose weights come from a documented PRNG, against golden vectors that
 * tests/embed/reference.py computed with torch from the same PRNG (see its header for
 * the model, the PRNG and the command that regenerates tests/embed/tiny_golden.txt).
 * The generator here and the one in reference.py must stay in step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert_cpu.h"
#include "testlib.h"

#define GOLDEN_PATH FLEET_SOURCE_DIR "/tests/embed/tiny_golden.txt"

enum { HIDDEN = 32, LAYERS = 2, HEADS = 4, INTER = 64, VOCAB = 100, MAX_POS = 64, NSEQ = 5 };
static const size_t seq_lens[NSEQ] = {3, 7, 12, 20, 5};

/* ------------------------------------------------------------ the tiny model ------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Round-to-nearest-even float -> IEEE half (no NaN needed here). */
static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x47800000u) /* >= 65536: infinity */
        return sign | 0x7c00u;
    if (x < 0x38800000u) { /* below 2^-14: a half subnormal, unit 2^-24 */
        float a;
        memcpy(&a, &x, 4);
        return sign | (uint16_t)rintf(a * 16777216.0f);
    }
    uint32_t mant = x & 0x7fffffu;
    uint32_t h = (((x >> 23) - 112u) << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry runs into the exponent, as it should */
    return sign | (uint16_t)h;
}

typedef struct tiny_tensor {
    char name[96];
    int64_t d0, d1; /* d1 < 0: one dimension */
} tiny_tensor;

/* The tensors in generation order (reference.py's tensor_order). Returns the count. */
static int tiny_order(tiny_tensor *t)
{
    int n = 0;
#define T(nm, a, b)                                                                        \
    do {                                                                                   \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                   \
        t[n].d0 = (a);                                                                     \
        t[n].d1 = (b);                                                                     \
        n++;                                                                               \
    } while (0)
    T("embeddings.word_embeddings.weight", VOCAB, HIDDEN);
    T("embeddings.position_embeddings.weight", MAX_POS, HIDDEN);
    T("embeddings.token_type_embeddings.weight", 2, HIDDEN);
    T("embeddings.LayerNorm.weight", HIDDEN, -1);
    T("embeddings.LayerNorm.bias", HIDDEN, -1);
    static const char *hh[] = {"attention.self.query", "attention.self.key",
                               "attention.self.value", "attention.output.dense"};
    for (int l = 0; l < LAYERS; l++) {
        for (int i = 0; i < 4; i++) {
            T(tl_printf("encoder.layer.%d.%s.weight", l, hh[i]), HIDDEN, HIDDEN);
            T(tl_printf("encoder.layer.%d.%s.bias", l, hh[i]), HIDDEN, -1);
        }
        T(tl_printf("encoder.layer.%d.attention.output.LayerNorm.weight", l), HIDDEN, -1);
        T(tl_printf("encoder.layer.%d.attention.output.LayerNorm.bias", l), HIDDEN, -1);
        T(tl_printf("encoder.layer.%d.intermediate.dense.weight", l), INTER, HIDDEN);
        T(tl_printf("encoder.layer.%d.intermediate.dense.bias", l), INTER, -1);
        T(tl_printf("encoder.layer.%d.output.dense.weight", l), HIDDEN, INTER);
        T(tl_printf("encoder.layer.%d.output.dense.bias", l), HIDDEN, -1);
        T(tl_printf("encoder.layer.%d.output.LayerNorm.weight", l), HIDDEN, -1);
        T(tl_printf("encoder.layer.%d.output.LayerNorm.bias", l), HIDDEN, -1);
    }
#undef T
    return n;
}

static void write_file(const char *dir, const char *rel, const void *data, size_t len)
{
    const char *path = tl_printf("%s/%s", dir, rel);
    FILE *f = fopen(path, "wb");
    if (!f)
        FAILF("cannot write %s", path);
    ASSERT_EQ_INT(fwrite(data, 1, len, f), len);
    ASSERT_EQ_INT(fclose(f), 0);
}

static void write_text(const char *dir, const char *rel, const char *text)
{
    write_file(dir, rel, text, strlen(text));
}

/* write_tiny_model writes a fresh model directory tl_tmpdir()/name: the JSON files and
 * model.safetensors with F32 or (f16) F16 weights, names prefixed with `prefix`. */
static const char *write_tiny_model(const char *name, bool f16, const char *prefix)
{
    const char *dir = tl_printf("%s/%s", tl_tmpdir(), name);
    ASSERT_EQ_INT(mkdir(dir, 0755), 0);
    ASSERT_EQ_INT(mkdir(tl_printf("%s/1_Pooling", dir), 0755), 0);
    write_text(dir, "config.json",
               tl_printf("{\"model_type\": \"bert\", \"hidden_size\": %d, "
                         "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                         "\"intermediate_size\": %d, \"max_position_embeddings\": %d, "
                         "\"vocab_size\": %d, \"type_vocab_size\": 2, "
                         "\"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}",
                         HIDDEN, LAYERS, HEADS, INTER, MAX_POS, VOCAB));
    write_text(dir, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", "
               "\"type\": \"sentence_transformers.models.Transformer\"}, "
               "{\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", "
               "\"type\": \"sentence_transformers.models.Pooling\"}, "
               "{\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", "
               "\"type\": \"sentence_transformers.models.Normalize\"}]");
    write_text(dir, "1_Pooling/config.json",
               tl_printf("{\"word_embedding_dimension\": %d, \"pooling_mode_cls_token\": "
                         "false, \"pooling_mode_mean_tokens\": true, "
                         "\"pooling_mode_max_tokens\": false}", HIDDEN));
    write_text(dir, "sentence_bert_config.json",
               "{\"max_seq_length\": 64}");

    tiny_tensor *t = tl_alloc(64 * sizeof *t);
    int nt = tiny_order(t);
    ASSERT_LE_INT(nt, 64);
    size_t esize = f16 ? 2 : 4;
    size_t total = 0;
    for (int i = 0; i < nt; i++)
        total += (size_t)t[i].d0 * (size_t)(t[i].d1 < 0 ? 1 : t[i].d1);
    unsigned char *data = tl_alloc(total * esize);

    /* The header, and the values in one PRNG stream. */
    char *hdr = tl_printf("{");
    uint64_t state = 42;
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].d0 * (size_t)(t[i].d1 < 0 ? 1 : t[i].d1);
        const char *shape = t[i].d1 < 0 ? tl_printf("[%lld]", (long long)t[i].d0)
                                        : tl_printf("[%lld, %lld]", (long long)t[i].d0,
                                                    (long long)t[i].d1);
        hdr = tl_printf("%s%s\"%s%s\": {\"dtype\": \"%s\", \"shape\": %s, "
                        "\"data_offsets\": [%zu, %zu]}",
                        hdr, i ? ", " : "", prefix, t[i].name, f16 ? "F16" : "F32", shape,
                        off * esize, (off + n) * esize);
        size_t nl = strlen(t[i].name);
        double base = nl >= 16 && strcmp(t[i].name + nl - 16, "LayerNorm.weight") == 0 ? 1.0
                                                                                        : 0.0;
        for (size_t j = 0; j < n; j++, off++) {
            double u = (double)(splitmix64(&state) >> 40) / 16777216.0;
            float v = (float)(base + (2.0 * u - 1.0) * 0.1);
            if (f16) {
                uint16_t h = float_to_half(v);
                memcpy(data + off * 2, &h, 2);
            } else {
                memcpy(data + off * 4, &v, 4);
            }
        }
    }
    hdr = tl_printf("%s}", hdr);
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) / 8 * 8; /* pad with spaces so the data is aligned */
    unsigned char *file = tl_alloc(8 + padded + total * esize);
    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(file + 8, hdr, hlen);
    memset(file + 8 + hlen, ' ', padded - hlen);
    memcpy(file + 8 + padded, data, total * esize);
    write_file(dir, "model.safetensors", file, 8 + padded + total * esize);
    return dir;
}

/* reference.py's sequences: [2, 4 + (37 s + 11 j) % 96 ..., 3]. */
static int32_t *tiny_seq(size_t s)
{
    size_t n = seq_lens[s];
    int32_t *ids = tl_alloc(n * sizeof *ids);
    for (size_t j = 0; j < n; j++)
        ids[j] = j == 0 ? 2 : j == n - 1 ? 3 : (int32_t)(4 + (37 * s + 11 * j) % 96);
    return ids;
}

/* ------------------------------------------------------------ comparing ---------- */

static float *read_golden(void)
{
    size_t len;
    char *text = tl_read_file(GOLDEN_PATH, &len);
    if (!text)
        FAILF("cannot read %s", GOLDEN_PATH);
    float *g = tl_alloc(NSEQ * HIDDEN * sizeof *g);
    char *p = text;
    for (int i = 0; i < NSEQ * HIDDEN; i++) {
        char *end;
        g[i] = strtof(p, &end);
        if (end == p)
            FAILF("%s: value %d missing or malformed", GOLDEN_PATH, i);
        p = end;
    }
    return g;
}

/* max |a - b| / max |b| over n values. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0 ? md / mb : md;
}

static fleet_bert_cpu *load_ok(const char *dir)
{
    fleet_bert_cpu *m;
    char err[512] = "";
    if (fleet_bert_cpu_load(dir, &m, err, sizeof err) != 0)
        FAILF("load %s: %s", dir, err);
    return m;
}

/* Embeds the sequences one by one and all in one batch; checks both against the goldens
 * (within tol) and the batch against the singles (within 1e-5). */
static void check_model(const char *dir, double tol)
{
    fleet_bert_cpu *m = load_ok(dir);
    ASSERT_EQ_INT(fleet_bert_cpu_config(m)->hidden_size, HIDDEN);
    const float *golden = read_golden();
    const int32_t *ids[NSEQ];
    for (size_t s = 0; s < NSEQ; s++)
        ids[s] = tiny_seq(s);
    char err[512] = "";
    float *single = tl_alloc(NSEQ * HIDDEN * sizeof *single);
    float *batch = tl_alloc(NSEQ * HIDDEN * sizeof *batch);
    double worst = 0;
    for (size_t s = 0; s < NSEQ; s++) {
        if (fleet_bert_cpu_embed(m, &ids[s], &seq_lens[s], 1, single + s * HIDDEN, err,
                                 sizeof err) != 0)
            FAILF("embed %zu: %s", s, err);
        double d = rel_diff(single + s * HIDDEN, golden + s * HIDDEN, HIDDEN);
        tl_log("sequence %zu (len %zu): relative difference to golden %.3g", s, seq_lens[s],
               d);
        if (d > tol)
            FAILF("sequence %zu differs from the golden by %.3g (> %.3g)", s, d, tol);
        worst = fmax(worst, d);
        double norm = 0;
        for (int j = 0; j < HIDDEN; j++)
            norm += (double)single[s * HIDDEN + j] * single[s * HIDDEN + j];
        ASSERT_TRUE(fabs(sqrt(norm) - 1.0) < 1e-5);
    }
    if (fleet_bert_cpu_embed(m, ids, seq_lens, NSEQ, batch, err, sizeof err) != 0)
        FAILF("embed batch: %s", err);
    double dbatch = rel_diff(batch, single, NSEQ * HIDDEN);
    double dgold = rel_diff(batch, golden, NSEQ * HIDDEN);
    tl_log("max relative difference: singles vs golden %.3g, batch vs golden %.3g, batch vs "
           "singles %.3g", worst, dgold, dbatch);
    if (dbatch > 1e-5)
        FAILF("batch differs from singles by %.3g", dbatch);
    if (dgold > tol)
        FAILF("batch differs from the golden by %.3g", dgold);
    /* Another order (longest first) gives the same rows. */
    const int32_t *rids[NSEQ];
    size_t rlens[NSEQ];
    for (size_t s = 0; s < NSEQ; s++) {
        rids[s] = ids[NSEQ - 1 - s];
        rlens[s] = seq_lens[NSEQ - 1 - s];
    }
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, rids, rlens, NSEQ, batch, err, sizeof err), 0);
    for (size_t s = 0; s < NSEQ; s++)
        ASSERT_TRUE(rel_diff(batch + s * HIDDEN, single + (NSEQ - 1 - s) * HIDDEN, HIDDEN) <=
                    1e-5);
    fleet_bert_cpu_free(m);
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(f32_matches_torch_reference) {
    check_model(write_tiny_model("f32", false, ""), 1e-4);
}

TL_TEST(bert_prefixed_names_match_too) {
    check_model(write_tiny_model("prefixed", false, "bert."), 1e-4);
}

TL_TEST(f16_weights_are_close) {
    check_model(write_tiny_model("f16", true, ""), 3e-3); /* measured 7e-4 */
}

TL_TEST(faults_are_named) {
    char err[512] = "";
    fleet_bert_cpu *m = (fleet_bert_cpu *)&err; /* must be reset to NULL on failure */

    const char *dir = write_tiny_model("nofile", false, "");
    ASSERT_EQ_INT(unlink(tl_printf("%s/model.safetensors", dir)), 0);
    ASSERT_EQ_INT(fleet_bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_NULL(m);
    tl_log("refused: %s", err);
    ASSERT_STR_CONTAINS(err, "model.safetensors");
    ASSERT_STR_CONTAINS(err, "No such file");

    dir = write_tiny_model("noconfig", false, "");
    ASSERT_EQ_INT(unlink(tl_printf("%s/config.json", dir)), 0);
    ASSERT_EQ_INT(fleet_bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "config.json: cannot read");

    /* Weights that do not fit the config: vocabulary 101 in config.json. */
    dir = write_tiny_model("mismatch", false, "");
    write_text(dir, "config.json",
               tl_printf("{\"model_type\": \"bert\", \"hidden_size\": %d, "
                         "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                         "\"intermediate_size\": %d, \"max_position_embeddings\": %d, "
                         "\"vocab_size\": 101, \"type_vocab_size\": 2, "
                         "\"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}",
                         HIDDEN, LAYERS, HEADS, INTER, MAX_POS));
    ASSERT_EQ_INT(fleet_bert_cpu_load(dir, &m, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "embeddings.word_embeddings.weight has shape [100, 32]");

    /* Bad inputs to embed; out is left alone. */
    m = load_ok(write_tiny_model("ok", false, ""));
    float out[2 * HIDDEN];
    for (int i = 0; i < 2 * HIDDEN; i++)
        out[i] = 7.0f;
    int32_t good[] = {2, 5, 3}, bad[] = {2, 100, 3};
    const int32_t *ids[2] = {good, bad};
    size_t lens[2] = {3, 3};
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: id 100 outside the vocabulary (100)");
    bad[1] = -1;
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "id -1 outside");
    lens[1] = 0;
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: length 0, must be in [1, 64]");
    int32_t *longer = tl_alloc(65 * sizeof *longer);
    for (int i = 0; i < 65; i++)
        longer[i] = 5;
    ids[1] = longer;
    lens[1] = 65;
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "embed: sequence 1: length 65, must be in [1, 64]");
    for (int i = 0; i < 2 * HIDDEN; i++)
        ASSERT_TRUE(out[i] == 7.0f);
    /* The full 64 positions work; n == 0 does nothing. */
    lens[1] = 64;
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 2, out, err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_bert_cpu_embed(m, ids, lens, 0, NULL, err, sizeof err), 0);
    fleet_bert_cpu_free(m);
    fleet_bert_cpu_free(NULL);
}

int main(int argc, char **argv)
{
    static const tl_case cases[] = {
        TL_CASE(f32_matches_torch_reference),
        TL_CASE(bert_prefixed_names_match_too),
        TL_CASE(f16_weights_are_close),
        TL_CASE(faults_are_named),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
