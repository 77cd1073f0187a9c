/* framing.h: how a request's body is framed (RFC 9112 §6), read from the raw bytes.
 *
 * libevhtp 1.2.18's parser is lax: it takes a request with both Content-Length and
 * Transfer-Encoding (and lets the chunked coding win), reads "Transfer-Encoding : chunked"
 * or "xchunked" as no coding at all, and closes the connection without a word on a bad
 * Content-Length or chunk size, or on a chunk extension ("5;name=value"). The gateway's
 * head guard (http.c) therefore reads every head with gw_framing_head before libevhtp
 * does, and decodes chunked bodies itself with gw_chunked_feed, handing libevhtp the same
 * message with Content-Length framing instead.
 *
 * Pure code: no I/O and no libevhtp, so it is unit-tested (tests/unit/framing_test.c) and
 * fuzzed (tests/fuzz/fuzz_http_head.c) alone.
 */
#ifndef GW_FRAMING_H
#define GW_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gw_body_kind {
    GW_BODY_NONE,    /* no Content-Length, no Transfer-Encoding: no body */
    GW_BODY_LENGTH,  /* Content-Length: length bytes */
    GW_BODY_CHUNKED, /* Transfer-Encoding: chunked */
} gw_body_kind;

typedef struct gw_head_framing {
    gw_body_kind body;
    uint64_t length;      /* GW_BODY_LENGTH: the Content-Length */
    bool expect_continue; /* Expect: 100-continue */
    /* A refused head: the status (400, or 501 for a transfer coding other than chunked),
     * the problem's slug and title, and why. */
    int status;
    const char *slug, *title;
    char detail[160];
} gw_head_framing;

/* Reads the framing of the complete head in head[0, n): the request line and the header
 * lines up to and including the empty line (CR LF or a bare LF ends a line; empty lines
 * before the request line are skipped). Returns 0 and fills f, or -1 when the head must
 * be refused (f->status, slug, title, detail say how), which happens for:
 *   - both Content-Length and Transfer-Encoding;
 *   - a transfer coding other than exactly "chunked" (case-insensitive, after trimming
 *     spaces), several Transfer-Encoding fields included: 501;
 *   - Transfer-Encoding in an HTTP/1.0 request;
 *   - a Content-Length that is not 1 to 18 digits, or several that differ;
 *   - a header line whose name is empty or not a token (whitespace before the colon
 *     included), a line without a colon, a folded line (leading space), or a control
 *     character (other than tab) in a header line, a bare CR included. */
int gw_framing_head(const char *head, size_t n, gw_head_framing *f);

/* Copies the head in head[0, n) to out (room for n bytes) without its framing fields
 * (Transfer-Encoding, Content-Length), its Expect fields and its final empty line, every
 * line ended by CR LF. Returns the bytes written. For a head gw_framing_head accepted. */
size_t gw_framing_strip(const char *head, size_t n, char *out);

/* ------------------------------------------------------------ chunked bodies -------- */

#define GW_CHUNK_LINE_MAX 4096     /* a chunk-size line, extensions included */
#define GW_CHUNK_TRAILERS_MAX 8192 /* bytes of trailer lines */

typedef enum gw_chunk_res {
    GW_CHUNK_MORE,      /* every byte was read; the body goes on */
    GW_CHUNK_DONE,      /* the body ended (*used says where) */
    GW_CHUNK_ERROR,     /* malformed framing (d->error says why): 400 */
    GW_CHUNK_TOO_LARGE, /* the data would pass d->max: 413 */
} gw_chunk_res;

typedef struct gw_chunked {
    uint64_t max;    /* most data bytes in all (set before the first feed) */
    uint64_t total;  /* data bytes so far */
    uint64_t left;   /* the chunk size being read, then its bytes still to come */
    size_t line;     /* bytes of the current size or trailer line */
    size_t trailers; /* bytes of trailer lines */
    int state;
    const char *error; /* GW_CHUNK_ERROR: why (a static string) */
} gw_chunked;

/* Hands each run of chunk data to data(arg, p, n). */
typedef void (*gw_chunk_data_fn)(void *arg, const char *p, size_t n);

/* Reads in[0, n) as the next bytes of a chunked body:
 *   chunk = 1*HEXDIG [ BWS ";" ext ] CRLF data CRLF, ended by a zero-size chunk, trailer
 *   lines (read and dropped) and CRLF.
 * A size of more than 15 hex digits, a non-hex size, a line over GW_CHUNK_LINE_MAX, data
 * not followed by CRLF, or a bare LF where CRLF belongs is an error. *used is the bytes
 * read: all of n unless the body ended (or an error stopped it) within them. */
gw_chunk_res gw_chunked_feed(gw_chunked *d, const char *in, size_t n, size_t *used,
                             gw_chunk_data_fn data, void *arg);

#endif
