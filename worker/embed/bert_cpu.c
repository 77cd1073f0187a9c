/* bert_cpu.c: the BERT encoder's forward pass on the CPU; see bert_cpu.h. */
#include "bert_cpu.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"
#include "safetensors.h"

/* ------------------------------------------------------------ the model ---------- */

/* A linear layer: w is [out, in], the checkpoint's layout (y = x w^T + b is one
 * cblas_sgemm with CblasTrans on w). */
typedef struct linear {
    float *w;
    float *b;
    int in, out;
} linear;

typedef struct layer_norm {
    float *w;
    float *b;
} layer_norm;

/* qkv: query, key and value stacked into one [3 hidden, hidden] layer, so a token's row
 * of its output holds q, then k, then v. */
typedef struct encoder_layer {
    linear qkv, attn_out, inter, out;
    layer_norm attn_norm, out_norm;
} encoder_layer;

struct bert_cpu {
    bert_config cfg;
    float *word;     /* [vocab, hidden] */
    float *position; /* [max_pos, hidden] */
    float *type0;    /* [hidden]: token type 0's row */
    layer_norm emb_norm;
    encoder_layer *layers; /* num_hidden_layers */
};

/* ------------------------------------------------------------ loading ------------ */

/* Copies tensor prefix+name (already checked for shape and a float dtype) to a new F32
 * array (st_read_f32 converts F16 and BF16); returns NULL with err set. */
static float *load_tensor(const st_file *st, const char *prefix, const char *name, size_t *count,
                          char *err, size_t errlen) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const st_tensor *t = st_find(st, full);
    if (!t || !t->data) {
        fleet_err(err, errlen, "weights: tensor %s missing", full);
        return NULL;
    }
    size_t n = t->nbytes / st_dtype_size(t->dtype);
    float *dst = malloc((n ? n : 1) * sizeof *dst);
    if (!dst) {
        fleet_err(err, errlen, "weights: out of memory for %s", full);
        return NULL;
    }
    if (st_read_f32(t, dst, err, errlen) != 0) {
        free(dst);
        return NULL;
    }
    if (count) *count = n;
    return dst;
}

/* Loads nbase linear layers of the same shape [out, in] (names base[i].weight and
 * .bias) stacked into one layer [nbase * out, in]. */
static int linear_load(const st_file *st, const char *prefix, const char *const *base, int nbase,
                       int in, int out, linear *l, char *err, size_t errlen) {
    size_t wn = (size_t)in * (size_t)out, on = (size_t)out;
    l->in = in;
    l->out = nbase * out;
    l->w = malloc((size_t)nbase * wn * sizeof *l->w);
    l->b = malloc((size_t)nbase * on * sizeof *l->b);
    if (!l->w || !l->b) return fleet_err(err, errlen, "weights: out of memory for %s", base[0]);
    for (int i = 0; i < nbase; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.weight", base[i]);
        float *w = load_tensor(st, prefix, name, NULL, err, errlen);
        if (!w) return -1;
        memcpy(l->w + (size_t)i * wn, w, wn * sizeof *w);
        free(w);
        snprintf(name, sizeof name, "%s.bias", base[i]);
        float *b = load_tensor(st, prefix, name, NULL, err, errlen);
        if (!b) return -1;
        memcpy(l->b + (size_t)i * on, b, on * sizeof *b);
        free(b);
    }
    return 0;
}

static int layer_norm_load(const st_file *st, const char *prefix, const char *base, layer_norm *nm,
                           char *err, size_t errlen) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", base);
    if (!(nm->w = load_tensor(st, prefix, name, NULL, err, errlen))) return -1;
    snprintf(name, sizeof name, "%s.bias", base);
    return (nm->b = load_tensor(st, prefix, name, NULL, err, errlen)) ? 0 : -1;
}

/* FLEET_CPU_THREADS, when set, becomes OpenBLAS's thread count (process-wide). */
static int threads_from_env(char *err, size_t errlen) {
    const char *v = getenv("FLEET_CPU_THREADS");
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 1 || n > 1024)
        return fleet_err(err, errlen, "FLEET_CPU_THREADS=%s: must be an integer in [1, 1024]", v);
    openblas_set_num_threads((int)n);
    return 0;
}

int bert_cpu_threads(void) { return openblas_get_num_threads(); }

int bert_cpu_load(const char *dir, bert_cpu **out, char *err, size_t errlen) {
    *out = NULL;
    if (threads_from_env(err, errlen) != 0) return -1;
    st_file *st = NULL;
    bert_cpu *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "embed: out of memory");
    if (bert_config_load(dir, &m->cfg, err, errlen) != 0) goto err;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path) {
        fleet_err(err, errlen, "model.safetensors: path too long");
        goto err;
    }
    if (st_open(path, &st, err, errlen) != 0) goto err;
    if (bert_check_tensors(&m->cfg, st, err, errlen) != 0) goto err;
    const char *prefix = bert_tensor_prefix(st);
    const bert_config *c = &m->cfg;
    int h = c->hidden_size, inter = c->intermediate_size;

    if (!(m->word = load_tensor(st, prefix, "embeddings.word_embeddings.weight", NULL, err,
                                errlen)) ||
        !(m->position = load_tensor(st, prefix, "embeddings.position_embeddings.weight", NULL, err,
                                    errlen)) ||
        !(m->type0 = load_tensor(st, prefix, "embeddings.token_type_embeddings.weight", NULL, err,
                                 errlen)) ||
        layer_norm_load(st, prefix, "embeddings.LayerNorm", &m->emb_norm, err, errlen) != 0)
        goto err;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) {
        fleet_err(err, errlen, "embed: out of memory");
        goto err;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        encoder_layer *ly = &m->layers[l];
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
        const char *bb[6] = {b[0], b[1], b[2], b[3], b[4], b[5]};
        if (linear_load(st, prefix, bb, 3, h, h, &ly->qkv, err, errlen) != 0 ||
            linear_load(st, prefix, bb + 3, 1, h, h, &ly->attn_out, err, errlen) != 0 ||
            linear_load(st, prefix, bb + 4, 1, h, inter, &ly->inter, err, errlen) != 0 ||
            linear_load(st, prefix, bb + 5, 1, inter, h, &ly->out, err, errlen) != 0 ||
            layer_norm_load(st, prefix, n1, &ly->attn_norm, err, errlen) != 0 ||
            layer_norm_load(st, prefix, n2, &ly->out_norm, err, errlen) != 0)
            goto err;
    }
    st_close(st);
    *out = m;
    return 0;
err:
    st_close(st);
    bert_cpu_free(m);
    return -1;
}

const bert_config *bert_cpu_config(const bert_cpu *m) { return &m->cfg; }

static void linear_free(linear *l) {
    free(l->w);
    free(l->b);
}

static void layer_norm_free(layer_norm *nm) {
    free(nm->w);
    free(nm->b);
}

void bert_cpu_free(bert_cpu *m) {
    if (!m) return;
    free(m->word);
    free(m->position);
    free(m->type0);
    layer_norm_free(&m->emb_norm);
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            encoder_layer *ly = &m->layers[l];
            linear_free(&ly->qkv);
            linear_free(&ly->attn_out);
            linear_free(&ly->inter);
            linear_free(&ly->out);
            layer_norm_free(&ly->attn_norm);
            layer_norm_free(&ly->out_norm);
        }
    }
    free(m->layers);
    free(m);
}

/* ------------------------------------------------------------ kernels ------------ */

/* y[t, :] = x[t, :] w^T + b for t < rows: the bias rows, then one sgemm adding to them. */
static void gemm(const linear *l, const float *x, size_t rows, float *y) {
    size_t out = (size_t)l->out;
    for (size_t t = 0; t < rows; t++) memcpy(y + t * out, l->b, out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, l->out, l->in, 1.0f, x,
                l->in, l->w, l->in, 1.0f, y, l->out);
}

/* x[t, :] = LayerNorm(x[t, :] + add[t, :]) (add may be NULL), statistics in double. */
static void add_norm(float *x, const float *add, size_t rows, int h, const layer_norm *nm,
                     double eps) {
    for (size_t t = 0; t < rows; t++) {
        float *xr = x + t * (size_t)h;
        if (add) {
            const float *ar = add + t * (size_t)h;
            for (int j = 0; j < h; j++) xr[j] += ar[j];
        }
        double mean = 0;
        for (int j = 0; j < h; j++) mean += xr[j];
        mean /= h;
        double var = 0;
        for (int j = 0; j < h; j++) var += (xr[j] - mean) * (xr[j] - mean);
        var /= h;
        double inv = 1.0 / sqrt(var + eps);
        for (int j = 0; j < h; j++) xr[j] = (float)((xr[j] - mean) * inv) * nm->w[j] + nm->b[j];
    }
}

/* erf(x) for GELU as a rational function, x P(x^2) / Q(x^2) on x clamped to [-4, 4]
 * (beyond which erf is +-1 in float): Eigen's and XLA's float erf. Within 4.3e-7 of erf
 * everywhere (checked against double erf on a 1e-5 grid over [-12, 12]), and unlike
 * erff it has no branches or calls, so the GELU loop vectorizes. The clamp works on the
 * bits (|x| as an integer) because GCC will not if-convert a float compare under the
 * default -ftrapping-math. */
static inline float erf_approx(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t mag = bits & 0x7fffffffu;
    mag = mag < 0x40800000u ? mag : 0x40800000u; /* 4.0f */
    bits = (bits & 0x80000000u) | mag;
    memcpy(&x, &bits, sizeof x);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

/* x = GELU(x) = x/2 (1 + erf(x / sqrt 2)) over n values. Cloned for AVX-512 and AVX2,
 * picked at load time by the CPU (no FMA contraction under -std=c11, so every clone
 * rounds the same). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118654752440f));
}

/* ctx = softmax(q k^T / sqrt(d)) v for one sequence of len tokens, every head. qkv is
 * the sequence's first row of the [tokens, 3 hidden] q|k|v block, ctx its first row of
 * the [tokens, hidden] output; head hd is columns [hd d, (hd + 1) d) of each part, so
 * each product is one sgemm over strided rows (lda 3 hidden). Only this sequence's
 * tokens are keys, so no mask is needed. scores holds len x len floats. */
static void attention(const float *qkv, float *ctx, size_t len, int h, int heads, float *scores) {
    int d = h / heads, n = (int)len, ld = 3 * h;
    float scale = 1.0f / sqrtf((float)d);
    for (int hd = 0; hd < heads; hd++) {
        const float *q = qkv + (size_t)hd * (size_t)d;
        const float *k = q + h, *v = q + 2 * h;
        /* scores = scale q k^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q, ld, k, ld, 0.0f,
                    scores, n);
        for (size_t i = 0; i < len; i++) {
            float *si = scores + i * len;
            float max = -INFINITY;
            for (size_t j = 0; j < len; j++)
                if (si[j] > max) max = si[j];
            float sum = 0;
            for (size_t j = 0; j < len; j++) {
                si[j] = expf(si[j] - max);
                sum += si[j];
            }
            float inv = 1.0f / sum;
            for (size_t j = 0; j < len; j++) si[j] *= inv;
        }
        /* ctx = p v */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, scores, n, v, ld,
                    0.0f, ctx + (size_t)hd * (size_t)d, h);
    }
}

/* ------------------------------------------------------------ the forward pass --- */

int bert_cpu_embed(bert_cpu *m, const int32_t *const *ids, const size_t *lens, size_t n, float *out,
                   char *err, size_t errlen) {
    if (n == 0) return 0;
    const bert_config *c = &m->cfg;
    size_t h = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
    size_t total = 0, maxlen = 0;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] == 0 || lens[s] > (size_t)c->max_position_embeddings)
            return fleet_err(err, errlen, "embed: sequence %zu: length %zu, must be in [1, %d]", s,
                             lens[s], c->max_position_embeddings);
        for (size_t i = 0; i < lens[s]; i++)
            if (ids[s][i] < 0 || ids[s][i] >= c->vocab_size)
                return fleet_err(err, errlen,
                                 "embed: sequence %zu: id %ld outside the vocabulary (%d)", s,
                                 (long)ids[s][i], c->vocab_size);
        total += lens[s];
        if (lens[s] > maxlen) maxlen = lens[s];
    }

    /* Scratch: x, ctx, tmp [total, hidden]; qkv [total, 3 hidden]; mid [total,
     * intermediate]; scores [maxlen, maxlen]. */
    if (total > SIZE_MAX / sizeof(float) / (inter > 3 * h ? inter : 3 * h) ||
        total > (size_t)INT32_MAX)
        return fleet_err(err, errlen, "embed: %zu tokens is too many", total);
    float *x = malloc(total * h * sizeof *x);
    float *qkv = malloc(total * 3 * h * sizeof *qkv);
    float *ctx = malloc(total * h * sizeof *ctx);
    float *tmp = malloc(total * h * sizeof *tmp);
    float *mid = malloc(total * inter * sizeof *mid);
    float *scores = malloc(maxlen * maxlen * sizeof *scores);
    int rc = -1;
    if (!x || !qkv || !ctx || !tmp || !mid || !scores) {
        fleet_err(err, errlen, "embed: out of memory for %zu tokens", total);
        goto out;
    }

    /* Embeddings, packed: sequence s occupies rows [start_s, start_s + lens[s]). */
    size_t row = 0;
    for (size_t s = 0; s < n; s++) {
        for (size_t i = 0; i < lens[s]; i++, row++) {
            const float *we = m->word + (size_t)ids[s][i] * h;
            const float *pe = m->position + i * h;
            float *xr = x + row * h;
            for (size_t j = 0; j < h; j++) xr[j] = we[j] + pe[j] + m->type0[j];
        }
    }
    add_norm(x, NULL, total, (int)h, &m->emb_norm, c->layer_norm_eps);

    for (int l = 0; l < c->num_hidden_layers; l++) {
        const encoder_layer *ly = &m->layers[l];
        gemm(&ly->qkv, x, total, qkv);
        size_t start = 0;
        for (size_t s = 0; s < n; s++) {
            attention(qkv + start * 3 * h, ctx + start * h, lens[s], (int)h, c->num_attention_heads,
                      scores);
            start += lens[s];
        }
        gemm(&ly->attn_out, ctx, total, tmp);
        add_norm(x, tmp, total, (int)h, &ly->attn_norm, c->layer_norm_eps);
        gemm(&ly->inter, x, total, mid);
        gelu(mid, total * inter);
        gemm(&ly->out, mid, total, tmp);
        add_norm(x, tmp, total, (int)h, &ly->out_norm, c->layer_norm_eps);
    }

    /* Mean over each sequence's tokens, then L2 (sums in double). */
    size_t start = 0;
    for (size_t s = 0; s < n; s++) {
        float *o = out + s * h;
        double norm2 = 0;
        for (size_t j = 0; j < h; j++) {
            double sum = 0;
            for (size_t i = 0; i < lens[s]; i++) sum += x[(start + i) * h + j];
            o[j] = (float)(sum / (double)lens[s]);
            norm2 += (double)o[j] * o[j];
        }
        if (c->normalize) {
            double norm = sqrt(norm2);
            if (norm < 1e-12) norm = 1e-12;
            for (size_t j = 0; j < h; j++) o[j] = (float)(o[j] / norm);
        }
        start += lens[s];
    }
    rc = 0;
out:
    free(x);
    free(qkv);
    free(ctx);
    free(tmp);
    free(mid);
    free(scores);
    return rc;
}

/* ------------------------------------------------------------ the backend table -- */

static int ops_load(const char *dir, void **model, char *err, size_t errlen) {
    bert_cpu *m = NULL;
    int rc = bert_cpu_load(dir, &m, err, errlen);
    *model = m;
    return rc;
}

static const bert_config *ops_config(const void *model) { return bert_cpu_config(model); }

static size_t ops_max_seqs(const void *model) { return BERT_CPU_MAX_SEQS; }

static int ops_embed(void *model, const int32_t *const *ids, const size_t *lens, size_t n,
                     float *out, char *err, size_t errlen) {
    return bert_cpu_embed(model, ids, lens, n, out, err, errlen);
}

static void ops_free(void *model) { bert_cpu_free(model); }

const bert_ops bert_cpu_ops = {
    .name = "cpu",
    .load = ops_load,
    .config = ops_config,
    .max_seqs = ops_max_seqs,
    .embed = ops_embed,
    .free = ops_free,
};
