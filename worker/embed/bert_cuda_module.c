/* bert_cuda_module.c: the one symbol fleet-embed-cuda.so exports (bert_module.h): the
 * CUDA backend's table, with the ABI version it was built for. */
#include "bert_cuda.h"
#include "bert_module.h"

__attribute__((visibility("default"))) extern const fleet_bert_module fleet_bert_module_v1;

const fleet_bert_module fleet_bert_module_v1 = {
    .abi_version = FLEET_BERT_MODULE_ABI,
    .size = sizeof(fleet_bert_module),
    .ops_size = sizeof(fleet_bert_ops),
    .ops = &fleet_bert_cuda_ops,
    .present = fleet_bert_cuda_present,
    .has_cudnn = fleet_bert_cuda_has_cudnn,
};
