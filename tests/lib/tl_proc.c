/* tl_proc.c: child processes of a case (spawn, stop, wait, check) and free ports.
 *
 * Every process a case spawns is registered here and stopped when the case ends, newest
 * first (workers before the gateway before Redis). A "checked" process is a fleet binary:
 * when it crashed, needed SIGKILL, exited non-zero, or wrote a sanitizer report to its
 * log, the case fails even if all its assertions passed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tl_internal.h"

extern char **environ;

#define MAX_PROCS 256
#define STOP_GRACE_MS 10000

typedef struct proc_state {
    tl_proc *p;
    bool expect_clean_exit; /* a non-zero exit code fails the case */
    bool needed_kill;       /* SIGTERM was not enough */
    bool killed9;           /* the test asked for kill -9 */
    bool reported;          /* its failure was already printed */
} proc_state;

static proc_state procs[MAX_PROCS];
static volatile int nprocs;

static proc_state *state_of(tl_proc *p) {
    for (int i = 0; i < nprocs; i++)
        if (procs[i].p == p) return &procs[i];
    return NULL;
}

/* ------------------------------------------------------------ ports ----------------- */

int tl_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) FAILF("socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(fd);
        FAILF("bind 127.0.0.1:0: %s", strerror(e));
    }
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int e = errno;
        close(fd);
        FAILF("getsockname: %s", strerror(e));
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------ spawning -------------- */

static bool env_overridden(const char *entry, const char *const *env) {
    if (!env) return false;
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], entry, n) == 0 && env[i][n] == '=') return true;
    return false;
}

/* environ minus the names env overrides, plus env. Freed by the caller (array only). */
static char **build_env(const char *const *env) {
    size_t n = 0, m = 0;
    while (environ[n]) n++;
    if (env)
        while (env[m]) m++;
    char **out = tl_xmalloc((n + m + 1) * sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_overridden(environ[i], env)) out[k++] = environ[i];
    for (size_t i = 0; i < m; i++) out[k++] = (char *)env[i];
    out[k] = NULL;
    return out;
}

static void redirect(const char *path, int target) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) _exit(126);
    if (dup2(fd, target) < 0) _exit(126);
    close(fd);
}

tl_proc *tl_spawn(const tl_spawn_opts *o) {
    if (nprocs >= MAX_PROCS) FAILF("too many processes in one case");
    if (!o->name || !o->path || !o->argv || !o->argv[0]) FAILF("tl_spawn: name, path, argv");
    tl_proc *p = tl_xmalloc(sizeof(*p));
    memset(p, 0, sizeof(*p));
    tl_defer(free, p);
    snprintf(p->name, sizeof(p->name), "%s", o->name);
    p->checked = o->checked;
    if (o->split_stderr) {
        snprintf(p->log_path, sizeof(p->log_path), "%s/%s.out", tl_tmpdir(), o->name);
        snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", tl_tmpdir(), o->name);
    } else {
        snprintf(p->log_path, sizeof(p->log_path), "%s/%s.log", tl_tmpdir(), o->name);
    }
    if (access(o->path, X_OK) != 0) FAILF("cannot execute %s: %s", o->path, strerror(errno));

    char **envp = build_env(o->env);
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    /* Block signals across fork so that the child cannot run the case's handlers (which
     * would kill the case's processes) before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        free(envp);
        FAILF("fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* Default dispositions (SIGPIPE is ignored by the case, and ignored signals
         * survive exec), no alarm, then unblock. */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
        alarm(0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* Die with the case process, even if it is killed with SIGKILL. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        redirect(p->log_path, STDOUT_FILENO);
        redirect(o->split_stderr ? p->err_path : p->log_path, STDERR_FILENO);
        execve(o->path, (char *const *)o->argv, envp);
        dprintf(STDERR_FILENO, "testlib: execve %s: %s\n", o->path, strerror(errno));
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(envp);
    p->pid = pid;
    proc_state *s = &procs[nprocs];
    memset(s, 0, sizeof(*s));
    s->p = p;
    s->expect_clean_exit = o->checked;
    nprocs++;
    return p;
}

static bool reap(tl_proc *p, int flags) {
    if (p->reaped) return true;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(p->pid, &st, flags);
        if (w == p->pid) {
            p->reaped = true;
            p->status = st;
            return true;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { /* not our child any more: treat as gone */
            p->reaped = true;
            p->status = 0;
            return true;
        }
        return false;
    }
}

bool tl_proc_alive(tl_proc *p) { return !reap(p, WNOHANG); }

bool tl_proc_wait(tl_proc *p, int deadline_ms) {
    int64_t end = tl_now_ms() + deadline_ms;
    int step = 2;
    for (;;) {
        if (reap(p, WNOHANG)) return true;
        if (tl_now_ms() >= end) return false;
        tl_sleep_ms(step);
        if (step < 20) step *= 2;
    }
}

int tl_proc_stop(tl_proc *p, int grace_ms) {
    if (reap(p, WNOHANG)) return p->status;
    p->stopped_by_us = true;
    kill(p->pid, SIGTERM);
    if (!tl_proc_wait(p, grace_ms)) {
        proc_state *s = state_of(p);
        if (s) s->needed_kill = true;
        kill(p->pid, SIGKILL);
        reap(p, 0);
    }
    return p->status;
}

void tl_proc_kill9(tl_proc *p) {
    if (reap(p, WNOHANG)) return;
    proc_state *s = state_of(p);
    if (s) s->killed9 = true;
    p->stopped_by_us = true;
    kill(p->pid, SIGKILL);
    reap(p, 0);
}

void tl_proc_expect_kill9(tl_proc *p) {
    proc_state *s = state_of(p);
    if (s) s->killed9 = true;
    p->stopped_by_us = true;
}

static void describe_status(char *buf, size_t len, int st) {
    if (WIFEXITED(st)) snprintf(buf, len, "exited with code %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else snprintf(buf, len, "status 0x%x", st);
}

const char *tl_proc_describe(tl_proc *p) {
    char buf[128];
    if (tl_proc_alive(p)) snprintf(buf, sizeof(buf), "running (pid %d)", (int)p->pid);
    else describe_status(buf, sizeof(buf), p->status);
    return tl_printf("%s", buf);
}

/* ------------------------------------------------------------ checking -------------- */

static const char *const sanitizer_markers[] = {
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
    "runtime error:",          "SUMMARY: UndefinedBehaviorSanitizer",
    "ThreadSanitizer",         NULL,
};

static const char *sanitizer_report(const char *path) {
    if (!path[0]) return NULL;
    char *log = tl_read_file_raw(path, NULL);
    if (!log) return NULL;
    const char *found = NULL;
    for (int i = 0; sanitizer_markers[i] && !found; i++)
        if (strstr(log, sanitizer_markers[i])) found = sanitizer_markers[i];
    free(log);
    return found;
}

/* Why a checked process failed the case, or NULL. Call once it has been reaped. */
static const char *check_proc(proc_state *s, char *buf, size_t len) {
    tl_proc *p = s->p;
    const char *marker = sanitizer_report(p->log_path);
    if (!marker) marker = sanitizer_report(p->err_path);
    if (marker) {
        snprintf(buf, len, "its log contains a sanitizer report (\"%s\")", marker);
        return buf;
    }
    if (s->needed_kill) {
        snprintf(buf, len, "did not exit within %d ms of SIGTERM", STOP_GRACE_MS);
        return buf;
    }
    int st = p->status;
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        if (sig == SIGKILL && s->killed9) return NULL;
        if (sig == SIGTERM && p->stopped_by_us) return NULL;
        describe_status(buf, len, st);
        return buf;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0 && s->expect_clean_exit) {
        describe_status(buf, len, st);
        return buf;
    }
    return NULL;
}

bool tl_procs_stop_all(void) {
    bool ok = true;
    for (int i = nprocs - 1; i >= 0; i--) {
        proc_state *s = &procs[i];
        tl_proc_stop(s->p, STOP_GRACE_MS);
        if (!s->p->checked) continue;
        char why[256];
        if (check_proc(s, why, sizeof(why))) {
            printf("    FAIL: %s (pid %d) %s\n", s->p->name, (int)s->p->pid, why);
            ok = false;
        }
    }
    fflush(stdout);
    return ok;
}

void tl_procs_forget(void) { nprocs = 0; }

void tl_procs_print_tails(void) {
    for (int i = 0; i < nprocs; i++) {
        tl_proc *p = procs[i].p;
        char st[128];
        if (p->reaped) describe_status(st, sizeof(st), p->status);
        else snprintf(st, sizeof(st), "running");
        printf("    --- %s (pid %d, %s): %s ---\n", p->name, (int)p->pid, st, p->log_path);
        fflush(stdout);
        tl_print_tail_raw(p->log_path, strstr(p->name, "redis") ? 1200 : 6000);
        if (p->err_path[0]) {
            printf("    --- %s stderr: %s ---\n", p->name, p->err_path);
            fflush(stdout);
            tl_print_tail_raw(p->err_path, 4000);
        }
    }
    fflush(stdout);
}

void tl_procs_emergency(void) {
    int n = nprocs;
    for (int i = n - 1; i >= 0; i--) {
        tl_proc *p = procs[i].p;
        if (!p->reaped) kill(p->pid, SIGKILL);
    }
    for (int i = 0; i < n; i++) {
        tl_proc *p = procs[i].p;
        tl_write_str("    --- ");
        tl_write_str(p->name);
        tl_write_str(": ");
        tl_write_str(p->log_path);
        tl_write_str(" ---\n");
        tl_print_tail_raw(p->log_path, 4000);
        if (p->err_path[0]) tl_print_tail_raw(p->err_path, 2000);
    }
}

const char *tl_procs_dead_summary(void) {
    char buf[1024] = "";
    size_t used = 0;
    for (int i = 0; i < nprocs; i++) {
        tl_proc *p = procs[i].p;
        if (!p->checked || p->stopped_by_us || tl_proc_alive(p)) continue;
        char st[128];
        describe_status(st, sizeof(st), p->status);
        int w = snprintf(buf + used, sizeof(buf) - used, "%s%s %s", used ? "; " : "", p->name, st);
        if (w < 0 || (size_t)w >= sizeof(buf) - used) break;
        used += (size_t)w;
    }
    return tl_printf("%s", buf);
}

/* ------------------------------------------------------------ commands -------------- */

tl_cmd_result tl_run_cmd(const char *name, const char *path, const char *const *argv,
                         const char *const *env, int deadline_ms) {
    tl_spawn_opts o = {.name = name,
                       .path = path,
                       .argv = argv,
                       .env = env,
                       .split_stderr = true,
                       .checked = true};
    tl_proc *p = tl_spawn(&o);
    proc_state *s = state_of(p);
    if (s) s->expect_clean_exit = false; /* the exit code is the caller's to judge */
    if (!tl_proc_wait(p, deadline_ms)) {
        tl_proc_stop(p, 2000);
        FAILF("%s did not finish within %d ms", name, deadline_ms);
    }
    tl_cmd_result r;
    r.status = p->status;
    r.exit_code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
    r.out = tl_read_file(p->log_path, NULL);
    r.err = tl_read_file(p->err_path, NULL);
    if (!r.out) r.out = tl_printf("%s", "");
    if (!r.err) r.err = tl_printf("%s", "");
    if (WIFSIGNALED(p->status))
        FAILF("%s was killed by signal %d (%s); stderr:\n%s", name, WTERMSIG(p->status),
              strsignal(WTERMSIG(p->status)), r.err);
    char why[256];
    if (s && check_proc(s, why, sizeof(why))) FAILF("%s %s; stderr:\n%s", name, why, r.err);
    return r;
}

tl_cmd_result tl_fleetctl(const char *const *pre, const char *const *args) {
    if (!tl_bin_exists("fleetctl"))
        FAILF("fleetctl not found or not executable in %s: build it first", tl_bin_dir());
    const char *argv[48];
    int n = 0;
    argv[n++] = tl_bin_path("fleetctl");
    for (int i = 0; pre && pre[i]; i++) {
        if (n >= 47) FAILF("tl_fleetctl: too many arguments");
        argv[n++] = pre[i];
    }
    for (int i = 0; args[i]; i++) {
        if (n >= 47) FAILF("tl_fleetctl: too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    const char *line = "fleetctl";
    for (int i = 1; i < n; i++) line = tl_printf("%s '%s'", line, argv[i]);
    tl_log("%s", line);
    static int seq;
    return tl_run_cmd(tl_printf("fleetctl-%d", ++seq), argv[0], argv, NULL, 30000);
}

void tl_expect_exit(const tl_cmd_result *r, int code) {
    if (r->exit_code != code)
        FAILF("exited with %d (expected %d)\n      stdout: %s\n      stderr: %s", r->exit_code,
              code, r->out, r->err);
}
