/* cmd_wait.c: `fleetctl wait ID`: poll until the job is final, then print its result.
 *
 * Polling (GET /v1/jobs/ID every 100 ms, growing by half up to 1 s) rather than SSE keeps
 * fleetctl to plain request/response, works through any proxy, and costs the gateway one
 * cheap read per second per waiting client. Progress changes go to stderr and the result
 * alone to stdout, so `fleetctl wait ID > out.json` captures just the result.
 *
 * A gateway that is briefly unreachable or answers 5xx (a restart, a Redis failover) does
 * not end the wait: jobs outlive gateways. Only after CTL_WAIT_OUTAGE_MS of nothing but
 * failures does wait give up with exit 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fleet/job.h"
#include "render.h"

#define CTL_WAIT_FIRST_MS 100
#define CTL_WAIT_MAX_MS 1000
#define CTL_WAIT_OUTAGE_MS 30000

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms) {
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Prints the result of a succeeded job. Returns the exit code. */
static int print_result(ctl_http *h, const ctl_globals *g, const char *id) {
    char path[80], err[512];
    snprintf(path, sizeof path, "/v1/jobs/%s/result", id);
    ctl_http_response r;
    if (ctl_http_request(h, "GET", path, NULL, &r, err, sizeof err) < 0) {
        ctl_error("%s", err);
        return CTL_EXIT_FAIL;
    }
    int rc = CTL_EXIT_FAIL;
    if (r.status != 200) {
        ctl_http_print_problem(&r, "result");
    } else if (g->json || strcmp(r.content_type, "application/json") != 0) {
        /* Raw bytes when asked for, or when the model's output is not JSON at all. */
        fwrite(r.body, 1, r.len, stdout);
        if (g->json && (r.len == 0 || r.body[r.len - 1] != '\n')) fputc('\n', stdout);
        rc = CTL_EXIT_OK;
    } else {
        json_t *j = ctl_http_json(&r, "result");
        if (j) {
            ctl_render_json(stdout, j);
            rc = CTL_EXIT_OK;
        }
        json_decref(j);
    }
    ctl_http_response_free(&r);
    return rc;
}

/* Reports how the job ended. Returns the exit code. */
static int finish(ctl_http *h, const ctl_globals *g, const char *id, const json_t *job) {
    const char *status = json_string_value(json_object_get(job, "status"));
    const char *error = json_string_value(json_object_get(job, "error"));
    if (strcmp(status, "succeeded") == 0) return print_result(h, g, id);
    if (g->json) {
        char *s = json_dumps(job, JSON_COMPACT);
        if (s) puts(s);
        free(s);
    }
    ctl_error("job %s %s%s%s", id, status, error ? ": " : "", error ? error : "");
    return strcmp(status, "cancelled") == 0 ? CTL_EXIT_CANCELLED : CTL_EXIT_FAIL;
}

static int wait_run(const ctl_globals *g, int argc, char **argv) {
    const char *id = argv[0];
    if (!ctl_check_job_id(id)) return CTL_EXIT_USAGE;
    char err[512];
    ctl_http *h = ctl_http_open(g);
    if (!h) return CTL_EXIT_USAGE;
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    long long start = mono_ms();
    long long deadline = g->timeout_s > 0 ? start + g->timeout_s * 1000 : -1;
    long long interval = CTL_WAIT_FIRST_MS;
    long long failing_since = -1;
    char last_line[512] = "", last_status[32] = "";
    int rc = -1;

    while (rc < 0) {
        ctl_http_response r;
        if (ctl_http_request(h, "GET", path, NULL, &r, err, sizeof err) < 0 || r.status >= 500) {
            if (failing_since < 0) {
                if (r.body) ctl_http_print_problem(&r, "wait (will retry)");
                else ctl_error("%s (will retry)", err);
                failing_since = mono_ms();
            } else if (mono_ms() - failing_since > CTL_WAIT_OUTAGE_MS) {
                ctl_error("wait: the gateway has not answered for %d s; giving up",
                          CTL_WAIT_OUTAGE_MS / 1000);
                rc = CTL_EXIT_FAIL;
            }
            ctl_http_response_free(&r);
        } else if (r.status != 200) {
            ctl_http_print_problem(&r, id);
            ctl_http_response_free(&r);
            rc = CTL_EXIT_FAIL;
        } else {
            failing_since = -1;
            json_t *job = ctl_http_json(&r, id);
            ctl_http_response_free(&r);
            const char *status = json_string_value(json_object_get(job, "status"));
            if (!status) {
                if (job) ctl_error("%s: the gateway's job object has no status", id);
                rc = CTL_EXIT_FAIL;
            } else if (fleet_status_is_final(fleet_status_from_string(status))) {
                rc = finish(h, g, id, job);
            } else {
                char line[512];
                ctl_render_progress_line(line, sizeof line, job);
                if (strcmp(line, last_line) != 0) {
                    fprintf(stderr, "[%6.1fs] %s\n", (double)(mono_ms() - start) / 1000.0, line);
                    snprintf(last_line, sizeof last_line, "%s", line);
                }
                snprintf(last_status, sizeof last_status, "%s", status);
            }
            json_decref(job);
        }
        if (rc >= 0) break;

        long long now = mono_ms();
        if (deadline >= 0 && now >= deadline) {
            ctl_error("job %s is still %s after %ld s (--timeout)", id,
                      last_status[0] ? last_status : "unreachable", g->timeout_s);
            rc = CTL_EXIT_TIMEOUT;
            break;
        }
        long long nap = interval;
        if (deadline >= 0 && now + nap > deadline) nap = deadline - now;
        sleep_ms(nap);
        interval = interval * 3 / 2;
        if (interval > CTL_WAIT_MAX_MS) interval = CTL_WAIT_MAX_MS;
    }
    ctl_http_free(h);
    return rc;
}

const ctl_command ctl_cmd_wait = {
    .name = "wait",
    .args = "ID",
    .summary = "wait until a job is final; print its result (exit 1 failed, 3 cancelled, "
               "124 --timeout)",
    .opts = NULL,
    .nopts = 0,
    .min_args = 1,
    .max_args = 1,
    .run = wait_run,
};
