/* tl_core.c: the case runner, assertions, deferred cleanup, temporary directories.
 *
 * Process layout while a case runs:
 *
 *   test executable (runner) ── fork ──▶ case process (own process group, PDEATHSIG)
 *                                          ├── redis-server     (PDEATHSIG)
 *                                          ├── fleet-gateway    (PDEATHSIG)
 *                                          └── fleet-worker ... (PDEATHSIG)
 *
 * The case process stops its children when the case ends, on a failed assertion, on
 * SIGTERM/SIGINT/SIGHUP, and on its own time limit (SIGALRM). The runner sweeps the
 * process group afterwards, so nothing outlives the case even if it crashed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/sha.h>

#include "tl_internal.h"

/* ------------------------------------------------------------ state ----------------- */

static const tl_case *current_case;
static void finish_case(int result) __attribute__((noreturn));
static char case_dir[4096];
static bool no_fork;
static int case_timeout_s = 60;

typedef struct deferred {
    void (*fn)(void *);
    void *arg;
} deferred;

static deferred *defers;
static size_t ndefers, capdefers;

const char *tl_tmpdir(void) { return case_dir; }
const char *tl_case_name(void) { return current_case ? current_case->name : "(none)"; }

void *tl_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "testlib: out of memory\n");
        abort();
    }
    return p;
}

void *tl_xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "testlib: out of memory\n");
        abort();
    }
    return p;
}

char *tl_xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = tl_xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

void tl_defer(void (*fn)(void *), void *arg) {
    if (ndefers == capdefers) {
        capdefers = capdefers ? capdefers * 2 : 64;
        defers = tl_xrealloc(defers, capdefers * sizeof(*defers));
    }
    defers[ndefers].fn = fn;
    defers[ndefers].arg = arg;
    ndefers++;
}

static void run_defers(void) {
    while (ndefers > 0) {
        deferred d = defers[--ndefers];
        d.fn(d.arg);
    }
    free(defers);
    defers = NULL;
    capdefers = 0;
}

char *tl_vprintf_raw(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = tl_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

void *tl_alloc(size_t n) {
    void *p = tl_xmalloc(n);
    memset(p, 0, n ? n : 1);
    tl_defer(free, p);
    return p;
}

char *tl_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = tl_vprintf_raw(fmt, ap);
    va_end(ap);
    tl_defer(free, s);
    return s;
}

void tl_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    [%s] ", tl_case_name());
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

int64_t tl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool tl_wait_step(int64_t end, int *step) {
    if (tl_now_ms() >= end) return false;
    tl_sleep_ms(*step);
    if (*step < 50) *step *= 2;
    return true;
}

uint64_t tl_rand64(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

const char *tl_sha256_hex(const char *s) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, strlen(s), d);
    char *out = tl_alloc(2 * SHA256_DIGEST_LENGTH + 1);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
    return out;
}

bool tl_wait_for(bool (*cond)(void *arg), void *arg, int deadline_ms) {
    return TL_WAIT_UNTIL(cond(arg), deadline_ms);
}

/* ------------------------------------------------------------ files ----------------- */

char *tl_read_file_raw(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = tl_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = tl_xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

char *tl_read_file(const char *path, size_t *len) {
    char *s = tl_read_file_raw(path, len);
    if (s) tl_defer(free, s);
    return s;
}

/* Async-signal-safe: the last bytes of a file, from a line start, indented. */
void tl_print_tail_raw(const char *path, size_t max_bytes) {
    char buf[8192];
    if (max_bytes > sizeof(buf)) max_bytes = sizeof(buf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)max_bytes ? size - (off_t)max_bytes : 0;
    ssize_t n = 0;
    if (lseek(fd, from, SEEK_SET) >= 0) n = read(fd, buf, max_bytes);
    close(fd);
    if (n <= 0) {
        tl_write_str("      (empty)\n");
        return;
    }
    ssize_t i = 0;
    if (from > 0) { /* skip the partial first line */
        while (i < n && buf[i] != '\n') i++;
        if (i < n) i++;
    }
    bool at_line_start = true;
    for (; i < n; i++) {
        if (at_line_start) tl_write_str("      | ");
        ssize_t w = write(STDOUT_FILENO, &buf[i], 1);
        (void)w;
        at_line_start = buf[i] == '\n';
    }
    if (!at_line_start) tl_write_str("\n");
}

void tl_print_tail(const char *path, int n) {
    fflush(stdout);
    tl_print_tail_raw(path, n > 0 ? (size_t)n * 160 : 4096);
}

void tl_write_str(const char *s) {
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t w = write(STDOUT_FILENO, s, len);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        s += w;
        len -= (size_t)w;
    }
}

const char *tl_bin_dir(void) {
    const char *d = getenv("FLEET_TEST_BIN_DIR");
    if (d && *d) return d;
#ifdef TL_BIN_DIR
    return TL_BIN_DIR;
#else
    return "build/bin";
#endif
}

const char *tl_bin_path(const char *name) { return tl_printf("%s/%s", tl_bin_dir(), name); }

bool tl_bin_exists(const char *name) { return access(tl_bin_path(name), X_OK) == 0; }

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------------------ assertions ------------ */

static void print_str_side(const char *label, const char *s) {
    if (!s) {
        printf("      %s: NULL\n", label);
        return;
    }
    printf("      %s: \"", label);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') printf("\\n");
        else if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\x%02x", *p);
        else putchar(*p);
    }
    printf("\"\n");
}

void tl_assert_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                   const char *b, bool want_equal) {
    bool eq = (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
    if (eq == want_equal) return;
    printf("    FAIL %s:%d: %s(%s, %s)\n", file, line,
           want_equal ? "ASSERT_EQ_STR" : "ASSERT_NE_STR", ea, eb);
    print_str_side("left ", a);
    print_str_side("right", b);
    tl_fail_printed();
}

static const char *find_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return hay;
    return n == 0 ? hay : NULL;
}

void tl_assert_contains(const char *file, int line, const char *ehay, const char *eneedle,
                        const char *hay, const char *needle, bool ci) {
    if (hay && needle && (ci ? find_nocase(hay, needle) : strstr(hay, needle)) != NULL) return;
    printf("    FAIL %s:%d: ASSERT_STR_CONTAINS%s(%s, %s)\n", file, line, ci ? "_CI" : "", ehay,
           eneedle);
    print_str_side("haystack", hay);
    print_str_side("needle  ", needle);
    tl_fail_printed();
}

void tl_assert_json(const char *file, int line, const char *ea, const char *eb, const json_t *a,
                    const json_t *b) {
    if (a && b && json_equal(a, b)) return;
    printf("    FAIL %s:%d: ASSERT_EQ_JSON(%s, %s)\n", file, line, ea, eb);
    printf("      left : %s\n", tl_json_text(a));
    printf("      right: %s\n", tl_json_text(b));
    tl_fail_printed();
}

/* ------------------------------------------------------------ ending a case --------- */

enum { CASE_PASS = 0, CASE_FAIL = 1, CASE_SKIP = 77 };

static bool ending;

/* Stops every process of the case and checks the fleet ones. Returns false when one of
 * them crashed or printed a sanitizer report. */
static bool stop_and_check(bool print_tails) {
    bool ok = tl_procs_stop_all();
    if (!ok || print_tails) tl_procs_print_tails();
    return ok;
}

static void finish_case(int result) {
    fflush(stdout);
    if (ending) _exit(CASE_FAIL); /* a failure inside cleanup */
    ending = true;
    alarm(0);
    bool ok = stop_and_check(result == CASE_FAIL);
    if (!ok && result != CASE_FAIL) {
        printf("    FAIL: a fleet process crashed, did not stop, or reported a sanitizer "
               "error (see above)\n");
        result = CASE_FAIL;
    }
    if (result == CASE_FAIL) {
        printf("    temporary directory kept: %s\n", case_dir);
        fflush(stdout);
        if (no_fork) exit(CASE_FAIL);
        _exit(CASE_FAIL);
    }
    run_defers();
    if (!getenv("TL_KEEP") || !*getenv("TL_KEEP")) rm_rf(case_dir);
    else printf("    temporary directory kept: %s\n", case_dir);
    fflush(stdout);
    if (no_fork) {
        /* Not reached for a pass: run_case returns instead. */
        exit(result);
    }
    curl_global_cleanup();
    exit(result);
}

void tl_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    finish_case(CASE_FAIL);
}

void tl_fail_printed(void) { finish_case(CASE_FAIL); }

void tl_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (no_fork) {
        tl_procs_stop_all();
        run_defers();
        rm_rf(case_dir);
        exit(CASE_SKIP);
    }
    finish_case(CASE_SKIP);
}

static void on_signal(int sig) {
    if (sig == SIGALRM)
        tl_write_str("    FAIL: the case ran past its time limit (TL_CASE_TIMEOUT_S)\n");
    else tl_write_str("    FAIL: the case was interrupted by a signal\n");
    tl_procs_emergency(); /* SIGKILL children, print their log tails */
    if (sig == SIGALRM) _exit(CASE_FAIL);
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(CASE_FAIL);
}

/* A case that calls exit() itself (not through an assertion) still stops its
 * processes. */
static void at_exit(void) {
    if (ending || !current_case) return;
    ending = true;
    tl_procs_stop_all();
}

static void make_tmpdir(const char *exe) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(case_dir, sizeof(case_dir), "%s/fleet-%s-%s-XXXXXX", base, exe, current_case->name);
    if (!mkdtemp(case_dir)) {
        printf("    FAIL: mkdtemp(%s): %s\n", case_dir, strerror(errno));
        fflush(stdout);
        _exit(CASE_FAIL);
    }
}

/* Runs one case in the current process. Returns only for a pass in TL_NOFORK mode. */
static int run_case(const tl_case *c, const char *exe) {
    current_case = c;
    ending = false;
    make_tmpdir(exe);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    static bool at_exit_registered;
    if (!at_exit_registered) {
        atexit(at_exit);
        at_exit_registered = true;
    }
    alarm((unsigned)case_timeout_s);
    c->fn();
    if (!no_fork) finish_case(CASE_PASS);
    /* In-process mode: clean up and go on with the next case. */
    alarm(0);
    ending = true;
    bool ok = stop_and_check(false);
    if (!ok) {
        printf("    FAIL: a fleet process crashed or reported a sanitizer error\n");
        printf("    temporary directory kept: %s\n", case_dir);
        exit(CASE_FAIL);
    }
    tl_procs_forget(); /* the defers free the tl_proc structs */
    run_defers();
    rm_rf(case_dir);
    return CASE_PASS;
}

static bool case_selected(const char *name, int argc, char **argv) {
    if (argc <= 1) return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return true;
    return false;
}

int tl_main(int argc, char **argv, const tl_case *cases, size_t ncases) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *exe = strrchr(argv[0], '/');
    exe = exe ? exe + 1 : argv[0];
    const char *nf = getenv("TL_NOFORK");
    no_fork = nf && *nf && strcmp(nf, "0") != 0;
    const char *to = getenv("TL_CASE_TIMEOUT_S");
    if (to && atoi(to) > 0) case_timeout_s = atoi(to);
    curl_global_init(CURL_GLOBAL_ALL);

    int passed = 0, failed = 0, skipped = 0, selected = 0;
    printf("%s: %zu case(s)\n", exe, ncases);
    for (size_t i = 0; i < ncases; i++) {
        const tl_case *c = &cases[i];
        if (!case_selected(c->name, argc, argv)) continue;
        selected++;
        printf("  RUN  %s\n", c->name);
        fflush(stdout);
        fflush(stderr);
        int64_t t0 = tl_now_ms();
        int result;
        if (no_fork) {
            /* In-process (for a debugger): a failure or a skip exits from inside. */
            result = run_case(c, exe);
        } else {
            pid_t runner = getpid();
            pid_t pid = fork();
            if (pid < 0) {
                printf("  FAIL %s (fork: %s)\n", c->name, strerror(errno));
                failed++;
                continue;
            }
            if (pid == 0) {
                setpgid(0, 0);
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != runner) _exit(CASE_FAIL);
                run_case(c, exe);
                _exit(CASE_FAIL); /* not reached */
            }
            setpgid(pid, pid);
            /* The case enforces its own limit with alarm(); this is the backstop. */
            int64_t hard = tl_now_ms() + (int64_t)case_timeout_s * 1000 + 30000;
            int st = 0;
            bool done = false;
            while (!done) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid) {
                    done = true;
                } else if (w < 0 && errno != EINTR) {
                    st = 0;
                    done = true;
                } else if (tl_now_ms() > hard) {
                    printf("    FAIL: case process did not end; killing its process group\n");
                    kill(-pid, SIGKILL);
                    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
                    }
                    st = 1 << 8;
                    done = true;
                } else {
                    tl_sleep_ms(10);
                }
            }
            kill(-pid, SIGKILL); /* sweep anything the case left behind */
            if (WIFEXITED(st)) result = WEXITSTATUS(st);
            else {
                printf("    case process killed by signal %d (%s)\n", WTERMSIG(st),
                       strsignal(WTERMSIG(st)));
                result = CASE_FAIL;
            }
        }
        long ms = (long)(tl_now_ms() - t0);
        if (result == CASE_PASS) {
            passed++;
            printf("  PASS %s (%ld ms)\n", c->name, ms);
        } else if (result == CASE_SKIP) {
            skipped++;
            printf("  SKIP %s\n", c->name);
        } else {
            failed++;
            printf("  FAIL %s (%ld ms)\n", c->name, ms);
            if (no_fork) break;
        }
    }
    if (selected == 0) printf("no case matches the arguments\n");
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    curl_global_cleanup();
    if (failed || selected == 0) return 1;
    if (passed == 0 && skipped > 0) return CASE_SKIP;
    return 0;
}

/* ------------------------------------------------------------ msgpack ---------------- */

static void mp_free(void *arg) { msgpack_sbuffer_destroy(&((tl_mp *)arg)->sb); }

tl_mp *tl_mp_new(void) {
    tl_mp *m = tl_alloc(sizeof *m);
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
    tl_defer(mp_free, m);
    return m;
}

void tl_mp_str(tl_mp *m, const char *s) { msgpack_pack_str_with_body(&m->pk, s, strlen(s)); }
