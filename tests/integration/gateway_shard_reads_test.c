/* gateway_shard_reads_test.c: every gateway read that spans jobs covers every shard of the
 * table (shards.h; docs/api.md "Listing jobs", docs/metrics.md, docs/webhooks.md): the
 * merged list of a tenant's jobs and of every tenant's, stats, model counts, /metrics,
 * purge and pause, and webhook deliveries from every shard's task stream.
 *
 * One Redis with the table "0:-:active 1:1:active 2:2:active" written before the gateway
 * starts, and a Redis Cluster of three masters on which the gateway writes the table (one
 * shard per master); the gateway places submits on the three shards. No worker runs, so
 * every job stays where the test put it (finished jobs are made by cancelling). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define SHARDS3 "0:-:active 1:1:active 2:2:active"
#define AUTH_ON "FLEET_AUTH=on"
/* The Standard Webhooks test secret (docs/webhooks.md), and the receiver on 127.0.0.1. */
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define HOOK_ENV "FLEET_WEBHOOK_SECRET=" SECRET, "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"

/* ------------------------------------------------------------ helpers --------------- */

static tl_resp *as(tl_fleet *f, const char *key, const char *method, const char *path,
                   const char *body) {
    tl_req req = {.method = method, .body = body};
    if (key) req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    return tl_request(f, path, req);
}

static const char *submit_as(tl_fleet *f, const char *key, const char *body) {
    tl_resp *r = as(f, key, "POST", "/v1/jobs", body);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id);
    return id;
}

/* How many of ids name each shard (their first character, '0'..'2'); fails unless every
 * one of the three shards holds some, as the reads below must then span them. */
static void assert_on_every_shard(const char *const *ids, size_t n) {
    size_t per[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i][0] < '0' || ids[i][0] > '2') FAILF("job %s names no shard of 0..2", ids[i]);
        per[ids[i][0] - '0']++;
    }
    tl_log("jobs per shard: %zu %zu %zu", per[0], per[1], per[2]);
    for (int k = 0; k < 3; k++)
        if (per[k] == 0) FAILF("no job on shard %d of %zu: the reads below span nothing", k, n);
}

typedef struct page_walk {
    size_t n;
    const char *ids[300];
    const char *created[300];
    const char *tenants[300];
    int pages;
} page_walk;

/* Follows next_cursor from GET /v1/jobs?<query>&limit=<limit> (as key) until it is null,
 * collecting the ids in order. */
static void walk(tl_fleet *f, const char *key, const char *query, int limit, page_walk *w) {
    memset(w, 0, sizeof *w);
    const char *cursor = NULL;
    for (;;) {
        if (w->pages >= 400) FAILF("more than 400 pages: the cursor does not advance");
        const char *path = tl_printf("/v1/jobs?%s%slimit=%d%s%s", query, query[0] ? "&" : "", limit,
                                     cursor ? "&cursor=" : "", cursor ? tl_urlencode(cursor) : "");
        tl_resp *r = as(f, key, "GET", path, NULL);
        ASSERT_HTTP_STATUS(r, 200);
        json_t *jobs = tl_jget(r->json, "jobs");
        json_t *next = tl_jget(r->json, "next_cursor");
        if (!json_is_array(jobs) || !next) FAILF("GET %s: not a page: %s", path, r->body);
        ASSERT_LE_INT(json_array_size(jobs), limit);
        w->pages++;
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job) {
            if (w->n >= 300) FAILF("too many jobs listed");
            w->ids[w->n] = tl_jstr(job, "id");
            w->created[w->n] = tl_jstr(job, "created_at");
            w->tenants[w->n] = tl_jstr(job, "tenant");
            ASSERT_NOT_NULL(w->ids[w->n]);
            ASSERT_NOT_NULL(w->created[w->n]);
            w->n++;
        }
        tl_json_own(json_incref(r->json)); /* the strings point into it */
        if (json_is_null(next)) break;
        if (!json_is_string(next)) FAILF("GET %s: next_cursor not a string: %s", path, r->body);
        cursor = json_string_value(next);
    }
}

static bool listed(const page_walk *w, const char *id) {
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->ids[i], id) == 0) return true;
    return false;
}

/* Where a job stands in the merged order (docs/api.md, "Listing jobs"): its index entry id
 * on its shard (read from the shard's index of its tenant), its shard, its tenant. */
typedef struct order_key {
    unsigned long long ms, n;
    int k;
    const char *tenant;
} order_key;

static order_key order_of(tl_fleet *f, const char *id, const char *tenant) {
    const char *tags[32];
    int ntags = tl_fleet_shard_tags(f, tags);
    int k = id[0] - '0';
    ASSERT_TRUE(k >= 0 && k < ntags);
    const char *index = tl_printf("%s:tenant:%s:submits", tags[k], tenant);
    redisReply *r = tl_redis_cmd(tl_fleet_conn_of_key(f, index), "XRANGE %s - +", index);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->element[1]->elements == 2 && strcmp(e->element[1]->element[1]->str, id) == 0) {
            order_key o = {0, 0, k, tenant};
            ASSERT_EQ_INT(sscanf(e->element[0]->str, "%llu-%llu", &o.ms, &o.n), 2);
            return o;
        }
    }
    FAILF("job %s is on no index entry of %s's on shard %d", id, tenant, k);
}

static int order_cmp(const order_key *a, const order_key *b) {
    if (a->ms != b->ms) return a->ms < b->ms ? -1 : 1;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    return strcmp(a->tenant, b->tenant);
}

/* Every job of want[] exactly once, nothing else, newest first: by index entry id (Redis'
 * clock at the submit's index write), then shard, then tenant, which for one tenant on one
 * shard is the order of created_at too (its submits ran one after the other there). Two
 * tenants' jobs of the same millisecond of index writes may stand in either order of
 * created_at, which a submit takes before its index write (docs/api.md, "Listing"). */
static void assert_exactly(tl_fleet *f, const page_walk *w, const char *const *want, size_t nwant,
                           const char *owner, const char *what) {
    order_key prev = {0, 0, 0, ""};
    for (size_t i = 0; i < w->n; i++) {
        order_key o = order_of(f, w->ids[i], owner ? owner : w->tenants[i]);
        if (i > 0 && order_cmp(&prev, &o) <= 0)
            FAILF("%s: position %zu is not below the one before: %s (%llu-%llu on %d) then %s "
                  "(%llu-%llu on %d)",
                  what, i, w->ids[i - 1], prev.ms, prev.n, prev.k, w->ids[i], o.ms, o.n, o.k);
        prev = o;
        for (size_t j = 0; j < i; j++)
            if (w->ids[j][0] == w->ids[i][0] &&
                strcmp(owner ? owner : w->tenants[j], owner ? owner : w->tenants[i]) == 0 &&
                strcmp(w->created[j], w->created[i]) < 0)
                FAILF("%s: created_at increases within shard %c for one tenant: %s (%s) then "
                      "%s (%s)",
                      what, w->ids[i][0], w->created[j], w->ids[j], w->created[i], w->ids[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->ids[j], w->ids[i]) == 0)
                FAILF("%s: %s listed twice, at %zu and %zu", what, w->ids[i], j, i);
    }
    for (size_t i = 0; i < nwant; i++)
        if (!listed(w, want[i]))
            FAILF("%s: job %s (shard %c) is not listed", what, want[i], want[i][0]);
    if (w->n != nwant) FAILF("%s: %zu jobs listed, want %zu", what, w->n, nwant);
}

/* ------------------------------------------------------------ lists ------------------ */

TL_TEST(list_merges_every_shard_exactly_once) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = SHARDS3, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "acme", "fk_acme", "tenant", "");
    tl_fleet_add_tenant(f, "beta", "fk_beta", "tenant", "");
    tl_fleet_add_tenant(f, "ops", "fk_ops", "admin", "");
    enum { A = 30, B = 9 };
    const char *a[A], *b[B], *both[A + B];
    for (int i = 0; i < A; i++) {
        a[i] = submit_as(f, "fk_acme", tl_printf("{\"model\":\"echo\",\"input\":{\"i\":%d}}", i));
        both[i] = a[i];
        if (i % 3 == 0 && i / 3 < B) {
            b[i / 3] = submit_as(f, "fk_beta", "{\"model\":\"sleep\",\"input\":{\"ms\":1}}");
            both[A + i / 3] = b[i / 3];
        }
    }
    assert_on_every_shard(a, A);
    page_walk w;
    static const int limits[] = {1, 2, 7, 20, 100};
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
        walk(f, "fk_acme", "", limits[l], &w);
        assert_exactly(f, &w, a, A, "acme", tl_printf("acme's list, limit %d", limits[l]));
        walk(f, "fk_beta", "", limits[l], &w);
        assert_exactly(f, &w, b, B, "beta", tl_printf("beta's list, limit %d", limits[l]));
    }
    /* An admin key: every tenant's jobs (each with its tenant), or one tenant's. */
    static const int admin_limits[] = {1, 4, 13, 100};
    for (size_t l = 0; l < sizeof admin_limits / sizeof *admin_limits; l++) {
        walk(f, "fk_ops", "", admin_limits[l], &w);
        assert_exactly(f, &w, both, A + B, NULL,
                       tl_printf("every tenant's list, limit %d", admin_limits[l]));
        for (size_t i = 0; i < w.n; i++) ASSERT_NOT_NULL(w.tenants[i]);
        walk(f, "fk_ops", "tenant=beta", admin_limits[l], &w);
        assert_exactly(f, &w, b, B, "beta",
                       tl_printf("beta's list by an admin, limit %d", admin_limits[l]));
    }

    /* Filters across shards: 6 of acme's cancelled (ended on their shards). */
    const char *cancelled[6], *queued[A - 6];
    size_t nq = 0;
    for (int i = 0; i < A; i++) {
        if (i % 5 == 0) {
            ASSERT_HTTP_STATUS(as(f, "fk_acme", "DELETE", tl_printf("/v1/jobs/%s", a[i]), NULL),
                               200);
            cancelled[i / 5] = a[i];
        } else {
            queued[nq++] = a[i];
        }
    }
    walk(f, "fk_acme", "status=cancelled", 2, &w);
    assert_exactly(f, &w, cancelled, 6, "acme", "acme's cancelled jobs, limit 2");
    walk(f, "fk_acme", "status=queued", 4, &w);
    assert_exactly(f, &w, queued, nq, "acme", "acme's queued jobs, limit 4");
    walk(f, "fk_ops", "status=cancelled&model=echo", 3, &w);
    assert_exactly(f, &w, cancelled, 6, NULL, "every tenant's cancelled echo jobs, limit 3");

    /* A cursor names a shard of 0..31 (and a tenant only in every tenant's list). */
    tl_resp *r = as(f, "fk_acme", "GET", "/v1/jobs?limit=5", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    const char *cursor = tl_jstr(r->json, "next_cursor");
    ASSERT_NOT_NULL(cursor);
    tl_log("a cursor over three shards: %s", cursor);
    static const char *const bad[] = {"1-1:8",   "1-1:32",     "1-1:", "1-1:x",
                                      "1-1:1:1", "1-1:1.acme", "0-0:1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ASSERT_PROBLEM(as(f, "fk_acme", "GET",
                          tl_printf("/v1/jobs?cursor=%s", tl_urlencode(bad[i])), NULL),
                       400);
    /* A cursor of a one-shard fleet (no shard in it) still pages: below it on every shard. */
    walk(f, "fk_acme", "", 100, &w);
    r = as(f, "fk_acme", "GET", "/v1/jobs?cursor=18446744073709551615-0", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(json_array_size(tl_jget(r->json, "jobs")), 20);
}

/* A shard whose call stops at its scan budget (1,000 index entries looked at) before its
 * page is full may hold more jobs below where it stopped: the merged page ends there and
 * its cursor goes on from there, so older jobs of the other shards are neither shown early
 * (out of order) nor skipped. */
TL_TEST(a_shard_stopped_by_its_scan_budget_bounds_the_page) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = SHARDS3});
    enum { N = 12 };
    const char *ids[N];
    for (int i = 0; i < N; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\":%d}", i));
    assert_on_every_shard(ids, N);
    /* 1,500 newer entries on shard 1's index of the tenant, naming jobs that do not exist
     * (as entries of expired jobs do): its calls look at them and find nothing. */
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 3);
    const char *index = tl_printf("%s:tenant:default:submits", tags[1]);
    tl_redis_cmd(f->rc, "EVAL %s 1 %s",
                 "for i = 1, 1500 do redis.call('XADD', KEYS[1], '*', 'j', "
                 "'1ZZZZZZZZZZZZZZZZZZZZZZZZ' .. i) end return 1",
                 index);
    page_walk w;
    walk(f, NULL, "tenant=default", 5, &w);
    assert_exactly(f, &w, ids, N, "default", "a list past 1,500 empty entries, limit 5");
    /* Pages cut short at the frontier: more pages than 12 jobs fill. */
    tl_log("%d pages for %d jobs", w.pages, N);
    ASSERT_GT_INT(w.pages, 3);
    walk(f, NULL, "tenant=default", 100, &w);
    assert_exactly(f, &w, ids, N, "default", "a list past 1,500 empty entries, limit 100");
    ASSERT_GE_INT(w.pages, 2);
}

/* ------------------------------------------------------------ counts ----------------- */

/* The value of a sample line "<name>{model=\"<model>\"} <v>" of a /metrics page. */
static double metric(const char *page, const char *name, const char *model) {
    const char *want = tl_printf("\n%s{model=\"%s\"} ", name, model);
    const char *p = strstr(page, want);
    if (!p) FAILF("no sample %s{model=\"%s\"} in /metrics", name, model);
    return strtod(p + strlen(want), NULL);
}

TL_TEST(stats_models_and_metrics_sum_over_shards) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = SHARDS3, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "acme", "fk_acme", "tenant", "max_active 1000");
    tl_fleet_add_tenant(f, "ops", "fk_ops", "admin", "");
    enum { N = 24 };
    const char *ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = submit_as(f, "fk_acme", tl_printf("{\"model\":\"echo\",\"input\":{\"i\":%d}}", i));
    assert_on_every_shard(ids, N);
    for (int i = 0; i < 4; i++)
        ASSERT_HTTP_STATUS(as(f, "fk_acme", "DELETE", tl_printf("/v1/jobs/%s", ids[i]), NULL), 200);
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), N - 4); /* the harness's sum over the shards */

    tl_resp *r = as(f, "fk_ops", "GET", "/v1/stats", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "models.echo.queued"), N - 4);
    ASSERT_EQ_INT(tl_jint(r->json, "models.echo.submitted"), N);
    ASSERT_EQ_INT(tl_jint(r->json, "models.echo.cancelled"), 4);
    ASSERT_EQ_INT(tl_jint(r->json, "totals.submitted"), N);

    r = as(f, "fk_acme", "GET", "/v1/stats", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "tenant.active"), N - 4);

    r = as(f, "fk_ops", "GET", "/v1/models", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    json_t *echo = NULL, *m;
    size_t i;
    json_array_foreach(tl_jget(r->json, "models"), i,
                       m) if (strcmp(tl_jstr(m, "name"), "echo") == 0) echo = m;
    if (!echo) FAILF("GET /v1/models lists no echo: %s", r->body);
    ASSERT_EQ_INT(tl_jint(echo, "queue_depth"), N - 4);

    r = tl_get(f, "/metrics");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->body, "\nfleet_redis_up 1\n");
    ASSERT_EQ_INT((long long)metric(r->body, "fleet_queue_depth", "echo"), N - 4);
    ASSERT_EQ_INT((long long)metric(r->body, "fleet_jobs_submitted_total", "echo"), N);
    ASSERT_STR_CONTAINS(r->body,
                        "fleet_jobs_finished_total{model=\"echo\",status=\"cancelled\"} 4\n");
    /* The oldest waiting job is found on whichever shard holds it. */
    ASSERT_GE_INT((long long)(metric(r->body, "fleet_queue_oldest_age_seconds", "echo") * 1000), 0);
}

/* ------------------------------------------------------------ model actions ---------- */

static bool paused_on(tl_fleet *f, const char *tag, const char *model) {
    const char *queues = tl_printf("%s:queues", tag);
    return tl_redis_int(tl_fleet_conn_of_key(f, queues), "HEXISTS %s %s:paused_ms", queues,
                        model) == 1;
}

/* A key's integer answer on the node that holds it. */
static long long key_int(tl_fleet *f, const char *cmd, const char *key) {
    return tl_redis_int(tl_fleet_conn_of_key(f, key), "%s %s", cmd, key);
}

TL_TEST(purge_and_pause_reach_every_shard) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = SHARDS3});
    enum { N = 21 };
    const char *ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = tl_job_submit(f, i % 3 ? "echo" : "sleep", tl_printf("{\"i\":%d,\"ms\":1}", i));
    assert_on_every_shard(ids, N);
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 3);

    /* A registered model (pause needs its record). */
    tl_redis_cmd(f->rc, "HSET {%s}:models echo {\"created_ms\":1}", f->prefix);
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events %s", f->prefix, "models echo");
    /* Once the gateway read the record again, the pause is answered 200 (404 before). */
    ASSERT_EVENTUALLY(tl_post(f, "/v1/models/echo/pause", "{}")->status == 200, TL_WAIT_MS);
    for (int k = 0; k < 3; k++)
        if (!paused_on(f, tags[k], "echo")) FAILF("echo is not paused on shard %s", tags[k]);
    tl_resp *r = tl_post(f, "/v1/models/echo/resume", "{}");
    ASSERT_HTTP_STATUS(r, 200);
    for (int k = 0; k < 3; k++)
        if (paused_on(f, tags[k], "echo")) FAILF("echo is still paused on shard %s", tags[k]);

    r = tl_post(f, "/v1/models/echo/purge", "{}");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "cancelled"), 14);
    for (int i = 0; i < N; i++)
        ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[i]), "status"), i % 3 ? "cancelled" : "queued");
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 0);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), 7);
}

/* ------------------------------------------------------------ webhooks -------------- */

/* The second gateway on the fleet's Redis, as webhook_test makes it. */
static tl_fleet *second_gateway(tl_fleet *f) {
    tl_fleet saved = *f;
    tl_fleet_start_gateway(f);
    tl_fleet *g2 = tl_alloc(sizeof *g2);
    *g2 = *f;
    f->gateway = saved.gateway;
    f->gateway_port = saved.gateway_port;
    memcpy(f->url, saved.url, sizeof f->url);
    return g2;
}

static void wait_requests_n(tl_receiver *rx, size_t n) {
    if (!tl_receiver_wait_count(rx, n, TL_WAIT_MS))
        FAILF("the receiver got %zu request(s), not %zu", tl_receiver_count(rx), n);
}

typedef struct ok_wait {
    tl_receiver *rx;
    size_t n;
} ok_wait;

static size_t answered_ok(tl_receiver *rx) {
    size_t n = 0, total = tl_receiver_count(rx);
    for (size_t i = 0; i < total; i++) n += tl_receiver_get(rx, i)->status == 200;
    return n;
}

static bool enough_ok(void *arg) {
    ok_wait *w = arg;
    return answered_ok(w->rx) >= w->n;
}

TL_TEST(webhooks_of_every_shard_delivered_once_from_two_gateways) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .shards = SHARDS3, .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.3,0.3,0.3"}});
    tl_fleet *g2 = second_gateway(f);
    tl_receiver *rx = tl_receiver_start(0);
    /* The first deliveries fail: their retries wait (3 s, the receiver's Retry-After) and
     * are promoted on their shards. */
    for (int i = 0; i < 6; i++) tl_receiver_respond(rx, 503, "Retry-After: 3", 0);
    enum { N = 24 };
    const char *ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = submit_as(i % 2 ? g2 : f, NULL,
                           tl_printf("{\"model\":\"echo\",\"input\":{\"i\":%d},\"webhook\":\"%s\"}",
                                     i, tl_receiver_url(rx, "/hook")));
    assert_on_every_shard(ids, N);
    /* Cancelling a queued job ends it: one job.cancelled message each. */
    for (int i = 0; i < N; i++)
        ASSERT_HTTP_STATUS(tl_delete(i % 2 ? f : g2, tl_printf("/v1/jobs/%s", ids[i])), 200);
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 3);
    /* Each refused message waits in the retry set of its job's shard, and of no other. */
    wait_requests_n(rx, 6);
    for (size_t q = 0; q < 6; q++) {
        const tl_received *rq = tl_receiver_get(rx, q);
        ASSERT_EQ_INT(rq->status, 503);
        const char *msg = tl_received_header(rq, "webhook-id");
        ASSERT_NOT_NULL(msg);
        int k = msg[4] - '0'; /* "msg_<job id>_<n>": the job id's first character */
        ASSERT_TRUE(k >= 0 && k < 3);
        const char *retry = tl_printf("%s:webhook_retry", tags[k]);
        ASSERT_EVENTUALLY(tl_redis_cmd(tl_fleet_conn_of_key(f, retry), "ZSCORE %s %s", retry, msg)
                                  ->type == REDIS_REPLY_STRING,
                          2000);
        for (int o = 0; o < 3; o++)
            if (o != k)
                ASSERT_EQ_INT(tl_redis_cmd(f->rc, "ZSCORE %s:webhook_retry %s", tags[o], msg)->type,
                              REDIS_REPLY_NIL);
    }
    ok_wait w = {rx, N};
    if (!tl_wait_for(enough_ok, &w, TL_WAIT_MS))
        FAILF("%zu of %d deliveries answered 200 (of %zu requests)", answered_ok(rx), N,
              tl_receiver_count(rx));
    ASSERT_FALSE(tl_receiver_wait_count(rx, tl_receiver_count(rx) + 1, 1000)); /* no more */
    ASSERT_EQ_INT(answered_ok(rx), N);
    ASSERT_EQ_INT(tl_receiver_count(rx), N + 6);
    /* Each job's message delivered once, under its one webhook-id (the 503s retried). */
    for (int i = 0; i < N; i++) {
        const char *want = tl_printf("msg_%s_1", ids[i]);
        size_t ok = 0;
        for (size_t q = 0; q < tl_receiver_count(rx); q++) {
            const tl_received *rq = tl_receiver_get(rx, q);
            const char *hid = tl_received_header(rq, "webhook-id");
            if (!hid) FAILF("a delivery without webhook-id");
            if (strcmp(hid, want) == 0) ok += rq->status == 200;
        }
        if (ok != 1) FAILF("job %s: %zu deliveries answered 200", ids[i], ok);
        ASSERT_EVENTUALLY(tl_jstr(tl_job_get(f, ids[i]), "webhook.state") &&
                              strcmp(tl_jstr(tl_job_get(f, ids[i]), "webhook.state"),
                                     "delivered") == 0,
                          TL_WAIT_MS);
    }
    /* Every shard's task stream and retry set are empty, its dead-letter stream too. */
    for (int k = 0; k < 3; k++) {
        ASSERT_EVENTUALLY(key_int(f, "XLEN", tl_printf("%s:webhooks", tags[k])) == 0, TL_WAIT_MS);
        ASSERT_EQ_INT(key_int(f, "ZCARD", tl_printf("%s:webhook_retry", tags[k])), 0);
        ASSERT_EQ_INT(key_int(f, "EXISTS", tl_printf("%s:webhook_dlq", tags[k])), 0);
    }
}

/* ------------------------------------------------------------ a cluster ------------- */

/* Three masters, the table written by the gateway (a shard on each master): every read
 * spans the masters, each shard's call going to the master of its tag. */
TL_TEST(reads_span_the_masters_of_a_cluster) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .cluster_masters = 3,
        .gateway_env = {AUTH_ON, HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.3,0.3"}});
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 3);
    int masters[3];
    for (int k = 0; k < 3; k++) {
        masters[k] = tl_cluster_master_of_key(f->cluster, tags[k]);
        tl_log("shard %d: %s on master %d", k, tags[k], masters[k]);
    }
    tl_fleet_add_tenant(f, "acme", "fk_acme", "tenant", "max_active 1000");
    tl_fleet_add_tenant(f, "beta", "fk_beta", "tenant", "");
    tl_fleet_add_tenant(f, "ops", "fk_ops", "admin", "");
    tl_receiver *rx = tl_receiver_start(0);
    enum { N = 18, B = 4 };
    const char *ids[N], *b[B], *both[N + B];
    for (int i = 0; i < N; i++) {
        ids[i] = submit_as(f, "fk_acme",
                           tl_printf("{\"model\":\"echo\",\"input\":{\"i\":%d},\"webhook\":\"%s\"}",
                                     i, tl_receiver_url(rx, "/hook")));
        both[i] = ids[i];
    }
    for (int i = 0; i < B; i++) {
        b[i] = submit_as(f, "fk_beta", "{\"model\":\"sleep\",\"input\":{\"ms\":1}}");
        both[N + i] = b[i];
    }
    assert_on_every_shard(ids, N);

    page_walk w;
    walk(f, "fk_acme", "", 4, &w);
    assert_exactly(f, &w, ids, N, "acme", "acme's list on a cluster, limit 4");
    walk(f, "fk_ops", "", 5, &w);
    assert_exactly(f, &w, both, N + B, NULL, "every tenant's list on a cluster, limit 5");

    tl_resp *r = as(f, "fk_ops", "GET", "/v1/stats", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "models.echo.queued"), N);
    ASSERT_EQ_INT(tl_jint(r->json, "totals.submitted"), N + B);
    r = as(f, "fk_acme", "GET", "/v1/stats", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "tenant.active"), N);
    r = tl_get(f, "/metrics");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->body, "\nfleet_redis_up 1\n");
    ASSERT_EQ_INT((long long)metric(r->body, "fleet_queue_depth", "echo"), N);
    ASSERT_EQ_INT((long long)metric(r->body, "fleet_queue_depth", "sleep"), B);

    /* Pause and resume reach the queues hash of every shard, on its master. */
    tl_redis_cmd(f->rc, "HSET {%s}:models echo {\"created_ms\":1}", f->prefix);
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events %s", f->prefix, "models echo");
    ASSERT_EVENTUALLY(as(f, "fk_ops", "POST", "/v1/models/echo/pause", "{}")->status == 200,
                      TL_WAIT_MS);
    for (int k = 0; k < 3; k++)
        if (!paused_on(f, tags[k], "echo")) FAILF("echo is not paused on shard %s", tags[k]);
    ASSERT_HTTP_STATUS(as(f, "fk_ops", "POST", "/v1/models/echo/resume", "{}"), 200);
    for (int k = 0; k < 3; k++)
        if (paused_on(f, tags[k], "echo")) FAILF("echo is still paused on shard %s", tags[k]);

    /* Purge ends every queued echo job; each job's webhook comes from its shard's stream. */
    r = as(f, "fk_ops", "POST", "/v1/models/echo/purge", "{}");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "cancelled"), N);
    ok_wait ow = {rx, N};
    if (!tl_wait_for(enough_ok, &ow, TL_WAIT_MS))
        FAILF("%zu of %d deliveries answered 200", answered_ok(rx), N);
    ASSERT_FALSE(tl_receiver_wait_count(rx, N + 1, 1000));
    for (int k = 0; k < 3; k++)
        ASSERT_EVENTUALLY(key_int(f, "XLEN", tl_printf("%s:webhooks", tags[k])) == 0, TL_WAIT_MS);
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 0);
    ASSERT_EQ_INT(tl_stat(f, "echo", "cancelled"), N);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(list_merges_every_shard_exactly_once),
        TL_CASE(a_shard_stopped_by_its_scan_budget_bounds_the_page),
        TL_CASE(stats_models_and_metrics_sum_over_shards),
        TL_CASE(purge_and_pause_reach_every_shard),
        TL_CASE(webhooks_of_every_shard_delivered_once_from_two_gateways),
        TL_CASE(reads_span_the_masters_of_a_cluster),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
