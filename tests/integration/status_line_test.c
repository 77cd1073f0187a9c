/* status_line_test: every answer's status line carries the status's real reason phrase
 * (RFC 9110), read off a raw socket: libevhtp writes "UNKNOWN" for statuses its own table
 * lacks (422, 425, 429, 431), and the gateway corrects it (gateway/http.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testlib.h"

/* Sends req on a fresh connection; returns the answer's first line, without its CR LF. */
static const char *first_line(tl_fleet *f, const char *req, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) FAILF("socket: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)f->gateway_port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) FAILF("connect: %s", strerror(errno));
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) break; /* refused early (413, 431): the answer is read below */
        sent += (size_t)n;
    }
    char buf[512];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n")) break;
    }
    close(fd);
    buf[got] = '\0';
    char *eol = strstr(buf, "\r\n");
    if (!eol) FAILF("no status line in the answer to %.60s...: '%s'", req, buf);
    *eol = '\0';
    return tl_printf("%s", buf);
}

static const char *request(tl_fleet *f, const char *method, const char *path,
                           const char *extra_headers, const char *body) {
    const char *req = tl_printf("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
                                "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                method, path, extra_headers ? extra_headers : "",
                                body ? strlen(body) : 0, body ? body : "");
    return first_line(f, req, strlen(req));
}

static const char *bearer(const char *key) {
    return tl_printf("Authorization: Bearer %s\r\n", key);
}

/* A tenant with an API key (auth on); max_active 0 means no limit. */
static void add_tenant(tl_fleet *f, const char *name, const char *key, int max_active) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    if (max_active > 0)
        tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s max_active %d", f->prefix, name, max_active);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role tenant", f->prefix, hex, name);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}

#define JOB(n) "{\"model\": \"echo\", \"input\": " #n "}"

TL_TEST(every_refusal_has_its_real_reason_phrase) {
    /* No worker: jobs stay queued. A queue of two, a body cap of 1 KiB. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_AUTH=on", "FLEET_MAX_QUEUE=2", "FLEET_MAX_BODY=1024"}});
    add_tenant(f, "small", "fk_small_status_line", 1);
    add_tenant(f, "big", "fk_big_status_line", 0);
    const char *small = bearer("fk_small_status_line"), *big = bearer("fk_big_status_line");

    ASSERT_EQ_STR(request(f, "POST", "/v1/jobs", small, "{\"model\": \"nope\", \"input\": 1}"),
                  "HTTP/1.1 422 Unprocessable Content");
    tl_resp *sub = tl_request(f, "/v1/jobs",
                              (tl_req){.method = "POST",
                                       .body = JOB(1),
                                       .headers = {"Authorization: Bearer fk_small_status_line"}});
    ASSERT_HTTP_STATUS(sub, 202);
    const char *id = tl_jstr(sub->json, "id");
    ASSERT_EQ_STR(request(f, "GET", tl_printf("/v1/jobs/%s/result", id), small, NULL),
                  "HTTP/1.1 425 Too Early");
    /* Its one active job is queued: the next submit is over max_active (the queue has
     * room for one more). */
    ASSERT_EQ_STR(request(f, "POST", "/v1/jobs", small, JOB(2)), "HTTP/1.1 429 Too Many Requests");
    /* Another tenant fills the queue (FLEET_MAX_QUEUE=2), then finds it full. */
    ASSERT_EQ_STR(request(f, "POST", "/v1/jobs", big, JOB(3)), "HTTP/1.1 202 Accepted");
    ASSERT_EQ_STR(request(f, "POST", "/v1/jobs", big, JOB(4)), "HTTP/1.1 503 Service Unavailable");
    ASSERT_EQ_STR(request(f, "GET", "/v1/jobs", NULL, NULL), "HTTP/1.1 401 Unauthorized");
    ASSERT_EQ_STR(request(f, "GET", "/v1/no-such-route", small, NULL), "HTTP/1.1 404 Not Found");
    ASSERT_EQ_STR(request(f, "GET", tl_printf("/v1/jobs/%s", id), small, NULL), "HTTP/1.1 200 OK");

    /* Refused by the head guard before libevhtp parses anything. */
    char *body = tl_alloc(2048);
    memset(body, 'x', 2047);
    ASSERT_EQ_STR(request(f, "POST", "/v1/jobs", small, body), "HTTP/1.1 413 Content Too Large");
    ASSERT_EQ_STR(request(f, "GET", tl_printf("/v1/jobs?x=%s", body), small, NULL),
                  "HTTP/1.1 414 URI Too Long");
    char *many = tl_alloc(200 * 16 + 1);
    for (int i = 0; i < 200; i++) strcat(many, tl_printf("X-H%03d: v\r\n", i));
    ASSERT_EQ_STR(request(f, "GET", "/v1/jobs", many, NULL),
                  "HTTP/1.1 431 Request Header Fields Too Large");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(every_refusal_has_its_real_reason_phrase)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
