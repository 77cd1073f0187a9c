/* cmd_dlq.c: `fleetctl dlq list|show|retry`: the dead-letter stream, read and acted on
 * directly in Redis (--redis-url, --prefix), like `inspect`.
 *
 * A job that failed for good (out of attempts: its worker was lost too often, or the model
 * kept failing with a retryable error) is marked dead_lettered=1 in its hash and recorded
 * on the capped stream "{prefix}:dlq" (shared/scripts/lib.lua dead_letter) with the fields
 * job, model, tenant, attempts, error, failed_ms; the hash's dlq_entry names that entry.
 *
 * Each shard of the fleet (fleet/shards.h) has its own dead-letter stream, with the jobs
 * of that shard: a job id names its shard, so show and retry of a job go to that shard's
 * keys; list and retry --all cover every shard of the table.
 *
 *   list   XREVRANGE of every shard's stream, merged newest first by entry id (the time
 *          the job failed), the --limit newest of them all.
 *   show   the entry (found through the job hash's dlq_entry, by scanning the stream when
 *          the hash has expired, or by its own id) and the job hash as it is now.
 *   retry  the retry script (state.h, shared/scripts/retry.lua, the one POST
 *          /v1/jobs/{id}/retry runs) with dead_only: failed and dead-lettered -> queued
 *          with its attempts reset, queued as a submit is; it deletes the dead-letter entry. --all walks the stream up to
 *          the entry that was newest when it started, so jobs that fail again at once are
 *          not retried twice in one run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fleet/job.h"
#include "fleet/shards.h"
#include "fleet/job_json.h"
#include "redis_conn.h"
#include "render.h"

#define DLQ_PAGE 100        /* entries per XRANGE when walking the whole stream */
#define DLQ_ERROR_COLS 60   /* the ERROR column of the list table */
#define DLQ_MAX_IDS 10000   /* job ids on one `dlq retry` command line */
#define DLQ_ENTRY_ID_MAX 48 /* "<ms>-<seq>": two 64-bit numbers and a dash */

static long opt_limit = 20;
static bool opt_all;

static const fleet_option dlq_opts[] = {
    {"limit", "FLEETCTL_DLQ_LIMIT", FLEET_OPT_INT, "20",
     "dlq list: entries shown, newest first (1..1000)", &opt_limit, 1, 1000},
    {"all", NULL, FLEET_OPT_BOOL, "false",
     "dlq retry: every job on the dead-letter stream (no job ids then)", &opt_all, 0, 0},
};

static const ctl_subcommand dlq_subs[] = {
    {"list", "[--limit N]", "the dead-letter stream, newest first; needs --redis-url"},
    {"show", "ID|ENTRY", "one dead-lettered job: its entry and the job now; needs --redis-url"},
    {"retry", "ID...|--all", "queue dead-lettered jobs again, attempts reset; needs --redis-url"},
};

/* ------------------------------------------------------------------ arguments ----------- */

/* True for a complete stream entry id "<ms>-<seq>" (what XADD returns). */
static bool entry_id_valid(const char *s) {
    size_t ms = strspn(s, "0123456789");
    if (ms == 0 || ms > 20 || s[ms] != '-') return false;
    size_t seq = strspn(s + ms + 1, "0123456789");
    return seq > 0 && seq <= 20 && s[ms + 1 + seq] == '\0';
}

/* ------------------------------------------------------------------ entries ------------- */

/* The entry id of one XRANGE item ([id, [field, value, ...]]); "" when it is not one. */
static const char *item_id(const redisReply *item) {
    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
        item->element[0]->type != REDIS_REPLY_STRING)
        return "";
    return item->element[0]->str;
}

/* The field/value array of one XRANGE item; NULL when it is not one. */
static const redisReply *item_fields(const redisReply *item) {
    return *item_id(item) ? item->element[1] : NULL;
}

/* Builds {entry, job, model, tenant, attempts, error, failed_at} from one XRANGE item.
 * Absent fields are "" (attempts 0, failed_at null). */
static json_t *entry_json(const redisReply *item) {
    const redisReply *kv = item_fields(item);
    if (!kv) return NULL;
    const char *v;
    json_t *o = json_object();
    json_object_set_new(o, "entry", json_string(item->element[0]->str));
    static const char *const strs[] = {"job", "model", "tenant"};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        v = ctl_redis_field(kv, strs[i]);
        json_object_set_new(o, strs[i], json_string(v ? v : ""));
    }
    v = ctl_redis_field(kv, "attempts");
    json_object_set_new(o, "attempts", json_integer(v ? strtoll(v, NULL, 10) : 0));
    v = ctl_redis_field(kv, "error");
    json_object_set_new(o, "error", json_string(v ? v : ""));
    v = ctl_redis_field(kv, "failed_ms");
    long long ms = v ? strtoll(v, NULL, 10) : 0;
    if (ms > 0) {
        char when[32];
        fleet_format_time_ms(when, ms);
        json_object_set_new(o, "failed_at", json_string(when));
    } else {
        json_object_set_new(o, "failed_at", json_null());
    }
    return o;
}

/* Runs an XRANGE / XREVRANGE on the dead-letter stream. Returns the array reply, or NULL
 * after printing why. */
static redisReply *dlq_range(redisContext *c, const fleet_keys *k, const char *verb,
                             const char *from, const char *to, long count) {
    fleet_key dlq = fleet_key_dlq(k);
    char n[24];
    snprintf(n, sizeof n, "%ld", count);
    const char *argv[] = {verb, dlq.s, from, to, "COUNT", n};
    redisReply *r = ctl_redis_cmd_ok(c, verb, 6, argv);
    if (r && r->type != REDIS_REPLY_ARRAY) {
        ctl_error("redis: %s %s: unexpected reply (is it a stream?)", verb, dlq.s);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Finds one entry by its id. Returns 1 and a new object in *out, 0 when it is not on the
 * stream, -1 on a Redis error (printed). */
static int entry_by_id(redisContext *c, const fleet_keys *k, const char *entry, json_t **out) {
    *out = NULL;
    redisReply *r = dlq_range(c, k, "XRANGE", entry, entry, 1);
    if (!r) return -1;
    if (r->elements == 1) *out = entry_json(r->element[0]);
    freeReplyObject(r);
    return *out ? 1 : 0;
}

/* Finds the newest entry of job id by walking the stream from its end (for a job whose
 * hash has expired). Same returns as entry_by_id. */
static int entry_by_job(redisContext *c, const fleet_keys *k, const char *id, json_t **out) {
    *out = NULL;
    char end[DLQ_ENTRY_ID_MAX + 2] = "+";
    for (;;) {
        redisReply *r = dlq_range(c, k, "XREVRANGE", end, "-", DLQ_PAGE);
        if (!r) return -1;
        for (size_t i = 0; i < r->elements && !*out; i++) {
            const char *job = ctl_redis_field(item_fields(r->element[i]), "job");
            if (job && strcmp(job, id) == 0) *out = entry_json(r->element[i]);
        }
        const char *oldest = r->elements ? item_id(r->element[r->elements - 1]) : "";
        bool more = r->elements == DLQ_PAGE && *oldest;
        if (more) snprintf(end, sizeof end, "(%s", oldest);
        freeReplyObject(r);
        if (*out) return 1;
        if (!more) return 0;
    }
}

/* ------------------------------------------------------------------ list ---------------- */

/* Copies an error message for one table cell: control characters become spaces and
 * anything past DLQ_ERROR_COLS is cut (at a UTF-8 character boundary) and marked "...". */
static void error_cell(char out[DLQ_ERROR_COLS + 1], const char *err) {
    size_t n = strlen(err);
    if (n > DLQ_ERROR_COLS) {
        n = DLQ_ERROR_COLS - 3;
        while (n > 0 && ((unsigned char)err[n] & 0xC0) == 0x80) n--;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)err[i] < 0x20 || err[i] == 0x7f ? ' ' : err[i];
    out[n] = '\0';
    if (n < strlen(err)) strcat(out, "...");
}

static void print_list_table(const json_t *entries, bool with_shard) {
    if (with_shard) printf("%-5s  ", "SHARD");
    printf("%-15s  %-26s  %-12s  %-12s  %8s  %-24s  %s\n", "DLQ ENTRY", "JOB", "MODEL", "TENANT",
           "ATTEMPTS", "FAILED AT", "ERROR");
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        char err[DLQ_ERROR_COLS + 1];
        error_cell(err, ctl_jstr(e, "error"));
        const char *at = json_string_value(json_object_get(e, "failed_at"));
        if (with_shard)
            printf("%-5lld  ", (long long)json_integer_value(json_object_get(e, "shard")));
        printf("%-15s  %-26s  %-12s  %-12s  %8lld  %-24s  %s\n", ctl_jstr(e, "entry"),
               ctl_jstr(e, "job"), ctl_jstr(e, "model"), ctl_jstr(e, "tenant"),
               (long long)json_integer_value(json_object_get(e, "attempts")), at ? at : "-", err);
    }
}

/* After a full page: says on stderr how many entries the streams hold in all. */
static void print_more_hint(redisContext *c, const fleet_shards *s, size_t shown) {
    long long total = 0;
    for (size_t i = 0; i < s->n; i++) {
        fleet_key dlq = fleet_key_dlq(&s->shard[s->all[i]].keys);
        const char *argv[] = {"XLEN", dlq.s};
        redisReply *r = ctl_redis_cmd_ok(c, "XLEN", 2, argv);
        if (r && r->type == REDIS_REPLY_INTEGER) total += r->integer;
        freeReplyObject(r);
        if (!r) return;
    }
    if (total > (long long)shown)
        fprintf(stderr, "(showing the newest %zu of %lld entries; --limit N shows more)\n", shown,
                total);
}

/* Compares stream entry ids "<ms>-<seq>" as numbers. */
static int entry_id_cmp(const char *a, const char *b) {
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    sscanf(a, "%llu-%llu", &am, &as);
    sscanf(b, "%llu-%llu", &bm, &bs);
    if (am != bm) return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* Newest first: by entry id (each shard's entries are ids of its own Redis clock), then
 * by shard. */
static int newest_first(const void *pa, const void *pb) {
    const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
    int c = entry_id_cmp(ctl_jstr(b, "entry"), ctl_jstr(a, "entry"));
    if (c) return c;
    json_int_t ka = json_integer_value(json_object_get(a, "shard"));
    json_int_t kb = json_integer_value(json_object_get(b, "shard"));
    return ka < kb ? -1 : ka > kb;
}

static int dlq_list(redisContext *c, const fleet_shards *s, const ctl_globals *g) {
    /* The newest opt_limit of each shard hold the newest opt_limit of all. */
    size_t cap = (size_t)opt_limit * s->n, n = 0;
    json_t **all = calloc(cap ? cap : 1, sizeof *all);
    if (!all) {
        ctl_error("out of memory");
        return CTL_EXIT_FAIL;
    }
    bool full = false;
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < s->n && rc == CTL_EXIT_OK; i++) {
        int k = s->all[i];
        redisReply *r = dlq_range(c, &s->shard[k].keys, "XREVRANGE", "+", "-", opt_limit);
        if (!r) {
            rc = CTL_EXIT_FAIL;
            break;
        }
        for (size_t j = 0; j < r->elements && n < cap; j++) {
            json_t *e = entry_json(r->element[j]);
            if (!e) continue;
            json_object_set_new(e, "shard", json_integer(k));
            all[n++] = e;
        }
        full |= r->elements == (size_t)opt_limit;
        freeReplyObject(r);
    }
    qsort(all, n, sizeof *all, newest_first);
    json_t *entries = json_array();
    for (size_t i = 0; i < n; i++) {
        if (i < (size_t)opt_limit) json_array_append(entries, all[i]);
        json_decref(all[i]);
    }
    free(all);
    full |= n > (size_t)opt_limit;
    if (rc != CTL_EXIT_OK) {
    } else if (g->json) {
        ctl_render_json(stdout, entries);
    } else if (json_array_size(entries) == 0) {
        puts(s->n > 1 ? "the dead-letter streams are empty" : "the dead-letter stream is empty");
    } else {
        print_list_table(entries, s->n > 1);
    }
    if (rc == CTL_EXIT_OK && full && !g->json) print_more_hint(c, s, json_array_size(entries));
    json_decref(entries);
    return rc;
}

/* ------------------------------------------------------------------ show ---------------- */

/* The job hash as HGETALL returns it; NULL after printing a Redis error. An expired job
 * gives an empty array. */
static redisReply *job_hash(redisContext *c, const fleet_keys *k, const char *id) {
    fleet_key job = fleet_key_job(k, id);
    const char *argv[] = {"HGETALL", job.s};
    redisReply *r = ctl_redis_cmd_ok(c, "HGETALL", 2, argv);
    if (r && r->type != REDIS_REPLY_ARRAY) {
        ctl_error("redis: HGETALL %s: unexpected reply (is it a hash?)", job.s);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* {status, attempts, error, last_error, dead_lettered} of a job hash; NULL when empty. */
static json_t *current_json(const redisReply *h) {
    if (!h || h->elements == 0) return NULL;
    const char *v = ctl_redis_field(h, "attempts");
    const char *err = ctl_redis_field(h, "error");
    const char *last = ctl_redis_field(h, "last_error");
    const char *dead = ctl_redis_field(h, "dead_lettered");
    const char *status = ctl_redis_field(h, "status");
    return json_pack("{s:s, s:I, s:s?, s:s?, s:b}", "status", status ? status : "", "attempts",
                     (json_int_t)(v ? strtoll(v, NULL, 10) : 0), "error", err, "last_error", last,
                     "dead_lettered", dead && strcmp(dead, "1") == 0);
}

static void print_show(const json_t *doc, const char *dlq_key) {
    const char *entry = ctl_jstr(doc, "entry");
    if (json_is_true(json_object_get(doc, "on_stream"))) {
        const char *at = json_string_value(json_object_get(doc, "failed_at"));
        printf("entry:      %s  (%s)\n", entry, dlq_key);
        printf("job:        %s\n", ctl_jstr(doc, "job"));
        printf("model:      %s\n", ctl_jstr(doc, "model"));
        printf("tenant:     %s\n", ctl_jstr(doc, "tenant"));
        printf("attempts:   %lld\n",
               (long long)json_integer_value(json_object_get(doc, "attempts")));
        printf("failed at:  %s\n", at ? at : "-");
        printf("error:      %s\n", ctl_jstr(doc, "error"));
    } else {
        if (*entry)
            printf("entry:      %s is no longer on %s (trimmed: the stream is capped)\n", entry,
                   dlq_key);
        else printf("entry:      none recorded in the job hash\n");
        printf("job:        %s\n", ctl_jstr(doc, "job"));
    }
    const json_t *now = json_object_get(doc, "current");
    if (!json_is_object(now)) {
        printf("\nthe job's keys have expired (the dead-letter entry outlived them); it can no "
               "longer be retried\n");
        return;
    }
    printf("\nthe job now:\n");
    printf("status:     %s%s\n", ctl_jstr(now, "status"),
           json_is_true(json_object_get(now, "dead_lettered")) ? " (dead-lettered)" : "");
    printf("attempts:   %lld\n", (long long)json_integer_value(json_object_get(now, "attempts")));
    if (*ctl_jstr(now, "error")) printf("error:      %s\n", ctl_jstr(now, "error"));
    if (*ctl_jstr(now, "last_error")) printf("last error: %s\n", ctl_jstr(now, "last_error"));
}

/* dlq show JOB_ID: the job hash into *h, then the entry its dlq_entry names (an object
 * naming only the job when the stream was trimmed past it), or, when the hash has expired, the
 * job's newest entry found by scanning. Returns 0 (*e may stay NULL), or CTL_EXIT_FAIL
 * after printing why. */
static int lookup_by_job(redisContext *c, const fleet_keys *k, const char *id, json_t **e,
                         redisReply **h) {
    if (!(*h = job_hash(c, k, id))) return CTL_EXIT_FAIL;
    if ((*h)->elements == 0) return entry_by_job(c, k, id, e) < 0 ? CTL_EXIT_FAIL : 0;
    const char *dead = ctl_redis_field(*h, "dead_lettered");
    if (!dead || strcmp(dead, "1") != 0) {
        const char *st = ctl_redis_field(*h, "status");
        ctl_error("job %s is not dead-lettered (status %s)", id, st ? st : "?");
        return CTL_EXIT_FAIL;
    }
    const char *entry = ctl_redis_field(*h, "dlq_entry");
    if (!entry || !entry_id_valid(entry)) return 0;
    if (entry_by_id(c, k, entry, e) < 0) return CTL_EXIT_FAIL;
    if (!*e) *e = json_pack("{s:s, s:s}", "entry", entry, "job", id);
    return 0;
}

/* dlq show ENTRY_ID: the entry, then the hash of the job it names into *h. Same
 * returns as lookup_by_job. */
static int lookup_by_entry(redisContext *c, const fleet_keys *k, const char *entry, json_t **e,
                           redisReply **h) {
    if (entry_by_id(c, k, entry, e) < 0) return CTL_EXIT_FAIL;
    const char *job = *e ? ctl_jstr(*e, "job") : "";
    if (fleet_job_id_valid(job) && !(*h = job_hash(c, k, job))) return CTL_EXIT_FAIL;
    return 0;
}

/* Looks up what `dlq show ARG` is about: *doc gets the entry's object (or one naming only
 * the job) with "on_stream" and "current". Returns 0, or CTL_EXIT_FAIL after printing
 * why (nothing found, not dead-lettered, a Redis error). */
static int show_lookup(redisContext *c, const fleet_keys *k, const ctl_globals *g, const char *arg,
                       json_t **doc) {
    bool by_job = fleet_job_id_valid(arg);
    json_t *e = NULL;
    redisReply *h = NULL;
    int rc = by_job ? lookup_by_job(c, k, arg, &e, &h) : lookup_by_entry(c, k, arg, &e, &h);
    bool have_job = h && h->elements > 0;
    if (rc == 0 && !e && !have_job) {
        if (by_job)
            ctl_error("no dead-letter entry for job %s under prefix '%s' (never dead-lettered, "
                      "or its entry was trimmed and its keys expired)",
                      arg, g->prefix);
        else ctl_error("no entry %s on the dead-letter stream %s", arg, fleet_key_dlq(k).s);
        rc = CTL_EXIT_FAIL;
    }
    if (rc == 0) {
        if (!e) e = json_pack("{s:s, s:s}", "entry", "", "job", arg);
        json_object_set_new(e, "on_stream", json_boolean(json_object_get(e, "model") != NULL));
        json_t *now = current_json(h);
        json_object_set_new(e, "current", now ? now : json_null());
        *doc = e;
    } else {
        json_decref(e);
    }
    freeReplyObject(h);
    return rc;
}

/* The shard whose dead-letter stream holds entry: its k, or -1 when none does (said on
 * stderr), -2 after a Redis error or when several streams hold an entry of that id (each
 * shard's Redis clock numbers its own entries). With one shard, that shard. */
static int shard_of_entry(redisContext *c, const fleet_shards *s, const char *entry) {
    if (s->n == 1) return s->all[0];
    int found = -1;
    for (size_t i = 0; i < s->n; i++) {
        json_t *e = NULL;
        int r = entry_by_id(c, &s->shard[s->all[i]].keys, entry, &e);
        json_decref(e);
        if (r < 0) return -2;
        if (r == 0) continue;
        if (found >= 0) {
            ctl_error("shards %d and %d both hold a dead-letter entry %s: name the job id "
                      "instead (fleetctl dlq list shows both)",
                      found, s->all[i], entry);
            return -2;
        }
        found = s->all[i];
    }
    if (found < 0) ctl_error("no entry %s on the dead-letter stream of any shard", entry);
    return found;
}

static int dlq_show(redisContext *c, const fleet_shards *s, const ctl_globals *g, const char *arg) {
    int shard;
    if (fleet_job_id_valid(arg)) {
        shard = fleet_shards_of_id(s, arg);
        if (shard < 0) {
            ctl_error("no dead-letter entry for job %s under prefix '%s' (its first character "
                      "names no shard of this fleet: fleetctl shards show)",
                      arg, g->prefix);
            return CTL_EXIT_FAIL;
        }
    } else if ((shard = shard_of_entry(c, s, arg)) < 0) {
        return CTL_EXIT_FAIL;
    }
    const fleet_keys *k = &s->shard[shard].keys;
    json_t *doc = NULL;
    int rc = show_lookup(c, k, g, arg, &doc);
    if (rc != 0) return rc;
    json_object_set_new(doc, "shard", json_integer(shard));
    if (g->json) ctl_render_json(stdout, doc);
    else print_show(doc, fleet_key_dlq(k).s);
    json_decref(doc);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ retry --------------- */

typedef enum retry_outcome { RETRY_QUEUED, RETRY_FAILED, RETRY_ABORT } retry_outcome;

/* What happened to one job, for its report line or object. */
typedef struct retry_result {
    const char *outcome; /* "queued", "not_found", "not_dead_lettered", "error" */
    long long position;  /* queued: its queue position */
    const char *detail;  /* not_dead_lettered: the status; error: the message */
} retry_result;

/* Reports one job's outcome: a line on stdout (only failures when quiet), or an object
 * appended to rep (--json). */
static void report(json_t *rep, bool quiet, const char *id, const retry_result *res) {
    bool queued = strcmp(res->outcome, "queued") == 0;
    if (rep) {
        json_t *o = json_pack("{s:s, s:s}", "id", id, "outcome", res->outcome);
        if (queued) json_object_set_new(o, "queue_position", json_integer(res->position));
        else if (res->detail)
            json_object_set_new(o, strcmp(res->outcome, "error") == 0 ? "error" : "status",
                                json_string(res->detail));
        json_array_append_new(rep, o);
    } else if (queued) {
        if (!quiet) printf("%s: queued again (position %lld)\n", id, res->position);
    } else if (strcmp(res->outcome, "not_found") == 0) {
        printf("%s: not found (expired or never existed)\n", id);
    } else if (strcmp(res->outcome, "not_dead_lettered") == 0) {
        printf("%s: not dead-lettered (status %s); nothing done\n", id, res->detail);
    } else {
        printf("%s: failed: %s\n", id, res->detail);
    }
}

/* Reads the job's tenant (the script checks it, and moves the tenant's index TTL).
 * Returns 1 and the tenant in out, 0 when the job hash is gone, -1 on a Redis error
 * (printed). */
static int job_tenant(redisContext *c, const fleet_keys *k, const char *id,
                      char out[FLEET_TENANT_MAX + 1]) {
    fleet_key job = fleet_key_job(k, id);
    const char *argv[] = {"HGET", job.s, "tenant"};
    redisReply *r = ctl_redis_cmd_ok(c, "HGET", 3, argv);
    if (!r) return -1;
    int found = r->type == REDIS_REPLY_STRING;
    if (found) snprintf(out, FLEET_TENANT_MAX + 1, "%s", r->str);
    freeReplyObject(r);
    return found;
}

/* An operator's retry: the gateway's defaults for what the script needs from the
 * gateway's settings (FLEET_READY_TARGET; the index outlives any job: FLEET_QUEUE_TTL +
 * the longest ttl_s); no quota applies. */
#define DLQ_READY_TARGET 8
#define DLQ_INDEX_TTL_S (FLEET_JOB_DEFAULT_TTL_S + 604800L)

/* Sends the retry script for one job and reports what it did. */
static retry_outcome run_retry(redisContext *c, const fleet_keys *k, const char *id,
                               const char *tenant, json_t *rep, bool quiet) {
    fleet_cmd cmd;
    fleet_state_retry(k,
                      &(fleet_retry){.id = id,
                                     .tenant = tenant,
                                     .ready_target = DLQ_READY_TARGET,
                                     .dead_only = true,
                                     .index_ttl_s = DLQ_INDEX_TTL_S},
                      &cmd);
    redisReply *r = ctl_redis_script(c, &cmd);
    if (!r) return RETRY_ABORT;
    retry_result res = {.outcome = "error"};
    fleet_retried out;
    switch (fleet_state_retry_reply(r, &out)) {
    case FLEET_RETRY_QUEUED:
        res.outcome = "queued";
        res.position = out.queue_position;
        break;
    case FLEET_RETRY_MISSING: res.outcome = "not_found"; break;
    case FLEET_RETRY_NOT_DEAD:
    case FLEET_RETRY_REFUSED:
        res.outcome = "not_dead_lettered";
        res.detail = fleet_status_to_string(out.status);
        break;
    default:
        res.detail = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply from the script";
        break;
    }
    report(rep, quiet, id, &res);
    freeReplyObject(r);
    return strcmp(res.outcome, "queued") == 0 ? RETRY_QUEUED : RETRY_FAILED;
}

static retry_outcome retry_one(redisContext *c, const fleet_keys *k, const char *id, json_t *rep,
                               bool quiet) {
    if (!k) { /* the id names no shard of this fleet */
        report(rep, quiet, id, &(retry_result){.outcome = "not_found"});
        return RETRY_FAILED;
    }
    char tenant[FLEET_TENANT_MAX + 1];
    int found = job_tenant(c, k, id, tenant);
    if (found < 0) return RETRY_ABORT;
    if (!found) {
        report(rep, quiet, id, &(retry_result){.outcome = "not_found"});
        return RETRY_FAILED;
    }
    return run_retry(c, k, id, tenant, rep, quiet);
}

/* The id of the newest entry into last; "" when the stream is empty. 0, or -1. */
static int newest_entry(redisContext *c, const fleet_keys *k, char last[DLQ_ENTRY_ID_MAX]) {
    last[0] = '\0';
    redisReply *r = dlq_range(c, k, "XREVRANGE", "+", "-", 1);
    if (!r) return -1;
    if (r->elements == 1) snprintf(last, DLQ_ENTRY_ID_MAX, "%s", item_id(r->element[0]));
    freeReplyObject(r);
    return 0;
}

/* Retries the jobs of one page of entries. Returns -1 when Redis failed. */
static int retry_page(redisContext *c, const fleet_keys *k, const redisReply *page, json_t *rep,
                      long *queued, long *seen) {
    for (size_t i = 0; i < page->elements; i++) {
        const redisReply *item = page->element[i];
        const char *job = ctl_redis_field(item_fields(item), "job");
        (*seen)++;
        if (!job || !fleet_job_id_valid(job)) {
            report(rep, true, item_id(item),
                   &(retry_result){.outcome = "error", .detail = "the entry names no valid job"});
            continue;
        }
        retry_outcome o = retry_one(c, k, job, rep, true);
        if (o == RETRY_ABORT) return -1;
        if (o == RETRY_QUEUED) (*queued)++;
    }
    return 0;
}

/* Retries the jobs of one shard's stream, up to the entry that was its newest when this
 * started. Returns CTL_EXIT_OK, or CTL_EXIT_FAIL when Redis failed. */
static int retry_shard(redisContext *c, const fleet_keys *k, json_t *rep, long *queued,
                       long *seen) {
    char last[DLQ_ENTRY_ID_MAX], start[DLQ_ENTRY_ID_MAX + 2] = "-";
    if (newest_entry(c, k, last) < 0) return CTL_EXIT_FAIL;
    int rc = CTL_EXIT_OK;
    while (last[0]) {
        redisReply *page = dlq_range(c, k, "XRANGE", start, last, DLQ_PAGE);
        if (!page || retry_page(c, k, page, rep, queued, seen) < 0) {
            freeReplyObject(page);
            rc = CTL_EXIT_FAIL;
            break;
        }
        const char *newest = page->elements ? item_id(page->element[page->elements - 1]) : "";
        bool more = page->elements == DLQ_PAGE && *newest;
        if (more) snprintf(start, sizeof start, "(%s", newest);
        freeReplyObject(page);
        if (!more) break;
    }
    return rc;
}

static int dlq_retry_all(redisContext *c, const fleet_shards *s, const ctl_globals *g) {
    json_t *rep = g->json ? json_array() : NULL;
    long queued = 0, seen = 0;
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < s->n && rc == CTL_EXIT_OK; i++)
        rc = retry_shard(c, &s->shard[s->all[i]].keys, rep, &queued, &seen);
    if (rep) ctl_render_json(stdout, rep);
    else if (seen == 0 && rc == CTL_EXIT_OK)
        puts("the dead-letter stream is empty; nothing to retry");
    else
        printf("queued again %ld of %ld dead-lettered job%s\n", queued, seen, seen == 1 ? "" : "s");
    json_decref(rep);
    return rc == CTL_EXIT_OK && queued == seen ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int dlq_retry_ids(redisContext *c, const fleet_shards *s, const ctl_globals *g, int n,
                         char **ids) {
    json_t *rep = g->json ? json_array() : NULL;
    int queued = 0, rc = CTL_EXIT_OK;
    for (int i = 0; i < n; i++) {
        retry_outcome o = retry_one(c, fleet_shards_keys_of_id(s, ids[i]), ids[i], rep, false);
        if (o == RETRY_ABORT) {
            rc = CTL_EXIT_FAIL;
            break;
        }
        queued += o == RETRY_QUEUED;
    }
    if (rep) ctl_render_json(stdout, rep);
    json_decref(rep);
    return rc == CTL_EXIT_OK && queued == n ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ------------------------------------------------------------------ command ------------- */

/* Checks the subcommand's arguments before anything touches Redis. Returns 0, or the
 * usage exit code after printing why. */
static int check_args(const char *sub, int argc, char **argv) {
    if (strcmp(sub, "list") == 0) {
        if (argc != 0)
            return ctl_usage_error("dlq", "list [--limit N]", "dlq list takes no arguments");
    } else if (strcmp(sub, "show") == 0) {
        if (argc != 1)
            return ctl_usage_error("dlq", "show ID|ENTRY", "dlq show takes one job id or entry id");
        if (!fleet_job_id_valid(argv[0]) && !entry_id_valid(argv[0]))
            return ctl_usage_error("dlq", "show ID|ENTRY",
                                   "the argument is neither a job id (26 characters of Crockford "
                                   "base32) nor a stream entry id (like 1732380601140-0)");
    } else if (strcmp(sub, "retry") == 0) {
        if (opt_all && argc > 0)
            return ctl_usage_error("dlq", "retry ID...|--all",
                                   "dlq retry takes job ids or --all, not both");
        if (!opt_all && argc == 0)
            return ctl_usage_error("dlq", "retry ID...|--all", "dlq retry needs job ids, or --all");
        for (int i = 0; i < argc; i++)
            if (!ctl_check_job_id(argv[i])) return CTL_EXIT_USAGE;
    } else {
        return ctl_usage_error("dlq", "list|show|retry ...",
                               "unknown dlq subcommand '%.64s'; use list, show or retry", sub);
    }
    if (opt_all && strcmp(sub, "retry") != 0)
        return ctl_usage_error("dlq", "retry ID...|--all", "--all belongs to dlq retry");
    return 0;
}

static int dlq_run(const ctl_globals *g, int argc, char **argv) {
    const char *sub = argv[0];
    int rc = check_args(sub, argc - 1, argv + 1);
    if (rc) return rc;
    fleet_keys keys;
    redisContext *c = ctl_redis_open(g, &keys, &rc);
    if (!c) return rc;
    fleet_shards s;
    if (ctl_redis_shards(c, g, &s) < 0) rc = CTL_EXIT_FAIL;
    else if (strcmp(sub, "list") == 0) rc = dlq_list(c, &s, g);
    else if (strcmp(sub, "show") == 0) rc = dlq_show(c, &s, g, argv[1]);
    else if (opt_all) rc = dlq_retry_all(c, &s, g);
    else rc = dlq_retry_ids(c, &s, g, argc - 1, argv + 1);
    ctl_redis_close(c);
    return rc;
}

const ctl_command ctl_cmd_dlq = {
    .name = "dlq",
    .args = "list|show|retry ...",
    .summary = "the dead-letter stream: jobs that failed for good (reads Redis directly, like "
               "inspect)",
    .opts = dlq_opts,
    .nopts = sizeof dlq_opts / sizeof dlq_opts[0],
    .min_args = 1,
    .max_args = 1 + DLQ_MAX_IDS,
    .run = dlq_run,
    .subs = dlq_subs,
    .nsubs = sizeof dlq_subs / sizeof dlq_subs[0],
};
