/* outputs_test: partial outputs (docs/api.md "Partial outputs", docs/protocol.md "emit"):
 * the sleep model emits one output per step ({"emit": true}), read back in order with
 * GET /v1/jobs/{id}/outputs?after=N and as SSE `output` events before `final`; the
 * worker's per-job limits (count, bytes) refuse an emit with an error the model sees
 * while the job goes on; the outputs list lives as long as the job hash and goes with a
 * delete; an emit under a lost lease is `stale` and writes nothing; job.output webhooks
 * are throttled per job; every malformed query answers 400. */
#include <stdlib.h>
#include <string.h>

#include "fleet/keys.h"
#include "fleet/state.h"
#include "testlib.h"

/* A job of the sleep model that emits {"step": i, "of": steps} at each of its steps. */
static const char *emit_input(long ms, long steps) {
    return tl_printf("{\"ms\":%ld,\"steps\":%ld,\"emit\":true}", ms, steps);
}

static json_t *outputs_page(tl_fleet *f, const char *id, const char *query) {
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/outputs%s", id, query));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_NOT_NULL(r->json);
    return r->json;
}

/* Checks outputs[k] of a page: index first + k, attempt 1, {"step": first + k + 1, "of"}. */
static void check_outputs(const json_t *page, long long first, size_t n, long steps) {
    json_t *list = tl_jget(page, "outputs");
    ASSERT_TRUE(json_is_array(list));
    ASSERT_EQ_INT(json_array_size(list), n);
    for (size_t k = 0; k < n; k++) {
        json_t *o = json_array_get(list, k);
        ASSERT_EQ_INT(tl_jint(o, "index"), first + (long long)k);
        ASSERT_EQ_INT(tl_jint(o, "attempt"), 1);
        ASSERT_EQ_INT(tl_jint(o, "output.step"), first + (long long)k + 1);
        ASSERT_EQ_INT(tl_jint(o, "output.of"), steps);
    }
}

static json_t *job_result(tl_fleet *f, const char *id) {
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_NOT_NULL(r->json);
    return r->json;
}

TL_TEST(outputs_are_read_in_order_in_pages) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", emit_input(300, 5));
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "outputs"), 5);

    json_t *all = outputs_page(f, id, "");
    check_outputs(all, 0, 5, 5);
    ASSERT_EQ_INT(tl_jint(all, "next"), 5);
    ASSERT_EQ_INT(tl_jint(all, "count"), 5);
    ASSERT_EQ_STR(tl_jstr(all, "status"), "succeeded");

    json_t *page = outputs_page(f, id, "?after=2&limit=2");
    check_outputs(page, 2, 2, 5);
    ASSERT_EQ_INT(tl_jint(page, "next"), 4);
    page = outputs_page(f, id, "?after=4&limit=2");
    check_outputs(page, 4, 1, 5);
    ASSERT_EQ_INT(tl_jint(page, "next"), 5);
    page = outputs_page(f, id, "?after=5");
    check_outputs(page, 5, 0, 5);
    ASSERT_EQ_INT(tl_jint(page, "next"), 5);

    json_t *res = job_result(f, id);
    ASSERT_EQ_INT(tl_jint(res, "emitted"), 5);
    ASSERT_EQ_INT(tl_jint(res, "refused"), 0);

    /* A job that emitted nothing has no outputs: an empty page, and no field in the job. */
    const char *plain = tl_job_submit(f, "sleep", "{\"ms\":10}");
    job = tl_job_wait_status(f, plain, "succeeded", TL_WAIT_MS);
    ASSERT_NULL(tl_jget(job, "outputs"));
    page = outputs_page(f, plain, "");
    check_outputs(page, 0, 0, 0);
    ASSERT_EQ_INT(tl_jint(page, "count"), 0);
}

TL_TEST(count_limit_refuses_an_emit_and_the_job_goes_on) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_MAX_OUTPUTS=2"}});
    const char *id = tl_job_submit(f, "sleep", emit_input(200, 4));
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    json_t *res = job_result(f, id);
    ASSERT_EQ_INT(tl_jint(res, "emitted"), 2);
    ASSERT_EQ_INT(tl_jint(res, "refused"), 2);
    ASSERT_STR_CONTAINS(tl_jstr(res, "emit_error"), "FLEET_MAX_OUTPUTS");
    json_t *page = outputs_page(f, id, "");
    check_outputs(page, 0, 2, 4);
    ASSERT_EQ_INT(tl_jint(page, "count"), 2);
}

TL_TEST(byte_limit_refuses_an_emit_and_the_job_goes_on) {
    /* Each output {"step": i, "of": 4} is 27 bytes of msgpack: 60 bytes hold two. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .worker_env = {"FLEET_MAX_OUTPUT_BYTES=60"}});
    const char *id = tl_job_submit(f, "sleep", emit_input(200, 4));
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    json_t *res = job_result(f, id);
    ASSERT_EQ_INT(tl_jint(res, "emitted"), 2);
    ASSERT_EQ_INT(tl_jint(res, "refused"), 2);
    ASSERT_STR_CONTAINS(tl_jstr(res, "emit_error"), "FLEET_MAX_OUTPUT_BYTES");
    check_outputs(outputs_page(f, id, ""), 0, 2, 4);
    long long bytes = 0;
    redisReply *rep = tl_redis_cmd(f->rc, "HGET {%s}:job:%s out_bytes", f->prefix, id);
    ASSERT_TRUE(rep->type == REDIS_REPLY_STRING);
    bytes = atoll(rep->str);
    ASSERT_EQ_INT(bytes, 54);
}

TL_TEST(outputs_live_and_go_with_the_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    tl_resp *r = tl_post(f, "/v1/jobs",
                         tl_printf("{\"model\":\"sleep\",\"input\":%s,\"ttl_s\":600}",
                                   emit_input(100, 3)));
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    /* The list got the job's result TTL when the job ended, as its hash did. */
    long long job_ttl = tl_redis_int(f->rc, "TTL {%s}:job:%s", f->prefix, id);
    long long out_ttl = tl_redis_int(f->rc, "TTL {%s}:job:%s:outputs", f->prefix, id);
    tl_log("job TTL %lld s, outputs TTL %lld s", job_ttl, out_ttl);
    ASSERT_GT_INT(job_ttl, 500);
    ASSERT_LE_INT(job_ttl, 600);
    ASSERT_EQ_INT(out_ttl, job_ttl);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN {%s}:job:%s:outputs", f->prefix, id), 3);

    r = tl_delete(f, tl_printf("/v1/jobs/%s?purge=true", id));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:outputs", f->prefix, id), 0);
    ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs/%s/outputs", id)), 404);
}

/* A worker killed mid-job leaves its outputs; the worker that takes the job over after the
 * lease ends it (out of attempts) and gives them the job's result TTL with its hash. */
TL_TEST(a_lost_workers_outputs_end_with_the_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=1000"}});
    tl_proc *w1 = tl_fleet_add_worker(f, "sleep");
    tl_proc_expect_kill9(w1); /* the crash input kills it with SIGKILL */
    tl_resp *r = tl_post(f, "/v1/jobs",
                         "{\"model\":\"sleep\",\"max_attempts\":1,\"ttl_s\":600,"
                         "\"input\":{\"ms\":100,\"steps\":2,\"emit\":true,\"crash\":true}}");
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    ASSERT_TRUE(tl_proc_wait(w1, TL_WAIT_MS));
    json_t *page = outputs_page(f, id, "");
    ASSERT_EQ_INT(tl_jint(page, "count"), 2);
    ASSERT_EQ_STR(tl_jstr(page, "status"), "running");
    ASSERT_EQ_INT(tl_jint(json_array_get(tl_jget(page, "outputs"), 1), "attempt"), 1);
    /* While running, the list has the job hash's queue TTL (a day by default). */
    ASSERT_GT_INT(tl_redis_int(f->rc, "TTL {%s}:job:%s:outputs", f->prefix, id), 3600);
    tl_fleet_add_worker(f, "sleep");
    tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    long long job_ttl = tl_redis_int(f->rc, "TTL {%s}:job:%s", f->prefix, id);
    ASSERT_LE_INT(job_ttl, 600);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "TTL {%s}:job:%s:outputs", f->prefix, id), job_ttl);
    ASSERT_EQ_INT(tl_jint(outputs_page(f, id, ""), "count"), 2);
}

/* A tenant's storage limit (max_finished) evicts its oldest finished job: its outputs go
 * with it. */
TL_TEST(eviction_takes_the_outputs_too) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"sleep"}, .gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    const char *hex = tl_sha256_hex("key-acme");
    tl_redis_cmd(f->rc, "SADD {%s}:tenants acme", f->prefix);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:acme name acme created_ms 1 max_finished 1", f->prefix);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant acme role user", f->prefix, hex);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:acme:keys %s", f->prefix, hex);
    const char *ids[2];
    for (int i = 0; i < 2; i++) {
        tl_req req = {.method = "POST",
                      .body = tl_printf("{\"model\":\"sleep\",\"input\":%s}", emit_input(50, 2))};
        req.headers[0] = "Authorization: Bearer key-acme";
        tl_resp *r = tl_request(f, "/v1/jobs", req);
        ASSERT_HTTP_STATUS(r, 202);
        ids[i] = tl_jstr(r->json, "id");
        ASSERT_EVENTUALLY(tl_redis_int(f->rc, "LLEN {%s}:kept:acme", f->prefix) == i + 1,
                          TL_WAIT_MS);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN {%s}:job:%s:outputs", f->prefix, ids[i]), 2);
    }
    /* Over max_finished 1: the next submit evicts the older of the two. */
    tl_req req = {.method = "POST", .body = "{\"model\":\"sleep\",\"input\":{\"ms\":1}}"};
    req.headers[0] = "Authorization: Bearer key-acme";
    ASSERT_HTTP_STATUS(tl_request(f, "/v1/jobs", req), 202);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, ids[0]), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:outputs", f->prefix, ids[0]), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN {%s}:job:%s:outputs", f->prefix, ids[1]), 2);
}

TL_TEST(retry_drops_the_earlier_outputs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    /* Fails in its last step: it emitted the two before it. */
    const char *id = tl_job_submit(f, "sleep",
                                   "{\"ms\":100,\"steps\":3,\"emit\":true,\"fail\":\"page 3\"}");
    tl_job_wait_status(f, id, "failed", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(outputs_page(f, id, ""), "count"), 2);
    /* Paused, the model runs nothing: what the retry left is seen before any new run. */
    ASSERT_HTTP_STATUS(tl_post(f, "/v1/models/sleep/pause", ""), 200);
    ASSERT_HTTP_STATUS(tl_post(f, tl_printf("/v1/jobs/%s/retry", id), ""), 202);
    json_t *page = outputs_page(f, id, "");
    ASSERT_EQ_INT(tl_jint(page, "count"), 0);
    ASSERT_EQ_STR(tl_jstr(page, "status"), "queued");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:outputs", f->prefix, id), 0);
}

TL_TEST(sse_sends_every_output_before_final) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", emit_input(1500, 4));
    /* The stream ends with the job: its whole body, however much ran before it opened. */
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/events", id));
    ASSERT_HTTP_STATUS(r, 200);
    const char *body = r->body;
    const char *state = strstr(body, "event: state\n");
    const char *final = strstr(body, "event: final\n");
    ASSERT_NOT_NULL(state);
    ASSERT_NOT_NULL(final);
    const char *at = state;
    for (int k = 0; k < 4; k++) {
        const char *ev = strstr(at, "event: output\n");
        ASSERT_NOT_NULL(ev);
        ASSERT_TRUE(ev < final);
        const char *data = strstr(ev, "data: ");
        ASSERT_NOT_NULL(data);
        const char *eol = strchr(data, '\n');
        json_t *o = tl_json(tl_printf("%.*s", (int)(eol - data - 6), data + 6));
        ASSERT_EQ_INT(tl_jint(o, "index"), k);
        ASSERT_EQ_INT(tl_jint(o, "output.step"), k + 1);
        at = eol;
    }
    ASSERT_NULL(strstr(at, "event: output\n"));

    /* A stream opened after the job ended sends state, every output, then final. */
    r = tl_get(f, tl_printf("/v1/jobs/%s/events", id));
    ASSERT_HTTP_STATUS(r, 200);
    state = strstr(r->body, "event: state\n");
    ASSERT_NOT_NULL(state);
    at = state;
    for (int k = 0; k < 4; k++) {
        at = strstr(at + 1, "event: output\n");
        ASSERT_NOT_NULL(at);
    }
    ASSERT_NOT_NULL(strstr(at, "event: final\n"));
}

TL_TEST(job_output_webhooks_are_throttled) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"sleep"},
        .gateway_env = {"FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"},
        .worker_env = {"FLEET_OUTPUT_WEBHOOK_MS=3600000"}});
    tl_receiver *rx = tl_receiver_start(0);
    tl_resp *r = tl_post(f, "/v1/jobs",
                         tl_printf("{\"model\":\"sleep\",\"input\":%s,\"webhook\":\"%s\","
                                   "\"webhook_events\":[\"output\",\"completed\"]}",
                                   emit_input(200, 4), tl_receiver_url(rx, "/hook")));
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_TRUE(tl_receiver_wait_count(rx, 2, TL_WAIT_MS));
    /* Both deliveries are queued by the time the job succeeded: no third one comes. */
    redisReply *seq = tl_redis_cmd(f->rc, "HGET {%s}:job:%s webhook_seq", f->prefix, id);
    ASSERT_TRUE(seq->type == REDIS_REPLY_STRING);
    ASSERT_EQ_STR(seq->str, "2");
    int outputs = 0, succeeded = 0;
    for (size_t i = 0; i < tl_receiver_count(rx); i++) {
        json_t *b = tl_json(tl_receiver_get(rx, i)->body);
        const char *type = tl_jstr(b, "type");
        if (strcmp(type, "job.output") == 0) {
            outputs++;
            ASSERT_EQ_STR(tl_jstr(b, "data.id"), id);
            ASSERT_GE_INT(tl_jint(b, "data.outputs"), 1);
        } else if (strcmp(type, "job.succeeded") == 0) {
            succeeded++;
            ASSERT_EQ_INT(tl_jint(b, "data.outputs"), 4);
        }
    }
    ASSERT_EQ_INT(outputs, 1);
    ASSERT_EQ_INT(succeeded, 1);
    /* "output" is a kind a submit accepts; another is refused. */
    r = tl_post(f, "/v1/jobs",
                tl_printf("{\"model\":\"sleep\",\"input\":{\"ms\":1},\"webhook\":\"%s\","
                          "\"webhook_events\":[\"outputs\"]}",
                          tl_receiver_url(rx, "/hook")));
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 422), "output, completed");
}

TL_TEST(emit_under_a_lost_lease_is_stale) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    fleet_keys keys;
    ASSERT_EQ_INT(fleet_keys_init(&keys, f->prefix), 0);
    const char *id = "01JDQ7ZK5W3V8X9Y0A1B2C3D4E";
    /* A running job whose lease another attempt took over (token "new"). */
    tl_redis_cmd(f->rc, "HSET {%s}:job:%s status running lease new attempts 2 tenant t", f->prefix,
                 id);
    tl_redis_cmd(f->rc, "EXPIRE {%s}:job:%s 600", f->prefix, id);
    fleet_emit e = {.id = id,
                    .token = "old",
                    .output = "\x81\xa1p\x01",
                    .output_len = 4,
                    .max_outputs = 10,
                    .max_bytes = 1000,
                    .webhook_throttle_ms = 1000};
    fleet_cmd c;
    fleet_state_emit(&keys, &e, &c);
    fleet_cmd_as_eval(&c);
    redisReply *rep = tl_redis_cmdargv(f->rc, c.argc, c.argv);
    fleet_emitted out;
    ASSERT_EQ_INT(fleet_state_emit_reply(rep, &out), FLEET_EMIT_STALE);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s:outputs", f->prefix, id), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HEXISTS {%s}:job:%s out_n", f->prefix, id), 0);
    /* The holder's emit is stored, with its attempt. */
    e.token = "new";
    fleet_state_emit(&keys, &e, &c);
    fleet_cmd_as_eval(&c);
    rep = tl_redis_cmdargv(f->rc, c.argc, c.argv);
    ASSERT_EQ_INT(fleet_state_emit_reply(rep, &out), FLEET_EMIT_OK);
    ASSERT_EQ_INT(out.index, 0);
    json_t *page = outputs_page(f, id, "");
    ASSERT_EQ_INT(tl_jint(page, "count"), 1);
    json_t *o = json_array_get(tl_jget(page, "outputs"), 0);
    ASSERT_EQ_INT(tl_jint(o, "index"), 0);
    ASSERT_EQ_INT(tl_jint(o, "attempt"), 2);
    ASSERT_EQ_INT(tl_jint(o, "output.p"), 1);
}

/* A plug-in built before ctx->emit (ABI version 1) still loads and runs; one of version 2
 * emits through the same worker. */
TL_TEST(plugins_of_abi_1_and_2_both_run) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=abi1,abi2"}});
    const char *path = tl_bin_path("fleet-worker");
    for (int v = 1; v <= 2; v++) {
        const char *argv[] = {path, "--model-plugin",
                              tl_printf("%s/../lib/libfleet_model_abi%d.so", tl_bin_dir(), v),
                              NULL};
        const char *env[] = {tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
                             tl_printf("FLEET_PREFIX=%s", f->prefix), "FLEET_MAX_DELAY_MS=0", NULL};
        tl_spawn(&(tl_spawn_opts){.name = tl_printf("worker-abi%d", v),
                                  .path = path,
                                  .argv = argv,
                                  .env = env,
                                  .checked = true});
    }
    const char *id1 = tl_job_submit(f, "abi1", "{\"a\": 1}");
    const char *id2 = tl_job_submit(f, "abi2", "{\"a\": 1}");
    tl_job_wait_status(f, id1, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, id2, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job_result(f, id1), "abi"), 1);
    ASSERT_EQ_INT(tl_jint(job_result(f, id2), "abi"), 2);
    ASSERT_EQ_INT(tl_jint(outputs_page(f, id1, ""), "count"), 0);
    json_t *page = outputs_page(f, id2, "");
    ASSERT_EQ_INT(tl_jint(page, "count"), 1);
    /* {"a": 1} is 4 bytes of msgpack. */
    ASSERT_EQ_INT(tl_jint(json_array_get(tl_jget(page, "outputs"), 0), "output.n"), 4);
}

TL_TEST(bad_queries_answer_400) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    const char *id = tl_job_submit(f, "sleep", emit_input(10, 1));
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    static const char *const bad[] = {
        "?after=-1",
        "?after=x",
        "?after=",
        "?after=1.5",
        "?after=%2B1",
        "?limit=0",
        "?limit=101",
        "?limit=abc",
        "?after=1&after=2",
        "?page=1",
        "?after=99999999999999999999",
    };
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        tl_log("query %s", bad[i]);
        tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/outputs%s", id, bad[i]));
        const char *detail = ASSERT_PROBLEM(r, 400);
        tl_log("  %s", detail);
    }
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/not-an-id/outputs"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E/outputs"), 404);
    ASSERT_PROBLEM(tl_post(f, tl_printf("/v1/jobs/%s/outputs", id), "{}"), 405);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(outputs_are_read_in_order_in_pages),
        TL_CASE(count_limit_refuses_an_emit_and_the_job_goes_on),
        TL_CASE(byte_limit_refuses_an_emit_and_the_job_goes_on),
        TL_CASE(outputs_live_and_go_with_the_job),
        TL_CASE(a_lost_workers_outputs_end_with_the_job),
        TL_CASE(eviction_takes_the_outputs_too),
        TL_CASE(retry_drops_the_earlier_outputs),
        TL_CASE(sse_sends_every_output_before_final),
        TL_CASE(job_output_webhooks_are_throttled),
        TL_CASE(emit_under_a_lost_lease_is_stale),
        TL_CASE(plugins_of_abi_1_and_2_both_run),
        TL_CASE(bad_queries_answer_400),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
