/* latency.c: exact percentiles over all samples (latency.h). */
#include "latency.h"

#include <stdlib.h>
#include <time.h>

uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_latency_add(bench_latency *l, uint64_t ns) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint32_t *p = realloc(l->us, cap * sizeof *p);
        if (!p) {
            l->dropped++;
            return;
        }
        l->us = p;
        l->cap = cap;
    }
    uint64_t us = ns / 1000;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->sorted = 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double bench_latency_pct_ms(bench_latency *l, double p) {
    if (l->n == 0) return 0;
    if (!l->sorted) {
        qsort(l->us, l->n, sizeof *l->us, cmp_u32);
        l->sorted = 1;
    }
    /* Nearest rank: the smallest sample with at least p% of samples at or below it. */
    size_t rank = (size_t)(p / 100.0 * (double)l->n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > l->n) rank = l->n;
    return l->us[rank - 1] / 1000.0;
}

double bench_latency_mean_ms(const bench_latency *l) {
    if (l->n == 0) return 0;
    double sum = 0;
    for (size_t i = 0; i < l->n; i++) sum += l->us[i];
    return sum / (double)l->n / 1000.0;
}

void bench_latency_free(bench_latency *l) {
    free(l->us);
    l->us = NULL;
    l->n = l->cap = 0;
}
