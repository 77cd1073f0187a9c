/* bert_cpu_module.c: the one symbol fleet-embed-cpu.so exports (bert_module.h): the CPU
 * backend's table, with the ABI version it was built for. */
#include "bert_cpu.h"
#include "bert_module.h"

__attribute__((visibility("default"))) extern const fleet_bert_module fleet_bert_module_v1;

static int always(void)
{
    return 1;
}

static int never(void)
{
    return 0;
}

const fleet_bert_module fleet_bert_module_v1 = {
    .abi_version = FLEET_BERT_MODULE_ABI,
    .size = sizeof(fleet_bert_module),
    .ops_size = sizeof(fleet_bert_ops),
    .ops = &fleet_bert_cpu_ops,
    .present = always,
    .has_cudnn = never,
};
