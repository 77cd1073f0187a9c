/* tl_shard_submit.h: a queued job placed on a chosen shard, built as a gateway builds it
 * (fleet_state_submit), for the tests that put jobs on shards themselves. Header-only
 * (static inline): only the tests that include it link libfleet's state module; the
 * harness library does not. */
#ifndef TL_SHARD_SUBMIT_H
#define TL_SHARD_SUBMIT_H

#include <stddef.h>

#include "fleet/id.h"
#include "fleet/state.h"
#include "testlib.h"

/* Builds in cmd the submit script of a job of model for tenant "default" whose id says
 * shard k (keys: that shard's), with input (msgpack, len bytes) and the tenant's index
 * kept to index_cap ids. Returns the job's id (harness-owned); the caller runs cmd on the
 * shard's master. */
static inline const char *tl_shard_submit_cmd(const fleet_keys *keys, int k, const char *model,
                                              const char *input, size_t len, long index_cap,
                                              fleet_cmd *cmd) {
    char id[27];
    fleet_id_new(id);
    fleet_id_set_shard(id, k);
    const char *copy = tl_printf("%s", id);
    fleet_state_submit(keys,
                       &(fleet_submit){.id = copy,
                                       .model = model,
                                       .tenant = "default",
                                       .request_id = "test",
                                       .priority = "normal",
                                       .metadata_json = "",
                                       .input = input,
                                       .input_len = len,
                                       .queue_ttl_s = 3600,
                                       .result_ttl_s = 3600,
                                       .max_attempts = 3,
                                       .index_cap = index_cap,
                                       .index_ttl_s = 7200,
                                       .ready_target = 8,
                                       .tombstone_s = 60},
                       cmd);
    return copy;
}

#endif
