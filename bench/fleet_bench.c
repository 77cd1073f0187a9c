/* fleet_bench.c: load generator for a running fleet (docs/benchmarks.md).
 *
 *   fleet-bench submit   POST /v1/jobs over N keep-alive connections for D seconds (or R
 *                        requests): requests/s, p50/p99 latency, responses other than 202.
 *   fleet-bench e2e      submit J jobs, then poll GET /v1/stats until all of them are
 *                        final: jobs/s from the first submit to the last completion.
 *   fleet-bench all      both, submit first (the default).
 *
 * It prints figures and never judges them: the exit code says only whether the benchmark
 * could run (0), could not (1: no gateway, no /v1/stats), or was misused (2).
 *
 * One thread, one libevent loop: each connection sends its next request from the
 * previous one's completion callback (a closed loop, like wrk), so the offered load
 * adapts to the server and latency is not inflated by the generator's own queueing.
 */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fleet/config.h"
#include "http_conn.h"
#include "latency.h"

#define BENCH_MAX_ERRORS_IN_A_ROW 5 /* a connection that fails this often stops */
#define BENCH_RETRY_MS 50           /* pause after a connection error */
#define BENCH_MAX_CODES 16

/* ------------------------------------------------------------------ options ------------- */

static const char *o_url, *o_api_key, *o_model, *o_input;
static long o_wait;
static long o_connections, o_duration, o_requests, o_jobs, o_poll_ms, o_wait_limit;

static const fleet_option options[] = {
    {"url", "FLEET_URL", FLEET_OPT_STR, "http://127.0.0.1:8080", "gateway base URL (http only)",
     &o_url, 0, 0},
    {"api-key", "FLEET_API_KEY", FLEET_OPT_STR, "", "sent as 'Authorization: Bearer KEY'",
     &o_api_key, 0, 0},
    {"connections", "FLEET_BENCH_CONNECTIONS", FLEET_OPT_INT, "50",
     "concurrent keep-alive connections", &o_connections, 1, 10000},
    {"duration", "FLEET_BENCH_DURATION", FLEET_OPT_INT, "10",
     "submit: seconds to run (unless --requests is set)", &o_duration, 1, 3600},
    {"requests", "FLEET_BENCH_REQUESTS", FLEET_OPT_INT, "0",
     "submit: send exactly this many requests instead (0: use --duration)", &o_requests, 0,
     100000000},
    {"wait", "FLEET_BENCH_WAIT", FLEET_OPT_INT, "0",
     "submit: ask each submit to wait up to this many seconds for its result (?wait=N); "
     "latency is then submit-to-result and 200 counts as done",
     &o_wait, 0, 60},
    {"jobs", "FLEET_BENCH_JOBS", FLEET_OPT_INT, "10000", "e2e: jobs to submit and wait for",
     &o_jobs, 1, 100000000},
    {"model", "FLEET_BENCH_MODEL", FLEET_OPT_STR, "echo", "model of the submitted jobs", &o_model,
     0, 0},
    {"input", "FLEET_BENCH_INPUT", FLEET_OPT_STR, "{\"text\":\"hello\"}",
     "input of the submitted jobs (JSON)", &o_input, 0, 0},
    {"poll-ms", "FLEET_BENCH_POLL_MS", FLEET_OPT_INT, "20",
     "e2e: interval of GET /v1/stats (the resolution of the completion time)", &o_poll_ms, 1,
     10000},
    {"wait-limit", "FLEET_BENCH_WAIT_LIMIT", FLEET_OPT_INT, "300",
     "e2e: stop waiting after this many seconds and report what finished", &o_wait_limit, 1, 86400},
};

static const char usage[] =
    "usage: fleet-bench [options] [submit|e2e|all]\n\n"
    "Load generator for a running fleet-gateway (docs/benchmarks.md). Prints figures; never\n"
    "passes or fails on them.";

/* ------------------------------------------------------------------ run state ----------- */

typedef struct bench bench;

typedef struct slot {
    bench *b;
    bench_conn *conn;
    uint64_t sent_ns;
    int errors_in_a_row;
    bool retired;
    struct event *retry;
} slot;

struct bench {
    struct event_base *base;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char hostport[300];
    char *submit_req, *stats_req;
    size_t submit_len, stats_len;

    slot *slots;
    long nslots, active;

    /* the current submit phase */
    bool e2e;
    long target; /* requests to send; 0 = until deadline_ns */
    uint64_t start_ns, deadline_ns, first_ns, last_ns, submit_end_ns;
    long sent, done, accepted, errors, gave_up;
    int codes[BENCH_MAX_CODES], code_counts[BENCH_MAX_CODES], ncodes;
    bench_latency lat;

    /* e2e completion polling */
    bench_conn *poller;
    struct event *poll_timer;
    long long base_succeeded, base_failed, base_cancelled;
    long long unfinished; /* queued + running now, from the last stats reply */
    long long succeeded, failed, cancelled;
    uint64_t end_ns, wait_deadline_ns;
    bool finished, stats_error;
};

static void slot_issue(slot *s);

/* CPU seconds this process has used: the generator shares the machine with what it
 * measures, so the figures say how much of it the generator itself took. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void print_cpu(double cpu0, double secs) {
    double used = cpu_seconds() - cpu0;
    printf("  fleet-bench itself: %.2f s CPU (%.2f cores)\n", used, secs > 0 ? used / secs : 0);
}

/* ------------------------------------------------------------------ submit phase -------- */

static void count_code(bench *b, int code) {
    for (int i = 0; i < b->ncodes; i++)
        if (b->codes[i] == code) {
            b->code_counts[i]++;
            return;
        }
    if (b->ncodes < BENCH_MAX_CODES) {
        b->codes[b->ncodes] = code;
        b->code_counts[b->ncodes++] = 1;
    }
}

static void slot_retire(slot *s) {
    if (s->retired) return;
    s->retired = true;
    bench *b = s->b;
    if (--b->active == 0) {
        b->submit_end_ns = b->last_ns ? b->last_ns : bench_now_ns();
        if (!b->e2e) event_base_loopexit(b->base, NULL);
    }
}

static void on_submitted(bench_conn *c, int status, const char *body, size_t len, void *arg) {
    slot *s = arg;
    bench *b = s->b;
    uint64_t now = bench_now_ns();
    b->done++;
    if (status < 0) {
        b->errors++;
        if (++s->errors_in_a_row >= BENCH_MAX_ERRORS_IN_A_ROW) {
            b->gave_up++;
            slot_retire(s);
            return;
        }
        struct timeval tv = {0, BENCH_RETRY_MS * 1000};
        evtimer_add(s->retry, &tv);
        return;
    }
    s->errors_in_a_row = 0;
    b->last_ns = now;
    bench_latency_add(&b->lat, now - s->sent_ns);
    if (status == 202 || (o_wait > 0 && status == 200)) b->accepted++;
    else count_code(b, status);
    slot_issue(s);
}

static void slot_issue(slot *s) {
    bench *b = s->b;
    uint64_t now = bench_now_ns();
    bool more = b->target > 0 ? b->sent < b->target : now < b->deadline_ns;
    if (!more) {
        slot_retire(s);
        return;
    }
    s->sent_ns = now;
    if (!b->first_ns) b->first_ns = now;
    if (bench_conn_request(s->conn, b->submit_req, b->submit_len, on_submitted, s) < 0) {
        fprintf(stderr, "fleet-bench: cannot open a connection to %s\n", b->hostport);
        slot_retire(s);
        return;
    }
    b->sent++;
}

static void on_retry(evutil_socket_t fd, short what, void *arg) { slot_issue(arg); }

static void reset_phase(bench *b) {
    b->sent = b->done = b->accepted = b->errors = b->gave_up = 0;
    b->ncodes = 0;
    b->first_ns = b->last_ns = b->submit_end_ns = 0;
    bench_latency_free(&b->lat);
    b->lat = (bench_latency){0};
}

/* Runs one submit phase over all slots until every slot has retired (plain submit) or
 * until the e2e poller ends the loop. */
static void run_submit_phase(bench *b) {
    b->active = b->nslots;
    b->start_ns = bench_now_ns();
    b->deadline_ns = b->start_ns + (uint64_t)o_duration * 1000000000u;
    for (long i = 0; i < b->nslots; i++) {
        b->slots[i].retired = false;
        b->slots[i].errors_in_a_row = 0;
    }
    for (long i = 0; i < b->nslots; i++) slot_issue(&b->slots[i]);
    event_base_dispatch(b->base);
}

static void print_codes(const bench *b) {
    long other = 0;
    for (int i = 0; i < b->ncodes; i++) other += b->code_counts[i];
    printf("  responses other than 202: %ld", other);
    for (int i = 0; i < b->ncodes; i++)
        printf("%s%d x%d", i ? ", " : " (", b->codes[i], b->code_counts[i]);
    printf("%s\n", b->ncodes ? ")" : "");
    printf("  connection errors: %ld", b->errors);
    if (b->gave_up)
        printf(" (%ld of %ld connections failed %d times in a row and stopped: is a gateway "
               "listening on %s?)",
               b->gave_up, b->nslots, BENCH_MAX_ERRORS_IN_A_ROW, b->hostport);
    putchar('\n');
}

static unsigned long total_opens(const bench *b) {
    unsigned long n = 0;
    for (long i = 0; i < b->nslots; i++) n += bench_conn_opens(b->slots[i].conn);
    return n;
}

static int bench_submit(bench *b) {
    reset_phase(b);
    b->e2e = false;
    b->target = o_requests;
    unsigned long opens0 = total_opens(b);
    double cpu0 = cpu_seconds();
    run_submit_phase(b);
    long responses = b->done - b->errors;
    double secs = (double)(b->submit_end_ns - b->start_ns) / 1e9;
    printf("submit: POST /v1/jobs {\"model\":\"%s\",\"input\":%s}, %ld connections, ", o_model,
           o_input, b->nslots);
    if (o_requests) printf("%ld requests\n", o_requests);
    else printf("%ld s\n", o_duration);
    if (o_wait > 0)
        printf("  each submit waits up to %ld s for its result (?wait=%ld): latency is submit "
               "to result; 200 and 202 count as accepted\n",
               o_wait, o_wait);
    printf("  responses: %ld in %.2f s = %.0f requests/s (202: %ld = %.0f/s)\n", responses, secs,
           secs > 0 ? (double)responses / secs : 0, b->accepted,
           secs > 0 ? (double)b->accepted / secs : 0);
    printf("  latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, "
           "mean %.2f ms\n",
           bench_latency_pct_ms(&b->lat, 50), bench_latency_pct_ms(&b->lat, 90),
           bench_latency_pct_ms(&b->lat, 99), bench_latency_pct_ms(&b->lat, 99.9),
           bench_latency_pct_ms(&b->lat, 100), bench_latency_mean_ms(&b->lat));
    print_codes(b);
    print_cpu(cpu0, secs);
    unsigned long opened = total_opens(b) - opens0;
    if (opened > (unsigned long)b->nslots && b->errors == 0)
        printf("  note: %lu connections opened for %ld slots: the server closed keep-alive "
               "connections\n",
               opened, b->nslots);
    fflush(stdout);
    return responses > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ e2e phase ----------- */

static long long stat_of(const json_t *m, const char *name) {
    return (long long)json_integer_value(json_object_get(m, name));
}

/* Reads this model's final counters from a GET /v1/stats body. */
static int parse_stats(bench *b, const char *body, size_t len, long long *succ, long long *fail,
                       long long *canc, long long *unfinished) {
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *m = json_object_get(json_object_get(j, "models"), o_model);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    /* A model with no jobs yet may be absent: all counters are then 0. */
    *succ = stat_of(m, "succeeded");
    *fail = stat_of(m, "failed");
    *canc = stat_of(m, "cancelled");
    *unfinished = stat_of(m, "queued") + stat_of(m, "running");
    json_decref(j);
    return 0;
}

static void on_stats(bench_conn *c, int status, const char *body, size_t len, void *arg) {
    bench *b = arg;
    uint64_t now = bench_now_ns();
    long long s, f, x, u;
    if (status != 200 || parse_stats(b, body, len, &s, &f, &x, &u) < 0) {
        fprintf(stderr, "fleet-bench: GET /v1/stats answered %d: %.200s\n", status,
                status > 0 ? body : "connection failed");
        b->stats_error = true;
        event_base_loopexit(b->base, NULL);
        return;
    }
    b->succeeded = s - b->base_succeeded;
    b->failed = f - b->base_failed;
    b->cancelled = x - b->base_cancelled;
    b->unfinished = u;
    if (!b->e2e) { /* a baseline request */
        event_base_loopexit(b->base, NULL);
        return;
    }
    if (b->active == 0 && b->succeeded + b->failed + b->cancelled >= b->accepted) {
        b->end_ns = now;
        b->finished = true;
        event_base_loopexit(b->base, NULL);
    } else if (now > b->wait_deadline_ns) {
        event_base_loopexit(b->base, NULL);
    }
}

static void on_poll(evutil_socket_t fd, short what, void *arg) {
    bench *b = arg;
    /* bench_conn_request refuses while the previous poll is in flight: that is the
     * intended back-pressure when the gateway is slow to answer. */
    bench_conn_request(b->poller, b->stats_req, b->stats_len, on_stats, b);
}

static int bench_e2e(bench *b) {
    reset_phase(b);
    b->e2e = false;
    b->stats_error = false;
    b->base_succeeded = b->base_failed = b->base_cancelled = 0;
    /* Jobs left from an earlier phase would finish during this one and be counted as
     * ours: wait until the model's queue is empty, then take the baseline. */
    uint64_t drain_deadline = bench_now_ns() + (uint64_t)o_wait_limit * 1000000000u;
    uint64_t drain_start = bench_now_ns();
    for (;;) {
        if (bench_conn_request(b->poller, b->stats_req, b->stats_len, on_stats, b) < 0) {
            fprintf(stderr, "fleet-bench: cannot connect to %s\n", b->hostport);
            return 1;
        }
        event_base_dispatch(b->base);
        if (b->stats_error) return 1;
        if (b->unfinished <= 0) break;
        if (bench_now_ns() > drain_deadline) {
            fprintf(stderr,
                    "fleet-bench: %lld %s jobs still queued or running after %ld s; "
                    "e2e skipped\n",
                    b->unfinished, o_model, o_wait_limit);
            return 1;
        }
        struct timeval pause = {0, 100000};
        event_base_loopexit(b->base, &pause);
        event_base_dispatch(b->base);
    }
    double drained = (double)(bench_now_ns() - drain_start) / 1e9;
    if (drained > 0.5)
        printf("(e2e waited %.1f s for earlier %s jobs to finish)\n", drained, o_model);
    b->base_succeeded = b->succeeded;
    b->base_failed = b->failed;
    b->base_cancelled = b->cancelled;
    b->succeeded = b->failed = b->cancelled = 0;

    b->e2e = true;
    b->finished = false;
    b->target = o_jobs;
    b->wait_deadline_ns = bench_now_ns() + (uint64_t)o_wait_limit * 1000000000u;
    struct timeval tv = {o_poll_ms / 1000, (o_poll_ms % 1000) * 1000};
    event_add(b->poll_timer, &tv);
    double cpu0 = cpu_seconds();
    run_submit_phase(b);
    event_del(b->poll_timer);
    if (b->stats_error) return 1;

    double submit_s = (double)(b->submit_end_ns - b->first_ns) / 1e9;
    printf("e2e: %ld %s jobs, %ld connections, completion polled every %ld ms\n", o_jobs, o_model,
           b->nslots, o_poll_ms);
    printf("  accepted: %ld of %ld, submitted in %.2f s (%.0f jobs/s)\n", b->accepted, b->sent,
           submit_s, submit_s > 0 ? (double)b->accepted / submit_s : 0);
    if (b->finished) {
        double total_s = (double)(b->end_ns - b->first_ns) / 1e9;
        printf("  all %ld finished %.2f s after the first submit: %.0f jobs/s end to end\n",
               b->accepted, total_s, total_s > 0 ? (double)b->accepted / total_s : 0);
    } else {
        double total_s = (double)(bench_now_ns() - b->first_ns) / 1e9;
        printf("  NOT all finished within --wait-limit %ld s: %lld of %ld after %.2f s "
               "(%.0f jobs/s)\n",
               o_wait_limit, b->succeeded + b->failed + b->cancelled, b->accepted, total_s,
               total_s > 0 ? (double)(b->succeeded + b->failed + b->cancelled) / total_s : 0);
    }
    printf("  final states: succeeded %lld, failed %lld, cancelled %lld\n", b->succeeded, b->failed,
           b->cancelled);
    print_codes(b);
    print_cpu(cpu0, (double)((b->finished ? b->end_ns : bench_now_ns()) - b->first_ns) / 1e9);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------ setup --------------- */

/* Resolves "http://host[:port][/...]" into b->addr and b->hostport. */
static int resolve(bench *b, const char *url) {
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "fleet-bench: --url must be http://host[:port] (got '%s')\n", url);
        return -1;
    }
    const char *h = url + 7;
    size_t n = strcspn(h, "/");
    if (n == 0 || n >= sizeof b->hostport) {
        fprintf(stderr, "fleet-bench: bad --url '%s'\n", url);
        return -1;
    }
    memcpy(b->hostport, h, n);
    b->hostport[n] = '\0';
    char host[300], port[16] = "80";
    snprintf(host, sizeof host, "%s", b->hostport);
    char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon) {
        if (*colon == ']') *colon++ = '\0';
        *colon = '\0';
        snprintf(port, sizeof port, "%s", colon + 1);
    }
    const char *name = host[0] == '[' ? host + 1 : host;
    char *rb = strchr(host, ']');
    if (rb) *rb = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "fleet-bench: cannot resolve %s: %s\n", b->hostport, gai_strerror(rc));
        return -1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    b->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void bench_free(bench *b) {
    for (long i = 0; b->slots && i < b->nslots; i++) {
        bench_conn_free(b->slots[i].conn);
        if (b->slots[i].retry) event_free(b->slots[i].retry);
    }
    free(b->slots);
    bench_conn_free(b->poller);
    if (b->poll_timer) event_free(b->poll_timer);
    if (b->base) event_base_free(b->base);
    free(b->submit_req);
    free(b->stats_req);
    bench_latency_free(&b->lat);
}

static int bench_init(bench *b) {
    json_error_t je;
    json_t *input = json_loads(o_input, JSON_DECODE_ANY, &je);
    if (!input) {
        fprintf(stderr, "fleet-bench: --input is not JSON: %s\n", je.text);
        return -1;
    }
    json_t *doc = json_pack("{s:s,s:o}", "model", o_model, "input", input);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!body) return -1;
    char path[32];
    snprintf(path, sizeof path, o_wait > 0 ? "/v1/jobs?wait=%ld" : "/v1/jobs", o_wait);
    b->submit_req = bench_http_format("POST", b->hostport, path, o_api_key, body, &b->submit_len);
    free(body);
    b->stats_req = bench_http_format("GET", b->hostport, "/v1/stats", o_api_key, NULL,
                                     &b->stats_len);
    b->base = event_base_new();
    if (!b->submit_req || !b->stats_req || !b->base) return -1;
    b->nslots = o_connections;
    b->slots = calloc((size_t)b->nslots, sizeof *b->slots);
    if (!b->slots) return -1;
    for (long i = 0; i < b->nslots; i++) {
        slot *s = &b->slots[i];
        s->b = b;
        s->conn = bench_conn_new(b->base, (struct sockaddr *)&b->addr, b->addrlen);
        s->retry = evtimer_new(b->base, on_retry, s);
        if (!s->conn || !s->retry) return -1;
    }
    b->poller = bench_conn_new(b->base, (struct sockaddr *)&b->addr, b->addrlen);
    b->poll_timer = event_new(b->base, -1, EV_PERSIST, on_poll, b);
    return b->poller && b->poll_timer ? 0 : -1;
}

int main(int argc, char **argv) {
    char err[256];
    int npos = 0;
    fleet_config_result cr = fleet_config_parse(options, sizeof options / sizeof options[0], argc,
                                                argv, &npos, usage, err, sizeof err);
    if (cr == FLEET_CONFIG_HELP) return 0;
    if (cr == FLEET_CONFIG_ERROR) {
        fprintf(stderr, "fleet-bench: %s\n", err);
        return 2;
    }
    const char *mode = npos >= 1 ? argv[1] : "all";
    bool do_submit = strcmp(mode, "submit") == 0 || strcmp(mode, "all") == 0;
    bool do_e2e = strcmp(mode, "e2e") == 0 || strcmp(mode, "all") == 0;
    if (npos > 1 || (!do_submit && !do_e2e)) {
        fprintf(stderr, "%s\nfleet-bench: unknown mode '%s'\n", usage, mode);
        return 2;
    }

    bench b = {0};
    int rc = 1;
    if (resolve(&b, o_url) < 0) return 2;
    if (bench_init(&b) < 0) {
        fprintf(stderr, "fleet-bench: setup failed (out of memory or bad --input)\n");
        goto out;
    }
    rc = 0;
    if (do_submit && bench_submit(&b) != 0) rc = 1;
    if (rc == 0 && do_e2e && bench_e2e(&b) != 0) rc = 1;
out:
    bench_free(&b);
    return rc;
}
