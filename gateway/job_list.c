/* job_list.c: GET /v1/jobs, a tenant's (or, for an admin, every tenant's) jobs, newest
 * first, a page at a time (list.lua over the tenant's submit index). */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/id.h"
#include "fleet/job_json.h"
#include "fleet/state.h"
#include "query.h"
#include "auth.h"
#include "redis.h"
#include "routes.h"

/* One GET /v1/jobs waiting on Redis. Owns everything the command's argv points to. */
typedef struct list_call {
    gw_req *r;
    fleet_cmd cmd;
    /* an index entry id, two 64-bit numbers, and in every tenant's list a '.' and the
     * entry's tenant (list_cursor_ok) */
    char cursor[48 + FLEET_TENANT_MAX];
    char tenant[FLEET_TENANT_MAX + 1]; /* tenant= */
    char status[48];                   /* a list of statuses (gw_query_status_list) */
    char model[FLEET_MODEL_MAX + 1];
} list_call;

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
    free(c);
}

/* A cursor of GET /v1/jobs is the id "<ms>-<n>" of an entry of the tenant's index
 * (list.lua): two decimal numbers that fit 64 bits, not "0-0" (below every entry, and
 * XREVRANGE refuses "(0-0"). In every tenant's list (all) it may be followed by '.' and
 * the entry's tenant. Anything else would reach Redis as a range it refuses. */
static bool list_cursor_ok(const char *s, bool all) {
    bool nonzero = false;
    for (int part = 0; part < 2; part++) {
        const char *start = s;
        unsigned long long v = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            unsigned d = (unsigned)(*s - '0');
            if (v > (ULLONG_MAX - d) / 10) return false;
            v = v * 10 + d;
        }
        if (s == start) return false;
        if (v) nonzero = true;
        if (part == 0 && *s++ != '-') return false;
    }
    if (all && *s == '.') return fleet_tenant_name_valid(s + 1) && nonzero;
    return *s == '\0' && nonzero;
}

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
    bool all = strcmp(whose, FLEET_TENANT_ANY) == 0;
    if (cursor_rc < 0 || (cursor_rc == 1 && *c->cursor && !list_cursor_ok(c->cursor, all))) {
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
    fleet_list_query lq = {
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
    fleet_state_list(&r->g->keys, &lq, &c->cmd);
    gw_send_script(r, &c->cmd, on_listed, c, free);
    return;
refuse:
    free(c);
}
