/* classify_image_test: the classify model's input (worker/classify/image.c and png.c).
 *
 * Every PNG here is written by the harness's small encoder (tl_png.h: zlib's compress2 and
 * crc32) from samples the test chooses, so each decoded pixel is checked against the value
 * the conversion rules of image.h give for it; a few anchors are also written out as numbers.
 * Bad files are built chunk by chunk and each one's message is checked word for word,
 * with the output buffer left untouched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testlib.h"
#include "tl_png.h"
#include "image.h"
#include "png.h"

/* ------------------------------------------------------------ images to encode ---- */

/* Pseudo-random samples (a fixed LCG), each below 2^depth, or below lim when not 0. */
static uint16_t *samples(uint32_t w, uint32_t h, unsigned ct, unsigned depth, unsigned lim,
                         uint32_t seed) {
    size_t n = (size_t)w * h * tl_png_channels(ct);
    uint16_t *s = tl_alloc(n * sizeof *s);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        unsigned v = (x >> 8) & (depth == 16 ? 0xffffu : (1u << depth) - 1);
        s[i] = (uint16_t)(lim ? v % lim : v);
    }
    return s;
}

static unsigned char *palette(unsigned n, uint32_t seed) {
    unsigned char *p = tl_alloc(3 * n);
    uint32_t x = seed;
    for (unsigned i = 0; i < 3 * n; i++)
        x = x * 1103515245u + 12345u, p[i] = (unsigned char)(x >> 16);
    return p;
}

/* ------------------------------------------------------------ what a pixel should be  */

static unsigned to8(unsigned v, unsigned depth) {
    return depth == 16 ? v >> 8 : depth == 8 ? v : v * 255 / ((1u << depth) - 1);
}

static unsigned luma(unsigned r, unsigned g, unsigned b) {
    return (299 * r + 587 * g + 114 * b + 500) / 1000;
}

static unsigned over_black(unsigned g, unsigned a) { return (g * a + 127) / 255; }

/* image.h's conversion of pixel (x, y) of s. */
static unsigned want_gray(const tl_png_spec *s, uint32_t x, uint32_t y) {
    const uint16_t *p = s->s + ((size_t)y * s->w + x) * tl_png_channels(s->ct);
    unsigned d = s->depth;
    switch (s->ct) {
    case 0:
        if (s->trns && p[0] == ((unsigned)s->trns[0] << 8 | s->trns[1])) return 0;
        return to8(p[0], d);
    case 2:
        if (s->trns) {
            bool key = true;
            for (int c = 0; c < 3; c++)
                key = key && p[c] == ((unsigned)s->trns[2 * c] << 8 | s->trns[2 * c + 1]);
            if (key) return 0;
        }
        return luma(to8(p[0], d), to8(p[1], d), to8(p[2], d));
    case 3: {
        const unsigned char *c = s->plte + 3 * p[0];
        unsigned a = s->trns && p[0] < s->trns_len ? s->trns[p[0]] : 255;
        return over_black(luma(c[0], c[1], c[2]), a);
    }
    case 4: return over_black(to8(p[0], d), to8(p[1], d));
    default: return over_black(luma(to8(p[0], d), to8(p[1], d), to8(p[2], d)), to8(p[3], d));
    }
}

static void decode_ok(const tl_bytes *png, unsigned char out[CLS_PIXELS]) {
    char err[256] = "";
    int rc = cls_image_decode(png->p, png->n, out, err, sizeof err);
    if (rc != 0) FAILF("cls_image_decode: %d (%s)", rc, err);
}

/* A 28x28 spec decodes to exactly its pixels. */
static void check_28(const tl_png_spec *s, const char *what) {
    tl_bytes png = tl_png_of(s);
    unsigned char out[CLS_PIXELS];
    decode_ok(&png, out);
    for (uint32_t y = 0; y < CLS_SIDE; y++)
        for (uint32_t x = 0; x < CLS_SIDE; x++)
            if (out[y * CLS_SIDE + x] != want_gray(s, x, y))
                FAILF("%s: pixel (%u, %u) is %u, want %u", what, (unsigned)x, (unsigned)y,
                      out[y * CLS_SIDE + x], want_gray(s, x, y));
}

/* A spec of each colour type and depth, 28x28, from a seed. */
static tl_png_spec spec_28(unsigned ct, unsigned depth, unsigned il, int filter, uint32_t seed) {
    tl_png_spec s = {.w = 28, .h = 28, .depth = depth, .ct = ct, .interlace = il, .filter = filter};
    if (ct == 3) {
        unsigned n = depth == 8 ? 200 : 1u << depth;
        s.plte = palette(n, seed);
        s.plte_len = 3 * n;
        s.s = samples(28, 28, ct, depth, n, seed);
    } else {
        s.s = samples(28, 28, ct, depth, 0, seed);
    }
    return s;
}

/* The refusal of d[0..n): -1, a message starting "image: ", out untouched. */
static const char *refusal(const unsigned char *d, size_t n) {
    unsigned char out[CLS_PIXELS], before[CLS_PIXELS];
    memset(out, 0xa5, sizeof out);
    memcpy(before, out, sizeof out);
    char err[256] = "";
    int rc = cls_image_decode(d, n, out, err, sizeof err);
    if (rc != -1) FAILF("cls_image_decode of %zu bytes: %d, want -1", n, rc);
    if (strncmp(err, "image: ", 7) != 0 || strchr(err, '\n'))
        FAILF("refusal message \"%s\" is not one line starting \"image: \"", err);
    if (memcmp(out, before, sizeof out) != 0) FAILF("a refused image wrote to out");
    return tl_printf("%s", err);
}

/* ------------------------------------------------------------ decoding -------------- */

TL_TEST(raw_784_roundtrip) {
    unsigned char in[CLS_PIXELS], out[CLS_PIXELS];
    for (int i = 0; i < CLS_PIXELS; i++) in[i] = (unsigned char)(i * 7 + 3);
    char err[256] = "";
    ASSERT_EQ_INT(cls_image_decode(in, sizeof in, out, err, sizeof err), 0);
    ASSERT_TRUE(memcmp(in, out, sizeof in) == 0);
    /* starting like a PNG is not enough: the whole 8-byte signature makes a PNG */
    memcpy(in, "\x89PNG\r\n\x1a", 7);
    ASSERT_EQ_INT(cls_image_decode(in, sizeof in, out, err, sizeof err), 0);
    ASSERT_TRUE(memcmp(in, out, sizeof in) == 0);
}

/* The rules of image.h as numbers, independent of want_gray. */
TL_TEST(conversion_anchors) {
    uint16_t rgb[28 * 28 * 3] = {0};
    rgb[0] = 255;                     /* (0,0) red */
    rgb[4] = 255;                     /* (1,0) green */
    rgb[8] = 255;                     /* (2,0) blue */
    rgb[9] = rgb[10] = rgb[11] = 255; /* (3,0) white */
    tl_png_spec s = {.w = 28, .h = 28, .depth = 8, .ct = 2, .s = rgb};
    tl_bytes png = tl_png_of(&s);
    unsigned char out[CLS_PIXELS];
    decode_ok(&png, out);
    ASSERT_EQ_INT(out[0], 76);
    ASSERT_EQ_INT(out[1], 150);
    ASSERT_EQ_INT(out[2], 29);
    ASSERT_EQ_INT(out[3], 255);
    ASSERT_EQ_INT(out[4], 0);

    uint16_t ga[28 * 28 * 2] = {200, 128, 255, 0, 255, 255};
    tl_png_spec s4 = {.w = 28, .h = 28, .depth = 8, .ct = 4, .s = ga};
    png = tl_png_of(&s4);
    decode_ok(&png, out);
    ASSERT_EQ_INT(out[0], 100); /* 200 at alpha 128, over black */
    ASSERT_EQ_INT(out[1], 0);
    ASSERT_EQ_INT(out[2], 255);

    uint16_t g16[28 * 28] = {0x1234, 0xffff, 0x00ff};
    tl_png_spec s16 = {.w = 28, .h = 28, .depth = 16, .ct = 0, .s = g16};
    png = tl_png_of(&s16);
    decode_ok(&png, out);
    ASSERT_EQ_INT(out[0], 0x12); /* the high byte */
    ASSERT_EQ_INT(out[1], 255);
    ASSERT_EQ_INT(out[2], 0);

    uint16_t g2[28 * 28] = {1, 2, 3};
    tl_png_spec s2 = {.w = 28, .h = 28, .depth = 2, .ct = 0, .s = g2};
    png = tl_png_of(&s2);
    decode_ok(&png, out);
    ASSERT_EQ_INT(out[0], 85);
    ASSERT_EQ_INT(out[1], 170);
    ASSERT_EQ_INT(out[2], 255);

    unsigned char pl[6] = {10, 20, 30, 255, 255, 255};
    uint16_t idx[28 * 28] = {1, 0};
    tl_png_spec s3 = {.w = 28, .h = 28, .depth = 1, .ct = 3, .s = idx, .plte = pl, .plte_len = 6};
    png = tl_png_of(&s3);
    decode_ok(&png, out);
    ASSERT_EQ_INT(out[0], 255);
    ASSERT_EQ_INT(out[1], 18); /* (2990 + 11740 + 3420 + 500) / 1000 */
}

TL_TEST(gray_depths) {
    const unsigned depths[] = {1, 2, 4, 8, 16};
    for (size_t i = 0; i < 5; i++) {
        tl_png_spec s = spec_28(0, depths[i], 0, 0, (uint32_t)i + 1);
        check_28(&s, tl_printf("gray %u-bit", depths[i]));
    }
}

TL_TEST(rgb_depths) {
    for (unsigned d = 8; d <= 16; d += 8) {
        tl_png_spec s = spec_28(2, d, 0, 0, d);
        check_28(&s, tl_printf("RGB %u-bit", d));
    }
}

TL_TEST(palette_depths) {
    const unsigned depths[] = {1, 2, 4, 8};
    for (size_t i = 0; i < 4; i++) {
        tl_png_spec s = spec_28(3, depths[i], 0, 0, (uint32_t)i + 11);
        check_28(&s, tl_printf("palette %u-bit", depths[i]));
    }
}

TL_TEST(alpha_types) {
    for (unsigned d = 8; d <= 16; d += 8) {
        tl_png_spec s = spec_28(4, d, 0, 0, d + 3);
        check_28(&s, tl_printf("gray+alpha %u-bit", d));
        s = spec_28(6, d, 0, 0, d + 5);
        check_28(&s, tl_printf("RGBA %u-bit", d));
    }
}

static const unsigned all_types[][2] = {{0, 1}, {0, 2},  {0, 4},  {0, 8}, {0, 16},
                                        {2, 8}, {2, 16}, {3, 1},  {3, 2}, {3, 4},
                                        {3, 8}, {4, 8},  {4, 16}, {6, 8}, {6, 16}};

TL_TEST(interlaced_every_type) {
    for (size_t i = 0; i < TL_COUNT(all_types); i++) {
        tl_png_spec s = spec_28(all_types[i][0], all_types[i][1], 1, -1, (uint32_t)i + 21);
        check_28(&s, tl_printf("interlaced type %u, %u-bit", all_types[i][0], all_types[i][1]));
    }
}

typedef struct grid {
    uint32_t w, h;
    unsigned char px[16 * 16];
    unsigned count[16 * 16];
} grid;

static void grid_row(void *arg, uint32_t y, uint32_t x0, uint32_t dx, const unsigned char *gray,
                     uint32_t n) {
    grid *g = arg;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x = x0 + i * dx;
        if (x >= g->w || y >= g->h) FAILF("pixel (%u, %u) outside the image", x, y);
        g->px[y * g->w + x] = gray[i];
        g->count[y * g->w + x]++;
    }
}

/* Adam7 on images smaller than its 8x8 tile has empty passes, which carry no rows. */
TL_TEST(interlaced_small_sizes) {
    for (uint32_t w = 1; w <= 9; w++)
        for (uint32_t h = 1; h <= 9; h++)
            for (int t = 0; t < 3; t++) {
                unsigned ct = t == 0 ? 0 : t == 1 ? 2 : 0, depth = t == 0 ? 8 : t == 1 ? 16 : 1;
                tl_png_spec s = {
                    .w = w, .h = h, .depth = depth, .ct = ct, .interlace = 1, .filter = -1};
                s.s = samples(w, h, ct, depth, 0, w * 16 + h);
                tl_bytes png = tl_png_of(&s);
                grid g = {.w = w, .h = h};
                char err[256] = "";
                if (cls_png_decode(png.p, png.n, 4096, grid_row, &g, NULL, err, sizeof err) != 0)
                    FAILF("%ux%u: %s", w, h, err);
                for (uint32_t y = 0; y < h; y++)
                    for (uint32_t x = 0; x < w; x++) {
                        if (g.count[y * w + x] != 1)
                            FAILF("%ux%u: pixel (%u, %u) handed out %u times", w, h, x, y,
                                  g.count[y * w + x]);
                        if (g.px[y * w + x] != want_gray(&s, x, y))
                            FAILF("%ux%u: pixel (%u, %u) is %u, want %u", w, h, x, y,
                                  g.px[y * w + x], want_gray(&s, x, y));
                    }
            }
}

TL_TEST(filter_types) {
    const unsigned types[][2] = {{0, 1}, {0, 8}, {2, 8}, {6, 16}, {3, 4}, {4, 8}};
    for (int f = -1; f <= 4; f++)
        for (size_t i = 0; i < TL_COUNT(types); i++) {
            tl_png_spec s = spec_28(types[i][0], types[i][1], 0, f, (uint32_t)(f + 40 + (int)i));
            check_28(&s, tl_printf("filter %d, type %u, %u-bit", f, types[i][0], types[i][1]));
        }
}

/* tRNS where it is well formed; other ancillary chunks anywhere are skipped. */
TL_TEST(trns_and_ancillary) {
    tl_png_spec s = spec_28(3, 4, 0, 0, 7);
    unsigned char alpha[10] = {0, 255, 128, 40, 200, 1, 2, 3, 250, 100};
    s.trns = alpha;
    s.trns_len = sizeof alpha;
    check_28(&s, "palette with tRNS");

    s = spec_28(0, 8, 0, 0, 8);
    unsigned char gkey[2] = {0, (unsigned char)s.s[5]};
    s.trns = gkey;
    s.trns_len = 2;
    check_28(&s, "gray 8-bit with a tRNS key");

    s = spec_28(0, 2, 0, 0, 8);
    unsigned char g2key[2] = {0, 2};
    s.trns = g2key;
    s.trns_len = 2;
    check_28(&s, "gray 2-bit with a tRNS key");

    uint16_t *rgb = samples(28, 28, 2, 8, 4, 9); /* few colours, so the key matches often */
    s = (tl_png_spec){.w = 28, .h = 28, .depth = 8, .ct = 2, .s = rgb};
    unsigned char rkey[6] = {0, (unsigned char)rgb[0], 0, (unsigned char)rgb[1],
                             0, (unsigned char)rgb[2]};
    s.trns = rkey;
    s.trns_len = 6;
    check_28(&s, "RGB 8-bit with a tRNS key");

    s = spec_28(2, 16, 0, 0, 10);
    unsigned char r16[6] = {(unsigned char)(s.s[3] >> 8), (unsigned char)s.s[3],
                            (unsigned char)(s.s[4] >> 8), (unsigned char)s.s[4],
                            (unsigned char)(s.s[5] >> 8), (unsigned char)s.s[5]};
    s.trns = r16;
    s.trns_len = 6;
    check_28(&s, "RGB 16-bit with a tRNS key");

    /* tRNS that cannot apply (RGBA; a palette's with more entries than colours) is skipped */
    tl_png_spec rgba = spec_28(6, 8, 0, 0, 12);
    unsigned char junk[6] = {1, 2, 3, 4, 5, 6};
    tl_bytes b = tl_png_head(&rgba);
    tl_png_chunk(&b, "tRNS", junk, sizeof junk);
    tl_png_chunk(&b, "tEXt", "Comment\0made by the test", 24);
    tl_bytes raw = tl_png_rows(&rgba);
    tl_bytes z = tl_png_zlib(raw.p, raw.n);
    tl_png_chunk(&b, "IDAT", z.p, z.n);
    tl_png_chunk(&b, "zzZz", "anything", 8);
    tl_png_chunk(&b, "IEND", NULL, 0);
    unsigned char out[CLS_PIXELS];
    decode_ok(&b, out);
    for (uint32_t i = 0; i < CLS_PIXELS; i++)
        ASSERT_EQ_INT(out[i], want_gray(&rgba, i % 28, i / 28));

    tl_png_spec pal = spec_28(3, 1, 0, 0, 13);
    unsigned char three[3] = {0, 0, 0};
    pal.trns = three;
    pal.trns_len = 3; /* 2 colours */
    b = tl_png_of(&pal);
    decode_ok(&b, out);
    pal.trns = NULL;
    for (uint32_t i = 0; i < CLS_PIXELS; i++)
        ASSERT_EQ_INT(out[i], want_gray(&pal, i % 28, i / 28));
}

/* The zlib stream split over many IDATs (one byte each), and data after its end. */
TL_TEST(idat_split_and_trailing_data) {
    tl_png_spec s = spec_28(2, 8, 1, -1, 33);
    tl_bytes b = tl_png_head(&s);
    tl_bytes raw = tl_png_rows(&s);
    tl_bytes z = tl_png_zlib(raw.p, raw.n);
    for (size_t i = 0; i < z.n; i++) tl_png_chunk(&b, "IDAT", z.p + i, 1);
    tl_png_chunk(&b, "IDAT", "after the stream's end", 22);
    tl_png_chunk(&b, "IEND", NULL, 0);
    tl_bytes_put(&b, "bytes after IEND", 16);
    unsigned char out[CLS_PIXELS];
    decode_ok(&b, out);
    for (uint32_t i = 0; i < CLS_PIXELS; i++) ASSERT_EQ_INT(out[i], want_gray(&s, i % 28, i / 28));
}

/* ------------------------------------------------------------ scaling --------------- */

static tl_bytes gray8_png(uint32_t w, uint32_t h, const uint16_t *px) {
    tl_png_spec s = {.w = w, .h = h, .depth = 8, .ct = 0, .s = px, .filter = -1};
    return tl_png_of(&s);
}

TL_TEST(scale_56x56_means) {
    uint16_t *px = samples(56, 56, 0, 8, 0, 56);
    tl_bytes png = gray8_png(56, 56, px);
    unsigned char out[CLS_PIXELS];
    decode_ok(&png, out);
    for (int oy = 0; oy < 28; oy++)
        for (int ox = 0; ox < 28; ox++) {
            unsigned sum = px[(2 * oy) * 56 + 2 * ox] + px[(2 * oy) * 56 + 2 * ox + 1] +
                           px[(2 * oy + 1) * 56 + 2 * ox] + px[(2 * oy + 1) * 56 + 2 * ox + 1];
            if (out[oy * 28 + ox] != (sum + 2) / 4)
                FAILF("(%d, %d) is %u, want the 2x2 mean %u", ox, oy, out[oy * 28 + ox],
                      (sum + 2) / 4);
        }
}

/* 56x28 fits as 28x14, centred on rows 7..20; 28x56 on columns 7..20. */
TL_TEST(scale_56x28_centred) {
    for (int tall = 0; tall <= 1; tall++) {
        uint32_t w = tall ? 28 : 56, h = tall ? 56 : 28;
        uint16_t *px = samples(w, h, 0, 8, 255, 5 + tall);
        for (size_t i = 0; i < (size_t)w * h; i++) px[i]++; /* 1..255: never black */
        tl_bytes png = gray8_png(w, h, px);
        unsigned char out[CLS_PIXELS];
        decode_ok(&png, out);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int a = tall ? x : y, b = tall ? y : x; /* a: across the short side */
                unsigned got = out[y * 28 + x];
                if (a < 7 || a > 20) {
                    if (got != 0)
                        FAILF("tall %d: (%d, %d) is %u outside the image", tall, x, y, got);
                    continue;
                }
                int sa = 2 * (a - 7), sb = 2 * b; /* the block's corner, in the short/long axes */
                unsigned sum = 0;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        int sx = tall ? sa + i : sb + j, sy = tall ? sb + j : sa + i;
                        sum += px[sy * w + sx];
                    }
                if (got != (sum + 2) / 4)
                    FAILF("tall %d: (%d, %d) is %u, want %u", tall, x, y, got, (sum + 2) / 4);
            }
    }
}

/* Ratios that are not whole numbers: partial pixels weigh what they cover, so a uniform
 * image stays uniform, and it is centred. */
TL_TEST(scale_uneven_uniform) {
    const uint32_t sizes[][4] = {/* w, h, then the fitted w, h */
                                 {100, 40, 28, 11},
                                 {29, 28, 28, 27},
                                 {4096, 28, 28, 1},
                                 {31, 97, 9, 28}};
    for (size_t i = 0; i < TL_COUNT(sizes); i++) {
        uint32_t w = sizes[i][0], h = sizes[i][1], fw = sizes[i][2], fh = sizes[i][3];
        uint16_t *px = tl_alloc((size_t)w * h * sizeof *px);
        for (size_t k = 0; k < (size_t)w * h; k++) px[k] = 201;
        tl_bytes png = gray8_png(w, h, px);
        unsigned char out[CLS_PIXELS];
        decode_ok(&png, out);
        uint32_t top = (28 - fh) / 2, left = (28 - fw) / 2;
        for (uint32_t y = 0; y < 28; y++)
            for (uint32_t x = 0; x < 28; x++) {
                bool in = y >= top && y < top + fh && x >= left && x < left + fw;
                if (out[y * 28 + x] != (in ? 201 : 0))
                    FAILF("%ux%u: (%u, %u) is %u, want %u", w, h, x, y, out[y * 28 + x],
                          in ? 201 : 0);
            }
    }
}

/* ------------------------------------------------------------ refusals -------------- */

/* A PNG with these chunks after the signature (type, data, length; NULL type ends). */
typedef struct ck {
    const char *type;
    const void *d;
    size_t n;
} ck;

static tl_bytes png_chunks(const ck *c) {
    tl_bytes b = {0};
    tl_png_sig(&b);
    for (; c->type; c++) tl_png_chunk(&b, c->type, c->d, c->n);
    return b;
}

#define REFUSED(b, want)                              \
    do {                                              \
        tl_bytes tl_b = (b);                          \
        ASSERT_EQ_STR(refusal(tl_b.p, tl_b.n), want); \
    } while (0)

TL_TEST(refused_size_and_header) {
    unsigned char some[783] = {0};
    ASSERT_EQ_STR(refusal(some, 783),
                  "image: 783 bytes is neither a PNG nor 784 raw pixels (28x28)");
    ASSERT_EQ_STR(refusal(some, 0), "image: 0 bytes is neither a PNG nor 784 raw pixels (28x28)");
    ASSERT_EQ_STR(refusal(some, 1), "image: 1 byte is neither a PNG nor 784 raw pixels (28x28)");
    ASSERT_EQ_STR(refusal((const unsigned char *)"\x89PNG\r", 5),
                  "image: PNG is truncated (it ends inside its signature)");

    tl_png_spec small = {.w = 20, .h = 30, .depth = 8, .ct = 0, .s = samples(20, 30, 0, 8, 0, 1)};
    REFUSED(tl_png_of(&small),
            "image: PNG is 20x30; classify needs at least 28 pixels on each side");

    tl_bytes b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(5000, 10, 8, 0, 0, 0, 0), 13},
                                   {NULL, NULL, 0}});
    REFUSED(b, "image: PNG is 5000x10 pixels; at most 4096 on a side");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 4097, 8, 0, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG is 28x4097 pixels; at most 4096 on a side");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(0, 28, 8, 0, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG is 0x28 pixels; each side must be at least 1");

    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 0, 0, 0, 0), 13}, {NULL, NULL, 0}});
    b.p[8 + 8 + 13 + 3] ^= 1; /* the CRC's last byte */
    REFUSED(b, "image: PNG: bad CRC in chunk IHDR");

    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 5, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: unknown colour type 5");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 16, 3, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: bit depth 16 is not allowed for colour type 3 (palette)");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 4, 2, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: bit depth 4 is not allowed for colour type 2 (RGB)");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 3, 0, 0, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: bit depth 3 is not allowed for colour type 0 (grayscale)");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 0, 1, 0, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: unknown compression method 1");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 0, 0, 1, 0), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: unknown filter method 1");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 0, 0, 0, 2), 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: unknown interlace method 2");

    b = png_chunks((ck[]){{"gAMA", "\0\0\0\1", 4},
                          {"IHDR", tl_png_ihdr(28, 28, 8, 0, 0, 0, 0), 13},
                          {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: the first chunk is gAMA, not IHDR");
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 0, 0, 0, 0), 12}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: IHDR chunk is 12 bytes, not 13");
}

TL_TEST(refused_chunks) {
    const unsigned char *gray = tl_png_ihdr(28, 28, 8, 0, 0, 0, 0);
    tl_png_spec g = spec_28(0, 8, 0, 0, 3);
    tl_bytes graw = tl_png_rows(&g);
    tl_bytes gz = tl_png_zlib(graw.p, graw.n);

    tl_bytes b = png_chunks((ck[]){{"IHDR", gray, 13}, {"ID1T", gz.p, gz.n}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: bad chunk type at byte 37 (not four letters)");
    b = png_chunks((ck[]){{"IHDR", gray, 13}, {"tEXt", "a\0b", 3}, {NULL, NULL, 0}});
    b.p[33] = 0x80; /* tEXt's length: 2^31 + 3 */
    REFUSED(b, "image: PNG: chunk tEXt claims 2147483651 bytes (at most 2^31-1)");
    b = png_chunks((ck[]){{"IHDR", gray, 13},
                          {"ABCD", "x", 1},
                          {"IDAT", gz.p, gz.n},
                          {"IEND", NULL, 0},
                          {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: unknown critical chunk ABCD");
    b = png_chunks((ck[]){{"IHDR", gray, 13}, {"IHDR", gray, 13}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: more than one IHDR chunk");
    b = png_chunks((ck[]){{"IHDR", gray, 13},
                          {"IDAT", gz.p, gz.n},
                          {"tEXt", "a\0b", 3},
                          {"IDAT", gz.p, 0},
                          {"IEND", NULL, 0},
                          {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: IDAT chunks are not consecutive (another chunk comes between them)");
    b = png_chunks((ck[]){{"IHDR", gray, 13}, {"IEND", NULL, 0}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: no image data (IDAT chunk)");
    b = png_chunks((ck[]){
        {"IHDR", gray, 13}, {"IDAT", gz.p, gz.n}, {"IEND", "x", 1}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: IEND chunk is not empty");

    /* palettes */
    tl_png_spec p = spec_28(3, 2, 0, 0, 4);
    tl_bytes praw = tl_png_rows(&p);
    tl_bytes pz = tl_png_zlib(praw.p, praw.n);
    const unsigned char *pal2 = tl_png_ihdr(28, 28, 2, 3, 0, 0, 0);
    b = png_chunks((ck[]){
        {"IHDR", pal2, 13}, {"IDAT", pz.p, pz.n}, {"IEND", NULL, 0}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: no PLTE chunk before the image data (a palette image needs one)");
    b = png_chunks((ck[]){{"IHDR", pal2, 13}, {"PLTE", p.plte, 10}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: PLTE chunk is 10 bytes (3 per colour, 1 to 256 colours)");
    b = png_chunks((ck[]){{"IHDR", pal2, 13}, {"PLTE", palette(5, 1), 15}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: PLTE has 5 colours; at most 4 for bit depth 2");
    b = png_chunks((ck[]){
        {"IHDR", pal2, 13}, {"PLTE", p.plte, 12}, {"PLTE", p.plte, 12}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: more than one PLTE chunk");
    b = png_chunks((ck[]){{"IHDR", gray, 13}, {"PLTE", p.plte, 12}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: PLTE chunk in a grayscale image");
    b = png_chunks((ck[]){
        {"IHDR", tl_png_ihdr(28, 28, 8, 4, 0, 0, 0), 13}, {"PLTE", p.plte, 12}, {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: PLTE chunk in a grayscale with alpha image");
    tl_png_spec rgb = spec_28(2, 8, 0, 0, 5);
    tl_bytes rraw = tl_png_rows(&rgb);
    tl_bytes rz = tl_png_zlib(rraw.p, rraw.n);
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 2, 0, 0, 0), 13},
                          {"IDAT", rz.p, rz.n},
                          {"PLTE", p.plte, 12},
                          {"IEND", NULL, 0},
                          {NULL, NULL, 0}});
    REFUSED(b, "image: PNG: PLTE chunk after the image data");
    /* an RGB image's suggested palette is fine */
    b = png_chunks((ck[]){{"IHDR", tl_png_ihdr(28, 28, 8, 2, 0, 0, 0), 13},
                          {"PLTE", p.plte, 12},
                          {"IDAT", rz.p, rz.n},
                          {"IEND", NULL, 0},
                          {NULL, NULL, 0}});
    unsigned char out[CLS_PIXELS];
    decode_ok(&b, out);

    /* index 3 with a palette of 3 colours: the first pixel of row 2 */
    uint16_t *idx = samples(28, 28, 3, 2, 3, 6);
    idx[28 + 0] = 3;
    tl_png_spec bad = {
        .w = 28, .h = 28, .depth = 2, .ct = 3, .s = idx, .plte = p.plte, .plte_len = 9};
    REFUSED(tl_png_of(&bad),
            "image: PNG: palette index 3 out of range (the palette has 3 colours)");
}

/* Chunk types past IHDR cannot hide from the truncation and CRC checks either. */
TL_TEST(refused_truncated_and_crc) {
    tl_png_spec s = spec_28(0, 8, 0, 0, 9);
    tl_bytes png = tl_png_of(&s);
    /* IDAT's CRC */
    tl_bytes b = png;
    b.p = tl_alloc(png.n);
    memcpy(b.p, png.p, png.n);
    b.p[b.n - 12 - 1] ^= 0x40;
    REFUSED(b, "image: PNG: bad CRC in chunk IDAT");
    ASSERT_EQ_STR(refusal(png.p, png.n - 13),
                  "image: PNG is truncated (it ends inside chunk IDAT)");
    ASSERT_EQ_STR(refusal(png.p, png.n - 12),
                  "image: PNG is truncated (it ends before its IEND chunk)");
    ASSERT_EQ_STR(refusal(png.p, png.n - 5),
                  "image: PNG is truncated (it ends inside a chunk header)");
    ASSERT_EQ_STR(refusal(png.p, png.n - 1), "image: PNG is truncated (it ends inside chunk IEND)");
    ASSERT_EQ_STR(refusal(png.p, 20), "image: PNG is truncated (it ends inside chunk IHDR)");
}

static tl_bytes gray_with_stream(const tl_png_spec *s, const unsigned char *z, size_t zn) {
    tl_bytes b = tl_png_head(s);
    tl_png_chunk(&b, "IDAT", z, zn);
    tl_png_chunk(&b, "IEND", NULL, 0);
    return b;
}

TL_TEST(refused_image_data) {
    tl_png_spec s = spec_28(0, 8, 0, 0, 10);
    tl_bytes raw = tl_png_rows(&s);
    /* filter type 5 in row 3 */
    tl_bytes r = {0};
    tl_bytes_put(&r, raw.p, raw.n);
    r.p[2 * 29] = 5;
    tl_bytes z = tl_png_zlib(r.p, r.n);
    REFUSED(gray_with_stream(&s, z.p, z.n), "image: PNG: unknown filter type 5 in row 3");
    tl_png_spec si = spec_28(0, 8, 1, 0, 10);
    tl_bytes rawi = tl_png_rows(&si);
    rawi.p[0] = 200;
    z = tl_png_zlib(rawi.p, rawi.n);
    REFUSED(gray_with_stream(&si, z.p, z.n),
            "image: PNG: unknown filter type 200 in row 1 of interlace pass 1");

    /* rows missing: the stream ends after 27 of 28 */
    z = tl_png_zlib(raw.p, raw.n - 29);
    REFUSED(gray_with_stream(&s, z.p, z.n),
            "image: PNG: image data ends early (after 27 of 28 rows)");
    rawi.p[0] = 0;
    z = tl_png_zlib(rawi.p, rawi.n - 1);
    REFUSED(gray_with_stream(&si, z.p, z.n),
            "image: PNG: image data ends early (in interlace pass 7 of 7)");
    /* rows missing: IDAT stops mid-stream */
    z = tl_png_zlib(raw.p, raw.n);
    REFUSED(gray_with_stream(&s, z.p, 2), "image: PNG: image data ends early (after 0 of 28 rows)");

    /* the stream's end */
    z = tl_png_zlib(raw.p, raw.n);
    tl_bytes bad = {0};
    tl_bytes_put(&bad, z.p, z.n);
    bad.p[bad.n - 1] ^= 1;
    REFUSED(gray_with_stream(&s, bad.p, bad.n),
            "image: PNG: image data is corrupt (zlib: incorrect data check)");
    REFUSED(gray_with_stream(&s, z.p, z.n - 4),
            "image: PNG: image data is truncated (its zlib stream does not end)");
    bad.p[0] = 0x79; /* not deflate's window size */
    REFUSED(gray_with_stream(&s, bad.p, bad.n),
            "image: PNG: image data is corrupt (zlib: incorrect header check)");
    unsigned char dict[8] = {0x78, 0x20, 0, 0, 0, 1, 0, 0};
    REFUSED(gray_with_stream(&s, dict, sizeof dict),
            "image: PNG: image data is corrupt (its zlib stream asks for a preset dictionary)");
}

static void count_pixels(void *arg, uint32_t y, uint32_t x0, uint32_t dx, const unsigned char *gray,
                         uint32_t n) {
    *(uint64_t *)arg += n;
}

/* A decompression bomb: a 28x28 image whose zlib stream goes on with 256 MiB of zeros.
 * It is accepted (the extra data is ignored) after inflating the image's rows and one
 * small buffer of the rest, with no more memory than two rows. */
TL_TEST(bomb_stops_at_last_row) {
    tl_png_spec s = spec_28(0, 8, 0, 0, 11);
    tl_bytes raw = tl_png_rows(&s);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ASSERT_EQ_INT(deflateInit(&zs, 9), Z_OK);
    tl_bytes z = {0};
    static unsigned char zeros[1 << 20], zout[1 << 16];
    for (int i = -1; i < 256; i++) {
        zs.next_in = i < 0 ? raw.p : zeros;
        zs.avail_in = i < 0 ? (uInt)raw.n : sizeof zeros;
        int flush = i == 255 ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs.next_out = zout;
            zs.avail_out = sizeof zout;
            deflate(&zs, flush);
            tl_bytes_put(&z, zout, sizeof zout - zs.avail_out);
        } while (zs.avail_out == 0);
    }
    deflateEnd(&zs);
    tl_log("the bomb: %zu bytes of zlib stream inflating to %zu", z.n, raw.n + ((size_t)256 << 20));
    tl_bytes png = gray_with_stream(&s, z.p, z.n);

    unsigned char out[CLS_PIXELS];
    decode_ok(&png, out);
    for (uint32_t i = 0; i < CLS_PIXELS; i++) ASSERT_EQ_INT(out[i], want_gray(&s, i % 28, i / 28));

    uint64_t pixels = 0;
    cls_png_stats st;
    char err[256] = "";
    ASSERT_EQ_INT(cls_png_decode(png.p, png.n, 4096, count_pixels, &pixels, &st, err, sizeof err),
                  0);
    ASSERT_EQ_INT(pixels, CLS_PIXELS);
    tl_log("inflated %llu bytes, allocated %llu", (unsigned long long)st.inflated,
           (unsigned long long)st.allocated);
    ASSERT_LE_INT(st.inflated, raw.n + 64);         /* the rows, then one scratch buffer */
    ASSERT_LE_INT(st.allocated, 2 * (28 + 1) + 28); /* two filtered rows, one gray row */
}

/* Cut a valid PNG at every byte: always a refusal, never a crash. */
TL_TEST(truncated_every_offset) {
    tl_png_spec s = spec_28(6, 16, 1, -1, 12);
    tl_bytes b = tl_png_head(&s);
    tl_png_chunk(&b, "tEXt", "Title\0cut everywhere", 20);
    tl_bytes raw = tl_png_rows(&s);
    tl_bytes z = tl_png_zlib(raw.p, raw.n);
    tl_png_chunk(&b, "IDAT", z.p, z.n / 2);
    tl_png_chunk(&b, "IDAT", z.p + z.n / 2, z.n - z.n / 2);
    tl_png_chunk(&b, "IEND", NULL, 0);
    unsigned char out[CLS_PIXELS];
    decode_ok(&b, out);
    for (size_t k = 0; k < b.n; k++) {
        unsigned char *cut = malloc(k ? k : 1); /* exactly k bytes, so ASan sees any over-read */
        ASSERT_NOT_NULL(cut);
        memcpy(cut, b.p, k);
        const char *why = refusal(cut, k);
        free(cut);
        if (k > CLS_PNG_SIGNATURE_LEN && !strstr(why, "truncated") && !strstr(why, "ends early"))
            FAILF("cut at %zu of %zu: \"%s\" does not say the file is cut short", k, b.n, why);
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(raw_784_roundtrip),
        TL_CASE(conversion_anchors),
        TL_CASE(gray_depths),
        TL_CASE(rgb_depths),
        TL_CASE(palette_depths),
        TL_CASE(alpha_types),
        TL_CASE(interlaced_every_type),
        TL_CASE(interlaced_small_sizes),
        TL_CASE(filter_types),
        TL_CASE(trns_and_ancillary),
        TL_CASE(idat_split_and_trailing_data),
        TL_CASE(scale_56x56_means),
        TL_CASE(scale_56x28_centred),
        TL_CASE(scale_uneven_uniform),
        TL_CASE(refused_size_and_header),
        TL_CASE(refused_chunks),
        TL_CASE(refused_truncated_and_crc),
        TL_CASE(refused_image_data),
        TL_CASE(bomb_stops_at_last_row),
        TL_CASE(truncated_every_offset),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
