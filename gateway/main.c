/* main.c: fleet-gateway's settings, start-up and shutdown. */
#include <curl/curl.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/job.h"
#include "fleet/log.h"
#include "gateway.h"
#include "http.h"
#include "auth.h"
#include "events.h"
#include "models.h"
#include "shards.h"
#include "webhooks.h"
#include "redis.h"
#include "job_body.h"
#include "query.h"
#include "routes.h"

static gw G;

static const fleet_option options[] = {
    {"listen", "FLEET_LISTEN", FLEET_OPT_STR, "127.0.0.1:8080", "address and port to serve HTTP on",
     &G.cfg.listen, 0, 0},
    FLEET_REDIS_OPTIONS(&G.cfg.redis),
    {"redis-wait-replicas", "FLEET_REDIS_WAIT_REPLICAS", FLEET_OPT_INT, "0",
     "a submit answers 2xx only once this many replicas hold the job (Redis WAIT), so a "
     "failover loses no accepted job; 0: once the primary holds it",
     &G.cfg.redis_wait_replicas, 0, 16},
    {"redis-wait-timeout-ms", "FLEET_REDIS_WAIT_TIMEOUT_MS", FLEET_OPT_INT, "1000",
     "with redis-wait-replicas: how long the replicas may take; then the submit answers 503",
     &G.cfg.redis_wait_timeout_ms, 1, 60000},
    {"prefix", "FLEET_PREFIX", FLEET_OPT_STR, "fleet", "key prefix; every key starts with {prefix}",
     &G.cfg.prefix, 0, 0},
    {"shards", "FLEET_SHARDS", FLEET_OPT_INT, "0",
     "shards (hash tags) of the table this gateway writes at start when Redis has none (docs/api.md, \"Shards and quotas\"); 0: one, or one per master on a Redis Cluster",
     &G.cfg.shards, 0, FLEET_SHARDS_MAX},
    {"models", "FLEET_MODELS", FLEET_OPT_STR, "",
     "comma-separated allowlist: jobs are accepted for exactly these models, registered or not; empty: for every model registered in Redis (fleetctl model add, or a worker's start) or served by a live worker",
     &G.cfg.models, 0, 0},
    {"auth", "FLEET_AUTH", FLEET_OPT_STR, "on",
     "on: every /v1 request needs an API key (fleetctl tenant add); off: local development, every request is FLEET_TENANT with admin rights",
     &G.cfg.auth_mode, 0, 0},
    {"tenant", "FLEET_TENANT", FLEET_OPT_STR, "default",
     "with FLEET_AUTH=off, the tenant of every request", &G.cfg.tenant, 0, 0},
    {"auth-cache-ms", "FLEET_AUTH_CACHE_MS", FLEET_OPT_INT, "5000",
     "how long a looked-up API key is remembered (a revoked key works this much longer)",
     &G.cfg.auth_cache_ms, 0, 600000},
    {"max-queue", "FLEET_MAX_QUEUE", FLEET_OPT_INT, "1000000",
     "most queued jobs per model; beyond, submits answer 503 (0: no limit)", &G.cfg.max_queue, 0,
     1000000000},
    {"ready-target", "FLEET_READY_TARGET", FLEET_OPT_INT, "8",
     "fair share: a submit goes straight to the model's stream while fewer entries than this wait there (workers feed the rest from the tenants' wait lists)",
     &G.cfg.ready_target, 1, 100000},
    {"max-body", "FLEET_MAX_BODY", FLEET_OPT_INT, "10485760",
     "largest request body in bytes (413 above)", &G.cfg.max_body, 64, 1L << 30},
    {"max-conn-output", "FLEET_MAX_CONN_OUTPUT", FLEET_OPT_INT, "1048576",
     "most bytes of a response the gateway buffers for one connection; a larger result is read from Redis as the client takes it",
     &G.cfg.max_conn_output, 65536, 1L << 30},
    {"queue-ttl", "FLEET_QUEUE_TTL", FLEET_OPT_INT, FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TTL_S),
     "seconds a job may wait or run before its keys expire", &G.cfg.queue_ttl_s, 60, 2592000},
    {"result-ttl", "FLEET_RESULT_TTL", FLEET_OPT_INT,
     FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TTL_S),
     "default ttl_s: seconds a finished job and its result are kept", &G.cfg.result_ttl_s, 60,
     604800},
    {"tombstone-s", "FLEET_TOMBSTONE_S", FLEET_OPT_INT,
     FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TOMB_S),
     "seconds a finished job's id answers 410 expired after its keys expired (then 404); 0: 404 at once",
     &G.cfg.tombstone_s, 0, 2592000},
    {"max-attempts", "FLEET_MAX_ATTEMPTS", FLEET_OPT_INT,
     FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_MAX_ATTEMPTS),
     "attempts before a job whose worker vanished fails", &G.cfg.max_attempts, 1, 100},
    {"max-attempts-max", "FLEET_MAX_ATTEMPTS_MAX", FLEET_OPT_INT, "10",
     "the most attempts a job may ask for (its max_attempts; 422 above); never below FLEET_MAX_ATTEMPTS",
     &G.cfg.max_attempts_max, 1, GW_ATTEMPTS_MAX},
    {"queue-ttl-max", "FLEET_QUEUE_TTL_MAX", FLEET_OPT_INT, "604800",
     "the longest queue TTL a job may ask for, in seconds (its queue_ttl_s; 422 above); never below FLEET_QUEUE_TTL",
     &G.cfg.queue_ttl_max_s, 60, GW_QUEUE_TTL_MAX},
    {"max-wait-s", "FLEET_MAX_WAIT_S", FLEET_OPT_INT, "60",
     "the longest Prefer: wait=N (or ?wait=N) a request may ask for, in seconds; a longer one answers 400",
     &G.cfg.max_wait_s, 1, GW_WAIT_MAX_S_LIMIT},
    {"index-cap", "FLEET_INDEX_CAP", FLEET_OPT_INT, "100000",
     "most jobs GET /v1/jobs can list per tenant", &G.cfg.index_cap, 100, 100000000},
    {"redis-timeout-ms", "FLEET_REDIS_TIMEOUT_MS", FLEET_OPT_INT, "5000",
     "a Redis command unanswered this long drops the connection (503)", &G.cfg.redis_timeout_ms,
     100, 600000},
    {"allow-eviction", "FLEET_ALLOW_EVICTION", FLEET_OPT_STR, "off",
     "off: not ready while Redis runs a maxmemory-policy that evicts keys (it loses jobs and API keys: set noeviction); on: accept that",
     &G.cfg.allow_eviction_mode, 0, 0},
    {"sse-heartbeat-s", "FLEET_SSE_HEARTBEAT_S", FLEET_OPT_INT, "15",
     "seconds between the comment lines that keep an idle SSE stream open through proxies",
     &G.cfg.sse_heartbeat_s, 1, 3600},
    {"webhook-secret", "FLEET_WEBHOOK_SECRET", FLEET_OPT_STR, "",
     "whsec_... secret that signs webhook deliveries (Standard Webhooks); without it, submits with a webhook are refused (422)",
     &G.cfg.webhook_secret, 0, 0},
    {"webhook-allow", "FLEET_WEBHOOK_ALLOW", FLEET_OPT_STR, "",
     "comma-separated CIDRs webhooks may reach although private or loopback (e.g. 10.0.0.0/8)",
     &G.cfg.webhook_allow, 0, 0},
    {"webhook-schedule", "FLEET_WEBHOOK_SCHEDULE", FLEET_OPT_STR,
     "0,5,300,1800,7200,18000,36000,36000",
     "seconds before each delivery attempt (the first is 0); jittered by 10%, Retry-After wins when later",
     &G.cfg.webhook_schedule, 0, 0},
    {"webhook-timeout-ms", "FLEET_WEBHOOK_TIMEOUT_MS", FLEET_OPT_INT, "15000",
     "one delivery attempt's time limit", &G.cfg.webhook_timeout_ms, 100, 120000},
    {"webhook-claim-ms", "FLEET_WEBHOOK_CLAIM_MS", FLEET_OPT_INT, "60000",
     "a delivery left pending this long by a gateway that died is taken over by another",
     &G.cfg.webhook_claim_ms, 1000, 86400000},
    {"webhook-max-inflight", "FLEET_WEBHOOK_MAX_INFLIGHT", FLEET_OPT_INT, "64",
     "most deliveries this gateway runs at once", &G.cfg.webhook_max_inflight, 1, 10000},
    {"webhook-dlq-cap", "FLEET_WEBHOOK_DLQ_CAP", FLEET_OPT_INT, "10000",
     "entries kept on the webhook dead-letter stream", &G.cfg.webhook_dlq_cap, 1, 100000000},
    {"header-timeout-s", "FLEET_HEADER_TIMEOUT_S", FLEET_OPT_INT, "10",
     "seconds a request head may take to arrive, from the connection's accept or the first byte of a keep-alive connection's next head (408 after)",
     &G.cfg.header_timeout_s, 1, 3600},
    {"idle-timeout-s", "FLEET_IDLE_TIMEOUT_S", FLEET_OPT_INT, "60",
     "seconds a keep-alive connection may wait for its next request before it is closed",
     &G.cfg.idle_timeout_s, 1, 86400},
    {"body-timeout-s", "FLEET_BODY_TIMEOUT_S", FLEET_OPT_INT, "30",
     "seconds a request body may stall between reads (408 after)", &G.cfg.body_timeout_s, 1, 3600},
    {"max-connections", "FLEET_MAX_CONNECTIONS", FLEET_OPT_INT, "0",
     "most client connections served; past it only GET /healthz and /readyz are answered, the rest 503 (0: the descriptor limit less 64 and FLEET_WEBHOOK_MAX_INFLIGHT)",
     &G.cfg.max_conns, 0, 10000000},
    {"drain-timeout", "FLEET_DRAIN_TIMEOUT", FLEET_OPT_INT, "10",
     "on SIGTERM, seconds that requests in flight get to finish before the gateway exits",
     &G.cfg.drain_timeout_s, 0, 3600},
    {"log-level", "FLEET_LOG_LEVEL", FLEET_OPT_STR, "info",
     "debug (logs every request), info, warn, error", &G.cfg.log_level, 0, 0},
};

static long long mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* While draining: exit once no request is in flight, or when the drain timeout ends. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw *g = arg;
    size_t deliveries = gw_webhooks_inflight(g->webhooks);
    if ((g->inflight > 0 || deliveries > 0) && mono_us() < g->drain_deadline_us) return;
    if (g->inflight > 0) {
        char n[24];
        snprintf(n, sizeof n, "%ld", g->inflight);
        fleet_log(FLEET_LOG_WARN, "drain timeout: exiting with requests in flight", "requests", n,
                  NULL);
    }
    event_base_loopexit(g->base, NULL);
}

/* SIGTERM/SIGINT: stop accepting connections, let the requests in flight finish (their
 * answers close the connection), then exit. A second signal exits at once. */
static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    gw *g = arg;
    if (g->draining) {
        fleet_log(FLEET_LOG_WARN, "second stop signal: exiting now", NULL);
        event_base_loopexit(g->base, NULL);
        return;
    }
    char n[24], t[24];
    snprintf(n, sizeof n, "%ld", g->inflight);
    snprintf(t, sizeof t, "%ld", g->cfg.drain_timeout_s);
    fleet_log(FLEET_LOG_INFO, "shutting down: no new connections, finishing requests in flight",
              "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", "requests", n, "drain_timeout_s", t,
              NULL);
    g->draining = true;
    g->drain_deadline_us = mono_us() + g->cfg.drain_timeout_s * 1000000LL;
    evhtp_unbind_socket(g->htp);
    gw_events_wake_all(g->events); /* waits answer now, SSE streams end */
    struct timeval every = {0, 20000};
    g->drain_timer = event_new(g->base, -1, EV_PERSIST, on_drain_tick, g);
    if (!g->drain_timer || event_add(g->drain_timer, &every) < 0)
        event_base_loopexit(g->base, NULL);
}

int main(int argc, char **argv) {
    char err[256];
    fleet_config_result cr = fleet_config_parse(
        options, sizeof options / sizeof *options, argc, argv, NULL,
        "usage: fleet-gateway [options]\n\nServes the fleet HTTP API (docs/api.md) over Redis.",
        err, sizeof err);
    if (cr == FLEET_CONFIG_HELP) return 0;
    if (cr == FLEET_CONFIG_ERROR) {
        fprintf(stderr, "fleet-gateway: %s\n", err);
        return 2;
    }
    int level = fleet_log_level_from_string(G.cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "fleet-gateway: FLEET_LOG_LEVEL must be debug, info, warn or error\n");
        return 2;
    }
    fleet_log_init("gateway", (fleet_log_level)level);
    if (strcmp(G.cfg.auth_mode, "on") == 0) G.cfg.auth = true;
    else if (strcmp(G.cfg.auth_mode, "off") == 0) G.cfg.auth = false;
    else {
        fprintf(stderr, "fleet-gateway: FLEET_AUTH must be on or off\n");
        return 2;
    }
    if (strcmp(G.cfg.allow_eviction_mode, "on") == 0) G.cfg.allow_eviction = true;
    else if (strcmp(G.cfg.allow_eviction_mode, "off") == 0) G.cfg.allow_eviction = false;
    else {
        fprintf(stderr, "fleet-gateway: FLEET_ALLOW_EVICTION must be on or off\n");
        return 2;
    }
    if (!fleet_tenant_name_valid(G.cfg.tenant)) {
        fprintf(stderr, "fleet-gateway: FLEET_TENANT must be 1-64 characters of a-z 0-9 _ -\n");
        return 2;
    }
    if (fleet_keys_init(&G.keys, G.cfg.prefix) < 0) {
        fprintf(stderr,
                "fleet-gateway: FLEET_PREFIX must be 1-32 characters of A-Z a-z 0-9 _ . -\n");
        return 2;
    }
    fleet_shards_init(&G.shards, G.cfg.prefix); /* shard 0 until the table is read */
    if (fleet_redis_target_parse(&G.redis_target, &G.cfg.redis, err, sizeof err) < 0) {
        fprintf(stderr, "fleet-gateway: FLEET_REDIS_URL: %s\n", err);
        return 2;
    }
    if (G.cfg.redis_wait_replicas && G.cfg.redis_wait_timeout_ms >= G.cfg.redis_timeout_ms) {
        fprintf(stderr,
                "fleet-gateway: FLEET_REDIS_WAIT_TIMEOUT_MS must be below "
                "FLEET_REDIS_TIMEOUT_MS (a WAIT that long would read as a stalled Redis)\n");
        return 2;
    }
    char redis_where[400];
    fleet_redis_target_describe(&G.redis_target, redis_where, sizeof redis_where);
    char host[256];
    const char *colon = strrchr(G.cfg.listen, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (!colon || port < 1 || port > 65535 || (size_t)(colon - G.cfg.listen) >= sizeof host) {
        fprintf(stderr, "fleet-gateway: FLEET_LISTEN must be host:port, got '%s'\n", G.cfg.listen);
        return 2;
    }
    memcpy(host, G.cfg.listen, (size_t)(colon - G.cfg.listen));
    host[colon - G.cfg.listen] = '\0';

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 1;
    struct event *sigterm = NULL, *sigint = NULL;
    /* epoll's changelist: the event changes of one loop turn go to the kernel as one
     * epoll_ctl per socket when it ends, not one per change. Each request pauses its
     * connection's reads while it waits for Redis and resumes them with its answer, which
     * also turns writing on: about four epoll_ctl calls a request, a tenth of the
     * gateway's CPU per submit. (The changelist's known limit, a file descriptor shared
     * through dup(), does not arise: the gateway dups none.) */
    struct event_config *ecfg = event_config_new();
    if (!ecfg) goto out;
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    G.base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!G.base) goto out;
    G.htp = evhtp_new(G.base, NULL);
    if (!G.htp) goto out;
    gw_http_install(&G, gw_route);
    G.redis = gw_redis_new(G.base, &G.redis_target, G.cfg.redis_timeout_ms, G.cfg.allow_eviction);
    if (G.redis)
        gw_redis_wait_replicas(G.redis, G.cfg.redis_wait_replicas, G.cfg.redis_wait_timeout_ms);
    G.models = gw_models_new(&G, G.cfg.models, err, sizeof err);
    if (!G.models) {
        fprintf(stderr, "fleet-gateway: %s\n", err);
        rc = 2;
        goto out;
    }
    G.shard_table = gw_shards_new(&G, G.cfg.shards);
    if (!G.shard_table) goto out;
    G.auth = gw_auth_new(G.cfg.auth_cache_ms);
    fleet_key events_channel = fleet_key_events(&G.keys);
    G.events = gw_events_new(G.base, &G.redis_target, G.redis, events_channel.s);
    if (G.events) gw_events_on_models(G.events, gw_models_wake, G.models);
    if (G.events) gw_events_on_shards(G.events, gw_shards_wake, G.shard_table);
    if (G.events) {
        G.webhooks = gw_webhooks_new(&G, err, sizeof err);
        if (!G.webhooks) {
            fprintf(stderr, "fleet-gateway: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    if (!G.redis || !G.events) {
        fprintf(stderr, "fleet-gateway: out of memory\n");
        goto out;
    }
    if (evhtp_bind_socket(G.htp, host, (uint16_t)port, 1024) < 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot listen", "listen", G.cfg.listen, NULL);
        goto out;
    }
    gw_http_listen_guard(&G);
    sigterm = evsignal_new(G.base, SIGTERM, on_signal, &G);
    sigint = evsignal_new(G.base, SIGINT, on_signal, &G);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    fleet_log(FLEET_LOG_INFO, "listening", "listen", G.cfg.listen, "redis", redis_where, "prefix",
              G.cfg.prefix, "models", G.cfg.models, "auth", G.cfg.auth_mode, NULL);
    if (!G.cfg.auth)
        fleet_log(FLEET_LOG_WARN,
                  "FLEET_AUTH=off: no API keys are checked; every request is "
                  "tenant FLEET_TENANT with admin rights (local development only)",
                  "tenant", G.cfg.tenant, NULL);
    event_base_dispatch(G.base);
    rc = 0;
out:
    if (sigterm) event_free(sigterm);
    if (sigint) event_free(sigint);
    if (G.drain_timer) event_free(G.drain_timer);
    if (G.htp && !G.draining) evhtp_unbind_socket(G.htp);
    gw_webhooks_stop(G.webhooks); /* deliveries in flight stay pending for other gateways */
    /* Redis first: its pending callbacks answer requests that must still exist. Then the
     * connections, whose requests' fini hooks may still unwatch events. */
    gw_redis_free(G.redis);
    G.redis = NULL;
    gw_http_close_all(&G);
    gw_events_free(G.events);
    G.events = NULL;
    gw_models_free(G.models); /* after Redis: its read in flight was answered there */
    gw_shards_free(G.shard_table); /* the same */
    gw_webhooks_free(G.webhooks);
    gw_auth_free(G.auth);
    if (G.htp) evhtp_free(G.htp);
    if (G.base) event_base_free(G.base);
    curl_global_cleanup();
    return rc;
}
