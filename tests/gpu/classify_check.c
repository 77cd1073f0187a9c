/* classify_check.c: fleet-classify-check, the classify model's CUDA backend against its CPU
 * twin on the committed weights and fresh random images (tests/gpu/run.sh runs it on a GPU
 * machine; CI has none).
 *
 *   fleet-classify-check [--weights FILE] [--rounds N] [--seed S] [--dump FILE]
 *
 * For each configuration (cnn_cuda.h: FLEET_CLASSIFY_CONV fused or separate with
 * FLEET_CLASSIFY_MATH=fp32, then fused with the opt-in tf32) it loads the CUDA backend
 * with FLEET_CLASSIFY_POISON=1 (every work buffer is NaN before each call, so an element
 * a layer leaves unwritten shows) and the CPU backend, then classifies batches of the
 * sizes at the edges, 1, 2, 7, 63, 64, 65 and the backend's maximum (1024), then --rounds
 * batches of random sizes, each of random images of several kinds (uniform noise, sparse
 * noise, lit ellipses on black as garments are, gradients, all black, all white), and
 * compares every image:
 *
 *   max_k |cuda_k - cpu_k| <= 1e-5 (1e-2 for the opt-in tf32), no NaN, and the same most
 *   likely class (unless the CPU's two best are within the limit of each other: at this
 *   precision either is right; such near ties are counted and printed)
 *
 * It also classifies the first image of each batch alone and compares it with its result
 * inside the batch (the batch around an image must not change its answer).
 *
 * --dump FILE writes one fixed batch of 16 images classified by the default configuration
 * as JSON, {"backend": "cuda", "pixels": [[784 bytes], ...], "probs": [[10 floats], ...]}
 * (fleet-classify-bench --dump's layout), for tests/gpu/torch_classify.py, which checks
 * PyTorch gives the same probabilities.
 *
 * Exit: 0 all within limits; 1 a check failed or a backend did not load; 2 misuse;
 * 77 skipped (no CUDA backend in this build, or no GPU).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "cnn.h"
#include "cnn_cpu.h"

#ifdef CLASSIFY_HAVE_CUDA
#include "cnn_cuda.h"
#endif

#define TOL 1e-5      /* float32, absolute on each probability */
#define TOL_TF32 1e-2 /* FLEET_CLASSIFY_MATH=tf32, opt-in: 10-bit mantissas (cnn_cuda.h) */
#define DUMP_IMAGES 16

#ifdef CLASSIFY_HAVE_CUDA

/* One random image of a random kind. */
static void random_image(unsigned char *im) {
    uint32_t kind = check_rnd(6);
    int cx = 4 + (int)check_rnd(20), cy = 4 + (int)check_rnd(20), rx = 2 + (int)check_rnd(12),
        ry = 2 + (int)check_rnd(12);
    int lo = (int)check_rnd(128), hi = 128 + (int)check_rnd(128);
    for (int y = 0; y < CNN_SIDE; y++)
        for (int x = 0; x < CNN_SIDE; x++) {
            int v = 0;
            switch (kind) {
            case 0: v = (int)check_rnd(256); break;
            case 1: v = check_rnd(8) == 0 ? (int)check_rnd(256) : 0; break;
            case 2: {
                double dx = (double)(x - cx) / rx, dy = (double)(y - cy) / ry;
                v = dx * dx + dy * dy <= 1.0 ? hi - (int)check_rnd(48) : 0;
                break;
            }
            case 3: v = lo + (hi - lo) * (x + 2 * y) / (3 * (CNN_SIDE - 1)); break;
            case 4: v = 0; break;
            default: v = 255; break;
            }
            im[y * CNN_SIDE + x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static int argmax(const float *p) {
    int best = 0;
    for (int k = 1; k < CNN_CLASSES; k++)
        if (p[k] > p[best]) best = k;
    return best;
}

/* The largest probability of p less its second largest. */
static double top_gap(const float *p) {
    int best = argmax(p);
    double second = -1.0;
    for (int k = 0; k < CNN_CLASSES; k++)
        if (k != best && p[k] > second) second = p[k];
    return p[best] - second;
}

/* Largest absolute difference between a and the reference b (one image); NaN anywhere
 * gives +inf. */
static double abs_error(const float *a, const float *b) {
    double worst = 0;
    for (int k = 0; k < CNN_CLASSES; k++) {
        if (isnan(a[k]) || isnan(b[k])) return INFINITY;
        double d = fabs((double)a[k] - b[k]);
        if (d > worst) worst = d;
    }
    return worst;
}

/* The CPU backend takes fewer images a call than the CUDA one: calls of its maximum. */
static int cpu_classify(void *cpu, const unsigned char *px, size_t n, float *probs, char *err,
                        size_t errlen) {
    size_t chunk = cnn_cpu_ops.max_batch(cpu);
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        if (cnn_cpu_ops.classify(cpu, px + i * CNN_PIXELS, k, probs + i * CNN_CLASSES, err,
                                 errlen) != 0)
            return -1;
    }
    return 0;
}

/* n rows of cols values as JSON arrays, ", " between rows: the bytes of u8 (comma
 * between them) when it is given, else the floats of fl with 9 significant digits. */
static void write_rows(FILE *f, size_t n, size_t cols, const unsigned char *u8, const float *fl) {
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (size_t j = 0; j < cols; j++) {
            if (u8) fprintf(f, "%s%d", j ? "," : "", u8[i * cols + j]);
            else fprintf(f, "%s%.9g", j ? ", " : "", fl[i * cols + j]);
        }
        fprintf(f, "]");
    }
}

static int write_dump(const char *path, const unsigned char *px, const float *probs, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("FAIL: --dump %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"backend\": \"cuda\", \"pixels\": [");
    write_rows(f, n, CNN_PIXELS, px, NULL);
    fprintf(f, "], \"probs\": [");
    write_rows(f, n, CNN_CLASSES, NULL, probs);
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        printf("FAIL: --dump %s: cannot write it\n", path);
        return -1;
    }
    return 0;
}

typedef struct totals {
    long batches, images, near_ties;
    double worst, worst_alone;
} totals;

/* Runs the batches for one configuration; returns 0 or -1. */
static int check_config(const cnn_weights *w, const char *conv, const char *math, int rounds,
                        const char *dump) {
    const double tol = strcmp(math, "tf32") == 0 ? TOL_TF32 : TOL;
    void *gpu = NULL, *cpu = NULL;
    unsigned char *px = NULL;
    float *g = NULL, *c = NULL, alone[CNN_CLASSES];
    char err[512], how[512];
    int rc = -1;
    totals t = {0};

    setenv("FLEET_CLASSIFY_CONV", conv, 1);
    setenv("FLEET_CLASSIFY_MATH", math, 1);
    setenv("FLEET_CLASSIFY_POISON", "1", 1);
    if (cnn_cuda_ops.load(w, &gpu, err, sizeof err) != 0) {
        printf("FAIL conv=%s math=%s: the CUDA backend did not load: %s\n", conv, math, err);
        goto out;
    }
    cnn_cuda_describe(gpu, how, sizeof how);
    printf("     conv=%s math=%s: %s\n", conv, math, how);
    if (cnn_cpu_ops.load(w, &cpu, err, sizeof err) != 0) {
        printf("FAIL: the CPU backend did not load: %s\n", err);
        goto out;
    }
    const size_t max = cnn_cuda_ops.max_batch(gpu);
    px = malloc(max * CNN_PIXELS);
    g = malloc(max * CNN_CLASSES * sizeof *g);
    c = malloc(max * CNN_CLASSES * sizeof *c);
    if (!px || !g || !c) {
        printf("FAIL: out of memory\n");
        goto out;
    }
    const size_t edges[] = {1, 2, 7, 63, 64, 65, max};
    const int nedges = (int)(sizeof edges / sizeof edges[0]);
    for (int r = 0; r < nedges + rounds + (dump ? 1 : 0); r++) {
        const int dumping = dump && r == nedges + rounds;
        size_t n = dumping ? DUMP_IMAGES : r < nedges ? edges[r] : 1 + check_rnd((uint32_t)max);
        if (n > max) n = max;
        for (size_t i = 0; i < n; i++) random_image(px + i * CNN_PIXELS);
        if (dumping) /* every kind of image in the fixed batch */
            for (size_t i = 0; i < n; i++) {
                unsigned char *im = px + i * CNN_PIXELS;
                if (i == 0 || i == 1) memset(im, i == 0 ? 0 : 255, CNN_PIXELS);
            }
        if (cnn_cuda_ops.classify(gpu, px, n, g, err, sizeof err) != 0) {
            printf("FAIL conv=%s math=%s: batch %d (%zu images), CUDA: %s\n", conv, math, r, n,
                   err);
            goto out;
        }
        if (cpu_classify(cpu, px, n, c, err, sizeof err) != 0) {
            printf("FAIL: batch %d (%zu images), CPU: %s\n", r, n, err);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const float *gi = g + i * CNN_CLASSES, *ci = c + i * CNN_CLASSES;
            double e = abs_error(gi, ci);
            if (e > t.worst) t.worst = e;
            if (!(e <= tol)) {
                printf("FAIL conv=%s math=%s: batch %d, image %zu of %zu: probabilities %.3g "
                       "apart (limit %g%s)\n",
                       conv, math, r, i, n, e, tol, isinf(e) ? ", NaN" : "");
                goto out;
            }
            if (argmax(gi) != argmax(ci)) {
                if (top_gap(ci) > tol) {
                    printf("FAIL conv=%s math=%s: batch %d, image %zu of %zu: class %d on the "
                           "GPU, %d on the CPU\n",
                           conv, math, r, i, n, argmax(gi), argmax(ci));
                    goto out;
                }
                t.near_ties++;
            }
        }
        if (cnn_cuda_ops.classify(gpu, px, 1, alone, err, sizeof err) != 0) {
            printf("FAIL conv=%s math=%s: batch %d, the first image alone: %s\n", conv, math, r,
                   err);
            goto out;
        }
        double e = abs_error(alone, g);
        if (e > t.worst_alone) t.worst_alone = e;
        if (!(e <= tol)) {
            printf("FAIL conv=%s math=%s: batch %d: an image alone and in a batch of %zu differ "
                   "by %.3g\n",
                   conv, math, r, n, e);
            goto out;
        }
        t.batches++;
        t.images += (long)n;
        if (dumping && write_dump(dump, px, g, n) != 0) goto out;
    }
    printf("ok   conv=%s math=%s: %ld batches, %ld images; CUDA vs CPU at most %.3g apart, alone "
           "vs in a batch %.3g (limit %g, poisoned buffers); %ld near ties\n",
           conv, math, t.batches, t.images, t.worst, t.worst_alone, tol, t.near_ties);
    rc = 0;
out:
    unsetenv("FLEET_CLASSIFY_CONV");
    unsetenv("FLEET_CLASSIFY_MATH");
    unsetenv("FLEET_CLASSIFY_POISON");
    cnn_cuda_ops.free(gpu);
    cnn_cpu_ops.free(cpu);
    free(px);
    free(g);
    free(c);
    return rc;
}

#endif /* CLASSIFY_HAVE_CUDA */

int main(int argc, char **argv) {
    check_args a = {
        .prog = "fleet-classify-check",
        .model_opt = "weights",
        .help = "usage: fleet-classify-check [--weights FILE] [--rounds N] [--seed S] [--dump "
                "FILE]\n(default weights: " CLASSIFY_CHECK_WEIGHTS ")\n",
        .min_rounds = 0,
        .rounds_rule = "0 or more",
        .model = CLASSIFY_CHECK_WEIGHTS,
        .rounds = 24,
        .seed = 1,
    };
    int exit_code = check_parse_args(argc, argv, &a);
    if (exit_code >= 0) return exit_code;
    const char *weights = a.model, *dump = a.dump;
    int rounds = a.rounds;
#ifndef CLASSIFY_HAVE_CUDA
    (void)weights;
    (void)dump;
    (void)rounds;
    printf("skipped: this build has no classify CUDA backend (no nvcc or no cuDNN when it was "
           "configured)\n");
    return 77;
#else
    check_rnd_seed(a.seed);
    if (!cnn_cuda_present()) {
        printf("skipped: no GPU visible to the CUDA runtime\n");
        return 77;
    }
    static cnn_weights w; /* 80 KB: not on the stack */
    char err[512];
    if (cnn_weights_load(weights, &w, err, sizeof err) != 0) {
        printf("FAIL: %s\n", err);
        return 1;
    }
    /* conv, math: the default first (it writes the dump), then each alternative. */
    static const char *const configs[][2] = {{"fused", "fp32"},
                                             {"separate", "fp32"},
                                             {"fused", "tf32"}};
    int failed = 0;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        failed |= check_config(&w, configs[i][0], configs[i][1], rounds, i == 0 ? dump : NULL) != 0;
    printf("%s\n", failed ? "FAILED" : "all CUDA results within limits");
    return failed ? 1 : 0;
#endif
}
