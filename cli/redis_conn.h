/* redis_conn.h: the commands that read or change Redis directly (inspect, dlq) share how
 * they connect (--redis-url, --prefix) and how they send commands and scripts.
 *
 * Every function prints what went wrong on stderr ("fleetctl: redis: ...") before it
 * returns NULL, so callers only decide the exit code.
 */
#ifndef CTL_REDIS_CONN_H
#define CTL_REDIS_CONN_H

#include <hiredis/hiredis.h>

#include "cli.h"
#include "fleet/cluster.h"
#include "fleet/keys.h"
#include "fleet/shards.h"
#include "fleet/state.h"

/* Checks --prefix and --redis-url, connects (5 s timeouts), selects the URL's database,
 * waits out a Redis that is loading (--redis-wait) and refuses one whose
 * maxmemory-policy evicts keys unless --allow-eviction on. Returns the connection and
 * fills keys, or NULL with *rc set to CTL_EXIT_USAGE (a malformed flag) or CTL_EXIT_FAIL
 * (Redis unreachable, still loading, or evicting).
 *
 * Every command below is sent again with backoff for up to --redis-wait while Redis
 * refuses it for now (LOADING, BUSY, MASTERDOWN, READONLY, TRYAGAIN); a refusal that
 * remains, and an OOM refusal (Redis full: nothing was written), is explained on
 * stderr as well. */
redisContext *ctl_redis_open(const ctl_globals *g, fleet_keys *keys, int *rc);

/* Closes what ctl_redis_open opened. */
void ctl_redis_close(redisContext *c);

/* On a Redis Cluster (--redis-cluster / FLEET_REDIS_CLUSTER) ctl_redis_cmd and
 * ctl_redis_script send each command to the master of its key's slot, following MOVED and
 * ASK (fleet/redis_router.h), whatever context they are given; the context ctl_redis_open
 * returns is the control tag's master. A pipeline sent on a context directly (MULTI/EXEC)
 * takes its node from here: the connection of the master of key's slot (c itself without
 * a cluster), or NULL after printing why. */
redisContext *ctl_redis_conn_for(redisContext *c, const char *key);
/* True when this run talks to a Redis Cluster. */
bool ctl_redis_clustered(void);
/* The cluster's slot map (read again when stale), or NULL without a cluster or after
 * printing why it could not be read. */
const fleet_slot_map *ctl_redis_slot_map(void);

/* Sends one command given as NUL-terminated strings. Returns the reply (caller frees it
 * with freeReplyObject), or NULL when the connection failed. An error reply is returned
 * as is, not printed. */
redisReply *ctl_redis_cmd(redisContext *c, int argc, const char *const *argv);

/* Like ctl_redis_cmd, but an error reply is printed ("fleetctl: redis: WHAT: ...") and
 * freed, and NULL is returned. */
redisReply *ctl_redis_cmd_ok(redisContext *c, const char *what, int argc, const char *const *argv);

/* Sends a state.h script command with EVALSHA, and again as EVAL when Redis does not
 * know the script yet (NOSCRIPT). Returns the reply (an error reply included), or NULL
 * when the connection failed. */
redisReply *ctl_redis_script(redisContext *c, fleet_cmd *cmd);

/* Says on stderr what an error reply's text means for the operator when Redis is full
 * (OOM) or still refuses commands for now; nothing for other errors. */
void ctl_redis_explain(const char *error);

/* Reads the fleet's shard table (fleet/shards.h; absent: one shard, 0) into s for
 * --prefix. Returns 0, or -1 after printing why (a Redis error, a table that does not
 * parse: the commands that span shards then refuse to guess). */
int ctl_redis_shards(redisContext *c, const ctl_globals *g, fleet_shards *s);

/* The value of field in a flat field/value array (HGETALL's or a stream entry's shape),
 * or NULL when absent. */
const char *ctl_redis_field(const redisReply *fields, const char *field);

#endif
