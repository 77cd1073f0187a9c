/* cnn_cpu.c: the classify network on the CPU (cnn_cpu.h).
 *
 * A call's images are cut into slices of SLICE images; each slice runs the whole network
 * on one thread with its own scratch, OpenBLAS on one thread inside it, and the slices run
 * side by side on the backend's threads. Within a slice activations are held
 * channel-major, [C][B][H][W], so that conv2 is one sgemm over the slice:
 * out[32][B*196] = W[32][144] x col[144][B*196], col the im2col of the padded input (the
 * trainer's layout, tools/classify/trainer.c). conv1 has one input channel, so it is
 * computed directly (nine multiply-adds a pixel, vectorized along rows), with its ReLU and
 * pooling in the same pass. */
#include "cnn_cpu.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_pool.h"
#include "fleet/err.h"

#define SIDE CNN_SIDE   /* 28 */
#define PAD (SIDE + 2)  /* 30: the padded input's side */
#define S2 (SIDE / 2)   /* 14: conv2's side */
#define P2 CNN_POOLED   /* 7 */
#define K2 (CNN_C1 * 9) /* 144: conv2's products' depth */
#define SLICE 8         /* images a task: conv2's col is 144 x 1568 floats (900 KB) */

typedef struct scratch {
    float *p1;   /* [16][SLICE][14][14] */
    float *col;  /* [144][SLICE * 196] */
    float *a2;   /* [32][SLICE * 196] */
    float *feat; /* [SLICE][1568] */
} scratch;

typedef struct cnn_cpu {
    cnn_weights w;
    cpu_pool *pool;
    int threads;
    scratch *s; /* one per thread */
} cnn_cpu;

/* ------------------------------------------------------------ the layers ---------- */

/* conv1 (3x3, pad 1, 1 -> 16), ReLU and 2x2 max pooling of one image: writes channel c's
 * pooled plane at p1 + c * plane_stride. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
conv1_relu_pool(const cnn_weights *w, const unsigned char *pixels, float *p1, size_t plane_stride) {
    float x[PAD * PAD], out[SIDE][SIDE];
    memset(x, 0, sizeof x);
    for (int y = 0; y < SIDE; y++)
        for (int i = 0; i < SIDE; i++)
            x[(y + 1) * PAD + i + 1] = (float)pixels[y * SIDE + i] * (1.0f / 255.0f);
    for (int c = 0; c < CNN_C1; c++) {
        const float *k = w->conv1_w + c * 9;
        for (int y = 0; y < SIDE; y++) {
            float *row = out[y];
            for (int i = 0; i < SIDE; i++) row[i] = w->conv1_b[c];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    const float *src = x + (y + ky) * PAD + kx;
                    float kw = k[ky * 3 + kx];
                    for (int i = 0; i < SIDE; i++) row[i] += kw * src[i];
                }
        }
        float *dst = p1 + (size_t)c * plane_stride;
        for (int y = 0; y < S2; y++)
            for (int i = 0; i < S2; i++) {
                float m = fmaxf(fmaxf(out[2 * y][2 * i], out[2 * y][2 * i + 1]),
                                fmaxf(out[2 * y + 1][2 * i], out[2 * y + 1][2 * i + 1]));
                dst[y * S2 + i] = m > 0.0f ? m : 0.0f;
            }
    }
}

/* im2col for conv2 (3x3, pad 1): in [16][b][14][14] -> col[144][b * 196], row
 * (c * 9 + ky * 3 + kx), the order of a [32][16][3][3] weight flattened. */
static void im2col(const float *in, size_t b, float *col) {
    size_t plane = S2 * S2, cols = b * plane;
    for (size_t c = 0; c < CNN_C1; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                float *row = col + (c * 9 + (size_t)(ky * 3 + kx)) * cols;
                for (size_t i = 0; i < b; i++) {
                    const float *src = in + (c * b + i) * plane;
                    float *dst = row + i * plane;
                    for (int y = 0; y < S2; y++) {
                        int sy = y + ky - 1;
                        float *d = dst + y * S2;
                        if (sy < 0 || sy >= S2) {
                            memset(d, 0, S2 * sizeof *d);
                            continue;
                        }
                        const float *s = src + sy * S2;
                        /* x + kx - 1 in [0, 14): the edge column is the padding */
                        if (kx == 0) {
                            d[0] = 0.0f;
                            memcpy(d + 1, s, (S2 - 1) * sizeof *d);
                        } else if (kx == 1) {
                            memcpy(d, s, S2 * sizeof *d);
                        } else {
                            memcpy(d, s + 1, (S2 - 1) * sizeof *d);
                            d[S2 - 1] = 0.0f;
                        }
                    }
                }
            }
}

/* One slice of b <= SLICE images through the network into b x 10 probabilities. */
static void run_slice(const cnn_weights *w, scratch *s, const unsigned char *pixels, size_t b,
                      float *probs) {
    size_t plane1 = S2 * S2, cols = b * plane1;
    for (size_t i = 0; i < b; i++)
        conv1_relu_pool(w, pixels + i * CNN_PIXELS, s->p1 + i * plane1, b * plane1);
    im2col(s->p1, b, s->col);
    for (size_t c = 0; c < CNN_C2; c++)
        for (size_t j = 0; j < cols; j++) s->a2[c * cols + j] = w->conv2_b[c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, CNN_C2, (blasint)cols, K2, 1.0f,
                w->conv2_w, K2, s->col, (blasint)cols, 1.0f, s->a2, (blasint)cols);
    /* ReLU and pooling, into each image's features (c, y, x) */
    for (size_t c = 0; c < CNN_C2; c++)
        for (size_t i = 0; i < b; i++) {
            const float *src = s->a2 + c * cols + i * plane1;
            float *dst = s->feat + i * CNN_FEATURES + c * P2 * P2;
            for (int y = 0; y < P2; y++)
                for (int x = 0; x < P2; x++) {
                    const float *q = src + (2 * y) * S2 + 2 * x;
                    float m = fmaxf(fmaxf(q[0], q[1]), fmaxf(q[S2], q[S2 + 1]));
                    dst[y * P2 + x] = m > 0.0f ? m : 0.0f;
                }
        }
    for (size_t i = 0; i < b; i++) memcpy(probs + i * CNN_CLASSES, w->fc_b, sizeof w->fc_b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)b, CNN_CLASSES, CNN_FEATURES,
                1.0f, s->feat, CNN_FEATURES, w->fc_w, CNN_FEATURES, 1.0f, probs, CNN_CLASSES);
    for (size_t i = 0; i < b; i++) {
        float *z = probs + i * CNN_CLASSES, m = z[0];
        for (int k = 1; k < CNN_CLASSES; k++) m = z[k] > m ? z[k] : m;
        double sum = 0.0;
        for (int k = 0; k < CNN_CLASSES; k++) {
            z[k] = expf(z[k] - m);
            sum += z[k];
        }
        for (int k = 0; k < CNN_CLASSES; k++) z[k] = (float)(z[k] / sum);
    }
}

/* ------------------------------------------------------------ the backend --------- */

typedef struct call {
    cnn_cpu *m;
    const unsigned char *pixels;
    size_t n;
    float *probs;
} call;

static void slice_task(void *arg, size_t task, int thread) {
    const call *c = arg;
    size_t first = task * SLICE, b = c->n - first < SLICE ? c->n - first : SLICE;
    run_slice(&c->m->w, &c->m->s[thread], c->pixels + first * CNN_PIXELS, b,
              c->probs + first * CNN_CLASSES);
}

static int threads_from_env(int *threads, char *err, size_t errlen) {
    const char *v = getenv("FLEET_CPU_THREADS");
    *threads = 0;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 1 || n > 1024)
        return fleet_err(err, errlen, "FLEET_CPU_THREADS=%s: must be an integer in [1, 1024]", v);
    *threads = (int)n;
    return 0;
}

static void cpu_free(void *model) {
    cnn_cpu *m = model;
    if (!m) return;
    cpu_pool_free(m->pool);
    for (int t = 0; m->s && t < m->threads; t++) {
        free(m->s[t].p1);
        free(m->s[t].col);
        free(m->s[t].a2);
        free(m->s[t].feat);
    }
    free(m->s);
    free(m);
}

static int cpu_load(const cnn_weights *w, void **model, char *err, size_t errlen) {
    int want;
    *model = NULL;
    if (threads_from_env(&want, err, errlen) != 0) return -1;
    cnn_cpu *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "classify: out of memory");
    m->w = *w;
    /* Each slice calls OpenBLAS from its own thread: OpenBLAS itself stays on one. */
    openblas_set_num_threads(1);
    m->pool = cpu_pool_new(want ? want : cpu_pool_default_threads());
    if (!m->pool) {
        cpu_free(m);
        return fleet_err(err, errlen, "classify: cannot start the CPU threads");
    }
    m->threads = cpu_pool_threads(m->pool);
    m->s = calloc((size_t)m->threads, sizeof *m->s);
    if (!m->s) goto oom;
    for (int t = 0; t < m->threads; t++) {
        scratch *s = &m->s[t];
        s->p1 = malloc(CNN_C1 * SLICE * S2 * S2 * sizeof *s->p1);
        s->col = malloc(K2 * SLICE * S2 * S2 * sizeof *s->col);
        s->a2 = malloc(CNN_C2 * SLICE * S2 * S2 * sizeof *s->a2);
        s->feat = malloc(SLICE * CNN_FEATURES * sizeof *s->feat);
        if (!s->p1 || !s->col || !s->a2 || !s->feat) goto oom;
    }
    *model = m;
    return 0;
oom:
    cpu_free(m);
    return fleet_err(err, errlen, "classify: out of memory");
}

static size_t cpu_max_batch(const void *model) {
    (void)model;
    return CNN_CPU_MAX_BATCH;
}

static int cpu_classify(void *model, const unsigned char *pixels, size_t n, float *probs, char *err,
                        size_t errlen) {
    cnn_cpu *m = model;
    if (n < 1 || n > CNN_CPU_MAX_BATCH)
        return fleet_err(err, errlen, "classify: %zu images in one call; 1 to %d", n,
                         CNN_CPU_MAX_BATCH);
    call c = {.m = m, .pixels = pixels, .n = n, .probs = probs};
    cpu_pool_run(m->pool, (n + SLICE - 1) / SLICE, slice_task, &c);
    return 0;
}

const cnn_ops cnn_cpu_ops = {
    .name = "cpu",
    .load = cpu_load,
    .max_batch = cpu_max_batch,
    .classify = cpu_classify,
    .free = cpu_free,
};
