/* query.h: URL query parameters. Pure, unit-tested. */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>

/* Finds name in the raw query ("a=1&b=x%20y") and URL-decodes its value into out.
 * Returns 1 when found, 0 when absent, -1 when malformed (bad escape, NUL) or too long
 * for out. */
int gw_query_get(const char *raw_query, const char *name, char *out, size_t outlen);

/* GET /v1/jobs?status=queued,running: checks a comma-separated list of job statuses
 * (queued, running, succeeded, failed, cancelled; each at most once, none empty) and
 * copies it to out, which list.lua reads as a set. Returns 0, or -1 when it is not such a
 * list or does not fit out. */
int gw_query_status_list(const char *in, char *out, size_t outlen);

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

/* The longest wait a gateway allows unless FLEET_MAX_WAIT_S says otherwise, and the most
 * FLEET_MAX_WAIT_S may say (a request held an hour is as long as any proxy keeps one). */
#define GW_WAIT_MAX_S_DEFAULT 60
#define GW_WAIT_MAX_S_LIMIT 3600

/* How long a request asks to wait for its job to end: "Prefer: wait=N" (RFC 7240; other
 * preferences in the header are ignored) or "?wait=N", N in 0..max_s (FLEET_MAX_WAIT_S).
 * Returns 0 and *secs (0 when neither is given; the query wins when both are),
 * *from_header when the header gave it; or -1 with a message in err. */
int gw_wait_seconds(const char *prefer, const char *raw_query, long max_s, long *secs,
                    bool *from_header, char *err, size_t errlen);

#endif
