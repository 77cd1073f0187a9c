/* webhook_sign.c: Standard Webhooks secrets and signatures (webhook_sign.h). */
#include "webhook_sign.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define PREFIX_LEN (sizeof GW_WHSEC_PREFIX - 1)
/* Base64 characters of the longest key, without padding: ceil(64 * 4 / 3). */
#define KEY_B64_MAX ((GW_WHSEC_KEY_MAX * 4 + 2) / 3)

static bool is_b64(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* ------------------------------------------------------------ secrets --------------- */

int gw_whsec_parse(const char *secret, unsigned char *key, size_t *keylen, char *err,
                   size_t errlen) {
    *keylen = 0;
    if (!secret || strncmp(secret, GW_WHSEC_PREFIX, PREFIX_LEN) != 0) {
        snprintf(err, errlen,
                 "webhook secret must start with " GW_WHSEC_PREFIX
                 " followed by the base64 of %d to %d bytes",
                 GW_WHSEC_KEY_MIN, GW_WHSEC_KEY_MAX);
        return -1;
    }
    const char *b64 = secret + PREFIX_LEN;
    size_t n = strlen(b64);
    size_t pad = 0;
    while (pad < 2 && n > 0 && b64[n - 1] == '=') {
        n--;
        pad++;
    }
    if (n == 0) {
        snprintf(err, errlen, "webhook secret has no key after " GW_WHSEC_PREFIX);
        return -1;
    }
    /* The character itself is not quoted: it is part of a secret. */
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)b64[i];
        if (is_b64(c)) continue;
        if (c == '-' || c == '_')
            snprintf(err, errlen,
                     "webhook secret is not standard base64 after " GW_WHSEC_PREFIX
                     " (it has URL-safe '-' or '_'; use '+' and '/')");
        else
            snprintf(err, errlen,
                     "webhook secret is not valid base64 after " GW_WHSEC_PREFIX
                     " (bad character at position %zu)",
                     PREFIX_LEN + i + 1);
        return -1;
    }
    if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0)) {
        snprintf(err, errlen,
                 "webhook secret is not valid base64 after " GW_WHSEC_PREFIX
                 " (%zu characters do not make whole bytes)",
                 n + pad);
        return -1;
    }
    size_t bytes = n * 3 / 4;
    if (n > KEY_B64_MAX || bytes < GW_WHSEC_KEY_MIN) {
        snprintf(err, errlen,
                 "webhook secret key is %zu bytes; it must be %d to %d bytes "
                 "(base64 after " GW_WHSEC_PREFIX ")",
                 bytes, GW_WHSEC_KEY_MIN, GW_WHSEC_KEY_MAX);
        return -1;
    }
    /* EVP_DecodeBlock wants whole quads and counts padding as zero bytes. */
    char quads[KEY_B64_MAX + 4];
    unsigned char raw[KEY_B64_MAX / 4 * 3 + 3];
    memcpy(quads, b64, n);
    size_t q = n;
    while (q % 4) quads[q++] = '=';
    int got = EVP_DecodeBlock(raw, (const unsigned char *)quads, (int)q);
    if (got < 0 || (size_t)got != q / 4 * 3 || (size_t)got - (q - n) != bytes) {
        snprintf(err, errlen, "webhook secret is not valid base64 after " GW_WHSEC_PREFIX);
        return -1;
    }
    memcpy(key, raw, bytes);
    *keylen = bytes;
    return 0;
}

int gw_whsec_generate(char *out, size_t outlen) {
    unsigned char key[GW_WHSEC_GEN_KEY];
    if (outlen > 0) out[0] = '\0';
    if (outlen < GW_WHSEC_GEN_SIZE) return -1;
    if (RAND_bytes(key, sizeof key) != 1) return -1;
    memcpy(out, GW_WHSEC_PREFIX, PREFIX_LEN);
    EVP_EncodeBlock((unsigned char *)out + PREFIX_LEN, key, sizeof key); /* NUL-terminates */
    return 0;
}

/* ------------------------------------------------------------ signatures ------------ */

int gw_webhook_sign(const unsigned char *key, size_t keylen, const char *msg_id,
                    long long timestamp_s, const char *body, size_t body_len, char *out,
                    size_t outlen) {
    if (outlen > 0) out[0] = '\0';
    if (outlen < GW_WEBHOOK_SIG_SIZE || !msg_id || (!body && body_len > 0)) return -1;
    char ts[24];
    int tslen = snprintf(ts, sizeof ts, "%lld", timestamp_s);

    int rc = -1;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    if (!ctx || !EVP_MAC_init(ctx, key, keylen, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tslen) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        (body_len > 0 && !EVP_MAC_update(ctx, (const unsigned char *)body, body_len)) ||
        !EVP_MAC_final(ctx, md, &mdlen, sizeof md) || mdlen != 32)
        goto done;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, md, (int)mdlen); /* 44 characters and NUL */
    rc = 0;
done:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}
