/* wait_test.c: completion reaches the client without polling. Prefer: wait=N on submit and
 * read (docs/api.md, "Waiting"), and GET /v1/jobs/{id}/events (Server-Sent Events). */
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static tl_resp *submit_wait(tl_fleet *f, const char *body, const char *prefer) {
    tl_req req = {.method = "POST", .body = body, .timeout_ms = 70000};
    req.headers[0] = prefer;
    return tl_request(f, "/v1/jobs", req);
}

TL_TEST(submit_with_wait_answers_200_with_the_result_of_a_fast_job) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_resp *r = submit_wait(f, "{\"model\": \"echo\", \"input\": {\"page\": 1}}",
                             "Prefer: wait=20");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
    ASSERT_EQ_JSON(tl_jget(r->json, "result"), tl_json("{\"page\": 1}"));
    ASSERT_EQ_STR(tl_resp_header(r, "Preference-Applied"), "wait=20");
    ASSERT_NOT_NULL(tl_resp_header(r, "Location"));

    /* ?wait=N works the same; a failed job answers 200 with its error, no result. */
    tl_fleet_add_worker(f, "sleep");
    tl_req req = {.method = "POST",
                  .body =
                      "{\"model\": \"sleep\", \"input\": {\"ms\": 10, \"fail\": \"bad page\"}}"};
    r = tl_request(f, "/v1/jobs?wait=20", req);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "failed");
    ASSERT_EQ_STR(tl_jstr(r->json, "error"), "bad page");
    ASSERT_NULL(tl_jget(r->json, "result"));
}

/* An idle worker starts a batch as soon as one job comes, whatever its max delay (which
 * only lets a busy worker wait for a fuller batch): a lone client waiting on its job is
 * never held back waiting for company. With a 60 s delay, a worker that waited for
 * company would let the 10 s wait run out. */
TL_TEST(idle_worker_starts_a_lone_job_at_once_whatever_its_max_delay) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"},
                                                  .worker_env = {"FLEET_MAX_DELAY_MS=60000"}});
    for (int i = 0; i < 3; i++) {
        tl_resp *r = submit_wait(f, tl_printf("{\"model\": \"echo\", \"input\": %d}", i),
                                 "Prefer: wait=10");
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
    }
}

TL_TEST(wait_that_runs_out_answers_the_usual_status) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"}});
    tl_resp *r = submit_wait(f, "{\"model\": \"sleep\", \"input\": {\"ms\": 5000, \"steps\": 5}}",
                             "Prefer: wait=1");
    ASSERT_HTTP_STATUS(r, 202);
    const char *st = tl_jstr(r->json, "status");
    ASSERT_TRUE(strcmp(st, "queued") == 0 || strcmp(st, "running") == 0);
    ASSERT_NULL(tl_jget(r->json, "result"));
    const char *id = tl_jstr(r->json, "id");

    /* A read that waits long enough gets the end; one that does not, the current state. */
    tl_req slow = {.timeout_ms = 5000};
    slow.headers[0] = "Prefer: wait=1";
    r = tl_request(f, tl_printf("/v1/jobs/%s", id), slow);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "running");
    r = tl_request(f, tl_printf("/v1/jobs/%s?wait=30", id), (tl_req){.timeout_ms = 40000});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "succeeded");
    ASSERT_EQ_INT(tl_jint(r->json, "result.slept_ms"), 5000);
}

TL_TEST(wait_refuses_bad_values_and_unknown_jobs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *body = "{\"model\": \"echo\", \"input\": 1}";
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(submit_wait(f, body, "Prefer: wait=61"), 400), "0 to 60");
    ASSERT_PROBLEM(submit_wait(f, body, "Prefer: wait=soon"), 400);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E?wait=x"), 400);
    /* Nothing was written by the refused submits. */
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS {%s}:stream:echo", f->prefix), 0);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E?wait=5"), 404);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/nope?wait=5"), 400); /* not a job id */
}

/* 500 submits with wait against fast jobs, from 5 clients at once: every one must come
 * back 200 with its own result; none may miss the completion (a finish between the submit
 * and the wait). */
TL_TEST(no_completion_is_missed_in_500_racing_submits) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo", "echo"}});
    enum { CLIENTS = 5, EACH = 100 };
    pid_t kids[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        kids[c] = fork();
        ASSERT_TRUE(kids[c] >= 0);
        if (kids[c] > 0) continue;
        int bad = 0;
        for (int i = 0; i < EACH; i++) {
            char err[256];
            int n = c * EACH + i;
            tl_req req = {.url = tl_printf("%s/v1/jobs", f->url),
                          .method = "POST",
                          .body = tl_printf("{\"model\": \"echo\", \"input\": {\"n\": %d}}", n),
                          .timeout_ms = 40000};
            req.headers[0] = "Prefer: wait=30";
            tl_resp *r = tl_http_try(&req, err, sizeof err);
            json_t *res = r && r->json ? json_object_get(r->json, "result") : NULL;
            json_t *got = res ? json_object_get(res, "n") : NULL;
            if (!r || r->status != 200 || !json_is_integer(got) || json_integer_value(got) != n)
                bad++;
        }
        _exit(bad > 100 ? 100 : bad);
    }
    int missed = 0;
    for (int c = 0; c < CLIENTS; c++) {
        int st = 0;
        waitpid(kids[c], &st, 0);
        missed += WIFEXITED(st) ? WEXITSTATUS(st) : EACH;
    }
    tl_log("%d of %d submits answered 200 with their result", CLIENTS * EACH - missed,
           CLIENTS * EACH);
    ASSERT_EQ_INT(missed, 0);
}

/* ------------------------------------------------------------ SSE ------------------- */

/* The events of an SSE body, in order, as "name" strings; also checks each data line is
 * a job object of the given id. */
static int sse_events(const char *body, const char *id, const char **names, int max) {
    int n = 0;
    const char *p = body;
    while ((p = strstr(p, "event: ")) && n < max) {
        p += 7;
        size_t len = strcspn(p, "\n");
        names[n++] = tl_printf("%.*s", (int)len, p);
        const char *data = strstr(p, "data: ");
        ASSERT_NOT_NULL(data);
        data += 6;
        size_t dl = strcspn(data, "\n");
        json_t *job = tl_json(tl_printf("%.*s", (int)dl, data));
        ASSERT_EQ_STR(tl_jstr(job, "id"), id);
    }
    return n;
}

TL_TEST(events_stream_a_job_from_state_to_final) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 600, \"steps\": 3}");
    /* The worker needs a moment to start, so the stream opens on a queued job: state,
     * then running, progress, and final. */
    tl_fleet_add_worker(f, "sleep");
    tl_resp *r = tl_request(f, tl_printf("/v1/jobs/%s/events", id), (tl_req){.timeout_ms = 30000});
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_STR_CONTAINS(r->content_type, "text/event-stream");
    const char *names[32];
    int n = sse_events(r->body, id, names, 32);
    tl_log("events: %d", n);
    ASSERT_GE_INT(n, 2);
    ASSERT_EQ_STR(names[0], "state");
    ASSERT_EQ_STR(names[n - 1], "final");
    const char *fin = strstr(strstr(r->body, "event: final"), "data: ") + 6;
    json_t *last = tl_json(tl_printf("%.*s", (int)strcspn(fin, "\n"), fin));
    ASSERT_EQ_STR(tl_jstr(last, "status"), "succeeded");
    ASSERT_EQ_INT(tl_jint(last, "progress.done"), 3);
    for (int i = 1; i < n - 1; i++)
        ASSERT_TRUE(strcmp(names[i], "status") == 0 || strcmp(names[i], "progress") == 0);

    /* A finished job: its state, then final, then the stream closes. */
    r = tl_get(f, tl_printf("/v1/jobs/%s/events", id));
    n = sse_events(r->body, id, names, 32);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(names[0], "state");
    ASSERT_EQ_STR(names[1], "final");
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/01JDQ7ZK5W3V8X9Y0A1B2C3D4E/events"), 404);
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs/bad/events"), 400); /* not a job id */
}

/* Opens the stream on a raw socket, reads its first bytes, and hangs up. */
static void sse_open_and_drop(tl_fleet *f, const char *id) {
    int fd = tl_tcp_send(f->gateway_port,
                         tl_printf("GET /v1/jobs/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", id),
                         10000);
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t k = read(fd, buf + got, sizeof buf - 1 - got);
        if (k <= 0) break;
        got += (size_t)k;
        buf[got] = '\0';
        if (strstr(buf, "event: state")) break;
    }
    ASSERT_STR_CONTAINS(buf, "text/event-stream");
    shutdown(fd, SHUT_RDWR); /* hang up (the harness closes fd) */
}

TL_TEST(events_client_that_disconnects_frees_everything) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"sleep"},
                                                  .gateway_env = {"FLEET_SSE_HEARTBEAT_S=1"}});
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 3000, \"steps\": 30}");
    for (int i = 0; i < 20; i++) sse_open_and_drop(f, id);
    /* The gateway keeps serving, the job ends normally, and at the end of the case the
     * gateway exits cleanly under LeakSanitizer (the harness checks its log). */
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *r = tl_get(f, "/healthz");
    ASSERT_HTTP_STATUS(r, 200);
    /* Heartbeats: a stream of a long job carries ": ping" comments. */
    const char *slow = tl_job_submit(f, "sleep", "{\"ms\": 2500}");
    r = tl_request(f, tl_printf("/v1/jobs/%s/events", slow), (tl_req){.timeout_ms = 30000});
    ASSERT_STR_CONTAINS(r->body, ": ping");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(submit_with_wait_answers_200_with_the_result_of_a_fast_job),
        TL_CASE(idle_worker_starts_a_lone_job_at_once_whatever_its_max_delay),
        TL_CASE(wait_that_runs_out_answers_the_usual_status),
        TL_CASE(wait_refuses_bad_values_and_unknown_jobs),
        TL_CASE(no_completion_is_missed_in_500_racing_submits),
        TL_CASE(events_stream_a_job_from_state_to_final),
        TL_CASE(events_client_that_disconnects_frees_everything),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
