/* bert_module.h: the CUDA backend as a module that fleet opens at run time.
 *
 * The CUDA backend (bert_cuda.c, bert_kernels.cu) is not linked into fleet-worker: it is
 * built as fleet-embed-cuda.so, which alone needs libcudart, cuBLAS and cuDNN. The worker
 * opens it with dlopen only when the embed model asks for the "cuda" backend (--backend
 * cuda, or auto), so an echo, sleep or CPU embed worker never loads a CUDA library and the
 * same binary runs on a machine without them.
 *
 * The module exports one symbol, FLEET_BERT_MODULE_SYMBOL, a const fleet_bert_module. Its
 * abi_version is checked against FLEET_BERT_MODULE_ABI and its size against this header's
 * struct before anything in it is used; a module built from another version of bert.h or
 * of this header is refused with a message, never called.
 *
 * Where it is looked for (fleet_bert_cuda_module_path): the path given to
 * fleet_bert_cuda_module_use (fleet-worker's --cuda-module / FLEET_CUDA_MODULE), else
 * fleet-embed-cuda.so in the directory of the running executable, else
 * ../lib/fleet/fleet-embed-cuda.so from there (where cmake --install puts it).
 */
#ifndef FLEET_EMBED_BERT_MODULE_H
#define FLEET_EMBED_BERT_MODULE_H

#include <stddef.h>

#include "bert.h"

/* Bump whenever fleet_bert_module or fleet_bert_ops (bert.h) changes shape or meaning. */
#define FLEET_BERT_MODULE_ABI 1
#define FLEET_BERT_MODULE_SYMBOL "fleet_bert_cuda_module_v1"
#define FLEET_BERT_CUDA_MODULE_FILE "fleet-embed-cuda.so"

typedef struct fleet_bert_module {
    int abi_version;   /* FLEET_BERT_MODULE_ABI of the module's build */
    size_t size;       /* sizeof(fleet_bert_module) of the module's build */
    size_t ops_size;   /* sizeof(fleet_bert_ops) of the module's build */
    const fleet_bert_ops *ops;
    /* Nonzero when the CUDA runtime sees at least one GPU; never allocates GPU memory. */
    int (*present)(void);
    /* Nonzero when the module was built with cuDNN (FLEET_EMBED_SOFTMAX=cudnn works). */
    int (*has_cudnn)(void);
} fleet_bert_module;

/* Sets the module's path for every later open (NULL or "": the default places). Call it
 * before the first fleet_bert_cuda_module; the string must outlive the process's use of
 * it (fleet-worker passes its settings). */
void fleet_bert_cuda_module_use(const char *path);

/* Writes the path the module is (or would be) opened from to buf. */
void fleet_bert_cuda_module_path(char *buf, size_t len);

/* Opens the module once per process and returns its checked table, or NULL with a
 * one-line reason in err: the file's path and dlerror's text (not there, or a library it
 * needs, such as libcudart, missing), or why its table was refused. A failure is
 * remembered: later calls return NULL with the same reason without trying again. The
 * module stays loaded until the process exits (the CUDA runtime does not support being
 * unloaded while it has a context). */
const fleet_bert_module *fleet_bert_cuda_module(char *err, size_t errlen);

#endif
