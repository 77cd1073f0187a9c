/* sick_redis_test.c: a Redis that is loading, evicting or full (docs/reliability.md, "A
 * sick Redis"). The gateway is unready while Redis loads its dataset and ready again by
 * itself once Redis is; it is unready, and says what to set, while Redis runs a
 * maxmemory-policy that evicts keys, unless FLEET_ALLOW_EVICTION=on; a full Redis makes
 * submits answer 503 redis-full with Retry-After and write nothing. fleetctl refuses an
 * evicting Redis and explains a full one. A database number the server refuses to SELECT
 * leaves the gateway unready instead of on db 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define PAD_KEYS 20000 /* with --key-load-delay 100: a load of about 3 s */

typedef struct ready_probe {
    tl_fleet *f;
    long want;
    const char *reason; /* a word the reason must hold (503), or NULL */
    tl_resp *last;
} ready_probe;

static bool readyz_is(void *arg) {
    ready_probe *p = arg;
    char err[512];
    tl_req req = {.url = tl_printf("%s/readyz", p->f->url), .timeout_ms = 3000};
    p->last = tl_http_try(&req, err, sizeof err);
    if (!p->last || p->last->status != p->want) return false;
    if (!p->reason) return true;
    const char *why = tl_jstr(p->last->json, "reason");
    return why && strstr(why, p->reason);
}

static tl_resp *wait_readyz(tl_fleet *f, long want, const char *reason) {
    ready_probe p = {.f = f, .want = want, .reason = reason};
    if (!tl_wait_for(readyz_is, &p, TL_WAIT_MS))
        FAILF("GET /readyz did not answer %ld%s%s within %d ms (last: %s)", want,
              reason ? " with a reason naming " : "", reason ? reason : "", TL_WAIT_MS,
              p.last ? p.last->body : "no answer");
    return p.last;
}

/* A 503 that says why and when to come back. Returns the problem type. */
static const char *assert_refused(const tl_resp *r) {
    ASSERT_PROBLEM(r, 503);
    const char *ra = tl_resp_header(r, "Retry-After");
    ASSERT_NOT_NULL(ra);
    ASSERT_GE_INT(atoi(ra), 1);
    return tl_jstr(r->json, "type");
}

static const char *submit_body(const char *input) {
    return tl_printf("{\"model\":\"echo\",\"input\":%s}", input);
}

/* ------------------------------------------------------------ loading --------------- */

static bool redis_pongs(void *arg) {
    tl_redis *r = arg;
    redisContext *c = tl_redis_connect(r);
    redisReply *rep = tl_redis_cmd_allow_error(c, "PING");
    return rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
}

/* Redis restarts on a dataset that takes seconds to load: the gateway reconnects during
 * LOADING, is unready (and refuses submits with Retry-After) while it lasts, and is ready
 * again by itself once Redis is; jobs run again. fleetctl waits a loading Redis out. */
TL_TEST(gateway_recovers_after_redis_loading) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *before = tl_job_submit(f, "echo", "{\"n\":1}");
    tl_job_wait_status(f, before, "succeeded", TL_WAIT_MS);

    tl_redis_restart_loading(f->redis, f->rc, PAD_KEYS);
    redisContext *c2 = tl_redis_connect(f->redis);
    redisReply *ping = tl_redis_cmd_allow_error(c2, "PING");
    if (ping->type != REDIS_REPLY_ERROR || strncmp(ping->str, "LOADING", 7) != 0)
        FAILF("Redis was not loading after the restart (PING: %s): the dataset is too small",
              ping->str ? ping->str : "?");

    tl_resp *r = wait_readyz(f, 503, "loading");
    tl_log("while loading: %s", r->body);
    const char *type = assert_refused(tl_post(f, "/v1/jobs", submit_body("{\"n\":2}")));
    tl_log("submit while loading: %s", type);
    ASSERT_TRUE(strcmp(type, "urn:fleet:problem:redis-loading") == 0 ||
                strcmp(type, "urn:fleet:problem:redis-unavailable") == 0);

    ASSERT_WAIT_FOR(redis_pongs, f->redis, TL_WAIT_MS);
    int64_t loaded_ms = tl_now_ms();
    wait_readyz(f, 200, NULL);
    /* The figure for docs/reliability.md; timing is reported, never asserted. */
    tl_log("gateway ready %lld ms after Redis finished loading",
           (long long)(tl_now_ms() - loaded_ms));
    const char *after = tl_job_submit(f, "echo", "{\"n\":3}");
    tl_job_wait_status(f, after, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, before, "succeeded", TL_WAIT_MS);

    /* fleetctl run while Redis loads waits it out (--redis-wait, 10 s by default). */
    tl_redis_cmd(tl_redis_connect(f->redis), "SAVE");
    tl_redis_restart_args(f->redis, TL_ARGS("--key-load-delay", "100",
                                            "--loading-process-events-interval-bytes", "1024"));
    tl_cmd_result cr = tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix),
                                   TL_ARGS("tenant", "list"));
    tl_expect_exit(&cr, 0);
    ASSERT_STR_CONTAINS(cr.err, "LOADING");
}

/* A Lua script keeps Redis busy (BUSY to everyone else) for about 2 s: a submit that
 * arrives meanwhile is sent again until Redis is free, and is accepted, within the
 * gateway's FLEET_REDIS_TIMEOUT_MS. */
TL_TEST(busy_redis_is_waited_out) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_redis_cmd(f->rc, "CONFIG SET busy-reply-threshold 100");
    redisContext *busy = tl_redis_connect(f->redis);
    redisAppendCommand(busy, "EVAL %s 0",
                       "local t0 = redis.call('TIME') "
                       "while true do local t = redis.call('TIME') "
                       "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 2000000 then break end "
                       "end return 1");
    int done = 0;
    while (!done)
        if (redisBufferWrite(busy, &done) != REDIS_OK) FAILF("EVAL: %s", busy->errstr);
    /* Wait until Redis answers BUSY, so the submit below meets it. */
    redisContext *probe = tl_redis_connect(f->redis);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        redisReply *rep = tl_redis_cmd_allow_error(probe, "PING");
        seen = rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSY", 4) == 0;
    }
    if (!seen) FAILF("Redis never answered BUSY while the script ran");
    tl_resp *r = tl_post(f, "/v1/jobs", submit_body("{\"n\":1}"));
    ASSERT_HTTP_STATUS(r, 202);
    redisReply *ok = NULL;
    if (redisGetReply(busy, (void **)&ok) != REDIS_OK) FAILF("EVAL reply: %s", busy->errstr);
    freeReplyObject(ok);
    tl_job_wait_status(f, tl_jstr(r->json, "id"), "succeeded", TL_WAIT_MS);
}

/* ------------------------------------------------------------ eviction -------------- */

static bool log_has(const char *path, const char *text) {
    char *log = tl_read_file(path, NULL);
    return log && strstr(log, text);
}

typedef struct log_probe {
    const char *path, *text;
} log_probe;

static bool log_probe_has(void *arg) {
    log_probe *p = arg;
    return log_has(p->path, p->text);
}

/* allkeys-lru set at runtime: the gateway turns unready with a reason naming
 * noeviction and logs an error saying what to set; a gateway with
 * FLEET_ALLOW_EVICTION=on is ready. fleetctl refuses such a Redis unless
 * --allow-eviction on. */
TL_TEST(evicting_policy_makes_gateway_unready) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory-policy allkeys-lru");
    tl_resp *r = wait_readyz(f, 503, "noeviction");
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "reason"), "allkeys-lru");
    log_probe lp = {f->gateway->log_path, "maxmemory-policy noeviction"};
    ASSERT_WAIT_FOR(log_probe_has, &lp, TL_WAIT_MS);
    /* /healthz is liveness: the process is fine. */
    ASSERT_HTTP_STATUS(tl_get(f, "/healthz"), 200);

    const char *const *pre = TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix);
    tl_cmd_result cr = tl_fleetctl(pre, TL_ARGS("tenant", "list"));
    tl_expect_exit(&cr, 1);
    ASSERT_STR_CONTAINS(cr.err, "maxmemory-policy noeviction");
    cr = tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix,
                             "--allow-eviction", "on"),
                     TL_ARGS("tenant", "list"));
    tl_expect_exit(&cr, 0);

    /* An operator who accepts losing jobs says so: that gateway is ready. */
    char first[sizeof f->url];
    snprintf(first, sizeof first, "%s", f->url);
    f->opts.gateway_env[0] = "FLEET_ALLOW_EVICTION=on";
    tl_fleet_start_gateway(f); /* fails the case unless /readyz answers 200 */
    wait_readyz(f, 200, NULL);
    ASSERT_NE_STR(f->url, first);
    /* A gateway that starts on such a Redis says so in its log at start, also when it was
     * told to accept it. */
    log_probe start = {f->gateway->log_path, "maxmemory-policy evicts keys"};
    ASSERT_WAIT_FOR(log_probe_has, &start, TL_WAIT_MS);

    /* Back to noeviction: the first gateway is ready again by itself. */
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory-policy noeviction");
    snprintf(f->url, sizeof f->url, "%s", first);
    wait_readyz(f, 200, NULL);
}

/* ------------------------------------------------------------ SELECT --------------- */

/* Starts a gateway on the fleet's Redis with FLEET_REDIS_URL naming database db, without
 * waiting for it to be ready, and points f's requests at it. */
/* models: FLEET_MODELS (an allowlist; "" for none: the models registered in Redis). */
static void start_gateway_on_db(tl_fleet *f, int db, const char *models) {
    int port = tl_free_port();
    const char *path = tl_bin_path("fleet-gateway");
    const char *env[] = {tl_printf("FLEET_REDIS_URL=%s/%d", f->redis->url, db),
                         tl_printf("FLEET_LISTEN=127.0.0.1:%d", port),
                         tl_printf("FLEET_PREFIX=%s", f->prefix),
                         "FLEET_AUTH=off",
                         tl_printf("FLEET_MODELS=%s", models),
                         NULL};
    const char *argv[] = {path, NULL};
    f->gateway = tl_spawn(&(tl_spawn_opts){.name = tl_printf("gateway-db%d", db),
                                           .path = path,
                                           .argv = argv,
                                           .env = env,
                                           .checked = true});
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", port);
}

/* A URL whose database number the server refuses (beyond its `databases`, 4 here): the
 * gateway must not go on with db 0. It stays unready with a reason naming SELECT, logs
 * what to check, and refuses submits with 503 + Retry-After; db 0 gets no job. A
 * database the server has is selected: that gateway is ready and writes there. */
TL_TEST(refused_select_leaves_the_gateway_unready) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_redis_restart_args(f->redis, TL_ARGS("--databases", "4"));
    f->rc = tl_redis_connect(f->redis);
    ASSERT_WAIT_FOR(redis_pongs, f->redis, TL_WAIT_MS);
    char first[sizeof f->url];
    snprintf(first, sizeof first, "%s", f->url);
    wait_readyz(f, 200, NULL); /* the first gateway is back on db 0 */
    /* Without an allowlist the gateway knows no model until it has read them from Redis:
     * a submit meanwhile is 503 (come back), never 422 (no such model). */
    start_gateway_on_db(f, 9, "");
    tl_resp *r = wait_readyz(f, 503, "SELECT");
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "reason"), "FLEET_REDIS_URL");
    log_probe lp = {f->gateway->log_path, "refused SELECT"};
    ASSERT_WAIT_FOR(log_probe_has, &lp, TL_WAIT_MS);
    ASSERT_EQ_STR(assert_refused(tl_post(f, "/v1/jobs", submit_body("{\"n\":1}"))),
                  "urn:fleet:problem:redis-unavailable");
    redisReply *keys = tl_redis_cmd(f->rc, "DBSIZE");
    long long before = keys->integer;

    start_gateway_on_db(f, 3, "echo"); /* db 3 has no registered model: the allowlist */
    wait_readyz(f, 200, NULL);
    ASSERT_HTTP_STATUS(tl_post(f, "/v1/jobs", submit_body("{\"n\":2}")), 202);
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "DBSIZE")->integer, before); /* nothing on db 0 */
    tl_redis_cmd(f->rc, "SELECT 3");
    ASSERT_GT_INT(tl_redis_cmd(f->rc, "DBSIZE")->integer, 0);
    tl_redis_cmd(f->rc, "SELECT 0");
    snprintf(f->url, sizeof f->url, "%s", first);
}

/* ------------------------------------------------------------ full ------------------ */

typedef struct fill {
    tl_fleet *f;
    const char *input;
    tl_resp *refused;
    int accepted;
} fill;

static bool submit_until_refused(void *arg) {
    fill *x = arg;
    tl_resp *r = tl_post(x->f, "/v1/jobs", submit_body(x->input));
    if (r->status == 202) {
        x->accepted++;
        return false;
    }
    x->refused = r;
    return true;
}

static const char *stats_text(tl_fleet *f) {
    redisReply *rep = tl_redis_cmd(f->rc, "HGETALL {%s}:stats", f->prefix);
    const char *s = "";
    for (size_t i = 0; i < rep->elements; i++) s = tl_printf("%s %s", s, rep->element[i]->str);
    return s;
}

/* A small maxmemory under noeviction, filled by submits: the first refused submit is 503
 * + Retry-After + redis-full and writes nothing; batch items are refused the same way;
 * /readyz is 503 saying Redis is full; fleetctl explains the refusal; with maxmemory
 * raised, everything works again. */
TL_TEST(full_redis_refuses_submits_cleanly) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    redisReply *info = tl_redis_cmd(f->rc, "INFO memory");
    const char *u = strstr(info->str, "used_memory:");
    ASSERT_NOT_NULL(u);
    long long used = atoll(u + strlen("used_memory:"));
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory %lld", used + 2 * 1024 * 1024);

    char *big = malloc(32 * 1024 + 16);
    ASSERT_NOT_NULL(big);
    tl_defer(free, big);
    strcpy(big, "{\"s\":\"");
    memset(big + 6, 'x', 32 * 1024);
    strcpy(big + 6 + 32 * 1024, "\"}");
    fill x = {.f = f, .input = big};
    ASSERT_WAIT_FOR(submit_until_refused, &x, 60000);
    tl_log("%d submits accepted before Redis was full", x.accepted);
    ASSERT_GT_INT(x.accepted, 0);
    ASSERT_EQ_STR(assert_refused(x.refused), "urn:fleet:problem:redis-full");

    /* A refused submit writes nothing. */
    long long keys = tl_redis_int(f->rc, "DBSIZE");
    const char *stats = stats_text(f);
    ASSERT_EQ_STR(assert_refused(tl_post(f, "/v1/jobs", submit_body(big))),
                  "urn:fleet:problem:redis-full");
    tl_resp *b = tl_post(f, "/v1/jobs/batch",
                         tl_printf("{\"jobs\":[{\"model\":\"echo\",\"input\":%s},"
                                   "{\"model\":\"echo\",\"input\":%s}]}",
                                   big, big));
    ASSERT_HTTP_STATUS(b, 200);
    ASSERT_EQ_INT(tl_jint(b->json, "accepted"), 0);
    ASSERT_NOT_NULL(tl_resp_header(b, "Retry-After"));
    json_t *items = json_object_get(b->json, "jobs");
    ASSERT_EQ_INT((long long)json_array_size(items), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *it = json_array_get(items, i);
        ASSERT_EQ_INT(tl_jint(it, "error.status"), 503);
        ASSERT_EQ_STR(tl_jstr(it, "error.type"), "urn:fleet:problem:redis-full");
    }
    ASSERT_EQ_INT(tl_redis_int(f->rc, "DBSIZE"), keys);
    ASSERT_EQ_STR(stats_text(f), stats);

    tl_resp *r = wait_readyz(f, 503, "full");
    tl_log("while full: %s", r->body);
    /* Reads still work. */
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/jobs?limit=1"), 200);

    tl_cmd_result cr = tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix),
                                   TL_ARGS("tenant", "add", "acme"));
    ASSERT_NE_INT(cr.exit_code, 0);
    ASSERT_STR_CONTAINS(cr.err, "Redis is full");

    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 0");
    wait_readyz(f, 200, NULL);
    tl_job_submit(f, "echo", "{\"n\":1}");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(gateway_recovers_after_redis_loading),
        TL_CASE(busy_redis_is_waited_out),
        TL_CASE(evicting_policy_makes_gateway_unready),
        TL_CASE(full_redis_refuses_submits_cleanly),
        TL_CASE(refused_select_leaves_the_gateway_unready),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
