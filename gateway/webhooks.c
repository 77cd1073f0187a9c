/* webhooks.c: the delivery engine (webhooks.h). */
#include "webhooks.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "curl_loop.h"
#include "events.h"
#include "fleet/id.h"
#include "fleet/job_json.h"
#include "fleet/log.h"
#include "fleet/redis_health.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "fleet/tenant.h"
#include "metrics.h"
#include "redis.h"
#include "ssrf.h"
#include "webhook_sign.h"

/* An idle gateway sends Redis no command for deliveries beyond this safety tick: new
 * tasks wake the loop through the events channel ("<id> webhook", events.c), and a due
 * retry through a timer armed for the schedule's first due time. The tick catches a lost
 * message, and reads the schedule's head for retries another gateway scheduled (then
 * died). Jittered so that many gateways started together do not tick together. */
#define SAFETY_MS 5000
#define SAFETY_JITTER_MS 1000
/* A due time that the promote script did not find due yet (the Redis clock runs behind
 * this gateway's): asked again no sooner than this. */
#define PROMOTE_SKEW_MS 1000
#define PROMOTE_MAX 100
#define GW_WEBHOOK_SICK_MS 1000 /* task reads paused after Redis refused one for now */
#define RETRY_AFTER_MAX_S 86400L

/* One shard's task stream, retry set and dead-letter stream (shards.h): a gateway reads
 * every shard of the table, each with its own group state and promote timer. */
typedef struct wh_shard {
    struct gw_webhooks *wh;
    int k;
    bool group_ok;
    bool reading;    /* a task read (or the group's creation) in flight */
    bool read_again; /* woken while a read was in flight: read once more after it */
    long reserved;   /* the COUNT of the read in flight (room taken from max_inflight) */
    struct event *promote_ev; /* armed for the earliest known due retry; NULL: not made yet */
    fleet_cmd promote_cmd;
    bool promoting, reading_head;
    long long promote_at_ms;    /* when promote_ev fires (0: not armed) */
    long long promote_floor_ms; /* no promote before this (after one that found none due) */
} wh_shard;

struct gw_webhooks {
    gw *g;
    gw_curl *curl;
    struct evdns_base *dns;
    struct event *safety_ev; /* the slow tick (SAFETY_MS) */
    struct event *read_ev;   /* a task read put off: room freed, Redis sick until then */
    struct event *reclaim_ev;
    gw_waiter any; /* "<id> webhook" messages wake the task read */
    unsigned char key[GW_WHSEC_KEY_MAX];
    size_t keylen;
    gw_cidr_list allow;
    long schedule_ms[GW_WEBHOOK_SCHEDULE_MAX];
    int attempts_max;
    char consumer[64];
    bool stopped;
    bool want_room;        /* a read was put off for lack of room: read when a delivery ends */
    size_t inflight;       /* deliveries between their task read and their settle */
    long reserved;         /* the COUNTs of the task reads in flight, over the shards */
    struct delivery *live; /* those deliveries, for refresh_claims */
    struct event *refresh_ev;
    uint64_t sick_until_ms; /* Redis refused the task read (full, loading): wait till then */
    wh_shard shard[FLEET_SHARDS_MAX]; /* by shard number */
};

/* One delivery attempt, from the task read to the settle. */
typedef struct delivery {
    gw_webhooks *wh;
    struct delivery *prev, *next; /* in wh->live */
    int k;           /* the shard whose task stream named it: its job's, and its keys' */
    fleet_keys keys; /* that shard's (kept: the table may change while it runs) */
    char entry_id[48];
    char msg[96];
    char job_id[FLEET_ID_LEN + 1];
    char tenant[FLEET_TENANT_MAX + 1];
    unsigned char key[GW_WHSEC_KEY_MAX]; /* the tenant's secret, else the gateway's */
    size_t keylen;
    char type[24];
    char url[GW_URL_MAX + 1];
    long long ts_ms;
    long attempts_before;
    char *body; /* malloc'd */
    size_t body_len;
    bool body_new; /* built on this attempt: store it for the retries */
    gw_url u;
    char pin[GW_URL_MAX + 64];
    fleet_cmd cmd;
    fleet_webhook_outcome outcome; /* of the settle in flight */
    long long due_ms;              /* its retry time */
} delivery;

static void arm_promote(wh_shard *s, long long due_ms);
static void read_soon(gw_webhooks *wh, long delay_ms);

/* The shard k of the table in use, or NULL when the table has none (it was removed). */
static wh_shard *shard_of(gw_webhooks *wh, int k) {
    const fleet_shards *sh = &wh->g->shards;
    if (k < 0 || k >= FLEET_SHARDS_MAX || !sh->shard[k].used) return NULL;
    wh_shard *s = &wh->shard[k];
    s->wh = wh;
    s->k = k;
    return s;
}

static const fleet_keys *shard_keys(const wh_shard *s) {
    return &s->wh->g->shards.shard[s->k].keys;
}

/* ------------------------------------------------------------ settings -------------- */

int gw_webhook_schedule_parse(const char *text, long *delays_ms, int max, int *n, char *err,
                              size_t errlen) {
    *n = 0;
    const char *p = text;
    while (p && *p) {
        char *end;
        double s = strtod(p, &end);
        if (end == p || s < 0 || s > 7 * 86400.0 || (*end && *end != ',')) {
            snprintf(err, errlen,
                     "FLEET_WEBHOOK_SCHEDULE must be comma-separated seconds, e.g. 0,5,300");
            return -1;
        }
        if (*n >= max) {
            snprintf(err, errlen, "FLEET_WEBHOOK_SCHEDULE has more than %d attempts", max);
            return -1;
        }
        delays_ms[(*n)++] = (long)(s * 1000.0);
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        snprintf(err, errlen, "FLEET_WEBHOOK_SCHEDULE needs at least one attempt");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ settling -------------- */

static void delivery_free(delivery *d) {
    gw_webhooks *wh = d->wh;
    if (d->prev) d->prev->next = d->next;
    else wh->live = d->next;
    if (d->next) d->next->prev = d->prev;
    wh->inflight--;
    free(d->body);
    free(d);
    /* A read put off for lack of room goes on now that there is some (from the loop, not
     * from inside this caller). */
    if (wh->want_room && !wh->stopped) {
        wh->want_room = false;
        read_soon(wh, 0);
    }
}

static void on_settled(redisReply *rep, void *arg) {
    delivery *d = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        fleet_log(FLEET_LOG_ERROR, "webhook outcome not recorded; the task is taken over later",
                  "webhook_id", d->msg, "error", rep ? rep->str : "redis unavailable", NULL);
    else if (rep->type == REDIS_REPLY_INTEGER && rep->integer < 0)
        fleet_log(FLEET_LOG_WARN,
                  "webhook outcome not recorded: another gateway took this delivery over while "
                  "it ran (it was pending longer than FLEET_WEBHOOK_CLAIM_MS)",
                  "webhook_id", d->msg, NULL);
    else if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
             d->outcome == FLEET_WEBHOOK_RETRY && !d->wh->stopped) {
        wh_shard *s = shard_of(d->wh, d->k);
        if (s) arm_promote(s, d->due_ms); /* this gateway promotes its own retry when due */
    }
    delivery_free(d);
}

static void settle(delivery *d, fleet_webhook_outcome outcome, long long due_ms, long status,
                   const char *error) {
    gw_webhooks *wh = d->wh;
    if (wh->stopped) { /* shutting down: the entry stays pending for another gateway */
        delivery_free(d);
        return;
    }
    char st[16];
    snprintf(st, sizeof st, "%ld", status);
    static const char *const names[] = {"delivered", "retry", "failed"};
    fleet_log(outcome == FLEET_WEBHOOK_DELIVERED ? FLEET_LOG_INFO : FLEET_LOG_WARN,
              outcome == FLEET_WEBHOOK_DELIVERED ? "webhook delivered"
              : outcome == FLEET_WEBHOOK_RETRY   ? "webhook delivery failed; will retry"
                                                 : "webhook delivery failed for good",
              "webhook_id", d->msg, "job_id", d->job_id, "outcome", names[outcome], "status", st,
              error && *error ? "error" : NULL, error, NULL);
    gw_metrics_webhook(names[outcome]);
    d->outcome = outcome;
    d->due_ms = due_ms;
    fleet_webhook_settle ws = {
        .msg = d->msg,
        .job_id = d->job_id,
        .entry_id = d->entry_id,
        .outcome = outcome,
        .due_ms = due_ms,
        .http_status = status,
        .error = error ? error : "",
        .body = d->body_new ? d->body : NULL,
        .body_len = d->body_new ? d->body_len : 0,
        .dlq_cap = wh->g->cfg.webhook_dlq_cap,
        .consumer = wh->consumer,
    };
    fleet_state_webhook_settle(&d->keys, &ws, &d->cmd);
    if (gw_redis_script(wh->g->redis, &d->cmd, on_settled, d) < 0) {
        fleet_log(FLEET_LOG_WARN,
                  "webhook outcome not recorded (redis unavailable); the task "
                  "is taken over later",
                  "webhook_id", d->msg, NULL);
        delivery_free(d);
    }
}

/* A failure worth another attempt: when, if any attempt is left. */
static void retry_or_fail(delivery *d, long status, long retry_after_s, const char *error) {
    gw_webhooks *wh = d->wh;
    long n = d->attempts_before + 1; /* this attempt's number */
    if (n >= wh->attempts_max) {
        char why[400];
        snprintf(why, sizeof why, "gave up after %ld attempts; last: %s", n, error);
        settle(d, FLEET_WEBHOOK_FAILED, 0, status, why);
        return;
    }
    long delay = wh->schedule_ms[n];
    unsigned long rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) < 0) rnd = (unsigned long)fleet_now_ms();
    delay += delay > 10 ? (long)(rnd % (unsigned long)(delay / 5 + 1)) - delay / 10 : 0;
    if (retry_after_s > 0) {
        long ra = retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : retry_after_s;
        if (ra * 1000 > delay) delay = ra * 1000;
    }
    settle(d, FLEET_WEBHOOK_RETRY, (long long)fleet_now_ms() + delay, status, error);
}

/* ------------------------------------------------------------ sending --------------- */

static void on_posted(const gw_fetch_result *res, void *arg) {
    delivery *d = arg;
    if (d->wh->stopped) {
        delivery_free(d);
        return;
    }
    long s = res->status;
    if (s >= 200 && s < 300) {
        settle(d, FLEET_WEBHOOK_DELIVERED, 0, s, "");
    } else if (s == 0) {
        retry_or_fail(d, 0, -1, res->error && *res->error ? res->error : "no answer");
    } else if (s == 429 || s >= 500) {
        char why[64];
        snprintf(why, sizeof why, "the receiver answered %ld", s);
        retry_or_fail(d, s, res->retry_after_s, why);
    } else {
        char why[96];
        snprintf(why, sizeof why, "the receiver answered %ld%s", s,
                 s == 410 ? " (gone): deliveries stopped" : "; not retried");
        settle(d, FLEET_WEBHOOK_FAILED, 0, s, why);
    }
}

static int allow_addr(const struct sockaddr *sa, void *arg) {
    gw_webhooks *wh = arg;
    return gw_addr_refused(sa, &wh->allow) == NULL;
}

/* Signs and posts to the checked, pinned address. */
static void post(delivery *d, const struct sockaddr *addr) {
    gw_webhooks *wh = d->wh;
    /* An IP literal gets no pin: curl connects to the literal itself. */
    if (gw_url_pin(&d->u, addr, d->pin, sizeof d->pin) < 0) {
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, "cannot pin the checked address");
        return;
    }
    long long ts = (long long)(fleet_now_ms() / 1000);
    char sig[GW_WEBHOOK_SIG_SIZE], h_id[128], h_ts[48], h_sig[GW_WEBHOOK_SIG_SIZE + 32];
    if (gw_webhook_sign(d->key, d->keylen, d->msg, ts, d->body, d->body_len, sig, sizeof sig) < 0) {
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, "cannot sign the delivery");
        return;
    }
    snprintf(h_id, sizeof h_id, "webhook-id: %s", d->msg);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    const char *headers[] = {h_id, h_ts, h_sig, "Content-Type: application/json", NULL};
    gw_fetch f = {.url = d->url,
                  .body = d->body,
                  .body_len = d->body_len,
                  .headers = headers,
                  .pin = d->pin[0] ? d->pin : NULL,
                  .timeout_ms = wh->g->cfg.webhook_timeout_ms,
                  .allow_addr = allow_addr,
                  .allow_arg = wh};
    if (gw_curl_post(wh->curl, &f, on_posted, d) < 0)
        retry_or_fail(d, 0, -1, "cannot start the request");
}

/* Checks every address the host resolved to; posts to the first, pinned. */
static void on_resolved(int result, struct evutil_addrinfo *res, void *arg) {
    delivery *d = arg;
    if (d->wh->stopped) {
        if (res) evutil_freeaddrinfo(res);
        delivery_free(d);
        return;
    }
    if (result != 0 || !res) {
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", d->u.host, evutil_gai_strerror(result));
        if (res) evutil_freeaddrinfo(res);
        retry_or_fail(d, 0, -1, why);
        return;
    }
    for (struct evutil_addrinfo *a = res; a; a = a->ai_next) {
        const char *why = gw_addr_refused(a->ai_addr, &d->wh->allow);
        if (!why) continue;
        char ip[64] = "?", msg[400];
        if (a->ai_family == AF_INET)
            evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
        else if (a->ai_family == AF_INET6)
            evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip,
                             sizeof ip);
        snprintf(msg, sizeof msg, "refused by the SSRF guard: %s resolves to %s (%s)", d->u.host,
                 ip, why);
        evutil_freeaddrinfo(res);
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, msg);
        return;
    }
    post(d, res->ai_addr);
    evutil_freeaddrinfo(res);
}

static void check_and_post(delivery *d) {
    char err[256];
    if (gw_url_parse(d->url, &d->u, err, sizeof err) < 0) {
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, err);
        return;
    }
    /* The submit-time check again, by the same function: the allowlist may have changed
     * since, and a task may have been written by an older gateway. */
    if (gw_url_check_literal(&d->u, &d->wh->allow, err, sizeof err) < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "refused by the SSRF guard: %s", err);
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, msg);
        return;
    }
    if (d->u.host_is_ip) {
        post(d, (const struct sockaddr *)&d->u.addr);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", d->u.port);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP};
    /* May call on_resolved at once (numbers, /etc/hosts). */
    evdns_getaddrinfo(d->wh->dns, d->u.host, port, &hints, on_resolved, d);
}

/* ------------------------------------------------------------ building the body ----- */

static void set_body(delivery *d, json_t *data) {
    char when[32];
    fleet_format_time_ms(when, d->ts_ms);
    json_t *o = json_pack("{s:s, s:s, s:o}", "type", d->type, "timestamp", when, "data", data);
    d->body = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    d->body_len = d->body ? strlen(d->body) : 0;
    d->body_new = true;
}

static void on_job(redisReply *rep, void *arg) {
    delivery *d = arg;
    if (d->wh->stopped || !rep) {
        delivery_free(d); /* pending: another attempt later */
        return;
    }
    fleet_job_view v;
    int found = fleet_state_get_reply(rep, &v);
    /* A job that expired meanwhile still gets its event, with what is known. */
    set_body(d, found == 1 ? fleet_job_to_json(&v) : json_pack("{s:s}", "id", d->job_id));
    if (!d->body) {
        delivery_free(d);
        return;
    }
    check_and_post(d);
}

/* Continues once the signing key is known: builds the body on the first attempt. */
static void after_secret(delivery *d) {
    gw_webhooks *wh = d->wh;
    if (d->keylen == 0) {
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0,
               "no webhook secret to sign with (the tenant has none, nor the gateway)");
        return;
    }
    if (d->body) {
        check_and_post(d);
        return;
    }
    fleet_state_get(&d->keys, d->job_id, d->tenant, &d->cmd);
    if (gw_redis_script(wh->g->redis, &d->cmd, on_job, d) < 0) delivery_free(d);
}

static void on_secret(redisReply *rep, void *arg) {
    delivery *d = arg;
    if (d->wh->stopped || !rep) {
        delivery_free(d);
        return;
    }
    if (rep->type == REDIS_REPLY_STRING) {
        char err[128];
        size_t n = 0;
        if (gw_whsec_parse(rep->str, d->key, &n, err, sizeof err) == 0) d->keylen = n;
        else
            fleet_log(FLEET_LOG_ERROR, "tenant webhook secret unreadable; using the gateway's",
                      "tenant", d->tenant, "error", err, NULL);
    }
    after_secret(d);
}

/* The delivery hash: HGETALL shape. */
static void on_delivery(redisReply *rep, void *arg) {
    delivery *d = arg;
    gw_webhooks *wh = d->wh;
    if (wh->stopped || !rep) {
        delivery_free(d);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
        /* The delivery expired (or was settled by a gateway that was presumed dead): drop
         * the task. */
        settle(d, FLEET_WEBHOOK_FAILED, 0, 0, "");
        return;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const char *k = rep->element[i]->str, *v = rep->element[i + 1]->str;
        if (!k || !v) continue;
        if (strcmp(k, "job") == 0) snprintf(d->job_id, sizeof d->job_id, "%s", v);
        else if (strcmp(k, "type") == 0) snprintf(d->type, sizeof d->type, "%s", v);
        else if (strcmp(k, "tenant") == 0) snprintf(d->tenant, sizeof d->tenant, "%s", v);
        else if (strcmp(k, "url") == 0) snprintf(d->url, sizeof d->url, "%s", v);
        else if (strcmp(k, "ts") == 0) d->ts_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "attempts") == 0) d->attempts_before = strtol(v, NULL, 10);
        else if (strcmp(k, "body") == 0 && !d->body) {
            d->body = malloc(rep->element[i + 1]->len + 1);
            if (d->body) {
                memcpy(d->body, v, rep->element[i + 1]->len + 1);
                d->body_len = rep->element[i + 1]->len;
            }
        }
    }
    /* The tenant's own webhook secret signs its messages; the gateway's is the fallback. */
    memcpy(d->key, wh->key, wh->keylen);
    d->keylen = wh->keylen;
    if (!fleet_tenant_name_valid(d->tenant)) {
        after_secret(d);
        return;
    }
    fleet_tenant_cmd c; /* gw_redis_command copies the arguments */
    if (fleet_tenant_cmd_read_secret(&wh->g->keys, d->tenant, &c) < 0 ||
        gw_redis_command(wh->g->redis, c.argc, c.argv, c.len, on_secret, d) < 0)
        delivery_free(d);
}

/* ------------------------------------------------------------ reading tasks --------- */

static void start_delivery(wh_shard *s, const char *entry_id, const redisReply *fields) {
    gw_webhooks *wh = s->wh;
    const char *msg = NULL;
    for (size_t k = 0; fields && fields->type == REDIS_REPLY_ARRAY && k + 1 < fields->elements;
         k += 2)
        if (fields->element[k]->str && strcmp(fields->element[k]->str, "msg") == 0)
            msg = fields->element[k + 1]->str;
    delivery *d = calloc(1, sizeof *d);
    if (!d) return; /* stays pending: taken over later */
    d->wh = wh;
    d->k = s->k;
    d->keys = *shard_keys(s);
    wh->inflight++;
    d->next = wh->live;
    if (wh->live) wh->live->prev = d;
    wh->live = d;
    snprintf(d->entry_id, sizeof d->entry_id, "%s", entry_id);
    snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "");
    fleet_key dk = fleet_key_delivery(&d->keys, d->msg[0] ? d->msg : "-");
    const char *argv[2] = {"HGETALL", dk.s};
    size_t lens[2] = {7, strlen(dk.s)};
    if (gw_redis_command(wh->g->redis, 2, argv, lens, on_delivery, d) < 0) delivery_free(d);
}

/* Entries of XREADGROUP ([[stream, [[id, fields], ...]]]) or XAUTOCLAIM ([cursor, [[id,
 * fields], ...], deleted]). */
static void take_entries(wh_shard *s, const redisReply *list) {
    for (size_t i = 0; list && list->type == REDIS_REPLY_ARRAY && i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !e->element[0]->str) continue;
        start_delivery(s, e->element[0]->str, e->element[1]);
    }
}

static void read_tasks(gw_webhooks *wh);
static void read_shard(wh_shard *s);

/* A task read answered: its room is free again (the deliveries it started hold theirs),
 * for a read put off for lack of it. */
static void read_done(wh_shard *s) {
    gw_webhooks *wh = s->wh;
    s->reading = false;
    wh->reserved -= s->reserved;
    s->reserved = 0;
    if (wh->want_room && !wh->stopped) {
        wh->want_room = false;
        read_soon(wh, 0);
    }
}

static void on_read(redisReply *rep, void *arg) {
    wh_shard *s = arg;
    gw_webhooks *wh = s->wh;
    read_done(s);
    if (!rep || wh->stopped) return;
    if (rep->type == REDIS_REPLY_ERROR) {
        fleet_redis_err e = fleet_redis_err_of(rep);
        if (strncmp(rep->str, "NOGROUP", 7) == 0) {
            s->group_ok = false; /* the stream was deleted: create the group again */
            read_soon(wh, 0);
        } else if (e == FLEET_REDIS_OOM || e == FLEET_REDIS_TRANSIENT) {
            /* XREADGROUP writes the pending list: a full or loading Redis refuses it. Wake
             * ups would only ask again at once; pause the reads for a while instead. */
            if (fleet_now_ms() >= wh->sick_until_ms + GW_WEBHOOK_SICK_MS)
                fleet_log(FLEET_LOG_WARN, "webhook task read refused: pausing deliveries", "error",
                          rep->str, NULL);
            wh->sick_until_ms = fleet_now_ms() + GW_WEBHOOK_SICK_MS;
            read_soon(wh, GW_WEBHOOK_SICK_MS);
        } else {
            fleet_log(FLEET_LOG_ERROR, "webhook task read failed", "error", rep->str, NULL);
        }
        return;
    }
    size_t got = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2) {
        const redisReply *list = rep->element[0]->element[1];
        got = list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
        take_entries(s, list);
    }
    /* A full batch may have left more on the stream, and a wake-up that came while this
     * read was in flight may be for an entry it did not see: read once more. */
    if (got > 0 || s->read_again) {
        s->read_again = false;
        read_shard(s);
    }
}

static void on_group(redisReply *rep, void *arg) {
    wh_shard *s = arg;
    read_done(s);
    if (rep && (rep->type == REDIS_REPLY_STATUS ||
                (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) == 0))) {
        s->group_ok = true;
        read_shard(s); /* the tasks queued before the group existed */
    }
}

/* Reads new tasks of one shard (XREADGROUP without BLOCK: a blocking read on the shared
 * async link would hold up every other command behind it). Called on a wake-up, never on
 * a timer of its own but the safety tick. The reads of all shards together ask for no more
 * than the room left (FLEET_WEBHOOK_MAX_INFLIGHT), each for at most its share of it, so that
 * one shard's backlog leaves room for the others'. */
static void read_shard(wh_shard *s) {
    gw_webhooks *wh = s->wh;
    gw *g = wh->g;
    if (wh->stopped || g->draining || !g->shards.shard[s->k].used) return;
    if (!gw_redis_ready(g->redis)) {
        /* Looks at the link again in a second (no command is sent while it is down). */
        read_soon(wh, GW_WEBHOOK_SICK_MS);
        return;
    }
    if (s->reading) {
        s->read_again = true;
        return;
    }
    if (fleet_now_ms() < wh->sick_until_ms) {
        read_soon(wh, (long)(wh->sick_until_ms - fleet_now_ms()));
        return;
    }
    long room = g->cfg.webhook_max_inflight - (long)wh->inflight - wh->reserved;
    if (room <= 0) {
        wh->want_room = true;
        return;
    }
    long share = g->cfg.webhook_max_inflight / (long)(g->shards.n ? g->shards.n : 1);
    if (share < 1) share = 1;
    if (room > share) room = share;
    fleet_key tasks = fleet_key_webhooks(shard_keys(s));
    char count[24];
    snprintf(count, sizeof count, "%ld", room);
    s->reading = true;
    s->read_again = false;
    int rc;
    if (!s->group_ok) {
        /* From "0": tasks queued before any gateway ran are delivered too. */
        const char *argv[] = {"XGROUP", "CREATE", tasks.s, FLEET_WEBHOOK_GROUP, "0", "MKSTREAM"};
        size_t lens[6];
        for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
        rc = gw_redis_command(g->redis, 6, argv, lens, on_group, s);
    } else {
        const char *argv[] = {"XREADGROUP", "GROUP", FLEET_WEBHOOK_GROUP,
                              wh->consumer, "COUNT", count,
                              "STREAMS",    tasks.s, ">"};
        size_t lens[9];
        for (int i = 0; i < 9; i++) lens[i] = strlen(argv[i]);
        s->reserved = room;
        wh->reserved += room;
        rc = gw_redis_command(g->redis, 9, argv, lens, on_read, s);
    }
    if (rc < 0) read_done(s);
}

/* Reads new tasks of every shard of the table. */
static void read_tasks(gw_webhooks *wh) {
    const fleet_shards *sh = &wh->g->shards;
    for (size_t i = 0; i < sh->n && !wh->stopped; i++) {
        wh_shard *s = shard_of(wh, sh->all[i]);
        if (s) read_shard(s);
    }
}

static void on_read_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    read_tasks(arg);
}

/* A task read from the loop after delay_ms (an earlier one armed stays). */
static void read_soon(gw_webhooks *wh, long delay_ms) {
    if (wh->stopped || evtimer_pending(wh->read_ev, NULL)) return;
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(wh->read_ev, &tv);
}

/* A wake-up ("<id> webhook") does not say the shard's stream: every shard is read (one
 * XREADGROUP each, none with one shard more than before). */
static void on_wake(void *arg) { read_tasks(arg); }

/* Keeps this gateway's deliveries in flight owned by it and fresh (XCLAIM with min-idle 0
 * resets their idle time), so no other gateway takes over a delivery that is merely slow;
 * only a gateway that stops refreshing (it died) loses its tasks after
 * FLEET_WEBHOOK_CLAIM_MS. One XCLAIM per shard that has deliveries in flight. */
static void on_refreshed(redisReply *rep, void *arg) {
    (void)rep;
    (void)arg;
}

static void on_refresh_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_webhooks *wh = arg;
    if (wh->stopped || !wh->live || !gw_redis_ready(wh->g->redis)) return;
    enum { MAX_IDS = 256 };
    bool done[FLEET_SHARDS_MAX] = {false};
    for (delivery *first = wh->live; first; first = first->next) {
        if (done[first->k]) continue;
        done[first->k] = true;
        const char *argv[6 + MAX_IDS + 1];
        size_t lens[6 + MAX_IDS + 1];
        fleet_key tasks = fleet_key_webhooks(&first->keys);
        int n = 0;
        argv[n++] = "XCLAIM";
        argv[n++] = tasks.s;
        argv[n++] = FLEET_WEBHOOK_GROUP;
        argv[n++] = wh->consumer;
        argv[n++] = "0";
        for (delivery *d = first; d && n < 5 + MAX_IDS; d = d->next)
            if (d->k == first->k) argv[n++] = d->entry_id;
        argv[n++] = "JUSTID";
        for (int i = 0; i < n; i++) lens[i] = strlen(argv[i]);
        gw_redis_command(wh->g->redis, n, argv, lens, on_refreshed, wh);
    }
}

/* Deliveries another gateway started and never settled (it died) are taken over once
 * pending for FLEET_WEBHOOK_CLAIM_MS, on every shard. */
static void on_reclaimed(redisReply *rep, void *arg) {
    wh_shard *s = arg;
    gw_webhooks *wh = s->wh;
    if (!rep || wh->stopped || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) return;
    size_t before = wh->inflight;
    take_entries(s, rep->element[1]);
    if (wh->inflight > before) {
        char n[24], k[8];
        snprintf(n, sizeof n, "%zu", wh->inflight - before);
        snprintf(k, sizeof k, "%d", s->k);
        fleet_log(FLEET_LOG_WARN,
                  "took over webhook deliveries of a gateway that stopped "
                  "refreshing them (it died)",
                  "deliveries", n, "shard", k, NULL);
    }
}

static void on_reclaim_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_webhooks *wh = arg;
    gw *g = wh->g;
    if (wh->stopped || g->draining || !gw_redis_ready(g->redis)) return;
    const fleet_shards *sh = &g->shards;
    for (size_t i = 0; i < sh->n; i++) {
        wh_shard *s = shard_of(wh, sh->all[i]);
        long room = g->cfg.webhook_max_inflight - (long)wh->inflight - wh->reserved;
        if (!s || !s->group_ok) continue;
        if (room <= 0) return;
        fleet_key tasks = fleet_key_webhooks(shard_keys(s));
        char idle[24], count[24];
        snprintf(idle, sizeof idle, "%ld", g->cfg.webhook_claim_ms);
        snprintf(count, sizeof count, "%ld", room);
        const char *argv[] = {"XAUTOCLAIM", tasks.s, FLEET_WEBHOOK_GROUP, wh->consumer, idle,
                              "0-0",        "COUNT", count};
        size_t lens[8];
        for (int j = 0; j < 8; j++) lens[j] = strlen(argv[j]);
        gw_redis_command(g->redis, 8, argv, lens, on_reclaimed, s);
    }
}

/* ------------------------------------------------------------ due retries ----------- */

static void on_promote_timer(evutil_socket_t fd, short what, void *arg);

/* Arms shard s's promote timer for due_ms unless it is armed for an earlier time already. */
static void arm_promote(wh_shard *s, long long due_ms) {
    gw_webhooks *wh = s->wh;
    if (wh->stopped) return;
    if (!s->promote_ev && !(s->promote_ev = evtimer_new(wh->g->base, on_promote_timer, s)))
        return; /* out of memory: the safety tick reads the head again */
    if (due_ms < s->promote_floor_ms) due_ms = s->promote_floor_ms;
    if (s->promote_at_ms && s->promote_at_ms <= due_ms && evtimer_pending(s->promote_ev, NULL))
        return;
    long long delay = due_ms - (long long)fleet_now_ms();
    if (delay < 0) delay = 0;
    struct timeval tv = {(long)(delay / 1000), (long)(delay % 1000) * 1000};
    s->promote_at_ms = due_ms;
    evtimer_add(s->promote_ev, &tv);
}

/* The retry schedule's first entry: ZRANGE <set> 0 0 WITHSCORES -> [msg, due_ms]. */
static void on_head(redisReply *rep, void *arg) {
    wh_shard *s = arg;
    s->reading_head = false;
    if (!rep || s->wh->stopped || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        !rep->element[1]->str)
        return; /* nothing scheduled (or Redis away: the safety tick asks again) */
    arm_promote(s, strtoll(rep->element[1]->str, NULL, 10));
}

static void read_head(wh_shard *s) {
    gw_webhooks *wh = s->wh;
    if (wh->stopped || s->reading_head || !gw_redis_ready(wh->g->redis) ||
        !wh->g->shards.shard[s->k].used)
        return;
    fleet_key retry = fleet_key_webhook_retry(shard_keys(s));
    const char *argv[] = {"ZRANGE", retry.s, "0", "0", "WITHSCORES"};
    size_t lens[5];
    for (int i = 0; i < 5; i++) lens[i] = strlen(argv[i]);
    s->reading_head = true;
    if (gw_redis_command(wh->g->redis, 5, argv, lens, on_head, s) < 0) s->reading_head = false;
}

static void on_promoted(redisReply *rep, void *arg) {
    wh_shard *s = arg;
    s->promoting = false;
    if (!rep || s->wh->stopped || rep->type != REDIS_REPLY_INTEGER) return;
    if (rep->integer > 0) read_shard(s);
    if (rep->integer >= PROMOTE_MAX) {
        arm_promote(s, 0); /* more may be due at once */
    } else if (rep->integer == 0) {
        /* Nothing due: another gateway promoted it, or it is due here but not yet on
         * the Redis clock. The head is read again, and promoted no sooner than
         * PROMOTE_SKEW_MS from now, so a clock skew cannot make a tight loop. */
        s->promote_floor_ms = (long long)fleet_now_ms() + PROMOTE_SKEW_MS;
        read_head(s);
    } else {
        s->promote_floor_ms = 0;
        read_head(s); /* the next one due */
    }
}

static void on_promote_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    wh_shard *s = arg;
    gw_webhooks *wh = s->wh;
    s->promote_at_ms = 0;
    if (wh->stopped || s->promoting || !wh->g->shards.shard[s->k].used) return;
    if (!gw_redis_ready(wh->g->redis)) return; /* the safety tick reads the head again */
    fleet_state_webhook_promote(shard_keys(s), PROMOTE_MAX, &s->promote_cmd);
    s->promoting = true;
    if (gw_redis_script(wh->g->redis, &s->promote_cmd, on_promoted, s) < 0) s->promoting = false;
}

static void arm_safety(gw_webhooks *wh) {
    unsigned int rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) < 0) rnd = (unsigned int)fleet_now_ms();
    long ms = SAFETY_MS - SAFETY_JITTER_MS + (long)(rnd % (2 * SAFETY_JITTER_MS + 1));
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(wh->safety_ev, &tv);
}

static void on_safety_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_webhooks *wh = arg;
    if (wh->stopped) return;
    read_tasks(wh);
    /* Retries scheduled by another gateway (which may have died since) are seen here; an
     * earlier one than the timer's moves it sooner. Every shard's, as the table says now. */
    const fleet_shards *sh = &wh->g->shards;
    for (size_t i = 0; i < sh->n; i++) {
        wh_shard *s = shard_of(wh, sh->all[i]);
        if (s) read_head(s);
    }
    arm_safety(wh);
}

/* ------------------------------------------------------------ lifecycle ------------- */

gw_webhooks *gw_webhooks_new(gw *g, char *err, size_t errlen) {
    gw_webhooks *wh = calloc(1, sizeof *wh);
    if (!wh) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wh->g = g;
    if (g->cfg.webhook_secret[0] &&
        gw_whsec_parse(g->cfg.webhook_secret, wh->key, &wh->keylen, err, errlen) < 0)
        goto fail;
    if (gw_cidr_list_parse(g->cfg.webhook_allow, &wh->allow, err, errlen) < 0) goto fail;
    if (gw_webhook_schedule_parse(g->cfg.webhook_schedule, wh->schedule_ms, GW_WEBHOOK_SCHEDULE_MAX,
                                  &wh->attempts_max, err, errlen) < 0)
        goto fail;
    /* One consumer per gateway process: host-pid-random. */
    char host[40] = "gateway", id[FLEET_ID_LEN + 1];
    gethostname(host, sizeof host - 1);
    if (fleet_id_new(id) < 0) snprintf(id, sizeof id, "x");
    snprintf(wh->consumer, sizeof wh->consumer, "%.32s-%ld-%.6s", host, (long)getpid(), id + 20);
    wh->curl = gw_curl_new(g->base);
    wh->dns = evdns_base_new(g->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!wh->dns) wh->dns = evdns_base_new(g->base, 0); /* no resolv.conf: hosts file only */
    if (wh->dns) evdns_base_load_hosts(wh->dns, NULL);
    wh->safety_ev = evtimer_new(g->base, on_safety_tick, wh);
    wh->read_ev = evtimer_new(g->base, on_read_timer, wh);
    wh->reclaim_ev = event_new(g->base, -1, EV_PERSIST, on_reclaim_tick, wh);
    wh->refresh_ev = event_new(g->base, -1, EV_PERSIST, on_refresh_tick, wh);
    if (!wh->curl || !wh->dns || !wh->safety_ev || !wh->read_ev || !wh->reclaim_ev ||
        !wh->refresh_ev) {
        snprintf(err, errlen, "cannot set up webhook delivery (out of memory)");
        goto fail;
    }
    long every = g->cfg.webhook_claim_ms / 4;
    every = every < 1000 ? 1000 : every > 10000 ? 10000 : every;
    struct timeval now = {0, 0}, recl = {every / 1000, (every % 1000) * 1000};
    evtimer_add(wh->safety_ev, &now); /* the first tick at once: backlog and schedule */
    evtimer_add(wh->reclaim_ev, &recl);
    long fresh = g->cfg.webhook_claim_ms / 3;
    struct timeval refr = {fresh / 1000, (fresh % 1000) * 1000};
    evtimer_add(wh->refresh_ev, &refr);
    gw_events_watch(g->events, &wh->any, "*", on_wake, wh);
    return wh;
fail:
    gw_webhooks_stop(wh);
    gw_webhooks_free(wh);
    return NULL;
}

void gw_webhooks_stop(gw_webhooks *wh) {
    if (!wh || wh->stopped) return;
    wh->stopped = true;
    if (wh->g->events) gw_events_unwatch(wh->g->events, &wh->any);
    if (wh->safety_ev) event_del(wh->safety_ev);
    if (wh->read_ev) event_del(wh->read_ev);
    for (int k = 0; k < FLEET_SHARDS_MAX; k++)
        if (wh->shard[k].promote_ev) event_del(wh->shard[k].promote_ev);
    if (wh->reclaim_ev) event_del(wh->reclaim_ev);
    if (wh->refresh_ev) event_del(wh->refresh_ev);
    /* Aborted transfers and cancelled lookups call back now and free their deliveries. */
    gw_curl_free(wh->curl);
    wh->curl = NULL;
    if (wh->dns) evdns_base_free(wh->dns, 1);
    wh->dns = NULL;
}

void gw_webhooks_free(gw_webhooks *wh) {
    if (!wh) return;
    if (wh->safety_ev) event_free(wh->safety_ev);
    if (wh->read_ev) event_free(wh->read_ev);
    for (int k = 0; k < FLEET_SHARDS_MAX; k++)
        if (wh->shard[k].promote_ev) event_free(wh->shard[k].promote_ev);
    if (wh->reclaim_ev) event_free(wh->reclaim_ev);
    if (wh->refresh_ev) event_free(wh->refresh_ev);
    free(wh);
}

size_t gw_webhooks_inflight(const gw_webhooks *wh) { return wh ? wh->inflight : 0; }

bool gw_webhooks_enabled(const gw_webhooks *wh) { return wh && wh->keylen > 0; }

const struct gw_cidr_list *gw_webhooks_allowlist(const gw_webhooks *wh) { return &wh->allow; }
