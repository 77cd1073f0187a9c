/* outage_test.c: Redis goes away and comes back. With the shipped AOF config (appendfsync
 * everysec) a crash of the Redis process (kill -9) loses no accepted job; while Redis is down or hangs, the gateway answers 503 at once
 * (never hangs) and /readyz says so; the gateway and the workers reconnect by themselves,
 * and a worker recreates its consumer group on a Redis that lost everything. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

#define CLIENT_TIMEOUT_MS 3000 /* a request without an answer by then "hangs" */

/* ------------------------------------------------------------ helpers --------------- */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s ? s : 0x9e3779b97f4a7c15ULL; }
static int rng_range(int lo, int hi) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return lo + (int)((rng_state * 2685821657736338717ULL) % (uint64_t)(hi - lo + 1));
}

/* One request with a short client timeout; a transport error (a timeout above all) fails
 * the case as a hang. */
static tl_resp *request_or_hang(tl_fleet *f, const char *method, const char *path, const char *body,
                                long long *ms) {
    char err[1024];
    tl_req req = {.method = method,
                  .url = tl_printf("%s%s", f->url, path),
                  .body = body,
                  .timeout_ms = CLIENT_TIMEOUT_MS};
    int64_t t0 = tl_now_ms();
    tl_resp *r = tl_http_try(&req, err, sizeof(err));
    if (ms) *ms = tl_now_ms() - t0;
    if (!r)
        FAILF("%s %s hung or failed (client timeout %d ms): %s", method, path, CLIENT_TIMEOUT_MS,
              err);
    return r;
}

typedef struct ready_probe {
    tl_fleet *f;
    long want;
    long last;
} ready_probe;

static bool readyz_is(void *arg) {
    ready_probe *p = arg;
    p->last = request_or_hang(p->f, "GET", "/readyz", NULL, NULL)->status;
    return p->last == p->want;
}

static void wait_readyz(tl_fleet *f, long want, int deadline_ms) {
    ready_probe p = {.f = f, .want = want};
    if (!tl_wait_for(readyz_is, &p, deadline_ms))
        FAILF("GET /readyz did not answer %ld within %d ms (last: %ld)", want, deadline_ms, p.last);
}

static const char *submit_body(const char *model, const char *input) {
    return tl_printf("{\"model\":\"%s\",\"input\":%s}", model, input);
}

/* A 503 that tells the client to come back: Retry-After and a problem+json body. */
static void assert_unavailable(const tl_resp *r) {
    ASSERT_PROBLEM(r, 503);
    const char *ra = tl_resp_header(r, "Retry-After");
    ASSERT_NOT_NULL(ra);
    ASSERT_GE_INT(atoi(ra), 1);
}

typedef struct jobs_watch {
    tl_fleet *f;
    const char **ids;
    bool *done;
    size_t n, ndone;
    const char *bad; /* a job that ended other than succeeded */
} jobs_watch;

/* Polls the jobs not yet seen succeeded (through the gateway, which may still answer 503
 * while it reconnects). */
static bool jobs_all_succeeded(void *arg) {
    jobs_watch *w = arg;
    for (size_t i = 0; i < w->n; i++) {
        if (w->done[i]) continue;
        char err[512];
        tl_req req = {.url = tl_printf("%s/v1/jobs/%s", w->f->url, w->ids[i]),
                      .timeout_ms = CLIENT_TIMEOUT_MS};
        tl_resp *r = tl_http_try(&req, err, sizeof(err));
        if (!r) FAILF("GET /v1/jobs/%s hung or failed: %s", w->ids[i], err);
        if (r->status == 503) return false; /* not reconnected yet */
        if (r->status != 200)
            FAILF("GET /v1/jobs/%s answered %ld: %s (an accepted job was lost?)", w->ids[i],
                  r->status, r->body);
        const char *st = tl_jstr(r->json, "status");
        if (st && strcmp(st, "succeeded") == 0) {
            w->done[i] = true;
            w->ndone++;
        } else if (tl_status_is_final(st)) {
            w->bad = tl_printf("%s", r->body);
            return true;
        }
    }
    return w->ndone == w->n;
}

typedef struct stat_watch {
    tl_fleet *f;
    const char *model, *counter;
    long long want;
} stat_watch;

static bool stat_reached(void *arg) {
    stat_watch *w = arg;
    return tl_stat(w->f, w->model, w->counter) >= w->want;
}

/* ------------------------------------------------------------ cases ----------------- */

#define AOF_JOBS 200
#define AOF_AFTER 20
#define RECOVER_MS 40000 /* inside the harness' 60 s per case */

TL_TEST(redis_restart_with_aof_loses_no_accepted_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.appendonly = true,
                                                  .worker_env = {"FLEET_LEASE_MS=2000"}});
    uint64_t seed = (uint64_t)time(NULL);
    rng_seed(seed);
    tl_log("seed %llu", (unsigned long long)seed);

    /* The jobs are queued before the workers start, so that the crash comes while most of
     * them are still queued or running. */
    const char **ids = tl_alloc(AOF_JOBS * sizeof *ids);
    for (int i = 0; i < AOF_JOBS; i++)
        ids[i] = tl_job_submit(f, "sleep", tl_printf("{\"ms\": %d}", rng_range(20, 60)));
    for (int i = 0; i < 2; i++) tl_fleet_add_worker(f, "sleep");
    stat_watch sw = {.f = f, .model = "sleep", .counter = "succeeded", .want = 20};
    ASSERT_WAIT_FOR(stat_reached, &sw, TL_WAIT_MS);

    long long done_at_crash = tl_stat(f, "sleep", "succeeded");

    /* The crash: kill -9, no shutdown, then the same Redis again on its AOF. */
    tl_redis_kill9(f->redis);
    int64_t t_crash = tl_now_ms();
    tl_redis_restart(f->redis);
    int64_t t_up = tl_now_ms();
    tl_log("redis killed with %lld of %d jobs succeeded; up again after %lld ms", done_at_crash,
           AOF_JOBS, (long long)(t_up - t_crash));
    f->rc = tl_redis_connect(f->redis); /* the old connection died with the server */

    jobs_watch w = {.f = f, .ids = ids, .done = tl_alloc(AOF_JOBS * sizeof(bool)), .n = AOF_JOBS};
    if (!tl_wait_for(jobs_all_succeeded, &w, RECOVER_MS))
        FAILF("%zu of %d jobs accepted before the crash succeeded within %d ms of the restart",
              w.ndone, AOF_JOBS, RECOVER_MS);
    if (w.bad) FAILF("a job accepted before the crash did not succeed: %s", w.bad);
    int64_t t_all = tl_now_ms();

    /* After the restart: new jobs go through as before. */
    const char **more = tl_alloc(AOF_AFTER * sizeof *more);
    for (int i = 0; i < AOF_AFTER; i++)
        more[i] = tl_job_submit(f, "sleep", tl_printf("{\"ms\": %d}", rng_range(20, 60)));
    jobs_watch w2 = {
        .f = f, .ids = more, .done = tl_alloc(AOF_AFTER * sizeof(bool)), .n = AOF_AFTER};
    if (!tl_wait_for(jobs_all_succeeded, &w2, TL_WAIT_MS))
        FAILF("%zu of %d jobs submitted after the restart succeeded within %d ms", w2.ndone,
              AOF_AFTER, TL_WAIT_MS);
    if (w2.bad) FAILF("a job submitted after the restart did not succeed: %s", w2.bad);

    long long attempts_max = 0, retried = 0;
    for (int i = 0; i < AOF_JOBS; i++) {
        long long a = tl_jint(tl_job_get(f, ids[i]), "attempts");
        if (a > attempts_max) attempts_max = a;
        if (a > 1) retried++;
    }
    long long reclaimed = tl_jint(tl_get(f, "/v1/stats")->json, "models.sleep.reclaimed");
    long long succeeded = tl_jint(tl_get(f, "/v1/stats")->json, "models.sleep.succeeded");
    tl_log("figures: %d jobs before + %d after the crash; %lld succeeded at the crash; redis "
           "back in %lld ms; all %d succeeded %lld ms after the restart; jobs run more than "
           "once %lld, max attempts %lld, reclaimed %lld, stats succeeded %lld",
           AOF_JOBS, AOF_AFTER, done_at_crash, (long long)(t_up - t_crash), AOF_JOBS,
           (long long)(t_all - t_up), retried, attempts_max, reclaimed, succeeded);
    ASSERT_EQ_INT(succeeded, AOF_JOBS + AOF_AFTER);
}

TL_TEST(redis_down_answers_503_fast_and_recovers) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_REDIS_TIMEOUT_MS=500"}});
    const char *first = tl_job_submit(f, "echo", "{\"before\": true}");
    tl_job_wait_status(f, first, "succeeded", TL_WAIT_MS);

    /* Redis is down (refused connections). */
    tl_redis_stop(f->redis);
    wait_readyz(f, 503, 10000);
    long long ms;
    tl_resp *r = request_or_hang(f, "POST", "/v1/jobs", submit_body("echo", "{\"down\": 1}"), &ms);
    assert_unavailable(r);
    tl_log("redis down: POST /v1/jobs answered %ld in %lld ms", r->status, ms);
    r = request_or_hang(f, "GET", tl_printf("/v1/jobs/%s", first), NULL, &ms);
    assert_unavailable(r);
    tl_log("redis down: GET /v1/jobs/{id} answered %ld in %lld ms", r->status, ms);
    ASSERT_HTTP_STATUS(request_or_hang(f, "GET", "/healthz", NULL, NULL), 200);

    /* Back (empty: no AOF). */
    tl_redis_restart(f->redis);
    int64_t t_up = tl_now_ms();
    wait_readyz(f, 200, 15000);
    tl_log("redis back: /readyz 200 after %lld ms", (long long)(tl_now_ms() - t_up));
    f->rc = tl_redis_connect(f->redis);

    /* Redis hangs: it accepts connections and commands but answers nothing. */
    pid_t rpid = f->redis->proc->pid;
    if (kill(rpid, SIGSTOP) != 0) FAILF("SIGSTOP redis: %s", strerror(errno));
    r = request_or_hang(f, "POST", "/v1/jobs", submit_body("echo", "{\"hung\": 1}"), &ms);
    tl_log("redis hung: POST /v1/jobs answered %ld in %lld ms", r->status, ms);
    if (r->status != 503) kill(rpid, SIGCONT);
    assert_unavailable(r);
    r = request_or_hang(f, "GET", "/readyz", NULL, &ms);
    tl_log("redis hung: GET /readyz answered %ld in %lld ms", r->status, ms);
    if (r->status != 503) kill(rpid, SIGCONT);
    ASSERT_HTTP_STATUS(r, 503);
    r = request_or_hang(f, "POST", "/v1/jobs", submit_body("echo", "{\"hung\": 2}"), &ms);
    tl_log("redis hung: a second POST /v1/jobs answered %ld in %lld ms", r->status, ms);
    if (r->status != 503) kill(rpid, SIGCONT);
    assert_unavailable(r);

    if (kill(rpid, SIGCONT) != 0) FAILF("SIGCONT redis: %s", strerror(errno));
    int64_t t_cont = tl_now_ms();
    wait_readyz(f, 200, 15000);
    tl_log("redis resumed: /readyz 200 after %lld ms", (long long)(tl_now_ms() - t_cont));
    const char *after = tl_job_submit(f, "echo", "{\"after\": true}");
    json_t *job = tl_job_wait_status(f, after, "succeeded", TL_WAIT_MS);
    tl_log("redis resumed: a job succeeded %lld ms after SIGCONT (attempts %lld)",
           (long long)(tl_now_ms() - t_cont), tl_jint(job, "attempts"));
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", after));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_JSON(res->json, tl_json("{\"after\": true}"));
    /* Not asserted: the submit that Redis received just before it hung is still in its
     * socket buffer, and a resumed Redis may run it although the client got a 503 (a 503
     * means "unknown", not "not done"). */
    tl_log("jobs Redis counts as submitted since its restart: %lld (the hung submit %s)",
           tl_stat(f, "echo", "submitted"),
           tl_stat(f, "echo", "submitted") > 1 ? "ran after the resume" : "did not run");
}

typedef struct group_watch {
    tl_fleet *f;
    const char *stream;
} group_watch;

/* The stream exists and has the consumer group "workers". */
static bool group_exists(void *arg) {
    group_watch *w = arg;
    redisReply *r = tl_redis_cmd_allow_error(w->f->rc, "XINFO GROUPS %s", w->stream);
    if (r->type != REDIS_REPLY_ARRAY) return false; /* ERR no such key */
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *g = r->element[i];
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2)
            if (g->element[k]->type == REDIS_REPLY_STRING &&
                strcmp(g->element[k]->str, "name") == 0 &&
                g->element[k + 1]->type == REDIS_REPLY_STRING &&
                strcmp(g->element[k + 1]->str, "workers") == 0)
                return true;
    }
    return false;
}

TL_TEST(worker_survives_redis_restart) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *before = tl_job_submit(f, "sleep", "{\"ms\": 10}");
    tl_job_wait_status(f, before, "succeeded", TL_WAIT_MS);

    /* No AOF: the restarted Redis is empty, without the stream and its consumer group. */
    tl_redis_restart(f->redis);
    int64_t t_up = tl_now_ms();
    f->rc = tl_redis_connect(f->redis);
    group_watch gw = {.f = f, .stream = tl_printf("{%s}:stream:sleep", f->prefix)};
    /* Nothing but the worker creates the group: it must do so on its own. */
    ASSERT_WAIT_FOR(group_exists, &gw, 20000);
    tl_log("the worker recreated its consumer group %lld ms after the restart",
           (long long)(tl_now_ms() - t_up));
    wait_readyz(f, 200, 15000);

    const char *after = tl_job_submit(f, "sleep", "{\"ms\": 10}");
    json_t *job = tl_job_wait_status(f, after, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    tl_log("a job submitted after the restart succeeded %lld ms after it",
           (long long)(tl_now_ms() - t_up));
    /* The job from before the restart is gone with the data (no AOF): 404, not 5xx. */
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", before)), 404);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(redis_restart_with_aof_loses_no_accepted_job),
        TL_CASE(redis_down_answers_503_fast_and_recovers),
        TL_CASE(worker_survives_redis_restart),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
