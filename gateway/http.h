/* http.h: one HTTP request's context and the ways to answer it.
 *
 * Every request gets a gw_req when its headers are parsed; it lives until libevhtp frees
 * the request (after the answer is written, or when the client goes away). It carries the
 * X-Request-ID that every answer repeats, and the body-size guard: a body over
 * FLEET_MAX_BODY is drained as it arrives (never buffered) and answered 413.
 *
 * Head limits: a request line over GW_REQUEST_LINE_MAX is answered 414, a header line
 * over GW_HEADER_LINE_MAX, more than GW_HEADERS_MAX header fields or more than
 * GW_HEADERS_TOTAL_MAX bytes of them 431, each with a problem+json body and
 * Connection: close. libevhtp 1.2.18 alone closes the connection without a word on any
 * line over 8 KiB and takes any number of headers, so http.c looks at the bytes of a
 * head before libevhtp parses them (http.c, "Head guard").
 *
 * Framing (framing.h): both Content-Length and Transfer-Encoding, a bad Content-Length, a
 * header name followed by whitespace, or a bad chunk size: 400; a transfer coding other
 * than chunked: 501; Expect: 100-continue with a Content-Length over FLEET_MAX_BODY: 413
 * without 100 Continue. Each closes the connection.
 *
 * Connections: a head must be complete within FLEET_HEADER_TIMEOUT_S (408), a body may
 * stall at most FLEET_BODY_TIMEOUT_S (408), an idle keep-alive connection is closed after
 * FLEET_IDLE_TIMEOUT_S; past FLEET_MAX_CONNECTIONS a connection gets only GET /healthz
 * and /readyz answered, anything else 503 with Retry-After, and is closed (http.c).
 *
 * Functions named *_or_reply answer the request themselves when they fail, so a handler
 * just returns.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <evhtp/evhtp.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/job.h"
#include "gateway.h"
#include "problems.h"

#define GW_URI_MAX 2048 /* longer URIs: 414 (libevhtp 1.2.18 can corrupt > ~4 KB) */
#define GW_REQUEST_LINE_MAX (GW_URI_MAX + 32) /* method, URI, version: 414 above */
#define GW_HEADER_LINE_MAX 8192               /* one "Name: value" line: 431 above */
#define GW_HEADERS_MAX 100                    /* header fields: 431 above */
#define GW_HEADERS_TOTAL_MAX 32768            /* bytes of all header lines: 431 above */
#define GW_FD_RESERVE 64                      /* descriptors kept from the default connection cap */

typedef struct gw_req {
    unsigned magic;
    gw *g;
    evhtp_request_t *req;
    char request_id[FLEET_REQUEST_ID_MAX + 1];
    /* The request id is "req_" and a fresh job id that no job took yet: the first job the
     * request submits takes it, and its hash then needs no request_id field. */
    bool request_id_free;
    size_t body_len; /* bytes received, counted even when drained */
    bool too_large;
    bool uri_too_long;
    bool headers_too_large; /* over GW_HEADERS_MAX / GW_HEADERS_TOTAL_MAX: answered 431 */
    gw_conn *conn;          /* the connection, while both live (the head guard's state) */
    bool paused;            /* waiting for Redis: resume after answering */
    bool answered;
    int status;      /* the status gw_reply_bytes answered (metrics.c); 0 before, or for a stream */
    bool close_conn; /* answered with Connection: close: closed once written */
    uint64_t start_us;
    gw_principal who;                   /* filled by auth (auth.h) before a /v1 handler runs */
    const void *route;                  /* the matched route, while auth runs (routes.c) */
    char route_id[FLEET_MODEL_MAX + 1]; /* a job id, or a model name (routes.c) */
    /* Called once when libevhtp frees the request (answered, or the client went away),
     * before the gw_req is freed: streams (SSE) release what they hold. */
    void (*on_fini)(void *arg);
    void *fini_arg;
} gw_req;

/* Installs the per-request hooks on the server and sets g->max_conns. */
void gw_http_install(gw *g, evhtp_callback_cb handler);
/* Once the server listens: accept failures at the descriptor limit pause the listener
 * briefly and are logged at most once a second, instead of spinning. */
void gw_http_listen_guard(gw *g);
/* Frees every live client connection (evhtp_free does not), at shutdown. */
void gw_http_close_all(gw *g);

/* The gw_req of a request inside the handler (NULL if the headers hook did not run). */
gw_req *gw_req_of(evhtp_request_t *req, void *cbarg);

const char *gw_header(const gw_req *r, const char *name);
/* Copies the body into a NUL-terminated malloc'd buffer (caller frees). */
char *gw_body(const gw_req *r, size_t *len);

/* Answers; `body` is stolen. Resumes a paused request. */
void gw_reply_json(gw_req *r, int status, json_t *body);
void gw_reply_bytes(gw_req *r, int status, const char *content_type, const void *data, size_t len);
/* An RFC 9457 problem of type "urn:fleet:problem:<slug>"; its slug, status and title come
 * from the table in problems.h. */
void gw_reply_problem(gw_req *r, gw_problem_id id, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with extension members (RFC 9457 section 3.2) from the object members (stolen;
 * NULL: none); a member of the problem's own (type, title, ...) is not replaced. */
void gw_reply_problem_with(gw_req *r, gw_problem_id id, json_t *members, const char *detail_fmt,
                           ...) __attribute__((format(printf, 4, 5)));
void gw_add_header(gw_req *r, const char *name, const char *value);

/* Pauses the request before an async Redis call (resumed by gw_reply_*). */
void gw_pause(gw_req *r);
/* Undoes gw_pause before answering, for a request that goes on without Redis (an event
 * stream after its API key was looked up): reading again lets a client's close be seen. */
void gw_resume(gw_req *r);

#endif
