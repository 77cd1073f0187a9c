/* validation_test.c: what POST /v1/jobs refuses, with which code and which detail, and
 * that a refused request changes nothing in Redis (docs/api.md "Submit"). */
#include <stdio.h>
#include <string.h>

#include "testlib.h"

static tl_fleet *start_gateway(void) { return tl_fleet_start(&(tl_fleet_opts){0}); }

/* Posts body as JSON and asserts a problem with the given status whose detail contains
 * each of the NULL-terminated words (case-insensitive). */
static void expect_refusal(tl_fleet *f, const char *body, long status, const char *const *words) {
    tl_log("POST %s", body);
    tl_resp *r = tl_post(f, "/v1/jobs", body);
    const char *detail = ASSERT_PROBLEM(r, status);
    for (int i = 0; words && words[i]; i++) ASSERT_STR_CONTAINS_CI(detail, words[i]);
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

TL_TEST(bad_json_is_400_with_line_and_column) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {\"a\": 1,}}", 400,
                   WORDS("json", "line", "column"));
    expect_refusal(f, "{\"model\": \"echo\",\n \"input\": ", 400, WORDS("line", "column"));
    expect_refusal(f, "not json at all", 400, WORDS("line", "column"));
}

TL_TEST(empty_body_is_400) {
    tl_fleet *f = start_gateway();
    tl_resp *r = tl_request(f, "/v1/jobs", (tl_req){.method = "POST", .body = "", .body_len = 0});
    ASSERT_PROBLEM(r, 400);
}

TL_TEST(json_array_body_is_400) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "[{\"model\": \"echo\", \"input\": {}}]", 400, WORDS("object"));
    expect_refusal(f, "\"echo\"", 400, WORDS("object"));
}

TL_TEST(missing_model_is_400_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"input\": {\"a\": 1}}", 400, WORDS("model"));
}

TL_TEST(missing_input_is_400_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"echo\"}", 400, WORDS("input"));
}

TL_TEST(model_not_a_string_is_400_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": 5, \"input\": {}}", 400, WORDS("model"));
    expect_refusal(f, "{\"model\": [\"echo\"], \"input\": {}}", 400, WORDS("model"));
}

TL_TEST(priority_not_a_string_is_400_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {}, \"priority\": 1}", 400,
                   WORDS("priority"));
}

TL_TEST(unknown_field_is_400_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {}, \"colour\": \"red\"}", 400,
                   WORDS("colour"));
}

TL_TEST(text_plain_is_415_and_json_with_charset_is_accepted) {
    tl_fleet *f = start_gateway();
    const char *body = "{\"model\": \"echo\", \"input\": {}}";
    tl_resp *r = tl_request(f, "/v1/jobs",
                            (tl_req){.method = "POST", .body = body, .content_type = "text/plain"});
    ASSERT_PROBLEM(r, 415);
    r = tl_request(f, "/v1/jobs",
                   (tl_req){.method = "POST",
                            .body = body,
                            .content_type = "application/json; charset=utf-8"});
    ASSERT_HTTP_STATUS(r, 202);
}

/* {"model":"echo","input":{"pad":"xxxx..."}} of exactly total bytes. */
static const char *body_of_size(size_t total) {
    const char *head = "{\"model\":\"echo\",\"input\":{\"pad\":\"";
    const char *tail = "\"}}";
    size_t fixed = strlen(head) + strlen(tail);
    if (total < fixed) FAILF("body_of_size(%zu) too small", total);
    char *pad = tl_alloc(total - fixed + 1);
    memset(pad, 'x', total - fixed);
    return tl_printf("%s%s%s", head, pad, tail);
}

TL_TEST(body_over_max_body_is_413) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_BODY=1024"}});
    const char *big = body_of_size(4096);
    ASSERT_EQ_INT(strlen(big), 4096);
    tl_resp *r = tl_post(f, "/v1/jobs", big);
    ASSERT_PROBLEM(r, 413);
    /* Just under the limit is fine: the limit is the body size, not something else. */
    r = tl_post(f, "/v1/jobs", body_of_size(1000));
    ASSERT_HTTP_STATUS(r, 202);
}

TL_TEST(unknown_model_is_422_naming_it) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"no-such-model\", \"input\": {}}", 422, WORDS("no-such-model"));
}

TL_TEST(values_out_of_range_are_422) {
    tl_fleet *f = start_gateway();
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {}, \"priority\": \"urgent\"}", 422,
                   WORDS("priority"));
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {}, \"ttl_s\": 5}", 422, WORDS("ttl_s"));
    expect_refusal(f, "{\"model\": \"echo\", \"input\": {}, \"timeout_s\": -1}", 422,
                   WORDS("timeout_s"));
}

/* ------------------------------------------------------------ nothing changes ------- */

typedef struct snapshot {
    tl_strlist keys;
    redisReply **dumps; /* DUMP of each key, same order */
} snapshot;

static snapshot take_snapshot(tl_fleet *f) {
    snapshot s;
    s.keys = tl_redis_keys(f->rc, "*");
    s.dumps = tl_alloc((s.keys.n + 1) * sizeof(redisReply *));
    for (size_t i = 0; i < s.keys.n; i++) s.dumps[i] = tl_redis_cmd(f->rc, "DUMP %s", s.keys.v[i]);
    return s;
}

static void assert_same_snapshot(const snapshot *a, const snapshot *b, const char *after) {
    for (size_t i = 0; i < b->keys.n; i++)
        if (!tl_strlist_contains(&a->keys, b->keys.v[i]))
            FAILF("after %s: new key %s", after, b->keys.v[i]);
    for (size_t i = 0; i < a->keys.n; i++)
        if (!tl_strlist_contains(&b->keys, a->keys.v[i]))
            FAILF("after %s: key %s disappeared", after, a->keys.v[i]);
    ASSERT_EQ_INT(a->keys.n, b->keys.n);
    for (size_t i = 0; i < a->keys.n; i++) {
        const redisReply *x = a->dumps[i], *y = b->dumps[i];
        if (x->type != y->type || x->len != y->len ||
            (x->len && memcmp(x->str, y->str, x->len) != 0))
            FAILF("after %s: the value of %s changed", after, a->keys.v[i]);
    }
}

TL_TEST(rejected_requests_change_nothing_in_redis) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_BODY=1024"}});
    /* One accepted job first, so that the model's stream, stats and the tenant's index
     * exist and a refused request would have something to change. */
    tl_job_submit(f, "echo", "{\"seed\": true}");
    snapshot before = take_snapshot(f);
    long long dbsize = tl_redis_int(f->rc, "DBSIZE");
    tl_log("%lld keys before", dbsize);

    static const struct {
        const char *body;
        const char *content_type;
        long status;
    } bad[] = {
        {"{\"model\": \"echo\", \"input\": {\"a\": 1,}}", NULL, 400},
        {"[{\"model\": \"echo\", \"input\": {}}]", NULL, 400},
        {"{\"input\": {}}", NULL, 400},
        {"{\"model\": \"echo\"}", NULL, 400},
        {"{\"model\": 5, \"input\": {}}", NULL, 400},
        {"{\"model\": \"echo\", \"input\": {}, \"priority\": 1}", NULL, 400},
        {"{\"model\": \"echo\", \"input\": {}, \"colour\": \"red\"}", NULL, 400},
        {"{\"model\": \"echo\", \"input\": {}}", "text/plain", 415},
        {"{\"model\": \"no-such-model\", \"input\": {}}", NULL, 422},
        {"{\"model\": \"echo\", \"input\": {}, \"priority\": \"urgent\"}", NULL, 422},
        {"{\"model\": \"echo\", \"input\": {}, \"ttl_s\": 5}", NULL, 422},
    };
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        tl_resp *r = tl_request(f, "/v1/jobs",
                                (tl_req){.method = "POST",
                                         .body = bad[i].body,
                                         .content_type = bad[i].content_type});
        ASSERT_PROBLEM(r, bad[i].status);
        snapshot after = take_snapshot(f);
        assert_same_snapshot(&before, &after,
                             tl_printf("POST %s (%ld)", bad[i].body, bad[i].status));
    }
    ASSERT_PROBLEM(tl_post(f, "/v1/jobs", body_of_size(4096)), 413);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404);
    ASSERT_PROBLEM(tl_delete(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404);
    snapshot after = take_snapshot(f);
    assert_same_snapshot(&before, &after, "413 and 404 requests");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "DBSIZE"), dbsize);

    /* The comparison does see changes: an accepted job changes the snapshot. */
    tl_job_submit(f, "echo", "{\"seed\": false}");
    ASSERT_GT_INT(tl_redis_int(f->rc, "DBSIZE"), dbsize);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(bad_json_is_400_with_line_and_column),
        TL_CASE(empty_body_is_400),
        TL_CASE(json_array_body_is_400),
        TL_CASE(missing_model_is_400_naming_it),
        TL_CASE(missing_input_is_400_naming_it),
        TL_CASE(model_not_a_string_is_400_naming_it),
        TL_CASE(priority_not_a_string_is_400_naming_it),
        TL_CASE(unknown_field_is_400_naming_it),
        TL_CASE(text_plain_is_415_and_json_with_charset_is_accepted),
        TL_CASE(body_over_max_body_is_413),
        TL_CASE(unknown_model_is_422_naming_it),
        TL_CASE(values_out_of_range_are_422),
        TL_CASE(rejected_requests_change_nothing_in_redis),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
