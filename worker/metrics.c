/* metrics.c: what only a worker knows, reported through Redis for GET /metrics
 * (docs/metrics.md): how long its jobs waited between submit and start, how long they ran,
 * and how large its batches were.
 *
 * The main thread counts each batch into histograms in memory (wk_metrics_batch: no Redis
 * command per job); the keeper thread adds the counts gathered since its last report to
 * the model's metrics hash every WK_METRICS_FLUSH_MS, in one MULTI/EXEC of HINCRBYs and
 * an EXPIRE (wk_metrics_flush), and once more when the worker stops. The hash holds, per
 * histogram, one count per bucket (not cumulative: the gateway sums them up), the sum and
 * the count; every worker of the model adds to the same fields, so the hash is the
 * model's whole histogram. Bucket fields are named by their upper bound in the unit
 * Prometheus shows ("wait:0.25", "run:+Inf", "batch:32"), so a gateway reads any bounds a
 * worker used.
 *
 * Clocks: the wait is the claim's started_ms minus the job's created_ms, both from Redis'
 * clock (claim.lua's reply); the run time is the worker's monotonic clock from the claim
 * to the model's return.
 */
#include <stdio.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

/* Upper bounds of the buckets; a last bucket +Inf holds the rest. */
static const long long wait_le_ms[WK_HIST_BOUNDS] = {
    5,     10,    25,    50,     100,    250,    500,     1000,    2500,    5000,
    10000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000, 7200000, 21600000,
};
static const long long run_le_ms[WK_HIST_BOUNDS] = {
    1,    5,     10,    25,    50,     100,    250,    500,     1000,    2500,
    5000, 10000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000, 7200000,
};
static const long long batch_le[WK_HIST_BOUNDS] = {
    1,    2,    4,    8,    16,    32,    64,    128,    256,    512,
    1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288,
};

static void observe(wk_hist *h, const long long *le, long long v) {
    size_t b = 0;
    while (b < WK_HIST_BOUNDS && v > le[b]) b++;
    h->bucket[b]++;
    h->count++;
    h->sum += (unsigned long long)(v > 0 ? v : 0);
}

void wk_metrics_batch(wk_worker *w, const wk_job *jobs, size_t n, long long ran_mono) {
    pthread_mutex_lock(&w->mu);
    wk_metrics *m = &w->metrics;
    observe(&m->batch, batch_le, (long long)n);
    for (size_t i = 0; i < n; i++) {
        const wk_job *j = &jobs[i];
        observe(&m->run, run_le_ms, ran_mono - j->started_mono);
        /* Submit to the first start: a later attempt's wait would count earlier runs and
         * backoffs, and a job without created_ms (older than protocol 5) has none. */
        if (j->claimed.attempts == 1 && !j->claimed.reclaimed && j->claimed.created_ms > 0 &&
            j->claimed.started_ms >= j->claimed.created_ms)
            observe(&m->wait, wait_le_ms, j->claimed.started_ms - j->claimed.created_ms);
    }
    pthread_mutex_unlock(&w->mu);
}

/* Formats a bound in the unit shown: seconds for a bound in ms, else as it is. */
static void le_text(char *out, size_t len, long long v, bool ms) {
    if (ms) snprintf(out, len, "%g", (double)v / 1000.0);
    else snprintf(out, len, "%lld", v);
}

/* Appends the HINCRBYs of one histogram's non-zero counts; returns how many. */
static int append_hist(wk_redis *rd, const char *key, const char *name, const wk_hist *h,
                       const long long *le, bool ms, int *ok) {
    int sent = 0;
    char field[64], bound[32];
    for (size_t b = 0; b <= WK_HIST_BOUNDS; b++) {
        if (!h->bucket[b]) continue;
        if (b < WK_HIST_BOUNDS) le_text(bound, sizeof bound, le[b], ms);
        else snprintf(bound, sizeof bound, "+Inf");
        snprintf(field, sizeof field, "%s:%s", name, bound);
        *ok &= wk_redis_appendf(rd, "HINCRBY %s %s %llu", key, field, h->bucket[b]) == 0;
        sent++;
    }
    if (!h->count) return sent;
    snprintf(field, sizeof field, "%s:%s", name, ms ? "sum_ms" : "sum");
    *ok &= wk_redis_appendf(rd, "HINCRBY %s %s %llu", key, field, h->sum) == 0;
    snprintf(field, sizeof field, "%s:count", name);
    *ok &= wk_redis_appendf(rd, "HINCRBY %s %s %llu", key, field, h->count) == 0;
    return sent + 2;
}

static void hist_add(wk_hist *to, const wk_hist *from) {
    for (size_t b = 0; b <= WK_HIST_BOUNDS; b++) to->bucket[b] += from->bucket[b];
    to->count += from->count;
    to->sum += from->sum;
}

void wk_metrics_flush(wk_worker *w, wk_redis *rd, bool now) {
    long long mono = wk_mono_ms();
    wk_metrics snap;
    pthread_mutex_lock(&w->mu);
    wk_metrics *m = &w->metrics;
    if ((!now && mono < m->next_flush_mono) || !m->batch.count) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    snap = *m;
    memset(&m->wait, 0, sizeof m->wait);
    memset(&m->run, 0, sizeof m->run);
    memset(&m->batch, 0, sizeof m->batch);
    m->next_flush_mono = mono + WK_METRICS_FLUSH_MS;
    pthread_mutex_unlock(&w->mu);

    fleet_key key = fleet_key_metrics(&w->keys, w->cfg.model);
    int ok = wk_redis_ensure(rd) == 0;
    int n = 0;
    if (ok) {
        ok &= wk_redis_appendf(rd, "MULTI") == 0;
        n += append_hist(rd, key.s, "wait", &snap.wait, wait_le_ms, true, &ok);
        n += append_hist(rd, key.s, "run", &snap.run, run_le_ms, true, &ok);
        n += append_hist(rd, key.s, "batch", &snap.batch, batch_le, false, &ok);
        ok &= wk_redis_appendf(rd, "EXPIRE %s %d", key.s, WK_METRICS_TTL_S) == 0;
        ok &= wk_redis_appendf(rd, "EXEC") == 0;
    }
    /* MULTI, the n HINCRBYs and the EXPIRE are answered +OK / +QUEUED; EXEC by an array
     * once all of them were applied, together, or by an error or nil when Redis refused
     * the transaction (then none was). */
    bool applied = false, lost = false;
    for (int i = 0; ok && i < n + 3; i++) {
        redisReply *r = wk_redis_get_reply(rd);
        if (!r) {
            lost = true;
            break;
        }
        if (i == n + 2) applied = r->type == REDIS_REPLY_ARRAY;
        freeReplyObject(r);
    }
    if (applied) return;
    if (lost) {
        /* The connection went while the transaction was on its way: whether it landed is
         * unknown, and a histogram must not count a job twice, so these counts are lost. */
        fleet_log(FLEET_LOG_WARN, "metrics report lost with the connection to redis", NULL);
        return;
    }
    /* Refused, or never sent (no connection): the counts wait for the next report. */
    pthread_mutex_lock(&w->mu);
    hist_add(&m->wait, &snap.wait);
    hist_add(&m->run, &snap.run);
    hist_add(&m->batch, &snap.batch);
    pthread_mutex_unlock(&w->mu);
}
