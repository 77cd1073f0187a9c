/* keys.h: the one place that spells Redis key names. docs/redis.md lists them all.
 *
 * Every key of one fleet starts with the hash tag "{<prefix>}", so all keys that one script
 * touches live in one Redis Cluster slot. Several fleets can share a Redis with different
 * prefixes. Callers pass ids and model names already validated (job.h), which keeps every
 * key below FLEET_KEY_MAX.
 */
#ifndef FLEET_KEYS_H
#define FLEET_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define FLEET_KEY_MAX 200
#define FLEET_PREFIX_MAX 32
#define FLEET_GROUP "workers"          /* the consumer group on every model stream */
#define FLEET_WEBHOOK_GROUP "gateways" /* the consumer group on the webhook task stream */
/* The worker protocol's version (docs/protocol.md): a worker writes it in field `protocol` of
 * its registration hash. Bumped by a change an older worker or gateway would misread. */
#define FLEET_PROTOCOL_VERSION 6

/* A key builder names the keys of one shard (shards.h): its tag is "{prefix}" (shard 0,
 * the layout of a fleet with one shard) or "{prefix:N}". The fleet's global keys (marked
 * "control" below: tenants, API keys, models, workers, channels, metrics, the shard table)
 * always take the control tag "{prefix}", whichever shard's builder spells them, so a
 * script's builder given a job's shard names that shard's keys and the one events
 * channel. */
typedef struct fleet_keys {
    char tag[FLEET_PREFIX_MAX + 16];    /* "{prefix}", or "{prefix:N}" for a shard */
    char control[FLEET_PREFIX_MAX + 3]; /* "{prefix}" */
} fleet_keys;

/* Sets up the key builder. The prefix is 1..32 characters of [A-Za-z0-9_.-].
 * Returns 0, or -1 when the prefix is not valid. */
int fleet_keys_init(fleet_keys *k, const char *prefix);
/* The key builder of shard tag N, "{prefix:N}" (shards.h); N < 0 is "{prefix}" as above.
 * Returns 0, or -1 when the prefix is not valid. */
int fleet_keys_init_tag(fleet_keys *k, const char *prefix, long tag);

typedef struct fleet_key {
    char s[FLEET_KEY_MAX];
} fleet_key;

/* The job hash also holds the job's input (msgpack), cut into fields in1..inN with N in
 * field in_n, so that a queued job is one key (shared/scripts/lib.lua, docs/redis.md). */
fleet_key fleet_key_job(const fleet_keys *k, const char *id); /* hash   */
/* "{prefix}:job:": what fleet_key_job() puts before the id (for scripts that scan ids). */
fleet_key fleet_key_job_prefix(const fleet_keys *k);
/* What fleet_key_result() puts after fleet_key_job(): the script that finishes a batch of
 * jobs builds the result keys from the job prefix, the id and this suffix, all within the
 * fleet's hash tag. */
#define FLEET_KEY_RESULT_SUFFIX ":result"
fleet_key fleet_key_result(const fleet_keys *k, const char *id); /* string, msgpack */
/* A job's partial outputs (emit.lua, docs/protocol.md "Partial outputs"): a list of
 * "<attempt> <msgpack>" entries in emit order, living as long as the job hash. The scripts
 * that end, delete, evict or retry a job build it from the job key and this suffix
 * (lib.lua's OUTPUTS_SUFFIX spells it too). */
#define FLEET_KEY_OUTPUTS_SUFFIX ":outputs"
fleet_key fleet_key_outputs(const fleet_keys *k, const char *id); /* list */
/* A job's tombstone: "<expired_at_ms> <status> <tenant>" from the moment its keys get their
 * final TTL until a while (FLEET_TOMBSTONE_S) after they expire, so that its id answers 410
 * Gone instead of 404 (lib.lua's end_job writes it; get.lua reads it). */
/* Tombstones (docs/redis.md): a hash per bucket of job ids, field <job id>, value
 * "<expired_at_ms> <gone_at_ms> <status> <tenant>"; the bucket is the id's first
 * FLEET_GONE_BUCKET_LEN characters (32.768 s of creation time), so that a batch of jobs
 * that end together writes its tombstones with one HSET (lib.lua's end_job). */
#define FLEET_GONE_BUCKET_LEN 7
fleet_key fleet_key_gone(const fleet_keys *k, const char *id); /* hash: the id's bucket */
fleet_key fleet_key_gone_prefix(const fleet_keys *k);          /* "{prefix}:gone:" */
/* A tenant with max_finished or max_bytes (tenant.h): its finished jobs in finish order,
 * "<id> <finished_ms> <bytes>" (list), and the sum of their bytes (string, the list's key
 * and this suffix: lib.lua's KEPT_BYTES_SUFFIX spells it too). */
#define FLEET_KEY_KEPT_BYTES_SUFFIX ":bytes"
fleet_key fleet_key_kept(const fleet_keys *k, const char *tenant);       /* list */
fleet_key fleet_key_kept_bytes(const fleet_keys *k, const char *tenant); /* string */
fleet_key fleet_key_kept_prefix(const fleet_keys *k);                    /* "{prefix}:kept:" */
fleet_key fleet_key_stream(const fleet_keys *k, const char *model);      /* stream */
fleet_key fleet_key_queues(const fleet_keys *k); /* hash: <model>:seq, <model>:head */
/* The queues hash's field <model>:paused_ms marks a model paused on that shard (pause.lua,
 * which spells it too, as claim.lua, feed.lua and models.lua do). */
#define FLEET_KEY_PAUSED_SUFFIX ":paused_ms"
fleet_key fleet_key_stats(const fleet_keys *k);  /* hash: <model>:<counter> */
fleet_key fleet_key_index(const fleet_keys *k, const char *tenant); /* stream: j = job id */
fleet_key fleet_key_workers(const fleet_keys *k);                   /* control zset of heartbeats */
fleet_key fleet_key_worker(const fleet_keys *k, const char *name);  /* control hash, TTL */
fleet_key fleet_key_worker_prefix(const fleet_keys *k);             /* "{prefix}:worker:" */
fleet_key fleet_key_events(const fleet_keys *k);                    /* control pub/sub channel */
/* The shard table (shards.h), a control string. */
fleet_key fleet_key_shards(const fleet_keys *k);
/* The models the fleet serves (docs/redis.md): field <model>, value a JSON record
 * {"created_ms", "registered_by", "description"}. Written by a worker's start (HSETNX) and
 * fleetctl model; read by gateways, which accept jobs for the models named there. */
fleet_key fleet_key_models(const fleet_keys *k); /* control hash: model -> record */
/* A line "models <model>" on the events channel says that the model's record was added or
 * removed, so gateways read the records again. Its first word is no job id: readers skip
 * such lines (docs/protocol.md, "Events"). */
#define FLEET_EVENT_MODELS "models"
/* Reliability (docs/reliability.md): */
fleet_key fleet_key_entries(const fleet_keys *k,
                            const char *model); /* hash: stream entry id -> job id */
fleet_key fleet_key_delayed(const fleet_keys *k,
                            const char *model); /* zset: job id by retry time */
fleet_key fleet_key_dlq(const fleet_keys *k);   /* stream: dead-lettered jobs */
fleet_key fleet_key_control(const fleet_keys *k, const char *worker); /* control pub/sub */
fleet_key fleet_key_control_prefix(const fleet_keys *k);              /* "{prefix}:control:" */
/* Tenants and API keys (docs/security.md): */
fleet_key fleet_key_tenants(const fleet_keys *k);               /* control set: tenant names */
fleet_key fleet_key_tenant(const fleet_keys *k, const char *t); /* control hash: settings */
fleet_key fleet_key_tenant_prefix(const fleet_keys *k);         /* control "{prefix}:tenant:" */
fleet_key fleet_key_tenant_keys(const fleet_keys *k, const char *t); /* control set: key hashes */
/* "{tag}:tenant:": what fleet_key_index puts before the tenant's name, on the shard's tag. */
fleet_key fleet_key_index_prefix(const fleet_keys *k);
fleet_key fleet_key_tenant_active(const fleet_keys *k,
                                  const char *t);       /* zset: queued+running ids */
fleet_key fleet_key_active_prefix(const fleet_keys *k); /* "{prefix}:active:" */
fleet_key fleet_key_tenant_bucket(const fleet_keys *k,
                                  const char *t);                  /* hash: submit rate bucket */
fleet_key fleet_key_apikey(const fleet_keys *k, const char *hash); /* control hash: tenant, role */
fleet_key fleet_key_idempotency(const fleet_keys *k, const char *t, const char *hash); /* hash */
/* Fair share (feed.lua): the tenants with jobs waiting for a model, and their wait lists.
 * A tenant's waiting jobs for a model are in three lists of job ids, one per priority rank
 * (0 high, 1 normal, 2 low), "{prefix}:wait:<model>:<tenant>:<rank>", each in submit order.
 * The waiting list names each tenant once, as "{prefix}:wait:<model>:<tenant>:" (the lists'
 * common stem: feed.lua appends the rank). feed.lua's wait lists are the one case of a key
 * read from data rather than taken in KEYS or built from a prefix (submit.lua builds the
 * other ranks' lists from the one in its KEYS, cancel.lua from the wait prefix), all in
 * the fleet's hash tag. An entry without the trailing ':' names a wait set of protocol 2
 * (a sorted set), which feed.lua still drains (docs/redis.md). */
fleet_key fleet_key_waiting(const fleet_keys *k, const char *model); /* list: wait stems */
fleet_key fleet_key_wait(const fleet_keys *k, const char *model, const char *tenant,
                         int rank); /* list: job ids; rank 0..2 (another: 1) */
/* "{prefix}:wait:": cancel.lua builds a job's wait list key from it, "<model>:<tenant>:<rank>". */
fleet_key fleet_key_wait_prefix(const fleet_keys *k);
/* Webhooks (docs/webhooks.md): */
fleet_key fleet_key_webhooks(const fleet_keys *k);                  /* stream: delivery tasks */
fleet_key fleet_key_delivery(const fleet_keys *k, const char *msg); /* hash, TTL: one delivery */
fleet_key fleet_key_delivery_prefix(const fleet_keys *k);           /* "{prefix}:delivery:" */
fleet_key fleet_key_webhook_retry(const fleet_keys *k);             /* zset: msg ids by due time */
fleet_key fleet_key_webhook_dlq(const fleet_keys *k);               /* stream: failed deliveries */
/* Metrics (docs/metrics.md): the histograms a model's workers report (job wait and run
 * times, batch sizes), as bucket counts added by each worker every few seconds. */
fleet_key fleet_key_metrics(const fleet_keys *k, const char *model); /* control hash, TTL */
fleet_key fleet_key_metrics_prefix(const fleet_keys *k);             /* "{prefix}:metrics:" */

#endif
