/* idle_test: what an idle gateway asks of Redis.
 *
 * A gateway with nothing to do must leave Redis alone: a hundred of them must not make
 * load on an idle Redis. Its readiness check (INFO, about once a second, gateway/redis.c)
 * is the one periodic command allowed at that rate; the webhook delivery loop wakes on the
 * events channel and on a slow safety tick, not on a poll (gateway/webhooks.c).
 *
 * The counts come from Redis itself (INFO commandstats) and the gateway's own INFO calls
 * are the clock: the test waits until the gateway has asked INFO a number of times, then
 * counts every other command in that window. It is a count, not a time.
 */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define WINDOW_INFOS 6 /* about six seconds of the gateway's readiness ticks */

typedef struct counts {
    long long info, other;
    char detail[1024];
} counts;

typedef struct probe {
    redisContext *c;
    long long own_infos; /* INFO commandstats calls of this test counted so far */
    long long base_info;
    long long want_info;
    counts last;
} probe;

/* INFO commandstats, less this test's own INFO calls (a call is counted after it runs: the
 * reply of the n-th one includes the n-1 before it). */
static counts read_counts(probe *p) {
    redisReply *r = tl_redis_cmd(p->c, "INFO commandstats");
    counts k = {0};
    size_t used = 0;
    for (const char *l = r->str; (l = strstr(l, "cmdstat_")) != NULL;) {
        l += 8;
        const char *colon = strchr(l, ':');
        const char *calls = colon ? strstr(colon, "calls=") : NULL;
        if (!calls) break;
        long long n = atoll(calls + 6);
        size_t namelen = (size_t)(colon - l);
        if (namelen == 4 && strncmp(l, "info", 4) == 0) k.info = n - p->own_infos;
        else {
            k.other += n;
            if (used < sizeof k.detail - 64)
                used += (size_t)snprintf(k.detail + used, sizeof k.detail - used, " %.*s=%lld",
                                         (int)namelen, l, n);
        }
        l = colon;
    }
    p->own_infos++;
    return k;
}

static bool infos_reached(void *arg) {
    probe *p = arg;
    p->last = read_counts(p);
    return p->last.info >= p->want_info;
}

TL_TEST(idle_gateway_sends_at_most_two_commands_a_second) {
    /* Webhooks on, default schedule and claim time: the delivery loop runs as shipped. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}});
    probe p = {.c = tl_redis_connect(f->redis)};
    /* Past the start (connect, SELECT, SCRIPT LOAD, SUBSCRIBE, the first reads). */
    p.want_info = read_counts(&p).info + 2;
    ASSERT_WAIT_FOR(infos_reached, &p, 10000);
    counts base = p.last;
    p.want_info = base.info + WINDOW_INFOS;
    ASSERT_WAIT_FOR(infos_reached, &p, 30000);
    counts end = p.last;
    long long infos = end.info - base.info, others = end.other - base.other;
    tl_log("over %lld readiness ticks of the gateway: %lld INFO, %lld other commands", infos, infos,
           others);
    tl_log("before:%s", base.detail);
    tl_log("after: %s", end.detail);
    /* At most about one command a second besides INFO: two a second in all. */
    ASSERT_LE_INT(others, infos);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(idle_gateway_sends_at_most_two_commands_a_second)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
