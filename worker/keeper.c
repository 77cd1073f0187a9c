/* keeper.c: the keeper thread. It has its own Redis connection so that it keeps working
 * while the main thread is inside a model's run_batch, which may not call back for a long
 * time:
 *
 *  - registration: every HEARTBEAT_MS (and on a poke from the main loop, at most once a
 *    second) ZADD workers <now_ms> <name> and HSET worker:<name> {model, backend, ...,
 *    protocol} with EXPIRE, then drop entries of workers silent for a minute. /v1/models counts
 *    live workers from these keys. On a clean exit it removes its own entries.
 *  - leases: every WATCH_MS while a batch runs, it renews each running job's lease (and
 *    keeps its stream entry fresh), so a live worker's job is never taken over however
 *    long it runs; the answer also says when a cancel was requested or the lease was lost,
 *    which stops the job at the model's next cancelled() call, even when the model
 *    reports progress rarely. A worker that dies stops renewing: after lease_ms its jobs
 *    are taken over by the others (loop.c).
 *    The leases are renewed until the batch's results are written, also while a full
 *    Redis refuses the finish (the renew script is allow-oom), so a finished job is not
 *    taken over and run again while its worker waits for room.
 *  - metrics: every WK_METRICS_FLUSH_MS, and once more on the way out, it adds the
 *    histogram counts the main thread gathered to the model's metrics hash (metrics.c).
 *  - tidying: now and then it deletes consumers of the group that have been idle for
 *    long and hold no pending entries (workers that died), so the group does not grow.
 *
 * Redis that refuses heartbeats for now (full, loading, busy) slows them down, from every
 * 2 s to every 8 s (the registration lives 30 s), and refusals are logged at most every
 * REFUSED_LOG_MS with a count.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet/id.h"
#include "fleet/log.h"
#include "fleet/model_record.h"
#include "worker.h"

#define HEARTBEAT_MS 2000L
#define HEARTBEAT_SLOW_MS \
    8000L /* after a refusal: under WORKER_KEY_TTL_S, so one that
                                 * lands keeps the registration alive */
#define REFUSED_LOG_MS 10000L
#define POKE_MIN_MS 1000L
#define WORKER_KEY_TTL_S 30
#define WORKER_GONE_MS 60000LL
#define WATCH_MS 1000L
#define SWEEP_MS 60000L
#define KEEPER_TIMEOUT_MS 5000L
/* A model gets this long past a job's timeout to stop it at a callback; then the keeper
 * ends the job in Redis itself (the model is stuck in a call that never calls back). */
#define TIMEOUT_GRACE_MS 5000LL

typedef struct watched {
    fleet_keys keys; /* the job's shard's */
    char id[FLEET_ID_LEN + 1];
    char token[WK_TOKEN_LEN + 1];
    long long deadline_mono; /* when the keeper ends the job itself (timeout); 0: never */
    long timeout_s;
    bool ended; /* the keeper ended it already */
    int stop;   /* bits found by this look */
} watched;

/* ---------------------------------------------------------------- registration ----- */

/* Redis's clock in ms (TIME), or -1 when the connection failed. Every worker scores the
 * workers set with the same clock, so one whose own clock runs ahead cannot prune the
 * others from it. */
static long long redis_now_ms(wk_redis *rd) {
    if (wk_redis_appendf(rd, "TIME") != 0) return -1;
    redisReply *r = wk_redis_get_reply(rd);
    long long ms = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* Refusals of the keeper's commands, logged at most every REFUSED_LOG_MS with a count. */
static void log_refused(wk_ratelog *rl, const char *what, const char *job_id, const redisReply *r) {
    long count;
    if (!wk_ratelog_due(rl, REFUSED_LOG_MS, &count)) return;
    char n[24];
    snprintf(n, sizeof n, "%ld", count);
    fleet_log(FLEET_LOG_WARN, what, "kind", fleet_redis_err_name(fleet_redis_err_of(r)), "error",
              r->str, "count", n, job_id ? "job_id" : NULL, job_id, NULL);
}

/* The connection (wk_redis epoch) on which the model's record was last written; only the
 * keeper thread touches it. */
static unsigned long model_registered_epoch;

/* register_model writes the model's record into {prefix}:models unless one is there
 * (HSETNX: the first registration's time and author stay, and a record `fleetctl model
 * remove` deleted stays deleted until a worker of the model starts again or reconnects),
 * and says so on the events channel when it was new, so gateways accept the model at
 * once. Once per connection: a Redis restarted without persistence gets it again. */
static void register_model(wk_worker *w, wk_redis *rd, long long now) {
    char by[sizeof w->host + 96]; /* a worker name is at most 64 characters */
    snprintf(by, sizeof by, "worker %.64s on %s", w->cfg.name, w->host);
    char *rec = fleet_model_record(now, by, NULL);
    if (!rec) return; /* out of memory: tried again at the next heartbeat */
    fleet_key models = fleet_key_models(&w->keys);
    redisReply *r = wk_redis_cmdf(rd, models.s, "HSETNX %s %s %s", models.s, w->cfg.model, rec);
    free(rec);
    if (!r) return;
    bool added = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    bool answered = r->type == REDIS_REPLY_INTEGER;
    if (!answered)
        fleet_log(FLEET_LOG_WARN, "model registration refused; trying again", "error",
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply", NULL);
    freeReplyObject(r);
    if (!answered) return;
    model_registered_epoch = rd->epoch;
    if (!added) return;
    fleet_log(FLEET_LOG_INFO, "model registered", "model", w->cfg.model, NULL);
    fleet_key events = fleet_key_events(&w->keys);
    char line[sizeof FLEET_EVENT_MODELS + FLEET_MODEL_MAX + 1];
    snprintf(line, sizeof line, FLEET_EVENT_MODELS " %s", w->cfg.model);
    if ((r = wk_redis_cmdf(rd, NULL, "PUBLISH %s %s", events.s, line))) freeReplyObject(r);
}

/* write_heartbeat registers this worker (and its model, once per connection). Returns
 * true when Redis refused it for now. */
static bool write_heartbeat(wk_worker *w, wk_redis *rd, wk_ratelog *rl) {
    long long now = redis_now_ms(rd);
    bool refused = false;
    if (now < 0) return false;
    if (model_registered_epoch != rd->epoch) register_model(w, rd, now);
    fleet_key wkeys = fleet_key_workers(&w->keys);
    fleet_key me = fleet_key_worker(&w->keys, w->cfg.name);
    int ok = 1;

    ok &= wk_redis_appendf(rd, "ZADD %s %lld %s", wkeys.s, now, w->cfg.name) == 0;
    ok &= wk_redis_appendf(rd,
                           "HSET %s model %s backend %s max_batch %lu pid %ld host %s "
                           "started_ms %lld last_seen_ms %lld jobs_done %ld busy %d protocol %d",
                           me.s, w->cfg.model, w->model->backend, (unsigned long)w->max_batch,
                           (long)getpid(), w->host, w->started_ms, now, atomic_load(&w->jobs_done),
                           atomic_load(&w->busy), FLEET_PROTOCOL_VERSION) == 0;
    ok &= wk_redis_appendf(rd, "EXPIRE %s %d", me.s, WORKER_KEY_TTL_S) == 0;
    ok &= wk_redis_appendf(rd, "ZREMRANGEBYSCORE %s -inf %lld", wkeys.s, now - WORKER_GONE_MS) == 0;
    for (int i = 0; ok && i < 4; i++) {
        redisReply *r = wk_redis_get_reply(rd);
        if (!r) return refused;
        if (wk_reply_refused(r)) {
            if (!refused)
                log_refused(rl, "heartbeat refused by redis for now; slowing down", NULL, r);
            refused = true;
        } else if (r->type == REDIS_REPLY_ERROR) {
            fleet_log(FLEET_LOG_ERROR, "heartbeat refused", "error", r->str, NULL);
        }
        freeReplyObject(r);
    }
    return refused;
}

/* The model's stream on each shard as last loaded by the main thread, into out[]. */
static size_t shard_streams(wk_worker *w, fleet_key *out) {
    pthread_mutex_lock(&w->mu);
    size_t n = w->nshard_keys;
    for (size_t i = 0; i < n; i++) out[i] = fleet_key_stream(&w->shard_keys[i], w->cfg.model);
    pthread_mutex_unlock(&w->mu);
    return n;
}

static void deregister(wk_worker *w, wk_redis *rd) {
    fleet_key wkeys = fleet_key_workers(&w->keys);
    fleet_key me = fleet_key_worker(&w->keys, w->cfg.name);
    fleet_key streams[FLEET_SHARDS_MAX];
    redisReply *r;

    if (wk_redis_ensure(rd) < 0) return; /* the entries expire by themselves */
    if ((r = wk_redis_cmdf(rd, wkeys.s, "ZREM %s %s", wkeys.s, w->cfg.name))) freeReplyObject(r);
    if ((r = wk_redis_cmdf(rd, me.s, "DEL %s", me.s))) freeReplyObject(r);
    /* Leave each shard's group only with nothing pending there: DELCONSUMER drops pending
     * entries, and those are jobs handed back for another worker to reclaim. */
    size_t ns = shard_streams(w, streams);
    for (size_t i = 0; i < ns; i++) {
        r = wk_redis_cmdf(rd, streams[i].s, "XPENDING %s %s - + 1 %s", streams[i].s, FLEET_GROUP, w->cfg.name);
        bool none = r && r->type == REDIS_REPLY_ARRAY && r->elements == 0;
        if (r) freeReplyObject(r);
        if (none && (r = wk_redis_cmdf(rd, streams[i].s, "XGROUP DELCONSUMER %s %s %s", streams[i].s,
                                       FLEET_GROUP, w->cfg.name)))
            freeReplyObject(r);
    }
}

/* sweep_stream deletes the consumers of one stream's group idle for consumer_idle_ms
 * with nothing pending: live workers read every second, so these are workers that died. */
static void sweep_stream(wk_worker *w, wk_redis *rd, const fleet_key *stream) {
    redisReply *r = wk_redis_cmdf(rd, stream->s, "XINFO CONSUMERS %s %s", stream->s, FLEET_GROUP);
    if (!r) return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *c = r->element[i];
        const char *name = NULL;
        long long pending = -1, idle = -1;
        for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
            const redisReply *f = c->element[k], *v = c->element[k + 1];
            if (f->type != REDIS_REPLY_STRING && f->type != REDIS_REPLY_STATUS) continue;
            if (strcmp(f->str, "name") == 0 && v->type == REDIS_REPLY_STRING) name = v->str;
            else if (strcmp(f->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(f->str, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (!name || pending != 0 || idle < w->cfg.consumer_idle_ms ||
            strcmp(name, w->cfg.name) == 0)
            continue;
        redisReply *d = wk_redis_cmdf(rd, stream->s, "XGROUP DELCONSUMER %s %s %s", stream->s, FLEET_GROUP,
                                      name);
        if (!d) break;
        fleet_log(FLEET_LOG_INFO, "removed an idle consumer with nothing pending", "consumer", name,
                  NULL);
        freeReplyObject(d);
    }
    freeReplyObject(r);
}

/* sweep_consumers tidies the group on every shard's stream. */
static void sweep_consumers(wk_worker *w, wk_redis *rd) {
    fleet_key streams[FLEET_SHARDS_MAX];
    size_t ns = shard_streams(w, streams);
    for (size_t i = 0; i < ns && rd->c; i++) sweep_stream(w, rd, &streams[i]);
}

/* ---------------------------------------------------------------- watching --------- */

/* renew_leases extends the lease of each running job in one pipeline (the renew script)
 * and records in ws[].stop what the main thread must know: cancel requested, or the lease
 * is not ours any more. While this runs every WATCH_MS, no other worker takes the jobs
 * over, however long the model takes. */
static void renew_leases(wk_worker *w, wk_redis *rd, watched *ws, size_t n, fleet_cmd *cmds,
                         redisReply **reps, wk_ratelog *rl) {
    for (size_t i = 0; i < n; i++) {
        fleet_renew rn = {.id = ws[i].id,
                          .model = w->cfg.model,
                          .token = ws[i].token,
                          .worker = w->cfg.name,
                          .lease_ms = w->cfg.lease_ms};
        fleet_state_renew(&ws[i].keys, &rn, &cmds[i]);
    }
    wk_redis_scripts(rd, cmds, n, reps);
    for (size_t i = 0; i < n; i++) {
        if (!reps[i]) continue;
        if (wk_reply_refused(reps[i])) {
            /* Loading, busy, failing over: the next look (within a second) renews. */
            log_refused(rl, "lease renewal refused by redis for now; retrying", ws[i].id, reps[i]);
            freeReplyObject(reps[i]);
            reps[i] = NULL;
            continue;
        }
        switch (fleet_state_progress_reply(reps[i])) {
        case FLEET_PROGRESS_OK: break;
        case FLEET_PROGRESS_CANCEL: ws[i].stop |= WK_STOP_CANCEL; break;
        case FLEET_PROGRESS_STALE: ws[i].stop |= WK_STOP_STALE; break;
        case FLEET_PROGRESS_ERROR:
            fleet_log(FLEET_LOG_ERROR, "lease renewal failed", "job_id", ws[i].id, "error",
                      reps[i]->type == REDIS_REPLY_ERROR ? reps[i]->str : "unexpected reply", NULL);
            break;
        }
        freeReplyObject(reps[i]);
        reps[i] = NULL;
    }
}

#define OVERDUE_LOG_MS 10000
static wk_ratelog overdue_refused_log; /* the keeper thread's alone */

/* end_overdue_jobs fails, in Redis, each job past its timeout and grace whose model has
 * not stopped it: the client gets its answer even when a model is stuck in a call that
 * never calls back. The job's stop bit STALE then makes the main thread drop whatever the
 * model returns later (the finish would be refused anyway: the lease is gone). */
static void end_overdue_jobs(wk_worker *w, wk_redis *rd, watched *ws, size_t n) {
    long long now = wk_mono_ms();
    for (size_t i = 0; i < n; i++) {
        if (ws[i].ended || !ws[i].deadline_mono || now < ws[i].deadline_mono) continue;
        char err[200];
        snprintf(err, sizeof err,
                 "the job ran longer than its timeout_s of %ld seconds (the model did not stop "
                 "when asked, so the worker ended the job)",
                 ws[i].timeout_s);
        fleet_finish f = {.id = ws[i].id,
                          .model = w->cfg.model,
                          .token = ws[i].token,
                          .status = FLEET_STATUS_FAILED,
                          .error = err};
        fleet_cmd cmd;
        fleet_state_finish(&ws[i].keys, &f, 1, &cmd);
        redisReply *r = wk_redis_script(rd, &cmd);
        if (!r) return; /* the connection went: try again at the next look */
        fleet_finish_outcome fr = fleet_state_finish_reply(r);
        if (fr == FLEET_FINISH_ERROR) {
            /* Nothing was written: the job still runs in Redis. Try again next time (every
             * second while Redis refuses: logged at most every OVERDUE_LOG_MS). */
            long count;
            if (wk_ratelog_due(&overdue_refused_log, OVERDUE_LOG_MS, &count)) {
                char times[24];
                snprintf(times, sizeof times, "%ld", count);
                fleet_log(FLEET_LOG_ERROR, "could not end a job past its timeout; will retry",
                          "job_id", ws[i].id, "error",
                          r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply", "count",
                          times, NULL);
            }
            freeReplyObject(r);
            continue;
        }
        if (fr == FLEET_FINISH_OK) {
            atomic_fetch_add(&w->jobs_done, 1);
            fleet_log(FLEET_LOG_ERROR,
                      "job ended by its timeout while the model did not stop: the model is stuck "
                      "in a call; this worker stays busy until it returns",
                      "job_id", ws[i].id, NULL);
        }
        ws[i].ended = true;
        ws[i].stop |= WK_STOP_STALE | WK_STOP_TIMEOUT;
        freeReplyObject(r);
    }
}

/* apply_stops ORs what renew_leases found into the batch, if it is still the same batch.
 * While its results are written only a lost lease matters (it gives the result up).
 * Called with w->mu held. */
static void apply_stops(wk_worker *w, unsigned long gen, const watched *ws, size_t n) {
    if (!w->batch || w->batch_gen != gen || w->nbatch != n) return;
    for (size_t i = 0; i < n; i++) {
        int stop = w->batch_writing ? ws[i].stop & WK_STOP_STALE : ws[i].stop;
        if (!stop) continue;
        int before = atomic_fetch_or(&w->batch[i].stop, stop);
        if ((stop & ~before) & WK_STOP_CANCEL)
            fleet_log(FLEET_LOG_INFO, "cancel requested: stopping the job", "job_id", ws[i].id,
                      NULL);
        if ((stop & ~before) & WK_STOP_STALE)
            fleet_log(FLEET_LOG_WARN, "lease lost: stopping the job", "job_id", ws[i].id, NULL);
    }
}

/* ---------------------------------------------------------------- the thread ------- */

static void deadline_after(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* How often the leases of a running batch are renewed: well before one can run out, even
 * with a short one. */
static long watch_interval_ms(const wk_worker *w) {
    return w->cfg.lease_ms / 3 < WATCH_MS ? w->cfg.lease_ms / 3 : WATCH_MS;
}

static void *keeper_main(void *arg) {
    wk_worker *w = arg;
    wk_redis rd;
    watched *ws = calloc(w->max_batch, sizeof *ws);
    fleet_cmd *cmds = calloc(w->max_batch, sizeof *cmds);
    redisReply **reps = calloc(w->max_batch, sizeof *reps);
    /* Sweep at least twice per idle period, so a dead consumer goes soon after it may. */
    long sweep_ms = w->cfg.consumer_idle_ms / 2 < SWEEP_MS ? w->cfg.consumer_idle_ms / 2 : SWEEP_MS;
    long long last_hb = 0, next_watch = 0, next_sweep = wk_mono_ms() + sweep_ms;
    long hb_ms = HEARTBEAT_MS; /* HEARTBEAT_SLOW_MS while Redis refuses heartbeats */
    wk_ratelog hb_log = {0}, renew_log = {0};
    unsigned long gen = 0;
    long watch_ms = watch_interval_ms(w);

    if (!ws || !cmds || !reps ||
        wk_redis_init(&rd, &w->redis, "keeper", KEEPER_TIMEOUT_MS, fleet_key_shards(&w->keys).s) < 0) {
        fleet_log(FLEET_LOG_ERROR, "keeper thread cannot start; no heartbeats", NULL);
        free(ws);
        free(cmds);
        free(reps);
        return NULL;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->keeper_quit) {
        long long now = wk_mono_ms();
        long wait = (long)(last_hb + hb_ms - now);
        if (w->batch && next_watch - now < wait) wait = (long)(next_watch - now);
        if (!rd.c && wk_redis_retry_in_ms(&rd) > wait)
            wait = wk_redis_retry_in_ms(&rd); /* nothing to do before the next reconnect try */
        if (wait > 0 && !w->keeper_poked) {
            struct timespec ts;
            deadline_after(&ts, wait);
            w->keeper_wake_mono = now + wait; /* wk_keeper_poke reads it */
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            w->keeper_wake_mono = 0;
            if (w->keeper_quit) break;
        }
        bool poked = w->keeper_poked;
        w->keeper_poked = false;
        if (w->batch_gen != gen) {
            gen = w->batch_gen; /* a new batch: nothing ended by the keeper yet */
            for (size_t i = 0; i < w->max_batch; i++) ws[i].ended = false;
        }
        size_t n = w->batch ? w->nbatch : 0;
        bool writing = w->batch_writing;
        for (size_t i = 0; i < n; i++) {
            const wk_job *j = &w->batch[i];
            ws[i].keys = *j->keys;
            memcpy(ws[i].id, j->e.job_id, sizeof ws[i].id);
            memcpy(ws[i].token, j->token, sizeof ws[i].token);
            ws[i].timeout_s = j->claimed.timeout_s;
            ws[i].deadline_mono = j->claimed.timeout_s > 0
                                      ? j->started_mono + j->claimed.timeout_s * 1000LL +
                                            TIMEOUT_GRACE_MS
                                      : 0;
            ws[i].stop = 0;
        }
        pthread_mutex_unlock(&w->mu);

        /* Redis I/O without the lock: the main thread must never wait on it. */
        now = wk_mono_ms();
        bool watched_now = false;
        if (wk_redis_ensure(&rd) == 0) {
            if (now - last_hb >= hb_ms ||
                (poked && hb_ms == HEARTBEAT_MS && now - last_hb >= POKE_MIN_MS)) {
                hb_ms = write_heartbeat(w, &rd, &hb_log) ? HEARTBEAT_SLOW_MS : HEARTBEAT_MS;
                last_hb = now;
            }
            wk_metrics_flush(w, &rd, false);
            if (n > 0 && now >= next_watch) {
                renew_leases(w, &rd, ws, n, cmds, reps, &renew_log);
                /* A job whose model is done waits for its result to be written, not for
                 * its timeout: the result is there. */
                if (!writing) end_overdue_jobs(w, &rd, ws, n);
                next_watch = now + watch_ms;
                watched_now = true;
            }
            if (now >= next_sweep) {
                sweep_consumers(w, &rd);
                next_sweep = now + sweep_ms;
            }
        }

        pthread_mutex_lock(&w->mu);
        if (watched_now) apply_stops(w, gen, ws, n);
    }
    pthread_mutex_unlock(&w->mu);
    wk_metrics_flush(w, &rd, true); /* the last batches' counts */
    deregister(w, &rd);
    wk_redis_close(&rd);
    free(ws);
    free(cmds);
    free(reps);
    return NULL;
}

int wk_keeper_start(wk_worker *w) {
    sigset_t all, old;
    /* Signals go to the main thread, whose sleeps and reads they are meant to cut short. */
    sigemptyset(&all);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->keeper, NULL, keeper_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot start the keeper thread", "error", strerror(rc), NULL);
        return -1;
    }
    w->keeper_started = true;
    return 0;
}

/* The main loop pokes twice a batch, thousands of times a second under load: a wake-up
 * each time would cost two context switches per batch for nothing. The keeper is woken
 * only for what a poke is for: a heartbeat (at most once per POKE_MIN_MS), or a new batch
 * whose leases it would otherwise start renewing too late (it sleeps past one watch
 * interval, as it does when it last looked between two batches); it picks up any other
 * batch at its next wake-up, within a watch interval. */
void wk_keeper_poke(wk_worker *w) {
    pthread_mutex_lock(&w->mu);
    long long now = wk_mono_ms();
    if (now - w->keeper_signal_mono >= POKE_MIN_MS ||
        w->keeper_wake_mono > now + watch_interval_ms(w)) {
        w->keeper_signal_mono = now;
        w->keeper_poked = true;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

void wk_keeper_stop(wk_worker *w) {
    if (!w->keeper_started) return;
    pthread_mutex_lock(&w->mu);
    w->keeper_quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->keeper, NULL);
    w->keeper_started = false;
}
