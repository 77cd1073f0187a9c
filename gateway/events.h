/* events.h: the gateway's one subscription to the fleet's events channel, and the local
 * waiters it wakes up.
 *
 * Every transition script publishes "<job id> <what>" on {prefix}:events. The gateway
 * holds one SUBSCRIBE connection (its own link, redis_link.h) and a table of waiters by
 * job id: a job watch (watch.h: a Prefer: wait request, an SSE stream), the webhook loop. A message wakes the waiters of its job;
 * they read the job from Redis again (the message is only a wake-up: what matters is in the
 * job hash). When the subscription is (re)established, every waiter is woken, so nothing
 * that happened while it was down is missed; a waiter registers before its first read, so
 * a job that ends between a submit and the wait is seen either by the read or by a wake.
 */
#ifndef GW_EVENTS_H
#define GW_EVENTS_H

#include <stdbool.h>

#include "fleet/job.h"
#include "fleet/redis_target.h"
#include "gateway.h"

typedef struct gw_events gw_events;

/* Called on the event loop when the waiter's job may have changed; for a waiter of id "*",
 * when a webhook delivery was queued ("<id> webhook" messages), and on a resubscribe. It
 * may unwatch its own waiter, and no other. */
typedef void (*gw_wake_cb)(void *arg);

typedef struct gw_waiter {
    char id[FLEET_ID_LEN + 1];
    gw_wake_cb cb;
    void *arg;
    unsigned bucket;
    bool linked;
    struct gw_waiter *prev, *next;
} gw_waiter;

/* On a Redis Cluster (t's seeds) the subscription is made on any master that redis (the
 * command side) finds usable, another one at each reconnect: a PUBLISH on any node of a
 * cluster reaches the subscribers of every node. */
gw_events *gw_events_new(struct event_base *base, const fleet_redis_target *t, gw_redis *redis,
                         const char *channel);
void gw_events_free(gw_events *e);

/* Registers w (owned by the caller, e.g. inside its request state) for job id; "*" means
 * every event. */
void gw_events_watch(gw_events *e, gw_waiter *w, const char *id, gw_wake_cb cb, void *arg);
void gw_events_unwatch(gw_events *e, gw_waiter *w);
/* Wakes every waiter (after a resubscribe; at shutdown). */
void gw_events_wake_all(gw_events *e);
/* cb(arg) runs on a line "models <name>" (FLEET_EVENT_MODELS: a model's record was added
 * or removed) and after every (re)subscribe, when a message may have been missed. */
void gw_events_on_models(gw_events *e, gw_wake_cb cb, void *arg);
/* cb(arg) runs on a line "shards" (FLEET_EVENT_SHARDS: the shard table changed) and after
 * every (re)subscribe. */
void gw_events_on_shards(gw_events *e, gw_wake_cb cb, void *arg);

#endif
