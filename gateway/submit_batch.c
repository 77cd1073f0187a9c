/* submit_batch.c: POST /v1/jobs/batch: up to GW_BATCH_MAX jobs in one request.
 *
 *   {"jobs": [{"model": "echo", "input": {...}}, {...}, ...]}
 *   200 {"jobs": [{"id": "...", "status": "queued", "queue_position": 3},
 *                 {"error": {"status": 422, "type": "...", "detail": "..."}}, ...]}
 *
 * Each item follows the rules of POST /v1/jobs (without Prefer: wait or Idempotency-Key)
 * and is accepted or refused on its own: a refused item writes nothing, and the answer
 * lists the outcome of every item in order. The submits go to Redis pipelined, one script
 * each; the answer goes out when the last one returns.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/log.h"
#include "redis.h"
#include "routes.h"
#include "job_body.h"
#include "models.h"

#define GW_BATCH_MAX 1000

typedef struct batch batch;

typedef struct item {
    batch *b;
    gw_job_request jr;
    gw_submit_ids ids;
    fleet_cmd cmd;
    json_t *outcome;
    bool send; /* valid: its submit goes to Redis (else outcome holds why not) */
} item;

struct batch {
    gw_req *r;
    size_t n, pending;
    item *items;
    const char *retry_after; /* an item was refused by a sick Redis: the longest wait */
};

/* An item's refusal: the problem's status and type come from its row in problems.h. */
static json_t *item_error(gw_problem_id id, const char *detail) {
    const gw_problem_type *t = gw_problem_type_of(id);
    char type[96];
    snprintf(type, sizeof type, "urn:fleet:problem:%s", t->slug);
    return json_pack("{s:{s:i, s:s, s:s}}", "error", "status", t->status, "type", type, "detail",
                     detail);
}

/* An item whose submit Redis did not take (unreachable, loading, full, ...), as POST
 * /v1/jobs would answer it (redis.c); the batch answer carries Retry-After then. */
static json_t *item_redis_error(batch *b, const redisReply *rep) {
    gw_redis_problem p;
    gw_redis_problem_of(b->r->g->redis, rep, &p);
    if (p.id == GW_PROBLEM_INTERNAL)
        fleet_log(FLEET_LOG_ERROR, "unexpected redis reply", "op", "batch submit", "reply",
                  rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "malformed", "request_id",
                  b->r->request_id, NULL);
    if (p.retry_after && (!b->retry_after || atoi(p.retry_after) > atoi(b->retry_after)))
        b->retry_after = p.retry_after;
    return item_error(p.id, p.detail);
}

static void batch_finish(batch *b) {
    json_t *arr = json_array();
    size_t accepted = 0;
    for (size_t i = 0; i < b->n; i++) {
        json_t *o = b->items[i].outcome ? b->items[i].outcome
                                        : item_error(GW_PROBLEM_INTERNAL, "no outcome");
        if (json_object_get(o, "id")) accepted++;
        json_array_append_new(arr, o);
        b->items[i].outcome = NULL;
        gw_job_request_free(&b->items[i].jr);
    }
    if (b->retry_after) gw_add_header(b->r, "Retry-After", b->retry_after);
    gw_reply_json(b->r, 200,
                  json_pack("{s:o, s:I, s:I}", "jobs", arr, "accepted", (json_int_t)accepted,
                            "refused", (json_int_t)(b->n - accepted)));
    free(b->items);
    free(b);
}

static void on_item(redisReply *rep, void *arg) {
    item *it = arg;
    batch *b = it->b;
    fleet_submitted out;
    fleet_submit_outcome o = rep ? fleet_state_submit_reply(rep, &out) : FLEET_SUBMIT_ERROR;
    if (!rep) {
        it->outcome = item_redis_error(b, NULL);
    } else if (o == FLEET_SUBMIT_QUEUED) {
        gw_place_note(b->r->g, &it->ids.place, out.queue_position);
        it->outcome = json_pack("{s:s, s:s, s:I}", "id", it->ids.id, "status", "queued",
                                "queue_position", (json_int_t)out.queue_position);
        /* As POST /v1/jobs says it (models.h), per item. */
        if (it->outcome && gw_models_live_workers(b->r->g->models, it->jr.model) == 0)
            json_object_set_new(it->outcome, "no_worker", json_true());
    } else if (o == FLEET_SUBMIT_ERROR && gw_redis_nothing_written(rep) &&
               gw_place_elsewhere(b->r->g, &it->ids.place, &it->cmd) == 0) {
        /* That shard's master cannot take a write now (and took none): another may. */
        if (gw_redis_script(b->r->g->redis, &it->cmd, on_item, it) == 0) return;
        it->outcome = item_redis_error(b, NULL);
    } else if (o == FLEET_SUBMIT_LIMIT &&
               gw_place_next(b->r->g, &it->ids.place, &out, &it->cmd) == 0) {
        /* That shard is at its share of the limit: the next one may not be (shards.h). */
        if (gw_redis_script(b->r->g->redis, &it->cmd, on_item, it) == 0) return;
        it->outcome = item_redis_error(b, NULL);
    } else if (o == FLEET_SUBMIT_LIMIT) {
        const fleet_submitted *best = &it->ids.place.best;
        bool queue = strcmp(best->limit, "queue") == 0;
        it->outcome = item_error(queue ? GW_PROBLEM_QUEUE_FULL
                                 : strcmp(best->limit, "rate") == 0
                                     ? GW_PROBLEM_RATE_LIMITED
                                     : GW_PROBLEM_TOO_MANY_ACTIVE_JOBS,
                                 queue ? "the model's queue is full"
                                       : "over your tenant's limit; retry later");
    } else {
        it->outcome = item_redis_error(b, rep);
    }
    if (--b->pending == 0) batch_finish(b);
}

void gw_jobs_batch(gw_req *r) {
    size_t len = 0;
    char *body = gw_body(r, &len);
    if (!body) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    const char *ct = gw_header(r, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        free(body);
        gw_reply_problem(r, GW_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                         "a batch is JSON: send Content-Type: application/json");
        return;
    }
    gw_problem p;
    json_t *root = gw_json_load(body, len, "body", &p);
    free(body);
    if (!root) {
        gw_reply_problem(r, gw_problem_of_slug(p.slug), "%s", p.detail);
        return;
    }
    json_t *jobs = json_object_get(root, "jobs");
    if (!json_is_object(root) || !json_is_array(jobs) || json_object_size(root) != 1) {
        json_decref(root);
        gw_reply_problem(r, GW_PROBLEM_INVALID_BODY,
                         "send {\"jobs\": [job, ...]} with 1 to %d jobs, each like the body "
                         "of POST /v1/jobs",
                         GW_BATCH_MAX);
        return;
    }
    size_t n = json_array_size(jobs);
    if (n == 0 || n > GW_BATCH_MAX) {
        json_decref(root);
        gw_reply_problem(r, n ? GW_PROBLEM_BATCH_TOO_LARGE : GW_PROBLEM_INVALID_BODY,
                         "a batch holds 1 to %d jobs, got %zu", GW_BATCH_MAX, n);
        return;
    }
    batch *b = calloc(1, sizeof *b);
    item *items = b ? calloc(n, sizeof *items) : NULL;
    if (!items) {
        free(b);
        json_decref(root);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    b->r = r;
    b->n = n;
    b->items = items;
    /* Validate every item first; the valid ones are sent together. */
    size_t to_send = 0;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        it->b = b;
        int rc = gw_job_from_json(json_array_get(jobs, i), r->g->cfg.result_ttl_s, &it->jr, &p);
        if (rc == 0 && gw_submit_prepare(r, &it->jr, &it->ids, NULL, NULL, &it->cmd, &p) == 0) {
            it->send = true;
            to_send++;
            continue;
        }
        it->outcome = item_error(gw_problem_of_slug(p.slug), p.detail);
        gw_job_request_free(&it->jr);
        it->cmd.argc = 0;
    }
    json_decref(root);
    if (to_send == 0) {
        batch_finish(b);
        return;
    }
    b->pending = to_send;
    gw_pause(r);
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        if (!it->send) continue; /* refused above: its outcome says why */
        if (gw_redis_script(r->g->redis, &it->cmd, on_item, it) < 0) {
            it->outcome = item_redis_error(b, NULL);
            if (--b->pending == 0) {
                batch_finish(b);
                return;
            }
        }
    }
}
