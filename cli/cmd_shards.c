/* cmd_shards.c: `fleetctl shards show|init|add|drain|activate|remove`: the shard table
 * (fleet/shards.h, docs/cli.md "Shards"), read and changed directly in Redis.
 *
 * The table is one string at "{prefix}:shards". Every change is a check-and-set: WATCH the
 * key, read it, change what was read, MULTI/SET/EXEC; an EXEC aborted by another writer
 * starts again from a fresh read, so two operators (or a gateway writing the first table
 * at its start) never lose each other's change. After a change a line "shards" on the
 * events channel makes gateways load the table at once; workers load it again every
 * keeper tick anyway, so a lost PUBLISH only delays them.
 *
 * On a Redis Cluster (--redis-cluster) a shard's tag is chosen for the master it should
 * live on: init puts shard 0 where "{prefix}" is and shards 1.. on the other masters in
 * turn (then round-robin), add puts the new shard on the master holding the fewest; each
 * takes the smallest free N whose "{prefix:N}" hashes to a slot of that master. A later
 * resharding may move a tag elsewhere: show says where each shard lives now.
 *
 * A shard is removed only when it drains and its counters say no job of any model is
 * queued or running on it: its finished jobs then stop being served (their ids name a
 * shard the fleet no longer has) and its keys expire by their TTLs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/job.h"
#include "fleet/redis_router.h"
#include "fleet/shards.h"
#include "redis_conn.h"
#include "render.h"

#define SHARDS_CHANGE_TRIES 5 /* EXECs aborted by a concurrent change */

static long opt_tag = -1;

static const fleet_option shards_opts[] = {
    {"tag", NULL, FLEET_OPT_INT, "-1",
     "shards add: the new shard's tag number N of \"{prefix:N}\" (default: the lowest free one; "
     "on a cluster one on the master holding the fewest shards)",
     &opt_tag, -1, FLEET_SHARD_TAG_MAX},
};

static const ctl_subcommand shards_subs[] = {
    {"show", "", "the shard table: per shard its tag, state, node, queued/running jobs"},
    {"init", "N", "write a table of N shards (1..8) when none exists"},
    {"add", "[--tag N]", "add an active shard (new jobs may go there at once)"},
    {"drain", "K", "shard K takes no new job (workers still serve it)"},
    {"activate", "K", "shard K takes new jobs again"},
    {"remove", "K", "forget a draining shard with no queued or running job, no webhook owed"},
};

/* ------------------------------------------------------------------ reading ------------- */

/* The table's text at the control key into text ("" when absent). Returns 1 when the key
 * exists, 0 when it does not, -1 after printing a Redis error. */
static int read_text(redisContext *c, const fleet_shards *s, char *text, size_t len) {
    fleet_key key = fleet_key_shards(&s->control);
    const char *argv[] = {"GET", key.s};
    redisReply *r = ctl_redis_cmd_ok(c, "GET", 2, argv);
    if (!r) return -1;
    int found = r->type == REDIS_REPLY_STRING;
    if (found && r->len >= len) {
        ctl_error("the shard table at %s is %zu bytes, more than any table (%zu)", key.s, r->len,
                  len - 1);
        freeReplyObject(r);
        return -1;
    }
    snprintf(text, len, "%s", found ? r->str : "");
    freeReplyObject(r);
    return found;
}

/* Queued and running jobs per model on one shard, from its stats hash ("<model>:queued",
 * "<model>:running"), and the length of each model's stream there: an object
 * {model: {queued, running, stream}} into *out, and the totals. Models are those of the
 * control models hash and those the stats hash names. Returns 0, or -1 after printing
 * why. */
static int shard_counts(redisContext *c, const fleet_shards *s, int k, json_t **out,
                        long long *queued, long long *running) {
    const fleet_keys *keys = &s->shard[k].keys;
    *queued = *running = 0;
    fleet_key stats = fleet_key_stats(keys), models = fleet_key_models(&s->control);
    redisReply *st = ctl_redis_cmd_ok(c, "HGETALL", 2, (const char *const[]){"HGETALL", stats.s});
    if (!st) return -1;
    /* HGETALL rather than HKEYS: the records are small, and fleetctl's ACL user
     * (deploy/redis-users.acl) reads hashes so. */
    redisReply *names = ctl_redis_cmd_ok(c, "HGETALL", 2,
                                         (const char *const[]){"HGETALL", models.s});
    if (!names) {
        freeReplyObject(st);
        return -1;
    }
    json_t *o = json_object();
    for (size_t i = 0; names->type == REDIS_REPLY_ARRAY && i + 1 < names->elements; i += 2)
        if (fleet_model_name_valid(names->element[i]->str))
            json_object_set_new(o, names->element[i]->str, json_object());
    for (size_t i = 0; st->type == REDIS_REPLY_ARRAY && i + 1 < st->elements; i += 2) {
        const char *f = st->element[i]->str, *colon = strrchr(f, ':');
        if (!colon || (strcmp(colon + 1, "queued") != 0 && strcmp(colon + 1, "running") != 0))
            continue;
        char model[FLEET_MODEL_MAX + 1];
        size_t ml = (size_t)(colon - f);
        if (ml > FLEET_MODEL_MAX) continue;
        memcpy(model, f, ml);
        model[ml] = '\0';
        if (!fleet_model_name_valid(model)) continue;
        long long v = strtoll(st->element[i + 1]->str, NULL, 10);
        json_t *m = json_object_get(o, model);
        if (!m) json_object_set_new(o, model, m = json_object());
        json_object_set_new(m, colon + 1, json_integer(v));
        if (strcmp(colon + 1, "queued") == 0) *queued += v;
        else *running += v;
    }
    freeReplyObject(st);
    freeReplyObject(names);
    const char *model;
    json_t *m;
    json_object_foreach(o, model, m) {
        if (!json_object_get(m, "queued")) json_object_set_new(m, "queued", json_integer(0));
        if (!json_object_get(m, "running")) json_object_set_new(m, "running", json_integer(0));
        fleet_key sk = fleet_key_stream(keys, model);
        redisReply *x = ctl_redis_cmd(c, 2, (const char *const[]){"XLEN", sk.s});
        if (!x) {
            json_decref(o);
            return -1;
        }
        json_object_set_new(m, "stream",
                            json_integer(x->type == REDIS_REPLY_INTEGER ? x->integer : 0));
        freeReplyObject(x);
    }
    *out = o;
    return 0;
}

/* ------------------------------------------------------------------ tags ---------------- */

/* The smallest tag number >= 1 that no shard of s uses. */
static long free_tag(const fleet_shards *s, long from) {
    return fleet_shards_free_tag(s, from, NULL, NULL, 0);
}

/* The smallest k >= 1 that the table does not use, or -1 when every k an id can name is. */
static int free_k(const fleet_shards *s) {
    for (int k = 1; k < FLEET_SHARDS_MAX; k++)
        if (!s->shard[k].used) return k;
    return -1;
}

/* ------------------------------------------------------------------ cluster ------------- */

/* The masters of the slot map, in map order (the router's node order), as indexes. */
typedef struct masters {
    const fleet_slot_map *map;
    int n;
    fleet_redis_addr addr[FLEET_ROUTER_NODES_MAX];
} masters;

static int masters_load(masters *m) {
    m->n = 0;
    if (!(m->map = ctl_redis_slot_map())) return -1;
    for (size_t i = 0; i < m->map->n && m->n < FLEET_ROUTER_NODES_MAX; i++) {
        const fleet_redis_addr *a = &m->map->ranges[i].master;
        int j = 0;
        while (j < m->n && !(m->addr[j].port == a->port && strcmp(m->addr[j].host, a->host) == 0))
            j++;
        if (j == m->n) m->addr[m->n++] = *a;
    }
    return 0;
}

/* The index of the master that serves slot, or -1. */
static int master_of_slot(const masters *m, int slot) {
    const fleet_redis_addr *a = fleet_slot_map_master(m->map, slot);
    for (int j = 0; a && j < m->n; j++)
        if (m->addr[j].port == a->port && strcmp(m->addr[j].host, a->host) == 0) return j;
    return -1;
}

static int master_of_tag(const masters *m, const char *tag) {
    return master_of_slot(m, fleet_key_slot(tag, strlen(tag)));
}

/* The smallest tag number >= 1 that no shard of s uses and whose tag lands on master. */
static int master_of_slot_cb(int slot, void *arg) { return master_of_slot(arg, slot); }
static long free_tag_on(const fleet_shards *s, const masters *m, int master) {
    return fleet_shards_free_tag(s, 1, master_of_slot_cb, (void *)m, master);
}

/* ------------------------------------------------------------------ show ---------------- */

static int shards_show(redisContext *c, const ctl_globals *g, fleet_shards *s, const masters *m) {
    char text[FLEET_SHARDS_TEXT_MAX + 1];
    int found = read_text(c, s, text, sizeof text);
    if (found < 0) return CTL_EXIT_FAIL;
    char why[200];
    if (fleet_shards_parse(s, text, why, sizeof why) < 0) {
        ctl_error("the shard table at %s does not parse (%s): \"%s\"",
                  fleet_key_shards(&s->control).s, why, text);
        return CTL_EXIT_FAIL;
    }
    json_t *doc = json_pack("{s:s, s:s, s:b, s:[]}", "prefix", g->prefix, "key",
                            fleet_key_shards(&s->control).s, "stored", found == 1, "shards");
    json_t *list = json_object_get(doc, "shards");
    int rc = CTL_EXIT_OK;
    long long total_q = 0, total_r = 0;
    for (size_t i = 0; i < s->n; i++) {
        int k = s->all[i];
        const fleet_shard *sh = &s->shard[k];
        json_t *models = NULL;
        long long q, r;
        if (shard_counts(c, s, k, &models, &q, &r) < 0) {
            rc = CTL_EXIT_FAIL;
            break;
        }
        json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:o}", "k", k, "tag", sh->keys.tag,
                              "state", sh->draining ? "draining" : "active", "queued",
                              (json_int_t)q, "running", (json_int_t)r, "models", models);
        json_object_set_new(o, "tag_number", k == 0 ? json_null() : json_integer(sh->tag));
        int at = m ? master_of_tag(m, sh->keys.tag) : -1;
        json_object_set_new(o, "node",
                            at < 0 ? json_null()
                                   : json_sprintf("%s:%d", m->addr[at].host, m->addr[at].port));
        json_array_append_new(list, o);
        total_q += q;
        total_r += r;
    }
    json_object_set_new(doc, "total",
                        json_pack("{s:I, s:I}", "queued", (json_int_t)total_q, "running",
                                  (json_int_t)total_r));
    if (rc == CTL_EXIT_OK && g->json) {
        ctl_render_json(stdout, doc);
    } else if (rc == CTL_EXIT_OK) {
        printf("shard table %s: %s\n\n", fleet_key_shards(&s->control).s,
               found ? text : "none stored (one shard, 0)");
        printf("%-3s %-24s %-9s %-21s %8s %8s  %s\n", "K", "TAG", "STATE", "NODE", "QUEUED",
               "RUNNING", "MODEL QUEUED/RUNNING/STREAM");
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o) {
            printf("%-3lld %-24s %-9s %-21s %8lld %8lld ",
                   json_integer_value(json_object_get(o, "k")), ctl_jstr(o, "tag"),
                   ctl_jstr(o, "state"), m ? ctl_jstr(o, "node") : "-",
                   json_integer_value(json_object_get(o, "queued")),
                   json_integer_value(json_object_get(o, "running")));
            const char *model;
            json_t *mc;
            json_object_foreach(json_object_get(o, "models"), model, mc)
                printf(" %s %lld/%lld/%lld", model,
                       json_integer_value(json_object_get(mc, "queued")),
                       json_integer_value(json_object_get(mc, "running")),
                       json_integer_value(json_object_get(mc, "stream")));
            putchar('\n');
        }
        printf("%-3s %-24s %-9s %-21s %8lld %8lld\n", "", "total", "", "", total_q, total_r);
    }
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------------ changing ------------ */

/* One change to the table: applies itself to s (the table as read) and returns 1 to write
 * s, 0 when there is nothing to write (already so: *note says why), or -1 after printing
 * why it is refused. */
typedef int (*shards_change_fn)(fleet_shards *s, bool stored, void *arg, const char **note);

/* Sends WATCH key. Returns 0, or -1 after printing. A WATCH left when a change is refused
 * needs no UNWATCH: nothing is sent under it but reads, and it ends with the connection,
 * which this run closes. */
static int watch(redisContext *c, const char *key) {
    redisReply *r = ctl_redis_cmd_ok(c, "WATCH", 2, (const char *const[]){"WATCH", key});
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

/* MULTI, SET key text, EXEC. Returns 1 when it committed, 0 when a change of the watched
 * key aborted it, -1 after printing an error. */
static int exec_set(redisContext *c, const char *key, const char *text) {
    if (!(c = ctl_redis_conn_for(c, key))) return -1;
    const char *set[] = {"SET", key, text};
    size_t lens[] = {3, strlen(key), strlen(text)};
    if (redisAppendCommand(c, "MULTI") != REDIS_OK ||
        redisAppendCommandArgv(c, 3, set, lens) != REDIS_OK ||
        redisAppendCommand(c, "EXEC") != REDIS_OK) {
        ctl_error("redis: %s", c->errstr[0] ? c->errstr : "out of memory");
        return -1;
    }
    int rc = 1;
    char err[256] = "";
    for (int i = 0; i < 3; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            ctl_error("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && !err[0]) snprintf(err, sizeof err, "%s", r->str);
        if (i == 2 && r->type == REDIS_REPLY_NIL) rc = 0;
        if (i == 2 && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ERROR && !err[0])
            snprintf(err, sizeof err, "%s", r->element[0]->str);
        freeReplyObject(r);
    }
    if (err[0]) {
        ctl_error("redis: MULTI/SET/EXEC: %s", err);
        ctl_redis_explain(err);
        return -1;
    }
    return rc;
}

/* Announces a changed table on the events channel. */
static void announce(redisContext *c, const fleet_shards *s) {
    fleet_key ch = fleet_key_events(&s->control);
    redisReply *r = ctl_redis_cmd_ok(c, "PUBLISH", 3,
                                     (const char *const[]){"PUBLISH", ch.s, FLEET_EVENT_SHARDS});
    if (!r)
        fprintf(stderr, "fleetctl: gateways were not told at once; workers and gateways load the "
                        "table again within a few seconds\n");
    freeReplyObject(r);
}

/* Reads the table under WATCH, applies fn and writes the result, again from a fresh read
 * when another writer changed it meanwhile. On success s holds the table as written (or as
 * read, when fn had nothing to change) and *changed says which. Returns 0, or
 * CTL_EXIT_FAIL after printing why. */
static int change_table(redisContext *c, fleet_shards *s, shards_change_fn fn, void *arg,
                        bool *changed, const char **note) {
    fleet_key key = fleet_key_shards(&s->control);
    *changed = false;
    *note = NULL;
    for (int tries = 0; tries < SHARDS_CHANGE_TRIES; tries++) {
        if (watch(c, key.s) < 0) return CTL_EXIT_FAIL;
        char text[FLEET_SHARDS_TEXT_MAX + 1], why[200];
        int found = read_text(c, s, text, sizeof text);
        if (found >= 0 && fleet_shards_parse(s, text, why, sizeof why) < 0) {
            ctl_error("the shard table at %s does not parse (%s): \"%s\"; not changed", key.s, why,
                      text);
            found = -1;
        }
        int act = found < 0 ? -1 : fn(s, found == 1, arg, note);
        if (act <= 0) return act < 0 ? CTL_EXIT_FAIL : 0;
        char out[FLEET_SHARDS_TEXT_MAX + 1];
        if (fleet_shards_format(s, out, sizeof out) < 0) {
            ctl_error("the new shard table does not fit in %d bytes", FLEET_SHARDS_TEXT_MAX);
            return CTL_EXIT_FAIL;
        }
        int done = exec_set(c, key.s, out);
        if (done < 0) return CTL_EXIT_FAIL;
        if (done == 1) {
            *changed = true;
            announce(c, s);
            return 0;
        }
    }
    ctl_error("the shard table kept changing under this command (%d tries); run it again",
              SHARDS_CHANGE_TRIES);
    return CTL_EXIT_FAIL;
}

/* Prints the outcome of a change: the table's text as now stored, or the note. */
static int report(redisContext *c, const ctl_globals *g, const fleet_shards *s, bool changed,
                  const char *note, const char *what) {
    (void)c;
    char text[FLEET_SHARDS_TEXT_MAX + 1];
    if (fleet_shards_format(s, text, sizeof text) < 0) text[0] = '\0';
    if (g->json) {
        json_t *o = json_pack("{s:b, s:s}", "changed", changed, "table", text);
        if (note) json_object_set_new(o, "note", json_string(note));
        ctl_render_json(stdout, o);
        json_decref(o);
    } else if (changed) {
        printf("%s; the table is now: %s\n", what, text);
    } else {
        printf("%s; nothing changed (table: %s)\n", note ? note : "already so", text);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ init ---------------- */

typedef struct init_arg {
    long n;
    const masters *m; /* NULL without a cluster */
} init_arg;

static int change_init(fleet_shards *s, bool stored, void *arg, const char **note) {
    (void)note;
    const init_arg *a = arg;
    long n = a->n;
    if (stored) {
        char text[FLEET_SHARDS_TEXT_MAX + 1];
        fleet_shards_format(s, text, sizeof text);
        ctl_error("a shard table exists already: %s (fleetctl shards add|drain|activate|remove "
                  "change it)",
                  text);
        return -1;
    }
    if (!a->m) {
        for (int k = 1; k < n; k++) fleet_shards_add(s, k, free_tag(s, k));
        return 1;
    }
    /* Shard 0 stays where "{prefix}" is; the others go to the other masters first. */
    int home = master_of_tag(a->m, s->control.tag), nm = a->m->n;
    if (home < 0) {
        ctl_error("no master serves the slot of %s (is the cluster complete?)", s->control.tag);
        return -1;
    }
    for (int k = 1; k < n; k++) {
        int master = (home + k) % nm;
        long tag = free_tag_on(s, a->m, master);
        if (tag < 0 || fleet_shards_add(s, k, tag) < 0) {
            ctl_error("no free tag for shard %d on master %s:%d", k, a->m->addr[master].host,
                      a->m->addr[master].port);
            return -1;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ add ----------------- */

typedef struct add_arg {
    long tag;         /* -1: pick one */
    const masters *m; /* NULL without a cluster */
    int k;            /* out: the shard added */
} add_arg;

/* On a cluster: the master that holds the fewest shards of s now (the first such in map
 * order), or -1 after printing why. */
static int emptiest_master(const fleet_shards *s, const masters *m) {
    int count[FLEET_ROUTER_NODES_MAX] = {0};
    for (size_t i = 0; i < s->n; i++) {
        int j = master_of_tag(m, s->shard[s->all[i]].keys.tag);
        if (j >= 0) count[j]++;
    }
    int best = -1;
    for (int j = 0; j < m->n; j++)
        if (best < 0 || count[j] < count[best]) best = j;
    if (best < 0) ctl_error("the cluster's slot map names no master");
    return best;
}

static int change_add(fleet_shards *s, bool stored, void *arg, const char **note) {
    (void)stored;
    (void)note;
    add_arg *a = arg;
    int k = free_k(s);
    if (k < 0) {
        ctl_error("the table has %d shards already, the most a job id can name", FLEET_SHARDS_MAX);
        return -1;
    }
    long tag = a->tag;
    if (tag < 0 && !a->m) tag = free_tag(s, k);
    if (tag < 0) {
        int master = emptiest_master(s, a->m);
        if (master < 0) return -1;
        if ((tag = free_tag_on(s, a->m, master)) < 0) {
            ctl_error("no free tag on master %s:%d", a->m->addr[master].host,
                      a->m->addr[master].port);
            return -1;
        }
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->all[i] > 0 && s->shard[s->all[i]].tag == tag) {
            ctl_error("tag %ld is shard %d's already", tag, s->all[i]);
            return -1;
        }
    if (fleet_shards_add(s, k, tag) < 0) {
        ctl_error("shard %d with tag %ld could not be added", k, tag);
        return -1;
    }
    a->k = k;
    return 1;
}

/* A model paused on the fleet is paused on each shard (pause.lua: <model>:paused_ms in
 * the shard's queues hash): the new shard k takes the marks of another shard, so that
 * workers, which read the table every few seconds, never claim a paused model's jobs
 * there. Returns CTL_EXIT_OK, or CTL_EXIT_FAIL after printing why (the shard stays added:
 * `fleetctl model pause` sets the marks on every shard again). */
static int copy_pause_marks(redisContext *c, const fleet_shards *s, int k) {
    int from = -1;
    for (size_t i = 0; i < s->n && from < 0; i++)
        if (s->all[i] != k) from = s->all[i];
    if (from < 0) return CTL_EXIT_OK;
    fleet_key src = fleet_key_queues(&s->shard[from].keys),
              dst = fleet_key_queues(&s->shard[k].keys);
    redisReply *h = ctl_redis_cmd_ok(c, "HGETALL", 2, (const char *const[]){"HGETALL", src.s});
    if (!h) return CTL_EXIT_FAIL;
    int rc = CTL_EXIT_OK;
    static const char mark[] = FLEET_KEY_PAUSED_SUFFIX;
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements && rc == CTL_EXIT_OK;
         i += 2) {
        const char *f = h->element[i]->str;
        size_t n = strlen(f);
        if (n <= sizeof mark - 1 || strcmp(f + n - (sizeof mark - 1), mark) != 0) continue;
        redisReply *w = ctl_redis_cmd_ok(c, "HSET", 4,
                                         (const char *const[]){"HSET", dst.s, f,
                                                               h->element[i + 1]->str});
        if (!w) {
            ctl_error("shard %d was added, but the pause of '%.*s' could not be copied to it: run "
                      "fleetctl model pause again",
                      k, (int)(n - (sizeof mark - 1)), f);
            rc = CTL_EXIT_FAIL;
        } else {
            freeReplyObject(w);
        }
    }
    freeReplyObject(h);
    return rc;
}

/* ------------------------------------------------------------------ drain, activate ----- */

typedef struct state_arg {
    int k;
    bool draining;
} state_arg;

static int change_state(fleet_shards *s, bool stored, void *arg, const char **note) {
    (void)stored;
    const state_arg *a = arg;
    if (!s->shard[a->k].used) {
        ctl_error("the table has no shard %d (fleetctl shards show lists them)", a->k);
        return -1;
    }
    if (s->shard[a->k].draining == a->draining) {
        *note = a->draining ? "the shard drains already" : "the shard is active already";
        return 0;
    }
    if (fleet_shards_set_draining(s, a->k, a->draining) < 0) {
        ctl_error("shard %d is the last active shard: new jobs need one (add or activate "
                  "another first)",
                  a->k);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------ remove -------------- */

typedef struct remove_arg {
    int k;
    redisContext *c;
} remove_arg;

/* Refuses unless shard k is in the table, drains, and holds no queued or running job. */
static int change_remove(fleet_shards *s, bool stored, void *arg, const char **note) {
    (void)stored;
    (void)note;
    const remove_arg *a = arg;
    int k = a->k;
    if (k == 0) {
        ctl_error("shard 0 is the control tag (tenants, models, workers live there): it cannot "
                  "be removed; drain it to give it no new jobs");
        return -1;
    }
    if (!s->shard[k].used) {
        ctl_error("the table has no shard %d (fleetctl shards show lists them)", k);
        return -1;
    }
    if (!s->shard[k].draining) {
        ctl_error("shard %d is active: drain it first (fleetctl shards drain %d), wait until "
                  "its jobs end, then remove it",
                  k, k);
        return -1;
    }
    json_t *models = NULL;
    long long q, r;
    if (shard_counts(a->c, s, k, &models, &q, &r) < 0) return -1;
    if (q > 0 || r > 0) {
        char detail[512] = "";
        size_t n = 0;
        const char *model;
        json_t *m;
        json_object_foreach(models, model, m) {
            long long mq = json_integer_value(json_object_get(m, "queued"));
            long long mr = json_integer_value(json_object_get(m, "running"));
            if ((mq || mr) && n < sizeof detail)
                n += (size_t)snprintf(detail + n, sizeof detail - n,
                                      "%s%s %lld queued, %lld running", n ? "; " : "", model, mq,
                                      mr);
        }
        ctl_error("shard %d still holds %lld queued and %lld running job%s (%s): not removed; "
                  "run this again once they have ended",
                  k, q, r, q + r == 1 ? "" : "s", detail);
        json_decref(models);
        return -1;
    }
    json_decref(models);
    /* Webhook deliveries still owed for the shard's jobs: its task stream (a settled task
     * is deleted from it) and its retry set, which gateways stop reading once k is gone. */
    const fleet_keys *keys = &s->shard[k].keys;
    fleet_key tasks = fleet_key_webhooks(keys), retry = fleet_key_webhook_retry(keys);
    redisReply *xl = ctl_redis_cmd_ok(a->c, "XLEN", 2, (const char *const[]){"XLEN", tasks.s});
    if (!xl) return -1;
    long long owed = xl->type == REDIS_REPLY_INTEGER ? xl->integer : 0;
    freeReplyObject(xl);
    redisReply *zc = ctl_redis_cmd_ok(a->c, "ZCARD", 2, (const char *const[]){"ZCARD", retry.s});
    if (!zc) return -1;
    long long retrying = zc->type == REDIS_REPLY_INTEGER ? zc->integer : 0;
    freeReplyObject(zc);
    if (owed > 0 || retrying > 0) {
        ctl_error("shard %d still owes webhook deliveries (%lld task%s on %s, %lld waiting to "
                  "be retried on %s): not removed; run this again once gateways delivered them",
                  k, owed, owed == 1 ? "" : "s", tasks.s, retrying, retry.s);
        return -1;
    }
    /* The table's text without k, read back (shards.h has no removal: the text is its
     * one writer-neutral form). */
    char text[FLEET_SHARDS_TEXT_MAX + 1], why[200];
    size_t n = 0;
    text[0] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        int j = s->all[i];
        if (j == k) continue;
        char tag[24] = "-";
        if (j > 0) snprintf(tag, sizeof tag, "%ld", s->shard[j].tag);
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%d:%s:%s", n ? " " : "", j, tag,
                              s->shard[j].draining ? "draining" : "active");
    }
    if (fleet_shards_parse(s, text, why, sizeof why) < 0) {
        ctl_error("the table without shard %d would not be valid (%s)", k, why);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------ command ------------- */

/* Reads K (0..7). Returns it, or -1 after printing a usage error. */
static int parse_k(const char *sub, const char *arg) {
    char *end;
    long k = strtol(arg, &end, 10);
    if (!*arg || *end || k < 0 || k >= FLEET_SHARDS_MAX) {
        char usage[32];
        snprintf(usage, sizeof usage, "%s K", sub);
        ctl_usage_error("shards", usage, "'%.32s' is not a shard number (0..%d)", arg,
                        FLEET_SHARDS_MAX - 1);
        return -1;
    }
    return (int)k;
}

static int shards_run(const ctl_globals *g, int argc, char **argv) {
    const char *sub = argv[0];
    int nargs = argc - 1;
    bool is_show = strcmp(sub, "show") == 0, is_init = strcmp(sub, "init") == 0,
         is_add = strcmp(sub, "add") == 0, is_drain = strcmp(sub, "drain") == 0,
         is_activate = strcmp(sub, "activate") == 0, is_remove = strcmp(sub, "remove") == 0;
    if (!is_show && !is_init && !is_add && !is_drain && !is_activate && !is_remove)
        return ctl_usage_error("shards", "show|init|add|drain|activate|remove ...",
                               "unknown shards subcommand '%.64s'; use show, init, add, drain, "
                               "activate or remove",
                               sub);
    int want = is_show || is_add ? 0 : 1;
    if (nargs != want)
        return ctl_usage_error("shards",
                               is_show  ? "show"
                               : is_add ? "add [--tag N]"
                                        : "K",
                               "shards %s takes %s", sub, want ? "one argument" : "no arguments");
    if (opt_tag >= 0 && !is_add)
        return ctl_usage_error("shards", "add [--tag N]", "--tag belongs to shards add");
    long n = 0;
    int k = -1;
    if (is_init) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (!*argv[1] || *end || n < 1 || n > FLEET_SHARDS_MAX)
            return ctl_usage_error("shards", "init N", "'%.32s' is not a number of shards (1..%d)",
                                   argv[1], FLEET_SHARDS_MAX);
    } else if (!is_show && !is_add && (k = parse_k(sub, argv[1])) < 0) {
        return CTL_EXIT_USAGE;
    }

    fleet_keys control;
    int rc;
    redisContext *c = ctl_redis_open(g, &control, &rc);
    if (!c) return rc;
    fleet_shards s;
    fleet_shards_init(&s, g->prefix);
    masters m, *mp = NULL;
    if (ctl_redis_clustered() && (is_init || is_add || is_show)) {
        if (masters_load(&m) < 0) {
            ctl_redis_close(c);
            return CTL_EXIT_FAIL;
        }
        mp = &m;
    }
    bool changed = false;
    const char *note = NULL;
    char what[128];
    if (is_show) {
        rc = shards_show(c, g, &s, mp);
    } else if (is_init) {
        init_arg a = {.n = n, .m = mp};
        rc = change_table(c, &s, change_init, &a, &changed, &note);
        snprintf(what, sizeof what, "wrote a table of %ld shard%s", n, n == 1 ? "" : "s");
    } else if (is_add) {
        add_arg a = {.tag = opt_tag, .m = mp, .k = -1};
        rc = change_table(c, &s, change_add, &a, &changed, &note);
        if (rc == CTL_EXIT_OK && changed) rc = copy_pause_marks(c, &s, a.k);
        snprintf(what, sizeof what, "added shard %d (tag %s)", a.k,
                 a.k > 0 ? s.shard[a.k].keys.tag : "-");
    } else if (is_remove) {
        remove_arg a = {.k = k, .c = c};
        rc = change_table(c, &s, change_remove, &a, &changed, &note);
        snprintf(what, sizeof what, "removed shard %d: ids naming it are unknown jobs now", k);
    } else {
        state_arg a = {.k = k, .draining = is_drain};
        rc = change_table(c, &s, change_state, &a, &changed, &note);
        snprintf(what, sizeof what,
                 is_drain ? "shard %d drains: it takes no new job, workers still serve it"
                          : "shard %d is active: it takes new jobs",
                 k);
    }
    if (!is_show && rc == CTL_EXIT_OK) rc = report(c, g, &s, changed, note, what);
    ctl_redis_close(c);
    return rc;
}

const ctl_command ctl_cmd_shards = {
    .name = "shards",
    .args = "show|init|add|drain|activate|remove ...",
    .summary = "the shard table: which hash tags hold the fleet's jobs (reads and writes Redis "
               "directly)",
    .opts = shards_opts,
    .nopts = sizeof shards_opts / sizeof shards_opts[0],
    .min_args = 1,
    .max_args = 2,
    .run = shards_run,
    .subs = shards_subs,
    .nsubs = sizeof shards_subs / sizeof shards_subs[0],
};
