/* embed_check.c: fleet-embed-check, the CUDA backend of the embed model against its CPU
 * twin on fresh random inputs (tests/gpu/run.sh runs it on a GPU machine; CI has none).
 *
 *   fleet-embed-check [--model-dir DIR] [--rounds N] [--seed S] [--dump FILE]
 *
 * For each model (a MiniLM-shaped one with F32 weights, written into --model-dir when
 * that holds no config.json yet, or into a temporary directory; and a small 3-layer one
 * with F16 weights and "bert."-prefixed names) and each configuration (softmax own or
 * cudnn, GEMMs fp32, 3xtf32 or tf32; bert_cuda.h), it loads the CUDA backend with FLEET_EMBED_POISON=1 (every work buffer
 * is NaN before each call, so an element a kernel skips shows) and the CPU backend, then
 * runs --rounds batches of random size (1..64 sequences), random lengths (1..max, the
 * maximum always among them) and random ids, and compares every sequence:
 *
 *   relative error = max_j |cuda_j - cpu_j| / max_j |cpu_j|    must be <= 1e-3, no NaN
 *                                                              (1e-2 for opt-in tf32)
 *
 * It also embeds the first sequence of each batch alone and compares it with its vector
 * inside the batch (padding and batch composition must not change a vector).
 *
 * --dump FILE writes one fixed batch (ids and the CUDA vectors) of the MiniLM-shaped
 * model for tests/gpu/torch_bench.py, which checks PyTorch gives the same vectors.
 *
 * Exit: 0 all within limits; 1 a check failed or a backend did not load; 2 misuse;
 * 77 skipped (no CUDA backend in this build, or no GPU).
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert.h"
#include "bert_gen.h"
#include "check_util.h"

#ifdef EMBED_HAVE_CUDA
#include "bert_cuda.h"
#endif

#define TOL 1e-3      /* float32 and 3xtf32 GEMMs */
#define TOL_TF32 1e-2 /* FLEET_EMBED_GEMM=tf32, opt-in: 10-bit mantissas */
#define MAX_BATCH 64

#ifdef EMBED_HAVE_CUDA

/* Relative error of a against the reference b (dim values); NaN anywhere gives +inf. */
static double rel_error(const float *a, const float *b, int dim) {
    double scale = 1e-12, diff = 0;
    for (int j = 0; j < dim; j++) {
        if (isnan(a[j]) || isnan(b[j])) return INFINITY;
        if (fabs(b[j]) > scale) scale = fabs(b[j]);
        if (fabs((double)a[j] - b[j]) > diff) diff = fabs((double)a[j] - b[j]);
    }
    return diff / scale;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

typedef struct check_totals {
    long batches, seqs;
    double worst, worst_alone;
} check_totals;

/* Runs the rounds for one model directory and one softmax; returns 0 or -1. */
static int check_model(const char *dir, const char *label, const char *softmax, const char *gemm,
                       int rounds, const char *dump) {
    const double tol = strcmp(gemm, "tf32") == 0 ? TOL_TF32 : TOL;
    const bert_ops *gpu_ops = &bert_cuda_ops, *cpu_ops = &bert_cpu_ops;
    void *gpu = NULL, *cpu = NULL;
    char err[512];
    int rc = -1;
    int32_t *ids[MAX_BATCH] = {0};
    size_t lens[MAX_BATCH];
    float *g = NULL, *c = NULL, *alone = NULL;
    check_totals t = {0};

    setenv("FLEET_EMBED_SOFTMAX", softmax, 1);
    setenv("FLEET_EMBED_GEMM", gemm, 1);
    setenv("FLEET_EMBED_POISON", "1", 1);
    if (gpu_ops->load(dir, &gpu, err, sizeof err) != 0) {
        printf("FAIL %s softmax=%s gemm=%s: the CUDA backend did not load: %s\n", label, softmax,
               gemm, err);
        goto out;
    }
    if (cpu_ops->load(dir, &cpu, err, sizeof err) != 0) {
        printf("FAIL %s: the CPU backend did not load: %s\n", label, err);
        goto out;
    }
    const bert_config *cfg = gpu_ops->config(gpu);
    const int dim = cfg->hidden_size;
    int max_len = cfg->max_seq_length < cfg->max_position_embeddings ? cfg->max_seq_length
                                                                     : cfg->max_position_embeddings;
    size_t max_seqs = gpu_ops->max_seqs(gpu);
    if (max_seqs > MAX_BATCH) max_seqs = MAX_BATCH;
    g = malloc(MAX_BATCH * (size_t)dim * sizeof *g);
    c = malloc(MAX_BATCH * (size_t)dim * sizeof *c);
    alone = malloc((size_t)dim * sizeof *alone);
    for (int s = 0; s < MAX_BATCH; s++) ids[s] = malloc((size_t)max_len * sizeof *ids[s]);
    if (!g || !c || !alone || !ids[MAX_BATCH - 1]) {
        printf("FAIL: out of memory\n");
        goto out;
    }
    for (int r = 0; r < rounds + (dump ? 1 : 0); r++) {
        int dumping = dump && r == rounds;
        /* Batch sizes sweep the edges: 1, the maximum, and random ones between. */
        size_t n = dumping ? 8 : r == 0 ? 1 : r == 1 ? max_seqs : 1 + check_rnd((uint32_t)max_seqs);
        size_t longest = 1 + check_rnd((uint32_t)n);
        for (size_t s = 0; s < n; s++) {
            lens[s] = s + 1 == longest ? (size_t)max_len : 1 + check_rnd((uint32_t)max_len);
            if (dumping) lens[s] = 4 + 16 * s < (size_t)max_len ? 4 + 16 * s : (size_t)max_len;
            for (size_t i = 0; i < lens[s]; i++)
                ids[s][i] = (int32_t)check_rnd((uint32_t)cfg->vocab_size);
            if (lens[s] >= 2) { /* [CLS] ... [SEP], as the tokenizer makes them */
                ids[s][0] = cfg->vocab_size > 101 ? 101 : 0;
                ids[s][lens[s] - 1] = cfg->vocab_size > 102 ? 102 : 0;
            }
        }
        if (gpu_ops->embed(gpu, (const int32_t *const *)ids, lens, n, g, err, sizeof err) != 0 ||
            cpu_ops->embed(cpu, (const int32_t *const *)ids, lens, n, c, err, sizeof err) != 0) {
            printf("FAIL %s softmax=%s gemm=%s: round %d: %s\n", label, softmax, gemm, r, err);
            goto out;
        }
        for (size_t s = 0; s < n; s++) {
            double e = rel_error(g + s * (size_t)dim, c + s * (size_t)dim, dim);
            if (e > t.worst) t.worst = e;
            if (!(e <= tol)) {
                printf(
                    "FAIL %s softmax=%s gemm=%s: round %d, sequence %zu of %zu (%zu tokens): relative "
                    "error %.3g (limit %g)\n",
                    label, softmax, gemm, r, s, n, lens[s], e, tol);
                goto out;
            }
        }
        if (gpu_ops->embed(gpu, (const int32_t *const *)ids, lens, 1, alone, err, sizeof err) !=
            0) {
            printf("FAIL %s softmax=%s gemm=%s: round %d alone: %s\n", label, softmax, gemm, r,
                   err);
            goto out;
        }
        double e = rel_error(alone, g, dim);
        if (e > t.worst_alone) t.worst_alone = e;
        if (!(e <= tol)) {
            printf("FAIL %s softmax=%s gemm=%s: round %d: a sequence alone and in a batch of %zu "
                   "differ by %.3g\n",
                   label, softmax, gemm, r, n, e);
            goto out;
        }
        t.batches++;
        t.seqs += (long)n;
        if (dumping) {
            FILE *f = fopen(dump, "w");
            if (!f) {
                printf("FAIL: %s: %s\n", dump, strerror(errno));
                goto out;
            }
            fprintf(f, "%zu %d\n", n, dim);
            for (size_t s = 0; s < n; s++) {
                fprintf(f, "%zu", lens[s]);
                for (size_t i = 0; i < lens[s]; i++) fprintf(f, " %d", ids[s][i]);
                fprintf(f, "\n");
                for (int j = 0; j < dim; j++)
                    fprintf(f, "%s%.9g", j ? " " : "", g[s * (size_t)dim + (size_t)j]);
                fprintf(f, "\n");
            }
            fclose(f);
        }
    }
    printf("ok   %s softmax=%s gemm=%s: %ld batches, %ld sequences; CUDA vs CPU max relative error "
           "%.3g; alone vs in a batch %.3g (limit %g, poisoned buffers)\n",
           label, softmax, gemm, t.batches, t.seqs, t.worst, t.worst_alone, tol);
    rc = 0;
out:
    unsetenv("FLEET_EMBED_POISON");
    unsetenv("FLEET_EMBED_SOFTMAX");
    unsetenv("FLEET_EMBED_GEMM");
    if (gpu) gpu_ops->free(gpu);
    cpu_ops->free(cpu);
    for (int s = 0; s < MAX_BATCH; s++) free(ids[s]);
    free(g);
    free(c);
    free(alone);
    return rc;
}

#endif /* EMBED_HAVE_CUDA */

int main(int argc, char **argv) {
    check_args a = {
        .prog = "fleet-embed-check",
        .model_opt = "model-dir",
        .help = "usage: fleet-embed-check [--model-dir DIR] [--rounds N] [--seed S] [--dump "
                "FILE]\n",
        .min_rounds = 2,
        .rounds_rule = "at least 2",
        .rounds = 40,
        .seed = 1,
    };
    int exit_code = check_parse_args(argc, argv, &a);
    if (exit_code >= 0) return exit_code;
    const char *model_dir = a.model, *dump = a.dump;
    int rounds = a.rounds;
#ifndef EMBED_HAVE_CUDA
    (void)model_dir;
    (void)dump;
    (void)rounds;
    printf("skipped: this build has no CUDA backend (no nvcc when it was configured)\n");
    return 77;
#else
    check_rnd_seed(a.seed);
    if (!bert_cuda_present()) {
        printf("skipped: no GPU visible to the CUDA runtime\n");
        return 77;
    }
    char tmp[] = "/tmp/fleet-embed-check-XXXXXX", err[512], path[4200];
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char minilm_dir[4096], small_dir[4200];
    snprintf(minilm_dir, sizeof minilm_dir, "%s", model_dir ? model_dir : tmp);
    snprintf(small_dir, sizeof small_dir, "%s/small-f16", tmp);
    static const bert_gen_shape minilm = {.hidden = 384,
                                          .layers = 6,
                                          .heads = 12,
                                          .inter = 1536,
                                          .vocab = 30522,
                                          .max_pos = 512,
                                          .max_seq_length = 256};
    static const bert_gen_shape small = {.hidden = 64,
                                         .layers = 3,
                                         .heads = 4,
                                         .inter = 128,
                                         .vocab = 1000,
                                         .max_pos = 96,
                                         .max_seq_length = 80};
    int rc = 1;
    snprintf(path, sizeof path, "%s/config.json", minilm_dir);
    if (access(path, F_OK) != 0 &&
        bert_gen_write(minilm_dir, &minilm, false, "", err, sizeof err) != 0) {
        printf("FAIL: writing the MiniLM-shaped model: %s\n", err);
        goto out;
    }
    if (mkdir(small_dir, 0755) != 0 ||
        bert_gen_write(small_dir, &small, true, "bert.", err, sizeof err) != 0) {
        printf("FAIL: writing the small model: %s\n", err);
        goto out;
    }
    /* softmax, gemm: the default first (it writes the dump), then each alternative. */
    static const char *const configs[][2] = {
        {"own", "fp32"}, {"cudnn", "fp32"}, {"own", "3xtf32"}, {"own", "tf32"}};
    int failed = 0;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        if (strcmp(configs[i][0], "cudnn") == 0 && !bert_cuda_has_cudnn()) {
            printf("skipped: softmax=cudnn (this build has no cuDNN)\n");
            continue;
        }
        failed |= check_model(minilm_dir, "minilm-f32", configs[i][0], configs[i][1], rounds,
                              i == 0 ? dump : NULL) != 0;
        failed |= check_model(small_dir, "small-f16-bert-prefix", configs[i][0], configs[i][1],
                              rounds / 2 + 1, NULL) != 0;
    }
    rc = failed ? 1 : 0;
    printf("%s\n", failed ? "FAILED" : "all CUDA results within limits");
out:
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
#endif
}
