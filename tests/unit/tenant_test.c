/* tenant_test: the tenant and API-key record (shared/src/tenant.c), without Redis: key
 * hashing known answers, new keys and secrets, limit parsing and validation, reading a
 * record, the commands built, and auth.lua's field names against tenant.h's. */
#include <ctype.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fleet/state.h"
#include "fleet/tenant.h"
#include "testlib.h"

static fleet_keys K;

static void keys_init(void) { ASSERT_EQ_INT(fleet_keys_init(&K, "fleet"), 0); }

/* The command's arguments joined by spaces (none of the test values holds one). */
static const char *joined(const fleet_tenant_cmd *c) {
    static char out[2048];
    out[0] = '\0';
    for (int i = 0; i < c->argc; i++) {
        ASSERT_EQ_INT(strlen(c->argv[i]), c->len[i]);
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%s", i ? " " : "", c->argv[i]);
    }
    return out;
}

TL_TEST(key_hash_known_answers) {
    char h[FLEET_APIKEY_HASH_HEX + 1];
    fleet_apikey_hash("abc", 3, h);
    ASSERT_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    fleet_apikey_hash("", 0, h);
    ASSERT_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* printf 'fk_' + 43 'A' | sha256sum */
    const char *key = "fk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    fleet_apikey_hash(key, strlen(key), h);
    ASSERT_EQ_STR(h, "cb200e40c61ca860796634c9ea6bf2663d769a7e964799a3c3b91a4999cae12a");
    ASSERT_TRUE(fleet_apikey_hash_valid(h));
    ASSERT_FALSE(fleet_apikey_hash_valid(
        "CB200E40C61CA860796634C9EA6BF2663D769A7E964799A3C3B91A4999CAE12A"));
    ASSERT_FALSE(fleet_apikey_hash_valid("cb200e40"));
    ASSERT_FALSE(fleet_apikey_hash_valid(""));
    ASSERT_FALSE(fleet_apikey_hash_valid(NULL));
}

TL_TEST(new_keys_and_secrets_have_their_shape) {
    char a[FLEET_APIKEY_SIZE], b[FLEET_APIKEY_SIZE], s[FLEET_WHSEC_SIZE];
    ASSERT_EQ_INT(fleet_apikey_new(a), 0);
    ASSERT_EQ_INT(fleet_apikey_new(b), 0);
    ASSERT_NE_STR(a, b);
    ASSERT_EQ_INT(strlen(a), 3 + 43);
    ASSERT_EQ_INT(strncmp(a, "fk_", 3), 0);
    const char *url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ASSERT_EQ_INT(strspn(a + 3, url), 43);
    ASSERT_EQ_INT(fleet_webhook_secret_new(s), 0);
    ASSERT_EQ_INT(strlen(s), 6 + 44);
    ASSERT_EQ_INT(strncmp(s, "whsec_", 6), 0);
    const char *std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    ASSERT_EQ_INT(strspn(s + 6, std), 43);
    ASSERT_EQ_INT(s[6 + 43], '='); /* 32 bytes: one padding character */
}

TL_TEST(limits_parse_and_validate) {
    fleet_tenant_limits l = {0};
    char err[256];
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, "10000000", err,
                                           sizeof err),
                  0);
    ASSERT_TRUE(l.has_max_active);
    ASSERT_EQ_INT(l.max_active, 10000000);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, "10000001", err,
                                           sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "out of range");
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, "-1", err, sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "'-1' is not a whole number");
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, "", err, sizeof err), -1);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, " 5", err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_ACTIVE, "99999999999999999999",
                                           err, sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "out of range");
    ASSERT_EQ_INT(l.max_active, 10000000); /* a refused value changes nothing */

    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_BURST, "0", err, sizeof err), -1);
    ASSERT_FALSE(l.has_burst);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_BURST, "1000000", err, sizeof err),
                  0);
    ASSERT_EQ_INT(l.burst, 1000000);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_BODY, "1073741824", err,
                                           sizeof err),
                  0);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_BODY, "1073741825", err,
                                           sizeof err),
                  -1);
    /* The storage limits: 0 (unlimited) up to their maxima. */
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_FINISHED, "100000000", err,
                                           sizeof err),
                  0);
    ASSERT_TRUE(l.has_max_finished);
    ASSERT_EQ_INT(l.max_finished, 100000000);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_FINISHED, "100000001", err,
                                           sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_FINISHED, "-1", err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_BYTES, "1125899906842624", err,
                                           sizeof err),
                  0);
    ASSERT_EQ_INT(l.max_bytes, 1125899906842624LL);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_MAX_BYTES, "1125899906842625", err,
                                           sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "bytes of finished jobs kept");

    /* Rates are stored normalised. */
    static const struct {
        const char *in, *stored;
    } rates[] = {
        {"5", "5"}, {"2.50", "2.5"}, {".5", "0.5"},        {"007.000", "7"},
        {"0", "0"}, {"0.0", "0"},    {"100000", "100000"}, {"100000.000", "100000"},
    };
    for (size_t i = 0; i < TL_COUNT(rates); i++) {
        fleet_tenant_limits r = {0};
        ASSERT_EQ_INT(fleet_tenant_limit_parse(&r, FLEET_TENANT_F_RATE, rates[i].in, err,
                                               sizeof err),
                      0);
        ASSERT_TRUE(r.has_rate);
        ASSERT_EQ_STR(r.rate, rates[i].stored);
    }
    static const char *const bad_rates[] = {"",      ".",  "1e3",  "-1",
                                            "1.2.3", " 1", "0x10", "1234567890123456789012345"};
    for (size_t i = 0; i < TL_COUNT(bad_rates); i++) {
        fleet_tenant_limits r = {0};
        ASSERT_EQ_INT(fleet_tenant_limit_parse(&r, FLEET_TENANT_F_RATE, bad_rates[i], err,
                                               sizeof err),
                      -1);
        ASSERT_STR_CONTAINS(err, "not a decimal number");
        ASSERT_FALSE(r.has_rate);
    }
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, FLEET_TENANT_F_RATE, "100000.5", err, sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "out of range");
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "webhook_secret", "1", err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "not a tenant limit");

    ASSERT_EQ_INT(fleet_tenant_default_burst(0), 1);
    ASSERT_EQ_INT(fleet_tenant_default_burst(0.5), 1);
    ASSERT_EQ_INT(fleet_tenant_default_burst(2), 2);
    ASSERT_EQ_INT(fleet_tenant_default_burst(2.5), 3);
    ASSERT_EQ_INT(fleet_tenant_default_burst(1e300), FLEET_TENANT_BURST_MAX);
}

/* A flat field/value reply as HGETALL returns it. */
typedef struct fake_hash {
    redisReply top;
    redisReply items[16];
    redisReply *ptrs[16];
} fake_hash;

static const redisReply *fake(fake_hash *f, const char *const *kv) {
    memset(f, 0, sizeof *f);
    size_t n = 0;
    for (; kv[n]; n++) {
        f->items[n] =
            (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)kv[n], .len = strlen(kv[n])};
        f->ptrs[n] = &f->items[n];
    }
    f->top = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = f->ptrs};
    return &f->top;
}

TL_TEST(a_record_reads_with_defaults) {
    fleet_tenant t;
    fake_hash f;
    fleet_tenant_read(&t, fake(&f, TL_ARGS("name", "acme", "max_active", "7", "rate", "2.5",
                                           "max_body", "1024", "webhook_secret", "whsec_x",
                                           "created_ms", "1700000000000", "color", "blue")));
    ASSERT_EQ_INT(t.max_active, 7);
    ASSERT_EQ_STR(t.rate_text, "2.5");
    ASSERT_TRUE(t.rate == 2.5);
    ASSERT_EQ_INT(t.burst, 3); /* no burst stored: the rate rounded up */
    ASSERT_EQ_INT(t.max_body, 1024);
    ASSERT_EQ_STR(t.webhook_secret, "whsec_x");
    ASSERT_EQ_INT(t.created_ms, 1700000000000LL);
    ASSERT_FALSE(t.revoked);

    fleet_tenant_read(&t, NULL);
    ASSERT_EQ_INT(t.max_active, 0);
    ASSERT_TRUE(t.rate == 0);
    ASSERT_EQ_STR(t.rate_text, "0");
    ASSERT_EQ_INT(t.burst, 1);
    ASSERT_EQ_STR(t.webhook_secret, "");

    /* Values written by hand read as the nearest sane ones. */
    fleet_tenant_read(&t, fake(&f, TL_ARGS("max_active", "-3", "rate", "-1", "burst", "0",
                                           "max_body", "-9", "revoked", "1")));
    ASSERT_EQ_INT(t.max_active, 0);
    ASSERT_TRUE(t.rate == 0);
    ASSERT_EQ_INT(t.burst, 1);
    ASSERT_EQ_INT(t.max_body, 0);
    ASSERT_TRUE(t.revoked);
    fleet_tenant_read(&t, fake(&f, TL_ARGS("max_finished", "-4", "max_bytes", "-5")));
    ASSERT_EQ_INT(t.max_finished, 0);
    ASSERT_EQ_INT(t.max_bytes, 0);
    fleet_tenant_read(&t, fake(&f, TL_ARGS("max_finished", "40", "max_bytes", "4096")));
    ASSERT_EQ_INT(t.max_finished, 40);
    ASSERT_EQ_INT(t.max_bytes, 4096);
    fleet_tenant_read(&t, fake(&f, TL_ARGS("rate", "nan", "revoked", "0", "burst", "40")));
    ASSERT_TRUE(t.rate == 0);
    ASSERT_FALSE(t.revoked);
    ASSERT_EQ_INT(t.burst, 40);
}

TL_TEST(commands_are_built_from_the_fields) {
    keys_init();
    fleet_tenant_cmd c;
    fleet_tenant_limits none = {0}, l = {0};
    char err[128];
    ASSERT_EQ_INT(fleet_tenant_cmd_create(&K, "acme", &none, "whsec_S", 1700, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme name acme max_active 0 rate 0 burst 1 "
                              "max_body 0 webhook_secret whsec_S created_ms 1700");
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "rate", "2.5", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "max_active", "3", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_cmd_create(&K, "acme", &l, "whsec_S", 1700, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme name acme max_active 3 rate 2.5 burst 3 "
                              "max_body 0 webhook_secret whsec_S created_ms 1700");
    ASSERT_EQ_INT(fleet_tenant_cmd_set_limits(&K, "acme", &l, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme max_active 3 rate 2.5 burst 3");
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "burst", "9", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "max_body", "4096", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_cmd_set_limits(&K, "acme", &l, &c), 0);
    ASSERT_EQ_STR(joined(&c),
                  "HSET {fleet}:tenant:acme max_active 3 rate 2.5 burst 9 max_body 4096");
    /* The storage limits go only when given (a record without them is unlimited). */
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "max_finished", "50", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_limit_parse(&l, "max_bytes", "1048576", err, sizeof err), 0);
    ASSERT_EQ_INT(fleet_tenant_cmd_set_limits(&K, "acme", &l, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme max_active 3 rate 2.5 burst 9 max_body "
                              "4096 max_finished 50 max_bytes 1048576");
    ASSERT_EQ_INT(fleet_tenant_cmd_create(&K, "acme", &l, "whsec_S", 1700, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme name acme max_active 3 rate 2.5 burst 9 "
                              "max_body 4096 webhook_secret whsec_S created_ms 1700 "
                              "max_finished 50 max_bytes 1048576");
    /* Nothing to set is refused, not sent as an HSET without fields. */
    ASSERT_EQ_INT(fleet_tenant_cmd_set_limits(&K, "acme", &none, &c), -1);
    ASSERT_EQ_INT(c.argc, 0);

    const char *h = "cb200e40c61ca860796634c9ea6bf2663d769a7e964799a3c3b91a4999cae12a";
    ASSERT_EQ_INT(fleet_apikey_cmd_create(&K, h, "acme", FLEET_ROLE_ADMIN, 1700, &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:apikey:cb200e40c61ca860796634c9ea6bf2663d769a7e96479"
                              "9a3c3b91a4999cae12a tenant acme role admin created_ms 1700");
    ASSERT_EQ_INT(fleet_apikey_cmd_read(&K, h, &c), 0);
    ASSERT_EQ_INT(c.argc, 2);
    ASSERT_EQ_STR(c.argv[0], "HGETALL");
    ASSERT_EQ_INT(fleet_apikey_cmd_delete(&K, h, &c), 0);
    ASSERT_EQ_STR(c.argv[0], "DEL");
    ASSERT_EQ_INT(fleet_tenant_cmd_add_key(&K, "acme", h, &c), 0);
    ASSERT_EQ_STR(c.argv[1], "{fleet}:tenant:acme:keys");
    ASSERT_EQ_STR(c.argv[2], h);

    ASSERT_EQ_INT(fleet_tenant_cmd_read(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "HGETALL {fleet}:tenant:acme");
    ASSERT_EQ_INT(fleet_tenant_cmd_read_secret(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "HGET {fleet}:tenant:acme webhook_secret");
    ASSERT_EQ_INT(fleet_tenant_cmd_set_secret(&K, "acme", "whsec_T", &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme webhook_secret whsec_T");
    ASSERT_EQ_INT(fleet_tenant_cmd_revoke(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "HSET {fleet}:tenant:acme revoked 1");
    ASSERT_EQ_INT(fleet_tenant_cmd_unrevoke(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "HDEL {fleet}:tenant:acme revoked");
    ASSERT_EQ_INT(fleet_tenant_cmd_names(&K, &c), 0);
    ASSERT_EQ_STR(joined(&c), "SMEMBERS {fleet}:tenants");
    ASSERT_EQ_INT(fleet_tenant_cmd_enlist(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "SADD {fleet}:tenants acme");
    ASSERT_EQ_INT(fleet_tenant_cmd_keys(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "SMEMBERS {fleet}:tenant:acme:keys");
    ASSERT_EQ_INT(fleet_tenant_cmd_delete_keys(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "DEL {fleet}:tenant:acme:keys");
    ASSERT_EQ_INT(fleet_tenant_cmd_active(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "ZCARD {fleet}:active:acme");
    ASSERT_EQ_INT(fleet_tenant_cmd_watch(&K, "acme", &c), 0);
    ASSERT_EQ_STR(joined(&c), "WATCH {fleet}:tenant:acme {fleet}:tenant:acme:keys");
}

TL_TEST(a_command_that_does_not_fit_is_refused) {
    keys_init();
    fleet_tenant_cmd c;
    char big[sizeof c.buf];
    memset(big, 's', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ASSERT_EQ_INT(fleet_tenant_cmd_set_secret(&K, "acme", big, &c), -1);
    ASSERT_EQ_INT(c.argc, 0);
    fleet_tenant_limits none = {0};
    ASSERT_EQ_INT(fleet_tenant_cmd_create(&K, "acme", &none, big, 1, &c), -1);
    ASSERT_EQ_INT(c.argc, 0);
}

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return true;
    return false;
}

/* auth.lua reads the record inside Redis: every quoted name in it is a Redis command (upper
 * case), a field of tenant.h, the revoked mark or a role, so renaming a field on one side
 * only fails here. */
TL_TEST(auth_script_spells_the_fields_of_tenant_h) {
    /* The embedded source is the shebang, lib.lua, then auth.lua from its first comment
     * line: every single-quoted literal after that, outside a comment ("--" to the end of
     * the line), is checked. */
    const char *src = strstr(fleet_script_get(FLEET_SCRIPT_AUTH)->source, "\n-- auth ");
    ASSERT_NOT_NULL(src);
    int names = 0;
    bool in_comment = false;
    for (const char *p = src; *p; p++) {
        if (*p == '\n') in_comment = false;
        if (in_comment) continue;
        if (p[0] == '-' && p[1] == '-') {
            in_comment = true;
            continue;
        }
        if (*p != '\'') continue;
        const char *end = strchr(p + 1, '\'');
        ASSERT_NOT_NULL(end);
        char lit[64];
        snprintf(lit, sizeof lit, "%.*s", (int)(end - p - 1), p + 1);
        p = end;
        if (lit[0] && isupper((unsigned char)lit[0])) continue; /* a Redis command */
        if (!in_list(fleet_tenant_fields, lit) && !in_list(fleet_apikey_fields, lit) &&
            strcmp(lit, FLEET_TENANT_REVOKED) != 0 && strcmp(lit, FLEET_ROLE_TENANT) != 0)
            FAILF("auth.lua spells '%s', which tenant.h does not name", lit);
        names++;
    }
    /* The names it must read: the key's tenant and role, the tenant's revoked mark. */
    char want[128];
    snprintf(want, sizeof want, "'%s', '%s'", FLEET_APIKEY_F_TENANT, FLEET_APIKEY_F_ROLE);
    ASSERT_STR_CONTAINS(src, want);
    snprintf(want, sizeof want, "'%s' and t[i + 1] == '%s'", FLEET_TENANT_F_REVOKED,
             FLEET_TENANT_REVOKED);
    ASSERT_STR_CONTAINS(src, want);
    ASSERT_GE_INT(names, 4);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(key_hash_known_answers),
        TL_CASE(new_keys_and_secrets_have_their_shape),
        TL_CASE(limits_parse_and_validate),
        TL_CASE(a_record_reads_with_defaults),
        TL_CASE(commands_are_built_from_the_fields),
        TL_CASE(a_command_that_does_not_fit_is_refused),
        TL_CASE(auth_script_spells_the_fields_of_tenant_h),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
