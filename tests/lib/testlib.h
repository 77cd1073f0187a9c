/* testlib.h: fleet's small test harness (library target fleet_testlib).
 *
 * A test executable lists its cases explicitly and hands them to tl_main():
 *
 *     TL_TEST(echo_roundtrip) {
 *         tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
 *         const char *id = tl_job_submit(f, "echo", "{\"a\":1}");
 *         json_t *job = tl_job_wait_status(f, id, "succeeded", 20000);
 *         ASSERT_EQ_STR(tl_jstr(job, "model"), "echo");
 *     }
 *
 *     int main(int argc, char **argv) {
 *         static const tl_case cases[] = {TL_CASE(echo_roundtrip)};
 *         return tl_main(argc, argv, cases, TL_COUNT(cases));
 *     }
 *
 * A case function that is not listed is an unused static function, which -Werror turns
 * into a build error, so a case cannot be forgotten.
 *
 * Each case runs in its own forked process and process group, with its own temporary
 * directory (tl_tmpdir()). Everything a case starts (redis-server, fleet-gateway,
 * fleet-worker) is stopped when the case ends, passes or fails; those processes also die
 * with the test (PR_SET_PDEATHSIG) if it is killed. A failed assertion prints both sides
 * with file:line, the last lines of every process log of the case, keeps the temporary
 * directory for inspection, and ends the case. The executable prints one line per case
 * and then "N passed, M failed"; it exits 0 when nothing failed, 77 when every case was
 * skipped (ctest SKIP_RETURN_CODE), 1 otherwise.
 *
 *   ./it_lifecycle_test                 run every case
 *   ./it_lifecycle_test NAME...         run only the cases whose name contains NAME
 *   TL_NOFORK=1 ./it_lifecycle_test X   run in-process (for gdb); ends at a failure or skip
 *   TL_KEEP=1                           keep temporary directories of passing cases too
 *   TL_CASE_TIMEOUT_S=N                 per-case limit (default 60 s)
 *   FLEET_TEST_BIN_DIR=DIR              find fleet binaries there instead of TL_BIN_DIR
 *
 * Memory: everything the harness returns (responses, parsed JSON, Redis replies, strings
 * from tl_printf) is owned by the harness and freed when the case ends; tests never free.
 * Waiting is always tl_wait_for() with a deadline, never a bare sleep.
 */
#ifndef TL_TESTLIB_H
#define TL_TESTLIB_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------ cases and runner ------ */

typedef struct tl_case {
    const char *name;
    void (*fn)(void);
} tl_case;

#define TL_TEST(name) static void name(void)
#define TL_CASE(name) \
    { #name, name }
#define TL_COUNT(a) (sizeof(a) / sizeof((a)[0]))

int tl_main(int argc, char **argv, const tl_case *cases, size_t ncases);

/* The current case's temporary directory (created empty for each case). */
const char *tl_tmpdir(void);
/* The current case's name. */
const char *tl_case_name(void);

/* Registers fn(arg) to run when the case ends (last registered runs first). */
void tl_defer(void (*fn)(void *), void *arg);

/* n zeroed bytes owned by the harness. */
void *tl_alloc(size_t n);
/* printf into a string owned by the harness. */
char *tl_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a progress note (indented, prefixed with the case name). */
void tl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ends the case as failed / skipped. Never return. */
void tl_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void tl_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define FAILF(...) tl_fail(__FILE__, __LINE__, __VA_ARGS__)
#define TL_SKIP(...) tl_skip(__VA_ARGS__)

/* ------------------------------------------------------------ assertions ------------ */

/* Every assertion evaluates each argument exactly once and prints both sides. */
#define ASSERT_TRUE(c)                                   \
    do {                                                 \
        if (!(c)) FAILF("ASSERT_TRUE(%s) is false", #c); \
    } while (0)
#define ASSERT_FALSE(c)                               \
    do {                                              \
        if (c) FAILF("ASSERT_FALSE(%s) is true", #c); \
    } while (0)

#define TL_CMP_INT(a, op, b)                                                                \
    do {                                                                                    \
        long long tl_a = (long long)(a), tl_b = (long long)(b);                             \
        if (!(tl_a op tl_b))                                                                \
            FAILF("ASSERT(%s %s %s): %lld %s %lld is false", #a, #op, #b, tl_a, #op, tl_b); \
    } while (0)
#define ASSERT_EQ_INT(a, b) TL_CMP_INT(a, ==, b)
#define ASSERT_NE_INT(a, b) TL_CMP_INT(a, !=, b)
#define ASSERT_LT_INT(a, b) TL_CMP_INT(a, <, b)
#define ASSERT_LE_INT(a, b) TL_CMP_INT(a, <=, b)
#define ASSERT_GT_INT(a, b) TL_CMP_INT(a, >, b)
#define ASSERT_GE_INT(a, b) TL_CMP_INT(a, >=, b)

void tl_assert_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                   const char *b, bool want_equal);
void tl_assert_contains(const char *file, int line, const char *ehay, const char *eneedle,
                        const char *hay, const char *needle, bool ci);
#define ASSERT_EQ_STR(a, b) tl_assert_str(__FILE__, __LINE__, #a, #b, (a), (b), true)
#define ASSERT_NE_STR(a, b) tl_assert_str(__FILE__, __LINE__, #a, #b, (a), (b), false)
/* hay contains needle (hay NULL fails). _CI: ignoring ASCII case. */
#define ASSERT_STR_CONTAINS(hay, needle) \
    tl_assert_contains(__FILE__, __LINE__, #hay, #needle, (hay), (needle), false)
#define ASSERT_STR_CONTAINS_CI(hay, needle) \
    tl_assert_contains(__FILE__, __LINE__, #hay, #needle, (hay), (needle), true)

#define ASSERT_NULL(p)                                               \
    do {                                                             \
        const void *tl_p = (const void *)(p);                        \
        if (tl_p != NULL) FAILF("ASSERT_NULL(%s): is %p", #p, tl_p); \
    } while (0)
#define ASSERT_NOT_NULL(p)                                                        \
    do {                                                                          \
        if ((const void *)(p) == NULL) FAILF("ASSERT_NOT_NULL(%s): is NULL", #p); \
    } while (0)

/* JSON equality by value (json_equal); prints both documents. */
void tl_assert_json(const char *file, int line, const char *ea, const char *eb, const json_t *a,
                    const json_t *b);
#define ASSERT_EQ_JSON(a, b) tl_assert_json(__FILE__, __LINE__, #a, #b, (a), (b))

/* ------------------------------------------------------------ waiting --------------- */

/* Polls cond(arg) (first at once, then every few ms) until it returns true or deadline_ms
 * pass. Returns whether it became true. */
bool tl_wait_for(bool (*cond)(void *arg), void *arg, int deadline_ms);
#define ASSERT_WAIT_FOR(cond, arg, deadline_ms)                                           \
    do {                                                                                  \
        if (!tl_wait_for((cond), (arg), (deadline_ms)))                                   \
            FAILF("%s(%s) did not become true within %d ms", #cond, #arg, (deadline_ms)); \
    } while (0)
/* Milliseconds on the monotonic clock (for deadlines, never for assertions). */
int64_t tl_now_ms(void);

/* The deadline the integration tests give a job or a condition to come about. */
#define TL_WAIT_MS 30000

/* Re-evaluates the expression expr (first at once, then every 5 ms, backing off to 50 ms)
 * until it is true or timeout_ms pass; its value is whether it became true. expr may call
 * the harness and assertions; it is evaluated once more after the deadline, so a
 * condition that came true while the case slept is still seen. (A GNU statement
 * expression: gcc and clang accept it under -std=c11.) */
#define TL_WAIT_UNTIL(expr, timeout_ms)                               \
    __extension__({                                                   \
        int64_t tl_end = tl_now_ms() + (timeout_ms);                  \
        int tl_step = 5;                                              \
        bool tl_ok;                                                   \
        while (!(tl_ok = (expr)) && tl_wait_step(tl_end, &tl_step)) { \
        }                                                             \
        tl_ok;                                                        \
    })
/* TL_WAIT_UNTIL, failing the case with the expression's text when it stays false. */
#define ASSERT_EVENTUALLY(expr, timeout_ms)                                       \
    do {                                                                          \
        int tl_ms = (timeout_ms);                                                 \
        if (!TL_WAIT_UNTIL((expr), tl_ms))                                        \
            FAILF("ASSERT_EVENTUALLY(%s) still false after %d ms", #expr, tl_ms); \
    } while (0)
/* For TL_WAIT_UNTIL: false once end has passed, else sleeps *step ms (doubling it up to
 * 50) and returns true. */
bool tl_wait_step(int64_t end, int *step);

/* The xorshift64* generator: the next number from *state (which must not be 0). The same
 * seed gives the same sequence, so a failing seed can be replayed. */
uint64_t tl_rand64(uint64_t *state);

/* The lowercase hex SHA-256 of s (harness-owned): the name an API key's record has in
 * Redis ({prefix}:apikey:<hex>, as fleetctl writes it). */
const char *tl_sha256_hex(const char *s);

/* ------------------------------------------------------------ files ----------------- */

/* Reads a whole file into a harness-owned NUL-terminated string; NULL if unreadable. */
char *tl_read_file(const char *path, size_t *len);
/* Writes the last n lines of a file to stdout, each indented. */
void tl_print_tail(const char *path, int n);
/* Where fleet binaries live: $FLEET_TEST_BIN_DIR or the build's TL_BIN_DIR. */
const char *tl_bin_dir(void);
/* The full path of a fleet binary and whether it exists and is executable. */
const char *tl_bin_path(const char *name);
bool tl_bin_exists(const char *name);

/* ------------------------------------------------------------ processes ------------- */

/* A loopback TCP port that was free a moment ago (bind 127.0.0.1:0, read, close). */
int tl_free_port(void);

typedef struct tl_proc {
    char name[64];
    pid_t pid;
    char log_path[4096]; /* stdout and stderr, unless split below */
    char err_path[4096]; /* stderr when spawned with split output, else "" */
    bool reaped;
    int status;   /* waitpid status once reaped */
    bool checked; /* a fleet binary: a crash or sanitizer report fails the case */
    bool stopped_by_us;
} tl_proc;

typedef struct tl_spawn_opts {
    const char *name;        /* for messages and log file names; unique within a case */
    const char *path;        /* executable */
    const char *const *argv; /* NULL-terminated, argv[0] included */
    const char *const *env;  /* NULL-terminated "NAME=value" overrides of the environment */
    bool split_stderr;       /* stdout to <name>.out, stderr to <name>.err */
    bool checked;            /* see tl_proc.checked */
} tl_spawn_opts;

/* fork/execve with the case's environment plus overrides; output goes to
 * <tmpdir>/<name>.log. The process is stopped when the case ends. Fails the case if it
 * cannot be started. */
tl_proc *tl_spawn(const tl_spawn_opts *o);
/* True while the process runs (reaps it if it has exited). */
bool tl_proc_alive(tl_proc *p);
/* Waits up to deadline_ms for the process to exit by itself. Returns true if it did
 * (p->status is then valid). */
bool tl_proc_wait(tl_proc *p, int deadline_ms);
/* SIGTERM, then SIGKILL after grace_ms. Returns the waitpid status. */
int tl_proc_stop(tl_proc *p, int grace_ms);
/* SIGKILL at once (a crash, as kill -9 does). */
void tl_proc_kill9(tl_proc *p);
/* The process is meant to die of SIGKILL by itself (a test input that crashes it): that
 * death does not fail the case. */
void tl_proc_expect_kill9(tl_proc *p);
/* "exited with code 3", "killed by signal 6 (Aborted)", "running". Harness-owned. */
const char *tl_proc_describe(tl_proc *p);

typedef struct tl_cmd_result {
    int status;    /* waitpid status */
    int exit_code; /* -1 if killed by a signal */
    char *out;     /* stdout, harness-owned */
    char *err;     /* stderr, harness-owned */
} tl_cmd_result;

/* Runs a command to completion (killing it after deadline_ms, which fails the case). */
tl_cmd_result tl_run_cmd(const char *name, const char *path, const char *const *argv,
                         const char *const *env, int deadline_ms);

/* TL_ARGS("a", "b") is a NULL-terminated argument list. */
#define TL_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* Runs fleetctl (from tl_bin_dir) with the options pre, then args (NULL-terminated; pre
 * may be NULL), logging the command line; at most 30 s. Fails the case when fleetctl
 * is not built; the exit code is the caller's to judge (tl_expect_exit). */
tl_cmd_result tl_fleetctl(const char *const *pre, const char *const *args);
/* Fails the case, printing the command's stdout and stderr, unless it exited with code. */
void tl_expect_exit(const tl_cmd_result *r, int code);

/* ------------------------------------------------------------ redis ----------------- */

typedef struct tl_redis {
    tl_proc *proc;
    int port;
    char dir[4096];
    char url[512]; /* redis://127.0.0.1:<port>, or redis://<user>:<password>@127.0.0.1:<port>
                    * when started with a password (user "default" when none was given) */
    bool appendonly;
    int seq;                       /* <n> of <tmpdir>/redis-<n> */
    const char *const *extra_args; /* its own server arguments, used again at a restart */
    char user[64];                 /* what the harness authenticates as ("": default) */
    char password[128];            /* "": no AUTH */
} tl_redis;

typedef struct tl_redis_opts {
    bool appendonly; /* --appendonly yes with appendfsync everysec (the shipped config),
                      * else no persistence */
    /* More server arguments (NULL-terminated), kept for restarts and given to its
     * replicas: e.g. TL_ARGS("--requirepass", "pw") or TL_ARGS("--aclfile", path). */
    const char *const *extra_args;
    /* The credentials the harness's own connections (and url) use: AUTH [user] password.
     * NULL password: no AUTH. They must be URL-safe (they go into url verbatim). */
    const char *user;
    const char *password;
} tl_redis_opts;

/* Starts a throwaway server on a free loopback port in <tmpdir>/redis-<n>, waits until it
 * answers, checks that it is our process and that its database is empty (refuses to
 * continue otherwise). Stopped when the case ends. The program is $FLEET_TEST_REDIS_SERVER
 * (a name looked up on PATH, or a path; default redis-server): valkey-server runs the
 * same tests on Valkey. */
tl_redis *tl_redis_start(const tl_redis_opts *o);
/* Stops it (SIGTERM: a clean shutdown that writes the AOF) / kill -9s it. */
void tl_redis_stop(tl_redis *r);
void tl_redis_kill9(tl_redis *r);
/* Starts it again on the same port and directory (data survives only with AOF). */
void tl_redis_restart(tl_redis *r);
/* Starts it again (stopping it first) on the same port and directory with extra
 * redis-server arguments (NULL-terminated), and returns as soon as it accepts
 * connections, while it may still be loading its dataset (PING answered -LOADING). A
 * dump.rdb written there by SAVE is loaded (the harness runs Redis without AOF unless
 * asked); "--key-load-delay", "100" makes that take about 0.15 ms per key. */
void tl_redis_restart_args(tl_redis *r, const char *const *extra_args);
/* Writes `keys` small keys through c, SAVEs, and restarts r so that loading them takes
 * seconds (about 0.15 ms a key); returns while it is still loading. c is closed by the
 * restart: connect again. */
void tl_redis_restart_loading(tl_redis *r, redisContext *c, int keys);

/* A sync hiredis connection, closed when the case ends. Fails the case if it cannot
 * connect. */
redisContext *tl_redis_connect(tl_redis *r);
/* Runs a command; fails the case on a connection error or an error reply (unless
 * allow_error). The reply is freed when the case ends. */
redisReply *tl_redis_cmd(redisContext *c, const char *fmt, ...);
redisReply *tl_redis_cmd_allow_error(redisContext *c, const char *fmt, ...);
redisReply *tl_redis_cmdargv(redisContext *c, int argc, const char **argv);
long long tl_redis_int(redisContext *c, const char *fmt, ...);

typedef struct tl_strlist {
    size_t n;
    char **v; /* harness-owned */
} tl_strlist;

/* KEYS <pattern>, sorted. */
tl_strlist tl_redis_keys(redisContext *c, const char *pattern);
bool tl_strlist_contains(const tl_strlist *l, const char *s);

/* ------------------------------------------------------------ replicas and Sentinel - */

/* r's URL with other credentials (NULL or "" password: none; NULL user: "default"), e.g.
 * for one of the users of an --aclfile. Harness-owned. */
const char *tl_redis_url_as(const tl_redis *r, const char *user, const char *password);
/* The first element of ROLE ("master", "slave", "sentinel"), harness-owned; NULL when the
 * server does not answer. */
const char *tl_redis_role(const tl_redis *r);

/* Starts a replica of primary: the same server program and arguments (its password or ACL
 * file), its own directory and free port, `--replicaof 127.0.0.1 <primary port>` (with
 * --masterauth/--masteruser from the primary's credentials); waits until its INFO
 * replication says master_link_status:up. Stopped when the case ends. */
tl_redis *tl_redis_start_replica(tl_redis *primary);

#define TL_MAX_SENTINELS 5

typedef struct tl_sentinels {
    int n;
    int quorum;      /* 2 (1 for a single sentinel) */
    char master[64]; /* the monitored name (FLEET_REDIS_SENTINEL_MASTER) */
    int ports[TL_MAX_SENTINELS];
    tl_proc *procs[TL_MAX_SENTINELS];
    char addrs[TL_MAX_SENTINELS * 24]; /* "127.0.0.1:p1,127.0.0.1:p2,..." */
    char user[64], password[128];      /* the primary's credentials (auth-user, auth-pass) */
} tl_sentinels;

/* Starts n sentinels (`<server> sentinel.conf --sentinel`, each with its own directory
 * <tmpdir>/sentinel-<i> and free port) that monitor primary under the name master with a
 * quorum of 2, down-after-milliseconds 1000 and failover-timeout 5000; returns once every
 * sentinel knows the n-1 others and the primary's replicas (start those first), so that
 * a failover can happen from then on. Stopped when the case ends. */
tl_sentinels *tl_sentinels_start(tl_redis *primary, const char *master, int n);
/* The FLEET_REDIS_SENTINELS value: "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3". */
const char *tl_sentinels_addrs(const tl_sentinels *s);
/* The primary's port as the first sentinel that answers names it (SENTINEL
 * get-master-addr-by-name); 0 when none answers. */
int tl_sentinels_primary_port(const tl_sentinels *s);
/* Waits until every running sentinel names the same primary other than old_port and that
 * server answers ROLE master; returns its port. Fails the case after deadline_ms, saying
 * what each sentinel names. */
int tl_sentinels_wait_failover(const tl_sentinels *s, int old_port, int deadline_ms);

/* ------------------------------------------------------------ Redis Cluster --------- */

#define TL_CLUSTER_MAX_NODES 16
#define TL_CLUSTER_SLOTS 16384

/* A Redis Cluster on loopback (tl_cluster.c). Nodes are numbered 0..n-1 in the order they
 * were started; `redis-cli --cluster create` makes the first `masters` of them masters
 * and gives each its replicas. Roles change when a master is killed: ask
 * tl_cluster_masters / tl_cluster_master_of_key, never assume. Nodes have no password. */
typedef struct tl_cluster {
    int n, nmasters;
    tl_redis *node[TL_CLUSTER_MAX_NODES];
    redisContext *c[TL_CLUSTER_MAX_NODES]; /* sync, per node (use tl_cluster_conn) */
    char id[TL_CLUSTER_MAX_NODES][48];     /* CLUSTER MYID */
    bool dead[TL_CLUSTER_MAX_NODES];       /* killed by tl_cluster_kill_master */
    char seeds[TL_CLUSTER_MAX_NODES * 24]; /* "127.0.0.1:p1,127.0.0.1:p2,..." */
    int moving_slot, moving_from;          /* a slot left half-migrated, or -1 */
} tl_cluster;

/* Starts masters x (1 + replicas_per_master) nodes (--cluster-enabled yes, the given
 * --cluster-node-timeout, 0: 3000 ms; --cluster-replica-validity-factor 0), joins them
 * with `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`, and returns
 * once every node says cluster_state:ok, knows every other node, and every replica's link
 * is up and in sync. At least 3 masters. Stopped when the case ends. */
tl_cluster *tl_cluster_start(int masters, int replicas_per_master, int node_timeout_ms);
/* The FLEET_REDIS_CLUSTER value: every node, "127.0.0.1:p1,127.0.0.1:p2,...". */
const char *tl_cluster_seeds(const tl_cluster *cl);
/* Node i's sync connection; fails the case when i was killed. */
redisContext *tl_cluster_conn(tl_cluster *cl, int i);
/* CLUSTER KEYSLOT of key; the node index of the master that serves a slot or key now (as
 * the first live node that names a live master says); that master's connection. */
int tl_cluster_key_slot(tl_cluster *cl, const char *key);
int tl_cluster_master_of_slot(tl_cluster *cl, int slot);
int tl_cluster_master_of_key(tl_cluster *cl, const char *key);
redisContext *tl_cluster_conn_of_key(tl_cluster *cl, const char *key);
/* The live nodes that answer ROLE master, written to out (TL_CLUSTER_MAX_NODES room);
 * returns how many. */
int tl_cluster_masters(tl_cluster *cl, int *out);
/* The node index of the node listening on port, or -1. */
int tl_cluster_node_of_port(const tl_cluster *cl, int port);
/* DBSIZE of node i. */
long long tl_cluster_dbsize(tl_cluster *cl, int i);
/* kill -9 of master i; waits until every live node names one of its replicas as the
 * master of its slots, that replica answers ROLE master and the cluster is ok again.
 * Returns the new master's node index. */
int tl_cluster_kill_master(tl_cluster *cl, int i);
/* Moves slot to master `to`, as `redis-cli --cluster reshard` does: IMPORTING on `to`,
 * MIGRATING on the owner, MIGRATE of its keys in batches of 100, then SETSLOT NODE on
 * `to`, the old owner and every other master; returns once the cluster is ok.
 * _begin stops after the first `keys` keys (-1: all of them, 0: none) and leaves the slot
 * half-migrated: the old owner answers ASK for keys it no longer has, until _finish. */
void tl_cluster_move_slot(tl_cluster *cl, int slot, int to);
void tl_cluster_move_slot_begin(tl_cluster *cl, int slot, int to, long keys);
void tl_cluster_move_slot_finish(tl_cluster *cl, int slot, int to);

/* ------------------------------------------------------------ HTTP ------------------ */

typedef struct tl_header {
    char *name;
    char *value;
} tl_header;

typedef struct tl_resp {
    long status; /* 0 never: a transport error fails the case */
    char *body;  /* NUL-terminated */
    size_t body_len;
    tl_header *headers; /* of the final response */
    size_t nheaders;
    json_t *json;             /* body parsed as JSON when it parses, else NULL */
    const char *content_type; /* "" when absent */
} tl_resp;

typedef struct tl_req {
    const char *method;       /* default "GET", or "POST" when there is a body */
    const char *url;          /* absolute */
    const char *body;         /* NULL: no body */
    size_t body_len;          /* 0: strlen(body) */
    const char *content_type; /* default "application/json" when there is a body;
                                  "" sends no Content-Type at all */
    const char *headers[16];  /* extra "Name: value" lines, NULL-terminated */
    int timeout_ms;           /* default 30000 */
} tl_req;

/* One request on a fresh connection (closed afterwards). Fails the case on a transport
 * error, naming any fleet process of the case that has died. */
tl_resp *tl_http(const tl_req *req);
/* Like tl_http, but returns NULL on a transport error and writes it to err. */
tl_resp *tl_http_try(const tl_req *req, char *err, size_t errlen);
/* Percent-encodes s for a URL query value (harness-owned). */
const char *tl_urlencode(const char *s);
/* A response header by name (case-insensitive); NULL when absent. */
const char *tl_resp_header(const tl_resp *r, const char *name);

/* Asserts the status, printing the body when it differs. */
void tl_assert_status(const char *file, int line, const tl_resp *r, long want, const char *what);
#define ASSERT_HTTP_STATUS(resp, want) tl_assert_status(__FILE__, __LINE__, (resp), (want), #resp)
/* Asserts an RFC 9457 problem: the status, Content-Type application/problem+json, and a
 * body with type, title, status (equal), detail (non-empty) and request_id (equal to the
 * X-Request-ID header). Returns the detail. */
const char *tl_assert_problem(const char *file, int line, const tl_resp *r, long want,
                              const char *what);
#define ASSERT_PROBLEM(resp, want) tl_assert_problem(__FILE__, __LINE__, (resp), (want), #resp)

/* ------------------------------------------------------------ raw TCP --------------- */

/* Connects to 127.0.0.1:port and writes all of data before returning, so that the bytes
 * are in the server's receive queue; reads time out after recv_ms. The socket is closed
 * when the case ends. Fails the case when it cannot connect or write. */
int tl_tcp_send(int port, const char *data, int recv_ms);
/* Reads fd until EOF, an error or the read timeout; harness-owned, NUL-terminated. */
char *tl_tcp_read_all(int fd);

/* TCP states as /proc/net/tcp numbers them. */
enum { TL_TCP_ESTABLISHED = 0x01, TL_TCP_LISTEN = 0x0A, TL_TCP_CLOSE_WAIT = 0x08 };
/* How many IPv4 TCP sockets of this machine have local port port and state state (0: any
 * state); *unread (when not NULL) gets the bytes in their receive queues that their
 * process has not read yet. Read from /proc/net/tcp: the server's side of a loopback
 * connection tells whether the server has read what was sent to it. */
int tl_tcp_sockets(int port, int state, long *unread);

/* ------------------------------------------------------------ JSON ------------------ */

/* Parses text (fails the case on a syntax error); freed when the case ends. */
json_t *tl_json(const char *text);
/* Hands a reference to the harness (json_decref at case end); returns j. */
json_t *tl_json_own(json_t *j);
/* Compact text of j, harness-owned ("(null)" for NULL). */
const char *tl_json_text(const json_t *j);
/* Follows a dotted path of object keys ("progress.done"); NULL when absent. */
json_t *tl_jget(const json_t *j, const char *path);
/* The string at path, or NULL when absent or not a string. */
const char *tl_jstr(const json_t *j, const char *path);
/* The integer at path; fails the case when absent or not an integer. */
long long tl_jint(const json_t *j, const char *path);
/* True when path holds an integer. */
bool tl_jis_int(const json_t *j, const char *path);

/* ------------------------------------------------------------ fleet ----------------- */

#define TL_MAX_WORKERS 64 /* a case may start (and kill) this many workers in all */

typedef struct tl_fleet_opts {
    const char *workers[TL_MAX_WORKERS]; /* models of the workers to start, e.g. {"echo"} */
    const char *gateway_env[16];         /* extra "NAME=value" for the gateway */
    const char *worker_env[16];          /* extra "NAME=value" for every worker */
    bool appendonly;                     /* Redis with AOF */
    const char *prefix;                  /* default: a fresh "t<random>" */
    /* the shard table's text ("0:-:active 1:1:active"), SET at {prefix}:shards before
     * the gateway starts; NULL: none */
    const char *shards;
    /* cluster_masters > 0: a Redis Cluster of that many masters (>= 3) with
     * cluster_replicas each (tl_cluster_start; node timeout cluster_node_timeout_ms, 0:
     * 3000) instead of one Redis; the gateway, workers and tl_fleet_ctl_opts get
     * FLEET_REDIS_CLUSTER (every node) beside FLEET_REDIS_URL (the control tag's master). */
    int cluster_masters, cluster_replicas, cluster_node_timeout_ms;
} tl_fleet_opts;

typedef struct tl_fleet {
    tl_redis *redis;
    tl_proc *gateway;
    tl_proc *workers[TL_MAX_WORKERS];
    int nworkers;
    int gateway_port;
    char url[64]; /* http://127.0.0.1:<port> */
    char prefix[40];
    tl_fleet_opts opts;
    /* a sync connection to the fleet's Redis (on a cluster: to the master of the control
     * tag "{prefix}" when the fleet started) */
    redisContext *rc;
    tl_cluster *cluster; /* NULL unless opts.cluster_masters */
} tl_fleet;

/* Starts Redis, the gateway (waiting until GET /readyz answers 200) and the workers.
 * Fails the case otherwise, also when a binary has not been built. */
tl_fleet *tl_fleet_start(const tl_fleet_opts *o);
/* Starts (another) gateway on the fleet's Redis: FLEET_REDIS_URL, FLEET_PREFIX,
 * FLEET_LISTEN=127.0.0.1:<free port>, FLEET_AUTH=off (opts.gateway_env entries of the same
 * name replace these), plus opts.gateway_env; waits for /readyz. */
void tl_fleet_start_gateway(tl_fleet *f);
/* Starts `fleet-worker --model <model>` with FLEET_REDIS_URL, FLEET_PREFIX,
 * FLEET_MAX_DELAY_MS=0, FLEET_DRAIN_TIMEOUT=2, each replaced by an entry of opts.worker_env with
 * the same name, plus the rest of opts.worker_env. Returns it. */
tl_proc *tl_fleet_add_worker(tl_fleet *f, const char *model);

/* A connection that serves key: f->rc on one Redis, the key's master on a cluster. */
redisContext *tl_fleet_conn_of_key(tl_fleet *f, const char *key);
/* The hash tags of the shards in the fleet's shard table ({prefix}:shards), in its order:
 * "{prefix}" for shard 0, "{prefix:N}" for shard k with tag N; just "{prefix}" without a
 * table. Returns how many (harness-owned strings, at most 32). */
int tl_fleet_shard_tags(tl_fleet *f, const char **tags);
/* fleetctl's options that reach this fleet's Redis: --redis-url, --prefix and, on a
 * cluster, --redis-cluster (NULL-terminated, harness-owned; the `pre` of tl_fleetctl). */
const char *const *tl_fleet_ctl_opts(tl_fleet *f);

/* Requests against the fleet's gateway. path starts with "/". */
tl_resp *tl_get(tl_fleet *f, const char *path);
tl_resp *tl_post(tl_fleet *f, const char *path, const char *json_body);
tl_resp *tl_delete(tl_fleet *f, const char *path);
/* Any request; req->url is ignored and built from path. */
tl_resp *tl_request(tl_fleet *f, const char *path, tl_req req);

/* POST /v1/jobs {"model": model, "input": <input_json>}; asserts 202 and returns the id. */
const char *tl_job_submit(tl_fleet *f, const char *model, const char *input_json);
/* GET /v1/jobs/{id}; asserts 200 and returns the job object. */
json_t *tl_job_get(tl_fleet *f, const char *id);
/* Polls the job until its status is want; fails the case if it reaches another final
 * status, or not want within deadline_ms (printing the last job object). */
json_t *tl_job_wait_status(tl_fleet *f, const char *id, const char *want, int deadline_ms);
/* True for succeeded, failed, cancelled. */
bool tl_status_is_final(const char *s);
/* A model's counter as stored in Redis ({prefix}:stats field "<model>:<counter>", e.g.
 * "sleep", "succeeded"), summed over the shards of the table (tl_fleet_shard_tags); 0
 * when absent. */
long long tl_stat(tl_fleet *f, const char *model, const char *counter);
/* Writes a tenant as `fleetctl tenant add` lays it out (control keys, docs/redis.md): its
 * name in the tenants set, its settings hash ("field value field value ...", or "" for
 * none), and API key `key` (stored as its SHA-256) with role "tenant" or "admin". */
void tl_fleet_add_tenant(tl_fleet *f, const char *name, const char *key, const char *role,
                         const char *settings);

/* ------------------------------------------------------------ webhook receiver ------ */

/* A real HTTP/1.1 server on 127.0.0.1 (or [::1]), run by a background thread of the case
 * process, that records every request and answers from a script (tl_receiver.c):
 *
 *     tl_receiver *rx = tl_receiver_start(0);
 *     tl_receiver_respond(rx, 503, "Retry-After: 1", 0);   // first request: 503
 *     ... point a webhook at tl_receiver_url(rx, "/hook") ...
 *     ASSERT_TRUE(tl_receiver_wait_count(rx, 2, 10000));   // the retry: 200 "ok"
 *     ASSERT_EQ_STR(tl_receiver_get(rx, 1)->body, "{...}");
 *
 * It speaks keep-alive and Connection: close (and HTTP/1.0), reads Content-Length
 * bodies (up to 16 MiB; "Expect: 100-continue" is honoured), refuses chunked bodies with
 * 411 and malformed requests with 400; refused requests are not recorded and consume no
 * scripted answer. It is stopped when the case ends. All functions are called from the
 * test's thread; the recording is guarded by a mutex. */
typedef struct tl_receiver tl_receiver;

typedef struct tl_received {
    char *method;       /* "POST" */
    char *path;         /* the request target as sent ("/hook?x=1") */
    char *version;      /* "HTTP/1.1" */
    tl_header *headers; /* in arrival order, names as sent */
    size_t nheaders;
    char *body; /* NUL-terminated (body_len excludes the NUL) */
    size_t body_len;
    int64_t at_ms; /* tl_now_ms() when the request was complete */
    unsigned conn; /* connection number (1, 2, ...): equal for requests sent on one
                             connection; counts on across stop/restart */
    int status;    /* the status it was answered (or is about to be) */
} tl_received;

/* Listens on 127.0.0.1:port (0: a free port picked by the kernel). Fails the case when
 * the port cannot be bound. Stopped and freed when the case ends. */
tl_receiver *tl_receiver_start(int port);
/* The same on [::1] (IPv6 only), for deliveries to IPv6 addresses. */
tl_receiver *tl_receiver_start_ipv6(int port);
int tl_receiver_port(tl_receiver *r);
/* "http://127.0.0.1:<port><path>", or "http://[::1]:<port><path>" (harness-owned; path
 * NULL is ""). */
const char *tl_receiver_url(tl_receiver *r, const char *path);

/* Appends one answer to the script (FIFO): the next request without an answer of its own
 * gets status (200..599) with extra_header ("Name: value", several joined with "\r\n",
 * or NULL) after holding it delay_ms (0: at once). A held answer does not hold up other
 * connections, and stop ends it. The body is "ok" for a 2xx, "status <n>" otherwise
 * (none for 204/304). With an empty script the answer is 200 "ok" at once. */
void tl_receiver_respond(tl_receiver *r, int status, const char *extra_header, int delay_ms);

/* Closes the listener and every connection, held ones included: the port then refuses
 * connections. No-op when stopped. Recorded requests and the unused script stay. */
void tl_receiver_stop(tl_receiver *r);
/* Listens again on the same port (SO_REUSEADDR) after tl_receiver_stop. */
void tl_receiver_restart(tl_receiver *r);

/* Requests recorded so far (in the order they were complete). */
size_t tl_receiver_count(tl_receiver *r);
/* The i-th request (0-based); fails the case when i >= count. Valid until the case
 * ends; never changes. */
const tl_received *tl_receiver_get(tl_receiver *r, size_t i);
/* A header of a recorded request by name (case-insensitive, first one); NULL when
 * absent. */
const char *tl_received_header(const tl_received *q, const char *name);
/* Waits until at least n requests are recorded; false when deadline_ms pass first. */
bool tl_receiver_wait_count(tl_receiver *r, size_t n, int deadline_ms);

/* ------------------------------------------------------------ msgpack ---------------- */

/* A msgpack buffer to build test inputs with msgpack-c's packer (m->pk); freed when the
 * case ends. The bytes are m->sb.data, m->sb.size. */
typedef struct tl_mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} tl_mp;

tl_mp *tl_mp_new(void);
/* Packs a string. */
void tl_mp_str(tl_mp *m, const char *s);

#endif
