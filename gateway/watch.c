/* watch.c: one job watched on the events subscription, read on each wake-up (watch.h). */
#include "watch.h"

#include <stdio.h>

#include "redis.h"

static void on_read(redisReply *rep, void *arg) {
    gw_watch *w = arg;
    w->reading = false;
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (!w->cb(w->arg, rep, found, found > 0 ? &v : NULL)) return; /* w may be gone */
    if (w->again) gw_watch_read(w);
}

void gw_watch_read(gw_watch *w) {
    if (w->stopped) return;
    if (w->reading) {
        w->again = true;
        return;
    }
    w->again = false;
    fleet_state_get(&w->keys, w->id, w->tenant, &w->cmd);
    w->reading = true;
    if (gw_redis_script(w->g->redis, &w->cmd, on_read, w) < 0) on_read(NULL, w);
}

static void on_wake(void *arg) { gw_watch_read(arg); }

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_watch_read(arg);
}

int gw_watch_start(gw_watch *w, gw *g, const char *id, const char *tenant, gw_watch_cb cb,
                   void *arg) {
    *w = (gw_watch){.g = g, .cb = cb, .arg = arg};
    snprintf(w->id, sizeof w->id, "%s", id);
    /* The owners checked that the id names a shard (gw_job_keys); were it dropped from the
     * table since, shard 0's keys read the job as missing (404). */
    const fleet_keys *jk = fleet_shards_keys_of_id(&g->shards, id);
    w->keys = jk ? *jk : g->shards.shard[0].keys;
    snprintf(w->tenant, sizeof w->tenant, "%s", tenant);
    w->safety = event_new(g->base, -1, EV_PERSIST, on_tick, w);
    if (!w->safety) {
        w->stopped = true;
        return -1;
    }
    struct timeval tick = {GW_WATCH_SAFETY_MS / 1000, (GW_WATCH_SAFETY_MS % 1000) * 1000};
    evtimer_add(w->safety, &tick);
    gw_events_watch(g->events, &w->waiter, id, on_wake, w);
    gw_watch_read(w);
    return 0;
}

void gw_watch_stop(gw_watch *w) {
    w->stopped = true;
    if (w->g) gw_events_unwatch(w->g->events, &w->waiter);
    if (w->safety) event_free(w->safety);
    w->safety = NULL;
}

bool gw_watch_reading(const gw_watch *w) { return w->reading; }
