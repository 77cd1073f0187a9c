/* worker_shards_test.c: fleet-worker serves its model on every shard of the shard table
 * (shards.h, docs/protocol.md "Workers and shards"). One Redis with the table
 * "0:-:active 1:1:active 2:2:active"; jobs are put on each shard with the state builders
 * and that shard's keys (as a gateway does): a worker finishes them on every shard, a
 * backlog on one shard does not starve the others, the jobs of a worker killed with -9
 * mid-batch are taken over on every shard by another, and a cancel of a running job on
 * shard 2 reaches the worker that runs it. On a loopback Redis Cluster (tl_cluster.c),
 * one shard per master: the jobs on every master are run, and a slot moved (MOVED), a
 * slot half-migrated (ASK) and a master killed with -9 (its replica takes over) are
 * survived with every job run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/shards.h"
#include "fleet/state.h"
#include "testlib.h"
#include "tl_shard_submit.h"

#define TABLE "0:-:active 1:1:active 2:2:active"
#define NSHARDS 3

typedef struct env {
    tl_fleet *f;
    fleet_shards s;
} env;

/* The connection that serves key: the fleet's Redis, or its master on a cluster. */
static redisContext *conn(env *e, const char *key) { return tl_fleet_conn_of_key(e->f, key); }

static env *start(const char *const *worker_env) {
    env *e = tl_alloc(sizeof *e);
    tl_fleet_opts o = {.shards = TABLE};
    for (int i = 0; worker_env && worker_env[i]; i++) o.worker_env[i] = worker_env[i];
    e->f = tl_fleet_start(&o);
    fleet_shards_init(&e->s, e->f->prefix);
    char why[200];
    if (fleet_shards_parse(&e->s, TABLE, why, sizeof why) < 0) FAILF("table: %s", why);
    return e;
}

/* Sends a state.h command as EVAL (the test's Redis has no script cached), binary-safe:
 * an input may hold NUL bytes. The reply is freed when the case ends. */
static redisReply *script(env *e, fleet_cmd *cmd) {
    fleet_cmd_as_eval(cmd);
    redisContext *c = conn(e, cmd->argv[3]); /* the script's first key */
    redisReply *r = redisCommandArgv(c, cmd->argc, cmd->argv, cmd->argvlen);
    if (!r) FAILF("redis: %s", c->errstr);
    tl_defer((void (*)(void *))freeReplyObject, r);
    return r;
}

/* Puts a queued job of model with the msgpack input on shard k, as a gateway would.
 * Returns its id. */
static const char *submit_on(env *e, int k, const char *model, const char *input, size_t len) {
    fleet_cmd cmd;
    const char *copy = tl_shard_submit_cmd(&e->s.shard[k].keys, k, model, input, len, 10000, &cmd);
    redisReply *r = script(e, &cmd);
    if (r->type == REDIS_REPLY_ERROR) FAILF("submit on shard %d: %s", k, r->str);
    return copy;
}

/* {"ms": ms} in msgpack: the sleep model's input. */
static const char *sleep_input(int ms, size_t *len) {
    char *b = tl_alloc(16);
    size_t n = 0;
    b[n++] = (char)0x81;
    b[n++] = (char)0xa2;
    b[n++] = 'm';
    b[n++] = 's';
    b[n++] = (char)0xcd; /* uint16 */
    b[n++] = (char)((ms >> 8) & 0xff);
    b[n++] = (char)(ms & 0xff);
    *len = n;
    return b;
}

/* A field of job id's hash, on its shard ("" when absent). */
static const char *field(env *e, const char *id, const char *name) {
    fleet_key job = fleet_key_job(fleet_shards_keys_of_id(&e->s, id), id);
    redisReply *r = tl_redis_cmd(conn(e, job.s), "HGET %s %s", job.s, name);
    return r->type == REDIS_REPLY_STRING ? tl_printf("%s", r->str) : "";
}

typedef struct ids {
    env *e;
    const char **id;
    int n;
    const char *status;
} ids;

/* How many of the jobs are in status. */
static int count_status(ids *s) {
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (strcmp(field(s->e, s->id[i], "status"), s->status) == 0) n++;
    return n;
}

static bool all_in_status(void *arg) {
    ids *s = arg;
    return count_status(s) == s->n;
}

static void wait_all(env *e, const char **id, int n, const char *status) {
    ids s = {e, id, n, status};
    if (!tl_wait_for(all_in_status, &s, TL_WAIT_MS))
        FAILF("only %d of %d jobs reached %s", count_status(&s), n, status);
}

TL_TEST(a_worker_finishes_jobs_on_every_shard) {
    env *e = start(NULL);
    tl_fleet_add_worker(e->f, "echo");
    const char *id[NSHARDS * 20];
    int n = 0;
    for (int i = 0; i < 20; i++)
        for (int k = 0; k < NSHARDS; k++) id[n++] = submit_on(e, k, "echo", "\x80", 1);
    wait_all(e, id, n, "succeeded");
    /* each on its own shard's keys: the stream and the stats of that shard */
    for (int k = 0; k < NSHARDS; k++) {
        fleet_key stats = fleet_key_stats(&e->s.shard[k].keys);
        redisReply *r = tl_redis_cmd(e->f->rc, "HGET %s echo:succeeded", stats.s);
        ASSERT_EQ_STR(r->type == REDIS_REPLY_STRING ? r->str : "(none)", "20");
    }
    /* An idle worker (blocked on one shard at a time) picks up a lone job on any shard.
     * How long it took, from the job's created_ms to its started_ms (Redis' clock), is
     * logged, not asserted: docs/protocol.md "Workers and shards". */
    long long most[NSHARDS] = {0}, sum[NSHARDS] = {0};
    int count[NSHARDS] = {0};
    unsigned lcg = 12345; /* shards in no fixed order: the worker's rotation must not lock
                           * in step with the test's */
    for (int round = 0; round < 10 * NSHARDS; round++) {
        lcg = lcg * 1103515245u + 12345u;
        int k = (int)((lcg >> 16) % NSHARDS);
        count[k]++;
        const char *lone = submit_on(e, k, "echo", "\x80", 1);
        wait_all(e, &lone, 1, "succeeded");
        long long ms = atoll(field(e, lone, "started_ms")) - atoll(field(e, lone, "created_ms"));
        sum[k] += ms;
        if (ms > most[k]) most[k] = ms;
    }
    for (int k = 0; k < NSHARDS; k++)
        tl_log("idle pickup on shard %d: mean %lld ms, most %lld ms (%d lone jobs)", k,
               count[k] ? sum[k] / count[k] : 0, most[k], count[k]);
}

TL_TEST(a_backlog_on_one_shard_starves_no_other) {
    env *e = start(TL_ARGS("FLEET_MAX_BATCH=4"));
    size_t len;
    const char *in = sleep_input(40, &len);
    const char *backlog[200], *small[2 * 5];
    for (int i = 0; i < 200; i++) backlog[i] = submit_on(e, 0, "sleep", in, len);
    for (int i = 0; i < 5; i++) {
        small[2 * i] = submit_on(e, 1, "sleep", in, len);
        small[2 * i + 1] = submit_on(e, 2, "sleep", in, len);
    }
    tl_fleet_add_worker(e->f, "sleep");
    wait_all(e, small, 10, "succeeded");
    /* The small shards were served while the backlog of shard 0 still waited: a batch of
     * 4 every turn, each turn starting on the next shard. */
    ids b = {e, backlog, 200, "succeeded"};
    int done = count_status(&b);
    tl_log("backlog jobs done when the small shards were: %d of 200", done);
    ASSERT_TRUE(done < 100);
    wait_all(e, backlog, 200, "succeeded");
}

TL_TEST(a_killed_workers_jobs_are_taken_over_on_every_shard) {
    env *e = start(TL_ARGS("FLEET_MAX_BATCH=6", "FLEET_LEASE_MS=2000"));
    size_t len;
    const char *in = sleep_input(3000, &len); /* still running when the worker dies */
    const char *id[6];
    for (int i = 0; i < 6; i++) id[i] = submit_on(e, i % NSHARDS, "sleep", in, len);
    tl_proc *a = tl_fleet_add_worker(e->f, "sleep");
    wait_all(e, id, 6, "running"); /* one batch of six, two on each shard */
    tl_proc_kill9(a);
    tl_fleet_add_worker(e->f, "sleep");
    wait_all(e, id, 6, "succeeded");
    for (int i = 0; i < 6; i++) ASSERT_EQ_STR(field(e, id[i], "attempts"), "2");
}

TL_TEST(a_cancel_of_a_running_job_on_shard_2_reaches_the_worker) {
    env *e = start(NULL);
    size_t len;
    const char *in = sleep_input(60000, &len);
    tl_fleet_add_worker(e->f, "sleep");
    const char *id = submit_on(e, 2, "sleep", in, len);
    wait_all(e, &id, 1, "running");
    fleet_cmd cmd;
    fleet_state_cancel(&e->s.shard[2].keys, id, "default", &cmd);
    redisReply *r = script(e, &cmd);
    ASSERT_TRUE(r->type != REDIS_REPLY_ERROR);
    /* The worker stops the model and ends the job: no lease needs to run out. */
    wait_all(e, &id, 1, "cancelled");
    ASSERT_EQ_STR(field(e, id, "attempts"), "1");
}

/* ---------------------------------------------------------------- a cluster -------- */

static tl_cluster *master_cl;
static int master_ids[TL_CLUSTER_MAX_NODES], nmaster_ids;

/* fleet_shards_free_tag's view of the masters: index in master_ids. */
static int master_index(int slot, void *arg) {
    (void)arg;
    int node = tl_cluster_master_of_slot(master_cl, slot);
    for (int i = 0; i < nmaster_ids; i++)
        if (master_ids[i] == node) return i;
    return -1;
}

/* A fleet on a cluster of 3 masters (replicas each) with one shard per master: shard 0
 * on the control tag's master, shards 1 and 2 on the two others. It replaces any table a
 * gateway wrote, before the worker starts (the gateway plays no part: the jobs are put
 * on their shards here). */
static env *start_cluster(int replicas, const char *model, const char *const *worker_env) {
    env *e = tl_alloc(sizeof *e);
    tl_fleet_opts o = {.cluster_masters = 3, .cluster_replicas = replicas};
    for (int i = 0; worker_env && worker_env[i]; i++) o.worker_env[i] = worker_env[i];
    e->f = tl_fleet_start(&o);
    master_cl = e->f->cluster;
    nmaster_ids = tl_cluster_masters(master_cl, master_ids);
    ASSERT_EQ_INT(nmaster_ids, 3);
    long tags[3];
    fleet_shards none;
    fleet_shards_init(&none, e->f->prefix);
    for (int i = 0; i < 3; i++) tags[i] = fleet_shards_free_tag(&none, 1, master_index, NULL, i);
    int control = tl_cluster_master_of_key(master_cl, tl_printf("{%s}", e->f->prefix));
    const char *table = "0:-:active";
    int k = 1;
    for (int i = 0; i < 3; i++)
        if (master_ids[i] != control) table = tl_printf("%s %d:%ld:active", table, k++, tags[i]);
    const char *key = tl_printf("{%s}:shards", e->f->prefix);
    tl_redis_cmd(conn(e, key), "SET %s %s", key, table);
    redisReply *got = tl_redis_cmd(conn(e, key), "GET %s", key);
    fleet_shards_init(&e->s, e->f->prefix);
    char why[200];
    if (fleet_shards_parse(&e->s, got->str, why, sizeof why) < 0) FAILF("table: %s", why);
    tl_log("shard table: %s", got->str);
    tl_fleet_add_worker(e->f, model);
    return e;
}

/* The node that masters shard k's tag. */
static int master_of_shard(env *e, int k) {
    return tl_cluster_master_of_key(master_cl, fleet_key_stream(&e->s.shard[k].keys, "x").s);
}

TL_TEST(on_a_cluster_jobs_on_every_master_are_run) {
    env *e = start_cluster(0, "echo", NULL);
    ASSERT_EQ_INT((int)e->s.n, 3);
    /* one shard per master */
    ASSERT_TRUE(master_of_shard(e, e->s.all[0]) != master_of_shard(e, e->s.all[1]));
    ASSERT_TRUE(master_of_shard(e, e->s.all[1]) != master_of_shard(e, e->s.all[2]));
    ASSERT_TRUE(master_of_shard(e, e->s.all[0]) != master_of_shard(e, e->s.all[2]));
    const char *id[3 * 30];
    int n = 0;
    for (int i = 0; i < 30; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "echo", "\x80", 1);
    wait_all(e, id, n, "succeeded");
}

TL_TEST(on_a_cluster_moved_ask_and_a_killed_master_are_survived) {
    env *e = start_cluster(1, "sleep", TL_ARGS("FLEET_LEASE_MS=3000"));
    size_t len;
    const char *in = sleep_input(30, &len);
    const char *id[400];
    int n = 0;
    for (int i = 0; i < 40; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "sleep", in, len);
    /* Shard 1's slot moves to shard 2's master while the jobs run: the worker's commands
     * for shard 1 get MOVED and follow. */
    int k1 = e->s.all[1], k2 = e->s.all[2];
    fleet_key s1 = fleet_key_stream(&e->s.shard[k1].keys, "sleep");
    int slot1 = tl_cluster_key_slot(master_cl, s1.s);
    tl_cluster_move_slot(master_cl, slot1, master_of_shard(e, k2));
    for (int i = 0; i < 20; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "sleep", in, len);
    wait_all(e, id, n, "succeeded");
    /* Shard 2's slot half-migrated to shard 0's master: keys already moved answer ASK. */
    int k0 = e->s.all[0];
    fleet_key s2 = fleet_key_stream(&e->s.shard[k2].keys, "sleep");
    int slot2 = tl_cluster_key_slot(master_cl, s2.s);
    int to = master_of_shard(e, k0);
    tl_cluster_move_slot_begin(master_cl, slot2, to, 3);
    tl_cluster_move_slot_finish(master_cl, slot2, to);
    for (int i = 0; i < 20; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "sleep", in, len);
    wait_all(e, id, n, "succeeded");
    /* The master of shard 0 (and now 2) killed with -9: its replica takes over, the
     * worker finds it through the map read again. */
    int first_new = n;
    for (int i = 0; i < 20; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "sleep", in, len);
    /* what was written there is on its replica before the kill */
    tl_redis_cmd(tl_cluster_conn(master_cl, to), "WAIT 1 5000");
    tl_cluster_kill_master(master_cl, to);
    for (int i = 0; i < 10; i++)
        for (int s = 0; s < 3; s++) id[n++] = submit_on(e, e->s.all[s], "sleep", in, len);
    tl_log("jobs: %d, %d of them submitted around the kill", n, n - first_new);
    wait_all(e, id + first_new, n - first_new, "succeeded");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(a_worker_finishes_jobs_on_every_shard),
        TL_CASE(a_backlog_on_one_shard_starves_no_other),
        TL_CASE(a_killed_workers_jobs_are_taken_over_on_every_shard),
        TL_CASE(a_cancel_of_a_running_job_on_shard_2_reaches_the_worker),
        TL_CASE(on_a_cluster_jobs_on_every_master_are_run),
        TL_CASE(on_a_cluster_moved_ask_and_a_killed_master_are_survived),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
