/* router.h: which Redis node takes a gateway command on a Redis Cluster
 * (FLEET_REDIS_CLUSTER; docs/redis.md, "Redis Cluster: routing").
 *
 * The router holds the slot map (CLUSTER SLOTS, read by shared/src/cluster.c) and one node
 * per master it has seen; a node is the owner's (redis.c: a command link with its scripts,
 * health and WAIT), made through node_new and never freed by the router. A command goes to
 * the master of its first key's slot (gw_cmd_slot); keyless commands are the owner's to
 * place. Without FLEET_REDIS_CLUSTER there is no router at all: redis.c's one link.
 *
 * The map is asked of the seeds in turn, then of the masters of the map in hand, each on
 * a connection of its own for at most FLEET_SENTINEL_TIMEOUT_MS (AUTH with the URL's
 * credentials first). Refreshes are coalesced: one CLUSTER SLOTS in flight; a refresh
 * asked for meanwhile runs once it is answered, no sooner than GW_ROUTER_REFRESH_MIN_MS
 * after it. Every GW_ROUTER_CHECK_MS, while there is no map or the owner says a master of
 * the map is not usable (settled() false: a failover may have named another), the map is
 * asked again.
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/cluster.h"
#include "fleet/redis_target.h"

#define GW_ROUTER_REFRESH_MIN_MS 100
#define GW_ROUTER_CHECK_MS 500

typedef struct gw_router gw_router;

typedef struct gw_router_cbs {
    /* A master with no node yet: make one (connecting at once). NULL: out of memory. */
    void *(*node_new)(const fleet_redis_addr *a, void *arg);
    /* Whether every master of the map is usable: false asks the map again. */
    bool (*settled)(void *arg);
    void *arg;
} gw_router_cbs;

/* t (its seeds and credentials) must outlive the router. Asks for the map at once. */
gw_router *gw_router_new(struct event_base *base, const fleet_redis_target *t,
                         const gw_router_cbs *cbs);
/* Frees the map and the router; the nodes are the owner's. NULL is fine. */
void gw_router_free(gw_router *ro);

/* Asks for the map again (a MOVED, a lost node), coalesced as above. */
void gw_router_refresh(gw_router *ro);
/* The node of the master of slot, or NULL (no map yet, no master for the slot). */
void *gw_router_node_of_slot(const gw_router *ro, int slot);
/* The node at a (a MOVED or ASK names it), made when the router has none. */
void *gw_router_node_at(gw_router *ro, const fleet_redis_addr *a);

/* The nodes made so far, in the order made; in_map says whether node i is a master of
 * the current map (a node that no longer is stays: it may be a master again). */
size_t gw_router_count(const gw_router *ro);
void *gw_router_node(const gw_router *ro, size_t i, bool *in_map, const fleet_redis_addr **addr);
/* Whether a map is in hand and gives every slot a master. */
bool gw_router_complete(const gw_router *ro);
/* NULL when the map in hand covers every slot; else why not (no map: why no node gave
 * one), written into buf. */
const char *gw_router_problem(const gw_router *ro, char *buf, size_t len);
/* MOVED and ASK redirections followed, maps loaded (for tests and the debug log). */
typedef struct gw_router_counts {
    unsigned long long moved, asked, maps;
} gw_router_counts;
gw_router_counts *gw_router_counters(gw_router *ro);

/* The slot of a command's first key, or -1 for a command without keys (PING, INFO,
 * PUBLISH, WAIT, CLUSTER, SCRIPT, ...): EVAL/EVALSHA: argv[3] when numkeys >= 1;
 * XREAD/XREADGROUP: the first word after STREAMS; XGROUP/XINFO: argv[2]; else argv[1]. */
int gw_cmd_slot(int argc, const char *const *argv, const size_t *lens);

#endif
