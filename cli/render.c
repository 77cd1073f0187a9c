/* render.c: human output of jobs (render.h). Unknown or missing fields are skipped, so
 * a newer gateway that adds fields does not break an older fleetctl. */
#include "render.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ helpers ------------- */

static const char *str_field(const json_t *o, const char *name) {
    const char *s = json_string_value(json_object_get(o, name));
    return s ? s : "";
}

/* Parses the gateway's "2026-11-23T16:50:01.123Z". Returns ms since the epoch, or -1. */
static long long parse_time_ms(const char *s) {
    int y, mo, d, h, mi, sec, ms = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &sec, &ms) < 6)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    return (long long)t * 1000 + ms;
}

static void format_duration(char *out, size_t outlen, long long ms) {
    if (ms < 1000) snprintf(out, outlen, "%lld ms", ms);
    else if (ms < 120000) snprintf(out, outlen, "%.2f s", (double)ms / 1000.0);
    else if (ms < 7200000) snprintf(out, outlen, "%lld min %lld s", ms / 60000, (ms / 1000) % 60);
    else snprintf(out, outlen, "%lld h %lld min", ms / 3600000, (ms / 60000) % 60);
}

/* ------------------------------------------------------------------ progress ------------ */

void ctl_render_bar(char *out, size_t outlen, double percent) {
    if (!(percent >= 0)) percent = 0; /* also catches NaN */
    if (percent > 100) percent = 100;
    int filled = (int)lround(percent * CTL_BAR_WIDTH / 100.0);
    char bar[CTL_BAR_WIDTH + 1];
    for (int i = 0; i < CTL_BAR_WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[CTL_BAR_WIDTH] = '\0';
    snprintf(out, outlen, "[%s] %3.0f%%", bar, percent);
}

/* Appends "  message (done/total)" for a progress object to out. */
static void progress_text(char *out, size_t outlen, const json_t *p) {
    const char *msg = str_field(p, "message");
    json_int_t done = json_integer_value(json_object_get(p, "done"));
    json_int_t total = json_integer_value(json_object_get(p, "total"));
    size_t n = strlen(out);
    if (*msg) snprintf(out + n, outlen - n, "  %s", msg);
    n = strlen(out);
    if (total > 0) snprintf(out + n, outlen - n, " (%lld/%lld)", (long long)done, (long long)total);
}

void ctl_render_progress_line(char *out, size_t outlen, const json_t *job) {
    const char *status = str_field(job, "status");
    const json_t *p = json_object_get(job, "progress");
    json_int_t pos = json_integer_value(json_object_get(job, "queue_position"));
    if (strcmp(status, "queued") == 0 && pos > 0) {
        snprintf(out, outlen, "queued (position %lld)", (long long)pos);
    } else if (json_is_object(p)) {
        char bar[64];
        ctl_render_bar(bar, sizeof bar, json_number_value(json_object_get(p, "percent")));
        snprintf(out, outlen, "%-9s %s", status, bar);
        progress_text(out, outlen, p);
    } else {
        snprintf(out, outlen, "%s", status);
    }
    if (json_is_true(json_object_get(job, "cancel_requested"))) {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "  (cancel requested)");
    }
}

/* ------------------------------------------------------------------ status -------------- */

void ctl_render_job(FILE *f, const json_t *job) {
    const char *status = str_field(job, "status");
    fprintf(f, "id:         %s\n", str_field(job, "id"));
    fprintf(f, "status:     %s%s\n", status,
            json_is_true(json_object_get(job, "cancel_requested")) ? " (cancel requested)" : "");
    fprintf(f, "model:      %s", str_field(job, "model"));
    if (*str_field(job, "priority")) fprintf(f, "  (priority %s)", str_field(job, "priority"));
    fputc('\n', f);

    const json_t *p = json_object_get(job, "progress");
    if (json_is_object(p)) {
        char line[512];
        ctl_render_bar(line, sizeof line, json_number_value(json_object_get(p, "percent")));
        progress_text(line, sizeof line, p);
        fprintf(f, "progress:   %s\n", line);
    }
    json_int_t pos = json_integer_value(json_object_get(job, "queue_position"));
    if (pos > 0)
        fprintf(f, "queue:      position %lld%s\n", (long long)pos, pos == 1 ? " (next)" : "");
    if (json_is_integer(json_object_get(job, "attempts"))) {
        fprintf(f, "attempts:   %lld",
                (long long)json_integer_value(json_object_get(job, "attempts")));
        if (json_is_integer(json_object_get(job, "max_attempts")))
            fprintf(f, " of %lld",
                    (long long)json_integer_value(json_object_get(job, "max_attempts")));
        fputc('\n', f);
    }
    if (*str_field(job, "retry_at")) fprintf(f, "retry at:   %s\n", str_field(job, "retry_at"));
    if (*str_field(job, "worker")) fprintf(f, "worker:     %s\n", str_field(job, "worker"));

    const char *created = str_field(job, "created_at");
    const char *started = str_field(job, "started_at");
    const char *finished = str_field(job, "finished_at");
    if (*created) fprintf(f, "created:    %s\n", created);
    long long c = parse_time_ms(created), s = parse_time_ms(started), e = parse_time_ms(finished);
    char d[48];
    if (*started) {
        fprintf(f, "started:    %s", started);
        if (c >= 0 && s >= c) {
            format_duration(d, sizeof d, s - c);
            fprintf(f, "  (waited %s in queue)", d);
        }
        fputc('\n', f);
    }
    if (*finished) {
        fprintf(f, "finished:   %s", finished);
        long long from = s >= 0 ? s : c;
        if (from >= 0 && e >= from) {
            format_duration(d, sizeof d, e - from);
            fprintf(f, "  (%s %s)", s >= 0 ? "ran" : "after", d);
        }
        fputc('\n', f);
    }
    json_int_t timeout = json_integer_value(json_object_get(job, "timeout_s"));
    if (timeout > 0) fprintf(f, "timeout:    %lld s\n", (long long)timeout);
    json_int_t ttl = json_integer_value(json_object_get(job, "ttl_s"));
    if (ttl > 0) fprintf(f, "result ttl: %lld s\n", (long long)ttl);
    if (*str_field(job, "error")) fprintf(f, "error:      %s\n", str_field(job, "error"));
    if (*str_field(job, "last_error")) fprintf(f, "last error: %s\n", str_field(job, "last_error"));
    const json_t *wh = json_object_get(job, "webhook");
    if (json_is_object(wh)) {
        fprintf(f, "webhook:    %s  (%s", str_field(wh, "url"), str_field(wh, "state"));
        json_int_t att = json_integer_value(json_object_get(wh, "attempts"));
        if (att > 0) fprintf(f, ", %lld attempt%s", (long long)att, att == 1 ? "" : "s");
        if (json_is_integer(json_object_get(wh, "last_status")) &&
            json_integer_value(json_object_get(wh, "last_status")) > 0)
            fprintf(f, ", last HTTP %lld",
                    (long long)json_integer_value(json_object_get(wh, "last_status")));
        fputc(')', f);
        if (*str_field(wh, "last_error")) fprintf(f, ": %s", str_field(wh, "last_error"));
        fputc('\n', f);
    }
    if (json_is_true(json_object_get(job, "dead_lettered")))
        fprintf(f, "dead-lettered: yes (fleetctl dlq show %s)\n", str_field(job, "id"));
    const json_t *meta = json_object_get(job, "metadata");
    if (meta) {
        char *m = json_dumps(meta, JSON_COMPACT | JSON_ENCODE_ANY);
        if (m) fprintf(f, "metadata:   %s\n", m);
        free(m);
    }
    if (*str_field(job, "request_id")) fprintf(f, "request id: %s\n", str_field(job, "request_id"));
}

/* ------------------------------------------------------------------ list ---------------- */

void ctl_render_table_header(FILE *f) {
    fprintf(f, "%-26s  %-9s  %-16s  %-19s  %s\n", "ID", "STATUS", "MODEL", "CREATED", "PROGRESS");
}

void ctl_render_table_row(FILE *f, const json_t *job) {
    /* "2026-11-23T16:50:01.123Z" -> "2026-11-23 16:50:01": seconds are enough in a table. */
    char created[20] = "-";
    const char *c = str_field(job, "created_at");
    if (strlen(c) >= 19) {
        memcpy(created, c, 19);
        created[10] = ' ';
        created[19] = '\0';
    }
    char prog[96] = "-";
    const json_t *p = json_object_get(job, "progress");
    json_int_t pos = json_integer_value(json_object_get(job, "queue_position"));
    if (json_is_object(p)) {
        snprintf(prog, sizeof prog, "%3.0f%%", json_number_value(json_object_get(p, "percent")));
        const char *msg = str_field(p, "message");
        if (*msg) {
            size_t n = strlen(prog);
            snprintf(prog + n, sizeof prog - n, " %.40s%s", msg, strlen(msg) > 40 ? "..." : "");
        }
    } else if (pos > 0) {
        snprintf(prog, sizeof prog, "position %lld", (long long)pos);
    }
    fprintf(f, "%-26s  %-9s  %-16s  %-19s  %s\n", str_field(job, "id"), str_field(job, "status"),
            str_field(job, "model"), created, prog);
}

void ctl_render_json(FILE *f, const json_t *v) {
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (s) {
        fputs(s, f);
        fputc('\n', f);
    }
    free(s);
}
