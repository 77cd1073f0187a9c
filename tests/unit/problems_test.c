/* problems_test: the gateway's table of problem types (gateway/problems.h) and the one in
 * docs/api.md list the same types with the same statuses and titles; every status the
 * table names has an RFC 9110 reason phrase; and every refusal that the gateway's sources
 * spell as a status and a slug literal (job_body.c, framing.c, redis.c, jobs.c ...) names a
 * type of the table with its status. */
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "problems.h"
#include "testlib.h"

/* The rows "| `slug` | status | title |" of docs/api.md's "## Problem types" section. */
typedef struct doc_row {
    char slug[64], title[128];
    int status;
} doc_row;

static size_t doc_rows(doc_row *rows, size_t max) {
    const char *doc = tl_read_file(TEST_SOURCE_DIR "/docs/api.md", NULL);
    ASSERT_NOT_NULL(doc);
    const char *sec = strstr(doc, "\n## Problem types\n");
    ASSERT_NOT_NULL(sec);
    const char *end = strstr(sec + 1, "\n## ");
    size_t n = 0;
    for (const char *l = sec + 1; l && (!end || l < end); l = strchr(l, '\n')) {
        l++;
        doc_row r = {0};
        if (sscanf(l, "| `%63[a-z-]` | %d | %127[^|\n]|", r.slug, &r.status, r.title) != 3)
            continue;
        size_t tl = strlen(r.title);
        while (tl && r.title[tl - 1] == ' ') r.title[--tl] = '\0';
        if (n == max) FAILF("more than %zu rows", max);
        rows[n++] = r;
    }
    return n;
}

TL_TEST(docs_table_matches_the_c_table) {
    doc_row rows[128];
    size_t n = doc_rows(rows, 128);
    ASSERT_EQ_INT(n, GW_PROBLEM_COUNT);
    for (size_t i = 0; i < n; i++) {
        int id = gw_problem_find(rows[i].slug);
        if (id < 0) FAILF("docs/api.md lists %s, which gateway/problems.h lacks", rows[i].slug);
        const gw_problem_type *t = gw_problem_type_of((gw_problem_id)id);
        ASSERT_EQ_INT(rows[i].status, t->status);
        ASSERT_EQ_STR(rows[i].title, t->title);
    }
    for (int id = 0; id < GW_PROBLEM_COUNT; id++) {
        const char *slug = gw_problem_type_of((gw_problem_id)id)->slug;
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) found = strcmp(rows[i].slug, slug) == 0;
        if (!found) FAILF("gateway/problems.h has %s, which docs/api.md does not list", slug);
    }
}

TL_TEST(slugs_are_unique_and_statuses_have_reason_phrases) {
    for (int a = 0; a < GW_PROBLEM_COUNT; a++) {
        const gw_problem_type *t = gw_problem_type_of((gw_problem_id)a);
        ASSERT_EQ_INT(gw_problem_find(t->slug), a);
        ASSERT_NOT_NULL(gw_status_reason(t->status));
        ASSERT_TRUE(t->title[0] != '\0');
    }
    ASSERT_EQ_STR(gw_status_reason(422), "Unprocessable Content");
    ASSERT_EQ_STR(gw_status_reason(425), "Too Early");
    ASSERT_EQ_STR(gw_status_reason(429), "Too Many Requests");
    ASSERT_NULL(gw_status_reason(299));
    ASSERT_EQ_INT(gw_problem_find("no-such-type"), -1);
    ASSERT_EQ_INT(gw_problem_of_slug("no-such-type"), GW_PROBLEM_INTERNAL);
}

/* Refusals built outside gw_reply_problem carry a status and a slug as literals, e.g.
 * refuse(p, 400, "invalid-json", ...) or {503, "redis-full", ...} or .status = 422,
 * .slug = "unknown-model": each pair must be a row of the table. */
TL_TEST(every_slug_in_the_gateway_sources_is_in_the_table) {
    DIR *d = opendir(TEST_SOURCE_DIR "/gateway");
    ASSERT_NOT_NULL(d);
    int pairs = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 3 || strcmp(e->d_name + len - 2, ".c") != 0) continue;
        const char *src = tl_read_file(tl_printf("%s/gateway/%s", TEST_SOURCE_DIR, e->d_name),
                                       NULL);
        ASSERT_NOT_NULL(src);
        for (const char *p = src; *p; p++) {
            /* a three-digit 4xx/5xx literal, then within a few characters a slug literal */
            if (!(p[0] == '4' || p[0] == '5') || !isdigit((unsigned char)p[1]) ||
                !isdigit((unsigned char)p[2]) || isalnum((unsigned char)p[3]) ||
                (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_')))
                continue;
            const char *q = p + 3;
            while (*q == ',' || *q == ' ' || *q == '\n') q++;
            if (strncmp(q, ".slug = ", 8) == 0) q += 8;
            if (*q != '"') continue;
            char slug[64];
            if (sscanf(q, "\"%63[a-z-]\"", slug) != 1 ||
                (!strchr(slug, '-') && strcmp(slug, "internal") != 0 &&
                 strcmp(slug, "unauthorized") != 0))
                continue;
            int id = gw_problem_find(slug);
            if (id < 0)
                FAILF("gateway/%s refuses with %s, which gateway/problems.h lacks", e->d_name,
                      slug);
            ASSERT_EQ_INT(gw_problem_type_of((gw_problem_id)id)->status, atoi(p));
            pairs++;
        }
    }
    closedir(d);
    tl_log("%d status and slug pairs checked", pairs);
    ASSERT_GT_INT(pairs, 5);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(docs_table_matches_the_c_table),
                                    TL_CASE(slugs_are_unique_and_statuses_have_reason_phrases),
                                    TL_CASE(every_slug_in_the_gateway_sources_is_in_the_table)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
