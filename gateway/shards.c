/* shards.c: the gateway's copy of the shard table and the choice of a submit's shard
 * (shards.h). */
#include "shards.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet/cluster.h"
#include "fleet/log.h"
#include "http.h"
#include "redis.h"

/* The queue position each shard last answered for a model (the load of the next choice).
 * A fixed table: a model whose slot another takes starts from "unknown" again, which only
 * makes one choice less informed. */
#define LOAD_SLOTS 128
typedef struct model_load {
    char model[FLEET_MODEL_MAX + 1];
    long long pos[FLEET_SHARDS_MAX];
} model_load;

struct gw_shard_table {
    gw *g;
    long want; /* FLEET_SHARDS; 0: not set */
    bool loaded;
    bool reading, again;
    char bad[512]; /* the last table read did not parse: why */
    long retry_ms; /* the wait before a failed read is tried again (backs off) */
    struct event *timer;
    uint64_t rand; /* xorshift state: the two random shards of a submit */
    model_load loads[LOAD_SLOTS];
};

/* ------------------------------------------------------------ reading the table ----- */

static void retry_later(gw_shard_table *t) {
    long ms = t->retry_ms;
    t->retry_ms = ms * 2 > GW_SHARDS_RETRY_MAX_MS ? GW_SHARDS_RETRY_MAX_MS : ms * 2;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

static void read_done(gw_shard_table *t) {
    t->reading = false;
    t->retry_ms = GW_SHARDS_RETRY_MS;
    if (t->again) {
        t->again = false;
        gw_shards_refresh(t);
    }
}

/* Takes a table's text (NULL: the key is absent) as this gateway's. */
static void take(gw_shard_table *t, const char *text) {
    gw *g = t->g;
    fleet_shards s = g->shards;
    char why[256];
    if (fleet_shards_parse(&s, text, why, sizeof why) < 0) {
        char key[FLEET_KEY_MAX];
        snprintf(key, sizeof key, "%s", fleet_key_shards(&g->shards.control).s);
        fleet_log(FLEET_LOG_ERROR, "shard table unreadable: keeping the one in use", "key", key,
                  "error", why, NULL);
        snprintf(t->bad, sizeof t->bad, "the shard table at %s does not parse (%s)", key, why);
        return;
    }
    char before[FLEET_SHARDS_TEXT_MAX], after[FLEET_SHARDS_TEXT_MAX];
    fleet_shards_format(&g->shards, before, sizeof before);
    fleet_shards_format(&s, after, sizeof after);
    if (!t->loaded || strcmp(before, after) != 0)
        fleet_log(FLEET_LOG_INFO, "shard table", "shards", after, NULL);
    g->shards = s;
    t->bad[0] = '\0';
    t->loaded = true;
}

static void send_get(gw_shard_table *t);

/* SET NX answered (OK: ours; nil: another gateway's came first): read what is there. */
static void on_set(redisReply *rep, void *arg) {
    gw_shard_table *t = arg;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        if (rep)
            fleet_log(FLEET_LOG_WARN, "shard table: writing it was refused; trying again", "reply",
                      rep->str, NULL);
        t->reading = false;
        retry_later(t);
        return;
    }
    send_get(t);
}

static void send_set(gw_shard_table *t, const fleet_shards *s) {
    char text[FLEET_SHARDS_TEXT_MAX];
    int len = fleet_shards_format(s, text, sizeof text);
    fleet_key k = fleet_key_shards(&t->g->shards.control);
    const char *argv[4] = {"SET", k.s, text, "NX"};
    size_t lens[4] = {3, strlen(k.s), (size_t)(len < 0 ? 0 : len), 2};
    fleet_log(FLEET_LOG_INFO, "shard table absent: writing one (first writer wins)", "shards", text,
              NULL);
    if (len < 0 || gw_redis_command(t->g->redis, 4, argv, lens, on_set, t) < 0) {
        t->reading = false;
        retry_later(t);
    }
}

/* Without a cluster: shard k has tag k. */
static void write_plain(gw_shard_table *t) {
    fleet_shards s;
    fleet_shards_init(&s, t->g->shards.prefix);
    for (int k = 1; k < t->want && k < FLEET_SHARDS_MAX; k++) fleet_shards_add(&s, k, k);
    send_set(t, &s);
}

/* The masters of a slot map, each once, in the order of their first range. */
#define MASTERS_MAX 64
typedef struct masters {
    const fleet_slot_map *map;
    int n;
    const fleet_redis_addr *addr[MASTERS_MAX];
} masters;

static int master_index(const masters *m, const fleet_redis_addr *a) {
    for (int i = 0; i < m->n; i++)
        if (m->addr[i]->port == a->port && strcmp(m->addr[i]->host, a->host) == 0) return i;
    return -1;
}

static int master_of_slot(int slot, void *arg) {
    const masters *m = arg;
    const fleet_redis_addr *a = fleet_slot_map_master(m->map, slot);
    return a ? master_index(m, a) : -1;
}

/* On a cluster: shard 0 stays where "{prefix}" is; shards 1.. go to the other masters,
 * then round-robin over all of them (shard 0's last). */
static void on_slots(redisReply *rep, void *arg) {
    gw_shard_table *t = arg;
    fleet_slot_map map = {0};
    char why[256] = "no reply";
    if (!rep ||
        fleet_slot_map_parse(rep, t->g->redis_target.seeds[0].host, &map, why, sizeof why) < 0 ||
        !fleet_slot_map_complete(&map)) {
        fleet_log(FLEET_LOG_WARN, "shard table: no complete slot map yet; trying again", "error",
                  rep ? why : "no reply", NULL);
        fleet_slot_map_free(&map);
        t->reading = false;
        retry_later(t);
        return;
    }
    masters ms = {.map = &map};
    for (size_t i = 0; i < map.n && ms.n < (int)(sizeof ms.addr / sizeof *ms.addr); i++)
        if (master_index(&ms, &map.ranges[i].master) < 0) ms.addr[ms.n++] = &map.ranges[i].master;
    fleet_shards s;
    fleet_shards_init(&s, t->g->shards.prefix);
    const char *ctl = s.control.tag;
    int home = master_of_slot(fleet_key_slot(ctl, strlen(ctl)), &ms);
    long n = t->want > 0 ? t->want : ms.n;
    int order[MASTERS_MAX], norder = 0;
    for (int m = 0; m < ms.n; m++)
        if (m != home) order[norder++] = m;
    if (home >= 0) order[norder++] = home;
    for (int k = 1; k < n && k < FLEET_SHARDS_MAX && norder > 0; k++) {
        long tag = fleet_shards_free_tag(&s, 1, master_of_slot, &ms, order[(k - 1) % norder]);
        if (tag < 0 || fleet_shards_add(&s, k, tag) < 0) break;
    }
    fleet_slot_map_free(&map);
    send_set(t, &s);
}

static void write_table(gw_shard_table *t) {
    if (t->g->redis_target.nseeds == 0) {
        write_plain(t);
        return;
    }
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    if (gw_redis_command(t->g->redis, 2, argv, lens, on_slots, t) < 0) {
        t->reading = false;
        retry_later(t);
    }
}

static void on_get(redisReply *rep, void *arg) {
    gw_shard_table *t = arg;
    if (!rep || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
        if (rep && t->retry_ms == GW_SHARDS_RETRY_MS)
            fleet_log(FLEET_LOG_WARN, "shard table: unexpected answer to GET; trying again",
                      "reply", rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string", NULL);
        t->reading = false;
        retry_later(t);
        return;
    }
    if (rep->type == REDIS_REPLY_NIL && (t->want > 1 || t->g->redis_target.nseeds > 0)) {
        write_table(t); /* still reading: the GET after the SET ends it */
        return;
    }
    take(t, rep->type == REDIS_REPLY_STRING ? rep->str : NULL);
    read_done(t);
}

static void send_get(gw_shard_table *t) {
    fleet_key k = fleet_key_shards(&t->g->shards.control);
    const char *argv[2] = {"GET", k.s};
    size_t lens[2] = {3, strlen(k.s)};
    if (gw_redis_command(t->g->redis, 2, argv, lens, on_get, t) < 0) {
        t->reading = false;
        retry_later(t); /* Redis not ready */
    }
}

void gw_shards_refresh(gw_shard_table *t) {
    if (t->reading) {
        t->again = true;
        return;
    }
    t->reading = true;
    send_get(t);
}

void gw_shards_wake(void *arg) { gw_shards_refresh(arg); }

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_shards_refresh(arg);
}

const fleet_keys *gw_job_keys(gw_req *r, const char *id) {
    const fleet_keys *k = fleet_shards_keys_of_id(&r->g->shards, id);
    if (!k)
        gw_reply_problem(r, GW_PROBLEM_JOB_NOT_FOUND,
                         "no job with id '%.64s' (unknown, or expired after its ttl_s)", id);
    return k;
}

const char *gw_shards_unready(const gw_shard_table *t) {
    if (t->bad[0]) return t->bad;
    if (!t->loaded) return "the shard table has not been read from Redis yet";
    return NULL;
}

bool gw_shards_loaded(const gw_shard_table *t) { return t->loaded; }

gw_shard_table *gw_shards_new(gw *g, long want) {
    gw_shard_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->g = g;
    t->want = want;
    t->timer = evtimer_new(g->base, on_tick, t);
    if (!t->timer) {
        free(t);
        return NULL;
    }
    t->rand = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)t;
    if (!t->rand) t->rand = 1;
    t->retry_ms = GW_SHARDS_RETRY_MS;
    retry_later(t); /* the first read, once Redis is ready */
    return t;
}

void gw_shards_free(gw_shard_table *t) {
    if (!t) return;
    if (t->timer) event_free(t->timer);
    free(t);
}

/* ------------------------------------------------------------ placing a submit ------ */

long long gw_shard_share(const gw *g, int k, long long total, const char *tenant) {
    const fleet_shards *sh = &g->shards;
    size_t n = sh->n_active;
    if (total <= 0 || n == 0) return 0;
    if (n == 1 && sh->active[0] == k) return total;
    for (size_t i = 0; tenant && i < n; i++)
        if (sh->active[i] == k)
            return fleet_shard_share(total, n, i, fleet_crc16(tenant, strlen(tenant)));
    return total / (long long)n;
}

static uint64_t next_rand(gw_shard_table *t) {
    uint64_t x = t->rand; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return t->rand = x;
}

static model_load *load_of(gw_shard_table *t, const char *model, bool claim) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *p = model; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    model_load *l = &t->loads[h % LOAD_SLOTS];
    if (strcmp(l->model, model) == 0) return l;
    if (!claim) return NULL;
    memset(l, 0, sizeof *l);
    snprintf(l->model, sizeof l->model, "%s", model);
    return l;
}

/* The submit of pl->s as active shard number i enforces it: its share of each limit. */
static void shared_limits(const fleet_shards *sh, const fleet_submit *s, size_t i,
                          fleet_submit *out) {
    size_t n = sh->n_active;
    *out = *s;
    uint32_t st = fleet_crc16(s->tenant, strlen(s->tenant));
    uint32_t sm = fleet_crc16(s->model, strlen(s->model));
    out->max_active = (long)fleet_shard_share(s->max_active, n, i, st);
    if (s->rate > 0 && s->burst > 0) {
        out->burst = (long)fleet_shard_share(s->burst, n, i, st);
        out->rate = s->rate * (double)out->burst / (double)s->burst;
    }
    out->max_queue = (long)fleet_shard_share(s->max_queue, n, i, sm);
    long long nn = (long long)n;
    out->max_finished = s->max_finished > 0 ? (s->max_finished + nn - 1) / nn : 0;
    out->max_bytes = s->max_bytes > 0 ? (s->max_bytes + nn - 1) / nn : 0;
}

/* Which limit that is on has no share on active shard i (NULL: none, the shard may be
 * tried). A share of 0 cannot be sent: to the script it means "no limit". */
static const char *zero_share(const fleet_shards *sh, const fleet_submit *s, size_t i) {
    fleet_submit x;
    shared_limits(sh, s, i, &x);
    if (s->max_active > 0 && x.max_active == 0) return "active";
    if (s->max_queue > 0 && x.max_queue == 0) return "queue";
    if (s->rate > 0 && x.rate <= 0) return "rate";
    return NULL;
}

/* Builds the command for active shard number i: the id (and the request id made from it)
 * names the shard, the limits are its shares. */
static void build(gw *g, gw_place *pl, size_t i, fleet_cmd *cmd) {
    const fleet_shards *sh = &g->shards;
    int k = sh->active[i];
    pl->k = k;
    if (sh->n_active == 1 && k == 0) { /* one shard: the submit as it always was */
        fleet_state_submit(&sh->shard[0].keys, &pl->s, cmd);
        return;
    }
    fleet_id_set_shard(pl->id, k);
    fleet_submit x;
    if (sh->n_active == 1) x = pl->s;
    else shared_limits(sh, &pl->s, i, &x);
    if (pl->rid && k != 0) x.request_id = pl->rid;
    fleet_state_submit(&sh->shard[k].keys, &x, cmd);
}

int gw_place_at(gw *g, gw_place *pl, int k, fleet_cmd *cmd) {
    const fleet_shards *sh = &g->shards;
    if (k < 0 || k >= FLEET_SHARDS_MAX || !sh->shard[k].used) return -1;
    pl->only = true;
    for (size_t i = 0; i < sh->n_active; i++)
        if (sh->active[i] == k && !zero_share(sh, &pl->s, i)) {
            build(g, pl, i, cmd);
            return 0;
        }
    pl->k = k;
    fleet_id_set_shard(pl->id, k);
    fleet_submit x = pl->s;
    if (pl->rid && k != 0) x.request_id = pl->rid;
    fleet_state_submit(&sh->shard[k].keys, &x, cmd);
    return 0;
}

void gw_place_unpin(gw_place *pl) { pl->only = false; }

int gw_place_first(gw *g, gw_place *pl, const fleet_submit *s, char *id, const char *rid,
                   fleet_cmd *cmd, fleet_submitted *refusal) {
    const fleet_shards *sh = &g->shards;
    size_t n = sh->n_active;
    pl->s = *s;
    pl->id = id;
    pl->rid = rid;
    pl->tried = 1;
    pl->refused = false;
    pl->only = false;
    if (n == 1) { /* the one-shard path: the whole limits, nothing to choose */
        pl->first = 0;
        build(g, pl, 0, cmd);
        return 0;
    }
    size_t pick;
    const char *none = NULL;
    if (s->idem_hash) {
        /* A retry of this request must come back here to find its record. */
        char buf[FLEET_TENANT_MAX + 72];
        int len = snprintf(buf, sizeof buf, "%s %s", s->tenant, s->idem_hash);
        pick = fleet_crc16(buf, (size_t)len) % n;
        pl->only = true;
        none = zero_share(sh, s, pick);
    } else {
        size_t ok[FLEET_SHARDS_MAX], nok = 0;
        for (size_t i = 0; i < n; i++) {
            const char *z = zero_share(sh, s, i);
            if (!z) ok[nok++] = i;
            else if (!none) none = z;
        }
        if (nok > 0) {
            none = NULL;
            size_t a = ok[next_rand(g->shard_table) % nok], b = ok[next_rand(g->shard_table) % nok];
            model_load *l = n > 1 ? load_of(g->shard_table, s->model, true) : NULL;
            pick = l && l->pos[sh->active[b]] < l->pos[sh->active[a]] ? b : a;
            /* The job is counted on its shard at once, before that shard answers: the
             * items of a batch (sent together) and concurrent submits otherwise all
             * compare the same stale positions and herd onto the shard that last answered
             * lowest. */
            if (l) l->pos[sh->active[pick]]++;
        } else {
            pick = 0;
        }
    }
    if (none) {
        *refusal = (fleet_submitted){.retry_after_ms = 1000, .limit = none};
        return -1;
    }
    pl->first = (int)pick;
    build(g, pl, pick, cmd);
    return 0;
}

static const char *limit_name(const char *limit) {
    if (limit && strcmp(limit, "rate") == 0) return "rate";
    if (limit && strcmp(limit, "queue") == 0) return "queue";
    return "active";
}

int gw_place_next(gw *g, gw_place *pl, const fleet_submitted *out, fleet_cmd *cmd) {
    if (!pl->refused || out->retry_after_ms < pl->best.retry_after_ms) {
        pl->best = (fleet_submitted){.retry_after_ms = out->retry_after_ms,
                                     .limit = limit_name(out->limit)};
        pl->refused = true;
    }
    return gw_place_elsewhere(g, pl, cmd);
}

int gw_place_elsewhere(gw *g, gw_place *pl, fleet_cmd *cmd) {
    const fleet_shards *sh = &g->shards;
    size_t n = sh->n_active;
    if (pl->only) return -1;
    /* The table may have changed since the first try: the shares are those of the table
     * in use now, and each index of it is looked at once. */
    while ((size_t)pl->tried < n) {
        size_t i = ((size_t)pl->first + (size_t)pl->tried) % n;
        pl->tried++;
        if (zero_share(sh, &pl->s, i)) continue;
        build(g, pl, i, cmd);
        return 0;
    }
    return -1;
}

void gw_place_note(gw *g, const gw_place *pl, long long queue_position) {
    if (g->shards.n_active == 1) return;
    model_load *l = load_of(g->shard_table, pl->s.model, true);
    l->pos[pl->k] = queue_position;
}
