/* model_actions_test.c: an operator steers a model's queue (docs/api.md, "Steering a
 * model"): POST /v1/models/{model}/purge cancels every queued job of the model wherever it
 * waits (stream, wait lists, delayed set), leaves running jobs and other models alone and
 * keeps the counters exact; /pause keeps jobs queued with no worker taking one (the
 * stream's entries a worker reads meanwhile stay unclaimed, the wait lists are not fed)
 * and /v1/models shows it; /resume runs them. Admin keys only. Against a live gateway,
 * Redis and workers. */
#include <string.h>

#include "testlib.h"

static const char *const states[] = {"queued", "running",   "succeeded",
                                     "failed", "cancelled", "expired"};

static void assert_counters_balance(tl_fleet *f, const char *model) {
    long long sum = 0;
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) sum += tl_stat(f, model, states[i]);
    ASSERT_EQ_INT(sum, tl_stat(f, model, "submitted"));
}

static tl_resp *post(tl_fleet *f, const char *path) {
    return tl_request(f, path, (tl_req){.method = "POST", .body = "", .content_type = ""});
}

/* n echo jobs in batches of at most 1,000 (POST /v1/jobs/batch). */
static void submit_many(tl_fleet *f, const char *model, int n) {
    while (n > 0) {
        int k = n > 1000 ? 1000 : n;
        json_t *jobs = json_array();
        for (int i = 0; i < k; i++)
            json_array_append_new(jobs,
                                  json_pack("{s:s, s:{s:i}}", "model", model, "input", "i", i));
        json_t *body = json_pack("{s:o}", "jobs", jobs);
        tl_resp *r = tl_request(f, "/v1/jobs/batch", (tl_req){.body = tl_json_text(body)});
        json_decref(body);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_INT(tl_jint(r->json, "accepted"), k);
        n -= k;
    }
}

static const char *find_model(tl_fleet *f, const char *name, json_t **out) {
    json_t *models = tl_jget(tl_get(f, "/v1/models")->json, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        json_t *m = json_array_get(models, i);
        if (strcmp(tl_jstr(m, "name"), name) == 0) {
            *out = m;
            return name;
        }
    }
    *out = NULL;
    return NULL;
}

TL_TEST(purge_cancels_every_queued_job_of_the_model) {
    /* Two entries kept ready: most of the queue waits on the tenant's wait lists. Workers
     * of sleep only (one runs the long job, the other fails the retryable one): the echo
     * jobs stay queued. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep", "sleep"},
                                                  .gateway_env = {"FLEET_READY_TARGET=2"},
                                                  .worker_env = {"FLEET_READY_TARGET=2",
                                                                 "FLEET_RETRY_BASE_MS=600000",
                                                                 "FLEET_RETRY_MAX_MS=600000"}});
    submit_many(f, "echo", 1205); /* more than one purge call takes (250) */
    const char *p = f->prefix;
    ASSERT_TRUE(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", p) >= 1);
    ASSERT_TRUE(tl_redis_int(f->rc, "LLEN {%s}:wait:echo:default:1", p) > 1000);
    /* A sleep job that runs, and one that waits in the delayed set for its retry. */
    const char *running = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, running, "running", TL_WAIT_MS);
    const char *delayed = tl_job_submit(
        f, "sleep",
        "{\"ms\": 1, \"fail\": \"GPU busy\", \"retryable\": true, \"fail_attempts\": 1}");
    ASSERT_EVENTUALLY(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", p) == 1, TL_WAIT_MS);

    tl_resp *r = post(f, "/v1/models/echo/purge");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "model"), "echo");
    ASSERT_EQ_INT(tl_jint(r->json, "cancelled"), 1205);
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 0);
    ASSERT_EQ_INT(tl_stat(f, "echo", "cancelled"), 1205);
    assert_counters_balance(f, "echo");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", p), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HLEN {%s}:entries:echo", p), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN {%s}:waiting:echo", p), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:wait:echo:default:1", p), 0);
    json_t *jobs = tl_jget(tl_get(f, "/v1/jobs?status=cancelled&model=echo&limit=1")->json, "jobs");
    ASSERT_STR_CONTAINS(tl_jstr(json_array_get(jobs, 0), "error"),
                        "queue of model echo was purged");
    /* Sleep's queue is another model's: untouched. */
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, delayed), "status"), "queued");

    /* Now sleep: the delayed job ends cancelled, the running one runs on. */
    r = post(f, "/v1/models/sleep/purge");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "cancelled"), 1);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, delayed), "status"), "cancelled");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", p), 0);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, running), "status"), "running");
    ASSERT_EQ_INT(tl_stat(f, "sleep", "running"), 1);
    assert_counters_balance(f, "sleep");
    /* An empty queue: nothing to do. */
    ASSERT_EQ_INT(tl_jint(post(f, "/v1/models/echo/purge")->json, "cancelled"), 0);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", running)), 202);
    tl_job_wait_status(f, running, "cancelled", TL_WAIT_MS);
}

/* Entries of the model's stream that a worker read and has not acknowledged. */
static long long pending(tl_fleet *f, const char *model) {
    redisReply *r = tl_redis_cmd_allow_error(f->rc, "XPENDING {%s}:stream:%s workers", f->prefix,
                                             model);
    return r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                   r->element[0]->type == REDIS_REPLY_INTEGER
               ? r->element[0]->integer
               : 0;
}

TL_TEST(pause_keeps_jobs_queued_and_resume_runs_them) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_READY_TARGET=1"},
                                                  .worker_env = {"FLEET_READY_TARGET=1"}});
    /* The worker registered echo; a first job shows it works. */
    tl_job_wait_status(f, tl_job_submit(f, "echo", "{}"), "succeeded", TL_WAIT_MS);

    tl_resp *r = post(f, "/v1/models/echo/pause");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_TRUE(json_is_true(tl_jget(r->json, "paused")));
    json_t *m;
    ASSERT_NOT_NULL(find_model(f, "echo", &m));
    ASSERT_TRUE(json_is_true(tl_jget(m, "paused")));

    const char *a = tl_job_submit(f, "echo", "{\"n\": 1}"); /* onto the stream */
    const char *b = tl_job_submit(f, "echo", "{\"n\": 2}");
    const char *c = tl_job_submit(f, "echo", "{\"n\": 3}");
    /* The worker reads every entry of the stream (its blocking read returns them) and
     * claims none; what went to the wait list is not fed. Which went where depends on how
     * fast the worker read a (b and c follow a onto the stream once it is read). */
    const char *wait = tl_printf("{%s}:wait:echo:default:1", f->prefix);
    ASSERT_EVENTUALLY(pending(f, "echo") >= 1 &&
                          pending(f, "echo") + tl_redis_int(f->rc, "LLEN %s", wait) == 3,
                      TL_WAIT_MS);
    long long read_while_paused = pending(f, "echo");
    const char *ids[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        json_t *job = tl_job_get(f, ids[i]);
        ASSERT_EQ_STR(tl_jstr(job, "status"), "queued");
        ASSERT_NULL(tl_jget(job, "started_at"));
    }
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 3);
    ASSERT_EQ_INT(tl_stat(f, "echo", "running"), 0);
    /* Pausing again changes nothing. */
    ASSERT_HTTP_STATUS(post(f, "/v1/models/echo/pause"), 200);

    r = post(f, "/v1/models/echo/resume");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_TRUE(json_is_false(tl_jget(r->json, "paused")));
    ASSERT_EQ_INT(tl_jint(r->json, "requeued"), read_while_paused);
    ASSERT_NOT_NULL(find_model(f, "echo", &m));
    ASSERT_TRUE(json_is_false(tl_jget(m, "paused")));
    for (int i = 0; i < 3; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_stat(f, "echo", "succeeded"), 4);
    assert_counters_balance(f, "echo");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix), 0);
}

/* As with job ids: a name that cannot be a model's is 400, a model nobody registered 404. */
TL_TEST(pause_of_an_unknown_model_is_404) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(post(f, "/v1/models/nosuch/pause"), 404), "nosuch");
    tl_resp *bad = post(f, "/v1/models/Bad.Name/pause");
    ASSERT_PROBLEM(bad, 400);
    ASSERT_EQ_STR(tl_jstr(bad->json, "type"), "urn:fleet:problem:invalid-model");
    ASSERT_PROBLEM(tl_get(f, "/v1/models/echo/pause"), 405);
}

/* A tenant key may not steer a model; an admin key may. */
TL_TEST(steering_a_model_needs_an_admin_key) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_AUTH=on"}});
    const char *p = f->prefix;
    const char *keys[2] = {"fk_tenant_key_1", "fk_admin_key_1"};
    const char *roles[2] = {"tenant", "admin"};
    const char *names[2] = {"acme", "ops"};
    for (int i = 0; i < 2; i++) {
        tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", p, names[i]);
        tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", p, names[i], names[i]);
        tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role %s", p, tl_sha256_hex(keys[i]),
                     names[i], roles[i]);
        tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", p, names[i], tl_sha256_hex(keys[i]));
    }
    tl_resp *s = tl_request(f, "/v1/jobs",
                            (tl_req){.body = "{\"model\": \"echo\", \"input\": {}}",
                                     .headers = {"Authorization: Bearer fk_tenant_key_1"}});
    ASSERT_HTTP_STATUS(s, 202);
    const char *verbs[] = {"pause", "resume", "purge"};
    for (int i = 0; i < 3; i++) {
        tl_resp *r = tl_request(f, tl_printf("/v1/models/echo/%s", verbs[i]),
                                (tl_req){.method = "POST",
                                         .body = "",
                                         .content_type = "",
                                         .headers = {"Authorization: Bearer fk_tenant_key_1"}});
        ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 403), "admin");
    }
    ASSERT_EQ_INT(tl_stat(f, "echo", "queued"), 1);
    ASSERT_PROBLEM(post(f, "/v1/models/echo/purge"), 401); /* no key at all */
    tl_resp *r = tl_request(f, "/v1/models/echo/purge",
                            (tl_req){.method = "POST",
                                     .body = "",
                                     .content_type = "",
                                     .headers = {"Authorization: Bearer fk_admin_key_1"}});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "cancelled"), 1);
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:job:%s status", p, tl_jstr(s->json, "id"))->str,
                  "cancelled");
}

/* fleetctl model pause|resume|purge run the same scripts, straight on Redis. */
TL_TEST(fleetctl_model_pause_resume_purge) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *const *redis = TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix);
    tl_expect_exit((tl_cmd_result[]){tl_fleetctl(redis, TL_ARGS("model", "add", "echo"))}, 0);
    for (int i = 0; i < 3; i++) tl_job_submit(f, "echo", "{}");

    tl_cmd_result r = tl_fleetctl(redis, TL_ARGS("model", "pause", "echo"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "model echo paused");
    json_t *m;
    ASSERT_EVENTUALLY(find_model(f, "echo", &m) && json_is_true(tl_jget(m, "paused")), TL_WAIT_MS);

    r = tl_fleetctl(redis, TL_ARGS("--json", "model", "purge", "echo"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_INT(tl_jint(tl_json(r.out), "cancelled"), 3);
    ASSERT_EQ_INT(tl_stat(f, "echo", "cancelled"), 3);
    assert_counters_balance(f, "echo");

    r = tl_fleetctl(redis, TL_ARGS("model", "resume", "echo"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "model echo resumed");
    ASSERT_EVENTUALLY(find_model(f, "echo", &m) && json_is_false(tl_jget(m, "paused")), TL_WAIT_MS);

    r = tl_fleetctl(redis, TL_ARGS("model", "pause", "nosuch"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "not registered");
    tl_expect_exit((tl_cmd_result[]){tl_fleetctl(redis, TL_ARGS("model", "purge"))}, 2);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(purge_cancels_every_queued_job_of_the_model),
        TL_CASE(pause_keeps_jobs_queued_and_resume_runs_them),
        TL_CASE(pause_of_an_unknown_model_is_404),
        TL_CASE(steering_a_model_needs_an_admin_key),
        TL_CASE(fleetctl_model_pause_resume_purge),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
