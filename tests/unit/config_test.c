/* config_test: flags > environment > defaults (shared/src/config.c). */
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/utf8.h"
#include "testlib.h"

static const char *s_listen;
static long s_batch;
static bool s_flag;

static const fleet_option opts[] = {
    {"listen", "TEST_LISTEN", FLEET_OPT_STR, "127.0.0.1:8080", "address", &s_listen, 0, 0},
    {"max-batch", "TEST_MAX_BATCH", FLEET_OPT_INT, "8", "batch", &s_batch, 1, 256},
    {"verbose", "TEST_VERBOSE", FLEET_OPT_BOOL, "false", "talk", &s_flag, 0, 0},
};

static fleet_config_result parse(int argc, char **argv, char *err) {
    return fleet_config_parse(opts, TL_COUNT(opts), argc, argv, NULL, "usage: t", err, 256);
}

TL_TEST(defaults_env_flags_in_order) {
    char err[256];
    unsetenv("TEST_LISTEN");
    unsetenv("TEST_MAX_BATCH");
    char *a0[] = {"t", NULL};
    ASSERT_EQ_INT(parse(1, a0, err), FLEET_CONFIG_OK);
    ASSERT_EQ_STR(s_listen, "127.0.0.1:8080");
    ASSERT_EQ_INT(s_batch, 8);
    ASSERT_FALSE(s_flag);
    setenv("TEST_MAX_BATCH", "16", 1);
    ASSERT_EQ_INT(parse(1, a0, err), FLEET_CONFIG_OK);
    ASSERT_EQ_INT(s_batch, 16);
    char *a1[] = {"t", "--max-batch", "32", "--listen=0.0.0.0:9", "--verbose", NULL};
    ASSERT_EQ_INT(parse(5, a1, err), FLEET_CONFIG_OK);
    ASSERT_EQ_INT(s_batch, 32);
    ASSERT_EQ_STR(s_listen, "0.0.0.0:9");
    ASSERT_TRUE(s_flag);
    unsetenv("TEST_MAX_BATCH");
}

TL_TEST(errors_name_the_problem) {
    char err[256];
    char *a1[] = {"t", "--max-batch", "0", NULL};
    ASSERT_EQ_INT(parse(3, a1, err), FLEET_CONFIG_ERROR);
    ASSERT_STR_CONTAINS(err, "out of range 1..256");
    char *a2[] = {"t", "--max-batch", "ten", NULL};
    ASSERT_EQ_INT(parse(3, a2, err), FLEET_CONFIG_ERROR);
    ASSERT_STR_CONTAINS(err, "not a whole number");
    char *a3[] = {"t", "--nope", NULL};
    ASSERT_EQ_INT(parse(2, a3, err), FLEET_CONFIG_ERROR);
    ASSERT_STR_CONTAINS(err, "unknown option '--nope'");
    char *a4[] = {"t", "--listen", NULL};
    ASSERT_EQ_INT(parse(2, a4, err), FLEET_CONFIG_ERROR);
    ASSERT_STR_CONTAINS(err, "needs a value");
    setenv("TEST_VERBOSE", "maybe", 1);
    char *a5[] = {"t", NULL};
    ASSERT_EQ_INT(parse(1, a5, err), FLEET_CONFIG_ERROR);
    ASSERT_STR_CONTAINS(err, "TEST_VERBOSE");
    unsetenv("TEST_VERBOSE");
}

TL_TEST(positionals_are_kept) {
    char err[256];
    char *a[] = {"t", "submit", "--max-batch", "4", "echo", "--", "--literal", NULL};
    int npos = 0;
    ASSERT_EQ_INT(fleet_config_parse(opts, TL_COUNT(opts), 7, a, &npos, "u", err, sizeof err),
                  FLEET_CONFIG_OK);
    ASSERT_EQ_INT(npos, 3);
    ASSERT_EQ_STR(a[1], "submit");
    ASSERT_EQ_STR(a[2], "echo");
    ASSERT_EQ_STR(a[3], "--literal");
}

TL_TEST(redis_urls) {
    char host[64];
    int port, db;
    ASSERT_EQ_INT(fleet_redis_url_parse("redis://10.0.0.1:6380/2", host, sizeof host, &port, &db),
                  0);
    ASSERT_EQ_STR(host, "10.0.0.1");
    ASSERT_EQ_INT(port, 6380);
    ASSERT_EQ_INT(db, 2);
    ASSERT_EQ_INT(fleet_redis_url_parse("localhost", host, sizeof host, &port, &db), 0);
    ASSERT_EQ_INT(port, 6379);
    ASSERT_EQ_INT(fleet_redis_url_parse("redis://h:0", host, sizeof host, &port, &db), -1);
    ASSERT_EQ_INT(fleet_redis_url_parse("redis://h:70000", host, sizeof host, &port, &db), -1);
    ASSERT_EQ_INT(fleet_redis_url_parse("redis://:1", host, sizeof host, &port, &db), -1);
    ASSERT_EQ_INT(fleet_redis_url_parse("redis://u:p@h:1", host, sizeof host, &port, &db), -1);
}

/* A message longer than the caller's buffer is cut at a UTF-8 character boundary
 * (fleet_err), never in the middle of a character from the command line. */
TL_TEST(a_cut_message_stays_utf8) {
    char *a[] = {"t", "--\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", NULL};
    for (size_t len = 16; len <= 32; len++) {
        char err[32];
        memset(err, 'x', sizeof err);
        ASSERT_EQ_INT(fleet_config_parse(opts, TL_COUNT(opts), 2, a, NULL, "usage: t", err, len),
                      FLEET_CONFIG_ERROR);
        ASSERT_TRUE(strlen(err) < len);
        ASSERT_TRUE(fleet_utf8_valid(err, strlen(err)));
        ASSERT_TRUE(strncmp(err, "unknown option '--", strlen(err) < 18 ? strlen(err) : 18) == 0);
    }
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(defaults_env_flags_in_order), TL_CASE(errors_name_the_problem),
        TL_CASE(positionals_are_kept),        TL_CASE(redis_urls),
        TL_CASE(a_cut_message_stays_utf8),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
