/* outputs.c: GET /v1/jobs/{id}/outputs?after=N&limit=L, a page of a job's partial outputs
 * in emit order (outputs.lua), as {"outputs": [{"index", "attempt", "output"}...],
 * "next": the after of the next page, "count": how many the job emitted so far, "status":
 * the job's}. A client reads on with after=next until status is final and next == count.
 * A job whose keys expired answers 410 as GET /v1/jobs/{id} does (gone.c). */
#include "outputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fleet/codec.h"
#include "fleet/state.h"
#include "gone.h"
#include "query.h"
#include "redis.h"
#include "routes.h"

/* Bounds of ?after: far above any FLEET_MAX_OUTPUTS, so that no number a client may mean
 * is refused, and small enough that its digits never overflow. */
#define AFTER_MAX 1000000000000LL

json_t *gw_output_json(long long index, const redisReply *entry, char *err, size_t errlen) {
    long attempt;
    const char *out;
    size_t len;
    if (fleet_output_entry(entry, &attempt, &out, &len) < 0) {
        snprintf(err, errlen, "output %lld is not a stored entry", index);
        return NULL;
    }
    json_t *value = fleet_msgpack_to_json(out, len, err, errlen);
    if (!value) return NULL;
    return json_pack("{s:I, s:I, s:o}", "index", (json_int_t)index, "attempt", (json_int_t)attempt,
                     "output", value);
}

typedef struct outputs_call {
    gw_req *r;
    fleet_cmd cmd;
    char id[FLEET_ID_LEN + 1];
    long long after;
} outputs_call;

static void on_outputs(redisReply *rep, void *arg) {
    outputs_call *c = arg;
    gw_req *r = c->r;
    fleet_outputs_page p;
    int found = rep ? fleet_state_outputs_reply(rep, &p) : -1;
    if (found < 0) {
        gw_reply_redis_error(r, "outputs", rep);
    } else if (found == 0) {
        gw_reply_job_missing(r, c->id, rep);
    } else {
        json_t *list = json_array();
        char err[160] = "";
        for (size_t i = 0; list && i < p.page->elements; i++) {
            json_t *o = gw_output_json(c->after + (long long)i, p.page->element[i], err,
                                       sizeof err);
            if (!o) {
                json_decref(list);
                list = NULL;
            } else {
                json_array_append_new(list, o);
            }
        }
        if (!list) {
            gw_reply_problem(r, GW_PROBLEM_INTERNAL, "job %s: %s", c->id,
                             *err ? err : "out of memory");
        } else {
            long long next = c->after + (long long)json_array_size(list);
            gw_reply_json(r, 200,
                          json_pack("{s:o, s:I, s:I, s:s}", "outputs", list, "next",
                                    (json_int_t)next, "count", (json_int_t)p.count, "status",
                                    p.status));
        }
    }
    free(c);
}

/* Reads a whole number of 0..max from query parameter name (def when absent). Returns 0,
 * or -1 having answered 400. */
static int number_param(gw_req *r, const char *name, long long min, long long max, long long def,
                        long long *out) {
    const char *q = r->req->uri && r->req->uri->query_raw ? (const char *)r->req->uri->query_raw
                                                          : NULL;
    char v[24];
    int found = gw_query_get(q, name, v, sizeof v);
    *out = def;
    if (found == 0) return 0;
    bool ok = found > 0 && v[0] != '\0' && strlen(v) <= 13;
    long long n = 0;
    for (const char *p = v; ok && *p; p++) {
        if (*p < '0' || *p > '9') ok = false;
        else n = n * 10 + (*p - '0');
    }
    if (!ok || n < min || n > max) {
        gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY,
                         "%s must be a whole number from %lld to %lld; got '%.24s'", name, min, max,
                         found > 0 ? v : "(not decodable)");
        return -1;
    }
    *out = n;
    return 0;
}

void gw_jobs_outputs(gw_req *r, const char *id) {
    long long after, limit;
    if (number_param(r, "after", 0, AFTER_MAX, 0, &after) < 0 ||
        number_param(r, "limit", 1, GW_OUTPUTS_PAGE_MAX, GW_OUTPUTS_PAGE_MAX, &limit) < 0)
        return;
    const fleet_keys *jk = gw_job_keys(r, id);
    if (!jk) return;
    outputs_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    c->r = r;
    c->after = after;
    snprintf(c->id, sizeof c->id, "%s", id);
    fleet_state_outputs(jk, c->id, gw_auth_job_scope(r), after, (long)limit, &c->cmd);
    gw_send_script(r, &c->cmd, on_outputs, c, free);
}
