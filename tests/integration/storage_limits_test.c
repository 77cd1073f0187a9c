/* storage_limits_test.c: a tenant's max_finished and max_bytes (docs/api.md, "Storage
 * limits"). Its finished jobs go onto its kept list as they end; a submit of the tenant
 * first deletes the oldest finished ones while it is over a limit (counted per model in
 * <model>:evicted). Queued and running jobs are never removed, an entry whose job was
 * retried since is skipped, and a tenant without limits pays nothing (no mark, no list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* A tenant with API key `key` and, when field is not NULL, that limit set to value. */
static void add_tenant(tl_fleet *f, const char *name, const char *key, const char *field,
                       const char *value) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    if (field) tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s %s %s", f->prefix, name, field, value);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role user", f->prefix, hex, name);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}

static const char *str_or_null(const redisReply *v) {
    return v->type == REDIS_REPLY_STRING ? tl_printf("%s", v->str) : NULL;
}

static tl_resp *as(tl_fleet *f, const char *key, const char *method, const char *path,
                   const char *body) {
    tl_req req = {.method = method, .body = body};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    return tl_request(f, path, req);
}

static const char *submit_as(tl_fleet *f, const char *key, const char *model, const char *input) {
    tl_resp *r = as(f, key, "POST", "/v1/jobs",
                    tl_printf("{\"model\": \"%s\", \"input\": %s}", model, input));
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

static const char *status_as(tl_fleet *f, const char *key, const char *id) {
    tl_resp *r = as(f, key, "GET", tl_printf("/v1/jobs/%s", id), NULL);
    if (r->status == 404) return "404";
    ASSERT_HTTP_STATUS(r, 200);
    return tl_jstr(r->json, "status");
}

/* Submits and waits until the job succeeded, so that jobs finish in submit order. */
static const char *run_as(tl_fleet *f, const char *key, const char *input) {
    const char *id = submit_as(f, key, "echo", input);
    for (int i = 0; i < 3; i++) {
        tl_resp *r = as(f, key, "GET", tl_printf("/v1/jobs/%s?wait=20", id), NULL);
        ASSERT_HTTP_STATUS(r, 200);
        if (strcmp(tl_jstr(r->json, "status"), "succeeded") == 0) return id;
    }
    FAILF("job %s did not succeed", id);
}

static long long kept_len(tl_fleet *f, const char *tenant) {
    return tl_redis_int(f->rc, "LLEN {%s}:kept:%s", f->prefix, tenant);
}

/* The byte sum key, and the sum of the bytes of the list's entries: always equal. Both
 * read at one moment (one script), as a worker may finish a job between two reads. */
static long long kept_bytes(tl_fleet *f, const char *tenant) {
    redisReply *both = tl_redis_cmd(
        f->rc, "EVAL %s 2 {%s}:kept:%s:bytes {%s}:kept:%s",
        "return {redis.call('GET', KEYS[1]) or '0', redis.call('LRANGE', KEYS[2], 0, -1)}",
        f->prefix, tenant, f->prefix, tenant);
    ASSERT_EQ_INT((long long)both->elements, 2);
    long long sum = atoll(both->element[0]->str);
    const redisReply *l = both->element[1];
    long long entries = 0;
    for (size_t i = 0; i < l->elements; i++) {
        const char *last = strrchr(l->element[i]->str, ' ');
        ASSERT_NOT_NULL(last);
        entries += atoll(last + 1);
    }
    ASSERT_EQ_INT(sum, entries);
    return sum;
}

/* submitted = queued + running + succeeded + failed + cancelled + expired holds: evicted
 * is a count beside them, like dead_lettered. */
static void assert_counters_balance(tl_fleet *f, const char *model) {
    static const char *const states[] = {"queued", "running",   "succeeded",
                                         "failed", "cancelled", "expired"};
    long long sum = 0;
    for (size_t i = 0; i < 6; i++) sum += tl_stat(f, model, states[i]);
    ASSERT_EQ_INT(sum, tl_stat(f, model, "submitted"));
}

/* max_finished 3: each submit of the tenant deletes its oldest finished jobs while it has
 * more than 3 (their hash, result and tombstone), counted as evicted; the newest stay. A
 * queued job older than all of them stays. Another tenant without limits: no keep field,
 * no kept list. */
TL_TEST(max_finished_keeps_the_newest_finished_jobs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    add_tenant(f, "acme", "key-acme", "max_finished", "3");
    add_tenant(f, "free", "key-free", NULL, NULL);
    const char *waiting = submit_as(f, "key-acme", "sleep", "{\"ms\": 1}"); /* no sleep worker */
    const char *ids[6];
    for (int i = 0; i < 6; i++) ids[i] = run_as(f, "key-acme", tl_printf("{\"n\": %d}", i));
    /* the submits of ids[4] and ids[5] each found 4 finished: one went each time */
    ASSERT_EQ_INT(kept_len(f, "acme"), 4);
    ASSERT_EQ_INT(tl_stat(f, "echo", "evicted"), 2);
    ASSERT_GT_INT(tl_redis_int(f->rc, "TTL {%s}:kept:acme", f->prefix), 0);

    submit_as(f, "key-acme", "echo", "{\"n\": 6}");
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_STR(status_as(f, "key-acme", ids[i]), "404");
        ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s {%s}:job:%s:result", f->prefix,
                                   ids[i], f->prefix, ids[i]),
                      0);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS %s %s",
                                   tl_printf("{%s}:gone:%.7s", f->prefix, ids[i]), ids[i]),
                      0);
    }
    for (int i = 3; i < 6; i++) ASSERT_EQ_STR(status_as(f, "key-acme", ids[i]), "succeeded");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:result", f->prefix, ids[5]), 1);
    ASSERT_EQ_STR(status_as(f, "key-acme", waiting), "queued");
    ASSERT_EQ_INT(tl_stat(f, "echo", "evicted"), 3);
    ASSERT_STR_CONTAINS(tl_get(f, "/metrics")->body,
                        "fleet_job_events_total{model=\"echo\",event=\"evicted\"} 3\n");
    kept_bytes(f, "acme");
    assert_counters_balance(f, "echo");

    const char *free_id = run_as(f, "key-free", "{\"n\": 1}");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS {%s}:job:%s keep", f->prefix, free_id), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:kept:free", f->prefix), 0);
}

/* max_bytes: each finished job holds its input and its result (echo: about the same
 * bytes again). Four jobs finish under a high limit; lowered to 5000, the next submit
 * deletes the oldest until the finished jobs hold at most 5000 bytes, and no more. */
TL_TEST(max_bytes_deletes_the_oldest_until_under_the_limit) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    add_tenant(f, "acme", "key-acme", "max_bytes", "1000000");
    char pad[1001];
    memset(pad, 'x', 1000);
    pad[1000] = '\0';
    const char *ids[4];
    for (int i = 0; i < 4; i++) ids[i] = run_as(f, "key-acme", tl_printf("{\"s\": \"%s\"}", pad));
    long long before = kept_bytes(f, "acme");
    long long each = before / 4;
    tl_log("kept bytes of 4 jobs: %lld", before);
    ASSERT_GT_INT(before, 0);
    ASSERT_EQ_INT(before, 4 * each);
    /* field keep: the input's bytes (msgpack: the 1,000 characters and a few more) */
    const char *kv = str_or_null(tl_redis_cmd(f->rc, "HGET {%s}:job:%s keep", f->prefix, ids[0]));
    ASSERT_NOT_NULL(kv);
    long long keep = atoll(kv);
    ASSERT_GT_INT(keep, 1000);
    ASSERT_LE_INT(keep, 1020);
    ASSERT_GT_INT(each, keep); /* and the result's */

    tl_redis_cmd(f->rc, "HSET {%s}:tenant:acme max_bytes 5000", f->prefix);
    submit_as(f, "key-acme", "sleep", "{\"ms\": 1}"); /* no sleep worker: it stays queued */
    int gone = 0;
    while (before - gone * each > 5000) gone++;
    ASSERT_GT_INT(gone, 0);
    ASSERT_EQ_INT(kept_bytes(f, "acme"), before - gone * each);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ_STR(status_as(f, "key-acme", ids[i]), i < gone ? "404" : "succeeded");
    ASSERT_EQ_INT(tl_stat(f, "echo", "evicted"), gone);
}

/* An entry whose job runs again (retried since it ended) is dropped from the list without
 * touching the job; the job goes onto the list again when it ends again. */
TL_TEST(a_retried_job_is_not_evicted_while_it_is_queued) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    add_tenant(f, "acme", "key-acme", "max_finished", "1");
    const char *a = submit_as(f, "key-acme", "sleep", "{\"ms\": 1}"); /* no sleep worker */
    ASSERT_HTTP_STATUS(as(f, "key-acme", "DELETE", tl_printf("/v1/jobs/%s", a), NULL), 200);
    ASSERT_EQ_INT(kept_len(f, "acme"), 1);
    tl_req req = {.method = "POST", .body = "", .content_type = ""};
    req.headers[0] = "Authorization: Bearer key-acme";
    ASSERT_HTTP_STATUS(tl_request(f, tl_printf("/v1/jobs/%s/retry", a), req), 202);
    run_as(f, "key-acme", "{\"n\": 1}"); /* the list: a's old entry, then this one */
    ASSERT_EQ_INT(kept_len(f, "acme"), 2);
    submit_as(f, "key-acme", "echo", "{\"n\": 2}");
    ASSERT_EQ_STR(status_as(f, "key-acme", a), "queued");
    ASSERT_EQ_INT(tl_stat(f, "echo", "evicted"), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "evicted"), 0);
    /* a's old entry left the list (the one just submitted may have joined it) */
    redisReply *l = tl_redis_cmd(f->rc, "LRANGE {%s}:kept:acme 0 -1", f->prefix);
    for (size_t i = 0; i < l->elements; i++)
        if (strncmp(l->element[i]->str, a, strlen(a)) == 0)
            FAILF("the kept list still holds %s", l->element[i]->str);
}

/* fleetctl tenant add|set --max-finished --max-bytes write the record the gateway reads;
 * tenant show prints them; a bad value is a usage error that changes nothing. */
TL_TEST(fleetctl_sets_the_storage_limits) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *const *pre = TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix);
    tl_cmd_result cr = tl_fleetctl(pre, TL_ARGS("tenant", "add", "acme", "--max-finished", "100"));
    tl_expect_exit(&cr, 0);
    ASSERT_EQ_STR(str_or_null(tl_redis_cmd(f->rc, "HGET {%s}:tenant:acme max_finished", f->prefix)),
                  "100");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS {%s}:tenant:acme max_bytes", f->prefix), 0);
    cr = tl_fleetctl(pre, TL_ARGS("tenant", "set", "acme", "--max-bytes", "1048576"));
    tl_expect_exit(&cr, 0);
    ASSERT_EQ_STR(str_or_null(tl_redis_cmd(f->rc, "HGET {%s}:tenant:acme max_bytes", f->prefix)),
                  "1048576");
    cr = tl_fleetctl(pre, TL_ARGS("tenant", "show", "acme"));
    tl_expect_exit(&cr, 0);
    ASSERT_STR_CONTAINS(cr.out, "max finished:    100 jobs kept");
    ASSERT_STR_CONTAINS(cr.out, "max bytes:       1048576 bytes (1 MiB)");
    cr = tl_fleetctl(pre, TL_ARGS("tenant", "set", "acme", "--max-finished", "-1"));
    tl_expect_exit(&cr, 2);
    ASSERT_STR_CONTAINS(cr.err, "--max-finished");
    ASSERT_EQ_STR(str_or_null(tl_redis_cmd(f->rc, "HGET {%s}:tenant:acme max_finished", f->prefix)),
                  "100");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(max_finished_keeps_the_newest_finished_jobs),
        TL_CASE(max_bytes_deletes_the_oldest_until_under_the_limit),
        TL_CASE(a_retried_job_is_not_evicted_while_it_is_queued),
        TL_CASE(fleetctl_sets_the_storage_limits),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
