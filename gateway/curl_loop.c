/* curl_loop.c: libcurl's multi interface on the gateway's libevent loop (curl_loop.h).
 *
 * The glue follows curl's "multi_socket" model:
 *
 *   curl ── CURLMOPT_SOCKETFUNCTION ──▶ on_socket: one libevent event per socket, kept
 *                                        with curl_multi_assign, re-assigned when the
 *                                        interest changes, freed on CURL_POLL_REMOVE
 *   curl ── CURLMOPT_TIMERFUNCTION ───▶ on_timer: only (re)arms or deletes one evtimer
 *   libevent: socket ready / timer ───▶ curl_multi_socket_action, then drain_done
 *                                        (curl_multi_info_read until empty)
 *
 * curl_multi_socket_action is called only from libevent callbacks, never from inside
 * curl's own callbacks. A transfer added by gw_curl_post makes curl ask for a 0 ms
 * timer, so it starts, and its completion is reported, from the loop.
 */
#include "curl_loop.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define GW_CURL_USER_AGENT "fleet-webhook/1"
#define GW_CURL_DEFAULT_TIMEOUT_MS 30000L
#define GW_CURL_RETRY_AFTER_MAX (365L * 24 * 3600)

/* One socket curl asked us to watch. */
typedef struct gw_sock {
    struct gw_curl *c;
    curl_socket_t fd;
    struct event *ev;
    int what; /* CURL_POLL_IN/OUT/INOUT now watched */
    struct gw_sock *prev, *next;
} gw_sock;

/* One transfer in flight; owns everything curl reads from it. */
typedef struct gw_xfer {
    struct gw_curl *c;
    CURL *easy;
    char *body; /* curl does not copy CURLOPT_POSTFIELDS */
    struct curl_slist *headers;
    struct curl_slist *resolve;
    gw_fetch_cb cb;
    void *arg;
    int (*allow_addr)(const struct sockaddr *sa, void *arg);
    void *allow_arg;
    long retry_after_s; /* of the latest response head; -1 when none */
    int sockets_allowed;
    char refused[INET6_ADDRSTRLEN]; /* the last address allow_addr refused, or "" */
    char errbuf[CURL_ERROR_SIZE];
    struct gw_xfer *prev, *next;
} gw_xfer;

struct gw_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    gw_xfer *xfers; /* in flight */
    gw_sock *socks; /* watched */
    size_t active;
    bool closing; /* gw_curl_free runs: no new transfers */
};

/* ------------------------------------------------------------ Retry-After ----------- */

long gw_curl_parse_retry_after(const char *value, time_t now) {
    if (!value) return -1;
    while (*value == ' ' || *value == '\t') value++;
    char v[128];
    size_t n = strlen(value);
    while (n > 0 && isspace((unsigned char)value[n - 1])) n--;
    if (n == 0 || n >= sizeof v) return -1;
    memcpy(v, value, n);
    v[n] = '\0';
    if (isdigit((unsigned char)v[0])) { /* delay-seconds = 1*DIGIT */
        long s = 0;
        for (const char *p = v; *p; p++) {
            if (!isdigit((unsigned char)*p)) return -1;
            if (s < GW_CURL_RETRY_AFTER_MAX) s = s * 10 + (*p - '0');
        }
        return s > GW_CURL_RETRY_AFTER_MAX ? GW_CURL_RETRY_AFTER_MAX : s;
    }
    /* HTTP-date: all three forms (IMF-fixdate, RFC 850, asctime) start with a day name. */
    if (!isalpha((unsigned char)v[0])) return -1;
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) return -1;
    if (t <= now) return 0;
    double d = difftime(t, now);
    return d > (double)GW_CURL_RETRY_AFTER_MAX ? GW_CURL_RETRY_AFTER_MAX : (long)d;
}

/* ------------------------------------------------------------ sockets and timer ----- */

static void drain_done(gw_curl *c);

static void on_sock_event(evutil_socket_t fd, short events, void *arg) {
    gw_curl *c = arg;
    int mask = 0;
    if (events & EV_READ) mask |= CURL_CSELECT_IN;
    if (events & EV_WRITE) mask |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(c->multi, fd, mask, &running);
    drain_done(c); /* the gw_sock of fd may be gone now: not touched again */
}

static void on_timer_event(evutil_socket_t fd, short events, void *arg) {
    gw_curl *c = arg;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(c);
}

static void sock_free(gw_curl *c, gw_sock *k) {
    if (k->prev) k->prev->next = k->next;
    else c->socks = k->next;
    if (k->next) k->next->prev = k->prev;
    event_free(k->ev); /* also deletes it; safe inside its own callback */
    free(k);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what, or forget it. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    gw_curl *c = userp;
    gw_sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) sock_free(c, k);
        return 0;
    }
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k) return -1;
        k->c = c;
        k->fd = s;
        k->ev = event_new(c->base, s, 0, on_sock_event, c);
        if (!k->ev) {
            free(k);
            return -1;
        }
        k->next = c->socks;
        if (c->socks) c->socks->prev = k;
        c->socks = k;
        curl_multi_assign(c->multi, s, k);
    } else if (k->what == what) {
        return 0;
    }
    k->what = what;
    short flags = EV_PERSIST;
    if (what & CURL_POLL_IN) flags |= EV_READ;
    if (what & CURL_POLL_OUT) flags |= EV_WRITE;
    event_del(k->ev);
    event_assign(k->ev, c->base, s, flags, on_sock_event, c);
    if (flags & (EV_READ | EV_WRITE)) event_add(k->ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: arms (or with -1 deletes) the one timer; nothing else. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    gw_curl *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(c->timer, &tv) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ transfers ------------- */

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
    return size * n; /* read and discarded */
}

static size_t on_header(char *b, size_t size, size_t n, void *ud) {
    gw_xfer *x = ud;
    size_t len = size * n;
    static const char ra[] = "Retry-After:";
    if (len >= 5 && memcmp(b, "HTTP/", 5) == 0) {
        x->retry_after_s = -1; /* a new response head (after a 1xx) */
    } else if (len > sizeof ra - 1 && strncasecmp(b, ra, sizeof ra - 1) == 0) {
        char v[128];
        size_t vl = len - (sizeof ra - 1);
        if (vl >= sizeof v) vl = sizeof v - 1; /* too long for any valid value: fails */
        memcpy(v, b + sizeof ra - 1, vl);
        v[vl] = '\0';
        x->retry_after_s = gw_curl_parse_retry_after(v, time(NULL));
    }
    return len;
}

static void format_addr(const struct sockaddr *sa, char *out, size_t outlen) {
    const void *a = NULL;
    if (sa->sa_family == AF_INET) a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (!a || !inet_ntop(sa->sa_family, a, out, (socklen_t)outlen))
        snprintf(out, outlen, "(address family %d)", (int)sa->sa_family);
}

/* CURLOPT_OPENSOCKETFUNCTION: the SSRF policy sees every address curl connects to. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
    gw_xfer *x = clientp;
    if (purpose == CURLSOCKTYPE_IPCXN && x->allow_addr && !x->allow_addr(&a->addr, x->allow_arg)) {
        format_addr(&a->addr, x->refused, sizeof x->refused);
        return CURL_SOCKET_BAD;
    }
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s != CURL_SOCKET_BAD) x->sockets_allowed++;
    return s;
}

static void xfer_free(gw_xfer *x) {
    if (!x) return;
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->resolve);
    free(x->body);
    free(x);
}

/* Ends x: takes it out of the multi handle, calls back, frees it. forced_error: the
 * transfer did not end by itself ("aborted"). */
static void xfer_finish(gw_xfer *x, CURLcode rc, const char *forced_error) {
    gw_curl *c = x->c;
    if (x->prev) x->prev->next = x->next;
    else c->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    c->active--;
    curl_multi_remove_handle(c->multi, x->easy);

    gw_fetch_result res = {.status = 0, .curl_code = (int)rc, .error = "", .retry_after_s = -1};
    char ssrf[INET6_ADDRSTRLEN + 64];
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &res.total_s);
    if (forced_error) {
        res.error = forced_error;
    } else if (rc == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.retry_after_s = x->retry_after_s;
    } else if (x->refused[0] && x->sockets_allowed == 0) {
        snprintf(ssrf, sizeof ssrf, "connection to %s refused by the SSRF policy", x->refused);
        res.error = ssrf;
    } else {
        res.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    }
    x->cb(&res, x->arg);
    xfer_free(x);
}

/* Reports every finished transfer. Called after each curl_multi_socket_action. */
static void drain_done(gw_curl *c) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *easy = m->easy_handle; /* m dies with curl_multi_remove_handle */
        CURLcode rc = m->data.result;
        gw_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (x) xfer_finish(x, rc, NULL);
    }
}

/* True when one of the NULL-terminated "Name: value" lines is a name header. */
static bool has_header(const char *const *h, const char *name) {
    size_t n = strlen(name);
    for (; h && *h; h++)
        if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':') return true;
    return false;
}

int gw_curl_post(gw_curl *c, const gw_fetch *f, gw_fetch_cb cb, void *arg) {
    if (!c || c->closing || !f || !f->url || !cb || (!f->body && f->body_len)) return -1;
    gw_xfer *x = calloc(1, sizeof *x);
    if (!x) return -1;
    x->c = c;
    x->cb = cb;
    x->arg = arg;
    x->allow_addr = f->allow_addr;
    x->allow_arg = f->allow_arg;
    x->retry_after_s = -1;
    x->easy = curl_easy_init();
    x->body = malloc(f->body_len ? f->body_len : 1);
    if (!x->easy || !x->body) goto err;
    if (f->body_len) memcpy(x->body, f->body, f->body_len);

    struct curl_slist *h = NULL;
    if (!has_header(f->headers, "Content-Type")) {
        if (!(h = curl_slist_append(x->headers, "Content-Type: application/json"))) goto err;
        x->headers = h;
    }
    if (!(h = curl_slist_append(x->headers, "Expect:"))) goto err;
    x->headers = h;
    for (const char *const *p = f->headers; p && *p; p++) {
        if (!(h = curl_slist_append(x->headers, *p))) goto err;
        x->headers = h;
    }
    if (f->pin && !(x->resolve = curl_slist_append(NULL, f->pin))) goto err;

    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                           \
    do {                                                        \
        if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); \
    } while (0)
    SET(CURLOPT_URL, f->url);
    SET(CURLOPT_PRIVATE, (void *)x);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
    /* A transfer that times out or is aborted while curl's threaded resolver still runs
     * getaddrinfo would otherwise join that thread, blocking the loop for as long as DNS
     * hangs; with this the thread is detached and frees its own state when it ends. */
    SET(CURLOPT_QUICK_EXIT, 1L);
#endif
    SET(CURLOPT_PROXY, ""); /* never a proxy from the environment */
    SET(CURLOPT_TIMEOUT_MS, f->timeout_ms > 0 ? f->timeout_ms : GW_CURL_DEFAULT_TIMEOUT_MS);
    SET(CURLOPT_USERAGENT, GW_CURL_USER_AGENT);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body_len);
    SET(CURLOPT_POSTFIELDS, x->body);
    SET(CURLOPT_HTTPHEADER, x->headers);
    if (x->resolve) SET(CURLOPT_RESOLVE, x->resolve);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)x);
#undef SET
    if (rc != CURLE_OK) goto err;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) goto err;

    x->next = c->xfers;
    if (c->xfers) c->xfers->prev = x;
    c->xfers = x;
    c->active++;
    return 0;
err:
    xfer_free(x);
    return -1;
}

size_t gw_curl_active(const gw_curl *c) { return c ? c->active : 0; }

/* ------------------------------------------------------------ lifecycle ------------- */

gw_curl *gw_curl_new(struct event_base *base) {
    gw_curl *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = base;
    if (!(c->multi = curl_multi_init())) goto err;
    if (!(c->timer = evtimer_new(base, on_timer_event, c))) goto err;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c) != CURLM_OK)
        goto err;
    return c;
err:
    if (c->multi) curl_multi_cleanup(c->multi);
    if (c->timer) event_free(c->timer);
    free(c);
    return NULL;
}

void gw_curl_free(gw_curl *c) {
    if (!c) return;
    c->closing = true;
    while (c->xfers) xfer_finish(c->xfers, CURLE_ABORTED_BY_CALLBACK, "aborted");
    curl_multi_cleanup(c->multi); /* closes kept-alive connections; may still call back */
    while (c->socks) sock_free(c, c->socks);
    event_free(c->timer);
    free(c);
}
