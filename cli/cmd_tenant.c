/* cmd_tenant.c: `fleetctl tenant add|list|show|set|rotate-key|rotate-secret|revoke`: tenants
 * and their API keys, read and changed directly in Redis (--redis-url, --prefix), like
 * `dlq`. The gateway reads what this writes (docs/cli.md "Tenants", docs/redis.md):
 *
 *   {prefix}:tenants                 set of tenant names
 *   {prefix}:tenant:<name>           hash: name, max_active (0 = unlimited), rate (submits
 *                                    per second, decimal, 0 = unlimited), burst, max_body
 *                                    (bytes, 0 = the gateway's FLEET_MAX_BODY),
 *                                    webhook_secret, created_ms, revoked ("1" once revoked)
 *   {prefix}:tenant:<name>:keys      set of the tenant's key hashes
 *   {prefix}:apikey:<sha256 hex>     hash: tenant, role ("tenant" | "admin"), created_ms
 *
 * An API key is "fk_" + base64url (no padding) of 32 random bytes; a webhook secret is
 * "whsec_" + standard base64 of 32 random bytes. Both are printed once, when made. Redis
 * never holds a key in clear, only the SHA-256 of the whole key string (lower-case hex),
 * which is what the gateway looks up.
 *
 * Every change is one MULTI/EXEC under WATCH of the tenant's hash and key set: it reads the
 * tenant, queues its writes and commits only when nothing changed in between (else it
 * reads again). Every argument is checked before Redis is contacted (exit 2).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cli.h"
#include "fleet/job.h"
#include "fleet/job_json.h"
#include "redis_conn.h"

#define TENANT_SECRET_BYTES 32 /* random bytes in an API key and in a webhook secret */
#define TENANT_KEY_PREFIX "fk_"
#define TENANT_KEY_B64 43 /* base64url characters of 32 bytes, no padding */
#define TENANT_KEY_SIZE (sizeof TENANT_KEY_PREFIX - 1 + TENANT_KEY_B64 + 1)
#define TENANT_WHSEC_PREFIX "whsec_"
#define TENANT_WHSEC_SIZE (sizeof TENANT_WHSEC_PREFIX - 1 + 44 + 1)
#define TENANT_HASH_HEX 64 /* SHA-256 in hex */

#define TENANT_ROLE_TENANT "tenant"
#define TENANT_ROLE_ADMIN "admin"

#define TENANT_MAX_ACTIVE_MAX 10000000LL
#define TENANT_RATE_MAX 100000.0
#define TENANT_BURST_MAX 1000000LL
#define TENANT_MAX_BODY_MAX (1LL << 30) /* 1 GiB */
#define TENANT_RATE_TEXT_MAX 24         /* characters of a --rate value */
#define TENANT_CHANGE_TRIES 5           /* EXECs aborted by a concurrent change */

/* Flags: NULL (or false) when not given. The numbers are text, checked here, so that
 * `set` knows which ones were given and every mistake gets the same kind of message. */
static const char *opt_max_active;
static const char *opt_rate;
static const char *opt_burst;
static const char *opt_max_body;
static bool opt_admin;
static bool opt_keep_old;
static bool opt_show_secret;

static const fleet_option tenant_opts[] = {
    {"max-active", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: most queued + running jobs at once, 0..10000000 (0 = unlimited)",
     &opt_max_active, 0, 0},
    {"rate", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: submits per second, decimal, 0..100000 (0 = unlimited)", &opt_rate, 0,
     0},
    {"burst", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: submits allowed at once above the rate, 1..1000000 (default: the "
     "rate rounded up, at least 1)",
     &opt_burst, 0, 0},
    {"max-body", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: largest request body in bytes, 0..1073741824 (0 = the gateway's "
     "FLEET_MAX_BODY)",
     &opt_max_body, 0, 0},
    {"admin", NULL, FLEET_OPT_BOOL, "false",
     "tenant add/rotate-key: the key's role is admin (it may read global stats)", &opt_admin,
     0, 0},
    {"keep-old", NULL, FLEET_OPT_BOOL, "false",
     "tenant rotate-key: keep the old keys working (delete them later with another "
     "rotate-key or revoke)",
     &opt_keep_old, 0, 0},
    {"show-secret", NULL, FLEET_OPT_BOOL, "false",
     "tenant show: print the webhook secret too", &opt_show_secret, 0, 0},
};

static const ctl_subcommand tenant_subs[] = {
    {"add", "NAME [LIMITS]",
     "create a tenant (--admin: an admin key); prints its API key and webhook secret once"},
    {"list", "", "tenants: roles, limits, active jobs, keys, status"},
    {"show", "NAME", "one tenant's settings and counts (--show-secret: its webhook secret)"},
    {"set", "NAME LIMITS", "change limits: --max-active, --rate, --burst, --max-body"},
    {"rotate-key", "NAME", "a new API key, printed once; old keys deleted unless --keep-old"},
    {"rotate-secret", "NAME", "a new webhook secret, printed once"},
    {"revoke", "NAME", "delete all of a tenant's keys; its jobs stay until they expire"},
};

/* ------------------------------------------------------------------ arguments ----------- */

/* The limits given on the command line, checked. */
typedef struct tenant_limits {
    bool has_max_active, has_rate, has_burst, has_max_body;
    long long max_active, burst, max_body;
    char rate[TENANT_RATE_TEXT_MAX + 2]; /* normalised decimal text ("2.5", "0") */
    double rate_v;
} tenant_limits;

/* Parses a whole number of decimal digits (no sign, no spaces) within min..max. Returns
 * 0, or CTL_EXIT_USAGE after printing why (hint: the range in words). */
static int parse_count(const char *flag, const char *text, long long min, long long max,
                       const char *hint, long long *out) {
    size_t n = strlen(text);
    if (n == 0 || strspn(text, "0123456789") != n) {
        ctl_error("--%s: '%.40s' is not a whole number (%s)", flag, text, hint);
        return CTL_EXIT_USAGE;
    }
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno || n > 19 || v < (unsigned long long)min || v > (unsigned long long)max) {
        ctl_error("--%s: %.40s is out of range (%s)", flag, text, hint);
        return CTL_EXIT_USAGE;
    }
    *out = (long long)v;
    return 0;
}

/* Parses a rate: decimal digits with an optional fraction ("5", "2.5", ".5"), 0..100000,
 * into its normalised text (no leading zeros, no trailing zeros in the fraction: what is
 * stored) and its value. Returns 0, or CTL_EXIT_USAGE after printing why. */
static int parse_rate(const char *text, char out[TENANT_RATE_TEXT_MAX + 2], double *v) {
    static const char digits[] = "0123456789";
    static const char hint[] = "submits per second, 0..100000, like 5 or 0.5; 0 = unlimited";
    size_t n = strlen(text), ni = strspn(text, digits), nf = 0;
    const char *frac = text + ni;
    if (*frac == '.') nf = strspn(++frac, digits);
    if (ni + nf == 0 || frac + nf != text + n || n > TENANT_RATE_TEXT_MAX) {
        ctl_error("--rate: '%.40s' is not a decimal number (%s)", text, hint);
        return CTL_EXIT_USAGE;
    }
    const char *ip = text;
    while (ni > 0 && *ip == '0') ip++, ni--;
    while (nf > 0 && frac[nf - 1] == '0') nf--;
    snprintf(out, TENANT_RATE_TEXT_MAX + 2, "%s%.*s%s%.*s", ni ? "" : "0", (int)ni, ip,
             nf ? "." : "", (int)nf, frac);
    *v = strtod(out, NULL);
    if (*v > TENANT_RATE_MAX) {
        ctl_error("--rate: %.40s is out of range (%s)", text, hint);
        return CTL_EXIT_USAGE;
    }
    return 0;
}

/* The burst that goes with a rate when none is given: the rate rounded up, at least 1. */
static long long default_burst(double rate) {
    double b = ceil(rate);
    return b < 1 ? 1 : (long long)b;
}

/* Checks the limit flags into *l. Returns 0, or CTL_EXIT_USAGE after printing why. */
static int parse_limits(tenant_limits *l) {
    *l = (tenant_limits){.has_max_active = opt_max_active != NULL,
                         .has_rate = opt_rate != NULL,
                         .has_burst = opt_burst != NULL,
                         .has_max_body = opt_max_body != NULL};
    int rc = 0;
    if (!rc && l->has_max_active)
        rc = parse_count("max-active", opt_max_active, 0, TENANT_MAX_ACTIVE_MAX,
                         "queued + running jobs, 0..10000000; 0 = unlimited", &l->max_active);
    if (!rc && l->has_rate) rc = parse_rate(opt_rate, l->rate, &l->rate_v);
    if (!rc && l->has_burst)
        rc = parse_count("burst", opt_burst, 1, TENANT_BURST_MAX, "submits, 1..1000000",
                         &l->burst);
    if (!rc && l->has_max_body)
        rc = parse_count("max-body", opt_max_body, 0, TENANT_MAX_BODY_MAX,
                         "bytes, 0..1073741824 (1 GiB); 0 = the gateway's FLEET_MAX_BODY",
                         &l->max_body);
    return rc;
}

/* Checks a tenant name. Returns 0, or CTL_EXIT_USAGE after printing why. */
static int check_name(const char *usage, const char *name) {
    if (fleet_tenant_name_valid(name)) return 0;
    return ctl_usage_error("tenant", usage,
                           "'%.80s' is not a tenant name (1..%d characters of a-z 0-9 _ -)", name,
                           FLEET_TENANT_MAX);
}

/* ------------------------------------------------------------------ secrets ------------- */

/* Writes "fk_" + base64url (no padding) of 32 random bytes. Returns 0, or -1 when the
 * random generator failed (printed). */
static int new_api_key(char out[TENANT_KEY_SIZE]) {
    unsigned char rnd[TENANT_SECRET_BYTES], b64[48];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        ctl_error("the random generator failed (OpenSSL RAND_bytes)");
        return -1;
    }
    EVP_EncodeBlock(b64, rnd, sizeof rnd); /* 44 characters, the last one '=' */
    for (int i = 0; i < TENANT_KEY_B64; i++)
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    snprintf(out, TENANT_KEY_SIZE, "%s%.*s", TENANT_KEY_PREFIX, TENANT_KEY_B64, (char *)b64);
    OPENSSL_cleanse(rnd, sizeof rnd);
    OPENSSL_cleanse(b64, sizeof b64);
    return 0;
}

/* Writes "whsec_" + standard base64 of 32 random bytes (what the gateway's
 * gw_whsec_parse reads). Returns 0, or -1 (printed). */
static int new_webhook_secret(char out[TENANT_WHSEC_SIZE]) {
    unsigned char rnd[TENANT_SECRET_BYTES], b64[48];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        ctl_error("the random generator failed (OpenSSL RAND_bytes)");
        return -1;
    }
    EVP_EncodeBlock(b64, rnd, sizeof rnd);
    snprintf(out, TENANT_WHSEC_SIZE, "%s%.44s", TENANT_WHSEC_PREFIX, (char *)b64);
    OPENSSL_cleanse(rnd, sizeof rnd);
    OPENSSL_cleanse(b64, sizeof b64);
    return 0;
}

/* The lower-case hex SHA-256 of the whole key string: the name the gateway looks it up by. */
static void key_hash_hex(const char *key, char out[TENANT_HASH_HEX + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[TENANT_HASH_HEX] = '\0';
}

static bool is_key_hash(const char *s) {
    return strlen(s) == TENANT_HASH_HEX && strspn(s, "0123456789abcdef") == TENANT_HASH_HEX;
}

/* ------------------------------------------------------------------ transactions -------- */

/* A MULTI/EXEC being built: commands are formatted into hiredis' output buffer at once
 * (their strings are copied), and sent with EXEC. */
typedef struct txn {
    redisContext *c;
    int queued; /* commands after MULTI */
    bool oom;
} txn;

static void txn_begin(txn *x, redisContext *c) {
    *x = (txn){.c = c};
    if (redisAppendCommand(c, "MULTI") != REDIS_OK) x->oom = true;
}

#define TXN_ARGS_MAX 20

static void txn_cmd(txn *x, int argc, const char *const *argv) {
    size_t lens[TXN_ARGS_MAX];
    if (argc > TXN_ARGS_MAX) {
        x->oom = true;
        return;
    }
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    if (redisAppendCommandArgv(x->c, argc, (const char **)argv, lens) != REDIS_OK) x->oom = true;
    x->queued++;
}

/* Sends EXEC and reads every reply. Returns 1 when it committed, 0 when a change to a
 * watched key aborted it, -1 after printing an error. */
static int txn_exec(txn *x) {
    if (x->oom || redisAppendCommand(x->c, "EXEC") != REDIS_OK) {
        ctl_error("out of memory");
        return -1;
    }
    int rc = 1;
    char first_err[256] = "";
    for (int i = 0; i < x->queued + 2; i++) { /* MULTI, the commands, EXEC */
        redisReply *r = NULL;
        if (redisGetReply(x->c, (void **)&r) != REDIS_OK || !r) {
            ctl_error("redis: %s", x->c->errstr[0] ? x->c->errstr : "connection lost");
            return -1;
        }
        bool exec = i == x->queued + 1;
        if (r->type == REDIS_REPLY_ERROR && !first_err[0])
            snprintf(first_err, sizeof first_err, "%s", r->str);
        if (exec && r->type == REDIS_REPLY_NIL) rc = 0;
        if (exec && r->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < r->elements; j++)
                if (r->element[j]->type == REDIS_REPLY_ERROR && !first_err[0])
                    snprintf(first_err, sizeof first_err, "%s", r->element[j]->str);
        freeReplyObject(r);
    }
    if (first_err[0]) {
        ctl_error("redis: MULTI/EXEC: %s", first_err);
        ctl_redis_explain(first_err);
        return -1;
    }
    return rc;
}

/* Milliseconds since the epoch by Redis' clock (TIME), so every timestamp of a fleet comes
 * from one clock. -1 after printing an error. */
static long long redis_now_ms(redisContext *c) {
    const char *argv[] = {"TIME"};
    redisReply *r = ctl_redis_cmd_ok(c, "TIME", 1, argv);
    long long ms = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    else if (r)
        ctl_error("redis: TIME: unexpected reply");
    freeReplyObject(r);
    return ms;
}

/* ------------------------------------------------------------------ reading ------------- */

/* A reply of the expected type, or NULL after printing why (a key of another type). */
static redisReply *read_cmd(redisContext *c, int want, int argc, const char *const *argv) {
    redisReply *r = ctl_redis_cmd_ok(c, argv[0], argc, argv);
    if (r && r->type != want) {
        ctl_error("redis: %s %s: unexpected reply (is the key of another type?)", argv[0],
                  argv[1]);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static json_t *time_json(const char *ms_text) {
    long long ms = ms_text ? strtoll(ms_text, NULL, 10) : 0;
    if (ms <= 0) return json_null();
    char when[32];
    fleet_format_time_ms(when, ms);
    return json_string(when);
}

/* A stored rate as a JSON number: an integer when it has no fraction. */
static json_t *rate_json(const char *text) {
    if (!text || !*text) return json_integer(0);
    if (!strchr(text, '.')) return json_integer(strtoll(text, NULL, 10));
    return json_real(strtod(text, NULL));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp((*(redisReply *const *)a)->str, (*(redisReply *const *)b)->str);
}

/* Sorts SMEMBERS' reply (all strings) in place, by moving its element pointers. */
static void sort_members(redisReply *set) {
    if (set->elements < 2) return; /* element is NULL when empty, which qsort must not get */
    for (size_t i = 0; i < set->elements; i++)
        if (set->element[i]->type != REDIS_REPLY_STRING) return;
    qsort(set->element, set->elements, sizeof *set->element, cmp_str);
}

/* {"hash", "role", "created_at"} of each key hash in the tenant's key set, sorted by hash;
 * role null when its apikey hash is missing. NULL after printing a Redis error. */
static json_t *load_keys(redisContext *c, const fleet_keys *k, const char *name) {
    fleet_key ks = fleet_key_tenant_keys(k, name);
    redisReply *m = read_cmd(c, REDIS_REPLY_ARRAY, 2, (const char *[]){"SMEMBERS", ks.s});
    if (!m) return NULL;
    sort_members(m);
    json_t *keys = json_array();
    for (size_t i = 0; i < m->elements; i++) {
        const char *h = ((redisReply *)m->element[i])->str;
        json_t *o = json_pack("{s:s, s:n, s:n}", "hash", h, "role", "created_at");
        json_array_append_new(keys, o);
        if (!is_key_hash(h)) continue;
        fleet_key ak = fleet_key_apikey(k, h);
        redisReply *a = read_cmd(c, REDIS_REPLY_ARRAY, 2, (const char *[]){"HGETALL", ak.s});
        if (!a) {
            json_decref(keys);
            keys = NULL;
            break;
        }
        const char *role = ctl_redis_field(a, "role");
        if (role) json_object_set_new(o, "role", json_string(role));
        json_object_set_new(o, "created_at", time_json(ctl_redis_field(a, "created_ms")));
        freeReplyObject(a);
    }
    freeReplyObject(m);
    return keys;
}

/* The distinct roles of the keys, sorted ("admin" before "tenant"). */
static json_t *roles_of(const json_t *keys) {
    bool admin = false, tenant = false;
    size_t i;
    json_t *o;
    json_array_foreach(keys, i, o) {
        const char *r = json_string_value(json_object_get(o, "role"));
        if (r && strcmp(r, TENANT_ROLE_ADMIN) == 0) admin = true;
        if (r && strcmp(r, TENANT_ROLE_TENANT) == 0) tenant = true;
    }
    json_t *roles = json_array();
    if (admin) json_array_append_new(roles, json_string(TENANT_ROLE_ADMIN));
    if (tenant) json_array_append_new(roles, json_string(TENANT_ROLE_TENANT));
    return roles;
}

/* Reads one tenant into *out:
 *   {"tenant", "status": "active"|"revoked", "roles": [...], "max_active", "rate", "burst",
 *    "max_body", "created_at", "active", "keys", "api_keys": [{"hash","role","created_at"}],
 *    "webhook_secret" (with_secret only)}
 * Returns 1, 0 when its hash does not exist (*out NULL), -1 after printing a Redis error. */
static int load_tenant(redisContext *c, const fleet_keys *k, const char *name,
                       bool with_secret, json_t **out) {
    *out = NULL;
    fleet_key tk = fleet_key_tenant(k, name);
    redisReply *h = read_cmd(c, REDIS_REPLY_ARRAY, 2, (const char *[]){"HGETALL", tk.s});
    if (!h) return -1;
    if (h->elements == 0) {
        freeReplyObject(h);
        return 0;
    }
    json_t *keys = load_keys(c, k, name);
    fleet_key ak = fleet_key_tenant_active(k, name);
    redisReply *z =
        keys ? read_cmd(c, REDIS_REPLY_INTEGER, 2, (const char *[]){"ZCARD", ak.s}) : NULL;
    if (!z) {
        json_decref(keys);
        freeReplyObject(h);
        return -1;
    }
    const char *v, *rate = ctl_redis_field(h, "rate");
    const char *revoked = ctl_redis_field(h, "revoked");
    json_t *t = json_pack("{s:s, s:s}", "tenant", name, "status",
                          revoked && strcmp(revoked, "1") == 0 ? "revoked" : "active");
    json_object_set_new(t, "roles", roles_of(keys));
    v = ctl_redis_field(h, "max_active");
    json_object_set_new(t, "max_active", json_integer(v ? strtoll(v, NULL, 10) : 0));
    json_object_set_new(t, "rate", rate_json(rate));
    v = ctl_redis_field(h, "burst");
    json_object_set_new(t, "burst", json_integer(v ? strtoll(v, NULL, 10)
                                                   : default_burst(rate ? strtod(rate, NULL)
                                                                        : 0)));
    v = ctl_redis_field(h, "max_body");
    json_object_set_new(t, "max_body", json_integer(v ? strtoll(v, NULL, 10) : 0));
    json_object_set_new(t, "created_at", time_json(ctl_redis_field(h, "created_ms")));
    json_object_set_new(t, "active", json_integer(z->integer));
    json_object_set_new(t, "keys", json_integer((json_int_t)json_array_size(keys)));
    json_object_set_new(t, "api_keys", keys);
    v = ctl_redis_field(h, "webhook_secret");
    if (with_secret) json_object_set_new(t, "webhook_secret", v ? json_string(v) : json_null());
    freeReplyObject(z);
    freeReplyObject(h);
    *out = t;
    return 1;
}

/* ------------------------------------------------------------------ changes ------------- */

/* Queues the writes of one change after the tenant was read (t: NULL when it does not
 * exist). Returns 0, or an exit code after printing why (nothing is sent then). */
typedef int (*change_fn)(txn *x, const fleet_keys *k, const char *name, const json_t *t,
                         void *arg);

/* Runs one change: WATCH the tenant's hash and key set, read the tenant, refuse when it
 * exists (must_exist false: add) or does not (true: the rest), queue the writes, EXEC, and
 * again when a concurrent change aborted the EXEC. Returns 0 or an exit code. */
static int tenant_change(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                         const char *name, bool must_exist, change_fn fn, void *arg) {
    fleet_key tk = fleet_key_tenant(k, name), ks = fleet_key_tenant_keys(k, name);
    for (int attempt = 0; attempt < TENANT_CHANGE_TRIES; attempt++) {
        redisReply *w = ctl_redis_cmd_ok(c, "WATCH", 3, (const char *[]){"WATCH", tk.s, ks.s});
        if (!w) return CTL_EXIT_FAIL;
        freeReplyObject(w);
        json_t *t;
        int found = load_tenant(c, k, name, false, &t);
        if (found < 0) return CTL_EXIT_FAIL;
        if (found && !must_exist) {
            bool revoked = strcmp(json_string_value(json_object_get(t, "status")), "revoked") == 0;
            if (revoked)
                ctl_error("tenant %s exists (revoked); use rotate-key to enable it again with a "
                          "new key", name);
            else
                ctl_error("tenant %s exists; use rotate-key for a new key", name);
            json_decref(t);
            return CTL_EXIT_FAIL;
        }
        if (!found && must_exist) {
            ctl_error("no tenant %s under prefix '%s' (fleetctl tenant list shows them)", name,
                      g->prefix);
            return CTL_EXIT_FAIL;
        }
        txn x;
        txn_begin(&x, c);
        int rc = fn(&x, k, name, t, arg);
        json_decref(t);
        if (rc) return rc; /* nothing was sent: the process ends with the connection */
        int done = txn_exec(&x);
        if (done < 0) return CTL_EXIT_FAIL;
        if (done) return CTL_EXIT_OK;
    }
    ctl_error("tenant %s kept changing while this ran (%d tries); try again", name,
              TENANT_CHANGE_TRIES);
    return CTL_EXIT_FAIL;
}

/* Queues the new apikey hash of key (role) and its membership in the tenant's key set. */
static void queue_new_key(txn *x, const fleet_keys *k, const char *name, const char *key,
                          const char *role, const char *now_ms) {
    char hash[TENANT_HASH_HEX + 1];
    key_hash_hex(key, hash);
    fleet_key ak = fleet_key_apikey(k, hash), ks = fleet_key_tenant_keys(k, name);
    txn_cmd(x, 8,
            (const char *[]){"HSET", ak.s, "tenant", name, "role", role, "created_ms", now_ms});
    txn_cmd(x, 3, (const char *[]){"SADD", ks.s, hash});
}

/* Queues HSET of the limits given (burst follows a new rate unless given). */
static void queue_limits(txn *x, const fleet_keys *k, const char *name, const tenant_limits *l) {
    fleet_key tk = fleet_key_tenant(k, name);
    char ma[24], burst[24], mb[24];
    const char *argv[12] = {"HSET", tk.s};
    int n = 2;
    if (l->has_max_active) {
        snprintf(ma, sizeof ma, "%lld", l->max_active);
        argv[n++] = "max_active", argv[n++] = ma;
    }
    if (l->has_rate) argv[n++] = "rate", argv[n++] = l->rate;
    if (l->has_burst || l->has_rate) {
        snprintf(burst, sizeof burst, "%lld", l->has_burst ? l->burst : default_burst(l->rate_v));
        argv[n++] = "burst", argv[n++] = burst;
    }
    if (l->has_max_body) {
        snprintf(mb, sizeof mb, "%lld", l->max_body);
        argv[n++] = "max_body", argv[n++] = mb;
    }
    txn_cmd(x, n, argv);
}

/* ------------------------------------------------------------------ printing ------------ */

/* ctl_render_json with 15 significant digits for reals, so a rate of 0.1 prints as 0.1
 * (jansson's default of 17 shows 0.10000000000000001). */
static void print_json(const json_t *v) {
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (s) puts(s);
    free(s);
}

static long long jint(const json_t *o, const char *name) {
    return (long long)json_integer_value(json_object_get(o, name));
}

/* The rate as text: "unlimited", or the number as stored. */
static void rate_text(const json_t *t, char *out, size_t cap) {
    const json_t *r = json_object_get(t, "rate");
    if (json_number_value(r) <= 0) snprintf(out, cap, "unlimited");
    else if (json_is_integer(r)) snprintf(out, cap, "%lld", (long long)json_integer_value(r));
    else snprintf(out, cap, "%.10g", json_real_value(r));
}

/* "admin,tenant", or "-" without keys. */
static void roles_text(const json_t *t, char *out, size_t cap) {
    out[0] = '\0';
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(t, "roles"), i, r) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", i ? "," : "", json_string_value(r));
    }
    if (!out[0]) snprintf(out, cap, "-");
}

/* A byte count for people: "1048576 bytes (1 MiB)" when it is a whole number of units. */
static void bytes_text(long long b, char *out, size_t cap) {
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    for (int i = 0; i < 3; i++) {
        long long u = 1LL << (10 * (3 - i));
        if (b >= u && b % u == 0) {
            snprintf(out, cap, "%lld bytes (%lld %s)", b, b / u, units[i]);
            return;
        }
    }
    snprintf(out, cap, "%lld bytes", b);
}

/* The settings lines of show and set. */
static void print_settings(const json_t *t) {
    char rate[32], body[64];
    rate_text(t, rate, sizeof rate);
    long long ma = jint(t, "max_active"), mb = jint(t, "max_body");
    if (ma > 0) printf("max active:      %lld jobs (queued + running)\n", ma);
    else printf("max active:      unlimited\n");
    if (strcmp(rate, "unlimited") == 0) printf("rate:            unlimited\n");
    else printf("rate:            %s submits/s, burst %lld\n", rate, jint(t, "burst"));
    bytes_text(mb, body, sizeof body);
    printf("max body:        %s\n", mb > 0 ? body : "the gateway's (FLEET_MAX_BODY)");
}

static void print_show(const json_t *t) {
    char roles[32];
    roles_text(t, roles, sizeof roles);
    printf("tenant:          %s\n", ctl_jstr(t, "tenant"));
    printf("status:          %s\n", ctl_jstr(t, "status"));
    printf("role:            %s\n", roles);
    print_settings(t);
    const char *secret = json_string_value(json_object_get(t, "webhook_secret"));
    printf("webhook secret:  %s\n", secret ? secret : "(hidden; --show-secret prints it)");
    const char *created = json_string_value(json_object_get(t, "created_at"));
    printf("created:         %s\n", created ? created : "-");
    printf("active jobs:     %lld\n", jint(t, "active"));
    printf("api keys:        %lld\n", jint(t, "keys"));
    size_t i;
    json_t *key;
    json_array_foreach(json_object_get(t, "api_keys"), i, key) {
        const char *role = json_string_value(json_object_get(key, "role"));
        const char *at = json_string_value(json_object_get(key, "created_at"));
        if (role)
            printf("  sha256 %s  %-6s  created %s\n", ctl_jstr(key, "hash"), role, at ? at : "-");
        else
            printf("  sha256 %s  (its apikey hash is missing)\n", ctl_jstr(key, "hash"));
    }
}

static void print_list_table(const json_t *tenants) {
    printf("%-20s  %-12s  %10s  %10s  %10s  %7s  %5s  %s\n", "NAME", "ROLE(S)", "MAX ACTIVE",
           "RATE/s", "MAX BODY", "ACTIVE", "KEYS", "STATUS");
    size_t i;
    json_t *t;
    json_array_foreach(tenants, i, t) {
        char roles[32], rate[32], ma[24], mb[24];
        roles_text(t, roles, sizeof roles);
        rate_text(t, rate, sizeof rate);
        if (jint(t, "max_active") > 0) snprintf(ma, sizeof ma, "%lld", jint(t, "max_active"));
        else snprintf(ma, sizeof ma, "unlimited");
        if (jint(t, "max_body") > 0) snprintf(mb, sizeof mb, "%lld", jint(t, "max_body"));
        else snprintf(mb, sizeof mb, "default");
        printf("%-20s  %-12s  %10s  %10s  %10s  %7lld  %5lld  %s\n", ctl_jstr(t, "tenant"), roles,
               ma, rate, mb, jint(t, "active"), jint(t, "keys"), ctl_jstr(t, "status"));
    }
}

/* ------------------------------------------------------------------ add ----------------- */

typedef struct add_arg {
    const tenant_limits *l;
    const char *role;
    char now[24];
    char key[TENANT_KEY_SIZE];
    char secret[TENANT_WHSEC_SIZE];
} add_arg;

static int add_change(txn *x, const fleet_keys *k, const char *name, const json_t *t,
                      void *arg) {
    (void)t;
    add_arg *a = arg;
    if (new_api_key(a->key) < 0 || new_webhook_secret(a->secret) < 0) return CTL_EXIT_FAIL;
    const tenant_limits *l = a->l;
    char ma[24], burst[24], mb[24];
    snprintf(ma, sizeof ma, "%lld", l->has_max_active ? l->max_active : 0);
    snprintf(burst, sizeof burst, "%lld",
             l->has_burst ? l->burst : default_burst(l->has_rate ? l->rate_v : 0));
    snprintf(mb, sizeof mb, "%lld", l->has_max_body ? l->max_body : 0);
    fleet_key tk = fleet_key_tenant(k, name), all = fleet_key_tenants(k);
    txn_cmd(x, 16,
            (const char *[]){"HSET", tk.s, "name", name, "max_active", ma, "rate",
                             l->has_rate ? l->rate : "0", "burst", burst, "max_body", mb,
                             "webhook_secret", a->secret, "created_ms", a->now});
    txn_cmd(x, 3, (const char *[]){"SADD", all.s, name});
    queue_new_key(x, k, name, a->key, a->role, a->now);
    return 0;
}

static int tenant_add(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                      const char *name, const tenant_limits *l) {
    add_arg a = {.l = l, .role = opt_admin ? TENANT_ROLE_ADMIN : TENANT_ROLE_TENANT};
    long long now = redis_now_ms(c);
    if (now < 0) return CTL_EXIT_FAIL;
    snprintf(a.now, sizeof a.now, "%lld", now);
    int rc = tenant_change(c, k, g, name, false, add_change, &a);
    if (rc == CTL_EXIT_OK) {
        if (g->json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "tenant", name, "api_key", a.key,
                                  "webhook_secret", a.secret, "role", a.role);
            print_json(o);
            json_decref(o);
        } else {
            json_t *t = NULL;
            printf("created tenant %s (role %s)\n", name, a.role);
            printf("api key:         %s\n", a.key);
            printf("webhook secret:  %s\n", a.secret);
            if (load_tenant(c, k, name, false, &t) > 0) print_settings(t);
            json_decref(t);
            printf("\nStore the API key and the webhook secret now: they are not shown again "
                   "(Redis keeps\nonly the key's SHA-256). Clients send the key as "
                   "'Authorization: Bearer KEY'.\n");
        }
    }
    OPENSSL_cleanse(a.key, sizeof a.key);
    OPENSSL_cleanse(a.secret, sizeof a.secret);
    return rc;
}

/* ------------------------------------------------------------------ list, show ---------- */

static int tenant_list(redisContext *c, const fleet_keys *k, const ctl_globals *g) {
    fleet_key all = fleet_key_tenants(k);
    redisReply *m = read_cmd(c, REDIS_REPLY_ARRAY, 2, (const char *[]){"SMEMBERS", all.s});
    if (!m) return CTL_EXIT_FAIL;
    sort_members(m);
    json_t *tenants = json_array();
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < m->elements && rc == CTL_EXIT_OK; i++) {
        const char *name = m->element[i]->str;
        if (!fleet_tenant_name_valid(name)) {
            fprintf(stderr, "fleetctl: skipping '%.80s' in %s: not a tenant name\n", name, all.s);
            continue;
        }
        json_t *t;
        int found = load_tenant(c, k, name, false, &t);
        if (found < 0) rc = CTL_EXIT_FAIL;
        else if (found) json_array_append_new(tenants, t);
        else fprintf(stderr, "fleetctl: tenant %s is in %s but has no hash\n", name, all.s);
    }
    freeReplyObject(m);
    if (rc == CTL_EXIT_OK) {
        if (g->json)
            print_json(tenants);
        else if (json_array_size(tenants) == 0)
            printf("no tenants under prefix '%s' (fleetctl tenant add NAME creates one)\n",
                   g->prefix);
        else
            print_list_table(tenants);
    }
    json_decref(tenants);
    return rc;
}

static int tenant_show(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                       const char *name) {
    json_t *t;
    int found = load_tenant(c, k, name, opt_show_secret, &t);
    if (found < 0) return CTL_EXIT_FAIL;
    if (!found) {
        ctl_error("no tenant %s under prefix '%s' (fleetctl tenant list shows them)", name,
                  g->prefix);
        return CTL_EXIT_FAIL;
    }
    if (g->json) print_json(t);
    else print_show(t);
    json_decref(t);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ set ----------------- */

static int set_change(txn *x, const fleet_keys *k, const char *name, const json_t *t,
                      void *arg) {
    (void)t;
    queue_limits(x, k, name, arg);
    return 0;
}

static int tenant_set(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                      const char *name, const tenant_limits *l) {
    int rc = tenant_change(c, k, g, name, true, set_change, (void *)l);
    if (rc) return rc;
    json_t *t;
    if (load_tenant(c, k, name, false, &t) <= 0) return CTL_EXIT_FAIL;
    if (g->json) {
        print_json(t);
    } else {
        printf("updated tenant %s\n", name);
        print_settings(t);
        if (l->has_rate && !l->has_burst && l->rate_v > 0)
            printf("(burst follows the new rate; --burst B sets another)\n");
    }
    json_decref(t);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ rotate, revoke ------ */

typedef struct key_arg {
    char now[24];
    char key[TENANT_KEY_SIZE];
    const char *role;
    bool was_revoked;
    long long removed, kept;
} key_arg;

/* Queues the deletion of every key of t: each apikey hash, and the key set itself. Returns
 * how many keys there were. */
static long long queue_delete_keys(txn *x, const fleet_keys *k, const char *name,
                                   const json_t *t) {
    size_t i;
    json_t *key;
    json_array_foreach(json_object_get(t, "api_keys"), i, key) {
        const char *h = ctl_jstr(key, "hash");
        if (!is_key_hash(h)) continue;
        fleet_key ak = fleet_key_apikey(k, h);
        txn_cmd(x, 2, (const char *[]){"DEL", ak.s});
    }
    fleet_key ks = fleet_key_tenant_keys(k, name);
    txn_cmd(x, 2, (const char *[]){"DEL", ks.s});
    return (long long)json_array_size(json_object_get(t, "api_keys"));
}

static int rotate_key_change(txn *x, const fleet_keys *k, const char *name, const json_t *t,
                             void *arg) {
    key_arg *a = arg;
    if (new_api_key(a->key) < 0) return CTL_EXIT_FAIL;
    /* The same role as the keys it has (admin if any is), tenant when it has none. */
    const json_t *roles = json_object_get(t, "roles");
    bool admin = opt_admin || (json_array_size(roles) > 0 &&
                               strcmp(json_string_value(json_array_get(roles, 0)),
                                      TENANT_ROLE_ADMIN) == 0);
    a->role = admin ? TENANT_ROLE_ADMIN : TENANT_ROLE_TENANT;
    a->was_revoked = strcmp(ctl_jstr(t, "status"), "revoked") == 0;
    a->removed = a->kept = 0;
    if (opt_keep_old) a->kept = jint(t, "keys");
    else a->removed = queue_delete_keys(x, k, name, t);
    queue_new_key(x, k, name, a->key, a->role, a->now);
    fleet_key tk = fleet_key_tenant(k, name), all = fleet_key_tenants(k);
    txn_cmd(x, 3, (const char *[]){"HDEL", tk.s, "revoked"});
    txn_cmd(x, 3, (const char *[]){"SADD", all.s, name});
    return 0;
}

static int tenant_rotate_key(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                             const char *name) {
    key_arg a = {0};
    long long now = redis_now_ms(c);
    if (now < 0) return CTL_EXIT_FAIL;
    snprintf(a.now, sizeof a.now, "%lld", now);
    int rc = tenant_change(c, k, g, name, true, rotate_key_change, &a);
    if (rc == CTL_EXIT_OK && g->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "tenant", name, "api_key", a.key,
                              "role", a.role, "old_keys_deleted", (json_int_t)a.removed,
                              "old_keys_kept", (json_int_t)a.kept, "reenabled", a.was_revoked);
        print_json(o);
        json_decref(o);
    } else if (rc == CTL_EXIT_OK) {
        printf("new api key for tenant %s (role %s):\n%s\n", name, a.role, a.key);
        if (a.was_revoked) printf("tenant %s was revoked; it is enabled again\n", name);
        if (a.kept == 1)
            printf("the old key still works (rotate-key without --keep-old, or revoke, deletes "
                   "it)\n");
        else if (a.kept > 1)
            printf("the %lld old keys still work (rotate-key without --keep-old, or revoke, "
                   "deletes them)\n", a.kept);
        else if (a.removed == 1)
            printf("the old key no longer works\n");
        else if (a.removed > 1)
            printf("the %lld old keys no longer work\n", a.removed);
        printf("\nStore the key now: it is not shown again.\n");
    }
    OPENSSL_cleanse(a.key, sizeof a.key);
    return rc;
}

static int rotate_secret_change(txn *x, const fleet_keys *k, const char *name,
                                const json_t *t, void *arg) {
    (void)t;
    char *secret = arg;
    if (new_webhook_secret(secret) < 0) return CTL_EXIT_FAIL;
    fleet_key tk = fleet_key_tenant(k, name);
    txn_cmd(x, 4, (const char *[]){"HSET", tk.s, "webhook_secret", secret});
    return 0;
}

static int tenant_rotate_secret(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                                const char *name) {
    char secret[TENANT_WHSEC_SIZE] = "";
    int rc = tenant_change(c, k, g, name, true, rotate_secret_change, secret);
    if (rc == CTL_EXIT_OK && g->json) {
        json_t *o = json_pack("{s:s, s:s}", "tenant", name, "webhook_secret", secret);
        print_json(o);
        json_decref(o);
    } else if (rc == CTL_EXIT_OK) {
        printf("new webhook secret for tenant %s:\n%s\n", name, secret);
        printf("\nDeliveries are signed with it from now on. Store it now: it is not shown "
               "again.\n");
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

static int revoke_change(txn *x, const fleet_keys *k, const char *name, const json_t *t,
                         void *arg) {
    long long *removed = arg;
    *removed = queue_delete_keys(x, k, name, t);
    fleet_key tk = fleet_key_tenant(k, name);
    txn_cmd(x, 4, (const char *[]){"HSET", tk.s, "revoked", "1"});
    return 0;
}

static int tenant_revoke(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                         const char *name) {
    long long removed = 0;
    int rc = tenant_change(c, k, g, name, true, revoke_change, &removed);
    if (rc) return rc;
    if (g->json) {
        json_t *o = json_pack("{s:s, s:s, s:I}", "tenant", name, "status", "revoked",
                              "keys_deleted", (json_int_t)removed);
        print_json(o);
        json_decref(o);
    } else {
        printf("revoked tenant %s: %lld api key%s deleted; its jobs stay until they expire\n"
               "(fleetctl tenant rotate-key %s enables it again with a new key)\n",
               name, removed, removed == 1 ? "" : "s", name);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ command ------------- */

/* The indexes of tenant_subs. */
enum { SUB_ADD, SUB_LIST, SUB_SHOW, SUB_SET, SUB_ROTATE_KEY, SUB_ROTATE_SECRET, SUB_REVOKE };
#define SUB_BIT(s) (1u << (s))
#define SUB_COUNT (sizeof tenant_subs / sizeof tenant_subs[0])

/* Which subcommands take each flag of tenant_opts; one given to another is a usage error. */
static const struct {
    const char *flag;
    unsigned subs;
    const char *owners;
} flag_owners[] = {
    {"max-active", SUB_BIT(SUB_ADD) | SUB_BIT(SUB_SET), "tenant add and set"},
    {"rate", SUB_BIT(SUB_ADD) | SUB_BIT(SUB_SET), "tenant add and set"},
    {"burst", SUB_BIT(SUB_ADD) | SUB_BIT(SUB_SET), "tenant add and set"},
    {"max-body", SUB_BIT(SUB_ADD) | SUB_BIT(SUB_SET), "tenant add and set"},
    {"admin", SUB_BIT(SUB_ADD) | SUB_BIT(SUB_ROTATE_KEY), "tenant add and rotate-key"},
    {"keep-old", SUB_BIT(SUB_ROTATE_KEY), "tenant rotate-key"},
    {"show-secret", SUB_BIT(SUB_SHOW), "tenant show"},
};

/* Checks that every tenant flag given belongs to subcommand sub. Returns 0, or
 * CTL_EXIT_USAGE after printing why. */
static int check_flags(const char *usage, int sub) {
    for (size_t i = 0; i < sizeof tenant_opts / sizeof tenant_opts[0]; i++) {
        const fleet_option *o = &tenant_opts[i];
        bool given = o->type == FLEET_OPT_BOOL ? *(const bool *)o->target
                                               : *(const char *const *)o->target != NULL;
        for (size_t j = 0; given && j < sizeof flag_owners / sizeof flag_owners[0]; j++)
            if (strcmp(flag_owners[j].flag, o->flag) == 0 && !(flag_owners[j].subs & SUB_BIT(sub)))
                return ctl_usage_error("tenant", usage, "--%s belongs to %s", o->flag,
                                       flag_owners[j].owners);
    }
    return 0;
}

/* Checks the subcommand, its arguments and flags before anything touches Redis. Returns
 * 0 and the subcommand's index in *sub, or the usage exit code after printing why. */
static int check_args(int argc, char **argv, int *sub, tenant_limits *l) {
    *sub = -1;
    for (size_t i = 0; i < SUB_COUNT; i++)
        if (strcmp(argv[0], tenant_subs[i].name) == 0) *sub = (int)i;
    if (*sub < 0)
        return ctl_usage_error("tenant", "add|list|show|set|rotate-key|rotate-secret|revoke ...",
                           "unknown tenant subcommand '%.64s'; use add, list, show, set, "
                           "rotate-key, rotate-secret or revoke",
                           argv[0]);
    const ctl_subcommand *s = &tenant_subs[*sub];
    char usage[96];
    snprintf(usage, sizeof usage, "%s%s%s", s->name, *s->args ? " " : "", s->args);
    int want = *sub == SUB_LIST ? 0 : 1;
    if (argc - 1 != want)
        return ctl_usage_error("tenant", usage,
                               want ? "tenant %s takes one tenant name, got %d arguments"
                                    : "tenant %s takes no arguments, got %d",
                               s->name, argc - 1);
    if (want) {
        int rc = check_name(usage, argv[1]);
        if (rc) return rc;
    }
    int rc = check_flags(usage, *sub);
    if (rc) return rc;
    rc = parse_limits(l);
    if (rc) return rc;
    if (*sub == SUB_SET && !l->has_max_active && !l->has_rate && !l->has_burst &&
        !l->has_max_body)
        return ctl_usage_error("tenant", usage,
                               "tenant set needs at least one of --max-active, --rate, --burst, "
                               "--max-body");
    return 0;
}

static int tenant_run(const ctl_globals *g, int argc, char **argv) {
    int sub;
    tenant_limits l;
    int rc = check_args(argc, argv, &sub, &l);
    if (rc) return rc;
    fleet_keys keys;
    redisContext *c = ctl_redis_open(g, &keys, &rc);
    if (!c) return rc;
    const char *name = argc > 1 ? argv[1] : NULL;
    switch (sub) {
    case SUB_ADD: rc = tenant_add(c, &keys, g, name, &l); break;
    case SUB_LIST: rc = tenant_list(c, &keys, g); break;
    case SUB_SHOW: rc = tenant_show(c, &keys, g, name); break;
    case SUB_SET: rc = tenant_set(c, &keys, g, name, &l); break;
    case SUB_ROTATE_KEY: rc = tenant_rotate_key(c, &keys, g, name); break;
    case SUB_ROTATE_SECRET: rc = tenant_rotate_secret(c, &keys, g, name); break;
    default: rc = tenant_revoke(c, &keys, g, name); break;
    }
    redisFree(c);
    return rc;
}

const ctl_command ctl_cmd_tenant = {
    .name = "tenant",
    .args = "add|list|show|set|rotate-key|rotate-secret|revoke ...",
    .summary = "tenants and their API keys and limits (reads and writes Redis directly, like "
               "dlq)",
    .opts = tenant_opts,
    .nopts = sizeof tenant_opts / sizeof tenant_opts[0],
    .min_args = 1,
    .max_args = 2,
    .run = tenant_run,
    .subs = tenant_subs,
    .nsubs = sizeof tenant_subs / sizeof tenant_subs[0],
};
