/* cpu_pool_test: the CPU backends' thread pool (worker/embed/cpu_pool.c): every task runs
 * exactly once, never two at a time on one thread index, runs back to back and from
 * several callers complete, and an idle pool sleeps instead of spinning. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_pool.h"
#include "testlib.h"

/* ------------------------------------------------------------ a counting task ---- */

enum { MAX_TASKS = 5000, MAX_THREADS = 8 };

typedef struct counts {
    atomic_int runs[MAX_TASKS];   /* times each task ran */
    atomic_int busy[MAX_THREADS]; /* tasks running now on each thread index */
    atomic_int per_thread[MAX_THREADS];
    atomic_int overlaps;   /* a task found its thread index busy */
    atomic_int bad_thread; /* a thread index outside [0, threads) */
    int threads;
} counts;

static void count_task(void *arg, size_t task, int thread) {
    counts *c = arg;
    if (thread < 0 || thread >= c->threads) {
        atomic_fetch_add(&c->bad_thread, 1);
        return;
    }
    if (atomic_fetch_add(&c->busy[thread], 1) != 0) atomic_fetch_add(&c->overlaps, 1);
    /* A little work, so tasks overlap in time on different threads. */
    volatile unsigned x = (unsigned)task;
    for (int i = 0; i < 200; i++) x = x * 1664525u + 1013904223u;
    atomic_fetch_add(&c->runs[task], 1);
    atomic_fetch_add(&c->per_thread[thread], 1);
    atomic_fetch_sub(&c->busy[thread], 1);
}

static void check_once(cpu_pool *p, size_t ntasks, int rounds) {
    counts *c = tl_alloc(sizeof *c);
    c->threads = cpu_pool_threads(p);
    for (int r = 0; r < rounds; r++) cpu_pool_run(p, ntasks, count_task, c);
    for (size_t t = 0; t < ntasks; t++)
        if (atomic_load(&c->runs[t]) != rounds)
            FAILF("%d threads, %zu tasks: task %zu ran %d times in %d runs", c->threads, ntasks, t,
                  atomic_load(&c->runs[t]), rounds);
    for (size_t t = ntasks; t < MAX_TASKS; t++) ASSERT_EQ_INT(atomic_load(&c->runs[t]), 0);
    ASSERT_EQ_INT(atomic_load(&c->overlaps), 0);
    ASSERT_EQ_INT(atomic_load(&c->bad_thread), 0);
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(every_task_runs_exactly_once) {
    static const int threads[] = {1, 2, 3, 8};
    static const size_t ntasks[] = {0, 1, 2, 3, 7, 64, MAX_TASKS};
    for (size_t i = 0; i < TL_COUNT(threads); i++) {
        cpu_pool *p = cpu_pool_new(threads[i]);
        ASSERT_NOT_NULL(p);
        ASSERT_EQ_INT(cpu_pool_threads(p), threads[i]);
        for (size_t j = 0; j < TL_COUNT(ntasks); j++) check_once(p, ntasks[j], 3);
        cpu_pool_free(p);
    }
}

/* One pool of one runs every task on the caller, in order. */
static void record_order(void *arg, size_t task, int thread) {
    size_t *order = arg;
    order[order[0] + 1] = task + 100 * (size_t)thread;
    order[0]++;
}

TL_TEST(one_thread_runs_in_order_on_the_caller) {
    cpu_pool *p = cpu_pool_new(1);
    ASSERT_NOT_NULL(p);
    size_t order[11] = {0};
    cpu_pool_run(p, 10, record_order, order);
    ASSERT_EQ_INT(order[0], 10);
    for (size_t t = 0; t < 10; t++) ASSERT_EQ_INT(order[t + 1], t);
    cpu_pool_free(p);
}

/* Many short runs back to back: a lost wake-up or a run that returns early shows as a
 * hang (the case's time limit) or a miscount. */
TL_TEST(back_to_back_runs_complete) {
    cpu_pool *p = cpu_pool_new(4);
    ASSERT_NOT_NULL(p);
    check_once(p, 5, 5000);
    check_once(p, 2, 5000);
    cpu_pool_free(p);
}

typedef struct caller_arg {
    cpu_pool *p;
    counts *c;
} caller_arg;

static void *caller_main(void *varg) {
    caller_arg *a = varg;
    for (int r = 0; r < 500; r++) cpu_pool_run(a->p, 50, count_task, a->c);
    return NULL;
}

/* Three threads share one pool: runs are taken one at a time, each complete. */
TL_TEST(several_callers_share_a_pool) {
    cpu_pool *p = cpu_pool_new(3);
    ASSERT_NOT_NULL(p);
    pthread_t t[3];
    caller_arg a[3];
    for (int i = 0; i < 3; i++) {
        a[i].p = p;
        a[i].c = tl_alloc(sizeof *a[i].c);
        a[i].c->threads = 3;
        ASSERT_EQ_INT(pthread_create(&t[i], NULL, caller_main, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 50; k++) ASSERT_EQ_INT(atomic_load(&a[i].c->runs[k]), 500);
        ASSERT_EQ_INT(atomic_load(&a[i].c->overlaps), 0);
    }
    cpu_pool_free(p);
}

TL_TEST(bad_sizes_are_refused) {
    errno = 0;
    ASSERT_NULL(cpu_pool_new(0));
    ASSERT_EQ_INT(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cpu_pool_new(CPU_POOL_MAX_THREADS + 1));
    ASSERT_EQ_INT(errno, EINVAL);
    cpu_pool_free(NULL);
    int d = cpu_pool_default_threads();
    ASSERT_GE_INT(d, 1);
    ASSERT_LE_INT(d, CPU_POOL_MAX_THREADS);
}

/* ------------------------------------------------------------ idle threads ------- */

/* The thread ids of this process (from /proc/self/task), at most cap. */
static int list_tasks(long *tids, int cap) {
    DIR *d = opendir("/proc/self/task");
    if (!d) FAILF("/proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap)
        if (e->d_name[0] != '.') tids[n++] = strtol(e->d_name, NULL, 10);
    closedir(d);
    return n;
}

/* A thread's state letter and CPU ticks (utime + stime) from /proc/self/task/TID/stat. */
static char task_state(long tid, unsigned long long *ticks) {
    char *path = tl_printf("/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) FAILF("%s: %s", path, strerror(errno));
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* After "(comm)": state, then fields 4..13, then utime and stime (fields 14, 15). */
    char *p = strrchr(buf, ')');
    if (!p) FAILF("%s: no ')'", path);
    char state;
    unsigned long long ut, st;
    if (sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &ut, &st) !=
        3)
        FAILF("%s: cannot parse", path);
    *ticks = ut + st;
    return state;
}

typedef struct pool_tids {
    long tids[MAX_THREADS];
    int n;
} pool_tids;

static bool all_asleep(void *arg) {
    pool_tids *pt = arg;
    for (int i = 0; i < pt->n; i++) {
        unsigned long long ticks;
        if (task_state(pt->tids[i], &ticks) != 'S') return false;
    }
    return true;
}

typedef struct idle_ticks {
    pool_tids *pt;
    unsigned long long t0[MAX_THREADS];
} idle_ticks;

static bool ticks_moved(void *arg) {
    idle_ticks *it = arg;
    for (int i = 0; i < it->pt->n; i++) {
        unsigned long long t;
        task_state(it->pt->tids[i], &t);
        if (t != it->t0[i]) return true;
    }
    return false;
}

/* After a run, the pool's threads go to sleep (state S, not R) and stay there, using no
 * CPU time, until the next run; a pool that spun between batches would hold a core. */
TL_TEST(idle_threads_sleep) {
    long before[64], after[64];
    int nb = list_tasks(before, 64);
    cpu_pool *p = cpu_pool_new(4);
    ASSERT_NOT_NULL(p);
    int na = list_tasks(after, 64);
    pool_tids pt = {.n = 0};
    for (int i = 0; i < na; i++) {
        bool old = false;
        for (int j = 0; j < nb; j++) old = old || after[i] == before[j];
        if (!old && pt.n < MAX_THREADS) pt.tids[pt.n++] = after[i];
    }
    ASSERT_EQ_INT(pt.n, 3);
    check_once(p, 1000, 5);
    ASSERT_WAIT_FOR(all_asleep, &pt, 10000);
    idle_ticks it = {.pt = &pt};
    for (int i = 0; i < pt.n; i++) task_state(pt.tids[i], &it.t0[i]);
    /* Two seconds in which a spinning thread would gather about 200 ticks (USER_HZ 100):
     * none of them may gain one. */
    if (tl_wait_for(ticks_moved, &it, 2000)) FAILF("an idle pool thread used CPU time");
    for (int i = 0; i < pt.n; i++) {
        unsigned long long t1;
        ASSERT_EQ_INT(task_state(pt.tids[i], &t1), 'S');
    }
    /* And they still work afterwards. */
    check_once(p, 100, 2);
    cpu_pool_free(p);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(every_task_runs_exactly_once),
        TL_CASE(one_thread_runs_in_order_on_the_caller),
        TL_CASE(back_to_back_runs_complete),
        TL_CASE(several_callers_share_a_pool),
        TL_CASE(bad_sizes_are_refused),
        TL_CASE(idle_threads_sleep),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
