/* config.h: settings from flags, environment variables and defaults, in that order.
 *
 * Each binary declares one table of options; --help prints it with env names and
 * defaults, so the documentation cannot drift from the code.
 */
#ifndef FLEET_CONFIG_H
#define FLEET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum fleet_opt_type { FLEET_OPT_STR, FLEET_OPT_INT, FLEET_OPT_BOOL } fleet_opt_type;

typedef struct fleet_option {
    const char *flag; /* "redis-url" for --redis-url VALUE or --redis-url=VALUE */
    const char *env;  /* "FLEET_REDIS_URL" */
    fleet_opt_type type;
    const char *def; /* default, as text */
    const char *help;
    void *target;  /* const char ** (STR), long * (INT), bool * (BOOL) */
    long min, max; /* INT only: accepted range */
} fleet_option;

typedef enum fleet_config_result {
    FLEET_CONFIG_OK = 0,
    FLEET_CONFIG_HELP = 1,   /* --help was printed to stdout: exit 0 */
    FLEET_CONFIG_ERROR = -1, /* err says what is wrong: exit 2 */
} fleet_config_result;

/* Fills every target. String targets point into argv, the environment or the table's
 * defaults (nothing to free). Unknown flags, missing values and out-of-range numbers are
 * errors. Positional arguments are left in place and counted in *npos (when npos is not
 * NULL); they are moved to argv[1..*npos]. */
fleet_config_result fleet_config_parse(const fleet_option *opts, size_t nopts, int argc,
                                       char **argv, int *npos, const char *usage, char *err,
                                       size_t errlen);

void fleet_config_print_help(FILE *f, const fleet_option *opts, size_t nopts, const char *usage);

#endif
