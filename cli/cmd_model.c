/* cmd_model.c: `fleetctl model add|list|remove|pause|resume|purge`: the models a fleet
 * serves, registered in Redis ({prefix}:models, fleet/model_record.h; docs/cli.md
 * "Models"), read and changed directly there (--redis-url, --prefix), like `tenant`; pause,
 * resume and purge run the scripts the gateway's admin routes run (docs/api.md, "Steering
 * a model").
 *
 * A record makes gateways without FLEET_MODELS accept jobs for the model whether or not a
 * worker runs: jobs queue until one starts (scale from zero). A worker's start registers
 * its model by itself. Each change is announced on the events channel (a line
 * "models <name>"), which makes every gateway read the records again at once.
 *
 * A fleet of several shards (fleet/shards.h) keeps each model's queue and counters on
 * every shard: list and remove sum the counters over the shards of the table, pause,
 * resume and purge run their script on each shard (the pause mark lives in each shard's
 * queues hash); the records, workers and the events channel are control keys.
 *
 * Subcommands are the rows of MODEL_SUBCOMMANDS: a new one is a row and its function
 * model_<name>(c, shards, g, argv), which gets the subcommand's own arguments, checked for
 * their count (and each name for its form) before Redis is contacted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet/job.h"
#include "fleet/model_record.h"
#include "fleet/utf8.h"
#include "redis_conn.h"
#include "render.h"
#include "tenant_cli.h" /* ctl_redis_now_ms */

#define DESCRIPTION_MAX 256

static const char *opt_description;
static bool opt_force;

static const fleet_option model_opts[] = {
    {"description", NULL, FLEET_OPT_STR, "",
     "model add: a line saying what the model is (at most 256 bytes of UTF-8)", &opt_description, 0,
     0},
    {"force", NULL, FLEET_OPT_BOOL, "false",
     "model remove: remove it although jobs are queued or running for it, or a live worker "
     "serves it",
     &opt_force, 0, 0},
};

/* ------------------------------------------------------------------ reading ------------- */

/* Runs the models script: records, live workers and counters in one read. Returns the
 * reply (caller frees) with its parts, or NULL after printing why. */
static redisReply *read_models(redisContext *c, const fleet_keys *k, const redisReply **workers,
                               const redisReply **stats, const redisReply **records) {
    fleet_cmd cmd;
    fleet_state_models(k, true, &cmd);
    redisReply *r = ctl_redis_script(c, &cmd);
    if (!r) return NULL;
    if (r->type == REDIS_REPLY_ERROR) {
        ctl_error("redis: models: %s", r->str);
        ctl_redis_explain(r->str);
    } else if (fleet_state_models_reply(r, workers, stats, records) == 0) {
        return r;
    } else {
        ctl_error("redis: models: unexpected reply");
    }
    freeReplyObject(r);
    return NULL;
}

static long live_workers(const redisReply *workers, const char *model) {
    long n = 0;
    for (size_t i = 0; i < workers->elements; i++)
        n += strcmp(workers->element[i]->element[1]->str, model) == 0;
    return n;
}

/* What the models script read on the control tag, and every shard's stats hash. */
typedef struct model_read {
    redisReply *models; /* the script's reply: owns workers, records and shard 0's stats */
    const redisReply *workers, *records;
    const redisReply *stats[FLEET_SHARDS_MAX]; /* one per shard of the table */
    redisReply *own[FLEET_SHARDS_MAX];         /* those read apart (shards k > 0) */
    size_t nstats;
} model_read;

static void model_read_free(model_read *m) {
    freeReplyObject(m->models);
    for (size_t i = 0; i < m->nstats; i++) freeReplyObject(m->own[i]);
    memset(m, 0, sizeof *m);
}

/* Reads the records, live workers and shard 0's counters in one script, then the stats
 * hash of every other shard. Returns 0, or -1 after printing why. */
static int read_all(redisContext *c, const fleet_shards *s, model_read *m) {
    memset(m, 0, sizeof *m);
    const redisReply *stats0;
    if (!(m->models = read_models(c, &s->control, &m->workers, &stats0, &m->records))) return -1;
    for (size_t i = 0; i < s->n; i++) {
        int k = s->all[i];
        if (k == 0) {
            m->stats[m->nstats++] = stats0;
            continue;
        }
        fleet_key st = fleet_key_stats(&s->shard[k].keys);
        redisReply *r = ctl_redis_cmd_ok(c, "HGETALL", 2, (const char *const[]){"HGETALL", st.s});
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r) ctl_error("redis: HGETALL %s: unexpected reply", st.s);
            freeReplyObject(r);
            model_read_free(m);
            return -1;
        }
        m->own[m->nstats] = r;
        m->stats[m->nstats++] = r;
    }
    return 0;
}

/* A model's counter summed over the shards. */
static long long counter(const model_read *m, const char *model, const char *name) {
    char field[FLEET_MODEL_MAX + 32];
    snprintf(field, sizeof field, "%s:%s", model, name);
    long long sum = 0;
    for (size_t i = 0; i < m->nstats; i++) {
        const char *v = ctl_redis_field(m->stats[i], field);
        sum += v ? strtoll(v, NULL, 10) : 0;
    }
    return sum;
}

/* The record of a model as a JSON object (an empty one for a value that is not). */
static json_t *record_json(const char *text, size_t len) {
    json_t *o = json_loadb(text, len, 0, NULL);
    if (json_is_object(o)) return o;
    json_decref(o);
    return json_object();
}

/* Announces a changed record: gateways read the records again at once. */
static void announce(redisContext *c, const fleet_keys *k, const char *model) {
    /* One events channel for the fleet: the control tag's. */
    char line[sizeof FLEET_EVENT_MODELS + FLEET_MODEL_MAX + 1];
    snprintf(line, sizeof line, FLEET_EVENT_MODELS " %s", model);
    fleet_key ch = fleet_key_events(k);
    const char *argv[] = {"PUBLISH", ch.s, line};
    redisReply *r = ctl_redis_cmd_ok(c, "PUBLISH", 3, argv);
    if (!r)
        fprintf(stderr, "fleetctl: gateways were not told at once; they read the models again "
                        "at their next submits (a submit for a model they did not accept yet "
                        "may be refused once)\n");
    freeReplyObject(r);
}

/* "2026-12-06 08:50:38 UTC" from Redis ms, or "-". */
static void format_ms(char *out, size_t len, const json_t *ms) {
    if (!json_is_integer(ms)) {
        snprintf(out, len, "-");
        return;
    }
    time_t t = (time_t)(json_integer_value(ms) / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, len, "-");
}

/* ------------------------------------------------------------------ add ----------------- */

static int model_add(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv) {
    const fleet_keys *k = &s->control;
    const char *name = argv[0];
    long long now = ctl_redis_now_ms(c);
    if (now < 0) return CTL_EXIT_FAIL;
    char *rec = fleet_model_record(now, "fleetctl", opt_description);
    if (!rec) {
        ctl_error("out of memory");
        return CTL_EXIT_FAIL;
    }
    fleet_key models = fleet_key_models(k);
    const char *set[] = {"HSETNX", models.s, name, rec};
    redisReply *r = ctl_redis_cmd_ok(c, "HSETNX", 4, set);
    free(rec);
    if (!r) return CTL_EXIT_FAIL;
    bool added = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (added) announce(c, k, name);
    const char *get[] = {"HGET", models.s, name};
    r = ctl_redis_cmd_ok(c, "HGET", 3, get);
    json_t *stored = r && r->type == REDIS_REPLY_STRING ? record_json(r->str, r->len) : NULL;
    freeReplyObject(r);
    if (!stored) {
        ctl_error("model %s: the record could not be read back", name);
        return CTL_EXIT_FAIL;
    }
    if (g->json) {
        json_t *o = json_pack("{s:s, s:b, s:O}", "model", name, "added", added, "record", stored);
        ctl_render_json(stdout, o);
        json_decref(o);
    } else if (added) {
        printf("registered model %s: gateways without FLEET_MODELS accept jobs for it now; they "
               "queue until a worker of the model starts\n",
               name);
    } else {
        char when[64];
        format_ms(when, sizeof when, json_object_get(stored, "created_ms"));
        printf("model %s is already registered (since %s, by %s); nothing changed\n", name, when,
               ctl_jstr(stored, "registered_by"));
    }
    json_decref(stored);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ list ---------------- */

/* One object per model: the registered ones, then those only live workers serve (a
 * worker of a release before registration, or a record removed while it runs). */
static json_t *model_list(const model_read *m) {
    const redisReply *workers = m->workers, *records = m->records;
    json_t *list = json_array(), *seen = json_object();
    for (size_t i = 0; i + 1 < records->elements; i += 2) {
        const char *name = records->element[i]->str;
        if (!fleet_model_name_valid(name)) continue;
        json_t *rec = record_json(records->element[i + 1]->str, records->element[i + 1]->len);
        json_t *o = json_pack("{s:s, s:b}", "name", name, "registered", 1);
        json_object_update_missing(o, rec);
        json_decref(rec);
        json_array_append_new(list, o);
        json_object_set_new(seen, name, json_true());
    }
    for (size_t i = 0; i < workers->elements; i++) {
        const char *name = workers->element[i]->element[1]->str;
        if (!fleet_model_name_valid(name) || json_object_get(seen, name)) continue;
        json_array_append_new(list, json_pack("{s:s, s:b}", "name", name, "registered", 0));
        json_object_set_new(seen, name, json_true());
    }
    json_decref(seen);
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
        const char *name = ctl_jstr(o, "name");
        json_object_set_new(o, "workers", json_integer(live_workers(workers, name)));
        json_object_set_new(o, "queued", json_integer(counter(m, name, "queued")));
        json_object_set_new(o, "running", json_integer(counter(m, name, "running")));
    }
    return list;
}

static int model_list_cmd(redisContext *c, const fleet_shards *s, const ctl_globals *g,
                          char **argv) {
    (void)argv;
    model_read m;
    if (read_all(c, s, &m) < 0) return CTL_EXIT_FAIL;
    json_t *list = model_list(&m);
    model_read_free(&m);
    if (g->json) {
        ctl_render_json(stdout, list);
    } else if (json_array_size(list) == 0) {
        printf("no models under prefix '%s' (fleetctl model add NAME, or a worker's start, "
               "registers one)\n",
               g->prefix);
    } else {
        printf("%-20s %7s %7s %7s  %-23s  %s\n", "MODEL", "WORKERS", "QUEUED", "RUNNING",
               "REGISTERED", "BY / DESCRIPTION");
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o) {
            char when[64];
            bool reg = json_is_true(json_object_get(o, "registered"));
            if (reg) format_ms(when, sizeof when, json_object_get(o, "created_ms"));
            else snprintf(when, sizeof when, "no (live workers only)");
            const char *desc = ctl_jstr(o, "description");
            printf("%-20s %7lld %7lld %7lld  %-23s  %s%s%s\n", ctl_jstr(o, "name"),
                   json_integer_value(json_object_get(o, "workers")),
                   json_integer_value(json_object_get(o, "queued")),
                   json_integer_value(json_object_get(o, "running")), when,
                   ctl_jstr(o, "registered_by"), *desc ? ": " : "", desc);
        }
    }
    json_decref(list);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ remove -------------- */

static int model_remove(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv) {
    const fleet_keys *k = &s->control;
    const char *name = argv[0];
    model_read m;
    if (read_all(c, s, &m) < 0) return CTL_EXIT_FAIL;
    bool registered = ctl_redis_field(m.records, name) != NULL;
    long live = live_workers(m.workers, name);
    long long queued = counter(&m, name, "queued"), running = counter(&m, name, "running");
    model_read_free(&m);
    redisReply *r;
    if (!registered) {
        ctl_error("no model %s is registered under prefix '%s' (fleetctl model list shows them)",
                  name, g->prefix);
        return CTL_EXIT_FAIL;
    }
    if (!opt_force && (queued > 0 || running > 0 || live > 0)) {
        ctl_error("model %s has %lld queued and %lld running jobs and %ld live worker%s: not "
                  "removed. Let them finish and stop its workers, or remove it anyway with "
                  "--force (its queued jobs then stay queued, and run only if a worker of the "
                  "model starts)",
                  name, queued, running, live, live == 1 ? "" : "s");
        return CTL_EXIT_FAIL;
    }
    fleet_key models = fleet_key_models(k);
    const char *del[] = {"HDEL", models.s, name};
    r = ctl_redis_cmd_ok(c, "HDEL", 3, del);
    if (!r) return CTL_EXIT_FAIL;
    bool removed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (removed) announce(c, k, name);
    if (g->json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I}", "model", name, "removed", removed,
                              "queued", (json_int_t)queued, "running", (json_int_t)running,
                              "workers", (json_int_t)live);
        ctl_render_json(stdout, o);
        json_decref(o);
    } else if (!removed) {
        printf("model %s was removed meanwhile; nothing changed\n", name);
    } else {
        printf("removed model %s: gateways without FLEET_MODELS refuse new jobs for it", name);
        if (live > 0)
            printf(" once its %ld live worker%s stop%s (a worker's start registers it again)", live,
                   live == 1 ? "" : "s", live == 1 ? "s" : "");
        printf("\n");
        if (queued > 0)
            printf("its %lld queued job%s stay%s queued until a worker of the model takes "
                   "%s, or expire%s\n",
                   queued, queued == 1 ? "" : "s", queued == 1 ? "s" : "",
                   queued == 1 ? "it" : "them", queued == 1 ? "s" : "");
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ steering ------------ */

/* model pause|resume NAME: the pause script (state.h; shared/scripts/pause.lua) on every
 * shard, as POST /v1/models/{model}/pause|resume runs it. A failure part way leaves the
 * shards before it changed: running the command again finishes it (each step is
 * idempotent). */
static int pause_or_resume(redisContext *c, const fleet_shards *s, const ctl_globals *g,
                           const char *name, bool pause) {
    /* The pause mark lives with the model's streams on each shard (pause.lua); whether
     * the model is registered is its record's, a control key. */
    fleet_key models = fleet_key_models(&s->control);
    redisReply *has = ctl_redis_cmd_ok(c, "HEXISTS", 3,
                                       (const char *const[]){"HEXISTS", models.s, name});
    if (!has) return CTL_EXIT_FAIL;
    bool registered = has->type == REDIS_REPLY_INTEGER && has->integer == 1;
    freeReplyObject(has);
    if (!registered) {
        ctl_error("model %s is not registered (fleetctl model add %s)", name, name);
        return CTL_EXIT_FAIL;
    }
    long long paused_ms = 0, requeued = 0;
    for (size_t i = 0; i < s->n; i++) {
        int k = s->all[i];
        fleet_cmd cmd;
        fleet_state_pause(&s->shard[k].keys, name, pause, &cmd);
        redisReply *r = ctl_redis_script(c, &cmd);
        if (!r) return CTL_EXIT_FAIL;
        long long p = 0, q = 0;
        int found = fleet_state_pause_reply(r, &p, &q);
        freeReplyObject(r);
        if (found < 0) {
            ctl_error("model %s: unexpected answer from the pause script on shard %d", name, k);
            return CTL_EXIT_FAIL;
        }
        /* The earliest mark: when the model was first paused on any shard. */
        if (p > 0 && (paused_ms == 0 || p < paused_ms)) paused_ms = p;
        requeued += q;
    }
    if (g->json) {
        json_t *o = json_pack("{s:s, s:b}", "model", name, "paused", paused_ms > 0);
        if (paused_ms > 0) json_object_set_new(o, "paused_ms", json_integer(paused_ms));
        if (!pause) json_object_set_new(o, "requeued", json_integer(requeued));
        ctl_render_json(stdout, o);
        json_decref(o);
    } else if (pause) {
        printf("model %s paused: its jobs queue, no worker takes one until "
               "`fleetctl model resume %s`\n",
               name, name);
    } else {
        printf("model %s resumed: workers take its jobs again (%lld read while paused queued "
               "again)\n",
               name, requeued);
    }
    return CTL_EXIT_OK;
}

static int model_pause(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv) {
    return pause_or_resume(c, s, g, argv[0], true);
}

static int model_resume(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv) {
    return pause_or_resume(c, s, g, argv[0], false);
}

/* model purge NAME: the purge script (shared/scripts/purge.lua) on each shard until its
 * queue is empty, 250 jobs a call, as POST /v1/models/{model}/purge runs it. */
static int model_purge(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv) {
    const char *name = argv[0];
    long long total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const fleet_keys *k = &s->shard[s->all[i]].keys;
        char cursor[48] = "";
        for (bool more = true; more;) {
            fleet_cmd cmd;
            fleet_state_purge(k, name, cursor, 250, &cmd);
            redisReply *r = ctl_redis_script(c, &cmd);
            if (!r) return CTL_EXIT_FAIL;
            long long n = 0;
            const char *next = "";
            if (fleet_state_purge_reply(r, &n, &next, &more) < 0 || strlen(next) >= sizeof cursor) {
                freeReplyObject(r);
                ctl_error("model %s: unexpected answer from the purge script (%lld cancelled so "
                          "far)",
                          name, total);
                return CTL_EXIT_FAIL;
            }
            snprintf(cursor, sizeof cursor, "%s", next);
            total += n;
            freeReplyObject(r);
        }
    }
    if (g->json) {
        json_t *o = json_pack("{s:s, s:I}", "model", name, "cancelled", (json_int_t)total);
        ctl_render_json(stdout, o);
        json_decref(o);
    } else {
        printf("model %s: %lld queued jobs cancelled\n", name, total);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ command ------------- */

typedef int (*model_fn)(redisContext *c, const fleet_shards *s, const ctl_globals *g, char **argv);

/* X(name, function, arguments, takes a model name, summary) */
#define MODEL_SUBCOMMANDS(X)                                                                 \
    X("add", model_add, "NAME [--description TEXT]", 1,                                      \
      "register a model: gateways accept jobs for it with no worker running (they queue)")   \
    X("list", model_list_cmd, "", 0,                                                         \
      "the registered models (and those only live workers serve): workers, queued, running") \
    X("remove", model_remove, "NAME [--force]", 1,                                           \
      "unregister a model; refused while jobs are queued or running for it or a worker "     \
      "serves it, unless --force")                                                           \
    X("pause", model_pause, "NAME", 1,                                                       \
      "stop workers taking the model's jobs (they still queue) until resume")                \
    X("resume", model_resume, "NAME", 1, "let workers take the model's jobs again")          \
    X("purge", model_purge, "NAME", 1, "cancel every queued job of the model (running ones go on)")

#define AS_HELP(n, f, a, named, s) {n, a, s},
#define AS_SUB(n, f, a, named, s) {n, f, named},

static const ctl_subcommand model_help[] = {MODEL_SUBCOMMANDS(AS_HELP)};

typedef struct model_sub {
    const char *name;
    model_fn run;
    int named; /* 1: takes exactly one model name; 0: no arguments */
} model_sub;

static const model_sub model_subs[] = {MODEL_SUBCOMMANDS(AS_SUB)};
#define N_SUBS (sizeof model_subs / sizeof *model_subs)

/* Checks the subcommand's arguments and options before anything touches Redis. Returns
 * the subcommand, or NULL after printing why (usage exit code). */
static const model_sub *check_args(const char *sub, int argc, char **argv) {
    const model_sub *s = NULL;
    for (size_t i = 0; i < N_SUBS; i++)
        if (strcmp(sub, model_subs[i].name) == 0) s = &model_subs[i];
    if (!s) {
        ctl_usage_error("model", "add|list|remove|pause|resume|purge ...",
                        "unknown model subcommand '%.64s'", sub);
        return NULL;
    }
    const char *usage = model_help[s - model_subs].args;
    char line[96];
    snprintf(line, sizeof line, "%s%s%s", s->name, *usage ? " " : "", usage);
    if (argc != s->named) {
        ctl_usage_error("model", line, "model %s takes %s", s->name,
                        s->named ? "one model name" : "no arguments");
        return NULL;
    }
    if (s->named && !fleet_model_name_valid(argv[0])) {
        ctl_usage_error("model", line,
                        "'%.80s' is not a model name (1-64 characters of a-z 0-9 _ -)", argv[0]);
        return NULL;
    }
    if (opt_description[0] && s->run != model_add) {
        ctl_usage_error("model", line, "--description belongs to model add");
        return NULL;
    }
    size_t dl = strlen(opt_description);
    if (dl > DESCRIPTION_MAX || !fleet_utf8_valid(opt_description, dl)) {
        ctl_usage_error("model", line, "--description is at most %d bytes of UTF-8",
                        DESCRIPTION_MAX);
        return NULL;
    }
    if (opt_force && s->run != model_remove) {
        ctl_usage_error("model", line, "--force belongs to model remove");
        return NULL;
    }
    return s;
}

static int model_run(const ctl_globals *g, int argc, char **argv) {
    const model_sub *s = check_args(argv[0], argc - 1, argv + 1);
    if (!s) return CTL_EXIT_USAGE;
    fleet_keys keys;
    int rc;
    redisContext *c = ctl_redis_open(g, &keys, &rc);
    if (!c) return rc;
    fleet_shards shards;
    rc = ctl_redis_shards(c, g, &shards) < 0 ? CTL_EXIT_FAIL : s->run(c, &shards, g, argv + 1);
    ctl_redis_close(c);
    return rc;
}

const ctl_command ctl_cmd_model = {
    .name = "model",
    .args = "add|list|remove ...",
    .summary = "the models the fleet serves, registered in Redis (reads and writes Redis "
               "directly, like tenant)",
    .opts = model_opts,
    .nopts = sizeof model_opts / sizeof *model_opts,
    .min_args = 1,
    .max_args = 2,
    .run = model_run,
    .subs = model_help,
    .nsubs = sizeof model_help / sizeof *model_help,
};
