/* selftest.c: the harness checks its own pieces (processes, Redis, JSON, waiting) so
 * that an integration failure is never the harness's. Needs redis-server, no fleet
 * binary. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

TL_TEST(assertions_and_json_paths) {
    ASSERT_TRUE(1 + 1 == 2);
    ASSERT_FALSE(0);
    ASSERT_EQ_INT(3, 3);
    ASSERT_LT_INT(-1, 0);
    ASSERT_EQ_STR("a", "a");
    ASSERT_NE_STR("a", "b");
    ASSERT_STR_CONTAINS("line 1, column 17", "column");
    ASSERT_STR_CONTAINS_CI("Line 1", "line");
    json_t *j = tl_json("{\"a\":{\"b\":[10,{\"c\":\"x\"}]},\"n\":null}");
    ASSERT_EQ_INT(tl_jint(j, "a.b.0"), 10);
    ASSERT_EQ_STR(tl_jstr(j, "a.b.1.c"), "x");
    ASSERT_NULL(tl_jget(j, "a.z"));
    ASSERT_NOT_NULL(tl_jget(j, "n"));
    ASSERT_NULL(tl_jstr(j, "n"));
    ASSERT_EQ_JSON(tl_jget(j, "a.b.1"), tl_json("{\"c\": \"x\"}"));
    ASSERT_EQ_STR(tl_json_text(tl_json("{\"b\":1,\"a\":[]}")), "{\"a\":[],\"b\":1}");
}

TL_TEST(tmpdir_is_fresh_and_private) {
    struct stat st;
    ASSERT_EQ_INT(stat(tl_tmpdir(), &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_STR_CONTAINS(tl_tmpdir(), tl_case_name());
}

TL_TEST(free_port_is_loopback_and_nonzero) {
    int a = tl_free_port();
    ASSERT_GT_INT(a, 0);
    ASSERT_LT_INT(a, 65536);
}

static bool never(void *arg) {
    (*(int *)arg)++;
    return false;
}

static bool third_time(void *arg) { return ++*(int *)arg >= 3; }

TL_TEST(wait_for_polls_until_true_or_deadline) {
    int calls = 0;
    ASSERT_TRUE(tl_wait_for(third_time, &calls, 5000));
    ASSERT_EQ_INT(calls, 3);
    calls = 0;
    ASSERT_FALSE(tl_wait_for(never, &calls, 50));
    ASSERT_GE_INT(calls, 2);
}

static bool log_says_started(void *arg) {
    const char *log = tl_read_file(((tl_proc *)arg)->log_path, NULL);
    return log && strstr(log, "from-env");
}

TL_TEST(spawn_stop_and_run_commands) {
    const char *argv[] = {"/bin/sh", "-c", "echo started; echo \"$TL_SELFTEST\"; exec sleep 600", NULL};
    const char *env[] = {"TL_SELFTEST=from-env", NULL};
    tl_proc *p = tl_spawn(&(tl_spawn_opts){.name = "sleeper", .path = "/bin/sh", .argv = argv,
                                           .env = env});
    ASSERT_WAIT_FOR(log_says_started, p, 10000);
    ASSERT_TRUE(tl_proc_alive(p));
    int st = tl_proc_stop(p, 5000);
    ASSERT_TRUE(WIFSIGNALED(st));
    ASSERT_EQ_INT(WTERMSIG(st), SIGTERM);
    ASSERT_FALSE(tl_proc_alive(p));
    char *log = tl_read_file(p->log_path, NULL);
    ASSERT_NOT_NULL(log);
    ASSERT_STR_CONTAINS(log, "from-env");

    const char *argv2[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    tl_cmd_result r = tl_run_cmd("sh-exit3", "/bin/sh", argv2, NULL, 10000);
    ASSERT_EQ_INT(r.exit_code, 3);
    ASSERT_EQ_STR(r.out, "out\n");
    ASSERT_EQ_STR(r.err, "err\n");
}

TL_TEST(redis_starts_empty_on_loopback) {
    tl_redis *r = tl_redis_start(NULL);
    redisContext *c = tl_redis_connect(r);
    ASSERT_EQ_INT(tl_redis_int(c, "DBSIZE"), 0);
    tl_redis_cmd(c, "SET %s %s", "k1", "v1");
    tl_redis_cmd(c, "SET %s %s", "k0", "v0");
    tl_strlist keys = tl_redis_keys(c, "*");
    ASSERT_EQ_INT(keys.n, 2);
    ASSERT_EQ_STR(keys.v[0], "k0");
    ASSERT_EQ_STR(keys.v[1], "k1");
    ASSERT_TRUE(tl_strlist_contains(&keys, "k1"));
    redisReply *cfg = tl_redis_cmd(c, "CONFIG GET %s", "bind");
    ASSERT_EQ_INT(cfg->elements, 2);
    ASSERT_STR_CONTAINS(cfg->element[1]->str, "127.0.0.1");
    redisReply *e = tl_redis_cmd_allow_error(c, "NOSUCHCOMMAND");
    ASSERT_EQ_INT(e->type, REDIS_REPLY_ERROR);
}

TL_TEST(redis_restart_keeps_data_with_aof) {
    tl_redis *r = tl_redis_start(&(tl_redis_opts){.appendonly = true});
    redisContext *c = tl_redis_connect(r);
    tl_redis_cmd(c, "SET %s %s", "survivor", "yes");
    tl_redis_kill9(r); /* everysec: acknowledged writes reached the kernel before the reply */
    tl_redis_restart(r);
    c = tl_redis_connect(r);
    redisReply *v = tl_redis_cmd(c, "GET %s", "survivor");
    ASSERT_EQ_INT(v->type, REDIS_REPLY_STRING);
    ASSERT_EQ_STR(v->str, "yes");
}

TL_TEST(redis_without_aof_restarts_empty) {
    tl_redis *r = tl_redis_start(NULL);
    redisContext *c = tl_redis_connect(r);
    tl_redis_cmd(c, "SET %s %s", "gone", "soon");
    tl_redis_stop(r);
    tl_redis_restart(r);
    c = tl_redis_connect(r);
    ASSERT_EQ_INT(tl_redis_int(c, "DBSIZE"), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(assertions_and_json_paths),
        TL_CASE(tmpdir_is_fresh_and_private),
        TL_CASE(free_port_is_loopback_and_nonzero),
        TL_CASE(wait_for_polls_until_true_or_deadline),
        TL_CASE(spawn_stop_and_run_commands),
        TL_CASE(redis_starts_empty_on_loopback),
        TL_CASE(redis_restart_keeps_data_with_aof),
        TL_CASE(redis_without_aof_restarts_empty),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
