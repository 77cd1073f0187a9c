/* redis_health.h: what a Redis error reply or INFO section says about the server's health.
 *
 * One place decides which refusals are worth waiting out (the server is loading its
 * dataset, busy in a script, failing over, or a replica for now), which mean the server
 * is full, and whether a server's maxmemory-policy can evict fleet's keys. The gateway,
 * the workers and fleetctl all ask here, so they agree (docs/reliability.md, "A sick
 * Redis").
 */
#ifndef FLEET_REDIS_HEALTH_H
#define FLEET_REDIS_HEALTH_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum fleet_redis_err {
    FLEET_REDIS_OK = 0,    /* not an error reply (or no reply at all: see the caller) */
    FLEET_REDIS_TRANSIENT, /* LOADING, BUSY, MASTERDOWN, READONLY, TRYAGAIN, CLUSTERDOWN,
                            * NOREPLICAS (min-replicas-to-write, or the gateway's WAIT):
                             * the same command succeeds later; retry with backoff */
    FLEET_REDIS_OOM,       /* OOM: maxmemory reached under noeviction; nothing was written */
    FLEET_REDIS_NOSCRIPT,  /* the script cache is empty: send the source */
    FLEET_REDIS_OTHER,     /* a refusal that retrying will not change */
} fleet_redis_err;

/* Classifies an error reply by its code, wherever Redis put it: a script's error keeps
 * the code of the command that failed inside it ("OOM command not allowed ... script:"). */
fleet_redis_err fleet_redis_err_of(const redisReply *r);
/* The error kind's name for logs and problem details: "loading", "oom", ... */
const char *fleet_redis_err_name(fleet_redis_err e);

/* What INFO memory says. Fields a server does not report stay 0 / "". */
typedef struct fleet_redis_memory {
    unsigned long long used; /* used_memory */
    unsigned long long max;  /* maxmemory (0: no limit) */
    char policy[32];         /* maxmemory_policy */
} fleet_redis_memory;

/* Parses the text of INFO (any sections that include "memory"). Returns 0, or -1 when it
 * has no maxmemory_policy line. */
int fleet_redis_memory_parse(const char *info, size_t len, fleet_redis_memory *m);
/* The replicas INFO replication lists as online (slave<i>: ... state=online), or -1 when
 * the text has no replication section. */
int fleet_redis_replicas_online(const char *info, size_t len);
/* True when the policy may delete keys to make room: every policy but noeviction. All of
 * fleet's keys have a TTL, so the volatile-* policies evict them too. */
bool fleet_redis_policy_evicts(const char *policy);
/* True when Redis is at its maxmemory limit (used >= max, max set). */
bool fleet_redis_memory_full(const fleet_redis_memory *m);

#endif
