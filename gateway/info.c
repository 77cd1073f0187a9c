/* info.c: health, readiness, models and stats.
 *
 * The counters live per shard (shards.h: each shard's stats hash and tenants' active sets);
 * stats and model counts are their sums over the shards of the table. With one shard that is
 * the one read it always was; with several, one read per shard, sent together, answered
 * once all are in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/id.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "models.h"
#include "shards.h"
#include "redis.h"
#include "routes.h"

void gw_info_healthz(gw_req *r) { gw_reply_json(r, 200, json_pack("{s:s}", "status", "ok")); }

void gw_info_readyz(gw_req *r) {
    char why[256];
    const char *reason = r->g->draining ? "shutting down"
                                        : gw_redis_health(r->g->redis, why, sizeof why);
    /* Until then a registered model would be refused (models.h). */
    if (!reason && !gw_models_loaded(r->g->models))
        reason = "the registered models have not been read from Redis yet";
    if (!reason) reason = gw_shards_unready(r->g->shard_table); /* shards.h */
    if (!reason) gw_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
    else gw_reply_json(r, 503, json_pack("{s:s, s:s}", "status", "not ready", "reason", reason));
}

/* The counters every model reports, so clients see zeros rather than missing fields. */
static const char *const counters[] = {
    "queued",  "running",     "submitted", "succeeded",     "failed",      "cancelled", "expired",
    "retried", "handed_back", "reclaimed", "dead_lettered", "dlq_retried", "evicted",
};

static json_t *zero_counts(void) {
    json_t *m = json_object();
    for (size_t j = 0; j < sizeof counters / sizeof *counters; j++)
        json_object_set_new(m, counters[j], json_integer(0));
    return m;
}

/* Adds a stats hash (fields "<model>:<counter>", one shard's) to models, {"<model>":
 * {counter: n, ...}}. Models not known but counted are shown too. */
static void stats_add(json_t *models, const redisReply *stats) {
    for (size_t i = 0; stats && i + 1 < stats->elements; i += 2) {
        const char *field = stats->element[i]->str;
        const char *colon = field ? strrchr(field, ':') : NULL;
        if (!colon || colon == field || (size_t)(colon - field) > FLEET_MODEL_MAX) continue;
        char model[FLEET_MODEL_MAX + 1];
        memcpy(model, field, (size_t)(colon - field));
        model[colon - field] = '\0';
        json_t *m = json_object_get(models, model);
        if (!m) {
            m = zero_counts();
            json_object_set_new(models, model, m);
        }
        long long v = strtoll(stats->element[i + 1]->str ? stats->element[i + 1]->str : "0", NULL,
                              10);
        /* Shown as stored (summed over the shards), also below 0: the counters balance by
         * construction (docs/redis.md), so a negative one is a fault to see, not to hide. */
        json_t *had = json_object_get(m, colon + 1);
        json_object_set_new(m, colon + 1, json_integer((had ? json_integer_value(had) : 0) + v));
    }
}

/* Builds {"<model>": {counter: n, ...}} for the models the gateway knows (models.h), with
 * zeros, and from the stats hash when given. */
static json_t *stats_by_model(const gw *g, const redisReply *stats) {
    json_t *models = json_object();
    const char *known;
    json_t *unused;
    json_object_foreach((json_t *)gw_models_names(g->models), known, unused)
        json_object_set_new(models, known, zero_counts());
    stats_add(models, stats);
    return models;
}

/* ------------------------------------------------------------ one read per shard ---- */

static fleet_key stats_key_of(const fleet_keys *k, const char *unused) {
    (void)unused;
    return fleet_key_stats(k);
}

/* A request that reads each shard of the table (stats, the tenant's active count, the
 * model counts) and answers once every read is in. A read's reply lives only during its
 * callback: each one adds what it says to the call. */
typedef struct shards_call {
    gw_req *r;
    size_t pending;
    bool failed; /* a read failed: err is the answer */
    gw_redis_problem err;
    json_t *models;       /* stats: the counts by model */
    long long active;     /* the tenant's active count */
    fleet_cmd cmd;        /* models: the models script, sent after the shards' counts */
    void (*done)(struct shards_call *c); /* answers (c->failed is answered before) */
    void (*add)(struct shards_call *c, const redisReply *rep); /* one shard's reply */
    int want_type; /* the reply type each read must have */
} shards_call;

static void shards_call_free(shards_call *c) {
    json_decref(c->models);
    free(c);
}

static void shards_call_end(shards_call *c) {
    if (c->failed) {
        gw_req *r = c->r;
        if (c->err.retry_after) gw_add_header(r, "Retry-After", c->err.retry_after);
        if (c->err.id == GW_PROBLEM_INTERNAL)
            gw_reply_problem(r, c->err.id, "%s; request_id %s", c->err.detail, r->request_id);
        else gw_reply_problem(r, c->err.id, "%s", c->err.detail);
        shards_call_free(c);
        return;
    }
    c->done(c);
}

static void on_shard_read(redisReply *rep, void *arg) {
    shards_call *c = arg;
    if (!c->failed && (!rep || rep->type != c->want_type)) {
        c->failed = true;
        gw_redis_problem_of(c->r->g->redis, rep, &c->err);
        if (c->err.id == GW_PROBLEM_INTERNAL)
            fleet_log(FLEET_LOG_ERROR, "unexpected redis reply", "op", "shard read", "reply",
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "malformed",
                      "request_id", c->r->request_id, NULL);
    } else if (!c->failed) {
        c->add(c, rep);
    }
    if (--c->pending == 0) shards_call_end(c);
}

/* Sends, for each shard of the table but shard `skip` (-1: none), the command argv[0] with
 * the key key_of(shard's keys, arg) and the rest of argv, then pauses the request. */
static void shards_send(shards_call *c, int skip, fleet_key (*key_of)(const fleet_keys *, const char *),
                        const char *key_arg, int argc, const char **argv) {
    gw_req *r = c->r;
    const fleet_shards *sh = &r->g->shards;
    c->pending = 1; /* this function: no answer before every read is sent */
    for (size_t i = 0; i < sh->n; i++) {
        int k = sh->all[i];
        if (k == skip) continue;
        fleet_key key = key_of(&sh->shard[k].keys, key_arg);
        const char *av[8];
        size_t lens[8];
        for (int j = 0; j < argc; j++) av[j] = argv[j];
        av[1] = key.s;
        for (int j = 0; j < argc; j++) lens[j] = strlen(av[j]);
        c->pending++;
        if (gw_redis_command(r->g->redis, argc, av, lens, on_shard_read, c) < 0) {
            c->pending--;
            if (!c->failed) {
                c->failed = true;
                gw_redis_problem_of(r->g->redis, NULL, &c->err);
            }
        }
    }
    if (!r->paused) gw_pause(r);
    if (--c->pending == 0) shards_call_end(c);
}

static void answer_stats(gw_req *r, json_t *models) {
    json_t *totals = json_object();
    const char *name;
    json_t *m;
    json_object_foreach(models, name, m) {
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v) {
            json_t *t = json_object_get(totals, k);
            json_object_set_new(totals, k,
                                json_integer((t ? json_integer_value(t) : 0) +
                                             json_integer_value(v)));
        }
    }
    gw_reply_json(r, 200, json_pack("{s:o, s:o}", "models", models, "totals", totals));
}

static void on_stats(redisReply *rep, void *arg) {
    gw_req *r = arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        gw_reply_redis_error(r, "stats", rep);
        return;
    }
    answer_stats(r, stats_by_model(r->g, rep));
}

static void stats_add_shard(shards_call *c, const redisReply *rep) { stats_add(c->models, rep); }

static void stats_done(shards_call *c) {
    answer_stats(c->r, c->models);
    c->models = NULL; /* stolen */
    shards_call_free(c);
}

/* A tenant's own view: its active jobs (over the shards) and limits. */
static void answer_tenant_stats(gw_req *r, long long active) {
    json_t *t = json_pack("{s:s, s:I, s:I, s:f, s:I}", "name", r->who.tenant, "active",
                          (json_int_t)active, "max_active", (json_int_t)r->who.max_active,
                          "rate", r->who.rate, "max_body", (json_int_t)r->who.max_body);
    gw_reply_json(r, 200, json_pack("{s:o}", "tenant", t));
}

static void on_tenant_stats(redisReply *rep, void *arg) {
    gw_req *r = arg;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        gw_reply_redis_error(r, "tenant stats", rep);
        return;
    }
    answer_tenant_stats(r, rep->integer);
}

static void active_add_shard(shards_call *c, const redisReply *rep) { c->active += rep->integer; }

static void active_done(shards_call *c) {
    answer_tenant_stats(c->r, c->active);
    shards_call_free(c);
}

/* GET /v1/stats: the global counters for an admin key (and with FLEET_AUTH=off); a
 * tenant's own numbers otherwise. */
void gw_info_stats(gw_req *r) {
    const fleet_shards *sh = &r->g->shards;
    if (sh->n > 1) {
        shards_call *c = calloc(1, sizeof *c);
        if (!c || !(c->models = r->who.admin ? stats_by_model(r->g, NULL) : json_object())) {
            free(c);
            gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
            return;
        }
        c->r = r;
        if (r->who.admin) {
            c->want_type = REDIS_REPLY_ARRAY;
            c->add = stats_add_shard;
            c->done = stats_done;
            const char *argv[2] = {"HGETALL", NULL};
            shards_send(c, -1, stats_key_of, NULL, 2, argv);
        } else {
            char now[32];
            snprintf(now, sizeof now, "%llu", (unsigned long long)fleet_now_ms());
            c->want_type = REDIS_REPLY_INTEGER;
            c->add = active_add_shard;
            c->done = active_done;
            const char *argv[4] = {"ZCOUNT", NULL, now, "+inf"};
            shards_send(c, -1, fleet_key_tenant_active, r->who.tenant, 4, argv);
        }
        return;
    }
    const fleet_keys *keys = &sh->shard[sh->all[0]].keys;
    if (!r->who.admin) {
        fleet_key ak = fleet_key_tenant_active(keys, r->who.tenant);
        char now[32];
        snprintf(now, sizeof now, "%llu", (unsigned long long)fleet_now_ms());
        const char *argv[4] = {"ZCOUNT", ak.s, now, "+inf"};
        size_t lens[4] = {6, strlen(ak.s), strlen(now), 4};
        if (gw_redis_command(r->g->redis, 4, argv, lens, on_tenant_stats, r) < 0) {
            gw_reply_redis_error(r, "send", NULL);
            return;
        }
        gw_pause(r);
        return;
    }
    fleet_key k = fleet_key_stats(keys);
    const char *argv[2] = {"HGETALL", k.s};
    size_t lens[2] = {7, strlen(k.s)};
    if (gw_redis_command(r->g->redis, 2, argv, lens, on_stats, r) < 0) {
        gw_reply_redis_error(r, "send", NULL);
        return;
    }
    gw_pause(r);
}

/* One model of GET /v1/models: its live workers (from their heartbeat hashes), queue and
 * record. */
static json_t *model_json(gw *g, const char *name, json_t *counts, const redisReply *workers) {
    int live = 0, busy = 0;
    const char *backend = NULL;
    long max_batch = 0;
    for (size_t i = 0; i < workers->elements; i++) {
        const redisReply *w = workers->element[i];
        if (strcmp(w->element[1]->str, name) != 0) continue;
        live++;
        busy += strcmp(w->element[4]->str, "1") == 0;
        backend = w->element[2]->str;
        long b = strtol(w->element[3]->str, NULL, 10);
        if (b > max_batch) max_batch = b;
    }
    const json_t *rec = gw_models_record(g->models, name);
    json_t *o = json_pack("{s:s, s:b, s:b, s:i, s:i, s:I, s:I, s:s?, s:i}", "name", name,
                          "accepts_jobs", gw_models_accepts(g->models, name), "registered",
                          rec != NULL, "workers", live, "busy_workers", busy, "queue_depth",
                          json_integer_value(json_object_get(counts, "queued")), "running",
                          json_integer_value(json_object_get(counts, "running")), "backend",
                          backend, "max_batch", (int)max_batch);
    /* Paused by an operator (model_actions.c): its jobs queue, no worker takes one. */
    if (o) json_object_set_new(o, "paused", json_boolean(rec && json_object_get(rec, "paused_ms")));
    if (!o || !rec) return o;
    /* The record's fields as stored (created_ms, registered_by, description, paused_ms). */
    static const char *const shown[] = {"created_ms", "registered_by", "description", "paused_ms"};
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++) {
        json_t *v = json_object_get(rec, shown[i]);
        if (v) json_object_set(o, shown[i], v);
    }
    return o;
}

/* The models script's answer: the control keys (workers, records) and shard 0's counts;
 * c->models holds the other shards' counts already. */
static void on_models(redisReply *rep, void *arg) {
    shards_call *c = arg;
    gw_req *r = c->r;
    const redisReply *workers, *stats, *records;
    if (!rep || fleet_state_models_reply(rep, &workers, &stats, &records) < 0) {
        gw_reply_redis_error(r, "models", rep);
        shards_call_free(c);
        return;
    }
    /* The same read the gateway's copy is made of: keep it current (models.h). */
    gw_models_update(r->g->models, workers, records);
    json_t *counts = c->models ? c->models : stats_by_model(r->g, NULL);
    c->models = NULL;
    stats_add(counts, stats);
    json_t *list = json_array();
    const char *name;
    json_t *unused;
    /* The models the gateway knows: allowlisted, registered or served by a live worker.
     * A model only counted in the stats (removed, or never registered) is not listed. */
    json_object_foreach((json_t *)gw_models_names(r->g->models), name, unused) {
        json_t *m = json_object_get(counts, name);
        json_t *o = model_json(r->g, name, m, workers);
        if (o) json_array_append_new(list, o);
    }
    json_decref(counts);
    gw_reply_json(r, 200, json_pack("{s:o}", "models", list));
    shards_call_free(c);
}

/* The models script on the control keys, whose stats hash is shard 0's. */
static void send_models(shards_call *c) {
    gw_req *r = c->r;
    fleet_state_models(&r->g->keys, true, &c->cmd);
    if (gw_redis_script(r->g->redis, &c->cmd, on_models, c) < 0) {
        shards_call_free(c);
        gw_reply_redis_error(r, "send", NULL);
        return;
    }
    if (!r->paused) gw_pause(r);
}

void gw_info_models(gw_req *r) {
    shards_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    c->r = r;
    const fleet_shards *sh = &r->g->shards;
    if (sh->n == 1 && sh->all[0] == 0) {
        send_models(c);
        return;
    }
    /* Several shards: the counts of every shard but 0 first (the replies of the models
     * script live only in its callback, which answers), then the script. */
    if (!(c->models = stats_by_model(r->g, NULL))) {
        free(c);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    c->want_type = REDIS_REPLY_ARRAY;
    c->add = stats_add_shard;
    c->done = send_models;
    const char *argv[2] = {"HGETALL", NULL};
    shards_send(c, 0, stats_key_of, NULL, 2, argv);
}
