/* fuzz_png: libFuzzer target for the classify model's image input (worker/classify:
 * cls_image_decode, and the PNG decoder under it, cls_png_decode). Whatever the bytes, it
 * must not crash, leak, hit undefined behaviour or allocate what the file only claims
 * (-rss_limit_mb), and time must stay bounded by the image's size and the input's length
 * (-timeout), a decompression bomb included. A refusal is -1 with one line starting
 * "image: " and leaves the output untouched.
 *
 * Mutated bytes almost never keep their chunk's CRC, which would stop every input at the
 * first chunk, so each input is also decoded with its CRCs made right (a copy whose
 * chunks' CRC fields are recomputed), which lets the mutations reach the chunk rules,
 * inflate, the filters and the conversions. There the decoder's own promises are checked:
 * every pixel it hands out lies inside the image; a success hands out every pixel exactly
 * once; zlib never wrote more than the image's filtered rows plus one 64-byte buffer; the
 * decoder never allocated more than two rows and one row of gray. A broken rule aborts,
 * which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image.h"
#include "png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule, const char *detail) {
    if (ok) return;
    fprintf(stderr, "fuzz_png: broken rule: %s (%s)\n", rule, detail ? detail : "");
    abort();
}

static void check_image(const uint8_t *data, size_t size) {
    unsigned char out[CLS_PIXELS];
    memset(out, 0x5a, sizeof out);
    char err[256] = "";
    int rc = cls_image_decode(data, size, out, err, sizeof err);
    require(rc == 0 || rc == -1, "cls_image_decode returns 0 or -1", NULL);
    if (rc == 0) return;
    require(strncmp(err, "image: ", 7) == 0 && err[7] != '\0', "a refusal says why", err);
    require(strchr(err, '\n') == NULL, "a refusal is one line", err);
    for (size_t i = 0; i < sizeof out; i++)
        require(out[i] == 0x5a, "a refused image leaves the output untouched", err);
}

/* The pixels handed out, in a bitmap when the image is small enough to keep one. */
typedef struct seen {
    uint32_t w, h;
    uint64_t pixels;
    unsigned char *bits; /* NULL: count only */
    bool twice;
} seen;

static void on_row(void *arg, uint32_t y, uint32_t x0, uint32_t dx, const unsigned char *gray,
                   uint32_t n) {
    seen *s = arg;
    require(y < s->h && n > 0 && dx > 0, "a row inside the image", NULL);
    require(x0 + (uint64_t)(n - 1) * dx < s->w, "a row's pixels inside the image", NULL);
    s->pixels += n;
    if (!s->bits) return;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)y * s->w + x0 + (uint64_t)i * dx;
        if (s->bits[k / 8] & (1u << (k % 8))) s->twice = true;
        s->bits[k / 8] |= (unsigned char)(1u << (k % 8));
        (void)gray[i]; /* readable: ASan checks the row */
    }
}

/* The image's filtered rows, all passes: the most zlib may write for it. */
static uint64_t raw_size(const cls_png_header *h) {
    static const uint8_t adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                        {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    unsigned ch = h->color_type == 2 ? 3 : h->color_type == 4 ? 2 : h->color_type == 6 ? 4 : 1;
    uint64_t bits = (uint64_t)ch * h->bit_depth, total = 0;
    for (int p = 0; p < (h->interlace ? 7 : 1); p++) {
        uint64_t x0 = h->interlace ? adam7[p][0] : 0, y0 = h->interlace ? adam7[p][1] : 0;
        uint64_t dx = h->interlace ? adam7[p][2] : 1, dy = h->interlace ? adam7[p][3] : 1;
        uint64_t pw = h->width > x0 ? (h->width - x0 + dx - 1) / dx : 0;
        uint64_t ph = h->height > y0 ? (h->height - y0 + dy - 1) / dy : 0;
        if (pw && ph) total += ph * (1 + (pw * bits + 7) / 8);
    }
    return total;
}

static void check_png(const uint8_t *data, size_t size) {
    cls_png_header h;
    char err[256] = "";
    if (cls_png_read_header(data, size, CLS_IMAGE_MAX_SIDE, &h, err, sizeof err) < 0) {
        require(strncmp(err, "PNG", 3) == 0, "a PNG refusal starts with PNG", err);
        return;
    }
    seen s = {.w = h.width, .h = h.height};
    uint64_t area = (uint64_t)h.width * h.height;
    if (area <= (1u << 20)) {
        s.bits = calloc(1, (size_t)(area + 7) / 8);
        require(s.bits != NULL, "memory for the bitmap", NULL);
    }
    cls_png_stats st;
    int rc = cls_png_decode(data, size, CLS_IMAGE_MAX_SIDE, on_row, &s, &st, err, sizeof err);
    free(s.bits);
    require(!s.twice, "no pixel is handed out twice", NULL);
    require(s.pixels <= area, "no more pixels than the image has", NULL);
    require(st.inflated <= raw_size(&h) + 64, "inflating stops at the image's end", NULL);
    unsigned ch = h.color_type == 2 ? 3 : h.color_type == 4 ? 2 : h.color_type == 6 ? 4 : 1;
    uint64_t row = 1 + ((uint64_t)h.width * ch * h.bit_depth + 7) / 8;
    require(st.allocated <= 2 * row + h.width, "memory bounded by a row", NULL);
    if (rc == 0) {
        require(s.pixels == area, "a decoded image hands out every pixel", NULL);
    } else {
        require(rc == -1 && strncmp(err, "PNG", 3) == 0 && !strchr(err, '\n'),
                "a PNG refusal is one line starting with PNG", err);
    }
}

/* A copy of data whose chunks (as far as their lengths say they go) carry right CRCs. */
static uint8_t *fix_crcs(const uint8_t *data, size_t size) {
    uint8_t *c = malloc(size ? size : 1);
    require(c != NULL, "memory for the copy", NULL);
    memcpy(c, data, size);
    size_t pos = CLS_PNG_SIGNATURE_LEN;
    while (size >= 12 && pos <= size - 12) {
        uint32_t len = (uint32_t)c[pos] << 24 | (uint32_t)c[pos + 1] << 16 |
                       (uint32_t)c[pos + 2] << 8 | c[pos + 3];
        if (len > size - 12 - pos) break;
        uint32_t crc = (uint32_t)crc32(0L, c + pos + 4, len + 4);
        uint8_t *q = c + pos + 8 + len;
        q[0] = (uint8_t)(crc >> 24), q[1] = (uint8_t)(crc >> 16), q[2] = (uint8_t)(crc >> 8),
        q[3] = (uint8_t)crc;
        pos += 12 + (size_t)len;
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_image(data, size);
    if (!cls_png_is_png(data, size)) return 0;
    uint8_t *fixed = fix_crcs(data, size);
    check_png(fixed, size);
    check_image(fixed, size);
    free(fixed);
    return 0;
}
