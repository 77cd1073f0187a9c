/* cli_test.c: fleetctl against a real gateway and Redis (docs/cli.md). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"


/* Runs fleetctl --url <gateway> ARGS... and returns its result. */
static tl_cmd_result fleetctl(tl_fleet *f, const char *const *args) {
    return tl_fleetctl(TL_ARGS("--url", f->url), args);
}

/* Runs fleetctl --redis-url <fleet's Redis> --prefix <fleet's prefix> ARGS... (dlq). */
static tl_cmd_result fleetctl_redis(tl_fleet *f, const char *const *args) {
    return tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix), args);
}

#define ARGS TL_ARGS

/* The first 26-character token of Crockford base32 in s (a job id), or NULL. */
static const char *find_id(const char *s) {
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (const char *p = s; *p; p++) {
        if (p > s && isalnum((unsigned char)p[-1])) continue;
        size_t n = strspn(p, alphabet);
        if (n == 26 && !isalnum((unsigned char)p[26])) return tl_printf("%.26s", p);
    }
    return NULL;
}


TL_TEST(fleetctl_submit_then_wait_prints_the_result) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_cmd_result sub = fleetctl(f, ARGS("submit", "echo", "{\"a\":1}"));
    tl_expect_exit(&sub, 0);
    const char *id = find_id(sub.out);
    if (!id) FAILF("fleetctl submit printed no job id:\n%s", sub.out);
    /* It is a real job of this gateway. */
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "model"), "echo");

    tl_cmd_result w = fleetctl(f, ARGS("wait", id, "--timeout", "60"));
    tl_expect_exit(&w, 0);
    json_error_t e;
    json_t *out = tl_json_own(json_loads(w.out, JSON_DECODE_ANY, &e));
    if (!out) FAILF("fleetctl wait did not print the result as JSON (%s):\n%s", e.text, w.out);
    ASSERT_EQ_JSON(out, tl_json("{\"a\": 1}"));
}

TL_TEST(fleetctl_cancel_then_wait_reports_cancelled) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker: the job stays queued */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    tl_cmd_result c = fleetctl(f, ARGS("cancel", id));
    tl_expect_exit(&c, 0);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "cancelled");
    /* docs: exit code 3 when the awaited job was cancelled. */
    tl_cmd_result w = fleetctl(f, ARGS("wait", id, "--timeout", "60"));
    tl_expect_exit(&w, 3);
}

TL_TEST(fleetctl_status_of_an_unknown_job_fails) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("status", "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    ASSERT_NE_INT(r.exit_code, 0);
    ASSERT_GT_INT(strlen(r.err), 0);
}

/* ------------------------------------------------------------ dead letters ---------- */

/* The value of field in a flat field/value array, or NULL. */
static const char *field_of(const redisReply *fields, const char *field) {
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, field) == 0) return fields->element[i + 1]->str;
    return NULL;
}

static const char *job_field(tl_fleet *f, const char *id, const char *field) {
    return field_of(tl_redis_cmd(f->rc, "HGETALL {%s}:job:%s", f->prefix, id), field);
}

static long long dlq_len(tl_fleet *f) { return tl_redis_int(f->rc, "XLEN {%s}:dlq", f->prefix); }

/* Submits a sleep job (no worker runs it, so it stays queued) and makes it look as the
 * scripts leave a job that was lost 3 times: claimed (claim.lua moves the model's queue
 * head to its queue_seq), its stream entry dropped (lib.lua drop_entry), ended failed
 * (end_job), recorded on the dead-letter stream and marked (dead_letter), with the same
 * counters moved. Returns the job id; *entry gets the dead-letter entry id. */
static const char *submit_dead_lettered(tl_fleet *f, const char **entry) {
    const char *p = f->prefix;
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    const char *sentry = job_field(f, id, "entry_id");
    ASSERT_NOT_NULL(sentry);
    const char *seq = job_field(f, id, "queue_seq");
    ASSERT_NOT_NULL(seq);
    tl_redis_cmd(f->rc, "HSET {%s}:queues sleep:head %s", p, seq);
    tl_redis_cmd(f->rc, "XACK {%s}:stream:sleep workers %s", p, sentry);
    tl_redis_cmd(f->rc, "XDEL {%s}:stream:sleep %s", p, sentry);
    tl_redis_cmd(f->rc, "HDEL {%s}:entries:sleep %s", p, sentry);
    long long now = tl_redis_int(f->rc, "EVAL %s 0",
                                 "local t = redis.call('TIME') "
                                 "return t[1] * 1000 + math.floor(t[2] / 1000)");
    tl_redis_cmd(f->rc,
                 "HSET {%s}:job:%s status failed attempts 3 finished_ms %lld updated_ms %lld "
                 "error %s last_error %s dead_lettered 1",
                 p, id, now, now, "worker lost 3 times", "attempt 3: worker lost");
    redisReply *x = tl_redis_cmd(f->rc,
                                 "XADD {%s}:dlq * job %s model sleep tenant default attempts 3 "
                                 "error %s failed_ms %lld",
                                 p, id, "worker lost 3 times", now);
    *entry = tl_printf("%s", x->str);
    tl_redis_cmd(f->rc, "HSET {%s}:job:%s dlq_entry %s", p, id, *entry);
    tl_redis_cmd(f->rc, "HINCRBY {%s}:stats sleep:queued -1", p);
    tl_redis_cmd(f->rc, "HINCRBY {%s}:stats sleep:failed 1", p);
    tl_redis_cmd(f->rc, "HINCRBY {%s}:stats sleep:dead_lettered 1", p);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "failed");
    return id;
}

/* The value in the column named col of the table row that starts with first (split on
 * runs of spaces; the header must have one word per column). NULL when absent. */
static const char *table_cell(const char *table, const char *first, const char *col) {
    char *copy = tl_printf("%s", table);
    char *save = NULL, *hsave = NULL;
    char *header = strtok_r(copy, "\n", &save);
    if (!header) return NULL;
    int want = -1, n = 0;
    for (char *w = strtok_r(header, " ", &hsave); w; w = strtok_r(NULL, " ", &hsave), n++)
        if (strcmp(w, col) == 0) want = n;
    if (want < 0) return NULL;
    copy = tl_printf("%s", table);
    save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *wsave = NULL;
        char *w = strtok_r(line, " ", &wsave);
        if (!w || strcmp(w, first) != 0) continue;
        for (int i = 0; i < want && w; i++) w = strtok_r(NULL, " ", &wsave);
        return w;
    }
    return NULL;
}

TL_TEST(fleetctl_dlq_list_shows_a_dead_lettered_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);

    tl_cmd_result t = fleetctl_redis(f, ARGS("dlq", "list"));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.out, "DLQ ENTRY");
    ASSERT_STR_CONTAINS(t.out, "FAILED AT");
    ASSERT_STR_CONTAINS(t.out, entry);
    ASSERT_STR_CONTAINS(t.out, id);
    ASSERT_STR_CONTAINS(t.out, "worker lost 3 times");

    tl_cmd_result j = fleetctl_redis(f, ARGS("dlq", "list", "--json"));
    tl_expect_exit(&j, 0);
    json_t *arr = tl_json(j.out);
    ASSERT_TRUE(json_is_array(arr));
    ASSERT_EQ_INT(json_array_size(arr), 1);
    json_t *e = json_array_get(arr, 0);
    ASSERT_EQ_STR(tl_jstr(e, "entry"), entry);
    ASSERT_EQ_STR(tl_jstr(e, "job"), id);
    ASSERT_EQ_STR(tl_jstr(e, "model"), "sleep");
    ASSERT_EQ_STR(tl_jstr(e, "tenant"), "default");
    ASSERT_EQ_INT(tl_jint(e, "attempts"), 3);
    ASSERT_EQ_STR(tl_jstr(e, "error"), "worker lost 3 times");
    ASSERT_NOT_NULL(tl_jstr(e, "failed_at"));
    ASSERT_STR_CONTAINS(tl_jstr(e, "failed_at"), "Z");
}

TL_TEST(fleetctl_dlq_list_of_an_empty_stream) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result t = fleetctl_redis(f, ARGS("dlq", "list"));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.out, "the dead-letter stream is empty");
    tl_cmd_result j = fleetctl_redis(f, ARGS("dlq", "list", "--json"));
    tl_expect_exit(&j, 0);
    ASSERT_EQ_JSON(tl_json(j.out), tl_json("[]"));
}

TL_TEST(fleetctl_dlq_list_limit_shows_the_newest) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *e1, *e2;
    submit_dead_lettered(f, &e1);
    const char *id2 = submit_dead_lettered(f, &e2);
    tl_cmd_result j = fleetctl_redis(f, ARGS("dlq", "list", "--limit", "1", "--json"));
    tl_expect_exit(&j, 0);
    json_t *arr = tl_json(j.out);
    ASSERT_EQ_INT(json_array_size(arr), 1);
    ASSERT_EQ_STR(tl_jstr(json_array_get(arr, 0), "job"), id2);
    tl_cmd_result t = fleetctl_redis(f, ARGS("dlq", "list", "--limit", "1"));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.err, "of 2 entries");
    tl_cmd_result bad = fleetctl_redis(f, ARGS("dlq", "list", "--limit", "0"));
    tl_expect_exit(&bad, 2);
}

TL_TEST(fleetctl_dlq_show_by_job_id_and_by_entry_id) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);

    tl_cmd_result t = fleetctl_redis(f, ARGS("dlq", "show", id));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.out, entry);
    ASSERT_STR_CONTAINS(t.out, "worker lost 3 times");
    ASSERT_STR_CONTAINS(t.out, "failed (dead-lettered)");
    ASSERT_STR_CONTAINS(t.out, "attempt 3: worker lost"); /* last_error of the job hash */

    tl_cmd_result e = fleetctl_redis(f, ARGS("dlq", "show", entry, "--json"));
    tl_expect_exit(&e, 0);
    json_t *doc = tl_json(e.out);
    ASSERT_EQ_STR(tl_jstr(doc, "entry"), entry);
    ASSERT_EQ_STR(tl_jstr(doc, "job"), id);
    ASSERT_EQ_INT(tl_jint(doc, "attempts"), 3);
    ASSERT_EQ_STR(tl_jstr(doc, "current.status"), "failed");
    ASSERT_EQ_INT(tl_jint(doc, "current.attempts"), 3);
    ASSERT_EQ_STR(tl_jstr(doc, "current.error"), "worker lost 3 times");
    ASSERT_EQ_STR(tl_jstr(doc, "current.last_error"), "attempt 3: worker lost");
    ASSERT_TRUE(json_is_true(tl_jget(doc, "current.dead_lettered")));

    /* The dead-letter entry may outlive the job's keys: still found, and said so. */
    tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, id);
    tl_cmd_result x = fleetctl_redis(f, ARGS("dlq", "show", id));
    tl_expect_exit(&x, 0);
    ASSERT_STR_CONTAINS(x.out, entry);
    ASSERT_STR_CONTAINS(x.out, "expired");
    tl_cmd_result xj = fleetctl_redis(f, ARGS("dlq", "show", id, "--json"));
    tl_expect_exit(&xj, 0);
    ASSERT_TRUE(json_is_null(tl_jget(tl_json(xj.out), "current")));
}

TL_TEST(fleetctl_dlq_show_of_nothing_fails) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result u = fleetctl_redis(f, ARGS("dlq", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    tl_expect_exit(&u, 1);
    ASSERT_STR_CONTAINS(u.err, "no dead-letter entry");
    tl_cmd_result e = fleetctl_redis(f, ARGS("dlq", "show", "1732380601140-0"));
    tl_expect_exit(&e, 1);
    ASSERT_STR_CONTAINS(e.err, "no entry 1732380601140-0");
    /* A job that exists but was not dead-lettered. */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10}");
    tl_cmd_result q = fleetctl_redis(f, ARGS("dlq", "show", id));
    tl_expect_exit(&q, 1);
    ASSERT_STR_CONTAINS(q.err, "not dead-lettered (status queued)");
}

TL_TEST(fleetctl_dlq_retry_queues_the_job_again) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);
    const char *old_stream_entry = job_field(f, id, "entry_id");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 0);

    tl_cmd_result r = fleetctl_redis(f, ARGS("dlq", "retry", id));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, tl_printf("%s: queued again (position 1)", id));

    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "queued");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    ASSERT_NULL(tl_jget(job, "error"));
    ASSERT_EQ_INT(dlq_len(f), 0);
    ASSERT_NULL(job_field(f, id, "dead_lettered"));
    /* A new stream entry carries it, known to the entries map. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 1);
    const char *new_entry = job_field(f, id, "entry_id");
    ASSERT_NOT_NULL(new_entry);
    ASSERT_NE_STR(new_entry, old_stream_entry);
    redisReply *m = tl_redis_cmd(f->rc, "HGET {%s}:entries:sleep %s", f->prefix, new_entry);
    ASSERT_EQ_STR(m->str, tl_printf("%s queued default", id)); /* id, state, tenant */

    /* Once more: it is not dead-lettered any more, nothing is done, exit 1. */
    tl_cmd_result again = fleetctl_redis(f, ARGS("dlq", "retry", id));
    tl_expect_exit(&again, 1);
    ASSERT_STR_CONTAINS(again.out,
                        tl_printf("%s: not dead-lettered (status queued); nothing done", id));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 1);

    tl_cmd_result empty = fleetctl_redis(f, ARGS("dlq", "list"));
    tl_expect_exit(&empty, 0);
    ASSERT_STR_CONTAINS(empty.out, "the dead-letter stream is empty");
}

TL_TEST(fleetctl_dlq_retry_of_several_reports_each) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);
    const char *unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    /* A Redis that has forgotten its scripts: the retry falls back from EVALSHA to EVAL. */
    tl_redis_cmd(f->rc, "SCRIPT FLUSH");
    tl_cmd_result r = fleetctl_redis(f, ARGS("dlq", "retry", unknown, id, "--json"));
    tl_expect_exit(&r, 1); /* not every job was queued again */
    json_t *rep = tl_json(r.out);
    ASSERT_EQ_INT(json_array_size(rep), 2);
    ASSERT_EQ_STR(tl_jstr(json_array_get(rep, 0), "outcome"), "not_found");
    ASSERT_EQ_STR(tl_jstr(json_array_get(rep, 1), "id"), id);
    ASSERT_EQ_STR(tl_jstr(json_array_get(rep, 1), "outcome"), "queued");
    ASSERT_EQ_INT(tl_jint(json_array_get(rep, 1), "queue_position"), 1);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "queued");

    tl_cmd_result t = fleetctl_redis(f, ARGS("dlq", "retry", unknown));
    tl_expect_exit(&t, 1);
    ASSERT_STR_CONTAINS(t.out, tl_printf("%s: not found (expired or never existed)", unknown));
}

TL_TEST(fleetctl_dlq_retry_all_walks_the_stream) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *e1, *e2, *e3;
    const char *id1 = submit_dead_lettered(f, &e1);
    const char *id2 = submit_dead_lettered(f, &e2);
    const char *gone = submit_dead_lettered(f, &e3);
    /* The third job's keys expired; its dead-letter entry outlived them. */
    tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, gone);

    tl_cmd_result r = fleetctl_redis(f, ARGS("dlq", "retry", "--all"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.out, "queued again 2 of 3 dead-lettered jobs");
    ASSERT_STR_CONTAINS(r.out, tl_printf("%s: not found", gone));
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id1), "status"), "queued");
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id2), "status"), "queued");
    ASSERT_EQ_INT(dlq_len(f), 1); /* only the entry of the expired job is left */

    tl_redis_cmd(f->rc, "DEL {%s}:dlq", f->prefix);
    tl_cmd_result none = fleetctl_redis(f, ARGS("dlq", "retry", "--all"));
    tl_expect_exit(&none, 0);
    ASSERT_STR_CONTAINS(none.out, "empty");
}

TL_TEST(fleetctl_dlq_walks_more_than_one_page) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *old = submit_dead_lettered(f, &entry);
    tl_redis_cmd(f->rc, "DEL {%s}:job:%s", f->prefix, old);
    /* 150 newer entries of jobs that no longer exist: more than one page of 100. */
    for (int i = 0; i < 150; i++)
        tl_redis_cmd(f->rc,
                     "XADD {%s}:dlq * job 01ARZ3NDEKTSV4RRFFQ69G%04d model sleep "
                     "tenant default attempts 3 error lost failed_ms 1",
                     f->prefix, i);

    /* show finds the old entry by scanning back from the newest. */
    tl_cmd_result s = fleetctl_redis(f, ARGS("dlq", "show", old));
    tl_expect_exit(&s, 0);
    ASSERT_STR_CONTAINS(s.out, entry);

    /* retry --all visits every entry once. */
    tl_cmd_result r = fleetctl_redis(f, ARGS("dlq", "retry", "--all", "--json"));
    tl_expect_exit(&r, 1);
    json_t *rep = tl_json(r.out);
    ASSERT_EQ_INT(json_array_size(rep), 151);
    ASSERT_EQ_STR(tl_jstr(json_array_get(rep, 0), "id"), old);
    ASSERT_EQ_STR(tl_jstr(json_array_get(rep, 150), "id"), "01ARZ3NDEKTSV4RRFFQ69G0149");
    ASSERT_EQ_INT(dlq_len(f), 151);
}

TL_TEST(fleetctl_inspect_shows_the_job_keys) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);
    tl_cmd_result r = fleetctl_redis(f, ARGS("inspect", id));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, tl_printf("{%s}:job:%s  hash", f->prefix, id));
    ASSERT_STR_CONTAINS(r.out, tl_printf("dlq_entry        %s", entry));
    /* The input is put together from the job hash's parts and decoded. */
    ASSERT_STR_CONTAINS(r.out, tl_printf("{%s}:job:%s fields in1..in", f->prefix, id));
    ASSERT_STR_CONTAINS(r.out, "hash fields (msgpack, ");
    ASSERT_NULL(strstr(r.out, "in_n "));
    /* A field the hash leaves out for its default is shown as what it reads as. */
    ASSERT_STR_CONTAINS(r.out, "priority         normal  (not stored: the default)");
    tl_cmd_result u = fleetctl_redis(f, ARGS("inspect", "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    tl_expect_exit(&u, 1);
    ASSERT_STR_CONTAINS(u.err, "no job 01ARZ3NDEKTSV4RRFFQ69G5FAV");
}

TL_TEST(fleetctl_dlq_bad_arguments_exit_2_without_touching_redis) {
    /* Nothing listens on this port: a usage error must come before any connection. */
    const char *nowhere = tl_printf("redis://127.0.0.1:%d", tl_free_port());
    const char *const pre[] = {"--redis-url", nowhere, NULL};
    const char *const *const cases[] = {
        ARGS("dlq", "retry", "not-a-job-id"),
        ARGS("dlq", "retry", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope"),
        ARGS("dlq", "retry"),
        ARGS("dlq", "retry", "--all", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ARGS("dlq", "show", "nope"),
        ARGS("dlq", "show"),
        ARGS("dlq", "list", "extra"),
        ARGS("dlq", "list", "--all"),
        ARGS("dlq", "frobnicate"),
        ARGS("dlq"),
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) {
        tl_cmd_result r = tl_fleetctl(pre, cases[i]);
        tl_expect_exit(&r, 2);
        ASSERT_GT_INT(strlen(r.err), 0);
    }
    /* A well-formed command does try Redis, and says it cannot reach it (exit 1). */
    tl_cmd_result r = tl_fleetctl(pre, ARGS("dlq", "list"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "cannot connect to Redis");
}

TL_TEST(fleetctl_stats_prints_the_counters) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* default FLEET_MODELS: echo,sleep */
    const char *entry;
    const char *id = submit_dead_lettered(f, &entry);
    tl_job_submit(f, "sleep", "{\"ms\": 10}");

    tl_cmd_result t = fleetctl(f, ARGS("stats"));
    tl_expect_exit(&t, 0);
    ASSERT_STR_CONTAINS(t.out, "dead_lettered");
    ASSERT_STR_CONTAINS(t.out, "dlq_retried");
    ASSERT_STR_CONTAINS(t.out, "handed_back");
    ASSERT_EQ_STR(table_cell(t.out, "sleep", "dead_lettered"), "1");
    ASSERT_EQ_STR(table_cell(t.out, "sleep", "submitted"), "2");
    ASSERT_EQ_STR(table_cell(t.out, "sleep", "queued"), "1");
    ASSERT_EQ_STR(table_cell(t.out, "sleep", "failed"), "1");
    ASSERT_EQ_STR(table_cell(t.out, "echo", "submitted"), "0");
    ASSERT_EQ_STR(table_cell(t.out, "total", "submitted"), "2");

    tl_cmd_result j = fleetctl(f, ARGS("stats", "--json"));
    tl_expect_exit(&j, 0);
    json_t *doc = tl_json(j.out);
    ASSERT_EQ_INT(tl_jint(doc, "models.sleep.dead_lettered"), 1);
    ASSERT_EQ_INT(tl_jint(doc, "totals.submitted"), 2);

    /* After a retry the counters follow. */
    tl_cmd_result rr = fleetctl_redis(f, ARGS("dlq", "retry", id));
    tl_expect_exit(&rr, 0);
    tl_cmd_result t2 = fleetctl(f, ARGS("stats"));
    tl_expect_exit(&t2, 0);
    ASSERT_EQ_STR(table_cell(t2.out, "sleep", "dlq_retried"), "1");
    ASSERT_EQ_STR(table_cell(t2.out, "sleep", "queued"), "2");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(fleetctl_submit_then_wait_prints_the_result),
        TL_CASE(fleetctl_cancel_then_wait_reports_cancelled),
        TL_CASE(fleetctl_status_of_an_unknown_job_fails),
        TL_CASE(fleetctl_dlq_list_shows_a_dead_lettered_job),
        TL_CASE(fleetctl_dlq_list_of_an_empty_stream),
        TL_CASE(fleetctl_dlq_list_limit_shows_the_newest),
        TL_CASE(fleetctl_dlq_show_by_job_id_and_by_entry_id),
        TL_CASE(fleetctl_dlq_show_of_nothing_fails),
        TL_CASE(fleetctl_dlq_retry_queues_the_job_again),
        TL_CASE(fleetctl_dlq_retry_of_several_reports_each),
        TL_CASE(fleetctl_dlq_retry_all_walks_the_stream),
        TL_CASE(fleetctl_dlq_walks_more_than_one_page),
        TL_CASE(fleetctl_inspect_shows_the_job_keys),
        TL_CASE(fleetctl_dlq_bad_arguments_exit_2_without_touching_redis),
        TL_CASE(fleetctl_stats_prints_the_counters),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
