/* shards.h: the gateway's copy of the shard table, and where a submit goes
 * (shared/include/fleet/shards.h has the model; docs/api.md "Shards and quotas" the rules;
 * docs/scaling.md the rest).
 *
 * The table: g->shards holds the last table read from "{prefix}:shards". It is read
 *   - when the Redis link first becomes usable (retried with backoff, like models.h, until
 *     a read succeeds): until then /readyz answers 503 and submits 503 redis-unavailable;
 *   - at once on a line "shards" on the events channel (FLEET_EVENT_SHARDS) and after
 *     every resubscribe (a line may have been missed).
 * When the key is absent and this gateway was started with FLEET_SHARDS > 1, or runs on a
 * Redis Cluster (FLEET_REDIS_CLUSTER; FLEET_SHARDS unset or 0 there means one shard per
 * master, at most FLEET_SHARDS_MAX), it writes a table with SET NX and then reads what
 * is there: the first writer wins, so gateways that start together agree. Tags: without a cluster shard k has tag k;
 * on a cluster fleet_shards_free_tag over the CLUSTER SLOTS map (shard 0 stays on the
 * master of "{prefix}", shards 1.. go to the others, then round-robin). Absent and no
 * FLEET_SHARDS: one shard, 0, nothing written. A table that does not parse is logged as an
 * error; the gateway keeps the table it had (none at start: not ready) and /readyz says
 * why until a good one is read.
 *
 * Submits (gw_place_*): with one active shard nothing is chosen and every limit is the
 * tenant's own, so the one-shard submit is the code path it always was. With several:
 *   - without Idempotency-Key: the less loaded of two random active shards, load being
 *     the queue_position that shard last answered this gateway for the model (unknown
 *     counts as 0; a tie takes the first);
 *   - with one: active[crc16(tenant " " key-hash) % n_active], and only that shard, so
 *     that a retry finds its record;
 *   - each shard enforces its share of each limit (fleet_shard_share, salt crc16 of the
 *     tenant, of the model for the queue limit); a shard whose share of a limit that is on
 *     is 0 is not tried; a submit refused by a limit is tried on the next active shards in
 *     turn, each once, and answered with the refusal whose retry_after is smallest when
 *     every shard refused. Storage limits are ceil(total / n_active) per shard.
 */
#ifndef GW_SHARDS_H
#define GW_SHARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/shards.h"
#include "fleet/state.h"
#include "gateway.h"

#define GW_SHARDS_RETRY_MS 100 /* a failed read's first retry (doubling) */
#define GW_SHARDS_RETRY_MAX_MS 2000

typedef struct gw_shard_table gw_shard_table;

/* want: FLEET_SHARDS (0: not set). Starts reading once Redis is usable. NULL: out of memory. */
gw_shard_table *gw_shards_new(gw *g, long want);
/* Accepts NULL. Call after gw_redis_free (its read in flight is answered there). */
void gw_shards_free(gw_shard_table *t);
/* Reads the table again: now, or once more after the read in flight. */
void gw_shards_refresh(gw_shard_table *t);
/* gw_shards_refresh for a gw_wake_cb (events.h); arg is the gw_shard_table. */
void gw_shards_wake(void *arg);
/* The keys of job id's shard; NULL (and r answered 404 job-not-found, as for an unknown
 * job) when its first character names no shard of the table. */
struct gw_req;
const fleet_keys *gw_job_keys(struct gw_req *r, const char *id);
/* NULL when a table was read and the last one read parsed; else why not, for /readyz. */
const char *gw_shards_unready(const gw_shard_table *t);
/* A table was read: g->shards reflects Redis (submits wait for this). */
bool gw_shards_loaded(const gw_shard_table *t);

/* Shard k's share of a limit `total` (0: none): the whole with one active shard; an active
 * shard's fleet_shard_share, salted with crc16 of tenant (NULL: the model's limit, whose
 * salt a retry does not know: the smallest share, total / n_active); a draining shard's
 * total / n_active. What a retry enforces on the job's shard. */
long long gw_shard_share(const gw *g, int k, long long total, const char *tenant);

/* ------------------------------------------------------------ placing a submit ------ */

/* Where one submit is being tried. Lives beside its command (jobs.c, submit_batch.c). */
typedef struct gw_place {
    fleet_submit s;       /* the submit with the tenant's whole limits */
    char *id;             /* the job id s->id points to: its first character names k */
    const char *rid;      /* NULL, or the request's id when the job stores none because
                              * its id is the request id's ULID (jobs.c): a job placed on
                              * another shard than 0 then stores it, its id no longer
                              * spelling it */
    int k;                /* the shard the command in flight was built for */
    int first;            /* index in active[] of the first shard tried */
    int tried;            /* how many of active[] were looked at */
    bool only;            /* Idempotency-Key: its one shard */
    bool refused;         /* a limit refused on some shard: best holds the answer */
    fleet_submitted best; /* of the refusals, the one with the smallest retry_after */
} gw_place;

/* Picks the first shard of a submit s (s->id == id, a fresh id; s->idem_hash its key's
 * hash or NULL; rid as in gw_place), marks id with it and builds cmd with that shard's
 * keys and shares. Returns 0, or -1 when no shard it may try has a share of every limit that is on
 * (then *refusal holds that limit, as a script's refusal would say it). */
int gw_place_first(gw *g, gw_place *pl, const fleet_submit *s, char *id, const char *rid,
                   fleet_cmd *cmd, fleet_submitted *refusal);
/* After a limit refusal `out` of the shard in flight: builds cmd for the next shard to try
 * and returns 0, or returns -1 when none is left (then pl->best is the answer). */
int gw_place_next(gw *g, gw_place *pl, const fleet_submitted *out, fleet_cmd *cmd);
/* After the shard in flight refused the submit with nothing written for another reason
 * (its master has fewer replicas online than FLEET_REDIS_WAIT_REPLICAS asks for, as after
 * a failover): builds cmd for the next shard to try and returns 0, or -1 when none is left
 * or the submit may go to one shard only (an Idempotency-Key). */
int gw_place_elsewhere(gw *g, gw_place *pl, fleet_cmd *cmd);
/* An Idempotency-Key's record can sit on any shard of the table: on the shard its key
 * maps to now, on another that took the submit when that one refused it, or where the key
 * mapped before the active set changed. So with more than one shard a submit with a key
 * first looks for its record on every shard (jobs.c), then: */
/* ... found on shard k: the submit goes there, and only there (its script replays the
 * job, or answers the conflict). A shard without a share of a limit, or a draining one,
 * gets the tenant's whole limits: its script meets the record before any limit, so they
 * count only for a record whose job had expired (the record expires with its job).
 * Returns 0, or -1 when k is not in the table (cmd unchanged). */
int gw_place_at(gw *g, gw_place *pl, int k, fleet_cmd *cmd);
/* ... found nowhere: the submit goes to the key's shard first, and may go on to the
 * others as one without a key does (a limit's share, a master that cannot take a write):
 * a retry then finds the record wherever the job went. */
void gw_place_unpin(gw_place *pl);
/* A queued answer: notes the shard's queue position for the model (the load of the next
 * choice). No-op with one active shard. */
void gw_place_note(gw *g, const gw_place *pl, long long queue_position);

#endif
