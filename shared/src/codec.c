/* codec.c: JSON <-> msgpack for job inputs and results (codec.h). Pure. */
#include "fleet/codec.h"

#include <float.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"
#include "fleet/msgpack_wire.h"

/* --------------------------------------------------------------- JSON -> msgpack ---- */

static int pack_value(msgpack_packer *pk, const json_t *j, int depth, char *err, size_t errlen) {
    /* at most FLEET_CODEC_MAX_DEPTH containers, one inside the other: the outermost is
     * at depth 0, so none may start at FLEET_CODEC_MAX_DEPTH (an empty one included) */
    if (depth > FLEET_CODEC_MAX_DEPTH ||
        (depth == FLEET_CODEC_MAX_DEPTH && (json_is_object(j) || json_is_array(j)))) {
        fleet_err(err, errlen, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
        return -1;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(j));
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            size_t klen = strlen(key);
            msgpack_pack_str_with_body(pk, key, klen);
            if (pack_value(pk, v, depth + 1, err, errlen) < 0) return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            if (pack_value(pk, json_array_get(j, i), depth + 1, err, errlen) < 0) return -1;
        return 0;
    }
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL: return msgpack_pack_double(pk, json_real_value(j));
    case JSON_TRUE: return msgpack_pack_true(pk);
    case JSON_FALSE: return msgpack_pack_false(pk);
    case JSON_NULL: return msgpack_pack_nil(pk);
    }
    fleet_err(err, errlen, "unsupported JSON type");
    return -1;
}

int fleet_json_to_msgpack(const json_t *j, char **out, size_t *len, char *err, size_t errlen) {
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    if (!j) {
        fleet_err(err, errlen, "no value");
        msgpack_sbuffer_destroy(&sbuf);
        return -1;
    }
    if (pack_value(&pk, j, 0, err, errlen) < 0) {
        msgpack_sbuffer_destroy(&sbuf);
        return -1;
    }
    *len = sbuf.size; /* release() resets size */
    *out = msgpack_sbuffer_release(&sbuf);
    if (!*out) { /* an empty buffer cannot happen for a packed value; be safe anyway */
        fleet_err(err, errlen, "out of memory");
        return -1;
    }
    msgpack_sbuffer_destroy(&sbuf);
    return 0;
}

/* --------------------------------------------------------------- msgpack -> JSON ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *base64_string(const char *p, size_t n) {
    size_t olen = 4 * ((n + 2) / 3);
    char *o = malloc(olen + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)p[i] << 16;
        if (i + 1 < n) v |= (unsigned char)p[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)p[i + 2];
        o[k++] = b64[(v >> 18) & 63];
        o[k++] = b64[(v >> 12) & 63];
        o[k++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    json_t *s = json_stringn(o, k);
    free(o);
    return s;
}

/* ----------------------------------------------------------- FLEET_EXT_F32 ---------- */

_Static_assert(sizeof(float) == 4 && sizeof(uint32_t) == 4, "float must be IEEE binary32");
_Static_assert(FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128, "float must be IEEE binary32");

/* The rules an ext-1 value obeys wherever it is read: it counts as a container (it reads
 * as an array), and its payload is whole float32 values. */
static int f32_check(uint64_t size, int depth, char *err, size_t errlen) {
    if (depth >= FLEET_CODEC_MAX_DEPTH) {
        fleet_err(err, errlen, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
        return -1;
    }
    if (size % 4) {
        fleet_err(err, errlen,
                  "msgpack ext type %d (float32 array) holds %llu bytes, not a multiple of 4",
                  FLEET_EXT_F32, (unsigned long long)size);
        return -1;
    }
    return 0;
}

static float f32_le(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* An ext-1 value as a JSON array of numbers: each float32 widened to double, exactly. */
static json_t *f32_array(const msgpack_object *o, int depth, char *err, size_t errlen) {
    if (f32_check(o->via.ext.size, depth, err, errlen) < 0) return NULL;
    const unsigned char *p = (const unsigned char *)o->via.ext.ptr;
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < o->via.ext.size / 4; i++) {
        json_t *v = json_real((double)f32_le(p + 4 * (size_t)i));
        if (!v) fleet_err(err, errlen, "float32 array item %u is not finite (NaN or infinity)", i);
        if (!v || json_array_append_new(a, v) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *to_json(const msgpack_object *o, int depth, char *err, size_t errlen) {
    if (depth > FLEET_CODEC_MAX_DEPTH) {
        fleet_err(err, errlen, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
        return NULL;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        json_t *r = json_real(o->via.f64);
        if (!r) fleet_err(err, errlen, "float is not finite (NaN or infinity)");
        return r;
    }
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
        if (!s) fleet_err(err, errlen, "string is not valid UTF-8");
        return s;
    }
    case MSGPACK_OBJECT_BIN:
        return base64_string(o->via.bin.size ? o->via.bin.ptr : "", o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *v = to_json(&o->via.array.ptr[i], depth + 1, err, errlen);
            if (!v || json_array_append_new(a, v) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                fleet_err(err, errlen, "map key is not a string");
                json_decref(m);
                return NULL;
            }
            /* An empty key ("") may come with a NULL pointer. */
            char *key = strndup(kv->key.via.str.size ? kv->key.via.str.ptr : "",
                                kv->key.via.str.size);
            json_t *v = key ? to_json(&kv->val, depth + 1, err, errlen) : NULL;
            bool nul_in_key = v && strlen(key) != kv->key.via.str.size;
            if (nul_in_key) json_decref(v);
            /* json_object_set_new takes v even when it fails (a key that is not UTF-8) */
            if (!v || nul_in_key || json_object_set_new(m, key, v) < 0) {
                if (v) fleet_err(err, errlen, "map key is not valid UTF-8 or holds a NUL");
                free(key);
                json_decref(m);
                return NULL;
            }
            free(key);
        }
        return m;
    }
    case MSGPACK_OBJECT_EXT:
        if (o->via.ext.type == FLEET_EXT_F32) return f32_array(o, depth, err, errlen);
        fleet_err(err, errlen, "msgpack ext type %d has no JSON form", o->via.ext.type);
        return NULL;
    }
    fleet_err(err, errlen, "unknown msgpack type");
    return NULL;
}

/* read_head reads the header of the value at *off with fleet_mp_read_head (which checks
 * every size the untrusted bytes declare against the bytes present) and moves *off past
 * it; a container deeper than FLEET_CODEC_MAX_DEPTH is refused before its length field is
 * read. Returns 0, or -1 with err. */
static int read_head(const unsigned char *p, size_t len, size_t *off, int depth, fleet_mp_head *h,
                     char *err, size_t errlen) {
    if (*off < len && depth >= FLEET_CODEC_MAX_DEPTH && fleet_mp_is_container(p[*off]))
        return fleet_err(err, errlen, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
    unsigned char t = *off < len ? p[*off] : 0;
    switch (fleet_mp_read_head(p, len, off, h)) {
    case FLEET_MP_OK: return 0;
    case FLEET_MP_BAD: return fleet_err(err, errlen, "malformed msgpack data (byte 0x%02x)", t);
    default: return fleet_err(err, errlen, "truncated msgpack data");
    }
}

/* Walks one msgpack value without allocating (read_head's checks, all the way down), so
 * that msgpack-c never allocates for sizes the bytes do not back. Returns 0, or -1 with
 * err. */
static int check_value(const unsigned char *p, size_t len, size_t *off, int depth, char *err,
                       size_t errlen) {
    fleet_mp_head h;
    if (read_head(p, len, off, depth, &h, err, errlen) < 0) return -1;
    *off += h.skip;
    for (uint64_t i = 0; i < h.items; i++)
        if (check_value(p, len, off, depth + 1, err, errlen) < 0) return -1;
    return 0;
}

int fleet_msgpack_check(const char *buf, size_t len, char *err, size_t errlen) {
    if (!buf || len == 0) return fleet_err(err, errlen, "empty msgpack data");
    size_t end = 0;
    if (check_value((const unsigned char *)buf, len, &end, 0, err, errlen) < 0) return -1;
    if (end != len)
        return fleet_err(err, errlen, "%zu trailing bytes after the msgpack value", len - end);
    return 0;
}

json_t *fleet_msgpack_to_json(const char *buf, size_t len, char *err, size_t errlen) {
    if (fleet_msgpack_check(buf, len, err, errlen) < 0) return NULL;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&up, buf, len, &off);
    json_t *j = NULL;
    if (rc == MSGPACK_UNPACK_SUCCESS) {
        if (off != len)
            fleet_err(err, errlen, "%zu trailing bytes after the msgpack value", len - off);
        else j = to_json(&up.data, 0, err, errlen);
    } else if (rc == MSGPACK_UNPACK_CONTINUE) {
        fleet_err(err, errlen, "truncated msgpack data");
    } else if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
        fleet_err(err, errlen,
                  "msgpack data nested deeper than 32 levels or declaring sizes beyond memory");
    } else {
        fleet_err(err, errlen, "malformed msgpack data");
    }
    msgpack_unpacked_destroy(&up);
    return j;
}

/* --------------------------------------------------------------- msgpack for clients -- */

/* Walks one value the way check_value does. With out == NULL it only checks, adding
 * the ext-1 values it meets to *nf32; otherwise it also writes the value at out + *o, every
 * byte as it was except that each ext-1 becomes a bin of the same payload. Other ext types
 * are refused. Returns 0, or -1 with err. */
static int client_walk(const unsigned char *p, size_t len, size_t *off, int depth,
                       unsigned char *out, size_t *o, size_t *nf32, char *err, size_t errlen) {
    size_t start = *off;
    fleet_mp_head h;
    if (read_head(p, len, off, depth, &h, err, errlen) < 0) return -1;
    if (h.type == FLEET_MP_EXT) {
        uint64_t n = h.skip;
        if (h.ext_type != FLEET_EXT_F32)
            return fleet_err(err, errlen,
                             "msgpack ext type %d has no client form (only type %d does)",
                             h.ext_type, FLEET_EXT_F32);
        if (f32_check(n, depth, err, errlen) < 0) return -1;
        (*nf32)++;
        if (out) {
            *o += fleet_mp_put_bin_head(out + *o, n);
            if (n) memcpy(out + *o, p + *off, n);
            *o += n;
        }
        *off += n;
        return 0;
    }
    *off += h.skip;
    if (out) {
        memcpy(out + *o, p + start, *off - start);
        *o += *off - start;
    }
    for (uint64_t i = 0; i < h.items; i++)
        if (client_walk(p, len, off, depth + 1, out, o, nf32, err, errlen) < 0) return -1;
    return 0;
}

int fleet_msgpack_for_client(const char *buf, size_t len, char **out, size_t *outlen, char *err,
                             size_t errlen) {
    *out = NULL;
    *outlen = len;
    if (!buf || len == 0) {
        fleet_err(err, errlen, "empty msgpack data");
        return -1;
    }
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = 0, nf32 = 0;
    if (client_walk(p, len, &off, 0, NULL, NULL, &nf32, err, errlen) < 0) return -1;
    if (off != len) {
        fleet_err(err, errlen, "%zu trailing bytes after the msgpack value", len - off);
        return -1;
    }
    if (nf32 == 0) return 0; /* nothing to rewrite: the caller sends buf itself */
    /* A bin header is never longer than the ext header it replaces (fixext: 2 bytes,
     * ext8/16/32: 3/4/6), so len bytes are enough. */
    unsigned char *o = malloc(len);
    if (!o) {
        fleet_err(err, errlen, "out of memory");
        return -1;
    }
    size_t w = 0;
    off = 0;
    nf32 = 0;
    if (client_walk(p, len, &off, 0, o, &w, &nf32, err, errlen) < 0) { /* cannot happen */
        free(o);
        return -1;
    }
    *out = (char *)o;
    *outlen = w;
    return 0;
}
