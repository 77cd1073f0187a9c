/* wait.c: "Prefer: wait=N" on POST /v1/jobs and GET /v1/jobs/{id}: the request is held
 * (paused) until its job is final or N seconds pass.
 *
 *   watch the job (watch.h) ──▶ each read ──▶ final?  yes: 200 + the job (+ "result")
 *                                 ▲              no: wait for the next read
 *                                 └── a wake-up, the safety tick (watch.h), the deadline
 *
 * The watch registers before its first read, so a job that ends between the submit and
 * the wait is seen either by that read or by the wake-up its finish publishes. When N
 * runs out the answer is the usual one: 202 for a submit, 200 for a read, with the job as
 * it is then. While the gateway shuts down, waits answer at once in the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "auth.h"
#include "out_stream.h"
#include "gone.h"
#include "redis.h"
#include "routes.h"
#include "watch.h"

typedef struct gw_wait {
    gw *g;
    gw_req *r;
    gw_watch watch;
    char id[FLEET_ID_LEN + 1];
    int timeout_status; /* 202 (submit) or 200 (read) when the time runs out */
    struct event *deadline;
    bool expired; /* the deadline passed: the next answer is the last */
    json_t *job;  /* a succeeded job, while its result is read */
} gw_wait;

static void wait_free(gw_wait *wt) {
    gw_watch_stop(&wt->watch);
    if (wt->deadline) event_free(wt->deadline);
    json_decref(wt->job);
    free(wt);
}

/* Answers and ends the wait. */
static void answer(gw_wait *wt, int status, json_t *body) {
    gw_reply_json(wt->r, status, body);
    wait_free(wt);
}

static void on_result(redisReply *rep, void *arg) {
    gw_wait *wt = arg;
    if (!rep) {
        gw_reply_redis_error(wt->r, "result", NULL);
        wait_free(wt);
        return;
    }
    json_t *result = json_null();
    if (rep->type == REDIS_REPLY_STRING) {
        char err[128];
        json_t *j = fleet_msgpack_to_json(rep->str, rep->len, err, sizeof err);
        if (j) {
            json_decref(result);
            result = j;
        } else {
            fleet_log(FLEET_LOG_ERROR, "stored result unreadable", "job_id", wt->id, "error", err,
                      NULL);
        }
    }
    json_t *job = wt->job;
    wt->job = NULL;
    /* The job prints as every job object does (reals with 6 significant digits, for the
     * progress percent); its "result" with every digit, as GET .../result gives it. */
    char *jt = json_dumps(job, JSON_COMPACT | JSON_REAL_PRECISION(6));
    char *rt = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(job);
    json_decref(result);
    size_t jn = jt ? strlen(jt) : 0, rn = rt ? strlen(rt) : 0;
    char *body = jn >= 2 && rt && jt[jn - 1] == '}' ? malloc(jn + rn + 16) : NULL;
    if (!body) {
        gw_reply_problem(wt->r, GW_PROBLEM_INTERNAL, "out of memory");
    } else {
        size_t n = jn - 1; /* the job without its closing brace, then ,"result":...} */
        memcpy(body, jt, n);
        n += (size_t)sprintf(body + n, "%s\"result\":", jn > 2 ? "," : "");
        memcpy(body + n, rt, rn);
        n += rn;
        body[n++] = '}';
        body[n++] = '\n';
        gw_reply_bytes(wt->r, 200, "application/json", body, n);
    }
    free(body);
    free(jt);
    free(rt);
    wait_free(wt);
}

static void result_taken(void *arg) { wait_free(arg); }

/* Reads the result of a succeeded job. A large one is streamed (out_stream.h) after the
 * job object, written as on_result writes it; a small one comes back to on_result. */
static void read_result(gw_wait *wt) {
    fleet_key k = fleet_key_result(&wt->watch.keys, wt->id);
    char *jt = wt->job ? json_dumps(wt->job, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    size_t jn = jt ? strlen(jt) : 0;
    char *prefix = jn >= 2 && jt[jn - 1] == '}' ? malloc(jn + 16) : NULL;
    size_t pn = 0;
    if (prefix) {
        memcpy(prefix, jt, jn - 1);
        pn = jn - 1 + (size_t)sprintf(prefix + jn - 1, "%s\"result\":", jn > 2 ? "," : "");
    }
    free(jt);
    /* without a prefix (out of memory) the stream is not tried: on_result answers */
    gw_result_stream(wt->r, &(gw_stream_opts){.key = k.s,
                                              .job_id = wt->id,
                                              .prefix = prefix,
                                              .prefix_len = pn,
                                              .suffix = "}\n",
                                              .whole = on_result,
                                              .taken = result_taken,
                                              .arg = wt,
                                              .whole_only = !prefix});
    free(prefix);
}

/* Each read of the job: answers once it is final, the deadline passed or the gateway
 * drains; otherwise keeps watching. */
static bool on_read(void *arg, const redisReply *rep, int found, const fleet_job_view *v) {
    gw_wait *wt = arg;
    gw_req *r = wt->r;
    if (found < 0) { /* no reply, a refusal (loading, busy), or an unexpected answer */
        gw_reply_redis_error(r, "get", rep);
        wait_free(wt);
        return false;
    }
    if (found == 0) {
        gw_reply_job_missing(r, wt->id, rep);
        wait_free(wt);
        return false;
    }
    fleet_status st = fleet_status_from_string(v->status);
    if (st == FLEET_STATUS_SUCCEEDED) {
        /* The result goes along: one more read, and the job is read no more. */
        gw_watch_stop(&wt->watch);
        wt->job = gw_auth_job_json(wt->r, v);
        read_result(wt);
        return false;
    }
    if (fleet_status_is_final(st)) {
        answer(wt, 200, gw_auth_job_json(wt->r, v));
        return false;
    }
    if (wt->expired || wt->g->draining) {
        answer(wt, wt->timeout_status, gw_auth_job_json(wt->r, v));
        return false;
    }
    return true;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_wait *wt = arg;
    wt->expired = true;
    gw_watch_read(&wt->watch); /* the last read gives the answer */
}

void gw_wait_start(gw_req *r, const char *id, long secs, int timeout_status) {
    gw *g = r->g;
    if (!gw_job_keys(r, id)) return; /* answered 404 */
    gw_wait *wt = calloc(1, sizeof *wt);
    if (!wt) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    wt->g = g;
    wt->r = r;
    wt->timeout_status = timeout_status;
    snprintf(wt->id, sizeof wt->id, "%s", id);
    wt->deadline = evtimer_new(g->base, on_deadline, wt);
    if (!wt->deadline) {
        wait_free(wt);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    struct timeval dl = {secs, 0};
    evtimer_add(wt->deadline, &dl);
    char applied[24];
    snprintf(applied, sizeof applied, "wait=%ld", secs);
    gw_add_header(r, "Preference-Applied", applied);
    if (!r->paused) gw_pause(r);
    if (gw_watch_start(&wt->watch, g, id, gw_auth_job_scope(r), on_read, wt) < 0) {
        wait_free(wt);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
    }
}
