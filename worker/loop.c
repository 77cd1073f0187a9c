/* loop.c: fleet-worker's main loop. Each turn claims up to max_batch jobs of the model's
 * stream in the consumer group, runs the claimed ones as one batch (batch_run.c) and
 * finishes them. The claim script reads the stream itself (read slots, docs/protocol.md),
 * and the claim of the next batch goes in the same write as the finish of the last one, so
 * a worker under load needs one round trip per batch. Dynamic batching: an idle worker
 * blocks for the first entry and starts at once; a busy one waits at most max_delay_ms for
 * a fuller batch.
 *
 * Entries that another worker took and never finished (it crashed) are taken over with
 * XAUTOCLAIM once they have been pending for a lease (a live worker renews its jobs'
 * leases and keeps their entries fresh, see keeper.c); the claim script decides whether
 * the job runs again, or fails and is dead-lettered. An entry left pending by a failed
 * claim is retried the same way, so nothing read from the stream is forgotten. Jobs
 * requeued with a backoff wait in the model's delayed set until promote() puts them back
 * on the stream.
 *
 * Shards (shards.h): the model's stream is read on every shard of the table, one consumer
 * group per shard stream. A turn starts with the next shard in rotation and claims from
 * one shard after the other until the batch is full (so a batch may gather jobs of
 * several shards, and a shard with a backlog cannot starve the others: each turn starts
 * elsewhere); every job's later writes use its shard's keys. Idle, the loop blocks on one
 * shard at a time for WK_SLICE_MS (worker.h). With one shard (no table) a turn is exactly
 * the single claim and the 1 s BLOCK of a fleet without shards.
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
#define READ_BLOCK_MS \
    1000L /* shorter than the socket timeout (redis.h): hiredis
                                  * ends a read that blocks past it as an error */
#define ERROR_PAUSE_MS 1000L
#define PROMOTE_MS 250L

/* ---------------------------------------------------------------- stream entries --- */

static bool is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* ack_bad_entry removes an entry that does not name a valid job: it can never run, and
 * left pending it would be reclaimed forever. */
static void ack_bad_entry(wk_worker *w, wk_shard *sh, const char *entry_id) {
    fleet_log(FLEET_LOG_WARN, "stream entry without a valid job id dropped", "entry_id", entry_id,
              NULL);
    redisReply *r = wk_redis_cmdf(&w->rd, sh->stream.s, "XACK %s %s %s", sh->stream.s, FLEET_GROUP, entry_id);
    if (r) freeReplyObject(r);
    r = wk_redis_cmdf(&w->rd, sh->stream.s, "XDEL %s %s", sh->stream.s, entry_id);
    if (r) freeReplyObject(r);
}

/* take_entries appends the [id, [field, value, ...]] items of arr to out[*n..max). */
static void take_entries(wk_worker *w, wk_shard *sh, const redisReply *arr, wk_entry *out,
                         size_t *n, size_t max) {
    if (!arr || arr->type != REDIS_REPLY_ARRAY) return;
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
            ack_bad_entry(w, sh, entry_id);
            continue;
        }
        wk_entry *dst = &out[(*n)++];
        snprintf(dst->entry_id, sizeof dst->entry_id, "%s", entry_id);
        snprintf(dst->job_id, sizeof dst->job_id, "%s", job);
    }
}

/* ensure_group creates the consumer group (and the stream) unless it exists. Redone after
 * each reconnect, since a restarted server without persistence has neither. */
static int ensure_group(wk_worker *w, wk_shard *sh) {
    redisReply *r = wk_redis_cmdf(&w->rd, sh->stream.s, "XGROUP CREATE %s %s 0 MKSTREAM", sh->stream.s,
                                  FLEET_GROUP);
    if (!r) return -1;
    int rc = 0;
    if (wk_health_refused(w, r, "XGROUP CREATE")) {
        rc = -1; /* loading, or full: the loop waits out the pause and tries again */
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot create the consumer group", "stream", sh->stream.s,
                  "error", r->str, NULL);
        rc = -1;
    }
    freeReplyObject(r);
    if (rc == 0) sh->group_epoch = w->rd.epoch;
    return rc;
}

/* any_group_ready: some shard read has its consumer group on the current connection. */
static bool any_group_ready(const wk_worker *w) {
    for (size_t i = 0; i < w->shards.n; i++)
        if (w->sh[w->shards.all[i]].group_epoch == w->rd.epoch) return true;
    return false;
}


/* ensure_groups makes the groups that are missing. With one shard, returns -1 when it
 * failed. With several, a shard whose group failed (its master is down on a cluster) is
 * tried again a second later and the others are read meanwhile: -1 only when no shard
 * has its group. */
static int ensure_groups(wk_worker *w) {
    size_t ready = 0;
    long long now = wk_mono_ms();
    for (size_t i = 0; i < w->shards.n; i++) {
        wk_shard *sh = &w->sh[w->shards.all[i]];
        if (sh->group_epoch == w->rd.epoch) {
            ready++;
            continue;
        }
        if (w->shards.n > 1 && now < sh->group_retry_mono) continue;
        if (ensure_group(w, sh) == 0) ready++;
        else sh->group_retry_mono = now + ERROR_PAUSE_MS;
        if (!w->rd.c) return -1;
    }
    return ready > 0 ? 0 : -1;
}

/* reply_failed logs an error reply of a stream command and arranges what fixes it.
 * Returns true when r was an error. */
static bool reply_failed(wk_worker *w, wk_shard *sh, const redisReply *r, const char *what) {
    if (r->type != REDIS_REPLY_ERROR) return false;
    if (wk_health_refused(w, r, what)) return true; /* the loop waits out the pause */
    if (strncmp(r->str, "NOGROUP", 7) == 0) {
        sh->group_epoch = 0; /* the stream or group vanished (server restart, FLUSHALL) */
        fleet_log(FLEET_LOG_WARN, "consumer group missing; recreating it", "stream", sh->stream.s,
                  NULL);
    } else {
        fleet_log(FLEET_LOG_ERROR, what, "stream", sh->stream.s, "error", r->str, NULL);
        wk_sleep_ms(ERROR_PAUSE_MS); /* a refused command would refuse again at once */
    }
    return true;
}

/* recover_entry deals with a pending entry that was deleted from the stream by hand
 * (XAUTOCLAIM reports it, and has already dropped it from the pending list): its job, if it
 * has not ended, gets a new entry. */
static void recover_entry(wk_worker *w, wk_shard *sh, const char *entry_id) {
    fleet_cmd cmd;
    const char *job = "";
    fleet_state_recover(sh->keys, w->cfg.model, entry_id, &cmd);
    redisReply *r = wk_redis_script(&w->rd, &cmd);
    /* XAUTOCLAIM has dropped the entry already: this is the job's only way back, so a
     * refusal for now is waited out rather than given up. */
    while (r && wk_health_refused(w, r, "recover") && !wk_stopping(w)) {
        freeReplyObject(r);
        wk_sleep_ms(wk_health_wait_ms(w));
        fleet_state_recover(sh->keys, w->cfg.model, entry_id, &cmd);
        r = wk_redis_script(&w->rd, &cmd);
    }
    int rc = r ? fleet_state_recover_reply(r, &job) : -1;
    fleet_log(rc == 1 ? FLEET_LOG_WARN : FLEET_LOG_ERROR,
              rc == 1   ? "a pending stream entry was deleted by hand; its job was queued again"
              : rc == 0 ? "a pending stream entry was deleted by hand; its job had ended"
                        : "a pending stream entry was deleted by hand; recovering its job failed",
              "entry_id", entry_id, job[0] ? "job_id" : NULL, job, NULL);
    if (r) freeReplyObject(r);
}

/* promote puts jobs whose retry backoff has passed back on the stream. Every few hundred
 * milliseconds: the delayed set is small and a look at it is one ZRANGEBYSCORE. */
static void promote(wk_worker *w, wk_shard *sh) {
    long long now = wk_mono_ms();
    if (now < sh->next_promote_mono) return;
    sh->next_promote_mono = now + PROMOTE_MS;
    fleet_cmd cmd;
    fleet_state_promote(sh->keys, w->cfg.model, 100, &cmd);
    redisReply *r = wk_redis_script(&w->rd, &cmd);
    if (!r) return;
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
static void reclaim(wk_worker *w, wk_shard *sh, wk_entry *out, size_t *n, size_t max) {
    long long now = wk_mono_ms();
    if (now < sh->next_reclaim_mono || *n >= max) return;
    long every = w->cfg.lease_ms / 4;
    every = every < 1000 ? 1000 : every > 5000 ? 5000 : every;
    sh->next_reclaim_mono = now + every;

    redisReply *r = wk_redis_cmdf(&w->rd, sh->stream.s, "XAUTOCLAIM %s %s %s %ld %s COUNT %lu", sh->stream.s,
                                  FLEET_GROUP, w->cfg.name, w->cfg.lease_ms, sh->reclaim_cursor,
                                  (unsigned long)(max - *n)); /* hiredis knows no %zu */
    if (!r) return;
    if (reply_failed(w, sh, r, "XAUTOCLAIM failed")) {
        freeReplyObject(r);
        return;
    }
    /* Redis 7: [next cursor, entries, ids of entries deleted while pending]. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && is_str(r->element[0])) {
        snprintf(sh->reclaim_cursor, sizeof sh->reclaim_cursor, "%s", r->element[0]->str);
        take_entries(w, sh, r->element[1], out, n, max);
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < r->element[2]->elements; i++)
                if (is_str(r->element[2]->element[i]))
                    recover_entry(w, sh, r->element[2]->element[i]->str);
    }
    freeReplyObject(r);
}

/* xread appends what one XREADGROUP returns to out[*n..max). block_ms < 0: no BLOCK.
 * Returns 0, or -1 when the read failed (connection lost or an error reply). */
static int xread(wk_worker *w, wk_shard *sh, wk_entry *out, size_t *n, size_t max,
                 long block_ms) {
    /* Two formats: a %s that expands to "BLOCK n" would be sent as one argument. */
    unsigned long count = (unsigned long)(max - *n);
    redisReply *r = block_ms >= 0
                        ? wk_redis_cmdf(&w->rd, sh->stream.s,
                                        "XREADGROUP GROUP %s %s COUNT %lu BLOCK %ld STREAMS %s >",
                                        FLEET_GROUP, w->cfg.name, count, block_ms, sh->stream.s)
                        : wk_redis_cmdf(&w->rd, sh->stream.s, "XREADGROUP GROUP %s %s COUNT %lu STREAMS %s >",
                                        FLEET_GROUP, w->cfg.name, count, sh->stream.s);
    if (!r) return -1;
    if (reply_failed(w, sh, r, "XREADGROUP failed")) {
        freeReplyObject(r);
        return -1;
    }
    /* NIL on timeout; else [[stream, [entries...]]]. */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2)
        take_entries(w, sh, r->element[0]->element[1], out, n, max);
    freeReplyObject(r);
    return 0;
}

/* ---------------------------------------------------------------- claiming --------- */

/* A read slot of a claim: no entry named, the script reads the next new one itself. */
static const wk_entry read_slot;

/* build_claims builds the claim commands of the slots sent[0..m) with their tokens: the
 * named entries first, then the read slots (&read_slot). One command holds the whole
 * batch (claim.lua takes many) unless it is too long for one. Sets per[c] to how many
 * slots command c holds; returns how many commands. */
static size_t build_claims(wk_worker *w, wk_shard *sh, const wk_entry *const *sent,
                           char (*tokens)[WK_TOKEN_LEN + 1], size_t m, fleet_claim *cls,
                           fleet_cmd *cmds, size_t *per) {
    for (size_t i = 0; i < m; i++)
        cls[i] = (fleet_claim){.id = sent[i]->job_id,
                               .model = w->cfg.model,
                               .entry_id = sent[i]->entry_id,
                               .worker = w->cfg.name,
                               .token = tokens[i],
                               .lease_ms = w->cfg.lease_ms,
                               .dlq_cap = w->cfg.dlq_cap};
    size_t nc = 0;
    for (size_t i = 0; i < m; nc++) {
        per[nc] = fleet_state_claim(sh->keys, &cls[i], m - i, &cmds[nc]);
        i += per[nc];
    }
    return nc;
}

/* feed_cmd builds the feed that goes before a claim with read slots, in the same write:
 * it moves waiting jobs of the tenants onto the stream, fairly (feed.lua), so that at
 * least a batch is ready to read. */
static void feed_cmd(wk_worker *w, const wk_shard *sh, fleet_cmd *cmd) {
    long target = (long)w->max_batch > w->cfg.ready_target ? (long)w->max_batch
                                                           : w->cfg.ready_target;
    fleet_state_feed(sh->keys, w->cfg.model, target, cmd);
}

/* feed_done reads a feed's reply (NULL: lost with the connection) and frees it. */
static void feed_done(wk_worker *w, redisReply *r) {
    if (!r) return;
    if (!wk_health_refused(w, r, "feed") && r->type == REDIS_REPLY_ERROR)
        fleet_log(FLEET_LOG_ERROR, "feed script failed", "error", r->str, NULL);
    freeReplyObject(r);
}

/* claim_one reads the claim reply rep of entry e: sets up jobs[*kp] when the job was
 * claimed (returns true), logs what happened otherwise. */
static bool claim_one(wk_worker *w, const wk_shard *sh, const wk_entry *e, const char *token,
                      const redisReply *rep, long long now, wk_job *jobs, size_t *kp) {
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
        j->keys = sh->keys;
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
        fleet_log(FLEET_LOG_INFO, "job expired while queued; entry dropped", "job_id", e->job_id,
                  NULL);
        break;
    case FLEET_CLAIM_CANCELLED:
        fleet_log(FLEET_LOG_INFO, "job was cancelled before it could run again; it will not run",
                  "job_id", e->job_id, NULL);
        break;
    case FLEET_CLAIM_DEAD:
        fleet_log(FLEET_LOG_WARN, "job failed and was dead-lettered", "job_id", e->job_id, "error",
                  got.why, NULL);
        break;
    case FLEET_CLAIM_SKIP:
        fleet_log(FLEET_LOG_DEBUG, "entry not claimed", "job_id", e->job_id, "why", got.why, NULL);
        break;
    case FLEET_CLAIM_ERROR:
        fleet_log(FLEET_LOG_ERROR, "claim script failed; entry left for reclaim", "job_id",
                  e->job_id, "error",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
        break;
    }
    return false;
}

/* claim_items reads rep, the reply of one claim command whose slots were sent[0..m) with
 * tokens[0..m) (named entries first, then read slots): sets up jobs[*kp..] for the jobs
 * claimed and adds to *nread the entries it read or named. rep goes to the first job it
 * claimed (its claim_reply owns the inputs of that command's jobs) or is freed. */
static void claim_items(wk_worker *w, wk_shard *sh, redisReply *rep, const wk_entry *const *sent,
                        char (*tokens)[WK_TOKEN_LEN + 1], size_t m, long long now, wk_job *jobs,
                        size_t *kp, size_t *nread) {
    size_t named = 0, first = *kp;
    while (named < m && sent[named] != &read_slot) named++;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (strncmp(rep->str, "NOGROUP", 7) == 0) {
            /* The read slots' XREADGROUP found no group (a server restart, FLUSHALL):
             * nothing was written; the group is made again before the next claim. */
            sh->group_epoch = 0;
            fleet_log(FLEET_LOG_WARN, "consumer group missing; recreating it", "stream",
                      sh->stream.s, NULL);
        } else {
            fleet_log(FLEET_LOG_ERROR, "claim script failed; entries left for reclaim", "jobs",
                      named ? sent[0]->job_id : "(read slots)", "error", rep->str, NULL);
        }
        freeReplyObject(rep);
        return;
    }
    for (size_t i = 0; i < named; i++)
        claim_one(w, sh, sent[i], tokens[i], fleet_state_batch_item(rep, i), now, jobs, kp);
    *nread += named;
    for (size_t i = named; i < m && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const char *entry_id = "", *job_id = "";
        const redisReply *item = fleet_state_claim_read_item(rep->element[i], &entry_id, &job_id);
        if (!item) {
            fleet_log(FLEET_LOG_ERROR, "claim reply: a read item of an unexpected shape", NULL);
            continue;
        }
        (*nread)++;
        if (!job_id[0]) {
            fleet_log(FLEET_LOG_WARN, "stream entry without a valid job id dropped", "entry_id",
                      entry_id, NULL);
            continue;
        }
        wk_entry e;
        if (strlen(entry_id) >= sizeof e.entry_id || strlen(job_id) >= sizeof e.job_id) {
            fleet_log(FLEET_LOG_ERROR, "claim reply: an entry or job id too long", NULL);
            continue;
        }
        snprintf(e.entry_id, sizeof e.entry_id, "%s", entry_id);
        snprintf(e.job_id, sizeof e.job_id, "%s", job_id);
        claim_one(w, sh, &e, tokens[i], item, now, jobs, kp); /* the i-th slot's token */
    }
    if (*kp > first) jobs[first].claim_reply = rep;
    else freeReplyObject(rep);
}

/* claim_replies reads the replies reps[0..nc) of the claim commands of the slots
 * sent[0..m) (command c held per[c] slots): sets up jobs[*kp..] for the claimed ones and
 * counts in *nread the entries named or read. The slots of a command that Redis refused
 * for now (the script did not run) are moved, with their tokens, to the front of sent
 * and tokens; returns how many. */
static size_t claim_replies(wk_worker *w, wk_shard *sh, const wk_entry **sent,
                            char (*tokens)[WK_TOKEN_LEN + 1],
                            redisReply **reps, size_t nc, const size_t *per, wk_job *jobs,
                            size_t *kp, size_t *nread) {
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
            for (size_t i = at; i < at + per[c] && sent[i] != &read_slot; i++)
                fleet_log(FLEET_LOG_WARN,
                          "claim reply lost with the connection; entry left for reclaim", "job_id",
                          sent[i]->job_id, NULL);
            continue;
        }
        claim_items(w, sh, rep, sent + at, tokens + at, per[c], now, jobs, kp, nread);
    }
    return again;
}

/* claim_all claims the named entries[0..n) and up to `reads` new entries of the stream
 * (read by the claim script itself, after a feed sent in the same write) in one script
 * call (or a few, for a very large batch), and sets up jobs[*k..] for those that may
 * run. Adds to *nread how many entries were named or read. The jobs' claim replies are
 * the caller's to free (set on the first job of each command). A claim that Redis
 * refused for now (loading, busy, full: the script did not run) is sent again after a
 * backoff, until it gets an answer or the worker stops (its entries are then left for
 * reclaim). */
static void claim_all(wk_worker *w, wk_shard *sh, const wk_entry *entries, size_t n, size_t reads,
                      wk_job *jobs, size_t *k, size_t *nread) {
    size_t slots = n + reads;
    if (slots == 0) return;
    fleet_cmd *cmds = calloc(slots + 1, sizeof *cmds);
    fleet_claim *cls = calloc(slots, sizeof *cls);
    size_t *per = calloc(slots, sizeof *per);
    redisReply **reps = calloc(slots + 1, sizeof *reps);
    char(*tokens)[WK_TOKEN_LEN + 1] = calloc(slots, sizeof *tokens);
    const wk_entry **sent = calloc(slots, sizeof *sent);
    size_t m = 0;

    if (!cmds || !cls || !per || !reps || !tokens || !sent) {
        fleet_log(FLEET_LOG_ERROR, "out of memory claiming a batch; entries left for reclaim",
                  NULL);
        goto out;
    }
    if (wk_tokens_new(tokens, slots) < 0) {
        fleet_log(FLEET_LOG_ERROR, "no randomness for lease tokens; entries left for reclaim",
                  NULL);
        goto out;
    }
    for (size_t i = 0; i < slots; i++) sent[m++] = i < n ? &entries[i] : &read_slot;
    while (m > 0) {
        bool feeds = sent[m - 1] == &read_slot; /* read slots go last */
        if (feeds) feed_cmd(w, sh, &cmds[0]);
        size_t nc = build_claims(w, sh, sent, tokens, m, cls, cmds + feeds, per);
        wk_redis_ensure(&w->rd); /* the read may have ended with the connection */
        wk_redis_scripts(&w->rd, cmds, nc + feeds, reps);
        if (feeds) feed_done(w, reps[0]);
        size_t again = claim_replies(w, sh, sent, tokens, reps + feeds, nc, per, jobs, k, nread);
        if (again > 0 && wk_stopping(w)) {
            for (size_t i = 0; i < again && sent[i] != &read_slot; i++)
                fleet_log(FLEET_LOG_WARN,
                          "claim refused by redis at shutdown; entry left for reclaim", "job_id",
                          sent[i]->job_id, NULL);
            break;
        }
        if (again > 0) wk_sleep_ms(wk_health_wait_ms(w));
        m = again;
    }
out:
    free(cmds);
    free(cls);
    free(per);
    free(reps);
    free(tokens);
    free(sent);
}

/* ---------------------------------------------------------------- shards ----------- */

/* The shard a turn starts with: the next in rotation. */
static wk_shard *start_shard(wk_worker *w) {
    return &w->sh[w->shards.all[w->rot % w->shards.n]];
}

/* shards_apply makes w read the shards of s: a shard new to the worker (or whose tag
 * changed) starts without a group and with its reclaim cursor at the start. */
static void shards_apply(wk_worker *w, const fleet_shards *s) {
    w->shards = *s;
    bool in[FLEET_SHARDS_MAX] = {0};
    for (size_t i = 0; i < w->shards.n; i++) {
        int k = w->shards.all[i];
        wk_shard *sh = &w->sh[k];
        in[k] = true;
        sh->keys = &w->shards.shard[k].keys;
        fleet_key stream = fleet_key_stream(sh->keys, w->cfg.model);
        if (sh->used && strcmp(stream.s, sh->stream.s) == 0) continue;
        *sh = (wk_shard){.used = true, .keys = sh->keys, .stream = stream};
        snprintf(sh->reclaim_cursor, sizeof sh->reclaim_cursor, "0-0");
    }
    for (int k = 0; k < FLEET_SHARDS_MAX; k++)
        if (!in[k]) w->sh[k].used = false;
    /* The keeper tidies and deregisters on every shard's stream. */
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->shards.n; i++)
        w->shard_keys[i] = w->shards.shard[w->shards.all[i]].keys;
    w->nshard_keys = w->shards.n;
    pthread_mutex_unlock(&w->mu);
}

/* load_shards reads the shard table (a control key) every WK_SHARDS_RELOAD_MS and, when it
 * changed, serves the shards it names. Between batches only (jobs point at their shard's
 * keys). An unreadable table keeps the shards served. */
static void load_shards(wk_worker *w) {
    long long now = wk_mono_ms();
    if (now < w->next_shards_mono) return;
    w->next_shards_mono = now + WK_SHARDS_RELOAD_MS;
    fleet_key key = fleet_key_shards(&w->keys);
    redisReply *r = wk_redis_cmdf(&w->rd, key.s, "GET %s", key.s);
    if (!r) return;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL) {
        if (!wk_health_refused(w, r, "shard table"))
            fleet_log(FLEET_LOG_ERROR, "cannot read the shard table", "key", key.s, "error",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply", NULL);
        freeReplyObject(r);
        return;
    }
    const char *text = r->type == REDIS_REPLY_STRING ? r->str : "";
    if (strcmp(text, w->shards_text) != 0) {
        fleet_shards next = w->shards;
        char why[200];
        if (strlen(text) >= sizeof w->shards_text ||
            fleet_shards_parse(&next, text, why, sizeof why) < 0) {
            fleet_log(FLEET_LOG_ERROR, "shard table unreadable; serving the shards as before",
                      "key", key.s, "table", text, "error", why, NULL);
            w->next_shards_mono = now + WK_SHARDS_RELOAD_MS * 5;
        } else {
            shards_apply(w, &next);
            snprintf(w->shards_text, sizeof w->shards_text, "%s", text);
            char n[24];
            snprintf(n, sizeof n, "%zu", w->shards.n);
            fleet_log(FLEET_LOG_INFO, "serving the shards of the table", "shards", n, "table",
                      text[0] ? text : "(none: one shard)", NULL);
        }
    }
    freeReplyObject(r);
}

/* ---------------------------------------------------------------- claim ahead ------ */

/* The claim of the next batch goes in the same write as the finish of the one before
 * (wk_ahead_build, called by batch_run.c's final writes): a worker under load then reads
 * and claims a batch, and writes the last one's results, in one round trip. Its reply
 * waits in w->ahead for the next turn of the loop. It reads the shard the next turn
 * starts with. */

size_t wk_ahead_build(wk_worker *w, fleet_cmd *cmds) {
    if (w->ahead || !w->ahead_tokens || wk_stopping(w) || !w->rd.c) return 0;
    wk_shard *sh = start_shard(w);
    if (sh->group_epoch != w->rd.epoch || wk_mono_ms() >= sh->next_reclaim_mono ||
        !wk_health_may_claim(w))
        return 0; /* the next turn claims as usual: taken-over entries go first */
    fleet_claim cl[WK_AHEAD_MAX];
    size_t n = w->max_batch < WK_AHEAD_MAX ? w->max_batch : WK_AHEAD_MAX;
    if (wk_tokens_new(w->ahead_tokens, n) < 0) return 0;
    for (size_t i = 0; i < n; i++) {
        cl[i] = (fleet_claim){.id = "",
                              .model = w->cfg.model,
                              .entry_id = "",
                              .worker = w->cfg.name,
                              .token = w->ahead_tokens[i],
                              .lease_ms = w->cfg.lease_ms,
                              .dlq_cap = w->cfg.dlq_cap};
    }
    feed_cmd(w, sh, &cmds[0]);
    w->ahead_n = fleet_state_claim(sh->keys, cl, n, &cmds[1]);
    w->ahead_shard = (int)(sh - w->sh);
    return 2;
}

void wk_ahead_keep(wk_worker *w, redisReply **reps) {
    feed_done(w, reps[0]);
    redisReply *r = reps[1];
    reps[0] = reps[1] = NULL;
    if (!r) {
        /* It may have run: the entries it read are claimed under tokens nobody holds, and
         * run again once their lease runs out (XAUTOCLAIM), like any lost claim reply. */
        fleet_log(FLEET_LOG_WARN, "claim reply lost with the connection; entries left for reclaim",
                  NULL);
        return;
    }
    if (wk_health_refused(w, r, "claim")) {
        freeReplyObject(r); /* it did not run: the next turn claims again */
        return;
    }
    w->ahead = r;
}

/* ahead_claimed sets up jobs[*k..] from the claim sent ahead (w->ahead), and adds to
 * *nread the entries it read. */
static void ahead_claimed(wk_worker *w, wk_job *jobs, size_t *k, size_t *nread) {
    const wk_entry *slots[WK_AHEAD_MAX];
    for (size_t i = 0; i < w->ahead_n; i++) slots[i] = &read_slot;
    redisReply *r = w->ahead;
    w->ahead = NULL;
    claim_items(w, &w->sh[w->ahead_shard], r, slots, w->ahead_tokens, w->ahead_n, wk_mono_ms(),
                jobs, k, nread);
}

/* claim_round claims on the shards in rotation, from the turn's first one plus skip,
 * until the batch is full: on each, the entries to take over (with entries != NULL:
 * XAUTOCLAIM, at most every few seconds) and then new ones read by the claim script. Adds
 * to *k the jobs claimed and to *nread the entries named or read. */
static void claim_round(wk_worker *w, size_t skip, wk_entry *entries, wk_job *jobs, size_t *k,
                        size_t *nread) {
    size_t ns = w->shards.n;
    for (size_t i = skip; i < ns && *nread < w->max_batch; i++) {
        wk_shard *sh = &w->sh[w->shards.all[(w->rot + i) % ns]];
        if (sh->group_epoch != w->rd.epoch) continue; /* made again first (the loop) */
        size_t m = 0;
        if (entries) reclaim(w, sh, entries, &m, w->max_batch - *nread);
        claim_all(w, sh, entries, m, w->max_batch - *nread - m, jobs, k, nread);
        if (!w->rd.c) break;
    }
}

/* fill waits up to max_delay_ms for a batch of a worker under load to fill: claim scripts
 * that read what came since, a few milliseconds apart. The wait polls: Redis expires a
 * BLOCK only on its server cron (every 100 ms at the default hz 10), so "BLOCK 5" can take
 * 100 ms. */
static void fill(wk_worker *w, wk_job *jobs, size_t *k, size_t *n) {
    long step = w->cfg.max_delay_ms / 5; /* about five polls per fill, 1..20 ms apart */
    step = step < 1 ? 1 : step > 20 ? 20 : step;
    long long deadline = wk_mono_ms() + w->cfg.max_delay_ms;
    while (*n < w->max_batch && !wk_stopping(w)) {
        size_t before = *n;
        claim_round(w, 0, NULL, jobs, k, n);
        if (!w->rd.c) break;
        long long left = deadline - wk_mono_ms();
        if (left <= 0) break;
        if (*n == before) wk_sleep_ms(step < left ? step : (long)left);
    }
}

/* idle_read blocks until an entry comes on any shard, for at most READ_BLOCK_MS, and
 * claims what it read: one shard's stream for READ_BLOCK_MS, or with several shards one
 * after the other for WK_SLICE_MS each. */
static void idle_read(wk_worker *w, wk_entry *entries, wk_job *jobs, size_t *k, size_t *n) {
    size_t ns = w->shards.n;
    long long until = wk_mono_ms() + READ_BLOCK_MS;
    for (size_t i = 0; !wk_stopping(w); i++) {
        wk_shard *sh = &w->sh[w->shards.all[(w->rot + i) % ns]];
        size_t m = 0;
        if (sh->group_epoch != w->rd.epoch) {
            /* A reconnect (on a cluster: any map read) makes every group again first. */
            if (!any_group_ready(w) || wk_mono_ms() >= until) return;
            continue; /* another one is ready */
        }
        if (xread(w, sh, entries, &m, w->max_batch, ns == 1 ? READ_BLOCK_MS : WK_SLICE_MS) < 0) {
            /* Several shards on a cluster: one master may be down while the others serve;
             * a pause keeps this from spinning until its replica took over. */
            if (ns > 1) wk_sleep_ms(WK_SLICE_MS);
            return;
        }
        if (m > 0) {
            claim_all(w, sh, entries, m, 0, jobs, k, n);
            return;
        }
        if (ns == 1 || wk_mono_ms() >= until) return;
    }
}

/* ---------------------------------------------------------------- the loop --------- */

/* take fills jobs[0..) for one turn and returns how many were claimed; *n: how many
 * entries were read or named. A worker whose last turn did not run a full batch is not
 * saturated: it takes what is there or waits for the first entry (blocking up to
 * READ_BLOCK_MS) and starts that batch at once; the entries that arrive while the model
 * runs make the next one (Triton's dynamic batcher never makes an idle server wait for
 * company). A worker that just ran a full batch is under load: it waits up to
 * max_delay_ms for the next one to fill. */
static size_t take(wk_worker *w, wk_entry *entries, wk_job *jobs, size_t *n) {
    size_t k = 0;
    *n = 0;
    if (w->ahead) {
        ahead_claimed(w, jobs, &k, n);
        /* It read the turn's first shard only: the others fill the rest. */
        if (w->shards.n > 1 && *n < w->max_batch) claim_round(w, 1, entries, jobs, &k, n);
    } else {
        claim_round(w, 0, entries, jobs, &k, n);
    }
    if (*n == 0) {
        /* Nothing there: the first entry that comes starts a batch at once (a shard whose
         * claim found no group is made again by the next turn first). */
        idle_read(w, entries, jobs, &k, n);
    } else if (w->ran_full_batch && *n < w->max_batch && w->cfg.max_delay_ms > 0) {
        fill(w, jobs, &k, n);
    }
    w->rot++; /* the next turn starts on the next shard: none starves */
    return k; /* none: an idle turn lets the loop check signals and heartbeats */
}

void wk_loop_run(wk_worker *w) {
    wk_entry *entries = calloc(w->max_batch, sizeof *entries);
    wk_job *jobs = calloc(w->max_batch, sizeof *jobs);
    w->ahead_tokens = calloc(WK_AHEAD_MAX, sizeof *w->ahead_tokens);

    if (!entries || !jobs || !w->ahead_tokens) {
        fleet_log(FLEET_LOG_ERROR, "out of memory", NULL);
        goto out;
    }
    /* Shard 0 alone until the table is read: a fleet without a table has just that. */
    fleet_shards one;
    fleet_shards_init(&one, w->cfg.prefix);
    shards_apply(w, &one);
    /* Claim nothing until the control channel listens (worker.h, control_subscribed);
     * past CONTROL_WAIT_MS go on: the lease renewal still hears a cancel within 1 s. */
    long long control_deadline = wk_mono_ms() + CONTROL_WAIT_MS;
    while (!wk_stopping(w) && !atomic_load(&w->control_subscribed) &&
           wk_mono_ms() < control_deadline)
        wk_sleep_ms(5);
    /* A batch claimed ahead is run even when a stop came since: its jobs are this
     * worker's, and the batch ends (or hands them back) within the drain time. */
    while (!wk_stopping(w) || w->ahead) {
        wk_keeper_poke(w);
        if (!w->ahead) {
            if (wk_redis_ensure(&w->rd) < 0) {
                long wait = wk_redis_retry_in_ms(&w->rd);
                wk_sleep_ms(wait > 0 ? wait : 1);
                continue;
            }
            if (!wk_health_may_claim(w)) {
                wk_sleep_ms(wk_health_wait_ms(w)); /* loading, full, or an evicting policy */
                continue;
            }
            load_shards(w);
            if (ensure_groups(w) < 0) {
                wk_sleep_ms(w->health.pause_until_mono > wk_mono_ms() ? wk_health_wait_ms(w)
                                                                      : ERROR_PAUSE_MS);
                continue;
            }
            for (size_t i = 0; i < w->shards.n; i++) promote(w, &w->sh[w->shards.all[i]]);
        }
        size_t n = 0;
        size_t k = take(w, entries, jobs, &n);
        w->ran_full_batch = k > 0 && n >= w->max_batch;
        if (k > 0) {
            char cnt[24];
            snprintf(cnt, sizeof cnt, "%zu", k);
            fleet_log(FLEET_LOG_DEBUG, "running a batch", "jobs", cnt, NULL);
            wk_batch_run(w, jobs, k);
        }
        for (size_t i = 0; i < k; i++) {
            if (jobs[i].claim_reply) freeReplyObject(jobs[i].claim_reply);
            jobs[i].claim_reply = NULL;
        }
    }
out:
    if (w->ahead) freeReplyObject(w->ahead);
    w->ahead = NULL;
    free(w->ahead_tokens);
    w->ahead_tokens = NULL;
    free(entries);
    free(jobs);
}
