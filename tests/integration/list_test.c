/* list_test.c: GET /v1/jobs: newest first, cursor paging, filters, the cursor's form and
 * the tenant index behind it (docs/api.md, docs/redis.md). No worker runs, so every job
 * stays where the test put it. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

typedef struct page_walk {
    size_t n;
    const char *ids[200];
    const char *created[200];
    int pages;
    int sizes[20];
} page_walk;

/* Follows next_cursor from GET /v1/jobs?<query>&limit=<limit> until it is null, checking
 * each page's shape, and collects the ids in order. */
static void walk(tl_fleet *f, const char *query, int limit, page_walk *w) {
    memset(w, 0, sizeof(*w));
    const char *cursor = NULL;
    for (;;) {
        if (w->pages >= 20) FAILF("more than 20 pages: the cursor does not advance");
        const char *path = tl_printf("/v1/jobs?%s%slimit=%d%s%s", query, query[0] ? "&" : "", limit,
                                     cursor ? "&cursor=" : "", cursor ? tl_urlencode(cursor) : "");
        tl_resp *r = tl_get(f, path);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_STR_CONTAINS(r->content_type, "application/json");
        json_t *jobs = tl_jget(r->json, "jobs");
        if (!json_is_array(jobs)) FAILF("GET %s: no \"jobs\" array: %s", path, r->body);
        json_t *next = tl_jget(r->json, "next_cursor");
        if (!next) FAILF("GET %s: no \"next_cursor\" (null or a string): %s", path, r->body);
        ASSERT_LE_INT(json_array_size(jobs), limit);
        w->sizes[w->pages++] = (int)json_array_size(jobs);
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job) {
            if (w->n >= 200) FAILF("too many jobs listed");
            const char *id = tl_jstr(job, "id");
            if (!id) FAILF("GET %s: a job without an id: %s", path, tl_json_text(job));
            w->ids[w->n] = id;
            w->created[w->n] = tl_jstr(job, "created_at");
            ASSERT_NOT_NULL(w->created[w->n]);
            ASSERT_NOT_NULL(tl_jstr(job, "status"));
            ASSERT_NOT_NULL(tl_jstr(job, "model"));
            w->n++;
        }
        tl_json_own(json_incref(r->json)); /* ids point into it */
        if (json_is_null(next)) break;
        if (!json_is_string(next) || !json_string_value(next)[0])
            FAILF("GET %s: next_cursor is neither null nor a string: %s", path, r->body);
        if (json_array_size(jobs) == 0) FAILF("GET %s: an empty page with a next_cursor", path);
        cursor = json_string_value(next);
    }
}

static bool listed(const page_walk *w, const char *id) {
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->ids[i], id) == 0) return true;
    return false;
}

/* Newest first: in the order opposite to the submits', so created_at (Redis' clock at the
 * submit) never increases; and no job twice. Ids do not tell the order: two ids of the
 * same millisecond (their first 10 characters) differ in random bits. */
static void assert_newest_first(const page_walk *w) {
    for (size_t i = 1; i < w->n; i++) {
        if (strcmp(w->created[i - 1], w->created[i]) < 0)
            FAILF("created_at increases at position %zu: %s (%s) then %s (%s)", i,
                  w->created[i - 1], w->ids[i - 1], w->created[i], w->ids[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->ids[j], w->ids[i]) == 0)
                FAILF("%s listed twice, at positions %zu and %zu", w->ids[i], j, i);
    }
}

/* "<ms>-<n>": the id of an entry of the tenant's index stream. */
static bool is_entry_id(const char *s) {
    size_t a = 0, b = 0;
    while (isdigit((unsigned char)s[a])) a++;
    if (a == 0 || s[a] != '-') return false;
    while (isdigit((unsigned char)s[a + 1 + b])) b++;
    return b > 0 && s[a + 1 + b] == '\0';
}

TL_TEST(list_pages_newest_first_without_duplicates) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *ids[25];
    for (int i = 0; i < 25; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\": %d}", i));

    page_walk w;
    walk(f, "", 10, &w);
    ASSERT_EQ_INT(w.pages, 3);
    ASSERT_EQ_INT(w.sizes[0], 10);
    ASSERT_EQ_INT(w.sizes[1], 10);
    ASSERT_EQ_INT(w.sizes[2], 5);
    ASSERT_EQ_INT(w.n, 25);
    assert_newest_first(&w);
    /* One client submitting one job after the other: exactly the reverse of its order. */
    for (int i = 0; i < 25; i++)
        if (strcmp(w.ids[i], ids[24 - i]) != 0)
            FAILF("position %d lists %s, not job %d (%s)", i, w.ids[i], 24 - i, ids[24 - i]);

    /* Without limit: 20 per page. */
    tl_resp *r = tl_get(f, "/v1/jobs");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(json_array_size(tl_jget(r->json, "jobs")), 20);
    ASSERT_TRUE(json_is_string(tl_jget(r->json, "next_cursor")));

    /* Exactly one full page: next_cursor may be a cursor to an empty page, or null. */
    walk(f, "", 25, &w);
    ASSERT_EQ_INT(w.n, 25);
}

TL_TEST(list_of_no_jobs_is_empty) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_resp *r = tl_get(f, "/v1/jobs");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_JSON(r->json, tl_json("{\"jobs\": [], \"next_cursor\": null}"));
}

TL_TEST(list_filters_by_status_and_model) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *echo[5], *sleep[3];
    for (int i = 0; i < 5; i++) echo[i] = tl_job_submit(f, "echo", tl_printf("{\"e\": %d}", i));
    for (int i = 0; i < 3; i++)
        sleep[i] = tl_job_submit(f, "sleep", tl_printf("{\"ms\": 10, \"steps\": %d}", i + 1));
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", echo[1])), 200);
    ASSERT_HTTP_STATUS(tl_delete(f, tl_printf("/v1/jobs/%s", echo[3])), 200);

    page_walk w;
    walk(f, "model=sleep", 100, &w);
    ASSERT_EQ_INT(w.n, 3);
    for (int i = 0; i < 3; i++) ASSERT_TRUE(listed(&w, sleep[i]));
    assert_newest_first(&w);

    walk(f, "model=echo", 100, &w);
    ASSERT_EQ_INT(w.n, 5);

    walk(f, "status=cancelled", 100, &w);
    ASSERT_EQ_INT(w.n, 2);
    ASSERT_TRUE(listed(&w, echo[1]));
    ASSERT_TRUE(listed(&w, echo[3]));

    walk(f, "status=queued", 100, &w);
    ASSERT_EQ_INT(w.n, 6);
    ASSERT_FALSE(listed(&w, echo[1]));
    ASSERT_FALSE(listed(&w, echo[3]));
    assert_newest_first(&w);

    walk(f, "status=queued&model=echo", 100, &w);
    ASSERT_EQ_INT(w.n, 3);
    ASSERT_TRUE(listed(&w, echo[0]));
    ASSERT_TRUE(listed(&w, echo[2]));
    ASSERT_TRUE(listed(&w, echo[4]));

    /* Paging through a filter: 6 queued jobs, 4 per page. */
    walk(f, "status=queued", 4, &w);
    ASSERT_EQ_INT(w.n, 6);
    ASSERT_EQ_INT(w.sizes[0], 4);
    assert_newest_first(&w);

    /* Every item matches the filter. */
    tl_resp *r = tl_get(f, "/v1/jobs?status=cancelled&model=echo");
    ASSERT_HTTP_STATUS(r, 200);
    size_t i;
    json_t *job;
    json_array_foreach(tl_jget(r->json, "jobs"), i, job) {
        ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
        ASSERT_EQ_STR(tl_jstr(job, "model"), "echo");
    }
    ASSERT_EQ_INT(json_array_size(tl_jget(r->json, "jobs")), 2);
}

/* The cursor is the id of the last index entry a page looked at ("<ms>-<n>"); a job id,
 * the cursor of older releases, and anything else that is not an entry id, is a 400
 * problem, never a range Redis refuses (a 500). */
TL_TEST(list_cursor_is_an_index_entry_id) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *ids[3];
    for (int i = 0; i < 3; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\": %d}", i));
    tl_resp *r = tl_get(f, "/v1/jobs?limit=2");
    ASSERT_HTTP_STATUS(r, 200);
    const char *cursor = tl_jstr(r->json, "next_cursor");
    ASSERT_NOT_NULL(cursor);
    if (!is_entry_id(cursor)) FAILF("next_cursor %s is not an index entry id", cursor);
    r = tl_get(f, tl_printf("/v1/jobs?limit=2&cursor=%s", cursor));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(json_array_size(tl_jget(r->json, "jobs")), 1);
    ASSERT_EQ_STR(tl_jstr(json_array_get(tl_jget(r->json, "jobs"), 0), "id"), ids[0]);

    const char *detail = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs?cursor=%s", ids[2])), 400);
    ASSERT_STR_CONTAINS(detail, "older release");
    static const char *const bad[] = {"abc",
                                      "1-",
                                      "-1",
                                      "1",
                                      "0-0",
                                      "1-2-3",
                                      "1-x",
                                      "+",
                                      "18446744073709551616-0",
                                      "1-18446744073709551616",
                                      "%2B",
                                      "(1-0",
                                      "1%2D0%00"};
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        detail = ASSERT_PROBLEM(tl_get(f, tl_printf("/v1/jobs?cursor=%s", bad[i])), 400);
        ASSERT_STR_CONTAINS(detail, "cursor");
    }
    /* The largest entry id is a cursor above every entry; "0-1" one below all of them. */
    r = tl_get(f, "/v1/jobs?cursor=18446744073709551615-18446744073709551615");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(json_array_size(tl_jget(r->json, "jobs")), 3);
    r = tl_get(f, "/v1/jobs?cursor=0-1");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_JSON(r->json, tl_json("{\"jobs\": [], \"next_cursor\": null}"));
}

/* The index (docs/redis.md) is a stream with a TTL from the first submit on, kept near
 * FLEET_INDEX_CAP entries (XADD MAXLEN ~: Redis drops whole nodes of 100 entries, so it
 * may hold up to a node more); the list then reaches the newest jobs only. */
TL_TEST(list_index_is_a_capped_stream_with_a_ttl) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_INDEX_CAP=100"}});
    const char *key = tl_printf("{%s}:tenant:default:submits", f->prefix);
    const char *first = tl_job_submit(f, "echo", "{}");
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "TYPE %s", key)->str, "stream");
    long long ttl = tl_redis_int(f->rc, "TTL %s", key);
    /* the longest queue TTL a job may ask for (FLEET_QUEUE_TTL_MAX, 7 days) + the longest
     * result TTL (7 days) */
    if (ttl <= 0 || ttl > 604800 + 604800) FAILF("the index's TTL is %lld s", ttl);

    const char *ids[350];
    for (int i = 0; i < 350; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\": %d}", i));
    long long len = tl_redis_int(f->rc, "XLEN %s", key);
    if (len < 100 || len > 200) FAILF("the index holds %lld entries, cap 100", len);
    ttl = tl_redis_int(f->rc, "TTL %s", key);
    if (ttl <= 0) FAILF("the index's TTL is %lld s", ttl);

    page_walk w;
    walk(f, "", 100, &w);
    ASSERT_EQ_INT((long long)w.n, len);
    assert_newest_first(&w);
    for (size_t i = 0; i < w.n; i++) ASSERT_EQ_STR(w.ids[i], ids[349 - i]);
    ASSERT_FALSE(listed(&w, first));
}

/* The index's TTL and time cut (submit.lua): a submit that is its tenant's first in its
 * millisecond sets the TTL, here on an index left with a short one; every 64th submit of
 * a model cuts the entries older than any job can live, whole nodes of them (XTRIM MINID
 * ~): here a node of 100 entries from 1970 (entry ids 1-1..1-100) that point at no job. */
TL_TEST(list_index_ttl_and_time_cut) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *key = tl_printf("{%s}:tenant:default:submits", f->prefix);
    for (int i = 1; i <= 100; i++)
        tl_redis_cmd(f->rc, "XADD %s 1-%d j 01A0000000000000000000%04d", key, i, i);
    tl_redis_cmd(f->rc, "EXPIRE %s 100", key);

    const char *ids[64];
    ids[0] = tl_job_submit(f, "echo", "{}");
    long long ttl = tl_redis_int(f->rc, "TTL %s", key);
    if (ttl <= 100) FAILF("the first submit left the index's TTL at %lld s", ttl);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN %s", key), 101);
    for (int i = 1; i < 64; i++) ids[i] = tl_job_submit(f, "echo", tl_printf("{\"i\": %d}", i));
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 64); /* the 64th: the time cut ran */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN %s", key), 64);

    page_walk w;
    walk(f, "", 100, &w);
    ASSERT_EQ_INT(w.n, 64);
    for (int i = 0; i < 64; i++) ASSERT_EQ_STR(w.ids[i], ids[63 - i]);
}

/* Redis' clock in ms (the index entry ids and created_ms come from it). */
static long long redis_ms(tl_fleet *f) {
    redisReply *t = tl_redis_cmd(f->rc, "TIME");
    return atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
}

typedef struct later_than {
    tl_fleet *f;
    long long ms;
} later_than;

static bool redis_is_later(void *arg) {
    later_than *l = arg;
    return redis_ms(l->f) > l->ms;
}

/* A moment between two groups of submits: Redis' clock moves past it before it returns. */
static long long mark(tl_fleet *f) {
    later_than l = {f, redis_ms(f) + 2};
    ASSERT_WAIT_FOR(redis_is_later, &l, TL_WAIT_MS);
    long long m = l.ms;
    l.ms += 2;
    ASSERT_WAIT_FOR(redis_is_later, &l, TL_WAIT_MS);
    return m;
}

/* ms as RFC 3339 with milliseconds, at a UTC offset of off_min minutes. */
static const char *rfc3339(long long ms, int off_min) {
    time_t s = (time_t)(ms / 1000 + off_min * 60);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (off_min == 0) return tl_printf("%s.%03lldZ", buf, ms % 1000);
    return tl_printf("%s.%03lld%c%02d:%02d", buf, ms % 1000, off_min < 0 ? '-' : '+',
                     abs(off_min) / 60, abs(off_min) % 60);
}

/* since= and until= (RFC 3339) bound the submit times listed, both included, with the same
 * paging; a bound that is not a date-time is 400 naming it. */
TL_TEST(list_since_and_until_bound_the_submit_times) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *a[3], *b[3], *c[3];
    for (int i = 0; i < 3; i++) a[i] = tl_job_submit(f, "echo", "{}");
    long long t1 = mark(f);
    for (int i = 0; i < 3; i++) b[i] = tl_job_submit(f, "echo", "{}");
    long long t2 = mark(f);
    for (int i = 0; i < 3; i++) c[i] = tl_job_submit(f, "echo", "{}");

    page_walk w;
    walk(f, tl_printf("since=%s", tl_urlencode(rfc3339(t1, 0))), 2, &w);
    ASSERT_EQ_INT(w.n, 6);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(listed(&w, b[i]) && listed(&w, c[i]) && !listed(&w, a[i]));
    assert_newest_first(&w);
    /* The same moment at another offset. */
    walk(f, tl_printf("until=%s", tl_urlencode(rfc3339(t2, -150))), 2, &w);
    ASSERT_EQ_INT(w.n, 6);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(listed(&w, a[i]) && listed(&w, b[i]) && !listed(&w, c[i]));
    walk(f,
         tl_printf("since=%s&until=%s", tl_urlencode(rfc3339(t1, 60)),
                   tl_urlencode(rfc3339(t2, 0))),
         1, &w);
    ASSERT_EQ_INT(w.n, 3);
    for (int i = 0; i < 3; i++) ASSERT_TRUE(listed(&w, b[i]));
    /* A job's own created_at as since lists it (included; its index entry is of the same
     * millisecond or a later one, docs/api.md). */
    json_t *job = tl_job_get(f, b[1]);
    walk(f, tl_printf("since=%s", tl_urlencode(tl_jstr(job, "created_at"))), 10, &w);
    ASSERT_TRUE(listed(&w, b[1]));
    /* Until the epoch: nothing. */
    walk(f, "until=1970-01-01T00:00:00Z", 10, &w);
    ASSERT_EQ_INT(w.n, 0);

    const char *bad[] = {"yesterday",
                         "2026-12-06",
                         "2026-13-01T00:00:00Z",
                         "2026-02-29T00:00:00Z",
                         "2026-12-06T10:00:00",
                         "1969-12-31T23:59:59Z"};
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        tl_resp *r = tl_get(f, tl_printf("/v1/jobs?since=%s", tl_urlencode(bad[i])));
        ASSERT_PROBLEM(r, 400);
        ASSERT_EQ_STR(tl_jstr(r->json, "type"), "urn:fleet:problem:invalid-query");
        ASSERT_STR_CONTAINS(tl_jstr(r->json, "detail"), "since");
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(list_pages_newest_first_without_duplicates),
        TL_CASE(list_of_no_jobs_is_empty),
        TL_CASE(list_filters_by_status_and_model),
        TL_CASE(list_cursor_is_an_index_entry_id),
        TL_CASE(list_index_is_a_capped_stream_with_a_ttl),
        TL_CASE(list_index_ttl_and_time_cut),
        TL_CASE(list_since_and_until_bound_the_submit_times),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
