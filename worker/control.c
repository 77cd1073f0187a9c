/* control.c: the control thread. It subscribes, on its own connection, to this worker's
 * control channel ({prefix}:control:<name>). When a client cancels a job this worker
 * runs, the cancel script publishes "cancel <job id>" there, and the job gets its
 * WK_STOP_CANCEL bit at once: the model sees it at its next progress() or cancelled()
 * call.
 *
 * Messages are a shortcut, not the guarantee: pub/sub drops what arrives while this
 * connection is down, and the keeper's lease renewal (keeper.c) sees the same cancel
 * flag within a second. A lost message delays a cancel; it never loses one.
 *
 * The thread waits with poll() on the socket (250 ms at most, to notice the stop flag)
 * and reads with redisBufferRead + redisGetReplyFromReader, so hiredis' sync context never
 * blocks on a read that a socket timeout would break.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "fleet/log.h"
#include "worker.h"

#define POLL_MS 250
#define CONTROL_TIMEOUT_MS 5000L
#define SUBSCRIBE_LOG_MS 10000L

/* cancel_job sets the cancel bit of the batch's job with this id, if it runs here. */
static void cancel_job(wk_worker *w, const char *id) {
    bool found = false;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; w->batch && i < w->nbatch; i++) {
        if (strcmp(w->batch[i].e.job_id, id) != 0) continue;
        atomic_fetch_or(&w->batch[i].stop, WK_STOP_CANCEL);
        found = true;
    }
    pthread_mutex_unlock(&w->mu);
    fleet_log(found ? FLEET_LOG_INFO : FLEET_LOG_DEBUG,
              found ? "cancel heard on the control channel: stopping the job"
                    : "cancel for a job not running here",
              "job_id", id, NULL);
}

/* on_message handles one pushed reply: ["message", channel, payload]. */
static void on_message(wk_worker *w, const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return; /* the subscribe confirmation, or something not meant for us */
    const char *msg = r->element[2]->str;
    if (strncmp(msg, "cancel ", 7) == 0 && fleet_job_id_valid(msg + 7)) cancel_job(w, msg + 7);
    else fleet_log(FLEET_LOG_WARN, "unknown control message ignored", "message", msg, NULL);
}

/* subscribe returns 0 once subscribed, or -1 (after a pause when Redis refused it: a busy
 * script refuses SUBSCRIBE too, and the next try must not come at once). */
static int subscribe(wk_worker *w, wk_redis *rd, wk_ratelog *rl) {
    fleet_key ch = fleet_key_control(&w->keys, w->cfg.name);
    redisReply *r = wk_redis_cmdf(rd, NULL, "SUBSCRIBE %s", ch.s);
    if (!r) return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        long count;
        if (wk_ratelog_due(rl, SUBSCRIBE_LOG_MS, &count)) {
            char n[24];
            snprintf(n, sizeof n, "%ld", count);
            fleet_log(FLEET_LOG_WARN, "control channel: SUBSCRIBE refused; retrying", "error",
                      r->str, "count", n, NULL);
        }
        freeReplyObject(r);
        wk_sleep_ms(POLL_MS);
        return -1;
    }
    freeReplyObject(r); /* ["subscribe", channel, 1] */
    return 0;
}

static void *control_main(void *arg) {
    wk_worker *w = arg;
    wk_redis rd;
    unsigned long subscribed_epoch = 0;
    wk_ratelog refused_log = {0};

    if (wk_redis_init(&rd, &w->redis, "control", CONTROL_TIMEOUT_MS,
                      fleet_key_shards(&w->keys).s) < 0) return NULL;
    while (!atomic_load(&w->control_quit)) {
        if (wk_redis_ensure(&rd) < 0) {
            long wait = wk_redis_retry_in_ms(&rd);
            wk_sleep_ms(wait < POLL_MS ? (wait > 0 ? wait : 1) : POLL_MS);
            continue;
        }
        if (subscribed_epoch != rd.epoch) {
            if (subscribe(w, &rd, &refused_log) < 0) continue;
            subscribed_epoch = rd.epoch;
            atomic_store(&w->control_subscribed, true);
        }
        struct pollfd pfd = {.fd = rd.c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, POLL_MS);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        if (redisBufferRead(rd.c) != REDIS_OK) {
            wk_redis_lost(&rd);
            continue;
        }
        void *reply = NULL;
        while (rd.c && redisGetReplyFromReader(rd.c, &reply) == REDIS_OK && reply) {
            on_message(w, reply);
            freeReplyObject(reply);
            reply = NULL;
        }
        if (rd.c && rd.c->err) wk_redis_lost(&rd);
    }
    wk_redis_close(&rd);
    return NULL;
}

int wk_control_start(wk_worker *w) {
    sigset_t all, old;
    sigemptyset(&all);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals are the main thread's */
    atomic_store(&w->control_quit, false);
    int rc = pthread_create(&w->control, NULL, control_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fleet_log(FLEET_LOG_ERROR, "cannot start the control thread", "error", strerror(rc), NULL);
        return -1;
    }
    w->control_started = true;
    return 0;
}

void wk_control_stop(wk_worker *w) {
    if (!w->control_started) return;
    atomic_store(&w->control_quit, true);
    pthread_join(w->control, NULL);
    w->control_started = false;
}
