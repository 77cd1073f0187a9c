/* curl_loop.h: outgoing HTTP POSTs (webhook deliveries) on the gateway's libevent loop,
 * through libcurl's multi interface. Nothing here blocks the loop: DNS is curl's threaded
 * resolver (a timed-out lookup is abandoned, not waited for: CURLOPT_QUICK_EXIT), sockets
 * and curl's timer are libevent events. A pin (CURLOPT_RESOLVE) skips DNS altogether.
 *
 * Setup: the process's main calls curl_global_init(CURL_GLOBAL_DEFAULT) once, before any
 * gw_curl_new and before other threads start, and curl_global_cleanup at exit.
 *
 * Ownership and callbacks (the same contract as redis.h):
 *   - gw_curl_post copies everything it is given (url, body, headers, pin); the caller's
 *     gw_fetch may go away as soon as it returns.
 *   - Every gw_curl_post that returned 0 gets its callback exactly once: from the event
 *     loop when the transfer ends (never from inside gw_curl_post), or from inside
 *     gw_curl_free for a transfer still in flight (error "aborted"). A post that returned
 *     -1 never gets it.
 *   - The result lives only during the callback. A callback may post again on the same
 *     gw_curl, but must not call gw_curl_free.
 *
 * Each transfer: POST, Content-Type: application/json unless a header names another, an
 * empty "Expect:", User-Agent "fleet-webhook/1" unless a header names another, http and
 * https only, no redirects (a 3xx is just a status), no proxy (the environment's
 * http_proxy is ignored: the SSRF check must see the real peer), the response body read
 * and discarded. Connections are kept alive and reused between transfers to the same
 * host and port.
 */
#ifndef GW_CURL_LOOP_H
#define GW_CURL_LOOP_H

#include <stddef.h>
#include <time.h>

struct event_base;
struct sockaddr;

typedef struct gw_curl gw_curl;

typedef struct gw_fetch_result {
    long status;        /* the HTTP status; 0 when the transfer failed (no complete answer) */
    int curl_code;      /* CURLcode: 0 with an HTTP answer; CURLE_ABORTED_BY_CALLBACK when
                            aborted by gw_curl_free */
    const char *error;  /* "" with an HTTP answer; else why: curl's message, "connection to
                            10.0.0.1 refused by the SSRF policy", "aborted" */
    long retry_after_s; /* the answer's Retry-After in seconds (delta or HTTP date); -1
                            when absent or unparsable */
    double total_s;     /* the whole transfer, seconds */
} gw_fetch_result;

typedef void (*gw_fetch_cb)(const gw_fetch_result *res, void *arg);

typedef struct gw_fetch {
    const char *url;  /* http:// or https:// */
    const char *body; /* body_len bytes (NULL with 0: an empty body) */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines, NULL-terminated; or NULL */
    const char *pin;            /* CURLOPT_RESOLVE entry "host:port:address" (the
                                         url's host resolves to address), or NULL */
    long timeout_ms;            /* whole transfer; <= 0: 30000 */
    /* Called for every socket curl opens (each address tried, each new connection; not
     * for a reused keep-alive connection, which was checked when opened). Nonzero
     * allows the connection; 0 refuses it and the transfer fails with the SSRF error
     * when no address was allowed. NULL allows all. */
    int (*allow_addr)(const struct sockaddr *sa, void *arg);
    void *allow_arg;
} gw_fetch;

/* A multi handle on base (which must outlive it). NULL on failure. */
gw_curl *gw_curl_new(struct event_base *base);
/* Aborts the transfers in flight (their callbacks run now, with "aborted"), closes the
 * kept-alive connections and frees everything. Call before event_base_free. NULL: no-op. */
void gw_curl_free(gw_curl *c);

/* Starts a POST. Returns 0 (cb will run exactly once) or -1 (bad arguments, out of
 * memory, or the gw_curl is being freed; cb will not run). */
int gw_curl_post(gw_curl *c, const gw_fetch *f, gw_fetch_cb cb, void *arg);
/* Transfers started and not yet called back. */
size_t gw_curl_active(const gw_curl *c);

/* Parses a Retry-After value at time now: delay-seconds ("120") or an HTTP date ("Wed,
 * 21 Oct 2015 07:28:00 GMT", 0 when in the past). Returns seconds (capped at one year)
 * or -1 when unparsable. Pure; exposed for tests. */
long gw_curl_parse_retry_after(const char *value, time_t now);

#endif
