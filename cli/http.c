/* http.c: fleetctl's gateway requests over libcurl easy (see http.h). */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "fleet/id.h"

#define CTL_HTTP_MAX_BODY (256u << 20) /* refuse to buffer more than this from a reply */

struct ctl_http {
    CURL *curl;
    char *base; /* without a trailing slash */
    char *auth; /* "Authorization: Bearer ..." or NULL */
};

/* ------------------------------------------------------------------ low level ----------- */

typedef struct body_buf {
    char *data;
    size_t len, cap;
    bool too_big;
} body_buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    body_buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > CTL_HTTP_MAX_BODY) {
        b->too_big = true;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Copies the value of header line "Name: value\r\n" into out when the name matches. */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen) {
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return;
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t len = (size_t)(end - v);
    if (len >= outlen) len = outlen - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
    ctl_http_response *r = ud;
    size_t n = size * nmemb;
    header_value(line, n, "X-Request-ID", r->request_id, sizeof r->request_id);
    char ct[sizeof r->content_type] = "";
    header_value(line, n, "Content-Type", ct, sizeof ct);
    if (ct[0]) {
        size_t i = 0;
        for (; ct[i] && ct[i] != ';' && ct[i] != ' '; i++)
            r->content_type[i] = (char)tolower((unsigned char)ct[i]);
        r->content_type[i] = '\0';
    }
    return n;
}

/* ------------------------------------------------------------------ client -------------- */

ctl_http *ctl_http_new(const char *base_url, const char *api_key, char *err, size_t errlen) {
    ctl_http *h = calloc(1, sizeof *h);
    if (!h) goto nomem;
    if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0) {
        snprintf(err, errlen, "--url '%s' must start with http:// or https://", base_url);
        goto err;
    }
    h->base = strdup(base_url);
    if (!h->base) goto nomem;
    size_t n = strlen(h->base);
    while (n > 0 && h->base[n - 1] == '/') h->base[--n] = '\0';
    if (api_key && *api_key) {
        size_t alen = strlen(api_key) + 32;
        h->auth = malloc(alen);
        if (!h->auth) goto nomem;
        snprintf(h->auth, alen, "Authorization: Bearer %s", api_key);
    }
    h->curl = curl_easy_init();
    if (!h->curl) goto nomem;
    return h;
nomem:
    snprintf(err, errlen, "out of memory");
err:
    ctl_http_free(h);
    return NULL;
}

void ctl_http_free(ctl_http *h) {
    if (!h) return;
    if (h->curl) curl_easy_cleanup(h->curl);
    free(h->base);
    free(h->auth);
    free(h);
}

int ctl_http_request(ctl_http *h, const char *method, const char *path, const char *body,
                     ctl_http_response *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char rid[40] = "ctl-";
    if (fleet_id_new(rid + 4) < 0) snprintf(rid, sizeof rid, "ctl-%ld", (long)rand());
    snprintf(out->request_id, sizeof out->request_id, "%s", rid);

    size_t ulen = strlen(h->base) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (!url) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(url, ulen, "%s%s", h->base, path);

    char ridh[64];
    snprintf(ridh, sizeof ridh, "X-Request-ID: %s", rid);
    struct curl_slist *hdrs = NULL, *tmp;
    /* An empty Expect: stops curl from waiting for "100 Continue" on larger bodies. */
    const char *fixed[] = {ridh, "Accept: application/json",
                           "Expect:", body ? "Content-Type: application/json" : NULL, h->auth};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!fixed[i]) continue;
        tmp = curl_slist_append(hdrs, fixed[i]);
        if (!tmp) {
            curl_slist_free_all(hdrs);
            free(url);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        hdrs = tmp;
    }

    body_buf b = {0};
    CURL *c = h->curl;
    /* curl_easy_reset keeps the connection cache, so keep-alive survives between calls. */
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L); /* Prefer: wait is at most 60 s */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "fleetctl/0.1");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    free(url);
    if (rc != CURLE_OK) {
        if (b.too_big)
            snprintf(err, errlen, "%s %s: reply body over %u MiB", method, path,
                     CTL_HTTP_MAX_BODY >> 20);
        else snprintf(err, errlen, "%s %s%s: %s", method, h->base, path, curl_easy_strerror(rc));
        free(b.data);
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (!b.data) {
        b.data = strdup("");
        if (!b.data) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    out->body = b.data;
    out->len = b.len;
    return 0;
}

void ctl_http_response_free(ctl_http_response *r) {
    if (!r) return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

char *ctl_http_escape(ctl_http *h, const char *s) {
    char *e = curl_easy_escape(h->curl, s, 0);
    if (!e) return NULL;
    char *copy = strdup(e); /* so the caller frees with free(), not curl_free() */
    curl_free(e);
    return copy;
}

/* ------------------------------------------------------------------ replies ------------- */

json_t *ctl_http_json(const ctl_http_response *r, const char *what) {
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
    if (!j)
        ctl_error("%s: the gateway answered %ld with a body that is not JSON (line %d, column "
                  "%d: %s; request id %s)",
                  what, r->status, je.line, je.column, je.text, r->request_id);
    return j;
}

void ctl_http_print_problem(const ctl_http_response *r, const char *what) {
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *detail = NULL;
    if (json_is_object(j)) {
        detail = json_string_value(json_object_get(j, "detail"));
        if (!detail || !*detail) detail = json_string_value(json_object_get(j, "title"));
    }
    if (detail && *detail) {
        ctl_error("%s: %s (HTTP %ld, request id %s)", what, detail, r->status, r->request_id);
    } else if (r->len > 0) {
        /* Not a problem document (a proxy's page, say): show a bounded piece of it. */
        int n = r->len > 300 ? 300 : (int)r->len;
        while (n > 0 && (r->body[n - 1] == '\n' || r->body[n - 1] == '\r')) n--;
        ctl_error("%s: HTTP %ld: %.*s%s (request id %s)", what, r->status, n, r->body,
                  r->len > 300 ? "..." : "", r->request_id);
    } else {
        ctl_error("%s: HTTP %ld with an empty body (request id %s)", what, r->status,
                  r->request_id);
    }
    json_decref(j);
}

ctl_http *ctl_http_open(const ctl_globals *g) {
    char err[512];
    ctl_http *h = ctl_http_new(g->url, g->api_key, err, sizeof err);
    if (!h) ctl_error("%s", err);
    return h;
}
