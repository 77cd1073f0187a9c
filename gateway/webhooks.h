/* webhooks.h: durable, signed webhook deliveries (docs/webhooks.md).
 *
 * The transition scripts queue a delivery (a hash {prefix}:delivery:<msg> and an entry on
 * the task stream {prefix}:webhooks) when a job with a webhook has an event it asked for.
 * Every gateway reads that stream in the consumer group "gateways", so each task goes to
 * one gateway; a gateway that dies mid-delivery leaves the entry pending and another one
 * takes it over after FLEET_WEBHOOK_CLAIM_MS (XAUTOCLAIM).
 *
 * One delivery attempt:
 *   read the delivery hash ─▶ first attempt: read the job, build the body, keep it
 *   ─▶ check the URL (ssrf.h): resolve the host (evdns, async), refuse if any address is
 *      private/loopback/link-local/... unless allowlisted, pin the checked address
 *   ─▶ sign (webhook_sign.h) ─▶ POST with libcurl multi (curl_loop.h), 15 s, no redirects
 *   ─▶ settle (the webhook_settle script): delivered (2xx) | retry at a time from the
 *      schedule, or Retry-After if later (timeout, connection error, DNS error, 429, 5xx)
 *      | failed (410, other 4xx, refused by the SSRF guard, or no attempts left: the
 *      webhook dead-letter stream)
 * Retries wait in {prefix}:webhook_retry; every gateway puts due ones back on the stream.
 *
 * Shards (shards.h): the task stream, the delivery hashes, the retry set and the webhook
 * dead-letter stream are keys of the job's shard, written by the script that ended the
 * job there. A gateway reads the task stream of every shard of its table (the same group
 * on each), and works on a delivery with the keys of the shard it read it from, which is
 * also the shard its message id names: "msg_<job id>_<n>", the job id's first character
 * being the shard's number. Retries wait and are promoted on that shard. With one shard
 * this is the one stream it always was.
 */
#ifndef GW_WEBHOOKS_H
#define GW_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"

#define GW_WEBHOOK_SCHEDULE_MAX 32

typedef struct gw_webhooks gw_webhooks;

/* Reads FLEET_WEBHOOK_SCHEDULE ("0,5,300": seconds before each attempt) into delays_ms[0..
 * *n). Returns 0, or -1 with a message. Pure. */
int gw_webhook_schedule_parse(const char *text, long *delays_ms, int max, int *n, char *err,
                              size_t errlen);

gw_webhooks *gw_webhooks_new(gw *g, char *err, size_t errlen);
/* Stops taking tasks and aborts the deliveries in flight (they stay pending on the stream
 * and another gateway takes them over). Call before the Redis connection is freed. */
void gw_webhooks_stop(gw_webhooks *wh);
void gw_webhooks_free(gw_webhooks *wh);
/* Deliveries in progress (for the shutdown drain). */
size_t gw_webhooks_inflight(const gw_webhooks *wh);
/* True when a webhook URL may be accepted at submit: a secret is configured. */
bool gw_webhooks_enabled(const gw_webhooks *wh);
/* The allowlist of the SSRF guard (for the submit-time check). */
const struct gw_cidr_list *gw_webhooks_allowlist(const gw_webhooks *wh);

#endif
