/* plugin.c: loading a user's model from a shared object (--model-plugin path.so). The
 * object exports one `const fleet_model fleet_model_v1` (model.h); this checks that it is
 * there, speaks an ABI version this worker loads (model.h) and is complete, so a stale or foreign .so is refused with
 * a message instead of crashing later. */
#include <dlfcn.h>
#include <stdio.h>

#include "fleet/job.h"
#include "worker.h"

const fleet_model *wk_plugin_load(const char *path, void **handle, char *err, size_t errlen) {
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        snprintf(err, errlen, "cannot load model plugin %s: %s", path, dlerror());
        return NULL;
    }
    const fleet_model *m = dlsym(*handle, FLEET_MODEL_SYMBOL);
    const char *why = NULL;
    if (!m) why = "it exports no " FLEET_MODEL_SYMBOL " (see worker/model.h)";
    else if (m->abi_version < FLEET_MODEL_ABI_VERSION_MIN ||
             m->abi_version > FLEET_MODEL_ABI_VERSION)
        why = "it was built for another model ABI version; rebuild it against this worker/model.h";
    else if (!m->name || !fleet_model_name_valid(m->name)) why = "its name is not [a-z0-9_-]{1,64}";
    else if (!m->load || !m->run_batch || !m->unload) why = "load, run_batch or unload is missing";
    if (why) {
        snprintf(err, errlen, "model plugin %s refused: %s", path, why);
        dlclose(*handle);
        *handle = NULL;
        return NULL;
    }
    return m;
}

void wk_plugin_close(void *handle) {
    if (handle) dlclose(handle);
}
