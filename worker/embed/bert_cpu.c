/* bert_cpu.c: the BERT encoder's forward pass on the CPU; see bert_cpu.h. */
#include "bert_cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int bcpu__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bcpu__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------ the model ---------- */

/* A linear layer: w is [in, out] (transposed from the checkpoint's [out, in]) so that
 * the GEMM's inner loop walks both w and the output row contiguously. */
typedef struct bcpu__linear {
    float *w;
    float *b;
    int in, out;
} bcpu__linear;

typedef struct bcpu__norm {
    float *w;
    float *b;
} bcpu__norm;

typedef struct bcpu__layer {
    bcpu__linear q, k, v, attn_out, inter, out;
    bcpu__norm attn_norm, out_norm;
} bcpu__layer;

struct fleet_bert_cpu {
    fleet_bert_config cfg;
    float *word;     /* [vocab, hidden] */
    float *position; /* [max_pos, hidden] */
    float *type0;    /* [hidden]: token type 0's row */
    bcpu__norm emb_norm;
    bcpu__layer *layers; /* num_hidden_layers */
};

/* ------------------------------------------------------------ loading ------------ */

static float bcpu__half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = (float)man * 5.9604644775390625e-8f;
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Copies tensor prefix+name (already checked for shape and a float dtype) to a new F32
 * array; returns NULL with err set. Source data may be unaligned, hence memcpy. */
static float *bcpu__tensor(const fleet_st *st, const char *prefix, const char *name,
                           size_t *count, char *err, size_t errlen)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const fleet_st_tensor *t = fleet_st_find(st, full);
    if (!t || !t->data) {
        bcpu__fail(err, errlen, "weights: tensor %s missing", full);
        return NULL;
    }
    size_t n = t->nbytes / fleet_st_dtype_size(t->dtype);
    float *dst = malloc((n ? n : 1) * sizeof *dst);
    if (!dst) {
        bcpu__fail(err, errlen, "weights: out of memory for %s", full);
        return NULL;
    }
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case FLEET_ST_F32:
            memcpy(&dst[i], src + 4 * i, 4);
            break;
        case FLEET_ST_F16: {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bcpu__half_to_float(h);
            break;
        }
        case FLEET_ST_BF16: {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
            break;
        }
        default:
            free(dst);
            bcpu__fail(err, errlen, "weights: tensor %s has dtype %s", full,
                       fleet_st_dtype_name(t->dtype));
            return NULL;
        }
    }
    if (count)
        *count = n;
    return dst;
}

static int bcpu__linear_load(const fleet_st *st, const char *prefix, const char *base,
                             int in, int out, bcpu__linear *l, char *err, size_t errlen)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", base);
    float *w = bcpu__tensor(st, prefix, name, NULL, err, errlen);
    if (!w)
        return -1;
    l->in = in;
    l->out = out;
    l->w = malloc((size_t)in * (size_t)out * sizeof *l->w);
    if (!l->w) {
        free(w);
        return bcpu__fail(err, errlen, "weights: out of memory for %s", name);
    }
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            l->w[(size_t)i * (size_t)out + (size_t)o] = w[(size_t)o * (size_t)in + (size_t)i];
    free(w);
    snprintf(name, sizeof name, "%s.bias", base);
    l->b = bcpu__tensor(st, prefix, name, NULL, err, errlen);
    return l->b ? 0 : -1;
}

static int bcpu__norm_load(const fleet_st *st, const char *prefix, const char *base,
                           bcpu__norm *nm, char *err, size_t errlen)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", base);
    if (!(nm->w = bcpu__tensor(st, prefix, name, NULL, err, errlen)))
        return -1;
    snprintf(name, sizeof name, "%s.bias", base);
    return (nm->b = bcpu__tensor(st, prefix, name, NULL, err, errlen)) ? 0 : -1;
}

int fleet_bert_cpu_load(const char *dir, fleet_bert_cpu **out, char *err, size_t errlen)
{
    *out = NULL;
    fleet_st *st = NULL;
    fleet_bert_cpu *m = calloc(1, sizeof *m);
    if (!m)
        return bcpu__fail(err, errlen, "embed: out of memory");
    if (fleet_bert_config_load(dir, &m->cfg, err, errlen) != 0)
        goto err;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path) {
        bcpu__fail(err, errlen, "model.safetensors: path too long");
        goto err;
    }
    if (fleet_st_open(path, &st, err, errlen) != 0)
        goto err;
    if (fleet_bert_check_tensors(&m->cfg, st, err, errlen) != 0)
        goto err;
    const char *prefix = fleet_bert_tensor_prefix(st);
    const fleet_bert_config *c = &m->cfg;
    int h = c->hidden_size, inter = c->intermediate_size;

    if (!(m->word = bcpu__tensor(st, prefix, "embeddings.word_embeddings.weight", NULL, err,
                                 errlen)) ||
        !(m->position = bcpu__tensor(st, prefix, "embeddings.position_embeddings.weight", NULL,
                                     err, errlen)) ||
        !(m->type0 = bcpu__tensor(st, prefix, "embeddings.token_type_embeddings.weight", NULL,
                                  err, errlen)) ||
        bcpu__norm_load(st, prefix, "embeddings.LayerNorm", &m->emb_norm, err, errlen) != 0)
        goto err;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) {
        bcpu__fail(err, errlen, "embed: out of memory");
        goto err;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        bcpu__layer *ly = &m->layers[l];
        char b[6][96];
        snprintf(b[0], sizeof b[0], "encoder.layer.%d.attention.self.query", l);
        snprintf(b[1], sizeof b[1], "encoder.layer.%d.attention.self.key", l);
        snprintf(b[2], sizeof b[2], "encoder.layer.%d.attention.self.value", l);
        snprintf(b[3], sizeof b[3], "encoder.layer.%d.attention.output.dense", l);
        snprintf(b[4], sizeof b[4], "encoder.layer.%d.intermediate.dense", l);
        snprintf(b[5], sizeof b[5], "encoder.layer.%d.output.dense", l);
        char n1[96], n2[96];
        snprintf(n1, sizeof n1, "encoder.layer.%d.attention.output.LayerNorm", l);
        snprintf(n2, sizeof n2, "encoder.layer.%d.output.LayerNorm", l);
        if (bcpu__linear_load(st, prefix, b[0], h, h, &ly->q, err, errlen) != 0 ||
            bcpu__linear_load(st, prefix, b[1], h, h, &ly->k, err, errlen) != 0 ||
            bcpu__linear_load(st, prefix, b[2], h, h, &ly->v, err, errlen) != 0 ||
            bcpu__linear_load(st, prefix, b[3], h, h, &ly->attn_out, err, errlen) != 0 ||
            bcpu__linear_load(st, prefix, b[4], h, inter, &ly->inter, err, errlen) != 0 ||
            bcpu__linear_load(st, prefix, b[5], inter, h, &ly->out, err, errlen) != 0 ||
            bcpu__norm_load(st, prefix, n1, &ly->attn_norm, err, errlen) != 0 ||
            bcpu__norm_load(st, prefix, n2, &ly->out_norm, err, errlen) != 0)
            goto err;
    }
    fleet_st_close(st);
    *out = m;
    return 0;
err:
    fleet_st_close(st);
    fleet_bert_cpu_free(m);
    return -1;
}

const fleet_bert_config *fleet_bert_cpu_config(const fleet_bert_cpu *m)
{
    return &m->cfg;
}

static void bcpu__linear_free(bcpu__linear *l)
{
    free(l->w);
    free(l->b);
}

static void bcpu__norm_free(bcpu__norm *nm)
{
    free(nm->w);
    free(nm->b);
}

void fleet_bert_cpu_free(fleet_bert_cpu *m)
{
    if (!m)
        return;
    free(m->word);
    free(m->position);
    free(m->type0);
    bcpu__norm_free(&m->emb_norm);
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            bcpu__layer *ly = &m->layers[l];
            bcpu__linear_free(&ly->q);
            bcpu__linear_free(&ly->k);
            bcpu__linear_free(&ly->v);
            bcpu__linear_free(&ly->attn_out);
            bcpu__linear_free(&ly->inter);
            bcpu__linear_free(&ly->out);
            bcpu__norm_free(&ly->attn_norm);
            bcpu__norm_free(&ly->out_norm);
        }
    }
    free(m->layers);
    free(m);
}

/* ------------------------------------------------------------ kernels ------------ */

/* y[t, :] = x[t, :] @ l->w + l->b for t < rows; i-k-j order, so the inner loop runs
 * along a row of w and of y. */
static void bcpu__gemm(const bcpu__linear *l, const float *x, size_t rows, float *y)
{
    size_t in = (size_t)l->in, out = (size_t)l->out;
    for (size_t t = 0; t < rows; t++) {
        float *yr = y + t * out;
        memcpy(yr, l->b, out * sizeof *yr);
        const float *xr = x + t * in;
        for (size_t k = 0; k < in; k++) {
            float a = xr[k];
            const float *wr = l->w + k * out;
            for (size_t j = 0; j < out; j++)
                yr[j] += a * wr[j];
        }
    }
}

/* x[t, :] = LayerNorm(x[t, :] + add[t, :]) (add may be NULL), statistics in double. */
static void bcpu__add_norm(float *x, const float *add, size_t rows, int h,
                           const bcpu__norm *nm, double eps)
{
    for (size_t t = 0; t < rows; t++) {
        float *xr = x + t * (size_t)h;
        if (add) {
            const float *ar = add + t * (size_t)h;
            for (int j = 0; j < h; j++)
                xr[j] += ar[j];
        }
        double mean = 0;
        for (int j = 0; j < h; j++)
            mean += xr[j];
        mean /= h;
        double var = 0;
        for (int j = 0; j < h; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= h;
        double inv = 1.0 / sqrt(var + eps);
        for (int j = 0; j < h; j++)
            xr[j] = (float)((xr[j] - mean) * inv) * nm->w[j] + nm->b[j];
    }
}

/* ctx = softmax(q k^T / sqrt(d)) v for one sequence (rows [0, len) of q, k, v, ctx),
 * every head; only this sequence's tokens are keys, so no mask is needed. */
static void bcpu__attention(const float *q, const float *k, const float *v, float *ctx,
                            size_t len, int h, int heads, float *scores)
{
    int d = h / heads;
    float scale = 1.0f / sqrtf((float)d);
    for (int hd = 0; hd < heads; hd++) {
        size_t off = (size_t)hd * (size_t)d;
        for (size_t i = 0; i < len; i++) {
            const float *qi = q + i * (size_t)h + off;
            float max = -INFINITY;
            for (size_t j = 0; j < len; j++) {
                const float *kj = k + j * (size_t)h + off;
                float s = 0;
                for (int e = 0; e < d; e++)
                    s += qi[e] * kj[e];
                s *= scale;
                scores[j] = s;
                if (s > max)
                    max = s;
            }
            float sum = 0;
            for (size_t j = 0; j < len; j++) {
                scores[j] = expf(scores[j] - max);
                sum += scores[j];
            }
            float *ci = ctx + i * (size_t)h + off;
            for (int e = 0; e < d; e++)
                ci[e] = 0;
            for (size_t j = 0; j < len; j++) {
                float p = scores[j] / sum;
                const float *vj = v + j * (size_t)h + off;
                for (int e = 0; e < d; e++)
                    ci[e] += p * vj[e];
            }
        }
    }
}

/* ------------------------------------------------------------ the forward pass --- */

int fleet_bert_cpu_embed(fleet_bert_cpu *m, const int32_t *const *ids, const size_t *lens,
                         size_t n, float *out, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    const fleet_bert_config *c = &m->cfg;
    size_t h = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
    size_t total = 0, maxlen = 0;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] == 0 || lens[s] > (size_t)c->max_position_embeddings)
            return bcpu__fail(err, errlen,
                              "embed: sequence %zu: length %zu, must be in [1, %d]", s,
                              lens[s], c->max_position_embeddings);
        for (size_t i = 0; i < lens[s]; i++)
            if (ids[s][i] < 0 || ids[s][i] >= c->vocab_size)
                return bcpu__fail(err, errlen,
                                  "embed: sequence %zu: id %ld outside the vocabulary (%d)",
                                  s, (long)ids[s][i], c->vocab_size);
        total += lens[s];
        if (lens[s] > maxlen)
            maxlen = lens[s];
    }

    /* Scratch: x, q, k, v, ctx/tmp [total, hidden]; mid [total, intermediate]. */
    if (total > SIZE_MAX / sizeof(float) / (inter > h ? inter : h))
        return bcpu__fail(err, errlen, "embed: %zu tokens is too many", total);
    float *x = malloc(total * h * sizeof *x);
    float *q = malloc(total * h * sizeof *q);
    float *k = malloc(total * h * sizeof *k);
    float *v = malloc(total * h * sizeof *v);
    float *ctx = malloc(total * h * sizeof *ctx);
    float *mid = malloc(total * inter * sizeof *mid);
    float *scores = malloc(maxlen * sizeof *scores);
    int rc = -1;
    if (!x || !q || !k || !v || !ctx || !mid || !scores) {
        bcpu__fail(err, errlen, "embed: out of memory for %zu tokens", total);
        goto out;
    }

    /* Embeddings, packed: sequence s occupies rows [start_s, start_s + lens[s]). */
    size_t row = 0;
    for (size_t s = 0; s < n; s++) {
        for (size_t i = 0; i < lens[s]; i++, row++) {
            const float *we = m->word + (size_t)ids[s][i] * h;
            const float *pe = m->position + i * h;
            float *xr = x + row * h;
            for (size_t j = 0; j < h; j++)
                xr[j] = we[j] + pe[j] + m->type0[j];
        }
    }
    bcpu__add_norm(x, NULL, total, (int)h, &m->emb_norm, c->layer_norm_eps);

    for (int l = 0; l < c->num_hidden_layers; l++) {
        const bcpu__layer *ly = &m->layers[l];
        bcpu__gemm(&ly->q, x, total, q);
        bcpu__gemm(&ly->k, x, total, k);
        bcpu__gemm(&ly->v, x, total, v);
        size_t start = 0;
        for (size_t s = 0; s < n; s++) {
            size_t o = start * h;
            bcpu__attention(q + o, k + o, v + o, ctx + o, lens[s], (int)h,
                            c->num_attention_heads, scores);
            start += lens[s];
        }
        bcpu__gemm(&ly->attn_out, ctx, total, q); /* q is free again: the projection */
        bcpu__add_norm(x, q, total, (int)h, &ly->attn_norm, c->layer_norm_eps);
        bcpu__gemm(&ly->inter, x, total, mid);
        for (size_t i = 0; i < total * inter; i++)
            mid[i] = 0.5f * mid[i] * (1.0f + erff(mid[i] * 0.70710678118654752440f));
        bcpu__gemm(&ly->out, mid, total, q);
        bcpu__add_norm(x, q, total, (int)h, &ly->out_norm, c->layer_norm_eps);
    }

    /* Mean over each sequence's tokens, then L2 (sums in double). */
    size_t start = 0;
    for (size_t s = 0; s < n; s++) {
        float *o = out + s * h;
        double norm2 = 0;
        for (size_t j = 0; j < h; j++) {
            double sum = 0;
            for (size_t i = 0; i < lens[s]; i++)
                sum += x[(start + i) * h + j];
            o[j] = (float)(sum / (double)lens[s]);
            norm2 += (double)o[j] * o[j];
        }
        if (c->normalize) {
            double norm = sqrt(norm2);
            if (norm < 1e-12)
                norm = 1e-12;
            for (size_t j = 0; j < h; j++)
                o[j] = (float)(o[j] / norm);
        }
        start += lens[s];
    }
    rc = 0;
out:
    free(x);
    free(q);
    free(k);
    free(v);
    free(ctx);
    free(mid);
    free(scores);
    return rc;
}

/* ------------------------------------------------------------ the backend table -- */

static int bcpu__ops_load(const char *dir, void **model, char *err, size_t errlen)
{
    fleet_bert_cpu *m = NULL;
    int rc = fleet_bert_cpu_load(dir, &m, err, errlen);
    *model = m;
    return rc;
}

static const fleet_bert_config *bcpu__ops_config(const void *model)
{
    return fleet_bert_cpu_config(model);
}

static size_t bcpu__ops_max_seqs(const void *model)
{
    return FLEET_BERT_CPU_MAX_SEQS;
}

static int bcpu__ops_embed(void *model, const int32_t *const *ids, const size_t *lens, size_t n,
                           float *out, char *err, size_t errlen)
{
    return fleet_bert_cpu_embed(model, ids, lens, n, out, err, errlen);
}

static void bcpu__ops_free(void *model)
{
    fleet_bert_cpu_free(model);
}

const fleet_bert_ops fleet_bert_cpu_ops = {
    .name = "cpu",
    .load = bcpu__ops_load,
    .config = bcpu__ops_config,
    .max_seqs = bcpu__ops_max_seqs,
    .embed = bcpu__ops_embed,
    .free = bcpu__ops_free,
};
