/* expiry_test.c: a job whose keys expired after it ended answers 410 expired, with when
 * and how it ended, for FLEET_TOMBSTONE_S, then 404 (docs/api.md, "Expired jobs"). The
 * tombstone (field <id> of {prefix}:gone:<the id's first 7 characters>) is written by the
 * script that ends the job; its keys'
 * expiry is made here with PEXPIRE, as Redis would make it at the end of ttl_s (60 s at
 * least). Tenant-scoped: another tenant gets 404. A deleted job leaves none, and a retried
 * one has none until it ends again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

static void add_tenant(tl_fleet *f, const char *name, const char *key) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role user", f->prefix, hex, name);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}

/* A request with an API key (NULL: none). */
static tl_resp *as(tl_fleet *f, const char *key, const char *method, const char *path,
                   const char *body) {
    tl_req req = {.method = method, .body = body};
    int h = 0;
    if (key) req.headers[h++] = tl_printf("Authorization: Bearer %s", key);
    return tl_request(f, path, req);
}

static const char *submit_as(tl_fleet *f, const char *key, const char *model, const char *input) {
    tl_resp *r = as(f, key, "POST", "/v1/jobs",
                    tl_printf("{\"model\": \"%s\", \"input\": %s, \"ttl_s\": 60}", model, input));
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

static json_t *wait_status_as(tl_fleet *f, const char *key, const char *id, const char *want) {
    tl_resp *r = NULL;
    for (int i = 0; i < 2; i++) {
        r = as(f, key, "GET", tl_printf("/v1/jobs/%s?wait=20", id), NULL);
        ASSERT_HTTP_STATUS(r, 200);
        if (strcmp(tl_jstr(r->json, "status"), want) == 0) return r->json;
    }
    FAILF("job %s is %s, not %s", id, tl_jstr(r->json, "status"), want);
}

typedef struct gone_probe {
    tl_fleet *f;
    const char *id;
} gone_probe;

static bool job_keys_gone(void *arg) {
    gone_probe *p = arg;
    return tl_redis_int(p->f->rc, "EXISTS {%s}:job:%s {%s}:job:%s:result", p->f->prefix, p->id,
                        p->f->prefix, p->id) == 0;
}

/* The job's keys expire now, as they would at the end of its ttl_s. */
static void expire_now(tl_fleet *f, const char *id) {
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s 1", f->prefix, id);
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s:result 1", f->prefix, id);
    gone_probe p = {f, id};
    ASSERT_WAIT_FOR(job_keys_gone, &p, TL_WAIT_MS);
}

/* Asserts a 410 expired problem saying the job ended in `status`; returns expired_at. */
static const char *assert_expired(const tl_resp *r, const char *status) {
    ASSERT_PROBLEM(r, 410);
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:expired");
    ASSERT_EQ_STR(tl_jstr(r->json, "title"), "Job expired");
    ASSERT_EQ_STR(tl_jstr(r->json, "job_status"), status);
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "detail"), "expired at");
    const char *at = tl_jstr(r->json, "expired_at");
    ASSERT_NOT_NULL(at);
    /* RFC 3339 UTC with milliseconds: "2026-11-23T16:50:01.123Z" */
    ASSERT_EQ_INT((long long)strlen(at), 24);
    ASSERT_EQ_INT(at[10], 'T');
    ASSERT_EQ_INT(at[23], 'Z');
    return at;
}

/* ms since the epoch as the API writes it (RFC 3339 UTC with milliseconds). */
static const char *rfc3339_ms(long long ms) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[24];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return tl_printf("%s.%03lldZ", buf, ms % 1000);
}

static const char *hget(tl_fleet *f, const char *id, const char *field) {
    redisReply *v = tl_redis_cmd(f->rc, "HGET {%s}:job:%s %s", f->prefix, id, field);
    return v->type == REDIS_REPLY_STRING ? tl_printf("%s", v->str) : NULL;
}

/* The hash that holds the job's tombstone: its bucket, named by the id's first 7
 * characters (shared/include/fleet/keys.h, FLEET_GONE_BUCKET_LEN). */
static const char *bucket(tl_fleet *f, const char *id) {
    return tl_printf("{%s}:gone:%.7s", f->prefix, id);
}

static const char *tombstone(tl_fleet *f, const char *id) {
    redisReply *v = tl_redis_cmd(f->rc, "HGET %s %s", bucket(f, id), id);
    return v->type == REDIS_REPLY_STRING ? tl_printf("%s", v->str) : NULL;
}

/* A succeeded job: its tombstone is written as it ends ("<expires_at_ms> succeeded acme",
 * living ttl_s + FLEET_TOMBSTONE_S). Once its keys expired, GET of the job, its result, its
 * event stream and a waiting GET answer 410 expired with expired_at, to its tenant only;
 * once the tombstone expired too, 404. */
TL_TEST(an_expired_job_answers_410_to_its_tenant_then_404) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    add_tenant(f, "acme", "key-acme");
    add_tenant(f, "other", "key-other");
    const char *id = submit_as(f, "key-acme", "echo", "{\"n\": 1}");
    json_t *job = wait_status_as(f, "key-acme", id, "succeeded");
    ASSERT_NOT_NULL(job);
    long long finished_ms = atoll(hget(f, id, "finished_ms"));
    /* The default while stores no field. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS {%s}:job:%s tomb_s", f->prefix, id), 0);

    const char *t = tombstone(f, id);
    ASSERT_NOT_NULL(t);
    tl_log("tombstone: %s", t);
    char *rest = NULL;
    long long at_ms = strtoll(t, &rest, 10);
    long long gone_ms = strtoll(rest, &rest, 10);
    ASSERT_EQ_STR(rest, " succeeded acme");
    ASSERT_EQ_INT(at_ms, finished_ms + 60 * 1000);
    ASSERT_EQ_INT(gone_ms, at_ms + 86400LL * 1000);
    long long ttl = tl_redis_int(f->rc, "TTL %s", bucket(f, id));
    ASSERT_GT_INT(ttl, 86400);
    ASSERT_LE_INT(ttl, 86400 + 60);
    /* While the job lives it answers as itself. */
    ASSERT_HTTP_STATUS(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s", id), NULL), 200);

    expire_now(f, id);
    const char *expired_at =
        assert_expired(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s", id), NULL), "succeeded");
    ASSERT_EQ_STR(expired_at, rfc3339_ms(at_ms));
    assert_expired(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s/result", id), NULL),
                   "succeeded");
    assert_expired(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s/events", id), NULL),
                   "succeeded");
    assert_expired(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s?wait=5", id), NULL),
                   "succeeded");
    /* Another tenant learns nothing: 404 as for any unknown id. */
    tl_resp *r = as(f, "key-other", "GET", tl_printf("/v1/jobs/%s", id), NULL);
    ASSERT_PROBLEM(r, 404);
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:job-not-found");
    ASSERT_PROBLEM(as(f, "key-other", "GET", tl_printf("/v1/jobs/%s/result", id), NULL), 404);

    /* The tombstone's own end (made now, as at the end of FLEET_TOMBSTONE_S): 404. */
    /* Its hash lives as long as its longest tombstone, so one whose gone_at has passed may
     * still be there: it answers 404 too. */
    tl_redis_cmd(f->rc, "HSET %s %s %s", bucket(f, id), id,
                 tl_printf("%lld 1 succeeded acme", at_ms));
    r = as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s", id), NULL);
    ASSERT_PROBLEM(r, 404);
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:job-not-found");
}

/* FLEET_TOMBSTONE_S travels with the job (field tomb_s), so the worker's finish and a
 * queued cancel give the tombstone that while; FLEET_TOMBSTONE_S=0 writes none: the id
 * answers 404 once its keys expired. */
TL_TEST(fleet_tombstone_s_sets_the_while_and_0_turns_it_off) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_TOMBSTONE_S=120"}});
    const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(hget(f, id, "tomb_s"), "120");
    long long ttl = tl_redis_int(f->rc, "TTL %s", bucket(f, id));
    ASSERT_GT_INT(ttl, 120);
    ASSERT_LE_INT(ttl, 120 + 86400);
    /* a queued cancel (the gateway's script) ends it the same way */
    const char *queued = tl_job_submit(f, "sleep", "{\"ms\": 1}"); /* no sleep worker */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", queued)), 200);
    ASSERT_STR_CONTAINS(tombstone(f, queued), " cancelled ");
    expire_now(f, queued);
    assert_expired(tl_get(f, tl_printf("/v1/jobs/%s", queued)), "cancelled");

    f->opts.gateway_env[0] = "FLEET_TOMBSTONE_S=0";
    tl_fleet_start_gateway(f);
    const char *off = tl_job_submit(f, "echo", "{\"n\": 3}");
    tl_job_wait_status(f, off, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_STR(hget(f, off, "tomb_s"), "0");
    ASSERT_NULL(tombstone(f, off));
    expire_now(f, off);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", off)), 404);
}

/* DELETE ?purge=true takes the tombstone with the job: 404, not 410. A retry takes it off
 * (the job is queued again) until the job ends again, when it is written anew. */
TL_TEST(deleted_jobs_leave_no_tombstone_and_retried_ones_a_new_one) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_NOT_NULL(tombstone(f, id));
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id)), 200);
    ASSERT_NULL(tombstone(f, id));
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s", id)), 404);

    /* cancelled while queued (no sleep worker yet), retried: queued, no tombstone */
    const char *again = tl_job_submit(f, "sleep", "{\"ms\": 1, \"steps\": 1}");
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", again)), 200);
    const char *first = tombstone(f, again);
    ASSERT_STR_CONTAINS(first, " cancelled ");
    tl_resp *r = tl_request(f, tl_printf("/v1/jobs/%s/retry", again),
                            (tl_req){.method = "POST", .body = "", .content_type = ""});
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
    ASSERT_NULL(tombstone(f, again));
    tl_fleet_add_worker(f, "sleep");
    tl_job_wait_status(f, again, "succeeded", TL_WAIT_MS);
    const char *second = tombstone(f, again);
    ASSERT_STR_CONTAINS(second, " succeeded ");
    ASSERT_GT_INT(strtoll(second, NULL, 10), strtoll(first, NULL, 10));
}

typedef struct stat_probe {
    tl_fleet *f;
    long long want;
} stat_probe;

static bool expired_counted(void *arg) {
    stat_probe *p = arg;
    return tl_stat(p->f, "echo", "expired") >= p->want;
}

/* A job whose keys expired while it was queued (on the stream, or on its tenant's wait
 * list and then fed onto it) leaves a tombstone once a worker's claim finds it gone:
 * 410 expired, job_status "expired", to its tenant; 404 to another. */
TL_TEST(a_job_expired_while_queued_answers_410_once_found) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}}); /* no worker yet */
    add_tenant(f, "acme", "key-acme");
    add_tenant(f, "other", "key-other");
    /* The gateway's ready target is 8: the first 8 go onto the stream, 2 onto a wait list. */
    const char *ids[10];
    for (int i = 0; i < 10; i++) ids[i] = submit_as(f, "key-acme", "echo", "{\"n\": 1}");
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s 1", f->prefix, ids[0]);
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s 1", f->prefix, ids[9]);
    gone_probe g0 = {f, ids[0]}, g9 = {f, ids[9]};
    ASSERT_WAIT_FOR(job_keys_gone, &g0, TL_WAIT_MS);
    ASSERT_WAIT_FOR(job_keys_gone, &g9, TL_WAIT_MS);
    /* Before a worker reaches them nothing says they were there. */
    ASSERT_PROBLEM(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s", ids[0]), NULL), 404);

    tl_fleet_add_worker(f, "echo");
    stat_probe sp = {f, 2};
    ASSERT_WAIT_FOR(expired_counted, &sp, TL_WAIT_MS);
    for (int i = 1; i < 9; i++) wait_status_as(f, "key-acme", ids[i], "succeeded");
    const int gone[2] = {0, 9};
    for (int k = 0; k < 2; k++) {
        const char *id = ids[gone[k]];
        assert_expired(as(f, "key-acme", "GET", tl_printf("/v1/jobs/%s", id), NULL), "expired");
        ASSERT_PROBLEM(as(f, "key-other", "GET", tl_printf("/v1/jobs/%s", id), NULL), 404);
        ASSERT_STR_CONTAINS(tombstone(f, id), " expired acme");
    }
    ASSERT_EQ_INT(tl_stat(f, "echo", "expired"), 2);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(an_expired_job_answers_410_to_its_tenant_then_404),
        TL_CASE(fleet_tombstone_s_sets_the_while_and_0_turns_it_off),
        TL_CASE(deleted_jobs_leave_no_tombstone_and_retried_ones_a_new_one),
        TL_CASE(a_job_expired_while_queued_answers_410_once_found),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
