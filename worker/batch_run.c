/* batch_run.c: one batch of claimed jobs through the model ABI (model.h), then each job's
 * final write. The model's callbacks land here: progress is rate-limited per job and
 * written with fleet_state_progress, a partial output is written at once with
 * fleet_state_emit; their answers (cancel requested, lease lost) turn into stop bits the
 * model sees on its next callback. What a job's outcome means for Redis is
 * decided in one pure function, wk_disposition_of. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

/* ---------------------------------------------------------------- pure rules ------- */

bool wk_progress_due(long long last_mono, long long now_mono, long interval_ms, long done,
                     long total) {
    if (total > 0 && done >= total)
        return true; /* the last step is always written: clients wait for 100% */
    if (last_mono == 0) return true;
    return now_mono - last_mono >= interval_ms;
}

wk_disposition wk_disposition_of(int outcome, int stop, long timeout_s, const char *model_error,
                                 fleet_status *status, char *err, size_t errlen) {
    err[0] = '\0';
    *status = FLEET_STATUS_FAILED;
    if (stop & WK_STOP_STALE)
        return WK_DROP; /* another attempt owns the job; anything we write is refused */
    if (outcome == FLEET_MODEL_OK) {
        /* Done is done: a cancel or shutdown that came too late does not undo work. */
        *status = FLEET_STATUS_SUCCEEDED;
        return WK_FINISH;
    }
    if (outcome == FLEET_MODEL_FAILED) {
        snprintf(err, errlen, "%s",
                 model_error && model_error[0] ? model_error
                                               : "the model failed without a message");
        return WK_FINISH;
    }
    /* STOPPED, RETRY or PENDING: why it stopped decides, in this order. A cancelled job
     * never retries; a timed-out one fails; a shutdown hands it back. */
    if (stop & WK_STOP_CANCEL) {
        *status = FLEET_STATUS_CANCELLED;
        snprintf(err, errlen, "cancelled by the client while running");
        return WK_FINISH;
    }
    if (stop & WK_STOP_TIMEOUT) {
        snprintf(err, errlen, "the job ran longer than its timeout_s of %ld seconds", timeout_s);
        return WK_FINISH;
    }
    if (stop & WK_STOP_SHUTDOWN) return WK_HAND_BACK;
    if (outcome == FLEET_MODEL_RETRY) {
        snprintf(err, errlen, "%s",
                 model_error && model_error[0] ? model_error
                                               : "a retryable error without a message");
        return WK_RETRY;
    }
    if (outcome == FLEET_MODEL_STOPPED)
        snprintf(err, errlen, "the model stopped the job without being asked to (a model bug)");
    else snprintf(err, errlen, "the model returned no result for this job (a model bug)");
    return WK_FINISH;
}

long wk_retry_delay_ms(long attempt, long base_ms, long max_ms, unsigned long rnd) {
    long d = base_ms < 0 ? 0 : base_ms;
    for (long i = 1; i < attempt && d < max_ms; i++) d = d > LONG_MAX / 2 ? LONG_MAX : d * 2;
    if (d > max_ms) d = max_ms;
    long half = d / 2;
    return d - half + (long)(rnd % ((unsigned long)half + 1));
}

/* ---------------------------------------------------------------- shutdown --------- */

bool wk_stopping(wk_worker *w) {
    sig_atomic_t sigs = *w->signals;
    if (sigs == 0) return false;
    long long now = wk_mono_ms();
    if (w->stop_deadline_mono == 0) {
        char g[24];
        snprintf(g, sizeof g, "%ld", w->cfg.drain_timeout_s);
        w->stop_deadline_mono = now + w->cfg.drain_timeout_s * 1000;
        fleet_log(FLEET_LOG_INFO, "stopping: no new jobs, finishing the current batch",
                  "drain_timeout_s", g, NULL);
    }
    if (sigs >= 2 && w->stop_deadline_mono > now) {
        w->stop_deadline_mono = now;
        fleet_log(FLEET_LOG_WARN, "second stop signal: handing the current batch back now", NULL);
    }
    return true;
}

bool wk_grace_over(wk_worker *w) { return wk_stopping(w) && wk_mono_ms() >= w->stop_deadline_mono; }

/* ---------------------------------------------------------------- callbacks -------- */

typedef struct run_state {
    wk_worker *w;
    wk_job *jobs;
    size_t n;
} run_state;

/* check_job adds the stop reasons the main thread can see by itself (timeout, grace) to
 * those the progress replies and the keeper set, and returns them all. */
static int check_job(run_state *rs, size_t i) {
    wk_job *j = &rs->jobs[i];
    int add = 0;
    if (j->claimed.timeout_s > 0 &&
        wk_mono_ms() - j->started_mono >= (long long)j->claimed.timeout_s * 1000)
        add |= WK_STOP_TIMEOUT;
    if (wk_grace_over(rs->w)) add |= WK_STOP_SHUTDOWN;
    if (add) return atomic_fetch_or(&j->stop, add) | add;
    return atomic_load(&j->stop);
}

static int cb_cancelled(const fleet_model_ctx *ctx, size_t i) {
    run_state *rs = ctx->opaque;
    if (i >= rs->n) return 1; /* a model bug; stopping is the harmless answer */
    return check_job(rs, i) != 0;
}

/* send_progress writes j's latest progress. Returns the reply, or NULL when the
 * connection is down. The progress stays unsent then, and when Redis refused it for now
 * (full, loading, busy). */
static redisReply *send_progress(wk_worker *w, wk_job *j) {
    fleet_progress p = {.id = j->e.job_id,
                        .token = j->token,
                        .percent = j->unsent_percent,
                        .message = j->unsent_message,
                        .done = j->unsent_done,
                        .total = j->unsent_total};
    fleet_cmd cmd;
    fleet_state_progress(j->keys, &p, &cmd);
    redisReply *rep = wk_redis_script(&w->rd, &cmd);
    if (rep && !wk_reply_refused(rep)) j->unsent = false;
    return rep;
}

#define PROGRESS_PAUSE_MIN_MS 250L
#define PROGRESS_PAUSE_MAX_MS 5000L
#define PROGRESS_LOG_MS 5000L

/* progress_refused backs progress writes off after Redis refused one (a full Redis
 * refuses each of them; a loading or busy one would be asked again at once): none is
 * sent for 250 ms doubling to 5 s, and the warning is written every few seconds with a
 * count. The final write of the batch sends the latest progress before the finish. */
static void progress_refused(wk_worker *w, const wk_job *j, const redisReply *rep) {
    wk_health *h = &w->health;
    h->progress_pause_ms = wk_backoff_next(h->progress_pause_ms, PROGRESS_PAUSE_MIN_MS,
                                           PROGRESS_PAUSE_MAX_MS);
    h->progress_pause_until_mono = wk_mono_ms() + h->progress_pause_ms;
    long count;
    if (wk_ratelog_due(&h->progress_log, PROGRESS_LOG_MS, &count)) {
        char n[24];
        snprintf(n, sizeof n, "%ld", count);
        fleet_log(FLEET_LOG_WARN, "progress not written: redis refused it for now; backing off",
                  "job_id", j->e.job_id, "kind", fleet_redis_err_name(fleet_redis_err_of(rep)),
                  "error", rep->str, "count", n, NULL);
    }
}

static int cb_progress(const fleet_model_ctx *ctx, size_t i, double percent, const char *message,
                       long done, long total) {
    run_state *rs = ctx->opaque;
    wk_worker *w = rs->w;
    if (i >= rs->n) return 1;
    wk_job *j = &rs->jobs[i];
    if (check_job(rs, i)) return 1;
    j->unsent = true;
    j->unsent_percent = percent;
    j->unsent_done = done;
    j->unsent_total = total;
    snprintf(j->unsent_message, sizeof j->unsent_message, "%s", message ? message : "");
    long long now = wk_mono_ms();
    if (!wk_progress_due(j->last_progress_mono, now, w->cfg.progress_interval_ms, done, total))
        return 0;
    if (now < w->health.progress_pause_until_mono)
        return 0; /* Redis refused the last one: kept unsent, see progress_refused */
    j->last_progress_mono = now;
    wk_redis_ensure(&w->rd);
    redisReply *rep = send_progress(w, j);
    if (!rep) {
        /* Progress is advisory: keep computing; the final write retries until it lands. */
        if (!j->progress_down_logged)
            fleet_log(FLEET_LOG_WARN, "progress not written: redis unreachable", "job_id",
                      j->e.job_id, NULL);
        j->progress_down_logged = true;
        return 0;
    }
    if (wk_reply_refused(rep)) {
        progress_refused(w, j, rep);
        freeReplyObject(rep);
        return 0;
    }
    w->health.progress_pause_ms = 0;
    switch (fleet_state_progress_reply(rep)) {
    case FLEET_PROGRESS_OK: break;
    case FLEET_PROGRESS_CANCEL:
        atomic_fetch_or(&j->stop, WK_STOP_CANCEL);
        fleet_log(FLEET_LOG_INFO, "cancel requested: stopping the job", "job_id", j->e.job_id,
                  NULL);
        break;
    case FLEET_PROGRESS_STALE:
        atomic_fetch_or(&j->stop, WK_STOP_STALE);
        fleet_log(FLEET_LOG_WARN, "lease lost: stopping the job", "job_id", j->e.job_id, NULL);
        break;
    case FLEET_PROGRESS_ERROR:
        fleet_log(FLEET_LOG_ERROR, "progress script failed", "job_id", j->e.job_id, "error",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
        break;
    }
    freeReplyObject(rep);
    return atomic_load(&j->stop) != 0;
}

/* cb_emit stores one partial output of job i at once (emit.lua): no rate limit and no
 * retry, unlike progress, so the model learns at its call whether the output was kept. */
static int cb_emit(const fleet_model_ctx *ctx, size_t i, const char *output, size_t len, char *err,
                   size_t errlen) {
    run_state *rs = ctx->opaque;
    wk_worker *w = rs->w;
    char tmp[1];
    if (!err || errlen == 0) {
        err = tmp;
        errlen = sizeof tmp;
    }
    err[0] = '\0';
    if (i >= rs->n) {
        snprintf(err, errlen, "no job %zu in this batch", i);
        return FLEET_MODEL_EMIT_STOP;
    }
    wk_job *j = &rs->jobs[i];
    if (check_job(rs, i)) return FLEET_MODEL_EMIT_STOP;
    if (!output || len == 0) {
        snprintf(err, errlen, "an output is one msgpack value; this one is empty");
        return FLEET_MODEL_EMIT_REFUSED;
    }
    fleet_emit e = {.id = j->e.job_id,
                    .token = j->token,
                    .output = output,
                    .output_len = len,
                    .max_outputs = w->cfg.max_outputs,
                    .max_bytes = w->cfg.max_output_bytes,
                    .webhook_throttle_ms = w->cfg.output_webhook_ms};
    fleet_cmd cmd;
    fleet_state_emit(j->keys, &e, &cmd);
    wk_redis_ensure(&w->rd);
    redisReply *rep = wk_redis_script(&w->rd, &cmd);
    if (!rep) {
        snprintf(err, errlen, "output not stored: redis unreachable");
        return FLEET_MODEL_EMIT_REFUSED;
    }
    fleet_emitted out;
    int rc = FLEET_MODEL_EMIT_REFUSED;
    switch (fleet_state_emit_reply(rep, &out)) {
    case FLEET_EMIT_OK: rc = FLEET_MODEL_EMIT_OK; break;
    case FLEET_EMIT_CANCEL:
        atomic_fetch_or(&j->stop, WK_STOP_CANCEL);
        fleet_log(FLEET_LOG_INFO, "cancel requested: stopping the job", "job_id", j->e.job_id,
                  NULL);
        rc = FLEET_MODEL_EMIT_STOP;
        break;
    case FLEET_EMIT_STALE:
        atomic_fetch_or(&j->stop, WK_STOP_STALE);
        fleet_log(FLEET_LOG_WARN, "lease lost: stopping the job", "job_id", j->e.job_id, NULL);
        rc = FLEET_MODEL_EMIT_STOP;
        break;
    case FLEET_EMIT_LIMIT:
        if (strcmp(out.limit, "count") == 0)
            snprintf(err, errlen,
                     "output not stored: the job already has %lld outputs, the most one job may "
                     "emit (FLEET_MAX_OUTPUTS)",
                     out.limit_value);
        else
            snprintf(err, errlen,
                     "output not stored: its %zu bytes would take the job's outputs past %lld "
                     "bytes (FLEET_MAX_OUTPUT_BYTES)",
                     len, out.limit_value);
        break;
    case FLEET_EMIT_ERROR:
        snprintf(err, errlen, "output not stored: redis answered %.200s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
        if (!wk_reply_refused(rep))
            fleet_log(FLEET_LOG_ERROR, "emit script failed", "job_id", j->e.job_id, "error",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
        break;
    }
    freeReplyObject(rep);
    return rc;
}

/* ---------------------------------------------------------------- final writes ----- */

/* The one write that ends a job's attempt: a finish (succeeded, failed, cancelled) or a
 * requeue (retry after a backoff, or hand back at shutdown). */
typedef struct pending_write {
    size_t job;
    bool requeue;
    fleet_finish f;
    fleet_requeue rq;
    char err[FLEET_MODEL_ERROR_MAX];
} pending_write;

/* build_writes builds the commands of pw[0..n): the finishes of each shard's jobs in one
 * command (finish.lua takes a batch; a script touches one shard's keys) unless they are
 * too many for one, each requeue in its own. Command c holds per[c] writes, whose indexes
 * in pw are idx[first[c]..first[c] + per[c]); finish says which kind it is. Returns how
 * many commands. */
static size_t build_writes(const wk_job *jobs, pending_write *pw, size_t n, fleet_finish *fs,
                           size_t *idx, fleet_cmd *cmds, size_t *first, size_t *per,
                           bool *finish) {
    size_t nf = 0, nc = 0;
    for (size_t i = 0; i < n; i++) {
        /* A copy's message must point at its own buffer, not at the slot it came from. */
        pw[i].f.error = pw[i].err;
        pw[i].rq.error = pw[i].err;
    }
    /* The finishes grouped by shard, in the order of their first job (a batch claimed
     * shard after shard already is). */
    bool *taken = finish; /* finish[] is written below, after its last use here */
    for (size_t i = 0; i < n; i++) taken[i] = pw[i].requeue;
    for (size_t i = 0; i < n; i++) {
        if (taken[i]) continue;
        const fleet_keys *keys = jobs[pw[i].job].keys;
        for (size_t j = i; j < n; j++)
            if (!taken[j] && jobs[pw[j].job].keys == keys) {
                taken[j] = true;
                fs[nf] = pw[j].f;
                idx[nf++] = j;
            }
    }
    for (size_t i = 0; i < nf; nc++) {
        const fleet_keys *keys = jobs[pw[idx[i]].job].keys;
        size_t same = 1;
        while (i + same < nf && jobs[pw[idx[i + same]].job].keys == keys) same++;
        first[nc] = i;
        finish[nc] = true;
        per[nc] = fleet_state_finish(keys, &fs[i], same, &cmds[nc]);
        i += per[nc];
    }
    for (size_t i = 0, at = nf; i < n; i++)
        if (pw[i].requeue) {
            idx[at] = i;
            first[nc] = at++;
            finish[nc] = false;
            per[nc] = 1;
            fleet_state_requeue(jobs[pw[i].job].keys, &pw[i].rq, &cmds[nc++]);
        }
    return nc;
}

/* A job's end: failed ones at warn, cancelled ones at info; succeeded ones at debug, since
 * under load they are thousands a second (wk_batch_run writes one info line per batch). */
static void log_finished(const wk_job *j, fleet_status st, const char *err) {
    fleet_log_level level = st == FLEET_STATUS_FAILED      ? FLEET_LOG_WARN
                            : st == FLEET_STATUS_SUCCEEDED ? FLEET_LOG_DEBUG
                                                           : FLEET_LOG_INFO;
    char ms[24], attempt[24];
    snprintf(ms, sizeof ms, "%lld", wk_mono_ms() - j->started_mono);
    snprintf(attempt, sizeof attempt, "%ld", j->claimed.attempts);
    fleet_log(level, "job finished", "job_id", j->e.job_id, "status", fleet_status_to_string(st),
              "run_ms", ms, "attempt", attempt, err && err[0] ? "error" : NULL, err, NULL);
}

/* read_write_reply logs what a final write did. */
static void read_write_reply(wk_worker *w, const wk_job *j, const pending_write *p,
                             const redisReply *rep) {
    const char *why = rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply";
    if (!p->requeue) {
        switch (fleet_state_finish_reply(rep)) {
        case FLEET_FINISH_OK:
            atomic_fetch_add(&w->jobs_done, 1);
            log_finished(j, p->f.status, p->f.error);
            return;
        case FLEET_FINISH_STALE:
            /* Also the answer to a resend whose first send did land. */
            fleet_log(FLEET_LOG_WARN,
                      "finish refused: this attempt no longer holds the job (lease lost, or "
                      "already finished)",
                      "job_id", j->e.job_id, NULL);
            return;
        case FLEET_FINISH_ERROR:
            /* Not resent: a script error would repeat. The lease expires and the job runs
             * again, so it is not lost. */
            fleet_log(FLEET_LOG_ERROR, "finish script failed", "job_id", j->e.job_id, "error", why,
                      NULL);
            return;
        }
    }
    char delay[24];
    snprintf(delay, sizeof delay, "%ld", p->rq.delay_ms);
    switch (fleet_state_requeue_reply(rep)) {
    case FLEET_REQUEUE_QUEUED:
        fleet_log(FLEET_LOG_WARN,
                  p->rq.kind == FLEET_REQUEUE_RETRY
                      ? "retryable model error: job queued again after a backoff"
                      : "shutdown: job handed back unfinished for another worker",
                  "job_id", j->e.job_id, "delay_ms", delay, p->err[0] ? "error" : NULL, p->err,
                  NULL);
        return;
    case FLEET_REQUEUE_DEAD:
        atomic_fetch_add(&w->jobs_done, 1);
        fleet_log(FLEET_LOG_WARN,
                  "retryable model error, attempts used up: job failed and dead-lettered", "job_id",
                  j->e.job_id, "error", p->err, NULL);
        return;
    case FLEET_REQUEUE_CANCELLED:
        atomic_fetch_add(&w->jobs_done, 1);
        log_finished(j, FLEET_STATUS_CANCELLED, "cancelled by the client while running");
        return;
    case FLEET_REQUEUE_STALE:
        fleet_log(FLEET_LOG_WARN, "requeue refused: this attempt no longer holds the job", "job_id",
                  j->e.job_id, NULL);
        return;
    case FLEET_REQUEUE_ERROR:
        fleet_log(FLEET_LOG_ERROR, "requeue script failed", "job_id", j->e.job_id, "error", why,
                  NULL);
        return;
    }
}

#define WRITE_PAUSE_MIN_MS 100L
#define WRITE_PAUSE_MAX_MS 2000L
#define WRITE_LOG_MS 5000L

/* drop_lost removes from pw[0..n) the writes of jobs whose lease the keeper found lost
 * while they waited (it renews them all the while, so this is another attempt's job now,
 * or the write landed before its reply was lost). Returns how many are left. */
static size_t drop_lost(wk_job *jobs, pending_write *pw, size_t n) {
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        const wk_job *j = &jobs[pw[i].job];
        if (atomic_load(&j->stop) & WK_STOP_STALE)
            fleet_log(FLEET_LOG_WARN,
                      "result given up: this attempt no longer holds the job (lease lost, or "
                      "the write landed before its reply was lost)",
                      "job_id", j->e.job_id, NULL);
        else pw[keep++] = pw[i];
    }
    return keep;
}

/* send_unsent writes the latest progress of each job of pw[0..n) not written yet, so the
 * stored progress ends where the model ended. Returns 0, -1 when the connection went, or
 * 1 when Redis refused one for now (the progress stays unsent). */
static int send_unsent(wk_worker *w, wk_job *jobs, const pending_write *pw, size_t n, char *why,
                       size_t whylen) {
    for (size_t i = 0; i < n; i++) {
        wk_job *j = &jobs[pw[i].job];
        if (!j->unsent) continue;
        redisReply *rep = send_progress(w, j);
        if (!rep) return -1;
        bool refused = wk_reply_refused(rep);
        if (refused) snprintf(why, whylen, "%s", rep->str);
        freeReplyObject(rep); /* too late to act on: the final write decides */
        if (refused) return 1;
    }
    return 0;
}

/* write_all sends pw[0..n) until each one has an answer: the finishes of the batch in one
 * script call (or a few), the requeues each in one; the first send carries the claim of
 * the next batch along (loop.c, wk_ahead_build). A write whose reply was lost
 * with the connection is sent again (the scripts are lease-guarded: a resend of one that
 * landed reads "stale"); one that Redis refused for now (full: OOM, or loading, busy,
 * failing over) did not run and is sent again after a backoff of 100 ms doubling to 2 s,
 * while the keeper keeps renewing the leases (the renew script is allowed while Redis is
 * full). A result is given up only when its lease is lost, or when the drain time of a
 * shutdown ends (then the leases expire and the jobs run again elsewhere: at-least-once,
 * never lost). */
static void write_all(wk_worker *w, wk_job *jobs, pending_write *pw, size_t n) {
    size_t cap = n ? n : 1;
    fleet_cmd *cmds = calloc(cap + 2, sizeof *cmds); /* + the claim sent ahead */
    redisReply **reps = calloc(cap + 2, sizeof *reps);
    fleet_finish *fs = calloc(cap, sizeof *fs);
    size_t *idx = calloc(cap, sizeof *idx), *first = calloc(cap, sizeof *first);
    size_t *per = calloc(cap, sizeof *per);
    bool *finish = calloc(cap, sizeof *finish);
    pending_write *kept = calloc(cap, sizeof *kept);
    size_t left = n;
    long pause_ms = 0;
    wk_ratelog refused_log = {0};
    bool first_send = true; /* the first send takes the next batch's claim along (loop.c) */

    if (!cmds || !reps || !fs || !idx || !first || !per || !finish || !kept) {
        fleet_log(FLEET_LOG_ERROR, "out of memory finishing a batch; its jobs will be retried",
                  NULL);
        goto out;
    }
    while (left > 0) {
        if (pause_ms > 0) {
            if (wk_grace_over(w)) break;
            wk_sleep_ms(pause_ms);
            if ((left = drop_lost(jobs, pw, left)) == 0) break;
        }
        if (wk_redis_ensure(&w->rd) < 0) {
            if (wk_grace_over(w)) break;
            wk_sleep_ms(wk_redis_retry_in_ms(&w->rd));
            continue;
        }
        char why[256] = "";
        int unsent = send_unsent(w, jobs, pw, left, why, sizeof why);
        if (unsent < 0) continue;
        size_t keep = 0, refused = 0, lost = 0;
        if (unsent == 0) {
            size_t nc = build_writes(jobs, pw, left, fs, idx, cmds, first, per, finish);
            size_t na = first_send ? wk_ahead_build(w, cmds + nc) : 0;
            first_send = false;
            wk_redis_scripts(&w->rd, cmds, nc + na, reps);
            if (na) wk_ahead_keep(w, reps + nc);
            for (size_t c = 0; c < nc; c++) {
                bool again = !reps[c]; /* lost with the connection: send again */
                lost += !reps[c];
                if (reps[c] && wk_reply_refused(reps[c])) {
                    snprintf(why, sizeof why, "%s", reps[c]->str);
                    again = true; /* nothing was written: send again */
                    refused++;
                }
                for (size_t i = first[c]; i < first[c] + per[c]; i++) {
                    const pending_write *p = &pw[idx[i]];
                    if (again) {
                        kept[keep++] = *p;
                        continue;
                    }
                    /* A finish command answers for each of its jobs; an error reply (a
                     * script error) answers for all of them. */
                    const redisReply *a = reps[c];
                    if (finish[c] && a->type == REDIS_REPLY_ARRAY)
                        a = fleet_state_batch_item(a, i - first[c]);
                    if (a) read_write_reply(w, &jobs[p->job], p, a);
                    else
                        fleet_log(FLEET_LOG_ERROR, "finish reply without this job", "job_id",
                                  jobs[p->job].e.job_id, NULL);
                }
                if (reps[c]) freeReplyObject(reps[c]);
                reps[c] = NULL;
            }
            memcpy(pw, kept, keep * sizeof *pw);
            left = keep;
        }
        /* On a cluster a lost master fails only its shards' writes while the others go
         * on: they are resent after a pause, until its replica has taken over. */
        if (unsent == 0 && refused == 0 && (lost == 0 || !w->rd.rt.cluster)) {
            pause_ms = 0;
            continue;
        }
        pause_ms = wk_backoff_next(pause_ms, WRITE_PAUSE_MIN_MS, WRITE_PAUSE_MAX_MS);
        long count;
        if (wk_ratelog_due(&refused_log, WRITE_LOG_MS, &count)) {
            char c[24], jobs_left[24];
            snprintf(c, sizeof c, "%ld", count);
            snprintf(jobs_left, sizeof jobs_left, "%zu", left);
            fleet_log(FLEET_LOG_WARN,
                      "results kept: redis refused to write them for now; retrying while the "
                      "leases are renewed",
                      "job_id", jobs[pw[0].job].e.job_id, "jobs", jobs_left, "error", why, "count",
                      c, NULL);
        }
    }
    for (size_t i = 0; i < left; i++)
        fleet_log(FLEET_LOG_WARN, "result not written before shutdown; the job will run again",
                  "job_id", jobs[pw[i].job].e.job_id, NULL);
out:
    free(cmds);
    free(reps);
    free(fs);
    free(idx);
    free(first);
    free(per);
    free(finish);
    free(kept);
}

/* ---------------------------------------------------------------- the batch -------- */

void wk_batch_run(wk_worker *w, wk_job *jobs, size_t n) {
    fleet_model_job *mj = calloc(n, sizeof *mj);
    pending_write *pw = calloc(n, sizeof *pw);
    run_state rs = {.w = w, .jobs = jobs, .n = n};
    fleet_model_ctx ctx = {
        .progress = cb_progress, .cancelled = cb_cancelled, .opaque = &rs, .emit = cb_emit};
    size_t npw = 0;
    long long batch_start = wk_mono_ms();

    if (!mj || !pw) {
        fleet_log(FLEET_LOG_ERROR, "out of memory starting a batch; its jobs will be retried",
                  NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        mj[i].id = jobs[i].e.job_id;
        mj[i].input = jobs[i].claimed.input;
        mj[i].input_len = jobs[i].claimed.input_len;
        mj[i].attempt = jobs[i].claimed.attempts;
    }

    pthread_mutex_lock(&w->mu);
    w->batch = jobs;
    w->nbatch = n;
    w->batch_gen++;
    pthread_mutex_unlock(&w->mu);
    atomic_store(&w->busy, 1);
    wk_keeper_poke(w);

    w->model->run_batch(w->model_state, mj, n, &ctx);
    wk_metrics_batch(w, jobs, n, wk_mono_ms());

    /* The keeper goes on renewing the leases while the results are written: a finish that
     * a full Redis refuses is kept and retried, and must not lose its job meanwhile. */
    pthread_mutex_lock(&w->mu);
    w->batch_writing = true;
    pthread_mutex_unlock(&w->mu);

    for (size_t i = 0; i < n; i++) {
        wk_job *j = &jobs[i];
        pending_write *p = &pw[npw];
        fleet_status st;
        int stop = check_job(&rs, i);
        mj[i].error[sizeof mj[i].error - 1] = '\0'; /* a model may have filled it all */
        wk_disposition d = wk_disposition_of(mj[i].outcome, stop, j->claimed.timeout_s, mj[i].error,
                                             &st, p->err, sizeof p->err);
        p->job = i;
        p->requeue = d == WK_RETRY || d == WK_HAND_BACK;
        p->f = (fleet_finish){
            .id = j->e.job_id,
            .model = w->cfg.model,
            .token = j->token,
            .status = st,
            .result = st == FLEET_STATUS_SUCCEEDED ? mj[i].output : NULL,
            .result_len = st == FLEET_STATUS_SUCCEEDED ? mj[i].output_len : 0,
        };
        p->rq = (fleet_requeue){
            .id = j->e.job_id,
            .model = w->cfg.model,
            .token = j->token,
            .kind = d == WK_RETRY ? FLEET_REQUEUE_RETRY : FLEET_REQUEUE_HANDBACK,
            .delay_ms = d == WK_RETRY ? wk_retry_delay_ms(j->claimed.attempts, w->cfg.retry_base_ms,
                                                          w->cfg.retry_max_ms, wk_random())
                                      : 0,
            .dlq_cap = w->cfg.dlq_cap,
        };
        if (d == WK_DROP)
            fleet_log(FLEET_LOG_WARN, "lease lost: result dropped", "job_id", j->e.job_id, NULL);
        else npw++;
    }
    long before = atomic_load(&w->jobs_done);
    write_all(w, jobs, pw, npw);
    /* One line per batch; the jobs' own lines are at debug when they succeeded. */
    char nj[24], ended[24], ms[24];
    snprintf(nj, sizeof nj, "%zu", n);
    snprintf(ended, sizeof ended, "%ld", atomic_load(&w->jobs_done) - before);
    snprintf(ms, sizeof ms, "%lld", wk_mono_ms() - batch_start);
    fleet_log(FLEET_LOG_INFO, "batch done", "jobs", nj, "ended", ended, "ms", ms, NULL);

    pthread_mutex_lock(&w->mu);
    w->batch = NULL;
    w->nbatch = 0;
    w->batch_writing = false;
    pthread_mutex_unlock(&w->mu);
    atomic_store(&w->busy, 0);
out:
    if (mj)
        for (size_t i = 0; i < n; i++) free(mj[i].output);
    free(mj);
    free(pw);
}
