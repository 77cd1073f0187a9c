/* cmd_tenant.c: `fleetctl tenant add|list|show|set|rotate-key|rotate-secret|revoke`:
 * tenants and their API keys, read and changed directly in Redis (--redis-url, --prefix),
 * like `dlq`. The record, its keys and the commands that write it are fleet/tenant.h's;
 * the gateway reads what this writes (docs/cli.md "Tenants", docs/redis.md). A key and a
 * webhook secret are printed once, when made: Redis keeps only the key's SHA-256.
 *
 * Every change is one MULTI/EXEC under WATCH of the tenant's hash and key set
 * (tenant_store.c): it reads the tenant, queues its writes and commits only when nothing
 * changed in between (else it reads again). Every argument is checked before Redis is
 * contacted (tenant_args.c, exit 2).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fleet/job.h"
#include "redis_conn.h"
#include "tenant_cli.h"

/* ------------------------------------------------------------------ add ----------------- */

typedef struct add_arg {
    const fleet_tenant_limits *l;
    const char *role;
    long long now_ms;
    char key[FLEET_APIKEY_SIZE];
    char secret[FLEET_WHSEC_SIZE];
} add_arg;

static int new_secrets_failed(void) {
    ctl_error("the random generator failed (OpenSSL RAND_bytes)");
    return CTL_EXIT_FAIL;
}

static int add_change(ctl_txn *x, const fleet_keys *k, const char *name, const json_t *t,
                      void *arg) {
    (void)t;
    add_arg *a = arg;
    if (fleet_apikey_new(a->key) < 0 || fleet_webhook_secret_new(a->secret) < 0)
        return new_secrets_failed();
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_tenant_cmd_create(k, name, a->l, a->secret, a->now_ms, &cmd), &cmd);
    ctl_txn_cmd(x, fleet_tenant_cmd_enlist(k, name, &cmd), &cmd);
    ctl_tenant_queue_new_key(x, k, name, a->key, a->role, a->now_ms);
    return 0;
}

static int tenant_add(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                      const ctl_tenant_args *args) {
    const char *name = args->name;
    add_arg a = {.l = &args->limits, .role = args->admin ? FLEET_ROLE_ADMIN : FLEET_ROLE_TENANT};
    a.now_ms = ctl_redis_now_ms(c);
    if (a.now_ms < 0) return CTL_EXIT_FAIL;
    int rc = ctl_tenant_change(c, k, g, name, false, add_change, &a);
    if (rc == CTL_EXIT_OK) {
        if (g->json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "tenant", name, "api_key", a.key,
                                  "webhook_secret", a.secret, "role", a.role);
            ctl_tenant_print_json(o);
            json_decref(o);
        } else {
            json_t *t = NULL;
            printf("created tenant %s (role %s)\n", name, a.role);
            printf("api key:         %s\n", a.key);
            printf("webhook secret:  %s\n", a.secret);
            if (ctl_tenant_load(c, k, name, false, &t) > 0) ctl_tenant_print_settings(t);
            json_decref(t);
            printf("\nStore the API key and the webhook secret now: they are not shown again "
                   "(Redis keeps\nonly the key's SHA-256). Clients send the key as "
                   "'Authorization: Bearer KEY'.\n");
        }
    }
    OPENSSL_cleanse(a.key, sizeof a.key);
    OPENSSL_cleanse(a.secret, sizeof a.secret);
    return rc;
}

/* ------------------------------------------------------------------ list, show ---------- */

static int tenant_list(redisContext *c, const fleet_keys *k, const ctl_globals *g) {
    redisReply *m = ctl_tenant_names(c, k);
    if (!m) return CTL_EXIT_FAIL;
    json_t *tenants = json_array();
    int rc = CTL_EXIT_OK;
    for (size_t i = 0; i < m->elements && rc == CTL_EXIT_OK; i++) {
        const char *name = m->element[i]->str;
        if (!name || !fleet_tenant_name_valid(name)) {
            fprintf(stderr, "fleetctl: skipping '%.80s' in %s: not a tenant name\n",
                    name ? name : "", fleet_key_tenants(k).s);
            continue;
        }
        json_t *t;
        int found = ctl_tenant_load(c, k, name, false, &t);
        if (found < 0) rc = CTL_EXIT_FAIL;
        else if (found) json_array_append_new(tenants, t);
        else
            fprintf(stderr, "fleetctl: tenant %s is in %s but has no hash\n", name,
                    fleet_key_tenants(k).s);
    }
    freeReplyObject(m);
    if (rc == CTL_EXIT_OK) {
        if (g->json) ctl_tenant_print_json(tenants);
        else if (json_array_size(tenants) == 0)
            printf("no tenants under prefix '%s' (fleetctl tenant add NAME creates one)\n",
                   g->prefix);
        else ctl_tenant_print_list(tenants);
    }
    json_decref(tenants);
    return rc;
}

static int tenant_show(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                       const ctl_tenant_args *a) {
    json_t *t;
    int found = ctl_tenant_load(c, k, a->name, a->show_secret, &t);
    if (found < 0) return CTL_EXIT_FAIL;
    if (!found) {
        ctl_error("no tenant %s under prefix '%s' (fleetctl tenant list shows them)", a->name,
                  g->prefix);
        return CTL_EXIT_FAIL;
    }
    if (g->json) ctl_tenant_print_json(t);
    else ctl_tenant_print_show(t);
    json_decref(t);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ set ----------------- */

static int set_change(ctl_txn *x, const fleet_keys *k, const char *name, const json_t *t,
                      void *arg) {
    (void)t;
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_tenant_cmd_set_limits(k, name, arg, &cmd), &cmd);
    return 0;
}

static int tenant_set(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                      const ctl_tenant_args *a) {
    const fleet_tenant_limits *l = &a->limits;
    int rc = ctl_tenant_change(c, k, g, a->name, true, set_change, (void *)l);
    if (rc) return rc;
    json_t *t;
    if (ctl_tenant_load(c, k, a->name, false, &t) <= 0) return CTL_EXIT_FAIL;
    if (g->json) {
        ctl_tenant_print_json(t);
    } else {
        printf("updated tenant %s\n", a->name);
        ctl_tenant_print_settings(t);
        if (l->has_rate && !l->has_burst && l->rate_v > 0)
            printf("(burst follows the new rate; --burst B sets another)\n");
    }
    json_decref(t);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ rotate, revoke ------ */

typedef struct key_arg {
    long long now_ms;
    bool admin, keep_old;
    char key[FLEET_APIKEY_SIZE];
    const char *role;
    bool was_revoked;
    long long removed, kept;
} key_arg;

static int rotate_key_change(ctl_txn *x, const fleet_keys *k, const char *name, const json_t *t,
                             void *arg) {
    key_arg *a = arg;
    if (fleet_apikey_new(a->key) < 0) return new_secrets_failed();
    /* The same role as the keys it has (admin if any is), tenant when it has none. */
    const json_t *roles = json_object_get(t, "roles");
    const char *first = json_string_value(json_array_get(roles, 0));
    bool admin = a->admin || (first && strcmp(first, FLEET_ROLE_ADMIN) == 0);
    a->role = admin ? FLEET_ROLE_ADMIN : FLEET_ROLE_TENANT;
    a->was_revoked = strcmp(ctl_jstr(t, "status"), "revoked") == 0;
    a->removed = a->kept = 0;
    if (a->keep_old) a->kept = (long long)json_integer_value(json_object_get(t, "keys"));
    else a->removed = ctl_tenant_queue_delete_keys(x, k, name, t);
    ctl_tenant_queue_new_key(x, k, name, a->key, a->role, a->now_ms);
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_tenant_cmd_unrevoke(k, name, &cmd), &cmd);
    ctl_txn_cmd(x, fleet_tenant_cmd_enlist(k, name, &cmd), &cmd);
    return 0;
}

static int tenant_rotate_key(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                             const ctl_tenant_args *args) {
    const char *name = args->name;
    key_arg a = {.admin = args->admin, .keep_old = args->keep_old};
    a.now_ms = ctl_redis_now_ms(c);
    if (a.now_ms < 0) return CTL_EXIT_FAIL;
    int rc = ctl_tenant_change(c, k, g, name, true, rotate_key_change, &a);
    if (rc == CTL_EXIT_OK && g->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "tenant", name, "api_key", a.key,
                              "role", a.role, "old_keys_deleted", (json_int_t)a.removed,
                              "old_keys_kept", (json_int_t)a.kept, "reenabled", a.was_revoked);
        ctl_tenant_print_json(o);
        json_decref(o);
    } else if (rc == CTL_EXIT_OK) {
        printf("new api key for tenant %s (role %s):\n%s\n", name, a.role, a.key);
        if (a.was_revoked) printf("tenant %s was revoked; it is enabled again\n", name);
        if (a.kept == 1)
            printf("the old key still works (rotate-key without --keep-old, or revoke, deletes "
                   "it)\n");
        else if (a.kept > 1)
            printf("the %lld old keys still work (rotate-key without --keep-old, or revoke, "
                   "deletes them)\n",
                   a.kept);
        else if (a.removed == 1) printf("the old key no longer works\n");
        else if (a.removed > 1) printf("the %lld old keys no longer work\n", a.removed);
        printf("\nStore the key now: it is not shown again.\n");
    }
    OPENSSL_cleanse(a.key, sizeof a.key);
    return rc;
}

static int rotate_secret_change(ctl_txn *x, const fleet_keys *k, const char *name, const json_t *t,
                                void *arg) {
    (void)t;
    char *secret = arg;
    if (fleet_webhook_secret_new(secret) < 0) return new_secrets_failed();
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_tenant_cmd_set_secret(k, name, secret, &cmd), &cmd);
    return 0;
}

static int tenant_rotate_secret(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                                const char *name) {
    char secret[FLEET_WHSEC_SIZE] = "";
    int rc = ctl_tenant_change(c, k, g, name, true, rotate_secret_change, secret);
    if (rc == CTL_EXIT_OK && g->json) {
        json_t *o = json_pack("{s:s, s:s}", "tenant", name, "webhook_secret", secret);
        ctl_tenant_print_json(o);
        json_decref(o);
    } else if (rc == CTL_EXIT_OK) {
        printf("new webhook secret for tenant %s:\n%s\n", name, secret);
        printf("\nDeliveries are signed with it from now on. Store it now: it is not shown "
               "again.\n");
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

static int revoke_change(ctl_txn *x, const fleet_keys *k, const char *name, const json_t *t,
                         void *arg) {
    long long *removed = arg;
    *removed = ctl_tenant_queue_delete_keys(x, k, name, t);
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_tenant_cmd_revoke(k, name, &cmd), &cmd);
    return 0;
}

static int tenant_revoke(redisContext *c, const fleet_keys *k, const ctl_globals *g,
                         const char *name) {
    long long removed = 0;
    int rc = ctl_tenant_change(c, k, g, name, true, revoke_change, &removed);
    if (rc) return rc;
    if (g->json) {
        json_t *o = json_pack("{s:s, s:s, s:I}", "tenant", name, "status", "revoked",
                              "keys_deleted", (json_int_t)removed);
        ctl_tenant_print_json(o);
        json_decref(o);
    } else {
        printf("revoked tenant %s: %lld api key%s deleted; its jobs stay until they expire\n"
               "(fleetctl tenant rotate-key %s enables it again with a new key)\n",
               name, removed, removed == 1 ? "" : "s", name);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ command ------------- */

int ctl_tenant_run(const ctl_globals *g, int argc, char **argv) {
    ctl_tenant_args a;
    int rc = ctl_tenant_check_args(argc, argv, &a);
    if (rc) return rc;
    fleet_keys keys;
    redisContext *c = ctl_redis_open(g, &keys, &rc);
    if (!c) return rc;
    switch (a.sub) {
    case CTL_TENANT_ADD: rc = tenant_add(c, &keys, g, &a); break;
    case CTL_TENANT_LIST: rc = tenant_list(c, &keys, g); break;
    case CTL_TENANT_SHOW: rc = tenant_show(c, &keys, g, &a); break;
    case CTL_TENANT_SET: rc = tenant_set(c, &keys, g, &a); break;
    case CTL_TENANT_ROTATE_KEY: rc = tenant_rotate_key(c, &keys, g, &a); break;
    case CTL_TENANT_ROTATE_SECRET: rc = tenant_rotate_secret(c, &keys, g, a.name); break;
    default: rc = tenant_revoke(c, &keys, g, a.name); break;
    }
    ctl_redis_close(c);
    return rc;
}
