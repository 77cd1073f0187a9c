/* admin_test.c: an admin key sees every tenant's jobs, a tenant key only its own
 * (docs/api.md, "Authentication" and "Listing"), against a real gateway with
 * FLEET_AUTH=on. No worker runs unless a case starts one, so submitted jobs stay queued.
 *
 * Tenants are written straight into Redis, in the layout `fleetctl tenant add` uses
 * (docs/redis.md): the {prefix}:tenants set, {prefix}:tenant:<name>,
 * {prefix}:apikey:<sha256 of the key>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define ADMIN "fk_admin_ops"
#define KEY_A "fk_tenant_a"
#define KEY_B "fk_tenant_b"

static void add_tenant(tl_fleet *f, const char *name, const char *key, const char *role) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role %s", f->prefix, hex, name, role);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}

/* A fleet with tenants a and b and the admin tenant ops, no worker. */
static tl_fleet *start(void) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_AUTH=on"}});
    add_tenant(f, "a", KEY_A, "tenant");
    add_tenant(f, "b", KEY_B, "tenant");
    add_tenant(f, "ops", ADMIN, "admin");
    return f;
}

static tl_resp *as(tl_fleet *f, const char *key, const char *method, const char *path) {
    /* A POST without a body is still a POST (retry takes none). */
    tl_req req = {.method = method, .body = strcmp(method, "POST") == 0 ? "" : NULL};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    return tl_request(f, path, req);
}

/* Redis's clock in milliseconds (its entry ids and created_ms come from it). */
static long long redis_ms(tl_fleet *f) {
    redisReply *t = tl_redis_cmd(f->rc, "TIME");
    return atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
}

/* Submits an echo job as key; returns its id. The next submit (of any tenant) comes in a
 * later Redis millisecond, so that the tenants' index entries have distinct ids and the
 * merged list is in submit order. */
static const char *submit_as(tl_fleet *f, const char *key, int i) {
    tl_req req = {.method = "POST", .body = tl_printf("{\"model\": \"echo\", \"input\": %d}", i)};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    /* Only an admin's job objects say whose the job is; an admin's own job is its own. */
    if (strcmp(key, ADMIN) == 0) ASSERT_EQ_STR(tl_jstr(r->json, "tenant"), "ops");
    else ASSERT_NULL(tl_jget(r->json, "tenant"));
    long long created =
        atoll(tl_redis_cmd(f->rc, "HGET {%s}:job:%s created_ms", f->prefix, id)->str);
    ASSERT_EVENTUALLY(redis_ms(f) > created, TL_WAIT_MS);
    return id;
}

/* The pages of GET path (which has a query) as key, limit per page: "id/tenant id/tenant
 * ...", pages separated by " | ", each cursor passed back as it came. */
static const char *pages(tl_fleet *f, const char *key, const char *path, int limit) {
    const char *out = "", *cursor = NULL;
    for (int page = 0; page < 20; page++) {
        tl_resp *r = as(f, key, "GET",
                        tl_printf("%s&limit=%d%s%s", path, limit, cursor ? "&cursor=" : "",
                                  cursor ? tl_urlencode(cursor) : ""));
        ASSERT_HTTP_STATUS(r, 200);
        json_t *jobs = tl_jget(r->json, "jobs");
        /* One tenant's list may end with an empty page (docs/api.md, "Listing"). */
        if (page > 0 && json_array_size(jobs) > 0) out = tl_printf("%s |", out);
        for (size_t i = 0; i < json_array_size(jobs); i++) {
            json_t *j = json_array_get(jobs, i);
            const char *t = tl_jstr(j, "tenant");
            out = tl_printf("%s%s%s/%s", out, *out ? " " : "", tl_jstr(j, "id"), t ? t : "-");
        }
        cursor = tl_jstr(r->json, "next_cursor");
        if (!cursor) return out;
    }
    FAILF("more than 20 pages: %s", out);
    return NULL;
}

TL_TEST(admin_lists_every_tenants_jobs_newest_first_with_a_cursor) {
    tl_fleet *f = start();
    const char *a1 = submit_as(f, KEY_A, 1), *b1 = submit_as(f, KEY_B, 2);
    const char *a2 = submit_as(f, KEY_A, 3), *o1 = submit_as(f, ADMIN, 4);
    const char *b2 = submit_as(f, KEY_B, 5);
    /* Pages of 2, of 3, and all at once: the same jobs in the same order. */
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?", 2),
                  tl_printf("%s/b %s/ops | %s/a %s/b | %s/a", b2, o1, a2, b1, a1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?", 3),
                  tl_printf("%s/b %s/ops %s/a | %s/b %s/a", b2, o1, a2, b1, a1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?", 100),
                  tl_printf("%s/b %s/ops %s/a %s/b %s/a", b2, o1, a2, b1, a1));
    /* Filters hold across the tenants. */
    tl_resp *r = as(f, ADMIN, "DELETE", tl_printf("/v1/jobs/%s", a2));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?status=queued", 2),
                  tl_printf("%s/b %s/ops | %s/b %s/a", b2, o1, b1, a1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?status=cancelled", 2), tl_printf("%s/a", a2));
    /* A tenant still lists only its own jobs, and without a tenant field. */
    ASSERT_EQ_STR(pages(f, KEY_A, "/v1/jobs?", 1), tl_printf("%s/- | %s/-", a2, a1));
    ASSERT_EQ_STR(pages(f, KEY_B, "/v1/jobs?", 5), tl_printf("%s/- %s/-", b2, b1));
}

/* Two indexes with an entry of the same id: the merge orders them by tenant name (the
 * greater first) and the cursor between them names the tenant, so no page repeats or
 * skips one. The indexes are written by hand to make the tie. */
TL_TEST(admin_list_cursor_between_equal_entry_ids) {
    tl_fleet *f = start();
    const char *a1 = submit_as(f, KEY_A, 1), *a2 = submit_as(f, KEY_A, 2);
    const char *b2 = submit_as(f, KEY_B, 3), *b3 = submit_as(f, KEY_B, 4);
    const char *ia = tl_printf("{%s}:tenant:a:submits", f->prefix);
    const char *ib = tl_printf("{%s}:tenant:b:submits", f->prefix);
    tl_redis_cmd(f->rc, "DEL %s %s", ia, ib);
    tl_redis_cmd(f->rc, "XADD %s 1000-0 j %s", ia, a1);
    tl_redis_cmd(f->rc, "XADD %s 2000-0 j %s", ia, a2);
    tl_redis_cmd(f->rc, "XADD %s 2000-0 j %s", ib, b2);
    tl_redis_cmd(f->rc, "XADD %s 3000-0 j %s", ib, b3);
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?", 1),
                  tl_printf("%s/b | %s/b | %s/a | %s/a", b3, b2, a2, a1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?", 2),
                  tl_printf("%s/b %s/b | %s/a %s/a", b3, b2, a2, a1));
    tl_resp *r = as(f, ADMIN, "GET", "/v1/jobs?limit=2");
    ASSERT_EQ_STR(tl_jstr(r->json, "next_cursor"), "2000-0.b");
    r = as(f, ADMIN, "GET", "/v1/jobs?limit=1");
    ASSERT_EQ_STR(tl_jstr(r->json, "next_cursor"), "3000-0");
    /* A cursor of every tenant's list is no cursor of one tenant's list. */
    ASSERT_PROBLEM(as(f, ADMIN, "GET", "/v1/jobs?tenant=b&cursor=2000-0.b"), 400);
    ASSERT_PROBLEM(as(f, KEY_B, "GET", "/v1/jobs?cursor=2000-0.b"), 400);
    ASSERT_PROBLEM(as(f, ADMIN, "GET", "/v1/jobs?cursor=2000-0.B"), 400);
    ASSERT_PROBLEM(as(f, ADMIN, "GET", "/v1/jobs?cursor=2000-0."), 400);
}

TL_TEST(admin_filters_one_tenant_and_a_tenant_only_its_own) {
    tl_fleet *f = start();
    const char *a1 = submit_as(f, KEY_A, 1), *b1 = submit_as(f, KEY_B, 2);
    const char *a2 = submit_as(f, KEY_A, 3);
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?tenant=a", 1), tl_printf("%s/a | %s/a", a2, a1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?tenant=b", 10), tl_printf("%s/b", b1));
    ASSERT_EQ_STR(pages(f, ADMIN, "/v1/jobs?tenant=nobody", 10), "");
    /* A tenant may name itself, and no other tenant: 403, whether that one exists or not. */
    ASSERT_EQ_STR(pages(f, KEY_A, "/v1/jobs?tenant=a", 10), tl_printf("%s/- %s/-", a2, a1));
    const char *detail = ASSERT_PROBLEM(as(f, KEY_A, "GET", "/v1/jobs?tenant=b"), 403);
    ASSERT_STR_CONTAINS(detail, "own");
    ASSERT_PROBLEM(as(f, KEY_A, "GET", "/v1/jobs?tenant=nobody"), 403);
    ASSERT_PROBLEM(as(f, KEY_A, "GET", "/v1/jobs?tenant=B%21"), 400);
    ASSERT_PROBLEM(as(f, ADMIN, "GET", "/v1/jobs?tenant="), 400);
}

TL_TEST(admin_reads_cancels_retries_and_deletes_another_tenants_job) {
    tl_fleet *f = start();
    const char *a1 = submit_as(f, KEY_A, 1), *b1 = submit_as(f, KEY_B, 2);
    /* A tenant gets 404 for the other's job, on every route. */
    const char *paths[] = {"", "/result", "/events"};
    for (size_t i = 0; i < TL_COUNT(paths); i++)
        ASSERT_PROBLEM(as(f, KEY_B, "GET", tl_printf("/v1/jobs/%s%s", a1, paths[i])), 404);
    ASSERT_PROBLEM(as(f, KEY_B, "DELETE", tl_printf("/v1/jobs/%s", a1)), 404);
    ASSERT_PROBLEM(as(f, KEY_B, "POST", tl_printf("/v1/jobs/%s/retry", a1)), 404);

    /* The admin reads it, with whose it is. */
    tl_resp *r = as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s", a1));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "tenant"), "a");
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
    ASSERT_NULL(tl_jget(as(f, KEY_A, "GET", tl_printf("/v1/jobs/%s", a1))->json, "tenant"));
    ASSERT_PROBLEM(as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s/result", a1)), 425);
    r = as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s?wait=1", b1));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "tenant"), "b");

    /* It cancels it: the job is a's, cancelled; a's counts move as for a's own cancel. */
    r = as(f, ADMIN, "DELETE", tl_printf("/v1/jobs/%s", a1));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "cancelled");
    ASSERT_EQ_STR(tl_jstr(r->json, "tenant"), "a");
    ASSERT_EQ_STR(tl_jstr(as(f, KEY_A, "GET", tl_printf("/v1/jobs/%s", a1))->json, "status"),
                  "cancelled");
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:stats echo:cancelled", f->prefix)->str, "1");

    /* It retries it: queued again as a's job, in a's wait list or on the stream. */
    r = as(f, ADMIN, "POST", tl_printf("/v1/jobs/%s/retry", a1));
    ASSERT_HTTP_STATUS(r, 202);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
    ASSERT_EQ_STR(tl_jstr(r->json, "tenant"), "a");
    ASSERT_EQ_STR(tl_redis_cmd(f->rc, "HGET {%s}:job:%s tenant", f->prefix, a1)->str, "a");
    ASSERT_EQ_STR(tl_jstr(as(f, KEY_A, "GET", tl_printf("/v1/jobs/%s", a1))->json, "status"),
                  "queued");
    /* A worker runs it as any queued job of a. */
    tl_fleet_add_worker(f, "echo");
    tl_resp *done = as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s?wait=20", a1));
    ASSERT_HTTP_STATUS(done, 200);
    ASSERT_EQ_STR(tl_jstr(done->json, "status"), "succeeded");
    r = as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s/result", a1));
    ASSERT_HTTP_STATUS(r, 200);

    /* It deletes it: gone for a too. */
    r = as(f, ADMIN, "DELETE", tl_printf("/v1/jobs/%s?purge=true", a1));
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_PROBLEM(as(f, KEY_A, "GET", tl_printf("/v1/jobs/%s", a1)), 404);
    ASSERT_PROBLEM(as(f, ADMIN, "GET", tl_printf("/v1/jobs/%s", a1)), 404);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:job:%s", f->prefix, a1), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(admin_lists_every_tenants_jobs_newest_first_with_a_cursor),
        TL_CASE(admin_list_cursor_between_equal_entry_ids),
        TL_CASE(admin_filters_one_tenant_and_a_tenant_only_its_own),
        TL_CASE(admin_reads_cancels_retries_and_deletes_another_tenants_job),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
