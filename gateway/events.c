/* events.c: the subscription to {prefix}:events and the table of local waiters (events.h). */
#include "events.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/log.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "redis.h"
#include "redis_link.h"

#define BUCKETS 1024u

struct gw_events {
    gw_redis_link *link; /* its own connection: a subscribed one takes no other command */
    char channel[FLEET_KEY_MAX];
    gw_waiter *buckets[BUCKETS];
    gw_waiter *any;       /* waiters of every event */
    gw_wake_cb on_models; /* a model's record changed (models.h), and on every subscribe */
    gw_redis *redis;      /* on a cluster: names the master to subscribe on */
    unsigned picks;       /* connects so far: the next one tries the next master */
    void *on_models_arg;
    gw_wake_cb on_shards; /* the shard table changed (gateway/shards.h), and on every subscribe */
    void *on_shards_arg;
};

/* ------------------------------------------------------------ waiters --------------- */

static unsigned hash_id(const char *id) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h % BUCKETS;
}

static gw_waiter **list_of(gw_events *e, const gw_waiter *w) {
    return strcmp(w->id, "*") == 0 ? &e->any : &e->buckets[w->bucket];
}

void gw_events_watch(gw_events *e, gw_waiter *w, const char *id, gw_wake_cb cb, void *arg) {
    if (w->linked) gw_events_unwatch(e, w);
    snprintf(w->id, sizeof w->id, "%s", id);
    w->cb = cb;
    w->arg = arg;
    w->bucket = hash_id(w->id);
    gw_waiter **head = list_of(e, w);
    w->prev = NULL;
    w->next = *head;
    if (*head) (*head)->prev = w;
    *head = w;
    w->linked = true;
}

void gw_events_unwatch(gw_events *e, gw_waiter *w) {
    if (!w->linked) return;
    gw_waiter **head = list_of(e, w);
    if (w->prev) w->prev->next = w->next;
    else *head = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->linked = false;
}

/* Wakes the waiters of one list whose id matches (NULL: all). A callback may unwatch its
 * own waiter, so the next one is taken before the call. */
static void wake_list(gw_waiter *w, const char *id) {
    while (w) {
        gw_waiter *next = w->next;
        if (!id || strcmp(w->id, id) == 0) w->cb(w->arg);
        w = next;
    }
}

void gw_events_wake_all(gw_events *e) {
    for (unsigned i = 0; i < BUCKETS; i++) wake_list(e->buckets[i], NULL);
    wake_list(e->any, NULL);
}

/* ------------------------------------------------------------ subscription ---------- */

/* One event of a message (fleet_event_next): wakes the job's waiters, or every waiter of
 * all events for a webhook delivery to make. */
static void wake_event(gw_events *e, const fleet_event *ev) {
    if (ev->id_len == sizeof FLEET_EVENT_MODELS - 1 &&
        memcmp(ev->id, FLEET_EVENT_MODELS, ev->id_len) == 0 && e->on_models) {
        e->on_models(e->on_models_arg);
        return;
    }
    if (ev->id_len == sizeof FLEET_EVENT_SHARDS - 1 &&
        memcmp(ev->id, FLEET_EVENT_SHARDS, ev->id_len) == 0) {
        if (e->on_shards) e->on_shards(e->on_shards_arg);
        return;
    }
    if (ev->id_len != FLEET_ID_LEN) return;
    char id[FLEET_ID_LEN + 1];
    memcpy(id, ev->id, FLEET_ID_LEN);
    id[FLEET_ID_LEN] = '\0';
    if (ev->what_len == 7 && memcmp(ev->what, "webhook", 7) == 0) wake_list(e->any, NULL);
    else wake_list(e->buckets[hash_id(id)], id);
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_events *e = privdata;
    redisReply *r = reply;
    (void)ac;
    if (r && r->type == REDIS_REPLY_ERROR) {
        /* The subscription was refused (a Redis that is loading, failing over, ...): start
         * over on a fresh connection after the backoff. */
        fleet_log(FLEET_LOG_WARN, "events: subscribe refused", "error", r->str, NULL);
        gw_redis_link_close(e->link, "SUBSCRIBE refused");
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        gw_redis_link_settled(e->link);
        fleet_log(FLEET_LOG_INFO, "subscribed to job events", "channel", e->channel, NULL);
        gw_events_wake_all(e); /* anything may have happened while we were away */
        if (e->on_models) e->on_models(e->on_models_arg);
        if (e->on_shards) e->on_shards(e->on_shards_arg);
        return;
    }
    if (strcmp(kind, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING) return;
    /* One line per job: a batch's claim or finish names all its jobs in one message. */
    const char *p = r->element[2]->str, *end = p + r->element[2]->len;
    fleet_event ev;
    while (fleet_event_next(&p, end, &ev)) wake_event(e, &ev);
}

/* The link is connected on its database: subscribe. A subscriber that Redis stops
 * answering is found by TCP keepalive (redis_link.h); the waiters also read again on their
 * own now and then (watch.c). */
static void on_link_up(redisAsyncContext *ac, void *arg) {
    gw_events *e = arg;
    if (redisAsyncCommand(ac, on_message, e, "SUBSCRIBE %s", e->channel) != REDIS_OK)
        gw_redis_link_close(e->link, "SUBSCRIBE could not be sent");
}

/* Nothing to forget: the next subscribe wakes every waiter. */
static void on_link_down(void *arg) {
    (void)arg;
    fleet_log(FLEET_LOG_WARN, "events: subscription lost", NULL);
}

/* On a cluster, each connect goes to the next usable master (a lost one is passed over
 * once the command side has seen it go). */
static bool pick_node(fleet_redis_addr *a, void *arg) {
    gw_events *e = arg;
    return gw_redis_pick_node(e->redis, e->picks++, a);
}

gw_events *gw_events_new(struct event_base *base, const fleet_redis_target *t, gw_redis *redis,
                         const char *channel) {
    gw_events *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    snprintf(e->channel, sizeof e->channel, "%s", channel);
    e->redis = redis;
    e->link = gw_redis_link_new(base, t, "events",
                                &(gw_redis_link_cbs){.up = on_link_up,
                                                     .down = on_link_down,
                                                     .pick = t->nseeds ? pick_node : NULL,
                                                     .arg = e});
    if (!e->link) {
        free(e);
        return NULL;
    }
    return e;
}

void gw_events_on_models(gw_events *e, gw_wake_cb cb, void *arg) {
    e->on_models = cb;
    e->on_models_arg = arg;
}

void gw_events_on_shards(gw_events *e, gw_wake_cb cb, void *arg) {
    e->on_shards = cb;
    e->on_shards_arg = arg;
}

void gw_events_free(gw_events *e) {
    if (!e) return;
    gw_redis_link_free(e->link);
    free(e);
}
