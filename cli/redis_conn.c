/* redis_conn.c: connecting to the fleet's Redis and sending commands (redis_conn.h). */
#include "redis_conn.h"

#include <stdio.h>
#include <string.h>

static void print_conn_error(const redisContext *c) {
    ctl_error("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
}

redisContext *ctl_redis_open(const ctl_globals *g, fleet_keys *keys, int *rc) {
    *rc = CTL_EXIT_USAGE;
    if (fleet_keys_init(keys, g->prefix) < 0) {
        ctl_error("--prefix '%s' is not valid (1..%d characters of A-Z a-z 0-9 _ . -)",
                  g->prefix, FLEET_PREFIX_MAX);
        return NULL;
    }
    char host[256];
    int port, db;
    if (fleet_redis_url_parse(g->redis_url, host, sizeof host, &port, &db) < 0) {
        ctl_error("--redis-url '%s' is not redis://host:port[/db]", g->redis_url);
        return NULL;
    }
    *rc = CTL_EXIT_FAIL;
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        ctl_error("cannot connect to Redis at %s:%d: %s", host, port,
                  c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (db != 0) {
        char dbs[8];
        snprintf(dbs, sizeof dbs, "%d", db);
        const char *argv[] = {"SELECT", dbs};
        redisReply *r = ctl_redis_cmd_ok(c, "SELECT", 2, argv);
        if (!r) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    *rc = CTL_EXIT_OK;
    return c;
}

redisReply *ctl_redis_cmd(redisContext *c, int argc, const char *const *argv) {
    size_t lens[16];
    if (argc > 16) return NULL;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(c, argc, (const char **)argv, lens);
    if (!r) print_conn_error(c);
    return r;
}

redisReply *ctl_redis_cmd_ok(redisContext *c, const char *what, int argc,
                             const char *const *argv) {
    redisReply *r = ctl_redis_cmd(c, argc, argv);
    if (r && r->type == REDIS_REPLY_ERROR) {
        ctl_error("redis: %s: %s", what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *ctl_redis_script(redisContext *c, fleet_cmd *cmd) {
    redisReply *r = redisCommandArgv(c, cmd->argc, cmd->argv, cmd->argvlen);
    if (r && fleet_reply_is_noscript(r)) {
        freeReplyObject(r);
        fleet_cmd_as_eval(cmd);
        r = redisCommandArgv(c, cmd->argc, cmd->argv, cmd->argvlen);
    }
    if (!r) print_conn_error(c);
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
