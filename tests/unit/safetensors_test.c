/* safetensors_test: the safetensors reader (worker/embed/safetensors.c) on the real
 * all-MiniLM-L6-v2 header (when ../shared/models is present) and on small files written
 * here, honest and lying. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "testlib.h"

#define REAL_HEADER TEST_SOURCE_DIR "/../shared/models/all-MiniLM-L6-v2/model.safetensors.header"

/* Writes a safetensors file: the 8-byte length (hlen, or strlen(json) when hlen is 0),
 * the JSON and dlen bytes of data. Returns its path. */
static const char *write_st(const char *name, uint64_t hlen, const char *json, const void *data,
                            size_t dlen) {
    const char *path = tl_printf("%s/%s", tl_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    uint64_t n = hlen ? hlen : strlen(json);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    ASSERT_EQ_INT(fwrite(le, 1, 8, f), 8);
    ASSERT_EQ_INT(fwrite(json, 1, strlen(json), f), strlen(json));
    if (dlen) ASSERT_EQ_INT(fwrite(data, 1, dlen, f), dlen);
    ASSERT_EQ_INT(fclose(f), 0);
    return path;
}

/* Opens a file that must be refused; returns the message. */
static const char *refused(const char *path) {
    st_file *st = (st_file *)1;
    char err[512] = "";
    ASSERT_EQ_INT(st_open(path, &st, err, sizeof err), -1);
    ASSERT_NULL(st);
    ASSERT_STR_CONTAINS(err, path); /* the message names the file */
    tl_log("refused: %s", err);
    return tl_printf("%s", err);
}

static void assert_shape2(const st_file *st, const char *name, int64_t a, int64_t b) {
    const st_tensor *t = st_find(st, name);
    if (!t) FAILF("tensor %s not found", name);
    ASSERT_EQ_INT(t->ndim, b < 0 ? 1 : 2);
    ASSERT_EQ_INT(t->shape[0], a);
    if (b >= 0) ASSERT_EQ_INT(t->shape[1], b);
}

TL_TEST(real_minilm_header_parses) {
    size_t len;
    char *buf = tl_read_file(REAL_HEADER, &len);
    if (!buf) TL_SKIP("skipped: ../shared/models not present");
    ASSERT_GE_INT(len, 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)buf[i];
    ASSERT_EQ_INT(hlen, 11408);
    /* The data size the header implies: its largest end offset. */
    json_t *root = tl_json_own(json_loadb(buf + 8, hlen, 0, NULL));
    ASSERT_NOT_NULL(root);
    uint64_t data = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        json_t *o = json_object_get(v, "data_offsets");
        if (o && (uint64_t)json_integer_value(json_array_get(o, 1)) > data)
            data = (uint64_t)json_integer_value(json_array_get(o, 1));
    }
    uint64_t file_size = 8 + hlen + data;
    ASSERT_EQ_INT(file_size, 90868376); /* the published file's size */

    st_file *st;
    char err[512] = "";
    if (st_parse_header(buf, len, file_size, &st, err, sizeof err) != 0)
        FAILF("real header refused: %s", err);
    ASSERT_EQ_INT(st_count(st), 104);
    ASSERT_EQ_STR(st_metadata(st, "format"), "pt");
    assert_shape2(st, "embeddings.word_embeddings.weight", 30522, 384);
    assert_shape2(st, "embeddings.position_embeddings.weight", 512, 384);
    assert_shape2(st, "embeddings.token_type_embeddings.weight", 2, 384);
    assert_shape2(st, "embeddings.LayerNorm.weight", 384, -1);
    assert_shape2(st, "encoder.layer.0.attention.self.query.weight", 384, 384);
    assert_shape2(st, "encoder.layer.5.attention.self.value.bias", 384, -1);
    assert_shape2(st, "encoder.layer.3.intermediate.dense.weight", 1536, 384);
    assert_shape2(st, "encoder.layer.5.output.dense.weight", 384, 1536);
    assert_shape2(st, "encoder.layer.5.output.LayerNorm.bias", 384, -1);
    ASSERT_NULL(st_find(st, "bert.embeddings.word_embeddings.weight"));
    ASSERT_NULL(st_find(st, "encoder.layer.6.output.dense.weight"));
    ASSERT_NULL(st_find(st, "__metadata__"));

    const st_tensor *w = st_find(st, "embeddings.word_embeddings.weight");
    ASSERT_EQ_INT(w->dtype, ST_F32);
    ASSERT_EQ_INT(w->nbytes, (size_t)30522 * 384 * 4);
    ASSERT_EQ_INT(w->offset, 796672);
    ASSERT_NULL(w->data); /* header only */
    const st_tensor *pid = st_find(st, "embeddings.position_ids");
    ASSERT_NOT_NULL(pid);
    ASSERT_EQ_INT(pid->dtype, ST_I64);
    ASSERT_EQ_INT(pid->shape[0], 1);
    ASSERT_EQ_INT(pid->shape[1], 512);
    /* Every tensor but position_ids is F32; st_at walks them in name order. */
    for (size_t i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        if (t != pid) ASSERT_EQ_INT(t->dtype, ST_F32);
        if (i) ASSERT_LT_INT(strcmp(st_at(st, i - 1)->name, t->name), 0);
    }
    ASSERT_NULL(st_at(st, 104));
    st_close(st);

    /* One byte of weights short: the last tensor runs past the end. */
    ASSERT_EQ_INT(st_parse_header(buf, len, file_size - 1, &st, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "past the end of the data region");
    /* Fewer header bytes than the length says. */
    ASSERT_EQ_INT(st_parse_header(buf, 100, file_size, &st, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "only 92 header bytes given");
}

TL_TEST(tiny_file_reads_back) {
    /* a: F32 [2, 3] at [0, 24); b: F16 [2] at [24, 28); c: BF16 scalar at [28, 30);
     * d: F32 [3] overlapping a's second row, declared first (unsorted is fine). */
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
    unsigned char data[30];
    memcpy(data, a, sizeof a);
    const uint16_t b[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 in half precision */
    memcpy(data + 24, b, sizeof b);
    const uint16_t c = 0x3f80; /* 1.0 in bfloat16 */
    memcpy(data + 28, &c, sizeof c);
    const char *json = "{\"d\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"__metadata__\":{\"format\":\"pt\"},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                       "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[28,30]}}";
    const char *path = write_st("tiny.safetensors", 0, json, data, sizeof data);

    st_file *st;
    char err[512] = "";
    if (st_open(path, &st, err, sizeof err) != 0) FAILF("tiny file refused: %s", err);
    ASSERT_EQ_INT(st_count(st), 4);
    ASSERT_EQ_STR(st_at(st, 0)->name, "a");
    ASSERT_EQ_STR(st_at(st, 3)->name, "d");

    const st_tensor *ta = st_find(st, "a");
    ASSERT_NOT_NULL(ta);
    ASSERT_EQ_INT(ta->ndim, 2);
    ASSERT_EQ_INT(ta->shape[0], 2);
    ASSERT_EQ_INT(ta->shape[1], 3);
    ASSERT_EQ_INT(ta->shape[2], 1);
    ASSERT_EQ_INT(ta->nbytes, 24);
    float got[6];
    memcpy(got, ta->data, sizeof got);
    ASSERT_TRUE(memcmp(got, a, sizeof a) == 0);

    const st_tensor *td = st_find(st, "d");
    float row[3];
    memcpy(row, td->data, sizeof row);
    ASSERT_TRUE(row[0] == 0.0f && row[1] == 1e-3f && row[2] == -7.0f);

    const st_tensor *tb = st_find(st, "b");
    ASSERT_EQ_INT(tb->dtype, ST_F16);
    uint16_t hb[2];
    memcpy(hb, tb->data, sizeof hb);
    ASSERT_EQ_INT(hb[0], 0x3c00);
    ASSERT_EQ_INT(hb[1], 0xc000);

    const st_tensor *tc = st_find(st, "c");
    ASSERT_EQ_INT(tc->dtype, ST_BF16);
    ASSERT_EQ_INT(tc->ndim, 0);
    ASSERT_EQ_INT(tc->nbytes, 2);
    ASSERT_EQ_STR(st_dtype_name(tc->dtype), "BF16");
    ASSERT_EQ_INT(st_dtype_size(ST_I64), 8);

    ASSERT_NULL(st_find(st, "e"));
    ASSERT_NULL(st_find(st, "__metadata__"));
    ASSERT_EQ_STR(st_metadata(st, "format"), "pt");
    ASSERT_NULL(st_metadata(st, "nope"));
    st_close(st);
    st_close(NULL);

    /* An empty header ({}) is a valid file with no tensors. */
    path = write_st("empty.safetensors", 0, "{}", NULL, 0);
    ASSERT_EQ_INT(st_open(path, &st, err, sizeof err), 0);
    ASSERT_EQ_INT(st_count(st), 0);
    st_close(st);
}

TL_TEST(lying_files_are_refused) {
    const float d[6] = {0};
    const char *ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";

    /* Length over the 100 MB limit, and length past the end of the file. */
    ASSERT_STR_CONTAINS(refused(write_st("huge", 200000000, ok, d, 24)),
                        "header length 200000000 over the 100000000-byte limit");
    ASSERT_STR_CONTAINS(refused(write_st("long", 5000, ok, d, 24)),
                        "header length 5000 past the end of the file");
    /* Too short for the length itself; not there at all. */
    const char *shorty = tl_printf("%s/short", tl_tmpdir());
    FILE *f = fopen(shorty, "wb");
    fputs("abc", f);
    fclose(f);
    ASSERT_STR_CONTAINS(refused(shorty), "shorter than the 8-byte header length");
    ASSERT_STR_CONTAINS(refused(tl_printf("%s/absent", tl_tmpdir())), "No such file");

    /* Truncated data: the header promises 24 bytes, the file has 12. */
    ASSERT_STR_CONTAINS(refused(write_st("trunc", 0, ok, d, 12)),
                        "tensor t: data_offsets [0, 24] past the end of the data region "
                        "(12 bytes)");
    /* Offsets past the end, with the rest of the header fine. */
    ASSERT_STR_CONTAINS(
        refused(write_st("past", 0,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}",
                         d, 24)),
        "tensor b: data_offsets [24, 28] past the end");
    ASSERT_STR_CONTAINS(
        refused(write_st("backwards", 0,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", d,
                         24)),
        "end before begin");

    /* dtype: named when unsupported; missing. */
    ASSERT_STR_CONTAINS(
        refused(write_st("f64", 0,
                         "{\"t\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}", d,
                         24)),
        "tensor t: unsupported dtype F64");
    ASSERT_STR_CONTAINS(refused(write_st("nodtype", 0,
                                         "{\"t\":{\"shape\":[3],\"data_offsets\":[0,12]}}", d, 24)),
                        "tensor t: dtype missing");

    /* Shape and size disagree. */
    ASSERT_STR_CONTAINS(
        refused(write_st("mismatch", 0,
                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", d,
                         24)),
        "tensor t: 20 bytes in data_offsets but shape and dtype F32 need 24");
    ASSERT_STR_CONTAINS(
        refused(write_st("f16size", 0,
                         "{\"t\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,12]}}", d,
                         24)),
        "need 6");
    ASSERT_STR_CONTAINS(
        refused(write_st("negdim", 0,
                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d,
                         24)),
        "shape[0] is not a non-negative integer");
    ASSERT_STR_CONTAINS(
        refused(write_st("overflow", 0,
                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                         "\"data_offsets\":[0,4]}}",
                         d, 24)),
        "shape overflows");
    ASSERT_STR_CONTAINS(refused(write_st("5d", 0,
                                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],"
                                         "\"data_offsets\":[0,4]}}",
                                         d, 24)),
                        "tensor t: 5 dimensions, at most 4");
    ASSERT_STR_CONTAINS(refused(write_st("nooffsets", 0,
                                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", d, 24)),
                        "data_offsets must be two non-negative integers");

    /* JSON: broken, not an object, duplicate names, bad entries. */
    ASSERT_STR_CONTAINS(refused(write_st("badjson", 0, "{\"t\": {\"dtype\": ", d, 24)),
                        "header is not valid JSON");
    ASSERT_STR_CONTAINS(refused(write_st("array", 0, "[1, 2]", d, 24)),
                        "header is not a JSON object");
    ASSERT_STR_CONTAINS(
        refused(write_st("dup", 0,
                         "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         d, 24)),
        "duplicate");
    ASSERT_STR_CONTAINS(refused(write_st("notobj", 0, "{\"t\": 3}", d, 24)),
                        "tensor t: entry is not an object");
    ASSERT_STR_CONTAINS(refused(write_st("meta", 0, "{\"__metadata__\": 3}", d, 24)),
                        "__metadata__ is not an object");
    /* The header length cuts the JSON short: the JSON is then invalid. */
    ASSERT_STR_CONTAINS(refused(write_st("cut", 20, ok, d, 24)), "not valid JSON");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(real_minilm_header_parses),
        TL_CASE(tiny_file_reads_back),
        TL_CASE(lying_files_are_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
