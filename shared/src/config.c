/* config.c: flags > environment > defaults, from one table per binary (config.h). */
#include "fleet/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"

/* Stores text into opt's target, checking its type and range. */
static int assign(const fleet_option *o, const char *text, const char *source, char *err,
                  size_t errlen) {
    switch (o->type) {
    case FLEET_OPT_STR: *(const char **)o->target = text; return 0;
    case FLEET_OPT_INT: {
        errno = 0;
        char *end = NULL;
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end != '\0') {
            fleet_err(err, errlen, "%s: '%s' is not a whole number", source, text);
            return -1;
        }
        if (v < o->min || v > o->max) {
            fleet_err(err, errlen, "%s: %ld is out of range %ld..%ld", source, v, o->min, o->max);
            return -1;
        }
        *(long *)o->target = v;
        return 0;
    }
    case FLEET_OPT_BOOL:
        if (!strcmp(text, "1") || !strcmp(text, "true") || !strcmp(text, "yes") ||
            !strcmp(text, "on")) {
            *(bool *)o->target = true;
        } else if (!strcmp(text, "0") || !strcmp(text, "false") || !strcmp(text, "no") ||
                   !strcmp(text, "off")) {
            *(bool *)o->target = false;
        } else {
            fleet_err(err, errlen, "%s: '%s' is not a boolean (true/false)", source, text);
            return -1;
        }
        return 0;
    }
    return -1;
}

void fleet_config_print_help(FILE *f, const fleet_option *opts, size_t nopts, const char *usage) {
    fprintf(f, "%s\n\nOptions (flag, environment variable, default):\n", usage);
    for (size_t i = 0; i < nopts; i++) {
        const fleet_option *o = &opts[i];
        fprintf(f, "  --%-20s %-28s default: %s\n      %s\n", o->flag, o->env ? o->env : "",
                o->def && *o->def ? o->def : "(none)", o->help);
    }
    fprintf(f, "  --%-20s %-28s\n      %s\n", "help", "", "print this help and exit");
}

fleet_config_result fleet_config_parse(const fleet_option *opts, size_t nopts, int argc,
                                       char **argv, int *npos, const char *usage, char *err,
                                       size_t errlen) {
    char source[96];
    for (size_t i = 0; i < nopts; i++) {
        const fleet_option *o = &opts[i];
        if (o->def) {
            snprintf(source, sizeof source, "default of --%s", o->flag);
            if (assign(o, o->def, source, err, errlen) < 0) return FLEET_CONFIG_ERROR;
        }
        const char *env = o->env ? getenv(o->env) : NULL;
        if (env) {
            snprintf(source, sizeof source, "%s", o->env);
            if (assign(o, env, source, err, errlen) < 0) return FLEET_CONFIG_ERROR;
        }
    }
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fleet_config_print_help(stdout, opts, nopts, usage);
            return FLEET_CONFIG_HELP;
        }
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) argv[1 + pos++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            argv[1 + pos++] = argv[i];
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const fleet_option *o = NULL;
        for (size_t j = 0; j < nopts; j++)
            if (strlen(opts[j].flag) == nlen && strncmp(opts[j].flag, name, nlen) == 0)
                o = &opts[j];
        if (!o) {
            fleet_err(err, errlen, "unknown option '%.*s' (see --help)", (int)nlen + 2, a);
            return FLEET_CONFIG_ERROR;
        }
        const char *val = NULL;
        if (eq) {
            val = eq + 1;
        } else if (o->type == FLEET_OPT_BOOL) {
            val = "true";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fleet_err(err, errlen, "option --%s needs a value", o->flag);
            return FLEET_CONFIG_ERROR;
        }
        snprintf(source, sizeof source, "--%s", o->flag);
        if (assign(o, val, source, err, errlen) < 0) return FLEET_CONFIG_ERROR;
    }
    if (npos) *npos = pos;
    return FLEET_CONFIG_OK;
}
