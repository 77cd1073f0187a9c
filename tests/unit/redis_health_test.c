/* redis_health_test: how Redis refusals and INFO memory are read (shared/src/redis_health.c).
 * The error texts are those Redis 7.0 sends (checked against redis-server 7.0.15). */
#include <string.h>

#include "fleet/redis_health.h"
#include "testlib.h"

static fleet_redis_err err_of(const char *text) {
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)text, .len = strlen(text)};
    return fleet_redis_err_of(&r);
}

TL_TEST(refusals_worth_waiting_out_are_transient) {
    ASSERT_EQ_INT(err_of("LOADING Redis is loading the dataset in memory"), FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("BUSY Redis is busy running a script. You can only call SCRIPT KILL "
                         "or SHUTDOWN NOSAVE."),
                  FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is "
                         "set to 'no'."),
                  FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("READONLY You can't write against a read only replica."),
                  FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("TRYAGAIN Multiple keys request during rehashing of slot"),
                  FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("CLUSTERDOWN The cluster is down"), FLEET_REDIS_TRANSIENT);
    ASSERT_EQ_INT(err_of("LOADING"), FLEET_REDIS_TRANSIENT); /* a code with no text */
}

TL_TEST(oom_is_told_apart_also_inside_a_script) {
    ASSERT_EQ_INT(err_of("OOM command not allowed when used memory > 'maxmemory'."),
                  FLEET_REDIS_OOM);
    /* Redis 7: a script's failed call keeps the command's code, with the script named. */
    ASSERT_EQ_INT(err_of("OOM command not allowed when used memory > 'maxmemory'. script: "
                         "2eba4ce252979588f00e57dab3095e51633bb84f, on @user_script:1."),
                  FLEET_REDIS_OOM);
    /* Redis 6 wrapped it. */
    ASSERT_EQ_INT(err_of("ERR Error running script (call to f_2eba4ce2): @user_script:1: -OOM "
                         "command not allowed when used memory > 'maxmemory'."),
                  FLEET_REDIS_OOM);
    ASSERT_EQ_INT(err_of("ERR Error running script (call to f_2eba4ce2): @user_script:1: "
                         "-LOADING Redis is loading the dataset in memory"),
                  FLEET_REDIS_TRANSIENT);
}

TL_TEST(other_refusals_are_not_retried) {
    ASSERT_EQ_INT(err_of("NOSCRIPT No matching script. Please use EVAL."), FLEET_REDIS_NOSCRIPT);
    ASSERT_EQ_INT(err_of("ERR unknown command 'FOO'"), FLEET_REDIS_OTHER);
    ASSERT_EQ_INT(err_of("WRONGTYPE Operation against a key holding the wrong kind of value"),
                  FLEET_REDIS_OTHER);
    ASSERT_EQ_INT(err_of("NOPERM this user has no permissions to run the 'info' command"),
                  FLEET_REDIS_OTHER);
    /* A code is a whole word: these only start like one. */
    ASSERT_EQ_INT(err_of("BUSYGROUP Consumer Group name already exists"), FLEET_REDIS_OTHER);
    ASSERT_EQ_INT(err_of("OOMPH"), FLEET_REDIS_OTHER);
    ASSERT_EQ_INT(err_of("ERR loading"), FLEET_REDIS_OTHER);
    ASSERT_EQ_INT(err_of(""), FLEET_REDIS_OTHER);
}

TL_TEST(replies_that_are_not_errors_are_ok) {
    ASSERT_EQ_INT(fleet_redis_err_of(NULL), FLEET_REDIS_OK);
    redisReply s = {.type = REDIS_REPLY_STATUS, .str = (char *)"OOM", .len = 3};
    ASSERT_EQ_INT(fleet_redis_err_of(&s), FLEET_REDIS_OK);
    redisReply str = {.type = REDIS_REPLY_STRING, .str = (char *)"LOADING", .len = 7};
    ASSERT_EQ_INT(fleet_redis_err_of(&str), FLEET_REDIS_OK);
    redisReply i = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    ASSERT_EQ_INT(fleet_redis_err_of(&i), FLEET_REDIS_OK);
    ASSERT_EQ_STR(fleet_redis_err_name(FLEET_REDIS_OOM), "oom");
    ASSERT_EQ_STR(fleet_redis_err_name(FLEET_REDIS_TRANSIENT), "transient");
}

/* INFO memory as Redis 7.0.15 writes it (CRLF lines), cut to the lines around ours. */
static const char info_full[] = "# Memory\r\n"
                                "used_memory:3090264\r\n"
                                "used_memory_human:2.95M\r\n"
                                "used_memory_rss:9990144\r\n"
                                "used_memory_peak:3090264\r\n"
                                "maxmemory:3000000\r\n"
                                "maxmemory_human:2.86M\r\n"
                                "maxmemory_policy:noeviction\r\n"
                                "allocator_frag_ratio:1.20\r\n"
                                "\r\n"
                                "# Persistence\r\n"
                                "loading:0\r\n";

TL_TEST(info_memory_is_parsed) {
    fleet_redis_memory m;
    ASSERT_EQ_INT(fleet_redis_memory_parse(info_full, strlen(info_full), &m), 0);
    ASSERT_EQ_INT((long long)m.used, 3090264);
    ASSERT_EQ_INT((long long)m.max, 3000000);
    ASSERT_EQ_STR(m.policy, "noeviction");
    ASSERT_TRUE(fleet_redis_memory_full(&m));
    /* used_memory_human, used_memory_peak, maxmemory_human do not stand for the fields. */
    const char *lf = "used_memory_peak:99\nused_memory:10\nmaxmemory_human:0B\nmaxmemory:0\n"
                     "maxmemory_policy:allkeys-lru";
    ASSERT_EQ_INT(fleet_redis_memory_parse(lf, strlen(lf), &m), 0);
    ASSERT_EQ_INT((long long)m.used, 10);
    ASSERT_EQ_INT((long long)m.max, 0);
    ASSERT_EQ_STR(m.policy, "allkeys-lru");
    ASSERT_FALSE(fleet_redis_memory_full(&m)); /* maxmemory 0: no limit */
}

TL_TEST(info_without_a_policy_is_refused) {
    fleet_redis_memory m;
    const char *server = "# Server\r\nredis_version:7.0.15\r\nused_memory:5\r\n";
    ASSERT_EQ_INT(fleet_redis_memory_parse(server, strlen(server), &m), -1);
    ASSERT_EQ_INT(fleet_redis_memory_parse("", 0, &m), -1);
    /* Only len bytes are read: the policy past the end is not seen. */
    size_t cut = (size_t)(strstr(info_full, "maxmemory_policy") - info_full);
    ASSERT_EQ_INT(fleet_redis_memory_parse(info_full, cut, &m), -1);
    /* An overlong policy is cut to the field, never past it. */
    const char *longp = "maxmemory_policy:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    ASSERT_EQ_INT(fleet_redis_memory_parse(longp, strlen(longp), &m), 0);
    ASSERT_EQ_INT((long long)strlen(m.policy), (long long)sizeof m.policy - 1);
}

TL_TEST(replicas_online_are_counted) {
    const char *info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n"
                       "slave0:ip=10.0.0.2,port=6379,state=online,offset=145,lag=0\r\n"
                       "slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\n"
                       "slave2:ip=10.0.0.4,port=6379,state=online,offset=140,lag=1\r\n"
                       "master_failover_state:no-failover\r\n";
    ASSERT_EQ_INT(fleet_redis_replicas_online(info, strlen(info)), 2);
    const char *none = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
    ASSERT_EQ_INT(fleet_redis_replicas_online(none, strlen(none)), 0);
    ASSERT_EQ_INT(fleet_redis_replicas_online(info_full, strlen(info_full)), -1);
}

TL_TEST(only_noeviction_keeps_fleets_keys) {
    ASSERT_FALSE(fleet_redis_policy_evicts("noeviction"));
    /* Every key of fleet has a TTL, so the volatile-* policies take them too. */
    const char *evicting[] = {"allkeys-lru",  "allkeys-lfu",     "allkeys-random", "volatile-lru",
                              "volatile-lfu", "volatile-random", "volatile-ttl"};
    for (size_t i = 0; i < sizeof evicting / sizeof *evicting; i++)
        ASSERT_TRUE(fleet_redis_policy_evicts(evicting[i]));
    fleet_redis_memory m = {.used = 99, .max = 100};
    ASSERT_FALSE(fleet_redis_memory_full(&m));
    m.used = 100;
    ASSERT_TRUE(fleet_redis_memory_full(&m));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(refusals_worth_waiting_out_are_transient),
        TL_CASE(oom_is_told_apart_also_inside_a_script),
        TL_CASE(other_refusals_are_not_retried),
        TL_CASE(replies_that_are_not_errors_are_ok),
        TL_CASE(info_memory_is_parsed),
        TL_CASE(info_without_a_policy_is_refused),
        TL_CASE(replicas_online_are_counted),
        TL_CASE(only_noeviction_keeps_fleets_keys),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
