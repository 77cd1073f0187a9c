/* redis_link.c: one reconnecting async Redis connection (redis_link.h). */
#include "redis_link.h"

#include <hiredis/adapters/libevent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/log.h"
#include "fleet/redis_target.h"

/* The steps between connect and up(), in order; each is skipped when not needed. */
typedef enum setup_step { STEP_AUTH, STEP_SELECT, STEP_ROLE, STEP_DONE } setup_step;
static const char *const step_names[] = {"AUTH", "SELECT", "ROLE"};

struct gw_redis_link {
    struct event_base *base;
    gw_redis_link_cbs cbs;
    char name[16];
    const fleet_redis_target *t;
    fleet_redis_addr addr; /* the primary: the URL's, or the one the sentinels named last */
    redisAsyncContext *ac; /* NULL while disconnected; connecting or set up until up */
    setup_step step;       /* the setup command in flight on ac */
    bool up;               /* up() was called for ac */
    redisAsyncContext *sq; /* a SENTINEL get-master-addr-by-name in flight, or NULL */
    size_t sq_next;        /* the sentinel to ask next */
    size_t sq_asked;       /* sentinels asked in this round without an answer */
    bool refusal_logged;   /* a refused AUTH or SELECT was logged: quiet until one succeeds */
    bool lookup_logged;    /* a round of sentinels without an answer was logged */
    bool down_logged;      /* a failed connect was logged at warn: quiet until up */
    char refused[320];     /* why Redis refused the last setup, or no sentinel answered;
                            * "" once one succeeds */
    long backoff_ms;
    struct event *reconnect_ev;
    struct event *setup_ev; /* armed from connect (or a sentinel question) until up */
};

static void arm(struct event *ev, long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* With sentinels, a lost primary is usually a failover: the sentinels name the new one
 * within seconds, and asking them is cheap, so the link asks more often. */
static void schedule_reconnect(gw_redis_link *l) {
    long max = l->t->nsentinels ? GW_REDIS_LINK_SENTINEL_BACKOFF_MAX_MS
                                : GW_REDIS_LINK_BACKOFF_MAX_MS;
    if (l->backoff_ms > max) l->backoff_ms = max;
    arm(l->reconnect_ev, l->backoff_ms);
    l->backoff_ms = l->backoff_ms * 2 > max ? max : l->backoff_ms * 2;
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
    l->refusal_logged = false;
    l->lookup_logged = false;
    l->down_logged = false;
    l->refused[0] = '\0';
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", l->addr.host, l->addr.port);
    fleet_log(FLEET_LOG_INFO, "redis connected", "link", l->name, "addr", addr, NULL);
    l->cbs.up(l->ac, l->cbs.arg);
}

static void setup_next(gw_redis_link *l, redisAsyncContext *ac);

/* The answer to a setup step. A refused AUTH or SELECT is a configuration error: logged
 * once until a setup succeeds, and readyz says it (gw_redis_link_refusal). A ROLE other
 * than master is a failover in progress: the sentinels are asked again after the
 * backoff. Never go on after a failed step: without AUTH every command fails, and
 * without SELECT they would read and write another database's keys. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_redis_link *l = privdata;
    redisReply *rep = reply;
    if (!rep || l->ac != ac) return; /* the connection went: on_disconnect takes over */
    char why[200];
    int rc = 0;
    if (l->step == STEP_ROLE) {
        rc = fleet_role_reply_master(rep, why, sizeof why);
    } else if (rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "OK") != 0) {
        const char *answer = rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply";
        if (l->step == STEP_SELECT)
            snprintf(why, sizeof why,
                     "Redis refused SELECT %d (%.100s): check the database number of "
                     "FLEET_REDIS_URL",
                     l->t->db, answer);
        else
            snprintf(why, sizeof why,
                     "Redis refused AUTH (%.100s): check the user and password of "
                     "FLEET_REDIS_URL",
                     answer);
        rc = -1;
    }
    if (rc == 0) {
        l->step++;
        setup_next(l, ac);
        return;
    }
    if (l->step == STEP_ROLE) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", l->addr.host, l->addr.port);
        fleet_log(FLEET_LOG_WARN, "the address the sentinels gave is not the primary (yet)", "link",
                  l->name, "addr", addr, "reply", why, NULL);
    } else {
        snprintf(l->refused, sizeof l->refused, "%s", why);
        if (!l->refusal_logged)
            fleet_log(FLEET_LOG_ERROR,
                      l->step == STEP_AUTH
                          ? "redis refused the credentials of FLEET_REDIS_URL: not using "
                            "this connection"
                          : "redis refused SELECT of the URL's database: not using this "
                            "connection (check the db number of FLEET_REDIS_URL against "
                            "the server's `databases`)",
                      "link", l->name, "reply", why, NULL);
        l->refusal_logged = true;
    }
    redisAsyncDisconnect(ac); /* inside its callback: hiredis ends it when we return */
}

static void setup_next(gw_redis_link *l, redisAsyncContext *ac) {
    for (; l->step < STEP_DONE; l->step++) {
        int rc;
        if (l->step == STEP_AUTH && l->t->auth) {
            const char *argv[3];
            size_t lens[3];
            int n = fleet_redis_auth_argv(l->t, argv, lens);
            rc = redisAsyncCommandArgv(ac, on_setup_reply, l, n, argv, lens);
        } else if (l->step == STEP_SELECT && l->t->db != 0) {
            rc = redisAsyncCommand(ac, on_setup_reply, l, "SELECT %d", l->t->db);
        } else if (l->step == STEP_ROLE && l->t->nsentinels) {
            rc = redisAsyncCommand(ac, on_setup_reply, l, "ROLE");
        } else {
            continue;
        }
        if (rc != REDIS_OK) {
            fleet_log(FLEET_LOG_WARN, "redis setup command could not be sent", "link", l->name,
                      "step", step_names[l->step], NULL);
            redisAsyncDisconnect(ac);
        }
        return;
    }
    set_up(l);
}

static void on_connect(const redisAsyncContext *cac, int status) {
    gw_redis_link *l = cac->data;
    if (!l) return;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (status != REDIS_OK) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", l->addr.host, l->addr.port);
        /* One warning per outage: a failover retries every half second. */
        fleet_log(l->down_logged ? FLEET_LOG_DEBUG : FLEET_LOG_WARN, "redis connect failed", "link",
                  l->name, "addr", addr, "error", ac->errstr, NULL);
        l->down_logged = true;
        l->ac = NULL; /* hiredis frees the context after this callback */
        ac->data = NULL;
        lost(l);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    l->step = STEP_AUTH;
    setup_next(l, ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    gw_redis_link *l = ac->data;
    if (!l) return; /* closed by us: already handled */
    /* A connection ended during its setup was logged with its reason already. */
    fleet_log(l->up ? FLEET_LOG_WARN : FLEET_LOG_DEBUG, "redis disconnected", "link", l->name,
              "error", status == REDIS_OK ? "closed" : ac->errstr, NULL);
    l->ac = NULL;
    lost(l);
}

static void connect_primary(gw_redis_link *l) {
    redisAsyncContext *ac = redisAsyncConnect(l->addr.host, l->addr.port);
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
    arm(l->setup_ev, GW_REDIS_LINK_SETUP_MS);
}

/* ------------------------------------------------------------ sentinel lookup ------ */

static void sentinel_ask(gw_redis_link *l);

/* The sentinel asked did not name the primary: ask the next one, or, when every one of
 * this round failed, try again after the backoff. */
static void sentinel_failed(gw_redis_link *l, const char *why) {
    const fleet_redis_addr *s = &l->t->sentinels[l->sq_next];
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", s->host, s->port);
    fleet_log(FLEET_LOG_DEBUG, "sentinel did not name the primary", "link", l->name, "sentinel",
              addr, "error", why, NULL);
    l->sq_next = (l->sq_next + 1) % l->t->nsentinels;
    if (++l->sq_asked < l->t->nsentinels) {
        sentinel_ask(l);
        return;
    }
    snprintf(l->refused, sizeof l->refused,
             "no sentinel named the primary of '%.60s' (last: %.60s: %.60s)", l->t->master, addr,
             why);
    if (!l->lookup_logged)
        fleet_log(FLEET_LOG_WARN, "no sentinel named the primary; asking again", "link", l->name,
                  "master", l->t->master, "last_error", why, NULL);
    l->lookup_logged = true;
    schedule_reconnect(l);
}

static void on_sentinel_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_redis_link *l = privdata;
    if (l->sq != ac) return; /* given up on (timeout, free): already handled */
    l->sq = NULL;
    evtimer_del(l->setup_ev);
    char why[200];
    fleet_redis_addr a;
    int rc = fleet_sentinel_reply_addr(reply, &a, why, sizeof why);
    /* With a reply the context lives on: end it once this callback returns. Without one,
     * hiredis is freeing it already. */
    if (reply) redisAsyncDisconnect(ac);
    if (rc < 0) {
        sentinel_failed(l, reply ? why : (ac->errstr[0] ? ac->errstr : "no answer"));
        return;
    }
    l->refused[0] = '\0';
    l->addr = a;
    connect_primary(l);
}

static void sentinel_ask(gw_redis_link *l) {
    const fleet_redis_addr *s = &l->t->sentinels[l->sq_next];
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err || redisLibeventAttach(ac, l->base) != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        sentinel_failed(l, why);
        return;
    }
    /* hiredis buffers the commands until the connection is made; a failed connect runs
     * on_sentinel_reply with NULL. A refused AUTH shows as the question's NOAUTH answer. */
    if ((l->t->sentinel_password[0] &&
         redisAsyncCommand(ac, NULL, NULL, "AUTH %s", l->t->sentinel_password) != REDIS_OK) ||
        redisAsyncCommand(ac, on_sentinel_reply, l, "SENTINEL get-master-addr-by-name %s",
                          l->t->master) != REDIS_OK) {
        redisAsyncFree(ac);
        sentinel_failed(l, "the question could not be sent");
        return;
    }
    l->sq = ac;
    arm(l->setup_ev, FLEET_SENTINEL_TIMEOUT_MS);
}

static void start_connect(gw_redis_link *l) {
    if (l->cbs.pick) (void)l->cbs.pick(&l->addr, l->cbs.arg);
    if (!l->t->nsentinels) {
        connect_primary(l);
        return;
    }
    l->sq_asked = 0;
    sentinel_ask(l);
}

/* hiredis 0.14 has no connect timeout, and a stopped server still completes the TCP
 * handshake (the kernel does) but never answers SELECT: give up and start over. */
static void on_setup_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_redis_link *l = arg;
    if (l->sq) {
        redisAsyncContext *ac = l->sq;
        l->sq = NULL;
        redisAsyncFree(ac); /* runs on_sentinel_reply with NULL, which sees l->sq moved on */
        sentinel_failed(l, "no answer in time");
    } else if (l->ac && !l->up) {
        gw_redis_link_close(l, "no connection or setup answer in time");
    }
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_redis_link *l = arg;
    if (!l->ac && !l->sq) start_connect(l);
}


const char *gw_redis_link_host(const gw_redis_link *l) { return l->addr.host; }

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

gw_redis_link *gw_redis_link_new(struct event_base *base, const fleet_redis_target *t,
                                 const char *name, const gw_redis_link_cbs *cbs) {
    gw_redis_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->base = base;
    l->cbs = *cbs;
    l->backoff_ms = GW_REDIS_LINK_BACKOFF_MIN_MS;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->t = t;
    l->addr = t->addr;
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
    if (l->sq) {
        redisAsyncContext *ac = l->sq;
        l->sq = NULL;
        redisAsyncFree(ac);
    }
    if (l->reconnect_ev) event_free(l->reconnect_ev);
    if (l->setup_ev) event_free(l->setup_ev);
    free(l);
}
