/* ui.c: serves the dashboard's embedded files (ui.h).
 *
 * Every answer carries an ETag and Cache-Control: no-cache, so a browser keeps its copy
 * and asks again each time (a 304 without a body while the gateway serves the same
 * build): a new gateway's page is seen at the next load, never a stale script next to a
 * new page. A client that accepts gzip gets the compressed bytes (Vary says so). The
 * Content-Security-Policy admits only the gateway's own script and style and requests to
 * the gateway itself, so even a rendering fault could not run text that came from a job.
 */
#include "ui.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data: blob:; connect-src 'self'; "
                          "form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

static const gw_ui_asset *asset_of(const char *path) {
    for (size_t i = 0; i < gw_ui_nassets; i++)
        if (strcmp(gw_ui_assets[i].path, path) == 0) return &gw_ui_assets[i];
    return NULL;
}

/* The next comma-separated element of a header list, without spaces around it, in
 * [*s, *e); false at the end. */
static bool next_element(const char **p, const char **s, const char **e) {
    const char *q = *p;
    while (*q == ' ' || *q == '\t' || *q == ',') q++;
    if (!*q) return false;
    const char *end = q + strcspn(q, ",");
    *p = end;
    while (end > q && (end[-1] == ' ' || end[-1] == '\t')) end--;
    *s = q;
    *e = end;
    return true;
}

/* Accept-Encoding names gzip (or "*") without q=0. */
static bool accepts_gzip(const char *h) {
    const char *s, *e;
    while (h && next_element(&h, &s, &e)) {
        size_t n = strcspn(s, ";");
        if (s + n > e) n = (size_t)(e - s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        if (!((n == 4 && strncasecmp(s, "gzip", 4) == 0) || (n == 1 && *s == '*'))) continue;
        const char *q = s + n;
        while (q < e && (*q == ' ' || *q == ';' || *q == '\t')) q++;
        /* "q=0", "q=0.0", "q=0.000": refused; any other weight accepts it */
        if (q + 2 <= e && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
            const char *v = q + 2;
            bool zero = v < e && *v == '0';
            for (v++; zero && v < e; v++)
                if (*v != '.' && *v != '0') zero = false;
            if (zero) return false;
        }
        return true;
    }
    return false;
}

/* If-None-Match names one of the asset's tags (weakly compared, as RFC 9110 asks for
 * GET), or is "*". */
static bool not_modified(const char *h, const gw_ui_asset *a) {
    const char *s, *e;
    while (h && next_element(&h, &s, &e)) {
        if (e - s == 1 && *s == '*') return true;
        if (e - s > 2 && strncmp(s, "W/", 2) == 0) s += 2;
        size_t n = (size_t)(e - s);
        if ((n == strlen(a->etag) && strncmp(s, a->etag, n) == 0) ||
            (n == strlen(a->etag_gz) && strncmp(s, a->etag_gz, n) == 0))
            return true;
    }
    return false;
}

void gw_ui_serve(gw_req *r) {
    const char *path = r->req->uri && r->req->uri->path && r->req->uri->path->full
                           ? r->req->uri->path->full
                           : "/";
    const gw_ui_asset *a = asset_of(path);
    if (!a) { /* routes.c lists a path that the build did not embed */
        gw_reply_problem(r, GW_PROBLEM_NOT_FOUND, "no dashboard file %.200s", path);
        return;
    }
    bool gz = accepts_gzip(gw_header(r, "Accept-Encoding"));
    gw_add_header(r, "Cache-Control", "no-cache");
    gw_add_header(r, "Vary", "Accept-Encoding");
    gw_add_header(r, "ETag", gz ? a->etag_gz : a->etag);
    if (not_modified(gw_header(r, "If-None-Match"), a)) {
        /* No body; libevhtp would write Content-Length: 0 and text/plain, which a cache
         * could take for the file's new length and type (RFC 9110 allows only the
         * length a 200 would have). */
        char len[24];
        snprintf(len, sizeof len, "%zu", gz ? a->gz_len : a->len);
        gw_add_header(r, "Content-Length", len);
        gw_reply_bytes(r, 304, a->content_type, NULL, 0);
        return;
    }
    gw_add_header(r, "X-Content-Type-Options", "nosniff");
    gw_add_header(r, "Referrer-Policy", "no-referrer");
    if (strcmp(a->path, "/") == 0) {
        gw_add_header(r, "Content-Security-Policy", csp);
        gw_add_header(r, "X-Frame-Options", "DENY");
    }
    if (gz) {
        gw_add_header(r, "Content-Encoding", "gzip");
        gw_reply_bytes(r, 200, a->content_type, a->gz, a->gz_len);
    } else {
        gw_reply_bytes(r, 200, a->content_type, a->data, a->len);
    }
}
