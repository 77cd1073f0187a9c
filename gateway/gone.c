/* gone.c: 410 Gone for a job whose keys expired, 404 for an id that names nothing. The
 * tombstone that tells the two apart is written by the script that ends the job (lib.lua's
 * end_job: "{fleet}:gone:<id>", living FLEET_TOMBSTONE_S longer than the job's keys) and
 * read with the job by get.lua, so a missing job costs no second round trip. */
#include "gone.h"

#include <jansson.h>
#include <string.h>

#include "fleet/job_json.h"
#include "fleet/state.h"

void gw_reply_job_missing(gw_req *r, const char *id, const redisReply *rep) {
    fleet_job_gone g;
    if (rep && fleet_state_get_gone(rep, &g)) {
        char at[32];
        fleet_format_time_ms(at, g.expired_at_ms);
        if (strcmp(g.status, "expired") == 0) {
            /* Its keys expired before it ended (its queue TTL ran out): the claim that found
             * it gone wrote the tombstone, so "when" is when that was found. */
            gw_reply_problem_with(r, GW_PROBLEM_EXPIRED,
                                  json_pack("{s:s, s:s}", "expired_at", at, "job_status", g.status),
                                  "job %.64s expired at or before %s, before it finished (its "
                                  "queue TTL ran out; a worker found its keys gone then)",
                                  id, at);
            return;
        }
        gw_reply_problem_with(r, GW_PROBLEM_EXPIRED,
                              json_pack("{s:s, s:s}", "expired_at", at, "job_status", g.status),
                              "job %.64s %.16s; its keys (result, fields) expired at %s, when its "
                              "ttl_s ran out",
                              id, g.status, at);
        return;
    }
    gw_reply_problem(r, GW_PROBLEM_JOB_NOT_FOUND,
                     "no job with id '%.64s' (unknown, or expired after its ttl_s)", id);
}
