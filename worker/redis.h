/* redis.h: fleet-worker's glue to hiredis' sync client (one per thread).
 *
 * On one Redis a wk_redis is one connection. On a Redis Cluster (FLEET_REDIS_CLUSTER) it
 * is a router (fleet/redis_router.h): one connection per master, each command sent to
 * the master of its key's slot, MOVED and ASK followed; its *home* is the master of the
 * control tag (the home key given at init), where the keyless commands, pub/sub and the
 * pipelines of control keys (heartbeats, metrics) go.
 *
 * Every call that talks to Redis returns NULL (or -1) when the connection is unusable;
 * the context has then been freed and logged once, and the next wk_redis_ensure()
 * reconnects with backoff (100 ms doubling to 2 s). On a cluster a lost master other than
 * the home fails only the commands sent to it: the router reads the slot map again and
 * connects to whoever serves the slot at the next command for it (a replica that took
 * over). Error replies (REDIS_REPLY_ERROR) are returned as replies: the connection is
 * fine, the command was refused.
 *
 * Ownership: replies are the caller's; free them with freeReplyObject.
 */
#ifndef WK_REDIS_H
#define WK_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "fleet/keys.h"
#include "fleet/redis_router.h"
#include "fleet/redis_target.h"
#include "fleet/state.h"

typedef struct wk_redis {
    fleet_router rt;                  /* the connection(s) */
    char home[FLEET_KEY_MAX];         /* a control key: its master is the home */
    redisContext *c;                  /* the home's connection, NULL while disconnected */
    bool rehome;                      /* a pipeline on the home got MOVED: find it again */
    const fleet_redis_target *target; /* the worker's, alive as long as the worker */
    long timeout_ms;  /* socket timeout: longer than any BLOCK this connection sends */
    const char *role; /* "main" or "keeper", for logs */
    long backoff_ms;
    long long next_try_mono;
    bool down_logged;    /* the current outage was already logged at warn level */
    unsigned long epoch; /* counts successful connects: state tied to a connection (the
                          * consumer group after a server restart) is redone when it moves */
} wk_redis;

/* Connects nothing. Each (re)connect finds the primary (through the sentinels when t
 * names them), sends AUTH and SELECT and checks ROLE: fleet_redis_connect_sync. A reply
 * READONLY (the server was demoted) drops the connection, so the next ensure finds the
 * new primary. home_key: a control key (its master is the home on a cluster). Returns 0. */
int wk_redis_init(wk_redis *r, const fleet_redis_target *t, const char *role, long timeout_ms,
                  const char *home_key);
/* Returns 0 when connected, after one connect attempt if the backoff allows it now;
 * -1 otherwise. Never sleeps: see wk_redis_retry_in_ms. */
int wk_redis_ensure(wk_redis *r);
/* Milliseconds until wk_redis_ensure will try again (0: now). */
long wk_redis_retry_in_ms(const wk_redis *r);
void wk_redis_close(wk_redis *r);
/* For a connection found broken (a command got no reply, a read failed): hiredis will not
 * recover the context, so it is freed (logged once per outage) and the next
 * wk_redis_ensure reconnects at once. */
void wk_redis_lost(wk_redis *r);

/* A command, routed by its key (fleet_router_cmd_key) on a cluster. */
redisReply *wk_redis_cmd(wk_redis *r, int argc, const char **argv, const size_t *argvlen);
/* A command with a hiredis format, routed by key on a cluster (NULL: the home). */
redisReply *wk_redis_cmdf(wk_redis *r, const char *key, const char *fmt, ...);

/* Pipelining on the home: append commands, then read one reply per command in order
 * (control keys only: on a cluster they are the home's). */
int wk_redis_appendf(wk_redis *r, const char *fmt, ...);
redisReply *wk_redis_get_reply(wk_redis *r);

/* wk_redis_script sends one state.h command as EVALSHA and, on NOSCRIPT, again as EVAL
 * (which also loads the script for later EVALSHAs). c is changed to the EVAL form then. */
redisReply *wk_redis_script(wk_redis *r, fleet_cmd *c);
/* Sends n script commands in one pipeline (on a cluster: one per master, each command to
 * the master of its first key) and reads their replies into replies[0..n); NOSCRIPT ones
 * are resent as EVAL one by one, and on a cluster MOVED and ASK ones (not run) are resent
 * through the router, which follows them. Returns 0, or -1 when a connection was lost:
 * the replies read before that stay in place (their commands ran), the others are NULL
 * (they may or may not have run). */
int wk_redis_scripts(wk_redis *r, fleet_cmd *cmds, size_t n, redisReply **replies);

#endif
