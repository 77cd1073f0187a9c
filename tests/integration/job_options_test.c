/* job_options_test.c: what a client may ask of one job within the bounds the operator sets
 * (docs/api.md, "Submit" and "Operator bounds"): its own max_attempts and queue_ttl_s, the
 * longest Prefer: wait (FLEET_MAX_WAIT_S); and the job list's several statuses at once with
 * queue_position on queued items. Against a live gateway, Redis and workers. */
#include <string.h>

#include "testlib.h"

static tl_resp *submit(tl_fleet *f, const char *body) {
    return tl_request(f, "/v1/jobs", (tl_req){.body = body});
}

TL_TEST(a_job_takes_its_own_max_attempts_and_queue_ttl) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_ATTEMPTS_MAX=5",
                                                                  "FLEET_QUEUE_TTL_MAX=7200",
                                                                  "FLEET_QUEUE_TTL=3600"}});
    tl_resp *r = submit(f, "{\"model\": \"sleep\", \"input\": {\"ms\": 1}, \"max_attempts\": 5, "
                           "\"queue_ttl_s\": 7200}");
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    ASSERT_EQ_INT(tl_jint(r->json, "max_attempts"), 5);
    ASSERT_EQ_INT(tl_jint(tl_job_get(f, id), "max_attempts"), 5);
    long long ttl = tl_redis_int(f->rc, "TTL {%s}:job:%s", f->prefix, id);
    ASSERT_TRUE(ttl > 3600 && ttl <= 7200);
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:job:%s queue_ttl_s", f->prefix, id)->str, "7200");

    /* Without them: the gateway's defaults (FLEET_MAX_ATTEMPTS, FLEET_QUEUE_TTL). */
    r = submit(f, "{\"model\": \"sleep\", \"input\": {\"ms\": 1}}");
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_INT(tl_jint(r->json, "max_attempts"), 3);
    ttl = tl_redis_int(f->rc, "TTL {%s}:job:%s", f->prefix, tl_jstr(r->json, "id"));
    ASSERT_TRUE(ttl > 60 && ttl <= 3600);

    /* A job's own max_attempts is what the worker's retries count against. */
    tl_fleet_add_worker(f, "sleep");
    r = submit(f, "{\"model\": \"sleep\", \"input\": {\"ms\": 1, \"fail\": \"GPU busy\", "
                  "\"retryable\": true}, \"max_attempts\": 1}");
    ASSERT_HTTP_STATUS(r, 202);
    json_t *job = tl_job_wait_status(f, tl_jstr(r->json, "id"), "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_TRUE(json_is_true(tl_jget(job, "dead_lettered")));
}

TL_TEST(out_of_bounds_max_attempts_and_queue_ttl_are_422_naming_the_bound) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_ATTEMPTS_MAX=5",
                                                                  "FLEET_QUEUE_TTL_MAX=7200",
                                                                  "FLEET_QUEUE_TTL=3600"}});
    const char *d =
        ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"max_attempts\": 6}"), 422);
    ASSERT_STR_CONTAINS(d, "between 1 and 5");
    ASSERT_STR_CONTAINS(d, "FLEET_MAX_ATTEMPTS_MAX");
    d = ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"queue_ttl_s\": 7201}"),
                       422);
    ASSERT_STR_CONTAINS(d, "between 60 and 7200");
    ASSERT_STR_CONTAINS(d, "FLEET_QUEUE_TTL_MAX");
    /* Past what any gateway allows, and below the minimum: the body's own bounds. */
    d = ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"max_attempts\": 0}"), 422);
    ASSERT_STR_CONTAINS(d, "max_attempts");
    ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"queue_ttl_s\": 59}"), 422);
    ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"max_attempts\": \"3\"}"), 400);
    /* Nothing was written. */
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 0);
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 0);
    /* The same in the options of a form. */
    tl_resp *r =
        tl_request(f, "/v1/jobs",
                   (tl_req){
                       .body =
                           "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\necho\r\n"
                           "--b\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n"
                           "{\"max_attempts\": 9}\r\n--b--\r\n",
                       .content_type = "multipart/form-data; boundary=b"});
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 422), "FLEET_MAX_ATTEMPTS_MAX");
}

/* An operator bound below the gateway's own default is raised to it: a job may always ask
 * for what it would get by default. */
TL_TEST(a_bound_below_the_default_is_the_default) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_MAX_ATTEMPTS=4", "FLEET_MAX_ATTEMPTS_MAX=2"}});
    ASSERT_HTTP_STATUS(submit(f, "{\"model\": \"echo\", \"input\": {}, \"max_attempts\": 4}"), 202);
    ASSERT_STR_CONTAINS(
        ASSERT_PROBLEM(submit(f, "{\"model\": \"echo\", \"input\": {}, \"max_attempts\": 5}"), 422),
        "between 1 and 4");
}

TL_TEST(the_longest_wait_is_the_gateways_setting) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_MAX_WAIT_S=120"}});
    /* Longer than the old fixed 60 s: accepted (the job ends at once, so no time passes). */
    tl_resp *r = tl_request(f, "/v1/jobs",
                            (tl_req){.body = "{\"model\": \"echo\", \"input\": {\"a\": 1}}",
                                     .headers = {"Prefer: wait=90"}});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
    ASSERT_EQ_STR(tl_resp_header(r, "Preference-Applied"), "wait=90");
    const char *d =
        ASSERT_PROBLEM(tl_request(f, "/v1/jobs",
                                  (tl_req){.body = "{\"model\": \"echo\", \"input\": {}}",
                                           .headers = {"Prefer: wait=121"}}),
                       400);
    ASSERT_STR_CONTAINS(d, "0 to 120 (FLEET_MAX_WAIT_S)");
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s?wait=121",
                                                           tl_jstr(r->json, "id"))),
                                       400),
                        "0 to 120");
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 1);
}

TL_TEST(a_lower_max_wait_refuses_what_60_allowed) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_WAIT_S=5"}});
    const char *d =
        ASSERT_PROBLEM(tl_request(f, "/v1/jobs",
                                  (tl_req){.body = "{\"model\": \"echo\", \"input\": {}}",
                                           .headers = {"Prefer: wait=30"}}),
                       400);
    ASSERT_STR_CONTAINS(d, "0 to 5 (FLEET_MAX_WAIT_S)");
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 0);
}

/* ------------------------------------------------------------ the job list ---------- */

static int count_status(const json_t *jobs, const char *status) {
    int n = 0;
    for (size_t i = 0; i < json_array_size(jobs); i++)
        if (strcmp(tl_jstr(json_array_get(jobs, i), "status"), status) == 0) n++;
    return n;
}

TL_TEST(list_takes_several_statuses_and_shows_queue_positions) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker: jobs stay queued */
    const char *a = tl_job_submit(f, "echo", "{\"n\": 1}");
    const char *b = tl_job_submit(f, "echo", "{\"n\": 2}");
    const char *c = tl_job_submit(f, "echo", "{\"n\": 3}");
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", c)), 200);

    tl_resp *r = tl_get(f, "/v1/jobs?status=queued,cancelled");
    ASSERT_HTTP_STATUS(r, 200);
    json_t *jobs = tl_jget(r->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(jobs), 3);
    ASSERT_EQ_INT(count_status(jobs, "queued"), 2);
    ASSERT_EQ_INT(count_status(jobs, "cancelled"), 1);
    /* Newest first: c (cancelled: no position), b, a; each queued one as GET shows it. */
    ASSERT_EQ_STR(tl_jstr(json_array_get(jobs, 0), "id"), c);
    ASSERT_NULL(tl_jget(json_array_get(jobs, 0), "queue_position"));
    ASSERT_EQ_STR(tl_jstr(json_array_get(jobs, 1), "id"), b);
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 1), "queue_position"),
                  tl_jint(tl_job_get(f, b), "queue_position"));
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 2), "queue_position"),
                  tl_jint(tl_job_get(f, a), "queue_position"));
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 2), "queue_position"), 1);
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 1), "queue_position"), 2);

    /* The unfiltered list shows the positions too; one status still works. */
    jobs = tl_jget(tl_get(f, "/v1/jobs")->json, "jobs");
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 2), "queue_position"), 1);
    jobs = tl_jget(tl_get(f, "/v1/jobs?status=cancelled")->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(jobs), 1);
    jobs = tl_jget(tl_get(f, "/v1/jobs?status=running,succeeded")->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(jobs), 0);

    /* Refused: an unknown status, one given twice, an empty one. */
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status=queued,done"), 400),
                        "separated by commas");
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status=queued,queued"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status=queued,"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status=,queued"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status="), 400);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(a_job_takes_its_own_max_attempts_and_queue_ttl),
        TL_CASE(out_of_bounds_max_attempts_and_queue_ttl_are_422_naming_the_bound),
        TL_CASE(a_bound_below_the_default_is_the_default),
        TL_CASE(the_longest_wait_is_the_gateways_setting),
        TL_CASE(a_lower_max_wait_refuses_what_60_allowed),
        TL_CASE(list_takes_several_statuses_and_shows_queue_positions),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
