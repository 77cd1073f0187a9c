/* replication_test.c: FLEET_REDIS_WAIT_REPLICAS. A write the gateway answers 2xx (a
 * submit, a batch item, a cancel) is held by that many replicas by the time the client
 * reads the answer; when the replicas do not confirm it in time the answer is 503 with
 * Retry-After (the write may or may not survive a failover, and the detail says so);
 * reads never wait for replicas. Real servers: the fleet's Redis and a replica of it. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "testlib.h"

typedef struct pair {
    redisContext *primary;
    int replica_port;
} pair;

/* The replica takes writes once the primary streams them to it, which starts with the
 * replica's first acknowledgement after its sync (up to a second after its link is up):
 * a write of the harness's own that WAIT sees confirmed. */
static bool streaming(void *arg) {
    pair *p = arg;
    redisReply *r = tl_redis_cmd(p->primary, "INFO replication");
    if (!strstr(r->str, tl_printf("port=%d,state=online", p->replica_port))) return false;
    tl_redis_cmd(p->primary, "SET replication-probe 1");
    return tl_redis_int(p->primary, "WAIT 1 100") >= 1;
}

/* A replica of primary (tl_redis_start_replica) that WAIT counts. */
static tl_redis *replicate(tl_redis *primary) {
    tl_redis *replica = tl_redis_start_replica(primary);
    pair p = {tl_redis_connect(primary), replica->port};
    if (!tl_wait_for(streaming, &p, TL_WAIT_MS))
        FAILF("the replica on port %d does not acknowledge writes", replica->port);
    return replica;
}

static bool on(redisContext *c, const char *key) { return tl_redis_int(c, "EXISTS %s", key) == 1; }

static const char *job_key(tl_fleet *f, const char *id) {
    return tl_printf("{%s}:job:%s", f->prefix, id);
}

TL_TEST(writes_answer_2xx_once_the_replicas_hold_them) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_REDIS_WAIT_REPLICAS=1", "FLEET_REDIS_WAIT_TIMEOUT_MS=300"}});
    tl_redis *replica = replicate(f->redis);
    redisContext *rc = tl_redis_connect(replica);

    /* Each 2xx is read only after the replica holds the write: checked on the replica
     * right after the answer, with no wait in between. */
    for (int i = 0; i < 20; i++) {
        const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");
        ASSERT_TRUE(on(rc, job_key(f, id)));
    }
    tl_resp *b = tl_post(f, "/v1/jobs/batch",
                         "{\"jobs\": [{\"model\": \"echo\", \"input\": 1}, "
                         "{\"model\": \"echo\", \"input\": 2}]}");
    ASSERT_EQ_INT(b->status, 200);
    ASSERT_EQ_INT(tl_jint(b->json, "accepted"), 2);
    ASSERT_TRUE(on(rc, job_key(f, tl_jstr(b->json, "jobs.0.id"))));
    ASSERT_TRUE(on(rc, job_key(f, tl_jstr(b->json, "jobs.1.id"))));
    const char *id = tl_job_submit(f, "echo", "{\"n\": 2}");
    ASSERT_EQ_INT(tl_delete(f, tl_printf("/v1/jobs/%s", id))->status, 200);
    redisReply *st = tl_redis_cmd(rc, "HGET %s status", job_key(f, id));
    ASSERT_EQ_STR(st->str, "cancelled");
}

static void resume(void *arg) { kill(*(pid_t *)arg, SIGCONT); }

/* A replica that stops answering (its process paused) stays listed as online until the
 * primary's repl-timeout: the WAIT runs out, and the write may or may not survive. */
TL_TEST(a_replica_that_does_not_confirm_makes_writes_503_and_reads_still_work) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_REDIS_WAIT_REPLICAS=1", "FLEET_REDIS_WAIT_TIMEOUT_MS=200"}});
    tl_redis *replica = replicate(f->redis);
    const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");

    static pid_t paused;
    paused = replica->proc->pid;
    if (kill(paused, SIGSTOP) != 0) FAILF("SIGSTOP replica: %s", strerror(errno));
    tl_defer(resume, &paused);
    tl_resp *r = tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": {\"n\": 2}}");
    ASSERT_PROBLEM(r, 503);
    ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:redis-unavailable");
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "detail"), "replicas did not confirm");
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "detail"), "may or may not have been stored");
    ASSERT_TRUE(tl_resp_header(r, "Retry-After") != NULL);
    /* A batch marks each item it could not have confirmed. */
    tl_resp *b = tl_post(f, "/v1/jobs/batch", "{\"jobs\": [{\"model\": \"echo\", \"input\": 1}]}");
    ASSERT_EQ_INT(tl_jint(b->json, "accepted"), 0);
    ASSERT_EQ_INT(tl_jint(b->json, "jobs.0.error.status"), 503);
    /* Reads do not wait for replicas. */
    ASSERT_EQ_INT(tl_get(f, tl_printf("/v1/jobs/%s", id))->status, 200);
    ASSERT_EQ_INT(tl_get(f, "/v1/jobs")->status, 200);

    /* The replica answers again: so do the writes. */
    if (kill(paused, SIGCONT) != 0) FAILF("SIGCONT replica: %s", strerror(errno));
    ASSERT_EVENTUALLY(tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": 3}")->status == 202,
                      TL_WAIT_MS);
}

static tl_resp *last;
static bool refused_up_front(void *arg) {
    last = tl_post(arg, "/v1/jobs", "{\"model\": \"echo\", \"input\": {\"n\": 2}}");
    return last->status == 503 && strstr(tl_jstr(last->json, "detail"), "nothing was stored");
}

/* With fewer replicas online than asked for (INFO replication, read every second), a
 * write is refused before anything is written: no WAIT that can only time out. */
TL_TEST(with_too_few_replicas_online_writes_are_refused_before_anything_is_written) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_REDIS_WAIT_REPLICAS=1", "FLEET_REDIS_WAIT_TIMEOUT_MS=500"}});
    tl_redis *replica = replicate(f->redis);
    const char *id = tl_job_submit(f, "echo", "{\"n\": 1}");

    tl_redis_kill9(replica);
    if (!tl_wait_for(refused_up_front, f, TL_WAIT_MS))
        FAILF("no up-front refusal; last answer %ld: %s", last->status, last->body);
    ASSERT_TRUE(tl_resp_header(last, "Retry-After") != NULL);
    size_t jobs = tl_redis_keys(f->rc, tl_printf("{%s}:job:*", f->prefix)).n;
    tl_redis_cmd(f->rc, "CONFIG RESETSTAT");
    ASSERT_TRUE(refused_up_front(f));
    /* Neither the submit script nor a WAIT reached Redis, and no job was made. */
    redisReply *st = tl_redis_cmd(f->rc, "INFO commandstats");
    ASSERT_TRUE(strstr(st->str, "cmdstat_wait:") == NULL);
    ASSERT_TRUE(strstr(st->str, "cmdstat_evalsha:") == NULL);
    ASSERT_TRUE(strstr(st->str, "cmdstat_eval:") == NULL);
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:job:*", f->prefix)).n, jobs);
    ASSERT_EQ_INT(tl_get(f, tl_printf("/v1/jobs/%s", id))->status, 200);

    /* A replica back: writes are answered 2xx again once the gateway has seen it. */
    replicate(f->redis);
    ASSERT_EVENTUALLY(tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": 3}")->status == 202,
                      TL_WAIT_MS);
}

/* Without the setting nothing waits: no WAIT reaches Redis. */
TL_TEST(off_by_default) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_redis_cmd(f->rc, "CONFIG RESETSTAT");
    tl_job_submit(f, "echo", "{\"n\": 1}");
    redisReply *st = tl_redis_cmd(f->rc, "INFO commandstats");
    ASSERT_TRUE(strstr(st->str, "cmdstat_wait:") == NULL);
}

/* The WAIT must time out before the gateway's own command timeout would call Redis
 * stalled: refused at start. */
TL_TEST(a_wait_timeout_at_the_command_timeout_is_refused) {
    tl_redis *r = tl_redis_start(NULL);
    const char *gw = tl_printf("%s/fleet-gateway", tl_bin_dir());
    tl_cmd_result res = tl_run_cmd("gateway", gw,
                                   TL_ARGS(gw, "--redis-url", r->url, "--redis-wait-replicas", "1",
                                           "--redis-wait-timeout-ms", "5000", "--redis-timeout-ms",
                                           "5000"),
                                   NULL, TL_WAIT_MS);
    tl_expect_exit(&res, 2);
    ASSERT_STR_CONTAINS(res.err, "FLEET_REDIS_WAIT_TIMEOUT_MS");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(writes_answer_2xx_once_the_replicas_hold_them),
        TL_CASE(a_replica_that_does_not_confirm_makes_writes_503_and_reads_still_work),
        TL_CASE(with_too_few_replicas_online_writes_are_refused_before_anything_is_written),
        TL_CASE(off_by_default),
        TL_CASE(a_wait_timeout_at_the_command_timeout_is_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
