/* tenant_test.c: many tenants, one fleet (docs/security.md). API keys,
 * isolation, quotas, rate limits, the queue cap, Idempotency-Key, fair share and
 * priorities, against real gateways with FLEET_AUTH=on and real workers.
 *
 * Tenants are written straight into Redis here, in the layout `fleetctl tenant add` uses
 * (docs/redis.md): {prefix}:tenant:<name> settings, {prefix}:apikey:<sha256 of the key>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include "testlib.h"

/* A request with a key (NULL: none). */
static tl_resp *as(tl_fleet *f, const char *key, const char *method, const char *path,
                   const char *body) {
    tl_req req = {.method = method, .body = body, .timeout_ms = 40000};
    if (key) req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    return tl_request(f, path, req);
}

static const char *submit_as(tl_fleet *f, const char *key, const char *model, const char *input) {
    tl_resp *r = as(f, key, "POST", "/v1/jobs",
                    tl_printf("{\"model\": \"%s\", \"input\": %s}", model, input));
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

/* Jobs ever created, for every model (the submitted counters). */
static long long job_keys(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "HGETALL {%s}:stats", f->prefix);
    long long n = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (strstr(r->element[i]->str, ":submitted")) n += atoll(r->element[i + 1]->str);
    return n;
}

/* Every counter of the stats hash as one text, to see that a refused submit moved none
 * (the script raises the model's queued count first and takes it back on a refusal). */
static const char *stats_text(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "HGETALL {%s}:stats", f->prefix);
    const char *out = "";
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        out = tl_printf("%s%s=%s ", out, r->element[i]->str, r->element[i + 1]->str);
    return out;
}

/* The echo model's counters as submitted - (queued + running + succeeded + failed +
 * cancelled + expired): 0 whenever every script moved its counts whole (docs/redis.md),
 * even while a worker runs jobs. A refused submit that left a count raised makes it
 * non-zero. */
static long long echo_unbalanced(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc,
                                 "HMGET {%s}:stats echo:submitted echo:queued echo:running "
                                 "echo:succeeded echo:failed echo:cancelled echo:expired",
                                 f->prefix);
    long long n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        long long v = r->element[i]->type == REDIS_REPLY_STRING ? atoll(r->element[i]->str) : 0;
        n += i == 0 ? v : -v;
    }
    return n;
}

static long long started_ms(tl_fleet *f, const char *id) {
    redisReply *r = tl_redis_cmd(f->rc, "HGET {%s}:job:%s started_ms", f->prefix, id);
    return r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
}

#define AUTH_ON "FLEET_AUTH=on"

TL_TEST(api_keys_are_required_on_v1_routes) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {AUTH_ON, "FLEET_AUTH_CACHE_MS=300"}});
    tl_fleet_add_tenant(f, "acme", "fk_acme_secret_key_1", "tenant", "");
    const char *msg = ASSERT_PROBLEM(as(f, NULL, "GET", "/v1/jobs", NULL), 401);
    ASSERT_STR_CONTAINS(msg, "Authorization: Bearer");
    tl_resp *r = as(f, NULL, "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}");
    ASSERT_PROBLEM(r, 401);
    ASSERT_NOT_NULL(tl_resp_header(r, "WWW-Authenticate"));
    /* An unknown key gets the same kind of answer whatever tenants exist. */
    ASSERT_PROBLEM(as(f, "fk_nobody", "GET", "/v1/jobs", NULL), 401);
    ASSERT_PROBLEM(as(f, "fk_acme_secret_key_2", "GET", "/v1/stats", NULL), 401);
    ASSERT_EQ_INT(job_keys(f), 0);
    /* Health checks need no key. */
    ASSERT_HTTP_STATUS(as(f, NULL, "GET", "/healthz", NULL), 200);
    ASSERT_HTTP_STATUS(as(f, NULL, "GET", "/readyz", NULL), 200);

    const char *id = submit_as(f, "fk_acme_secret_key_1", "echo", "{\"a\": 1}");
    tl_resp *got = as(f, "fk_acme_secret_key_1", "GET", tl_printf("/v1/jobs/%s?wait=20", id), NULL);
    ASSERT_HTTP_STATUS(got, 200);
    ASSERT_EQ_STR(tl_jstr(got->json, "status"), "succeeded");
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:job:%s tenant", f->prefix, id)->str, "acme");

    /* A revoked tenant's key stops working (after the gateway's cache time). */
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:acme revoked 1", f->prefix);
    ASSERT_EVENTUALLY(as(f, "fk_acme_secret_key_1", "GET", "/v1/jobs", NULL)->status == 401,
                      TL_WAIT_MS);
}

TL_TEST(tenants_never_see_each_others_jobs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "a", "fk_a", "tenant", "");
    tl_fleet_add_tenant(f, "b", "fk_b", "tenant", "");
    const char *id = submit_as(f, "fk_a", "sleep", "{\"ms\": 3000, \"steps\": 3}");
    const char *b_own = submit_as(f, "fk_b", "sleep", "{\"ms\": 1}");
    /* Every route answers b exactly as for a job that does not exist. */
    const char *paths[] = {"", "/result", "/events", "?wait=2"};
    for (size_t i = 0; i < TL_COUNT(paths); i++) {
        tl_resp *theirs = as(f, "fk_b", "GET", tl_printf("/v1/jobs/%s%s", id, paths[i]), NULL);
        tl_resp *missing = as(f, "fk_b", "GET",
                              tl_printf("/v1/jobs/%s%s", "01JDQ7ZK5W3V8X9Y0A1B2C3D4E", paths[i]),
                              NULL);
        ASSERT_PROBLEM(theirs, 404);
        ASSERT_EQ_INT(missing->status, 404);
        ASSERT_EQ_STR(tl_jstr(theirs->json, "title"), tl_jstr(missing->json, "title"));
    }
    ASSERT_PROBLEM(as(f, "fk_b", "DELETE", tl_printf("/v1/jobs/%s", id), NULL), 404);
    tl_resp *list = as(f, "fk_b", "GET", "/v1/jobs", NULL);
    ASSERT_HTTP_STATUS(list, 200);
    json_t *jobs = tl_jget(list->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(jobs), 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), b_own);
    /* The owner still sees and controls it. */
    ASSERT_HTTP_STATUS(as(f, "fk_a", "GET", tl_printf("/v1/jobs/%s", id), NULL), 200);
    long del = as(f, "fk_a", "DELETE", tl_printf("/v1/jobs/%s", id), NULL)->status;
    ASSERT_TRUE(del == 200 || del == 202); /* queued or already running */
    /* Global stats are for admin keys; a tenant sees its own. */
    tl_resp *st = as(f, "fk_b", "GET", "/v1/stats", NULL);
    ASSERT_HTTP_STATUS(st, 200);
    ASSERT_EQ_STR(tl_jstr(st->json, "tenant.name"), "b");
    ASSERT_NULL(tl_jget(st->json, "models"));
    tl_fleet_add_tenant(f, "ops", "fk_ops", "admin", "");
    st = as(f, "fk_ops", "GET", "/v1/stats", NULL);
    ASSERT_NOT_NULL(tl_jget(st->json, "models.sleep"));
}

TL_TEST(max_active_and_rate_answer_429_and_write_nothing) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {AUTH_ON}}); /* no worker */
    tl_fleet_add_tenant(f, "small", "fk_small", "tenant", "max_active 2");
    submit_as(f, "fk_small", "echo", "1");
    submit_as(f, "fk_small", "echo", "2");
    long long before = job_keys(f);
    const char *counters = stats_text(f);
    tl_resp *r = as(f, "fk_small", "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 3}");
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 429), "2 jobs queued or running");
    ASSERT_NOT_NULL(tl_resp_header(r, "Retry-After"));
    ASSERT_EQ_INT(job_keys(f), before);
    ASSERT_EQ_STR(stats_text(f), counters);
    /* Once a job ends, there is room again. */
    tl_fleet_add_worker(f, "echo");
    ASSERT_EVENTUALLY(as(f, "fk_small", "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 4}")
                              ->status == 202,
                      TL_WAIT_MS);

    /* 1 submit per second, a burst of 2: the third at once is refused. */
    tl_fleet_add_tenant(f, "slow", "fk_slow", "tenant", "rate 1 burst 2");
    submit_as(f, "fk_slow", "echo", "1");
    submit_as(f, "fk_slow", "echo", "2");
    before = job_keys(f);
    r = as(f, "fk_slow", "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 3}");
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 429), "per second");
    const char *ra = tl_resp_header(r, "Retry-After");
    ASSERT_NOT_NULL(ra);
    ASSERT_TRUE(atoi(ra) >= 1);
    ASSERT_EQ_INT(job_keys(f), before);
    /* The worker runs the earlier jobs meanwhile, so the counters move: they must still
     * balance (the refusal took back what it raised). */
    ASSERT_EQ_INT(echo_unbalanced(f), 0);
    /* Another tenant is not slowed down by it. */
    tl_fleet_add_tenant(f, "other", "fk_other", "tenant", "");
    for (int i = 0; i < 5; i++) submit_as(f, "fk_other", "echo", "1");
    /* A tenant without max_active has no active set: nothing to count, nothing written
     * (a job of a model no worker serves stays queued while this looks). */
    submit_as(f, "fk_other", "sleep", "1");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:active:other", f->prefix), 0);
}

TL_TEST(full_model_queue_answers_503) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_QUEUE=3"}});
    for (int i = 0; i < 3; i++) tl_job_submit(f, "echo", "1");
    long long before = job_keys(f);
    const char *counters = stats_text(f);
    tl_resp *r = tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}");
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 503), "queue is full");
    ASSERT_NOT_NULL(tl_resp_header(r, "Retry-After"));
    ASSERT_EQ_INT(job_keys(f), before);
    ASSERT_EQ_STR(stats_text(f), counters);
    /* Other models are not affected. */
    tl_job_submit(f, "sleep", "{\"ms\": 1}");
}

TL_TEST(idempotency_key_replays_the_same_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "a", "fk_a", "tenant", "");
    tl_fleet_add_tenant(f, "b", "fk_b", "tenant", "");
    const char *body = "{\"model\": \"echo\", \"input\": {\"invoice\": 42}}";
    tl_req req = {.method = "POST", .body = body};
    req.headers[0] = "Authorization: Bearer fk_a";
    req.headers[1] = "Idempotency-Key: invoice-42";
    tl_resp *first = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(first, 202);
    ASSERT_NULL(tl_resp_header(first, "Idempotent-Replayed"));
    const char *id = tl_jstr(first->json, "id");
    tl_resp *again = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(again, 202);
    ASSERT_EQ_STR(tl_jstr(again->json, "id"), id);
    ASSERT_EQ_STR(tl_resp_header(again, "Idempotent-Replayed"), "true");
    ASSERT_EQ_STR(tl_resp_header(again, "Location"), tl_printf("/v1/jobs/%s", id));
    /* Also once it has finished: the same job, not a second one. */
    tl_request(f, tl_printf("/v1/jobs/%s?wait=20", id),
               (tl_req){.headers = {"Authorization: Bearer fk_a"}});
    again = tl_request(f, "/v1/jobs", req);
    ASSERT_EQ_STR(tl_jstr(again->json, "id"), id);
    ASSERT_EQ_STR(tl_jstr(again->json, "status"), "succeeded");
    ASSERT_EQ_INT(job_keys(f), 1);
    /* The same key with another body: 422, nothing new. */
    tl_req other = req;
    other.body = "{\"model\": \"echo\", \"input\": {\"invoice\": 43}}";
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(tl_request(f, "/v1/jobs", other), 422), "different request");
    /* Keys are per tenant: b's "invoice-42" is its own job. */
    tl_req theirs = req;
    theirs.headers[0] = "Authorization: Bearer fk_b";
    tl_resp *b = tl_request(f, "/v1/jobs", theirs);
    ASSERT_HTTP_STATUS(b, 202);
    ASSERT_NE_STR(tl_jstr(b->json, "id"), id);
    /* Malformed keys are refused. */
    tl_req bad = req;
    bad.headers[1] = tl_printf("Idempotency-Key: %0300d", 7);
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs", bad), 400);
}

/* The TTL of a key in seconds (-2: no such key). */
static long long ttl_of(tl_fleet *f, const char *key) { return tl_redis_int(f->rc, "TTL %s", key); }

static bool job_gone(void *arg) {
    void **a = arg;
    tl_fleet *f = a[0];
    return tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, (const char *)a[1]) == 0;
}

/* Cuts the TTL of a job's keys to 50 ms and waits until Redis has expired them, as it
 * does once the job's queue TTL or ttl_s runs out. The Idempotency-Key record is left as
 * it is. */
static void expire_job_now(tl_fleet *f, const char *id) {
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s 50", f->prefix, id);
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:job:%s:result 50", f->prefix, id);
    ASSERT_WAIT_FOR(job_gone, ((void *[]){f, (void *)id}), TL_WAIT_MS);
}

/* Waits (GET ?wait=, tenant a's key) until job id has succeeded. */
static void wait_succeeded_as_a(tl_fleet *f, const char *id) {
    const char *status = "";
    int64_t end = tl_now_ms() + TL_WAIT_MS;
    while (strcmp(status, "succeeded") != 0 && tl_now_ms() < end) {
        tl_resp *r = as(f, "fk_a", "GET", tl_printf("/v1/jobs/%s?wait=5", id), NULL);
        ASSERT_HTTP_STATUS(r, 200);
        status = tl_jstr(r->json, "status");
    }
    ASSERT_EQ_STR(status, "succeeded");
}

/* The Idempotency-Key record lives as long as its job (the same TTL in every state), and a
 * key whose job has expired is free again: the same key and body make a new job, not a
 * replay of a job that no longer exists. */
TL_TEST(idempotency_key_after_its_job_expired_makes_a_new_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "a", "fk_a", "tenant", "");
    const char *body = "{\"model\": \"echo\", \"input\": {\"invoice\": 7}, \"ttl_s\": 120}";
    tl_req req = {.method = "POST", .body = body};
    req.headers[0] = "Authorization: Bearer fk_a";
    req.headers[1] = "Idempotency-Key: invoice-7";
    tl_resp *first = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(first, 202);
    const char *id = tl_jstr(first->json, "id");
    tl_strlist recs = tl_redis_keys(f->rc, tl_printf("{%s}:idem:a:*", f->prefix));
    ASSERT_EQ_INT(recs.n, 1);
    const char *rec = recs.v[0];
    const char *job = tl_printf("{%s}:job:%s", f->prefix, id);
    /* Queued: the record expires with the job (the queue TTL), not a result TTL later. */
    ASSERT_LE_INT(ttl_of(f, rec), ttl_of(f, job));
    ASSERT_GE_INT(ttl_of(f, rec), ttl_of(f, job) - 2);

    /* It expires unstarted (no worker yet): the same request makes a new job. */
    expire_job_now(f, id);
    tl_resp *second = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(second, 202);
    ASSERT_NULL(tl_resp_header(second, "Idempotent-Replayed"));
    const char *id2 = tl_jstr(second->json, "id");
    ASSERT_NE_STR(id2, id);
    /* ... which the key now names. */
    tl_resp *again = tl_request(f, "/v1/jobs", req);
    ASSERT_EQ_STR(tl_jstr(again->json, "id"), id2);
    ASSERT_EQ_STR(tl_resp_header(again, "Idempotent-Replayed"), "true");

    /* Finished: the record follows the job onto its ttl_s (120 s). */
    tl_fleet_add_worker(f, "echo");
    wait_succeeded_as_a(f, id2);
    const char *job2 = tl_printf("{%s}:job:%s", f->prefix, id2);
    ASSERT_LE_INT(ttl_of(f, rec), 120);
    ASSERT_GE_INT(ttl_of(f, rec), ttl_of(f, job2) - 2);
    /* While the job exists another body under the key is still refused. */
    tl_req other = req;
    other.body = "{\"model\": \"echo\", \"input\": {\"invoice\": 8}}";
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs", other), 422);

    /* Once the finished job has expired, the same request makes a third job, and another
     * body is no longer a conflict either. */
    expire_job_now(f, id2);
    tl_resp *third = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(third, 202);
    ASSERT_NULL(tl_resp_header(third, "Idempotent-Replayed"));
    const char *id3 = tl_jstr(third->json, "id");
    ASSERT_NE_STR(id3, id);
    ASSERT_NE_STR(id3, id2);
    wait_succeeded_as_a(f, id3);
    expire_job_now(f, id3);
    tl_resp *fourth = tl_request(f, "/v1/jobs", other);
    ASSERT_HTTP_STATUS(fourth, 202);
    ASSERT_NULL(tl_resp_header(fourth, "Idempotent-Replayed"));
    ASSERT_EQ_INT(job_keys(f), 4);
}

/* Tenant A queues 200 jobs, then tenant B 5: B's jobs start after at most about one
 * batch of A's (the ready entries), not after A's backlog. */
TL_TEST(fair_share_serves_a_small_tenant_behind_a_big_backlog) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {AUTH_ON, "FLEET_READY_TARGET=4"},
                                                  .worker_env = {"FLEET_MAX_BATCH=4",
                                                                 "FLEET_READY_TARGET=4"}});
    tl_fleet_add_tenant(f, "big", "fk_big", "tenant", "");
    tl_fleet_add_tenant(f, "small", "fk_small", "tenant", "");
    enum { A = 200, B = 5 };
    const char *a[A], *b[B];
    for (int i = 0; i < A; i++) a[i] = submit_as(f, "fk_big", "sleep", "{\"ms\": 20}");
    for (int i = 0; i < B; i++) b[i] = submit_as(f, "fk_small", "sleep", "{\"ms\": 20}");
    tl_fleet_add_worker(f, "sleep");
    long long b_last = 0;
    for (int i = 0; i < B; i++) {
        tl_resp *r = as(f, "fk_small", "GET", tl_printf("/v1/jobs/%s?wait=60", b[i]), NULL);
        ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
        long long s = started_ms(f, b[i]);
        if (s > b_last) b_last = s;
    }
    int a_before = 0;
    for (int i = 0; i < A; i++) {
        long long s = started_ms(f, a[i]);
        if (s >= 0 && s <= b_last) a_before++;
    }
    tl_log("jobs of the big tenant started before the small tenant's last one: %d of %d", a_before,
           A);
    /* The 4 ready entries, one job of A between each of B's, and a batch in flight. */
    ASSERT_LE_INT(a_before, 20);
}

/* Within a tenant, high runs before normal before low (behind the few already ready). */
TL_TEST(priorities_order_a_tenants_jobs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"},
                                                  .worker_env = {"FLEET_MAX_BATCH=1",
                                                                 "FLEET_READY_TARGET=1"}});
    const char *low[20], *high[3];
    for (int i = 0; i < 20; i++) {
        tl_resp *r =
            tl_post(f, "/v1/jobs",
                    "{\"model\": \"sleep\", \"input\": {\"ms\": 5}, \"priority\": \"low\"}");
        ASSERT_HTTP_STATUS(r, 202);
        low[i] = tl_jstr(r->json, "id");
    }
    for (int i = 0; i < 3; i++) {
        tl_resp *r =
            tl_post(f, "/v1/jobs",
                    "{\"model\": \"sleep\", \"input\": {\"ms\": 5}, \"priority\": \"high\"}");
        ASSERT_HTTP_STATUS(r, 202);
        high[i] = tl_jstr(r->json, "id");
    }
    tl_fleet_add_worker(f, "sleep");
    for (int i = 0; i < 20; i++) tl_job_wait_status(f, low[i], "succeeded", TL_WAIT_MS);
    long long high_last = 0;
    for (int i = 0; i < 3; i++) {
        long long s = started_ms(f, high[i]);
        if (s > high_last) high_last = s;
    }
    int low_before = 0;
    for (int i = 0; i < 20; i++)
        if (started_ms(f, low[i]) < high_last) low_before++;
    tl_log("low jobs started before the last high one: %d of 20", low_before);
    ASSERT_LE_INT(low_before, 2);
}

static const char *submit_prio(tl_fleet *f, const char *prio) {
    tl_resp *r =
        tl_post(f, "/v1/jobs",
                tl_printf("{\"model\": \"sleep\", \"input\": {\"ms\": 5}, \"priority\": \"%s\"}",
                          prio));
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

/* A tenant's waiting jobs are on three lists, one per rank, and the feed takes them high,
 * then normal, then low, each in submit order (docs/redis.md, "Fair share"). */
TL_TEST(wait_lists_keep_rank_then_submit_order) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"},
                                                  .worker_env = {"FLEET_MAX_BATCH=1",
                                                                 "FLEET_READY_TARGET=1"}});
    static const char *const prios[] = {"low", "normal", "high"};
    enum { N = 9 };
    const char *ids[N];
    for (int i = 0; i < N; i++) ids[i] = submit_prio(f, prios[i % 3]);
    /* The first went onto the stream; the others wait, by rank. */
    const char *stem = tl_printf("{%s}:wait:sleep:default:", f->prefix);
    for (int r = 0; r < 3; r++) {
        ASSERT_EQ_STR(tl_redis_cmd(f->rc, "TYPE %s%d", stem, r)->str, "list");
        ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s%d", stem, r), r == 2 ? 2 : 3);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "TTL %s%d", stem, r), -1);
    }
    redisReply *w = tl_redis_cmd(f->rc, "LRANGE {%s}:waiting:sleep 0 -1", f->prefix);
    ASSERT_EQ_INT((long long)w->elements, 1);
    ASSERT_EQ_STR(w->element[0]->str, stem);
    tl_fleet_add_worker(f, "sleep");
    for (int i = 0; i < N; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    /* Submit order low0 normal1 high2 low3 ...: low0 was on the stream, then the highs,
     * the normals, the other lows. One worker taking one job at a time starts them in
     * the order the feed put them on the stream. */
    static const int order[N] = {0, 2, 5, 8, 1, 4, 7, 3, 6};
    for (int i = 1; i < N; i++)
        ASSERT_LT_INT(started_ms(f, ids[order[i - 1]]), started_ms(f, ids[order[i]]));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:waiting:sleep", f->prefix), 0);
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("%s*", stem)).n, 0);
}

/* A waiting job costs its wait list a few tens of bytes (a sorted set took about 130), and
 * a cancel takes it off its list at once, counters exact. */
TL_TEST(wait_list_memory_and_cancel_of_a_waiting_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"}});
    enum { N = 301 };
    const char *ids[N];
    for (int i = 0; i < N; i++) ids[i] = submit_prio(f, "normal");
    const char *list = tl_printf("{%s}:wait:sleep:default:1", f->prefix);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s", list), N - 1);
    long long bytes = tl_redis_int(f->rc, "MEMORY USAGE %s SAMPLES 0", list);
    tl_log("wait list of %d ids: %lld B, %lld B per id", N - 1, bytes, bytes / (N - 1));
    ASSERT_LE_INT(bytes / (N - 1), 40);
    /* One in the middle of the list. */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[150])), 200);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s", list), N - 2);
    ASSERT_TRUE(tl_redis_cmd(f->rc, "LPOS %s %s", list, ids[150])->type == REDIS_REPLY_NIL);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), N - 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "cancelled"), 1);
}

/* Wait sets of protocol 2 (sorted sets named in the waiting list, scored rank * 2^40 +
 * seq) left by an older gateway are still drained in their order, and a cancel still
 * finds a job in one: no job queued before an upgrade is stranded or counted twice. */
TL_TEST(old_wait_sets_are_drained_after_an_upgrade) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_READY_TARGET=1"},
                                                  .worker_env = {"FLEET_MAX_BATCH=1",
                                                                 "FLEET_READY_TARGET=1"}});
    static const char *const prios[] = {"low", "normal", "high"};
    enum { N = 7 };
    const char *ids[N];
    for (int i = 0; i < N; i++) ids[i] = submit_prio(f, prios[i % 3]);
    /* Rewrite the waiting jobs as protocol 2 left them: one sorted set per tenant. */
    const char *stem = tl_printf("{%s}:wait:sleep:default:", f->prefix);
    const char *old = tl_printf("{%s}:wait:sleep:default", f->prefix);
    for (int r = 0; r < 3; r++) {
        redisReply *l = tl_redis_cmd(f->rc, "LRANGE %s%d 0 -1", stem, r);
        for (size_t i = 0; i < l->elements; i++) {
            long long seq = atoll(tl_redis_cmd(f->rc, "HGET {%s}:job:%s queue_seq", f->prefix,
                                               l->element[i]->str)
                                      ->str);
            tl_redis_cmd(f->rc, "ZADD %s %lld %s", old, r * 1099511627776LL + seq,
                         l->element[i]->str);
        }
        tl_redis_cmd(f->rc, "DEL %s%d", stem, r);
    }
    tl_redis_cmd(f->rc, "DEL {%s}:waiting:sleep", f->prefix);
    tl_redis_cmd(f->rc, "RPUSH {%s}:waiting:sleep %s", f->prefix, old);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD %s", old), N - 1);
    /* A cancel finds a job in the old set (the first normal one). */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[1])), 200);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD %s", old), N - 2);
    /* A job submitted now waits on the new lists, beside the old set. */
    const char *late = submit_prio(f, "high");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s0", stem), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN {%s}:waiting:sleep", f->prefix), 2);
    tl_fleet_add_worker(f, "sleep");
    for (int i = 0; i < N; i++)
        if (i != 1) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, late, "succeeded", TL_WAIT_MS);
    /* The old set kept its order: high (2, 5), normal (4), low (3, 6), after low0. */
    static const int order[] = {0, 2, 5, 4, 3, 6};
    for (size_t i = 1; i < sizeof order / sizeof order[0]; i++)
        ASSERT_LT_INT(started_ms(f, ids[order[i - 1]]), started_ms(f, ids[order[i]]));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS %s", old), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:waiting:sleep", f->prefix), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "succeeded"), N);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "cancelled"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "submitted"), N + 1);
}

/* An event stream whose key was looked up in Redis (no cache) notices its client leaving
 * at once, as one whose key came from the cache does: nothing is left in CLOSE_WAIT
 * until the next heartbeat (set far away here). */
TL_TEST(event_stream_after_a_key_lookup_sees_its_client_leave) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {AUTH_ON, "FLEET_AUTH_CACHE_MS=0", "FLEET_SSE_HEARTBEAT_S=3600"}});
    tl_fleet_add_tenant(f, "acme", "fk_acme_secret_key_1", "tenant", "");
    const char *id = submit_as(f, "fk_acme_secret_key_1", "echo", "1");
    int fd = tl_tcp_send(f->gateway_port,
                         tl_printf("GET /v1/jobs/%s/events HTTP/1.1\r\nHost: x\r\n"
                                   "Authorization: Bearer fk_acme_secret_key_1\r\n\r\n",
                                   id),
                         10000);
    char buf[512];
    ASSERT_GT_INT(read(fd, buf, sizeof buf), 0); /* the stream has started */
    shutdown(fd, SHUT_RDWR);                     /* the client leaves (the harness closes fd) */
    ASSERT_EVENTUALLY(tl_tcp_sockets(f->gateway_port, TL_TCP_CLOSE_WAIT, NULL) == 0, 20000);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(event_stream_after_a_key_lookup_sees_its_client_leave),
        TL_CASE(api_keys_are_required_on_v1_routes),
        TL_CASE(tenants_never_see_each_others_jobs),
        TL_CASE(max_active_and_rate_answer_429_and_write_nothing),
        TL_CASE(full_model_queue_answers_503),
        TL_CASE(idempotency_key_replays_the_same_job),
        TL_CASE(idempotency_key_after_its_job_expired_makes_a_new_job),
        TL_CASE(fair_share_serves_a_small_tenant_behind_a_big_backlog),
        TL_CASE(priorities_order_a_tenants_jobs),
        TL_CASE(wait_lists_keep_rank_then_submit_order),
        TL_CASE(wait_list_memory_and_cancel_of_a_waiting_job),
        TL_CASE(old_wait_sets_are_drained_after_an_upgrade),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
