/* redis_health.c: classifying Redis refusals and memory settings (redis_health.h). */
#include "fleet/redis_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_code(const char *s, const char *code) {
    size_t n = strlen(code);
    return strncmp(s, code, n) == 0 && (s[n] == ' ' || s[n] == '\0');
}

fleet_redis_err fleet_redis_err_of(const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str) return FLEET_REDIS_OK;
    const char *s = r->str;
    /* Redis 6 wrapped a script's failed call: "ERR Error running script ...: -OOM ...". */
    const char *inner = strstr(s, ": -");
    if (strncmp(s, "ERR Error running script", 24) == 0 && inner) s = inner + 3;
    if (has_code(s, "NOSCRIPT")) return FLEET_REDIS_NOSCRIPT;
    if (has_code(s, "OOM")) return FLEET_REDIS_OOM;
    static const char *const transient[] = {"LOADING",  "BUSY",        "MASTERDOWN", "READONLY",
                                            "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"};
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++)
        if (has_code(s, transient[i])) return FLEET_REDIS_TRANSIENT;
    return FLEET_REDIS_OTHER;
}

const char *fleet_redis_err_name(fleet_redis_err e) {
    switch (e) {
    case FLEET_REDIS_OK: return "ok";
    case FLEET_REDIS_TRANSIENT: return "transient";
    case FLEET_REDIS_OOM: return "oom";
    case FLEET_REDIS_NOSCRIPT: return "noscript";
    case FLEET_REDIS_OTHER: return "error";
    }
    return "error";
}

/* The value of "name:" at the start of a line of info, copied into out. */
static bool info_field(const char *info, size_t len, const char *name, char *out, size_t outlen) {
    size_t n = strlen(name);
    const char *p = info, *end = info + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > n && memcmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
            size_t vl = (size_t)(ve - v);
            if (vl >= outlen) vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = eol + 1;
    }
    return false;
}

int fleet_redis_memory_parse(const char *info, size_t len, fleet_redis_memory *m) {
    memset(m, 0, sizeof *m);
    char v[64];
    if (info_field(info, len, "used_memory", v, sizeof v)) m->used = strtoull(v, NULL, 10);
    if (info_field(info, len, "maxmemory", v, sizeof v)) m->max = strtoull(v, NULL, 10);
    if (!info_field(info, len, "maxmemory_policy", m->policy, sizeof m->policy)) return -1;
    return 0;
}

int fleet_redis_replicas_online(const char *info, size_t len) {
    char v[16];
    if (!info_field(info, len, "connected_slaves", v, sizeof v)) return -1;
    int n = 0;
    long listed = strtol(v, NULL, 10);
    /* slave<i>:ip=...,port=...,state=online,offset=...,lag=... */
    for (long i = 0; i < listed && i < 1000; i++) {
        char name[24], line[256];
        snprintf(name, sizeof name, "slave%ld", i);
        if (info_field(info, len, name, line, sizeof line) && strstr(line, ",state=online,")) n++;
    }
    return n;
}

bool fleet_redis_policy_evicts(const char *policy) { return strcmp(policy, "noeviction") != 0; }

bool fleet_redis_memory_full(const fleet_redis_memory *m) {
    return m->max > 0 && m->used >= m->max;
}
