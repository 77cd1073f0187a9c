/* result_file_probe_test: the window-at-a-time file check (gw_result_file_probe_step, used
 * for results too large to read whole) answers as gw_result_file does on the whole buffer,
 * for file maps in every key order and for the near misses around them (an extra or
 * repeated key, bytes as str, a bad media type or filename, trailing bytes, a cut). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "result_file.h"
#include "testlib.h"

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void add(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ASSERT_NOT_NULL(b->p);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void u8(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    add(b, &c, 1);
}

static void str(buf *b, const char *s) {
    size_t n = strlen(s);
    if (n < 32) u8(b, 0xa0 | (unsigned)n);
    else {
        u8(b, 0xd9);
        u8(b, (unsigned)n);
    }
    add(b, s, n);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static unsigned rn(unsigned n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* The probe over the whole buffer, a window at a time as out_stream.c reads it. */
static int probe(const unsigned char *p, size_t n, gw_result_file_probe *pr) {
    memset(pr, 0, sizeof *pr);
    pr->total = n;
    for (int steps = 0; steps < 10; steps++) {
        if (pr->pos > n) return 0;
        size_t w = n - pr->pos < GW_RESULT_FILE_WINDOW ? n - pr->pos : GW_RESULT_FILE_WINDOW;
        int r = gw_result_file_probe_step(pr, (const char *)p + pr->pos, w);
        if (r != 2) return r;
    }
    FAILF("the probe asked for more than 10 windows");
}

TL_TEST(probe_matches_the_whole_check) {
    int files = 0, others = 0;
    for (int doc = 0; doc < 3000; doc++) {
        buf b = {0};
        const char *keys[4] = {"content_type", "bytes", "filename", "extra"};
        unsigned nkeys = 2 + rn(2);
        unsigned order[4] = {0, 1, 2, 3};
        for (unsigned i = 3; i > 0; i--) {
            unsigned j = rn(i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        if (rn(6)) { /* mostly the three keys of the convention */
            unsigned k = 0;
            for (unsigned i = 0; i < 4; i++)
                if (order[i] != 3) order[k++] = order[i];
            if (nkeys == 2 && rn(2)) order[0] = 0, order[1] = 1;
        }
        if (rn(20) == 0) order[1] = order[0]; /* a key twice */
        if (rn(3)) u8(&b, 0x80 | nkeys);
        else {
            u8(&b, 0xde);
            u8(&b, 0);
            u8(&b, nkeys);
        }
        for (unsigned i = 0; i < nkeys; i++) {
            str(&b, keys[order[i]]);
            switch (order[i]) {
            case 0: str(&b, rn(15) ? "image/png" : rn(2) ? "image/png\r\nX: y" : "nope"); break;
            case 1: {
                size_t n = rn(4) ? rn(300) : 1000 + rn(5000);
                if (rn(25) == 0) { /* bytes as a str */
                    u8(&b, 0xda);
                } else {
                    u8(&b, rn(2) ? 0xc5 : 0xc6);
                    if (b.p[b.n - 1] == 0xc6) {
                        u8(&b, 0);
                        u8(&b, 0);
                    }
                }
                u8(&b, (unsigned)(n >> 8));
                u8(&b, (unsigned)n & 0xff);
                for (size_t k = 0; k < n; k++) u8(&b, rn(256));
                break;
            }
            case 2:
                str(&b, rn(15)  ? "out.png"
                        : rn(2) ? ""
                                : "a\x01"
                                  "b");
                break;
            default: u8(&b, 0xc0); break;
            }
        }
        if (rn(20) == 0) u8(&b, 0x00);                /* trailing */
        if (rn(20) == 0 && b.n > 2) b.n -= 1 + rn(2); /* cut */
        gw_result_file_view whole;
        bool want = gw_result_file((const char *)b.p, b.n, &whole);
        gw_result_file_probe pr;
        int got = probe(b.p, b.n, &pr);
        if ((got == 1) != want) FAILF("document %d: whole says %d, the probe %d", doc, want, got);
        if (want) {
            files++;
            ASSERT_EQ_STR(pr.view.content_type, whole.content_type);
            ASSERT_EQ_STR(pr.view.filename, whole.filename);
            ASSERT_EQ_INT(pr.bytes_len, whole.len);
            ASSERT_TRUE((const unsigned char *)whole.bytes == b.p + pr.bytes_off);
        } else {
            others++;
        }
        free(b.p);
    }
    tl_log("%d files, %d other results", files, others);
    ASSERT_GT_INT(files, 500);
    ASSERT_GT_INT(others, 300);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(probe_matches_the_whole_check)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
