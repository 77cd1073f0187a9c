/* cnn_backend.c: the classify backends' modules (cnn.h), each opened the first time it is
 * asked for (worker/embed/module_file.h finds and opens the file). */
#include <stdio.h>
#include <string.h>

#include "cnn.h"
#include "module_file.h"

static module_slot slots[] = {
    {.name = "cpu", .file = "fleet-classify-cpu.so", .what = "classify CPU"},
    {.name = "cuda", .file = "fleet-classify-cuda.so", .what = "classify CUDA"},
};

static module_slot *slot_of(const char *name) {
    for (size_t i = 0; name && i < sizeof slots / sizeof slots[0]; i++)
        if (strcmp(slots[i].name, name) == 0) return &slots[i];
    return NULL;
}

void cnn_module_use(const char *name, const char *path) {
    module_slot *s = slot_of(name);
    if (s) s->use = path && path[0] ? path : NULL;
}

void cnn_module_path(const char *name, char *buf, size_t len) {
    const module_slot *s = slot_of(name);
    if (s) module_slot_path(s, buf, len);
    else snprintf(buf, len, "%s", "");
}

static const char *table_refusal(const void *table, const char *name) {
    const cnn_module *m = table;
    if (m->abi_version != CNN_MODULE_ABI || m->size != sizeof *m || m->ops_size != sizeof(cnn_ops))
        return "it was built for another module ABI version; rebuild it with this fleet";
    if (!m->ops || !m->ops->name || strcmp(m->ops->name, name) != 0)
        return "it holds another backend";
    if (!m->present || !m->ops->load || !m->ops->max_batch || !m->ops->classify || !m->ops->free)
        return "its table is incomplete";
    return NULL;
}

const cnn_module *cnn_module_open(const char *name, char *err, size_t errlen) {
    module_slot *s = slot_of(name);
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "no classify backend '%s' (have: %s)", name ? name : "",
                     cnn_backend_names());
        return NULL;
    }
    const cnn_module *m = module_slot_open(s, CNN_MODULE_SYMBOL, table_refusal);
    if (!m && err && errlen) snprintf(err, errlen, "%s", s->reason);
    return m;
}

const char *cnn_backend_names(void) { return "cpu|cuda"; }
