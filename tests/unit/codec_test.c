/* codec_test: JSON <-> msgpack round trips and refusals (shared/src/codec.c). */
#include <msgpack.h>
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
        "null", "true", "false", "0", "-1", "9223372036854775807", "-9223372036854775808",
        "1.5", "-0.25", "\"\"", "\"h\\u00e9llo \\u2603 \\ud83d\\ude00\"", "[]", "{}",
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
    const char intkey[] = {(char)0x81, 0x01, 0x02};           /* {1: 2} */
    ASSERT_NULL(fleet_msgpack_to_json(intkey, sizeof intkey, err, sizeof err));
    ASSERT_STR_CONTAINS(err, "map key");
    const char ext[] = {(char)0xd4, 0x05, 0x00};               /* fixext1 */
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
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
