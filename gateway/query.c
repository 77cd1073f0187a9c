/* query.c: reading one parameter from a raw query string, and the wait preference. Pure. */
#include "query.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int gw_query_get(const char *q, const char *name, char *out, size_t outlen) {
    if (!q) return 0;
    size_t nlen = strlen(name);
    const char *p = q;
    while (*p) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == nlen && strncmp(p, name, nlen) == 0) {
            size_t o = 0;
            for (const char *v = eq ? eq + 1 : end; v < end; v++) {
                int c = (unsigned char)*v;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (end - v < 3) return -1;
                    int hi = hexval(v[1]), lo = hexval(v[2]);
                    if (hi < 0 || lo < 0) return -1;
                    c = hi * 16 + lo;
                    v += 2;
                }
                if (c == 0 || o + 1 >= outlen) return -1;
                out[o++] = (char)c;
            }
            out[o] = '\0';
            return 1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}


/* Reads N of "wait=N": digits only, 0..GW_WAIT_MAX_S. */
static int wait_value(const char *s, size_t n, long *out) {
    if (n == 0 || n > 3) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > GW_WAIT_MAX_S) return -1;
    *out = v;
    return 0;
}

int gw_wait_seconds(const char *prefer, const char *raw_query, long *secs, bool *from_header,
                    char *err, size_t errlen) {
    *secs = 0;
    *from_header = false;
    char q[16];
    int found = gw_query_get(raw_query, "wait", q, sizeof q);
    if (found != 0) {
        if (found < 0 || wait_value(q, strlen(q), secs) < 0) {
            snprintf(err, errlen, "wait must be a whole number of seconds from 0 to %d",
                     GW_WAIT_MAX_S);
            return -1;
        }
        return 0;
    }
    /* Prefer: token[=value] separated by commas or semicolons, case-insensitive names. */
    for (const char *p = prefer; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == ';') p++;
        size_t n = strcspn(p, ",;");
        if (n >= 5 && strncasecmp(p, "wait", 4) == 0) {
            const char *v = p + 4;
            while (*v == ' ') v++;
            if (*v == '=') {
                v++;
                while (*v == ' ') v++;
                size_t vn = (size_t)(p + n - v);
                while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) vn--;
                if (wait_value(v, vn, secs) < 0) {
                    snprintf(err, errlen,
                             "Prefer: wait must be a whole number of seconds from 0 to %d",
                             GW_WAIT_MAX_S);
                    return -1;
                }
                *from_header = true;
                return 0;
            }
        }
        p += n;
    }
    return 0;
}
