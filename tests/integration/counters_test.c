/* counters_test.c: the job counters of {prefix}:stats always add up (docs/redis.md, "The
 * counters"): per model, submitted = queued + running + succeeded + failed + cancelled +
 * expired, and no counter is ever below 0, whatever order submits, cancels (queued and
 * running), expiry (queued on the stream, in a wait set, in the delayed set, running,
 * finished), retryable and permanent model errors, worker crashes (dead letters after
 * max_attempts) and dead-letter retries happen in.
 *
 * A property test: each case runs a seeded random sequence of operations against a real
 * Redis, gateway and workers, and after each one (and while the system settles at the
 * end) reads the whole hash with one HGETALL, so the sum is checked at moments when
 * workers and the gateway are in the middle of their work: every script must keep it
 * balanced itself. A failure prints the seed and the operation log.
 *
 *     COUNTERS_SEED=1234 build/tests/it_counters_test     # every case runs that seed
 *     COUNTERS_OPS=2000 build/tests/it_counters_test seed_1 # longer sequences
 *
 * Expiry is real Redis expiry: the test cuts the TTL of a job's keys to a few ms (the
 * queue TTL and ttl_s cannot go below 60 s), as if the job's queue TTL or ttl_s ran out
 * at that moment, and leaves everything else to the fleet. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_JOBS 1024
#define SETTLE_MS 45000
#define MAX_CRASH_JOBS 3 /* each kills up to max_attempts (2) workers */

/* The job counters (states) and the event counters of docs/redis.md. */
static const char *const states[] = {"queued", "running",   "succeeded",
                                     "failed", "cancelled", "expired"};
static const char *const events[] = {"retried", "handed_back", "reclaimed", "dead_lettered",
                                     "dlq_retried"};
#define NSTATES (sizeof states / sizeof *states)
#define NEVENTS (sizeof events / sizeof *events)

typedef struct model_counts {
    char model[32];
    long long submitted, state[NSTATES], event[NEVENTS];
} model_counts;

typedef struct run {
    tl_fleet *f;
    uint64_t rng;
    unsigned long long seed;
    const char *ids[MAX_JOBS];
    const char *models[MAX_JOBS];
    int njobs;
    long long submitted_echo, submitted_sleep;
    tl_proc *sleepers[TL_MAX_WORKERS];
    int nsleepers;
    int crash_jobs;
    int expired_in[4]; /* expiry ops by the job's status then: queued, running, final, gone */
    long checks;
    char *log; /* the operation log, printed on a failure */
    size_t loglen, logcap;
    int op;
} run;

static unsigned long long next_rand(run *r) { return tl_rand64(&r->rng); }

static int pick(run *r, int n) { return (int)(next_rand(r) % (unsigned long long)n); }

static void logf_op(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_op(run *r, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (r->loglen + len + 32 > r->logcap) {
        r->logcap = (r->logcap + len + 32) * 2;
        char *grown = tl_alloc(r->logcap);
        if (r->loglen) memcpy(grown, r->log, r->loglen);
        r->log = grown;
    }
    r->loglen += (size_t)snprintf(r->log + r->loglen, r->logcap - r->loglen, "%4d %.*s\n", r->op,
                                  (int)len, line);
}

static void fail_run(run *r, const char *what, const redisReply *stats) {
    printf("    counters_test: seed %llu, %d operations, %ld checks; operation log:\n%s", r->seed,
           r->op, r->checks, r->log ? r->log : "");
    if (stats)
        for (size_t i = 0; i + 1 < stats->elements; i += 2)
            printf("    stats %s = %s\n", stats->element[i]->str, stats->element[i + 1]->str);
    fflush(stdout);
    FAILF("seed %llu: %s", r->seed, what);
}

static model_counts *counts_of(model_counts *m, int *n, const char *model) {
    for (int i = 0; i < *n; i++)
        if (strcmp(m[i].model, model) == 0) return &m[i];
    if (*n == 8) return NULL;
    model_counts *c = &m[(*n)++];
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "%s", model);
    return c;
}

/* Reads the whole stats hash at once (one HGETALL: one moment) and checks, per model,
 * submitted = the sum of the states and that no counter is below 0. Returns the counts
 * of model (zeros when it has none yet). */
static model_counts check(run *r, const char *want_model) {
    redisReply *st = tl_redis_cmd(r->f->rc, "HGETALL {%s}:stats", r->f->prefix);
    model_counts m[8];
    int n = 0;
    r->checks++;
    for (size_t i = 0; i + 1 < st->elements; i += 2) {
        const char *field = st->element[i]->str;
        const char *colon = strrchr(field, ':');
        if (!colon) continue;
        char model[32];
        snprintf(model, sizeof model, "%.*s", (int)(colon - field), field);
        model_counts *c = counts_of(m, &n, model);
        if (!c) fail_run(r, "more models in the stats hash than were used", st);
        long long v = atoll(st->element[i + 1]->str);
        if (v < 0) fail_run(r, tl_printf("counter %s is %lld, below 0", field, v), st);
        const char *name = colon + 1;
        if (strcmp(name, "submitted") == 0) c->submitted = v;
        for (size_t j = 0; j < NSTATES; j++)
            if (strcmp(name, states[j]) == 0) c->state[j] = v;
        for (size_t j = 0; j < NEVENTS; j++)
            if (strcmp(name, events[j]) == 0) c->event[j] = v;
    }
    model_counts out;
    memset(&out, 0, sizeof out);
    for (int i = 0; i < n; i++) {
        long long sum = 0;
        for (size_t j = 0; j < NSTATES; j++) sum += m[i].state[j];
        if (sum != m[i].submitted)
            fail_run(r,
                     tl_printf("model %s: submitted %lld but queued + running + succeeded + "
                               "failed + cancelled + expired = %lld",
                               m[i].model, m[i].submitted, sum),
                     st);
        if (strcmp(m[i].model, want_model) == 0) out = m[i];
    }
    return out;
}

/* Lets about ms pass (on purpose: jobs run, expire and are cancelled meanwhile), checking
 * the counters every few ms. */
static void pause_checking(run *r, int ms) {
    int64_t end = tl_now_ms() + ms;
    do {
        check(r, "sleep");
        usleep(5 * 1000);
    } while (tl_now_ms() < end);
}

static tl_proc *add_sleeper(run *r) {
    tl_proc *w = tl_fleet_add_worker(r->f, "sleep");
    /* A crash job kills its worker with SIGKILL, like an out-of-memory kill: expected.
     * Any other death (a sanitizer abort) still fails the case. */
    tl_proc_expect_kill9(w);
    r->sleepers[r->nsleepers++] = w;
    return w;
}

/* Replaces the sleep workers that a crash job killed. */
static void replace_dead_workers(run *r) {
    for (int i = 0; i < r->nsleepers; i++) {
        tl_proc *w = r->sleepers[i];
        if (!w || tl_proc_alive(w)) continue;
        if (!(WIFSIGNALED(w->status) && WTERMSIG(w->status) == SIGKILL))
            fail_run(r, tl_printf("worker %s died: %s", w->name, tl_proc_describe(w)), NULL);
        r->sleepers[i] = NULL;
        if (r->f->nworkers >= TL_MAX_WORKERS - 1) fail_run(r, "too many workers started", NULL);
        logf_op(r, "worker %s was killed by a crash job: starting another", w->name);
        add_sleeper(r);
    }
}

static void submit(run *r, const char *model, const char *input, const char *what) {
    static const char *const prios[] = {"high", "normal", "low"};
    if (r->njobs == MAX_JOBS) return;
    tl_resp *resp = tl_post(r->f, "/v1/jobs",
                            tl_printf("{\"model\": \"%s\", \"input\": %s, \"priority\": \"%s\"}",
                                      model, input, prios[pick(r, 3)]));
    if (resp->status != 202)
        fail_run(r, tl_printf("submit answered %ld: %s", resp->status, resp->body), NULL);
    const char *id = tl_jstr(resp->json, "id");
    r->ids[r->njobs] = id;
    r->models[r->njobs] = model;
    r->njobs++;
    if (strcmp(model, "echo") == 0) r->submitted_echo++;
    else r->submitted_sleep++;
    logf_op(r, "submit %s %s (%s)", model, id, what);
}

static void op_cancel(run *r) {
    if (!r->njobs) return;
    int i = pick(r, r->njobs);
    tl_resp *resp = tl_delete(r->f, tl_printf("/v1/jobs/%s", r->ids[i]));
    logf_op(r, "cancel %s: %ld", r->ids[i], resp->status);
    if (resp->status != 200 && resp->status != 202 && resp->status != 404 && resp->status != 409)
        fail_run(r, tl_printf("cancel answered %ld: %s", resp->status, resp->body), NULL);
}

/* The job's keys expire in 1-100 ms, whatever state it is in. */
static void op_expire(run *r) {
    if (!r->njobs) return;
    int i = pick(r, r->njobs);
    const char *id = r->ids[i];
    int ms = 1 + pick(r, 100);
    redisReply *st = tl_redis_cmd(r->f->rc, "HGET {%s}:job:%s status", r->f->prefix, id);
    tl_redis_cmd(r->f->rc, "PEXPIRE {%s}:job:%s %d", r->f->prefix, id, ms);
    tl_redis_cmd(r->f->rc, "PEXPIRE {%s}:job:%s:result %d", r->f->prefix, id, ms);
    const char *was = st->type == REDIS_REPLY_STRING ? st->str : "gone";
    logf_op(r, "expire %s in %d ms (it was %s)", id, ms, was);
    r->expired_in[strcmp(was, "queued") == 0    ? 0
                  : strcmp(was, "running") == 0 ? 1
                  : strcmp(was, "gone") == 0    ? 3
                                                : 2]++;
}

static void op_dlq_retry(run *r) {
    if (tl_redis_int(r->f->rc, "XLEN {%s}:dlq", r->f->prefix) == 0) return;
    tl_cmd_result res = tl_fleetctl(TL_ARGS("--redis-url", r->f->redis->url, "--prefix",
                                            r->f->prefix),
                                    TL_ARGS("dlq", "retry", "--all"));
    logf_op(r, "fleetctl dlq retry --all: exit %d", res.exit_code);
    if (res.exit_code < 0) fail_run(r, "fleetctl dlq retry was killed", NULL);
}

static void op_wait(run *r) {
    int ms = 30 + pick(r, 120);
    logf_op(r, "wait %d ms", ms);
    pause_checking(r, ms);
}

static void one_op(run *r) {
    int roll = pick(r, 100);
    if (roll < 22) submit(r, "sleep", tl_printf("{\"ms\": %d}", 5 + pick(r, 60)), "succeeds");
    else if (roll < 28) submit(r, "sleep", "{\"ms\": 800}", "long");
    else if (roll < 34) submit(r, "sleep", "{\"ms\": 5, \"fail\": \"bad page\"}", "fails");
    else if (roll < 40)
        submit(r, "sleep", "{\"ms\": 5, \"fail\": \"GPU busy\", \"retryable\": true}",
               "retryable, dead-lettered");
    else if (roll < 44)
        submit(r, "sleep",
               "{\"ms\": 5, \"fail\": \"GPU busy\", \"retryable\": true, \"fail_attempts\": 1}",
               "retryable once");
    else if (roll < 46 && r->crash_jobs < MAX_CRASH_JOBS) {
        r->crash_jobs++;
        submit(r, "sleep", "{\"ms\": 5, \"crash\": true}", "crashes its worker");
    } else if (roll < 50) submit(r, "echo", "{\"n\": 1}", "echo");
    else if (roll < 68) op_cancel(r);
    else if (roll < 84) op_expire(r);
    else if (roll < 88) op_dlq_retry(r);
    else op_wait(r);
}

static bool settled(run *r) {
    model_counts s = check(r, "sleep"), e = check(r, "echo");
    return s.state[0] == 0 && s.state[1] == 0 && e.state[0] == 0 && e.state[1] == 0;
}

static void run_seed(unsigned long long seed) {
    const char *env_seed = getenv("COUNTERS_SEED");
    const char *env_ops = getenv("COUNTERS_OPS");
    if (env_seed && *env_seed) seed = strtoull(env_seed, NULL, 10);
    int ops = env_ops && *env_ops ? atoi(env_ops) : 160;
    tl_log("seed %llu, %d operations (COUNTERS_SEED=%llu reruns this sequence)", seed, ops, seed);

    run *r = tl_alloc(sizeof *r);
    r->seed = seed;
    r->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    r->f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"},
        .gateway_env = {"FLEET_MAX_ATTEMPTS=2", "FLEET_READY_TARGET=2"},
        .worker_env = {"FLEET_LEASE_MS=1000", "FLEET_RETRY_BASE_MS=50", "FLEET_RETRY_MAX_MS=200",
                       "FLEET_MAX_BATCH=2", "FLEET_READY_TARGET=2",
                       "FLEET_PROGRESS_INTERVAL_MS=50"}});
    add_sleeper(r);
    add_sleeper(r);

    int64_t start = tl_now_ms();
    for (r->op = 1; r->op <= ops; r->op++) {
        one_op(r);
        check(r, "sleep");
        replace_dead_workers(r);
        pause_checking(r, pick(r, 8));
    }

    /* Settle: every job ends or expires; the counters of what is in flight reach 0. */
    int64_t ops_ms = tl_now_ms() - start;
    r->op = ops + 1;
    logf_op(r, "settling");
    int64_t end = tl_now_ms() + SETTLE_MS;
    while (!settled(r) && tl_now_ms() < end) {
        replace_dead_workers(r);
        pause_checking(r, 20);
    }
    if (!settled(r)) fail_run(r, "queued or running did not come back to 0", NULL);
    model_counts s = check(r, "sleep"), e = check(r, "echo");
    if (s.submitted != r->submitted_sleep || e.submitted != r->submitted_echo)
        fail_run(r,
                 tl_printf("submitted sleep %lld echo %lld, but the test submitted %lld and %lld",
                           s.submitted, e.submitted, r->submitted_sleep, r->submitted_echo),
                 NULL);
    /* Nothing is left behind for a job that ended or expired: every reference was
     * consumed (and counted) exactly once. */
    const char *p = r->f->prefix;
    if (tl_redis_int(r->f->rc, "XLEN {%s}:stream:sleep", p) != 0 ||
        tl_redis_int(r->f->rc, "HLEN {%s}:entries:sleep", p) != 0 ||
        tl_redis_int(r->f->rc, "ZCARD {%s}:delayed:sleep", p) != 0)
        fail_run(r, "stream entries or delayed ids left once everything ended", NULL);
    tl_log("seed %llu: operations %lld ms, settling %lld ms", seed, (long long)ops_ms,
           (long long)(tl_now_ms() - start - ops_ms));
    tl_log("seed %llu: %d jobs, %ld checks; expiry cut while queued %d, running %d, final %d; "
           "sleep: succeeded %lld failed %lld cancelled %lld expired %lld, retried %lld "
           "reclaimed %lld dead_lettered %lld dlq_retried %lld",
           seed, r->njobs, r->checks, r->expired_in[0], r->expired_in[1], r->expired_in[2],
           s.state[2], s.state[3], s.state[4], s.state[5], s.event[0], s.event[2], s.event[3],
           s.event[4]);
}

/* The counters cannot go below 0; if one ever did, GET /v1/stats and fleetctl stats show
 * it as stored instead of hiding it as 0 (written by hand here). */
TL_TEST(stats_show_a_negative_counter_as_it_is) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_redis_cmd(f->rc, "HSET {%s}:stats sleep:queued -1234567", f->prefix);
    json_t *doc = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(doc, "models.sleep.queued"), -1234567);
    ASSERT_EQ_INT(tl_jint(doc, "totals.queued"), -1234567);
    tl_cmd_result t = tl_fleetctl(TL_ARGS("--url", f->url), TL_ARGS("stats"));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.out, " -1234567");
    /* The column is as wide as the number with its sign: the header lines up. */
    const char *nl = strchr(t.out, '\n');
    ASSERT_NOT_NULL(nl);
    const char *row = strstr(t.out, "\nsleep");
    ASSERT_NOT_NULL(row);
    const char *row_end = strchr(row + 1, '\n');
    ASSERT_EQ_INT(row_end ? row_end - row - 1 : (long)strlen(row + 1), nl - t.out);
}

TL_TEST(counters_add_up_seed_1) { run_seed(1); }
TL_TEST(counters_add_up_seed_2) { run_seed(2); }
TL_TEST(counters_add_up_seed_3) { run_seed(3); }

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(stats_show_a_negative_counter_as_it_is),
        TL_CASE(counters_add_up_seed_1),
        TL_CASE(counters_add_up_seed_2),
        TL_CASE(counters_add_up_seed_3),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
