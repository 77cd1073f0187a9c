/* job_defaults_test: the protocol's defaults of a job's fields are the same in the
 * scripts (shared/scripts/lib.lua, DEFAULT_*) and in libfleet (fleet/job.h,
 * FLEET_JOB_DEFAULT_*), and the C reader of a job hash takes a missing field for its
 * default: a job hash written without its default fields reads as one that holds them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/job.h"
#include "fleet/job_json.h"
#include "fleet/keys.h"
#include "fleet/state.h"
#include "testlib.h"

/* The text of lib.lua's DEFAULT_<name> ("86400" for TTL_S): read from its lines
 * "local DEFAULT_A, DEFAULT_B = 'a', 'b'". NULL when lib.lua does not define it so. */
static const char *lua_default(const char *lib, const char *name) {
    static char out[64];
    for (const char *l = lib; l; l = strchr(l, '\n')) {
        if (*l == '\n') l++;
        if (strncmp(l, "local DEFAULT_", 14) != 0) continue;
        const char *eq = strchr(l, '='), *eol = strchr(l, '\n');
        if (!eq || (eol && eq > eol)) continue;
        /* The name's place in the list before '=' picks its value after it. */
        int at = -1, k = 0;
        for (const char *p = l + 6; p < eq; k++) {
            while (*p == ' ' || *p == ',') p++;
            size_t n = strcspn(p, " ,=");
            if (n == strlen(name) + 8 && strncmp(p, "DEFAULT_", 8) == 0 &&
                strncmp(p + 8, name, strlen(name)) == 0)
                at = k;
            p += n;
            while (*p == ' ') p++;
            if (*p != ',') break;
        }
        if (at < 0) continue;
        const char *v = eq + 1;
        for (int i = 0; i <= at; i++) {
            v = strchr(v, '\'');
            if (!v || (eol && v > eol)) return NULL;
            const char *end = strchr(v + 1, '\'');
            if (!end || (size_t)(end - v - 1) >= sizeof out) return NULL;
            if (i == at) {
                memcpy(out, v + 1, (size_t)(end - v - 1));
                out[end - v - 1] = '\0';
                return out;
            }
            v = end + 1;
        }
    }
    return NULL;
}

#define STR_(x) #x
#define STR(x) STR_(x)

TL_TEST(lib_lua_defaults_equal_job_h) {
    const char *lib = tl_read_file(TEST_SOURCE_DIR "/shared/scripts/lib.lua", NULL);
    ASSERT_NOT_NULL(lib);
    static const struct {
        const char *lua, *c;
    } pairs[] = {
        {"TTL_S", STR(FLEET_JOB_DEFAULT_TTL_S)},
        {"MAX_ATTEMPTS", STR(FLEET_JOB_DEFAULT_MAX_ATTEMPTS)},
        {"TIMEOUT_S", STR(FLEET_JOB_DEFAULT_TIMEOUT_S)},
        {"TOMB_S", STR(FLEET_JOB_DEFAULT_TOMB_S)},
        {"PRIORITY", FLEET_JOB_DEFAULT_PRIORITY},
    };
    for (size_t i = 0; i < TL_COUNT(pairs); i++) {
        const char *v = lua_default(lib, pairs[i].lua);
        if (!v) FAILF("lib.lua defines no DEFAULT_%s as quoted text", pairs[i].lua);
        ASSERT_EQ_STR(v, pairs[i].c);
    }
}

/* A tombstone's bucket is spelled twice, as the defaults are: the scripts that write and
 * delete tombstones take GONE_BUCKET characters of the id (lib.lua), the C builders of get,
 * retry and delete FLEET_GONE_BUCKET_LEN (fleet/keys.h). They must name the same hash. */
TL_TEST(tombstone_bucket_length_is_the_same_in_lib_lua_and_keys_h) {
    const char *lib = tl_read_file(TEST_SOURCE_DIR "/shared/scripts/lib.lua", NULL);
    ASSERT_NOT_NULL(lib);
    const char *def = strstr(lib, "\nlocal GONE_BUCKET = ");
    if (!def) FAILF("lib.lua defines no 'local GONE_BUCKET = <n>'");
    ASSERT_EQ_INT(atoi(def + strlen("\nlocal GONE_BUCKET = ")), FLEET_GONE_BUCKET_LEN);
}

/* Builds an HGETALL-shaped reply from pairs (the same struct hiredis hands us). */
static redisReply *fields(const char **kv, size_t n, redisReply *el, redisReply **ptrs,
                          redisReply *arr) {
    for (size_t i = 0; i < n; i++) {
        el[i] =
            (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)kv[i], .len = strlen(kv[i])};
        ptrs[i] = &el[i];
    }
    *arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = ptrs};
    return arr;
}

TL_TEST(missing_fields_read_as_their_defaults) {
    /* A queued job as submit.lua writes it with every default (get.lua puts the id first). */
    const char *lean[] = {"id",         "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                          "status",     "queued",
                          "model",      "echo",
                          "tenant",     "acme",
                          "request_id", "r1",
                          "created_ms", "1732380601123",
                          "queue_seq",  "7"};
    /* The same job as a submit of the previous layout wrote it. */
    const char *full[] = {"id",           "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                          "status",       "queued",
                          "model",        "echo",
                          "tenant",       "acme",
                          "request_id",   "r1",
                          "priority",     "normal",
                          "created_ms",   "1732380601123",
                          "updated_ms",   "1732380601123",
                          "attempts",     "0",
                          "max_attempts", "3",
                          "queue_seq",    "7",
                          "ttl_s",        "86400",
                          "timeout_s",    "0",
                          "queue_ttl_s",  "86400"};
    redisReply el[2][32], *ptrs[2][32], arr[2];
    fleet_job_view a, b;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(lean, TL_COUNT(lean), el[0], ptrs[0], &arr[0]),
                                             &a),
                  0);
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(full, TL_COUNT(full), el[1], ptrs[1], &arr[1]),
                                             &b),
                  0);
    ASSERT_EQ_STR(a.priority, "normal");
    ASSERT_EQ_INT(a.attempts, 0);
    ASSERT_EQ_INT(a.max_attempts, 3);
    ASSERT_EQ_INT(a.timeout_s, 0);
    ASSERT_EQ_INT(a.ttl_s, 86400);
    ASSERT_EQ_INT(a.updated_ms, 1732380601123LL);
    json_t *ja = fleet_job_to_json(&a), *jb = fleet_job_to_json(&b);
    ASSERT_EQ_JSON(ja, jb);
    json_decref(ja);
    json_decref(jb);
}

TL_TEST(present_fields_win_over_defaults) {
    const char *kv[] = {"id",           "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                        "status",       "running",
                        "model",        "echo",
                        "priority",     "low",
                        "created_ms",   "1000",
                        "updated_ms",   "2000",
                        "attempts",     "2",
                        "max_attempts", "5",
                        "timeout_s",    "30",
                        "ttl_s",        "600"};
    redisReply el[32], *ptrs[32], arr;
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(kv, TL_COUNT(kv), el, ptrs, &arr), &v), 0);
    ASSERT_EQ_STR(v.priority, "low");
    ASSERT_EQ_INT(v.attempts, 2);
    ASSERT_EQ_INT(v.max_attempts, 5);
    ASSERT_EQ_INT(v.timeout_s, 30);
    ASSERT_EQ_INT(v.ttl_s, 600);
    ASSERT_EQ_INT(v.updated_ms, 2000);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(lib_lua_defaults_equal_job_h),
        TL_CASE(tombstone_bucket_length_is_the_same_in_lib_lua_and_keys_h),
        TL_CASE(missing_fields_read_as_their_defaults), TL_CASE(present_fields_win_over_defaults)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
