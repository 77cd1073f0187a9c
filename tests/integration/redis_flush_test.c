/* redis_flush_test: the gateway's Redis link sends commands before its loop turn ends.
 *
 * hiredis' async context only appends a command to its output buffer and arms a write
 * event, so without help the commands queued while the gateway parses a turn's worth of
 * HTTP requests reach Redis only once the loop gets back to that event, and Redis idles
 * meanwhile (docs/benchmarks.md, "Submit: the gateway and Redis at the same time").
 * gateway/redis.c writes the buffer itself every GW_REDIS_FLUSH_AT (16) commands.
 *
 * The test drives gateway/redis.c on an event loop of its own against a real
 * redis-server: once the link is ready it queues commands WITHOUT running the loop, and
 * a second, plain connection watches what Redis has executed. What is asserted is counts
 * (how many INCRs Redis ran, which reply each callback got), never a time.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "testlib.h"

#define MARK 16 /* GW_REDIS_FLUSH_AT in gateway/redis.c */

typedef struct replies {
    int n;
    long long got[4 * MARK];
    bool bad;
} replies;

static void on_reply(redisReply *rep, void *arg) {
    replies *rs = arg;
    if (!rep || rep->type != REDIS_REPLY_INTEGER ||
        rs->n >= (int)(sizeof rs->got / sizeof *rs->got)) {
        rs->bad = true;
        return;
    }
    rs->got[rs->n++] = rep->integer;
}

static int incr(gw_redis *r, replies *rs) {
    const char *argv[2] = {"INCR", "flush:n"};
    size_t lens[2] = {4, 7};
    return gw_redis_command(r, 2, argv, lens, on_reply, rs);
}

/* One turn of the loop at a time, so that the test sees its conditions between turns. */
static bool turn_until_ready(struct event_base *base, gw_redis *r) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    return gw_redis_ready(r);
}

static bool turn_until_replies(struct event_base *base, replies *rs, int want) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    return rs->n >= want || rs->bad;
}

static long long counter(redisContext *c) {
    redisReply *rep = tl_redis_cmd(c, "GET flush:n");
    return rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : 0;
}

static void free_redis(void *arg) { gw_redis_free(arg); }
static void free_base(void *arg) { event_base_free(arg); }

TL_TEST(commands_reach_redis_before_the_loop_turn_ends) {
    tl_redis *srv = tl_redis_start(NULL);
    redisContext *c = tl_redis_connect(srv);
    struct event_base *base = event_base_new();
    ASSERT_TRUE(base != NULL);
    tl_defer(free_base, base);
    static fleet_redis_target target; /* outlives the link, which keeps a pointer */
    char err[200];
    ASSERT_EQ_INT(fleet_redis_target_parse(&target, &(fleet_redis_settings){.url = srv->url}, err,
                                           sizeof err),
                  0);
    gw_redis *r = gw_redis_new(base, &target, 5000, false);
    ASSERT_TRUE(r != NULL);
    tl_defer(free_redis, r); /* runs before free_base: deferred calls run last first */
    ASSERT_EVENTUALLY(turn_until_ready(base, r), TL_WAIT_MS);

    /* MARK commands queued in one go, as a turn of HTTP reads would: Redis runs them
     * while this loop still has not turned. */
    /* Static: on a failed assertion the deferred free answers pending commands with NULL
     * after this frame is gone. */
    static replies rs;
    for (int i = 0; i < MARK; i++) ASSERT_TRUE(incr(r, &rs) == 0);
    ASSERT_EVENTUALLY(counter(c) == MARK, TL_WAIT_MS);
    ASSERT_EQ_INT(rs.n, 0); /* the replies wait for the loop, as before */

    /* Every reply arrives once, in order, for the command it answers. */
    ASSERT_EVENTUALLY(turn_until_replies(base, &rs, MARK), TL_WAIT_MS);
    ASSERT_TRUE(!rs.bad);
    ASSERT_EQ_INT(rs.n, MARK);
    for (int i = 0; i < MARK; i++) ASSERT_EQ_INT(rs.got[i], i + 1);

    /* Below the mark the loop's own write event sends the command, as it always did: a
     * lone request is not held back waiting for company. */
    ASSERT_TRUE(incr(r, &rs) == 0);
    ASSERT_EVENTUALLY(turn_until_replies(base, &rs, MARK + 1), TL_WAIT_MS);
    ASSERT_TRUE(!rs.bad);
    ASSERT_EQ_INT(rs.got[MARK], MARK + 1);

    /* Twice the mark less one: the first MARK go at once, the rest with the loop. */
    for (int i = 0; i < 2 * MARK - 1; i++) ASSERT_TRUE(incr(r, &rs) == 0);
    ASSERT_EVENTUALLY(counter(c) >= 2 * MARK + 1, TL_WAIT_MS);
    ASSERT_EVENTUALLY(turn_until_replies(base, &rs, 3 * MARK), TL_WAIT_MS);
    ASSERT_TRUE(!rs.bad);
    ASSERT_EQ_INT(rs.n, 3 * MARK);
    for (int i = 0; i < 3 * MARK; i++) ASSERT_EQ_INT(rs.got[i], i + 1);
    ASSERT_EQ_INT(counter(c), 3 * MARK);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(commands_reach_redis_before_the_loop_turn_ends)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
