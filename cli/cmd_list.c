/* cmd_list.c: `fleetctl list` -> GET /v1/jobs, newest first, as a table.
 *
 * Without --all one page is shown and, when more exist, a hint with the cursor goes to
 * stderr. With --all the pages are followed through next_cursor until it is null; with
 * --json as well, the jobs of every page are merged into one {"jobs": [...],
 * "next_cursor": null} document so the output stays one JSON value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "render.h"

static const char *opt_status;
static const char *opt_model;
static const char *opt_cursor;
static long opt_limit = 20;
static bool opt_all;

static const fleet_option list_opts[] = {
    {"status", "FLEETCTL_LIST_STATUS", FLEET_OPT_STR, NULL,
     "only jobs in this state (queued, running, succeeded, failed, cancelled)", &opt_status, 0, 0},
    {"model", "FLEETCTL_LIST_MODEL", FLEET_OPT_STR, NULL, "only jobs of this model", &opt_model, 0,
     0},
    {"limit", "FLEETCTL_LIST_LIMIT", FLEET_OPT_INT, "20", "jobs per page (1..100)", &opt_limit, 1,
     100},
    {"cursor", "FLEETCTL_LIST_CURSOR", FLEET_OPT_STR, NULL,
     "start after this cursor (the next_cursor of an earlier page)", &opt_cursor, 0, 0},
    {"all", "FLEETCTL_LIST_ALL", FLEET_OPT_BOOL, "false", "follow next_cursor to the end", &opt_all,
     0, 0},
};

/* Appends "&name=escaped(value)" to path when value is set. */
static int add_param(ctl_http *h, char *path, size_t cap, const char *name, const char *value) {
    if (!value || !*value) return 0;
    char *e = ctl_http_escape(h, value);
    if (!e) return -1;
    size_t n = strlen(path);
    int w = snprintf(path + n, cap - n, "&%s=%s", name, e);
    free(e);
    return w < 0 || (size_t)w >= cap - n ? -1 : 0;
}

static int list_run(const ctl_globals *g, int argc, char **argv) {
    char err[512];
    ctl_http *h = ctl_http_open(g);
    if (!h) return CTL_EXIT_USAGE;
    json_t *merged = g->json && opt_all ? json_array() : NULL;
    char *cursor = opt_cursor ? strdup(opt_cursor) : NULL;
    int rc = CTL_EXIT_OK;
    long shown = 0;

    for (;;) {
        char path[1024];
        snprintf(path, sizeof path, "/v1/jobs?limit=%ld", opt_limit);
        if (add_param(h, path, sizeof path, "status", opt_status) < 0 ||
            add_param(h, path, sizeof path, "model", opt_model) < 0 ||
            add_param(h, path, sizeof path, "cursor", cursor) < 0) {
            ctl_error("list: query too long");
            rc = CTL_EXIT_USAGE;
            break;
        }
        ctl_http_response r;
        if (ctl_http_request(h, "GET", path, NULL, &r, err, sizeof err) < 0) {
            ctl_error("%s", err);
            rc = CTL_EXIT_FAIL;
            break;
        }
        if (r.status != 200) {
            ctl_http_print_problem(&r, "list");
            ctl_http_response_free(&r);
            rc = CTL_EXIT_FAIL;
            break;
        }
        json_t *page = ctl_http_json(&r, "list");
        json_t *jobs = json_object_get(page, "jobs");
        if (!json_is_array(jobs)) {
            if (page)
                ctl_error("list: the reply has no \"jobs\" array (request id %s)", r.request_id);
            json_decref(page);
            ctl_http_response_free(&r);
            rc = CTL_EXIT_FAIL;
            break;
        }
        if (g->json && !opt_all) {
            fwrite(r.body, 1, r.len, stdout);
            if (r.len == 0 || r.body[r.len - 1] != '\n') fputc('\n', stdout);
        }
        ctl_http_response_free(&r);
        if (!g->json && shown == 0 && json_array_size(jobs) > 0) ctl_render_table_header(stdout);
        size_t i;
        json_t *job;
        json_array_foreach(jobs, i, job) {
            if (merged) json_array_append(merged, job);
            else if (!g->json) ctl_render_table_row(stdout, job);
            shown++;
        }
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        free(cursor);
        cursor = next && *next ? strdup(next) : NULL;
        json_decref(page);
        if (!cursor) break;
        if (!opt_all) {
            if (!g->json) fprintf(stderr, "(more: fleetctl list --cursor %s, or --all)\n", cursor);
            break;
        }
    }
    if (merged && rc == CTL_EXIT_OK) {
        json_t *doc = json_pack("{s:O,s:n}", "jobs", merged, "next_cursor");
        ctl_render_json(stdout, doc);
        json_decref(doc);
    }
    if (!g->json && rc == CTL_EXIT_OK && shown == 0) fprintf(stderr, "(no jobs)\n");
    json_decref(merged);
    free(cursor);
    ctl_http_free(h);
    return rc;
}

const ctl_command ctl_cmd_list = {
    .name = "list",
    .args = "",
    .summary = "list jobs, newest first: id, status, model, created, progress",
    .opts = list_opts,
    .nopts = sizeof list_opts / sizeof list_opts[0],
    .min_args = 0,
    .max_args = 0,
    .run = list_run,
};
