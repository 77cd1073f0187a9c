/* main.c: fleet-worker's entry point: settings (flags > environment > defaults, listed by
 * --help), signals, loading the model, and an orderly stop.
 *
 * SIGTERM or SIGINT: stop reading new entries, let the current batch finish for up to
 * FLEET_DRAIN_TIMEOUT seconds, then hand back whatever still runs (requeued at once for
 * another worker; if Redis is unreachable, its lease expires and another worker takes it
 * over) and exit 0. A second signal ends the drain at once.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert_module.h"
#include "cnn.h"
#include "fleet/config.h"
#include "fleet/id.h"
#include "fleet/log.h"
#include "models/models.h"
#include "worker.h"

#define MAIN_TIMEOUT_MS 5000L /* socket timeout: above the 1 s XREADGROUP BLOCK */

static volatile sig_atomic_t signals_seen;
static const char *cuda_module; /* --cuda-module; "" for the default places */

static void on_signal(int sig) {
    (void)sig;
    if (signals_seen < 2) signals_seen++;
}

static const char usage[] =
    "usage: fleet-worker --model NAME [options]\n"
    "\n"
    "Runs the jobs of one model from Redis: reads its stream in the consumer group\n"
    "\"workers\", batches them dynamically, writes progress and results.\n"
    "Built-in models: echo (output = input), sleep ({\"ms\": N, \"steps\": K, \"fail\": \"msg\"}),\n"
    "embed (sentence embeddings; --model-args MODEL_DIR), classify (Fashion-MNIST images; \n"
    "--model-args WEIGHTS optional); docs/models.md.";

static int parse_config(wk_config *c, int argc, char **argv) {
    const fleet_option opts[] = {
        FLEET_REDIS_OPTIONS(&c->redis),
        {"prefix", "FLEET_PREFIX", FLEET_OPT_STR, "fleet",
         "key prefix of this fleet (the gateway's must be the same)", &c->prefix, 0, 0},
        {"model", "FLEET_MODEL", FLEET_OPT_STR, "",
         "model to serve (required unless --model-plugin): classify|echo|embed|sleep", &c->model, 0, 0},
        {"model-plugin", "FLEET_MODEL_PLUGIN", FLEET_OPT_STR, "",
         "a model plug-in: a shared object exporting fleet_model_v1 (worker/model.h); "
         "--model may then be left out",
         &c->model_plugin, 0, 0},
        {"model-args", "FLEET_MODEL_ARGS", FLEET_OPT_STR, "",
         "free text passed to the model's load()", &c->model_args, 0, 0},
        {"backend", "FLEET_BACKEND", FLEET_OPT_STR, "auto",
         "where a built-in model runs: cpu|cuda|auto (auto: CUDA when its module loads and "
         "a GPU is present, else CPU)",
         &c->backend, 0, 0},
        {"cuda-module", "FLEET_CUDA_MODULE", FLEET_OPT_STR, "",
         "the served model's CUDA backend module, opened only when it runs on CUDA (default: "
         "fleet-<model>-cuda.so next to fleet-worker, else ../lib/fleet/ from there)",
         &cuda_module, 0, 0},
        {"max-batch", "FLEET_MAX_BATCH", FLEET_OPT_INT, "32",
         "most jobs run together (1..256; a model's own limit caps it); an idle worker starts "
         "with the first job, a busy one takes what is ready up to this",
         &c->max_batch, 1, 256},
        {"max-delay-ms", "FLEET_MAX_DELAY_MS", FLEET_OPT_INT, "5",
         "under load (the last batch was full), how long to wait for the next batch to fill; "
         "an idle worker starts at once (0: never wait)",
         &c->max_delay_ms, 0, 60000},
        {"lease-ms", "FLEET_LEASE_MS", FLEET_OPT_INT, "30000",
         "a claimed job's lease; pending entries older than this are taken over from dead "
         "workers",
         &c->lease_ms, 1000, 86400000},
        {"worker-name", "FLEET_WORKER_NAME", FLEET_OPT_STR, "",
         "this worker's consumer name, [A-Za-z0-9_.-]{1,64} (default: hostname-pid-random)",
         &c->name, 0, 0},
        {"log-level", "FLEET_LOG_LEVEL", FLEET_OPT_STR, "info", "debug|info|warn|error",
         &c->log_level, 0, 0},
        {"progress-interval-ms", "FLEET_PROGRESS_INTERVAL_MS", FLEET_OPT_INT, "200",
         "least time between two progress writes of one job (the last step is always written)",
         &c->progress_interval_ms, 0, 3600000},
        {"drain-timeout", "FLEET_DRAIN_TIMEOUT", FLEET_OPT_INT, "25",
         "on SIGTERM, seconds to finish the current batch before handing the rest back",
         &c->drain_timeout_s, 0, 86400},
        {"timeout-s", "FLEET_TIMEOUT_S", FLEET_OPT_INT, "0",
         "this model's execution limit for jobs that set no timeout_s (0: none)", &c->timeout_s, 0,
         86400 * 7},
        {"retry-base-ms", "FLEET_RETRY_BASE_MS", FLEET_OPT_INT, "1000",
         "backoff before the first retry of a retryable model error; doubles each attempt",
         &c->retry_base_ms, 0, 3600000},
        {"retry-max-ms", "FLEET_RETRY_MAX_MS", FLEET_OPT_INT, "60000",
         "longest backoff between retries (before jitter)", &c->retry_max_ms, 0, 86400000},
        {"consumer-idle-ms", "FLEET_CONSUMER_IDLE_MS", FLEET_OPT_INT, "600000",
         "a consumer of the group (a worker) idle this long with nothing pending is removed",
         &c->consumer_idle_ms, 1000, 86400000},
        {"ready-target", "FLEET_READY_TARGET", FLEET_OPT_INT, "8",
         "fair share: before each read, move waiting jobs (one tenant at a time) onto the "
         "stream until this many, or a batch, are ready",
         &c->ready_target, 1, 100000},
        {"dlq-cap", "FLEET_DLQ_CAP", FLEET_OPT_INT, "10000",
         "about how many entries the dead-letter stream keeps (oldest trimmed first)", &c->dlq_cap,
         1, 100000000},
        {"max-outputs", "FLEET_MAX_OUTPUTS", FLEET_OPT_INT, "1000",
         "partial outputs: most a job may emit; a further emit is refused (the job goes on)",
         &c->max_outputs, 0, 1000000},
        {"max-output-bytes", "FLEET_MAX_OUTPUT_BYTES", FLEET_OPT_INT, "1048576",
         "partial outputs: most bytes of all of a job's outputs; an emit past it is refused",
         &c->max_output_bytes, 0, 536870912},
        {"output-webhook-ms", "FLEET_OUTPUT_WEBHOOK_MS", FLEET_OPT_INT, "1000",
         "at most one job.output webhook per job per this many ms (0: one per output)",
         &c->output_webhook_ms, 0, 3600000},
        {"allow-eviction", "FLEET_ALLOW_EVICTION", FLEET_OPT_BOOL, "off",
         "on: run even when Redis's maxmemory-policy evicts keys, accepting that a full Redis "
         "deletes jobs; off: claim nothing until it is noeviction (docs/reliability.md)",
         &c->allow_eviction, 0, 0},
    };
    char err[256];
    int npos = 0;

    switch (fleet_config_parse(opts, sizeof opts / sizeof opts[0], argc, argv, &npos, usage, err,
                               sizeof err)) {
    case FLEET_CONFIG_HELP: return 1;
    case FLEET_CONFIG_ERROR: fprintf(stderr, "fleet-worker: %s\n", err); return -1;
    case FLEET_CONFIG_OK: break;
    }
    if (npos > 0) {
        fprintf(stderr, "fleet-worker: unexpected argument '%s' (see --help)\n", argv[1]);
        return -1;
    }
    return 0;
}

/* default_name builds hostname-pid-random, with the host name reduced to characters a
 * consumer and key name may hold. */
static void default_name(char *out, size_t len, const char *host) {
    char h[41], tok[WK_TOKEN_LEN + 1] = "0000";
    size_t i = 0;
    for (; host[i] && i < sizeof h - 1; i++) {
        char ch = host[i];
        h[i] = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '_' || ch == '.' || ch == '-')
                   ? ch
                   : '-';
    }
    h[i] = '\0';
    wk_token_new(tok);
    snprintf(out, len, "%s-%ld-%.4s", i ? h : "worker", (long)getpid(), tok);
}

/* ---------------------------------------------------------------- worker ----------- */

/* fit_batch sets the batch size: --max-batch, lowered to the model's own limit. */
static void fit_batch(wk_worker *w) {
    w->max_batch = (size_t)w->cfg.max_batch;
    if (w->model->max_batch && w->model->max_batch < w->max_batch)
        w->max_batch = w->model->max_batch;
}

/* worker_init checks the settings and loads the model. Returns 0, or the exit status:
 * 2 for settings that are wrong, 1 for a failure at run time (the model did not load). */
static int worker_init(wk_worker *w, char *name_buf, size_t name_len, char *err, size_t errlen) {
    pthread_condattr_t ca;
    bool mu_ok = false, cv_ok = false;
    int rc = 2;

    w->signals = &signals_seen;
    w->started_ms = (long long)fleet_now_ms();
    if (gethostname(w->host, sizeof w->host - 1) != 0) snprintf(w->host, sizeof w->host, "unknown");
    if (w->cfg.model_plugin[0]) {
        if (!(w->model = wk_plugin_load(w->cfg.model_plugin, &w->plugin, err, errlen))) goto err;
        if (w->cfg.model[0] && strcmp(w->cfg.model, w->model->name) != 0) {
            snprintf(err, errlen, "--model %s, but the plug-in's model is %s", w->cfg.model,
                     w->model->name);
            goto err;
        }
        if (strcmp(w->cfg.backend, "auto") != 0 && strcmp(w->cfg.backend, w->model->backend) != 0) {
            snprintf(err, errlen, "--backend %s, but the plug-in's backend is %s", w->cfg.backend,
                     w->model->backend);
            goto err;
        }
        w->cfg.model = w->model->name;
    } else if (!w->cfg.model[0]) {
        snprintf(err, errlen, "no model: set --model or FLEET_MODEL (%s), or --model-plugin",
                 wk_model_builtin_names());
        goto err;
    } else if (!(w->model = wk_model_builtin(w->cfg.model, w->cfg.backend, err, errlen))) {
        goto err;
    }
    if (fleet_keys_init(&w->keys, w->cfg.prefix) < 0) {
        snprintf(err, errlen, "prefix '%s' is not 1..%d characters of [A-Za-z0-9_.-]",
                 w->cfg.prefix, FLEET_PREFIX_MAX);
        goto err;
    }
    if (!w->cfg.name[0]) {
        default_name(name_buf, name_len, w->host);
        w->cfg.name = name_buf;
    }
    if (!wk_name_valid(w->cfg.name)) {
        snprintf(err, errlen, "worker name '%s' is not 1..64 characters of [A-Za-z0-9_.-]",
                 w->cfg.name);
        goto err;
    }
    if (fleet_redis_target_parse(&w->redis, &w->cfg.redis, err, errlen) < 0) goto err;
    wk_redis_init(&w->rd, &w->redis, "main", MAIN_TIMEOUT_MS, fleet_key_shards(&w->keys).s);
    w->stream = fleet_key_stream(&w->keys, w->cfg.model);
    fit_batch(w);

    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        rc = 1;
        snprintf(err, errlen, "cannot create a mutex");
        goto err;
    }
    mu_ok = true;
    /* The keeper's timed waits use the monotonic clock, like every other deadline. */
    if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&w->cv, &ca) != 0) {
        rc = 1;
        snprintf(err, errlen, "cannot create a condition variable");
        goto err;
    }
    pthread_condattr_destroy(&ca);
    cv_ok = true;

    rc = 1;
    if (w->model->load(w->cfg.model_args, &w->model_state, err, errlen) != 0) {
        /* --backend auto picked a device backend that did not load (out of GPU memory,
         * a failed self-check, ...): say why, loudly, and serve from the CPU instead. An
         * explicit --backend fails. */
        const fleet_model *cpu;
        char cpu_err[256];
        if (w->plugin || strcmp(w->cfg.backend, "auto") != 0 ||
            strcmp(w->model->backend, "cpu") == 0 ||
            !(cpu = wk_model_builtin(w->cfg.model, "cpu", cpu_err, sizeof cpu_err)))
            goto err;
        fleet_log(FLEET_LOG_WARN, "backend did not load; using the CPU", "backend",
                  w->model->backend, "error", err, NULL);
        w->model = cpu;
        fit_batch(w);
        if (w->model->load(w->cfg.model_args, &w->model_state, err, errlen) != 0) goto err;
    }
    return 0;
err:
    wk_plugin_close(w->plugin);
    w->plugin = NULL;
    if (cv_ok) pthread_cond_destroy(&w->cv);
    if (mu_ok) pthread_mutex_destroy(&w->mu);
    return rc;
}

static void worker_free(wk_worker *w) {
    w->model->unload(w->model_state);
    wk_plugin_close(w->plugin);
    wk_redis_close(&w->rd);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

int main(int argc, char **argv) {
    static wk_worker w; /* static: zeroed, and too big to want on the stack */
    char name_buf[128], err[512] = "";
    struct sigaction sa;

    switch (parse_config(&w.cfg, argc, argv)) {
    case 1: return 0;
    case -1: return 2;
    }
    int level = fleet_log_level_from_string(w.cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "fleet-worker: log level '%s' is not debug|info|warn|error\n",
                w.cfg.log_level);
        return 2;
    }
    fleet_log_init("worker", (fleet_log_level)level);
    bert_module_use("cuda", cuda_module);
    cnn_module_use("cuda", cuda_module);

    /* No SA_RESTART: a signal should cut sleeps short. A peer closing the socket must be
     * an error from write(), not a SIGPIPE that kills the worker. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = worker_init(&w, name_buf, sizeof name_buf, err, sizeof err);
    if (rc != 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot start", "error", err, NULL);
        return rc;
    }
    char mb[24];
    snprintf(mb, sizeof mb, "%zu", w.max_batch);
    fleet_log(FLEET_LOG_INFO, "worker started", "worker", w.cfg.name, "model", w.cfg.model,
              "backend", w.model->backend, "max_batch", mb, "stream", w.stream.s, NULL);
    rc = 1;
    if (wk_keeper_start(&w) == 0 && wk_control_start(&w) == 0) {
        wk_loop_run(&w);
        rc = 0;
    }
    wk_control_stop(&w);
    wk_keeper_stop(&w);
    worker_free(&w);
    fleet_log(FLEET_LOG_INFO, "worker stopped", "worker", w.cfg.name, NULL);
    return rc;
}
