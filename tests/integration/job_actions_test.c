/* job_actions_test.c: POST /v1/jobs/{id}/retry and DELETE /v1/jobs/{id}?purge=true
 * (docs/api.md, "Retry and delete") against a live gateway, Redis and workers: a failed,
 * cancelled or dead-lettered job runs again under its id with a clean slate, queued the
 * way a submit queues it; a finished job is deleted with its result; every refusal is a
 * problem that changes nothing; the counters of {prefix}:stats stay exact throughout. */
#include <string.h>

#include "testlib.h"

static const char *const states[] = {"queued", "running",   "succeeded",
                                     "failed", "cancelled", "expired"};

/* submitted = queued + running + succeeded + failed + cancelled + expired (docs/redis.md). */
static void assert_counters_balance(tl_fleet *f, const char *model) {
    long long sum = 0;
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        long long n = tl_stat(f, model, states[i]);
        ASSERT_TRUE(n >= 0);
        sum += n;
    }
    ASSERT_EQ_INT(sum, tl_stat(f, model, "submitted"));
}

static tl_resp *retry(tl_fleet *f, const char *id) {
    /* An empty body: a POST without one would go out as a GET (tl_http). */
    return tl_request(f, tl_printf("/v1/jobs/%s/retry", id),
                      (tl_req){.method = "POST", .body = "", .content_type = ""});
}

static long long dlq_len(tl_fleet *f) { return tl_redis_int(f->rc, "XLEN {%s}:dlq", f->prefix); }

TL_TEST(retry_of_a_cancelled_job_queues_it_again_and_it_succeeds) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker yet */
    const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 200);
    ASSERT_EQ_INT(tl_stat(f, "echo", "cancelled"), 1);

    tl_resp *r = retry(f, id);
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_resp_header(r, "Location"), tl_printf("/v1/jobs/%s", id));
    ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
    /* Approximate, as a submit's: it counts the cancelled entry no worker has passed yet. */
    ASSERT_TRUE(tl_jint(r->json, "queue_position") >= 1);
    ASSERT_EQ_INT(tl_jint(r->json, "attempts"), 0);
    ASSERT_NULL(tl_jget(r->json, "error"));
    ASSERT_NULL(tl_jget(r->json, "finished_at"));
    ASSERT_EQ_INT(tl_stat(f, "echo", "cancelled"), 0);
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 1);
    assert_counters_balance(f, "echo");
    /* Queued again with the queue TTL (the cancel had put the keys on the result TTL). */
    ASSERT_TRUE(tl_redis_int(f->rc, "TTL {%s}:job:%s", f->prefix, id) > 0);

    tl_fleet_add_worker(f, "echo");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_INT(tl_jint(res->json, "n"), 1);
    ASSERT_EQ_INT(tl_stat(f, "echo", "succeeded"), 1);
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 1);
    assert_counters_balance(f, "echo");
}

/* A dead-lettered job (out of attempts, with a last_error and progress from its runs)
 * retried over HTTP: a clean slate, off the dead-letter stream, counted exactly. */
TL_TEST(retry_of_a_dead_lettered_job_clears_what_its_runs_left) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_MAX_ATTEMPTS=2"},
                                                  .worker_env = {"FLEET_RETRY_BASE_MS=50"}});
    const char *id =
        tl_job_submit(f, "sleep",
                      "{\"ms\": 40, \"steps\": 4, \"fail\": \"GPU busy\", \"retryable\": true}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_TRUE(json_is_true(tl_jget(job, "dead_lettered")));
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_NOT_NULL(tl_jstr(job, "last_error"));
    ASSERT_EQ_INT(dlq_len(f), 1);
    /* The worker stops, so the retried job stays queued while the test looks at it. */
    ASSERT_EQ_INT(tl_proc_stop(f->workers[0], 10000), 0);

    tl_resp *r = retry(f, id);
    ASSERT_HTTP_STATUS(r, 202);
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "queued");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    ASSERT_EQ_INT(tl_jint(job, "queue_position"), 1);
    ASSERT_NULL(tl_jget(job, "progress"));
    ASSERT_NULL(tl_jget(job, "error"));
    ASSERT_NULL(tl_jget(job, "last_error"));
    ASSERT_NULL(tl_jget(job, "dead_lettered"));
    ASSERT_NULL(tl_jget(job, "finished_at"));
    ASSERT_NULL(tl_jget(job, "started_at"));
    ASSERT_NULL(tl_jget(job, "worker"));
    ASSERT_EQ_INT(dlq_len(f), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "failed"), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dlq_retried"), 1);
    assert_counters_balance(f, "sleep");

    /* It runs again from attempt 1 (the same input fails the same way): two attempts,
     * dead-lettered again, and every counter still adds up to the one submit. */
    tl_fleet_add_worker(f, "sleep");
    job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_EQ_INT(dlq_len(f), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "submitted"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "failed"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dead_lettered"), 2);
    assert_counters_balance(f, "sleep");
}

/* While the tenant has a backlog, a retried job joins it (its wait list), as a submit
 * would, instead of jumping onto the stream ahead of the tenant's waiting jobs. */
TL_TEST(retry_queues_behind_the_tenants_backlog_as_a_submit_does) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"}});
    const char *a = tl_job_submit(f, "echo", "{\"job\": \"a\"}"); /* onto the stream */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", a)), 200);
    const char *b = tl_job_submit(f, "echo", "{\"job\": \"b\"}"); /* onto the stream */
    const char *c = tl_job_submit(f, "echo", "{\"job\": \"c\"}"); /* the wait list */
    const char *wait = tl_printf("{%s}:wait:echo:%s:1", f->prefix, "default");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s", wait), 1);
    long long stream = tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix);

    ASSERT_HTTP_STATUS(retry(f, a), 202);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s", wait), 2);
    redisReply *l = tl_redis_cmd(f->rc, "LRANGE %s 0 -1", wait);
    ASSERT_EQ_STR(l->element[0]->str, c);
    ASSERT_EQ_STR(l->element[1]->str, a);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix), stream);

    tl_fleet_add_worker(f, "echo");
    tl_job_wait_status(f, a, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, b, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, c, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_stat(f, "echo", "succeeded"), 3);
    assert_counters_balance(f, "echo");
}

TL_TEST(retry_is_refused_unless_the_job_failed_or_was_cancelled) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *queued = tl_job_submit(f, "echo", "{}");
    const char *detail = ASSERT_PROBLEM(retry(f, queued), 409);
    ASSERT_STR_CONTAINS(detail, "queued");
    ASSERT_EQ_STR(tl_jstr(retry(f, queued)->json, "type"), "urn:fleet:problem:job-not-retryable");
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 1);

    tl_fleet_add_worker(f, "echo");
    tl_job_wait_status(f, queued, "succeeded", TL_WAIT_MS);
    detail = ASSERT_PROBLEM(retry(f, queued), 409);
    ASSERT_STR_CONTAINS(detail, "succeeded");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, queued), "status"), "succeeded");
    ASSERT_HTTP_STATUS(tl_get(f, tl_printf("/v1/jobs/%s/result", queued)), 200);

    ASSERT_PROBLEM(retry(f, "01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404);
    /* With FLEET_AUTH=off every request has admin rights, which reach every tenant's jobs:
     * another tenant's job is retried as that tenant's (a tenant key gets 404 for it:
     * admin_test). */
    const char *other = tl_job_submit(f, "echo", "{}");
    tl_job_wait_status(f, other, "succeeded", TL_WAIT_MS);
    tl_redis_cmd(f->rc, "HSET {%s}:job:%s status failed tenant someone-else", f->prefix, other);
    tl_redis_cmd(f->rc, "HINCRBY {%s}:stats echo:succeeded -1", f->prefix);
    tl_redis_cmd(f->rc, "HINCRBY {%s}:stats echo:failed 1", f->prefix);
    ASSERT_HTTP_STATUS(retry(f, other), 202);
    tl_job_wait_status(f, other, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:job:%s tenant", f->prefix, other)->str,
                  "someone-else");
    /* Only POST. */
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/retry", queued)), 405);
}

TL_TEST(running_job_retry_is_409) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    const char *detail = ASSERT_PROBLEM(retry(f, id), 409);
    ASSERT_STR_CONTAINS(detail, "running");
    ASSERT_EQ_INT(tl_stat(f, "sleep", "running"), 1);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 202);
    tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
}

/* A failed job keeps the progress of the steps it finished; it never shows 100% (the sleep
 * model fails in its last step instead of completing it), and a retry clears it. */
TL_TEST(a_failed_job_keeps_its_last_real_progress) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_PROGRESS_INTERVAL_MS=0"}});
    const char *id = tl_job_submit(f, "sleep",
                                   "{\"ms\": 90, \"steps\": 3, \"fail\": \"bad page 3\"}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(job, "error"), "bad page 3");
    ASSERT_EQ_STR(tl_jstr(job, "progress.message"), "step 2 of 3");
    double pct = json_number_value(tl_jget(job, "progress.percent"));
    ASSERT_TRUE(pct > 66 && pct < 67);
    /* One step that fails: no progress at all. */
    const char *one = tl_job_submit(f, "sleep", "{\"ms\": 5, \"fail\": \"bad page 1\"}");
    job = tl_job_wait_status(f, one, "failed", TL_WAIT_MS);
    ASSERT_NULL(tl_jget(job, "progress"));
    /* A job that succeeds still reports its last step. */
    const char *ok = tl_job_submit(f, "sleep", "{\"ms\": 5, \"steps\": 2}");
    job = tl_job_wait_status(f, ok, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(job, "progress.message"), "step 2 of 2");
}

/* ------------------------------------------------------------ purge ----------------- */

TL_TEST(purge_deletes_a_finished_job_and_its_result) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_resp *s = tl_request(f, "/v1/jobs",
                            (tl_req){.body = "{\"model\": \"echo\", \"input\": {\"n\": 2}}",
                                     .headers = {"Idempotency-Key: purge-me"}});
    ASSERT_HTTP_STATUS(s, 202);
    const char *id = tl_jstr(s->json, "id");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:result", f->prefix, id), 1);

    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
    ASSERT_TRUE(json_is_true(tl_jget(r->json, "deleted")));
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", id)), 404);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 404);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, id), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:result", f->prefix, id), 0);
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id)), 404);
    /* The counters keep the job's end; the list skips it. */
    ASSERT_EQ_INT(tl_stat(f, "echo", "succeeded"), 1);
    assert_counters_balance(f, "echo");
    tl_resp *list = tl_get(f, "/v1/jobs");
    ASSERT_EQ_INT((long long)json_array_size(tl_jget(list->json, "jobs")), 0);
    /* The Idempotency-Key is free again: the same request makes a new job. */
    s = tl_request(f, "/v1/jobs",
                   (tl_req){.body = "{\"model\": \"echo\", \"input\": {\"n\": 2}}",
                            .headers = {"Idempotency-Key: purge-me"}});
    ASSERT_HTTP_STATUS(s, 202);
    ASSERT_NULL(tl_resp_header(s, "Idempotent-Replayed"));
    ASSERT_TRUE(strcmp(tl_jstr(s->json, "id"), id) != 0);
}

TL_TEST(purge_of_a_dead_lettered_job_takes_it_off_the_dead_letter_stream) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_MAX_ATTEMPTS=1"}});
    const char *id = tl_job_submit(f, "sleep",
                                   "{\"ms\": 5, \"fail\": \"GPU busy\", \"retryable\": true}");
    tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(dlq_len(f), 1);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id)), 200);
    ASSERT_EQ_INT(dlq_len(f), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "failed"), 1);
    assert_counters_balance(f, "sleep");
}

TL_TEST(purge_is_refused_for_a_queued_job_and_a_bad_value) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *id = tl_job_submit(f, "echo", "{}");
    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id));
    const char *detail = ASSERT_PROBLEM(r, 409);
    ASSERT_STR_CONTAINS(detail, "queued");
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:job-not-finished");
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s?purge=yes", id)), 400);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 1);
    /* purge=false is the plain DELETE: a cancel. */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s?purge=false", id)), 200);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "cancelled");
    /* DELETE without purge of a finished job is still 409: deleting is asked for. */
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 409);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id)), 200);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", id)), 404);
    assert_counters_balance(f, "echo");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(retry_of_a_cancelled_job_queues_it_again_and_it_succeeds),
        TL_CASE(retry_of_a_dead_lettered_job_clears_what_its_runs_left),
        TL_CASE(retry_queues_behind_the_tenants_backlog_as_a_submit_does),
        TL_CASE(retry_is_refused_unless_the_job_failed_or_was_cancelled),
        TL_CASE(running_job_retry_is_409),
        TL_CASE(a_failed_job_keeps_its_last_real_progress),
        TL_CASE(purge_deletes_a_finished_job_and_its_result),
        TL_CASE(purge_of_a_dead_lettered_job_takes_it_off_the_dead_letter_stream),
        TL_CASE(purge_is_refused_for_a_queued_job_and_a_bad_value),
    };
    return tl_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
