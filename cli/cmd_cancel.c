/* cmd_cancel.c: `fleetctl cancel ID` -> DELETE /v1/jobs/ID.
 *
 * 200 means the job was still queued and will never run ("cancelled"); 202 means it is
 * running and stops at the model's next step ("cancel requested": `fleetctl wait ID`
 * then exits 3 once it has stopped). 409 (already finished) and 404 are errors, exit 1.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int cancel_run(const ctl_globals *g, int argc, char **argv) {
    const char *id = argv[0];
    if (!ctl_check_job_id(id)) return CTL_EXIT_USAGE;
    char err[512], path[64];
    ctl_http *h = ctl_http_open(g);
    if (!h) return CTL_EXIT_USAGE;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    ctl_http_response r;
    int rc = CTL_EXIT_FAIL;
    if (ctl_http_request(h, "DELETE", path, NULL, &r, err, sizeof err) < 0) {
        ctl_error("%s", err);
        ctl_http_free(h);
        return rc;
    }
    if (r.status == 200 || r.status == 202) {
        if (g->json) {
            fwrite(r.body, 1, r.len, stdout);
            if (r.len == 0 || r.body[r.len - 1] != '\n') fputc('\n', stdout);
        } else {
            puts(r.status == 200 ? "cancelled" : "cancel requested");
        }
        rc = CTL_EXIT_OK;
    } else {
        ctl_http_print_problem(&r, "cancel");
    }
    ctl_http_response_free(&r);
    ctl_http_free(h);
    return rc;
}

const ctl_command ctl_cmd_cancel = {
    .name = "cancel",
    .args = "ID",
    .summary = "cancel a job: prints 'cancelled' (was queued) or 'cancel requested' (running)",
    .opts = NULL,
    .nopts = 0,
    .min_args = 1,
    .max_args = 1,
    .run = cancel_run,
};
