/* log.c: JSON lines on stderr. One fputs per line so lines from threads do not mix. */
#include "fleet/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *log_component = "fleet";
static fleet_log_level log_min = FLEET_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fleet_log_init(const char *component, fleet_log_level min_level) {
    log_component = component;
    log_min = min_level;
}

bool fleet_log_on(fleet_log_level level) { return level >= log_min; }

int fleet_log_level_from_string(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

/* Appends s as a JSON string (with quotes) to buf at *pos, truncating safely. */
static void put_json_string(char *buf, size_t cap, size_t *pos, const char *s) {
    static const char hex[] = "0123456789abcdef";
    if (*pos + 2 >= cap) return;
    buf[(*pos)++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*pos + 8 >= cap) break;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = (char)c;
        } else if (c == '\n') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = 'n';
        } else if (c < 0x20) {
            memcpy(buf + *pos, "\\u00", 4);
            *pos += 4;
            buf[(*pos)++] = hex[c >> 4];
            buf[(*pos)++] = hex[c & 15];
        } else {
            buf[(*pos)++] = (char)c;
        }
    }
    buf[(*pos)++] = '"';
}

static void put_raw(char *buf, size_t cap, size_t *pos, const char *s) {
    size_t n = strlen(s);
    if (*pos + n + 2 >= cap) return;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

void fleet_log(fleet_log_level level, const char *msg, ...) {
    if (level < log_min) return;
    char buf[4096];
    const size_t cap = sizeof buf - 3; /* the helpers stop short of the closing "}\n\0" */
    size_t pos = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts,
             "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    put_raw(buf, cap, &pos, ts);
    put_json_string(buf, cap, &pos, level_names[level]);
    put_raw(buf, cap, &pos, ",\"component\":");
    put_json_string(buf, cap, &pos, log_component);
    put_raw(buf, cap, &pos, ",\"msg\":");
    put_json_string(buf, cap, &pos, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        put_raw(buf, cap, &pos, ",");
        put_json_string(buf, cap, &pos, k);
        put_raw(buf, cap, &pos, ":");
        put_json_string(buf, cap, &pos, v);
    }
    va_end(ap);
    buf[pos++] = '}';
    buf[pos++] = '\n';
    buf[pos] = '\0';
    fputs(buf, stderr);
}
