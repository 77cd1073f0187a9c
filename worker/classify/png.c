/* png.c: the classify model's PNG decoder (png.h says what it accepts and why). */
#include "png.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fleet/err.h"

static const unsigned char png_signature[CLS_PNG_SIGNATURE_LEN] = {0x89, 'P',  'N',  'G',
                                                                   '\r', '\n', 0x1a, '\n'};

/* The largest chunk length the specification allows (2^31 - 1). */
#define PNG_CHUNK_MAX 0x7fffffffu

/* ------------------------------------------------------------ low level ------------- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static bool type_is(const unsigned char *t, const char *name) { return memcmp(t, name, 4) == 0; }

/* A chunk type is four ASCII letters; bit 5 of the first says ancillary (lower case). */
static bool type_valid(const unsigned char *t) {
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(t[i] | 0x20);
        if (c < 'a' || c > 'z') return false;
    }
    return true;
}

static const char *color_name(unsigned ct) {
    switch (ct) {
    case 0: return "grayscale";
    case 2: return "RGB";
    case 3: return "palette";
    case 4: return "grayscale with alpha";
    case 6: return "RGBA";
    default: return "unknown";
    }
}

static unsigned channels_of(unsigned ct) {
    switch (ct) {
    case 2: return 3;
    case 4: return 2;
    case 6: return 4;
    default: return 1;
    }
}

static unsigned luma(unsigned r, unsigned g, unsigned b) {
    return (299 * r + 587 * g + 114 * b + 500) / 1000;
}

/* Over black: what is left of g seen through alpha a. */
static unsigned over_black(unsigned g, unsigned a) { return (g * a + 127) / 255; }

/* ------------------------------------------------------------ chunks ---------------- */

/* One chunk inside the data: its type, its data and where the next one starts. */
typedef struct chunk {
    const unsigned char *type;
    const unsigned char *data;
    uint32_t len;
    size_t next;
} chunk;

/* chunk_at reads the chunk at pos: it lies inside the data and its CRC is right. */
static int chunk_at(const unsigned char *data, size_t len, size_t pos, chunk *c, char *err,
                    size_t errlen) {
    if (pos == len)
        return fleet_err(err, errlen, "PNG is truncated (it ends before its IEND chunk)");
    if (len - pos < 8)
        return fleet_err(err, errlen, "PNG is truncated (it ends inside a chunk header)");
    c->len = be32(data + pos);
    c->type = data + pos + 4;
    if (!type_valid(c->type))
        return fleet_err(err, errlen, "PNG: bad chunk type at byte %zu (not four letters)",
                         pos + 4);
    if (c->len > PNG_CHUNK_MAX)
        return fleet_err(err, errlen, "PNG: chunk %.4s claims %u bytes (at most 2^31-1)", c->type,
                         (unsigned)c->len);
    if (len - pos - 8 < (size_t)c->len + 4)
        return fleet_err(err, errlen, "PNG is truncated (it ends inside chunk %.4s)", c->type);
    c->data = c->type + 4;
    uint32_t want = be32(c->data + c->len);
    uint32_t crc = (uint32_t)crc32(0L, c->type, (uInt)c->len + 4);
    if (crc != want) return fleet_err(err, errlen, "PNG: bad CRC in chunk %.4s", c->type);
    c->next = pos + 8 + (size_t)c->len + 4;
    return 0;
}

int cls_png_is_png(const unsigned char *data, size_t len) {
    return len >= CLS_PNG_SIGNATURE_LEN && memcmp(data, png_signature, CLS_PNG_SIGNATURE_LEN) == 0;
}

static bool depth_allowed(unsigned ct, unsigned depth) {
    switch (ct) {
    case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    default: return depth == 8 || depth == 16;
    }
}

int cls_png_read_header(const unsigned char *data, size_t len, uint32_t max_side, cls_png_header *h,
                        char *err, size_t errlen) {
    if (!cls_png_is_png(data, len)) return fleet_err(err, errlen, "PNG: bad signature (not a PNG)");
    chunk c;
    if (len - CLS_PNG_SIGNATURE_LEN >= 8 && type_valid(data + 12) && !type_is(data + 12, "IHDR"))
        return fleet_err(err, errlen, "PNG: the first chunk is %.4s, not IHDR", data + 12);
    if (chunk_at(data, len, CLS_PNG_SIGNATURE_LEN, &c, err, errlen) < 0) return -1;
    if (!type_is(c.type, "IHDR"))
        return fleet_err(err, errlen, "PNG: the first chunk is %.4s, not IHDR", c.type);
    if (c.len != 13)
        return fleet_err(err, errlen, "PNG: IHDR chunk is %u bytes, not 13", (unsigned)c.len);
    h->width = be32(c.data);
    h->height = be32(c.data + 4);
    h->bit_depth = c.data[8];
    h->color_type = c.data[9];
    h->interlace = c.data[12];
    if (h->width == 0 || h->height == 0)
        return fleet_err(err, errlen, "PNG is %ux%u pixels; each side must be at least 1",
                         (unsigned)h->width, (unsigned)h->height);
    if (h->width > max_side || h->height > max_side)
        return fleet_err(err, errlen, "PNG is %ux%u pixels; at most %u on a side",
                         (unsigned)h->width, (unsigned)h->height, (unsigned)max_side);
    if (h->color_type > 6 || h->color_type == 1 || h->color_type == 5)
        return fleet_err(err, errlen, "PNG: unknown colour type %u", h->color_type);
    if (!depth_allowed(h->color_type, h->bit_depth))
        return fleet_err(err, errlen, "PNG: bit depth %u is not allowed for colour type %u (%s)",
                         h->bit_depth, h->color_type, color_name(h->color_type));
    if (c.data[10] != 0)
        return fleet_err(err, errlen, "PNG: unknown compression method %u", c.data[10]);
    if (c.data[11] != 0) return fleet_err(err, errlen, "PNG: unknown filter method %u", c.data[11]);
    if (h->interlace > 1)
        return fleet_err(err, errlen, "PNG: unknown interlace method %u", h->interlace);
    return 0;
}

/* ------------------------------------------------------------ the decoder ----------- */

/* Adam7: each pass's first column and row and its steps. Pass 0 of a plain image is the
 * whole image (adam7 is not used). */
static const uint8_t adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                    {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

typedef struct dec {
    cls_png_header h;
    cls_png_row_fn row;
    void *arg;
    cls_png_stats *stats;
    char *err;
    size_t errlen;

    unsigned bits; /* bits per pixel */
    unsigned fbpp; /* bytes per complete pixel for the filters, at least 1 */
    unsigned char pal_gray[256];
    unsigned npal; /* palette colours (0: no PLTE) */
    bool plte_seen;
    unsigned char trns[256];
    uint32_t trns_len; /* bytes of a tRNS seen before IDAT; 0: none */
    bool trns_seen;

    /* rows */
    unsigned char *cur, *prev, *gray; /* a filtered row (filter byte first), the previous
                                         one unfiltered, one row of gray pixels */
    int pass;                         /* 0..6 (interlaced) or 0 */
    uint32_t pass_x0, pass_y0, pass_dx, pass_dy, pass_w, pass_h, pass_row;
    size_t rowbytes, filled;
    uint64_t rows_done_n;
    bool rows_done;

    /* zlib */
    z_stream zs;
    bool z_init, z_end, extra; /* extra: output past the image was seen; no more inflating */
} dec;

static int dec_fail(dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dec_fail(dec *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fleet_verr(d->err, d->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void *dec_alloc(dec *d, size_t n) {
    void *p = calloc(1, n);
    if (p && d->stats) d->stats->allocated += n;
    return p;
}

/* Sets up pass p's geometry; false when the pass is empty (Adam7 on a small image). */
static bool pass_setup(dec *d, int p) {
    d->pass = p;
    if (d->h.interlace) {
        uint32_t x0 = adam7[p][0], y0 = adam7[p][1], dx = adam7[p][2], dy = adam7[p][3];
        d->pass_x0 = x0;
        d->pass_y0 = y0;
        d->pass_dx = dx;
        d->pass_dy = dy;
        d->pass_w = d->h.width > x0 ? (d->h.width - x0 + dx - 1) / dx : 0;
        d->pass_h = d->h.height > y0 ? (d->h.height - y0 + dy - 1) / dy : 0;
    } else {
        d->pass_x0 = d->pass_y0 = 0;
        d->pass_dx = d->pass_dy = 1;
        d->pass_w = d->h.width;
        d->pass_h = d->h.height;
    }
    d->pass_row = 0;
    d->filled = 0;
    if (d->pass_w == 0 || d->pass_h == 0) return false;
    d->rowbytes = 1 + ((size_t)d->pass_w * d->bits + 7) / 8;
    memset(d->prev, 0, d->rowbytes);
    return true;
}

/* Moves to the next non-empty pass, or marks the image complete. */
static void pass_next(dec *d) {
    int last = d->h.interlace ? 6 : 0;
    for (int p = d->pass + 1; p <= last; p++)
        if (pass_setup(d, p)) return;
    d->rows_done = true;
}

static unsigned char paeth(unsigned char a, unsigned char b, unsigned char c) {
    int p = (int)a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

static int unfilter(dec *d) {
    unsigned char *r = d->cur + 1;
    const unsigned char *u = d->prev + 1;
    size_t n = d->rowbytes - 1, bpp = d->fbpp;
    switch (d->cur[0]) {
    case 0: break;
    case 1:
        for (size_t i = bpp; i < n; i++) r[i] = (unsigned char)(r[i] + r[i - bpp]);
        break;
    case 2:
        for (size_t i = 0; i < n; i++) r[i] = (unsigned char)(r[i] + u[i]);
        break;
    case 3:
        for (size_t i = 0; i < n; i++)
            r[i] = (unsigned char)(r[i] + (((i >= bpp ? r[i - bpp] : 0) + u[i]) >> 1));
        break;
    case 4:
        for (size_t i = 0; i < n; i++)
            r[i] = (unsigned char)(r[i] + paeth(i >= bpp ? r[i - bpp] : 0, u[i],
                                                i >= bpp ? u[i - bpp] : 0));
        break;
    default:
        if (d->h.interlace)
            return dec_fail(d, "PNG: unknown filter type %u in row %u of interlace pass %d",
                            d->cur[0], (unsigned)d->pass_row + 1, d->pass + 1);
        return dec_fail(d, "PNG: unknown filter type %u in row %u", d->cur[0],
                        (unsigned)d->pass_row + 1);
    }
    return 0;
}

/* Sample i (0-based, across the row) of depth < 8 from packed bytes, most significant
 * bits first. */
static unsigned small_sample(const unsigned char *r, size_t i, unsigned depth) {
    size_t bit = i * depth;
    unsigned shift = 8 - depth - (unsigned)(bit & 7);
    return (r[bit >> 3] >> shift) & ((1u << depth) - 1);
}

/* Converts the unfiltered row in cur to gray. */
static int to_gray(dec *d) {
    const unsigned char *r = d->cur + 1;
    unsigned char *g = d->gray;
    uint32_t n = d->pass_w;
    unsigned depth = d->h.bit_depth;
    bool key = d->trns_seen;
    switch (d->h.color_type) {
    case 0: {
        unsigned k = key ? be16(d->trns) : 0;
        for (uint32_t i = 0; i < n; i++) {
            unsigned v, out;
            if (depth == 16) {
                v = be16(r + 2 * (size_t)i);
                out = v >> 8;
            } else if (depth == 8) {
                v = out = r[i];
            } else {
                v = small_sample(r, i, depth);
                out = v * (depth == 1 ? 255 : depth == 2 ? 85 : 17);
            }
            g[i] = (unsigned char)(key && v == k ? 0 : out);
        }
        break;
    }
    case 2:
        for (uint32_t i = 0; i < n; i++) {
            unsigned R, G, B;
            if (depth == 16) {
                const unsigned char *p = r + 6 * (size_t)i;
                if (key && memcmp(p, d->trns, 6) == 0) {
                    g[i] = 0;
                    continue;
                }
                R = p[0], G = p[2], B = p[4];
            } else {
                const unsigned char *p = r + 3 * (size_t)i;
                R = p[0], G = p[1], B = p[2];
                if (key && R == be16(d->trns) && G == be16(d->trns + 2) && B == be16(d->trns + 4)) {
                    g[i] = 0;
                    continue;
                }
            }
            g[i] = (unsigned char)luma(R, G, B);
        }
        break;
    case 3:
        for (uint32_t i = 0; i < n; i++) {
            unsigned v = depth == 8 ? r[i] : small_sample(r, i, depth);
            if (v >= d->npal)
                return dec_fail(d,
                                "PNG: palette index %u out of range (the palette has %u colours)",
                                v, d->npal);
            g[i] = d->pal_gray[v];
        }
        break;
    case 4:
        for (uint32_t i = 0; i < n; i++) {
            size_t s = depth == 16 ? 4 : 2;
            const unsigned char *p = r + s * i;
            g[i] = (unsigned char)over_black(p[0], p[s / 2]);
        }
        break;
    case 6:
        for (uint32_t i = 0; i < n; i++) {
            size_t s = depth == 16 ? 8 : 4, c = s / 4;
            const unsigned char *p = r + s * i;
            g[i] = (unsigned char)over_black(luma(p[0], p[c], p[2 * c]), p[3 * c]);
        }
        break;
    }
    return 0;
}

/* One filtered row is complete in cur: unfilter, hand out, move on. */
static int row_complete(dec *d) {
    if (unfilter(d) < 0 || to_gray(d) < 0) return -1;
    d->row(d->arg, d->pass_y0 + d->pass_row * d->pass_dy, d->pass_x0, d->pass_dx, d->gray,
           d->pass_w);
    d->rows_done_n++;
    unsigned char *t = d->prev;
    d->prev = d->cur;
    d->cur = t;
    d->filled = 0;
    if (++d->pass_row == d->pass_h) pass_next(d);
    return 0;
}

static int z_fail(dec *d, int rc) {
    if (rc == Z_MEM_ERROR) return dec_fail(d, "PNG: out of memory");
    if (rc == Z_NEED_DICT)
        return dec_fail(
            d, "PNG: image data is corrupt (its zlib stream asks for a preset dictionary)");
    return dec_fail(d, "PNG: image data is corrupt (zlib: %s)",
                    d->zs.msg ? d->zs.msg : "bad stream");
}

static int rows_short(dec *d) {
    if (d->h.interlace)
        return dec_fail(d, "PNG: image data ends early (in interlace pass %d of 7)", d->pass + 1);
    return dec_fail(d, "PNG: image data ends early (after %u of %u rows)", (unsigned)d->rows_done_n,
                    (unsigned)d->h.height);
}

/* Inflates one IDAT's data: rows while the image needs them; after its last row, only
 * enough to meet the stream's end (the first extra byte stops inflating for good). */
static int feed(dec *d, const unsigned char *p, uint32_t n) {
    d->zs.next_in = (unsigned char *)p;
    d->zs.avail_in = n;
    for (;;) {
        if (d->z_end || d->extra) return 0;
        unsigned char scratch[64];
        if (d->rows_done) {
            d->zs.next_out = scratch;
            d->zs.avail_out = sizeof scratch;
        } else {
            d->zs.next_out = d->cur + d->filled;
            d->zs.avail_out = (uInt)(d->rowbytes - d->filled);
        }
        uInt in0 = d->zs.avail_in, out0 = d->zs.avail_out;
        int rc = inflate(&d->zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return z_fail(d, rc);
        uInt wrote = out0 - d->zs.avail_out;
        if (d->stats) d->stats->inflated += wrote;
        if (d->rows_done) {
            if (wrote > 0) d->extra = true;
        } else {
            d->filled += wrote;
            if (d->filled == d->rowbytes && row_complete(d) < 0) return -1;
        }
        if (rc == Z_STREAM_END) {
            d->z_end = true;
            if (!d->rows_done) return rows_short(d);
            return 0;
        }
        bool progress = wrote > 0 || d->zs.avail_in != in0;
        if (!progress) return 0; /* inflate wants more input */
        if (d->zs.avail_in == 0 && d->zs.avail_out > 0) return 0;
    }
}

/* At the first IDAT: the palette's gray table, the row buffers and the zlib stream. */
static int idat_start(dec *d) {
    const cls_png_header *h = &d->h;
    if (h->color_type == 3 && !d->plte_seen)
        return dec_fail(d, "PNG: no PLTE chunk before the image data (a palette image needs one)");
    /* tRNS that this image cannot use is skipped (png.h). */
    if (d->trns_len > 0) {
        if (h->color_type == 0) d->trns_seen = d->trns_len == 2;
        if (h->color_type == 2) d->trns_seen = d->trns_len == 6;
        if (h->color_type == 3) d->trns_seen = d->trns_len <= d->npal;
    }
    if (h->color_type == 3 && d->trns_seen)
        for (uint32_t i = 0; i < d->trns_len; i++)
            d->pal_gray[i] = (unsigned char)over_black(d->pal_gray[i], d->trns[i]);
    if (h->color_type == 3) d->trns_seen = false; /* folded into pal_gray */
    d->bits = channels_of(h->color_type) * h->bit_depth;
    d->fbpp = d->bits >= 8 ? d->bits / 8 : 1;
    /* The widest row of any pass is the image's; width <= max_side bounds it. */
    size_t rowmax = 1 + ((size_t)h->width * d->bits + 7) / 8;
    d->cur = dec_alloc(d, rowmax);
    d->prev = dec_alloc(d, rowmax);
    d->gray = dec_alloc(d, h->width);
    if (!d->cur || !d->prev || !d->gray) return dec_fail(d, "PNG: out of memory");
    if (inflateInit(&d->zs) != Z_OK) return dec_fail(d, "PNG: out of memory");
    d->z_init = true;
    d->pass = -1;
    pass_next(d);
    return 0;
}

/* The chunks after IHDR, to IEND. */
static int dec_chunks(dec *d, const unsigned char *data, size_t len, size_t pos) {
    bool idat_seen = false, idat_over = false;
    for (;;) {
        chunk c;
        if (chunk_at(data, len, pos, &c, d->err, d->errlen) < 0) return -1;
        pos = c.next;
        bool is_idat = type_is(c.type, "IDAT");
        if (idat_seen && !is_idat) idat_over = true;
        if (is_idat) {
            if (idat_over)
                return dec_fail(
                    d, "PNG: IDAT chunks are not consecutive (another chunk comes between them)");
            if (!idat_seen && idat_start(d) < 0) return -1;
            idat_seen = true;
            if (feed(d, c.data, c.len) < 0) return -1;
        } else if (type_is(c.type, "IEND")) {
            if (c.len != 0) return dec_fail(d, "PNG: IEND chunk is not empty");
            if (!idat_seen) return dec_fail(d, "PNG: no image data (IDAT chunk)");
            if (!d->rows_done) return rows_short(d);
            if (!d->z_end && !d->extra)
                return dec_fail(d, "PNG: image data is truncated (its zlib stream does not end)");
            return 0;
        } else if (type_is(c.type, "IHDR")) {
            return dec_fail(d, "PNG: more than one IHDR chunk");
        } else if (type_is(c.type, "PLTE")) {
            if (idat_seen) return dec_fail(d, "PNG: PLTE chunk after the image data");
            if (d->plte_seen) return dec_fail(d, "PNG: more than one PLTE chunk");
            if (d->h.color_type == 0 || d->h.color_type == 4)
                return dec_fail(d, "PNG: PLTE chunk in a %s image", color_name(d->h.color_type));
            if (c.len == 0 || c.len % 3 != 0 || c.len > 768)
                return dec_fail(d, "PNG: PLTE chunk is %u bytes (3 per colour, 1 to 256 colours)",
                                (unsigned)c.len);
            d->plte_seen = true;
            if (d->h.color_type == 3) {
                unsigned n = c.len / 3;
                if (n > 1u << d->h.bit_depth)
                    return dec_fail(d, "PNG: PLTE has %u colours; at most %u for bit depth %u", n,
                                    1u << d->h.bit_depth, d->h.bit_depth);
                d->npal = n;
                for (unsigned i = 0; i < n; i++)
                    d->pal_gray[i] = (unsigned char)luma(c.data[3 * i], c.data[3 * i + 1],
                                                         c.data[3 * i + 2]);
            } /* RGB and RGBA: a suggested palette, not needed */
        } else if (type_is(c.type, "tRNS")) {
            /* Only before IDAT and at most 256 bytes can it be well formed. */
            if (!idat_seen && d->trns_len == 0 && c.len > 0 && c.len <= sizeof d->trns) {
                memcpy(d->trns, c.data, c.len);
                d->trns_len = c.len;
            }
        } else if (!(c.type[0] & 0x20)) {
            return dec_fail(d, "PNG: unknown critical chunk %.4s", c.type);
        } /* other ancillary chunks: skipped */
    }
}

int cls_png_decode(const unsigned char *data, size_t len, uint32_t max_side, cls_png_row_fn row,
                   void *arg, cls_png_stats *stats, char *err, size_t errlen) {
    dec d;
    memset(&d, 0, sizeof d);
    d.row = row;
    d.arg = arg;
    d.stats = stats;
    d.err = err;
    d.errlen = errlen;
    if (stats) memset(stats, 0, sizeof *stats);
    if (cls_png_read_header(data, len, max_side, &d.h, err, errlen) < 0) return -1;
    int rc = dec_chunks(&d, data, len, CLS_PNG_SIGNATURE_LEN + 8 + 13 + 4);
    if (d.z_init) inflateEnd(&d.zs);
    free(d.cur);
    free(d.prev);
    free(d.gray);
    return rc;
}
