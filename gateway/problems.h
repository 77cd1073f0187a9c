/* problems.h: every problem type the gateway answers (RFC 9457), in one table, and the
 * reason phrase of every status it answers.
 *
 * A problem is named by its id; its slug (the type is "urn:fleet:problem:<slug>"), its
 * status and its title come from this table alone, so two answers of one type cannot
 * disagree. docs/api.md lists the same table; problems_test checks that both hold the
 * same slugs with the same statuses.
 */
#ifndef GW_PROBLEMS_H
#define GW_PROBLEMS_H

/* X(id, slug, status, title), grouped by status. */
#define GW_PROBLEM_TYPES(X)                                                               \
    X(BAD_FRAMING, "bad-framing", 400, "Bad request framing")                             \
    X(INVALID_BODY, "invalid-body", 400, "Invalid request body")                          \
    X(INVALID_JSON, "invalid-json", 400, "Body is not valid JSON")                        \
    X(INVALID_MSGPACK, "invalid-msgpack", 400, "Body is not valid msgpack")               \
    X(INVALID_MULTIPART, "invalid-multipart", 400, "Invalid multipart body")              \
    X(INVALID_QUERY, "invalid-query", 400, "Invalid query")                               \
    X(INVALID_WAIT, "invalid-wait", 400, "Invalid wait")                                  \
    X(INVALID_IDEMPOTENCY_KEY, "invalid-idempotency-key", 400, "Invalid Idempotency-Key") \
    X(INVALID_ID, "invalid-id", 400, "Not a job id")                                      \
    X(INVALID_MODEL, "invalid-model", 400, "Not a model name")                            \
    X(UNAUTHORIZED, "unauthorized", 401, "Unauthorized")                                  \
    X(FORBIDDEN, "forbidden", 403, "Forbidden")                                           \
    X(NOT_FOUND, "not-found", 404, "Not found")                                           \
    X(JOB_NOT_FOUND, "job-not-found", 404, "Job not found")                               \
    X(METHOD_NOT_ALLOWED, "method-not-allowed", 405, "Method not allowed")                \
    X(REQUEST_TIMEOUT, "request-timeout", 408, "Request timeout")                         \
    X(EXPIRED, "expired", 410, "Job expired")                                             \
    X(JOB_FINISHED, "job-finished", 409, "Job already finished")                          \
    X(JOB_FAILED, "job-failed", 409, "Job failed")                                        \
    X(JOB_CANCELLED, "job-cancelled", 409, "Job cancelled")                               \
    X(JOB_NOT_RETRYABLE, "job-not-retryable", 409, "Job cannot be retried")               \
    X(JOB_NOT_FINISHED, "job-not-finished", 409, "Job not finished")                      \
    X(BODY_TOO_LARGE, "body-too-large", 413, "Body too large")                            \
    X(BATCH_TOO_LARGE, "batch-too-large", 413, "Batch too large")                         \
    X(URI_TOO_LONG, "uri-too-long", 414, "URI too long")                                  \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", 415, "Unsupported content type")  \
    X(INVALID_JOB, "invalid-job", 422, "Not a valid job")                                 \
    X(UNKNOWN_MODEL, "unknown-model", 422, "Unknown model")                               \
    X(IDEMPOTENCY_KEY_REUSED, "idempotency-key-reused", 422, "Idempotency-Key reused")    \
    X(WEBHOOK_REFUSED, "webhook-refused", 422, "Webhook URL refused")                     \
    X(WEBHOOKS_DISABLED, "webhooks-disabled", 422, "Webhooks not configured")             \
    X(RESULT_NOT_READY, "result-not-ready", 425, "Result not ready")                      \
    X(RATE_LIMITED, "rate-limited", 429, "Too many submits")                              \
    X(TOO_MANY_ACTIVE_JOBS, "too-many-active-jobs", 429, "Too many active jobs")          \
    X(HEADERS_TOO_LARGE, "headers-too-large", 431, "Request header fields too large")     \
    X(INTERNAL, "internal", 500, "Internal error")                                        \
    X(RESULT_UNREADABLE, "result-unreadable", 500, "Result unreadable")                   \
    X(TRANSFER_CODING_NOT_IMPLEMENTED, "transfer-coding-not-implemented", 501,            \
      "Transfer coding not implemented")                                                  \
    X(QUEUE_FULL, "queue-full", 503, "Queue full")                                        \
    X(REDIS_UNAVAILABLE, "redis-unavailable", 503, "Service unavailable")                 \
    X(REDIS_LOADING, "redis-loading", 503, "Service unavailable")                         \
    X(REDIS_FULL, "redis-full", 503, "Job store full")                                    \
    X(TOO_MANY_CONNECTIONS, "too-many-connections", 503, "Too many connections")

typedef enum gw_problem_id {
#define GW_PROBLEM_ENUM(id, slug, status, title) GW_PROBLEM_##id,
    GW_PROBLEM_TYPES(GW_PROBLEM_ENUM)
#undef GW_PROBLEM_ENUM
        GW_PROBLEM_COUNT
} gw_problem_id;

typedef struct gw_problem_type {
    const char *slug;
    int status;
    const char *title;
} gw_problem_type;

/* The row of id (GW_PROBLEM_INTERNAL's for an id out of range). */
const gw_problem_type *gw_problem_type_of(gw_problem_id id);
/* The id of a slug, or -1 when the table has none. */
int gw_problem_find(const char *slug);
/* The id of a slug that a refusal carries (job_body.c, framing.c, redis.c fill a slug
 * in their results); GW_PROBLEM_INTERNAL, logged, for a slug the table lacks. */
gw_problem_id gw_problem_of_slug(const char *slug);

/* The RFC 9110 reason phrase of every status the gateway answers ("Too Early" for 425);
 * NULL for any other status. */
const char *gw_status_reason(int status);

#endif
