/* job_json.h: the JSON shape of a job on the wire (GET /v1/jobs/{id}, list items,
 * submit answers). Pure: built from a fleet_job_view, no I/O. */
#ifndef FLEET_JOB_JSON_H
#define FLEET_JOB_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/state.h"

/* Returns a new object:
 * {"id","status","model","priority","created_at","started_at","finished_at",
 *  "queue_position" (queued only),"progress":{"percent","message","done","total"},
 *  "attempts","worker","error","cancel_requested","timeout_s","ttl_s","metadata",
 *  "request_id","links":{"self","result"}} ; absent values are left out. */
json_t *fleet_job_to_json(const fleet_job_view *v);

/* Writes ms since the epoch as RFC 3339 UTC with milliseconds ("2026-11-23T16:50:01.123Z"). */
void fleet_format_time_ms(char out[32], long long ms);

/* Reads an RFC 3339 date-time ("2026-11-23T16:50:01Z", "2026-11-23T16:50:01.123Z",
 * "2026-11-23T17:50:01+01:00"; 't', 'z' in either case; fractions past milliseconds
 * dropped) into ms since the epoch. Returns 0, or -1 for anything else (no date alone, no
 * year before 1970 or after 9999, no leap second). */
int fleet_parse_time_ms(const char *s, long long *ms);

#endif
