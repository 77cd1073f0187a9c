/* bert_gen.c: a BERT model directory with PRNG weights; see bert_gen.h. */
#include "bert_gen.h"
#include "fleet/err.h" /* fleet_err, as worker/embed reports failures */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Round-to-nearest-even float -> IEEE half (no NaN needed here). */
static uint16_t float_to_half(float f) {
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

typedef struct tensor_spec {
    char name[96];
    int64_t d0, d1; /* d1 < 0: one dimension */
} tensor_spec;

/* The tensors in generation order (reference.py's tensor_order); t holds 5 + 16 * layers
 * entries. Returns the count. */
static int tensor_order(const bert_gen_shape *s, tensor_spec *t) {
    int n = 0;
#define T(a, b, ...)                                        \
    do {                                                    \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__); \
        t[n].d0 = (a);                                      \
        t[n].d1 = (b);                                      \
        n++;                                                \
    } while (0)
    T(s->vocab, s->hidden, "embeddings.word_embeddings.weight");
    T(s->max_pos, s->hidden, "embeddings.position_embeddings.weight");
    T(2, s->hidden, "embeddings.token_type_embeddings.weight");
    T(s->hidden, -1, "embeddings.LayerNorm.weight");
    T(s->hidden, -1, "embeddings.LayerNorm.bias");
    static const char *hh[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                               "attention.output.dense"};
    for (int l = 0; l < s->layers; l++) {
        for (int i = 0; i < 4; i++) {
            T(s->hidden, s->hidden, "encoder.layer.%d.%s.weight", l, hh[i]);
            T(s->hidden, -1, "encoder.layer.%d.%s.bias", l, hh[i]);
        }
        T(s->hidden, -1, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
        T(s->hidden, -1, "encoder.layer.%d.attention.output.LayerNorm.bias", l);
        T(s->inter, s->hidden, "encoder.layer.%d.intermediate.dense.weight", l);
        T(s->inter, -1, "encoder.layer.%d.intermediate.dense.bias", l);
        T(s->hidden, s->inter, "encoder.layer.%d.output.dense.weight", l);
        T(s->hidden, -1, "encoder.layer.%d.output.dense.bias", l);
        T(s->hidden, -1, "encoder.layer.%d.output.LayerNorm.weight", l);
        T(s->hidden, -1, "encoder.layer.%d.output.LayerNorm.bias", l);
    }
#undef T
    return n;
}

/* Opens dir/rel for writing; NULL with err set. */
static FILE *open_file(const char *dir, const char *rel, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "wb");
    if (!f) fleet_err(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return f;
}

static int close_file(FILE *f, const char *dir, const char *rel, char *err, size_t errlen) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return fleet_err(err, errlen, "cannot write %s/%s", dir, rel);
    return 0;
}

static int write_text(const char *dir, const char *rel, char *err, size_t errlen, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

static int write_text(const char *dir, const char *rel, char *err, size_t errlen, const char *fmt,
                      ...) {
    FILE *f = open_file(dir, rel, err, errlen);
    if (!f) return -1;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    return close_file(f, dir, rel, err, errlen);
}

/* The vocabulary: the special tokens at the ids BERT gives them, then some words and
 * continuation pieces, then filler up to vocab lines. */
static int write_vocab(const char *dir, int vocab, char *err, size_t errlen) {
    static const char *const words[] = {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "a",
        "b",     "c",     "the",   "quick", "brown",  "fox",   "jump",  "##s",
        "##ed",  "##ing", "over",  "lazy",  "dog",    "cat",   "embed", "##ding",
        "fleet", "model", "text",  ".",     ",",      "!",     "?",
    };
    size_t nw = sizeof words / sizeof words[0];
    FILE *f = open_file(dir, "vocab.txt", err, errlen);
    if (!f) return -1;
    for (size_t i = 0; i < (size_t)vocab; i++) {
        if (i < nw) fprintf(f, "%s\n", words[i]);
        else fprintf(f, "[unused%zu]\n", i);
    }
    return close_file(f, dir, "vocab.txt", err, errlen);
}

static int write_safetensors(const char *dir, const bert_gen_shape *s, bool f16, const char *prefix,
                             char *err, size_t errlen) {
    int rc = -1;
    tensor_spec *t = calloc(5 + 16 * (size_t)s->layers, sizeof *t);
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = NULL, *f = NULL;
    if (!t) return fleet_err(err, errlen, "model.safetensors: out of memory");
    int nt = tensor_order(s, t);
    size_t esize = f16 ? 2 : 4;

    /* The header, with each tensor's offsets in one contiguous data block. */
    if (!(h = open_memstream(&hdr, &hlen))) {
        fleet_err(err, errlen, "model.safetensors: out of memory");
        goto out;
    }
    fputc('{', h);
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].d0 * (size_t)(t[i].d1 < 0 ? 1 : t[i].d1);
        fprintf(h, "%s\"%s%s\": {\"dtype\": \"%s\", \"shape\": ", i ? ", " : "", prefix, t[i].name,
                f16 ? "F16" : "F32");
        if (t[i].d1 < 0) fprintf(h, "[%lld]", (long long)t[i].d0);
        else fprintf(h, "[%lld, %lld]", (long long)t[i].d0, (long long)t[i].d1);
        fprintf(h, ", \"data_offsets\": [%zu, %zu]}", off * esize, (off + n) * esize);
        off += n;
    }
    fputc('}', h);
    if (fclose(h) != 0) {
        h = NULL;
        fleet_err(err, errlen, "model.safetensors: out of memory");
        goto out;
    }
    h = NULL;
    size_t padded = (hlen + 7) / 8 * 8; /* pad with spaces so the data is aligned */

    if (!(f = open_file(dir, "model.safetensors", err, errlen))) goto out;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, hlen, f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', f);

    /* The values, in one PRNG stream. */
    uint64_t state = 42;
    for (int i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].d0 * (size_t)(t[i].d1 < 0 ? 1 : t[i].d1);
        size_t nl = strlen(t[i].name);
        double base = nl >= 16 && strcmp(t[i].name + nl - 16, "LayerNorm.weight") == 0 ? 1.0 : 0.0;
        for (size_t j = 0; j < n; j++) {
            double u = (double)(splitmix64(&state) >> 40) / 16777216.0;
            float v = (float)(base + (2.0 * u - 1.0) * 0.1);
            if (f16) {
                uint16_t hv = float_to_half(v);
                fwrite(&hv, 2, 1, f); /* little-endian hosts only, as fleet is */
            } else {
                fwrite(&v, 4, 1, f);
            }
        }
    }
    rc = close_file(f, dir, "model.safetensors", err, errlen);
    f = NULL;
out:
    if (h) fclose(h);
    if (f) fclose(f);
    free(hdr);
    free(t);
    return rc;
}

int bert_gen_write(const char *dir, const bert_gen_shape *s, bool f16, const char *prefix,
                   char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/1_Pooling", dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return fleet_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
    if (write_text(dir, "config.json", err, errlen,
                   "{\"model_type\": \"bert\", \"hidden_size\": %d, "
                   "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                   "\"intermediate_size\": %d, \"max_position_embeddings\": %d, "
                   "\"vocab_size\": %d, \"type_vocab_size\": 2, "
                   "\"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}",
                   s->hidden, s->layers, s->heads, s->inter, s->max_pos, s->vocab) != 0 ||
        write_text(dir, "modules.json", err, errlen, "%s",
                   "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", "
                   "\"type\": \"sentence_transformers.models.Transformer\"}, "
                   "{\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", "
                   "\"type\": \"sentence_transformers.models.Pooling\"}, "
                   "{\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", "
                   "\"type\": \"sentence_transformers.models.Normalize\"}]") != 0 ||
        write_text(dir, "1_Pooling/config.json", err, errlen,
                   "{\"word_embedding_dimension\": %d, \"pooling_mode_cls_token\": "
                   "false, \"pooling_mode_mean_tokens\": true, "
                   "\"pooling_mode_max_tokens\": false}",
                   s->hidden) != 0 ||
        write_text(dir, "sentence_bert_config.json", err, errlen, "{\"max_seq_length\": %d}",
                   s->max_seq_length) != 0 ||
        write_text(dir, "tokenizer_config.json", err, errlen, "%s", "{\"do_lower_case\": true}") !=
            0 ||
        write_vocab(dir, s->vocab, err, errlen) != 0)
        return -1;
    return write_safetensors(dir, s, f16, prefix, err, errlen);
}
