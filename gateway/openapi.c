/* openapi.c: serves the embedded OpenAPI document (openapi.h).
 *
 * Cache-Control: no-cache with an ETag: a client keeps its copy and asks again each time,
 * getting a 304 without a body while the gateway serves the same document, so a new
 * gateway's description is seen at the next fetch. */
#include "openapi.h"

#include <stdbool.h>
#include <string.h>

/* If-None-Match is "*" or lists the document's tag (weak comparison, RFC 9110 13.1.2). */
static bool not_modified(const char *h) {
    size_t taglen = strlen(gw_openapi_etag);
    for (const char *p = h; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
        const char *s = p;
        if (m == 1 && *s == '*') return true;
        if (m > 2 && strncmp(s, "W/", 2) == 0) {
            s += 2;
            m -= 2;
        }
        if (m == taglen && strncmp(s, gw_openapi_etag, m) == 0) return true;
        p += n;
    }
    return false;
}

void gw_openapi_serve(gw_req *r) {
    gw_add_header(r, "Cache-Control", "no-cache");
    gw_add_header(r, "ETag", gw_openapi_etag);
    if (not_modified(gw_header(r, "If-None-Match"))) {
        gw_reply_bytes(r, 304, NULL, NULL, 0);
        return;
    }
    gw_reply_bytes(r, 200, "application/json", gw_openapi_json, gw_openapi_json_len);
}
