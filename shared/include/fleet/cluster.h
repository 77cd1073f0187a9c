/* cluster.h: Redis Cluster routing on hiredis 0.14 (no cluster client is packaged for
 * Debian 12): the slot of a key, the slot map, and the redirections a node answers.
 *
 * Not a client: the programs keep their own connections; this says which node holds a
 * key's slot and reads what a node says when it does not:
 *
 *   - a key's slot is CRC16 (XMODEM: poly 0x1021, init 0) of its hash tag mod 16384; the
 *     hash tag is what lies between the first '{' and the next '}' after it when that is
 *     not empty, else the whole key (the rules of Redis' keyHashSlot);
 *   - the slot map comes from `CLUSTER SLOTS` (every Redis 7 and Valkey 8 answer it):
 *     each range's first node is its master;
 *   - `-MOVED <slot> <host>:<port>`: the slot lives there now, refresh the map;
 *     `-ASK <slot> <host>:<port>`: send `ASKING` and then the command there, once, while
 *     the slot migrates; TRYAGAIN and CLUSTERDOWN are transient (fleet_redis_err_of).
 */
#ifndef FLEET_CLUSTER_H
#define FLEET_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/redis_target.h"

#define FLEET_CLUSTER_SLOTS 16384

/* CRC16-XMODEM of len bytes at buf, as Redis computes it for slots. */
uint16_t fleet_crc16(const char *buf, size_t len);

/* The cluster slot (0..16383) of a key. */
int fleet_key_slot(const char *key, size_t len);

typedef struct fleet_slot_range {
    int first, last; /* inclusive */
    fleet_redis_addr master;
} fleet_slot_range;

typedef struct fleet_slot_map {
    size_t n;
    fleet_slot_range *ranges; /* sorted by first slot */
} fleet_slot_map;

/* Reads a CLUSTER SLOTS reply into m (replacing what m held). An empty host in the reply
 * (a node that does not know its own address) is taken as seed_host, the address the
 * reply came from. Returns 0, or -1 with why (m then holds nothing). */
int fleet_slot_map_parse(const redisReply *rep, const char *seed_host, fleet_slot_map *m, char *why,
                         size_t whylen);

/* The master of slot, or NULL when no range covers it (the cluster is not fully set up). */
const fleet_redis_addr *fleet_slot_map_master(const fleet_slot_map *m, int slot);

/* True when every slot has a master. */
bool fleet_slot_map_complete(const fleet_slot_map *m);

void fleet_slot_map_free(fleet_slot_map *m);

typedef enum fleet_redirect {
    FLEET_REDIRECT_NONE = 0, /* not a redirection (any other reply, NULL) */
    FLEET_REDIRECT_MOVED,    /* the slot moved for good: refresh the map, send there */
    FLEET_REDIRECT_ASK,      /* migrating: ASKING, then the command there, once */
} fleet_redirect;

/* Reads a MOVED or ASK error reply: its slot and the node named. */
fleet_redirect fleet_redirect_of(const redisReply *rep, int *slot, fleet_redis_addr *to);

#endif
