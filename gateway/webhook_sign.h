/* webhook_sign.h: Standard Webhooks signatures (https://www.standardwebhooks.com/).
 * Pure apart from gw_whsec_generate, which reads the OpenSSL random generator.
 *
 * A delivery carries three headers:
 *   webhook-id: <msg_id>            unique per message, the same on every retry
 *   webhook-timestamp: <unix s>     when this attempt was signed
 *   webhook-signature: v1,<base64>  base64(HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>"))
 * The secret a user holds is "whsec_" + base64(key); the HMAC key is the decoded bytes,
 * never the text. docs/webhooks.md ("Verifying a delivery") shows the receiving side.
 */
#ifndef GW_WEBHOOK_SIGN_H
#define GW_WEBHOOK_SIGN_H

#include <stddef.h>

#define GW_WHSEC_PREFIX "whsec_"
#define GW_WHSEC_KEY_MIN 24 /* bytes of key, after base64 decoding */
#define GW_WHSEC_KEY_MAX 64
#define GW_WHSEC_GEN_KEY 32 /* bytes of key in a generated secret */
/* Room for a generated secret: "whsec_" + 44 base64 characters + NUL. */
#define GW_WHSEC_GEN_SIZE (sizeof GW_WHSEC_PREFIX - 1 + 44 + 1)
/* Room for a signature header value: "v1," + 44 base64 characters + NUL. */
#define GW_WEBHOOK_SIG_SIZE (3 + 44 + 1)

/* Reads "whsec_<base64>" into key (a buffer of GW_WHSEC_KEY_MAX bytes) and its length
 * into *keylen. The base64 is the standard alphabet (+ /); the trailing '=' padding may
 * be left out. Returns 0, or -1 with err saying what is wrong (bad prefix, bad base64,
 * key not GW_WHSEC_KEY_MIN..GW_WHSEC_KEY_MAX bytes); the message never quotes the
 * secret. */
int gw_whsec_parse(const char *secret, unsigned char *key, size_t *keylen, char *err,
                   size_t errlen);

/* Writes a new secret, "whsec_" + base64 of GW_WHSEC_GEN_KEY random bytes (RAND_bytes),
 * into out (at least GW_WHSEC_GEN_SIZE bytes). Returns 0, or -1 when out is too small or
 * the random generator fails. */
int gw_whsec_generate(char *out, size_t outlen);

/* Writes the webhook-signature value "v1,<base64 HMAC-SHA256>" of
 * "<msg_id>.<timestamp_s>.<body>" into out (NUL-terminated; GW_WEBHOOK_SIG_SIZE bytes
 * suffice). body is body_len raw bytes (NULs allowed; NULL when body_len is 0), exactly
 * the bytes sent. Returns 0, or -1 when out is too small (out is then "") or OpenSSL
 * fails. */
int gw_webhook_sign(const unsigned char *key, size_t keylen, const char *msg_id,
                    long long timestamp_s, const char *body, size_t body_len, char *out,
                    size_t outlen);

#endif
