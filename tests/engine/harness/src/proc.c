/* Child processes of a test: spawn with the output in a log file, wait for
 * their socket, stop, kill, restart. */
#include "harness_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loom/client.h"

#define DEFAULT_WAIT_MS 30000u
#define DEFAULT_STOP_MS 30000u

uint64_t loom_harness__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void loom_harness__sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int loom_harness_wait_accept(const char *addr, uint32_t timeout_ms)
{
    loom_client_options o;
    loom_client_options_init(&o);
    o.connect_timeout_ms = 1000;
    uint64_t deadline = loom_harness__now_ms() + timeout_ms;
    for (;;) {
        loom_client *c = NULL;
        int rc = loom_client_connect(addr, &o, &c);
        if (rc == 0) {
            loom_client_close(c);
            return 0;
        }
        if (rc == LOOM_EINVALID_ARGUMENT)
            return rc;
        if (loom_harness__now_ms() >= deadline)
            return loom_seterr(LOOM_ETIMEOUT, "%s did not accept within %u ms (%s)", addr,
                               timeout_ms, loom_errdetail());
        loom_harness__sleep_ms(20);
    }
}

int loom_harness_wait_status(loom_client *c, const char *ns, const char *id, int status,
                             uint64_t min_last_event, uint32_t timeout_ms)
{
    uint64_t deadline = loom_harness__now_ms() + timeout_ms;
    int last = -1;
    for (;;) {
        loom_client_result r = {0};
        if (loom_client_get_machine(c, ns, id, NULL, &r) == 0) {
            last = (int)r.machine->status;
            bool hit = last == status && r.machine->last_event_id >= min_last_event;
            loom_client_result_free(&r);
            if (hit)
                return last;
        }
        if (loom_harness__now_ms() >= deadline)
            return last;
        loom_harness__sleep_ms(20);
    }
}

static int decode_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return -1;
}

/* Reaps p if it has exited; true when it is gone. */
static bool reap(loom_harness_proc *p, bool block)
{
    if (p->pid == 0)
        return true;
    int ws = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &ws, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    p->last_status = r == p->pid ? decode_status(ws) : -1;
    p->pid = 0;
    return true;
}

bool loom_harness_proc_alive(loom_harness_proc *p)
{
    return !reap(p, false);
}

int loom_harness_proc_wait(loom_harness_proc *p, uint32_t timeout_ms, int *status)
{
    uint64_t deadline = loom_harness__now_ms() + timeout_ms;
    while (!reap(p, false)) {
        if (loom_harness__now_ms() >= deadline)
            return loom_seterr(LOOM_ETIMEOUT, "%s (pid %d) still runs after %u ms", p->name,
                               (int)p->pid, timeout_ms);
        loom_harness__sleep_ms(10);
    }
    if (status)
        *status = p->last_status;
    return 0;
}

/* In the child, between fork and exec: die with the parent, write to
 * the log, read nothing. Only async-signal-safe calls here. */
static void child_exec(loom_harness_proc *p, pid_t parent, int err_pipe)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127); /* the parent is already gone */
    int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        goto fail;
    /* Test runners may block signals; the child should see SIGTERM. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execv(p->argv[0], p->argv);
fail:;
    int e = errno;
    ssize_t w = write(err_pipe, &e, sizeof e);
    (void)w;
    _exit(127);
}

static int start(loom_harness_proc *p)
{
    LOOM_ASSERT(p->pid == 0);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return loom_seterr(loom_err_from_errno(errno), "pipe: %s", strerror(errno));
    fflush(NULL); /* unflushed stdio buffers would be written twice */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return loom_seterr(loom_err_from_errno(errno), "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(p, parent, pipefd[1]);
    }
    close(pipefd[1]);
    int child_errno = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    p->pid = pid;
    if (n == (ssize_t)sizeof child_errno) {
        reap(p, true);
        return loom_seterr(LOOM_ENOT_FOUND, "exec %s: %s", p->argv[0], strerror(child_errno));
    }
    return 0;
}

/* Waits for the child's socket, noticing an early exit. */
static int await_ready(loom_harness_proc *p)
{
    if (p->wait_addr[0] == '\0')
        return 0;
    uint64_t deadline = loom_harness__now_ms() + DEFAULT_WAIT_MS;
    for (;;) {
        if (loom_harness_wait_accept(p->wait_addr, 100) == 0)
            return 0;
        if (!loom_harness_proc_alive(p)) {
            loom_harness_dump_logs(p->h);
            return loom_seterr(LOOM_ECLOSED, "%s exited with status %d before accepting on %s",
                               p->name, p->last_status, p->wait_addr);
        }
        if (loom_harness__now_ms() >= deadline) {
            loom_harness_dump_logs(p->h);
            return loom_seterr(LOOM_ETIMEOUT, "%s did not accept on %s within %u ms", p->name,
                               p->wait_addr, DEFAULT_WAIT_MS);
        }
    }
}

static int copy_argv(loom_harness_proc *p, const char *const argv[])
{
    size_t n = 0;
    while (argv[n])
        n++;
    if (n == 0 || n > HARNESS_MAX_ARGS)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "argv must have 1..%d entries",
                           HARNESS_MAX_ARGS);
    char path[LOOM_HARNESS_PATH_MAX];
    const char *exe = strchr(argv[0], '/') ? argv[0] : loom_harness_bin(argv[0], path, sizeof path);
    for (size_t i = 0; i < n; i++) {
        p->argv[i] = strdup(i == 0 ? exe : argv[i]);
        if (p->argv[i] == NULL)
            return loom_seterr(LOOM_ENOMEM, "argv copy");
    }
    p->argv[n] = NULL;
    return 0;
}

static void free_argv(loom_harness_proc *p)
{
    for (int i = 0; p->argv[i]; i++) {
        free(p->argv[i]);
        p->argv[i] = NULL;
    }
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/')
            return false;
    return true;
}

int loom_harness_spawn(loom_harness *h, const char *name, const char *const argv[],
                       const char *wait_addr, loom_harness_proc **out)
{
    if (out)
        *out = NULL;
    if (!name_ok(name) || argv == NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "bad process name or argv");
    if (loom_harness_proc_find(h, name))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "a process named %s exists", name);
    if (h->n_procs >= LOOM_HARNESS_MAX_PROCS)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "over %d processes", LOOM_HARNESS_MAX_PROCS);
    if (wait_addr && strlen(wait_addr) >= LOOM_HARNESS_PATH_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "wait address too long");
    loom_harness_proc *p = &h->procs[h->n_procs];
    memset(p, 0, sizeof *p);
    p->h = h;
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->wait_addr, sizeof p->wait_addr, "%s", wait_addr ? wait_addr : "");
    char log_name[80];
    snprintf(log_name, sizeof log_name, "%s.log", name);
    loom_harness_path(h, log_name, p->log_path, sizeof p->log_path);
    int rc = copy_argv(p, argv);
    if (rc == 0)
        rc = start(p);
    if (rc < 0) {
        free_argv(p);
        return rc;
    }
    h->n_procs++;
    if (out)
        *out = p;
    return await_ready(p);
}

loom_harness_proc *loom_harness_proc_find(const loom_harness *h, const char *name)
{
    for (int i = 0; i < h->n_procs; i++)
        if (strcmp(h->procs[i].name, name) == 0)
            return (loom_harness_proc *)&h->procs[i];
    return NULL;
}

int loom_harness_proc_stop(loom_harness_proc *p, uint32_t timeout_ms, int *status)
{
    if (reap(p, false)) {
        if (status)
            *status = p->last_status;
        return 0;
    }
    kill(p->pid, SIGTERM);
    int rc = loom_harness_proc_wait(p, timeout_ms ? timeout_ms : DEFAULT_STOP_MS, status);
    if (rc == LOOM_ETIMEOUT) {
        kill(p->pid, SIGKILL);
        reap(p, true);
        if (status)
            *status = p->last_status;
        return loom_seterr(LOOM_ETIMEOUT, "%s ignored SIGTERM for %u ms: killed", p->name,
                           timeout_ms ? timeout_ms : DEFAULT_STOP_MS);
    }
    return rc;
}

int loom_harness_proc_kill(loom_harness_proc *p)
{
    if (p->pid != 0) {
        kill(p->pid, SIGKILL);
        reap(p, true);
    }
    return 0;
}

int loom_harness_proc_signal(loom_harness_proc *p, int sig)
{
    if (p->pid == 0)
        return loom_seterr(LOOM_ECLOSED, "%s is not running", p->name);
    if (kill(p->pid, sig) != 0)
        return loom_seterr(loom_err_from_errno(errno), "kill %s: %s", p->name, strerror(errno));
    return 0;
}

int loom_harness_proc_restart(loom_harness_proc *p)
{
    if (loom_harness_proc_alive(p))
        return loom_seterr(LOOM_EBUSY, "%s still runs: stop or kill it first", p->name);
    int rc = start(p);
    return rc < 0 ? rc : await_ready(p);
}

pid_t loom_harness_proc_pid(const loom_harness_proc *p)
{
    return p->pid;
}

const char *loom_harness_proc_log(const loom_harness_proc *p)
{
    return p->log_path;
}

void loom_harness__kill_all(loom_harness *h)
{
    for (int i = 0; i < h->n_procs; i++) {
        loom_harness_proc *p = &h->procs[i];
        if (p->pid != 0 && kill(p->pid, SIGCONT) == 0) /* a stopped child cannot die */
            kill(p->pid, SIGKILL);
        reap(p, true);
    }
}

void loom_harness__release_all(loom_harness *h)
{
    loom_harness__kill_all(h);
    for (int i = 0; i < h->n_procs; i++)
        free_argv(&h->procs[i]);
    h->n_procs = 0;
}
