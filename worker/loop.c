/* loop.c: fleet-worker's main loop. Each turn reads up to max_batch entries of the model's
 * stream in the consumer group (dynamic batching: an idle worker starts at once, a busy
 * one waits at most max_delay_ms for a fuller batch), claims each job with the claim
 * script, runs the claimed ones as one batch (batch_run.c) and finishes them.
 *
 * Entries that another worker took and never finished (it crashed) are taken over with
 * XAUTOCLAIM once they have been pending for a lease (a live worker renews its jobs'
 * leases and keeps their entries fresh, see keeper.c); the claim script decides whether
 * the job runs again, or fails and is dead-lettered. An entry left pending by a failed
 * claim is retried the same way, so nothing read from the stream is forgotten. Jobs
 * requeued with a backoff wait in the model's delayed set until promote() puts them back
 * on the stream.
 *
 * Redis that refuses a command for now (loading, busy, failing over, full: health.c)
 * pauses the loop with a backoff; a claim it refused is sent again (it did not run), and
 * nothing is claimed while Redis is full or its maxmemory-policy evicts keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

#define CONTROL_WAIT_MS 2000L /* at start: how long claims wait for the control channel */
#define READ_BLOCK_MS 1000L /* shorter than the socket timeout (redis.h): hiredis
                                  * ends a read that blocks past it as an error */
#define ERROR_PAUSE_MS 1000L
#define PROMOTE_MS 250L

/* ---------------------------------------------------------------- stream entries --- */

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* ack_bad_entry removes an entry that does not name a valid job: it can never run, and
 * left pending it would be reclaimed forever. */
static void ack_bad_entry(wk_worker *w, const char *entry_id)
{
    fleet_log(FLEET_LOG_WARN, "stream entry without a valid job id dropped", "entry_id", entry_id,
              NULL);
    redisReply *r = wk_redis_cmdf(&w->rd, "XACK %s %s %s", w->stream.s, FLEET_GROUP, entry_id);
    if (r)
        freeReplyObject(r);
    r = wk_redis_cmdf(&w->rd, "XDEL %s %s", w->stream.s, entry_id);
    if (r)
        freeReplyObject(r);
}

/* take_entries appends the [id, [field, value, ...]] items of arr to out[*n..max). */
static void take_entries(wk_worker *w, const redisReply *arr, wk_entry *out, size_t *n, size_t max)
{
    if (!arr || arr->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < arr->elements && *n < max; i++) {
        const redisReply *e = arr->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]) ||
            e->element[0]->len >= WK_ENTRY_ID_MAX)
            continue;
        const char *entry_id = e->element[0]->str;
        const redisReply *f = e->element[1];
        const char *job = NULL;
        if (f && f->type == REDIS_REPLY_ARRAY)
            for (size_t k = 0; k + 1 < f->elements; k += 2)
                if (is_str(f->element[k]) && strcmp(f->element[k]->str, "job") == 0 &&
                    is_str(f->element[k + 1]))
                    job = f->element[k + 1]->str;
        if (!job || !fleet_job_id_valid(job)) {
            ack_bad_entry(w, entry_id);
            continue;
        }
        wk_entry *dst = &out[(*n)++];
        snprintf(dst->entry_id, sizeof dst->entry_id, "%s", entry_id);
        snprintf(dst->job_id, sizeof dst->job_id, "%s", job);
    }
}

/* ensure_group creates the consumer group (and the stream) unless it exists. Redone after
 * each reconnect, since a restarted server without persistence has neither. */
static int ensure_group(wk_worker *w)
{
    redisReply *r = wk_redis_cmdf(&w->rd, "XGROUP CREATE %s %s 0 MKSTREAM", w->stream.s,
                                  FLEET_GROUP);
    if (!r)
        return -1;
    int rc = 0;
    if (wk_health_refused(w, r, "XGROUP CREATE")) {
        rc = -1; /* loading, or full: the loop waits out the pause and tries again */
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot create the consumer group", "stream", w->stream.s,
                  "error", r->str, NULL);
        rc = -1;
    }
    freeReplyObject(r);
    if (rc == 0)
        w->group_epoch = w->rd.epoch;
    return rc;
}

/* reply_failed logs an error reply of a stream command and arranges what fixes it.
 * Returns true when r was an error. */
static bool reply_failed(wk_worker *w, const redisReply *r, const char *what)
{
    if (r->type != REDIS_REPLY_ERROR)
        return false;
    if (wk_health_refused(w, r, what))
        return true; /* the loop waits out the pause */
    if (strncmp(r->str, "NOGROUP", 7) == 0) {
        w->group_epoch = 0; /* the stream or group vanished (server restart, FLUSHALL) */
        fleet_log(FLEET_LOG_WARN, "consumer group missing; recreating it", "stream", w->stream.s,
                  NULL);
    } else {
        fleet_log(FLEET_LOG_ERROR, what, "stream", w->stream.s, "error", r->str, NULL);
        wk_sleep_ms(ERROR_PAUSE_MS); /* a refused command would refuse again at once */
    }
    return true;
}

/* recover_entry deals with a pending entry that was deleted from the stream by hand
 * (XAUTOCLAIM reports it, and has already dropped it from the pending list): its job, if it
 * has not ended, gets a new entry. */
static void recover_entry(wk_worker *w, const char *entry_id)
{
    fleet_cmd cmd;
    const char *job = "";
    fleet_state_recover(&w->keys, w->cfg.model, entry_id, &cmd);
    redisReply *r = wk_redis_script(&w->rd, &cmd);
    /* XAUTOCLAIM has dropped the entry already: this is the job's only way back, so a
     * refusal for now is waited out rather than given up. */
    while (r && wk_health_refused(w, r, "recover") && !wk_stopping(w)) {
        freeReplyObject(r);
        wk_sleep_ms(wk_health_wait_ms(w));
        fleet_state_recover(&w->keys, w->cfg.model, entry_id, &cmd);
        r = wk_redis_script(&w->rd, &cmd);
    }
    int rc = r ? fleet_state_recover_reply(r, &job) : -1;
    fleet_log(rc == 1 ? FLEET_LOG_WARN : FLEET_LOG_ERROR,
              rc == 1    ? "a pending stream entry was deleted by hand; its job was queued again"
              : rc == 0 ? "a pending stream entry was deleted by hand; its job had ended"
                        : "a pending stream entry was deleted by hand; recovering its job failed",
              "entry_id", entry_id, job[0] ? "job_id" : NULL, job, NULL);
    if (r)
        freeReplyObject(r);
}

/* feed moves waiting jobs of the tenants onto the stream, fairly (feed.lua), so that at
 * least a batch is ready to read. */
static void feed(wk_worker *w)
{
    long target = (long)w->max_batch > w->cfg.ready_target ? (long)w->max_batch
                                                           : w->cfg.ready_target;
    fleet_cmd cmd;
    fleet_state_feed(&w->keys, w->cfg.model, target, &cmd);
    redisReply *r = wk_redis_script(&w->rd, &cmd);
    if (!r)
        return;
    if (!wk_health_refused(w, r, "feed") && r->type == REDIS_REPLY_ERROR)
        fleet_log(FLEET_LOG_ERROR, "feed script failed", "error", r->str, NULL);
    freeReplyObject(r);
}

/* promote puts jobs whose retry backoff has passed back on the stream. Every few hundred
 * milliseconds: the delayed set is small and a look at it is one ZRANGEBYSCORE. */
static void promote(wk_worker *w)
{
    long long now = wk_mono_ms();
    if (now < w->next_promote_mono)
        return;
    w->next_promote_mono = now + PROMOTE_MS;
    fleet_cmd cmd;
    fleet_state_promote(&w->keys, w->cfg.model, 100, &cmd);
    redisReply *r = wk_redis_script(&w->rd, &cmd);
    if (!r)
        return;
    long moved = fleet_state_promote_reply(r);
    if (wk_health_refused(w, r, "promote")) {
        /* The jobs stay in the delayed set until Redis takes writes again. */
    } else if (moved < 0)
        fleet_log(FLEET_LOG_ERROR, "promote script failed", "error",
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply", NULL);
    else if (moved > 0) {
        char m[24];
        snprintf(m, sizeof m, "%ld", moved);
        fleet_log(FLEET_LOG_DEBUG, "jobs back on the stream after their retry backoff", "jobs", m,
                  NULL);
    }
    freeReplyObject(r);
}

/* reclaim takes over entries pending longer than a lease (their worker died between
 * reading and finishing) into out[*n..max). At most every few seconds. */
static void reclaim(wk_worker *w, wk_entry *out, size_t *n, size_t max)
{
    long long now = wk_mono_ms();
    if (now < w->next_reclaim_mono || *n >= max)
        return;
    long every = w->cfg.lease_ms / 4;
    every = every < 1000 ? 1000 : every > 5000 ? 5000 : every;
    w->next_reclaim_mono = now + every;

    redisReply *r = wk_redis_cmdf(&w->rd, "XAUTOCLAIM %s %s %s %ld %s COUNT %lu", w->stream.s,
                                  FLEET_GROUP, w->cfg.name, w->cfg.lease_ms, w->reclaim_cursor,
                                  (unsigned long)(max - *n)); /* hiredis knows no %zu */
    if (!r)
        return;
    if (reply_failed(w, r, "XAUTOCLAIM failed")) {
        freeReplyObject(r);
        return;
    }
    /* Redis 7: [next cursor, entries, ids of entries deleted while pending]. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && is_str(r->element[0])) {
        snprintf(w->reclaim_cursor, sizeof w->reclaim_cursor, "%s", r->element[0]->str);
        take_entries(w, r->element[1], out, n, max);
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < r->element[2]->elements; i++)
                if (is_str(r->element[2]->element[i]))
                    recover_entry(w, r->element[2]->element[i]->str);
    }
    freeReplyObject(r);
}

/* xread appends what one XREADGROUP returns to out[*n..max). block_ms < 0: no BLOCK.
 * Returns 0, or -1 when the read failed (connection lost or an error reply). */
static int xread(wk_worker *w, wk_entry *out, size_t *n, size_t max, long block_ms)
{
    /* Two formats: a %s that expands to "BLOCK n" would be sent as one argument. */
    unsigned long count = (unsigned long)(max - *n);
    redisReply *r =
        block_ms >= 0
            ? wk_redis_cmdf(&w->rd, "XREADGROUP GROUP %s %s COUNT %lu BLOCK %ld STREAMS %s >",
                            FLEET_GROUP, w->cfg.name, count, block_ms, w->stream.s)
            : wk_redis_cmdf(&w->rd, "XREADGROUP GROUP %s %s COUNT %lu STREAMS %s >", FLEET_GROUP,
                            w->cfg.name, count, w->stream.s);
    if (!r)
        return -1;
    if (reply_failed(w, r, "XREADGROUP failed")) {
        freeReplyObject(r);
        return -1;
    }
    /* NIL on timeout; else [[stream, [entries...]]]. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2)
        take_entries(w, r->element[0]->element[1], out, n, max);
    freeReplyObject(r);
    return 0;
}

/* read_entries fills out[0..max) from the stream. A worker whose last turn did not run a
 * full batch is not saturated: it takes what is there or waits for the first entry
 * (blocking up to READ_BLOCK_MS) and starts that batch at once; the entries that arrive
 * while the model runs make the next one (Triton's dynamic batcher never makes an idle
 * server wait for company). A worker that just ran a full batch is under load: it waits
 * up to max_delay_ms for the next one to fill. The wait polls with non-blocking reads:
 * Redis expires a BLOCK only on its server cron (every 100 ms at the default hz 10), so
 * "BLOCK 5" can take 100 ms. */
static size_t read_entries(wk_worker *w, wk_entry *out, size_t max)
{
    size_t n = 0;

    reclaim(w, out, &n, max);
    if (n == 0 && w->ran_full_batch && xread(w, out, &n, max, -1) < 0)
        return n;
    if (n == 0 || !w->ran_full_batch) {
        /* Not saturated: what is there, or the first entry that comes, starts at once. */
        if (n == 0)
            xread(w, out, &n, max, READ_BLOCK_MS);
        return n; /* none: an idle turn lets the loop check signals and heartbeats */
    }
    if (w->cfg.max_delay_ms <= 0)
        return n;
    long step = w->cfg.max_delay_ms / 5; /* about five polls per fill, 1..20 ms apart */
    step = step < 1 ? 1 : step > 20 ? 20 : step;
    long long deadline = wk_mono_ms() + w->cfg.max_delay_ms;
    while (n < max && !wk_stopping(w)) {
        size_t before = n;
        if (xread(w, out, &n, max, -1) < 0)
            break;
        long long left = deadline - wk_mono_ms();
        if (left <= 0)
            break;
        if (n == before)
            wk_sleep_ms(step < left ? step : (long)left);
    }
    return n;
}

/* ---------------------------------------------------------------- claiming --------- */

/* build_claims builds the claim commands of sent[0..m) with their tokens: one command
 * holds the whole batch (claim.lua takes many entries) unless it is too long for one.
 * Sets per[c] to how many entries command c holds; returns how many commands. */
static size_t build_claims(wk_worker *w, const wk_entry *const *sent,
                           char (*tokens)[WK_TOKEN_LEN + 1], size_t m, fleet_claim *cls,
                           fleet_cmd *cmds, size_t *per)
{
    for (size_t i = 0; i < m; i++)
        cls[i] = (fleet_claim){.id = sent[i]->job_id, .model = w->cfg.model,
                               .entry_id = sent[i]->entry_id, .worker = w->cfg.name,
                               .token = tokens[i], .lease_ms = w->cfg.lease_ms,
                               .dlq_cap = w->cfg.dlq_cap};
    size_t nc = 0;
    for (size_t i = 0; i < m; nc++) {
        per[nc] = fleet_state_claim(&w->keys, &cls[i], m - i, &cmds[nc]);
        i += per[nc];
    }
    return nc;
}

/* claim_one reads the claim reply rep of entry e: sets up jobs[*kp] when the job was
 * claimed (returns true), logs what happened otherwise. */
static bool claim_one(wk_worker *w, const wk_entry *e, const char *token, const redisReply *rep,
                      long long now, wk_job *jobs, size_t *kp)
{
    fleet_claimed got;
    if (!rep) {
        fleet_log(FLEET_LOG_ERROR, "claim reply without this entry; entry left for reclaim",
                  "job_id", e->job_id, NULL);
        return false;
    }
    switch (fleet_state_claim_reply(rep, &got)) {
    case FLEET_CLAIM_OK: {
        wk_job *j = &jobs[(*kp)++];
        memset(j, 0, sizeof *j);
        j->e = *e;
        memcpy(j->token, token, sizeof j->token);
        j->claimed = got; /* got.input points into the batch reply */
        if (j->claimed.timeout_s <= 0)
            j->claimed.timeout_s = w->cfg.timeout_s; /* the model's default limit */
        j->started_mono = now;
        atomic_init(&j->stop, 0);
        char att[24];
        snprintf(att, sizeof att, "%ld", got.attempts);
        fleet_log(got.reclaimed ? FLEET_LOG_WARN : FLEET_LOG_DEBUG,
                  got.reclaimed ? "took over a job whose worker was lost (its lease expired)"
                                : "job claimed",
                  "job_id", e->job_id, "attempt", att, NULL);
        return true;
    }
    case FLEET_CLAIM_GONE:
        fleet_log(FLEET_LOG_INFO, "job expired while queued; entry dropped", "job_id",
                  e->job_id, NULL);
        break;
    case FLEET_CLAIM_CANCELLED:
        fleet_log(FLEET_LOG_INFO, "job was cancelled before it could run again; it will not run",
                  "job_id", e->job_id, NULL);
        break;
    case FLEET_CLAIM_DEAD:
        fleet_log(FLEET_LOG_WARN, "job failed and was dead-lettered", "job_id", e->job_id,
                  "error", got.why, NULL);
        break;
    case FLEET_CLAIM_SKIP:
        fleet_log(FLEET_LOG_DEBUG, "entry not claimed", "job_id", e->job_id, "why", got.why,
                  NULL);
        break;
    case FLEET_CLAIM_ERROR:
        fleet_log(FLEET_LOG_ERROR, "claim script failed; entry left for reclaim", "job_id",
                  e->job_id, "error", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply",
                  NULL);
        break;
    }
    return false;
}

/* claim_replies reads the replies reps[0..nc) of the claim commands of sent[0..m)
 * (command c held per[c] entries): sets up jobs[*kp..] for the claimed ones. A command's
 * reply goes to the first job it claimed (its claim_reply owns the inputs of that
 * command's jobs) or is freed. The entries of a command that Redis refused for now (the
 * script did not run) are moved, with their tokens, to the front of sent and tokens;
 * returns how many. */
static size_t claim_replies(wk_worker *w, const wk_entry **sent, char (*tokens)[WK_TOKEN_LEN + 1],
                            redisReply **reps, size_t nc, const size_t *per, wk_job *jobs,
                            size_t *kp)
{
    size_t again = 0, at = 0;
    long long now = wk_mono_ms();
    for (size_t c = 0; c < nc; at += per[c], c++) {
        redisReply *rep = reps[c];
        reps[c] = NULL;
        if (rep && wk_health_refused(w, rep, "claim")) {
            freeReplyObject(rep);
            for (size_t i = at; i < at + per[c]; i++) {
                sent[again] = sent[i];
                memmove(tokens[again], tokens[i], sizeof tokens[again]);
                again++;
            }
            continue;
        }
        if (!rep) {
            for (size_t i = at; i < at + per[c]; i++)
                fleet_log(FLEET_LOG_WARN,
                          "claim reply lost with the connection; entry left for reclaim",
                          "job_id", sent[i]->job_id, NULL);
            continue;
        }
        if (rep->type == REDIS_REPLY_ERROR)
            fleet_log(FLEET_LOG_ERROR, "claim script failed; entries left for reclaim", "jobs",
                      sent[at]->job_id, "error", rep->str, NULL);
        size_t first = *kp;
        bool owned = false;
        for (size_t i = at; rep->type != REDIS_REPLY_ERROR && i < at + per[c]; i++)
            if (claim_one(w, sent[i], tokens[i], fleet_state_batch_item(rep, i - at), now, jobs,
                          kp) &&
                !owned) {
                jobs[first].claim_reply = rep;
                owned = true;
            }
        if (!owned)
            freeReplyObject(rep);
    }
    return again;
}

/* claim_all claims entries[0..n) in one script call (or a few, for a very large batch)
 * and sets up jobs[] for those that may run. Returns how many. The jobs' claim replies
 * are the caller's to free (set on the first job of each command). A claim that Redis
 * refused for now (loading, busy, full: the script did not run) is sent again after a
 * backoff, until it gets an answer or the worker stops (its entries are then left for
 * reclaim). */
static size_t claim_all(wk_worker *w, const wk_entry *entries, size_t n, wk_job *jobs)
{
    fleet_cmd *cmds = calloc(n, sizeof *cmds);
    fleet_claim *cls = calloc(n, sizeof *cls);
    size_t *per = calloc(n, sizeof *per);
    redisReply **reps = calloc(n, sizeof *reps);
    char (*tokens)[WK_TOKEN_LEN + 1] = calloc(n, sizeof *tokens);
    size_t m = 0, k = 0;
    const wk_entry **sent = calloc(n, sizeof *sent);

    if (!cmds || !cls || !per || !reps || !tokens || !sent) {
        fleet_log(FLEET_LOG_ERROR, "out of memory claiming a batch; entries left for reclaim", NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (wk_token_new(tokens[m]) < 0) {
            fleet_log(FLEET_LOG_ERROR, "no randomness for a lease token; entry left for reclaim",
                      "job_id", entries[i].job_id, NULL);
            continue;
        }
        sent[m++] = &entries[i];
    }
    while (m > 0) {
        size_t nc = build_claims(w, sent, tokens, m, cls, cmds, per);
        wk_redis_ensure(&w->rd); /* the read may have ended with the connection */
        wk_redis_scripts(&w->rd, cmds, nc, reps);
        size_t again = claim_replies(w, sent, tokens, reps, nc, per, jobs, &k);
        if (again > 0 && wk_stopping(w)) {
            for (size_t i = 0; i < again; i++)
                fleet_log(FLEET_LOG_WARN, "claim refused by redis at shutdown; entry left for reclaim",
                          "job_id", sent[i]->job_id, NULL);
            break;
        }
        if (again > 0)
            wk_sleep_ms(wk_health_wait_ms(w));
        m = again;
    }
out:
    free(cmds);
    free(cls);
    free(per);
    free(reps);
    free(tokens);
    free(sent);
    return k;
}

/* ---------------------------------------------------------------- the loop --------- */

void wk_loop_run(wk_worker *w)
{
    wk_entry *entries = calloc(w->max_batch, sizeof *entries);
    wk_job *jobs = calloc(w->max_batch, sizeof *jobs);

    if (!entries || !jobs) {
        fleet_log(FLEET_LOG_ERROR, "out of memory", NULL);
        goto out;
    }
    snprintf(w->reclaim_cursor, sizeof w->reclaim_cursor, "0-0");
    /* Claim nothing until the control channel listens (worker.h, control_subscribed);
     * past CONTROL_WAIT_MS go on: the lease renewal still hears a cancel within 1 s. */
    long long control_deadline = wk_mono_ms() + CONTROL_WAIT_MS;
    while (!wk_stopping(w) && !atomic_load(&w->control_subscribed) &&
           wk_mono_ms() < control_deadline)
        wk_sleep_ms(5);
    while (!wk_stopping(w)) {
        wk_keeper_poke(w);
        if (wk_redis_ensure(&w->rd) < 0) {
            long wait = wk_redis_retry_in_ms(&w->rd);
            wk_sleep_ms(wait > 0 ? wait : 1);
            continue;
        }
        if (!wk_health_may_claim(w)) {
            wk_sleep_ms(wk_health_wait_ms(w)); /* loading, full, or an evicting policy */
            continue;
        }
        if (w->group_epoch != w->rd.epoch && ensure_group(w) < 0) {
            wk_sleep_ms(w->health.pause_until_mono > wk_mono_ms() ? wk_health_wait_ms(w)
                                                                  : ERROR_PAUSE_MS);
            continue;
        }
        promote(w);
        feed(w);
        size_t n = read_entries(w, entries, w->max_batch);
        w->ran_full_batch = false;
        if (n == 0)
            continue;
        size_t k = claim_all(w, entries, n, jobs);
        w->ran_full_batch = k > 0 && n >= w->max_batch;
        if (k > 0) {
            char cnt[24];
            snprintf(cnt, sizeof cnt, "%zu", k);
            fleet_log(FLEET_LOG_DEBUG, "running a batch", "jobs", cnt, NULL);
            wk_batch_run(w, jobs, k);
        }
        for (size_t i = 0; i < k; i++) {
            if (jobs[i].claim_reply)
                freeReplyObject(jobs[i].claim_reply);
            jobs[i].claim_reply = NULL;
        }
    }
out:
    free(entries);
    free(jobs);
}
