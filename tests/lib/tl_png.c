/* tl_png.c: a growable byte buffer and a small PNG encoder for the tests (tl_png.h). */
#include "tl_png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testlib.h"

/* ------------------------------------------------------------ a byte buffer --------- */

void tl_bytes_put(tl_bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        unsigned char *p = tl_alloc(cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

void tl_bytes_put32be(tl_bytes *b, uint32_t v) {
    unsigned char q[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    tl_bytes_put(b, q, 4);
}

/* ------------------------------------------------------------ chunks ---------------- */

void tl_png_sig(tl_bytes *b) { tl_bytes_put(b, "\x89PNG\r\n\x1a\n", 8); }

void tl_png_chunk(tl_bytes *b, const char *type, const void *d, size_t n) {
    tl_bytes_put32be(b, (uint32_t)n);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (n) crc = crc32(crc, d, (uInt)n);
    tl_bytes_put(b, type, 4);
    tl_bytes_put(b, d, n);
    tl_bytes_put32be(b, (uint32_t)crc);
}

const unsigned char *tl_png_ihdr(uint32_t w, uint32_t h, unsigned depth, unsigned ct, unsigned comp,
                                 unsigned filt, unsigned il) {
    unsigned char *p = tl_alloc(13);
    tl_bytes b = {0};
    tl_bytes_put32be(&b, w);
    tl_bytes_put32be(&b, h);
    memcpy(p, b.p, 8);
    p[8] = (unsigned char)depth;
    p[9] = (unsigned char)ct;
    p[10] = (unsigned char)comp;
    p[11] = (unsigned char)filt;
    p[12] = (unsigned char)il;
    return p;
}

/* ------------------------------------------------------------ image data ------------ */

/* Each pass's first column and row, then its column and row steps. */
static const uint8_t adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                    {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

unsigned tl_png_channels(unsigned ct) { return ct == 2 ? 3 : ct == 4 ? 2 : ct == 6 ? 4 : 1; }

static unsigned char paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (unsigned char)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

tl_bytes tl_png_rows(const tl_png_spec *s) {
    tl_bytes out = {0};
    unsigned nc = tl_png_channels(s->ct), bits = nc * s->depth, bpp = bits >= 8 ? bits / 8 : 1;
    int passes = s->interlace ? 7 : 1;
    for (int p = 0; p < passes; p++) {
        uint32_t x0 = 0, y0 = 0, dx = 1, dy = 1;
        if (s->interlace) x0 = adam7[p][0], y0 = adam7[p][1], dx = adam7[p][2], dy = adam7[p][3];
        uint32_t pw = s->w > x0 ? (s->w - x0 + dx - 1) / dx : 0;
        uint32_t ph = s->h > y0 ? (s->h - y0 + dy - 1) / dy : 0;
        if (!pw || !ph) continue;
        size_t rb = ((size_t)pw * bits + 7) / 8;
        unsigned char *prev = tl_alloc(rb), *cur = tl_alloc(rb), *f = tl_alloc(rb + 1);
        for (uint32_t r = 0; r < ph; r++) {
            uint32_t y = y0 + r * dy;
            memset(cur, 0, rb);
            size_t bit = 0;
            for (uint32_t i = 0; i < pw; i++) {
                const uint16_t *px = s->s + ((size_t)y * s->w + x0 + i * dx) * nc;
                for (unsigned c = 0; c < nc; c++) {
                    unsigned v = px[c];
                    if (s->depth == 16) {
                        cur[bit / 8] = (unsigned char)(v >> 8);
                        cur[bit / 8 + 1] = (unsigned char)v;
                    } else if (s->depth == 8) {
                        cur[bit / 8] = (unsigned char)v;
                    } else {
                        cur[bit / 8] |= (unsigned char)(v << (8 - s->depth - bit % 8));
                    }
                    bit += s->depth;
                }
            }
            int ft = s->filter >= 0 ? s->filter : (int)(r % 5);
            f[0] = (unsigned char)ft;
            for (size_t i = 0; i < rb; i++) {
                int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
                int pred = ft == 1   ? a
                           : ft == 2 ? b
                           : ft == 3 ? (a + b) / 2
                           : ft == 4 ? paeth(a, b, c)
                                     : 0;
                f[i + 1] = (unsigned char)(cur[i] - pred);
            }
            tl_bytes_put(&out, f, rb + 1);
            memcpy(prev, cur, rb);
        }
    }
    return out;
}

static tl_bytes zlib_at(const unsigned char *d, size_t n, int level) {
    uLongf zn = compressBound(n);
    tl_bytes z = {tl_alloc(zn), 0, zn};
    int rc = compress2(z.p, &zn, d, n, level);
    if (rc != Z_OK) FAILF("compress2 failed: %d", rc);
    z.n = zn;
    return z;
}

tl_bytes tl_png_zlib(const unsigned char *d, size_t n) { return zlib_at(d, n, 9); }

/* ------------------------------------------------------------ whole files ----------- */

tl_bytes tl_png_head(const tl_png_spec *s) {
    tl_bytes b = {0};
    tl_png_sig(&b);
    tl_png_chunk(&b, "IHDR", tl_png_ihdr(s->w, s->h, s->depth, s->ct, 0, 0, s->interlace), 13);
    if (s->plte) tl_png_chunk(&b, "PLTE", s->plte, s->plte_len);
    if (s->trns) tl_png_chunk(&b, "tRNS", s->trns, s->trns_len);
    return b;
}

static tl_bytes png_at(const tl_png_spec *s, int level) {
    tl_bytes b = tl_png_head(s);
    tl_bytes raw = tl_png_rows(s);
    tl_bytes z = zlib_at(raw.p, raw.n, level);
    tl_png_chunk(&b, "IDAT", z.p, z.n);
    tl_png_chunk(&b, "IEND", NULL, 0);
    return b;
}

tl_bytes tl_png_of(const tl_png_spec *s) { return png_at(s, 9); }

unsigned char *tl_png_gray8(const unsigned char *px, uint32_t w, uint32_t h, unsigned channels,
                            size_t *len) {
    if (channels != 1 && channels != 3) FAILF("tl_png_gray8: channels is %u, not 1 or 3", channels);
    size_t n = (size_t)w * h;
    uint16_t *s = tl_alloc(n * channels * sizeof *s);
    for (size_t i = 0; i < n; i++)
        for (unsigned c = 0; c < channels; c++) s[i * channels + c] = px[i];
    tl_png_spec spec = {.w = w, .h = h, .depth = 8, .ct = channels == 1 ? 0 : 2, .s = s};
    /* Level 6 (zlib's default), as the integration tests' images were always written. */
    tl_bytes b = png_at(&spec, 6);
    *len = b.n;
    return b.p;
}
