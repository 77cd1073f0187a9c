/* bert_backend.c: the BERT backends (bert.h): the CPU one built in, the CUDA one opened
 * from its module (bert_module.h) when first asked for. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "bert_module.h"

#define REASON_MAX (PATH_MAX + 256) /* a path and why */

static const char *module_use; /* fleet_bert_cuda_module_use */

/* The outcome of the one open: the table, or why there is none. */
static int module_tried;
static const fleet_bert_module *module_table;
static char module_reason[REASON_MAX];

void fleet_bert_cuda_module_use(const char *path)
{
    module_use = path && path[0] ? path : NULL;
}

/* exe_dir writes the running executable's directory to buf; 0, or -1 when unknown. */
static int exe_dir(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return snprintf(buf, len, "%s", exe) < (int)len ? 0 : -1;
}

void fleet_bert_cuda_module_path(char *buf, size_t len)
{
    char dir[PATH_MAX], installed[PATH_MAX + 64];
    if (module_use) {
        snprintf(buf, len, "%s", module_use);
        return;
    }
    if (exe_dir(dir, sizeof dir) != 0) {
        /* No /proc: the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache). */
        snprintf(buf, len, "%s", FLEET_BERT_CUDA_MODULE_FILE);
        return;
    }
    /* Next to the binary (a build tree's bin/), else where cmake --install puts it. When
     * neither is there the first is named, so the error says where it was expected. */
    snprintf(installed, sizeof installed, "%s/../lib/fleet/%s", dir, FLEET_BERT_CUDA_MODULE_FILE);
    snprintf(buf, len, "%s/%s", dir, FLEET_BERT_CUDA_MODULE_FILE);
    if (access(buf, F_OK) != 0 && access(installed, F_OK) == 0)
        snprintf(buf, len, "%s", installed);
}

/* table_refusal says what is wrong with a module's table, or NULL when it is usable. */
static const char *table_refusal(const fleet_bert_module *m)
{
    if (!m)
        return "it exports no " FLEET_BERT_MODULE_SYMBOL;
    if (m->abi_version != FLEET_BERT_MODULE_ABI || m->size != sizeof *m ||
        m->ops_size != sizeof(fleet_bert_ops))
        return "it was built for another module ABI version; rebuild it with this fleet";
    if (!m->ops || !m->present || !m->has_cudnn || !m->ops->name ||
        strcmp(m->ops->name, "cuda") != 0 || !m->ops->load || !m->ops->config ||
        !m->ops->max_seqs || !m->ops->embed || !m->ops->free)
        return "its table is incomplete";
    return NULL;
}

static void module_open(void)
{
    char path[PATH_MAX + 64];
    fleet_bert_cuda_module_path(path, sizeof path);
    /* RTLD_LOCAL: the module's own copy of the embed code (its self-check runs the CPU
     * backend) stays out of the worker's symbol space. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(module_reason, sizeof module_reason, "cannot load the CUDA backend module: %s",
                 e ? e : path);
        return;
    }
    const fleet_bert_module *m = dlsym(h, FLEET_BERT_MODULE_SYMBOL);
    const char *why = table_refusal(m);
    if (why) {
        snprintf(module_reason, sizeof module_reason, "CUDA backend module %s refused: %s", path,
                 why);
        dlclose(h);
        return;
    }
    module_table = m;
}

const fleet_bert_module *fleet_bert_cuda_module(char *err, size_t errlen)
{
    if (!module_tried) {
        module_tried = 1;
        module_open();
    }
    if (!module_table && err && errlen)
        snprintf(err, errlen, "%s", module_reason);
    return module_table;
}

const fleet_bert_ops *fleet_bert_backend(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, fleet_bert_cpu_ops.name) == 0)
        return &fleet_bert_cpu_ops;
    if (strcmp(name, "cuda") == 0) {
        const fleet_bert_module *m = fleet_bert_cuda_module(NULL, 0);
        return m ? m->ops : NULL;
    }
    return NULL;
}

const char *fleet_bert_backend_names(void)
{
    return "cpu|cuda";
}
