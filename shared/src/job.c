/* job.c: names of job states and priorities, and validation of ids and model names. */
#include "fleet/job.h"

#include <string.h>

static const char *const status_names[] = {
    [FLEET_STATUS_UNKNOWN] = "unknown", [FLEET_STATUS_QUEUED] = "queued",
    [FLEET_STATUS_RUNNING] = "running", [FLEET_STATUS_SUCCEEDED] = "succeeded",
    [FLEET_STATUS_FAILED] = "failed",   [FLEET_STATUS_CANCELLED] = "cancelled",
};

const char *fleet_status_to_string(fleet_status s) {
    if ((unsigned)s >= sizeof status_names / sizeof *status_names) return "unknown";
    return status_names[s];
}

fleet_status fleet_status_from_string(const char *s) {
    if (!s) return FLEET_STATUS_UNKNOWN;
    for (size_t i = 1; i < sizeof status_names / sizeof *status_names; i++)
        if (strcmp(s, status_names[i]) == 0) return (fleet_status)i;
    return FLEET_STATUS_UNKNOWN;
}

bool fleet_status_is_final(fleet_status s) {
    return s == FLEET_STATUS_SUCCEEDED || s == FLEET_STATUS_FAILED || s == FLEET_STATUS_CANCELLED;
}

static const char *const priority_names[] = {
    [FLEET_PRIORITY_HIGH] = "high",
    [FLEET_PRIORITY_NORMAL] = "normal",
    [FLEET_PRIORITY_LOW] = "low",
};

const char *fleet_priority_to_string(fleet_priority p) {
    if ((unsigned)p >= FLEET_PRIORITY_INVALID) return "invalid";
    return priority_names[p];
}

fleet_priority fleet_priority_from_string(const char *s) {
    if (!s) return FLEET_PRIORITY_INVALID;
    for (int i = 0; i < FLEET_PRIORITY_INVALID; i++)
        if (strcmp(s, priority_names[i]) == 0) return (fleet_priority)i;
    return FLEET_PRIORITY_INVALID;
}

bool fleet_job_id_valid(const char *s) {
    /* Crockford base32, upper case, no I L O U; the first character encodes the top of a
     * 48-bit time, so it is at most '7'. */
    if (!s || strlen(s) != FLEET_ID_LEN) return false;
    if (s[0] < '0' || s[0] > '7') return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool digit = c >= '0' && c <= '9';
        bool letter = c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U';
        if (!digit && !letter) return false;
    }
    return true;
}

bool fleet_model_name_valid(const char *s) {
    if (!s) return false;
    size_t n = strlen(s);
    if (n == 0 || n > FLEET_MODEL_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool fleet_tenant_name_valid(const char *s) { return fleet_model_name_valid(s); }
