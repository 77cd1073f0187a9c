/* redis_router.h: which Redis connection a synchronous command goes to (fleet-worker,
 * fleetctl), on one Redis or on a Redis Cluster (FLEET_REDIS_CLUSTER, redis_target.h).
 *
 * Without a cluster the router holds one connection, made by fleet_redis_connect_sync
 * (through the sentinels when the target names them): every key is on it, and a command
 * costs exactly what it cost before the router existed (no map, no extra command).
 *
 * On a cluster it holds the slot map (CLUSTER SLOTS, asked of a known master or else of
 * the seeds in turn; cluster.h) and one connection per master, made when first needed,
 * each with the URL's credentials (AUTH) and no SELECT (a cluster has database 0 only).
 * A command goes to the master of its routing key's slot (fleet_router_cmd_key says
 * which key that is), and fleet_router_cmd follows what the node answers:
 *
 *   -MOVED slot host:port   the slot lives there now: refresh the map, send it there
 *                           (at most FLEET_ROUTER_REDIRECTS times);
 *   -ASK slot host:port     the slot is migrating and the key is already there: ASKING
 *                           and the command on that node, once, map unchanged;
 *   TRYAGAIN, CLUSTERDOWN   transient: returned as the reply, for the caller's backoff
 *                           (fleet_redis_err_of says TRANSIENT);
 *   READONLY                the node was demoted: its connection is dropped, the map
 *                           marked stale, the reply returned (transient as well);
 *   no reply                the connection is lost: it is freed, the map marked stale
 *                           (a replica may be taking over), NULL returned.
 *
 * A stale map is read again before the next command is routed. Nothing is retried after
 * a lost connection: whether the command ran is unknown, the caller decides.
 *
 * Ownership: the router owns its connections; a redisContext handed out by
 * fleet_router_node_for_key / fleet_router_any stays valid until the next router call
 * that may drop or replace it (any call but fleet_router_cmd_key and fleet_router_note).
 * Replies are the caller's (freeReplyObject). Not thread-safe: one router per thread.
 */
#ifndef FLEET_REDIS_ROUTER_H
#define FLEET_REDIS_ROUTER_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/cluster.h"
#include "fleet/redis_target.h"

#define FLEET_ROUTER_NODES_MAX 64 /* masters of one cluster */
#define FLEET_ROUTER_REDIRECTS 5  /* MOVED followed at most this many times per command */
/* A cluster master that could not be connected to is not tried again for this long: the
 * commands for its slots fail at once meanwhile, instead of each waiting connect_ms for a
 * host that is gone, while the commands for the other masters' slots go on. */
#define FLEET_ROUTER_DOWN_MS 250

typedef struct fleet_router_node {
    fleet_redis_addr addr;
    redisContext *c;         /* NULL until first needed, or after it was lost */
    long long down_until_ms; /* cluster: a failed connect; no new try before (monotonic) */
} fleet_router_node;

typedef struct fleet_router {
    fleet_redis_target target; /* a copy */
    long connect_ms, io_ms;
    bool cluster;           /* target.nseeds > 0 */
    size_t nnodes;          /* without a cluster: 1, node[0] the one Redis */
    fleet_router_node node[FLEET_ROUTER_NODES_MAX];
    fleet_slot_map map;     /* cluster only */
    bool stale;             /* cluster only: read the map again before routing */
    unsigned long refreshes; /* how many times the map was read (tests, logs) */
    unsigned long epoch;     /* counts connects to any node: state tied to a connection
                              * (a consumer group after a restart) is redone when it moves */
    bool refused;           /* the last connect failed on a refused login (AUTH/SELECT) */
    char why[320];          /* why the last call that failed did */
} fleet_router;

/* Copies t; connects nothing. connect_ms bounds each connect, io_ms is every
 * connection's socket timeout (longer than any BLOCK sent through it). */
void fleet_router_init(fleet_router *r, const fleet_redis_target *t, long connect_ms,
                       long io_ms);
/* Frees every connection and the map. The router can be used again (it reconnects). */
void fleet_router_close(fleet_router *r);

/* Reads the slot map again (cluster; without one, returns 0 at once): asks the masters it
 * knows, then the seeds, for CLUSTER SLOTS until one answers. Connections to nodes that
 * are no longer masters are freed. Returns 0, or -1 with r->why. */
int fleet_router_refresh(fleet_router *r);

/* The connected node (index into r->node) that holds key's slot, connecting if needed
 * (after reading the map when it is stale). Returns the index, or -1 with r->why. */
int fleet_router_node_of_key(fleet_router *r, const char *key, size_t len);
/* The same, as its connection (NULL with r->why). */
redisContext *fleet_router_node_for_key(fleet_router *r, const char *key, size_t len);
/* A connected master, for a command without keys (PUBLISH, INFO, PING). NULL with r->why. */
redisContext *fleet_router_any(fleet_router *r);

/* The key a command is routed by: EVAL/EVALSHA/FCALL: the first of numkeys (argv[3]) when
 * numkeys >= 1; XREAD/XREADGROUP: the first stream after STREAMS; XGROUP, XINFO, OBJECT,
 * MEMORY: argv[2]; commands without keys (PING, INFO, PUBLISH, SUBSCRIBE, SCRIPT, CLUSTER,
 * AUTH, ...): none; any other: argv[1]. Returns 1 with *key and *len, or 0 for none. Pure. */
int fleet_router_cmd_key(int argc, const char **argv, const size_t *lens, const char **key,
                         size_t *len);

/* Sends one command to the node of its routing key (fleet_router_cmd_key; none: any
 * master) and follows MOVED and ASK as above. Returns the reply, or NULL with r->why. */
redisReply *fleet_router_cmd(fleet_router *r, int argc, const char **argv, const size_t *lens);
/* The same with a hiredis format, routed by key (NULL: any master). */
redisReply *fleet_router_cmdf(fleet_router *r, const char *key, const char *fmt, ...);
redisReply *fleet_router_vcmdf(fleet_router *r, const char *key, const char *fmt, va_list ap);

/* For a reply the caller got on a connection of the router outside fleet_router_cmd (a
 * pipeline): a MOVED or READONLY marks the map stale, so the next routing reads it again.
 * Returns true for a MOVED or ASK (the command did not run there). */
bool fleet_router_note(fleet_router *r, const redisReply *rep);
/* For a connection of the router found broken outside fleet_router_cmd (a pipeline read
 * failed): frees it and marks the map stale. */
void fleet_router_lost(fleet_router *r, redisContext *c);

#endif
