/* cancel_test.c: DELETE /v1/jobs/{id} in every state (DESIGN.md: "Cancel works in every
 * state: a queued job never starts; a running job stops at the model's next step and does
 * not retry; a finished job answers 409"). */
#include <string.h>

#include "testlib.h"

#define WAIT_MS 30000

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
    tl_job_wait_status(f, b, "succeeded", WAIT_MS);

    job = tl_job_get(f, a);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    ASSERT_NULL(tl_jget(job, "started_at"));
    ASSERT_NULL(tl_jget(job, "worker"));
    if (tl_jget(job, "attempts")) ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", a)), 409);
}

TL_TEST(cancel_of_a_running_job_is_202_and_it_ends_cancelled) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    /* 60 s in 600 steps: it would outlast the test unless the cancel stops it. */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, id, "running", WAIT_MS);

    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s", id));
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
    const char *st = tl_jstr(r->json, "status");
    ASSERT_NOT_NULL(st);
    if (strcmp(st, "running") == 0)
        ASSERT_TRUE(json_is_true(tl_jget(r->json, "cancel_requested")));
    else
        ASSERT_EQ_STR(st, "cancelled");

    json_t *job = tl_job_wait_status(f, id, "cancelled", WAIT_MS);
    ASSERT_NOT_NULL(tl_jstr(job, "started_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "finished_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "error"));
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 409);
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 409);

    /* The worker is free again and the cancelled job is not retried. */
    const char *next = tl_job_submit(f, "sleep", "{\"ms\": 50, \"steps\": 1}");
    tl_job_wait_status(f, next, "succeeded", WAIT_MS);
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(cancel_of_a_queued_job_is_200_and_it_never_runs),
        TL_CASE(cancel_of_a_running_job_is_202_and_it_ends_cancelled),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
