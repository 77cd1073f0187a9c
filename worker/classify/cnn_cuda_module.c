/* cnn_cuda_module.c: the one symbol fleet-classify-cuda.so exports (cnn.h): the CUDA
 * backend's table, with the ABI version it was built for. */
#include "cnn_cuda.h"

__attribute__((visibility("default"))) extern const cnn_module cnn_module_v1;

const cnn_module cnn_module_v1 = {
    .abi_version = CNN_MODULE_ABI,
    .size = sizeof(cnn_module),
    .ops_size = sizeof(cnn_ops),
    .ops = &cnn_cuda_ops,
    .present = cnn_cuda_present,
};
