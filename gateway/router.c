/* router.c: the slot map and the node of each master (router.h). */
#include "router.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/id.h"
#include "fleet/log.h"

typedef struct node_entry {
    fleet_redis_addr addr;
    void *node;
    bool in_map;
} node_entry;

struct gw_router {
    struct event_base *base;
    const fleet_redis_target *t;
    gw_router_cbs cbs;
    fleet_slot_map map;
    bool mapped;      /* a map was loaded */
    void **slot_node; /* FLEET_CLUSTER_SLOTS entries: the node of each slot's master */
    node_entry *nodes;
    size_t n, cap;
    redisAsyncContext *q; /* the CLUSTER SLOTS in flight, or NULL */
    fleet_redis_addr q_addr;
    size_t q_next;       /* the candidate asked (seeds, then the map's masters) */
    size_t q_candidates; /* how many candidates this round has */
    bool again;          /* a refresh was asked for while one was in flight */
    bool failed_logged;  /* a round where no node answered was logged */
    uint64_t last_ms;    /* the last answer (or failed round) */
    char why[300];       /* why the last round gave no map; "" after one did */
    gw_router_counts counts;
    struct event *q_timeout_ev;
    struct event *again_ev;
    struct event *check_ev;
};

static void arm(struct event *ev, long ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* ------------------------------------------------------------ nodes ---------------- */

static node_entry *entry_at(gw_router *ro, const fleet_redis_addr *a) {
    for (size_t i = 0; i < ro->n; i++)
        if (ro->nodes[i].addr.port == a->port && strcasecmp(ro->nodes[i].addr.host, a->host) == 0)
            return &ro->nodes[i];
    return NULL;
}

static node_entry *entry_make(gw_router *ro, const fleet_redis_addr *a) {
    node_entry *e = entry_at(ro, a);
    if (e) return e;
    if (ro->n == ro->cap) {
        size_t cap = ro->cap ? ro->cap * 2 : 8;
        node_entry *grown = realloc(ro->nodes, cap * sizeof *grown);
        if (!grown) return NULL;
        ro->nodes = grown;
        ro->cap = cap;
    }
    void *node = ro->cbs.node_new(a, ro->cbs.arg);
    if (!node) return NULL;
    e = &ro->nodes[ro->n++];
    *e = (node_entry){.addr = *a, .node = node};
    return e;
}

void *gw_router_node_at(gw_router *ro, const fleet_redis_addr *a) {
    node_entry *e = entry_make(ro, a);
    return e ? e->node : NULL;
}

void *gw_router_node_of_slot(const gw_router *ro, int slot) {
    return ro->mapped ? ro->slot_node[slot] : NULL;
}

size_t gw_router_count(const gw_router *ro) { return ro->n; }

void *gw_router_node(const gw_router *ro, size_t i, bool *in_map, const fleet_redis_addr **addr) {
    if (in_map) *in_map = ro->nodes[i].in_map;
    if (addr) *addr = &ro->nodes[i].addr;
    return ro->nodes[i].node;
}

gw_router_counts *gw_router_counters(gw_router *ro) { return &ro->counts; }

/* The first slot the map in hand gives no master, or -1 when it covers them all. */
static int first_uncovered(const gw_router *ro) {
    int next = 0;
    for (size_t i = 0; i < ro->map.n && ro->map.ranges[i].first == next; i++)
        next = ro->map.ranges[i].last + 1;
    return next == FLEET_CLUSTER_SLOTS ? -1 : next;
}

bool gw_router_complete(const gw_router *ro) { return ro->mapped && first_uncovered(ro) < 0; }

const char *gw_router_problem(const gw_router *ro, char *buf, size_t len) {
    if (!ro->mapped) {
        snprintf(buf, len, "%s",
                 ro->why[0] ? ro->why : "the cluster's slot map (CLUSTER SLOTS) is not read yet");
        return buf;
    }
    int next = first_uncovered(ro);
    if (next < 0) return NULL;
    snprintf(buf, len, "the Redis Cluster has no master for slot %d (cluster_state is not ok)",
             next);
    return buf;
}

/* Takes m as the map: a node for each master, the slot table, which nodes are masters. */
static void take_map(gw_router *ro, fleet_slot_map *m) {
    fleet_slot_map_free(&ro->map);
    ro->map = *m;
    *m = (fleet_slot_map){0};
    for (size_t i = 0; i < ro->n; i++) ro->nodes[i].in_map = false;
    memset(ro->slot_node, 0, FLEET_CLUSTER_SLOTS * sizeof *ro->slot_node);
    for (size_t i = 0; i < ro->map.n; i++) {
        const fleet_slot_range *r = &ro->map.ranges[i];
        node_entry *e = entry_make(ro, &r->master);
        if (!e) continue; /* out of memory: those slots answer 503 until the next map */
        e->in_map = true;
        for (int s = r->first; s <= r->last; s++) ro->slot_node[s] = e->node;
    }
    ro->mapped = true;
    ro->why[0] = '\0';
    ro->failed_logged = false;
    ro->counts.maps++;
}

/* ------------------------------------------------------------ CLUSTER SLOTS -------- */

static void ask_next(gw_router *ro);

/* The candidates of a round: the seeds, then the masters of the map in hand. */
static const fleet_redis_addr *candidate(const gw_router *ro, size_t i) {
    if (i < ro->t->nseeds) return &ro->t->seeds[i];
    i -= ro->t->nseeds;
    return i < ro->map.n ? &ro->map.ranges[i].master : NULL;
}

static void round_done(gw_router *ro) {
    ro->last_ms = fleet_now_ms();
    if (ro->again) {
        ro->again = false;
        arm(ro->again_ev, GW_ROUTER_REFRESH_MIN_MS);
    }
}

static void candidate_failed(gw_router *ro, const char *why) {
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", ro->q_addr.host, ro->q_addr.port);
    fleet_log(FLEET_LOG_DEBUG, "cluster: no slot map from this node", "node", addr, "error", why,
              NULL);
    if (++ro->q_next < ro->q_candidates) {
        ask_next(ro);
        return;
    }
    snprintf(ro->why, sizeof ro->why,
             "no node of FLEET_REDIS_CLUSTER answered CLUSTER SLOTS (last: %.60s: %.160s)", addr,
             why);
    if (!ro->failed_logged)
        fleet_log(FLEET_LOG_WARN, "cluster: no node gave the slot map; asking again", "last", addr,
                  "error", why, NULL);
    ro->failed_logged = true;
    round_done(ro); /* the check tick asks again */
}

static void on_slots(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_router *ro = privdata;
    if (ro->q != ac) return; /* given up on (timeout, free): already handled */
    ro->q = NULL;
    evtimer_del(ro->q_timeout_ev);
    /* With a reply the context lives on: end it once this callback returns. Without one,
     * hiredis is freeing it already. */
    if (reply) redisAsyncDisconnect(ac);
    char why[200];
    fleet_slot_map m = {0};
    if (!reply) {
        candidate_failed(ro, ac->errstr[0] ? ac->errstr : "no answer");
        return;
    }
    if (fleet_slot_map_parse(reply, ro->q_addr.host, &m, why, sizeof why) < 0) {
        candidate_failed(ro, why);
        return;
    }
    if (m.n == 0) {
        fleet_slot_map_free(&m);
        candidate_failed(ro, "CLUSTER SLOTS: no slot is assigned yet");
        return;
    }
    take_map(ro, &m);
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", ro->q_addr.host, ro->q_addr.port);
    fleet_log(FLEET_LOG_DEBUG, "cluster: slot map loaded", "from", addr, NULL);
    round_done(ro);
}

static void ask_next(gw_router *ro) {
    const fleet_redis_addr *a = candidate(ro, ro->q_next);
    if (!a) { /* the map shrank meanwhile */
        candidate_failed(ro, "no more nodes to ask");
        return;
    }
    ro->q_addr = *a;
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (!ac || ac->err || redisLibeventAttach(ac, ro->base) != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        candidate_failed(ro, why);
        return;
    }
    /* hiredis buffers the commands until the connection is made; a failed connect runs
     * on_slots with NULL. A refused AUTH shows as CLUSTER SLOTS' NOAUTH answer. */
    const char *argv[3];
    size_t lens[3];
    int n = fleet_redis_auth_argv(ro->t, argv, lens);
    if ((n && redisAsyncCommandArgv(ac, NULL, NULL, n, argv, lens) != REDIS_OK) ||
        redisAsyncCommand(ac, on_slots, ro, "CLUSTER SLOTS") != REDIS_OK) {
        redisAsyncFree(ac);
        candidate_failed(ro, "the question could not be sent");
        return;
    }
    ro->q = ac;
    arm(ro->q_timeout_ev, FLEET_SENTINEL_TIMEOUT_MS);
}

void gw_router_refresh(gw_router *ro) {
    if (ro->q || evtimer_pending(ro->again_ev, NULL)) {
        ro->again = ro->q != NULL; /* the answer in flight may predate what was seen */
        return;
    }
    uint64_t now = fleet_now_ms();
    if (ro->last_ms && now - ro->last_ms < GW_ROUTER_REFRESH_MIN_MS) {
        arm(ro->again_ev, (long)(GW_ROUTER_REFRESH_MIN_MS - (now - ro->last_ms)));
        return;
    }
    ro->q_next = 0;
    ro->q_candidates = ro->t->nseeds + ro->map.n;
    ask_next(ro);
}

static void on_q_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_router *ro = arg;
    if (!ro->q) return;
    redisAsyncContext *ac = ro->q;
    ro->q = NULL;
    redisAsyncFree(ac); /* runs on_slots with NULL, which sees ro->q moved on */
    candidate_failed(ro, "no answer in time");
}

static void on_again(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_router *ro = arg;
    ro->last_ms = 0;
    gw_router_refresh(ro);
}

static void on_check(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_router *ro = arg;
    if (!gw_router_complete(ro) || !ro->cbs.settled(ro->cbs.arg)) gw_router_refresh(ro);
}

/* ------------------------------------------------------------ commands ------------- */

static bool word_is(const char *w, size_t len, const char *name) {
    return len == strlen(name) && strncasecmp(w, name, len) == 0;
}

int gw_cmd_slot(int argc, const char *const *argv, const size_t *lens) {
    if (argc < 2) return -1;
    const char *c = argv[0];
    size_t cl = lens[0];
    int k = 1;
    if (word_is(c, cl, "EVALSHA") || word_is(c, cl, "EVAL") || word_is(c, cl, "EVALSHA_RO") ||
        word_is(c, cl, "EVAL_RO") || word_is(c, cl, "FCALL")) {
        if (argc < 4 || lens[2] == 0 || (lens[2] == 1 && argv[2][0] == '0')) return -1;
        k = 3;
    } else if (word_is(c, cl, "XREAD") || word_is(c, cl, "XREADGROUP")) {
        k = -1;
        for (int i = 1; i + 1 < argc; i++)
            if (word_is(argv[i], lens[i], "STREAMS")) {
                k = i + 1;
                break;
            }
        if (k < 0) return -1;
    } else if (word_is(c, cl, "XGROUP") || word_is(c, cl, "XINFO") || word_is(c, cl, "OBJECT") ||
               word_is(c, cl, "MEMORY")) {
        k = 2;
    } else if (word_is(c, cl, "PING") || word_is(c, cl, "INFO") || word_is(c, cl, "PUBLISH") ||
               word_is(c, cl, "WAIT") || word_is(c, cl, "CLUSTER") || word_is(c, cl, "SCRIPT") ||
               word_is(c, cl, "CONFIG") || word_is(c, cl, "ROLE") || word_is(c, cl, "TIME") ||
               word_is(c, cl, "DBSIZE") || word_is(c, cl, "AUTH") || word_is(c, cl, "ASKING") ||
               word_is(c, cl, "SUBSCRIBE") || word_is(c, cl, "ECHO")) {
        return -1;
    }
    if (k >= argc) return -1;
    return fleet_key_slot(argv[k], lens[k]);
}

/* ------------------------------------------------------------ life ----------------- */

gw_router *gw_router_new(struct event_base *base, const fleet_redis_target *t,
                         const gw_router_cbs *cbs) {
    gw_router *ro = calloc(1, sizeof *ro);
    if (!ro) return NULL;
    ro->base = base;
    ro->t = t;
    ro->cbs = *cbs;
    ro->slot_node = calloc(FLEET_CLUSTER_SLOTS, sizeof *ro->slot_node);
    ro->q_timeout_ev = evtimer_new(base, on_q_timeout, ro);
    ro->again_ev = evtimer_new(base, on_again, ro);
    ro->check_ev = event_new(base, -1, EV_PERSIST, on_check, ro);
    if (!ro->slot_node || !ro->q_timeout_ev || !ro->again_ev || !ro->check_ev) {
        gw_router_free(ro);
        return NULL;
    }
    arm(ro->check_ev, GW_ROUTER_CHECK_MS);
    gw_router_refresh(ro);
    return ro;
}

void gw_router_free(gw_router *ro) {
    if (!ro) return;
    if (ro->q) {
        redisAsyncContext *ac = ro->q;
        ro->q = NULL;
        redisAsyncFree(ac);
    }
    if (ro->q_timeout_ev) event_free(ro->q_timeout_ev);
    if (ro->again_ev) event_free(ro->again_ev);
    if (ro->check_ev) event_free(ro->check_ev);
    fleet_slot_map_free(&ro->map);
    free(ro->slot_node);
    free(ro->nodes);
    free(ro);
}
