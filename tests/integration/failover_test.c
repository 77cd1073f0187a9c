/* failover_test.c: the Redis primary dies and Sentinel promotes a replica (docs/reliability.md,
 * "Failover"). The test starts a primary, two replicas and three sentinels on loopback
 * (testlib: tl_redis_start_replica, tl_sentinels_start), and a fleet whose gateway, workers
 * and fleetctl get FLEET_REDIS_SENTINELS and FLEET_REDIS_SENTINEL_MASTER (the gateway also
 * FLEET_REDIS_WAIT_REPLICAS=1). Two replicas, so that the promoted one has a replica of its
 * own to acknowledge WAIT 1 after the failover.
 *
 * While sleep jobs run and a stream of submits goes on over several connections, the
 * primary is killed with kill -9. Asserted: every submit answered 2xx reaches succeeded on
 * the new primary; submits are answered 2xx again after the failover; every refusal in
 * between is 503 with Retry-After (no other 5xx, and no request without an answer within
 * its client timeout); fleetctl finds the jobs on the new primary through the sentinels.
 * The figures (refusals, seconds to promotion, seconds from the kill to the next 2xx) are
 * printed, for docs/reliability.md.
 *
 * The stream runs on a thread of its own with libcurl's multi interface and its own
 * memory: harness functions are not thread-safe. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define MASTER "fleetprimary"
#define CLIENT_TIMEOUT_MS 10000 /* a submit without an answer by then "hangs" */
#define STREAM_CONNS 4          /* requests in flight at once */
#define STREAM_PACE_MS 40       /* each connection's pause between two submits */

/* ------------------------------------------------------------ the submit stream ----- */

typedef struct submit_rec {
    int64_t sent_ms, done_ms; /* tl_now_ms() (CLOCK_MONOTONIC, as the thread reads it) */
    long status;              /* 0: no answer (transport error or client timeout) */
    bool retry_after;         /* the answer had a Retry-After header */
    char id[32];              /* the job id of a 2xx */
    char type[80];            /* the problem type of a refusal */
    char err[120];            /* curl's error when status is 0 */
} submit_rec;

typedef struct slot {
    CURL *h;
    struct curl_slist *hdrs;
    char body[128];
    char *resp; /* the response body (malloc) */
    size_t resp_len;
    bool retry_after;
    bool busy;
    int64_t sent_ms, next_ms;
} slot;

typedef struct stream {
    pthread_t th;
    bool started, joined;
    char url[96];
    atomic_bool stop;
    atomic_int failed; /* the thread could not run (curl setup) */
    pthread_mutex_t mu;
    submit_rec *v; /* malloc'd, guarded by mu */
    size_t n, cap;
    unsigned seq;
} stream;

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    slot *s = ud;
    size_t len = size * n;
    char *nb = realloc(s->resp, s->resp_len + len + 1);
    if (!nb) return 0;
    memcpy(nb + s->resp_len, p, len);
    s->resp = nb;
    s->resp_len += len;
    s->resp[s->resp_len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    slot *s = ud;
    size_t len = size * n;
    if (len >= 12 && strncasecmp(p, "Retry-After:", 12) == 0) s->retry_after = true;
    return len;
}

static void slot_send(stream *st, CURLM *m, slot *s) {
    free(s->resp);
    s->resp = NULL;
    s->resp_len = 0;
    s->retry_after = false;
    snprintf(s->body, sizeof s->body, "{\"model\":\"echo\",\"input\":{\"n\":%u}}", ++st->seq);
    CURL *h = s->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, st->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(h, CURLOPT_PRIVATE, s);
    s->sent_ms = mono_ms();
    s->busy = true;
    curl_multi_add_handle(m, h);
}

static void stream_record(stream *st, slot *s, CURLcode rc) {
    submit_rec rec = {.sent_ms = s->sent_ms, .done_ms = mono_ms()};
    if (rc == CURLE_OK) curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &rec.status);
    else snprintf(rec.err, sizeof rec.err, "%s", curl_easy_strerror(rc));
    rec.retry_after = s->retry_after;
    json_t *j = s->resp ? json_loads(s->resp, 0, NULL) : NULL;
    const char *key = rec.status >= 200 && rec.status < 300 ? "id" : "type";
    json_t *v = j ? json_object_get(j, key) : NULL;
    if (json_is_string(v))
        snprintf(rec.status >= 200 && rec.status < 300 ? rec.id : rec.type,
                 rec.status >= 200 && rec.status < 300 ? sizeof rec.id : sizeof rec.type, "%s",
                 json_string_value(v));
    if (j) json_decref(j);
    pthread_mutex_lock(&st->mu);
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        submit_rec *nv = realloc(st->v, cap * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&st->mu);
            atomic_store(&st->failed, 1);
            return;
        }
        st->v = nv;
        st->cap = cap;
    }
    st->v[st->n++] = rec;
    pthread_mutex_unlock(&st->mu);
}

static void *stream_main(void *arg) {
    stream *st = arg;
    CURLM *m = curl_multi_init();
    slot slots[STREAM_CONNS];
    memset(slots, 0, sizeof slots);
    bool ok = m != NULL;
    for (int i = 0; ok && i < STREAM_CONNS; i++) {
        slots[i].h = curl_easy_init();
        slots[i].hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        if (slots[i].hdrs) slots[i].hdrs = curl_slist_append(slots[i].hdrs, "Expect:");
        ok = slots[i].h && slots[i].hdrs;
    }
    if (!ok) atomic_store(&st->failed, 1);
    /* Once stopped, no new submit goes out; those in flight are still answered (or time
     * out), so that every request the stream sent is recorded. */
    for (;;) {
        bool stopping = atomic_load(&st->stop) || !ok;
        int64_t now = mono_ms();
        int busy = 0;
        for (int i = 0; i < STREAM_CONNS; i++) {
            if (!slots[i].busy && !stopping && now >= slots[i].next_ms) slot_send(st, m, &slots[i]);
            busy += slots[i].busy;
        }
        if (stopping && busy == 0) break;
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            slot *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(m, msg->easy_handle);
            stream_record(st, s, rc);
            s->busy = false;
            s->next_ms = mono_ms() + STREAM_PACE_MS;
        }
        curl_multi_poll(m, NULL, 0, 5, NULL);
    }
    for (int i = 0; i < STREAM_CONNS; i++) {
        if (slots[i].h) curl_easy_cleanup(slots[i].h);
        curl_slist_free_all(slots[i].hdrs);
        free(slots[i].resp);
    }
    if (m) curl_multi_cleanup(m);
    return NULL;
}

static void stream_stop(stream *st) {
    if (!st->started || st->joined) return;
    atomic_store(&st->stop, true);
    pthread_join(st->th, NULL);
    st->joined = true;
}

static void stream_free(void *arg) {
    stream *st = arg;
    stream_stop(st);
    pthread_mutex_destroy(&st->mu);
    free(st->v);
}

static stream *stream_start(tl_fleet *f) {
    stream *st = tl_alloc(sizeof *st);
    snprintf(st->url, sizeof st->url, "%s/v1/jobs", f->url);
    pthread_mutex_init(&st->mu, NULL);
    tl_defer(stream_free, st);
    if (pthread_create(&st->th, NULL, stream_main, st) != 0) FAILF("pthread_create failed");
    st->started = true;
    return st;
}

/* How many submits answered 2xx were sent at or after from_ms. */
static size_t stream_ok_since(stream *st, int64_t from_ms) {
    if (atomic_load(&st->failed)) FAILF("the submit stream could not run (curl or memory)");
    size_t k = 0;
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].status >= 200 && st->v[i].status < 300 && st->v[i].sent_ms >= from_ms) k++;
    pthread_mutex_unlock(&st->mu);
    return k;
}

/* ------------------------------------------------------------ the fleet ------------- */

/* A fleet on primary whose processes find the primary through the sentinels. The URL's
 * host names primary, but with FLEET_REDIS_SENTINELS set it is not used: url_port lets a
 * case point it elsewhere to show that. */
static tl_fleet *fleet_on_sentinels(tl_redis *primary, const tl_sentinels *s, int url_port) {
    tl_fleet *f = tl_alloc(sizeof *f);
    f->redis = primary;
    f->rc = tl_redis_connect(primary);
    snprintf(f->prefix, sizeof f->prefix, "t%x%x", (unsigned)getpid() & 0xffffu,
             (unsigned)(tl_now_ms() & 0xffffu));
    const char *sentinels = tl_printf("FLEET_REDIS_SENTINELS=%s", tl_sentinels_addrs(s));
    const char *master = "FLEET_REDIS_SENTINEL_MASTER=" MASTER;
    const char *url = tl_printf("FLEET_REDIS_URL=redis://127.0.0.1:%d", url_port);
    f->opts.gateway_env[0] = sentinels;
    f->opts.gateway_env[1] = master;
    f->opts.gateway_env[2] = "FLEET_REDIS_WAIT_REPLICAS=1";
    f->opts.gateway_env[3] = url;
    f->opts.worker_env[0] = sentinels;
    f->opts.worker_env[1] = master;
    f->opts.worker_env[2] = url;
    tl_fleet_start_gateway(f);
    return f;
}

/* fleetctl inspect ID with the sentinels in its environment and --redis-url naming
 * url_port (not used with sentinels). Returns its result. */
static tl_cmd_result fleetctl_inspect(tl_fleet *f, const tl_sentinels *s, int url_port,
                                      const char *id) {
    const char *argv[] = {tl_bin_path("fleetctl"),
                          "--redis-url",
                          tl_printf("redis://127.0.0.1:%d", url_port),
                          "--prefix",
                          f->prefix,
                          "inspect",
                          id,
                          NULL};
    const char *env[] = {tl_printf("FLEET_REDIS_SENTINELS=%s", tl_sentinels_addrs(s)),
                         "FLEET_REDIS_SENTINEL_MASTER=" MASTER, NULL};
    tl_log("FLEET_REDIS_SENTINELS=%s FLEET_REDIS_SENTINEL_MASTER=%s fleetctl --redis-url "
           "redis://127.0.0.1:%d --prefix %s inspect %s",
           tl_sentinels_addrs(s), MASTER, url_port, f->prefix, id);
    static int seq;
    return tl_run_cmd(tl_printf("fleetctl-%d", ++seq), argv[0], argv, env, 30000);
}

static bool status_is(tl_fleet *f, const char *id, const char *want) {
    const char *st = tl_jstr(tl_job_get(f, id), "status");
    return st && strcmp(st, want) == 0;
}

/* ------------------------------------------------------------ cases ----------------- */

/* The gateway, a worker and fleetctl ask the sentinels where the primary is: the host of
 * their URL (a port nothing listens on) is not used. */
TL_TEST(processes_find_the_primary_through_sentinels) {
    tl_redis *primary = tl_redis_start(NULL);
    tl_redis_start_replica(primary);
    tl_sentinels *s = tl_sentinels_start(primary, MASTER, 3);
    int nowhere = tl_free_port();
    tl_fleet *f = fleet_on_sentinels(primary, s, nowhere);
    tl_fleet_add_worker(f, "echo");
    const char *id = tl_job_submit(f, "echo", "{\"hello\":\"sentinel\"}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_JSON(res->json, tl_json("{\"hello\":\"sentinel\"}"));
    /* The job is on the primary the sentinels name. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, id), 1);
    tl_cmd_result r = fleetctl_inspect(f, s, nowhere, id);
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "succeeded");
}

/* kill -9 of the primary during a stream of submits and running jobs. */
TL_TEST(kill9_of_the_primary_loses_no_accepted_job) {
    tl_redis *primary = tl_redis_start(NULL);
    tl_redis *replicas[2] = {tl_redis_start_replica(primary), tl_redis_start_replica(primary)};
    tl_sentinels *s = tl_sentinels_start(primary, MASTER, 3);
    ASSERT_EQ_INT(tl_sentinels_primary_port(s), primary->port);
    tl_fleet *f = fleet_on_sentinels(primary, s, primary->port);
    tl_fleet_add_worker(f, "echo");
    tl_fleet_add_worker(f, "echo");
    tl_fleet_add_worker(f, "sleep");
    tl_fleet_add_worker(f, "sleep");

    /* Jobs that are running when the primary dies (3 s each; two at a time). */
    const char *sleeps[4];
    for (int i = 0; i < 4; i++) sleeps[i] = tl_job_submit(f, "sleep", "{\"ms\":3000,\"steps\":3}");
    ASSERT_EVENTUALLY(status_is(f, sleeps[0], "running") && status_is(f, sleeps[1], "running"),
                      TL_WAIT_MS);

    stream *st = stream_start(f);
    ASSERT_EVENTUALLY(stream_ok_since(st, 0) >= 40, TL_WAIT_MS);

    int64_t t_kill = tl_now_ms();
    tl_redis_kill9(primary);
    int port = tl_sentinels_wait_failover(s, primary->port, TL_WAIT_MS);
    int64_t t_promoted = tl_now_ms();
    tl_redis *now_primary = port == replicas[0]->port ? replicas[0] : replicas[1];
    ASSERT_EQ_INT(now_primary->port, port);
    f->redis = now_primary;
    f->rc = tl_redis_connect(now_primary);

    /* Submits are accepted again, eventually (the deadline is not a figure). */
    ASSERT_EVENTUALLY(stream_ok_since(st, t_promoted) >= 20, TL_WAIT_MS);
    stream_stop(st);

    /* Every answer: 2xx, or 503 with Retry-After; never none within the client timeout. */
    size_t ok = 0, refused = 0, ok_before = 0, type_count[8] = {0};
    const char *types[8];
    int ntypes = 0;
    int64_t first_ok_after_kill = -1;
    for (size_t i = 0; i < st->n; i++) {
        const submit_rec *q = &st->v[i];
        if (q->status == 0)
            FAILF("submit %zu sent %lld ms after the kill got no answer within %d ms: %s", i,
                  (long long)(q->sent_ms - t_kill), CLIENT_TIMEOUT_MS, q->err);
        if (q->status >= 200 && q->status < 300) {
            if (!q->id[0]) FAILF("submit %zu answered %ld without an id", i, q->status);
            ok++;
            if (q->sent_ms < t_kill) ok_before++;
            if (q->sent_ms >= t_kill &&
                (first_ok_after_kill < 0 || q->done_ms < first_ok_after_kill))
                first_ok_after_kill = q->done_ms;
            continue;
        }
        if (q->status != 503 || !q->retry_after)
            FAILF("submit %zu sent %lld ms after the kill was answered %ld (%s)%s: only 2xx or "
                  "503 with Retry-After are expected",
                  i, (long long)(q->sent_ms - t_kill), q->status, q->type,
                  q->retry_after ? "" : " without Retry-After");
        refused++;
        int k = 0;
        while (k < ntypes && strcmp(types[k], q->type) != 0) k++;
        if (k == ntypes && ntypes < 8) types[ntypes++] = q->type;
        if (k < 8) type_count[k]++;
    }
    ASSERT_GT_INT(ok_before, 0);
    ASSERT_GE_INT(first_ok_after_kill, t_kill);
    printf("    failover figures: %zu submits, %zu accepted, %zu refused with 503 + Retry-After; "
           "promotion %.1f s after kill -9; first 2xx to a submit sent after the kill %.1f s "
           "after it\n",
           st->n, ok, refused, (double)(t_promoted - t_kill) / 1000.0,
           (double)(first_ok_after_kill - t_kill) / 1000.0);
    for (int k = 0; k < ntypes; k++) printf("      %zu refused as %s\n", type_count[k], types[k]);

    /* Every accepted job, and every job that ran while the primary died, succeeds on the
     * new primary. */
    for (int i = 0; i < 4; i++) {
        json_t *job = tl_job_wait_status(f, sleeps[i], "succeeded", TL_WAIT_MS);
        tl_log("sleep job %d: succeeded after %lld attempt(s)", i, tl_jint(job, "attempts"));
    }
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].id[0]) tl_job_wait_status(f, st->v[i].id, "succeeded", TL_WAIT_MS);
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].id[0])
            ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, st->v[i].id), 1);

    /* fleetctl (URL naming the dead primary) reads them from the new one. */
    tl_cmd_result r = fleetctl_inspect(f, s, primary->port, sleeps[0]);
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "succeeded");
    r = fleetctl_inspect(f, s, primary->port,
                         st->v[st->n - 1].id[0] ? st->v[st->n - 1].id : sleeps[1]);
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "succeeded");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(processes_find_the_primary_through_sentinels),
        TL_CASE(kill9_of_the_primary_loses_no_accepted_job),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
