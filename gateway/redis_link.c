/* redis_link.c: one reconnecting async Redis connection (redis_link.h). */
#include "redis_link.h"

#include <hiredis/adapters/libevent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/log.h"

struct gw_redis_link {
    struct event_base *base;
    gw_redis_link_cbs cbs;
    char name[16];
    char host[256];
    int port, db;
    redisAsyncContext *ac; /* NULL while disconnected; connecting or selecting until up */
    bool up;               /* up() was called for ac */
    bool select_logged;    /* a refused SELECT was logged: quiet until one succeeds */
    char refused[160];     /* why the last SELECT was refused; "" once one succeeds */
    long backoff_ms;
    struct event *reconnect_ev;
    struct event *setup_ev; /* armed from connect until up */
};

static void schedule_reconnect(gw_redis_link *l) {
    struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
    evtimer_add(l->reconnect_ev, &tv);
    l->backoff_ms = l->backoff_ms * 2 > GW_REDIS_LINK_BACKOFF_MAX_MS ? GW_REDIS_LINK_BACKOFF_MAX_MS
                                                                     : l->backoff_ms * 2;
}

/* The context is gone or going (l->ac already NULL): tell the owner, try again later. */
static void lost(gw_redis_link *l) {
    bool was_up = l->up;
    l->up = false;
    evtimer_del(l->setup_ev);
    schedule_reconnect(l);
    if (was_up) l->cbs.down(l->cbs.arg);
}

static void set_up(gw_redis_link *l) {
    evtimer_del(l->setup_ev);
    l->up = true;
    l->cbs.up(l->ac, l->cbs.arg);
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_redis_link *l = privdata;
    redisReply *rep = reply;
    if (!rep || l->ac != ac) return; /* the connection went: on_disconnect takes over */
    if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0) {
        l->select_logged = false;
        l->refused[0] = '\0';
        set_up(l);
        return;
    }
    /* Never go on with the commands on db 0: they would read and write another
     * database's keys. */
    snprintf(l->refused, sizeof l->refused, "Redis refused SELECT %d (%.100s)", l->db,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
    if (!l->select_logged) {
        char db[16];
        snprintf(db, sizeof db, "%d", l->db);
        fleet_log(FLEET_LOG_ERROR,
                  "redis refused SELECT of the URL's database: not using this connection "
                  "(check the db number of FLEET_REDIS_URL against the server's `databases`)",
                  "link", l->name, "db", db, "reply",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected", NULL);
        l->select_logged = true;
    }
    redisAsyncDisconnect(ac); /* inside its callback: hiredis ends it when we return */
}

static void on_connect(const redisAsyncContext *cac, int status) {
    gw_redis_link *l = cac->data;
    if (!l) return;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (status != REDIS_OK) {
        fleet_log(FLEET_LOG_WARN, "redis connect failed", "link", l->name, "error", ac->errstr,
                  NULL);
        l->ac = NULL; /* hiredis frees the context after this callback */
        ac->data = NULL;
        lost(l);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    if (l->db == 0) {
        set_up(l);
    } else if (redisAsyncCommand(ac, on_select, l, "SELECT %d", l->db) != REDIS_OK) {
        fleet_log(FLEET_LOG_WARN, "redis SELECT could not be sent", "link", l->name, NULL);
        redisAsyncDisconnect(ac);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    gw_redis_link *l = ac->data;
    if (!l) return; /* closed by us: already handled */
    fleet_log(FLEET_LOG_WARN, "redis disconnected", "link", l->name, "error",
              status == REDIS_OK ? "closed" : ac->errstr, NULL);
    l->ac = NULL;
    lost(l);
}

static void start_connect(gw_redis_link *l) {
    redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
    if (!ac || ac->err) {
        fleet_log(FLEET_LOG_WARN, "redis connect failed", "link", l->name, "error",
                  ac ? ac->errstr : "out of memory", NULL);
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l->ac = ac;
    struct timeval tv = {GW_REDIS_LINK_SETUP_MS / 1000, (GW_REDIS_LINK_SETUP_MS % 1000) * 1000};
    evtimer_add(l->setup_ev, &tv);
}

/* hiredis 0.14 has no connect timeout, and a stopped server still completes the TCP
 * handshake (the kernel does) but never answers SELECT: give up and start over. */
static void on_setup_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_redis_link *l = arg;
    if (l->ac && !l->up) gw_redis_link_close(l, "no connection or SELECT answer in time");
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_redis_link *l = arg;
    if (!l->ac) start_connect(l);
}


const char *gw_redis_link_host(const gw_redis_link *l) { return l->host; }

const char *gw_redis_link_refusal(const gw_redis_link *l) {
    return l->refused[0] ? l->refused : NULL;
}

void gw_redis_link_settled(gw_redis_link *l) { l->backoff_ms = GW_REDIS_LINK_BACKOFF_MIN_MS; }

void gw_redis_link_close(gw_redis_link *l, const char *why) {
    redisAsyncContext *ac = l->ac;
    if (!ac) return;
    fleet_log(FLEET_LOG_WARN, "redis connection closed", "link", l->name, "why", why, NULL);
    if (ac->c.flags & REDIS_IN_CALLBACK) {
        /* hiredis must not free a context from inside its own callback: it ends it once
         * the callback returns and then calls on_disconnect. */
        redisAsyncDisconnect(ac);
        return;
    }
    l->ac = NULL;
    ac->data = NULL;    /* on_disconnect must not count the loss twice */
    redisAsyncFree(ac); /* runs pending callbacks with NULL */
    lost(l);
}

gw_redis_link *gw_redis_link_new(struct event_base *base, const char *url, const char *name,
                                 const gw_redis_link_cbs *cbs) {
    gw_redis_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base = base;
    l->cbs = *cbs;
    l->backoff_ms = GW_REDIS_LINK_BACKOFF_MIN_MS;
    snprintf(l->name, sizeof l->name, "%s", name);
    if (fleet_redis_url_parse(url, l->host, sizeof l->host, &l->port, &l->db) < 0) goto err;
    l->reconnect_ev = evtimer_new(base, on_reconnect_timer, l);
    l->setup_ev = evtimer_new(base, on_setup_timeout, l);
    if (!l->reconnect_ev || !l->setup_ev) goto err;
    start_connect(l);
    return l;
err:
    gw_redis_link_free(l);
    return NULL;
}

void gw_redis_link_free(gw_redis_link *l) {
    if (!l) return;
    if (l->ac) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        l->up = false;
        ac->data = NULL;
        redisAsyncFree(ac); /* runs pending callbacks with NULL */
    }
    if (l->reconnect_ev) event_free(l->reconnect_ev);
    if (l->setup_ev) event_free(l->setup_ev);
    free(l);
}
