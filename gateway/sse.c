/* sse.c: GET /v1/jobs/{id}/events, a Server-Sent Events stream of one job.
 *
 *   event: state      the job as it is when the stream opens (always first)
 *   event: status     its status changed (queued again, running)
 *   event: progress   its progress changed
 *   event: output     a partial output: {"index", "attempt", "output"} as an item of
 *                     GET /v1/jobs/{id}/outputs (outputs.c), every one in index order,
 *                     from the first (those stored before the stream opened included)
 *   event: final      it ended (succeeded, failed, cancelled); then the stream closes
 *
 * Each other event's data is the job object of GET /v1/jobs/{id} on one line. Outputs
 * are read with outputs.lua, a page at a time, when a read of the job shows more of them
 * (field out_n) than were sent; the final event waits until they are all sent, so a
 * client that saw `final` saw every output (but for one that stopped reading: below).
 * Comment lines (": ping") go out every FLEET_SSE_HEARTBEAT_S seconds so proxies keep the
 * stream open.
 *
 * The stream watches its job (watch.h): it reads the job again on each wake-up and on the
 * safety tick, so a dropped message delays an event but does not lose the final one. A
 * client that goes away fires the request's fini hook, which ends everything here; a
 * read still in flight then frees the stream when it returns. While the
 * gateway shuts down, open streams end after their next read (clients reconnect to
 * another gateway).
 *
 * A client that does not read cannot make the stream hold more than about
 * FLEET_MAX_CONN_OUTPUT: while the connection's unsent output is over that cap, progress
 * and status events and heartbeats are not written (and not remembered as sent), so once
 * the client reads again the next read sends the job as it is then. Every event carries
 * the whole job, so a skipped one loses nothing but an intermediate step. Outputs are not
 * read while it is over the cap either; a job that ends then gets its final event without
 * the outputs not sent yet (GET .../outputs?after=N has them). The final event is always
 * written: the stream ends with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "gone.h"
#include "outputs.h"
#include "redis.h"
#include "routes.h"
#include "watch.h"

typedef struct gw_sse {
    gw *g;
    gw_req *r; /* NULL once the request is gone */
    gw_watch watch;
    char id[FLEET_ID_LEN + 1];
    struct event *heartbeat;
    bool started; /* the 200 and its headers went out */
    bool ended;   /* the final chunk went out */
    long seq;     /* event ids */
    char last_status[16];
    double last_percent;
    long long last_done;
    char last_message[208];
    long long out_sent; /* outputs sent: the next one's index */
    bool out_reading;   /* an outputs read is in flight */
    fleet_cmd out_cmd;  /* that read */
} gw_sse;

static void sse_free(gw_sse *s) {
    gw_watch_stop(&s->watch);
    if (s->heartbeat) event_free(s->heartbeat);
    free(s);
}

/* The request is gone (answered and finished, or the client left). */
static void on_fini(void *arg) {
    gw_sse *s = arg;
    s->r = NULL;
    gw_watch_stop(&s->watch);
    if (!gw_watch_reading(&s->watch) && !s->out_reading) sse_free(s);
}

/* True while the client has not taken what was written (over FLEET_MAX_CONN_OUTPUT). */
static bool backed_up(const gw_sse *s) {
    evhtp_connection_t *conn = evhtp_request_get_connection(s->r->req);
    struct bufferevent *bev = conn ? evhtp_connection_get_bev(conn) : NULL;
    return bev &&
           evbuffer_get_length(bufferevent_get_output(bev)) > (size_t)s->g->cfg.max_conn_output;
}

static void send_text(gw_sse *s, const char *text, size_t len) {
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    evbuffer_add(b, text, len);
    evhtp_send_reply_chunk(s->r->req, b);
    evbuffer_free(b);
}

static void send_event(gw_sse *s, const char *event, json_t *job) {
    char *data = json_dumps(job, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(job);
    if (!data) return;
    size_t cap = strlen(data) + strlen(event) + 64;
    char *text = malloc(cap);
    if (text) {
        int n = snprintf(text, cap, "id: %ld\nevent: %s\ndata: %s\n\n", ++s->seq, event, data);
        send_text(s, text, (size_t)n);
    }
    free(text);
    free(data);
}

/* Ends the stream: the last chunk; libevhtp then finishes the request (on_fini, which
 * may run before this returns). */
static void end_stream(gw_sse *s) {
    if (s->ended || !s->r) return;
    s->ended = true;
    gw_watch_stop(&s->watch);
    evhtp_send_reply_chunk_end(s->r->req);
}

static void start_stream(gw_sse *s) {
    gw_req *r = s->r;
    gw_add_header(r, "Content-Type", "text/event-stream");
    gw_add_header(r, "Cache-Control", "no-cache");
    gw_add_header(r, "X-Accel-Buffering", "no"); /* nginx: do not buffer the stream */
    gw_add_header(r, "X-Request-ID", r->request_id);
    r->answered = true;
    evhtp_send_reply_chunk_start(r->req, EVHTP_RES_OK);
    s->started = true;
    send_text(s, "retry: 2000\n\n", 13);
}

/* An outputs read came back: one `output` event per output, then the job is read again
 * (more outputs, or the final event that waited for them). */
static void on_outputs(redisReply *rep, void *arg) {
    gw_sse *s = arg;
    s->out_reading = false;
    if (!s->r) { /* the client left while we read */
        if (!gw_watch_reading(&s->watch)) sse_free(s);
        return;
    }
    fleet_outputs_page p;
    if (s->ended || !rep || fleet_state_outputs_reply(rep, &p) <= 0)
        return; /* the tick reads again */
    for (size_t i = 0; i < p.page->elements; i++) {
        char err[160];
        json_t *o = gw_output_json(s->out_sent, p.page->element[i], err, sizeof err);
        if (!o) {
            fleet_log(FLEET_LOG_WARN, "sse: output not sent", "job_id", s->id, "error", err, NULL);
            o = json_pack("{s:I, s:s}", "index", (json_int_t)s->out_sent, "error", err);
        }
        s->out_sent++;
        if (o) send_event(s, "output", o);
    }
    gw_watch_read(&s->watch);
}

/* Reads the next page of outputs from s->out_sent on. */
static void read_outputs(gw_sse *s) {
    if (s->out_reading) return;
    fleet_state_outputs(&s->watch.keys, s->id, s->watch.tenant, s->out_sent, GW_OUTPUTS_PAGE_MAX,
                        &s->out_cmd);
    s->out_reading = true;
    if (gw_redis_script(s->g->redis, &s->out_cmd, on_outputs, s) < 0)
        s->out_reading = false; /* Redis not ready: the tick reads the job again */
}

/* Each read of the job: the first answers the request (an error, or the stream's
 * start); then an event when something changed, the final one, or the end. */
static bool on_read(void *arg, const redisReply *rep, int found, const fleet_job_view *v) {
    gw_sse *s = arg;
    if (!s->r) {                          /* the client left while we read */
        if (!s->out_reading) sse_free(s); /* else on_outputs frees it */
        return false;
    }
    if (!s->started) {
        if (found < 0) gw_reply_redis_error(s->r, "get", rep);
        else if (found == 0) gw_reply_job_missing(s->r, s->id, rep);
        if (found <= 0) return false; /* answered: on_fini frees s */
        start_stream(s);
    } else if (found <= 0) {
        /* Redis away: keep the stream and read again on the next tick. An expired job
         * cannot end any more: close. */
        if (found == 0) {
            end_stream(s);
            return false;
        }
        return true;
    }
    fleet_status st = fleet_status_from_string(v->status);
    bool final = fleet_status_is_final(st);
    /* Outputs not sent yet go first; the final event waits for them, unless the client
     * does not read (then it ends without them: GET .../outputs?after=N has them). */
    bool outputs_due = v->outputs > s->out_sent && !backed_up(s);
    if (outputs_due) read_outputs(s);
    const char *event = NULL;
    if (s->seq == 0) event = "state";
    else if (outputs_due && final) return true; /* on_outputs reads the job again */
    else if (strcmp(v->status, s->last_status) != 0) event = final ? "final" : "status";
    else if (v->progress_percent != s->last_percent || v->progress_done != s->last_done ||
             strcmp(v->progress_message ? v->progress_message : "", s->last_message) != 0)
        event = "progress";
    if (event && !final && s->seq > 0 && backed_up(s)) event = NULL; /* sent when drained */
    if (event) {
        snprintf(s->last_status, sizeof s->last_status, "%s", v->status);
        s->last_percent = v->progress_percent;
        s->last_done = v->progress_done;
        snprintf(s->last_message, sizeof s->last_message, "%s",
                 v->progress_message ? v->progress_message : "");
        send_event(s, event, gw_auth_job_json(s->r, v));
    }
    if (final && outputs_due) return true; /* the state event went first; then outputs */
    if (final) {
        if (strcmp(event ? event : "", "final") != 0)
            send_event(s, "final", gw_auth_job_json(s->r, v));
        end_stream(s);
        return false;
    }
    if (s->g->draining) {
        end_stream(s);
        return false;
    }
    return true;
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_sse *s = arg;
    if (s->r && s->started && !s->ended && !backed_up(s)) send_text(s, ": ping\n\n", 8);
}

void gw_sse_start(gw_req *r, const char *id) {
    /* Paused if the API key was looked up in Redis: the stream reads again, so a client
     * that goes away is noticed at once, as when the key came from the cache. */
    gw_resume(r);
    gw *g = r->g;
    if (!gw_job_keys(r, id)) return; /* answered 404 */
    gw_sse *s = calloc(1, sizeof *s);
    if (!s) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    s->g = g;
    s->r = r;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->heartbeat = event_new(g->base, -1, EV_PERSIST, on_heartbeat, s);
    if (!s->heartbeat) {
        sse_free(s);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    struct timeval hb = {g->cfg.sse_heartbeat_s, 0};
    evtimer_add(s->heartbeat, &hb);
    r->on_fini = on_fini;
    r->fini_arg = s;
    if (gw_watch_start(&s->watch, g, id, gw_auth_job_scope(r), on_read, s) < 0)
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory"); /* on_fini frees s */
}
