#include "driver.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DRV_MAX_HELD 4096

struct drv {
    uv_loop_t *loop;
    loom_conn *conn;
    int connect_status; /* 1 pending, 0 ok, <0 failed */
    bool closed;
    char reason[256];
    uint64_t next_cid;
    loom_envelope *held[DRV_MAX_HELD]; /* replies not yet waited for */
    size_t n_held;
};

/* ------------------------------------------------------------ machine */

void drv_machine_init(drv_machine *m, const char *ns, const char *id)
{
    memset(m, 0, sizeof *m);
    snprintf(m->ns, sizeof m->ns, "%s", ns);
    snprintf(m->id, sizeof m->id, "%s", id);
}

void drv_machine_free(drv_machine *m)
{
    for (size_t i = 0; i < m->n_events; i++)
        free(m->events[i].data);
    free(m->events);
    free(m->aux);
    memset(m, 0, sizeof *m);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void apply_timer(drv_machine *m, const Loom__V1__Action *a)
{
    if (a->timer_case == LOOM__V1__ACTION__TIMER_UNSET_TIMER) {
        m->timer_deadline_ms = 0;
        return;
    }
    if (a->timer_case != LOOM__V1__ACTION__TIMER_SET_TIMER)
        return;
    const Loom__V1__SetTimer *t = a->set_timer;
    if (t->when_case == LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS)
        m->timer_deadline_ms = now_ms() + (int64_t)t->timeout_ms;
    else
        m->timer_deadline_ms = t->deadline_ms;
}

void drv_machine_apply(drv_machine *m, const Loom__V1__ProcessResult *res)
{
    if (res->n_events > 0) {
        drv_event *grown = realloc(m->events, (m->n_events + res->n_events) * sizeof *grown);
        cr_assert_not_null(grown);
        m->events = grown;
    }
    for (size_t i = 0; i < res->n_events; i++) {
        drv_event *e = &m->events[m->n_events];
        e->id = m->n_events + 1;
        e->created_at_ms = now_ms();
        e->format_version = res->events[i]->format_version;
        e->len = res->events[i]->data.len;
        e->data = malloc(e->len + 1);
        cr_assert_not_null(e->data);
        if (e->len > 0)
            memcpy(e->data, res->events[i]->data.data, e->len);
        m->n_events++;
    }
    if (res->set_aux_state) {
        free(m->aux);
        m->aux = malloc(res->aux_state.len + 1);
        cr_assert_not_null(m->aux);
        if (res->aux_state.len > 0)
            memcpy(m->aux, res->aux_state.data, res->aux_state.len);
        m->aux_len = res->aux_state.len;
    }
    if (res->action != NULL) {
        apply_timer(m, res->action);
        if (res->action->remove)
            m->removed = true;
    }
}

/* ------------------------------------------------------------ connection */

static void on_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    drv *d = user;
    (void)c;
    if (d->n_held == DRV_MAX_HELD) {
        loom_envelope_free(env);
        cr_assert_fail("driver: more than %d unclaimed replies", DRV_MAX_HELD);
        return;
    }
    d->held[d->n_held++] = env;
}

static void on_connect(loom_conn *c, int status, void *user)
{
    drv *d = user;
    (void)c;
    d->connect_status = status;
}

static void on_close(loom_conn *c, int err, const char *reason, void *user)
{
    drv *d = user;
    (void)c;
    (void)err;
    d->closed = true;
    d->conn = NULL;
    if (d->connect_status == 1)
        d->connect_status = err != 0 ? err : LOOM_ECLOSED;
    snprintf(d->reason, sizeof d->reason, "%s", reason != NULL ? reason : "");
}

static void on_tick(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void tick_closed(uv_handle_t *h)
{
    (void)h;
}

/* Runs the loop until *done or ms pass. Returns *done. */
static bool run_until(uv_loop_t *loop, const bool *done, uint64_t ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_tick, ms, 0);
    while (!*done && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, tick_closed);
    uv_run(loop, UV_RUN_NOWAIT);
    return *done;
}

void drv_run_for(uv_loop_t *loop, uint64_t ms)
{
    bool never = false;
    run_until(loop, &never, ms);
}

static bool try_connect(drv *d, const char *addr)
{
    static const loom_conn_callbacks cb = {
        .on_envelope = on_envelope, .on_connect = on_connect, .on_close = on_close};
    d->connect_status = 1;
    d->closed = false;
    int err = loom_conn_connect(d->loop, addr, NULL, &cb, d, &d->conn);
    cr_assert_eq(err, 0, "connect %s: %s %s", addr, loom_strerror(err), loom_errdetail());
    bool settled = false;
    while (d->connect_status == 1 && !settled) {
        uv_run(d->loop, UV_RUN_ONCE);
        settled = d->closed;
    }
    if (d->connect_status == 0)
        return true;
    bool closed_done = d->closed;
    run_until(d->loop, &closed_done, 1000);
    return false;
}

drv *drv_connect(uv_loop_t *loop, const char *addr, uint64_t timeout_ms)
{
    drv *d = calloc(1, sizeof *d);
    cr_assert_not_null(d);
    d->loop = loop;
    d->next_cid = 1;
    int64_t give_up = now_ms() + (int64_t)timeout_ms;
    /* A spawned processor creates its socket when it listens: wait for
     * the file rather than log a refused connect per retry. */
    struct stat st;
    while (strncmp(addr, "unix:", 5) == 0 && stat(addr + 5, &st) != 0 && now_ms() < give_up)
        drv_run_for(loop, 20);
    for (;;) {
        if (try_connect(d, addr))
            return d;
        if (now_ms() > give_up)
            break;
        drv_run_for(loop, 50);
    }
    free(d);
    return NULL;
}

void drv_free(drv *d)
{
    if (d == NULL)
        return;
    if (d->conn != NULL)
        loom_conn_close(d->conn, 0, "driver done");
    run_until(d->loop, &d->closed, 5000);
    for (size_t i = 0; i < d->n_held; i++)
        loom_envelope_free(d->held[i]);
    free(d);
}

bool drv_closed(const drv *d)
{
    return d->closed;
}

const char *drv_close_reason(const drv *d)
{
    return d->reason;
}

bool drv_wait_closed(drv *d, uint64_t timeout_ms)
{
    return run_until(d->loop, &d->closed, timeout_ms);
}

/* ------------------------------------------------------------ requests */

int drv_send_env(drv *d, const loom_envelope *env)
{
    if (d->conn == NULL)
        return LOOM_ECLOSED;
    return loom_conn_send(d->conn, env);
}

uint64_t drv_send(drv *d, const drv_machine *m, loom_proc_kind kind, const void *args,
                  size_t args_len)
{
    Loom__V1__Event *evs = calloc(m->n_events + 1, sizeof *evs);
    Loom__V1__Event **ptrs = calloc(m->n_events + 1, sizeof *ptrs);
    cr_assert(evs != NULL && ptrs != NULL);
    for (size_t i = 0; i < m->n_events; i++) {
        Loom__V1__Event e = LOOM__V1__EVENT__INIT;
        e.id = m->events[i].id;
        e.created_at_ms = m->events[i].created_at_ms;
        e.format_version = m->events[i].format_version;
        e.data.data = m->events[i].data;
        e.data.len = m->events[i].len;
        evs[i] = e;
        ptrs[i] = &evs[i];
    }
    Loom__V1__Machine machine = LOOM__V1__MACHINE__INIT;
    machine.ns = (char *)m->ns;
    machine.id = (char *)m->id;
    machine.status = LOOM__V1__MACHINE_STATUS__STATUS_WORKING;
    machine.last_event_id = m->n_events;
    machine.n_history = m->n_events;
    machine.history = ptrs;
    machine.aux_state.data = m->aux;
    machine.aux_state.len = m->aux_len;
    machine.timer_deadline_ms = m->timer_deadline_ms;
    Loom__V1__ProcessRequest pr = LOOM__V1__PROCESS_REQUEST__INIT;
    pr.kind = (Loom__V1__ProcessKind)kind;
    pr.machine = &machine;
    pr.args.data = (uint8_t *)args;
    pr.args.len = args_len;
    pr.attempt = m->attempt ? m->attempt : 1;
    pr.deadline_ms = now_ms() + 30000;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = d->next_cid++;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
    env.process = &pr;
    int err = drv_send_env(d, &env);
    cr_assert_eq(err, 0, "driver send: %s", loom_strerror(err));
    free(ptrs);
    free(evs);
    return env.correlation_id;
}

static loom_envelope *take_held(drv *d, uint64_t cid)
{
    for (size_t i = 0; i < d->n_held; i++) {
        loom_envelope *env = d->held[i];
        if (env->correlation_id == cid) {
            d->held[i] = d->held[--d->n_held];
            return env;
        }
    }
    return NULL;
}

static void on_wait_tick(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

loom_envelope *drv_wait(drv *d, uint64_t cid, uint64_t timeout_ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(d->loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_wait_tick, timeout_ms, 0);
    loom_envelope *env = take_held(d, cid);
    while (env == NULL && !expired && !d->closed) {
        uv_run(d->loop, UV_RUN_ONCE);
        env = take_held(d, cid);
    }
    uv_close((uv_handle_t *)&t, tick_closed);
    uv_run(d->loop, UV_RUN_NOWAIT);
    return env;
}

const Loom__V1__ProcessResult *drv_result(const loom_envelope *env)
{
    if (env == NULL || env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY)
        return NULL;
    if (env->process_reply->outcome_case != LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT)
        return NULL;
    return env->process_reply->result;
}

const Loom__V1__Failure *drv_failure(const loom_envelope *env)
{
    if (env == NULL || env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY)
        return NULL;
    if (env->process_reply->outcome_case != LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE)
        return NULL;
    return env->process_reply->failure;
}

loom_envelope *drv_step(drv *d, drv_machine *m, loom_proc_kind kind, const void *args,
                        size_t args_len, uint64_t timeout_ms)
{
    uint64_t cid = drv_send(d, m, kind, args, args_len);
    loom_envelope *env = drv_wait(d, cid, timeout_ms);
    const Loom__V1__ProcessResult *res = drv_result(env);
    if (res != NULL)
        drv_machine_apply(m, res);
    return env;
}

drv_answer drv_step_mp(drv *d, drv_machine *m, loom_proc_kind kind, loom_mp_writer *args)
{
    const uint8_t *data = (const uint8_t *)"";
    size_t len = 0;
    if (args != NULL)
        cr_assert_eq(loom_mp_writer_finish(args, &data, &len), 0);
    drv_answer a = {.env = drv_step(d, m, kind, data, len, 10000)};
    if (args != NULL)
        loom_mp_writer_free(args);
    cr_assert_not_null(a.env, "no reply");
    const Loom__V1__ProcessResult *res = drv_result(a.env);
    if (res != NULL && res->response.len > 0) {
        cr_assert_eq(loom_mp_parse(&a.doc, res->response.data, res->response.len), 0);
        a.has_doc = true;
    }
    return a;
}

void drv_answer_discard(drv_answer a)
{
    drv_answer_free(&a);
}

void drv_answer_free(drv_answer *a)
{
    if (a->has_doc)
        loom_mp_doc_free(&a->doc);
    loom_envelope_free(a->env);
}

void drv_expect_refusal(drv_answer a, const char *code)
{
    cr_assert(a.has_doc, "expected a response");
    bool ok = true;
    cr_assert_eq(loom_mp_get_bool(a.doc.root, "ok", &ok), 0);
    cr_assert_not(ok);
    char got[64];
    cr_assert_eq(loom_mp_get_strcpy(a.doc.root, "error", got, sizeof got), 0);
    cr_assert_str_eq(got, code);
    cr_assert_null(drv_result(a.env)->action);
    cr_assert_eq(drv_result(a.env)->n_events, 0);
    drv_answer_free(&a);
}

void drv_expect_failure(drv_answer a, const char *fragment)
{
    const Loom__V1__Failure *f = drv_failure(a.env);
    cr_assert_not_null(f, "expected a failure");
    cr_assert_not(f->retryable);
    cr_assert(strstr(f->reason, fragment) != NULL, "reason: %s", f->reason);
    drv_answer_free(&a);
}

const char *drv_last_event_type(const drv_machine *m, char *buf, size_t size)
{
    cr_assert_gt(m->n_events, 0);
    const drv_event *e = &m->events[m->n_events - 1];
    loom_mp_doc d;
    cr_assert_eq(loom_mp_parse(&d, e->data, e->len), 0);
    cr_assert_eq(loom_mp_get_strcpy(d.root, "type", buf, size), 0);
    loom_mp_doc_free(&d);
    return buf;
}

/* ------------------------------------------------------------ processes */

/* The child dies with the test process: a failed assertion ends the test
 * at once and must not leave a processor running (and holding the
 * output pipes of whoever ran the tests). err_pipe: the child's stderr
 * goes to its write end; NULL: inherited. */
static pid_t spawn(char *const argv[], const int *err_pipe)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (err_pipe != NULL) {
            dup2(err_pipe[1], STDERR_FILENO);
            close(err_pipe[0]);
            close(err_pipe[1]);
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

pid_t drv_spawn(char *const argv[])
{
    return spawn(argv, NULL);
}

pid_t drv_spawn_stderr(char *const argv[], int *err_fd)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
    pid_t pid = spawn(argv, fds);
    close(fds[1]);
    *err_fd = fds[0];
    return pid;
}

bool drv_read_line_with(int fd, const char *needle, char *line, size_t size, uint64_t timeout_ms)
{
    int64_t give_up = now_ms() + (int64_t)timeout_ms;
    size_t len = 0;
    while (now_ms() < give_up && len + 1 < size) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0)
            return false;
        if (line[len] != '\n') {
            len++;
            continue;
        }
        line[len] = '\0';
        if (strstr(line, needle) != NULL)
            return true;
        len = 0;
    }
    return false;
}

int drv_stop(pid_t pid, uint64_t timeout_ms)
{
    kill(pid, SIGTERM);
    return drv_reap(pid, timeout_ms);
}

int drv_reap(pid_t pid, uint64_t timeout_ms)
{
    int64_t give_up = now_ms() + (int64_t)timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() > give_up)
            break;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

void drv_scratch(char *out, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, size, "%s/loom-sdk-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(out), "mkdtemp: %s", strerror(errno));
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void drv_scratch_remove(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void drv_host_open(drv_host *h, const loom_proc_options *o)
{
    memset(h, 0, sizeof *h);
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    drv_scratch(h->dir, sizeof h->dir);
    cr_assert_eq(loom_proc_create(&h->loop, o, &h->p), 0);
}

void drv_host_listen(drv_host *h, const char *sock)
{
    snprintf(h->addr, sizeof h->addr, "unix:%s/%s", h->dir, sock);
    cr_assert_eq(loom_proc_listen(h->p, h->addr), 0, "%s", loom_errdetail());
    h->d = drv_connect(&h->loop, h->addr, 10000);
    cr_assert_not_null(h->d);
}

static void on_host_down(loom_proc *p, void *user)
{
    (void)p;
    *(bool *)user = true;
}

void drv_host_close(drv_host *h, uint64_t grace_ms)
{
    drv_free(h->d);
    h->d = NULL;
    bool down = false;
    loom_proc_shutdown(h->p, grace_ms, on_host_down, &down);
    for (int i = 0; i < 500 && !down; i++)
        drv_run_for(&h->loop, 10);
    cr_assert(down);
    loom_proc_free(h->p);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&h->loop), 0);
    drv_scratch_remove(h->dir);
}

void drv_host_remove_scratch(const drv_host *h)
{
    if (h->dir[0] != '\0')
        drv_scratch_remove(h->dir);
}

void drv_child_prepare(drv_child *c, const char *sock)
{
    memset(c, 0, sizeof *c);
    drv_scratch(c->dir, sizeof c->dir);
    snprintf(c->addr, sizeof c->addr, "unix:%s/%s", c->dir, sock);
}

void drv_child_start(drv_child *c, char *const argv[], uint64_t timeout_ms)
{
    c->pid = drv_spawn(argv);
    uv_loop_init(&c->loop);
    c->d = drv_connect(&c->loop, c->addr, timeout_ms);
    cr_assert_not_null(c->d, "%s did not come up", argv[0]);
}

void drv_child_finish(drv_child *c, int status)
{
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d",
              status);
    drv_free(c->d);
    c->d = NULL;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    drv_scratch_remove(c->dir);
}
