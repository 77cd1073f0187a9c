/* cmd_submit.c: `fleetctl submit MODEL INPUT_JSON` -> POST /v1/jobs, prints the job id.
 *
 * INPUT_JSON is checked locally first so that a typo is reported with its line and column
 * before anything goes over the network; the gateway checks it again (and the model name,
 * and the ranges) and its problem detail is printed as is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "render.h"

#define CTL_INPUT_MAX (64u << 20) /* far above any gateway body limit; stops a runaway pipe */

static const char *opt_priority;
static long opt_ttl = -1;
static long opt_timeout = -1;
static const char *opt_metadata;

static const fleet_option submit_opts[] = {
    {"priority", "FLEETCTL_PRIORITY", FLEET_OPT_STR, NULL,
     "high, normal or low (the gateway's default is normal)", &opt_priority, 0, 0},
    {"ttl", "FLEETCTL_TTL", FLEET_OPT_INT, NULL,
     "seconds the job and its result live after finishing (ttl_s)", &opt_ttl, 1, 604800},
    {"timeout-s", "FLEETCTL_JOB_TIMEOUT", FLEET_OPT_INT, NULL,
     "execution limit in seconds once running (timeout_s; 0 = none)", &opt_timeout, 0, 86400},
    {"metadata", "FLEETCTL_METADATA", FLEET_OPT_STR, NULL,
     "a small JSON object echoed back with the job", &opt_metadata, 0, 0},
};

/* Reads all of f into a malloc'd NUL-terminated buffer. */
static char *read_all(FILE *f, const char *name) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= CTL_INPUT_MAX) {
                ctl_error("%s: input is over %u MiB", name, CTL_INPUT_MAX >> 20);
                free(buf);
                return NULL;
            }
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) {
        ctl_error("%s: read error: %s", name, strerror(errno));
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* INPUT_JSON is the JSON text itself, "-" for stdin, or "@path". Returns a new reference,
 * or NULL after printing why. */
static json_t *load_input(const char *arg) {
    char *text = NULL;
    const char *src = "INPUT_JSON";
    if (strcmp(arg, "-") == 0) {
        src = "stdin";
        text = read_all(stdin, src);
        if (!text) return NULL;
    } else if (arg[0] == '@') {
        src = arg + 1;
        FILE *f = fopen(src, "rb");
        if (!f) {
            ctl_error("cannot open %s: %s", src, strerror(errno));
            return NULL;
        }
        text = read_all(f, src);
        fclose(f);
        if (!text) return NULL;
    }
    json_error_t je;
    /* The input may be any JSON value, a bare string or number included. */
    json_t *j = json_loads(text ? text : arg, JSON_DECODE_ANY, &je);
    if (!j)
        ctl_error("%s is not valid JSON: line %d, column %d: %s", src, je.line, je.column, je.text);
    free(text);
    return j;
}

static int submit_run(const ctl_globals *g, int argc, char **argv) {
    const char *model = argv[0];
    json_t *input = load_input(argv[1]);
    if (!input) return CTL_EXIT_USAGE;
    json_t *body = json_object();
    json_object_set_new(body, "model", json_string(model));
    json_object_set_new(body, "input", input);
    if (opt_priority) json_object_set_new(body, "priority", json_string(opt_priority));
    if (opt_ttl >= 0) json_object_set_new(body, "ttl_s", json_integer(opt_ttl));
    if (opt_timeout >= 0) json_object_set_new(body, "timeout_s", json_integer(opt_timeout));
    if (opt_metadata) {
        json_error_t je;
        json_t *m = json_loads(opt_metadata, 0, &je);
        if (!json_is_object(m)) {
            ctl_error("--metadata must be a JSON object%s%s", m ? "" : ": ", m ? "" : je.text);
            json_decref(m);
            json_decref(body);
            return CTL_EXIT_USAGE;
        }
        json_object_set_new(body, "metadata", m);
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text) {
        ctl_error("out of memory");
        return CTL_EXIT_FAIL;
    }

    char err[512];
    ctl_http *h = ctl_http_open(g);
    if (!h) {
        free(text);
        return CTL_EXIT_USAGE;
    }
    ctl_http_response r;
    int rc = CTL_EXIT_FAIL;
    if (ctl_http_request(h, "POST", "/v1/jobs", text, &r, err, sizeof err) < 0) {
        ctl_error("%s", err);
        goto out;
    }
    if (r.status != 202 && r.status != 200 && r.status != 201) {
        ctl_http_print_problem(&r, "submit");
        goto out_resp;
    }
    if (g->json) {
        fwrite(r.body, 1, r.len, stdout);
        if (r.len == 0 || r.body[r.len - 1] != '\n') fputc('\n', stdout);
        rc = CTL_EXIT_OK;
        goto out_resp;
    }
    json_t *job = ctl_http_json(&r, "submit");
    const char *id = json_string_value(json_object_get(job, "id"));
    if (id) {
        puts(id);
        rc = CTL_EXIT_OK;
    } else if (job) {
        ctl_error("submit: the gateway answered %ld without a job id (request id %s)", r.status,
                  r.request_id);
    }
    json_decref(job);
out_resp:
    ctl_http_response_free(&r);
out:
    ctl_http_free(h);
    free(text);
    return rc;
}

const ctl_command ctl_cmd_submit = {
    .name = "submit",
    .args = "MODEL INPUT_JSON",
    .summary = "submit a job and print its id (INPUT_JSON: JSON text, '-' for stdin, @file)",
    .opts = submit_opts,
    .nopts = sizeof submit_opts / sizeof submit_opts[0],
    .min_args = 2,
    .max_args = 2,
    .run = submit_run,
};
