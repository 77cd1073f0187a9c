/* retry_test.c: bounded retries and the dead-letter stream (docs/reliability.md,
 * "Bounded retries"): a retryable model error retries with backoff, a permanent one fails
 * at once, a worker that crashes on a job is replaced and the job is retried until max_attempts,
 * then it fails with a clear error and is dead-lettered; the execution timeout fails a
 * job without retry. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static long long dlq_len(tl_fleet *f) { return tl_redis_int(f->rc, "XLEN {%s}:dlq", f->prefix); }

/* GET of the job; when it waits for its next attempt (queued with retry_at), checks that
 * it is neither in the queue nor on a worker, and sets *saw. */
static json_t *look_between_attempts(tl_fleet *f, const char *id, bool *saw) {
    json_t *job = tl_job_get(f, id);
    if (strcmp(tl_jstr(job, "status"), "queued") == 0 && tl_jstr(job, "retry_at")) {
        *saw = true;
        ASSERT_STR_CONTAINS(tl_jstr(job, "last_error"), "GPU busy");
        /* Waiting, not in the queue yet, and not on any worker. */
        ASSERT_NULL(tl_jget(job, "queue_position"));
        ASSERT_NULL(tl_jget(job, "worker"));
        ASSERT_NULL(tl_jget(job, "started_at"));
    }
    return job;
}

TL_TEST(retryable_error_retries_with_backoff_then_succeeds) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_RETRY_BASE_MS=300"}});
    const char *id = tl_job_submit(
        f, "sleep",
        "{\"ms\": 10, \"fail\": \"GPU busy\", \"retryable\": true, \"fail_attempts\": 2}");

    /* Between attempts the job is queued again, with the time it may start. */
    bool saw_retry_wait = false;
    json_t *job = NULL;
    TL_WAIT_UNTIL(tl_status_is_final(tl_jstr(job = look_between_attempts(f, id, &saw_retry_wait),
                                             "status")),
                  TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "succeeded");
    ASSERT_TRUE(saw_retry_wait);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 3);
    ASSERT_STR_CONTAINS(tl_jstr(job, "last_error"), "attempt 2: GPU busy");
    ASSERT_NULL(tl_jget(job, "error"));
    ASSERT_NULL(tl_jget(job, "dead_lettered"));
    ASSERT_EQ_INT(tl_stat(f, "sleep", "retried"), 2);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "succeeded"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "running"), 0);
    ASSERT_EQ_INT(dlq_len(f), 0);
    /* Nothing left behind: no stream entry, no delayed id, no entry mapping. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HLEN {%s}:entries:sleep", f->prefix), 0);
}

TL_TEST(retryable_error_past_max_attempts_fails_and_is_dead_lettered) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_MAX_ATTEMPTS=2"},
                                                  .worker_env = {"FLEET_RETRY_BASE_MS=100"}});
    const char *id = tl_job_submit(f, "sleep",
                                   "{\"ms\": 10, \"fail\": \"GPU busy\", \"retryable\": true}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_EQ_INT(tl_jint(job, "max_attempts"), 2);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "failed 2 times with a retryable error");
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "GPU busy");
    ASSERT_TRUE(json_is_true(tl_jget(job, "dead_lettered")));

    ASSERT_EQ_INT(dlq_len(f), 1);
    redisReply *e = tl_redis_cmd(f->rc, "XRANGE {%s}:dlq - + COUNT 1", f->prefix);
    ASSERT_EQ_INT((long long)e->elements, 1);
    const redisReply *fields = e->element[0]->element[1];
    bool has_job = false;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, "job") == 0)
            has_job = strcmp(fields->element[i + 1]->str, id) == 0;
    ASSERT_TRUE(has_job);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dead_lettered"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "retried"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "failed"), 1);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 409);
}

TL_TEST(permanent_error_fails_at_once_without_dead_letter) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"fail\": \"page 3 is not a PDF\"}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_STR(tl_jstr(job, "error"), "page 3 is not a PDF");
    ASSERT_NULL(tl_jget(job, "dead_lettered"));
    ASSERT_EQ_INT(dlq_len(f), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "retried"), 0);
}

/* The dead-letter stream keeps at most FLEET_DLQ_CAP entries, the newest. */
TL_TEST(dead_letter_stream_is_capped) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_MAX_ATTEMPTS=1"},
                                                  .worker_env = {"FLEET_DLQ_CAP=3"}});
    const char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 1, \"fail\": \"busy\", \"retryable\": true}");
    for (int i = 0; i < 5; i++) tl_job_wait_status(f, ids[i], "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(dlq_len(f), 3);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dead_lettered"), 5);
}

/* A job that kills its worker (as an out-of-memory kill would) is taken over by the next
 * worker once the lease expires; after max_attempts it fails with the reason and is
 * dead-lettered, so it cannot crash the fleet forever. */
TL_TEST(job_that_crashes_workers_is_dead_lettered_after_max_attempts) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_ATTEMPTS=2"},
                                                  .worker_env = {"FLEET_LEASE_MS=1000"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"crash\": true}");
    json_t *job = NULL;
    int crashes = 0;
    for (int round = 0; round < 4; round++) {
        tl_proc *w = tl_fleet_add_worker(f, "sleep");
        tl_proc_expect_kill9(w);
        /* Either the worker dies running the job, or it ends the job (the last round). */
        TL_WAIT_UNTIL(!tl_proc_alive(w) ||
                          tl_status_is_final(tl_jstr(job = tl_job_get(f, id), "status")),
                      TL_WAIT_MS);
        if (!tl_proc_alive(w)) {
            ASSERT_TRUE(WIFSIGNALED(w->status) && WTERMSIG(w->status) == SIGKILL);
            crashes++;
            continue;
        }
        break;
    }
    job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    tl_log("workers crashed by the job: %d", crashes);
    ASSERT_EQ_INT(crashes, 2);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "worker lost 2 times");
    ASSERT_TRUE(json_is_true(tl_jget(job, "dead_lettered")));
    ASSERT_EQ_INT(dlq_len(f), 1);
    ASSERT_TRUE(tl_stat(f, "sleep", "reclaimed") >= 2);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dead_lettered"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "running"), 0);
    /* Its stream entry is gone; the surviving worker is still fine. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 0);
    const char *ok = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    tl_job_wait_status(f, ok, "succeeded", TL_WAIT_MS);
}

/* Submits a sleep job with a timeout_s; returns its id. */
static const char *submit_with_timeout(tl_fleet *f, const char *input, int timeout_s) {
    tl_resp *r = tl_post(f, "/v1/jobs",
                         tl_printf("{\"model\": \"sleep\", \"input\": %s, \"timeout_s\": %d}",
                                   input, timeout_s));
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

TL_TEST(timeout_fails_the_job_and_does_not_retry) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = submit_with_timeout(f, "{\"ms\": 60000, \"steps\": 600}", 1);
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "timeout_s of 1 seconds");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_NULL(tl_jget(job, "dead_lettered"));
    /* Not retried: the worker moves on and the job stays failed. */
    const char *next = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    tl_job_wait_status(f, next, "succeeded", TL_WAIT_MS);
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "failed");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

/* A model's default limit (the worker's FLEET_TIMEOUT_S) applies to jobs that set none. */
TL_TEST(model_default_timeout_applies_to_jobs_without_one) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_TIMEOUT_S=1"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "timeout_s of 1 seconds");
    const char *quick = tl_job_submit(f, "sleep", "{\"ms\": 100}");
    tl_job_wait_status(f, quick, "succeeded", TL_WAIT_MS);
}

/* A model stuck in one long call never sees the timeout: the worker ends the job in Redis
 * itself a few seconds after the limit, and drops what the model returns later. */
TL_TEST(timeout_ends_a_job_whose_model_never_calls_back) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = submit_with_timeout(f, "{\"ms\": 9000, \"ignore_stop\": true}", 1);
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "the model did not stop");
    /* When the model finally returns, its result is dropped, not written. */
    const char *next = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    tl_job_wait_status(f, next, "succeeded", TL_WAIT_MS);
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "failed");
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 409);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.sleep.running"), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(retryable_error_retries_with_backoff_then_succeeds),
        TL_CASE(retryable_error_past_max_attempts_fails_and_is_dead_lettered),
        TL_CASE(permanent_error_fails_at_once_without_dead_letter),
        TL_CASE(dead_letter_stream_is_capped),
        TL_CASE(job_that_crashes_workers_is_dead_lettered_after_max_attempts),
        TL_CASE(timeout_fails_the_job_and_does_not_retry),
        TL_CASE(model_default_timeout_applies_to_jobs_without_one),
        TL_CASE(timeout_ends_a_job_whose_model_never_calls_back),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
