/* codec_stream.h: a stored msgpack value converted a range at a time, for answers too
 * large to hold in memory at once (the gateway reads such results from Redis in ranges).
 *
 * Two conversions, each byte for byte what the whole-document functions of codec.h give:
 *
 *   FLEET_MPS_JSON    json_dumps(fleet_msgpack_to_json(buf), JSON_COMPACT | JSON_ENCODE_ANY)
 *   FLEET_MPS_CLIENT  fleet_msgpack_for_client(buf) (ext-1 float32 vectors become bin)
 *
 * The converter is a resumable walker with an explicit stack: fleet_mps_feed takes the
 * next bytes of the value, however they are split (one byte at a time, or in the middle of
 * a header, a long string, a bin or a float32 vector), and hands the output to the sink as
 * it goes. It holds one header, one partial UTF-8 character or base64 group, an output
 * buffer of FLEET_MPS_OUTBUF bytes and, in JSON mode, a hash of every key of the maps that
 * are open (see below): never the value itself.
 *
 * The total length must be known up front (Redis STRLEN): the whole-document functions
 * refuse a header whose sizes the remaining bytes cannot back ("truncated") before they
 * look at anything else, and so does this walker, with the same messages.
 *
 * Errors. CLIENT mode stops at the first error, as fleet_msgpack_for_client does. JSON mode
 * reproduces fleet_msgpack_to_json's two passes: a malformed structure anywhere (a bad
 * marker, truncated data, nesting deeper than FLEET_CODEC_MAX_DEPTH, trailing bytes) is
 * the error even when a semantic error (invalid UTF-8, a non-string key, NaN, another ext
 * type) came first; otherwise the first semantic error in jansson's order is. Once an error
 * is known no more output reaches the sink. So a first pass with a NULL sink tells, before
 * anything is sent, whether the value converts and how long the output is.
 *
 * Duplicate keys. jansson keeps a repeated key at its first place with its last value,
 * which cannot be written before the map ends. In JSON mode the walker hashes each key of
 * the open maps (FNV-1a, 64 bits) and gives up with fleet_mps_needs_whole() true when two
 * keys of one map hash alike, or when more than FLEET_MPS_KEYS_MAX keys are open at once:
 * the caller then converts the whole document as before. Equal hashes of different keys
 * only cost that fallback, never a wrong answer.
 *
 * Pure: no I/O, no globals.
 */
#ifndef FLEET_CODEC_STREAM_H
#define FLEET_CODEC_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLEET_MPS_OUTBUF 4096    /* output is handed to the sink in pieces of this size */
#define FLEET_MPS_KEYS_MAX 32768 /* keys of open maps hashed at once (8 bytes each) */

typedef enum fleet_mps_mode {
    FLEET_MPS_JSON,   /* JSON text, as fleet_msgpack_to_json + json_dumps */
    FLEET_MPS_CLIENT, /* msgpack, as fleet_msgpack_for_client */
} fleet_mps_mode;

/* Receives output; p is valid only during the call. */
typedef void (*fleet_mps_sink)(void *arg, const char *p, size_t n);

typedef struct fleet_mps fleet_mps;

/* A converter for one value of total bytes (total > 0). sink may be NULL: then the
 * output is only counted. NULL when out of memory. */
fleet_mps *fleet_mps_new(fleet_mps_mode mode, uint64_t total, fleet_mps_sink sink, void *arg);
void fleet_mps_free(fleet_mps *s);

/* Takes the next n bytes. Returns 0, or -1 once the walk cannot go on (an error in
 * CLIENT mode, a structural error in JSON mode, more bytes than total, or a fallback:
 * fleet_mps_needs_whole). Output up to the last byte fed has reached the sink on return. */
int fleet_mps_feed(fleet_mps *s, const void *p, size_t n);

/* After the last byte: 0 when the value was complete and converted, -1 with
 * fleet_mps_error set otherwise. */
int fleet_mps_finish(fleet_mps *s);

/* The error, as the whole-document function words it ("" when none). */
const char *fleet_mps_error(const fleet_mps *s);
/* True when the JSON form needs the whole document (duplicate or too many keys). */
bool fleet_mps_needs_whole(const fleet_mps *s);
/* Bytes handed to the sink (or counted) so far. */
uint64_t fleet_mps_out_len(const fleet_mps *s);

#endif
