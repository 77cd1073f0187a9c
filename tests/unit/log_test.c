/* log_test: fleet_log's JSON lines (shared/src/log.c) stay one valid JSON object of at
 * most 4095 bytes however long the values are and whatever bytes they hold; the escapes
 * that grow a character to six bytes must not push the line past its buffer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet/log.h"
#include "testlib.h"

/* Logs value under key "v" with stderr sent to a file; returns the line written. */
static char *log_line(const char *value) {
    const char *path = tl_printf("%s/log", tl_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    dup2(fileno(f), 2);
    fleet_log(FLEET_LOG_ERROR, "a message", "v", value, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    return tl_read_file(path, NULL);
}

TL_TEST(long_values_with_escapes_stay_one_json_line) {
    fleet_log_init("test", FLEET_LOG_DEBUG);
    size_t cases = 0;
    /* Every length around the buffer's size, with a control character (six bytes once
     * escaped) at every offset near the end. */
    for (size_t len = 3980; len <= 4100; len++) {
        for (size_t at = len > 16 ? len - 16 : 0; at < len; at++) {
            char *v = malloc(len + 1);
            ASSERT_NOT_NULL(v);
            memset(v, 'a', len);
            v[at] = '\t';
            v[len] = '\0';
            char *line = log_line(v);
            free(v);
            size_t n = strlen(line);
            if (n > 4095 || n < 2 || line[n - 1] != '\n' || line[n - 2] != '}')
                FAILF("value of %zu bytes, tab at %zu: a line of %zu bytes ending %.8s", len, at, n,
                      n > 8 ? line + n - 8 : line);
            json_error_t e;
            json_t *j = json_loads(line, 0, &e);
            if (!j) FAILF("value of %zu bytes, tab at %zu: not JSON (%s)", len, at, e.text);
            ASSERT_EQ_STR(json_string_value(json_object_get(j, "msg")), "a message");
            json_decref(j);
            cases++;
        }
    }
    tl_log("%zu lines checked", cases);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(long_values_with_escapes_stay_one_json_line),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
