/* tenant_args.c: `fleetctl tenant`'s subcommands and flags (the command's entry in
 * fleetctl's table), and their checks: every argument is checked before Redis is contacted
 * (exit 2). See tenant_cli.h. */
#include <stdio.h>
#include <string.h>

#include "fleet/job.h"
#include "tenant_cli.h"

/* Flags: NULL (or false) when not given. The limits are text, checked by
 * fleet_tenant_limit_parse, so that `set` knows which ones were given and every mistake
 * gets the same kind of message. */
static const char *opt_max_active;
static const char *opt_rate;
static const char *opt_burst;
static const char *opt_max_body;
static const char *opt_max_finished;
static const char *opt_max_bytes;
static bool opt_admin;
static bool opt_keep_old;
static bool opt_show_secret;

static const fleet_option ctl_tenant_opts[] = {
    {"max-active", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: most queued + running jobs at once, 0..10000000 (0 = unlimited)",
     &opt_max_active, 0, 0},
    {"rate", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: submits per second, decimal, 0..100000 (0 = unlimited)", &opt_rate, 0, 0},
    {"burst", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: submits allowed at once above the rate, 1..1000000 (default: the "
     "rate rounded up, at least 1)",
     &opt_burst, 0, 0},
    {"max-body", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: largest request body in bytes, 0..1073741824 (0 = the gateway's "
     "FLEET_MAX_BODY)",
     &opt_max_body, 0, 0},
    {"max-finished", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: most finished jobs kept; the oldest are deleted first, 0..100000000 "
     "(0 = unlimited)",
     &opt_max_finished, 0, 0},
    {"max-bytes", NULL, FLEET_OPT_STR, NULL,
     "tenant add/set: most bytes (inputs and results) of finished jobs kept; the oldest are "
     "deleted first, 0..1125899906842624 (0 = unlimited)",
     &opt_max_bytes, 0, 0},
    {"admin", NULL, FLEET_OPT_BOOL, "false",
     "tenant add/rotate-key: the key's role is admin (it may read global stats)", &opt_admin, 0, 0},
    {"keep-old", NULL, FLEET_OPT_BOOL, "false",
     "tenant rotate-key: keep the old keys working (delete them later with another "
     "rotate-key or revoke)",
     &opt_keep_old, 0, 0},
    {"show-secret", NULL, FLEET_OPT_BOOL, "false", "tenant show: print the webhook secret too",
     &opt_show_secret, 0, 0},
};
#define NOPTS (sizeof ctl_tenant_opts / sizeof ctl_tenant_opts[0])

static const ctl_subcommand ctl_tenant_subs[] = {
    [CTL_TENANT_ADD] = {"add", "NAME [LIMITS]",
                        "create a tenant (--admin: an admin key); prints its API key and "
                        "webhook secret once"},
    [CTL_TENANT_LIST] = {"list", "", "tenants: roles, limits, active jobs, keys, status"},
    [CTL_TENANT_SHOW] = {"show", "NAME",
                         "one tenant's settings and counts (--show-secret: its webhook secret)"},
    [CTL_TENANT_SET] = {"set", "NAME LIMITS",
                        "change limits: --max-active, --rate, --burst, --max-body, "
                        "--max-finished, --max-bytes"},
    [CTL_TENANT_ROTATE_KEY] = {"rotate-key", "NAME",
                               "a new API key, printed once; old keys deleted unless "
                               "--keep-old"},
    [CTL_TENANT_ROTATE_SECRET] = {"rotate-secret", "NAME", "a new webhook secret, printed once"},
    [CTL_TENANT_REVOKE] = {"revoke", "NAME",
                           "delete all of a tenant's keys; its jobs stay until they expire"},
};
#define NSUBS (sizeof ctl_tenant_subs / sizeof ctl_tenant_subs[0])

const ctl_command ctl_cmd_tenant = {
    .name = "tenant",
    .args = "add|list|show|set|rotate-key|rotate-secret|revoke ...",
    .summary = "tenants and their API keys and limits (reads and writes Redis directly, like "
               "dlq)",
    .opts = ctl_tenant_opts,
    .nopts = NOPTS,
    .min_args = 1,
    .max_args = 2,
    .run = ctl_tenant_run,
    .subs = ctl_tenant_subs,
    .nsubs = NSUBS,
};

#define SUB_BIT(s) (1u << (s))

/* Which subcommands take each flag of ctl_tenant_opts; one given to another is a usage
 * error. field: the tenant.h limit a flag sets, if it sets one. */
static const struct {
    const char *flag;
    unsigned subs;
    const char *owners;
    const char *field;
} flag_owners[] = {
    {"max-active", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_MAX_ACTIVE},
    {"rate", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_RATE},
    {"burst", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_BURST},
    {"max-body", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_MAX_BODY},
    {"max-finished", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_MAX_FINISHED},
    {"max-bytes", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_SET), "tenant add and set",
     FLEET_TENANT_F_MAX_BYTES},
    {"admin", SUB_BIT(CTL_TENANT_ADD) | SUB_BIT(CTL_TENANT_ROTATE_KEY), "tenant add and rotate-key",
     NULL},
    {"keep-old", SUB_BIT(CTL_TENANT_ROTATE_KEY), "tenant rotate-key", NULL},
    {"show-secret", SUB_BIT(CTL_TENANT_SHOW), "tenant show", NULL},
};
#define NOWNERS (sizeof flag_owners / sizeof flag_owners[0])

static bool given(const fleet_option *o) {
    return o->type == FLEET_OPT_BOOL ? *(const bool *)o->target
                                     : *(const char *const *)o->target != NULL;
}

/* Checks that every tenant flag given belongs to subcommand sub, and parses the limits
 * into *l. Returns 0, or CTL_EXIT_USAGE after printing why. */
static int check_flags(const char *usage, int sub, fleet_tenant_limits *l) {
    *l = (fleet_tenant_limits){0};
    for (size_t i = 0; i < NOPTS; i++) {
        const fleet_option *o = &ctl_tenant_opts[i];
        for (size_t j = 0; given(o) && j < NOWNERS; j++) {
            if (strcmp(flag_owners[j].flag, o->flag) != 0) continue;
            if (!(flag_owners[j].subs & SUB_BIT(sub)))
                return ctl_usage_error("tenant", usage, "--%s belongs to %s", o->flag,
                                       flag_owners[j].owners);
            char err[256];
            if (flag_owners[j].field &&
                fleet_tenant_limit_parse(l, flag_owners[j].field, *(const char *const *)o->target,
                                         err, sizeof err) < 0) {
                ctl_error("--%s: %s", o->flag, err);
                return CTL_EXIT_USAGE;
            }
        }
    }
    return 0;
}

int ctl_tenant_check_args(int argc, char **argv, ctl_tenant_args *a) {
    *a = (ctl_tenant_args){.sub = -1};
    for (size_t i = 0; i < NSUBS; i++)
        if (strcmp(argv[0], ctl_tenant_subs[i].name) == 0) a->sub = (int)i;
    if (a->sub < 0)
        return ctl_usage_error("tenant", "add|list|show|set|rotate-key|rotate-secret|revoke ...",
                               "unknown tenant subcommand '%.64s'; use add, list, show, set, "
                               "rotate-key, rotate-secret or revoke",
                               argv[0]);
    const ctl_subcommand *s = &ctl_tenant_subs[a->sub];
    char usage[96];
    snprintf(usage, sizeof usage, "%s%s%s", s->name, *s->args ? " " : "", s->args);
    int want = a->sub == CTL_TENANT_LIST ? 0 : 1;
    if (argc - 1 != want)
        return ctl_usage_error("tenant", usage,
                               want ? "tenant %s takes one tenant name, got %d arguments"
                                    : "tenant %s takes no arguments, got %d",
                               s->name, argc - 1);
    if (want && !fleet_tenant_name_valid(argv[1]))
        return ctl_usage_error("tenant", usage,
                               "'%.80s' is not a tenant name (1..%d characters of a-z 0-9 _ -)",
                               argv[1], FLEET_TENANT_MAX);
    a->name = want ? argv[1] : NULL;
    int rc = check_flags(usage, a->sub, &a->limits);
    if (rc) return rc;
    const fleet_tenant_limits *l = &a->limits;
    if (a->sub == CTL_TENANT_SET && !l->has_max_active && !l->has_rate && !l->has_burst &&
        !l->has_max_body && !l->has_max_finished && !l->has_max_bytes)
        return ctl_usage_error("tenant", usage,
                               "tenant set needs at least one of --max-active, --rate, --burst, "
                               "--max-body, --max-finished, --max-bytes");
    a->admin = opt_admin;
    a->keep_old = opt_keep_old;
    a->show_secret = opt_show_secret;
    return 0;
}
