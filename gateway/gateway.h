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

#include "fleet/job.h"
#include "fleet/keys.h"
#include "fleet/redis_target.h"
#include "fleet/shards.h"

typedef struct gw_config {
    const char *listen;         /* host:port */
    fleet_redis_settings redis; /* FLEET_REDIS_URL, the sentinels (redis_target.h) */
    long redis_wait_replicas;   /* FLEET_REDIS_WAIT_REPLICAS: a submit answers 2xx once this
                                 * many replicas hold it (Redis WAIT); 0: at once */
    long redis_wait_timeout_ms; /* how long a WAIT may take before the submit answers 503 */
    const char *prefix;
    const char *models; /* FLEET_MODELS: the allowlist, comma-separated; "": none (models.h) */
    const char *tenant; /* with FLEET_AUTH=off: the tenant every request belongs to */
    bool auth;          /* FLEET_AUTH: API keys required on /v1 */
    const char *auth_mode;
    long auth_cache_ms;
    long max_queue;    /* most queued jobs per model (503 beyond) */
    long ready_target; /* fair share: entries kept ready on a model stream */
    const char *log_level;
    long max_body;        /* bytes */
    long max_conn_output; /* bytes of a response buffered per connection (out_stream.h) */
    long queue_ttl_s;
    long result_ttl_s; /* default ttl_s of a job */
    long tombstone_s;  /* FLEET_TOMBSTONE_S: how long an expired job answers 410 */
    long max_attempts;
    long max_wait_s;       /* FLEET_MAX_WAIT_S: the longest Prefer: wait (query.h) */
    long max_attempts_max; /* FLEET_MAX_ATTEMPTS_MAX: the most a job's max_attempts may be */
    long queue_ttl_max_s;  /* FLEET_QUEUE_TTL_MAX: the most a job's queue_ttl_s may be */
    long index_cap;
    long redis_timeout_ms;           /* a command unanswered this long drops the connection */
    const char *allow_eviction_mode; /* FLEET_ALLOW_EVICTION: "off" or "on" */
    bool allow_eviction;             /* ready although Redis's maxmemory-policy evicts keys */
    long drain_timeout_s;         /* on SIGTERM, how long requests in flight may take to finish */
    long sse_heartbeat_s;         /* comment lines on idle SSE streams, for proxies */
    long header_timeout_s;        /* a request head must be complete this long after it began */
    long idle_timeout_s;          /* a keep-alive connection without a request is closed */
    long body_timeout_s;          /* a body that stalls this long between reads: 408 */
    long max_conns;               /* FLEET_MAX_CONNECTIONS; 0: from RLIMIT_NOFILE (http.c) */
    const char *webhook_secret;   /* "whsec_...": signs deliveries; "" refuses webhooks */
    const char *webhook_allow;    /* CIDRs the SSRF guard admits anyway (tests: 127.0.0.1) */
    const char *webhook_schedule; /* seconds before each attempt: "0,5,300,..." */
    long webhook_timeout_ms;
    long webhook_claim_ms; /* a delivery pending this long is taken over */
    long webhook_max_inflight;
    long webhook_dlq_cap;
    long shards; /* FLEET_SHARDS: shards of a table this gateway writes when none exists
                  * (shards.h); 0: not set (1, or one per master on a cluster) */
} gw_config;

/* Who a request comes from (auth.h): its tenant, role and the tenant's limits. */
typedef struct gw_principal {
    char tenant[FLEET_TENANT_MAX + 1];
    bool admin;
    long max_active; /* 0: no limit */
    double rate;     /* submits per second, 0: no limit */
    long burst;
    long max_body;            /* 0: the gateway's FLEET_MAX_BODY */
    long long max_finished;   /* finished jobs kept, 0: no limit (submit.lua evicts) */
    long long max_bytes;      /* bytes of finished jobs kept, 0: no limit */
    char webhook_secret[128]; /* "" when the tenant has none (the gateway's is used) */
} gw_principal;

typedef struct gw_redis gw_redis;
typedef struct gw_auth gw_auth_cache;
typedef struct gw_conn gw_conn;
typedef struct gw_events gw_events;
typedef struct gw_webhooks gw_webhooks;
typedef struct gw_models gw_models;
typedef struct gw_shard_table gw_shard_table;

typedef struct gw {
    struct event_base *base;
    evhtp_t *htp;
    gw_config cfg;
    fleet_keys keys;     /* the control tag's: tenants, API keys, models, events (shards.h) */
    fleet_shards shards; /* the shard table in use; a job's keys: fleet_shards_keys_of_id */
    gw_shard_table *shard_table;     /* reads it (gateway/shards.h) */
    fleet_redis_target redis_target; /* cfg.redis, parsed */
    gw_redis *redis;
    gw_events *events; /* the subscription that wakes waits and SSE streams */
    gw_webhooks *webhooks;
    gw_auth_cache *auth;
    gw_models *models;           /* the models accepted (models.h) */
    gw_conn *conns;              /* live client connections, freed at shutdown */
    long nconns;                 /* how many */
    long max_conns;              /* past it, connections get health answers only (http.c) */
    struct event *accept_pause;  /* the listener rests after an EMFILE */
    unsigned long accept_errors; /* accept failures not logged yet */
    long long accept_log_ms;     /* when they were last logged */
    long inflight;               /* requests received and not yet finished */
    bool draining;               /* SIGTERM: no new connections; exit once inflight is 0 */
    long long drain_deadline_us;
    struct event *drain_timer;
} gw;

#endif
