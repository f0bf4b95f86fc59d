/* Framed, pipelined connections and listeners on libuv streams.
 *
 * Connection lifecycle (checked on every move):
 *
 *     loom_conn_connect            connect_cb(ok)
 *   ---------------------> CONNECTING ------------> OPEN
 *                              |                   |   |
 *     accept_cb                |                   |   | loom_conn_close_after_flush
 *   -----------------------------------------------+   | with frames still unsent
 *                              |                   |   v
 *          connect_cb(err),    |  loom_conn_close, |  DRAINING
 *          loom_conn_close     |  EOF, read/write  |   |  last write done,
 *                              |  error, bad frame |   |  linger timer, close
 *                              v                   v   v  or write error
 *                            CLOSING <-----------------+
 *                              |
 *                              |  close_cb: on_close, then free
 *                              v
 *                            (gone)
 *
 * CONNECTING: no reads; sends are held in `held` and submitted on connect.
 * OPEN: reading; every complete frame is decoded and handed to on_envelope.
 *   Frames sent during one loop pass collect in the outbox and go out in
 *   one write from an idle callback, at the start of the next pass: one
 *   syscall for a burst of replies instead of one each.
 * DRAINING: reads stopped, sends refused, the reason already recorded; the
 *   queued frames go out, bounded by the `linger` timer.
 * CLOSING: uv_close was called; no callback but on_close fires again, sends
 *   fail with LOOM_ECLOSED, frames still in the current read are dropped.
 * The struct is freed only in the libuv close callback. */
#include "loom/wire.h"
#include "wire_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (64u * 1024u)
#define PENDING_WRITE_DEFAULT (64u * 1024u * 1024u)
#define LISTEN_BACKLOG 128
#define PEER_MAX 128
#define REASON_MAX 256
/* Frames queued during one loop pass share one buffer and one write; past
 * this size the buffer goes out and a new one starts, so no single write
 * (or allocation) grows without bound. */
#define COALESCE_MAX (256u * 1024u)
#define OUTBOX_MIN 4096u

enum conn_state { CONN_CONNECTING = 1, CONN_OPEN, CONN_DRAINING, CONN_CLOSING };

typedef union loom_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} loom_stream;

/* One write of one or more whole frames; the bytes follow the struct in
 * the same allocation (cap of them allocated, len used). */
typedef struct write_req {
    uv_write_t req;
    struct write_req *next; /* while held before connect */
    loom_conn *conn;
    size_t len;
    size_t cap;
    uint8_t data[];
} write_req;

struct loom_conn {
    loom_stream h;
    uv_connect_t connect_req;
    enum conn_state state;
    loom_conn_options opts;
    loom_conn_callbacks cb;
    void *user;
    loom_frame_reader reader;
    size_t pending_write; /* bytes handed to send and not yet completed */
    write_req *outbox;    /* frames not yet handed to libuv */
    uv_idle_t flush;      /* active while outbox holds frames */
    int handles_open;     /* the stream and flush: freed when both closed */
    write_req *held_head; /* full outboxes waiting for the connect */
    write_req *held_tail;
    uv_timer_t *linger; /* DRAINING only: bounds the wait for the flush */
    int silent;         /* failed before the caller got it: no on_close */
    int close_err;
    char reason[REASON_MAX];
    char peer[PEER_MAX];
};

struct loom_listener {
    loom_stream h;
    loom_conn_options opts;
    loom_conn_callbacks cb;
    loom_accept_cb on_accept;
    void *user;
    int is_unix;
    int closing;
    char path[sizeof(((loom_addr *)0)->path)];
    char name[PEER_MAX - 32]; /* room for the suffixes in set_accepted_peer */
};

int loom__err_from_uv(int e)
{
    switch (e) {
    case 0:
        return 0;
    case UV_ENOMEM:
    case UV_ENOBUFS:
        return LOOM_ENOMEM;
    case UV_EINVAL:
    case UV_EAFNOSUPPORT:
    case UV_ENAMETOOLONG:
        return LOOM_EINVALID_ARGUMENT;
    case UV_EADDRINUSE:
    case UV_EBUSY:
    case UV_EAGAIN:
        return LOOM_EBUSY;
    case UV_ETIMEDOUT:
        return LOOM_ETIMEOUT;
    case UV_EMFILE:
    case UV_ENFILE:
        return LOOM_ERESOURCE_EXHAUSTED;
    case UV_EOF:
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_ENOTCONN:
    case UV_ECANCELED:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_ENOENT: /* unix socket path with nobody listening */
        return LOOM_ECLOSED;
    default:
        return LOOM_EIO;
    }
}

/* Writing to a socket the peer closed raises SIGPIPE, whose default action
 * kills the process; a peer must never be able to do that. Only the
 * default disposition is replaced, so a program's own handler stays. */
static void ignore_sigpipe_once(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static void ignore_sigpipe(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ignore_sigpipe_once);
}

void loom_conn_options_init(loom_conn_options *o)
{
    LOOM_ASSERT(o != NULL);
    o->max_frame = LOOM_FRAME_MAX_DEFAULT;
    o->max_pending_write = PENDING_WRITE_DEFAULT;
}

static void options_copy(loom_conn_options *dst, const loom_conn_options *src)
{
    loom_conn_options_init(dst);
    if (src == NULL)
        return;
    if (src->max_frame != 0)
        dst->max_frame = src->max_frame;
    if (src->max_pending_write != 0)
        dst->max_pending_write = src->max_pending_write;
}

static loom_conn *conn_new(const loom_conn_options *o, const loom_conn_callbacks *cb, void *user)
{
    loom_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    options_copy(&c->opts, o);
    if (cb != NULL)
        c->cb = *cb;
    c->user = user;
    loom_frame_reader_init(&c->reader, c->opts.max_frame);
    c->h.handle.data = c;
    return c;
}

static void held_free_all(loom_conn *c)
{
    write_req *w = c->held_head;
    while (w != NULL) {
        write_req *next = w->next;
        c->pending_write -= w->len;
        free(w);
        w = next;
    }
    c->held_head = NULL;
    c->held_tail = NULL;
    if (c->outbox != NULL) {
        c->pending_write -= c->outbox->len;
        free(c->outbox);
        c->outbox = NULL;
    }
}

static void flush_cb(uv_idle_t *h);

/* Called right after the stream is initialised, so that every path that
 * closes the stream also finds the flush handle ready to close. */
static void conn_handles_init(uv_loop_t *loop, loom_conn *c)
{
    int rc = uv_idle_init(loop, &c->flush);
    LOOM_ASSERT(rc == 0); /* cannot fail on Unix */
    c->flush.data = c;
    c->handles_open = 2;
}

static void conn_close_cb(uv_handle_t *h)
{
    loom_conn *c = h->data;
    LOOM_ASSERT(c->state == CONN_CLOSING);
    if (--c->handles_open > 0)
        return;
    held_free_all(c);
    if (!c->silent && c->cb.on_close != NULL)
        c->cb.on_close(c, c->close_err, c->reason, c->user);
    /* libuv runs every write callback (UV_ECANCELED) before this one. */
    LOOM_ASSERT(c->pending_write == 0);
    loom_frame_reader_free(&c->reader);
    free(c);
}

static void linger_close_cb(uv_handle_t *h)
{
    free(h);
}

/* The one place a connection enters CLOSING. */
static void conn_finish_close(loom_conn *c)
{
    LOOM_ASSERT(c->state != CONN_CLOSING);
    c->state = CONN_CLOSING;
    if (c->linger != NULL) {
        uv_close((uv_handle_t *)c->linger, linger_close_cb);
        c->linger = NULL;
    }
    uv_close((uv_handle_t *)&c->flush, conn_close_cb);
    uv_close(&c->h.handle, conn_close_cb);
}

/* Records why the connection ends; the first reason wins. */
static void conn_set_reason(loom_conn *c, int err, const char *fmt, va_list ap)
{
    c->close_err = err;
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    if (err != 0 && !c->silent)
        fprintf(stderr, "loom: closing connection %s: %s\n", c->peer, c->reason);
}

static void conn_close_fmt(loom_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_close_fmt(loom_conn *c, int err, const char *fmt, ...)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state != CONN_DRAINING) {
        LOOM_ASSERT(c->state == CONN_CONNECTING || c->state == CONN_OPEN);
        va_list ap;
        va_start(ap, fmt);
        conn_set_reason(c, err, fmt, ap);
        va_end(ap);
    }
    conn_finish_close(c);
}

static int outbox_submit(loom_conn *c);

void loom_conn_close(loom_conn *c, int err, const char *reason)
{
    LOOM_ASSERT(c != NULL);
    LOOM_ASSERT(err <= 0);
    /* Frames sent before the close still get the chance a direct write
     * would have given them: libuv writes at once what the socket takes. */
    if (c->state == CONN_OPEN && c->outbox != NULL)
        outbox_submit(c);
    if (reason == NULL)
        reason = err == 0 ? "closed locally" : loom_strerror(err);
    conn_close_fmt(c, err, "%s", reason);
}

static void linger_cb(uv_timer_t *t)
{
    loom_conn *c = t->data;
    LOOM_ASSERT(c->state == CONN_DRAINING);
    conn_finish_close(c);
}

static void conn_note_reason(loom_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_note_reason(loom_conn *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conn_set_reason(c, err, fmt, ap);
    va_end(ap);
}

static void drain_start(loom_conn *c, int err, const char *reason, unsigned linger_ms)
{
    LOOM_ASSERT(c->state == CONN_OPEN);
    LOOM_ASSERT(c->pending_write > 0);
    conn_note_reason(c, err, "%s", reason);
    c->state = CONN_DRAINING;
    uv_read_stop(&c->h.stream);
    c->linger = malloc(sizeof *c->linger);
    if (c->linger == NULL || uv_timer_init(c->h.handle.loop, c->linger) != 0) {
        free(c->linger);
        c->linger = NULL;
        conn_finish_close(c);
        return;
    }
    c->linger->data = c;
    uv_timer_start(c->linger, linger_cb, linger_ms, 0);
}

void loom_conn_close_after_flush(loom_conn *c, int err, const char *reason, unsigned linger_ms)
{
    LOOM_ASSERT(c != NULL);
    LOOM_ASSERT(err <= 0);
    if (c->state != CONN_OPEN || c->pending_write == 0) {
        loom_conn_close(c, err, reason);
        return;
    }
    if (reason == NULL)
        reason = err == 0 ? "closed locally" : loom_strerror(err);
    drain_start(c, err, reason, linger_ms);
}

void loom_conn_set_user(loom_conn *c, void *user)
{
    LOOM_ASSERT(c != NULL);
    c->user = user;
}

void *loom_conn_user(const loom_conn *c)
{
    LOOM_ASSERT(c != NULL);
    return c->user;
}

const char *loom_conn_peer(const loom_conn *c)
{
    LOOM_ASSERT(c != NULL);
    return c->peer;
}

size_t loom_conn_pending_write(const loom_conn *c)
{
    LOOM_ASSERT(c != NULL);
    return c->pending_write;
}

/* ------------------------------------------------------------ reading */

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    loom_conn *c = ctx;
    if (c->state != CONN_OPEN)
        return 1;
    loom_envelope *env;
    int rc = loom_envelope_decode(payload, len, &env);
    if (rc != 0) {
        conn_close_fmt(c, rc, "%s", loom_errdetail());
        return 1;
    }
    if (c->cb.on_envelope != NULL)
        c->cb.on_envelope(c, env, c->user);
    else
        loom_envelope_free(env);
    /* on_envelope may have closed us: deliver nothing more from this read. */
    return c->state == CONN_OPEN ? 0 : 1;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base != NULL ? READ_CHUNK : 0;
}

static void read_eof(loom_conn *c)
{
    if (c->reader.header_len == 0)
        conn_close_fmt(c, 0, "peer closed the connection");
    else if (c->reader.header_len < LOOM_FRAME_HEADER_SIZE)
        conn_close_fmt(c, LOOM_ECLOSED, "peer closed the connection inside a frame header");
    else
        conn_close_fmt(c, LOOM_ECLOSED,
                       "peer closed the connection inside a frame (%zu of %zu bytes)",
                       c->reader.have, c->reader.need);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    loom_conn *c = s->data;
    if (nread > 0 && c->state == CONN_OPEN) {
        int rc = loom_frame_reader_feed(&c->reader, (const uint8_t *)buf->base, (size_t)nread,
                                        on_frame, c);
        if (rc < 0)
            conn_close_fmt(c, rc, "%s", loom_errdetail());
    } else if (nread == UV_ENOBUFS) {
        conn_close_fmt(c, LOOM_ENOMEM, "no memory for a read buffer");
    } else if (nread == UV_EOF) {
        read_eof(c);
    } else if (nread < 0) {
        conn_close_fmt(c, loom__err_from_uv((int)nread), "read: %s", uv_strerror((int)nread));
    }
    free(buf->base);
}

static int conn_start_reading(loom_conn *c)
{
    int rc = uv_read_start(&c->h.stream, alloc_cb, read_cb);
    if (rc != 0)
        conn_close_fmt(c, loom__err_from_uv(rc), "read start: %s", uv_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------ writing */

static void write_cb(uv_write_t *req, int status)
{
    write_req *w = req->data;
    loom_conn *c = w->conn;
    LOOM_ASSERT(c->pending_write >= w->len);
    c->pending_write -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_close_fmt(c, loom__err_from_uv(status), "write: %s", uv_strerror(status));
    else if (c->state == CONN_DRAINING && c->pending_write == 0)
        conn_finish_close(c);
}

static int submit(loom_conn *c, write_req *w)
{
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    w->req.data = w;
    int rc = uv_write(&w->req, &c->h.stream, &b, 1, write_cb);
    if (rc != 0) {
        c->pending_write -= w->len;
        free(w);
        conn_close_fmt(c, loom__err_from_uv(rc), "write: %s", uv_strerror(rc));
        return loom_seterr(LOOM_ECLOSED, "write on %s: %s", c->peer, uv_strerror(rc));
    }
    return 0;
}

/* Hands the outbox to libuv (OPEN, DRAINING) or parks it until the
 * connect (CONNECTING). */
static int outbox_submit(loom_conn *c)
{
    write_req *w = c->outbox;
    LOOM_ASSERT(w != NULL);
    c->outbox = NULL;
    uv_idle_stop(&c->flush);
    if (c->state != CONN_CONNECTING)
        return submit(c, w);
    w->next = NULL;
    if (c->held_tail != NULL)
        c->held_tail->next = w;
    else
        c->held_head = w;
    c->held_tail = w;
    return 0;
}

/* Runs once per loop pass after frames were queued; an active idle handle
 * also keeps the loop from blocking in poll with frames still queued,
 * whichever callback queued them. */
static void flush_cb(uv_idle_t *h)
{
    loom_conn *c = h->data;
    uv_idle_stop(h);
    if (c->outbox != NULL && (c->state == CONN_OPEN || c->state == CONN_DRAINING))
        outbox_submit(c);
}

/* Room for len more bytes at the end of the outbox; the outbox goes out
 * first when the frame would take it past COALESCE_MAX. */
static int outbox_reserve(loom_conn *c, size_t len)
{
    write_req *w = c->outbox;
    if (w != NULL && w->len + len > COALESCE_MAX) {
        int rc = outbox_submit(c);
        if (rc != 0)
            return rc;
        w = NULL;
    }
    size_t need = (w != NULL ? w->len : 0) + len;
    if (w != NULL && need <= w->cap)
        return 0;
    size_t cap = w != NULL ? 2 * w->cap : OUTBOX_MIN;
    if (cap < need)
        cap = need;
    write_req *grown = realloc(w, sizeof *grown + cap);
    if (grown == NULL)
        return loom_seterr(LOOM_ENOMEM, "send buffer of %zu bytes", cap);
    if (w == NULL) {
        grown->conn = c;
        grown->len = 0;
        grown->next = NULL;
    }
    grown->cap = cap;
    c->outbox = grown;
    return 0;
}

int loom_conn_send(loom_conn *c, const loom_envelope *env)
{
    LOOM_ASSERT(c != NULL);
    if (c->state == CONN_CLOSING || c->state == CONN_DRAINING)
        return loom_seterr(LOOM_ECLOSED, "connection %s is closing", c->peer);
    size_t n;
    int rc = loom__envelope_check(env, c->opts.max_frame, &n);
    if (rc != 0)
        return rc;
    size_t len = LOOM_FRAME_HEADER_SIZE + n;
    /* An empty queue always takes one frame, so any legal frame can be sent
     * whatever the limit; the queue is then bounded by limit + one frame. */
    if (c->pending_write > 0 && c->pending_write + len > c->opts.max_pending_write)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED,
                           "send queue of %s holds %zu unsent bytes (limit %zu)", c->peer,
                           c->pending_write, c->opts.max_pending_write);
    rc = outbox_reserve(c, len);
    if (rc != 0)
        return rc;
    write_req *w = c->outbox;
    loom__frame_write(env, w->data + w->len, n);
    w->len += len;
    c->pending_write += len;
    if (c->state != CONN_CONNECTING)
        uv_idle_start(&c->flush, flush_cb);
    return 0;
}

/* ------------------------------------------------------------ connecting */

static void connect_cb(uv_connect_t *req, int status)
{
    loom_conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return; /* closed while connecting: on_close reports it */
    LOOM_ASSERT(c->state == CONN_CONNECTING);
    if (status < 0) {
        int err = loom__err_from_uv(status);
        if (c->cb.on_connect != NULL)
            c->cb.on_connect(c, err, c->user);
        conn_close_fmt(c, err, "connect: %s", uv_strerror(status));
        return;
    }
    c->state = CONN_OPEN;
    write_req *w = c->held_head;
    c->held_head = NULL;
    c->held_tail = NULL;
    while (w != NULL) {
        write_req *next = w->next;
        if (c->state == CONN_OPEN) {
            submit(c, w);
        } else {
            c->pending_write -= w->len;
            free(w);
        }
        w = next;
    }
    if (c->state == CONN_OPEN && c->outbox != NULL)
        outbox_submit(c);
    if (c->state != CONN_OPEN)
        return;
    if (conn_start_reading(c) != 0)
        return;
    if (c->cb.on_connect != NULL)
        c->cb.on_connect(c, 0, c->user);
}

static int stream_init(uv_loop_t *loop, loom_stream *h, int is_unix)
{
    return is_unix ? uv_pipe_init(loop, &h->pipe, 0) : uv_tcp_init(loop, &h->tcp);
}

static void format_inet(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, size, "tcp:[%s]:%u", ip, ntohs(a->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, size, "tcp:%s:%u", ip, ntohs(a->sin_port));
    } else {
        snprintf(out, size, "tcp:?");
    }
}

int loom_conn_connect(uv_loop_t *loop, const char *addr, const loom_conn_options *o,
                      const loom_conn_callbacks *cb, void *user, loom_conn **out)
{
    LOOM_ASSERT(loop != NULL);
    LOOM_ASSERT(out != NULL);
    *out = NULL;
    loom_addr a;
    int rc = loom_addr_parse(addr, &a);
    if (rc != 0)
        return rc;
    ignore_sigpipe();
    loom_conn *c = conn_new(o, cb, user);
    if (c == NULL)
        return loom_seterr(LOOM_ENOMEM, "connection to %s", addr);
    snprintf(c->peer, sizeof c->peer, "%s", addr);
    rc = stream_init(loop, &c->h, a.is_unix);
    if (rc != 0) {
        free(c);
        return loom_seterr(loom__err_from_uv(rc), "connect %s: %s", addr, uv_strerror(rc));
    }
    conn_handles_init(loop, c);
    c->state = CONN_CONNECTING;
    c->connect_req.data = c;
    if (a.is_unix) {
        uv_pipe_connect(&c->connect_req, &c->h.pipe, a.path, connect_cb);
    } else {
        rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, (const struct sockaddr *)&a.inet,
                            connect_cb);
        if (rc != 0) {
            c->silent = 1;
            conn_close_fmt(c, loom__err_from_uv(rc), "connect");
            return loom_seterr(loom__err_from_uv(rc), "connect %s: %s", addr, uv_strerror(rc));
        }
    }
    *out = c;
    return 0;
}

/* ------------------------------------------------------------ listening */

static void listener_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void accept_failed(loom_listener *l, loom_conn *c, int rc)
{
    fprintf(stderr, "loom: listener %s: accept: %s\n", l->name, uv_strerror(rc));
    c->silent = 1;
    conn_close_fmt(c, loom__err_from_uv(rc), "accept");
}

static void set_accepted_peer(loom_listener *l, loom_conn *c)
{
    if (l->is_unix) {
        uv_os_fd_t fd = -1;
        uv_fileno(&c->h.handle, &fd);
        snprintf(c->peer, sizeof c->peer, "%s (fd %d)", l->name, (int)fd);
        return;
    }
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
        format_inet(&ss, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "%s (peer unknown)", l->name);
}

static void connection_cb(uv_stream_t *server, int status)
{
    loom_listener *l = server->data;
    if (status < 0) {
        /* EMFILE and friends: keep listening, the next attempt may work. */
        fprintf(stderr, "loom: listener %s: %s\n", l->name, uv_strerror(status));
        return;
    }
    loom_conn *c = conn_new(&l->opts, &l->cb, l->user);
    if (c == NULL) {
        fprintf(stderr, "loom: listener %s: no memory for a connection\n", l->name);
        return;
    }
    int rc = stream_init(server->loop, &c->h, l->is_unix);
    if (rc != 0) {
        fprintf(stderr, "loom: listener %s: %s\n", l->name, uv_strerror(rc));
        loom_frame_reader_free(&c->reader);
        free(c);
        return;
    }
    conn_handles_init(server->loop, c);
    c->state = CONN_OPEN;
    rc = uv_accept(server, &c->h.stream);
    if (rc != 0) {
        accept_failed(l, c, rc);
        return;
    }
    set_accepted_peer(l, c);
    if (l->on_accept != NULL)
        l->on_accept(l, c, l->user);
    if (c->state == CONN_OPEN)
        conn_start_reading(c);
}

static int bind_listener(loom_listener *l, const loom_addr *a, const char *addr)
{
    int rc;
    if (a->is_unix) {
        if (unlink(a->path) != 0 && errno != ENOENT)
            return loom_seterr(loom_err_from_errno(errno), "listen %s: unlink: %s", addr,
                               strerror(errno));
        rc = uv_pipe_bind(&l->h.pipe, a->path);
    } else {
        rc = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&a->inet, 0);
    }
    if (rc == 0)
        rc = uv_listen(&l->h.stream, LISTEN_BACKLOG, connection_cb);
    if (rc != 0)
        return loom_seterr(loom__err_from_uv(rc), "listen %s: %s", addr, uv_strerror(rc));
    return 0;
}

int loom_listen(uv_loop_t *loop, const char *addr, const loom_conn_options *o,
                const loom_conn_callbacks *conn_cb, loom_accept_cb on_accept, void *user,
                loom_listener **out)
{
    LOOM_ASSERT(loop != NULL);
    LOOM_ASSERT(out != NULL);
    *out = NULL;
    loom_addr a;
    int rc = loom_addr_parse(addr, &a);
    if (rc != 0)
        return rc;
    ignore_sigpipe();
    loom_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return loom_seterr(LOOM_ENOMEM, "listener on %s", addr);
    options_copy(&l->opts, o);
    if (conn_cb != NULL)
        l->cb = *conn_cb;
    l->on_accept = on_accept;
    l->user = user;
    l->is_unix = a.is_unix;
    memcpy(l->path, a.path, sizeof l->path);
    snprintf(l->name, sizeof l->name, "%s", addr);
    rc = stream_init(loop, &l->h, a.is_unix);
    if (rc != 0) {
        free(l);
        return loom_seterr(loom__err_from_uv(rc), "listen %s: %s", addr, uv_strerror(rc));
    }
    l->h.handle.data = l;
    rc = bind_listener(l, &a, addr);
    if (rc != 0) {
        /* Not ours yet: do not unlink a path another process may own. */
        l->is_unix = 0;
        l->closing = 1;
        uv_close(&l->h.handle, listener_close_cb);
        return rc;
    }
    *out = l;
    return 0;
}

int loom_listener_port(const loom_listener *l)
{
    LOOM_ASSERT(l != NULL);
    if (l->is_unix)
        return 0;
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void loom_listener_close(loom_listener *l)
{
    if (l == NULL || l->closing)
        return;
    l->closing = 1;
    if (l->is_unix)
        unlink(l->path);
    uv_close(&l->h.handle, listener_close_cb);
}
