/* framing.c: request body framing from the raw head, and chunked bodies (framing.h). */
#include "framing.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ head ------------------ */

static bool is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static bool name_is(const char *p, size_t n, const char *want) {
    if (strlen(want) != n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)p[i], b = (unsigned char)want[i];
        if (a >= 'A' && a <= 'Z') a = (unsigned char)(a - 'A' + 'a');
        if (a != b) return false;
    }
    return true;
}

static int refuse(gw_head_framing *f, int status, const char *slug, const char *title,
                  const char *detail) {
    f->status = status;
    f->slug = slug;
    f->title = title;
    snprintf(f->detail, sizeof f->detail, "%s", detail);
    return -1;
}

static int bad(gw_head_framing *f, const char *detail) {
    return refuse(f, 400, "bad-framing", "Bad request framing", detail);
}

/* The next line of head[*at, n): its start and length without CR LF / LF. False at the
 * end of the bytes. */
static bool next_line(const char *head, size_t n, size_t *at, const char **line, size_t *len) {
    if (*at >= n) return false;
    const char *p = head + *at, *lf = memchr(p, '\n', n - *at);
    size_t l = lf ? (size_t)(lf - p) : n - *at;
    *at += l + (lf ? 1 : 0);
    if (l > 0 && p[l - 1] == '\r') l--;
    *line = p;
    *len = l;
    return true;
}

int gw_framing_head(const char *head, size_t n, gw_head_framing *f) {
    memset(f, 0, sizeof *f);
    size_t at = 0, len = 0;
    const char *line = NULL;
    do { /* empty lines before the request line */
        if (!next_line(head, n, &at, &line, &len)) return bad(f, "the head has no request line");
    } while (len == 0);
    bool http10 = len >= 9 && memcmp(line + len - 9, " HTTP/1.0", 9) == 0;
    bool have_cl = false, have_te = false, te_chunked = false;
    unsigned te_fields = 0;
    uint64_t cl = 0;
    for (;;) {
        if (!next_line(head, n, &at, &line, &len)) return bad(f, "the head does not end");
        if (len == 0) break;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return bad(f, "a header line holds a control character (a bare CR, a NUL)");
        }
        if (is_ows((unsigned char)line[0]))
            return bad(f, "a header line starts with whitespace (obsolete line folding)");
        const char *colon = memchr(line, ':', len);
        if (!colon) return bad(f, "a header line has no colon");
        size_t nlen = (size_t)(colon - line);
        if (nlen == 0) return bad(f, "a header line has an empty field name");
        for (size_t i = 0; i < nlen; i++) {
            if (is_ows((unsigned char)line[i]))
                return bad(f, "a header field name is followed by whitespace before its colon");
            if (!is_tchar((unsigned char)line[i]))
                return bad(f, "a header field name holds a character that is not a token");
        }
        const char *v = colon + 1, *end = line + len;
        while (v < end && is_ows((unsigned char)*v)) v++;
        while (end > v && is_ows((unsigned char)end[-1])) end--;
        size_t vlen = (size_t)(end - v);
        if (name_is(line, nlen, "content-length")) {
            if (vlen == 0 || vlen > 18) return bad(f, "Content-Length must be 1 to 18 digits");
            uint64_t x = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') return bad(f, "Content-Length must be digits only");
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            if (have_cl && x != cl) return bad(f, "several Content-Length fields differ");
            have_cl = true;
            cl = x;
        } else if (name_is(line, nlen, "transfer-encoding")) {
            have_te = true;
            te_fields++;
            te_chunked = vlen == 7 && name_is(v, vlen, "chunked");
        } else if (name_is(line, nlen, "expect")) {
            if (vlen == 12 && name_is(v, vlen, "100-continue")) f->expect_continue = true;
        }
    }
    if (have_te && have_cl)
        return bad(f, "a request may not have both Content-Length and Transfer-Encoding");
    if (have_te && http10) return bad(f, "an HTTP/1.0 request may not have Transfer-Encoding");
    if (have_te && (!te_chunked || te_fields > 1))
        return refuse(f, 501, "transfer-coding-not-implemented", "Transfer coding not implemented",
                      "the only transfer coding taken is \"Transfer-Encoding: chunked\"");
    if (have_te) f->body = GW_BODY_CHUNKED;
    else if (have_cl) {
        f->body = GW_BODY_LENGTH;
        f->length = cl;
    }
    return 0;
}

size_t gw_framing_strip(const char *head, size_t n, char *out) {
    size_t at = 0, len = 0, w = 0;
    const char *line = NULL;
    bool started = false;
    while (next_line(head, n, &at, &line, &len)) {
        if (len == 0 && !started) continue;
        if (len == 0) break;
        if (started) {
            const char *colon = memchr(line, ':', len);
            size_t nlen = colon ? (size_t)(colon - line) : 0;
            if (name_is(line, nlen, "transfer-encoding") || name_is(line, nlen, "content-length") ||
                name_is(line, nlen, "expect"))
                continue;
        }
        started = true;
        if (w + len + 2 > n) break; /* never for a head that was read: a line had its CR or LF */
        memcpy(out + w, line, len);
        out[w + len] = '\r';
        out[w + len + 1] = '\n';
        w += len + 2;
    }
    return w;
}

/* ------------------------------------------------------------ chunked --------------- */

enum {
    CK_SIZE_START, /* the first hex digit of a size */
    CK_SIZE,       /* more hex digits */
    CK_SIZE_WS,    /* whitespace after the size: ';' or CR next */
    CK_EXT,        /* an extension, up to CR */
    CK_SIZE_LF,    /* the LF after a size line's CR */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START, /* a trailer line, or the final CR */
    CK_TRAILER,
    CK_TRAILER_LF,
    CK_LAST_LF,
    CK_DONE,
};

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static gw_chunk_res chunk_error(gw_chunked *d, size_t i, size_t *used, const char *why) {
    d->error = why;
    *used = i;
    return GW_CHUNK_ERROR;
}

gw_chunk_res gw_chunked_feed(gw_chunked *d, const char *in, size_t n, size_t *used,
                             gw_chunk_data_fn data, void *arg) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        switch (d->state) {
        case CK_SIZE_START:
        case CK_SIZE: {
            int h = hexval(c);
            if (h >= 0) {
                /* 15 hex digits (2^60) are more than any body: more is an overflow */
                if (d->state == CK_SIZE && d->left >= ((uint64_t)1 << 56))
                    return chunk_error(d, i, used, "a chunk size overflows");
                d->left = d->left * 16 + (uint64_t)h;
                d->state = CK_SIZE;
                d->line++;
                i++;
                continue;
            }
            if (d->state == CK_SIZE_START)
                return chunk_error(d, i, used, "a chunk size is not a hexadecimal number");
            d->state = CK_SIZE_WS;
            continue; /* read c again there */
        }
        case CK_SIZE_WS:
            if (is_ows(c)) {
                d->line++;
            } else if (c == ';') {
                d->state = CK_EXT;
                d->line++;
            } else if (c == '\r') {
                d->state = CK_SIZE_LF;
            } else {
                return chunk_error(d, i, used, "a chunk size is not a hexadecimal number");
            }
            if (d->line > GW_CHUNK_LINE_MAX)
                return chunk_error(d, i, used, "a chunk-size line is too long");
            i++;
            continue;
        case CK_EXT:
            if (c == '\r') d->state = CK_SIZE_LF;
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return chunk_error(d, i, used, "a chunk extension holds a control character");
            else if (++d->line > GW_CHUNK_LINE_MAX)
                return chunk_error(d, i, used, "a chunk-size line is too long");
            i++;
            continue;
        case CK_SIZE_LF:
            if (c != '\n')
                return chunk_error(d, i, used, "a chunk-size line does not end in CR LF");
            i++;
            d->line = 0;
            if (d->left == 0) {
                d->state = CK_TRAILER_START;
                continue;
            }
            if (d->left > d->max || d->total > d->max - d->left) {
                *used = i;
                return GW_CHUNK_TOO_LARGE;
            }
            d->total += d->left;
            d->state = CK_DATA;
            continue;
        case CK_DATA: {
            size_t k = n - i;
            if ((uint64_t)k > d->left) k = (size_t)d->left;
            if (data) data(arg, in + i, k);
            d->left -= k;
            i += k;
            if (d->left == 0) d->state = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
            if (c != '\r') return chunk_error(d, i, used, "chunk data is longer than its size");
            d->state = CK_DATA_LF;
            i++;
            continue;
        case CK_DATA_LF:
            if (c != '\n') return chunk_error(d, i, used, "chunk data does not end in CR LF");
            d->state = CK_SIZE_START;
            i++;
            continue;
        case CK_TRAILER_START:
            if (c == '\r') {
                d->state = CK_LAST_LF;
                i++;
                continue;
            }
            d->state = CK_TRAILER;
            continue; /* read c again there */
        case CK_TRAILER:
            if (c == '\r') d->state = CK_TRAILER_LF;
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return chunk_error(d, i, used, "a trailer line holds a control character");
            else if (++d->trailers > GW_CHUNK_TRAILERS_MAX)
                return chunk_error(d, i, used, "the trailer lines are too long");
            i++;
            continue;
        case CK_TRAILER_LF:
            if (c != '\n') return chunk_error(d, i, used, "a trailer line does not end in CR LF");
            d->state = CK_TRAILER_START;
            i++;
            continue;
        case CK_LAST_LF:
            if (c != '\n') return chunk_error(d, i, used, "the chunked body does not end in CR LF");
            d->state = CK_DONE;
            *used = i + 1;
            return GW_CHUNK_DONE;
        default: /* CK_DONE: nothing more belongs to this body */ *used = i; return GW_CHUNK_DONE;
        }
    }
    *used = n;
    return d->state == CK_DONE ? GW_CHUNK_DONE : GW_CHUNK_MORE;
}
