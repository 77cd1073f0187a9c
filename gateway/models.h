/* models.h: the models this gateway accepts jobs for.
 *
 * The models a fleet serves are records in {prefix}:models (docs/redis.md): a worker's
 * start writes its model's record unless one exists, `fleetctl model add` writes one, and
 * only `fleetctl model remove` deletes one, so a model stays registered while no worker
 * runs and jobs queue for it (scale from zero). The gateway keeps a copy of the registered
 * names and of the models live workers serve, read with the models script (state.h):
 *
 *   - at start: /readyz answers 503 until the first read came back;
 *   - at once when a line "models <name>" arrives on the events channel (events.h: a
 *     record was added or removed), and after every resubscribe (a message lost while
 *     the subscription was down);
 *   - when a submit finds the last read older than GW_MODELS_REFRESH_MS, or names a model
 *     the copy does not accept and the last read is older than GW_MODELS_MISS_MS: live
 *     workers come and go without a message, and a worker of the previous release
 *     registers its model only in its heartbeat hash (docs/protocol.md). The submit itself
 *     is answered from the copy it found; the read serves the next ones;
 *   - whenever GET /v1/models reads the same script (info.c).
 * A read that cannot be sent (Redis not ready) or gets no usable answer is tried again
 * after GW_MODELS_RETRY_MS, doubling up to GW_MODELS_REFRESH_MS, until one succeeds. An
 * idle gateway thus reads nothing once a read succeeded (idle_test): no timer polls Redis.
 *
 * Which models are accepted: with FLEET_MODELS set (an allowlist), exactly those, registered
 * or not; unset (""), every registered model and every model a live worker serves. Any
 * other is refused with a 422 unknown-model problem that names the accepted ones.
 *
 * One read is in flight at a time; a wake-up meanwhile makes one more read after it.
 */
#ifndef GW_MODELS_H
#define GW_MODELS_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>

#include "gateway.h"
#include "job_body.h"

#define GW_MODELS_REFRESH_MS 5000 /* a submit reads again after this long */
#define GW_MODELS_MISS_MS 1000    /* a submit of a model not accepted, after this long */
#define GW_MODELS_RETRY_MS 100    /* a failed read's first retry */

struct gw_req;

/* allowlist: FLEET_MODELS, comma-separated model names, or "" for none. Returns NULL
 * with err filled for a name that is not valid (or out of memory). */
gw_models *gw_models_new(gw *g, const char *allowlist, char *err, size_t errlen);
/* Accepts NULL. Call after gw_redis_free (its pending read is answered then). */
void gw_models_free(gw_models *m);

/* Reads the records and live workers again: now, or once more after the read in flight. */
void gw_models_refresh(gw_models *m);
/* gw_models_refresh for a gw_wake_cb (events.h); arg is the gw_models. */
void gw_models_wake(void *arg);
/* Takes a models script reply's workers and records (fleet_state_models_reply). */
void gw_models_update(gw_models *m, const redisReply *workers, const redisReply *records);
/* The first read came back: the answers below reflect Redis. */
bool gw_models_loaded(const gw_models *m);
/* An allowlist was given (FLEET_MODELS). */
bool gw_models_allowlist(const gw_models *m);

/* Whether a submit for name is accepted (see above). */
bool gw_models_accepts(const gw_models *m, const char *name);
/* The model's record in {prefix}:models as last read (a JSON object), or NULL when it is
 * not registered. Borrowed: valid until the next read comes back. */
const json_t *gw_models_record(const gw_models *m, const char *name);
/* How many live workers served it at the last read. */
int gw_models_live_workers(const gw_models *m, const char *name);
/* Every model the gateway knows (allowlisted, registered, served by a live worker), as
 * the keys of a borrowed object, valid until the next read comes back. */
const json_t *gw_models_names(const gw_models *m);

/* Returns 0 when the model is accepted, else -1 with p the 422 unknown-model problem
 * naming the models that are. Starts a read when the copy is old (above). */
int gw_models_check(gw_models *m, const char *name, gw_problem *p);
/* An accepted submit for a model no live worker served at the last read: adds the header
 * `Fleet-No-Worker: true` to the answer and, when body is not NULL, the fields
 * "no_worker": true and "notice" (docs/api.md). Nothing otherwise. */
void gw_models_note(struct gw_req *r, const char *name, json_t *body);

#endif
