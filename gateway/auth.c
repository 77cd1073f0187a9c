/* auth.c: API keys to tenants (auth.h). */
#include "auth.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/id.h"
#include "fleet/log.h"
#include "fleet/state.h"
#include "fleet/tenant.h"
#include "redis.h"

#define BUCKETS 256u
#define CACHE_MAX 4096 /* entries; beyond, the oldest bucket entries are dropped */
#define KEY_MAX 256    /* longest API key accepted */

typedef struct cached {
    char hash[FLEET_APIKEY_HASH_HEX + 1];
    gw_principal who;
    uint64_t expires_ms;
    struct cached *next;
} cached;

struct gw_auth {
    long ttl_ms;
    cached *buckets[BUCKETS];
    size_t n;
};

gw_auth_cache *gw_auth_new(long ttl_ms) {
    gw_auth_cache *a = calloc(1, sizeof *a);
    if (a) a->ttl_ms = ttl_ms;
    return a;
}

void gw_auth_free(gw_auth_cache *a) {
    if (!a) return;
    for (unsigned i = 0; i < BUCKETS; i++) {
        cached *c = a->buckets[i];
        while (c) {
            cached *next = c->next;
            free(c);
            c = next;
        }
    }
    free(a);
}

static unsigned bucket_of(const char *hash) {
    unsigned h = 0;
    for (int i = 0; i < 8; i++)
        h = h * 16 + (unsigned)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    return h % BUCKETS;
}

/* Drops expired entries of a bucket; returns the live one for hash, if any. */
static cached *cache_find(gw_auth_cache *a, const char *hash) {
    uint64_t now = fleet_now_ms();
    cached **pp = &a->buckets[bucket_of(hash)];
    cached *found = NULL;
    while (*pp) {
        cached *c = *pp;
        if (c->expires_ms <= now) {
            *pp = c->next;
            free(c);
            a->n--;
            continue;
        }
        if (strcmp(c->hash, hash) == 0) found = c;
        pp = &c->next;
    }
    return found;
}

static void cache_put(gw_auth_cache *a, const char *hash, const gw_principal *who) {
    if (a->ttl_ms <= 0 || a->n >= CACHE_MAX) return;
    cached *c = calloc(1, sizeof *c);
    if (!c) return;
    snprintf(c->hash, sizeof c->hash, "%s", hash);
    c->who = *who;
    c->expires_ms = fleet_now_ms() + (uint64_t)a->ttl_ms;
    unsigned b = bucket_of(hash);
    c->next = a->buckets[b];
    a->buckets[b] = c;
    a->n++;
}

/* ------------------------------------------------------------ principals ------------ */

/* Fills *p from a tenant's settings (HGETALL shape, from auth.lua). */
static void principal_from_settings(gw_principal *p, const char *tenant,
                                    const redisReply *settings) {
    fleet_tenant t;
    fleet_tenant_read(&t, settings);
    memset(p, 0, sizeof *p);
    snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
    /* The record's limits fit a long: fleetctl writes them within tenant.h's ranges, and
     * one written by hand beyond them is clamped there. */
    p->max_active = t.max_active > LONG_MAX ? LONG_MAX : (long)t.max_active;
    p->rate = t.rate;
    p->burst = t.burst > LONG_MAX ? LONG_MAX : (long)t.burst;
    p->max_body = t.max_body > LONG_MAX ? LONG_MAX : (long)t.max_body;
    p->max_finished = t.max_finished;
    p->max_bytes = t.max_bytes;
    snprintf(p->webhook_secret, sizeof p->webhook_secret, "%s", t.webhook_secret);
}

/* ------------------------------------------------------------ the check ------------- */

typedef struct auth_call {
    gw_req *r;
    void (*next)(gw_req *r);
    char hash[FLEET_APIKEY_HASH_HEX + 1];
    fleet_cmd cmd;
} auth_call;

static void unauthorized(gw_req *r, const char *detail) {
    gw_add_header(r, "WWW-Authenticate", "Bearer realm=\"fleet\"");
    gw_reply_problem(r, GW_PROBLEM_UNAUTHORIZED, "%s", detail);
}

static void on_auth(redisReply *rep, void *arg) {
    auth_call *c = arg;
    gw_req *r = c->r;
    const char *tenant = NULL, *role = NULL;
    const redisReply *settings = NULL;
    int found = rep ? fleet_state_auth_reply(rep, &tenant, &role, &settings) : -2;
    if (found == -2) {
        gw_reply_redis_error(r, "auth", NULL);
    } else if (found < 0) {
        gw_reply_redis_error(r, "auth", rep);
    } else if (found == 0 || !fleet_tenant_name_valid(tenant)) {
        unauthorized(r, "the API key is not valid (unknown or revoked)");
    } else {
        principal_from_settings(&r->who, tenant, settings);
        r->who.admin = strcmp(role, FLEET_ROLE_ADMIN) == 0;
        cache_put(r->g->auth, c->hash, &r->who);
        void (*next)(gw_req *) = c->next;
        free(c);
        next(r);
        return;
    }
    free(c);
}

/* The key of "Authorization: Bearer <key>", or NULL. */
static const char *bearer(gw_req *r) {
    const char *h = gw_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h);
    if (n == 0 || n > KEY_MAX) return NULL;
    for (size_t i = 0; i < n; i++)
        if (h[i] <= ' ' || h[i] > '~') return NULL;
    return h;
}

void gw_sha256_hex(const void *data, size_t len, char out[65]) {
    fleet_apikey_hash(data, len, out);
}

void gw_auth_then(gw_req *r, void (*next)(gw_req *r)) {
    gw *g = r->g;
    if (!g->cfg.auth) {
        memset(&r->who, 0, sizeof r->who);
        snprintf(r->who.tenant, sizeof r->who.tenant, "%s", g->cfg.tenant);
        r->who.admin = true;
        r->who.burst = 1;
        next(r);
        return;
    }
    const char *key = bearer(r);
    if (!key) {
        unauthorized(r, "send an API key: Authorization: Bearer <key> (fleetctl tenant add "
                        "makes one)");
        return;
    }
    char hash[FLEET_APIKEY_HASH_HEX + 1];
    fleet_apikey_hash(key, strlen(key), hash);
    cached *hit = cache_find(g->auth, hash);
    if (hit) {
        r->who = hit->who;
        next(r);
        return;
    }
    auth_call *c = calloc(1, sizeof *c);
    if (!c) {
        gw_reply_problem(r, GW_PROBLEM_INTERNAL, "out of memory");
        return;
    }
    c->r = r;
    c->next = next;
    memcpy(c->hash, hash, sizeof c->hash);
    fleet_state_auth(&g->keys, c->hash, &c->cmd);
    if (gw_redis_script(g->redis, &c->cmd, on_auth, c) < 0) {
        free(c);
        gw_reply_redis_error(r, "auth", NULL);
        return;
    }
    if (!r->paused) gw_pause(r);
}
