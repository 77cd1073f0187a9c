/* routes.c: the route table. libevhtp's own prefix matching is not used (it matches by
 * prefix and ignores methods); every request comes here and is matched exactly. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "fleet/job.h"
#include "metrics.h"
#include "ui.h"
#include "query.h"
#include "openapi.h"

/* The job routes take a job id from the path; the model routes (R_MODEL_*, last) a model
 * name, which their handlers check. */
typedef enum route_kind {
    R_PLAIN,
    R_JOB,
    R_JOB_RESULT,
    R_JOB_EVENTS,
    R_JOB_RETRY,
    R_JOB_OUTPUTS,
    R_MODEL_PAUSE,
    R_MODEL_RESUME,
    R_MODEL_PURGE,
} route_kind;

typedef struct route {
    htp_method method;
    route_kind kind;
    const char *path; /* R_PLAIN: the exact path; a job route: its template (docs, checks) */
    void (*plain)(gw_req *);
    void (*job)(gw_req *, const char *id);
} route;

static const route routes[] = {
    {htp_method_GET, R_PLAIN, "/healthz", gw_info_healthz, NULL},
    {htp_method_GET, R_PLAIN, "/readyz", gw_info_readyz, NULL},
    {htp_method_GET, R_PLAIN, "/openapi.json", gw_openapi_serve, NULL},
    {htp_method_GET, R_PLAIN, "/metrics", gw_metrics_scrape, NULL},
    {htp_method_GET, R_PLAIN, "/v1/models", gw_info_models, NULL},
    {htp_method_GET, R_PLAIN, "/v1/stats", gw_info_stats, NULL},
    {htp_method_POST, R_PLAIN, "/v1/jobs", gw_jobs_submit, NULL},
    {htp_method_POST, R_PLAIN, "/v1/jobs/batch", gw_jobs_batch, NULL},
    {htp_method_GET, R_PLAIN, "/v1/jobs", gw_jobs_list, NULL},
    {htp_method_GET, R_JOB, "/v1/jobs/{id}", NULL, gw_jobs_get},
    {htp_method_DELETE, R_JOB, "/v1/jobs/{id}", NULL, gw_jobs_cancel},
    {htp_method_GET, R_JOB_RESULT, "/v1/jobs/{id}/result", NULL, gw_jobs_result},
    {htp_method_GET, R_JOB_EVENTS, "/v1/jobs/{id}/events", NULL, gw_sse_start},
    {htp_method_POST, R_JOB_RETRY, "/v1/jobs/{id}/retry", NULL, gw_jobs_retry},
    {htp_method_GET, R_JOB_OUTPUTS, "/v1/jobs/{id}/outputs", NULL, gw_jobs_outputs},
    {htp_method_POST, R_MODEL_PAUSE, "/v1/models/{model}/pause", NULL, gw_models_pause},
    {htp_method_POST, R_MODEL_RESUME, "/v1/models/{model}/resume", NULL, gw_models_resume},
    {htp_method_POST, R_MODEL_PURGE, "/v1/models/{model}/purge", NULL, gw_models_purge},
    {htp_method_GET, R_PLAIN, "/", gw_ui_serve, NULL},
    {htp_method_GET, R_PLAIN, "/ui/app.css", gw_ui_serve, NULL},
    {htp_method_GET, R_PLAIN, "/ui/app.js", gw_ui_serve, NULL},
};

/* Splits "/v1/models/{model}/pause", ".../resume" and ".../purge". Returns the kind, or -1
 * (a name too long for name: no route). */
static int match_model_path(const char *path, char *name, size_t len) {
    static const char pre[] = "/v1/models/";
    if (strncmp(path, pre, sizeof pre - 1) != 0) return -1;
    const char *s = path + sizeof pre - 1;
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || (size_t)(slash - s) >= len) return -1;
    int kind = strcmp(slash, "/pause") == 0    ? R_MODEL_PAUSE
               : strcmp(slash, "/resume") == 0 ? R_MODEL_RESUME
               : strcmp(slash, "/purge") == 0  ? R_MODEL_PURGE
                                               : -1;
    if (kind < 0) return -1;
    memcpy(name, s, (size_t)(slash - s));
    name[slash - s] = '\0';
    return kind;
}

/* Splits "/v1/jobs/{id}", "/v1/jobs/{id}/result", "/v1/jobs/{id}/events",
 * "/v1/jobs/{id}/retry" and "/v1/jobs/{id}/outputs". Returns the kind, or -1. */
static int match_job_path(const char *path, char *id, size_t idlen) {
    static const char pre[] = "/v1/jobs/";
    if (strncmp(path, pre, sizeof pre - 1) != 0) return -1;
    if (strcmp(path, "/v1/jobs/batch") == 0) return -1; /* a plain route, not an id */
    const char *s = path + sizeof pre - 1;
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= idlen) return n == 0 ? -1 : -2; /* -2: a job path, id too long */
    memcpy(id, s, n);
    id[n] = '\0';
    if (!slash) return R_JOB;
    if (strcmp(slash, "/result") == 0) return R_JOB_RESULT;
    if (strcmp(slash, "/events") == 0) return R_JOB_EVENTS;
    if (strcmp(slash, "/retry") == 0) return R_JOB_RETRY;
    if (strcmp(slash, "/outputs") == 0) return R_JOB_OUTPUTS;
    return -1;
}

/* Runs the matched route once the request is authenticated. A job route's handler runs
 * only with a well-formed id: any other answers 400 invalid-id here (an id that cannot
 * exist says more as a malformed request than as an unknown job), so the handlers
 * (jobs.c, wait.c, sse.c) need not check it. An API route's handler runs only with the
 * query parameters it reads (query.c's table), each given once. */
static void dispatch(gw_req *r) {
    const route *rt = r->route;
    if (r->who.max_body > 0 && r->body_len > (size_t)r->who.max_body) {
        gw_reply_problem(r, GW_PROBLEM_BODY_TOO_LARGE,
                         "the body is larger than your tenant's limit of %ld bytes",
                         r->who.max_body);
        return;
    }
    if (rt->kind != R_PLAIN && rt->kind < R_MODEL_PAUSE && !fleet_job_id_valid(r->route_id)) {
        if (strlen(r->route_id) > FLEET_ID_LEN)
            gw_reply_problem(r, GW_PROBLEM_INVALID_ID,
                             "'%.32s...' is not a job id: a job id is %d characters of "
                             "Crockford base32 (0-9 and A-Z without I, L, O, U), as a submit "
                             "returns it",
                             r->route_id, FLEET_ID_LEN);
        else
            gw_reply_problem(r, GW_PROBLEM_INVALID_ID,
                             "'%s' is not a job id: a job id is %d characters of Crockford "
                             "base32 (0-9 and A-Z without I, L, O, U), as a submit returns it",
                             r->route_id, FLEET_ID_LEN);
        return;
    }
    const char *query = r->req->uri && r->req->uri->query_raw ? (const char *)r->req->uri->query_raw
                                                              : NULL;
    if (query && rt->path && strncmp(rt->path, "/v1/", 4) == 0) {
        char err[320];
        const char *method = htparser_get_methodstr_m(rt->method);
        if (gw_query_check(query, gw_query_params_of(method, rt->path), err, sizeof err) < 0) {
            gw_reply_problem(r, GW_PROBLEM_INVALID_QUERY, "%s %s: %s", method, rt->path, err);
            return;
        }
    }
    if (rt->kind == R_PLAIN) rt->plain(r);
    else rt->job(r, r->route_id);
}

void gw_route(evhtp_request_t *req, void *arg) {
    gw_req *r = gw_req_of(req, arg);
    if (!r) { /* the headers hook did not run (out of memory): answer plainly */
        evhtp_send_reply(req, 500);
        return;
    }
    if (r->uri_too_long) {
        gw_reply_problem(r, GW_PROBLEM_URI_TOO_LONG, "the request URI is longer than %d bytes",
                         GW_URI_MAX);
        return;
    }
    if (r->too_large) {
        gw_reply_problem(r, GW_PROBLEM_BODY_TOO_LARGE,
                         "the body is larger than the limit of %ld bytes (FLEET_MAX_BODY)",
                         r->g->cfg.max_body);
        return;
    }
    const char *path = req->uri && req->uri->path && req->uri->path->full ? req->uri->path->full
                                                                          : "/";
    char id[FLEET_MODEL_MAX + 1] = ""; /* a plain route leaves it unset: its route_id is "" */
    int kind = match_job_path(path, id, sizeof id);
    if (kind == -1) kind = match_model_path(path, id, sizeof id);
    if (kind == -2) {
        kind = R_JOB;
        /* Too long to be an id (answers 400 invalid-id): its start, marked as longer. */
        const char *s = path + strlen("/v1/jobs/");
        snprintf(id, sizeof id, "%.*s", (int)(sizeof id - 1), s);
    }
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const route *rt = &routes[i];
        bool same = rt->kind == R_PLAIN ? (kind < 0 && strcmp(rt->path, path) == 0)
                                        : (int)rt->kind == kind;
        if (!same) continue;
        path_known = true;
        if (rt->method == req->method) {
            r->route = rt;
            snprintf(r->route_id, sizeof r->route_id, "%s", id);
            /* Every /v1 route needs an API key; health checks do not. */
            if (strncmp(path, "/v1/", 4) == 0) gw_auth_then(r, dispatch);
            else dispatch(r);
            return;
        }
        if (*allow) strncat(allow, ", ", sizeof allow - strlen(allow) - 1);
        strncat(allow, htparser_get_methodstr_m(rt->method), sizeof allow - strlen(allow) - 1);
    }
    if (path_known) {
        gw_add_header(r, "Allow", allow);
        gw_reply_problem(r, GW_PROBLEM_METHOD_NOT_ALLOWED,
                         "%s is not allowed on %.200s; allowed: %s",
                         htparser_get_methodstr_m(req->method), path, allow);
        return;
    }
    gw_reply_problem(r, GW_PROBLEM_NOT_FOUND, "no route %.200s; see docs/api.md for the routes",
                     path);
}

const char *gw_route_template(const gw_req *r) {
    const route *rt = r->route;
    return rt ? rt->path : NULL;
}
