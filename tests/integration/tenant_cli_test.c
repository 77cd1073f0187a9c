/* tenant_cli_test.c: `fleetctl tenant ...` against a real Redis (docs/cli.md "Tenants").
 *
 * fleetctl writes the tenant keys directly; the gateway of the fleet is started only so the
 * Redis and the prefix are those of a running fleet. What is checked is the layout the
 * gateway reads: {prefix}:tenants, {prefix}:tenant:<name> (hash), {prefix}:tenant:<name>:keys,
 * {prefix}:apikey:<sha256 hex of the key> (hash) — and that no key is ever stored in clear.
 * SHA-256 is computed here with OpenSSL, independently of fleetctl.
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "testlib.h"

#define ARGS TL_ARGS

/* Runs fleetctl --redis-url URL --prefix PREFIX ARGS... */
static tl_cmd_result fleetctl_at(const char *redis_url, const char *prefix,
                                 const char *const *args) {
    return tl_fleetctl(TL_ARGS("--redis-url", redis_url, "--prefix", prefix), args);
}

static tl_cmd_result fleetctl(tl_fleet *f, const char *const *args) {
    return fleetctl_at(f->redis->url, f->prefix, args);
}


/* ------------------------------------------------------------ reading the output ---- */

/* The token of characters from set that starts at the first occurrence of head in s
 * (harness-owned), or NULL. */
static const char *token_after(const char *s, const char *head, const char *set) {
    const char *p = strstr(s, head);
    if (!p) return NULL;
    size_t n = strlen(head) + strspn(p + strlen(head), set);
    return tl_printf("%.*s", (int)n, p);
}

static bool matches(const char *s, const char *ere) {
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0) FAILF("bad regex %s", ere);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

#define KEY_RE "^fk_[A-Za-z0-9_-]{43}$"
#define SECRET_RE "^whsec_[A-Za-z0-9+/]{43}=$"

/* The API key printed in out; fails the case unless there is one of the documented form. */
static const char *printed_key(const char *out) {
    const char *key =
        token_after(out, "fk_", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    if (!key || !matches(key, KEY_RE)) FAILF("no API key matching %s in:\n%s", KEY_RE, out);
    return key;
}

static const char *printed_secret(const char *out) {
    const char *s =
        token_after(out, "whsec_",
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
    if (!s || !matches(s, SECRET_RE))
        FAILF("no webhook secret matching %s in:\n%s", SECRET_RE, out);
    return s;
}

/* The whitespace-separated words of the table row whose first word is first. */
static tl_strlist row_words(const char *table, const char *first) {
    char *copy = tl_printf("%s", table), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        tl_strlist w = {0, tl_alloc(16 * sizeof(char *))};
        char *ws = NULL;
        for (char *t = strtok_r(line, " ", &ws); t && w.n < 16; t = strtok_r(NULL, " ", &ws))
            w.v[w.n++] = t;
        if (w.n > 0 && strcmp(w.v[0], first) == 0) return w;
    }
    FAILF("no row for %s in:\n%s", first, table);
}

/* ------------------------------------------------------------ reading Redis ---------- */

static const char *field_of(const redisReply *fields, const char *field) {
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, field) == 0) return fields->element[i + 1]->str;
    return NULL;
}

static const char *tenant_field(tl_fleet *f, const char *name, const char *field) {
    return field_of(tl_redis_cmd(f->rc, "HGETALL {%s}:tenant:%s", f->prefix, name), field);
}

static const char *apikey_field(tl_fleet *f, const char *hash, const char *field) {
    return field_of(tl_redis_cmd(f->rc, "HGETALL {%s}:apikey:%s", f->prefix, hash), field);
}

static bool apikey_exists(tl_fleet *f, const char *hash) {
    return tl_redis_int(f->rc, "EXISTS {%s}:apikey:%s", f->prefix, hash) == 1;
}

static bool in_key_set(tl_fleet *f, const char *name, const char *hash) {
    return tl_redis_int(f->rc, "SISMEMBER {%s}:tenant:%s:keys %s", f->prefix, name, hash) == 1;
}

/* Asserts the key is stored as the layout says: its hash names an apikey hash of the
 * tenant with the role, and is a member of the tenant's key set. */
static const char *expect_stored_key(tl_fleet *f, const char *name, const char *key,
                                     const char *role) {
    const char *h = tl_sha256_hex(key);
    ASSERT_TRUE(apikey_exists(f, h));
    ASSERT_EQ_STR(apikey_field(f, h, "tenant"), name);
    ASSERT_EQ_STR(apikey_field(f, h, "role"), role);
    ASSERT_NOT_NULL(apikey_field(f, h, "created_ms"));
    ASSERT_GT_INT(strtoll(apikey_field(f, h, "created_ms"), NULL, 10), 0);
    ASSERT_TRUE(in_key_set(f, name, h));
    return h;
}

/* True when any string in the reply (nested arrays included) contains needle. */
static bool reply_contains(const redisReply *r, const char *needle) {
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        return r->str && strstr(r->str, needle) != NULL;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            if (reply_contains(r->element[i], needle)) return true;
    return false;
}

/* Fails the case when needle occurs in any key name or value of the database. */
static void expect_nowhere_in_redis(tl_fleet *f, const char *needle) {
    tl_strlist keys = tl_redis_keys(f->rc, "*");
    ASSERT_GT_INT(keys.n, 0);
    for (size_t i = 0; i < keys.n; i++) {
        const char *k = keys.v[i];
        if (strstr(k, needle)) FAILF("key name %s contains %s", k, needle);
        const char *type = tl_redis_cmd(f->rc, "TYPE %s", k)->str;
        redisReply *v = NULL;
        if (strcmp(type, "string") == 0) v = tl_redis_cmd(f->rc, "GET %s", k);
        else if (strcmp(type, "hash") == 0) v = tl_redis_cmd(f->rc, "HGETALL %s", k);
        else if (strcmp(type, "set") == 0) v = tl_redis_cmd(f->rc, "SMEMBERS %s", k);
        else if (strcmp(type, "zset") == 0) v = tl_redis_cmd(f->rc, "ZRANGE %s 0 -1", k);
        else if (strcmp(type, "list") == 0) v = tl_redis_cmd(f->rc, "LRANGE %s 0 -1", k);
        else if (strcmp(type, "stream") == 0) v = tl_redis_cmd(f->rc, "XRANGE %s - +", k);
        else FAILF("key %s has type %s, which this scan does not read", k, type);
        if (reply_contains(v, needle)) FAILF("the value of %s (%s) contains %s", k, type, needle);
    }
}

/* ------------------------------------------------------------ cases ------------------ */

TL_TEST(add_prints_a_key_once_and_redis_keeps_only_its_hash) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 0);
    const char *key = printed_key(r.out);
    const char *secret = printed_secret(r.out);
    ASSERT_STR_CONTAINS(r.out, "not shown again");

    ASSERT_EQ_INT(tl_redis_int(f->rc, "SISMEMBER {%s}:tenants acme", f->prefix), 1);
    ASSERT_EQ_STR(tenant_field(f, "acme", "name"), "acme");
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_active"), "0");
    ASSERT_EQ_STR(tenant_field(f, "acme", "rate"), "0");
    ASSERT_EQ_STR(tenant_field(f, "acme", "burst"), "1");
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_body"), "0");
    ASSERT_EQ_STR(tenant_field(f, "acme", "webhook_secret"), secret);
    ASSERT_NOT_NULL(tenant_field(f, "acme", "created_ms"));
    ASSERT_NULL(tenant_field(f, "acme", "revoked"));
    expect_stored_key(f, "acme", key, "tenant");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 1);

    /* Never in clear: neither the whole key nor its random part, in any name or value. */
    expect_nowhere_in_redis(f, key);
    expect_nowhere_in_redis(f, key + 3);

    /* Not shown again: show and list print neither the key nor the secret. */
    tl_cmd_result s = fleetctl(f, ARGS("tenant", "show", "acme"));
    tl_expect_exit(&s, 0);
    ASSERT_FALSE(strstr(s.out, key));
    ASSERT_FALSE(strstr(s.out, secret));
    tl_cmd_result l = fleetctl(f, ARGS("tenant", "list", "--json"));
    tl_expect_exit(&l, 0);
    ASSERT_FALSE(strstr(l.out, key));
    ASSERT_FALSE(strstr(l.out, secret));
}

TL_TEST(add_json_prints_tenant_key_secret_and_role) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "beta", "--json"));
    tl_expect_exit(&r, 0);
    json_t *o = tl_json(r.out);
    ASSERT_EQ_STR(tl_jstr(o, "tenant"), "beta");
    ASSERT_EQ_STR(tl_jstr(o, "role"), "tenant");
    ASSERT_TRUE(matches(tl_jstr(o, "api_key"), KEY_RE));
    ASSERT_TRUE(matches(tl_jstr(o, "webhook_secret"), SECRET_RE));
    ASSERT_EQ_STR(tenant_field(f, "beta", "webhook_secret"), tl_jstr(o, "webhook_secret"));
    expect_stored_key(f, "beta", tl_jstr(o, "api_key"), "tenant");
    expect_nowhere_in_redis(f, tl_jstr(o, "api_key"));
}

TL_TEST(add_with_limits_and_admin_stores_them) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "ops", "--admin", "--max-active", "50",
                                       "--rate", "2.5", "--max-body", "1048576", "--json"));
    tl_expect_exit(&r, 0);
    json_t *o = tl_json(r.out);
    ASSERT_EQ_STR(tl_jstr(o, "role"), "admin");
    expect_stored_key(f, "ops", tl_jstr(o, "api_key"), "admin");
    ASSERT_EQ_STR(tenant_field(f, "ops", "max_active"), "50");
    ASSERT_EQ_STR(tenant_field(f, "ops", "rate"), "2.5");
    ASSERT_EQ_STR(tenant_field(f, "ops", "burst"), "3"); /* ceil(rate) */
    ASSERT_EQ_STR(tenant_field(f, "ops", "max_body"), "1048576");

    /* An explicit burst wins; the rate is stored normalised. */
    r = fleetctl(f, ARGS("tenant", "add", "bulk", "--rate", "010.50", "--burst", "40"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tenant_field(f, "bulk", "rate"), "10.5");
    ASSERT_EQ_STR(tenant_field(f, "bulk", "burst"), "40");
    expect_stored_key(f, "bulk", printed_key(r.out), "tenant");
}

TL_TEST(duplicate_add_exits_1) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 0);
    const char *h = tl_sha256_hex(printed_key(r.out));
    const char *secret = tenant_field(f, "acme", "webhook_secret");

    r = fleetctl(f, ARGS("tenant", "add", "acme", "--max-active", "3"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "tenant acme exists; use rotate-key for a new key");
    /* Nothing changed. */
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_active"), "0");
    ASSERT_EQ_STR(tenant_field(f, "acme", "webhook_secret"), secret);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 1);
    ASSERT_TRUE(apikey_exists(f, h));
}

TL_TEST(bad_arguments_exit_2_without_touching_redis) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    /* A Redis URL where nothing listens: had fleetctl tried to connect, it would exit 1. */
    const char *nowhere = tl_printf("redis://127.0.0.1:%d", tl_free_port());
    static const char *const bad[][8] = {
        {"tenant", "add", "Acme"},
        {"tenant", "add", "a:b"},
        {"tenant", "add", "x", "--max-active", "-1"},
        {"tenant", "add", "x", "--max-active", "10000001"},
        {"tenant", "add", "x", "--max-active", "12abc"},
        {"tenant", "add", "x", "--rate", "100000.5"},
        {"tenant", "add", "x", "--rate", "nan"},
        {"tenant", "add", "x", "--rate", "1e3"},
        {"tenant", "add", "x", "--rate", "-2"},
        {"tenant", "add", "x", "--burst", "0"},
        {"tenant", "add", "x", "--burst", "1000001"},
        {"tenant", "add", "x", "--max-body", "1073741825"},
        {"tenant", "add", "x", "--max-body", "1k"},
        {"tenant", "add"},
        {"tenant", "add", "x", "--keep-old"},
        {"tenant", "set", "x"},
        {"tenant", "set", "x", "--rate", "fast"},
        {"tenant", "list", "--admin"},
        {"tenant", "list", "extra"},
        {"tenant", "show", "x", "--max-active", "1"},
        {"tenant", "rotate-key", "BAD"},
        {"tenant", "rotate-secret"},
        {"tenant", "revoke", "x", "--show-secret"},
        {"tenant", "frobnicate", "x"},
        {"tenant"},
    };
    for (size_t i = 0; i < TL_COUNT(bad); i++) {
        tl_cmd_result r = fleetctl(f, bad[i]);
        tl_expect_exit(&r, 2);
        ASSERT_STR_CONTAINS(r.err, "fleetctl: ");
        r = fleetctl_at(nowhere, f->prefix, bad[i]);
        tl_expect_exit(&r, 2);
    }
    /* The messages say what is wrong. */
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "x", "--max-active", "10000001"));
    ASSERT_STR_CONTAINS(r.err, "--max-active");
    ASSERT_STR_CONTAINS(r.err, "out of range");
    r = fleetctl(f, ARGS("tenant", "add", "x", "--rate", "1e3"));
    ASSERT_STR_CONTAINS(r.err, "not a decimal number");
    r = fleetctl(f, ARGS("tenant", "add", "Acme"));
    ASSERT_STR_CONTAINS(r.err, "not a tenant name");

    /* Nothing of a tenant was written (the gateway writes its own keys meanwhile). */
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:tenant*", f->prefix)).n, 0);
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:apikey:*", f->prefix)).n, 0);
}

TL_TEST(list_and_show_report_settings_and_counts) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme", "--max-active", "100", "--rate",
                                       "5", "--max-body", "2048"));
    tl_expect_exit(&r, 0);
    const char *secret = printed_secret(r.out);
    r = fleetctl(f, ARGS("tenant", "add", "root", "--admin"));
    tl_expect_exit(&r, 0);
    /* Two of acme's jobs are active (the gateway's set of queued + running ids). */
    tl_redis_cmd(f->rc,
                 "ZADD {%s}:active:acme 1 01ARZ3NDEKTSV4RRFFQ69G5FAV 2 "
                 "01ARZ3NDEKTSV4RRFFQ69G5FAW",
                 f->prefix);

    r = fleetctl(f, ARGS("tenant", "list"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "NAME");
    ASSERT_STR_CONTAINS(r.out, "ROLE(S)");
    ASSERT_STR_CONTAINS(r.out, "MAX ACTIVE");
    ASSERT_STR_CONTAINS(r.out, "RATE/s");
    ASSERT_STR_CONTAINS(r.out, "MAX BODY");
    ASSERT_STR_CONTAINS(r.out, "STATUS");
    /* NAME ROLE(S) MAX-ACTIVE RATE/s MAX-BODY ACTIVE KEYS STATUS */
    tl_strlist a = row_words(r.out, "acme");
    ASSERT_EQ_INT(a.n, 8);
    ASSERT_EQ_STR(a.v[1], "tenant");
    ASSERT_EQ_STR(a.v[2], "100");
    ASSERT_EQ_STR(a.v[3], "5");
    ASSERT_EQ_STR(a.v[4], "2048");
    ASSERT_EQ_STR(a.v[5], "2");
    ASSERT_EQ_STR(a.v[6], "1");
    ASSERT_EQ_STR(a.v[7], "active");
    tl_strlist b = row_words(r.out, "root");
    ASSERT_EQ_STR(b.v[1], "admin");
    ASSERT_EQ_STR(b.v[2], "unlimited");
    ASSERT_EQ_STR(b.v[3], "unlimited");
    ASSERT_EQ_STR(b.v[4], "default");
    ASSERT_EQ_STR(b.v[5], "-"); /* no max_active: its jobs are not counted */

    r = fleetctl(f, ARGS("tenant", "list", "--json"));
    tl_expect_exit(&r, 0);
    json_t *arr = tl_json(r.out);
    ASSERT_TRUE(json_is_array(arr));
    json_t *acme = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) if (strcmp(tl_jstr(t, "tenant"), "acme") == 0) acme = t;
    ASSERT_NOT_NULL(acme);
    ASSERT_EQ_INT(tl_jint(acme, "max_active"), 100);
    ASSERT_EQ_INT(tl_jint(acme, "rate"), 5);
    ASSERT_EQ_INT(tl_jint(acme, "burst"), 5);
    ASSERT_EQ_INT(tl_jint(acme, "max_body"), 2048);
    ASSERT_EQ_INT(tl_jint(acme, "active"), 2);
    ASSERT_EQ_INT(tl_jint(acme, "keys"), 1);
    ASSERT_EQ_STR(tl_jstr(acme, "status"), "active");
    ASSERT_NULL(tl_jget(acme, "webhook_secret"));
    json_t *root = NULL;
    json_array_foreach(arr, i, t) if (strcmp(tl_jstr(t, "tenant"), "root") == 0) root = t;
    ASSERT_NOT_NULL(root);
    ASSERT_TRUE(json_is_null(tl_jget(root, "active")));

    r = fleetctl(f, ARGS("tenant", "show", "acme"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "acme");
    ASSERT_STR_CONTAINS(r.out, "100 jobs");
    ASSERT_STR_CONTAINS(r.out, "5 submits/s, burst 5");
    ASSERT_STR_CONTAINS(r.out, "2048 bytes");
    ASSERT_STR_CONTAINS(r.out, "active jobs:     2");
    ASSERT_FALSE(strstr(r.out, secret));
    ASSERT_FALSE(strstr(r.out, "whsec_"));

    r = fleetctl(f, ARGS("tenant", "show", "acme", "--show-secret"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, secret);

    r = fleetctl(f, ARGS("tenant", "show", "root", "--json"));
    tl_expect_exit(&r, 0);
    json_t *o = tl_json(r.out);
    ASSERT_EQ_STR(tl_jstr(o, "tenant"), "root");
    ASSERT_EQ_JSON(tl_jget(o, "roles"), tl_json("[\"admin\"]"));
    ASSERT_EQ_INT(tl_jint(o, "max_active"), 0);
    ASSERT_EQ_INT(tl_jint(o, "keys"), 1);
    ASSERT_NULL(tl_jget(o, "webhook_secret"));

    r = fleetctl(f, ARGS("tenant", "show", "nobody"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "no tenant nobody");
}

TL_TEST(list_of_no_tenants_says_so) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:tenants", f->prefix), 0);
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "list"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "no tenants");
    r = fleetctl(f, ARGS("tenant", "list", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_JSON(tl_json(r.out), tl_json("[]"));
}

TL_TEST(set_changes_limits) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme", "--rate", "2", "--burst", "9"));
    tl_expect_exit(&r, 0);
    const char *secret = tenant_field(f, "acme", "webhook_secret");

    r = fleetctl(f, ARGS("tenant", "set", "acme", "--max-active", "10"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_active"), "10");
    ASSERT_EQ_STR(tenant_field(f, "acme", "rate"), "2"); /* untouched */
    ASSERT_EQ_STR(tenant_field(f, "acme", "burst"), "9");

    /* A new rate without --burst brings the burst that goes with it. */
    r = fleetctl(f, ARGS("tenant", "set", "acme", "--rate", "7.2"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tenant_field(f, "acme", "rate"), "7.2");
    ASSERT_EQ_STR(tenant_field(f, "acme", "burst"), "8");

    r = fleetctl(f, ARGS("tenant", "set", "acme", "--burst", "100", "--max-body", "0", "--json"));
    tl_expect_exit(&r, 0);
    json_t *o = tl_json(r.out);
    ASSERT_EQ_INT(tl_jint(o, "burst"), 100);
    ASSERT_EQ_INT(tl_jint(o, "max_active"), 10);
    ASSERT_EQ_STR(tenant_field(f, "acme", "burst"), "100");
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_body"), "0");
    ASSERT_EQ_STR(tenant_field(f, "acme", "webhook_secret"), secret);

    r = fleetctl(f, ARGS("tenant", "set", "nobody", "--rate", "1"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "no tenant nobody");
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:tenant:nobody", f->prefix), 0);
}

TL_TEST(rotate_key_replaces_the_hash_or_keeps_the_old_one) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 0);
    const char *k1 = printed_key(r.out);
    const char *h1 = expect_stored_key(f, "acme", k1, "tenant");

    r = fleetctl(f, ARGS("tenant", "rotate-key", "acme"));
    tl_expect_exit(&r, 0);
    const char *k2 = printed_key(r.out);
    ASSERT_NE_STR(k2, k1);
    const char *h2 = expect_stored_key(f, "acme", k2, "tenant");
    ASSERT_FALSE(apikey_exists(f, h1));
    ASSERT_FALSE(in_key_set(f, "acme", h1));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 1);

    r = fleetctl(f, ARGS("tenant", "rotate-key", "acme", "--keep-old", "--json"));
    tl_expect_exit(&r, 0);
    json_t *o = tl_json(r.out);
    ASSERT_EQ_STR(tl_jstr(o, "tenant"), "acme");
    ASSERT_EQ_STR(tl_jstr(o, "role"), "tenant");
    const char *k3 = tl_jstr(o, "api_key");
    ASSERT_TRUE(matches(k3, KEY_RE));
    expect_stored_key(f, "acme", k3, "tenant");
    expect_stored_key(f, "acme", k2, "tenant"); /* still there */
    ASSERT_TRUE(apikey_exists(f, h2));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 2);
    expect_nowhere_in_redis(f, k2);
    expect_nowhere_in_redis(f, k3);

    /* An admin tenant's new key is admin too. */
    r = fleetctl(f, ARGS("tenant", "add", "root", "--admin"));
    tl_expect_exit(&r, 0);
    r = fleetctl(f, ARGS("tenant", "rotate-key", "root"));
    tl_expect_exit(&r, 0);
    expect_stored_key(f, "root", printed_key(r.out), "admin");

    r = fleetctl(f, ARGS("tenant", "rotate-key", "nobody"));
    tl_expect_exit(&r, 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:tenant:nobody:keys", f->prefix), 0);
}

TL_TEST(rotate_secret_stores_a_new_secret) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 0);
    const char *s1 = printed_secret(r.out);
    const char *h = tl_sha256_hex(printed_key(r.out));
    r = fleetctl(f, ARGS("tenant", "rotate-secret", "acme"));
    tl_expect_exit(&r, 0);
    const char *s2 = printed_secret(r.out);
    ASSERT_NE_STR(s2, s1);
    ASSERT_EQ_STR(tenant_field(f, "acme", "webhook_secret"), s2);
    ASSERT_TRUE(apikey_exists(f, h)); /* the key is untouched */
    r = fleetctl(f, ARGS("tenant", "rotate-secret", "acme", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tenant_field(f, "acme", "webhook_secret"),
                  tl_jstr(tl_json(r.out), "webhook_secret"));
}

TL_TEST(revoke_deletes_every_key_and_rotate_key_enables_again) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme", "--max-active", "4"));
    tl_expect_exit(&r, 0);
    const char *h1 = tl_sha256_hex(printed_key(r.out));
    r = fleetctl(f, ARGS("tenant", "rotate-key", "acme", "--keep-old"));
    tl_expect_exit(&r, 0);
    const char *h2 = tl_sha256_hex(printed_key(r.out));
    ASSERT_TRUE(apikey_exists(f, h1));
    ASSERT_TRUE(apikey_exists(f, h2));
    tl_redis_cmd(f->rc, "ZADD {%s}:active:acme 1 01ARZ3NDEKTSV4RRFFQ69G5FAV", f->prefix);

    r = fleetctl(f, ARGS("tenant", "revoke", "acme"));
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "2 api keys deleted");
    ASSERT_FALSE(apikey_exists(f, h1));
    ASSERT_FALSE(apikey_exists(f, h2));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:tenant:acme:keys", f->prefix), 0);
    ASSERT_EQ_STR(tenant_field(f, "acme", "revoked"), "1");
    ASSERT_EQ_STR(tenant_field(f, "acme", "max_active"), "4"); /* settings stay */
    /* Its jobs stay. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:active:acme", f->prefix), 1);
    tl_strlist apikeys = tl_redis_keys(f->rc, tl_printf("{%s}:apikey:*", f->prefix));
    ASSERT_EQ_INT(apikeys.n, 0);

    r = fleetctl(f, ARGS("tenant", "list"));
    tl_expect_exit(&r, 0);
    tl_strlist w = row_words(r.out, "acme");
    ASSERT_EQ_STR(w.v[6], "0");
    ASSERT_EQ_STR(w.v[7], "revoked");
    r = fleetctl(f, ARGS("tenant", "show", "acme", "--json"));
    tl_expect_exit(&r, 0);
    ASSERT_EQ_STR(tl_jstr(tl_json(r.out), "status"), "revoked");

    /* Adding the name again is refused while it exists... */
    r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 1);
    ASSERT_STR_CONTAINS(r.err, "exists");
    /* ... and rotate-key enables it again. */
    r = fleetctl(f, ARGS("tenant", "rotate-key", "acme"));
    tl_expect_exit(&r, 0);
    expect_stored_key(f, "acme", printed_key(r.out), "tenant");
    ASSERT_NULL(tenant_field(f, "acme", "revoked"));
    ASSERT_EQ_INT(tl_redis_int(f->rc, "SCARD {%s}:tenant:acme:keys", f->prefix), 1);

    r = fleetctl(f, ARGS("tenant", "revoke", "nobody"));
    tl_expect_exit(&r, 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:tenant:nobody", f->prefix), 0);
}

/* The gateway accepts a key fleetctl made, and refuses it once the tenant is revoked. */
TL_TEST(gateway_accepts_a_new_key_and_refuses_it_after_revoke) {
    tl_fleet *f =
        tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_AUTH=on", "FLEET_AUTH_CACHE_MS=0"}});
    tl_resp *anon = tl_get(f, "/v1/jobs");
    ASSERT_HTTP_STATUS(anon, 401);

    tl_cmd_result r = fleetctl(f, ARGS("tenant", "add", "acme"));
    tl_expect_exit(&r, 0);
    const char *auth = tl_printf("Authorization: Bearer %s", printed_key(r.out));
    tl_resp *ok = tl_request(f, "/v1/jobs", (tl_req){.headers = {auth}});
    ASSERT_HTTP_STATUS(ok, 200);

    r = fleetctl(f, ARGS("tenant", "revoke", "acme"));
    tl_expect_exit(&r, 0);
    tl_resp *gone = tl_request(f, "/v1/jobs", (tl_req){.headers = {auth}});
    ASSERT_HTTP_STATUS(gone, 401);
}

TL_TEST(help_lists_the_tenant_commands) {
    const char *argv[] = {tl_bin_path("fleetctl"), "--help", NULL};
    tl_cmd_result r = tl_run_cmd("fleetctl-help", argv[0], argv, NULL, TL_WAIT_MS);
    tl_expect_exit(&r, 0);
    static const char *const subs[] = {"tenant add",   "tenant list",       "tenant show",
                                       "tenant set",   "tenant rotate-key", "tenant rotate-secret",
                                       "tenant revoke"};
    for (size_t i = 0; i < TL_COUNT(subs); i++) ASSERT_STR_CONTAINS(r.out, subs[i]);
    const char *targv[] = {tl_bin_path("fleetctl"), "tenant", "--help", NULL};
    r = tl_run_cmd("fleetctl-tenant-help", targv[0], targv, NULL, TL_WAIT_MS);
    tl_expect_exit(&r, 0);
    ASSERT_STR_CONTAINS(r.out, "--max-active");
    ASSERT_STR_CONTAINS(r.out, "--keep-old");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(add_prints_a_key_once_and_redis_keeps_only_its_hash),
        TL_CASE(add_json_prints_tenant_key_secret_and_role),
        TL_CASE(add_with_limits_and_admin_stores_them),
        TL_CASE(duplicate_add_exits_1),
        TL_CASE(bad_arguments_exit_2_without_touching_redis),
        TL_CASE(list_and_show_report_settings_and_counts),
        TL_CASE(list_of_no_tenants_says_so),
        TL_CASE(set_changes_limits),
        TL_CASE(rotate_key_replaces_the_hash_or_keeps_the_old_one),
        TL_CASE(rotate_secret_stores_a_new_secret),
        TL_CASE(revoke_deletes_every_key_and_rotate_key_enables_again),
        TL_CASE(gateway_accepts_a_new_key_and_refuses_it_after_revoke),
        TL_CASE(help_lists_the_tenant_commands),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
