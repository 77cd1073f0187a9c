/* msgpack_wire.c: msgpack headers read and written (msgpack_wire.h). Pure. */
#include "fleet/msgpack_wire.h"

#include <string.h>

/* ------------------------------------------------------------ reading --------------- */

size_t fleet_mp_head_size(unsigned char t) {
    switch (t) {
    case 0xc1: return 0;
    case 0xc4:
    case 0xd9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return 2;
    case 0xc5:
    case 0xda:
    case 0xdc:
    case 0xde:
    case 0xc7: return 3;
    case 0xc8: return 4;
    case 0xc6:
    case 0xdb:
    case 0xdd:
    case 0xdf: return 5;
    case 0xc9: return 6;
    default: return 1;
    }
}

bool fleet_mp_is_container(unsigned char t) {
    return (t >= 0x80 && t <= 0x9f) || (t >= 0xdc && t <= 0xdf);
}

static uint64_t be(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int fleet_mp_head_decode(const unsigned char *p, size_t avail, fleet_mp_head *h) {
    unsigned char t = p[0];
    *h = (fleet_mp_head){.marker = t, .hlen = fleet_mp_head_size(t)};
    if (h->hlen == 0) return FLEET_MP_BAD;
    /* a header cut short still tells its type: read its fields from zeros */
    unsigned char whole[6] = {0};
    if (avail < h->hlen) memcpy(whole, p, avail);
    const unsigned char *f = (avail < h->hlen ? whole : p) + 1; /* the length field */
    if (t <= 0x7f || t >= 0xe0) {
        h->type = FLEET_MP_INT;
    } else if (t <= 0x8f) {
        h->type = FLEET_MP_MAP;
        h->n = t & 0x0f;
    } else if (t <= 0x9f) {
        h->type = FLEET_MP_ARRAY;
        h->n = t & 0x0f;
    } else if (t <= 0xbf) {
        h->type = FLEET_MP_STR;
        h->n = t & 0x1f;
    } else if (t == 0xc0) {
        h->type = FLEET_MP_NIL;
    } else if (t == 0xc2 || t == 0xc3) {
        h->type = FLEET_MP_BOOL;
    } else if (t >= 0xc4 && t <= 0xc6) {
        h->type = FLEET_MP_BIN;
        h->n = be(f, h->hlen - 1);
    } else if (t >= 0xc7 && t <= 0xc9) { /* ext 8/16/32: length, type, payload */
        h->type = FLEET_MP_EXT;
        h->n = be(f, h->hlen - 2);
        h->ext_type = (int8_t)f[h->hlen - 2];
    } else if (t == 0xca || t == 0xcb) {
        h->type = FLEET_MP_FLOAT;
        h->skip = t == 0xca ? 4 : 8;
    } else if (t >= 0xcc && t <= 0xd3) { /* uint 8..64, int 8..64 */
        h->type = FLEET_MP_INT;
        h->skip = (uint64_t)1 << ((t - 0xcc) % 4);
    } else if (t >= 0xd4 && t <= 0xd8) { /* fixext 1..16: type, payload */
        h->type = FLEET_MP_EXT;
        h->n = (uint64_t)1 << (t - 0xd4);
        h->ext_type = (int8_t)f[0];
    } else if (t >= 0xd9 && t <= 0xdb) {
        h->type = FLEET_MP_STR;
        h->n = be(f, h->hlen - 1);
    } else if (t == 0xdc || t == 0xdd) {
        h->type = FLEET_MP_ARRAY;
        h->n = be(f, h->hlen - 1);
    } else { /* 0xde, 0xdf */
        h->type = FLEET_MP_MAP;
        h->n = be(f, h->hlen - 1);
    }
    if (h->type == FLEET_MP_STR || h->type == FLEET_MP_BIN || h->type == FLEET_MP_EXT)
        h->skip = h->n;
    else if (h->type == FLEET_MP_ARRAY) h->items = h->n;
    else if (h->type == FLEET_MP_MAP) h->items = 2 * h->n; /* n < 2^32: no overflow */
    return avail < h->hlen ? FLEET_MP_TRUNCATED : FLEET_MP_OK;
}

int fleet_mp_read_head(const unsigned char *p, size_t len, size_t *off, fleet_mp_head *h) {
    if (*off >= len) {
        *h = (fleet_mp_head){0};
        return FLEET_MP_TRUNCATED;
    }
    int rc = fleet_mp_head_decode(p + *off, len - *off, h);
    if (rc != FLEET_MP_OK) return rc;
    *off += h->hlen;
    size_t left = len - *off;
    /* every item takes at least one byte */
    if (h->skip > left || h->items > left) return FLEET_MP_TRUNCATED;
    return FLEET_MP_OK;
}

const char *fleet_mp_type_name(unsigned char t) {
    if (t <= 0x7f || t >= 0xe0) return "an integer";
    if (t <= 0x8f || t == 0xde || t == 0xdf) return "a map";
    if (t <= 0x9f || t == 0xdc || t == 0xdd) return "an array";
    if (t <= 0xbf || (t >= 0xd9 && t <= 0xdb)) return "a string";
    switch (t) {
    case 0xc0: return "nil";
    case 0xc2:
    case 0xc3: return "a boolean";
    case 0xc4:
    case 0xc5:
    case 0xc6: return "binary data";
    case 0xca:
    case 0xcb: return "a float";
    case 0xc1: return "an unused byte (0xc1)";
    }
    if (t >= 0xcc && t <= 0xd3) return "an integer";
    return "an ext value";
}

/* ------------------------------------------------------------ writing --------------- */

/* marker, then v in n big-endian bytes */
static size_t put_be(unsigned char *o, unsigned char marker, uint64_t v, int n) {
    if (o) {
        o[0] = marker;
        for (int i = 0; i < n; i++) o[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    }
    return 1 + (size_t)n;
}

size_t fleet_mp_put_uint(unsigned char *o, uint64_t v) {
    if (v < 128) {
        if (o) o[0] = (unsigned char)v;
        return 1;
    }
    if (v <= UINT8_MAX) return put_be(o, 0xcc, v, 1);
    if (v <= UINT16_MAX) return put_be(o, 0xcd, v, 2);
    if (v <= UINT32_MAX) return put_be(o, 0xce, v, 4);
    return put_be(o, 0xcf, v, 8);
}

/* A map (fix 0x80, 0xde) or array (0x90, 0xdc) header of n entries. */
static size_t put_container(unsigned char *o, unsigned char fix, unsigned char m16, uint64_t n) {
    if (n < 16) {
        if (o) o[0] = (unsigned char)(fix | n);
        return 1;
    }
    if (n <= UINT16_MAX) return put_be(o, m16, n, 2);
    return put_be(o, (unsigned char)(m16 + 1), n, 4);
}

size_t fleet_mp_put_map(unsigned char *o, uint64_t entries) {
    return put_container(o, 0x80, 0xde, entries);
}

size_t fleet_mp_put_array(unsigned char *o, uint64_t items) {
    return put_container(o, 0x90, 0xdc, items);
}

size_t fleet_mp_put_str(unsigned char *o, const char *s, size_t n) {
    size_t h;
    if (n < 32) {
        if (o) o[0] = (unsigned char)(0xa0 | n);
        h = 1;
    } else if (n <= UINT8_MAX) {
        h = put_be(o, 0xd9, n, 1);
    } else if (n <= UINT16_MAX) {
        h = put_be(o, 0xda, n, 2);
    } else {
        h = put_be(o, 0xdb, n, 4);
    }
    if (o && n) memcpy(o + h, s, n);
    return h + n;
}

size_t fleet_mp_put_bin_head(unsigned char *o, uint64_t n) {
    if (n <= UINT8_MAX) return put_be(o, 0xc4, n, 1);
    if (n <= UINT16_MAX) return put_be(o, 0xc5, n, 2);
    return put_be(o, 0xc6, n, 4);
}

size_t fleet_mp_put_bin(unsigned char *o, const void *s, size_t n) {
    size_t h = fleet_mp_put_bin_head(o, n);
    if (o && n) memcpy(o + h, s, n);
    return h + n;
}
