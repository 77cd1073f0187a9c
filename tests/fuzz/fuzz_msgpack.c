/* fuzz_msgpack: libFuzzer target for the msgpack -> JSON side of the codec
 * (shared/src/codec.c), which reads what workers store as results and what clients send
 * as application/msgpack. Whatever the bytes, fleet_msgpack_to_json must not crash, leak,
 * hit undefined behaviour or allocate what the bytes only claim (a 5-byte array32 header
 * asking for gigabytes: -rss_limit_mb catches that), and a value it reads must survive
 * the way back: fleet_json_to_msgpack packs it, and that reads back as the same JSON.
 * fleet_msgpack_for_client (what a msgpack client gets of a stored result) gets the same
 * bytes: it must not crash either, must accept every value that reads as JSON, and what
 * it rewrites (ext-1 to bin) is no longer than the input, reads as JSON too, and needs no
 * second rewrite. A broken rule aborts, which libFuzzer reports as a crash. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule, const char *detail) {
    if (ok) return;
    fprintf(stderr, "fuzz_msgpack: broken rule: %s (%s)\n", rule, detail ? detail : "");
    abort();
}

static void for_client(const uint8_t *data, size_t size, bool reads_as_json) {
    char err[128] = "", *out = NULL;
    size_t outlen = 0;
    int rc = fleet_msgpack_for_client((const char *)data, size, &out, &outlen, err, sizeof err);
    if (rc < 0) {
        require(!reads_as_json, "a value that reads as JSON goes to clients", err);
        require(err[0] != '\0' && out == NULL, "a client refusal says why", NULL);
        return;
    }
    if (!out) {
        require(outlen == size, "no rewrite keeps the length", NULL);
        return;
    }
    require(outlen <= size, "the rewrite is no longer than the input", NULL);
    if (reads_as_json) {
        json_t *j = fleet_msgpack_to_json(out, outlen, err, sizeof err);
        require(j != NULL, "the rewrite reads as JSON", err);
        json_decref(j);
    }
    char *again = NULL;
    size_t againlen = 0;
    require(fleet_msgpack_for_client(out, outlen, &again, &againlen, err, sizeof err) == 0 &&
                again == NULL,
            "the rewrite needs no second rewrite", err);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[128] = "";
    json_t *j = fleet_msgpack_to_json((const char *)data, size, err, sizeof err);
    for_client(data, size, j != NULL);
    if (!j) {
        require(err[0] != '\0', "a refusal says why", NULL);
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    require(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err) == 0,
            "what was read packs again", err);
    json_t *back = fleet_msgpack_to_json(buf, len, err, sizeof err);
    require(back != NULL, "what was packed reads back", err);
    require(json_equal(j, back), "the round trip keeps the value", NULL);
    json_decref(back);
    free(buf);
    json_decref(j);
    return 0;
}
