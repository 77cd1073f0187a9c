/* fuzz_msgpack: libFuzzer target for the msgpack -> JSON side of the codec
 * (shared/src/codec.c), which reads what workers store as results and what clients send
 * as application/msgpack. Whatever the bytes, fleet_msgpack_to_json must not crash, leak,
 * hit undefined behaviour or allocate what the bytes only claim (a 5-byte array32 header
 * asking for gigabytes: -rss_limit_mb catches that), and a value it reads must survive
 * the way back: fleet_json_to_msgpack packs it, and that reads back as the same JSON.
 * fleet_msgpack_for_client (what a msgpack client gets of a stored result) gets the same
 * bytes: it must not crash either, must accept every value that reads as JSON, and what
 * it rewrites (ext-1 to bin) is no longer than the input, reads as JSON too, and needs no
 * second rewrite. The range-at-a-time converter (shared/src/codec_stream.c) fed the same
 * bytes in ranges of 1 byte, of a size taken from the input, and whole, must give the same
 * output or the same error as both. A broken rule aborts, which libFuzzer reports as a
 * crash. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/codec_stream.h"

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

typedef struct out {
    char *p;
    size_t n;
} out;

static void sink(void *arg, const char *p, size_t n) {
    out *o = arg;
    o->p = realloc(o->p, o->n + n);
    require(o->p != NULL, "memory for the streamed output", NULL);
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

/* The streamed conversion of data equals want (ok: want[0..wn) is the output, else err
 * is the error), for several range sizes. */
static void streamed(fleet_mps_mode mode, const uint8_t *data, size_t size, bool ok,
                     const char *want, size_t wn, const char *err) {
    if (size == 0) return;
    size_t steps[3] = {1, 1 + data[0] % 61, size};
    for (int i = 0; i < 3; i++) {
        out o = {0};
        fleet_mps *s = fleet_mps_new(mode, size, sink, &o);
        require(s != NULL, "a converter", NULL);
        int rc = 0;
        for (size_t off = 0; off < size && rc == 0; off += steps[i])
            rc = fleet_mps_feed(s, data + off, size - off < steps[i] ? size - off : steps[i]);
        if (rc == 0) rc = fleet_mps_finish(s);
        if (!fleet_mps_needs_whole(s)) {
            require((rc == 0) == ok, "streamed and whole agree on success", fleet_mps_error(s));
            if (ok)
                require(o.n == wn && (wn == 0 || memcmp(o.p, want, wn) == 0) &&
                            fleet_mps_out_len(s) == wn,
                        "streamed output equals the whole conversion", NULL);
            else
                require(strcmp(fleet_mps_error(s), err) == 0, "streamed and whole errors agree",
                        fleet_mps_error(s));
        } else {
            require(mode == FLEET_MPS_JSON, "only JSON falls back to the whole document", NULL);
        }
        fleet_mps_free(s);
        free(o.p);
    }
}

static void streamed_both(const uint8_t *data, size_t size, const json_t *j, const char *jerr) {
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    require(!j || text, "the whole JSON dumps", NULL);
    streamed(FLEET_MPS_JSON, data, size, j != NULL, text, text ? strlen(text) : 0, jerr);
    free(text);
    char err[128] = "", *mp = NULL;
    size_t mplen = 0;
    int rc = fleet_msgpack_for_client((const char *)data, size, &mp, &mplen, err, sizeof err);
    streamed(FLEET_MPS_CLIENT, data, size, rc == 0, mp ? mp : (const char *)data, mplen, err);
    free(mp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[128] = "";
    json_t *j = fleet_msgpack_to_json((const char *)data, size, err, sizeof err);
    for_client(data, size, j != NULL);
    streamed_both(data, size, j, err);
    if (!j) {
        require(err[0] != '\0', "a refusal says why", NULL);
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    require(fleet_json_to_msgpack(j, &buf, &len, err, sizeof err) == 0, "what was read packs again",
            err);
    json_t *back = fleet_msgpack_to_json(buf, len, err, sizeof err);
    require(back != NULL, "what was packed reads back", err);
    require(json_equal(j, back), "the round trip keeps the value", NULL);
    json_decref(back);
    free(buf);
    json_decref(j);
    return 0;
}
