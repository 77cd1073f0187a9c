/* health.c: whether the main thread may take new jobs from its Redis now.
 *
 * Two things keep a worker from claiming (docs/reliability.md, "A sick Redis"):
 *
 *  - a maxmemory-policy that evicts keys. Every key of fleet has a TTL, so even the
 *    volatile-* policies delete jobs, their inputs and API keys of a full Redis. The
 *    worker reads the policy with INFO memory (which works where CONFIG is renamed) at
 *    each connect and every HEALTH_LOOK_MS, logs an error that says what to set at most
 *    once a minute, and claims nothing until the policy is noeviction, unless the
 *    operator said --allow-eviction (FLEET_ALLOW_EVICTION=on);
 *  - a full Redis (used_memory at maxmemory, or a command refused with OOM): a claimed
 *    job could not be finished, so it would only hold a lease. The worker looks again
 *    every second and claims once there is room.
 *
 * A command of the main thread that Redis refuses for now (LOADING, BUSY, MASTERDOWN,
 * READONLY, TRYAGAIN, CLUSTERDOWN, or OOM) pauses it with a backoff of 100 ms doubling to
 * 2 s; the warning about it is written at most every REFUSED_LOG_MS, with a count.
 */
#include <stdio.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

#define HEALTH_LOOK_MS 10000L /* while claims are allowed */
#define HELD_LOOK_MS 1000L    /* while claims are held */
#define POLICY_LOG_MS 60000L
#define REFUSED_LOG_MS 5000L
#define PAUSE_MIN_MS 100L
#define PAUSE_MAX_MS 2000L

bool wk_reply_refused(const redisReply *r) {
    fleet_redis_err e = fleet_redis_err_of(r);
    return e == FLEET_REDIS_TRANSIENT || e == FLEET_REDIS_OOM;
}

/* log_policy says, at most once a minute, what an evicting policy does to fleet. */
static void log_policy(wk_worker *w, long long now) {
    wk_health *h = &w->health;
    if (h->policy_logged_mono != 0 && now - h->policy_logged_mono < POLICY_LOG_MS) return;
    h->policy_logged_mono = now;
    if (w->cfg.allow_eviction)
        fleet_log(FLEET_LOG_WARN,
                  "redis maxmemory-policy evicts keys: a full Redis will delete jobs and their "
                  "inputs; running anyway because FLEET_ALLOW_EVICTION=on",
                  "maxmemory_policy", h->mem.policy, NULL);
    else
        fleet_log(FLEET_LOG_ERROR,
                  "redis maxmemory-policy evicts keys: a full Redis would delete jobs and their "
                  "inputs; set maxmemory-policy noeviction (or FLEET_ALLOW_EVICTION=on to accept "
                  "losing jobs); taking no new jobs until then",
                  "maxmemory_policy", h->mem.policy, NULL);
}

/* look reads INFO memory and updates what the worker knows. */
static void look(wk_worker *w, long long now) {
    wk_health *h = &w->health;
    bool was_full = h->full;
    redisReply *r = wk_redis_cmdf(&w->rd, NULL, "INFO memory");

    h->epoch = w->rd.epoch;
    if (!r) return; /* connection lost: the next turn reconnects, and looks again */
    if (r->type == REDIS_REPLY_ERROR) {
        wk_health_refused(w, r, "INFO memory");
        freeReplyObject(r);
        return;
    }
    fleet_redis_memory m;
    if (r->type != REDIS_REPLY_STRING || fleet_redis_memory_parse(r->str, r->len, &m) < 0) {
        /* Without the policy the worker cannot tell; it runs, and says so once. */
        if (!h->unknown_logged)
            fleet_log(FLEET_LOG_WARN,
                      "INFO memory shows no maxmemory_policy; cannot check that Redis keeps "
                      "jobs when it is full",
                      NULL);
        h->unknown_logged = true;
        freeReplyObject(r);
        h->next_look_mono = now + HEALTH_LOOK_MS;
        return;
    }
    freeReplyObject(r);
    bool policy_changed = strcmp(m.policy, h->mem.policy) != 0;
    h->mem = m;
    h->evicts = fleet_redis_policy_evicts(m.policy);
    if (policy_changed) h->policy_logged_mono = 0; /* a new policy is reported at once */
    if (h->evicts) log_policy(w, now);
    else if (policy_changed && h->known)
        fleet_log(FLEET_LOG_INFO, "redis maxmemory-policy is now noeviction", NULL);
    h->known = true;
    h->full = fleet_redis_memory_full(&m);
    if (h->full && !was_full) {
        char used[24], max[24];
        snprintf(used, sizeof used, "%llu", m.used);
        snprintf(max, sizeof max, "%llu", m.max);
        fleet_log(FLEET_LOG_WARN, "redis is full (used_memory at maxmemory): taking no new jobs",
                  "used_memory", used, "maxmemory", max, NULL);
    } else if (!h->full && was_full) {
        fleet_log(FLEET_LOG_INFO, "redis has room again: taking jobs", NULL);
    }
    bool held = h->full || (h->evicts && !w->cfg.allow_eviction);
    h->next_look_mono = now + (held ? HELD_LOOK_MS : HEALTH_LOOK_MS);
}

bool wk_health_may_claim(wk_worker *w) {
    wk_health *h = &w->health;
    long long now = wk_mono_ms();
    if (now < h->pause_until_mono) return false;
    if (h->epoch != w->rd.epoch || now >= h->next_look_mono) look(w, now);
    if (now < h->pause_until_mono) return false; /* the look itself was refused */
    return !h->full && !(h->evicts && !w->cfg.allow_eviction);
}

long wk_health_wait_ms(const wk_worker *w) {
    const wk_health *h = &w->health;
    long long now = wk_mono_ms();
    long long until = h->pause_until_mono > now ? h->pause_until_mono : h->next_look_mono;
    long long d = until - now;
    return d < 1 ? 1 : d > HELD_LOOK_MS ? HELD_LOOK_MS : (long)d;
}

bool wk_health_refused(wk_worker *w, const redisReply *r, const char *what) {
    wk_health *h = &w->health;
    if (!wk_reply_refused(r)) {
        h->pause_ms = 0; /* Redis answered: the next refusal starts the backoff afresh */
        return false;
    }
    fleet_redis_err e = fleet_redis_err_of(r);
    long long now = wk_mono_ms();
    h->pause_ms = wk_backoff_next(h->pause_ms, PAUSE_MIN_MS, PAUSE_MAX_MS);
    h->pause_until_mono = now + h->pause_ms;
    if (e == FLEET_REDIS_OOM) {
        h->full = true; /* until a look says there is room */
        if (h->next_look_mono > now + HELD_LOOK_MS) h->next_look_mono = now + HELD_LOOK_MS;
    }
    long count;
    if (wk_ratelog_due(&h->refused_log, REFUSED_LOG_MS, &count)) {
        char n[24];
        snprintf(n, sizeof n, "%ld", count);
        fleet_log(FLEET_LOG_WARN, "redis refused a command for now; retrying with backoff",
                  "command", what, "kind", fleet_redis_err_name(e), "error", r->str, "count", n,
                  NULL);
    }
    return true;
}
