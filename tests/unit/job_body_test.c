/* job_body_test: the submit body's rules and the query parser (gateway/job_body.c, query.c). */
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/msgpack_wire.h"
#include "query.h"
#include "job_body.h"
#include "testlib.h"

static gw_problem refuse(const char *body, const char *ctype) {
    gw_job_request r;
    gw_problem p;
    memset(&p, 0, sizeof p);
    if (gw_submit_parse(body, strlen(body), ctype, 3600, &r, &p) == 0)
        FAILF("body %s was accepted", body);
    ASSERT_NULL(r.input);
    return p;
}

TL_TEST(accepts_a_full_job) {
    const char *b = "{\"model\":\"echo\",\"input\":{\"x\":[1,2]},\"priority\":\"high\","
                    "\"timeout_s\":30,\"ttl_s\":600,\"metadata\":{\"k\":\"v\"}}";
    gw_job_request r;
    gw_problem p;
    ASSERT_EQ_INT(gw_submit_parse(b, strlen(b), "application/json; charset=utf-8", 3600, &r, &p),
                  0);
    ASSERT_EQ_STR(r.model, "echo");
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_HIGH);
    ASSERT_EQ_INT(r.timeout_s, 30);
    ASSERT_EQ_INT(r.ttl_s, 600);
    ASSERT_EQ_STR(r.metadata_json, "{\"k\":\"v\"}");
    char err[64];
    json_t *in = fleet_msgpack_to_json(r.input, r.input_len, err, sizeof err);
    json_t *want = json_loads("{\"x\":[1,2]}", 0, NULL);
    ASSERT_EQ_JSON(in, want);
    json_decref(in);
    json_decref(want);
    gw_job_request_free(&r);
}

TL_TEST(defaults) {
    const char *b = "{\"model\":\"echo\",\"input\":null}";
    gw_job_request r;
    gw_problem p;
    ASSERT_EQ_INT(gw_submit_parse(b, strlen(b), NULL, 3600, &r, &p), 0);
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_NORMAL);
    ASSERT_EQ_INT(r.ttl_s, 3600);
    ASSERT_EQ_INT(r.timeout_s, 0);
    ASSERT_NULL(r.metadata_json);
    gw_job_request_free(&r);
}

TL_TEST(refusals_say_what_is_wrong) {
    gw_problem p = refuse("{\"model\": \"echo\", \"input\": tru}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "line 1, column");
    p = refuse("[1,2]", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "got an array");
    p = refuse("{\"input\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'model' is required");
    p = refuse("{\"model\":\"echo\"}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'input' is required");
    p = refuse("{\"model\":5,\"input\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'model' must be a string, got an integer");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"priority\":1}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "'priority' must be a string");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"priority\":\"urgent\"}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    p = refuse("{\"model\":\"echo\",\"input\":1,\"modle\":1}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "unknown field 'modle'");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"ttl_s\":5}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "between 60 and 604800");
    p = refuse("{\"model\":\"echo\",\"input\":1,\"timeout_s\":\"5\"}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    p = refuse("{\"model\":\"Bad Name\",\"input\":1}", NULL);
    ASSERT_EQ_INT(p.status, 422);
    p = refuse("{\"model\":\"echo\",\"input\":1,\"metadata\":[1]}", NULL);
    ASSERT_STR_CONTAINS(p.detail, "'metadata' must be an object");
    p = refuse("{\"model\":\"echo\",\"model\":\"sleep\",\"input\":1}", NULL);
    ASSERT_EQ_INT(p.status, 400);
    p = refuse("", NULL);
    ASSERT_STR_CONTAINS(p.detail, "empty");
    p = refuse("{\"model\":\"echo\",\"input\":1}", "text/plain");
    ASSERT_EQ_INT(p.status, 415);
    p = refuse(
        "{\"model\":\"echo\",\"input\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        NULL);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "nesting");
}

TL_TEST(query_parameters) {
    char v[32];
    ASSERT_EQ_INT(gw_query_get("status=queued&limit=10", "limit", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "10");
    ASSERT_EQ_INT(gw_query_get("status=queued&limit=10", "model", v, sizeof v), 0);
    ASSERT_EQ_INT(gw_query_get("m=a%20b+c", "m", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "a b c");
    ASSERT_EQ_INT(gw_query_get("m=%zz", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("m=%00", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("m=%2", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get("limitx=1&limit=2", "limit", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "2");
    ASSERT_EQ_INT(gw_query_get("flag", "flag", v, sizeof v), 1);
    ASSERT_EQ_STR(v, "");
    ASSERT_EQ_INT(gw_query_get("m=0123456789012345678901234567890123456789", "m", v, sizeof v), -1);
    ASSERT_EQ_INT(gw_query_get(NULL, "m", v, sizeof v), 0);
}

TL_TEST(wait_preference) {
    long secs;
    bool hdr;
    char err[128];
    ASSERT_EQ_INT(gw_wait_seconds(NULL, NULL, 60, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
    ASSERT_EQ_INT(gw_wait_seconds("wait=10", NULL, 60, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 10);
    ASSERT_TRUE(hdr);
    ASSERT_EQ_INT(gw_wait_seconds("respond-async, Wait = 5 ; handling=lenient", NULL, 60, &secs,
                                  &hdr, err, sizeof err),
                  0);
    ASSERT_EQ_INT(secs, 5);
    ASSERT_EQ_INT(gw_wait_seconds("return=minimal", NULL, 60, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
    ASSERT_EQ_INT(gw_wait_seconds("wait=3", "wait=60", 60, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 60);
    ASSERT_FALSE(hdr);
    ASSERT_EQ_INT(gw_wait_seconds("wait=61", NULL, 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "0 to 60");
    ASSERT_EQ_INT(gw_wait_seconds("wait=-1", NULL, 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds("wait=", NULL, 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds("wait=1x", NULL, 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=abc", 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=1000", 60, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "limit=3", 60, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 0);
    /* The longest wait is the gateway's FLEET_MAX_WAIT_S. */
    ASSERT_EQ_INT(gw_wait_seconds("wait=300", NULL, 300, &secs, &hdr, err, sizeof err), 0);
    ASSERT_EQ_INT(secs, 300);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=301", 300, &secs, &hdr, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "0 to 300 (FLEET_MAX_WAIT_S)");
    ASSERT_EQ_INT(gw_wait_seconds("wait=11", NULL, 10, &secs, &hdr, err, sizeof err), -1);
    ASSERT_EQ_INT(gw_wait_seconds(NULL, "wait=99999999999", 3600, &secs, &hdr, err, sizeof err),
                  -1);
}

/* ------------------------------------------------------------ msgpack bodies -------- */

/* Packing: tl_mp (testlib.h). */

/* Parses n bytes of m as a msgpack body from an exact-size copy (ASan sees overreads). */
static int parse_mp(const char *data, size_t n, gw_job_request *r, gw_problem *p) {
    char *copy = malloc(n ? n : 1);
    memcpy(copy, data, n);
    memset(p, 0, sizeof *p);
    int rc = gw_submit_parse(copy, n, "application/msgpack", 3600, r, p);
    free(copy);
    if (rc < 0) ASSERT_NULL(r->input);
    return rc;
}

static gw_problem refuse_mp(const tl_mp *m) {
    gw_job_request r;
    gw_problem p;
    if (parse_mp(m->sb.data, m->sb.size, &r, &p) == 0) {
        gw_job_request_free(&r);
        FAILF("msgpack body was accepted");
    }
    return p;
}

TL_TEST(msgpack_body_keeps_bin_input) {
    static const char blob[] = {'\r', '\n', 0, (char)0xff, (char)0xc4};
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 6);
    tl_mp_str(m, "model"), tl_mp_str(m, "ocr");
    tl_mp_str(m, "priority"), tl_mp_str(m, "low");
    tl_mp_str(m, "ttl_s"), msgpack_pack_int(&m->pk, 120);
    tl_mp_str(m, "metadata");
    msgpack_pack_map(&m->pk, 1), tl_mp_str(m, "k"), tl_mp_str(m, "v");
    tl_mp_str(m, "webhook"), tl_mp_str(m, "https://example.com/hook");
    tl_mp_str(m, "input");
    size_t in_at = m->sb.size;
    msgpack_pack_map(&m->pk, 2);
    tl_mp_str(m, "image");
    msgpack_pack_bin_with_body(&m->pk, blob, sizeof blob);
    tl_mp_str(m, "pages");
    msgpack_pack_array(&m->pk, 2), msgpack_pack_int(&m->pk, 1), msgpack_pack_double(&m->pk, 2.5);
    size_t in_len = m->sb.size - in_at;
    gw_job_request r;
    gw_problem p;
    if (parse_mp(m->sb.data, m->sb.size, &r, &p) < 0) FAILF("refused: %s", p.detail);
    ASSERT_EQ_STR(r.model, "ocr");
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_LOW);
    ASSERT_EQ_INT(r.ttl_s, 120);
    ASSERT_EQ_STR(r.metadata_json, "{\"k\":\"v\"}");
    ASSERT_EQ_STR(r.webhook, "https://example.com/hook");
    ASSERT_EQ_STR(r.webhook_events, "completed");
    /* the stored input is the input's own bytes: bin stays bin */
    ASSERT_EQ_INT(r.input_len, in_len);
    ASSERT_TRUE(memcmp(r.input, m->sb.data + in_at, in_len) == 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    ASSERT_EQ_INT(msgpack_unpack_next(&up, r.input, r.input_len, NULL), MSGPACK_UNPACK_SUCCESS);
    ASSERT_EQ_INT(up.data.type, MSGPACK_OBJECT_MAP);
    msgpack_object *img = &up.data.via.map.ptr[0].val;
    ASSERT_EQ_INT(img->type, MSGPACK_OBJECT_BIN);
    ASSERT_EQ_INT(img->via.bin.size, sizeof blob);
    ASSERT_TRUE(memcmp(img->via.bin.ptr, blob, sizeof blob) == 0);
    msgpack_unpacked_destroy(&up);
    gw_job_request_free(&r);
    /* the other media type spellings */
    ASSERT_EQ_INT(gw_submit_parse(m->sb.data, m->sb.size, "application/x-msgpack", 3600, &r, &p),
                  0);
    gw_job_request_free(&r);
    ASSERT_EQ_INT(gw_submit_parse(m->sb.data, m->sb.size, "Application/MsgPack; q=1", 3600, &r, &p),
                  0);
    gw_job_request_free(&r);
}

TL_TEST(msgpack_body_same_rules_as_json) {
    tl_mp *m;
    gw_problem p;
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 1), tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk);
    p = refuse_mp(m);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "'model' is required");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 1), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    ASSERT_STR_CONTAINS(refuse_mp(m).detail, "'input' is required");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2), tl_mp_str(m, "model"), msgpack_pack_int(&m->pk, 5);
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk);
    ASSERT_STR_CONTAINS(refuse_mp(m).detail, "'model' must be a string, got an integer");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk), tl_mp_str(m, "modle"),
        msgpack_pack_nil(&m->pk);
    ASSERT_STR_CONTAINS(refuse_mp(m).detail, "unknown field 'modle'");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk), tl_mp_str(m, "priority"),
        tl_mp_str(m, "urgent");
    p = refuse_mp(m);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "priority 'urgent' is not one of");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk), tl_mp_str(m, "timeout_s"), tl_mp_str(m, "5");
    p = refuse_mp(m);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "'timeout_s' must be an integer, got a string");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk), tl_mp_str(m, "model"), tl_mp_str(m, "sleep");
    p = refuse_mp(m);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "field 'model' appears twice");
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input"), msgpack_pack_nil(&m->pk), tl_mp_str(m, "metadata");
    msgpack_pack_array(&m->pk, 0);
    ASSERT_STR_CONTAINS(refuse_mp(m).detail, "'metadata' must be an object");
}

TL_TEST(msgpack_body_refusals) {
    gw_job_request r;
    gw_problem p;
    struct {
        const char *bytes;
        size_t n;
        int status;
        const char *want;
    } cases[] = {
#define S(lit) lit, sizeof(lit) - 1
#define HEAD            \
    "\x82\xa5model\xa4" \
    "echo\xa5input" /* 18 bytes; the input starts at byte 18 */
        {S(""), 400, "body is empty; send a msgpack map"},
        {S("\x92\x01\x02"), 400,
         "msgpack body must be a map with 'model' and 'input', got an array"},
        {S("\xa3"
           "abc"),
         400, "must be a map with 'model' and 'input', got a string"},
        {S("\xc1"), 400, "must be a map"},
        {S("\xdf\xff\xff\xff\xff"), 400, "truncated at byte 5 (a map at byte 0 runs past the end)"},
        {S("\xde\x00"), 400, "truncated at byte 2"},
        /* {"model": "echo", 1: 2} */
        {S("\x82\xa5model\xa4"
           "echo\x01\x02"),
         400, "msgpack map key at byte 12 is not a string (got an integer)"},
        /* {"model": "echo", "input": {1: 2}} */
        {S(HEAD "\x81\x01\x02"), 400,
         "field 'input': the map key at byte 19 is not a string (got an integer)"},
        /* {"model": "echo", "input": "ab<truncated>"} */
        {S(HEAD "\xa5"
                "ab"),
         400,
         "body is not valid msgpack: field 'input': truncated at byte 21 (a string at byte 18 runs past the end)"},
        /* an array32 claiming 4 billion items in a 23-byte body */
        {S(HEAD "\xdd\xff\xff\xff\xff"), 400, "truncated at byte 23 (an array at byte 18"},
        /* a bin32 claiming 4 GB */
        {S(HEAD "\xc6\xff\xff\xff\xff"), 400, "truncated at byte 23 (binary data at byte 18"},
        /* trailing bytes */
        {S(HEAD "\xc0\xc0\xc0"), 400, "2 trailing bytes after the map (from byte 19)"},
        /* a string that is not UTF-8 */
        {S(HEAD "\xa2\xff\xfe"), 400, "the string at byte 18 is not valid UTF-8"},
        /* ext */
        {S(HEAD "\xd4\x01\x00"), 400, "the ext value at byte 18 has no JSON form"},
        /* NaN */
        {S(HEAD "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), 400, "the float at byte 18 is not finite"},
        /* 0xc1 is never used */
        {S(HEAD "\xc1"), 400, "byte 0xc1 at byte 18 is not a msgpack type"},
        /* a nested key twice: {"a": 1, "a": 2} */
        {S(HEAD "\x82\xa1"
                "a\x01\xa1"
                "a\x02"),
         400, "the map at byte 18 has the key 'a' twice (at bytes 19 and 22)"},
        /* a key holding a NUL */
        {S(HEAD "\x81\xa2"
                "a\x00\x01"),
         400, "the map key at byte 19 holds a NUL byte"},
        /* a top-level key that is not UTF-8 */
        {S("\x82\xa5model\xa4"
           "echo\xa2\xff\xfe\xc0"),
         400, "the string at byte 12 is not valid UTF-8"},
        /* a top-level key holding a NUL */
        {S("\x82\xa5model\xa4"
           "echo\xa2\x00x\xc0"),
         400, "msgpack map key at byte 12 holds a NUL byte"},
#undef HEAD
#undef S
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) {
        if (parse_mp(cases[i].bytes, cases[i].n, &r, &p) == 0) {
            gw_job_request_free(&r);
            FAILF("case %zu was accepted", i);
        }
        if (p.status != cases[i].status || !strstr(p.detail, cases[i].want))
            FAILF("case %zu: %d '%s', wanted %d '%s'", i, p.status, p.detail, cases[i].status,
                  cases[i].want);
        /* the body's syntax is "invalid-msgpack"; not being a job is "invalid-body" */
        ASSERT_EQ_STR(p.slug,
                      strstr(p.detail, "not valid msgpack") || strstr(p.detail, "msgpack map key")
                          ? "invalid-msgpack"
                          : "invalid-body");
    }
}

/* {"model": "echo", "input": <depth nested arrays around 1>} */
static tl_mp *nested_input(int depth) {
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 2), tl_mp_str(m, "model"), tl_mp_str(m, "echo"), tl_mp_str(m, "input");
    for (int i = 0; i < depth; i++) msgpack_pack_array(&m->pk, 1);
    msgpack_pack_int(&m->pk, 1);
    return m;
}

TL_TEST(msgpack_body_depth) {
    gw_job_request r;
    gw_problem p;
    tl_mp *m = nested_input(FLEET_CODEC_MAX_DEPTH);
    if (parse_mp(m->sb.data, m->sb.size, &r, &p) < 0) FAILF("depth 32 refused: %s", p.detail);
    char err[128];
    json_t *j = fleet_msgpack_to_json(r.input, r.input_len, err, sizeof err);
    if (!j) FAILF("the stored input does not read back: %s", err);
    json_decref(j);
    gw_job_request_free(&r);
    p = refuse_mp(nested_input(FLEET_CODEC_MAX_DEPTH + 1));
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "field 'input' cannot be stored: nesting deeper than 32 levels");
    p = refuse_mp(nested_input(100000)); /* deep, but no deeper recursion in the reader */
    ASSERT_EQ_INT(p.status, 422);
    /* nesting elsewhere is malformed, not a job rule */
    m = tl_mp_new();
    msgpack_pack_map(&m->pk, 3), tl_mp_str(m, "model"), tl_mp_str(m, "echo"), tl_mp_str(m, "input");
    msgpack_pack_nil(&m->pk), tl_mp_str(m, "metadata");
    for (int i = 0; i < 40; i++) msgpack_pack_map(&m->pk, 1), tl_mp_str(m, "k");
    msgpack_pack_nil(&m->pk);
    p = refuse_mp(m);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "field 'metadata': nesting deeper than 32 levels");
}

/* Every prefix of a valid msgpack body is refused without reading past its end. */
TL_TEST(msgpack_every_truncation_is_refused) {
    tl_mp *m = tl_mp_new();
    msgpack_pack_map(&m->pk, 4);
    tl_mp_str(m, "model"), tl_mp_str(m, "echo");
    tl_mp_str(m, "input");
    msgpack_pack_map(&m->pk, 3);
    tl_mp_str(m, "b"), msgpack_pack_bin_with_body(&m->pk, "\x00\x01\x02", 3);
    tl_mp_str(m, "f"), msgpack_pack_double(&m->pk, 1.5);
    tl_mp_str(m, "a"), msgpack_pack_array(&m->pk, 2), msgpack_pack_int64(&m->pk, -70000);
    tl_mp_str(m, "\xc3\xa9t\xc3\xa9");
    tl_mp_str(m, "metadata"), msgpack_pack_map(&m->pk, 1), tl_mp_str(m, "k"),
        msgpack_pack_true(&m->pk);
    tl_mp_str(m, "timeout_s"), msgpack_pack_uint16(&m->pk, 300);
    gw_job_request r;
    gw_problem p;
    if (parse_mp(m->sb.data, m->sb.size, &r, &p) < 0) FAILF("refused: %s", p.detail);
    ASSERT_EQ_INT(r.timeout_s, 300);
    gw_job_request_free(&r);
    for (size_t n = 0; n < m->sb.size; n++) {
        if (parse_mp(m->sb.data, n, &r, &p) == 0) FAILF("a %zu-byte prefix was accepted", n);
        ASSERT_EQ_INT(p.status, 400);
    }
}

/* ------------------------------------------------------------ multipart bodies ------ */

#define MB "XyZzY-fleet-boundary"
#define MCT "multipart/form-data; boundary=" MB

typedef struct body {
    char *p;
    size_t n;
} body;

static void body_free(void *arg) { free(((body *)arg)->p); }

static body *body_new(void) {
    body *b = tl_alloc(sizeof *b);
    tl_defer(body_free, b);
    return b;
}

static void body_put(body *b, const void *data, size_t n) {
    b->p = realloc(b->p, b->n + n + 1);
    ASSERT_NOT_NULL(b->p);
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void body_field(body *b, const char *name, const char *value) {
    char *s = tl_printf("--" MB "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n",
                        name, value);
    body_put(b, s, strlen(s));
}

static void body_file(body *b, const char *name, const char *filename, const char *ctype,
                      const void *data, size_t n) {
    char *s = tl_printf("--" MB "\r\nContent-Disposition: form-data; name=\"%s\"; "
                        "filename=\"%s\"\r\n%s%s%s\r\n",
                        name, filename, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                        ctype ? "\r\n" : "");
    body_put(b, s, strlen(s));
    body_put(b, data, n);
    body_put(b, "\r\n", 2);
}

static void body_close(body *b) { body_put(b, "--" MB "--\r\n", strlen("--" MB "--\r\n")); }

static gw_problem refuse_form(const body *b) {
    gw_job_request r;
    gw_problem p;
    memset(&p, 0, sizeof p);
    if (gw_submit_parse(b->p, b->n, MCT, 3600, &r, &p) == 0) {
        gw_job_request_free(&r);
        FAILF("multipart body was accepted");
    }
    ASSERT_NULL(r.input);
    return p;
}

static void zone_free(void *z) { msgpack_zone_free(z); }

/* The stored input, unpacked (freed when the case ends). */
static msgpack_object *stored_input(const gw_job_request *r) {
    msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    tl_defer(zone_free, z);
    msgpack_object *o = tl_alloc(sizeof *o);
    size_t off = 0;
    ASSERT_EQ_INT(msgpack_unpack(r->input, r->input_len, &off, z, o), MSGPACK_UNPACK_SUCCESS);
    ASSERT_EQ_INT(off, r->input_len);
    return o;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
    ASSERT_EQ_INT(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
            return &kv->val;
    }
    FAILF("no key '%s'", key);
}

static void assert_file(const msgpack_object *f, const char *name, const char *ctype,
                        const void *data, size_t n) {
    ASSERT_EQ_INT(f->via.map.size, 4);
    const msgpack_object *v = map_get(f, "name");
    ASSERT_EQ_INT(v->type, MSGPACK_OBJECT_STR);
    ASSERT_EQ_STR(tl_printf("%.*s", (int)v->via.str.size, v->via.str.ptr), name);
    v = map_get(f, "content_type");
    ASSERT_EQ_STR(tl_printf("%.*s", (int)v->via.str.size, v->via.str.ptr), ctype);
    v = map_get(f, "size");
    ASSERT_EQ_INT(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ASSERT_EQ_INT(v->via.u64, n);
    v = map_get(f, "bytes");
    ASSERT_EQ_INT(v->type, MSGPACK_OBJECT_BIN);
    ASSERT_EQ_INT(v->via.bin.size, n);
    ASSERT_TRUE(n == 0 || memcmp(v->via.bin.ptr, data, n) == 0);
}

TL_TEST(multipart_curl_form) {
    static const char png[] =
        "\x89PNG\r\n\x1a\n\r\n--XyZzY-fleet\r\n--\r\n"; /* CRLFs, near-boundaries */
    body *b = body_new();
    body_field(b, "model", "echo");
    body_file(b, "files", "a.pdf", "application/pdf", "%PDF-1.4\r\n", 10);
    body_file(b, "files", "b.png", "image/png", png, sizeof png - 1);
    body_field(b, "options", "{\"priority\":\"high\",\"timeout_s\":30,\"metadata\":{\"k\":1}}");
    body_close(b);
    gw_job_request r;
    gw_problem p;
    if (gw_submit_parse(b->p, b->n, MCT, 3600, &r, &p) < 0) FAILF("refused: %s", p.detail);
    ASSERT_EQ_STR(r.model, "echo");
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_HIGH);
    ASSERT_EQ_INT(r.timeout_s, 30);
    ASSERT_EQ_INT(r.ttl_s, 3600);
    ASSERT_EQ_STR(r.metadata_json, "{\"k\":1}");
    msgpack_object *in = stored_input(&r);
    ASSERT_EQ_INT(in->via.map.size, 1);
    const msgpack_object *files = map_get(in, "files");
    ASSERT_EQ_INT(files->type, MSGPACK_OBJECT_ARRAY);
    ASSERT_EQ_INT(files->via.array.size, 2);
    assert_file(&files->via.array.ptr[0], "a.pdf", "application/pdf", "%PDF-1.4\r\n", 10);
    assert_file(&files->via.array.ptr[1], "b.png", "image/png", png, sizeof png - 1);
    /* it reads back as JSON too (bytes as base64), as results do */
    char err[128];
    json_t *j = fleet_msgpack_to_json(r.input, r.input_len, err, sizeof err);
    if (!j) FAILF("input does not read back as JSON: %s", err);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(j, "files"), 0),
                                                    "bytes")),
                  "JVBERi0xLjQNCg==");
    json_decref(j);
    gw_job_request_free(&r);
}

TL_TEST(multipart_input_field_and_files) {
    body *b = body_new();
    body_field(b, "input", "{\"lang\":\"fr\",\"pages\":[1,2]}");
    body_file(b, "file", "r\xc3\xa9sum\xc3\xa9.txt", NULL, "", 0); /* an empty file */
    body_file(b, "files", "", "application/octet-stream", "", 0);  /* a browser's empty input */
    body_field(b, "model", "ocr");
    body_close(b);
    gw_job_request r;
    gw_problem p;
    if (gw_submit_parse(b->p, b->n, MCT, 3600, &r, &p) < 0) FAILF("refused: %s", p.detail);
    ASSERT_EQ_INT(r.priority, FLEET_PRIORITY_NORMAL);
    ASSERT_NULL(r.metadata_json);
    msgpack_object *in = stored_input(&r);
    ASSERT_EQ_INT(in->via.map.size, 3);
    ASSERT_EQ_INT(map_get(in, "lang")->type, MSGPACK_OBJECT_STR);
    ASSERT_EQ_INT(map_get(in, "pages")->via.array.size, 2);
    const msgpack_object *files = map_get(in, "files");
    ASSERT_EQ_INT(files->via.array.size, 1);
    assert_file(&files->via.array.ptr[0], "r\xc3\xa9sum\xc3\xa9.txt", "application/octet-stream",
                "", 0);
    gw_job_request_free(&r);
    /* no files at all: "files" is an empty array */
    b = body_new();
    body_field(b, "model", "echo");
    body_close(b);
    ASSERT_EQ_INT(gw_submit_parse(b->p, b->n, MCT, 3600, &r, &p), 0);
    in = stored_input(&r);
    ASSERT_EQ_INT(in->via.map.size, 1);
    ASSERT_EQ_INT(map_get(in, "files")->via.array.size, 0);
    gw_job_request_free(&r);
}

TL_TEST(multipart_big_input_object_and_megabyte_file) {
    /* 20 input keys (a map16 header once "files" is added) and a 1 MB file */
    body *b = body_new();
    char in_json[512] = "{";
    for (int i = 0; i < 20; i++)
        snprintf(in_json + strlen(in_json), sizeof in_json - strlen(in_json), "%s\"k%d\":%d",
                 i ? "," : "", i, i);
    strcat(in_json, "}");
    body_field(b, "input", in_json);
    body_field(b, "model", "echo");
    size_t n = 1u << 20;
    unsigned char *data = malloc(n);
    tl_defer(free, data);
    uint32_t x = 88172645u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    body_file(b, "files", "big.bin", "application/x-test", data, n);
    body_close(b);
    gw_job_request r;
    gw_problem p;
    if (gw_submit_parse(b->p, b->n, MCT, 3600, &r, &p) < 0) FAILF("refused: %s", p.detail);
    msgpack_object *in = stored_input(&r);
    ASSERT_EQ_INT(in->via.map.size, 21);
    ASSERT_EQ_INT(map_get(in, "k19")->via.u64, 19);
    const msgpack_object *files = map_get(in, "files");
    assert_file(&files->via.array.ptr[0], "big.bin", "application/x-test", data, n);
    gw_job_request_free(&r);
}

TL_TEST(multipart_refusals) {
    body *b;
    gw_problem p;
    b = body_new();
    body_file(b, "files", "a.txt", NULL, "x", 1);
    body_close(b);
    p = refuse_form(b);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "form field 'model' is required");
    ASSERT_EQ_STR(p.slug, "invalid-body");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "model", "sleep");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail,
                        "form field 'model' appears twice; only 'files' may repeat");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{}");
    body_field(b, "options", "{}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'options' appears twice");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "priority", "high");
    body_close(b);
    ASSERT_STR_CONTAINS(
        refuse_form(b).detail,
        "unknown form field 'priority'; accepted fields are model, input, options and files");
    b = body_new();
    body_field(b, "model", "Bad Model");
    body_close(b);
    p = refuse_form(b);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "model 'Bad Model' is not a valid model name");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{\"priority\":");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'options' is not valid JSON: line 1");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "[1]");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'options' must be a JSON object");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{\"prio\":\"high\"}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'options' has unknown field 'prio'");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{\"model\":\"x\"}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail,
                        "must not hold 'model'; send it as its own form field");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{\"priority\":\"urgent\"}");
    body_close(b);
    p = refuse_form(b);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "form field 'options': priority 'urgent' is not one of high");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "options", "{\"ttl_s\":1}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail,
                        "form field 'options': field 'ttl_s' must be between 60");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "input", "[1,2]");
    body_close(b);
    ASSERT_STR_CONTAINS(
        refuse_form(b).detail,
        "form field 'input' must be a JSON object (the files are added to it as 'files'), got an array");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "input", "{\"files\":[]}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'input' must not hold 'files'");
    b = body_new();
    body_field(b, "model", "echo");
    body_field(b, "input", "{\"a\":1,\"a\":2}");
    body_close(b);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "form field 'input' is not valid JSON");
    /* structure: passed on from the multipart reader with the part named */
    b = body_new();
    body_field(b, "model", "echo");
    p = refuse_form(b);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(
        p.detail,
        "multipart body is malformed: part 1 ('model'): no boundary line after its content");
    ASSERT_EQ_STR(p.slug, "invalid-multipart");
    b = body_new();
    body_put(b, "", 0);
    ASSERT_STR_CONTAINS(refuse_form(b).detail, "body is empty");
    /* the Content-Type's boundary */
    gw_job_request r;
    b = body_new();
    body_field(b, "model", "echo");
    body_close(b);
    ASSERT_EQ_INT(gw_submit_parse(b->p, b->n, "multipart/form-data", 3600, &r, &p), -1);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "needs a boundary parameter");
    ASSERT_EQ_INT(gw_submit_parse(b->p, b->n, "multipart/form-data; boundary=other", 3600, &r, &p),
                  -1);
    ASSERT_STR_CONTAINS(p.detail, "no boundary line '--other'");
    ASSERT_EQ_INT(gw_submit_parse(b->p, b->n, "multipart/form-data; boundary=\"" MB "\"", 3600, &r,
                                  &p),
                  0);
    gw_job_request_free(&r);
}

TL_TEST(unsupported_content_types_name_the_accepted_ones) {
    gw_problem p = refuse("{\"model\":\"echo\",\"input\":1}", "text/plain");
    ASSERT_EQ_INT(p.status, 415);
    ASSERT_STR_CONTAINS(p.detail, "content type 'text/plain' is not accepted; send "
                                  "application/json, application/msgpack or multipart/form-data");
    p = refuse("{}", "multipart/mixed; boundary=x");
    ASSERT_EQ_INT(p.status, 415);
    p = refuse("{}", "application/x-www-form-urlencoded");
    ASSERT_EQ_INT(p.status, 415);
    p = refuse("{}", "text/\xff\r\nX: y");
    ASSERT_EQ_INT(p.status, 415);
    ASSERT_STR_CONTAINS(p.detail, "'text/???X: y'");
}

TL_TEST(nul_bytes_in_json_are_refused) {
    static const char nul_body[] = "{\"model\":\"echo\",\"input\":{\"a\":1\0}}";
    gw_job_request jr;
    gw_problem p;
    ASSERT_EQ_INT(gw_submit_parse(nul_body, sizeof nul_body - 1, "application/json", 60, &jr, &p),
                  -1);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "NUL");
}

/* ------------------------------------------------------------ heap use -------------- */

/* The most heap a msgpack body's refusal takes above what was live before it, read off
 * ASan's allocator at every allocation (the suite's build has ASan; without it the cases
 * that use this are skipped). */
#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator interface (sanitizer/allocator_interface.h, which gcc does not ship) */
size_t __sanitizer_get_current_allocated_bytes(void);
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));
static size_t s_peak;
static void on_malloc(const volatile void *ptr, size_t size) {
    (void)ptr, (void)size;
    size_t now = __sanitizer_get_current_allocated_bytes();
    if (now > s_peak) s_peak = now;
}
static void on_free(const volatile void *ptr) { (void)ptr; }
#endif

static size_t refusal_heap(const unsigned char *msg, size_t len, gw_problem *p) {
#if defined(__SANITIZE_ADDRESS__)
    gw_job_request r;
    size_t before = __sanitizer_get_current_allocated_bytes();
    s_peak = before;
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    int rc = gw_submit_parse((const char *)msg, len, "application/msgpack", 3600, &r, p);
    __sanitizer_install_malloc_and_free_hooks(NULL, NULL);
    if (rc == 0) FAILF("msgpack body was accepted");
    return s_peak - before;
#else
    (void)msg, (void)len, (void)p;
    TL_SKIP("needs AddressSanitizer's allocator to read heap use (-DFLEET_SANITIZE=ON)");
#endif
}

/* {"model": "echo", "input": 1, name: <n bytes written by the caller at the returned
 * offset>} in a buffer of *len bytes (caller frees). */
static unsigned char *body_with(const char *name, size_t n, size_t *len, size_t *at) {
    size_t head = fleet_mp_put_map(NULL, 3) + fleet_mp_put_str(NULL, "model", 5) +
                  fleet_mp_put_str(NULL, "echo", 4) + fleet_mp_put_str(NULL, "input", 5) + 1 +
                  fleet_mp_put_str(NULL, name, strlen(name));
    unsigned char *b = malloc(head + n), *o = b;
    ASSERT_NOT_NULL(b);
    o += fleet_mp_put_map(o, 3);
    o += fleet_mp_put_str(o, "model", 5);
    o += fleet_mp_put_str(o, "echo", 4);
    o += fleet_mp_put_str(o, "input", 5);
    *o++ = 1;
    o += fleet_mp_put_str(o, name, strlen(name));
    *at = (size_t)(o - b);
    *len = head + n;
    return b;
}

/* An unknown field is refused at its name: its value is never read, so neither its
 * conversion to JSON nor an error inside it comes first. */
TL_TEST(msgpack_unknown_field_is_refused_before_its_value) {
    enum { N = 1 << 20 };
    size_t len, at;
    unsigned char *b = body_with("modle", 5 + N, &len, &at);
    b[at] = 0xdd; /* an array of N nils */
    b[at + 1] = (unsigned char)(N >> 24), b[at + 2] = (unsigned char)(N >> 16);
    b[at + 3] = (unsigned char)(N >> 8), b[at + 4] = (unsigned char)N;
    memset(b + at + 5, 0xc0, N);
    gw_problem p;
    size_t heap = refusal_heap(b, len, &p);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_EQ_STR(p.slug, "invalid-body");
    ASSERT_STR_CONTAINS(p.detail, "unknown field 'modle'");
    ASSERT_TRUE(heap < 64 * 1024);
    b[at + 5] = 0xc1; /* a malformed value is not reached either */
    heap = refusal_heap(b, len, &p);
    ASSERT_STR_CONTAINS(p.detail, "unknown field 'modle'");
    free(b);
}

/* metadata that cannot fit in GW_METADATA_MAX once encoded, or that is not an object, is
 * refused as before but without being converted to JSON first. */
TL_TEST(msgpack_big_metadata_is_refused_unconverted) {
    enum { N = 1 << 20 };
    size_t len, at;
    unsigned char *b = body_with("metadata", 1 + 2 + 5 + N, &len, &at);
    b[at] = 0x81; /* {"k": [N nils]} */
    b[at + 1] = 0xa1, b[at + 2] = 'k';
    b[at + 3] = 0xdd;
    b[at + 4] = (unsigned char)(N >> 24), b[at + 5] = (unsigned char)(N >> 16);
    b[at + 6] = (unsigned char)(N >> 8), b[at + 7] = (unsigned char)N;
    memset(b + at + 8, 0xc0, N);
    gw_problem p;
    size_t heap = refusal_heap(b, len, &p);
    ASSERT_EQ_INT(p.status, 422);
    ASSERT_STR_CONTAINS(p.detail, "field 'metadata' must be at most 4096 bytes once encoded");
    ASSERT_TRUE(heap < 64 * 1024);
    free(b);
    b = body_with("metadata", 5 + N, &len, &at); /* [N nils] */
    b[at] = 0xdd;
    b[at + 1] = (unsigned char)(N >> 24), b[at + 2] = (unsigned char)(N >> 16);
    b[at + 3] = (unsigned char)(N >> 8), b[at + 4] = (unsigned char)N;
    memset(b + at + 5, 0xc0, N);
    heap = refusal_heap(b, len, &p);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "field 'metadata' must be an object, got an array");
    ASSERT_TRUE(heap < 64 * 1024);
    free(b);
}

/* A map that declares many entries and fails at its first value reserves nothing for the
 * entries it only claims. */
TL_TEST(msgpack_map_claims_are_not_reserved) {
    enum { N = 1 << 19 };
    size_t len, at;
    unsigned char *b = body_with("metadata", 5 + 3 + 2 * (size_t)N, &len, &at);
    b[at] = 0xdf; /* a map of N entries: "k", then 0xc1, then filler the count can claim */
    b[at + 1] = (unsigned char)(N >> 24), b[at + 2] = (unsigned char)(N >> 16);
    b[at + 3] = (unsigned char)(N >> 8), b[at + 4] = (unsigned char)N;
    b[at + 5] = 0xa1, b[at + 6] = 'k', b[at + 7] = 0xc1;
    memset(b + at + 8, 0xc0, 2 * (size_t)N);
    gw_problem p;
    size_t heap = refusal_heap(b, len, &p);
    ASSERT_EQ_INT(p.status, 400);
    ASSERT_STR_CONTAINS(p.detail, "byte 0xc1 at byte");
    ASSERT_TRUE(heap < 64 * 1024);
    free(b);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(nul_bytes_in_json_are_refused),
        TL_CASE(accepts_a_full_job),
        TL_CASE(defaults),
        TL_CASE(refusals_say_what_is_wrong),
        TL_CASE(query_parameters),
        TL_CASE(wait_preference),
        TL_CASE(msgpack_body_keeps_bin_input),
        TL_CASE(msgpack_body_same_rules_as_json),
        TL_CASE(msgpack_body_refusals),
        TL_CASE(msgpack_body_depth),
        TL_CASE(msgpack_every_truncation_is_refused),
        TL_CASE(msgpack_unknown_field_is_refused_before_its_value),
        TL_CASE(msgpack_big_metadata_is_refused_unconverted),
        TL_CASE(msgpack_map_claims_are_not_reserved),
        TL_CASE(multipart_curl_form),
        TL_CASE(multipart_input_field_and_files),
        TL_CASE(multipart_big_input_object_and_megabyte_file),
        TL_CASE(multipart_refusals),
        TL_CASE(unsupported_content_types_name_the_accepted_ones),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
