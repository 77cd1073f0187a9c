/* http_test.c: request ids, health and readiness, models, stats (docs/api.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* ------------------------------------------------------------ X-Request-ID ---------- */

TL_TEST(request_id_is_echoed_when_sent) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_resp *r = tl_request(f, "/healthz", (tl_req){.headers = {"X-Request-ID: it-health-1"}});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_resp_header(r, "X-Request-ID"), "it-health-1");

    r = tl_request(f, "/v1/jobs",
                   (tl_req){.method = "POST",
                            .body = "{\"model\": \"echo\", \"input\": {}}",
                            .headers = {"X-Request-ID: it-submit-2"}});
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_resp_header(r, "X-Request-ID"), "it-submit-2");
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id);
    /* The job remembers the request that created it. */
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "request_id"), "it-submit-2");

    r = tl_request(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
                   (tl_req){.headers = {"X-Request-ID: it-missing-3"}});
    ASSERT_PROBLEM(r, 404);
    ASSERT_EQ_STR(tl_resp_header(r, "X-Request-ID"), "it-missing-3");
    ASSERT_EQ_STR(tl_jstr(r->json, "request_id"), "it-missing-3");

    r = tl_request(f, "/v1/jobs",
                   (tl_req){.method = "POST",
                            .body = "{\"model\": 1}",
                            .headers = {"X-Request-ID: it-bad-4"}});
    ASSERT_PROBLEM(r, 400);
    ASSERT_EQ_STR(tl_resp_header(r, "X-Request-ID"), "it-bad-4");
}

TL_TEST(request_id_is_generated_when_absent_or_invalid) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_resp *a = tl_get(f, "/healthz");
    tl_resp *b = tl_get(f, "/healthz");
    const char *ra = tl_resp_header(a, "X-Request-ID");
    const char *rb = tl_resp_header(b, "X-Request-ID");
    ASSERT_NOT_NULL(ra);
    ASSERT_NOT_NULL(rb);
    ASSERT_GT_INT(strlen(ra), 0);
    ASSERT_NE_STR(ra, rb);

    tl_resp *p = tl_get(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV");
    ASSERT_PROBLEM(p, 404); /* also checks body request_id == header */
    ASSERT_GT_INT(strlen(tl_resp_header(p, "X-Request-ID")), 0);

    /* Too long (over 128 characters): replaced by a generated one. */
    char longid[200];
    memset(longid, 'r', 150);
    longid[150] = '\0';
    tl_resp *c = tl_request(f, "/healthz",
                            (tl_req){.headers = {tl_printf("X-Request-ID: %s", longid)}});
    ASSERT_HTTP_STATUS(c, 200);
    const char *rc = tl_resp_header(c, "X-Request-ID");
    ASSERT_NOT_NULL(rc);
    ASSERT_GT_INT(strlen(rc), 0);
    ASSERT_NE_STR(rc, longid);
}

/* A submit without an X-Request-ID names its job after the request id the gateway made
 * ("req_" and a job id): the job shows that request_id without its hash storing it. A
 * batch's first job takes it; the others store the request id. */
TL_TEST(a_generated_request_id_names_the_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_resp *r = tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": {}}");
    ASSERT_HTTP_STATUS(r, 202);
    const char *rid = tl_resp_header(r, "X-Request-ID");
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(rid);
    ASSERT_NOT_NULL(id);
    ASSERT_EQ_STR(rid, tl_printf("req_%s", id));
    const char *key = tl_printf("{%s}:job:%s", f->prefix, id);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS %s request_id", key), 0);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "request_id"), rid);

    /* A client's own id is stored, whatever its form. */
    r = tl_request(f, "/v1/jobs",
                   (tl_req){.method = "POST",
                            .body = "{\"model\": \"echo\", \"input\": {}}",
                            .headers = {"X-Request-ID: req_01ARZ3NDEKTSV4RRFFQ69G5FAV"}});
    ASSERT_HTTP_STATUS(r, 202);
    id = tl_jstr(r->json, "id");
    ASSERT_NE_STR(id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "request_id"), "req_01ARZ3NDEKTSV4RRFFQ69G5FAV");

    r = tl_post(f, "/v1/jobs/batch",
                "{\"jobs\": [{\"model\": \"echo\", \"input\": {}},"
                " {\"model\": \"echo\", \"input\": {}}]}");
    ASSERT_HTTP_STATUS(r, 200);
    rid = tl_resp_header(r, "X-Request-ID");
    json_t *jobs = json_object_get(r->json, "jobs");
    ASSERT_EQ_INT(json_array_size(jobs), 2);
    const char *first = tl_jstr(json_array_get(jobs, 0), "id");
    const char *second = tl_jstr(json_array_get(jobs, 1), "id");
    ASSERT_EQ_STR(rid, tl_printf("req_%s", first));
    ASSERT_NE_STR(second, first);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, first), "request_id"), rid);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, second), "request_id"), rid);
}

/* ------------------------------------------------------------ health ---------------- */

TL_TEST(healthz_and_readyz_answer_200) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_resp *h = tl_get(f, "/healthz");
    ASSERT_HTTP_STATUS(h, 200);
    ASSERT_STR_CONTAINS(h->content_type, "application/json");
    ASSERT_EQ_JSON(h->json, tl_json("{\"status\": \"ok\"}"));
    tl_resp *r = tl_get(f, "/readyz");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->content_type, "application/json");
    ASSERT_EQ_JSON(r->json, tl_json("{\"status\": \"ready\"}"));
}

typedef struct readiness {
    tl_fleet *f;
    long want;
    long last;
} readiness;

static bool readyz_is(void *arg) {
    readiness *w = arg;
    w->last = tl_get(w->f, "/readyz")->status;
    return w->last == w->want;
}

TL_TEST(readyz_follows_redis_and_submit_is_503_without_it) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_redis_stop(f->redis);

    readiness w = {f, 503, 0};
    if (!tl_wait_for(readyz_is, &w, TL_WAIT_MS))
        FAILF("GET /readyz still answers %ld %d s after Redis stopped (expected 503)", w.last,
              TL_WAIT_MS / 1000);
    tl_resp *h = tl_get(f, "/healthz");
    ASSERT_HTTP_STATUS(h, 200); /* liveness does not depend on Redis */

    tl_resp *s = tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": {}}");
    ASSERT_PROBLEM(s, 503);
    ASSERT_NOT_NULL(tl_resp_header(s, "Retry-After"));
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 503);

    /* Redis comes back (empty: no AOF, no script cache): the gateway reconnects, loads
     * its scripts again and serves. */
    tl_redis_restart(f->redis);
    w.want = 200;
    if (!tl_wait_for(readyz_is, &w, TL_WAIT_MS))
        FAILF("GET /readyz answers %ld %d s after Redis came back (expected 200)", w.last,
              TL_WAIT_MS / 1000);
    const char *id = tl_job_submit(f, "echo", "{\"after\": \"restart\"}");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");
}

TL_TEST(unknown_route_is_404_problem) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ASSERT_PROBLEM(tl_get(f, "/v1/no-such-route"), 404);
    ASSERT_PROBLEM(tl_get(f, "/v2/jobs"), 404);
}

/* ------------------------------------------------------------ models ---------------- */

static json_t *find_model(json_t *models, const char *name) {
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *n = tl_jstr(m, "name");
        if (n && strcmp(n, name) == 0) return m;
    }
    return NULL;
}

typedef struct model_watch {
    tl_fleet *f;
    const char *model;
    const char *field;
    long long want;
    char last[4096];
} model_watch;

static bool model_field_is(void *arg) {
    model_watch *w = arg;
    tl_resp *r = tl_get(w->f, "/v1/models");
    ASSERT_HTTP_STATUS(r, 200);
    snprintf(w->last, sizeof(w->last), "%s", r->body);
    json_t *m = find_model(tl_jget(r->json, "models"), w->model);
    return m && tl_jis_int(m, w->field) && json_integer_value(tl_jget(m, w->field)) == w->want;
}

TL_TEST(models_lists_configured_models_with_workers_and_depth) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    model_watch w = {.f = f, .model = "echo", .field = "workers", .want = 1};
    if (!tl_wait_for(model_field_is, &w, TL_WAIT_MS))
        FAILF("echo never showed workers=1 in GET /v1/models; last: %s", w.last);

    /* Two sleep jobs and no sleep worker: a queue depth of 2. */
    tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    w = (model_watch){.f = f, .model = "sleep", .field = "queue_depth", .want = 2};
    if (!tl_wait_for(model_field_is, &w, TL_WAIT_MS))
        FAILF("sleep never showed queue_depth=2 in GET /v1/models; last: %s", w.last);

    tl_resp *r = tl_get(f, "/v1/models");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->content_type, "application/json");
    json_t *models = tl_jget(r->json, "models");
    ASSERT_TRUE(json_is_array(models));
    static const char *const names[] = {"echo", "sleep"};
    for (int i = 0; i < 2; i++) {
        json_t *m = find_model(models, names[i]);
        if (!m) FAILF("model %s missing from GET /v1/models: %s", names[i], r->body);
        tl_log("%s", tl_json_text(m));
        ASSERT_TRUE(tl_jis_int(m, "workers"));
        ASSERT_TRUE(tl_jis_int(m, "queue_depth"));
        ASSERT_TRUE(tl_jis_int(m, "running"));
        ASSERT_NOT_NULL(tl_jget(m, "backend"));
        ASSERT_NOT_NULL(tl_jget(m, "max_batch"));
    }
    json_t *echo = find_model(models, "echo");
    json_t *sleep = find_model(models, "sleep");
    ASSERT_EQ_INT(tl_jint(echo, "workers"), 1);
    ASSERT_TRUE(json_is_string(tl_jget(echo, "backend")));
    ASSERT_GE_INT(tl_jint(echo, "max_batch"), 1);
    ASSERT_EQ_INT(tl_jint(sleep, "workers"), 0);
    ASSERT_EQ_INT(tl_jint(sleep, "queue_depth"), 2);
    ASSERT_EQ_INT(tl_jint(sleep, "running"), 0);

    /* The worker announces the protocol version it speaks in its registration hash
     * (docs/protocol.md: FLEET_PROTOCOL_VERSION, 6 in this release). */
    redisReply *workers = tl_redis_cmd(f->rc, "ZRANGE {%s}:workers 0 -1", f->prefix);
    ASSERT_TRUE(workers->type == REDIS_REPLY_ARRAY && workers->elements == 1);
    redisReply *proto = tl_redis_cmd(f->rc, "HGET {%s}:worker:%s protocol", f->prefix,
                                     workers->element[0]->str);
    ASSERT_TRUE(proto->type == REDIS_REPLY_STRING);
    ASSERT_EQ_STR(proto->str, "6");
}

/* ------------------------------------------------------------ stats ----------------- */

static const char *const COUNTERS[] = {"queued", "running",   "submitted", "succeeded",
                                       "failed", "cancelled", "expired",   NULL};

typedef struct stats_watch {
    tl_fleet *f;
    const char *expect; /* JSON: {"echo": {"submitted": 2, ...}, "totals": {...}} */
    char last[4096];
} stats_watch;

/* True when every counter named in expect has that value (models.<m>.<c>, totals.<c>). */
static bool stats_match(void *arg) {
    stats_watch *w = arg;
    tl_resp *r = tl_get(w->f, "/v1/stats");
    ASSERT_HTTP_STATUS(r, 200);
    snprintf(w->last, sizeof(w->last), "%s", r->body);
    json_t *want = tl_json(w->expect);
    const char *group;
    json_t *counters;
    json_object_foreach(want, group, counters) {
        const char *base = strcmp(group, "totals") == 0 ? "totals" : tl_printf("models.%s", group);
        const char *c;
        json_t *v;
        json_object_foreach(counters, c, v) {
            json_t *got = tl_jget(r->json, tl_printf("%s.%s", base, c));
            if (!json_is_integer(got) || json_integer_value(got) != json_integer_value(v))
                return false;
        }
    }
    return true;
}

TL_TEST(stats_count_jobs_by_model_and_status) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *e1 = tl_job_submit(f, "echo", "{\"n\": 1}");
    const char *e2 = tl_job_submit(f, "echo", "{\"n\": 2}");
    tl_job_wait_status(f, e1, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, e2, "succeeded", TL_WAIT_MS);
    const char *s1 = tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", s1)), 200);

    stats_watch w = {
        .f = f,
        .expect = "{\"echo\": {\"submitted\": 2, \"succeeded\": 2, \"queued\": 0, \"running\": 0,"
                  "           \"failed\": 0, \"cancelled\": 0},"
                  " \"sleep\": {\"submitted\": 2, \"queued\": 1, \"running\": 0,"
                  "            \"succeeded\": 0, \"cancelled\": 1},"
                  " \"totals\": {\"submitted\": 4, \"succeeded\": 2, \"cancelled\": 1,"
                  "              \"queued\": 1, \"running\": 0, \"failed\": 0}}",
    };
    if (!tl_wait_for(stats_match, &w, TL_WAIT_MS))
        FAILF("GET /v1/stats does not match %s\n      last: %s", w.expect, w.last);

    tl_resp *r = tl_get(f, "/v1/stats");
    ASSERT_STR_CONTAINS(r->content_type, "application/json");
    /* Shape: every counter is an integer in every model and in the totals. */
    static const char *const groups[] = {"models.echo", "models.sleep", "totals", NULL};
    for (int g = 0; groups[g]; g++)
        for (int c = 0; COUNTERS[c]; c++) {
            const char *path = tl_printf("%s.%s", groups[g], COUNTERS[c]);
            if (!tl_jis_int(r->json, path))
                FAILF("GET /v1/stats: no integer at %s: %s", path, r->body);
        }
    /* The totals are the sums over the models. */
    for (int c = 0; COUNTERS[c]; c++) {
        long long sum = 0;
        const char *name;
        json_t *m;
        json_object_foreach(tl_jget(r->json, "models"), name, m) sum += tl_jint(m, COUNTERS[c]);
        ASSERT_EQ_INT(tl_jint(r->json, tl_printf("totals.%s", COUNTERS[c])), sum);
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(request_id_is_echoed_when_sent),
        TL_CASE(request_id_is_generated_when_absent_or_invalid),
        TL_CASE(a_generated_request_id_names_the_job),
        TL_CASE(healthz_and_readyz_answer_200),
        TL_CASE(readyz_follows_redis_and_submit_is_503_without_it),
        TL_CASE(unknown_route_is_404_problem),
        TL_CASE(models_lists_configured_models_with_workers_and_depth),
        TL_CASE(stats_count_jobs_by_model_and_status),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
