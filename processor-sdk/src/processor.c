/* The processor SDK: requests in, replies out, on one libuv loop.
 *
 * Lifecycle of the processor (checked on every move):
 *
 *   RUNNING --loom_proc_shutdown--> DRAINING --in_flight 0 / grace over--> CLOSING --> DONE
 *
 *   RUNNING   listeners accept; requests are dispatched.
 *   DRAINING  listeners closed; requests still arriving on open
 *             connections get "shutting down"; the grace timer runs.
 *   CLOSING   every request still running was answered "shutting down"
 *             and detached; connections and the grace timer are closing.
 *   DONE      no connection, no handle: the shutdown callback ran and
 *             loom_proc_free may be called.
 *
 * A request is "attached" (req->p set, on p's list, counted in in_flight)
 * from dispatch until loom_proc_done or until shutdown answers it. Its
 * connection pointer (req->pc) is cleared when the connection closes, so
 * a late loom_proc_done never touches a freed connection. */
#include "loom/processor.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "loom/wire.h"

#define PROC_MAX_IN_FLIGHT_DEFAULT 1024
#define PROC_MAX_EVENTS_DEFAULT 10000
#define PROC_MAX_CONNECTIONS_DEFAULT 256
#define PROC_MAX_LISTENERS 8
#define PROC_REASON_MAX 1024
/* How long a closing connection may take to flush its last replies. */
#define PROC_LINGER_MS 1000

typedef enum proc_state { PROC_RUNNING, PROC_DRAINING, PROC_CLOSING, PROC_DONE } proc_state;

typedef struct proc_conn {
    loom_proc *p;
    loom_conn *conn;
    struct proc_conn *prev, *next;
} proc_conn;

typedef enum timer_mode { TIMER_KEEP, TIMER_TIMEOUT, TIMER_DEADLINE, TIMER_UNSET } timer_mode;

struct loom_proc_req {
    loom_proc *p;  /* NULL once detached */
    proc_conn *pc; /* NULL once the reply cannot be sent */
    loom_proc_req *prev, *next;
    uint64_t correlation_id;
    loom_envelope *env; /* the request, owned */
    const Loom__V1__ProcessRequest *pr;

    Loom__V1__NewEvent *events;
    size_t n_events, cap_events;
    size_t max_events;
    uint8_t *aux;
    size_t aux_len;
    bool set_aux;
    timer_mode timer;
    uint64_t timeout_ms;
    int64_t deadline_ms;
    bool has_range;
    loom_proc_range range;
    bool remove;
    uint8_t *response;
    size_t response_len;
    bool failed;
    bool retryable;
    char reason[PROC_REASON_MAX];
};

struct loom_proc {
    uv_loop_t *loop;
    uv_loop_t own_loop;
    bool owns_loop;
    loom_proc_options opts;
    proc_state state;
    struct {
        loom_proc_handler fn;
        void *user;
    } handlers[LOOM_PROC_KIND_MAX + 1];
    loom_listener *listeners[PROC_MAX_LISTENERS];
    size_t n_listeners;
    int port;
    proc_conn *conns;
    size_t n_conns;
    loom_proc_req *reqs;
    size_t in_flight;
    uv_timer_t grace;
    bool grace_open;
    loom_proc_shutdown_cb on_shutdown;
    void *shutdown_user;
    /* loom_proc_run's signal watchers */
    uv_signal_t sigint, sigterm;
    uint64_t run_grace_ms;
};

static const char *kind_name(int kind)
{
    static const char *names[] = {"unspecified",  "init",   "timeout",
                                  "notification", "repair", "call"};
    return kind >= 0 && kind <= LOOM_PROC_KIND_MAX ? names[kind] : "unknown";
}

int64_t loom_proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ replies */

/* A reply that cannot be queued is lost; Loom would wait for it until its
 * step timeout. Closing tells it at once. */
static void close_unsendable(proc_conn *pc, int err)
{
    char reason[128];
    snprintf(reason, sizeof reason, "cannot queue reply: %s", loom_strerror(err));
    loom_conn_close(pc->conn, err, reason);
}

static void conn_send_or_close(proc_conn *pc, const loom_envelope *env)
{
    int err = loom_conn_send(pc->conn, env);
    if (err != 0 && err != LOOM_ECLOSED)
        close_unsendable(pc, err);
}

static void send_failure(proc_conn *pc, uint64_t cid, bool retryable, const char *reason)
{
    Loom__V1__Failure failure = LOOM__V1__FAILURE__INIT;
    failure.reason = (char *)reason;
    failure.retryable = retryable;
    Loom__V1__ProcessReply reply = LOOM__V1__PROCESS_REPLY__INIT;
    reply.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE;
    reply.failure = &failure;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = cid;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    env.process_reply = &reply;
    conn_send_or_close(pc, &env);
}

static void fill_range(Loom__V1__HistoryRange *out, const loom_proc_range *in)
{
    out->after = in->after;
    out->has_after = in->has_after;
    out->limit = in->limit;
    out->direction = in->backward ? LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                                  : LOOM__V1__DIRECTION__DIRECTION_FORWARD;
}

/* The action of a result, in the caller's storage; false when there is
 * none (keep the timer, keep the machine). */
static bool fill_action(const loom_proc_req *r, Loom__V1__Action *action,
                        Loom__V1__SetTimer *set_timer, Loom__V1__HistoryRange *range)
{
    action->remove = r->remove;
    if (r->timer == TIMER_TIMEOUT) {
        set_timer->when_case = LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS;
        set_timer->timeout_ms = r->timeout_ms;
    } else if (r->timer == TIMER_DEADLINE) {
        set_timer->when_case = LOOM__V1__SET_TIMER__WHEN_DEADLINE_MS;
        set_timer->deadline_ms = r->deadline_ms;
    }
    if (r->timer == TIMER_TIMEOUT || r->timer == TIMER_DEADLINE) {
        if (r->has_range) {
            fill_range(range, &r->range);
            set_timer->range = range;
        }
        action->timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
        action->set_timer = set_timer;
    } else if (r->timer == TIMER_UNSET) {
        action->timer_case = LOOM__V1__ACTION__TIMER_UNSET_TIMER;
        action->unset_timer = 1;
    }
    return action->remove || action->timer_case != LOOM__V1__ACTION__TIMER__NOT_SET;
}

/* Builds the result on the stack around the request's own buffers and
 * sends it; falls back to a failure when it does not fit in a frame. */
static void send_result(loom_proc_req *r)
{
    Loom__V1__NewEvent *ptrs_small[16];
    Loom__V1__NewEvent **ptrs = ptrs_small;
    if (r->n_events > LOOM_ARRAY_SIZE(ptrs_small)) {
        ptrs = malloc(r->n_events * sizeof *ptrs);
        if (ptrs == NULL) {
            send_failure(r->pc, r->correlation_id, true, "processor out of memory");
            return;
        }
    }
    for (size_t i = 0; i < r->n_events; i++)
        ptrs[i] = &r->events[i];

    Loom__V1__ProcessResult result = LOOM__V1__PROCESS_RESULT__INIT;
    result.n_events = r->n_events;
    result.events = ptrs;
    result.set_aux_state = r->set_aux;
    result.aux_state.data = r->aux;
    result.aux_state.len = r->aux_len;
    result.response.data = r->response;
    result.response.len = r->response_len;

    Loom__V1__HistoryRange range = LOOM__V1__HISTORY_RANGE__INIT;
    Loom__V1__SetTimer set_timer = LOOM__V1__SET_TIMER__INIT;
    Loom__V1__Action action = LOOM__V1__ACTION__INIT;
    if (fill_action(r, &action, &set_timer, &range))
        result.action = &action;

    Loom__V1__ProcessReply reply = LOOM__V1__PROCESS_REPLY__INIT;
    reply.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
    reply.result = &result;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = r->correlation_id;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    env.process_reply = &reply;

    int err = loom_conn_send(r->pc->conn, &env);
    if (ptrs != ptrs_small)
        free(ptrs);
    if (err == LOOM_EFRAME_TOO_LARGE)
        send_failure(r->pc, r->correlation_id, false, "processor result exceeds the frame limit");
    else if (err != 0 && err != LOOM_ECLOSED)
        close_unsendable(r->pc, err);
}

/* ------------------------------------------------------------ request list */

static void req_link(loom_proc *p, loom_proc_req *r)
{
    r->p = p;
    r->prev = NULL;
    r->next = p->reqs;
    if (p->reqs != NULL)
        p->reqs->prev = r;
    p->reqs = r;
    p->in_flight++;
}

static void req_unlink(loom_proc_req *r)
{
    loom_proc *p = r->p;
    LOOM_ASSERT(p != NULL);
    LOOM_ASSERT(p->in_flight > 0);
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        p->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->p = NULL;
    p->in_flight--;
}

static void req_free(loom_proc_req *r)
{
    for (size_t i = 0; i < r->n_events; i++)
        free(r->events[i].data.data);
    free(r->events);
    free(r->aux);
    free(r->response);
    loom_envelope_free(r->env);
    free(r);
}

static void shutdown_advance(loom_proc *p);

/* ------------------------------------------------------------ dispatch */

static int check_request(const loom_envelope *env, char *why, size_t size)
{
    if (env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS) {
        snprintf(why, size, "expected a process request, got envelope body %d",
                 (int)env->body_case);
        return LOOM_EPROTOCOL;
    }
    const Loom__V1__ProcessRequest *pr = env->process;
    if (pr->machine == NULL) {
        snprintf(why, size, "process request without a machine");
        return LOOM_EPROTOCOL;
    }
    if ((int)pr->kind < LOOM_PROC_INIT || (int)pr->kind > LOOM_PROC_KIND_MAX) {
        snprintf(why, size, "unknown process kind %d", (int)pr->kind);
        return LOOM_EPROTOCOL;
    }
    return 0;
}

static void protocol_violation(proc_conn *pc, uint64_t cid, const char *why)
{
    Loom__V1__Error error = LOOM__V1__ERROR__INIT;
    error.code = loom_err_wire(LOOM_EPROTOCOL);
    error.message = (char *)why;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = cid;
    env.body_case = LOOM__V1__ENVELOPE__BODY_ERROR;
    env.error = &error;
    loom_conn_send(pc->conn, &env);
    loom_conn_close_after_flush(pc->conn, LOOM_EPROTOCOL, why, PROC_LINGER_MS);
}

static void on_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    proc_conn *pc = user;
    loom_proc *p = pc->p;
    (void)c;
    char why[256];
    if (check_request(env, why, sizeof why) != 0) {
        protocol_violation(pc, env->correlation_id, why);
        loom_envelope_free(env);
        return;
    }
    int kind = (int)env->process->kind;
    const char *refusal = NULL;
    bool retryable = true;
    if (p->state != PROC_RUNNING)
        refusal = "processor shutting down";
    else if (p->in_flight >= p->opts.max_in_flight)
        refusal = "processor busy";
    else if (p->handlers[kind].fn == NULL) {
        snprintf(why, sizeof why, "processor has no handler for %s", kind_name(kind));
        refusal = why;
        retryable = false;
    }
    if (refusal != NULL) {
        send_failure(pc, env->correlation_id, retryable, refusal);
        loom_envelope_free(env);
        return;
    }
    loom_proc_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        send_failure(pc, env->correlation_id, true, "processor out of memory");
        loom_envelope_free(env);
        return;
    }
    r->env = env;
    r->pr = env->process;
    r->correlation_id = env->correlation_id;
    r->pc = pc;
    r->max_events = p->opts.max_events;
    req_link(p, r);
    p->handlers[kind].fn(r, p->handlers[kind].user);
}

static void on_conn_close(loom_conn *c, int err, const char *reason, void *user)
{
    proc_conn *pc = user;
    loom_proc *p = pc->p;
    (void)c;
    (void)err;
    (void)reason;
    for (loom_proc_req *r = p->reqs; r != NULL; r = r->next)
        if (r->pc == pc)
            r->pc = NULL;
    if (pc->prev != NULL)
        pc->prev->next = pc->next;
    else
        p->conns = pc->next;
    if (pc->next != NULL)
        pc->next->prev = pc->prev;
    LOOM_ASSERT(p->n_conns > 0);
    p->n_conns--;
    free(pc);
    shutdown_advance(p);
}

static void on_accept(loom_listener *l, loom_conn *c, void *user)
{
    loom_proc *p = user;
    (void)l;
    proc_conn *pc = NULL;
    if (p->state == PROC_RUNNING && p->n_conns < p->opts.max_connections)
        pc = calloc(1, sizeof *pc);
    if (pc == NULL) {
        /* on_close will still run with the listener's user (p) — a conn
         * without its own record is closed and never registered. */
        loom_conn_set_user(c, NULL);
        loom_conn_close(c, LOOM_ERESOURCE_EXHAUSTED, "processor connection limit reached");
        return;
    }
    pc->p = p;
    pc->conn = c;
    pc->next = p->conns;
    if (p->conns != NULL)
        p->conns->prev = pc;
    p->conns = pc;
    p->n_conns++;
    loom_conn_set_user(c, pc);
}

static void on_envelope_entry(loom_conn *c, loom_envelope *env, void *user)
{
    if (user == NULL) { /* refused at accept, closing */
        loom_envelope_free(env);
        return;
    }
    on_envelope(c, env, user);
}

static void on_close_entry(loom_conn *c, int err, const char *reason, void *user)
{
    if (user != NULL)
        on_conn_close(c, err, reason, user);
}

/* ------------------------------------------------------------ setup */

void loom_proc_options_init(loom_proc_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_in_flight = PROC_MAX_IN_FLIGHT_DEFAULT;
    o->max_frame = LOOM_FRAME_MAX_DEFAULT;
    o->max_events = PROC_MAX_EVENTS_DEFAULT;
    o->max_connections = PROC_MAX_CONNECTIONS_DEFAULT;
}

int loom_proc_create(uv_loop_t *loop, const loom_proc_options *o, loom_proc **out)
{
    loom_proc *p = calloc(1, sizeof *p);
    if (p == NULL)
        return loom_seterr(LOOM_ENOMEM, "processor");
    loom_proc_options_init(&p->opts);
    if (o != NULL) {
        if (o->max_in_flight == 0 || o->max_frame == 0 || o->max_events == 0 ||
            o->max_connections == 0) {
            free(p);
            return loom_seterr(LOOM_EINVALID_ARGUMENT, "processor limits must be positive");
        }
        p->opts = *o;
    }
    if (loop == NULL) {
        int uerr = uv_loop_init(&p->own_loop);
        if (uerr != 0) {
            free(p);
            return loom_seterr(LOOM_EIO, "uv_loop_init: %s", uv_strerror(uerr));
        }
        loop = &p->own_loop;
        p->owns_loop = true;
    }
    p->loop = loop;
    p->state = PROC_RUNNING;
    *out = p;
    return 0;
}

uv_loop_t *loom_proc_loop(const loom_proc *p)
{
    return p->loop;
}

int loom_proc_on(loom_proc *p, loom_proc_kind kind, loom_proc_handler h, void *user)
{
    if ((int)kind < LOOM_PROC_INIT || (int)kind > LOOM_PROC_KIND_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "unknown process kind %d", (int)kind);
    p->handlers[kind].fn = h;
    p->handlers[kind].user = user;
    return 0;
}

int loom_proc_listen(loom_proc *p, const char *addr)
{
    if (p->state != PROC_RUNNING)
        return loom_seterr(LOOM_ESHUTTING_DOWN, "processor is shutting down");
    if (p->n_listeners == PROC_MAX_LISTENERS)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "at most %d listeners", PROC_MAX_LISTENERS);
    /* A peer that goes away while a reply is being written must cost an
     * EPIPE on that connection, not the whole process. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    loom_conn_options co;
    loom_conn_options_init(&co);
    co.max_frame = p->opts.max_frame;
    static const loom_conn_callbacks cb = {.on_envelope = on_envelope_entry,
                                           .on_close = on_close_entry};
    loom_listener *l;
    int err = loom_listen(p->loop, addr, &co, &cb, on_accept, p, &l);
    if (err != 0)
        return err;
    p->listeners[p->n_listeners++] = l;
    int port = loom_listener_port(l);
    if (port > 0)
        p->port = port;
    return 0;
}

int loom_proc_port(const loom_proc *p)
{
    return p->port;
}

size_t loom_proc_in_flight(const loom_proc *p)
{
    return p->in_flight;
}

/* ------------------------------------------------------------ shutdown */

static void on_grace_closed(uv_handle_t *h)
{
    loom_proc *p = h->data;
    p->grace_open = false;
    shutdown_advance(p);
}

/* Answers every request still attached and lets its handler finish on
 * its own: the request is detached, its later loom_proc_done only frees. */
static void fail_remaining(loom_proc *p)
{
    while (p->reqs != NULL) {
        loom_proc_req *r = p->reqs;
        if (r->pc != NULL)
            send_failure(r->pc, r->correlation_id, true, "processor shutting down");
        r->pc = NULL;
        req_unlink(r);
    }
}

static void enter_closing(loom_proc *p)
{
    LOOM_ASSERT(p->state == PROC_DRAINING);
    p->state = PROC_CLOSING;
    fail_remaining(p);
    uv_timer_stop(&p->grace);
    uv_close((uv_handle_t *)&p->grace, on_grace_closed);
    /* The "shutting down" answers just queued must still reach Loom. */
    for (proc_conn *pc = p->conns; pc != NULL; pc = pc->next)
        loom_conn_close_after_flush(pc->conn, 0, "processor shutting down", PROC_LINGER_MS);
}

static void shutdown_advance(loom_proc *p)
{
    if (p->state == PROC_DRAINING && p->in_flight == 0) {
        enter_closing(p);
        return;
    }
    if (p->state == PROC_CLOSING && p->n_conns == 0 && !p->grace_open) {
        p->state = PROC_DONE;
        if (p->on_shutdown != NULL)
            p->on_shutdown(p, p->shutdown_user);
    }
}

static void on_grace_over(uv_timer_t *t)
{
    loom_proc *p = t->data;
    if (p->state == PROC_DRAINING)
        enter_closing(p);
}

void loom_proc_shutdown(loom_proc *p, uint64_t grace_ms, loom_proc_shutdown_cb done, void *user)
{
    if (p->state != PROC_RUNNING)
        return;
    p->state = PROC_DRAINING;
    p->on_shutdown = done;
    p->shutdown_user = user;
    for (size_t i = 0; i < p->n_listeners; i++)
        loom_listener_close(p->listeners[i]);
    p->n_listeners = 0;
    uv_timer_init(p->loop, &p->grace);
    p->grace.data = p;
    p->grace_open = true;
    uv_timer_start(&p->grace, on_grace_over, grace_ms, 0);
    shutdown_advance(p);
}

void loom_proc_free(loom_proc *p)
{
    if (p == NULL)
        return;
    LOOM_ASSERT(p->state == PROC_DONE || (p->n_listeners == 0 && p->n_conns == 0));
    LOOM_ASSERT(p->in_flight == 0);
    if (p->owns_loop) {
        /* Let the listeners' and handlers' pending closes run. */
        uv_run(p->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(p->loop) != 0)
            fprintf(stderr, "loom-proc: loop still has open handles at free\n");
    }
    free(p);
}

static void on_run_shutdown(loom_proc *p, void *user)
{
    (void)p;
    (void)user;
}

static void on_signal(uv_signal_t *s, int signum)
{
    loom_proc *p = s->data;
    (void)signum;
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    loom_proc_shutdown(p, p->run_grace_ms, on_run_shutdown, NULL);
}

int loom_proc_run(loom_proc *p, uint64_t grace_ms)
{
    p->run_grace_ms = grace_ms;
    uv_signal_init(p->loop, &p->sigint);
    uv_signal_init(p->loop, &p->sigterm);
    p->sigint.data = p->sigterm.data = p;
    int uerr = uv_signal_start(&p->sigint, on_signal, SIGINT);
    if (uerr == 0)
        uerr = uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    if (uerr != 0) {
        uv_close((uv_handle_t *)&p->sigint, NULL);
        uv_close((uv_handle_t *)&p->sigterm, NULL);
        uv_run(p->loop, UV_RUN_NOWAIT);
        return loom_seterr(LOOM_EIO, "uv_signal_start: %s", uv_strerror(uerr));
    }
    /* Returns once the signal watchers, listeners, connections and every
     * handler's own handles are closed. */
    uv_run(p->loop, UV_RUN_DEFAULT);
    LOOM_ASSERT(p->state == PROC_DONE);
    loom_proc_free(p);
    return 0;
}

/* ------------------------------------------------------------ request access */

static loom_proc_bytes bytes_of(ProtobufCBinaryData b)
{
    loom_proc_bytes out = {.data = b.data != NULL ? b.data : (const uint8_t *)"", .len = b.len};
    return out;
}

loom_proc_kind loom_proc_req_kind(const loom_proc_req *r)
{
    return (loom_proc_kind)r->pr->kind;
}

const char *loom_proc_req_ns(const loom_proc_req *r)
{
    return r->pr->machine->ns;
}

const char *loom_proc_req_id(const loom_proc_req *r)
{
    return r->pr->machine->id;
}

loom_proc_bytes loom_proc_req_args(const loom_proc_req *r)
{
    return bytes_of(r->pr->args);
}

loom_proc_bytes loom_proc_req_aux_state(const loom_proc_req *r)
{
    return bytes_of(r->pr->machine->aux_state);
}

uint64_t loom_proc_req_last_event_id(const loom_proc_req *r)
{
    return r->pr->machine->last_event_id;
}

int64_t loom_proc_req_timer_deadline_ms(const loom_proc_req *r)
{
    return r->pr->machine->timer_deadline_ms;
}

uint32_t loom_proc_req_attempt(const loom_proc_req *r)
{
    return r->pr->attempt;
}

uint64_t loom_proc_req_notification_id(const loom_proc_req *r)
{
    return r->pr->notification_id;
}

int64_t loom_proc_req_deadline_ms(const loom_proc_req *r)
{
    return r->pr->deadline_ms;
}

bool loom_proc_req_abandoned(const loom_proc_req *r)
{
    return r->pc == NULL;
}

size_t loom_proc_req_event_count(const loom_proc_req *r)
{
    return r->pr->machine->n_history;
}

void loom_proc_req_history(const loom_proc_req *r, loom_proc_history *it)
{
    it->req = r;
    it->next = 0;
}

int loom_proc_history_next(loom_proc_history *it, loom_proc_event *ev)
{
    const Loom__V1__Machine *m = it->req->pr->machine;
    if (it->next >= m->n_history)
        return 0;
    const Loom__V1__Event *e = m->history[it->next++];
    ev->id = e->id;
    ev->created_at_ms = e->created_at_ms;
    ev->format_version = e->format_version;
    ev->data = bytes_of(e->data);
    return 1;
}

/* ------------------------------------------------------------ building */

static int copy_bytes(const void *data, size_t len, uint8_t **out)
{
    if (data == NULL && len > 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "NULL data of %zu bytes", len);
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        return loom_seterr(LOOM_ENOMEM, "%zu bytes", len);
    if (len > 0)
        memcpy(copy, data, len);
    *out = copy;
    return 0;
}

/* A request is valid from dispatch until loom_proc_done frees it. */
static int check_open(const loom_proc_req *r)
{
    LOOM_ASSERT(r != NULL);
    LOOM_ASSERT(r->env != NULL);
    return 0;
}

int loom_proc_append_event(loom_proc_req *r, uint32_t format_version, const void *data, size_t len)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    if (r->n_events >= r->max_events)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "more than %zu events in one result",
                           r->max_events);
    if (r->n_events == r->cap_events) {
        size_t cap = r->cap_events ? r->cap_events * 2 : 4;
        Loom__V1__NewEvent *grown = realloc(r->events, cap * sizeof *grown);
        if (grown == NULL)
            return loom_seterr(LOOM_ENOMEM, "%zu events", cap);
        r->events = grown;
        r->cap_events = cap;
    }
    uint8_t *copy;
    err = copy_bytes(data, len, &copy);
    if (err != 0)
        return err;
    Loom__V1__NewEvent ev = LOOM__V1__NEW_EVENT__INIT;
    ev.format_version = format_version;
    ev.data.data = copy;
    ev.data.len = len;
    r->events[r->n_events++] = ev;
    return 0;
}

int loom_proc_set_aux_state(loom_proc_req *r, const void *data, size_t len)
{
    int err = check_open(r);
    uint8_t *copy = NULL;
    if (err == 0)
        err = copy_bytes(data, len, &copy);
    if (err != 0)
        return err;
    free(r->aux);
    r->aux = copy;
    r->aux_len = len;
    r->set_aux = true;
    return 0;
}

static void set_range(loom_proc_req *r, const loom_proc_range *range)
{
    r->has_range = range != NULL;
    if (range != NULL)
        r->range = *range;
}

int loom_proc_set_timer_timeout(loom_proc_req *r, uint64_t timeout_ms, const loom_proc_range *range)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    r->timer = TIMER_TIMEOUT;
    r->timeout_ms = timeout_ms;
    set_range(r, range);
    return 0;
}

int loom_proc_set_timer_deadline(loom_proc_req *r, int64_t deadline_ms,
                                 const loom_proc_range *range)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    if (deadline_ms <= 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "timer deadline %lld is not a unix time",
                           (long long)deadline_ms);
    r->timer = TIMER_DEADLINE;
    r->deadline_ms = deadline_ms;
    set_range(r, range);
    return 0;
}

int loom_proc_unset_timer(loom_proc_req *r)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    r->timer = TIMER_UNSET;
    r->has_range = false;
    return 0;
}

int loom_proc_remove(loom_proc_req *r)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    r->remove = true;
    return 0;
}

int loom_proc_respond(loom_proc_req *r, const void *data, size_t len)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    int kind = (int)r->pr->kind;
    if (kind != LOOM_PROC_CALL && kind != LOOM_PROC_REPAIR)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "a %s signal has no response", kind_name(kind));
    uint8_t *copy;
    err = copy_bytes(data, len, &copy);
    if (err != 0)
        return err;
    free(r->response);
    r->response = copy;
    r->response_len = len;
    return 0;
}

int loom_proc_fail(loom_proc_req *r, bool retryable, const char *fmt, ...)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    /* A cut inside a character would make the reply unsendable. */
    loom_utf8_trim(r->reason);
    r->failed = true;
    r->retryable = retryable;
    return 0;
}

int loom_proc_refuse_repair(loom_proc_req *r, const char *reason)
{
    int err = check_open(r);
    if (err != 0)
        return err;
    if ((int)r->pr->kind != LOOM_PROC_REPAIR)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "refusing a %s: only repairs are refused",
                           kind_name((int)r->pr->kind));
    return loom_proc_fail(r, false, "%s", reason != NULL ? reason : "repair refused");
}

void loom_proc_done(loom_proc_req *r)
{
    check_open(r);
    if (r->pc != NULL) {
        if (r->failed)
            send_failure(r->pc, r->correlation_id, r->retryable, r->reason);
        else
            send_result(r);
    }
    loom_proc *p = r->p;
    if (p != NULL)
        req_unlink(r);
    req_free(r);
    if (p != NULL)
        shutdown_advance(p);
}
