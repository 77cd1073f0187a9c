/* outputs.h: a job's partial outputs over HTTP (docs/api.md, "Partial outputs"):
 * GET /v1/jobs/{id}/outputs (outputs.c) and the JSON of one output, which the SSE stream's
 * `output` events (sse.c) share. */
#ifndef GW_OUTPUTS_H
#define GW_OUTPUTS_H

#include <hiredis/hiredis.h>
#include <jansson.h>

/* Most outputs one page (or one SSE read) returns. */
#define GW_OUTPUTS_PAGE_MAX 100

/* {"index": index, "attempt": n, "output": <the msgpack value as JSON>} of one stored
 * entry of outputs.lua's page (fleet_output_entry); NULL when the entry is not one or its
 * output is not msgpack that JSON can show (err says why). */
json_t *gw_output_json(long long index, const redisReply *entry, char *err, size_t errlen);

#endif
