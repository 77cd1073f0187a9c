/* cmd_status.c: `fleetctl status ID` -> GET /v1/jobs/ID, a summary a person reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "render.h"

int ctl_fetch_job(ctl_http *h, const char *id, json_t **job, char **raw) {
    *job = NULL;
    if (raw) *raw = NULL;
    char path[64], err[512];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    ctl_http_response r;
    if (ctl_http_request(h, "GET", path, NULL, &r, err, sizeof err) < 0) {
        ctl_error("%s", err);
        return CTL_EXIT_FAIL;
    }
    if (r.status != 200) {
        ctl_http_print_problem(&r, id);
        ctl_http_response_free(&r);
        return CTL_EXIT_FAIL;
    }
    *job = ctl_http_json(&r, id);
    if (*job && raw) {
        *raw = r.body; /* handed over: the caller frees it */
        r.body = NULL;
    }
    ctl_http_response_free(&r);
    return *job ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int status_run(const ctl_globals *g, int argc, char **argv) {
    const char *id = argv[0];
    if (!ctl_check_job_id(id)) return CTL_EXIT_USAGE;
    ctl_http *h = ctl_http_open(g);
    if (!h) return CTL_EXIT_USAGE;
    json_t *job;
    char *raw;
    int rc = ctl_fetch_job(h, id, &job, &raw);
    if (rc == CTL_EXIT_OK) {
        if (g->json) {
            fputs(raw, stdout);
            if (!*raw || raw[strlen(raw) - 1] != '\n') fputc('\n', stdout);
        } else {
            ctl_render_job(stdout, job);
        }
    }
    json_decref(job);
    free(raw);
    ctl_http_free(h);
    return rc;
}

const ctl_command ctl_cmd_status = {
    .name = "status",
    .args = "ID",
    .summary = "show a job's status, progress, queue position, attempts, timings, error",
    .opts = NULL,
    .nopts = 0,
    .min_args = 1,
    .max_args = 1,
    .run = status_run,
};
