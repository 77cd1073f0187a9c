/* main.c: fleetctl's entry point: global options, finding the command, dispatch.
 *
 * Global and per-command options form one table per run (globals after the command's
 * own), parsed by fleet_config_parse, so `fleetctl --json status ID` and
 * `fleetctl status ID --json` mean the same and --help shows every flag with its
 * environment variable and default.
 */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fleet/job.h"

static ctl_globals G;

static const fleet_option global_opts[] = {
    {"url", "FLEET_URL", FLEET_OPT_STR, "http://127.0.0.1:8080", "gateway base URL", &G.url, 0, 0},
    {"api-key", "FLEET_API_KEY", FLEET_OPT_STR, "",
     "API key, sent as 'Authorization: Bearer KEY' (nothing is sent when empty)", &G.api_key, 0, 0},
    FLEET_REDIS_OPTIONS(&G.redis),
    {"prefix", "FLEET_PREFIX", FLEET_OPT_STR, "fleet",
     "key prefix of the fleet (inspect, dlq, tenant, model, shards)", &G.prefix, 0, 0},
    {"redis-wait", "FLEETCTL_REDIS_WAIT", FLEET_OPT_INT, "10",
     "inspect, dlq, tenant, model, shards: seconds to wait out a Redis that is loading its "
     "dataset, busy or failing over, before giving up",
     &G.redis_wait_s, 0, 3600},
    {"allow-eviction", "FLEET_ALLOW_EVICTION", FLEET_OPT_STR, "off",
     "inspect, dlq, tenant, model, shards: on: use a Redis whose maxmemory-policy evicts keys "
     "(it loses jobs and API keys; off refuses it: set maxmemory-policy noeviction)",
     &G.allow_eviction, 0, 0},
    {"timeout", "FLEETCTL_TIMEOUT", FLEET_OPT_INT, "0",
     "wait: give up after this many seconds and exit 124 (0 = wait forever)", &G.timeout_s, 0,
     31L * 24 * 3600},
    {"json", "FLEETCTL_JSON", FLEET_OPT_BOOL, "false",
     "print JSON instead of human text (the gateway's as is)", &G.json, 0, 0},
};
#define N_GLOBAL (sizeof global_opts / sizeof global_opts[0])

static const ctl_command *const commands[] = {
    &ctl_cmd_submit, &ctl_cmd_status,  &ctl_cmd_wait,   &ctl_cmd_cancel,
    &ctl_cmd_list,   &ctl_cmd_inspect, &ctl_cmd_stats,  &ctl_cmd_dlq,
    &ctl_cmd_tenant, &ctl_cmd_model,   &ctl_cmd_shards,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* ------------------------------------------------------------------ shared helpers ------ */

void ctl_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fleetctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int ctl_usage_error(const char *command, const char *usage, const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "usage: fleetctl %s %s [options]\n", command, usage);
    ctl_error("%s", why);
    return CTL_EXIT_USAGE;
}

const char *ctl_jstr(const json_t *o, const char *name) {
    const char *s = json_string_value(json_object_get(o, name));
    return s ? s : "";
}

bool ctl_check_job_id(const char *id) {
    if (fleet_job_id_valid(id)) return true;
    ctl_error("'%s' is not a job id (26 characters of Crockford base32, as submit prints)", id);
    return false;
}

/* ------------------------------------------------------------------ usage --------------- */

/* Appends one "  NAME ARGS   summary" line to buf (n: what it holds). */
static size_t usage_line(char *buf, size_t cap, size_t n, const char *name, const char *args,
                         const char *summary) {
    if (n >= cap) return n;
    char head[96];
    snprintf(head, sizeof head, "%s%s%s", name, *args ? " " : "", args);
    return n + (size_t)snprintf(buf + n, cap - n, "  %-28s %s\n", head, summary);
}

/* Writes the global usage text (commands, exit codes) into buf. A command with
 * subcommands gets one line per subcommand. */
static void global_usage(char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap,
                                "usage: fleetctl [options] COMMAND [ARGS] [command options]\n\n"
                                "The command-line client of a fleet gateway (docs/cli.md).\n\n"
                                "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const ctl_command *c = commands[i];
        if (!c->nsubs) n = usage_line(buf, cap, n, c->name, c->args, c->summary);
        for (size_t j = 0; j < c->nsubs; j++) {
            char name[64];
            snprintf(name, sizeof name, "%s %s", c->name, c->subs[j].name);
            n = usage_line(buf, cap, n, name, c->subs[j].args, c->subs[j].summary);
        }
    }
    if (n < cap)
        snprintf(buf + n, cap - n,
                 "\n'fleetctl COMMAND --help' shows the options of one command.\n"
                 "Exit codes: 0 ok, 1 failed (dlq retry: not every job queued again; tenant\n"
                 "add: the tenant exists), 2 usage, 3 job cancelled (wait), 124 --timeout\n"
                 "expired (wait).");
}

/* Writes the usage text of one command (its --help header) into buf. */
static void command_usage(const ctl_command *cmd, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "usage: fleetctl %s%s%s [options]\n\n%s", cmd->name,
                                *cmd->args ? " " : "", cmd->args, cmd->summary);
    if (cmd->nsubs && n < cap) n += (size_t)snprintf(buf + n, cap - n, "\n\nSubcommands:\n");
    for (size_t j = 0; j < cmd->nsubs && n < cap; j++) {
        char head[96];
        snprintf(head, sizeof head, "%s %s", cmd->subs[j].name, cmd->subs[j].args);
        n += (size_t)snprintf(buf + n, cap - n, "  %-24s %s\n", head, cmd->subs[j].summary);
    }
    if (cmd->nsubs && n > 0 && n < cap && buf[n - 1] == '\n') buf[n - 1] = '\0';
}

/* Prints the usage line and why the number of arguments is wrong. */
static void bad_arg_count(const ctl_command *cmd, int nargs) {
    fprintf(stderr, "usage: fleetctl %s%s%s [options]\n", cmd->name, *cmd->args ? " " : "",
            cmd->args);
    if (cmd->nsubs && nargs == 0) {
        char names[128] = "";
        for (size_t j = 0; j < cmd->nsubs; j++) {
            size_t n = strlen(names);
            snprintf(names + n, sizeof names - n, "%s%s", j ? ", " : "", cmd->subs[j].name);
        }
        ctl_error("%s needs a subcommand: %s", cmd->name, names);
    } else if (cmd->min_args == cmd->max_args) {
        ctl_error("%s takes %d argument%s, got %d", cmd->name, cmd->max_args,
                  cmd->max_args == 1 ? "" : "s", nargs);
    } else if (nargs < cmd->min_args) {
        ctl_error("%s takes at least %d argument%s, got %d", cmd->name, cmd->min_args,
                  cmd->min_args == 1 ? "" : "s", nargs);
    } else {
        ctl_error("%s takes at most %d argument%s, got %d", cmd->name, cmd->max_args,
                  cmd->max_args == 1 ? "" : "s", nargs);
    }
}

/* The index in argv of the command name: the first argument that is neither a flag nor
 * the value of a global flag. 0 when there is none. */
static int find_command(int argc, char **argv, bool *help) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) return i + 1 < argc ? i + 1 : 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) return i;
        if (strchr(a, '=')) continue;
        for (size_t j = 0; j < N_GLOBAL; j++)
            if (strcmp(a + 2, global_opts[j].flag) == 0 && global_opts[j].type != FLEET_OPT_BOOL)
                i++; /* skip its value */
    }
    return 0;
}

/* ------------------------------------------------------------------ main ---------------- */

int main(int argc, char **argv) {
    bool help = false;
    int ci = find_command(argc, argv, &help);
    char gusage[4096];
    global_usage(gusage, sizeof gusage);
    if (ci == 0) {
        if (help) {
            fleet_config_print_help(stdout, global_opts, N_GLOBAL, gusage);
            return CTL_EXIT_OK;
        }
        fprintf(stderr, "%s\n", gusage);
        ctl_error("no command given");
        return CTL_EXIT_USAGE;
    }
    const ctl_command *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[ci], commands[i]->name) == 0) cmd = commands[i];
    if (!cmd) {
        fprintf(stderr, "%s\n", gusage);
        ctl_error("unknown command '%s'", argv[ci]);
        return CTL_EXIT_USAGE;
    }

    fleet_option opts[32];
    size_t nopts = 0;
    for (size_t i = 0; i < cmd->nopts && nopts < 32; i++) opts[nopts++] = cmd->opts[i];
    for (size_t i = 0; i < N_GLOBAL && nopts < 32; i++) opts[nopts++] = global_opts[i];

    char usage[2048];
    command_usage(cmd, usage, sizeof usage);
    char err[256];
    int npos = 0;
    fleet_config_result cr = fleet_config_parse(opts, nopts, argc, argv, &npos, usage, err,
                                                sizeof err);
    if (cr == FLEET_CONFIG_HELP) return CTL_EXIT_OK;
    if (cr == FLEET_CONFIG_ERROR) {
        ctl_error("%s", err);
        fprintf(stderr, "run 'fleetctl %s --help' for its options\n", cmd->name);
        return CTL_EXIT_USAGE;
    }
    /* argv[1] is the command name itself (the first positional argument). */
    int nargs = npos - 1;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        bad_arg_count(cmd, nargs);
        return CTL_EXIT_USAGE;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ctl_error("libcurl failed to initialise");
        return CTL_EXIT_FAIL;
    }
    int rc = cmd->run(&G, nargs, argv + 2);
    curl_global_cleanup();
    return rc;
}
