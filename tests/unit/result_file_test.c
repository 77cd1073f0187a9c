/* result_file_test: results that download as files, and their Content-Disposition
 * (gateway/result_file.c). */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "result_file.h"
#include "testlib.h"

/* ------------------------------------------------------------ packing helpers ------- */

/* Packing: tl_mp (testlib.h). */

static void bin(tl_mp *m, const void *b, size_t n) { msgpack_pack_bin_with_body(&m->pk, b, n); }

/* Checks gw_result_file on an exact-size copy (kept until the case ends), so ASan sees
 * any read past the end. */
static bool is_file(const tl_mp *m, gw_result_file_view *v) {
    char *copy = malloc(m->sb.size ? m->sb.size : 1);
    tl_defer(free, copy);
    memcpy(copy, m->sb.data, m->sb.size);
    bool r = gw_result_file(copy, m->sb.size, v);
    /* bytes point into the buffer given */
    if (r && v->len) ASSERT_TRUE(v->bytes >= copy && v->bytes + v->len <= copy + m->sb.size);
    return r;
}

/* ------------------------------------------------------------ the convention -------- */

TL_TEST(a_file_result) {
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "content_type");
    tl_mp_str(m, "image/png");
    tl_mp_str(m, "bytes");
    bin(m, png, sizeof png);
    tl_mp_str(m, "filename");
    tl_mp_str(m, "out \xe2\x82\xac.png");
    gw_result_file_view v;
    ASSERT_TRUE(is_file(m, &v));
    ASSERT_EQ_STR(v.content_type, "image/png");
    ASSERT_EQ_INT(v.len, sizeof png);
    ASSERT_TRUE(memcmp(v.bytes, png, sizeof png) == 0);
    ASSERT_EQ_STR(v.filename, "out \xe2\x82\xac.png");
}

TL_TEST(without_filename_any_order_and_empty) {
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "bytes");
    bin(m, "", 0);
    tl_mp_str(m, "content_type");
    tl_mp_str(m, "text/plain; charset=utf-8");
    gw_result_file_view v;
    ASSERT_TRUE(is_file(m, &v));
    ASSERT_EQ_STR(v.content_type, "text/plain; charset=utf-8");
    ASSERT_EQ_INT(v.len, 0);
    ASSERT_EQ_STR(v.filename, "");
}

TL_TEST(large_file) {
    size_t n = 1u << 20;
    char *data = malloc(n);
    tl_defer(free, data);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 31);
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "content_type");
    tl_mp_str(m, "application/pdf");
    tl_mp_str(m, "bytes");
    bin(m, data, n);
    gw_result_file_view v;
    ASSERT_TRUE(is_file(m, &v));
    ASSERT_EQ_INT(v.len, n);
    ASSERT_TRUE(memcmp(v.bytes, data, n) == 0);
}

/* Maps that are not files: each is an ordinary result. */
TL_TEST(not_files) {
    gw_result_file_view v;
    tl_mp *m;
    /* bytes as str */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"),
        tl_mp_str(m, "hello");
    ASSERT_FALSE(is_file(m, &v));
    /* an extra key */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"), bin(m, "x", 1);
    tl_mp_str(m, "size"), msgpack_pack_int(&m->pk, 1);
    ASSERT_FALSE(is_file(m, &v));
    /* a key twice */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"), bin(m, "x", 1);
    tl_mp_str(m, "bytes"), bin(m, "y", 1);
    ASSERT_FALSE(is_file(m, &v));
    /* no content_type */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "bytes"), bin(m, "x", 1), tl_mp_str(m, "filename"), tl_mp_str(m, "a.txt");
    ASSERT_FALSE(is_file(m, &v));
    /* only bytes */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 1);
    tl_mp_str(m, "bytes"), bin(m, "x", 1);
    ASSERT_FALSE(is_file(m, &v));
    /* not a map */
    m = tl_mp_new();
    msgpack_pack_array(&m->pk, 2);
    tl_mp_str(m, "text/plain"), bin(m, "x", 1);
    ASSERT_FALSE(is_file(m, &v));
    /* trailing bytes */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"), bin(m, "x", 1);
    msgpack_pack_nil(&m->pk);
    ASSERT_FALSE(is_file(m, &v));
    /* a non-string key */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    msgpack_pack_int(&m->pk, 1), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"), bin(m, "x", 1);
    ASSERT_FALSE(is_file(m, &v));
    /* filename: empty, a control character, not UTF-8, too long, not a string */
    const char *bad_names[] = {"", "a\r\nSet-Cookie: x=1", "\xff.txt", NULL};
    char longname[GW_RESULT_FILENAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    bad_names[3] = longname;
    for (size_t i = 0; i < TL_COUNT(bad_names); i++) {
        m = tl_mp_new();
        msgpack_pack_map(&m->pk, 3);
        tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"),
            bin(m, "x", 1);
        tl_mp_str(m, "filename"), tl_mp_str(m, bad_names[i]);
        if (is_file(m, &v)) FAILF("filename %zu was accepted", i);
    }
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/plain"), tl_mp_str(m, "bytes"), bin(m, "x", 1);
    tl_mp_str(m, "filename"), bin(m, "a.txt", 5);
    ASSERT_FALSE(is_file(m, &v));
    ASSERT_FALSE(gw_result_file(NULL, 0, &v));
    ASSERT_FALSE(gw_result_file("", 0, &v));
}

TL_TEST(content_types) {
    const char *good[] = {"text/plain",
                          "application/vnd.ms-excel",
                          "image/svg+xml",
                          "text/plain; charset=utf-8",
                          "text/plain;charset=\"utf-8\"",
                          "multipart/mixed; boundary=\"a b\\\"c\"",
                          "audio/L16; rate=8000"};
    const char *bad[] = {"",
                         "text",
                         "text/",
                         "/plain",
                         "text/plain\r\nX-Evil: 1",
                         "text/plain\n",
                         "te xt/plain",
                         "text/plain;",
                         "text/plain; charset",
                         "text/plain; charset=\"utf-8",
                         "text/pl\xc3\xa9in",
                         "text/plain; a=\"\x01\"",
                         "-text/plain"};
    for (size_t i = 0; i < TL_COUNT(good); i++)
        if (!gw_media_type_valid(good[i], strlen(good[i]))) FAILF("'%s' was refused", good[i]);
    for (size_t i = 0; i < TL_COUNT(bad); i++)
        if (gw_media_type_valid(bad[i], strlen(bad[i]))) FAILF("'%s' was accepted", bad[i]);
    /* a result whose content type could inject a header is no file */
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "text/html\r\nSet-Cookie: a=b"),
        tl_mp_str(m, "bytes");
    bin(m, "x", 1);
    gw_result_file_view v;
    ASSERT_FALSE(is_file(m, &v));
}

/* Every prefix of a file result is refused, reading nothing past its end. */
TL_TEST(every_truncation_is_refused) {
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "content_type"), tl_mp_str(m, "application/octet-stream"), tl_mp_str(m, "bytes");
    bin(m, "0123456789", 10);
    tl_mp_str(m, "filename"), tl_mp_str(m, "a.bin");
    for (size_t n = 0; n < m->sb.size; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, m->sb.data, n);
        gw_result_file_view v;
        bool r = gw_result_file(copy, n, &v);
        free(copy);
        if (r) FAILF("a %zu-byte prefix is a file", n);
    }
}

/* ------------------------------------------------------------ Content-Disposition --- */

TL_TEST(content_disposition) {
    char out[GW_CONTENT_DISPOSITION_MAX];
    gw_content_disposition("safe.pdf", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"safe.pdf\"; filename*=UTF-8''safe.pdf");
    gw_content_disposition(NULL, out, sizeof out);
    ASSERT_EQ_STR(out, "attachment");
    gw_content_disposition("", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment");
    gw_content_disposition("r\xc3\xa9sum\xc3\xa9 2024.pdf", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"r_sum_ 2024.pdf\"; "
                       "filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf");
    gw_content_disposition("\xe6\x97\xa5\xe6\x9c\xac.txt", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt");
    /* header injection: CR, LF, quotes and backslashes never reach the header */
    gw_content_disposition("a\r\nSet-Cookie: x=1\";\\b.txt", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"aSet-Cookie: x=1;b.txt\"; "
                       "filename*=UTF-8''aSet-Cookie%3A%20x%3D1%22%3B%5Cb.txt");
    gw_content_disposition("100%.txt", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt");
    /* nothing printable left in the plain form */
    gw_content_disposition("\"\"", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"download\"; filename*=UTF-8''%22%22");
    gw_content_disposition("\r\n", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment");
    /* not UTF-8: the plain form only */
    gw_content_disposition("a\xff.txt", out, sizeof out);
    ASSERT_EQ_STR(out, "attachment; filename=\"a_.txt\"");
    for (const char *c = out; *c; c++) ASSERT_TRUE((unsigned char)*c >= 0x20 && *c != 0x7f);
}

TL_TEST(content_disposition_limits) {
    /* a long name of 3-byte characters: cut at a character boundary, the longest output
     * still fits GW_CONTENT_DISPOSITION_MAX */
    char name[400 * 3 + 1];
    for (int i = 0; i < 400; i++) memcpy(name + 3 * i, "\xe2\x82\xac", 3);
    name[sizeof name - 1] = '\0';
    char out[GW_CONTENT_DISPOSITION_MAX];
    gw_content_disposition(name, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "filename*=UTF-8''%E2%82%AC");
    size_t n = strlen(out);
    ASSERT_EQ_STR(out + n - 9, "%E2%82%AC"); /* 85 whole euros: 255 bytes */
    char longest[GW_RESULT_FILENAME_MAX + 1];
    memset(longest, ' ', GW_RESULT_FILENAME_MAX);
    longest[GW_RESULT_FILENAME_MAX] = '\0';
    gw_content_disposition(longest, out, sizeof out);
    ASSERT_EQ_INT(strlen(out), GW_CONTENT_DISPOSITION_MAX - 1);
    /* a small buffer: drop filename*, then the filename, never a cut value */
    char small[40];
    gw_content_disposition("report.pdf", small, sizeof small);
    ASSERT_EQ_STR(small, "attachment; filename=\"report.pdf\"");
    char tiny[20];
    gw_content_disposition("report.pdf", tiny, sizeof tiny);
    ASSERT_EQ_STR(tiny, "attachment");
    char none[5];
    gw_content_disposition("report.pdf", none, sizeof none);
    ASSERT_EQ_STR(none, "");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(a_file_result),       TL_CASE(without_filename_any_order_and_empty),
        TL_CASE(large_file),          TL_CASE(not_files),
        TL_CASE(content_types),       TL_CASE(every_truncation_is_refused),
        TL_CASE(content_disposition), TL_CASE(content_disposition_limits),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
