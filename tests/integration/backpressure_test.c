/* backpressure_test: a large result is sent as the client reads it (gateway/out_stream.c),
 * so clients that ask for it and never read cannot grow the gateway: its memory stays
 * near FLEET_MAX_CONN_OUTPUT per connection. The bytes are those of the whole-document
 * path (a second gateway with a cap so large that it never streams), in JSON, msgpack,
 * as a file, and inside a Prefer: wait answer; a result that vanishes mid-stream closes
 * the connection short of its Content-Length; clients that leave mid-stream leak nothing
 * (the harness fails the case on a sanitizer report at the gateway's exit). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

#define WAIT_MS 60000
#define CLIENTS 40
#define RESULT_MB 8
#define CAP (1 << 20) /* the gateway's default FLEET_MAX_CONN_OUTPUT */
/* AddressSanitizer keeps freed memory in a quarantine of 256 MB by default, which the
 * gateway's RSS would show; a small one lets RSS measure what the gateway holds. Leak
 * checking stays on (the harness fails the case on any report in the gateway's log). */
#define ASAN_SMALL_QUARANTINE "ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=4"

/* ------------------------------------------------------------ raw clients ----------- */

typedef struct client {
    int fd;
    char *buf; /* everything received */
    size_t n, cap;
    bool eof;
} client;

static void client_close(void *arg) {
    client *c = arg;
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
}

/* Connects and sends one GET. (A tiny SO_RCVBUF would keep the kernel's share small, but
 * on loopback its window never opens by a whole segment again, and TCP stalls.) */
static client *client_get(int port, const char *path, const char *accept) {
    client *c = tl_alloc(sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(c->fd >= 0);
    tl_defer(client_close, c);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *req = tl_printf("GET %s HTTP/1.1\r\nHost: t\r\n%s%s%s\r\n", path,
                                accept ? "Accept: " : "", accept ? accept : "",
                                accept ? "\r\n" : "");
    ASSERT_EQ_INT(send(c->fd, req, strlen(req), 0), (long long)strlen(req));
    return c;
}

/* Reads what is there, at most max bytes, waiting up to ms for the first. */
static size_t client_read(client *c, size_t max, int ms) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (c->eof || poll(&p, 1, ms) <= 0) return 0;
    if (c->n + max + 1 > c->cap) {
        c->cap = (c->n + max + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
        ASSERT_NOT_NULL(c->buf);
    }
    ssize_t k = recv(c->fd, c->buf + c->n, max, 0);
    if (k <= 0) {
        c->eof = true;
        return 0;
    }
    c->n += (size_t)k;
    c->buf[c->n] = '\0';
    return (size_t)k;
}

static const char *client_body(const client *c, size_t *len) {
    const char *e = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL;
    if (!e) return NULL;
    *len = c->n - (size_t)(e + 4 - c->buf);
    return e + 4;
}

/* The Content-Length of the head received, or -1. */
static long long client_content_length(const client *c) {
    const char *h = c->buf ? strstr(c->buf, "Content-Length: ") : NULL;
    const char *e = c->buf ? strstr(c->buf, "\r\n\r\n") : NULL;
    if (!h || !e || h > e) return -1;
    return atoll(h + 16);
}

static bool has_head(void *arg) {
    client *c = arg;
    client_read(c, 65536, 5);
    return c->buf && strstr(c->buf, "\r\n\r\n");
}

/* Reads the whole answer slowly (small reads) until Content-Length bytes or EOF. */
static bool read_all(void *arg) {
    client *c = arg;
    size_t len = 0;
    long long want = client_content_length(c);
    for (int i = 0; i < 64 && !c->eof; i++) {
        if (!client_read(c, 262144, 2)) break;
        if (want >= 0 && client_body(c, &len) && (long long)len >= want) return true;
    }
    return c->eof || (want >= 0 && client_body(c, &len) && (long long)len >= want);
}

/* ------------------------------------------------------------ the gateway's memory --- */

static long rss_kb(pid_t pid) {
    char *s = tl_read_file(tl_printf("/proc/%d/status", (int)pid), NULL);
    const char *v = s ? strstr(s, "VmRSS:") : NULL;
    return v ? atol(v + 6) : -1;
}

typedef struct watch {
    pid_t pid;
    long max_kb;
    int64_t until_ms;
} watch;

/* Records the largest RSS seen until the window ends (a measurement, not a wait for a
 * condition: it always runs the whole window). */
static bool watch_rss(void *arg) {
    watch *w = arg;
    long kb = rss_kb(w->pid);
    if (kb > w->max_kb) w->max_kb = kb;
    return tl_now_ms() >= w->until_ms;
}

/* ------------------------------------------------------------ the fleet ------------- */

typedef struct setup {
    tl_fleet *f;
    int port, ref_port; /* the streaming gateway; the whole-document one */
    pid_t pid;
    const char *id;
} setup;

/* A fleet whose gateway streams (the default cap), a second gateway that never does, and
 * a succeeded echo job whose result is an RESULT_MB MB string. */
static setup start(void) {
    setup s = {0};
    s.f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                          .gateway_env = {"FLEET_MAX_BODY=20000000",
                                                          "FLEET_DRAIN_TIMEOUT=1",
                                                          ASAN_SMALL_QUARANTINE}});
    s.port = s.f->gateway_port;
    s.pid = s.f->gateway->pid;
    size_t n = (size_t)RESULT_MB << 20;
    char *body = tl_alloc(n + 64);
    int k = sprintf(body, "{\"model\":\"echo\",\"input\":\"");
    /* text with escapes JSON writes back: "\n" pairs become newlines in the result */
    for (size_t i = 0; i < n; i++) body[k + i] = "abcdefg/"[i % 8];
    for (size_t i = 500; i + 1 < n; i += 997) memcpy(body + k + i, "\\n", 2);
    strcpy(body + k + n, "\"}");
    tl_resp *r = tl_request(s.f, "/v1/jobs",
                            (tl_req){.method = "POST", .body = body, .body_len = k + n + 2});
    ASSERT_HTTP_STATUS(r, 202);
    s.id = tl_jstr(r->json, "id");
    tl_job_wait_status(s.f, s.id, "succeeded", WAIT_MS);
    s.f->opts.gateway_env[3] = "FLEET_MAX_CONN_OUTPUT=1073741824";
    tl_fleet_start_gateway(s.f);
    s.ref_port = s.f->gateway_port;
    return s;
}

/* The whole-document answer of the reference gateway, head and body. */
static client *reference(const setup *s, const char *path, const char *accept) {
    client *c = client_get(s->ref_port, path, accept);
    ASSERT_WAIT_FOR(read_all, c, WAIT_MS);
    return c;
}

static void assert_same_answer(const client *got, const client *want) {
    size_t gl = 0, wl = 0;
    const char *gb = client_body(got, &gl), *wb = client_body(want, &wl);
    ASSERT_NOT_NULL(gb);
    ASSERT_NOT_NULL(wb);
    ASSERT_TRUE(strncmp(got->buf, "HTTP/1.1 200", 12) == 0);
    ASSERT_EQ_INT(client_content_length(got), client_content_length(want));
    ASSERT_EQ_INT(gl, wl);
    ASSERT_TRUE(memcmp(gb, wb, gl) == 0);
    /* the heads differ only in X-Request-ID */
    const char *gct = strstr(got->buf, "Content-Type: "),
               *wct = strstr(want->buf, "Content-Type: ");
    ASSERT_NOT_NULL(gct);
    ASSERT_NOT_NULL(wct);
    ASSERT_TRUE(strncmp(gct, wct, (size_t)(strchr(wct, '\r') - wct)) == 0);
}

/* Opens n clients that ask for path and do not read, and asserts that the gateway's RSS
 * grows by less than n * 3 * CAP + 30 MB while they wait (the whole-document path holds
 * each answer in full: about 10 times more with RESULT_MB results). */
static client **not_reading(const setup *s, const char *path, int n) {
    client **c = tl_alloc(sizeof *c * (size_t)n);
    long before = rss_kb(s->pid);
    ASSERT_GT_INT(before, 0);
    for (int i = 0; i < n; i++) {
        c[i] = client_get(s->port, path, i % 2 ? "application/msgpack" : NULL);
        ASSERT_WAIT_FOR(has_head, c[i], WAIT_MS);
    }
    watch w = {.pid = s->pid, .max_kb = before, .until_ms = tl_now_ms() + 3000};
    tl_wait_for(watch_rss, &w, 10000);
    long grew_mb = (w.max_kb - before) / 1024;
    long bound_mb = (long)n * 3 * CAP / (1 << 20) + 30;
    tl_log("gateway RSS %ld MB before, %ld MB at most with %d clients not reading "
           "(+%ld MB; bound %ld MB)",
           before / 1024, w.max_kb / 1024, n, grew_mb, bound_mb);
    ASSERT_LT_INT(grew_mb, bound_mb);
    return c;
}

/* ------------------------------------------------------------ cases ----------------- */

TL_TEST(non_reading_clients_hold_little_memory) {
    setup s = start();
    const char *path = tl_printf("/v1/jobs/%s/result", s.id);
    client **c = not_reading(&s, path, CLIENTS);
    /* Now four of them read, slowly, and get exactly the whole-document bytes; the others
     * leave mid-stream (their streams are freed: LSan checks at the gateway's exit). */
    client *json = reference(&s, path, NULL), *mp = reference(&s, path, "application/msgpack");
    for (int i = 0; i < 4; i++) {
        ASSERT_WAIT_FOR(read_all, c[i], WAIT_MS);
        assert_same_answer(c[i], i % 2 ? mp : json);
    }
    for (int i = 4; i < CLIENTS; i++) {
        close(c[i]->fd);
        c[i]->fd = -1;
    }
    tl_resp *h = tl_get(s.f, "/healthz"); /* the reference gateway; then the streaming one */
    ASSERT_HTTP_STATUS(h, 200);
    client *after = client_get(s.port, "/healthz", NULL);
    ASSERT_WAIT_FOR(read_all, after, WAIT_MS);
    ASSERT_TRUE(strncmp(after->buf, "HTTP/1.1 200", 12) == 0);
    size_t jl = 0;
    client_body(json, &jl);
    ASSERT_GT_INT(jl, (long long)RESULT_MB << 20);
}

/* Prefer: wait answers carry the result after the job object: streamed the same way. */
TL_TEST(wait_answer_streams_the_result) {
    setup s = start();
    const char *path = tl_printf("/v1/jobs/%s?wait=5", s.id);
    client *got = not_reading(&s, path, 20)[0];
    ASSERT_WAIT_FOR(read_all, got, WAIT_MS);
    client *want = reference(&s, path, NULL);
    assert_same_answer(got, want);
    size_t len = 0;
    const char *b = client_body(got, &len);
    ASSERT_TRUE(len > ((size_t)RESULT_MB << 20));
    ASSERT_TRUE(strstr(b, "\"result\":\"abcdefg/") != NULL);
}

/* A result that follows the file convention downloads as its bytes, read in ranges. */
TL_TEST(file_result_streams_its_bytes) {
    setup s = start();
    size_t n = (size_t)RESULT_MB << 20;
    size_t cap = n + 256;
    char *mp = tl_alloc(cap);
    size_t k = 0;
    const char head[] = "\x82\xa5model\xa4"
                        "echo\xa5input\x83"
                        "\xac"
                        "content_type\xb8"
                        "application/octet-stream"
                        "\xa5"
                        "bytes\xc6";
    memcpy(mp, head, sizeof head - 1);
    k = sizeof head - 1;
    mp[k++] = (char)(n >> 24);
    mp[k++] = (char)(n >> 16);
    mp[k++] = (char)(n >> 8);
    mp[k++] = (char)n;
    for (size_t i = 0; i < n; i++) mp[k++] = (char)(i * 7 + (i >> 9));
    memcpy(mp + k,
           "\xa8"
           "filename\xa5"
           "x.bin",
           15);
    k += 15;
    tl_resp *r = tl_request(s.f, "/v1/jobs",
                            (tl_req){.method = "POST",
                                     .body = mp,
                                     .body_len = k,
                                     .content_type = "application/msgpack"});
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    tl_job_wait_status(s.f, id, "succeeded", WAIT_MS);
    const char *path = tl_printf("/v1/jobs/%s/result", id);
    client *got = not_reading(&s, path, 20)[0];
    ASSERT_WAIT_FOR(read_all, got, WAIT_MS);
    client *want = reference(&s, path, NULL);
    assert_same_answer(got, want);
    size_t len = 0;
    client_body(got, &len);
    ASSERT_EQ_INT(len, n);
    ASSERT_TRUE(strstr(got->buf, "filename=\"x.bin\"") != NULL);
}

/* The result key vanishes while a client is half-way: the connection closes before
 * Content-Length bytes (never a wrong or padded answer), and the gateway goes on. */
TL_TEST(result_vanishing_mid_stream_closes_the_connection) {
    setup s = start();
    const char *path = tl_printf("/v1/jobs/%s/result", s.id);
    client *c = client_get(s.port, path, NULL);
    ASSERT_WAIT_FOR(has_head, c, WAIT_MS);
    redisReply *keys = tl_redis_cmd(s.f->rc, "KEYS %s", tl_printf("*%s*result*", s.id));
    ASSERT_EQ_INT(keys->elements, 1);
    tl_redis_cmd(s.f->rc, "DEL %s", keys->element[0]->str);
    ASSERT_WAIT_FOR(read_all, c, WAIT_MS);
    size_t len = 0;
    client_body(c, &len);
    ASSERT_TRUE(c->eof);
    ASSERT_LT_INT(len, client_content_length(c));
    /* clients that leave mid-stream: the gateway frees their streams (LSan at its exit) */
    for (int i = 0; i < 4; i++) client_get(s.port, path, NULL);
    tl_resp *h = tl_get(s.f, "/healthz");
    ASSERT_HTTP_STATUS(h, 200);
}

/* Redis goes away mid-stream: the connection closes short, and the gateway stays up. */
TL_TEST(redis_lost_mid_stream_closes_the_connection) {
    setup s = start();
    const char *path = tl_printf("/v1/jobs/%s/result", s.id);
    client *c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = client_get(s.port, path, i % 2 ? "application/msgpack" : NULL);
        ASSERT_WAIT_FOR(has_head, c[i], WAIT_MS);
    }
    tl_redis_stop(s.f->redis);
    for (int i = 0; i < 4; i++) {
        ASSERT_WAIT_FOR(read_all, c[i], WAIT_MS);
        size_t len = 0;
        client_body(c[i], &len);
        ASSERT_TRUE(c[i]->eof);
        ASSERT_LT_INT(len, client_content_length(c[i]));
    }
    ASSERT_TRUE(tl_proc_alive(s.f->gateway));
}

/* Reads until the gateway closes the connection. */
static bool read_until_eof(void *arg) {
    client *c = arg;
    while (client_read(c, 262144, 2) > 0) {
    }
    return c->eof;
}

/* Reads a chunked answer until its last chunk. */
static bool read_until_last_chunk(void *arg) {
    client *c = arg;
    while (client_read(c, 262144, 2) > 0) {
    }
    return c->eof || (c->n >= 5 && memcmp(c->buf + c->n - 5, "0\r\n\r\n", 5) == 0);
}

/* An event stream whose client does not read: while the connection holds more than
 * FLEET_MAX_CONN_OUTPUT unsent, progress events are skipped (each event carries the whole
 * job, so the next one sent says where it is), and the final event still arrives. The
 * job's 1,000 steps with 4 KB of metadata are about 5 MB of events: more than the cap and
 * the kernel's socket buffers, so a stream that wrote every event would hand the client
 * every one of them once it reads. */
TL_TEST(event_stream_skips_steps_for_a_client_that_does_not_read) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_MAX_CONN_OUTPUT=65536"},
                                                  .worker_env = {"FLEET_PROGRESS_INTERVAL_MS=0"}});
    char *meta = tl_alloc(4200);
    memset(meta, 'm', 4000);
    const char *body = tl_printf("{\"model\":\"sleep\",\"input\":{\"ms\":4000,\"steps\":1000},"
                                 "\"metadata\":{\"pad\":\"%s\"}}",
                                 meta);
    tl_resp *r = tl_request(f, "/v1/jobs",
                            (tl_req){.method = "POST", .body = body, .body_len = strlen(body)});
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    client *c = client_get(f->gateway_port, tl_printf("/v1/jobs/%s/events", id), NULL);
    tl_job_wait_status(f, id, "succeeded", WAIT_MS);
    ASSERT_WAIT_FOR(read_until_last_chunk, c, WAIT_MS); /* it ends after its final event */
    int progress = 0;
    for (const char *p = c->buf; (p = strstr(p, "event: progress\n")) != NULL; p++) progress++;
    tl_log("%d progress events of 1000 steps reached the client", progress);
    ASSERT_TRUE(strstr(c->buf, "event: final\n") != NULL);
    ASSERT_LT_INT(progress, 900);
}

/* A request pipelined behind a streamed result (sent in the same packet) is answered
 * after the whole result, on the same connection. Before, libevhtp parsed it while the
 * result was going out, and the connection closed without a byte of either answer. */
TL_TEST(request_pipelined_behind_a_stream_is_answered_after_it) {
    setup s = start();
    client *c = tl_alloc(sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(c->fd >= 0);
    tl_defer(client_close, c);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)s.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *req = tl_printf("GET /v1/jobs/%s/result HTTP/1.1\r\nHost: t\r\n\r\n"
                                "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                                s.id);
    ASSERT_EQ_INT(send(c->fd, req, strlen(req), 0), (long long)strlen(req));
    ASSERT_WAIT_FOR(read_until_eof, c, WAIT_MS);
    client *want = reference(&s, tl_printf("/v1/jobs/%s/result", s.id), NULL);
    size_t wl = 0;
    const char *wb = client_body(want, &wl);
    ASSERT_NOT_NULL(wb);
    ASSERT_TRUE(strncmp(c->buf, "HTTP/1.1 200", 12) == 0);
    size_t gl = 0;
    const char *gb = client_body(c, &gl);
    ASSERT_NOT_NULL(gb);
    ASSERT_GT_INT(gl, wl);
    ASSERT_TRUE(memcmp(gb, wb, wl) == 0);
    const char *second = gb + wl;
    ASSERT_TRUE(strncmp(second, "HTTP/1.1 200", 12) == 0);
    ASSERT_TRUE(strstr(second, "{\"status\":\"ok\"}") != NULL);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(non_reading_clients_hold_little_memory),
        TL_CASE(wait_answer_streams_the_result),
        TL_CASE(file_result_streams_its_bytes),
        TL_CASE(result_vanishing_mid_stream_closes_the_connection),
        TL_CASE(redis_lost_mid_stream_closes_the_connection),
        TL_CASE(event_stream_skips_steps_for_a_client_that_does_not_read),
        TL_CASE(request_pipelined_behind_a_stream_is_answered_after_it),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
