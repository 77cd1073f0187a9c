/* query.c: the query parameters each API route reads, the rule that refuses any other,
 * reading one parameter from a raw query string, and the wait preference. Pure. */
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


/* ------------------------------------------------------------ status lists ---------- */

int gw_query_status_list(const char *in, char *out, size_t outlen) {
    static const char *const names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    bool seen[sizeof names / sizeof *names] = {false};
    size_t len = strlen(in);
    if (len == 0 || len >= outlen) return -1;
    for (const char *p = in;;) {
        size_t n = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof names / sizeof *names &&
               !(strlen(names[i]) == n && strncmp(names[i], p, n) == 0))
            i++;
        if (i == sizeof names / sizeof *names || seen[i]) return -1;
        seen[i] = true;
        p += n;
        if (!*p) break;
        p++; /* past ',': an empty name after it is refused above */
    }
    memcpy(out, in, len + 1);
    return 0;
}

/* ------------------------------------------------------------ known parameters ------ */

/* The query parameters of every API route that reads any (a route not listed reads
 * none). openapi_test checks that gateway/openapi.json describes exactly these. */
static const struct {
    const char *method, *route, *params;
} route_params[] = {
    {"POST", "/v1/jobs", "wait"},
    {"GET", "/v1/jobs", "status,model,cursor,limit,tenant,since,until"},
    {"GET", "/v1/jobs/{id}", "wait"},
    {"DELETE", "/v1/jobs/{id}", "purge"},
    {"GET", "/v1/jobs/{id}/outputs", "after,limit"},
};

const char *gw_query_params_of(const char *method, const char *route) {
    for (size_t i = 0; method && route && i < sizeof route_params / sizeof *route_params; i++)
        if (strcmp(route_params[i].method, method) == 0 &&
            strcmp(route_params[i].route, route) == 0)
            return route_params[i].params;
    return "";
}

/* Whether the n bytes at name are one of the comma-separated names of list. */
static bool in_list(const char *list, const char *name, size_t n) {
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0) return true;
        p += len;
        if (*p == ',') p++;
    }
    return false;
}

/* Appends the n bytes at s to out (quoted; bytes outside printable ASCII as '?', at most
 * 40 of them), as far as it has room. */
static void append_name(char *out, size_t outlen, const char *s, size_t n) {
    size_t o = strlen(out);
    if (o + 1 < outlen) out[o++] = '\'';
    for (size_t i = 0; i < n && i < 40 && o + 1 < outlen; i++)
        out[o++] = s[i] >= ' ' && s[i] <= '~' ? s[i] : '?';
    if (n > 40 && o + 4 < outlen) o += (size_t)snprintf(out + o, outlen - o, "...");
    if (o + 1 < outlen) out[o++] = '\'';
    out[o < outlen ? o : outlen - 1] = '\0';
}

int gw_query_check(const char *raw_query, const char *known, char *err, size_t errlen) {
    if (!raw_query || !*raw_query) return 0;
    if (!known) known = "";
    char bad[160] = "", twice[160] = "";
    int nbad = 0;
    for (const char *p = raw_query; *p;) {
        size_t len = strcspn(p, "&");
        size_t n = strcspn(p, "=&");
        if (len > 0) { /* "a=1&&b=2" and a trailing '&' hold empty parameters: none */
            if (!in_list(known, p, n)) {
                if (nbad++ < 4) {
                    if (*bad) strncat(bad, ", ", sizeof bad - strlen(bad) - 1);
                    append_name(bad, sizeof bad, p, n);
                }
            } else if (!*twice) {
                /* Given again later in the query? */
                for (const char *q = p + len; *q;) {
                    q += *q == '&';
                    if (strcspn(q, "=&") == n && strncmp(q, p, n) == 0) {
                        append_name(twice, sizeof twice, p, n);
                        break;
                    }
                    q += strcspn(q, "&");
                }
            }
        }
        p += len;
        if (*p == '&') p++;
    }
    if (nbad == 0 && !*twice) return 0;
    char takes[128] = "this route takes no query parameters";
    if (*known) {
        size_t o = (size_t)snprintf(takes, sizeof takes, "this route takes ");
        for (const char *k = known; *k && o + 3 < sizeof takes; k++)
            if (*k == ',') o += (size_t)snprintf(takes + o, sizeof takes - o, ", ");
            else takes[o++] = *k;
        takes[o < sizeof takes ? o : sizeof takes - 1] = '\0';
    }
    if (nbad > 0)
        snprintf(err, errlen, "unknown query parameter%s %s%s; %s", nbad > 1 ? "s" : "", bad,
                 nbad > 4 ? " and more" : "", takes);
    else snprintf(err, errlen, "query parameter %s is given more than once; give it once", twice);
    return -1;
}

/* ------------------------------------------------------------ Prefer: wait ---------- */

/* Reads N of "wait=N": digits only, 0..max_s. */
static int wait_value(const char *s, size_t n, long max_s, long *out) {
    if (n == 0 || n > 9) return -1; /* past 9 digits, no max_s admits it: no overflow */
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max_s) return -1;
    *out = v;
    return 0;
}

int gw_wait_seconds(const char *prefer, const char *raw_query, long max_s, long *secs,
                    bool *from_header, char *err, size_t errlen) {
    *secs = 0;
    *from_header = false;
    char q[16];
    int found = gw_query_get(raw_query, "wait", q, sizeof q);
    if (found != 0) {
        if (found < 0 || wait_value(q, strlen(q), max_s, secs) < 0) {
            snprintf(err, errlen,
                     "wait must be a whole number of seconds from 0 to %ld (FLEET_MAX_WAIT_S)",
                     max_s);
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
                if (wait_value(v, vn, max_s, secs) < 0) {
                    snprintf(err, errlen,
                             "Prefer: wait must be a whole number of seconds from 0 to %ld "
                             "(FLEET_MAX_WAIT_S)",
                             max_s);
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
