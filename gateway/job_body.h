/* job_body.h: reads and validates a submit body (POST /v1/jobs, or one item of a batch)
 * into a job. Pure: no I/O, so it is unit-tested and fuzzed alone. */
#ifndef GW_JOB_BODY_H
#define GW_JOB_BODY_H

#include <jansson.h>
#include <stddef.h>

#include "fleet/job.h"

/* Why a request was refused: the HTTP status, a problem type slug, a title, and a
 * detail a person can act on. */
typedef struct gw_problem {
    int status;
    const char *slug;
    const char *title;
    char detail[512];
} gw_problem;

typedef struct gw_job_request {
    char model[FLEET_MODEL_MAX + 1];
    char *input; /* msgpack, malloc'd */
    size_t input_len;
    fleet_priority priority;
    long timeout_s;
    long ttl_s;
    long max_attempts;       /* 0: the gateway's FLEET_MAX_ATTEMPTS */
    long queue_ttl_s;        /* 0: the gateway's FLEET_QUEUE_TTL */
    char *metadata_json;     /* compact JSON, malloc'd, or NULL */
    char *webhook;           /* URL as given, malloc'd, or NULL (checked by the caller: ssrf.h) */
    char webhook_events[40]; /* "running,progress,output,completed" subset, in that order */
} gw_job_request;

#define GW_TIMEOUT_MAX 86400L
#define GW_TTL_MIN 60L
#define GW_TTL_MAX 604800L
/* The widest bounds of a job's own max_attempts and queue_ttl_s, those of the gateway's
 * FLEET_MAX_ATTEMPTS and FLEET_QUEUE_TTL; the operator's FLEET_MAX_ATTEMPTS_MAX and
 * FLEET_QUEUE_TTL_MAX narrow them (gw_submit_prepare). */
#define GW_ATTEMPTS_MAX 100L
#define GW_QUEUE_TTL_MAX 2592000L
#define GW_METADATA_MAX 4096

/* Parses body (len bytes; content_type may be NULL). Returns 0 and fills out (free with
 * gw_job_request_free), or -1 and fills p. Does not check that the model exists.
 *
 * The Content-Type picks the format; each carries the same fields and rules:
 *   application/json (also no Content-Type)  {"model": ..., "input": ..., "priority": ...}
 *   application/msgpack (x-msgpack, vnd.msgpack)  one msgpack map with the same keys; the
 *       input is stored as its own msgpack bytes, so bin values stay bin
 *   multipart/form-data  form fields "model" (text), "input" (optional JSON object, default
 *       {}), "options" (optional JSON object: priority, timeout_s, ttl_s, max_attempts,
 *       queue_ttl_s, metadata, webhook, webhook_events) and any number of file parts named
 *       "files" (or "file"); the input stored is the input object plus "files":
 *       [{"name", "content_type", "size", "bytes" (bin)}, ...] in the order sent.
 *       multipart.h has the body's syntax.
 * Anything else answers 415 naming these three. 400 is a body that cannot be read (its
 * syntax: slugs invalid-json, invalid-msgpack, invalid-multipart; its fields:
 * invalid-body), 422 one that reads but is no valid job (invalid-job). The body is only
 * read: file bytes are copied once, into out->input. */
int gw_submit_parse(const char *body, size_t len, const char *content_type, long default_ttl_s,
                    gw_job_request *out, gw_problem *p);
void gw_job_request_free(gw_job_request *r);

/* Loads JSON text strictly (no NUL byte, no duplicate keys, any value at the top); what
 * names the text in the detail ("body", "form field 'options'"). Returns a new reference,
 * or NULL with a 400 invalid-json problem. */
json_t *gw_json_load(const char *text, size_t len, const char *what, gw_problem *p);
/* Reads one job from a parsed JSON object, by the rules of a submit body (a batch item).
 * Returns 0 and fills out (free with gw_job_request_free), or -1 and fills p. */
int gw_job_from_json(json_t *root, long default_ttl_s, gw_job_request *out, gw_problem *p);

#endif
