/* image.c: one image to the classify model's 28x28 gray pixels (image.h). */
#include "image.h"

#include <stdint.h>
#include <string.h>

#include "fleet/err.h"
#include "png.h"

/* ------------------------------------------------------------ area averaging -------- */

/* Fitting a w x h image into ow x oh pixels. Along x, source pixel i covers
 * [i * ow, (i + 1) * ow) and output pixel o covers [o * w, (o + 1) * w), in units of
 * 1 / (w * ow) of the image's width: both add up to w * ow, the overlaps are whole
 * numbers, and since ow <= w a source pixel meets at most two output pixels: xo[i] and
 * xo[i] + 1, with weights xw[i] and ow - xw[i]. The same holds along y, computed per row.
 * Each output pixel then gathers weights adding up to w * h, so its mean is exact integer
 * arithmetic (at most 255 * 4096 * 4096 < 2^64). Pixels arrive in any order (Adam7 passes
 * too), so nothing but this and one row is kept. */
typedef struct fit {
    uint32_t w, h, ow, oh;
    uint8_t xo[CLS_IMAGE_MAX_SIDE], xw[CLS_IMAGE_MAX_SIDE];
    uint32_t rowacc[CLS_SIDE + 1];
    uint64_t acc[CLS_SIDE + 1][CLS_SIDE];
} fit;

/* round(side * 28 / longest), at least 1 */
static uint32_t fit_side(uint32_t side, uint32_t longest) {
    uint32_t s = (uint32_t)(((uint64_t)side * CLS_SIDE + longest / 2) / longest);
    return s ? s : 1;
}

static void fit_init(fit *f, uint32_t w, uint32_t h) {
    memset(f, 0, sizeof *f);
    uint32_t longest = w > h ? w : h;
    f->w = w;
    f->h = h;
    f->ow = fit_side(w, longest);
    f->oh = fit_side(h, longest);
    for (uint32_t i = 0; i < w; i++) {
        uint32_t start = i * f->ow, o = start / w, edge = (o + 1) * w, end = start + f->ow;
        f->xo[i] = (uint8_t)o;
        f->xw[i] = (uint8_t)((end < edge ? end : edge) - start);
    }
}

static void fit_row(void *arg, uint32_t y, uint32_t x0, uint32_t dx, const unsigned char *gray,
                    uint32_t n) {
    fit *f = arg;
    memset(f->rowacc, 0, sizeof f->rowacc);
    for (uint32_t k = 0, x = x0; k < n; k++, x += dx) {
        uint32_t o = f->xo[x], a = f->xw[x];
        f->rowacc[o] += gray[k] * a;
        f->rowacc[o + 1] += gray[k] * (f->ow - a);
    }
    uint32_t start = y * f->oh, oy = start / f->h, edge = (oy + 1) * f->h, end = start + f->oh;
    uint64_t wy0 = (end < edge ? end : edge) - start, wy1 = f->oh - wy0;
    for (uint32_t ox = 0; ox < f->ow; ox++) {
        f->acc[oy][ox] += f->rowacc[ox] * wy0;
        f->acc[oy + 1][ox] += f->rowacc[ox] * wy1;
    }
}

static void fit_out(const fit *f, unsigned char out[CLS_PIXELS]) {
    uint64_t area = (uint64_t)f->w * f->h;
    uint32_t top = (CLS_SIDE - f->oh) / 2, left = (CLS_SIDE - f->ow) / 2;
    memset(out, 0, CLS_PIXELS);
    for (uint32_t oy = 0; oy < f->oh; oy++)
        for (uint32_t ox = 0; ox < f->ow; ox++)
            out[(top + oy) * CLS_SIDE + left + ox] = (unsigned char)((f->acc[oy][ox] + area / 2) /
                                                                     area);
}

/* ------------------------------------------------------------ the input ------------- */

static int png_image(const unsigned char *data, size_t len, unsigned char out[CLS_PIXELS],
                     char *err, size_t errlen) {
    char why[256];
    cls_png_header h;
    if (cls_png_read_header(data, len, CLS_IMAGE_MAX_SIDE, &h, why, sizeof why) < 0)
        return fleet_err(err, errlen, "image: %s", why);
    if (h.width < CLS_SIDE || h.height < CLS_SIDE)
        return fleet_err(err, errlen,
                         "image: PNG is %ux%u; classify needs at least %d pixels on each side",
                         (unsigned)h.width, (unsigned)h.height, CLS_SIDE);
    fit f;
    fit_init(&f, h.width, h.height);
    if (cls_png_decode(data, len, CLS_IMAGE_MAX_SIDE, fit_row, &f, NULL, why, sizeof why) < 0)
        return fleet_err(err, errlen, "image: %s", why);
    fit_out(&f, out);
    return 0;
}

int cls_image_decode(const unsigned char *data, size_t len, unsigned char out[CLS_PIXELS],
                     char *err, size_t errlen) {
    if (cls_png_is_png(data, len)) return png_image(data, len, out, err, errlen);
    if (len >= 4 && len < CLS_PNG_SIGNATURE_LEN && memcmp(data, "\x89PNG", 4) == 0)
        return fleet_err(err, errlen, "image: PNG is truncated (it ends inside its signature)");
    if (len == CLS_PIXELS) {
        memcpy(out, data, CLS_PIXELS);
        return 0;
    }
    return fleet_err(err, errlen, "image: %zu byte%s is neither a PNG nor %d raw pixels (%dx%d)",
                     len, len == 1 ? "" : "s", CLS_PIXELS, CLS_SIDE, CLS_SIDE);
}
