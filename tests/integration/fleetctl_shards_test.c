/* fleetctl_shards_test.c: `fleetctl shards` and fleetctl's Redis-direct commands (dlq,
 * inspect, model) over a fleet of several shards (fleet/shards.h, docs/cli.md "Shards"),
 * against a real Redis. Jobs are put on a shard by the submit script itself, with that
 * shard's keys and an id naming it, as a gateway puts them there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/id.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "testlib.h"
#include "tl_shard_submit.h"

#define ARGS TL_ARGS

typedef struct env {
    tl_redis *redis;     /* one Redis, or */
    tl_cluster *cluster; /* a cluster */
    redisContext *rc;    /* one Redis: its connection */
    const char *prefix;
} env;

static env *start(void) {
    env *e = tl_alloc(sizeof *e);
    e->redis = tl_redis_start(&(tl_redis_opts){0});
    e->rc = tl_redis_connect(e->redis);
    e->prefix = tl_printf("t%llx", (unsigned long long)(tl_now_ms() % 0xffffff));
    return e;
}

static env *start_cluster(void) {
    env *e = tl_alloc(sizeof *e);
    e->cluster = tl_cluster_start(3, 0, 0);
    e->prefix = tl_printf("t%llx", (unsigned long long)(tl_now_ms() % 0xffffff));
    return e;
}

/* The connection that holds the keys of hash tag tag ("{p}" or "{p:N}"). */
static redisContext *conn(env *e, const char *tag) {
    return e->cluster ? tl_cluster_conn_of_key(e->cluster, tag) : e->rc;
}

/* fleetctl --redis-url <Redis> (or --redis-cluster <seeds>) --prefix <prefix> ARGS... */
static tl_cmd_result ctl(env *e, const char *const *args) {
    if (e->cluster)
        return tl_fleetctl(TL_ARGS("--redis-cluster", tl_cluster_seeds(e->cluster), "--prefix",
                                   e->prefix),
                           args);
    return tl_fleetctl(TL_ARGS("--redis-url", e->redis->url, "--prefix", e->prefix), args);
}

/* The stored table's text, or "(none)". */
static const char *table(env *e) {
    const char *tag = tl_printf("{%s}", e->prefix);
    redisReply *r = tl_redis_cmd(conn(e, tag), "GET {%s}:shards", e->prefix);
    return r->type == REDIS_REPLY_STRING ? tl_printf("%s", r->str) : "(none)";
}

/* The table as a fleet_shards. */
static fleet_shards *shards_of(env *e) {
    fleet_shards *s = tl_alloc(sizeof *s);
    fleet_shards_init(s, e->prefix);
    char why[200];
    const char *t = table(e);
    if (fleet_shards_parse(s, strcmp(t, "(none)") == 0 ? "" : t, why, sizeof why) < 0)
        FAILF("the table \"%s\" does not parse: %s", t, why);
    return s;
}

/* Sends a state.h script command (EVAL: the test's Redis has no script cached). */
static redisReply *script(env *e, const char *tag, fleet_cmd *cmd) {
    fleet_cmd_as_eval(cmd);
    return tl_redis_cmdargv(conn(e, tag), cmd->argc, cmd->argv);
}

/* Submits a queued job of model for tenant "default" on shard k, as a gateway would.
 * Returns its id. */
static const char *submit_on(env *e, fleet_shards *s, int k, const char *model) {
    fleet_cmd cmd;
    const char *copy = tl_shard_submit_cmd(&s->shard[k].keys, k, model, "\x80", 1, 1000, &cmd);
    redisReply *r = script(e, s->shard[k].keys.tag, &cmd);
    if (r->type == REDIS_REPLY_ERROR) FAILF("submit on shard %d: %s", k, r->str);
    return copy;
}

/* Cancels a queued job on its shard. */
static void cancel_on(env *e, fleet_shards *s, const char *id) {
    fleet_cmd cmd;
    const fleet_keys *k = fleet_shards_keys_of_id(s, id);
    fleet_state_cancel(k, id, "default", &cmd);
    redisReply *r = script(e, k->tag, &cmd);
    if (r->type == REDIS_REPLY_ERROR) FAILF("cancel %s: %s", id, r->str);
}

/* Makes a queued job look as the scripts leave a job that failed for good: ended failed,
 * marked dead-lettered and recorded on its shard's dead-letter stream (as cli_test's
 * submit_dead_lettered does on one shard). Returns the entry id. */
static const char *dead_letter(env *e, fleet_shards *s, const char *id, const char *model) {
    const char *tag = fleet_shards_keys_of_id(s, id)->tag;
    redisContext *rc = conn(e, tag);
    redisReply *je = tl_redis_cmd(rc, "HGET %s:job:%s entry_id", tag, id);
    redisReply *seq = tl_redis_cmd(rc, "HGET %s:job:%s queue_seq", tag, id);
    ASSERT_EQ_INT(je->type, REDIS_REPLY_STRING);
    tl_redis_cmd(rc, "HSET %s:queues %s:head %s", tag, model, seq->str);
    tl_redis_cmd(rc, "XDEL %s:stream:%s %s", tag, model, je->str);
    tl_redis_cmd(rc, "HDEL %s:entries:%s %s", tag, model, je->str);
    tl_redis_cmd(rc,
                 "HSET %s:job:%s status failed attempts 3 finished_ms 1 updated_ms 1 error lost "
                 "dead_lettered 1",
                 tag, id);
    redisReply *x = tl_redis_cmd(rc,
                                 "XADD %s:dlq * job %s model %s tenant default attempts 3 "
                                 "error lost failed_ms 1",
                                 tag, id, model);
    const char *entry = tl_printf("%s", x->str);
    tl_redis_cmd(rc, "HSET %s:job:%s dlq_entry %s", tag, id, entry);
    tl_redis_cmd(rc, "HINCRBY %s:stats %s:queued -1", tag, model);
    tl_redis_cmd(rc, "HINCRBY %s:stats %s:failed 1", tag, model);
    return entry;
}

static json_t *json_out(const tl_cmd_result *r) {
    json_t *j = tl_json(r->out);
    if (!j) FAILF("not JSON:\n%s\nstderr:\n%s", r->out, r->err);
    return j;
}

/* ------------------------------------------------------------ the table ------------- */

TL_TEST(shards_init_add_drain_activate_remove) {
    env *e = start();
    /* A fleet without a table has one shard. */
    tl_cmd_result sh = ctl(e, ARGS("shards", "show", "--json"));
    tl_expect_exit(&sh, 0);
    json_t *doc = json_out(&sh);
    ASSERT_FALSE(json_is_true(tl_jget(doc, "stored")));
    ASSERT_EQ_INT(json_array_size(tl_jget(doc, "shards")), 1);

    /* Changes are announced on the events channel. */
    redisContext *sub = tl_redis_connect(e->redis);
    tl_redis_cmd(sub, "SUBSCRIBE {%s}:events", e->prefix);

    tl_cmd_result r = ctl(e, ARGS("shards", "init", "3"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active");
    redisReply *msg = NULL;
    ASSERT_EQ_INT(redisGetReply(sub, (void **)&msg), REDIS_OK);
    ASSERT_EQ_STR(msg->element[2]->str, "shards");
    freeReplyObject(msg);

    /* init once only. */
    r = ctl(e, ARGS("shards", "init", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "exists already");
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active");

    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:active");
    r = ctl(e, ARGS("shards", "add", "--tag", "7", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_TRUE(json_is_true(tl_jget(json_out(&r), "changed")));
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:active 4:7:active");
    r = ctl(e, ARGS("shards", "add", "--tag", "7"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "tag 7 is shard 4's");

    r = ctl(e, ARGS("shards", "drain", "3"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:draining 4:7:active");
    r = ctl(e, ARGS("shards", "drain", "3", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_FALSE(json_is_true(tl_jget(json_out(&r), "changed")));
    r = ctl(e, ARGS("shards", "activate", "3"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:active 4:7:active");

    /* An active shard is not removed. */
    r = ctl(e, ARGS("shards", "remove", "3"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "is active: drain it first");
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:active 4:7:active");
    r = ctl(e, ARGS("shards", "drain", "3"));
    tl_expect_exit(&r, 0);
    r = ctl(e, ARGS("shards", "remove", "3"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 4:7:active");
    /* The freed k is the next one added. */
    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active 3:3:active 4:7:active");
}

TL_TEST(shards_bad_input_writes_nothing) {
    env *e = start();
    static const struct {
        const char *a, *b, *c;
        int code;
        const char *says;
    } bad[] = {
        {"frobnicate", NULL, NULL, 2, "unknown shards subcommand"},
        {"drain", "8", NULL, 2, "not a shard number (0..7)"},
        {"drain", "-1", NULL, 2, "not a shard number"},
        {"activate", "x", NULL, 2, "not a shard number"},
        {"remove", NULL, NULL, 2, "takes one argument"},
        {"init", "0", NULL, 2, "not a number of shards (1..8)"},
        {"init", "9", NULL, 2, "not a number of shards"},
        {"show", "1", NULL, 2, "takes no arguments"},
        {"drain", "1", "--tag=3", 2, "--tag belongs to shards add"},
        {"add", "--tag", "1000000", 2, "tag"},
        {"drain", "5", NULL, 1, "no shard 5"},
        {"drain", "0", NULL, 1, "last active shard"},
        {"remove", "0", NULL, 1, "control tag"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tl_cmd_result r = ctl(e,
                              (const char *const[]){"shards", bad[i].a, bad[i].b, bad[i].c, NULL});
        tl_expect_exit(&r, bad[i].code);
        ASSERT_STR_CONTAINS(r.err, bad[i].says);
        ASSERT_EQ_STR(table(e), "(none)");
    }
    /* With a table: a removal of an active shard, and a table that does not parse. */
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active");
    tl_cmd_result r = ctl(e, ARGS("shards", "remove", "1"));
    tl_expect_exit(&r, 1);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active");
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:x:active");
    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "does not parse");
    ASSERT_EQ_STR(table(e), "0:-:active 1:x:active");
    r = ctl(e, ARGS("dlq", "list"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "does not parse");
    /* Eight shards are all a job id can name. */
    const char *eight = "0:-:active 1:1:active 2:2:active 3:3:active 4:4:active 5:5:active "
                        "6:6:active 7:7:active";
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, eight);
    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "8 shards already");
    ASSERT_EQ_STR(table(e), eight);
}

TL_TEST(shards_remove_is_refused_while_jobs_remain) {
    env *e = start();
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active 2:2:draining");
    fleet_shards *s = shards_of(e);
    const char *a = submit_on(e, s, 2, "echo");
    const char *b = submit_on(e, s, 2, "sleep");
    submit_on(e, s, 1, "echo");
    tl_cmd_result r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "shard 2 still holds 2 queued and 0 running jobs");
    ASSERT_STR_CONTAINS(r.err, "echo 1 queued, 0 running");
    ASSERT_STR_CONTAINS(r.err, "sleep 1 queued, 0 running");
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:draining");

    tl_cmd_result sh = ctl(e, ARGS("shards", "show", "--json"));
    tl_expect_exit(&sh, 0);
    json_t *doc = json_out(&sh);
    ASSERT_EQ_INT(json_array_size(tl_jget(doc, "shards")), 3);
    json_t *s2 = json_array_get(tl_jget(doc, "shards"), 2);
    ASSERT_EQ_STR(tl_jstr(s2, "tag"), tl_printf("{%s:2}", e->prefix));
    ASSERT_EQ_STR(tl_jstr(s2, "state"), "draining");
    ASSERT_EQ_INT(tl_jint(s2, "queued"), 2);
    ASSERT_EQ_INT(tl_jint(s2, "models.echo.stream"), 1);
    ASSERT_EQ_INT(tl_jint(json_array_get(tl_jget(doc, "shards"), 1), "models.echo.queued"), 1);
    ASSERT_EQ_INT(tl_jint(json_array_get(tl_jget(doc, "shards"), 0), "queued"), 0);
    ASSERT_EQ_INT(tl_jint(doc, "total.queued"), 3);

    cancel_on(e, s, a);
    cancel_on(e, s, b);
    /* A webhook delivery still owed for one of its jobs (a task on its stream, or one
     * waiting to be retried) keeps it too: gateways stop reading a removed shard. */
    redisReply *task = tl_redis_cmd(e->rc, "XADD {%s:2}:webhooks * msg m1", e->prefix);
    ASSERT_TRUE(task->type == REDIS_REPLY_STRING);
    const char *entry = tl_printf("%s", task->str);
    r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "shard 2 still owes webhook deliveries (1 task on");
    tl_redis_cmd(e->rc, "XDEL {%s:2}:webhooks %s", e->prefix, entry);
    tl_redis_cmd(e->rc, "ZADD {%s:2}:webhook_retry 1 m2", e->prefix);
    r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "1 waiting to be retried");
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:draining");
    tl_redis_cmd(e->rc, "DEL {%s:2}:webhook_retry", e->prefix);
    r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active");
}

/* A shard added while a model is paused starts paused for it: the mark (pause.lua, in each
 * shard's queues hash) is copied from another shard. */
TL_TEST(shards_add_keeps_a_paused_model_paused) {
    env *e = start();
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active");
    tl_cmd_result r = ctl(e, ARGS("model", "add", "pm"));
    tl_expect_exit(&r, 0);
    r = ctl(e, ARGS("model", "pause", "pm"));
    tl_expect_exit(&r, 0);
    /* each shard's mark holds the time its own pause.lua ran: the copy is one of them */
    redisReply *m0 = tl_redis_cmd(e->rc, "HGET {%s}:queues pm:paused_ms", e->prefix);
    redisReply *m1 = tl_redis_cmd(e->rc, "HGET {%s:1}:queues pm:paused_ms", e->prefix);
    ASSERT_TRUE(m0->type == REDIS_REPLY_STRING && m1->type == REDIS_REPLY_STRING);
    const char *mark0 = tl_printf("%s", m0->str), *mark1 = tl_printf("%s", m1->str);
    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(table(e), "0:-:active 1:1:active 2:2:active");
    redisReply *copied = tl_redis_cmd(e->rc, "HGET {%s:2}:queues pm:paused_ms", e->prefix);
    ASSERT_TRUE(copied->type == REDIS_REPLY_STRING);
    ASSERT_TRUE(strcmp(copied->str, mark0) == 0 || strcmp(copied->str, mark1) == 0);
    /* and resume clears it there as everywhere */
    r = ctl(e, ARGS("model", "resume", "pm"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(tl_redis_int(e->rc, "HEXISTS {%s:2}:queues pm:paused_ms", e->prefix), 0);
}

/* ------------------------------------------------------------ commands over shards -- */

/* dlq list, show and retry over shards 0, 1 and 2 of the table, with a dead-lettered job on
 * each. */
static void dlq_over_three_shards(env *e) {
    fleet_shards *s = shards_of(e);
    const char *ids[3], *entries[3];
    for (int k = 0; k < 3; k++) {
        ids[k] = submit_on(e, s, k, "sleep");
        entries[k] = dead_letter(e, s, ids[k], "sleep");
    }
    /* list: every shard's entries, newest first. */
    tl_cmd_result l = ctl(e, ARGS("dlq", "list", "--json"));
    tl_expect_exit(&l, 0);
    json_t *list = json_out(&l);
    ASSERT_EQ_INT(json_array_size(list), 3);
    for (int i = 0; i < 3; i++) {
        json_t *o = json_array_get(list, (size_t)i);
        int k = (int)tl_jint(o, "shard");
        ASSERT_EQ_STR(tl_jstr(o, "job"), ids[k]);
        ASSERT_EQ_STR(tl_jstr(o, "entry"), entries[k]);
        if (i > 0)
            ASSERT_TRUE(strcmp(tl_jstr(json_array_get(list, (size_t)i - 1), "entry"),
                               tl_jstr(o, "entry")) >= 0);
    }
    l = ctl(e, ARGS("dlq", "list", "--limit", "2", "--json"));
    tl_expect_exit(&l, 0);
    ASSERT_EQ_INT(json_array_size(json_out(&l)), 2);

    /* show: by job id on its shard, and by entry id found on its shard. */
    tl_cmd_result sh = ctl(e, ARGS("dlq", "show", ids[2], "--json"));
    tl_expect_exit(&sh, 0);
    ASSERT_EQ_INT(tl_jint(json_out(&sh), "shard"), 2);
    ASSERT_EQ_STR(tl_jstr(json_out(&sh), "entry"), entries[2]);
    sh = ctl(e, ARGS("dlq", "show", ids[1]));
    tl_expect_exit(&sh, 0);
    ASSERT_STR_CONTAINS(sh.out, tl_printf("%s:dlq", s->shard[1].keys.tag));

    /* retry: one job on shard 1, then --all the others. */
    tl_cmd_result r = ctl(e, ARGS("dlq", "retry", ids[1]));
    tl_expect_exit(&r, 0);
    const char *t1 = s->shard[1].keys.tag, *t2 = s->shard[2].keys.tag;
    redisReply *st = tl_redis_cmd(conn(e, t1), "HGET %s:job:%s status", t1, ids[1]);
    ASSERT_EQ_STR(st->str, "queued");
    r = ctl(e, ARGS("dlq", "retry", "--all", "--json"));
    tl_expect_exit(&r, 0);
    json_t *rep = json_out(&r);
    ASSERT_EQ_INT(json_array_size(rep), 2);
    for (int k = 0; k < 3; k++)
        ASSERT_EQ_INT(tl_redis_int(conn(e, s->shard[k].keys.tag), "XLEN %s:dlq",
                                   s->shard[k].keys.tag),
                      0);
    ASSERT_EQ_STR(tl_redis_cmd(conn(e, t2), "HGET %s:stats sleep:queued", t2)->str, "1");

    /* An id naming no shard of the table. */
    r = ctl(e, ARGS("dlq", "retry", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.out, "not found");
}

TL_TEST(dlq_spans_every_shard) {
    env *e = start();
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active 2:2:active");
    dlq_over_three_shards(e);
}

TL_TEST(inspect_reads_the_job_on_its_shard) {
    env *e = start();
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active 2:5:active");
    fleet_shards *s = shards_of(e);
    const char *id = submit_on(e, s, 2, "echo");
    tl_cmd_result r = ctl(e, ARGS("inspect", id, "--json"));
    tl_expect_exit(&r, 0);
    json_t *doc = json_out(&r);
    ASSERT_EQ_INT(tl_jint(doc, "shard"), 2);
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(doc, "keys"), 0), "name"),
                  tl_printf("{%s:5}:job:%s", e->prefix, id));
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(doc, "keys"), 0), "fields.status"), "queued");
    ASSERT_EQ_STR(tl_jstr(doc, "stream.state"), "undelivered");
    r = ctl(e, ARGS("inspect", id));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, tl_printf("shard 2 ({%s:5})", e->prefix));
    /* Shard 3 is not in the table. */
    char other[27];
    memcpy(other, id, 27);
    fleet_id_set_shard(other, 3);
    r = ctl(e, ARGS("inspect", other));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "names no shard of this fleet");
}

/* model list, remove, pause, resume and purge over shards 0, 1 and 2 of the table, with
 * k + 1 queued jobs of model echo on shard k. */
static void models_over_three_shards(env *e) {
    fleet_shards *s = shards_of(e);
    tl_cmd_result r = ctl(e, ARGS("model", "add", "echo"));
    tl_expect_exit(&r, 0);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j <= k; j++) submit_on(e, s, k, "echo");
    r = ctl(e, ARGS("model", "list", "--json"));
    tl_expect_exit(&r, 0);
    json_t *list = json_out(&r);
    ASSERT_EQ_STR(tl_jstr(json_array_get(list, 0), "name"), "echo");
    ASSERT_EQ_INT(tl_jint(json_array_get(list, 0), "queued"), 6);
    r = ctl(e, ARGS("model", "remove", "echo"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "6 queued and 0 running");

    r = ctl(e, ARGS("model", "pause", "echo", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_TRUE(json_is_true(tl_jget(json_out(&r), "paused")));
    for (int k = 0; k < 3; k++) {
        const char *tag = s->shard[k].keys.tag;
        redisReply *m = tl_redis_cmd(conn(e, tag), "HGET %s:queues echo:paused_ms", tag);
        if (m->type != REDIS_REPLY_STRING) FAILF("shard %d has no pause mark", k);
    }
    r = ctl(e, ARGS("model", "resume", "echo"));
    tl_expect_exit(&r, 0);
    for (int k = 0; k < 3; k++) {
        const char *tag = s->shard[k].keys.tag;
        ASSERT_EQ_INT(tl_redis_int(conn(e, tag), "HEXISTS %s:queues echo:paused_ms", tag), 0);
    }
    r = ctl(e, ARGS("model", "purge", "echo", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(tl_jint(json_out(&r), "cancelled"), 6);
    for (int k = 0; k < 3; k++) {
        const char *tag = s->shard[k].keys.tag;
        ASSERT_EQ_STR(tl_redis_cmd(conn(e, tag), "HGET %s:stats echo:queued", tag)->str, "0");
    }
    r = ctl(e, ARGS("model", "remove", "echo"));
    tl_expect_exit(&r, 0);
}

TL_TEST(models_span_every_shard) {
    env *e = start();
    tl_redis_cmd(e->rc, "SET {%s}:shards %s", e->prefix, "0:-:active 1:1:active 2:2:active");
    models_over_three_shards(e);
}

/* ------------------------------------------------------------ least privilege ------ */

/* Where text holds a refusal by Redis' ACL (NOPERM, or a script's), or NULL. */
static const char *acl_refusal(const char *text) {
    static const char *const marks[] = {"NOPERM", "user executing the script can't", "ACL failure"};
    for (size_t i = 0; i < TL_COUNT(marks); i++)
        if (strstr(text, marks[i])) return marks[i];
    return NULL;
}

TL_TEST(shards_and_commands_over_shards_as_the_ctl_user) {
    /* The fleet-ctl user of deploy/redis-users.acl, rendered by deploy/redis-acl.sh, is
     * enough for every shards subcommand and the commands that span shards. */
    env *e = start();
    const char *script = TEST_SOURCE_DIR "/deploy/redis-acl.sh";
    const char *pfx = tl_printf("FLEET_PREFIX=%s", e->prefix);
    tl_cmd_result out = tl_run_cmd("redis-acl", script, TL_ARGS(script, "--setuser"),
                                   (const char *const[]){"FLEET_ACL_ADMIN_PASSWORD=a",
                                                         "FLEET_ACL_GATEWAY_PASSWORD=g",
                                                         "FLEET_ACL_WORKER_PASSWORD=w",
                                                         "FLEET_ACL_CTL_PASSWORD=ctlpw", pfx, NULL},
                                   30000);
    tl_expect_exit(&out, 0);
    const char *line = strstr(out.out, "ACL SETUSER fleet-ctl ");
    ASSERT_NOT_NULL(line);
    char *rule = tl_printf("%s", line);
    char *nl = strchr(rule, '\n');
    if (nl) *nl = '\0';
    /* Split on spaces: the rule's words have none inside. */
    const char *argv[128];
    int argc = 0;
    for (char *save = NULL, *w = strtok_r(rule, " ", &save); w && argc < 128;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *ok = tl_redis_cmdargv(e->rc, argc, argv);
    ASSERT_EQ_INT(ok->type, REDIS_REPLY_STATUS);
    const char *url = tl_printf("redis://fleet-ctl:ctlpw@127.0.0.1:%d", e->redis->port);

    static const char *const runs[][4] = {
        {"shards", "init", "3", NULL},  {"shards", "add", NULL, NULL},
        {"shards", "drain", "3", NULL}, {"shards", "activate", "3", NULL},
        {"shards", "drain", "3", NULL}, {"shards", "remove", "3", NULL},
        {"shards", "show", NULL, NULL}, {"model", "add", "echo", NULL},
    };
    for (size_t i = 0; i < TL_COUNT(runs); i++) {
        tl_cmd_result r = tl_fleetctl(TL_ARGS("--redis-url", url, "--prefix", e->prefix), runs[i]);
        if (acl_refusal(r.err) || acl_refusal(r.out))
            FAILF("fleetctl %s %s was refused by the ACL: %s", runs[i][0], runs[i][1], r.err);
        tl_expect_exit(&r, 0);
    }
    fleet_shards *s = shards_of(e);
    ASSERT_EQ_INT(s->n, 3);
    const char *ids[3];
    for (int k = 0; k < 3; k++) {
        ids[k] = submit_on(e, s, k, "echo");
        dead_letter(e, s, submit_on(e, s, k, "echo"), "echo");
    }
    const char *const *more[] = {
        ARGS("dlq", "list"),
        ARGS("dlq", "show", ids[2]),
        ARGS("dlq", "retry", "--all"),
        ARGS("inspect", ids[1]),
        ARGS("model", "list"),
        ARGS("model", "pause", "echo"),
        ARGS("model", "resume", "echo"),
        ARGS("model", "purge", "echo"),
    };
    for (size_t i = 0; i < TL_COUNT(more); i++) {
        tl_cmd_result r = tl_fleetctl(TL_ARGS("--redis-url", url, "--prefix", e->prefix), more[i]);
        if (acl_refusal(r.err) || acl_refusal(r.out))
            FAILF("fleetctl %s %s was refused by the ACL: %s", more[i][0], more[i][1], r.err);
        /* dlq show of a job that is not dead-lettered exits 1; the rest succeed. */
        tl_expect_exit(&r, i == 1 ? 1 : 0);
    }
}

/* ------------------------------------------------------------ a cluster ------------ */

/* The cluster node index of the master of shard k's tag, as fleetctl shards show --json
 * names it ("127.0.0.1:port"). */
static int shown_node(env *e, const json_t *doc, int k) {
    const char *node = tl_jstr(json_array_get(tl_jget(doc, "shards"), (size_t)k), "node");
    ASSERT_NOT_NULL(node);
    const char *colon = strrchr(node, ':');
    ASSERT_NOT_NULL(colon);
    return tl_cluster_node_of_port(e->cluster, atoi(colon + 1));
}

TL_TEST(cluster_tags_land_on_every_master) {
    env *e = start_cluster();
    tl_cmd_result r = ctl(e, ARGS("shards", "init", "3"));
    tl_expect_exit(&r, 0);
    fleet_shards *s = shards_of(e);
    ASSERT_EQ_INT(s->n, 3);
    /* Shard 0 is where "{prefix}" is; 1 and 2 on the two other masters. */
    int m0 = tl_cluster_master_of_key(e->cluster, s->shard[0].keys.tag);
    int m1 = tl_cluster_master_of_key(e->cluster, s->shard[1].keys.tag);
    int m2 = tl_cluster_master_of_key(e->cluster, s->shard[2].keys.tag);
    ASSERT_TRUE(m0 != m1 && m1 != m2 && m0 != m2);

    /* A fourth shard goes to a master holding one; show names each shard's master. */
    r = ctl(e, ARGS("shards", "add"));
    tl_expect_exit(&r, 0);
    s = shards_of(e);
    ASSERT_EQ_INT(s->n, 4);
    int m3 = tl_cluster_master_of_key(e->cluster, s->shard[3].keys.tag);
    ASSERT_TRUE(m3 == m0 || m3 == m1 || m3 == m2);
    tl_cmd_result sh = ctl(e, ARGS("shards", "show", "--json"));
    tl_expect_exit(&sh, 0);
    json_t *doc = json_out(&sh);
    ASSERT_EQ_INT(shown_node(e, doc, 0), m0);
    ASSERT_EQ_INT(shown_node(e, doc, 1), m1);
    ASSERT_EQ_INT(shown_node(e, doc, 2), m2);
    ASSERT_EQ_INT(shown_node(e, doc, 3), m3);
    /* --tag puts it where that tag hashes. */
    r = ctl(e, ARGS("shards", "add", "--tag", "1000"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(shards_of(e)->shard[4].tag, 1000);

    /* Commands over shards on three masters. */
    dlq_over_three_shards(e);
    models_over_three_shards(e);
    const char *id = submit_on(e, s, 2, "echo");
    r = ctl(e, ARGS("inspect", id, "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(json_out(&r), "keys"), 0), "fields.status"),
                  "queued");
    r = ctl(e, ARGS("shards", "drain", "2"));
    tl_expect_exit(&r, 0);
    r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "echo 1 queued, 0 running");
    cancel_on(e, s, id);
    /* The retried dead-lettered job of dlq_over_three_shards is still queued there. */
    r = ctl(e, ARGS("shards", "remove", "2"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "sleep 1 queued, 0 running");
}

TL_TEST(cluster_commands_follow_a_shard_slot_being_moved) {
    env *e = start_cluster();
    tl_cmd_result r = ctl(e, ARGS("shards", "init", "3"));
    tl_expect_exit(&r, 0);
    fleet_shards *s = shards_of(e);
    const char *tag = s->shard[1].keys.tag;
    const char *id = submit_on(e, s, 1, "echo");
    int slot = tl_cluster_key_slot(e->cluster, tag),
        from = tl_cluster_master_of_slot(e->cluster, slot);
    int masters[TL_CLUSTER_MAX_NODES], nm = tl_cluster_masters(e->cluster, masters), to = -1;
    for (int i = 0; i < nm && to < 0; i++)
        if (masters[i] != from) to = masters[i];
    ASSERT_TRUE(to >= 0);
    /* Every key moved, the slot still migrating: the old master answers ASK. */
    tl_cluster_move_slot_begin(e->cluster, slot, to, -1);
    r = ctl(e, ARGS("inspect", id, "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(json_out(&r), "keys"), 0), "fields.status"),
                  "queued");
    r = ctl(e, ARGS("shards", "show", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(tl_jint(json_array_get(tl_jget(json_out(&r), "shards"), 1), "queued"), 1);
    /* The slot moved for good: the old master answers MOVED, show names the new one. */
    tl_cluster_move_slot_finish(e->cluster, slot, to);
    r = ctl(e, ARGS("inspect", id, "--json"));
    tl_expect_exit(&r, 0);
    r = ctl(e, ARGS("shards", "show", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(shown_node(e, json_out(&r), 1), to);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(shards_init_add_drain_activate_remove),
        TL_CASE(shards_bad_input_writes_nothing),
        TL_CASE(shards_remove_is_refused_while_jobs_remain),
        TL_CASE(shards_add_keeps_a_paused_model_paused),
        TL_CASE(dlq_spans_every_shard),
        TL_CASE(inspect_reads_the_job_on_its_shard),
        TL_CASE(models_span_every_shard),
        TL_CASE(shards_and_commands_over_shards_as_the_ctl_user),
        TL_CASE(cluster_tags_land_on_every_master),
        TL_CASE(cluster_commands_follow_a_shard_slot_being_moved),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
