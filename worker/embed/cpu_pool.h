/* cpu_pool.h: a small fixed pool of threads for the CPU backends' forward passes.
 *
 * cpu_pool_run(p, ntasks, fn, arg) calls fn(arg, task, thread) once for every task in
 * [0, ntasks), spread over the pool's threads, and returns when all have returned. The
 * calling thread is one of them (thread 0), so a pool of N threads starts N - 1; a pool of
 * one runs every task on the caller, in order. `thread` is in [0, cpu_pool_threads(p)) and
 * no two tasks run at once with the same value, so fn may index per-thread scratch with it.
 * Which thread takes which task, and in what order, is not fixed: tasks must not depend on
 * each other.
 *
 * Idle threads cost nothing: between runs a pool thread spins for about 50 microseconds (so
 * that the next of a forward pass's back-to-back runs finds it awake), then sleeps on a
 * condition variable until the next run, so a pool between batches holds no core.
 *
 * Several threads may call cpu_pool_run on one pool: runs are taken one at a time (a mutex),
 * never interleaved. fn must not call cpu_pool_run on its own pool (it would wait for
 * itself). A pool does not survive fork(): the child has none of its threads, so only
 * the process that made a pool may run it.
 *
 * Errors: cpu_pool_new returns NULL when threads is outside [1, CPU_POOL_MAX_THREADS] or a
 * thread cannot be started (errno says why). cpu_pool_free accepts NULL and joins the
 * threads.
 */
#ifndef EMBED_CPU_POOL_H
#define EMBED_CPU_POOL_H

#include <stddef.h>

#define CPU_POOL_MAX_THREADS 1024

typedef struct cpu_pool cpu_pool;

typedef void (*cpu_pool_fn)(void *arg, size_t task, int thread);

cpu_pool *cpu_pool_new(int threads);

void cpu_pool_run(cpu_pool *p, size_t ntasks, cpu_pool_fn fn, void *arg);

/* The threads that run tasks, the caller's included. */
int cpu_pool_threads(const cpu_pool *p);

void cpu_pool_free(cpu_pool *p);

/* The number of threads a pool should have when the user named none: one per CPU the
 * process may run on (its affinity mask, so a container's cpuset; the online CPUs when
 * that cannot be read), at least 1, at most CPU_POOL_MAX_THREADS. */
int cpu_pool_default_threads(void);

/* The pool size the user asked for in FLEET_CPU_THREADS, the one place it is parsed:
 * 0 with *threads = 0 when it is unset or empty; 0 with *threads set when it is an
 * integer in [1, CPU_POOL_MAX_THREADS]; -1 with err set ("FLEET_CPU_THREADS=...: must be
 * an integer in [1, 1024]") when it holds anything else. What an unset value means (one
 * per CPU, OPENBLAS_NUM_THREADS, ...) is the caller's choice. */
int cpu_pool_threads_setting(int *threads, char *err, size_t errlen);

#endif
