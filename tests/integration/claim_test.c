/* claim_test.c: the claim and finish scripts as a worker of another language would call
 * them (docs/protocol.md), built by the state module: a claim that reads new entries of
 * the stream itself (read slots), named entries and read slots in one call, and the one
 * events message a batch publishes for all its jobs. No worker runs: the test is the
 * worker. */
#include <string.h>
#include <sys/time.h>

#include "fleet/state.h"
#include "testlib.h"

#define INPUT "{\"text\": \"a claimed job's input\"}"

static fleet_keys keys_of(tl_fleet *f) {
    fleet_keys k;
    if (fleet_keys_init(&k, f->prefix) < 0) FAILF("bad prefix %s", f->prefix);
    return k;
}

/* Sends a built script command as EVAL (no script cache needed) and returns its reply. */
static redisReply *send_script(tl_fleet *f, fleet_cmd *cmd) {
    fleet_cmd_as_eval(cmd);
    redisReply *r = redisCommandArgv(f->rc, cmd->argc, cmd->argv, cmd->argvlen);
    if (!r) FAILF("script: connection error");
    tl_defer((void (*)(void *))freeReplyObject, r);
    if (r->type == REDIS_REPLY_ERROR) FAILF("script answered an error: %s", r->str);
    return r;
}

/* A claim of `named` entries ids[i] at entries[i] followed by `reads` read slots; the
 * tokens are "tok-<slot>". */
static redisReply *claim(tl_fleet *f, const char **entries, const char **ids, size_t named,
                         size_t reads) {
    fleet_keys k = keys_of(f);
    fleet_claim cl[16];
    for (size_t i = 0; i < named + reads; i++)
        cl[i] = (fleet_claim){.id = i < named ? ids[i] : "",
                              .entry_id = i < named ? entries[i] : "",
                              .model = "echo",
                              .worker = "w-test",
                              .token = tl_printf("tok-%zu", i),
                              .lease_ms = 30000,
                              .dlq_cap = 100};
    fleet_cmd cmd;
    ASSERT_EQ_INT(fleet_state_claim(&k, cl, named + reads, &cmd), named + reads);
    return send_script(f, &cmd);
}

/* A subscriber of the events channel, on its own connection. */
static redisContext *subscribe(tl_fleet *f) {
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", f->redis->port, tv);
    if (!c || c->err) FAILF("connect to redis: %s", c ? c->errstr : "out of memory");
    tl_defer((void (*)(void *))redisFree, c);
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "SUBSCRIBE {%s}:events", f->prefix);
    if (!r) FAILF("SUBSCRIBE: %s", c->errstr);
    freeReplyObject(r);
    return c;
}

/* The next message on the subscription: its lines as "<id> <what>" strings, n of them. */
static size_t next_message(redisContext *c, const char **lines, size_t max) {
    void *reply = NULL;
    if (redisGetReply(c, &reply) != REDIS_OK || !reply) FAILF("no events message: %s", c->errstr);
    redisReply *r = reply;
    tl_defer((void (*)(void *))freeReplyObject, r);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        FAILF("unexpected reply on the subscription");
    const char *p = r->element[2]->str, *end = p + r->element[2]->len;
    fleet_event ev;
    size_t n = 0;
    while (n < max && fleet_event_next(&p, end, &ev))
        lines[n++] = tl_printf("%.*s %.*s", (int)ev.id_len, ev.id, (int)ev.what_len, ev.what);
    return n;
}

static void ensure_group(tl_fleet *f) {
    tl_redis_cmd(f->rc, "XGROUP CREATE {%s}:stream:echo workers 0 MKSTREAM", f->prefix);
}

static const char *hget(tl_fleet *f, const char *key, const char *field) {
    redisReply *r = tl_redis_cmd(f->rc, "HGET %s %s", key, field);
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

/* Read slots: the script reads the new entries itself and claims each with its slot's
 * token, in stream order; an entry without a valid job id is dropped; slots left over
 * read nothing. The batch's "running" event is one message of one line per job, and so
 * is its finish's. */
TL_TEST(claim_reads_new_entries_itself_and_a_batch_publishes_one_message) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ensure_group(f);
    const char *ids[3];
    for (int i = 0; i < 3; i++) ids[i] = tl_job_submit(f, "echo", INPUT);
    tl_redis_cmd(f->rc, "XADD {%s}:stream:echo * nojob 1", f->prefix);
    redisContext *sub = subscribe(f);

    redisReply *r = claim(f, NULL, NULL, 0, 5);
    ASSERT_EQ_INT(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ_INT(r->elements, 4); /* three jobs and the bad entry; one slot left over */
    for (size_t i = 0; i < 3; i++) {
        const char *entry = NULL, *job = NULL;
        const redisReply *item = fleet_state_claim_read_item(r->element[i], &entry, &job);
        ASSERT_NOT_NULL(item);
        ASSERT_EQ_STR(job, ids[i]);
        fleet_claimed got;
        ASSERT_EQ_INT(fleet_state_claim_reply(item, &got), FLEET_CLAIM_OK);
        ASSERT_EQ_INT(got.attempts, 1);
        ASSERT_EQ_INT(got.timeout_s, 0);
        ASSERT_FALSE(got.reclaimed);
        ASSERT_GE_INT(got.input_len, 1);
        const char *jk = tl_printf("{%s}:job:%s", f->prefix, ids[i]);
        ASSERT_EQ_STR(hget(f, jk, "status"), "running");
        ASSERT_EQ_STR(hget(f, jk, "lease"), tl_printf("tok-%zu", i));
        ASSERT_EQ_STR(hget(f, jk, "entry_id"), entry);
        ASSERT_EQ_STR(hget(f, tl_printf("{%s}:entries:echo", f->prefix), entry),
                      tl_printf("%s running default", ids[i]));
    }
    const char *entry = NULL, *job = NULL;
    const redisReply *bad = fleet_state_claim_read_item(r->element[3], &entry, &job);
    ASSERT_NOT_NULL(bad);
    ASSERT_EQ_STR(job, "");
    fleet_claimed got;
    ASSERT_EQ_INT(fleet_state_claim_reply(bad, &got), FLEET_CLAIM_SKIP);
    /* The bad entry is gone from the stream and its pending list; the jobs' are pending. */
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "XLEN {%s}:stream:echo", f->prefix)->integer, 3);
    redisReply *pend = tl_redis_cmd(f->rc, "XPENDING {%s}:stream:echo workers", f->prefix);
    ASSERT_EQ_INT(pend->element[0]->integer, 3);
    json_t *stats = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.queued"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.running"), 3);

    const char *lines[8];
    ASSERT_EQ_INT(next_message(sub, lines, 8), 3);
    for (int i = 0; i < 3; i++) ASSERT_EQ_STR(lines[i], tl_printf("%s running", ids[i]));

    /* Nothing new: read slots read nothing, and nothing is published. */
    r = claim(f, NULL, NULL, 0, 2);
    ASSERT_EQ_INT(r->elements, 0);

    fleet_keys k = keys_of(f);
    fleet_finish fin[3];
    for (size_t i = 0; i < 3; i++)
        fin[i] = (fleet_finish){.id = ids[i],
                                .model = "echo",
                                .token = tl_printf("tok-%zu", i),
                                .status = FLEET_STATUS_SUCCEEDED,
                                .result = "\x01",
                                .result_len = 1};
    fleet_cmd cmd;
    ASSERT_EQ_INT(fleet_state_finish(&k, fin, 3, &cmd), 3);
    r = send_script(f, &cmd);
    for (size_t i = 0; i < 3; i++)
        ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(r, i)), FLEET_FINISH_OK);
    ASSERT_EQ_INT(next_message(sub, lines, 8), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_STR(lines[i], tl_printf("%s succeeded", ids[i]));
        ASSERT_EQ_STR(tl_jstr(tl_job_get(f, ids[i]), "status"), "succeeded");
    }
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "XLEN {%s}:stream:echo", f->prefix)->integer, 0);
    stats = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.running"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.succeeded"), 3);
}

/* feed moves jobs from the wait lists onto the stream without reading or writing them (no
 * entry_id); the claim that reads a fed job's entry writes its entry_id, and drops the
 * entry of one cancelled or expired after it was fed, counting it once. */
TL_TEST(fed_jobs_get_their_entry_id_from_the_claim_that_finds_them) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ensure_group(f);
    /* The gateway's ready target is 8: the first 8 go onto the stream, 3 onto a wait list. */
    const char *ids[11];
    for (int i = 0; i < 11; i++) ids[i] = tl_job_submit(f, "echo", INPUT);
    for (int i = 8; i < 11; i++)
        ASSERT_NULL(hget(f, tl_printf("{%s}:job:%s", f->prefix, ids[i]), "entry_id"));
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "XLEN {%s}:stream:echo", f->prefix)->integer, 8);

    fleet_keys k = keys_of(f);
    fleet_cmd cmd;
    fleet_state_feed(&k, "echo", 11, &cmd);
    ASSERT_EQ_INT(send_script(f, &cmd)->integer, 3);
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "XLEN {%s}:stream:echo", f->prefix)->integer, 11);
    for (int i = 8; i < 11; i++) /* feed wrote nothing into the jobs */
        ASSERT_NULL(hget(f, tl_printf("{%s}:job:%s", f->prefix, ids[i]), "entry_id"));

    /* One fed job is cancelled, another's keys expire, before a claim reads them. */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[8])), 200);
    tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, ids[9]);

    redisReply *r = claim(f, NULL, NULL, 0, 12);
    ASSERT_EQ_INT(r->elements, 11);
    for (size_t i = 0; i < 11; i++) {
        const char *entry = NULL, *job = NULL;
        const redisReply *item = fleet_state_claim_read_item(r->element[i], &entry, &job);
        ASSERT_NOT_NULL(item);
        ASSERT_EQ_STR(job, ids[i]);
        fleet_claimed got;
        fleet_claim_outcome want = i == 8   ? FLEET_CLAIM_CANCELLED
                                   : i == 9 ? FLEET_CLAIM_GONE
                                            : FLEET_CLAIM_OK;
        ASSERT_EQ_INT(fleet_state_claim_reply(item, &got), want);
        if (want != FLEET_CLAIM_OK) continue;
        ASSERT_GT_INT(got.created_ms, 0);
        ASSERT_GE_INT(got.started_ms, got.created_ms);
        ASSERT_EQ_STR(hget(f, tl_printf("{%s}:job:%s", f->prefix, ids[i]), "entry_id"), entry);
    }
    /* The two dropped entries left the stream; the nine running ones are pending. */
    ASSERT_EQ_INT(tl_redis_cmd(f->rc, "XLEN {%s}:stream:echo", f->prefix)->integer, 9);
    json_t *stats = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.queued"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.running"), 9);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.cancelled"), 1);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.expired"), 1);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.submitted"), 11);
}

/* Named entries and read slots in one call: the named entries' replies come first, in
 * order, then one read item per entry read. */
TL_TEST(claim_takes_named_entries_and_read_slots_together) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ensure_group(f);
    const char *a = tl_job_submit(f, "echo", INPUT);
    const char *b = tl_job_submit(f, "echo", INPUT);
    /* The first entry is read as a worker's blocking read would read it. */
    redisReply *x = tl_redis_cmd(f->rc,
                                 "XREADGROUP GROUP workers w-test COUNT 1 STREAMS "
                                 "{%s}:stream:echo >",
                                 f->prefix);
    const char *entry_a = tl_printf("%s", x->element[0]->element[1]->element[0]->element[0]->str);

    redisReply *r = claim(f, &entry_a, &a, 1, 3);
    ASSERT_EQ_INT(r->elements, 2);
    fleet_claimed got;
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(r, 0), &got), FLEET_CLAIM_OK);
    const char *entry = NULL, *job = NULL;
    const redisReply *item = fleet_state_claim_read_item(r->element[1], &entry, &job);
    ASSERT_NOT_NULL(item);
    ASSERT_EQ_STR(job, b);
    ASSERT_EQ_INT(fleet_state_claim_reply(item, &got), FLEET_CLAIM_OK);
    ASSERT_EQ_STR(hget(f, tl_printf("{%s}:job:%s", f->prefix, a), "lease"), "tok-0");
    /* b took the first read slot's token: slot 1 (slot 0 is a's). */
    ASSERT_EQ_STR(hget(f, tl_printf("{%s}:job:%s", f->prefix, b), "lease"), "tok-1");
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.running"), 2);
}

/* A read refused by Redis (the group is gone) answers an error and writes nothing, also
 * for the named entries of the call. */
TL_TEST(claim_whose_read_fails_writes_nothing) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ensure_group(f);
    const char *a = tl_job_submit(f, "echo", INPUT);
    redisReply *x = tl_redis_cmd(f->rc,
                                 "XREADGROUP GROUP workers w-test COUNT 1 STREAMS "
                                 "{%s}:stream:echo >",
                                 f->prefix);
    const char *entry_a = tl_printf("%s", x->element[0]->element[1]->element[0]->element[0]->str);
    tl_redis_cmd(f->rc, "XGROUP DESTROY {%s}:stream:echo workers", f->prefix);

    fleet_keys k = keys_of(f);
    fleet_claim cl[2] = {
        {.id = a,
         .entry_id = entry_a,
         .model = "echo",
         .worker = "w-test",
         .token = "tok-0",
         .lease_ms = 30000,
         .dlq_cap = 100},
        {.id = "",
         .entry_id = "",
         .model = "echo",
         .worker = "w-test",
         .token = "tok-1",
         .lease_ms = 30000,
         .dlq_cap = 100},
    };
    fleet_cmd cmd;
    fleet_state_claim(&k, cl, 2, &cmd);
    fleet_cmd_as_eval(&cmd);
    redisReply *r = redisCommandArgv(f->rc, cmd.argc, cmd.argv, cmd.argvlen);
    if (!r) FAILF("claim: connection error");
    tl_defer((void (*)(void *))freeReplyObject, r);
    ASSERT_EQ_INT(r->type, REDIS_REPLY_ERROR);
    ASSERT_STR_CONTAINS(r->str, "NOGROUP");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, a), "status"), "queued");
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.running"), 0);
}

/* A finished job keeps its last lease (docs/redis.md): finish writes no HDEL for it. Its
 * final status alone refuses that token: a second finish, a renew and a progress with it
 * answer stale and write nothing, and the counters count the job once. */
TL_TEST(finish_keeps_the_last_lease_and_its_token_is_refused) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ensure_group(f);
    const char *id = tl_job_submit(f, "echo", INPUT);
    redisReply *r = claim(f, NULL, NULL, 0, 1);
    ASSERT_EQ_INT(r->elements, 1);
    const char *jk = tl_printf("{%s}:job:%s", f->prefix, id);
    const char *until = hget(f, jk, "lease_until_ms");
    ASSERT_NOT_NULL(until);
    until = tl_printf("%s", until);

    fleet_keys k = keys_of(f);
    fleet_finish fin = {.id = id,
                        .model = "echo",
                        .token = "tok-0",
                        .status = FLEET_STATUS_SUCCEEDED,
                        .result = "\x01",
                        .result_len = 1};
    fleet_cmd cmd;
    ASSERT_EQ_INT(fleet_state_finish(&k, &fin, 1, &cmd), 1);
    r = send_script(f, &cmd);
    ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(r, 0)), FLEET_FINISH_OK);
    ASSERT_EQ_STR(hget(f, jk, "lease"), "tok-0");
    ASSERT_EQ_STR(hget(f, jk, "lease_until_ms"), until);
    ASSERT_EQ_STR(hget(f, jk, "worker"), "w-test");
    const char *updated = tl_printf("%s", hget(f, jk, "updated_ms"));

    fin.status = FLEET_STATUS_FAILED;
    fin.error = "a second finish";
    ASSERT_EQ_INT(fleet_state_finish(&k, &fin, 1, &cmd), 1);
    r = send_script(f, &cmd);
    ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(r, 0)), FLEET_FINISH_STALE);
    fleet_renew rn = {
        .id = id, .model = "echo", .token = "tok-0", .worker = "w-test", .lease_ms = 30000};
    fleet_state_renew(&k, &rn, &cmd);
    ASSERT_EQ_INT(fleet_state_progress_reply(send_script(f, &cmd)), FLEET_PROGRESS_STALE);
    fleet_progress p = {.id = id, .token = "tok-0", .percent = 50, .message = "late"};
    fleet_state_progress(&k, &p, &cmd);
    ASSERT_EQ_INT(fleet_state_progress_reply(send_script(f, &cmd)), FLEET_PROGRESS_STALE);

    ASSERT_EQ_STR(hget(f, jk, "status"), "succeeded");
    ASSERT_EQ_STR(hget(f, jk, "lease_until_ms"), until);
    ASSERT_EQ_STR(hget(f, jk, "updated_ms"), updated);
    ASSERT_NULL(hget(f, jk, "error"));
    ASSERT_NULL(hget(f, jk, "progress_percent"));
    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "succeeded");
    ASSERT_NULL(json_object_get(job, "lease"));
    json_t *stats = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.running"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.succeeded"), 1);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.failed"), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(claim_reads_new_entries_itself_and_a_batch_publishes_one_message),
        TL_CASE(fed_jobs_get_their_entry_id_from_the_claim_that_finds_them),
        TL_CASE(claim_takes_named_entries_and_read_slots_together),
        TL_CASE(claim_whose_read_fails_writes_nothing),
        TL_CASE(finish_keeps_the_last_lease_and_its_token_is_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
