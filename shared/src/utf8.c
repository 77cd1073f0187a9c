/* utf8.c: UTF-8 checks (fleet/utf8.h). */
#include "fleet/utf8.h"

#include <stdint.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (at most n bytes available), or 0. */
static size_t seq_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t k;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) k = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) k = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) k = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < k + 1) return 0;
    for (size_t i = 1; i <= k; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return k + 1;
}

bool fleet_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) { /* fast path for ASCII runs */
            i++;
            continue;
        }
        size_t k = seq_len(p + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

void fleet_utf8_quote(const char *s, size_t n, char *out, size_t outlen) {
    if (!outlen) return;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t k = seq_len(p + i, n - i);
        size_t w = k ? k : 1;
        /* the rest comes out as long as it goes in; if it does not fit, keep room for
         * the "..." that marks the cut */
        size_t room = outlen - 1 - o;
        if (n - i > room && w + 3 > room) {
            if (room >= 3) memcpy(out + o, "...", 3), o += 3;
            break;
        }
        if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)) out[o++] = '?';
        else if (k) memcpy(out + o, p + i, k), o += k;
        else out[o++] = '?';
        i += w;
    }
    out[o] = '\0';
}

size_t fleet_utf8_cut(const char *s, size_t max) {
    size_t n = strnlen(s, max);
    /* Step back over continuation bytes to the start of the last character; keep it
     * only if all of its bytes are within the first n. */
    const unsigned char *p = (const unsigned char *)s;
    size_t start = n;
    while (start > 0 && (p[start - 1] & 0xc0) == 0x80 && n - start < 3) start--;
    if (start == 0) return n;
    unsigned lead = p[start - 1];
    size_t want = lead < 0xc0 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    return n - (start - 1) >= want ? n : start - 1;
}
