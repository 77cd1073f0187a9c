/* state_test: every command builder of shared/src/state.c against its script's header, and
 * every reply parser against the replies the header promises; no Redis.
 *
 * A script's header says what it takes ("-- KEYS: 1 name, 2 name, ..." and "-- ARGV: 1
 * name, ..., then for each job five: a, b, c, d, e"); the builder is the only caller, so
 * a builder that passes one key or argument more or less than the script reads would
 * shift every argument after it. The header is read from the script as embedded (the
 * text Redis runs), so this test and docs/protocol.md read the same lines. */
#include <stdarg.h>
#include <string.h>

#include "fleet/state.h"
#include "testlib.h"

/* ------------------------------------------------------------ headers -------------- */

typedef struct header {
    int keys;     /* KEYS count */
    int argv;     /* fixed ARGV count */
    int per_item; /* batch scripts: ARGV per job or entry after the fixed ones; else 0 */
} header;

/* The text of one header field ("KEYS" or "ARGV") of a script: its line and the indented
 * comment lines that continue it, joined by single spaces, without the "--" marks. */
static char *header_field(const char *src, const char *field) {
    const char *p = strstr(src, tl_printf("\n-- %s:", field));
    if (!p) return NULL;
    p += strlen(field) + 5;
    char *out = tl_alloc(strlen(p) + 1);
    size_t n = 0;
    for (;;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        /* Runs of spaces become one, so an item broken across lines reads as one. */
        for (size_t i = 0; i < len; i++)
            if (p[i] != ' ' || (n > 0 && out[n - 1] != ' ')) out[n++] = p[i];
        if (n > 0 && out[n - 1] != ' ') out[n++] = ' ';
        /* A continuation line is a comment indented past "-- ". */
        if (!eol || strncmp(eol + 1, "--   ", 5) != 0) break;
        p = eol + 3;
    }
    out[n] = '\0';
    return out;
}

/* The number of items "1 a, 2 b, ..., N z" at the start of text: each number must be
 * the next one, after ": " or ", ". Sets *rest past the last one found. */
static int count_items(const char *text, const char **rest) {
    const char *p = text;
    while (*p == ' ') p++;
    int n = 0;
    if (strncmp(p, "1 ", 2) == 0) {
        n = 1;
        for (;;) {
            const char *next = strstr(p, tl_printf(", %d ", n + 1));
            if (!next) break;
            p = next + 2;
            n++;
        }
    }
    *rest = p;
    return n;
}

static const char *const count_words[] = {"zero", "one", "two",   "three", "four",
                                          "five", "six", "seven", "eight", "nine"};

/* "then for each <thing> <count>: a, b, ..." after the fixed ARGV: the count, checked
 * against the names listed after it (commas outside parentheses). */
static int per_item_count(const char *rest, const char *script) {
    const char *t = strstr(rest, "then for each ");
    if (!t) return 0;
    t += strlen("then for each ");
    while (*t && *t != ' ') t++; /* the thing: job, entry */
    while (*t == ' ') t++;
    int count = -1;
    for (int i = 1; i < (int)TL_COUNT(count_words); i++) {
        size_t w = strlen(count_words[i]);
        if (strncmp(t, count_words[i], w) == 0 && t[w] == ':') {
            count = i;
            t += w + 1;
        }
    }
    if (count < 0) FAILF("%s: ARGV's \"then for each\" names no count word", script);
    int names = 1, depth = 0;
    for (; *t; t++) {
        if (*t == '(') depth++;
        if (*t == ')') depth--;
        if (*t == ',' && depth == 0) names++;
    }
    if (names != count) FAILF("%s: ARGV says %d per item but lists %d names", script, count, names);
    return count;
}

static header script_header(fleet_script_id id) {
    const fleet_script *s = fleet_script_get(id);
    ASSERT_NOT_NULL(s);
    /* The script's own first comment ("-- name: ..." or "-- name (read only): ..."): past
     * lib.lua, which embed.cmake put in front. */
    const char *own = strstr(s->source, tl_printf("\n-- %s:", s->name));
    if (!own) own = strstr(s->source, tl_printf("\n-- %s (", s->name));
    if (!own) FAILF("%s.lua: no header line \"-- %s: ...\"", s->name, s->name);
    char *keys = header_field(own, "KEYS"), *argv = header_field(own, "ARGV");
    if (!keys || !argv) FAILF("%s.lua: its header lacks a KEYS or an ARGV line", s->name);
    header h;
    const char *rest;
    h.keys = count_items(keys, &rest);
    h.argv = count_items(argv, &rest);
    h.per_item = per_item_count(rest, s->name);
    if (h.keys < 1 || h.argv < 1) FAILF("%s.lua: KEYS or ARGV not numbered from 1", s->name);
    return h;
}

/* ------------------------------------------------------------ builders ------------- */

#define ID "01JDQ7ZK5W3V8X9Y0A1B2C3D4E"

static fleet_keys keys;

/* Builds the script's command for n jobs or entries (n is 1 for the single ones) and
 * returns how many the command took. */
typedef size_t (*build_fn)(size_t n, fleet_cmd *c);

static size_t build_submit(size_t n, fleet_cmd *c) {
    fleet_submit s = {.id = ID,
                      .model = "echo",
                      .tenant = "acme",
                      .request_id = "r1",
                      .priority = "high",
                      .metadata_json = "{}",
                      .input = "\x81\xa1x\x01",
                      .input_len = 4,
                      .queue_ttl_s = 3600,
                      .result_ttl_s = 600,
                      .timeout_s = 30,
                      .max_attempts = 3,
                      .index_cap = 1000,
                      .index_ttl_s = 7200,
                      .webhook = "http://127.0.0.1:9/h",
                      .webhook_events = "completed",
                      .max_active = 4,
                      .rate = 2.5,
                      .burst = 5,
                      .max_queue = 100,
                      .idem_hash = "ab12",
                      .idem_digest = "cd34",
                      .ready_target = 8};
    fleet_state_submit(&keys, &s, c);
    return n;
}

static size_t build_claim(size_t n, fleet_cmd *c) {
    static fleet_claim cl[3];
    for (size_t i = 0; i < 3; i++)
        cl[i] = (fleet_claim){.id = ID,
                              .model = "echo",
                              .entry_id = "1-1",
                              .worker = "w1",
                              .token = "t",
                              .lease_ms = 30000,
                              .dlq_cap = 1000};
    return fleet_state_claim(&keys, cl, n, c);
}

static size_t build_renew(size_t n, fleet_cmd *c) {
    fleet_renew rn = {.id = ID, .model = "echo", .token = "t", .worker = "w1", .lease_ms = 30000};
    fleet_state_renew(&keys, &rn, c);
    return n;
}

static size_t build_progress(size_t n, fleet_cmd *c) {
    fleet_progress p = {
        .id = ID, .token = "t", .percent = 50, .message = "half", .done = 1, .total = 2};
    fleet_state_progress(&keys, &p, c);
    return n;
}

static size_t build_finish(size_t n, fleet_cmd *c) {
    static fleet_finish f[3];
    for (size_t i = 0; i < 3; i++)
        f[i] = (fleet_finish){.id = ID,
                              .model = "echo",
                              .token = "t",
                              .status = FLEET_STATUS_FAILED,
                              .result = "\xc0",
                              .result_len = 1,
                              .error = "boom"};
    return fleet_state_finish(&keys, f, n, c);
}

static size_t build_requeue(size_t n, fleet_cmd *c) {
    fleet_requeue rq = {.id = ID,
                        .model = "echo",
                        .token = "t",
                        .kind = FLEET_REQUEUE_RETRY,
                        .delay_ms = 1000,
                        .error = "busy",
                        .dlq_cap = 1000};
    fleet_state_requeue(&keys, &rq, c);
    return n;
}

static size_t build_promote(size_t n, fleet_cmd *c) {
    fleet_state_promote(&keys, "echo", 100, c);
    return n;
}

static size_t build_recover(size_t n, fleet_cmd *c) {
    fleet_state_recover(&keys, "echo", "1-1", c);
    return n;
}

static size_t build_cancel(size_t n, fleet_cmd *c) {
    fleet_state_cancel(&keys, ID, "acme", c);
    return n;
}

static size_t build_retry(size_t n, fleet_cmd *c) {
    fleet_retry rt = {.id = ID,
                      .tenant = "acme",
                      .ready_target = 8,
                      .max_active = 5,
                      .max_queue = 0,
                      .dead_only = false,
                      .index_ttl_s = 691200};
    fleet_state_retry(&keys, &rt, c);
    return n;
}

static size_t build_delete(size_t n, fleet_cmd *c) {
    fleet_state_delete(&keys, ID, "acme", c);
    return n;
}

static size_t build_purge(size_t n, fleet_cmd *c) {
    fleet_state_purge(&keys, "echo", "", 1000, c);
    return n;
}

static size_t build_pause(size_t n, fleet_cmd *c) {
    fleet_state_pause(&keys, "echo", true, c);
    return n;
}

static size_t build_get(size_t n, fleet_cmd *c) {
    fleet_state_get(&keys, ID, "acme", c);
    return n;
}

static size_t build_list(size_t n, fleet_cmd *c) {
    fleet_list_query q = {.tenant = "acme",
                          .cursor = "",
                          .status = "queued",
                          .model = "",
                          .limit = 20,
                          .scan_max = 1000};
    fleet_state_list(&keys, &q, c);
    return n;
}

static size_t build_models(size_t n, fleet_cmd *c) {
    fleet_state_models(&keys, true, c);
    return n;
}

static size_t build_webhook_settle(size_t n, fleet_cmd *c) {
    fleet_webhook_settle ws = {.msg = "msg_1",
                               .job_id = ID,
                               .entry_id = "1-1",
                               .outcome = FLEET_WEBHOOK_RETRY,
                               .due_ms = 1700000000000,
                               .http_status = 503,
                               .error = "503",
                               .body = "{}",
                               .body_len = 2,
                               .dlq_cap = 1000,
                               .consumer = "gw1"};
    fleet_state_webhook_settle(&keys, &ws, c);
    return n;
}

static size_t build_webhook_promote(size_t n, fleet_cmd *c) {
    fleet_state_webhook_promote(&keys, 100, c);
    return n;
}

static size_t build_feed(size_t n, fleet_cmd *c) {
    fleet_state_feed(&keys, "echo", 8, c);
    return n;
}

static size_t build_auth(size_t n, fleet_cmd *c) {
    fleet_state_auth(&keys, "ab12", c);
    return n;
}

static size_t build_metrics(size_t n, fleet_cmd *c) {
    fleet_state_metrics(&keys, 64, 256, c);
    return n;
}

static size_t build_emit(size_t n, fleet_cmd *c) {
    fleet_emit e = {.id = ID,
                    .token = "t1",
                    .output = "\x81\xa1p\x01",
                    .output_len = 4,
                    .max_outputs = 1000,
                    .max_bytes = 1048576,
                    .webhook_throttle_ms = 1000};
    fleet_state_emit(&keys, &e, c);
    return n;
}

static size_t build_outputs(size_t n, fleet_cmd *c) {
    fleet_state_outputs(&keys, ID, "acme", 0, 100, c);
    return n;
}

/* One builder per script of scripts.def: a script added there without one here fails. */
static const build_fn builders[FLEET_SCRIPT_COUNT] = {
    [FLEET_SCRIPT_SUBMIT] = build_submit,
    [FLEET_SCRIPT_CLAIM] = build_claim,
    [FLEET_SCRIPT_RENEW] = build_renew,
    [FLEET_SCRIPT_PROGRESS] = build_progress,
    [FLEET_SCRIPT_FINISH] = build_finish,
    [FLEET_SCRIPT_REQUEUE] = build_requeue,
    [FLEET_SCRIPT_PROMOTE] = build_promote,
    [FLEET_SCRIPT_RECOVER] = build_recover,
    [FLEET_SCRIPT_CANCEL] = build_cancel,
    [FLEET_SCRIPT_RETRY] = build_retry,
    [FLEET_SCRIPT_DELETE] = build_delete,
    [FLEET_SCRIPT_PURGE] = build_purge,
    [FLEET_SCRIPT_PAUSE] = build_pause,
    [FLEET_SCRIPT_GET] = build_get,
    [FLEET_SCRIPT_LIST] = build_list,
    [FLEET_SCRIPT_MODELS] = build_models,
    [FLEET_SCRIPT_WEBHOOK_SETTLE] = build_webhook_settle,
    [FLEET_SCRIPT_WEBHOOK_PROMOTE] = build_webhook_promote,
    [FLEET_SCRIPT_FEED] = build_feed,
    [FLEET_SCRIPT_AUTH] = build_auth,
    [FLEET_SCRIPT_METRICS] = build_metrics,
    [FLEET_SCRIPT_EMIT] = build_emit,
    [FLEET_SCRIPT_OUTPUTS] = build_outputs,
};

/* Checks one built command against the header: EVALSHA of this script, numkeys, that
 * many keys (all under the hash tag), and the arguments the header counts. */
static void check_cmd(fleet_script_id id, const header *h, const fleet_cmd *c, size_t items) {
    const fleet_script *s = fleet_script_get(id);
    ASSERT_EQ_INT(c->script, id);
    ASSERT_EQ_STR(c->argv[0], "EVALSHA");
    ASSERT_EQ_STR(c->argv[1], s->sha);
    if (strcmp(c->argv[2], tl_printf("%d", h->keys)) != 0)
        FAILF("%s: the builder passes numkeys %s, the header lists %d KEYS", s->name, c->argv[2],
              h->keys);
    for (int i = 0; i < h->keys; i++)
        if (3 + i >= c->argc || strncmp(c->argv[3 + i], "{fleet}:", 8) != 0)
            FAILF("%s: KEYS[%d] is not a key: \"%s\"", s->name, i + 1,
                  3 + i < c->argc ? c->argv[3 + i] : "(none)");
    int want = 3 + h->keys + h->argv + (int)items * h->per_item;
    if (c->argc != want)
        FAILF("%s: the builder passes %d ARGV (%zu items), the header says %d fixed + %d per "
              "item",
              s->name, c->argc - 3 - h->keys, items, h->argv, h->per_item);
}

TL_TEST(every_builder_matches_its_script_header) {
    fleet_keys_init(&keys, "fleet");
    for (int id = 0; id < FLEET_SCRIPT_COUNT; id++) {
        const char *name = fleet_script_get((fleet_script_id)id)->name;
        if (!builders[id]) FAILF("%s: no builder in state_test", name);
        header h = script_header((fleet_script_id)id);
        tl_log("%s: %d KEYS, %d ARGV + %d per item", name, h.keys, h.argv, h.per_item);
        fleet_cmd c;
        check_cmd((fleet_script_id)id, &h, &c, builders[id](1, &c));
        /* A batch script's builder takes several items; a single one ignores n. */
        size_t took = builders[id](3, &c);
        if (h.per_item) ASSERT_EQ_INT(took, 3);
        check_cmd((fleet_script_id)id, &h, &c, h.per_item ? took : 1);
    }
}

/* The headers of claim and finish are batch headers, and the others are not: a builder
 * that loops must have a script that loops. */
TL_TEST(only_claim_and_finish_take_batches) {
    for (int id = 0; id < FLEET_SCRIPT_COUNT; id++) {
        header h = script_header((fleet_script_id)id);
        bool batch = id == FLEET_SCRIPT_CLAIM || id == FLEET_SCRIPT_FINISH;
        ASSERT_EQ_INT(h.per_item != 0, batch);
    }
    ASSERT_EQ_INT(script_header(FLEET_SCRIPT_CLAIM).per_item, 3);
    ASSERT_EQ_INT(script_header(FLEET_SCRIPT_FINISH).per_item, 5);
}

/* The EVAL fallback (after NOSCRIPT) sends the same script's source. */
TL_TEST(eval_fallback_sends_the_source) {
    fleet_keys_init(&keys, "fleet");
    fleet_cmd c;
    fleet_state_cancel(&keys, ID, "acme", &c);
    ASSERT_EQ_STR(c.argv[3], "{fleet}:job:" ID);
    ASSERT_EQ_STR(c.argv[5], "{fleet}:webhooks");
    ASSERT_EQ_STR(c.argv[6], "acme");
    fleet_cmd_as_eval(&c);
    ASSERT_EQ_STR(c.argv[0], "EVAL");
    ASSERT_STR_CONTAINS(c.argv[1], "\n-- cancel:");
    ASSERT_EQ_INT(c.argvlen[1], strlen(fleet_script_get(FLEET_SCRIPT_CANCEL)->source));
}

/* A batch claim or finish puts as many jobs into one command as the table holds, each
 * job's arguments after the shared ones, and says how many it took. */
TL_TEST(batch_commands_take_as_many_jobs_as_fit) {
    fleet_keys_init(&keys, "fleet");
    static fleet_claim cl[100];
    static fleet_finish f[100];
    for (int i = 0; i < 100; i++) {
        cl[i] = (fleet_claim){.id = ID,
                              .model = "echo",
                              .entry_id = "1-1",
                              .worker = "w",
                              .token = "t",
                              .lease_ms = 1000,
                              .dlq_cap = 10};
        f[i] = (fleet_finish){
            .id = ID, .model = "echo", .token = "t", .status = FLEET_STATUS_SUCCEEDED};
    }
    header hc = script_header(FLEET_SCRIPT_CLAIM), hf = script_header(FLEET_SCRIPT_FINISH);
    fleet_cmd c;
    size_t took = fleet_state_claim(&keys, cl, 100, &c);
    ASSERT_EQ_INT(took, (FLEET_CMD_ARGS - 3 - hc.keys - hc.argv) / hc.per_item);
    check_cmd(FLEET_SCRIPT_CLAIM, &hc, &c, took);
    ASSERT_EQ_STR(c.argv[c.argc - 3], "1-1");
    ASSERT_EQ_STR(c.argv[c.argc - 1], "t");
    took = fleet_state_finish(&keys, f, 100, &c);
    ASSERT_EQ_INT(took, (FLEET_CMD_ARGS - 3 - hf.keys - hf.argv) / hf.per_item);
    check_cmd(FLEET_SCRIPT_FINISH, &hf, &c, took);
    ASSERT_EQ_STR(c.argv[c.argc - 3], "succeeded");
}

/* ------------------------------------------------------------ replies -------------- */

static redisReply *rstr(const char *s) {
    redisReply *r = tl_alloc(sizeof *r);
    *r = (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
    return r;
}

static redisReply *rnum(long long v) {
    redisReply *r = tl_alloc(sizeof *r);
    *r = (redisReply){.type = REDIS_REPLY_INTEGER, .integer = v};
    return r;
}

static redisReply *rerr(const char *s) {
    redisReply *r = rstr(s);
    r->type = REDIS_REPLY_ERROR;
    return r;
}

/* An array of n replies. */
static redisReply *rarr(size_t n, ...) {
    redisReply *r = tl_alloc(sizeof *r);
    redisReply **el = tl_alloc((n ? n : 1) * sizeof *el);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) el[i] = va_arg(ap, redisReply *);
    va_end(ap);
    *r = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = el};
    return r;
}

static redisReply *job_fields(void) {
    return rarr(4, rstr("id"), rstr(ID), rstr("status"), rstr("queued"));
}

TL_TEST(submit_reply) {
    fleet_submitted out;
    ASSERT_EQ_INT(fleet_state_submit_reply(rarr(3, rstr("queued"), rnum(4), rnum(1700)), &out),
                  FLEET_SUBMIT_QUEUED);
    ASSERT_EQ_INT(out.queue_position, 4);
    ASSERT_EQ_INT(out.created_ms, 1700);
    ASSERT_EQ_INT(fleet_state_submit_reply(rarr(2, rstr("replay"), rstr(ID)), &out),
                  FLEET_SUBMIT_REPLAY);
    ASSERT_EQ_STR(out.replay_id, ID);
    ASSERT_EQ_INT(fleet_state_submit_reply(rarr(3, rstr("limit"), rstr("rate"), rnum(250)), &out),
                  FLEET_SUBMIT_LIMIT);
    ASSERT_EQ_STR(out.limit, "rate");
    ASSERT_EQ_INT(out.retry_after_ms, 250);
    ASSERT_EQ_INT(fleet_state_submit_reply(rerr("IDEMPOTENCY key reused"), &out),
                  FLEET_SUBMIT_CONFLICT);
    ASSERT_EQ_INT(fleet_state_submit_reply(rerr("ERR script failed"), &out), FLEET_SUBMIT_ERROR);
    ASSERT_EQ_STR(out.err, "ERR script failed");
    ASSERT_EQ_INT(fleet_state_submit_reply(rarr(2, rstr("queued"), rnum(4)), &out),
                  FLEET_SUBMIT_ERROR);
    ASSERT_EQ_INT(fleet_state_submit_reply(rnum(1), &out), FLEET_SUBMIT_ERROR);
    ASSERT_EQ_INT(fleet_state_submit_reply(NULL, &out), FLEET_SUBMIT_ERROR);
}

/* ARGV i of a submit command (argv: EVALSHA, sha, numkeys, 11 KEYS, then ARGV). */
static const char *submit_argv(const fleet_cmd *c, int i) {
    /* EVALSHA, sha, numkeys, the 13 keys: ARGV i is argv[15 + i] */
    ASSERT_TRUE(15 + i < c->argc);
    return tl_printf("%.*s", (int)c->argvlen[15 + i], c->argv[15 + i]);
}

/* submit.lua compares a limit's text with "0" to skip it without converting it: a limit
 * that is off (0, or below) must go as exactly that, whatever its type. */
TL_TEST(submit_limits_that_are_off_go_as_zero) {
    fleet_keys_init(&keys, "fleet");
    fleet_cmd *c = tl_alloc(sizeof *c);
    fleet_submit s = {.id = ID,
                      .model = "echo",
                      .tenant = "acme",
                      .request_id = "r1",
                      .priority = "normal",
                      .input = "\x01",
                      .input_len = 1,
                      .queue_ttl_s = 3600,
                      .result_ttl_s = 600,
                      .max_attempts = 3,
                      .index_cap = 1000,
                      .index_ttl_s = 7200,
                      .ready_target = 8};
    fleet_state_submit(&keys, &s, c);
    ASSERT_EQ_STR(submit_argv(c, 16), "0"); /* max_active */
    ASSERT_EQ_STR(submit_argv(c, 17), "0"); /* rate */
    ASSERT_EQ_STR(submit_argv(c, 19), "0"); /* max queued */
    ASSERT_EQ_STR(submit_argv(c, 26), "0"); /* max_finished */
    ASSERT_EQ_STR(submit_argv(c, 27), "0"); /* max_bytes */
    s.max_active = -1, s.rate = -0.5, s.max_queue = -7, s.max_finished = -2, s.max_bytes = -3;
    fleet_state_submit(&keys, &s, c);
    ASSERT_EQ_STR(submit_argv(c, 16), "0");
    ASSERT_EQ_STR(submit_argv(c, 17), "0");
    ASSERT_EQ_STR(submit_argv(c, 19), "0");
    ASSERT_EQ_STR(submit_argv(c, 26), "0");
    ASSERT_EQ_STR(submit_argv(c, 27), "0");
    s.max_active = 4, s.rate = 2.5, s.burst = 5, s.max_queue = 1000000;
    fleet_state_submit(&keys, &s, c);
    ASSERT_EQ_STR(submit_argv(c, 16), "4");
    ASSERT_EQ_STR(submit_argv(c, 17), "2.500000");
    ASSERT_EQ_STR(submit_argv(c, 18), "5");
    ASSERT_EQ_STR(submit_argv(c, 19), "1000000");
    ASSERT_EQ_STR(submit_argv(c, 23), "1"); /* normal's rank */
    s.max_finished = 100, s.max_bytes = 1LL << 40;
    fleet_state_submit(&keys, &s, c);
    ASSERT_EQ_STR(submit_argv(c, 26), "100");
    ASSERT_EQ_STR(submit_argv(c, 27), "1099511627776");
}

TL_TEST(auth_reply) {
    const char *tenant = NULL, *role = NULL;
    const redisReply *settings = NULL;
    redisReply *set = rarr(2, rstr("max_active"), rstr("4"));
    ASSERT_EQ_INT(fleet_state_auth_reply(rarr(3, rstr("acme"), rstr("admin"), set), &tenant, &role,
                                         &settings),
                  1);
    ASSERT_EQ_STR(tenant, "acme");
    ASSERT_EQ_STR(role, "admin");
    ASSERT_TRUE(settings == set);
    ASSERT_EQ_INT(fleet_state_auth_reply(rarr(0), &tenant, &role, &settings), 0);
    ASSERT_EQ_INT(fleet_state_auth_reply(rarr(2, rstr("acme"), rstr("admin")), &tenant, &role,
                                         &settings),
                  -1);
    ASSERT_EQ_INT(fleet_state_auth_reply(rerr("ERR boom"), &tenant, &role, &settings), -1);
}

TL_TEST(claim_reply) {
    redisReply *batch = rarr(5,
                             rarr(7, rstr("ok"), rstr("\x81"), rnum(2), rnum(30), rnum(1),
                                  rstr("1796546742955"), rstr("1796546743001")),
                             rarr(1, rstr("gone")), rarr(1, rstr("cancelled")),
                             rarr(2, rstr("dead"), rstr("lost 3 times")),
                             rarr(2, rstr("skip"), rstr("leased")));
    fleet_claimed out;
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 0), &out), FLEET_CLAIM_OK);
    ASSERT_EQ_INT(out.input_len, 1);
    ASSERT_EQ_INT(out.attempts, 2);
    ASSERT_EQ_INT(out.timeout_s, 30);
    ASSERT_TRUE(out.reclaimed);
    ASSERT_TRUE(out.created_ms == 1796546742955LL);
    ASSERT_TRUE(out.started_ms == 1796546743001LL);
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 1), &out),
                  FLEET_CLAIM_GONE);
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 2), &out),
                  FLEET_CLAIM_CANCELLED);
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 3), &out),
                  FLEET_CLAIM_DEAD);
    ASSERT_EQ_STR(out.why, "lost 3 times");
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 4), &out),
                  FLEET_CLAIM_SKIP);
    ASSERT_EQ_STR(out.why, "leased");
    ASSERT_NULL(fleet_state_batch_item(batch, 5));
    ASSERT_NULL(fleet_state_batch_item(rerr("OOM"), 0));
    ASSERT_EQ_INT(fleet_state_claim_reply(rarr(3, rstr("ok"), rstr("x"), rnum(1)), &out),
                  FLEET_CLAIM_ERROR);
    /* A version 4 reply (five elements, no times) is not this protocol's. */
    ASSERT_EQ_INT(fleet_state_claim_reply(rarr(5, rstr("ok"), rstr("x"), rnum(1), rnum(0), rnum(0)),
                                          &out),
                  FLEET_CLAIM_ERROR);
    ASSERT_EQ_INT(fleet_state_claim_reply(rarr(1, rstr("what")), &out), FLEET_CLAIM_ERROR);
    ASSERT_EQ_INT(fleet_state_claim_reply(rerr("ERR boom"), &out), FLEET_CLAIM_ERROR);
}

/* A claim with read slots answers, after the named entries' replies, one read item per
 * entry the script read: {entry id, job id, reply}; timeout_s may come as text. */
TL_TEST(claim_read_items) {
    redisReply *batch = rarr(3, rarr(1, rstr("gone")),
                             rarr(3, rstr("1-2"), rstr(ID),
                                  rarr(7, rstr("ok"), rstr("\x81\xa1x\x01"), rnum(1), rstr("45"),
                                       rnum(0), rstr(""), rstr("1796546743001"))),
                             rarr(3, rstr("1-3"), rstr(""),
                                  rarr(2, rstr("skip"), rstr("no valid job id"))));
    fleet_claimed out;
    const char *entry = NULL, *job = NULL;
    ASSERT_EQ_INT(fleet_state_claim_reply(fleet_state_batch_item(batch, 0), &out),
                  FLEET_CLAIM_GONE);
    const redisReply *item = fleet_state_claim_read_item(batch->element[1], &entry, &job);
    ASSERT_NOT_NULL(item);
    ASSERT_EQ_STR(entry, "1-2");
    ASSERT_EQ_STR(job, ID);
    ASSERT_EQ_INT(fleet_state_claim_reply(item, &out), FLEET_CLAIM_OK);
    ASSERT_EQ_INT(out.input_len, 4);
    ASSERT_EQ_INT(out.attempts, 1);
    ASSERT_EQ_INT(out.timeout_s, 45);
    ASSERT_FALSE(out.reclaimed);
    ASSERT_TRUE(out.created_ms == 0); /* a job without created_ms: unknown */
    item = fleet_state_claim_read_item(batch->element[2], &entry, &job);
    ASSERT_NOT_NULL(item);
    ASSERT_EQ_STR(entry, "1-3");
    ASSERT_EQ_STR(job, "");
    ASSERT_EQ_INT(fleet_state_claim_reply(item, &out), FLEET_CLAIM_SKIP);
    /* A named entry's reply, or anything else, is not a read item. */
    ASSERT_NULL(fleet_state_claim_read_item(batch->element[0], &entry, &job));
    ASSERT_NULL(fleet_state_claim_read_item(rarr(3, rstr("1-2"), rstr(ID), rstr("ok")), &entry,
                                            &job));
    ASSERT_NULL(fleet_state_claim_read_item(rerr("ERR boom"), &entry, &job));
    ASSERT_NULL(fleet_state_claim_read_item(NULL, &entry, &job));
}

/* An events message: one "<id> <what>" line per job, the last without a newline; a
 * message of one line is the format of protocol version 1. */
TL_TEST(event_message_lines) {
    const char *msg = ID " running\n" ID " succeeded\n01JDQ7ZK5W3V8X9Y0A1B2C3D4F webhook";
    const char *p = msg, *end = msg + strlen(msg);
    fleet_event ev;
    const char *whats[] = {"running", "succeeded", "webhook"};
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(fleet_event_next(&p, end, &ev));
        ASSERT_EQ_INT(ev.id_len, FLEET_ID_LEN);
        ASSERT_EQ_INT(ev.what_len, strlen(whats[i]));
        ASSERT_TRUE(memcmp(ev.what, whats[i], ev.what_len) == 0);
    }
    ASSERT_TRUE(memcmp(ev.id, "01JDQ7ZK5W3V8X9Y0A1B2C3D4F", FLEET_ID_LEN) == 0);
    ASSERT_FALSE(fleet_event_next(&p, end, &ev));

    msg = ID " cancelling";
    p = msg;
    end = msg + strlen(msg);
    ASSERT_TRUE(fleet_event_next(&p, end, &ev));
    ASSERT_TRUE(memcmp(ev.id, ID, FLEET_ID_LEN) == 0 && ev.id_len == FLEET_ID_LEN);
    ASSERT_EQ_INT(ev.what_len, 10);
    ASSERT_FALSE(fleet_event_next(&p, end, &ev));

    /* A line without a space is all id (the caller's length check refuses it); an empty
     * line reads as an empty id; a trailing newline ends the message. */
    msg = "noid\n\n" ID " running\n";
    p = msg;
    end = msg + strlen(msg);
    ASSERT_TRUE(fleet_event_next(&p, end, &ev));
    ASSERT_EQ_INT(ev.id_len, 4);
    ASSERT_EQ_INT(ev.what_len, 0);
    ASSERT_TRUE(fleet_event_next(&p, end, &ev));
    ASSERT_EQ_INT(ev.id_len, 0);
    ASSERT_TRUE(fleet_event_next(&p, end, &ev));
    ASSERT_EQ_INT(ev.id_len, FLEET_ID_LEN);
    ASSERT_FALSE(fleet_event_next(&p, end, &ev));
    p = "";
    ASSERT_FALSE(fleet_event_next(&p, p, &ev));
}

/* renew answers like progress and is read by the same parser. */
TL_TEST(progress_and_renew_reply) {
    ASSERT_EQ_INT(fleet_state_progress_reply(rstr("ok")), FLEET_PROGRESS_OK);
    ASSERT_EQ_INT(fleet_state_progress_reply(rstr("cancel")), FLEET_PROGRESS_CANCEL);
    ASSERT_EQ_INT(fleet_state_progress_reply(rstr("stale")), FLEET_PROGRESS_STALE);
    ASSERT_EQ_INT(fleet_state_progress_reply(rarr(1, rstr("ok"))), FLEET_PROGRESS_ERROR);
    ASSERT_EQ_INT(fleet_state_progress_reply(rerr("ERR boom")), FLEET_PROGRESS_ERROR);
    ASSERT_EQ_INT(fleet_state_progress_reply(NULL), FLEET_PROGRESS_ERROR);
}

TL_TEST(finish_reply) {
    redisReply *batch = rarr(2, rstr("ok"), rstr("stale"));
    ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(batch, 0)), FLEET_FINISH_OK);
    ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(batch, 1)), FLEET_FINISH_STALE);
    ASSERT_EQ_INT(fleet_state_finish_reply(rarr(1, rstr("stale"))), FLEET_FINISH_STALE);
    ASSERT_EQ_INT(fleet_state_finish_reply(rnum(1)), FLEET_FINISH_ERROR);
    ASSERT_EQ_INT(fleet_state_finish_reply(rerr("BADSTATUS queued")), FLEET_FINISH_ERROR);
    ASSERT_EQ_INT(fleet_state_finish_reply(fleet_state_batch_item(rerr("OOM"), 0)),
                  FLEET_FINISH_ERROR);
}

TL_TEST(requeue_reply) {
    ASSERT_EQ_INT(fleet_state_requeue_reply(rarr(2, rstr("queued"), rnum(1700))),
                  FLEET_REQUEUE_QUEUED);
    ASSERT_EQ_INT(fleet_state_requeue_reply(rarr(2, rstr("dead"), rstr("busy"))),
                  FLEET_REQUEUE_DEAD);
    ASSERT_EQ_INT(fleet_state_requeue_reply(rarr(1, rstr("cancelled"))), FLEET_REQUEUE_CANCELLED);
    ASSERT_EQ_INT(fleet_state_requeue_reply(rarr(1, rstr("stale"))), FLEET_REQUEUE_STALE);
    ASSERT_EQ_INT(fleet_state_requeue_reply(rstr("queued")), FLEET_REQUEUE_ERROR);
    ASSERT_EQ_INT(fleet_state_requeue_reply(rerr("ERR boom")), FLEET_REQUEUE_ERROR);
}

TL_TEST(promote_reply) {
    ASSERT_EQ_INT(fleet_state_promote_reply(rnum(3)), 3);
    ASSERT_EQ_INT(fleet_state_promote_reply(rstr("3")), -1);
    ASSERT_EQ_INT(fleet_state_promote_reply(rerr("ERR boom")), -1);
}

TL_TEST(recover_reply) {
    const char *job = NULL;
    ASSERT_EQ_INT(fleet_state_recover_reply(rarr(2, rstr("requeued"), rstr(ID)), &job), 1);
    ASSERT_EQ_STR(job, ID);
    ASSERT_EQ_INT(fleet_state_recover_reply(rarr(2, rstr("ended"), rstr(ID)), &job), 0);
    ASSERT_EQ_INT(fleet_state_recover_reply(rarr(1, rstr("unknown")), &job), 0);
    ASSERT_EQ_STR(job, "");
    ASSERT_EQ_INT(fleet_state_recover_reply(rarr(1, rstr("what")), &job), -1);
    ASSERT_EQ_INT(fleet_state_recover_reply(rerr("ERR boom"), &job), -1);
}

TL_TEST(delete_reply) {
    fleet_status st;
    ASSERT_EQ_INT(fleet_state_delete_reply(rarr(2, rstr("deleted"), rstr("failed")), &st),
                  FLEET_DELETE_DONE);
    ASSERT_EQ_INT(st, FLEET_STATUS_FAILED);
    ASSERT_EQ_INT(fleet_state_delete_reply(rarr(1, rstr("missing")), &st), FLEET_DELETE_MISSING);
    ASSERT_EQ_INT(fleet_state_delete_reply(rarr(2, rstr("refused"), rstr("running")), &st),
                  FLEET_DELETE_REFUSED);
    ASSERT_EQ_INT(st, FLEET_STATUS_RUNNING);
    ASSERT_EQ_INT(fleet_state_delete_reply(rarr(1, rstr("deleted")), &st), FLEET_DELETE_ERROR);
    ASSERT_EQ_INT(fleet_state_delete_reply(rerr("ERR boom"), &st), FLEET_DELETE_ERROR);
}

TL_TEST(purge_and_pause_replies) {
    long long n = -1, ms = -1, rq = -1;
    const char *cursor = NULL;
    bool more = false;
    ASSERT_EQ_INT(fleet_state_purge_reply(rarr(3, rnum(5), rstr("12-0"), rnum(1)), &n, &cursor,
                                          &more),
                  0);
    ASSERT_EQ_INT(n, 5);
    ASSERT_EQ_STR(cursor, "12-0");
    ASSERT_TRUE(more);
    ASSERT_EQ_INT(fleet_state_purge_reply(rarr(2, rnum(5), rstr("")), &n, &cursor, &more), -1);
    ASSERT_EQ_INT(fleet_state_purge_reply(rerr("ERR boom"), &n, &cursor, &more), -1);
    ASSERT_EQ_INT(fleet_state_pause_reply(rarr(3, rstr("ok"), rnum(1700000000000), rnum(2)), &ms,
                                          &rq),
                  1);
    ASSERT_EQ_INT(ms, 1700000000000);
    ASSERT_EQ_INT(rq, 2);
    /* No such reply since the pause mark moved to the shards (the caller checks the model). */
    ASSERT_EQ_INT(fleet_state_pause_reply(rarr(1, rstr("missing")), &ms, &rq), -1);
    ASSERT_EQ_INT(fleet_state_pause_reply(rarr(1, rstr("ok")), &ms, &rq), -1);
    ASSERT_EQ_INT(fleet_state_pause_reply(rerr("ERR boom"), &ms, &rq), -1);
}

TL_TEST(retry_reply) {
    fleet_retried out;
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(2, rstr("queued"), rnum(7)), &out),
                  FLEET_RETRY_QUEUED);
    ASSERT_EQ_INT(out.queue_position, 7);
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(1, rstr("missing")), &out), FLEET_RETRY_MISSING);
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(2, rstr("refused"), rstr("running")), &out),
                  FLEET_RETRY_REFUSED);
    ASSERT_EQ_INT(out.status, FLEET_STATUS_RUNNING);
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(2, rstr("not_dead"), rstr("succeeded")), &out),
                  FLEET_RETRY_NOT_DEAD);
    ASSERT_EQ_INT(out.status, FLEET_STATUS_SUCCEEDED);
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(3, rstr("limit"), rstr("active"), rnum(1000)), &out),
                  FLEET_RETRY_LIMIT);
    ASSERT_EQ_STR(out.limit, "active");
    ASSERT_EQ_INT(out.retry_after_ms, 1000);
    ASSERT_EQ_INT(fleet_state_retry_reply(rarr(1, rstr("queued")), &out), FLEET_RETRY_ERROR);
    ASSERT_EQ_INT(fleet_state_retry_reply(rerr("ERR boom"), &out), FLEET_RETRY_ERROR);
}

TL_TEST(cancel_reply) {
    fleet_status st;
    ASSERT_EQ_INT(fleet_state_cancel_reply(rarr(1, rstr("cancelled")), &st), FLEET_CANCEL_DONE);
    ASSERT_EQ_INT(fleet_state_cancel_reply(rarr(1, rstr("requested")), &st),
                  FLEET_CANCEL_REQUESTED);
    ASSERT_EQ_INT(fleet_state_cancel_reply(rarr(2, rstr("final"), rstr("failed")), &st),
                  FLEET_CANCEL_FINAL);
    ASSERT_EQ_INT(st, FLEET_STATUS_FAILED);
    ASSERT_EQ_INT(fleet_state_cancel_reply(rarr(1, rstr("missing")), &st), FLEET_CANCEL_MISSING);
    ASSERT_EQ_INT(fleet_state_cancel_reply(rarr(1, rstr("final")), &st), FLEET_CANCEL_ERROR);
    ASSERT_EQ_INT(fleet_state_cancel_reply(rerr("ERR boom"), &st), FLEET_CANCEL_ERROR);
}

TL_TEST(get_reply) {
    fleet_job_view v;
    ASSERT_EQ_INT(fleet_state_get_reply(rarr(2, job_fields(), rnum(3)), &v), 1);
    ASSERT_EQ_STR(v.id, ID);
    ASSERT_EQ_INT(v.queue_position, 3);
    ASSERT_EQ_INT(fleet_state_get_reply(rarr(0), &v), 0);
    ASSERT_EQ_INT(fleet_state_get_reply(rarr(2, rarr(2, rstr("id"), rstr(ID)), rnum(0)), &v), -1);
    ASSERT_EQ_INT(fleet_state_get_reply(rerr("ERR boom"), &v), -1);
    /* a tombstone reads as missing, and says when and how the job had ended */
    const redisReply *gone = rarr(3, rstr("gone"), rstr("1790000000123"), rstr("failed"));
    ASSERT_EQ_INT(fleet_state_get_reply(gone, &v), 0);
    fleet_job_gone g;
    ASSERT_TRUE(fleet_state_get_gone(gone, &g));
    ASSERT_EQ_INT(g.expired_at_ms, 1790000000123LL);
    ASSERT_EQ_STR(g.status, "failed");
    ASSERT_FALSE(fleet_state_get_gone(rarr(0), &g));
    ASSERT_FALSE(fleet_state_get_gone(rarr(2, job_fields(), rnum(3)), &g));
}

TL_TEST(list_reply) {
    const redisReply *jobs = NULL;
    const char *next = NULL;
    ASSERT_EQ_INT(fleet_state_list_reply(rarr(2, rarr(1, job_fields()), rstr(ID)), &jobs, &next),
                  0);
    ASSERT_EQ_INT(jobs->elements, 1);
    ASSERT_EQ_STR(next, ID);
    ASSERT_EQ_INT(fleet_state_list_reply(rarr(2, rarr(0), rstr("")), &jobs, &next), 0);
    ASSERT_EQ_STR(next, "");
    ASSERT_EQ_INT(fleet_state_list_reply(rarr(1, rarr(0)), &jobs, &next), -1);
    ASSERT_EQ_INT(fleet_state_list_reply(rerr("ERR boom"), &jobs, &next), -1);
}

TL_TEST(models_reply) {
    const redisReply *workers = NULL, *stats = NULL, *models = NULL;
    redisReply *w = rarr(1, rarr(5, rstr("w1"), rstr("echo"), rstr("cpu"), rstr("8"), rstr("0")));
    redisReply *m = rarr(2, rstr("echo"), rstr("{\"created_ms\":1}"));
    ASSERT_EQ_INT(fleet_state_models_reply(rarr(3, w, rarr(2, rstr("echo:queued"), rstr("1")), m),
                                           &workers, &stats, &models),
                  0);
    ASSERT_TRUE(workers == w);
    ASSERT_TRUE(models == m);
    ASSERT_EQ_INT(stats->elements, 2);
    ASSERT_EQ_INT(fleet_state_models_reply(rarr(3, w, rnum(0), m), &workers, &stats, &models), -1);
    /* The reply of the script before the models hash (two elements) is refused. */
    ASSERT_EQ_INT(fleet_state_models_reply(rarr(2, w, rarr(0)), &workers, &stats, &models), -1);
    /* A worker of the wrong shape, or a record that is no string, is refused. */
    ASSERT_EQ_INT(fleet_state_models_reply(rarr(3, rarr(1, rarr(2, rstr("w1"), rstr("echo"))),
                                                rarr(0), rarr(0)),
                                           &workers, &stats, &models),
                  -1);
    ASSERT_EQ_INT(fleet_state_models_reply(rarr(3, rarr(0), rarr(0),
                                                rarr(2, rstr("echo"), rnum(1))),
                                           &workers, &stats, &models),
                  -1);
    ASSERT_EQ_INT(fleet_state_models_reply(rerr("ERR boom"), &workers, &stats, &models), -1);
}

TL_TEST(noscript_is_recognised) {
    ASSERT_TRUE(fleet_reply_is_noscript(rerr("NOSCRIPT No matching script.")));
    ASSERT_FALSE(fleet_reply_is_noscript(rerr("ERR boom")));
    ASSERT_FALSE(fleet_reply_is_noscript(rstr("NOSCRIPT")));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(every_builder_matches_its_script_header),
        TL_CASE(only_claim_and_finish_take_batches),
        TL_CASE(eval_fallback_sends_the_source),
        TL_CASE(batch_commands_take_as_many_jobs_as_fit),
        TL_CASE(submit_reply),
        TL_CASE(submit_limits_that_are_off_go_as_zero),
        TL_CASE(auth_reply),
        TL_CASE(claim_reply),
        TL_CASE(claim_read_items),
        TL_CASE(event_message_lines),
        TL_CASE(progress_and_renew_reply),
        TL_CASE(finish_reply),
        TL_CASE(requeue_reply),
        TL_CASE(promote_reply),
        TL_CASE(recover_reply),
        TL_CASE(retry_reply),
        TL_CASE(delete_reply),
        TL_CASE(purge_and_pause_replies),
        TL_CASE(cancel_reply),
        TL_CASE(get_reply),
        TL_CASE(list_reply),
        TL_CASE(models_reply),
        TL_CASE(noscript_is_recognised),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
