/* latency.h: latency samples and their percentiles.
 *
 * Every sample is kept (4 bytes each, microseconds) and sorted once at the end, so the
 * percentiles are exact rather than read from histogram buckets; a 10 s run at 50k req/s
 * holds 2 MB. A sample that cannot be stored (out of memory) is counted in `dropped`.
 */
#ifndef BENCH_LATENCY_H
#define BENCH_LATENCY_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_latency {
    uint32_t *us;
    size_t n, cap;
    size_t dropped;
    int sorted;
} bench_latency;

void bench_latency_add(bench_latency *l, uint64_t ns);
/* p in 0..100; 0 when there are no samples. Sorts on first call. */
double bench_latency_pct_ms(bench_latency *l, double p);
double bench_latency_mean_ms(const bench_latency *l);
void bench_latency_free(bench_latency *l);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

#endif
