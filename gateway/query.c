/* query.c: reading one parameter from a raw query string. Pure. */
#include "query.h"

#include <ctype.h>
#include <string.h>

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

