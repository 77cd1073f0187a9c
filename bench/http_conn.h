/* http_conn.h: a minimal HTTP/1.1 keep-alive client connection on libevent, for load.
 *
 * Why not libcurl multi or evhttp: the load generator shares the machine with the gateway,
 * the worker and Redis, so every microsecond it spends is taken from what it measures.
 * This client formats each request once (bench_conn_request copies a prebuilt byte
 * string) and parses only what a benchmark needs: the status code, Content-Length or
 * chunked framing, "Connection: close", and the body.
 *
 * One request at a time per connection (no pipelining), like wrk and hey: concurrency
 * comes from the number of connections. A connection that drops is reopened on the next
 * request.
 *
 * Ownership: the body handed to the callback lives only during the callback. Every
 * request's callback runs exactly once: with the status code, or with status -1 when the
 * connection failed before a complete response arrived.
 */
#ifndef BENCH_HTTP_CONN_H
#define BENCH_HTTP_CONN_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
typedef struct bench_conn bench_conn;

typedef void (*bench_conn_cb)(bench_conn *c, int status, const char *body, size_t len, void *arg);

/* addr is copied. Connects lazily, on the first request. Returns NULL when out of memory. */
bench_conn *bench_conn_new(struct event_base *base, const struct sockaddr *addr, socklen_t addrlen);
void bench_conn_free(bench_conn *c);

/* Sends req (a complete HTTP/1.1 request: request line, headers, blank line, body) and
 * calls cb when the response is complete. Returns 0, or -1 when a request is already in
 * flight on c or the request could not be queued. */
int bench_conn_request(bench_conn *c, const char *req, size_t len, bench_conn_cb cb, void *arg);

/* How many times this connection was (re)opened; more than 1 means the server closed
 * keep-alive connections, which changes what is measured. */
unsigned long bench_conn_opens(const bench_conn *c);

/* Builds a request into a malloc'd string (caller frees): method, path, Host, optional
 * Authorization bearer and JSON body. *len receives its length. */
char *bench_http_format(const char *method, const char *host, const char *path, const char *api_key,
                        const char *body, size_t *len);

#endif
