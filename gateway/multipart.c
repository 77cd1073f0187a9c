/* multipart.c: multipart/form-data bodies (multipart.h). Pure. */
#include "multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/err.h"
#include "fleet/utf8.h"

/* ------------------------------------------------------------ header parameters ----- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One `; name=value` parameter, its value unquoted. vlen is the value's full length,
 * which may exceed what value holds: callers compare it with their own limit. */
typedef struct mp_param {
    const char *name;
    size_t nlen;
    char value[1024]; /* fits a percent-encoded filename* of GW_MP_FILENAME_MAX bytes */
    size_t vlen;
} mp_param;

static void param_put(mp_param *prm, char c) {
    if (prm->vlen < sizeof prm->value - 1) prm->value[prm->vlen] = c;
    prm->vlen++;
}

static bool param_is(const mp_param *prm, const char *name) {
    return prm->nlen == strlen(name) && strncasecmp(prm->name, name, prm->nlen) == 0;
}

/* Reads the next parameter at *s (before end): OWS ";" OWS name "=" value. A quoted
 * value may escape '"' and '\' with a backslash; any other backslash is kept, as browsers
 * send Windows paths unescaped. Returns 1 and fills prm, 0 when nothing but OWS (or a
 * last ';') is left, -1 when malformed with the reason in *why. */
static int next_param(const char **s, const char *end, mp_param *prm, const char **why) {
    const char *c = *s;
    while (c < end && is_ows(*c)) c++;
    if (c == end) return 0;
    if (*c != ';') {
        *why = "expected ';' before a parameter";
        return -1;
    }
    c++;
    while (c < end && is_ows(*c)) c++;
    if (c == end) {
        *s = c;
        return 0;
    }
    prm->name = c;
    while (c < end && is_tchar((unsigned char)*c)) c++;
    prm->nlen = (size_t)(c - prm->name);
    if (!prm->nlen) {
        *why = "a parameter has no name";
        return -1;
    }
    while (c < end && is_ows(*c)) c++;
    if (c == end || *c != '=') {
        *why = "a parameter has no '=' and value";
        return -1;
    }
    c++;
    while (c < end && is_ows(*c)) c++;
    prm->vlen = 0;
    if (c < end && *c == '"') {
        for (c++;;) {
            if (c == end) {
                *why = "a quoted parameter value has no closing quote";
                return -1;
            }
            char ch = *c++;
            if (ch == '"') break;
            if (ch == '\\' && c < end && (*c == '"' || *c == '\\')) ch = *c++;
            param_put(prm, ch);
        }
    } else {
        const char *v = c;
        while (c < end && *c != ';') c++;
        const char *ve = c;
        while (ve > v && is_ows(ve[-1])) ve--;
        for (; v < ve; v++) param_put(prm, *v);
    }
    prm->value[prm->vlen < sizeof prm->value ? prm->vlen : sizeof prm->value - 1] = '\0';
    *s = c;
    return 1;
}

/* RFC 2046 bchars. */
static bool is_bchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("'()+_,-./:=? ", c));
}

int gw_multipart_boundary(const char *content_type, char *boundary, char *err, size_t errlen) {
    if (!content_type)
        return fleet_err(err, errlen, "a multipart body needs a Content-Type header");
    const char *end = content_type + strlen(content_type);
    const char *s = content_type + strcspn(content_type, ";");
    bool found = false;
    mp_param prm;
    const char *why = NULL;
    int rc;
    while ((rc = next_param(&s, end, &prm, &why)) > 0) {
        if (!param_is(&prm, "boundary")) continue;
        if (found) return fleet_err(err, errlen, "Content-Type has two boundary parameters");
        found = true;
        if (prm.vlen == 0) return fleet_err(err, errlen, "the multipart boundary is empty");
        if (prm.vlen > GW_MP_BOUNDARY_MAX)
            return fleet_err(
                err, errlen,
                "the multipart boundary is %zu characters long; RFC 2046 allows 1 to %d", prm.vlen,
                GW_MP_BOUNDARY_MAX);
        for (size_t i = 0; i < prm.vlen; i++)
            if (!is_bchar((unsigned char)prm.value[i]))
                return fleet_err(
                    err, errlen,
                    "the multipart boundary has a character RFC 2046 does not allow "
                    "(byte 0x%02x at position %zu); use letters, digits and '()+_,-./:=?",
                    (unsigned char)prm.value[i], i + 1);
        if (prm.value[prm.vlen - 1] == ' ')
            return fleet_err(err, errlen, "the multipart boundary must not end in a space");
        memcpy(boundary, prm.value, prm.vlen + 1);
    }
    if (rc < 0) return fleet_err(err, errlen, "the Content-Type parameters are malformed: %s", why);
    if (!found)
        return fleet_err(err, errlen,
                         "Content-Type multipart/form-data needs a boundary parameter "
                         "(multipart/form-data; boundary=...)");
    return 0;
}

/* ------------------------------------------------------------ part headers ---------- */

/* Decodes an RFC 8187 ext-value (charset'language'pct-encoded) into out (outsize bytes).
 * Only UTF-8 is read. Returns the decoded length, or -1. */
static long ext_value(const char *v, size_t n, char *out, size_t outsize) {
    const char *q1 = memchr(v, '\'', n);
    if (!q1 || q1 - v != 5 || strncasecmp(v, "UTF-8", 5) != 0) return -1;
    const char *q2 = memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v));
    if (!q2) return -1;
    size_t o = 0;
    for (const char *c = q2 + 1; c < v + n; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '%') {
            unsigned x = 0;
            for (int k = 1; k <= 2; k++) {
                if (c + k >= v + n) return -1;
                char h = c[k];
                x <<= 4;
                if (h >= '0' && h <= '9') x |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f') x |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F') x |= (unsigned)(h - 'A' + 10);
                else return -1;
            }
            if (!x) return -1; /* a NUL cannot be part of a name */
            ch = (unsigned char)x;
            c += 2;
        }
        if (o + 1 >= outsize) return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (long)o;
}

/* Names the part in messages: "part 3" or "part 3 ('files')". */
static const char *part_label(size_t k, const gw_mp_part *pt, char *buf, size_t size) {
    if (!pt->name[0]) {
        snprintf(buf, size, "part %zu", k);
    } else {
        char q[72];
        fleet_utf8_quote(pt->name, strlen(pt->name), q, sizeof q);
        snprintf(buf, size, "part %zu ('%s')", k, q);
    }
    return buf;
}

/* Reads `form-data; name="..."; filename="..."` into pt. */
static int disposition(const char *v, const char *end, size_t k, gw_mp_part *pt, char *err,
                       size_t errlen) {
    const char *t = v;
    while (t < end && *t != ';' && !is_ows(*t)) t++;
    if (!((size_t)(t - v) == 9 && strncasecmp(v, "form-data", 9) == 0)) {
        char q[72];
        fleet_utf8_quote(v, (size_t)(t - v), q, sizeof q);
        return fleet_err(err, errlen, "part %zu: Content-Disposition is '%s', not form-data", k, q);
    }
    bool seen_name = false, seen_file = false, seen_file_ext = false;
    char ext_name[GW_MP_FILENAME_MAX + 1];
    long ext_len = -1;
    mp_param prm;
    const char *why = NULL;
    int rc;
    while ((rc = next_param(&t, end, &prm, &why)) > 0) {
        if (param_is(&prm, "name")) {
            if (seen_name)
                return fleet_err(err, errlen, "part %zu: Content-Disposition has two names", k);
            seen_name = true;
            if (prm.vlen > GW_MP_NAME_MAX)
                return fleet_err(err, errlen, "part %zu: its name is %zu bytes long; at most %d", k,
                                 prm.vlen, GW_MP_NAME_MAX);
            memcpy(pt->name, prm.value, prm.vlen + 1);
        } else if (param_is(&prm, "filename")) {
            if (seen_file)
                return fleet_err(err, errlen, "part %zu: Content-Disposition has two filenames", k);
            seen_file = pt->has_filename = true;
            if (prm.vlen > GW_MP_FILENAME_MAX)
                return fleet_err(err, errlen,
                                 "part %zu: its filename is %zu bytes long; at most %d", k,
                                 prm.vlen, GW_MP_FILENAME_MAX);
            memcpy(pt->filename, prm.value, prm.vlen + 1);
        } else if (param_is(&prm, "filename*")) {
            if (seen_file_ext)
                return fleet_err(err, errlen, "part %zu: Content-Disposition has two filename*", k);
            seen_file_ext = pt->has_filename = true;
            ext_len = prm.vlen < sizeof prm.value
                          ? ext_value(prm.value, prm.vlen, ext_name, sizeof ext_name)
                          : -1;
            if (ext_len < 0)
                return fleet_err(err, errlen,
                                 "part %zu: filename* is not UTF-8''<percent-encoded name> of at "
                                 "most %d bytes",
                                 k, GW_MP_FILENAME_MAX);
        }
    }
    if (rc < 0)
        return fleet_err(err, errlen, "part %zu: Content-Disposition is malformed: %s", k, why);
    if (ext_len >= 0) memcpy(pt->filename, ext_name, (size_t)ext_len + 1); /* it wins */
    if (!pt->name[0])
        return fleet_err(err, errlen,
                         "part %zu has no name (Content-Disposition: form-data; name=\"...\")", k);
    if (!fleet_utf8_valid(pt->filename, strlen(pt->filename))) {
        char lb[96];
        return fleet_err(err, errlen, "%s: its filename is not valid UTF-8",
                         part_label(k, pt, lb, sizeof lb));
    }
    return 0;
}

/* Reads the header block [h, hend) (lines ending in CRLF, the empty line excluded). */
static int part_headers(const char *h, const char *hend, size_t k, gw_mp_part *pt, char *err,
                        size_t errlen) {
    bool seen_cd = false, seen_ct = false;
    while (h < hend) {
        const char *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
        if (!eol) eol = hend; /* cannot happen: the block ends in CRLF */
        if (is_ows(*h) || (eol + 2 < hend && is_ows(eol[2])))
            return fleet_err(err, errlen, "part %zu: folded header lines are not supported", k);
        for (const char *c = h; c < eol; c++) {
            unsigned char ch = (unsigned char)*c;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fleet_err(err, errlen,
                                 "part %zu: a header line holds control byte 0x%02x (lines end in "
                                 "CRLF)",
                                 k, ch);
        }
        const char *colon = memchr(h, ':', (size_t)(eol - h));
        const char *c = h;
        while (c < eol && is_tchar((unsigned char)*c)) c++;
        if (!colon || c != colon || c == h)
            return fleet_err(err, errlen, "part %zu: a header line is not 'Name: value'", k);
        size_t nlen = (size_t)(colon - h);
        const char *v = colon + 1, *ve = eol;
        while (v < ve && is_ows(*v)) v++;
        while (ve > v && is_ows(ve[-1])) ve--;
        if (nlen == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
            if (seen_cd)
                return fleet_err(err, errlen, "part %zu has two Content-Disposition headers", k);
            seen_cd = true;
            if (disposition(v, ve, k, pt, err, errlen) < 0) return -1;
        } else if (nlen == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
            if (seen_ct) return fleet_err(err, errlen, "part %zu has two Content-Type headers", k);
            seen_ct = true;
            if ((size_t)(ve - v) > GW_MP_CTYPE_MAX)
                return fleet_err(err, errlen, "part %zu: its Content-Type is longer than %d bytes",
                                 k, GW_MP_CTYPE_MAX);
            for (const char *c2 = v; c2 < ve; c2++)
                if ((unsigned char)*c2 >= 0x80)
                    return fleet_err(err, errlen, "part %zu: its Content-Type is not ASCII", k);
            memcpy(pt->content_type, v, (size_t)(ve - v));
            pt->content_type[ve - v] = '\0';
        }
        h = eol + 2;
    }
    if (!seen_cd)
        return fleet_err(err, errlen,
                         "part %zu has no Content-Disposition header (each part needs "
                         "Content-Disposition: form-data; name=\"...\")",
                         k);
    return 0;
}

/* ------------------------------------------------------------ the body -------------- */

static gw_mp_part *add_part(gw_mp_form *form, size_t *cap) {
    if (form->n == *cap) {
        size_t ncap = *cap ? 2 * *cap : 8;
        if (ncap > GW_MP_PARTS_MAX) ncap = GW_MP_PARTS_MAX;
        gw_mp_part *np = realloc(form->parts, ncap * sizeof *np);
        if (!np) return NULL;
        form->parts = np;
        *cap = ncap;
    }
    gw_mp_part *pt = &form->parts[form->n++];
    memset(pt, 0, sizeof *pt);
    return pt;
}

int gw_multipart_parse(const char *body, size_t len, const char *boundary, gw_mp_form *form,
                       char *err, size_t errlen) {
    form->parts = NULL;
    form->n = 0;
    size_t blen = strlen(boundary), cap = 0;
    if (blen == 0 || blen > GW_MP_BOUNDARY_MAX) return fleet_err(err, errlen, "bad boundary");
    char delim[4 + GW_MP_BOUNDARY_MAX]; /* CRLF "--" boundary */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = 4 + blen;
    const char *end = body + len, *cur; /* cur: at a "--boundary" */
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        cur = body;
    } else {
        cur = len ? memmem(body, len, delim, dlen) : NULL;
        if (!cur)
            return fleet_err(err, errlen,
                             "the body has no boundary line '--%s' (does the boundary in "
                             "Content-Type match the body?)",
                             boundary);
        cur += 2;
    }
    for (;;) {
        const char *q = cur + dlen - 2;
        if (end - q >= 2 && q[0] == '-' && q[1] == '-') return 0; /* the epilogue is ignored */
        while (q < end && is_ows(*q)) q++;
        if (q == end)
            return fleet_err(err, errlen,
                             "the body ends after a boundary line, without the final '--%s--' "
                             "(truncated?)",
                             boundary);
        if (end - q < 2 || q[0] != '\r' || q[1] != '\n')
            return fleet_err(err, errlen,
                             "the boundary line at byte %zu is followed by neither CRLF nor '--'",
                             (size_t)(cur - body));
        q += 2;
        size_t k = form->n + 1;
        if (form->n == GW_MP_PARTS_MAX)
            return fleet_err(err, errlen, "the body has more than %d parts", GW_MP_PARTS_MAX);
        gw_mp_part *pt = add_part(form, &cap);
        if (!pt) return fleet_err(err, errlen, "out of memory");
        const char *content;
        if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
            content = q + 2; /* no headers at all: part_headers says what is missing */
            if (part_headers(q, q, k, pt, err, errlen) < 0) return -1;
        } else {
            size_t avail = (size_t)(end - q);
            size_t lim = avail < GW_MP_HEADERS_MAX + 4 ? avail : GW_MP_HEADERS_MAX + 4;
            const char *h = memmem(q, lim, "\r\n\r\n", 4);
            if (!h && avail > GW_MP_HEADERS_MAX)
                return fleet_err(err, errlen, "part %zu: its headers are longer than %d bytes", k,
                                 GW_MP_HEADERS_MAX);
            if (!h)
                return fleet_err(err, errlen,
                                 "part %zu: the body ends inside its headers (truncated, or the "
                                 "headers do not end with an empty CRLF line)",
                                 k);
            if (part_headers(q, h + 2, k, pt, err, errlen) < 0) return -1;
            content = h + 4;
        }
        const char *next = memmem(content, (size_t)(end - content), delim, dlen);
        if (!next) {
            char lb[96];
            return fleet_err(err, errlen,
                             "%s: no boundary line after its content; the body is truncated or "
                             "lacks the final '--%s--'",
                             part_label(k, pt, lb, sizeof lb), boundary);
        }
        pt->data = content;
        pt->len = (size_t)(next - content);
        cur = next + 2;
    }
}

void gw_multipart_form_free(gw_mp_form *form) {
    if (!form) return;
    free(form->parts);
    form->parts = NULL;
    form->n = 0;
}
