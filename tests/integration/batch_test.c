/* batch_test.c: POST /v1/jobs/batch (docs/api.md): up to 1,000 jobs in one request, each
 * accepted or refused on its own, in order. */
#include <string.h>

#include "testlib.h"

TL_TEST(batch_submits_each_job_and_reports_each_outcome) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_resp *r = tl_post(f, "/v1/jobs/batch",
                         "{\"jobs\": [{\"model\": \"echo\", \"input\": {\"n\": 1}},"
                         " {\"model\": \"nope\", \"input\": 1},"
                         " {\"model\": \"echo\"},"
                         " {\"model\": \"echo\", \"input\": {\"n\": 2}, \"priority\": \"high\"}]}");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "accepted"), 2);
    ASSERT_EQ_INT(tl_jint(r->json, "refused"), 2);
    json_t *jobs = tl_jget(r->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(jobs), 4);
    const char *a = json_string_value(json_object_get(json_array_get(jobs, 0), "id"));
    const char *d = json_string_value(json_object_get(json_array_get(jobs, 3), "id"));
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(d);
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 1), "error.status"), 422);
    ASSERT_STR_CONTAINS(tl_jstr(json_array_get(jobs, 1), "error.detail"), "nope");
    ASSERT_EQ_INT(tl_jint(json_array_get(jobs, 2), "error.status"), 400);
    ASSERT_STR_CONTAINS(tl_jstr(json_array_get(jobs, 2), "error.detail"), "input");
    json_t *ja = tl_job_wait_status(f, a, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(ja, "model"), "echo");
    tl_job_wait_status(f, d, "succeeded", TL_WAIT_MS);
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", d));
    ASSERT_EQ_INT(tl_jint(res->json, "n"), 2);
    /* Only the two accepted jobs exist. */
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), 2);
}

TL_TEST(batch_of_a_thousand_and_bad_batches) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    size_t cap = 1001 * 48 + 64;
    char *body = tl_alloc(cap);
    size_t n = (size_t)snprintf(body, cap, "{\"jobs\": [");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s{\"model\": \"echo\", \"input\": %d}",
                              i ? "," : "", i);
    snprintf(body + n, cap - n, "]}");
    tl_resp *r = tl_post(f, "/v1/jobs/batch", body);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "accepted"), 1000);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), 1000);
    /* 1,001 is too many; nothing is written. */
    n = (size_t)snprintf(body, cap, "{\"jobs\": [");
    for (int i = 0; i < 1001; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s{\"model\": \"echo\", \"input\": %d}",
                              i ? "," : "", i);
    snprintf(body + n, cap - n, "]}");
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs/batch", body), 413);
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs/batch", "{\"jobs\": []}"), 400);
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs/batch", "[1, 2]"), 400);
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs/batch", "{\"jobs\": [1], \"x\": 1}"), 400);
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs/batch", "{\"jobs\": [1"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/batch"), 405);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), 1000);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(batch_submits_each_job_and_reports_each_outcome),
        TL_CASE(batch_of_a_thousand_and_bad_batches),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
