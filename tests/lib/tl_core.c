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

static const tl_case *tl__current;
static void tl__finish(int result) __attribute__((noreturn));
static char tl__dir[4096];
static bool tl__nofork;
static int tl__case_timeout_s = 60;

typedef struct tl__deferred {
    void (*fn)(void *);
    void *arg;
} tl__deferred;

static tl__deferred *tl__defers;
static size_t tl__ndefers, tl__capdefers;

const char *tl_tmpdir(void) { return tl__dir; }
const char *tl_case_name(void) { return tl__current ? tl__current->name : "(none)"; }

void *tl__xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "testlib: out of memory\n");
        abort();
    }
    return p;
}

void *tl__xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "testlib: out of memory\n");
        abort();
    }
    return p;
}

char *tl__xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = tl__xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

void tl_defer(void (*fn)(void *), void *arg) {
    if (tl__ndefers == tl__capdefers) {
        tl__capdefers = tl__capdefers ? tl__capdefers * 2 : 64;
        tl__defers = tl__xrealloc(tl__defers, tl__capdefers * sizeof(*tl__defers));
    }
    tl__defers[tl__ndefers].fn = fn;
    tl__defers[tl__ndefers].arg = arg;
    tl__ndefers++;
}

static void tl__run_defers(void) {
    while (tl__ndefers > 0) {
        tl__deferred d = tl__defers[--tl__ndefers];
        d.fn(d.arg);
    }
    free(tl__defers);
    tl__defers = NULL;
    tl__capdefers = 0;
}

char *tl__vprintf_raw(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = tl__xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

void *tl_alloc(size_t n) {
    void *p = tl__xmalloc(n);
    memset(p, 0, n ? n : 1);
    tl_defer(free, p);
    return p;
}

char *tl_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = tl__vprintf_raw(fmt, ap);
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

void tl__sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool tl__wait_step(int64_t end, int *step) {
    if (tl_now_ms() >= end) return false;
    tl__sleep_ms(*step);
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

char *tl__read_file_raw(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = tl__xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = tl__xrealloc(buf, cap *= 2);
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
    char *s = tl__read_file_raw(path, len);
    if (s) tl_defer(free, s);
    return s;
}

/* Async-signal-safe: the last bytes of a file, from a line start, indented. */
void tl__print_tail_raw(const char *path, size_t max_bytes) {
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
        tl__write_str("      (empty)\n");
        return;
    }
    ssize_t i = 0;
    if (from > 0) { /* skip the partial first line */
        while (i < n && buf[i] != '\n') i++;
        if (i < n) i++;
    }
    bool at_line_start = true;
    for (; i < n; i++) {
        if (at_line_start) tl__write_str("      | ");
        ssize_t w = write(STDOUT_FILENO, &buf[i], 1);
        (void)w;
        at_line_start = buf[i] == '\n';
    }
    if (!at_line_start) tl__write_str("\n");
}

void tl_print_tail(const char *path, int n) {
    fflush(stdout);
    tl__print_tail_raw(path, n > 0 ? (size_t)n * 160 : 4096);
}

void tl__write_str(const char *s) {
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
#ifdef FLEET_BIN_DIR
    return FLEET_BIN_DIR;
#else
    return "build/bin";
#endif
}

const char *tl_bin_path(const char *name) { return tl_printf("%s/%s", tl_bin_dir(), name); }

bool tl_bin_exists(const char *name) { return access(tl_bin_path(name), X_OK) == 0; }

static int tl__rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void tl__rm_rf(const char *dir) { nftw(dir, tl__rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------------------ assertions ------------ */

static void tl__print_str_side(const char *label, const char *s) {
    if (!s) {
        printf("      %s: NULL\n", label);
        return;
    }
    printf("      %s: \"", label);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            printf("\\n");
        else if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    printf("\"\n");
}

void tl__assert_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                    const char *b, bool want_equal) {
    bool eq = (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
    if (eq == want_equal) return;
    printf("    FAIL %s:%d: %s(%s, %s)\n", file, line, want_equal ? "ASSERT_EQ_STR" : "ASSERT_NE_STR",
           ea, eb);
    tl__print_str_side("left ", a);
    tl__print_str_side("right", b);
    tl__fail_printed();
}

static const char *tl__strcasestr(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return hay;
    return n == 0 ? hay : NULL;
}

void tl__assert_contains(const char *file, int line, const char *ehay, const char *eneedle,
                         const char *hay, const char *needle, bool ci) {
    if (hay && needle && (ci ? tl__strcasestr(hay, needle) : strstr(hay, needle)) != NULL)
        return;
    printf("    FAIL %s:%d: ASSERT_STR_CONTAINS%s(%s, %s)\n", file, line, ci ? "_CI" : "", ehay,
           eneedle);
    tl__print_str_side("haystack", hay);
    tl__print_str_side("needle  ", needle);
    tl__fail_printed();
}

void tl__assert_json(const char *file, int line, const char *ea, const char *eb,
                     const json_t *a, const json_t *b) {
    if (a && b && json_equal(a, b)) return;
    printf("    FAIL %s:%d: ASSERT_EQ_JSON(%s, %s)\n", file, line, ea, eb);
    printf("      left : %s\n", tl_json_text(a));
    printf("      right: %s\n", tl_json_text(b));
    tl__fail_printed();
}

/* ------------------------------------------------------------ ending a case --------- */

enum { TL__PASS = 0, TL__FAIL = 1, TL__SKIP = 77 };

static bool tl__ending;

/* Stops every process of the case and checks the fleet ones. Returns false when one of
 * them crashed or printed a sanitizer report. */
static bool tl__stop_and_check(bool print_tails) {
    bool ok = tl__procs_stop_all();
    if (!ok || print_tails) tl__procs_print_tails();
    return ok;
}

static void tl__finish(int result) {
    fflush(stdout);
    if (tl__ending) _exit(TL__FAIL); /* a failure inside cleanup */
    tl__ending = true;
    alarm(0);
    bool ok = tl__stop_and_check(result == TL__FAIL);
    if (!ok && result != TL__FAIL) {
        printf("    FAIL: a fleet process crashed, did not stop, or reported a sanitizer "
               "error (see above)\n");
        result = TL__FAIL;
    }
    if (result == TL__FAIL) {
        printf("    temporary directory kept: %s\n", tl__dir);
        fflush(stdout);
        if (tl__nofork) exit(TL__FAIL);
        _exit(TL__FAIL);
    }
    tl__run_defers();
    if (!getenv("TL_KEEP") || !*getenv("TL_KEEP"))
        tl__rm_rf(tl__dir);
    else
        printf("    temporary directory kept: %s\n", tl__dir);
    fflush(stdout);
    if (tl__nofork) {
        /* Not reached for a pass: tl__run_case returns instead. */
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
    tl__finish(TL__FAIL);
}

void tl__fail_printed(void) { tl__finish(TL__FAIL); }

void tl_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (tl__nofork) {
        tl__procs_stop_all();
        tl__run_defers();
        tl__rm_rf(tl__dir);
        exit(TL__SKIP);
    }
    tl__finish(TL__SKIP);
}

static void tl__on_signal(int sig) {
    if (sig == SIGALRM)
        tl__write_str("    FAIL: the case ran past its time limit (TL_CASE_TIMEOUT_S)\n");
    else
        tl__write_str("    FAIL: the case was interrupted by a signal\n");
    tl__procs_emergency(); /* SIGKILL children, print their log tails */
    if (sig == SIGALRM) _exit(TL__FAIL);
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(TL__FAIL);
}

/* A case that calls exit() itself (not through an assertion) still stops its
 * processes. */
static void tl__at_exit(void) {
    if (tl__ending || !tl__current) return;
    tl__ending = true;
    tl__procs_stop_all();
}

static void tl__make_tmpdir(const char *exe) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(tl__dir, sizeof(tl__dir), "%s/fleet-%s-%s-XXXXXX", base, exe, tl__current->name);
    if (!mkdtemp(tl__dir)) {
        printf("    FAIL: mkdtemp(%s): %s\n", tl__dir, strerror(errno));
        fflush(stdout);
        _exit(TL__FAIL);
    }
}

/* Runs one case in the current process. Returns only for a pass in TL_NOFORK mode. */
static int tl__run_case(const tl_case *c, const char *exe) {
    tl__current = c;
    tl__ending = false;
    tl__make_tmpdir(exe);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tl__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    static bool at_exit_registered;
    if (!at_exit_registered) {
        atexit(tl__at_exit);
        at_exit_registered = true;
    }
    alarm((unsigned)tl__case_timeout_s);
    c->fn();
    if (!tl__nofork) tl__finish(TL__PASS);
    /* In-process mode: clean up and go on with the next case. */
    alarm(0);
    tl__ending = true;
    bool ok = tl__stop_and_check(false);
    if (!ok) {
        printf("    FAIL: a fleet process crashed or reported a sanitizer error\n");
        printf("    temporary directory kept: %s\n", tl__dir);
        exit(TL__FAIL);
    }
    tl__procs_forget(); /* the defers free the tl_proc structs */
    tl__run_defers();
    tl__rm_rf(tl__dir);
    return TL__PASS;
}

static bool tl__selected(const char *name, int argc, char **argv) {
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
    tl__nofork = nf && *nf && strcmp(nf, "0") != 0;
    const char *to = getenv("TL_CASE_TIMEOUT_S");
    if (to && atoi(to) > 0) tl__case_timeout_s = atoi(to);
    curl_global_init(CURL_GLOBAL_ALL);

    int passed = 0, failed = 0, skipped = 0, selected = 0;
    printf("%s: %zu case(s)\n", exe, ncases);
    for (size_t i = 0; i < ncases; i++) {
        const tl_case *c = &cases[i];
        if (!tl__selected(c->name, argc, argv)) continue;
        selected++;
        printf("  RUN  %s\n", c->name);
        fflush(stdout);
        fflush(stderr);
        int64_t t0 = tl_now_ms();
        int result;
        if (tl__nofork) {
            /* In-process (for a debugger): a failure or a skip exits from inside. */
            result = tl__run_case(c, exe);
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
                if (getppid() != runner) _exit(TL__FAIL);
                tl__run_case(c, exe);
                _exit(TL__FAIL); /* not reached */
            }
            setpgid(pid, pid);
            /* The case enforces its own limit with alarm(); this is the backstop. */
            int64_t hard = tl_now_ms() + (int64_t)tl__case_timeout_s * 1000 + 30000;
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
                    tl__sleep_ms(10);
                }
            }
            kill(-pid, SIGKILL); /* sweep anything the case left behind */
            if (WIFEXITED(st))
                result = WEXITSTATUS(st);
            else {
                printf("    case process killed by signal %d (%s)\n", WTERMSIG(st),
                       strsignal(WTERMSIG(st)));
                result = TL__FAIL;
            }
        }
        long ms = (long)(tl_now_ms() - t0);
        if (result == TL__PASS) {
            passed++;
            printf("  PASS %s (%ld ms)\n", c->name, ms);
        } else if (result == TL__SKIP) {
            skipped++;
            printf("  SKIP %s\n", c->name);
        } else {
            failed++;
            printf("  FAIL %s (%ld ms)\n", c->name, ms);
            if (tl__nofork) break;
        }
    }
    if (selected == 0) printf("no case matches the arguments\n");
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    curl_global_cleanup();
    if (failed || selected == 0) return 1;
    if (passed == 0 && skipped > 0) return TL__SKIP;
    return 0;
}

/* ------------------------------------------------------------ msgpack ---------------- */

static void tl__mp_free(void *arg) { msgpack_sbuffer_destroy(&((tl_mp *)arg)->sb); }

tl_mp *tl_mp_new(void) {
    tl_mp *m = tl_alloc(sizeof *m);
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
    tl_defer(tl__mp_free, m);
    return m;
}

void tl_mp_str(tl_mp *m, const char *s) { msgpack_pack_str_with_body(&m->pk, s, strlen(s)); }
