/* redis_router_test.c: the sync router's pure parts (shared/src/redis_router.c): which key
 * a command is routed by, and the state a router starts in. Against real servers:
 * tests/integration/redis_router_test.c. */
#include <string.h>

#include "fleet/redis_router.h"
#include "testlib.h"

static const char *key_of(int argc, const char **argv) {
    const char *key = NULL;
    size_t len = 0;
    if (!fleet_router_cmd_key(argc, argv, NULL, &key, &len)) return "(none)";
    return tl_printf("%.*s", (int)len, key);
}

#define KEY_OF(...) key_of(TL_COUNT(((const char *[]){__VA_ARGS__})), (const char *[]){__VA_ARGS__})

TL_TEST(commands_are_routed_by_their_first_key) {
    ASSERT_EQ_STR(KEY_OF("HGETALL", "{fleet:3}:job:X"), "{fleet:3}:job:X");
    ASSERT_EQ_STR(KEY_OF("get", "k"), "k");
    /* scripts: the first of numkeys, after the script and the count */
    ASSERT_EQ_STR(KEY_OF("EVALSHA", "abc", "2", "{fleet:1}:a", "{fleet:1}:b", "arg"),
                  "{fleet:1}:a");
    ASSERT_EQ_STR(KEY_OF("eval", "return 1", "1", "{fleet}:x"), "{fleet}:x");
    ASSERT_EQ_STR(KEY_OF("EVAL", "return 1", "0"), "(none)");
    ASSERT_EQ_STR(KEY_OF("EVALSHA", "abc", "x1", "k"), "(none)");
    ASSERT_EQ_STR(KEY_OF("FCALL", "f", "1", "k1"), "k1");
    /* streams: the first stream after STREAMS; a group command's key is its third word */
    ASSERT_EQ_STR(KEY_OF("XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "BLOCK", "50", "STREAMS",
                         "{fleet:2}:stream:m", ">"),
                  "{fleet:2}:stream:m");
    ASSERT_EQ_STR(KEY_OF("XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0"), "s1");
    ASSERT_EQ_STR(KEY_OF("XREADGROUP", "GROUP", "g", "c"), "(none)");
    ASSERT_EQ_STR(KEY_OF("XGROUP", "CREATE", "{fleet}:stream:m", "workers", "0", "MKSTREAM"),
                  "{fleet}:stream:m");
    ASSERT_EQ_STR(KEY_OF("XINFO", "GROUPS", "s"), "s");
    ASSERT_EQ_STR(KEY_OF("XAUTOCLAIM", "{fleet:4}:stream:m", "g", "c", "1000", "0-0"),
                  "{fleet:4}:stream:m");
    /* no key: any master */
    ASSERT_EQ_STR(KEY_OF("PUBLISH", "{fleet}:events", "shards"), "(none)");
    ASSERT_EQ_STR(KEY_OF("INFO", "memory"), "(none)");
    ASSERT_EQ_STR(KEY_OF("ping"), "(none)");
    ASSERT_EQ_STR(KEY_OF("CLUSTER", "SLOTS"), "(none)");
    ASSERT_EQ_STR(KEY_OF("SCRIPT", "LOAD", "return 1"), "(none)");
    ASSERT_EQ_STR(KEY_OF("GET"), "(none)");
}

TL_TEST(argument_lengths_are_honoured) {
    /* binary-safe argv: the lengths, not NUL, end the words */
    const char *argv[] = {"EVALSHAxx", "sha", "1\x00", "{fleet:7}:jobZZ"};
    size_t lens[] = {7, 3, 1, 12};
    const char *key = NULL;
    size_t len = 0;
    ASSERT_EQ_INT(fleet_router_cmd_key(4, argv, lens, &key, &len), 1);
    ASSERT_EQ_INT((int)len, 12);
    ASSERT_TRUE(strncmp(key, "{fleet:7}:job", len) == 0);
}

TL_TEST(a_router_starts_unconnected) {
    fleet_redis_target t;
    char err[200];
    fleet_redis_settings one = {.url = "redis://127.0.0.1:6399", .cluster = ""};
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &one, err, sizeof err), 0);
    fleet_router r;
    fleet_router_init(&r, &t, 100, 100);
    ASSERT_FALSE(r.cluster);
    ASSERT_EQ_INT((int)r.nnodes, 1); /* one Redis: node 0, no map */
    ASSERT_TRUE(r.node[0].c == NULL);
    ASSERT_EQ_INT(fleet_router_refresh(&r), 0); /* nothing to read without a cluster */
    ASSERT_EQ_INT((int)r.refreshes, 0);
    fleet_router_close(&r);

    fleet_redis_settings cl = {.url = "redis://:pw@127.0.0.1:6399",
                               .cluster = "127.0.0.1:7001,127.0.0.1:7002"};
    ASSERT_EQ_INT(fleet_redis_target_parse(&t, &cl, err, sizeof err), 0);
    fleet_router_init(&r, &t, 100, 100);
    ASSERT_TRUE(r.cluster);
    ASSERT_TRUE(r.stale); /* the map is read before the first command */
    ASSERT_EQ_INT((int)r.nnodes, 0);
    fleet_router_close(&r);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(commands_are_routed_by_their_first_key),
        TL_CASE(argument_lengths_are_honoured),
        TL_CASE(a_router_starts_unconnected),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
