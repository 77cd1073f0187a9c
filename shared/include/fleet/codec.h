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
 * Pure functions, no I/O. Nesting deeper than FLEET_CODEC_MAX_DEPTH is refused both ways.
 */
#ifndef FLEET_CODEC_H
#define FLEET_CODEC_H

#include <jansson.h>
#include <stddef.h>

#define FLEET_CODEC_MAX_DEPTH 32 /* msgpack-c's unpacker stops at 32 nested containers */

/* Packs j. Returns 0 and a malloc'd buffer in *out (caller frees), or -1 with a
 * message in err. */
int fleet_json_to_msgpack(const json_t *j, char **out, size_t *len, char *err, size_t errlen);

/* Unpacks exactly one value filling buf. Returns a new reference, or NULL with a message
 * in err (truncated data, trailing bytes, map keys that are not strings, ext types). */
json_t *fleet_msgpack_to_json(const char *buf, size_t len, char *err, size_t errlen);

#endif
