/* http.c: request contexts, head and body guards, answers (http.h). */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#include "fleet/id.h"
#include "fleet/log.h"
#include "framing.h"
#include "metrics.h"
#include "problems.h"
#include "redis.h"

#define GW_REQ_MAGIC 0x6777u
#define GW_LINGER_MS 2000        /* a refused head: how long its client may still send */
#define GW_LINGER_MAX (1u << 20) /* ... and how much of it is read and dropped */

static uint64_t now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* One client connection. Its bufferevent's callbacks are the head guard's, which hand
 * every event on to libevhtp's own (saved here) unless the head is refused. */
struct gw_conn {
    gw *g;
    evhtp_connection_t *conn;
    gw_conn *prev, *next;
    gw_req *r;     /* the request past its head, while it lives */
    bool in_body;  /* from a head's end to its message's end */
    bool over_cap; /* accepted past FLEET_MAX_CONNECTIONS: health only */
    bufferevent_data_cb evhtp_readcb, evhtp_writecb;
    bufferevent_event_cb evhtp_eventcb;
    /* the head being read, as far as the guard has seen it; its bytes stay in the input
     * (libevhtp sees none of them) until the head is complete */
    size_t scanned;        /* bytes of the input read so far */
    size_t line_len;       /* bytes of the current line, without CR LF */
    size_t headers_len;    /* bytes of the complete header lines */
    unsigned lines;        /* complete lines; the request line is the first */
    evhtp_request_t *over; /* on_header saw this request go over the limits */
    /* a chunked body being decoded: libevhtp gets the head without its framing, then
     * Content-Length and the decoded data, once the last chunk is in */
    bool dechunk;
    gw_chunked chunk;
    struct evbuffer *msg, *body;
    /* the read timeouts: one timer, whose meaning is phase */
    struct event *timer;
    int phase;
    /* a refused head: the answer is written, then the rest is read and dropped */
    bool refused, shut;
    size_t lingered;
    struct event *linger;
    struct event *kick; /* parses what a client pipelined behind a finished request */
    /* what the client pipelined behind a request that gw_resume let go on: set aside, so
     * that libevhtp's resume (which parses its input at once when nothing is queued to
     * write) cannot start a second request inside the first; put back by kick_cb */
    struct evbuffer *stash;
};

static evhtp_callback_cb route_handler; /* gw_http_install's handler */

/* ------------------------------------------------------------ hooks ----------------- */

static bool request_id_valid(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > FLEET_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return false;
    return true;
}

static evhtp_res on_read(evhtp_request_t *req, struct evbuffer *buf, void *arg) {
    gw_req *r = arg;
    size_t n = evbuffer_get_length(buf);
    r->body_len += n;
    if (!r->too_large && r->body_len > (size_t)r->g->cfg.max_body) {
        r->too_large = true;
        evbuffer_drain(req->buffer_in, evbuffer_get_length(req->buffer_in));
    }
    if (r->too_large) evbuffer_drain(buf, n);
    return EVHTP_RES_OK;
}

static void conn_after_request(gw_conn *c, bool close_conn);
static void timer_off(gw_conn *c);

static evhtp_res on_request_fini(evhtp_request_t *req, void *arg) {
    gw_req *r = arg;
    if (r->conn) {
        r->conn->r = NULL;
        conn_after_request(r->conn, r->close_conn);
    }
    r->g->inflight--;
    gw_metrics_request_done(r);
    if (r->on_fini) r->on_fini(r->fini_arg);
    free(r);
    return EVHTP_RES_OK;
}

/* Counts the header fields parsed so far (libevhtp adds each before this hook runs).
 * The head guard refuses a head over the limits before libevhtp sees it, except a head
 * that libevhtp parses on its own (pipelined behind a request that waited for Redis, read
 * when libevhtp resumes): that one is counted only here, and answered 431 once parsed. */
static evhtp_res on_header(evhtp_request_t *req, evhtp_header_t *hdr, void *arg) {
    gw_conn *c = arg;
    if (c->over == req) return EVHTP_RES_OK;
    size_t n = 0, total = 0;
    evhtp_kv_t *kv;
    TAILQ_FOREACH(kv, req->headers_in, next) {
        n++;
        total += kv->klen + 2 + kv->vlen; /* "Name: value" */
    }
    if (n > GW_HEADERS_MAX || total > GW_HEADERS_TOTAL_MAX) c->over = req;
    return EVHTP_RES_OK;
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdr, void *arg) {
    gw_conn *c = arg;
    gw *g = c->g;
    gw_req *r = calloc(1, sizeof *r);
    if (!r) return EVHTP_RES_ERROR;
    r->magic = GW_REQ_MAGIC;
    r->g = g;
    g->inflight++;
    r->req = req;
    r->conn = c;
    c->r = r;
    c->in_body = true;
    r->headers_too_large = c->over == req;
    c->over = NULL;
    r->start_us = now_us();
    const char *rid = evhtp_kv_find(hdr, "X-Request-ID");
    if (request_id_valid(rid)) {
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    } else {
        char id[FLEET_ID_LEN + 1];
        if (fleet_id_new(id) == 0) {
            r->request_id_free = true;
        } else {
            snprintf(id, sizeof id, "%llu", (unsigned long long)r->start_us);
        }
        snprintf(r->request_id, sizeof r->request_id, "%s%s", FLEET_REQUEST_ID_PREFIX, id);
    }
    const char *cl = evhtp_kv_find(hdr, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end == cl || *end || v > (unsigned long long)g->cfg.max_body) r->too_large = true;
    }
    if (req->uri && req->uri->path && req->uri->path->full &&
        strlen(req->uri->path->full) > GW_URI_MAX)
        r->uri_too_long = true;
    if (req->uri && req->uri->query_raw && strlen((const char *)req->uri->query_raw) > GW_URI_MAX)
        r->uri_too_long = true;
    evhtp_request_set_hook(req, evhtp_hook_on_read, (evhtp_hook)on_read, r);
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_request_fini, r);
    req->cbarg = r; /* the handler finds its context as its argument */
    return EVHTP_RES_OK;
}

/* Every parsed request comes here first: a head over the limits that only on_header
 * counted is answered 431; the rest goes to the routes. */
static void dispatch(evhtp_request_t *req, void *arg) {
    gw_req *r = gw_req_of(req, arg);
    if (r && r->conn) { /* the message is complete: no read timeout while it is handled */
        r->conn->in_body = false;
        timer_off(r->conn);
    }
    if (r && r->headers_too_large) {
        gw_reply_problem(r, GW_PROBLEM_HEADERS_TOO_LARGE,
                         "the request has more than %d header fields or more than %d bytes "
                         "of them",
                         GW_HEADERS_MAX, GW_HEADERS_TOTAL_MAX);
        return;
    }
    route_handler(req, arg);
}

/* ------------------------------------------------------------ head guard ------------ *
 * libevhtp 1.2.18 parses each token of a head (the URI, a header name, a header value)
 * into an 8 KiB buffer and closes the connection without an answer when one is longer;
 * it takes any number of headers; request lines over ~4 KB can come out corrupted; and
 * its framing is lax (framing.h). So the guard reads the bytes of a head before libevhtp's
 * parser does, holding them back until the head is complete, and refuses a head over the
 * limits (http.h) or with bad framing itself: it writes a complete problem+json answer
 * with Connection: close, stops giving libevhtp anything, drops what the client still
 * sends (at most GW_LINGER_MAX bytes for GW_LINGER_MS, so that the client reads the
 * answer instead of a reset), then frees the connection. A chunked body is decoded here
 * and handed to libevhtp with Content-Length framing.
 *
 * The guard sees what arrives from the socket, and what a finished request left behind
 * (conn_kick): bytes that arrive while a request is being handled are held in the input
 * until it ends. gw_resume sets aside what is in the input before libevhtp's resume
 * would parse it (c->stash), and kick_cb puts it back in front when the request ends, so
 * libevhtp parses no byte the guard has not seen.
 *
 * Timeouts (one timer per connection, its phase says which):
 *   T_HEAD  a head must be complete FLEET_HEADER_TIMEOUT_S after the connection was
 *           accepted, or after the first byte of a keep-alive connection's next head:
 *           408 when some of it came, a plain close when nothing did;
 *   T_BODY  a body that stalls FLEET_BODY_TIMEOUT_S between reads: 408;
 *   T_IDLE  a keep-alive connection with no request FLEET_IDLE_TIMEOUT_S: closed.
 * No timer runs while a request is handled (waiting for Redis, a Prefer: wait hold, an
 * event stream, an answer written to a slow reader). */

enum { T_NONE, T_HEAD, T_BODY, T_IDLE };

#define GW_OVER_CAP_HEAD_MS 2000 /* a connection past the cap: at most this for its head */
#define GW_HOLD_MAX 65536        /* bytes held behind a request being handled: reading stops */

static void conn_close(gw_conn *c) {
    evhtp_connection_free(c->conn); /* on_connection_fini frees c */
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg);

static void timer_set(gw_conn *c, int phase, long ms) {
    if (!c->timer) c->timer = evtimer_new(c->g->base, conn_timeout, c);
    if (!c->timer) return;
    c->phase = phase;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void timer_off(gw_conn *c) {
    c->phase = T_NONE;
    if (c->timer) evtimer_del(c->timer);
}

static long head_timeout_ms(const gw_conn *c) {
    long ms = c->g->cfg.header_timeout_s * 1000;
    return c->over_cap && ms > GW_OVER_CAP_HEAD_MS ? GW_OVER_CAP_HEAD_MS : ms;
}

static void linger_readcb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->lingered += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (c->lingered > GW_LINGER_MAX) conn_close(c);
}

static void linger_writecb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    if (c->shut || evbuffer_get_length(bufferevent_get_output(bev)) > 0) return;
    c->shut = true; /* the answer is out: FIN, then wait for the client's */
    shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void linger_eventcb(struct bufferevent *bev, short what, void *arg) {
    conn_close(arg); /* EOF or an error: the client is done */
}

static void linger_timeout(evutil_socket_t fd, short what, void *arg) { conn_close(arg); }

/* Answers the problem pid (problems.h) with a problem+json body (extra: more header lines,
 * each ending in CR LF, or NULL) and closes the connection once the client has read it.
 * The guard writes the whole answer itself, status line and reason phrase included. */
static void guard_refuse(gw_conn *c, struct bufferevent *bev, gw_problem_id pid, const char *detail,
                         const char *extra) {
    const gw_problem_type *t = gw_problem_type_of(pid);
    int status = t->status;
    const char *reason = gw_status_reason(status);
    c->refused = true;
    c->dechunk = false;
    timer_off(c);
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    c->lingered = evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    char id[27], rid[FLEET_REQUEST_ID_MAX + 1];
    if (fleet_id_new(id) < 0) snprintf(id, sizeof id, "%llu", (unsigned long long)now_us());
    snprintf(rid, sizeof rid, "req_%s", id);
    char type[96];
    snprintf(type, sizeof type, "urn:fleet:problem:%s", t->slug);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", t->title, "status",
                          status, "detail", detail, "request_id", rid);
    char *body = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    const char *b = body ? body : "{}";
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nX-Request-ID: %s\r\n%s"
                        "Content-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        status, reason ? reason : "Error", rid, extra ? extra : "", strlen(b), b);
    free(body);
    char status_s[8];
    snprintf(status_s, sizeof status_s, "%d", status);
    fleet_log(FLEET_LOG_DEBUG, "request refused", "status", status_s, "detail", detail,
              "request_id", rid, NULL);
    bufferevent_setcb(bev, linger_readcb, linger_writecb, linger_eventcb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    c->linger = evtimer_new(bufferevent_get_base(bev), linger_timeout, c);
    struct timeval tv = {GW_LINGER_MS / 1000, (GW_LINGER_MS % 1000) * 1000};
    if (c->linger) evtimer_add(c->linger, &tv);
}

static void refuse_framing(gw_conn *c, struct bufferevent *bev, const gw_head_framing *f) {
    guard_refuse(c, bev, gw_problem_of_slug(f->slug), f->detail, NULL);
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg) {
    gw_conn *c = arg;
    struct bufferevent *bev = evhtp_connection_get_bev(c->conn);
    int phase = c->phase;
    c->phase = T_NONE;
    if (!bev || phase == T_IDLE ||
        (phase == T_HEAD && c->scanned == 0 &&
         evbuffer_get_length(bufferevent_get_input(bev)) == 0)) {
        conn_close(c); /* nothing of a request came: nothing to answer */
        return;
    }
    char d[128];
    if (phase == T_HEAD)
        snprintf(d, sizeof d,
                 "the request head was not complete within %ld s (FLEET_HEADER_TIMEOUT_S)",
                 c->g->cfg.header_timeout_s);
    else
        snprintf(d, sizeof d, "no byte of the request body came for %ld s (FLEET_BODY_TIMEOUT_S)",
                 c->g->cfg.body_timeout_s);
    guard_refuse(c, bev, GW_PROBLEM_REQUEST_TIMEOUT, d, NULL);
}

/* Reads the head bytes in buf[0, n) on from where the last call stopped. Returns 1 and
 * sets *end to the bytes after the head's empty line when the head ends within buf, 0
 * when it goes on (within the limits), or refuses the head and returns -1. */
static int guard_scan(gw_conn *c, struct bufferevent *bev, const unsigned char *buf, size_t n,
                      size_t *end) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = buf[i];
        if (ch == '\r') continue;
        if (ch != '\n') {
            c->line_len++;
            if (c->lines == 0 && c->line_len > GW_REQUEST_LINE_MAX) {
                char d[96];
                snprintf(d, sizeof d,
                         "the request line is longer than %d bytes; the URI may "
                         "have at most %d",
                         GW_REQUEST_LINE_MAX, GW_URI_MAX);
                guard_refuse(c, bev, GW_PROBLEM_URI_TOO_LONG, d, NULL);
                return -1;
            }
            if (c->lines > 0 && (c->line_len > GW_HEADER_LINE_MAX ||
                                 c->headers_len + c->line_len > GW_HEADERS_TOTAL_MAX)) {
                char d[96];
                if (c->line_len > GW_HEADER_LINE_MAX)
                    snprintf(d, sizeof d, "a header line is longer than %d bytes",
                             GW_HEADER_LINE_MAX);
                else
                    snprintf(d, sizeof d, "the header lines are longer than %d bytes in all",
                             GW_HEADERS_TOTAL_MAX);
                guard_refuse(c, bev, GW_PROBLEM_HEADERS_TOO_LARGE, d, NULL);
                return -1;
            }
            continue;
        }
        if (c->line_len == 0 && c->lines == 0) continue; /* empty lines before a request */
        if (c->line_len == 0) {                          /* the empty line: the head ends here */
            c->lines = 0;
            c->headers_len = 0;
            *end = i + 1;
            return 1;
        }
        if (c->lines > 0) c->headers_len += c->line_len;
        c->lines++;
        c->line_len = 0;
        if (c->lines - 1 > GW_HEADERS_MAX) {
            char d[64];
            snprintf(d, sizeof d, "the request has more than %d header fields", GW_HEADERS_MAX);
            guard_refuse(c, bev, GW_PROBLEM_HEADERS_TOO_LARGE, d, NULL);
            return -1;
        }
    }
    return 0;
}

static void scan_reset(gw_conn *c) { c->scanned = c->line_len = c->headers_len = c->lines = 0; }

/* A connection past the cap may ask only for its health. */
static bool health_request(const char *head, size_t n) {
    while (n > 0 && (*head == '\r' || *head == '\n')) head++, n--;
    static const char *const ok[] = {"GET /healthz ", "GET /healthz?", "GET /readyz ",
                                     "GET /readyz?"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (n > strlen(ok[i]) && memcmp(head, ok[i], strlen(ok[i])) == 0) return true;
    return false;
}

static void dechunk_data(void *arg, const char *p, size_t n) { evbuffer_add(arg, p, n); }

static void dechunk_free(gw_conn *c) {
    if (c->msg) evbuffer_free(c->msg);
    if (c->body) evbuffer_free(c->body);
    c->msg = c->body = NULL;
    c->dechunk = false;
}

/* Reads the chunked body in the input; at its end, hands libevhtp the message with
 * Content-Length framing and what follows it. */
static void dechunk_read(gw_conn *c, struct bufferevent *bev) {
    struct evbuffer *in = bufferevent_get_input(bev);
    timer_set(c, T_BODY, c->g->cfg.body_timeout_s * 1000);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t used = 0;
        gw_chunk_res res = gw_chunked_feed(&c->chunk, v.iov_base, v.iov_len, &used, dechunk_data,
                                           c->body);
        evbuffer_drain(in, used);
        if (res == GW_CHUNK_ERROR) {
            char d[128];
            snprintf(d, sizeof d, "bad chunked body: %s", c->chunk.error);
            dechunk_free(c);
            guard_refuse(c, bev, GW_PROBLEM_BAD_FRAMING, d, NULL);
            return;
        }
        if (res == GW_CHUNK_TOO_LARGE) {
            char d[128];
            snprintf(d, sizeof d,
                     "the body is larger than the limit of %ld bytes "
                     "(FLEET_MAX_BODY)",
                     c->g->cfg.max_body);
            dechunk_free(c);
            guard_refuse(c, bev, GW_PROBLEM_BODY_TOO_LARGE, d, NULL);
            return;
        }
        if (res == GW_CHUNK_DONE) {
            evbuffer_add_printf(c->msg, "Content-Length: %zu\r\n\r\n",
                                evbuffer_get_length(c->body));
            evbuffer_add_buffer(c->msg, c->body);
            evbuffer_prepend_buffer(in, c->msg);
            dechunk_free(c);
            timer_off(c);
            c->evhtp_readcb(bev, c->conn); /* may free the connection, and c */
            return;
        }
    }
}

static void dechunk_start(gw_conn *c, struct bufferevent *bev, const char *head, size_t h,
                          const gw_head_framing *f) {
    char *stripped = malloc(h);
    c->msg = evbuffer_new();
    c->body = evbuffer_new();
    if (!stripped || !c->msg || !c->body) {
        free(stripped);
        dechunk_free(c);
        conn_close(c);
        return;
    }
    evbuffer_add(c->msg, stripped, gw_framing_strip(head, h, stripped));
    free(stripped);
    evbuffer_drain(bufferevent_get_input(bev), h);
    c->dechunk = true;
    c->chunk = (gw_chunked){.max = (uint64_t)c->g->cfg.max_body};
    if (f->expect_continue) /* libevhtp never sees this Expect: the guard answers it */
        evbuffer_add_printf(bufferevent_get_output(bev), "HTTP/1.1 100 Continue\r\n\r\n");
    dechunk_read(c, bev);
}

/* The head in the input's first h bytes is complete: refuse it, or hand it on. */
static void head_complete(gw_conn *c, struct bufferevent *bev, size_t h) {
    struct evbuffer *in = bufferevent_get_input(bev);
    const char *head = (const char *)evbuffer_pullup(in, (ev_ssize_t)h);
    scan_reset(c);
    if (!head) {
        conn_close(c);
        return;
    }
    gw_head_framing f;
    if (gw_framing_head(head, h, &f) < 0) {
        refuse_framing(c, bev, &f);
        return;
    }
    if (c->over_cap && !health_request(head, h)) {
        char d[128];
        snprintf(d, sizeof d,
                 "the gateway holds its limit of %ld connections "
                 "(FLEET_MAX_CONNECTIONS); retry shortly",
                 c->g->max_conns);
        guard_refuse(c, bev, GW_PROBLEM_TOO_MANY_CONNECTIONS, d, "Retry-After: 1\r\n");
        return;
    }
    if (f.expect_continue && f.body == GW_BODY_LENGTH && f.length > (uint64_t)c->g->cfg.max_body) {
        /* before libevhtp would answer 100 Continue and take the whole body */
        char d[128];
        snprintf(d, sizeof d, "the body is larger than the limit of %ld bytes (FLEET_MAX_BODY)",
                 c->g->cfg.max_body);
        guard_refuse(c, bev, GW_PROBLEM_BODY_TOO_LARGE, d, NULL);
        return;
    }
    if (f.body == GW_BODY_CHUNKED) {
        dechunk_start(c, bev, head, h, &f);
        return;
    }
    if (f.body == GW_BODY_LENGTH && f.length > 0)
        timer_set(c, T_BODY, c->g->cfg.body_timeout_s * 1000);
    else timer_off(c);
    c->evhtp_readcb(bev, c->conn); /* may free the connection, and c */
}

static void guard_readcb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->dechunk) {
        dechunk_read(c, bev);
        return;
    }
    if (c->in_body) { /* libevhtp's business */
        scan_reset(c);
        timer_set(c, T_BODY, c->g->cfg.body_timeout_s * 1000);
        c->evhtp_readcb(bev, c->conn); /* may free the connection, and c */
        return;
    }
    if (c->r) { /* a request is being handled: what comes is read after it (conn_kick) */
        size_t held = evbuffer_get_length(in) + (c->stash ? evbuffer_get_length(c->stash) : 0);
        if (held > GW_HOLD_MAX) bufferevent_disable(bev, EV_READ);
        return;
    }
    size_t n = evbuffer_get_length(in);
    if (n <= c->scanned) return;
    if (c->phase != T_HEAD) timer_set(c, T_HEAD, head_timeout_ms(c)); /* its first byte */
    /* the new bytes only: a slow client's head is not read again at every byte */
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(in, &at, c->scanned, EVBUFFER_PTR_SET) < 0) return;
    struct evbuffer_iovec v[8];
    while (c->scanned < n) {
        int nv = evbuffer_peek(in, (ev_ssize_t)(n - c->scanned), &at, v, 8);
        if (nv <= 0) return;
        for (int i = 0; i < nv && i < 8; i++) {
            size_t end = 0, len = v[i].iov_len;
            if (c->scanned + len > n) len = n - c->scanned;
            int rc = guard_scan(c, bev, v[i].iov_base, len, &end);
            if (rc < 0) return;
            if (rc > 0) {
                head_complete(c, bev, c->scanned + end);
                return;
            }
            c->scanned += len;
        }
        if (evbuffer_ptr_set(in, &at, c->scanned, EVBUFFER_PTR_SET) < 0) return;
    }
}

/* libevhtp 1.2.18 does not parse what is left in its input once a keep-alive request is
 * done (requests pipelined in one packet waited for more bytes that never came): a
 * request's end reads the rest as if it had just arrived, through the guard. */
static void kick_cb(evutil_socket_t fd, short what, void *arg) {
    gw_conn *c = arg;
    struct bufferevent *bev = evhtp_connection_get_bev(c->conn);
    if (!bev || c->in_body || c->refused || c->r) return;
    bufferevent_enable(bev, EV_READ); /* reading stopped if too much was held */
    if (c->stash) evbuffer_prepend_buffer(bufferevent_get_input(bev), c->stash); /* first in */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) guard_readcb(bev, c);
}

static void conn_kick(gw_conn *c) {
    struct bufferevent *bev = evhtp_connection_get_bev(c->conn);
    if (!bev || !c->evhtp_readcb || c->refused) return;
    if (!c->kick) c->kick = event_new(bufferevent_get_base(bev), -1, 0, kick_cb, c);
    if (c->kick) event_active(c->kick, EV_TIMEOUT, 0);
}

static void guard_writecb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    if (c->dechunk) return; /* the guard's own 100 Continue: libevhtp has no request yet */
    c->evhtp_writecb(bev, c->conn);
}

static void guard_eventcb(struct bufferevent *bev, short what, void *arg) {
    gw_conn *c = arg;
    c->evhtp_eventcb(bev, what, c->conn);
}

/* A request ended and its connection stays open: wait for the next one, or close it
 * now when its answer said Connection: close (libevhtp 1.2.18 keeps such a connection
 * open; it is freed from the loop, not from inside libevhtp's write callback). */
static void conn_after_request(gw_conn *c, bool close_conn) {
    if (c->refused) return;
    timer_set(c, T_IDLE, close_conn ? 0 : c->g->cfg.idle_timeout_s * 1000);
    if (close_conn) return;
    conn_kick(c); /* what the client pipelined behind it is read now */
}

/* ------------------------------------------------------------ connections ----------- */

static evhtp_res on_connection_fini(evhtp_connection_t *conn, void *arg) {
    gw_conn *c = arg;
    if (c->prev) c->prev->next = c->next;
    else c->g->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->g->nconns--;
    if (c->r) c->r->conn = NULL; /* libevhtp frees the request after this hook */
    if (c->linger) event_free(c->linger);
    if (c->kick) event_free(c->kick);
    if (c->timer) event_free(c->timer);
    if (c->stash) evbuffer_free(c->stash);
    dechunk_free(c);
    free(c);
    return EVHTP_RES_OK;
}

static evhtp_res on_accept(evhtp_connection_t *conn, void *arg) {
    gw *g = arg;
    gw_conn *c = calloc(1, sizeof *c);
    if (!c) return EVHTP_RES_ERROR;
    *c = (gw_conn){.g = g, .conn = conn, .next = g->conns};
    if (g->conns) g->conns->prev = c;
    g->conns = c;
    g->nconns++;
    c->over_cap = g->nconns > g->max_conns;
    evhtp_connection_set_hook(conn, evhtp_hook_on_header, (evhtp_hook)on_header, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_connection_fini,
                              c);
    /* libevhtp set its callbacks on the connection's bufferevent before this hook: the
     * guard goes in front of them */
    struct bufferevent *bev = evhtp_connection_get_bev(conn);
    void *cbarg = NULL;
    if (bev) bufferevent_getcb(bev, &c->evhtp_readcb, &c->evhtp_writecb, &c->evhtp_eventcb, &cbarg);
    if (bev && cbarg == conn && c->evhtp_readcb && c->evhtp_writecb && c->evhtp_eventcb)
        bufferevent_setcb(bev, guard_readcb, guard_writecb, guard_eventcb, c);
    timer_set(c, T_HEAD, head_timeout_ms(c));
    return EVHTP_RES_OK;
}

void gw_http_close_all(gw *g) {
    while (g->conns) evhtp_connection_free(g->conns->conn); /* fini unlinks it */
    if (g->accept_pause) event_free(g->accept_pause);
    g->accept_pause = NULL;
}

/* The default connection cap: the descriptor limit less a reserve for Redis, webhook
 * deliveries, the listener and the process's own files, so that the connections the cap
 * admits can never take the descriptors those need. */
static long default_max_conns(const gw *g) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 100000;
    long nofile = rl.rlim_cur > 10000000 ? 10000000 : (long)rl.rlim_cur;
    long cap = nofile - GW_FD_RESERVE - g->cfg.webhook_max_inflight;
    return cap < nofile / 2 ? nofile / 2 : cap;
}

void gw_http_install(gw *g, evhtp_callback_cb handler) {
    route_handler = handler;
    g->max_conns = g->cfg.max_conns > 0 ? g->cfg.max_conns : default_max_conns(g);
    evhtp_set_post_accept_cb(g->htp, on_accept, g);
    evhtp_set_gencb(g->htp, dispatch, g);
}

/* ------------------------------------------------------------ accepting ------------- *
 * At the descriptor limit accept() fails with EMFILE while the connection stays queued,
 * so the listener is readable again at once: libevent's loop would spin on it and log
 * every failure. Instead the listener pauses GW_ACCEPT_PAUSE_MS and the failures are
 * logged at most once a second, with their count. */

#define GW_ACCEPT_PAUSE_MS 100

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void accept_resume(evutil_socket_t fd, short what, void *arg) {
    gw *g = arg;
    if (!g->draining && g->htp->server) evconnlistener_enable(g->htp->server);
}

static gw *listen_gw; /* the listener's error callback gets libevhtp's argument, not g */

static void accept_error(struct evconnlistener *lev, void *arg) {
    gw *g = listen_gw;
    int err = EVUTIL_SOCKET_ERROR();
    g->accept_errors++;
    long long now = mono_ms();
    if (now - g->accept_log_ms >= 1000) {
        char n[24], open[24];
        snprintf(n, sizeof n, "%lu", g->accept_errors);
        snprintf(open, sizeof open, "%ld", g->nconns);
        fleet_log(FLEET_LOG_WARN, "accept failed; accepting paused briefly", "error",
                  evutil_socket_error_to_string(err), "errors", n, "connections", open, NULL);
        g->accept_errors = 0;
        g->accept_log_ms = now;
    }
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) return;
    if (!g->accept_pause) g->accept_pause = evtimer_new(g->base, accept_resume, g);
    if (!g->accept_pause) return;
    evconnlistener_disable(lev);
    struct timeval tv = {0, GW_ACCEPT_PAUSE_MS * 1000};
    evtimer_add(g->accept_pause, &tv);
}

void gw_http_listen_guard(gw *g) {
    listen_gw = g;
    if (g->htp->server) evconnlistener_set_error_cb(g->htp->server, accept_error);
    char cap[24];
    snprintf(cap, sizeof cap, "%ld", g->max_conns);
    fleet_log(FLEET_LOG_INFO, "connection limits", "max_connections", cap, NULL);
}

gw_req *gw_req_of(evhtp_request_t *req, void *cbarg) {
    gw_req *r = cbarg;
    if (!r || r->magic != GW_REQ_MAGIC || r->req != req) return NULL;
    return r;
}

/* ------------------------------------------------------------ reading --------------- */

const char *gw_header(const gw_req *r, const char *name) {
    return evhtp_kv_find(r->req->headers_in, name);
}

char *gw_body(const gw_req *r, size_t *len) {
    struct evbuffer *in = r->req->buffer_in;
    size_t n = evbuffer_get_length(in);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    evbuffer_copyout(in, out, n);
    out[n] = '\0';
    *len = n;
    return out;
}

/* ------------------------------------------------------------ answering ------------- */

void gw_add_header(gw_req *r, const char *name, const char *value) {
    evhtp_headers_add_header(r->req->headers_out, evhtp_header_new(name, value, 1, 1));
}

void gw_pause(gw_req *r) {
    r->paused = true;
    evhtp_request_pause(r->req);
}

void gw_resume(gw_req *r) {
    if (!r->paused) return;
    r->paused = false;
    gw_conn *c = r->conn;
    struct bufferevent *bev = c ? evhtp_connection_get_bev(c->conn) : NULL;
    struct evbuffer *in = bev ? bufferevent_get_input(bev) : NULL;
    if (in && evbuffer_get_length(in) > 0) { /* a next request, pipelined: see c->stash */
        if (!c->stash) c->stash = evbuffer_new();
        if (c->stash) evbuffer_add_buffer(c->stash, in); /* (out of memory: left in place) */
    }
    evhtp_request_resume(r->req);
}

/* libevhtp 1.2.18 writes the status line itself, from a table of its own that has no
 * phrase for 422, 425, 429 or 431 ("UNKNOWN") and older ones for 413 and 414, and it takes
 * no phrase from its caller. Writing whole answers here instead would mean copying what
 * evhtp_send_reply does besides (keep-alive, HEAD, the end of the request and the read of
 * the next). So the line it wrote is corrected in place: evhtp_send_reply appends the
 * whole answer to the connection's output buffer and the socket is written later, from
 * the loop, so right after the call the answer starts at the length the buffer had
 * before. Only a line that reads "HTTP/<d>.<d> <status> <phrase>\r\n" there is
 * touched; anything else is left as libevhtp wrote it. The socket bufferevent freezes the
 * start of its output buffer (only its writer drains it); it is unfrozen for the rewrite
 * and frozen again, as libevent's own writer does. */
static void fix_status_line(struct bufferevent *bev, size_t at, int status) {
    const char *want = gw_status_reason(status);
    struct evbuffer *out = bev ? bufferevent_get_output(bev) : NULL;
    if (!want || !out || evbuffer_get_length(out) <= at) return;
    /* Copying out counts as a read of the start too, so the buffer is unfrozen first. */
    bool frozen = evbuffer_drain(out, 0) < 0; /* a drain of nothing fails only when frozen */
    if (frozen) evbuffer_unfreeze(out, 1);
    char line[96];
    struct evbuffer_ptr p;
    ev_ssize_t n = evbuffer_ptr_set(out, &p, at, EVBUFFER_PTR_SET) == 0
                       ? evbuffer_copyout_from(out, &p, line, sizeof line - 1)
                       : -1;
    line[n > 0 ? n : 0] = '\0';
    char code[8];
    snprintf(code, sizeof code, " %03d ", status);
    const char *eol = strstr(line, "\r\n");
    const size_t prefix = 13; /* "HTTP/1.1 425 " */
    size_t old = eol ? (size_t)(eol - line) - prefix : 0;
    struct evbuffer *head = NULL;
    if (!eol || (size_t)(eol - line) < prefix || strncmp(line, "HTTP/", 5) != 0 ||
        memcmp(line + 8, code, 5) != 0 ||
        (old == strlen(want) && memcmp(line + prefix, want, old) == 0) || !(head = evbuffer_new()))
        goto done;
    /* The bytes before the phrase move aside, the phrase is dropped, the new one follows
     * them and they go back in front. Should memory run out midway, the line keeps its
     * old phrase, or none ("HTTP/1.1 425 \r\n" is still a valid status line). */
    if (evbuffer_remove_buffer(out, head, at + prefix) == (int)(at + prefix) &&
        evbuffer_drain(out, old) == 0)
        evbuffer_add(head, want, strlen(want));
    evbuffer_prepend_buffer(out, head);
    evbuffer_free(head);
done:
    if (frozen) evbuffer_freeze(out, 1);
}

void gw_reply_bytes(gw_req *r, int status, const char *content_type, const void *data, size_t len) {
    if (r->answered) return;
    r->answered = true;
    r->status = status;
    gw_add_header(r, "X-Request-ID", r->request_id);
    if (content_type) gw_add_header(r, "Content-Type", content_type);
    if (r->too_large || r->uri_too_long || r->headers_too_large || r->g->draining ||
        (r->conn && r->conn->over_cap)) {
        /* Shutting down: the client reconnects, to another gateway. Past the connection
         * cap: the connection is not kept. */
        gw_add_header(r, "Connection", "close");
        evhtp_request_set_keepalive(r->req, 0);
        r->close_conn = true;
    }
    if (len) evbuffer_add(r->req->buffer_out, data, len);
    if (fleet_log_on(FLEET_LOG_DEBUG)) {
        char status_s[8], ms[32];
        snprintf(status_s, sizeof status_s, "%d", status);
        snprintf(ms, sizeof ms, "%.3f", (double)(now_us() - r->start_us) / 1000.0);
        fleet_log(FLEET_LOG_DEBUG, "request", "method", htparser_get_methodstr_m(r->req->method),
                  "path", r->req->uri && r->req->uri->path ? r->req->uri->path->full : "", "status",
                  status_s, "ms", ms, "request_id", r->request_id, NULL);
    }
    bool paused = r->paused;
    evhtp_request_t *req = r->req;
    evhtp_connection_t *conn = evhtp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhtp_connection_get_bev(conn) : NULL;
    size_t at = bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
    evhtp_send_reply(req, (evhtp_res)status);
    fix_status_line(bev, at, status);
    if (paused) evhtp_request_resume(req);
}

void gw_reply_json(gw_req *r, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(body);
    if (!text) {
        static const char fallback[] = "{\"type\":\"urn:fleet:problem:internal\",\"status\":500}";
        gw_reply_bytes(r, 500, "application/problem+json", fallback, sizeof fallback - 1);
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n';
    gw_reply_bytes(r, status, "application/json", text, n + 1);
    free(text);
}

static void reply_problem_v(gw_req *r, gw_problem_id id, json_t *members, const char *detail_fmt,
                            va_list ap) {
    const gw_problem_type *t = gw_problem_type_of(id);
    int status = t->status;
    const char *slug = t->slug, *title = t->title;
    char detail[1024];
    vsnprintf(detail, sizeof detail, detail_fmt, ap);
    char type[96];
    snprintf(type, sizeof type, "urn:fleet:problem:%s", slug);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title, "status",
                          status, "detail", detail, "request_id", r->request_id);
    if (!p) /* detail was not valid UTF-8 (it may quote user input): drop it */
        p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                      "request_id", r->request_id);
    if (p && members) json_object_update_missing(p, members);
    json_decref(members);
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!text) {
        gw_reply_bytes(r, status, "application/problem+json", "{}", 2);
        return;
    }
    gw_reply_bytes(r, status, "application/problem+json", text, strlen(text));
    free(text);
}

void gw_reply_problem(gw_req *r, gw_problem_id id, const char *detail_fmt, ...) {
    va_list ap;
    va_start(ap, detail_fmt);
    reply_problem_v(r, id, NULL, detail_fmt, ap);
    va_end(ap);
}

void gw_reply_problem_with(gw_req *r, gw_problem_id id, json_t *members, const char *detail_fmt,
                           ...) {
    va_list ap;
    va_start(ap, detail_fmt);
    reply_problem_v(r, id, members, detail_fmt, ap);
    va_end(ap);
}

bool gw_send_script(gw_req *req, fleet_cmd *cmd, gw_redis_cb cb, void *call,
                    void (*free_call)(void *)) {
    if (gw_redis_script(req->g->redis, cmd, cb, call) < 0) {
        free_call(call);
        gw_reply_redis_error(req, "send", NULL);
        return false;
    }
    if (!req->paused) gw_pause(req);
    return true;
}

/* Declared in redis.h with gw_redis_problem_of, whose answer it writes: it lives here, with
 * the other answers, so that redis.c needs nothing of the HTTP side. */
void gw_reply_redis_error(gw_req *req, const char *what, const redisReply *rep) {
    gw_redis_problem p;
    gw_redis_problem_of(req->g->redis, rep, &p);
    if (p.id == GW_PROBLEM_INTERNAL)
        fleet_log(FLEET_LOG_ERROR, "unexpected redis reply", "op", what, "reply",
                  rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "malformed", "request_id",
                  req->request_id, NULL);
    if (p.retry_after) gw_add_header(req, "Retry-After", p.retry_after);
    if (p.id == GW_PROBLEM_INTERNAL)
        gw_reply_problem(req, p.id, "%s; request_id %s", p.detail, req->request_id);
    else gw_reply_problem(req, p.id, "%s", p.detail);
}
