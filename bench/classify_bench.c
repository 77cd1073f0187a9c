/* classify_bench.c: fleet-classify-bench, the speed of one classify backend (worker/classify/
 * cnn.h) on its own: no gateway, no Redis, no image decoding (docs/benchmarks.md).
 *
 *   fleet-classify-bench [--backend cpu|cuda] [--weights FILE] [--batches 1,8,64,256]
 *                        [--seconds N] [--dump FILE]
 *
 * --weights defaults to models/classify/model.safetensors (relative to the working
 * directory: run it from the repository root, or name the file). The images are random
 * bytes (a fixed splitmix64 stream, all different): the network does the same work
 * whatever the pixels. "cpu" is the CPU backend linked in (cnn_cpu_ops); "cuda" is opened
 * as fleet-worker opens it (cnn_module_open, the module beside this executable). After one
 * warm-up call it times repeated batches of each size for about --seconds each (at least
 * 3 batches), splitting a batch into calls of the backend's max_batch(), and prints one
 * line per batch size: backend, batch, images/s, the median ms per batch (images/s =
 * batch / median), the runs, and cpu%: the process's CPU time over the wall time of those
 * runs (100 per busy core), which shows how many threads really worked.
 *
 * --dump FILE (after the warm-up, before the timing) classifies the first 64 images (or
 * the largest batch, when smaller) and writes them to FILE as JSON: {"backend": "cpu",
 * "pixels": [[784 bytes], ...], "probs": [[10 floats], ...]}, the probabilities with 9
 * significant digits (a float's exact value). bench/onnx/run.sh feeds the same pixels to
 * ONNX Runtime and compares.
 *
 * Threads (cpu): FLEET_CPU_THREADS, read when the backend loads (default: the online
 * CPUs).
 *
 * Exit code: 0 when it ran, 1 when the weights or backend could not be used, 2 on misuse.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "cnn.h"
#include "cnn_cpu.h"

#define BENCH_DUMP_IMAGES 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: fleet-classify-bench [--backend %s] [--weights FILE]\n"
            "                            [--batches 1,8,64,256] [--seconds 3] [--dump FILE]\n"
            "--weights defaults to models/classify/model.safetensors. --dump FILE writes 64\n"
            "images' pixels and probabilities as JSON. Threads: FLEET_CPU_THREADS.\n",
            cnn_backend_names());
}

/* Classifies images [0, n) in calls of at most max_batch. */
static int run_batch(const cnn_ops *ops, void *m, const unsigned char *pixels, size_t n,
                     size_t max_batch, float *probs) {
    char err[512] = "";
    for (size_t i = 0; i < n; i += max_batch) {
        size_t k = n - i < max_batch ? n - i : max_batch;
        if (ops->classify(m, pixels + i * CNN_PIXELS, k, probs + i * CNN_CLASSES, err,
                          sizeof err) != 0) {
            fprintf(stderr, "fleet-classify-bench: classify: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* What bench_time calls: one batch of the first images. */
typedef struct timed {
    const cnn_ops *ops;
    void *m;
    const unsigned char *pixels;
    size_t max_batch;
    float *probs;
} timed;

static int timed_batch(void *ctx, long batch) {
    const timed *t = ctx;
    return run_batch(t->ops, t->m, t->pixels, (size_t)batch, t->max_batch, t->probs);
}

/* --dump: classifies the first n images and writes their pixels and probabilities. */
static int dump_probs(const char *path, const cnn_ops *ops, void *m, const unsigned char *pixels,
                      size_t n, size_t max_batch, float *probs) {
    if (run_batch(ops, m, pixels, n, max_batch, probs) != 0) return -1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fleet-classify-bench: --dump: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"backend\": \"%s\", \"pixels\": [", ops->name);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (size_t j = 0; j < CNN_PIXELS; j++)
            fprintf(f, "%s%u", j ? ", " : "", (unsigned)pixels[i * CNN_PIXELS + j]);
        fputc(']', f);
    }
    fprintf(f, "], \"probs\": [");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (size_t j = 0; j < CNN_CLASSES; j++)
            fprintf(f, "%s%.9g", j ? ", " : "", probs[i * CNN_CLASSES + j]);
        fputc(']', f);
    }
    fprintf(f, "]}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "fleet-classify-bench: --dump: cannot write %s\n", path);
        return -1;
    }
    printf("dump: %zu images' pixels and probabilities in %s\n", n, path);
    return 0;
}

int main(int argc, char **argv) {
    const char *weights = "models/classify/model.safetensors";
    bench_opts o = {.prog = "fleet-classify-bench",
                    .batches_usage = "1,8,64,256",
                    .backend = "cpu",
                    .batches = {1, 8, 64, 256},
                    .nbatches = 4,
                    .seconds = 3};
    static const struct option opts[] = {
        BENCH_COMMON_OPTIONS,
        {"weights", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int common = bench_common_option(&o, c, optarg);
        if (common < 0) return 2;
        if (common) continue;
        switch (c) {
        case 'w': weights = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *backend = o.backend, *dump = o.dump;
    const long *batches = o.batches;
    const long seconds = o.seconds;
    const int nbatches = o.nbatches;
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    char err[512] = "";
    const cnn_ops *ops = NULL;
    if (strcmp(backend, "cpu") == 0) {
        ops = &cnn_cpu_ops;
    } else if (strcmp(backend, "cuda") == 0) {
        const cnn_module *mod = cnn_module_open(backend, err, sizeof err);
        if (!mod || !mod->present()) {
            fprintf(stderr, "fleet-classify-bench: backend cuda: %s\n",
                    mod ? "no GPU is visible" : err);
            return 1;
        }
        ops = mod->ops;
    } else {
        fprintf(stderr, "fleet-classify-bench: --backend: one of %s\n", cnn_backend_names());
        return 2;
    }

    cnn_weights *w = malloc(sizeof *w);
    if (!w) {
        fprintf(stderr, "fleet-classify-bench: out of memory\n");
        return 1;
    }
    if (cnn_weights_load(weights, w, err, sizeof err) != 0) {
        fprintf(stderr, "fleet-classify-bench: %s\n", err);
        free(w);
        return 1;
    }
    void *m = NULL;
    double t0 = bench_now_s();
    int lrc = ops->load(w, &m, err, sizeof err);
    free(w);
    if (lrc != 0) {
        fprintf(stderr, "fleet-classify-bench: load (%s): %s\n", ops->name, err);
        return 1;
    }
    printf("weights: %s, loaded by the %s backend in %.3f s\n", weights, ops->name,
           bench_now_s() - t0);
    if (strcmp(ops->name, "cpu") == 0) {
        const char *ft = getenv("FLEET_CPU_THREADS");
        printf("threads: FLEET_CPU_THREADS=%s (unset: one per online CPU), %ld online CPUs\n",
               ft ? ft : "unset", sysconf(_SC_NPROCESSORS_ONLN));
    }

    int rc = 1;
    long maxb = bench_max_batch(batches, nbatches);
    size_t nimg = (size_t)(maxb > BENCH_DUMP_IMAGES ? maxb : BENCH_DUMP_IMAGES);
    unsigned char *pixels = malloc(nimg * CNN_PIXELS);
    float *probs = malloc(nimg * CNN_CLASSES * sizeof *probs);
    if (!pixels || !probs) {
        fprintf(stderr, "fleet-classify-bench: out of memory\n");
        goto done;
    }
    uint64_t state = 7;
    for (size_t i = 0; i < nimg * CNN_PIXELS; i++)
        pixels[i] = (unsigned char)(bench_splitmix64(&state) >> 56);
    size_t max_batch = ops->max_batch(m);

    /* One warm-up call, then each batch size. */
    if (run_batch(ops, m, pixels, (size_t)maxb < max_batch ? (size_t)maxb : max_batch, max_batch,
                  probs) != 0)
        goto done;
    if (dump && dump_probs(dump, ops, m, pixels,
                           (size_t)maxb < BENCH_DUMP_IMAGES ? (size_t)maxb : BENCH_DUMP_IMAGES,
                           max_batch, probs) != 0)
        goto done;
    printf("%-8s %6s %12s %14s %6s %5s\n", "backend", "batch", "images/s", "ms/batch(med)", "runs",
           "cpu%");
    timed tm = {.ops = ops, .m = m, .pixels = pixels, .max_batch = max_batch, .probs = probs};
    for (int b = 0; b < nbatches; b++) {
        bench_timing t;
        if (bench_time("fleet-classify-bench", timed_batch, &tm, batches[b], seconds, &t) != 0)
            goto done;
        printf("%-8s %6ld %12.1f %14.3f %6zu %5.0f\n", ops->name, batches[b],
               (double)batches[b] / t.median_s, t.median_s * 1e3, t.runs, t.cpu_pct);
        fflush(stdout);
    }
    rc = 0;
done:
    free(pixels);
    free(probs);
    ops->free(m);
    return rc;
}
