/* shutdown_test.c: SIGTERM (Kubernetes' stop) on a worker and on the gateway. A worker
 * stops reading, finishes its batch within --drain-timeout, exits 0; what it cannot
 * finish in time is handed back at once and another worker runs it. The gateway stops
 * accepting, answers the requests in flight, exits 0. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static bool exited_zero(const tl_proc *p) {
    return WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0;
}

static bool gateway_ready(void *arg) {
    tl_fleet *f = arg;
    char err[256];
    tl_req req = {.url = tl_printf("%s/readyz", f->url), .timeout_ms = 2000};
    tl_resp *r = tl_http_try(&req, err, sizeof err);
    return r && r->status == 200;
}

static void wait_ready(tl_fleet *f) {
    if (!tl_wait_for(gateway_ready, f, TL_WAIT_MS)) FAILF("the gateway did not become ready again");
}

/* Bytes the paused Redis has been sent and not read yet. */
static long redis_unread(tl_fleet *f) {
    long unread = 0;
    tl_tcp_sockets(f->redis->port, TL_TCP_ESTABLISHED, &unread);
    return unread;
}

/* With Redis paused (SIGSTOP) and n requests written to the gateway: waits until the
 * gateway holds them, that is until it has read everything sent to it on at least n
 * connections and Redis has more unread than before (redis_unread() taken before the
 * requests were sent): a command that waits there. */
static void wait_in_flight(tl_fleet *f, int n, long before) {
    long unread = -1;
    ASSERT_EVENTUALLY(tl_tcp_sockets(f->gateway_port, TL_TCP_ESTABLISHED, &unread) >= n &&
                          unread == 0 && redis_unread(f) > before,
                      TL_WAIT_MS);
}

TL_TEST(sigterm_finishes_the_running_batch_and_exits_0) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_DRAIN_TIMEOUT=20"}});
    tl_proc *w = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 1500, \"steps\": 3}");
    json_t *job = tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    const char *worker = tl_printf("%s", tl_jstr(job, "worker"));
    /* Queued behind it: must not be taken by the stopping worker. */
    const char *later = tl_job_submit(f, "sleep", "{\"ms\": 10}");

    kill(w->pid, SIGTERM);
    ASSERT_TRUE(tl_proc_wait(w, TL_WAIT_MS));
    ASSERT_TRUE(exited_zero(w));
    job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "succeeded");
    ASSERT_EQ_STR(tl_jstr(job, "worker"), worker);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, later), "status"), "queued");
    /* It left the worker registry and the consumer group on its way out. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "ZCARD {%s}:workers", f->prefix), 0);
    redisReply *c = tl_redis_cmd(f->rc, "XINFO CONSUMERS {%s}:stream:sleep workers", f->prefix);
    ASSERT_EQ_INT((long long)c->elements, 0);

    tl_fleet_add_worker(f, "sleep");
    tl_job_wait_status(f, later, "succeeded", TL_WAIT_MS);
}

TL_TEST(sigterm_hands_back_what_outlasts_the_drain_timeout) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.worker_env = {"FLEET_DRAIN_TIMEOUT=1"}});
    tl_proc *w = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 4000, \"steps\": 40}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);

    kill(w->pid, SIGTERM);
    ASSERT_TRUE(tl_proc_wait(w, TL_WAIT_MS));
    ASSERT_TRUE(exited_zero(w));
    /* Handed back at once: queued again, the attempt not counted. */
    json_t *job = tl_job_get(f, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "queued");
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 0);
    tl_resp *r = tl_get(f, "/v1/stats");
    ASSERT_EQ_INT(tl_jint(r->json, "models.sleep.handed_back"), 1);
    ASSERT_EQ_INT(tl_jint(r->json, "models.sleep.queued"), 1);
    ASSERT_EQ_INT(tl_jint(r->json, "models.sleep.running"), 0);

    /* The next worker runs it to the end, as attempt 1. */
    tl_fleet_add_worker(f, "sleep");
    job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "XLEN {%s}:stream:sleep", f->prefix), 0);
}

/* A worker stopped while Redis is away still exits 0 within its drain timeout; the job it
 * could not hand back is taken over once its lease expires. */
TL_TEST(sigterm_without_redis_exits_and_the_lease_brings_the_job_back) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .appendonly = true, .worker_env = {"FLEET_DRAIN_TIMEOUT=1", "FLEET_LEASE_MS=1500"}});
    tl_proc *w = tl_fleet_add_worker(f, "sleep");
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 3000, \"steps\": 30}");
    tl_job_wait_status(f, id, "running", TL_WAIT_MS);
    tl_redis_stop(f->redis);
    kill(w->pid, SIGTERM);
    ASSERT_TRUE(tl_proc_wait(w, TL_WAIT_MS));
    ASSERT_TRUE(exited_zero(w));
    tl_redis_restart(f->redis);
    f->rc = tl_redis_connect(f->redis);
    wait_ready(f);

    tl_fleet_add_worker(f, "sleep");
    json_t *job = tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 2);
}

/* The gateway on SIGTERM: /readyz turns 503 at once is not observable (it stops accepting),
 * but a request already in flight (here held up by a paused Redis) is answered before the
 * gateway exits 0, and nothing is accepted afterwards. */
TL_TEST(gateway_sigterm_answers_requests_in_flight_then_exits_0) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    const char *id = tl_job_submit(f, "echo", "{\"a\": 1}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);

    /* Hold the next request inside the gateway: Redis is paused. */
    kill(f->redis->proc->pid, SIGSTOP);
    long before = redis_unread(f);
    int fd = tl_tcp_send(f->gateway_port,
                         tl_printf("GET /v1/jobs/%s HTTP/1.1\r\nHost: fleet\r\n"
                                   "Connection: close\r\n\r\n",
                                   id),
                         20000);
    wait_in_flight(f, 1, before);
    kill(f->gateway->pid, SIGTERM);
    /* Not accepting any more: the listening socket is closed, a new connection refused. */
    ASSERT_EVENTUALLY(tl_tcp_sockets(f->gateway_port, TL_TCP_LISTEN, NULL) == 0, TL_WAIT_MS);
    char err[256];
    tl_req probe = {.url = tl_printf("%s/healthz", f->url), .timeout_ms = 2000};
    ASSERT_NULL(tl_http_try(&probe, err, sizeof err));
    ASSERT_TRUE(tl_proc_alive(f->gateway)); /* still answering the one in flight */
    kill(f->redis->proc->pid, SIGCONT);

    const char *answer = tl_tcp_read_all(fd);
    if (strncmp(answer, "HTTP/1.1 200 ", 13) != 0) FAILF("the request in flight got: %s", answer);
    ASSERT_TRUE(tl_proc_wait(f->gateway, TL_WAIT_MS));
    ASSERT_TRUE(exited_zero(f->gateway));
}

/* The drain timeout ends while requests still wait on a paused Redis: the gateway exits
 * 0 and frees them in an order where no Redis callback touches a freed request (the
 * harness fails the case on any sanitizer report of the gateway). */
TL_TEST(gateway_drain_timeout_with_requests_waiting_on_redis_exits_cleanly) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){
        .gateway_env = {"FLEET_DRAIN_TIMEOUT=1", "FLEET_REDIS_TIMEOUT_MS=60000"}});
    kill(f->redis->proc->pid, SIGSTOP);
    long before = redis_unread(f);
    for (int i = 0; i < 3; i++)
        tl_tcp_send(f->gateway_port,
                    "GET /v1/jobs/01M84YH1AGR5R5JNF9DA2Q5WAF HTTP/1.1\r\nHost: fleet\r\n\r\n",
                    20000);
    wait_in_flight(f, 3, before);
    kill(f->gateway->pid, SIGTERM);
    bool exited = tl_proc_wait(f->gateway, TL_WAIT_MS);
    kill(f->redis->proc->pid, SIGCONT);
    ASSERT_TRUE(exited);
    ASSERT_TRUE(exited_zero(f->gateway));
    const char *log = tl_read_file(f->gateway->log_path, NULL);
    ASSERT_NOT_NULL(log);
    ASSERT_STR_CONTAINS(log, "drain timeout: exiting with requests in flight");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(sigterm_finishes_the_running_batch_and_exits_0),
        TL_CASE(sigterm_hands_back_what_outlasts_the_drain_timeout),
        TL_CASE(sigterm_without_redis_exits_and_the_lease_brings_the_job_back),
        TL_CASE(gateway_sigterm_answers_requests_in_flight_then_exits_0),
        TL_CASE(gateway_drain_timeout_with_requests_waiting_on_redis_exits_cleanly),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
