/* cancel_test.c: DELETE /v1/jobs/{id} in every state (docs/reliability.md, "Cancel works in
 * every state"): a queued job never starts; a running job stops at the model's next step
 * and does not retry; a finished job answers 409. */
#include <string.h>
#include <unistd.h>

#include "testlib.h"

TL_TEST(cancel_of_a_queued_job_is_200_and_it_never_runs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker yet */
    const char *a = tl_job_submit(f, "echo", "{\"job\": \"a\"}");

    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s", a));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "id"), a);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "cancelled");

    json_t *job = tl_job_get(f, a);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    ASSERT_NULL(tl_jget(job, "started_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "error"));
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", a)), 409);
    /* Cancelling again: it is finished now. */
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", a)), 409);

    /* A worker starts and works through the queue: the cancelled job's stream entry comes
     * first, then b. Once b has succeeded, the worker has passed a. */
    tl_fleet_add_worker(f, "echo");
    const char *b = tl_job_submit(f, "echo", "{\"job\": \"b\"}");
    tl_job_wait_status(f, b, "succeeded", TL_WAIT_MS);

    job = tl_job_get(f, a);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    ASSERT_NULL(tl_jget(job, "started_at"));
    ASSERT_NULL(tl_jget(job, "worker"));
    if (tl_jget(job, "attempts")) ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", a)), 409);
}

/* Workers subscribed to their control channels ({prefix}:control:<worker>). */
static long long control_subscribers(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "PUBSUB CHANNELS {%s}:control:*", f->prefix);
    return r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : 0;
}

TL_TEST(cancel_of_a_running_job_is_202_and_it_ends_cancelled) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    tl_proc *w = f->workers[0];
    /* 60 s in 600 steps: it would outlast the test unless the cancel stops it. */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    /* A worker claims nothing until its control channel is subscribed, but gives up
     * waiting after 2 s (a slow start): a cancel published before the subscription would
     * reach it only by its next progress write or lease renewal. This case is about the
     * channel, so it makes sure of it. */
    ASSERT_EVENTUALLY(control_subscribers(f) >= 1, TL_WAIT_MS);

    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s", id));
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
    const char *st = tl_jstr(r->json, "status");
    ASSERT_NOT_NULL(st);
    if (strcmp(st, "running") == 0) ASSERT_TRUE(json_is_true(tl_jget(r->json, "cancel_requested")));
    else ASSERT_EQ_STR(st, "cancelled");

    json_t *job = tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
    ASSERT_NOT_NULL(tl_jstr(job, "started_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "finished_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "error"));
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 409);
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 409);
    /* The worker was told on its control channel (pub/sub), not only by its next lease
     * renewal. */
    char *log = tl_read_file(w->log_path, NULL);
    ASSERT_NOT_NULL(log);
    ASSERT_STR_CONTAINS(log, "cancel heard on the control channel");

    /* The worker is free again and the cancelled job is not retried. */
    const char *next = tl_job_submit(f, "sleep", "{\"ms\": 50, \"steps\": 1}");
    tl_job_wait_status(f, next, "succeeded", TL_WAIT_MS);
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

/* A cancel that races with claims: every job whose DELETE answered 200 never starts; every
 * job ends in a final state, none is stuck, and a 202 ends cancelled or (done is done)
 * succeeded. */
TL_TEST(cancels_racing_with_claims_never_start_a_cancelled_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep", "sleep"},
                                                  .worker_env = {"FLEET_MAX_BATCH=4"}});
    enum { N = 120 };
    const char *ids[N];
    long codes[N];
    for (int i = 0; i < N; i++) {
        ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 20, \"steps\": 2}");
        codes[i] = tl_delete(f, tl_printf("/v1/jobs/%s", ids[i]))->status;
    }
    int queued_cancels = 0, running_cancels = 0, too_late = 0;
    for (int i = 0; i < N; i++) {
        json_t *job = NULL;
        TL_WAIT_UNTIL(tl_status_is_final(tl_jstr(job = tl_job_get(f, ids[i]), "status")),
                      TL_WAIT_MS);
        const char *st = tl_jstr(job, "status");
        if (codes[i] == 200) {
            queued_cancels++;
            ASSERT_EQ_STR(st, "cancelled");
            ASSERT_NULL(tl_jget(job, "started_at"));
        } else if (codes[i] == 202) {
            running_cancels++;
            if (strcmp(st, "succeeded") != 0) ASSERT_EQ_STR(st, "cancelled");
        } else {
            ASSERT_EQ_INT(codes[i], 409);
            too_late++;
            ASSERT_TRUE(tl_status_is_final(st));
        }
    }
    tl_log("DELETE answers: %d x 200 (queued), %d x 202 (running), %d x 409 (finished)",
           queued_cancels, running_cancels, too_late);
    /* Every cancelled-while-queued entry was dropped by a claim: nothing is left. */
    ASSERT_EVENTUALLY(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix) == 0, TL_WAIT_MS);
}

/* A cancel of a job whose worker died: the job ends cancelled when the next worker takes
 * it over, and does not run again. */
TL_TEST(cancel_of_a_lost_workers_job_ends_cancelled_without_a_rerun) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=1000"}});
    tl_proc *a = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    tl_proc_kill9(a);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 202);

    tl_fleet_add_worker(f, "sleep");
    json_t *job = tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "cancelled");
    tl_resp *r = tl_get(f, "/v1/stats");
    ASSERT_EQ_INT(tl_jint(r->json, "models.sleep.running"), 0);
    ASSERT_EQ_INT(tl_jint(r->json, "models.sleep.cancelled"), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(cancel_of_a_queued_job_is_200_and_it_never_runs),
        TL_CASE(cancel_of_a_running_job_is_202_and_it_ends_cancelled),
        TL_CASE(cancels_racing_with_claims_never_start_a_cancelled_job),
        TL_CASE(cancel_of_a_lost_workers_job_ends_cancelled_without_a_rerun),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
