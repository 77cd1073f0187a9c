/* tl_redis.c: a throwaway redis-server per case (as hiredis' test.sh does: temp dir,
 * loopback, pidfile, cleanup, refuse a non-empty database) and sync hiredis helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tl_internal.h"

static int redis_seq;

static const char *redis_server_path(void) {
    const char *env = getenv("FLEET_TEST_REDIS_SERVER");
    if (env && *env) return env;
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = tl_printf("%s", path);
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        const char *cand = tl_printf("%s/redis-server", d);
        if (access(cand, X_OK) == 0) return cand;
    }
    for (const char *const *p =
             (const char *const[]){"/usr/bin/redis-server", "/usr/local/bin/redis-server", NULL};
         *p; p++)
        if (access(*p, X_OK) == 0) return *p;
    FAILF("redis-server not found on PATH (install redis-server, or set "
          "FLEET_TEST_REDIS_SERVER)");
}

static void redis_spawn_args(tl_redis *r, const char *const *extra);
static void redis_spawn(tl_redis *r) { redis_spawn_args(r, NULL); }

static void redis_spawn_args(tl_redis *r, const char *const *extra) {
    const char *port = tl_printf("%d", r->port);
    const char *pidfile = tl_printf("%s/redis.pid", r->dir);
    const char *argv[32];
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
    for (int i = 0; extra && extra[i]; i++) {
        if (n >= 31) FAILF("too many extra redis-server arguments");
        argv[n++] = extra[i];
    }
    argv[n++] = NULL;
    tl_spawn_opts o = {.name = tl_printf("redis-%d-port%d", redis_seq, r->port),
                       .path = path,
                       .argv = argv};
    r->proc = tl_spawn(&o);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
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
    if (c && !c->err) {
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

tl_redis *tl_redis_start(const tl_redis_opts *o) {
    tl_redis *r = tl_xmalloc(sizeof(*r));
    memset(r, 0, sizeof(*r));
    tl_defer(free, r);
    r->appendonly = o && o->appendonly;
    snprintf(r->dir, sizeof(r->dir), "%s/redis-%d", tl_tmpdir(), ++redis_seq);
    if (mkdir(r->dir, 0755) != 0) FAILF("mkdir %s: %s", r->dir, strerror(errno));
    for (int attempt = 0;; attempt++) {
        r->port = tl_free_port();
        redis_spawn(r);
        redis_boot(r, true);
        if (tl_proc_alive(r->proc)) break;
        /* It exited: most likely the port was taken between tl_free_port and bind. */
        char *log = tl_read_file(r->proc->log_path, NULL);
        bool in_use = log && strstr(log, "in use");
        if (!in_use || attempt >= 4) {
            if (log) printf("%s\n", log);
            FAILF("redis-server exited at startup: %s", tl_proc_describe(r->proc));
        }
    }
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
