/* state.h: the one module that changes job state.
 *
 * Each transition of job.h's lifecycle is one Lua script (shared/scripts/<name>.lua) run
 * atomically by Redis. This module builds the EVALSHA command for a transition and reads
 * its reply; it does no I/O, so the gateway (hiredis async) and the worker (hiredis sync)
 * send the same commands. No other C code decides a transition.
 *
 * Scripts are sent with EVALSHA. When Redis answers NOSCRIPT (a fresh or restarted server
 * without the script cache), the caller calls fleet_cmd_as_eval() and sends the command
 * again: EVAL runs the script and caches it for the following EVALSHAs.
 *
 * Timestamps are taken inside the scripts from Redis' own clock (TIME), so gateways and
 * workers on different machines agree on them.
 *
 * Ownership: a fleet_cmd's argv points into the cmd's own buffer and into the strings of
 * the request struct (ids, blobs); those must live until the command has been sent.
 * Reply readers return pointers into the redisReply; they live as long as the reply.
 */
#ifndef FLEET_STATE_H
#define FLEET_STATE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/job.h"
#include "fleet/keys.h"

/* One id per script of shared/scripts/scripts.def, in its order. */
typedef enum fleet_script_id {
#define FLEET_SCRIPT(name, NAME) FLEET_SCRIPT_##NAME,
#include "../../scripts/scripts.def"
#undef FLEET_SCRIPT
    FLEET_SCRIPT_COUNT,
} fleet_script_id;

typedef struct fleet_script {
    const char *name;
    const char *source;
    char sha[41]; /* hex SHA-1 of source, as Redis computes it */
} fleet_script;

/* The script table; SHA-1s are computed on first use (thread-safe). */
const fleet_script *fleet_script_get(fleet_script_id id);

/* Room for a batch claim of 57 entries or a batch finish of 35 jobs in one command (the
 * batch builders put as many as fit and say how many): a worker's default batch of 32 is
 * one call of each; the gateway keeps one command per request in flight, so the table
 * stays small. */
#define FLEET_CMD_ARGS 192
#define FLEET_CMD_BUF 4096

typedef struct fleet_cmd {
    fleet_script_id script;
    int argc;
    const char *argv[FLEET_CMD_ARGS];
    size_t argvlen[FLEET_CMD_ARGS];
    char buf[FLEET_CMD_BUF]; /* keys and numbers that argv points to */
    size_t used;
} fleet_cmd;

/* Turns an EVALSHA command into the equivalent EVAL (after a NOSCRIPT reply). */
void fleet_cmd_as_eval(fleet_cmd *c);
/* True when the reply is Redis' NOSCRIPT error. */
bool fleet_reply_is_noscript(const redisReply *r);

/* ------------------------------------------------------------------ submit ---------- */

typedef struct fleet_submit {
    const char *id;    /* fleet_id_new() */
    const char *model; /* validated name */
    const char *tenant;
    const char *request_id;
    const char *priority;      /* "high" | "normal" | "low" */
    const char *metadata_json; /* "" when none */
    const char *input;         /* msgpack */
    size_t input_len;
    long queue_ttl_s;  /* TTL of the job's keys while queued or running */
    long result_ttl_s; /* TTL of the job's keys once finished */
    long timeout_s;    /* 0: no execution limit */
    long max_attempts;
    long index_cap;             /* most ids kept in the tenant's job index */
    long index_ttl_s;           /* TTL of the index: as long as any job can live */
    const char *webhook;        /* URL or NULL */
    const char *webhook_events; /* "running,progress,completed" subset; NULL: "completed" */
    /* The tenant's limits (0: none) and the model's queue cap; checked atomically. */
    long max_active;
    double rate; /* submits per second */
    long burst;
    long max_queue; /* most queued jobs of the model */
    /* Idempotency-Key: its SHA-256 (hex) and a digest of the request; NULL: none. */
    const char *idem_hash, *idem_digest;
    long ready_target; /* fair share: entries kept ready on the stream (feed.lua) */
    /* Seconds the job's tombstone outlives its finished keys (FLEET_TOMBSTONE_S; 0: none,
     * its id answers 404 once they expired). Stored as field tomb_s unless it is
     * FLEET_JOB_DEFAULT_TOMB_S, so that the script that ends the job knows it. */
    long tombstone_s;
    /* The tenant's storage limits (0: none; tenant.h): the most finished jobs kept and the
     * most bytes their inputs and results hold. With either, the job is marked (field
     * keep) and goes onto the tenant's kept list when it ends; this submit first evicts
     * the tenant's oldest finished jobs while over a limit. */
    long long max_finished, max_bytes;
} fleet_submit;

void fleet_state_submit(const fleet_keys *k, const fleet_submit *s, fleet_cmd *c);
typedef enum fleet_submit_outcome {
    FLEET_SUBMIT_QUEUED = 0, /* created: queue_position, created_ms */
    FLEET_SUBMIT_REPLAY,     /* the Idempotency-Key was used before: replay_id names the job */
    FLEET_SUBMIT_LIMIT,      /* refused, nothing written: limit is "active", "rate" or
                                "queue"; retry_after_ms */
    FLEET_SUBMIT_CONFLICT,   /* the Idempotency-Key was used with another request */
    FLEET_SUBMIT_ERROR,      /* err says why */
} fleet_submit_outcome;

typedef struct fleet_submitted {
    long long queue_position, created_ms, retry_after_ms;
    const char *replay_id; /* points into the reply */
    const char *limit;     /* points into the reply */
    const char *err;
} fleet_submitted;

fleet_submit_outcome fleet_state_submit_reply(const redisReply *r, fleet_submitted *out);

/* Fair share: moves jobs from the tenants' wait lists onto the model's stream until
 * `target` entries wait there undelivered (feed.lua). Reply: the number moved. */
void fleet_state_feed(const fleet_keys *k, const char *model, long target, fleet_cmd *c);

/* Who an API key belongs to: key_hash is the SHA-256 (hex) of the key (auth.lua). */
void fleet_state_auth(const fleet_keys *k, const char *key_hash, fleet_cmd *c);
/* Returns 1 and the tenant, role and settings (HGETALL shape) for a known key; 0 for an
 * unknown key or a revoked tenant; -1 on an error reply. */
int fleet_state_auth_reply(const redisReply *r, const char **tenant, const char **role,
                           const redisReply **settings);

/* ------------------------------------------------------------------ claim ----------- */

/* A claim takes the job of one stream entry: a queued job starts; a running job whose
 * lease expired (its worker was lost; the entry came from XAUTOCLAIM) starts again as a
 * new attempt, or ends: cancelled if a cancel was requested, failed and dead-lettered
 * once max_attempts were used. */
typedef struct fleet_claim {
    const char *id;
    const char *model;
    const char *entry_id; /* the stream entry that carried the job */
    const char *worker;
    const char *token; /* the new lease token: random, unique per attempt */
    long lease_ms;
    long dlq_cap; /* most entries kept on the dead-letter stream (approximately) */
} fleet_claim;

typedef enum fleet_claim_outcome {
    FLEET_CLAIM_OK = 0,    /* the job is now running under this token */
    FLEET_CLAIM_GONE,      /* its keys expired while queued; entry acknowledged */
    FLEET_CLAIM_CANCELLED, /* cancelled (while queued, or its lost worker's); never runs */
    FLEET_CLAIM_DEAD,      /* its worker was lost max_attempts times: failed, dead-lettered */
    FLEET_CLAIM_SKIP,      /* running under a live lease (left to its holder), or the entry
                               was stale (acknowledged) */
    FLEET_CLAIM_ERROR,
} fleet_claim_outcome;

typedef struct fleet_claimed {
    const char *input; /* msgpack, points into the reply */
    size_t input_len;
    long attempts;        /* this attempt's number, 1 for the first */
    long timeout_s;       /* the job's own limit; 0 when it set none */
    bool reclaimed;       /* taken over from a lost worker */
    long long created_ms; /* when the job was submitted (Redis clock); 0 if unknown */
    long long started_ms; /* when this claim started it (Redis clock) */
    const char *why;      /* SKIP and DEAD: the reason, points into the reply */
} fleet_claimed;

/* Claims the entries cl[0..n) in one script call (claim.lua takes a batch): puts as many
 * of them into the command as it holds and returns how many (1..n); the caller sends the
 * rest in another. They share cl[0]'s model, worker, lease_ms and dlq_cap. An item whose
 * entry_id and id are "" is a read slot: the script reads the next new entry of the
 * stream itself (XREADGROUP without BLOCK) and claims it with that item's token. The
 * reply is an array: one claim reply per named entry, in order (fleet_state_batch_item()
 * gives each), then one read item per entry read (at most one per read slot; the k-th
 * entry read took the k-th read slot's token): fleet_state_claim_read_item(). */
size_t fleet_state_claim(const fleet_keys *k, const fleet_claim *cl, size_t n, fleet_cmd *c);
/* Reads one entry's claim reply (an item of the batch reply). */
fleet_claim_outcome fleet_state_claim_reply(const redisReply *r, fleet_claimed *out);
/* Reads a read item {entry id, job id, claim reply} of a claim's batch reply: sets
 * *entry_id and *job_id (pointing into r; the job id is "" for an entry without a valid
 * one, which the script dropped) and returns the claim reply, or NULL when r is not a
 * read item. */
const redisReply *fleet_state_claim_read_item(const redisReply *r, const char **entry_id,
                                              const char **job_id);
/* Item i of a batch script's reply (claim, finish), or NULL when the reply is not an array
 * of at least i + 1 items (an error reply: nothing of the batch was done, or a script
 * error). */
const redisReply *fleet_state_batch_item(const redisReply *r, size_t i);

/* ------------------------------------------------------------------ renew ----------- */

/* Extends a running job's lease by lease_ms from now and keeps its stream entry owned by
 * worker (so no other worker takes it over). Answers like progress: OK, CANCEL (renewed,
 * and a cancel was requested), STALE (this token no longer holds the job). */
typedef struct fleet_renew {
    const char *id;
    const char *model;
    const char *token;
    const char *worker;
    long lease_ms;
} fleet_renew;

void fleet_state_renew(const fleet_keys *k, const fleet_renew *rn, fleet_cmd *c);

/* ------------------------------------------------------------------ progress -------- */

typedef struct fleet_progress {
    const char *id;
    const char *token;
    double percent;      /* 0..100 */
    const char *message; /* may be "" */
    long done, total;    /* total 0: not counted */
} fleet_progress;

typedef enum fleet_progress_outcome {
    FLEET_PROGRESS_OK = 0,
    FLEET_PROGRESS_CANCEL, /* recorded, and a cancel was requested: stop the job */
    FLEET_PROGRESS_STALE,  /* this token no longer holds the job: stop, write nothing */
    FLEET_PROGRESS_ERROR,
} fleet_progress_outcome;

void fleet_state_progress(const fleet_keys *k, const fleet_progress *p, fleet_cmd *c);
/* Reads a progress or a renew reply. */
fleet_progress_outcome fleet_state_progress_reply(const redisReply *r);

/* ------------------------------------------------------------------ emit ------------ */

/* Partial outputs (emit.lua, docs/protocol.md "Partial outputs"): a running job's output
 * appended to its outputs list, in order, under its lease, within the per-job limits. */
typedef struct fleet_emit {
    const char *id;
    const char *token;
    const char *output; /* msgpack */
    size_t output_len;
    long max_outputs;      /* most outputs per job (FLEET_MAX_OUTPUTS) */
    long long max_bytes;   /* most bytes of outputs per job (FLEET_MAX_OUTPUT_BYTES) */
    long webhook_throttle_ms; /* at most one job.output webhook per job per this */
} fleet_emit;

typedef enum fleet_emit_outcome {
    FLEET_EMIT_OK = 0,
    FLEET_EMIT_CANCEL, /* stored, and a cancel was requested: stop the job */
    FLEET_EMIT_STALE,  /* this token no longer holds the job: nothing written, stop */
    FLEET_EMIT_LIMIT,  /* refused (a per-job limit), nothing written; the job goes on */
    FLEET_EMIT_ERROR,
} fleet_emit_outcome;

typedef struct fleet_emitted {
    long long index;   /* OK, CANCEL: the output's index (0 for the job's first) */
    const char *limit; /* LIMIT: "count" or "bytes" (points into the reply) */
    long long limit_value;
} fleet_emitted;

void fleet_state_emit(const fleet_keys *k, const fleet_emit *e, fleet_cmd *c);
fleet_emit_outcome fleet_state_emit_reply(const redisReply *r, fleet_emitted *out);

/* A page of a job's outputs (outputs.lua): those from index `after` on, at most limit. */
void fleet_state_outputs(const fleet_keys *k, const char *id, const char *tenant, long long after,
                         long limit, fleet_cmd *c);
typedef struct fleet_outputs_page {
    const char *status;     /* the job's, points into the reply */
    long long count;        /* outputs the job emitted in all */
    const redisReply *page; /* array of entries: fleet_output_entry() reads each */
} fleet_outputs_page;
/* Returns 1 and fills out, 0 when the job is missing or another tenant's (or only its
 * tombstone is left: fleet_state_get_gone reads that reply), -1 on error. */
int fleet_state_outputs_reply(const redisReply *r, fleet_outputs_page *out);
/* Splits a stored entry "<attempt> <msgpack>": returns 0 and sets *attempt and the
 * output (pointing into e), or -1 when e is not an entry. */
int fleet_output_entry(const redisReply *e, long *attempt, const char **output, size_t *len);

/* ------------------------------------------------------------------ finish ---------- */

typedef struct fleet_finish {
    const char *id;
    const char *model;
    const char *token;
    fleet_status status; /* SUCCEEDED, FAILED or CANCELLED */
    const char *result;  /* msgpack; NULL when none */
    size_t result_len;
    const char *error; /* NULL or "" on success */
} fleet_finish;

typedef enum fleet_finish_outcome {
    FLEET_FINISH_OK = 0,
    FLEET_FINISH_STALE, /* another attempt holds the job: nothing written */
    FLEET_FINISH_ERROR,
} fleet_finish_outcome;

/* Finishes the jobs f[0..n) (all of one model) in one script call (finish.lua takes a
 * batch): puts as many as the command holds and returns how many (1..n). The reply is an
 * array of one answer per job: fleet_state_finish_reply(fleet_state_batch_item(r, i)). */
size_t fleet_state_finish(const fleet_keys *k, const fleet_finish *f, size_t n, fleet_cmd *c);
/* Reads one job's answer; a whole reply of one job (an array of one) reads the same. */
fleet_finish_outcome fleet_state_finish_reply(const redisReply *r);

/* ------------------------------------------------------------------ requeue --------- */

/* running -> queued: the job runs again once delay_ms have passed (it waits in the
 * model's delayed set until fleet_state_promote puts it back on the stream). */
typedef enum fleet_requeue_kind {
    FLEET_REQUEUE_RETRY,    /* a retryable model error: uses an attempt; after max_attempts
                               the job fails and is dead-lettered instead */
    FLEET_REQUEUE_HANDBACK, /* the worker stops before the job ended: no attempt used */
} fleet_requeue_kind;

typedef struct fleet_requeue {
    const char *id;
    const char *model;
    const char *token;
    fleet_requeue_kind kind;
    long delay_ms;
    const char *error; /* RETRY: the model's message */
    long dlq_cap;
} fleet_requeue;

typedef enum fleet_requeue_outcome {
    FLEET_REQUEUE_QUEUED = 0, /* queued again */
    FLEET_REQUEUE_DEAD,       /* out of attempts: failed and dead-lettered */
    FLEET_REQUEUE_CANCELLED,  /* a cancel was requested: ended cancelled */
    FLEET_REQUEUE_STALE,      /* this token no longer holds the job: nothing written */
    FLEET_REQUEUE_ERROR,
} fleet_requeue_outcome;

void fleet_state_requeue(const fleet_keys *k, const fleet_requeue *rq, fleet_cmd *c);
fleet_requeue_outcome fleet_state_requeue_reply(const redisReply *r);

/* Puts up to max jobs of model whose retry time has come back on its stream. */
void fleet_state_promote(const fleet_keys *k, const char *model, long max, fleet_cmd *c);
/* Returns how many were moved, or -1 on an error reply. */
long fleet_state_promote_reply(const redisReply *r);

/* A pending stream entry was deleted behind fleet's back (XAUTOCLAIM reports it): gives
 * its job, if it has not ended, a new entry. */
void fleet_state_recover(const fleet_keys *k, const char *model, const char *entry_id,
                         fleet_cmd *c);
/* Returns 1 when a job was requeued, 0 when there was nothing to do, -1 on error; *job_id
 * names the job when known (points into the reply, else ""). */
int fleet_state_recover_reply(const redisReply *r, const char **job_id);

/* ------------------------------------------------------------------ retry ----------- */

/* failed | cancelled -> queued under the same id (retry.lua): POST /v1/jobs/{id}/retry and
 * fleetctl dlq retry. The attempts start over; progress, error, last_error, finished_ms
 * and the result go; the job is queued the way a submit queues it (fair share) with the
 * queue TTL again, and leaves the dead-letter stream if it was there. */
typedef struct fleet_retry {
    const char *id;
    const char *tenant; /* the job's: another tenant's job reads as missing */
    long ready_target;  /* fair share: entries kept ready on the stream (feed.lua) */
    long max_active;    /* the tenant's limit of queued + running jobs; 0: none */
    long max_queue;     /* most queued jobs of the model; 0: none */
    bool dead_only;     /* only a dead-lettered job (fleetctl dlq retry) */
    long index_ttl_s;   /* the tenant's index lives at least this long from now */
} fleet_retry;

void fleet_state_retry(const fleet_keys *k, const fleet_retry *rt, fleet_cmd *c);

typedef enum fleet_retry_outcome {
    FLEET_RETRY_QUEUED = 0, /* queued again: queue_position */
    FLEET_RETRY_MISSING,    /* no such job of this tenant (or its keys expired) */
    FLEET_RETRY_REFUSED,    /* queued, running or succeeded: status says which */
    FLEET_RETRY_NOT_DEAD,   /* dead_only, and the job was not dead-lettered: status */
    FLEET_RETRY_LIMIT,      /* refused, nothing written: limit "active" or "queue",
                               retry_after_ms */
    FLEET_RETRY_ERROR,
} fleet_retry_outcome;

typedef struct fleet_retried {
    long long queue_position, retry_after_ms;
    fleet_status status; /* REFUSED, NOT_DEAD: the job's status */
    const char *limit;   /* LIMIT: points into the reply */
} fleet_retried;

fleet_retry_outcome fleet_state_retry_reply(const redisReply *r, fleet_retried *out);

/* A finished job and its result deleted now (delete.lua): DELETE /v1/jobs/{id}?purge=true. */
void fleet_state_delete(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c);

typedef enum fleet_delete_outcome {
    FLEET_DELETE_DONE = 0, /* deleted: *status names the state it had ended in */
    FLEET_DELETE_MISSING,  /* no such job of this tenant */
    FLEET_DELETE_REFUSED,  /* queued or running (*status): cancel it first */
    FLEET_DELETE_ERROR,
} fleet_delete_outcome;

fleet_delete_outcome fleet_state_delete_reply(const redisReply *r, fleet_status *status);

/* ------------------------------------------------------------------ a model's queue --- */

/* An operator empties a model's queue (purge.lua): every queued job of the model ends
 * cancelled. At most budget ids per call: call again with *cursor while *more. */
void fleet_state_purge(const fleet_keys *k, const char *model, const char *cursor, long budget,
                       fleet_cmd *c);
/* Returns 0 with the jobs cancelled by this call, the stream cursor to pass next (points
 * into r) and whether to call again; -1 on an error reply. */
int fleet_state_purge_reply(const redisReply *r, long long *cancelled, const char **cursor,
                            bool *more);

/* Pauses (pause true) or resumes a model on the shard of k (pause.lua): while paused its
 * jobs queue there and no worker claims one. The caller checks that the model is
 * registered, and runs it on every shard. */
void fleet_state_pause(const fleet_keys *k, const char *model, bool pause, fleet_cmd *c);
/* Returns 1 with *paused_ms (0 once resumed) and *requeued (entries a resume gave a fresh
 * stream entry), -1 on an error reply. */
int fleet_state_pause_reply(const redisReply *r, long long *paused_ms, long long *requeued);

/* ------------------------------------------------------------------ events ---------- */

/* A message on the events channel ({prefix}:events) names one job per line:
 * "<job id> <what>" (a status, "progress", "cancelling", "webhook"), lines separated by
 * "\n". A batch's claim or finish publishes one message for all its jobs; the other
 * scripts, and workers of protocol version 1, publish one line without a newline. */
typedef struct fleet_event {
    const char *id, *what;   /* point into the message; not NUL-terminated */
    size_t id_len, what_len; /* what_len 0 and what "" for a line without a space */
} fleet_event;

/* Reads the line at *p of a message ending at end into ev and moves *p past it. Returns
 * false when no line is left. Checks nothing: a valid line has id_len == FLEET_ID_LEN. */
bool fleet_event_next(const char **p, const char *end, fleet_event *ev);

/* ------------------------------------------------------------------ webhooks -------- */

/* A gateway's delivery attempt of one webhook message, and what follows from it. */
typedef enum fleet_webhook_outcome {
    FLEET_WEBHOOK_DELIVERED = 0, /* 2xx */
    FLEET_WEBHOOK_RETRY,         /* send again at due_ms */
    FLEET_WEBHOOK_FAILED,        /* stop: recorded on the webhook dead-letter stream */
} fleet_webhook_outcome;

typedef struct fleet_webhook_settle {
    const char *msg; /* the message id (webhook-id) */
    const char *job_id;
    const char *entry_id; /* the task stream entry, acknowledged and deleted */
    fleet_webhook_outcome outcome;
    long long due_ms;  /* RETRY: when (Redis clock, ms) */
    long http_status;  /* 0 when no HTTP answer */
    const char *error; /* "" or why */
    const char *body;  /* the body sent, kept for retries ("" once stored) */
    size_t body_len;
    long dlq_cap;
    const char *consumer; /* the settling gateway: it must still own the task entry */
} fleet_webhook_settle;

void fleet_state_webhook_settle(const fleet_keys *k, const fleet_webhook_settle *ws, fleet_cmd *c);
/* Puts up to max deliveries whose retry time has come back on the task stream; the reply
 * is the number moved. */
void fleet_state_webhook_promote(const fleet_keys *k, long max, fleet_cmd *c);

/* ------------------------------------------------------------------ cancel ---------- */

typedef enum fleet_cancel_outcome {
    FLEET_CANCEL_DONE = 0,  /* was queued: now cancelled, it never runs (HTTP 200) */
    FLEET_CANCEL_REQUESTED, /* running: the worker stops at the next step (HTTP 202) */
    FLEET_CANCEL_FINAL,     /* already finished (HTTP 409) */
    FLEET_CANCEL_MISSING,   /* no such job (HTTP 404) */
    FLEET_CANCEL_ERROR,
} fleet_cancel_outcome;

void fleet_state_cancel(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c);
/* For FINAL, *final_status names the state it ended in. */
fleet_cancel_outcome fleet_state_cancel_reply(const redisReply *r, fleet_status *final_status);

/* ------------------------------------------------------------------ reads ----------- */

/* A job as stored: pointers into the reply, numbers parsed. -1 for absent numbers, but
 * a field with a protocol default reads as it (fleet_job_view_from_fields). */
typedef struct fleet_job_view {
    const char *id, *status, *model, *tenant, *priority, *request_id, *worker, *error;
    const char *last_error; /* why the previous attempt did not finish, or NULL */
    const char *webhook, *webhook_events, *webhook_state, *webhook_last_error;
    long long webhook_attempts, webhook_last_status;
    const char *metadata;         /* JSON text or NULL */
    const char *progress_message; /* NULL when no progress yet */
    long long created_ms, started_ms, finished_ms, updated_ms;
    long long retry_at_ms; /* queued for a retry: when it may start; else -1 */
    long long attempts, max_attempts, timeout_s, ttl_s;
    long long progress_done, progress_total;
    long long outputs;       /* partial outputs emitted (field out_n; 0 when none) */
    double progress_percent; /* < 0 when no progress yet */
    bool cancel_requested;
    bool dead_lettered;
    long long queue_position; /* > 0 only while queued */
    /* request_id when the hash holds none: FLEET_REQUEST_ID_PREFIX and the id */
    char made_request_id[sizeof FLEET_REQUEST_ID_PREFIX + FLEET_ID_LEN];
} fleet_job_view;

/* An empty view: no strings, every number absent (-1). */
void fleet_job_view_init(fleet_job_view *v);
/* Fills v from a flat field/value array (HGETALL's shape, led by the id as get.lua and
 * list.lua answer it). A field the hash leaves out for its default reads as that default
 * (fleet/job.h, FLEET_JOB_DEFAULT_*; attempts 0, updated_ms created_ms). Returns 0, or -1
 * when the array is not a job (missing id or status). */
int fleet_job_view_from_fields(const redisReply *fields, fleet_job_view *v);

void fleet_state_get(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c);
/* Returns 1 and fills v, 0 when the job does not exist (or is another tenant's, or only
 * its tombstone is left: fleet_state_get_gone), -1 on error. */
int fleet_state_get_reply(const redisReply *r, fleet_job_view *v);
/* What a job's tombstone says (lib.lua's end_job, get.lua): when its keys expired and the
 * status it had ended in. */
typedef struct fleet_job_gone {
    long long expired_at_ms; /* Redis milliseconds */
    const char *status;      /* points into the reply */
} fleet_job_gone;
/* True when a get reply is the tombstone of the tenant's job whose keys expired (g, when
 * not NULL, says when and how it had ended); such a reply reads as missing (0) to
 * fleet_state_get_reply. */
bool fleet_state_get_gone(const redisReply *r, fleet_job_gone *g);

typedef struct fleet_list_query {
    const char *tenant; /* whose jobs; FLEET_TENANT_ANY: every tenant's (an admin's list) */
    const char *own;    /* the caller's tenant, listed with FLEET_TENANT_ANY (NULL: tenant) */
    /* "" for the newest; else the previous page's next_cursor: an index entry id, and with
     * FLEET_TENANT_ANY "<id>.<tenant>" (list.lua) */
    const char *cursor;
    const char *status; /* "" for any */
    const char *model;  /* "" for any */
    long limit;         /* 1..100 */
    long scan_max;      /* most index entries looked at per page */
    /* Only jobs submitted from since_ms to until_ms, both included (ms since the epoch, by
     * Redis' clock: the index entry ids); 0 (or less) for no bound. */
    long long since_ms, until_ms;
    /* A list merged across shards (gateway/job_list.c): each job's fields end with its
     * index_entry (list.lua), and every tenant's list takes the tenants from `tenants`
     * (names separated by spaces, read from the control tenants set) rather than from that
     * set, so that a shard's call touches only the shard's slot. false/NULL: as one shard. */
    bool entries;
    const char *tenants;
} fleet_list_query;

void fleet_state_list(const fleet_keys *k, const fleet_list_query *q, fleet_cmd *c);
/* Reads the list reply: *jobs is an array of HGETALL-shaped arrays (use
 * fleet_job_view_from_fields), *next_cursor is "" when there is nothing more. */
int fleet_state_list_reply(const redisReply *r, const redisReply **jobs, const char **next_cursor);

/* The registered models, live workers and the per-model counters, for GET /v1/models and
 * the gateway's list of the models it accepts (gateway/models.c). */
void fleet_state_models(const fleet_keys *k, bool with_stats, fleet_cmd *c);
/* *workers: array of [name, model, backend, max_batch, busy] arrays of live workers
 * (their heartbeat hash has not expired), every element a string; *stats: HGETALL of the
 * stats hash (empty without with_stats: the gateway's copy of the models needs none);
 * *models: HGETALL of the models hash (model, record JSON, ...). Returns 0, or -1 for any
 * other shape. */
int fleet_state_models_reply(const redisReply *r, const redisReply **workers,
                             const redisReply **stats, const redisReply **models);

/* What GET /metrics reports about the whole fleet (metrics.lua, docs/metrics.md): live
 * workers, the counters, and per model (registered or counted) the oldest waiting job and
 * the histograms its workers report. scan: most ids read per place a job waits (stream,
 * due retries); tenants_max: most tenants' wait lists looked at per model. */
void fleet_state_metrics(const fleet_keys *k, long scan, long tenants_max, fleet_cmd *c);
/* The same for one shard of several (shards.h): shard_only for a shard other than the
 * control one reads only that shard's counters and queues (no workers, no histograms), so
 * that the call touches its slot alone; the caller sums the shards. */
void fleet_state_metrics_of(const fleet_keys *k, bool shard_only, long scan, long tenants_max,
                            fleet_cmd *c);

typedef struct fleet_metrics_reply {
    long long now_ms;          /* Redis' clock */
    const redisReply *workers; /* [model, busy "0"|"1"] arrays of live workers */
    const redisReply *stats;   /* HGETALL of the stats hash */
    const redisReply *models;  /* [model, oldest created_ms or "", histograms] arrays */
} fleet_metrics_reply;

/* Returns 0 and fills out (pointers into r), or -1 when r is not a metrics reply. */
int fleet_state_metrics_reply(const redisReply *r, fleet_metrics_reply *out);

#endif
