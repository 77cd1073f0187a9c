/* bert_cpu.c: the BERT encoder's forward pass on the CPU; see bert_cpu.h. */
#include "bert_cpu.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_pool.h"
#include "fleet/err.h"
#include "safetensors.h"

/* ------------------------------------------------------------ the model ---------- */

/* A linear layer y = x w^T + b. On a CPU with AVX-512 the weights are kept only packed
 * for the product kernel below (wp: see pack_weights); elsewhere as w, [out, in], the
 * checkpoint's layout, for one cblas_sgemm with CblasTrans on w. */
typedef struct linear {
    float *w;
    float *wp;
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

/* A forward pass's working memory, kept from call to call and grown to the largest call
 * seen (tokens: rows of the packed batch; len: the longest sequence; seqs: sequences). */
typedef struct scratch {
    size_t tokens, len, seqs;
    float *x;      /* [tokens, hidden]: the hidden state */
    float *qkv;    /* [tokens, 3 hidden] */
    float *ctx;    /* [tokens, hidden]: attention's output */
    float *tmp;    /* [tokens, hidden]: a projection before residual + LayerNorm */
    float *mid;    /* [tokens, intermediate] */
    float *scores; /* [threads, len, len]: one attention matrix per pool thread */
    double *sums;  /* [threads, hidden]: pooling sums per pool thread */
    float *kv;     /* [threads, kv_floats]: attention's packed keys and values (the packed
                    * product only), 64-byte aligned */
    size_t kv_floats;
    size_t *start; /* [seqs]: each sequence's first row */
} scratch;

struct bert_cpu {
    bert_config cfg;
    float *word;     /* [vocab, hidden] */
    float *position; /* [max_pos, hidden] */
    float *type0;    /* [hidden]: token type 0's row */
    layer_norm emb_norm;
    encoder_layer *layers; /* num_hidden_layers */
    cpu_pool *pool;
    /* One forward pass at a time per model: it owns scr and the pool while it runs. */
    pthread_mutex_t mu;
    bool mu_init;
    scratch scr;
};

/* ------------------------------------------------------------ the packed product -- */

/* On x86-64 CPUs with AVX-512 the linear layers run on our own kernel rather than
 * OpenBLAS: the weights are packed once at load into the order the kernel reads them,
 * and the bias is added as the results are stored, so a product copies neither weights
 * nor bias per call (OpenBLAS repacks both operands of every call). Built with
 * -DBERT_CPU_NO_AVX512 (to test the other path on such a CPU) or elsewhere, every
 * product is OpenBLAS's.
 *
 * Layout: the out columns in panels of PANEL (two 16-float registers); panel p holds, for
 * each k in [0, in), w[p PANEL + c][k] for c in [0, PANEL) contiguously, columns past
 * `out` zero; the kernel reads it sequentially, and broadcasts the other operand's values
 * straight from its rows. A block of MR rows by one panel keeps its 2 MR sums in
 * registers over the whole of k, in order k = 0, 1, ... (one FMA each), and adds the bias
 * last: a row's result does not depend on which rows share its block or its task, so a
 * sequence alone and in a batch gets the same bits from these products. */
#if defined(__x86_64__) && !defined(BERT_CPU_NO_AVX512)
#define BERT_PACKED 1
#include <immintrin.h>
#endif

#define PANEL 32
#define MR 8
/* Rows a linear task multiplies at a time: the block's input rows (BLOCK_ROWS x in
 * floats), the panel being read and the block's results stay in the 1-2 MB L2 caches of
 * current cores, and the epilogue (GELU, residual + LayerNorm) finds its rows there. */
#define BLOCK_ROWS 64

/* Whether this CPU runs the packed kernel (the same answer every time: a load packs the
 * weights by it, and a forward pass reads them by it). */
static bool packed_on(void) {
#ifdef BERT_PACKED
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* Packs the `out` x `in` matrix w (w[o][k] at w[o * ldo + k * ldk]) into panels at wp
 * (the layout above: panels x in x PANEL floats). */
static void pack_panels(const float *w, size_t ldo, size_t ldk, size_t out, size_t in, float *wp) {
    for (size_t p = 0; p * PANEL < out; p++)
        for (size_t k = 0; k < in; k++) {
            float *dst = wp + (p * in + k) * PANEL;
            for (size_t c = 0; c < PANEL; c++) {
                size_t o = p * PANEL + c;
                dst[c] = o < out ? w[o * ldo + k * ldk] : 0.0f;
            }
        }
}

/* Floats of a packed `out` x `in` matrix, rounded up to whole cache lines. */
static size_t panels_floats(size_t out, size_t in) {
    return (out + PANEL - 1) / PANEL * in * PANEL;
}

/* Packs l->w into l->wp and frees l->w; -1 when out of memory. */
static int pack_weights(linear *l) {
    size_t in = (size_t)l->in, out = (size_t)l->out;
    if (!(l->wp = aligned_alloc(64, panels_floats(out, in) * sizeof(float)))) return -1;
    pack_panels(l->w, in, 1, out, in, l->wp);
    free(l->w);
    l->w = NULL;
    return 0;
}

#ifdef BERT_PACKED
/* c[r][0, cols) = scale (sum over k of a[r][k] wp[k][.]) + bias for r < rows (<= MR): a
 * is rows rows of `in` floats, lda apart; wp one panel; bias PANEL floats or NULL (none);
 * m0 and m1 mask the panel's two halves to cols. Rows past `rows` repeat row 0 (their
 * sums are never stored), so every call runs the same MR-row loop. */
__attribute__((target("avx512f"))) static void
kernel_avx512(const float *a, size_t lda, size_t rows, const float *wp, size_t in,
              const float *bias, float scale, float *c, size_t ldc, __mmask16 m0, __mmask16 m1) {
    const float *ar[MR];
    for (size_t r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * lda;
    __m512 s0[MR], s1[MR];
    for (int r = 0; r < MR; r++) s0[r] = s1[r] = _mm512_setzero_ps();
    for (size_t k = 0; k < in; k++) {
        __m512 w0 = _mm512_load_ps(wp + k * PANEL), w1 = _mm512_load_ps(wp + k * PANEL + 16);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ar[r][k]);
            s0[r] = _mm512_fmadd_ps(av, w0, s0[r]);
            s1[r] = _mm512_fmadd_ps(av, w1, s1[r]);
        }
    }
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), sc = _mm512_set1_ps(scale);
    if (bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (size_t r = 0; r < rows; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, _mm512_add_ps(_mm512_mul_ps(s0[r], sc), b0));
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, _mm512_add_ps(_mm512_mul_ps(s1[r], sc), b1));
    }
}

/* c[t, 0, out) = scale a[t, :] W^T + b for t < rows: W packed by pack_panels (`in` by
 * `out`), a rows lda apart, c rows ldc apart, bias `out` floats or NULL. Panel by panel,
 * so one panel is read from cache by all the rows' blocks. */
static void gemm_panels(const float *a, size_t lda, size_t rows, const float *wp, size_t in,
                        size_t out, const float *bias, float scale, float *c, size_t ldc) {
    for (size_t p = 0; p * PANEL < out; p++) {
        size_t cols = out - p * PANEL < PANEL ? out - p * PANEL : PANEL;
        __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffffu : (1u << cols) - 1);
        __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffffu : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
        for (size_t r0 = 0; r0 < rows; r0 += MR)
            kernel_avx512(a + r0 * lda, lda, rows - r0 < MR ? rows - r0 : MR, wp + p * in * PANEL,
                          in, bias ? bias + p * PANEL : NULL, scale, c + r0 * ldc + p * PANEL, ldc,
                          m0, m1);
    }
}
#endif

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

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* Every product runs inside a pool task, on that task's thread: OpenBLAS threads of its
 * own would only contend with the pool's for the same cores. */
static void blas_single(void) { openblas_set_num_threads(1); }

/* OPENBLAS_NUM_THREADS when it holds an integer in [1, CPU_POOL_MAX_THREADS], else 0. */
static int blas_threads_env(void) {
    const char *v = getenv("OPENBLAS_NUM_THREADS");
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long t = strtol(v, &end, 10);
    return *end || errno || t < 1 || t > CPU_POOL_MAX_THREADS ? 0 : (int)t;
}

/* The threads a forward pass uses: FLEET_CPU_THREADS (cpu_pool_threads_setting, the one
 * parser); else OPENBLAS_NUM_THREADS, which sized OpenBLAS's own threads before the pool
 * did the work (ignored unless an integer in [1, 1024]); else one per CPU the process may
 * use. Read from the environment each time rather than from OpenBLAS, which a load sets
 * to 1 (and a backend module holds its own copy of this file). -1 with err set when
 * FLEET_CPU_THREADS is not an integer in [1, 1024]. */
static int threads_wanted(int *n, char *err, size_t errlen) {
    if (cpu_pool_threads_setting(n, err, errlen) != 0) return -1;
    if (*n == 0) *n = blas_threads_env();
    if (*n == 0) *n = cpu_pool_default_threads();
    return 0;
}

int bert_cpu_threads(void) {
    int n = 1;
    char err[128];
    if (threads_wanted(&n, err, sizeof err) == 0) return n;
    n = blas_threads_env();
    return n ? n : cpu_pool_default_threads();
}

int bert_cpu_load(const char *dir, bert_cpu **out, char *err, size_t errlen) {
    *out = NULL;
    int threads = 1;
    if (threads_wanted(&threads, err, errlen) != 0) return -1;
    pthread_once(&blas_once, blas_single);
    st_file *st = NULL;
    bert_cpu *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "embed: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return fleet_err(err, errlen, "embed: cannot create a mutex");
    }
    m->mu_init = true;
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
        if (packed_on() && (pack_weights(&ly->qkv) != 0 || pack_weights(&ly->attn_out) != 0 ||
                            pack_weights(&ly->inter) != 0 || pack_weights(&ly->out) != 0)) {
            fleet_err(err, errlen, "embed: out of memory packing layer %d's weights", l);
            goto err;
        }
    }
    if (!(m->pool = cpu_pool_new(threads))) {
        fleet_err(err, errlen, "embed: cannot start %d threads: %s", threads, strerror(errno));
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
    free(l->wp);
    free(l->b);
}

static void layer_norm_free(layer_norm *nm) {
    free(nm->w);
    free(nm->b);
}

static void scratch_free(scratch *sc) {
    free(sc->x);
    free(sc->qkv);
    free(sc->ctx);
    free(sc->tmp);
    free(sc->mid);
    free(sc->scores);
    free(sc->sums);
    free(sc->kv);
    free(sc->start);
    memset(sc, 0, sizeof *sc);
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
    cpu_pool_free(m->pool);
    scratch_free(&m->scr);
    if (m->mu_init) pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ------------------------------------------------------------ kernels ------------ */

/* The row kernels are compiled three times, for AVX-512, AVX2 and plain x86-64, and the
 * copy for the CPU is picked at load time. Without FMA contraction (-std=c11 turns it
 * off) every copy rounds the same, so the copy picked never changes a result. */
#define BERT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* erf(x) for GELU as a rational function, x P(x^2) / Q(x^2) on x clamped to [-4, 4]
 * (beyond which erf is +-1 in float): Eigen's and XLA's float erf. Within 4.3e-7 of erf
 * everywhere (checked against double erf on a 1e-5 grid over [-12, 12]), and unlike
 * erff it has no branches or calls, so the GELU loop vectorizes. The clamp works on the
 * bits (|x| as an integer) because GCC will not if-convert a float compare under the
 * default -ftrapping-math. */
static inline float erf_approx(float x) {
    uint32_t bits = f2u(x);
    uint32_t mag = bits & 0x7fffffffu;
    mag = mag < 0x40800000u ? mag : 0x40800000u; /* 4.0f */
    x = u2f((bits & 0x80000000u) | mag);
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

/* exp(x) for softmax, branch-free so that the loop vectorizes (expf is a call per
 * value): x clamped to |x| <= 87 (on the bits, as in erf_approx), x = n ln2 + f with n
 * rounded to nearest (the 1.5 * 2^23 trick) and ln2 in two parts (Cody and Waite), so
 * |f| <= ln2 / 2; e^f by Cephes' degree-7 polynomial for expf; 2^n put into the exponent
 * bits (|n| <= 126, so no overflow or denormal). Within 1 ulp of exp over [-87, 87]
 * (0.99 ulp at worst against double exp on a 1e-4 grid); softmax's inputs are <= 0
 * after the row's maximum is subtracted, and any below -87 (e^-87 = 1.6e-38) are as good
 * as 0 next to the maximum's 1. */
static inline float exp_approx(float x) {
    uint32_t bits = f2u(x);
    uint32_t mag = bits & 0x7fffffffu;
    mag = mag < 0x42ae0000u ? mag : 0x42ae0000u; /* 87.0f */
    x = u2f((bits & 0x80000000u) | mag);
    float r = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    int32_t n = (int32_t)(f2u(r) - 0x4b400000u);
    float fn = r - 12582912.0f;
    float f = x - fn * 0.693359375f;
    f = f - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    float y = p * f * f + f + 1.0f;
    return y * u2f((uint32_t)(n + 127) << 23);
}

/* x = GELU(x) = x/2 (1 + erf(x / sqrt 2)) over n values. */
BERT_CLONES static void gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118654752440f));
}

/* The number of partial sums a reduction keeps: independent lanes let the compiler
 * vectorize a sum that a single accumulator would leave one add at a time. */
#define LANES 16

/* x[0, h) = LayerNorm(x + add) (add may be NULL): mean and variance summed in double
 * (two passes, the variance around the mean), as the reference does. */
BERT_CLONES static void norm_row(float *x, const float *add, size_t h, const layer_norm *nm,
                                 double eps) {
    if (add)
        for (size_t j = 0; j < h; j++) x[j] += add[j];
    double part[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= h; j += LANES)
        for (size_t k = 0; k < LANES; k++) part[k] += x[j + k];
    for (; j < h; j++) part[0] += x[j];
    double mean = 0;
    for (size_t k = 0; k < LANES; k++) mean += part[k];
    mean /= (double)h;
    double vpart[LANES] = {0};
    for (j = 0; j + LANES <= h; j += LANES)
        for (size_t k = 0; k < LANES; k++) {
            double dv = x[j + k] - mean;
            vpart[k] += dv * dv;
        }
    for (; j < h; j++) vpart[0] += (x[j] - mean) * (x[j] - mean);
    double var = 0;
    for (size_t k = 0; k < LANES; k++) var += vpart[k];
    var /= (double)h;
    double inv = 1.0 / sqrt(var + eps);
    for (j = 0; j < h; j++) x[j] = (float)((x[j] - mean) * inv) * nm->w[j] + nm->b[j];
}

/* s[0, n) = softmax(s). The maximum is taken on the bits mapped to integers that sort as
 * the floats do (an integer max vectorizes; a float compare does not, see erf_approx);
 * the sum is in LANES partial sums. */
BERT_CLONES static void softmax_row(float *s, size_t n) {
    int32_t top = INT32_MIN;
    for (size_t j = 0; j < n; j++) {
        int32_t b = (int32_t)f2u(s[j]);
        int32_t key = b ^ (int32_t)((uint32_t)(b >> 31) >> 1); /* negatives reversed */
        top = key > top ? key : top;
    }
    float max = u2f((uint32_t)(top ^ (int32_t)((uint32_t)(top >> 31) >> 1)));
    float part[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k++) {
            float e = exp_approx(s[j + k] - max);
            s[j + k] = e;
            part[k] += e;
        }
    for (; j < n; j++) {
        s[j] = exp_approx(s[j] - max);
        part[0] += s[j];
    }
    float sum = 0;
    for (size_t k = 0; k < LANES; k++) sum += part[k];
    float inv = 1.0f / sum;
    for (j = 0; j < n; j++) s[j] *= inv;
}

/* y[t, :] = x[t, :] w^T + b for t < rows: the packed kernel, or the bias rows, then one
 * sgemm adding to them (OpenBLAS on one thread: the caller is a pool task). */
static void gemm(const linear *l, const float *x, size_t rows, float *y) {
#ifdef BERT_PACKED
    if (l->wp) {
        gemm_panels(x, (size_t)l->in, rows, l->wp, (size_t)l->in, (size_t)l->out, l->b, 1.0f, y,
                    (size_t)l->out);
        return;
    }
#endif
    size_t out = (size_t)l->out;
    for (size_t t = 0; t < rows; t++) memcpy(y + t * out, l->b, out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, l->out, l->in, 1.0f, x,
                l->in, l->w, l->in, 1.0f, y, l->out);
}

/* ctx = softmax(q k^T / sqrt(d)) v for one sequence of len tokens and one head hd. qkv
 * is the sequence's first row of the [tokens, 3 hidden] q|k|v block, ctx its first row of
 * the [tokens, hidden] output; head hd is columns [hd d, (hd + 1) d) of each part, so
 * each product reads strided rows (3 hidden apart). Only this sequence's
 * tokens are keys, so no mask is needed. scores holds len x len floats. */
static void attention_head(const float *qkv, float *ctx, size_t len, int h, int d, int hd,
                           float *scores, float *kv) {
    int n = (int)len, ld = 3 * h;
    float scale = 1.0f / sqrtf((float)d);
    const float *q = qkv + (size_t)hd * (size_t)d;
    const float *k = q + h, *v = q + 2 * h;
#ifdef BERT_PACKED
    if (kv) {
        /* The keys as a len x d "weight" (scores = scale q K^T), the values transposed as a
         * d x len one (ctx = p V), each packed into this thread's kv. */
        size_t sd = (size_t)d, sld = (size_t)ld;
        float *kp = kv, *vp = kv + panels_floats(len, sd);
        pack_panels(k, sld, 1, len, sd, kp);
        gemm_panels(q, sld, len, kp, sd, len, NULL, scale, scores, len);
        for (size_t i = 0; i < len; i++) softmax_row(scores + i * len, len);
        pack_panels(v, 1, sld, sd, len, vp);
        gemm_panels(scores, len, len, vp, len, sd, NULL, 1.0f, ctx + (size_t)hd * sd, (size_t)h);
        return;
    }
#else
    (void)kv;
#endif
    /* scores = scale q k^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q, ld, k, ld, 0.0f, scores,
                n);
    for (size_t i = 0; i < len; i++) softmax_row(scores + i * len, len);
    /* ctx = p v */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, scores, n, v, ld, 0.0f,
                ctx + (size_t)hd * (size_t)d, h);
}

/* ------------------------------------------------------------ the forward pass --- */

/* One forward pass, as the pool's tasks see it. Row tasks take `chunk` consecutive rows
 * of the packed batch each; attention tasks one (sequence, head); pooling tasks one
 * sequence. */
typedef struct pass {
    const bert_cpu *m;
    scratch *sc;
    const int32_t *const *ids;
    const size_t *lens;
    size_t n, total, chunk, h;
    float *out;
    /* The step that linear_task runs: y = in lin^T + b, then the epilogue on y's rows. */
    const linear *lin;
    const float *in;
    float *y;
    enum { EPI_NONE, EPI_GELU, EPI_ADD_NORM } epi;
    const layer_norm *nm; /* EPI_ADD_NORM: x = LayerNorm(x + y) */
} pass;

/* Rows [*r0, *r1) of row task t; false when it has none. */
static bool task_rows(const pass *p, size_t t, size_t *r0, size_t *r1) {
    *r0 = t * p->chunk;
    *r1 = *r0 + p->chunk < p->total ? *r0 + p->chunk : p->total;
    return *r0 < *r1;
}

/* The sequence that packed row `row` belongs to (start is ascending). */
static size_t seq_of(const pass *p, size_t row) {
    size_t lo = 0, hi = p->n; /* start[lo] <= row < start[hi] (start[n] = total) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->sc->start[mid] <= row) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Word + position + token type 0 embeddings, then LayerNorm. */
static void embed_task(void *arg, size_t t, int thread) {
    const pass *p = arg;
    const bert_cpu *m = p->m;
    size_t r0, r1, h = p->h;
    if (!task_rows(p, t, &r0, &r1)) return;
    size_t s = seq_of(p, r0);
    for (size_t row = r0; row < r1; row++) {
        while (s + 1 < p->n && p->sc->start[s + 1] <= row) s++;
        size_t i = row - p->sc->start[s];
        const float *we = m->word + (size_t)p->ids[s][i] * h;
        const float *pe = m->position + i * h;
        float *xr = p->sc->x + row * h;
        for (size_t j = 0; j < h; j++) xr[j] = we[j] + pe[j] + m->type0[j];
        norm_row(xr, NULL, h, &m->emb_norm, m->cfg.layer_norm_eps);
    }
}

/* One linear layer on the task's rows, each block's epilogue run on its rows while they
 * are still in cache: blocks of BLOCK_ROWS with the packed kernel, the whole task in one
 * sgemm with OpenBLAS (which repacks the weights on every call). */
static void linear_task(void *arg, size_t t, int thread) {
    const pass *p = arg;
    size_t t0, t1;
    if (!task_rows(p, t, &t0, &t1)) return;
    size_t in = (size_t)p->lin->in, out = (size_t)p->lin->out;
    size_t block = p->lin->wp ? BLOCK_ROWS : t1 - t0;
    for (size_t r0 = t0; r0 < t1; r0 += block) {
        size_t rows = t1 - r0 < block ? t1 - r0 : block;
        float *y = p->y + r0 * out;
        gemm(p->lin, p->in + r0 * in, rows, y);
        if (p->epi == EPI_GELU) {
            gelu(y, rows * out);
        } else if (p->epi == EPI_ADD_NORM) {
            for (size_t r = 0; r < rows; r++)
                norm_row(p->sc->x + (r0 + r) * p->h, y + r * out, p->h, p->nm,
                         p->m->cfg.layer_norm_eps);
        }
    }
}

static void attention_task(void *arg, size_t t, int thread) {
    const pass *p = arg;
    int heads = p->m->cfg.num_attention_heads, hh = (int)p->h;
    size_t s = t / (size_t)heads, start = p->sc->start[s];
    attention_head(p->sc->qkv + start * 3 * p->h, p->sc->ctx + start * p->h, p->lens[s], hh,
                   hh / heads, (int)(t % (size_t)heads),
                   p->sc->scores + (size_t)thread * p->sc->len * p->sc->len,
                   p->sc->kv ? p->sc->kv + (size_t)thread * p->sc->kv_floats : NULL);
}

/* Mean over sequence t's tokens, then L2 (sums in double, each in token order). */
static void pool_task(void *arg, size_t t, int thread) {
    const pass *p = arg;
    size_t h = p->h, len = p->lens[t];
    const float *x = p->sc->x + p->sc->start[t] * h;
    double *sum = p->sc->sums + (size_t)thread * h;
    float *o = p->out + t * h;
    for (size_t j = 0; j < h; j++) sum[j] = 0;
    for (size_t i = 0; i < len; i++)
        for (size_t j = 0; j < h; j++) sum[j] += x[i * h + j];
    double norm2 = 0;
    for (size_t j = 0; j < h; j++) {
        o[j] = (float)(sum[j] / (double)len);
        norm2 += (double)o[j] * o[j];
    }
    if (p->m->cfg.normalize) {
        double norm = sqrt(norm2);
        if (norm < 1e-12) norm = 1e-12;
        for (size_t j = 0; j < h; j++) o[j] = (float)(o[j] / norm);
    }
}

/* Resizes the buffer at *a (a float ** or double ** of the scratch) to n elements of sz
 * bytes; false when out of memory (*a is then unchanged and still the scratch's). */
static bool grow(void *a, size_t n, size_t sz) {
    void **pa = a;
    void *na = realloc(*pa, (n ? n : 1) * sz);
    if (!na) return false;
    *pa = na;
    return true;
}

/* Makes the scratch big enough for total tokens, sequences up to len tokens and n
 * sequences; -1 when out of memory (the scratch keeps its old, smaller buffers). */
static int scratch_fit(scratch *sc, const bert_config *c, int threads, size_t total, size_t len,
                       size_t n) {
    size_t h = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
    if (total > sc->tokens) {
        if (!grow(&sc->x, total * h, sizeof(float)) ||
            !grow(&sc->qkv, total * 3 * h, sizeof(float)) ||
            !grow(&sc->ctx, total * h, sizeof(float)) ||
            !grow(&sc->tmp, total * h, sizeof(float)) ||
            !grow(&sc->mid, total * inter, sizeof(float)))
            return -1;
        sc->tokens = total;
    }
    if (len > sc->len) {
        if (!grow(&sc->scores, (size_t)threads * len * len, sizeof(float))) return -1;
        if (packed_on()) {
            size_t d = h / (size_t)c->num_attention_heads;
            size_t kvf = panels_floats(len, d) + panels_floats(d, len);
            float *kv = aligned_alloc(64, (size_t)threads * kvf * sizeof(float));
            if (!kv) return -1;
            free(sc->kv);
            sc->kv = kv;
            sc->kv_floats = kvf;
        }
        sc->len = len;
    }
    if (n + 1 > sc->seqs) {
        if (!grow(&sc->start, n + 1, sizeof(size_t))) return -1;
        sc->seqs = n + 1;
    }
    if (!sc->sums && !grow(&sc->sums, (size_t)threads * h, sizeof(double))) return -1;
    return 0;
}

/* Rows per row task. With OpenBLAS, the rows split evenly over the threads, each task
 * at least MIN_TASK_ROWS rows: every sgemm call repacks the whole weight matrix, so
 * fewer, larger calls are cheaper. With the packed kernel, which repacks nothing, tasks
 * of at most BLOCK_ROWS rows (a multiple of MR), taken from the pool's shared counter,
 * so a thread slowed by another process on its core does less of the work instead of
 * holding up the rest. */
#define MIN_TASK_ROWS 16

static size_t rows_per_task(size_t total, int threads) {
    size_t per_thread = (total + (size_t)threads - 1) / (size_t)threads;
    if (packed_on()) {
        per_thread = (per_thread + MR - 1) / MR * MR;
        return per_thread < BLOCK_ROWS ? per_thread : BLOCK_ROWS;
    }
    return per_thread > MIN_TASK_ROWS ? per_thread : MIN_TASK_ROWS;
}

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
    if (total > SIZE_MAX / sizeof(float) / (inter > 3 * h ? inter : 3 * h) ||
        total > (size_t)INT32_MAX || n > SIZE_MAX / sizeof(size_t) - 1)
        return fleet_err(err, errlen, "embed: %zu tokens is too many", total);

    pthread_mutex_lock(&m->mu);
    int threads = cpu_pool_threads(m->pool), rc = -1;
    scratch *sc = &m->scr;
    if (scratch_fit(sc, c, threads, total, maxlen, n) != 0) {
        fleet_err(err, errlen, "embed: out of memory for %zu tokens", total);
        goto out;
    }
    /* Sequence s occupies packed rows [start[s], start[s] + lens[s]). */
    sc->start[0] = 0;
    for (size_t s = 0; s < n; s++) sc->start[s + 1] = sc->start[s] + lens[s];

    pass p = {
        .m = m, .sc = sc, .ids = ids, .lens = lens, .n = n, .total = total, .h = h, .out = out};
    p.chunk = rows_per_task(total, threads);
    size_t row_tasks = (total + p.chunk - 1) / p.chunk;
    size_t heads = (size_t)c->num_attention_heads;

    cpu_pool_run(m->pool, row_tasks, embed_task, &p);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const encoder_layer *ly = &m->layers[l];
        p.lin = &ly->qkv, p.in = sc->x, p.y = sc->qkv, p.epi = EPI_NONE;
        cpu_pool_run(m->pool, row_tasks, linear_task, &p);
        cpu_pool_run(m->pool, n * heads, attention_task, &p);
        p.lin = &ly->attn_out, p.in = sc->ctx, p.y = sc->tmp, p.epi = EPI_ADD_NORM;
        p.nm = &ly->attn_norm;
        cpu_pool_run(m->pool, row_tasks, linear_task, &p);
        p.lin = &ly->inter, p.in = sc->x, p.y = sc->mid, p.epi = EPI_GELU;
        cpu_pool_run(m->pool, row_tasks, linear_task, &p);
        p.lin = &ly->out, p.in = sc->mid, p.y = sc->tmp, p.epi = EPI_ADD_NORM;
        p.nm = &ly->out_norm;
        cpu_pool_run(m->pool, row_tasks, linear_task, &p);
    }
    cpu_pool_run(m->pool, n, pool_task, &p);
    rc = 0;
out:
    pthread_mutex_unlock(&m->mu);
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
