/* bench_util.c: the model benches' shared measuring; see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

uint64_t bench_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int bench_parse_batches(const char *s, long *b) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 100000 || n == BENCH_MAX_BATCHES) return -1;
        b[n++] = v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n ? n : -1;
}

long bench_parse_long(const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    return v;
}

int bench_common_option(bench_opts *o, int c, const char *arg) {
    switch (c) {
    case 'b': o->backend = arg; return 1;
    case 'd': o->dump = arg; return 1;
    case 'B':
        if ((o->nbatches = bench_parse_batches(arg, o->batches)) < 0) {
            fprintf(stderr, "%s: --batches: a list like %s\n", o->prog, o->batches_usage);
            return -1;
        }
        return 1;
    case 's':
        if ((o->seconds = bench_parse_long(arg, 0, 3600)) < 0) {
            fprintf(stderr, "%s: --seconds: an integer in [0, 3600]\n", o->prog);
            return -1;
        }
        return 1;
    default: return 0;
    }
}

long bench_max_batch(const long *b, int n) {
    long max = 0;
    for (int i = 0; i < n; i++) max = b[i] > max ? b[i] : max;
    return max;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int bench_time(const char *prog, bench_run_fn run, void *ctx, long batch, long seconds,
               bench_timing *t) {
    double *times = NULL;
    size_t ntimes = 0, captimes = 0;
    double start = bench_now_s(), cpu0 = bench_cpu_s();
    do {
        double dt = bench_now_s();
        if (run(ctx, batch) != 0) goto fail;
        dt = bench_now_s() - dt;
        if (ntimes == captimes) {
            captimes = captimes ? 2 * captimes : 64;
            double *nt = realloc(times, captimes * sizeof *nt);
            if (!nt) {
                fprintf(stderr, "%s: out of memory\n", prog);
                goto fail;
            }
            times = nt;
        }
        times[ntimes++] = dt;
    } while (ntimes < 3 || bench_now_s() - start < (double)seconds);
    t->cpu_pct = 100.0 * (bench_cpu_s() - cpu0) / (bench_now_s() - start);
    qsort(times, ntimes, sizeof *times, cmp_double);
    t->median_s = ntimes % 2 ? times[ntimes / 2] : (times[ntimes / 2 - 1] + times[ntimes / 2]) / 2;
    t->runs = ntimes;
    free(times);
    return 0;
fail:
    free(times);
    return -1;
}
