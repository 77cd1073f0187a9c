/* job_json.c: the wire shape of a job (job_json.h). */
#include "fleet/job_json.h"
#include "fleet/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fleet_format_time_ms(char out[32], long long ms) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    /* The modulos bound every field, so the text always fits in 32 bytes. */
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             (unsigned)(ms % 1000) % 1000u);
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil), so that no time zone or timegm is involved. */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int fleet_parse_time_ms(const char *s, long long *ms) {
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!s || strlen(s) < 20) return -1;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 59 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap) return -1;
    const char *p = s + 19;
    int frac = 0;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3) frac = frac * 10 + (*p - '0');
        if (n == 0) return -1;
        for (; n < 3; n++) frac *= 10;
    }
    long long offset_min = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset_min = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
        offset_min = (*p == '+' ? 1 : -1) * (oh * 60LL + om);
    } else {
        return -1;
    }
    long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + se -
                     offset_min * 60LL;
    if (secs < 0) return -1;
    *ms = secs * 1000 + frac;
    return 0;
}

static void set_time(json_t *o, const char *name, long long ms) {
    if (ms < 0) return;
    char buf[32];
    fleet_format_time_ms(buf, ms);
    json_object_set_new(o, name, json_string(buf));
}

/* s as a JSON string. Text from models (errors, progress messages) is meant to be UTF-8;
 * where it is not, the bytes that are not become '?' rather than the field vanishing. */
static json_t *text(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *clean = malloc(n + 4);
    if (!clean) return NULL;
    fleet_utf8_quote(s, n, clean, n + 4);
    j = json_string(clean);
    free(clean);
    return j;
}

static void set_str(json_t *o, const char *name, const char *s) {
    if (s && *s) json_object_set_new(o, name, text(s));
}

json_t *fleet_job_to_json(const fleet_job_view *v) {
    json_t *o = json_object();
    if (!o) return NULL;
    set_str(o, "id", v->id);
    set_str(o, "status", v->status);
    set_str(o, "model", v->model);
    set_str(o, "priority", v->priority);
    set_time(o, "created_at", v->created_ms);
    set_time(o, "started_at", v->started_ms);
    set_time(o, "finished_at", v->finished_ms);
    if (v->status && strcmp(v->status, "queued") == 0 && v->queue_position > 0)
        json_object_set_new(o, "queue_position", json_integer(v->queue_position));
    if (v->progress_percent >= 0) {
        json_t *p = json_object();
        json_object_set_new(p, "percent", json_real(v->progress_percent));
        json_object_set_new(p, "message", text(v->progress_message ? v->progress_message : ""));
        if (v->progress_total > 0) {
            json_object_set_new(p, "done", json_integer(v->progress_done));
            json_object_set_new(p, "total", json_integer(v->progress_total));
        }
        json_object_set_new(o, "progress", p);
    }
    /* Partial outputs emitted so far (GET /v1/jobs/{id}/outputs reads them); absent
     * when none. */
    if (v->outputs > 0) json_object_set_new(o, "outputs", json_integer(v->outputs));
    if (v->attempts >= 0) json_object_set_new(o, "attempts", json_integer(v->attempts));
    if (v->max_attempts >= 0) json_object_set_new(o, "max_attempts", json_integer(v->max_attempts));
    if (v->status && strcmp(v->status, "queued") == 0) set_time(o, "retry_at", v->retry_at_ms);
    set_str(o, "worker", v->worker);
    set_str(o, "error", v->error);
    set_str(o, "last_error", v->last_error);
    if (v->dead_lettered) json_object_set_new(o, "dead_lettered", json_true());
    if (v->webhook && *v->webhook) {
        json_t *w = json_object();
        json_object_set_new(w, "url", json_string(v->webhook));
        json_t *ev = json_array();
        const char *e = v->webhook_events && *v->webhook_events ? v->webhook_events : "completed";
        while (*e) {
            size_t n = strcspn(e, ",");
            json_array_append_new(ev, json_stringn(e, n));
            e += n + (e[n] == ',');
        }
        json_object_set_new(w, "events", ev);
        /* The latest delivery: none yet, pending, retrying, delivered or failed. */
        json_object_set_new(w, "state", json_string(v->webhook_state ? v->webhook_state : "none"));
        json_object_set_new(w, "attempts",
                            json_integer(v->webhook_attempts > 0 ? v->webhook_attempts : 0));
        if (v->webhook_last_status >= 0)
            json_object_set_new(w, "last_status", json_integer(v->webhook_last_status));
        set_str(w, "last_error", v->webhook_last_error);
        json_object_set_new(o, "webhook", w);
    }
    if (v->cancel_requested && v->status && strcmp(v->status, "running") == 0)
        json_object_set_new(o, "cancel_requested", json_true());
    if (v->timeout_s >= 0) json_object_set_new(o, "timeout_s", json_integer(v->timeout_s));
    if (v->ttl_s >= 0) json_object_set_new(o, "ttl_s", json_integer(v->ttl_s));
    if (v->metadata && *v->metadata) {
        json_t *m = json_loads(v->metadata, 0, NULL);
        if (m) json_object_set_new(o, "metadata", m);
    }
    set_str(o, "request_id", v->request_id);
    if (v->id) {
        char self[64], result[72];
        snprintf(self, sizeof self, "/v1/jobs/%s", v->id);
        snprintf(result, sizeof result, "/v1/jobs/%s/result", v->id);
        json_t *links = json_object();
        json_object_set_new(links, "self", json_string(self));
        json_object_set_new(links, "result", json_string(result));
        json_object_set_new(o, "links", links);
    }
    return o;
}
