/* cmd_inspect.c: `fleetctl inspect ID`: what Redis holds for one job, read directly.
 *
 * An operator's tool for when the API's answer is not enough ("why is this job still
 * queued?"). It bypasses the gateway (and tenant checks), so it needs the Redis URL. It
 * only reads: TYPE, PTTL, HGETALL, GET, XRANGE, XPENDING, XINFO GROUPS.
 *
 * The job's keys are those of its shard (fleet/shards.h): the id's first character names
 * it, and the shard table says which hash tag that shard has.
 *
 * Everything is first gathered into one JSON document, then printed either as text or
 * (--json) as is, so both outputs always show the same facts.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "fleet/codec.h"
#include "fleet/job.h"
#include "fleet/job_json.h"
#include "fleet/keys.h"
#include "redis_conn.h"
#include "render.h"

#define CTL_INSPECT_HEX_MAX 64 /* bytes shown of a blob that does not decode */

/* ------------------------------------------------------------------ gathering ----------- */

/* One read of a key (TYPE, PTTL, HGETALL, GET), waited out while Redis refuses it for
 * now (redis_conn.h). Returns NULL on a lost connection (already printed). */
static redisReply *cmd(redisContext *c, const char *verb, const char *key) {
    const char *argv[2] = {verb, key};
    return ctl_redis_cmd(c, 2, argv);
}

static json_t *decode_blob(const char *buf, size_t len, json_t *info) {
    char err[256];
    json_t *v = fleet_msgpack_to_json(buf, len, err, sizeof err);
    if (v) return v;
    json_object_set_new(info, "decode_error", json_string(err));
    static const char hex[] = "0123456789abcdef";
    size_t n = len < CTL_INSPECT_HEX_MAX ? len : CTL_INSPECT_HEX_MAX;
    char out[CTL_INSPECT_HEX_MAX * 2 + 1];
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[(unsigned char)buf[i] >> 4];
        out[2 * i + 1] = hex[(unsigned char)buf[i] & 15];
    }
    out[2 * n] = '\0';
    json_object_set_new(info, "head_hex", json_string(out));
    return NULL;
}

/* The job hash holds the input in fields in1..inN, N in field in_n when N > 4, else the
 * parts present (docs/redis.md). Returns the part number of a field name in1..inN, 0 for
 * in_n, -1 for any other field. */
static long input_part(const char *field) {
    if (strcmp(field, "in_n") == 0) return 0;
    if (strncmp(field, "in", 2) != 0 || field[2] < '1' || field[2] > '9') return -1;
    char *end;
    long n = strtol(field + 2, &end, 10);
    return *end == '\0' ? n : -1;
}

/* The input, put together from the job hash's parts (HGETALL reply h), described like a
 * string key: {"name","role","type","ttl_ms","bytes", "value" or "decode_error"}. NULL
 * when the hash holds neither in_n nor in1. */
static json_t *gather_input(const redisReply *h, const char *name, const json_t *job) {
    long n = -1, parts = 0;
    size_t len = 0;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        long p = input_part(h->element[i]->str);
        if (p == 0) n = strtol(h->element[i + 1]->str, NULL, 10);
        else if (p > 0) {
            len += h->element[i + 1]->len;
            parts++;
        }
    }
    if (n < 0 && parts == 0) return NULL;
    if (n < 0) n = parts; /* no in_n: the parts present */
    /* No more parts than the hash has fields: a hand-edited in_n must not loop for ever. */
    long last = n < (long)(h->elements / 2) ? n : (long)(h->elements / 2);
    char *buf = malloc(len + 1);
    if (!buf) return NULL;
    size_t at = 0;
    for (long part = 1; part <= last; part++)
        for (size_t i = 0; i + 1 < h->elements; i += 2)
            if (input_part(h->element[i]->str) == part) {
                memcpy(buf + at, h->element[i + 1]->str, h->element[i + 1]->len);
                at += h->element[i + 1]->len;
            }
    json_t *k = json_pack("{s:o,s:s,s:s}", "name", json_sprintf("%s fields in1..in%ld", name, n),
                          "role", "input", "type", "hash fields");
    if (!k) {
        free(buf);
        return NULL;
    }
    json_t *ttl = json_object_get(job, "ttl_ms");
    if (ttl) json_object_set(k, "ttl_ms", ttl);
    json_object_set_new(k, "bytes", json_integer((json_int_t)at));
    json_t *v = decode_blob(buf, at, k);
    if (v) json_object_set_new(k, "value", v);
    free(buf);
    return k;
}

/* Describes one key: {"name","role","type","ttl_ms", then "fields" (hash) or "bytes" and
 * "value" (string)}. Returns NULL on a Redis error (already printed). */
static json_t *gather_key(redisContext *c, const char *name, const char *role) {
    json_t *k = json_pack("{s:s,s:s}", "name", name, "role", role);
    redisReply *t = cmd(c, "TYPE", name);
    if (!t) goto err;
    json_object_set_new(k, "type", json_string(t->type == REDIS_REPLY_STATUS ? t->str : "?"));
    bool missing = t->type == REDIS_REPLY_STATUS && strcmp(t->str, "none") == 0;
    bool is_hash = t->type == REDIS_REPLY_STATUS && strcmp(t->str, "hash") == 0;
    bool is_string = t->type == REDIS_REPLY_STATUS && strcmp(t->str, "string") == 0;
    freeReplyObject(t);
    if (missing) return k;

    redisReply *p = cmd(c, "PTTL", name);
    if (!p) goto err;
    if (p->type == REDIS_REPLY_INTEGER) json_object_set_new(k, "ttl_ms", json_integer(p->integer));
    freeReplyObject(p);

    if (is_hash) {
        redisReply *h = cmd(c, "HGETALL", name);
        if (!h) goto err;
        json_t *fields = json_object();
        for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
            if (input_part(h->element[i]->str) >= 0) continue; /* gather_input shows them */
            json_object_set_new(fields, h->element[i]->str,
                                json_stringn(h->element[i + 1]->str, h->element[i + 1]->len));
        }
        json_object_set_new(k, "fields", fields);
        json_t *in = h->type == REDIS_REPLY_ARRAY ? gather_input(h, name, k) : NULL;
        if (in) json_object_set_new(k, "input", in);
        freeReplyObject(h);
    } else if (is_string) {
        redisReply *g = cmd(c, "GET", name);
        if (!g) goto err;
        if (g->type == REDIS_REPLY_STRING) {
            json_object_set_new(k, "bytes", json_integer((json_int_t)g->len));
            json_t *v = decode_blob(g->str, g->len, k);
            if (v) json_object_set_new(k, "value", v);
        }
        freeReplyObject(g);
    }
    return k;
err:
    json_decref(k);
    return NULL;
}

/* The fields a job hash leaves out while they hold the protocol's default (submit.lua,
 * fleet/job.h), with the value each then reads as: {"priority":"normal", ...} for those
 * that fields lacks. The hash's own fields are shown as stored; these are shown apart, so
 * an operator sees both what Redis holds and what the job means. */
static json_t *gather_defaults(const json_t *fields) {
    static const struct {
        const char *name, *value;
    } defaults[] = {
        {"priority", FLEET_JOB_DEFAULT_PRIORITY},
        {"attempts", "0"},
        {"max_attempts", FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_MAX_ATTEMPTS)},
        {"timeout_s", FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TIMEOUT_S)},
        {"ttl_s", FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TTL_S)},
        {"queue_ttl_s", FLEET_JOB_DEFAULT_TEXT(FLEET_JOB_DEFAULT_TTL_S)},
    };
    json_t *d = json_object();
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        if (!json_object_get(fields, defaults[i].name))
            json_object_set_new(d, defaults[i].name, json_string(defaults[i].value));
    return d;
}

/* Compares stream ids "ms-seq" numerically. */
static int stream_id_cmp(const char *a, const char *b) {
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    sscanf(a, "%" SCNu64 "-%" SCNu64, &am, &as);
    sscanf(b, "%" SCNu64 "-%" SCNu64, &bm, &bs);
    if (am != bm) return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* Where the job's stream entry stands in the consumer group: "pending" (delivered to a
 * worker, not acknowledged), "acknowledged" (still in the stream), "undelivered" (no
 * worker has read it yet), or "gone" (acknowledged and deleted, or trimmed). */
static json_t *gather_stream(redisContext *c, const fleet_keys *keys, const char *model,
                             const char *entry) {
    if (!fleet_model_name_valid(model)) return NULL;
    fleet_key sk = fleet_key_stream(keys, model);
    json_t *s = json_pack("{s:s,s:s,s:s}", "key", sk.s, "entry_id", entry, "group", FLEET_GROUP);
    redisReply *x = ctl_redis_cmd(c, 4, (const char *const[]){"XRANGE", sk.s, entry, entry});
    if (!x) {
        json_decref(s);
        return NULL;
    }
    bool present = x->type == REDIS_REPLY_ARRAY && x->elements == 1;
    if (present) {
        redisReply *e = x->element[0];
        json_t *fields = json_object();
        redisReply *kv = e->elements == 2 ? e->element[1] : NULL;
        for (size_t i = 0; kv && kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2)
            json_object_set_new(fields, kv->element[i]->str,
                                json_stringn(kv->element[i + 1]->str, kv->element[i + 1]->len));
        json_object_set_new(s, "entry", fields);
    }
    freeReplyObject(x);

    redisReply *pe = ctl_redis_cmd(c, 6,
                                   (const char *const[]){"XPENDING", sk.s, FLEET_GROUP, entry,
                                                         entry, "1"});
    if (pe && pe->type == REDIS_REPLY_ARRAY && pe->elements == 1 &&
        pe->element[0]->type == REDIS_REPLY_ARRAY && pe->element[0]->elements == 4) {
        redisReply *row = pe->element[0];
        json_object_set_new(s, "state", json_string("pending"));
        json_object_set_new(s, "consumer", json_string(row->element[1]->str));
        json_object_set_new(s, "idle_ms", json_integer(row->element[2]->integer));
        json_object_set_new(s, "deliveries", json_integer(row->element[3]->integer));
    } else if (pe && pe->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: no worker has ever created the group for this model. */
        json_object_set_new(s, "state", json_string(present ? "undelivered" : "gone"));
        json_object_set_new(s, "note", json_string(pe->str));
    } else {
        const char *state = present ? "undelivered" : "gone";
        redisReply *g = ctl_redis_cmd(c, 3, (const char *const[]){"XINFO", "GROUPS", sk.s});
        for (size_t i = 0; g && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
            redisReply *grp = g->element[i];
            const char *gname = NULL, *last = NULL;
            for (size_t j = 0; grp->type == REDIS_REPLY_ARRAY && j + 1 < grp->elements; j += 2) {
                if (grp->element[j]->type != REDIS_REPLY_STRING) continue;
                if (strcmp(grp->element[j]->str, "name") == 0) gname = grp->element[j + 1]->str;
                if (strcmp(grp->element[j]->str, "last-delivered-id") == 0)
                    last = grp->element[j + 1]->str;
            }
            if (gname && last && strcmp(gname, FLEET_GROUP) == 0 && present)
                state = stream_id_cmp(entry, last) <= 0 ? "acknowledged" : "undelivered";
        }
        freeReplyObject(g);
        json_object_set_new(s, "state", json_string(state));
    }
    freeReplyObject(pe);
    return s;
}

/* ------------------------------------------------------------------ printing ------------ */

static void print_ttl(const json_t *k) {
    json_t *t = json_object_get(k, "ttl_ms");
    if (!t) return;
    json_int_t ms = json_integer_value(t);
    if (ms == -1) printf("  NO TTL (every fleet key should expire)");
    else printf("  ttl %.3f s", (double)ms / 1000.0);
}

static void print_key(const json_t *k) {
    const char *name = json_string_value(json_object_get(k, "name"));
    const char *type = json_string_value(json_object_get(k, "type"));
    const char *role = json_string_value(json_object_get(k, "role"));
    if (strcmp(type, "none") == 0) {
        printf("%s  (missing: no %s key)\n\n", name, role);
        return;
    }
    printf("%s  %s", name, type);
    json_t *bytes = json_object_get(k, "bytes");
    if (bytes) printf(" (msgpack, %lld bytes)", (long long)json_integer_value(bytes));
    print_ttl(k);
    putchar('\n');

    json_t *fields = json_object_get(k, "fields");
    const char *f;
    json_t *v;
    json_object_foreach(fields, f, v) {
        const char *val = json_string_value(v);
        printf("    %-16s %s", f, val);
        /* Timestamps are stored as epoch milliseconds; show them readable too. */
        size_t fl = strlen(f);
        char *end;
        long long ms = strtoll(val, &end, 10);
        if (fl > 3 && strcmp(f + fl - 3, "_ms") == 0 && *end == '\0' && ms > 1000000000000LL) {
            char when[32];
            fleet_format_time_ms(when, ms);
            printf("  (%s)", when);
        }
        putchar('\n');
    }
    json_object_foreach(json_object_get(k, "defaults"), f, v)
        printf("    %-16s %s  (not stored: the default)\n", f, json_string_value(v));
    json_t *value = json_object_get(k, "value");
    if (value) {
        char *s = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        for (char *line = s, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            printf("    %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
            if (!nl) break;
        }
        free(s);
    }
    json_t *derr = json_object_get(k, "decode_error");
    if (derr)
        printf("    not decodable as msgpack: %s\n    first bytes: %s\n", json_string_value(derr),
               json_string_value(json_object_get(k, "head_hex")));
    putchar('\n');
}

static void print_stream(const json_t *s) {
    const char *state = json_string_value(json_object_get(s, "state"));
    printf("stream %s  entry %s  group %s: %s", json_string_value(json_object_get(s, "key")),
           json_string_value(json_object_get(s, "entry_id")),
           json_string_value(json_object_get(s, "group")),
           strcmp(state, "gone") == 0          ? "gone (acknowledged and deleted, or trimmed)"
           : strcmp(state, "undelivered") == 0 ? "undelivered (no worker has read it yet)"
                                               : state);
    if (json_object_get(s, "consumer"))
        printf(" by %s, idle %lld ms, delivered %lld time(s)",
               json_string_value(json_object_get(s, "consumer")),
               (long long)json_integer_value(json_object_get(s, "idle_ms")),
               (long long)json_integer_value(json_object_get(s, "deliveries")));
    putchar('\n');
    if (json_object_get(s, "note"))
        printf("    %s\n", json_string_value(json_object_get(s, "note")));
}

/* ------------------------------------------------------------------ command ------------- */

static int inspect_run(const ctl_globals *g, int argc, char **argv) {
    const char *id = argv[0];
    if (!ctl_check_job_id(id)) return CTL_EXIT_USAGE;
    fleet_keys keys;
    int rc;
    redisContext *c = ctl_redis_open(g, &keys, &rc);
    if (!c) return rc;
    rc = CTL_EXIT_FAIL;
    fleet_shards shards;
    if (ctl_redis_shards(c, g, &shards) < 0) {
        ctl_redis_close(c);
        return CTL_EXIT_FAIL;
    }
    int shard = fleet_shards_of_id(&shards, id);
    if (shard < 0) {
        ctl_error("no job %s under prefix '%s': its first character names no shard of this "
                  "fleet (fleetctl shards show lists them)",
                  id, g->prefix);
        ctl_redis_close(c);
        return CTL_EXIT_FAIL;
    }
    keys = shards.shard[shard].keys;
    json_t *doc = json_pack("{s:s,s:i,s:s,s:[]}", "id", id, "shard", shard, "tag", keys.tag,
                            "keys");
    json_t *list = json_object_get(doc, "keys");

    fleet_key names[2] = {fleet_key_job(&keys, id), fleet_key_result(&keys, id)};
    const char *roles[2] = {"job", "result"};
    for (int i = 0; i < 2; i++) {
        json_t *k = gather_key(c, names[i].s, roles[i]);
        if (!k) goto out;
        json_array_append_new(list, k);
        json_t *in = json_object_get(k, "input");
        if (in) {
            json_array_append(list, in);
            json_object_del(k, "input");
        }
    }
    json_t *fields = json_object_get(json_array_get(list, 0), "fields");
    if (fields) json_object_set_new(json_array_get(list, 0), "defaults", gather_defaults(fields));
    const char *model = json_string_value(json_object_get(fields, "model"));
    const char *entry = json_string_value(json_object_get(fields, "entry_id"));
    if (model && entry) {
        json_t *s = gather_stream(c, &keys, model, entry);
        if (s) json_object_set_new(doc, "stream", s);
    }

    if (g->json) {
        ctl_render_json(stdout, doc);
    } else {
        size_t i;
        json_t *k;
        if (shards.n > 1) printf("shard %d (%s)\n\n", shard, keys.tag);
        json_array_foreach(list, i, k) print_key(k);
        json_t *s = json_object_get(doc, "stream");
        if (s) print_stream(s);
    }
    if (fields) {
        rc = CTL_EXIT_OK;
    } else {
        ctl_error("no job %s under prefix '%s' in this Redis (never existed, or expired)", id,
                  g->prefix);
    }
out:
    json_decref(doc);
    ctl_redis_close(c);
    return rc;
}

const ctl_command ctl_cmd_inspect = {
    .name = "inspect",
    .args = "ID",
    .summary = "show a job's Redis keys (type, TTL, fields, decoded msgpack); needs --redis-url",
    .opts = NULL,
    .nopts = 0,
    .min_args = 1,
    .max_args = 1,
    .run = inspect_run,
};
