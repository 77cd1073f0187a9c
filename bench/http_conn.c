/* http_conn.c: a minimal HTTP/1.1 keep-alive client connection (see http_conn.h). */
#include "http_conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Where the response parser is. A response is: status line, headers, then a body framed
 * by Content-Length, by chunks, or by the end of the connection. */
typedef enum parse_state {
    P_STATUS,
    P_HEADERS,
    P_BODY_LEN,
    P_CHUNK_SIZE,
    P_CHUNK_DATA,
    P_CHUNK_CRLF,
    P_TRAILERS,
    P_BODY_EOF,
} parse_state;

struct bench_conn {
    struct event_base *base;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct bufferevent *bev; /* NULL while closed */
    unsigned long opens;

    bool busy; /* a request is in flight; cb/arg are set */
    bench_conn_cb cb;
    void *arg;

    parse_state st;
    int status;
    long long remaining; /* body or chunk bytes still to read */
    bool have_len, chunked, close_after;
    struct evbuffer *body;
};

/* ------------------------------------------------------------------ connection ---------- */

static void drop(bench_conn *c) {
    if (c->bev) bufferevent_free(c->bev);
    c->bev = NULL;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->st = P_STATUS;
}

/* Ends the request in flight with status (-1: failed) and the body read so far. */
static void complete(bench_conn *c, int status) {
    bench_conn_cb cb = c->cb;
    void *arg = c->arg;
    c->busy = false;
    c->cb = NULL;
    c->arg = NULL;
    size_t len = evbuffer_get_length(c->body);
    const char *p = len ? (const char *)evbuffer_pullup(c->body, -1) : "";
    /* Close before the callback, so that a request the callback sends opens a fresh
     * connection instead of writing into a closing one. The body buffer is not touched. */
    if (status < 0 || c->close_after) {
        if (c->bev) bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->st = P_STATUS;
    cb(c, status, p, len, arg);
    evbuffer_drain(c->body, len);
}

/* ------------------------------------------------------------------ parser -------------- */

static void on_header(bench_conn *c, const char *line) {
    const char *v = strchr(line, ':');
    if (!v) return;
    size_t nlen = (size_t)(v - line);
    for (v++; *v == ' ' || *v == '\t'; v++) {
    }
    if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        c->have_len = true;
        c->remaining = strtoll(v, NULL, 10);
    } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
        c->chunked = strcasestr(v, "chunked") != NULL;
    } else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
        c->close_after = strcasestr(v, "close") != NULL;
    }
}

/* Moves up to c->remaining bytes from in to the body. True when all have arrived. */
static bool take_body(bench_conn *c, struct evbuffer *in) {
    size_t avail = evbuffer_get_length(in);
    size_t n = (long long)avail < c->remaining ? avail : (size_t)c->remaining;
    if (n) evbuffer_remove_buffer(in, c->body, n);
    c->remaining -= (long long)n;
    return c->remaining == 0;
}

/* Parses what has arrived. Returns true when a response was completed (the callback has
 * run, so the connection may already be closed: the caller must stop using in). */
static bool parse(bench_conn *c, struct evbuffer *in) {
    for (;;) {
        char *line = NULL;
        size_t n;
        switch (c->st) {
        case P_STATUS:
            if (!(line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) return false;
            c->status = 0;
            if (sscanf(line, "HTTP/1.%*d %d", &c->status) != 1 || c->status < 100) {
                free(line);
                complete(c, -1);
                return true;
            }
            c->have_len = c->chunked = c->close_after = false;
            c->remaining = 0;
            c->st = P_HEADERS;
            break;
        case P_HEADERS:
            if (!(line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) return false;
            if (n > 0) {
                on_header(c, line);
                break;
            }
            if (c->status < 200) { /* 100 Continue and friends: a real status follows */
                c->st = P_STATUS;
            } else if (c->status == 204 || c->status == 304) {
                free(line);
                complete(c, c->status);
                return true;
            } else if (c->chunked) {
                c->st = P_CHUNK_SIZE;
            } else if (c->have_len) {
                c->st = P_BODY_LEN;
            } else {
                c->st = P_BODY_EOF;
                c->close_after = true;
            }
            break;
        case P_BODY_LEN:
            if (!take_body(c, in)) return false;
            complete(c, c->status);
            return true;
        case P_CHUNK_SIZE:
            if (!(line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) return false;
            c->remaining = strtoll(line, NULL, 16);
            c->st = c->remaining > 0 ? P_CHUNK_DATA : P_TRAILERS;
            break;
        case P_CHUNK_DATA:
            if (!take_body(c, in)) return false;
            c->st = P_CHUNK_CRLF;
            break;
        case P_CHUNK_CRLF:
            if (!(line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) return false;
            c->st = P_CHUNK_SIZE;
            break;
        case P_TRAILERS:
            if (!(line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) return false;
            if (n == 0) {
                free(line);
                complete(c, c->status);
                return true;
            }
            break;
        case P_BODY_EOF: evbuffer_add_buffer(c->body, in); return false;
        }
        free(line);
    }
}

/* ------------------------------------------------------------------ libevent glue ------- */

static void on_read(struct bufferevent *bev, void *arg) {
    bench_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!c->busy) { /* bytes nobody asked for: the stream is out of step, start over */
        drop(c);
        return;
    }
    parse(c, in);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    bench_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    if (!c->busy) {
        drop(c); /* an idle keep-alive connection the server closed */
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->st == P_BODY_EOF) {
        evbuffer_add_buffer(c->body, bufferevent_get_input(bev));
        complete(c, c->status);
        return;
    }
    complete(c, -1);
}

static int open_conn(bench_conn *c) {
    c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) return -1;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->addr, (int)c->addrlen) < 0) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        return -1;
    }
    c->opens++;
    return 0;
}

/* ------------------------------------------------------------------ API ----------------- */

bench_conn *bench_conn_new(struct event_base *base, const struct sockaddr *addr,
                           socklen_t addrlen) {
    if (addrlen > sizeof(struct sockaddr_storage)) return NULL;
    bench_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = base;
    memcpy(&c->addr, addr, addrlen);
    c->addrlen = addrlen;
    c->body = evbuffer_new();
    if (!c->body) {
        free(c);
        return NULL;
    }
    return c;
}

void bench_conn_free(bench_conn *c) {
    if (!c) return;
    if (c->bev) bufferevent_free(c->bev);
    evbuffer_free(c->body);
    free(c);
}

int bench_conn_request(bench_conn *c, const char *req, size_t len, bench_conn_cb cb, void *arg) {
    if (c->busy) return -1;
    if (!c->bev && open_conn(c) < 0) return -1;
    /* Written before the connect completes, it is sent as soon as it does. */
    if (bufferevent_write(c->bev, req, len) < 0) return -1;
    c->busy = true;
    c->cb = cb;
    c->arg = arg;
    c->st = P_STATUS;
    return 0;
}

unsigned long bench_conn_opens(const bench_conn *c) { return c->opens; }

char *bench_http_format(const char *method, const char *host, const char *path, const char *api_key,
                        const char *body, size_t *len) {
    size_t blen = body ? strlen(body) : 0;
    size_t cap = strlen(method) + strlen(host) + strlen(path) + blen +
                 (api_key ? strlen(api_key) : 0) + 256;
    char *out = malloc(cap);
    if (!out) return NULL;
    int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fleet-bench\r\n", method,
                     path, host);
    if (api_key && *api_key)
        n += snprintf(out + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", api_key);
    if (body)
        n += snprintf(out + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(out + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(out + n, body, blen);
        n += (int)blen;
    }
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}
