/* tl_receiver.c: a real HTTP/1.1 server on loopback for webhook tests (testlib.h,
 * "webhook receiver").
 *
 * One background thread per receiver runs a poll() loop over the listening socket, a
 * wake-up pipe and every client connection, so a held (delayed) answer never stops the
 * others and tl_receiver_stop() interrupts everything at once:
 *
 *   test thread                         receiver thread
 *   tl_receiver_start  ── bind, listen, pthread_create ──▶ poll loop
 *   tl_receiver_respond ─▶ script FIFO (mutex) ◀── popped when a request is complete
 *   tl_receiver_get     ◀─ records (mutex) ◀────────────── appended, then cond broadcast
 *   tl_receiver_stop    ── byte on the pipe, join ──▶ closes listener and connections
 *
 * The thread never calls into the rest of the harness (tl_defer, FAILF, tl_printf are
 * not thread-safe); it only uses malloc and the receiver's own state. Records are
 * allocated once, never moved or changed after they are published, and freed when the
 * case ends, so pointers handed to the test stay valid until then.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tl_internal.h"

#define RECV_MAX_HEAD (64 * 1024) /* request line + headers */
#define RECV_MAX_BODY (16 * 1024 * 1024)

/* ------------------------------------------------------------ state ----------------- */

typedef struct answer {
    int status;
    char *extra; /* header line(s) without the final CRLF, or NULL */
    int delay_ms;
    struct answer *next;
} answer;

typedef enum { CONN_READING, CONN_HOLDING, CONN_WRITING } conn_state;

typedef struct conn {
    int fd;
    unsigned id;
    conn_state state;
    char *in; /* bytes read and not yet parsed */
    size_t in_len, in_cap;
    char *out; /* the answer being written */
    size_t out_len, out_off;
    int64_t respond_at; /* CONN_HOLDING: when the answer may go out */
    bool close_after;   /* close once the answer is written */
    bool sent_continue; /* "100 Continue" already sent for the current request */
} conn;

struct tl_receiver {
    int port;
    bool ipv6;     /* listens on [::1] instead of 127.0.0.1 */
    int listen_fd; /* -1 while stopped; owned by the thread while it runs */
    int wake[2];   /* pipe: the test thread writes one byte to stop the loop */
    pthread_t thread;
    bool running;          /* the thread exists (test thread only) */
    unsigned next_conn_id; /* receiver thread only (survives restarts) */

    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cond; /* broadcast when a record is added */
    answer *script, *script_tail;
    tl_received **recs;
    size_t nrecs, caprecs;
};

/* ------------------------------------------------------------ low level ------------- */

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static char *memdup0(const char *s, size_t n) {
    char *d = tl_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Binds and listens on 127.0.0.1:port, or [::1]:port (IPv6 only), 0: any free port. -1
 * and errno on failure. */
static int listen_on(bool ipv6, int port, int *bound_port) {
    int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t alen;
    if (ipv6) {
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_loopback;
        a6->sin6_port = htons((uint16_t)port);
        alen = sizeof *a6;
    } else {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t)port);
        alen = sizeof *a4;
    }
    if (bind(fd, (struct sockaddr *)&ss, alen) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &alen) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *bound_port = ntohs(ipv6 ? a6->sin6_port : a4->sin_port);
    return fd;
}

static void received_free(tl_received *q) {
    if (!q) return;
    free(q->method);
    free(q->path);
    free(q->version);
    for (size_t i = 0; i < q->nheaders; i++) {
        free(q->headers[i].name);
        free(q->headers[i].value);
    }
    free(q->headers);
    free(q->body);
    free(q);
}

static void conn_close(conn *c) {
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* ------------------------------------------------------------ answers --------------- */

/* Queues an answer on c. body NULL: none (204, 304). */
static void conn_answer(conn *c, int status, const char *extra, const char *body,
                        bool close_after) {
    size_t blen = body ? strlen(body) : 0;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) abort();
    fprintf(f, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (body) fprintf(f, "Content-Type: text/plain\r\nContent-Length: %zu\r\n", blen);
    if (close_after) fputs("Connection: close\r\n", f);
    if (extra && *extra) fprintf(f, "%s\r\n", extra);
    fputs("\r\n", f);
    if (body) fwrite(body, 1, blen, f);
    fclose(f);
    free(c->out);
    c->out = out;
    c->out_len = n;
    c->out_off = 0;
    c->close_after = close_after;
}

/* A request the receiver refuses (not recorded, no script consumed). */
static void conn_refuse(conn *c, int status, const char *why) {
    conn_answer(c, status, NULL, why, true);
    c->in_len = 0;
    c->state = CONN_WRITING;
}

/* ------------------------------------------------------------ parsing --------------- */

static const char *find_head_end(const char *p, size_t n) {
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') return p + i;
    return NULL;
}

static const char *header_value(const tl_header *h, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0) return h[i].value;
    return NULL;
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static bool has_token(const char *v, const char *token) {
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',') v++;
        const char *e = v;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0) return true;
        v = e;
    }
    return false;
}

/* The end of the line that starts at p: its "\r\n", or end. */
static const char *line_end(const char *p, const char *end) {
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n') return p;
    return end;
}

/* Parses a request head (without its final blank line) into q. Returns 0, or an HTTP
 * status to refuse the request with. */
static int parse_head(const char *p, size_t head_len, tl_received *q) {
    const char *end = p + head_len;
    const char *eol = line_end(p, end);
    /* request line: METHOD SP target SP version */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p) return 400;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1) return 400;
    q->method = memdup0(p, (size_t)(sp1 - p));
    q->path = memdup0(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    q->version = memdup0(sp2 + 1, (size_t)(eol - sp2 - 1));
    if (strcmp(q->version, "HTTP/1.1") != 0 && strcmp(q->version, "HTTP/1.0") != 0) return 400;
    size_t cap = 0;
    for (const char *line = eol + 2; line < end;) {
        const char *le = line_end(line, end);
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon || colon == line) return 400;
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (q->nheaders == cap) {
            cap = cap ? cap * 2 : 16;
            q->headers = tl_xrealloc(q->headers, cap * sizeof(*q->headers));
        }
        q->headers[q->nheaders].name = memdup0(line, (size_t)(colon - line));
        q->headers[q->nheaders].value = memdup0(v, (size_t)(ve - v));
        q->nheaders++;
        line = le + 2;
    }
    return 0;
}

static void publish(tl_receiver *r, tl_received *q, answer *a) {
    q->status = a ? a->status : 200;
    q->at_ms = tl_now_ms();
    if (r->nrecs == r->caprecs) {
        r->caprecs = r->caprecs ? r->caprecs * 2 : 16;
        r->recs = tl_xrealloc(r->recs, r->caprecs * sizeof(*r->recs));
    }
    r->recs[r->nrecs++] = q;
    pthread_cond_broadcast(&r->cond);
}

/* Parses as much of c->in as forms one complete request and moves c to HOLDING or
 * WRITING. Leaves c READING when more bytes are needed. */
static void conn_parse(tl_receiver *r, conn *c) {
    const char *he = find_head_end(c->in, c->in_len);
    if (!he) {
        if (c->in_len > RECV_MAX_HEAD) conn_refuse(c, 431, "request head too large\n");
        return;
    }
    size_t head_len = (size_t)(he - c->in);
    size_t body_off = head_len + 4;
    tl_received *q = tl_xmalloc(sizeof *q);
    memset(q, 0, sizeof *q);
    int bad = parse_head(c->in, head_len, q);
    if (bad) {
        received_free(q);
        conn_refuse(c, bad, "malformed request\n");
        return;
    }
    if (header_value(q->headers, q->nheaders, "Transfer-Encoding")) {
        received_free(q);
        conn_refuse(c, 411, "chunked bodies are not supported: send Content-Length\n");
        return;
    }
    size_t clen = 0;
    const char *cl = header_value(q->headers, q->nheaders, "Content-Length");
    if (cl) {
        char *e = NULL;
        errno = 0;
        unsigned long long v = strtoull(cl, &e, 10);
        if (errno || e == cl || *e || v > RECV_MAX_BODY) {
            received_free(q);
            conn_refuse(c, 413, "bad or too large Content-Length\n");
            return;
        }
        clen = (size_t)v;
    }
    if (c->in_len < body_off + clen) {
        /* Wait for the body; say "go on" once if the client waits for that. */
        const char *ex = header_value(q->headers, q->nheaders, "Expect");
        bool want_continue = ex && strcasecmp(ex, "100-continue") == 0 && !c->sent_continue &&
                             c->in_len == body_off;
        received_free(q);
        if (want_continue) {
            static const char k100[] = "HTTP/1.1 100 Continue\r\n\r\n";
            ssize_t w = send(c->fd, k100, sizeof k100 - 1, MSG_NOSIGNAL);
            (void)w; /* a short write of 25 bytes on a fresh socket does not happen */
            c->sent_continue = true;
        }
        return;
    }
    q->body = memdup0(c->in + body_off, clen);
    q->body_len = clen;
    q->conn = c->id;
    const char *conn_hdr = header_value(q->headers, q->nheaders, "Connection");
    bool close_after = strcmp(q->version, "HTTP/1.0") == 0 ? !has_token(conn_hdr, "keep-alive")
                                                           : has_token(conn_hdr, "close");
    memmove(c->in, c->in + body_off + clen, c->in_len - body_off - clen);
    c->in_len -= body_off + clen;
    c->sent_continue = false;

    pthread_mutex_lock(&r->mu);
    answer *a = r->script;
    if (a) {
        r->script = a->next;
        if (!r->script) r->script_tail = NULL;
    }
    publish(r, q, a);
    pthread_mutex_unlock(&r->mu);

    int status = a ? a->status : 200;
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    char body[32];
    if (status >= 200 && status < 300) snprintf(body, sizeof body, "ok");
    else snprintf(body, sizeof body, "status %d\n", status);
    conn_answer(c, status, a ? a->extra : NULL, no_body ? NULL : body, close_after);
    int delay = a ? a->delay_ms : 0;
    if (a) {
        free(a->extra);
        free(a);
    }
    if (delay > 0) {
        c->state = CONN_HOLDING;
        c->respond_at = tl_now_ms() + delay;
    } else {
        c->state = CONN_WRITING;
    }
}

/* ------------------------------------------------------------ the loop -------------- */

/* Reads what is available. Returns false when the peer closed or the socket failed. */
static bool conn_read(conn *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 8192;
            c->in = tl_xrealloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (c->in_len > RECV_MAX_HEAD + RECV_MAX_BODY) return false;
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

/* Writes what it can. Returns false when the connection is to be closed. */
static bool conn_write(tl_receiver *r, conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        return false;
    }
    if (c->close_after) return false;
    c->state = CONN_READING;
    conn_parse(r, c); /* a pipelined request may already be buffered */
    return true;
}

static void *receiver_main(void *arg) {
    tl_receiver *r = arg;
    conn **conns = NULL;
    size_t nconns = 0, capconns = 0;
    struct pollfd *pfds = NULL;
    size_t cappfds = 0;
    bool stop = false;

    while (!stop) {
        if (cappfds < nconns + 2) {
            cappfds = (nconns + 2) * 2;
            pfds = tl_xrealloc(pfds, cappfds * sizeof(*pfds));
        }
        pfds[0] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        int64_t now = tl_now_ms(), next = -1;
        for (size_t i = 0; i < nconns; i++) {
            conn *c = conns[i];
            short ev = POLLIN; /* also while holding or writing: notice a peer that left */
            if (c->state == CONN_WRITING) ev |= POLLOUT;
            if (c->state == CONN_HOLDING && (next < 0 || c->respond_at < next))
                next = c->respond_at;
            pfds[i + 2] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int timeout = next < 0 ? -1 : (next <= now ? 0 : (int)(next - now));
        int n = poll(pfds, nconns + 2, timeout);
        if (n < 0 && errno != EINTR) break;
        if (n < 0) continue;
        if (pfds[0].revents) break; /* stop */

        now = tl_now_ms();
        size_t polled = nconns; /* connections accepted below are not in pfds yet */
        for (size_t i = 0; i < polled; i++) {
            conn *c = conns[i];
            short re = pfds[i + 2].revents;
            bool ok = true;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                ok = conn_read(c);
                if (ok && c->state == CONN_READING) conn_parse(r, c);
            }
            if (ok && c->state == CONN_HOLDING && c->respond_at <= now) c->state = CONN_WRITING;
            if (ok && c->state == CONN_WRITING) ok = conn_write(r, c);
            if (!ok) {
                conn_close(c);
                conns[i] = NULL;
            }
        }
        size_t j = 0; /* compact the closed ones away */
        for (size_t i = 0; i < nconns; i++)
            if (conns[i]) conns[j++] = conns[i];
        nconns = j;

        if (pfds[1].revents & POLLIN) {
            for (;;) {
                int fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) break;
                conn *c = tl_xmalloc(sizeof *c);
                memset(c, 0, sizeof *c);
                c->fd = fd;
                c->id = ++r->next_conn_id;
                c->state = CONN_READING;
                if (nconns == capconns) {
                    capconns = capconns ? capconns * 2 : 16;
                    conns = tl_xrealloc(conns, capconns * sizeof(*conns));
                }
                conns[nconns++] = c;
            }
        }
    }
    for (size_t i = 0; i < nconns; i++) conn_close(conns[i]);
    free(conns);
    free(pfds);
    close(r->listen_fd);
    r->listen_fd = -1;
    return NULL;
}

/* ------------------------------------------------------------ API ------------------- */

static void receiver_spawn(tl_receiver *r) {
    /* Signals (the case's alarm, SIGTERM) stay with the test thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&r->thread, NULL, receiver_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        close(r->listen_fd);
        r->listen_fd = -1;
        FAILF("receiver: pthread_create: %s", strerror(e));
    }
    r->running = true;
}

static void receiver_free(void *arg) {
    tl_receiver *r = arg;
    tl_receiver_stop(r);
    close(r->wake[0]);
    close(r->wake[1]);
    while (r->script) {
        answer *a = r->script;
        r->script = a->next;
        free(a->extra);
        free(a);
    }
    for (size_t i = 0; i < r->nrecs; i++) received_free(r->recs[i]);
    free(r->recs);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static tl_receiver *receiver_start(bool ipv6, int port) {
    int bound = 0;
    int fd = listen_on(ipv6, port, &bound);
    if (fd < 0)
        FAILF("receiver: cannot listen on %s:%d: %s", ipv6 ? "[::1]" : "127.0.0.1", port,
              strerror(errno));
    tl_receiver *r = tl_xmalloc(sizeof *r);
    memset(r, 0, sizeof *r);
    r->port = bound;
    r->ipv6 = ipv6;
    r->listen_fd = fd;
    if (pipe2(r->wake, O_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        free(r);
        FAILF("receiver: pipe: %s", strerror(e));
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    tl_defer(receiver_free, r);
    receiver_spawn(r);
    return r;
}

tl_receiver *tl_receiver_start(int port) { return receiver_start(false, port); }

tl_receiver *tl_receiver_start_ipv6(int port) { return receiver_start(true, port); }

int tl_receiver_port(tl_receiver *r) { return r->port; }

const char *tl_receiver_url(tl_receiver *r, const char *path) {
    return tl_printf("http://%s:%d%s", r->ipv6 ? "[::1]" : "127.0.0.1", r->port, path ? path : "");
}

void tl_receiver_respond(tl_receiver *r, int status, const char *extra_header, int delay_ms) {
    if (status < 200 || status > 599) FAILF("receiver: scripted status %d is not 200..599", status);
    answer *a = tl_xmalloc(sizeof *a);
    *a = (answer){.status = status,
                  .extra = extra_header ? tl_xstrdup(extra_header) : NULL,
                  .delay_ms = delay_ms};
    pthread_mutex_lock(&r->mu);
    if (r->script_tail) r->script_tail->next = a;
    else r->script = a;
    r->script_tail = a;
    pthread_mutex_unlock(&r->mu);
}

void tl_receiver_stop(tl_receiver *r) {
    if (!r->running) return;
    char b = 1;
    while (write(r->wake[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(r->thread, NULL);
    r->running = false;
    while (read(r->wake[0], &b, 1) < 0 && errno == EINTR) { /* drain the byte */
    }
}

void tl_receiver_restart(tl_receiver *r) {
    if (r->running) FAILF("receiver: restart while it runs (stop it first)");
    int bound = 0;
    int fd = listen_on(r->ipv6, r->port, &bound);
    if (fd < 0)
        FAILF("receiver: cannot listen again on %s:%d: %s", r->ipv6 ? "[::1]" : "127.0.0.1",
              r->port, strerror(errno));
    r->listen_fd = fd;
    receiver_spawn(r);
}

size_t tl_receiver_count(tl_receiver *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->nrecs;
    pthread_mutex_unlock(&r->mu);
    return n;
}

const tl_received *tl_receiver_get(tl_receiver *r, size_t i) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->nrecs;
    const tl_received *q = i < n ? r->recs[i] : NULL;
    pthread_mutex_unlock(&r->mu);
    if (!q) FAILF("receiver: request #%zu asked for, %zu recorded", i, n);
    return q;
}

const char *tl_received_header(const tl_received *q, const char *name) {
    return header_value(q->headers, q->nheaders, name);
}

bool tl_receiver_wait_count(tl_receiver *r, size_t n, int deadline_ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += deadline_ms / 1000;
    until.tv_nsec += (long)(deadline_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    int e = 0;
    while (r->nrecs < n && e != ETIMEDOUT) e = pthread_cond_timedwait(&r->cond, &r->mu, &until);
    bool ok = r->nrecs >= n;
    pthread_mutex_unlock(&r->mu);
    return ok;
}
