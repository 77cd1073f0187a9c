/* gateway_shards_test.c: the gateway puts jobs on shards (docs/scaling.md, "Shards and
 * quotas"): the shard table read at start and again on a "shards" event, written by the
 * first gateway with FLEET_SHARDS; job ids that name their shard, every job route on the
 * job's shard's keys; a tenant's limits enforced as shares that add up to the limit, with
 * a refused submit tried on the other shards; Idempotency-Key on one shard.
 *
 * One Redis here (shards are hash tags), but for one case on a loopback Redis Cluster of
 * three masters (the gateway places the shards on them). Only
 * a_worker_finishes_jobs_on_every_shard runs a worker (fleet-worker serves every shard of
 * the table); the other cases look at queued jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define TABLE3 "0:-:active 1:1:active 2:2:active"
#define AUTH_ON "FLEET_AUTH=on"

/* A request to the gateway at base (a fleet may run two), with an API key or none. */
static tl_resp *at(const char *base, const char *key, const char *method, const char *path,
                   const char *body, const char *extra_header) {
    tl_req req = {.method = method, .body = body, .url = tl_printf("%s%s", base, path)};
    int h = 0;
    if (key) req.headers[h++] = tl_printf("Authorization: Bearer %s", key);
    if (extra_header) req.headers[h++] = extra_header;
    return tl_http(&req);
}

/* The hash tag of job id's shard: "{p}" for shard 0, "{p:k}" (tag k) for the others. */
static const char *tag_of(tl_fleet *f, const char *id) {
    return id[0] == '0' ? tl_printf("{%s}", f->prefix) : tl_printf("{%s:%c}", f->prefix, id[0]);
}

static bool job_stored(tl_fleet *f, const char *id) {
    return tl_redis_int(f->rc, "EXISTS %s:job:%s", tag_of(f, id), id) == 1;
}

/* Submits until a job lands on each of the three shards; returns their ids by shard. Each
 * job keeps the id of the request that made it (X-Request-ID), whichever its shard. */
static void one_per_shard(tl_fleet *f, const char *ids[3]) {
    ids[0] = ids[1] = ids[2] = NULL;
    for (int i = 0; i < 300 && !(ids[0] && ids[1] && ids[2]); i++) {
        tl_resp *r = tl_post(f, "/v1/jobs", tl_printf("{\"model\": \"echo\", \"input\": %d}", i));
        ASSERT_HTTP_STATUS(r, 202);
        const char *id = tl_jstr(r->json, "id");
        ASSERT_TRUE(id[0] >= '0' && id[0] <= '2');
        ASSERT_TRUE(job_stored(f, id));
        ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "request_id"), tl_resp_header(r, "X-Request-ID"));
        if (!ids[id[0] - '0']) ids[id[0] - '0'] = id;
    }
    for (int k = 0; k < 3; k++) ASSERT_NOT_NULL(ids[k]);
}

TL_TEST(jobs_spread_over_the_shards_and_every_route_finds_them) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3});
    const char *first = tl_printf("%s", f->url);
    int per[3] = {0, 0, 0};
    for (int i = 0; i < 90; i++) {
        const char *id = tl_job_submit(f, "echo", "1");
        ASSERT_TRUE(id[0] >= '0' && id[0] <= '2');
        ASSERT_TRUE(job_stored(f, id));
        per[id[0] - '0']++;
    }
    /* Two random shards, the less loaded: each gets a fair part of 90. */
    for (int k = 0; k < 3; k++) ASSERT_GE_INT(per[k], 10);
    /* Each shard's own keys hold its jobs: the model's stream and the tenant's index. */
    for (int k = 0; k < 3; k++) {
        const char *tag = k == 0 ? tl_printf("{%s}", f->prefix)
                                 : tl_printf("{%s:%d}", f->prefix, k);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN %s:stream:echo", tag) +
                          tl_redis_int(f->rc, "LLEN %s:wait:echo:default:1", tag),
                      per[k]);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN %s:tenant:default:submits", tag), per[k]);
    }

    const char *ids[3];
    one_per_shard(f, ids);
    tl_fleet_start_gateway(f); /* a second gateway: it finds the same jobs */
    const char *second = tl_printf("%s", f->url);
    const char *bases[2] = {first, second};
    for (int k = 0; k < 3; k++) {
        const char *id = ids[k];
        for (int g = 0; g < 2; g++) {
            tl_resp *r = at(bases[g], NULL, "GET", tl_printf("/v1/jobs/%s", id), NULL, NULL);
            ASSERT_HTTP_STATUS(r, 200);
            ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
            ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
            ASSERT_PROBLEM(at(bases[g], NULL, "GET", tl_printf("/v1/jobs/%s/result", id), NULL,
                              NULL),
                           425);
            r = at(bases[g], NULL, "GET", tl_printf("/v1/jobs/%s/outputs", id), NULL, NULL);
            ASSERT_HTTP_STATUS(r, 200);
            r = at(bases[g], NULL, "GET", tl_printf("/v1/jobs/%s?wait=1", id), NULL, NULL);
            ASSERT_EQ_STR(tl_jstr(r->json, "id"), id);
        }
        /* Cancel through the second gateway, then the rest through the first. */
        tl_resp *r = at(second, NULL, "DELETE", tl_printf("/v1/jobs/%s", id), NULL, NULL);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_STR(tl_jstr(r->json, "status"), "cancelled");
        r = at(first, NULL, "GET", tl_printf("/v1/jobs/%s/events", id), NULL, NULL);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_STR_CONTAINS(r->body, "event: final");
        ASSERT_STR_CONTAINS(r->body, "cancelled");
        r = at(first, NULL, "POST", tl_printf("/v1/jobs/%s/retry", id), "", NULL);
        ASSERT_HTTP_STATUS(r, 202);
        ASSERT_EQ_STR(tl_jstr(r->json, "status"), "queued");
        ASSERT_HTTP_STATUS(at(second, NULL, "DELETE", tl_printf("/v1/jobs/%s", id), NULL, NULL),
                           200);
        r = at(first, NULL, "DELETE", tl_printf("/v1/jobs/%s?purge=true", id), NULL, NULL);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_FALSE(job_stored(f, id));
        ASSERT_PROBLEM(at(second, NULL, "GET", tl_printf("/v1/jobs/%s", id), NULL, NULL), 404);
    }
    /* An id whose first character names no shard of the table: an unknown job. */
    const char *stray = tl_printf("7%s", ids[0] + 1);
    const char *paths[] = {"", "/result", "/outputs", "/events"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        ASSERT_PROBLEM(at(first, NULL, "GET", tl_printf("/v1/jobs/%s%s", stray, paths[i]), NULL,
                          NULL),
                       404);
    ASSERT_PROBLEM(at(first, NULL, "DELETE", tl_printf("/v1/jobs/%s", stray), NULL, NULL), 404);
    ASSERT_PROBLEM(at(first, NULL, "POST", tl_printf("/v1/jobs/%s/retry", stray), "", NULL), 404);
}

/* The tenant's jobs counted in each shard's active set. */
static long long active_on(tl_fleet *f, const char *tenant, int k) {
    const char *tag = k == 0 ? tl_printf("{%s}", f->prefix) : tl_printf("{%s:%d}", f->prefix, k);
    return tl_redis_int(f->rc, "ZCARD %s:active:%s", tag, tenant);
}

TL_TEST(max_active_is_exact_across_shards) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3, .gateway_env = {AUTH_ON}});
    const long limits[] = {1, 2, 5, 7};
    for (size_t t = 0; t < sizeof limits / sizeof *limits; t++) {
        long n = limits[t];
        const char *name = tl_printf("t%ld", n), *key = tl_printf("fk_t%ld", n);
        tl_fleet_add_tenant(f, name, key, "tenant", tl_printf("max_active %ld", n));
        const char *last = NULL;
        for (long i = 0; i < n; i++) {
            tl_resp *r = at(f->url, key, "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}",
                            NULL);
            ASSERT_HTTP_STATUS(r, 202);
            last = tl_jstr(r->json, "id");
        }
        tl_resp *r = at(f->url, key, "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}",
                        NULL);
        ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 429), "jobs queued or running");
        ASSERT_NOT_NULL(tl_resp_header(r, "Retry-After"));
        /* Each shard holds its share, and the shares add up to the limit. */
        long long sum = 0, most = 0, least = n;
        for (int k = 0; k < 3; k++) {
            long long a = active_on(f, name, k);
            sum += a;
            if (a > most) most = a;
            if (a < least) least = a;
        }
        ASSERT_EQ_INT(sum, n);
        ASSERT_LE_INT(most - least, 1);
        /* One ends: there is room for exactly one more. */
        ASSERT_HTTP_STATUS(at(f->url, key, "DELETE", tl_printf("/v1/jobs/%s", last), NULL, NULL),
                           200);
        ASSERT_HTTP_STATUS(at(f->url, key, "POST", "/v1/jobs",
                              "{\"model\": \"echo\", \"input\": 2}", NULL),
                           202);
        ASSERT_PROBLEM(at(f->url, key, "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 3}",
                          NULL),
                       429);
    }
}

TL_TEST(burst_is_exact_across_shards) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3, .gateway_env = {AUTH_ON}});
    /* A rate so slow that no token comes back while the case runs. */
    tl_fleet_add_tenant(f, "slow", "fk_slow", "tenant", "rate 0.001 burst 8");
    int per[3] = {0, 0, 0};
    for (int i = 0; i < 8; i++) {
        tl_resp *r = at(f->url, "fk_slow", "POST", "/v1/jobs",
                        "{\"model\": \"echo\", \"input\": 1}", NULL);
        ASSERT_HTTP_STATUS(r, 202);
        per[tl_jstr(r->json, "id")[0] - '0']++;
    }
    tl_resp *r = at(f->url, "fk_slow", "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}",
                    NULL);
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(r, 429), "per second");
    /* The burst's shares: 3, 3, 2 in some order. */
    for (int k = 0; k < 3; k++) ASSERT_TRUE(per[k] == 2 || per[k] == 3);
}

TL_TEST(batch_items_spread_and_share_the_limits) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "open", "fk_open", "tenant", "");
    tl_fleet_add_tenant(f, "five", "fk_five", "tenant", "max_active 5");
    char *items = tl_printf("{\"model\": \"echo\", \"input\": 0}");
    for (int i = 1; i < 30; i++)
        items = tl_printf("%s, {\"model\": \"echo\", \"input\": %d}", items, i);
    tl_resp *r = at(f->url, "fk_open", "POST", "/v1/jobs/batch",
                    tl_printf("{\"jobs\": [%s]}", items), NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "accepted"), 30);
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 30; i++) {
        const char *id = tl_jstr(json_array_get(tl_jget(r->json, "jobs"), (size_t)i), "id");
        ASSERT_NOT_NULL(id);
        ASSERT_TRUE(id[0] >= '0' && id[0] <= '2');
        ASSERT_TRUE(job_stored(f, id));
        seen[id[0] - '0'] = true;
    }
    ASSERT_TRUE(seen[0] && seen[1] && seen[2]);
    /* Once the shards answered different queue positions, the items of the next batches
     * (sent together, before any answer) still spread evenly: each pick counts its job on
     * its shard at once, rather than all comparing the same stale positions and herding
     * onto the shard that answered lowest (which took about two thirds of each batch, and
     * the highest none). */
    for (int round = 0; round < 3; round++) {
        r = at(f->url, "fk_open", "POST", "/v1/jobs/batch", tl_printf("{\"jobs\": [%s]}", items),
               NULL);
        ASSERT_HTTP_STATUS(r, 200);
        int per[3] = {0, 0, 0};
        for (int i = 0; i < 30; i++) {
            const char *id = tl_jstr(json_array_get(tl_jget(r->json, "jobs"), (size_t)i), "id");
            ASSERT_NOT_NULL(id);
            per[id[0] - '0']++;
        }
        tl_log("batch %d: %d %d %d per shard", round, per[0], per[1], per[2]);
        for (int k = 0; k < 3; k++) ASSERT_TRUE(per[k] >= 4 && per[k] <= 16);
    }
    /* Eight items under max_active 5: an item refused by its shard's share is tried on the
     * others, so exactly five are accepted. */
    items = tl_printf("{\"model\": \"echo\", \"input\": 0}");
    for (int i = 1; i < 8; i++)
        items = tl_printf("%s, {\"model\": \"echo\", \"input\": %d}", items, i);
    r = at(f->url, "fk_five", "POST", "/v1/jobs/batch", tl_printf("{\"jobs\": [%s]}", items), NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "accepted"), 5);
    ASSERT_EQ_INT(tl_jint(r->json, "refused"), 3);
    for (int i = 0; i < 8; i++) {
        const json_t *item = json_array_get(tl_jget(r->json, "jobs"), (size_t)i);
        const char *id = tl_jstr(item, "id");
        if (id) ASSERT_TRUE(job_stored(f, id));
        else ASSERT_EQ_INT(tl_jint(item, "error.status"), 429);
    }
    ASSERT_EQ_INT(active_on(f, "five", 0) + active_on(f, "five", 1) + active_on(f, "five", 2), 5);
}

TL_TEST(storage_limits_are_ceil_of_the_total_per_shard) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .shards = TABLE3, .gateway_env = {AUTH_ON}, .workers = {"echo"}});
    tl_fleet_add_tenant(f, "keep", "fk_keep", "tenant", "max_finished 4");
    for (int i = 0; i < 30; i++)
        ASSERT_HTTP_STATUS(at(f->url, "fk_keep", "POST", "/v1/jobs",
                              "{\"model\": \"echo\", \"input\": 1}", NULL),
                           202);
    ASSERT_EVENTUALLY(tl_stat(f, "echo", "succeeded") == 30, TL_WAIT_MS);
    tl_proc_stop(f->workers[0], 5000); /* what comes next stays queued */
    /* A submit on each shard evicts that shard's oldest finished jobs down to its share of
     * max_finished 4 over 3 shards: ceil(4 / 3) = 2. */
    bool hit[3] = {false, false, false};
    for (int i = 0; i < 300 && !(hit[0] && hit[1] && hit[2]); i++) {
        tl_resp *r = at(f->url, "fk_keep", "POST", "/v1/jobs",
                        "{\"model\": \"echo\", \"input\": 1}", NULL);
        ASSERT_HTTP_STATUS(r, 202);
        hit[tl_jstr(r->json, "id")[0] - '0'] = true;
    }
    for (int k = 0; k < 3; k++) {
        const char *tag = k == 0 ? tl_printf("{%s}", f->prefix)
                                 : tl_printf("{%s:%d}", f->prefix, k);
        ASSERT_EQ_INT(tl_redis_int(f->rc, "LLEN %s:kept:keep", tag), 2);
    }
}

TL_TEST(idempotency_key_gives_one_job_through_two_gateways) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3});
    const char *first = tl_printf("%s", f->url);
    tl_fleet_start_gateway(f);
    const char *second = f->url;
    const char *body = "{\"model\": \"echo\", \"input\": {\"x\": 1}}";
    int shards_seen = 0;
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 12; i++) {
        const char *hk = tl_printf("Idempotency-Key: key-%d", i);
        tl_resp *a = at(first, NULL, "POST", "/v1/jobs", body, hk);
        ASSERT_HTTP_STATUS(a, 202);
        tl_resp *b = at(second, NULL, "POST", "/v1/jobs", body, hk);
        ASSERT_HTTP_STATUS(b, 202);
        ASSERT_EQ_STR(tl_jstr(b->json, "id"), tl_jstr(a->json, "id"));
        ASSERT_EQ_STR(tl_resp_header(b, "Idempotent-Replayed"), "true");
        const char *id = tl_jstr(a->json, "id");
        if (!seen[id[0] - '0']) shards_seen++;
        seen[id[0] - '0'] = true;
    }
    /* Keys hash to shards: twelve of them do not all land on one. */
    ASSERT_GE_INT(shards_seen, 2);
    ASSERT_EQ_INT(tl_stat(f, "echo", "submitted"), 12);
}

/* A submit with an Idempotency-Key first looks for its record on every shard: so keyed
 * submits share a tenant's limit like the others (a key's shard at its share, the submit
 * goes on to the next), and a retry after the active set changed (a shard added, one
 * drained: most keys map elsewhere then) still finds its job. */
TL_TEST(idempotency_keys_find_their_record_on_any_shard) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3, .gateway_env = {AUTH_ON}});
    tl_fleet_add_tenant(f, "six", "fk_six", "tenant", "max_active 6");
    tl_fleet_add_tenant(f, "open", "fk_open", "tenant", "");
    const char *body = "{\"model\": \"echo\", \"input\": {\"x\": 1}}";
    /* six keys under max_active 6 (2 per shard): every one is taken, whichever shards the
     * keys map to; a seventh is refused */
    for (int i = 0; i < 6; i++)
        ASSERT_HTTP_STATUS(at(f->url, "fk_six", "POST", "/v1/jobs", body,
                              tl_printf("Idempotency-Key: six-%d", i)),
                           202);
    ASSERT_HTTP_STATUS(at(f->url, "fk_six", "POST", "/v1/jobs", body, "Idempotency-Key: six-6"),
                       429);
    /* and each retry is a replay */
    for (int i = 0; i < 6; i++) {
        tl_resp *r = at(f->url, "fk_six", "POST", "/v1/jobs", body,
                        tl_printf("Idempotency-Key: six-%d", i));
        ASSERT_HTTP_STATUS(r, 202);
        ASSERT_EQ_STR(tl_resp_header(r, "Idempotent-Replayed"), "true");
    }
    const char *ids[12];
    for (int i = 0; i < 12; i++) {
        tl_resp *r = at(f->url, "fk_open", "POST", "/v1/jobs", body,
                        tl_printf("Idempotency-Key: key-%d", i));
        ASSERT_HTTP_STATUS(r, 202);
        ids[i] = tl_printf("%s", tl_jstr(r->json, "id"));
    }
    /* A shard added and one drained: the keys map over other active shards now. */
    tl_redis_cmd(f->rc, "SET {%s}:shards %s", f->prefix,
                 "0:-:active 1:1:draining 2:2:active 3:3:active");
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events shards", f->prefix);
    bool on3 = false;
    for (int i = 0; i < 400 && !on3; i++) {
        tl_resp *r = at(f->url, "fk_open", "POST", "/v1/jobs", body, NULL);
        ASSERT_HTTP_STATUS(r, 202);
        on3 = tl_jstr(r->json, "id")[0] == '3';
    }
    ASSERT_TRUE(on3);
    for (int i = 0; i < 12; i++) {
        tl_resp *r = at(f->url, "fk_open", "POST", "/v1/jobs", body,
                        tl_printf("Idempotency-Key: key-%d", i));
        ASSERT_HTTP_STATUS(r, 202);
        ASSERT_EQ_STR(tl_jstr(r->json, "id"), ids[i]);
        ASSERT_EQ_STR(tl_resp_header(r, "Idempotent-Replayed"), "true");
    }
    /* the same key with another request is still a conflict, wherever its record is */
    tl_resp *c = at(f->url, "fk_open", "POST", "/v1/jobs", "{\"model\": \"echo\", \"input\": 2}",
                    "Idempotency-Key: key-0");
    ASSERT_HTTP_STATUS(c, 422);
    ASSERT_STR_CONTAINS(c->body, "idempotency-key-reused");
}

TL_TEST(a_worker_finishes_jobs_on_every_shard) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.shards = TABLE3, .workers = {"echo"}});
    const char *ids[3];
    one_per_shard(f, ids);
    for (int k = 0; k < 3; k++) {
        tl_job_wait_status(f, ids[k], "succeeded", TL_WAIT_MS);
        tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/result", ids[k]));
        ASSERT_HTTP_STATUS(r, 200);
    }
    /* Prefer: wait answers with the result of a job on any shard. */
    for (int i = 0; i < 12; i++) {
        tl_resp *r =
            tl_request(f, "/v1/jobs",
                       (tl_req){.method = "POST",
                                .body = tl_printf("{\"model\": \"echo\", \"input\": %d}", i),
                                .headers = {"Prefer: wait=20"}});
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
        ASSERT_EQ_INT(tl_jint(r->json, "result"), i);
    }
}

TL_TEST(fleet_shards_writes_the_table_and_later_gateways_take_it) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_SHARDS=3"}});
    redisReply *t = tl_redis_cmd(f->rc, "GET {%s}:shards", f->prefix);
    ASSERT_EQ_STR(t->str, TABLE3);
    /* A gateway started later with another number reads the table there: first writer wins. */
    f->opts.gateway_env[0] = "FLEET_SHARDS=5";
    tl_fleet_start_gateway(f);
    t = tl_redis_cmd(f->rc, "GET {%s}:shards", f->prefix);
    ASSERT_EQ_STR(t->str, TABLE3);
    const char *ids[3];
    one_per_shard(f, ids);
    for (int i = 0; i < 60; i++) {
        const char *id = tl_job_submit(f, "echo", "1");
        ASSERT_TRUE(id[0] >= '0' && id[0] <= '2');
    }
}

TL_TEST(on_a_cluster_more_shards_than_masters_keep_the_limits_exact) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.cluster_masters = 3,
                                                  .gateway_env = {AUTH_ON, "FLEET_SHARDS=5"}});
    const char *first = tl_printf("%s", f->url);
    tl_fleet_start_gateway(f); /* finds the table the first one wrote */
    const char *tags[32];
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), 5);
    /* Shards 1 and 2 on the two masters shard 0 is not on, then round-robin: shard 3 beside
     * shard 0, shard 4 beside shard 1. */
    int m[5];
    for (int k = 0; k < 5; k++) m[k] = tl_cluster_master_of_key(f->cluster, tags[k]);
    ASSERT_TRUE(m[0] != m[1] && m[1] != m[2] && m[0] != m[2]);
    ASSERT_EQ_INT(m[3], m[0]);
    ASSERT_EQ_INT(m[4], m[1]);
    tl_fleet_add_tenant(f, "seven", "fk_seven", "tenant", "max_active 7");
    const char *bases[2] = {first, f->url};
    for (int i = 0; i < 7; i++)
        ASSERT_HTTP_STATUS(at(bases[i % 2], "fk_seven", "POST", "/v1/jobs",
                              "{\"model\": \"echo\", \"input\": 1}", NULL),
                           202);
    ASSERT_PROBLEM(at(bases[1], "fk_seven", "POST", "/v1/jobs",
                      "{\"model\": \"echo\", \"input\": 1}", NULL),
                   429);
    /* Shares of 7 over 5 shards: 2, 2, 1, 1, 1, each on its shard's master. */
    long long sum = 0;
    for (int k = 0; k < 5; k++) {
        const char *key = tl_printf("%s:active:seven", tags[k]);
        long long a = tl_redis_int(tl_fleet_conn_of_key(f, key), "ZCARD %s", key);
        ASSERT_TRUE(a == 1 || a == 2);
        sum += a;
    }
    ASSERT_EQ_INT(sum, 7);
}

TL_TEST(table_change_is_read_on_the_event_and_a_bad_one_is_refused) {
    tl_fleet *f = tl_fleet_start(NULL); /* no table: one shard */
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(tl_job_submit(f, "echo", "1")[0], '0');
    tl_redis_cmd(f->rc, "SET {%s}:shards %s", f->prefix, "0:-:active 1:1:active");
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events shards", f->prefix);
    bool on1 = false;
    for (int i = 0; i < 400 && !on1; i++) on1 = tl_job_submit(f, "echo", "1")[0] == '1';
    ASSERT_TRUE(on1);
    /* A table that does not parse: logged, the gateway keeps the one it has and says so. */
    tl_redis_cmd(f->rc, "SET {%s}:shards %s", f->prefix, "0:-:active 1:x:active");
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events shards", f->prefix);
    ASSERT_EVENTUALLY(tl_get(f, "/readyz")->status == 503, TL_WAIT_MS);
    ASSERT_STR_CONTAINS(tl_jstr(tl_get(f, "/readyz")->json, "reason"), "does not parse");
    bool on0 = false;
    on1 = false;
    for (int i = 0; i < 400 && !(on0 && on1); i++) {
        const char *id = tl_job_submit(f, "echo", "1");
        on0 |= id[0] == '0';
        on1 |= id[0] == '1';
    }
    ASSERT_TRUE(on0 && on1);
    /* Shard 0 drains: new jobs go to shard 1 only; shard 0's jobs are still served. */
    tl_redis_cmd(f->rc, "SET {%s}:shards %s", f->prefix, "0:-:draining 1:1:active");
    tl_redis_cmd(f->rc, "PUBLISH {%s}:events shards", f->prefix);
    ASSERT_EVENTUALLY(tl_get(f, "/readyz")->status == 200, TL_WAIT_MS);
    for (int i = 0; i < 20; i++) ASSERT_EQ_INT(tl_job_submit(f, "echo", "1")[0], '1');
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(jobs_spread_over_the_shards_and_every_route_finds_them),
        TL_CASE(max_active_is_exact_across_shards),
        TL_CASE(burst_is_exact_across_shards),
        TL_CASE(batch_items_spread_and_share_the_limits),
        TL_CASE(storage_limits_are_ceil_of_the_total_per_shard),
        TL_CASE(idempotency_key_gives_one_job_through_two_gateways),
        TL_CASE(idempotency_keys_find_their_record_on_any_shard),
        TL_CASE(a_worker_finishes_jobs_on_every_shard),
        TL_CASE(fleet_shards_writes_the_table_and_later_gateways_take_it),
        TL_CASE(on_a_cluster_more_shards_than_masters_keep_the_limits_exact),
        TL_CASE(table_change_is_read_on_the_event_and_a_bad_one_is_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
