/* png.h: the classify model's PNG decoder, our own, on zlib's inflate (no libpng).
 *
 * It reads a whole PNG held in memory, any colour type and bit depth the PNG
 * specification allows, interlaced (Adam7) or not, and hands its pixels out as 8-bit gray,
 * a row (or, interlaced, a pass's row) at a time, so that memory stays bounded by one
 * image row whatever the file claims:
 *
 *     signature -> IHDR -> [ancillary, PLTE, tRNS] -> IDAT... -> [ancillary] -> IEND
 *                              |                         |
 *                     palette to gray table      inflate one row at a time, unfilter
 *                                                 against the previous row, to gray,
 *                                                 hand out (cls_png_row_fn)
 *
 * Gray: ITU-R BT.601 luma for colour, (299 R + 587 G + 114 B + 500) / 1000; a sample of
 * fewer than 8 bits scaled to 0..255 (1 bit: 0 or 255; 2 bits: v * 85; 4 bits: v * 17); a
 * 16-bit sample keeps its high byte; alpha composited over black, (g * a + 127) / 255;
 * palette indexes looked up (an index past the palette is an error). tRNS is honoured
 * when it is well formed and comes before the image data: a palette's alphas (no more
 * entries than the palette has), or the one gray or RGB value that is transparent (black);
 * any other tRNS is skipped like every ancillary chunk.
 *
 * Checked: the signature; IHDR first, 13 bytes, sides 1..max_side, legal colour type / bit
 * depth pairs, compression, filter and interlace methods; every chunk's CRC (before it is
 * used) and that it lies inside the data; PLTE where the colour type needs one (1..256
 * colours, at most 2^depth for a palette image, none in a gray image, not after IDAT);
 * IDATs consecutive; each row's filter type 0..4; the zlib stream (its header, its data,
 * its end and checksum); IEND. Unknown critical chunks are refused, ancillary chunks
 * skipped (their CRC is still checked). Bytes after IEND are ignored.
 *
 * Bombs: inflate stops as soon as the image's last row is complete. What follows it in
 * the zlib stream is inflated only to find the stream's end: the first byte of output
 * past the image ends inflating for good (the extra data is accepted and ignored), so the
 * work is bounded by the image's size and the file's length, never by what the stream
 * would inflate to.
 *
 * Errors are one line in words for the person who sent the file, starting "PNG" (the
 * caller adds its own prefix), e.g. "PNG: bad CRC in chunk IHDR", "PNG is truncated (it
 * ends inside chunk IDAT)", "PNG is 5000x10 pixels; at most 4096 on a side". Pure: no I/O,
 * no global state; safe on any bytes.
 */
#ifndef CLS_PNG_H
#define CLS_PNG_H

#include <stddef.h>
#include <stdint.h>

#define CLS_PNG_SIGNATURE_LEN 8

/* What IHDR says. */
typedef struct cls_png_header {
    uint32_t width, height;
    unsigned bit_depth;  /* 1, 2, 4, 8 or 16 */
    unsigned color_type; /* 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA */
    unsigned interlace;  /* 0 none, 1 Adam7 */
} cls_png_header;

/* What one decode cost, for tests and the fuzzer: inflated counts the bytes zlib wrote
 * (the image's filtered rows plus at most one buffer of extra data), allocated the bytes
 * the decoder asked malloc for (zlib's own state excluded). */
typedef struct cls_png_stats {
    uint64_t inflated;
    uint64_t allocated;
} cls_png_stats;

/* Gray pixels for row y of the image: gray[i] is the pixel at column x0 + i * dx, for i in
 * 0..n-1. Without interlacing x0 is 0, dx 1 and n the width, once per row, top to bottom;
 * with Adam7 each pass hands out its own rows (dx 8, 4, 2 or 1), so every pixel is handed
 * out exactly once by the time decoding succeeds. gray lives only during the call. */
typedef void (*cls_png_row_fn)(void *arg, uint32_t y, uint32_t x0, uint32_t dx,
                               const unsigned char *gray, uint32_t n);

/* cls_png_is_png says whether data starts with the 8-byte PNG signature. */
int cls_png_is_png(const unsigned char *data, size_t len);

/* cls_png_read_header checks the signature and IHDR (its place, length, CRC and fields,
 * each side at most max_side) and fills *h. 0, or -1 with the reason in err. */
int cls_png_read_header(const unsigned char *data, size_t len, uint32_t max_side, cls_png_header *h,
                        char *err, size_t errlen);

/* cls_png_decode decodes the whole file, calling row for the pixels as they are decoded
 * (rows already handed out stay handed out when a later error is found: a caller keeps
 * them aside until this returns 0). stats, when not NULL, is filled in either case.
 * 0, or -1 with the reason in err. */
int cls_png_decode(const unsigned char *data, size_t len, uint32_t max_side, cls_png_row_fn row,
                   void *arg, cls_png_stats *stats, char *err, size_t errlen);

#endif
