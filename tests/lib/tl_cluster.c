/* tl_cluster.c: a Redis Cluster on loopback for one case: masters x (1 + replicas)
 * redis-server --cluster-enabled yes, joined by `redis-cli --cluster create`, and what a
 * test does to it: find the master of a key, kill a master (kill -9) and wait for its
 * replica to take over, move a slot (whole, or left half-migrated so that clients meet
 * ASK), count keys per node. Nodes have no password. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl_internal.h"

/* Redis Cluster's own unit of a migration step (redis-cli --cluster reshard moves 10 keys
 * per MIGRATE by default; more per call makes a busy slot's move shorter). */
#define MIGRATE_BATCH 100

/* A short-timeout connection to node i (NULL when it is dead or does not answer). Not
 * deferred: the caller frees it. */
static redisContext *node_try_connect(const tl_cluster *cl, int i) {
    if (cl->dead[i]) return NULL;
    struct timeval tv = {0, 500000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", cl->node[i]->port, tv);
    if (!c) return NULL;
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A reply of node i to a command (harness-owned copy of a string or status reply's text,
 * or of an error's text prefixed "-"); NULL without an answer. */
static const char *node_text(const tl_cluster *cl, int i, const char *cmd) {
    redisContext *c = node_try_connect(cl, i);
    if (!c) return NULL;
    redisReply *rep = redisCommand(c, cmd);
    const char *out = NULL;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS))
        out = tl_printf("%s", rep->str);
    else if (rep && rep->type == REDIS_REPLY_ERROR) out = tl_printf("-%s", rep->str);
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return out;
}

static long info_long(const char *text, const char *field) {
    const char *p = text;
    size_t n = strlen(field);
    while (p && *p) {
        if (strncmp(p, field, n) == 0 && p[n] == ':') return strtol(p + n + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

static bool info_has(const char *text, const char *line) { return text && strstr(text, line); }

int tl_cluster_node_of_port(const tl_cluster *cl, int port) {
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i]->port == port) return i;
    return -1;
}

/* ------------------------------------------------------------ the slot map ---------- */

/* The master of each slot as node i sees it (CLUSTER SLOTS): out[slot] = node index, -1
 * where no range covers the slot or names a node not ours. False without an answer. */
static bool slots_seen_by(const tl_cluster *cl, int i, int *out) {
    for (int s = 0; s < TL_CLUSTER_SLOTS; s++) out[s] = -1;
    redisContext *c = node_try_connect(cl, i);
    if (!c) return false;
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
    for (size_t k = 0; ok && k < rep->elements; k++) {
        redisReply *r = rep->element[k];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2)
            continue;
        int owner = tl_cluster_node_of_port(cl, (int)r->element[2]->element[1]->integer);
        for (long long s = r->element[0]->integer; s <= r->element[1]->integer; s++)
            if (s >= 0 && s < TL_CLUSTER_SLOTS) out[s] = owner;
    }
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok;
}

/* The first node that answers, for questions any node can answer. */
static int any_alive(const tl_cluster *cl) {
    for (int i = 0; i < cl->n; i++)
        if (!cl->dead[i]) return i;
    FAILF("every node of the cluster is dead");
}

int tl_cluster_master_of_slot(tl_cluster *cl, int slot) {
    if (slot < 0 || slot >= TL_CLUSTER_SLOTS) FAILF("slot %d out of range", slot);
    int *map = tl_alloc(sizeof(int) * TL_CLUSTER_SLOTS);
    for (int i = 0; i < cl->n; i++) {
        if (cl->dead[i] || !slots_seen_by(cl, i, map)) continue;
        if (map[slot] >= 0 && !cl->dead[map[slot]]) return map[slot];
    }
    FAILF("no live node names a live master of slot %d", slot);
}

int tl_cluster_key_slot(tl_cluster *cl, const char *key) {
    return (int)tl_redis_int(tl_cluster_conn(cl, any_alive(cl)), "CLUSTER KEYSLOT %s", key);
}

int tl_cluster_master_of_key(tl_cluster *cl, const char *key) {
    return tl_cluster_master_of_slot(cl, tl_cluster_key_slot(cl, key));
}

redisContext *tl_cluster_conn(tl_cluster *cl, int i) {
    if (i < 0 || i >= cl->n) FAILF("no cluster node %d", i);
    if (cl->dead[i]) FAILF("cluster node %d (port %d) was killed", i, cl->node[i]->port);
    return cl->c[i];
}

redisContext *tl_cluster_conn_of_key(tl_cluster *cl, const char *key) {
    return tl_cluster_conn(cl, tl_cluster_master_of_key(cl, key));
}

int tl_cluster_masters(tl_cluster *cl, int *out) {
    int m = 0;
    for (int i = 0; i < cl->n; i++) {
        if (cl->dead[i]) continue;
        const char *role = tl_redis_role(cl->node[i]);
        if (role && strcmp(role, "master") == 0) out[m++] = i;
    }
    return m;
}

long long tl_cluster_dbsize(tl_cluster *cl, int i) {
    return tl_redis_int(tl_cluster_conn(cl, i), "DBSIZE");
}

const char *tl_cluster_seeds(const tl_cluster *cl) { return cl->seeds; }

/* ------------------------------------------------------------ starting -------------- */

/* Every live node: cluster_state:ok, knows every live node, no node in handshake, every
 * slot assigned; every live replica's link to its master up and not syncing. */
static bool cluster_settled(void *arg) {
    tl_cluster *cl = arg;
    int live = 0;
    for (int i = 0; i < cl->n; i++) live += !cl->dead[i];
    for (int i = 0; i < cl->n; i++) {
        if (cl->dead[i]) continue;
        const char *info = node_text(cl, i, "CLUSTER INFO");
        if (!info_has(info, "cluster_state:ok") ||
            info_long(info, "cluster_slots_assigned") != TL_CLUSTER_SLOTS ||
            info_long(info, "cluster_known_nodes") < live)
            return false;
        const char *nodes = node_text(cl, i, "CLUSTER NODES");
        if (!nodes || strstr(nodes, "handshake") || strstr(nodes, "noaddr")) return false;
        const char *repl = node_text(cl, i, "INFO replication");
        if (!repl) return false;
        if (info_has(repl, "role:slave") && (!info_has(repl, "master_link_status:up") ||
                                             !info_has(repl, "master_sync_in_progress:0")))
            return false;
    }
    return true;
}

tl_cluster *tl_cluster_start(int masters, int replicas_per_master, int node_timeout_ms) {
    int n = masters * (1 + replicas_per_master);
    if (masters < 3 || replicas_per_master < 0 || n > TL_CLUSTER_MAX_NODES)
        FAILF("tl_cluster_start(%d, %d): a cluster has 3 or more masters and at most %d nodes",
              masters, replicas_per_master, TL_CLUSTER_MAX_NODES);
    tl_cluster *cl = tl_alloc(sizeof(*cl));
    cl->n = n;
    cl->nmasters = masters;
    cl->moving_slot = -1;
    const char *timeout = tl_printf("%d", node_timeout_ms > 0 ? node_timeout_ms : 3000);
    const char *argv[TL_CLUSTER_MAX_NODES + 8] = {"redis-cli", "--cluster", "create"};
    int a = 3;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        /* validity factor 0: a replica may always take over, however long its link was
         * down (the harness kills masters on purpose, on a loaded machine). */
        cl->node[i] = tl_redis_start(&(tl_redis_opts){
            .extra_args = TL_ARGS("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", timeout,
                                  "--cluster-replica-validity-factor", "0")});
        cl->c[i] = tl_redis_connect(cl->node[i]);
        redisReply *id = tl_redis_cmd(cl->c[i], "CLUSTER MYID");
        snprintf(cl->id[i], sizeof(cl->id[i]), "%s", id->str);
        argv[a++] = tl_printf("127.0.0.1:%d", cl->node[i]->port);
        off += (size_t)snprintf(cl->seeds + off, sizeof(cl->seeds) - off, "%s127.0.0.1:%d",
                                i ? "," : "", cl->node[i]->port);
    }
    argv[a++] = "--cluster-replicas";
    argv[a++] = tl_printf("%d", replicas_per_master);
    argv[a++] = "--cluster-yes";
    argv[a] = NULL;
    tl_cmd_result r = tl_run_cmd("cluster-create", "/usr/bin/redis-cli", argv, NULL, TL_WAIT_MS);
    tl_expect_exit(&r, 0);
    if (!tl_wait_for(cluster_settled, cl, TL_WAIT_MS))
        FAILF("the cluster of %d nodes did not settle (cluster_state:ok, every node known, "
              "replicas in sync) within %d ms",
              n, TL_WAIT_MS);
    return cl;
}

/* ------------------------------------------------------------ failover -------------- */

typedef struct takeover {
    tl_cluster *cl;
    int killed, slot;
    int new_master;
} takeover;

/* Every live node names the same live master of the killed node's slot, that node
 * answers ROLE master, and the cluster is ok again everywhere. */
static bool taken_over(void *arg) {
    takeover *t = arg;
    int *map = tl_alloc(sizeof(int) * TL_CLUSTER_SLOTS);
    int owner = -1;
    for (int i = 0; i < t->cl->n; i++) {
        if (t->cl->dead[i]) continue;
        if (!slots_seen_by(t->cl, i, map)) return false;
        int m = map[t->slot];
        if (m < 0 || m == t->killed || (owner >= 0 && m != owner)) return false;
        owner = m;
    }
    const char *role = owner >= 0 ? tl_redis_role(t->cl->node[owner]) : NULL;
    if (!role || strcmp(role, "master") != 0) return false;
    if (!cluster_settled(t->cl)) return false;
    t->new_master = owner;
    return true;
}

int tl_cluster_kill_master(tl_cluster *cl, int i) {
    int *map = tl_alloc(sizeof(int) * TL_CLUSTER_SLOTS);
    if (!slots_seen_by(cl, i, map)) FAILF("cluster node %d does not answer", i);
    int slot = -1;
    for (int s = 0; s < TL_CLUSTER_SLOTS && slot < 0; s++)
        if (map[s] == i) slot = s;
    if (slot < 0) FAILF("cluster node %d (port %d) is no master of any slot", i, cl->node[i]->port);
    tl_log("kill -9 of cluster master %d (port %d, slot %d among its own)", i, cl->node[i]->port,
           slot);
    int64_t t0 = tl_now_ms();
    tl_redis_kill9(cl->node[i]);
    cl->dead[i] = true;
    takeover t = {.cl = cl, .killed = i, .slot = slot, .new_master = -1};
    if (!tl_wait_for(taken_over, &t, TL_WAIT_MS))
        FAILF("no replica took over from killed master %d (port %d) within %d ms", i,
              cl->node[i]->port, TL_WAIT_MS);
    tl_log("node %d (port %d) is the master of slot %d now, %lld ms after the kill", t.new_master,
           cl->node[t.new_master]->port, slot, (long long)(tl_now_ms() - t0));
    return t.new_master;
}

/* ------------------------------------------------------------ resharding ------------ */

/* Moves up to max keys (< 0: all) of slot from node src to node dst with MIGRATE, in
 * batches; returns how many it moved. */
static long migrate_keys(tl_cluster *cl, int slot, int src, int dst, long max) {
    long moved = 0;
    for (;;) {
        long want = max < 0 ? MIGRATE_BATCH : max - moved;
        if (want <= 0) return moved;
        if (want > MIGRATE_BATCH) want = MIGRATE_BATCH;
        redisReply *keys = tl_redis_cmd(tl_cluster_conn(cl, src), "CLUSTER GETKEYSINSLOT %d %ld",
                                        slot, want);
        if (keys->type != REDIS_REPLY_ARRAY) FAILF("CLUSTER GETKEYSINSLOT: not an array");
        if (keys->elements == 0) return moved;
        const char **argv = tl_alloc(sizeof(char *) * (keys->elements + 8));
        int n = 0;
        argv[n++] = "MIGRATE";
        argv[n++] = "127.0.0.1";
        argv[n++] = tl_printf("%d", cl->node[dst]->port);
        argv[n++] = "";
        argv[n++] = "0";
        argv[n++] = "10000";
        argv[n++] = "KEYS";
        for (size_t k = 0; k < keys->elements; k++) argv[n++] = keys->element[k]->str;
        redisReply *rep = tl_redis_cmdargv(tl_cluster_conn(cl, src), n, argv);
        if (rep->type != REDIS_REPLY_STATUS)
            FAILF("MIGRATE of %zu keys of slot %d: %s", keys->elements, slot,
                  rep->str ? rep->str : "?");
        moved += (long)keys->elements;
    }
}

void tl_cluster_move_slot_begin(tl_cluster *cl, int slot, int to, long keys) {
    int src = tl_cluster_master_of_slot(cl, slot);
    if (src == to) FAILF("slot %d is already on node %d", slot, to);
    tl_redis_cmd(tl_cluster_conn(cl, to), "CLUSTER SETSLOT %d IMPORTING %s", slot, cl->id[src]);
    tl_redis_cmd(tl_cluster_conn(cl, src), "CLUSTER SETSLOT %d MIGRATING %s", slot, cl->id[to]);
    long moved = keys == 0 ? 0 : migrate_keys(cl, slot, src, to, keys);
    tl_log("slot %d migrating from node %d to node %d: %ld keys moved so far", slot, src, to,
           moved);
    cl->moving_slot = slot;
    cl->moving_from = src;
}

void tl_cluster_move_slot_finish(tl_cluster *cl, int slot, int to) {
    if (cl->moving_slot != slot)
        FAILF("slot %d is not being moved (tl_cluster_move_slot_begin)", slot);
    int src = cl->moving_from;
    long moved = migrate_keys(cl, slot, src, to, -1);
    /* The destination first, then the source, then every other master: the order
     * redis-cli --cluster uses, so that no node names a slot's owner that does not take
     * it. Replicas learn it from their masters. */
    tl_redis_cmd(tl_cluster_conn(cl, to), "CLUSTER SETSLOT %d NODE %s", slot, cl->id[to]);
    tl_redis_cmd(tl_cluster_conn(cl, src), "CLUSTER SETSLOT %d NODE %s", slot, cl->id[to]);
    int m[TL_CLUSTER_MAX_NODES];
    int nm = tl_cluster_masters(cl, m);
    for (int k = 0; k < nm; k++)
        if (m[k] != to && m[k] != src)
            tl_redis_cmd(tl_cluster_conn(cl, m[k]), "CLUSTER SETSLOT %d NODE %s", slot, cl->id[to]);
    cl->moving_slot = -1;
    tl_log("slot %d moved from node %d to node %d (%ld more keys at the end)", slot, src, to,
           moved);
    if (!tl_wait_for(cluster_settled, cl, TL_WAIT_MS))
        FAILF("the cluster did not settle after slot %d moved", slot);
}

void tl_cluster_move_slot(tl_cluster *cl, int slot, int to) {
    tl_cluster_move_slot_begin(cl, slot, to, -1);
    tl_cluster_move_slot_finish(cl, slot, to);
}
