/* result_file.c: results that download as files (result_file.h). Pure. */
#include "result_file.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fleet/msgpack_wire.h"
#include "fleet/utf8.h"

/* ------------------------------------------------------------ media types ----------- */

/* RFC 6838 restricted-name: 1..127 characters, the first a letter or digit. */
static size_t restricted_name(const char *s, size_t n) {
    size_t i = 0;
    for (; i < n && i < 127; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !strchr("!#$&-^_.+", c) || !c)) break;
    }
    return i;
}

static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool gw_media_type_valid(const char *s, size_t n) {
    if (n == 0 || n > GW_RESULT_CTYPE_MAX) return false;
    size_t i = restricted_name(s, n);
    if (i == 0 || i >= n || s[i] != '/') return false;
    size_t j = restricted_name(s + i + 1, n - i - 1);
    if (j == 0) return false;
    i += 1 + j;
    /* *( OWS ";" OWS name "=" ( token / quoted-string ) ) */
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == n || s[i] != ';') return false;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        size_t k = i;
        while (i < n && is_tchar((unsigned char)s[i])) i++;
        if (i == k || i == n || s[i] != '=') return false;
        i++;
        if (i < n && s[i] == '"') {
            for (i++;; i++) {
                if (i >= n) return false;
                unsigned char c = (unsigned char)s[i];
                if (c == '"') break;
                if (c == '\\') c = (unsigned char)(++i < n ? s[i] : 0);
                if (c != '\t' && (c < 0x20 || c > 0x7e)) return false;
            }
            i++;
        } else {
            k = i;
            while (i < n && is_tchar((unsigned char)s[i])) i++;
            if (i == k) return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ the convention -------- */

typedef struct rd {
    const unsigned char *p;
    size_t len, off;
} rd;

/* Reads a str (want FLEET_MP_STR) or a bin (FLEET_MP_BIN) whose bytes all lie in r; false
 * if it is something else or runs past the end. */
static bool rd_bytes(rd *r, fleet_mp_type want, const char **s, size_t *n) {
    fleet_mp_head h;
    if (fleet_mp_read_head(r->p, r->len, &r->off, &h) != FLEET_MP_OK || h.type != want)
        return false;
    *s = (const char *)r->p + r->off;
    *n = (size_t)h.n;
    r->off += (size_t)h.n;
    return true;
}

static bool key_is(const char *k, size_t kn, const char *name) {
    return kn == strlen(name) && memcmp(k, name, kn) == 0;
}

/* The whole buffer is one window: the probe reads it in one step, or in two around the
 * file's bytes. */
bool gw_result_file(const char *mp, size_t len, gw_result_file_view *out) {
    memset(out, 0, sizeof *out);
    if (!mp || len == 0) return false;
    gw_result_file_probe p = {.total = len};
    int rc;
    while ((rc = gw_result_file_probe_step(&p, mp + p.pos, (size_t)(len - p.pos))) == 2) {
    }
    if (rc != 1) return false;
    *out = p.view;
    out->bytes = mp + p.bytes_off;
    out->len = (size_t)p.bytes_len;
    return true;
}

int gw_result_file_probe_step(gw_result_file_probe *p, const char *win, size_t n) {
    rd r = {(const unsigned char *)win, n, 0};
    if (!p->started) {
        fleet_mp_head h;
        if (fleet_mp_read_head(r.p, r.len, &r.off, &h) != FLEET_MP_OK || h.type != FLEET_MP_MAP)
            return 0;
        if (h.n != 2 && h.n != 3) return 0;
        p->count = h.n;
        p->started = true;
    }
    while (p->done < p->count) {
        const char *k, *v;
        size_t kn, vn;
        if (!rd_bytes(&r, FLEET_MP_STR, &k, &kn)) return 0;
        p->done++;
        if (key_is(k, kn, "content_type") && !p->have_type) {
            if (!rd_bytes(&r, FLEET_MP_STR, &v, &vn) || !gw_media_type_valid(v, vn)) return 0;
            memcpy(p->view.content_type, v, vn);
            p->view.content_type[vn] = '\0';
            p->have_type = true;
        } else if (key_is(k, kn, "filename") && !p->have_name) {
            if (!rd_bytes(&r, FLEET_MP_STR, &v, &vn) || vn == 0 || vn > GW_RESULT_FILENAME_MAX ||
                !fleet_utf8_valid(v, vn))
                return 0;
            for (size_t j = 0; j < vn; j++)
                if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f) return 0;
            memcpy(p->view.filename, v, vn);
            p->view.filename[vn] = '\0';
            p->have_name = true;
        } else if (key_is(k, kn, "bytes") && !p->have_bytes) {
            /* only the bin's header: its bytes are skipped, and read when sent */
            fleet_mp_head h;
            if (r.off >= r.len ||
                fleet_mp_head_decode(r.p + r.off, r.len - r.off, &h) != FLEET_MP_OK ||
                h.type != FLEET_MP_BIN)
                return 0;
            r.off += h.hlen;
            uint64_t len = h.n;
            unsigned long long at = p->pos + r.off;
            if (len > p->total - at) return 0;
            p->bytes_off = at;
            p->bytes_len = len;
            p->have_bytes = true;
            p->pos = at + len;
            if (p->done < p->count) return 2;
            break;
        } else {
            return 0; /* another key, or one of ours twice */
        }
        if (p->done == p->count) p->pos += r.off;
    }
    return p->pos == p->total && p->have_type && p->have_bytes ? 1 : 0;
}

/* ------------------------------------------------------------ Content-Disposition --- */

/* Length of the UTF-8 character at s (n bytes left): 1 for a byte that starts none. */
static size_t char_len(const unsigned char *s, size_t n) {
    size_t k = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 1;
    if (k > n || !fleet_utf8_valid((const char *)s, k)) return 1;
    return k;
}

/* RFC 8187 attr-char. */
static bool is_attr_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c));
}

void gw_content_disposition(const char *filename, char *out, size_t outlen) {
    if (!outlen) return;
    const unsigned char *s = (const unsigned char *)filename;
    size_t n = filename ? strlen(filename) : 0;
    if (n > GW_RESULT_FILENAME_MAX) { /* cut at a character boundary */
        size_t cut = 0;
        while (cut < n) {
            size_t k = char_len(s + cut, n - cut);
            if (cut + k > GW_RESULT_FILENAME_MAX) break;
            cut += k;
        }
        n = cut;
    }
    char plain[GW_RESULT_FILENAME_MAX + 1], ext[3 * GW_RESULT_FILENAME_MAX + 1];
    size_t pn = 0, en = 0;
    for (size_t i = 0; i < n;) {
        size_t k = char_len(s + i, n - i);
        unsigned char c = s[i];
        if (k > 1 || c >= 0x80 || c == '%') plain[pn++] = '_';
        else if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') plain[pn++] = (char)c;
        i += k;
    }
    plain[pn] = '\0';
    bool utf8 = fleet_utf8_valid(filename ? filename : "", n);
    for (size_t i = 0; utf8 && i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c == 0x7f) continue;
        if (is_attr_char(c)) ext[en++] = (char)c;
        else en += (size_t)snprintf(ext + en, 4, "%%%02X", c);
    }
    ext[en] = '\0';
    if (pn == 0 && en > 0) memcpy(plain, "download", (pn = 8) + 1);
    int w = -1;
    if (pn && en)
        w = snprintf(out, outlen, "attachment; filename=\"%s\"; filename*=UTF-8''%s", plain, ext);
    if ((w < 0 || (size_t)w >= outlen) && pn)
        w = snprintf(out, outlen, "attachment; filename=\"%s\"", plain);
    if (w < 0 || (size_t)w >= outlen) snprintf(out, outlen, "%s", outlen > 10 ? "attachment" : "");
}
