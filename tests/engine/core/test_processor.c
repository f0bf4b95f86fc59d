/* loom-test-processor: a processor for the engine's end-to-end tests, on
 * plain sockets so it can misbehave at the byte level.
 *
 *   loom-test-processor --listen unix:PATH --log FILE
 *
 * It appends one line per request to FILE ("<unix ms> <kind> <id>
 * <attempt> <last_event_id>"), and "OVERLAP <id>" when a request for a
 * machine arrives while another of the same machine is unanswered, and
 * "MISMATCH <id> <got> <want>" when a request's last_event_id is not what
 * its previous reply implied (a lost or interleaved step).
 *
 * Behaviour is driven by the call's args and by the machine's aux_state
 * ("mode"), so one processor serves many machines that behave differently:
 *   INIT         one event "init"; aux_state = args when args start with
 *                "mode:" (the rest), else "ok"
 *   CALL args:   "append"       one event (data = args), response "ok"
 *                "timer:N"      set a timer N ms from now, response "timer"
 *                "mode:M"       set aux_state to M (no event)
 *                "fail"         Failure (not retryable)
 *                "sleep:N"      append after N ms
 *                "remove"       one event, then remove the machine
 *                "events:N"     N events (to test the per-step limit)
 *                "badtimer"     a timer deadline 20 years ahead (BAD_REPLY)
 *                "big:N"        one event of N bytes
 *   TIMEOUT/NOTIFICATION, by mode:
 *                "ok"           one event ("tick" / the notification args)
 *                "fail"         retryable Failure
 *                "fatal"        non-retryable Failure
 *                "hang"         never answer
 *                "crash"        exit(3) at once
 *                "garbage"      write bytes that are no frame
 *                "badreply"     a ProcessReply with no outcome
 *   REPAIR args: "refuse"       Failure; else aux_state "ok", event
 *                "repaired", response "repaired"
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loom/wire.h"

#define MAX_CONNS 16
#define MAX_DELAYED 4096
#define MAX_TRACK 4096

typedef struct conn {
    int fd;
    loom_frame_reader rd;
} conn;

typedef struct delayed {
    int64_t due_ms;
    int fd;
    uint8_t *frame;
    size_t len;
    char id[256];
} delayed;

typedef struct track {
    char id[256];
    uint64_t expect_last; /* 0 = unknown */
    int in_flight;
} track;

static conn conns[MAX_CONNS];
static delayed dq[MAX_DELAYED];
static size_t n_dq;
static track tr[MAX_TRACK];
static size_t n_tr;
static FILE *logf;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static track *find_track(const char *id)
{
    for (size_t i = 0; i < n_tr; i++)
        if (strcmp(tr[i].id, id) == 0)
            return &tr[i];
    if (n_tr == MAX_TRACK)
        return NULL;
    track *t = &tr[n_tr++];
    snprintf(t->id, sizeof t->id, "%s", id);
    return t;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static const char *kind_name(int k)
{
    static const char *names[] = {"unspecified",  "init",   "timeout",
                                  "notification", "repair", "call"};
    return k >= 0 && k <= 5 ? names[k] : "unknown";
}

/* The request's args as a NUL-terminated string (args are bytes). */
static char argstr[1024];

static bool args_is(const ProtobufCBinaryData *a, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (a->len < n || memcmp(a->data, prefix, n) != 0)
        return false;
    if (rest)
        *rest = argstr + n;
    return true;
}

typedef struct reply {
    Loom__V1__ProcessReply pr;
    Loom__V1__ProcessResult res;
    Loom__V1__Failure failure;
    Loom__V1__Action action;
    Loom__V1__SetTimer timer;
    Loom__V1__NewEvent ev[64];
    Loom__V1__NewEvent *evp[64];
    Loom__V1__NewEvent **many;
    char buf[512];
} reply;

static void add_event(reply *r, const void *data, size_t len)
{
    size_t i = r->res.n_events;
    if (i >= 64)
        return;
    loom__v1__new_event__init(&r->ev[i]);
    r->ev[i].format_version = 1;
    r->ev[i].data.data = (uint8_t *)data;
    r->ev[i].data.len = len;
    r->evp[i] = &r->ev[i];
    r->res.n_events = i + 1;
    r->res.events = r->evp;
}

static void set_failure(reply *r, const char *reason, bool retryable)
{
    r->pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE;
    r->pr.failure = &r->failure;
    r->failure.reason = (char *)reason;
    r->failure.retryable = retryable;
}

static void set_aux(reply *r, const char *aux)
{
    r->res.set_aux_state = true;
    r->res.aux_state.data = (uint8_t *)aux;
    r->res.aux_state.len = strlen(aux);
}

static char aux_copy[256];

/* Returns the delay in ms for the reply, or -1 for "never answer". */
static int64_t on_call(const Loom__V1__ProcessRequest *q, reply *r)
{
    const ProtobufCBinaryData *a = &q->args;
    const char *rest;
    static char data[1024];
    size_t dl = a->len < sizeof data ? a->len : sizeof data;
    if (dl)
        memcpy(data, a->data, dl);
    r->res.response.data = (uint8_t *)"ok";
    r->res.response.len = 2;
    if (args_is(a, "timer:", &rest)) {
        r->action.timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
        r->action.set_timer = &r->timer;
        r->timer.when_case = LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS;
        r->timer.timeout_ms = strtoull(rest, NULL, 10);
        r->res.action = &r->action;
        r->res.response.data = (uint8_t *)"timer";
        r->res.response.len = 5;
    } else if (args_is(a, "mode:", &rest)) {
        snprintf(aux_copy, sizeof aux_copy, "%.*s", (int)(a->len - 5), rest);
        set_aux(r, aux_copy);
    } else if (args_is(a, "fail", NULL)) {
        set_failure(r, "call refused by the test processor", false);
    } else if (args_is(a, "sleep:", &rest)) {
        add_event(r, data, dl);
        return strtoll(rest, NULL, 10);
    } else if (args_is(a, "remove", NULL)) {
        add_event(r, data, dl);
        r->action.remove = true;
        r->res.action = &r->action;
    } else if (args_is(a, "events:", &rest)) {
        size_t n = strtoull(rest, NULL, 10);
        r->many = calloc(n ? n : 1, sizeof *r->many);
        for (size_t i = 0; r->many && i < n; i++) {
            r->many[i] = &r->ev[0];
        }
        loom__v1__new_event__init(&r->ev[0]);
        r->res.events = r->many;
        r->res.n_events = r->many ? n : 0;
    } else if (args_is(a, "big:", &rest)) {
        static uint8_t *big;
        size_t n = strtoull(rest, NULL, 10);
        free(big);
        big = calloc(1, n ? n : 1);
        if (big)
            add_event(r, big, n);
    } else if (args_is(a, "badtimer", NULL)) {
        r->action.timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
        r->action.set_timer = &r->timer;
        r->timer.when_case = LOOM__V1__SET_TIMER__WHEN_DEADLINE_MS;
        r->timer.deadline_ms = now_ms() + 20ll * 366 * 24 * 3600 * 1000;
        r->res.action = &r->action;
    } else {
        add_event(r, data, dl);
    }
    return 0;
}

/* Timer and notification signals follow the machine's mode (aux_state). */
static int64_t on_signal(const Loom__V1__ProcessRequest *q, reply *r, int fd)
{
    char mode[64] = "ok";
    if (q->machine && q->machine->aux_state.len && q->machine->aux_state.len < sizeof mode) {
        memcpy(mode, q->machine->aux_state.data, q->machine->aux_state.len);
        mode[q->machine->aux_state.len] = 0;
    }
    if (!strcmp(mode, "fail")) {
        set_failure(r, "temporary failure", true);
    } else if (!strcmp(mode, "fatal")) {
        set_failure(r, "permanent failure", false);
    } else if (!strcmp(mode, "hang")) {
        return -1;
    } else if (!strcmp(mode, "crash")) {
        fflush(logf);
        _exit(3);
    } else if (!strcmp(mode, "garbage")) {
        static const uint8_t junk[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
        write_all(fd, junk, sizeof junk);
        return -1;
    } else if (!strcmp(mode, "badreply")) {
        r->pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME__NOT_SET;
    } else if (q->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT) {
        add_event(r, "tick", 4);
    } else {
        static char data[1024];
        size_t dl = q->args.len < sizeof data ? q->args.len : sizeof data;
        if (dl)
            memcpy(data, q->args.data, dl);
        add_event(r, data, dl);
    }
    return 0;
}

static int64_t on_request(const Loom__V1__ProcessRequest *q, reply *r, int fd)
{
    const ProtobufCBinaryData *a = &q->args;
    size_t al = a->len < sizeof argstr - 1 ? a->len : sizeof argstr - 1;
    if (al)
        memcpy(argstr, a->data, al);
    argstr[al] = 0;
    switch (q->kind) {
    case LOOM__V1__PROCESS_KIND__PROCESS_INIT: {
        const char *rest;
        add_event(r, "init", 4);
        if (args_is(a, "mode:", &rest)) {
            snprintf(aux_copy, sizeof aux_copy, "%.*s", (int)(a->len - 5), rest);
            set_aux(r, aux_copy);
        } else {
            set_aux(r, "ok");
        }
        if (args_is(a, "fail", NULL))
            set_failure(r, "init refused", false);
        return 0;
    }
    case LOOM__V1__PROCESS_KIND__PROCESS_CALL:
        return on_call(q, r);
    case LOOM__V1__PROCESS_KIND__PROCESS_REPAIR:
        if (args_is(a, "refuse", NULL)) {
            set_failure(r, "repair refused", false);
            return 0;
        }
        add_event(r, "repaired", 8);
        set_aux(r, "ok");
        r->res.response.data = (uint8_t *)"repaired";
        r->res.response.len = 8;
        return 0;
    default:
        return on_signal(q, r, fd);
    }
}

static void log_request(const Loom__V1__ProcessRequest *q, track *t)
{
    const char *id = q->machine && q->machine->id ? q->machine->id : "?";
    uint64_t last = q->machine ? q->machine->last_event_id : 0;
    fprintf(logf, "%lld %s %s %u %llu\n", (long long)now_ms(), kind_name(q->kind), id, q->attempt,
            (unsigned long long)last);
    if (t && t->in_flight > 0)
        fprintf(logf, "OVERLAP %s\n", id);
    if (t && t->expect_last && last != t->expect_last &&
        q->kind == LOOM__V1__PROCESS_KIND__PROCESS_CALL)
        fprintf(logf, "MISMATCH %s %llu %llu\n", id, (unsigned long long)last,
                (unsigned long long)t->expect_last);
    fflush(logf);
}

static void send_reply(int fd, uint64_t corr, reply *r, int64_t delay, const char *id)
{
    loom_envelope env;
    loom__v1__envelope__init(&env);
    env.correlation_id = corr;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    env.process_reply = &r->pr;
    uint8_t *frame;
    size_t len;
    if (loom_envelope_encode(&env, 64u << 20, &frame, &len) != 0)
        return;
    if (delay <= 0 || n_dq == MAX_DELAYED) {
        write_all(fd, frame, len);
        free(frame);
        track *t = find_track(id);
        if (t)
            t->in_flight--;
        return;
    }
    dq[n_dq] = (delayed){now_ms() + delay, fd, frame, len, ""};
    snprintf(dq[n_dq].id, sizeof dq[n_dq].id, "%s", id);
    n_dq++;
}

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    int fd = *(int *)ctx;
    loom_envelope *env;
    if (loom_envelope_decode(payload, len, &env) != 0)
        return 1;
    if (env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS || !env->process) {
        loom_envelope_free(env);
        return 1;
    }
    const Loom__V1__ProcessRequest *q = env->process;
    const char *id = q->machine && q->machine->id ? q->machine->id : "?";
    track *t = find_track(id);
    log_request(q, t);
    reply r;
    memset(&r, 0, sizeof r);
    loom__v1__process_reply__init(&r.pr);
    loom__v1__process_result__init(&r.res);
    loom__v1__failure__init(&r.failure);
    loom__v1__action__init(&r.action);
    loom__v1__set_timer__init(&r.timer);
    r.pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
    r.pr.result = &r.res;
    int64_t delay = on_request(q, &r, fd);
    if (t && r.pr.outcome_case == LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT)
        t->expect_last = (q->machine ? q->machine->last_event_id : 0) + r.res.n_events;
    if (delay >= 0) {
        if (t)
            t->in_flight++;
        send_reply(fd, env->correlation_id, &r, delay, id);
    }
    free(r.many);
    loom_envelope_free(env);
    return 0;
}

static int listen_on(const char *addr)
{
    if (strncmp(addr, "unix:", 5) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 5);
    unlink(sa.sun_path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64))
        return -1;
    return fd;
}

static void flush_due(void)
{
    int64_t now = now_ms();
    size_t k = 0;
    for (size_t i = 0; i < n_dq; i++) {
        if (dq[i].due_ms <= now) {
            write_all(dq[i].fd, dq[i].frame, dq[i].len);
            free(dq[i].frame);
            track *t = find_track(dq[i].id);
            if (t)
                t->in_flight--;
        } else {
            dq[k++] = dq[i];
        }
    }
    n_dq = k;
}

static void drop_conn(conn *c)
{
    close(c->fd);
    loom_frame_reader_free(&c->rd);
    c->fd = -1;
    /* a lost connection's steps will be re-sent: forget them */
    for (size_t i = 0; i < n_tr; i++)
        tr[i].in_flight = 0;
}

static void serve(int lfd)
{
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    for (;;) {
        struct pollfd p[MAX_CONNS + 1];
        p[0] = (struct pollfd){lfd, POLLIN, 0};
        for (int i = 0; i < MAX_CONNS; i++)
            p[i + 1] = (struct pollfd){conns[i].fd, POLLIN, 0};
        int timeout = n_dq ? 5 : 1000;
        if (poll(p, MAX_CONNS + 1, timeout) < 0 && errno != EINTR)
            return;
        flush_due();
        if (p[0].revents & POLLIN) {
            int fd = accept(lfd, NULL, NULL);
            for (int i = 0; fd >= 0 && i < MAX_CONNS; i++)
                if (conns[i].fd < 0) {
                    conns[i].fd = fd;
                    loom_frame_reader_init(&conns[i].rd, 64u << 20);
                    fd = -1;
                }
            if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            uint8_t buf[65536];
            ssize_t n = read(conns[i].fd, buf, sizeof buf);
            if (n <= 0 ||
                loom_frame_reader_feed(&conns[i].rd, buf, (size_t)n, on_frame, &conns[i].fd))
                drop_conn(&conns[i]);
        }
    }
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *log_path = "/dev/null";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen"))
            addr = argv[i + 1];
        else if (!strcmp(argv[i], "--log"))
            log_path = argv[i + 1];
    }
    if (!addr) {
        fprintf(stderr, "usage: loom-test-processor --listen unix:PATH [--log FILE]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    logf = fopen(log_path, "a");
    int lfd = listen_on(addr);
    if (!logf || lfd < 0) {
        fprintf(stderr, "loom-test-processor: cannot listen on %s or open %s\n", addr, log_path);
        return 1;
    }
    serve(lfd);
    return 0;
}
