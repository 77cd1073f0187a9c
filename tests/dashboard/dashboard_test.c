/* dashboard_test.c: the dashboard at / (docs/dashboard.md), against a real gateway with
 * API keys on.
 *
 *   assets_*: the embedded files are served byte for byte without a key, with their
 *             content types, ETags (304 on a match), gzip when asked, and the page's
 *             Content-Security-Policy; the API itself still wants a key.
 *   browser:  tests/dashboard/dashboard.mjs drives Debian's chromium (npm playwright-core)
 *             through the page as a person would: it asks for a key, lists a submitted
 *             job, follows its progress live, reconnects by itself when this case restarts
 *             the gateway mid-stream, cancels the job, submits one through the form,
 *             reads its result and deletes it, submits files (multipart), retries the cancelled job, retries a
 *             dead letter from its list, shows a webhook's delivery, filters by two
 *             statuses, and gives an admin key the fleet-wide rates. Without chromium,
 *             node or tests/dashboard/node_modules (tests/run.sh installs them) the case
 *             fails under CI and is skipped when run by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define AUTH_ON "FLEET_AUTH=on"
/* The Standard Webhooks test secret (docs/webhooks.md); the receiver is on 127.0.0.1. */
#define HOOK_SECRET "FLEET_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define HOOK_ALLOW "FLEET_WEBHOOK_ALLOW=127.0.0.1/32"

static tl_fleet *start(bool with_worker) {
    tl_fleet_opts o = {.gateway_env = {AUTH_ON, HOOK_SECRET, HOOK_ALLOW}};
    if (with_worker) {
        o.workers[0] = "sleep";
        o.workers[1] = "echo";
    }
    return tl_fleet_start(&o);
}

static tl_resp *get(tl_fleet *f, const char *path, const char *h1, const char *h2) {
    tl_req req = {.method = "GET"};
    req.headers[0] = h1;
    req.headers[1] = h1 ? h2 : NULL;
    return tl_request(f, path, req);
}

static const char *source_of(const char *name) {
    char *text = tl_read_file(tl_printf("%s/gateway/ui/%s", TEST_SOURCE_DIR, name), NULL);
    if (!text) FAILF("cannot read gateway/ui/%s", name);
    return text;
}

/* ------------------------------------------------------------ assets --------------- */

TL_TEST(assets_served_without_key) {
    tl_fleet *f = start(false);
    static const struct {
        const char *path, *file, *type;
    } files[] = {
        {"/", "index.html", "text/html; charset=utf-8"},
        {"/ui/app.js", "app.js", "text/javascript; charset=utf-8"},
        {"/ui/app.css", "app.css", "text/css; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        tl_resp *r = get(f, files[i].path, NULL, NULL);
        ASSERT_HTTP_STATUS(r, 200);
        ASSERT_EQ_STR(r->content_type, files[i].type);
        const char *want = source_of(files[i].file);
        ASSERT_EQ_INT(r->body_len, strlen(want));
        ASSERT_EQ_STR(r->body, want);
        ASSERT_EQ_STR(tl_resp_header(r, "Cache-Control"), "no-cache");
        ASSERT_EQ_STR(tl_resp_header(r, "X-Content-Type-Options"), "nosniff");
        ASSERT_NULL(tl_resp_header(r, "Content-Encoding"));
        const char *etag = tl_resp_header(r, "ETag");
        ASSERT_NOT_NULL(etag);
        ASSERT_EQ_INT(strlen(etag), 22); /* a quoted 20-digit hash */
    }
    /* The page admits only the gateway's own script: no inline code, no other origin. */
    tl_resp *page = get(f, "/", NULL, NULL);
    const char *csp = tl_resp_header(page, "Content-Security-Policy");
    ASSERT_STR_CONTAINS(csp, "script-src 'self'");
    ASSERT_STR_CONTAINS(csp, "connect-src 'self'");
    ASSERT_STR_CONTAINS(page->body, "<script src=\"/ui/app.js\"");
    /* The page needs no key; the API it calls still does. */
    ASSERT_PROBLEM(tl_get(f, "/v1/jobs"), 401);
    ASSERT_PROBLEM(tl_get(f, "/ui/missing.js"), 404);
    ASSERT_PROBLEM(tl_post(f, "/", "{}"), 405);
}

TL_TEST(assets_revalidate_with_etag) {
    tl_fleet *f = start(false);
    tl_resp *r = get(f, "/ui/app.js", NULL, NULL);
    const char *etag = tl_resp_header(r, "ETag");
    ASSERT_NOT_NULL(etag);
    tl_resp *again = get(f, "/ui/app.js", tl_printf("If-None-Match: %s", etag), NULL);
    ASSERT_HTTP_STATUS(again, 304);
    ASSERT_EQ_INT(again->body_len, 0);
    ASSERT_EQ_STR(tl_resp_header(again, "ETag"), etag);
    /* The file's own length and type, as a 200 would say (RFC 9110, 304), never 0 and
     * text/plain, which a cache could store over its copy's. */
    ASSERT_EQ_STR(tl_resp_header(again, "Content-Length"),
                  tl_printf("%zu", strlen(source_of("app.js"))));
    ASSERT_EQ_STR(again->content_type, "text/javascript; charset=utf-8");
    /* Weak comparison (RFC 9110 for GET), and a list. */
    ASSERT_HTTP_STATUS(get(f, "/ui/app.js", tl_printf("If-None-Match: \"x\", W/%s", etag), NULL),
                       304);
    /* Another file's tag, or a stale one, gets the file. */
    const char *page_tag = tl_resp_header(get(f, "/", NULL, NULL), "ETag");
    ASSERT_NE_STR(page_tag, etag);
    tl_resp *other = get(f, "/ui/app.js", tl_printf("If-None-Match: %s", page_tag), NULL);
    ASSERT_HTTP_STATUS(other, 200);
    ASSERT_EQ_STR(other->body, source_of("app.js"));
}

TL_TEST(assets_gzip_when_accepted) {
    tl_fleet *f = start(false);
    const char *plain_tag = tl_resp_header(get(f, "/ui/app.js", NULL, NULL), "ETag");
    tl_resp *r = get(f, "/ui/app.js", "Accept-Encoding: br, gzip;q=0.8", NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_resp_header(r, "Content-Encoding"), "gzip");
    ASSERT_EQ_STR(tl_resp_header(r, "Vary"), "Accept-Encoding");
    ASSERT_TRUE(r->body_len > 18);
    ASSERT_EQ_INT((unsigned char)r->body[0], 0x1f); /* the gzip magic */
    ASSERT_EQ_INT((unsigned char)r->body[1], 0x8b);
    ASSERT_LT_INT(r->body_len, strlen(source_of("app.js")) / 2);
    /* Its own tag: a cache never mixes the two encodings. */
    const char *gz_tag = tl_resp_header(r, "ETag");
    ASSERT_NE_STR(gz_tag, plain_tag);
    ASSERT_HTTP_STATUS(get(f, "/ui/app.js", "Accept-Encoding: gzip",
                           tl_printf("If-None-Match: %s", gz_tag)),
                       304);
    /* gzip;q=0 refuses it. */
    tl_resp *no = get(f, "/ui/app.js", "Accept-Encoding: gzip;q=0, identity", NULL);
    ASSERT_NULL(tl_resp_header(no, "Content-Encoding"));
    ASSERT_EQ_STR(no->body, source_of("app.js"));
}

/* ------------------------------------------------------------ the browser ----------- */

/* Fails the case under CI (tests/run.sh installs every tool), skips it by hand. */
static void need(bool ok, const char *what) {
    if (ok) return;
    if (getenv("CI")) FAILF("%s (tests/run.sh installs it)", what);
    TL_SKIP("%s: run tests/run.sh, or install it (docs/dashboard.md, \"Tests\")", what);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *tenant_key(tl_fleet *f, const char *name, bool admin) {
    tl_cmd_result r = tl_fleetctl(TL_ARGS("--redis-url", f->redis->url, "--prefix", f->prefix),
                                  admin ? TL_ARGS("tenant", "add", name, "--admin")
                                        : TL_ARGS("tenant", "add", name));
    tl_expect_exit(&r, 0);
    const char *k = strstr(r.out, "fk_");
    ASSERT_NOT_NULL(k);
    return tl_printf("%.*s", (int)strcspn(k, " \r\n"), k);
}

static const char *submit_as(tl_fleet *f, const char *key, const char *body) {
    tl_req req = {.method = "POST", .body = body};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 202);
    return tl_jstr(r->json, "id");
}

static json_t *job_as(tl_fleet *f, const char *key, const char *id) {
    tl_req req = {.method = "GET"};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    tl_resp *r = tl_request(f, tl_printf("/v1/jobs/%s", id), req);
    ASSERT_HTTP_STATUS(r, 200);
    return r->json;
}

static bool gateway_ready(void *arg) {
    tl_fleet *f = arg;
    char err[256];
    tl_resp *r = tl_http_try(&(tl_req){.url = tl_printf("%s/readyz", f->url), .timeout_ms = 2000},
                             err, sizeof err);
    return r && r->status == 200;
}

/* Stops the gateway (SIGTERM: it ends its event streams) and starts another on the same
 * port, as a deploy would. */
static void restart_gateway(tl_fleet *f) {
    ASSERT_EQ_INT(tl_proc_stop(f->gateway, 10000), 0);
    const char *path = tl_bin_path("fleet-gateway");
    const char *env[] = {tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
                         tl_printf("FLEET_LISTEN=127.0.0.1:%d", f->gateway_port),
                         tl_printf("FLEET_PREFIX=%s", f->prefix),
                         AUTH_ON,
                         HOOK_SECRET,
                         HOOK_ALLOW,
                         NULL};
    f->gateway = tl_spawn(&(tl_spawn_opts){.name = "gateway-restarted",
                                           .path = path,
                                           .argv = TL_ARGS(path),
                                           .env = env,
                                           .checked = true});
    ASSERT_WAIT_FOR(gateway_ready, f, TL_WAIT_MS);
}

TL_TEST(browser) {
    const char *dir = tl_printf("%s/tests/dashboard", TEST_SOURCE_DIR);
    const char *chromium = getenv("CHROMIUM") ? getenv("CHROMIUM") : "/usr/bin/chromium";
    need(access(chromium, X_OK) == 0, tl_printf("%s is not installed", chromium));
    need(access("/usr/bin/node", X_OK) == 0, "/usr/bin/node is not installed");
    need(file_exists(tl_printf("%s/node_modules/playwright-core/package.json", dir)),
         "tests/dashboard/node_modules has no playwright-core (npm ci there)");

    tl_fleet *f = start(true);
    const char *key = tenant_key(f, "acme", false);
    const char *admin_key = tenant_key(f, "ops", true);
    /* A minute in 60 steps: progress every second while the page watches. */
    const char *id = submit_as(f, key,
                               "{\"model\": \"sleep\", \"input\": {\"ms\": 60000, "
                               "\"steps\": 60}}");
    /* Markup in its metadata; its webhook's delivery state shows in the page. */
    tl_receiver *rx = tl_receiver_start(0);
    const char *xss =
        submit_as(f, key,
                  tl_printf("{\"model\": \"sleep\", \"input\": {\"ms\": 0}, \"webhook\": \"%s\", "
                            "\"metadata\": {\"note\": \"<img id=pwned src=x onerror=alert(1)>\"}}",
                            tl_receiver_url(rx, "/hook")));
    /* A transient failure with one attempt allowed: it is dead-lettered. */
    const char *dead = submit_as(f, key,
                                 "{\"model\": \"sleep\", \"max_attempts\": 1, \"input\": "
                                 "{\"ms\": 0, \"fail\": \"GPU busy\", \"retryable\": true}}");
    const char *sync = tl_printf("%s/sync", tl_tmpdir());
    ASSERT_EQ_INT(mkdir(sync, 0700), 0);
    const char *shot = getenv("FLEET_DASHBOARD_SCREENSHOT");
    const char *env[] = {tl_printf("FLEET_URL=%s", f->url),
                         tl_printf("FLEET_KEY=%s", key),
                         tl_printf("FLEET_ADMIN_KEY=%s", admin_key),
                         tl_printf("FLEET_JOB=%s", id),
                         tl_printf("FLEET_XSS_JOB=%s", xss),
                         tl_printf("FLEET_DEAD_JOB=%s", dead),
                         tl_printf("FLEET_SYNC=%s", sync),
                         tl_printf("CHROMIUM=%s", chromium),
                         tl_printf("FLEET_SCREENSHOT=%s", shot ? shot : ""),
                         tl_printf("FLEET_FORM_JOB=%s/form-job", tl_tmpdir()),
                         NULL};
    const char *script = tl_printf("%s/dashboard.mjs", dir);
    tl_proc *node = tl_spawn(&(tl_spawn_opts){
        .name = "browser", .path = "/usr/bin/node", .argv = TL_ARGS("node", script), .env = env});
    /* The script asks for the restart once it saw the progress move. */
    ASSERT_EVENTUALLY(file_exists(tl_printf("%s/restart", sync)) || !tl_proc_alive(node), 60000);
    if (tl_proc_alive(node)) {
        tl_log("restarting the gateway under the page");
        restart_gateway(f);
        FILE *w = fopen(tl_printf("%s/restarted", sync), "w");
        ASSERT_NOT_NULL(w);
        fclose(w);
    }
    ASSERT_TRUE(tl_proc_wait(node, 90000));
    if (!WIFEXITED(node->status) || WEXITSTATUS(node->status) != 0) {
        tl_print_tail(node->log_path, 40);
        FAILF("the browser script failed: %s", tl_proc_describe(node));
    }
    /* What the page did, seen through the API. */
    json_t *job = job_as(f, key, id);
    ASSERT_EQ_STR(tl_jstr(job, "status"), "cancelled");
    const char *form_id = tl_read_file(tl_printf("%s/form-job", tl_tmpdir()), NULL);
    ASSERT_NOT_NULL(form_id);
    /* Submitted through the form, then deleted through the page. */
    tl_req req = {.method = "GET"};
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    ASSERT_PROBLEM(tl_request(f, tl_printf("/v1/jobs/%s", form_id), req), 404);
    /* Cancelled, retried and cancelled again: the second run's attempt. */
    ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
    ASSERT_EQ_INT(tl_stat(f, "sleep", "cancelled"), 1);
    /* The dead letter was retried from the page's list. */
    ASSERT_EQ_INT(tl_stat(f, "sleep", "dlq_retried"), 1);
    ASSERT_GE_INT(tl_receiver_count(rx), 1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(assets_served_without_key),
        TL_CASE(assets_revalidate_with_etag),
        TL_CASE(assets_gzip_when_accepted),
        TL_CASE(browser),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
