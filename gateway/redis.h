/* redis.h: the gateway's command link to Redis (hiredis on the gateway's loop).
 *
 * The connection itself (reconnect with backoff, SELECT checked) is a redis_link.h link;
 * this module loads the state scripts each time it comes up and is usable only once they
 * are loaded. A script load that Redis refuses for now (it is
 * loading its dataset, busy, failing over) is sent again every GW_REDIS_RETRY_MIN_MS to
 * GW_REDIS_RETRY_MAX_MS, so the gateway is usable within about that long after Redis is.
 *
 * Every pending callback runs exactly once: with the reply, or with NULL when Redis is
 * unreachable, the connection dropped, or the command went unanswered for
 * redis_timeout_ms (then the connection is dropped and remade). A command answered with
 * a transient refusal (LOADING, BUSY, MASTERDOWN, READONLY, TRYAGAIN, CLUSTERDOWN, NOREPLICAS:
 * fleet_redis_err_of) is sent again with backoff while redis_timeout_ms since its first
 * sending allows; then the callback gets that refusal. A reply lives only during its
 * callback.
 *
 * Health (gw_redis_health): besides being usable, Redis must not be loading, must not be
 * full (INFO memory's used_memory >= maxmemory, or an OOM refusal in the last
 * GW_REDIS_OOM_HOLD_MS) and must not run a maxmemory-policy that evicts keys unless
 * allow_eviction. INFO memory and persistence are read at connect and every
 * GW_REDIS_HEALTH_MS on the same connection; an evicting policy is logged as an error at
 * connect, when it changes, and at most once a minute (docs/reliability.md, "A sick
 * Redis").
 *
 * On a Redis Cluster (FLEET_REDIS_CLUSTER: the target's seeds) there is one such link per
 * master, each with its own scripts, health, watchdog and WAIT, and a router (router.h)
 * that sends a command to the master of its first key's slot; a MOVED sends it to the node
 * named (and reloads the map), an ASK sends ASKING and then it there, once; a lost master
 * reloads the map. Ready, and healthy, when the map covers every slot and every master of
 * it is: gw_redis_health names the first master that is not. A command whose master is
 * usable is sent even when another is not. docs/redis.md, "Redis Cluster: routing".
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/redis_target.h"
#include "fleet/state.h"
#include "gateway.h"
#include "problems.h"

#define GW_REDIS_RETRY_MIN_MS 50
#define GW_REDIS_RETRY_MAX_MS 250
#define GW_REDIS_HEALTH_MS 1000
#define GW_REDIS_OOM_HOLD_MS 2000

typedef void (*gw_redis_cb)(redisReply *reply, void *arg);

gw_redis *gw_redis_new(struct event_base *base, const fleet_redis_target *t, long timeout_ms,
                       bool allow_eviction);
void gw_redis_free(gw_redis *r);
/* The answer to a script that tells a client its write is stored (submit, cancel, retry,
 * delete, purge, pause) waits until n replicas hold the write (Redis WAIT, at most
 * timeout_ms, which must be below the command timeout); fewer answer the callback with a
 * NOREPLICAS refusal (503, Retry-After). When INFO replication lists fewer than n
 * replicas online, such a script is not sent: the callback gets a NOREPLICAS refusal
 * saying nothing was written. n = 0 (the default): answered at once. */
void gw_redis_wait_replicas(gw_redis *r, long n, long timeout_ms);
/* Connected and the scripts loaded (on a cluster: on every master of a complete map):
 * commands can be sent. */
bool gw_redis_ready(const gw_redis *r);
/* NULL when Redis is healthy (see above); otherwise why not, written into buf. */
const char *gw_redis_health(const gw_redis *r, char *buf, size_t len);

/* Sends a state script. cmd must stay alive until cb runs (NOSCRIPT is retried as EVAL
 * with the same cmd; transient refusals are retried with it). Returns 0, or -1 when not
 * ready: then cb is NOT called. */
int gw_redis_script(gw_redis *r, fleet_cmd *cmd, gw_redis_cb cb, void *arg);
/* Sends a plain command; argv is copied. Same contract as above. */
int gw_redis_command(gw_redis *r, int argc, const char **argv, const size_t *lens, gw_redis_cb cb,
                     void *arg);

/* On a cluster: MOVED and ASK redirections followed and slot maps loaded since the start
 * (logged at debug as they happen); zeros without one. */
void gw_redis_cluster_counts(const gw_redis *g, unsigned long long *moved,
                             unsigned long long *asked, unsigned long long *maps);
/* On a cluster: a master for a connection of its own (the events subscription), the i-th
 * of the usable masters of the map, else of the seeds, so that successive i go round them.
 * False without a cluster. */
bool gw_redis_pick_node(const gw_redis *g, unsigned i, fleet_redis_addr *a);

/* How a failed Redis command is answered: 503 + Retry-After for a refusal worth retrying
 * (redis-loading, redis-unavailable or redis-full), else 500 internal; the status, slug
 * and title are the problem's row in problems.h. */
typedef struct gw_redis_problem {
    gw_problem_id id;
    const char *detail;
    const char *retry_after; /* seconds, NULL for none */
} gw_redis_problem;

/* rep is the reply (NULL: no reply, Redis unreachable or not ready). Fills p. */
void gw_redis_problem_of(const gw_redis *r, const redisReply *rep, gw_redis_problem *p);

/* True for a refusal that says nothing was written: the up-front NOREPLICAS refusal of
 * FLEET_REDIS_WAIT_REPLICAS (not a WAIT that timed out, after which the write may be
 * stored). A submit so refused may go to another shard. */
bool gw_redis_nothing_written(const redisReply *rep);

struct gw_req;
/* Answers a request whose Redis command failed (rep NULL, an error reply, or a reply of
 * the wrong shape) as gw_redis_problem_of says; `what` names the operation in the log of
 * an unexpected answer. */
void gw_reply_redis_error(struct gw_req *req, const char *what, const redisReply *rep);
/* Sends a request's script command with call as cb's argument and pauses the request until
 * the answer; when Redis cannot take it, frees call with free_call and answers 503 (or what
 * gw_reply_redis_error says). Returns whether it was sent. Lives in http.c. */
bool gw_send_script(struct gw_req *req, fleet_cmd *cmd, gw_redis_cb cb, void *call,
                    void (*free_call)(void *));

#endif
