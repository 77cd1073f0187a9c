/* tl_tiny_bert.c: the tiny BERT model directory of tl_tiny_bert.h. Weights come from
 * one splitmix64 stream (seed 42), uniform in base +- 0.1 (base 1 for LayerNorm weights,
 * 0 otherwise), in reference.py's tensor order. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

void tl_write_file(const char *dir, const char *rel, const void *data, size_t len)
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
    tl_write_file(dir, rel, text, strlen(text));
}

/* The vocabulary: the special tokens at the ids BERT gives them, then some words and
 * continuation pieces, then filler up to VOCAB lines. */
static void write_vocab(const char *dir)
{
    static const char *const words[] = {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "a", "b", "c",
        "the", "quick", "brown", "fox", "jump", "##s", "##ed", "##ing", "over", "lazy",
        "dog", "cat", "embed", "##ding", "fleet", "model", "text", ".", ",", "!", "?",
    };
    size_t nw = sizeof words / sizeof words[0];
    char *text = tl_printf("%s", "");
    for (size_t i = 0; i < VOCAB; i++)
        text = i < nw ? tl_printf("%s%s\n", text, words[i])
                      : tl_printf("%s[unused%zu]\n", text, i);
    tl_write_file(dir, "vocab.txt", text, strlen(text));
}

const char *tl_tiny_bert_write(const char *name, bool f16, const char *prefix)
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
    write_text(dir, "tokenizer_config.json", "{\"do_lower_case\": true}");
    write_vocab(dir);

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
    tl_write_file(dir, "model.safetensors", file, 8 + padded + total * esize);
    return dir;
}
