/* http.c: request contexts, head and body guards, answers (http.h). */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "fleet/id.h"
#include "fleet/log.h"

#define GW_REQ_MAGIC 0x6777u
#define GW_LINGER_MS 2000          /* a refused head: how long its client may still send */
#define GW_LINGER_MAX (1u << 20)   /* ... and how much of it is read and dropped */

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
    gw_req *r;                       /* the request past its head, while it lives */
    bool in_body;                    /* from a head's end to its message's end */
    bufferevent_data_cb evhtp_readcb, evhtp_writecb;
    bufferevent_event_cb evhtp_eventcb;
    /* the head being read, as far as the guard has seen it */
    size_t line_len;                 /* bytes of the current line, without CR LF */
    size_t headers_len;              /* bytes of the complete header lines */
    unsigned lines;                  /* complete lines; the request line is the first */
    evhtp_request_t *over;           /* on_header saw this request go over the limits */
    /* a refused head: the answer is written, then the rest is read and dropped */
    bool refused, shut;
    size_t lingered;
    struct event *linger;
    struct event *kick; /* parses what a client pipelined behind a finished request */
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

static void conn_kick(gw_conn *c);

static evhtp_res on_request_fini(evhtp_request_t *req, void *arg) {
    gw_req *r = arg;
    if (r->conn) {
        r->conn->r = NULL;
        conn_kick(r->conn); /* what the client pipelined behind it is read now */
    }
    r->g->inflight--;
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
        char id[27];
        if (fleet_id_new(id) < 0) snprintf(id, sizeof id, "%llu", (unsigned long long)r->start_us);
        snprintf(r->request_id, sizeof r->request_id, "req_%s", id);
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
    if (r && r->conn) r->conn->in_body = false; /* the message is complete: a head is next */
    if (r && r->headers_too_large) {
        gw_reply_problem(r, 431, "headers-too-large", "Request header fields too large",
                         "the request has more than %d header fields or more than %d bytes "
                         "of them", GW_HEADERS_MAX, GW_HEADERS_TOTAL_MAX);
        return;
    }
    route_handler(req, arg);
}

/* ------------------------------------------------------------ head guard ------------ *
 * libevhtp 1.2.18 parses each token of a head (the URI, a header name, a header value)
 * into an 8 KiB buffer and closes the connection without an answer when one is longer;
 * it takes any number of headers; and request lines over ~4 KB can come out corrupted.
 * So the guard reads the bytes of a head before libevhtp's parser does, and refuses a
 * head over the limits (http.h) itself: it writes a complete problem+json answer with
 * Connection: close, stops giving libevhtp anything, drops what the client still sends
 * (at most GW_LINGER_MAX bytes for GW_LINGER_MS, so that the client reads the answer
 * instead of a reset), then frees the connection.
 *
 * The guard sees what arrives from the socket, and what a finished request left behind
 * (conn_kick). Bytes that libevhtp parses on its own pass unseen: those it reads when it
 * resumes a request that waited for Redis, and those behind an answer still being
 * written (an event stream). The counts then start late, never early, and on_header
 * still counts the fields. */

static void conn_close(gw_conn *c) {
    evhtp_connection_free(c->conn); /* on_connection_fini frees c */
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

static void linger_timeout(evutil_socket_t fd, short what, void *arg) {
    conn_close(arg);
}

static void guard_refuse(gw_conn *c, struct bufferevent *bev, int status, const char *reason,
                         const char *slug, const char *title, const char *detail) {
    c->refused = true;
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    c->lingered = evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    char id[27], rid[FLEET_REQUEST_ID_MAX + 1];
    if (fleet_id_new(id) < 0) snprintf(id, sizeof id, "%llu", (unsigned long long)now_us());
    snprintf(rid, sizeof rid, "req_%s", id);
    char type[96];
    snprintf(type, sizeof type, "urn:fleet:problem:%s", slug);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title, "status",
                          status, "detail", detail, "request_id", rid);
    char *body = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    const char *b = body ? body : "{}";
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nX-Request-ID: %s\r\n"
                        "Content-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        status, reason, rid, strlen(b), b);
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

/* Reads the head bytes in buf[0, n) on from where the last call stopped. Returns 0 when
 * they are within the limits (the head may go on, or ended within buf), or refuses the
 * head and returns -1. */
static int guard_scan(gw_conn *c, struct bufferevent *bev, const unsigned char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = buf[i];
        if (ch == '\r') continue;
        if (ch != '\n') {
            c->line_len++;
            if (c->lines == 0 && c->line_len > GW_REQUEST_LINE_MAX) {
                char d[96];
                snprintf(d, sizeof d, "the request line is longer than %d bytes; the URI may "
                         "have at most %d", GW_REQUEST_LINE_MAX, GW_URI_MAX);
                guard_refuse(c, bev, 414, "URI Too Long", "uri-too-long", "URI too long", d);
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
                guard_refuse(c, bev, 431, "Request Header Fields Too Large", "headers-too-large",
                             "Request header fields too large", d);
                return -1;
            }
            continue;
        }
        if (c->line_len == 0 && c->lines == 0) continue; /* empty lines before a request */
        if (c->line_len == 0) { /* the empty line: the head ends here */
            c->lines = 0;
            c->headers_len = 0;
            return 0;
        }
        if (c->lines > 0) c->headers_len += c->line_len;
        c->lines++;
        c->line_len = 0;
        if (c->lines - 1 > GW_HEADERS_MAX) {
            char d[64];
            snprintf(d, sizeof d, "the request has more than %d header fields", GW_HEADERS_MAX);
            guard_refuse(c, bev, 431, "Request Header Fields Too Large", "headers-too-large",
                         "Request header fields too large", d);
            return -1;
        }
    }
    return 0;
}

/* True while an answer is still being written (an event stream): a refusal written now
 * would land inside it. */
static bool answering(const gw_conn *c) {
    return c->r && c->r->req == c->conn->request &&
           !(c->r->req->flags & EVHTP_REQ_FLAG_FINISHED);
}

static void guard_readcb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    if (c->in_body || answering(c)) { /* libevhtp's business */
        c->line_len = c->headers_len = c->lines = 0;
    } else {
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t n = evbuffer_get_length(in);
        /* libevhtp pulls the whole input up itself, right after this */
        const unsigned char *buf = n ? evbuffer_pullup(in, -1) : NULL;
        if (buf && guard_scan(c, bev, buf, n) < 0) return;
    }
    c->evhtp_readcb(bev, c->conn); /* may free the connection, and c */
}

/* libevhtp 1.2.18 does not parse what is left in its input once a keep-alive request is
 * done (requests pipelined in one packet waited for more bytes that never came): a
 * request's end reads the rest as if it had just arrived, through the guard. */
static void kick_cb(evutil_socket_t fd, short what, void *arg) {
    gw_conn *c = arg;
    struct bufferevent *bev = evhtp_connection_get_bev(c->conn);
    if (bev && !c->in_body && !c->refused && evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        guard_readcb(bev, c);
}

static void conn_kick(gw_conn *c) {
    struct bufferevent *bev = evhtp_connection_get_bev(c->conn);
    if (!bev || !c->evhtp_readcb || evbuffer_get_length(bufferevent_get_input(bev)) == 0) return;
    if (!c->kick) c->kick = event_new(bufferevent_get_base(bev), -1, 0, kick_cb, c);
    if (c->kick) event_active(c->kick, EV_TIMEOUT, 0);
}

static void guard_writecb(struct bufferevent *bev, void *arg) {
    gw_conn *c = arg;
    c->evhtp_writecb(bev, c->conn);
}

static void guard_eventcb(struct bufferevent *bev, short what, void *arg) {
    gw_conn *c = arg;
    c->evhtp_eventcb(bev, what, c->conn);
}

/* ------------------------------------------------------------ connections ----------- */

static evhtp_res on_connection_fini(evhtp_connection_t *conn, void *arg) {
    gw_conn *c = arg;
    if (c->prev) c->prev->next = c->next;
    else c->g->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->r) c->r->conn = NULL; /* libevhtp frees the request after this hook */
    if (c->linger) event_free(c->linger);
    if (c->kick) event_free(c->kick);
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
    evhtp_connection_set_hook(conn, evhtp_hook_on_header, (evhtp_hook)on_header, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, c);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_connection_fini, c);
    /* libevhtp set its callbacks on the connection's bufferevent before this hook: the
     * guard goes in front of them */
    struct bufferevent *bev = evhtp_connection_get_bev(conn);
    void *cbarg = NULL;
    if (bev) bufferevent_getcb(bev, &c->evhtp_readcb, &c->evhtp_writecb, &c->evhtp_eventcb, &cbarg);
    if (bev && cbarg == conn && c->evhtp_readcb && c->evhtp_writecb && c->evhtp_eventcb)
        bufferevent_setcb(bev, guard_readcb, guard_writecb, guard_eventcb, c);
    return EVHTP_RES_OK;
}

void gw_http_close_all(gw *g) {
    while (g->conns) evhtp_connection_free(g->conns->conn); /* fini unlinks it */
}

void gw_http_install(gw *g, evhtp_callback_cb handler) {
    route_handler = handler;
    evhtp_set_post_accept_cb(g->htp, on_accept, g);
    evhtp_set_gencb(g->htp, dispatch, g);
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
    evhtp_request_resume(r->req);
}

void gw_reply_bytes(gw_req *r, int status, const char *content_type, const void *data, size_t len) {
    if (r->answered) return;
    r->answered = true;
    gw_add_header(r, "X-Request-ID", r->request_id);
    if (content_type) gw_add_header(r, "Content-Type", content_type);
    if (r->too_large || r->uri_too_long || r->headers_too_large || r->g->draining) {
        /* Shutting down: the client reconnects, to another gateway. */
        gw_add_header(r, "Connection", "close");
        evhtp_request_set_keepalive(r->req, 0);
    }
    if (len) evbuffer_add(r->req->buffer_out, data, len);
    char status_s[8], ms[32];
    snprintf(status_s, sizeof status_s, "%d", status);
    snprintf(ms, sizeof ms, "%.3f", (double)(now_us() - r->start_us) / 1000.0);
    fleet_log(FLEET_LOG_DEBUG, "request", "method", htparser_get_methodstr_m(r->req->method),
              "path", r->req->uri && r->req->uri->path ? r->req->uri->path->full : "",
              "status", status_s, "ms", ms, "request_id", r->request_id, NULL);
    bool paused = r->paused;
    evhtp_request_t *req = r->req;
    evhtp_send_reply(req, (evhtp_res)status);
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

void gw_reply_problem(gw_req *r, int status, const char *slug, const char *title,
                      const char *detail_fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof detail, detail_fmt, ap);
    va_end(ap);
    char type[96];
    snprintf(type, sizeof type, "urn:fleet:problem:%s", slug);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title, "status",
                          status, "detail", detail, "request_id", r->request_id);
    if (!p) /* detail was not valid UTF-8 (it may quote user input): drop it */
        p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                      "request_id", r->request_id);
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!text) {
        gw_reply_bytes(r, status, "application/problem+json", "{}", 2);
        return;
    }
    gw_reply_bytes(r, status, "application/problem+json", text, strlen(text));
    free(text);
}

void gw_reply_unavailable(gw_req *r) {
    gw_add_header(r, "Retry-After", "1");
    gw_reply_problem(r, 503, "redis-unavailable", "Service unavailable",
                     "the job store (Redis) is not reachable right now; retry shortly");
}
