/* codec.h: job input and results between JSON (jansson) and msgpack (msgpack-c).
 *
 * The msgpack stored in Redis is one plain msgpack value, the exact image of the JSON
 * value: object -> map with string keys, array -> array, string -> str, integer -> int,
 * real -> float64, true/false -> bool, null -> nil. Models may also return bin, which
 * reads back as a base64 string in JSON.
 *
 * Format version: this plain form is version 1. A change that cannot be read by the
 * code of the version before must wrap the value as [version, value] and bump this note;
 * readers keep accepting the plain form until every key written before has expired.
 *
 * Extension type FLEET_EXT_F32 (msgpack ext type 1): a vector of float32. Its payload is
 * the values' IEEE 754 binary32 bytes, little-endian, one after the other: a length that
 * is a multiple of 4 (0 is an empty vector); any other length is refused. Models may
 * return it (the embed model packs each embedding so: dim*4 bytes instead of dim float32
 * items of 5 bytes each). It reads as an array of numbers in JSON (each float32 widened
 * to double, exactly), counts as one nesting level, and msgpack clients get it as a
 * plain bin of the same bytes (fleet_msgpack_for_client). Other ext types are refused
 * both ways. Adding this type keeps format version 1: a value without ext-1 is unchanged.
 *
 * Pure functions, no I/O. Nesting deeper than FLEET_CODEC_MAX_DEPTH is refused both ways.
 */
#ifndef FLEET_CODEC_H
#define FLEET_CODEC_H

#include <jansson.h>
#include <stddef.h>

#define FLEET_CODEC_MAX_DEPTH 32 /* msgpack-c's unpacker stops at 32 nested containers */
#define FLEET_EXT_F32 1          /* msgpack ext type: little-endian float32 array */

/* Packs j. Returns 0 and a malloc'd buffer in *out (caller frees), or -1 with a
 * message in err. */
int fleet_json_to_msgpack(const json_t *j, char **out, size_t *len, char *err, size_t errlen);

/* Checks that buf holds exactly one msgpack value whose every declared size is backed by
 * the bytes present, nested at most FLEET_CODEC_MAX_DEPTH deep, without allocating: after
 * it, msgpack-c can unpack buf without reserving memory for sizes the bytes only claim.
 * Returns 0, or -1 with err: "empty msgpack data", "truncated msgpack data", "malformed
 * msgpack data (byte 0xc1)", "nesting deeper than 32 levels", "5 trailing
 * bytes after the msgpack value". Nothing else is checked (keys, UTF-8, ext types). */
int fleet_msgpack_check(const char *buf, size_t len, char *err, size_t errlen);

/* Unpacks exactly one value filling buf. Returns a new reference, or NULL with a message
 * in err (truncated data, trailing bytes, map keys that are not strings, ext types other
 * than FLEET_EXT_F32, an ext-1 payload that is not whole float32s, NaN or infinity). */
json_t *fleet_msgpack_to_json(const char *buf, size_t len, char *err, size_t errlen);

/* The stored msgpack value in buf as a msgpack client gets it: every FLEET_EXT_F32 value
 * becomes a bin of the same payload; every other byte stays as it is. Returns 0 with
 * *out NULL and *outlen len when buf holds no ext-1 (send buf itself, untouched), or 0
 * with a malloc'd copy in *out (caller frees) of *outlen bytes; -1 with a message in err
 * for truncated or trailing data, nesting deeper than FLEET_CODEC_MAX_DEPTH, another ext
 * type, or an ext-1 payload that is not a multiple of 4 bytes. Nothing else is checked
 * (map keys, UTF-8 and floats pass as they are). */
int fleet_msgpack_for_client(const char *buf, size_t len, char **out, size_t *outlen, char *err,
                             size_t errlen);

#endif
