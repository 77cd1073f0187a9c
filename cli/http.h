/* http.h: fleetctl's requests to the gateway, over one libcurl easy handle.
 *
 * One handle is kept for the life of a command so that `wait` and `list --all` reuse one
 * keep-alive connection. Every request carries a fresh X-Request-ID (a ULID prefixed with
 * "ctl-") so that a failing call can be found in the gateway's logs; the id is printed
 * with every error.
 *
 * Ownership: a ctl_http_response owns its body (NUL-terminated, so it can be handed to
 * json_loads directly); ctl_http_response_free releases it and accepts a zeroed struct.
 */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include <jansson.h>
#include <stddef.h>

typedef struct ctl_http ctl_http;

typedef struct ctl_http_response {
    long status; /* HTTP status code */
    char *body;  /* NUL-terminated; "" when the reply had no body */
    size_t len;
    char request_id[136];   /* the X-Request-ID the gateway answered with (or ours) */
    char content_type[128]; /* without parameters, lower case */
} ctl_http_response;

/* base_url: "http://host:port" (a trailing slash is tolerated). api_key: "" or NULL for
 * none. Returns NULL with a message in err. */
ctl_http *ctl_http_new(const char *base_url, const char *api_key, char *err, size_t errlen);
/* ctl_http_new for the global --url and --api-key; prints why it failed (NULL). */
struct ctl_globals;
ctl_http *ctl_http_open(const struct ctl_globals *g);
void ctl_http_free(ctl_http *h);

/* Sends method path (path starts with '/', may carry a query string); body may be NULL.
 * Returns 0 when a response arrived (any status), or -1 with a message in err when none
 * did (connection refused, timeout, ...). */
int ctl_http_request(ctl_http *h, const char *method, const char *path, const char *body,
                     ctl_http_response *out, char *err, size_t errlen);
void ctl_http_response_free(ctl_http_response *r);

/* Parses the body as JSON. Returns a new reference, or NULL with "what" and the parse
 * error printed on stderr. */
json_t *ctl_http_json(const ctl_http_response *r, const char *what);

/* Prints a failed response on stderr: the problem's `detail` (or title, or the raw body
 * when it is not a problem document), the status code and the request id. */
void ctl_http_print_problem(const ctl_http_response *r, const char *what);

/* Percent-encodes s for a query string. Returns a malloc'd string (caller frees). */
char *ctl_http_escape(ctl_http *h, const char *s);

#endif
