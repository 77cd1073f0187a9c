/* fuzz_classify_input: libFuzzer target for the classify model's job input
 * (worker/classify/input.c: cls_input_decode, a msgpack map holding an image in bin,
 * base64 or a multipart file part, then the image decoder under it). Whatever the bytes,
 * it must not crash, leak, hit undefined behaviour or allocate what a msgpack header only
 * claims (-rss_limit_mb); a refusal is -1 with one non-empty line and leaves the pixels
 * untouched.
 *
 * Each input is read twice:
 *  - as the job's msgpack itself;
 *  - as an image's bytes B (the input after its first byte, whose bits pick a base64
 *    spelling): {"image": <bin B>}, {"image": "<base64 of B>"} and
 *    {"files": [{"bytes": <bin B>}]} must give the same answer: the same pixels, or the
 *    same refusal (B empty aside, which each shape names in its own words). So every
 *    spelling input.h accepts (URL-safe alphabet, no padding, line breaks, spaces, a
 *    data: prefix) is checked against the bytes it encodes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/msgpack_wire.h"
#include "input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule, const char *detail) {
    if (ok) return;
    fprintf(stderr, "fuzz_classify_input: broken rule: %s (%s)\n", rule, detail ? detail : "");
    abort();
}

typedef struct answer {
    int rc;
    unsigned char pixels[CLS_PIXELS];
    char err[512];
} answer;

static void decode(const unsigned char *in, size_t len, answer *a) {
    memset(a->pixels, 0x5a, sizeof a->pixels);
    a->err[0] = '\0';
    a->rc = cls_input_decode(in, len, a->pixels, a->err, sizeof a->err);
    require(a->rc == 0 || a->rc == -1, "cls_input_decode returns 0 or -1", NULL);
    if (a->rc == 0) return;
    require(a->err[0] != '\0', "a refusal says why", NULL);
    require(strncmp(a->err, "input", 5) == 0 || strncmp(a->err, "image: ", 7) == 0 ||
                strncmp(a->err, "out of memory", 13) == 0,
            "a refusal names the input or the image (or memory)", a->err);
    require(strchr(a->err, '\n') == NULL, "a refusal is one line", a->err);
    for (size_t i = 0; i < sizeof a->pixels; i++)
        require(a->pixels[i] == 0x5a, "a refused input leaves the pixels untouched", a->err);
}

/* base64 of b in one of the spellings input.h accepts, chosen by flags' bits */
static char *b64(const unsigned char *b, size_t n, unsigned flags, size_t *len) {
    const char *alpha = flags & 1
                            ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bool pad = !(flags & 2), lines = flags & 4, data_url = flags & 8, spaces = flags & 16;
    char *o = malloc(32 + (n / 3 + 1) * 4 * 3), *q = o;
    require(o != NULL, "malloc", NULL);
    if (data_url) q += sprintf(q, "data:image/png;base64,");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < n ? b[i + 2] : 0);
        *q++ = alpha[v >> 18];
        if (spaces) *q++ = ' ';
        *q++ = alpha[(v >> 12) & 63];
        if (i + 1 < n || pad) *q++ = i + 1 < n ? alpha[(v >> 6) & 63] : '=';
        if (i + 2 < n || pad) *q++ = i + 2 < n ? alpha[v & 63] : '=';
        if (lines && i % 57 == 54) q += sprintf(q, "\r\n");
    }
    *len = (size_t)(q - o);
    return o;
}

/* {key: value} where value is the str or bin of n bytes at v (files: inside a file part) */
static unsigned char *pack(const char *shape, const void *v, size_t n, bool is_str, size_t *len) {
    unsigned char *o = malloc(n + 64), *q = o;
    require(o != NULL, "malloc", NULL);
    q += fleet_mp_put_map(q, 1);
    if (strcmp(shape, "files") == 0) {
        q += fleet_mp_put_str(q, "files", 5);
        q += fleet_mp_put_array(q, 1);
        q += fleet_mp_put_map(q, 1);
        q += fleet_mp_put_str(q, "bytes", 5);
    } else {
        q += fleet_mp_put_str(q, "image", 5);
    }
    if (is_str) q += fleet_mp_put_str(q, v, n);
    else {
        q += fleet_mp_put_bin_head(q, n);
        memcpy(q, v, n);
        q += n;
    }
    *len = (size_t)(q - o);
    return o;
}

static void same(const answer *a, const answer *b, bool compare_err, const char *which) {
    require(a->rc == b->rc, "every shape of the same bytes gives the same answer", which);
    if (a->rc == 0)
        require(memcmp(a->pixels, b->pixels, CLS_PIXELS) == 0,
                "every shape of the same bytes gives the same pixels", which);
    else if (compare_err) require(strcmp(a->err, b->err) == 0, "the same refusal", which);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static answer raw, as_bin, as_b64, as_file;
    decode(data, size, &raw);
    if (size == 0 || size > CLS_INPUT_MAX_IMAGE_BYTES) return 0;

    const unsigned char *b = data + 1;
    size_t n = size - 1, len;
    unsigned char *in = pack("image", b, n, false, &len);
    decode(in, len, &as_bin);
    free(in);
    char *text = b64(b, n, data[0], &len);
    in = pack("image", text, len, true, &len);
    free(text);
    decode(in, len, &as_b64);
    free(in);
    in = pack("files", b, n, false, &len);
    decode(in, len, &as_file);
    free(in);
    same(&as_bin, &as_b64, n > 0, "base64");
    same(&as_bin, &as_file, n > 0, "multipart");
    return 0;
}
