/* redis.c: hiredis sync glue for fleet-worker (redis.h): connecting with backoff,
 * dropping a broken context, routing on a cluster, and the one path every script call
 * takes (NOSCRIPT retry). */
#include "redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/cluster.h"
#include "fleet/log.h"
#include "worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 2000

int wk_redis_init(wk_redis *r, const fleet_redis_target *t, const char *role, long timeout_ms,
                  const char *home_key) {
    memset(r, 0, sizeof *r);
    fleet_router_init(&r->rt, t, CONNECT_TIMEOUT_MS, timeout_ms);
    snprintf(r->home, sizeof r->home, "%s", home_key);
    r->target = t;
    r->role = role;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

void wk_redis_close(wk_redis *r) {
    fleet_router_close(&r->rt);
    r->c = NULL;
}

static void log_lost(wk_redis *r, const char *why) {
    if (!r->down_logged)
        fleet_log(FLEET_LOG_WARN, "redis connection lost", "conn", r->role, "error", why, NULL);
    r->down_logged = true;
}

void wk_redis_lost(wk_redis *r) {
    char why[160];
    snprintf(why, sizeof why, "%s", r->c && r->c->errstr[0] ? r->c->errstr : "no reply");
    if (r->c) fleet_router_lost(&r->rt, r->c);
    r->c = NULL;
    r->next_try_mono = 0; /* the first reconnect is immediate: the server may be fine */
    log_lost(r, why);
}

/* after_routed keeps r->c true after a command the router sent (on a cluster): the home's
 * connection may have been dropped (lost, READONLY). A lost master other than the home
 * leaves the home alone (the router reads the map again before the next command for that
 * master's slots). A NULL reply is logged, once per outage. */
static void after_routed(wk_redis *r, const redisReply *rep) {
    bool home_alive = false;
    for (size_t i = 0; i < r->rt.nnodes; i++)
        if (r->rt.node[i].c && r->rt.node[i].c == r->c) home_alive = true;
    if (!home_alive) {
        r->c = NULL; /* the next ensure finds the home again (a map read) */
        r->next_try_mono = 0;
    }
    if (!rep) log_lost(r, r->rt.why);
    r->epoch = r->rt.epoch;
}

/* A primary demoted to a replica (a failover while it was alive, or a URL naming a
 * replica) refuses every write with READONLY and keeps the connection open: drop it, so
 * that the next wk_redis_ensure finds the primary again (through the sentinels). */
static void drop_if_demoted(wk_redis *r, const redisReply *rep) {
    if (!r->c || !rep || rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "READONLY", 8) != 0)
        return;
    fleet_log(FLEET_LOG_WARN, "redis answered READONLY: finding the primary again", "conn", r->role,
              NULL);
    wk_redis_close(r);
    r->next_try_mono = wk_mono_ms() + r->backoff_ms;
}

int wk_redis_ensure(wk_redis *r) {
    if (r->c && r->rehome) r->c = NULL; /* a control key moved: find its master again */
    r->rehome = false;
    if (r->c) return 0;
    long long now = wk_mono_ms();
    if (now < r->next_try_mono) return -1;
    /* One Redis: its connection (through the sentinels); a cluster: the master of the
     * home key, after a map read when the map is stale. */
    int i = fleet_router_node_of_key(&r->rt, r->home, strlen(r->home));
    if (i >= 0) {
        char addr[300];
        r->c = r->rt.node[i].c;
        snprintf(addr, sizeof addr, "%s:%d", r->rt.node[i].addr.host, r->rt.node[i].addr.port);
        fleet_log(FLEET_LOG_INFO, "redis connected", "conn", r->role, "addr", addr, NULL);
        r->down_logged = false;
        r->epoch = r->rt.epoch;
        r->backoff_ms = BACKOFF_MIN_MS;
        return 0;
    }
    /* One line per outage; the retries that follow are debug noise. A refused AUTH or
     * SELECT is a configuration error, said as one. */
    char target[400];
    bool refused = r->rt.refused;
    fleet_redis_target_describe(r->target, target, sizeof target);
    fleet_log(r->down_logged ? FLEET_LOG_DEBUG
              : refused      ? FLEET_LOG_ERROR
                             : FLEET_LOG_WARN,
              refused ? "redis refused the login of FLEET_REDIS_URL (user, password or "
                        "database): retrying"
                      : "redis unreachable, retrying",
              "conn", r->role, "redis", target, "error", r->rt.why, NULL);
    r->down_logged = true;
    r->next_try_mono = now + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    return -1;
}

long wk_redis_retry_in_ms(const wk_redis *r) {
    long long d = r->next_try_mono - wk_mono_ms();
    return d > 0 ? (long)d : 0;
}

/* ---------------------------------------------------------------- commands --------- */

redisReply *wk_redis_cmd(wk_redis *r, int argc, const char **argv, const size_t *argvlen) {
    if (!r->c) return NULL;
    if (r->rt.cluster) {
        redisReply *rep = fleet_router_cmd(&r->rt, argc, argv, argvlen);
        after_routed(r, rep);
        return rep;
    }
    redisReply *rep = redisCommandArgv(r->c, argc, argv, argvlen);
    if (!rep) wk_redis_lost(r);
    drop_if_demoted(r, rep);
    return rep;
}

redisReply *wk_redis_cmdf(wk_redis *r, const char *key, const char *fmt, ...) {
    va_list ap;
    if (!r->c) return NULL;
    va_start(ap, fmt);
    redisReply *rep;
    if (r->rt.cluster) {
        rep = fleet_router_vcmdf(&r->rt, key ? key : r->home, fmt, ap);
        va_end(ap);
        after_routed(r, rep);
        return rep;
    }
    rep = redisvCommand(r->c, fmt, ap);
    va_end(ap);
    if (!rep) wk_redis_lost(r);
    drop_if_demoted(r, rep);
    return rep;
}

int wk_redis_appendf(wk_redis *r, const char *fmt, ...) {
    va_list ap;
    if (!r->c) return -1;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(r->c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        wk_redis_lost(r);
        return -1;
    }
    return 0;
}

redisReply *wk_redis_get_reply(wk_redis *r) {
    void *rep = NULL;
    if (!r->c) return NULL;
    if (redisGetReply(r->c, &rep) != REDIS_OK || !rep) {
        wk_redis_lost(r);
        return NULL;
    }
    /* A control slot moved (or the home was demoted): the next ensure finds the home. */
    if (r->rt.cluster && fleet_router_note(&r->rt, rep)) r->rehome = true;
    return rep;
}

redisReply *wk_redis_script(wk_redis *r, fleet_cmd *c) {
    redisReply *rep = wk_redis_cmd(r, c->argc, c->argv, c->argvlen);
    if (fleet_reply_is_noscript(rep)) {
        freeReplyObject(rep);
        fleet_cmd_as_eval(c);
        rep = wk_redis_cmd(r, c->argc, c->argv, c->argvlen);
    }
    return rep;
}

/* resend_noscript resends as EVAL, one by one, the commands of cmds[0..n) answered
 * NOSCRIPT. Returns 0, or -1 when the connection went. */
static int resend_noscript(wk_redis *r, fleet_cmd *cmds, size_t n, redisReply **replies) {
    /* A fresh server answers NOSCRIPT to every EVALSHA of the pipeline; resending each
     * one as EVAL is rare enough not to need a second pipeline. */
    for (size_t i = 0; i < n; i++) {
        if (!fleet_reply_is_noscript(replies[i])) continue;
        freeReplyObject(replies[i]);
        fleet_cmd_as_eval(&cmds[i]);
        if (!(replies[i] = wk_redis_cmd(r, cmds[i].argc, cmds[i].argv, cmds[i].argvlen))) {
            /* The connection went: the commands not yet resent did not run, so their
             * NOSCRIPT must not read as a final answer. Callers resend what has none. */
            for (size_t j = i + 1; j < n; j++)
                if (fleet_reply_is_noscript(replies[j])) {
                    freeReplyObject(replies[j]);
                    replies[j] = NULL;
                }
            return -1;
        }
    }
    return 0;
}

/* scripts_cluster: wk_redis_scripts on a cluster. Each command goes to the master of its
 * first key, appended to that master's connection; the replies are read master by
 * master in the order sent. */
static int scripts_cluster(wk_redis *r, fleet_cmd *cmds, size_t n, redisReply **replies) {
    redisContext **on = calloc(n ? n : 1, sizeof *on);
    int rc = 0;
    if (!on) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *key;
        size_t klen;
        int at = fleet_router_cmd_key(cmds[i].argc, cmds[i].argv, cmds[i].argvlen, &key, &klen)
                     ? fleet_router_node_of_key(&r->rt, key, klen)
                     : -1;
        on[i] = at >= 0 ? r->rt.node[at].c : NULL;
        if (on[i] && redisAppendCommandArgv(on[i], cmds[i].argc, cmds[i].argv,
                                            cmds[i].argvlen) != REDIS_OK) {
            fleet_router_lost(&r->rt, on[i]);
            for (size_t j = 0; j < i; j++)
                if (on[j] == on[i]) on[j] = NULL; /* their replies are lost with it */
            on[i] = NULL;
        }
    }
    /* A map read while routing (a connect failed) may have freed a context picked
     * before: then nothing of this pipeline is read, as after a lost connection. */
    for (size_t i = 0; i < n; i++) {
        bool live = false;
        for (size_t k = 0; on[i] && k < r->rt.nnodes; k++) live |= r->rt.node[k].c == on[i];
        if (!live) on[i] = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (!on[i]) {
            rc = -1;
            continue;
        }
        if (redisGetReply(on[i], &rep) != REDIS_OK || !rep) {
            redisContext *dead = on[i];
            for (size_t j = i; j < n; j++)
                if (on[j] == dead) on[j] = NULL;
            fleet_router_lost(&r->rt, dead);
            rc = -1;
            continue;
        }
        replies[i] = rep;
    }
    free(on);
    /* MOVED or ASK: not run there; the router follows it (and reads the map again). */
    for (size_t i = 0; i < n; i++) {
        if (!replies[i] || !fleet_router_note(&r->rt, replies[i])) continue;
        freeReplyObject(replies[i]);
        replies[i] = fleet_router_cmd(&r->rt, cmds[i].argc, cmds[i].argv, cmds[i].argvlen);
        if (!replies[i]) rc = -1;
    }
    if (rc < 0) {
        /* As on one connection: a NOSCRIPT not resent is no final answer (it did not run);
         * callers resend what has none. */
        for (size_t i = 0; i < n; i++)
            if (fleet_reply_is_noscript(replies[i])) {
                freeReplyObject(replies[i]);
                replies[i] = NULL;
            }
    }
    after_routed(r, rc < 0 || n == 0 ? NULL : replies[0]);
    if (rc == 0 && r->c) rc = resend_noscript(r, cmds, n, replies);
    return rc;
}

int wk_redis_scripts(wk_redis *r, fleet_cmd *cmds, size_t n, redisReply **replies) {
    size_t sent = 0;

    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (!r->c) return -1;
    if (r->rt.cluster) return scripts_cluster(r, cmds, n, replies);
    for (; sent < n; sent++)
        if (redisAppendCommandArgv(r->c, cmds[sent].argc, cmds[sent].argv, cmds[sent].argvlen) !=
            REDIS_OK)
            break;
    for (size_t i = 0; i < sent; i++) {
        if (!(replies[i] = wk_redis_get_reply(r))) return -1;
    }
    if (sent < n) {
        wk_redis_lost(r);
        return -1;
    }
    if (resend_noscript(r, cmds, n, replies) < 0) return -1;
    for (size_t i = 0; i < n; i++) drop_if_demoted(r, replies[i]);
    return 0;
}
