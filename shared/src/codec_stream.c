/* codec_stream.c: msgpack to JSON / client msgpack, a range at a time (codec_stream.h).
 * Pure. Headers are decoded by msgpack_wire.c; the rules mirror codec.c's read_head,
 * to_json and client_walk; tests/unit/codec_stream_test.c checks the output against them
 * byte for byte. */
#include "fleet/codec_stream.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/err.h"
#include "fleet/msgpack_wire.h"

/* One open container. */
typedef struct frame {
    uint64_t left; /* items still to start (a map counts keys and values) */
    bool map;
    bool first;     /* no item written yet */
    bool key_bad;   /* the key just read cannot be a JSON key: reported after its value */
    uint64_t *keys; /* JSON mode: hashes of this map's keys (open addressing, 0 empty) */
    size_t nkeys, cap;
} frame;

typedef enum st {
    ST_HEAD,   /* reading a header into hdr */
    ST_SCALAR, /* reading a number's payload into hdr */
    ST_STR,    /* inside a str's bytes */
    ST_BIN,    /* inside a bin's bytes */
    ST_F32,    /* inside an ext-1 payload */
    ST_SKIP,   /* inside another ext's payload (JSON mode: already an error) */
    ST_DONE,
} st;

struct fleet_mps {
    fleet_mps_mode mode;
    uint64_t total, off; /* bytes of the value; bytes consumed */
    fleet_mps_sink sink;
    void *arg;
    uint64_t out_len;
    char out[FLEET_MPS_OUTBUF];
    size_t outn;
    frame stack[FLEET_CODEC_MAX_DEPTH + 1];
    int depth; /* open containers */
    st state;
    unsigned char hdr[16];
    size_t hlen, hneed;
    uint64_t left; /* payload bytes still to come in ST_SCALAR/STR/BIN/F32/SKIP */
    unsigned char marker;
    bool is_key; /* the str being read is a map key */
    uint64_t key_hash;
    bool key_nul;
    /* UTF-8 of the str being read: continuation bytes still expected, and the character */
    int u_need, u_size;
    uint32_t u_val;
    bool u_bad;
    /* base64 of a bin / float32 of an ext-1: bytes carried into the next range */
    unsigned char carry[4];
    size_t ncarry;
    uint32_t f32_index;
    size_t keys_open; /* hashes held across the stack */
    bool sem_err;     /* JSON: a semantic error is known (err holds it) */
    bool fatal;       /* the walk stopped (err holds why) */
    bool whole;       /* JSON: fall back to the whole document */
    char err[160];
};

/* ------------------------------------------------------------ errors and output ----- */

static void set_err(fleet_mps *s, bool structural, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(fleet_mps *s, bool structural, const char *fmt, ...) {
    if (s->fatal || (!structural && s->sem_err)) return;
    va_list ap;
    va_start(ap, fmt);
    fleet_verr(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    if (structural || s->mode == FLEET_MPS_CLIENT) s->fatal = true;
    else s->sem_err = true;
}

static void flush(fleet_mps *s) {
    if (s->outn && s->sink) s->sink(s->arg, s->out, s->outn);
    s->outn = 0;
}

static void put(fleet_mps *s, const void *p, size_t n) {
    if (s->fatal || s->sem_err || s->whole) return;
    s->out_len += n;
    const char *c = p;
    while (n) {
        size_t k = sizeof s->out - s->outn;
        if (k > n) k = n;
        memcpy(s->out + s->outn, c, k);
        s->outn += k;
        c += k;
        n -= k;
        if (s->outn == sizeof s->out) flush(s);
    }
}

static void putc1(fleet_mps *s, char c) { put(s, &c, 1); }

/* jansson's real format: %.17g, ".0" when it reads as an integer, no '+' or leading zeros
 * in the exponent (jsonp_dtostr). */
static void put_real(fleet_mps *s, double v) {
    char b[48];
    int n = snprintf(b, sizeof b, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof b - 3) return;
    size_t len = (size_t)n;
    if (!strchr(b, '.') && !strchr(b, 'e')) {
        memcpy(b + len, ".0", 3);
        len += 2;
    }
    char *e = strchr(b, 'e');
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - b) + 1);
            len -= (size_t)(end - start);
        }
    }
    put(s, b, len);
}

/* ------------------------------------------------------------ keys ------------------ */

static uint64_t fnv_step(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Adds h to the map's set. Returns false when it was there already or no room is left. */
static bool key_add(fleet_mps *s, frame *f, uint64_t h) {
    if (!h) h = 1;
    if (s->keys_open >= FLEET_MPS_KEYS_MAX) return false;
    if ((f->nkeys + 1) * 2 > f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t) return false;
        for (size_t i = 0; i < f->cap; i++) {
            if (!f->keys[i]) continue;
            size_t j = (size_t)(f->keys[i] & (cap - 1));
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = f->keys[i];
        }
        free(f->keys);
        f->keys = t;
        f->cap = cap;
    }
    size_t j = (size_t)(h & (f->cap - 1));
    while (f->keys[j]) {
        if (f->keys[j] == h) return false;
        j = (j + 1) & (f->cap - 1);
    }
    f->keys[j] = h;
    f->nkeys++;
    s->keys_open++;
    return true;
}

static void frame_release(fleet_mps *s, frame *f) {
    s->keys_open -= f->nkeys;
    free(f->keys);
    *f = (frame){0};
}

/* ------------------------------------------------------------ the walk -------------- */

static bool json(const fleet_mps *s) { return s->mode == FLEET_MPS_JSON; }

/* A value ended: closes every container whose last item it was. */
static void value_done(fleet_mps *s) {
    while (s->depth > 0) {
        frame *f = &s->stack[s->depth - 1];
        if (f->map && f->key_bad && f->left % 2 == 0) {
            /* a key's problem shows once its value converted (codec.c to_json) */
            f->key_bad = false;
            set_err(s, false, "map key is not valid UTF-8 or holds a NUL");
        }
        if (f->left) return;
        if (json(s)) putc1(s, f->map ? '}' : ']');
        frame_release(s, f);
        s->depth--;
    }
    s->state = ST_DONE;
    if (s->off < s->total)
        set_err(s, true, "%llu trailing bytes after the msgpack value",
                (unsigned long long)(s->total - s->off));
}

/* Where the next value goes: its separator, and whether it is a map key. */
static void item_start(fleet_mps *s) {
    s->is_key = false;
    if (s->depth == 0) return;
    frame *f = &s->stack[s->depth - 1];
    bool key = f->map && f->left % 2 == 0;
    f->left--;
    if (!json(s)) return;
    if (f->map && !key) {
        putc1(s, ':');
    } else {
        if (!f->first) putc1(s, ',');
        f->first = false;
    }
    s->is_key = key;
}

static uint64_t be(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static void open_container(fleet_mps *s, bool map, uint64_t n) {
    frame *f = &s->stack[s->depth++];
    *f = (frame){.left = map ? 2 * n : n, .map = map, .first = true};
    if (json(s)) putc1(s, map ? '{' : '[');
    if (n == 0) value_done(s);
}

static void start_str(fleet_mps *s, uint64_t n) {
    s->state = ST_STR;
    s->left = n;
    s->u_need = 0;
    s->u_bad = false;
    s->key_nul = false;
    s->key_hash = 0xcbf29ce484222325ull;
    if (json(s)) putc1(s, '"');
}

static void str_end(fleet_mps *s) {
    if (json(s)) {
        putc1(s, '"');
        if (s->u_need) s->u_bad = true; /* a character cut by the end of the string */
        if (s->is_key) {
            frame *f = &s->stack[s->depth - 1];
            if (s->u_bad || s->key_nul) f->key_bad = true;
            else if (!key_add(s, f, s->key_hash)) s->whole = true;
        } else if (s->u_bad) {
            set_err(s, false, "string is not valid UTF-8");
        }
    }
    value_done(s);
}

static void b64_group(fleet_mps *s, const unsigned char *p, size_t n) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned v = (unsigned)p[0] << 16;
    if (n > 1) v |= (unsigned)p[1] << 8;
    if (n > 2) v |= p[2];
    char o[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63], n > 1 ? b64[(v >> 6) & 63] : '=',
                 n > 2 ? b64[v & 63] : '='};
    put(s, o, 4);
}

static void bin_end(fleet_mps *s) {
    if (json(s)) {
        if (s->ncarry) b64_group(s, s->carry, s->ncarry);
        putc1(s, '"');
    }
    s->ncarry = 0;
    value_done(s);
}

static void f32_item(fleet_mps *s, const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    if (!isfinite(f)) {
        set_err(s, false, "float32 array item %u is not finite (NaN or infinity)", s->f32_index);
    } else {
        if (s->f32_index) putc1(s, ',');
        put_real(s, (double)f);
    }
    s->f32_index++;
}

static void f32_end(fleet_mps *s) {
    if (json(s)) putc1(s, ']');
    s->ncarry = 0;
    value_done(s);
}

/* A scalar's payload is complete in hdr[1..]. */
static void scalar_end(fleet_mps *s) {
    unsigned char t = s->marker;
    const unsigned char *p = s->hdr + 1;
    if (json(s)) {
        char b[32];
        if (t == 0xca) {
            uint32_t u = (uint32_t)be(p, 4);
            float f;
            memcpy(&f, &u, sizeof f);
            if (!isfinite(f)) set_err(s, false, "float is not finite (NaN or infinity)");
            else put_real(s, (double)f);
        } else if (t == 0xcb) {
            uint64_t u = be(p, 8);
            double d;
            memcpy(&d, &u, sizeof d);
            if (!isfinite(d)) set_err(s, false, "float is not finite (NaN or infinity)");
            else put_real(s, d);
        } else if (t >= 0xcc && t <= 0xcf) {
            uint64_t u = be(p, (size_t)1 << (t - 0xcc));
            if (u > (uint64_t)INT64_MAX) put_real(s, (double)u);
            else put(s, b, (size_t)snprintf(b, sizeof b, "%lld", (long long)u));
        } else { /* 0xd0..0xd3: signed */
            size_t n = (size_t)1 << (t - 0xd0);
            uint64_t u = be(p, n);
            int64_t v;
            if (n == 8) memcpy(&v, &u, sizeof v);
            else if (u >> (8 * n - 1)) v = (int64_t)u - (int64_t)((uint64_t)1 << (8 * n));
            else v = (int64_t)u;
            put(s, b, (size_t)snprintf(b, sizeof b, "%lld", (long long)v));
        }
    }
    value_done(s);
}

/* The header in hdr[0..hlen) is complete: checks it and starts the value. */
static void head_end(fleet_mps *s) {
    unsigned char t = s->hdr[0];
    fleet_mp_head h;
    fleet_mp_head_decode(s->hdr, s->hlen, &h); /* complete: head_begin refused 0xc1 */
    size_t hl = s->hlen;
    s->hlen = 0; /* the next header starts afresh (a scalar's payload refills hdr[1..]) */
    s->marker = t;
    bool key = s->is_key;
    if (key && json(s) && !((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb))) {
        set_err(s, false, "map key is not a string");
        s->is_key = false;
    }
    /* fixed values */
    if (t <= 0x7f || t >= 0xe0) {
        if (json(s)) {
            char b[8];
            put(s, b, (size_t)snprintf(b, sizeof b, "%d", t <= 0x7f ? t : (int)t - 256));
        } else {
            put(s, s->hdr, 1);
        }
        value_done(s);
        return;
    }
    if (t == 0xc0 || t == 0xc2 || t == 0xc3) {
        if (json(s))
            put(s,
                t == 0xc0   ? "null"
                : t == 0xc2 ? "false"
                            : "true",
                t == 0xc0   ? 4
                : t == 0xc2 ? 5
                            : 4);
        else put(s, s->hdr, 1);
        value_done(s);
        return;
    }
    uint64_t remain = s->total - s->off;
    if (h.type == FLEET_MP_ARRAY || h.type == FLEET_MP_MAP) {
        if (h.items > remain) {
            set_err(s, true, "truncated msgpack data");
            return;
        }
        if (!json(s)) put(s, s->hdr, hl);
        open_container(s, h.type == FLEET_MP_MAP, h.n);
        return;
    }
    if (h.type == FLEET_MP_STR || h.type == FLEET_MP_BIN) {
        uint64_t n = h.n;
        if (n > remain) {
            set_err(s, true, "truncated msgpack data");
            return;
        }
        if (!json(s)) put(s, s->hdr, hl);
        if (h.type == FLEET_MP_BIN) {
            s->state = ST_BIN;
            s->left = n;
            s->ncarry = 0;
            if (json(s)) putc1(s, '"');
        } else {
            start_str(s, n);
        }
        return;
    }
    if (h.type == FLEET_MP_FLOAT || h.type == FLEET_MP_INT) { /* fixints returned above */
        uint64_t n = h.skip;
        if (n > remain) {
            set_err(s, true, "truncated msgpack data");
            return;
        }
        if (!json(s)) put(s, s->hdr, 1);
        s->state = ST_SCALAR;
        s->left = n;
        s->hlen = 1;
        return;
    }
    /* ext: fixext (type follows the marker) or ext8/16/32 (length, then type) */
    uint64_t n = h.n;
    int type = h.ext_type;
    if (n > remain) {
        set_err(s, true, "truncated msgpack data");
        return;
    }
    s->left = n;
    s->ncarry = 0;
    s->f32_index = 0;
    if (type != FLEET_EXT_F32) {
        if (json(s)) set_err(s, false, "msgpack ext type %d has no JSON form", type);
        else
            set_err(s, false, "msgpack ext type %d has no client form (only type %d does)", type,
                    FLEET_EXT_F32);
        s->state = ST_SKIP;
        return;
    }
    if (s->depth >= FLEET_CODEC_MAX_DEPTH || n % 4) {
        if (s->depth >= FLEET_CODEC_MAX_DEPTH)
            set_err(s, false, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
        else
            set_err(s, false,
                    "msgpack ext type %d (float32 array) holds %llu bytes, not a multiple of 4",
                    FLEET_EXT_F32, (unsigned long long)n);
        s->state = ST_SKIP;
        return;
    }
    if (json(s)) {
        putc1(s, '[');
    } else { /* the client form: a bin of the same payload */
        unsigned char b[5];
        put(s, b, fleet_mp_put_bin_head(b, n));
    }
    s->state = ST_F32;
}

/* The first byte of a header: the checks read_head makes before its length field. */
static void head_begin(fleet_mps *s, unsigned char t) {
    item_start(s);
    s->hdr[0] = t;
    s->hlen = 1;
    s->hneed = t == 0xc1 ? 1 : fleet_mp_head_size(t);
    s->state = ST_HEAD;
    if (t == 0xc1) {
        set_err(s, true, "malformed msgpack data (byte 0x%02x)", t);
        return;
    }
    if (s->depth >= FLEET_CODEC_MAX_DEPTH && fleet_mp_is_container(t)) {
        set_err(s, true, "nesting deeper than %d levels", FLEET_CODEC_MAX_DEPTH);
        return;
    }
    /* s->off is past the marker: the rest of the header must be there */
    if (s->hneed - 1 > s->total - s->off) set_err(s, true, "truncated msgpack data");
}

/* UTF-8 (jansson's rules: no overlongs, surrogates or values past U+10FFFF) of str bytes,
 * written escaped as jansson's dump_string does. */
static void str_bytes(fleet_mps *s, const unsigned char *p, size_t n) {
    bool j = json(s);
    if (!j) {
        put(s, p, n);
        return;
    }
    if (s->is_key) {
        s->key_hash = fnv_step(s->key_hash, p, n);
        if (memchr(p, 0, n)) s->key_nul = true;
    }
    size_t run = 0; /* bytes of p[i - run, i) to copy as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (s->u_need) {
            if (c < 0x80 || c > 0xbf) {
                s->u_bad = true;
                s->u_need = 0;
            } else {
                s->u_val = (s->u_val << 6) | (c & 0x3f);
                if (--s->u_need == 0) {
                    uint32_t v = s->u_val;
                    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) ||
                        (s->u_size == 3 && v < 0x800) || (s->u_size == 4 && v < 0x10000))
                        s->u_bad = true;
                }
                run++;
                continue;
            }
        }
        if (c >= 0x80) {
            if (c < 0xc2 || c > 0xf4) {
                s->u_bad = true;
            } else {
                s->u_size = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
                s->u_need = s->u_size - 1;
                s->u_val = c & (c < 0xe0 ? 0x1f : c < 0xf0 ? 0x0f : 0x07);
            }
            run++;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        put(s, p + i - run, run);
        run = 0;
        char e[8];
        size_t k = 2;
        switch (c) {
        case '\\': memcpy(e, "\\\\", 2); break;
        case '"': memcpy(e, "\\\"", 2); break;
        case '\b': memcpy(e, "\\b", 2); break;
        case '\f': memcpy(e, "\\f", 2); break;
        case '\n': memcpy(e, "\\n", 2); break;
        case '\r': memcpy(e, "\\r", 2); break;
        case '\t': memcpy(e, "\\t", 2); break;
        default: k = (size_t)snprintf(e, sizeof e, "\\u%04X", c); break;
        }
        put(s, e, k);
    }
    put(s, p + n - run, run);
}

static void bin_bytes(fleet_mps *s, const unsigned char *p, size_t n) {
    if (!json(s)) {
        put(s, p, n);
        return;
    }
    while (n && s->ncarry) { /* finish the group carried from the last range */
        s->carry[s->ncarry++] = *p++;
        n--;
        if (s->ncarry == 3) {
            b64_group(s, s->carry, 3);
            s->ncarry = 0;
        }
    }
    size_t whole = n - n % 3;
    for (size_t i = 0; i < whole; i += 3) b64_group(s, p + i, 3);
    for (size_t i = whole; i < n; i++) s->carry[s->ncarry++] = p[i];
}

static void f32_bytes(fleet_mps *s, const unsigned char *p, size_t n) {
    if (!json(s)) {
        put(s, p, n);
        return;
    }
    while (n && s->ncarry) {
        s->carry[s->ncarry++] = *p++;
        n--;
        if (s->ncarry == 4) {
            f32_item(s, s->carry);
            s->ncarry = 0;
        }
    }
    size_t whole = n - n % 4;
    for (size_t i = 0; i < whole && !s->sem_err; i += 4) f32_item(s, p + i);
    for (size_t i = whole; i < n; i++) s->carry[s->ncarry++] = p[i];
}

/* A payload that is complete (at once, when empty) ends its value. */
static void payload_end(fleet_mps *s) {
    if (s->left) return;
    st was = s->state;
    if (was != ST_STR && was != ST_BIN && was != ST_F32 && was != ST_SKIP) return;
    s->state = ST_HEAD;
    s->hlen = 0;
    if (was == ST_STR) str_end(s);
    else if (was == ST_BIN) bin_end(s);
    else if (was == ST_F32) f32_end(s);
    else value_done(s);
}

int fleet_mps_feed(fleet_mps *s, const void *buf, size_t n) {
    const unsigned char *p = buf;
    if (n > s->total - s->off && !s->fatal && !s->whole) {
        if (s->state == ST_DONE)
            set_err(s, true, "%llu trailing bytes after the msgpack value",
                    (unsigned long long)(s->total - s->off + n));
        else set_err(s, true, "more bytes than the %llu announced", (unsigned long long)s->total);
    }
    while (n && !s->fatal && !s->whole && s->state != ST_DONE) {
        size_t k;
        switch (s->state) {
        case ST_HEAD:
            if (s->hlen == 0) { /* a new value */
                s->off++;
                head_begin(s, *p++);
                n--;
                if (s->fatal) break;
            } else {
                k = s->hneed - s->hlen < n ? s->hneed - s->hlen : n;
                memcpy(s->hdr + s->hlen, p, k);
                s->hlen += k;
                s->off += k;
                p += k;
                n -= k;
            }
            if (s->hlen == s->hneed) {
                head_end(s);
                payload_end(s);
            }
            break;
        case ST_SCALAR:
            k = s->left < n ? (size_t)s->left : n;
            if (!json(s)) put(s, p, k);
            memcpy(s->hdr + s->hlen, p, k);
            s->hlen += k;
            s->off += k;
            s->left -= k;
            p += k;
            n -= k;
            if (s->left == 0) {
                s->state = ST_HEAD;
                s->hlen = 0;
                scalar_end(s);
            }
            break;
        default: /* ST_STR, ST_BIN, ST_F32, ST_SKIP */
            k = s->left < n ? (size_t)s->left : n;
            if (s->state == ST_STR) str_bytes(s, p, k);
            else if (s->state == ST_BIN) bin_bytes(s, p, k);
            else if (s->state == ST_F32) f32_bytes(s, p, k);
            s->off += k;
            s->left -= k;
            p += k;
            n -= k;
            payload_end(s);
            break;
        }
    }
    flush(s);
    return s->fatal || s->whole ? -1 : 0;
}

int fleet_mps_finish(fleet_mps *s) {
    if (!s->fatal && !s->whole && s->state != ST_DONE) set_err(s, true, "truncated msgpack data");
    flush(s);
    return s->fatal || s->sem_err || s->whole ? -1 : 0;
}

fleet_mps *fleet_mps_new(fleet_mps_mode mode, uint64_t total, fleet_mps_sink sink, void *arg) {
    fleet_mps *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->mode = mode;
    s->total = total;
    s->sink = sink;
    s->arg = arg;
    s->state = ST_HEAD;
    if (total == 0) set_err(s, true, "empty msgpack data");
    return s;
}

void fleet_mps_free(fleet_mps *s) {
    if (!s) return;
    for (int i = 0; i < s->depth; i++) free(s->stack[i].keys);
    free(s);
}

const char *fleet_mps_error(const fleet_mps *s) { return s->err; }
bool fleet_mps_needs_whole(const fleet_mps *s) { return s->whole; }
uint64_t fleet_mps_out_len(const fleet_mps *s) { return s->out_len; }
