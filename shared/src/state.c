/* state.c: builds the command of each job transition and reads its reply (state.h).
 * The transitions themselves are the Lua scripts in shared/scripts/. */
#include "fleet/state.h"
#include "fleet/utf8.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ script table ---------- */

/* The sources embed.cmake generates, one per script of scripts.def. */
#define FLEET_SCRIPT(name, NAME) extern const char fleet_script_src_##name[];
#include "../scripts/scripts.def"
#undef FLEET_SCRIPT

static fleet_script scripts[FLEET_SCRIPT_COUNT] = {
#define FLEET_SCRIPT(name, NAME) [FLEET_SCRIPT_##NAME] = {#name, fleet_script_src_##name, ""},
#include "../scripts/scripts.def"
#undef FLEET_SCRIPT
};

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_hash(void) {
    for (int i = 0; i < FLEET_SCRIPT_COUNT; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)scripts[i].source, strlen(scripts[i].source), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(scripts[i].sha + 2 * j, 3, "%02x", md[j]);
    }
}

const fleet_script *fleet_script_get(fleet_script_id id) {
    pthread_once(&scripts_once, scripts_hash);
    if ((unsigned)id >= FLEET_SCRIPT_COUNT) return NULL;
    return &scripts[id];
}

/* ------------------------------------------------------------ command building ------ */

static void cmd_start(fleet_cmd *c, fleet_script_id id, int numkeys) {
    const fleet_script *s = fleet_script_get(id);
    c->script = id;
    c->argc = 0;
    c->used = 0;
    c->argv[c->argc] = "EVALSHA";
    c->argvlen[c->argc++] = 7;
    c->argv[c->argc] = s->sha;
    c->argvlen[c->argc++] = 40;
    int n = snprintf(c->buf, sizeof c->buf, "%d", numkeys);
    c->argv[c->argc] = c->buf;
    c->argvlen[c->argc++] = (size_t)n;
    c->used = (size_t)n + 1;
}

/* Appends bytes the caller keeps alive. */
static void cmd_ref(fleet_cmd *c, const char *p, size_t n) {
    if (c->argc >= FLEET_CMD_ARGS) abort(); /* a programming error: the table is fixed */
    c->argv[c->argc] = p ? p : "";
    c->argvlen[c->argc++] = p ? n : 0;
}

static void cmd_str(fleet_cmd *c, const char *s) { cmd_ref(c, s, s ? strlen(s) : 0); }

/* Appends text copied into the cmd's own buffer. */
static void cmd_fmt(fleet_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cmd_fmt(fleet_cmd *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = c->buf + c->used;
    int n = vsnprintf(dst, sizeof c->buf - c->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof c->buf - c->used) abort(); /* keys are bounded */
    c->used += (size_t)n + 1;
    cmd_ref(c, dst, (size_t)n);
}

/* Appends bytes copied into the cmd's own buffer. */
static void cmd_copy(fleet_cmd *c, const char *p, size_t n) {
    if (n >= sizeof c->buf - c->used) abort(); /* keys are bounded */
    char *dst = c->buf + c->used;
    memcpy(dst, p, n);
    dst[n] = '\0';
    c->used += n + 1;
    cmd_ref(c, dst, n);
}

static void cmd_key(fleet_cmd *c, fleet_key k) { cmd_copy(c, k.s, strlen(k.s)); }

/* Appends v in decimal (what cmd_fmt's "%ld" writes, without parsing a format). */
static void cmd_long(fleet_cmd *c, long v) {
    char tmp[24];
    char *p = tmp + sizeof tmp;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    cmd_copy(c, p, (size_t)(tmp + sizeof tmp - p));
}

void fleet_cmd_as_eval(fleet_cmd *c) {
    const fleet_script *s = fleet_script_get(c->script);
    c->argv[0] = "EVAL";
    c->argvlen[0] = 4;
    c->argv[1] = s->source;
    c->argvlen[1] = strlen(s->source);
}

bool fleet_reply_is_noscript(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* ------------------------------------------------------------ reply helpers --------- */

static bool is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool str_eq(const redisReply *r, const char *s) {
    return is_str(r) && strcmp(r->str, s) == 0;
}

static long long reply_int(const redisReply *r) {
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (is_str(r)) return strtoll(r->str, NULL, 10);
    return 0;
}

/* ------------------------------------------------------------ transitions ----------- */

void fleet_state_submit(const fleet_keys *k, const fleet_submit *s, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_SUBMIT, 13);
    cmd_key(c, fleet_key_job(k, s->id));
    cmd_key(c, fleet_key_stream(k, s->model));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_index(k, s->tenant));
    cmd_key(c, fleet_key_entries(k, s->model));
    cmd_key(c, fleet_key_tenant_active(k, s->tenant));
    cmd_key(c, fleet_key_tenant_bucket(k, s->tenant));
    if (s->idem_hash) cmd_key(c, fleet_key_idempotency(k, s->tenant, s->idem_hash));
    else cmd_key(c, fleet_key_job(k, s->id)); /* unused: no key given */
    /* The job's rank: its wait list, and where it sorts (HIGH < NORMAL < LOW). */
    fleet_priority prio = fleet_priority_from_string(s->priority);
    int rank = prio == FLEET_PRIORITY_INVALID ? (int)FLEET_PRIORITY_NORMAL : (int)prio;
    cmd_key(c, fleet_key_waiting(k, s->model));
    cmd_key(c, fleet_key_wait(k, s->model, s->tenant, rank));
    cmd_key(c, fleet_key_kept(k, s->tenant));
    cmd_key(c, fleet_key_kept_bytes(k, s->tenant));
    cmd_str(c, s->id);
    cmd_str(c, s->model);
    cmd_ref(c, s->input, s->input_len);
    cmd_str(c, s->tenant);
    cmd_str(c, s->request_id);
    cmd_str(c, s->priority);
    cmd_str(c, s->metadata_json ? s->metadata_json : "");
    cmd_long(c, s->queue_ttl_s);
    cmd_long(c, s->result_ttl_s);
    cmd_long(c, s->timeout_s);
    cmd_long(c, s->max_attempts);
    cmd_long(c, s->index_cap);
    cmd_long(c, s->index_ttl_s);
    cmd_str(c, s->webhook ? s->webhook : "");
    cmd_str(c, s->webhook_events ? s->webhook_events : "");
    /* A limit that is off goes as exactly "0": the script compares the text. */
    cmd_long(c, s->max_active > 0 ? s->max_active : 0);
    if (s->rate > 0) cmd_fmt(c, "%.6f", s->rate);
    else cmd_str(c, "0");
    cmd_long(c, s->burst > 0 ? s->burst : 1);
    cmd_long(c, s->max_queue > 0 ? s->max_queue : 0);
    cmd_str(c, s->idem_hash && s->idem_digest ? s->idem_digest : "");
    cmd_long(c, s->ready_target > 0 ? s->ready_target : 1);
    cmd_str(c, FLEET_GROUP);
    cmd_long(c, rank);
    cmd_key(c, fleet_key_job_prefix(k)); /* to see whether a replayed job still exists */
    cmd_long(c, s->tombstone_s > 0 ? s->tombstone_s : 0);
    cmd_fmt(c, "%lld", s->max_finished > 0 ? s->max_finished : 0);
    cmd_fmt(c, "%lld", s->max_bytes > 0 ? s->max_bytes : 0);
    cmd_str(c, FLEET_KEY_RESULT_SUFFIX);
    cmd_key(c, fleet_key_gone_prefix(k));
}

fleet_submit_outcome fleet_state_submit_reply(const redisReply *r, fleet_submitted *out) {
    memset(out, 0, sizeof *out);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        const redisReply *tag = r->element[0];
        if (str_eq(tag, "queued") && r->elements == 3) {
            out->queue_position = reply_int(r->element[1]);
            out->created_ms = reply_int(r->element[2]);
            return FLEET_SUBMIT_QUEUED;
        }
        if (str_eq(tag, "replay") && is_str(r->element[1])) {
            out->replay_id = r->element[1]->str;
            return FLEET_SUBMIT_REPLAY;
        }
        if (str_eq(tag, "limit") && r->elements == 3 && is_str(r->element[1])) {
            out->limit = r->element[1]->str;
            out->retry_after_ms = reply_int(r->element[2]);
            return FLEET_SUBMIT_LIMIT;
        }
    }
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "IDEMPOTENCY", 11) == 0)
        return FLEET_SUBMIT_CONFLICT;
    out->err = r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to submit";
    return FLEET_SUBMIT_ERROR;
}

void fleet_state_feed(const fleet_keys *k, const char *model, long target, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_FEED, 4);
    cmd_key(c, fleet_key_stream(k, model));
    cmd_key(c, fleet_key_waiting(k, model));
    cmd_key(c, fleet_key_entries(k, model));
    cmd_key(c, fleet_key_queues(k)); /* a paused model is not fed */
    cmd_fmt(c, "%ld", target);
    cmd_str(c, FLEET_GROUP);
    cmd_str(c, model);
}

void fleet_state_auth(const fleet_keys *k, const char *key_hash, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_AUTH, 1);
    cmd_key(c, fleet_key_apikey(k, key_hash));
    cmd_key(c, fleet_key_tenant_prefix(k));
}

int fleet_state_auth_reply(const redisReply *r, const char **tenant, const char **role,
                           const redisReply **settings) {
    if (!r || r->type != REDIS_REPLY_ARRAY) return -1;
    if (r->elements == 0) return 0;
    if (r->elements != 3 || !is_str(r->element[0]) || !is_str(r->element[1]) ||
        r->element[2]->type != REDIS_REPLY_ARRAY)
        return -1;
    *tenant = r->element[0]->str;
    *role = r->element[1]->str;
    *settings = r->element[2];
    return 1;
}

size_t fleet_state_claim(const fleet_keys *k, const fleet_claim *cl, size_t n, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_CLAIM, 6);
    cmd_key(c, fleet_key_stream(k, cl->model));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_entries(k, cl->model));
    cmd_key(c, fleet_key_dlq(k));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, FLEET_GROUP);
    cmd_str(c, cl->worker);
    cmd_fmt(c, "%ld", cl->lease_ms);
    cmd_str(c, cl->model);
    cmd_key(c, fleet_key_events(k));
    cmd_fmt(c, "%ld", cl->dlq_cap > 0 ? cl->dlq_cap : 1);
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_key(c, fleet_key_gone_prefix(k));
    cmd_key(c, fleet_key_kept_prefix(k));
    size_t i = 0;
    for (; i < n && (i == 0 || c->argc + 3 <= FLEET_CMD_ARGS); i++) {
        cmd_str(c, cl[i].entry_id);
        cmd_str(c, cl[i].id);
        cmd_str(c, cl[i].token);
    }
    return i;
}

const redisReply *fleet_state_batch_item(const redisReply *r, size_t i) {
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return NULL;
    return r->element[i];
}

const redisReply *fleet_state_claim_read_item(const redisReply *r, const char **entry_id,
                                              const char **job_id) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_str(r->element[0]) ||
        !is_str(r->element[1]) || r->element[2]->type != REDIS_REPLY_ARRAY)
        return NULL;
    *entry_id = r->element[0]->str;
    *job_id = r->element[1]->str;
    return r->element[2];
}

fleet_claim_outcome fleet_state_claim_reply(const redisReply *r, fleet_claimed *out) {
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_CLAIM_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "ok") && r->elements == 7 && is_str(r->element[1])) {
        out->input = r->element[1]->str;
        out->input_len = r->element[1]->len;
        out->attempts = (long)reply_int(r->element[2]);
        out->timeout_s = (long)reply_int(r->element[3]);
        out->reclaimed = reply_int(r->element[4]) != 0;
        out->created_ms = reply_int(r->element[5]);
        out->started_ms = reply_int(r->element[6]);
        return FLEET_CLAIM_OK;
    }
    out->why = r->elements >= 2 && is_str(r->element[1]) ? r->element[1]->str : "";
    if (str_eq(tag, "gone")) return FLEET_CLAIM_GONE;
    if (str_eq(tag, "cancelled")) return FLEET_CLAIM_CANCELLED;
    if (str_eq(tag, "dead")) return FLEET_CLAIM_DEAD;
    if (str_eq(tag, "skip")) return FLEET_CLAIM_SKIP;
    return FLEET_CLAIM_ERROR;
}

bool fleet_event_next(const char **p, const char *end, fleet_event *ev) {
    const char *line = *p;
    if (!line || line >= end) return false;
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *eol = nl ? nl : end;
    const char *sp = memchr(line, ' ', (size_t)(eol - line));
    ev->id = line;
    ev->id_len = (size_t)((sp ? sp : eol) - line);
    ev->what = sp ? sp + 1 : "";
    ev->what_len = sp ? (size_t)(eol - sp - 1) : 0;
    *p = nl ? nl + 1 : end;
    return true;
}

void fleet_state_renew(const fleet_keys *k, const fleet_renew *rn, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_RENEW, 2);
    cmd_key(c, fleet_key_job(k, rn->id));
    cmd_key(c, fleet_key_stream(k, rn->model));
    cmd_str(c, rn->token);
    cmd_fmt(c, "%ld", rn->lease_ms);
    cmd_str(c, FLEET_GROUP);
    cmd_str(c, rn->worker);
}

void fleet_state_progress(const fleet_keys *k, const fleet_progress *p, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_PROGRESS, 2);
    cmd_key(c, fleet_key_job(k, p->id));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, p->token);
    double pct = p->percent < 0 ? 0 : p->percent > 100 ? 100 : p->percent;
    cmd_fmt(c, "%.4g", pct);
    /* The message goes into the buffer, bounded: a model's text must not overflow it. */
    const char *msg = p->message ? p->message : "";
    cmd_fmt(c, "%.*s", (int)fleet_utf8_cut(msg, 200), msg);
    cmd_fmt(c, "%ld", p->done);
    cmd_fmt(c, "%ld", p->total);
    cmd_key(c, fleet_key_events(k));
    cmd_str(c, p->id);
    cmd_key(c, fleet_key_delivery_prefix(k));
}

fleet_progress_outcome fleet_state_progress_reply(const redisReply *r) {
    if (str_eq(r, "ok")) return FLEET_PROGRESS_OK;
    if (str_eq(r, "cancel")) return FLEET_PROGRESS_CANCEL;
    if (str_eq(r, "stale")) return FLEET_PROGRESS_STALE;
    return FLEET_PROGRESS_ERROR;
}

void fleet_state_emit(const fleet_keys *k, const fleet_emit *e, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_EMIT, 3);
    cmd_key(c, fleet_key_job(k, e->id));
    cmd_key(c, fleet_key_outputs(k, e->id));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, e->token);
    cmd_ref(c, e->output, e->output ? e->output_len : 0);
    cmd_long(c, e->max_outputs > 0 ? e->max_outputs : 0);
    cmd_fmt(c, "%lld", e->max_bytes > 0 ? e->max_bytes : 0);
    cmd_key(c, fleet_key_events(k));
    cmd_str(c, e->id);
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_long(c, e->webhook_throttle_ms > 0 ? e->webhook_throttle_ms : 0);
}

fleet_emit_outcome fleet_state_emit_reply(const redisReply *r, fleet_emitted *out) {
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_EMIT_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "stale") && r->elements == 1) return FLEET_EMIT_STALE;
    if ((str_eq(tag, "ok") || str_eq(tag, "cancel")) && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
        out->index = r->element[1]->integer;
        return str_eq(tag, "ok") ? FLEET_EMIT_OK : FLEET_EMIT_CANCEL;
    }
    if (str_eq(tag, "limit") && r->elements == 3 && is_str(r->element[1])) {
        out->limit = r->element[1]->str;
        out->limit_value = reply_int(r->element[2]);
        return FLEET_EMIT_LIMIT;
    }
    return FLEET_EMIT_ERROR;
}

void fleet_state_outputs(const fleet_keys *k, const char *id, const char *tenant, long long after,
                         long limit, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_OUTPUTS, 3);
    cmd_key(c, fleet_key_job(k, id));
    cmd_key(c, fleet_key_outputs(k, id));
    cmd_key(c, fleet_key_gone(k, id));
    cmd_str(c, tenant);
    cmd_str(c, id);
    cmd_fmt(c, "%lld", after > 0 ? after : 0);
    cmd_long(c, limit > 0 ? limit : 1);
}

int fleet_state_outputs_reply(const redisReply *r, fleet_outputs_page *out) {
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY) return -1;
    if (r->elements == 0 || fleet_state_get_gone(r, NULL)) return 0;
    if (r->elements != 4 || !str_eq(r->element[0], "ok") || !is_str(r->element[1]) ||
        r->element[2]->type != REDIS_REPLY_INTEGER || r->element[3]->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->element[3]->elements; i++)
        if (!is_str(r->element[3]->element[i])) return -1;
    out->status = r->element[1]->str;
    out->count = r->element[2]->integer;
    out->page = r->element[3];
    return 1;
}

int fleet_output_entry(const redisReply *e, long *attempt, const char **output, size_t *len) {
    if (!is_str(e)) return -1;
    const char *sp = memchr(e->str, ' ', e->len);
    if (!sp || sp == e->str) return -1;
    long a = 0;
    for (const char *p = e->str; p < sp; p++) {
        if (*p < '0' || *p > '9' || a > 1000000) return -1;
        a = a * 10 + (*p - '0');
    }
    *attempt = a;
    *output = sp + 1;
    *len = e->len - (size_t)(sp + 1 - e->str);
    return 0;
}

size_t fleet_state_finish(const fleet_keys *k, const fleet_finish *f, size_t n, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_FINISH, 4);
    cmd_key(c, fleet_key_stream(k, f->model));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_entries(k, f->model));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, FLEET_GROUP);
    cmd_str(c, f->model);
    cmd_key(c, fleet_key_events(k));
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_str(c, FLEET_KEY_RESULT_SUFFIX);
    cmd_key(c, fleet_key_gone_prefix(k));
    cmd_key(c, fleet_key_kept_prefix(k));
    size_t i = 0;
    for (; i < n && (i == 0 || c->argc + 5 <= FLEET_CMD_ARGS); i++) {
        cmd_str(c, f[i].id);
        cmd_str(c, f[i].token);
        cmd_str(c, fleet_status_to_string(f[i].status));
        cmd_ref(c, f[i].result, f[i].result ? f[i].result_len : 0);
        const char *ferr = f[i].error ? f[i].error : ""; /* a model's text, maybe cut short */
        cmd_ref(c, ferr, fleet_utf8_cut(ferr, strlen(ferr)));
    }
    return i;
}

fleet_finish_outcome fleet_state_finish_reply(const redisReply *r) {
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) r = r->element[0];
    if (str_eq(r, "ok")) return FLEET_FINISH_OK;
    if (str_eq(r, "stale")) return FLEET_FINISH_STALE;
    return FLEET_FINISH_ERROR;
}

void fleet_state_requeue(const fleet_keys *k, const fleet_requeue *rq, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_REQUEUE, 7);
    cmd_key(c, fleet_key_job(k, rq->id));
    cmd_key(c, fleet_key_stream(k, rq->model));
    cmd_key(c, fleet_key_delayed(k, rq->model));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_entries(k, rq->model));
    cmd_key(c, fleet_key_dlq(k));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, rq->token);
    cmd_fmt(c, "%ld", rq->delay_ms < 0 ? 0 : rq->delay_ms);
    cmd_str(c, rq->kind == FLEET_REQUEUE_RETRY ? "retry" : "handback");
    const char *rerr = rq->error ? rq->error : "";
    cmd_fmt(c, "%.*s", (int)fleet_utf8_cut(rerr, 300), rerr);
    cmd_str(c, FLEET_GROUP);
    cmd_str(c, rq->model);
    cmd_key(c, fleet_key_events(k));
    cmd_str(c, rq->id);
    cmd_fmt(c, "%ld", rq->dlq_cap > 0 ? rq->dlq_cap : 1);
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    cmd_key(c, fleet_key_gone_prefix(k));
    cmd_key(c, fleet_key_kept_prefix(k));
}

fleet_requeue_outcome fleet_state_requeue_reply(const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_REQUEUE_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "queued")) return FLEET_REQUEUE_QUEUED;
    if (str_eq(tag, "dead")) return FLEET_REQUEUE_DEAD;
    if (str_eq(tag, "cancelled")) return FLEET_REQUEUE_CANCELLED;
    if (str_eq(tag, "stale")) return FLEET_REQUEUE_STALE;
    return FLEET_REQUEUE_ERROR;
}

void fleet_state_promote(const fleet_keys *k, const char *model, long max, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_PROMOTE, 5);
    cmd_key(c, fleet_key_delayed(k, model));
    cmd_key(c, fleet_key_stream(k, model));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_entries(k, model));
    cmd_key(c, fleet_key_stats(k));
    cmd_str(c, model);
    cmd_fmt(c, "%ld", max);
    cmd_key(c, fleet_key_job_prefix(k));
}

long fleet_state_promote_reply(const redisReply *r) {
    return r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
}

void fleet_state_recover(const fleet_keys *k, const char *model, const char *entry_id,
                         fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_RECOVER, 4);
    cmd_key(c, fleet_key_entries(k, model));
    cmd_key(c, fleet_key_stream(k, model));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_str(c, entry_id);
    cmd_str(c, model);
    cmd_key(c, fleet_key_job_prefix(k));
}

int fleet_state_recover_reply(const redisReply *r, const char **job_id) {
    *job_id = "";
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return -1;
    if (r->elements >= 2 && is_str(r->element[1])) *job_id = r->element[1]->str;
    if (str_eq(r->element[0], "requeued")) return 1;
    if (str_eq(r->element[0], "ended") || str_eq(r->element[0], "unknown")) return 0;
    return -1;
}

void fleet_state_retry(const fleet_keys *k, const fleet_retry *rt, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_RETRY, 7);
    cmd_key(c, fleet_key_job(k, rt->id));
    cmd_key(c, fleet_key_result(k, rt->id));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_dlq(k));
    cmd_key(c, fleet_key_index(k, rt->tenant));
    cmd_key(c, fleet_key_gone(k, rt->id));
    cmd_str(c, rt->tenant);
    cmd_str(c, rt->id);
    cmd_key(c, fleet_key_events(k));
    cmd_str(c, FLEET_GROUP);
    cmd_long(c, rt->ready_target > 0 ? rt->ready_target : 1);
    /* The model is the job's, read by the script: these are prefixes ("" model). */
    cmd_key(c, fleet_key_stream(k, ""));
    cmd_key(c, fleet_key_entries(k, ""));
    cmd_key(c, fleet_key_waiting(k, ""));
    cmd_key(c, fleet_key_wait_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    cmd_long(c, rt->max_active > 0 ? rt->max_active : 0);
    cmd_long(c, rt->max_queue > 0 ? rt->max_queue : 0);
    cmd_str(c, rt->dead_only ? "1" : "0");
    cmd_long(c, rt->index_ttl_s > 0 ? rt->index_ttl_s : 1);
}

fleet_retry_outcome fleet_state_retry_reply(const redisReply *r, fleet_retried *out) {
    memset(out, 0, sizeof *out);
    out->status = FLEET_STATUS_UNKNOWN;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_RETRY_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "queued") && r->elements == 2) {
        out->queue_position = reply_int(r->element[1]);
        return FLEET_RETRY_QUEUED;
    }
    if (str_eq(tag, "missing") && r->elements == 1) return FLEET_RETRY_MISSING;
    if ((str_eq(tag, "refused") || str_eq(tag, "not_dead")) && r->elements == 2 &&
        is_str(r->element[1])) {
        out->status = fleet_status_from_string(r->element[1]->str);
        return str_eq(tag, "refused") ? FLEET_RETRY_REFUSED : FLEET_RETRY_NOT_DEAD;
    }
    if (str_eq(tag, "limit") && r->elements == 3 && is_str(r->element[1])) {
        out->limit = r->element[1]->str;
        out->retry_after_ms = reply_int(r->element[2]);
        return FLEET_RETRY_LIMIT;
    }
    return FLEET_RETRY_ERROR;
}

void fleet_state_delete(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_DELETE, 4);
    cmd_key(c, fleet_key_job(k, id));
    cmd_key(c, fleet_key_result(k, id));
    cmd_key(c, fleet_key_dlq(k));
    cmd_key(c, fleet_key_gone(k, id));
    cmd_str(c, tenant);
    cmd_str(c, id);
    cmd_key(c, fleet_key_events(k));
}

fleet_delete_outcome fleet_state_delete_reply(const redisReply *r, fleet_status *status) {
    *status = FLEET_STATUS_UNKNOWN;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_DELETE_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "missing") && r->elements == 1) return FLEET_DELETE_MISSING;
    if ((str_eq(tag, "deleted") || str_eq(tag, "refused")) && r->elements == 2 &&
        is_str(r->element[1])) {
        *status = fleet_status_from_string(r->element[1]->str);
        return str_eq(tag, "deleted") ? FLEET_DELETE_DONE : FLEET_DELETE_REFUSED;
    }
    return FLEET_DELETE_ERROR;
}

void fleet_state_purge(const fleet_keys *k, const char *model, const char *cursor, long budget,
                       fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_PURGE, 6);
    cmd_key(c, fleet_key_stream(k, model));
    cmd_key(c, fleet_key_entries(k, model));
    cmd_key(c, fleet_key_waiting(k, model));
    cmd_key(c, fleet_key_delayed(k, model));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, model);
    cmd_str(c, FLEET_GROUP);
    cmd_key(c, fleet_key_events(k));
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_str(c, cursor ? cursor : "");
    cmd_long(c, budget > 0 ? budget : 1);
    cmd_key(c, fleet_key_gone_prefix(k));
    cmd_key(c, fleet_key_kept_prefix(k));
}

int fleet_state_purge_reply(const redisReply *r, long long *cancelled, const char **cursor,
                            bool *more) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || !is_str(r->element[1]) ||
        r->element[2]->type != REDIS_REPLY_INTEGER)
        return -1;
    *cancelled = r->element[0]->integer;
    *cursor = r->element[1]->str;
    *more = r->element[2]->integer != 0;
    return 0;
}

void fleet_state_pause(const fleet_keys *k, const char *model, bool pause, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_PAUSE, 3);
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_stream(k, model));
    cmd_key(c, fleet_key_entries(k, model));
    cmd_str(c, model);
    cmd_str(c, pause ? "pause" : "resume");
    cmd_str(c, FLEET_GROUP);
    cmd_key(c, fleet_key_events(k));
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_long(c, 10000); /* entries left pending while paused that a resume requeues */
}

int fleet_state_pause_reply(const redisReply *r, long long *paused_ms, long long *requeued) {
    *paused_ms = *requeued = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return -1;
    if (!str_eq(r->element[0], "ok") || r->elements != 3) return -1;
    *paused_ms = reply_int(r->element[1]);
    *requeued = reply_int(r->element[2]);
    return 1;
}

void fleet_state_cancel(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_CANCEL, 3);
    cmd_key(c, fleet_key_job(k, id));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_str(c, tenant);
    cmd_key(c, fleet_key_events(k));
    cmd_str(c, id);
    cmd_key(c, fleet_key_control_prefix(k));
    cmd_key(c, fleet_key_delivery_prefix(k));
    cmd_key(c, fleet_key_active_prefix(k));
    /* A queued job's stream entry or delayed-set id goes with the cancel; the model is
     * the job's, read by the script, so these are prefixes ("" model). */
    cmd_key(c, fleet_key_stream(k, ""));
    cmd_key(c, fleet_key_entries(k, ""));
    cmd_key(c, fleet_key_delayed(k, ""));
    cmd_str(c, FLEET_GROUP);
    cmd_key(c, fleet_key_wait_prefix(k));
    cmd_key(c, fleet_key_gone_prefix(k));
    cmd_key(c, fleet_key_kept_prefix(k));
}

void fleet_state_webhook_settle(const fleet_keys *k, const fleet_webhook_settle *ws, fleet_cmd *c) {
    static const char *const outcomes[] = {"delivered", "retry", "failed"};
    if ((unsigned)ws->outcome >= sizeof outcomes / sizeof outcomes[0])
        abort(); /* a programming error, like an overfull command table */
    cmd_start(c, FLEET_SCRIPT_WEBHOOK_SETTLE, 5);
    cmd_key(c, fleet_key_delivery(k, ws->msg));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_key(c, fleet_key_webhook_retry(k));
    cmd_key(c, fleet_key_webhook_dlq(k));
    cmd_key(c, fleet_key_job(k, ws->job_id));
    cmd_str(c, ws->entry_id);
    cmd_str(c, FLEET_WEBHOOK_GROUP);
    cmd_str(c, outcomes[ws->outcome]);
    cmd_fmt(c, "%lld", ws->due_ms);
    cmd_fmt(c, "%ld", ws->http_status);
    const char *werr = ws->error ? ws->error : "";
    cmd_fmt(c, "%.*s", (int)fleet_utf8_cut(werr, 300), werr);
    cmd_ref(c, ws->body, ws->body ? ws->body_len : 0);
    cmd_fmt(c, "%ld", ws->dlq_cap > 0 ? ws->dlq_cap : 1);
    cmd_str(c, ws->consumer);
}

void fleet_state_webhook_promote(const fleet_keys *k, long max, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_WEBHOOK_PROMOTE, 2);
    cmd_key(c, fleet_key_webhook_retry(k));
    cmd_key(c, fleet_key_webhooks(k));
    cmd_fmt(c, "%ld", max);
}

fleet_cancel_outcome fleet_state_cancel_reply(const redisReply *r, fleet_status *final_status) {
    *final_status = FLEET_STATUS_UNKNOWN;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return FLEET_CANCEL_ERROR;
    const redisReply *tag = r->element[0];
    if (str_eq(tag, "cancelled")) return FLEET_CANCEL_DONE;
    if (str_eq(tag, "requested")) return FLEET_CANCEL_REQUESTED;
    if (str_eq(tag, "missing")) return FLEET_CANCEL_MISSING;
    if (str_eq(tag, "final") && r->elements == 2 && is_str(r->element[1])) {
        *final_status = fleet_status_from_string(r->element[1]->str);
        return FLEET_CANCEL_FINAL;
    }
    return FLEET_CANCEL_ERROR;
}

/* ------------------------------------------------------------ reads ----------------- */

void fleet_job_view_init(fleet_job_view *v) {
    memset(v, 0, sizeof *v);
    v->created_ms = v->started_ms = v->finished_ms = v->updated_ms = v->retry_at_ms = -1;
    v->attempts = v->max_attempts = v->timeout_s = v->ttl_s = -1;
    v->progress_done = v->progress_total = v->outputs = -1;
    v->webhook_attempts = v->webhook_last_status = -1;
    v->progress_percent = -1;
}

int fleet_job_view_from_fields(const redisReply *f, fleet_job_view *v) {
    fleet_job_view_init(v);
    if (!f || f->type != REDIS_REPLY_ARRAY || f->elements % 2) return -1;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *kr = f->element[i], *vr = f->element[i + 1];
        if (!is_str(kr) || !is_str(vr)) return -1;
        const char *key = kr->str, *val = vr->str;
        static const struct {
            const char *name;
            size_t off;
        } strs[] = {
            {"id", offsetof(fleet_job_view, id)},
            {"status", offsetof(fleet_job_view, status)},
            {"model", offsetof(fleet_job_view, model)},
            {"tenant", offsetof(fleet_job_view, tenant)},
            {"priority", offsetof(fleet_job_view, priority)},
            {"request_id", offsetof(fleet_job_view, request_id)},
            {"worker", offsetof(fleet_job_view, worker)},
            {"error", offsetof(fleet_job_view, error)},
            {"last_error", offsetof(fleet_job_view, last_error)},
            {"webhook", offsetof(fleet_job_view, webhook)},
            {"webhook_events", offsetof(fleet_job_view, webhook_events)},
            {"webhook_state", offsetof(fleet_job_view, webhook_state)},
            {"webhook_last_error", offsetof(fleet_job_view, webhook_last_error)},
            {"metadata", offsetof(fleet_job_view, metadata)},
            {"progress_message", offsetof(fleet_job_view, progress_message)},
        };
        static const struct {
            const char *name;
            size_t off;
        } nums[] = {
            {"created_ms", offsetof(fleet_job_view, created_ms)},
            {"started_ms", offsetof(fleet_job_view, started_ms)},
            {"finished_ms", offsetof(fleet_job_view, finished_ms)},
            {"updated_ms", offsetof(fleet_job_view, updated_ms)},
            {"retry_at_ms", offsetof(fleet_job_view, retry_at_ms)},
            {"webhook_attempts", offsetof(fleet_job_view, webhook_attempts)},
            {"webhook_last_status", offsetof(fleet_job_view, webhook_last_status)},
            {"attempts", offsetof(fleet_job_view, attempts)},
            {"max_attempts", offsetof(fleet_job_view, max_attempts)},
            {"timeout_s", offsetof(fleet_job_view, timeout_s)},
            {"ttl_s", offsetof(fleet_job_view, ttl_s)},
            {"progress_done", offsetof(fleet_job_view, progress_done)},
            {"progress_total", offsetof(fleet_job_view, progress_total)},
            {"out_n", offsetof(fleet_job_view, outputs)},
        };
        bool found = false;
        for (size_t j = 0; !found && j < sizeof strs / sizeof *strs; j++)
            if (strcmp(key, strs[j].name) == 0) {
                *(const char **)((char *)v + strs[j].off) = val;
                found = true;
            }
        for (size_t j = 0; !found && j < sizeof nums / sizeof *nums; j++)
            if (strcmp(key, nums[j].name) == 0) {
                *(long long *)((char *)v + nums[j].off) = strtoll(val, NULL, 10);
                found = true;
            }
        if (!found && strcmp(key, "progress_percent") == 0) v->progress_percent = strtod(val, NULL);
        if (!found && strcmp(key, "cancel_requested") == 0) v->cancel_requested = val[0] == '1';
        if (!found && strcmp(key, "dead_lettered") == 0) v->dead_lettered = val[0] == '1';
    }
    if (!v->id || !v->status) return -1;
    /* A job hash holds only the fields that say something (docs/redis.md, "The job hash"):
     * a missing one reads as the protocol's default, so the view is that of a hash that
     * holds them all. */
    if (!v->priority) v->priority = FLEET_JOB_DEFAULT_PRIORITY;
    if (v->attempts < 0) v->attempts = 0;
    if (v->max_attempts < 0) v->max_attempts = FLEET_JOB_DEFAULT_MAX_ATTEMPTS;
    if (v->timeout_s < 0) v->timeout_s = FLEET_JOB_DEFAULT_TIMEOUT_S;
    if (v->ttl_s < 0) v->ttl_s = FLEET_JOB_DEFAULT_TTL_S;
    if (v->updated_ms < 0) v->updated_ms = v->created_ms;
    if (v->outputs < 0) v->outputs = 0;
    if (!v->request_id) {
        snprintf(v->made_request_id, sizeof v->made_request_id, "%s%.*s", FLEET_REQUEST_ID_PREFIX,
                 FLEET_ID_LEN, v->id);
        v->request_id = v->made_request_id;
    }
    return 0;
}

void fleet_state_get(const fleet_keys *k, const char *id, const char *tenant, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_GET, 3);
    cmd_key(c, fleet_key_job(k, id));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_gone(k, id));
    cmd_str(c, tenant);
    cmd_str(c, id);
}

int fleet_state_get_reply(const redisReply *r, fleet_job_view *v) {
    if (!r || r->type != REDIS_REPLY_ARRAY) return -1;
    if (r->elements == 0 || fleet_state_get_gone(r, NULL)) return 0;
    if (r->elements != 2 || fleet_job_view_from_fields(r->element[0], v) < 0) return -1;
    v->queue_position = reply_int(r->element[1]);
    return 1;
}

bool fleet_state_get_gone(const redisReply *r, fleet_job_gone *g) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !str_eq(r->element[0], "gone") ||
        !is_str(r->element[1]) || !is_str(r->element[2]))
        return false;
    if (g) {
        g->expired_at_ms = reply_int(r->element[1]);
        g->status = r->element[2]->str;
    }
    return true;
}

void fleet_state_list(const fleet_keys *k, const fleet_list_query *q, fleet_cmd *c) {
    const char *own = q->own ? q->own : q->tenant;
    bool any = strcmp(q->tenant, FLEET_TENANT_ANY) == 0;
    cmd_start(c, FLEET_SCRIPT_LIST, 3);
    cmd_key(c, fleet_key_index(k, any ? own : q->tenant));
    cmd_key(c, fleet_key_queues(k));
    /* With the tenants named in ARGV the set is not read: a key of the shard's own slot
     * stands in its place (list.lua). */
    cmd_key(c, q->tenants ? fleet_key_queues(k) : fleet_key_tenants(k));
    cmd_str(c, q->cursor);
    cmd_fmt(c, "%ld", q->limit);
    cmd_str(c, q->status);
    cmd_str(c, q->model);
    cmd_fmt(c, "%ld", q->scan_max);
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_str(c, q->tenant);
    /* Every tenant's list builds each index key as prefix, name, suffix: the two parts
     * around the name of fleet_key_index, which spells it. */
    fleet_key prefix = fleet_key_index_prefix(k), empty = fleet_key_index(k, "");
    cmd_key(c, prefix);
    cmd_copy(c, empty.s + strlen(prefix.s), strlen(empty.s) - strlen(prefix.s));
    cmd_str(c, own);
    if (q->since_ms > 0) cmd_fmt(c, "%lld", q->since_ms);
    else cmd_str(c, "");
    if (q->until_ms > 0) cmd_fmt(c, "%lld", q->until_ms);
    else cmd_str(c, "");
    cmd_str(c, q->entries ? "1" : "");
    cmd_str(c, q->tenants ? q->tenants : "");
}

int fleet_state_list_reply(const redisReply *r, const redisReply **jobs, const char **next_cursor) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || !is_str(r->element[1]))
        return -1;
    *jobs = r->element[0];
    *next_cursor = r->element[1]->str;
    return 0;
}

void fleet_state_models(const fleet_keys *k, bool with_stats, fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_MODELS, 4);
    cmd_key(c, fleet_key_workers(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, fleet_key_models(k));
    cmd_key(c, fleet_key_queues(k));
    cmd_key(c, fleet_key_worker_prefix(k));
    cmd_str(c, with_stats ? "1" : "0");
}

int fleet_state_models_reply(const redisReply *r, const redisReply **workers,
                             const redisReply **stats, const redisReply **models) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return -1;
    for (size_t i = 0; i < 3; i++)
        if (r->element[i]->type != REDIS_REPLY_ARRAY || r->element[i]->elements % (i ? 2 : 1))
            return -1;
    /* Every worker is [name, model, backend, max_batch, busy], all strings: readers index
     * them without looking again. */
    for (size_t i = 0; i < r->element[0]->elements; i++) {
        const redisReply *w = r->element[0]->element[i];
        if (w->type != REDIS_REPLY_ARRAY || w->elements != 5) return -1;
        for (size_t j = 0; j < 5; j++)
            if (!is_str(w->element[j])) return -1;
    }
    for (size_t i = 1; i < 3; i++)
        for (size_t j = 0; j < r->element[i]->elements; j++)
            if (!is_str(r->element[i]->element[j])) return -1;
    *workers = r->element[0];
    *stats = r->element[1];
    *models = r->element[2];
    return 0;
}

void fleet_state_metrics(const fleet_keys *k, long scan, long tenants_max, fleet_cmd *c) {
    fleet_state_metrics_of(k, false, scan, tenants_max, c);
}

void fleet_state_metrics_of(const fleet_keys *k, bool shard_only, long scan, long tenants_max,
                            fleet_cmd *c) {
    cmd_start(c, FLEET_SCRIPT_METRICS, 3);
    /* A shard other than the control one reads no control key: its stats hash stands in
     * the place of the workers and models keys, so the call stays in its slot. */
    cmd_key(c, shard_only ? fleet_key_stats(k) : fleet_key_workers(k));
    cmd_key(c, fleet_key_stats(k));
    cmd_key(c, shard_only ? fleet_key_stats(k) : fleet_key_models(k));
    /* Per-model keys are built by the script from these prefixes and the model names it
     * reads from the models and stats hashes, all within the fleet's hash tag. */
    cmd_key(c, fleet_key_worker_prefix(k));
    cmd_key(c, fleet_key_stream(k, ""));
    cmd_key(c, fleet_key_waiting(k, ""));
    cmd_key(c, fleet_key_delayed(k, ""));
    cmd_key(c, fleet_key_job_prefix(k));
    cmd_key(c, fleet_key_metrics_prefix(k));
    cmd_str(c, FLEET_GROUP);
    cmd_long(c, scan > 0 ? scan : 1);
    cmd_long(c, tenants_max > 0 ? tenants_max : 1);
    cmd_str(c, shard_only ? "1" : "");
}

int fleet_state_metrics_reply(const redisReply *r, fleet_metrics_reply *out) {
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || !is_str(r->element[0]) ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[2]->type != REDIS_REPLY_ARRAY ||
        r->element[3]->type != REDIS_REPLY_ARRAY)
        return -1;
    out->now_ms = reply_int(r->element[0]);
    out->workers = r->element[1];
    out->stats = r->element[2];
    out->models = r->element[3];
    return 0;
}
