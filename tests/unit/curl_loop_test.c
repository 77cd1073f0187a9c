/* curl_loop_test: webhook POSTs through libcurl's multi interface on a real libevent
 * loop (gateway/curl_loop.c), against the harness's HTTP receiver (tl_receiver). No
 * Redis, no fleet binary; loopback only. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "curl_loop.h"
#include "testlib.h"

/* ------------------------------------------------------------ helpers --------------- */

typedef struct loop {
    struct event_base *base;
    struct event *tick; /* wakes the loop now and then so that run_until sees its deadline */
    gw_curl *c;
} loop;

static void on_tick(evutil_socket_t fd, short what, void *arg) {}

static void loop_free(void *p) {
    loop *l = p;
    gw_curl_free(l->c);
    if (l->tick) event_free(l->tick);
    event_base_free(l->base);
    free(l);
}

static loop *loop_new(void) {
    loop *l = calloc(1, sizeof *l);
    ASSERT_NOT_NULL(l);
    l->base = event_base_new();
    ASSERT_NOT_NULL(l->base);
    l->tick = event_new(l->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    event_add(l->tick, &tv);
    l->c = gw_curl_new(l->base);
    ASSERT_NOT_NULL(l->c);
    tl_defer(loop_free, l);
    return l;
}

/* Runs the loop until cond(arg) or deadline_ms pass; returns cond(arg). */
static bool run_until(loop *l, bool (*cond)(void *), void *arg, int deadline_ms) {
    int64_t end = tl_now_ms() + deadline_ms;
    while (!cond(arg) && tl_now_ms() < end) event_base_loop(l->base, EVLOOP_ONCE);
    return cond(arg);
}

/* What a callback saw. */
typedef struct got {
    int calls;
    gw_fetch_result r;
    char error[512];
} got;

static void on_done(const gw_fetch_result *res, void *arg) {
    got *g = arg;
    g->calls++;
    g->r = *res;
    snprintf(g->error, sizeof g->error, "%s", res->error);
    g->r.error = g->error;
}

static bool is_done(void *arg) { return ((got *)arg)->calls > 0; }

/* Posts f and runs the loop until its callback; asserts it ran exactly once. */
static got *fetch(loop *l, const gw_fetch *f) {
    got *g = tl_alloc(sizeof *g);
    ASSERT_EQ_INT(gw_curl_post(l->c, f, on_done, g), 0);
    ASSERT_EQ_INT(g->calls, 0); /* never from inside gw_curl_post */
    ASSERT_EQ_INT(gw_curl_active(l->c), 1);
    if (!run_until(l, is_done, g, 20000)) FAILF("no callback within 20 s for %s", f->url);
    ASSERT_EQ_INT(g->calls, 1);
    ASSERT_EQ_INT(gw_curl_active(l->c), 0);
    tl_log("%s -> status %ld, curl %d, error \"%s\", retry_after %ld, %.3f s", f->url, g->r.status,
           g->r.curl_code, g->r.error, g->r.retry_after_s, g->r.total_s);
    return g;
}

/* ------------------------------------------------------------ cases ----------------- */

TL_TEST(posts_json_and_reports_the_status) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    const char *hdrs[] = {"X-Fleet-Event: job.succeeded", NULL};
    const char *body = "{\"id\":\"j1\",\"status\":\"succeeded\"}";
    got *g = fetch(l, &(gw_fetch){.url = tl_receiver_url(rx, "/hook?t=1"),
                                  .body = body,
                                  .body_len = strlen(body),
                                  .headers = hdrs,
                                  .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 200);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_OK);
    ASSERT_EQ_STR(g->r.error, "");
    ASSERT_EQ_INT(g->r.retry_after_s, -1);
    ASSERT_TRUE(g->r.total_s > 0 && g->r.total_s < 5);

    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
    const tl_received *q = tl_receiver_get(rx, 0);
    ASSERT_EQ_STR(q->method, "POST");
    ASSERT_EQ_STR(q->path, "/hook?t=1");
    ASSERT_EQ_STR(q->body, body);
    ASSERT_EQ_STR(tl_received_header(q, "Content-Type"), "application/json");
    ASSERT_EQ_STR(tl_received_header(q, "User-Agent"), "fleet-webhook/1");
    ASSERT_EQ_STR(tl_received_header(q, "X-Fleet-Event"), "job.succeeded");
    ASSERT_NULL(tl_received_header(q, "Expect"));

    /* A Content-Type header replaces the default; bodies are bytes (a NUL included). */
    const char *hdrs2[] = {"content-type: application/octet-stream", NULL};
    g = fetch(l, &(gw_fetch){.url = tl_receiver_url(rx, "/bin"),
                             .body = "a\0b",
                             .body_len = 3,
                             .headers = hdrs2});
    ASSERT_EQ_INT(g->r.status, 200);
    q = tl_receiver_get(rx, 1);
    ASSERT_EQ_STR(tl_received_header(q, "Content-Type"), "application/octet-stream");
    ASSERT_EQ_INT(q->body_len, 3);
    ASSERT_EQ_INT(memcmp(q->body, "a\0b", 3), 0);

    /* An empty body; and the kept-alive connection is reused. */
    g = fetch(l, &(gw_fetch){.url = tl_receiver_url(rx, "/empty")});
    ASSERT_EQ_INT(g->r.status, 200);
    q = tl_receiver_get(rx, 2);
    ASSERT_EQ_INT(q->body_len, 0);
    ASSERT_EQ_STR(tl_received_header(q, "Content-Length"), "0");
    ASSERT_EQ_INT(q->conn, tl_receiver_get(rx, 0)->conn);

    /* Refused at once: no URL. */
    ASSERT_EQ_INT(gw_curl_post(l->c, &(gw_fetch){.url = NULL}, on_done, NULL), -1);
    ASSERT_EQ_INT(gw_curl_active(l->c), 0);
}

TL_TEST(reports_error_statuses_retry_after_and_redirects) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    const char *url = tl_receiver_url(rx, "/hook");
    tl_receiver_respond(rx, 503, "Retry-After: 7", 0);
    got *g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2});
    ASSERT_EQ_INT(g->r.status, 503);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_OK);
    ASSERT_EQ_STR(g->r.error, "");
    ASSERT_EQ_INT(g->r.retry_after_s, 7);

    /* An HTTP date two minutes ahead. */
    char date[64], line[96];
    time_t when = time(NULL) + 120;
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&when, &tm));
    snprintf(line, sizeof line, "Retry-After: %s", date);
    tl_receiver_respond(rx, 429, line, 0);
    g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2});
    ASSERT_EQ_INT(g->r.status, 429);
    ASSERT_GE_INT(g->r.retry_after_s, 115);
    ASSERT_LE_INT(g->r.retry_after_s, 120);

    /* No redirects: a 3xx is just a status. */
    tl_receiver_respond(rx, 302, tl_printf("Location: %s", tl_receiver_url(rx, "/elsewhere")), 0);
    g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2});
    ASSERT_EQ_INT(g->r.status, 302);
    ASSERT_EQ_INT(g->r.retry_after_s, -1);
    ASSERT_FALSE(tl_receiver_wait_count(rx, 4, 200));

    /* Only http and https. */
    g = fetch(l, &(gw_fetch){.url = "file:///etc/passwd", .body = "{}", .body_len = 2});
    ASSERT_EQ_INT(g->r.status, 0);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_UNSUPPORTED_PROTOCOL);
}

TL_TEST(parses_retry_after_values) {
    time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    ASSERT_EQ_INT(gw_curl_parse_retry_after("120", now), 120);
    ASSERT_EQ_INT(gw_curl_parse_retry_after(" 0 \r\n", now), 0);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now), 60);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now), 30);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("Wed Oct 21 07:28:10 2015", now), 10);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now), 0);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("99999999999999999999999", now), 365L * 24 * 3600);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("-5", now), -1);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("1.5", now), -1);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("soon", now), -1);
    ASSERT_EQ_INT(gw_curl_parse_retry_after("", now), -1);
    ASSERT_EQ_INT(gw_curl_parse_retry_after(NULL, now), -1);
}

TL_TEST(a_slow_receiver_times_out) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    tl_receiver_respond(rx, 200, NULL, 5000);
    got *g = fetch(l, &(gw_fetch){.url = tl_receiver_url(rx, "/slow"),
                                  .body = "{}",
                                  .body_len = 2,
                                  .timeout_ms = 300});
    ASSERT_EQ_INT(g->r.status, 0);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_OPERATION_TIMEDOUT);
    ASSERT_STR_CONTAINS_CI(g->r.error, "timed out");
    ASSERT_TRUE(g->r.total_s >= 0.25 && g->r.total_s < 3);
    ASSERT_EQ_INT(tl_receiver_count(rx), 1); /* it arrived; the answer did not */
}

TL_TEST(a_stopped_receiver_is_a_connection_error) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    const char *url = tl_receiver_url(rx, "/hook");
    tl_receiver_stop(rx);
    got *g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 0);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_COULDNT_CONNECT);
    ASSERT_NE_STR(g->r.error, "");
    /* Back again: a kept-alive connection from before would be stale; a new one works. */
    tl_receiver_restart(rx);
    g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 200);
    tl_receiver_stop(rx);
    tl_receiver_restart(rx);
    g = fetch(l, &(gw_fetch){.url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 200);
    ASSERT_EQ_INT(tl_receiver_count(rx), 2);
}

typedef struct policy {
    int allow;
    int calls;
    char last[64];
} policy;

static int check_addr(const struct sockaddr *sa, void *arg) {
    policy *p = arg;
    p->calls++;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(p->last, sizeof p->last, "%s:%d", a, ntohs(in->sin_port));
    }
    return p->allow;
}

TL_TEST(the_ssrf_policy_sees_every_connection) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    const char *url = tl_receiver_url(rx, "/hook");
    policy deny = {.allow = 0};
    got *g = fetch(l, &(gw_fetch){.url = url,
                                  .body = "{}",
                                  .body_len = 2,
                                  .allow_addr = check_addr,
                                  .allow_arg = &deny});
    ASSERT_EQ_INT(g->r.status, 0);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_COULDNT_CONNECT);
    ASSERT_EQ_STR(g->r.error, "connection to 127.0.0.1 refused by the SSRF policy");
    ASSERT_EQ_INT(deny.calls, 1);
    ASSERT_EQ_STR(deny.last, tl_printf("127.0.0.1:%d", tl_receiver_port(rx)));
    ASSERT_FALSE(tl_receiver_wait_count(rx, 1, 300));

    policy allow = {.allow = 1};
    g = fetch(l, &(gw_fetch){.url = url,
                             .body = "{}",
                             .body_len = 2,
                             .allow_addr = check_addr,
                             .allow_arg = &allow});
    ASSERT_EQ_INT(g->r.status, 200);
    ASSERT_EQ_INT(allow.calls, 1);
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
}

TL_TEST(a_pin_resolves_the_host) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    int port = tl_receiver_port(rx);
    const char *url = tl_printf("http://example.invalid:%d/x", port);
    got *g = fetch(l, &(gw_fetch){.url = url,
                                  .body = "{}",
                                  .body_len = 2,
                                  .pin = tl_printf("example.invalid:%d:127.0.0.1", port),
                                  .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 200);
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
    const tl_received *q = tl_receiver_get(rx, 0);
    ASSERT_EQ_STR(q->path, "/x");
    ASSERT_EQ_STR(tl_received_header(q, "Host"), tl_printf("example.invalid:%d", port));

    /* Without it (another multi handle: pins live in a handle's DNS cache), the name
     * does not resolve. */
    loop *l2 = loop_new();
    g = fetch(l2, &(gw_fetch){.url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000});
    ASSERT_EQ_INT(g->r.status, 0);
    ASSERT_EQ_INT(g->r.curl_code, CURLE_COULDNT_RESOLVE_HOST);
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
}

typedef struct many {
    got g[50];
    int done;
} many;

static bool all_done(void *arg) {
    many *m = arg;
    int n = 0;
    for (int i = 0; i < 50; i++) n += m->g[i].calls > 0;
    return n == 50;
}

TL_TEST(fifty_concurrent_posts_all_complete) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    many *m = tl_alloc(sizeof *m);
    const char *url = tl_receiver_url(rx, "/many");
    for (int i = 0; i < 50; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "{\"i\":%d}", i);
        ASSERT_EQ_INT(gw_curl_post(l->c,
                                   &(gw_fetch){.url = url,
                                               .body = body,
                                               .body_len = (size_t)n,
                                               .timeout_ms = 10000},
                                   on_done, &m->g[i]),
                      0);
    }
    ASSERT_EQ_INT(gw_curl_active(l->c), 50);
    ASSERT_TRUE(run_until(l, all_done, m, 20000));
    ASSERT_EQ_INT(gw_curl_active(l->c), 0);
    bool seen[50] = {false};
    for (int i = 0; i < 50; i++) {
        ASSERT_EQ_INT(m->g[i].calls, 1);
        ASSERT_EQ_INT(m->g[i].r.status, 200);
    }
    ASSERT_EQ_INT(tl_receiver_count(rx), 50);
    for (size_t i = 0; i < 50; i++) {
        int k = -1;
        ASSERT_EQ_INT(sscanf(tl_receiver_get(rx, i)->body, "{\"i\":%d}", &k), 1);
        ASSERT_TRUE(k >= 0 && k < 50 && !seen[k]);
        seen[k] = true;
    }
}

/* A callback may post again on the same handle. */
typedef struct chain {
    loop *l;
    const char *url;
    int hops;
    got last;
} chain;

static void on_hop(const gw_fetch_result *res, void *arg) {
    chain *ch = arg;
    on_done(res, &ch->last);
    if (res->status == 200 && ++ch->hops < 3) {
        if (gw_curl_post(ch->l->c, &(gw_fetch){.url = ch->url, .body = "{}", .body_len = 2}, on_hop,
                         ch) != 0)
            ch->hops = 100;
    }
}

static bool chain_done(void *arg) {
    chain *ch = arg;
    return ch->hops >= 3 || (ch->last.calls > 0 && ch->last.r.status != 200);
}

TL_TEST(a_callback_may_post_again) {
    tl_receiver *rx = tl_receiver_start(0);
    chain *ch = tl_alloc(sizeof *ch);
    ch->l = loop_new();
    ch->url = tl_receiver_url(rx, "/chain");
    ASSERT_EQ_INT(gw_curl_post(ch->l->c, &(gw_fetch){.url = ch->url, .body = "{}", .body_len = 2},
                               on_hop, ch),
                  0);
    ASSERT_TRUE(run_until(ch->l, chain_done, ch, 10000));
    ASSERT_EQ_INT(ch->hops, 3);
    ASSERT_EQ_INT(ch->last.calls, 3);
    ASSERT_EQ_INT(gw_curl_active(ch->l->c), 0);
    ASSERT_EQ_INT(tl_receiver_count(rx), 3);
}

static bool three_arrived(void *arg) { return tl_receiver_count(arg) >= 3; }

TL_TEST(free_aborts_transfers_in_flight) {
    tl_receiver *rx = tl_receiver_start(0);
    loop *l = loop_new();
    for (int i = 0; i < 3; i++) tl_receiver_respond(rx, 200, NULL, 30000);
    got *g = tl_alloc(4 * sizeof *g);
    const char *url = tl_receiver_url(rx, "/held");
    const char *hdrs[] = {"X-A: 1", NULL};
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(gw_curl_post(l->c,
                                   &(gw_fetch){.url = url,
                                               .body = "{\"x\":1}",
                                               .body_len = 7,
                                               .headers = hdrs,
                                               .pin = "localhost:1:127.0.0.1",
                                               .timeout_ms = 60000},
                                   on_done, &g[i]),
                      0);
    ASSERT_TRUE(run_until(l, three_arrived, rx, 10000)); /* all three held by the receiver */
    /* One more that has not even started. */
    ASSERT_EQ_INT(gw_curl_post(l->c, &(gw_fetch){.url = url, .body = "{}", .body_len = 2}, on_done,
                               &g[3]),
                  0);
    ASSERT_EQ_INT(gw_curl_active(l->c), 4);
    for (int i = 0; i < 4; i++) ASSERT_EQ_INT(g[i].calls, 0);
    /* The receiver would answer 200 after 30 s: status 0 and "aborted" below show that
     * free cut the transfers instead of waiting for them. */
    gw_curl_free(l->c);
    l->c = NULL;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ_INT(g[i].calls, 1);
        ASSERT_EQ_INT(g[i].r.status, 0);
        ASSERT_EQ_INT(g[i].r.curl_code, CURLE_ABORTED_BY_CALLBACK);
        ASSERT_EQ_STR(g[i].r.error, "aborted");
        ASSERT_EQ_INT(g[i].r.retry_after_s, -1);
    }
    /* The loop holds nothing of the gw_curl any more: only the tick is left. */
    event_free(l->tick);
    l->tick = NULL;
    ASSERT_EQ_INT(event_base_loop(l->base, EVLOOP_NONBLOCK), 1); /* 1: no events */
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(posts_json_and_reports_the_status),
        TL_CASE(reports_error_statuses_retry_after_and_redirects),
        TL_CASE(parses_retry_after_values),
        TL_CASE(a_slow_receiver_times_out),
        TL_CASE(a_stopped_receiver_is_a_connection_error),
        TL_CASE(the_ssrf_policy_sees_every_connection),
        TL_CASE(a_pin_resolves_the_host),
        TL_CASE(fifty_concurrent_posts_all_complete),
        TL_CASE(a_callback_may_post_again),
        TL_CASE(free_aborts_transfers_in_flight),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
