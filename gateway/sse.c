/* sse.c: GET /v1/jobs/{id}/events, a Server-Sent Events stream of one job.
 *
 *   event: state      the job as it is when the stream opens (always first)
 *   event: status     its status changed (queued again, running)
 *   event: progress   its progress changed
 *   event: final      it ended (succeeded, failed, cancelled); then the stream closes
 *
 * Each event's data is the job object of GET /v1/jobs/{id} on one line. Comment lines
 * (": ping") go out every FLEET_SSE_HEARTBEAT_S seconds so proxies keep the stream open.
 *
 * The stream is woken by the events subscription (events.h) and reads the job again on
 * each wake-up (and every SAFETY_MS), so a dropped message delays an event but does not
 * lose the final one. A client that goes away fires the request's fini hook, which ends
 * everything here; a read still in flight then frees the stream when it returns. While the
 * gateway shuts down, open streams end after their next read (clients reconnect to
 * another gateway).
 *
 * A client that does not read cannot make the stream hold more than about
 * FLEET_MAX_CONN_OUTPUT: while the connection's unsent output is over that cap, progress
 * and status events and heartbeats are not written (and not remembered as sent), so once
 * the client reads again the next read sends the job as it is then. Every event carries
 * the whole job, so a skipped one loses nothing but an intermediate step. The final
 * event is always written: the stream ends with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "redis.h"
#include "routes.h"

#define SAFETY_MS 2000

typedef struct gw_sse {
    gw *g;
    gw_req *r; /* NULL once the request is gone */
    gw_waiter w;
    char id[FLEET_ID_LEN + 1];
    char tenant[FLEET_TENANT_MAX + 1];
    fleet_cmd cmd;
    struct event *heartbeat, *safety;
    bool reading, again;
    bool started; /* the 200 and its headers went out */
    bool ended;   /* the final chunk went out */
    long seq;     /* event ids */
    char last_status[16];
    double last_percent;
    long long last_done;
    char last_message[208];
} gw_sse;

static void read_job(gw_sse *s);

static void sse_free(gw_sse *s) {
    gw_events_unwatch(s->g->events, &s->w);
    if (s->heartbeat) event_free(s->heartbeat);
    if (s->safety) event_free(s->safety);
    free(s);
}

/* The request is gone (answered and finished, or the client left). */
static void on_fini(void *arg) {
    gw_sse *s = arg;
    s->r = NULL;
    gw_events_unwatch(s->g->events, &s->w);
    if (!s->reading) sse_free(s);
}

/* True while the client has not taken what was written (over FLEET_MAX_CONN_OUTPUT). */
static bool backed_up(const gw_sse *s) {
    evhtp_connection_t *conn = evhtp_request_get_connection(s->r->req);
    struct bufferevent *bev = conn ? evhtp_connection_get_bev(conn) : NULL;
    return bev && evbuffer_get_length(bufferevent_get_output(bev)) >
                      (size_t)s->g->cfg.max_conn_output;
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

/* Ends the stream: the last chunk; libevhtp then finishes the request (on_fini). */
static void end_stream(gw_sse *s) {
    if (s->ended || !s->r) return;
    s->ended = true;
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

static void on_read(redisReply *rep, void *arg) {
    gw_sse *s = arg;
    s->reading = false;
    if (!s->r) { /* the client left while we read */
        sse_free(s);
        return;
    }
    fleet_job_view v;
    int found = rep ? fleet_state_get_reply(rep, &v) : -2;
    if (!s->started) {
        if (found < 0) gw_reply_redis_error(s->r, "get", rep);
        else if (found == 0)
            gw_reply_problem(s->r, GW_PROBLEM_JOB_NOT_FOUND,
                             "no job with id '%s' (unknown, or expired after its ttl_s)", s->id);
        if (found <= 0) return; /* answered: on_fini frees s */
        start_stream(s);
    } else if (found <= 0) {
        /* Redis away: keep the stream and read again on the next tick. An expired job
         * cannot end any more: close. */
        if (found == 0) end_stream(s);
        return;
    }
    fleet_status st = fleet_status_from_string(v.status);
    bool final = fleet_status_is_final(st);
    const char *event = NULL;
    if (s->seq == 0) event = "state";
    else if (strcmp(v.status, s->last_status) != 0) event = final ? "final" : "status";
    else if (v.progress_percent != s->last_percent || v.progress_done != s->last_done ||
             strcmp(v.progress_message ? v.progress_message : "", s->last_message) != 0)
        event = "progress";
    if (event && !final && s->seq > 0 && backed_up(s)) event = NULL; /* sent when drained */
    if (event) {
        snprintf(s->last_status, sizeof s->last_status, "%s", v.status);
        s->last_percent = v.progress_percent;
        s->last_done = v.progress_done;
        snprintf(s->last_message, sizeof s->last_message, "%s",
                 v.progress_message ? v.progress_message : "");
        send_event(s, event, fleet_job_to_json(&v));
    }
    if (final) {
        if (strcmp(event ? event : "", "final") != 0) send_event(s, "final", fleet_job_to_json(&v));
        end_stream(s);
        return;
    }
    if (s->g->draining) {
        end_stream(s);
        return;
    }
    if (s->again) read_job(s);
}

static void read_job(gw_sse *s) {
    if (!s->r || s->ended) return;
    if (s->reading) {
        s->again = true;
        return;
    }
    s->again = false;
    fleet_state_get(&s->g->keys, s->id, s->tenant, &s->cmd);
    s->reading = true;
    if (gw_redis_script(s->g->redis, &s->cmd, on_read, s) < 0) {
        s->reading = false;
        if (!s->started) gw_reply_unavailable(s->r); /* on_fini frees s */
    }
}

static void on_wake(void *arg) { read_job(arg); }

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    read_job(arg);
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
    gw_sse *s = calloc(1, sizeof *s);
    if (!s) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    s->g = g;
    s->r = r;
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->tenant, sizeof s->tenant, "%s", r->who.tenant);
    s->heartbeat = event_new(g->base, -1, EV_PERSIST, on_heartbeat, s);
    s->safety = event_new(g->base, -1, EV_PERSIST, on_tick, s);
    if (!s->heartbeat || !s->safety) {
        sse_free(s);
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    struct timeval hb = {g->cfg.sse_heartbeat_s, 0}, tick = {SAFETY_MS / 1000, 0};
    evtimer_add(s->heartbeat, &hb);
    evtimer_add(s->safety, &tick);
    r->on_fini = on_fini;
    r->fini_arg = s;
    gw_events_watch(g->events, &s->w, id, on_wake, s);
    read_job(s);
}
