/* msgpack_wire.h: the msgpack wire format, one header at a time. Pure: no I/O, no
 * allocation.
 *
 * The one place fleet decodes and encodes msgpack markers and length fields. Every reader
 * of untrusted msgpack goes through fleet_mp_read_head, which checks each size a header
 * declares against the bytes actually present before anything is sized by it (a 5-byte
 * array32 header would otherwise ask for gigabytes): the codec (codec.c), the range
 * converter (codec_stream.c, which decodes headers as they arrive with
 * fleet_mp_head_size and fleet_mp_head_decode), the submit body walker
 * (gateway/job_body.c) and the result-file convention (gateway/result_file.c). The writers
 * are those of the values fleet builds by hand (a multipart job's "files", the bin a
 * float32 vector becomes for msgpack clients); the codec packs JSON with msgpack-c.
 *
 * A value is a header, then either a payload of `skip` bytes (a number's, a str's, a
 * bin's, an ext's) or `items` more values (an array's n, a map's 2n keys and values).
 */
#ifndef FLEET_MSGPACK_WIRE_H
#define FLEET_MSGPACK_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fleet_mp_type {
    FLEET_MP_NIL,
    FLEET_MP_BOOL,
    FLEET_MP_INT, /* fixints, (u)int 8..64 */
    FLEET_MP_FLOAT,
    FLEET_MP_STR,
    FLEET_MP_BIN,
    FLEET_MP_ARRAY,
    FLEET_MP_MAP,
    FLEET_MP_EXT,
} fleet_mp_type;

typedef struct fleet_mp_head {
    fleet_mp_type type;
    unsigned char marker;
    size_t hlen;    /* header bytes: the marker, a length field, an ext's type byte */
    uint64_t n;     /* str/bin/ext: payload bytes; array: items; map: entries */
    uint64_t skip;  /* payload bytes after the header (a number's too) */
    uint64_t items; /* values after the header: an array's n, a map's 2n */
    int ext_type;   /* FLEET_MP_EXT: the signed type byte */
} fleet_mp_head;

#define FLEET_MP_OK 0
#define FLEET_MP_TRUNCATED (-1) /* the header, or what it declares, runs past the end */
#define FLEET_MP_BAD (-2)       /* the marker 0xc1, which msgpack never uses */

/* Bytes of the header that starts with marker (the marker included): 1..6, 0 for 0xc1. */
size_t fleet_mp_head_size(unsigned char marker);

/* Whether marker starts an array or a map. */
bool fleet_mp_is_container(unsigned char marker);

/* Decodes the header at p, of which avail bytes are at hand (avail > 0). Returns
 * FLEET_MP_OK, FLEET_MP_TRUNCATED when fewer than fleet_mp_head_size bytes are at hand (h
 * then holds the type and marker, its sizes are meaningless), or FLEET_MP_BAD. Sizes are
 * not checked against anything: see fleet_mp_read_head. */
int fleet_mp_head_decode(const unsigned char *p, size_t avail, fleet_mp_head *h);

/* Reads the header at p[*off] (len bytes in all) and moves *off past it. Returns
 * FLEET_MP_OK only when the bytes after the header can back what it declares: its whole
 * payload, and at least one byte per item. FLEET_MP_TRUNCATED (also when *off >= len) or
 * FLEET_MP_BAD otherwise, with *off then unspecified. */
int fleet_mp_read_head(const unsigned char *p, size_t len, size_t *off, fleet_mp_head *h);

/* The value's kind in words for a message ("a map", "an integer", "an ext value"). */
const char *fleet_mp_type_name(unsigned char marker);

/* Writers. Each writes its bytes at o when o is not NULL and returns how many it takes
 * (o NULL: one pass sizes a buffer, a second fills it). The shortest form is chosen. */
size_t fleet_mp_put_uint(unsigned char *o, uint64_t v);
size_t fleet_mp_put_map(unsigned char *o, uint64_t entries);
size_t fleet_mp_put_array(unsigned char *o, uint64_t items);
size_t fleet_mp_put_str(unsigned char *o, const char *s, size_t n);
size_t fleet_mp_put_bin(unsigned char *o, const void *s, size_t n);
/* A bin header for n bytes of payload that the caller writes after it. */
size_t fleet_mp_put_bin_head(unsigned char *o, uint64_t n);

#endif
