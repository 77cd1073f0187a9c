/* tl_http.c: an HTTP client over libcurl's easy interface, one fresh connection per
 * request (so that no idle keep-alive connection outlives a test), and JSON helpers. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tl_internal.h"

/* ------------------------------------------------------------ responses ------------- */

typedef struct growbuf {
    char *p;
    size_t len, cap;
} growbuf;

static void growbuf_add(growbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = tl_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
    growbuf_add(ud, ptr, size * n);
    return size * n;
}

static void free_headers(tl_resp *r) {
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
    tl_resp *r = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
        free_headers(r);
        return len;
    }
    const char *colon = memchr(ptr, ':', len);
    if (!colon) return len;
    size_t nlen = (size_t)(colon - ptr);
    const char *v = colon + 1;
    const char *end = ptr + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    r->headers = tl_xrealloc(r->headers, (r->nheaders + 1) * sizeof(tl_header));
    tl_header *h = &r->headers[r->nheaders++];
    h->name = tl_xmalloc(nlen + 1);
    memcpy(h->name, ptr, nlen);
    h->name[nlen] = '\0';
    h->value = tl_xmalloc((size_t)(end - v) + 1);
    memcpy(h->value, v, (size_t)(end - v));
    h->value[end - v] = '\0';
    return len;
}

static void resp_free(void *p) {
    tl_resp *r = p;
    if (!r) return;
    free_headers(r);
    free(r->body);
    if (r->json) json_decref(r->json);
    free(r);
}

const char *tl_urlencode(const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = tl_xmalloc(n * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    tl_defer(free, out);
    return out;
}

const char *tl_resp_header(const tl_resp *r, const char *name) {
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

/* One request; the response is the caller's (resp_free). NULL + err on a transport
 * error. */
static tl_resp *http_raw(const tl_req *req, char *err, size_t errlen) {
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "curl_easy_init failed");
        return NULL;
    }
    tl_resp *r = tl_xmalloc(sizeof(*r));
    memset(r, 0, sizeof(*r));
    growbuf body = {0};
    growbuf_add(&body, "", 0);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;

    const char *method = req->method ? req->method : (req->body ? "POST" : "GET");
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms : 30000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy from the environment */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0 || req->body) {
        if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (req->body) {
        size_t len = req->body_len ? req->body_len : strlen(req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        const char *ct = req->content_type ? req->content_type : "application/json";
        char line[256];
        snprintf(line, sizeof(line), "Content-Type:%s%s", ct[0] ? " " : "", ct);
        hdrs = curl_slist_append(hdrs, line);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    for (int i = 0; i < 16 && req->headers[i]; i++) hdrs = curl_slist_append(hdrs, req->headers[i]);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s%s%s", method, req->url, curl_easy_strerror(rc),
                 errbuf[0] ? ": " : "", errbuf);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        free(body.p);
        resp_free(r);
        return NULL;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    r->body = body.p;
    r->body_len = body.len;
    r->json = r->body_len ? json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL) : NULL;
    const char *ct = tl_resp_header(r, "Content-Type");
    r->content_type = ct ? ct : "";
    return r;
}

tl_resp *tl_http_try(const tl_req *req, char *err, size_t errlen) {
    tl_resp *r = http_raw(req, err, errlen);
    if (r) tl_defer(resp_free, r);
    return r;
}

tl_resp *tl_http(const tl_req *req) {
    char err[CURL_ERROR_SIZE + 512];
    tl_resp *r = tl_http_try(req, err, sizeof(err));
    if (!r) {
        const char *dead = tl_procs_dead_summary();
        FAILF("HTTP transport error: %s%s%s", err, dead[0] ? "; died: " : "", dead);
    }
    return r;
}

tl_resp *tl_http_poll(const tl_req *req, char *err, size_t errlen) {
    return http_raw(req, err, errlen);
}

void tl_http_poll_free(tl_resp *r) { resp_free(r); }

static void print_resp(const tl_resp *r) {
    printf("      HTTP %ld, Content-Type: %s\n", r->status, r->content_type);
    const char *rid = tl_resp_header(r, "X-Request-ID");
    if (rid) printf("      X-Request-ID: %s\n", rid);
    printf("      body (%zu bytes): %.*s%s\n", r->body_len,
           (int)(r->body_len > 3000 ? 3000 : r->body_len), r->body,
           r->body_len > 3000 ? "..." : "");
}

void tl_assert_status(const char *file, int line, const tl_resp *r, long want, const char *what) {
    if (r->status == want) return;
    printf("    FAIL %s:%d: %s: HTTP status %ld, expected %ld\n", file, line, what, r->status,
           want);
    print_resp(r);
    tl_fail_printed();
}

const char *tl_assert_problem(const char *file, int line, const tl_resp *r, long want,
                              const char *what) {
    tl_assert_status(file, line, r, want, what);
    const char *why = NULL;
    json_t *j = r->json;
    const char *rid = tl_resp_header(r, "X-Request-ID");
    if (strncasecmp(r->content_type, "application/problem+json", 24) != 0)
        why = "Content-Type is not application/problem+json";
    else if (!json_is_object(j)) why = "body is not a JSON object";
    else if (!tl_jstr(j, "type") || !tl_jstr(j, "type")[0]) why = "no \"type\" string";
    else if (!tl_jstr(j, "title") || !tl_jstr(j, "title")[0]) why = "no \"title\" string";
    else if (!tl_jis_int(j, "status") || json_integer_value(json_object_get(j, "status")) != want)
        why = "\"status\" is not the HTTP status";
    else if (!tl_jstr(j, "detail") || !tl_jstr(j, "detail")[0]) why = "no \"detail\" string";
    else if (!tl_jstr(j, "request_id")) why = "no \"request_id\" string";
    else if (!rid || strcmp(rid, tl_jstr(j, "request_id")) != 0)
        why = "\"request_id\" differs from the X-Request-ID header";
    if (!why) return tl_jstr(j, "detail");
    printf("    FAIL %s:%d: %s is not a valid problem+json %ld: %s\n", file, line, what, want, why);
    print_resp(r);
    tl_fail_printed();
}

/* ------------------------------------------------------------ JSON ------------------ */

static void decref_json(void *j) { json_decref(j); }

json_t *tl_json_own(json_t *j) {
    if (j) tl_defer(decref_json, j);
    return j;
}

json_t *tl_json(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        FAILF("bad JSON in the test: %s (line %d, column %d): %s", e.text, e.line, e.column, text);
    return tl_json_own(j);
}

const char *tl_json_text(const json_t *j) {
    if (!j) return "(null)";
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    if (!s) return "(unprintable)";
    tl_defer(free, s);
    return s;
}

json_t *tl_jget(const json_t *j, const char *path) {
    const json_t *cur = j;
    const char *p = path;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char seg[256];
        if (n >= sizeof(seg)) return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++)
            if (!isdigit((unsigned char)seg[i])) digits = false;
        if (json_is_object(cur)) cur = json_object_get(cur, seg);
        else if (json_is_array(cur) && digits)
            cur = json_array_get(cur, (size_t)strtoul(seg, NULL, 10));
        else return NULL;
        p = dot ? dot + 1 : p + n;
    }
    return (json_t *)cur;
}

const char *tl_jstr(const json_t *j, const char *path) {
    json_t *v = tl_jget(j, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool tl_jis_int(const json_t *j, const char *path) { return json_is_integer(tl_jget(j, path)); }

long long tl_jint(const json_t *j, const char *path) {
    json_t *v = tl_jget(j, path);
    if (!json_is_integer(v)) FAILF("expected an integer at \"%s\" in %s", path, tl_json_text(j));
    return (long long)json_integer_value(v);
}

/* ------------------------------------------------------------ raw TCP --------------- */

static void tcp_close(void *arg) { close((int)(intptr_t)arg); }

int tl_tcp_send(int port, const char *data, int recv_ms) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) FAILF("socket: %s", strerror(errno));
    tl_defer(tcp_close, (void *)(intptr_t)fd);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        FAILF("connect 127.0.0.1:%d: %s", port, strerror(errno));
    struct timeval tv = {recv_ms / 1000, (recv_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (size_t n = strlen(data); n > 0;) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) FAILF("send to 127.0.0.1:%d: %s", port, strerror(errno));
        data += k;
        n -= (size_t)k;
    }
    return fd;
}

char *tl_tcp_read_all(int fd) {
    size_t cap = 4096, n = 0;
    char *buf = tl_alloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            char *bigger = tl_alloc(cap * 2);
            memcpy(bigger, buf, n);
            buf = bigger;
            cap *= 2;
        }
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    return buf;
}

int tl_tcp_sockets(int port, int state, long *unread) {
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) FAILF("/proc/net/tcp: %s", strerror(errno));
    char line[512];
    int n = 0;
    long queued = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st;
        unsigned long tx, rx;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %lx:%lx", &lport, &st, &tx, &rx) != 4) continue;
        if ((int)lport != port || (state && (int)st != state)) continue;
        n++;
        queued += (long)rx;
    }
    fclose(f);
    if (unread) *unread = queued;
    return n;
}
