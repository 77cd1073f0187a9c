/* bytes.c: an example model plug-in for fleet-worker (--model-plugin). It builds with
 * nothing but worker/model.h and answers, for each job, how many bytes of msgpack input it
 * got: {"bytes": N}. A real plug-in runs its own CUDA, TensorRT or ONNX code in run_batch.
 *
 *   cc -shared -fPIC -I worker -o libfleet_model_bytes.so examples/plugin/bytes.c
 *   FLEET_MODELS=echo,sleep,bytes fleet-gateway &
 *   fleet-worker --model-plugin ./libfleet_model_bytes.so
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int bytes_load(const char *args, void **state, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    *state = NULL;
    return 0;
}

/* {"bytes": n} in msgpack, written by hand: fixmap(1), fixstr "bytes", uint64. */
static char *pack_count(uint64_t n, size_t *len) {
    char *out = malloc(16);
    if (!out) return NULL;
    size_t k = 0;
    out[k++] = (char)0x81;
    out[k++] = (char)0xa5;
    memcpy(out + k, "bytes", 5);
    k += 5;
    out[k++] = (char)0xcf;
    for (int i = 7; i >= 0; i--) out[k++] = (char)(n >> (8 * i));
    *len = k;
    return out;
}

static void bytes_run_batch(void *state, fleet_model_job *jobs, size_t n,
                            const fleet_model_ctx *ctx) {
    (void)state;
    for (size_t i = 0; i < n; i++) {
        if (ctx->cancelled(ctx, i)) {
            jobs[i].outcome = FLEET_MODEL_STOPPED;
            continue;
        }
        ctx->progress(ctx, i, 100.0, "counted", 1, 1);
        jobs[i].output = pack_count(jobs[i].input_len, &jobs[i].output_len);
        if (jobs[i].output) jobs[i].outcome = FLEET_MODEL_OK;
        else fleet_model_job_fail(&jobs[i], 1, "out of memory");
    }
}

static void bytes_unload(void *state) { (void)state; }

const fleet_model fleet_model_v1 = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "bytes",
    .backend = "cpu",
    .max_batch = 0,
    .load = bytes_load,
    .run_batch = bytes_run_batch,
    .unload = bytes_unload,
};
