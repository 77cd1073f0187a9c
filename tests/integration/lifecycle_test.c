/* lifecycle_test.c: a job from submit to result, through the HTTP API (docs/api.md).
 * Each case starts its own Redis, gateway and workers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* An input that exercises the JSON -> msgpack -> JSON round trip: nesting, UTF-8 (raw and
 * escaped, including a surrogate pair), integers beyond 2^53, negative and fractional
 * numbers, booleans, null, empty containers and escapes. (No 1.0-style reals: JSON does
 * not distinguish 1.0 from 1, so neither does this test.) */
static const char *const RICH_INPUT =
    "{\"text\": \"h\\u00e9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
    "\\ud83d\\ude00 \\\"quoted\\\" back\\\\slash\\ttab\\nnewline\","
    " \"numbers\": [0, -17, 42, 9007199254740993, -9223372036854775808, 3.25, -0.5,"
    " 6.02e23, 1e-7],"
    " \"flags\": {\"yes\": true, \"no\": false, \"nothing\": null},"
    " \"nested\": {\"a\": {\"b\": {\"c\": [[1, [2, [3, {\"d\": \"deep\"}]]]]}}},"
    " \"empty\": {\"obj\": {}, \"arr\": [], \"str\": \"\"},"
    " \"\xc3\xbcnic\xc3\xb8"
    "de key\": 1}";

TL_TEST(echo_job_lifecycle_returns_its_input) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *body = tl_printf("{\"model\": \"echo\", \"input\": %s}", RICH_INPUT);
    tl_resp *r = tl_post(f, "/v1/jobs", body);
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_STR_CONTAINS(r->content_type, "application/json");
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id);
    ASSERT_EQ_INT(strlen(id), 26);
    const char *self = tl_printf("/v1/jobs/%s", id);
    const char *location = tl_resp_header(r, "Location");
    ASSERT_NOT_NULL(location);
    ASSERT_EQ_STR(location, self);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
    ASSERT_EQ_STR(tl_jstr(r->json, "model"), "echo");
    ASSERT_EQ_STR(tl_jstr(r->json, "priority"), "normal");
    ASSERT_NOT_NULL(tl_jstr(r->json, "created_at"));
    ASSERT_GE_INT(tl_jint(r->json, "queue_position"), 1);
    ASSERT_EQ_STR(tl_jstr(r->json, "links.self"), self);
    ASSERT_EQ_STR(tl_jstr(r->json, "links.result"), tl_printf("%s/result", self));

    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(job, "id"), id);
    ASSERT_EQ_STR(tl_jstr(job, "model"), "echo");
    ASSERT_NOT_NULL(tl_jstr(job, "created_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "started_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "finished_at"));
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_NULL(tl_jget(job, "error"));
    ASSERT_NULL(tl_jget(job, "queue_position"));

    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_STR_CONTAINS(res->content_type, "application/json");
    ASSERT_NOT_NULL(res->json);
    ASSERT_EQ_JSON(res->json, tl_json(RICH_INPUT));
}

/* A queued job is one key: its input lives inside the job hash, cut into parts small
 * enough that Redis keeps the hash listpack-encoded (docs/redis.md). Inputs of one part,
 * of four (no in_n field: the parts present), of five (in_n says so) and one too long to
 * cut (a hashtable then) come back whole from the worker. */
TL_TEST(a_queued_job_is_one_key_holding_its_input) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker yet: they stay queued */
    const size_t lens[4] = {5, 200, 300, 5000};
    const char *const in_n[4] = {NULL, NULL, "5", NULL};
    const char *ids[4], *inputs[4];
    for (int i = 0; i < 4; i++) {
        char *text = tl_printf("%*s", (int)lens[i], "");
        for (size_t j = 0; j < lens[i]; j++) text[j] = (char)('a' + (j * 7 + (size_t)i) % 26);
        inputs[i] = tl_printf("{\"text\": \"%s\"}", text);
        tl_resp *r = tl_post(f, "/v1/jobs",
                             tl_printf("{\"model\": \"echo\", \"input\": %s}", inputs[i]));
        ASSERT_HTTP_STATUS(r, 202);
        ids[i] = tl_jstr(r->json, "id");
        ASSERT_NOT_NULL(ids[i]);
        ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:job:%s*", f->prefix, ids[i])).n, 1);
        /* The API never shows the input's parts. */
        tl_resp *g = tl_get(f, tl_printf("/v1/jobs/%s", ids[i]));
        ASSERT_HTTP_STATUS(g, 200);
        ASSERT_NULL(tl_jget(g->json, "in_n"));
        ASSERT_NULL(tl_jget(g->json, "in1"));
        redisReply *n = tl_redis_cmd(f->rc, "HGET {%s}:job:%s in_n", f->prefix, ids[i]);
        if (in_n[i]) ASSERT_EQ_STR(n->str, in_n[i]);
        else ASSERT_EQ_INT(n->type, REDIS_REPLY_NIL);
    }
    redisReply *enc = tl_redis_cmd(f->rc, "OBJECT ENCODING {%s}:job:%s", f->prefix, ids[1]);
    ASSERT_EQ_STR(enc->str, "listpack");
    tl_fleet_add_worker(f, "echo");
    for (int i = 0; i < 4; i++) {
        tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
        tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", ids[i]));
        ASSERT_HTTP_STATUS(res, 200);
        ASSERT_EQ_JSON(res->json, tl_json(inputs[i]));
    }
}

/* A job hash holds only the fields that say something (docs/redis.md, "The job hash"):
 * a fresh job with the protocol's defaults has no id, updated_ms, attempts, priority,
 * max_attempts, ttl_s, queue_ttl_s or timeout_s field, while GET, the list and the
 * answers after it ran show them as before. A job that differs from a default holds it. */
TL_TEST(a_fresh_jobs_hash_leaves_out_its_default_fields) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker yet: it stays queued */
    const char *id = tl_job_submit(f, "echo", "{\"text\": \"hi\"}");
    const char *key = tl_printf("{%s}:job:%s", f->prefix, id);
    static const char *const dropped[] = {"id",           "updated_ms", "attempts",    "priority",
                                          "max_attempts", "ttl_s",      "queue_ttl_s", "timeout_s"};
    for (size_t i = 0; i < TL_COUNT(dropped); i++)
        if (tl_redis_int(f->rc, "HEXISTS %s %s", key, dropped[i]) != 0)
            FAILF("a fresh job's hash holds %s", dropped[i]);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS %s created_ms", key), 1);
    ASSERT_GT_INT(tl_redis_int(f->rc, "TTL %s", key), 86000); /* the default queue TTL */

    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "id"), id);
    ASSERT_EQ_STR(tl_jstr(job, "priority"), "normal");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    ASSERT_EQ_INT(tl_jint(job, "max_attempts"), 3);
    ASSERT_EQ_INT(tl_jint(job, "timeout_s"), 0);
    ASSERT_EQ_INT(tl_jint(job, "ttl_s"), 86400);
    tl_resp *l = tl_get(f, "/v1/jobs");
    ASSERT_HTTP_STATUS(l, 200);
    json_t *listed = json_array_get(tl_jget(l->json, "jobs"), 0);
    ASSERT_NOT_NULL(listed);
    ASSERT_EQ_STR(tl_jstr(listed, "id"), id);
    ASSERT_EQ_STR(tl_jstr(listed, "priority"), "normal");
    ASSERT_EQ_INT(tl_jint(listed, "max_attempts"), 3);

    /* Values other than the defaults are kept. */
    tl_resp *r = tl_post(f, "/v1/jobs",
                         "{\"model\": \"echo\", \"input\": {}, \"priority\": \"high\", "
                         "\"ttl_s\": 600, \"timeout_s\": 30}");
    ASSERT_HTTP_STATUS(r, 202);
    const char *id2 = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id2);
    const char *key2 = tl_printf("{%s}:job:%s", f->prefix, id2);
    redisReply *h = tl_redis_cmd(f->rc, "HMGET %s priority ttl_s timeout_s", key2);
    ASSERT_EQ_INT(h->elements, 3);
    ASSERT_NOT_NULL(h->element[0]->str);
    ASSERT_EQ_STR(h->element[0]->str, "high");
    ASSERT_NOT_NULL(h->element[1]->str);
    ASSERT_EQ_STR(h->element[1]->str, "600");
    ASSERT_NOT_NULL(h->element[2]->str);
    ASSERT_EQ_STR(h->element[2]->str, "30");

    /* Run: the attempt and the update are written, the defaults still read. */
    tl_fleet_add_worker(f, "echo");
    job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_INT(tl_jint(job, "max_attempts"), 3);
    ASSERT_EQ_INT(tl_jint(job, "ttl_s"), 86400);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS %s attempts", key), 1);
    ASSERT_GT_INT(tl_redis_int(f->rc, "TTL %s", key), 86000); /* the default result TTL */
    job = tl_job_wait_status(f, id2, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(job, "priority"), "high");
    ASSERT_EQ_INT(tl_jint(job, "ttl_s"), 600);
    ASSERT_EQ_INT(tl_jint(job, "timeout_s"), 30);
    ASSERT_LE_INT(tl_redis_int(f->rc, "TTL %s", key2), 600);
}

TL_TEST(echo_result_as_msgpack_on_request) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *id = tl_job_submit(f, "echo", "{\"a\": 1}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *r = tl_request(f, tl_printf("/v1/jobs/%s/result", id),
                            (tl_req){.headers = {"Accept: application/msgpack"}});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->content_type, "application/msgpack");
    /* {"a": 1} in msgpack: fixmap(1) fixstr(1) "a" positive fixint 1 */
    ASSERT_EQ_INT(r->body_len, 4);
    ASSERT_TRUE(memcmp(r->body, "\x81\xa1\x61\x01", 4) == 0);
}

typedef struct progress_watch {
    tl_fleet *f;
    const char *id;
    bool seen_mid; /* status running with 1 <= progress.done <= 4 */
    long long done, total;
    bool seen_425; /* GET result answered 425 while it ran */
    bool finished_early;
    char last[2048];
} progress_watch;

static bool watch_progress(void *arg) {
    progress_watch *w = arg;
    tl_resp *r = tl_get(w->f, tl_printf("/v1/jobs/%s", w->id));
    ASSERT_HTTP_STATUS(r, 200);
    snprintf(w->last, sizeof(w->last), "%s", r->body);
    const char *st = tl_jstr(r->json, "status");
    if (tl_status_is_final(st)) {
        w->finished_early = true;
        return true;
    }
    if (st && strcmp(st, "running") == 0 && tl_jis_int(r->json, "progress.done")) {
        long long done = tl_jint(r->json, "progress.done");
        if (done >= 1 && done <= 4) {
            w->seen_mid = true;
            w->done = done;
            w->total = tl_jis_int(r->json, "progress.total") ? tl_jint(r->json, "progress.total")
                                                             : -1;
            tl_resp *res = tl_get(w->f, tl_printf("/v1/jobs/%s/result", w->id));
            w->seen_425 = res->status == 425;
            if (!w->seen_425)
                tl_log("GET result while running answered %ld: %s", res->status, res->body);
            return true;
        }
    }
    return false;
}

TL_TEST(sleep_job_shows_progress_while_running_then_succeeds) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 1500, \"steps\": 5}");
    progress_watch w = {.f = f, .id = id};
    ASSERT_TRUE(tl_wait_for(watch_progress, &w, TL_WAIT_MS));
    if (w.finished_early)
        FAILF("the job finished before any mid-run progress was seen; last: %s", w.last);
    ASSERT_TRUE(w.seen_mid);
    ASSERT_EQ_INT(w.total, 5);
    ASSERT_TRUE(w.seen_425);

    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_NOT_NULL(tl_jstr(job, "started_at"));
    ASSERT_NOT_NULL(tl_jstr(job, "finished_at"));
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_JSON(res->json, tl_json("{\"slept_ms\": 1500, \"steps\": 5}"));
}

TL_TEST(result_of_a_queued_job_is_425_with_retry_after) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker: it stays queued */
    const char *id = tl_job_submit(f, "echo", "{\"x\": 1}");
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_PROBLEM(r, 425);
    const char *ra = tl_resp_header(r, "Retry-After");
    ASSERT_NOT_NULL(ra);
    ASSERT_GE_INT(atoi(ra), 1);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");
}

TL_TEST(delete_of_a_finished_job_is_409) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *id = tl_job_submit(f, "echo", "{\"x\": 2}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *r = tl_delete(f, tl_printf("/v1/jobs/%s", id));
    ASSERT_PROBLEM(r, 409);
    /* The refusal changed nothing: the job and its result are still there. */
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "succeeded");
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_JSON(res->json, tl_json("{\"x\": 2}"));
}

TL_TEST(failed_job_reports_its_error_and_result_is_409) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    /* A permanent model error fails the job at once (no retry). */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"fail\": \"bad page 3\"}");
    json_t *job = tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_STR_CONTAINS(tl_jstr(job, "error"), "bad page 3");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_NOT_NULL(tl_jstr(job, "finished_at"));
    const char *detail = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 409);
    ASSERT_STR_CONTAINS(detail, "bad page 3");
    ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 409);
}

/* A well-formed id that names no job is 404; a malformed one is 400 invalid-id
 * (api_rules_test has the cases of malformed ids). */
TL_TEST(unknown_ids_are_404_and_malformed_ids_400) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    static const struct {
        const char *id;
        long status;
    } ids[] = {
        {"01ARZ3NDEKTSV4RRFFQ69G5FAV", 404},  /* a valid ULID that was never submitted */
        {"not-a-job-id", 400},                /* malformed */
        {"01ARZ3NDEKTSV4RRFFQ69G5FA", 400},   /* one character short */
        {"01ARZ3NDEKTSV4RRFFQ69G5FAVX", 400}, /* one character long */
        {"%7B%7D*", 400},                     /* key-pattern characters */
    };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        tl_log("id %s", ids[i].id);
        ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", ids[i].id)), ids[i].status);
        ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/result", ids[i].id)), ids[i].status);
        ASSERT_PROBLEM(tl_delete(f, tl_printf("/v1/jobs/%s", ids[i].id)), ids[i].status);
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(echo_job_lifecycle_returns_its_input),
        TL_CASE(a_queued_job_is_one_key_holding_its_input),
        TL_CASE(a_fresh_jobs_hash_leaves_out_its_default_fields),
        TL_CASE(echo_result_as_msgpack_on_request),
        TL_CASE(sleep_job_shows_progress_while_running_then_succeeds),
        TL_CASE(result_of_a_queued_job_is_425_with_retry_after),
        TL_CASE(delete_of_a_finished_job_is_409),
        TL_CASE(failed_job_reports_its_error_and_result_is_409),
        TL_CASE(unknown_ids_are_404_and_malformed_ids_400),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
