/* openapi.h: GET /openapi.json, the OpenAPI 3.1 description of the HTTP API
 * (gateway/openapi.json, embedded at build time by openapi.cmake). */
#ifndef GW_OPENAPI_H
#define GW_OPENAPI_H

#include <stddef.h>

#include "http.h"

/* The document's bytes (gw_openapi_json_len of them, then a NUL) and its ETag (quoted). */
extern const char gw_openapi_json[];
extern const size_t gw_openapi_json_len;
extern const char gw_openapi_etag[];

/* Answers the document: 200 application/json, or 304 when If-None-Match names its ETag.
 * Needs no API key (routes.c: it is not a /v1 route). */
void gw_openapi_serve(gw_req *r);

#endif
