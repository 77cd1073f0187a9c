/* job_list.c: GET /v1/jobs, a tenant's (or, for an admin, every tenant's) jobs, newest
 * first, a page at a time (list.lua over the tenant's submit index).
 *
 * With one shard (shards.h) the page is one list.lua call, answered as it comes. With
 * several, each shard's index is listed by its own call, all sent at once, and the pages
 * are merged (docs/api.md, "Listing jobs"). The order is the one list.lua keeps within a
 * shard, extended across shards: by index entry id ("<ms>-<n>", the submit's time on the
 * Redis clock, newest first), then by shard number (higher first), then, in every tenant's
 * list, by tenant name (greater first). Each job's place in that order is its *position*
 * (ms, n, k, tenant); a cursor names one position and the next page is every job below it:
 * in a shard above the cursor's below its entry id, in one below it from that entry id on,
 * in the cursor's own shard below the entry (of that tenant's index). Since each shard's
 * call answers its jobs in that order, a shard's jobs taken into a page are always the
 * front of what it answered, and no job is shown twice or skipped.
 *
 * A shard's call may stop before its page is full (its scan budget of index entries ran
 * out, filters skipping jobs): its cursor then says that the shard may hold more jobs
 * below it. No job below such a *frontier* can be shown before that shard is read further,
 * so the page stops at the highest frontier and its cursor is that frontier. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/id.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "query.h"
#include "auth.h"
#include "redis.h"
#include "routes.h"

/* A cursor: "<ms>-<n>" (an index entry id), then ":<k>" (a shard) in a list merged
 * across shards, then in every tenant's list ".<tenant>". */
#define CURSOR_MAX (2 * 20 + 1 + 3 + 1 + FLEET_TENANT_MAX + 1)

/* A place in the merged order (see the top of the file). */
typedef struct list_pos {
    unsigned long long ms, n;
    int k;
    char tenant[FLEET_TENANT_MAX + 1]; /* "": below every tenant of that entry id */
} list_pos;

/* One job of a shard's page, as shown, and where it stands. */
typedef struct list_item {
    json_t *job;
    list_pos pos;
} list_item;

/* One shard's call. Its command points into it (the cursor) until answered. */
typedef struct shard_page {
    struct list_call *c;
    int k;
    fleet_cmd cmd;
    char cursor[CURSOR_MAX];
    bool more;       /* its cursor was not empty: it may hold more jobs below ... */
    list_pos more_at; /* ... this frontier */
    list_item *items;
    size_t nitems;
} shard_page;

/* One GET /v1/jobs waiting on Redis. Owns everything the commands' argv point to. */
typedef struct list_call {
    gw_req *r;
    fleet_cmd cmd; /* one shard: the one call */
    char cursor[CURSOR_MAX];
    char tenant[FLEET_TENANT_MAX + 1]; /* tenant= */
    char status[48];                   /* a list of statuses (gw_query_status_list) */
    char model[FLEET_MODEL_MAX + 1];
    fleet_list_query lq; /* the query every shard's call asks */
    bool all;            /* every tenant's list */
    bool has_cursor;
    list_pos at; /* the cursor's position */
    char *tenants; /* every tenant's list over shards: the names, space-separated */
    /* Several shards: */
    shard_page *pages;
    size_t npages, pending;
    bool failed; /* a shard's call failed: err is the answer */
    gw_redis_problem err;
} list_call;

static void list_free(list_call *c) {
    if (!c) return;
    for (size_t i = 0; i < c->npages; i++) {
        for (size_t j = 0; j < c->pages[i].nitems; j++) json_decref(c->pages[i].items[j].job);
        free(c->pages[i].items);
    }
    free(c->pages);
    free(c->tenants);
    free(c);
}

static void list_free_any(void *c) { list_free(c); }

/* A queued job's place in its model's queue, as list.lua adds it to the job's fields
 * (field queue_position, as GET of the job gives it); 0 when absent. */
static long long list_queue_position(const redisReply *f) {
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(f->element[i]->str, "queue_position") == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            return strtoll(f->element[i + 1]->str, NULL, 10);
    return 0;
}

/* ------------------------------------------------------------ one shard -------------- */

static void on_listed(redisReply *rep, void *arg) {
    list_call *c = arg;
    gw_req *r = c->r;
    const redisReply *jobs;
    const char *next;
    if (!rep) {
        gw_reply_redis_error(r, "send", NULL);
    } else if (fleet_state_list_reply(rep, &jobs, &next) < 0) {
        gw_reply_redis_error(r, "list", rep);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < jobs->elements; i++) {
            fleet_job_view v;
            if (fleet_job_view_from_fields(jobs->element[i], &v) == 0) {
                v.queue_position = list_queue_position(jobs->element[i]);
                json_array_append_new(arr, gw_auth_job_json(r, &v));
            }
        }
        json_t *o = json_pack("{s:o, s:o}", "jobs", arr, "next_cursor",
                              *next ? json_string(next) : json_null());
        gw_reply_json(r, 200, o);
    }
    list_free(c);
}

/* ------------------------------------------------------------ cursors --------------- */

/* Reads "<ms>-<n>": two decimal numbers that fit 64 bits. Returns the end, or NULL. */
static const char *parse_entry(const char *s, unsigned long long *ms, unsigned long long *n) {
    unsigned long long *out[2] = {ms, n};
    for (int part = 0; part < 2; part++) {
        const char *start = s;
        unsigned long long v = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            unsigned d = (unsigned)(*s - '0');
            if (v > (ULLONG_MAX - d) / 10) return NULL;
            v = v * 10 + d;
        }
        if (s == start) return NULL;
        *out[part] = v;
        if (part == 0 && *s++ != '-') return NULL;
    }
    return s;
}

/* A cursor of GET /v1/jobs is the id "<ms>-<n>" of an entry of the tenant's index
 * (list.lua): two decimal numbers that fit 64 bits, not "0-0" (below every entry, and
 * XREVRANGE refuses "(0-0"); over several shards followed by ':' and the shard's number
 * (below FLEET_SHARDS_MAX). In every tenant's list (all) then maybe '.' and the entry's
 * tenant. Anything else would reach Redis as a range it refuses. Fills *at (k 0 when the
 * cursor names no shard: a cursor of a fleet that had one shard). */
static bool list_cursor_parse(const char *s, bool all, list_pos *at) {
    memset(at, 0, sizeof *at);
    s = parse_entry(s, &at->ms, &at->n);
    if (!s || (at->ms == 0 && at->n == 0)) return false;
    if (*s == ':') {
        s++;
        if (*s < '0' || *s > '9') return false;
        int k = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            k = k * 10 + (*s - '0');
            if (k >= FLEET_SHARDS_MAX) return false;
        }
        at->k = k;
    }
    if (all && *s == '.') {
        if (!fleet_tenant_name_valid(s + 1)) return false;
        snprintf(at->tenant, sizeof at->tenant, "%s", s + 1);
        return true;
    }
    return *s == '\0';
}

/* -1, 0, 1 as a is below, at, above b in the order (newest first: "above" is newer). */
static int pos_cmp(const list_pos *a, const list_pos *b) {
    if (a->ms != b->ms) return a->ms < b->ms ? -1 : 1;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    int t = strcmp(a->tenant, b->tenant);
    return (t > 0) - (t < 0);
}

static void pos_text(const list_pos *p, bool all, char *out, size_t len) {
    snprintf(out, len, "%llu-%llu:%d%s%s", p->ms, p->n, p->k, all && p->tenant[0] ? "." : "",
             all ? p->tenant : "");
}

/* The list.lua cursor of shard k for the jobs below position at. */
static void shard_cursor(const list_pos *at, int k, bool all, char *out, size_t len) {
    if (k < at->k) {
        /* Its jobs of the cursor's entry id are below the cursor too: from that entry id
         * on, i.e. below the next id. Below no id there is nothing: the newest then. */
        unsigned long long ms = at->ms, n = at->n + 1;
        if (n == 0 && ++ms == 0) {
            out[0] = '\0';
            return;
        }
        snprintf(out, len, "%llu-%llu", ms, n);
    } else if (k > at->k || !all || !at->tenant[0]) {
        snprintf(out, len, "%llu-%llu", at->ms, at->n);
    } else {
        snprintf(out, len, "%llu-%llu.%s", at->ms, at->n, at->tenant);
    }
}

/* ------------------------------------------------------------ several shards -------- */

static int item_cmp_desc(const void *a, const void *b) {
    return -pos_cmp(&((const list_item *)a)->pos, &((const list_item *)b)->pos);
}

/* The entry id list.lua added as the job's last field pair (index_entry). */
static const char *item_entry(const redisReply *f) {
    for (size_t i = f->elements >= 2 ? f->elements - 2 : 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(f->element[i]->str, "index_entry") == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            return f->element[i + 1]->str;
    return NULL;
}

/* Keeps what a shard answered (a reply lives only during its callback). Returns 0, or -1
 * for a reply of the wrong shape or out of memory. */
static int take_page(shard_page *p, const redisReply *rep) {
    list_call *c = p->c;
    const redisReply *jobs;
    const char *next;
    if (fleet_state_list_reply(rep, &jobs, &next) < 0) return -1;
    if (*next) {
        const char *s = parse_entry(next, &p->more_at.ms, &p->more_at.n);
        if (!s || (*s && *s != '.')) return -1;
        p->more = true;
        p->more_at.k = p->k;
        if (*s == '.') snprintf(p->more_at.tenant, sizeof p->more_at.tenant, "%s", s + 1);
    }
    p->items = calloc(jobs->elements ? jobs->elements : 1, sizeof *p->items);
    if (!p->items) return -1;
    for (size_t i = 0; i < jobs->elements; i++) {
        const redisReply *f = jobs->element[i];
        fleet_job_view v;
        const char *entry = f->type == REDIS_REPLY_ARRAY ? item_entry(f) : NULL;
        list_item *it = &p->items[p->nitems];
        if (!entry || fleet_job_view_from_fields(f, &v) < 0) return -1;
        const char *end = parse_entry(entry, &it->pos.ms, &it->pos.n);
        if (!end || *end) return -1;
        it->pos.k = p->k;
        if (c->all) snprintf(it->pos.tenant, sizeof it->pos.tenant, "%s", v.tenant ? v.tenant : "");
        v.queue_position = list_queue_position(f);
        it->job = gw_auth_job_json(c->r, &v);
        if (!it->job) return -1;
        p->nitems++;
    }
    return 0;
}

/* Every shard answered: the merged page. */
static void answer_merged(list_call *c) {
    gw_req *r = c->r;
    if (c->failed) {
        if (c->err.retry_after) gw_add_header(r, "Retry-After", c->err.retry_after);
        if (c->err.id == GW_PROBLEM_INTERNAL)
            gw_reply_problem(r, c->err.id, "%s; request_id %s", c->err.detail, r->request_id);
        else gw_reply_problem(r, c->err.id, "%s", c->err.detail);
        list_free(c);
        return;
    }
    size_t total = 0;
    const list_pos *frontier = NULL;
    for (size_t i = 0; i < c->npages; i++) {
        total += c->pages[i].nitems;
        if (c->pages[i].more && (!frontier || pos_cmp(&c->pages[i].more_at, frontier) > 0))
            frontier = &c->pages[i].more_at;
    }
    list_item *all = calloc(total ? total : 1, sizeof *all);
    if (!all) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        list_free(c);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < c->npages; i++)
        for (size_t j = 0; j < c->pages[i].nitems; j++) all[n++] = c->pages[i].items[j];
    qsort(all, n, sizeof *all, item_cmp_desc);
    json_t *arr = json_array();
    size_t shown = 0;
    /* A job at the frontier is the one its shard answered last: shown; below it, not. */
    while (shown < n && shown < (size_t)c->lq.limit &&
           (!frontier || pos_cmp(&all[shown].pos, frontier) >= 0)) {
        json_array_append(arr, all[shown].job);
        shown++;
    }
    char next[CURSOR_MAX] = "";
    if (shown == (size_t)c->lq.limit && (shown < n || frontier))
        pos_text(&all[shown - 1].pos, c->all, next, sizeof next);
    else if (shown < (size_t)c->lq.limit && frontier)
        pos_text(frontier, c->all, next, sizeof next);
    free(all);
    gw_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "jobs", arr, "next_cursor",
                            *next ? json_string(next) : json_null()));
    list_free(c);
}

static void on_shard_listed(redisReply *rep, void *arg) {
    shard_page *p = arg;
    list_call *c = p->c;
    if (!c->failed && (!rep || take_page(p, rep) < 0)) {
        c->failed = true;
        gw_redis_problem_of(c->r->g->redis, rep, &c->err);
        if (c->err.id == GW_PROBLEM_INTERNAL)
            fleet_log(FLEET_LOG_ERROR, "unexpected redis reply", "op", "list", "reply",
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "malformed",
                      "request_id", c->r->request_id, NULL);
    }
    if (--c->pending == 0) answer_merged(c);
}

/* Sends every shard's call (the tenants read first for every tenant's list). */
static void send_shards(list_call *c) {
    gw_req *r = c->r;
    const fleet_shards *sh = &r->g->shards;
    c->pages = calloc(sh->n, sizeof *c->pages);
    if (!c->pages) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        list_free(c);
        return;
    }
    c->npages = sh->n;
    c->pending = sh->n + 1; /* + this function, so that no answer comes before all are sent */
    /* Every call touches its shard's slot only: the tenants come in ARGV. */
    c->lq.entries = true;
    c->lq.tenants = c->tenants ? c->tenants : "";
    for (size_t i = 0; i < sh->n; i++) {
        shard_page *p = &c->pages[i];
        p->c = c;
        p->k = sh->all[i];
        if (c->has_cursor) shard_cursor(&c->at, p->k, c->all, p->cursor, sizeof p->cursor);
        fleet_list_query lq = c->lq;
        lq.cursor = p->cursor;
        fleet_state_list(&sh->shard[p->k].keys, &lq, &p->cmd);
        if (gw_redis_script(r->g->redis, &p->cmd, on_shard_listed, p) < 0) {
            c->pending--;
            if (!c->failed) {
                c->failed = true;
                gw_redis_problem_of(r->g->redis, NULL, &c->err);
            }
        }
    }
    if (!r->paused) gw_pause(r);
    if (--c->pending == 0) answer_merged(c);
}

/* SMEMBERS of the control tenants set: the names every shard's call merges. */
static void on_tenants(redisReply *rep, void *arg) {
    list_call *c = arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        gw_reply_redis_error(c->r, "list tenants", rep);
        list_free(c);
        return;
    }
    size_t len = strlen(c->r->who.tenant) + 1;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING) len += rep->element[i]->len + 1;
    c->tenants = malloc(len);
    if (!c->tenants) {
        gw_reply_problem(c->r, GW_PROBLEM_INTERNAL, "out of memory");
        list_free(c);
        return;
    }
    /* The caller's own tenant too (list.lua lists it even when not in the set). */
    size_t at = (size_t)sprintf(c->tenants, "%s", c->r->who.tenant);
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING || !fleet_tenant_name_valid(e->str)) continue;
        c->tenants[at++] = ' ';
        memcpy(c->tenants + at, e->str, e->len);
        at += e->len;
    }
    c->tenants[at] = '\0';
    send_shards(c);
}

/* ------------------------------------------------------------ GET /v1/jobs ----------- */

void gw_jobs_list(gw_req *r) {
    const char *q = r->req->uri && r->req->uri->query_raw ? (const char *)r->req->uri->query_raw
                                                          : NULL;
    char limit_s[16] = "20";
    list_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    int rc;
    char status[sizeof c->status];
    c->r = r;
    if ((rc = gw_query_get(q, "status", status, sizeof status)) < 0 ||
        (rc == 1 && gw_query_status_list(status, c->status, sizeof c->status) < 0)) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "status must be one or more of queued, running, succeeded, failed, "
                         "cancelled, separated by commas (status=queued,running), each once");
        goto refuse;
    }
    if ((rc = gw_query_get(q, "model", c->model, sizeof c->model)) < 0 ||
        (rc == 1 && !fleet_model_name_valid(c->model))) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "model must be a model name (1-64 characters of a-z, 0-9, _ -)");
        goto refuse;
    }
    int cursor_rc = gw_query_get(q, "cursor", c->cursor, sizeof c->cursor);
    if (cursor_rc == 1 && *c->cursor && fleet_job_id_valid(c->cursor)) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "cursor is a job id, the cursor of an older release of fleet: list "
                         "again from the first page (without a cursor)");
        goto refuse;
    }
    /* An admin key lists every tenant's jobs, or one tenant's with tenant=; any other key
     * its own tenant's, so tenant= may name only that one. */
    const char *whose = r->who.tenant;
    if ((rc = gw_query_get(q, "tenant", c->tenant, sizeof c->tenant)) < 0 ||
        (rc == 1 && !fleet_tenant_name_valid(c->tenant))) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "tenant must be a tenant name (1-64 characters of a-z, 0-9, _ -)");
        goto refuse;
    }
    if (rc == 1 && !r->who.admin && strcmp(c->tenant, r->who.tenant) != 0) {
        gw_reply_problem(r, GW_PROBLEM_FORBIDDEN,
                         "a tenant key lists only its own tenant's jobs; tenant= may name only "
                         "'%s' (an admin key lists any tenant's)",
                         r->who.tenant);
        goto refuse;
    }
    if (rc == 1) whose = c->tenant;
    else if (r->who.admin) whose = FLEET_TENANT_ANY;
    c->all = strcmp(whose, FLEET_TENANT_ANY) == 0;
    c->has_cursor = cursor_rc == 1 && *c->cursor;
    if (cursor_rc < 0 || (c->has_cursor && !list_cursor_parse(c->cursor, c->all, &c->at))) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "cursor must be the next_cursor of a previous page of this list");
        goto refuse;
    }
    char *end = NULL;
    long limit = 0;
    if ((rc = gw_query_get(q, "limit", limit_s, sizeof limit_s)) < 0 ||
        (limit = strtol(limit_s, &end, 10), !end || *end || end == limit_s) || limit < 1 ||
        limit > 100) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY, "limit must be a whole number from 1 to 100");
        goto refuse;
    }
    /* since= and until=: the submit times the list covers, both included. */
    long long bounds[2] = {0, 0}; /* 0: no bound */
    static const char *const bound_names[2] = {"since", "until"};
    for (int i = 0; i < 2; i++) {
        char t[64];
        if ((rc = gw_query_get(q, bound_names[i], t, sizeof t)) < 0 ||
            (rc == 1 && fleet_parse_time_ms(t, &bounds[i]) < 0)) {
            gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                             "%s must be an RFC 3339 date-time such as 2026-12-06T10:00:00Z or "
                             "2026-12-06T11:00:00.250+01:00",
                             bound_names[i]);
            goto refuse;
        }
        /* 1970-01-01T00:00:00Z: since it is no bound; until it keeps the list empty. */
        if (rc == 1 && i == 1 && bounds[i] == 0) bounds[i] = 1;
    }
    c->lq = (fleet_list_query){
        .tenant = whose,
        .own = r->who.tenant,
        .cursor = c->cursor,
        .status = c->status,
        .model = c->model,
        .limit = limit,
        .scan_max = 1000,
        .since_ms = bounds[0],
        .until_ms = bounds[1],
    };
    const fleet_shards *sh = &r->g->shards;
    /* One shard, and a cursor of one shard: the one call, its answer as it comes. */
    if (sh->n == 1 && !strchr(c->cursor, ':')) {
        fleet_state_list(&sh->shard[sh->all[0]].keys, &c->lq, &c->cmd);
        gw_send_script(r, &c->cmd, on_listed, c, list_free_any);
        return;
    }
    if (!c->all) {
        send_shards(c);
        return;
    }
    fleet_key tk = fleet_key_tenants(&r->g->keys);
    const char *argv[2] = {"SMEMBERS", tk.s};
    size_t lens[2] = {8, strlen(tk.s)};
    if (gw_redis_command(r->g->redis, 2, argv, lens, on_tenants, c) < 0) {
        gw_reply_redis_error(r, "send", NULL);
        goto refuse;
    }
    gw_pause(r);
    return;
refuse:
    list_free(c);
}
