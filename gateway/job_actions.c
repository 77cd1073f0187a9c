/* job_actions.c: what a client does to a job it already has, beyond reading and cancelling
 * it (jobs.c): POST /v1/jobs/{id}/retry runs a failed or cancelled job again under the same
 * id; DELETE /v1/jobs/{id}?purge=true deletes a finished job and its result now. Each is
 * one script (retry.lua, delete.lua) that decides from the job's state; the handlers map
 * its answer to HTTP (docs/api.md, "Retry and delete"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "auth.h"
#include "job_body.h"
#include "query.h"
#include "redis.h"
#include "routes.h"

/* One action waiting on Redis; owns what its command points to. */
typedef struct action_call {
    gw_req *r;
    fleet_cmd cmd;
    char id[FLEET_ID_LEN + 1];
    fleet_keys keys;                  /* the job's shard's (shards.h) */
    char owner[FLEET_TENANT_MAX + 1]; /* an admin's retry: the job's tenant */
    int status; /* the HTTP status of the job object that answers at the end */
} action_call;

static action_call *action_new(gw_req *r, const char *id) {
    const fleet_keys *jk = gw_job_keys(r, id);
    if (!jk) return NULL; /* answered 404 */
    action_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return NULL;
    }
    c->r = r;
    c->keys = *jk;
    snprintf(c->id, sizeof c->id, "%s", id);
    return c;
}

/* Sends c->cmd, or answers 503 and frees c when Redis cannot take it. */
static void action_send(action_call *c, gw_redis_cb cb) {
    gw_send_script(c->r, &c->cmd, cb, c, free);
}

static void reply_not_found(gw_req *r, const char *id) {
    gw_reply_problem(r, GW_PROBLEM_JOB_NOT_FOUND,
                     "no job with id '%.64s' (unknown, or expired after its ttl_s)", id);
}

/* The job as it is now answers the action (c->status). */
static void on_job(redisReply *rep, void *arg) {
    action_call *c = arg;
    gw_req *r = c->r;
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (found == -2) gw_reply_redis_error(r, "get", NULL);
    else if (found < 0) gw_reply_redis_error(r, "get", rep);
    else if (found == 0) reply_not_found(r, c->id); /* it expired or was deleted meanwhile */
    else gw_reply_json(r, c->status, gw_auth_job_json(r, &v));
    free(c);
}

/* ------------------------------------------------------------ POST .../retry --------- */

static void on_retried(redisReply *rep, void *arg) {
    action_call *c = arg;
    gw_req *r = c->r;
    fleet_retried out;
    fleet_retry_outcome o = rep ? fleet_state_retry_reply(rep, &out) : FLEET_RETRY_ERROR;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (o == FLEET_RETRY_MISSING) {
        reply_not_found(r, c->id);
    } else if (o == FLEET_RETRY_REFUSED || o == FLEET_RETRY_NOT_DEAD) {
        if (out.status == FLEET_STATUS_SUCCEEDED)
            gw_reply_problem(r, GW_PROBLEM_JOB_NOT_RETRYABLE,
                             "job %s succeeded: its result stands; submit a new job to run the "
                             "input again",
                             c->id);
        else
            gw_reply_problem(r, GW_PROBLEM_JOB_NOT_RETRYABLE,
                             "job %s is %s; only a failed or cancelled job can be retried (cancel "
                             "it first: DELETE /v1/jobs/%s)",
                             c->id, fleet_status_to_string(out.status), c->id);
    } else if (o == FLEET_RETRY_LIMIT) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld",
                 out.retry_after_ms > 0 ? (out.retry_after_ms + 999) / 1000 : 1);
        gw_add_header(r, "Retry-After", ra);
        if (strcmp(out.limit, "queue") == 0)
            gw_reply_problem(r, GW_PROBLEM_QUEUE_FULL,
                             "the model's queue is full (FLEET_MAX_QUEUE); retry later");
        else
            gw_reply_problem(r, GW_PROBLEM_TOO_MANY_ACTIVE_JOBS,
                             "your tenant may have %ld jobs queued or running at once; wait for "
                             "some to finish",
                             r->who.max_active);
    } else if (o != FLEET_RETRY_QUEUED) {
        gw_reply_redis_error(r, "retry", rep);
    } else {
        fleet_log(FLEET_LOG_INFO, "job retried", "job_id", c->id, "request_id", r->request_id,
                  NULL);
        char loc[64];
        snprintf(loc, sizeof loc, "/v1/jobs/%s", c->id);
        gw_add_header(r, "Location", loc);
        c->status = 202;
        fleet_state_get(&c->keys, c->id, gw_auth_job_scope(r), &c->cmd);
        action_send(c, on_job);
        return;
    }
    free(c);
}

/* Retries c's job as the job of tenant owner, under that tenant's quota max_active. */
static void retry_as(action_call *c, const char *owner, long max_active) {
    gw_req *r = c->r;
    gw *g = r->g;
    /* The job's shard enforces its share of each limit (shards.h), as at submit. */
    int k = fleet_shards_of_id(&g->shards, c->id);
    long share_active = (long)gw_shard_share(g, k, max_active, owner);
    long share_queue = (long)gw_shard_share(g, k, g->cfg.max_queue, NULL);
    if ((max_active > 0 && share_active == 0) || (g->cfg.max_queue > 0 && share_queue == 0)) {
        gw_add_header(r, "Retry-After", "1");
        gw_reply_problem(r,
                         max_active > 0 && share_active == 0 ? GW_PROBLEM_TOO_MANY_ACTIVE_JOBS
                                                             : GW_PROBLEM_QUEUE_FULL,
                         "the job's shard has no share of your tenant's limit (a limit below "
                         "the number of shards); retry later");
        free(c);
        return;
    }
    fleet_retry rt = {
        .id = c->id,
        .tenant = owner,
        .ready_target = g->cfg.ready_target,
        .max_active = share_active,
        .max_queue = share_queue,
        .dead_only = false,
        /* What a submit gives the index: it must outlive any job it names. */
        .index_ttl_s = gw_index_ttl(g),
    };
    fleet_state_retry(&c->keys, &rt, &c->cmd);
    action_send(c, on_retried);
}

/* An admin's retry: the job's tenant, read first, names the keys the retry writes (its
 * index, its wait list, its active set). */
static void on_owner(redisReply *rep, void *arg) {
    action_call *c = arg;
    gw_req *r = c->r;
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (found <= 0 || !v.tenant || !fleet_tenant_name_valid(v.tenant)) {
        if (found == -2) gw_reply_redis_error(r, "get", NULL);
        else if (found < 0) gw_reply_redis_error(r, "get", rep);
        else reply_not_found(r, c->id);
        free(c);
        return;
    }
    /* Its own job takes its own quota; another tenant's is an operator's retry, as
     * fleetctl dlq retry: no max_active (FLEET_MAX_QUEUE still holds). */
    snprintf(c->owner, sizeof c->owner, "%s", v.tenant);
    retry_as(c, c->owner, strcmp(c->owner, r->who.tenant) == 0 ? r->who.max_active : 0);
}

void gw_jobs_retry(gw_req *r, const char *id) {
    action_call *c = action_new(r, id);
    if (!c) return;
    if (!r->who.admin) {
        retry_as(c, r->who.tenant, r->who.max_active);
        return;
    }
    fleet_state_get(&c->keys, c->id, FLEET_TENANT_ANY, &c->cmd);
    action_send(c, on_owner);
}

/* ------------------------------------------------------------ DELETE ...?purge=true -- */

static void on_deleted(redisReply *rep, void *arg) {
    action_call *c = arg;
    gw_req *r = c->r;
    fleet_status st = FLEET_STATUS_UNKNOWN;
    fleet_delete_outcome o = rep ? fleet_state_delete_reply(rep, &st) : FLEET_DELETE_ERROR;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (o == FLEET_DELETE_MISSING) {
        reply_not_found(r, c->id);
    } else if (o == FLEET_DELETE_REFUSED) {
        gw_reply_problem(r, GW_PROBLEM_JOB_NOT_FINISHED,
                         "job %s is %s; only a finished job can be deleted (cancel it first: "
                         "DELETE /v1/jobs/%s without purge)",
                         c->id, fleet_status_to_string(st), c->id);
    } else if (o != FLEET_DELETE_DONE) {
        gw_reply_redis_error(r, "delete", rep);
    } else {
        fleet_log(FLEET_LOG_INFO, "job deleted", "job_id", c->id, "request_id", r->request_id,
                  NULL);
        gw_reply_json(r, 200,
                      json_pack("{s:s, s:s, s:b}", "id", c->id, "status",
                                fleet_status_to_string(st), "deleted", 1));
    }
    free(c);
}

bool gw_jobs_purge_wanted(gw_req *r, bool *purge) {
    const char *q = r->req->uri && r->req->uri->query_raw ? (const char *)r->req->uri->query_raw
                                                          : NULL;
    char v[8];
    int rc = gw_query_get(q, "purge", v, sizeof v);
    *purge = rc == 1 && strcmp(v, "true") == 0;
    if (rc < 0 || (rc == 1 && strcmp(v, "true") != 0 && strcmp(v, "false") != 0)) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY, "purge must be true or false");
        return false;
    }
    return true;
}

void gw_jobs_delete(gw_req *r, const char *id) {
    action_call *c = action_new(r, id);
    if (!c) return;
    fleet_state_delete(&c->keys, c->id, gw_auth_job_scope(r), &c->cmd);
    action_send(c, on_deleted);
}
