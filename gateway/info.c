/* info.c: health, readiness, models and stats. */
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

/* Builds {"<model>": {counter: n, ...}} for the models the gateway knows (models.h) from
 * the stats hash (fields "<model>:<counter>"). Models not known but counted are shown too. */
static json_t *stats_by_model(const gw *g, const redisReply *stats) {
    json_t *models = json_object();
    const char *known;
    json_t *unused;
    json_object_foreach((json_t *)gw_models_names(g->models), known, unused)
        json_object_set_new(models, known, zero_counts());
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
        /* Shown as stored, also below 0: the counters balance by construction
         * (docs/redis.md), so a negative one is a fault to see, not to hide. */
        json_object_set_new(m, colon + 1, json_integer(v));
    }
    return models;
}

static void on_stats(redisReply *rep, void *arg) {
    gw_req *r = arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        gw_reply_redis_error(r, "stats", rep);
        return;
    }
    json_t *models = stats_by_model(r->g, rep);
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

/* A tenant's own view: its active jobs and limits. */
static void on_tenant_stats(redisReply *rep, void *arg) {
    gw_req *r = arg;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        gw_reply_redis_error(r, "tenant stats", rep);
        return;
    }
    json_t *t = json_pack("{s:s, s:I, s:I, s:f, s:I}", "name", r->who.tenant, "active",
                          (json_int_t)rep->integer, "max_active", (json_int_t)r->who.max_active,
                          "rate", r->who.rate, "max_body", (json_int_t)r->who.max_body);
    gw_reply_json(r, 200, json_pack("{s:o}", "tenant", t));
}

/* GET /v1/stats: the global counters for an admin key (and with FLEET_AUTH=off); a
 * tenant's own numbers otherwise. */
void gw_info_stats(gw_req *r) {
    if (!r->who.admin) {
        fleet_key ak = fleet_key_tenant_active(&r->g->keys, r->who.tenant);
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
    fleet_key k = fleet_key_stats(&r->g->keys);
    const char *argv[2] = {"HGETALL", k.s};
    size_t lens[2] = {7, strlen(k.s)};
    if (gw_redis_command(r->g->redis, 2, argv, lens, on_stats, r) < 0) {
        gw_reply_redis_error(r, "send", NULL);
        return;
    }
    gw_pause(r);
}

typedef struct models_call {
    gw_req *r;
    fleet_cmd cmd;
} models_call;

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

static void on_models(redisReply *rep, void *arg) {
    models_call *c = arg;
    gw_req *r = c->r;
    free(c);
    const redisReply *workers, *stats, *records;
    if (!rep || fleet_state_models_reply(rep, &workers, &stats, &records) < 0) {
        gw_reply_redis_error(r, "models", rep);
        return;
    }
    /* The same read the gateway's copy is made of: keep it current (models.h). */
    gw_models_update(r->g->models, workers, records);
    json_t *counts = stats_by_model(r->g, stats);
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
}

void gw_info_models(gw_req *r) {
    models_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    c->r = r;
    fleet_state_models(&r->g->keys, true, &c->cmd);
    if (gw_redis_script(r->g->redis, &c->cmd, on_models, c) < 0) {
        free(c);
        gw_reply_redis_error(r, "send", NULL);
        return;
    }
    gw_pause(r);
}
