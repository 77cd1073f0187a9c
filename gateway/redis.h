/* redis.h: the gateway's one async Redis connection (hiredis on the gateway's loop).
 *
 * Reconnects with backoff after any loss; loads the state scripts after each connect and
 * is "ready" only once they are loaded. Every pending callback runs exactly once: with
 * the reply, or with NULL when Redis is unreachable, the connection dropped, or the
 * command went unanswered for redis_timeout_ms (then the connection is dropped and
 * remade). A reply lives only during its callback.
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "fleet/state.h"
#include "gateway.h"

typedef void (*gw_redis_cb)(redisReply *reply, void *arg);

gw_redis *gw_redis_new(struct event_base *base, const char *url, long timeout_ms);
void gw_redis_free(gw_redis *r);
bool gw_redis_ready(const gw_redis *r);

/* Sends a state script. cmd must stay alive until cb runs (NOSCRIPT is retried as EVAL
 * with the same cmd). Returns 0, or -1 when not ready: then cb is NOT called. */
int gw_redis_script(gw_redis *r, fleet_cmd *cmd, gw_redis_cb cb, void *arg);
/* Sends a plain command; argv is copied by hiredis. Same contract as above. */
int gw_redis_command(gw_redis *r, int argc, const char **argv, const size_t *lens,
                     gw_redis_cb cb, void *arg);

#endif
