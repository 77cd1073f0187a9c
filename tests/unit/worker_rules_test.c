/* worker_rules_test: fleet-worker's pure rules (worker/batch_run.c): what a model's outcome
 * means for the job, and the retry backoff. */
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "models/models.h"
#include "testlib.h"
#include "worker.h"

static wk_disposition disp(int outcome, int stop, fleet_status *st, char *err) {
    return wk_disposition_of(outcome, stop, 7, "model says no", st, err, 256);
}

TL_TEST(outcomes_map_to_final_writes) {
    fleet_status st;
    char err[256];
    ASSERT_EQ_INT(disp(FLEET_MODEL_OK, 0, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_SUCCEEDED);
    /* Done is done: a late cancel, timeout or shutdown does not undo a result. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_OK, WK_STOP_CANCEL | WK_STOP_SHUTDOWN, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_SUCCEEDED);

    ASSERT_EQ_INT(disp(FLEET_MODEL_FAILED, 0, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_FAILED);
    ASSERT_EQ_STR(err, "model says no");

    ASSERT_EQ_INT(disp(FLEET_MODEL_RETRY, 0, &st, err), WK_RETRY);
    ASSERT_EQ_STR(err, "model says no");
    /* A lost lease wins over everything: nothing may be written. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_OK, WK_STOP_STALE, &st, err), WK_DROP);
    ASSERT_EQ_INT(disp(FLEET_MODEL_RETRY, WK_STOP_STALE, &st, err), WK_DROP);
}

TL_TEST(stopped_jobs_end_by_why_they_stopped) {
    fleet_status st;
    char err[256];
    /* A cancelled job never retries, even when the model called it retryable. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_STOPPED, WK_STOP_CANCEL, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_CANCELLED);
    ASSERT_EQ_INT(disp(FLEET_MODEL_RETRY, WK_STOP_CANCEL, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_CANCELLED);
    /* A timed-out job fails with the limit in the message; no retry. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_STOPPED, WK_STOP_TIMEOUT, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_FAILED);
    ASSERT_STR_CONTAINS(err, "timeout_s of 7 seconds");
    /* Cancel beats timeout. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_STOPPED, WK_STOP_TIMEOUT | WK_STOP_CANCEL, &st, err), WK_FINISH);
    ASSERT_EQ_INT(st, FLEET_STATUS_CANCELLED);
    /* Shutdown hands the job back. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_STOPPED, WK_STOP_SHUTDOWN, &st, err), WK_HAND_BACK);
    ASSERT_EQ_INT(disp(FLEET_MODEL_PENDING, WK_STOP_SHUTDOWN, &st, err), WK_HAND_BACK);
    /* Model bugs fail the job with a message that says so. */
    ASSERT_EQ_INT(disp(FLEET_MODEL_STOPPED, 0, &st, err), WK_FINISH);
    ASSERT_STR_CONTAINS(err, "model bug");
    ASSERT_EQ_INT(disp(FLEET_MODEL_PENDING, 0, &st, err), WK_FINISH);
    ASSERT_STR_CONTAINS(err, "no result");
}

TL_TEST(retry_backoff_doubles_is_capped_and_jittered) {
    /* rnd 0 gives the lower bound (half the backoff), a huge rnd stays within it. */
    ASSERT_EQ_INT(wk_retry_delay_ms(1, 1000, 60000, 0), 500);
    ASSERT_EQ_INT(wk_retry_delay_ms(2, 1000, 60000, 0), 1000);
    ASSERT_EQ_INT(wk_retry_delay_ms(3, 1000, 60000, 0), 2000);
    ASSERT_EQ_INT(wk_retry_delay_ms(20, 1000, 60000, 0), 30000);
    ASSERT_EQ_INT(wk_retry_delay_ms(1000000, 1000, 60000, 0), 30000);
    for (unsigned long r = 0; r < 5000; r += 7) {
        long d = wk_retry_delay_ms(3, 1000, 60000, r * 2654435761UL);
        ASSERT_GE_INT(d, 2000);
        ASSERT_LE_INT(d, 4000);
    }
    /* Jitter spreads: not every draw is the same. */
    ASSERT_NE_INT(wk_retry_delay_ms(3, 1000, 60000, 1), wk_retry_delay_ms(3, 1000, 60000, 1234));
    ASSERT_EQ_INT(wk_retry_delay_ms(5, 0, 60000, 99), 0);
    /* No overflow with absurd settings. */
    ASSERT_GE_INT(wk_retry_delay_ms(200, 86400000, 86400000, 5), 43200000);
}

/* Parses the sleep model's JSON input (through the codec, as the gateway stores it). */
static int sleep_parse(const char *json, wk_sleep_input *in, char *err) {
    char *mp = NULL;
    size_t len = 0;
    char cerr[256];
    json_t *j = tl_json(json);
    if (fleet_json_to_msgpack(j, &mp, &len, cerr, sizeof cerr) < 0) FAILF("codec: %s", cerr);
    int rc = wk_sleep_parse(mp, len, in, err, 256);
    free(mp);
    return rc;
}

TL_TEST(refusal_backoff_starts_at_min_doubles_and_is_capped) {
    ASSERT_EQ_INT(wk_backoff_next(0, 100, 2000), 100);
    ASSERT_EQ_INT(wk_backoff_next(-5, 100, 2000), 100);
    ASSERT_EQ_INT(wk_backoff_next(100, 100, 2000), 200);
    ASSERT_EQ_INT(wk_backoff_next(1000, 100, 2000), 2000);
    ASSERT_EQ_INT(wk_backoff_next(1500, 100, 2000), 2000);
    ASSERT_EQ_INT(wk_backoff_next(2000, 100, 2000), 2000);
    ASSERT_EQ_INT(wk_backoff_next(2500, 250, 5000), 5000);
}

/* A batch's lease tokens come from one getrandom per 32: each is 32 hex characters, and
 * no two are alike, across the chunks too. */
TL_TEST(lease_tokens_of_a_batch_are_fresh_and_distinct) {
    enum { N = 70 };
    static char tok[N][WK_TOKEN_LEN + 1];
    ASSERT_EQ_INT(wk_tokens_new(tok, N), 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ_INT(strlen(tok[i]), WK_TOKEN_LEN);
        ASSERT_EQ_INT(strspn(tok[i], "0123456789abcdef"), WK_TOKEN_LEN);
        for (int j = 0; j < i; j++) ASSERT_TRUE(strcmp(tok[i], tok[j]) != 0);
    }
    char one[WK_TOKEN_LEN + 1];
    ASSERT_EQ_INT(wk_token_new(one), 0);
    ASSERT_EQ_INT(strlen(one), WK_TOKEN_LEN);
}

TL_TEST(sleep_input_has_failure_knobs_for_tests) {
    wk_sleep_input in;
    char err[256];
    ASSERT_EQ_INT(sleep_parse("{\"ms\": 5, \"crash\": true}", &in, err), 0);
    ASSERT_TRUE(in.crash);
    ASSERT_EQ_INT(sleep_parse("{\"ms\": 5, \"fail\": \"x\", \"retryable\": true, "
                              "\"fail_attempts\": 2}",
                              &in, err),
                  0);
    ASSERT_EQ_INT(in.fail_attempts, 2);
    ASSERT_TRUE(in.retryable);
    ASSERT_EQ_INT(sleep_parse("{\"ms\": 5, \"fail_attempts\": 2}", &in, err), -1);
    ASSERT_STR_CONTAINS(err, "only applies together with input.fail");
    ASSERT_EQ_INT(sleep_parse("{\"ms\": 5, \"fail\": \"x\", \"fail_attempts\": 0}", &in, err), -1);
    ASSERT_STR_CONTAINS(err, "fail_attempts must be");
    ASSERT_EQ_INT(sleep_parse("{\"ms\": 5, \"crash\": 1}", &in, err), -1);
    ASSERT_STR_CONTAINS(err, "crash must be true or false");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(outcomes_map_to_final_writes),
        TL_CASE(stopped_jobs_end_by_why_they_stopped),
        TL_CASE(retry_backoff_doubles_is_capped_and_jittered),
        TL_CASE(refusal_backoff_starts_at_min_doubles_and_is_capped),
        TL_CASE(sleep_input_has_failure_knobs_for_tests),
        TL_CASE(lease_tokens_of_a_batch_are_fresh_and_distinct),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
