/* events.c: the subscription to {prefix}:events and the table of local waiters (events.h). */
#include "events.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/log.h"

#define BUCKETS 1024u
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct gw_events {
    struct event_base *base;
    redisAsyncContext *ac; /* NULL while disconnected */
    char host[256];
    int port, db;
    char channel[FLEET_KEY_MAX];
    long backoff_ms;
    struct event *reconnect_ev;
    gw_waiter *buckets[BUCKETS];
    gw_waiter *any; /* waiters of every event */
};

static void start_connect(gw_events *e);

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

static void schedule_reconnect(gw_events *e) {
    struct timeval tv = {e->backoff_ms / 1000, (e->backoff_ms % 1000) * 1000};
    evtimer_add(e->reconnect_ev, &tv);
    e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_events *e = privdata;
    redisReply *r = reply;
    (void)ac;
    if (r && r->type == REDIS_REPLY_ERROR && e->ac) {
        /* The subscription was refused (a Redis that is loading, failing over, ...): start
         * over on a fresh connection after the backoff. */
        fleet_log(FLEET_LOG_WARN, "events: subscribe refused", "error", r->str, NULL);
        redisAsyncDisconnect(e->ac);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        e->backoff_ms = BACKOFF_MIN_MS;
        fleet_log(FLEET_LOG_INFO, "subscribed to job events", "channel", e->channel, NULL);
        gw_events_wake_all(e); /* anything may have happened while we were away */
        return;
    }
    if (strcmp(kind, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING) return;
    /* "<job id> <what>" */
    const char *msg = r->element[2]->str;
    const char *sp = strchr(msg, ' ');
    size_t n = sp ? (size_t)(sp - msg) : strlen(msg);
    if (n != FLEET_ID_LEN) return;
    char id[FLEET_ID_LEN + 1];
    memcpy(id, msg, n);
    id[n] = '\0';
    if (sp && strcmp(sp + 1, "webhook") == 0) wake_list(e->any, NULL);
    else wake_list(e->buckets[hash_id(id)], id);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    gw_events *e = ac->data;
    if (!e) return;
    if (status != REDIS_OK) {
        fleet_log(FLEET_LOG_WARN, "events: redis connect failed", "error", ac->errstr, NULL);
        e->ac = NULL; /* hiredis frees the context after this callback */
        ((redisAsyncContext *)ac)->data = NULL;
        schedule_reconnect(e);
        return;
    }
    redisAsyncContext *c = (redisAsyncContext *)ac;
    /* A subscriber that Redis stops answering is found by TCP keepalive; the waiters also
     * read again on their own now and then (wait.c, sse.c). */
    redisEnableKeepAlive(&c->c);
    if (e->db) redisAsyncCommand(c, NULL, NULL, "SELECT %d", e->db);
    redisAsyncCommand(c, on_message, e, "SUBSCRIBE %s", e->channel);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    gw_events *e = ac->data;
    if (!e) return;
    fleet_log(FLEET_LOG_WARN, "events: subscription lost", "error",
              status == REDIS_OK ? "closed" : ac->errstr, NULL);
    e->ac = NULL;
    schedule_reconnect(e);
}

static void start_connect(gw_events *e) {
    redisAsyncContext *ac = redisAsyncConnect(e->host, e->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(e);
        return;
    }
    ac->data = e;
    redisLibeventAttach(ac, e->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    e->ac = ac;
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_events *e = arg;
    if (!e->ac) start_connect(e);
}

gw_events *gw_events_new(struct event_base *base, const char *url, const char *channel) {
    gw_events *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->base = base;
    e->backoff_ms = BACKOFF_MIN_MS;
    snprintf(e->channel, sizeof e->channel, "%s", channel);
    if (fleet_redis_url_parse(url, e->host, sizeof e->host, &e->port, &e->db) < 0) goto err;
    e->reconnect_ev = evtimer_new(base, on_reconnect_timer, e);
    if (!e->reconnect_ev) goto err;
    start_connect(e);
    return e;
err:
    gw_events_free(e);
    return NULL;
}

void gw_events_free(gw_events *e) {
    if (!e) return;
    if (e->ac) {
        redisAsyncContext *ac = e->ac;
        e->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (e->reconnect_ev) event_free(e->reconnect_ev);
    free(e);
}
