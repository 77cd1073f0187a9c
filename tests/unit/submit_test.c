/* submit_test: the submit body's rules and the query parser (gateway/submit.c, query.c). */
#include <string.h>

#include "fleet/codec.h"
#include "query.h"
#include "submit.h"
#include "testlib.h"

static gw_problem refuse(const char *body, const char *ctype) {
    gw_job_request r;
    gw_problem p;
    memset(&p, 0, sizeof p);
    if (gw_submit_parse(body, strlen(body), ctype, 3600, &r, &p) == 0)
        FAILF("body %s was accepted", body);
    ASSERT_NULL(r.input);
    return p;
}

TL_TEST(accepts_a_full_job) {
    const char *b = "{\"model\":\"echo\",\"input\":{\"x\":[1,2]},\"priority\":\"high\","
                    "\"timeout_s\":30,\"ttl_s\":600,\"metadata\":{\"k\":\"v\"}}";
    gw_job_request r;
    gw_problem p;
    ASSERT_EQ_INT(gw_submit_parse(b, strlen(b), "application/json; charset=utf-8", 3600, &r, &p), 0);
    ASSERT_EQ_STR(r.model, "echo");
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_HIGH);
    ASSERT_EQ_INT(r.timeout_s, 30);
    ASSERT_EQ_INT(r.ttl_s, 600);
    ASSERT_EQ_STR(r.metadata_json, "{\"k\":\"v\"}");
    char err[64];
    json_t *in = fleet_msgpack_to_json(r.input, r.input_len, err, sizeof err);
    json_t *want = json_loads("{\"x\":[1,2]}", 0, NULL);
    ASSERT_EQ_JSON(in, want);
    json_decref(in);
    json_decref(want);
    gw_job_request_free(&r);
}

TL_TEST(defaults) {
    const char *b = "{\"model\":\"echo\",\"input\":null}";
    gw_job_request r;
    gw_problem p;
    ASSERT_EQ_INT(gw_submit_parse(b, strlen(b), NULL, 3600, &r, &p), 0);
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_NORMAL);
    ASSERT_EQ_INT(r.ttl_s, 3600);
    ASSERT_EQ_INT(r.timeout_s, 0);
    ASSERT_NULL(r.metadata_json);
    gw_job_request_free(&r);
}

TL_TEST(refusals_say_what_is_wrong) {
    gw_problem p = refuse("{\"model\": \"echo\", \"input\": tru}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "line 1, column");
    p = refuse("[1,2]", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "got an array");
    p = refuse("{\"input\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'model' is required");
    p = refuse("{\"model\":\"echo\"}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'input' is required");
    p = refuse("{\"model\":5,\"input\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'model' must be a string, got an integer");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"priority\":1}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "'priority' must be a string");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"priority\":\"urgent\"}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    p = refuse("{\"model\":\"echo\",\"input\":1,\"modle\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "unknown field 'modle'");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"ttl_s\":5}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "between 60 and 604800");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"timeout_s\":\"5\"}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    p = refuse("{\"model\":\"Bad Name\",\"input\":1}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    p = refuse("{\"model\":\"echo\",\"input\":1,\"metadata\":[1]}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'metadata' must be an object");
    p = refuse("{\"model\":\"echo\",\"model\":\"sleep\",\"input\":1}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    p = refuse("", NULL);
    ASSERT_STR_CONTAINS(p.detail, "empty");
    p = refuse("{\"model\":\"echo\",\"input\":1}", "text/plain");
    ASSERT_EQ_INT(p.status, 415);
    p = refuse("{\"model\":\"echo\",\"input\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "nesting");
}

TL_TEST(query_parameters) {
    char v[32];
    ASSERT_EQ_INT(gw_query_get("status=queued&limit=10", "limit", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "10");
    ASSERT_EQ_INT(gw_query_get("status=queued&limit=10", "model", v, sizeof v), 0);
    ASSERT_EQ_INT(gw_query_get("m=a%20b+c", "m", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "a b c");
    ASSERT_EQ_INT(gw_query_get("m=%zz", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("m=%00", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("m=%2", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("limitx=1&limit=2", "limit", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "2");
    ASSERT_EQ_INT(gw_query_get("flag", "flag", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "");
    ASSERT_EQ_INT(gw_query_get("m=0123456789012345678901234567890123456789", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get(NULL, "m", v, sizeof v), 0);
}

TL_TEST(wait_preference) {
    long secs;
    bool hdr;
    char err[128];
    ASSERT_EQ_INT(gw_wait_seconds(NULL, NULL, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
    ASSERT_EQ_INT(gw_wait_seconds("wait=10", NULL, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 10);
    ASSERT_TRUE(hdr);
    ASSERT_EQ_INT(gw_wait_seconds("respond-async, Wait = 5 ; handling=lenient", NULL, &secs, &hdr,
                                  err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 5);
    ASSERT_EQ_INT(gw_wait_seconds("return=minimal", NULL, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
    ASSERT_EQ_INT(gw_wait_seconds("wait=3", "wait=60", &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 60);
    ASSERT_FALSE(hdr);
    ASSERT_EQ_INT(gw_wait_seconds("wait=61", NULL, &secs, &hdr, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "0 to 60");
    ASSERT_EQ_INT(gw_wait_seconds("wait=-1", NULL, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds("wait=", NULL, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds("wait=1x", NULL, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=abc", &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=1000", &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "limit=3", &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(accepts_a_full_job),
        TL_CASE(defaults),
        TL_CASE(refusals_say_what_is_wrong),
        TL_CASE(query_parameters),
        TL_CASE(wait_preference),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
