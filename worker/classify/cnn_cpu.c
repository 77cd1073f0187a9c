/* cnn_cpu.c: the classify network on the CPU (cnn_cpu.h).
 *
 * Each image runs the whole network on one thread (a task of the backend's cpu_pool), so
 * an image's probabilities are the same bytes alone, in any batch and on any number of
 * threads. Every layer is a direct computation vectorized across output channels, with
 * activations held channels-last ([y][x][c]): a 16-channel pixel of conv1 is one
 * 16-float vector, a 32-channel pixel of conv2 two. A convolution computes a run of
 * pixels of one row at a time (14 for conv1, 7 for conv2), their sums held in vector
 * registers while each weight vector is loaded once for the whole run and each input
 * value is broadcast: the multiply-adds, not the loads, set the pace. Pooling and ReLU
 * are done on two finished rows while they are in cache, and the dense layer's weights
 * are put in the pooled features' order (y, x, c) at load, so nothing is transposed per
 * image.
 *
 * (An earlier version made conv2 an im2col and an OpenBLAS sgemm per slice of 8 images:
 * 0.31-0.55x ONNX Runtime's images/s on one thread. docs/benchmarks.md has both.) */
#include "cnn_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_pool.h"
#include "fleet/err.h"

#define SIDE CNN_SIDE  /* 28 */
#define PAD (SIDE + 2) /* 30: the padded input's side */
#define S2 (SIDE / 2)  /* 14: conv2's side */
#define Q2 (S2 + 2)    /* 16: conv2's padded input side */
#define P2 CNN_POOLED  /* 7 */
#define RUN1 14        /* conv1 pixels computed together */
#define RUN2 7         /* conv2 pixels computed together */

/* Sixteen floats. On AVX-512 one register; elsewhere GCC splits it. */
typedef float v16 __attribute__((vector_size(64), aligned(64)));

_Static_assert(CNN_C1 == 16 && CNN_C2 == 32, "one vector per 16 channels");
_Static_assert(SIDE % RUN1 == 0 && S2 % RUN2 == 0, "runs tile the rows");

/* The weights rearranged for the loops below (64-byte aligned). */
typedef struct cnn_cpu_weights {
    v16 w1[9];        /* conv1: [ky*3+kx] -> 16 output channels */
    v16 b1;           /* conv1 bias */
    v16 w2[9][16][2]; /* conv2: [ky*3+kx][input channel] -> 32 output channels */
    v16 b2[2];
    float fc[CNN_CLASSES][CNN_FEATURES]; /* the dense layer in (y, x, c) feature order */
    float fc_b[CNN_CLASSES];
} cnn_cpu_weights;

typedef struct scratch {
    float x[PAD][PAD]; /* the padded input */
    v16 a1[2][SIDE];   /* two conv1 rows before pooling */
    v16 p1[Q2][Q2];    /* pooled conv1, padded with zeros */
    v16 a2[2][S2][2];  /* two conv2 rows */
    v16 p2[P2][P2][2]; /* pooled conv2: the features, (y, x, c) */
} scratch;

typedef struct cnn_cpu {
    cnn_cpu_weights *w;
    cpu_pool *pool;
    int threads;
    scratch *s; /* one per thread */
} cnn_cpu;

/* ------------------------------------------------------------ the network --------- */

typedef int vi16 __attribute__((vector_size(64), aligned(64)));

/* max and ReLU on vectors, by a compare mask and a bitwise select (GCC's C has no vector
 * ?:); macros, not functions, so that no vector crosses a call (its ABI would differ
 * between the clones). */
#define VMAX(a, b) ((v16)(((vi16)(a) & ((a) > (b))) | ((vi16)(b) & ~((a) > (b)))))
#define RELU(a) ((v16)((vi16)(a) & ((a) > (v16){0})))

/* One image: pixels (784 bytes) to 10 probabilities. Cloned for AVX-512, AVX2 and the
 * baseline and picked by the CPU at load; within a build the same machine always runs the
 * same clone, hence the same bytes. fp-contract=fast lets the multiply-adds be fused. */
__attribute__((target_clones("avx512f", "avx2", "default"),
               optimize("fp-contract=fast"))) static void
run_image(const cnn_cpu_weights *w, scratch *s, const unsigned char *pixels, float *probs) {
    memset(s->x, 0, sizeof s->x);
    for (int y = 0; y < SIDE; y++)
        for (int i = 0; i < SIDE; i++)
            s->x[y + 1][i + 1] = (float)pixels[y * SIDE + i] * (1.0f / 255.0f);

    /* conv1 + ReLU + pool into p1's inside; p1's border stays zero (conv2's padding) */
    memset(s->p1, 0, sizeof s->p1);
    for (int y = 0; y < SIDE; y++) {
        for (int x0 = 0; x0 < SIDE; x0 += RUN1) {
            v16 acc[RUN1];
            for (int j = 0; j < RUN1; j++) acc[j] = w->b1;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    v16 k = w->w1[ky * 3 + kx];
                    const float *in = &s->x[y + ky][x0 + kx];
                    for (int j = 0; j < RUN1; j++) acc[j] += in[j] * k;
                }
            for (int j = 0; j < RUN1; j++) s->a1[y & 1][x0 + j] = acc[j];
        }
        if (y & 1)
            for (int i = 0; i < S2; i++) {
                v16 t = VMAX(s->a1[0][2 * i], s->a1[0][2 * i + 1]);
                v16 u = VMAX(s->a1[1][2 * i], s->a1[1][2 * i + 1]);
                s->p1[y / 2 + 1][i + 1] = RELU(VMAX(t, u));
            }
    }

    /* conv2 + ReLU + pool into p2 */
    for (int y = 0; y < S2; y++) {
        for (int x0 = 0; x0 < S2; x0 += RUN2) {
            v16 lo[RUN2], hi[RUN2];
            for (int j = 0; j < RUN2; j++) lo[j] = w->b2[0], hi[j] = w->b2[1];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    const v16 *in = &s->p1[y + ky][x0 + kx];
                    for (int c = 0; c < CNN_C1; c++) {
                        v16 k0 = w->w2[ky * 3 + kx][c][0], k1 = w->w2[ky * 3 + kx][c][1];
                        for (int j = 0; j < RUN2; j++) {
                            float v = in[j][c];
                            lo[j] += v * k0;
                            hi[j] += v * k1;
                        }
                    }
                }
            for (int j = 0; j < RUN2; j++) {
                s->a2[y & 1][x0 + j][0] = lo[j];
                s->a2[y & 1][x0 + j][1] = hi[j];
            }
        }
        if (y & 1)
            for (int i = 0; i < P2; i++)
                for (int h = 0; h < 2; h++) {
                    v16 t = VMAX(s->a2[0][2 * i][h], s->a2[0][2 * i + 1][h]);
                    v16 u = VMAX(s->a2[1][2 * i][h], s->a2[1][2 * i + 1][h]);
                    s->p2[y / 2][i][h] = RELU(VMAX(t, u));
                }
    }

    /* dense layer and softmax */
    const v16 *feat = &s->p2[0][0][0];
    float z[CNN_CLASSES], max = -INFINITY;
    for (int k = 0; k < CNN_CLASSES; k++) {
        v16 sum = {0};
        const v16 *wk = (const v16 *)w->fc[k];
        for (int i = 0; i < CNN_FEATURES / 16; i++) sum += feat[i] * wk[i];
        float t = w->fc_b[k];
        for (int i = 0; i < 16; i++) t += sum[i];
        z[k] = t;
        max = t > max ? t : max;
    }
    double total = 0.0;
    for (int k = 0; k < CNN_CLASSES; k++) {
        z[k] = expf(z[k] - max);
        total += z[k];
    }
    for (int k = 0; k < CNN_CLASSES; k++) probs[k] = (float)(z[k] / total);
}

/* Rearranges the checkpoint's weights (cnn.h's PyTorch layouts) for run_image. */
static void rearrange(const cnn_weights *src, cnn_cpu_weights *w) {
    for (int t = 0; t < 9; t++)
        for (int co = 0; co < CNN_C1; co++) w->w1[t][co] = src->conv1_w[co * 9 + t];
    for (int co = 0; co < CNN_C1; co++) w->b1[co] = src->conv1_b[co];
    for (int t = 0; t < 9; t++)
        for (int ci = 0; ci < CNN_C1; ci++)
            for (int co = 0; co < CNN_C2; co++)
                w->w2[t][ci][co / 16][co % 16] = src->conv2_w[(co * CNN_C1 + ci) * 9 + t];
    for (int co = 0; co < CNN_C2; co++) w->b2[co / 16][co % 16] = src->conv2_b[co];
    /* features: the checkpoint flattens (c, y, x); p2 holds (y, x, c) */
    for (int k = 0; k < CNN_CLASSES; k++) {
        for (int c = 0; c < CNN_C2; c++)
            for (int y = 0; y < P2; y++)
                for (int x = 0; x < P2; x++)
                    w->fc[k][(y * P2 + x) * CNN_C2 + c] =
                        src->fc_w[k * CNN_FEATURES + c * P2 * P2 + y * P2 + x];
        w->fc_b[k] = src->fc_b[k];
    }
}

/* ------------------------------------------------------------ the backend --------- */

typedef struct call {
    cnn_cpu *m;
    const unsigned char *pixels;
    float *probs;
} call;

static void image_task(void *arg, size_t task, int thread) {
    const call *c = arg;
    run_image(c->m->w, &c->m->s[thread], c->pixels + task * CNN_PIXELS,
              c->probs + task * CNN_CLASSES);
}

static void cpu_free(void *model) {
    cnn_cpu *m = model;
    if (!m) return;
    cpu_pool_free(m->pool);
    free(m->s);
    free(m->w);
    free(m);
}

static int cpu_load(const cnn_weights *w, void **model, char *err, size_t errlen) {
    int want;
    *model = NULL;
    if (cpu_pool_threads_setting(&want, err, errlen) != 0) return -1;
    cnn_cpu *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "classify: out of memory");
    m->w = aligned_alloc(64, sizeof *m->w);
    if (!m->w) goto oom;
    rearrange(w, m->w);
    m->pool = cpu_pool_new(want ? want : cpu_pool_default_threads());
    if (!m->pool) {
        cpu_free(m);
        return fleet_err(err, errlen, "classify: cannot start the CPU threads");
    }
    m->threads = cpu_pool_threads(m->pool);
    m->s = aligned_alloc(64, (size_t)m->threads * sizeof *m->s);
    if (!m->s) goto oom;
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
    call c = {.m = m, .pixels = pixels, .probs = probs};
    cpu_pool_run(m->pool, n, image_task, &c);
    return 0;
}

const cnn_ops cnn_cpu_ops = {
    .name = "cpu",
    .load = cpu_load,
    .max_batch = cpu_max_batch,
    .classify = cpu_classify,
    .free = cpu_free,
};
