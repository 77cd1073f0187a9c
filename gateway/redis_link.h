/* redis_link.h: one reconnecting async Redis connection on the gateway's loop (hiredis).
 *
 * The gateway holds a command link (redis.c: scripts, commands, health; on a Redis
 * Cluster one per master, router.h) and the events link (events.c: SUBSCRIBE). All need
 * the same connection handling, kept here:
 *
 *   [sentinels: ask one after the other for the primary's address]
 *      │ none answers: backoff
 *      ▼
 *   connect ──▶ AUTH (URL credentials) ──▶ SELECT db ──▶ ROLE is master ──▶ up(ac)
 *     ▲           (each step only when needed; a refusal is logged      │
 *     │            as an error, and the link stays down)                 ▼ lost, closed, dropped
 *     └──── backoff (GW_REDIS_LINK_BACKOFF_MIN_MS doubling to _MAX_MS) ◀── down()
 *
 * Every setup reply is checked: a refused AUTH or SELECT (a wrong password, a db number
 * beyond the server's `databases`) never leaves the link unauthenticated or on db 0; the
 * link stays down, tries again after the backoff, and logs the refusal once until a setup
 * succeeds. With sentinels (fleet_redis_target), every connect asks them for the primary
 * (a sentinel that does not answer within FLEET_SENTINEL_TIMEOUT_MS is passed over) and
 * the address must answer ROLE master: right after a failover a sentinel may still name
 * the old primary. The backoff then stops at GW_REDIS_LINK_SENTINEL_BACKOFF_MAX_MS, so
 * the link finds a promoted replica soon after the sentinels do.
 *
 * The owner sees the context only between up() and down(): never before its setup is
 * done. The backoff grows on every failed attempt and goes back to its minimum only when
 * the owner says the link is in use (gw_redis_link_settled), so a server that accepts
 * connections and then refuses the owner's first commands is not hammered. A connect or
 * setup not answered within GW_REDIS_LINK_SETUP_MS (a stopped server: the kernel still
 * accepts) is given up and tried again. TCP keepalive is on, so a peer that vanished is
 * noticed by the kernel even on a connection that sends nothing (a subscription); a
 * server that accepts commands and does not answer is the owner's to notice (redis.c's
 * watchdog), since only it knows what it is waiting for.
 *
 * Every reply callback the owner registered on the context runs exactly once (hiredis
 * runs pending ones with NULL when the context goes); up() and down() alternate, down()
 * only after an up().
 */
#ifndef GW_REDIS_LINK_H
#define GW_REDIS_LINK_H

#include <hiredis/async.h>

#include "fleet/redis_target.h"
#include "gateway.h"

#define GW_REDIS_LINK_BACKOFF_MIN_MS 100
#define GW_REDIS_LINK_BACKOFF_MAX_MS 2000
#define GW_REDIS_LINK_SENTINEL_BACKOFF_MAX_MS 500
#define GW_REDIS_LINK_SETUP_MS 5000 /* connect and setup, or start over */

typedef struct gw_redis_link gw_redis_link;

typedef struct gw_redis_link_cbs {
    /* The connection is usable (connected, its database selected). */
    void (*up)(redisAsyncContext *ac, void *arg);
    /* The connection of the last up() is gone; the link reconnects after its backoff.
     * Replies pending on it have run (or run now) with NULL. */
    void (*down)(void *arg);
    /* Optional: the address of each connect (else the URL's, or the sentinels'): on a
     * Redis Cluster the events link goes round its masters. False: the last address. */
    bool (*pick)(fleet_redis_addr *a, void *arg);
    void *arg;
} gw_redis_link_cbs;

/* name labels the link's log lines ("redis", "events"). t must outlive the link.
 * Connects at once. Returns NULL when out of memory. */
gw_redis_link *gw_redis_link_new(struct event_base *base, const fleet_redis_target *t,
                                 const char *name, const gw_redis_link_cbs *cbs);
/* Closes the connection (pending callbacks run with NULL; down() is not called). NULL
 * is fine. */
void gw_redis_link_free(gw_redis_link *l);

const char *gw_redis_link_host(const gw_redis_link *l);
/* Why the link stays down although Redis answers (its AUTH or SELECT was refused), or
 * why no sentinel named the primary in the last round; NULL once the link is up. */
const char *gw_redis_link_refusal(const gw_redis_link *l);

/* The owner found the link working: the next loss reconnects after the minimum delay. */
void gw_redis_link_settled(gw_redis_link *l);

/* Ends the connection and reconnects after the backoff; down() runs if it was up. From
 * inside one of the link's reply callbacks, the connection ends once that callback
 * returns (hiredis frees it then); from anywhere else (a timer), at once, without waiting
 * for replies a stalled server would never send. */
void gw_redis_link_close(gw_redis_link *l, const char *why);

#endif
