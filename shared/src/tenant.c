/* tenant.c: the tenant and API-key record: its fields, limits, keys and commands
 * (tenant.h). */
#include "fleet/tenant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "fleet/err.h"

#define SECRET_BYTES 32 /* random bytes in an API key and in a webhook secret */

const char *const fleet_tenant_fields[] = {
    FLEET_TENANT_F_NAME,
    FLEET_TENANT_F_MAX_ACTIVE,
    FLEET_TENANT_F_RATE,
    FLEET_TENANT_F_BURST,
    FLEET_TENANT_F_MAX_BODY,
    FLEET_TENANT_F_WEBHOOK_SECRET,
    FLEET_TENANT_F_CREATED_MS,
    FLEET_TENANT_F_REVOKED,
    FLEET_TENANT_F_MAX_FINISHED,
    FLEET_TENANT_F_MAX_BYTES,
    NULL,
};
const char *const fleet_apikey_fields[] = {
    FLEET_APIKEY_F_TENANT,
    FLEET_APIKEY_F_ROLE,
    FLEET_APIKEY_F_CREATED_MS,
    NULL,
};

/* ------------------------------------------------------------------ limits ------------ */

/* A whole number of decimal digits within min..max. */
static int parse_count(const char *text, long long min, long long max, const char *hint,
                       long long *out, char *err, size_t errlen) {
    size_t n = strlen(text);
    if (n == 0 || strspn(text, "0123456789") != n) {
        fleet_err(err, errlen, "'%.40s' is not a whole number (%s)", text, hint);
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno || n > 19 || v < (unsigned long long)min || v > (unsigned long long)max) {
        fleet_err(err, errlen, "%.40s is out of range (%s)", text, hint);
        return -1;
    }
    *out = (long long)v;
    return 0;
}

static int parse_rate(const char *text, char out[FLEET_TENANT_RATE_TEXT_MAX + 2], double *v,
                      char *err, size_t errlen) {
    static const char digits[] = "0123456789";
    static const char hint[] = "submits per second, 0..100000, like 5 or 0.5; 0 = unlimited";
    size_t n = strlen(text), ni = strspn(text, digits), nf = 0;
    const char *frac = text + ni;
    if (*frac == '.') nf = strspn(++frac, digits);
    if (ni + nf == 0 || frac + nf != text + n || n > FLEET_TENANT_RATE_TEXT_MAX) {
        fleet_err(err, errlen, "'%.40s' is not a decimal number (%s)", text, hint);
        return -1;
    }
    const char *ip = text;
    while (ni > 0 && *ip == '0') ip++, ni--;
    while (nf > 0 && frac[nf - 1] == '0') nf--;
    snprintf(out, FLEET_TENANT_RATE_TEXT_MAX + 2, "%s%.*s%s%.*s", ni ? "" : "0", (int)ni, ip,
             nf ? "." : "", (int)nf, frac);
    *v = strtod(out, NULL);
    if (*v > FLEET_TENANT_RATE_MAX) {
        fleet_err(err, errlen, "%.40s is out of range (%s)", text, hint);
        return -1;
    }
    return 0;
}

int fleet_tenant_limit_parse(fleet_tenant_limits *l, const char *field, const char *text, char *err,
                             size_t errlen) {
    if (!field || !text) {
        fleet_err(err, errlen, "no value");
        return -1;
    }
    if (strcmp(field, FLEET_TENANT_F_MAX_ACTIVE) == 0) {
        if (parse_count(text, 0, FLEET_TENANT_MAX_ACTIVE_MAX,
                        "queued + running jobs, 0..10000000; 0 = unlimited", &l->max_active, err,
                        errlen) < 0)
            return -1;
        l->has_max_active = true;
    } else if (strcmp(field, FLEET_TENANT_F_RATE) == 0) {
        if (parse_rate(text, l->rate, &l->rate_v, err, errlen) < 0) return -1;
        l->has_rate = true;
    } else if (strcmp(field, FLEET_TENANT_F_BURST) == 0) {
        if (parse_count(text, 1, FLEET_TENANT_BURST_MAX, "submits, 1..1000000", &l->burst, err,
                        errlen) < 0)
            return -1;
        l->has_burst = true;
    } else if (strcmp(field, FLEET_TENANT_F_MAX_BODY) == 0) {
        if (parse_count(text, 0, FLEET_TENANT_MAX_BODY_MAX,
                        "bytes, 0..1073741824 (1 GiB); 0 = the gateway's FLEET_MAX_BODY",
                        &l->max_body, err, errlen) < 0)
            return -1;
        l->has_max_body = true;
    } else if (strcmp(field, FLEET_TENANT_F_MAX_FINISHED) == 0) {
        if (parse_count(text, 0, FLEET_TENANT_MAX_FINISHED_MAX,
                        "finished jobs kept, 0..100000000; 0 = unlimited", &l->max_finished, err,
                        errlen) < 0)
            return -1;
        l->has_max_finished = true;
    } else if (strcmp(field, FLEET_TENANT_F_MAX_BYTES) == 0) {
        if (parse_count(text, 0, FLEET_TENANT_MAX_BYTES_MAX,
                        "bytes of finished jobs kept, 0..1125899906842624 (1 PiB); 0 = unlimited",
                        &l->max_bytes, err, errlen) < 0)
            return -1;
        l->has_max_bytes = true;
    } else {
        fleet_err(err, errlen, "'%.40s' is not a tenant limit", field);
        return -1;
    }
    return 0;
}

long long fleet_tenant_default_burst(double rate) {
    /* Compared before the cast: a rate written into Redis by hand may be any double. */
    if (!(rate > 1)) return 1;
    if (rate >= (double)FLEET_TENANT_BURST_MAX) return FLEET_TENANT_BURST_MAX;
    long long b = (long long)rate;
    return (double)b < rate ? b + 1 : b;
}

/* ------------------------------------------------------------------ reading ----------- */

void fleet_tenant_read(fleet_tenant *t, const redisReply *fields) {
    *t = (fleet_tenant){.rate_text = "0"};
    bool burst_set = false;
    for (size_t i = 0; fields && fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements;
         i += 2) {
        const redisReply *kr = fields->element[i], *vr = fields->element[i + 1];
        if (kr->type != REDIS_REPLY_STRING || vr->type != REDIS_REPLY_STRING) continue;
        const char *k = kr->str, *v = vr->str;
        if (strcmp(k, FLEET_TENANT_F_MAX_ACTIVE) == 0) {
            t->max_active = strtoll(v, NULL, 10);
        } else if (strcmp(k, FLEET_TENANT_F_RATE) == 0) {
            t->rate = strtod(v, NULL);
            snprintf(t->rate_text, sizeof t->rate_text, "%s", v);
        } else if (strcmp(k, FLEET_TENANT_F_BURST) == 0) {
            t->burst = strtoll(v, NULL, 10);
            burst_set = true;
        } else if (strcmp(k, FLEET_TENANT_F_MAX_BODY) == 0) {
            t->max_body = strtoll(v, NULL, 10);
        } else if (strcmp(k, FLEET_TENANT_F_MAX_FINISHED) == 0) {
            t->max_finished = strtoll(v, NULL, 10);
        } else if (strcmp(k, FLEET_TENANT_F_MAX_BYTES) == 0) {
            t->max_bytes = strtoll(v, NULL, 10);
        } else if (strcmp(k, FLEET_TENANT_F_WEBHOOK_SECRET) == 0) {
            snprintf(t->webhook_secret, sizeof t->webhook_secret, "%s", v);
        } else if (strcmp(k, FLEET_TENANT_F_CREATED_MS) == 0) {
            t->created_ms = strtoll(v, NULL, 10);
        } else if (strcmp(k, FLEET_TENANT_F_REVOKED) == 0) {
            t->revoked = strcmp(v, FLEET_TENANT_REVOKED) == 0;
        }
    }
    /* NaN compares false to everything: !(rate > 0) also catches it. */
    if (!(t->rate > 0)) t->rate = 0;
    if (t->max_active < 0) t->max_active = 0;
    if (t->max_body < 0) t->max_body = 0;
    if (t->max_finished < 0) t->max_finished = 0;
    if (t->max_bytes < 0) t->max_bytes = 0;
    if (t->created_ms < 0) t->created_ms = 0;
    if (!burst_set) t->burst = fleet_tenant_default_burst(t->rate);
    if (t->burst < 1) t->burst = 1;
}

/* ------------------------------------------------------------------ keys and secrets --- */

/* base64 of 32 random bytes into b64 (44 characters, the last one '='). */
static int random_b64(unsigned char b64[48]) {
    unsigned char rnd[SECRET_BYTES];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return -1;
    EVP_EncodeBlock(b64, rnd, sizeof rnd);
    OPENSSL_cleanse(rnd, sizeof rnd);
    return 0;
}

int fleet_apikey_new(char out[FLEET_APIKEY_SIZE]) {
    unsigned char b64[48];
    out[0] = '\0';
    if (random_b64(b64) < 0) return -1;
    for (int i = 0; i < FLEET_APIKEY_B64; i++) /* base64url: no '+', '/' nor padding */
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    snprintf(out, FLEET_APIKEY_SIZE, "%s%.*s", FLEET_APIKEY_PREFIX, FLEET_APIKEY_B64, (char *)b64);
    OPENSSL_cleanse(b64, sizeof b64);
    return 0;
}

int fleet_webhook_secret_new(char out[FLEET_WHSEC_SIZE]) {
    unsigned char b64[48];
    out[0] = '\0';
    if (random_b64(b64) < 0) return -1;
    snprintf(out, FLEET_WHSEC_SIZE, "%s%.44s", FLEET_WHSEC_PREFIX, (char *)b64);
    OPENSSL_cleanse(b64, sizeof b64);
    return 0;
}

void fleet_apikey_hash(const char *key, size_t len, char out[FLEET_APIKEY_HASH_HEX + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, len, d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[FLEET_APIKEY_HASH_HEX] = '\0';
}

bool fleet_apikey_hash_valid(const char *s) {
    return s && strlen(s) == FLEET_APIKEY_HASH_HEX &&
           strspn(s, "0123456789abcdef") == FLEET_APIKEY_HASH_HEX;
}

/* ------------------------------------------------------------------ commands ---------- */

static void cmd_start(fleet_tenant_cmd *c) {
    c->argc = 0;
    c->used = 0;
}

/* Appends one argument (copied into buf). -1 when it does not fit. */
static int push(fleet_tenant_cmd *c, const char *s) {
    size_t n = strlen(s);
    if (c->argc < 0 || c->argc >= FLEET_TENANT_CMD_ARGS || c->used + n + 1 > sizeof c->buf) {
        c->argc = -1;
        return -1;
    }
    memcpy(c->buf + c->used, s, n + 1);
    c->argv[c->argc] = c->buf + c->used;
    c->len[c->argc++] = n;
    c->used += n + 1;
    return 0;
}

static int push_ll(fleet_tenant_cmd *c, long long v) {
    char s[24];
    snprintf(s, sizeof s, "%lld", v);
    return push(c, s);
}

/* The end of a builder: 0, or -1 with an empty command when anything did not fit. */
static int cmd_end(fleet_tenant_cmd *c) {
    if (c->argc > 0) return 0;
    c->argc = 0;
    return -1;
}

static int cmd2(fleet_tenant_cmd *c, const char *verb, fleet_key key) {
    cmd_start(c);
    push(c, verb);
    push(c, key.s);
    return cmd_end(c);
}

static int cmd3(fleet_tenant_cmd *c, const char *verb, fleet_key key, const char *a) {
    cmd_start(c);
    push(c, verb);
    push(c, key.s);
    push(c, a);
    return cmd_end(c);
}

/* HSET of one field. */
static int cmd_hset1(fleet_tenant_cmd *c, fleet_key key, const char *field, const char *value) {
    cmd_start(c);
    push(c, "HSET");
    push(c, key.s);
    push(c, field);
    push(c, value);
    return cmd_end(c);
}

int fleet_tenant_cmd_read(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd2(c, "HGETALL", fleet_key_tenant(k, name));
}

int fleet_tenant_cmd_read_secret(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd3(c, "HGET", fleet_key_tenant(k, name), FLEET_TENANT_F_WEBHOOK_SECRET);
}

int fleet_tenant_cmd_create(const fleet_keys *k, const char *name, const fleet_tenant_limits *l,
                            const char *webhook_secret, long long now_ms, fleet_tenant_cmd *c) {
    cmd_start(c);
    push(c, "HSET");
    push(c, fleet_key_tenant(k, name).s);
    push(c, FLEET_TENANT_F_NAME), push(c, name);
    push(c, FLEET_TENANT_F_MAX_ACTIVE), push_ll(c, l->has_max_active ? l->max_active : 0);
    push(c, FLEET_TENANT_F_RATE), push(c, l->has_rate ? l->rate : "0");
    push(c, FLEET_TENANT_F_BURST);
    push_ll(c, l->has_burst ? l->burst : fleet_tenant_default_burst(l->has_rate ? l->rate_v : 0));
    push(c, FLEET_TENANT_F_MAX_BODY), push_ll(c, l->has_max_body ? l->max_body : 0);
    push(c, FLEET_TENANT_F_WEBHOOK_SECRET), push(c, webhook_secret);
    push(c, FLEET_TENANT_F_CREATED_MS), push_ll(c, now_ms);
    /* The storage limits only when given: a record without them reads as unlimited. */
    if (l->has_max_finished) push(c, FLEET_TENANT_F_MAX_FINISHED), push_ll(c, l->max_finished);
    if (l->has_max_bytes) push(c, FLEET_TENANT_F_MAX_BYTES), push_ll(c, l->max_bytes);
    return cmd_end(c);
}

int fleet_tenant_cmd_set_limits(const fleet_keys *k, const char *name, const fleet_tenant_limits *l,
                                fleet_tenant_cmd *c) {
    cmd_start(c);
    push(c, "HSET");
    push(c, fleet_key_tenant(k, name).s);
    if (l->has_max_active) push(c, FLEET_TENANT_F_MAX_ACTIVE), push_ll(c, l->max_active);
    if (l->has_rate) push(c, FLEET_TENANT_F_RATE), push(c, l->rate);
    if (l->has_burst || l->has_rate)
        push(c, FLEET_TENANT_F_BURST),
            push_ll(c, l->has_burst ? l->burst : fleet_tenant_default_burst(l->rate_v));
    if (l->has_max_body) push(c, FLEET_TENANT_F_MAX_BODY), push_ll(c, l->max_body);
    if (l->has_max_finished) push(c, FLEET_TENANT_F_MAX_FINISHED), push_ll(c, l->max_finished);
    if (l->has_max_bytes) push(c, FLEET_TENANT_F_MAX_BYTES), push_ll(c, l->max_bytes);
    if (c->argc == 2) c->argc = -1; /* HSET needs a field */
    return cmd_end(c);
}

int fleet_tenant_cmd_set_secret(const fleet_keys *k, const char *name, const char *secret,
                                fleet_tenant_cmd *c) {
    return cmd_hset1(c, fleet_key_tenant(k, name), FLEET_TENANT_F_WEBHOOK_SECRET, secret);
}

int fleet_tenant_cmd_revoke(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd_hset1(c, fleet_key_tenant(k, name), FLEET_TENANT_F_REVOKED, FLEET_TENANT_REVOKED);
}

int fleet_tenant_cmd_unrevoke(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd3(c, "HDEL", fleet_key_tenant(k, name), FLEET_TENANT_F_REVOKED);
}

int fleet_tenant_cmd_names(const fleet_keys *k, fleet_tenant_cmd *c) {
    return cmd2(c, "SMEMBERS", fleet_key_tenants(k));
}

int fleet_tenant_cmd_enlist(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd3(c, "SADD", fleet_key_tenants(k), name);
}

int fleet_tenant_cmd_keys(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd2(c, "SMEMBERS", fleet_key_tenant_keys(k, name));
}

int fleet_tenant_cmd_add_key(const fleet_keys *k, const char *name, const char *hash,
                             fleet_tenant_cmd *c) {
    return cmd3(c, "SADD", fleet_key_tenant_keys(k, name), hash);
}

int fleet_tenant_cmd_delete_keys(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd2(c, "DEL", fleet_key_tenant_keys(k, name));
}

int fleet_tenant_cmd_active(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd2(c, "ZCARD", fleet_key_tenant_active(k, name));
}

int fleet_tenant_cmd_watch(const fleet_keys *k, const char *name, fleet_tenant_cmd *c) {
    return cmd3(c, "WATCH", fleet_key_tenant(k, name), fleet_key_tenant_keys(k, name).s);
}

int fleet_apikey_cmd_create(const fleet_keys *k, const char *hash, const char *name,
                            const char *role, long long now_ms, fleet_tenant_cmd *c) {
    cmd_start(c);
    push(c, "HSET");
    push(c, fleet_key_apikey(k, hash).s);
    push(c, FLEET_APIKEY_F_TENANT), push(c, name);
    push(c, FLEET_APIKEY_F_ROLE), push(c, role);
    push(c, FLEET_APIKEY_F_CREATED_MS), push_ll(c, now_ms);
    return cmd_end(c);
}

int fleet_apikey_cmd_read(const fleet_keys *k, const char *hash, fleet_tenant_cmd *c) {
    return cmd2(c, "HGETALL", fleet_key_apikey(k, hash));
}

int fleet_apikey_cmd_delete(const fleet_keys *k, const char *hash, fleet_tenant_cmd *c) {
    return cmd2(c, "DEL", fleet_key_apikey(k, hash));
}
