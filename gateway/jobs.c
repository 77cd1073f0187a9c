/* jobs.c: the job routes. Handlers validate, then call the state module through the
 * async Redis glue; no handler decides a state transition (see shared/scripts/). */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/id.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "query.h"
#include "auth.h"
#include "result_file.h"
#include "out_stream.h"
#include "events.h"
#include "ssrf.h"
#include "webhooks.h"
#include "redis.h"
#include "routes.h"
#include "gone.h"
#include "job_body.h"
#include "models.h"
#include "shards.h"

#if defined(__SANITIZE_ADDRESS__)
#define GW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GW_ASAN 1
#endif
#endif
#ifdef GW_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* One job request waiting on Redis. Owns everything the command's argv points to. */
typedef struct job_call {
    gw_req *r;
    fleet_cmd cmd;
    gw_job_request jr;
    char id[FLEET_ID_LEN + 1];
    gw_submit_ids ids; /* what a submit command points to */
    bool want_msgpack;
    fleet_cancel_outcome cancel;
    long wait_s; /* Prefer: wait=N */
    bool replay; /* answering an Idempotency-Key replay */
    char idem_hash[65], idem_digest[65];
    gw_result_file_view file;
    /* A submit's search for its Idempotency-Key's record over the shards (shards.h):
     * one read per shard in flight, the shard found (-1: none yet), a read that failed. */
    struct idem_look {
        struct job_call *c;
        int k;
    } look[FLEET_SHARDS_MAX];
    int look_pending, look_found;
    bool look_failed;
} job_call;

/* Spare job_calls, kept for the next request instead of freed. A job_call is about
 * 7 KiB (its command's buffer): glibc serves an allocation that large from its main bins
 * and first consolidates its fast bins, at every request, which showed as a few percent
 * of the gateway's CPU per submit. A spare is poisoned for AddressSanitizer while it
 * waits, so a use after call_free is still reported. The gateway is one thread. */
#define SPARE_MAX 64
static job_call *spare[SPARE_MAX];
static int nspare;

static job_call *call_new(gw_req *r) {
    job_call *c;
    if (nspare > 0) {
        c = spare[--nspare];
        ASAN_UNPOISON_MEMORY_REGION(c, sizeof *c);
        /* What a fresh one holds: zeros, but for the command, which its builder starts. */
        memset((char *)c + offsetof(job_call, jr), 0, sizeof *c - offsetof(job_call, jr));
    } else {
        c = calloc(1, sizeof *c);
    }
    if (c) c->r = r;
    return c;
}

static void call_free(job_call *c) {
    if (!c) return;
    gw_job_request_free(&c->jr);
    if (nspare == SPARE_MAX) {
        free(c);
        return;
    }
    spare[nspare++] = c;
    ASAN_POISON_MEMORY_REGION(c, sizeof *c);
}

/* Sends c->cmd, or answers 503 and frees c when Redis cannot take it. */
static void call_free_any(void *c) { call_free(c); }

static void send_or_reply(job_call *c, gw_redis_cb cb) {
    gw_send_script(c->r, &c->cmd, cb, c, call_free_any);
}

/* A Redis refusal (loading, full, ...) or an unexpected answer: redis.c decides. */
static void reply_internal(gw_req *r, const char *what, const redisReply *rep) {
    gw_reply_redis_error(r, what, rep);
}

static void reply_not_found(gw_req *r, const char *id) {
    gw_reply_problem(r, GW_PROBLEM_JOB_NOT_FOUND,
                     "no job with id '%.64s' (unknown, or expired after its ttl_s)", id);
}

/* ------------------------------------------------------------ POST /v1/jobs ---------- */

static void on_got(redisReply *rep, void *arg);

/* A refused submit: 429 for the tenant's own limits, 503 when the model's queue is full;
 * Retry-After in whole seconds (at least 1). */
static void reply_limit(gw_req *r, const fleet_submitted *out) {
    char ra[24];
    snprintf(ra, sizeof ra, "%lld",
             out->retry_after_ms > 0 ? (out->retry_after_ms + 999) / 1000 : 1);
    gw_add_header(r, "Retry-After", ra);
    if (strcmp(out->limit, "queue") == 0)
        gw_reply_problem(r, GW_PROBLEM_QUEUE_FULL,
                         "the model's queue is full (FLEET_MAX_QUEUE); retry later");
    else if (strcmp(out->limit, "rate") == 0)
        gw_reply_problem(r, GW_PROBLEM_RATE_LIMITED,
                         "your tenant may submit %.6g jobs per second; retry after %s s",
                         r->who.rate, ra);
    else
        gw_reply_problem(r, GW_PROBLEM_TOO_MANY_ACTIVE_JOBS,
                         "your tenant may have %ld jobs queued or running at once; wait for "
                         "some to finish",
                         r->who.max_active);
}

static void on_submitted(redisReply *rep, void *arg) {
    job_call *c = arg;
    gw_req *r = c->r;
    fleet_submitted out;
    fleet_submit_outcome o = rep ? fleet_state_submit_reply(rep, &out) : FLEET_SUBMIT_ERROR;
    long long pos = out.queue_position, created = out.created_ms;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (o == FLEET_SUBMIT_ERROR && gw_redis_nothing_written(rep) &&
               gw_place_elsewhere(r->g, &c->ids.place, &c->cmd) == 0) {
        /* That shard's master cannot take a write now (and took none): another may. */
        snprintf(c->id, sizeof c->id, "%s", c->ids.id);
        send_or_reply(c, on_submitted);
        return;
    } else if (o == FLEET_SUBMIT_LIMIT) {
        /* That shard is at its share of the limit: the next one may not be (shards.h). */
        if (gw_place_next(r->g, &c->ids.place, &out, &c->cmd) == 0) {
            snprintf(c->id, sizeof c->id, "%s", c->ids.id); /* it names the shard now */
            send_or_reply(c, on_submitted);
            return;
        }
        reply_limit(r, &c->ids.place.best);
    } else if (o == FLEET_SUBMIT_CONFLICT) {
        gw_reply_problem(r, GW_PROBLEM_IDEMPOTENCY_KEY_REUSED,
                         "this Idempotency-Key was already used with a different request; use "
                         "a new key for a new job");
    } else if (o == FLEET_SUBMIT_REPLAY) {
        /* The same request again: the same job, as it is now. */
        snprintf(c->id, sizeof c->id, "%s", out.replay_id);
        char loc[64];
        snprintf(loc, sizeof loc, "/v1/jobs/%s", c->id);
        gw_add_header(r, "Location", loc);
        gw_add_header(r, "Idempotent-Replayed", "true");
        const fleet_keys *jk;
        if (c->wait_s > 0) {
            gw_wait_start(r, c->id, c->wait_s, 202);
        } else if ((jk = gw_job_keys(r, c->id))) {
            c->cancel = FLEET_CANCEL_ERROR;
            c->replay = true;
            fleet_state_get(jk, c->id, gw_auth_job_scope(r), &c->cmd);
            send_or_reply(c, on_got);
            return;
        }
    } else if (o != FLEET_SUBMIT_QUEUED) {
        reply_internal(r, "submit", rep);
    } else {
        gw_place_note(r->g, &c->ids.place, pos);
        fleet_job_view v;
        fleet_job_view_init(&v);
        v.id = c->id;
        v.status = "queued";
        v.model = c->jr.model;
        v.tenant = r->who.tenant;
        v.priority = fleet_priority_to_string(c->jr.priority);
        v.request_id = r->request_id;
        v.metadata = c->jr.metadata_json;
        v.created_ms = created;
        v.attempts = 0;
        v.max_attempts = c->jr.max_attempts > 0 ? c->jr.max_attempts : r->g->cfg.max_attempts;
        v.timeout_s = c->jr.timeout_s;
        v.ttl_s = c->jr.ttl_s;
        v.webhook = c->jr.webhook;
        v.webhook_events = c->jr.webhook_events;
        v.queue_position = pos;
        char loc[64];
        snprintf(loc, sizeof loc, "/v1/jobs/%s", c->id);
        gw_add_header(r, "Location", loc);
        /* Debug, not info: a line per accepted job (a write to stderr each) cost about a
         * tenth of the gateway's CPU per submit, and the job's own record says as much. */
        fleet_log(FLEET_LOG_DEBUG, "job submitted", "job_id", c->id, "model", c->jr.model,
                  "request_id", r->request_id, NULL);
        if (c->wait_s > 0) {
            gw_models_note(r, c->jr.model, NULL);
            gw_wait_start(r, c->id, c->wait_s, 202);
        } else {
            json_t *body = gw_auth_job_json(r, &v);
            gw_models_note(r, c->jr.model, body);
            gw_reply_json(r, 202, body);
        }
    }
    call_free(c);
}

/* Idempotency-Key: 1..255 printable characters. Keeps its hash and a digest of the request
 * (content type and body) in c; answers 400 and returns -1 when malformed. */
static int idempotency_or_reply(gw_req *r, job_call *c, const char *body, size_t len) {
    const char *key = gw_header(r, "Idempotency-Key");
    if (!key) return 0;
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= 255;
    for (size_t i = 0; ok && i < n; i++) ok = key[i] >= ' ' && key[i] <= '~';
    if (!ok) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_IDEMPOTENCY_KEY,
                         "Idempotency-Key must be 1 to 255 printable ASCII characters");
        return -1;
    }
    gw_sha256_hex(key, n, c->idem_hash);
    const char *ct = gw_header(r, "Content-Type");
    size_t cl = ct ? strlen(ct) : 0;
    char *buf = malloc(cl + 1 + len);
    if (!buf) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return -1;
    }
    if (cl) memcpy(buf, ct, cl);
    buf[cl] = '\n';
    if (len) memcpy(buf + cl + 1, body, len);
    gw_sha256_hex(buf, cl + 1 + len, c->idem_digest);
    free(buf);
    return 0;
}

/* Reads the wait preference; answers 400 and returns -1 when it is malformed. */
static int wait_or_reply(gw_req *r, long *secs) {
    char err[128];
    bool from_header = false;
    const char *q = r->req->uri && r->req->uri->query_raw ? (const char *)r->req->uri->query_raw
                                                          : NULL;
    if (gw_wait_seconds(gw_header(r, "Prefer"), q, r->g->cfg.max_wait_s, secs, &from_header, err,
                        sizeof err) < 0) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_WAIT, "%s", err);
        return -1;
    }
    return 0;
}

/* The submit-time checks of a webhook URL: a secret to sign with, http(s), and no literal
 * address the SSRF guard refuses (host names are checked when delivering). Returns 0, or
 * -1 with a 422 problem. */
static int webhook_problem(gw_req *r, const char *url, gw_problem *p) {
    gw_url u;
    if (!gw_webhooks_enabled(r->g->webhooks) && !r->who.webhook_secret[0]) {
        *p = (gw_problem){.status = 422,
                          .slug = "webhooks-disabled",
                          .title = "Webhooks not configured"};
        snprintf(p->detail, sizeof p->detail,
                 "this gateway has no webhook secret (FLEET_WEBHOOK_SECRET) and neither has "
                 "your tenant, so deliveries cannot be signed; submit without 'webhook'");
        return -1;
    }
    *p = (gw_problem){.status = 422, .slug = "webhook-refused", .title = "Webhook URL refused"};
    if (gw_url_parse(url, &u, p->detail, sizeof p->detail) < 0 ||
        gw_url_check_literal(&u, gw_webhooks_allowlist(r->g->webhooks), p->detail,
                             sizeof p->detail) < 0)
        return -1;
    return 0;
}

long gw_max_attempts_bound(const gw *g) {
    return g->cfg.max_attempts_max > g->cfg.max_attempts ? g->cfg.max_attempts_max
                                                         : g->cfg.max_attempts;
}

long gw_queue_ttl_bound(const gw *g) {
    return g->cfg.queue_ttl_max_s > g->cfg.queue_ttl_s ? g->cfg.queue_ttl_max_s
                                                       : g->cfg.queue_ttl_s;
}

long gw_index_ttl(const gw *g) { return gw_queue_ttl_bound(g) + GW_TTL_MAX; }

int gw_submit_prepare(gw_req *r, const gw_job_request *jr, gw_submit_ids *ids,
                      const char *idem_hash, const char *idem_digest, fleet_cmd *cmd,
                      gw_problem *p) {
    gw *g = r->g;
    /* Not "unknown model" (a client would give up): what a submit needs from Redis is not
     * read yet, the models registered there or the shard table (shards.h). */
    const char *unread = !gw_models_allowlist(g->models) && !gw_models_loaded(g->models)
                             ? "the models registered in Redis"
                         : !gw_shards_loaded(g->shard_table) ? "the shard table from Redis"
                                                             : NULL;
    if (unread) {
        gw_add_header(r, "Retry-After", "1");
        *p = (gw_problem){.status = 503,
                          .slug = "redis-unavailable",
                          .title = "Service unavailable"};
        snprintf(p->detail, sizeof p->detail,
                 "this gateway has not read %s yet (is Redis reachable?); try again shortly",
                 unread);
        return -1;
    }
    if (gw_models_check(g->models, jr->model, p) < 0) return -1;
    if (jr->webhook && webhook_problem(r, jr->webhook, p) < 0) return -1;
    long max_attempts = jr->max_attempts > 0 ? jr->max_attempts : g->cfg.max_attempts;
    long queue_ttl_s = jr->queue_ttl_s > 0 ? jr->queue_ttl_s : g->cfg.queue_ttl_s;
    if (max_attempts > gw_max_attempts_bound(g)) {
        *p = (gw_problem){.status = 422, .slug = "invalid-job", .title = "Not a valid job"};
        snprintf(p->detail, sizeof p->detail,
                 "field 'max_attempts' must be between 1 and %ld on this gateway "
                 "(FLEET_MAX_ATTEMPTS_MAX), got %ld",
                 gw_max_attempts_bound(g), max_attempts);
        return -1;
    }
    if (queue_ttl_s > gw_queue_ttl_bound(g)) {
        *p = (gw_problem){.status = 422, .slug = "invalid-job", .title = "Not a valid job"};
        snprintf(p->detail, sizeof p->detail,
                 "field 'queue_ttl_s' must be between %ld and %ld on this gateway "
                 "(FLEET_QUEUE_TTL_MAX), got %ld",
                 GW_TTL_MIN, gw_queue_ttl_bound(g), queue_ttl_s);
        return -1;
    }
    /* The request's own id names its (first) job: the job then reads its request_id
     * without storing it (fleet_job_view_from_fields), 40 bytes less per job. */
    const char *request_id = r->request_id;
    if (r->request_id_free) {
        snprintf(ids->id, sizeof ids->id, "%s", r->request_id + sizeof FLEET_REQUEST_ID_PREFIX - 1);
        r->request_id_free = false;
        request_id = "";
    } else if (fleet_id_new(ids->id) < 0) {
        *p = (gw_problem){.status = 500, .slug = "internal", .title = "Internal error"};
        snprintf(p->detail, sizeof p->detail, "no randomness for a job id");
        return -1;
    }
    fleet_submit s = {
        .id = ids->id,
        .model = jr->model,
        .tenant = r->who.tenant,
        .request_id = request_id,
        .priority = fleet_priority_to_string(jr->priority),
        .metadata_json = jr->metadata_json ? jr->metadata_json : "",
        .input = jr->input,
        .input_len = jr->input_len,
        .queue_ttl_s = queue_ttl_s,
        .result_ttl_s = jr->ttl_s,
        .timeout_s = jr->timeout_s,
        .max_attempts = max_attempts,
        .index_cap = g->cfg.index_cap,
        .index_ttl_s = gw_index_ttl(g),
        .webhook = jr->webhook,
        .webhook_events = jr->webhook_events,
        .max_active = r->who.max_active,
        .rate = r->who.rate,
        .burst = r->who.burst,
        .max_queue = g->cfg.max_queue,
        .idem_hash = idem_hash,
        .idem_digest = idem_digest,
        .ready_target = g->cfg.ready_target,
        .tombstone_s = g->cfg.tombstone_s,
        .max_finished = r->who.max_finished,
        .max_bytes = r->who.max_bytes,
    };
    fleet_submitted refusal;
    if (gw_place_first(g, &ids->place, &s, ids->id, request_id[0] ? NULL : r->request_id, cmd,
                       &refusal) < 0) {
        /* No shard holds a share of one of the limits (a limit below the number of shards,
         * and an Idempotency-Key whose shard has none): refused as that limit would be. */
        gw_problem_id id = strcmp(refusal.limit, "queue") == 0  ? GW_PROBLEM_QUEUE_FULL
                           : strcmp(refusal.limit, "rate") == 0 ? GW_PROBLEM_RATE_LIMITED
                                                                : GW_PROBLEM_TOO_MANY_ACTIVE_JOBS;
        const gw_problem_type *t = gw_problem_type_of(id);
        gw_add_header(r, "Retry-After", "1");
        *p = (gw_problem){.status = t->status, .slug = t->slug, .title = t->title};
        snprintf(p->detail, sizeof p->detail,
                 "your tenant's %s limit is smaller than the number of shards, and the shard "
                 "this submit may go to has no share of it; retry later",
                 refusal.limit);
        return -1;
    }
    return 0;
}

/* The search for an Idempotency-Key's record (shards.h, gw_place_at): one HGET of the
 * record's job on every shard, sent together; then the submit goes to the shard that holds
 * it, or, found nowhere, to the key's shard first and on to others as needed. A read that
 * failed leaves the submit on the key's shard only, as with one shard. */
static void look_done(job_call *c) {
    if (c->look_found >= 0) gw_place_at(c->r->g, &c->ids.place, c->look_found, &c->cmd);
    else if (!c->look_failed) gw_place_unpin(&c->ids.place);
    snprintf(c->id, sizeof c->id, "%s", c->ids.id);
    send_or_reply(c, on_submitted);
}

static void on_look(redisReply *rep, void *arg) {
    struct idem_look *l = arg;
    job_call *c = l->c;
    if (!rep || rep->type == REDIS_REPLY_ERROR) c->look_failed = true;
    else if (rep->type == REDIS_REPLY_STRING && (c->look_found < 0 || l->k < c->look_found))
        c->look_found = l->k;
    if (--c->look_pending == 0) look_done(c);
}

static void look_for_record(job_call *c) {
    gw_req *r = c->r;
    const fleet_shards *sh = &r->g->shards;
    c->look_found = -1;
    c->look_failed = false;
    c->look_pending = 1; /* this function: no answer before every read is sent */
    for (size_t i = 0; i < sh->n; i++) {
        int k = sh->all[i];
        fleet_key key = fleet_key_idempotency(&sh->shard[k].keys, r->who.tenant, c->idem_hash);
        const char *argv[3] = {"HGET", key.s, "job"};
        size_t lens[3] = {4, strlen(key.s), 3};
        c->look[i] = (struct idem_look){c, k};
        c->look_pending++;
        if (gw_redis_command(r->g->redis, 3, argv, lens, on_look, &c->look[i]) < 0) {
            c->look_pending--;
            c->look_failed = true;
        }
    }
    if (!r->paused) gw_pause(r);
    if (--c->look_pending == 0) look_done(c);
}

void gw_jobs_submit(gw_req *r) {
    gw *g = r->g;
    job_call *c = call_new(r);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    if (wait_or_reply(r, &c->wait_s) < 0) {
        call_free(c);
        return;
    }
    size_t len = 0;
    char *body = gw_body(r, &len);
    if (!body) {
        call_free(c);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    gw_problem p;
    int rc = gw_submit_parse(body, len, gw_header(r, "Content-Type"), g->cfg.result_ttl_s, &c->jr,
                             &p);
    if (rc == 0 && idempotency_or_reply(r, c, body, len) < 0) {
        free(body);
        call_free(c);
        return;
    }
    free(body);
    if (rc < 0) {
        call_free(c);
        gw_reply_problem(r, gw_problem_of_slug(p.slug), "%s", p.detail);
        return;
    }
    if (gw_submit_prepare(r, &c->jr, &c->ids, c->idem_hash[0] ? c->idem_hash : NULL,
                          c->idem_hash[0] ? c->idem_digest : NULL, &c->cmd, &p) < 0) {
        call_free(c);
        gw_reply_problem(r, gw_problem_of_slug(p.slug), "%s", p.detail);
        return;
    }
    if (c->idem_hash[0] && g->shards.n > 1) {
        look_for_record(c);
        return;
    }
    snprintf(c->id, sizeof c->id, "%s", c->ids.id);
    send_or_reply(c, on_submitted);
}

/* ------------------------------------------------------------ GET /v1/jobs/{id} ------ */

static void on_got(redisReply *rep, void *arg) {
    job_call *c = arg;
    gw_req *r = c->r;
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (found == -2) gw_reply_redis_error(r, "get", NULL);
    else if (found < 0) reply_internal(r, "get", rep);
    else if (found == 0) gw_reply_job_missing(r, c->id, rep);
    else
        gw_reply_json(r, c->cancel == FLEET_CANCEL_REQUESTED || c->replay ? 202 : 200,
                      gw_auth_job_json(r, &v));
    call_free(c);
}

/* Starts a job read (the router has checked the id's form); `then` gets the reply. */
static job_call *start_job_call(gw_req *r, const char *id) {
    job_call *c = call_new(r);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return NULL;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    return c;
}

void gw_jobs_get(gw_req *r, const char *id) {
    long wait_s = 0;
    if (wait_or_reply(r, &wait_s) < 0) return;
    if (wait_s > 0) {
        gw_wait_start(r, id, wait_s, 200);
        return;
    }
    const fleet_keys *jk = gw_job_keys(r, id);
    if (!jk) return;
    job_call *c = start_job_call(r, id);
    if (!c) return;
    c->cancel = FLEET_CANCEL_ERROR;
    fleet_state_get(jk, c->id, gw_auth_job_scope(r), &c->cmd);
    send_or_reply(c, on_got);
}

/* ------------------------------------------------------------ GET .../result --------- */

static void on_result_blob(redisReply *rep, void *arg) {
    job_call *c = arg;
    gw_req *r = c->r;
    if (!rep) {
        gw_reply_redis_error(r, "result", NULL);
    } else if (rep->type == REDIS_REPLY_NIL) {
        /* The model finished without output, or the result expired a moment ago. */
        gw_reply_bytes(r, 200, "application/json", "null\n", 5);
    } else if (rep->type != REDIS_REPLY_STRING) {
        reply_internal(r, "result", rep);
    } else if (c->want_msgpack) {
        /* The stored bytes, except that float32 arrays (FLEET_EXT_F32) go out as bin:
         * clients need not know fleet's ext type. Copied only when there is one. */
        char err[128], *mp = NULL;
        size_t mplen = 0;
        if (fleet_msgpack_for_client(rep->str, rep->len, &mp, &mplen, err, sizeof err) < 0) {
            fleet_log(FLEET_LOG_ERROR, "stored result unreadable", "job_id", c->id, "error", err,
                      NULL);
            gw_reply_problem(r, GW_PROBLEM_RESULT_UNREADABLE,
                             "the stored result cannot be sent as msgpack (%s)", err);
        } else {
            gw_reply_bytes(r, 200, "application/msgpack", mp ? mp : rep->str,
                           mp ? mplen : rep->len);
            free(mp);
        }
    } else if (gw_result_file(rep->str, rep->len, &c->file)) {
        /* A file the model made: it downloads as itself. */
        char disposition[GW_CONTENT_DISPOSITION_MAX];
        gw_content_disposition(c->file.filename[0] ? c->file.filename : NULL, disposition,
                               sizeof disposition);
        gw_add_header(r, "Content-Disposition", disposition);
        gw_reply_bytes(r, 200, c->file.content_type, c->file.bytes, c->file.len);
    } else {
        char err[128];
        json_t *j = fleet_msgpack_to_json(rep->str, rep->len, err, sizeof err);
        if (!j) {
            fleet_log(FLEET_LOG_ERROR, "stored result unreadable", "job_id", c->id, "error", err,
                      NULL);
            gw_reply_problem(r, GW_PROBLEM_RESULT_UNREADABLE,
                             "the stored result cannot be shown as JSON (%s); fetch it with "
                             "Accept: application/msgpack",
                             err);
        } else {
            char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            if (!text) {
                gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
            } else {
                size_t n = strlen(text);
                text[n] = '\n';
                gw_reply_bytes(r, 200, "application/json", text, n + 1);
                free(text);
            }
        }
    }
    call_free(c);
}

static void result_taken(void *arg) { call_free(arg); }

static void on_result_status(redisReply *rep, void *arg) {
    job_call *c = arg;
    gw_req *r = c->r;
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (found <= 0) {
        if (found < 0) reply_internal(r, "get", rep);
        else gw_reply_job_missing(r, c->id, rep);
        call_free(c);
        return;
    }
    fleet_status st = fleet_status_from_string(v.status);
    if (st == FLEET_STATUS_QUEUED || st == FLEET_STATUS_RUNNING) {
        gw_add_header(r, "Retry-After", "1");
        gw_reply_problem(r, GW_PROBLEM_RESULT_NOT_READY,
                         "job %s is %s; retry after a second, or poll GET /v1/jobs/%s", c->id,
                         v.status, c->id);
        call_free(c);
        return;
    }
    if (st != FLEET_STATUS_SUCCEEDED) {
        gw_reply_problem(r,
                         st == FLEET_STATUS_CANCELLED ? GW_PROBLEM_JOB_CANCELLED
                                                      : GW_PROBLEM_JOB_FAILED,
                         "job %s %s: %s", c->id, v.status, v.error ? v.error : "no error recorded");
        call_free(c);
        return;
    }
    /* A large result is sent as the client reads it (out_stream.h); a small one, and
     * one that cannot be streamed, comes back whole to on_result_blob. */
    /* The table read meanwhile may have dropped the job's shard (only by hand). */
    const fleet_keys *jk = fleet_shards_keys_of_id(&r->g->shards, c->id);
    if (!jk) {
        reply_not_found(r, c->id);
        call_free(c);
        return;
    }
    fleet_key k = fleet_key_result(jk, c->id);
    gw_result_stream(r, &(gw_stream_opts){.key = k.s,
                                          .job_id = c->id,
                                          .want_msgpack = c->want_msgpack,
                                          .allow_file = true,
                                          .suffix = c->want_msgpack ? NULL : "\n",
                                          .whole = on_result_blob,
                                          .taken = result_taken,
                                          .arg = c});
}

void gw_jobs_result(gw_req *r, const char *id) {
    const fleet_keys *jk = gw_job_keys(r, id);
    if (!jk) return;
    job_call *c = start_job_call(r, id);
    if (!c) return;
    const char *accept = gw_header(r, "Accept");
    c->want_msgpack = accept && strstr(accept, "application/msgpack") != NULL;
    fleet_state_get(jk, c->id, gw_auth_job_scope(r), &c->cmd);
    send_or_reply(c, on_result_status);
}

/* ------------------------------------------------------------ DELETE /v1/jobs/{id} --- */

static void on_cancelled(redisReply *rep, void *arg) {
    job_call *c = arg;
    gw_req *r = c->r;
    fleet_status final = FLEET_STATUS_UNKNOWN;
    fleet_cancel_outcome o = rep ? fleet_state_cancel_reply(rep, &final) : FLEET_CANCEL_ERROR;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (o == FLEET_CANCEL_MISSING) {
        reply_not_found(r, c->id);
    } else if (o == FLEET_CANCEL_FINAL) {
        gw_reply_problem(r, GW_PROBLEM_JOB_FINISHED,
                         "job %s already %s; only queued and running jobs can be cancelled", c->id,
                         fleet_status_to_string(final));
    } else if (o == FLEET_CANCEL_ERROR) {
        reply_internal(r, "cancel", rep);
    } else {
        /* Answer with the job as it is now: 200 cancelled, or 202 while it stops. */
        c->cancel = o;
        fleet_log(FLEET_LOG_INFO, o == FLEET_CANCEL_DONE ? "job cancelled" : "job cancel requested",
                  "job_id", c->id, "request_id", r->request_id, NULL);
        const fleet_keys *jk = fleet_shards_keys_of_id(&r->g->shards, c->id);
        if (jk) {
            fleet_state_get(jk, c->id, gw_auth_job_scope(r), &c->cmd);
            send_or_reply(c, on_got);
            return;
        }
        reply_not_found(r, c->id); /* its shard left the table meanwhile (only by hand) */
    }
    call_free(c);
}

void gw_jobs_cancel(gw_req *r, const char *id) {
    bool purge = false;
    if (!gw_jobs_purge_wanted(r, &purge)) return;
    if (purge) { /* a finished job deleted now: job_actions.c */
        gw_jobs_delete(r, id);
        return;
    }
    const fleet_keys *jk = gw_job_keys(r, id);
    if (!jk) return;
    job_call *c = start_job_call(r, id);
    if (!c) return;
    fleet_state_cancel(jk, c->id, gw_auth_job_scope(r), &c->cmd);
    send_or_reply(c, on_cancelled);
}
