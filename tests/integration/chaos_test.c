/* chaos_test.c: crash recovery under fire. Workers are killed with SIGKILL (as an
 * out-of-memory kill or a lost machine would) while jobs run; every job must still end
 * exactly once, succeeded, with nothing left unacknowledged in Redis. A worker that is
 * merely paused past its lease must not be able to write over the attempt that replaced
 * it, and a live worker must keep a job that outlasts its lease.
 *
 * A subscriber thread on the fleet's events channel ("{prefix}:events", messages of
 * lines "<id> <status>", one per job of a batch) counts how often each job was claimed ("running") and finished
 * ("succeeded", "failed", "cancelled"): a finish must be published exactly once. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "fleet/state.h"
#include "testlib.h"

/* ------------------------------------------------------------ the events subscriber - */

typedef struct event_msg {
    char id[32];
    char status[16];
} event_msg;

/* The thread uses no harness function (they are not thread-safe): its own hiredis
 * connection and malloc, all released by events_stop. */
typedef struct events {
    pthread_t th;
    bool started, joined;
    int port;
    char channel[96];
    atomic_bool stop, ready, failed;
    char err[256];
    pthread_mutex_t mu;
    event_msg *v;
    size_t n, cap;
    size_t other; /* messages that were not "<id> <status>" */
} events;

static void events_add_line(events *ev, const char *payload, size_t len) {
    const char *sp = memchr(payload, ' ', len);
    pthread_mutex_lock(&ev->mu);
    if (!sp || sp == payload || (size_t)(sp - payload) >= sizeof ev->v[0].id ||
        len - (size_t)(sp - payload) - 1 >= sizeof ev->v[0].status) {
        ev->other++;
        pthread_mutex_unlock(&ev->mu);
        return;
    }
    if (ev->n == ev->cap) {
        size_t cap = ev->cap ? ev->cap * 2 : 4096;
        event_msg *nv = realloc(ev->v, cap * sizeof *nv);
        if (!nv) {
            ev->other++;
            pthread_mutex_unlock(&ev->mu);
            return;
        }
        ev->v = nv;
        ev->cap = cap;
    }
    event_msg *m = &ev->v[ev->n++];
    size_t idlen = (size_t)(sp - payload);
    memcpy(m->id, payload, idlen);
    m->id[idlen] = '\0';
    size_t stlen = len - idlen - 1;
    memcpy(m->status, sp + 1, stlen);
    m->status[stlen] = '\0';
    pthread_mutex_unlock(&ev->mu);
}

/* A message names one job per line (a batch's claim or finish publishes one message). */
static void events_add(events *ev, const char *payload, size_t len) {
    const char *p = payload, *end = payload + len;
    fleet_event e;
    while (fleet_event_next(&p, end, &e))
        events_add_line(ev, e.id, e.id_len + (e.what_len ? 1 + e.what_len : 0));
}

static void events_fail(events *ev, const char *what, const redisContext *c) {
    snprintf(ev->err, sizeof ev->err, "%s: %s", what, c && c->errstr[0] ? c->errstr : "no reply");
    atomic_store(&ev->failed, true);
}

/* Takes every complete reply out of the reader. Returns false on a protocol error. */
static bool events_drain(events *ev, redisContext *c) {
    void *reply = NULL;
    while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply) {
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING)
            events_add(ev, r->element[2]->str, r->element[2]->len);
        freeReplyObject(reply);
        reply = NULL;
    }
    return c->err == 0;
}

static void *events_main(void *arg) {
    events *ev = arg;
    struct timeval ct = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", ev->port, ct);
    if (!c || c->err) {
        events_fail(ev, "connect", c);
        if (c) redisFree(c);
        return NULL;
    }
    /* A timeout for the SUBSCRIBE round trip; afterwards the thread reads only when
     * poll() says there is data, so the timeout never breaks the context. */
    struct timeval io = {2, 0};
    redisSetTimeout(c, io);
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", ev->channel);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        events_fail(ev, "SUBSCRIBE", c);
        if (r) freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    atomic_store(&ev->ready, true);
    while (!atomic_load(&ev->stop)) {
        if (!events_drain(ev, c)) {
            events_fail(ev, "reading", c);
            break;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, 100);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        if (redisBufferRead(c) != REDIS_OK) {
            events_fail(ev, "reading", c);
            break;
        }
    }
    if (!atomic_load(&ev->failed)) events_drain(ev, c);
    redisFree(c);
    return NULL;
}

static bool events_ready(void *arg) {
    events *ev = arg;
    return atomic_load(&ev->ready) || atomic_load(&ev->failed);
}

/* Stops (joins) the thread; safe to call twice. */
static void events_stop(events *ev) {
    if (!ev->started || ev->joined) return;
    atomic_store(&ev->stop, true);
    pthread_join(ev->th, NULL);
    ev->joined = true;
}

static void events_free(void *arg) {
    events *ev = arg;
    events_stop(ev);
    pthread_mutex_destroy(&ev->mu);
    free(ev->v);
    ev->v = NULL;
}

/* Subscribes to the fleet's events channel and returns once the subscription is active
 * (so that no event of a job submitted afterwards is missed). */
static events *events_start(tl_fleet *f) {
    events *ev = tl_alloc(sizeof *ev);
    ev->port = f->redis->port;
    snprintf(ev->channel, sizeof ev->channel, "{%s}:events", f->prefix);
    pthread_mutex_init(&ev->mu, NULL);
    tl_defer(events_free, ev);
    if (pthread_create(&ev->th, NULL, events_main, ev) != 0) FAILF("pthread_create failed");
    ev->started = true;
    ASSERT_WAIT_FOR(events_ready, ev, 10000);
    if (atomic_load(&ev->failed)) FAILF("events subscriber: %s", ev->err);
    return ev;
}

static size_t events_count(events *ev) {
    pthread_mutex_lock(&ev->mu);
    size_t n = ev->n;
    pthread_mutex_unlock(&ev->mu);
    return n;
}

static int cmp_event(const void *a, const void *b) {
    const event_msg *x = a, *y = b;
    return strcmp(x->id, y->id);
}

/* After events_stop: sorts the messages by job id for events_of. */
static void events_sort(events *ev) {
    if (ev->n) qsort(ev->v, ev->n, sizeof *ev->v, cmp_event);
}

typedef struct job_events {
    int running, succeeded, failed, cancelled, progress;
} job_events;

/* Counts the messages of one job (events_sort first). */
static job_events events_of(const events *ev, const char *id) {
    job_events c = {0};
    size_t lo = 0, hi = ev->n;
    while (lo < hi) { /* the first message with id >= the one sought */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ev->v[mid].id, id) < 0) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i < ev->n && strcmp(ev->v[i].id, id) == 0; i++) {
        const char *s = ev->v[i].status;
        if (strcmp(s, "running") == 0) c.running++;
        else if (strcmp(s, "succeeded") == 0) c.succeeded++;
        else if (strcmp(s, "failed") == 0) c.failed++;
        else if (strcmp(s, "cancelled") == 0) c.cancelled++;
        else if (strcmp(s, "progress") == 0) c.progress++;
    }
    return c;
}

/* Waits until no message has arrived for quiet_ms (at most deadline_ms): the channel has
 * drained. */
static void events_settle(events *ev, int quiet_ms, int deadline_ms) {
    int64_t end = tl_now_ms() + deadline_ms;
    size_t last = events_count(ev);
    int64_t since = tl_now_ms();
    while (tl_now_ms() < end) {
        /* Quiet is time without messages: it has to pass, so this polls every 50 ms. */
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        size_t n = events_count(ev);
        if (n != last) {
            last = n;
            since = tl_now_ms();
        } else if (tl_now_ms() - since >= quiet_ms) {
            return;
        }
    }
}

/* ------------------------------------------------------------ helpers --------------- */

/* xorshift64*: a reproducible random sequence per seed (printed by each case). */
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s ? s : 0x9e3779b97f4a7c15ULL; }
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static int rng_range(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

typedef struct final_counts {
    size_t final, succeeded, failed, cancelled, missing;
} final_counts;

/* Reads the status of every job straight from Redis in one pipeline (1,000 GETs over HTTP
 * on every poll would load the gateway more than the jobs do). */
static final_counts count_final(tl_fleet *f, const char *const *ids, size_t n) {
    final_counts c = {0};
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommand(f->rc, "HGET {%s}:job:%s status", f->prefix, ids[i]) != REDIS_OK)
            FAILF("redis pipeline: %s", f->rc->errstr);
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(f->rc, &rep) != REDIS_OK || !rep)
            FAILF("redis pipeline: %s", f->rc->errstr[0] ? f->rc->errstr : "no reply");
        redisReply *r = rep;
        if (r->type == REDIS_REPLY_STRING) {
            if (strcmp(r->str, "succeeded") == 0) c.succeeded++;
            else if (strcmp(r->str, "failed") == 0) c.failed++;
            else if (strcmp(r->str, "cancelled") == 0) c.cancelled++;
        } else {
            c.missing++;
        }
        freeReplyObject(r);
    }
    c.final = c.succeeded + c.failed + c.cancelled;
    return c;
}

typedef struct all_final_arg {
    tl_fleet *f;
    const char *const *ids;
    size_t n;
    final_counts last;
} all_final_arg;

static bool all_final(void *arg) {
    all_final_arg *a = arg;
    a->last = count_final(a->f, a->ids, a->n);
    return a->last.final == a->n;
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* Picks a running worker of the fleet at random and kills it with SIGKILL. */
static tl_proc *kill_random_worker(tl_fleet *f) {
    tl_proc *alive[TL_MAX_WORKERS];
    int n = 0;
    for (int i = 0; i < f->nworkers; i++)
        if (tl_proc_alive(f->workers[i])) alive[n++] = f->workers[i];
    if (n == 0)
        FAILF("no worker is alive (%s)", f->nworkers ? tl_proc_describe(f->workers[0]) : "none");
    tl_proc *victim = alive[rng_next() % (uint64_t)n];
    tl_proc_kill9(victim);
    return victim;
}

static long long stats_counter(tl_fleet *f, const char *model, const char *counter) {
    tl_resp *r = tl_get(f, "/v1/stats");
    ASSERT_HTTP_STATUS(r, 200);
    return tl_jint(r->json, tl_printf("models.%s.%s", model, counter));
}

/* Checks that nothing of the model is left in its stream: no entry, nothing pending in the
 * consumer group, no entry -> job mapping. */
static void assert_stream_drained(tl_fleet *f, const char *model) {
    const char *stream = tl_printf("{%s}:stream:%s", f->prefix, model);
    long long xlen = tl_redis_int(f->rc, "XLEN %s", stream);
    redisReply *p = tl_redis_cmd(f->rc, "XPENDING %s workers", stream);
    if (p->type != REDIS_REPLY_ARRAY || p->elements < 1 ||
        p->element[0]->type != REDIS_REPLY_INTEGER)
        FAILF("XPENDING %s workers: unexpected reply type %d", stream, p->type);
    long long pending = p->element[0]->integer;
    long long entries = tl_redis_int(f->rc, "HLEN {%s}:entries:%s", f->prefix, model);
    tl_log("left over: XLEN %lld, XPENDING %lld, entries %lld", xlen, pending, entries);
    ASSERT_EQ_INT(xlen, 0);
    ASSERT_EQ_INT(pending, 0);
    ASSERT_EQ_INT(entries, 0);
}

/* ------------------------------------------------------------ cases ----------------- */

#define CHAOS_JOBS 1000
#define CHAOS_WORKERS 3
#define CHAOS_KILL_EVERY_MS 500
/* Bounds that keep a broken fleet's failure inside the harness' 60 s per case (a working
 * one needs a few seconds for all of it). */
#define CHAOS_KILL_FOR_MS 20000 /* stop killing after this long even if jobs remain */
#define CHAOS_SETTLE_MS 25000   /* then this long for the rest to finish */

TL_TEST(kill9_chaos_loses_nothing) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_MAX_ATTEMPTS=20"},
        .worker_env = {"FLEET_LEASE_MS=1500", "FLEET_MAX_BATCH=8"},
    });
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)tl_now_ms() << 20);
    const char *env_seed = getenv("CHAOS_SEED");
    if (env_seed && *env_seed) seed = strtoull(env_seed, NULL, 10);
    rng_seed(seed);
    tl_log("seed %llu (CHAOS_SEED=%llu repeats it)", (unsigned long long)seed,
           (unsigned long long)seed);
    /* For soak runs: CHAOS_JOBS=5000 CHAOS_KILL_EVERY_MS=100 it_chaos_test chaos */
    const int njobs = env_int("CHAOS_JOBS", CHAOS_JOBS);
    const int kill_every = env_int("CHAOS_KILL_EVERY_MS", CHAOS_KILL_EVERY_MS);
    for (int i = 0; i < CHAOS_WORKERS; i++) tl_fleet_add_worker(f, "sleep");
    events *ev = events_start(f);

    /* Workers spawned in a case are limited by the harness (TL_MAX_WORKERS): each kill
     * starts a replacement, so the number of kills is bounded by it too. */
    const int max_kills = TL_MAX_WORKERS - CHAOS_WORKERS;
    int kills = 0;
    int64_t t0 = tl_now_ms();
    int64_t next_kill = t0 + kill_every;
    const char **ids = tl_alloc((size_t)njobs * sizeof *ids);

    /* Submitting 1,000 jobs takes a while: the killing starts right away. */
    for (int i = 0; i < njobs; i++) {
        ids[i] = tl_job_submit(f, "sleep", tl_printf("{\"ms\": %d}", rng_range(10, 50)));
        if (tl_now_ms() >= next_kill && kills < max_kills) {
            kill_random_worker(f);
            tl_fleet_add_worker(f, "sleep");
            kills++;
            next_kill = tl_now_ms() + kill_every;
        }
    }
    int64_t t_submitted = tl_now_ms();
    tl_log("submitted %d jobs in %lld ms (%d kills so far)", njobs, (long long)(t_submitted - t0),
           kills);

    all_final_arg af = {.f = f, .ids = ids, .n = njobs};
    while (!all_final(&af) && kills < max_kills && tl_now_ms() - t0 < CHAOS_KILL_FOR_MS) {
        int64_t now = tl_now_ms();
        if (now < next_kill) { /* kills are paced in time on purpose: one every kill_every ms */
            struct timespec ts = {0, (long)(next_kill - now) * 1000000L};
            nanosleep(&ts, NULL);
        }
        kill_random_worker(f);
        tl_fleet_add_worker(f, "sleep");
        kills++;
        next_kill = tl_now_ms() + kill_every;
    }
    int64_t t_calm = tl_now_ms();
    tl_log("stopped killing after %lld ms: %d kills, %zu of %d jobs final",
           (long long)(t_calm - t0), kills, af.last.final, njobs);
    if (!tl_wait_for(all_final, &af, CHAOS_SETTLE_MS))
        FAILF("only %zu of %d jobs are final %d ms after the killing stopped (succeeded %zu, "
              "failed %zu, cancelled %zu, no job hash %zu)",
              af.last.final, njobs, CHAOS_SETTLE_MS, af.last.succeeded, af.last.failed,
              af.last.cancelled, af.last.missing);
    int64_t t_done = tl_now_ms();
    tl_log("all %d jobs final %lld ms after the first submit", njobs, (long long)(t_done - t0));

    /* Every job through the API: succeeded, at least one attempt. */
    int retried = 0;
    long long max_attempts = 0, sum_attempts = 0;
    for (int i = 0; i < njobs; i++) {
        json_t *job = tl_job_get(f, ids[i]);
        const char *st = tl_jstr(job, "status");
        if (!st || strcmp(st, "succeeded") != 0)
            FAILF("job %d (%s) is not succeeded: %s", i, ids[i], tl_json_text(job));
        long long a = tl_jint(job, "attempts");
        if (a < 1) FAILF("job %s succeeded with attempts %lld: %s", ids[i], a, tl_json_text(job));
        if (a > 1) retried++;
        if (a > max_attempts) max_attempts = a;
        sum_attempts += a;
    }

    /* Exactly one finish event per job, and one claim event per attempt. */
    events_settle(ev, 500, 10000);
    events_stop(ev);
    if (atomic_load(&ev->failed)) FAILF("events subscriber: %s", ev->err);
    events_sort(ev);
    long long running_events = 0;
    for (int i = 0; i < njobs; i++) {
        job_events c = events_of(ev, ids[i]);
        if (c.succeeded != 1 || c.failed != 0 || c.cancelled != 0)
            FAILF("job %s: %d \"succeeded\", %d \"failed\", %d \"cancelled\" events (expected "
                  "exactly one \"succeeded\"): %s",
                  ids[i], c.succeeded, c.failed, c.cancelled, tl_json_text(tl_job_get(f, ids[i])));
        running_events += c.running;
    }
    ASSERT_EQ_INT(ev->other, 0);

    long long reclaimed = stats_counter(f, "sleep", "reclaimed");
    long long succeeded = stats_counter(f, "sleep", "succeeded");
    tl_log("figures: %d jobs, %lld ms in all (submit %lld ms, killing %lld ms, settle %lld ms), "
           "%d kills, %d jobs with attempts > 1, max attempts %lld, attempts in all %lld, "
           "claim events %lld, reclaimed %lld, stats succeeded %lld, events %zu",
           njobs, (long long)(t_done - t0), (long long)(t_submitted - t0), (long long)(t_calm - t0),
           (long long)(t_done - t_calm), kills, retried, max_attempts, sum_attempts, running_events,
           reclaimed, succeeded, ev->n);
    ASSERT_EQ_INT(succeeded, njobs);
    /* Each attempt was claimed once (a claim publishes "running"). */
    ASSERT_EQ_INT(running_events, sum_attempts);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.sleep.running"), 0);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.sleep.queued"), 0);
    assert_stream_drained(f, "sleep");
}

typedef struct job_watch {
    tl_fleet *f;
    const char *id;
    json_t *job;
} job_watch;

static bool job_running_with_worker(void *arg) {
    job_watch *w = arg;
    w->job = tl_job_get(w->f, w->id);
    const char *st = tl_jstr(w->job, "status");
    if (tl_status_is_final(st)) FAILF("job finished too early: %s", tl_json_text(w->job));
    return st && strcmp(st, "running") == 0 && tl_jstr(w->job, "worker");
}

typedef struct log_watch {
    const char *path;
    const char *found;
} log_watch;

/* The worker's last word on its stale attempt: its final write was refused ("finish
 * refused: this attempt no longer holds the job"), or it learnt first that its lease was
 * lost and dropped the result ("lease lost: result dropped"). */
static bool log_says_refused(void *arg) {
    log_watch *w = arg;
    char *log = tl_read_file(w->path, NULL);
    if (!log) return false;
    static const char *const needles[] = {"refused", "result dropped", NULL};
    for (int i = 0; needles[i]; i++) {
        const char *hit = strstr(log, needles[i]);
        if (!hit) continue;
        const char *start = hit, *end = hit;
        while (start > log && start[-1] != '\n') start--;
        while (*end && *end != '\n') end++;
        w->found = tl_printf("%.*s", (int)(end - start), start);
        return true;
    }
    return false;
}

/* Sets FLEET_WORKER_NAME for the workers started from now on. */
static void set_worker_name(tl_fleet *f, int slot, const char *name) {
    f->opts.worker_env[slot] = tl_printf("FLEET_WORKER_NAME=%s", name);
}

/* Sends what a worker sends to finish a job as succeeded, built by the state module the
 * workers use (fleet_state_finish), with the given lease token. Returns the reply. */
static const char *finish_with_token(tl_fleet *f, const char *id, const char *token) {
    fleet_keys keys;
    if (fleet_keys_init(&keys, f->prefix) < 0) FAILF("bad prefix %s", f->prefix);
    fleet_finish fin = {
        .id = id, .model = "sleep", .token = token, .status = FLEET_STATUS_SUCCEEDED};
    fleet_cmd cmd;
    fleet_state_finish(&keys, &fin, 1, &cmd);
    fleet_cmd_as_eval(&cmd); /* EVAL: no need for the script to be cached */
    redisReply *r = redisCommandArgv(f->rc, cmd.argc, cmd.argv, cmd.argvlen);
    if (!r) FAILF("finish script: connection error");
    tl_defer((void (*)(void *))freeReplyObject, r);
    /* One answer per job of the batch: here one. */
    const redisReply *a = fleet_state_batch_item(r, 0);
    if (!a || (a->type != REDIS_REPLY_STRING && a->type != REDIS_REPLY_STATUS))
        FAILF("finish script answered reply type %d: %s", r->type,
              r->type == REDIS_REPLY_ERROR ? r->str : "");
    return tl_printf("%s", a->str);
}

typedef struct attempt_watch {
    tl_fleet *f;
    const char *id;
    long long attempts;
    const char *worker;
    json_t *job;
} attempt_watch;

static bool job_running_attempt(void *arg) {
    attempt_watch *w = arg;
    w->job = tl_job_get(w->f, w->id);
    const char *st = tl_jstr(w->job, "status");
    if (tl_status_is_final(st)) FAILF("job finished too early: %s", tl_json_text(w->job));
    const char *wk = tl_jstr(w->job, "worker");
    return st && strcmp(st, "running") == 0 && wk && strcmp(wk, w->worker) == 0 &&
           tl_jint(w->job, "attempts") == w->attempts;
}

TL_TEST(stale_lease_late_finish_is_rejected) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=1500"}});
    events *ev = events_start(f);
    set_worker_name(f, 1, "worker-a");
    tl_proc *a = tl_fleet_add_worker(f, "sleep");

    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 3000, \"steps\": 3}");
    attempt_watch w = {.f = f, .id = id, .attempts = 1, .worker = "worker-a"};
    ASSERT_WAIT_FOR(job_running_attempt, &w, TL_WAIT_MS);
    redisReply *lease = tl_redis_cmd(f->rc, "HGET {%s}:job:%s lease", f->prefix, id);
    if (lease->type != REDIS_REPLY_STRING) FAILF("the running job has no lease token");
    const char *token_a = tl_printf("%s", lease->str);

    /* A stops (a long GC pause, a stalled VM): it neither renews nor finishes. */
    if (kill(a->pid, SIGSTOP) != 0) FAILF("SIGSTOP worker a: %s", strerror(errno));
    tl_log("worker a (pid %d) stopped while it runs job %s", (int)a->pid, id);
    set_worker_name(f, 1, "worker-b");
    tl_fleet_add_worker(f, "sleep");

    /* B takes the job over once A's lease has run out. While B runs it, a finish under
     * A's old lease token (what A would send if it woke up now) is refused by Redis. */
    w = (attempt_watch){.f = f, .id = id, .attempts = 2, .worker = "worker-b"};
    ASSERT_WAIT_FOR(job_running_attempt, &w, TL_WAIT_MS);
    ASSERT_EQ_STR(finish_with_token(f, id, token_a), "stale");
    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "running");
    ASSERT_EQ_STR(tl_jstr(job, "worker"), "worker-b");

    job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_EQ_STR(tl_jstr(job, "worker"), "worker-b");
    const char *finished_at = tl_printf("%s", tl_jstr(job, "finished_at"));

    /* A wakes up, and its stale attempt ends without writing. */
    if (kill(a->pid, SIGCONT) != 0) FAILF("SIGCONT worker a: %s", strerror(errno));
    log_watch lw = {.path = a->log_path};
    if (!tl_wait_for(log_says_refused, &lw, 10000)) {
        tl_print_tail(a->log_path, 20);
        FAILF("worker a's log does not say that its late write was refused or dropped");
    }
    tl_log("worker a: %s", lw.found);

    /* The fleet goes on working (either worker may take this one). */
    const char *probe = tl_job_submit(f, "sleep", "{\"ms\": 10}");
    tl_job_wait_status(f, probe, "succeeded", TL_WAIT_MS);

    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "succeeded");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
    ASSERT_EQ_STR(tl_jstr(job, "worker"), "worker-b");
    ASSERT_EQ_STR(tl_jstr(job, "finished_at"), finished_at);
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_EQ_JSON(res->json, tl_json("{\"slept_ms\": 3000, \"steps\": 3}"));

    events_settle(ev, 300, 5000);
    events_stop(ev);
    if (atomic_load(&ev->failed)) FAILF("events subscriber: %s", ev->err);
    events_sort(ev);
    job_events c = events_of(ev, id);
    tl_log("events of the job: running %d, progress %d, succeeded %d, failed %d, cancelled %d",
           c.running, c.progress, c.succeeded, c.failed, c.cancelled);
    ASSERT_EQ_INT(c.succeeded, 1);
    ASSERT_EQ_INT(c.failed, 0);
    ASSERT_EQ_INT(c.cancelled, 0);
    ASSERT_EQ_INT(c.running, 2); /* claimed by A, then by B */
    /* The job and the probe. */
    ASSERT_EQ_INT(stats_counter(f, "sleep", "succeeded"), 2);
    ASSERT_EQ_INT(stats_counter(f, "sleep", "reclaimed"), 1);
    assert_stream_drained(f, "sleep");
}

TL_TEST(live_worker_keeps_a_job_longer_than_its_lease) {
    /* Two idle workers, a lease of 1.5 s and a job of 4 s that reports no progress: only
     * lease renewal keeps the second worker from taking it over. */
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_LEASE_MS=1500"}});
    set_worker_name(f, 1, "worker-a");
    tl_fleet_add_worker(f, "sleep");
    set_worker_name(f, 1, "worker-b");
    tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 4000}");
    job_watch w = {.f = f, .id = id};
    ASSERT_WAIT_FOR(job_running_with_worker, &w, TL_WAIT_MS);
    const char *owner = tl_printf("%s", tl_jstr(w.job, "worker"));
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_STR(tl_jstr(job, "worker"), owner);
    ASSERT_EQ_INT(stats_counter(f, "sleep", "reclaimed"), 0);
    assert_stream_drained(f, "sleep");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(kill9_chaos_loses_nothing),
        TL_CASE(stale_lease_late_finish_is_rejected),
        TL_CASE(live_worker_keeps_a_job_longer_than_its_lease),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
