/* gone.h: the answer for a job id that names no job of the tenant (docs/api.md, "Expired
 * jobs"). */
#ifndef GW_GONE_H
#define GW_GONE_H

#include <hiredis/hiredis.h>

#include "http.h"

/* rep: the get reply that found no job (fleet_state_get_reply answered 0), or NULL. While
 * the job's tombstone is there (its keys expired after it ended, FLEET_TOMBSTONE_S ago at
 * most): 410 expired, with expired_at (RFC 3339) and job_status. Else 404 job-not-found. */
void gw_reply_job_missing(gw_req *r, const char *id, const redisReply *rep);

#endif
