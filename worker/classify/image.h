/* image.h: the classify model's input, one image to the 28x28 gray pixels the network
 * reads (worker/classify/png.h decodes PNG). Pure: no I/O, no global state. */
#ifndef CLS_IMAGE_H
#define CLS_IMAGE_H

#include <stddef.h>

#define CLS_SIDE 28
#define CLS_PIXELS (CLS_SIDE * CLS_SIDE) /* 784 */
#define CLS_IMAGE_MAX_SIDE 4096          /* PNG width and height at most this */

/* Decodes one image into 784 gray pixels (0 black .. 255 white), row by row:
 *  - exactly 784 bytes that are not a PNG: raw pixels, taken as they are;
 *  - a PNG (any colour type and bit depth of the PNG spec, interlaced or not): converted
 *    to 8-bit gray (ITU-R BT.601 luma for colour: (299 R + 587 G + 114 B) / 1000, rounded;
 *    16-bit samples keep their high byte; alpha composited over black, since the
 *    model's images are light on a black background; palette looked up), then
 *    28x28 kept as is; a larger image scaled down to fit 28x28 keeping its aspect
 *    ratio (area averaging, so every source pixel counts), centred on black;
 *  - anything else: -1 with a one-line reason for the user in err, e.g. "image: 783 bytes
 *    is neither a PNG nor 784 raw pixels (28x28)", "image: PNG is 20x30; classify needs
 *    at least 28 pixels on each side", "image: PNG: bad CRC in chunk IHDR",
 *    "image: PNG is 5000x10 pixels; at most 4096 on a side".
 *
 * Scaling: a W x H image (larger side M) becomes round(28 W / M) x round(28 H / M) pixels
 * (at least 1 each), each the mean of the source area it covers, partial source pixels
 * weighted by the part they cover, rounded half up; it is placed at column (28 - w) / 2
 * and row (28 - h) / 2, the rest black. out is written only when the call returns 0. */
int cls_image_decode(const unsigned char *data, size_t len, unsigned char out[CLS_PIXELS],
                     char *err, size_t errlen);

#endif
