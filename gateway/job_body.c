/* job_body.c: a submit body (POST /v1/jobs) read and checked into a job (job_body.h,
 * docs/api.md).
 *
 * Three body formats carry the same job. Each is read into a jansson object of the
 * fields, which one set of checks validates (body_fields, option_fields), so every rule
 * is written once. The input is stored in the form its body brought it in:
 *
 *   application/json     the "input" value, packed by the codec;
 *   application/msgpack  the "input" value's own bytes, checked (sizes, nesting, UTF-8,
 *                        no ext, map keys strings) but never re-encoded: bin stays bin;
 *   multipart/form-data  the "input" form field (a JSON object, default {}) packed by the
 *                        codec with "files" appended: [{name, content_type, size, bytes}],
 *                        bytes as msgpack bin; each file's bytes are copied once.
 */
#include "job_body.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/codec.h"
#include "fleet/err.h"
#include "fleet/msgpack_wire.h"
#include "multipart.h"
#include "fleet/utf8.h"

/* ------------------------------------------------------------ refusals -------------- */

static int refuse(gw_problem *p, int status, const char *slug, const char *title, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static int refuse(gw_problem *p, int status, const char *slug, const char *title, const char *fmt,
                  ...) {
    p->status = status;
    p->slug = slug;
    p->title = title;
    va_list ap;
    va_start(ap, fmt);
    fleet_verr(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(p, ...) refuse(p, 400, "invalid-body", "Invalid request body", __VA_ARGS__)
#define INVALID(p, ...) refuse(p, 422, "invalid-job", "Not a valid job", __VA_ARGS__)
/* the body's own syntax, as "invalid-json" for JSON bodies */
#define BAD_MSGPACK(p, ...) \
    refuse(p, 400, "invalid-msgpack", "Body is not valid msgpack", __VA_ARGS__)
#define BAD_FORM(p, ...) refuse(p, 400, "invalid-multipart", "Invalid multipart body", __VA_ARGS__)

/* Text from the request, made safe to quote in a detail (short, one line, UTF-8). */
typedef struct shown {
    char s[72];
} shown;

static shown show(const char *s, size_t n) {
    shown v;
    fleet_utf8_quote(s, n, v.s, sizeof v.s);
    return v;
}

static const char *json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* ------------------------------------------------------------ content types --------- */

typedef enum body_kind { BODY_JSON, BODY_MSGPACK, BODY_MULTIPART, BODY_OTHER } body_kind;

static body_kind body_kind_of(const char *ct) {
    if (!ct) return BODY_JSON; /* no header: read it as JSON */
    while (*ct == ' ' || *ct == '\t') ct++;
    size_t n = strcspn(ct, "; \t");
#define IS(s) (n == sizeof(s) - 1 && strncasecmp(ct, s, n) == 0)
    if (IS("application/json")) return BODY_JSON;
    if (IS("application/msgpack") || IS("application/x-msgpack") || IS("application/vnd.msgpack"))
        return BODY_MSGPACK;
    if (IS("multipart/form-data")) return BODY_MULTIPART;
#undef IS
    return BODY_OTHER;
}

/* ------------------------------------------------------------ the fields ------------ */

#define FIELD_LIST                                                                             \
    "model, input, priority, timeout_s, ttl_s, max_attempts, queue_ttl_s, metadata, webhook, " \
    "webhook_events"
#define OPTION_LIST \
    "priority, timeout_s, ttl_s, max_attempts, queue_ttl_s, metadata, webhook, webhook_events"

static const char *const option_names[] = {"priority",    "timeout_s", "ttl_s",   "max_attempts",
                                           "queue_ttl_s", "metadata",  "webhook", "webhook_events"};

static bool is_option(const char *key) {
    for (size_t i = 0; i < sizeof option_names / sizeof *option_names; i++)
        if (strcmp(key, option_names[i]) == 0) return true;
    return false;
}

/* Checks a model name (n bytes, not NUL-terminated) and copies it to out->model. */
static int model_name(const char *s, size_t n, gw_job_request *out, gw_problem *p) {
    char name[FLEET_MODEL_MAX + 1] = "";
    bool ok = n <= FLEET_MODEL_MAX && !memchr(s, '\0', n);
    if (ok) {
        memcpy(name, s, n);
        name[n] = '\0';
        ok = fleet_model_name_valid(name);
    }
    if (!ok)
        return INVALID(p,
                       "model '%s' is not a valid model name (1-64 characters of a-z, 0-9, "
                       "_ -)",
                       show(s, n < 80 ? n : 80).s);
    memcpy(out->model, name, n + 1);
    return 0;
}

/* Reads an optional integer field in [min, max]. */
static int int_field(json_t *o, const char *name, long min, long max, long *out, gw_problem *p) {
    json_t *v = json_object_get(o, name);
    if (!v) return 0;
    if (!json_is_integer(v))
        return BAD(p, "field '%s' must be an integer, got %s", name, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return INVALID(p, "field '%s' must be between %ld and %ld, got %lld", name, min, max,
                       (long long)x);
    *out = (long)x;
    return 0;
}

/* Reads "webhook" (a URL string) and "webhook_events" (a subset of running, progress,
 * output, completed; default ["completed"]). */
static int webhook_fields(json_t *root, gw_job_request *out, gw_problem *p) {
    static const char *const kinds[] = {"running", "progress", "output", "completed"};
    enum { NKINDS = sizeof kinds / sizeof *kinds };
    json_t *url = json_object_get(root, "webhook");
    json_t *events = json_object_get(root, "webhook_events");
    if (events && !url)
        return BAD(p, "field 'webhook_events' needs a 'webhook' URL to deliver them to");
    if (!url) return 0;
    if (!json_is_string(url))
        return BAD(p, "field 'webhook' must be a string (an http:// or https:// URL), got %s",
                   json_type_name(url));
    bool want[NKINDS] = {false, false, false, true};
    if (events) {
        if (!json_is_array(events) || json_array_size(events) == 0)
            return BAD(p, "field 'webhook_events' must be a non-empty array of running, "
                          "progress, output, completed");
        want[NKINDS - 1] = false;
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e) {
            bool ok = false;
            for (size_t k = 0; json_is_string(e) && k < NKINDS; k++)
                if (strcmp(json_string_value(e), kinds[k]) == 0) want[k] = ok = true;
            if (!ok)
                return INVALID(p,
                               "webhook_events[%zu] must be one of running, progress, "
                               "output, completed",
                               i);
        }
    }
    out->webhook_events[0] = '\0';
    for (size_t k = 0; k < NKINDS; k++) {
        if (!want[k]) continue;
        if (out->webhook_events[0]) strcat(out->webhook_events, ",");
        strcat(out->webhook_events, kinds[k]);
    }
    out->webhook = strdup(json_string_value(url));
    if (!out->webhook) return INVALID(p, "out of memory");
    return 0;
}

/* Checks the optional fields of o: priority, timeout_s, ttl_s, max_attempts, queue_ttl_s
 * (within their widest bounds: the gateway's own are checked by gw_submit_prepare),
 * metadata, webhook and webhook_events. meta_too_long: o's "metadata" is a stand-in for an
 * object known to be longer than GW_METADATA_MAX once encoded (a msgpack body's, never
 * converted). */
static int option_fields(json_t *o, bool meta_too_long, gw_job_request *out, gw_problem *p) {
    json_t *prio = json_object_get(o, "priority");
    if (prio) {
        if (!json_is_string(prio))
            return BAD(p, "field 'priority' must be a string, got %s", json_type_name(prio));
        out->priority = fleet_priority_from_string(json_string_value(prio));
        if (out->priority == FLEET_PRIORITY_INVALID)
            return INVALID(p, "priority '%s' is not one of high, normal, low",
                           show(json_string_value(prio), json_string_length(prio)).s);
    }
    if (int_field(o, "timeout_s", 0, GW_TIMEOUT_MAX, &out->timeout_s, p) < 0) return -1;
    if (int_field(o, "ttl_s", GW_TTL_MIN, GW_TTL_MAX, &out->ttl_s, p) < 0) return -1;
    if (int_field(o, "max_attempts", 1, GW_ATTEMPTS_MAX, &out->max_attempts, p) < 0) return -1;
    if (int_field(o, "queue_ttl_s", GW_TTL_MIN, GW_QUEUE_TTL_MAX, &out->queue_ttl_s, p) < 0)
        return -1;
    json_t *meta = json_object_get(o, "metadata");
    if (meta) {
        if (!json_is_object(meta))
            return BAD(p, "field 'metadata' must be an object, got %s", json_type_name(meta));
        out->metadata_json = meta_too_long ? NULL : json_dumps(meta, JSON_COMPACT);
        if (!out->metadata_json || strlen(out->metadata_json) > GW_METADATA_MAX)
            return INVALID(p, "field 'metadata' must be at most %d bytes once encoded",
                           GW_METADATA_MAX);
    }
    return webhook_fields(o, out, p);
}

/* Checks the fields of a JSON or msgpack body (root, an object) but does not store the
 * input: known names only, "model" and "input" present, then the options. */
static int body_fields(json_t *root, bool meta_too_long, gw_job_request *out, gw_problem *p) {
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "model") != 0 && strcmp(key, "input") != 0 && !is_option(key))
            return BAD(p, "unknown field '%s'; accepted fields are " FIELD_LIST,
                       show(key, strlen(key)).s);
    }
    json_t *model = json_object_get(root, "model");
    if (!model) return BAD(p, "field 'model' is required (a model name such as \"echo\")");
    if (!json_is_string(model))
        return BAD(p, "field 'model' must be a string, got %s", json_type_name(model));
    if (model_name(json_string_value(model), json_string_length(model), out, p) < 0) return -1;
    if (!json_object_get(root, "input"))
        return BAD(p, "field 'input' is required (any JSON value; the model's input)");
    return option_fields(root, meta_too_long, out, p);
}

/* ------------------------------------------------------------ JSON bodies ----------- */

json_t *gw_json_load(const char *text, size_t len, const char *what, gw_problem *p) {
    /* JSON text never holds a NUL byte, and jansson skips one that follows a number or a
     * literal (its reader marks the end of its buffer with NUL): {"a":1<NUL>} loads. */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        refuse(p, 400, "invalid-json", "Body is not valid JSON",
               "%s is not valid JSON: a NUL byte at offset %zu", what, (size_t)(nul - text));
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!j)
        refuse(p, 400, "invalid-json", "Body is not valid JSON",
               "%s is not valid JSON: line %d, column %d: %s", what, jerr.line, jerr.column,
               jerr.text);
    return j;
}

int gw_job_from_json(json_t *root, long default_ttl_s, gw_job_request *out, gw_problem *p) {
    memset(out, 0, sizeof *out);
    out->priority = FLEET_PRIORITY_NORMAL;
    out->ttl_s = default_ttl_s;
    int rc = -1;
    char cerr[128];
    if (!json_is_object(root))
        BAD(p, "a job must be a JSON object with 'model' and 'input', got %s",
            json_type_name(root));
    else if (body_fields(root, false, out, p) < 0)
        ;
    else if (fleet_json_to_msgpack(json_object_get(root, "input"), &out->input, &out->input_len,
                                   cerr, sizeof cerr) < 0)
        INVALID(p, "field 'input' cannot be stored: %s", cerr);
    else rc = 0;
    if (rc < 0) gw_job_request_free(out);
    return rc;
}

static int parse_json(const char *body, size_t len, long default_ttl_s, gw_job_request *out,
                      gw_problem *p) {
    if (len == 0) return BAD(p, "body is empty; send a JSON object with 'model' and 'input'");
    json_t *root = gw_json_load(body, len, "body", p);
    if (!root) return -1;
    int rc = gw_job_from_json(root, default_ttl_s, out, p);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ msgpack bodies -------- */

/* Walks one msgpack value at w->off without allocating for what it declares, and checks
 * everything the codec and the worker need to read it back as JSON: sizes within the
 * bytes present (fleet_mp_read_head), containers nested at most FLEET_CODEC_MAX_DEPTH
 * deep (msgpack-c's own limit), strings valid UTF-8, map keys strings without NUL and
 * without duplicates, no ext types, floats finite. Offsets in messages count from the
 * body's first byte. */
typedef struct mp_walk {
    const unsigned char *p;
    size_t len, off;
    bool too_deep; /* the failure was nesting (a job rule, 422, for the input) */
    char err[256];
} mp_walk;

static int walk_fail(mp_walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int walk_fail(mp_walk *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fleet_verr(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return -1;
}

static int walk_truncated(mp_walk *w, size_t at) {
    return walk_fail(w, "truncated at byte %zu (%s at byte %zu runs past the end)", w->len,
                     fleet_mp_type_name(w->p[at]), at);
}

/* Reads the header at w->off (< w->len) and moves past it. */
static int walk_head(mp_walk *w, fleet_mp_head *h) {
    size_t at = w->off;
    switch (fleet_mp_read_head(w->p, w->len, &w->off, h)) {
    case FLEET_MP_OK: return 0;
    case FLEET_MP_BAD:
        return walk_fail(w, "byte 0x%02x at byte %zu is not a msgpack type", w->p[at], at);
    default: return walk_truncated(w, at);
    }
}

/* The type of the value at w->off (< w->len), its header left unread; false for 0xc1. */
static bool peek_type(const mp_walk *w, fleet_mp_type *type) {
    fleet_mp_head h;
    if (fleet_mp_head_decode(w->p + w->off, w->len - w->off, &h) == FLEET_MP_BAD) return false;
    *type = h.type;
    return true;
}

typedef struct mp_key {
    const unsigned char *s;
    size_t n;
    size_t at;
} mp_key;

static int key_cmp(const void *a, const void *b) {
    const mp_key *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    int c = memcmp(x->s, y->s, x->n);
    if (c) return c;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* If the value at w->off (< w->len) is a string, reads it (checking UTF-8) into *s, *n.
 * Returns 1, 0 when it is not a string (nothing read), -1 on failure. */
static int walk_str(mp_walk *w, const unsigned char **s, size_t *n) {
    size_t at = w->off;
    fleet_mp_type type;
    if (!peek_type(w, &type) || type != FLEET_MP_STR) return 0;
    fleet_mp_head h;
    if (walk_head(w, &h) < 0) return -1;
    *s = w->p + w->off;
    *n = (size_t)h.n;
    w->off += (size_t)h.n;
    if (!fleet_utf8_valid((const char *)*s, *n))
        return walk_fail(w, "the string at byte %zu is not valid UTF-8", at);
    return 1;
}

static int walk_value(mp_walk *w, int depth);

/* Walks the keys and values of a map of count entries, refusing duplicate keys. The keys
 * are kept for that as they are read, never reserved for the count the header declares: a
 * map that claims many entries and fails early costs nothing. */
static int walk_map(mp_walk *w, size_t at, uint64_t count, int depth) {
    mp_key *keys = NULL;
    size_t nkeys = 0, cap = 0;
    int rc = -1;
    for (uint64_t i = 0; i < count; i++) {
        if (w->off >= w->len) {
            walk_truncated(w, at);
            goto done;
        }
        size_t kat = w->off;
        const unsigned char *s = NULL;
        size_t n = 0;
        int r = walk_str(w, &s, &n);
        if (r < 0) goto done;
        if (r == 0) {
            walk_fail(w, "the map key at byte %zu is not a string (got %s)", kat,
                      fleet_mp_type_name(w->p[kat]));
            goto done;
        }
        if (memchr(s, '\0', n)) {
            walk_fail(w, "the map key at byte %zu holds a NUL byte", kat);
            goto done;
        }
        if (count > 1) {
            if (nkeys == cap) {
                size_t ncap = cap ? 2 * cap : 8;
                mp_key *k = realloc(keys, ncap * sizeof *k);
                if (!k) {
                    walk_fail(w, "out of memory");
                    goto done;
                }
                keys = k;
                cap = ncap;
            }
            keys[nkeys++] = (mp_key){s, n, kat};
        }
        if (walk_value(w, depth + 1) < 0) goto done;
    }
    if (nkeys > 1) {
        qsort(keys, nkeys, sizeof *keys, key_cmp);
        for (size_t i = 1; i < nkeys; i++)
            if (keys[i].n == keys[i - 1].n && memcmp(keys[i].s, keys[i - 1].s, keys[i].n) == 0) {
                walk_fail(w, "the map at byte %zu has the key '%s' twice (at bytes %zu and %zu)",
                          at, show((const char *)keys[i].s, keys[i].n).s, keys[i - 1].at,
                          keys[i].at);
                goto done;
            }
    }
    rc = 0;
done:
    free(keys);
    return rc;
}

static int walk_value(mp_walk *w, int depth) {
    size_t at = w->off;
    if (at >= w->len) return walk_fail(w, "truncated at byte %zu (a value is missing)", w->len);
    const unsigned char *s;
    size_t sn;
    int r = walk_str(w, &s, &sn);
    if (r) return r < 0 ? -1 : 0;
    fleet_mp_type type;
    if (peek_type(w, &type)) {
        if (type == FLEET_MP_EXT)
            return walk_fail(w,
                             "the ext value at byte %zu has no JSON form; use nil, booleans, "
                             "numbers, strings, bin, arrays and maps",
                             at);
        if ((type == FLEET_MP_MAP || type == FLEET_MP_ARRAY) && depth >= FLEET_CODEC_MAX_DEPTH) {
            w->too_deep = true;
            return walk_fail(w, "nesting deeper than %d levels (at byte %zu)",
                             FLEET_CODEC_MAX_DEPTH, at);
        }
    }
    fleet_mp_head h;
    if (walk_head(w, &h) < 0) return -1;
    if (h.type == FLEET_MP_MAP) return walk_map(w, at, h.n, depth);
    if (h.type == FLEET_MP_ARRAY) {
        for (uint64_t i = 0; i < h.n; i++)
            if (walk_value(w, depth + 1) < 0) return -1;
        return 0;
    }
    const unsigned char *b = w->p + w->off;
    w->off += (size_t)h.skip;
    if (h.type == FLEET_MP_FLOAT) {
        double d;
        if (h.skip == 4) {
            uint32_t b32 = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            float f;
            memcpy(&f, &b32, sizeof f);
            d = f;
        } else {
            uint64_t b64 = 0;
            for (int i = 0; i < 8; i++) b64 = (b64 << 8) | b[i];
            memcpy(&d, &b64, sizeof d);
        }
        if (!isfinite(d))
            return walk_fail(w,
                             "the float at byte %zu is not finite (NaN or infinity has no "
                             "JSON form)",
                             at);
    }
    return 0; /* nil, booleans, integers, bin */
}

/* A msgpack body's metadata is converted to JSON only when that JSON can fit in
 * GW_METADATA_MAX bytes. Every msgpack value writes at least one JSON character for its
 * header and number bytes (at most 9) and at least one for each str or bin payload byte,
 * so a value longer than this many bytes cannot, and is refused without being converted. */
#define METADATA_MSGPACK_MAX (9 * (size_t)GW_METADATA_MAX)

/* A stand-in for a msgpack body's "metadata" value (n bytes at v, walked) when converting
 * it would only be thrown away: a str, bin or array (option_fields refuses any value but a
 * map, naming its JSON type), or a map too long to fit once converted (*too_long). NULL
 * when the value is to be converted: a map that may fit, or a scalar (9 bytes at most). */
static json_t *metadata_stand_in(const unsigned char *v, size_t n, bool *too_long) {
    fleet_mp_head h;
    fleet_mp_head_decode(v, n, &h);
    switch (h.type) {
    case FLEET_MP_STR:
    case FLEET_MP_BIN: return json_string("");
    case FLEET_MP_ARRAY: return json_array();
    case FLEET_MP_MAP:
        if (n <= METADATA_MSGPACK_MAX) return NULL;
        *too_long = true;
        return json_object();
    default: return NULL;
    }
}

static int parse_msgpack(const char *body, size_t len, gw_job_request *out, gw_problem *p) {
    if (len == 0) return BAD(p, "body is empty; send a msgpack map with 'model' and 'input'");
    mp_walk w = {.p = (const unsigned char *)body, .len = len};
    fleet_mp_head h;
    if (fleet_mp_head_decode(w.p, len, &h) == FLEET_MP_BAD || h.type != FLEET_MP_MAP)
        return BAD(p, "msgpack body must be a map with 'model' and 'input', got %s",
                   fleet_mp_type_name(w.p[0]));
    if (walk_head(&w, &h) < 0) return BAD_MSGPACK(p, "body is not valid msgpack: %s", w.err);
    uint64_t count = h.n;
    json_t *root = json_object();
    if (!root) return INVALID(p, "out of memory");
    size_t in_at = 0, in_len = 0;
    bool meta_too_long = false;
    int rc = -1;
    for (uint64_t i = 0; i < count; i++) {
        size_t kat = w.off;
        const unsigned char *k = NULL;
        size_t kn = 0;
        int r = kat < len ? walk_str(&w, &k, &kn) : walk_fail(&w, "truncated at byte %zu", len);
        if (r < 0) {
            BAD_MSGPACK(p, "body is not valid msgpack: %s", w.err);
            goto done;
        }
        if (r == 0) {
            BAD_MSGPACK(p, "msgpack map key at byte %zu is not a string (got %s)", kat,
                        fleet_mp_type_name(w.p[kat]));
            goto done;
        }
        shown key = show((const char *)k, kn);
        if (memchr(k, '\0', kn)) {
            BAD_MSGPACK(p, "msgpack map key at byte %zu holds a NUL byte", kat);
            goto done;
        }
        if (json_object_getn(root, (const char *)k, kn)) {
            BAD(p, "field '%s' appears twice (at byte %zu)", key.s, kat);
            goto done;
        }
        /* An unknown field is refused as soon as its name is read: its value, however
         * large, is neither walked nor converted (a JSON body's is never parsed either,
         * past the syntax). */
        char name[16] = "";
        if (kn < sizeof name) memcpy(name, k, kn);
        if (kn >= sizeof name ||
            (strcmp(name, "model") != 0 && strcmp(name, "input") != 0 && !is_option(name))) {
            BAD(p, "unknown field '%s'; accepted fields are " FIELD_LIST, key.s);
            goto done;
        }
        bool is_input = strcmp(name, "input") == 0;
        size_t vat = w.off;
        if (walk_value(&w, 0) < 0) {
            if (is_input && w.too_deep) INVALID(p, "field 'input' cannot be stored: %s", w.err);
            else BAD_MSGPACK(p, "body is not valid msgpack: field '%s': %s", key.s, w.err);
            goto done;
        }
        json_t *v;
        if (is_input) {
            in_at = vat;
            in_len = w.off - vat;
            v = json_null(); /* a stand-in: the bytes themselves are stored */
        } else if (strcmp(name, "metadata") == 0 &&
                   (v = metadata_stand_in(w.p + vat, w.off - vat, &meta_too_long))) {
            /* refused by option_fields as the value itself would be */
        } else {
            char cerr[128];
            v = fleet_msgpack_to_json(body + vat, w.off - vat, cerr, sizeof cerr);
            if (!v) {
                BAD_MSGPACK(p, "body is not valid msgpack: field '%s': %s", key.s, cerr);
                goto done;
            }
        }
        if (json_object_setn_new(root, (const char *)k, kn, v) < 0) {
            INVALID(p, "out of memory");
            goto done;
        }
    }
    if (w.off != len) {
        BAD_MSGPACK(p,
                    "body is not valid msgpack: %zu trailing bytes after the map (from byte "
                    "%zu)",
                    len - w.off, w.off);
        goto done;
    }
    if (body_fields(root, meta_too_long, out, p) < 0) goto done;
    out->input = malloc(in_len);
    if (!out->input) {
        INVALID(p, "out of memory");
        goto done;
    }
    memcpy(out->input, body + in_at, in_len);
    out->input_len = in_len;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ multipart bodies ------ */

static bool is_file_part(const gw_mp_part *pt) {
    return strcmp(pt->name, "files") == 0 || strcmp(pt->name, "file") == 0;
}

/* A browser sends an <input type=file> left empty as filename="" with no bytes. */
static bool is_empty_file_input(const gw_mp_part *pt) {
    return pt->has_filename && !pt->filename[0] && pt->len == 0;
}

static const char *file_type(const gw_mp_part *pt) {
    return pt->content_type[0] ? pt->content_type : "application/octet-stream";
}

/* Writes "files": [{name, content_type, size, bytes}, ...] at o (NULL: just sizes it). */
static size_t put_files(unsigned char *o, const gw_mp_form *form, size_t nfiles) {
    size_t n = 0;
#define W(call) (n += (call))
#define AT (o ? o + n : NULL)
    W(fleet_mp_put_str(AT, "files", 5));
    W(fleet_mp_put_array(AT, nfiles));
    for (size_t i = 0; i < form->n; i++) {
        const gw_mp_part *pt = &form->parts[i];
        if (!is_file_part(pt) || is_empty_file_input(pt)) continue;
        W(fleet_mp_put_map(AT, 4));
        W(fleet_mp_put_str(AT, "name", 4));
        W(fleet_mp_put_str(AT, pt->filename, strlen(pt->filename)));
        W(fleet_mp_put_str(AT, "content_type", 12));
        W(fleet_mp_put_str(AT, file_type(pt), strlen(file_type(pt))));
        W(fleet_mp_put_str(AT, "size", 4));
        W(fleet_mp_put_uint(AT, pt->len));
        W(fleet_mp_put_str(AT, "bytes", 5));
        W(fleet_mp_put_bin(AT, pt->data, pt->len));
    }
#undef W
#undef AT
    return n;
}

/* Stores the input: obj (an object without "files") packed by the codec, its map header
 * counting one more entry, then "files". Returns 0, or -1 with a refusal. */
static int pack_input_with_files(const json_t *obj, const gw_mp_form *form, size_t nfiles,
                                 gw_job_request *out, gw_problem *p) {
    char *m = NULL, cerr[128];
    size_t mlen = 0;
    if (fleet_json_to_msgpack(obj, &m, &mlen, cerr, sizeof cerr) < 0)
        return INVALID(p, "form field 'input' cannot be stored: %s", cerr);
    fleet_mp_head h;
    size_t hold = fleet_mp_head_decode((const unsigned char *)m, mlen, &h) == FLEET_MP_OK &&
                          h.type == FLEET_MP_MAP
                      ? h.hlen
                      : 0;
    size_t count = json_object_size(obj);
    if (!hold) { /* the codec packs an object as a map */
        free(m);
        return INVALID(p, "form field 'input' cannot be stored: not packed as a map");
    }
    size_t hnew = fleet_mp_put_map(NULL, count + 1);
    size_t total = hnew + (mlen - hold) + put_files(NULL, form, nfiles);
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(m);
        return INVALID(p, "out of memory");
    }
    fleet_mp_put_map(buf, count + 1);
    memcpy(buf + hnew, m + hold, mlen - hold);
    put_files(buf + hnew + (mlen - hold), form, nfiles);
    free(m);
    out->input = (char *)buf;
    out->input_len = total;
    return 0;
}

/* Parses a JSON form field that must be an object. Returns a new reference or NULL with a
 * refusal. */
static json_t *form_object(const gw_mp_part *pt, const char *what, gw_problem *p) {
    char field[300];
    snprintf(field, sizeof field, "form field '%s'", pt->name);
    json_t *j = gw_json_load(pt->data, pt->len, field, p);
    if (!j) return NULL;
    if (!json_is_object(j)) {
        BAD(p, "form field '%s' must be a JSON object (%s), got %s", pt->name, what,
            json_type_name(j));
        json_decref(j);
        return NULL;
    }
    return j;
}

static int parse_multipart(const char *body, size_t len, const char *ctype, gw_job_request *out,
                           gw_problem *p) {
    char boundary[GW_MP_BOUNDARY_MAX + 1], err[sizeof p->detail - 40];
    if (gw_multipart_boundary(ctype, boundary, err, sizeof err) < 0) return BAD_FORM(p, "%s", err);
    if (len == 0)
        return BAD_FORM(p, "body is empty; send the form fields model, input, options and "
                           "files");
    gw_mp_form form;
    if (gw_multipart_parse(body, len, boundary, &form, err, sizeof err) < 0) {
        gw_multipart_form_free(&form);
        return BAD_FORM(p, "multipart body is malformed: %s", err);
    }
    const gw_mp_part *model = NULL, *input = NULL, *options = NULL;
    json_t *in = NULL, *opts = NULL;
    size_t nfiles = 0;
    int rc = -1;
    for (size_t i = 0; i < form.n; i++) {
        const gw_mp_part *pt = &form.parts[i];
        const gw_mp_part **slot = strcmp(pt->name, "model") == 0     ? &model
                                  : strcmp(pt->name, "input") == 0   ? &input
                                  : strcmp(pt->name, "options") == 0 ? &options
                                                                     : NULL;
        if (slot && *slot) {
            BAD(p, "form field '%s' appears twice; only 'files' may repeat", pt->name);
            goto done;
        }
        if (slot) {
            *slot = pt;
        } else if (is_file_part(pt)) {
            nfiles += !is_empty_file_input(pt);
        } else {
            BAD(p,
                "unknown form field '%s'; accepted fields are model, input, options "
                "and files (repeatable)",
                show(pt->name, strlen(pt->name)).s);
            goto done;
        }
    }
    if (!model) {
        BAD(p, "form field 'model' is required (curl -F model=echo -F files=@a.pdf)");
        goto done;
    }
    if (model_name(model->data, model->len, out, p) < 0) goto done;
    if (options) {
        opts = form_object(options, OPTION_LIST, p);
        if (!opts) goto done;
        const char *key;
        json_t *val;
        json_object_foreach(opts, key, val) {
            if (strcmp(key, "model") == 0 || strcmp(key, "input") == 0) {
                BAD(p,
                    "form field 'options' must not hold '%s'; send it as its own form "
                    "field",
                    key);
                goto done;
            }
            if (!is_option(key)) {
                BAD(p,
                    "form field 'options' has unknown field '%s'; accepted fields are " OPTION_LIST,
                    show(key, strlen(key)).s);
                goto done;
            }
        }
        if (option_fields(opts, false, out, p) < 0) {
            static const char pre[] = "form field 'options': ";
            size_t keep = strnlen(p->detail, sizeof p->detail - sizeof pre);
            memmove(p->detail + sizeof pre - 1, p->detail, keep);
            memcpy(p->detail, pre, sizeof pre - 1);
            p->detail[sizeof pre - 1 + keep] = '\0';
            goto done;
        }
    }
    if (input) {
        in = form_object(input, "the files are added to it as 'files'", p);
        if (!in) goto done;
        if (json_object_get(in, "files")) {
            BAD(p, "form field 'input' must not hold 'files'; the file parts fill it");
            goto done;
        }
    } else if (!(in = json_object())) {
        INVALID(p, "out of memory");
        goto done;
    }
    rc = pack_input_with_files(in, &form, nfiles, out, p);
done:
    json_decref(in);
    json_decref(opts);
    gw_multipart_form_free(&form);
    return rc;
}

/* ------------------------------------------------------------ entry point ----------- */

int gw_submit_parse(const char *body, size_t len, const char *content_type, long default_ttl_s,
                    gw_job_request *out, gw_problem *p) {
    memset(out, 0, sizeof *out);
    out->priority = FLEET_PRIORITY_NORMAL;
    out->ttl_s = default_ttl_s;
    int rc;
    switch (body_kind_of(content_type)) {
    case BODY_JSON: rc = parse_json(body, len, default_ttl_s, out, p); break;
    case BODY_MSGPACK: rc = parse_msgpack(body, len, out, p); break;
    case BODY_MULTIPART: rc = parse_multipart(body, len, content_type, out, p); break;
    default:
        rc = refuse(p, 415, "unsupported-media-type", "Unsupported content type",
                    "content type '%s' is not accepted; send application/json, "
                    "application/msgpack or multipart/form-data",
                    show(content_type, strlen(content_type)).s);
    }
    if (rc < 0) gw_job_request_free(out);
    return rc;
}

void gw_job_request_free(gw_job_request *r) {
    free(r->input);
    free(r->metadata_json);
    free(r->webhook);
    r->input = NULL;
    r->metadata_json = NULL;
    r->webhook = NULL;
}
