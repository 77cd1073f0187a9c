/* tl_png.h: a growable byte buffer and a small PNG encoder for the tests (part of
 * fleet_testlib).
 *
 * The encoder writes any PNG the format allows (every colour type and bit depth, each of
 * the five row filters, Adam7 interlacing, PLTE and tRNS) from samples the test chooses,
 * with zlib's compress2 and crc32; its pieces (signature, chunks, IHDR, filtered rows, the
 * zlib stream) are exposed too, so a test can also build files no encoder would write.
 *
 * Memory: every buffer and array returned here is owned by the harness (tl_alloc) and
 * freed when the case ends; tests never free. */
#ifndef TL_PNG_H
#define TL_PNG_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ a byte buffer --------- */

/* Bytes p[0..n), room for cap; {0} is an empty buffer. Growing copies into a new harness
 * allocation, so an old p stays readable (and unchanged) until the case ends. */
typedef struct tl_bytes {
    unsigned char *p;
    size_t n, cap;
} tl_bytes;

/* Appends n bytes of d (d may be NULL when n is 0). */
void tl_bytes_put(tl_bytes *b, const void *d, size_t n);
/* Appends v as 4 bytes, most significant first (PNG's and network order). */
void tl_bytes_put32be(tl_bytes *b, uint32_t v);

/* ------------------------------------------------------------ PNG ------------------- */

/* An image to encode: samples at their bit depth, channels per pixel in PNG order. */
typedef struct tl_png_spec {
    uint32_t w, h;
    unsigned depth, ct, interlace; /* IHDR's bit depth, colour type, interlace method */
    const uint16_t *s;             /* w * h * tl_png_channels(ct) samples, row by row */
    int filter;                    /* 0..4 for every row; -1: row r (of its pass) uses r % 5 */
    const unsigned char *plte;
    size_t plte_len;
    const unsigned char *trns;
    size_t trns_len;
} tl_png_spec;

/* Samples per pixel of colour type ct (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA). */
unsigned tl_png_channels(unsigned ct);

/* The 8-byte PNG signature. */
void tl_png_sig(tl_bytes *b);
/* One chunk: length, type (4 bytes), the n bytes of d, CRC of type and data. */
void tl_png_chunk(tl_bytes *b, const char *type, const void *d, size_t n);
/* IHDR's 13 data bytes, fields as given (so a test can write invalid ones). */
const unsigned char *tl_png_ihdr(uint32_t w, uint32_t h, unsigned depth, unsigned ct, unsigned comp,
                                 unsigned filt, unsigned il);
/* The filtered rows of the image (filter byte first), Adam7 passes when s says so. */
tl_bytes tl_png_rows(const tl_png_spec *s);
/* d compressed by compress2 at level 9 (a zlib stream, as IDAT carries it). */
tl_bytes tl_png_zlib(const unsigned char *d, size_t n);
/* Signature, IHDR, then PLTE and tRNS when s has them: everything before IDAT. */
tl_bytes tl_png_head(const tl_png_spec *s);
/* The whole PNG: tl_png_head, the zlib stream of tl_png_rows in one IDAT, IEND. */
tl_bytes tl_png_of(const tl_png_spec *s);

/* An 8-bit PNG of w x h pixels from px (w * h gray bytes, row by row): grayscale when
 * channels is 1, RGB with each sample the gray value when 3; rows unfiltered, compress2
 * at level 6. Returns the file, its length in *len. */
unsigned char *tl_png_gray8(const unsigned char *px, uint32_t w, uint32_t h, unsigned channels,
                            size_t *len);

#endif
