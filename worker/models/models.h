/* models.h: the models built into fleet-worker, and the pure parts of them that unit
 * tests call directly (no Redis, no clock). */
#ifndef WK_MODELS_H
#define WK_MODELS_H

#include <stdbool.h>
#include <stddef.h>

#include "../model.h"

extern const fleet_model wk_model_echo;
extern const fleet_model wk_model_embed;      /* embed.c: BERT sentence embeddings on the CPU */
extern const fleet_model wk_model_embed_cuda; /* embed.c: the same on a CUDA GPU */
/* --backend auto's question for embed on CUDA (embed.c): nonzero when the CUDA module opens
 * and sees a GPU. Without an NVIDIA driver on the machine it does not open the module and
 * logs so; when the module does not open it logs a warning with dlopen's reason. */
int wk_embed_cuda_present(void);
extern const fleet_model wk_model_sleep;
extern const fleet_model wk_model_classify;      /* classify.c: Fashion-MNIST CNN on the CPU */
extern const fleet_model wk_model_classify_cuda; /* classify.c: the same on cuDNN */
/* --backend auto's question for classify on CUDA, answered as wk_embed_cuda_present. */
int wk_classify_cuda_present(void);
/* --backend auto's question for model's CUDA module at path, the same for every model:
 * 0, with a line in the log, when the module file is there but this machine shows no
 * NVIDIA driver (/proc/driver/nvidia/version, /dev/nvidiactl or WSL2's /dev/dxg): opening
 * it would map about 150 MB of CUDA libraries only to learn there is no GPU. Otherwise
 * open_present opens the module (a missing file fails at once, cheaply) and returns its
 * present(), or -1 with the reason in err, which is logged as a warning and answered 0. */
int wk_cuda_backend_present(const char *model, const char *path,
                            int (*open_present)(char *err, size_t errlen));

/* wk_model_builtin returns the built-in model called name with the given backend ("cpu",
 * "cuda"; "auto" or "" or NULL: the first one whose device is present, CUDA before CPU),
 * or NULL with a message in err: unknown model, no such backend in this build, or (auto)
 * no device for any of them. */
const fleet_model *wk_model_builtin(const char *name, const char *backend, char *err,
                                    size_t errlen);
/* The built-in names separated by '|' ("classify|echo|embed|sleep"), for --help and error messages. */
const char *wk_model_builtin_names(void);

/* ---------------------------------------------------------------- sleep input ------ */

#define WK_SLEEP_MAX_MS 3600000L /* one hour: a diagnostic job, not a way to park a worker */
#define WK_SLEEP_MAX_STEPS 1000L

typedef struct wk_sleep_input {
    long ms;            /* 0..WK_SLEEP_MAX_MS, required */
    long steps;         /* 1..WK_SLEEP_MAX_STEPS, default 1 */
    bool fail;          /* "fail" given: fail with fail_msg after sleeping */
    bool retryable;     /* "retryable": true: that failure is transient (default false) */
    long fail_attempts; /* "fail_attempts": N: fail only attempts 1..N, then succeed (0: all) */
    bool crash;         /* "crash": true: the worker process dies (SIGKILL) after sleeping */
    bool ignore_stop;   /* "ignore_stop": true: one uninterruptible sleep, no callbacks (a
                       * model stuck in a long call) */
    bool emit;          /* "emit": true: one partial output {"step": i, "of": K} per step */
    char fail_msg[FLEET_MODEL_ERROR_MAX];
} wk_sleep_input;

/* wk_sleep_parse reads the sleep model's input, one msgpack map:
 *   {"ms": N, "steps": K (optional), "fail": "message" (optional),
 *    "retryable": bool (optional, only with "fail"),
 *    "fail_attempts": N (optional, only with "fail": fail attempts 1..N, then succeed),
 *    "crash": bool (optional: kill the worker process, for crash-recovery tests),
 *    "ignore_stop": bool (optional: never call back, like a model stuck in one call),
 *    "emit": bool (optional: emit a partial output {"step": i, "of": K} at each step)}
 * Returns 0, or -1 with a message naming the field in err ("input.ms must be a
 * non-negative integer"). Unknown fields are refused so that typos do not pass. */
int wk_sleep_parse(const char *buf, size_t len, wk_sleep_input *out, char *err, size_t errlen);

/* wk_sleep_output packs {"slept_ms": ms, "steps": steps}. Returns 0 and a malloc'd
 * buffer, or -1 (out of memory). */
int wk_sleep_output(long ms, long steps, char **out, size_t *len);

#endif
