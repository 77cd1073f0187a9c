/* result_file.c: results that download as files (result_file.h). Pure. */
#include "result_file.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

static bool rd_be(rd *r, int n, uint64_t *v) {
    if (r->len - r->off < (size_t)n) return false;
    *v = 0;
    for (int i = 0; i < n; i++) *v = (*v << 8) | r->p[r->off++];
    return true;
}

/* Reads a str (want_bin false) or a bin (true); false if it is something else. */
static bool rd_bytes(rd *r, bool want_bin, const char **s, size_t *n) {
    if (r->off >= r->len) return false;
    unsigned char t = r->p[r->off++];
    uint64_t len;
    if (!want_bin && t >= 0xa0 && t <= 0xbf) len = t & 0x1f;
    else if (!want_bin && t >= 0xd9 && t <= 0xdb) {
        if (!rd_be(r, 1 << (t - 0xd9), &len)) return false;
    } else if (want_bin && t >= 0xc4 && t <= 0xc6) {
        if (!rd_be(r, 1 << (t - 0xc4), &len)) return false;
    } else {
        return false;
    }
    if (r->len - r->off < len) return false;
    *s = (const char *)r->p + r->off;
    *n = (size_t)len;
    r->off += (size_t)len;
    return true;
}

static bool key_is(const char *k, size_t kn, const char *name) {
    return kn == strlen(name) && memcmp(k, name, kn) == 0;
}

static bool read_file_map(const char *mp, size_t len, gw_result_file_view *out) {
    if (!mp || len == 0) return false;
    rd r = {(const unsigned char *)mp, len, 1};
    unsigned char t = r.p[0];
    uint64_t count;
    if (t >= 0x80 && t <= 0x8f) count = t & 0x0f;
    else if (t == 0xde || t == 0xdf) {
        if (!rd_be(&r, t == 0xde ? 2 : 4, &count)) return false;
    } else {
        return false;
    }
    if (count != 2 && count != 3) return false;
    bool have_type = false, have_bytes = false, have_name = false;
    for (uint64_t i = 0; i < count; i++) {
        const char *k, *v;
        size_t kn, vn;
        if (!rd_bytes(&r, false, &k, &kn)) return false;
        if (key_is(k, kn, "content_type") && !have_type) {
            if (!rd_bytes(&r, false, &v, &vn) || !gw_media_type_valid(v, vn)) return false;
            memcpy(out->content_type, v, vn);
            out->content_type[vn] = '\0';
            have_type = true;
        } else if (key_is(k, kn, "bytes") && !have_bytes) {
            if (!rd_bytes(&r, true, &out->bytes, &out->len)) return false;
            have_bytes = true;
        } else if (key_is(k, kn, "filename") && !have_name) {
            if (!rd_bytes(&r, false, &v, &vn) || vn == 0 || vn > GW_RESULT_FILENAME_MAX ||
                !fleet_utf8_valid(v, vn))
                return false;
            for (size_t j = 0; j < vn; j++)
                if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f) return false;
            memcpy(out->filename, v, vn);
            out->filename[vn] = '\0';
            have_name = true;
        } else {
            return false; /* another key, or one of ours twice */
        }
    }
    return r.off == len && have_type && have_bytes;
}

bool gw_result_file(const char *mp, size_t len, gw_result_file_view *out) {
    memset(out, 0, sizeof *out);
    if (read_file_map(mp, len, out)) return true;
    memset(out, 0, sizeof *out);
    return false;
}

int gw_result_file_probe_step(gw_result_file_probe *p, const char *win, size_t n) {
    rd r = {(const unsigned char *)win, n, 0};
    if (!p->started) {
        if (n == 0) return 0;
        unsigned char t = r.p[r.off++];
        uint64_t count;
        if (t >= 0x80 && t <= 0x8f) count = t & 0x0f;
        else if (t == 0xde || t == 0xdf) {
            if (!rd_be(&r, t == 0xde ? 2 : 4, &count)) return 0;
        } else {
            return 0;
        }
        if (count != 2 && count != 3) return 0;
        p->count = count;
        p->started = true;
    }
    while (p->done < p->count) {
        const char *k, *v;
        size_t kn, vn;
        if (!rd_bytes(&r, false, &k, &kn)) return 0;
        p->done++;
        if (key_is(k, kn, "content_type") && !p->have_type) {
            if (!rd_bytes(&r, false, &v, &vn) || !gw_media_type_valid(v, vn)) return 0;
            memcpy(p->view.content_type, v, vn);
            p->view.content_type[vn] = '\0';
            p->have_type = true;
        } else if (key_is(k, kn, "filename") && !p->have_name) {
            if (!rd_bytes(&r, false, &v, &vn) || vn == 0 || vn > GW_RESULT_FILENAME_MAX ||
                !fleet_utf8_valid(v, vn))
                return 0;
            for (size_t j = 0; j < vn; j++)
                if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f) return 0;
            memcpy(p->view.filename, v, vn);
            p->view.filename[vn] = '\0';
            p->have_name = true;
        } else if (key_is(k, kn, "bytes") && !p->have_bytes) {
            /* only the bin's header: its bytes are skipped, and read when sent */
            if (r.off >= r.len) return 0;
            unsigned char t = r.p[r.off++];
            uint64_t len;
            if (t < 0xc4 || t > 0xc6 || !rd_be(&r, 1 << (t - 0xc4), &len)) return 0;
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
    if (pn && en) w = snprintf(out, outlen, "attachment; filename=\"%s\"; filename*=UTF-8''%s",
                               plain, ext);
    if ((w < 0 || (size_t)w >= outlen) && pn)
        w = snprintf(out, outlen, "attachment; filename=\"%s\"", plain);
    if (w < 0 || (size_t)w >= outlen) snprintf(out, outlen, "%s",
                                                outlen > 10 ? "attachment" : "");
}
