/* sleep.c: the "sleep" model, a diagnostic: it simulates a slow job. It does no work;
 * it waits, reports progress, and succeeds or fails as its input asks:
 *
 *   {"ms": 5000, "steps": 5}                 5 s in 5 steps, progress "step i of 5"
 *   {"ms": 100, "fail": "bad page 3"}         fails permanently with that message (in its
 *                                            last step, which it does not report: a
 *                                            failed job keeps its last real progress)
 *   {"ms": 100, "fail": "GPU busy", "retryable": true}   fails with a transient error
 *   {"ms": 100, "fail": "GPU busy", "retryable": true, "fail_attempts": 2}
 *                                            fails attempts 1 and 2, succeeds on the 3rd
 *   {"ms": 100, "crash": true}               kills its own worker process (SIGKILL), as an
 *                                            out-of-memory kill or a segfault would
 *   {"ms": 5000, "ignore_stop": true}        sleeps in one piece without callbacks: cancel
 *                                            and timeout cannot stop it (a stuck model)
 *   {"ms": 1000, "steps": 4, "emit": true}   also emits a partial output {"step": i, "of": 4}
 *                                            at each step (ctx->emit, model.h)
 *
 * Output: {"slept_ms": N, "steps": K}; with "emit", also "emitted" (outputs stored),
 * "refused" (emits the worker refused: a per-job limit) and "emit_error" (the last
 * refusal's reason, "" when none), so a client sees what its limits did. Used by load tests, the cancel/lease/retry tests
 * and demos. A batch runs its jobs side by side, as a GPU batch would: the batch takes as
 * long as its longest job, and each job reports its own steps on its own schedule. It
 * checks cancelled() at least every SLICE_MS, so a cancel stops it within one slice even
 * during a long step.
 */
#include <limits.h>
#include <signal.h>
#include <unistd.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models.h"

#define SLICE_MS 50L
#define SLEEP_MAX_INPUT 65536 /* the real input is a few dozen bytes; refuse before decoding */

/* ---------------------------------------------------------------- input ------------ */

/* get_count reads a non-negative integer; integral floats are accepted (JSON clients
 * that send 100.0 mean 100). Values above LONG_MAX read as LONG_MAX, which every range
 * check refuses. Returns 0, or -1 when v is not such a number. */
static int get_count(const msgpack_object *v, long *out) {
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = v->via.u64 > (uint64_t)LONG_MAX ? LONG_MAX : (long)v->via.u64;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(v->via.f64) || v->via.f64 < 0 || floor(v->via.f64) != v->via.f64) return -1;
        *out = v->via.f64 >= 9e18 ? LONG_MAX : (long)v->via.f64;
        return 0;
    default: return -1;
    }
}

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

static int parse_map(const msgpack_object *o, wk_sleep_input *in, char *err, size_t errlen) {
    int have_ms = 0, have_retryable = 0;

    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "input must be an object like {\"ms\": 1000, \"steps\": 4}");
        return -1;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) {
            snprintf(err, errlen, "input keys must be strings");
            return -1;
        }
        if (key_is(k, "ms")) {
            if (get_count(v, &in->ms) < 0) {
                snprintf(err, errlen, "input.ms must be a non-negative integer");
                return -1;
            }
            if (in->ms > WK_SLEEP_MAX_MS) {
                snprintf(err, errlen, "input.ms must be at most %ld (one hour)", WK_SLEEP_MAX_MS);
                return -1;
            }
            have_ms = 1;
        } else if (key_is(k, "steps")) {
            if (get_count(v, &in->steps) < 0 || in->steps < 1 || in->steps > WK_SLEEP_MAX_STEPS) {
                snprintf(err, errlen, "input.steps must be an integer from 1 to %ld",
                         WK_SLEEP_MAX_STEPS);
                return -1;
            }
        } else if (key_is(k, "fail")) {
            if (v->type == MSGPACK_OBJECT_NIL)
                continue; /* null means "do not fail", as if absent */
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0) {
                snprintf(err, errlen,
                         "input.fail must be a non-empty string (the error to report)");
                return -1;
            }
            size_t n = v->via.str.size;
            if (n >= sizeof in->fail_msg) n = sizeof in->fail_msg - 1;
            memcpy(in->fail_msg, v->via.str.ptr, n);
            in->fail_msg[n] = '\0';
            in->fail = true;
        } else if (key_is(k, "fail_attempts")) {
            if (get_count(v, &in->fail_attempts) < 0 || in->fail_attempts < 1 ||
                in->fail_attempts > 1000) {
                snprintf(err, errlen, "input.fail_attempts must be an integer from 1 to 1000");
                return -1;
            }
        } else if (key_is(k, "ignore_stop")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf(err, errlen, "input.ignore_stop must be true or false");
                return -1;
            }
            in->ignore_stop = v->via.boolean;
        } else if (key_is(k, "crash")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf(err, errlen, "input.crash must be true or false");
                return -1;
            }
            in->crash = v->via.boolean;
        } else if (key_is(k, "emit")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf(err, errlen, "input.emit must be true or false");
                return -1;
            }
            in->emit = v->via.boolean;
        } else if (key_is(k, "retryable")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf(err, errlen, "input.retryable must be true or false");
                return -1;
            }
            in->retryable = v->via.boolean;
            have_retryable = 1;
        } else {
            snprintf(
                err, errlen,
                "input has an unknown field \"%.*s\" (known: ms, steps, fail, retryable, fail_attempts, crash, ignore_stop, emit)",
                (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr);
            return -1;
        }
    }
    if (!have_ms) {
        snprintf(err, errlen, "input.ms is required (milliseconds to sleep, 0..%ld)",
                 WK_SLEEP_MAX_MS);
        return -1;
    }
    if (have_retryable && !in->fail) {
        snprintf(err, errlen, "input.retryable only applies together with input.fail");
        return -1;
    }
    if (in->fail_attempts && !in->fail) {
        snprintf(err, errlen, "input.fail_attempts only applies together with input.fail");
        return -1;
    }
    return 0;
}

int wk_sleep_parse(const char *buf, size_t len, wk_sleep_input *out, char *err, size_t errlen) {
    msgpack_unpacked up;
    size_t off = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->steps = 1;
    if (!buf || len == 0) {
        snprintf(err, errlen, "input is empty; expected an object like {\"ms\": 1000}");
        return -1;
    }
    if (len > SLEEP_MAX_INPUT) {
        snprintf(err, errlen, "input is %zu bytes; the sleep model takes at most %d", len,
                 SLEEP_MAX_INPUT);
        return -1;
    }
    msgpack_unpacked_init(&up);
    msgpack_unpack_return r = msgpack_unpack_next(&up, buf, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS) snprintf(err, errlen, "input is not valid msgpack");
    else if (off != len)
        snprintf(err, errlen, "input has %zu trailing bytes after the msgpack value", len - off);
    else rc = parse_map(&up.data, out, err, errlen);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int wk_sleep_output(long ms, long steps, char **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 2) || msgpack_pack_str_with_body(&pk, "slept_ms", 8) ||
        msgpack_pack_int64(&pk, ms) || msgpack_pack_str_with_body(&pk, "steps", 5) ||
        msgpack_pack_int64(&pk, steps)) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb); /* malloc'd by the sbuffer: free() releases it */
    return *out ? 0 : -1;
}

/* ---------------------------------------------------------------- model ------------ */

typedef struct sleep_job {
    wk_sleep_input in;
    long next_step; /* the next step to report, 1..in.steps */
    int active;
    long emitted, refused;                  /* with "emit": outputs stored, emits refused */
    char emit_error[FLEET_MODEL_ERROR_MAX]; /* the last refusal's reason */
} sleep_job;

/* pack_emit_output packs the output of a job that emitted: the plain output's two fields
 * and what its emits came to. Returns 0, or -1 (out of memory). */
static int pack_emit_output(const sleep_job *j, char **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t elen = strlen(j->emit_error);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 5) || msgpack_pack_str_with_body(&pk, "slept_ms", 8) ||
        msgpack_pack_int64(&pk, j->in.ms) || msgpack_pack_str_with_body(&pk, "steps", 5) ||
        msgpack_pack_int64(&pk, j->in.steps) || msgpack_pack_str_with_body(&pk, "emitted", 7) ||
        msgpack_pack_int64(&pk, j->emitted) || msgpack_pack_str_with_body(&pk, "refused", 7) ||
        msgpack_pack_int64(&pk, j->refused) || msgpack_pack_str_with_body(&pk, "emit_error", 10) ||
        msgpack_pack_str_with_body(&pk, j->emit_error, elen)) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    return *out ? 0 : -1;
}

/* emit_step emits step s of job i as {"step": s, "of": steps}. Returns nonzero when the
 * job must stop (the worker said so). A refused emit is counted and remembered; the job
 * goes on, as the ABI allows. */
static int emit_step(const fleet_model_ctx *ctx, size_t i, sleep_job *j, long s) {
    unsigned char buf[32];
    size_t n = 0;
    buf[n++] = 0x82; /* a map of two */
    buf[n++] = 0xa4;
    memcpy(buf + n, "step", 4);
    n += 4;
    buf[n++] = 0xd3; /* int 64 */
    for (int b = 7; b >= 0; b--) buf[n++] = (unsigned char)((unsigned long long)s >> (8 * b));
    buf[n++] = 0xa2;
    memcpy(buf + n, "of", 2);
    n += 2;
    buf[n++] = 0xd3;
    for (int b = 7; b >= 0; b--)
        buf[n++] = (unsigned char)((unsigned long long)j->in.steps >> (8 * b));
    char err[FLEET_MODEL_ERROR_MAX] = "";
    switch (ctx->emit(ctx, i, (const char *)buf, n, err, sizeof err)) {
    case FLEET_MODEL_EMIT_OK: j->emitted++; return 0;
    case FLEET_MODEL_EMIT_REFUSED:
        j->refused++;
        snprintf(j->emit_error, sizeof j->emit_error, "%s", err);
        return 0;
    default: return 1;
    }
}

static long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_for_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
        /* EINTR (a signal such as SIGTERM): sleep the rest; the caller rechecks flags. */
    }
}

/* When step s of job j is due, in ms from the batch start. */
static long step_due(const sleep_job *j, long s) {
    return (long)((long long)j->in.ms * s / j->in.steps);
}

/* Whether this attempt of the job is to fail (input "fail", within "fail_attempts"). */
static bool fails_now(const fleet_model_job *mj, const sleep_job *j) {
    return j->in.fail && (j->in.fail_attempts == 0 || mj->attempt <= j->in.fail_attempts);
}

static void finish_one(fleet_model_job *mj, const sleep_job *j) {
    if (j->in.crash) {
        fprintf(stderr, "sleep model: input asked for a crash; killing this worker process\n");
        fflush(stderr);
        kill(getpid(), SIGKILL);
    }
    if (fails_now(mj, j)) {
        fleet_model_job_fail(mj, j->in.retryable, "%s", j->in.fail_msg);
        return;
    }
    if ((j->in.emit ? pack_emit_output(j, &mj->output, &mj->output_len)
                    : wk_sleep_output(j->in.ms, j->in.steps, &mj->output, &mj->output_len)) < 0) {
        fleet_model_job_fail(mj, 1, "out of memory packing the output");
        return;
    }
    mj->outcome = FLEET_MODEL_OK;
}

static int sleep_load(const char *args, void **state, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    *state = NULL;
    return 0;
}

static void sleep_run_batch(void *state, fleet_model_job *jobs, size_t n,
                            const fleet_model_ctx *ctx) {
    (void)state;
    sleep_job *sj = calloc(n, sizeof *sj);
    size_t active = 0;

    if (!sj) {
        for (size_t i = 0; i < n; i++)
            fleet_model_job_fail(&jobs[i], 1, "out of memory starting the batch");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char err[FLEET_MODEL_ERROR_MAX];
        if (wk_sleep_parse(jobs[i].input, jobs[i].input_len, &sj[i].in, err, sizeof err) < 0) {
            fleet_model_job_fail(&jobs[i], 0, "%s", err);
            continue;
        }
        if (sj[i].in.ignore_stop) {
            sleep_for_ms(sj[i].in.ms); /* deaf to cancel and timeout, on purpose */
            finish_one(&jobs[i], &sj[i]);
            continue;
        }
        sj[i].next_step = 1;
        sj[i].active = 1;
        active++;
    }

    long start = mono_ms();
    while (active > 0) {
        long now = mono_ms() - start;
        long wake = now + SLICE_MS;
        for (size_t i = 0; i < n; i++) {
            sleep_job *j = &sj[i];
            if (!j->active) continue;
            if (ctx->cancelled(ctx, i)) {
                jobs[i].outcome = FLEET_MODEL_STOPPED;
                j->active = 0;
                active--;
                continue;
            }
            /* Report every step that is due; several at once when steps are shorter than
             * a slice (the worker's rate limit keeps Redis writes bounded). */
            while (j->active && j->next_step <= j->in.steps && step_due(j, j->next_step) <= now) {
                /* A job that fails fails in its last step instead of completing it: it
                 * keeps the progress of the steps it did finish (none for one step), as a
                 * real model's failed job does, never 100%. */
                if (j->next_step == j->in.steps && fails_now(&jobs[i], j)) {
                    j->next_step++;
                    break;
                }
                char msg[64];
                long s = j->next_step++;
                snprintf(msg, sizeof msg, "step %ld of %ld", s, j->in.steps);
                if (ctx->progress(ctx, i, 100.0 * (double)s / (double)j->in.steps, msg, s,
                                  j->in.steps) ||
                    (j->in.emit && emit_step(ctx, i, j, s))) {
                    jobs[i].outcome = FLEET_MODEL_STOPPED;
                    j->active = 0;
                    active--;
                }
            }
            if (!j->active) continue;
            if (j->next_step > j->in.steps) {
                finish_one(&jobs[i], j);
                j->active = 0;
                active--;
                continue;
            }
            long due = step_due(j, j->next_step);
            if (due < wake) wake = due;
        }
        if (active > 0 && wake > now) sleep_for_ms(wake - now);
    }
    free(sj);
}

static void sleep_unload(void *state) { (void)state; }

const fleet_model wk_model_sleep = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "sleep",
    .backend = "cpu",
    .max_batch = 0,
    .load = sleep_load,
    .run_batch = sleep_run_batch,
    .unload = sleep_unload,
};
