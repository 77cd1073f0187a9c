/* auth.h: who is asking. Every /v1 request carries "Authorization: Bearer <api key>";
 * the key is hashed (SHA-256, fleet/tenant.h) and looked up in Redis by auth.lua
 * ({prefix}:apikey:<hash>, written by `fleetctl tenant add`), which names the tenant, its
 * role (tenant or admin) and its settings, read with fleet_tenant_read. Answers are cached
 * for FLEET_AUTH_CACHE_MS, so a revoked key stops working within that time.
 *
 * With FLEET_AUTH=off (local development) every request is the tenant FLEET_TENANT with
 * the admin role.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "fleet/job.h"
#include "fleet/job_json.h"
#include "fleet/state.h"
#include "http.h"

typedef struct gw_auth gw_auth_cache;

gw_auth_cache *gw_auth_new(long ttl_ms);
void gw_auth_free(gw_auth_cache *a);

/* Authenticates r and then calls next(r), or answers 401 (missing or unknown key) or 503
 * (Redis unavailable) itself. On success r->who (gateway.h: gw_principal) is filled. */
void gw_auth_then(gw_req *r, void (*next)(gw_req *r));

/* SHA-256 of data as 64 lower-case hex characters and a NUL (an idempotency key's digest;
 * the same function as fleet_apikey_hash). */
void gw_sha256_hex(const void *data, size_t len, char out[65]);

/* Whose jobs r may read and act on, as the tenant argument of the job scripts: an admin
 * key's is every tenant's (FLEET_TENANT_ANY), any other key's its own tenant's. The one
 * place that decides it (docs/api.md, "Authentication"). */
static inline const char *gw_auth_job_scope(const gw_req *r) {
    return r->who.admin ? FLEET_TENANT_ANY : r->who.tenant;
}

/* A job object as r sees it: for an admin key (r not NULL), with the job's tenant, since
 * its jobs are every tenant's; a tenant key sees only its own and gets none. */
static inline json_t *gw_auth_job_json(const gw_req *r, const fleet_job_view *v) {
    json_t *o = fleet_job_to_json(v);
    if (o && r && r->who.admin && v->tenant)
        json_object_set_new(o, "tenant", json_string(v->tenant));
    return o;
}

#endif
