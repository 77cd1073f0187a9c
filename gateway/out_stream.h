/* out_stream.h: a job's result sent as the client reads it, with at most about
 * FLEET_MAX_CONN_OUTPUT bytes buffered for the connection (docs/security.md, "Responses
 * and slow readers").
 *
 *   STRLEN ─▶ small (≤ cap/8) or missing: GET, and the caller answers as it always did
 *        └──▶ large: [file convention? a few GETRANGEs of the map's head, skipping its bytes]
 *                    check pass: GETRANGE a range at a time through codec_stream.h with no
 *                      output, for the exact length and for any error
 *                    send pass: 200 with Content-Length, then a GETRANGE each time the
 *                      connection's output drops under cap/2, converted into it
 *
 * A range is cap/16 bytes (4 KiB to 64 KiB); JSON grows a range at most ~6 times, so the
 * output stays under the cap. Whatever the check pass cannot stream byte for byte as the
 * whole-document path would (a result that is not valid, duplicate map keys, the result
 * gone or changed between ranges) is handed back to the caller's GET path, which answers
 * exactly as before. Once the head is sent, a range that comes back short (the key
 * expired or changed) or a lost Redis connection closes the connection: the length was
 * promised. A client that goes away frees the stream at once, or when the Redis read in
 * flight returns; no callback reaches a freed request.
 */
#ifndef GW_OUT_STREAM_H
#define GW_OUT_STREAM_H

#include <stddef.h>

#include "http.h"
#include "redis.h"

typedef struct gw_stream_opts {
    const char *key;    /* the result key */
    const char *job_id; /* for logs */
    bool want_msgpack;  /* Accept: application/msgpack: the client form */
    bool allow_file;    /* a result that follows the file convention downloads as itself */
    const char *prefix; /* JSON only: bytes before the result (copied), or NULL */
    size_t prefix_len;
    const char *suffix; /* bytes after it ("\n") */
    bool whole_only;    /* never stream: GET and whole(), as before */
    /* The GET path: called once with the GET reply (NULL when Redis is away) when the
     * result is small, missing, or cannot be streamed. */
    gw_redis_cb whole;
    /* Called once instead of whole when the stream took the request over: the caller
     * frees its own state and must not answer. */
    void (*taken)(void *arg);
    void *arg;
} gw_stream_opts;

/* Starts reading the result for r (paused). Exactly one of o->whole and o->taken runs,
 * possibly before this returns. */
void gw_result_stream(gw_req *r, const gw_stream_opts *o);

#endif
