/* cpu_pool.c: a small fixed pool of threads; see cpu_pool.h.
 *
 * A run is published by bumping `gen` (release) after its fields are written; a pool
 * thread that sees a new generation takes tasks from the shared counter `next` until
 * none are left, then counts itself out of `active`. The caller runs tasks too, then
 * waits for `active` to reach 0 before returning, so the run's fields are never rewritten
 * while a pool thread may still read them. Waiting on either side is a short spin, then
 * the condition variable: the spin covers the gap between the back-to-back runs of one
 * forward pass, the sleep everything longer.
 */
#include "cpu_pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "fleet/err.h"

/* How many times a waiting thread polls before it sleeps: about 50 us of PAUSE on a
 * Zen 4 core (26 ns each). Within a forward pass a thread waits only for the run's last
 * tasks to finish elsewhere and for the caller to publish the next run, usually less;
 * between batches it sleeps after this long. */
#define SPIN_POLLS 2000

struct cpu_pool {
    int nthreads; /* the caller's included */
    pthread_t *tids;
    int started; /* pool threads started (nthreads - 1 once cpu_pool_new succeeds) */

    pthread_mutex_t run_mu; /* one run at a time */
    pthread_mutex_t mu;     /* guards sleeping, and the waits on wake and done */
    pthread_cond_t wake;    /* pool threads: a new generation */
    pthread_cond_t done;    /* the caller: active reached 0 */
    int sleeping;           /* pool threads waiting on wake */

    /* The current run: written by the caller before gen is bumped, read by pool threads
     * after they see the bump. */
    cpu_pool_fn fn;
    void *arg;
    size_t ntasks;
    atomic_size_t next; /* the next task to take */
    atomic_int active;  /* pool threads not yet out of the current run */
    atomic_uint gen;    /* bumped once per run, and once more to stop */
    atomic_bool stop;
};

typedef struct worker_arg {
    cpu_pool *p;
    int index;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void take_tasks(cpu_pool *p, int thread) {
    size_t t;
    while ((t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->ntasks)
        p->fn(p->arg, t, thread);
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    cpu_pool *p = wa.p;
    /* Generation 0 is the pool's start: a run published before this thread got here is
     * still seen as new. */
    unsigned seen = 0;
    for (;;) {
        unsigned g = seen;
        for (int i = 0; i < SPIN_POLLS; i++) {
            if ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) != seen) break;
            cpu_relax();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            p->sleeping++;
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            p->sleeping--;
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        take_tasks(p, wa.index);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            /* The last one out: the caller may be asleep waiting for it. */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* Publishes a new generation and wakes the pool threads that sleep. */
static void publish(cpu_pool *p) {
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    pthread_mutex_lock(&p->mu);
    if (p->sleeping) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

/* Stops and joins the pool threads started so far. */
static void stop_threads(cpu_pool *p) {
    if (!p->started) return;
    atomic_store_explicit(&p->stop, true, memory_order_release);
    publish(p);
    for (int i = 0; i < p->started; i++) pthread_join(p->tids[i], NULL);
    p->started = 0;
}

cpu_pool *cpu_pool_new(int threads) {
    if (threads < 1 || threads > CPU_POOL_MAX_THREADS) {
        errno = EINVAL;
        return NULL;
    }
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    int saved;
    p->nthreads = threads;
    atomic_init(&p->next, 0);
    atomic_init(&p->active, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (threads > 1 && !(p->tids = calloc((size_t)threads - 1, sizeof *p->tids))) goto err;
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto err;
        wa->p = p;
        wa->index = i;
        int rc = pthread_create(&p->tids[p->started], NULL, worker_main, wa);
        if (rc != 0) {
            free(wa);
            errno = rc;
            goto err;
        }
        p->started++;
    }
    return p;
err:
    saved = errno;
    cpu_pool_free(p);
    errno = saved;
    return NULL;
}

void cpu_pool_run(cpu_pool *p, size_t ntasks, cpu_pool_fn fn, void *arg) {
    if (ntasks == 0) return;
    pthread_mutex_lock(&p->run_mu);
    if (p->nthreads == 1 || ntasks == 1) {
        /* Nothing to share: no thread is woken. */
        for (size_t t = 0; t < ntasks; t++) fn(arg, t, 0);
        pthread_mutex_unlock(&p->run_mu);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->nthreads - 1, memory_order_relaxed);
    publish(p);
    take_tasks(p, 0);
    bool out = false;
    for (int i = 0; i < SPIN_POLLS && !out; i++) {
        out = atomic_load_explicit(&p->active, memory_order_acquire) == 0;
        if (!out) cpu_relax();
    }
    if (!out) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->active, memory_order_acquire) != 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_mu);
}

int cpu_pool_threads(const cpu_pool *p) { return p->nthreads; }

void cpu_pool_free(cpu_pool *p) {
    if (!p) return;
    stop_threads(p);
    free(p->tids);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p);
}

int cpu_pool_default_threads(void) {
    long n = 0;
#ifdef CPU_COUNT
    /* The CPUs this process may run on (a container's cpuset), not the machine's. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > CPU_POOL_MAX_THREADS ? CPU_POOL_MAX_THREADS : (int)n;
}

int cpu_pool_threads_setting(int *threads, char *err, size_t errlen) {
    const char *v = getenv("FLEET_CPU_THREADS");
    *threads = 0;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 1 || n > CPU_POOL_MAX_THREADS)
        return fleet_err(err, errlen, "FLEET_CPU_THREADS=%s: must be an integer in [1, %d]", v,
                         CPU_POOL_MAX_THREADS);
    *threads = (int)n;
    return 0;
}
