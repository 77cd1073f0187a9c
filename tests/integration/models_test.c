/* models_test.c: models registered in Redis (docs/api.md "Models", docs/cli.md "Models",
 * docs/redis.md {prefix}:models).
 *
 * A gateway without FLEET_MODELS accepts the models registered in {prefix}:models (by
 * `fleetctl model add` or a worker's start) and those live workers serve; a registration
 * outlives its worker, so jobs queue with no worker (scale from zero) and the submit says
 * so; FLEET_MODELS is an allowlist; `fleetctl model remove` refuses while jobs wait.
 */
#include <stdio.h>
#include <string.h>

#include "testlib.h"

#define ARGS TL_ARGS

/* A gateway with no allowlist: the models registered in Redis. */
static tl_fleet *start_unlisted(void) {
    return tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS="}});
}

static tl_cmd_result fleetctl(tl_fleet *f, const char *const *args) {
    return tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix), args);
}

static tl_resp *submit(tl_fleet *f, const char *model) {
    return tl_post(f, "/v1/jobs", tl_printf("{\"model\":\"%s\",\"input\":{\"ms\":1}}", model));
}

/* The model's entry of GET /v1/models, or NULL when it is not listed. */
static json_t *listed(tl_fleet *f, const char *model) {
    tl_resp *r = tl_get(f, "/v1/models");
    ASSERT_HTTP_STATUS(r, 200);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r->json, "models"), i, m) {
        if (strcmp(tl_jstr(m, "name"), model) == 0) return m;
    }
    return NULL;
}

static bool is_accepted(tl_fleet *f, const char *model) { return submit(f, model)->status == 202; }

static long long live_workers(tl_fleet *f, const char *model) {
    json_t *m = listed(f, model);
    return m ? tl_jint(m, "workers") : -1;
}

static bool registered(tl_fleet *f, const char *model) {
    return tl_redis_int(f->rc, "HEXISTS %s:models %s", tl_printf("{%s}", f->prefix), model) == 1;
}

/* Asserts the no-worker note of a 202: the header and the body's fields. */
static void assert_no_worker_note(const tl_resp *r, const char *model) {
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_resp_header(r, "Fleet-No-Worker"), "true");
    ASSERT_TRUE(json_is_true(json_object_get(r->json, "no_worker")));
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "notice"),
                        tl_printf("no worker serves model '%s'", model));
}

/* ------------------------------------------------------------ cases ----------------- */

TL_TEST(gateway_accepts_a_model_once_fleetctl_adds_it) {
    tl_fleet *f = start_unlisted();
    const char *detail = ASSERT_PROBLEM(submit(f, "llm"), 422);
    ASSERT_STR_CONTAINS(detail, "no model is registered yet");

    tl_cmd_result a = fleetctl(f, ARGS("model", "add", "llm", "--description", "a test model"));
    tl_expect_exit(&a, 0);
    ASSERT_STR_CONTAINS(a.out, "registered model llm");
    ASSERT_TRUE(registered(f, "llm"));
    /* The running gateway picks it up with no restart (the events channel tells it). */
    ASSERT_EVENTUALLY(is_accepted(f, "llm"), TL_WAIT_MS);

    /* No worker serves it: accepted, and the answer says so. */
    tl_resp *r = submit(f, "llm");
    assert_no_worker_note(r, "llm");
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");

    json_t *m = listed(f, "llm");
    ASSERT_NOT_NULL(m);
    ASSERT_EQ_INT(tl_jint(m, "workers"), 0);
    ASSERT_TRUE(json_is_true(json_object_get(m, "accepts_jobs")));
    ASSERT_TRUE(json_is_true(json_object_get(m, "registered")));
    ASSERT_EQ_STR(tl_jstr(m, "registered_by"), "fleetctl");
    ASSERT_EQ_STR(tl_jstr(m, "description"), "a test model");
    ASSERT_GT_INT(tl_jint(m, "created_ms"), 0);
    ASSERT_GE_INT(tl_jint(m, "queue_depth"), 2);

    /* An unregistered model is still refused, naming the ones that are accepted. */
    detail = ASSERT_PROBLEM(submit(f, "other"), 422);
    ASSERT_STR_CONTAINS(detail, "model 'other' is not served here; models: llm");

    /* Adding it again changes nothing (the first registration's time stays). */
    long long created = tl_jint(m, "created_ms");
    tl_cmd_result again = fleetctl(f, ARGS("model", "add", "llm"));
    tl_expect_exit(&again, 0);
    ASSERT_STR_CONTAINS(again.out, "already registered");
    ASSERT_EQ_INT(tl_jint(listed(f, "llm"), "created_ms"), created);
    ASSERT_EQ_STR(tl_jstr(listed(f, "llm"), "description"), "a test model");
}

TL_TEST(a_workers_registration_outlives_it_and_jobs_queue_until_one_starts) {
    tl_fleet *f = start_unlisted();
    tl_proc *w = tl_fleet_add_worker(f, "sleep");
    ASSERT_EVENTUALLY(registered(f, "sleep"), TL_WAIT_MS);
    ASSERT_EVENTUALLY(is_accepted(f, "sleep"), TL_WAIT_MS);
    ASSERT_EVENTUALLY(live_workers(f, "sleep") == 1, TL_WAIT_MS);
    json_t *m = listed(f, "sleep");
    ASSERT_STR_CONTAINS(tl_jstr(m, "registered_by"), "worker ");
    /* With a live worker (as /v1/models just read), no note. */
    tl_resp *r = submit(f, "sleep");
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_NULL(tl_resp_header(r, "Fleet-No-Worker"));
    ASSERT_NULL(json_object_get(r->json, "no_worker"));

    tl_proc_kill9(w);
    /* Its heartbeat hash lives 30 s after the last heartbeat; expire it now, as Redis would
     * then, rather than wait. */
    redisReply *names = tl_redis_cmd(f->rc, "ZRANGE {%s}:workers 0 -1", f->prefix);
    ASSERT_EQ_INT(names->elements, 1);
    tl_redis_cmd(f->rc, "PEXPIRE {%s}:worker:%s 1", f->prefix, names->element[0]->str);
    ASSERT_EVENTUALLY(live_workers(f, "sleep") == 0, TL_WAIT_MS);
    m = listed(f, "sleep");
    ASSERT_TRUE(json_is_true(json_object_get(m, "registered")));
    ASSERT_TRUE(json_is_true(json_object_get(m, "accepts_jobs")));
    ASSERT_TRUE(registered(f, "sleep"));

    /* Scale from zero: the job is accepted with the note, and runs once a worker starts. */
    r = submit(f, "sleep");
    assert_no_worker_note(r, "sleep");
    const char *id = tl_jstr(r->json, "id");
    tl_fleet_add_worker(f, "sleep");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
}

TL_TEST(allowlist_refuses_registered_models_outside_it) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=echo"}});
    tl_cmd_result a = fleetctl(f, ARGS("model", "add", "llm"));
    tl_expect_exit(&a, 0);
    /* Once the gateway has read the records (GET /v1/models reads them), llm is listed as
     * registered but not accepted. */
    ASSERT_EVENTUALLY(listed(f, "llm") != NULL, TL_WAIT_MS);
    json_t *m = listed(f, "llm");
    ASSERT_TRUE(json_is_true(json_object_get(m, "registered")));
    ASSERT_FALSE(json_is_true(json_object_get(m, "accepts_jobs")));
    const char *detail = ASSERT_PROBLEM(submit(f, "llm"), 422);
    ASSERT_STR_CONTAINS(detail, "model 'llm' is not served here; models: echo");
    ASSERT_EQ_INT(tl_stat(f, "llm", "submitted"), 0);

    /* An allowlisted model is accepted although nothing registered it and no worker runs. */
    m = listed(f, "echo");
    ASSERT_TRUE(json_is_true(json_object_get(m, "accepts_jobs")));
    ASSERT_FALSE(json_is_true(json_object_get(m, "registered")));
    assert_no_worker_note(submit(f, "echo"), "echo");
}

TL_TEST(remove_refuses_while_jobs_wait_unless_forced) {
    tl_fleet *f = start_unlisted();
    tl_cmd_result a = fleetctl(f, ARGS("model", "add", "llm"));
    tl_expect_exit(&a, 0);
    ASSERT_EVENTUALLY(is_accepted(f, "llm"), TL_WAIT_MS);   /* one job queued */
    const char *id = tl_jstr(submit(f, "llm")->json, "id"); /* and a second */

    tl_cmd_result ls = fleetctl(f, ARGS("--json", "model", "list"));
    tl_expect_exit(&ls, 0);
    json_t *list = tl_json(ls.out);
    ASSERT_EQ_INT(json_array_size(list), 1);
    ASSERT_EQ_STR(tl_jstr(json_array_get(list, 0), "name"), "llm");
    ASSERT_EQ_INT(tl_jint(json_array_get(list, 0), "queued"), 2);
    ASSERT_EQ_INT(tl_jint(json_array_get(list, 0), "workers"), 0);

    /* Jobs are queued: refused, and nothing changed. */
    tl_cmd_result rm = fleetctl(f, ARGS("model", "remove", "llm"));
    tl_expect_exit(&rm, 1);
    ASSERT_STR_CONTAINS(rm.err, "2 queued");
    ASSERT_STR_CONTAINS(rm.err, "--force");
    ASSERT_TRUE(registered(f, "llm"));
    ASSERT_HTTP_STATUS(submit(f, "llm"), 202);

    /* --force removes it: the gateway refuses new jobs for it; the queued ones stay. */
    tl_cmd_result forced = fleetctl(f, ARGS("model", "remove", "llm", "--force"));
    tl_expect_exit(&forced, 0);
    ASSERT_STR_CONTAINS(forced.out, "removed model llm");
    ASSERT_FALSE(registered(f, "llm"));
    ASSERT_EVENTUALLY(submit(f, "llm")->status == 422, TL_WAIT_MS);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");
    ASSERT_NULL(listed(f, "llm"));

    /* Without jobs, no --force is needed; an unknown model is an error. */
    tl_cmd_result b = fleetctl(f, ARGS("model", "add", "idle"));
    tl_expect_exit(&b, 0);
    tl_cmd_result rb = fleetctl(f, ARGS("model", "remove", "idle"));
    tl_expect_exit(&rb, 0);
    ASSERT_FALSE(registered(f, "idle"));
    tl_cmd_result unknown = fleetctl(f, ARGS("model", "remove", "idle"));
    tl_expect_exit(&unknown, 1);
    ASSERT_STR_CONTAINS(unknown.err, "no model idle is registered");
    /* Bad arguments are refused before Redis is touched. */
    tl_cmd_result bad = fleetctl(f, ARGS("model", "add", "Not-A-Name"));
    tl_expect_exit(&bad, 2);
    tl_cmd_result misplaced = fleetctl(f, ARGS("model", "add", "x", "--force"));
    tl_expect_exit(&misplaced, 2);
    ASSERT_FALSE(registered(f, "x"));
}

TL_TEST(models_of_live_workers_that_registered_nothing_are_accepted) {
    /* A worker of the previous release registers no record, only its heartbeat hash: a
     * gateway of this release still accepts its model while it lives (docs/protocol.md). */
    tl_fleet *f = start_unlisted();
    const char *tag = tl_printf("{%s}", f->prefix);
    tl_redis_cmd(f->rc, "ZADD %s:workers 1 old-1", tag);
    tl_redis_cmd(f->rc,
                 "HSET %s:worker:old-1 model legacy backend cpu max_batch 8 busy 0 protocol 4",
                 tag);
    tl_redis_cmd(f->rc, "EXPIRE %s:worker:old-1 30", tag);
    ASSERT_EVENTUALLY(live_workers(f, "legacy") == 1, TL_WAIT_MS);
    json_t *m = listed(f, "legacy");
    ASSERT_FALSE(json_is_true(json_object_get(m, "registered")));
    ASSERT_TRUE(json_is_true(json_object_get(m, "accepts_jobs")));
    tl_resp *r = submit(f, "legacy");
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_NULL(tl_resp_header(r, "Fleet-No-Worker"));
    ASSERT_FALSE(registered(f, "legacy"));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(gateway_accepts_a_model_once_fleetctl_adds_it),
        TL_CASE(a_workers_registration_outlives_it_and_jobs_queue_until_one_starts),
        TL_CASE(allowlist_refuses_registered_models_outside_it),
        TL_CASE(remove_refuses_while_jobs_wait_unless_forced),
        TL_CASE(models_of_live_workers_that_registered_nothing_are_accepted),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
