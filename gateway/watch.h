/* watch.h: one job watched by a request that holds on (wait.c: Prefer: wait; sse.c: an
 * event stream).
 *
 *   gw_watch_start ──▶ read the job ──▶ cb(found, view) ── true: keep watching
 *                         ▲                              └─ false: the owner is done
 *                         └── a wake-up for this job (events.h), a resubscribe, the
 *                             safety tick (every GW_WATCH_SAFETY_MS), gw_watch_read
 *
 * The waiter is registered before the first read, so a job that changes between the
 * owner's own write (a submit) and the watch is seen either by that read or by the
 * wake-up its change publishes. One read is in flight at a time: a wake-up during a read
 * makes one more read after it, so the last change is always read. The tick reads even
 * without a wake-up: pub/sub may drop a message while its connection is lost.
 *
 * Ownership: the owner embeds the gw_watch in its own state. Every read started calls cb
 * exactly once, also after gw_watch_stop (so that the owner can free itself then);
 * gw_watch_reading says whether one is in flight. A read that cannot be sent (Redis not
 * ready) calls cb at once with found -2.
 */
#ifndef GW_WATCH_H
#define GW_WATCH_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "events.h"
#include "fleet/state.h"
#include "gateway.h"

#define GW_WATCH_SAFETY_MS 2000

/* A read of the job came back. found: 1 (v holds the job, valid during the call), 0 (no
 * such job for the tenant, or expired), -1 (a refusal or an unexpected answer: rep), -2
 * (no reply: Redis unreachable or not ready; rep NULL). Returns true to keep watching;
 * false when the owner stopped the watch (it may have freed the watch's memory). */
typedef bool (*gw_watch_cb)(void *arg, const redisReply *rep, int found, const fleet_job_view *v);

typedef struct gw_watch {
    gw *g;
    char id[FLEET_ID_LEN + 1];
    fleet_keys keys; /* the job's shard's (shards.h) */
    char tenant[FLEET_TENANT_MAX + 1];
    gw_watch_cb cb;
    void *arg;
    gw_waiter waiter;
    fleet_cmd cmd; /* the read in flight */
    struct event *safety;
    bool reading, again, stopped;
} gw_watch;

/* Watches job id for tenant and starts the first read. Call it last: cb may run before
 * this returns (found -2) and end the owner. Returns 0, or -1 out of memory (nothing
 * registered, cb not called). */
int gw_watch_start(gw_watch *w, gw *g, const char *id, const char *tenant, gw_watch_cb cb,
                   void *arg);
/* Reads the job now, or once more after the read in flight. Nothing once stopped. */
void gw_watch_read(gw_watch *w);
/* No more reads: unregisters the waiter and the tick. A read in flight still calls cb.
 * Safe to call twice, and on a zeroed gw_watch that was never started. */
void gw_watch_stop(gw_watch *w);
bool gw_watch_reading(const gw_watch *w);

#endif
