/* redis.c: async Redis glue for the gateway (redis.h). */
#include "redis.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/id.h"
#include "fleet/log.h"

/* One command in flight. Linked so that a stalled server can be detected. */
typedef struct gw_op {
    struct gw_redis *r;
    fleet_cmd *cmd; /* NULL for plain commands */
    gw_redis_cb cb;
    void *arg;
    uint64_t sent_ms;
    bool retried;
    struct gw_op *prev, *next;
} gw_op;

struct gw_redis {
    struct event_base *base;
    redisAsyncContext *ac; /* NULL while disconnected */
    char host[256];
    int port, db;
    long timeout_ms;
    bool ready;            /* connected and scripts loaded */
    int scripts_pending;
    long backoff_ms;
    struct event *reconnect_ev;
    struct event *watchdog_ev;
    gw_op *ops;            /* in flight, oldest last */
};

static void start_connect(gw_redis *r);

/* ------------------------------------------------------------ ops ------------------- */

static void op_link(gw_redis *r, gw_op *op) {
    op->prev = NULL;
    op->next = r->ops;
    if (r->ops) r->ops->prev = op;
    r->ops = op;
}

static void op_unlink(gw_redis *r, gw_op *op) {
    if (op->prev) op->prev->next = op->next;
    else r->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static int op_send(gw_op *op);

static void op_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_op *op = privdata;
    gw_redis *r = op->r;
    redisReply *rep = reply;
    op_unlink(r, op);
    if (rep && op->cmd && !op->retried && fleet_reply_is_noscript(rep)) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): send the source. */
        op->retried = true;
        fleet_cmd_as_eval(op->cmd);
        if (op_send(op) == 0) return;
        rep = NULL;
    }
    op->cb(rep, op->arg);
    free(op);
}

/* Sends a script op's command (again, after NOSCRIPT). */
static int op_send(gw_op *op) {
    gw_redis *r = op->r;
    if (!r->ac || redisAsyncCommandArgv(r->ac, op_reply, op, op->cmd->argc, op->cmd->argv,
                                        op->cmd->argvlen) != REDIS_OK)
        return -1;
    op_link(r, op);
    return 0;
}

int gw_redis_script(gw_redis *r, fleet_cmd *cmd, gw_redis_cb cb, void *arg) {
    if (!r->ready) return -1;
    gw_op *op = calloc(1, sizeof *op);
    if (!op) return -1;
    *op = (gw_op){.r = r, .cmd = cmd, .cb = cb, .arg = arg, .sent_ms = fleet_now_ms()};
    if (op_send(op) < 0) {
        free(op);
        return -1;
    }
    return 0;
}

int gw_redis_command(gw_redis *r, int argc, const char **argv, const size_t *lens,
                     gw_redis_cb cb, void *arg) {
    if (!r->ready || !r->ac) return -1;
    gw_op *op = calloc(1, sizeof *op);
    if (!op) return -1;
    *op = (gw_op){.r = r, .cb = cb, .arg = arg, .sent_ms = fleet_now_ms()};
    if (redisAsyncCommandArgv(r->ac, op_reply, op, argc, argv, lens) != REDIS_OK) {
        free(op);
        return -1;
    }
    op_link(r, op);
    return 0;
}

bool gw_redis_ready(const gw_redis *r) { return r->ready; }

/* ------------------------------------------------------------ connection ------------ */

static void schedule_reconnect(gw_redis *r) {
    struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
    evtimer_add(r->reconnect_ev, &tv);
    r->backoff_ms = r->backoff_ms * 2 > 2000 ? 2000 : r->backoff_ms * 2;
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_redis *r = ac->data;
    const fleet_script *s = privdata;
    redisReply *rep = reply;
    if (!rep || !r) return; /* disconnected: the disconnect callback takes over */
    if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, s->sha) != 0) {
        fleet_log(FLEET_LOG_ERROR, "script load failed", "script", s->name, "reply",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected", NULL);
        return; /* stays not ready: /readyz says 503 */
    }
    if (--r->scripts_pending == 0) {
        r->ready = true;
        r->backoff_ms = 100;
        fleet_log(FLEET_LOG_INFO, "redis ready", "host", r->host, NULL);
    }
}

static void on_connect(const redisAsyncContext *ac, int status) {
    gw_redis *r = ac->data;
    if (status != REDIS_OK) {
        fleet_log(FLEET_LOG_WARN, "redis connect failed", "error", ac->errstr, NULL);
        r->ac = NULL; /* hiredis frees the context after this callback */
        ((redisAsyncContext *)ac)->data = NULL;
        schedule_reconnect(r);
        return;
    }
    redisAsyncContext *c = (redisAsyncContext *)ac;
    if (r->db) redisAsyncCommand(c, NULL, NULL, "SELECT %d", r->db);
    r->scripts_pending = FLEET_SCRIPT_COUNT;
    for (int i = 0; i < FLEET_SCRIPT_COUNT; i++) {
        const fleet_script *s = fleet_script_get((fleet_script_id)i);
        redisAsyncCommand(c, on_script_loaded, (void *)s, "SCRIPT LOAD %s", s->source);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    gw_redis *r = ac->data;
    if (!r) return;
    fleet_log(FLEET_LOG_WARN, "redis disconnected", "error",
              status == REDIS_OK ? "closed" : ac->errstr, NULL);
    r->ac = NULL;
    r->ready = false;
    schedule_reconnect(r);
}

static void start_connect(gw_redis *r) {
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        fleet_log(FLEET_LOG_WARN, "redis connect failed", "error", ac ? ac->errstr : "oom", NULL);
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg) {
    gw_redis *r = arg;
    if (!r->ac) start_connect(r);
}

/* A server that accepts commands but does not answer (paused, swapped out, a network
 * black hole) would hold requests forever: drop the connection instead, which answers
 * every pending command with NULL and reconnects. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg) {
    gw_redis *r = arg;
    if (!r->ac || !r->ops) return;
    gw_op *oldest = r->ops;
    while (oldest->next) oldest = oldest->next;
    if (fleet_now_ms() - oldest->sent_ms > (uint64_t)r->timeout_ms) {
        fleet_log(FLEET_LOG_WARN, "redis not answering: dropping the connection", NULL);
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->ready = false;
        ac->data = NULL; /* on_disconnect must not reschedule twice */
        redisAsyncFree(ac);
        schedule_reconnect(r);
    }
}

gw_redis *gw_redis_new(struct event_base *base, const char *url, long timeout_ms) {
    gw_redis *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->base = base;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = 100;
    if (fleet_redis_url_parse(url, r->host, sizeof r->host, &r->port, &r->db) < 0) goto err;
    r->reconnect_ev = evtimer_new(base, on_reconnect_timer, r);
    r->watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, r);
    if (!r->reconnect_ev || !r->watchdog_ev) goto err;
    struct timeval tick = {0, 250000};
    evtimer_add(r->watchdog_ev, &tick);
    start_connect(r);
    return r;
err:
    gw_redis_free(r);
    return NULL;
}

void gw_redis_free(gw_redis *r) {
    if (!r) return;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* runs pending callbacks with NULL */
    }
    if (r->reconnect_ev) event_free(r->reconnect_ev);
    if (r->watchdog_ev) event_free(r->watchdog_ev);
    free(r);
}
