/* model_actions.c: an operator steers a model's queue (admin API key): POST
 * /v1/models/{model}/purge cancels every queued job of the model (purge.lua, called again
 * while it has more); /pause and /resume stop and restart workers taking its jobs, which
 * still queue meanwhile (pause.lua, claim.lua, feed.lua). docs/api.md, "Steering a model".
 * A model's queue lives on every shard of the table (shards.h): each action runs on one
 * shard after the other (each shard's keys its own calls), and answers once all are done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/log.h"
#include "fleet/state.h"
#include "models.h"
#include "redis.h"
#include "routes.h"

/* Queued jobs one purge call cancels at most: a call holds Redis about 3 ms (12 ms per
 * 1,000 jobs measured, docs/api.md), short enough for every other client to be served
 * between the calls. */
#define PURGE_BUDGET 250L

typedef struct model_call {
    gw_req *r;
    fleet_cmd cmd;
    char model[FLEET_MODEL_MAX + 1];
    char cursor[48]; /* purge: the stream entry id the last call looked at */
    long long cancelled;
    bool pause;
    size_t shard;         /* the index in the table's all[] of the shard being worked on */
    long long paused_ms;  /* pause: the first shard's mark */
    long long requeued;   /* resume: summed over the shards */
} model_call;

/* The keys of the shard being worked on, or NULL when every shard is done. The table may
 * change meanwhile: its all[] as it is at each step is walked. */
static const fleet_keys *model_shard(const model_call *c) {
    const fleet_shards *sh = &c->r->g->shards;
    return c->shard < sh->n ? &sh->shard[sh->all[c->shard]].keys : NULL;
}

/* A new call for r's model, or NULL after answering: 403 without an admin key, 404 for a
 * path segment that cannot be a model name. */
static model_call *model_call_new(gw_req *r, const char *model) {
    if (!r->who.admin) {
        gw_reply_problem(r, GW_PROBLEM_FORBIDDEN,
                         "steering a model's queue needs an admin API key (fleetctl tenant add "
                         "NAME --admin); your key is tenant '%s''s",
                         r->who.tenant);
        return NULL;
    }
    if (!fleet_model_name_valid(model)) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_MODEL,
                         "'%.64s' is not a model name (1-64 characters of a-z, 0-9, _ -)", model);
        return NULL;
    }
    model_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return NULL;
    }
    c->r = r;
    snprintf(c->model, sizeof c->model, "%s", model);
    return c;
}

/* Sends c->cmd, or answers 503 and frees c when Redis cannot take it. */
static void model_send(model_call *c, gw_redis_cb cb) {
    gw_send_script(c->r, &c->cmd, cb, c, free);
}

/* ------------------------------------------------------------ POST .../purge --------- */

static void on_purged(redisReply *rep, void *arg) {
    model_call *c = arg;
    gw_req *r = c->r;
    long long n = 0;
    const char *cursor = "";
    bool more = false;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (fleet_state_purge_reply(rep, &n, &cursor, &more) < 0) {
        gw_reply_redis_error(r, "purge", rep);
    } else {
        c->cancelled += n;
        if (more && strlen(cursor) < sizeof c->cursor) {
            /* The next part of the queue: a new command (the reply is freed after this). */
            snprintf(c->cursor, sizeof c->cursor, "%s", cursor);
        } else {
            c->cursor[0] = '\0'; /* this shard's queue is done: the next shard's */
            c->shard++;
        }
        const fleet_keys *k = model_shard(c);
        if (k) {
            fleet_state_purge(k, c->model, c->cursor, PURGE_BUDGET, &c->cmd);
            model_send(c, on_purged);
            return;
        }
        char count[24];
        snprintf(count, sizeof count, "%lld", c->cancelled);
        fleet_log(FLEET_LOG_INFO, "model queue purged", "model", c->model, "cancelled", count,
                  "request_id", r->request_id, NULL);
        gw_reply_json(r, 200,
                      json_pack("{s:s, s:I}", "model", c->model, "cancelled",
                                (json_int_t)c->cancelled));
    }
    free(c);
}

void gw_models_purge(gw_req *r, const char *model) {
    model_call *c = model_call_new(r, model);
    if (!c) return;
    fleet_state_purge(model_shard(c), c->model, "", PURGE_BUDGET, &c->cmd);
    model_send(c, on_purged);
}

/* ------------------------------------------------------------ POST .../pause|resume -- */

static void on_paused(redisReply *rep, void *arg) {
    model_call *c = arg;
    gw_req *r = c->r;
    long long paused_ms = 0, requeued = 0;
    int found = rep ? fleet_state_pause_reply(rep, &paused_ms, &requeued) : -2;
    if (found == -2) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (found < 0) {
        gw_reply_redis_error(r, c->pause ? "pause" : "resume", rep);
    } else {
        if (c->shard == 0) c->paused_ms = paused_ms;
        c->requeued += requeued;
        c->shard++;
        const fleet_keys *k = model_shard(c);
        if (k) { /* the next shard (the reply is freed after this) */
            fleet_state_pause(k, c->model, c->pause, &c->cmd);
            model_send(c, on_paused);
            return;
        }
        paused_ms = c->paused_ms;
        requeued = c->requeued;
        fleet_log(FLEET_LOG_INFO, c->pause ? "model paused" : "model resumed", "model", c->model,
                  "request_id", r->request_id, NULL);
        json_t *o = json_pack("{s:s, s:b}", "model", c->model, "paused", paused_ms > 0);
        if (paused_ms > 0) json_object_set_new(o, "paused_ms", json_integer(paused_ms));
        if (!c->pause) json_object_set_new(o, "requeued", json_integer(requeued));
        gw_reply_json(r, 200, o);
    }
    free(c);
}

static void pause_or_resume(gw_req *r, const char *model, bool pause) {
    model_call *c = model_call_new(r, model);
    if (!c) return;
    /* The pause mark lives on the model's shards (pause.lua); whether the model is
     * registered is the models hash's, which this gateway keeps read (models.h). */
    if (!gw_models_record(r->g->models, model)) {
        gw_reply_problem(r, GW_PROBLEM_NOT_FOUND,
                         "no model '%s' is registered (fleetctl model add %s, or start a worker "
                         "that serves it)",
                         model, model);
        free(c);
        return;
    }
    c->pause = pause;
    fleet_state_pause(model_shard(c), c->model, pause, &c->cmd);
    model_send(c, on_paused);
}

void gw_models_pause(gw_req *r, const char *model) { pause_or_resume(r, model, true); }

void gw_models_resume(gw_req *r, const char *model) { pause_or_resume(r, model, false); }
