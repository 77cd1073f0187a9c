/* cluster_fleet_test.c: a whole fleet on a Redis Cluster (docs/scaling.md): a loopback
 * cluster of 3 masters (tests/lib/tl_cluster.c), the gateways and workers given
 * FLEET_REDIS_CLUSTER, the shard table the first gateway writes (one shard per master).
 *
 *   - thousands of jobs through two gateways and two workers all succeed; every master
 *     holds job keys; the tenant's list (merged over the shards) and the stats are complete;
 *   - kill -9 of a master (replicas, FLEET_REDIS_WAIT_REPLICAS=1) while submits flow, a
 *     shard's and the control tag's: every job answered 202 ends succeeded, none lost;
 *   - the slot of a shard's tag moved to another master while submits flow (half-migrated
 *     first, then MOVED): every job succeeds, every submit after the move is taken;
 *   - fleetctl shards add, then drain, while submits flow (docs/scaling.md).
 *
 * The submit streams run on threads of their own with libcurl and their own memory
 * (harness functions are not thread-safe). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

#define MASTERS 3
#define CLIENT_TIMEOUT_MS 15000
#define STREAM_PACE_US 5000 /* between two submits of a stream: hundreds, not thousands */

/* ------------------------------------------------------------ a submit stream ------- */

typedef struct sub_rec {
    long status; /* 0: no answer */
    char id[32]; /* of a 202 */
} sub_rec;

typedef struct stream {
    pthread_t th;
    bool started;
    char url[96];
    atomic_bool stop;
    atomic_size_t n; /* records written (each is complete before n counts it) */
    size_t cap;
    sub_rec *v; /* malloc'd with cap entries up front: no realloc under a reader */
} stream;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    char *buf = ud;
    size_t len = size * n, have = strlen(buf);
    size_t room = 1023 - have;
    memcpy(buf + have, p, len < room ? len : room);
    buf[have + (len < room ? len : room)] = '\0';
    return len;
}

static void *stream_main(void *arg) {
    stream *st = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char body[96], resp[1024];
    for (unsigned seq = 0; h && hdrs && !atomic_load(&st->stop); seq++) {
        size_t i = atomic_load(&st->n);
        if (i >= st->cap) break;
        snprintf(body, sizeof body, "{\"model\":\"echo\",\"input\":{\"n\":%u}}", seq);
        resp[0] = '\0';
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, st->url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
        sub_rec rec = {0};
        if (curl_easy_perform(h) == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rec.status);
        const char *id = rec.status == 202 ? strstr(resp, "\"id\":\"") : NULL;
        if (id) snprintf(rec.id, sizeof rec.id, "%.26s", id + 6);
        st->v[i] = rec;
        atomic_store(&st->n, i + 1);
        usleep(STREAM_PACE_US);
    }
    curl_slist_free_all(hdrs);
    if (h) curl_easy_cleanup(h);
    return NULL;
}

static void stream_join(void *arg) {
    stream *st = arg;
    if (!st->started) return;
    atomic_store(&st->stop, true);
    pthread_join(st->th, NULL);
    st->started = false;
}

/* Starts submitting echo jobs to url/v1/jobs, one after the other, at most cap. Stopped
 * and joined when the case ends (or by stream_join). */
static stream *stream_start(const char *url, size_t cap) {
    stream *st = tl_alloc(sizeof *st);
    snprintf(st->url, sizeof st->url, "%s/v1/jobs", url);
    st->cap = cap;
    st->v = tl_alloc(cap * sizeof *st->v);
    atomic_store(&st->n, 0);
    atomic_store(&st->stop, false);
    if (pthread_create(&st->th, NULL, stream_main, st) != 0) FAILF("pthread_create failed");
    st->started = true;
    tl_defer(stream_join, st);
    return st;
}

static size_t stream_count(stream *st) { return atomic_load(&st->n); }

/* Waits until the stream has n more answers than it had. */
static void stream_wait_more(stream *st, size_t more) {
    size_t want = stream_count(st) + more;
    ASSERT_EVENTUALLY(stream_count(st) >= want || !st->started, TL_WAIT_MS);
}

/* Every 202 of the stream ends succeeded; returns how many there were. Counts the other
 * answers by status in *refused (5xx) and fails on anything else. */
static long stream_check(tl_fleet *f, stream *st, long *refused) {
    long ok = 0;
    *refused = 0;
    for (size_t i = 0; i < stream_count(st); i++) {
        sub_rec *r = &st->v[i];
        if (r->status == 202) {
            ASSERT_EQ_INT(strlen(r->id), 26);
            tl_job_wait_status(f, r->id, "succeeded", TL_WAIT_MS);
            ok++;
        } else if (r->status == 503) {
            (*refused)++;
        } else {
            FAILF("submit %zu of the stream to %s: status %ld", i, st->url, r->status);
        }
    }
    return ok;
}

/* ------------------------------------------------------------ helpers --------------- */

/* GET url/readyz answers 200. */
static bool ready(const char *url) {
    char err[256];
    tl_req req = {.url = tl_printf("%s/readyz", url), .timeout_ms = 2000};
    tl_resp *r = tl_http_try(&req, err, sizeof err);
    return r && r->status == 200;
}

/* The fleet's shard table has one shard per master, each tag on a master of its own. */
static int check_table_one_shard_per_master(tl_fleet *f, const char **tags) {
    int n = tl_fleet_shard_tags(f, tags);
    ASSERT_EQ_INT(n, MASTERS);
    bool seen[TL_CLUSTER_MAX_NODES] = {false};
    for (int i = 0; i < n; i++) {
        int m = tl_cluster_master_of_key(f->cluster, tags[i]);
        if (seen[m]) FAILF("shard tags %s and another are on the same master %d", tags[i], m);
        seen[m] = true;
    }
    return n;
}

/* Keys of node i that match pattern (SCAN, so a large node is read in steps). */
static long scan_count(tl_fleet *f, int i, const char *pattern) {
    redisContext *c = tl_cluster_conn(f->cluster, i);
    long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = tl_redis_cmd(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (long)r->element[1]->elements;
    } while (strcmp(cursor, "0") != 0);
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *batch_body(int first, int count) {
    size_t cap = (size_t)count * 48 + 64, n = 0;
    char *body = tl_alloc(cap);
    n += (size_t)snprintf(body + n, cap - n, "{\"jobs\": [");
    for (int i = 0; i < count; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s{\"model\": \"echo\", \"input\": %d}",
                              i ? "," : "", first + i);
    snprintf(body + n, cap - n, "]}");
    return body;
}

/* ------------------------------------------------------------ cases ----------------- */

#define JOBS 3000
#define BATCH 500

TL_TEST(thousands_of_jobs_spread_over_every_master) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo", "echo"}, .cluster_masters = MASTERS, .cluster_replicas = 1});
    char gw[2][64];
    snprintf(gw[0], sizeof gw[0], "%s", f->url);
    tl_fleet_start_gateway(f);
    snprintf(gw[1], sizeof gw[1], "%s", f->url);
    const char *tags[32];
    check_table_one_shard_per_master(f, tags);

    int shard_jobs[32] = {0};
    const char *an_id[32] = {NULL};
    for (int b = 0; b < JOBS / BATCH; b++) {
        snprintf(f->url, sizeof f->url, "%s", gw[b % 2]);
        tl_resp *r = tl_post(f, "/v1/jobs/batch", batch_body(b * BATCH, BATCH));
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_INT(tl_jint(r->json, "accepted"), BATCH);
        json_t *jobs = tl_jget(r->json, "jobs");
        for (size_t i = 0; i < json_array_size(jobs); i++) {
            const char *id = json_string_value(json_object_get(json_array_get(jobs, i), "id"));
            ASSERT_NOT_NULL(id);
            /* the id's first character is its shard (a Crockford digit) */
            ASSERT_TRUE(id[0] >= '0' && id[0] < '0' + MASTERS);
            shard_jobs[id[0] - '0']++;
            an_id[id[0] - '0'] = tl_printf("%s", id);
        }
    }
    tl_log("jobs per shard: %d %d %d", shard_jobs[0], shard_jobs[1], shard_jobs[2]);
    for (int k = 0; k < MASTERS; k++) ASSERT_GT_INT(shard_jobs[k], JOBS / MASTERS / 4);
    ASSERT_EVENTUALLY(tl_stat(f, "echo", "succeeded") == JOBS, 45000);

    /* every master holds job hashes and nothing of the fleet is outside its tags */
    int m[TL_CLUSTER_MAX_NODES];
    ASSERT_EQ_INT(tl_cluster_masters(f->cluster, m), MASTERS);
    for (int i = 0; i < MASTERS; i++) {
        long jobs = scan_count(f, m[i], tl_printf("{%s*}:job:*", f->prefix));
        tl_log("master %d: %lld keys, %ld job keys", m[i], tl_cluster_dbsize(f->cluster, m[i]),
               jobs);
        ASSERT_GT_INT(jobs, 0);
        ASSERT_EQ_INT(scan_count(f, m[i], "*") - scan_count(f, m[i], tl_printf("{%s*", f->prefix)),
                      0);
    }
    /* the stats and the list, merged over the shards, through either gateway */
    for (int g = 0; g < 2; g++) {
        snprintf(f->url, sizeof f->url, "%s", gw[g]);
        ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.succeeded"), JOBS);
        ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), JOBS);
    }
    /* fleetctl reads the cluster too: the table with each shard's node, a job of each
     * shard from its keys */
    tl_cmd_result show = tl_fleetctl(tl_fleet_ctl_opts(f), TL_ARGS("shards", "show"));
    tl_expect_exit(&show, 0);
    for (int k = 0; k < MASTERS; k++) {
        ASSERT_STR_CONTAINS(show.out, tags[k]);
        tl_cmd_result in = tl_fleetctl(tl_fleet_ctl_opts(f), TL_ARGS("inspect", an_id[k]));
        tl_expect_exit(&in, 0);
        ASSERT_STR_CONTAINS(in.out, tl_printf("%s:job:%s", tags[k], an_id[k]));
    }
    long listed = 0;
    const char *cursor = NULL, *prev = NULL;
    const char **ids = tl_alloc(sizeof(char *) * (JOBS + 100));
    for (int page = 0; page < JOBS / 100 + 2; page++) {
        tl_resp *r = tl_get(f, cursor
                                   ? tl_printf("/v1/jobs?limit=100&cursor=%s", tl_urlencode(cursor))
                                   : "/v1/jobs?limit=100");
        ASSERT_HTTP_STATUS(r, 200);
        json_t *jobs = tl_jget(r->json, "jobs");
        for (size_t i = 0; i < json_array_size(jobs); i++) {
            json_t *j = json_array_get(jobs, i);
            ASSERT_EQ_STR(tl_jstr(j, "status"), "succeeded");
            const char *id = tl_jstr(j, "id");
            prev = tl_printf("%s", id);
            if (listed < JOBS + 100) ids[listed] = prev;
            listed++;
        }
        const char *next = tl_jstr(r->json, "next_cursor");
        if (!next) break;
        /* newest first across shards: each page's cursor "<ms>-<n>:<k>" (the place of its
         * last job: index entry, then shard) lies below the one before (docs/api.md,
         * "Listing") */
        long long ms, seq;
        int k;
        ASSERT_EQ_INT(sscanf(next, "%lld-%lld:%d", &ms, &seq, &k), 3);
        if (cursor) {
            long long pms, pseq;
            int pk;
            ASSERT_EQ_INT(sscanf(cursor, "%lld-%lld:%d", &pms, &pseq, &pk), 3);
            ASSERT_TRUE(ms < pms || (ms == pms && (seq < pseq || (seq == pseq && k < pk))));
        }
        cursor = tl_printf("%s", next);
    }
    ASSERT_EQ_INT(listed, JOBS);
    qsort(ids, JOBS, sizeof *ids, cmp_str);
    for (int i = 1; i < JOBS; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0) FAILF("job %s listed twice", ids[i]);
}

/* Two gateways (each with its submit stream) and two workers, WAIT 1; kill -9 of the
 * master of shard `shard`'s tag while the streams run; then every 202 ends succeeded. */
static void kill_a_master_while_submitting(int shard) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo", "echo"},
        .gateway_env = {"FLEET_REDIS_WAIT_REPLICAS=1"},
        .cluster_masters = MASTERS,
        .cluster_replicas = 1,
        .cluster_node_timeout_ms = 1000,
    });
    char gw2[64];
    snprintf(gw2, sizeof gw2, "%s", f->url);
    tl_fleet_start_gateway(f);
    const char *tags[32];
    check_table_one_shard_per_master(f, tags);
    stream *a = stream_start(gw2, 20000), *b = stream_start(f->url, 20000);
    stream_wait_more(a, 100);
    stream_wait_more(b, 100);
    int victim = tl_cluster_master_of_key(f->cluster, tags[shard]);
    int now = tl_cluster_kill_master(f->cluster, victim);
    ASSERT_EQ_INT(tl_cluster_master_of_key(f->cluster, tags[shard]), now);
    /* submits are answered 202 again after the failover (by the shards whose master has a
     * replica to confirm WAIT 1) */
    size_t before = stream_count(a);
    ASSERT_EVENTUALLY(stream_count(a) > before + 50, TL_WAIT_MS);
    stream_join(a);
    stream_join(b);
    /* the gateways answer 503 until their link to the promoted master is ready: a client
     * retries; the test waits for /readyz before it reads every job */
    ASSERT_EVENTUALLY(ready(gw2) && ready(f->url), TL_WAIT_MS);
    long refused_a, refused_b;
    long ok = stream_check(f, a, &refused_a) + stream_check(f, b, &refused_b);
    tl_log("%ld submits answered 202, every one succeeded; %ld answered 503", ok,
           refused_a + refused_b);
    ASSERT_GT_INT(ok, 200);
    /* more only by submits answered 503 after a WAIT that timed out (stored or not) */
    ASSERT_GE_INT(tl_stat(f, "echo", "succeeded"), ok);
    /* The promoted master has no replica left, so WAIT 1 cannot be met there: a submit
     * placed on its shard is refused before anything is written, and the gateway places
     * it on another shard instead, so every submit is taken, none on that shard. */
    char lost = (char)('0' + shard);
    for (int i = 0; i < 30; i++) {
        tl_resp *r = tl_post(f, "/v1/jobs", "{\"model\": \"echo\", \"input\": 1}");
        ASSERT_HTTP_STATUS(r, 202);
        const char *id = tl_jstr(r->json, "id");
        ASSERT_NOT_NULL(id);
        ASSERT_TRUE(id[0] != lost);
    }
}

/* A shard's master that is not the control tag's: the other shards go on meanwhile. */
TL_TEST(a_master_killed_loses_no_accepted_job) { kill_a_master_while_submitting(1); }

/* The control tag's master: shard 0 and what is global (the shard table, models, workers,
 * the metrics; the gateways' events subscription may be on it too): the fleet comes back
 * on its replica. */
TL_TEST(the_control_master_killed_loses_no_accepted_job) { kill_a_master_while_submitting(0); }

TL_TEST(a_slot_moved_while_jobs_flow) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo", "echo"},
        .cluster_masters = MASTERS,
    });
    const char *tags[32];
    check_table_one_shard_per_master(f, tags);
    stream *st = stream_start(f->url, 20000);
    stream_wait_more(st, 100);
    int slot = tl_cluster_key_slot(f->cluster, tags[1]);
    int src = tl_cluster_master_of_slot(f->cluster, slot);
    int m[TL_CLUSTER_MAX_NODES];
    int nm = tl_cluster_masters(f->cluster, m), to = m[0] == src ? m[1] : m[0];
    ASSERT_EQ_INT(nm, MASTERS);
    long keys = (long)tl_redis_int(tl_cluster_conn(f->cluster, src), "CLUSTER COUNTKEYSINSLOT %d",
                                   slot);
    ASSERT_GT_INT(keys, 0);
    /* Half the shard's keys on the new master: the old one answers ASK for a key that
     * left, and TRYAGAIN for a script whose keys are split (a submit's new job key is on
     * neither), which the programs retry for FLEET_REDIS_TIMEOUT_MS (5 s). A resharding
     * moves on within that; so does this one, after a moment of submits. */
    tl_cluster_move_slot_begin(f->cluster, slot, to, keys / 2);
    size_t want = stream_count(st) + 20;
    (void)TL_WAIT_UNTIL(stream_count(st) >= want, 1000);
    tl_cluster_move_slot_finish(f->cluster, slot, to);
    /* now MOVED: the programs' maps are stale until they follow it */
    size_t after = stream_count(st) + 1; /* the one in flight may predate the move */
    stream_wait_more(st, 100);
    stream_join(st);
    ASSERT_EQ_INT(tl_cluster_master_of_key(f->cluster, tags[1]), to);
    long refused;
    long ok = stream_check(f, st, &refused);
    tl_log("%ld submits answered 202 around the move, every one succeeded; %ld answered 503", ok,
           refused);
    ASSERT_EQ_INT(tl_stat(f, "echo", "succeeded"), ok);
    /* after the move every submit is taken, also on the moved shard */
    long on_moved = 0;
    for (size_t i = after; i < stream_count(st); i++) {
        ASSERT_EQ_INT(st->v[i].status, 202);
        on_moved += st->v[i].id[0] == '1';
    }
    ASSERT_GT_INT(on_moved, 0);
    ASSERT_GT_INT(scan_count(f, to, tl_printf("%s:job:*", tags[1])), 0);
    ASSERT_EQ_INT(scan_count(f, src, tl_printf("%s*", tags[1])), 0);
}

/* Records [from, to) of the stream: all 202, and how many name shard k. */
static long on_shard(stream *st, size_t from, size_t to, char k) {
    long n = 0;
    for (size_t i = from; i < to; i++) n += st->v[i].status == 202 && st->v[i].id[0] == k;
    return n;
}

/* The last n answers of the stream are 202s, none on shard k. */
static bool last_avoid(stream *st, size_t n, char k) {
    size_t c = stream_count(st);
    if (c < n) return false;
    for (size_t i = c - n; i < c; i++)
        if (st->v[i].status != 202 || st->v[i].id[0] == k) return false;
    return true;
}

/* docs/scaling.md, "Adding shards to a running fleet": fleetctl shards add while submits
 * flow (the gateway puts jobs on the new shard, the workers serve it), then drain (no new
 * job there, its jobs still run). */
TL_TEST(a_shard_added_and_one_drained_while_running) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .workers = {"echo", "echo"},
        .cluster_masters = MASTERS,
    });
    const char *tags[32];
    check_table_one_shard_per_master(f, tags);
    stream *st = stream_start(f->url, 20000);
    stream_wait_more(st, 50);
    tl_cmd_result add = tl_fleetctl(tl_fleet_ctl_opts(f), TL_ARGS("shards", "add"));
    tl_expect_exit(&add, 0);
    ASSERT_EQ_INT(tl_fleet_shard_tags(f, tags), MASTERS + 1);
    size_t added = stream_count(st);
    ASSERT_EVENTUALLY(on_shard(st, added, stream_count(st), '3') > 0, TL_WAIT_MS);
    tl_cmd_result drain = tl_fleetctl(tl_fleet_ctl_opts(f), TL_ARGS("shards", "drain", "1"));
    tl_expect_exit(&drain, 0);
    /* once the gateway has read the new table, shard 1 takes no new job */
    ASSERT_EVENTUALLY(last_avoid(st, 30, '1'), TL_WAIT_MS);
    size_t drained = stream_count(st);
    stream_wait_more(st, 60);
    stream_join(st);
    ASSERT_EQ_INT(on_shard(st, drained, stream_count(st), '1'), 0);
    ASSERT_GT_INT(on_shard(st, drained, stream_count(st), '3'), 0);
    long refused;
    long ok = stream_check(f, st, &refused);
    ASSERT_EQ_INT(refused, 0);
    tl_log("%ld jobs, %ld of them on the new shard, every one succeeded", ok,
           on_shard(st, 0, stream_count(st), '3'));
    tl_cmd_result show = tl_fleetctl(tl_fleet_ctl_opts(f), TL_ARGS("shards", "show"));
    tl_expect_exit(&show, 0);
    ASSERT_STR_CONTAINS(show.out, tags[3]);
    ASSERT_STR_CONTAINS(show.out, "draining");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(thousands_of_jobs_spread_over_every_master),
        TL_CASE(a_master_killed_loses_no_accepted_job),
        TL_CASE(the_control_master_killed_loses_no_accepted_job),
        TL_CASE(a_slot_moved_while_jobs_flow),
        TL_CASE(a_shard_added_and_one_drained_while_running),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
