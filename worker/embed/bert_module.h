/* bert_module.h: the BERT backends as modules that fleet opens at run time.
 *
 * Neither backend is linked into fleet-worker. Each is a shared module:
 *   fleet-embed-cpu.so    bert_cpu.c, the only part of the embed model that needs OpenBLAS;
 *   fleet-embed-cuda.so   bert_cuda.c and bert_kernels.cu, the only part that needs
 *                         libcudart, cuBLAS and cuDNN (built when the toolkit was found).
 * The worker opens one with dlopen only when the embed model loads on that backend (the
 * cuda one also when --backend auto asks whether a GPU is there), so an echo or sleep
 * worker loads neither OpenBLAS nor a CUDA library, a CPU embed worker no CUDA library,
 * and the same binary runs on a machine without them.
 *
 * A module exports one symbol, BERT_MODULE_SYMBOL, a const bert_module. Its
 * abi_version is checked against BERT_MODULE_ABI, its sizes against this header's
 * structs and its ops->name against the backend asked for, before anything in it is used;
 * a module built from another version of bert.h or of this header is refused with a
 * message, never called.
 *
 * Where a module is looked for (bert_module_path): the path given to
 * bert_module_use (fleet-worker's --cuda-module / FLEET_CUDA_MODULE), else its file
 * name in the directory of the running executable, else ../lib/fleet/ from there (where
 * cmake --install puts it).
 */
#ifndef EMBED_BERT_MODULE_H
#define EMBED_BERT_MODULE_H

#include <stddef.h>

#include "bert.h"

/* Bump whenever bert_module or bert_ops (bert.h) changes shape or meaning. */
#define BERT_MODULE_ABI 1
#define BERT_MODULE_SYMBOL "bert_module_v1"

typedef struct bert_module {
    int abi_version; /* BERT_MODULE_ABI of the module's build */
    size_t size;     /* sizeof(bert_module) of the module's build */
    size_t ops_size; /* sizeof(bert_ops) of the module's build */
    const bert_ops *ops;
    /* Nonzero when the backend's device is there (cpu: always; cuda: the CUDA runtime sees
     * a GPU). Never allocates device memory. */
    int (*present)(void);
    /* Nonzero when the module was built with cuDNN (FLEET_EMBED_SOFTMAX=cudnn works). */
    int (*has_cudnn)(void);
} bert_module;

/* Sets the path of backend name's module ("cpu", "cuda") for every later open (NULL or
 * "": the default places). Call it before the first bert_module_open of that
 * backend; the string must outlive the process's use of it (fleet-worker passes its
 * settings). Unknown names are ignored. */
void bert_module_use(const char *name, const char *path);

/* Writes the path backend name's module is (or would be) opened from to buf. */
void bert_module_path(const char *name, char *buf, size_t len);

/* Opens backend name's module once per process and returns its checked table, or NULL
 * with a one-line reason in err: unknown backend, the file's path and dlerror's text (not
 * there, or a library it needs, such as libcudart, missing), or why its table was
 * refused. A failure is remembered: later calls return NULL with the same reason without
 * trying again. A module stays loaded until the process exits (the CUDA runtime does not
 * support being unloaded while it has a context). */
const bert_module *bert_module_open(const char *name, char *err, size_t errlen);

#endif
