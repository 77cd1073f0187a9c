/* module_file.h: finding and opening a model backend's module.
 *
 * The models' backends that need a heavy library (OpenBLAS, the CUDA runtime, cuDNN) are
 * shared modules that fleet-worker opens at run time (worker/embed/bert_module.h,
 * worker/classify/cnn.h), so a worker serving another model never maps them. Each model
 * keeps one module_slot per backend and checks the table it exports; finding the file and
 * opening it once is done here for all of them. */
#ifndef EMBED_MODULE_FILE_H
#define EMBED_MODULE_FILE_H

#include <limits.h>
#include <stddef.h>

/* One backend's module: its file, the path set for it, and the outcome of its one open. */
typedef struct module_slot {
    const char *name, *file, *what; /* "cuda", "fleet-embed-cuda.so", "CUDA" */
    const char *use;                /* a path set by the operator (--cuda-module), or NULL */
    int tried;
    const void *table; /* the exported symbol once accepted */
    char reason[PATH_MAX + 256];
} module_slot;

/* Writes the running executable's directory to buf; 0, or -1 when unknown (no /proc).
 * Also where a model looks for the files installed beside fleet (../share/fleet/). */
int module_exe_dir(char *buf, size_t len);

/* Writes to buf the path s's module is opened from: s->use when set, else s->file in the
 * directory of the running executable (a build tree's bin/), else ../lib/fleet/<file>
 * from there (where cmake --install puts it) when only that one exists; without /proc,
 * the file name alone (the dynamic loader's own search). */
void module_slot_path(const module_slot *s, char *buf, size_t len);

/* Opens s's module the first time (dlopen RTLD_NOW | RTLD_LOCAL, so the module's own
 * copies of shared code stay out of the process's symbol space; then dlsym(symbol)) and
 * returns its table when refusal(table, s->name) returns NULL. Otherwise NULL, with the
 * reason in s->reason: the file's path and dlerror's text, no such symbol, or the
 * refusal's words. The outcome is remembered: later calls return it without trying again.
 * An accepted module stays loaded until the process exits (the CUDA runtime does not
 * support being unloaded while it has a context). */
const void *module_slot_open(module_slot *s, const char *symbol,
                             const char *(*refusal)(const void *table, const char *name));

#endif
