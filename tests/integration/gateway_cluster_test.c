/* gateway_cluster_test.c: fleet-gateway on a real Redis Cluster (FLEET_REDIS_CLUSTER; the
 * gateway's router, docs/redis.md "Redis Cluster: routing"), made on loopback by each case:
 * redis-server --cluster-enabled yes nodes joined by `redis-cli --cluster create`.
 *
 *   - commands go to the master of their slot: the jobs of the one shard land on the
 *     master of "{prefix}"'s slot, which is not the node of FLEET_REDIS_URL;
 *   - a lost master is named by /readyz while the others' slots are served;
 *   - a resharding of that slot while submits flow: MOVED and ASK followed, every 202
 *     stored on the new owner;
 *   - kill -9 of that master with a replica and FLEET_REDIS_WAIT_REPLICAS=1: the gateway
 *     answers again after the takeover without a restart, and no job answered 202 is lost;
 *   - a dead seed first still works; no reachable seed: /readyz 503 saying why;
 *   - with the shard table the gateway writes on a cluster (one shard per master), jobs
 *     land on every master and are read back from there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static int master_of_slot(tl_cluster *cl, int slot) { return tl_cluster_master_of_slot(cl, slot); }

static int slot_of(tl_cluster *cl, const char *key) { return tl_cluster_key_slot(cl, key); }

/* A fleet on the cluster: a prefix whose slot's master is not node 0 (the node of
 * FLEET_REDIS_URL), so that only routing finds it; one shard (FLEET_SHARDS=1: everything
 * in "{prefix}"'s slot) unless env says otherwise. Returns the slot. */
static int fleet_on(tl_fleet *f, tl_cluster *cl, const char *const *env) {
    static uint64_t seed = 0x9e3779b97f4a7c15ull;
    int slot;
    do {
        snprintf(f->prefix, sizeof f->prefix, "c%08llx",
                 (unsigned long long)(tl_rand64(&seed) & 0xffffffffu));
        slot = slot_of(cl, tl_printf("{%s}", f->prefix));
    } while (master_of_slot(cl, slot) == 0);
    f->redis = cl->node[0];
    f->cluster = cl;
    f->rc = tl_cluster_conn(cl, master_of_slot(cl, slot));
    int k = 0;
    f->opts.gateway_env[k++] = tl_printf("FLEET_REDIS_CLUSTER=%s", tl_cluster_seeds(cl));
    f->opts.gateway_env[k++] = "FLEET_LOG_LEVEL=debug";
    bool shards = false;
    for (; env && *env; env++) {
        shards = shards || strncmp(*env, "FLEET_SHARDS=", 13) == 0;
        f->opts.gateway_env[k++] = *env;
    }
    if (!shards) f->opts.gateway_env[k++] = "FLEET_SHARDS=1";
    f->opts.gateway_env[k] = NULL;
    return slot;
}

static long long count_in_log(const tl_proc *p, const char *what) {
    char *log = tl_read_file(p->log_path, NULL);
    long long n = 0;
    for (const char *s = log; s && (s = strstr(s, what)); s += strlen(what)) n++;
    return n;
}

/* ------------------------------------------------------------ routing ------------- */

TL_TEST(commands_go_to_the_master_of_their_slot) {
    tl_cluster *cl = tl_cluster_start(3, 0, 5000);
    tl_fleet fl = {0}, *f = &fl;
    int slot = fleet_on(f, cl, NULL);
    int owner = master_of_slot(cl, slot);
    tl_fleet_start_gateway(f);

    const char *ids[20];
    for (int i = 0; i < 20; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"n\":%d}", i));
    for (int i = 0; i < 20; i++) ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[i]), "status"), "queued");
    tl_resp *c = tl_delete(f, tl_printf("/v1/jobs/%s", ids[3]));
    ASSERT_HTTP_STATUS(c, 200);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[3]), "status"), "cancelled");
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/stats"), 200);

    /* Everything of the one shard lives on its slot's master, nothing elsewhere. */
    for (int i = 0; i < cl->n; i++) {
        long long keys = tl_cluster_dbsize(cl, i);
        if (i == owner) ASSERT_GT_INT((int)keys, 20);
        else ASSERT_EQ_INT((int)keys, 0);
    }
    ASSERT_EQ_INT((int)tl_redis_int(tl_cluster_conn(cl, owner), "EXISTS {%s}:job:%s", f->prefix,
                                    ids[0]),
                  1);
    tl_resp *ready = tl_get(f, "/readyz");
    ASSERT_HTTP_STATUS(ready, 200);
}

/* A master without a replica killed: /readyz names it, and the commands of the other
 * masters' slots are served meanwhile (a cluster-node-timeout of 15 s keeps the cluster
 * "ok" for the whole case). */
TL_TEST(a_lost_master_is_named_by_readyz_and_the_others_serve_on) {
    tl_cluster *cl = tl_cluster_start(3, 0, 15000);
    tl_fleet fl = {0}, *f = &fl;
    int slot = fleet_on(f, cl, NULL);
    int owner = master_of_slot(cl, slot), lost = (owner + 1) % 3;
    tl_fleet_start_gateway(f);
    const char *before = tl_job_submit(f, "echo", "{}");

    tl_redis_kill9(cl->node[lost]);
    cl->dead[lost] = true;
    const char *want = tl_printf("Redis Cluster master 127.0.0.1:%d: ", cl->node[lost]->port);
    tl_resp *r = NULL;
    ASSERT_EVENTUALLY((r = tl_get(f, "/readyz"))->status == 503 && tl_jstr(r->json, "reason") &&
                          strstr(tl_jstr(r->json, "reason"), want),
                      TL_WAIT_MS);
    tl_log("readyz: %s", r->body);
    const char *after = tl_job_submit(f, "echo", "{}");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, before), "status"), "queued");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, after), "status"), "queued");
}

/* ------------------------------------------------------------ resharding ---------- */

/* Submits from a background process: n submits, each answer's body (one line) and then
 * its status on a line of its own. */
static tl_proc *submitter(tl_fleet *f, int k, int n) {
    const char *script = tl_printf(
        "for i in $(seq %d); do curl -s -w '\\n%%{http_code}\\n' -X POST "
        "-H 'Content-Type: application/json' -d '{\"model\":\"echo\",\"input\":{\"i\":'$i'}}' "
        "%s/v1/jobs; done; echo done",
        n, f->url);
    return tl_spawn(&(tl_spawn_opts){.name = tl_printf("submitter-%d", k),
                                     .path = "/bin/sh",
                                     .argv = TL_ARGS("sh", "-c", script)});
}

typedef struct flow {
    tl_proc *p[2];
    int n;
} flow;

static bool flow_done(void *arg) {
    flow *fl = arg;
    for (int i = 0; i < fl->n; i++)
        if (tl_proc_alive(fl->p[i])) return false;
    return true;
}

/* Reads the submitters' lines: the ids answered 202 (into ids, up to max), how many were
 * 503 and how many anything else. Returns the number of 202s. */
static int flow_answers(const flow *fl, const char **ids, int max, int *refused, int *other) {
    int accepted = 0;
    *refused = *other = 0;
    for (int i = 0; i < fl->n; i++) {
        char *log = tl_read_file(fl->p[i]->log_path, NULL);
        const char *body = "";
        for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
            size_t len = strlen(line);
            if (strcmp(line, "done") == 0) continue;
            if (len != 3 || line[0] < '0' || line[0] > '9') {
                body = line;
                continue;
            }
            if (strcmp(line, "202") == 0) {
                const char *id = strstr(body, "\"id\":\"");
                if (!id) FAILF("a 202 without an id: %s", body);
                if (accepted < max) ids[accepted] = tl_printf("%.26s", id + 6);
                accepted++;
            } else if (strcmp(line, "503") == 0) {
                (*refused)++;
            } else {
                tl_log("unexpected answer: %s %s", line, body);
                (*other)++;
            }
        }
    }
    return accepted;
}

static long long stat_submitted(redisContext *c, tl_fleet *f) {
    redisReply *r = tl_redis_cmd(c, "HGET {%s}:stats echo:submitted", f->prefix);
    return r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
}

TL_TEST(a_resharded_slot_is_followed_while_submits_flow) {
    tl_cluster *cl = tl_cluster_start(3, 0, 5000);
    tl_fleet fl = {0}, *f = &fl;
    int slot = fleet_on(f, cl, NULL);
    int src = master_of_slot(cl, slot), dst = (src + 1) % 3;
    tl_fleet_start_gateway(f);
    flow flw = {{submitter(f, 0, 150), submitter(f, 1, 150)}, 2};
    ASSERT_EVENTUALLY(stat_submitted(tl_cluster_conn(cl, src), f) >= 20, TL_WAIT_MS);

    /* The slot's keys moved, the slot still migrating: the old owner answers ASK. */
    tl_cluster_move_slot_begin(cl, slot, dst, -1);
    /* A one-key read (HGETALL of the stats) is served by the new owner after ASKING; the
     * submits meanwhile (several keys, some not there yet) wait out TRYAGAIN. */
    tl_resp *stats = tl_get(f, "/v1/stats");
    ASSERT_HTTP_STATUS(stats, 200);
    tl_cluster_move_slot_finish(cl, slot, dst);
    ASSERT_WAIT_FOR(flow_done, &flw, TL_WAIT_MS * 2);

    static const char *ids[300];
    int refused, other;
    long long accepted = flow_answers(&flw, ids, 300, &refused, &other);
    tl_log("202: %lld, 503: %d, other answers: %d, MOVED followed: %lld, ASK followed: %lld",
           accepted, refused, other, count_in_log(f->gateway, "MOVED followed"),
           count_in_log(f->gateway, "ASK followed"));
    /* A submit waits out the migration (TRYAGAIN retried within the command timeout): every
     * one is a 202, a job on the new owner: its counter and its hash. */
    ASSERT_EQ_INT(other + refused, 0);
    ASSERT_EQ_INT((int)accepted, 300);
    for (int i = 0; i < 300; i++)
        ASSERT_EQ_INT((int)tl_redis_int(tl_cluster_conn(cl, dst), "EXISTS {%s}:job:%s", f->prefix,
                                        ids[i]),
                      1);
    ASSERT_EQ_INT(master_of_slot(cl, slot), dst);
    ASSERT_EQ_INT((int)stat_submitted(tl_cluster_conn(cl, dst), f), 300);
    ASSERT_EQ_INT((int)tl_cluster_dbsize(cl, src), 0);
    ASSERT_GT_INT((int)count_in_log(f->gateway, "MOVED followed"), 0);
    ASSERT_GT_INT((int)count_in_log(f->gateway, "ASK followed"), 0);
    /* And the gateway reads them there. */
    tl_resp *list = tl_get(f, "/v1/jobs?limit=5");
    ASSERT_HTTP_STATUS(list, 200);
    ASSERT_HTTP_STATUS(tl_get(f, "/readyz"), 200);
}

/* ------------------------------------------------------------ failover ------------ */

/* The port of the node the events link connected to last (its "redis connected" line). */
static int last_events_port(const tl_proc *gw) {
    const char *what = "\"link\":\"events\",\"addr\":\"127.0.0.1:";
    char *log = tl_read_file(gw->log_path, NULL);
    const char *last = NULL;
    for (const char *s = log; s && (s = strstr(s, what)); s += strlen(what)) last = s;
    return last ? atoi(last + strlen(what)) : -1;
}

static bool gateway_ready(void *arg) {
    tl_fleet *f = arg;
    char err[200];
    tl_resp *r = tl_http_try(&(tl_req){.url = tl_printf("%s/readyz", f->url)}, err, sizeof err);
    return r && r->status == 200;
}

TL_TEST(a_killed_master_is_replaced_without_a_restart_and_loses_no_job) {
    tl_cluster *cl = tl_cluster_start(3, 1, 1000);
    tl_fleet fl = {0}, *f = &fl;
    int slot = fleet_on(f, cl, TL_ARGS("FLEET_REDIS_WAIT_REPLICAS=1"));
    int old = master_of_slot(cl, slot);
    /* That master first among the seeds: the events subscription starts there. */
    f->opts.gateway_env[0] = tl_printf("FLEET_REDIS_CLUSTER=127.0.0.1:%d,%s", cl->node[old]->port,
                                       tl_cluster_seeds(cl));
    tl_fleet_start_gateway(f);
    ASSERT_EQ_INT(last_events_port(f->gateway), cl->node[old]->port);

    enum { MAX = 300 };
    const char *ids[MAX];
    int n = 0;
    for (int i = 0; i < 30; i++) ids[n++] = tl_job_submit(f, "echo", tl_printf("{\"i\":%d}", i));

    /* Submits during the outage, from another process: 503 (Retry-After) until the
     * replica takes over; each 202 is a promise kept below. */
    flow flw = {{submitter(f, 0, 200)}, 1};
    ASSERT_EVENTUALLY(count_in_log(flw.p[0], "\n202\n") >= 5, TL_WAIT_MS);
    int now = tl_cluster_kill_master(cl, old);
    int64_t took_over = tl_now_ms();
    /* The gateway found the promoted replica by itself: ready again. Its new master has
     * no replica yet, and FLEET_REDIS_WAIT_REPLICAS=1 is counted on the node that takes
     * the write: a submit is refused with nothing written... */
    ASSERT_WAIT_FOR(gateway_ready, f, TL_WAIT_MS);
    tl_log("the gateway was ready %lld ms after the harness saw the replica take over",
           (long long)(tl_now_ms() - took_over));
    /* The subscription moved to a live master and subscribed again. */
    ASSERT_EVENTUALLY(count_in_log(f->gateway, "subscribed to job events") >= 2, TL_WAIT_MS);
    int events_port = last_events_port(f->gateway);
    ASSERT_TRUE(events_port != cl->node[old]->port &&
                tl_cluster_node_of_port(cl, events_port) >= 0);
    tl_resp *alone = tl_post(f, "/v1/jobs", "{\"model\":\"echo\",\"input\":{}}");
    ASSERT_TRUE(strstr(ASSERT_PROBLEM(alone, 503), "replicas") != NULL);
    /* ...until the old master is back, as a replica of the new one. */
    tl_redis_restart_args(cl->node[old],
                          TL_ARGS("--cluster-port", tl_printf("%d", tl_free_port())));
    cl->dead[old] = false;
    ASSERT_EVENTUALLY(tl_post(f, "/v1/jobs", "{\"model\":\"echo\",\"input\":{\"back\":1}}")
                              ->status == 202,
                      TL_WAIT_MS);
    ASSERT_WAIT_FOR(flow_done, &flw, TL_WAIT_MS * 2);
    int refused, other;
    int got = flow_answers(&flw, ids + n, MAX - n - 10, &refused, &other);
    ASSERT_EQ_INT(other, 0);
    ASSERT_TRUE(n + got <= MAX - 10);
    n += got;
    for (int i = 0; i < 10; i++) ids[n++] = tl_job_submit(f, "echo", "{\"after\":true}");
    ASSERT_EQ_INT(master_of_slot(cl, slot), now);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT((int)tl_redis_int(tl_cluster_conn(cl, now), "EXISTS {%s}:job:%s", f->prefix,
                                        ids[i]),
                      1);
        ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[i]), "status"), "queued");
    }
    tl_log("%d jobs answered 202, all on the promoted replica; %d submits refused (503) meanwhile",
           n, refused);
}

/* ------------------------------------------------------------ seeds --------------- */

TL_TEST(a_dead_seed_is_passed_over_and_no_seed_is_not_ready) {
    tl_cluster *cl = tl_cluster_start(3, 0, 5000);
    int dead = tl_free_port();
    tl_fleet fl = {0}, *f = &fl;
    fleet_on(f, cl, NULL);
    f->opts.gateway_env[0] = tl_printf("FLEET_REDIS_CLUSTER=127.0.0.1:%d,%s", dead,
                                       tl_cluster_seeds(cl));
    tl_fleet_start_gateway(f);
    tl_job_get(f, tl_job_submit(f, "echo", "{}"));

    /* Nothing answers: not ready, and /readyz says why. */
    tl_fleet g = *f;
    g.opts.gateway_env[0] = tl_printf("FLEET_REDIS_CLUSTER=127.0.0.1:%d", dead);
    int port = tl_free_port();
    const char *path = tl_bin_path("fleet-gateway");
    tl_spawn(&(tl_spawn_opts){.name = "gateway-noseed",
                              .path = path,
                              .argv = TL_ARGS(path),
                              .env = TL_ARGS(tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
                                             g.opts.gateway_env[0],
                                             tl_printf("FLEET_LISTEN=127.0.0.1:%d", port),
                                             tl_printf("FLEET_PREFIX=%s", f->prefix),
                                             "FLEET_AUTH=off", "FLEET_MODELS=echo"),
                              .checked = true});
    snprintf(g.url, sizeof g.url, "http://127.0.0.1:%d", port);
    tl_resp *r = NULL;
    char err[200];
    ASSERT_EVENTUALLY((r = tl_http_try(&(tl_req){.url = tl_printf("%s/readyz", g.url)}, err,
                                       sizeof err)) &&
                          r->status == 503 && tl_jstr(r->json, "reason") &&
                          strstr(tl_jstr(r->json, "reason"), "CLUSTER SLOTS"),
                      TL_WAIT_MS);
    tl_log("readyz: %s", r->body);
    tl_resp *s = tl_request(&g, "/v1/jobs",
                            (tl_req){.method = "POST",
                                     .body = "{\"model\":\"echo\",\"input\":{}}"});
    ASSERT_PROBLEM(s, 503);
}

/* ------------------------------------------------------------ shards -------------- */

TL_TEST(jobs_of_every_shard_go_to_their_masters) {
    tl_cluster *cl = tl_cluster_start(3, 0, 5000);
    tl_fleet fl = {0}, *f = &fl;
    fleet_on(f, cl, TL_ARGS("FLEET_SHARDS=0")); /* the default: one shard per master */
    tl_fleet_start_gateway(f);
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 3);
    int masters[3];
    for (int k = 0; k < 3; k++) masters[k] = tl_cluster_master_of_key(cl, tags[k]);
    ASSERT_TRUE(masters[0] != masters[1] && masters[1] != masters[2] && masters[0] != masters[2]);

    enum { N = 60 };
    const char *ids[N];
    int per_shard[3] = {0};
    for (int i = 0; i < N; i++) {
        ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\":%d}", i));
        int k = ids[i][0] - '0';
        ASSERT_TRUE(k >= 0 && k < 3);
        per_shard[k]++;
        /* The job's hash is on its shard's master, written there through the router. */
        redisContext *c = tl_cluster_conn(cl, masters[k]);
        ASSERT_EQ_INT((int)tl_redis_int(c, "EXISTS %s:job:%s", tags[k], ids[i]), 1);
    }
    for (int k = 0; k < 3; k++) ASSERT_GT_INT(per_shard[k], 0);
    for (int i = 0; i < N; i++) ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[i]), "status"), "queued");
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[N - 1])), 200);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[N - 1]), "status"), "cancelled");
    tl_log("jobs per shard: %d %d %d (masters %d %d %d)", per_shard[0], per_shard[1], per_shard[2],
           masters[0], masters[1], masters[2]);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(commands_go_to_the_master_of_their_slot),
        TL_CASE(a_lost_master_is_named_by_readyz_and_the_others_serve_on),
        TL_CASE(a_resharded_slot_is_followed_while_submits_flow),
        TL_CASE(a_killed_master_is_replaced_without_a_restart_and_loses_no_job),
        TL_CASE(a_dead_seed_is_passed_over_and_no_seed_is_not_ready),
        TL_CASE(jobs_of_every_shard_go_to_their_masters),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
