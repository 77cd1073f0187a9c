/* classify_input_test: the classify model's job input (worker/classify/input.c): every
 * shape a job's msgpack may take, every base64 spelling, and every refusal, each
 * message checked word for word with the pixels left untouched.
 *
 * Inputs are written with libfleet's msgpack writers (fleet/msgpack_wire.h), so a test
 * can also write what no encoder would: truncated values, sizes the bytes cannot back,
 * bytes after the map. A decoded image of the wrong size is refused by the image decoder
 * with its length ("image: 2 bytes is neither ..."), which is how the base64 cases see how
 * many bytes a spelling decoded to without a PNG. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/msgpack_wire.h"
#include "input.h"
#include "testlib.h"
#include "tl_png.h"

/* ------------------------------------------------------------ writing inputs -------- */

static void map(tl_bytes *b, uint64_t n) {
    unsigned char h[9];
    tl_bytes_put(b, h, fleet_mp_put_map(h, n));
}

static void arr(tl_bytes *b, uint64_t n) {
    unsigned char h[9];
    tl_bytes_put(b, h, fleet_mp_put_array(h, n));
}

static void str(tl_bytes *b, const char *s) {
    size_t n = strlen(s);
    unsigned char *h = tl_alloc(n + 9);
    tl_bytes_put(b, h, fleet_mp_put_str(h, s, n));
}

static void bin(tl_bytes *b, const void *d, size_t n) {
    unsigned char h[9];
    tl_bytes_put(b, h, fleet_mp_put_bin_head(h, n));
    tl_bytes_put(b, d, n);
}

/* {"image": "<text>"} */
static tl_bytes image_str(const char *text) {
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    str(&b, text);
    return b;
}

/* standard base64 with padding */
static char *b64(const unsigned char *d, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = tl_alloc(n / 3 * 4 + 5), *q = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        *q++ = a[v >> 18];
        *q++ = a[(v >> 12) & 63];
        *q++ = i + 1 < n ? a[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? a[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

/* 784 raw pixels, every value of 0..255 present, first byte not PNG's 0x89 */
static const unsigned char *raw_image(void) {
    unsigned char *p = tl_alloc(CLS_PIXELS);
    for (size_t i = 0; i < CLS_PIXELS; i++) p[i] = (unsigned char)(i * 7 + 3);
    return p;
}

/* ------------------------------------------------------------ checks ---------------- */

static unsigned char pixels[CLS_PIXELS];
static char err[512];

static int decode(tl_bytes b) {
    memset(pixels, 0xaa, sizeof pixels);
    snprintf(err, sizeof err, "(none)");
    return cls_input_decode(b.p, b.n, pixels, err, sizeof err);
}

#define ASSERT_IMAGE(b)                                            \
    do {                                                           \
        if (decode(b) != 0) FAILF("refused: %s", err);             \
        ASSERT_TRUE(memcmp(pixels, raw_image(), CLS_PIXELS) == 0); \
    } while (0)

static void untouched(void) {
    for (size_t i = 0; i < CLS_PIXELS; i++)
        if (pixels[i] != 0xaa) FAILF("pixel %zu written by a refused input", i);
}

#define ASSERT_REFUSED(b, msg)        \
    do {                              \
        ASSERT_EQ_INT(decode(b), -1); \
        ASSERT_EQ_STR(err, msg);      \
        untouched();                  \
    } while (0)

#define SHAPE                                                                                    \
    "input must be {\"image\": \"<base64 of a PNG or of 784 raw bytes>\"} (msgpack: bin), or a " \
    "multipart form with one file part"

/* the image decoder's refusal of n decoded bytes: how the base64 cases read their length */
static const char *bytes_msg(size_t n) {
    return tl_printf("image: %zu byte%s is neither a PNG nor 784 raw pixels (28x28)", n,
                     n == 1 ? "" : "s");
}

#define TRUNCATED "input is not valid msgpack: truncated msgpack data"

/* ------------------------------------------------------------ cases ----------------- */

TL_TEST(raw_bytes_in_bin_and_base64_agree) {
    const unsigned char *img = raw_image();
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    bin(&b, img, CLS_PIXELS);
    ASSERT_IMAGE(b);

    char *std = b64(img, CLS_PIXELS); /* 784 = 3 * 261 + 1: ends in "==" */
    size_t n = strlen(std);
    ASSERT_EQ_INT(n, 1048);
    ASSERT_EQ_STR(std + n - 2, "==");
    ASSERT_NOT_NULL(strchr(std, '+'));
    ASSERT_NOT_NULL(strchr(std, '/'));
    ASSERT_IMAGE(image_str(std));

    char *nopad = tl_printf("%.*s", (int)(n - 2), std);
    ASSERT_IMAGE(image_str(nopad));

    char *url = tl_printf("%s", nopad);
    for (char *c = url; *c; c++) *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    ASSERT_IMAGE(image_str(url));

    /* MIME's 76-character lines with CRLF, spaces and tabs anywhere */
    tl_bytes wrapped = {0};
    for (size_t i = 0; i < n; i += 76) {
        tl_bytes_put(&wrapped, std + i, n - i < 76 ? n - i : 76);
        tl_bytes_put(&wrapped, i % 152 ? "\r\n" : " \t\n", i % 152 ? 2 : 3);
    }
    tl_bytes_put(&wrapped, "", 1);
    ASSERT_IMAGE(image_str((char *)wrapped.p));

    ASSERT_IMAGE(image_str(tl_printf("data:image/png;base64,%s", std)));
    ASSERT_IMAGE(image_str(tl_printf("data:;base64,%s", url)));
}

TL_TEST(base64_padding) {
    ASSERT_REFUSED(image_str("QUI="), bytes_msg(2));
    ASSERT_REFUSED(image_str("QUI"), bytes_msg(2));
    ASSERT_REFUSED(image_str("QQ=="), bytes_msg(1));
    ASSERT_REFUSED(image_str("QQ"), bytes_msg(1));
    ASSERT_REFUSED(image_str("QQ=\n= "), bytes_msg(1));
    ASSERT_REFUSED(image_str("QUJD"), bytes_msg(3));
    ASSERT_REFUSED(image_str("QQ==="), "input.image is not base64: it ends in 3 '=' (at most 2)");
    ASSERT_REFUSED(image_str("===="), "input.image is not base64: it ends in 4 '=' (at most 2)");
    ASSERT_REFUSED(image_str("QQ==QQ=="), "input.image is not base64: data after the '=' padding");
    ASSERT_REFUSED(image_str("QU=JD"), "input.image is not base64: data after the '=' padding");
    /* one character after the last group of four encodes 6 bits: no byte */
    ASSERT_REFUSED(image_str("QUJDR"),
                   "input.image is not base64: it ends in the middle of a byte");
    ASSERT_REFUSED(image_str("R"), "input.image is not base64: it ends in the middle of a byte");
    ASSERT_REFUSED(image_str(""), "input.image is empty");
    ASSERT_REFUSED(image_str("="), "input.image is empty");
    ASSERT_REFUSED(image_str(" \r\n"), "input.image is empty");
}

TL_TEST(base64_bad_characters) {
    ASSERT_REFUSED(image_str("QU!D"), "input.image is not base64: character 2 is '!' (expected "
                                      "A-Z, a-z, 0-9, + and /, or - and _)");
    ASSERT_REFUSED(image_str("QU\x01"
                             "D"),
                   "input.image is not base64: byte 2 is 0x01");
    ASSERT_REFUSED(image_str("QU\xc3\xa9"), "input.image is not base64: byte 2 is 0xc3");
    /* "data" without its colon is plain base64 (3 bytes); with it, a ':' is no base64 */
    ASSERT_REFUSED(image_str("data"), bytes_msg(3));
    ASSERT_REFUSED(image_str("dat:"), "input.image is not base64: character 3 is ':' (expected "
                                      "A-Z, a-z, 0-9, + and /, or - and _)");
}

TL_TEST(data_urls) {
    ASSERT_REFUSED(image_str("data:image/png;base64,QUI="), bytes_msg(2));
    ASSERT_REFUSED(image_str("data:;base64,QQ"), bytes_msg(1));
    ASSERT_REFUSED(image_str("data:image/png,QUI="),
                   "input.image: a data: URL must be base64 (\";base64,\")");
    ASSERT_REFUSED(image_str("data:,QUI="),
                   "input.image: a data: URL must be base64 (\";base64,\")");
    /* ";base64" must be the data: URL's own, not "data:" read twice */
    ASSERT_REFUSED(image_str("data:base64,QUI="),
                   "input.image: a data: URL must be base64 (\";base64,\")");
    ASSERT_REFUSED(image_str("data:QUI="), "input.image: a data: URL needs a ',' before its data "
                                           "(\"data:image/png;base64,...\")");
    ASSERT_REFUSED(image_str("data:image/png;base64,"), "input.image is empty");
}

TL_TEST(image_bin_or_str) {
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    bin(&b, "AB", 2);
    ASSERT_REFUSED(b, bytes_msg(2)); /* bin is taken as bytes, not read as base64 */

    tl_bytes e = {0};
    map(&e, 1);
    str(&e, "image");
    bin(&e, "", 0);
    ASSERT_REFUSED(e, "input.image is empty");

    const unsigned char others[] = {0xc0, 0xc3, 0x05, 0xcb, 0x90, 0x80};
    for (size_t i = 0; i < sizeof others; i++) {
        tl_bytes o = {0};
        map(&o, 1);
        str(&o, "image");
        if (others[i] == 0xcb) tl_bytes_put(&o, "\xcb\0\0\0\0\0\0\0\0", 9);
        else tl_bytes_put(&o, &others[i], 1);
        ASSERT_REFUSED(o, "input.image must be a base64 string (or msgpack bin)");
    }
}

/* a file part as the gateway writes it: {name, content_type, size, bytes} */
static void file_part(tl_bytes *b, const void *d, size_t n) {
    map(b, 4);
    str(b, "name");
    str(b, "file");
    str(b, "content_type");
    str(b, "application/octet-stream");
    str(b, "size");
    unsigned char h[9];
    tl_bytes_put(b, h, fleet_mp_put_uint(h, n));
    str(b, "bytes");
    bin(b, d, n);
}

TL_TEST(multipart_files) {
    const unsigned char *img = raw_image();
    tl_bytes one = {0};
    map(&one, 1);
    str(&one, "files");
    arr(&one, 1);
    file_part(&one, img, CLS_PIXELS);
    ASSERT_IMAGE(one);

    tl_bytes none = {0};
    map(&none, 1);
    str(&none, "files");
    arr(&none, 0);
    ASSERT_REFUSED(none, "input: send one image per job (the form has 0 file parts)");

    tl_bytes two = {0};
    map(&two, 1);
    str(&two, "files");
    arr(&two, 2);
    file_part(&two, img, CLS_PIXELS);
    file_part(&two, img, CLS_PIXELS);
    ASSERT_REFUSED(two, "input: send one image per job (the form has 2 file parts)");

    tl_bytes nobytes = {0};
    map(&nobytes, 1);
    str(&nobytes, "files");
    arr(&nobytes, 1);
    map(&nobytes, 1);
    str(&nobytes, "name");
    str(&nobytes, "file");
    ASSERT_REFUSED(nobytes, "input.files[0] must be a file part with its bytes");

    tl_bytes strbytes = {0};
    map(&strbytes, 1);
    str(&strbytes, "files");
    arr(&strbytes, 1);
    map(&strbytes, 1);
    str(&strbytes, "bytes");
    str(&strbytes, "QUI=");
    ASSERT_REFUSED(strbytes, "input.files[0] must be a file part with its bytes");

    tl_bytes notmap = {0};
    map(&notmap, 1);
    str(&notmap, "files");
    arr(&notmap, 1);
    bin(&notmap, img, CLS_PIXELS);
    ASSERT_REFUSED(notmap, "input.files[0] must be a file part with its bytes");

    tl_bytes empty = {0};
    map(&empty, 1);
    str(&empty, "files");
    arr(&empty, 1);
    file_part(&empty, "", 0);
    ASSERT_REFUSED(empty, "input.files[0] is an empty file");

    tl_bytes notarr = {0};
    map(&notarr, 1);
    str(&notarr, "files");
    str(&notarr, "x.png");
    ASSERT_REFUSED(notarr, "input.files must be an array of file parts");
}

TL_TEST(multipart_with_image_in_input) {
    const unsigned char *img = raw_image();
    /* -F input='{"image": "..."}' and no file part: the gateway appends "files": [] */
    tl_bytes b = {0};
    map(&b, 2);
    str(&b, "image");
    str(&b, b64(img, CLS_PIXELS));
    str(&b, "files");
    arr(&b, 0);
    ASSERT_IMAGE(b);

    tl_bytes both = {0};
    map(&both, 2);
    str(&both, "image");
    str(&both, b64(img, CLS_PIXELS));
    str(&both, "files");
    arr(&both, 1);
    file_part(&both, img, CLS_PIXELS);
    ASSERT_REFUSED(both, "input: send the image either as input.image or as a file, not both");
}

TL_TEST(unknown_and_repeated_keys) {
    tl_bytes b = {0};
    map(&b, 2);
    str(&b, "image");
    str(&b, "QUI=");
    str(&b, "picture");
    str(&b, "QUI=");
    ASSERT_REFUSED(b, "input: unknown field 'picture'; " SHAPE);

    tl_bytes only = {0};
    map(&only, 1);
    str(&only, "picture");
    str(&only, "QUI=");
    ASSERT_REFUSED(only, "input: unknown field 'picture'; " SHAPE);

    char longname[100];
    memset(longname, 'k', 99);
    longname[99] = '\0';
    tl_bytes lng = {0};
    map(&lng, 1);
    str(&lng, longname);
    tl_bytes_put(&lng, "\xc0", 1);
    ASSERT_REFUSED(lng, tl_printf("input: unknown field '%.64s'; " SHAPE, longname));

    /* found by fuzz_classify_input: a name's line break went into the message as it was */
    tl_bytes nl = {0};
    map(&nl, 1);
    str(&nl, "pic\nture\r\x01\x7f");
    tl_bytes_put(&nl, "\xc0", 1);
    ASSERT_REFUSED(nl, "input: unknown field 'pic?ture?\?\?'; " SHAPE);
    /* 63 ASCII bytes then "é": a cut at 64 bytes would leave half a character */
    tl_bytes utf = {0};
    map(&utf, 1);
    str(&utf, tl_printf("%.63s\xc3\xa9", longname));
    tl_bytes_put(&utf, "\xc0", 1);
    ASSERT_REFUSED(utf, tl_printf("input: unknown field '%.63s?'; " SHAPE, longname));

    tl_bytes intkey = {0};
    map(&intkey, 1);
    tl_bytes_put(&intkey, "\x01\xc0", 2);
    ASSERT_REFUSED(intkey, "input: a field name is not a string; " SHAPE);

    tl_bytes empty = {0};
    map(&empty, 0);
    ASSERT_REFUSED(empty, SHAPE);

    /* the second image would be the one another reader of the map takes */
    const unsigned char *img = raw_image();
    tl_bytes twice = {0};
    map(&twice, 2);
    str(&twice, "image");
    bin(&twice, img, CLS_PIXELS);
    str(&twice, "image");
    str(&twice, "QUI=");
    ASSERT_REFUSED(twice, "input: field 'image' appears twice");
}

TL_TEST(not_a_map) {
    ASSERT_EQ_INT(cls_input_decode(NULL, 0, pixels, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "input is empty; " SHAPE);
    tl_bytes empty = {0};
    tl_bytes_put(&empty, "", 0);
    memset(pixels, 0xaa, sizeof pixels);
    ASSERT_EQ_INT(cls_input_decode((const unsigned char *)"", 0, pixels, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "input is empty; " SHAPE);
    untouched();

    struct {
        const char *bytes;
        size_t n;
        const char *what;
    } v[] = {
        {"\x91\xc0", 2, "an array"},
        {"\xa3"
         "abc",
         4, "a string"},
        {"\x05", 1, "an integer"},
        {"\xc0", 1, "nil"},
        {"\xc4\x01x", 3, "binary data"},
        {"\xc3", 1, "a boolean"},
        {"\xc1", 1, "an unused byte (0xc1)"},
        {"{\"image\":1}", 11, "an integer"},
    };
    for (size_t i = 0; i < TL_COUNT(v); i++) {
        tl_bytes b = {0};
        tl_bytes_put(&b, v[i].bytes, v[i].n);
        ASSERT_REFUSED(b, tl_printf("input is %s, not a map; " SHAPE, v[i].what));
    }
}

TL_TEST(truncated_at_every_offset) {
    const unsigned char *img = raw_image();
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "files");
    arr(&b, 1);
    file_part(&b, img, CLS_PIXELS);
    ASSERT_IMAGE(b);
    for (size_t n = 1; n < b.n; n++) {
        tl_bytes t = {b.p, n, n};
        ASSERT_REFUSED(t, TRUNCATED);
    }
}

TL_TEST(bytes_after_the_map) {
    const unsigned char *img = raw_image();
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    bin(&b, img, CLS_PIXELS);
    tl_bytes_put(&b, "\xc0", 1);
    ASSERT_REFUSED(b, "input is not valid msgpack: 1 trailing bytes after the msgpack value");
    tl_bytes_put(&b, "\x81\xa1x\xc0", 4);
    ASSERT_REFUSED(b, "input is not valid msgpack: 5 trailing bytes after the msgpack value");

    tl_bytes bad = {0};
    map(&bad, 1);
    str(&bad, "image");
    tl_bytes_put(&bad, "\xc1", 1);
    ASSERT_REFUSED(bad,
                   "input is not valid msgpack: malformed msgpack data (byte 0xc1)");
}

/* Headers that declare more than the input holds: msgpack-c would ask malloc for every
 * entry a map or array header declares (2^32 - 1 map entries: 256 GiB, 64 bytes an entry)
 * before finding that the bytes are not there. */
TL_TEST(huge_declared_sizes) {
    tl_bytes m = {0};
    tl_bytes_put(&m, "\xdf\xff\xff\xff\xff", 5);
    str(&m, "image");
    str(&m, "QUI=");
    ASSERT_REFUSED(m, TRUNCATED);

    tl_bytes a = {0};
    map(&a, 1);
    str(&a, "files");
    tl_bytes_put(&a, "\xdd\x0f\xff\xff\xff", 5);
    file_part(&a, "x", 1);
    ASSERT_REFUSED(a, TRUNCATED);

    tl_bytes inner = {0};
    map(&inner, 1);
    str(&inner, "files");
    arr(&inner, 1);
    tl_bytes_put(&inner, "\xdf\x0f\xff\xff\xff", 5);
    str(&inner, "bytes");
    bin(&inner, "x", 1);
    ASSERT_REFUSED(inner, TRUNCATED);

    tl_bytes bn = {0};
    map(&bn, 1);
    str(&bn, "image");
    tl_bytes_put(&bn,
                 "\xc6\xff\xff\xff\xff"
                 "abc",
                 8);
    ASSERT_REFUSED(bn, TRUNCATED);

    tl_bytes s = {0};
    map(&s, 1);
    str(&s, "image");
    tl_bytes_put(&s,
                 "\xdb\x7f\xff\xff\xff"
                 "QUI=",
                 9);
    ASSERT_REFUSED(s, TRUNCATED);
}

TL_TEST(image_size_limit) {
    size_t n = CLS_INPUT_MAX_IMAGE_BYTES + 1;
    unsigned char *big = calloc(1, n);
    ASSERT_NOT_NULL(big);
    tl_defer(free, big);
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    bin(&b, big, n);
    ASSERT_REFUSED(b, "image: 33554433 bytes; at most 33554432");
}

/* msgpack-c reads at most 32 nested containers and calls a deeper one out of memory */
static tl_bytes nested(int arrays) {
    tl_bytes b = {0};
    map(&b, 1);
    str(&b, "image");
    for (int i = 0; i < arrays; i++) arr(&b, 1);
    tl_bytes_put(&b, "\xc0", 1);
    return b;
}

TL_TEST(nested_too_deeply) {
    ASSERT_REFUSED(nested(31), "input.image must be a base64 string (or msgpack bin)");
    ASSERT_REFUSED(nested(32), "input is not valid msgpack: nesting deeper than 32 levels");
    ASSERT_REFUSED(nested(1000), "input is not valid msgpack: nesting deeper than 32 levels");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(raw_bytes_in_bin_and_base64_agree),
        TL_CASE(base64_padding),
        TL_CASE(base64_bad_characters),
        TL_CASE(data_urls),
        TL_CASE(image_bin_or_str),
        TL_CASE(multipart_files),
        TL_CASE(multipart_with_image_in_input),
        TL_CASE(unknown_and_repeated_keys),
        TL_CASE(not_a_map),
        TL_CASE(truncated_at_every_offset),
        TL_CASE(bytes_after_the_map),
        TL_CASE(huge_declared_sizes),
        TL_CASE(image_size_limit),
        TL_CASE(nested_too_deeply),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
