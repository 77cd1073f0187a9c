/* redis_router.c: synchronous command routing over one Redis or a Redis Cluster
 * (redis_router.h). */
#include "fleet/redis_router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fleet/err.h"

void fleet_router_init(fleet_router *r, const fleet_redis_target *t, long connect_ms,
                       long io_ms) {
    memset(r, 0, sizeof *r);
    r->target = *t;
    r->connect_ms = connect_ms;
    r->io_ms = io_ms;
    r->cluster = t->nseeds > 0;
    r->stale = r->cluster;
    if (!r->cluster) r->nnodes = 1; /* node[0]: the one Redis, found at connect */
}

static void drop(fleet_router_node *n) {
    if (n->c) redisFree(n->c);
    n->c = NULL;
}

void fleet_router_close(fleet_router *r) {
    for (size_t i = 0; i < r->nnodes; i++) drop(&r->node[i]);
    fleet_slot_map_free(&r->map);
    if (r->cluster) {
        r->nnodes = 0;
        r->stale = true;
    }
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_addr(const fleet_redis_addr *a, const fleet_redis_addr *b) {
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* connect_to connects to a (a cluster node: the URL's credentials, no SELECT, no
 * sentinels) or, with a NULL a, to the target as configured (one Redis). */
static redisContext *connect_to(fleet_router *r, const fleet_redis_addr *a) {
    fleet_redis_target t = r->target;
    if (a) {
        t.addr = *a;
        t.nsentinels = 0;
        t.nseeds = 0;
        t.db = 0;
    }
    char why[300];
    redisContext *c = fleet_redis_connect_sync(&t, r->connect_ms, r->io_ms, NULL, 0, &r->refused,
                                               why, sizeof why);
    if (!c) fleet_err(r->why, sizeof r->why, "%s", why);
    else r->epoch++;
    return c;
}

/* ---------------------------------------------------------------- the slot map ----- */

/* apply takes m as the map: the node list becomes its masters (in map order), keeping
 * the connections of those already known and freeing the others. */
static int apply(fleet_router *r, fleet_slot_map *m) {
    fleet_router_node next[FLEET_ROUTER_NODES_MAX];
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const fleet_redis_addr *a = &m->ranges[i].master;
        size_t k = 0;
        while (k < n && !same_addr(&next[k].addr, a)) k++;
        if (k < n) continue;
        if (n == FLEET_ROUTER_NODES_MAX) {
            fleet_slot_map_free(m);
            return fleet_err(r->why, sizeof r->why, "the cluster has more than %d masters",
                             FLEET_ROUTER_NODES_MAX);
        }
        next[n] = (fleet_router_node){.addr = *a};
        for (size_t j = 0; j < r->nnodes; j++)
            if (same_addr(&r->node[j].addr, a)) {
                next[n].c = r->node[j].c;
                next[n].down_until_ms = r->node[j].down_until_ms;
                r->node[j].c = NULL;
            }
        n++;
    }
    for (size_t j = 0; j < r->nnodes; j++) drop(&r->node[j]);
    memcpy(r->node, next, n * sizeof *next);
    r->nnodes = n;
    fleet_slot_map_free(&r->map);
    r->map = *m;
    *m = (fleet_slot_map){0};
    r->stale = false;
    return 0;
}

/* slots_of asks c for CLUSTER SLOTS into m. Returns 0; -1 with r->why (*lost: the
 * connection broke). */
static int slots_of(fleet_router *r, redisContext *c, const char *host, fleet_slot_map *m,
                    bool *lost) {
    *lost = false;
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    if (!rep) {
        *lost = true;
        return fleet_err(r->why, sizeof r->why, "CLUSTER SLOTS on %s: %s", host, c->errstr);
    }
    char why[200];
    int rc = fleet_slot_map_parse(rep, host, m, why, sizeof why);
    freeReplyObject(rep);
    if (rc == 0 && m->n == 0) {
        rc = -1;
        snprintf(why, sizeof why, "CLUSTER SLOTS: no slot is served yet");
    }
    if (rc < 0) return fleet_err(r->why, sizeof r->why, "%s: %s", host, why);
    return 0;
}

int fleet_router_refresh(fleet_router *r) {
    if (!r->cluster) return 0;
    r->refreshes++;
    fleet_slot_map m = {0};
    bool lost;
    /* The masters already connected first: no connect needed. */
    for (size_t i = 0; i < r->nnodes; i++) {
        if (!r->node[i].c) continue;
        if (slots_of(r, r->node[i].c, r->node[i].addr.host, &m, &lost) == 0) return apply(r, &m);
        if (lost) drop(&r->node[i]);
    }
    /* Then every node known (a master not connected yet), then the seeds. */
    size_t known = r->nnodes;
    for (size_t i = 0; i < known + r->target.nseeds; i++) {
        const fleet_redis_addr *a =
            i < known ? &r->node[i].addr : &r->target.seeds[i - known];
        if (i < known && (r->node[i].c || mono_ms() < r->node[i].down_until_ms))
            continue; /* asked above, or down a moment ago */
        redisContext *c = connect_to(r, a);
        if (!c) continue;
        int rc = slots_of(r, c, a->host, &m, &lost);
        redisFree(c);
        if (rc == 0) return apply(r, &m);
    }
    r->stale = true;
    char last[sizeof r->why];
    snprintf(last, sizeof last, "%s", r->why);
    return fleet_err(r->why, sizeof r->why, "no cluster node answered CLUSTER SLOTS (last: %s)",
                     last);
}

/* ---------------------------------------------------------------- nodes ------------ */

/* ensure connects node i when it is not. Returns 0, or -1 with r->why. */
static int ensure(fleet_router *r, size_t i) {
    fleet_router_node *n = &r->node[i];
    if (n->c) return 0;
    if (r->cluster && mono_ms() < n->down_until_ms)
        return fleet_err(r->why, sizeof r->why, "%s:%d did not answer a moment ago",
                         n->addr.host, n->addr.port);
    n->c = connect_to(r, r->cluster ? &n->addr : NULL);
    if (!n->c) {
        if (r->cluster) {
            r->stale = true; /* the node may be gone: a replica takes over */
            n->down_until_ms = mono_ms() + FLEET_ROUTER_DOWN_MS;
        }
        return -1;
    }
    if (!r->cluster) snprintf(n->addr.host, sizeof n->addr.host, "%s", n->c->tcp.host);
    if (!r->cluster) n->addr.port = n->c->tcp.port;
    return 0;
}

static int node_of_addr(fleet_router *r, const fleet_redis_addr *a) {
    for (size_t i = 0; i < r->nnodes; i++)
        if (same_addr(&r->node[i].addr, a)) return (int)i;
    if (r->nnodes == FLEET_ROUTER_NODES_MAX)
        return fleet_err(r->why, sizeof r->why, "too many cluster nodes");
    r->node[r->nnodes] = (fleet_router_node){.addr = *a};
    return (int)r->nnodes++;
}

/* node_of_slot: the index of slot's master (not connected yet), or -1 with r->why. */
static int node_of_slot(fleet_router *r, int slot) {
    if (r->stale && fleet_router_refresh(r) < 0) return -1;
    const fleet_redis_addr *a = fleet_slot_map_master(&r->map, slot);
    if (!a) {
        r->stale = true;
        return fleet_err(r->why, sizeof r->why, "no master serves slot %d", slot);
    }
    return node_of_addr(r, a);
}

int fleet_router_node_of_key(fleet_router *r, const char *key, size_t len) {
    int i = r->cluster ? node_of_slot(r, fleet_key_slot(key, len)) : 0;
    if (i < 0 || ensure(r, (size_t)i) < 0) return -1;
    return i;
}

redisContext *fleet_router_node_for_key(fleet_router *r, const char *key, size_t len) {
    int i = fleet_router_node_of_key(r, key, len);
    return i < 0 ? NULL : r->node[i].c;
}

static int any_node(fleet_router *r) {
    if (!r->cluster) return ensure(r, 0) < 0 ? -1 : 0;
    for (size_t i = 0; i < r->nnodes; i++)
        if (r->node[i].c) return (int)i;
    if (r->stale && fleet_router_refresh(r) < 0) return -1;
    for (size_t i = 0; i < r->nnodes; i++)
        if (ensure(r, i) == 0) return (int)i;
    return fleet_err(r->why, sizeof r->why, "no cluster master reachable (last: %s)",
                     r->nnodes ? r->why : "none known");
}

redisContext *fleet_router_any(fleet_router *r) {
    int i = any_node(r);
    return i < 0 ? NULL : r->node[i].c;
}

/* ---------------------------------------------------------------- commands --------- */

static bool word_is(const char *w, size_t len, const char *name) {
    return strlen(name) == len && strncasecmp(w, name, len) == 0;
}

int fleet_router_cmd_key(int argc, const char **argv, const size_t *lens, const char **key,
                         size_t *len) {
    static const char *const keyless[] = {
        "PING",   "INFO",     "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "SCRIPT",
        "CLUSTER", "AUTH",    "SELECT",  "ROLE",      "CONFIG",     "CLIENT",      "TIME",
        "ECHO",   "DBSIZE",   "COMMAND", "WAIT",      "HELLO",      "ASKING",      "FUNCTION",
        "MULTI",  "EXEC",     "SCAN",    "FLUSHALL",  "FLUSHDB",    "PUNSUBSCRIBE", "ACL",
        "LATENCY", "SLOWLOG", "MONITOR", "DEBUG",     "READONLY",   "READWRITE",   "SAVE",
        "BGSAVE", "LASTSAVE", "SHUTDOWN", "PUBSUB",   "QUIT",       "RESET"};
    if (argc < 1) return 0;
    const char *cmd = argv[0];
    size_t cl = lens ? lens[0] : strlen(cmd);
    size_t at;
    for (size_t i = 0; i < sizeof keyless / sizeof *keyless; i++)
        if (word_is(cmd, cl, keyless[i])) return 0;
    if (word_is(cmd, cl, "EVAL") || word_is(cmd, cl, "EVALSHA") || word_is(cmd, cl, "EVAL_RO") ||
        word_is(cmd, cl, "EVALSHA_RO") || word_is(cmd, cl, "FCALL") ||
        word_is(cmd, cl, "FCALL_RO")) {
        if (argc < 4) return 0;
        char nk[24];
        size_t nl = lens ? lens[2] : strlen(argv[2]);
        if (nl == 0 || nl >= sizeof nk) return 0;
        memcpy(nk, argv[2], nl);
        nk[nl] = '\0';
        char *end;
        long n = strtol(nk, &end, 10);
        if (*end || n < 1) return 0;
        at = 3;
    } else if (word_is(cmd, cl, "XREAD") || word_is(cmd, cl, "XREADGROUP")) {
        at = 0;
        for (int i = 1; i + 1 < argc && !at; i++)
            if (word_is(argv[i], lens ? lens[i] : strlen(argv[i]), "STREAMS")) at = (size_t)i + 1;
        if (!at) return 0;
    } else if (word_is(cmd, cl, "XGROUP") || word_is(cmd, cl, "XINFO") ||
               word_is(cmd, cl, "OBJECT") || word_is(cmd, cl, "MEMORY")) {
        at = 2;
    } else {
        at = 1;
    }
    if ((int)at >= argc) return 0;
    *key = argv[at];
    *len = lens ? lens[at] : strlen(argv[at]);
    return 1;
}

/* READONLY: a demoted master. Its connection goes, the map is read again. */
static void demoted(fleet_router *r, size_t i, const redisReply *rep) {
    if (rep && rep->type == REDIS_REPLY_ERROR && rep->str && strncmp(rep->str, "READONLY", 8) == 0) {
        drop(&r->node[i]);
        if (r->cluster) r->stale = true;
    }
}

/* send_on sends the formatted command buf on node i (after ASKING when asking). NULL:
 * the connection broke (freed, map stale) with r->why. */
static redisReply *send_on(fleet_router *r, size_t i, const char *buf, size_t len, bool asking) {
    redisContext *c = r->node[i].c;
    void *rep = NULL, *ask = NULL;
    if ((asking && redisAppendCommand(c, "ASKING") != REDIS_OK) ||
        redisAppendFormattedCommand(c, buf, len) != REDIS_OK ||
        (asking && redisGetReply(c, &ask) != REDIS_OK) || redisGetReply(c, &rep) != REDIS_OK ||
        !rep) {
        fleet_err(r->why, sizeof r->why, "%s:%d: %s", r->node[i].addr.host, r->node[i].addr.port,
                  c->errstr[0] ? c->errstr : "no reply");
        if (ask) freeReplyObject(ask);
        if (rep) freeReplyObject(rep);
        drop(&r->node[i]);
        if (r->cluster) r->stale = true;
        return NULL;
    }
    if (ask) freeReplyObject(ask);
    demoted(r, i, rep);
    return rep;
}

/* send_routed sends buf to the node of key (any master when key is NULL) and follows the
 * redirections. */
static redisReply *send_routed(fleet_router *r, const char *key, size_t klen, const char *buf,
                               size_t len) {
    int i = key ? fleet_router_node_of_key(r, key, klen) : any_node(r);
    if (i < 0) return NULL;
    redisReply *rep = send_on(r, (size_t)i, buf, len, false);
    for (int hops = 0; rep && r->cluster && hops < FLEET_ROUTER_REDIRECTS; hops++) {
        int slot;
        fleet_redis_addr to;
        fleet_redirect how = fleet_redirect_of(rep, &slot, &to);
        if (how == FLEET_REDIRECT_NONE) break;
        freeReplyObject(rep);
        if (how == FLEET_REDIRECT_MOVED) {
            /* The map is read again; should it still lag, the node MOVED named is used. */
            if (fleet_router_refresh(r) < 0) return NULL;
            const fleet_redis_addr *m = fleet_slot_map_master(&r->map, slot);
            i = node_of_addr(r, m && !same_addr(m, &to) ? m : &to);
        } else {
            i = node_of_addr(r, &to);
        }
        if (i < 0 || ensure(r, (size_t)i) < 0) return NULL;
        rep = send_on(r, (size_t)i, buf, len, how == FLEET_REDIRECT_ASK);
        if (how == FLEET_REDIRECT_ASK) break; /* once: a second redirection is the answer */
    }
    return rep;
}

redisReply *fleet_router_cmd(fleet_router *r, int argc, const char **argv, const size_t *lens) {
    char *buf = NULL;
    const char *key = NULL;
    size_t klen = 0;
    if (!fleet_router_cmd_key(argc, argv, lens, &key, &klen)) key = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, lens);
    if (len < 0) {
        fleet_err(r->why, sizeof r->why, "out of memory");
        return NULL;
    }
    redisReply *rep = send_routed(r, key, klen, buf, (size_t)len);
    redisFreeCommand(buf);
    return rep;
}

redisReply *fleet_router_cmdf(fleet_router *r, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = fleet_router_vcmdf(r, key, fmt, ap);
    va_end(ap);
    return rep;
}

redisReply *fleet_router_vcmdf(fleet_router *r, const char *key, const char *fmt, va_list ap) {
    char *buf = NULL;
    int len = redisvFormatCommand(&buf, fmt, ap);
    if (len < 0) {
        fleet_err(r->why, sizeof r->why, "bad command format or out of memory");
        return NULL;
    }
    redisReply *rep = send_routed(r, key, key ? strlen(key) : 0, buf, (size_t)len);
    redisFreeCommand(buf);
    return rep;
}

bool fleet_router_note(fleet_router *r, const redisReply *rep) {
    int slot;
    fleet_redis_addr to;
    fleet_redirect how = fleet_redirect_of(rep, &slot, &to);
    if (how == FLEET_REDIRECT_MOVED && r->cluster) r->stale = true;
    if (rep && rep->type == REDIS_REPLY_ERROR && rep->str && strncmp(rep->str, "READONLY", 8) == 0)
        r->stale = r->cluster;
    return how != FLEET_REDIRECT_NONE;
}

void fleet_router_lost(fleet_router *r, redisContext *c) {
    for (size_t i = 0; i < r->nnodes; i++)
        if (r->node[i].c == c) drop(&r->node[i]);
    if (r->cluster) r->stale = true;
}
