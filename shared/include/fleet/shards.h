/* shards.h: a fleet spread over several hash tags (docs/scaling.md).
 *
 * Every script touches keys of one hash tag only, so the tag is the unit a Redis Cluster
 * can place on a master: a *shard*. Shard 0 is the tag "{prefix}", the layout of a fleet
 * that has one shard (no table), and the *control* tag: what is global lives there and
 * only there (tenants, API keys, models, workers, the shard table, the events and control
 * channels, the metrics histograms). Every job lives wholly in one shard: its hash,
 * result, outputs, tombstone, its model's stream and queues there, its tenant's wait
 * lists, submit index, active set and rate bucket there, the shard's dead-letter and
 * webhook streams. Shard k > 0 has the tag "{prefix:N}", N its tag number, chosen when
 * the shard was made so that the tag lands on a given master (fleet_shards_free_tag).
 *
 * A job id carries its shard: the id's first character is the shard number k (0..7). A
 * ULID's first character holds the top 3 bits of its 48-bit time, '0' until the year 3084,
 * so every id made before shards existed names shard 0, where its keys are, and ids stay
 * valid ULIDs (first character at most '7', as fleet_job_id_valid and ULID libraries
 * require): hence at most 8 shards (docs/scaling.md). Within a shard ids
 * still sort by creation time; across shards, compare from the second character
 * (fleet_id_cmp_time).
 *
 * The table is one string at the control key FLEET_KEY_SHARDS (keys.h), written by
 * fleetctl shards and, when absent, by the first gateway started with FLEET_SHARDS (or
 * on a cluster); readable with redis-cli GET: entries "k:N:state" separated by spaces,
 * state "active" (takes new jobs) or "draining" (takes none; workers still read it until
 * it is empty). Shard 0 is "0:-:active" unless the table says it drains. No table: one
 * shard, 0, active.
 */
#ifndef FLEET_SHARDS_H
#define FLEET_SHARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/keys.h"

#define FLEET_SHARDS_MAX 8 /* the id's first character, 0..7 */
#define FLEET_SHARDS_TEXT_MAX (FLEET_SHARDS_MAX * 24)
/* The line on the events channel (keys.h fleet_key_events) that says the table changed:
 * readers load it again. */
#define FLEET_EVENT_SHARDS "shards"

typedef struct fleet_shard {
    bool used;     /* this k is in the table */
    bool draining; /* takes no new job */
    long tag;      /* N of "{prefix:N}"; -1 for shard 0's "{prefix}" */
    fleet_keys keys;
} fleet_shard;

typedef struct fleet_shards {
    char prefix[FLEET_PREFIX_MAX + 1];
    fleet_keys control;                  /* "{prefix}" */
    fleet_shard shard[FLEET_SHARDS_MAX]; /* by k */
    size_t n;                            /* shards in the table (used) */
    size_t n_active;                     /* of which take new jobs */
    int active[FLEET_SHARDS_MAX];        /* their k, ascending */
    int all[FLEET_SHARDS_MAX];           /* every used k, ascending (workers read these) */
} fleet_shards;

/* One shard, 0, active: a fleet without a table. Returns 0, or -1 for a bad prefix. */
int fleet_shards_init(fleet_shards *s, const char *prefix);

/* Reads the table's text (NULL or "": one shard) into s, whose control tag is already set
 * by fleet_shards_init. Returns 0, or -1 with why (s is then unchanged). A valid table has
 * at least one active shard, no k twice, k in 0..7, and N >= 0 for k > 0. */
int fleet_shards_parse(fleet_shards *s, const char *text, char *why, size_t whylen);

/* Writes s as the table's text (ascending k). Returns the length, or -1 if it does not fit. */
int fleet_shards_format(const fleet_shards *s, char *out, size_t outlen);

/* Adds shard k with tag N (active). Returns 0, or -1 when k is taken or out of range. */
int fleet_shards_add(fleet_shards *s, int k, long tag);
/* Marks shard k draining (or active again). Returns 0, or -1 when k is not in the table or
 * it is the last active shard. */
int fleet_shards_set_draining(fleet_shards *s, int k, bool draining);

/* The shard of a job id (its first character), or -1 when that names no shard in s. */
int fleet_shards_of_id(const fleet_shards *s, const char *id);
/* The keys of the shard that holds job id, or NULL when it names no shard in s. */
const fleet_keys *fleet_shards_keys_of_id(const fleet_shards *s, const char *id);

/* Marks a fresh id (fleet_id_new) as shard k's: sets its first character. */
void fleet_id_set_shard(char id[27], int k);
/* Compares two ids by creation time (then by the rest), ignoring the shard character:
 * the order of a list merged across shards. */
int fleet_id_cmp_time(const char *a, const char *b);

/* The share of a limit `total` that active shard number `i` (0..n_active-1 in
 * s->active order) enforces, so that the shares add up to total exactly: total / n, and
 * one more for total % n of the shards, rotated by `salt` (a hash of the tenant or model)
 * so that small limits do not all land on the same shard. A limit of 0 (none) is 0. */
long long fleet_shard_share(long long total, size_t n, size_t i, uint32_t salt);

/* The largest tag number a table takes. */
#define FLEET_SHARD_TAG_MAX 999999

/* The smallest tag number N >= from that no shard of s uses and, when master_of is not
 * NULL, whose tag "{prefix:N}" hashes to a slot of master `master` (master_of(slot, arg)
 * says which master holds a slot, -1 for none): how the gateway and fleetctl place a new
 * shard on a cluster. Returns N, or -1 when none is at most FLEET_SHARD_TAG_MAX. */
long fleet_shards_free_tag(const fleet_shards *s, long from, int (*master_of)(int slot, void *arg),
                           void *arg, int master);

#endif
