/* echo.c: the "echo" model, a diagnostic: its output is its input, byte for byte.
 *
 * It exercises the whole path (submit, queue, claim, batch, result, completion) without
 * any compute, so load tests with it measure fleet's own overhead. It reports no
 * progress, which would add a Redis write per job to that measure (sleep reports it).
 */
#include <stdlib.h>
#include <string.h>

#include "models.h"

static int echo_load(const char *args, void **state, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    *state = NULL;
    return 0;
}

static void echo_run_batch(void *state, fleet_model_job *jobs, size_t n,
                           const fleet_model_ctx *ctx) {
    (void)state;
    for (size_t i = 0; i < n; i++) {
        fleet_model_job *j = &jobs[i];
        if (ctx->cancelled(ctx, i)) {
            j->outcome = FLEET_MODEL_STOPPED;
            continue;
        }
        /* malloc(0) may return NULL; an empty input is not valid msgpack anyway, but keep
         * the copy well-defined for it. */
        j->output = malloc(j->input_len ? j->input_len : 1);
        if (!j->output) {
            fleet_model_job_fail(j, 1, "out of memory copying %zu bytes", j->input_len);
            continue;
        }
        if (j->input_len) memcpy(j->output, j->input, j->input_len);
        j->output_len = j->input_len;
        j->outcome = FLEET_MODEL_OK;
    }
}

static void echo_unload(void *state) { (void)state; }

const fleet_model wk_model_echo = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "echo",
    .backend = "cpu",
    .max_batch = 0,
    .load = echo_load,
    .run_batch = echo_run_batch,
    .unload = echo_unload,
};
