/* tenant_store.c: reading tenants from Redis and changing them, each change one MULTI/EXEC
 * under WATCH of the tenant's hash and key set (tenant_cli.h). The commands come from
 * fleet/tenant.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/job.h"
#include "fleet/job_json.h"
#include "redis_conn.h"
#include "tenant_cli.h"

#define TENANT_CHANGE_TRIES 5 /* EXECs aborted by a concurrent change */

/* ------------------------------------------------------------------ transactions -------- */

static void txn_begin(ctl_txn *x, redisContext *c) {
    *x = (ctl_txn){.c = c};
    if (redisAppendCommand(c, "MULTI") != REDIS_OK) x->failed = true;
}

void ctl_txn_cmd(ctl_txn *x, int built, const fleet_tenant_cmd *cmd) {
    if (built < 0 || x->failed) {
        x->failed = true;
        return;
    }
    /* hiredis 0.14 takes argv without the inner const; it only reads it. */
    if (redisAppendCommandArgv(x->c, cmd->argc, (const char **)cmd->argv, cmd->len) != REDIS_OK)
        x->failed = true;
    x->queued++;
}

/* Sends EXEC and reads every reply. Returns 1 when it committed, 0 when a change to a
 * watched key aborted it, -1 after printing an error. */
static int txn_exec(ctl_txn *x) {
    if (x->failed || redisAppendCommand(x->c, "EXEC") != REDIS_OK) {
        ctl_error("out of memory, or a command too long to send");
        return -1;
    }
    int rc = 1;
    char first_err[256] = "";
    for (int i = 0; i < x->queued + 2; i++) { /* MULTI, the commands, EXEC */
        redisReply *r = NULL;
        if (redisGetReply(x->c, (void **)&r) != REDIS_OK || !r) {
            ctl_error("redis: %s", x->c->errstr[0] ? x->c->errstr : "connection lost");
            return -1;
        }
        bool exec = i == x->queued + 1;
        if (r->type == REDIS_REPLY_ERROR && !first_err[0])
            snprintf(first_err, sizeof first_err, "%s", r->str);
        if (exec && r->type == REDIS_REPLY_NIL) rc = 0;
        if (exec && r->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < r->elements; j++)
                if (r->element[j]->type == REDIS_REPLY_ERROR && !first_err[0])
                    snprintf(first_err, sizeof first_err, "%s", r->element[j]->str);
        freeReplyObject(r);
    }
    if (first_err[0]) {
        ctl_error("redis: MULTI/EXEC: %s", first_err);
        ctl_redis_explain(first_err);
        return -1;
    }
    return rc;
}

long long ctl_redis_now_ms(redisContext *c) {
    const char *argv[] = {"TIME"};
    redisReply *r = ctl_redis_cmd_ok(c, "TIME", 1, argv);
    long long ms = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    else if (r) ctl_error("redis: TIME: unexpected reply");
    freeReplyObject(r);
    return ms;
}

/* ------------------------------------------------------------------ reading ------------- */

/* The reply of a built command when of the expected type, or NULL after printing why (a
 * key of another type). */
static redisReply *read_cmd(redisContext *c, int want, int built, const fleet_tenant_cmd *cmd) {
    if (built < 0) {
        ctl_error("a command too long to send");
        return NULL;
    }
    redisReply *r = ctl_redis_cmd_ok(c, cmd->argv[0], cmd->argc, cmd->argv);
    if (r && r->type != want) {
        ctl_error("redis: %s %s: unexpected reply (is the key of another type?)", cmd->argv[0],
                  cmd->argv[1]);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static json_t *time_json(long long ms) {
    if (ms <= 0) return json_null();
    char when[32];
    fleet_format_time_ms(when, ms);
    return json_string(when);
}

/* A stored rate as a JSON number: an integer when it has no fraction (and fits one: a
 * rate written by hand may be any number). */
static json_t *rate_json(const fleet_tenant *t) {
    if (!strchr(t->rate_text, '.') && t->rate < 1e15) return json_integer((json_int_t)t->rate);
    return json_real(t->rate);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp((*(redisReply *const *)a)->str, (*(redisReply *const *)b)->str);
}

/* Sorts SMEMBERS' reply (all strings) in place, by moving its element pointers. */
static void sort_members(redisReply *set) {
    if (set->elements < 2) return; /* element is NULL when empty, which qsort must not get */
    for (size_t i = 0; i < set->elements; i++)
        if (set->element[i]->type != REDIS_REPLY_STRING) return;
    qsort(set->element, set->elements, sizeof *set->element, cmp_str);
}

redisReply *ctl_tenant_names(redisContext *c, const fleet_keys *k) {
    fleet_tenant_cmd cmd;
    redisReply *m = read_cmd(c, REDIS_REPLY_ARRAY, fleet_tenant_cmd_names(k, &cmd), &cmd);
    if (m) sort_members(m);
    return m;
}

/* {"hash", "role", "created_at"} of each key hash in the tenant's key set, sorted by hash;
 * role null when its apikey record is missing. NULL after printing a Redis error. */
static json_t *load_keys(redisContext *c, const fleet_keys *k, const char *name) {
    fleet_tenant_cmd cmd;
    redisReply *m = read_cmd(c, REDIS_REPLY_ARRAY, fleet_tenant_cmd_keys(k, name, &cmd), &cmd);
    if (!m) return NULL;
    sort_members(m);
    json_t *keys = json_array();
    for (size_t i = 0; i < m->elements; i++) {
        const char *h = ((redisReply *)m->element[i])->str;
        json_t *o = json_pack("{s:s, s:n, s:n}", "hash", h, "role", "created_at");
        json_array_append_new(keys, o);
        if (!fleet_apikey_hash_valid(h)) continue;
        redisReply *a = read_cmd(c, REDIS_REPLY_ARRAY, fleet_apikey_cmd_read(k, h, &cmd), &cmd);
        if (!a) {
            json_decref(keys);
            keys = NULL;
            break;
        }
        const char *role = ctl_redis_field(a, FLEET_APIKEY_F_ROLE);
        const char *created = ctl_redis_field(a, FLEET_APIKEY_F_CREATED_MS);
        if (role) json_object_set_new(o, "role", json_string(role));
        json_object_set_new(o, "created_at", time_json(created ? strtoll(created, NULL, 10) : 0));
        freeReplyObject(a);
    }
    freeReplyObject(m);
    return keys;
}

/* The distinct roles of the keys, sorted ("admin" before "tenant"). */
static json_t *roles_of(const json_t *keys) {
    bool admin = false, tenant = false;
    size_t i;
    json_t *o;
    json_array_foreach(keys, i, o) {
        const char *r = json_string_value(json_object_get(o, "role"));
        if (r && strcmp(r, FLEET_ROLE_ADMIN) == 0) admin = true;
        if (r && strcmp(r, FLEET_ROLE_TENANT) == 0) tenant = true;
    }
    json_t *roles = json_array();
    if (admin) json_array_append_new(roles, json_string(FLEET_ROLE_ADMIN));
    if (tenant) json_array_append_new(roles, json_string(FLEET_ROLE_TENANT));
    return roles;
}

int ctl_tenant_load(redisContext *c, const fleet_keys *k, const char *name, bool with_secret,
                    json_t **out) {
    *out = NULL;
    fleet_tenant_cmd cmd;
    redisReply *h = read_cmd(c, REDIS_REPLY_ARRAY, fleet_tenant_cmd_read(k, name, &cmd), &cmd);
    if (!h) return -1;
    if (h->elements == 0) {
        freeReplyObject(h);
        return 0;
    }
    json_t *keys = load_keys(c, k, name);
    redisReply *z = keys ? read_cmd(c, REDIS_REPLY_INTEGER, fleet_tenant_cmd_active(k, name, &cmd),
                                    &cmd)
                         : NULL;
    if (!z) {
        json_decref(keys);
        freeReplyObject(h);
        return -1;
    }
    fleet_tenant t;
    fleet_tenant_read(&t, h);
    json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:o, s:I, s:I, s:o, s:o, s:I, s:o}", "tenant", name,
                          "status", t.revoked ? "revoked" : "active", "roles", roles_of(keys),
                          "max_active", (json_int_t)t.max_active, "rate", rate_json(&t), "burst",
                          (json_int_t)t.burst, "max_body", (json_int_t)t.max_body, "created_at",
                          time_json(t.created_ms),
                          /* only a tenant with max_active has its jobs counted (submit.lua) */
                          "active", t.max_active > 0 ? json_integer(z->integer) : json_null(),
                          "keys", (json_int_t)json_array_size(keys), "api_keys", keys);
    if (o) { /* the storage limits, 0: unlimited (submit.lua evicts the oldest finished) */
        json_object_set_new(o, "max_finished", json_integer((json_int_t)t.max_finished));
        json_object_set_new(o, "max_bytes", json_integer((json_int_t)t.max_bytes));
    }
    if (o && with_secret)
        json_object_set_new(o, "webhook_secret",
                            t.webhook_secret[0] ? json_string(t.webhook_secret) : json_null());
    freeReplyObject(z);
    freeReplyObject(h);
    if (!o) {
        ctl_error("out of memory");
        return -1;
    }
    *out = o;
    return 1;
}

/* ------------------------------------------------------------------ changes ------------- */

int ctl_tenant_change(redisContext *c, const fleet_keys *k, const ctl_globals *g, const char *name,
                      bool must_exist, ctl_tenant_change_fn fn, void *arg) {
    for (int attempt = 0; attempt < TENANT_CHANGE_TRIES; attempt++) {
        fleet_tenant_cmd w;
        if (fleet_tenant_cmd_watch(k, name, &w) < 0) return CTL_EXIT_FAIL;
        redisReply *r = ctl_redis_cmd_ok(c, "WATCH", w.argc, w.argv);
        if (!r) return CTL_EXIT_FAIL;
        freeReplyObject(r);
        json_t *t;
        int found = ctl_tenant_load(c, k, name, false, &t);
        if (found < 0) return CTL_EXIT_FAIL;
        if (found && !must_exist) {
            if (strcmp(ctl_jstr(t, "status"), "revoked") == 0)
                ctl_error("tenant %s exists (revoked); use rotate-key to enable it again with a "
                          "new key",
                          name);
            else ctl_error("tenant %s exists; use rotate-key for a new key", name);
            json_decref(t);
            return CTL_EXIT_FAIL;
        }
        if (!found && must_exist) {
            ctl_error("no tenant %s under prefix '%s' (fleetctl tenant list shows them)", name,
                      g->prefix);
            return CTL_EXIT_FAIL;
        }
        ctl_txn x;
        txn_begin(&x, c);
        int rc = fn(&x, k, name, t, arg);
        json_decref(t);
        if (rc) return rc; /* nothing was sent: the process ends with the connection */
        int done = txn_exec(&x);
        if (done < 0) return CTL_EXIT_FAIL;
        if (done) return CTL_EXIT_OK;
    }
    ctl_error("tenant %s kept changing while this ran (%d tries); try again", name,
              TENANT_CHANGE_TRIES);
    return CTL_EXIT_FAIL;
}

void ctl_tenant_queue_new_key(ctl_txn *x, const fleet_keys *k, const char *name, const char *key,
                              const char *role, long long now_ms) {
    char hash[FLEET_APIKEY_HASH_HEX + 1];
    fleet_apikey_hash(key, strlen(key), hash);
    fleet_tenant_cmd cmd;
    ctl_txn_cmd(x, fleet_apikey_cmd_create(k, hash, name, role, now_ms, &cmd), &cmd);
    ctl_txn_cmd(x, fleet_tenant_cmd_add_key(k, name, hash, &cmd), &cmd);
}

long long ctl_tenant_queue_delete_keys(ctl_txn *x, const fleet_keys *k, const char *name,
                                       const json_t *t) {
    fleet_tenant_cmd cmd;
    size_t i;
    json_t *key;
    json_array_foreach(json_object_get(t, "api_keys"), i, key) {
        const char *h = ctl_jstr(key, "hash");
        if (fleet_apikey_hash_valid(h)) ctl_txn_cmd(x, fleet_apikey_cmd_delete(k, h, &cmd), &cmd);
    }
    ctl_txn_cmd(x, fleet_tenant_cmd_delete_keys(k, name, &cmd), &cmd);
    return (long long)json_array_size(json_object_get(t, "api_keys"));
}
