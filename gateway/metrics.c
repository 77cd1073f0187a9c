/* metrics.c: GET /metrics (metrics.h, docs/metrics.md). */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "fleet/log.h"
#include "fleet/state.h"
#include "redis.h"
#include "routes.h"

#ifndef FLEET_VERSION
#define FLEET_VERSION "unknown"
#endif

/* How much of a model's queue the oldest-age look reads per scrape (metrics.lua): ids per
 * place (the stream's undelivered entries, due retries) and tenants' wait lists. */
#define SCRAPE_SCAN 64
#define SCRAPE_TENANTS 256

/* ------------------------------------------------------------ per-process counters -- *
 * This gateway's own series, touched only by its event loop. Their label values come
 * from fixed sets (route templates, methods, status codes, outcomes), and the tables are
 * capped besides: a series past the cap is counted under route and method "other" (past
 * OTHER_ROOM status codes there too, it is not counted). */

#define MAX_REQ_SERIES 256
#define MAX_DUR_SERIES 64
#define ROUTE_MAX 64

static const double dur_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};
#define DUR_BOUNDS (sizeof dur_le / sizeof *dur_le)

typedef struct req_series {
    char route[ROUTE_MAX];
    char method[12];
    int code;
    unsigned long long n;
} req_series;

typedef struct dur_series {
    char route[ROUTE_MAX];
    char method[12];
    unsigned long long bucket[DUR_BOUNDS + 1]; /* per bucket; the last is +Inf */
    unsigned long long count;
    double sum;
} dur_series;

static req_series reqs[MAX_REQ_SERIES];
static size_t nreqs;
static dur_series durs[MAX_DUR_SERIES];
static size_t ndurs;

static const char *const webhook_outcomes[] = {"delivered", "retry", "failed"};
static unsigned long long webhook_counts[3];

/* The series of (route, method, code), added when new while the table holds fewer than
 * limit: a route's series stop OTHER_ROOM short of the cap, so that route "other" always
 * has room. */
#define OTHER_ROOM 64
static req_series *req_slot(const char *route, const char *method, int code, size_t limit) {
    for (size_t i = 0; i < nreqs; i++)
        if (reqs[i].code == code && strcmp(reqs[i].route, route) == 0 &&
            strcmp(reqs[i].method, method) == 0)
            return &reqs[i];
    if (nreqs >= limit) return NULL;
    req_series *s = &reqs[nreqs++];
    snprintf(s->route, sizeof s->route, "%s", route);
    snprintf(s->method, sizeof s->method, "%s", method);
    s->code = code;
    return s;
}

static dur_series *dur_slot(const char *route, const char *method, size_t limit) {
    for (size_t i = 0; i < ndurs; i++)
        if (strcmp(durs[i].route, route) == 0 && strcmp(durs[i].method, method) == 0)
            return &durs[i];
    if (ndurs >= limit) return NULL;
    dur_series *s = &durs[ndurs++];
    snprintf(s->route, sizeof s->route, "%s", route);
    snprintf(s->method, sizeof s->method, "%s", method);
    return s;
}

/* The clock of gw_req.start_us (http.c). */
static uint64_t now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

void gw_metrics_request_done(const gw_req *r) {
    const char *route = gw_route_template(r);
    if (!route) route = "other"; /* no route matched: 404, 405, or refused before routing */
    const char *method = htparser_get_methodstr_m(r->req->method);
    if (!method) method = "other";
    /* A stream (SSE, a result) is answered by libevhtp's chunked replies, not
     * gw_reply_bytes: libevhtp knows its status. */
    int code = r->status ? r->status : (int)evhtp_request_get_status_code(r->req);
    if (code < 100 || code > 599) code = 0; /* the client went away before an answer */
    double secs = (double)(now_us() - r->start_us) / 1e6;

    req_series *s = req_slot(route, method, code, MAX_REQ_SERIES - OTHER_ROOM);
    if (!s) s = req_slot("other", "other", code, MAX_REQ_SERIES);
    if (s) s->n++;
    dur_series *d = dur_slot(route, method, MAX_DUR_SERIES - 1);
    if (!d) d = dur_slot("other", "other", MAX_DUR_SERIES);
    if (d) {
        size_t b = 0;
        while (b < DUR_BOUNDS && secs > dur_le[b]) b++;
        d->bucket[b]++;
        d->count++;
        d->sum += secs;
    }
}

void gw_metrics_webhook(const char *outcome) {
    for (size_t i = 0; i < 3; i++)
        if (strcmp(outcome, webhook_outcomes[i]) == 0) webhook_counts[i]++;
}

/* ------------------------------------------------------------ text format ----------- */

/* A label value with \, " and newline escaped, as the text format asks. */
static void put_label(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') fputs("\\\\", f);
        else if (*s == '"') fputs("\\\"", f);
        else if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model="m"} v */
static void model_sample(FILE *f, const char *name, const char *model, double v) {
    fprintf(f, "%s{model=\"", name);
    put_label(f, model);
    fprintf(f, "\"} %.17g\n", v);
}

static void process_series(FILE *f) {
    family(f, "fleet_http_requests_total", "counter",
           "HTTP requests this gateway process answered, by route template, method and status "
           "code (0: the client left before an answer).");
    for (size_t i = 0; i < nreqs; i++) {
        fputs("fleet_http_requests_total{route=\"", f);
        put_label(f, reqs[i].route);
        fprintf(f, "\",method=\"%s\",code=\"%d\"} %llu\n", reqs[i].method, reqs[i].code, reqs[i].n);
    }
    family(f, "fleet_http_request_duration_seconds", "histogram",
           "Time from a request's head to the end of its answer in this gateway process, by "
           "route template and method.");
    for (size_t i = 0; i < ndurs; i++) {
        const dur_series *d = &durs[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b <= DUR_BOUNDS; b++) {
            cum += d->bucket[b];
            fputs("fleet_http_request_duration_seconds_bucket{route=\"", f);
            put_label(f, d->route);
            if (b < DUR_BOUNDS)
                fprintf(f, "\",method=\"%s\",le=\"%g\"} %llu\n", d->method, dur_le[b], cum);
            else fprintf(f, "\",method=\"%s\",le=\"+Inf\"} %llu\n", d->method, cum);
        }
        fputs("fleet_http_request_duration_seconds_sum{route=\"", f);
        put_label(f, d->route);
        fprintf(f, "\",method=\"%s\"} %.9g\n", d->method, d->sum);
        fputs("fleet_http_request_duration_seconds_count{route=\"", f);
        put_label(f, d->route);
        fprintf(f, "\",method=\"%s\"} %llu\n", d->method, d->count);
    }
    family(f, "fleet_webhook_deliveries_total", "counter",
           "Webhook delivery attempts this gateway process made, by outcome: delivered, retry "
           "(failed, another attempt is scheduled), failed (given up, dead-lettered).");
    for (size_t i = 0; i < 3; i++)
        fprintf(f, "fleet_webhook_deliveries_total{outcome=\"%s\"} %llu\n", webhook_outcomes[i],
                webhook_counts[i]);
    family(f, "fleet_gateway_build_info", "gauge",
           "Always 1: this gateway's version and the worker protocol version it speaks.");
    fprintf(f, "fleet_gateway_build_info{version=\"%s\",protocol=\"%d\"} 1\n", FLEET_VERSION,
            FLEET_PROTOCOL_VERSION);
}

/* ------------------------------------------------------------ fleet-wide series ----- */

/* The per-model numbers of one scrape, summed over the shards (shards.h). */
typedef struct model_row {
    char name[FLEET_MODEL_MAX + 1];
    long long queued, running, submitted;
    long long finished[4]; /* succeeded, failed, cancelled, expired */
    long long events[6]; /* retried, handed_back, reclaimed, dead_lettered, dlq_retried, evicted */
    long long oldest_created_ms; /* -1: nothing waits */
    long busy, idle;
    const redisReply *hist; /* HGETALL of its metrics hash (a control key), or NULL */
} model_row;

static const char *const finished_names[4] = {"succeeded", "failed", "cancelled", "expired"};
static const char *const event_names[6] = {"retried",       "handed_back", "reclaimed",
                                           "dead_lettered", "dlq_retried", "evicted"};

typedef struct model_table {
    model_row *rows;
    size_t n, cap;
} model_table;

/* The row of model name, added when new. */
static model_row *row_of(model_table *t, const char *name, size_t len) {
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->rows[i].name) == len && memcmp(t->rows[i].name, name, len) == 0)
            return &t->rows[i];
    if (len == 0 || len > FLEET_MODEL_MAX) return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        model_row *rows = realloc(t->rows, cap * sizeof *rows);
        if (!rows) return NULL;
        t->rows = rows;
        t->cap = cap;
    }
    model_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    memcpy(r->name, name, len);
    r->oldest_created_ms = -1;
    return r;
}

static bool is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Adds the stats hash's "<model>:<counter>" fields to the rows of the table: the script
 * names every model of the stats hash, so each has its row already. */
static void read_stats(model_table *t, const redisReply *stats) {
    for (size_t i = 0; i + 1 < stats->elements; i += 2) {
        const redisReply *f = stats->element[i], *v = stats->element[i + 1];
        if (!is_str(f) || !is_str(v)) continue;
        const char *colon = strrchr(f->str, ':');
        if (!colon) continue;
        model_row *r = NULL;
        size_t len = (size_t)(colon - f->str);
        for (size_t k = 0; k < t->n; k++)
            if (strlen(t->rows[k].name) == len && memcmp(t->rows[k].name, f->str, len) == 0)
                r = &t->rows[k];
        if (!r) continue;
        const char *c = colon + 1;
        long long n = strtoll(v->str, NULL, 10);
        if (strcmp(c, "queued") == 0) r->queued += n;
        else if (strcmp(c, "running") == 0) r->running += n;
        else if (strcmp(c, "submitted") == 0) r->submitted += n;
        for (size_t k = 0; k < 4; k++)
            if (strcmp(c, finished_names[k]) == 0) r->finished[k] += n;
        for (size_t k = 0; k < 6; k++)
            if (strcmp(c, event_names[k]) == 0) r->events[k] += n;
    }
}

/* One bucket of a worker-reported histogram. */
typedef struct hbucket {
    double le;
    const char *text; /* the bound as stored ("0.25", "+Inf") */
    unsigned long long n;
} hbucket;

static int hbucket_cmp(const void *a, const void *b) {
    double x = ((const hbucket *)a)->le, y = ((const hbucket *)b)->le;
    return x < y ? -1 : x > y;
}

/* Writes histogram `name` of one model from its metrics hash fields "<prefix>:<le>",
 * "<prefix>:sum_ms" (ms: shown in seconds) or "<prefix>:sum", "<prefix>:count". Buckets
 * are stored one count each; Prometheus wants them cumulative. Nothing when the workers
 * reported nothing. */
static void worker_histogram(FILE *f, const char *name, const char *prefix, const model_row *m) {
    if (!m->hist) return;
    size_t plen = strlen(prefix), nb = 0;
    hbucket b[64];
    double sum = 0;
    unsigned long long count = 0;
    bool any = false, has_inf = false;
    for (size_t i = 0; i + 1 < m->hist->elements; i += 2) {
        const redisReply *fr = m->hist->element[i], *vr = m->hist->element[i + 1];
        if (!is_str(fr) || !is_str(vr)) continue;
        if (strncmp(fr->str, prefix, plen) != 0 || fr->str[plen] != ':') continue;
        const char *k = fr->str + plen + 1;
        unsigned long long v = strtoull(vr->str, NULL, 10);
        if (strcmp(k, "count") == 0) {
            count = v;
            any = true;
        } else if (strcmp(k, "sum_ms") == 0) {
            sum = (double)v / 1000.0;
        } else if (strcmp(k, "sum") == 0) {
            sum = (double)v;
        } else if (nb < sizeof b / sizeof *b) {
            char *end;
            double le = strcmp(k, "+Inf") == 0 ? INFINITY : strtod(k, &end);
            if (strcmp(k, "+Inf") != 0 && (end == k || *end)) continue;
            has_inf |= isinf(le);
            b[nb++] = (hbucket){le, k, v};
        }
    }
    if (!any) return;
    qsort(b, nb, sizeof *b, hbucket_cmp);
    unsigned long long cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += b[i].n;
        fprintf(f, "%s_bucket{model=\"", name);
        put_label(f, m->name);
        fprintf(f, "\",le=\"%s\"} %llu\n", b[i].text, cum);
    }
    if (!has_inf) { /* every histogram ends with +Inf, which holds them all */
        fprintf(f, "%s_bucket{model=\"", name);
        put_label(f, m->name);
        fprintf(f, "\",le=\"+Inf\"} %llu\n", count);
    }
    fprintf(f, "%s_sum{model=\"", name);
    put_label(f, m->name);
    fprintf(f, "\"} %.17g\n", sum);
    fprintf(f, "%s_count{model=\"", name);
    put_label(f, m->name);
    fprintf(f, "\"} %llu\n", count);
}

static void fleet_series(FILE *f, const model_table *t, long long now_ms) {
    family(f, "fleet_queue_depth", "gauge",
           "Jobs waiting for a worker of the model: on its stream, on the tenants' wait lists "
           "and in its delayed retries (the exact queued counter).");
    for (size_t i = 0; i < t->n; i++)
        model_sample(f, "fleet_queue_depth", t->rows[i].name, (double)t->rows[i].queued);
    family(f, "fleet_queue_oldest_age_seconds", "gauge",
           "Seconds since the oldest job now waiting for a worker of the model was submitted "
           "(0 when none waits; retries not yet due are left out).");
    for (size_t i = 0; i < t->n; i++) {
        const model_row *m = &t->rows[i];
        double age = m->oldest_created_ms < 0 || now_ms < m->oldest_created_ms
                         ? 0
                         : (double)(now_ms - m->oldest_created_ms) / 1000.0;
        model_sample(f, "fleet_queue_oldest_age_seconds", m->name, age);
    }
    family(f, "fleet_jobs_running", "gauge", "Jobs of the model running now.");
    for (size_t i = 0; i < t->n; i++)
        model_sample(f, "fleet_jobs_running", t->rows[i].name, (double)t->rows[i].running);
    family(f, "fleet_jobs_submitted_total", "counter", "Jobs submitted for the model.");
    for (size_t i = 0; i < t->n; i++)
        model_sample(f, "fleet_jobs_submitted_total", t->rows[i].name,
                     (double)t->rows[i].submitted);
    family(f, "fleet_jobs_finished_total", "counter",
           "Jobs of the model that ended, by how: succeeded, failed, cancelled, expired (its "
           "keys expired before it ended).");
    for (size_t i = 0; i < t->n; i++)
        for (size_t k = 0; k < 4; k++) {
            fputs("fleet_jobs_finished_total{model=\"", f);
            put_label(f, t->rows[i].name);
            fprintf(f, "\",status=\"%s\"} %lld\n", finished_names[k], t->rows[i].finished[k]);
        }
    family(f, "fleet_job_events_total", "counter",
           "Events in the lives of the model's jobs: retried (a retryable error), handed_back "
           "(a worker stopped), reclaimed (a lost worker's job taken over), dead_lettered, "
           "dlq_retried, evicted (a finished job deleted by its tenant's storage limits).");
    for (size_t i = 0; i < t->n; i++)
        for (size_t k = 0; k < 6; k++) {
            fputs("fleet_job_events_total{model=\"", f);
            put_label(f, t->rows[i].name);
            fprintf(f, "\",event=\"%s\"} %lld\n", event_names[k], t->rows[i].events[k]);
        }
    family(f, "fleet_workers", "gauge",
           "Live workers of the model (their registration is fresh), by state: busy (running a "
           "batch) or idle.");
    for (size_t i = 0; i < t->n; i++) {
        fputs("fleet_workers{model=\"", f);
        put_label(f, t->rows[i].name);
        fprintf(f, "\",state=\"busy\"} %ld\n", t->rows[i].busy);
        fputs("fleet_workers{model=\"", f);
        put_label(f, t->rows[i].name);
        fprintf(f, "\",state=\"idle\"} %ld\n", t->rows[i].idle);
    }
    family(f, "fleet_job_wait_seconds", "histogram",
           "Seconds from a job's submit to its first start (Redis' clock), as its workers "
           "report them.");
    for (size_t i = 0; i < t->n; i++)
        worker_histogram(f, "fleet_job_wait_seconds", "wait", &t->rows[i]);
    family(f, "fleet_job_run_seconds", "histogram",
           "Seconds from a job's claim to its model's return (the worker's clock), as its "
           "workers report them.");
    for (size_t i = 0; i < t->n; i++)
        worker_histogram(f, "fleet_job_run_seconds", "run", &t->rows[i]);
    family(f, "fleet_batch_size", "histogram", "Jobs per batch the model's workers ran.");
    for (size_t i = 0; i < t->n; i++) worker_histogram(f, "fleet_batch_size", "batch", &t->rows[i]);
}

/* ------------------------------------------------------------ the scrape ------------ */

/* One scrape: with several shards, every shard but 0 is read first (its counters and
 * queues, metrics.lua's shard-only form) and summed into t; then the control call (shard 0's
 * counters and queues, the workers, the histograms) completes it and answers, since the
 * histograms are read from its reply. One shard: the control call alone, as always. */
typedef struct scrape {
    gw_req *r;
    fleet_cmd cmd;
    model_table t;
    fleet_cmd *shard_cmds; /* one per shard but 0 */
    size_t pending;
    bool failed; /* a shard's call failed: the fleet-wide series are left out */
} scrape;

static void scrape_free(scrape *s) {
    free(s->t.rows);
    free(s->shard_cmds);
    free(s);
}

/* Adds one shard's (or the control call's) metrics reply to the table. */
static void add_reply(model_table *t, const fleet_metrics_reply *mr) {
    /* Every model the shard has counted, then those only a live worker names. */
    for (size_t i = 0; i < mr->models->elements; i++) {
        const redisReply *m = mr->models->element[i];
        if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 || !is_str(m->element[0])) continue;
        model_row *row = row_of(t, m->element[0]->str, m->element[0]->len);
        if (!row) continue;
        if (is_str(m->element[1]) && m->element[1]->len > 0) {
            long long oldest = strtoll(m->element[1]->str, NULL, 10);
            if (row->oldest_created_ms < 0 || oldest < row->oldest_created_ms)
                row->oldest_created_ms = oldest;
        }
        if (m->element[2]->type == REDIS_REPLY_ARRAY && m->element[2]->elements > 0)
            row->hist = m->element[2];
    }
    read_stats(t, mr->stats);
    for (size_t i = 0; i < mr->workers->elements; i++) {
        const redisReply *w = mr->workers->element[i];
        if (w->type != REDIS_REPLY_ARRAY || w->elements != 2 || !is_str(w->element[0]) ||
            !is_str(w->element[1]))
            continue;
        model_row *row = row_of(t, w->element[0]->str, w->element[0]->len);
        if (!row) continue;
        if (strcmp(w->element[1]->str, "1") == 0) row->busy++;
        else row->idle++;
    }
}

/* Answers with the per-process series, and the fleet-wide ones from rep (the control
 * call's) when it is a metrics reply and every shard was read. */
static void answer(scrape *s, const redisReply *rep) {
    gw_req *r = s->r;
    fleet_metrics_reply mr;
    bool up = rep && fleet_state_metrics_reply(rep, &mr) == 0;
    if (rep && !up)
        fleet_log(FLEET_LOG_ERROR, "metrics script failed", "error",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
    up = up && !s->failed;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    if (up) {
        add_reply(&s->t, &mr);
        fleet_series(f, &s->t, mr.now_ms);
    }
    process_series(f);
    family(f, "fleet_redis_up", "gauge",
           "1 when this scrape read the fleet's state from Redis (every shard), else 0 (the "
           "fleet-wide series are then missing).");
    fprintf(f, "fleet_redis_up %d\n", up ? 1 : 0);
    if (fclose(f) != 0 || !text) {
        free(text);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    gw_reply_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void on_metrics(redisReply *rep, void *arg) {
    scrape *s = arg;
    answer(s, rep);
    scrape_free(s);
}

static void send_control(scrape *s) {
    gw_req *r = s->r;
    fleet_state_metrics(&r->g->keys, SCRAPE_SCAN, SCRAPE_TENANTS, &s->cmd);
    if (gw_redis_script(r->g->redis, &s->cmd, on_metrics, s) < 0) {
        answer(s, NULL); /* Redis not ready: this process's series, and fleet_redis_up 0 */
        scrape_free(s);
        return;
    }
    if (!r->paused) gw_pause(r);
}

static void shard_done(scrape *s) {
    if (--s->pending > 0) return;
    if (s->failed) {
        answer(s, NULL);
        scrape_free(s);
        return;
    }
    send_control(s);
}

static void on_shard_metrics(redisReply *rep, void *arg) {
    scrape *s = arg;
    fleet_metrics_reply mr;
    if (!s->failed && rep && fleet_state_metrics_reply(rep, &mr) == 0) {
        add_reply(&s->t, &mr);
    } else if (!s->failed) {
        fleet_log(FLEET_LOG_ERROR, "metrics script failed on a shard", "error",
                  rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                  : rep                                 ? "unexpected reply"
                                                        : "redis unavailable",
                  NULL);
        s->failed = true;
    }
    shard_done(s);
}

void gw_metrics_scrape(gw_req *r) {
    scrape *s = calloc(1, sizeof *s);
    if (!s) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    s->r = r;
    const fleet_shards *sh = &r->g->shards;
    if (sh->n == 1 && sh->all[0] == 0) {
        send_control(s);
        return;
    }
    if (!(s->shard_cmds = calloc(sh->n, sizeof *s->shard_cmds))) {
        free(s);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    s->pending = 1; /* this function: the control call goes after every shard answered */
    for (size_t i = 0; i < sh->n; i++) {
        int k = sh->all[i];
        if (k == 0) continue; /* the control call reads shard 0 */
        fleet_state_metrics_of(&sh->shard[k].keys, true, SCRAPE_SCAN, SCRAPE_TENANTS,
                               &s->shard_cmds[i]);
        s->pending++;
        if (gw_redis_script(r->g->redis, &s->shard_cmds[i], on_shard_metrics, s) < 0) {
            s->pending--;
            s->failed = true;
        }
    }
    if (!r->paused) gw_pause(r);
    shard_done(s);
}
