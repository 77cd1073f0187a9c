/* input.h: the classify model's job input, one msgpack map, to the 28x28 gray pixels the
 * network reads. Pure: no I/O, no global state; safe on any bytes (tests/fuzz/
 * fuzz_classify_input.c).
 *
 * Accepted, one image per job:
 *   {"image": <bin>}                   msgpack: the file's bytes
 *   {"image": "<base64>"}              JSON: the file's bytes in base64: standard or
 *                                      URL-safe alphabet, padding optional (at most two
 *                                      '=', nothing but whitespace after them), spaces,
 *                                      tabs and line breaks ignored, an optional
 *                                      "data:<anything>;base64," prefix
 *   {"files": [{"bytes": <bin>, ...}]} a multipart form with one file part (the gateway
 *                                      appends "files" to the form's input object; a form
 *                                      without file parts gives "files": [], which may go
 *                                      with "image")
 * The image bytes then go to cls_image_decode (image.h).
 */
#ifndef CLS_INPUT_H
#define CLS_INPUT_H

#include <stddef.h>

#include "image.h"

#define CLS_INPUT_MAX_IMAGE_BYTES (32u << 20) /* 32 MiB: a 4096x4096 PNG fits */

/* cls_input_decode reads one job's input (len bytes of msgpack) and decodes its image
 * into pixels. Returns 0, or -1 with a one-line message for the user in err; pixels is
 * written only on success. Before msgpack-c unpacks anything, every size the input
 * declares is checked against the bytes present (fleet_mp_read_head), so a 5-byte header
 * claiming 2^32 entries allocates nothing. */
int cls_input_decode(const unsigned char *input, size_t len, unsigned char pixels[CLS_PIXELS],
                     char *err, size_t errlen);

#endif
