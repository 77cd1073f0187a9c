/* trainer.c: fleet-classify-train, the trainer of the classify model's weights.
 *
 * The model (the one fleet's classify model runs; tensor names as PyTorch would write
 * them, so the file also loads into an nn.Module of the same shape):
 *
 *   image 1x28x28, pixel / 255
 *     conv1  3x3, pad 1, 1 -> 16   conv1.weight [16,1,3,3]  conv1.bias [16]   ReLU, maxpool 2
 *     conv2  3x3, pad 1, 16 -> 32  conv2.weight [32,16,3,3] conv2.bias [32]   ReLU, maxpool 2
 *     fc     32*7*7 -> 10          fc.weight [10,1568]      fc.bias [10]      (flattened c, y, x)
 *   softmax over the 10 classes
 *
 * Training: softmax cross-entropy, Adam, mini-batches, on the 60,000 training images of
 * Fashion-MNIST (Debian's dataset-fashion-mnist: IDX files, gzipped or not); per epoch it
 * prints the mean loss, the training accuracy (of the batches as they were trained) and
 * the accuracy on the 10,000 test images. The weights are written in safetensors
 * (float32); `--eval FILE` reads such a file back through the worker's own reader
 * (worker/embed/safetensors.c) and prints the test accuracy again.
 *
 * Deterministic: every random choice (initial weights, the order of each epoch) comes
 * from one xorshift generator seeded by --seed, every sum runs in a fixed order, and
 * OpenBLAS runs on one thread (set here; --threads N changes it, and may change the
 * rounding, hence the weights). The same command on the same OpenBLAS kernel (the CPU
 * type it picks, or OPENBLAS_CORETYPE) writes the same bytes.
 *
 * Layout: activations of a batch are held channel-major, [C][B][H][W], so that each
 * convolution is one sgemm over the whole batch: out[Cout][B*H*W] =
 * W[Cout][Cin*9] x col[Cin*9][B*H*W], where col is the im2col of the padded input.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "safetensors.h"

#define IMG 28
#define PIX (IMG * IMG)
#define C1 16
#define C2 32
#define H1 28 /* conv1 output side; pooled to 14 */
#define H2 14 /* conv2 output side; pooled to 7 */
#define P2 7
#define FEAT (C2 * P2 * P2) /* 1568 */
#define NCLASS 10
#define MAX_BATCH 1024
#define EVAL_BATCH 100 /* test images a forward pass, in training and --eval alike */

static const char *const labels[NCLASS] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

/* ------------------------------------------------------------------ random numbers */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    /* xorshift64*: small, fast, and the same sequence on every platform. */
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1), 24 bits. */
static float rng_uniform(void) { return (float)(rng_next() >> 40) / 16777216.0f; }

static void rng_seed(uint64_t seed) {
    /* splitmix64 of the seed, so that seed 0 (or any small one) gives a good state. */
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    rng_state = z ? z : 1;
}

/* ------------------------------------------------------------------ the dataset */

typedef struct dataset {
    size_t n;
    float *x;   /* n * PIX, pixel / 255 */
    uint8_t *y; /* n labels, 0..9 */
} dataset;

static int read_all(const char *path, unsigned char **out, size_t *outlen) {
    gzFile f = gzopen(path, "rb"); /* reads gzipped and plain files alike */
    if (!f) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "out of memory reading %s\n", path);
            gzclose(f);
            return -1;
        }
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = nb;
            cap *= 2;
        }
        int r = gzread(f, buf + len, (unsigned)(cap - len));
        if (r < 0) {
            int e;
            fprintf(stderr, "cannot read %s: %s\n", path, gzerror(f, &e));
            free(buf);
            gzclose(f);
            return -1;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    gzclose(f);
    *out = buf;
    *outlen = len;
    return 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Loads DIR/<prefix>-images-idx3-ubyte[.gz] and DIR/<prefix>-labels-idx1-ubyte[.gz]. */
static int load_split(const char *dir, const char *prefix, dataset *ds) {
    char ipath[4096], lpath[4096];
    unsigned char *img = NULL, *lab = NULL;
    size_t ilen, llen;
    const char *const suffixes[2] = {".gz", ""};
    int ok = 0;
    for (int s = 0; s < 2 && !ok; s++) {
        snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte%s", dir, prefix, suffixes[s]);
        snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte%s", dir, prefix, suffixes[s]);
        FILE *probe = fopen(ipath, "rb");
        if (probe) {
            fclose(probe);
            ok = 1;
        }
    }
    if (!ok) {
        fprintf(stderr, "no %s images in %s (install dataset-fashion-mnist, or give --data DIR)\n",
                prefix, dir);
        return -1;
    }
    if (read_all(ipath, &img, &ilen) < 0) return -1;
    if (read_all(lpath, &lab, &llen) < 0) {
        free(img);
        return -1;
    }
    /* IDX: magic 0x00000803 (u8, 3 dims) then n, rows, cols; labels 0x00000801 then n. */
    if (ilen < 16 || be32(img) != 0x803 || be32(img + 8) != IMG || be32(img + 12) != IMG ||
        llen < 8 || be32(lab) != 0x801 || be32(img + 4) != be32(lab + 4) ||
        ilen - 16 < (size_t)be32(img + 4) * PIX || llen - 8 < be32(lab + 4)) {
        fprintf(stderr, "%s / %s: not a pair of 28x28 IDX image and label files\n", ipath, lpath);
        free(img);
        free(lab);
        return -1;
    }
    ds->n = be32(img + 4);
    ds->x = malloc(ds->n * PIX * sizeof(float));
    ds->y = malloc(ds->n);
    if (!ds->x || !ds->y) {
        fprintf(stderr, "out of memory\n");
        free(img);
        free(lab);
        return -1;
    }
    for (size_t i = 0; i < ds->n * PIX; i++) ds->x[i] = (float)img[16 + i] / 255.0f;
    for (size_t i = 0; i < ds->n; i++) {
        if (lab[8 + i] >= NCLASS) {
            fprintf(stderr, "%s: label %u of image %zu is not 0..9\n", lpath, lab[8 + i], i);
            free(img);
            free(lab);
            return -1;
        }
        ds->y[i] = lab[8 + i];
    }
    free(img);
    free(lab);
    return 0;
}

static void dataset_free(dataset *ds) {
    free(ds->x);
    free(ds->y);
}

/* ------------------------------------------------------------------ parameters */

/* The six tensors, in the order they are written; shapes as PyTorch's. */
enum { P_C1W, P_C1B, P_C2W, P_C2B, P_FCW, P_FCB, NPARAM };

static const struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t size;
} pinfo[NPARAM] = {
    {"conv1.weight", 4, {C1, 1, 3, 3}, C1 * 9},      {"conv1.bias", 1, {C1}, C1},
    {"conv2.weight", 4, {C2, C1, 3, 3}, C2 *C1 * 9}, {"conv2.bias", 1, {C2}, C2},
    {"fc.weight", 2, {NCLASS, FEAT}, NCLASS *FEAT},  {"fc.bias", 1, {NCLASS}, NCLASS},
};

typedef struct params {
    float *p[NPARAM];
} params;

static int params_alloc(params *ps) {
    for (int i = 0; i < NPARAM; i++) {
        ps->p[i] = calloc(pinfo[i].size, sizeof(float));
        if (!ps->p[i]) return -1;
    }
    return 0;
}

static void params_free(params *ps) {
    for (int i = 0; i < NPARAM; i++) free(ps->p[i]);
}

/* PyTorch's default for conv and linear layers: weights and biases uniform in
 * [-1/sqrt(fan_in), 1/sqrt(fan_in)] (kaiming_uniform with a = sqrt(5)). */
static void params_init(params *ps) {
    static const int fan_in[NPARAM] = {9, 9, C1 * 9, C1 * 9, FEAT, FEAT};
    for (int i = 0; i < NPARAM; i++) {
        float bound = 1.0f / sqrtf((float)fan_in[i]);
        for (size_t k = 0; k < pinfo[i].size; k++)
            ps->p[i][k] = (2.0f * rng_uniform() - 1.0f) * bound;
    }
}

/* ------------------------------------------------------------------ the network */

/* Work buffers for a batch of up to MAX_BATCH images, allocated once. */
typedef struct net {
    size_t cap;            /* images */
    float *x;              /* [B][784], the batch's images */
    float *col1, *a1, *p1; /* [9][B*784], [16][B*784] after ReLU, [16][B*196] pooled */
    int *i1;               /* [16][B*196]: which of the 4 inputs each max came from */
    float *col2, *a2, *p2; /* [144][B*196], [32][B*196] after ReLU, [32][B*49] pooled */
    int *i2;
    float *feat;   /* [B][1568], p2 in (c, y, x) order per image */
    float *logits; /* [B][10], then the probabilities */
    /* backward */
    float *dlogits, *dfeat, *dp2, *da2, *dcol2, *dp1, *da1;
} net;

static int net_alloc(net *n, size_t cap) {
    memset(n, 0, sizeof *n);
    n->cap = cap;
#define A(f, count) \
    if (!((n->f) = malloc((count) * sizeof *(n->f)))) return -1
    A(x, cap * PIX);
    A(col1, 9 * cap * PIX);
    A(a1, C1 * cap * PIX);
    A(p1, C1 * cap * H2 * H2);
    A(i1, C1 * cap * H2 * H2);
    A(col2, C1 * 9 * cap * H2 * H2);
    A(a2, C2 * cap * H2 * H2);
    A(p2, C2 * cap * P2 * P2);
    A(i2, C2 * cap * P2 * P2);
    A(feat, cap * FEAT);
    A(logits, cap * NCLASS);
    A(dlogits, cap * NCLASS);
    A(dfeat, cap * FEAT);
    A(dp2, C2 * cap * P2 * P2);
    A(da2, C2 * cap * H2 * H2);
    A(dcol2, C1 * 9 * cap * H2 * H2);
    A(dp1, C1 * cap * H2 * H2);
    A(da1, C1 * cap * PIX);
#undef A
    return 0;
}

static void net_free(net *n) {
    float *fs[] = {n->x,      n->col1,    n->a1,    n->p1,  n->col2, n->a2,    n->p2,  n->feat,
                   n->logits, n->dlogits, n->dfeat, n->dp2, n->da2,  n->dcol2, n->dp1, n->da1};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) free(fs[i]);
    free(n->i1);
    free(n->i2);
}

/* im2col for a 3x3 kernel, pad 1, stride 1: in [C][B][S][S] -> col[C*9][B*S*S],
 * row (c*9 + ky*3 + kx), the order of a [Cout][C][3][3] weight flattened. */
static void im2col(const float *in, size_t c_n, size_t b_n, int s, float *col) {
    size_t plane = (size_t)s * s, cols = b_n * plane;
    for (size_t c = 0; c < c_n; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                float *row = col + (c * 9 + (size_t)(ky * 3 + kx)) * cols;
                for (size_t b = 0; b < b_n; b++) {
                    const float *src = in + (c * b_n + b) * plane;
                    float *dst = row + b * plane;
                    for (int y = 0; y < s; y++) {
                        int sy = y + ky - 1;
                        if (sy < 0 || sy >= s) {
                            memset(dst + (size_t)y * s, 0, (size_t)s * sizeof(float));
                            continue;
                        }
                        for (int x = 0; x < s; x++) {
                            int sx = x + kx - 1;
                            dst[y * s + x] = (sx < 0 || sx >= s) ? 0.0f : src[sy * s + sx];
                        }
                    }
                }
            }
}

/* The transpose of im2col: adds col's entries back into in [C][B][S][S] (zeroed here). */
static void col2im(const float *col, size_t c_n, size_t b_n, int s, float *in) {
    size_t plane = (size_t)s * s, cols = b_n * plane;
    memset(in, 0, c_n * cols * sizeof(float));
    for (size_t c = 0; c < c_n; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const float *row = col + (c * 9 + (size_t)(ky * 3 + kx)) * cols;
                for (size_t b = 0; b < b_n; b++) {
                    float *dst = in + (c * b_n + b) * plane;
                    const float *src = row + b * plane;
                    for (int y = 0; y < s; y++) {
                        int sy = y + ky - 1;
                        if (sy < 0 || sy >= s) continue;
                        for (int x = 0; x < s; x++) {
                            int sx = x + kx - 1;
                            if (sx >= 0 && sx < s) dst[sy * s + sx] += src[y * s + x];
                        }
                    }
                }
            }
}

/* out[co][j] = bias[co] + sum_k w[co][k] * col[k][j], then ReLU; j < cols. */
static void conv_relu(const float *w, const float *bias, const float *col, size_t cout, size_t k,
                      size_t cols, float *out) {
    for (size_t co = 0; co < cout; co++)
        for (size_t j = 0; j < cols; j++) out[co * cols + j] = bias[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)cols, (int)k, 1.0f, w,
                (int)k, col, (int)cols, 1.0f, out, (int)cols);
    for (size_t i = 0; i < cout * cols; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

/* 2x2 max pooling, stride 2, of planes of side s: planes count = C*B. idx records the
 * winner's offset in its input plane (the first of equal values), for the backward pass. */
static void maxpool(const float *in, size_t planes, int s, float *out, int *idx) {
    int h = s / 2;
    for (size_t p = 0; p < planes; p++) {
        const float *src = in + p * (size_t)s * s;
        float *dst = out + p * (size_t)h * h;
        int *di = idx + p * (size_t)h * h;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < h; x++) {
                int best = (2 * y) * s + 2 * x;
                const int cand[3] = {best + 1, best + s, best + s + 1};
                for (int c = 0; c < 3; c++)
                    if (src[cand[c]] > src[best]) best = cand[c];
                dst[y * h + x] = src[best];
                di[y * h + x] = best;
            }
    }
}

static void maxpool_back(const float *dout, const int *idx, size_t planes, int s, float *din) {
    int h = s / 2;
    memset(din, 0, planes * (size_t)s * s * sizeof(float));
    for (size_t p = 0; p < planes; p++)
        for (int k = 0; k < h * h; k++)
            din[p * (size_t)s * s + (size_t)idx[p * (size_t)h * h + k]] +=
                dout[p * (size_t)h * h + k];
}

/* Forward pass of b images in n->x; leaves the class probabilities in n->logits. */
static void forward(net *n, const params *ps, size_t b) {
    size_t cols1 = b * PIX, cols2 = b * H2 * H2;
    /* The input is [B][1][28][28], which is [1][B][28][28]: channel-major already. */
    im2col(n->x, 1, b, IMG, n->col1);
    conv_relu(ps->p[P_C1W], ps->p[P_C1B], n->col1, C1, 9, cols1, n->a1);
    maxpool(n->a1, C1 * b, H1, n->p1, n->i1);
    im2col(n->p1, C1, b, H2, n->col2);
    conv_relu(ps->p[P_C2W], ps->p[P_C2B], n->col2, C2, C1 * 9, cols2, n->a2);
    maxpool(n->a2, C2 * b, H2, n->p2, n->i2);
    for (size_t c = 0; c < C2; c++)
        for (size_t i = 0; i < b; i++)
            memcpy(n->feat + i * FEAT + c * P2 * P2, n->p2 + (c * b + i) * P2 * P2,
                   P2 * P2 * sizeof(float));
    for (size_t i = 0; i < b; i++)
        memcpy(n->logits + i * NCLASS, ps->p[P_FCB], NCLASS * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, NCLASS, FEAT, 1.0f, n->feat, FEAT,
                ps->p[P_FCW], FEAT, 1.0f, n->logits, NCLASS);
    for (size_t i = 0; i < b; i++) {
        float *z = n->logits + i * NCLASS, m = z[0];
        for (int k = 1; k < NCLASS; k++) m = z[k] > m ? z[k] : m;
        double sum = 0.0;
        for (int k = 0; k < NCLASS; k++) {
            z[k] = expf(z[k] - m);
            sum += z[k];
        }
        for (int k = 0; k < NCLASS; k++) z[k] = (float)(z[k] / sum);
    }
}

static int argmax10(const float *v) {
    int best = 0;
    for (int k = 1; k < NCLASS; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

/* Backward pass after forward() of b images with labels y: gradients of the batch's mean
 * cross-entropy into g. */
static void backward(net *n, const params *ps, const uint8_t *y, size_t b, params *g) {
    size_t cols1 = b * PIX, cols2 = b * H2 * H2;
    float inv_b = 1.0f / (float)b;
    for (size_t i = 0; i < b; i++)
        for (int k = 0; k < NCLASS; k++)
            n->dlogits[i * NCLASS + k] = (n->logits[i * NCLASS + k] - (k == y[i] ? 1.0f : 0.0f)) *
                                         inv_b;
    /* fc: dW = dlogits^T feat, db = column sums, dfeat = dlogits W. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NCLASS, FEAT, (int)b, 1.0f, n->dlogits,
                NCLASS, n->feat, FEAT, 0.0f, g->p[P_FCW], FEAT);
    for (int k = 0; k < NCLASS; k++) {
        float s = 0.0f;
        for (size_t i = 0; i < b; i++) s += n->dlogits[i * NCLASS + k];
        g->p[P_FCB][k] = s;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, FEAT, NCLASS, 1.0f, n->dlogits,
                NCLASS, ps->p[P_FCW], FEAT, 0.0f, n->dfeat, FEAT);
    for (size_t c = 0; c < C2; c++)
        for (size_t i = 0; i < b; i++)
            memcpy(n->dp2 + (c * b + i) * P2 * P2, n->dfeat + i * FEAT + c * P2 * P2,
                   P2 * P2 * sizeof(float));
    /* pool2, ReLU2 (a2 > 0 where it passed), conv2. */
    maxpool_back(n->dp2, n->i2, C2 * b, H2, n->da2);
    for (size_t i = 0; i < C2 * cols2; i++)
        if (n->a2[i] <= 0.0f) n->da2[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C2, C1 * 9, (int)cols2, 1.0f, n->da2,
                (int)cols2, n->col2, (int)cols2, 0.0f, g->p[P_C2W], C1 * 9);
    for (size_t c = 0; c < C2; c++) {
        float s = 0.0f;
        for (size_t j = 0; j < cols2; j++) s += n->da2[c * cols2 + j];
        g->p[P_C2B][c] = s;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C1 * 9, (int)cols2, C2, 1.0f, ps->p[P_C2W],
                C1 * 9, n->da2, (int)cols2, 0.0f, n->dcol2, (int)cols2);
    col2im(n->dcol2, C1, b, H2, n->dp1);
    /* pool1, ReLU1, conv1 (the input needs no gradient). */
    maxpool_back(n->dp1, n->i1, C1 * b, H1, n->da1);
    for (size_t i = 0; i < C1 * cols1; i++)
        if (n->a1[i] <= 0.0f) n->da1[i] = 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C1, 9, (int)cols1, 1.0f, n->da1,
                (int)cols1, n->col1, (int)cols1, 0.0f, g->p[P_C1W], 9);
    for (size_t c = 0; c < C1; c++) {
        float s = 0.0f;
        for (size_t j = 0; j < cols1; j++) s += n->da1[c * cols1 + j];
        g->p[P_C1B][c] = s;
    }
}

/* Correct answers over a whole split, EVAL_BATCH images a pass: the same grouping in
 * training and in --eval, so both print the same count. */
static size_t count_correct(net *n, const params *ps, const dataset *ds,
                            size_t per_class[NCLASS][2]) {
    size_t correct = 0;
    for (size_t at = 0; at < ds->n; at += EVAL_BATCH) {
        size_t b = ds->n - at < EVAL_BATCH ? ds->n - at : EVAL_BATCH;
        memcpy(n->x, ds->x + at * PIX, b * PIX * sizeof(float));
        forward(n, ps, b);
        for (size_t i = 0; i < b; i++) {
            int ok = argmax10(n->logits + i * NCLASS) == ds->y[at + i];
            correct += (size_t)ok;
            if (per_class) {
                per_class[ds->y[at + i]][0] += (size_t)ok;
                per_class[ds->y[at + i]][1]++;
            }
        }
    }
    return correct;
}

/* ------------------------------------------------------------------ safetensors */

static int write_safetensors(const char *path, const params *ps, const char *meta_json) {
    char hdr[4096];
    size_t len = 0;
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{\"__metadata__\":%s", meta_json);
    for (int i = 0; i < NPARAM && len < sizeof hdr; i++) {
        len += (size_t)snprintf(hdr + len, sizeof hdr - len,
                                ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", pinfo[i].name);
        for (int d = 0; d < pinfo[i].ndim && len < sizeof hdr; d++)
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%lld", d ? "," : "",
                                    (long long)pinfo[i].shape[d]);
        uint64_t end = off + pinfo[i].size * sizeof(float);
        if (len < sizeof hdr)
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "],\"data_offsets\":[%llu,%llu]}",
                                    (unsigned long long)off, (unsigned long long)end);
        off = end;
    }
    if (len + 1 + 8 >= sizeof hdr) {
        fprintf(stderr, "safetensors header too long\n");
        return -1;
    }
    hdr[len++] = '}';
    /* Pad with spaces so that the data starts 8-byte aligned, as the reference writer does. */
    while ((8 + len) % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    unsigned char n8[8];
    for (int k = 0; k < 8; k++) n8[k] = (unsigned char)((uint64_t)len >> (8 * k));
    int bad = fwrite(n8, 1, 8, f) != 8 || fwrite(hdr, 1, len, f) != len;
    for (int i = 0; i < NPARAM && !bad; i++) {
        /* float32 little-endian, byte by byte, so the file is the same on any host. */
        for (size_t k = 0; k < pinfo[i].size && !bad; k++) {
            uint32_t u;
            unsigned char le[4];
            memcpy(&u, &ps->p[i][k], 4);
            for (int j = 0; j < 4; j++) le[j] = (unsigned char)(u >> (8 * j));
            bad = fwrite(le, 1, 4, f) != 4;
        }
    }
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads the six tensors back with the worker's safetensors reader, checking names,
 * dtypes and shapes. */
static int read_safetensors(const char *path, params *ps) {
    char err[512];
    st_file *st;
    if (st_open(path, &st, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (int i = 0; i < NPARAM; i++) {
        const st_tensor *t = st_find(st, pinfo[i].name);
        int ok = t && t->dtype == ST_F32 && t->ndim == pinfo[i].ndim;
        for (int d = 0; ok && d < pinfo[i].ndim; d++) ok = t->shape[d] == pinfo[i].shape[d];
        if (!ok) {
            fprintf(stderr,
                    "%s: no F32 tensor %s of the classify model's shape (see "
                    "tools/classify/README.md)\n",
                    path, pinfo[i].name);
            st_close(st);
            return -1;
        }
        if (st_read_f32(t, ps->p[i], err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            st_close(st);
            return -1;
        }
    }
    st_close(st);
    return 0;
}

/* ------------------------------------------------------------------ the command */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *to) {
    fprintf(
        to,
        "usage: fleet-classify-train [--data DIR] [--out FILE] [--epochs N] [--seed S]\n"
        "                            [--batch B] [--lr LR] [--threads N]\n"
        "       fleet-classify-train --eval FILE [--data DIR] [--threads N]\n"
        "Trains the classify model (a small CNN) on Fashion-MNIST and writes its weights\n"
        "in safetensors, or (--eval) prints a weights file's accuracy on the test images.\n"
        "  --data DIR   the IDX files (default /usr/share/datasets/fashion-mnist)\n"
        "  --out FILE   default models/classify/model.safetensors\n"
        "  --epochs N   default 12     --seed S   default 17\n"
        "  --batch B    default 64     --lr LR    Adam's first step (cosine decay to 0), default 0.002\n"
        "  --threads N  OpenBLAS threads, default 1 (deterministic)\n");
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s ? s : "", &end);
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s wants a number from %g to %g, not '%s'\n", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *data = "/usr/share/datasets/fashion-mnist";
    const char *out = "models/classify/model.safetensors";
    const char *eval = NULL;
    double epochs = 12, seed = 17, batch = 64, lr = 2e-3, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--data") && v) data = v;
        else if (!strcmp(a, "--out") && v) out = v;
        else if (!strcmp(a, "--eval") && v) eval = v;
        else if (!strcmp(a, "--epochs")) r = parse_num(a, v, 1, 1000, &epochs);
        else if (!strcmp(a, "--seed")) r = parse_num(a, v, 0, 4294967295.0, &seed);
        else if (!strcmp(a, "--batch")) r = parse_num(a, v, 1, MAX_BATCH, &batch);
        else if (!strcmp(a, "--lr")) r = parse_num(a, v, 1e-7, 1, &lr);
        else if (!strcmp(a, "--threads")) r = parse_num(a, v, 1, 1024, &threads);
        else {
            usage(stderr);
            return 2;
        }
        if (r < 0 || (epochs != (int)epochs || seed != (uint64_t)seed || batch != (int)batch ||
                      threads != (int)threads)) {
            if (r == 0) fprintf(stderr, "%s wants a whole number\n", a);
            return 2;
        }
        i++;
    }
    openblas_set_num_threads((int)threads);

    dataset train = {0}, test = {0};
    params ps = {{0}}, grad = {{0}}, m = {{0}}, v = {{0}};
    net n = {0};
    int rc = 1;
    if (params_alloc(&ps) < 0 ||
        net_alloc(&n, (size_t)batch > EVAL_BATCH ? (size_t)batch : EVAL_BATCH) < 0) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    if (load_split(data, "t10k", &test) < 0) goto done;

    if (eval) {
        if (read_safetensors(eval, &ps) < 0) goto done;
        size_t per_class[NCLASS][2] = {{0}};
        size_t correct = count_correct(&n, &ps, &test, per_class);
        printf("%s: test accuracy %.2f%% (%zu of %zu)\n", eval,
               100.0 * (double)correct / (double)test.n, correct, test.n);
        for (int k = 0; k < NCLASS; k++)
            printf("  %d %-12s %6.2f%% (%zu of %zu)\n", k, labels[k],
                   per_class[k][1] ? 100.0 * (double)per_class[k][0] / (double)per_class[k][1]
                                   : 0.0,
                   per_class[k][0], per_class[k][1]);
        rc = 0;
        goto done;
    }

    if (load_split(data, "train", &train) < 0) goto done;
    if (params_alloc(&grad) < 0 || params_alloc(&m) < 0 || params_alloc(&v) < 0) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    rng_seed((uint64_t)seed);
    params_init(&ps);
    size_t *order = malloc(train.n * sizeof *order);
    uint8_t *yb = malloc((size_t)batch);
    if (!order || !yb) {
        fprintf(stderr, "out of memory\n");
        free(order);
        free(yb);
        goto done;
    }
    for (size_t i = 0; i < train.n; i++) order[i] = i;
    printf(
        "classify: %zu training and %zu test images, %d epochs, batch %d, Adam lr %g (cosine decay), seed %llu, "
        "%d OpenBLAS thread(s)\n",
        train.n, test.n, (int)epochs, (int)batch, lr, (unsigned long long)seed, (int)threads);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    long step = 0, steps = (long)epochs * (long)((train.n + (size_t)batch - 1) / (size_t)batch);
    double t0 = now_s();
    size_t test_correct = 0;
    for (int e = 1; e <= (int)epochs; e++) {
        double te = now_s(), loss = 0.0;
        size_t correct = 0;
        for (size_t i = train.n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(rng_next() % (i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t at = 0; at < train.n; at += (size_t)batch) {
            size_t b = train.n - at < (size_t)batch ? train.n - at : (size_t)batch;
            /* Cosine decay of the step from lr to 0 over the whole run: the last epochs
             * settle instead of hopping around the minimum (+1 to 2 points of test
             * accuracy over a constant step here). */
            double lr_t = 0.5 * lr * (1.0 + cos(M_PI * (double)step / (double)steps));
            for (size_t i = 0; i < b; i++) {
                memcpy(n.x + i * PIX, train.x + order[at + i] * PIX, PIX * sizeof(float));
                yb[i] = train.y[order[at + i]];
            }
            forward(&n, &ps, b);
            for (size_t i = 0; i < b; i++) {
                float pr = n.logits[i * NCLASS + yb[i]];
                loss -= log(pr > 1e-30f ? pr : 1e-30f);
                correct += argmax10(n.logits + i * NCLASS) == yb[i];
            }
            backward(&n, &ps, yb, b, &grad);
            step++;
            float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
            for (int p = 0; p < NPARAM; p++)
                for (size_t k = 0; k < pinfo[p].size; k++) {
                    float gk = grad.p[p][k];
                    m.p[p][k] = b1 * m.p[p][k] + (1.0f - b1) * gk;
                    v.p[p][k] = b2 * v.p[p][k] + (1.0f - b2) * gk * gk;
                    ps.p[p][k] -= (float)lr_t * (m.p[p][k] / c1) / (sqrtf(v.p[p][k] / c2) + eps);
                }
        }
        double train_s = now_s() - te;
        test_correct = count_correct(&n, &ps, &test, NULL);
        printf("epoch %d: loss %.4f, train accuracy %.2f%%, test accuracy %.2f%% (%zu of %zu), "
               "%.1f s training, %.1f s total\n",
               e, loss / (double)train.n, 100.0 * (double)correct / (double)train.n,
               100.0 * (double)test_correct / (double)test.n, test_correct, test.n, train_s,
               now_s() - t0);
        fflush(stdout);
    }
    free(order);
    free(yb);

    char meta[1024];
    size_t ml = (size_t)snprintf(meta, sizeof meta,
                                 "{\"format\":\"pt\",\"model\":\"classify\",\"input\":\"1x28x28 "
                                 "grayscale, pixel/255\",\"seed\":\"%llu\",\"epochs\":\"%d\","
                                 "\"test_accuracy\":\"%.2f\",\"labels\":\"",
                                 (unsigned long long)seed, (int)epochs,
                                 100.0 * (double)test_correct / (double)test.n);
    for (int k = 0; k < NCLASS && ml < sizeof meta; k++)
        ml += (size_t)snprintf(meta + ml, sizeof meta - ml, "%s%s", k ? "," : "", labels[k]);
    if (ml + 2 >= sizeof meta) goto done;
    memcpy(meta + ml, "\"}", 3);
    if (write_safetensors(out, &ps, meta) < 0) goto done;
    printf("wrote %s (%.1f s of training and testing in all)\n", out, now_s() - t0);
    rc = 0;

done:
    params_free(&ps);
    params_free(&grad);
    params_free(&m);
    params_free(&v);
    net_free(&n);
    dataset_free(&train);
    dataset_free(&test);
    return rc;
}
