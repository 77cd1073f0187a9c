/* cli_test.c: fleetctl against a real gateway (docs/cli.md). Skipped when fleetctl was
 * not built. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"

#define WAIT_MS 30000

static void need_fleetctl(void) {
    if (!tl_bin_exists("fleetctl")) TL_SKIP("fleetctl not built in %s", tl_bin_dir());
}

/* Runs fleetctl --url <gateway> ARGS... and returns its result. */
static tl_cmd_result fleetctl(tl_fleet *f, const char *const *args) {
    const char *argv[16];
    int n = 0;
    argv[n++] = tl_bin_path("fleetctl");
    argv[n++] = "--url";
    argv[n++] = f->url;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    const char *line = tl_printf("fleetctl --url %s", f->url);
    for (int i = 0; args[i]; i++) line = tl_printf("%s '%s'", line, args[i]);
    tl_log("%s", line);
    static int seq;
    return tl_run_cmd(tl_printf("fleetctl-%d", ++seq), argv[0], argv, NULL, WAIT_MS);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The first 26-character token of Crockford base32 in s (a job id), or NULL. */
static const char *find_id(const char *s) {
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (const char *p = s; *p; p++) {
        if (p > s && isalnum((unsigned char)p[-1])) continue;
        size_t n = strspn(p, alphabet);
        if (n == 26 && !isalnum((unsigned char)p[26])) return tl_printf("%.26s", p);
    }
    return NULL;
}

static void expect_exit(const tl_cmd_result *r, int code) {
    if (r->exit_code != code)
        FAILF("fleetctl exited with %d (expected %d)\n      stdout: %s\n      stderr: %s",
              r->exit_code, code, r->out, r->err);
}

TL_TEST(fleetctl_submit_then_wait_prints_the_result) {
    need_fleetctl();
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    tl_cmd_result sub = fleetctl(f, ARGS("submit", "echo", "{\"a\":1}"));
    expect_exit(&sub, 0);
    const char *id = find_id(sub.out);
    if (!id) FAILF("fleetctl submit printed no job id:\n%s", sub.out);
    /* It is a real job of this gateway. */
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "model"), "echo");

    tl_cmd_result w = fleetctl(f, ARGS("wait", id, "--timeout", "60"));
    expect_exit(&w, 0);
    json_error_t e;
    json_t *out = tl_json_own(json_loads(w.out, JSON_DECODE_ANY, &e));
    if (!out) FAILF("fleetctl wait did not print the result as JSON (%s):\n%s", e.text, w.out);
    ASSERT_EQ_JSON(out, tl_json("{\"a\": 1}"));
}

TL_TEST(fleetctl_cancel_then_wait_reports_cancelled) {
    need_fleetctl();
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0}); /* no worker: the job stays queued */
    const char *id = tl_job_submit(f, "sleep", "{\"ms\": 10, \"steps\": 1}");
    tl_cmd_result c = fleetctl(f, ARGS("cancel", id));
    expect_exit(&c, 0);
    ASSERT_EQ_STR(tl_jstr(tl_job_get(f, id), "status"), "cancelled");
    /* docs: exit code 3 when the awaited job was cancelled. */
    tl_cmd_result w = fleetctl(f, ARGS("wait", id, "--timeout", "60"));
    expect_exit(&w, 3);
}

TL_TEST(fleetctl_status_of_an_unknown_job_fails) {
    need_fleetctl();
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});
    tl_cmd_result r = fleetctl(f, ARGS("status", "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    ASSERT_NE_INT(r.exit_code, 0);
    ASSERT_GT_INT(strlen(r.err), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(fleetctl_submit_then_wait_prints_the_result),
        TL_CASE(fleetctl_cancel_then_wait_reports_cancelled),
        TL_CASE(fleetctl_status_of_an_unknown_job_fails),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
