/* tl_redis.c: a throwaway redis-server per case (as hiredis' test.sh does: temp dir,
 * loopback, pidfile, cleanup, refuse a non-empty database), its replicas and Sentinels,
 * and sync hiredis helpers. FLEET_TEST_REDIS_SERVER picks the server program (a name
 * looked up on PATH, or a path): redis-server by default, valkey-server for Valkey; both
 * take the same arguments and configuration lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tl_internal.h"

static int redis_seq;

/* The server program: FLEET_TEST_REDIS_SERVER (default redis-server); a name without a
 * slash is looked up on PATH (then in /usr/bin and /usr/local/bin), as a shell would. */
static const char *redis_server_path(void) {
    const char *env = getenv("FLEET_TEST_REDIS_SERVER");
    const char *name = env && *env ? env : "redis-server";
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0) FAILF("FLEET_TEST_REDIS_SERVER=%s: %s", name, strerror(errno));
        return name;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = tl_printf("%s:/usr/bin:/usr/local/bin", path);
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        const char *cand = tl_printf("%s/%s", d, name);
        if (access(cand, X_OK) == 0) return cand;
    }
    FAILF("%s not found on PATH (install it, or set FLEET_TEST_REDIS_SERVER to a server "
          "program: redis-server, valkey-server, or a path)",
          name);
}

/* extra (NULL-terminated) copied into harness-owned memory; NULL stays NULL. */
static const char *const *args_copy(const char *const *extra) {
    if (!extra) return NULL;
    size_t n = 0;
    while (extra[n]) n++;
    const char **out = tl_alloc((n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) out[i] = tl_printf("%s", extra[i]);
    return out;
}

static void redis_spawn_args(tl_redis *r, const char *const *extra);
static void redis_spawn(tl_redis *r) { redis_spawn_args(r, NULL); }

static void redis_spawn_args(tl_redis *r, const char *const *extra) {
    const char *port = tl_printf("%d", r->port);
    const char *pidfile = tl_printf("%s/redis.pid", r->dir);
    const char *argv[80];
    int n = 0;
    const char *path = redis_server_path();
    argv[n++] = path;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--pidfile";
    argv[n++] = pidfile;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = r->appendonly ? "yes" : "no";
    if (r->appendonly) {
        argv[n++] = "--appendfsync";
        argv[n++] = "everysec"; /* what deploy/local.sh ships */
    }
    argv[n++] = "--logfile";
    argv[n++] = "";
    argv[n++] = "--databases";
    argv[n++] = "16";
    /* The server's own arguments (kept for restarts), then this start's. */
    for (int k = 0; k < 2; k++) {
        const char *const *more = k == 0 ? r->extra_args : extra;
        for (int i = 0; more && more[i]; i++) {
            if (n >= 79) FAILF("too many extra redis-server arguments");
            argv[n++] = more[i];
        }
    }
    argv[n++] = NULL;
    tl_spawn_opts o = {.name = tl_printf("redis-%d-port%d", r->seq, r->port),
                       .path = path,
                       .argv = argv};
    r->proc = tl_spawn(&o);
    snprintf(r->url, sizeof(r->url), "%s", tl_redis_url_as(r, r->user, r->password));
}

const char *tl_redis_url_as(const tl_redis *r, const char *user, const char *password) {
    if (!password || !*password) return tl_printf("redis://127.0.0.1:%d", r->port);
    return tl_printf("redis://%s:%s@127.0.0.1:%d", user && *user ? user : "default", password,
                     r->port);
}

/* AUTH on c as r's user when r has a password. False (err filled) when refused. */
static bool redis_auth(redisContext *c, const tl_redis *r, char *err, size_t errlen) {
    if (!r->password[0]) return true;
    redisReply *rep = r->user[0] ? redisCommand(c, "AUTH %s %s", r->user, r->password)
                                 : redisCommand(c, "AUTH %s", r->password);
    bool ok = rep && rep->type == REDIS_REPLY_STATUS;
    snprintf(err, errlen, "AUTH: %s",
             !rep       ? (c->errstr[0] ? c->errstr : "no reply")
             : rep->str ? rep->str
                        : "?");
    if (rep) freeReplyObject(rep);
    return ok;
}

typedef struct redis_probe {
    tl_redis *r;
    bool any_answer; /* LOADING counts as an answer (a server still loading its data) */
    bool died;
} redis_probe;

/* Connects and sends PING: true on PONG (or on any answer with any_answer), or when the
 * process died (pr->died says so). */
static bool redis_answers(void *arg) {
    redis_probe *pr = arg;
    if (!tl_proc_alive(pr->r->proc)) {
        pr->died = true;
        return true;
    }
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", pr->r->port, tv);
    bool ok = false;
    char err[256];
    if (c && !c->err && redis_auth(c, pr->r, err, sizeof err)) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep &&
             (pr->any_answer || (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0));
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return ok;
}

/* Checks that the server on r->port is the process we started (not someone else's
 * Redis that already held the port), through INFO's process_id and our pidfile. */
static void redis_check_identity(tl_redis *r, redisContext *c) {
    redisReply *info = tl_redis_cmd(c, "INFO server");
    const char *pid_line = strstr(info->str, "process_id:");
    long pid = pid_line ? strtol(pid_line + strlen("process_id:"), NULL, 10) : -1;
    if (pid != (long)r->proc->pid)
        FAILF("the Redis on port %d is not ours (its pid is %ld, ours %d): refusing to use it",
              r->port, pid, (int)r->proc->pid);
    char *pf = tl_read_file(tl_printf("%s/redis.pid", r->dir), NULL);
    if (!pf || strtol(pf, NULL, 10) != (long)r->proc->pid)
        FAILF("redis pidfile %s/redis.pid does not hold pid %d", r->dir, (int)r->proc->pid);
}

static void redis_boot(tl_redis *r, bool require_empty) {
    redis_probe pr = {.r = r};
    if (!tl_wait_for(redis_answers, &pr, 10000))
        FAILF("redis-server on port %d did not answer PING within 10 s", r->port);
    if (pr.died) return; /* the caller decides: retry on another port, or fail */
    redisContext *c = tl_redis_connect(r);
    redis_check_identity(r, c);
    if (require_empty) {
        long long n = tl_redis_int(c, "DBSIZE");
        if (n != 0)
            FAILF("refusing to continue: the Redis on port %d has %lld keys (expected an "
                  "empty database)",
                  r->port, n);
    }
}

/* Gives r a directory and starts it on a free port, again on another port when the one
 * it got was taken between tl_free_port and bind; empty: its database must be empty. */
static void spawn_on_a_free_port(tl_redis *r, bool empty, const char *what) {
    r->seq = ++redis_seq;
    snprintf(r->dir, sizeof(r->dir), "%s/redis-%d", tl_tmpdir(), r->seq);
    if (mkdir(r->dir, 0755) != 0) FAILF("mkdir %s: %s", r->dir, strerror(errno));
    bool cluster = false;
    for (const char *const *a = r->extra_args; a && *a; a++)
        if (strcmp(*a, "--cluster-enabled") == 0) cluster = true;
    for (int attempt = 0;; attempt++) {
        r->port = tl_free_port();
        /* A cluster node's bus listens on port + 10000 unless told otherwise, which an
         * ephemeral port above 55535 cannot have: a free port of its own. */
        if (cluster)
            redis_spawn_args(r, TL_ARGS("--cluster-port", tl_printf("%d", tl_free_port())));
        else redis_spawn(r);
        redis_boot(r, empty);
        if (tl_proc_alive(r->proc)) return;
        char *log = tl_read_file(r->proc->log_path, NULL);
        bool in_use = log && strstr(log, "in use");
        if (!in_use || attempt >= 4) {
            if (log) printf("%s\n", log);
            FAILF("%s exited at startup: %s", what, tl_proc_describe(r->proc));
        }
    }
}

tl_redis *tl_redis_start(const tl_redis_opts *o) {
    tl_redis *r = tl_xmalloc(sizeof(*r));
    memset(r, 0, sizeof(*r));
    tl_defer(free, r);
    r->appendonly = o && o->appendonly;
    r->extra_args = args_copy(o ? o->extra_args : NULL);
    if (o && o->password) {
        snprintf(r->user, sizeof(r->user), "%s", o->user ? o->user : "");
        snprintf(r->password, sizeof(r->password), "%s", o->password);
    }
    spawn_on_a_free_port(r, true, "redis-server");
    return r;
}

void tl_redis_stop(tl_redis *r) { tl_proc_stop(r->proc, 10000); }

void tl_redis_kill9(tl_redis *r) { tl_proc_kill9(r->proc); }

void tl_redis_restart(tl_redis *r) {
    if (tl_proc_alive(r->proc)) tl_redis_stop(r);
    for (int attempt = 0;; attempt++) {
        redis_spawn(r);
        redis_boot(r, false);
        if (tl_proc_alive(r->proc)) return;
        /* The old socket may linger briefly; try again on the same port. */
        if (attempt >= 20) FAILF("redis-server did not restart on port %d", r->port);
        tl_sleep_ms(100);
    }
}

/* ------------------------------------------------------------ restart while loading - */

void tl_redis_restart_args(tl_redis *r, const char *const *extra_args) {
    if (tl_proc_alive(r->proc)) tl_redis_stop(r);
    for (int attempt = 0;; attempt++) {
        redis_spawn_args(r, extra_args);
        redis_probe pr = {.r = r, .any_answer = true};
        if (!tl_wait_for(redis_answers, &pr, 10000))
            FAILF("redis-server on port %d did not accept connections within 10 s", r->port);
        if (!pr.died) {
            redis_check_identity(r, tl_redis_connect(r));
            return;
        }
        if (attempt >= 20) FAILF("redis-server did not restart on port %d", r->port);
        tl_sleep_ms(100);
    }
}

void tl_redis_restart_loading(tl_redis *r, redisContext *c, int keys) {
    for (int i = 0; i < keys; i++)
        redisAppendCommand(c, "SET tl-loading-pad:%d %s", i, "0123456789abcdef0123456789abcdef");
    for (int i = 0; i < keys; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK) FAILF("pipeline: %s", c->errstr);
        freeReplyObject(rep);
    }
    tl_redis_cmd(c, "SAVE");
    /* Redis answers (LOADING) only between chunks of this many bytes of the file. */
    tl_redis_restart_args(r, TL_ARGS("--key-load-delay", "100",
                                     "--loading-process-events-interval-bytes", "1024"));
}

/* ------------------------------------------------------------ hiredis --------------- */

static void redis_free_ctx(void *c) { redisFree(c); }
static void redis_free_reply(void *r) { freeReplyObject(r); }

redisContext *tl_redis_connect(tl_redis *r) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c) FAILF("redis connect to port %d: out of memory", r->port);
    if (c->err) {
        char err[256];
        snprintf(err, sizeof(err), "%s", c->errstr);
        redisFree(c);
        FAILF("redis connect to port %d: %s", r->port, err);
    }
    struct timeval rw = {10, 0};
    redisSetTimeout(c, rw);
    char err[256];
    if (!redis_auth(c, r, err, sizeof err)) {
        redisFree(c);
        FAILF("redis on port %d refused the harness's %s", r->port, err);
    }
    tl_defer(redis_free_ctx, c);
    return c;
}

static redisReply *check_reply(redisContext *c, redisReply *rep, bool allow_error,
                               const char *what) {
    if (!rep) FAILF("redis %s: %s", what, c->errstr[0] ? c->errstr : "connection error");
    tl_defer(redis_free_reply, rep);
    if (rep->type == REDIS_REPLY_ERROR && !allow_error)
        FAILF("redis %s: error reply: %s", what, rep->str);
    return rep;
}

redisReply *tl_redis_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    return check_reply(c, rep, false, fmt);
}

redisReply *tl_redis_cmd_allow_error(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    return check_reply(c, rep, true, fmt);
}

redisReply *tl_redis_cmdargv(redisContext *c, int argc, const char **argv) {
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    return check_reply(c, rep, false, argc > 0 ? argv[0] : "(empty)");
}

long long tl_redis_int(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    check_reply(c, rep, false, fmt);
    if (rep->type != REDIS_REPLY_INTEGER)
        FAILF("redis %s: expected an integer reply, got type %d", fmt, rep->type);
    return rep->integer;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

tl_strlist tl_redis_keys(redisContext *c, const char *pattern) {
    redisReply *rep = tl_redis_cmd(c, "KEYS %s", pattern);
    if (rep->type != REDIS_REPLY_ARRAY) FAILF("KEYS %s: not an array reply", pattern);
    tl_strlist l;
    l.n = rep->elements;
    l.v = tl_xmalloc((l.n ? l.n : 1) * sizeof(char *));
    tl_defer(free, l.v);
    for (size_t i = 0; i < l.n; i++) l.v[i] = tl_printf("%s", rep->element[i]->str);
    qsort(l.v, l.n, sizeof(char *), cmp_str);
    return l;
}

bool tl_strlist_contains(const tl_strlist *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return true;
    return false;
}

/* ------------------------------------------------------------ replicas -------------- */

/* A connection to 127.0.0.1:port (AUTH as auth's user when it has a password), NULL when
 * it cannot connect or is refused; short timeouts, so a dead or stopped server costs at
 * most half a second. Not deferred: the caller frees it. */
static redisContext *redis_try_connect(int port, const tl_redis *auth) {
    struct timeval tv = {0, 500000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c) return NULL;
    char err[256];
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK ||
        (auth && !redis_auth(c, auth, err, sizeof err))) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* The value of "field:" in an INFO (or similar "name:value" lines) text, harness-owned;
 * NULL when absent. */
static const char *info_field(const char *text, const char *field) {
    size_t n = strlen(field);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, field, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "\r\n");
            return tl_printf("%.*s", (int)len, v);
        }
    }
    return NULL;
}

/* INFO <section> of the server on port, harness-owned; NULL without an answer. */
static const char *info_at(int port, const tl_redis *auth, const char *section) {
    redisContext *c = redis_try_connect(port, auth);
    if (!c) return NULL;
    redisReply *rep = redisCommand(c, "INFO %s", section);
    const char *out = rep && rep->type == REDIS_REPLY_STRING ? tl_printf("%s", rep->str) : NULL;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return out;
}

static const char *role_at(int port, const tl_redis *auth) {
    redisContext *c = redis_try_connect(port, auth);
    if (!c) return NULL;
    redisReply *rep = redisCommand(c, "ROLE");
    const char *out = NULL;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING)
        out = tl_printf("%s", rep->element[0]->str);
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return out;
}

const char *tl_redis_role(const tl_redis *r) { return role_at(r->port, r); }

static bool replica_link_up(void *arg) {
    tl_redis *r = arg;
    if (!tl_proc_alive(r->proc)) return true; /* the caller says it died */
    const char *info = info_at(r->port, r, "replication");
    const char *link = info ? info_field(info, "master_link_status") : NULL;
    return link && strcmp(link, "up") == 0;
}

tl_redis *tl_redis_start_replica(tl_redis *primary) {
    tl_redis *r = tl_xmalloc(sizeof(*r));
    memset(r, 0, sizeof(*r));
    tl_defer(free, r);
    r->appendonly = primary->appendonly;
    snprintf(r->user, sizeof(r->user), "%s", primary->user);
    snprintf(r->password, sizeof(r->password), "%s", primary->password);
    /* The primary's own arguments (its password or ACL file: after a failover this server
     * is the primary), then where to replicate from and how to authenticate there. */
    const char *args[64];
    int n = 0;
    for (int i = 0; primary->extra_args && primary->extra_args[i]; i++) {
        if (n >= 56) FAILF("too many redis-server arguments for a replica");
        args[n++] = primary->extra_args[i];
    }
    args[n++] = "--replicaof";
    args[n++] = "127.0.0.1";
    args[n++] = tl_printf("%d", primary->port);
    if (primary->password[0]) {
        args[n++] = "--masterauth";
        args[n++] = primary->password;
        if (primary->user[0]) {
            args[n++] = "--masteruser";
            args[n++] = primary->user;
        }
    }
    args[n] = NULL;
    r->extra_args = args_copy(args);
    /* A primary waits 5 s (repl-diskless-sync-delay) for more replicas before it starts a
     * full sync; the harness starts them one at a time. */
    tl_redis_cmd(tl_redis_connect(primary), "CONFIG SET repl-diskless-sync-delay 0");
    spawn_on_a_free_port(r, false, "replica"); /* it may hold the primary's data already */
    if (!tl_wait_for(replica_link_up, r, TL_WAIT_MS) || !tl_proc_alive(r->proc)) {
        const char *info = info_at(r->port, r, "replication");
        FAILF("the replica on port %d is not in sync with port %d (%s); INFO replication:\n%s",
              r->port, primary->port, tl_proc_describe(r->proc), info ? info : "(no answer)");
    }
    return r;
}

/* ------------------------------------------------------------ Sentinel -------------- */

/* SENTINEL <args> on the sentinel at port: the reply (the caller frees it) or NULL. */
static redisReply *sentinel_cmd(int port, const char *fmt, const char *master) {
    redisContext *c = redis_try_connect(port, NULL);
    if (!c) return NULL;
    redisReply *rep = redisCommand(c, fmt, master);
    redisFree(c);
    return rep;
}

/* The port a sentinel names for master (host must be 127.0.0.1); 0 when it does not
 * answer or names none. */
static int sentinel_primary_port(int port, const char *master) {
    redisReply *rep = sentinel_cmd(port, "SENTINEL get-master-addr-by-name %s", master);
    int out = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "127.0.0.1") == 0 &&
        rep->element[1]->type == REDIS_REPLY_STRING)
        out = atoi(rep->element[1]->str);
    if (rep) freeReplyObject(rep);
    return out;
}

/* A field of SENTINEL MASTER <name> (a flat array of names and values) as a number;
 * -1 when there is no answer or no such field. */
static long sentinel_master_field(int port, const char *master, const char *field) {
    redisReply *rep = sentinel_cmd(port, "SENTINEL MASTER %s", master);
    long out = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < rep->elements; i += 2)
            if (rep->element[i]->type == REDIS_REPLY_STRING &&
                rep->element[i + 1]->type == REDIS_REPLY_STRING &&
                strcmp(rep->element[i]->str, field) == 0)
                out = strtol(rep->element[i + 1]->str, NULL, 10);
    if (rep) freeReplyObject(rep);
    return out;
}

static void sentinel_write_conf(const tl_sentinels *s, int i, const tl_redis *primary) {
    const char *dir = tl_printf("%s/sentinel-%d", tl_tmpdir(), i + 1);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) FAILF("mkdir %s: %s", dir, strerror(errno));
    const char *conf = tl_printf("%s/sentinel.conf", dir);
    /* Sentinel rewrites its config file as it learns (replicas, other sentinels, the
     * current epoch), so each one has its own writable file. */
    FILE *f = fopen(conf, "w");
    if (!f) FAILF("%s: %s", conf, strerror(errno));
    fprintf(f,
            "port %d\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            "dir %s\n"
            "pidfile %s/sentinel.pid\n"
            "logfile \"\"\n"
            "sentinel resolve-hostnames no\n"
            "sentinel monitor %s 127.0.0.1 %d %d\n"
            "sentinel down-after-milliseconds %s 1000\n"
            "sentinel failover-timeout %s 5000\n"
            "sentinel parallel-syncs %s 1\n",
            s->ports[i], dir, dir, s->master, primary->port, s->quorum, s->master, s->master,
            s->master);
    if (primary->password[0]) {
        if (primary->user[0]) fprintf(f, "sentinel auth-user %s %s\n", s->master, primary->user);
        fprintf(f, "sentinel auth-pass %s %s\n", s->master, primary->password);
    }
    if (fclose(f) != 0) FAILF("%s: %s", conf, strerror(errno));
}

static bool sentinel_answers(void *arg) {
    tl_proc *p = ((void **)arg)[0];
    int port = *(int *)((void **)arg)[1];
    if (!tl_proc_alive(p)) return true;
    redisContext *c = redis_try_connect(port, NULL);
    if (!c) return false;
    redisReply *rep = redisCommand(c, "PING");
    bool ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return ok;
}

typedef struct sentinels_probe {
    tl_sentinels *s;
    long replicas;
} sentinels_probe;

/* Every sentinel knows the others and the primary's replicas: only then can they agree
 * that the primary is down (quorum) and elect one of them to fail it over. */
static bool sentinels_know_each_other(void *arg) {
    sentinels_probe *pr = arg;
    for (int i = 0; i < pr->s->n; i++) {
        if (sentinel_master_field(pr->s->ports[i], pr->s->master, "num-other-sentinels") !=
            pr->s->n - 1)
            return false;
        if (sentinel_master_field(pr->s->ports[i], pr->s->master, "num-slaves") < pr->replicas)
            return false;
    }
    return true;
}

tl_sentinels *tl_sentinels_start(tl_redis *primary, const char *master, int n) {
    if (n < 1 || n > TL_MAX_SENTINELS)
        FAILF("tl_sentinels_start: 1 to %d sentinels", TL_MAX_SENTINELS);
    tl_sentinels *s = tl_alloc(sizeof(*s));
    s->n = n;
    s->quorum = n >= 2 ? 2 : 1;
    snprintf(s->master, sizeof(s->master), "%s", master);
    snprintf(s->user, sizeof(s->user), "%s", primary->user);
    snprintf(s->password, sizeof(s->password), "%s", primary->password);
    const char *path = redis_server_path();
    for (int i = 0; i < n; i++) {
        for (int attempt = 0;; attempt++) {
            s->ports[i] = tl_free_port();
            sentinel_write_conf(s, i, primary);
            const char *conf = tl_printf("%s/sentinel-%d/sentinel.conf", tl_tmpdir(), i + 1);
            const char *argv[] = {path, conf, "--sentinel", NULL};
            tl_spawn_opts o = {.name = tl_printf("sentinel-%d-port%d", i + 1, s->ports[i]),
                               .path = path,
                               .argv = argv};
            s->procs[i] = tl_spawn(&o);
            void *probe[2] = {s->procs[i], &s->ports[i]};
            if (!tl_wait_for(sentinel_answers, probe, 10000))
                FAILF("sentinel on port %d did not answer PING within 10 s", s->ports[i]);
            if (tl_proc_alive(s->procs[i])) break;
            char *log = tl_read_file(s->procs[i]->log_path, NULL);
            bool in_use = log && strstr(log, "in use");
            if (!in_use || attempt >= 4) {
                if (log) printf("%s\n", log);
                FAILF("sentinel exited at startup: %s", tl_proc_describe(s->procs[i]));
            }
        }
    }
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s->addrs + len, sizeof(s->addrs) - len, "%s127.0.0.1:%d",
                                i ? "," : "", s->ports[i]);
    const char *info = info_at(primary->port, primary, "replication");
    const char *conn = info ? info_field(info, "connected_slaves") : NULL;
    sentinels_probe pr = {.s = s, .replicas = conn ? atol(conn) : 0};
    if (!tl_wait_for(sentinels_know_each_other, &pr, TL_WAIT_MS))
        FAILF("the %d sentinels did not find each other and the %ld replica(s) of port %d "
              "within %d ms (sentinel 1: %ld others, %ld replicas)",
              n, pr.replicas, primary->port, TL_WAIT_MS,
              sentinel_master_field(s->ports[0], master, "num-other-sentinels"),
              sentinel_master_field(s->ports[0], master, "num-slaves"));
    return s;
}

const char *tl_sentinels_addrs(const tl_sentinels *s) { return s->addrs; }

int tl_sentinels_primary_port(const tl_sentinels *s) {
    for (int i = 0; i < s->n; i++) {
        if (!tl_proc_alive(s->procs[i])) continue;
        int port = sentinel_primary_port(s->ports[i], s->master);
        if (port) return port;
    }
    return 0;
}

typedef struct failover_probe {
    const tl_sentinels *s;
    int old_port;
    int port; /* the new primary, once every sentinel names it */
    tl_redis auth;
} failover_probe;

static bool failover_done(void *arg) {
    failover_probe *pr = arg;
    int port = 0;
    for (int i = 0; i < pr->s->n; i++) {
        if (!tl_proc_alive(pr->s->procs[i])) continue;
        int p = sentinel_primary_port(pr->s->ports[i], pr->s->master);
        if (p == 0 || p == pr->old_port || (port && p != port)) return false;
        port = p;
    }
    const char *role = port ? role_at(port, &pr->auth) : NULL;
    if (!role || strcmp(role, "master") != 0) return false;
    pr->port = port;
    return true;
}

int tl_sentinels_wait_failover(const tl_sentinels *s, int old_port, int deadline_ms) {
    failover_probe pr = {.s = s, .old_port = old_port};
    snprintf(pr.auth.user, sizeof(pr.auth.user), "%s", s->user);
    snprintf(pr.auth.password, sizeof(pr.auth.password), "%s", s->password);
    if (tl_wait_for(failover_done, &pr, deadline_ms)) return pr.port;
    char said[512] = "";
    size_t len = 0;
    for (int i = 0; i < s->n && len < sizeof(said); i++)
        len += (size_t)snprintf(said + len, sizeof(said) - len, "%ssentinel %d: port %d",
                                i ? ", " : "", s->ports[i],
                                tl_proc_alive(s->procs[i])
                                    ? sentinel_primary_port(s->ports[i], s->master)
                                    : -1);
    FAILF("the sentinels did not promote a new primary (other than port %d, answering ROLE "
          "master) within %d ms: %s",
          old_port, deadline_ms, said);
}
