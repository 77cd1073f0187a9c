/* webhook_test.c: signed, durable webhook deliveries (docs/webhooks.md): the signature
 * checked here with OpenSSL directly (not the gateway's webhook_sign.c), the event types a
 * job subscribes to, retries with the same webhook-id and body, Retry-After, 410 and other
 * 4xx, exhausted retries on the dead-letter stream, two gateways sharing the task stream
 * (each event once; a killed gateway's delivery taken over by the other), the SSRF guard
 * at submit and at delivery, and the submit-time refusals. */
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

/* The Standard Webhooks test secret (docs/webhooks.md). */
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
/* A gateway that signs and may reach the receiver on 127.0.0.1. */
#define HOOK_ENV "FLEET_WEBHOOK_SECRET=" SECRET, "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"

/* ------------------------------------------------------------ signatures ------------ */

/* Standard base64 (with or without padding) to bytes; -1 when malformed. */
static int b64_decode(const char *in, unsigned char *out, size_t cap) {
    size_t pad = (4 - strlen(in) % 4) % 4;
    char *padded = tl_printf("%s%.*s", in, (int)pad, "===");
    size_t len = strlen(padded);
    if (len % 4 != 0 || len / 4 * 3 > cap) return -1;
    int k = EVP_DecodeBlock(out, (const unsigned char *)padded, (int)len);
    if (k < 0) return -1;
    for (size_t i = len; i > 0 && padded[i - 1] == '='; i--) k--; /* DecodeBlock keeps them */
    return k;
}

/* "v1,<base64 HMAC-SHA256(key, id.ts.body)>" with key = base64-decode(secret - "whsec_"). */
static const char *expected_signature(const char *secret, const char *msg_id, const char *ts,
                                      const char *body, size_t body_len) {
    ASSERT_TRUE(strncmp(secret, "whsec_", 6) == 0);
    unsigned char key[64];
    int keylen = b64_decode(secret + 6, key, sizeof key);
    ASSERT_GT_INT(keylen, 0);
    size_t hlen = strlen(msg_id) + 1 + strlen(ts) + 1;
    unsigned char *content = tl_alloc(hlen + body_len + 1);
    snprintf((char *)content, hlen + 1, "%s.%s.", msg_id, ts);
    memcpy(content + hlen, body, body_len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    ASSERT_NOT_NULL(HMAC(EVP_sha256(), key, keylen, content, hlen + body_len, mac, &maclen));
    ASSERT_EQ_INT(maclen, 32);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, mac, (int)maclen);
    return tl_printf("v1,%s", (const char *)b64);
}

/* True when any "v1," entry of the space-separated signature header matches (compared in
 * constant time, as a receiver should). */
static bool signature_matches(const char *header, const char *want) {
    if (!header) return false;
    size_t wl = strlen(want);
    for (const char *p = header; *p;) {
        size_t n = strcspn(p, " ");
        if (n == wl && CRYPTO_memcmp(p, want, wl) == 0) return true;
        p += n;
        while (*p == ' ') p++;
    }
    return false;
}

static bool delivery_verifies(const tl_received *q) {
    const char *id = tl_received_header(q, "webhook-id");
    const char *ts = tl_received_header(q, "webhook-timestamp");
    if (!id || !ts) return false;
    return signature_matches(tl_received_header(q, "webhook-signature"),
                             expected_signature(SECRET, id, ts, q->body, q->body_len));
}

/* ------------------------------------------------------------ helpers --------------- */

/* POST /v1/jobs with a webhook (events: a JSON array, or NULL for the default). */
static tl_resp *submit_hook_resp(tl_fleet *f, const char *model, const char *input, const char *url,
                                 const char *events) {
    const char *body = events ? tl_printf("{\"model\":\"%s\",\"input\":%s,\"webhook\":\"%s\","
                                          "\"webhook_events\":%s}",
                                          model, input, url, events)
                              : tl_printf("{\"model\":\"%s\",\"input\":%s,\"webhook\":\"%s\"}",
                                          model, input, url);
    return tl_post(f, "/v1/jobs", body);
}

static const char *submit_hook(tl_fleet *f, const char *model, const char *input, const char *url,
                               const char *events) {
    tl_resp *r = submit_hook_resp(f, model, input, url, events);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id);
    return id;
}

/* The job's "webhook" object (GET /v1/jobs/{id}). */
static json_t *job_hook(tl_fleet *f, const char *id) {
    json_t *w = tl_jget(tl_job_get(f, id), "webhook");
    if (!json_is_object(w)) FAILF("job %s has no webhook object", id);
    return w;
}

typedef struct hook_wait {
    tl_fleet *f;
    const char *id, *want;
    json_t *last;
} hook_wait;

static bool hook_state_reached(void *arg) {
    hook_wait *w = arg;
    w->last = job_hook(w->f, w->id);
    const char *s = tl_jstr(w->last, "state");
    if (!s) FAILF("webhook object without a state: %s", tl_json_text(w->last));
    /* delivered and failed are where a single message ends: seeing the other one is
     * already the answer. */
    if ((strcmp(w->want, "delivered") == 0 && strcmp(s, "failed") == 0) ||
        (strcmp(w->want, "failed") == 0 && strcmp(s, "delivered") == 0))
        FAILF("job %s: webhook state \"%s\" while waiting for \"%s\": %s", w->id, s, w->want,
              tl_json_text(w->last));
    return strcmp(s, w->want) == 0;
}

/* Polls GET /v1/jobs/{id} until webhook.state is want; returns the webhook object. */
static json_t *wait_hook_state(tl_fleet *f, const char *id, const char *want, int deadline_ms) {
    hook_wait w = {.f = f, .id = id, .want = want};
    if (!tl_wait_for(hook_state_reached, &w, deadline_ms))
        FAILF("job %s: webhook state not \"%s\" within %d ms; last: %s", id, want, deadline_ms,
              tl_json_text(w.last));
    return w.last;
}

static void wait_requests(tl_receiver *rx, size_t n, int deadline_ms) {
    if (!tl_receiver_wait_count(rx, n, deadline_ms))
        FAILF("the receiver got %zu request(s), not %zu, within %d ms", tl_receiver_count(rx), n,
              deadline_ms);
}

static const char *hook_id(const tl_received *q) {
    const char *id = tl_received_header(q, "webhook-id");
    if (!id) FAILF("a delivery without a webhook-id header: %s", q->body);
    return id;
}

static bool is_for_job(const tl_received *q, const char *job) {
    const char *id = tl_received_header(q, "webhook-id");
    const char *pre = tl_printf("msg_%s_", job);
    return id && strncmp(id, pre, strlen(pre)) == 0;
}

/* The deliveries of one job so far, in arrival order; returns how many. */
static size_t requests_for(tl_receiver *rx, const char *job, const tl_received **out, size_t max) {
    size_t n = 0, total = tl_receiver_count(rx);
    for (size_t i = 0; i < total; i++) {
        const tl_received *q = tl_receiver_get(rx, i);
        if (!is_for_job(q, job)) continue;
        if (n < max) out[n] = q;
        n++;
    }
    return n;
}

typedef struct job_count_wait {
    tl_receiver *rx;
    const char *job;
    size_t n;
} job_count_wait;

static bool job_count_reached(void *arg) {
    job_count_wait *w = arg;
    const tl_received *dummy[1];
    return requests_for(w->rx, w->job, dummy, 0) >= w->n;
}

static void wait_requests_for(tl_receiver *rx, const char *job, size_t n, int deadline_ms) {
    job_count_wait w = {rx, job, n};
    if (!tl_wait_for(job_count_reached, &w, deadline_ms)) {
        const tl_received *dummy[1];
        FAILF("job %s: %zu delivery request(s), not %zu, within %d ms", job,
              requests_for(rx, job, dummy, 0), n, deadline_ms);
    }
}

/* How many messages the job's events queued (the seq in msg_<id>_<seq>). */
static long long events_queued(tl_fleet *f, const char *job) {
    redisReply *r = tl_redis_cmd(f->rc, "HGET {%s}:job:%s webhook_seq", f->prefix, job);
    return r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
}

/* The webhook dead-letter stream as a JSON array of {field: value} objects. */
static json_t *webhook_dlq(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "XRANGE {%s}:webhook_dlq - +", f->prefix);
    json_t *arr = tl_json_own(json_array());
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *fields = r->element[i]->element[1];
        json_t *o = json_object();
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
            json_object_set_new(o, fields->element[k]->str,
                                json_string(fields->element[k + 1]->str));
        json_array_append_new(arr, o);
    }
    return arr;
}

static size_t job_keys(tl_fleet *f) {
    return tl_redis_keys(f->rc, tl_printf("{%s}:job:*", f->prefix)).n;
}

/* Starts a second gateway on f's Redis and returns a view of the fleet that talks to it;
 * f keeps talking to the first one (tl_fleet_start_gateway repoints f). */
static tl_fleet *second_gateway(tl_fleet *f) {
    tl_fleet saved = *f;
    tl_fleet_start_gateway(f);
    tl_fleet *g2 = tl_alloc(sizeof *g2);
    *g2 = *f;
    f->gateway = saved.gateway;
    f->gateway_port = saved.gateway_port;
    memcpy(f->url, saved.url, sizeof f->url);
    return g2;
}

/* ------------------------------------------------------------ cases ----------------- */

TL_TEST(signature_verifies_independently) {
    /* The verifier itself, on the Standard Webhooks test vector (docs/webhooks.md), and a
     * tampered body that must not verify. */
    const char *vbody = "{\"test\": 2432232314}";
    ASSERT_EQ_STR(expected_signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", vbody,
                                     strlen(vbody)),
                  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    ASSERT_TRUE(signature_matches("v0,abc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                                  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));

    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}, .gateway_env = {HOOK_ENV}});
    tl_receiver *rx = tl_receiver_start(0);
    const char *id = submit_hook(f, "echo", "{\"page\": 1}", tl_receiver_url(rx, "/hook"), NULL);
    wait_requests(rx, 1, TL_WAIT_MS);
    const tl_received *q = tl_receiver_get(rx, 0);

    ASSERT_EQ_STR(q->method, "POST");
    ASSERT_EQ_STR(q->path, "/hook");
    ASSERT_STR_CONTAINS(tl_received_header(q, "Content-Type"), "application/json");
    const char *msg = hook_id(q);
    ASSERT_TRUE(strncmp(msg, tl_printf("msg_%s_", id), strlen(id) + 5) == 0);
    const char *ts = tl_received_header(q, "webhook-timestamp");
    ASSERT_NOT_NULL(ts);
    ASSERT_EQ_INT(strspn(ts, "0123456789"), strlen(ts));
    long long skew = atoll(ts) - (long long)time(NULL);
    ASSERT_TRUE(skew > -300 && skew < 300); /* unix seconds of the attempt */
    const char *sig = tl_received_header(q, "webhook-signature");
    tl_log("webhook-id %s, timestamp %s, signature %s", msg, ts, sig);
    ASSERT_TRUE(delivery_verifies(q));
    /* One changed byte of the body, the id or the timestamp breaks it. */
    char *tampered = tl_printf("%s", q->body);
    tampered[q->body_len - 2] ^= 1;
    ASSERT_FALSE(signature_matches(sig,
                                   expected_signature(SECRET, msg, ts, tampered, q->body_len)));
    ASSERT_FALSE(signature_matches(sig, expected_signature(SECRET, tl_printf("%sx", msg), ts,
                                                           q->body, q->body_len)));
    ASSERT_FALSE(signature_matches(sig,
                                   expected_signature(SECRET, msg, tl_printf("%lld", atoll(ts) + 1),
                                                      q->body, q->body_len)));

    json_t *body = tl_json(q->body);
    ASSERT_EQ_STR(tl_jstr(body, "type"), "job.succeeded");
    ASSERT_NOT_NULL(tl_jstr(body, "timestamp"));
    ASSERT_TRUE(tl_jstr(body, "timestamp")[0] != '\0');
    ASSERT_EQ_STR(tl_jstr(body, "data.id"), id);
    ASSERT_EQ_STR(tl_jstr(body, "data.status"), "succeeded");
    ASSERT_EQ_STR(tl_jstr(body, "data.model"), "echo");

    json_t *w = wait_hook_state(f, id, "delivered", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 1);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 200);
    ASSERT_EQ_STR(tl_jstr(w, "url"), tl_receiver_url(rx, "/hook"));
    ASSERT_EQ_JSON(tl_jget(w, "events"), tl_json("[\"completed\"]"));
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
}

/* Checks that the deliveries of a job are exactly its queued messages, each once, and
 * returns their types indexed by seq (types[1..n]). */
static const char **types_by_seq(tl_fleet *f, tl_receiver *rx, const char *job, long long *nout) {
    long long n = events_queued(f, job);
    ASSERT_GT_INT(n, 0);
    wait_requests_for(rx, job, (size_t)n, TL_WAIT_MS);
    const tl_received *qs[64];
    size_t got = requests_for(rx, job, qs, 64);
    ASSERT_EQ_INT(got, n);
    const char **types = tl_alloc(sizeof(char *) * (size_t)(n + 1));
    for (size_t i = 0; i < got; i++) {
        const char *msg = hook_id(qs[i]);
        long long seq = atoll(msg + strlen(job) + 5);
        ASSERT_TRUE(seq >= 1 && seq <= n);
        if (types[seq]) FAILF("message %s delivered twice", msg);
        json_t *body = tl_json(qs[i]->body);
        types[seq] = tl_jstr(body, "type");
        ASSERT_NOT_NULL(types[seq]);
        ASSERT_EQ_STR(tl_jstr(body, "data.id"), job);
        ASSERT_TRUE(delivery_verifies(qs[i]));
    }
    *nout = n;
    return types;
}

TL_TEST(event_types_follow_the_subscription) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}, .gateway_env = {HOOK_ENV}});
    tl_receiver *rx = tl_receiver_start(0);
    const char *url = tl_receiver_url(rx, "/hook");

    /* All events: job.running first (the claim), job.progress for each progress write, and
     * job.succeeded last, by message sequence (deliveries run concurrently, so they may
     * arrive in another order). */
    const char *all = submit_hook(f, "sleep", "{\"ms\": 600, \"steps\": 3}", url,
                                  "[\"running\", \"progress\", \"completed\"]");
    /* Default events: only job.succeeded, although it runs and reports progress too. */
    const char *dflt = submit_hook(f, "sleep", "{\"ms\": 300, \"steps\": 3}", url, NULL);
    tl_job_wait_status(f, all, "succeeded", TL_WAIT_MS);
    tl_job_wait_status(f, dflt, "succeeded", TL_WAIT_MS);

    long long n;
    const char **types = types_by_seq(f, rx, all, &n);
    tl_log("all events: %lld messages", n);
    ASSERT_GE_INT(n, 3);
    ASSERT_EQ_STR(types[1], "job.running");
    for (long long i = 2; i < n; i++) ASSERT_EQ_STR(types[i], "job.progress");
    ASSERT_EQ_STR(types[n], "job.succeeded");
    ASSERT_EQ_JSON(tl_jget(job_hook(f, all), "events"),
                   tl_json("[\"running\", \"progress\", \"completed\"]"));

    types = types_by_seq(f, rx, dflt, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(types[1], "job.succeeded");
    wait_hook_state(f, dflt, "delivered", TL_WAIT_MS);
    const tl_received *qs[8];
    ASSERT_EQ_INT(requests_for(rx, dflt, qs, 8), 1);

    /* A failed job: job.failed with the error. */
    const char *bad = submit_hook(f, "sleep", "{\"ms\": 10, \"fail\": \"bad page\"}", url, NULL);
    tl_job_wait_status(f, bad, "failed", TL_WAIT_MS);
    types = types_by_seq(f, rx, bad, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(types[1], "job.failed");
    requests_for(rx, bad, qs, 8);
    json_t *body = tl_json(qs[0]->body);
    ASSERT_EQ_STR(tl_jstr(body, "data.status"), "failed");
    ASSERT_EQ_STR(tl_jstr(body, "data.error"), "bad page");

    /* A job cancelled while queued (no echo worker): job.cancelled. */
    const char *queued = submit_hook(f, "echo", "{\"x\": 1}", url, NULL);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", queued)), 200);
    types = types_by_seq(f, rx, queued, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(types[1], "job.cancelled");
    requests_for(rx, queued, qs, 8);
    ASSERT_EQ_STR(tl_jstr(tl_json(qs[0]->body), "data.status"), "cancelled");
    wait_hook_state(f, queued, "delivered", TL_WAIT_MS);

    /* Every webhook-id seen is unique. */
    size_t total = tl_receiver_count(rx);
    for (size_t i = 0; i < total; i++)
        for (size_t j = i + 1; j < total; j++)
            ASSERT_NE_STR(hook_id(tl_receiver_get(rx, i)), hook_id(tl_receiver_get(rx, j)));
}

TL_TEST(retry_500_then_200_same_webhook_id) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.3,0.3,0.3"}});
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 500, NULL, 0);
    tl_receiver_respond(rx, 200, NULL, 0);
    const char *id = submit_hook(f, "echo", "{\"n\": 3}", tl_receiver_url(rx, "/"), NULL);
    json_t *w = wait_hook_state(f, id, "delivered", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 2);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 200);

    ASSERT_EQ_INT(tl_receiver_count(rx), 2);
    const tl_received *a = tl_receiver_get(rx, 0), *b = tl_receiver_get(rx, 1);
    ASSERT_EQ_INT(a->status, 500);
    ASSERT_EQ_INT(b->status, 200);
    ASSERT_EQ_STR(hook_id(a), hook_id(b));
    ASSERT_EQ_INT(a->body_len, b->body_len);
    ASSERT_TRUE(memcmp(a->body, b->body, a->body_len) == 0);
    /* Each attempt is signed for itself. */
    ASSERT_TRUE(delivery_verifies(a));
    ASSERT_TRUE(delivery_verifies(b));
}

TL_TEST(receiver_down_then_up_is_delivered) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"},
        .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.5,0.5,0.5,0.5,0.5,0.5,0.5"}});
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_stop(rx);
    const char *id = submit_hook(f, "echo", "{\"n\": 4}", tl_receiver_url(rx, "/"), NULL);
    json_t *w = wait_hook_state(f, id, "retrying", TL_WAIT_MS);
    tl_log("while down: %s", tl_json_text(w));
    ASSERT_GE_INT(tl_jint(w, "attempts"), 1);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 0); /* no HTTP answer */
    ASSERT_NOT_NULL(tl_jstr(w, "last_error"));
    ASSERT_EQ_INT(tl_receiver_count(rx), 0);

    tl_receiver_restart(rx);
    w = wait_hook_state(f, id, "delivered", TL_WAIT_MS);
    tl_log("after restart: %s", tl_json_text(w));
    ASSERT_GE_INT(tl_jint(w, "attempts"), 2);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 200);
    ASSERT_NULL(tl_jget(w, "last_error"));
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
    ASSERT_TRUE(delivery_verifies(tl_receiver_get(rx, 0)));
    ASSERT_EQ_INT(json_array_size(webhook_dlq(f)), 0);
}

/* One delivery answered `status`: stopped after that attempt, on the dead-letter stream. */
static void check_stops_after_one(tl_fleet *f, tl_receiver *rx, int status, size_t nth) {
    tl_receiver_respond(rx, status, NULL, 0);
    const char *id = submit_hook(f, "echo", "{\"n\": 5}", tl_receiver_url(rx, "/"), NULL);
    json_t *w = wait_hook_state(f, id, "failed", TL_WAIT_MS);
    tl_log("%d: %s", status, tl_json_text(w));
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 1);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), status);
    ASSERT_STR_CONTAINS(tl_jstr(w, "last_error"), tl_printf("%d", status));
    const tl_received *qs[4];
    ASSERT_EQ_INT(requests_for(rx, id, qs, 4), 1);
    ASSERT_EQ_INT(qs[0]->status, status);

    json_t *dlq = webhook_dlq(f);
    ASSERT_EQ_INT(json_array_size(dlq), nth);
    json_t *e = json_array_get(dlq, nth - 1);
    ASSERT_EQ_STR(tl_jstr(e, "msg"), hook_id(qs[0]));
    ASSERT_EQ_STR(tl_jstr(e, "job"), id);
    ASSERT_EQ_STR(tl_jstr(e, "type"), "job.succeeded");
    ASSERT_EQ_STR(tl_jstr(e, "url"), tl_receiver_url(rx, "/"));
    ASSERT_EQ_STR(tl_jstr(e, "attempts"), "1");
    ASSERT_EQ_STR(tl_jstr(e, "last_status"), tl_printf("%d", status));
    /* Nothing waits for a retry, and the delivery hash is gone. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:webhook_retry", f->prefix), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:delivery:%s", f->prefix, hook_id(qs[0])), 0);
}

TL_TEST(gone_410_stops_and_other_4xx_stop) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.2,0.2,0.2"}});
    tl_receiver *rx = tl_receiver_start(0);
    check_stops_after_one(f, rx, 410, 1);
    check_stops_after_one(f, rx, 400, 2);
    /* No late retry of either shows up meanwhile. */
    ASSERT_FALSE(tl_receiver_wait_count(rx, 3, 800));
}

TL_TEST(exhausted_retries_go_to_the_dead_letter_stream) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.2,0.2"}});
    tl_receiver *rx = tl_receiver_start(0);
    for (int i = 0; i < 6; i++) tl_receiver_respond(rx, 503, NULL, 0); /* always 503 */
    const char *id = submit_hook(f, "echo", "{\"n\": 6}", tl_receiver_url(rx, "/"), NULL);
    json_t *w = wait_hook_state(f, id, "failed", TL_WAIT_MS);
    tl_log("%s", tl_json_text(w));
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 3);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 503);
    ASSERT_STR_CONTAINS(tl_jstr(w, "last_error"), "gave up after 3 attempts");
    ASSERT_EQ_INT(tl_receiver_count(rx), 3);
    for (size_t i = 1; i < 3; i++)
        ASSERT_EQ_STR(hook_id(tl_receiver_get(rx, i)), hook_id(tl_receiver_get(rx, 0)));

    json_t *dlq = webhook_dlq(f);
    ASSERT_EQ_INT(json_array_size(dlq), 1);
    json_t *e = json_array_get(dlq, 0);
    ASSERT_EQ_STR(tl_jstr(e, "msg"), hook_id(tl_receiver_get(rx, 0)));
    ASSERT_EQ_STR(tl_jstr(e, "job"), id);
    ASSERT_EQ_STR(tl_jstr(e, "attempts"), "3");
    ASSERT_EQ_STR(tl_jstr(e, "last_status"), "503");
    ASSERT_STR_CONTAINS(tl_jstr(e, "error"), "gave up after 3 attempts");
    ASSERT_NOT_NULL(tl_jstr(e, "failed_ms"));
    ASSERT_FALSE(tl_receiver_wait_count(rx, 4, 600));
}

typedef struct retry_probe {
    tl_fleet *f;
    const char *msg;
    long long due_ms;
} retry_probe;

static bool retry_scheduled(void *arg) {
    retry_probe *p = arg;
    redisReply *r = tl_redis_cmd(p->f->rc, "ZSCORE {%s}:webhook_retry %s", p->f->prefix, p->msg);
    if (r->type != REDIS_REPLY_STRING) return false;
    p->due_ms = atoll(r->str);
    return true;
}

/* A 503 with Retry-After: 30 puts the next attempt 30 s out, although the schedule says
 * 0.1 s. What is checked is the decision (the due time recorded in the retry set against
 * the first attempt's webhook-timestamp, both wall clock), not how fast anything ran. */
TL_TEST(retry_after_is_honoured) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo"}, .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_SCHEDULE=0,0.1"}});
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 503, "Retry-After: 30", 0);
    const char *id = submit_hook(f, "echo", "{\"n\": 7}", tl_receiver_url(rx, "/"), NULL);
    wait_requests(rx, 1, TL_WAIT_MS);
    const tl_received *first = tl_receiver_get(rx, 0);
    retry_probe p = {.f = f, .msg = hook_id(first)};
    ASSERT_WAIT_FOR(retry_scheduled, &p, TL_WAIT_MS);
    long long sent_ms = atoll(tl_received_header(first, "webhook-timestamp")) * 1000;
    tl_log("next attempt due %lld ms after the first was sent (schedule 0.1 s, Retry-After 30 s)",
           p.due_ms - sent_ms);
    ASSERT_GE_INT(p.due_ms - sent_ms, 29000);
    json_t *w = wait_hook_state(f, id, "retrying", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 503);
    ASSERT_EQ_INT((long long)tl_receiver_count(rx), 1);
}

TL_TEST(two_gateways_deliver_each_event_once) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo", "echo"},
                                                  .gateway_env = {HOOK_ENV}});
    tl_fleet *g2 = second_gateway(f);
    tl_receiver *rx = tl_receiver_start(0);
    enum { JOBS = 30 };
    const char *ids[JOBS];
    for (int i = 0; i < JOBS; i++)
        ids[i] = submit_hook(i % 2 ? g2 : f, "echo", tl_printf("{\"i\": %d}", i),
                             tl_receiver_url(rx, "/"), NULL);
    wait_requests(rx, JOBS, TL_WAIT_MS);
    ASSERT_FALSE(tl_receiver_wait_count(rx, JOBS + 1, 1000)); /* no duplicate shows up */
    ASSERT_EQ_INT(tl_receiver_count(rx), JOBS);
    for (int i = 0; i < JOBS; i++) {
        const tl_received *qs[4];
        size_t n = requests_for(rx, ids[i], qs, 4);
        if (n != 1) FAILF("job %d (%s): %zu deliveries", i, ids[i], n);
        ASSERT_EQ_STR(hook_id(qs[0]), tl_printf("msg_%s_1", ids[i]));
    }
    /* Which gateway sent how many (both may, or one may take them all). */
    redisReply *c = tl_redis_cmd(f->rc, "XINFO CONSUMERS {%s}:webhooks gateways", f->prefix);
    tl_log("consumers of the task stream: %zu", c->elements);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:webhooks", f->prefix), 0);
}

/* The pid in a consumer name "<host>-<pid>-<random>" (the host may hold '-'). */
static pid_t consumer_pid(const char *name) {
    const char *last = strrchr(name, '-');
    ASSERT_NOT_NULL(last);
    const char *p = last;
    while (p > name && p[-1] != '-') p--;
    ASSERT_TRUE(p > name);
    return (pid_t)atol(p);
}

TL_TEST(killed_gateway_hands_its_delivery_to_another) {
    tl_fleet *f =
        tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                        .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_CLAIM_MS=1500",
                                                        "FLEET_WEBHOOK_TIMEOUT_MS=10000"}});
    tl_fleet *g2 = second_gateway(f);
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 200, NULL, 8000); /* the first answer is held; then 200 at once */
    const char *id = submit_hook(f, "echo", "{\"n\": 9}", tl_receiver_url(rx, "/"), NULL);
    wait_requests(rx, 1, TL_WAIT_MS);

    redisReply *p = tl_redis_cmd(f->rc, "XPENDING {%s}:webhooks gateways - + 10", f->prefix);
    ASSERT_EQ_INT(p->elements, 1);
    const char *consumer = p->element[0]->element[1]->str;
    pid_t pid = consumer_pid(consumer);
    tl_log("delivery held by consumer %s (gateway pids %d, %d)", consumer, (int)f->gateway->pid,
           (int)g2->gateway->pid);
    tl_fleet *holder = pid == f->gateway->pid ? f : pid == g2->gateway->pid ? g2 : NULL;
    if (!holder) FAILF("consumer %s is neither gateway", consumer);
    tl_fleet *other = holder == f ? g2 : f;
    tl_proc_kill9(holder->gateway);

    wait_requests(rx, 2, TL_WAIT_MS);
    const tl_received *a = tl_receiver_get(rx, 0), *b = tl_receiver_get(rx, 1);
    tl_log("taken over %lld ms after the first request", (long long)(b->at_ms - a->at_ms));
    ASSERT_EQ_STR(hook_id(b), hook_id(a));
    ASSERT_EQ_INT(b->status, 200);
    ASSERT_TRUE(delivery_verifies(b));
    json_t *w = wait_hook_state(other, id, "delivered", TL_WAIT_MS);
    /* The holder is dead, so the survivor sent it, and says it took it over. */
    ASSERT_STR_CONTAINS(tl_read_file(other->gateway->log_path, NULL),
                        "took over webhook deliveries");
    tl_log("%s", tl_json_text(w));
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 200);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:webhooks", f->prefix), 0);
    ASSERT_FALSE(tl_receiver_wait_count(rx, 3, 500));
}

/* A slow receiver is not a dead gateway: a delivery that takes longer than
 * FLEET_WEBHOOK_CLAIM_MS stays with the gateway that sends it (it refreshes its claim), so
 * the message goes out once. */
TL_TEST(slow_delivery_is_not_taken_over_by_a_live_gateway) {
    tl_fleet *f =
        tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                        .gateway_env = {HOOK_ENV, "FLEET_WEBHOOK_CLAIM_MS=1500",
                                                        "FLEET_WEBHOOK_TIMEOUT_MS=10000"}});
    second_gateway(f);
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 200, NULL, 4000); /* well past the claim time */
    const char *id = submit_hook(f, "echo", "{\"n\": 10}", tl_receiver_url(rx, "/"), NULL);
    wait_hook_state(f, id, "delivered", TL_WAIT_MS);
    ASSERT_FALSE(tl_receiver_wait_count(rx, 2, 3000));
    ASSERT_EQ_INT((long long)tl_receiver_count(rx), 1);
    ASSERT_EQ_INT(tl_jint(job_hook(f, id), "attempts"), 1);
}

/* A host name (not a literal) that resolves to a loopback address: want6 for ::1. */
static bool resolves_to_loopback(const char *host, bool want6) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!host[0] || getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    bool found = false;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (!want6 && a->ai_family == AF_INET &&
            (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127)
            found = true;
        if (want6 && a->ai_family == AF_INET6 &&
            memcmp(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, &in6addr_loopback,
                   sizeof in6addr_loopback) == 0)
            found = true;
    }
    freeaddrinfo(res);
    return found;
}

/* Submitted with a host name that resolves to a refused address: accepted at submit, then
 * refused at delivery for good, and nothing reaches the receiver. */
static void check_refused_at_delivery(tl_fleet *f, tl_receiver *rx, const char *host) {
    const char *url = tl_printf("http://%s:%d/", host, tl_receiver_port(rx));
    const char *id = submit_hook(f, "echo", "{\"n\": 10}", url, NULL);
    json_t *w = wait_hook_state(f, id, "failed", TL_WAIT_MS);
    tl_log("%s: %s", url, tl_json_text(w));
    ASSERT_STR_CONTAINS(tl_jstr(w, "last_error"), "SSRF");
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 1);
    json_t *dlq = webhook_dlq(f);
    ASSERT_EQ_INT(json_array_size(dlq), 1);
    ASSERT_STR_CONTAINS(tl_jstr(json_array_get(dlq, 0), "error"), "SSRF");
    ASSERT_EQ_INT(tl_receiver_count(rx), 0);
}

TL_TEST(ssrf_refuses_private_targets) {
    /* No allowlist: loopback and private targets are refused at submit. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_WEBHOOK_SECRET=" SECRET}});
    tl_receiver *rx = tl_receiver_start(0);
    static const struct {
        const char *url, *why;
    } refused[] = {
        {NULL, "loopback"}, /* the receiver, http://127.0.0.1:<port>/ */
        {"http://10.0.0.1/", "private"},
        {"http://169.254.169.254/latest/meta-data", "metadata"},
        {"http://[::1]:80/", "loopback"},
        {"http://localhost:8080/", "localhost"},
        {"ftp://example.com/", "http://"},
    };
    for (size_t i = 0; i < TL_COUNT(refused); i++) {
        const char *url = refused[i].url ? refused[i].url : tl_receiver_url(rx, "/");
        const char *detail = ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", url, NULL), 422);
        tl_log("%s: %s", url, detail);
        ASSERT_STR_CONTAINS(detail, refused[i].why);
    }
    ASSERT_EQ_INT(job_keys(f), 0);
    /* (The worker creates the stream itself; nothing was queued on it.) */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix), 0);

    /* At delivery: a host name is checked by what it resolves to. */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    if (resolves_to_loopback(host, false) && strcmp(host, "localhost") != 0)
        check_refused_at_delivery(f, rx, host);
    else
        tl_log("note: this machine's host name '%s' does not resolve to 127.x; skipped the "
               "host-name-to-127.x part",
               host);

    /* With only 127.0.0.1/32 allowed, a name that resolves to ::1 is still refused. */
    if (!resolves_to_loopback("ip6-localhost", true)) {
        tl_log("note: ip6-localhost does not resolve to ::1 here; skipped the ::1 part");
        return;
    }
    tl_fleet *g = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}, .gateway_env = {HOOK_ENV}});
    check_refused_at_delivery(g, rx, "ip6-localhost");
}

/* A receiver on [::1] with only ::1/128 allowed gets its signed delivery at an IPv6
 * literal URL (curl gets no pin for a literal: libcurl 7.88 refuses any CURLOPT_RESOLVE
 * entry whose host is an IPv6 literal, which dead-lettered every such delivery). */
TL_TEST(ipv6_literal_receiver_gets_signed_delivery) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_WEBHOOK_SECRET=" SECRET,
                                                                  "FLEET_WEBHOOK_ALLOW=::1/128"}});
    tl_receiver *rx = tl_receiver_start_ipv6(0);
    const char *url = tl_receiver_url(rx, "/hook");
    ASSERT_TRUE(strncmp(url, "http://[::1]:", 13) == 0);
    const char *id = submit_hook(f, "echo", "{\"v6\": true}", url, NULL);
    json_t *w = wait_hook_state(f, id, "delivered", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(w, "attempts"), 1);
    ASSERT_EQ_INT(tl_jint(w, "last_status"), 200);
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
    const tl_received *q = tl_receiver_get(rx, 0);
    ASSERT_EQ_STR(q->path, "/hook");
    ASSERT_EQ_STR(tl_received_header(q, "Host"), tl_printf("[::1]:%d", tl_receiver_port(rx)));
    ASSERT_TRUE(delivery_verifies(q));
    ASSERT_EQ_STR(tl_jstr(tl_json(q->body), "data.id"), id);
    ASSERT_EQ_INT(json_array_size(webhook_dlq(f)), 0);
}

/* IPv6 spellings of internal IPv4 addresses are 422 at submit, by the same rules as
 * IPv4 (allowing ::1 admits none of them), and nothing is stored. */
TL_TEST(ipv4_inside_ipv6_is_refused_at_submit) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {"FLEET_WEBHOOK_SECRET=" SECRET,
                                                                  "FLEET_WEBHOOK_ALLOW=::1/128"}});
    static const struct {
        const char *url, *why;
    } refused[] = {
        {"http://[::ffff:0:7f00:1]/", "loopback"}, /* IPv4-translated (SIIT) */
        {"http://[0:0:0:0:FFFF:0:127.0.0.1]:8080/", "loopback"},
        {"http://[::ffff:7f00:1]/", "loopback"},            /* IPv4-mapped */
        {"http://[::7f00:1]/", "loopback"},                 /* IPv4-compatible */
        {"http://[64:ff9b::a9fe:a9fe]/", "cloud metadata"}, /* NAT64 */
        {"http://[2002:a00:1::1]/", "private"},             /* 6to4 */
        {"http://[2001:0:4136:e378::1]/", "reserved"},      /* Teredo */
        {"http://[::1%25lo]/", "zone id"},
    };
    for (size_t i = 0; i < TL_COUNT(refused); i++) {
        const char *detail = ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", refused[i].url, NULL),
                                            422);
        tl_log("%s: %s", refused[i].url, detail);
        ASSERT_STR_CONTAINS(detail, refused[i].why);
    }
    ASSERT_EQ_INT(job_keys(f), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix), 0);
}

TL_TEST(no_secret_refuses_webhooks) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_receiver *rx = tl_receiver_start(0);
    const char *detail =
        ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", tl_receiver_url(rx, "/"), NULL), 422);
    ASSERT_STR_CONTAINS(detail, "FLEET_WEBHOOK_SECRET");
    ASSERT_EQ_INT(job_keys(f), 0);
    const char *id = tl_job_submit(f, "echo", "{\"plain\": true}");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_NULL(tl_jget(job, "webhook"));
    ASSERT_EQ_INT(tl_receiver_count(rx), 0);
}

TL_TEST(bad_webhook_fields_are_400_or_422) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {HOOK_ENV}});
    const char *url = "http://127.0.0.1:9/";
    const char *d;
    d = ASSERT_PROBLEM(tl_post(f, "/v1/jobs", "{\"model\":\"echo\",\"input\":{},\"webhook\":5}"),
                       400);
    ASSERT_STR_CONTAINS(d, "webhook");
    d = ASSERT_PROBLEM(tl_post(f, "/v1/jobs",
                               "{\"model\":\"echo\",\"input\":{},"
                               "\"webhook_events\":[\"completed\"]}"),
                       400);
    ASSERT_STR_CONTAINS(d, "webhook_events");
    d = ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", url, "[\"done\"]"), 422);
    ASSERT_STR_CONTAINS(d, "webhook_events[0]");
    d = ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", url, "[\"running\", 3]"), 422);
    ASSERT_STR_CONTAINS(d, "webhook_events[1]");
    d = ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", url, "[]"), 400);
    ASSERT_STR_CONTAINS(d, "non-empty");
    ASSERT_PROBLEM(submit_hook_resp(f, "echo", "{}", url, "\"completed\""), 400);
    ASSERT_EQ_INT(job_keys(f), 0);
    /* The same body with good fields is accepted. */
    submit_hook(f, "echo", "{}", url, "[\"completed\", \"running\"]");
}

/* Each tenant's deliveries are signed with its own secret (made by fleetctl tenant add),
 * not the gateway's: another tenant's receiver cannot verify or forge them. */
TL_TEST(tenant_secret_signs_its_deliveries) {
    const char *tenant_secret = "whsec_dGVuYW50LXNlY3JldC1rZXktb2YtMzItYnl0ZXMhIQ==";
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .gateway_env = {HOOK_ENV, "FLEET_AUTH=on"}});
    /* sha256("fk_hooks") */
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant hooks role tenant", f->prefix,
                 "b47e3663c1f3f158119482327c730189fe1aafc549a6fabbb4083efc8c0a868b");
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:hooks name hooks webhook_secret %s", f->prefix,
                 tenant_secret);
    tl_receiver *rx = tl_receiver_start(0);
    tl_req req = {.method = "POST",
                  .body = tl_printf("{\"model\":\"echo\",\"input\":1,\"webhook\":\"%s\"}",
                                    tl_receiver_url(rx, "/"))};
    req.headers[0] = "Authorization: Bearer fk_hooks";
    ASSERT_HTTP_STATUS(tl_request(f, "/v1/jobs", req), 202);
    wait_requests(rx, 1, TL_WAIT_MS);
    const tl_received *q = tl_receiver_get(rx, 0);
    const char *id = tl_received_header(q, "webhook-id");
    const char *ts = tl_received_header(q, "webhook-timestamp");
    const char *sig = tl_received_header(q, "webhook-signature");
    ASSERT_TRUE(signature_matches(sig,
                                  expected_signature(tenant_secret, id, ts, q->body, q->body_len)));
    ASSERT_FALSE(delivery_verifies(q)); /* not the gateway's secret */
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(signature_verifies_independently),
        TL_CASE(event_types_follow_the_subscription),
        TL_CASE(retry_500_then_200_same_webhook_id),
        TL_CASE(receiver_down_then_up_is_delivered),
        TL_CASE(gone_410_stops_and_other_4xx_stop),
        TL_CASE(exhausted_retries_go_to_the_dead_letter_stream),
        TL_CASE(retry_after_is_honoured),
        TL_CASE(two_gateways_deliver_each_event_once),
        TL_CASE(killed_gateway_hands_its_delivery_to_another),
        TL_CASE(slow_delivery_is_not_taken_over_by_a_live_gateway),
        TL_CASE(ssrf_refuses_private_targets),
        TL_CASE(ipv6_literal_receiver_gets_signed_delivery),
        TL_CASE(ipv4_inside_ipv6_is_refused_at_submit),
        TL_CASE(no_secret_refuses_webhooks),
        TL_CASE(bad_webhook_fields_are_400_or_422),
        TL_CASE(tenant_secret_signs_its_deliveries),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
