/* embed_bench.c: fleet-embed-bench, the speed of one BERT backend (worker/embed/bert.h)
 * on its own: no gateway, no Redis, no tokenizer (docs/benchmarks.md, "embed on the CPU").
 *
 *   fleet-embed-bench [--model-dir DIR] [--backend cpu|cuda] [--batches 1,8,64]
 *                     [--tokens 128] [--seconds N] [--dump FILE]
 *   fleet-embed-bench --write-model DIR
 *
 * Without --model-dir it writes a MiniLM-shaped model with random weights (6 layers,
 * hidden 384, 12 heads, intermediate 1536, vocabulary 30522, 512 positions; the
 * generator of tests/lib/bert_gen.c) into a temporary directory and removes it after.
 * --write-model DIR writes that model into DIR (created if missing) and keeps it, then
 * exits: another runtime can load the same weights (bench/onnx/run.sh) and this bench
 * can reread them with --model-dir.
 * Every sequence is exactly --tokens ids: [CLS], random ids in [1000, vocab), [SEP]. After
 * one warm-up call it times repeated batches of each size for about --seconds each (at
 * least 3 batches), splitting a batch into calls of the backend's max_seqs(), and prints
 * one line per batch size: backend, batch, tokens, sentences/s, the median ms per batch
 * (sentences/s = batch / median), the runs, and cpu%: the process's CPU time over the
 * wall time of those runs (100 per busy core), which shows how many threads really
 * worked (OpenBLAS's waiting threads spin, and count). With the cpu backend it also
 * prints OpenBLAS's build configuration and the core type it picked (OPENBLAS_CORETYPE
 * forces one).
 *
 * --dump FILE (after the warm-up, before the timing) embeds 8 of the sequences (fewer
 * when the largest batch is smaller) in one call, the first whole and each next one
 * tokens/8 shorter (at least 2 ids), and writes them to FILE as JSON:
 * {"backend": "cpu", "ids": [[...], ...], "vectors": [[...], ...]}, the vectors printed
 * with 9 significant digits (a float's exact value). bench/onnx/run.sh feeds the same ids
 * to ONNX Runtime (padded, with an attention mask) and compares.
 *
 * Exit code: 0 when it ran, 1 when the model or backend could not be used, 2 on misuse.
 */
#include <errno.h>
#include <ftw.h>
#include <cblas.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "bert.h"
#include "bert_cpu.h"
#include "bert_gen.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: fleet-embed-bench [--model-dir DIR] [--backend %s] [--batches 1,8,64]\n"
            "                         [--tokens 128] [--seconds 3] [--dump FILE]\n"
            "       fleet-embed-bench --write-model DIR\n"
            "Without --model-dir a MiniLM-shaped random model is generated in a temporary\n"
            "directory (--write-model DIR: written there and kept, then exit). --dump FILE\n"
            "writes 8 sequences' ids and vectors as JSON. Thread settings:\n"
            "OPENBLAS_NUM_THREADS, FLEET_CPU_THREADS.\n",
            bert_backend_names());
}

/* The id of `token` in dir/vocab.txt (the tokenizer's vocabulary), or fallback. */
static int32_t vocab_id(const char *dir, const char *token, int32_t fallback) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    tok_vocab *v = NULL;
    if (tok_vocab_load(path, &v, err, sizeof err) != 0) return fallback;
    long id = tok_vocab_id(v, token);
    tok_vocab_free(v);
    return id >= 0 ? (int32_t)id : fallback;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    return remove(path);
}

/* Writes the MiniLM-shaped random model into the existing directory dir. */
static int write_minilm(const char *dir) {
    static const bert_gen_shape minilm = {
        .hidden = 384,
        .layers = 6,
        .heads = 12,
        .inter = 1536,
        .vocab = 30522,
        .max_pos = 512,
        .max_seq_length = 256,
    };
    char err[512] = "";
    double t0 = bench_now_s();
    if (bert_gen_write(dir, &minilm, false, "", err, sizeof err) != 0) {
        fprintf(stderr, "fleet-embed-bench: generating a model: %s\n", err);
        return -1;
    }
    printf("model: MiniLM-shaped random F32 weights in %s (written in %.1f s)\n", dir,
           bench_now_s() - t0);
    return 0;
}

/* --dump: embeds up to 8 of seqs in one call, the i-th cut to tokens - i * (tokens / 8)
 * ids (at least 2), and writes their ids and vectors to path as JSON. */
static int dump_vectors(const char *path, const bert_ops *ops, void *m, int32_t *const *seqs,
                        long nseqs, long tokens, size_t h) {
    size_t n = nseqs < 8 ? (size_t)nseqs : 8;
    if (n > ops->max_seqs(m)) n = ops->max_seqs(m);
    size_t lens[8];
    for (size_t i = 0; i < n; i++) {
        long len = tokens - (long)i * (tokens / 8);
        lens[i] = (size_t)(len < 2 ? 2 : len);
    }
    float *out = malloc(n * h * sizeof *out);
    if (!out) {
        fprintf(stderr, "fleet-embed-bench: out of memory\n");
        return -1;
    }
    char err[512] = "";
    if (ops->embed(m, (const int32_t *const *)seqs, lens, n, out, err, sizeof err) != 0) {
        fprintf(stderr, "fleet-embed-bench: --dump: embed: %s\n", err);
        free(out);
        return -1;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fleet-embed-bench: --dump: %s: %s\n", path, strerror(errno));
        free(out);
        return -1;
    }
    fprintf(f, "{\"backend\": \"%s\", \"ids\": [", ops->name);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (size_t j = 0; j < lens[i]; j++) fprintf(f, "%s%ld", j ? ", " : "", (long)seqs[i][j]);
        fputc(']', f);
    }
    fprintf(f, "], \"vectors\": [");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (size_t j = 0; j < h; j++) fprintf(f, "%s%.9g", j ? ", " : "", out[i * h + j]);
        fputc(']', f);
    }
    fprintf(f, "]}\n");
    free(out);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "fleet-embed-bench: --dump: cannot write %s\n", path);
        return -1;
    }
    printf("dump: %zu sequences' ids and vectors in %s\n", n, path);
    return 0;
}

/* Embeds sequences [0, n) in calls of at most max_seqs. */
static int run_batch(const bert_ops *ops, void *m, const int32_t *const *ids, const size_t *lens,
                     size_t n, size_t max_seqs, float *out, size_t h) {
    char err[512] = "";
    for (size_t i = 0; i < n; i += max_seqs) {
        size_t k = n - i < max_seqs ? n - i : max_seqs;
        if (ops->embed(m, ids + i, lens + i, k, out + i * h, err, sizeof err) != 0) {
            fprintf(stderr, "fleet-embed-bench: embed: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* What bench_time calls: one batch of the first sequences. */
typedef struct timed {
    const bert_ops *ops;
    void *m;
    const int32_t *const *ids;
    const size_t *lens;
    size_t max_seqs;
    float *out;
    size_t h;
} timed;

static int timed_batch(void *ctx, long batch) {
    const timed *t = ctx;
    return run_batch(t->ops, t->m, t->ids, t->lens, (size_t)batch, t->max_seqs, t->out, t->h);
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *write_dir = NULL;
    long tokens = 128;
    bench_opts o = {.prog = "fleet-embed-bench",
                    .batches_usage = "1,8,64",
                    .backend = "cpu",
                    .batches = {1, 8, 64},
                    .nbatches = 3,
                    .seconds = 3};
    static const struct option opts[] = {
        BENCH_COMMON_OPTIONS,
        {"model-dir", required_argument, NULL, 'm'},
        {"tokens", required_argument, NULL, 't'},
        {"write-model", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int common = bench_common_option(&o, c, optarg);
        if (common < 0) return 2;
        if (common) continue;
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 't':
            if ((tokens = bench_parse_long(optarg, 2, 1000000)) < 0) {
                fprintf(stderr, "fleet-embed-bench: --tokens: an integer >= 2\n");
                return 2;
            }
            break;
        case 'w': write_dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *backend = o.backend, *dump = o.dump;
    const long *batches = o.batches;
    const long seconds = o.seconds;
    const int nbatches = o.nbatches;
    if (optind < argc || (write_dir && model_dir)) {
        usage(stderr);
        return 2;
    }
    if (write_dir) {
        if (mkdir(write_dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "fleet-embed-bench: cannot create %s: %s\n", write_dir,
                    strerror(errno));
            return 1;
        }
        return write_minilm(write_dir) == 0 ? 0 : 1;
    }
    const bert_ops *ops = bert_backend(backend);
    if (!ops) {
        fprintf(stderr, "fleet-embed-bench: backend %s is not built in (have: %s)\n", backend,
                bert_backend_names());
        return 2;
    }

    int rc = 1;
    char tmpdir[] = "/tmp/fleet-embed-bench.XXXXXX";
    bool made = false;
    char err[512] = "";
    if (!model_dir) {
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "fleet-embed-bench: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        made = true;
        model_dir = tmpdir;
        if (write_minilm(tmpdir) != 0) goto out;
    } else {
        printf("model: %s\n", model_dir);
    }

    void *m = NULL;
    double t0 = bench_now_s();
    if (ops->load(model_dir, &m, err, sizeof err) != 0) {
        fprintf(stderr, "fleet-embed-bench: load %s: %s\n", model_dir, err);
        goto out;
    }
    const bert_config *cfg = ops->config(m);
    printf("loaded in %.2f s: %d layers, hidden %d, %d heads, intermediate %d, vocab %d\n",
           bench_now_s() - t0, cfg->num_hidden_layers, cfg->hidden_size, cfg->num_attention_heads,
           cfg->intermediate_size, cfg->vocab_size);
    if (tokens > cfg->max_position_embeddings) {
        fprintf(stderr, "fleet-embed-bench: --tokens %ld is above the model's %d positions\n",
                tokens, cfg->max_position_embeddings);
        ops->free(m);
        goto out;
    }
    if (strcmp(ops->name, "cpu") == 0) {
        const char *ob = getenv("OPENBLAS_NUM_THREADS"), *ft = getenv("FLEET_CPU_THREADS");
        printf("threads: %d (OPENBLAS_NUM_THREADS=%s, FLEET_CPU_THREADS=%s), %ld online CPUs\n",
               bert_cpu_threads(), ob ? ob : "unset", ft ? ft : "unset",
               sysconf(_SC_NPROCESSORS_ONLN));
        const char *ct = getenv("OPENBLAS_CORETYPE");
        printf("openblas: %s, core %s (OPENBLAS_CORETYPE=%s)\n", openblas_get_config(),
               openblas_get_corename(), ct ? ct : "unset");
    }

    /* The sequences: as many as the largest batch, all different. */
    long maxb = bench_max_batch(batches, nbatches);
    size_t h = (size_t)cfg->hidden_size;
    int32_t cls = vocab_id(model_dir, "[CLS]", 2), sep = vocab_id(model_dir, "[SEP]", 3);
    int32_t lo = cfg->vocab_size > 1000 ? 1000 : 0;
    int32_t **seqs = calloc((size_t)maxb, sizeof *seqs);
    size_t *lens = calloc((size_t)maxb, sizeof *lens);
    float *out = malloc((size_t)maxb * h * sizeof *out);
    if (!seqs || !lens || !out) {
        fprintf(stderr, "fleet-embed-bench: out of memory\n");
        goto done;
    }
    uint64_t state = 7;
    for (long s = 0; s < maxb; s++) {
        if (!(seqs[s] = malloc((size_t)tokens * sizeof *seqs[s]))) {
            fprintf(stderr, "fleet-embed-bench: out of memory\n");
            goto done;
        }
        lens[s] = (size_t)tokens;
        seqs[s][0] = cls;
        for (long j = 1; j < tokens - 1; j++)
            seqs[s][j] = lo +
                         (int32_t)(bench_splitmix64(&state) % (uint64_t)(cfg->vocab_size - lo));
        seqs[s][tokens - 1] = sep;
    }
    size_t max_seqs = ops->max_seqs(m);
    const int32_t *const *ids = (const int32_t *const *)seqs;

    /* One warm-up call, then each batch size. */
    if (run_batch(ops, m, ids, lens, (size_t)maxb < max_seqs ? (size_t)maxb : max_seqs, max_seqs,
                  out, h) != 0)
        goto done;
    if (dump && dump_vectors(dump, ops, m, seqs, maxb, tokens, h) != 0) goto done;
    printf("%-8s %6s %7s %12s %14s %6s %5s\n", "backend", "batch", "tokens", "sentences/s",
           "ms/batch(med)", "runs", "cpu%");
    timed tm = {
        .ops = ops, .m = m, .ids = ids, .lens = lens, .max_seqs = max_seqs, .out = out, .h = h};
    for (int b = 0; b < nbatches; b++) {
        bench_timing t;
        if (bench_time("fleet-embed-bench", timed_batch, &tm, batches[b], seconds, &t) != 0)
            goto done;
        printf("%-8s %6ld %7ld %12.1f %14.2f %6zu %5.0f\n", ops->name, batches[b], tokens,
               (double)batches[b] / t.median_s, t.median_s * 1e3, t.runs, t.cpu_pct);
        fflush(stdout);
    }
    rc = 0;
done:
    if (seqs)
        for (long s = 0; s < maxb; s++) free(seqs[s]);
    free(seqs);
    free(lens);
    free(out);
    ops->free(m);
out:
    if (made) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
