/* query.h: URL query parameters. Pure, unit-tested. */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>

/* Finds name in the raw query ("a=1&b=x%20y") and URL-decodes its value into out.
 * Returns 1 when found, 0 when absent, -1 when malformed (bad escape, NUL) or too long
 * for out. */
int gw_query_get(const char *raw_query, const char *name, char *out, size_t outlen);

/* The query parameters an API route reads, as one comma-separated list ("status,model");
 * "" for a route that reads none. method is "GET", "POST", ...; route is the route's
 * template as gateway/routes.c spells it ("/v1/jobs/{id}"). The table lives in query.c. */
const char *gw_query_params_of(const char *method, const char *route);

/* The rule for queries (docs/api.md, "Query parameters"): an API route refuses a query
 * parameter it does not read, and one given twice, as its body parsers refuse an unknown
 * field, so that a typo ("?limt=5", "?staus=failed") does not pass silently. Checks every
 * parameter of raw_query (NULL: none) against known (gw_query_params_of). Returns 0, or
 * -1 with a message naming the offending parameters and the known ones in err. A
 * parameter is its raw name, as gw_query_get matches it. */
int gw_query_check(const char *raw_query, const char *known, char *err, size_t errlen);

#define GW_WAIT_MAX_S 60

/* How long a request asks to wait for its job to end: "Prefer: wait=N" (RFC 7240; other
 * preferences in the header are ignored) or "?wait=N", N in 0..60. Returns 0 and *secs
 * (0 when neither is given; the query wins when both are), *from_header when the header
 * gave it; or -1 with a message in err. */
int gw_wait_seconds(const char *prefer, const char *raw_query, long *secs, bool *from_header,
                    char *err, size_t errlen);

#endif
