/* bench_util.h: what the model benches (fleet-embed-bench, fleet-classify-bench) measure
 * the same way: clocks, their random stream, the --batches list and the timing of one
 * batch size.
 *
 * bench_time runs one batch size: after the caller's warm-up, it calls run(ctx, batch)
 * again and again for about `seconds` (at least 3 calls), and gives the median wall time
 * of a call, the calls made, and cpu%: the process's CPU time (every thread's, user +
 * system) over the wall time of those calls, 100 per busy core, which shows how many
 * threads really worked.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_BATCHES 32

/* The options both benches take, for their getopt_long table; bench_common_option
 * reads them. */
#define BENCH_COMMON_OPTIONS                                                              \
    {"backend", required_argument, NULL, 'b'}, {"batches", required_argument, NULL, 'B'}, \
        {"seconds", required_argument, NULL, 's'}, {                                      \
        "dump", required_argument, NULL, 'd'                                              \
    }

typedef struct bench_opts {
    const char *prog;          /* "fleet-classify-bench", for messages */
    const char *batches_usage; /* the list --batches' message shows: "1,8,64,256" */
    /* the defaults, then what the command line said: */
    const char *backend, *dump;
    long batches[BENCH_MAX_BATCHES];
    int nbatches;
    long seconds; /* about this long for each batch size, in [0, 3600] */
} bench_opts;

/* Takes getopt_long's answer c, with its argument arg, into o when it is one of
 * BENCH_COMMON_OPTIONS: 1 when it was, 0 when c is another option, -1 when its value is
 * bad ("PROG: --batches: a list like ..." or "PROG: --seconds: an integer in [0, 3600]"
 * printed on stderr; exit 2). */
int bench_common_option(bench_opts *o, int c, const char *arg);

/* CLOCK_MONOTONIC, in seconds. */
double bench_now_s(void);

/* The process's CPU time (user + system), every thread's, in seconds. */
double bench_cpu_s(void);

/* The next value of the splitmix64 stream whose state is *state. */
uint64_t bench_splitmix64(uint64_t *state);

/* Parses a list like "1,8,64" (each in [1, 100000], at most BENCH_MAX_BATCHES) into b[];
 * returns the count, or -1 (b[] may then be partly written). */
int bench_parse_batches(const char *s, long *b);

/* s as a whole integer in [lo, hi], or -1. */
long bench_parse_long(const char *s, long lo, long hi);

/* The largest of b[0..n). */
long bench_max_batch(const long *b, int n);

typedef struct bench_timing {
    double median_s; /* the median wall time of one call */
    size_t runs;     /* the calls timed */
    double cpu_pct;  /* CPU time over wall time, percent */
} bench_timing;

/* One call of the batch being timed: 0, or -1 (having printed why) to stop. */
typedef int (*bench_run_fn)(void *ctx, long batch);

/* Times run(ctx, batch) as described above into *t; returns 0, or -1 when a call failed
 * or memory ran out ("PROG: out of memory" printed). */
int bench_time(const char *prog, bench_run_fn run, void *ctx, long batch, long seconds,
               bench_timing *t);

#endif
