/* log.h: one JSON object per line on stderr:
 *   {"ts":"2026-11-23T16:50:01.123Z","level":"info","component":"gateway","msg":"...",...}
 * Extra fields are (key, value) string pairs ending with NULL:
 *   fleet_log(FLEET_LOG_INFO, "job finished", "job_id", id, "status", "succeeded", NULL);
 */
#ifndef FLEET_LOG_H
#define FLEET_LOG_H

#include <stdbool.h>

typedef enum fleet_log_level {
    FLEET_LOG_DEBUG = 0,
    FLEET_LOG_INFO,
    FLEET_LOG_WARN,
    FLEET_LOG_ERROR,
} fleet_log_level;

void fleet_log_init(const char *component, fleet_log_level min_level);
/* "debug", "info", "warn", "error"; -1 when unknown. */
int fleet_log_level_from_string(const char *s);
/* Whether a line of this level is written: a caller checks before formatting fields
 * for a line that is usually off (debug). */
bool fleet_log_on(fleet_log_level level);
void fleet_log(fleet_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
