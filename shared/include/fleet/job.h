/* job.h: the job lifecycle and the names of its states.
 *
 *              submit            claim                  finish
 *   (none) ───────────▶ queued ─────────▶ running ─────────────────▶ succeeded | failed
 *                        ▲ ▲  │            │ ▲  │                     | cancelled
 *                        │ │  │            │ └──┘ takeover: its lease expired (a lost
 *                        │ │  │            │      worker); claim starts a new attempt
 *                        │ │  │            │      under a new token
 *                        │ └──┼────────────┘
 *                        │    │  requeue: retry (an attempt used) or handback (the worker
 *                        │    │  stops; not counted); it waits in the delayed set until
 *                        │    │  promote puts it back on the stream
 *                        │    │
 *                        │    │ cancel         requeue (retry) or takeover with max_attempts
 *                        │    ▼                used ────▶ failed + a dead-letter stream entry
 *                        │  cancelled                                 │
 *                        └────────────────────────────────────────────┘
 *                  retry (POST .../retry, fleetctl dlq retry): failed or cancelled ->
 *                  queued again, attempts reset
 *
 *   running ── cancel ──▶ cancel requested: the worker is told, stops at the model's next
 *                         step and finishes the job cancelled; requeue and takeover end
 *                         it cancelled too (a lost worker's job).
 *
 * Each transition is made by one Lua script in shared/scripts/, called only through
 * state.h: submit.lua, claim.lua (claim and takeover), finish.lua, requeue.lua (retry,
 * handback, dead-letter), promote.lua (delayed set -> stream), cancel.lua, retry.lua;
 * recover.lua gives a job whose stream entry was deleted by hand a new one, in the same
 * state. A queued job whose queue TTL ends, and a finished one (succeeded, failed,
 * cancelled) whose result TTL ends, loses its keys: its id answers 404; delete.lua takes
 * a finished job's keys at once (DELETE /v1/jobs/{id}?purge=true).
 */
#ifndef FLEET_JOB_H
#define FLEET_JOB_H

#include <stdbool.h>
#include <stddef.h>

typedef enum fleet_status {
    FLEET_STATUS_UNKNOWN = 0,
    FLEET_STATUS_QUEUED,
    FLEET_STATUS_RUNNING,
    FLEET_STATUS_SUCCEEDED,
    FLEET_STATUS_FAILED,
    FLEET_STATUS_CANCELLED,
} fleet_status;

/* The wire name ("queued", ...) of a status; "unknown" for anything else. */
const char *fleet_status_to_string(fleet_status s);
/* Parses a wire name; FLEET_STATUS_UNKNOWN when it is not one. */
fleet_status fleet_status_from_string(const char *s);
bool fleet_status_is_final(fleet_status s);

typedef enum fleet_priority {
    FLEET_PRIORITY_HIGH = 0,
    FLEET_PRIORITY_NORMAL,
    FLEET_PRIORITY_LOW,
    FLEET_PRIORITY_INVALID,
} fleet_priority;

const char *fleet_priority_to_string(fleet_priority p);
fleet_priority fleet_priority_from_string(const char *s);

/* Limits shared by the gateway (which validates) and the scripts (which trust them). */
#define FLEET_ID_LEN 26    /* a ULID: 26 Crockford base32 characters */
#define FLEET_MODEL_MAX 64 /* model names: [a-z0-9_-], 1..64 characters */
#define FLEET_TENANT_MAX 64
#define FLEET_REQUEST_ID_MAX 128 /* X-Request-ID: printable ASCII, 1..128 characters */
/* A request id the gateway makes is this prefix and a job id. A job submitted by a request
 * whose id was made so takes that id as its own and stores no request_id field: a job
 * hash without one reads as FLEET_REQUEST_ID_PREFIX and the job's id. */
#define FLEET_REQUEST_ID_PREFIX "req_"

/* The protocol's defaults of a job's fields. A job hash holds priority, max_attempts,
 * ttl_s, queue_ttl_s, timeout_s and tomb_s only when they differ from these (submit.lua), and a
 * reader takes a missing one for its default (fleet_job_view_from_fields). The scripts
 * spell the same values in shared/scripts/lib.lua (DEFAULT_*); the unit test
 * job_defaults_test compares the two. */
#define FLEET_JOB_DEFAULT_PRIORITY "normal"
#define FLEET_JOB_DEFAULT_MAX_ATTEMPTS 3
#define FLEET_JOB_DEFAULT_TTL_S 86400 /* ttl_s and queue_ttl_s */
#define FLEET_JOB_DEFAULT_TIMEOUT_S 0 /* no execution limit */
/* Seconds a finished job's tombstone outlives its keys (field tomb_s; 0: none, its id
 * answers 404 once its keys expired): FLEET_TOMBSTONE_S's default. */
#define FLEET_JOB_DEFAULT_TOMB_S 86400
/* A default as text, for option tables and readers that print it:
 * FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TTL_S) is "86400". */
#define FLEET_JOB_DEFAULT_TEXT(x) FLEET_JOB_DEFAULT_TEXT_(x)
#define FLEET_JOB_DEFAULT_TEXT_(x) #x

/* True when s is a well-formed job id (so it can be put into a key name safely). */
bool fleet_job_id_valid(const char *s);
/* True when s is a well-formed model name. */
bool fleet_model_name_valid(const char *s);
/* Tenant names follow the same rule as model names: [a-z0-9_-], 1..64 characters. */
bool fleet_tenant_name_valid(const char *s);
/* The tenant argument of the scripts that read and act on a job (get, cancel, delete,
 * list) for an admin: any tenant's job. No tenant is named so (fleet_tenant_name_valid
 * refuses it), so no tenant key can pass it. */
#define FLEET_TENANT_ANY "*"

#endif
