/* cluster_routing_test.c: the Redis Cluster routing module (shared/src/cluster.c) against
 * a real cluster the case makes on loopback: three redis-server --cluster-enabled yes,
 * joined by `redis-cli --cluster create`. fleet_key_slot agrees with CLUSTER KEYSLOT, the
 * slot map read from CLUSTER SLOTS names the master that takes each key, the other
 * masters answer MOVED to it, and a slot in migration answers ASK, all read by
 * fleet_redirect_of. (The programs do not route on a cluster yet: issue 16.) */
#include <stdio.h>
#include <string.h>

#include "fleet/cluster.h"
#include "testlib.h"

#define NODES 3

typedef struct cluster {
    tl_redis *node[NODES];
    redisContext *c[NODES];
} cluster;

static bool all_ok(void *arg) {
    cluster *cl = arg;
    for (int i = 0; i < NODES; i++) {
        redisReply *r = tl_redis_cmd(cl->c[i], "CLUSTER INFO");
        if (!strstr(r->str, "cluster_state:ok")) return false;
    }
    return true;
}

static void make_cluster(cluster *cl) {
    const char *argv[NODES + 7] = {"redis-cli", "--cluster", "create"};
    int n = 3;
    for (int i = 0; i < NODES; i++) {
        cl->node[i] = tl_redis_start(&(tl_redis_opts){
            .extra_args = TL_ARGS("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", "5000")});
        cl->c[i] = tl_redis_connect(cl->node[i]);
        argv[n++] = tl_printf("127.0.0.1:%d", cl->node[i]->port);
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "0";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    tl_cmd_result r = tl_run_cmd("cluster-create", "/usr/bin/redis-cli", argv, NULL, TL_WAIT_MS);
    tl_expect_exit(&r, 0);
    if (!tl_wait_for(all_ok, cl, TL_WAIT_MS)) FAILF("the cluster did not reach cluster_state:ok");
}

static int node_of(const cluster *cl, const fleet_redis_addr *a) {
    for (int i = 0; i < NODES; i++)
        if (a && a->port == cl->node[i]->port) return i;
    return -1;
}

TL_TEST(routing_agrees_with_a_real_cluster) {
    cluster cl;
    make_cluster(&cl);
    fleet_slot_map m = {0};
    char why[200];
    redisReply *slots = tl_redis_cmd(cl.c[0], "CLUSTER SLOTS");
    ASSERT_EQ_INT(fleet_slot_map_parse(slots, "127.0.0.1", &m, why, sizeof why), 0);
    ASSERT_TRUE(fleet_slot_map_complete(&m));
    ASSERT_EQ_INT((int)m.n, NODES);

    int held[NODES] = {0};
    for (int i = 0; i < 600; i++) {
        /* fleet's shape of key: a hash tag per shard, then the rest */
        const char *key = tl_printf("{fleet:%d}:job:%08d", i % 37, i * 7919);
        int slot = fleet_key_slot(key, strlen(key));
        ASSERT_EQ_INT(slot, tl_redis_int(cl.c[0], "CLUSTER KEYSLOT %s", key));
        int owner = node_of(&cl, fleet_slot_map_master(&m, slot));
        ASSERT_TRUE(owner >= 0);
        held[owner]++;
        redisReply *ok = tl_redis_cmd(cl.c[owner], "SET %s 1", key);
        ASSERT_EQ_STR(ok->str, "OK");
        int other = (owner + 1) % NODES, moved_slot = -1;
        fleet_redis_addr to;
        redisReply *mv = tl_redis_cmd_allow_error(cl.c[other], "GET %s", key);
        ASSERT_EQ_INT(fleet_redirect_of(mv, &moved_slot, &to), FLEET_REDIRECT_MOVED);
        ASSERT_EQ_INT(moved_slot, slot);
        ASSERT_EQ_INT(node_of(&cl, &to), owner);
    }
    for (int i = 0; i < NODES; i++) ASSERT_GT_INT(held[i], 0); /* 37 tags reach every master */
    fleet_slot_map_free(&m);
}

TL_TEST(a_migrating_slot_answers_ask) {
    cluster cl;
    make_cluster(&cl);
    fleet_slot_map m = {0};
    char why[200];
    ASSERT_EQ_INT(fleet_slot_map_parse(tl_redis_cmd(cl.c[0], "CLUSTER SLOTS"), NULL, &m, why,
                                       sizeof why),
                  0);
    const char *key = "{fleet:5}:job:migrating";
    int slot = fleet_key_slot(key, strlen(key));
    int src = node_of(&cl, fleet_slot_map_master(&m, slot)), dst = (src + 1) % NODES;
    ASSERT_TRUE(src >= 0);
    redisReply *dst_id = tl_redis_cmd(cl.c[dst], "CLUSTER MYID");
    redisReply *src_id = tl_redis_cmd(cl.c[src], "CLUSTER MYID");
    tl_redis_cmd(cl.c[dst], "CLUSTER SETSLOT %d IMPORTING %s", slot, src_id->str);
    tl_redis_cmd(cl.c[src], "CLUSTER SETSLOT %d MIGRATING %s", slot, dst_id->str);
    /* The key is not on the source (never written): it sends the client on, once. */
    int ask_slot = -1;
    fleet_redis_addr to;
    redisReply *ask = tl_redis_cmd_allow_error(cl.c[src], "GET %s", key);
    ASSERT_EQ_INT(fleet_redirect_of(ask, &ask_slot, &to), FLEET_REDIRECT_ASK);
    ASSERT_EQ_INT(ask_slot, slot);
    ASSERT_EQ_INT(node_of(&cl, &to), dst);
    /* There, after ASKING, the command is served; without it, MOVED back. */
    redisReply *mv = tl_redis_cmd_allow_error(cl.c[dst], "GET %s", key);
    ASSERT_EQ_INT(fleet_redirect_of(mv, &ask_slot, &to), FLEET_REDIRECT_MOVED);
    tl_redis_cmd(cl.c[dst], "ASKING");
    redisReply *got = tl_redis_cmd(cl.c[dst], "GET %s", key);
    ASSERT_EQ_INT(got->type, REDIS_REPLY_NIL);
    fleet_slot_map_free(&m);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(routing_agrees_with_a_real_cluster),
        TL_CASE(a_migrating_slot_answers_ask),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
