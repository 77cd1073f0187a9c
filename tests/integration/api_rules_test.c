/* api_rules_test.c: two rules of the API (docs/api.md, "Query parameters" and "Job ids"):
 * an API route refuses a query parameter it does not read, or one given twice, with 400
 * invalid-query naming it, as the body parsers refuse an unknown field; and a path id that
 * cannot be a job id answers 400 invalid-id, saying what an id looks like, where a
 * well-formed id that names no job answers 404. Neither refusal changes anything. */
#include <string.h>

#include "testlib.h"

static long long dbsize(tl_fleet *f) { return tl_redis_int(f->rc, "DBSIZE"); }

/* ------------------------------------------------------------ query parameters ------ */

TL_TEST(unknown_query_parameters_are_refused_and_named) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *id = tl_job_submit(f, "echo", "{\"a\": 1}");
    long long keys = dbsize(f);
    long long submitted = tl_stat(f, "echo", "submitted");

    /* A typo in a list filter: refused, not a list of every job. */
    tl_resp *r = tl_get(f, "/v1/jobs?staus=failed");
    const char *detail = ASSERT_PROBLEM(r, 400);
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:invalid-query");
    ASSERT_STR_CONTAINS(detail, "GET /v1/jobs: unknown query parameter 'staus'");
    ASSERT_STR_CONTAINS(detail, "this route takes status, model, cursor, limit");
    /* Every unknown one is named (up to four), known ones are not. */
    detail = ASSERT_PROBLEM(tl_get(f, "/v1/jobs?limit=5&limt=5&x"), 400);
    ASSERT_STR_CONTAINS(detail, "parameters 'limt', 'x';");
    ASSERT_TRUE(strstr(detail, "'limit'") == NULL);

    /* A submit with a misspelt wait creates nothing. */
    r = tl_request(f, "/v1/jobs?wiat=5",
                   (tl_req){.method = "POST", .body = "{\"model\": \"echo\", \"input\": 1}"});
    detail = ASSERT_PROBLEM(r, 400);
    ASSERT_STR_CONTAINS(detail, "'wiat'");
    ASSERT_STR_CONTAINS(detail, "this route takes wait");

    /* Routes that read no query refuse any parameter. */
    detail = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result?format=csv", id)), 400);
    ASSERT_STR_CONTAINS(detail, "this route takes no query parameters");
    ASSERT_PROBLEM(tl_get(f, "/v1/models?all=1"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/stats?x=1"), 400);
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s?force=1", id)), 400);
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs/batch?wait=1",
                              (tl_req){.method = "POST", .body = "{\"jobs\": []}"}),
                   400);

    /* A parameter given twice is refused rather than read once. */
    detail = ASSERT_PROBLEM(tl_get(f, "/v1/jobs?status=queued&limit=2&status=failed"), 400);
    ASSERT_STR_CONTAINS(detail, "'status' is given more than once");

    /* Nothing changed: the cancel and the submit were refused before they ran. */
    ASSERT_EQ_INT(dbsize(f), keys);
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), submitted);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");

    /* The parameters a route reads, and empty queries, still work. */
    r = tl_get(f, "/v1/jobs?status=queued&model=echo&limit=5");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(r->json, "jobs"), 0), "id"), id);
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/jobs?"), 200);
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/jobs?limit=1&&"), 200);
    ASSERT_HTTP_STATUS(tl_get(f, tl_printf("/v1/jobs/%s?wait=0", id)), 200);
    ASSERT_HTTP_STATUS(tl_request(f, "/v1/jobs?wait=0",
                                  (tl_req){.method = "POST",
                                           .body = "{\"model\": \"echo\", \"input\": 2}"}),
                       202);
    /* Health checks are not API routes: a probe's query is not theirs to refuse. */
    ASSERT_HTTP_STATUS(tl_get(f, "/healthz?probe=1"), 200);
}

/* ------------------------------------------------------------ job ids --------------- */

TL_TEST(malformed_ids_are_400_and_unknown_ids_404) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    long long keys = dbsize(f);
    static const char *const bad[] = {
        "not-a-job-id",                /* not base32 */
        "01ARZ3NDEKTSV4RRFFQ69G5FA",   /* one character short */
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX", /* one character long */
        "01arz3ndektsv4rrffq69g5fav",  /* lower case */
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  /* I is not Crockford base32 */
        "%7B%7D*",                     /* key-pattern characters */
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        tl_log("id %s", bad[i]);
        const char *d = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", bad[i])), 400);
        ASSERT_STR_CONTAINS(d, "is not a job id");
        ASSERT_STR_CONTAINS(d, "26 characters of Crockford base32");
        ASSERT_EQ_STR(tl_jstr(tl_get(f, tl_printf("/v1/jobs/%s", bad[i]))->json, "type"),
                      "urn:fleet:problem:invalid-id");
        ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", bad[i])), 400);
        ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/events", bad[i])), 400);
        ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", bad[i])), 400);
    }
    /* Longer than any buffer of the router: still named, cut short. */
    char longid[300];
    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const char *d = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", longid)), 400);
    ASSERT_STR_CONTAINS(d, "AAAA...' is not a job id");
    /* A well-formed id that names no job is not found. */
    const char *d404 = ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404);
    ASSERT_STR_CONTAINS(d404, "no job with id");
    ASSERT_PROBLEM(tl_delete(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404);
    ASSERT_EQ_INT(dbsize(f), keys);
}

/* A tenant written as `fleetctl tenant add` writes it (tenant_test does the same). */
static void add_tenant(tl_fleet *f, const char *name, const char *key) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role tenant", f->prefix, hex, name);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}

TL_TEST(with_api_keys_the_key_is_checked_first) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_AUTH=on"}});
    add_tenant(f, "acme", "fk_acme_api_rules_1");
    /* Without a key the route tells nothing, not even that the id is malformed. */
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/not-a-job-id"), 401);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs?staus=x"), 401);
    tl_req with_key = {.headers = {"Authorization: Bearer fk_acme_api_rules_1"}};
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs/not-a-job-id", with_key), 400);
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs?staus=x", with_key), 400);
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", with_key), 404);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(unknown_query_parameters_are_refused_and_named),
        TL_CASE(malformed_ids_are_400_and_unknown_ids_404),
        TL_CASE(with_api_keys_the_key_is_checked_first),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
