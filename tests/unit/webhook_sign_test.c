/* webhook_sign_test: Standard Webhooks secrets and signatures (gateway/webhook_sign.c). */
#include <string.h>

#include "testlib.h"
#include "webhook_sign.h"

/* The Standard Webhooks reference vector (the spec's test suites use it). */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS 1614265330LL
#define VEC_BODY "{\"test\": 2432232314}"
#define VEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static size_t parse_ok(const char *secret, unsigned char *key) {
    size_t keylen = 0;
    char err[256] = "";
    if (gw_whsec_parse(secret, key, &keylen, err, sizeof err) != 0)
        FAILF("secret %s was refused: %s", secret, err);
    return keylen;
}

static const char *parse_err(const char *secret) {
    unsigned char key[GW_WHSEC_KEY_MAX];
    size_t keylen = 99;
    char *err = tl_alloc(256);
    if (gw_whsec_parse(secret, key, &keylen, err, 256) == 0)
        FAILF("secret %s was accepted", secret ? secret : "(null)");
    ASSERT_EQ_INT(keylen, 0);
    return err;
}

TL_TEST(reference_vector) {
    unsigned char key[GW_WHSEC_KEY_MAX];
    size_t keylen = parse_ok(VEC_SECRET, key);
    ASSERT_EQ_INT(keylen, 24);
    char sig[GW_WEBHOOK_SIG_SIZE];
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig),
                  0);
    ASSERT_EQ_STR(sig, VEC_SIG);
    ASSERT_EQ_INT(strlen(sig), GW_WEBHOOK_SIG_SIZE - 1);
}

TL_TEST(signature_covers_id_timestamp_and_body) {
    unsigned char key[GW_WHSEC_KEY_MAX];
    size_t keylen = parse_ok(VEC_SECRET, key);
    char sig[GW_WEBHOOK_SIG_SIZE];
    const char *other = "{\"test\": 2432232315}";
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, other, strlen(other), sig,
                                  sizeof sig),
                  0);
    ASSERT_NE_STR(sig, VEC_SIG);
    ASSERT_EQ_INT(strncmp(sig, "v1,", 3), 0);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS + 1, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig),
                  0);
    ASSERT_NE_STR(sig, VEC_SIG);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, "msg_other", VEC_TS, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig),
                  0);
    ASSERT_NE_STR(sig, VEC_SIG);
    /* body_len, not strlen: bytes after a NUL count. */
    char a[GW_WEBHOOK_SIG_SIZE], b[GW_WEBHOOK_SIG_SIZE];
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, "x\0y", 3, a, sizeof a), 0);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, "x\0z", 3, b, sizeof b), 0);
    ASSERT_NE_STR(a, b);
    /* An empty body, NULL or not, signs "<id>.<ts>.". */
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, NULL, 0, a, sizeof a), 0);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, "", 0, b, sizeof b), 0);
    ASSERT_EQ_STR(a, b);
    /* A different key. */
    unsigned char key2[GW_WHSEC_KEY_MAX];
    memcpy(key2, key, keylen);
    key2[0] ^= 1;
    ASSERT_EQ_INT(gw_webhook_sign(key2, keylen, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig),
                  0);
    ASSERT_NE_STR(sig, VEC_SIG);
}

TL_TEST(sign_refuses_a_small_buffer) {
    unsigned char key[GW_WHSEC_KEY_MAX];
    size_t keylen = parse_ok(VEC_SECRET, key);
    char sig[GW_WEBHOOK_SIG_SIZE];
    memset(sig, 'x', sizeof sig);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig - 1),
                  -1);
    ASSERT_EQ_STR(sig, "");
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig, 0),
                  -1);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, NULL, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig,
                                  sizeof sig),
                  -1);
    ASSERT_EQ_INT(gw_webhook_sign(key, keylen, VEC_ID, VEC_TS, NULL, 5, sig, sizeof sig), -1);
}

TL_TEST(parse_refusals_say_what_is_wrong) {
    const char *e = parse_err("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    ASSERT_STR_CONTAINS(e, "must start with whsec_");
    e = parse_err(NULL);
    ASSERT_STR_CONTAINS(e, "must start with whsec_");
    e = parse_err("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    ASSERT_STR_CONTAINS(e, "must start with whsec_");
    e = parse_err("whsec_");
    ASSERT_STR_CONTAINS(e, "no key");
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8I*PZIo2LaLaSw");
    ASSERT_STR_CONTAINS(e, "not valid base64");
    ASSERT_STR_CONTAINS(e, "position 27");
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS w");
    ASSERT_STR_CONTAINS(e, "not valid base64");
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw");
    ASSERT_STR_CONTAINS(e, "URL-safe");
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA"); /* 33 characters */
    ASSERT_STR_CONTAINS(e, "whole bytes");
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAA="); /* wrong padding */
    ASSERT_STR_CONTAINS(e, "whole bytes");
    e = parse_err("whsec_MfK=Q9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); /* '=' inside */
    ASSERT_STR_CONTAINS(e, "not valid base64");
    /* 23 bytes: too short. */
    e = parse_err("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=");
    ASSERT_STR_CONTAINS(e, "key is 23 bytes");
    ASSERT_STR_CONTAINS(e, "24 to 64");
    e = parse_err("whsec_dG9vc2hvcnQ=");
    ASSERT_STR_CONTAINS(e, "key is 8 bytes");
    /* 65 bytes: too long. */
    char long_secret[128] = "whsec_";
    for (int i = 0; i < 87; i++) strcat(long_secret, "A");
    strcat(long_secret, "=");
    e = parse_err(long_secret);
    ASSERT_STR_CONTAINS(e, "key is 65 bytes");
    /* The message never repeats the secret. */
    e = parse_err("whsec_SECRETSECRET*");
    ASSERT_FALSE(strstr(e, "SECRET"));
}

TL_TEST(parse_accepts_padding_and_its_absence) {
    unsigned char key[GW_WHSEC_KEY_MAX];
    /* 25 bytes: "...A==" padded and unpadded are the same key. */
    const char *padded = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGA==";
    ASSERT_EQ_INT(parse_ok(padded, key), 25);
    for (int i = 0; i < 25; i++) ASSERT_EQ_INT(key[i], i);
    ASSERT_EQ_INT(parse_ok("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGA", key), 25);
    for (int i = 0; i < 25; i++) ASSERT_EQ_INT(key[i], i);
    /* 26 bytes, one '='. */
    ASSERT_EQ_INT(parse_ok("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBk=", key), 26);
    ASSERT_EQ_INT(key[25], 25);
    /* 64 bytes, the most. */
    char max_secret[128] = "whsec_";
    for (int i = 0; i < 85; i++) strcat(max_secret, "/");
    strcat(max_secret, "w==");
    ASSERT_EQ_INT(parse_ok(max_secret, key), 64);
    ASSERT_EQ_INT(key[63], 0xff);
}

TL_TEST(generate_round_trips) {
    char a[GW_WHSEC_GEN_SIZE], b[GW_WHSEC_GEN_SIZE];
    ASSERT_EQ_INT(gw_whsec_generate(a, sizeof a), 0);
    ASSERT_EQ_INT(gw_whsec_generate(b, sizeof b), 0);
    ASSERT_EQ_INT(strlen(a), GW_WHSEC_GEN_SIZE - 1);
    ASSERT_EQ_INT(strncmp(a, "whsec_", 6), 0);
    ASSERT_NE_STR(a, b);
    unsigned char key[GW_WHSEC_KEY_MAX];
    ASSERT_EQ_INT(parse_ok(a, key), GW_WHSEC_GEN_KEY);
    char sig[GW_WEBHOOK_SIG_SIZE];
    ASSERT_EQ_INT(gw_webhook_sign(key, GW_WHSEC_GEN_KEY, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY),
                                  sig, sizeof sig),
                  0);
    ASSERT_NE_STR(sig, VEC_SIG);
    char small[GW_WHSEC_GEN_SIZE - 1];
    ASSERT_EQ_INT(gw_whsec_generate(small, sizeof small), -1);
    ASSERT_EQ_STR(small, "");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(reference_vector),
        TL_CASE(signature_covers_id_timestamp_and_body),
        TL_CASE(sign_refuses_a_small_buffer),
        TL_CASE(parse_refusals_say_what_is_wrong),
        TL_CASE(parse_accepts_padding_and_its_absence),
        TL_CASE(generate_round_trips),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
