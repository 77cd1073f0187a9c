/* registry.c: the table of models compiled into fleet-worker. A new built-in model adds
 * one line here and one source file to worker/CMakeLists.txt. A model with several
 * backends has one line per backend; --backend auto takes the first whose device is
 * present, so the faster backend goes first. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fleet/log.h"
#include "models.h"

typedef struct builtin {
    const fleet_model *model;
    int (*present)(void); /* NULL: always; else nonzero when its device is there */
} builtin;

static const builtin builtins[] = {
    {&wk_model_echo, NULL},     {&wk_model_embed_cuda, wk_embed_cuda_present},
    {&wk_model_embed, NULL},    {&wk_model_classify_cuda, wk_classify_cuda_present},
    {&wk_model_classify, NULL}, {&wk_model_sleep, NULL},
};

#define NBUILTINS (sizeof builtins / sizeof builtins[0])

const fleet_model *wk_model_builtin(const char *name, const char *backend, char *err,
                                    size_t errlen) {
    int auto_pick = !backend || !backend[0] || strcmp(backend, "auto") == 0;
    char have[128] = "";
    size_t used = 0;
    for (size_t i = 0; name && i < NBUILTINS; i++) {
        const builtin *b = &builtins[i];
        if (strcmp(b->model->name, name) != 0) continue;
        if (auto_pick ? !b->present || b->present() : strcmp(b->model->backend, backend) == 0)
            return b->model;
        int k = snprintf(have + used, sizeof have - used, "%s%s", used ? "|" : "",
                         b->model->backend);
        if (k > 0 && (size_t)k < sizeof have - used) used += (size_t)k;
    }
    if (!used)
        snprintf(err, errlen, "unknown model '%s' (built-in: %s; or a --model-plugin)",
                 name ? name : "", wk_model_builtin_names());
    else if (auto_pick)
        snprintf(err, errlen, "model '%s': no device for any of its backends (%s)", name, have);
    else
        snprintf(err, errlen, "model '%s' has no backend '%s' in this build (it has: %s)", name,
                 backend, have);
    return NULL;
}

const char *wk_model_builtin_names(void) { return "classify|echo|embed|sleep"; }

/* Paths that exist wherever an NVIDIA driver can serve CUDA: the kernel module's /proc
 * entry (also mounted into GPU containers), its control device, WSL2's GPU device. */
static const char *const nvidia_signs[] = {"/proc/driver/nvidia/version", "/dev/nvidiactl",
                                           "/dev/dxg"};

static int nvidia_driver_seen(void) {
    for (size_t i = 0; i < sizeof nvidia_signs / sizeof nvidia_signs[0]; i++)
        if (access(nvidia_signs[i], F_OK) == 0) return 1;
    return 0;
}

int wk_cuda_backend_present(const char *model, const char *path,
                            int (*open_present)(char *err, size_t errlen)) {
    char msg[160], err[FLEET_MODEL_ERROR_MAX];
    if (access(path, F_OK) == 0 && !nvidia_driver_seen()) {
        snprintf(msg, sizeof msg,
                 "no NVIDIA driver on this machine; the %s model runs on the CPU without loading "
                 "the CUDA module",
                 model);
        fleet_log(FLEET_LOG_INFO, msg, "looked_for",
                  "/proc/driver/nvidia/version /dev/nvidiactl /dev/dxg", NULL);
        return 0;
    }
    int present = open_present(err, sizeof err);
    if (present < 0) {
        snprintf(msg, sizeof msg, "no CUDA backend; the %s model runs on the CPU", model);
        fleet_log(FLEET_LOG_WARN, msg, "error", err, NULL);
        return 0;
    }
    return present;
}
