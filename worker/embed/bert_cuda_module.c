/* bert_cuda_module.c: the one symbol fleet-embed-cuda.so exports (bert_module.h): the
 * CUDA backend's table, with the ABI version it was built for. */
#include "bert_cuda.h"
#include "bert_module.h"

__attribute__((visibility("default"))) extern const bert_module bert_module_v1;

const bert_module bert_module_v1 = {
    .abi_version = BERT_MODULE_ABI,
    .size = sizeof(bert_module),
    .ops_size = sizeof(bert_ops),
    .ops = &bert_cuda_ops,
    .present = bert_cuda_present,
    .has_cudnn = bert_cuda_has_cudnn,
};
