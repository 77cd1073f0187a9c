/* stream_test.c: what the model streams hold, and for how long (docs/reliability.md,
 * "Nothing grows without bound"): entries leave a stream only once acknowledged, never while
 * undelivered or pending; a pending entry deleted by hand does not lose its job; a dead
 * worker's consumer is removed only after its pending entries were taken over. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static long long xlen(tl_fleet *f) {
    return tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix);
}

static long long pending(tl_fleet *f) {
    redisReply *r = tl_redis_cmd(f->rc, "XPENDING {%s}:stream:sleep workers", f->prefix);
    return r->element[0]->integer;
}

/* A paused worker's job stays pending on the stream while a second worker finishes forty
 * others around it; only acknowledged entries were removed. */
TL_TEST(only_acknowledged_entries_leave_the_stream) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=60000"}});
    tl_proc *a = tl_fleet_add_worker(f, "sleep");
    const char *held = tl_job_submit(f, "sleep", "{\"ms\": 1500, \"steps\": 3}");
    tl_job_wait_status(f, held, "running", TL_WAIT_MS);
    kill(a->pid, SIGSTOP);

    /* Undelivered entries stay too: nobody reads them yet. (FLEET_READY_TARGET of them go
     * onto the stream; the others wait in the tenant's fair-share list.) */
    const char *ids[40];
    for (int i = 0; i < 40; i++) ids[i] = tl_job_submit(f, "sleep", "{\"ms\": 5}");
    long long waiting = tl_redis_int(f->rc, "LLEN {%s}:wait:sleep:default:1", f->prefix);
    ASSERT_EQ_INT(xlen(f), 1 + 8);
    ASSERT_EQ_INT(waiting, 40 - 8);
    ASSERT_EQ_INT(pending(f), 1);

    tl_fleet_add_worker(f, "sleep");
    for (int i = 0; i < 40; i++) tl_job_wait_status(f, ids[i], "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(xlen(f), 1);
    ASSERT_EQ_INT(pending(f), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HLEN {%s}:entries:sleep", f->prefix), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:wait:sleep:default:1", f->prefix), 0);

    kill(a->pid, SIGCONT);
    tl_job_wait_status(f, held, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(xlen(f), 0);
    ASSERT_EQ_INT(pending(f), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "HLEN {%s}:entries:sleep", f->prefix), 0);
}

/* Someone deletes a pending entry by hand (XDEL) after its worker died. XAUTOCLAIM
 * reports the deleted id; the job gets a new entry and still completes. */
TL_TEST(pending_entry_deleted_by_hand_does_not_lose_its_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=1000"}});
    tl_proc *a = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 2000, \"steps\": 4}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    tl_proc_kill9(a);
    redisReply *e = tl_redis_cmd(f->rc, "HGET {%s}:job:%s entry_id", f->prefix, id);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XDEL {%s}:stream:sleep %s", f->prefix, e->str), 1);
    ASSERT_EQ_INT(xlen(f), 0);
    ASSERT_EQ_INT(pending(f), 1); /* XDEL leaves the pending list alone */

    tl_proc *b = tl_fleet_add_worker(f, "sleep");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_EQ_INT(xlen(f), 0);
    ASSERT_EQ_INT(pending(f), 0);
    char *log = tl_read_file(b->log_path, NULL);
    ASSERT_NOT_NULL(strstr(log, "deleted by hand; its job was queued again"));
}

/* The idle time Redis reports for consumer name of the sleep stream's group, -1 when the
 * group has no such consumer. */
static long long consumer_idle_ms(tl_fleet *f, const char *name) {
    redisReply *c = tl_redis_cmd(f->rc, "XINFO CONSUMERS {%s}:stream:sleep workers", f->prefix);
    for (size_t i = 0; i < c->elements; i++) {
        redisReply *fields = c->element[i];
        if (strcmp(fields->element[1]->str, name) != 0) continue;
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
            if (strcmp(fields->element[k]->str, "idle") == 0)
                return fields->element[k + 1]->integer;
        FAILF("XINFO CONSUMERS gave no idle time for %s", name);
    }
    return -1;
}

/* A dead worker's consumer keeps its pending entries until they are taken over, and only
 * then is removed from the group. */
TL_TEST(dead_consumer_is_removed_only_after_its_entries_were_taken_over) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=10000",
                                                                 "FLEET_CONSUMER_IDLE_MS=1000",
                                                                 "FLEET_WORKER_NAME=dies"}});
    tl_proc *a = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 60000, \"steps\": 600}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    tl_proc_kill9(a);
    f->opts.worker_env[2] = "FLEET_WORKER_NAME=survives";
    tl_fleet_add_worker(f, "sleep");

    /* Idle past FLEET_CONSUMER_IDLE_MS, but its entry is pending (the lease of 10 s, renewed
     * until the kill, runs well past this look): it stays. Time has to pass for this: the
     * wait is on Redis's own count of the consumer's idle time, 2.5 s (the survivor sweeps
     * idle consumers more often than that). */
    long long idle = -1;
    ASSERT_EVENTUALLY((idle = consumer_idle_ms(f, "dies")) < 0 || idle >= 2500, TL_WAIT_MS);
    ASSERT_GE_INT(idle, 2500); /* still there */

    /* Once the lease ran out, the survivor took the job over; then the consumer goes. */
    ASSERT_EVENTUALLY(consumer_idle_ms(f, "dies") < 0, TL_WAIT_MS);
    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "running");
    ASSERT_EQ_STR(tl_jstr(job, "worker"), "survives");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", id)), 202);
    tl_job_wait_status(f, id, "cancelled", TL_WAIT_MS);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(only_acknowledged_entries_leave_the_stream),
        TL_CASE(pending_entry_deleted_by_hand_does_not_lose_its_job),
        TL_CASE(dead_consumer_is_removed_only_after_its_entries_were_taken_over),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
