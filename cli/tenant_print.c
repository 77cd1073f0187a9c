/* tenant_print.c: `fleetctl tenant`'s output: the JSON documents (--json) and the text
 * for people (tenant_cli.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenant_cli.h"

void ctl_tenant_print_json(const json_t *v) {
    /* 15 significant digits, so a rate of 0.1 prints as 0.1 (jansson's default of 17 shows
     * 0.10000000000000001). */
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (s) puts(s);
    free(s);
}

static long long jint(const json_t *o, const char *name) {
    return (long long)json_integer_value(json_object_get(o, name));
}

/* The rate as text: "unlimited", or the number as stored. */
static void rate_text(const json_t *t, char *out, size_t cap) {
    const json_t *r = json_object_get(t, "rate");
    if (json_number_value(r) <= 0) snprintf(out, cap, "unlimited");
    else if (json_is_integer(r)) snprintf(out, cap, "%lld", (long long)json_integer_value(r));
    else snprintf(out, cap, "%.10g", json_real_value(r));
}

/* "admin,tenant", or "-" without keys. */
static void roles_text(const json_t *t, char *out, size_t cap) {
    out[0] = '\0';
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(t, "roles"), i, r) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", i ? "," : "", json_string_value(r));
    }
    if (!out[0]) snprintf(out, cap, "-");
}

/* A byte count for people: "1048576 bytes (1 MiB)" when it is a whole number of units. */
static void bytes_text(long long b, char *out, size_t cap) {
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    for (int i = 0; i < 3; i++) {
        long long u = 1LL << (10 * (3 - i));
        if (b >= u && b % u == 0) {
            snprintf(out, cap, "%lld bytes (%lld %s)", b, b / u, units[i]);
            return;
        }
    }
    snprintf(out, cap, "%lld bytes", b);
}

void ctl_tenant_print_settings(const json_t *t) {
    char rate[32], body[64];
    rate_text(t, rate, sizeof rate);
    long long ma = jint(t, "max_active"), mb = jint(t, "max_body");
    if (ma > 0) printf("max active:      %lld jobs (queued + running)\n", ma);
    else printf("max active:      unlimited\n");
    if (strcmp(rate, "unlimited") == 0) printf("rate:            unlimited\n");
    else printf("rate:            %s submits/s, burst %lld\n", rate, jint(t, "burst"));
    bytes_text(mb, body, sizeof body);
    printf("max body:        %s\n", mb > 0 ? body : "the gateway's (FLEET_MAX_BODY)");
    long long mf = jint(t, "max_finished"), mbytes = jint(t, "max_bytes");
    if (mf > 0)
        printf("max finished:    %lld jobs kept (the oldest finished are deleted first)\n", mf);
    else printf("max finished:    unlimited\n");
    bytes_text(mbytes, body, sizeof body);
    printf("max bytes:       %s\n", mbytes > 0 ? body : "unlimited");
}

void ctl_tenant_print_show(const json_t *t) {
    char roles[32];
    roles_text(t, roles, sizeof roles);
    printf("tenant:          %s\n", ctl_jstr(t, "tenant"));
    printf("status:          %s\n", ctl_jstr(t, "status"));
    printf("role:            %s\n", roles);
    ctl_tenant_print_settings(t);
    const char *secret = json_string_value(json_object_get(t, "webhook_secret"));
    printf("webhook secret:  %s\n", secret ? secret : "(hidden; --show-secret prints it)");
    const char *created = json_string_value(json_object_get(t, "created_at"));
    printf("created:         %s\n", created ? created : "-");
    if (json_is_integer(json_object_get(t, "active")))
        printf("active jobs:     %lld\n", jint(t, "active"));
    else printf("active jobs:     not counted (no max active)\n");
    printf("api keys:        %lld\n", jint(t, "keys"));
    size_t i;
    json_t *key;
    json_array_foreach(json_object_get(t, "api_keys"), i, key) {
        const char *role = json_string_value(json_object_get(key, "role"));
        const char *at = json_string_value(json_object_get(key, "created_at"));
        if (role)
            printf("  sha256 %s  %-6s  created %s\n", ctl_jstr(key, "hash"), role, at ? at : "-");
        else printf("  sha256 %s  (its apikey hash is missing)\n", ctl_jstr(key, "hash"));
    }
}

void ctl_tenant_print_list(const json_t *tenants) {
    printf("%-20s  %-12s  %10s  %10s  %10s  %7s  %5s  %s\n", "NAME", "ROLE(S)", "MAX ACTIVE",
           "RATE/s", "MAX BODY", "ACTIVE", "KEYS", "STATUS");
    size_t i;
    json_t *t;
    json_array_foreach(tenants, i, t) {
        char roles[32], rate[32], ma[24], mb[24];
        roles_text(t, roles, sizeof roles);
        rate_text(t, rate, sizeof rate);
        if (jint(t, "max_active") > 0) snprintf(ma, sizeof ma, "%lld", jint(t, "max_active"));
        else snprintf(ma, sizeof ma, "unlimited");
        if (jint(t, "max_body") > 0) snprintf(mb, sizeof mb, "%lld", jint(t, "max_body"));
        else snprintf(mb, sizeof mb, "default");
        char active[24] = "-"; /* not counted without max_active */
        if (json_is_integer(json_object_get(t, "active")))
            snprintf(active, sizeof active, "%lld", jint(t, "active"));
        printf("%-20s  %-12s  %10s  %10s  %10s  %7s  %5lld  %s\n", ctl_jstr(t, "tenant"), roles, ma,
               rate, mb, active, jint(t, "keys"), ctl_jstr(t, "status"));
    }
}
