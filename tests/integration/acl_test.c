/* acl_test.c: fleet's least-privilege Redis users (deploy/redis-users.acl, rendered by
 * deploy/redis-acl.sh; docs/security.md, "Redis users and ACL").
 *
 * Redis runs with the rendered ACL file; the harness is fleet-admin, the gateway
 * fleet-gateway, the workers fleet-worker and fleetctl fleet-ctl, each with its own user
 * and password in FLEET_REDIS_URL. A whole working day of the fleet then runs through them
 * and must leave Redis' ACL LOG empty (Redis logs every command, key and channel it
 * refused there, also those of the Lua scripts, which run as the user that sent EVALSHA)
 * and no NOPERM in any log; each user is refused what it has no business doing; a wrong
 * password makes each program say so and wait rather than run half-broken. */
#include <dirent.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/state.h"
#include "testlib.h"

#define ADMIN_PW "admin-Pw-1"
#define GATEWAY_PW "gateway-Pw-2"
/* The worker's password needs percent-escapes in a URL: the programs decode them. */
#define WORKER_PW "w0rk:er@pw/%"
#define WORKER_PW_URL "w0rk%3Aer%40pw%2F%25"
#define CTL_PW "ctl-Pw-3"
#define REPLICA_PW "replica-Pw-4"
#define SENTINEL_PW "sentinel-Pw-5"
#define HOOK_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* ------------------------------------------------------------ the rules --------------- */

/* deploy/redis-acl.sh run on the shipped template with the test's passwords (the optional
 * replica and Sentinel users too) and prefix: the rendered file's path. */
static const char *render_acl(const char *prefix) {
    const char *script = TEST_SOURCE_DIR "/deploy/redis-acl.sh";
    const char *env[] = {
        "FLEET_ACL_ADMIN_PASSWORD=" ADMIN_PW,     "FLEET_ACL_GATEWAY_PASSWORD=" GATEWAY_PW,
        "FLEET_ACL_WORKER_PASSWORD=" WORKER_PW,   "FLEET_ACL_CTL_PASSWORD=" CTL_PW,
        "FLEET_ACL_REPLICA_PASSWORD=" REPLICA_PW, "FLEET_ACL_SENTINEL_PASSWORD=" SENTINEL_PW,
        tl_printf("FLEET_PREFIX=%s", prefix),       NULL};
    tl_cmd_result r = tl_run_cmd("redis-acl", script, TL_ARGS(script), env, 10000);
    tl_expect_exit(&r, 0);
    const char *path = tl_printf("%s/users.acl", tl_tmpdir());
    FILE *fp = fopen(path, "w");
    ASSERT_NOT_NULL(fp);
    ASSERT_EQ_INT(fputs(r.out, fp) >= 0, 1);
    ASSERT_EQ_INT(fclose(fp), 0);
    return path;
}

/* The rendered line of one user ("user NAME ..."), harness-owned. */
static const char *user_line(const char *acl_path, const char *user) {
    char *text = tl_read_file(acl_path, NULL);
    ASSERT_NOT_NULL(text);
    const char *want = tl_printf("user %s ", user);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (strncmp(l, want, strlen(want)) == 0) return l;
    FAILF("%s has no line for user %s", acl_path, user);
}

/* Whether the user's line allows cmd (lowercase; "xinfo|groups" for a subcommand) by name. */
static bool rule_allows(const char *line, const char *cmd) {
    const char *tok = tl_printf(" +%s ", cmd);
    const char *padded = tl_printf("%s ", line);
    return strstr(padded, tok) != NULL;
}

/* Where text holds a refusal by Redis' ACL: NOPERM at the top level; inside a script
 * Redis 7.0 says "The user executing the script can't run this command or subcommand" or
 * "can't access at least one of the keys" and Valkey 8 "ACL failure in script: ...".
 * NULL when it holds none. */
static const char *acl_refusal(const char *text) {
    static const char *const marks[] = {"NOPERM", "user executing the script can't", "ACL failure"};
    for (size_t i = 0; i < TL_COUNT(marks); i++) {
        const char *at = strstr(text, marks[i]);
        if (at) return at;
    }
    return NULL;
}

/* ------------------------------------------------------------ a fleet of users -------- */

typedef struct acl_fleet {
    tl_fleet *f;
    const char *acl;
    const char *ctl_url; /* fleet-ctl's FLEET_REDIS_URL */
    const char *admin_key;
    const char *tenant_key;
    tl_receiver *rx;
} acl_fleet;

/* The programs use database DB (SELECT is among their commands). */
#define DB 3
static const char *gateway_url(tl_redis *r) {
    return tl_printf("%s/%d", tl_redis_url_as(r, "fleet-gateway", GATEWAY_PW), DB);
}
static const char *worker_url(tl_redis *r) {
    return tl_printf("redis://fleet-worker:%s@127.0.0.1:%d/%d", WORKER_PW_URL, r->port, DB);
}

/* Redis with the rendered rules (the harness is fleet-admin), a gateway with API keys on,
 * webhooks to loopback allowed; no workers yet. */
static acl_fleet *acl_fleet_start(const char *prefix) {
    acl_fleet *a = tl_alloc(sizeof *a);
    a->acl = render_acl(prefix);
    tl_fleet *f = tl_alloc(sizeof *f);
    a->f = f;
    snprintf(f->prefix, sizeof f->prefix, "%s", prefix);
    f->redis = tl_redis_start(&(tl_redis_opts){
        .extra_args = TL_ARGS("--aclfile", a->acl), .user = "fleet-admin", .password = ADMIN_PW});
    f->rc = tl_redis_connect(f->redis);
    tl_redis_cmd(f->rc, "SELECT %d", DB);
    a->ctl_url = tl_printf("%s/%d", tl_redis_url_as(f->redis, "fleet-ctl", CTL_PW), DB);
    f->opts.gateway_env[0] = tl_printf("FLEET_REDIS_URL=%s", gateway_url(f->redis));
    f->opts.gateway_env[1] = "FLEET_AUTH=on";
    f->opts.gateway_env[2] = "FLEET_AUTH_CACHE_MS=0";
    f->opts.gateway_env[3] = "FLEET_WEBHOOK_SECRET=" HOOK_SECRET;
    f->opts.gateway_env[4] = "FLEET_WEBHOOK_ALLOW=127.0.0.1/32";
    f->opts.gateway_env[5] = "FLEET_WEBHOOK_SCHEDULE=0,0.2,0.2,0.2";
    f->opts.gateway_env[6] = "FLEET_MAX_ATTEMPTS=2";
    f->opts.worker_env[0] = tl_printf("FLEET_REDIS_URL=%s", worker_url(f->redis));
    f->opts.worker_env[1] = "FLEET_RETRY_BASE_MS=100";
    f->opts.worker_env[2] = "FLEET_LEASE_MS=1500";
    tl_fleet_start_gateway(f);
    return a;
}

/* fleetctl as fleet-ctl, with the admin key for the HTTP commands. Every run must be free
 * of NOPERM, whatever its exit code. */
static tl_cmd_result ctl(acl_fleet *a, const char *const *args) {
    const char *pre[] = {"--url",    a->f->url,    "--redis-url", a->ctl_url,
                         "--prefix", a->f->prefix, "--api-key",   a->admin_key ? a->admin_key : "",
                         NULL};
    tl_cmd_result r = tl_fleetctl(pre, args);
    if (acl_refusal(r.out) || acl_refusal(r.err))
        FAILF("fleetctl was refused by Redis' ACL:\n      stdout: %s\n      stderr: %s", r.out,
              r.err);
    return r;
}

static void ctl_ok(acl_fleet *a, const char *const *args) {
    tl_cmd_result r = ctl(a, args);
    tl_expect_exit(&r, 0);
}

static json_t *ctl_json(acl_fleet *a, const char *const *args) {
    tl_cmd_result r = ctl(a, args);
    tl_expect_exit(&r, 0);
    return tl_json(r.out);
}

static tl_resp *api(acl_fleet *a, const char *key, const char *method, const char *path,
                    const char *body, const char *extra_header) {
    tl_req req = {.method = method, .body = body};
    if (!body && strcmp(method, "POST") == 0) req.body = req.content_type = ""; /* no body */
    req.headers[0] = tl_printf("Authorization: Bearer %s", key);
    req.headers[1] = extra_header;
    return tl_request(a->f, path, req);
}

static const char *submit(acl_fleet *a, const char *body) {
    tl_resp *r = api(a, a->tenant_key, "POST", "/v1/jobs", body, NULL);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    ASSERT_NOT_NULL(id);
    return id;
}

/* n jobs of one model and input in one POST /v1/jobs/batch, all accepted. */
static void submit_batch(acl_fleet *a, const char *model, const char *input, int n) {
    const char *jobs = "";
    for (int i = 0; i < n; i++)
        jobs = tl_printf("%s%s{\"model\":\"%s\",\"input\":%s}", jobs, i ? "," : "", model, input);
    tl_resp *r = api(a, a->tenant_key, "POST", "/v1/jobs/batch", tl_printf("{\"jobs\":[%s]}", jobs),
                     NULL);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_INT(tl_jint(r->json, "accepted"), n);
}

static const char *status_of(acl_fleet *a, const char *id) {
    tl_resp *r = api(a, a->tenant_key, "GET", tl_printf("/v1/jobs/%s", id), NULL, NULL);
    ASSERT_HTTP_STATUS(r, 200);
    return tl_jstr(r->json, "status");
}

static json_t *wait_status(acl_fleet *a, const char *id, const char *want) {
    const char *st = NULL;
    if (!TL_WAIT_UNTIL((st = status_of(a, id)) && strcmp(st, want) == 0, TL_WAIT_MS))
        FAILF("job %s is %s, not %s", id, st ? st : "(none)", want);
    tl_resp *r = api(a, a->tenant_key, "GET", tl_printf("/v1/jobs/%s", id), NULL, NULL);
    return r->json;
}

/* The number of entries in ACL LOG (each one printed when print). */
static size_t acl_log(redisContext *admin, bool print) {
    redisReply *log = tl_redis_cmd(admin, "ACL LOG 1000"); /* default: the last 10 */
    for (size_t i = 0; print && i < log->elements; i++) {
        const redisReply *e = log->element[i];
        const char *line = "";
        for (size_t k = 0; k + 1 < e->elements; k += 2) {
            const redisReply *v = e->element[k + 1];
            line = tl_printf("%s %s=%s", line, e->element[k]->str,
                             v->type == REDIS_REPLY_STRING    ? v->str
                             : v->type == REDIS_REPLY_INTEGER ? tl_printf("%lld", v->integer)
                                                              : "?");
        }
        tl_log("ACL LOG:%s", line);
    }
    return log->elements;
}

/* The entries of ACL LOG with this username and context ("toplevel", "lua", ...). */
static int acl_log_entries(redisContext *admin, const char *user, const char *context) {
    redisReply *log = tl_redis_cmd(admin, "ACL LOG 1000");
    int n = 0;
    for (size_t i = 0; i < log->elements; i++) {
        const redisReply *e = log->element[i];
        bool u = false, c = false;
        for (size_t k = 0; k + 1 < e->elements; k += 2) {
            const char *name = e->element[k]->str, *v = e->element[k + 1]->str;
            if (!v) continue;
            if (strcmp(name, "username") == 0) u = strcmp(v, user) == 0;
            if (strcmp(name, "context") == 0) c = strcmp(v, context) == 0;
        }
        n += u && c;
    }
    return n;
}

/* How many times needle occurs in hay. */
static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *q = hay; q && (q = strstr(q, needle)); q += strlen(needle)) n++;
    return n;
}

static void expect_no_noperm(tl_proc *p) {
    char *log = tl_read_file(p->log_path, NULL);
    ASSERT_NOT_NULL(log);
    const char *at = acl_refusal(log);
    if (at) FAILF("%s was refused by Redis' ACL: %.300s", p->name, at);
}

/* ------------------------------------------------------------ cases ------------------- */

/* Each program's user allows by name every command that the Lua scripts it runs call:
 * the scripts a program runs are those whose builder (fleet_state_<name>) its sources
 * call, the commands those in the script as sent (lib.lua's helpers included). A command
 * added to a script without the rules following fails here, before any Redis refuses it. */
/* The three programs: their source directory and Redis user. */
static const struct {
    const char *dir, *user;
} progs[] = {{"gateway", "fleet-gateway"}, {"worker", "fleet-worker"}, {"cli", "fleet-ctl"}};

/* The .c files of a source directory, concatenated (harness-owned). */
static const char *program_source(const char *subdir) {
    const char *dir = tl_printf("%s/%s", TEST_SOURCE_DIR, subdir);
    DIR *d = opendir(dir);
    ASSERT_NOT_NULL(d);
    const char *src = "";
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0) continue;
        char *text = tl_read_file(tl_printf("%s/%s", dir, e->d_name), NULL);
        ASSERT_NOT_NULL(text);
        src = tl_printf("%s\n%s", src, text);
    }
    closedir(d);
    return src;
}

/* Whether a program's sources build the script's command (call fleet_state_<name>). */
static bool runs_script(const char *src, const char *name) {
    return strstr(src, tl_printf("fleet_state_%s(", name)) != NULL;
}

TL_TEST(rules_allow_every_command_of_the_scripts_each_program_runs) {
    const char *acl = render_acl("fleet");
    /* Commands whose subcommand is what a rule names. */
    static const char *const with_sub[] = {"xinfo",  "xgroup", "script", "client",
                                           "config", "object", "memory", NULL};
    int checked = 0;
    for (size_t p = 0; p < TL_COUNT(progs); p++) {
        const char *line = user_line(acl, progs[p].user);
        const char *src = program_source(progs[p].dir);
        int scripts = 0;
        for (int id = 0; id < FLEET_SCRIPT_COUNT; id++) {
            const fleet_script *s = fleet_script_get((fleet_script_id)id);
            if (!runs_script(src, s->name)) continue;
            scripts++;
            for (const char *q = s->source; (q = strstr(q, "redis.")); q++) {
                const char *call = q + 6;
                if (strncmp(call, "call(", 5) == 0) call += 5;
                else if (strncmp(call, "pcall(", 6) == 0) call += 6;
                else continue;
                if (*call != '\'')
                    FAILF("script %s calls a command that is not a literal", s->name);
                const char *end = strchr(call + 1, '\'');
                ASSERT_NOT_NULL(end);
                char *cmd = tl_printf("%.*s", (int)(end - call - 1), call + 1);
                for (char *c = cmd; *c; c++)
                    if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
                for (int w = 0; with_sub[w]; w++) {
                    if (strcmp(cmd, with_sub[w]) != 0) continue;
                    const char *sub = strstr(end, "'");
                    sub = sub ? strchr(sub + 1, '\'') : NULL; /* the next literal */
                    ASSERT_NOT_NULL(sub);
                    const char *se = strchr(sub + 1, '\'');
                    ASSERT_NOT_NULL(se);
                    cmd = tl_printf("%s|%.*s", cmd, (int)(se - sub - 1), sub + 1);
                    for (char *c = cmd; *c; c++)
                        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
                }
                if (!rule_allows(line, cmd))
                    FAILF("%s runs the %s script, which calls %s, but deploy/redis-users.acl "
                          "does not give %s +%s",
                          progs[p].dir, s->name, cmd, progs[p].user, cmd);
                checked++;
            }
        }
        tl_log("%s: %d scripts", progs[p].dir, scripts);
        ASSERT_GT_INT(scripts, 0);
    }
    ASSERT_GT_INT(checked, 100);
}

/* A key of each kind that keys.c spells (fleet_key_<name>), and whether it is a pub/sub
 * channel. A prefix key stands for a key under it. */
typedef struct key_sample {
    const char *name;
    const char *key;
    bool channel;
} key_sample;

#define K(name, expr) \
    { name, tl_printf("%s", (expr).s), false }
#define KP(name, expr)           \
    {                            \
        name,                    \
            tl_printf("%s"       \
                      "x",       \
                      (expr).s), \
            false                \
    }
#define CH(name, expr)           \
    {                            \
        name,                    \
            tl_printf("%s"       \
                      "x",       \
                      (expr).s), \
            true                 \
    }

static const key_sample *key_samples(const fleet_keys *k, size_t *n) {
    const char *id = "01M95MCDEBH49W67X8F9DKTGNB";
    const key_sample all[] = {
        K("job", fleet_key_job(k, id)),
        KP("job_prefix", fleet_key_job_prefix(k)),
        K("result", fleet_key_result(k, id)),
        K("outputs", fleet_key_outputs(k, id)),
        K("gone", fleet_key_gone(k, id)),
        KP("gone_prefix", fleet_key_gone_prefix(k)),
        K("kept", fleet_key_kept(k, "acme")),
        K("kept_bytes", fleet_key_kept_bytes(k, "acme")),
        KP("kept_prefix", fleet_key_kept_prefix(k)),
        K("stream", fleet_key_stream(k, "echo")),
        K("queues", fleet_key_queues(k)),
        K("stats", fleet_key_stats(k)),
        K("index", fleet_key_index(k, "acme")),
        K("workers", fleet_key_workers(k)),
        K("worker", fleet_key_worker(k, "w1")),
        KP("worker_prefix", fleet_key_worker_prefix(k)),
        {"events", tl_printf("%s", fleet_key_events(k).s), true},
        K("models", fleet_key_models(k)),
        K("entries", fleet_key_entries(k, "echo")),
        K("delayed", fleet_key_delayed(k, "echo")),
        K("dlq", fleet_key_dlq(k)),
        {"control", tl_printf("%s", fleet_key_control(k, "w1").s), true},
        CH("control_prefix", fleet_key_control_prefix(k)),
        K("tenants", fleet_key_tenants(k)),
        K("tenant", fleet_key_tenant(k, "acme")),
        KP("tenant_prefix", fleet_key_tenant_prefix(k)),
        K("tenant_keys", fleet_key_tenant_keys(k, "acme")),
        K("tenant_active", fleet_key_tenant_active(k, "acme")),
        KP("active_prefix", fleet_key_active_prefix(k)),
        K("tenant_bucket", fleet_key_tenant_bucket(k, "acme")),
        K("apikey", fleet_key_apikey(k, "ab12")),
        K("idempotency", fleet_key_idempotency(k, "acme", "ab12")),
        K("waiting", fleet_key_waiting(k, "echo")),
        K("wait", fleet_key_wait(k, "echo", "acme", 1)),
        KP("wait_prefix", fleet_key_wait_prefix(k)),
        K("webhooks", fleet_key_webhooks(k)),
        K("delivery", fleet_key_delivery(k, "msg_1")),
        KP("delivery_prefix", fleet_key_delivery_prefix(k)),
        K("webhook_retry", fleet_key_webhook_retry(k)),
        K("webhook_dlq", fleet_key_webhook_dlq(k)),
        K("metrics", fleet_key_metrics(k, "echo")),
        KP("metrics_prefix", fleet_key_metrics_prefix(k)),
        KP("index_prefix", fleet_key_index_prefix(k)),
        K("shards", fleet_key_shards(k)),
    };
    key_sample *out = tl_alloc(sizeof all);
    memcpy(out, all, sizeof all);
    *n = TL_COUNT(all);
    return out;
}

/* The fleet_key_<name> calls in text, each name once, into names (n of them). */
static void key_names_in(const char *text, const char **names, size_t *n, size_t max) {
    for (const char *q = text; (q = strstr(q, "fleet_key_")); q++) {
        const char *b = q + strlen("fleet_key_"), *e = b;
        while ((*e >= 'a' && *e <= 'z') || *e == '_') e++;
        if (*e != '(' || e == b) continue;
        const char *name = tl_printf("%.*s", (int)(e - b), b);
        /* fleet_key_init builds no key; fleet_key_slot (cluster.h) hashes one. */
        if (strcmp(name, "init") == 0 || strcmp(name, "slot") == 0) continue;
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++) seen = strcmp(names[i], name) == 0;
        if (seen) continue;
        if (*n == max) FAILF("more than %zu key kinds", max);
        names[(*n)++] = name;
    }
}

/* The body of a state builder, fleet_state_<name>(const fleet_keys ...) { ... }. */
static const char *builder_body(const char *state_c, const char *name) {
    const char *def = strstr(state_c, tl_printf("fleet_state_%s(const fleet_keys", name));
    if (!def) FAILF("shared/src/state.c defines no fleet_state_%s(const fleet_keys *, ...)", name);
    const char *end = strstr(def, "\n}\n");
    ASSERT_NOT_NULL(end);
    return tl_printf("%.*s", (int)(end - def), def);
}

static void check_rules_on_shard(long tag);

/* Each program's user reaches every kind of key and channel it names: the keys its own
 * sources spell, those it hands to the scripts it runs (the builders in state.c), and
 * those the scripts find in what they read (a wait list's stem on the waiting list, a
 * job's Idempotency-Key record in its hash). A key kind added to a worker's script
 * without the worker's key patterns following fails here. Checked for shard 0's keys
 * ("{fleet}") and for another shard's ("{fleet:7}": docs/scaling.md). */
TL_TEST(rules_give_each_program_every_key_it_names) {
    for (int shard = 0; shard < 2; shard++) check_rules_on_shard(shard ? 7 : -1);
}

static void check_rules_on_shard(long tag) {
    const char *acl = render_acl("fleet");
    fleet_keys k;
    ASSERT_EQ_INT(fleet_keys_init_tag(&k, "fleet", tag), 0);
    size_t nsamples;
    const key_sample *samples = key_samples(&k, &nsamples);
    char *state_c = tl_read_file(TEST_SOURCE_DIR "/shared/src/state.c", NULL);
    char *tenant_c = tl_read_file(TEST_SOURCE_DIR "/shared/src/tenant.c", NULL);
    ASSERT_NOT_NULL(state_c);
    ASSERT_NOT_NULL(tenant_c);
    /* Keys the scripts reach through what they read: (named, then also reached). */
    static const char *const derived[][2] = {{"waiting", "wait"},
                                             {"job", "idempotency"},
                                             {"job_prefix", "idempotency"}};
    for (size_t p = 0; p < TL_COUNT(progs); p++) {
        const char *line = user_line(acl, progs[p].user);
        const char *src = program_source(progs[p].dir);
        const char *names[64];
        size_t n = 0;
        key_names_in(src, names, &n, TL_COUNT(names));
        if (strstr(src, "fleet_tenant_cmd_")) key_names_in(tenant_c, names, &n, TL_COUNT(names));
        for (int id = 0; id < FLEET_SCRIPT_COUNT; id++) {
            const fleet_script *s = fleet_script_get((fleet_script_id)id);
            if (runs_script(src, s->name))
                key_names_in(builder_body(state_c, s->name), names, &n, TL_COUNT(names));
        }
        for (size_t d = 0; d < TL_COUNT(derived); d++)
            for (size_t i = 0; i < n; i++)
                if (strcmp(names[i], derived[d][0]) == 0) {
                    key_names_in(tl_printf("fleet_key_%s(", derived[d][1]), names, &n,
                                 TL_COUNT(names));
                    break;
                }
        for (size_t i = 0; i < n; i++) {
            const key_sample *ks = NULL;
            for (size_t j = 0; j < nsamples && !ks; j++)
                if (strcmp(samples[j].name, names[i]) == 0) ks = &samples[j];
            if (!ks)
                FAILF("%s names fleet_key_%s, which this test has no sample of: add one to "
                      "key_samples",
                      progs[p].dir, names[i]);
            /* The user's key (~) or channel (&) patterns. */
            bool ok = false;
            char *words = tl_printf("%s", line);
            for (char *save = NULL, *w = strtok_r(words, " ", &save); w && !ok;
                 w = strtok_r(NULL, " ", &save))
                if (*w == (ks->channel ? '&' : '~')) ok = fnmatch(w + 1, ks->key, 0) == 0;
            if (!ok)
                FAILF("%s reaches %s %s (fleet_key_%s), which deploy/redis-users.acl does not "
                      "give %s",
                      progs[p].dir, ks->channel ? "channel" : "key", ks->key, names[i],
                      progs[p].user);
        }
        tl_log("%s: %zu kinds of key on %s", progs[p].dir, n, k.tag);
    }
}

/* The whole lifecycle through the three users: nothing refused anywhere. */
TL_TEST(lifecycle_runs_with_least_privilege_users) {
    acl_fleet *a = acl_fleet_start("fleet");
    tl_fleet *f = a->f;
    tl_fleet_add_worker(f, "echo");
    tl_proc *sleeper = tl_fleet_add_worker(f, "sleep");

    /* Tenants and keys (fleetctl writes them under WATCH/MULTI). */
    json_t *ops = ctl_json(a, TL_ARGS("tenant", "add", "ops", "--admin", "--json"));
    a->admin_key = tl_jstr(ops, "api_key");
    json_t *acme = ctl_json(a, TL_ARGS("tenant", "add", "acme", "--max-active", "100", "--rate",
                                       "1000", "--burst", "100", "--json"));
    a->tenant_key = tl_jstr(acme, "api_key");
    ASSERT_NOT_NULL(a->admin_key);
    ASSERT_NOT_NULL(a->tenant_key);
    ctl_ok(a, TL_ARGS("tenant", "list"));
    ctl_ok(a, TL_ARGS("tenant", "show", "acme", "--show-secret"));
    ctl_ok(a, TL_ARGS("tenant", "set", "acme", "--max-finished", "1000"));
    json_t *rot = ctl_json(a, TL_ARGS("tenant", "rotate-key", "acme", "--keep-old", "--json"));
    ASSERT_NOT_NULL(tl_jstr(rot, "api_key"));
    ctl_ok(a, TL_ARGS("tenant", "rotate-secret", "acme"));

    /* Models. */
    ctl_ok(a, TL_ARGS("model", "add", "spare", "--description", "unused"));
    ctl_ok(a, TL_ARGS("model", "list"));
    ctl_ok(a, TL_ARGS("model", "remove", "spare"));

    /* A job with a webhook whose first delivery fails (the retry set), waited on. */
    a->rx = tl_receiver_start(0);
    tl_receiver_respond(a->rx, 500, NULL, 0);
    tl_receiver_respond(a->rx, 200, NULL, 0);
    const char *hooked = submit(a, tl_printf("{\"model\":\"echo\",\"input\":{\"n\":1},"
                                             "\"webhook\":\"%s\"}",
                                             tl_receiver_url(a->rx, "/hook")));
    tl_resp *w = api(a, a->tenant_key, "GET", tl_printf("/v1/jobs/%s?wait=20", hooked), NULL, NULL);
    ASSERT_HTTP_STATUS(w, 200);
    wait_status(a, hooked, "succeeded");
    ASSERT_HTTP_STATUS(api(a, a->tenant_key, "GET", tl_printf("/v1/jobs/%s/result", hooked), NULL,
                           NULL),
                       200);
    ASSERT_TRUE(tl_receiver_wait_count(a->rx, 2, TL_WAIT_MS));
    ASSERT_EQ_INT(tl_receiver_get(a->rx, 1)->status, 200);

    /* Server-sent events while a job runs to its end. */
    const char *sse = submit(a, "{\"model\":\"sleep\",\"input\":{\"ms\":300}}");
    tl_resp *ev = api(a, a->tenant_key, "GET", tl_printf("/v1/jobs/%s/events", sse), NULL, NULL);
    ASSERT_HTTP_STATUS(ev, 200);
    ASSERT_STR_CONTAINS(ev->body, "succeeded");

    /* An idempotent submit, a batch, a list, a purge of a finished job. */
    const char *idem = "Idempotency-Key: acl-test-1";
    tl_resp *i1 = api(a, a->tenant_key, "POST", "/v1/jobs", "{\"model\":\"echo\",\"input\":{}}",
                      idem);
    tl_resp *i2 = api(a, a->tenant_key, "POST", "/v1/jobs", "{\"model\":\"echo\",\"input\":{}}",
                      idem);
    ASSERT_HTTP_STATUS(i1, 202);
    ASSERT_EQ_STR(tl_jstr(i1->json, "id"), tl_jstr(i2->json, "id"));
    tl_resp *b =
        api(a, a->tenant_key, "POST", "/v1/jobs/batch",
            "{\"jobs\":[{\"model\":\"echo\",\"input\":1},{\"model\":\"echo\",\"input\":2}]}", NULL);
    ASSERT_HTTP_STATUS(b, 200);
    ASSERT_EQ_INT(tl_jint(b->json, "accepted"), 2);
    wait_status(a, tl_jstr(i1->json, "id"), "succeeded");
    ASSERT_HTTP_STATUS(api(a, a->tenant_key, "GET", "/v1/jobs?limit=10", NULL, NULL), 200);
    ASSERT_HTTP_STATUS(api(a, a->admin_key, "GET", "/v1/jobs?tenant=acme", NULL, NULL), 200);
    ASSERT_HTTP_STATUS(api(a, a->tenant_key, "DELETE",
                           tl_printf("/v1/jobs/%s?purge=true", tl_jstr(i1->json, "id")), NULL,
                           NULL),
                       200);

    /* Cancel a running job; a worker stopped mid-job hands it back; a worker lost mid-job
     * has it taken over by another. */
    const char *run = submit(a, "{\"model\":\"sleep\",\"input\":{\"ms\":60000}}");
    wait_status(a, run, "running");
    ASSERT_EQ_INT(tl_proc_stop(sleeper, 10000), 0);
    wait_status(a, run, "queued");
    tl_proc *lost = tl_fleet_add_worker(f, "sleep");
    wait_status(a, run, "running");
    tl_proc_kill9(lost);
    tl_fleet_add_worker(f, "sleep");
    ASSERT_EVENTUALLY(tl_stat(f, "sleep", "reclaimed") >= 1, TL_WAIT_MS);
    wait_status(a, run, "running");
    ASSERT_EQ_INT(api(a, a->tenant_key, "DELETE", tl_printf("/v1/jobs/%s", run), NULL, NULL)
                      ->status,
                  202);
    wait_status(a, run, "cancelled");

    /* A paused model: its jobs stay queued, more than the stream keeps ready, so most wait
     * in the tenant's fair-share lists; one is cancelled while queued, the rest purged. */
    ctl_ok(a, TL_ARGS("model", "pause", "sleep"));
    const char *held = submit(a, "{\"model\":\"sleep\",\"input\":{\"ms\":1}}");
    submit_batch(a, "sleep", "{\"ms\":1}", 30);
    const char *held2 = submit(a, "{\"model\":\"sleep\",\"input\":{\"ms\":1}}");
    ASSERT_GT_INT(tl_redis_int(f->rc, "EXISTS {fleet}:wait:sleep:acme:1"), 0);
    ASSERT_EQ_INT(api(a, a->tenant_key, "DELETE", tl_printf("/v1/jobs/%s", held2), NULL, NULL)
                      ->status,
                  200);
    ctl_ok(a, TL_ARGS("model", "purge", "sleep"));
    wait_status(a, held, "cancelled");
    ASSERT_EQ_INT(tl_stat(f, "sleep", "queued"), 0);
    ctl_ok(a, TL_ARGS("model", "resume", "sleep"));
    /* A backlog fed to a running model's stream. */
    ASSERT_HTTP_STATUS(api(a, a->admin_key, "POST", "/v1/models/echo/pause", NULL, NULL), 200);
    long long echoed = tl_stat(f, "echo", "succeeded");
    submit_batch(a, "echo", "{\"n\":2}", 40);
    ASSERT_HTTP_STATUS(api(a, a->admin_key, "POST", "/v1/models/echo/resume", NULL, NULL), 200);
    ASSERT_EVENTUALLY(tl_stat(f, "echo", "succeeded") == echoed + 40, TL_WAIT_MS);

    /* Retries past max_attempts into the dead-letter stream, then out of it. */
    const char *dead = submit(
        a, "{\"model\":\"sleep\",\"input\":{\"ms\":10,\"fail\":\"GPU busy\",\"retryable\":true}}");
    json_t *failed = wait_status(a, dead, "failed");
    ASSERT_TRUE(json_is_true(tl_jget(failed, "dead_lettered")));
    ctl_ok(a, TL_ARGS("dlq", "list"));
    ctl_ok(a, TL_ARGS("dlq", "show", dead));
    ctl_ok(a, TL_ARGS("inspect", dead));
    ctl_ok(a, TL_ARGS("dlq", "retry", dead));
    wait_status(a, dead, "failed");
    ASSERT_HTTP_STATUS(api(a, a->tenant_key, "POST", tl_printf("/v1/jobs/%s/retry", dead), NULL,
                           NULL),
                       202);
    wait_status(a, dead, "failed");

    /* fleetctl over HTTP, the read-only routes, /metrics. */
    tl_cmd_result s = ctl(a, TL_ARGS("submit", "echo", "{\"n\":7}"));
    tl_expect_exit(&s, 0);
    ctl_ok(a, TL_ARGS("stats"));
    ASSERT_HTTP_STATUS(api(a, a->admin_key, "GET", "/v1/stats", NULL, NULL), 200);
    ASSERT_HTTP_STATUS(api(a, a->admin_key, "GET", "/v1/models", NULL, NULL), 200);
    tl_resp *m = api(a, a->admin_key, "GET", "/metrics", NULL, NULL);
    ASSERT_HTTP_STATUS(m, 200);
    ASSERT_STR_CONTAINS(m->body, "fleet_queue_depth");

    /* A revoked tenant's key stops working. */
    ctl_ok(a, TL_ARGS("tenant", "revoke", "acme"));
    ASSERT_EQ_INT(api(a, a->tenant_key, "GET", "/v1/jobs", NULL, NULL)->status, 401);

    /* Nothing was refused: not a command, key or channel of any program or script. */
    ASSERT_EQ_INT(acl_log(f->rc, true), 0);
    expect_no_noperm(f->gateway);
    for (int i = 0; i < f->nworkers; i++) expect_no_noperm(f->workers[i]);
    /* And each connected as its own user (CLIENT LIST names the user of every connection). */
    redisReply *cl = tl_redis_cmd(f->rc, "CLIENT LIST");
    ASSERT_STR_CONTAINS(cl->str, "user=fleet-gateway");
    ASSERT_STR_CONTAINS(cl->str, "user=fleet-worker");
    ASSERT_TRUE(strstr(cl->str, "user=default") == NULL);
}

/* One user's connection (AUTH user password). */
static redisContext *connect_as(tl_redis *r, const char *user, const char *password) {
    redisContext *c = redisConnect("127.0.0.1", r->port);
    ASSERT_TRUE(c && !c->err);
    redisReply *rep = redisCommand(c, "AUTH %s %s", user, password);
    ASSERT_NOT_NULL(rep);
    if (rep->type != REDIS_REPLY_STATUS) FAILF("AUTH %s: %s", user, rep->str);
    freeReplyObject(rep);
    tl_defer((void (*)(void *))redisFree, c);
    return c;
}

/* The error reply of a command (fails the case when it is not an error). */
static const char *refused(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    ASSERT_NOT_NULL(rep);
    if (rep->type != REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        FAILF("'%s' was not refused", fmt);
    }
    const char *err = tl_printf("%s", rep->str);
    freeReplyObject(rep);
    return err;
}

/* What no fleet program needs is refused to each of them: the server's administration,
 * keys and channels outside the fleet's prefix (rendered for another prefix than the
 * default), and a script cannot do for a user what the user may not. */
TL_TEST(each_user_is_refused_what_it_does_not_need) {
    const char *prefix = "acl1";
    const char *acl = render_acl(prefix);
    tl_redis *r = tl_redis_start(&(tl_redis_opts){
        .extra_args = TL_ARGS("--aclfile", acl), .user = "fleet-admin", .password = ADMIN_PW});
    redisContext *admin = tl_redis_connect(r);
    tl_redis_cmd(admin, "SET outside 1");
    static const struct {
        const char *user, *pw;
    } users[] = {{"fleet-gateway", GATEWAY_PW}, {"fleet-worker", WORKER_PW}, {"fleet-ctl", CTL_PW}};
    for (size_t i = 0; i < TL_COUNT(users); i++) {
        redisContext *c = connect_as(r, users[i].user, users[i].pw);
        tl_log("%s", users[i].user);
        /* What it may: a key and a channel of its fleet. */
        redisReply *ok = redisCommand(c, "HSET {%s}:job:acltest f 1", prefix);
        ASSERT_TRUE(ok && ok->type == REDIS_REPLY_INTEGER);
        freeReplyObject(ok);
        ok = redisCommand(c, "PUBLISH {%s}:events hello", prefix);
        ASSERT_TRUE(ok && ok->type == REDIS_REPLY_INTEGER);
        freeReplyObject(ok);
        /* What it may not. */
        ASSERT_STR_CONTAINS(refused(c, "FLUSHALL"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "FLUSHDB"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "CONFIG SET maxmemory-policy allkeys-lru"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "CONFIG GET requirepass"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "KEYS *"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "SCAN 0"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "BGSAVE"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "SWAPDB 0 1"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "SHUTDOWN NOSAVE"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "MONITOR"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "ACL LIST"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "SCRIPT FLUSH"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "CLIENT KILL TYPE normal"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "REPLICAOF 127.0.0.1 1"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "GET outside"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "HSET {fleet}:job:x status queued"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "PUBLISH other hello"), "NOPERM");
        /* A script runs as its caller: it cannot reach what the user cannot. */
        const char *e1 = refused(c, "EVAL %s 0", "return redis.call('FLUSHALL')");
        if (!acl_refusal(e1)) FAILF("a script's FLUSHALL: %s", e1);
        const char *e2 = refused(c, "EVAL %s 0", "return redis.call('HGET', 'outside', 'f')");
        if (!acl_refusal(e2)) FAILF("a script's HGET of a key outside the prefix: %s", e2);
    }
    /* The replica's and Sentinel's users reach no key, and no channel of the fleet. */
    static const struct {
        const char *user, *pw;
    } links[] = {{"fleet-replica", REPLICA_PW}, {"fleet-sentinel", SENTINEL_PW}};
    for (size_t i = 0; i < TL_COUNT(links); i++) {
        redisContext *c = connect_as(r, links[i].user, links[i].pw);
        ASSERT_STR_CONTAINS(refused(c, "HGET {%s}:job:acltest f", prefix), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "EVAL %s 0", "return 1"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "FLUSHALL"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "KEYS *"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "CONFIG SET appendonly no"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "ACL LIST"), "NOPERM");
        ASSERT_STR_CONTAINS(refused(c, "PUBLISH {%s}:events hello", prefix), "NOPERM");
    }
    /* fleetctl and the workers do not load scripts or wait for replicas (only the gateway). */
    redisContext *w = connect_as(r, "fleet-worker", WORKER_PW);
    ASSERT_STR_CONTAINS(refused(w, "SCRIPT LOAD %s", "return 1"), "NOPERM");
    ASSERT_STR_CONTAINS(refused(w, "WAIT 0 0"), "NOPERM");
    /* Nor reach a tenant's record (its webhook secret), API keys, rate bucket or index:
     * model code runs with the worker's rights. */
    tl_redis_cmd(admin, "HSET {%s}:tenant:acme webhook_secret whsec_x", prefix);
    ASSERT_STR_CONTAINS(refused(w, "HGET {%s}:tenant:acme webhook_secret", prefix), "NOPERM");
    ASSERT_STR_CONTAINS(refused(w, "HGET {%s}:apikey:ab12 tenant", prefix), "NOPERM");
    ASSERT_STR_CONTAINS(refused(w, "HGET {%s}:tenant:acme:bucket tokens", prefix), "NOPERM");
    ASSERT_STR_CONTAINS(refused(w, "XLEN {%s}:tenant:acme:submits", prefix), "NOPERM");
    const char *e3 = refused(w, "EVAL %s 1 {%s}:tenant:acme",
                             "return redis.call('HGET', KEYS[1], 'webhook_secret')", prefix);
    if (!acl_refusal(e3)) FAILF("a script's HGET of a tenant record: %s", e3);
    /* Without AUTH a connection is the default user, which is off. */
    redisContext *anon = redisConnect("127.0.0.1", r->port);
    ASSERT_TRUE(anon && !anon->err);
    tl_defer((void (*)(void *))redisFree, anon);
    ASSERT_STR_CONTAINS(refused(anon, "GET {%s}:job:acltest", prefix), "NOAUTH");
    /* The refusals are what ACL LOG records: the lifecycle case's empty log means
     * something. The outside key is untouched. */
    ASSERT_GT_INT(acl_log(admin, false), 10);
    for (size_t i = 0; i < TL_COUNT(users); i++) {
        ASSERT_GT_INT(acl_log_entries(admin, users[i].user, "toplevel"), 0);
        ASSERT_GT_INT(acl_log_entries(admin, users[i].user, "lua"), 0);
    }
    ASSERT_EQ_INT(tl_redis_int(admin, "EXISTS outside"), 1);
}
/* A wrong password: each program says so (Redis' WRONGPASS, never the password) and keeps
 * trying, and goes to work once Redis takes the password. fleetctl exits non-zero. */
#define WRONG_PW "wrong-Pw-9"

static bool log_has(tl_proc *p, const char *s) {
    char *log = tl_read_file(p->log_path, NULL);
    return log && strstr(log, s);
}

TL_TEST(a_wrong_password_is_said_and_waited_out) {
    const char *acl = render_acl("fleet");
    tl_redis *r = tl_redis_start(&(tl_redis_opts){
        .extra_args = TL_ARGS("--aclfile", acl), .user = "fleet-admin", .password = ADMIN_PW});
    redisContext *admin = tl_redis_connect(r);

    int port = tl_free_port();
    const char *gw_env[] = {
        tl_printf("FLEET_REDIS_URL=%s", tl_redis_url_as(r, "fleet-gateway", WRONG_PW)),
        tl_printf("FLEET_LISTEN=127.0.0.1:%d", port), "FLEET_MODELS=echo", NULL};
    tl_proc *gw = tl_spawn(&(tl_spawn_opts){.name = "gateway",
                                            .path = tl_bin_path("fleet-gateway"),
                                            .argv = TL_ARGS(tl_bin_path("fleet-gateway")),
                                            .env = gw_env,
                                            .checked = true});
    const char *wk_env[] = {
        tl_printf("FLEET_REDIS_URL=%s", tl_redis_url_as(r, "fleet-worker", WRONG_PW)), NULL};
    tl_proc *wk =
        tl_spawn(&(tl_spawn_opts){.name = "worker",
                                  .path = tl_bin_path("fleet-worker"),
                                  .argv = TL_ARGS(tl_bin_path("fleet-worker"), "--model", "echo"),
                                  .env = wk_env,
                                  .checked = true});

    /* The gateway: not ready, saying why; requests 503 with Retry-After. */
    const char *base = tl_printf("http://127.0.0.1:%d", port);
    tl_resp *ready = NULL;
    char err[256];
    ASSERT_EVENTUALLY((ready = tl_http_try(&(tl_req){.url = tl_printf("%s/readyz", base)}, err,
                                           sizeof err)) &&
                          ready->status == 503 && strstr(ready->body, "WRONGPASS"),
                      TL_WAIT_MS);
    tl_resp *sub = tl_http(&(tl_req){.url = tl_printf("%s/v1/jobs", base),
                                     .body = "{\"model\":\"echo\",\"input\":1}",
                                     .headers = {"Authorization: Bearer fk_anything"}});
    ASSERT_PROBLEM(sub, 503);
    ASSERT_NOT_NULL(tl_resp_header(sub, "Retry-After"));
    ASSERT_EVENTUALLY(log_has(gw, "WRONGPASS"), TL_WAIT_MS);
    /* The worker: says so (and tries again: it registers once Redis takes the password,
     * below). */
    ASSERT_EVENTUALLY(log_has(wk, "WRONGPASS"), TL_WAIT_MS);
    ASSERT_TRUE(tl_proc_alive(wk));
    ASSERT_TRUE(tl_proc_alive(gw));
    /* fleetctl: exits non-zero at once, naming the refusal. */
    tl_cmd_result c = tl_fleetctl(TL_ARGS("--redis-url", tl_redis_url_as(r, "fleet-ctl", WRONG_PW),
                                          "--redis-wait", "1"),
                                  TL_ARGS("model", "list"));
    ASSERT_NE_INT(c.exit_code, 0);
    ASSERT_STR_CONTAINS(c.err, "WRONGPASS");
    ASSERT_TRUE(strstr(c.err, WRONG_PW) == NULL && strstr(c.out, WRONG_PW) == NULL);
    /* Redis logged each refused login. */
    ASSERT_GT_INT(acl_log_entries(admin, "fleet-gateway", "toplevel"), 0);
    ASSERT_GT_INT(acl_log_entries(admin, "fleet-worker", "toplevel"), 0);
    ASSERT_GT_INT(acl_log_entries(admin, "fleet-ctl", "toplevel"), 0);

    /* Once Redis takes the password, the gateway gets ready and the worker runs jobs. */
    tl_redis_cmd(admin, "ACL SETUSER fleet-gateway >%s", WRONG_PW);
    tl_redis_cmd(admin, "ACL SETUSER fleet-worker >%s", WRONG_PW);
    ASSERT_EVENTUALLY((ready = tl_http_try(&(tl_req){.url = tl_printf("%s/readyz", base)}, err,
                                           sizeof err)) &&
                          ready->status == 200,
                      TL_WAIT_MS);
    tl_resp *ok = tl_http(&(tl_req){.url = tl_printf("%s/v1/jobs", base),
                                    .body = "{\"model\":\"echo\",\"input\":1}",
                                    .headers = {"Authorization: Bearer fk_anything"}});
    ASSERT_HTTP_STATUS(ok, 401); /* API keys are on and this one is nobody's: Redis answered */
    ASSERT_EVENTUALLY(tl_redis_int(admin, "ZCARD {fleet}:workers") == 1, TL_WAIT_MS);
    /* No log holds the password. */
    ASSERT_FALSE(log_has(gw, WRONG_PW));
    ASSERT_FALSE(log_has(wk, WRONG_PW));
}

/* The fleet behind Sentinel with FLEET_REDIS_WAIT_REPLICAS, every link with its own user:
 * the programs (which also send ROLE, and the gateway WAIT), the replicas to their primary
 * (fleet-replica) and the sentinel to the servers (fleet-sentinel). A failover promotes a
 * replica and points the other at it, and nothing is refused on the servers that remain. */
TL_TEST(sentinel_failover_runs_with_least_privilege_users) {
    const char *acl = render_acl("fleet");
    tl_redis *primary = tl_redis_start(&(tl_redis_opts){
        .extra_args = TL_ARGS("--aclfile", acl), .user = "fleet-admin", .password = ADMIN_PW});
    tl_redis *replicas[2];
    for (int i = 0; i < 2; i++) {
        replicas[i] = tl_redis_start_replica(primary); /* first as fleet-admin (the harness's) */
        redisContext *rc = tl_redis_connect(replicas[i]);
        tl_redis_cmd(rc, "CONFIG SET masteruser fleet-replica");
        tl_redis_cmd(rc, "CONFIG SET masterauth %s", REPLICA_PW);
        tl_redis_cmd(rc, "CLIENT KILL TYPE master"); /* it links again, as fleet-replica */
    }
    redisContext *pc = tl_redis_connect(primary);
    ASSERT_EVENTUALLY(count_of(tl_redis_cmd(pc, "CLIENT LIST")->str, "user=fleet-replica") == 2,
                      TL_WAIT_MS);
    /* The sentinel logs in to the servers as fleet-sentinel: tl_sentinels_start writes the
     * primary's credentials into sentinel.conf (auth-user, auth-pass). */
    char admin_user[sizeof primary->user], admin_pw[sizeof primary->password];
    memcpy(admin_user, primary->user, sizeof admin_user);
    memcpy(admin_pw, primary->password, sizeof admin_pw);
    snprintf(primary->user, sizeof primary->user, "fleet-sentinel");
    snprintf(primary->password, sizeof primary->password, SENTINEL_PW);
    tl_sentinels *s = tl_sentinels_start(primary, "fleetmaster", 1);
    memcpy(primary->user, admin_user, sizeof admin_user);
    memcpy(primary->password, admin_pw, sizeof admin_pw);

    tl_fleet *f = tl_alloc(sizeof *f);
    snprintf(f->prefix, sizeof f->prefix, "fleet");
    f->redis = primary;
    f->rc = pc;
    const char *sentinels = tl_printf("FLEET_REDIS_SENTINELS=%s", tl_sentinels_addrs(s));
    /* With sentinels the URL's host and port are not used. */
    f->opts.gateway_env[0] = tl_printf("FLEET_REDIS_URL=redis://fleet-gateway:%s@127.0.0.1:1/0",
                                       GATEWAY_PW);
    f->opts.gateway_env[1] = sentinels;
    f->opts.gateway_env[2] = "FLEET_REDIS_SENTINEL_MASTER=fleetmaster";
    f->opts.gateway_env[3] = "FLEET_REDIS_WAIT_REPLICAS=1";
    f->opts.worker_env[0] = tl_printf("FLEET_REDIS_URL=redis://fleet-worker:%s@127.0.0.1:1/0",
                                      WORKER_PW_URL);
    f->opts.worker_env[1] = sentinels;
    f->opts.worker_env[2] = "FLEET_REDIS_SENTINEL_MASTER=fleetmaster";
    tl_fleet_start_gateway(f);
    tl_fleet_add_worker(f, "echo");
    const char *before = tl_job_submit(f, "echo", "{\"n\":1}");
    tl_job_wait_status(f, before, "succeeded", TL_WAIT_MS);
    const char *ctl_env[] = {tl_printf("FLEET_REDIS_URL=redis://fleet-ctl:%s@127.0.0.1:1/0",
                                       CTL_PW),
                             sentinels, "FLEET_REDIS_SENTINEL_MASTER=fleetmaster", NULL};
    const char *ctl = tl_bin_path("fleetctl");
    tl_cmd_result m = tl_run_cmd("fleetctl-models", ctl, TL_ARGS(ctl, "model", "list"), ctl_env,
                                 30000);
    tl_expect_exit(&m, 0);
    ASSERT_STR_CONTAINS(m.out, "echo");
    ASSERT_EQ_INT(acl_log(pc, true), 0);

    /* The failover: the sentinel promotes one replica and points the other at it. */
    tl_redis_kill9(primary);
    int port = tl_sentinels_wait_failover(s, primary->port, TL_WAIT_MS);
    tl_redis *now = replicas[0]->port == port ? replicas[0] : replicas[1];
    tl_redis *other = now == replicas[0] ? replicas[1] : replicas[0];
    redisContext *nc = tl_redis_connect(now);
    ASSERT_EVENTUALLY(count_of(tl_redis_cmd(nc, "CLIENT LIST")->str, "user=fleet-replica") == 1,
                      TL_WAIT_MS);
    /* Submits are accepted again (the other replica holds each one) and run. */
    tl_resp *r = NULL;
    ASSERT_EVENTUALLY((r = tl_post(f, "/v1/jobs", "{\"model\":\"echo\",\"input\":{\"n\":2}}")) &&
                          r->status == 202,
                      TL_WAIT_MS);
    tl_job_wait_status(f, tl_jstr(r->json, "id"), "succeeded", TL_WAIT_MS);
    m = tl_run_cmd("fleetctl-models-after", ctl, TL_ARGS(ctl, "model", "list"), ctl_env, 30000);
    tl_expect_exit(&m, 0);

    /* Nothing was refused on the servers that remain, to any link. */
    ASSERT_EQ_INT(acl_log(nc, true), 0);
    ASSERT_EQ_INT(acl_log(tl_redis_connect(other), true), 0);
    ASSERT_STR_CONTAINS(tl_redis_cmd(nc, "CLIENT LIST")->str, "user=fleet-sentinel");
    expect_no_noperm(f->gateway);
    expect_no_noperm(f->workers[0]);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(rules_allow_every_command_of_the_scripts_each_program_runs),
        TL_CASE(rules_give_each_program_every_key_it_names),
        TL_CASE(lifecycle_runs_with_least_privilege_users),
        TL_CASE(each_user_is_refused_what_it_does_not_need),
        TL_CASE(a_wrong_password_is_said_and_waited_out),
        TL_CASE(sentinel_failover_runs_with_least_privilege_users),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
