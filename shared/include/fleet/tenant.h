/* tenant.h: the tenant and API-key record, the one place that knows its fields. fleetctl
 * (cli/cmd_tenant.c) writes it, the gateway reads it (gateway/auth.c through auth.lua,
 * gateway/webhooks.c for a tenant's webhook secret). Keys come from keys.h:
 *
 *   {prefix}:tenants                 set of tenant names
 *   {prefix}:tenant:<name>           hash: the FLEET_TENANT_F_* fields below
 *   {prefix}:tenant:<name>:keys      set of the tenant's key hashes
 *   {prefix}:apikey:<sha256 hex>     hash: the FLEET_APIKEY_F_* fields below
 *
 * An API key is "fk_" + base64url (no padding) of 32 random bytes; a webhook secret is
 * "whsec_" + standard base64 of 32 random bytes. Redis never holds a key in clear, only
 * the SHA-256 of the whole key string in lower-case hex: the name the gateway looks it up
 * by. shared/scripts/auth.lua reads the same fields inside Redis; tests/unit/tenant_test.c
 * checks that the names it spells are these.
 *
 * Nothing here talks to Redis: the fleet_tenant_cmd builders fill an argument vector that
 * the caller sends (hiredis sync in fleetctl, async in the gateway), and fleet_tenant_read
 * parses a reply.
 */
#ifndef FLEET_TENANT_H
#define FLEET_TENANT_H

#include <stdbool.h>
#include <stddef.h>

#include "fleet/keys.h"

struct redisReply;

/* The fields of {prefix}:tenant:<name>. */
#define FLEET_TENANT_F_NAME "name"
#define FLEET_TENANT_F_MAX_ACTIVE "max_active"     /* queued + running jobs, 0 = unlimited */
#define FLEET_TENANT_F_RATE "rate"                 /* submits/s, decimal, 0 = unlimited */
#define FLEET_TENANT_F_BURST "burst"               /* submits at once above the rate */
#define FLEET_TENANT_F_MAX_BODY "max_body"         /* bytes, 0 = the gateway's FLEET_MAX_BODY */
#define FLEET_TENANT_F_MAX_FINISHED "max_finished" /* finished jobs kept, 0 = unlimited */
#define FLEET_TENANT_F_MAX_BYTES "max_bytes"       /* bytes of finished jobs kept, 0 = unlimited */
#define FLEET_TENANT_F_WEBHOOK_SECRET "webhook_secret" /* "whsec_...": signs its deliveries */
#define FLEET_TENANT_F_CREATED_MS "created_ms"         /* by Redis' clock (TIME) */
#define FLEET_TENANT_F_REVOKED "revoked"               /* FLEET_TENANT_REVOKED once revoked */
#define FLEET_TENANT_REVOKED "1"

/* The fields of {prefix}:apikey:<hash>. */
#define FLEET_APIKEY_F_TENANT "tenant"
#define FLEET_APIKEY_F_ROLE "role"
#define FLEET_APIKEY_F_CREATED_MS "created_ms"
#define FLEET_ROLE_TENANT "tenant" /* its own jobs only; the role of a key without one */
#define FLEET_ROLE_ADMIN "admin"   /* may also read global stats */

/* Every field name above, NULL-terminated (for checks that another spelling agrees). */
extern const char *const fleet_tenant_fields[];
extern const char *const fleet_apikey_fields[];

/* The ranges of the limits: what fleetctl accepts. */
#define FLEET_TENANT_MAX_ACTIVE_MAX 10000000LL
#define FLEET_TENANT_RATE_MAX 100000.0
#define FLEET_TENANT_BURST_MAX 1000000LL
#define FLEET_TENANT_MAX_BODY_MAX (1LL << 30) /* 1 GiB */
#define FLEET_TENANT_MAX_FINISHED_MAX 100000000LL
#define FLEET_TENANT_MAX_BYTES_MAX (1LL << 50) /* 1 PiB */
#define FLEET_TENANT_RATE_TEXT_MAX 24          /* characters of a rate as given */

/* Limits given for a tenant (fleetctl tenant add/set), checked. */
typedef struct fleet_tenant_limits {
    bool has_max_active, has_rate, has_burst, has_max_body, has_max_finished, has_max_bytes;
    long long max_active, burst, max_body, max_finished, max_bytes;
    char rate[FLEET_TENANT_RATE_TEXT_MAX + 2]; /* normalised decimal text ("2.5", "0") */
    double rate_v;
} fleet_tenant_limits;

/* Parses text as the limit named field (FLEET_TENANT_F_MAX_ACTIVE, _RATE, _BURST,
 * _MAX_BODY, _MAX_FINISHED or _MAX_BYTES) into l and sets its has_ flag. Counts are decimal digits only (no sign, no
 * spaces) within their range; a rate is digits with an optional fraction ("5", "2.5",
 * ".5"), 0..100000, stored normalised (no leading zeros, no trailing zeros in the
 * fraction). Returns 0, or -1 with why in err ("'x' is not a whole number (...)", "... is
 * out of range (...)", "... is not a decimal number (...)"; the range in words). */
int fleet_tenant_limit_parse(fleet_tenant_limits *l, const char *field, const char *text, char *err,
                             size_t errlen);

/* The burst that goes with a rate when none is set: the rate rounded up, at least 1 (at
 * most FLEET_TENANT_BURST_MAX). */
long long fleet_tenant_default_burst(double rate);

/* A tenant's record as read. */
#define FLEET_WHSEC_STORED_MAX 127 /* longest webhook secret kept from a record */
typedef struct fleet_tenant {
    long long max_active;                            /* 0: unlimited */
    double rate;                                     /* 0: unlimited */
    char rate_text[FLEET_TENANT_RATE_TEXT_MAX + 2];  /* as stored; "0" when absent */
    long long burst;                                 /* at least 1 */
    long long max_body;                              /* 0: the gateway's FLEET_MAX_BODY */
    long long max_finished;                          /* 0: unlimited */
    long long max_bytes;                             /* 0: unlimited */
    char webhook_secret[FLEET_WHSEC_STORED_MAX + 1]; /* "" when it has none */
    long long created_ms;                            /* 0 when unknown */
    bool revoked;
} fleet_tenant;

/* Reads a tenant hash in HGETALL's flat field/value shape (NULL: an empty record). An
 * absent field takes its default (0; burst: fleet_tenant_default_burst of the rate), a
 * negative limit reads as 0, a burst below 1 as 1; unknown fields are ignored. */
void fleet_tenant_read(fleet_tenant *t, const struct redisReply *fields);

/* ------------------------------------------------------------------ keys and secrets --- */

#define FLEET_APIKEY_PREFIX "fk_"
#define FLEET_APIKEY_B64 43 /* base64url characters of 32 bytes, no padding */
#define FLEET_APIKEY_SIZE (sizeof FLEET_APIKEY_PREFIX - 1 + FLEET_APIKEY_B64 + 1)
#define FLEET_WHSEC_PREFIX "whsec_"
#define FLEET_WHSEC_SIZE (sizeof FLEET_WHSEC_PREFIX - 1 + 44 + 1)
#define FLEET_APIKEY_HASH_HEX 64 /* SHA-256 in hex */

/* A new API key / webhook secret from OpenSSL's generator. Returns 0, or -1 when the
 * generator failed (out is then ""). Callers wipe them (OPENSSL_cleanse) when done. */
int fleet_apikey_new(char out[FLEET_APIKEY_SIZE]);
int fleet_webhook_secret_new(char out[FLEET_WHSEC_SIZE]);

/* The lower-case hex SHA-256 of the len bytes of key: its apikey record's name. */
void fleet_apikey_hash(const char *key, size_t len, char out[FLEET_APIKEY_HASH_HEX + 1]);
/* True when s is 64 lower-case hex digits (a key hash that can go into a key name). */
bool fleet_apikey_hash_valid(const char *s);

/* ------------------------------------------------------------------ commands ---------- */

/* One Redis command as an argument vector; argv points into buf, so a fleet_tenant_cmd
 * is used where it was built and never copied. */
#define FLEET_TENANT_CMD_ARGS 24
typedef struct fleet_tenant_cmd {
    int argc;
    const char *argv[FLEET_TENANT_CMD_ARGS];
    size_t len[FLEET_TENANT_CMD_ARGS];
    char buf[2048];
    size_t used;
} fleet_tenant_cmd;

/* The builders. name is a valid tenant name (job.h) and hash a valid key hash (the
 * caller checked); they return 0, or -1 when the command does not fit (argc is 0 then). */

/* HGETALL of the tenant hash (read with fleet_tenant_read). */
int fleet_tenant_cmd_read(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* HGET of the tenant's webhook secret (a string, or nil when it has none). */
int fleet_tenant_cmd_read_secret(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* HSET of every field of a new tenant: the limits given, the defaults for the rest. */
int fleet_tenant_cmd_create(const fleet_keys *k, const char *name, const fleet_tenant_limits *l,
                            const char *webhook_secret, long long now_ms, fleet_tenant_cmd *c);
/* HSET of the limits given (at least one); a new rate without a burst brings its
 * default burst. */
int fleet_tenant_cmd_set_limits(const fleet_keys *k, const char *name, const fleet_tenant_limits *l,
                                fleet_tenant_cmd *c);
int fleet_tenant_cmd_set_secret(const fleet_keys *k, const char *name, const char *secret,
                                fleet_tenant_cmd *c);
/* HSET revoked / HDEL revoked. */
int fleet_tenant_cmd_revoke(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
int fleet_tenant_cmd_unrevoke(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* SMEMBERS / SADD of the set of tenant names. */
int fleet_tenant_cmd_names(const fleet_keys *k, fleet_tenant_cmd *c);
int fleet_tenant_cmd_enlist(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* SMEMBERS / SADD / DEL of the tenant's set of key hashes. */
int fleet_tenant_cmd_keys(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
int fleet_tenant_cmd_add_key(const fleet_keys *k, const char *name, const char *hash,
                             fleet_tenant_cmd *c);
int fleet_tenant_cmd_delete_keys(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* ZCARD of the tenant's active jobs (queued + running). */
int fleet_tenant_cmd_active(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* WATCH of what a change reads: the tenant hash and its key set. */
int fleet_tenant_cmd_watch(const fleet_keys *k, const char *name, fleet_tenant_cmd *c);
/* HSET of a new apikey record / HGETALL / DEL of one. */
int fleet_apikey_cmd_create(const fleet_keys *k, const char *hash, const char *name,
                            const char *role, long long now_ms, fleet_tenant_cmd *c);
int fleet_apikey_cmd_read(const fleet_keys *k, const char *hash, fleet_tenant_cmd *c);
int fleet_apikey_cmd_delete(const fleet_keys *k, const char *hash, fleet_tenant_cmd *c);

#endif
