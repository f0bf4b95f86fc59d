/* loom_client: the connection, the table of outstanding requests and the
 * blocking send/wait loops.
 *
 * The socket is non-blocking and every wait is a poll(2) bounded by the
 * request's deadline. While a send waits for room in the socket buffer it
 * also reads, so a long pipeline never deadlocks against a server that is
 * itself blocked writing replies to us. */
#include "client_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Bounds the work of one read pass so a flood of replies cannot starve
 * the deadline checks. */
#define READ_CHUNK_BYTES (64u * 1024u)
#define READS_PER_PASS 32

typedef struct pending {
    uint64_t corr;
    int expect_case;      /* reply body that answers this request */
    uint64_t deadline_ms; /* monotonic */
    loom_envelope *reply; /* non-NULL once arrived */
} pending;

struct loom_client {
    int fd;
    loom_client_options o;
    loom_frame_reader reader;
    uint64_t next_corr;
    pending *pend; /* in send order; capacity o.max_pending */
    uint32_t n_pend;
    int broken; /* 0, or the code every later call returns */
    char broken_reason[256];
    char errmsg[1024];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int poll_ms_until(uint64_t deadline_ms)
{
    uint64_t now = now_ms();
    if (now >= deadline_ms)
        return 0;
    uint64_t left = deadline_ms - now;
    return left > 60000 ? 60000 : (int)left;
}

int loom_client__fail(loom_client *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    loom_utf8_trim(c->errmsg); /* callers show it, loomctl as JSON too */
    return err;
}

/* The connection can no longer carry frames: remember why, once. */
static void client_break(loom_client *c, int err, const char *reason)
{
    LOOM_ASSERT(err < 0);
    if (c->broken)
        return;
    c->broken = err;
    snprintf(c->broken_reason, sizeof c->broken_reason, "%s", reason);
    loom_utf8_trim(c->broken_reason);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

void loom_client_options_init(loom_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 5000;
    o->request_timeout_ms = 30000;
    o->max_frame = LOOM_FRAME_MAX_DEFAULT;
    o->max_pending = 1024;
}

/* ------------------------------------------------------------ connect */

static int sockaddr_of(const loom_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (a->is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        size_t n = strnlen(a->path, sizeof a->path);
        if (n == 0 || n >= sizeof un->sun_path)
            return LOOM_EINVALID_ARGUMENT;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, a->path, n);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    *ss = a->inet;
    if (ss->ss_family == AF_INET)
        *len = sizeof(struct sockaddr_in);
    else if (ss->ss_family == AF_INET6)
        *len = sizeof(struct sockaddr_in6);
    else
        return LOOM_EINVALID_ARGUMENT;
    return 0;
}

static int connect_error(int e, const char *addr)
{
    if (e == ENOMEM || e == ENOBUFS)
        return loom_seterr(LOOM_ENOMEM, "connect %s: %s", addr, strerror(e));
    return loom_seterr(LOOM_ECLOSED, "connect %s: %s", addr, strerror(e));
}

/* Waits for a non-blocking connect to finish. A unix socket whose accept
 * backlog is full says EAGAIN instead of EINPROGRESS: retry until the
 * deadline rather than fail a loaded server. */
static int connect_fd(int fd, const struct sockaddr_storage *ss, socklen_t len, const char *addr,
                      uint64_t deadline_ms)
{
    for (;;) {
        if (connect(fd, (const struct sockaddr *)ss, len) == 0)
            return 0;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN) {
            if (now_ms() >= deadline_ms)
                return loom_seterr(LOOM_ETIMEOUT, "connect %s: backlog full", addr);
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (e != EINPROGRESS)
            return connect_error(e, addr);
        break;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int n = poll(&p, 1, poll_ms_until(deadline_ms));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return connect_error(errno, addr);
        if (n > 0)
            break;
        if (now_ms() >= deadline_ms)
            return loom_seterr(LOOM_ETIMEOUT, "connect %s: no answer in time", addr);
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return connect_error(errno, addr);
    return soerr ? connect_error(soerr, addr) : 0;
}

static int open_socket(const char *addr, uint32_t timeout_ms, int *fd_out)
{
    loom_addr a;
    int rc = loom_addr_parse(addr, &a);
    if (rc < 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "bad address '%s' (want unix:PATH or "
                           "tcp:HOST:PORT)",
                           addr);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (sockaddr_of(&a, &ss, &len) < 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "bad address '%s'", addr);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return connect_error(errno, addr);
    rc = connect_fd(fd, &ss, len, addr, now_ms() + timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (!a.is_unix) {
        /* Requests are small and latency-bound: do not let Nagle hold them. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    *fd_out = fd;
    return 0;
}

int loom_client_connect(const char *addr, const loom_client_options *o, loom_client **out)
{
    *out = NULL;
    if (addr == NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "no address");
    loom_client_options opts;
    if (o)
        opts = *o;
    else
        loom_client_options_init(&opts);
    if (opts.max_pending == 0 || opts.max_frame == 0 || opts.request_timeout_ms == 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "max_pending, max_frame and "
                                                   "request_timeout_ms must be > 0");
    loom_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return loom_seterr(LOOM_ENOMEM, "client");
    c->pend = calloc(opts.max_pending, sizeof *c->pend);
    if (c->pend == NULL) {
        free(c);
        return loom_seterr(LOOM_ENOMEM, "client pending table");
    }
    c->o = opts;
    c->fd = -1;
    int rc = open_socket(addr, opts.connect_timeout_ms, &c->fd);
    if (rc < 0) {
        free(c->pend);
        free(c);
        return rc;
    }
    loom_frame_reader_init(&c->reader, opts.max_frame);
    *out = c;
    return 0;
}

void loom_client_close(loom_client *c)
{
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].reply)
            loom_envelope_free(c->pend[i].reply);
    free(c->pend);
    loom_frame_reader_free(&c->reader);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

const char *loom_client_errmsg(const loom_client *c)
{
    return c->errmsg;
}

int loom_client_fd(const loom_client *c)
{
    return c->fd;
}

uint32_t loom_client_pending(const loom_client *c)
{
    return c->n_pend;
}

/* ------------------------------------------------------------ pending table */

static pending *find_pending(loom_client *c, uint64_t corr)
{
    for (uint32_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].corr == corr)
            return &c->pend[i];
    return NULL;
}

static void remove_pending(loom_client *c, pending *p)
{
    size_t i = (size_t)(p - c->pend);
    LOOM_ASSERT(i < c->n_pend);
    memmove(&c->pend[i], &c->pend[i + 1], (c->n_pend - i - 1) * sizeof *p);
    c->n_pend--;
}

/* ------------------------------------------------------------ reading */

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    loom_client *c = ctx;
    loom_envelope *env = NULL;
    if (loom_envelope_decode(payload, len, &env) < 0) {
        client_break(c, LOOM_EPROTOCOL, "server sent a frame that is not an Envelope");
        return LOOM_EPROTOCOL;
    }
    pending *p = find_pending(c, env->correlation_id);
    if (p && p->reply == NULL) {
        p->reply = env;
        return 0;
    }
    /* An Error nobody waits for (correlation id 0) is the server's reason
     * for dropping the connection: keep it for the message. */
    if (env->body_case == LOOM__V1__ENVELOPE__BODY_ERROR && env->error && !p &&
        env->correlation_id == 0) {
        snprintf(c->broken_reason, sizeof c->broken_reason, "server: %s (%s)",
                 env->error->message ? env->error->message : "",
                 loom_err_name(-(int)(env->error->code & 0xffff)));
        loom_utf8_trim(c->broken_reason);
    }
    /* Otherwise a late reply to a request that timed out: drop it. */
    loom_envelope_free(env);
    return 0;
}

static void read_failed(loom_client *c, int rc)
{
    char why[256];
    if (rc == LOOM_EFRAME_TOO_LARGE)
        snprintf(why, sizeof why, "reply frame over the %zu-byte limit", c->o.max_frame);
    else if (rc == LOOM_ENOMEM)
        snprintf(why, sizeof why, "out of memory reading a reply");
    else
        return; /* on_frame already broke the connection with its reason */
    client_break(c, rc, why);
}

/* Reads what the socket has, without blocking. */
static void read_some(loom_client *c)
{
    uint8_t buf[READ_CHUNK_BYTES];
    for (int i = 0; i < READS_PER_PASS && !c->broken; i++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            char why[256];
            if (c->broken_reason[0])
                snprintf(why, sizeof why, "%s", c->broken_reason);
            else if (n == 0)
                snprintf(why, sizeof why, "server closed the connection");
            else
                snprintf(why, sizeof why, "read: %s", strerror(errno));
            client_break(c, LOOM_ECLOSED, why);
            return;
        }
        int rc = loom_frame_reader_feed(&c->reader, buf, (size_t)n, on_frame, c);
        if (rc < 0) {
            read_failed(c, rc);
            return;
        }
    }
}

/* Sleeps in poll until the socket is readable (and writable when asked)
 * or the deadline; reads whatever came. Returns poll's revents. */
static short wait_io(loom_client *c, short events, uint64_t deadline_ms)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    int n = poll(&p, 1, poll_ms_until(deadline_ms));
    if (n <= 0)
        return 0; /* timeout or EINTR: the caller rechecks its deadline */
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        read_some(c);
    return p.revents;
}

/* ------------------------------------------------------------ sending */

static int write_frame(loom_client *c, const uint8_t *buf, size_t len, uint64_t deadline_ms)
{
    size_t off = 0;
    while (off < len) {
        if (c->broken)
            return c->broken;
        ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            char why[256];
            snprintf(why, sizeof why, "write: %s", strerror(errno));
            client_break(c, LOOM_ECLOSED, why);
            return LOOM_ECLOSED;
        }
        if (now_ms() >= deadline_ms) {
            if (off > 0) /* half a frame is on the wire: the stream is lost */
                client_break(c, LOOM_ECLOSED, "a send timed out half-written");
            return LOOM_ETIMEOUT;
        }
        wait_io(c, POLLIN | POLLOUT, deadline_ms);
    }
    return 0;
}

/* Requests cut off by the break report its cause; later ones find the
 * connection closed. */
static int broken_error(loom_client *c, int err)
{
    return loom_client__fail(c, err, "connection unusable: %s", c->broken_reason);
}

int loom_client__send(loom_client *c, loom_envelope *env, int expect_case, uint32_t timeout_ms,
                      uint64_t *corr)
{
    c->errmsg[0] = '\0';
    if (c->broken)
        return broken_error(c, LOOM_ECLOSED);
    if (c->n_pend >= c->o.max_pending)
        return loom_client__fail(c, LOOM_ERESOURCE_EXHAUSTED,
                                 "%u requests outstanding (max_pending)", c->n_pend);
    env->correlation_id = ++c->next_corr;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = loom_envelope_encode(env, c->o.max_frame, &buf, &len);
    if (rc < 0)
        return loom_client__fail(c, rc, "encode request: %s", loom_strerror(rc));
    uint64_t deadline = now_ms() + (timeout_ms ? timeout_ms : c->o.request_timeout_ms);
    /* Registered before writing: the reply may arrive while we still write. */
    pending *p = &c->pend[c->n_pend++];
    *p =
        (pending){.corr = env->correlation_id, .expect_case = expect_case, .deadline_ms = deadline};
    rc = write_frame(c, buf, len, deadline);
    free(buf);
    if (rc < 0) {
        remove_pending(c, find_pending(c, env->correlation_id));
        if (rc == LOOM_ETIMEOUT)
            return loom_client__fail(c, rc, "request not sent within its deadline");
        return broken_error(c, rc);
    }
    *corr = env->correlation_id;
    return 0;
}

int loom_client_send(loom_client *c, loom_envelope *request, uint32_t timeout_ms, uint64_t *corr)
{
    int body = (int)request->body_case;
    /* Every request body's reply is the next field number (proto/loom.proto). */
    if (body < LOOM__V1__ENVELOPE__BODY_START || body > LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES ||
        (body - LOOM__V1__ENVELOPE__BODY_START) % 2 != 0)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "body %d is not a client request",
                                 body);
    return loom_client__send(c, request, body + 1, timeout_ms, corr);
}

/* ------------------------------------------------------------ replies */

static void fill_result(loom_envelope *env, loom_client_result *res)
{
    res->reply = env;
    switch (env->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START_REPLY:
        res->response = env->start_reply->response.data;
        res->response_len = env->start_reply->response.len;
        res->last_event_id = env->start_reply->last_event_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_CALL_REPLY:
        res->response = env->call_reply->response.data;
        res->response_len = env->call_reply->response.len;
        res->last_event_id = env->call_reply->last_event_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_REPAIR_REPLY:
        res->response = env->repair_reply->response.data;
        res->response_len = env->repair_reply->response.len;
        res->last_event_id = env->repair_reply->last_event_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY_REPLY:
        res->notification_id = env->notify_reply->notification_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_GET_MACHINE_REPLY:
        res->machine = env->get_machine_reply->machine;
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_MACHINES_REPLY:
        res->machines = env->list_machines_reply;
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES_REPLY:
        res->namespaces = env->list_namespaces_reply;
        break;
    default:
        break;
    }
}

static int error_reply(loom_client *c, const Loom__V1__Error *e)
{
    /* Code 0 in an Error, or a number no C int can negate, is not a valid
     * failure report. Unknown but plausible codes pass through: newer
     * servers may append codes. */
    if (e->code == 0 || e->code > 0xffff)
        return loom_client__fail(c, LOOM_EPROTOCOL, "server sent error code %u: %s", e->code,
                                 e->message ? e->message : "");
    return loom_client__fail(c, -(int)e->code, "%s", e->message ? e->message : "");
}

/* Takes ownership of env. */
static int finish(loom_client *c, int expect_case, loom_envelope *env, loom_client_result *res)
{
    if (env->body_case == LOOM__V1__ENVELOPE__BODY_ERROR && env->error) {
        int rc = error_reply(c, env->error);
        loom_envelope_free(env);
        return rc;
    }
    bool missing = env->start_reply == NULL; /* any union member: all pointers */
    if ((int)env->body_case != expect_case || missing ||
        (expect_case == LOOM__V1__ENVELOPE__BODY_GET_MACHINE_REPLY &&
         env->get_machine_reply->machine == NULL)) {
        char why[160];
        snprintf(why, sizeof why, "reply body %d does not answer the request (want %d)",
                 (int)env->body_case, expect_case);
        loom_envelope_free(env);
        client_break(c, LOOM_EPROTOCOL, why);
        return loom_client__fail(c, LOOM_EPROTOCOL, "%s", why);
    }
    c->errmsg[0] = '\0';
    if (res)
        fill_result(env, res);
    else
        loom_envelope_free(env);
    return 0;
}

/* Consumes p: returns its reply's outcome or its local failure. */
static int settle(loom_client *c, pending *p, loom_client_result *res)
{
    int expect = p->expect_case;
    loom_envelope *env = p->reply;
    uint64_t corr = p->corr;
    remove_pending(c, p);
    if (env)
        return finish(c, expect, env, res);
    if (c->broken)
        return broken_error(c, c->broken);
    return loom_client__fail(c, LOOM_ETIMEOUT, "no reply to request %llu within its deadline",
                             (unsigned long long)corr);
}

int loom_client_wait(loom_client *c, uint64_t corr, loom_client_result *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    pending *p = find_pending(c, corr);
    if (p == NULL)
        return loom_client__fail(c, LOOM_ENOT_FOUND, "request %llu is not outstanding",
                                 (unsigned long long)corr);
    while (p->reply == NULL && !c->broken && now_ms() < p->deadline_ms) {
        wait_io(c, POLLIN, p->deadline_ms);
        p = find_pending(c, corr);
        LOOM_ASSERT(p != NULL);
    }
    return settle(c, p, res);
}

/* The entry wait_any settles now, or NULL to keep waiting: the oldest
 * answered one, else (connection gone) the oldest, else one whose
 * deadline has passed. */
static pending *ready_pending(loom_client *c, uint64_t now, uint64_t *earliest_deadline)
{
    pending *expired = NULL;
    *earliest_deadline = UINT64_MAX;
    for (uint32_t i = 0; i < c->n_pend; i++) {
        pending *p = &c->pend[i];
        if (p->reply)
            return p;
        if (p->deadline_ms <= now && !expired)
            expired = p;
        if (p->deadline_ms < *earliest_deadline)
            *earliest_deadline = p->deadline_ms;
    }
    if (c->broken && c->n_pend > 0)
        return &c->pend[0];
    return expired;
}

int loom_client_wait_any(loom_client *c, uint64_t *corr, loom_client_result *res)
{
    if (res)
        memset(res, 0, sizeof *res);
    if (c->n_pend == 0)
        return loom_client__fail(c, LOOM_ENOT_FOUND, "no request is outstanding");
    for (;;) {
        uint64_t earliest;
        pending *p = ready_pending(c, now_ms(), &earliest);
        if (p) {
            *corr = p->corr;
            return settle(c, p, res);
        }
        wait_io(c, POLLIN, earliest);
    }
}

void loom_client_result_free(loom_client_result *r)
{
    if (r == NULL)
        return;
    if (r->reply)
        loom_envelope_free(r->reply);
    memset(r, 0, sizeof *r);
}
