/* codec_test: JSON <-> msgpack round trips and refusals (shared/src/codec.c). */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "testlib.h"

static json_t *roundtrip(const char *text) {
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    ASSERT_NOT_NULL(j);
    char *buf;
    size_t len;
    char err[128] = "";
    ASSERT_EQ_INT(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err), 0);
    ASSERT_GT_INT(len, 0);
    json_t *back = fleet_msgpack_to_json(buf, len, err, sizeof err);
    free(buf);
    if (!back) FAILF("unpack of %s failed: %s", text, err);
    ASSERT_EQ_JSON(back, j);
    json_decref(j);
    return back;
}

TL_TEST(roundtrip_values) {
    const char *cases[] = {
        "null",
        "true",
        "false",
        "0",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "1.5",
        "-0.25",
        "\"\"",
        "\"h\\u00e9llo \\u2603 \\ud83d\\ude00\"",
        "[]",
        "{}",
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"e\":1e300}",
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) json_decref(roundtrip(cases[i]));
}

static char *nested(int depth) {
    char *s = malloc((size_t)depth * 2 + 2);
    for (int i = 0; i < depth; i++) s[i] = '[';
    s[depth] = '1';
    for (int i = 0; i < depth; i++) s[depth + 1 + i] = ']';
    s[2 * depth + 1] = '\0';
    return s;
}

TL_TEST(depth_limit_both_ways) {
    char *ok = nested(FLEET_CODEC_MAX_DEPTH);
    json_decref(roundtrip(ok));
    free(ok);
    char *deep = nested(FLEET_CODEC_MAX_DEPTH + 1);
    json_t *j = json_loads(deep, 0, NULL);
    free(deep);
    char *buf = NULL;
    size_t len;
    char err[128] = "";
    ASSERT_EQ_INT(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "nesting deeper than 32");
    json_decref(j);
}

TL_TEST(refuses_truncated_and_trailing) {
    json_t *j = json_loads("{\"text\":\"hello world\"}", 0, NULL);
    char *buf;
    size_t len;
    char err[128];
    ASSERT_EQ_INT(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err), 0);
    for (size_t cut = 1; cut < len; cut++) {
        ASSERT_NULL(fleet_msgpack_to_json(buf, cut, err, sizeof err));
        ASSERT_STR_CONTAINS(err, "truncated");
    }
    char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = (char)0xc0; /* a nil after the value */
    ASSERT_NULL(fleet_msgpack_to_json(longer, len + 1, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "trailing");
    ASSERT_NULL(fleet_msgpack_to_json(buf, 0, err, sizeof err));
    free(longer);
    free(buf);
    json_decref(j);
}

TL_TEST(refuses_non_string_keys_ext_and_bad_utf8) {
    char err[128];
    const char intkey[] = {(char)0x81, 0x01, 0x02}; /* {1: 2} */
    ASSERT_NULL(fleet_msgpack_to_json(intkey, sizeof intkey, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "map key");
    const char ext[] = {(char)0xd4, 0x05, 0x00}; /* fixext1 */
    ASSERT_NULL(fleet_msgpack_to_json(ext, sizeof ext, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "ext");
    const char badutf8[] = {(char)0xa2, (char)0xff, (char)0xfe}; /* str of 2 invalid bytes */
    ASSERT_NULL(fleet_msgpack_to_json(badutf8, sizeof badutf8, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "UTF-8");
    const char huge[] = {(char)0xdd, 0x7f, (char)0xff, (char)0xff, (char)0xff}; /* array32 */
    ASSERT_NULL(fleet_msgpack_to_json(huge, sizeof huge, err, sizeof err));
}

TL_TEST(bin_reads_as_base64) {
    const char bin[] = {(char)0xc4, 0x03, 'a', 'b', 'c'};
    char err[128];
    json_t *j = fleet_msgpack_to_json(bin, sizeof bin, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_STR(json_string_value(j), "YWJj");
    json_decref(j);
}

/* Random bytes must never crash the reader (ASan/UBSan watch this). */
TL_TEST(random_bytes_do_not_crash) {
    unsigned seed = 12345;
    char buf[64], err[128];
    for (int i = 0; i < 20000; i++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t k = 0; k < n; k++) buf[k] = (char)rand_r(&seed);
        json_decref(fleet_msgpack_to_json(buf, n, err, sizeof err));
    }
}

TL_TEST(empty_map_keys_survive_a_round_trip) {
    /* {"": 1} in msgpack: fixmap(1), fixstr(0), 1. */
    const char mp[] = {(char)0x81, (char)0xa0, 0x01};
    char err[128];
    json_t *j = fleet_msgpack_to_json(mp, sizeof mp, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "")), 1);
    json_decref(j);
}

TL_TEST(bad_keys_and_deep_empty_containers_are_refused) {
    char err[128];
    /* {"\xc3(": 2}: a map key that is not UTF-8 is an error, not a crash (double free). */
    const char bad_key[] = {(char)0x81, (char)0xa2, (char)0xc3, '(', 0x02};
    ASSERT_NULL(fleet_msgpack_to_json(bad_key, sizeof bad_key, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "UTF-8");
    /* 33 nested arrays, the innermost empty: refused when packing ... */
    json_t *inner = json_array();
    for (int i = 0; i < 32; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, inner);
        inner = outer;
    }
    char *mp = NULL;
    size_t len = 0;
    ASSERT_EQ_INT(fleet_json_to_msgpack(inner, &mp, &len, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "nesting");
    json_decref(inner);
    /* ... and when reading: 33 fixarray(1) markers would need a 34th level. */
    char deep[33];
    for (int i = 0; i < 32; i++) deep[i] = (char)0x91;
    deep[32] = (char)0x90;
    ASSERT_NULL(fleet_msgpack_to_json(deep, sizeof deep, err, sizeof err));
}

/* ------------------------------------------------------------ FLEET_EXT_F32 -------- */

/* {"v": ext-1 of 1.5, -0.25, 0.1f} as fixmap(1), "v", ext8(12, type 1), little-endian. */
static const char f32_map[] = {(char)0x81, (char)0xa1, 'v',        (char)0xc7, 12,
                               1,          0x00,       0x00,       (char)0xc0, 0x3f, /* 1.5f */
                               0x00,       0x00,       (char)0x80, (char)0xbe,       /* -0.25f */
                               (char)0xcd, (char)0xcc, (char)0xcc, 0x3d};            /* 0.1f */

TL_TEST(ext_f32_reads_as_numbers) {
    char err[128] = "";
    json_t *j = fleet_msgpack_to_json(f32_map, sizeof f32_map, err, sizeof err);
    if (!j) FAILF("ext-1 refused: %s", err);
    json_t *v = json_object_get(j, "v");
    ASSERT_TRUE(json_is_array(v));
    ASSERT_EQ_INT(json_array_size(v), 3);
    ASSERT_TRUE(json_is_real(json_array_get(v, 0)));
    ASSERT_TRUE(json_real_value(json_array_get(v, 0)) == 1.5);
    ASSERT_TRUE(json_real_value(json_array_get(v, 1)) == -0.25);
    ASSERT_TRUE(json_real_value(json_array_get(v, 2)) == (double)0.1f); /* widened, exactly */
    json_decref(j);
    /* Every ext form: fixext4 (one float), fixext8, fixext16, ext16, ext32, and empty. */
    const char fixext4[] = {(char)0xd6, 1, 0x00, 0x00, (char)0x80, 0x3f}; /* [1.0] */
    j = fleet_msgpack_to_json(fixext4, sizeof fixext4, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_JSON(j, tl_json("[1.0]"));
    json_decref(j);
    const char fixext16[] = {(char)0xd8, 1, 0, 0,    (char)0x80, 0x3f, 0, 0,          0,
                             0x40,       0, 0, 0x40, 0x40,       0,    0, (char)0x80, 0x40};
    j = fleet_msgpack_to_json(fixext16, sizeof fixext16, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_JSON(j, tl_json("[1.0, 2.0, 3.0, 4.0]"));
    json_decref(j);
    const char ext16[] = {(char)0xc8, 0, 4, 1, 0, 0, (char)0x80, (char)0xbf}; /* [-1.0] */
    j = fleet_msgpack_to_json(ext16, sizeof ext16, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_JSON(j, tl_json("[-1.0]"));
    json_decref(j);
    const char ext32_empty[] = {(char)0xc9, 0, 0, 0, 0, 1};
    j = fleet_msgpack_to_json(ext32_empty, sizeof ext32_empty, err, sizeof err);
    ASSERT_NOT_NULL(j);
    ASSERT_EQ_JSON(j, tl_json("[]"));
    json_decref(j);
    /* NaN is refused like a float NaN. */
    const char nan[] = {(char)0xd6, 1, 0x00, 0x00, (char)0xc0, 0x7f};
    ASSERT_NULL(fleet_msgpack_to_json(nan, sizeof nan, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "not finite");
}

TL_TEST(ext_f32_bad_length_and_other_ext_types_are_refused) {
    char err[128] = "", *out = NULL;
    size_t outlen = 0;
    const char fixext1[] = {(char)0xd4, 1, 0x00};               /* 1 byte */
    const char ext8_6[] = {(char)0xc7, 6, 1, 0, 0, 0, 0, 0, 0}; /* 6 bytes */
    const char *bad[] = {fixext1, ext8_6};
    const size_t badlen[] = {sizeof fixext1, sizeof ext8_6};
    const char *want[] = {"holds 1 bytes, not a multiple of 4",
                          "holds 6 bytes, not a multiple of 4"};
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        err[0] = '\0';
        ASSERT_NULL(fleet_msgpack_to_json(bad[i], badlen[i], err, sizeof err));
        ASSERT_STR_CONTAINS(err, want[i]);
        err[0] = '\0';
        ASSERT_EQ_INT(fleet_msgpack_for_client(bad[i], badlen[i], &out, &outlen, err, sizeof err),
                      -1);
        ASSERT_STR_CONTAINS(err, want[i]);
        ASSERT_NULL(out);
    }
    /* Ext type 2 and -1 (the msgpack timestamp): refused both ways. */
    const char ext2[] = {(char)0x91, (char)0xd6, 2, 0, 0, (char)0x80, 0x3f};
    ASSERT_NULL(fleet_msgpack_to_json(ext2, sizeof ext2, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "ext type 2");
    ASSERT_EQ_INT(fleet_msgpack_for_client(ext2, sizeof ext2, &out, &outlen, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "ext type 2 has no client form");
    const char ts[] = {(char)0xd6, (char)0xff, 0, 0, 0, 1};
    ASSERT_EQ_INT(fleet_msgpack_for_client(ts, sizeof ts, &out, &outlen, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "ext type -1");
    /* Truncated ext payload and trailing bytes. */
    ASSERT_EQ_INT(fleet_msgpack_for_client(f32_map, sizeof f32_map - 1, &out, &outlen, err,
                                           sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "truncated");
    char longer[sizeof f32_map + 1];
    memcpy(longer, f32_map, sizeof f32_map);
    longer[sizeof f32_map] = (char)0xc0;
    ASSERT_EQ_INT(fleet_msgpack_for_client(longer, sizeof longer, &out, &outlen, err, sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "trailing");
    ASSERT_EQ_INT(fleet_msgpack_for_client(f32_map, 0, &out, &outlen, err, sizeof err), -1);
    ASSERT_NULL(out);
}

TL_TEST(ext_f32_goes_to_clients_as_bin) {
    char err[128] = "", *out = NULL;
    size_t outlen = 0;
    ASSERT_EQ_INT(fleet_msgpack_for_client(f32_map, sizeof f32_map, &out, &outlen, err, sizeof err),
                  0);
    ASSERT_NOT_NULL(out);
    /* The same map, the ext8 header (c7 0c 01) now a bin8 header (c4 0c). */
    ASSERT_EQ_INT(outlen, sizeof f32_map - 1);
    const char want_head[] = {(char)0x81, (char)0xa1, 'v', (char)0xc4, 12};
    ASSERT_TRUE(memcmp(out, want_head, sizeof want_head) == 0);
    ASSERT_TRUE(memcmp(out + 5, f32_map + 6, 12) == 0);
    /* msgpack-c reads it as a bin of 12 bytes, and the codec reads that as base64. */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    ASSERT_EQ_INT(msgpack_unpack_next(&up, out, outlen, &off), MSGPACK_UNPACK_SUCCESS);
    ASSERT_EQ_INT(off, outlen);
    ASSERT_EQ_INT(up.data.type, MSGPACK_OBJECT_MAP);
    const msgpack_object *v = &up.data.via.map.ptr[0].val;
    ASSERT_EQ_INT(v->type, MSGPACK_OBJECT_BIN);
    ASSERT_EQ_INT(v->via.bin.size, 12);
    float f[3];
    for (int i = 0; i < 3; i++) {
        const unsigned char *b = (const unsigned char *)v->via.bin.ptr + 4 * i;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        memcpy(&f[i], &u, 4);
    }
    ASSERT_TRUE(f[0] == 1.5f && f[1] == -0.25f && f[2] == 0.1f);
    msgpack_unpacked_destroy(&up);
    free(out);

    /* Every ext size form becomes the smallest bin that holds it, in a larger value whose
     * other bytes stay as they were: [fixext4, ext16(4), ext32(300), "s", 1.5]. */
    size_t n = 0;
    char big[512];
    big[n++] = (char)0x95;
    const char fx[] = {(char)0xd6, 1, 1, 2, 3, 4};
    memcpy(big + n, fx, sizeof fx), n += sizeof fx;
    const char e16[] = {(char)0xc8, 0, 4, 1, 5, 6, 7, 8};
    memcpy(big + n, e16, sizeof e16), n += sizeof e16;
    const char e32[] = {(char)0xc9, 0, 0, 0x01, 0x2c, 1}; /* 300 bytes */
    memcpy(big + n, e32, sizeof e32), n += sizeof e32;
    for (int i = 0; i < 300; i++) big[n++] = (char)i;
    const char tail[] = {(char)0xa1, 's', (char)0xcb, 0x3f, (char)0xf8, 0, 0, 0, 0, 0, 0};
    memcpy(big + n, tail, sizeof tail), n += sizeof tail;
    ASSERT_EQ_INT(fleet_msgpack_for_client(big, n, &out, &outlen, err, sizeof err), 0);
    ASSERT_NOT_NULL(out);
    size_t k = 0;
    char want[512];
    want[k++] = (char)0x95;
    const char b1[] = {(char)0xc4, 4, 1, 2, 3,          4,    (char)0xc4, 4,
                       5,          6, 7, 8, (char)0xc5, 0x01, 0x2c};
    memcpy(want + k, b1, sizeof b1), k += sizeof b1;
    for (int i = 0; i < 300; i++) want[k++] = (char)i;
    memcpy(want + k, tail, sizeof tail), k += sizeof tail;
    ASSERT_EQ_INT(outlen, k);
    ASSERT_TRUE(memcmp(out, want, k) == 0);
    free(out);
}

TL_TEST(no_ext_passes_to_clients_untouched) {
    json_t *j = tl_json("{\"a\":[1,2.5,\"x\",null,true,{\"b\":[]}],\"c\":-7}");
    char *buf = NULL, *out = (char *)"sentinel", err[128] = "";
    size_t len = 0, outlen = 0;
    ASSERT_EQ_INT(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_msgpack_for_client(buf, len, &out, &outlen, err, sizeof err), 0);
    ASSERT_NULL(out); /* no copy: the caller sends buf */
    ASSERT_EQ_INT(outlen, len);
    /* Not the codec's business here: a non-string key, bad UTF-8, bin and float32 pass. */
    const char odd[] = {(char)0x82, 0x01,       (char)0xa2, (char)0xff, (char)0xfe, (char)0xa1,
                        'k',        (char)0x92, (char)0xc4, 1,          'z',        (char)0xca,
                        0x40,       0x50,       0,          0};
    ASSERT_EQ_INT(fleet_msgpack_for_client(odd, sizeof odd, &out, &outlen, err, sizeof err), 0);
    ASSERT_NULL(out);
    free(buf);
}

TL_TEST(ext_f32_counts_as_a_nesting_level) {
    /* 31 arrays around an ext-1: 32 levels, fine; 32 arrays around it: refused, both ways
     * (it would read as a 33rd nested array). */
    char mp[64], err[128] = "", *out = NULL;
    size_t outlen = 0;
    for (int depth = 31; depth <= 32; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) mp[n++] = (char)0x91;
        const char fx[] = {(char)0xd6, 1, 0, 0, (char)0x80, 0x3f};
        memcpy(mp + n, fx, sizeof fx), n += sizeof fx;
        json_t *j = fleet_msgpack_to_json(mp, n, err, sizeof err);
        int rc = fleet_msgpack_for_client(mp, n, &out, &outlen, err, sizeof err);
        if (depth == 31) {
            ASSERT_NOT_NULL(j);
            ASSERT_EQ_INT(rc, 0);
            /* and it packs again */
            char *back = NULL;
            size_t blen = 0;
            ASSERT_EQ_INT(fleet_json_to_msgpack(j, &back, &blen, err, sizeof err), 0);
            free(back);
            json_decref(j);
            free(out);
            out = NULL;
        } else {
            ASSERT_NULL(j);
            ASSERT_EQ_INT(rc, -1);
            ASSERT_STR_CONTAINS(err, "nesting deeper than 32");
        }
    }
}

/* Random bytes must never crash the client rewrite either. */
TL_TEST(random_bytes_do_not_crash_the_client_rewrite) {
    unsigned seed = 54321;
    char buf[64], err[128];
    for (int i = 0; i < 20000; i++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t k = 0; k < n; k++) buf[k] = (char)rand_r(&seed);
        if (i % 2) buf[0] = (char)(0xd4 + rand_r(&seed) % 5), buf[1] = 1; /* often an ext-1 */
        char *out = NULL;
        size_t outlen = 0;
        if (fleet_msgpack_for_client(buf, n, &out, &outlen, err, sizeof err) == 0 && out) {
            ASSERT_TRUE(outlen <= n);
            free(out);
        }
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(bad_keys_and_deep_empty_containers_are_refused),
        TL_CASE(empty_map_keys_survive_a_round_trip),
        TL_CASE(roundtrip_values),
        TL_CASE(depth_limit_both_ways),
        TL_CASE(refuses_truncated_and_trailing),
        TL_CASE(refuses_non_string_keys_ext_and_bad_utf8),
        TL_CASE(bin_reads_as_base64),
        TL_CASE(random_bytes_do_not_crash),
        TL_CASE(ext_f32_reads_as_numbers),
        TL_CASE(ext_f32_bad_length_and_other_ext_types_are_refused),
        TL_CASE(ext_f32_goes_to_clients_as_bin),
        TL_CASE(no_ext_passes_to_clients_untouched),
        TL_CASE(ext_f32_counts_as_a_nesting_level),
        TL_CASE(random_bytes_do_not_crash_the_client_rewrite),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
