/* query.h: URL query parameters. Pure, unit-tested. */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stddef.h>

/* Finds name in the raw query ("a=1&b=x%20y") and URL-decodes its value into out.
 * Returns 1 when found, 0 when absent, -1 when malformed (bad escape, NUL) or too long
 * for out. */
int gw_query_get(const char *raw_query, const char *name, char *out, size_t outlen);

#endif
