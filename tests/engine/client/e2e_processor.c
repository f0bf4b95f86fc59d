/* loom-e2e-processor: a processor for end-to-end tests that does what
 * each request's args say, including the things a real processor must
 * never do. It speaks the wire protocol directly (frame codec, blocking
 * sockets, a thread per connection) so that it can also misbehave.
 *
 *   loom-e2e-processor --listen unix:PATH
 *
 * args (plain text; for a timeout signal the machine's aux_state is read
 * instead, so a timer set by "timer:MS:CMD" runs CMD when it fires; a
 * timeout or repair that succeeds clears aux_state unless it sets it):
 *   "" or "ok"      one event, response "ok:<kind>"
 *   "events:N"      N events (N <= 1000)
 *   "big:N"         one event of N bytes
 *   "fail:R"        Failure{R, retryable=false}
 *   "retry:R"       Failure{R, retryable=true}
 *   "sleep:MS"      answer "ok" after MS milliseconds (from another thread)
 *   "timer:MS:CMD"  one event, set a timer in MS ms, aux_state = CMD
 *   "aux:TEXT"      one event, aux_state = TEXT
 *   "unset"         one event, unset the timer
 *   "remove"        remove the machine
 *   "badreply"      a ProcessReply with no outcome
 *   "wrongbody"     an Envelope whose body is not a ProcessReply
 *   "exit"          exit the whole processor at once, without answering
 * Events are msgpack maps {"kind": K, "args": A, "n": I}; the response to
 * a call or repair is the text "ok:<kind>:<last history id seen>". */
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "loom/wire.h"

#define MAX_EVENTS 1000
#define MAX_BIG_EVENT (8u * 1024u * 1024u)

typedef struct conn {
    int fd;
    pthread_mutex_t write_lock;
    pthread_mutex_t ref_lock;
    int refs;
} conn;

typedef struct delayed {
    conn *c;
    uint64_t corr;
    unsigned ms;
    char kind[16];
} delayed;

static void conn_unref(conn *c)
{
    pthread_mutex_lock(&c->ref_lock);
    int left = --c->refs;
    pthread_mutex_unlock(&c->ref_lock);
    if (left == 0) {
        close(c->fd);
        free(c);
    }
}

static void write_env(conn *c, const loom_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (loom_envelope_encode(env, LOOM_FRAME_MAX_DEFAULT, &buf, &len) != 0) {
        fprintf(stderr, "test-processor: cannot encode a reply\n");
        return;
    }
    pthread_mutex_lock(&c->write_lock);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* loomd went away; its reconnect is its business */
        off += (size_t)n;
    }
    pthread_mutex_unlock(&c->write_lock);
    free(buf);
}

static const char *kind_name(Loom__V1__ProcessKind k)
{
    switch (k) {
    case LOOM__V1__PROCESS_KIND__PROCESS_INIT:
        return "init";
    case LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT:
        return "timeout";
    case LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION:
        return "notification";
    case LOOM__V1__PROCESS_KIND__PROCESS_REPAIR:
        return "repair";
    case LOOM__V1__PROCESS_KIND__PROCESS_CALL:
        return "call";
    default:
        return "unspecified";
    }
}

/* A reply under construction: every buffer it points to is owned here. */
typedef struct reply {
    Loom__V1__ProcessResult result;
    Loom__V1__Action action;
    Loom__V1__SetTimer timer;
    Loom__V1__NewEvent *events;
    Loom__V1__NewEvent **event_ptrs;
    msgpack_sbuffer *bufs;
    size_t n;
    char response[128];
} reply;

static void event_data(msgpack_sbuffer *sb, const char *kind, const char *args, size_t i,
                       size_t big)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (big) {
        char *blob = malloc(big);
        memset(blob, 'x', big);
        msgpack_pack_bin_with_body(&pk, blob, big);
        free(blob);
        return;
    }
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, kind, strlen(kind));
    msgpack_pack_str_with_body(&pk, "args", 4);
    msgpack_pack_str_with_body(&pk, args, strlen(args));
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, (uint64_t)i + 1);
}

static void reply_init(reply *r, const char *kind, const char *args, size_t n, size_t big)
{
    memset(r, 0, sizeof *r);
    loom__v1__process_result__init(&r->result);
    loom__v1__action__init(&r->action);
    loom__v1__set_timer__init(&r->timer);
    r->n = n;
    r->events = calloc(n ? n : 1, sizeof *r->events);
    r->event_ptrs = calloc(n ? n : 1, sizeof *r->event_ptrs);
    r->bufs = calloc(n ? n : 1, sizeof *r->bufs);
    for (size_t i = 0; i < n; i++) {
        loom__v1__new_event__init(&r->events[i]);
        event_data(&r->bufs[i], kind, args, i, big);
        r->events[i].format_version = 1;
        r->events[i].data.data = (uint8_t *)r->bufs[i].data;
        r->events[i].data.len = r->bufs[i].size;
        r->event_ptrs[i] = &r->events[i];
    }
    r->result.n_events = n;
    r->result.events = r->event_ptrs;
    r->result.action = &r->action;
}

static void reply_free(reply *r)
{
    for (size_t i = 0; i < r->n; i++)
        msgpack_sbuffer_destroy(&r->bufs[i]);
    free(r->events);
    free(r->event_ptrs);
    free(r->bufs);
}

static void send_outcome(conn *c, uint64_t corr, Loom__V1__ProcessResult *result,
                         Loom__V1__Failure *failure)
{
    Loom__V1__ProcessReply pr = LOOM__V1__PROCESS_REPLY__INIT;
    if (result) {
        pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
        pr.result = result;
    } else if (failure) {
        pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE;
        pr.failure = failure;
    }
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = corr;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    env.process_reply = &pr;
    write_env(c, &env);
}

static void send_failure(conn *c, uint64_t corr, const char *reason, bool retryable)
{
    Loom__V1__Failure f = LOOM__V1__FAILURE__INIT;
    f.reason = (char *)reason;
    f.retryable = retryable;
    send_outcome(c, corr, NULL, &f);
}

static uint64_t last_seen_event(const Loom__V1__ProcessRequest *req)
{
    const Loom__V1__Machine *m = req->machine;
    return m ? m->last_event_id : 0;
}

/* Builds and sends the result for the "ok"-like commands. */
static void send_result(conn *c, uint64_t corr, const Loom__V1__ProcessRequest *req,
                        const char *cmd, const char *kind)
{
    size_t n = 1, big = 0;
    if (strncmp(cmd, "events:", 7) == 0)
        n = (size_t)strtoul(cmd + 7, NULL, 10);
    if (strncmp(cmd, "big:", 4) == 0)
        big = (size_t)strtoul(cmd + 4, NULL, 10);
    if (n > MAX_EVENTS || big > MAX_BIG_EVENT) {
        send_failure(c, corr, "test-processor: request over its own limits", false);
        return;
    }
    if (strcmp(cmd, "remove") == 0)
        n = 0;
    reply r;
    reply_init(&r, kind, cmd, n, big);
    if (strncmp(cmd, "timer:", 6) == 0) {
        char *rest = NULL;
        r.timer.when_case = LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS;
        r.timer.timeout_ms = strtoull(cmd + 6, &rest, 10);
        r.action.timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
        r.action.set_timer = &r.timer;
        const char *then = rest && *rest == ':' ? rest + 1 : "ok";
        r.result.aux_state.data = (uint8_t *)then;
        r.result.aux_state.len = strlen(then);
        r.result.set_aux_state = 1;
    } else if (strncmp(cmd, "aux:", 4) == 0) {
        r.result.aux_state.data = (uint8_t *)(cmd + 4);
        r.result.aux_state.len = strlen(cmd + 4);
        r.result.set_aux_state = 1;
    } else if (strcmp(cmd, "unset") == 0) {
        r.action.timer_case = LOOM__V1__ACTION__TIMER_UNSET_TIMER;
        r.action.unset_timer = 1;
    } else if (strcmp(cmd, "remove") == 0) {
        r.action.remove = 1;
    }
    if (req->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT ||
        req->kind == LOOM__V1__PROCESS_KIND__PROCESS_REPAIR) {
        /* The timer's command ran (or was repaired away): a timer that
         * fires later finds nothing to run again. */
        r.result.set_aux_state = 1;
        if (strncmp(cmd, "timer:", 6) != 0 && strncmp(cmd, "aux:", 4) != 0)
            r.result.aux_state.len = 0;
    }
    snprintf(r.response, sizeof r.response, "ok:%s:%llu", kind,
             (unsigned long long)last_seen_event(req));
    r.result.response.data = (uint8_t *)r.response;
    r.result.response.len = strlen(r.response);
    send_outcome(c, corr, &r.result, NULL);
    reply_free(&r);
}

static void *delayed_main(void *arg)
{
    delayed *d = arg;
    usleep(d->ms * 1000u);
    Loom__V1__ProcessRequest empty = LOOM__V1__PROCESS_REQUEST__INIT;
    send_result(d->c, d->corr, &empty, "ok", d->kind);
    conn_unref(d->c);
    free(d);
    return NULL;
}

static void answer_later(conn *c, uint64_t corr, unsigned ms, const char *kind)
{
    delayed *d = calloc(1, sizeof *d);
    d->c = c;
    d->corr = corr;
    d->ms = ms;
    snprintf(d->kind, sizeof d->kind, "%s", kind);
    pthread_mutex_lock(&c->ref_lock);
    c->refs++;
    pthread_mutex_unlock(&c->ref_lock);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, delayed_main, d) != 0) {
        conn_unref(c);
        free(d);
    }
    pthread_attr_destroy(&attr);
}

static void misbehave(conn *c, uint64_t corr, bool wrong_body)
{
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = corr;
    Loom__V1__ProcessReply pr = LOOM__V1__PROCESS_REPLY__INIT;
    Loom__V1__StartReply sr = LOOM__V1__START_REPLY__INIT;
    if (wrong_body) {
        env.body_case = LOOM__V1__ENVELOPE__BODY_START_REPLY;
        env.start_reply = &sr;
    } else {
        env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
        env.process_reply = &pr; /* no outcome */
    }
    write_env(c, &env);
}

static void handle(conn *c, const loom_envelope *env)
{
    if (env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS) {
        fprintf(stderr, "test-processor: unexpected body %d\n", (int)env->body_case);
        return;
    }
    const Loom__V1__ProcessRequest *req = env->process;
    const char *kind = kind_name(req->kind);
    char cmd[1024];
    const ProtobufCBinaryData *src = &req->args;
    if (req->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT && req->machine)
        src = &req->machine->aux_state;
    size_t n = src->len < sizeof cmd - 1 ? src->len : sizeof cmd - 1;
    if (n > 0)
        memcpy(cmd, src->data, n);
    cmd[n] = '\0';
    if (n < src->len) /* "fail:R" sends R back as a wire string */
        loom_utf8_trim(cmd);
    fprintf(stderr, "test-processor: %s %s/%s attempt %u: '%s'\n", kind,
            req->machine && req->machine->ns ? req->machine->ns : "?",
            req->machine && req->machine->id ? req->machine->id : "?", req->attempt, cmd);
    uint64_t corr = env->correlation_id;
    if (strncmp(cmd, "fail:", 5) == 0 || strncmp(cmd, "retry:", 6) == 0)
        send_failure(c, corr, strchr(cmd, ':') + 1, cmd[0] == 'r');
    else if (strncmp(cmd, "sleep:", 6) == 0)
        answer_later(c, corr, (unsigned)strtoul(cmd + 6, NULL, 10), kind);
    else if (strcmp(cmd, "badreply") == 0 || strcmp(cmd, "wrongbody") == 0)
        misbehave(c, corr, cmd[0] == 'w');
    else if (strcmp(cmd, "exit") == 0)
        _exit(0);
    else
        send_result(c, corr, req, cmd, kind);
}

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    conn *c = ctx;
    loom_envelope *env = NULL;
    if (loom_envelope_decode(payload, len, &env) != 0) {
        fprintf(stderr, "test-processor: undecodable frame\n");
        return -1;
    }
    handle(c, env);
    loom_envelope_free(env);
    return 0;
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    loom_frame_reader r;
    loom_frame_reader_init(&r, LOOM_FRAME_MAX_DEFAULT);
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || loom_frame_reader_feed(&r, buf, (size_t)n, on_frame, c) != 0)
            break;
    }
    loom_frame_reader_free(&r);
    shutdown(c->fd, SHUT_RDWR);
    conn_unref(c);
    return NULL;
}

static int listen_on(const char *addr)
{
    if (strncmp(addr, "unix:", 5) != 0 ||
        strlen(addr + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "test-processor: --listen wants unix:PATH\n");
        return -1;
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, addr + 5, strlen(addr + 5) + 1);
    unlink(un.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "test-processor: listen %s: %s\n", addr, strerror(errno));
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--listen") != 0) {
        fprintf(stderr, "usage: loom-e2e-processor --listen unix:PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(argv[2]);
    if (lfd < 0)
        return 1;
    fprintf(stderr, "test-processor: listening on %s\n", argv[2]);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "test-processor: accept: %s\n", strerror(errno));
            return 1;
        }
        conn *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->refs = 1;
        pthread_mutex_init(&c->write_lock, NULL);
        pthread_mutex_init(&c->ref_lock, NULL);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
}
