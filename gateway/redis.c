/* redis.c: async Redis glue for the gateway (redis.h). */
#include "redis.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/id.h"
#include "fleet/log.h"
#include "fleet/redis_health.h"
#include "redis_link.h"
#include "router.h"

/* One connection to one Redis: without FLEET_REDIS_CLUSTER the gateway's only one, on a
 * cluster one per master (router.h). Its scripts, health, in-flight commands and WAITs are
 * its own: a WAIT counts the replicas of the node that took the write. */
typedef struct gw_node gw_node;

/* One command in flight, or waiting to be sent again after a transient refusal. Linked
 * so that a stalled server can be detected and every op answered at shutdown. */
typedef struct gw_op {
    struct gw_node *r;
    fleet_cmd *cmd;  /* a state script, or NULL */
    char *formatted; /* a plain command as RESP, kept for sending again */
    size_t formatted_len;
    gw_redis_cb cb;
    void *arg;
    uint64_t first_ms; /* the first sending: the retry budget counts from here */
    uint64_t sent_ms;  /* the latest sending: the watchdog counts from here */
    int tries;
    bool retried;     /* NOSCRIPT: sent again as EVAL */
    bool replicated;  /* answered only once wait_replicas replicas hold its write */
    bool once;        /* never sent again (a WAIT: on another connection it means nothing) */
    bool asking;      /* an ASK named its node: ASKING goes before it there, once */
    int redirects;    /* MOVED and ASK followed so far */
    int slot;         /* its first key's slot on a cluster; -1: keyless, or no cluster */
    redisReply *held; /* replicated: its reply, kept until the WAIT that covers it answers */
    struct event *retry_ev;
    struct gw_op *prev, *next;
} gw_op;

/* One SCRIPT LOAD in flight: its reply needs both. */
typedef struct gw_load {
    struct gw_node *r;
    const fleet_script *s;
} gw_load;

struct gw_node {
    gw_redis *g;          /* the owner: the gateway's one gw_redis */
    fleet_redis_target t; /* this node's address, the URL's credentials (the link's) */
    char where[300];      /* on a cluster "host:port" for logs and health */
    struct event_base *base;
    gw_redis_link *link;
    redisAsyncContext *ac; /* the link's context while it is up, else NULL */
    const char *host;      /* for logs */
    long timeout_ms;
    bool allow_eviction;
    bool ready;            /* connected and scripts loaded */
    bool loading;          /* the latest refusal or INFO said: loading the dataset */
    int loads_outstanding; /* SCRIPT LOAD replies still to come in this round */
    bool loads_failed;     /* one of this round's loads was refused */
    long load_retry_ms;
    gw_load loads[FLEET_SCRIPT_COUNT];
    struct event *watchdog_ev;
    struct event *load_retry_ev;
    struct event *health_ev;
    bool info_inflight;
    bool info_known; /* INFO memory answered on this connection */
    fleet_redis_memory mem;
    uint64_t oom_until_ms; /* an OOM refusal holds "full" until then */
    uint64_t oom_logged_ms;
    char evict_logged[sizeof(((fleet_redis_memory *)0)->policy)];
    uint64_t evict_logged_ms;
    gw_op *ops;                          /* in flight, oldest last */
    gw_op *waiting;                      /* refused for now, to be sent again */
    long wait_replicas, wait_timeout_ms; /* FLEET_REDIS_WAIT_REPLICAS (0: off) */
    gw_op *held;          /* replicated ops answered by Redis, waiting for the next WAIT */
    int replicas_online;  /* INFO replication's online replicas; -1: not known */
    gw_op *awaiting_info; /* replicated writes held for a fresh INFO (too few replicas) */
    bool wait_inflight;   /* a WAIT is out on the connection */
    int unflushed;        /* commands queued since the output buffer was empty or written */
};

/* The commands' side: one node without a cluster (the hot path reads g->one and goes on
 * as before), or a router and its nodes. */
struct gw_redis {
    gw_node *one;      /* without FLEET_REDIS_CLUSTER: the only node; NULL on a cluster */
    gw_router *router; /* on a cluster, else NULL */
    struct event_base *base;
    const fleet_redis_target *t;
    long timeout_ms;
    bool allow_eviction;
    long wait_replicas, wait_timeout_ms;
    bool closing; /* gw_redis_free runs: nothing is routed any more */
};

/* A command redirected more often than this without a retry delay in between (a slot
 * moving back and forth) is answered with the redirection (a 500): a resharding moves a
 * slot once. An ASK whose node answers TRYAGAIN (a multi-key script meeting a slot half
 * migrated) waits the retry delay and starts from the map again. */
#define GW_REDIS_REDIRECTS_MAX 5

static void load_scripts(gw_node *r);
static gw_node *cluster_node(gw_redis *g, int slot);

/* ------------------------------------------------------------ ops ------------------- */

static void op_link(gw_op **list, gw_op *op) {
    op->prev = NULL;
    op->next = *list;
    if (*list) (*list)->prev = op;
    *list = op;
}

static void op_unlink(gw_op **list, gw_op *op) {
    if (op->prev) op->prev->next = op->next;
    else *list = op->next;
    if (op->next) op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void op_free(gw_op *op) {
    if (op->retry_ev) event_free(op->retry_ev);
    if (op->held) freeReplyObject(op->held);
    free(op->formatted);
    free(op);
}

static int op_send(gw_op *op);

static void note_oom(gw_node *r) {
    uint64_t now = fleet_now_ms();
    r->oom_until_ms = now + GW_REDIS_OOM_HOLD_MS;
    if (now - r->oom_logged_ms >= 10000 || r->oom_logged_ms == 0) {
        r->oom_logged_ms = now;
        fleet_log(FLEET_LOG_ERROR,
                  "redis is full: writes are refused (OOM); raise maxmemory or free memory", "host",
                  r->host, NULL);
    }
}

static void on_op_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_op *op = arg;
    gw_node *r = op->r;
    op_unlink(&r->waiting, op);
    if (op->slot >= 0) {
        /* On a cluster its slot may have moved meanwhile (MOVED, a failover): the map,
         * refreshed since, says where it goes now. */
        gw_node *to = cluster_node(r->g, op->slot);
        op->asking = false;
        op->redirects = 0; /* only redirections without a delay between them loop */
        if (to) op->r = r = to;
    }
    if (!r->ready || op_send(op) < 0) {
        op->cb(NULL, op->arg);
        op_free(op);
    }
}

/* A transient refusal: sends op again later when the budget allows. */
static bool op_retry_later(gw_op *op) {
    gw_node *r = op->r;
    long delay = GW_REDIS_RETRY_MIN_MS << (op->tries < 3 ? op->tries : 3);
    if (delay > GW_REDIS_RETRY_MAX_MS) delay = GW_REDIS_RETRY_MAX_MS;
    if (fleet_now_ms() + (uint64_t)delay - op->first_ms >= (uint64_t)r->timeout_ms) return false;
    if (!op->retry_ev) op->retry_ev = evtimer_new(r->base, on_op_retry, op);
    if (!op->retry_ev) return false;
    op->tries++;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(op->retry_ev, &tv);
    op_link(&r->waiting, op);
    return true;
}

/* ------------------------------------------------------------ replication --------- */

/* With FLEET_REDIS_WAIT_REPLICAS=N, the answer to a write a client is told succeeded
 * (replicated_script) waits until N replicas hold it: Redis' WAIT N T counts the replicas
 * that acknowledged every write this connection made before it. One WAIT covers all the
 * writes answered before it was sent, so under load one replication round trip serves
 * many requests; the writes answered while it is out wait for the next one. A WAIT
 * blocks the connection in Redis until it is answered (at most T ms), which is what
 * makes it cost latency: docs/reliability.md has the figures.
 *
 * A WAIT is only meaningful on the connection that made the writes: it is never sent
 * again (op->once), and when the connection goes, the writes still held are answered
 * as a Redis failure (503): they may or may not survive, as any write whose answer was
 * lost. */
static void send_wait(gw_node *r);

static redisReply *reply_copy(const redisReply *rep) {
    redisReply *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->type = rep->type;
    c->integer = rep->integer;
    if (rep->str) {
        if (!(c->str = malloc(rep->len + 1))) goto err;
        memcpy(c->str, rep->str, rep->len);
        c->str[rep->len] = '\0';
        c->len = rep->len;
    }
    if (rep->elements) {
        if (!(c->element = calloc(rep->elements, sizeof *c->element))) goto err;
        c->elements = rep->elements;
        for (size_t i = 0; i < rep->elements; i++)
            if (!(c->element[i] = reply_copy(rep->element[i]))) goto err;
    }
    return c;
err:
    freeReplyObject(c); /* frees what was copied; NULL elements are skipped */
    return NULL;
}

/* Answers the ops of list: with their held replies when acked reaches wait_replicas,
 * else (acked < 0: no answer) with a refusal worth retrying. */
static void answer_held(gw_node *r, gw_op **list, long long acked) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "NOREPLICAS %lld of the %ld replicas FLEET_REDIS_WAIT_REPLICAS asks for confirmed "
             "the write within %ld ms",
             acked < 0 ? 0 : acked, r->wait_replicas, r->wait_timeout_ms);
    redisReply refused = {.type = REDIS_REPLY_ERROR, .str = msg, .len = strlen(msg)};
    while (*list) {
        gw_op *op = *list;
        op_unlink(list, op);
        op->cb(acked < 0 ? NULL : acked >= r->wait_replicas ? op->held : &refused, op->arg);
        op_free(op);
    }
}

typedef struct gw_wait {
    gw_node *r;
    gw_op *ops; /* the writes this WAIT covers */
} gw_wait;

static void on_wait(redisReply *rep, void *arg) {
    gw_wait *w = arg;
    gw_node *r = w->r;
    r->wait_inflight = false;
    long long acked = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        fleet_log(FLEET_LOG_ERROR, "redis refused WAIT", "reply", rep->str, NULL);
    answer_held(r, &w->ops, acked);
    free(w);
    if (!rep) answer_held(r, &r->held, -1); /* the connection went: so did their WAIT */
    else send_wait(r);
}

static int command_raw(gw_node *r, int slot, int argc, const char **argv, const size_t *lens,
                       gw_redis_cb cb, void *arg);

static void send_wait(gw_node *r) {
    if (r->wait_inflight || !r->held) return;
    gw_wait *w = calloc(1, sizeof *w);
    char n[24], t[24];
    snprintf(n, sizeof n, "%ld", r->wait_replicas);
    snprintf(t, sizeof t, "%ld", r->wait_timeout_ms);
    const char *argv[] = {"WAIT", n, t};
    size_t lens[] = {4, strlen(n), strlen(t)};
    if (!w || command_raw(r, -1, 3, argv, lens, on_wait, w) < 0) {
        free(w);
        answer_held(r, &r->held, -1);
        return;
    }
    r->ops->once = true; /* command_raw linked it first */
    w->r = r;
    w->ops = r->held;
    r->held = NULL;
    r->wait_inflight = true;
}

/* A MOVED or ASK (on a cluster): the command goes to the node named, at once when that
 * node is usable, else after the retry delay to where the map says then. A MOVED also
 * asks for the map again (coalesced: a resharding answers many MOVED at once). Returns
 * whether op is on its way. */
static bool op_redirect(gw_op *op, fleet_redirect red, int slot, const fleet_redis_addr *to) {
    gw_redis *g = op->r->g;
    gw_router_counts *c = gw_router_counters(g->router);
    op->redirects++;
    op->slot = slot;
    if (red == FLEET_REDIRECT_MOVED) {
        c->moved++;
        gw_router_refresh(g->router);
    } else {
        c->asked++;
    }
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", to->host, to->port);
    fleet_log(FLEET_LOG_DEBUG,
              red == FLEET_REDIRECT_MOVED ? "redis: MOVED followed" : "redis: ASK followed", "to",
              addr, NULL);
    gw_node *n = g->closing ? NULL : gw_router_node_at(g->router, to);
    if (n && n->ready) {
        op->r = n;
        op->asking = red == FLEET_REDIRECT_ASK;
        return op_send(op) == 0;
    }
    return op_retry_later(op);
}

static void op_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    gw_op *op = privdata;
    gw_node *r = op->r;
    redisReply *rep = reply;
    op_unlink(&r->ops, op);
    fleet_redis_err e = fleet_redis_err_of(rep);
    fleet_redirect red = FLEET_REDIRECT_NONE;
    int slot;
    fleet_redis_addr to;
    if (op->once) {
        /* as it is */
    } else if (r->g->router && op->redirects < GW_REDIS_REDIRECTS_MAX &&
               (red = fleet_redirect_of(rep, &slot, &to)) != FLEET_REDIRECT_NONE) {
        if (op_redirect(op, red, slot, &to)) return;
        rep = NULL; /* not sent: answered as a Redis failure */
    } else if (e == FLEET_REDIS_NOSCRIPT && op->cmd && !op->retried) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): send the source. */
        op->retried = true;
        fleet_cmd_as_eval(op->cmd);
        if (op_send(op) == 0) return;
        rep = NULL;
    } else if (e == FLEET_REDIS_TRANSIENT) {
        r->loading = strncmp(rep->str, "LOADING", 7) == 0;
        /* A primary demoted to a replica keeps its clients' connections and refuses
         * their writes: find the primary again (through the sentinels) and send there. */
        if (strncmp(rep->str, "READONLY", 8) == 0 && !(ac->c.flags & REDIS_DISCONNECTING))
            gw_redis_link_close(r->link, "READONLY: the server is a replica now");
        if (op_retry_later(op)) return;
    } else if (e == FLEET_REDIS_OOM) {
        note_oom(r);
    } else if (op->replicated && rep && e == FLEET_REDIS_OK && ac == r->ac) {
        if ((op->held = reply_copy(rep))) {
            op_link(&r->held, op);
            send_wait(r);
            return;
        }
        rep = NULL; /* out of memory: answered as a Redis failure */
    }
    op->cb(rep, op->arg);
    op_free(op);
}

/* Appends "<c><n>\r\n" at p; returns the end. */
static char *resp_head(char *p, char c, size_t n) {
    char tmp[24];
    char *d = tmp + sizeof tmp;
    do {
        *--d = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *p++ = c;
    size_t len = (size_t)(tmp + sizeof tmp - d);
    memcpy(p, d, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* cmd as RESP, into a malloc'd buffer: what redisFormatCommandArgv writes, with plain
 * copies where hiredis formats each argument's length line with its own printf (which
 * showed in the gateway's profile of a submit, 39 arguments). Returns its length, or -1
 * when out of memory. */
static long long resp_format(const fleet_cmd *cmd, char **out) {
    size_t total = 24;
    for (int i = 0; i < cmd->argc; i++) total += cmd->argvlen[i] + 24 + 2;
    char *buf = malloc(total), *p = buf;
    if (!buf) return -1;
    p = resp_head(p, '*', (size_t)cmd->argc);
    for (int i = 0; i < cmd->argc; i++) {
        p = resp_head(p, '$', cmd->argvlen[i]);
        if (cmd->argvlen[i]) memcpy(p, cmd->argv[i], cmd->argvlen[i]);
        p += cmd->argvlen[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    *out = buf;
    return (long long)(p - buf);
}

/* hiredis' async context only appends a command to its output buffer and arms a write
 * event, so the buffer leaves when the loop reaches that event: after the gateway has
 * read and parsed every HTTP request that was ready in this turn (up to one per
 * connection). Redis idled meanwhile, and then the gateway idled while Redis ran them
 * all: at 64 connections the two took turns on the two cores. Writing the buffer every
 * GW_REDIS_FLUSH_AT commands lets Redis start on the first ones while the gateway parses
 * the rest: a quarter more submits/s at 64 connections with the same CPU per submit
 * (docs/benchmarks.md, "Submit: the gateway and Redis at the same time"). A write per
 * command (1) cost the gateway ~4.5 us more per request; from 16 on, nothing measurable
 * and nothing more gained. A lone request is not delayed: below the mark, the loop's
 * write event sends it as before. */
#define GW_REDIS_FLUSH_AT 16

/* Writes what the output buffer holds now, without waiting for the loop. Only the write
 * itself: a failure is left in the context (c->err) for hiredis to act on from its armed
 * write or read event, which frees the context and answers every command with NULL;
 * doing that here would run callbacks under the caller's feet, or free the context inside
 * one of its own callbacks (a NOSCRIPT reply sends again from one). A full socket
 * (EAGAIN) leaves the rest for the write event. */
static void flush_early(gw_node *r) {
    redisAsyncContext *ac = r->ac;
    redisContext *c = &ac->c;
    int done = 0;
    r->unflushed = 0;
    if (c->err || !(c->flags & REDIS_CONNECTED)) return;
    /* Written out: the armed write event has nothing left to do (when it was armed in this
     * turn, epoll's changelist cancels its add with this del: no system call). */
    if (redisBufferWrite(c, &done) == REDIS_OK && done && ac->ev.delWrite)
        ac->ev.delWrite(ac->ev.data);
}

/* Sends an op's command (again, after NOSCRIPT or a transient refusal). */
static int op_send(gw_op *op) {
    gw_node *r = op->r;
    if (!r->ac) return -1;
    /* An empty buffer was written by the loop: count from there. */
    if (sdslen(r->ac->c.obuf) == 0) r->unflushed = 0;
    int rc;
    if (op->asking) {
        /* The slot is being imported here: ASKING lets the next command in, once. */
        op->asking = false;
        static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
        if (redisAsyncFormattedCommand(r->ac, NULL, NULL, asking, sizeof asking - 1) != REDIS_OK)
            return -1;
    }
    if (op->cmd) {
        char *text;
        long long n = resp_format(op->cmd, &text);
        if (n < 0) return -1;
        rc = redisAsyncFormattedCommand(r->ac, op_reply, op, text, (size_t)n);
        free(text);
    } else {
        rc = redisAsyncFormattedCommand(r->ac, op_reply, op, op->formatted, op->formatted_len);
    }
    if (rc != REDIS_OK) return -1;
    op->sent_ms = fleet_now_ms();
    op_link(&r->ops, op);
    if (++r->unflushed >= GW_REDIS_FLUSH_AT) flush_early(r);
    return 0;
}

static gw_op *op_new(gw_node *r, gw_redis_cb cb, void *arg) {
    gw_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    *op = (gw_op){.r = r, .cb = cb, .arg = arg, .first_ms = fleet_now_ms(), .slot = -1};
    return op;
}

/* ------------------------------------------------------------ too few replicas ---- */

/* With fewer replicas online (INFO replication) than wait_replicas, a replicated write
 * could only end in a WAIT that runs out (holding the connection, and every command
 * behind it, that long) and a job that may or may not exist. Such a write is held until
 * a fresh INFO answers (the count of the last second may be stale: a replica may just
 * have come), then sent, or refused before anything is written. */
static bool ask_info(gw_node *r);

static bool too_few_replicas(const gw_node *r) {
    return r->replicas_online >= 0 && r->replicas_online < r->wait_replicas;
}

static void refuse_write(gw_node *r, gw_op *op) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "NOREPLICAS Redis has %d of the %ld replicas FLEET_REDIS_WAIT_REPLICAS asks for "
             "online: nothing was written",
             r->replicas_online < 0 ? 0 : r->replicas_online, r->wait_replicas);
    redisReply refused = {.type = REDIS_REPLY_ERROR, .str = msg, .len = strlen(msg)};
    op->cb(&refused, op->arg);
    op_free(op);
}

/* A fresh INFO answered (connected) or will not (the connection went: NULL answers). */
static void settle_awaiting_info(gw_node *r, bool connected) {
    gw_op *list = r->awaiting_info;
    r->awaiting_info = NULL;
    while (list) {
        gw_op *op = list;
        op_unlink(&list, op);
        if (connected && too_few_replicas(r)) {
            refuse_write(r, op);
        } else if (!connected || op_send(op) < 0) {
            op->cb(NULL, op->arg);
            op_free(op);
        }
    }
}

/* The scripts whose 2xx tells a client its request is stored: with wait_replicas, their
 * answers wait for the replicas. Reads, and the gateway's own bookkeeping (webhook
 * deliveries, which are retried anyway), do not. */
static bool promises_a_write(fleet_script_id s) {
    switch (s) {
    case FLEET_SCRIPT_SUBMIT:
    case FLEET_SCRIPT_CANCEL:
    case FLEET_SCRIPT_RETRY:
    case FLEET_SCRIPT_DELETE:
    case FLEET_SCRIPT_PURGE:
    case FLEET_SCRIPT_PAUSE: return true;
    default: return false;
    }
}

/* The node that takes a command of slot on a cluster (slot -1: keyless, any usable
 * master of the map); NULL when none can (no map yet, its master unknown, shutting down). */
static gw_node *cluster_node(gw_redis *g, int slot) {
    if (g->closing || !g->router) return NULL;
    if (slot >= 0) return gw_router_node_of_slot(g->router, slot);
    size_t n = gw_router_count(g->router);
    for (size_t i = 0; i < n; i++) {
        bool in_map;
        gw_node *r = gw_router_node(g->router, i, &in_map, NULL);
        if (in_map && r->ready) return r;
    }
    return NULL;
}

int gw_redis_script(gw_redis *g, fleet_cmd *cmd, gw_redis_cb cb, void *arg) {
    gw_node *r = g->one;
    int slot = -1;
    if (!r) {
        slot = gw_cmd_slot(cmd->argc, cmd->argv, cmd->argvlen);
        if (!(r = cluster_node(g, slot))) return -1;
    }
    if (!r->ready) return -1;
    gw_op *op = op_new(r, cb, arg);
    if (!op) return -1;
    op->cmd = cmd;
    op->slot = slot;
    op->replicated = r->wait_replicas > 0 && promises_a_write(cmd->script);
    if (op->replicated && too_few_replicas(r)) {
        /* Judged on a fresh INFO, not the last second's: a replica may just have come. */
        op_link(&r->awaiting_info, op);
        if (!ask_info(r)) settle_awaiting_info(r, false);
        return 0;
    }
    if (op_send(op) < 0) {
        op_free(op);
        return -1;
    }
    return 0;
}

/* Sends a plain command on the connection whether or not the scripts are loaded (the
 * health probe). slot: as gw_op's. */
static int command_raw(gw_node *r, int slot, int argc, const char **argv, const size_t *lens,
                       gw_redis_cb cb, void *arg) {
    if (!r->ac) return -1;
    gw_op *op = op_new(r, cb, arg);
    if (!op) return -1;
    op->slot = slot;
    long long n = redisFormatCommandArgv(&op->formatted, argc, argv, lens);
    if (n < 0) {
        op_free(op);
        return -1;
    }
    op->formatted_len = (size_t)n;
    if (op_send(op) < 0) {
        op_free(op);
        return -1;
    }
    return 0;
}

int gw_redis_command(gw_redis *g, int argc, const char **argv, const size_t *lens, gw_redis_cb cb,
                     void *arg) {
    gw_node *r = g->one;
    int slot = -1;
    if (!r) {
        slot = gw_cmd_slot(argc, argv, lens);
        if (!(r = cluster_node(g, slot))) return -1;
    }
    if (!r->ready) return -1;
    return command_raw(r, slot, argc, argv, lens, cb, arg);
}

/* Every master of the map connected with its scripts loaded. */
static bool nodes_ready(const gw_redis *g) {
    size_t n = gw_router_count(g->router);
    for (size_t i = 0; i < n; i++) {
        bool in_map;
        const gw_node *r = gw_router_node(g->router, i, &in_map, NULL);
        if (in_map && !r->ready) return false;
    }
    return n > 0;
}

static bool router_settled(void *arg) { return nodes_ready(arg); }

bool gw_redis_ready(const gw_redis *g) {
    if (g->one) return g->one->ready;
    return !g->closing && gw_router_complete(g->router) && nodes_ready(g);
}

void gw_redis_wait_replicas(gw_redis *g, long n, long timeout_ms) {
    g->wait_replicas = n;
    g->wait_timeout_ms = timeout_ms;
    if (g->one) {
        g->one->wait_replicas = n;
        g->one->wait_timeout_ms = timeout_ms;
        return;
    }
    for (size_t i = 0; i < gw_router_count(g->router); i++) {
        gw_node *r = gw_router_node(g->router, i, NULL, NULL);
        r->wait_replicas = n;
        r->wait_timeout_ms = timeout_ms;
    }
}

static const char *node_health(const gw_node *r, char *buf, size_t len) {
    const char *refusal = r->ac ? NULL : gw_redis_link_refusal(r->link);
    if (refusal) snprintf(buf, len, "%s", refusal);
    else if (!r->ac) snprintf(buf, len, "Redis is not reachable");
    else if (r->loading) snprintf(buf, len, "Redis is loading its dataset");
    else if (!r->ready) snprintf(buf, len, "the state scripts are not loaded into Redis yet");
    else if (!r->info_known) snprintf(buf, len, "Redis has not answered INFO memory yet");
    else if (!r->allow_eviction && r->mem.policy[0] && fleet_redis_policy_evicts(r->mem.policy))
        snprintf(buf, len,
                 "Redis maxmemory-policy is %s, which evicts jobs and API keys: set "
                 "maxmemory-policy noeviction (or FLEET_ALLOW_EVICTION=on to accept losing jobs)",
                 r->mem.policy);
    else if (fleet_redis_memory_full(&r->mem))
        snprintf(buf, len,
                 "Redis is full (used_memory %llu, maxmemory %llu): writes are refused; "
                 "raise maxmemory or free memory",
                 r->mem.used, r->mem.max);
    else if (fleet_now_ms() < r->oom_until_ms)
        snprintf(buf, len,
                 "Redis is full: it refused a write for lack of memory in the last %d s "
                 "(used_memory %llu, maxmemory %llu); raise maxmemory or free memory",
                 GW_REDIS_OOM_HOLD_MS / 1000, r->mem.used, r->mem.max);
    else return NULL;
    return buf;
}

/* On a cluster: the map must cover every slot, and every master of it be healthy; the
 * first that is not is named. */
const char *gw_redis_health(const gw_redis *g, char *buf, size_t len) {
    if (g->one) return node_health(g->one, buf, len);
    if (gw_router_problem(g->router, buf, len)) return buf;
    size_t n = gw_router_count(g->router);
    for (size_t i = 0; i < n; i++) {
        bool in_map;
        const fleet_redis_addr *a;
        const gw_node *r = gw_router_node(g->router, i, &in_map, &a);
        char why[256];
        if (in_map && node_health(r, why, sizeof why)) {
            snprintf(buf, len, "Redis Cluster master %s:%d: %s", a->host, a->port, why);
            return buf;
        }
    }
    return NULL;
}

/* Whether Redis (on a cluster: one of the masters) said it is loading its dataset. */
static bool loading_of(const gw_redis *g) {
    if (g->one) return g->one->loading;
    for (size_t i = 0; i < gw_router_count(g->router); i++) {
        bool in_map;
        const gw_node *r = gw_router_node(g->router, i, &in_map, NULL);
        if (in_map && r->loading) return true;
    }
    return false;
}

/* ------------------------------------------------------------ health ---------------- */

static void check_policy(gw_node *r) {
    if (!fleet_redis_policy_evicts(r->mem.policy) || !r->mem.policy[0]) {
        r->evict_logged[0] = '\0';
        return;
    }
    uint64_t now = fleet_now_ms();
    if (strcmp(r->evict_logged, r->mem.policy) == 0 && now - r->evict_logged_ms < 60000) return;
    snprintf(r->evict_logged, sizeof r->evict_logged, "%s", r->mem.policy);
    r->evict_logged_ms = now;
    fleet_log(
        FLEET_LOG_ERROR,
        r->allow_eviction
            ? "redis maxmemory-policy evicts keys: jobs and API keys can vanish "
              "(FLEET_ALLOW_EVICTION=on accepts that); set maxmemory-policy noeviction"
            : "redis maxmemory-policy evicts keys: jobs and API keys can vanish; set "
              "maxmemory-policy noeviction (not ready until then, or FLEET_ALLOW_EVICTION=on)",
        "policy", r->mem.policy, "host", r->host, NULL);
}

static void read_info(gw_node *r, const redisReply *rep) {
    if (rep->type == REDIS_REPLY_STRING) {
        fleet_redis_memory m;
        if (fleet_redis_memory_parse(rep->str, rep->len, &m) == 0) {
            r->mem = m;
            check_policy(r);
        }
        /* A replica in a full resync loads while its connections stay open. */
        const char *l = strstr(rep->str, "\nloading:");
        r->loading = l && l[9] == '1';
        r->replicas_online = fleet_redis_replicas_online(rep->str, rep->len);
        r->info_known = true;
        return;
    }
    fleet_redis_err e = fleet_redis_err_of(rep);
    if (e == FLEET_REDIS_TRANSIENT) return; /* asked again next tick */
    /* INFO refused for good (renamed, no permission): health cannot be read; do not hold
     * the gateway unready for that. */
    if (!r->info_known)
        fleet_log(FLEET_LOG_WARN, "redis INFO memory refused: maxmemory-policy cannot be checked",
                  "reply", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected", NULL);
    r->info_known = true;
}

static void on_info(redisReply *rep, void *arg) {
    gw_node *r = arg;
    r->info_inflight = false;
    if (rep) read_info(r, rep); /* else the connection went: the next connect asks again */
    settle_awaiting_info(r, rep != NULL);
}

/* Returns whether an INFO is on its way (sent now, or already). */
static bool ask_info(gw_node *r) {
    if (!r->ac) return false;
    if (r->info_inflight) return true;
    /* memory: used_memory, maxmemory, maxmemory_policy; persistence: loading;
     * replication: the replicas online, for FLEET_REDIS_WAIT_REPLICAS. */
    const char *argv[4] = {"INFO", "memory", "persistence", "replication"};
    size_t lens[4] = {4, 6, 11, 11};
    if (command_raw(r, -1, 4, argv, lens, on_info, r) == 0) r->info_inflight = true;
    return r->info_inflight;
}

static void on_health_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)ask_info(arg);
}

/* ------------------------------------------------------------ connection ------------ */

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *privdata) {
    const gw_load *ld = privdata;
    gw_node *r = ld->r;
    const fleet_script *s = ld->s;
    redisReply *rep = reply;
    if (!rep || ac != r->ac) return; /* the connection went: on_link_down takes over */
    if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, s->sha) != 0) {
        fleet_redis_err e = fleet_redis_err_of(rep);
        if (e == FLEET_REDIS_TRANSIENT) r->loading = strncmp(rep->str, "LOADING", 7) == 0;
        /* Logged once per round of loads: a loading Redis refuses every one. */
        if (!r->loads_failed)
            fleet_log(e == FLEET_REDIS_TRANSIENT ? FLEET_LOG_WARN : FLEET_LOG_ERROR,
                      "script load refused: trying again", "script", s->name, "reply",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected", NULL);
        r->loads_failed = true;
    }
    if (--r->loads_outstanding > 0) return;
    if (r->loads_failed) {
        /* Until Redis takes them, on this same connection: a refusal for now (LOADING,
         * BUSY, ...) goes away by itself, and the gateway must notice within a fraction
         * of a second, not at the next reconnect. */
        struct timeval tv = {r->load_retry_ms / 1000, (r->load_retry_ms % 1000) * 1000};
        evtimer_add(r->load_retry_ev, &tv);
        r->load_retry_ms = r->load_retry_ms * 2 > GW_REDIS_RETRY_MAX_MS ? GW_REDIS_RETRY_MAX_MS
                                                                        : r->load_retry_ms * 2;
        return;
    }
    r->ready = true;
    r->loading = false;
    gw_redis_link_settled(r->link);
    fleet_log(FLEET_LOG_INFO, "redis ready", "host", r->host, NULL);
}

static void load_scripts(gw_node *r) {
    if (!r->ac) return;
    r->loads_outstanding = 0;
    r->loads_failed = false;
    for (int i = 0; i < FLEET_SCRIPT_COUNT; i++) {
        gw_load *ld = &r->loads[i];
        ld->r = r;
        ld->s = fleet_script_get((fleet_script_id)i);
        if (redisAsyncCommand(r->ac, on_script_loaded, ld, "SCRIPT LOAD %s", ld->s->source) ==
            REDIS_OK)
            r->loads_outstanding++;
        else r->loads_failed = true;
    }
    if (r->loads_outstanding == 0) {
        /* Not even sent (the context is closing): its loss is on its way. */
        r->loads_failed = false;
    }
}

static void on_load_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    load_scripts(arg);
}

/* The link is connected on its database: load the scripts, read the health. */
static void on_link_up(redisAsyncContext *ac, void *arg) {
    gw_node *r = arg;
    r->ac = ac;
    r->load_retry_ms = GW_REDIS_RETRY_MIN_MS;
    load_scripts(r);
    (void)ask_info(r);
}

/* The connection is gone: forget what it said (the link reconnects). */
static void on_link_down(void *arg) {
    gw_node *r = arg;
    answer_held(r, &r->held, -1); /* written on the connection that went */
    r->ac = NULL;
    r->ready = false;
    r->info_known = false;
    r->info_inflight = false;
    r->replicas_online = -1;
    r->loads_outstanding = 0;
    evtimer_del(r->load_retry_ev);
    /* On a cluster a lost master is often a failover: its replica may hold its slots now. */
    if (r->g->router && !r->g->closing) gw_router_refresh(r->g->router);
}

/* A server that accepts commands but does not answer (paused, swapped out, a network
 * black hole) would hold requests forever: drop the connection instead, which answers
 * every pending command with NULL and reconnects. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_node *r = arg;
    if (!r->ac || !r->ops) return;
    gw_op *oldest = r->ops;
    while (oldest->next) oldest = oldest->next;
    if (fleet_now_ms() - oldest->sent_ms > (uint64_t)r->timeout_ms)
        gw_redis_link_close(r->link, "not answering: dropping the connection");
}

static void node_free(gw_node *r);

/* A node on t (copied: the link keeps a pointer to it), connecting at once. */
static gw_node *node_new(gw_redis *g, const fleet_redis_target *t) {
    gw_node *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->g = g;
    r->t = *t;
    r->base = g->base;
    r->timeout_ms = g->timeout_ms;
    r->allow_eviction = g->allow_eviction;
    r->wait_replicas = g->wait_replicas;
    r->wait_timeout_ms = g->wait_timeout_ms;
    r->load_retry_ms = GW_REDIS_RETRY_MIN_MS;
    r->replicas_online = -1;
    r->host = "";
    r->watchdog_ev = event_new(g->base, -1, EV_PERSIST, on_watchdog, r);
    r->load_retry_ev = evtimer_new(g->base, on_load_retry, r);
    r->health_ev = event_new(g->base, -1, EV_PERSIST, on_health_timer, r);
    if (!r->watchdog_ev || !r->load_retry_ev || !r->health_ev) goto err;
    struct timeval tick = {0, 250000};
    evtimer_add(r->watchdog_ev, &tick);
    struct timeval health = {GW_REDIS_HEALTH_MS / 1000, (GW_REDIS_HEALTH_MS % 1000) * 1000};
    evtimer_add(r->health_ev, &health);
    r->link =
        gw_redis_link_new(g->base, &r->t, "redis",
                          &(gw_redis_link_cbs){.up = on_link_up, .down = on_link_down, .arg = r});
    if (!r->link) goto err;
    r->host = gw_redis_link_host(r->link);
    if (g->router) {
        snprintf(r->where, sizeof r->where, "%s:%d", t->addr.host, t->addr.port);
        r->host = r->where;
    }
    return r;
err:
    node_free(r);
    return NULL;
}

/* A master of the cluster: its own address, the URL's credentials, db 0 (no SELECT). */
static void *router_node_new(const fleet_redis_addr *a, void *arg) {
    gw_redis *g = arg;
    fleet_redis_target t = *g->t;
    t.addr = *a;
    t.db = 0;
    t.nsentinels = 0;
    t.nseeds = 0;
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", a->host, a->port);
    fleet_log(FLEET_LOG_INFO, "redis cluster: connecting to a master", "addr", addr, NULL);
    return node_new(g, &t);
}

gw_redis *gw_redis_new(struct event_base *base, const fleet_redis_target *t, long timeout_ms,
                       bool allow_eviction) {
    gw_redis *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->base = base;
    g->t = t;
    g->timeout_ms = timeout_ms;
    g->allow_eviction = allow_eviction;
    if (t->nseeds) {
        g->router = gw_router_new(base, t,
                                  &(gw_router_cbs){.node_new = router_node_new,
                                                   .settled = router_settled,
                                                   .arg = g});
        if (!g->router) goto err;
    } else if (!(g->one = node_new(g, t))) {
        goto err;
    }
    return g;
err:
    gw_redis_free(g);
    return NULL;
}

static void node_free(gw_node *r) {
    if (!r) return;
    gw_redis_link *link = r->link;
    r->link = NULL;
    r->ac = NULL;
    gw_redis_link_free(link); /* runs pending callbacks with NULL */
    answer_held(r, &r->held, -1);
    settle_awaiting_info(r, false);
    while (r->waiting) {
        gw_op *op = r->waiting;
        op_unlink(&r->waiting, op);
        op->cb(NULL, op->arg);
        op_free(op);
    }
    if (r->watchdog_ev) event_free(r->watchdog_ev);
    if (r->load_retry_ev) event_free(r->load_retry_ev);
    if (r->health_ev) event_free(r->health_ev);
    free(r);
}

void gw_redis_free(gw_redis *g) {
    if (!g) return;
    g->closing = true;
    node_free(g->one);
    g->one = NULL;
    if (g->router) {
        /* Every node's callbacks first (nothing routes any more): then the router. */
        for (size_t i = 0; i < gw_router_count(g->router); i++)
            node_free(gw_router_node(g->router, i, NULL, NULL));
        gw_router_free(g->router);
    }
    free(g);
}

/* MOVED and ASK redirections followed and slot maps loaded; zeros without a cluster. */
void gw_redis_cluster_counts(const gw_redis *g, unsigned long long *moved,
                             unsigned long long *asked, unsigned long long *maps) {
    const gw_router_counts *c = g->router ? gw_router_counters(g->router) : NULL;
    *moved = c ? c->moved : 0;
    *asked = c ? c->asked : 0;
    *maps = c ? c->maps : 0;
}

/* The address of a usable master for a connection of its own (the events subscription):
 * the i-th (mod their number) of the masters of the map that are ready, else of the
 * seeds. False without a cluster. */
bool gw_redis_pick_node(const gw_redis *g, unsigned i, fleet_redis_addr *a) {
    if (!g || !g->router || g->closing) return false;
    size_t n = gw_router_count(g->router), ready = 0;
    for (size_t k = 0; k < n; k++) {
        bool in_map;
        const gw_node *r = gw_router_node(g->router, k, &in_map, NULL);
        ready += in_map && r->ready;
    }
    if (ready == 0) {
        *a = g->t->seeds[i % g->t->nseeds];
        return true;
    }
    size_t want = i % ready;
    for (size_t k = 0; k < n; k++) {
        bool in_map;
        const fleet_redis_addr *addr;
        const gw_node *r = gw_router_node(g->router, k, &in_map, &addr);
        if (in_map && r->ready && want-- == 0) {
            *a = *addr;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------ answers --------------- */

bool gw_redis_nothing_written(const redisReply *rep) {
    return rep && rep->type == REDIS_REPLY_ERROR && rep->str &&
           strncmp(rep->str, "NOREPLICAS", 10) == 0 && strstr(rep->str, "nothing was written");
}

void gw_redis_problem_of(const gw_redis *g, const redisReply *rep, gw_redis_problem *p) {
    fleet_redis_err e = rep ? fleet_redis_err_of(rep) : FLEET_REDIS_TRANSIENT;
    bool loading = rep ? e == FLEET_REDIS_TRANSIENT && strncmp(rep->str, "LOADING", 7) == 0
                       : g && loading_of(g);
    if (e == FLEET_REDIS_TRANSIENT && loading) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_LOADING,
                                "the job store (Redis) is loading its dataset; retry shortly", "1"};
    } else if (e == FLEET_REDIS_TRANSIENT && gw_redis_nothing_written(rep)) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_UNAVAILABLE,
                                "the job store has fewer replicas online than "
                                "FLEET_REDIS_WAIT_REPLICAS asks for: nothing was stored; retry "
                                "shortly",
                                "1"};
    } else if (e == FLEET_REDIS_TRANSIENT && rep && strncmp(rep->str, "NOREPLICAS", 10) == 0) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_UNAVAILABLE,
                                "the job store's replicas did not confirm the write in time "
                                "(FLEET_REDIS_WAIT_REPLICAS): it may or may not have been "
                                "stored; retry with the same Idempotency-Key",
                                "1"};
    } else if (e == FLEET_REDIS_TRANSIENT && rep) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_UNAVAILABLE,
                                "the job store (Redis) is busy or failing over; retry shortly",
                                "1"};
    } else if (e == FLEET_REDIS_TRANSIENT) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_UNAVAILABLE,
                                "the job store (Redis) is not reachable right now; retry shortly",
                                "1"};
    } else if (e == FLEET_REDIS_OOM) {
        *p = (gw_redis_problem){GW_PROBLEM_REDIS_FULL,
                                "the job store (Redis) is out of memory and refuses writes; "
                                "nothing was written; retry later",
                                "5"};
    } else {
        *p = (gw_redis_problem){GW_PROBLEM_INTERNAL, "the job store gave an unexpected answer",
                                NULL};
    }
}
