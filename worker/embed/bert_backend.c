/* bert_backend.c: the BERT backends (bert.h), each opened from its module (bert_module.h)
 * the first time it is asked for (module_file.h finds and opens the file). */
#include <stdio.h>
#include <string.h>

#include "bert.h"
#include "bert_module.h"
#include "module_file.h"

static module_slot slots[] = {
    {.name = "cpu", .file = "fleet-embed-cpu.so", .what = "CPU"},
    {.name = "cuda", .file = "fleet-embed-cuda.so", .what = "CUDA"},
};

static module_slot *slot_of(const char *name) {
    for (size_t i = 0; name && i < sizeof slots / sizeof slots[0]; i++)
        if (strcmp(slots[i].name, name) == 0) return &slots[i];
    return NULL;
}

void bert_module_use(const char *name, const char *path) {
    module_slot *s = slot_of(name);
    if (s) s->use = path && path[0] ? path : NULL;
}

void bert_module_path(const char *name, char *buf, size_t len) {
    const module_slot *s = slot_of(name);
    if (s) module_slot_path(s, buf, len);
    else snprintf(buf, len, "%s", "");
}

/* table_refusal says what is wrong with a module's table, or NULL when it is usable. */
static const char *table_refusal(const void *table, const char *name) {
    const bert_module *m = table;
    if (m->abi_version != BERT_MODULE_ABI || m->size != sizeof *m ||
        m->ops_size != sizeof(bert_ops))
        return "it was built for another module ABI version; rebuild it with this fleet";
    if (!m->ops || !m->ops->name || strcmp(m->ops->name, name) != 0)
        return "it holds another backend";
    if (!m->present || !m->has_cudnn || !m->ops->load || !m->ops->config || !m->ops->max_seqs ||
        !m->ops->embed || !m->ops->free)
        return "its table is incomplete";
    return NULL;
}

const bert_module *bert_module_open(const char *name, char *err, size_t errlen) {
    module_slot *s = slot_of(name);
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "no BERT backend '%s' (have: %s)", name ? name : "",
                     bert_backend_names());
        return NULL;
    }
    const bert_module *m = module_slot_open(s, BERT_MODULE_SYMBOL, table_refusal);
    if (!m && err && errlen) snprintf(err, errlen, "%s", s->reason);
    return m;
}

const bert_ops *bert_backend(const char *name) {
    const bert_module *m = bert_module_open(name, NULL, 0);
    return m ? m->ops : NULL;
}

const char *bert_backend_names(void) { return "cpu|cuda"; }
