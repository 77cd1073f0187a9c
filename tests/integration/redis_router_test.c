/* redis_router_test.c: libfleet's sync router (shared/src/redis_router.c) against real
 * servers: one Redis (one connection, a lost server reconnected), and a loopback Redis
 * Cluster made by the case (redis-server --cluster-enabled yes, `redis-cli --cluster
 * create`): every key reaches its master, a slot moved under a stale map is followed
 * (MOVED), a slot in migration is followed (ASK, once), and a master killed with -9 is
 * replaced by its replica, found through the map read again, with the URL's password
 * sent to every node. */
#include <stdio.h>
#include <string.h>

#include "fleet/cluster.h"
#include "fleet/redis_router.h"
#include "testlib.h"

#define MAX_NODES 6

typedef struct cluster {
    int n;
    tl_redis *node[MAX_NODES];
    redisContext *c[MAX_NODES];
} cluster;

static bool all_ok(void *arg) {
    cluster *cl = arg;
    for (int i = 0; i < cl->n; i++) {
        redisReply *r = tl_redis_cmd(cl->c[i], "CLUSTER INFO");
        if (!strstr(r->str, "cluster_state:ok")) return false;
    }
    return true;
}

/* n nodes, masters with `replicas` each; with a password on every node. */
static void make_cluster(cluster *cl, int n, int replicas, const char *password) {
    const char *argv[MAX_NODES + 10] = {"redis-cli", "--cluster", "create"};
    int a = 3;
    cl->n = n;
    for (int i = 0; i < n; i++) {
        cl->node[i] = tl_redis_start(&(tl_redis_opts){
            .password = password,
            .extra_args = password ? TL_ARGS("--cluster-enabled", "yes", "--cluster-config-file",
                                             "nodes.conf", "--cluster-node-timeout", "1000",
                                             "--requirepass", password, "--masterauth", password)
                                   : TL_ARGS("--cluster-enabled", "yes", "--cluster-config-file",
                                             "nodes.conf", "--cluster-node-timeout", "1000")});
        cl->c[i] = tl_redis_connect(cl->node[i]);
        argv[a++] = tl_printf("127.0.0.1:%d", cl->node[i]->port);
    }
    argv[a++] = "--cluster-replicas";
    argv[a++] = replicas ? "1" : "0";
    argv[a++] = "--cluster-yes";
    if (password) {
        argv[a++] = "-a";
        argv[a++] = password;
        argv[a++] = "--no-auth-warning";
    }
    argv[a] = NULL;
    tl_cmd_result r = tl_run_cmd("cluster-create", "/usr/bin/redis-cli", argv, NULL, TL_WAIT_MS);
    tl_expect_exit(&r, 0);
    if (!tl_wait_for(all_ok, cl, TL_WAIT_MS)) FAILF("the cluster did not reach cluster_state:ok");
}

static void router_of(fleet_router *r, const cluster *cl, const char *password) {
    fleet_redis_target t;
    char err[200];
    const char *url = password ? tl_printf("redis://:%s@127.0.0.1:1", password) : "redis://x:1";
    fleet_redis_settings s = {
        .url = url,
        .cluster = tl_printf("127.0.0.1:%d,127.0.0.1:%d", cl->node[1]->port, cl->node[0]->port)};
    if (fleet_redis_target_parse(&t, &s, err, sizeof err) < 0) FAILF("target: %s", err);
    fleet_router_init(r, &t, 1000, 2000);
}

static int node_of_port(const cluster *cl, int port) {
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i]->port == port) return i;
    return -1;
}

/* The index of the node that masters key's slot, asked of the cluster itself. */
static int master_of(cluster *cl, const char *key) {
    int slot = fleet_key_slot(key, strlen(key));
    for (int i = 0; i < cl->n; i++) {
        if (!cl->c[i]) continue;
        redisReply *s = tl_redis_cmd_allow_error(cl->c[i], "CLUSTER SLOTS");
        if (s->type != REDIS_REPLY_ARRAY) continue;
        fleet_slot_map m = {0};
        char why[200];
        if (fleet_slot_map_parse(s, "127.0.0.1", &m, why, sizeof why) < 0) continue;
        const fleet_redis_addr *a = fleet_slot_map_master(&m, slot);
        int at = a ? node_of_port(cl, a->port) : -1;
        fleet_slot_map_free(&m);
        return at;
    }
    return -1;
}

/* Moves slot (empty of keys but `key`) from node src to node dst, the way redis-cli
 * --cluster reshard does: IMPORTING/MIGRATING, MIGRATE of its keys, then SETSLOT NODE
 * on both. Stops after the MIGRATE when finish is false (the slot still migrating). */
static void move_slot(cluster *cl, int slot, const char *key, int src, int dst, bool finish) {
    redisReply *src_id = tl_redis_cmd(cl->c[src], "CLUSTER MYID");
    redisReply *dst_id = tl_redis_cmd(cl->c[dst], "CLUSTER MYID");
    tl_redis_cmd(cl->c[dst], "CLUSTER SETSLOT %d IMPORTING %s", slot, src_id->str);
    tl_redis_cmd(cl->c[src], "CLUSTER SETSLOT %d MIGRATING %s", slot, dst_id->str);
    tl_redis_cmd(cl->c[src], "MIGRATE 127.0.0.1 %d %s 0 5000", cl->node[dst]->port, key);
    if (!finish) return;
    tl_redis_cmd(cl->c[dst], "CLUSTER SETSLOT %d NODE %s", slot, dst_id->str);
    tl_redis_cmd(cl->c[src], "CLUSTER SETSLOT %d NODE %s", slot, dst_id->str);
}

/* ---------------------------------------------------------------- one Redis -------- */

TL_TEST(one_redis_is_one_connection_and_comes_back) {
    tl_redis *rs = tl_redis_start(&(tl_redis_opts){0});
    redisContext *c = tl_redis_connect(rs);
    fleet_redis_target t;
    char err[200];
    fleet_redis_settings s = {.url = rs->url, .cluster = ""};
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &s, err, sizeof err), 0);
    fleet_router r;
    fleet_router_init(&r, &t, 1000, 2000);
    for (int i = 0; i < 50; i++) {
        redisReply *ok = fleet_router_cmdf(&r, tl_printf("{fleet:%d}:k", i), "SET {fleet:%d}:k %d",
                                           i, i);
        ASSERT_TRUE(ok != NULL);
        ASSERT_EQ_STR(ok->str, "OK");
        freeReplyObject(ok);
    }
    ASSERT_EQ_INT(tl_redis_int(c, "DBSIZE"), 50);
    ASSERT_EQ_INT((int)r.nnodes, 1);
    ASSERT_EQ_INT((int)r.epoch, 1); /* one connect for every key */
    ASSERT_EQ_INT((int)r.refreshes, 0);
    ASSERT_TRUE(fleet_router_node_for_key(&r, "a", 1) == fleet_router_any(&r));
    const char *argv[] = {"EVAL", "return redis.call('GET', KEYS[1])", "1", "{fleet:7}:k"};
    redisReply *got = fleet_router_cmd(&r, 4, argv, NULL);
    ASSERT_TRUE(got != NULL);
    ASSERT_EQ_STR(got->str, "7");
    freeReplyObject(got);

    tl_redis_kill9(rs);
    ASSERT_TRUE(fleet_router_cmdf(&r, "x", "GET x") == NULL); /* lost: said, not retried */
    ASSERT_TRUE(r.why[0] != '\0');
    tl_redis_restart(rs);
    got = fleet_router_cmdf(&r, "x", "GET x"); /* the next command connects again */
    ASSERT_TRUE(got != NULL);
    ASSERT_EQ_INT(got->type, REDIS_REPLY_NIL);
    freeReplyObject(got);
    ASSERT_EQ_INT((int)r.epoch, 2);
    fleet_router_close(&r);
}

/* ---------------------------------------------------------------- a cluster -------- */

TL_TEST(every_key_reaches_its_master) {
    cluster cl;
    make_cluster(&cl, 3, 0, NULL);
    fleet_router r;
    router_of(&r, &cl, NULL);
    int held[MAX_NODES] = {0};
    for (int i = 0; i < 300; i++) {
        const char *key = tl_printf("{fleet:%d}:job:%d", i % 31, i);
        const char *argv[] = {"EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", key,
                              "v"};
        redisReply *ok = fleet_router_cmd(&r, 5, argv, NULL);
        ASSERT_TRUE(ok != NULL);
        ASSERT_EQ_INT(ok->type, REDIS_REPLY_STATUS);
        freeReplyObject(ok);
        int owner = master_of(&cl, key);
        ASSERT_TRUE(owner >= 0);
        /* on its master, where a plain client finds it without a redirection */
        redisReply *v = tl_redis_cmd(cl.c[owner], "GET %s", key);
        ASSERT_EQ_STR(v->str, "v");
        held[owner]++;
    }
    for (int i = 0; i < 3; i++) ASSERT_GT_INT(held[i], 0);
    ASSERT_EQ_INT((int)r.nnodes, 3);
    ASSERT_EQ_INT((int)r.refreshes, 1); /* one map read, no redirection */
    /* keyless commands go to any master */
    redisReply *pong = fleet_router_cmdf(&r, NULL, "PING");
    ASSERT_TRUE(pong != NULL);
    ASSERT_EQ_STR(pong->str, "PONG");
    freeReplyObject(pong);
    fleet_router_close(&r);
}

TL_TEST(a_moved_slot_is_followed) {
    cluster cl;
    make_cluster(&cl, 3, 0, NULL);
    fleet_router r;
    router_of(&r, &cl, NULL);
    const char *key = "{fleet:5}:stream:m";
    int slot = fleet_key_slot(key, strlen(key));
    redisReply *ok = fleet_router_cmdf(&r, key, "SET %s before", key);
    ASSERT_TRUE(ok != NULL);
    freeReplyObject(ok);
    unsigned long reads = r.refreshes;
    int src = master_of(&cl, key), dst = (src + 1) % 3;
    move_slot(&cl, slot, key, src, dst, true);
    /* The router's map still says src: src answers MOVED, the map is read again and the
     * command lands on dst. */
    redisReply *got = fleet_router_cmdf(&r, key, "GET %s", key);
    ASSERT_TRUE(got != NULL);
    ASSERT_EQ_INT(got->type, REDIS_REPLY_STRING);
    ASSERT_EQ_STR(got->str, "before");
    freeReplyObject(got);
    ASSERT_GT_INT((int)r.refreshes, (int)reads);
    ASSERT_EQ_INT(master_of(&cl, key), dst);
    /* and the next command goes straight there */
    reads = r.refreshes;
    got = fleet_router_cmdf(&r, key, "SET %s after", key);
    ASSERT_TRUE(got != NULL);
    freeReplyObject(got);
    ASSERT_EQ_INT((int)r.refreshes, (int)reads);
    ASSERT_EQ_STR(tl_redis_cmd(cl.c[dst], "GET %s", key)->str, "after");
    fleet_router_close(&r);
}

TL_TEST(a_migrating_slot_is_followed_by_ask) {
    cluster cl;
    make_cluster(&cl, 3, 0, NULL);
    fleet_router r;
    router_of(&r, &cl, NULL);
    const char *key = "{fleet:9}:job:migrating";
    int slot = fleet_key_slot(key, strlen(key));
    redisReply *ok = fleet_router_cmdf(&r, key, "SET %s here", key);
    ASSERT_TRUE(ok != NULL);
    freeReplyObject(ok);
    int src = master_of(&cl, key), dst = (src + 1) % 3;
    move_slot(&cl, slot, key, src, dst, false); /* the key moved, the slot still migrating */
    unsigned long reads = r.refreshes;
    redisReply *got = fleet_router_cmdf(&r, key, "GET %s", key);
    ASSERT_TRUE(got != NULL);
    ASSERT_EQ_INT(got->type, REDIS_REPLY_STRING);
    ASSERT_EQ_STR(got->str, "here");
    freeReplyObject(got);
    ASSERT_EQ_INT((int)r.refreshes, (int)reads); /* ASK leaves the map as it is */
    ASSERT_EQ_INT(master_of(&cl, key), src);
    fleet_router_close(&r);
}

typedef struct takeover {
    fleet_router *r;
    const char *key;
} takeover;

static bool served_again(void *arg) {
    takeover *t = arg;
    redisReply *got = fleet_router_cmdf(t->r, t->key, "GET %s", t->key);
    bool ok = got && got->type == REDIS_REPLY_STRING && strcmp(got->str, "kept") == 0;
    if (got) freeReplyObject(got);
    return ok;
}

TL_TEST(a_killed_master_is_replaced_by_its_replica) {
    cluster cl;
    make_cluster(&cl, 6, 1, "s3cret");
    fleet_router r;
    router_of(&r, &cl, "s3cret");
    const char *key = "{fleet:3}:job:precious";
    redisReply *ok = fleet_router_cmdf(&r, key, "SET %s kept", key);
    ASSERT_TRUE(ok != NULL);
    ASSERT_EQ_STR(ok->str, "OK"); /* AUTH went to the node */
    freeReplyObject(ok);
    ok = fleet_router_cmdf(&r, key, "WAIT 1 5000");
    freeReplyObject(ok);
    int old = master_of(&cl, key);
    ASSERT_TRUE(old >= 0);
    /* WAIT is keyless and went to any master: ask the key's master itself */
    ASSERT_EQ_INT(tl_redis_int(cl.c[old], "WAIT 1 5000"), 1);
    tl_redis_kill9(cl.node[old]);
    cl.c[old] = NULL;
    redisReply *lost = fleet_router_cmdf(&r, key, "GET %s", key);
    ASSERT_TRUE(lost == NULL); /* the connection went with the node */
    /* The replica takes over after the node timeout; the router finds it in a map read
     * again from the other masters. */
    takeover t = {&r, key};
    if (!tl_wait_for(served_again, &t, TL_WAIT_MS)) FAILF("the key was not served again: %s", r.why);
    int now = master_of(&cl, key);
    ASSERT_TRUE(now >= 0 && now != old);
    fleet_router_close(&r);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(one_redis_is_one_connection_and_comes_back),
        TL_CASE(every_key_reaches_its_master),
        TL_CASE(a_moved_slot_is_followed),
        TL_CASE(a_migrating_slot_is_followed_by_ask),
        TL_CASE(a_killed_master_is_replaced_by_its_replica),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
