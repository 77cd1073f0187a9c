/* bert_backend.c: the BERT backends (bert.h), each opened from its module (bert_module.h)
 * the first time it is asked for. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "bert_module.h"

#define REASON_MAX (PATH_MAX + 256) /* a path and why */

/* One backend's module: its file, the path set for it, and the outcome of its one open. */
typedef struct module_slot {
    const char *name, *file, *what; /* "cuda", "fleet-embed-cuda.so", "CUDA" */
    const char *use;                /* bert_module_use */
    int tried;
    const bert_module *table;
    char reason[REASON_MAX];
} module_slot;

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

/* exe_dir writes the running executable's directory to buf; 0, or -1 when unknown. */
static int exe_dir(char *buf, size_t len) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    return snprintf(buf, len, "%s", exe) < (int)len ? 0 : -1;
}

void bert_module_path(const char *name, char *buf, size_t len) {
    const module_slot *s = slot_of(name);
    char dir[PATH_MAX], installed[PATH_MAX + 64];
    if (!s) {
        snprintf(buf, len, "%s", "");
        return;
    }
    if (s->use) {
        snprintf(buf, len, "%s", s->use);
        return;
    }
    if (exe_dir(dir, sizeof dir) != 0) {
        /* No /proc: the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache). */
        snprintf(buf, len, "%s", s->file);
        return;
    }
    /* Next to the binary (a build tree's bin/), else where cmake --install puts it. When
     * neither is there the first is named, so the error says where it was expected. */
    snprintf(installed, sizeof installed, "%s/../lib/fleet/%s", dir, s->file);
    snprintf(buf, len, "%s/%s", dir, s->file);
    if (access(buf, F_OK) != 0 && access(installed, F_OK) == 0) snprintf(buf, len, "%s", installed);
}

/* table_refusal says what is wrong with a module's table, or NULL when it is usable. */
static const char *table_refusal(const bert_module *m, const char *name) {
    if (!m) return "it exports no " BERT_MODULE_SYMBOL;
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

static void slot_open(module_slot *s) {
    char path[PATH_MAX + 64];
    bert_module_path(s->name, path, sizeof path);
    /* RTLD_LOCAL: a module's own copy of the embed code (the CUDA one's self-check runs
     * the CPU backend) stays out of the process's symbol space. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(s->reason, sizeof s->reason, "cannot load the %s backend module: %s", s->what,
                 e ? e : path);
        return;
    }
    const bert_module *m = dlsym(h, BERT_MODULE_SYMBOL);
    const char *why = table_refusal(m, s->name);
    if (why) {
        snprintf(s->reason, sizeof s->reason, "%s backend module %s refused: %s", s->what, path,
                 why);
        dlclose(h);
        return;
    }
    s->table = m;
}

const bert_module *bert_module_open(const char *name, char *err, size_t errlen) {
    module_slot *s = slot_of(name);
    if (!s) {
        if (err && errlen)
            snprintf(err, errlen, "no BERT backend '%s' (have: %s)", name ? name : "",
                     bert_backend_names());
        return NULL;
    }
    if (!s->tried) {
        s->tried = 1;
        slot_open(s);
    }
    if (!s->table && err && errlen) snprintf(err, errlen, "%s", s->reason);
    return s->table;
}

const bert_ops *bert_backend(const char *name) {
    const bert_module *m = bert_module_open(name, NULL, 0);
    return m ? m->ops : NULL;
}

const char *bert_backend_names(void) { return "cpu|cuda"; }
