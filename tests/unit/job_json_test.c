/* job_json_test: the wire shape of a job (shared/src/job_json.c, state.c's view). */
#include <string.h>

#include "fleet/job_json.h"
#include "fleet/state.h"
#include "fleet/utf8.h"
#include "testlib.h"

/* Builds an HGETALL-shaped reply from pairs (the same struct hiredis hands us). */
static redisReply *fields(const char **kv, size_t n) {
    static redisReply el[64], *ptrs[64], arr;
    for (size_t i = 0; i < n; i++) {
        el[i] =
            (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)kv[i], .len = strlen(kv[i])};
        ptrs[i] = &el[i];
    }
    arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = ptrs};
    return &arr;
}

TL_TEST(running_job_shape) {
    const char *kv[] = {"id",
                        "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                        "status",
                        "running",
                        "model",
                        "sleep",
                        "priority",
                        "normal",
                        "created_ms",
                        "1732380601123",
                        "started_ms",
                        "1732380601140",
                        "attempts",
                        "1",
                        "worker",
                        "w1",
                        "progress_percent",
                        "40",
                        "progress_message",
                        "step 2 of 5",
                        "progress_done",
                        "2",
                        "progress_total",
                        "5",
                        "ttl_s",
                        "600",
                        "timeout_s",
                        "0",
                        "lease",
                        "secret",
                        "metadata",
                        "{\"team\":\"ocr\"}",
                        "request_id",
                        "r1"};
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(kv, TL_COUNT(kv)), &v), 0);
    json_t *j = fleet_job_to_json(&v);
    json_t *want = json_loads(
        "{\"id\":\"01JDQ7ZK5W3V8X9Y0A1B2C3D4E\",\"status\":\"running\",\"model\":\"sleep\","
        "\"priority\":\"normal\",\"created_at\":\"2024-11-23T16:50:01.123Z\","
        "\"started_at\":\"2024-11-23T16:50:01.140Z\",\"progress\":{\"percent\":40.0,"
        "\"message\":\"step 2 of 5\",\"done\":2,\"total\":5},\"attempts\":1,\"worker\":\"w1\","
        "\"max_attempts\":3,\"timeout_s\":0,\"ttl_s\":600,\"metadata\":{\"team\":\"ocr\"},\"request_id\":\"r1\","
        "\"links\":{\"self\":\"/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E\","
        "\"result\":\"/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E/result\"}}",
        0, NULL);
    ASSERT_NOT_NULL(want);
    /* The lease token never reaches the wire; max_attempts, absent from the hash, reads as
     * the protocol's default (fleet/job.h). */
    ASSERT_EQ_JSON(j, want);
    json_decref(j);
    json_decref(want);
}

TL_TEST(queued_job_has_position_and_no_progress) {
    const char *kv[] = {"id",         "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                        "status",     "queued",
                        "model",      "echo",
                        "created_ms", "0",
                        "attempts",   "0"};
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(kv, TL_COUNT(kv)), &v), 0);
    v.queue_position = 3;
    json_t *j = fleet_job_to_json(&v);
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "queue_position")), 3);
    ASSERT_NULL(json_object_get(j, "progress"));
    ASSERT_NULL(json_object_get(j, "started_at"));
    ASSERT_EQ_STR(json_string_value(json_object_get(j, "created_at")), "1970-01-01T00:00:00.000Z");
    json_decref(j);
}

/* A model's text that is not UTF-8 (or was cut inside a character before this change)
 * still shows, its bad bytes as '?', instead of the field vanishing. */
TL_TEST(text_that_is_not_utf8_still_shows) {
    const char *kv[] = {"id",
                        "01JDQ7ZK5W3V8X9Y0A1B2C3D4E",
                        "status",
                        "failed",
                        "model",
                        "echo",
                        "created_ms",
                        "0",
                        "attempts",
                        "1",
                        "error",
                        "caf\xc3",
                        "progress_percent",
                        "10",
                        "progress_message",
                        "\xff step"};
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(kv, TL_COUNT(kv)), &v), 0);
    json_t *j = fleet_job_to_json(&v);
    ASSERT_EQ_STR(json_string_value(json_object_get(j, "error")), "caf?");
    ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(j, "progress"), "message")),
                  "? step");
    json_decref(j);
}

/* Bounded text is cut between characters, never inside one. */
TL_TEST(utf8_cut_keeps_whole_characters) {
    const char *s = "ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; /* a b é € 😀 */
    ASSERT_EQ_INT(fleet_utf8_cut(s, 100), 11);
    ASSERT_EQ_INT(fleet_utf8_cut(s, 11), 11);
    for (size_t max = 7; max <= 10; max++) ASSERT_EQ_INT(fleet_utf8_cut(s, max), 7);
    for (size_t max = 4; max <= 6; max++) ASSERT_EQ_INT(fleet_utf8_cut(s, max), 4);
    ASSERT_EQ_INT(fleet_utf8_cut(s, 3), 2);
    ASSERT_EQ_INT(fleet_utf8_cut(s, 0), 0);
    ASSERT_EQ_INT(fleet_utf8_cut("caf\xc3", 100), 3); /* left incomplete by an earlier cut */
}

/* RFC 3339 date-times in, ms since the epoch out; what the API writes reads back. */
TL_TEST(rfc3339_times_parse) {
    long long ms = -1;
    ASSERT_EQ_INT(fleet_parse_time_ms("2026-11-23T16:50:01.123Z", &ms), 0);
    ASSERT_TRUE(ms == 1795452601123LL);
    char out[32];
    fleet_format_time_ms(out, ms);
    ASSERT_EQ_STR(out, "2026-11-23T16:50:01.123Z");
    ASSERT_EQ_INT(fleet_parse_time_ms("2026-11-23T17:50:01.123456+01:00", &ms), 0);
    ASSERT_TRUE(ms == 1795452601123LL);
    ASSERT_EQ_INT(fleet_parse_time_ms("2026-11-23t14:20:01.1-02:30", &ms), 0);
    ASSERT_TRUE(ms == 1795452601100LL);
    ASSERT_EQ_INT(fleet_parse_time_ms("1970-01-01T00:00:00z", &ms), 0);
    ASSERT_TRUE(ms == 0);
    ASSERT_EQ_INT(fleet_parse_time_ms("2024-02-29T00:00:00Z", &ms), 0);
    static const char *const bad[] = {"",
                                      "2026-11-23",
                                      "2026-11-23T16:50:01",
                                      "2026-11-23 16:50:01Z",
                                      "2026-11-23T16:50:01.Z",
                                      "2026-11-23T24:00:00Z",
                                      "2026-11-23T16:60:00Z",
                                      "2026-11-23T16:50:60Z",
                                      "2026-02-29T00:00:00Z",
                                      "2026-04-31T00:00:00Z",
                                      "2026-11-23T16:50:01+0100",
                                      "2026-11-23T16:50:01+24:00",
                                      "2026-11-23T16:50:01Zjunk",
                                      "1969-12-31T23:59:59Z",
                                      "1970-01-01T00:30:00+01:00",
                                      "+026-11-23T16:50:01Z"};
    for (size_t i = 0; i < TL_COUNT(bad); i++)
        if (fleet_parse_time_ms(bad[i], &ms) == 0) FAILF("'%s' was read as %lld", bad[i], ms);
}

TL_TEST(not_a_job) {
    const char *kv[] = {"model", "echo"};
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(kv, TL_COUNT(kv)), &v), -1);
    const char *odd[] = {"id"};
    ASSERT_EQ_INT(fleet_job_view_from_fields(fields(odd, 1), &v), -1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(running_job_shape),
        TL_CASE(queued_job_has_position_and_no_progress),
        TL_CASE(not_a_job),
        TL_CASE(rfc3339_times_parse),
        TL_CASE(text_that_is_not_utf8_still_shows),
        TL_CASE(utf8_cut_keeps_whole_characters),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
