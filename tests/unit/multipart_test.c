/* multipart_test: multipart/form-data bodies (gateway/multipart.c) and the UTF-8 helpers
 * (shared/src/utf8.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"
#include "testlib.h"
#include "fleet/utf8.h"

/* ------------------------------------------------------------ body builder ---------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void buf_free(void *arg) { free(((buf *)arg)->p); }

static buf *buf_new(void) {
    buf *b = tl_alloc(sizeof *b);
    tl_defer(buf_free, b);
    return b;
}

static void put(buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ASSERT_NOT_NULL(b->p);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...) {
    char tmp[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ASSERT_LT_INT(n, (int)sizeof tmp);
    put(b, tmp, (size_t)n);
}

#define B "----fleet7MA4YWxk"

/* A text field part (no closing boundary). */
static void field(buf *b, const char *name, const char *value) {
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n", name, value);
}

static void file(buf *b, const char *name, const char *filename, const char *ctype,
                 const void *data, size_t n) {
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n", name,
         filename);
    if (ctype) putf(b, "Content-Type: %s\r\n", ctype);
    putf(b, "\r\n");
    put(b, data, n);
    putf(b, "\r\n");
}

static void close_body(buf *b) { putf(b, "--" B "--\r\n"); }

static void form_free(void *f) { gw_multipart_form_free(f); }

static gw_mp_form *parse_ok(const buf *b) {
    gw_mp_form *f = tl_alloc(sizeof *f);
    char err[256] = "";
    int rc = gw_multipart_parse(b->p, b->n, B, f, err, sizeof err);
    tl_defer(form_free, f);
    if (rc != 0) FAILF("body refused: %s", err);
    return f;
}

/* Parses b and expects a refusal whose detail contains want. */
static void parse_refused(const buf *b, const char *want) {
    gw_mp_form f;
    char err[256] = "";
    int rc = gw_multipart_parse(b->p, b->n, B, &f, err, sizeof err);
    gw_multipart_form_free(&f);
    if (rc == 0) FAILF("body accepted; wanted a refusal with '%s'", want);
    ASSERT_STR_CONTAINS(err, want);
}

/* ------------------------------------------------------------ boundary -------------- */

TL_TEST(boundary_from_content_type) {
    char b[GW_MP_BOUNDARY_MAX + 1], err[256];
    ASSERT_EQ_INT(gw_multipart_boundary("multipart/form-data; boundary=abc123", b, err, sizeof err),
                  0);
    ASSERT_EQ_STR(b, "abc123");
    ASSERT_EQ_INT(gw_multipart_boundary("multipart/form-data;boundary=\"a b:c\"", b, err,
                                        sizeof err),
                  0);
    ASSERT_EQ_STR(b, "a b:c");
    ASSERT_EQ_INT(gw_multipart_boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=x;", b, err,
                                        sizeof err),
                  0);
    ASSERT_EQ_STR(b, "x");
    ASSERT_EQ_INT(gw_multipart_boundary("multipart/form-data; boundary=------------------------"
                                        "d74496d66958873e",
                                        b, err, sizeof err),
                  0);
    char seventy[80];
    memset(seventy, 'a', 70);
    seventy[70] = '\0';
    ASSERT_EQ_INT(gw_multipart_boundary(tl_printf("multipart/form-data; boundary=%s", seventy), b,
                                        err, sizeof err),
                  0);
    ASSERT_EQ_STR(b, seventy);
}

TL_TEST(boundary_refusals) {
    char b[GW_MP_BOUNDARY_MAX + 1], err[256];
    struct {
        const char *ct, *want;
    } cases[] = {
        {"multipart/form-data", "needs a boundary parameter"},
        {"multipart/form-data; charset=utf-8", "needs a boundary parameter"},
        {"multipart/form-data; boundary=", "boundary is empty"},
        {"multipart/form-data; boundary=\"\"", "boundary is empty"},
        {"multipart/form-data; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaa",
         "71 characters long; RFC 2046 allows 1 to 70"},
        {"multipart/form-data; boundary=a@b", "does not allow (byte 0x40 at position 2)"},
        {"multipart/form-data; boundary=\"ab \"", "must not end in a space"},
        {"multipart/form-data; boundary=a; boundary=b", "two boundary parameters"},
        {"multipart/form-data; boundary=\"abc", "no closing quote"},
        {"multipart/form-data; boundary", "no '=' and value"},
        {"multipart/form-data; =x", "has no name"},
        {"multipart/form-data; boundary=\"a\" junk", "expected ';'"},
        {NULL, "needs a Content-Type"},
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) {
        err[0] = '\0';
        if (gw_multipart_boundary(cases[i].ct, b, err, sizeof err) == 0)
            FAILF("'%s' was accepted", cases[i].ct);
        ASSERT_STR_CONTAINS(err, cases[i].want);
    }
}

/* ------------------------------------------------------------ parsing --------------- */

TL_TEST(curl_style_form) {
    buf *b = buf_new();
    field(b, "model", "echo");
    file(b, "files", "a.pdf", "application/pdf", "%PDF-1.4 x", 10);
    file(b, "files", "b.png", "image/png", "\x89PNG\r\n\x1a\n", 8);
    field(b, "options", "{\"priority\":\"high\"}");
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 4);
    ASSERT_EQ_STR(f->parts[0].name, "model");
    ASSERT_FALSE(f->parts[0].has_filename);
    ASSERT_EQ_STR(f->parts[0].content_type, "");
    ASSERT_EQ_INT(f->parts[0].len, 4);
    ASSERT_TRUE(memcmp(f->parts[0].data, "echo", 4) == 0);
    ASSERT_EQ_STR(f->parts[1].name, "files");
    ASSERT_TRUE(f->parts[1].has_filename);
    ASSERT_EQ_STR(f->parts[1].filename, "a.pdf");
    ASSERT_EQ_STR(f->parts[1].content_type, "application/pdf");
    ASSERT_EQ_INT(f->parts[1].len, 10);
    ASSERT_EQ_STR(f->parts[2].filename, "b.png");
    ASSERT_EQ_INT(f->parts[2].len, 8);
    ASSERT_TRUE(memcmp(f->parts[2].data, "\x89PNG\r\n\x1a\n", 8) == 0);
    /* contents point into the body: nothing was copied */
    ASSERT_TRUE(f->parts[2].data > b->p && f->parts[2].data < b->p + b->n);
    ASSERT_EQ_STR(f->parts[3].name, "options");
    ASSERT_EQ_INT(f->parts[3].len, strlen("{\"priority\":\"high\"}"));
}

TL_TEST(preamble_epilogue_padding_and_header_case) {
    buf *b = buf_new();
    putf(b, "This is a preamble.\r\n--" B "  \t\r\n");
    putf(b, "content-disposition:   FORM-DATA ;NAME=model ; x-ignored=1\r\n"
            "X-Other: whatever\r\n\r\necho\r\n");
    putf(b, "--" B "--  and an epilogue\r\n--" B "\r\ngarbage");
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 1);
    ASSERT_EQ_STR(f->parts[0].name, "model");
    ASSERT_EQ_INT(f->parts[0].len, 4);
}

TL_TEST(binary_content_with_crlf_and_boundary_lookalikes) {
    unsigned char data[256 + 64];
    for (int i = 0; i < 256; i++) data[i] = (unsigned char)i;
    /* almost a delimiter: CRLF "--" and the boundary without its last character, and the
     * boundary without the CRLF before it */
    const char *near = "\r\n--" B;
    size_t nl = strlen(near) - 1;
    memcpy(data + 256, near, nl);
    memcpy(data + 256 + nl, "--" B, 2 + strlen(B));
    size_t n = 256 + nl + 2 + strlen(B);
    buf *b = buf_new();
    file(b, "files", "bin.dat", "application/octet-stream", data, n);
    file(b, "files", "crlf.txt", "text/plain", "\r\n\r\n", 4);
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 2);
    ASSERT_EQ_INT(f->parts[0].len, n);
    ASSERT_TRUE(memcmp(f->parts[0].data, data, n) == 0);
    ASSERT_EQ_INT(f->parts[1].len, 4);
    ASSERT_TRUE(memcmp(f->parts[1].data, "\r\n\r\n", 4) == 0);
}

TL_TEST(one_megabyte_file) {
    size_t n = 1u << 20;
    unsigned char *data = malloc(n);
    tl_defer(free, data);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    buf *b = buf_new();
    field(b, "model", "echo");
    file(b, "files", "big.bin", NULL, data, n);
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 2);
    ASSERT_EQ_INT(f->parts[1].len, n);
    ASSERT_TRUE(memcmp(f->parts[1].data, data, n) == 0);
    ASSERT_EQ_STR(f->parts[1].content_type, "");
}

TL_TEST(empty_parts) {
    buf *b = buf_new();
    file(b, "files", "empty.txt", "text/plain", "", 0);
    field(b, "input", "");
    file(b, "files", "", "application/octet-stream", "", 0); /* a browser's empty input */
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 3);
    ASSERT_EQ_STR(f->parts[0].filename, "empty.txt");
    ASSERT_EQ_INT(f->parts[0].len, 0);
    ASSERT_EQ_INT(f->parts[1].len, 0);
    ASSERT_TRUE(f->parts[2].has_filename);
    ASSERT_EQ_STR(f->parts[2].filename, "");
}

TL_TEST(filenames) {
    buf *b = buf_new();
    file(b, "files", "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.pdf", NULL, "x", 1);
    file(b, "files", "a\\\"b\\\\c.txt", NULL, "x", 1); /* quoted-pairs */
    file(b, "files", "C:\\dir\\x.txt", NULL, "x", 1);  /* an unescaped Windows path */
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=files; filename=\"plain.txt\"; "
            "filename*=UTF-8''%%E2%%82%%AC%%20rates.txt\r\n\r\nx\r\n");
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=files; filename=bare.txt\r\n\r\n"
            "x\r\n");
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, 5);
    ASSERT_EQ_STR(f->parts[0].filename, "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.pdf");
    ASSERT_EQ_STR(f->parts[1].filename, "a\"b\\c.txt");
    ASSERT_EQ_STR(f->parts[2].filename, "C:\\dir\\x.txt");
    ASSERT_EQ_STR(f->parts[3].filename, "\xe2\x82\xac rates.txt");
    ASSERT_EQ_STR(f->parts[4].filename, "bare.txt");
}

TL_TEST(hundred_parts_but_not_more) {
    buf *b = buf_new();
    for (int i = 0; i < GW_MP_PARTS_MAX; i++) file(b, "files", "f", NULL, "x", 1);
    close_body(b);
    gw_mp_form *f = parse_ok(b);
    ASSERT_EQ_INT(f->n, GW_MP_PARTS_MAX);
    buf *b2 = buf_new();
    for (int i = 0; i <= GW_MP_PARTS_MAX; i++) file(b2, "files", "f", NULL, "x", 1);
    close_body(b2);
    parse_refused(b2, "more than 100 parts");
}

TL_TEST(structural_refusals) {
    buf *b;
    b = buf_new();
    putf(b, "no boundary here at all");
    parse_refused(b, "no boundary line '--" B "'");
    b = buf_new();
    putf(b, "%s", "");
    parse_refused(b, "no boundary line");
    b = buf_new(); /* the closing boundary is missing */
    field(b, "model", "echo");
    parse_refused(b, "part 1 ('model'): no boundary line after its content; the body is "
                     "truncated or lacks the final '--" B "--'");
    b = buf_new(); /* the body ends right after a boundary */
    field(b, "model", "echo");
    putf(b, "--" B);
    parse_refused(b, "the body ends after a boundary line, without the final '--" B "--'");
    b = buf_new(); /* cut inside a part's content */
    field(b, "model", "echo");
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a\"\r\n\r\n"
            "half a fi");
    parse_refused(b, "part 2 ('files'): no boundary line after its content");
    b = buf_new(); /* cut inside the headers */
    putf(b, "--" B "\r\nContent-Disposition: form-da");
    parse_refused(b, "part 1: the body ends inside its headers");
    b = buf_new(); /* junk after a boundary */
    putf(b, "--" B "x\r\n\r\n--" B "--");
    parse_refused(b, "followed by neither CRLF nor '--'");
    b = buf_new(); /* LF line endings */
    putf(b, "--" B "\nContent-Disposition: form-data; name=\"model\"\n\necho\n--" B "--\n");
    parse_refused(b, "followed by neither CRLF nor '--'");
    b = buf_new(); /* LF inside the headers */
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=\"model\"\nX: y\r\n\r\necho\r\n"
            "--" B "--\r\n");
    parse_refused(b, "part 1: a header line holds control byte 0x0a");
    b = buf_new();
    putf(b, "--" B "\r\n\r\necho\r\n--" B "--\r\n");
    parse_refused(b, "part 1 has no Content-Disposition header");
    b = buf_new();
    putf(b, "--" B "\r\nContent-Type: text/plain\r\n\r\necho\r\n--" B "--\r\n");
    parse_refused(b, "part 1 has no Content-Disposition header");
}

TL_TEST(header_refusals) {
    struct {
        const char *headers, *want;
    } cases[] = {
        {"Content-Disposition: form-data\r\n", "part 1 has no name"},
        {"Content-Disposition: form-data; name=\"\"\r\n", "part 1 has no name"},
        {"Content-Disposition: form-data; filename=\"a.txt\"\r\n", "part 1 has no name"},
        {"Content-Disposition: attachment; name=\"a\"\r\n", "is 'attachment', not form-data"},
        {"Content-Disposition: form-data; name=\"a\r\n", "no closing quote"},
        {"Content-Disposition: form-data; name=\"a\"; name=\"b\"\r\n", "two names"},
        {"Content-Disposition: form-data; name=a; filename=x; filename=y\r\n", "two filenames"},
        {"Content-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n",
         "two Content-Disposition headers"},
        {"Content-Disposition: form-data; name=a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n",
         "two Content-Type headers"},
        {"Content-Disposition: form-data;\r\n name=\"a\"\r\n", "folded header lines"},
        {"Content-Disposition form-data; name=a\r\n", "not 'Name: value'"},
        {"Bad Header: 1\r\nContent-Disposition: form-data; name=a\r\n", "not 'Name: value'"},
        {"Content-Disposition: form-data; name=a; filename=\"\xff\xfe.txt\"\r\n",
         "part 1 ('a'): its filename is not valid UTF-8"},
        {"Content-Disposition: form-data; name=a; filename*=latin1''x.txt\r\n",
         "filename* is not UTF-8''"},
        {"Content-Disposition: form-data; name=a; filename*=UTF-8''a%00b\r\n",
         "filename* is not UTF-8''"},
        {"Content-Disposition: form-data; name=a; filename*=UTF-8''a%zz\r\n",
         "filename* is not UTF-8''"},
        {"Content-Disposition: form-data; name=a\r\nContent-Type: text/\xc3\xa9\r\n",
         "Content-Type is not ASCII"},
        {"Content-Disposition: form-data; name=a\x01\r\n", "control byte 0x01"},
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) {
        buf *b = buf_new();
        putf(b, "--" B "\r\n%s\r\nx\r\n--" B "--\r\n", cases[i].headers);
        parse_refused(b, cases[i].want);
    }
    /* a NUL in a header line */
    buf *b = buf_new();
    putf(b, "--" B "\r\nContent-Disposition: form-data; name=a");
    put(b, "\0b\r\n\r\nx\r\n--" B "--\r\n", 4 + 5 + strlen(B) + 4);
    parse_refused(b, "control byte 0x00");
}

TL_TEST(long_headers_and_names) {
    char big[GW_MP_HEADERS_MAX + 100];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf *b = buf_new();
    putf(b,
         "--" B "\r\nContent-Disposition: form-data; name=a\r\nX-Big: %s\r\n\r\nx\r\n"
         "--" B "--\r\n",
         big);
    parse_refused(b, "part 1: its headers are longer than 8192 bytes");
    /* just under the limit is fine */
    b = buf_new();
    big[GW_MP_HEADERS_MAX - 200] = '\0';
    putf(b,
         "--" B "\r\nContent-Disposition: form-data; name=a\r\nX-Big: %s\r\n\r\nx\r\n"
         "--" B "--\r\n",
         big);
    ASSERT_EQ_INT(parse_ok(b)->n, 1);
    char name[GW_MP_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    b = buf_new();
    field(b, name, "x");
    close_body(b);
    parse_refused(b, "its name is 256 bytes long; at most 255");
    b = buf_new();
    file(b, "files", name, NULL, "x", 1);
    close_body(b);
    parse_refused(b, "its filename is 256 bytes long; at most 255");
}

/* Every prefix of a valid body is refused (or, once the closing boundary is in, accepted
 * whole), never read past its end. ASan checks the reads. */
TL_TEST(every_truncation_is_refused) {
    buf *b = buf_new();
    field(b, "model", "echo");
    file(b, "files", "a.bin", "application/octet-stream", "\r\n--x\r\n\0\xff", 9);
    close_body(b);
    size_t full_close = b->n - 2; /* "--B--" without its CRLF is complete */
    for (size_t n = 0; n < b->n; n++) {
        char *copy = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, b->p, n);
        gw_mp_form f;
        char err[256];
        int rc = gw_multipart_parse(copy, n, B, &f, err, sizeof err);
        gw_multipart_form_free(&f);
        free(copy);
        if (n < full_close && rc == 0) FAILF("a %zu-byte prefix was accepted", n);
        if (n >= full_close && rc != 0) FAILF("the %zu-byte body was refused: %s", n, err);
    }
}

/* ------------------------------------------------------------ UTF-8 ----------------- */

TL_TEST(utf8_rules) {
    ASSERT_TRUE(fleet_utf8_valid("", 0));
    ASSERT_TRUE(fleet_utf8_valid("plain", 5));
    ASSERT_TRUE(fleet_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    ASSERT_TRUE(fleet_utf8_valid("a\0b", 3));
    ASSERT_FALSE(fleet_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    ASSERT_FALSE(fleet_utf8_valid("\xed\xa0\x80", 3));     /* a surrogate */
    ASSERT_FALSE(fleet_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    ASSERT_FALSE(fleet_utf8_valid("\xe2\x82", 2));         /* cut short */
    ASSERT_FALSE(fleet_utf8_valid("\x80", 1));
    char out[16];
    fleet_utf8_quote("ab\r\ncd", 6, out, sizeof out);
    ASSERT_EQ_STR(out, "ab??cd");
    fleet_utf8_quote("\xff\xc3\xa9", 3, out, sizeof out);
    ASSERT_EQ_STR(out, "?\xc3\xa9");
    fleet_utf8_quote("0123456789abcdefghij", 20, out, sizeof out);
    ASSERT_EQ_STR(out, "0123456789ab...");
    fleet_utf8_quote("0123456789abcde", 15, out, sizeof out); /* fits exactly */
    ASSERT_EQ_STR(out, "0123456789abcde");
    fleet_utf8_quote("0123456789\xe2\x82\xac\xe2\x82\xac", 16, out, 14); /* no half euro */
    ASSERT_EQ_STR(out, "0123456789...");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(boundary_from_content_type),
        TL_CASE(boundary_refusals),
        TL_CASE(curl_style_form),
        TL_CASE(preamble_epilogue_padding_and_header_case),
        TL_CASE(binary_content_with_crlf_and_boundary_lookalikes),
        TL_CASE(one_megabyte_file),
        TL_CASE(empty_parts),
        TL_CASE(filenames),
        TL_CASE(hundred_parts_but_not_more),
        TL_CASE(structural_refusals),
        TL_CASE(header_refusals),
        TL_CASE(long_headers_and_names),
        TL_CASE(every_truncation_is_refused),
        TL_CASE(utf8_rules),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
