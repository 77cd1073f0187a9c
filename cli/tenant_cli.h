/* tenant_cli.h: `fleetctl tenant`, in four files: tenant_args.c (the subcommands, flags
 * and their checks), tenant_store.c (reading tenants and changing them in Redis),
 * tenant_print.c (text and JSON output) and cmd_tenant.c (the subcommands themselves).
 * What a tenant record holds, how a key is made and hashed and which commands read and
 * write it: fleet/tenant.h.
 */
#ifndef CTL_TENANT_CLI_H
#define CTL_TENANT_CLI_H

#include <stdbool.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "cli.h"
#include "fleet/keys.h"
#include "fleet/tenant.h"

/* ------------------------------------------------------------------ tenant_args.c ------ */

/* The subcommands, in the order of tenant_args.c's table. */
enum {
    CTL_TENANT_ADD,
    CTL_TENANT_LIST,
    CTL_TENANT_SHOW,
    CTL_TENANT_SET,
    CTL_TENANT_ROTATE_KEY,
    CTL_TENANT_ROTATE_SECRET,
    CTL_TENANT_REVOKE,
};


/* The command line, checked. */
typedef struct ctl_tenant_args {
    int sub;                    /* CTL_TENANT_* */
    const char *name;           /* NULL for list */
    fleet_tenant_limits limits; /* add and set */
    bool admin, keep_old, show_secret;
} ctl_tenant_args;

/* Checks the subcommand, its arguments and flags before anything touches Redis. Returns 0,
 * or the usage exit code after printing why. */
int ctl_tenant_check_args(int argc, char **argv, ctl_tenant_args *a);

/* ------------------------------------------------------------------ cmd_tenant.c ------- */

/* ctl_cmd_tenant's run: checks the arguments, connects and runs the subcommand. */
int ctl_tenant_run(const ctl_globals *g, int argc, char **argv);

/* ------------------------------------------------------------------ tenant_store.c ----- */

/* A MULTI/EXEC being built: commands are formatted into hiredis' output buffer at once
 * (their strings are copied), and sent with EXEC. */
typedef struct ctl_txn {
    redisContext *c;
    int queued;  /* commands after MULTI */
    bool failed; /* a command did not fit or hiredis ran out of memory: nothing is sent */
} ctl_txn;

/* Queues the command built by a fleet/tenant.h builder that returned built (0 or -1). */
void ctl_txn_cmd(ctl_txn *x, int built, const fleet_tenant_cmd *cmd);

/* Milliseconds since the epoch by Redis' clock (TIME), so every timestamp of a fleet comes
 * from one clock. -1 after printing an error. */
long long ctl_redis_now_ms(redisContext *c);

/* The tenant names (SMEMBERS of the set of tenants), sorted; NULL after printing an error.
 * The caller frees the reply. */
redisReply *ctl_tenant_names(redisContext *c, const fleet_keys *k);

/* Reads one tenant into *out:
 *   {"tenant", "status": "active"|"revoked", "roles": [...], "max_active", "rate", "burst",
 *    "max_body", "created_at", "active", "keys", "api_keys": [{"hash","role","created_at"}],
 *    "webhook_secret" (with_secret only)}
 * Returns 1, 0 when its hash does not exist (*out NULL), -1 after printing a Redis error. */
int ctl_tenant_load(redisContext *c, const fleet_keys *k, const char *name, bool with_secret,
                    json_t **out);

/* Queues the writes of one change after the tenant was read (t: NULL when it does not
 * exist). Returns 0, or an exit code after printing why (nothing is sent then). */
typedef int (*ctl_tenant_change_fn)(ctl_txn *x, const fleet_keys *k, const char *name,
                                    const json_t *t, void *arg);

/* Runs one change: WATCH the tenant's hash and key set, read the tenant, refuse when it
 * exists (must_exist false: add) or does not (true: the rest), queue the writes, EXEC, and
 * again when a concurrent change aborted the EXEC. Returns 0 or an exit code. */
int ctl_tenant_change(redisContext *c, const fleet_keys *k, const ctl_globals *g, const char *name,
                      bool must_exist, ctl_tenant_change_fn fn, void *arg);

/* Queues a new apikey record for key (role) and its membership in the tenant's key set. */
void ctl_tenant_queue_new_key(ctl_txn *x, const fleet_keys *k, const char *name, const char *key,
                              const char *role, long long now_ms);
/* Queues the deletion of every key of t (as loaded): each apikey record, and the key set
 * itself. Returns how many keys there were. */
long long ctl_tenant_queue_delete_keys(ctl_txn *x, const fleet_keys *k, const char *name,
                                       const json_t *t);

/* ------------------------------------------------------------------ tenant_print.c ----- */

/* The JSON document on stdout, with 15 significant digits for reals. */
void ctl_tenant_print_json(const json_t *v);
/* The settings lines of show and set. */
void ctl_tenant_print_settings(const json_t *t);
void ctl_tenant_print_show(const json_t *t);
void ctl_tenant_print_list(const json_t *tenants);

#endif
