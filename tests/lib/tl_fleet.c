/* tl_fleet.c: a whole fleet for one case (Redis, gateway, workers) and job helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl_internal.h"

#define READY_DEADLINE_MS 30000

static int gateway_seq, worker_seq;

static void need_binary(const char *name) {
    if (!tl_bin_exists(name))
        FAILF("%s not found or not executable in %s: build it first (cmake --build <build>), "
              "or point FLEET_TEST_BIN_DIR at the binaries",
              name, tl_bin_dir());
}

static bool same_name(const char *a, const char *b) {
    const char *ea = strchr(a, '='), *eb = strchr(b, '=');
    size_t na = ea ? (size_t)(ea - a) : strlen(a), nb = eb ? (size_t)(eb - b) : strlen(b);
    return na == nb && strncmp(a, b, na) == 0;
}

/* out = defaults (NULL-terminated), each replaced by an entry of the same name in add
 * (at most addmax, NULL-terminated), then the other entries of add. */
static void env_merge(const char **out, int max, const char *const *defaults,
                      const char *const *add, int addmax) {
    int n = 0;
    for (int i = 0; defaults[i]; i++) {
        bool replaced = false;
        for (int j = 0; j < addmax && add[j]; j++)
            if (same_name(defaults[i], add[j])) replaced = true;
        if (replaced) continue;
        if (n >= max - 1) FAILF("too many environment overrides");
        out[n++] = defaults[i];
    }
    for (int j = 0; j < addmax && add[j]; j++) {
        if (n >= max - 1) FAILF("too many environment overrides");
        out[n++] = add[j];
    }
    out[n] = NULL;
}

/* FLEET_REDIS_CLUSTER=<every node> on a cluster; NULL (the end of a list) otherwise, so
 * it is the last default. */
static const char *cluster_env(tl_fleet *f) {
    return f->cluster ? tl_printf("FLEET_REDIS_CLUSTER=%s", tl_cluster_seeds(f->cluster)) : NULL;
}

typedef struct ready_probe {
    tl_fleet *f;
    tl_proc *p;
    int port;
    long last_status;
    char last_err[512];
} ready_probe;

static bool gateway_ready(void *arg) {
    ready_probe *pr = arg;
    if (!tl_proc_alive(pr->p)) return true;
    tl_req req = {.url = tl_printf("http://127.0.0.1:%d/readyz", pr->port), .timeout_ms = 2000};
    tl_resp *r = tl_http_poll(&req, pr->last_err, sizeof(pr->last_err));
    if (!r) return false;
    pr->last_status = r->status;
    tl_http_poll_free(r);
    return pr->last_status == 200;
}

void tl_fleet_start_gateway(tl_fleet *f) {
    need_binary("fleet-gateway");
    const char *path = tl_bin_path("fleet-gateway");
    for (int attempt = 0;; attempt++) {
        int port = tl_free_port();
        const char *defaults[] = {
            tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
            tl_printf("FLEET_LISTEN=127.0.0.1:%d", port),
            tl_printf("FLEET_PREFIX=%s", f->prefix),
            /* Most cases are about other things than API keys; auth tests set it on. */
            "FLEET_AUTH=off",
            /* The allowlist most cases submit under, also for a model with no worker (and
             * none registered) yet; models_test sets FLEET_MODELS= (none: the models
             * registered in Redis). */
            "FLEET_MODELS=echo,sleep",
            cluster_env(f),
            NULL,
        };
        const char *env[40];
        env_merge(env, 40, defaults, f->opts.gateway_env, 16);
        const char *argv[] = {path, NULL};
        tl_spawn_opts o = {.name = tl_printf("gateway-%d", ++gateway_seq),
                           .path = path,
                           .argv = argv,
                           .env = env,
                           .checked = true};
        tl_proc *p = tl_spawn(&o);
        ready_probe pr = {.f = f, .p = p, .port = port, .last_status = 0};
        bool ok = tl_wait_for(gateway_ready, &pr, READY_DEADLINE_MS);
        if (ok && tl_proc_alive(p)) {
            f->gateway = p;
            f->gateway_port = port;
            snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", port);
            return;
        }
        if (!tl_proc_alive(p)) {
            char *log = tl_read_file(p->log_path, NULL);
            if (log && strstr(log, "in use") && attempt < 3) {
                tl_log("gateway port %d was taken; trying another", port);
                continue;
            }
            FAILF("fleet-gateway exited during startup: %s", tl_proc_describe(p));
        }
        FAILF("fleet-gateway on port %d not ready within %d ms (last GET /readyz: %s%ld%s%s)", port,
              READY_DEADLINE_MS, pr.last_status ? "HTTP " : "", pr.last_status,
              pr.last_err[0] ? ", " : "", pr.last_err);
    }
}

tl_proc *tl_fleet_add_worker(tl_fleet *f, const char *model) {
    need_binary("fleet-worker");
    if (f->nworkers >= TL_MAX_WORKERS) FAILF("too many workers");
    const char *path = tl_bin_path("fleet-worker");
    const char *defaults[] = {
        tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
        tl_printf("FLEET_PREFIX=%s", f->prefix),
        "FLEET_MAX_DELAY_MS=0",
        /* A worker stopped while a job runs hands it back after this grace period; the
         * harness allows 10 s for a SIGTERM to take effect. */
        "FLEET_DRAIN_TIMEOUT=2",
        cluster_env(f),
        NULL,
    };
    const char *env[40];
    env_merge(env, 40, defaults, f->opts.worker_env, 16);
    const char *argv[] = {path, "--model", model, NULL};
    tl_spawn_opts o = {.name = tl_printf("worker-%s-%d", model, ++worker_seq),
                       .path = path,
                       .argv = argv,
                       .env = env,
                       .checked = true};
    tl_proc *p = tl_spawn(&o);
    f->workers[f->nworkers++] = p;
    return p;
}

tl_fleet *tl_fleet_start(const tl_fleet_opts *o) {
    need_binary("fleet-gateway");
    for (int i = 0; i < TL_MAX_WORKERS && o && o->workers[i]; i++) need_binary("fleet-worker");
    tl_fleet *f = tl_xmalloc(sizeof(*f));
    memset(f, 0, sizeof(*f));
    tl_defer(free, f);
    if (o) f->opts = *o;
    if (f->opts.prefix) snprintf(f->prefix, sizeof(f->prefix), "%s", f->opts.prefix);
    else
        snprintf(f->prefix, sizeof(f->prefix), "t%x%x", (unsigned)getpid() & 0xffffu,
                 (unsigned)(tl_now_ms() & 0xffffu));
    if (f->opts.cluster_masters > 0) {
        f->cluster = tl_cluster_start(f->opts.cluster_masters, f->opts.cluster_replicas,
                                      f->opts.cluster_node_timeout_ms);
        int control = tl_cluster_master_of_key(f->cluster, tl_printf("{%s}", f->prefix));
        f->redis = f->cluster->node[control];
        f->rc = tl_cluster_conn(f->cluster, control);
    } else {
        f->redis = tl_redis_start(&(tl_redis_opts){.appendonly = f->opts.appendonly});
        f->rc = tl_redis_connect(f->redis);
    }
    if (f->opts.shards) tl_redis_cmd(f->rc, "SET {%s}:shards %s", f->prefix, f->opts.shards);
    tl_fleet_start_gateway(f);
    for (int i = 0; i < TL_MAX_WORKERS && f->opts.workers[i]; i++)
        tl_fleet_add_worker(f, f->opts.workers[i]);
    return f;
}

/* ------------------------------------------------------------ requests -------------- */

tl_resp *tl_request(tl_fleet *f, const char *path, tl_req req) {
    req.url = tl_printf("%s%s", f->url, path);
    return tl_http(&req);
}

tl_resp *tl_get(tl_fleet *f, const char *path) {
    return tl_request(f, path, (tl_req){.method = "GET"});
}

tl_resp *tl_post(tl_fleet *f, const char *path, const char *json_body) {
    return tl_request(f, path, (tl_req){.method = "POST", .body = json_body});
}

tl_resp *tl_delete(tl_fleet *f, const char *path) {
    return tl_request(f, path, (tl_req){.method = "DELETE"});
}

/* ------------------------------------------------------------ jobs ------------------ */

const char *tl_job_submit(tl_fleet *f, const char *model, const char *input_json) {
    const char *body = tl_printf("{\"model\":\"%s\",\"input\":%s}", model, input_json);
    tl_resp *r = tl_post(f, "/v1/jobs", body);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    if (!id || !id[0]) FAILF("submit answered 202 without an \"id\": %s", r->body);
    return id;
}

json_t *tl_job_get(tl_fleet *f, const char *id) {
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s", id));
    ASSERT_HTTP_STATUS(r, 200);
    if (!json_is_object(r->json)) FAILF("GET /v1/jobs/%s: not a JSON object: %s", id, r->body);
    return r->json;
}

bool tl_status_is_final(const char *s) {
    return s &&
           (strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0);
}

long long tl_stat(tl_fleet *f, const char *model, const char *counter) {
    const char *tags[32];
    int n = tl_fleet_shard_tags(f, tags);
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        const char *key = tl_printf("%s:stats", tags[i]);
        redisReply *r = tl_redis_cmd(tl_fleet_conn_of_key(f, key), "HGET %s %s:%s", key, model,
                                     counter);
        if (r->type == REDIS_REPLY_STRING) sum += atoll(r->str);
    }
    return sum;
}

/* ------------------------------------------------------------ shards and cluster ---- */

redisContext *tl_fleet_conn_of_key(tl_fleet *f, const char *key) {
    return f->cluster ? tl_cluster_conn_of_key(f->cluster, key) : f->rc;
}

int tl_fleet_shard_tags(tl_fleet *f, const char **tags) {
    const char *key = tl_printf("{%s}:shards", f->prefix);
    redisReply *r = tl_redis_cmd(tl_fleet_conn_of_key(f, key), "GET %s", key);
    if (r->type != REDIS_REPLY_STRING) {
        tags[0] = tl_printf("{%s}", f->prefix);
        return 1;
    }
    /* entries "k:N:state" separated by spaces (shared/include/fleet/shards.h) */
    int n = 0;
    char *text = tl_printf("%s", r->str);
    for (char *save = NULL, *e = strtok_r(text, " ", &save); e; e = strtok_r(NULL, " ", &save)) {
        int k = -1;
        char tag[32] = "";
        if (sscanf(e, "%d:%31[^:]:", &k, tag) != 2 || n >= 32)
            FAILF("shard table %s: cannot read entry \"%s\" of \"%s\"", key, e, r->str);
        tags[n++] = k == 0 ? tl_printf("{%s}", f->prefix) : tl_printf("{%s:%s}", f->prefix, tag);
    }
    return n;
}

const char *const *tl_fleet_ctl_opts(tl_fleet *f) {
    const char **v = tl_alloc(8 * sizeof(char *));
    int n = 0;
    v[n++] = "--redis-url";
    v[n++] = f->redis->url;
    v[n++] = "--prefix";
    v[n++] = f->prefix;
    if (f->cluster) {
        v[n++] = "--redis-cluster";
        v[n++] = tl_cluster_seeds(f->cluster);
    }
    return v;
}

json_t *tl_job_wait_status(tl_fleet *f, const char *id, const char *want, int deadline_ms) {
    tl_req req = {.url = tl_printf("%s/v1/jobs/%s", f->url, id)};
    int64_t end = tl_now_ms() + deadline_ms;
    int step = 5;
    char err[1024];
    for (;;) {
        tl_resp *r = tl_http_poll(&req, err, sizeof(err));
        if (!r) {
            const char *dead = tl_procs_dead_summary();
            FAILF("GET /v1/jobs/%s: %s%s%s", id, err, dead[0] ? "; died: " : "", dead);
        }
        if (r->status != 200) {
            tl_resp *kept = tl_http(&req); /* a deferred copy for the message */
            tl_http_poll_free(r);
            FAILF("GET /v1/jobs/%s answered %ld while waiting for \"%s\": %s", id, kept->status,
                  want, kept->body);
        }
        const char *st = tl_jstr(r->json, "status");
        if (st && strcmp(st, want) == 0) {
            json_t *job = json_incref(r->json);
            tl_http_poll_free(r);
            return tl_json_own(job);
        }
        if (tl_status_is_final(st) || tl_now_ms() >= end) {
            const char *text = tl_printf("%s", r->body);
            bool final = tl_status_is_final(st);
            st = tl_printf("%s", st ? st : ""); /* r's JSON goes with r */
            tl_http_poll_free(r);
            if (final)
                FAILF("job %s reached \"%s\" while waiting for \"%s\": %s", id, st, want, text);
            FAILF("job %s not \"%s\" within %d ms; last: %s", id, want, deadline_ms, text);
        }
        tl_http_poll_free(r);
        tl_sleep_ms(step);
        if (step < 40) step *= 2;
    }
}

void tl_fleet_add_tenant(tl_fleet *f, const char *name, const char *key, const char *role,
                         const char *settings) {
    const char *hex = tl_sha256_hex(key);
    tl_redis_cmd(f->rc, "SADD {%s}:tenants %s", f->prefix, name);
    tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s name %s created_ms 1", f->prefix, name, name);
    char *copy = tl_printf("%s", settings ? settings : "");
    for (char *save = NULL, *k = strtok_r(copy, " ", &save); k; k = strtok_r(NULL, " ", &save)) {
        char *v = strtok_r(NULL, " ", &save);
        tl_redis_cmd(f->rc, "HSET {%s}:tenant:%s %s %s", f->prefix, name, k, v ? v : "");
    }
    tl_redis_cmd(f->rc, "HSET {%s}:apikey:%s tenant %s role %s", f->prefix, hex, name, role);
    tl_redis_cmd(f->rc, "SADD {%s}:tenant:%s:keys %s", f->prefix, name, hex);
}
