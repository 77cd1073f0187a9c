/* abi_model.c: a model plug-in for outputs_test, built twice (tests/CMakeLists.txt): with
 * ABI_MODEL_VERSION 1 it is a plug-in as built against the model ABI before ctx->emit
 * (it declares abi_version 1 and never reads ctx->emit), named "abi1"; with 2 it declares
 * the current version, is named "abi2" and emits one partial output {"n": k} per input
 * byte count k. Each answers {"abi": version}. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

#ifndef ABI_MODEL_VERSION
#error "build with -DABI_MODEL_VERSION=1 or 2"
#endif

static int abi_load(const char *args, void **state, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    *state = NULL;
    return 0;
}

/* {key: v} in msgpack for a 1..15-character key and v < 128: fixmap, fixstr, fixint. */
static size_t pack_one(char *out, const char *key, unsigned v) {
    size_t n = strlen(key), k = 0;
    out[k++] = (char)0x81;
    out[k++] = (char)(0xa0 | n);
    memcpy(out + k, key, n);
    k += n;
    out[k++] = (char)(v & 0x7f);
    return k;
}

static void abi_run_batch(void *state, fleet_model_job *jobs, size_t n,
                          const fleet_model_ctx *ctx) {
    (void)state;
    for (size_t i = 0; i < n; i++) {
        if (ctx->cancelled(ctx, i)) {
            jobs[i].outcome = FLEET_MODEL_STOPPED;
            continue;
        }
#if ABI_MODEL_VERSION >= 2
        char one[16], err[FLEET_MODEL_ERROR_MAX];
        size_t len = pack_one(one, "n", (unsigned)jobs[i].input_len);
        if (ctx->emit(ctx, i, one, len, err, sizeof err) == FLEET_MODEL_EMIT_STOP) {
            jobs[i].outcome = FLEET_MODEL_STOPPED;
            continue;
        }
#endif
        jobs[i].output = malloc(16);
        if (!jobs[i].output) {
            fleet_model_job_fail(&jobs[i], 1, "out of memory");
            continue;
        }
        jobs[i].output_len = pack_one(jobs[i].output, "abi", ABI_MODEL_VERSION);
        jobs[i].outcome = FLEET_MODEL_OK;
    }
}

static void abi_unload(void *state) { (void)state; }

const fleet_model fleet_model_v1 = {
    .abi_version = ABI_MODEL_VERSION,
    .name = ABI_MODEL_VERSION == 1 ? "abi1" : "abi2",
    .backend = "cpu",
    .max_batch = 0,
    .load = abi_load,
    .run_batch = abi_run_batch,
    .unload = abi_unload,
};
