/* out_stream.c: large results paced by the client's reading (out_stream.h). */
#include "out_stream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec_stream.h"
#include "fleet/keys.h"
#include "fleet/log.h"
#include "result_file.h"

/* STRLEN in flight, then: the file check, the check pass, the send pass (out_stream.h) */
typedef enum phase { P_LEN, P_PROBE, P_CHECK, P_SEND } phase;

typedef struct gw_rstream {
    gw *g;
    gw_req *r; /* NULL once the request is gone */
    gw_stream_opts o;
    char key[FLEET_KEY_MAX];
    char job_id[64];
    char *prefix;
    phase ph;
    bool file;         /* sending a file's bytes as they are */
    uint64_t total;    /* STRLEN */
    uint64_t pos, end; /* the next range starts at pos; the part sent ends at end */
    uint64_t range;    /* bytes per GETRANGE */
    size_t cap;        /* FLEET_MAX_CONN_OUTPUT */
    fleet_mps *mps;
    gw_result_file_probe probe;
    struct bufferevent *bev; /* while sending */
    struct evbuffer_cb_entry *drain_cb;
    struct event *pump;
    bool reading;  /* a Redis command is in flight */
    bool finished; /* the last byte is queued */
    bool head_sent;
    uint64_t body_len;
} gw_rstream;

static void read_next(gw_rstream *s);
static void send_head(gw_rstream *s);
static void finish(gw_rstream *s);

static void stream_free(gw_rstream *s) {
    if (s->drain_cb && s->bev)
        evbuffer_remove_cb_entry(bufferevent_get_output(s->bev), s->drain_cb);
    if (s->pump) event_free(s->pump);
    fleet_mps_free(s->mps);
    free(s->prefix);
    free(s);
}

/* The request is gone: answered in full, or the client left (its connection freed, with
 * the bufferevent still alive at this point). */
static void on_fini(void *arg) {
    gw_rstream *s = arg;
    s->r = NULL;
    if (s->drain_cb && s->bev)
        evbuffer_remove_cb_entry(bufferevent_get_output(s->bev), s->drain_cb);
    s->drain_cb = NULL;
    s->bev = NULL;
    if (!s->reading) stream_free(s);
}

/* Hands the request back to the caller's GET path (nothing has been sent). */
static void to_whole(gw_rstream *s) {
    gw_stream_opts o = s->o;
    gw_req *r = s->r;
    fleet_key k;
    snprintf(k.s, sizeof k.s, "%s", s->key);
    stream_free(s);
    const char *argv[2] = {"GET", k.s};
    size_t lens[2] = {3, strlen(k.s)};
    if (gw_redis_command(r->g->redis, 2, argv, lens, o.whole, o.arg) < 0) o.whole(NULL, o.arg);
}

/* Ends a stream whose head went out but whose bytes cannot all follow: the client sees
 * the connection close before Content-Length bytes. Frees s (through on_fini). */
static void abort_stream(gw_rstream *s, const char *why) {
    fleet_log(FLEET_LOG_WARN, "result stream cut", "job_id", s->job_id, "reason", why, "request_id",
              s->r->request_id, NULL);
    evhtp_connection_free(evhtp_request_get_connection(s->r->req));
}

/* ------------------------------------------------------------ sending --------------- */

static void to_output(void *arg, const char *p, size_t n) {
    gw_rstream *s = arg;
    evbuffer_add(bufferevent_get_output(s->bev), p, n);
}

static size_t out_len(const gw_rstream *s) {
    return s->bev ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0;
}

/* The output lost bytes to the socket: read more once it is under half the cap. Runs
 * inside libevent's write path, so the read starts from an event of its own. */
static void on_drain(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg) {
    gw_rstream *s = arg;
    if (info->n_deleted && !s->reading && !s->finished && s->r &&
        evbuffer_get_length(b) < s->cap / 2)
        event_active(s->pump, EV_TIMEOUT, 0);
}

static void on_pump(evutil_socket_t fd, short what, void *arg) {
    gw_rstream *s = arg;
    if (!s->r) return;
    if (!s->head_sent) send_head(s);
    else if (!s->reading && !s->finished && out_len(s) < s->cap / 2) read_next(s);
}

static void finish(gw_rstream *s) {
    s->finished = true;
    if (s->o.suffix && !s->file)
        evbuffer_add(bufferevent_get_output(s->bev), s->o.suffix, strlen(s->o.suffix));
    evhtp_send_reply_end(s->r->req);
    /* libevhtp completes the request from its write callback, which runs when the output
     * drains; with nothing left to write, run it now */
    if (out_len(s) == 0) bufferevent_trigger(s->bev, EV_WRITE, 0); /* may free s */
}

/* The head and the first bytes: run from s->pump, after libevhtp's resume of the request
 * (activated first, so it runs first) found nothing queued. Had the head been queued
 * before that resume ran, libevhtp would wait for it to drain, take that drain for the end
 * of its wait, and never look at the finished answer again: the connection would hang. */
static void send_head(gw_rstream *s) {
    gw_req *r = s->r;
    if (s->file) {
        char disposition[GW_CONTENT_DISPOSITION_MAX];
        gw_content_disposition(s->probe.view.filename[0] ? s->probe.view.filename : NULL,
                               disposition, sizeof disposition);
        gw_add_header(r, "Content-Disposition", disposition);
    }
    /* the headers in the order gw_reply_bytes writes them */
    gw_add_header(r, "X-Request-ID", r->request_id);
    gw_add_header(r, "Content-Type",
                  s->file             ? s->probe.view.content_type
                  : s->o.want_msgpack ? "application/msgpack"
                                      : "application/json");
    if (r->too_large || r->uri_too_long || r->headers_too_large || r->g->draining) {
        gw_add_header(r, "Connection", "close");
        evhtp_request_set_keepalive(r->req, 0);
    }
    char cl[32];
    snprintf(cl, sizeof cl, "%" PRIu64, s->body_len);
    gw_add_header(r, "Content-Length", cl);
    fleet_log(FLEET_LOG_DEBUG, "result streamed", "job_id", s->job_id, "bytes", cl, "request_id",
              r->request_id, NULL);
    evhtp_send_reply_start(r->req, EVHTP_RES_OK);
    s->bev = evhtp_connection_get_bev(evhtp_request_get_connection(r->req));
    if (s->prefix && !s->file)
        evbuffer_add(bufferevent_get_output(s->bev), s->prefix, s->o.prefix_len);
    s->drain_cb = evbuffer_add_cb(bufferevent_get_output(s->bev), on_drain, s);
    s->head_sent = true;
    if (s->pos == s->end) finish(s);
    else read_next(s);
}

/* The stream takes the request over from its caller, and answers 200 from here on. */
static void start_sending(gw_rstream *s, uint64_t body_len) {
    gw_req *r = s->r;
    s->body_len = body_len;
    s->ph = P_SEND;
    r->answered = true;
    r->on_fini = on_fini;
    r->fini_arg = s;
    s->o.taken(s->o.arg);
    /* reading again lets libevhtp see a client that leaves */
    gw_resume(r);
    event_active(s->pump, EV_TIMEOUT, 0);
}

/* ------------------------------------------------------------ Redis ----------------- */

static void on_range(redisReply *rep, void *arg) {
    gw_rstream *s = arg;
    s->reading = false;
    if (!s->r) { /* the client left while we read */
        stream_free(s);
        return;
    }
    uint64_t want = s->end - s->pos < s->range ? s->end - s->pos : s->range;
    if (s->ph == P_PROBE)
        want = s->total - s->pos < GW_RESULT_FILE_WINDOW ? s->total - s->pos
                                                         : GW_RESULT_FILE_WINDOW;
    bool ok = rep && rep->type == REDIS_REPLY_STRING && (uint64_t)rep->len == want;
    if (s->ph == P_SEND) {
        if (!ok) {
            abort_stream(s, rep ? "the result expired or changed while it was sent"
                                : "the job store (Redis) went away");
            return;
        }
        if (s->file) evbuffer_add(bufferevent_get_output(s->bev), rep->str, rep->len);
        else if (fleet_mps_feed(s->mps, rep->str, rep->len) < 0) {
            abort_stream(s, "the result changed while it was sent");
            return;
        }
        s->pos += want;
        if (s->pos == s->end) {
            if (!s->file && fleet_mps_finish(s->mps) < 0) {
                abort_stream(s, "the result changed while it was sent");
                return;
            }
            finish(s);
            return;
        }
        if (out_len(s) < s->cap / 2) read_next(s);
        return;
    }
    if (!rep) { /* Redis away before anything was sent: the caller's 503 */
        gw_stream_opts o = s->o;
        stream_free(s);
        o.whole(NULL, o.arg);
        return;
    }
    if (!ok) { /* expired or changed: the GET path answers as it always did */
        to_whole(s);
        return;
    }
    if (s->ph == P_PROBE) {
        int pr = gw_result_file_probe_step(&s->probe, rep->str, rep->len);
        if (pr == 2) {
            s->pos = s->probe.pos;
            read_next(s);
            return;
        }
        if (pr == 1) {
            s->file = true;
            s->pos = s->probe.bytes_off;
            s->end = s->probe.bytes_off + s->probe.bytes_len;
            start_sending(s, s->probe.bytes_len);
            return;
        }
        s->ph = P_CHECK; /* an ordinary result: JSON */
        s->pos = 0;
        s->mps = fleet_mps_new(FLEET_MPS_JSON, s->total, NULL, NULL);
        if (!s->mps) {
            to_whole(s);
            return;
        }
        read_next(s);
        return;
    }
    /* P_CHECK */
    if (fleet_mps_feed(s->mps, rep->str, rep->len) < 0) {
        to_whole(s);
        return;
    }
    s->pos += want;
    if (s->pos < s->end) {
        read_next(s);
        return;
    }
    if (fleet_mps_finish(s->mps) < 0) {
        to_whole(s);
        return;
    }
    uint64_t body = fleet_mps_out_len(s->mps) + (s->o.want_msgpack ? 0 : s->o.prefix_len) +
                    (s->o.suffix ? strlen(s->o.suffix) : 0);
    fleet_mps_mode mode = s->o.want_msgpack ? FLEET_MPS_CLIENT : FLEET_MPS_JSON;
    fleet_mps_free(s->mps);
    s->mps = fleet_mps_new(mode, s->total, to_output, s);
    if (!s->mps) {
        to_whole(s);
        return;
    }
    s->pos = 0;
    start_sending(s, body);
}

static void read_next(gw_rstream *s) {
    uint64_t n = s->ph == P_PROBE ? GW_RESULT_FILE_WINDOW : s->range;
    uint64_t last = s->ph == P_PROBE ? s->total : s->end;
    if (n > last - s->pos) n = last - s->pos;
    char a[24], b[24];
    snprintf(a, sizeof a, "%" PRIu64, s->pos);
    snprintf(b, sizeof b, "%" PRIu64, s->pos + n - 1);
    const char *argv[4] = {"GETRANGE", s->key, a, b};
    size_t lens[4] = {8, strlen(s->key), strlen(a), strlen(b)};
    s->reading = true;
    if (gw_redis_command(s->g->redis, 4, argv, lens, on_range, s) < 0) on_range(NULL, s);
}

static void on_strlen(redisReply *rep, void *arg) {
    gw_rstream *s = arg;
    s->reading = false;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        if (!rep) {
            gw_stream_opts o = s->o;
            stream_free(s);
            o.whole(NULL, o.arg);
        } else {
            to_whole(s); /* not a string, say: the GET path tells */
        }
        return;
    }
    s->total = rep->integer > 0 ? (uint64_t)rep->integer : 0;
    if (s->total <= s->cap / 8 || s->o.whole_only) {
        to_whole(s);
        return;
    }
    s->end = s->total;
    if (s->o.allow_file && !s->o.want_msgpack) {
        s->ph = P_PROBE;
        s->probe.total = s->total;
    } else {
        s->ph = P_CHECK;
        s->mps = fleet_mps_new(s->o.want_msgpack ? FLEET_MPS_CLIENT : FLEET_MPS_JSON, s->total,
                               NULL, NULL);
        if (!s->mps) {
            to_whole(s);
            return;
        }
    }
    /* the caller keeps its state until taken() (the head goes out) or whole() runs */
    read_next(s);
}

void gw_result_stream(gw_req *r, const gw_stream_opts *o) {
    gw_rstream *s = calloc(1, sizeof *s);
    if (!s) {
        o->whole(NULL, o->arg);
        return;
    }
    s->g = r->g;
    s->r = r;
    s->o = *o;
    snprintf(s->key, sizeof s->key, "%s", o->key);
    snprintf(s->job_id, sizeof s->job_id, "%s", o->job_id ? o->job_id : "");
    s->cap = (size_t)r->g->cfg.max_conn_output;
    s->range = s->cap / 16;
    if (s->range < 4096) s->range = 4096;
    if (s->range > 65536) s->range = 65536;
    s->pump = event_new(r->g->base, -1, 0, on_pump, s);
    if (o->prefix && o->prefix_len) {
        s->prefix = malloc(o->prefix_len);
        if (s->prefix) memcpy(s->prefix, o->prefix, o->prefix_len);
    }
    if (!s->pump || (o->prefix_len && !s->prefix)) {
        stream_free(s);
        o->whole(NULL, o->arg);
        return;
    }
    const char *argv[2] = {"STRLEN", s->key};
    size_t lens[2] = {6, strlen(s->key)};
    s->reading = true;
    if (gw_redis_command(r->g->redis, 2, argv, lens, on_strlen, s) < 0) on_strlen(NULL, s);
}
