/* selftest.c: the harness checks its own pieces (processes, Redis, JSON, waiting) so
 * that an integration failure is never the harness's. Needs redis-server, no fleet
 * binary. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

TL_TEST(wait_until_reevaluates_the_expression) {
    int calls = 0;
    ASSERT_TRUE(TL_WAIT_UNTIL(++calls >= 3, 5000));
    ASSERT_EQ_INT(calls, 3);
    calls = 0;
    ASSERT_FALSE(TL_WAIT_UNTIL(++calls < 0, 50));
    ASSERT_GE_INT(calls, 2);
    calls = 0;
    ASSERT_EVENTUALLY(++calls == 4, 5000);
    ASSERT_EQ_INT(calls, 4);
}

TL_TEST(shared_helpers_give_known_values) {
    ASSERT_EQ_STR(tl_sha256_hex("abc"),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    uint64_t a = 1, b = 1;
    uint64_t first = tl_rand64(&a);
    ASSERT_EQ_INT((long long)(first == tl_rand64(&b)), 1); /* the same seed, the same run */
    ASSERT_NE_INT((long long)(tl_rand64(&a) == first), 1);
}

/* tl_tcp_sockets sees a listener, a connection's unread bytes, and both going away. */
TL_TEST(tcp_sockets_counts_states_and_unread_bytes) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE_INT(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ_INT(listen(l, 4), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ_INT(getsockname(l, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    ASSERT_EQ_INT(tl_tcp_sockets(port, TL_TCP_LISTEN, NULL), 1);

    tl_tcp_send(port, "hello", 1000);
    long unread = -1;
    ASSERT_EVENTUALLY(tl_tcp_sockets(port, TL_TCP_ESTABLISHED, &unread) == 1 && unread == 5, 5000);
    int c = accept(l, NULL, NULL);
    ASSERT_GE_INT(c, 0);
    char buf[8];
    ASSERT_EQ_INT(read(c, buf, sizeof buf), 5);
    ASSERT_EQ_INT(tl_tcp_sockets(port, TL_TCP_ESTABLISHED, &unread), 1);
    ASSERT_EQ_INT(unread, 0);
    close(c);
    close(l);
    ASSERT_EQ_INT(tl_tcp_sockets(port, TL_TCP_LISTEN, NULL), 0);
}

static bool log_says_started(void *arg) {
    const char *log = tl_read_file(((tl_proc *)arg)->log_path, NULL);
    return log && strstr(log, "from-env");
}

TL_TEST(spawn_stop_and_run_commands) {
    const char *argv[] = {"/bin/sh", "-c", "echo started; echo \"$TL_SELFTEST\"; exec sleep 600",
                          NULL};
    const char *env[] = {"TL_SELFTEST=from-env", NULL};
    tl_proc *p =
        tl_spawn(&(tl_spawn_opts){.name = "sleeper", .path = "/bin/sh", .argv = argv, .env = env});
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

/* FLEET_TEST_REDIS_SERVER takes a program name (looked up on PATH) as well as a path:
 * valkey-server by name starts Valkey. */
TL_TEST(redis_server_switch_starts_valkey_by_name) {
    if (access("/usr/bin/valkey-server", X_OK) != 0 &&
        access("/usr/local/bin/valkey-server", X_OK) != 0)
        TL_SKIP("valkey-server is not installed (deploy/install-deps.sh installs it)");
    setenv("FLEET_TEST_REDIS_SERVER", "valkey-server", 1); /* this case's process only */
    tl_redis *r = tl_redis_start(NULL);
    redisReply *info = tl_redis_cmd(tl_redis_connect(r), "INFO server");
    ASSERT_STR_CONTAINS(info->str, "valkey_version:");
    tl_sentinels *s = tl_sentinels_start(r, "tlvalkey", 1);
    redisReply *v = tl_redis_cmd(tl_redis_connect(&(tl_redis){.port = s->ports[0]}), "INFO server");
    ASSERT_STR_CONTAINS(v->str, "valkey_version:");
    ASSERT_STR_CONTAINS(v->str, "sentinel");
}

/* A primary, a replica and three sentinels: kill -9 of the primary promotes the replica,
 * which kept the primary's data. */
TL_TEST(sentinels_promote_the_replica_after_kill9) {
    tl_redis *primary = tl_redis_start(NULL);
    redisContext *c = tl_redis_connect(primary);
    tl_redis_cmd(c, "SET %s %s", "before", "kill");
    tl_redis *replica = tl_redis_start_replica(primary);
    ASSERT_EQ_STR(tl_redis_role(replica), "slave");
    ASSERT_EQ_STR(tl_redis_role(primary), "master");
    redisContext *rc = tl_redis_connect(replica);
    tl_redis_cmd(c, "SET %s %s", "after", "sync");
    ASSERT_EVENTUALLY(tl_redis_cmd(rc, "EXISTS %s", "after")->integer == 1, TL_WAIT_MS);

    tl_sentinels *s = tl_sentinels_start(primary, "tlprimary", 3);
    ASSERT_EQ_STR(tl_sentinels_addrs(s), tl_printf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
                                                   s->ports[0], s->ports[1], s->ports[2]));
    ASSERT_EQ_INT(tl_sentinels_primary_port(s), primary->port);

    int64_t t0 = tl_now_ms();
    tl_redis_kill9(primary);
    int port = tl_sentinels_wait_failover(s, primary->port, TL_WAIT_MS);
    tl_log("promoted port %d %lld ms after kill -9", port, (long long)(tl_now_ms() - t0));
    ASSERT_EQ_INT(port, replica->port);
    ASSERT_EQ_INT(tl_sentinels_primary_port(s), replica->port);
    ASSERT_EQ_STR(tl_redis_role(replica), "master");
    rc = tl_redis_connect(replica);
    ASSERT_EQ_STR(tl_redis_cmd(rc, "GET %s", "before")->str, "kill");
    tl_redis_cmd(rc, "SET %s %s", "written", "on the new primary");
    /* One sentinel down: the others still answer with the new primary. */
    tl_proc_stop(s->procs[0], 5000);
    ASSERT_EQ_INT(tl_sentinels_primary_port(s), replica->port);
}

/* The password a server requires: the harness authenticates, a connection without it is
 * refused, url carries it, and a replica authenticates to its primary with it. */
TL_TEST(redis_with_requirepass) {
    tl_redis *r = tl_redis_start(&(tl_redis_opts){.extra_args = TL_ARGS("--requirepass", "s3cret"),
                                                  .password = "s3cret"});
    ASSERT_EQ_STR(r->url, tl_printf("redis://default:s3cret@127.0.0.1:%d", r->port));
    ASSERT_EQ_STR(tl_redis_url_as(r, NULL, NULL), tl_printf("redis://127.0.0.1:%d", r->port));
    redisContext *c = tl_redis_connect(r);
    tl_redis_cmd(c, "SET %s %s", "k", "v");
    redisContext *anon = tl_redis_connect(&(tl_redis){.port = r->port});
    redisReply *e = tl_redis_cmd_allow_error(anon, "GET %s", "k");
    ASSERT_EQ_INT(e->type, REDIS_REPLY_ERROR);
    ASSERT_STR_CONTAINS(e->str, "NOAUTH");
    tl_redis *replica = tl_redis_start_replica(r);
    ASSERT_EQ_STR(tl_redis_cmd(tl_redis_connect(replica), "GET %s", "k")->str, "v");
    tl_redis_restart(r); /* the password is kept across a restart */
    ASSERT_EQ_STR(tl_redis_cmd(tl_redis_connect(r), "ACL WHOAMI")->str, "default");
}

/* An ACL file: the harness connects as its user, url names that user, and the default
 * user is off. */
TL_TEST(redis_with_an_acl_user) {
    const char *acl = tl_printf("%s/users.acl", tl_tmpdir());
    FILE *f = fopen(acl, "w");
    ASSERT_NOT_NULL(f);
    fprintf(f, "user default off\nuser fleet on >pw1 ~* &* +@all\nuser reader on >pw2 ~* +@read\n");
    ASSERT_EQ_INT(fclose(f), 0);
    tl_redis *r = tl_redis_start(&(tl_redis_opts){
        .extra_args = TL_ARGS("--aclfile", acl), .user = "fleet", .password = "pw1"});
    ASSERT_EQ_STR(r->url, tl_printf("redis://fleet:pw1@127.0.0.1:%d", r->port));
    ASSERT_EQ_STR(tl_redis_url_as(r, "reader", "pw2"),
                  tl_printf("redis://reader:pw2@127.0.0.1:%d", r->port));
    redisContext *c = tl_redis_connect(r);
    ASSERT_EQ_STR(tl_redis_cmd(c, "ACL WHOAMI")->str, "fleet");
    tl_redis_cmd(c, "SET %s %s", "k", "v");
    tl_redis *reader = &(tl_redis){.port = r->port, .user = "reader", .password = "pw2"};
    redisContext *rc = tl_redis_connect(reader);
    ASSERT_EQ_STR(tl_redis_cmd(rc, "GET %s", "k")->str, "v");
    redisReply *e = tl_redis_cmd_allow_error(rc, "SET %s %s", "k", "w");
    ASSERT_EQ_INT(e->type, REDIS_REPLY_ERROR);
    ASSERT_STR_CONTAINS(e->str, "NOPERM");
}

/* ------------------------------------------------------------ webhook receiver ------ */

static tl_resp *post_to(tl_receiver *rx, const char *path, const char *body) {
    return tl_http(&(tl_req){.url = tl_receiver_url(rx, path),
                             .body = body,
                             .headers = {"X-Fleet-Test: yes"},
                             .timeout_ms = 10000});
}

/* A raw client socket connected to 127.0.0.1:port (closed at case end); -1 if refused. */
static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE_INT(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0}; /* a recv never hangs the case */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const char *s) {
    ASSERT_EQ_INT(send(fd, s, strlen(s), MSG_NOSIGNAL), (long long)strlen(s));
}

/* Reads until the peer closes (or 10 s pass). Harness-owned. */
static char *raw_read_all(int fd) {
    char *buf = tl_alloc(65536);
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, 65535 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return buf;
}

TL_TEST(receiver_records_a_post) {
    tl_receiver *rx = tl_receiver_start(0);
    ASSERT_GT_INT(tl_receiver_port(rx), 0);
    ASSERT_EQ_STR(tl_receiver_url(rx, "/x"),
                  tl_printf("http://127.0.0.1:%d/x", tl_receiver_port(rx)));
    tl_resp *r = post_to(rx, "/hook?a=1", "{\"n\":1}");
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(r->body, "ok");
    ASSERT_EQ_INT(tl_receiver_count(rx), 1);
    const tl_received *q = tl_receiver_get(rx, 0);
    ASSERT_EQ_STR(q->method, "POST");
    ASSERT_EQ_STR(q->path, "/hook?a=1");
    ASSERT_EQ_STR(q->version, "HTTP/1.1");
    ASSERT_EQ_STR(q->body, "{\"n\":1}");
    ASSERT_EQ_INT(q->body_len, 7);
    ASSERT_EQ_INT(q->status, 200);
    ASSERT_EQ_STR(tl_received_header(q, "x-fleet-test"), "yes");
    ASSERT_EQ_STR(tl_received_header(q, "CONTENT-TYPE"), "application/json");
    ASSERT_EQ_STR(tl_received_header(q, "Content-Length"), "7");
    ASSERT_EQ_STR(tl_received_header(q, "Host"), tl_printf("127.0.0.1:%d", tl_receiver_port(rx)));
    ASSERT_NULL(tl_received_header(q, "X-Absent"));
    ASSERT_LE_INT(q->at_ms, tl_now_ms());
    ASSERT_TRUE(tl_receiver_wait_count(rx, 1, 0));
    ASSERT_FALSE(tl_receiver_wait_count(rx, 2, 50));
}

TL_TEST(receiver_answers_from_its_script) {
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 500, NULL, 0);
    tl_receiver_respond(rx, 503, "Retry-After: 7\r\nX-Two: 2", 0);
    tl_resp *r = post_to(rx, "/a", "1");
    ASSERT_HTTP_STATUS(r, 500);
    r = post_to(rx, "/a", "2");
    ASSERT_HTTP_STATUS(r, 503);
    ASSERT_EQ_STR(tl_resp_header(r, "Retry-After"), "7");
    ASSERT_EQ_STR(tl_resp_header(r, "X-Two"), "2");
    r = post_to(rx, "/a", "3"); /* the script is used up: 200 "ok" */
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(r->body, "ok");
    ASSERT_EQ_INT(tl_receiver_count(rx), 3);
    ASSERT_EQ_INT(tl_receiver_get(rx, 0)->status, 500);
    ASSERT_EQ_INT(tl_receiver_get(rx, 1)->status, 503);
    ASSERT_EQ_STR(tl_receiver_get(rx, 1)->body, "2");
    ASSERT_EQ_INT(tl_receiver_get(rx, 2)->status, 200);
}

TL_TEST(receiver_delay_holds_the_answer_and_stop_ends_it) {
    tl_receiver *rx = tl_receiver_start(0);
    tl_receiver_respond(rx, 200, NULL, 400);
    int64_t t0 = tl_now_ms();
    ASSERT_HTTP_STATUS(post_to(rx, "/slow", "{}"), 200);
    ASSERT_GE_INT(tl_now_ms() - t0, 400);

    /* A held answer does not hold other connections, and stop does not wait for it: it is
     * held for longer than ctest lets a test run, so either mistake fails by timeout. */
    tl_receiver_respond(rx, 200, NULL, 600000);
    int fd = raw_connect(tl_receiver_port(rx));
    ASSERT_GE_INT(fd, 0);
    raw_send(fd, "POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    ASSERT_TRUE(tl_receiver_wait_count(rx, 2, 5000));
    ASSERT_HTTP_STATUS(post_to(rx, "/other", "{}"), 200);
    tl_receiver_stop(rx);
    ASSERT_EQ_STR(raw_read_all(fd), ""); /* closed without an answer */
    close(fd);
    ASSERT_EQ_STR(tl_receiver_get(rx, 1)->body, "hi");
}

TL_TEST(receiver_stop_refuses_and_restart_listens_again) {
    tl_receiver *rx = tl_receiver_start(0);
    int port = tl_receiver_port(rx);
    ASSERT_HTTP_STATUS(post_to(rx, "/1", "a"), 200);
    tl_receiver_stop(rx);
    tl_receiver_stop(rx); /* a no-op */
    char err[512];
    tl_resp *r = tl_http_try(&(tl_req){.url = tl_receiver_url(rx, "/2"), .body = "b"}, err,
                             sizeof err);
    ASSERT_NULL(r);
    ASSERT_STR_CONTAINS(err, "Couldn't connect");
    ASSERT_EQ_INT(raw_connect(port), -1);
    tl_receiver_restart(rx);
    ASSERT_EQ_INT(tl_receiver_port(rx), port);
    ASSERT_HTTP_STATUS(post_to(rx, "/3", "c"), 200);
    ASSERT_EQ_INT(tl_receiver_count(rx), 2);
    ASSERT_EQ_STR(tl_receiver_get(rx, 0)->path, "/1");
    ASSERT_EQ_STR(tl_receiver_get(rx, 1)->path, "/3");
    /* And a fixed port can be asked for. */
    tl_receiver_stop(rx);
    tl_receiver *rx2 = tl_receiver_start(port);
    ASSERT_EQ_INT(tl_receiver_port(rx2), port);
    ASSERT_HTTP_STATUS(post_to(rx2, "/4", "d"), 200);
    ASSERT_EQ_INT(tl_receiver_count(rx2), 1);
}

static size_t discard(char *p, size_t size, size_t n, void *ud) { return size * n; }

static long curl_post_on(CURL *h, const char *url, const char *body, struct curl_slist *hdrs) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) FAILF("curl: %s", curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static void curl_cleanup_cb(void *h) { curl_easy_cleanup(h); }
static void slist_free_cb(void *l) { curl_slist_free_all(l); }

TL_TEST(receiver_keeps_connections_alive) {
    tl_receiver *rx = tl_receiver_start(0);
    CURL *h = curl_easy_init();
    ASSERT_NOT_NULL(h);
    tl_defer(curl_cleanup_cb, h);
    struct curl_slist *ka = curl_slist_append(NULL, "Expect:");
    struct curl_slist *cl = curl_slist_append(NULL, "Connection: close");
    tl_defer(slist_free_cb, ka);
    tl_defer(slist_free_cb, cl);
    const char *url = tl_receiver_url(rx, "/ka");
    ASSERT_EQ_INT(curl_post_on(h, url, "one", ka), 200);
    ASSERT_EQ_INT(curl_post_on(h, url, "two", ka), 200);
    long fresh = -1;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &fresh);
    ASSERT_EQ_INT(fresh, 0); /* the second request reused the connection */
    ASSERT_EQ_INT(curl_post_on(h, url, "three", cl), 200); /* still that one, then closed */
    ASSERT_EQ_INT(curl_post_on(h, url, "four", ka), 200);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &fresh);
    ASSERT_EQ_INT(fresh, 1);
    ASSERT_EQ_INT(tl_receiver_count(rx), 4);
    unsigned c0 = tl_receiver_get(rx, 0)->conn;
    ASSERT_EQ_INT(tl_receiver_get(rx, 1)->conn, c0);
    ASSERT_EQ_INT(tl_receiver_get(rx, 2)->conn, c0);
    ASSERT_NE_INT(tl_receiver_get(rx, 3)->conn, c0);
    ASSERT_EQ_STR(tl_receiver_get(rx, 1)->body, "two");

    /* Two requests pipelined in one write, and HTTP/1.0 closes by default. */
    int fd = raw_connect(tl_receiver_port(rx));
    raw_send(fd, "POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA"
                 "POST /p2 HTTP/1.0\r\nHost: x\r\nContent-Length: 1\r\n\r\nB");
    char *got = raw_read_all(fd);
    close(fd);
    ASSERT_EQ_INT(tl_receiver_count(rx), 6);
    ASSERT_EQ_STR(tl_receiver_get(rx, 4)->body, "A");
    ASSERT_EQ_STR(tl_receiver_get(rx, 5)->path, "/p2");
    ASSERT_EQ_INT(tl_receiver_get(rx, 5)->conn, tl_receiver_get(rx, 4)->conn);
    const char *second = strstr(got + 1, "HTTP/1.1 200 OK");
    ASSERT_NOT_NULL(second);
    ASSERT_STR_CONTAINS(second, "Connection: close");
}

TL_TEST(receiver_refuses_chunked_and_garbage) {
    tl_receiver *rx = tl_receiver_start(0);
    int fd = raw_connect(tl_receiver_port(rx));
    raw_send(fd, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "1\r\nA\r\n0\r\n\r\n");
    ASSERT_STR_CONTAINS(raw_read_all(fd), "HTTP/1.1 411 ");
    close(fd);
    fd = raw_connect(tl_receiver_port(rx));
    raw_send(fd, "garbage\r\n\r\n");
    ASSERT_STR_CONTAINS(raw_read_all(fd), "HTTP/1.1 400 ");
    close(fd);
    ASSERT_EQ_INT(tl_receiver_count(rx), 0);
    /* A body sent after "100 Continue", as curl does for large bodies by default. */
    char *big = tl_alloc(200001);
    memset(big, 'x', 200000);
    tl_req req = {.url = tl_receiver_url(rx, "/big"), .body = big};
    req.headers[0] = "Expect: 100-continue";
    ASSERT_HTTP_STATUS(tl_http(&req), 200);
    ASSERT_EQ_INT(tl_receiver_get(rx, 0)->body_len, 200000);
}

/* The cluster harness: 3 masters + 3 replicas, a slot moved in two steps (ASK while it is
 * half-migrated, then MOVED for good), a master killed and its replica serving its keys. */
TL_TEST(cluster_moves_a_slot_and_fails_over) {
    tl_cluster *cl = tl_cluster_start(3, 1, 1000);
    ASSERT_EQ_INT(cl->n, 6);
    int m[TL_CLUSTER_MAX_NODES];
    ASSERT_EQ_INT(tl_cluster_masters(cl, m), 3);
    ASSERT_STR_CONTAINS(tl_cluster_seeds(cl), tl_printf("127.0.0.1:%d", cl->node[5]->port));
    /* 50 keys of one tag on its master, then written with WAIT so the replica has them */
    const char *tag = "{sf}";
    int slot = tl_cluster_key_slot(cl, tag);
    int src = tl_cluster_master_of_key(cl, tag);
    redisContext *c = tl_cluster_conn(cl, src);
    for (int i = 0; i < 50; i++) tl_redis_cmd(c, "SET %s:%d v%d", tag, i, i);
    ASSERT_EQ_INT(tl_redis_int(c, "WAIT 1 5000"), 1);
    ASSERT_EQ_INT(tl_cluster_dbsize(cl, src), 50);
    int dst = m[0] == src ? m[1] : m[0];
    /* half-migrated: 20 keys moved; the source sends a client on with ASK for those */
    tl_cluster_move_slot_begin(cl, slot, dst, 20);
    ASSERT_EQ_INT(tl_cluster_dbsize(cl, dst), 20);
    redisReply *k = tl_redis_cmd(tl_cluster_conn(cl, dst), "CLUSTER GETKEYSINSLOT %d 1", slot);
    ASSERT_EQ_INT(k->elements, 1);
    redisReply *ask = tl_redis_cmd_allow_error(c, "GET %s", k->element[0]->str);
    ASSERT_EQ_INT(ask->type, REDIS_REPLY_ERROR);
    ASSERT_STR_CONTAINS(ask->str, tl_printf("ASK %d 127.0.0.1:%d", slot, cl->node[dst]->port));
    tl_cluster_move_slot_finish(cl, slot, dst);
    ASSERT_EQ_INT(tl_cluster_master_of_slot(cl, slot), dst);
    ASSERT_EQ_INT(tl_cluster_dbsize(cl, dst), 50);
    ASSERT_EQ_INT(tl_cluster_dbsize(cl, src), 0);
    redisReply *mv = tl_redis_cmd_allow_error(c, "GET %s:7", tag);
    ASSERT_STR_CONTAINS(mv->str, tl_printf("MOVED %d 127.0.0.1:%d", slot, cl->node[dst]->port));
    ASSERT_EQ_STR(tl_redis_cmd(tl_cluster_conn(cl, dst), "GET %s:7", tag)->str, "v7");
    /* kill -9 of that master: its replica takes the slot over with every key */
    ASSERT_EQ_INT(tl_redis_int(tl_cluster_conn(cl, dst), "WAIT 1 5000"), 1);
    int now = tl_cluster_kill_master(cl, dst);
    ASSERT_NE_INT(now, dst);
    ASSERT_TRUE(cl->dead[dst]);
    ASSERT_EQ_INT(tl_cluster_master_of_slot(cl, slot), now);
    ASSERT_EQ_STR(tl_redis_cmd(tl_cluster_conn_of_key(cl, tag), "GET %s:49", tag)->str, "v49");
    ASSERT_EQ_INT(tl_cluster_dbsize(cl, now), 50);
    ASSERT_EQ_INT(tl_cluster_masters(cl, m), 3);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(assertions_and_json_paths),
        TL_CASE(tmpdir_is_fresh_and_private),
        TL_CASE(free_port_is_loopback_and_nonzero),
        TL_CASE(wait_for_polls_until_true_or_deadline),
        TL_CASE(wait_until_reevaluates_the_expression),
        TL_CASE(shared_helpers_give_known_values),
        TL_CASE(tcp_sockets_counts_states_and_unread_bytes),
        TL_CASE(spawn_stop_and_run_commands),
        TL_CASE(redis_starts_empty_on_loopback),
        TL_CASE(redis_restart_keeps_data_with_aof),
        TL_CASE(redis_without_aof_restarts_empty),
        TL_CASE(redis_server_switch_starts_valkey_by_name),
        TL_CASE(sentinels_promote_the_replica_after_kill9),
        TL_CASE(redis_with_requirepass),
        TL_CASE(redis_with_an_acl_user),
        TL_CASE(cluster_moves_a_slot_and_fails_over),
        TL_CASE(receiver_records_a_post),
        TL_CASE(receiver_answers_from_its_script),
        TL_CASE(receiver_delay_holds_the_answer_and_stop_ends_it),
        TL_CASE(receiver_stop_refuses_and_restart_listens_again),
        TL_CASE(receiver_keeps_connections_alive),
        TL_CASE(receiver_refuses_chunked_and_garbage),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
