/* framing_test: request body framing read from raw heads, and chunked bodies
 * (gateway/framing.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "testlib.h"

/* ------------------------------------------------------------ heads ----------------- */

static gw_head_framing *head(const char *s) {
    gw_head_framing *f = tl_alloc(sizeof *f);
    int rc = gw_framing_head(s, strlen(s), f);
    ASSERT_EQ_INT(rc, f->status ? -1 : 0);
    return f;
}

static void refused(const char *fields, int status) {
    const char *s = tl_printf("POST /v1/jobs HTTP/1.1\r\nHost: x\r\n%s\r\n", fields);
    gw_head_framing *f = head(s);
    if (f->status != status)
        FAILF("%s: status %d, want %d (%s)", fields, f->status, status, f->detail);
    ASSERT_TRUE(f->slug && f->title && f->detail[0]);
}

TL_TEST(head_without_body) {
    gw_head_framing *f = head("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ_INT(f->body, GW_BODY_NONE);
    ASSERT_FALSE(f->expect_continue);
    f = head("\r\n\nGET / HTTP/1.1\nHost: x\n\n"); /* empty lines first, bare LF ends */
    ASSERT_EQ_INT(f->status, 0);
    ASSERT_EQ_INT(f->body, GW_BODY_NONE);
}

TL_TEST(head_content_length) {
    gw_head_framing *f =
        head("POST / HTTP/1.1\r\nContent-Length:  42 \r\nExpect: 100-Continue\r\n\r\n");
    ASSERT_EQ_INT(f->body, GW_BODY_LENGTH);
    ASSERT_EQ_INT(f->length, 42);
    ASSERT_TRUE(f->expect_continue);
    f = head("POST / HTTP/1.1\r\ncontent-length: 7\r\nCONTENT-LENGTH: 7\r\n\r\n");
    ASSERT_EQ_INT(f->length, 7);
    f = head("POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n");
    ASSERT_EQ_INT(f->length, 999999999999999999LL);
    refused("Content-Length: 7\r\nContent-Length: 8\r\n", 400);
    refused("Content-Length: +7\r\n", 400);
    refused("Content-Length: -7\r\n", 400);
    refused("Content-Length: 7 7\r\n", 400);
    refused("Content-Length: 7,7\r\n", 400);
    refused("Content-Length: 0x7\r\n", 400);
    refused("Content-Length: \r\n", 400);
    refused("Content-Length: 1000000000000000000\r\n", 400); /* 19 digits */
    refused("Content-Length: 99999999999999999999999\r\n", 400);
}

TL_TEST(head_transfer_encoding) {
    gw_head_framing *f = head("POST / HTTP/1.1\r\nTransfer-Encoding: \tChunked \r\n\r\n");
    ASSERT_EQ_INT(f->body, GW_BODY_CHUNKED);
    refused("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400);
    refused("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400);
    refused("Transfer-Encoding : chunked\r\n", 400);
    refused("Transfer-Encoding\t: chunked\r\n", 400);
    refused("Transfer-Encoding: xchunked\r\n", 501);
    refused("Transfer-Encoding: chunkedx\r\n", 501);
    refused("Transfer-Encoding: gzip, chunked\r\n", 501);
    refused("Transfer-Encoding: chunked, chunked\r\n", 501);
    refused("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501);
    refused("Transfer-Encoding: \r\n", 501);
    f = head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    ASSERT_EQ_INT(f->status, 400);
}

TL_TEST(head_malformed_lines) {
    refused(" folded: yes\r\n", 400);
    refused("X-A: b\rX-C: d\r\n", 400); /* a bare CR */
    refused("NoColon\r\n", 400);
    refused(": empty name\r\n", 400);
    refused("X(A): b\r\n", 400);
    const char nul[] = "POST / HTTP/1.1\r\nX-A: b\0c\r\n\r\n";
    gw_head_framing f;
    ASSERT_EQ_INT(gw_framing_head(nul, sizeof nul - 1, &f), -1);
    ASSERT_EQ_INT(f.status, 400);
    /* a head without its empty line is not complete */
    ASSERT_EQ_INT(gw_framing_head("GET / HTTP/1.1\r\nHost: x\r\n", 25, &f), -1);
}

TL_TEST(strip_drops_framing_fields) {
    const char *h = "\r\nPOST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\n"
                    "expect: 100-continue\r\nX-Request-ID: abc\r\n\r\n";
    char out[256];
    size_t n = gw_framing_strip(h, strlen(h), out);
    out[n] = '\0';
    ASSERT_EQ_STR(out, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\r\n");
}

/* ------------------------------------------------------------ chunked --------------- */

typedef struct sink {
    char data[4096];
    size_t n;
} sink;

static void collect(void *arg, const char *p, size_t n) {
    sink *s = arg;
    if (s->n + n > sizeof s->data) FAILF("too much data");
    memcpy(s->data + s->n, p, n);
    s->n += n;
}

/* Feeds body whole, then byte by byte; both must agree. Returns the result; *used and
 * the data are those of the whole feed. */
static gw_chunk_res feed(const char *body, uint64_t max, size_t *used, sink *out) {
    gw_chunked d = {.max = max};
    memset(out, 0, sizeof *out);
    gw_chunk_res whole = gw_chunked_feed(&d, body, strlen(body), used, collect, out);
    gw_chunked e = {.max = max};
    sink s2 = {0};
    gw_chunk_res r = GW_CHUNK_MORE;
    size_t at = 0, u = 0;
    for (; at < strlen(body) && r == GW_CHUNK_MORE; at++) {
        r = gw_chunked_feed(&e, body + at, 1, &u, collect, &s2);
        ASSERT_TRUE(r != GW_CHUNK_MORE || u == 1);
    }
    ASSERT_EQ_INT(r, whole);
    if (whole == GW_CHUNK_DONE) ASSERT_EQ_INT(at - 1 + u, *used);
    ASSERT_EQ_INT(s2.n, out->n);
    ASSERT_TRUE(memcmp(s2.data, out->data, out->n) == 0);
    return whole;
}

TL_TEST(chunked_valid) {
    size_t used;
    sink s;
    const char *b = "5;name=value\r\nhello\r\n6 ; x=\"y\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    ASSERT_EQ_INT(feed(b, 100, &used, &s), GW_CHUNK_DONE);
    ASSERT_EQ_INT(used, strlen(b) - 4);
    s.data[s.n] = '\0';
    ASSERT_EQ_STR(s.data, "hello world");
    ASSERT_EQ_INT(feed("A\r\n0123456789\r\n0\r\n\r\n", 10, &used, &s), GW_CHUNK_DONE);
    ASSERT_EQ_INT(feed("0\r\n\r\n", 0, &used, &s), GW_CHUNK_DONE);
    ASSERT_EQ_INT(feed("5\r\nhel", 10, &used, &s), GW_CHUNK_MORE);
    ASSERT_EQ_INT(feed("fffffffffffffff\r\n", UINT64_MAX, &used, &s), GW_CHUNK_MORE); /* 15 */
}

TL_TEST(chunked_invalid) {
    static const char *const bad[] = {
        "zz\r\n{}\r\n0\r\n\r\n",
        "-1\r\n{}\r\n",
        ";x\r\n",
        "fffffffffffffffff\r\n",
        "ffffffffffffffff\r\n",
        "ffffffffffffffffffff\r\n",
        "2\r\nabc\r\n",
        "2\r\nab\n",
        "2\nab\r\n",
        "2\r\nab\r\n0\r\n\n",
        "2 x\r\n",
        "2\r\nab\r\n0\r\nX: \x01\r\n\r\n",
        "2;a\x01\r\n",
        "0\r\nX: y\n\r\n",
        "\r\n",
    };
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        size_t used;
        sink s;
        gw_chunked d = {.max = 1000};
        gw_chunk_res r = gw_chunked_feed(&d, bad[i], strlen(bad[i]), &used, collect, &s);
        if (r != GW_CHUNK_ERROR) FAILF("bad[%zu] \"%s\": %d, want an error", i, bad[i], (int)r);
        ASSERT_NOT_NULL(d.error);
        feed(bad[i], 1000, &used, &s); /* byte by byte agrees */
    }
    /* a size line longer than its limit */
    char *line = tl_alloc(GW_CHUNK_LINE_MAX + 16);
    strcpy(line, "1;");
    memset(line + 2, 'x', GW_CHUNK_LINE_MAX + 4);
    size_t used;
    sink s;
    ASSERT_EQ_INT(feed(line, 1000, &used, &s), GW_CHUNK_ERROR);
}

TL_TEST(chunked_too_large) {
    size_t used;
    sink s;
    ASSERT_EQ_INT(feed("b\r\n", 10, &used, &s), GW_CHUNK_TOO_LARGE);
    ASSERT_EQ_INT(feed("6\r\nabcdef\r\n5\r\n", 10, &used, &s), GW_CHUNK_TOO_LARGE);
    ASSERT_EQ_INT(s.n, 6);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(head_without_body),
        TL_CASE(head_content_length),
        TL_CASE(head_transfer_encoding),
        TL_CASE(head_malformed_lines),
        TL_CASE(strip_drops_framing_fields),
        TL_CASE(chunked_valid),
        TL_CASE(chunked_invalid),
        TL_CASE(chunked_too_large),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
