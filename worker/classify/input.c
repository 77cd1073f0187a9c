/* input.c: the classify model's job input to pixels (input.h). */
#include "input.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/err.h"
#include "fleet/msgpack_wire.h"

#define SHAPE_ERROR                                                                              \
    "input must be {\"image\": \"<base64 of a PNG or of 784 raw bytes>\"} (msgpack: bin), or a " \
    "multipart form with one file part"

/* ------------------------------------------------------------ msgpack --------------- */

/* Refuses what is not one map before msgpack-c sees it: fleet_msgpack_check (libfleet's
 * codec, the walk the gateway's codec does too) checks every size a header declares
 * against the bytes present and the nesting against msgpack-c's stack, because msgpack-c
 * reserves memory for the entries a header declares before it has seen them. Returns 0,
 * or -1 with the reason. */
static int check_msgpack(const unsigned char *p, size_t len, char *err, size_t errlen) {
    char e[160];
    if (len == 0) return fleet_err(err, errlen, "input is empty; " SHAPE_ERROR);
    if (!((p[0] >= 0x80 && p[0] <= 0x8f) || p[0] == 0xde || p[0] == 0xdf))
        return fleet_err(err, errlen, "input is %s, not a map; " SHAPE_ERROR,
                         fleet_mp_type_name(p[0]));
    if (fleet_msgpack_check((const char *)p, len, e, sizeof e) != 0)
        return fleet_err(err, errlen, "input is not valid msgpack: %s", e);
    return 0;
}

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static int same_key(const msgpack_object *a, const msgpack_object *b) {
    return a->type == MSGPACK_OBJECT_STR && b->type == MSGPACK_OBJECT_STR &&
           a->via.str.size == b->via.str.size &&
           memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *name) {
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, name)) return &map->via.map.ptr[i].val;
    return NULL;
}

/* ------------------------------------------------------------ base64 ---------------- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 text (input.h says what is accepted) into a new buffer. Returns 0, or -1
 * with a message in err. */
static int b64_decode(const char *text, size_t len, unsigned char **out, size_t *outlen, char *err,
                      size_t errlen) {
    size_t start = 0;
    if (len >= 5 && memcmp(text, "data:", 5) == 0) {
        const char *comma = memchr(text, ',', len);
        if (!comma)
            return fleet_err(err, errlen,
                             "input.image: a data: URL needs a ',' before its data "
                             "(\"data:image/png;base64,...\")");
        size_t head = (size_t)(comma - text);
        if (head < 5 + 7 || memcmp(comma - 7, ";base64", 7) != 0)
            return fleet_err(err, errlen, "input.image: a data: URL must be base64 (\";base64,\")");
        start = head + 1;
    }
    /* at most 3 bytes per 4 characters; len < 2^32 (a msgpack str) */
    unsigned char *buf = malloc(len / 4 * 3 + 3);
    if (!buf) return fleet_err(err, errlen, "out of memory reading the input");
    size_t n = 0, pads = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        if (c == '=') {
            pads++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pads) {
            if (pads)
                fleet_err(err, errlen, "input.image is not base64: data after the '=' padding");
            else if (c > 0x20 && c < 0x7f)
                fleet_err(err, errlen,
                          "input.image is not base64: character %zu is '%c' (expected A-Z, a-z, "
                          "0-9, + and /, or - and _)",
                          i, c);
            else fleet_err(err, errlen, "input.image is not base64: byte %zu is 0x%02x", i, c);
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Left-over bits: 0 (complete), 2 or 4 (one or two bytes short of a group, fine);
     * 6 means a single character after the last full group, which encodes nothing. */
    if (pads > 2) {
        fleet_err(err, errlen, "input.image is not base64: it ends in %zu '=' (at most 2)", pads);
        free(buf);
        return -1;
    }
    if (bits == 6) {
        fleet_err(err, errlen, "input.image is not base64: it ends in the middle of a byte");
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* ------------------------------------------------------------ the input ------------- */

/* Finds the image's bytes in the unpacked map o: *bytes (pointing into o, or into *owned,
 * a buffer the caller frees) and *len. Returns 0, or -1 with a message in err. */
static int image_bytes(const msgpack_object *o, const unsigned char **bytes, size_t *len,
                       unsigned char **owned, char *err, size_t errlen) {
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (!key_is(k, "image") && !key_is(k, "files")) {
            if (k->type == MSGPACK_OBJECT_STR) {
                /* The message is one line of valid UTF-8 (it ends up in a JSON problem's
                 * detail and in logs): the name's first 64 bytes, each byte that is not
                 * printable ASCII (a line break, a control, a part of a UTF-8 character
                 * that the cut could split) shown as '?'. */
                char name[65];
                size_t n = k->via.str.size > 64 ? 64 : k->via.str.size;
                for (size_t c = 0; c < n; c++) {
                    unsigned char ch = (unsigned char)k->via.str.ptr[c];
                    name[c] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
                }
                name[n] = '\0';
                return fleet_err(err, errlen, "input: unknown field '%s'; " SHAPE_ERROR, name);
            }
            return fleet_err(err, errlen, "input: a field name is not a string; " SHAPE_ERROR);
        }
        /* a second "image" or "files" would be read by no one: refused, not guessed at */
        for (uint32_t j = 0; j < i; j++)
            if (same_key(&o->via.map.ptr[j].key, k))
                return fleet_err(err, errlen, "input: field '%.*s' appears twice",
                                 (int)k->via.str.size, k->via.str.ptr);
    }
    const msgpack_object *image = map_get(o, "image"), *files = map_get(o, "files");
    if (files && files->type != MSGPACK_OBJECT_ARRAY)
        return fleet_err(err, errlen, "input.files must be an array of file parts");
    /* A form's input object may carry "image" itself; the gateway then appends the form's
     * file parts, none here: "files": [] is no file. */
    if (files && files->via.array.size == 0 && image) files = NULL;
    if (image && files)
        return fleet_err(err, errlen,
                         "input: send the image either as input.image or as a file, not both");
    if (files) {
        if (files->via.array.size != 1)
            return fleet_err(err, errlen,
                             "input: send one image per job (the form has %u file parts)",
                             (unsigned)files->via.array.size);
        const msgpack_object *f = &files->via.array.ptr[0];
        const msgpack_object *b = f->type == MSGPACK_OBJECT_MAP ? map_get(f, "bytes") : NULL;
        if (!b || b->type != MSGPACK_OBJECT_BIN)
            return fleet_err(err, errlen, "input.files[0] must be a file part with its bytes");
        *bytes = (const unsigned char *)b->via.bin.ptr;
        *len = b->via.bin.size;
        if (*len == 0) return fleet_err(err, errlen, "input.files[0] is an empty file");
        return 0;
    }
    if (!image) return fleet_err(err, errlen, SHAPE_ERROR);
    if (image->type == MSGPACK_OBJECT_BIN) {
        *bytes = (const unsigned char *)image->via.bin.ptr;
        *len = image->via.bin.size;
    } else if (image->type == MSGPACK_OBJECT_STR) {
        if (b64_decode(image->via.str.ptr, image->via.str.size, owned, len, err, errlen) != 0)
            return -1;
        *bytes = *owned;
    } else {
        return fleet_err(err, errlen, "input.image must be a base64 string (or msgpack bin)");
    }
    if (*len == 0) return fleet_err(err, errlen, "input.image is empty");
    return 0;
}

int cls_input_decode(const unsigned char *input, size_t len, unsigned char pixels[CLS_PIXELS],
                     char *err, size_t errlen) {
    if (!input) len = 0;
    if (check_msgpack(input, len, err, errlen) != 0) return -1;
    msgpack_unpacked up;
    size_t off = 0;
    unsigned char *owned = NULL;
    const unsigned char *bytes = NULL;
    size_t n = 0;
    int rc = -1;
    msgpack_unpacked_init(&up);
    msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)input, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || up.data.type != MSGPACK_OBJECT_MAP) {
        /* check_msgpack passed, so only memory is left to fail */
        fleet_err(err, errlen, "out of memory reading the input (msgpack-c: %d)", (int)ur);
        goto out;
    }
    if (image_bytes(&up.data, &bytes, &n, &owned, err, errlen) != 0) goto out;
    if (n > CLS_INPUT_MAX_IMAGE_BYTES) {
        fleet_err(err, errlen, "image: %zu bytes; at most %u", n, CLS_INPUT_MAX_IMAGE_BYTES);
        goto out;
    }
    rc = cls_image_decode(bytes, n, pixels, err, errlen);
out:
    free(owned);
    msgpack_unpacked_destroy(&up);
    return rc;
}
