/* bert_cpu_module.c: the one symbol fleet-embed-cpu.so exports (bert_module.h): the CPU
 * backend's table, with the ABI version it was built for. */
#include "bert_cpu.h"
#include "bert_module.h"

__attribute__((visibility("default"))) extern const bert_module bert_module_v1;

static int always(void) { return 1; }

static int never(void) { return 0; }

const bert_module bert_module_v1 = {
    .abi_version = BERT_MODULE_ABI,
    .size = sizeof(bert_module),
    .ops_size = sizeof(bert_ops),
    .ops = &bert_cpu_ops,
    .present = always,
    .has_cudnn = never,
};
