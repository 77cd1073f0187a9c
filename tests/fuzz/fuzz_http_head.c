/* fuzz_http_head: libFuzzer target for the request framing reader (gateway/framing.c).
 * An input is a request head and whatever follows it; the head ends at the first empty
 * line (CR LF CR LF or LF LF), the rest is read as a chunked body.
 *
 * Whatever the bytes, gw_framing_head, gw_framing_strip and gw_chunked_feed must not
 * crash, leak or hit undefined behaviour, and they must keep the contract of framing.h:
 * a refused head has a 400 or 501 status, a slug, a title and a detail; an accepted one
 * never has both framings, and its stripped copy fits in the head and keeps no framing
 * field; the chunked reader reads no byte twice nor past its input, hands out no more
 * data than it read nor more than its limit, and gives the same answer and the same data
 * whether the body comes whole or a byte at a time. A broken rule aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule) {
    if (ok) return;
    fprintf(stderr, "fuzz_http_head: broken rule: %s\n", rule);
    abort();
}

typedef struct sink {
    size_t n;
    uint64_t sum;
} sink;

static void take(void *arg, const char *p, size_t n) {
    sink *s = arg;
    require(n > 0, "no empty data run");
    for (size_t i = 0; i < n; i++) s->sum = s->sum * 31 + (unsigned char)p[i];
    s->n += n;
}

static size_t head_end(const char *p, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n') return i + 2;
        if (i + 3 < n && memcmp(p + i, "\r\n\r\n", 4) == 0) return i + 4;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* copies of their own size, so that ASan sees any read past the end */
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    memcpy(in, data, size);
    size_t h = head_end(in, size);

    gw_head_framing f;
    if (gw_framing_head(in, h, &f) < 0) {
        require(f.status == 400 || f.status == 501, "a refusal is 400 or 501");
        require(f.slug && f.title && f.detail[0], "a refusal says why");
    } else {
        require(f.status == 0, "an accepted head has no status");
        require(f.body == GW_BODY_NONE || f.body == GW_BODY_LENGTH || f.body == GW_BODY_CHUNKED,
                "a known framing");
        require(f.body == GW_BODY_LENGTH || f.length == 0, "a length only with Content-Length");
        char *out = malloc(h ? h : 1);
        if (out) {
            size_t w = gw_framing_strip(in, h, out);
            require(w <= h, "the stripped head fits in the head");
            for (size_t i = 0; i < w; i++) {
                bool line_start = i == 0 || out[i - 1] == '\n';
                if (line_start && i > 0)
                    require((w - i < 18 || strncasecmp(out + i, "transfer-encoding:", 18) != 0) &&
                                (w - i < 15 || strncasecmp(out + i, "content-length:", 15) != 0),
                            "no framing field is left");
            }
            free(out);
        }
    }

    /* the rest as a chunked body, whole and byte by byte */
    const char *body = in + h;
    size_t blen = size - h;
    gw_chunked whole = {.max = 4096}, bytes = {.max = 4096};
    sink sw = {0}, sb = {0};
    size_t used = 0;
    gw_chunk_res rw = gw_chunked_feed(&whole, body, blen, &used, take, &sw);
    require(used <= blen, "no byte past the input");
    require(sw.n <= used && sw.n <= whole.max, "no more data than was read or allowed");
    require(rw != GW_CHUNK_ERROR || whole.error, "an error says why");
    require(rw != GW_CHUNK_MORE || used == blen, "more means everything was read");
    gw_chunk_res rb = GW_CHUNK_MORE;
    size_t at = 0, u = 0;
    for (; at < blen && rb == GW_CHUNK_MORE; at++)
        rb = gw_chunked_feed(&bytes, body + at, 1, &u, take, &sb);
    require(rb == rw, "whole and byte by byte agree");
    require(sb.n == sw.n && sb.sum == sw.sum, "the same data either way");
    if (rw == GW_CHUNK_DONE) require(at - 1 + u == used, "the body ends at the same byte");
    free(in);
    return 0;
}
