/* bert_backend.c: the table of BERT backends built into fleet (bert.h). */
#include <string.h>

#include "bert.h"

#ifdef FLEET_HAVE_CUDA
#include "bert_cuda.h"
#endif

static const fleet_bert_ops *const backends[] = {
    &fleet_bert_cpu_ops,
#ifdef FLEET_HAVE_CUDA
    &fleet_bert_cuda_ops,
#endif
};

const fleet_bert_ops *fleet_bert_backend(const char *name)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (name && strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

const char *fleet_bert_backend_names(void)
{
#ifdef FLEET_HAVE_CUDA
    return "cpu|cuda";
#else
    return "cpu";
#endif
}
