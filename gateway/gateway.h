/* gateway.h: the fleet-gateway process: its settings and the state its handlers share.
 *
 * One libevent loop runs everything: libevhtp parses HTTP, hiredis (async, libevent
 * adapter) talks to Redis. The gateway keeps no job state in memory: any replica can
 * answer for any job.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <event2/event.h>
#include <evhtp/evhtp.h>
#include <stdbool.h>

#include "fleet/keys.h"

#define GW_MAX_MODELS 32

typedef struct gw_config {
    const char *listen;     /* host:port */
    const char *redis_url;
    const char *prefix;
    const char *models;     /* comma-separated model names that accept jobs */
    const char *tenant;     /* the tenant every request belongs to (until API keys exist) */
    const char *log_level;
    long max_body;          /* bytes */
    long queue_ttl_s;
    long result_ttl_s;      /* default ttl_s of a job */
    long max_attempts;
    long index_cap;
    long redis_timeout_ms;  /* a command unanswered this long drops the connection */
    long drain_timeout_s;   /* on SIGTERM, how long requests in flight may take to finish */
    long sse_heartbeat_s;   /* comment lines on idle SSE streams, for proxies */
    const char *webhook_secret;   /* "whsec_...": signs deliveries; "" refuses webhooks */
    const char *webhook_allow;    /* CIDRs the SSRF guard admits anyway (tests: 127.0.0.1) */
    const char *webhook_schedule; /* seconds before each attempt: "0,5,300,..." */
    long webhook_timeout_ms;
    long webhook_claim_ms;        /* a delivery pending this long is taken over */
    long webhook_max_inflight;
    long webhook_dlq_cap;
} gw_config;

typedef struct gw_redis gw_redis;
typedef struct gw_conn gw_conn;
typedef struct gw_events gw_events;
typedef struct gw_webhooks gw_webhooks;

typedef struct gw {
    struct event_base *base;
    evhtp_t *htp;
    gw_config cfg;
    fleet_keys keys;
    gw_redis *redis;
    gw_events *events; /* the subscription that wakes waits and SSE streams */
    gw_webhooks *webhooks;
    char models[GW_MAX_MODELS][FLEET_KEY_MAX];
    int nmodels;
    gw_conn *conns; /* live client connections, freed at shutdown */
    long inflight;  /* requests received and not yet finished */
    bool draining;  /* SIGTERM: no new connections; exit once inflight is 0 */
    long long drain_deadline_us;
    struct event *drain_timer;
} gw;

bool gw_model_known(const gw *g, const char *name);

#endif
