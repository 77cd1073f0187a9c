/* cnn_cpu_module.c: the one symbol fleet-classify-cpu.so exports (cnn.h): the CPU
 * backend's table, with the ABI version it was built for. */
#include "cnn_cpu.h"

__attribute__((visibility("default"))) extern const cnn_module cnn_module_v1;

static int always(void) { return 1; }

const cnn_module cnn_module_v1 = {
    .abi_version = CNN_MODULE_ABI,
    .size = sizeof(cnn_module),
    .ops_size = sizeof(cnn_ops),
    .ops = &cnn_cpu_ops,
    .present = always,
};
