/* read_ahead_test.c: a worker whose batches are full and short keeps a second batch's
 * claim in flight while it runs one (loop.c, wk_ahead_next_build; docs/protocol.md, "Each
 * turn of the loop"), and still ends every job once, with exact counters. */
#include "testlib.h"

enum { MAX_BATCH = 2, JOBS = 3000 };

typedef struct {
    tl_fleet *f;
    long long most_running; /* the most jobs seen running at once */
    long long succeeded;
} drain_watch;

/* Samples the model's running counter; true once more than one batch was seen running
 * (claimed and not finished) or the drain is over. */
static bool watch_running(void *arg) {
    drain_watch *d = arg;
    long long running = tl_redis_int(d->f->rc, "HINCRBY {%s}:stats echo:running 0", d->f->prefix);
    if (running > d->most_running) d->most_running = running;
    d->succeeded = tl_redis_int(d->f->rc, "HINCRBY {%s}:stats echo:succeeded 0", d->f->prefix);
    return d->most_running > MAX_BATCH || d->succeeded == JOBS;
}

static bool drained(void *arg) {
    drain_watch *d = arg;
    return tl_redis_int(d->f->rc, "HINCRBY {%s}:stats echo:succeeded 0", d->f->prefix) == JOBS;
}

/* A backlog of echo jobs, batches of two: each batch is full and runs in well under
 * WK_AHEAD2_RUN_MS, so the claim of the batch after next is in flight while one runs, and
 * more than one batch is seen running at once (with one claim ahead, as before, a
 * batch's finish and the next batch's claim run back to back: never more than one). Every
 * job then succeeds once and the counters add up. */
TL_TEST(short_full_batches_keep_a_second_claim_in_flight) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_MAX_BATCH=2"}});
    for (int i = 0; i < JOBS; i++) tl_job_submit(f, "echo", "{\"text\": \"x\"}");
    tl_fleet_add_worker(f, "echo");
    drain_watch d = {.f = f};
    ASSERT_WAIT_FOR(watch_running, &d, TL_WAIT_MS);
    tl_log("most jobs running at once: %lld (batches of %d)", d.most_running, MAX_BATCH);
    ASSERT_GT_INT(d.most_running, MAX_BATCH);
    ASSERT_LE_INT(d.most_running, 2 * MAX_BATCH);
    ASSERT_WAIT_FOR(drained, &d, TL_WAIT_MS);
    json_t *stats = tl_get(f, "/v1/stats")->json;
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.running"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.queued"), 0);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.succeeded"), JOBS);
    ASSERT_EQ_INT(tl_jint(stats, "models.echo.failed"), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:echo", f->prefix), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(short_full_batches_keep_a_second_claim_in_flight),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
