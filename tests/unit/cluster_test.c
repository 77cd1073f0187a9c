/* cluster_test.c: the Redis Cluster routing module (shared/src/cluster.c) on its own:
 * CRC16, hash tags, the slot map read from a CLUSTER SLOTS reply, MOVED and ASK. The
 * slots are checked against a real cluster's CLUSTER KEYSLOT in cluster_routing_test. */
#include <stdlib.h>
#include <string.h>

#include "fleet/cluster.h"
#include "testlib.h"

static int slot_of(const char *key) { return fleet_key_slot(key, strlen(key)); }

TL_TEST(crc16_is_xmodem) {
    /* The check value of CRC-16/XMODEM, as Redis' cluster specification gives it. */
    ASSERT_EQ_INT(fleet_crc16("123456789", 9), 0x31C3);
    ASSERT_EQ_INT(fleet_crc16("", 0), 0);
}

TL_TEST(hash_tags_follow_redis_rules) {
    ASSERT_EQ_INT(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    ASSERT_EQ_INT(slot_of("{user1000}.following"), slot_of("user1000"));
    ASSERT_EQ_INT(slot_of("foo{bar}{zap}"), slot_of("bar"));  /* the first tag */
    ASSERT_EQ_INT(slot_of("foo{{bar}}zap"), slot_of("{bar")); /* up to the first '}' */
    ASSERT_EQ_INT(slot_of("foo{}{bar}"), fleet_crc16("foo{}{bar}", 10) & 16383); /* empty */
    ASSERT_EQ_INT(slot_of("foo{bar"), fleet_crc16("foo{bar", 7) & 16383);        /* unclosed */
    ASSERT_EQ_INT(slot_of("{fleet:3}:job:01M95MCDEBH49W67X8F9DKTGNB"), slot_of("fleet:3"));
    for (int i = 0; i < 1000; i++) {
        char k[32];
        snprintf(k, sizeof k, "key:%d", i);
        int s = slot_of(k);
        ASSERT_TRUE(s >= 0 && s < FLEET_CLUSTER_SLOTS);
    }
}

/* A reply tree built by hand, freed with the case. */
static redisReply *rep_int(long long v) {
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}
static redisReply *rep_str(const char *s) {
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}
static redisReply *rep_arr(size_t n, redisReply **e) {
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n, sizeof *r->element);
    memcpy(r->element, e, n * sizeof *e);
    return r;
}
static redisReply *range(long long first, long long last, const char *host, int port) {
    redisReply *node = rep_arr(3, (redisReply *[]){rep_str(host), rep_int(port), rep_str("id")});
    return rep_arr(3, (redisReply *[]){rep_int(first), rep_int(last), node});
}
static void free_reply(void *r) { freeReplyObject(r); }

TL_TEST(the_slot_map_is_read_from_cluster_slots) {
    redisReply *rep = rep_arr(3, (redisReply *[]){range(10923, 16383, "10.0.0.3", 7002),
                                                  range(0, 5460, "10.0.0.1", 7000),
                                                  range(5461, 10922, "", 7001)});
    tl_defer(free_reply, rep);
    fleet_slot_map m = {0};
    char why[200];
    ASSERT_EQ_INT(fleet_slot_map_parse(rep, "seed.example", &m, why, sizeof why), 0);
    ASSERT_TRUE(fleet_slot_map_complete(&m));
    ASSERT_EQ_STR(fleet_slot_map_master(&m, 0)->host, "10.0.0.1");
    ASSERT_EQ_INT(fleet_slot_map_master(&m, 5460)->port, 7000);
    ASSERT_EQ_STR(fleet_slot_map_master(&m, 5461)->host, "seed.example"); /* "" */
    ASSERT_EQ_INT(fleet_slot_map_master(&m, 16383)->port, 7002);
    fleet_slot_map_free(&m);

    redisReply *gap = rep_arr(1, (redisReply *[]){range(0, 100, "h", 1)});
    tl_defer(free_reply, gap);
    ASSERT_EQ_INT(fleet_slot_map_parse(gap, NULL, &m, why, sizeof why), 0);
    ASSERT_FALSE(fleet_slot_map_complete(&m));
    ASSERT_TRUE(fleet_slot_map_master(&m, 101) == NULL);
    fleet_slot_map_free(&m);

    redisReply *overlap = rep_arr(2,
                                  (redisReply *[]){range(0, 100, "h", 1), range(100, 200, "h", 2)});
    tl_defer(free_reply, overlap);
    ASSERT_EQ_INT(fleet_slot_map_parse(overlap, NULL, &m, why, sizeof why), -1);
    ASSERT_STR_CONTAINS(why, "overlap");
    redisReply *bad = rep_arr(1, (redisReply *[]){range(0, 16384, "h", 1)});
    tl_defer(free_reply, bad);
    ASSERT_EQ_INT(fleet_slot_map_parse(bad, NULL, &m, why, sizeof why), -1);
    ASSERT_EQ_INT((int)m.n, 0);
}

TL_TEST(moved_and_ask_are_read) {
    redisReply r = {.type = REDIS_REPLY_ERROR};
    int slot = -1;
    fleet_redis_addr to;
    r.str = "MOVED 3999 127.0.0.1:6381";
    ASSERT_EQ_INT(fleet_redirect_of(&r, &slot, &to), FLEET_REDIRECT_MOVED);
    ASSERT_EQ_INT(slot, 3999);
    ASSERT_EQ_STR(to.host, "127.0.0.1");
    ASSERT_EQ_INT(to.port, 6381);
    r.str = "ASK 12 redis-2.fleet:7000";
    ASSERT_EQ_INT(fleet_redirect_of(&r, &slot, &to), FLEET_REDIRECT_ASK);
    ASSERT_EQ_STR(to.host, "redis-2.fleet");
    const char *not_redirects[] = {"MOVED",      "MOVED x 1.2.3.4:5", "MOVED 16384 h:1",
                                   "MOVED 1 h",  "MOVED 1 h:0",       "ASK 1 :5",
                                   "TRYAGAIN x", "ERR MOVED 1 h:1"};
    for (size_t i = 0; i < TL_COUNT(not_redirects); i++) {
        r.str = (char *)not_redirects[i];
        ASSERT_EQ_INT(fleet_redirect_of(&r, &slot, &to), FLEET_REDIRECT_NONE);
    }
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "MOVED 1 h:1"};
    ASSERT_EQ_INT(fleet_redirect_of(&ok, &slot, &to), FLEET_REDIRECT_NONE);
    ASSERT_EQ_INT(fleet_redirect_of(NULL, &slot, &to), FLEET_REDIRECT_NONE);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(crc16_is_xmodem),
        TL_CASE(hash_tags_follow_redis_rules),
        TL_CASE(the_slot_map_is_read_from_cluster_slots),
        TL_CASE(moved_and_ask_are_read),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
