/* list_test.c: GET /v1/jobs: newest first, cursor paging, filters (docs/api.md). No
 * worker runs, so every job stays where the test put it. */
#include <stdio.h>
#include <string.h>

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

/* Newest first: ids are ULIDs, which sort by creation time, so they strictly decrease
 * (which also rules out duplicates), and created_at never increases, except between two
 * ids of the same millisecond (the first 10 characters), whose order is random. */
static void assert_newest_first(const page_walk *w) {
    for (size_t i = 1; i < w->n; i++) {
        if (strcmp(w->ids[i - 1], w->ids[i]) <= 0)
            FAILF("not newest first (or a duplicate) at position %zu: %s then %s", i, w->ids[i - 1],
                  w->ids[i]);
        bool same_ms = strncmp(w->ids[i - 1], w->ids[i], 10) == 0;
        if (!same_ms && strcmp(w->created[i - 1], w->created[i]) < 0)
            FAILF("created_at increases at position %zu: %s (%s) then %s (%s)", i,
                  w->created[i - 1], w->ids[i - 1], w->created[i], w->ids[i]);
    }
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
    for (int i = 0; i < 25; i++)
        if (!listed(&w, ids[i])) FAILF("job %d (%s) was not listed", i, ids[i]);

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

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(list_pages_newest_first_without_duplicates),
        TL_CASE(list_of_no_jobs_is_empty),
        TL_CASE(list_filters_by_status_and_model),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
