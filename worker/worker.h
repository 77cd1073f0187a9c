/* worker.h: fleet-worker's internals, shared by its files (not a public header).
 *
 *   main.c       config, signals, model load, start and stop
 *   loop.c       the main loop: read stream entries, claim, run a batch, finish
 *   batch_run.c  one batch through the model ABI: progress/cancel callbacks, outcomes
 *   keeper.c     the keeper thread: worker registration, lease renewal of running jobs
 *   control.c    the control thread: hears cancels of running jobs on pub/sub
 *   health.c     whether Redis may be given new jobs: its maxmemory-policy, a full Redis,
 *                refusals to wait out (LOADING, BUSY, OOM, ...)
 *   redis.c      hiredis sync glue: connect with backoff, script calls with NOSCRIPT retry
 *   util.c       clocks, sleeps, lease tokens, rate-limited warnings, backoffs
 *
 * Threads: the main thread owns the batch and its Redis connection; the keeper and control
 * threads have their own connections and only read the batch's ids/tokens and set stop
 * bits, under wk_worker.mu.
 */
#ifndef WK_WORKER_H
#define WK_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/job.h"
#include "fleet/keys.h"
#include "fleet/redis_health.h"
#include "fleet/shards.h"
#include "fleet/state.h"
#include "model.h"
#include "redis.h"

/* ---------------------------------------------------------------- config ----------- */

typedef struct wk_config {
    fleet_redis_settings redis; /* FLEET_REDIS_URL, the sentinels (redis_target.h) */
    const char *prefix;
    const char *model;
    const char *model_args;
    const char *backend;      /* --backend: cpu|cuda|auto, for built-in models */
    const char *model_plugin; /* path of a .so exporting fleet_model_v1, or "" */
    const char *name;
    const char *log_level;
    long max_batch;
    long max_delay_ms;
    long lease_ms;
    long progress_interval_ms;
    long drain_timeout_s;
    long timeout_s; /* default execution limit for jobs that set none; 0: none */
    long retry_base_ms;
    long retry_max_ms;
    long dlq_cap;
    long max_outputs;       /* partial outputs: most per job (emit.lua) */
    long max_output_bytes;  /* partial outputs: most bytes of them per job */
    long output_webhook_ms; /* at most one job.output webhook per job per this */
    long consumer_idle_ms;  /* a consumer idle this long with nothing pending is removed */
    long ready_target;      /* fair share: entries kept ready on the stream (feed.lua) */
    bool allow_eviction;    /* run on a Redis whose maxmemory-policy evicts keys */
} wk_config;

/* ---------------------------------------------------------------- rate-limited logs  */

/* A warning that may repeat many times a second (every progress write refused by a full
 * Redis) is written at most once per period, with how many times it happened. */
typedef struct wk_ratelog {
    long long next_mono;
    long count;
} wk_ratelog;

/* Counts one occurrence; true when it is time to log, with *count the occurrences since
 * the last log (this one included). */
bool wk_ratelog_due(wk_ratelog *rl, long every_ms, long *count);

/* ---------------------------------------------------------------- redis health ----- */

/* What the main thread knows about its Redis (health.c). Main thread only. */
typedef struct wk_health {
    unsigned long epoch; /* rd.epoch of the last INFO look */
    long long next_look_mono;
    bool known; /* a look has read the policy */
    bool unknown_logged;
    fleet_redis_memory mem; /* the last look */
    bool evicts;            /* mem.policy may delete keys */
    bool full;              /* at maxmemory (a look, or an OOM refusal since) */
    long long policy_logged_mono;
    long pause_ms; /* backoff after a refusal: 0, or 100 ms doubling to 2 s */
    long long pause_until_mono;
    wk_ratelog refused_log;
    /* Progress writes refused by Redis back off the same way, on their own clock. */
    long progress_pause_ms;
    long long progress_pause_until_mono;
    wk_ratelog progress_log;
} wk_health;

/* ---------------------------------------------------------------- jobs ------------- */

/* Why a running job must stop; bits of wk_job.stop, set by whoever learns it first. */
enum {
    WK_STOP_CANCEL = 1 << 0,   /* the client asked: finish as cancelled */
    WK_STOP_STALE = 1 << 1,    /* another attempt holds the job: write nothing more */
    WK_STOP_TIMEOUT = 1 << 2,  /* ran past its timeout_s: finish as failed */
    WK_STOP_SHUTDOWN = 1 << 3, /* grace period over: hand the job back unfinished */
};

#define WK_ENTRY_ID_MAX 48 /* "<ms>-<seq>": two 64-bit numbers and a dash */
#define WK_TOKEN_LEN 32    /* 16 random bytes in hex */

/* One stream entry read from the model's stream. */
typedef struct wk_entry {
    char entry_id[WK_ENTRY_ID_MAX];
    char job_id[FLEET_ID_LEN + 1];
} wk_entry;

/* One claimed job of the current batch. Owned by the main thread; the keeper reads id,
 * token and keys (which do not change while the batch runs) and ORs bits into stop. */
typedef struct wk_job {
    wk_entry e;
    /* The keys of the job's shard (w->shards.shard[k].keys): every script call of the job
     * goes there. The table is reloaded only between batches, so this stays valid while
     * the batch runs. */
    const fleet_keys *keys;
    char token[WK_TOKEN_LEN + 1];
    /* The claim command's reply, which holds the input bytes that claimed.input points
     * to: set on the first job that command claimed (NULL on the others), freed after
     * the batch. */
    redisReply *claim_reply;
    fleet_claimed claimed;
    long long started_mono; /* when the claim succeeded */
    long long last_progress_mono;
    bool progress_down_logged;
    /* The latest progress not written yet (rate-limited, or Redis was down); written
     * before the job's finish so the stored progress ends where the model ended. */
    bool unsent;
    double unsent_percent;
    long unsent_done, unsent_total;
    char unsent_message[201];
    atomic_int stop;
} wk_job;

/* ---------------------------------------------------------------- metrics ---------- */

/* Histograms of what only the worker knows, counted in memory and reported to Redis by the
 * keeper every WK_METRICS_FLUSH_MS (metrics.c, docs/metrics.md). Under wk_worker.mu. */
#define WK_HIST_BOUNDS 20
#define WK_METRICS_FLUSH_MS 5000L
#define WK_METRICS_TTL_S (7 * 86400) /* the model's metrics hash, renewed by each report */

typedef struct wk_hist {
    unsigned long long bucket[WK_HIST_BOUNDS + 1]; /* per bucket, the last one +Inf */
    unsigned long long count, sum;
} wk_hist;

typedef struct wk_metrics {
    wk_hist wait;  /* ms from submit to the first start */
    wk_hist run;   /* ms from the claim to the model's return */
    wk_hist batch; /* jobs per batch */
    long long next_flush_mono;
} wk_metrics;

/* ---------------------------------------------------------------- shards ----------- */

/* The worker reads its model's stream on every shard of the table (shards.h), which the
 * main thread loads at start and again every WK_SHARDS_RELOAD_MS, between batches. */
#define WK_SHARDS_RELOAD_MS 2000L
/* Idle with several shards, the main thread blocks on one shard's stream at a time for
 * this long, rotating (a read cannot block on streams of several hash tags of a cluster):
 * an entry on any shard is seen within about one slice per other shard, plus the time
 * Redis takes to end a timed-out BLOCK (measured in docs/protocol.md "Workers and
 * shards"). One shard blocks for 1 s as before. */
#define WK_SLICE_MS 50L

/* What the main thread keeps per shard it reads. */
typedef struct wk_shard {
    bool used;                  /* k is in the table */
    const fleet_keys *keys;     /* &w->shards.shard[k].keys */
    fleet_key stream;           /* the model's stream there */
    unsigned long group_epoch;  /* rd.epoch when its consumer group was last ensured */
    long long group_retry_mono; /* several shards: when a failed group is tried again */
    char reclaim_cursor[WK_ENTRY_ID_MAX];
    long long next_reclaim_mono;
    long long next_promote_mono;
} wk_shard;

/* ---------------------------------------------------------------- worker ----------- */

typedef struct wk_worker {
    wk_config cfg;
    fleet_keys keys;
    fleet_key stream;
    char host[256];
    const fleet_model *model;
    void *model_state;
    void *plugin;     /* dlopen handle of a model plug-in, or NULL */
    size_t max_batch; /* cfg.max_batch, lowered to the model's own limit */
    long long started_ms;

    fleet_redis_target redis; /* cfg.redis, parsed */
    wk_redis rd;              /* the main thread's connection */
    /* The shard table and the state of each shard read, by k (main thread). */
    fleet_shards shards;
    char shards_text[FLEET_SHARDS_TEXT_MAX + 1]; /* the table as last loaded ("": none) */
    long long next_shards_mono;
    wk_shard sh[FLEET_SHARDS_MAX];
    size_t rot;      /* the shard a turn starts with: all[rot % n], one more each turn */
    int ahead_shard; /* the k of the claim sent ahead (w->ahead) */
    bool ran_full_batch; /* the last turn ran a full batch: the worker is under load */
    /* The claim sent ahead with the last batch's final writes (loop.c, wk_ahead_build):
     * its reply, for the next turn (NULL: none), and the tokens of its ahead_n read slots
     * (WK_AHEAD_MAX of them, allocated by wk_loop_run). Main thread only. */
    redisReply *ahead;
    char (*ahead_tokens)[WK_TOKEN_LEN + 1];
    size_t ahead_n;
    wk_health health;

    /* Shutdown: the handler sets signals; the main thread turns it into stop_deadline. */
    volatile sig_atomic_t *signals;
    long long stop_deadline_mono; /* 0 until a stop was asked; then when the grace ends */

    /* Shared with the keeper thread. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wk_job *batch; /* the running batch, NULL between batches (under mu) */
    /* Every shard's keys as last loaded, for the keeper's per-shard chores (under mu). */
    fleet_keys shard_keys[FLEET_SHARDS_MAX];
    size_t nshard_keys;
    size_t nbatch;
    /* The model is done with the batch and its results are being written: the keeper
     * still renews the leases (a finish refused by a full Redis is retried until it
     * lands) but no longer stops or ends the jobs (under mu). */
    bool batch_writing;
    unsigned long batch_gen; /* bumped for each batch, so a slow keeper never touches a newer one */
    bool keeper_quit;
    bool keeper_poked;
    long long keeper_wake_mono;   /* when the keeper's wait ends; 0 while it is awake */
    long long keeper_signal_mono; /* when wk_keeper_poke last woke it */
    atomic_int busy;
    atomic_long jobs_done;
    wk_metrics metrics; /* counted by the main thread, reported by the keeper (under mu) */
    pthread_t keeper;
    bool keeper_started;
    pthread_t control;
    bool control_started;
    atomic_bool control_quit;
    /* set by the control thread once its first SUBSCRIBE is confirmed: the main loop
     * claims nothing before (for at most CONTROL_WAIT_MS), so a cancel published for a
     * job it claims reaches it on the channel, not only at the next lease renewal */
    atomic_bool control_subscribed;
} wk_worker;

/* loop.c */
void wk_loop_run(wk_worker *w);
/* The most new entries a claim sent ahead reads: one claim command holds them. */
#define WK_AHEAD_MAX 32
/* wk_ahead_build builds into cmds[0..2) the feed and the claim of the next batch (up to
 * max_batch read slots), to be sent in the same write as the final writes of the batch
 * that just ran, and returns 2; or returns 0 when the next turn should claim as usual
 * (stopping, Redis refusing claims, entries to take over due, a claim already ahead). */
size_t wk_ahead_build(wk_worker *w, fleet_cmd *cmds);
/* wk_ahead_keep takes the replies reps[0..2) of the commands wk_ahead_build built (NULL:
 * lost with the connection): the claim's waits in w->ahead for the next turn. */
void wk_ahead_keep(wk_worker *w, redisReply **reps);

/* batch_run.c */
/* wk_batch_run runs jobs[0..n) through the model and then finishes each one in Redis. */
void wk_batch_run(wk_worker *w, wk_job *jobs, size_t n);
/* True when a stop was asked (signal) and the grace period has ended. */
bool wk_stopping(wk_worker *w);
bool wk_grace_over(wk_worker *w);

/* wk_progress_due decides whether a progress report is written: always the final one
 * (total > 0 and done >= total) and the first one, otherwise at most once per interval.
 * Pure, for unit tests. */
bool wk_progress_due(long long last_mono, long long now_mono, long interval_ms, long done,
                     long total);

/* What to do with a job once the model returned (pure, for unit tests). */
typedef enum wk_disposition {
    WK_FINISH,    /* write *status (and the result or error) with fleet_state_finish */
    WK_RETRY,     /* a retryable error: requeue after a backoff; it uses an attempt */
    WK_HAND_BACK, /* shutdown: requeue at once for another worker; no attempt used */
    WK_DROP,      /* write nothing: the lease is lost, another attempt owns the job */
} wk_disposition;

/* wk_disposition_of maps a model outcome and the job's stop bits to what the worker
 * writes: status and, for failures, a message for the user in err. */
wk_disposition wk_disposition_of(int outcome, int stop, long timeout_s, const char *model_error,
                                 fleet_status *status, char *err, size_t errlen);

/* wk_retry_delay_ms is the backoff before retry number `attempt` (1 after the first
 * failure): base_ms doubled per attempt, capped at max_ms, then "equal jitter": half of it
 * fixed and half random (from rnd), so retries of a failed batch spread out. Pure. */
long wk_retry_delay_ms(long attempt, long base_ms, long max_ms, unsigned long rnd);

/* health.c */
/* True when the main thread may claim jobs now: no refusal backoff pending, Redis not
 * full, and its maxmemory-policy keeps keys (or --allow-eviction). Reads INFO memory at
 * each connect and now and then; logs what is wrong. */
bool wk_health_may_claim(wk_worker *w);
/* How long to wait before asking wk_health_may_claim again (1..1000 ms). */
long wk_health_wait_ms(const wk_worker *w);
/* For a reply of a main-thread command: true when Redis refused it for now (transient or
 * OOM: nothing was done, the same command works later). Then the main thread pauses with
 * a backoff and a rate-limited warning says so; an OOM also marks Redis full. Any other
 * reply resets the backoff and returns false. */
bool wk_health_refused(wk_worker *w, const redisReply *r, const char *what);
/* True for an error reply that a later retry of the same command may get past
 * (fleet_redis_err_of: TRANSIENT or OOM). */
bool wk_reply_refused(const redisReply *r);

/* keeper.c */
int wk_keeper_start(wk_worker *w);
/* Wakes the keeper so it may write a heartbeat now (at most once a second). */
void wk_keeper_poke(wk_worker *w);
/* Stops the keeper; it removes this worker's registration on the way out. */
void wk_keeper_stop(wk_worker *w);

/* metrics.c */
/* Counts a batch of n jobs whose model returned at ran_mono. Main thread. */
void wk_metrics_batch(wk_worker *w, const wk_job *jobs, size_t n, long long ran_mono);
/* Adds what was counted since the last report to the model's metrics hash, when
 * WK_METRICS_FLUSH_MS have passed since it (or now, when stopping). Keeper thread. */
void wk_metrics_flush(wk_worker *w, wk_redis *rd, bool now);

/* plugin.c: a model from a shared object exporting fleet_model_v1. Returns the model and
 * the handle to close after unload, or NULL with a message. */
const fleet_model *wk_plugin_load(const char *path, void **handle, char *err, size_t errlen);
void wk_plugin_close(void *handle);

/* control.c */
int wk_control_start(wk_worker *w);
void wk_control_stop(wk_worker *w);

/* util.c */
long long wk_mono_ms(void);
/* A random number from the OS (for jitter). */
unsigned long wk_random(void);
/* Sleeps ms, returning early when a signal arrives. */
void wk_sleep_ms(long ms);
/* Writes 32 hex characters of fresh randomness and a NUL. Returns 0, or -1. */
int wk_token_new(char out[WK_TOKEN_LEN + 1]);
/* The same for out[0..n), with one getrandom per 32 tokens (a batch's claim). */
int wk_tokens_new(char (*out)[WK_TOKEN_LEN + 1], size_t n);
/* True for a worker name usable in a key: 1..64 of [A-Za-z0-9_.-]. */
bool wk_name_valid(const char *s);
/* The next pause of a backoff after a refusal: min_ms after none (prev_ms <= 0), else
 * prev_ms doubled, at most max_ms. Pure. */
long wk_backoff_next(long prev_ms, long min_ms, long max_ms);

#endif
