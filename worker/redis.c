/* redis.c: hiredis sync glue for fleet-worker (redis.h): connecting with backoff,
 * dropping a broken context, and the one path every script call takes (NOSCRIPT retry). */
#include "redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 2000

int wk_redis_init(wk_redis *r, const fleet_redis_target *t, const char *role, long timeout_ms) {
    memset(r, 0, sizeof *r);
    r->target = t;
    r->role = role;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

void wk_redis_close(wk_redis *r) {
    if (r->c) redisFree(r->c);
    r->c = NULL;
}

void wk_redis_lost(wk_redis *r) {
    char why[160];
    snprintf(why, sizeof why, "%s", r->c && r->c->errstr[0] ? r->c->errstr : "no reply");
    wk_redis_close(r);
    r->next_try_mono = 0; /* the first reconnect is immediate: the server may be fine */
    if (!r->down_logged)
        fleet_log(FLEET_LOG_WARN, "redis connection lost", "conn", r->role, "error", why, NULL);
    r->down_logged = true;
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
    char why[300] = "";
    char addr[300] = "";

    if (r->c) return 0;
    long long now = wk_mono_ms();
    if (now < r->next_try_mono) return -1;
    bool refused;
    r->c = fleet_redis_connect_sync(r->target, CONNECT_TIMEOUT_MS, r->timeout_ms, addr, sizeof addr,
                                    &refused, why, sizeof why);
    if (r->c) {
        fleet_log(FLEET_LOG_INFO, "redis connected", "conn", r->role, "addr", addr, NULL);
        r->down_logged = false;
        r->epoch++;
        r->backoff_ms = BACKOFF_MIN_MS;
        return 0;
    }
    /* One line per outage; the retries that follow are debug noise. A refused AUTH or
     * SELECT is a configuration error, said as one. */
    char target[400];
    fleet_redis_target_describe(r->target, target, sizeof target);
    fleet_log(r->down_logged ? FLEET_LOG_DEBUG
              : refused      ? FLEET_LOG_ERROR
                             : FLEET_LOG_WARN,
              refused ? "redis refused the login of FLEET_REDIS_URL (user, password or "
                        "database): retrying"
                      : "redis unreachable, retrying",
              "conn", r->role, "redis", target, "error", why, NULL);
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
    redisReply *rep = redisCommandArgv(r->c, argc, argv, argvlen);
    if (!rep) wk_redis_lost(r);
    drop_if_demoted(r, rep);
    return rep;
}

redisReply *wk_redis_cmdf(wk_redis *r, const char *fmt, ...) {
    va_list ap;
    if (!r->c) return NULL;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r->c, fmt, ap);
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

int wk_redis_scripts(wk_redis *r, fleet_cmd *cmds, size_t n, redisReply **replies) {
    size_t sent = 0;

    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (!r->c) return -1;
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
    for (size_t i = 0; i < n; i++) drop_if_demoted(r, replies[i]);
    return 0;
}
