/* cli.h: what the fleetctl commands share: global settings, exit codes, the command table.
 *
 * Exit codes (documented in docs/cli.md; scripts rely on them):
 *   0   success
 *   1   the request failed (HTTP error, connection error, failed job, missing key),
 *       `dlq retry` could not queue every job again, or `tenant add` found the tenant
 *   2   usage error (unknown command or option, bad argument, invalid INPUT_JSON)
 *   3   `wait`: the job was cancelled
 *   124 `wait`: --timeout expired before the job finished (the same code as timeout(1))
 */
#ifndef CTL_CLI_H
#define CTL_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "fleet/config.h"
#include "fleet/redis_target.h"
#include "http.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_CANCELLED 3
#define CTL_EXIT_TIMEOUT 124

/* Global settings, filled by main.c before a command runs. Strings point into argv, the
 * environment or the option table's defaults (nothing to free). */
typedef struct ctl_globals {
    const char *url;            /* gateway base URL, no trailing slash needed */
    fleet_redis_settings redis; /* inspect, dlq, tenant, model, shards (redis_target.h) */
    const char *prefix;         /* key prefix, inspect, dlq, tenant, model, shards */
    const char *api_key;        /* "" when none: no Authorization header is sent */
    long timeout_s;             /* wait limit; 0 = forever */
    long redis_wait_s;          /* how long a loading, busy or failing-over Redis is waited out */
    const char *allow_eviction; /* "on": use a Redis whose maxmemory-policy evicts keys */
    bool json;                  /* print raw JSON instead of human text */
} ctl_globals;

/* A subcommand (`dlq list`), for help texts only: the command's run() dispatches on its
 * first argument itself. */
typedef struct ctl_subcommand {
    const char *name;    /* "list" */
    const char *args;    /* "[--limit N]" */
    const char *summary; /* one line */
} ctl_subcommand;

/* One command. Its options are parsed together with the global ones, so a flag may go
 * before or after the command name. `run` gets the positional arguments after the command
 * name and returns the process exit code. */
typedef struct ctl_command {
    const char *name;
    const char *args;    /* "MODEL INPUT_JSON", for usage lines */
    const char *summary; /* one line for the global --help */
    const fleet_option *opts;
    size_t nopts;
    int min_args, max_args;
    int (*run)(const ctl_globals *g, int argc, char **argv);
    const ctl_subcommand *subs; /* NULL, or the subcommands (the first argument) */
    size_t nsubs;
} ctl_command;

extern const ctl_command ctl_cmd_submit;
extern const ctl_command ctl_cmd_status;
extern const ctl_command ctl_cmd_wait;
extern const ctl_command ctl_cmd_cancel;
extern const ctl_command ctl_cmd_list;
extern const ctl_command ctl_cmd_inspect;
extern const ctl_command ctl_cmd_stats;
extern const ctl_command ctl_cmd_dlq;
extern const ctl_command ctl_cmd_tenant;
extern const ctl_command ctl_cmd_model;
extern const ctl_command ctl_cmd_shards;

/* GET /v1/jobs/ID (cmd_status.c). Returns 0 and a new reference in *job; otherwise prints
 * why on stderr and returns CTL_EXIT_FAIL (404 included). With raw, the body is also
 * returned in *raw (malloc'd, caller frees) for --json output. */
int ctl_fetch_job(ctl_http *h, const char *id, json_t **job, char **raw);

/* Prints "fleetctl: <message>" and a newline on stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "usage: fleetctl <command> <usage> [options]" and "fleetctl: <message>" on
 * stderr, and returns CTL_EXIT_USAGE (`return ctl_usage_error("dlq", "list", "...")`). */
int ctl_usage_error(const char *command, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The string member name of o, or "" when it is missing or not a string. */
const char *ctl_jstr(const json_t *o, const char *name);

/* True when s is a job id that can go into a URL path or a key name; otherwise prints
 * why on stderr. */
bool ctl_check_job_id(const char *id);

#endif
