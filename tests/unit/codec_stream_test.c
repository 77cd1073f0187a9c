/* codec_stream_test: the range-at-a-time converter (shared/src/codec_stream.c) against the
 * whole-document functions of codec.c, byte for byte: random msgpack documents (nested
 * maps and arrays, strings with escapes and multi-byte characters, bins, ext-1 float32
 * vectors, every int and float width, sometimes broken on purpose) fed in ranges of 1, 2,
 * 3, 7, 64 and 4096 bytes give the same output, or the same error, as
 * json_dumps(fleet_msgpack_to_json()) and fleet_msgpack_for_client(). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/codec_stream.h"
#include "testlib.h"

/* ------------------------------------------------------------ a growable buffer ----- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void b_add(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ASSERT_NOT_NULL(b->p);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void b_u8(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    b_add(b, &c, 1);
}

static void b_be(buf *b, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) b_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

static void sink(void *arg, const char *p, size_t n) { b_add(arg, p, n); }

/* ------------------------------------------------------------ random documents ------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static unsigned rn(unsigned n) { return (unsigned)(rnd() % n); }

/* A header for a str (kind 0), bin (1) of n bytes, in a random width that fits. */
static void len_head(buf *b, int kind, size_t n) {
    static const unsigned str_m[] = {0xd9, 0xda, 0xdb}, bin_m[] = {0xc4, 0xc5, 0xc6};
    int w = (int)rn(3);
    if (kind == 0 && n < 32 && rn(2)) {
        b_u8(b, 0xa0 | (unsigned)n);
        return;
    }
    if (n > 0xff && w == 0) w = 1;
    if (n > 0xffff) w = 2;
    b_u8(b, kind == 0 ? str_m[w] : bin_m[w]);
    b_be(b, n, 1 << w);
}

static void gen_text(buf *b, bool key) {
    static const char *const pieces[] = {"a",
                                         "key",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\n",
                                         "\t",
                                         "\x01",
                                         "\x1f",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x98\x83",
                                         "\xf0\x9f\x98\x80",
                                         "plain text ",
                                         "\r\b\f"};
    static const char *const broken[] = {"\xc0\x80", "\xed\xa0\x80",     "\xff",
                                         "\xe2\x98", "\xf4\x90\x80\x80", "\x80"};
    buf t = {0};
    unsigned n = rn(4) == 0 ? 40 + rn(400) : rn(6);
    for (unsigned i = 0; i < n; i++) {
        const char *pc = pieces[rn(TL_COUNT(pieces))];
        b_add(&t, pc, strlen(pc));
    }
    if (rn(40) == 0) { /* not UTF-8, or a NUL in a key */
        const char *pc = broken[rn(TL_COUNT(broken))];
        b_add(&t, pc, strlen(pc));
    }
    if (key && rn(60) == 0) b_u8(&t, 0);
    if (!key && rn(20) == 0) b_u8(&t, 0);
    len_head(b, 0, t.n);
    b_add(b, t.p, t.n);
    free(t.p);
}

static void gen_f32(buf *b) {
    unsigned n = rn(5) == 0 ? 200 + rn(300) : rn(8);
    size_t bytes = 4u * n + (rn(50) == 0 ? 1 : 0); /* sometimes not whole floats */
    if (bytes == 1 || bytes == 2 || bytes == 4 || bytes == 8 || bytes == 16) {
        b_u8(b, 0xd4 + (bytes == 1 ? 0 : bytes == 2 ? 1 : bytes == 4 ? 2 : bytes == 8 ? 3 : 4));
    } else if (bytes <= 0xff && rn(2)) {
        b_u8(b, 0xc7);
        b_be(b, bytes, 1);
    } else if (bytes <= 0xffff && rn(2)) {
        b_u8(b, 0xc8);
        b_be(b, bytes, 2);
    } else {
        b_u8(b, 0xc9);
        b_be(b, bytes, 4);
    }
    b_u8(b, rn(60) == 0 ? 2 : FLEET_EXT_F32);
    for (size_t i = 0; i < bytes; i++) {
        unsigned v = rn(256);
        if (i % 4 == 3 && rn(300) == 0) v = 0x7f;        /* with the byte before: maybe NaN */
        if (i % 4 == 2 && v >= 0x80 && rn(2)) v &= 0x7f; /* keep most values finite */
        b_u8(b, v);
    }
}

static void gen(buf *b, int depth) {
    unsigned pick = rn(depth >= 5 ? 9 : 12);
    switch (pick) {
    case 0: b_u8(b, rn(128)); break;                          /* positive fixint */
    case 1: b_u8(b, 0xe0 | rn(32)); break;                    /* negative fixint */
    case 2: b_u8(b, rn(3) == 0 ? 0xc0 : 0xc2 + rn(2)); break; /* nil, false, true */
    case 3: {                                                 /* every int width */
        unsigned m = 0xcc + rn(8);
        b_u8(b, m);
        int w = 1 << ((m - 0xcc) % 4);
        uint64_t v = rnd();
        if (rn(3) == 0) v = m >= 0xd0 ? (uint64_t) - (int64_t)(rn(1000)) : rn(300);
        b_be(b, v, w);
        break;
    }
    case 4: { /* floats */
        if (rn(2)) {
            float f = (float)((double)(int64_t)rnd() / 1e6);
            if (rn(100) == 0) f = NAN;
            uint32_t u;
            memcpy(&u, &f, 4);
            b_u8(b, 0xca);
            b_be(b, u, 4);
        } else {
            double d = (double)(int64_t)rnd() / (double)(1 + rn(1000000));
            if (rn(5) == 0) d = ldexp(d, (int)rn(2000) - 1000);
            if (rn(100) == 0) d = INFINITY;
            uint64_t u;
            memcpy(&u, &d, 8);
            b_u8(b, 0xcb);
            b_be(b, u, 8);
        }
        break;
    }
    case 5:
    case 6: gen_text(b, false); break;
    case 7: { /* bin */
        size_t n = rn(4) == 0 ? 300 + rn(70000) : rn(10);
        len_head(b, 1, n);
        for (size_t i = 0; i < n; i++) b_u8(b, rn(256));
        break;
    }
    case 8: gen_f32(b); break;
    case 9:
    case 10: { /* array */
        unsigned n = rn(6);
        if (rn(2)) b_u8(b, 0x90 | n);
        else if (rn(2)) {
            b_u8(b, 0xdc);
            b_be(b, n, 2);
        } else {
            b_u8(b, 0xdd);
            b_be(b, n, 4);
        }
        for (unsigned i = 0; i < n; i++) gen(b, depth + 1);
        break;
    }
    default: { /* map */
        unsigned n = rn(6);
        if (rn(2)) b_u8(b, 0x80 | n);
        else if (rn(2)) {
            b_u8(b, 0xde);
            b_be(b, n, 2);
        } else {
            b_u8(b, 0xdf);
            b_be(b, n, 4);
        }
        for (unsigned i = 0; i < n; i++) {
            if (rn(80) == 0) b_u8(b, rn(128)); /* a key that is not a string */
            else gen_text(b, true);
            gen(b, depth + 1);
        }
        break;
    }
    }
}

/* Breaks a document sometimes: cut it, add a byte, or change one. */
static void damage(buf *b) {
    unsigned how = rn(12);
    if (how == 0 && b->n > 1) b->n = 1 + rn((unsigned)b->n - 1);
    else if (how == 1) b_u8(b, rn(256));
    else if (how == 2) b->p[rn((unsigned)b->n)] = (unsigned char)rn(256);
}

/* ------------------------------------------------------------ the comparison -------- */

typedef struct outcome {
    bool ok;
    buf out;
    char err[200];
    bool whole;
} outcome;

static outcome run_stream(fleet_mps_mode mode, const unsigned char *p, size_t n, size_t step) {
    outcome o = {0};
    fleet_mps *s = fleet_mps_new(mode, n, sink, &o.out);
    ASSERT_NOT_NULL(s);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += step)
        rc = fleet_mps_feed(s, p + off, n - off < step ? n - off : step);
    if (rc == 0) rc = fleet_mps_finish(s);
    o.ok = rc == 0;
    o.whole = fleet_mps_needs_whole(s);
    snprintf(o.err, sizeof o.err, "%s", fleet_mps_error(s));
    if (o.ok) ASSERT_EQ_INT(fleet_mps_out_len(s), o.out.n);
    fleet_mps_free(s);
    return o;
}

static outcome run_whole(fleet_mps_mode mode, const unsigned char *p, size_t n) {
    outcome o = {0};
    if (mode == FLEET_MPS_JSON) {
        json_t *j = fleet_msgpack_to_json((const char *)p, n, o.err, sizeof o.err);
        if (j) {
            char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            ASSERT_NOT_NULL(t);
            b_add(&o.out, t, strlen(t));
            free(t);
            json_decref(j);
            o.ok = true;
        }
    } else {
        char *mp = NULL;
        size_t mplen = 0;
        if (fleet_msgpack_for_client((const char *)p, n, &mp, &mplen, o.err, sizeof o.err) == 0) {
            b_add(&o.out, mp ? mp : (const char *)p, mplen);
            free(mp);
            o.ok = true;
        }
    }
    return o;
}

static const size_t steps[] = {1, 2, 3, 7, 64, 4096};

/* Returns whether the streamed JSON needed the whole document (duplicate keys). */
static bool compare(const unsigned char *p, size_t n, size_t doc) {
    bool whole = false;
    for (int m = 0; m < 2; m++) {
        fleet_mps_mode mode = m ? FLEET_MPS_CLIENT : FLEET_MPS_JSON;
        outcome want = run_whole(mode, p, n);
        for (size_t i = 0; i < TL_COUNT(steps); i++) {
            outcome got = run_stream(mode, p, n, steps[i]);
            if (got.whole) {
                ASSERT_TRUE(mode == FLEET_MPS_JSON);
                whole = true;
            } else if (got.ok != want.ok || strcmp(got.err, want.err) != 0 ||
                       (got.ok && (got.out.n != want.out.n ||
                                   memcmp(got.out.p, want.out.p, got.out.n) != 0))) {
                FAILF("document %zu (%zu bytes), %s mode, ranges of %zu: whole gives %s '%s' "
                      "(%zu bytes), streamed gives %s '%s' (%zu bytes)%s%.*s%s%.*s",
                      doc, n, m ? "client" : "json", steps[i], want.ok ? "ok" : "error", want.err,
                      want.out.n, got.ok ? "ok" : "error", got.err, got.out.n,
                      "\n  whole:    ", (int)(want.out.n < 300 ? want.out.n : 300),
                      want.out.p ? (const char *)want.out.p : "",
                      "\n  streamed: ", (int)(got.out.n < 300 ? got.out.n : 300),
                      got.out.p ? (const char *)got.out.p : "");
            }
            free(got.out.p);
        }
        free(want.out.p);
    }
    return whole;
}

TL_TEST(random_documents_match_the_whole_conversion) {
    int ok_json = 0, errors = 0, wholes = 0;
    for (size_t doc = 0; doc < 1500; doc++) {
        buf b = {0};
        gen(&b, 0);
        if (doc % 3 == 2) damage(&b);
        if (compare(b.p, b.n, doc)) wholes++;
        char err[200];
        json_t *j = fleet_msgpack_to_json((const char *)b.p, b.n, err, sizeof err);
        if (j) ok_json++;
        else errors++;
        json_decref(j);
        free(b.p);
    }
    tl_log("%d documents converted, %d refused, %d needed the whole document", ok_json, errors,
           wholes);
    ASSERT_GT_INT(ok_json, 300); /* the generator makes both kinds */
    ASSERT_GT_INT(errors, 100);
}

/* Hand-made edge cases: nesting at the limit, ext-1 at the depth limit, huge declared
 * sizes, values at both ends of every width. */
TL_TEST(edge_documents) {
    buf b = {0};
    for (int d = 0; d < FLEET_CODEC_MAX_DEPTH; d++) b_u8(&b, 0x91);
    b_u8(&b, 0x01);
    compare(b.p, b.n, 0);
    b.n = 0;
    for (int d = 0; d < FLEET_CODEC_MAX_DEPTH + 1; d++) b_u8(&b, 0x91);
    b_u8(&b, 0x01);
    compare(b.p, b.n, 1);
    b.n = 0;
    for (int d = 0; d < FLEET_CODEC_MAX_DEPTH; d++) b_u8(&b, 0x91);
    b_u8(&b, 0xd6);
    b_u8(&b, FLEET_EXT_F32);
    b_be(&b, 0x3f800000u, 4);
    compare(b.p, b.n, 2);
    b.n = 0;
    b_u8(&b, 0xdd);
    b_be(&b, 0xffffffffu, 4); /* an array32 that claims 4 billion items */
    b_u8(&b, 0x01);
    compare(b.p, b.n, 3);
    b.n = 0;
    b_u8(&b, 0xcf);
    b_be(&b, UINT64_MAX, 8);
    compare(b.p, b.n, 4);
    b.n = 0;
    b_u8(&b, 0xd3);
    b_be(&b, (uint64_t)INT64_MIN, 8);
    compare(b.p, b.n, 5);
    b.n = 0;
    b_u8(&b, 0x82); /* {"a":1,"a":2}: jansson keeps the first place and the last value */
    b_u8(&b, 0xa1);
    b_u8(&b, 'a');
    b_u8(&b, 1);
    b_u8(&b, 0xa1);
    b_u8(&b, 'a');
    b_u8(&b, 2);
    ASSERT_TRUE(compare(b.p, b.n, 6));
    b.n = 0;
    b_u8(&b, 0xc1);
    compare(b.p, b.n, 7);
    free(b.p);
}

/* A map with more keys than FLEET_MPS_KEYS_MAX open at once falls back to the whole
 * document rather than hold their hashes. */
TL_TEST(too_many_keys_fall_back) {
    buf b = {0};
    size_t n = FLEET_MPS_KEYS_MAX + 10;
    b_u8(&b, 0xdf);
    b_be(&b, n, 4);
    for (size_t i = 0; i < n; i++) {
        char k[16];
        int kn = snprintf(k, sizeof k, "k%zu", i);
        b_u8(&b, 0xa0 | (unsigned)kn);
        b_add(&b, k, (size_t)kn);
        b_u8(&b, 0xc0);
    }
    outcome o = run_stream(FLEET_MPS_JSON, b.p, b.n, 4096);
    ASSERT_TRUE(o.whole);
    free(o.out.p);
    o = run_stream(FLEET_MPS_CLIENT, b.p, b.n, 4096);
    ASSERT_TRUE(o.ok);
    ASSERT_EQ_INT(o.out.n, b.n);
    free(o.out.p);
    free(b.p);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(random_documents_match_the_whole_conversion),
        TL_CASE(edge_documents),
        TL_CASE(too_many_keys_fall_back),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
