/* sick_redis_worker_test.c: a worker on a Redis that is full, evicts keys, or is busy.
 *
 *  - full under noeviction: a finish that Redis refuses (OOM) is kept and retried while
 *    the keeper renews the lease (renew is allow-oom); once Redis has room the job
 *    succeeds on its first attempt: it did not run again. A shutdown gives the result up
 *    only past its drain time;
 *  - an evicting maxmemory-policy: the worker says what to set and claims nothing until
 *    the policy is noeviction, unless FLEET_ALLOW_EVICTION=on;
 *  - a busy Redis (a script past busy-reply-threshold answers BUSY to everyone), or one
 *    that restarts and loads its dataset (LOADING): a refused finish is retried, and the
 *    job succeeds once.
 *
 * The test reads the job's hash itself (the key spelled by libfleet's keys module) where
 * the gateway is not the point, and fills Redis with a key of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fleet/keys.h"
#include "fleet/redis_health.h"
#include "testlib.h"

#define LEASE_MS 3000
#define FILLER_KEY "sick-redis-test:filler"
#define FILLER_BYTES (32L * 1024 * 1024)

/* ------------------------------------------------------------ helpers --------------- */

/* A field of the job's hash, read straight from Redis (NULL when absent). */
static const char *job_field(tl_fleet *f, const char *id, const char *field) {
    fleet_keys keys;
    if (fleet_keys_init(&keys, f->prefix) < 0) FAILF("bad prefix %s", f->prefix);
    fleet_key k = fleet_key_job(&keys, id);
    redisReply *r = tl_redis_cmd(f->rc, "HGET %s %s", k.s, field);
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

static long long job_field_ll(tl_fleet *f, const char *id, const char *field) {
    const char *v = job_field(f, id, field);
    return v ? atoll(v) : -1;
}

/* A job's attempts as the hash says it: a job never started holds no field (0, the
 * protocol's default: docs/redis.md). */
static long long job_attempts(tl_fleet *f, const char *id) {
    const char *v = job_field(f, id, "attempts");
    return v ? atoll(v) : 0;
}

typedef struct field_probe {
    tl_fleet *f;
    const char *id, *field, *want; /* want: a string value, or NULL with at_least */
    long long at_least;
} field_probe;

static bool field_is(void *arg) {
    field_probe *p = arg;
    const char *v = job_field(p->f, p->id, p->field);
    if (p->want) return v && strcmp(v, p->want) == 0;
    return v && atoll(v) >= p->at_least;
}

typedef struct log_probe {
    tl_proc *p;
    const char *needle;
} log_probe;

/* Whether the process's log holds needle (read afresh each time, freed at once: a poll
 * of a growing log every few ms must not keep every copy until the case ends). */
static bool log_has(void *arg) {
    log_probe *lp = arg;
    FILE *fp = fopen(lp->p->log_path, "rb");
    if (!fp) return false;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    if (!buf) return false;
    buf[len] = '\0';
    bool found = strstr(buf, lp->needle) != NULL;
    free(buf);
    return found;
}

static void wait_log(tl_proc *p, const char *needle) {
    log_probe lp = {.p = p, .needle = needle};
    if (!tl_wait_for(log_has, &lp, TL_WAIT_MS))
        FAILF("%s did not log \"%s\" within %d ms", p->name, needle, TL_WAIT_MS);
}

static void wait_running(tl_fleet *f, const char *id) {
    field_probe p = {.f = f, .id = id, .field = "status", .want = "running"};
    ASSERT_WAIT_FOR(field_is, &p, TL_WAIT_MS);
}

static bool redis_pongs(void *arg) {
    redisReply *r = tl_redis_cmd_allow_error(arg, "PING");
    return r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
}

/* fill_redis writes a big key and sets maxmemory just below what Redis then uses, so
 * every command that may grow memory is refused with OOM (noeviction). */
static void fill_redis(tl_fleet *f) {
    tl_redis_cmd(f->rc, "SETRANGE %s %ld x", FILLER_KEY, FILLER_BYTES - 1);
    redisReply *info = tl_redis_cmd(f->rc, "INFO memory");
    fleet_redis_memory m;
    ASSERT_EQ_INT(fleet_redis_memory_parse(info->str, info->len, &m), 0);
    ASSERT_EQ_STR(m.policy, "noeviction");
    ASSERT_GT_INT(m.used, (unsigned long long)FILLER_BYTES);
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory %llu", m.used - 1024 * 1024);
    /* Writes are refused now (the test's own connection sees it too). */
    redisReply *r = tl_redis_cmd_allow_error(f->rc, "SET sick-redis-test:probe 1");
    ASSERT_EQ_INT(r->type, REDIS_REPLY_ERROR);
    ASSERT_EQ_INT(fleet_redis_err_of(r), FLEET_REDIS_OOM);
}

/* ------------------------------------------------------------ cases ------------------ */

/* A job runs when Redis fills up: its progress and finish are refused. The worker keeps
 * the result and its lease; once Redis has room the job succeeds on attempt 1. */
TL_TEST(oom_finish_is_kept_and_retried_while_the_lease_is_renewed) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_LEASE_MS=3000",
                                                                 "FLEET_PROGRESS_INTERVAL_MS=0"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":2000,\"steps\":8}");
    wait_running(f, id);
    fill_redis(f);

    wait_log(f->workers[0], "results kept");
    /* Refused, not lost: still this attempt's, with the lease renewed past the one it had
     * when the finish was first refused (LEASE_MS: it would have expired by then). */
    ASSERT_EQ_STR(job_field(f, id, "status"), "running");
    ASSERT_EQ_INT(job_attempts(f, id), 1);
    long long lease0 = job_field_ll(f, id, "lease_until_ms");
    field_probe renewed = {
        .f = f, .id = id, .field = "lease_until_ms", .at_least = lease0 + LEASE_MS};
    ASSERT_WAIT_FOR(field_is, &renewed, TL_WAIT_MS);
    ASSERT_EQ_STR(job_field(f, id, "status"), "running");
    ASSERT_EQ_INT(job_attempts(f, id), 1);

    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 0");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    tl_redis_cmd(f->rc, "DEL %s", FILLER_KEY);
}

/* A shutdown while Redis is still full: the worker keeps the result only through its drain
 * time, then gives it up and exits cleanly; the job's lease runs out and the job runs
 * again on another worker once Redis has room (at-least-once: never lost). */
TL_TEST(oom_result_given_up_only_past_the_drain_time) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_LEASE_MS=3000",
                                                                 "FLEET_PROGRESS_INTERVAL_MS=0"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":500,\"steps\":2}");
    wait_running(f, id);
    fill_redis(f);
    wait_log(f->workers[0], "results kept");

    int st = tl_proc_stop(f->workers[0], 10000);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ_INT(WEXITSTATUS(st), 0);
    wait_log(f->workers[0], "result not written before shutdown");
    ASSERT_EQ_STR(job_field(f, id, "status"), "running");
    ASSERT_EQ_INT(job_attempts(f, id), 1);

    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 0");
    tl_fleet_add_worker(f, "sleep");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
}

/* While Redis is full a worker claims nothing: a job submitted before it filled up stays
 * queued (no attempt used) until there is room. */
TL_TEST(full_redis_claims_nothing_until_it_has_room) {
    tl_fleet *f = tl_fleet_start(NULL);
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":0}");
    fill_redis(f);
    tl_proc *wk = tl_fleet_add_worker(f, "sleep");
    wait_log(wk, "redis is full");
    ASSERT_EQ_STR(job_field(f, id, "status"), "queued");
    ASSERT_EQ_INT(job_attempts(f, id), 0);
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 0");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

/* allkeys-lru would delete queued jobs of a full Redis: the worker says what to set and
 * takes nothing until the policy is noeviction. */
TL_TEST(evicting_policy_holds_claims_until_noeviction) {
    /* The gateway is told to accept the policy: this case is about the worker. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_ALLOW_EVICTION=on"}});
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory-policy allkeys-lru");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":0}");
    tl_proc *wk = tl_fleet_add_worker(f, "sleep");
    wait_log(wk, "set maxmemory-policy noeviction");
    ASSERT_EQ_STR(job_field(f, id, "status"), "queued");
    ASSERT_EQ_INT(job_attempts(f, id), 0);

    tl_redis_cmd(f->rc, "CONFIG SET maxmemory-policy noeviction");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

/* With FLEET_ALLOW_EVICTION=on the operator accepts the risk: the worker warns and runs. */
TL_TEST(allow_eviction_runs_at_once) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_ALLOW_EVICTION=on"},
                                                  .worker_env = {"FLEET_ALLOW_EVICTION=on"}});
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory-policy volatile-lru");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":0}");
    tl_proc *wk = tl_fleet_add_worker(f, "sleep");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    wait_log(wk, "FLEET_ALLOW_EVICTION=on");
}

/* A script past busy-reply-threshold makes Redis answer BUSY to every other command. A
 * job that ends then has its finish refused: it is retried once the script is killed,
 * and the job succeeds on its first attempt. */
TL_TEST(busy_redis_finish_is_retried) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_LEASE_MS=3000",
                                                                 "FLEET_PROGRESS_INTERVAL_MS=0"}});
    tl_redis_cmd(f->rc, "CONFIG SET busy-reply-threshold 50");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":1500,\"steps\":3}");
    wait_running(f, id);

    /* The endless script runs on a connection of its own, which waits for it. */
    redisContext *busy = tl_redis_connect(f->redis);
    if (redisAppendCommand(busy, "EVAL %s 0", "while true do end") != REDIS_OK)
        FAILF("cannot queue EVAL: %s", busy->errstr);
    int done = 0;
    while (!done)
        if (redisBufferWrite(busy, &done) != REDIS_OK) FAILF("cannot send EVAL: %s", busy->errstr);

    wait_log(f->workers[0], "results kept");
    /* SCRIPT KILL is one of the few commands a busy Redis serves. */
    redisReply *k = tl_redis_cmd_allow_error(f->rc, "SCRIPT KILL");
    if (k->type == REDIS_REPLY_ERROR) FAILF("SCRIPT KILL: %s", k->str);
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

/* Redis restarts on a dataset that takes seconds to load, while a job runs: every command
 * is refused with LOADING until it is loaded. The job's finish is retried until Redis
 * takes it, and the job succeeds on its first attempt (its lease, 10 s, outlasts the
 * load). */
TL_TEST(loading_redis_finish_is_retried) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_LEASE_MS=10000",
                                                                 "FLEET_PROGRESS_INTERVAL_MS=0"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\":1500,\"steps\":3}");
    wait_running(f, id);

    /* 20,000 keys with --key-load-delay 100: a load of about 3 s. */
    tl_redis_restart_loading(f->redis, f->rc, 20000);
    wait_log(f->workers[0], "results kept");
    /* The job is read from Redis itself, on a connection to the restarted server, once it
     * has loaded: the gateway's readiness is not this test's point. */
    f->rc = tl_redis_connect(f->redis);
    ASSERT_WAIT_FOR(redis_pongs, f->rc, TL_WAIT_MS);
    field_probe done = {.f = f, .id = id, .field = "status", .want = "succeeded"};
    ASSERT_WAIT_FOR(field_is, &done, TL_WAIT_MS);
    ASSERT_EQ_INT(job_attempts(f, id), 1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(oom_finish_is_kept_and_retried_while_the_lease_is_renewed),
        TL_CASE(oom_result_given_up_only_past_the_drain_time),
        TL_CASE(full_redis_claims_nothing_until_it_has_room),
        TL_CASE(evicting_policy_holds_claims_until_noeviction),
        TL_CASE(allow_eviction_runs_at_once),
        TL_CASE(busy_redis_finish_is_retried),
        TL_CASE(loading_redis_finish_is_retried),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
