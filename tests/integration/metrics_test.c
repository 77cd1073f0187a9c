/* metrics_test.c: GET /metrics (docs/metrics.md): the queue depth counts every place a job
 * waits (stream, wait lists, delayed retries), the oldest age looks at the front of each,
 * the job counters, the histograms workers report through Redis (also across a full
 * Redis), workers busy and idle, the per-process HTTP and webhook series, the same
 * fleet-wide series from two gateways, Redis down, no key needed and no tenant or secret
 * shown, and promtool's check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"

/* A gateway that accepts echo and sleep whatever models are registered, with a fair-share ready
 * target of 2: a third queued job waits on its tenant's wait list. */
#define GW_ENV "FLEET_MODELS=echo,sleep", "FLEET_READY_TARGET=2"

static tl_resp *scrape_url(const char *base) {
    tl_resp *r = tl_http(&(tl_req){.url = tl_printf("%s/metrics", base)});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->content_type, "text/plain; version=0.0.4");
    return r;
}

static const char *scrape(tl_fleet *f) { return scrape_url(f->url)->body; }

/* The value of the sample whose name and labels are exactly series ("a{b=\"c\"}"), or NAN
 * when the text has none. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return NAN;
}

/* The sample of family name for model (and further labels, "" for none). */
static double model_sample(tl_fleet *f, const char *model, const char *name, const char *labels) {
    return sample(scrape(f),
                  tl_printf("%s{model=\"%s\"%s%s}", name, model, *labels ? "," : "", labels));
}

/* Redis' clock in ms. */
static long long redis_ms(tl_fleet *f) {
    redisReply *t = tl_redis_cmd(f->rc, "TIME");
    return atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
}

/* ------------------------------------------------------------ the queue ------------- */

TL_TEST(queue_depth_counts_stream_wait_lists_and_delayed_retries) {
    /* Retries wait ten minutes: they stay in the delayed set for the whole case. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {GW_ENV},
                                                  .worker_env = {"FLEET_RETRY_BASE_MS=600000",
                                                                 "FLEET_RETRY_MAX_MS=600000",
                                                                 "FLEET_READY_TARGET=2"}});
    const char *retry_input = "{\"ms\": 1, \"fail\": \"GPU busy\", \"retryable\": true}";
    const char *retried = tl_job_submit(f, "sleep", retry_input);
    tl_job_submit(f, "sleep", retry_input);
    tl_proc *w = tl_fleet_add_worker(f, "sleep");
    ASSERT_EVENTUALLY(tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix) == 2, TL_WAIT_MS);
    tl_proc_stop(w, 10000);

    /* With no worker, two jobs go onto the stream (the ready target), three wait. */
    const char *ids[5];
    for (int i = 0; i < 5; i++) ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    const char *first = ids[0];
    long long on_stream = tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix);
    redisReply *stems = tl_redis_cmd(f->rc, "LRANGE {%s}:waiting:sleep 0 -1", f->prefix);
    long long waiting = 0;
    for (size_t i = 0; i < stems->elements; i++)
        for (int rank = 0; rank < 3; rank++)
            waiting += tl_redis_int(f->rc, "LLEN %s%d", stems->element[i]->str, rank);
    long long delayed = tl_redis_int(f->rc, "ZCARD {%s}:delayed:sleep", f->prefix);
    ASSERT_EQ_INT(on_stream, 2);
    ASSERT_EQ_INT(waiting, 3);
    ASSERT_EQ_INT(delayed, 2);

    long long before = redis_ms(f);
    const char *text = scrape(f);
    long long after = redis_ms(f);
    ASSERT_EQ_INT(sample(text, "fleet_queue_depth{model=\"sleep\"}"), 7);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_running{model=\"sleep\"}"), 0);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_submitted_total{model=\"sleep\"}"), 7);
    ASSERT_EQ_INT(sample(text, "fleet_job_events_total{model=\"sleep\",event=\"retried\"}"), 2);

    /* The oldest waiting job is the first of the five: the two older ones wait for a retry
     * that is not due and are left out. Its age is read between two looks at the clock. */
    long long created =
        atoll(tl_redis_cmd(f->rc, "HGET {%s}:job:%s created_ms", f->prefix, first)->str);
    double age = sample(text, "fleet_queue_oldest_age_seconds{model=\"sleep\"}");
    ASSERT_FALSE(isnan(age));
    ASSERT_GE_INT((long long)llround(age * 1000), before - created);
    ASSERT_LE_INT((long long)llround(age * 1000), after - created);

    /* With the two jobs on the stream cancelled, the oldest waits at the head of the wait
     * list. */
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[0])), 200);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", ids[1])), 200);
    created = atoll(tl_redis_cmd(f->rc, "HGET {%s}:job:%s created_ms", f->prefix, ids[2])->str);
    before = redis_ms(f);
    text = scrape(f);
    after = redis_ms(f);
    ASSERT_EQ_INT(sample(text, "fleet_queue_depth{model=\"sleep\"}"), 5);
    age = sample(text, "fleet_queue_oldest_age_seconds{model=\"sleep\"}");
    ASSERT_GE_INT((long long)llround(age * 1000), before - created);
    ASSERT_LE_INT((long long)llround(age * 1000), after - created);

    /* A retry whose time has come waits for a worker too (none runs to move it back onto
     * the stream): it is now the oldest waiting job. */
    tl_redis_cmd(f->rc, "ZADD {%s}:delayed:sleep XX 1 %s", f->prefix, retried);
    created = atoll(tl_redis_cmd(f->rc, "HGET {%s}:job:%s created_ms", f->prefix, retried)->str);
    before = redis_ms(f);
    text = scrape(f);
    after = redis_ms(f);
    age = sample(text, "fleet_queue_oldest_age_seconds{model=\"sleep\"}");
    ASSERT_GE_INT((long long)llround(age * 1000), before - created);
    ASSERT_LE_INT((long long)llround(age * 1000), after - created);
    ASSERT_EQ_INT(sample(text, "fleet_queue_depth{model=\"sleep\"}"), 5);

    /* The worker is gone: no live worker of sleep. */
    ASSERT_EQ_INT(model_sample(f, "sleep", "fleet_workers", "state=\"idle\"") +
                      model_sample(f, "sleep", "fleet_workers", "state=\"busy\""),
                  0);
}

TL_TEST(queue_depth_and_age_fall_to_zero_once_drained) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {GW_ENV}});
    const char *ids[4];
    for (int i = 0; i < 4; i++) ids[i] = tl_job_submit(f, "echo", "{}");
    ASSERT_EQ_INT(model_sample(f, "echo", "fleet_queue_depth", ""), 4);
    ASSERT_TRUE(model_sample(f, "echo", "fleet_queue_oldest_age_seconds", "") >= 0);
    tl_fleet_add_worker(f, "echo");
    for (int i = 0; i < 4; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(model_sample(f, "echo", "fleet_queue_depth", ""), 0);
    ASSERT_EQ_INT(model_sample(f, "echo", "fleet_queue_oldest_age_seconds", ""), 0);
}

/* ------------------------------------------------------------ counters, histograms -- */

TL_TEST(counters_histograms_and_workers_after_jobs_run) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}, .gateway_env = {GW_ENV}});
    /* Nothing ran yet: no histogram samples. */
    ASSERT_TRUE(isnan(model_sample(f, "sleep", "fleet_job_run_seconds_count", "")));

    const char *ids[6];
    for (int i = 0; i < 5; i++) ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    ids[5] = tl_job_submit(f, "sleep", "{\"ms\": 1, \"fail\": \"bad input\"}");
    for (int i = 0; i < 5; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, ids[5], "failed", TL_WAIT_MS);

    const char *text = scrape(f);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_submitted_total{model=\"sleep\"}"), 6);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_finished_total{model=\"sleep\",status=\"succeeded\"}"),
                  5);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_finished_total{model=\"sleep\",status=\"failed\"}"), 1);
    ASSERT_EQ_INT(sample(text, "fleet_jobs_finished_total{model=\"sleep\",status=\"cancelled\"}"),
                  0);
    ASSERT_EQ_INT(sample(text, "fleet_queue_depth{model=\"sleep\"}"), 0);

    /* The worker reports its histograms within a few seconds (WK_METRICS_FLUSH_MS). */
    ASSERT_EVENTUALLY(model_sample(f, "sleep", "fleet_job_run_seconds_count", "") == 6, TL_WAIT_MS);
    text = scrape(f);
    ASSERT_EQ_INT(sample(text, "fleet_job_run_seconds_bucket{model=\"sleep\",le=\"+Inf\"}"), 6);
    ASSERT_EQ_INT(sample(text, "fleet_job_wait_seconds_count{model=\"sleep\"}"), 6);
    ASSERT_EQ_INT(sample(text, "fleet_job_wait_seconds_bucket{model=\"sleep\",le=\"+Inf\"}"), 6);
    ASSERT_EQ_INT(sample(text, "fleet_batch_size_sum{model=\"sleep\"}"), 6);
    double batches = sample(text, "fleet_batch_size_count{model=\"sleep\"}");
    ASSERT_TRUE(batches >= 1 && batches <= 6);
    /* Buckets are cumulative and end with +Inf, which holds every observation. */
    double below = 0;
    for (const char *p = text; (p = strstr(p, "fleet_job_run_seconds_bucket{model=\"sleep\",le="));
         p++) {
        double v = strtod(strchr(p, '}') + 2, NULL);
        ASSERT_TRUE(v >= below);
        below = v;
    }
    ASSERT_EQ_INT(below, 6);
    /* The key has a TTL, renewed by each report. */
    ASSERT_GT_INT(tl_redis_int(f->rc, "TTL {%s}:metrics:sleep", f->prefix), 0);

    /* One live worker, idle between jobs. */
    ASSERT_EVENTUALLY(model_sample(f, "sleep", "fleet_workers", "state=\"idle\"") == 1 &&
                          model_sample(f, "sleep", "fleet_workers", "state=\"busy\"") == 0,
                      TL_WAIT_MS);

    /* More jobs add to the same histogram. */
    const char *more = tl_job_submit(f, "sleep", "{\"ms\": 1}");
    tl_job_wait_status(f, more, "succeeded", TL_WAIT_MS);
    ASSERT_EVENTUALLY(model_sample(f, "sleep", "fleet_job_run_seconds_count", "") == 7, TL_WAIT_MS);
}

/* How many EXECs Redis refused (the worker's metrics reports are its only transactions). */
static long long refused_execs(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_exec:");
    const char *q = p ? strstr(p, "failed_calls=") : NULL;
    return q ? atoll(q + strlen("failed_calls=")) : 0;
}

TL_TEST(a_report_refused_by_a_full_redis_is_sent_later) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}, .gateway_env = {GW_ENV}});
    const char *ids[3];
    for (int i = 0; i < 3; i++) ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 1500}");
    for (int i = 0; i < 3; i++) tl_job_wait_status(f, ids[i], "running", TL_WAIT_MS);
    /* Full while the batch runs: its finish and the worker's report are refused. */
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 1");
    ASSERT_EVENTUALLY(refused_execs(f) >= 1, TL_WAIT_MS);
    tl_redis_cmd(f->rc, "CONFIG SET maxmemory 0");
    for (int i = 0; i < 3; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    /* The counts were kept and sent once Redis had room: each job counted once. */
    ASSERT_EVENTUALLY(model_sample(f, "sleep", "fleet_job_run_seconds_count", "") == 3, TL_WAIT_MS);
    const char *text = scrape(f);
    ASSERT_EQ_INT(sample(text, "fleet_job_wait_seconds_count{model=\"sleep\"}"), 3);
    ASSERT_EQ_INT(sample(text, "fleet_batch_size_sum{model=\"sleep\"}"), 3);
}

TL_TEST(a_busy_worker_counts_as_busy) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=sleep"}});
    tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 60}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    ASSERT_EVENTUALLY(sample(scrape(f), "fleet_workers{model=\"sleep\",state=\"busy\"}") == 1,
                      TL_WAIT_MS);
    ASSERT_EQ_INT(sample(scrape(f), "fleet_jobs_running{model=\"sleep\"}"), 1);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 202);
    tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
}

/* ------------------------------------------------------------ replicas -------------- */

/* The lines of the fleet-wide families, sorted into one string. */
static const char *fleet_wide(const char *text) {
    static const char *const per_process[] = {"fleet_http_", "fleet_webhook_",
                                              "fleet_gateway_build_info", "fleet_redis_up"};
    size_t n = 0, cap = 256;
    char **lines = tl_alloc(cap * sizeof *lines);
    char *copy = tl_printf("%s", text), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        bool skip = false;
        for (size_t i = 0; i < 4; i++)
            if (strstr(l, per_process[i])) skip = true;
        if (skip) continue;
        if (n == cap) FAILF("more than %zu fleet-wide lines", cap);
        lines[n++] = l;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *t = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = t;
        }
    char *out = tl_printf("%s", "");
    for (size_t i = 0; i < n; i++) out = tl_printf("%s%s\n", out, lines[i]);
    return out;
}

TL_TEST(two_gateways_give_the_same_fleet_wide_series) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}, .gateway_env = {GW_ENV}});
    for (int i = 0; i < 3; i++) {
        const char *id = tl_job_submit(f, "echo", "{}");
        tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    }
    ASSERT_EVENTUALLY(model_sample(f, "echo", "fleet_job_run_seconds_count", "") == 3, TL_WAIT_MS);
    const char *first = tl_printf("%s", f->url);
    tl_fleet_start_gateway(f);
    ASSERT_NE_STR(first, f->url);
    /* Requests to the first gateway only: its per-process counters differ from the
     * second's, and the fleet-wide lines must not. */
    const char *a = fleet_wide(scrape_url(first)->body);
    const char *b = fleet_wide(scrape_url(f->url)->body);
    ASSERT_STR_CONTAINS(a, "fleet_jobs_submitted_total{model=\"echo\"} 3");
    ASSERT_STR_CONTAINS(a, "fleet_job_run_seconds_count{model=\"echo\"} 3");
    ASSERT_EQ_STR(a, b);
    ASSERT_NE_STR(scrape_url(first)->body, scrape_url(f->url)->body);
}

/* ------------------------------------------------------------ per process ----------- */

TL_TEST(http_requests_counted_by_route_template) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}, .gateway_env = {GW_ENV}});
    const char *id = tl_job_submit(f, "echo", "{}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    const char *before = scrape(f);
    double gets = sample(before, "fleet_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\","
                                 "code=\"200\"}");
    ASSERT_TRUE(gets >= 1);
    ASSERT_EQ_INT(sample(before, "fleet_http_requests_total{route=\"/v1/jobs\",method=\"POST\","
                                 "code=\"202\"}"),
                  1);

    for (int i = 0; i < 3; i++) tl_job_get(f, id);
    ASSERT_HTTP_STATUS(tl_get(f, tl_printf("/v1/jobs/%s/result", id)), 200);
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E"), 404);
    ASSERT_HTTP_STATUS(tl_get(f, "/no/such/route/raw-path-123"), 404);

    const char *text = scrape(f);
    ASSERT_EQ_INT(sample(text, "fleet_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\","
                               "code=\"200\"}"),
                  gets + 3);
    ASSERT_EQ_INT(sample(text, "fleet_http_requests_total{route=\"/v1/jobs/{id}/result\","
                               "method=\"GET\",code=\"200\"}"),
                  1);
    ASSERT_EQ_INT(sample(text, "fleet_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\","
                               "code=\"404\"}"),
                  1);
    ASSERT_EQ_INT(sample(text, "fleet_http_requests_total{route=\"other\",method=\"GET\","
                               "code=\"404\"}"),
                  1);
    /* The scrape before this one is counted once it was answered. */
    ASSERT_TRUE(sample(text, "fleet_http_requests_total{route=\"/metrics\",method=\"GET\","
                             "code=\"200\"}") >= 1);
    ASSERT_EQ_INT(sample(text, "fleet_http_request_duration_seconds_count{route=\"/v1/jobs/{id}\","
                               "method=\"GET\"}"),
                  gets + 4);
    /* No raw path or job id in any label. */
    ASSERT_NULL(strstr(text, id));
    ASSERT_NULL(strstr(text, "01JDQ7ZK5W3V8X9Y0A1B2C3D4E"));
    ASSERT_NULL(strstr(text, "raw-path-123"));
    ASSERT_EQ_INT(sample(text, "fleet_redis_up"), 1);
    ASSERT_STR_CONTAINS(text, "fleet_gateway_build_info{version=\"");
}

TL_TEST(webhook_deliveries_counted_by_outcome) {
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 503, NULL, 0); /* the first attempt fails, the second lands */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"},
        .gateway_env = {GW_ENV, "FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "FLEET_WEBHOOK_ALLOW=127.0.0.1/32", "FLEET_WEBHOOK_SCHEDULE=0,0.2,0.2"}});
    tl_resp *r = tl_post(f, "/v1/jobs",
                         tl_printf("{\"model\":\"echo\",\"input\":{},\"webhook\":\"%s\"}",
                                   tl_receiver_url(rx, "/hook")));
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_TRUE(tl_receiver_wait_count(rx, 2, TL_WAIT_MS));
    ASSERT_EVENTUALLY(sample(scrape(f), "fleet_webhook_deliveries_total{outcome=\"delivered\"}") ==
                          1,
                      TL_WAIT_MS);
    const char *text = scrape(f);
    ASSERT_EQ_INT(sample(text, "fleet_webhook_deliveries_total{outcome=\"retry\"}"), 1);
    ASSERT_EQ_INT(sample(text, "fleet_webhook_deliveries_total{outcome=\"failed\"}"), 0);
}

TL_TEST(redis_down_leaves_the_process_series) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {GW_ENV}});
    tl_job_submit(f, "echo", "{}");
    ASSERT_EQ_INT(sample(scrape(f), "fleet_redis_up"), 1);
    tl_redis_stop(f->redis);
    ASSERT_EVENTUALLY(sample(scrape(f), "fleet_redis_up") == 0, TL_WAIT_MS);
    const char *text = scrape(f);
    ASSERT_TRUE(isnan(sample(text, "fleet_queue_depth{model=\"echo\"}")));
    ASSERT_EQ_INT(sample(text, "fleet_http_requests_total{route=\"/v1/jobs\",method=\"POST\","
                               "code=\"202\"}"),
                  1);
}

TL_TEST(no_key_needed_and_no_tenant_or_secret_shown) {
    tl_receiver *rx = tl_receiver_start(0);
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"},
        .gateway_env = {GW_ENV, "FLEET_AUTH=on",
                        "FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"}});
    tl_cmd_result r = tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix),
                                  TL_ARGS("tenant", "add", "acme-private-tenant"));
    tl_expect_exit(&r, 0);
    const char *k = strstr(r.out, "fk_");
    ASSERT_NOT_NULL(k);
    const char *key = tl_printf("%.*s", (int)strcspn(k, " \r\n"), k);
    tl_req req = {.method = "POST",
                  .body = tl_printf("{\"model\":\"echo\",\"input\":{},\"webhook\":\"%s\"}",
                                    tl_receiver_url(rx, "/hook"))};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    ASSERT_HTTP_STATUS(tl_request(f, "/v1/jobs", req), 202);
    ASSERT_TRUE(tl_receiver_wait_count(rx, 1, TL_WAIT_MS));
    /* The API wants a key; /metrics does not, and shows the job counted. */
    ASSERT_HTTP_STATUS(tl_get(f, "/v1/stats"), 401);
    ASSERT_EVENTUALLY(model_sample(f, "echo", "fleet_jobs_finished_total",
                                   "status=\"succeeded\"") == 1,
                      TL_WAIT_MS);
    const char *text = scrape(f);
    ASSERT_NULL(strstr(text, "acme"));
    ASSERT_NULL(strstr(text, "fk_"));
    ASSERT_NULL(strstr(text, "whsec_"));
    ASSERT_NULL(strstr(text, "tenant=\""));
    ASSERT_NULL(strstr(text, "127.0.0.1"));
}

/* ------------------------------------------------------------ promtool -------------- */

static bool on_path(const char *name) {
    const char *path = getenv("PATH");
    char *copy = tl_printf("%s", path ? path : "/usr/bin:/bin"), *save = NULL;
    struct stat st;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
        if (stat(tl_printf("%s/%s", d, name), &st) == 0) return true;
    return false;
}

TL_TEST(promtool_accepts_the_text) {
    if (!on_path("promtool")) {
        /* tests/run.sh installs it (deploy/install-deps.sh): under CI its absence fails. */
        if (getenv("CI")) FAILF("promtool is not installed (tests/run.sh installs it)");
        TL_SKIP("promtool is not installed: apt-get install prometheus, or run tests/run.sh");
    }
    tl_receiver *rx = tl_receiver_start(0);
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"},
        .gateway_env = {GW_ENV, "FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"}});
    /* Every family with samples: jobs that ran, one waiting, requests, a webhook. */
    ASSERT_HTTP_STATUS(tl_post(f, "/v1/jobs",
                               tl_printf("{\"model\":\"echo\",\"input\":{},\"webhook\":\"%s\"}",
                                         tl_receiver_url(rx, "/hook"))),
                       202);
    ASSERT_TRUE(tl_receiver_wait_count(rx, 1, TL_WAIT_MS));
    ASSERT_EVENTUALLY(model_sample(f, "echo", "fleet_job_run_seconds_count", "") == 1, TL_WAIT_MS);
    ASSERT_HTTP_STATUS(tl_get(f, "/nope"), 404);
    const char *path = tl_printf("%s/metrics.txt", tl_tmpdir());
    FILE *out = fopen(path, "w");
    ASSERT_NOT_NULL(out);
    fputs(scrape(f), out);
    fclose(out);
    tl_cmd_result r = tl_run_cmd("promtool", "/bin/sh",
                                 TL_ARGS("sh", "-c",
                                         tl_printf("promtool check metrics < %s", path)),
                                 NULL, 30000);
    if (r.exit_code != 0 || *r.out || *r.err)
        FAILF("promtool check metrics: exit %d\nstdout: %s\nstderr: %s", r.exit_code, r.out, r.err);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(queue_depth_counts_stream_wait_lists_and_delayed_retries),
        TL_CASE(queue_depth_and_age_fall_to_zero_once_drained),
        TL_CASE(counters_histograms_and_workers_after_jobs_run),
        TL_CASE(a_report_refused_by_a_full_redis_is_sent_later),
        TL_CASE(a_busy_worker_counts_as_busy),
        TL_CASE(two_gateways_give_the_same_fleet_wide_series),
        TL_CASE(http_requests_counted_by_route_template),
        TL_CASE(webhook_deliveries_counted_by_outcome),
        TL_CASE(redis_down_leaves_the_process_series),
        TL_CASE(no_key_needed_and_no_tenant_or_secret_shown),
        TL_CASE(promtool_accepts_the_text),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
