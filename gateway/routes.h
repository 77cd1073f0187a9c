/* routes.h: the route table and the handlers it dispatches to. */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include "fleet/state.h"
#include "http.h"
#include "shards.h"

/* The libevhtp handler for every request: checks size guards, then dispatches. */
void gw_route(evhtp_request_t *req, void *arg);
/* The template of the route r matched ("/v1/jobs/{id}"), or NULL when it matched none
 * (yet): what metrics count a request under, never its raw path. */
const char *gw_route_template(const gw_req *r);

/* jobs.c. A handler that takes an id gets a well-formed one (fleet_job_id_valid): the
 * router answers 404 job-not-found for any other before the handler runs. */
void gw_jobs_submit(gw_req *r);
void gw_jobs_get(gw_req *r, const char *id);
void gw_jobs_result(gw_req *r, const char *id);
void gw_jobs_cancel(gw_req *r, const char *id);
void gw_jobs_list(gw_req *r);
/* model_actions.c: POST /v1/models/{model}/pause, /resume, /purge (admin keys only). */
void gw_models_pause(gw_req *r, const char *model);
void gw_models_resume(gw_req *r, const char *model);
void gw_models_purge(gw_req *r, const char *model);
/* job_actions.c: POST /v1/jobs/{id}/retry; DELETE /v1/jobs/{id}?purge=true (gw_jobs_cancel
 * hands the request to gw_jobs_delete when gw_jobs_purge_wanted says so; it answers 400 and
 * returns false for a malformed purge). */
void gw_jobs_retry(gw_req *r, const char *id);
void gw_jobs_delete(gw_req *r, const char *id);
bool gw_jobs_purge_wanted(gw_req *r, bool *purge);
/* GET /v1/jobs/{id}/outputs: a page of the job's partial outputs (outputs.c). */
void gw_jobs_outputs(gw_req *r, const char *id);

/* The ids a submit command refers to (they must live until it is sent), and its shard
 * (shards.h: a limit's refusal on one shard is tried on the next). */
typedef struct gw_submit_ids {
    char id[FLEET_ID_LEN + 1];
    gw_place place;
} gw_submit_ids;

struct gw_job_request;
struct gw_problem;
/* The bounds of a job's own max_attempts and queue_ttl_s on this gateway: the operator's
 * FLEET_MAX_ATTEMPTS_MAX and FLEET_QUEUE_TTL_MAX, never below the gateway's defaults
 * (FLEET_MAX_ATTEMPTS, FLEET_QUEUE_TTL); and the TTL a tenant's index gets, longer than any
 * job can live (the longest queue TTL + the longest ttl_s). */
long gw_max_attempts_bound(const gw *g);
long gw_queue_ttl_bound(const gw *g);
long gw_index_ttl(const gw *g);
/* Checks a parsed job against the gateway (model, webhook URL) and builds its submit command
 * for the tenant of r. Returns 0, or -1 with p filled (422). */
int gw_submit_prepare(gw_req *r, const struct gw_job_request *jr, gw_submit_ids *ids,
                      const char *idem_hash, const char *idem_digest, fleet_cmd *cmd,
                      struct gw_problem *p);

/* submit_batch.c: POST /v1/jobs/batch */
void gw_jobs_batch(gw_req *r);

/* wait.c: holds r (paused) until job id is final or secs pass; then answers 200 with the
 * job (and its "result" when it succeeded), or timeout_status with the job as it is. */
void gw_wait_start(gw_req *r, const char *id, long secs, int timeout_status);

/* sse.c: GET /v1/jobs/{id}/events */
void gw_sse_start(gw_req *r, const char *id);

/* info.c */
void gw_info_healthz(gw_req *r);
void gw_info_readyz(gw_req *r);
void gw_info_models(gw_req *r);
void gw_info_stats(gw_req *r);

#endif
