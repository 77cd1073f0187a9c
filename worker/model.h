/* model.h: the C ABI between fleet-worker and a model (docs/models.md).
 *
 * A model is one constant fleet_model table of three functions. The worker loads it once,
 * hands it batches of jobs, and unloads it at exit:
 *
 *     load(args) ──▶ run_batch(jobs[0..n)) ──▶ run_batch(...) ──▶ ... ──▶ unload()
 *
 * Built-in models (worker/models/) are compiled in. A plug-in is a shared object that
 * exports one symbol of this type named FLEET_MODEL_SYMBOL ("fleet_model_v1"):
 *
 *     #include "model.h"
 *     const fleet_model fleet_model_v1 = {
 *         .abi_version = FLEET_MODEL_ABI_VERSION, .name = "ocr", .backend = "cuda",
 *         .load = ocr_load, .run_batch = ocr_run_batch, .unload = ocr_unload,
 *     };
 *
 * The header is plain C (no fleet library types, no hiredis, no jansson), so a plug-in
 * needs nothing else to build. A later, incompatible ABI gets a new symbol name
 * (fleet_model_v2) so an old plug-in is refused by name instead of crashing.
 *
 * Threads: the worker calls load, run_batch and unload from one thread, never two calls
 * at once. The ctx callbacks must be called from that same thread, during run_batch.
 *
 * Data: inputs and outputs are msgpack (one value; see shared/include/fleet/codec.h for
 * how it maps to JSON). Inputs are owned by the worker and valid during run_batch only.
 */
#ifndef FLEET_MODEL_H
#define FLEET_MODEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Version 2 added ctx->emit (partial outputs) at the end of fleet_model_ctx: a worker of
 * version 2 loads plug-ins of version 1 and 2 alike (the ctx it passes is a version 1 ctx
 * with one more member), a worker of version 1 refuses a plug-in of version 2. A plug-in
 * that sets .abi_version = FLEET_MODEL_ABI_VERSION (2) may call ctx->emit; one that must
 * also load in version 1 workers sets .abi_version = 1 and never reads ctx->emit, which a
 * version 1 worker's ctx does not have (docs/models.md, "Partial outputs"). */
#define FLEET_MODEL_ABI_VERSION 2
#define FLEET_MODEL_ABI_VERSION_MIN 1 /* the oldest version this worker loads */
#define FLEET_MODEL_SYMBOL "fleet_model_v1"
#define FLEET_MODEL_ERROR_MAX 512

/* What ctx->emit answers: OK, stored (clients can read it now); STOP, stored or not, the
 * job must stop now (as for a nonzero progress()); REFUSED, not stored (a per-job limit,
 * an empty output, Redis unreachable or refusing writes): err says why; the job goes on. */
#define FLEET_MODEL_EMIT_OK 0
#define FLEET_MODEL_EMIT_STOP 1
#define FLEET_MODEL_EMIT_REFUSED 2

/* What a model did with one job; it sets exactly one of these per job. */
#define FLEET_MODEL_PENDING 0 /* untouched: the worker fails the job ("model gave no result") */
#define FLEET_MODEL_OK 1      /* output/output_len hold the result */
#define FLEET_MODEL_FAILED 2  /* permanent error in error[]: the job fails, no retry */
#define FLEET_MODEL_RETRY 3   /* transient error in error[]: another attempt may succeed */
#define FLEET_MODEL_STOPPED 4 /* stopped because progress() or cancelled() said so */

typedef struct fleet_model_job {
    /* Set by the worker, read-only for the model. */
    const char *id;    /* the job id, for the model's own logs */
    const char *input; /* msgpack bytes */
    size_t input_len;
    long attempt; /* 1 for the first run, 2 after one lost lease, ... */

    /* Set by the model. output is malloc'd; the worker frees it with free(). */
    int outcome; /* FLEET_MODEL_* above */
    char *output;
    size_t output_len;
    char error[FLEET_MODEL_ERROR_MAX]; /* NUL-terminated; shown to the user as is */
} fleet_model_job;

typedef struct fleet_model_ctx fleet_model_ctx;

struct fleet_model_ctx {
    /* Reports progress of jobs[job_index]: percent in 0..100, a short message (may be
     * NULL), and done/total units (total 0 when not counted). Cheap to call often: the
     * worker rate-limits what it writes, but always writes done == total. Returns nonzero
     * when the job must stop now (cancel requested, lease lost, timeout, or shutdown);
     * the model then sets outcome FLEET_MODEL_STOPPED for it and moves on. */
    int (*progress)(const fleet_model_ctx *ctx, size_t job_index, double percent,
                    const char *message, long done, long total);
    /* Nonzero when jobs[job_index] must stop now, for the same reasons; writes nothing.
     * Models with long steps call it between them. */
    int (*cancelled)(const fleet_model_ctx *ctx, size_t job_index);
    void *opaque; /* the worker's own; models leave it alone */
    /* ABI version 2 (a plug-in of version 1 MUST NOT read it). Emits a partial output of
     * jobs[job_index]: one msgpack value of len bytes (like a result), copied before the
     * call returns and stored after the job's earlier outputs; clients read it at once
     * (GET /v1/jobs/{id}/outputs, SSE `output` events). Written at once, not
     * rate-limited: emit pages or chunks, not every token. Returns FLEET_MODEL_EMIT_OK,
     * FLEET_MODEL_EMIT_STOP (then set outcome FLEET_MODEL_STOPPED and move on) or
     * FLEET_MODEL_EMIT_REFUSED with a NUL-terminated reason in err (when errlen > 0):
     * the job's outputs are at the worker's FLEET_MAX_OUTPUTS count or would pass its
     * FLEET_MAX_OUTPUT_BYTES, or Redis did not take it; the job itself may go on and
     * finish. */
    int (*emit)(const fleet_model_ctx *ctx, size_t job_index, const char *output, size_t len,
                char *err, size_t errlen);
};

typedef struct fleet_model {
    int abi_version;     /* FLEET_MODEL_ABI_VERSION */
    const char *name;    /* the model name jobs are submitted to: [a-z0-9_-]{1,64} */
    const char *backend; /* "cpu", "cuda", ...: shown in /v1/models */
    size_t max_batch;    /* most jobs per run_batch; 0: no limit of its own */

    /* Prepares the model (weights, device memory). args is the operator's free text
     * (FLEET_MODEL_ARGS, "" when none). Returns 0 and an opaque state, or -1 with a
     * message in err. */
    int (*load)(const char *args, void **state, char *err, size_t errlen);
    /* Runs n >= 1 jobs together and sets each one's outcome before returning. */
    void (*run_batch)(void *state, fleet_model_job *jobs, size_t n, const fleet_model_ctx *ctx);
    /* Frees what load made. state may be NULL. */
    void (*unload)(void *state);
} fleet_model;

/* fleet_model_job_fail records an error on job j: outcome FLEET_MODEL_RETRY when
 * retryable, else FLEET_MODEL_FAILED; the message is printf-formatted and truncated to
 * fit. A convenience for models; it only touches j. */
static inline void fleet_model_job_fail(fleet_model_job *j, int retryable, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void fleet_model_job_fail(fleet_model_job *j, int retryable, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof j->error, fmt, ap);
    va_end(ap);
    j->outcome = retryable ? FLEET_MODEL_RETRY : FLEET_MODEL_FAILED;
}

#endif
