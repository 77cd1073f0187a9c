/* worker_shards_test.c: fleet-worker serves its model on every shard of the shard table
 * (shards.h, docs/protocol.md "Workers and shards"). One Redis with the table
 * "0:-:active 1:1:active 2:2:active"; jobs are put on each shard with the state builders
 * and that shard's keys (as a gateway does): a worker finishes them on every shard, a
 * backlog on one shard does not starve the others, the jobs of a worker killed with -9
 * mid-batch are taken over on every shard by another, and a cancel of a running job on
 * shard 2 reaches the worker that runs it. */
#include <stdio.h>
#include <string.h>

#include "fleet/id.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "testlib.h"

#define TABLE "0:-:active 1:1:active 2:2:active"
#define NSHARDS 3

typedef struct env {
    tl_fleet *f;
    fleet_shards s;
} env;

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
    redisReply *r = redisCommandArgv(e->f->rc, cmd->argc, cmd->argv, cmd->argvlen);
    if (!r) FAILF("redis: %s", e->f->rc->errstr);
    tl_defer((void (*)(void *))freeReplyObject, r);
    return r;
}

/* Puts a queued job of model with the msgpack input on shard k, as a gateway would.
 * Returns its id. */
static const char *submit_on(env *e, int k, const char *model, const char *input, size_t len) {
    char id[27];
    fleet_id_new(id);
    fleet_id_set_shard(id, k);
    const char *copy = tl_printf("%s", id);
    fleet_cmd cmd;
    fleet_state_submit(&e->s.shard[k].keys,
                       &(fleet_submit){.id = copy,
                                       .model = model,
                                       .tenant = "default",
                                       .request_id = "test",
                                       .priority = "normal",
                                       .metadata_json = "",
                                       .input = input,
                                       .input_len = len,
                                       .queue_ttl_s = 3600,
                                       .result_ttl_s = 3600,
                                       .max_attempts = 3,
                                       .index_cap = 10000,
                                       .index_ttl_s = 7200,
                                       .ready_target = 8,
                                       .tombstone_s = 60},
                       &cmd);
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
    redisReply *r = tl_redis_cmd(e->f->rc, "HGET %s %s", job.s, name);
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

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(a_worker_finishes_jobs_on_every_shard),
        TL_CASE(a_backlog_on_one_shard_starves_no_other),
        TL_CASE(a_killed_workers_jobs_are_taken_over_on_every_shard),
        TL_CASE(a_cancel_of_a_running_job_on_shard_2_reaches_the_worker),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
