/* metrics.h: GET /metrics, in the Prometheus text format 0.0.4 (docs/metrics.md).
 *
 * Two kinds of series. Fleet-wide ones (queues, job counters, the workers' histograms,
 * workers busy and idle) are read from Redis at each scrape with one read-only script
 * (metrics.lua), so every gateway replica answers the same. Per-process ones (HTTP
 * requests and their durations, webhook delivery outcomes, build info, whether Redis
 * answered) are this gateway's own, counted in memory on its one event loop.
 *
 * /metrics needs no API key (Prometheus scrapes it); it shows no tenant, job id or secret.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "http.h"

/* The route handler: answers 200 with every series; the fleet-wide ones are left out, and
 * fleet_redis_up is 0, when Redis did not answer. */
void gw_metrics_scrape(gw_req *r);

/* http.c: counts a request once libevhtp is done with it (answered, or the client went
 * away: code 0), under its route's template (routes.c), never its raw path. */
void gw_metrics_request_done(const gw_req *r);

/* webhooks.c: counts a delivery attempt's outcome: "delivered", "retry" or "failed". */
void gw_metrics_webhook(const char *outcome);

#endif
