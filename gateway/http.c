/* http.c: request contexts, body guard, answers (http.h). */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "fleet/id.h"
#include "fleet/log.h"

#define GW_REQ_MAGIC 0x6777u
#define GW_URI_MAX 2048 /* libevhtp 1.2.18 can corrupt request lines over ~4 KB */

static uint64_t now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

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

static evhtp_res on_request_fini(evhtp_request_t *req, void *arg) {
    gw_req *r = arg;
    r->g->inflight--;
    if (r->on_fini) r->on_fini(r->fini_arg);
    free(r);
    return EVHTP_RES_OK;
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdr, void *arg) {
    gw *g = arg;
    gw_req *r = calloc(1, sizeof *r);
    if (!r) return EVHTP_RES_ERROR;
    r->magic = GW_REQ_MAGIC;
    r->g = g;
    g->inflight++;
    r->req = req;
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

struct gw_conn {
    gw *g;
    evhtp_connection_t *conn;
    gw_conn *prev, *next;
};

static evhtp_res on_connection_fini(evhtp_connection_t *conn, void *arg) {
    gw_conn *c = arg;
    if (c->prev) c->prev->next = c->next;
    else c->g->conns = c->next;
    if (c->next) c->next->prev = c->prev;
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
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, g);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_connection_fini, c);
    return EVHTP_RES_OK;
}

void gw_http_close_all(gw *g) {
    while (g->conns) evhtp_connection_free(g->conns->conn); /* fini unlinks it */
}

void gw_http_install(gw *g, evhtp_callback_cb handler) {
    evhtp_set_post_accept_cb(g->htp, on_accept, g);
    evhtp_set_gencb(g->htp, handler, g);
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

void gw_reply_bytes(gw_req *r, int status, const char *content_type, const void *data, size_t len) {
    if (r->answered) return;
    r->answered = true;
    gw_add_header(r, "X-Request-ID", r->request_id);
    if (content_type) gw_add_header(r, "Content-Type", content_type);
    if (r->too_large || r->uri_too_long || r->g->draining) {
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
        gw_reply_bytes(r, 500, "application/problem+json",
                       "{\"type\":\"urn:fleet:problem:internal\",\"status\":500}", 46);
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
