/* redis_conn.c: connecting to the fleet's Redis and sending commands (redis_conn.h). */
#include "redis_conn.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fleet/id.h"
#include "fleet/redis_health.h"
#include "fleet/redis_router.h"
#include "fleet/redis_target.h"

#define WAIT_STEP_MIN_MS 50
#define WAIT_STEP_MAX_MS 500

/* --redis-wait of this run, in ms (ctl_redis_open sets it). */
static long wait_ms = 10000;

/* On a Redis Cluster (--redis-cluster), every command goes through this router to the
 * master of its key's slot, following MOVED and ASK (fleet/redis_router.h); the context
 * that ctl_redis_open returns is then the control tag's master, for the pipelines
 * (MULTI/EXEC) that change control keys. Without a cluster the router is not used: one
 * connection, as before. fleetctl runs one command per process, so one router. */
static fleet_router router;
static bool clustered;

static void print_conn_error(const redisContext *c) {
    if (clustered) ctl_error("redis: %s", router.why[0] ? router.why : "connection lost");
    else ctl_error("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
}

/* One command: on the one connection, or routed by its key on a cluster. */
static redisReply *send_once(redisContext *c, int argc, const char **argv, const size_t *lens) {
    if (clustered) return fleet_router_cmd(&router, argc, argv, lens);
    return redisCommandArgv(c, argc, argv, lens);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void ctl_redis_explain(const char *error) {
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)error, .len = strlen(error)};
    fleet_redis_err e = fleet_redis_err_of(&r);
    if (e == FLEET_REDIS_OOM)
        ctl_error("Redis is full (used memory reached maxmemory): it refused the write and "
                  "nothing was changed; raise maxmemory or free memory, then run this again");
    else if (e == FLEET_REDIS_TRANSIENT)
        ctl_error("Redis still refuses commands after %ld s (%s): it is loading, busy or "
                  "failing over; run this again later (--redis-wait sets how long to wait)",
                  wait_ms / 1000, error);
}

static void explain(const redisReply *r) {
    if (r->type == REDIS_REPLY_ERROR && r->str) ctl_redis_explain(r->str);
}

/* Sends a command, and again with backoff for up to --redis-wait while Redis refuses it
 * for now (LOADING, BUSY, MASTERDOWN, READONLY, TRYAGAIN): fleetctl is often run just
 * after a Redis restart. */
static redisReply *send_waiting(redisContext *c, int argc, const char **argv, const size_t *lens) {
    uint64_t start = fleet_now_ms();
    long step = WAIT_STEP_MIN_MS;
    bool told = false;
    for (;;) {
        redisReply *r = send_once(c, argc, argv, lens);
        if (!r || fleet_redis_err_of(r) != FLEET_REDIS_TRANSIENT) return r;
        if (fleet_now_ms() - start + (uint64_t)step > (uint64_t)wait_ms) return r;
        if (!told) {
            ctl_error("redis: %s: waiting up to %ld s", r->str, wait_ms / 1000);
            told = true;
        }
        freeReplyObject(r);
        sleep_ms(step);
        step = step * 2 > WAIT_STEP_MAX_MS ? WAIT_STEP_MAX_MS : step * 2;
    }
}

/* A Redis whose maxmemory-policy evicts keys loses jobs and API keys when it fills up:
 * refused unless --allow-eviction on. Returns -1 after saying why. */
static int check_policy(redisContext *c, const ctl_globals *g) {
    const char *argv[] = {"INFO", "memory"};
    size_t lens[] = {4, 6};
    redisReply *r = send_waiting(c, 2, argv, lens);
    if (!r) {
        print_conn_error(c);
        return -1;
    }
    fleet_redis_memory m;
    bool known = r->type == REDIS_REPLY_STRING && fleet_redis_memory_parse(r->str, r->len, &m) == 0;
    freeReplyObject(r);
    if (!known) return 0; /* INFO refused (renamed, no permission): nothing to judge by */
    if (!fleet_redis_policy_evicts(m.policy)) return 0;
    if (g->allow_eviction && strcmp(g->allow_eviction, "on") == 0) {
        ctl_error("warning: Redis maxmemory-policy is %s: it evicts fleet's jobs and API keys "
                  "when memory runs out (set maxmemory-policy noeviction)",
                  m.policy);
        return 0;
    }
    ctl_error("Redis maxmemory-policy is %s: it evicts fleet's jobs and API keys when memory "
              "runs out; set maxmemory-policy noeviction (or --allow-eviction on / "
              "FLEET_ALLOW_EVICTION=on to accept losing jobs)",
              m.policy);
    return -1;
}

redisContext *ctl_redis_open(const ctl_globals *g, fleet_keys *keys, int *rc) {
    *rc = CTL_EXIT_USAGE;
    if (fleet_keys_init(keys, g->prefix) < 0) {
        ctl_error("--prefix '%s' is not valid (1..%d characters of A-Z a-z 0-9 _ . -)", g->prefix,
                  FLEET_PREFIX_MAX);
        return NULL;
    }
    fleet_redis_target t;
    char err[300];
    if (fleet_redis_target_parse(&t, &g->redis, err, sizeof err) < 0) {
        ctl_error("%s", err);
        return NULL;
    }
    if (g->allow_eviction && strcmp(g->allow_eviction, "on") != 0 &&
        strcmp(g->allow_eviction, "off") != 0) {
        ctl_error("--allow-eviction must be on or off, got '%s'", g->allow_eviction);
        return NULL;
    }
    wait_ms = g->redis_wait_s * 1000;
    *rc = CTL_EXIT_FAIL;
    /* With sentinels, the primary they name may be the one that just died, until they
     * promote a replica (seconds): that is waited out like a loading Redis. */
    uint64_t start = fleet_now_ms();
    long step = WAIT_STEP_MIN_MS;
    bool told = false;
    redisContext *c;
    bool refused = false;
    clustered = t.nseeds > 0;
    if (clustered) fleet_router_init(&router, &t, 5000, 5000);
    for (;;) {
        if (clustered) {
            c = fleet_router_node_for_key(&router, keys->tag, strlen(keys->tag));
            refused = router.refused;
            if (!c) snprintf(err, sizeof err, "%.299s", router.why);
        } else {
            c = fleet_redis_connect_sync(&t, 5000, 5000, NULL, 0, &refused, err, sizeof err);
        }
        if (c) break;
        /* A cluster in failover has no master for some slots for a while: waited out too. */
        if ((!t.nsentinels && !clustered) || refused ||
            fleet_now_ms() - start + (uint64_t)step > (uint64_t)wait_ms) {
            char where[400];
            fleet_redis_target_describe(&t, where, sizeof where);
            ctl_error("cannot connect to Redis (%s): %s", where, err);
            if (clustered) fleet_router_close(&router);
            clustered = false;
            return NULL;
        }
        if (!told) {
            ctl_error("redis: %s: waiting up to %ld s for the %s", err, wait_ms / 1000,
                      clustered ? "cluster's master of the control tag" : "sentinels' primary");
            told = true;
        }
        sleep_ms(step);
        step = step * 2 > WAIT_STEP_MAX_MS ? WAIT_STEP_MAX_MS : step * 2;
    }
    /* A Redis that is loading answers PING with LOADING: waited out here, once. */
    const char *ping[] = {"PING"};
    redisReply *p = ctl_redis_cmd_ok(c, "PING", 1, ping);
    if (!p || check_policy(c, g) < 0) {
        if (p) freeReplyObject(p);
        ctl_redis_close(c);
        return NULL;
    }
    freeReplyObject(p);
    *rc = CTL_EXIT_OK;
    return c;
}

void ctl_redis_close(redisContext *c) {
    if (clustered) {
        fleet_router_close(&router); /* c is one of its connections */
        clustered = false;
    } else if (c) {
        redisFree(c);
    }
}

redisContext *ctl_redis_conn_for(redisContext *c, const char *key) {
    if (!clustered) return c;
    redisContext *n = fleet_router_node_for_key(&router, key, strlen(key));
    if (!n) ctl_error("redis: %s", router.why);
    return n;
}

bool ctl_redis_clustered(void) { return clustered; }

const fleet_slot_map *ctl_redis_slot_map(void) {
    if (!clustered) return NULL;
    if (router.stale && fleet_router_refresh(&router) < 0) {
        ctl_error("redis: %s", router.why);
        return NULL;
    }
    return &router.map;
}

redisReply *ctl_redis_cmd(redisContext *c, int argc, const char *const *argv) {
    size_t lens[16];
    if (argc > 16) return NULL;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    redisReply *r = send_waiting(c, argc, (const char **)argv, lens);
    if (!r) print_conn_error(c);
    else explain(r);
    return r;
}

redisReply *ctl_redis_cmd_ok(redisContext *c, const char *what, int argc, const char *const *argv) {
    redisReply *r = ctl_redis_cmd(c, argc, argv);
    if (r && r->type == REDIS_REPLY_ERROR) {
        ctl_error("redis: %s: %s", what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *ctl_redis_script(redisContext *c, fleet_cmd *cmd) {
    redisReply *r = send_waiting(c, cmd->argc, cmd->argv, cmd->argvlen);
    if (r && fleet_reply_is_noscript(r)) {
        freeReplyObject(r);
        fleet_cmd_as_eval(cmd);
        r = send_waiting(c, cmd->argc, cmd->argv, cmd->argvlen);
    }
    if (!r) print_conn_error(c);
    else explain(r);
    return r;
}

const char *ctl_redis_field(const redisReply *fields, const char *field) {
    if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, field) == 0)
            return v->str;
    }
    return NULL;
}

int ctl_redis_shards(redisContext *c, const ctl_globals *g, fleet_shards *s) {
    if (fleet_shards_init(s, g->prefix) < 0) {
        ctl_error("--prefix '%s' is not valid", g->prefix);
        return -1;
    }
    fleet_key key = fleet_key_shards(&s->control);
    const char *argv[] = {"GET", key.s};
    redisReply *r = ctl_redis_cmd_ok(c, "GET", 2, argv);
    if (!r) return -1;
    char why[200];
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING &&
        (r->len > FLEET_SHARDS_TEXT_MAX || fleet_shards_parse(s, r->str, why, sizeof why) < 0)) {
        if (r->len > FLEET_SHARDS_TEXT_MAX) snprintf(why, sizeof why, "%zu bytes", r->len);
        ctl_error("the shard table at %s does not parse (%s); fix it with redis-cli SET or "
                  "fleetctl shards",
                  key.s, why);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}
