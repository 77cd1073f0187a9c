/* ttl_test.c: "Nothing grows without bound: every job key has a TTL" (docs/reliability.md),
 * checked on the real keys (docs/redis.md) in every state of a job, and the keys without a TTL are
 * only the few shared ones bounded by the number of models, tenants and workers. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

/* Asserts that at least one key holds id, that each has a TTL in (0, max_ttl] (the hash
 * of its tombstone, {prefix}:gone:<the id's first 7 characters>, outlives the others by the
 * default FLEET_TOMBSTONE_S, 86400 s: docs/api.md, "Expired jobs"), and that every key of
 * the database starts with the fleet's "{prefix}" hash tag. Returns the number of the
 * job's keys, its tombstone's hash not counted. */
static size_t check_job_keys(tl_fleet *f, const char *id, long long max_ttl, const char *when) {
    tl_strlist keys = tl_redis_keys(f->rc, "*");
    const char *tag = tl_printf("{%s}", f->prefix);
    size_t n = 0;
    for (size_t i = 0; i < keys.n; i++) {
        const char *k = keys.v[i];
        if (strncmp(k, tag, strlen(tag)) != 0)
            FAILF("%s: key %s does not start with the prefix tag %s", when, k, tag);
        bool tomb = strcmp(k, tl_printf("%s:gone:%.7s", tag, id)) == 0;
        if (!tomb && !strstr(k, id)) continue;
        if (!tomb) n++;
        long long ttl = tl_redis_int(f->rc, "TTL %s", k);
        long long most = tomb ? max_ttl + 86400 : max_ttl;
        tl_log("%s: %s TTL %lld", when, k, ttl);
        if (ttl <= 0) FAILF("%s: key %s has TTL %lld (expected > 0)", when, k, ttl);
        if (ttl > most)
            FAILF("%s: key %s has TTL %lld (expected at most %lld)", when, k, ttl, most);
    }
    if (n == 0) FAILF("%s: no key in Redis contains the job id %s", when, id);
    return n;
}

/* Keys without a TTL must be one of the shared ones of docs/redis.md, each bounded by
 * other means (streams and the entries hash hold only unacknowledged entries, the delayed
 * set only jobs waiting for a retry, the dead-letter streams are capped, the webhook task
 * stream holds only deliveries in progress, a tenant's wait lists and the waiting list only
 * jobs waiting for the feed, the models hash one record per registered model). */
static void check_keys_without_ttl(tl_fleet *f) {
    tl_strlist keys = tl_redis_keys(f->rc, "*");
    const char *tag = tl_printf("{%s}:", f->prefix);
    size_t tl = strlen(tag);
    for (size_t i = 0; i < keys.n; i++) {
        const char *k = keys.v[i];
        if (tl_redis_int(f->rc, "TTL %s", k) != -1) continue;
        const char *rest = strncmp(k, tag, tl) == 0 ? k + tl : "";
        bool shared = strcmp(rest, "queues") == 0 || strcmp(rest, "stats") == 0 ||
                      strcmp(rest, "workers") == 0 || strncmp(rest, "stream:", 7) == 0 ||
                      strncmp(rest, "entries:", 8) == 0 || strncmp(rest, "delayed:", 8) == 0 ||
                      strncmp(rest, "wait:", 5) == 0 || strncmp(rest, "waiting:", 8) == 0 ||
                      strcmp(rest, "dlq") == 0 || strcmp(rest, "webhooks") == 0 ||
                      strcmp(rest, "webhook_retry") == 0 || strcmp(rest, "webhook_dlq") == 0 ||
                      strcmp(rest, "models") == 0;
        tl_log("no TTL: %s", k);
        if (!shared) FAILF("key %s has no TTL and is not one of the shared keys", k);
    }
}

static const char *submit_with_ttl(tl_fleet *f, const char *model, const char *input, int ttl_s) {
    tl_resp *r = tl_post(f, "/v1/jobs",
                         tl_printf("{\"model\": \"%s\", \"input\": %s, \"ttl_s\": %d}", model,
                                   input, ttl_s));
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_INT(tl_jint(r->json, "ttl_s"), ttl_s);
    return tl_jstr(r->json, "id");
}

TL_TEST(job_keys_have_a_ttl_while_queued_and_after_succeeding) {
    /* FLEET_QUEUE_TTL bounds the keys while queued or running. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_QUEUE_TTL=3600"}});
    const char *id = submit_with_ttl(f, "echo", "{\"keep\": \"me\"}", 120);
    check_job_keys(f, id, 3600, "queued");
    check_keys_without_ttl(f);

    tl_fleet_add_worker(f, "echo");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    /* Once finished, the job and its result live ttl_s (120 s). */
    check_job_keys(f, id, 120, "succeeded");
    check_keys_without_ttl(f);
    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_INT(tl_jint(job, "ttl_s"), 120);
}

TL_TEST(job_keys_have_a_ttl_while_running) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_QUEUE_TTL=3600"}});
    const char *id = submit_with_ttl(f, "sleep", "{\"ms\": 60000, \"steps\": 600}", 90);
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    check_job_keys(f, id, 3600, "running");
    check_keys_without_ttl(f);
    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s", id));
    ASSERT_HTTP_STATUS(r, 202);
    tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
    check_job_keys(f, id, 90, "cancelled while running");
}

TL_TEST(job_keys_have_a_ttl_after_a_queued_cancel) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *id = submit_with_ttl(f, "sleep", "{\"ms\": 10, \"steps\": 1}", 75);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 200);
    check_job_keys(f, id, 75, "cancelled while queued");
    check_keys_without_ttl(f);
}

/* Polls until the model's queued count is 0; fails after TL_WAIT_MS. */
static void wait_queued_zero(tl_fleet *f, const char *model) {
    ASSERT_EVENTUALLY(tl_stat(f, model, "queued") == 0, TL_WAIT_MS);
}

/* A job whose keys expire while it waits on its tenant's wait list, or in the delayed set
 * for a retry, leaves the queued count and is counted as expired when the feed or promote
 * meets its id (its keys are deleted here, as expiry would). The wait list itself has no
 * TTL: expiring it would take its ids out of the count for good. */
TL_TEST(jobs_expired_while_waiting_or_delayed_are_counted_as_expired) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"},
                                                  .worker_env = {"FLEET_RETRY_BASE_MS=1500",
                                                                 "FLEET_RETRY_MAX_MS=1500"}});
    /* The first goes onto the stream; the next two wait on the tenant's wait list. */
    const char *ids[3];
    for (int i = 0; i < 3; i++) ids[i] = submit_with_ttl(f, "echo", "1", 60);
    tl_strlist waits = tl_redis_keys(f->rc, tl_printf("{%s}:wait:echo:*", f->prefix));
    ASSERT_EQ_INT(waits.n, 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s", waits.v[0]), 2);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "TTL %s", waits.v[0]), -1);
    for (int i = 1; i < 3; i++) tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, ids[i]);
    tl_fleet_add_worker(f, "echo");
    tl_job_wait_status(f, ids[0], "succeeded", TL_WAIT_MS);
    wait_queued_zero(f, "echo");
    ASSERT_EQ_INT(tl_stat(f, "echo", "expired"), 2);

    /* A retry waiting in the delayed set. */
    const char *id = submit_with_ttl(
        f, "sleep", "{\"ms\": 1, \"fail\": \"once\", \"retryable\": true, \"fail_attempts\": 1}",
        60);
    tl_fleet_add_worker(f, "sleep");
    ASSERT_EVENTUALLY(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix) != 0, TL_WAIT_MS);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix), 1);
    tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, id);
    wait_queued_zero(f, "sleep");
    ASSERT_EQ_INT(tl_stat(f, "sleep", "expired"), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(job_keys_have_a_ttl_while_queued_and_after_succeeding),
        TL_CASE(job_keys_have_a_ttl_while_running),
        TL_CASE(job_keys_have_a_ttl_after_a_queued_cancel),
        TL_CASE(jobs_expired_while_waiting_or_delayed_are_counted_as_expired),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
