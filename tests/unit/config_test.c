/* config_test: flags > environment > defaults (shared/src/config.c). */
#include <stdlib.h>
#include <string.h>

#include "fleet/config.h"
#include "fleet/redis_target.h"
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

static int url(fleet_redis_target *t, const char *u) {
    char err[200];
    return fleet_redis_target_parse(t, &(fleet_redis_settings){.url = u, NULL}, err, sizeof err);
}

TL_TEST(redis_urls) {
    fleet_redis_target t;
    ASSERT_EQ_INT(url(&t, "redis://10.0.0.1:6380/2"), 0);
    ASSERT_EQ_STR(t.addr.host, "10.0.0.1");
    ASSERT_EQ_INT(t.addr.port, 6380);
    ASSERT_EQ_INT(t.db, 2);
    ASSERT_TRUE(!t.auth);
    ASSERT_EQ_INT(url(&t, "localhost"), 0);
    ASSERT_EQ_INT(t.addr.port, 6379);
    ASSERT_EQ_INT(url(&t, "redis://h:0"), -1);
    ASSERT_EQ_INT(url(&t, "redis://h:70000"), -1);
    ASSERT_EQ_INT(url(&t, "redis://:1"), -1);
    ASSERT_EQ_INT(url(&t, "redis://h:1/16"), -1);
    ASSERT_EQ_INT(url(&t, "http://h:1"), -1);
    ASSERT_EQ_INT(url(&t, "rediss://h:1"), -1);
}

/* Credentials: user:password@ for an ACL user, :password@ for the default user; %XX
 * escapes decoded; the last '@' ends them; the password never appears in the description. */
TL_TEST(redis_url_credentials) {
    fleet_redis_target t;
    const char *argv[3];
    size_t lens[3];
    ASSERT_EQ_INT(url(&t, "redis://fleet-gw:s%40cr%3At@redis.fleet:6380/3"), 0);
    ASSERT_EQ_STR(t.user, "fleet-gw");
    ASSERT_EQ_STR(t.password, "s@cr:t");
    ASSERT_EQ_STR(t.addr.host, "redis.fleet");
    ASSERT_EQ_INT(t.db, 3);
    ASSERT_EQ_INT(fleet_redis_auth_argv(&t, argv, lens), 3);
    ASSERT_EQ_STR(argv[1], "fleet-gw");
    ASSERT_EQ_STR(argv[2], "s@cr:t");
    char d[200];
    fleet_redis_target_describe(&t, d, sizeof d);
    ASSERT_EQ_STR(d, "redis://fleet-gw:***@redis.fleet:6380/3");
    ASSERT_EQ_INT(url(&t, "redis://:p@ss@h"), 0);
    ASSERT_EQ_STR(t.user, "");
    ASSERT_EQ_STR(t.password, "p@ss");
    ASSERT_EQ_INT(fleet_redis_auth_argv(&t, argv, lens), 2);
    ASSERT_EQ_STR(argv[1], "p@ss");
    ASSERT_EQ_INT(url(&t, "redis://user@h"), -1);   /* no password */
    ASSERT_EQ_INT(url(&t, "redis://user:@h"), -1);  /* an empty one */
    ASSERT_EQ_INT(url(&t, "redis://u:p%4@h"), -1);  /* a cut escape */
    ASSERT_EQ_INT(url(&t, "redis://u:p%00@h"), -1); /* a NUL byte */
    ASSERT_EQ_INT(url(&t, "redis://h"), 0);
    ASSERT_EQ_INT(fleet_redis_auth_argv(&t, argv, lens), 0);
}

TL_TEST(redis_sentinels) {
    fleet_redis_target t;
    char err[200];
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://:pw@ignored/1",
                                                                   "s1:26380, s2 ,10.0.0.3:26381",
                                                                   "fleet", NULL, NULL},
                                           err, sizeof err),
                  0);
    ASSERT_EQ_INT((int)t.nsentinels, 3);
    ASSERT_EQ_STR(t.sentinels[1].host, "s2");
    ASSERT_EQ_INT(t.sentinels[1].port, 26379);
    ASSERT_EQ_INT(t.sentinels[2].port, 26381);
    char d[200];
    fleet_redis_target_describe(&t, d, sizeof d);
    ASSERT_EQ_STR(d, "sentinel master fleet via s1:26380,s2:26379,10.0.0.3:26381 (db 1, user "
                     "default)");
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://h", "s1:1", NULL, NULL,
                                                                   NULL},
                                           err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://h", NULL, "m", NULL,
                                                                   NULL},
                                           err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://h", "s1:1,,s2", "m",
                                                                   NULL, NULL},
                                           err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://h", "s1:x", "m", NULL,
                                                                   NULL},
                                           err, sizeof err),
                  -1);
    ASSERT_EQ_INT(fleet_redis_target_parse(&t,
                                           &(fleet_redis_settings){"redis://h", "s1", "m m", NULL,
                                                                   NULL},
                                           err, sizeof err),
                  -1);
}

TL_TEST(redis_cluster_seeds) {
    fleet_redis_target t;
    char err[200];
    fleet_redis_settings set = {"redis://u:pw@ignored", "", "", NULL, "n1:7001, n2 ,10.0.0.3:7003"};
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &set, err, sizeof err), 0);
    ASSERT_EQ_INT((int)t.nseeds, 3);
    ASSERT_EQ_INT((int)t.nsentinels, 0);
    ASSERT_EQ_STR(t.seeds[1].host, "n2");
    ASSERT_EQ_INT(t.seeds[1].port, 6379);
    ASSERT_EQ_INT(t.seeds[2].port, 7003);
    ASSERT_TRUE(t.auth);
    char d[200];
    fleet_redis_target_describe(&t, d, sizeof d);
    ASSERT_EQ_STR(d, "cluster via n1:7001,n2:6379,10.0.0.3:7003 (user u)");
    set.url = "redis://h/2"; /* a cluster has database 0 only */
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &set, err, sizeof err), -1);
    ASSERT_TRUE(strstr(err, "database 0") != NULL);
    set.url = "redis://h";
    set.sentinels = "s1:1";
    set.master = "m";
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &set, err, sizeof err), -1);
    set.sentinels = set.master = "";
    set.cluster = "n1:7001,,n2";
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &set, err, sizeof err), -1);
    set.cluster = "n1:x";
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &set, err, sizeof err), -1);
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
        TL_CASE(redis_url_credentials),       TL_CASE(redis_sentinels),
        TL_CASE(redis_cluster_seeds),         TL_CASE(a_cut_message_stays_utf8),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
