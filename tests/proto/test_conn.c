/* Connections and listeners over TCP and Unix sockets (proto/src/conn.c).
 *
 * Every test runs a real libuv loop with a loom listener, loom clients and,
 * where a misbehaving peer is needed, a raw socket driven by hand. Waits are
 * bounded by generous deadlines and never by timing assertions. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loom/wire.h"

#define WAIT_MS 30000
#define MAX_CONNS 64
#define MAX_REQ 512

/* ------------------------------------------------------------ fixture */

typedef struct server {
    loom_listener *l;
    loom_conn *conns[MAX_CONNS];
    int n_accepted;
    int n_closed;
    int close_errs[MAX_CONNS];
    size_t received;
    int reverse_batch;  /* >1: hold this many calls, answer newest first */
    int close_on_first; /* close a connection on its first envelope */
    loom_envelope *held[MAX_REQ];
    int n_held;
} server;

typedef struct client {
    loom_conn *c;
    int connect_calls;
    int connect_status;
    int closed;
    int close_err;
    char close_reason[256];
    size_t replies;
    size_t out_of_order;
    uint64_t last_id;
    unsigned char seen[MAX_REQ];
} client;

static uv_loop_t loop;
static char scratch[256];
static char unix_addr[300];

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/loom-conn-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(scratch));
    snprintf(unix_addr, sizeof unix_addr, "unix:%s/s.sock", scratch);
}

/* Closes whatever is left, drains the loop and proves nothing leaked a
 * handle (uv_loop_close fails while any is open). */
static void close_left_open(uv_handle_t *h, void *arg)
{
    int *left = arg;
    if (!uv_is_closing(h)) {
        (*left)++;
        uv_close(h, NULL);
    }
}

static void teardown(void)
{
    int left = 0;
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, close_left_open, &left);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(left, 0, "%d handles were left open", left);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle outlived the test");
    char path[400];
    snprintf(path, sizeof path, "%s/s.sock", scratch);
    unlink(path);
    rmdir(scratch);
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 120);

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until done(arg) holds or WAIT_MS passes; false on timeout. */
static int run_until(int (*done)(void *), void *arg)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    uv_update_time(&loop);
    uint64_t deadline = uv_now(&loop) + WAIT_MS;
    int ok = 0;
    while (!(ok = done(arg)) && uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static const char *addr_for(const char *transport)
{
    return strcmp(transport, "unix") == 0 ? unix_addr : "tcp:127.0.0.1:0";
}

/* The address clients use to reach l. */
static void dial_addr(const char *transport, loom_listener *l, char *out, size_t size)
{
    if (strcmp(transport, "unix") == 0)
        snprintf(out, size, "%s", unix_addr);
    else
        snprintf(out, size, "tcp:127.0.0.1:%d", loom_listener_port(l));
}

/* ------------------------------------------------------------ server side */

static void reply_call(loom_conn *c, const loom_envelope *req)
{
    Loom__V1__CallReply r = LOOM__V1__CALL_REPLY__INIT;
    r.response = req->call->args;
    r.last_event_id = req->correlation_id;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = req->correlation_id;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
    env.call_reply = &r;
    int rc = loom_conn_send(c, &env);
    cr_assert_eq(rc, 0, "server send: %s", loom_errdetail());
}

static void server_on_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    server *s = user;
    s->received++;
    if (s->close_on_first) {
        loom_envelope_free(env);
        loom_conn_close(c, 0, "test closes on the first request");
        return;
    }
    cr_assert_eq(env->body_case, LOOM__V1__ENVELOPE__BODY_CALL);
    if (s->reverse_batch <= 1) {
        reply_call(c, env);
        loom_envelope_free(env);
        return;
    }
    s->held[s->n_held++] = env;
    if (s->n_held < s->reverse_batch)
        return;
    while (s->n_held > 0) {
        loom_envelope *e = s->held[--s->n_held];
        reply_call(c, e);
        loom_envelope_free(e);
    }
}

static void server_on_close(loom_conn *c, int err, const char *reason, void *user)
{
    server *s = user;
    cr_assert_not_null(reason);
    for (int i = 0; i < MAX_CONNS; i++)
        if (s->conns[i] == c)
            s->conns[i] = NULL;
    cr_assert_lt(s->n_closed, MAX_CONNS);
    s->close_errs[s->n_closed++] = err;
}

static void server_on_accept(loom_listener *l, loom_conn *c, void *user)
{
    server *s = user;
    (void)l;
    cr_assert_lt(s->n_accepted, MAX_CONNS);
    cr_assert_eq(loom_conn_user(c), s);
    cr_assert_neq(loom_conn_peer(c)[0], '\0');
    s->conns[s->n_accepted++] = c;
}

static void server_start(server *s, const char *transport, const loom_conn_options *o)
{
    loom_conn_callbacks cb = {.on_envelope = server_on_envelope, .on_close = server_on_close};
    int rc = loom_listen(&loop, addr_for(transport), o, &cb, server_on_accept, s, &s->l);
    cr_assert_eq(rc, 0, "listen: %s", loom_errdetail());
}

static void server_stop(server *s)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (s->conns[i] != NULL)
            loom_conn_close(s->conns[i], 0, NULL);
    for (int i = 0; i < s->n_held; i++)
        loom_envelope_free(s->held[i]);
    s->n_held = 0;
    loom_listener_close(s->l);
    s->l = NULL;
}

/* ------------------------------------------------------------ client side */

static void client_on_connect(loom_conn *c, int status, void *user)
{
    client *k = user;
    (void)c;
    k->connect_calls++;
    k->connect_status = status;
}

static void client_on_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    client *k = user;
    (void)c;
    cr_assert_eq(env->body_case, LOOM__V1__ENVELOPE__BODY_CALL_REPLY);
    uint64_t id = env->correlation_id;
    cr_assert_lt(id, MAX_REQ);
    cr_assert_eq(k->seen[id], 0, "reply %llu twice", (unsigned long long)id);
    k->seen[id] = 1;
    char want[32];
    snprintf(want, sizeof want, "req-%llu", (unsigned long long)id);
    cr_assert_eq(env->call_reply->response.len, strlen(want));
    cr_assert_eq(memcmp(env->call_reply->response.data, want, strlen(want)), 0,
                 "reply %llu carries another request's data", (unsigned long long)id);
    if (k->replies > 0 && id < k->last_id)
        k->out_of_order++;
    k->last_id = id;
    k->replies++;
    loom_envelope_free(env);
}

static void client_on_close(loom_conn *c, int err, const char *reason, void *user)
{
    client *k = user;
    (void)c;
    k->closed = 1;
    k->close_err = err;
    snprintf(k->close_reason, sizeof k->close_reason, "%s", reason);
    k->c = NULL;
}

static void client_connect(client *k, const char *addr, const loom_conn_options *o)
{
    memset(k, 0, sizeof *k);
    loom_conn_callbacks cb = {.on_envelope = client_on_envelope,
                              .on_connect = client_on_connect,
                              .on_close = client_on_close};
    int rc = loom_conn_connect(&loop, addr, o, &cb, k, &k->c);
    cr_assert_eq(rc, 0, "connect %s: %s", addr, loom_errdetail());
    cr_assert_not_null(k->c);
}

static void client_send_call(client *k, uint64_t id)
{
    char args[32];
    int n = snprintf(args, sizeof args, "req-%llu", (unsigned long long)id);
    Loom__V1__CallRequest call = LOOM__V1__CALL_REQUEST__INIT;
    call.ns = "invoice";
    call.id = "m1";
    call.args.data = (uint8_t *)args;
    call.args.len = (size_t)n;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = id;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    env.call = &call;
    int rc = loom_conn_send(k->c, &env);
    cr_assert_eq(rc, 0, "client send %llu: %s", (unsigned long long)id, loom_errdetail());
}

typedef struct want_replies {
    client *k;
    size_t n;
} want_replies;

static int has_replies(void *arg)
{
    want_replies *w = arg;
    return w->k->replies >= w->n || w->k->closed;
}

static void round_trips(client *k, uint64_t first, size_t n)
{
    size_t before = k->replies;
    for (size_t i = 0; i < n; i++)
        client_send_call(k, first + i);
    want_replies w = {k, before + n};
    cr_assert(run_until(has_replies, &w), "replies: %zu of %zu", k->replies, before + n);
    cr_assert_eq(k->closed, 0, "client closed: %s", k->close_reason);
    cr_assert_eq(k->replies, before + n);
}

/* Starts s and connects client k to it. */
static void serve_client(server *s, client *k, const char *transport, const loom_conn_options *o)
{
    server_start(s, transport, o);
    char addr[400];
    dial_addr(transport, s->l, addr, sizeof addr);
    client_connect(k, addr, NULL);
}

/* ------------------------------------------------------------ raw peers */

/* A plain blocking socket connected to l: the kernel completes the
 * handshake from the listen backlog before the loop accepts. */
static int raw_connect(const char *transport, loom_listener *l)
{
    char addr[400];
    dial_addr(transport, l, addr, sizeof addr);
    loom_addr a;
    cr_assert_eq(loom_addr_parse(addr, &a), 0);
    int fd;
    if (a.is_unix) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", a.path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof un), 0, "%s", strerror(errno));
    } else {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&a.inet, sizeof(struct sockaddr_in)), 0, "%s",
                     strerror(errno));
    }
    return fd;
}

static void raw_write(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "raw send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

typedef struct raw_reader {
    int fd;
    int eof;
    size_t bytes;
    size_t frames;
    /* set: every frame must be reply number `frames` carrying the pattern
     * of size_of(id) bytes (see check_in_order) */
    size_t (*size_of)(uint64_t id);
    loom_frame_reader fr;
} raw_reader;

static void check_in_order(const raw_reader *r, const loom_envelope *env);

static int raw_count_frame(void *ctx, const uint8_t *payload, size_t len)
{
    raw_reader *r = ctx;
    loom_envelope *env;
    cr_assert_eq(loom_envelope_decode(payload, len, &env), 0, "%s", loom_errdetail());
    if (r->size_of)
        check_in_order(r, env);
    loom_envelope_free(env);
    r->frames++;
    return 0;
}

/* Reads what is there without blocking. */
static void raw_drain(raw_reader *r)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) {
            r->eof = 1;
            return;
        }
        if (n < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET,
                      "raw recv: %s", strerror(errno));
            if (errno == ECONNRESET)
                r->eof = 1;
            return;
        }
        r->bytes += (size_t)n;
        cr_assert_eq(loom_frame_reader_feed(&r->fr, buf, (size_t)n, raw_count_frame, r), 0);
    }
}

static int raw_sees_eof(void *arg)
{
    raw_reader *r = arg;
    raw_drain(r);
    return r->eof;
}

static void raw_open(raw_reader *r, const char *transport, loom_listener *l)
{
    memset(r, 0, sizeof *r);
    r->fd = raw_connect(transport, l);
    loom_frame_reader_init(&r->fr, 0);
}

static void raw_close(raw_reader *r)
{
    close(r->fd);
    loom_frame_reader_free(&r->fr);
}

static uint8_t *call_frame(uint64_t id, size_t *len)
{
    char args[32];
    int n = snprintf(args, sizeof args, "req-%llu", (unsigned long long)id);
    Loom__V1__CallRequest call = LOOM__V1__CALL_REQUEST__INIT;
    call.args.data = (uint8_t *)args;
    call.args.len = (size_t)n;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = id;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    env.call = &call;
    uint8_t *frame;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, len), 0);
    return frame;
}

typedef struct at_least {
    const int *count;
    int n;
} at_least;

static int count_reached(void *arg)
{
    const at_least *a = arg;
    return *a->count >= a->n;
}

/* Runs the loop until the server has seen n of its connections close. */
static int server_saw_closes(server *s, int n)
{
    at_least a = {&s->n_closed, n};
    return run_until(count_reached, &a);
}

static int server_saw_accepts(server *s, int n)
{
    at_least a = {&s->n_accepted, n};
    return run_until(count_reached, &a);
}

static int client_gone(void *arg)
{
    return ((client *)arg)->closed;
}

/* ------------------------------------------------------------ tests */

static void pipelined(const char *transport)
{
    server s = {0};
    client k;
    serve_client(&s, &k, transport, NULL);
    /* Sent before the connection is up: held, then flushed in order. */
    round_trips(&k, 0, 300);
    cr_assert_eq(k.connect_calls, 1);
    cr_assert_eq(k.connect_status, 0);
    cr_assert_eq(s.received, 300);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(k.seen[i], 1);
    loom_conn_close(k.c, 0, NULL);
    cr_assert(run_until(client_gone, &k));
    cr_assert_eq(k.close_err, 0);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.close_errs[0], 0, "a clean EOF is not an error");
    server_stop(&s);
}

Test(conn, pipelined_requests_tcp)
{
    pipelined("tcp");
}

Test(conn, pipelined_requests_unix)
{
    pipelined("unix");
}

static void out_of_order(const char *transport)
{
    server s = {.reverse_batch = 50};
    client k;
    serve_client(&s, &k, transport, NULL);
    round_trips(&k, 0, 200);
    cr_assert_gt(k.out_of_order, 0, "replies came back in order");
    for (int i = 0; i < 200; i++)
        cr_assert_eq(k.seen[i], 1, "reply %d missing", i);
    loom_conn_close(k.c, 0, NULL);
    server_stop(&s);
}

Test(conn, out_of_order_replies_tcp)
{
    out_of_order("tcp");
}

Test(conn, out_of_order_replies_unix)
{
    out_of_order("unix");
}

/* A raw peer sends `bad`; its connection must close with want_err while a
 * well-behaved client on the same listener keeps working. */
static void bad_peer(const char *transport, const void *bad, size_t bad_len, int want_err)
{
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_frame = 1u << 20;
    server s = {0};
    client k;
    serve_client(&s, &k, transport, &o);
    round_trips(&k, 0, 5);

    raw_reader r;
    raw_open(&r, transport, s.l);
    raw_write(r.fd, bad, bad_len);
    cr_assert(run_until(raw_sees_eof, &r), "the bad peer was not disconnected");
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.close_errs[0], want_err, "closed with %s", loom_err_name(s.close_errs[0]));

    round_trips(&k, 5, 5);
    cr_assert_not_null(k.c, "the good client was harmed");
    raw_close(&r);
    loom_conn_close(k.c, 0, NULL);
    server_stop(&s);
}

static const uint8_t oversize_header[] = {0x00, 0x20, 0x00, 0x01, 0xde, 0xad};

Test(conn, oversize_length_closes_only_that_connection_tcp)
{
    bad_peer("tcp", oversize_header, sizeof oversize_header, LOOM_EFRAME_TOO_LARGE);
}

Test(conn, oversize_length_closes_only_that_connection_unix)
{
    bad_peer("unix", oversize_header, sizeof oversize_header, LOOM_EFRAME_TOO_LARGE);
}

static const uint8_t garbage_frame[] = {0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07};

Test(conn, garbage_frame_closes_only_that_connection_tcp)
{
    bad_peer("tcp", garbage_frame, sizeof garbage_frame, LOOM_EPROTOCOL);
}

Test(conn, garbage_frame_closes_only_that_connection_unix)
{
    bad_peer("unix", garbage_frame, sizeof garbage_frame, LOOM_EPROTOCOL);
}

/* A well-formed protobuf with no body is as bad as garbage. */
static const uint8_t bodiless_frame[] = {0, 0, 0, 2, 0x08, 0x2a};

Test(conn, frame_without_body_closes_the_connection)
{
    bad_peer("tcp", bodiless_frame, sizeof bodiless_frame, LOOM_EPROTOCOL);
}

typedef struct want_raw_frames {
    raw_reader *r;
    size_t n;
} want_raw_frames;

static int raw_has_frames(void *arg)
{
    want_raw_frames *w = arg;
    raw_drain(w->r);
    return w->r->frames >= w->n || w->r->eof;
}

/* Runs the loop until the peer has read n frames or seen the end. */
static int raw_wait_frames(raw_reader *r, size_t n)
{
    want_raw_frames w = {r, n};
    return run_until(raw_has_frames, &w);
}

Test(conn, many_frames_in_one_write_are_all_delivered)
{
    server s = {0};
    server_start(&s, "tcp", NULL);
    enum { N = 400 };
    size_t total = 0;
    uint8_t *all = malloc(N * 64);
    for (uint64_t i = 0; i < N; i++) {
        size_t len;
        uint8_t *f = call_frame(i, &len);
        cr_assert_leq(len, 64);
        memcpy(all + total, f, len);
        total += len;
        free(f);
    }
    raw_reader r;
    raw_open(&r, "tcp", s.l);
    raw_write(r.fd, all, total);
    cr_assert(raw_wait_frames(&r, N), "got %zu replies", r.frames);
    cr_assert_eq(r.frames, N);
    cr_assert_eq(s.received, N);
    cr_assert_eq(s.n_closed, 0);
    raw_close(&r);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.close_errs[0], 0);
    free(all);
    server_stop(&s);
}

Test(conn, eof_inside_a_frame_is_reported)
{
    server s = {0};
    server_start(&s, "unix", NULL);
    size_t len;
    uint8_t *f = call_frame(1, &len);
    int fd = raw_connect("unix", s.l);
    raw_write(fd, f, len - 3);
    close(fd);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.close_errs[0], LOOM_ECLOSED);
    cr_assert_eq(s.received, 0);
    free(f);
    server_stop(&s);
}

Test(conn, close_from_on_envelope_stops_delivery)
{
    server s = {.close_on_first = 1};
    server_start(&s, "tcp", NULL);
    size_t len;
    uint8_t *f = call_frame(1, &len);
    int fd = raw_connect("tcp", s.l);
    for (int i = 0; i < 20; i++)
        raw_write(fd, f, len);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.received, 1, "frames were delivered after close");
    cr_assert_eq(s.close_errs[0], 0);
    close(fd);
    free(f);
    server_stop(&s);
}

/* A server with one hand-driven peer; returns the server's side of it. */
static loom_conn *serve_raw(server *s, raw_reader *r, const char *transport,
                            const loom_conn_options *o)
{
    memset(s, 0, sizeof *s);
    server_start(s, transport, o);
    raw_open(r, transport, s->l);
    cr_assert(server_saw_accepts(s, 1));
    return s->conns[0];
}

static void raw_stop(server *s, raw_reader *r)
{
    raw_close(r);
    server_stop(s);
}

/* The peer hangs up and the server must notice before it stops. */
static void raw_hang_up(server *s, raw_reader *r)
{
    raw_close(r);
    cr_assert(server_saw_closes(s, 1));
    server_stop(s);
}

typedef struct drain_until_sent {
    raw_reader *r;
    loom_conn *c;
} drain_until_sent;

static int drained_all(void *arg)
{
    drain_until_sent *d = arg;
    raw_drain(d->r);
    return loom_conn_pending_write(d->c) == 0;
}

Test(conn, write_queue_limit)
{
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_pending_write = 256u * 1024u;
    server s;
    raw_reader r;
    loom_conn *c = serve_raw(&s, &r, "tcp", &o);

    static uint8_t blob[64 * 1024];
    Loom__V1__CallReply rep = LOOM__V1__CALL_REPLY__INIT;
    rep.response.data = blob;
    rep.response.len = sizeof blob;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
    env.call_reply = &rep;
    /* Without a loop pass no write completes, so the queue must fill. */
    int sent = 0, rc = 0;
    while (sent < 100) {
        env.correlation_id = (uint64_t)sent;
        rc = loom_conn_send(c, &env);
        if (rc != 0)
            break;
        sent++;
        cr_assert_leq(loom_conn_pending_write(c), o.max_pending_write + sizeof blob + 64);
    }
    cr_assert_eq(rc, LOOM_ERESOURCE_EXHAUSTED, "send %d: %s", sent, loom_err_name(rc));
    cr_assert_geq(sent, 3);
    cr_assert_leq(sent, 5);
    cr_assert(strstr(loom_errdetail(), "limit") != NULL, "%s", loom_errdetail());

    /* Once the peer reads, the queue empties and sending works again. */
    drain_until_sent d = {&r, c};
    cr_assert(run_until(drained_all, &d), "%zu bytes stuck", loom_conn_pending_write(c));
    env.correlation_id = 1000;
    cr_assert_eq(loom_conn_send(c, &env), 0);
    cr_assert(run_until(drained_all, &d));
    cr_assert(raw_wait_frames(&r, (size_t)sent + 1));
    cr_assert_eq(r.frames, (size_t)sent + 1, "frames lost or invented");
    cr_assert_eq(s.n_closed, 0);
    raw_stop(&s, &r);
}

Test(conn, connect_to_missing_unix_socket_fails_cleanly)
{
    client k;
    char addr[400];
    snprintf(addr, sizeof addr, "unix:%s/nobody.sock", scratch);
    client_connect(&k, addr, NULL);
    client_send_call(&k, 1); /* held, then dropped */
    cr_assert(run_until(client_gone, &k));
    cr_assert_eq(k.connect_calls, 1);
    cr_assert_eq(k.connect_status, LOOM_ECLOSED);
    cr_assert_eq(k.close_err, LOOM_ECLOSED);
    cr_assert(strstr(k.close_reason, "connect") != NULL, "%s", k.close_reason);
}

Test(conn, connect_refused_tcp_fails_cleanly)
{
    server s = {0};
    server_start(&s, "tcp", NULL);
    char addr[400];
    dial_addr("tcp", s.l, addr, sizeof addr);
    server_stop(&s);
    uv_run(&loop, UV_RUN_NOWAIT);
    client k;
    client_connect(&k, addr, NULL);
    cr_assert(run_until(client_gone, &k));
    cr_assert_eq(k.connect_status, LOOM_ECLOSED);
    cr_assert_eq(k.close_err, LOOM_ECLOSED);
}

Test(conn, close_while_connecting)
{
    server s = {0};
    client k;
    serve_client(&s, &k, "tcp", NULL);
    client_send_call(&k, 1);
    loom_conn_close(k.c, 0, NULL);
    cr_assert(run_until(client_gone, &k));
    cr_assert_eq(k.connect_calls, 0, "no on_connect after a local close");
    cr_assert_eq(k.close_err, 0);
    server_stop(&s);
}

Test(conn, send_after_close_is_refused)
{
    server s = {0};
    server_start(&s, "unix", NULL);
    client k;
    client_connect(&k, unix_addr, NULL);
    round_trips(&k, 0, 1);
    loom_conn *c = k.c;
    loom_conn_close(c, LOOM_ESHUTTING_DOWN, "test is done");
    loom_conn_close(c, LOOM_EINTERNAL, "second close is ignored");
    Loom__V1__RemoveRequest rm = LOOM__V1__REMOVE_REQUEST__INIT;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REMOVE;
    env.remove = &rm;
    cr_assert_eq(loom_conn_send(c, &env), LOOM_ECLOSED);
    cr_assert(run_until(client_gone, &k));
    cr_assert_eq(k.close_err, LOOM_ESHUTTING_DOWN);
    cr_assert_str_eq(k.close_reason, "test is done");
    server_stop(&s);
}

Test(conn, send_refuses_bad_envelopes_without_closing)
{
    server s = {0};
    server_start(&s, "tcp", NULL);
    char addr[400];
    dial_addr("tcp", s.l, addr, sizeof addr);
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_frame = 128;
    client k;
    client_connect(&k, addr, &o);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    cr_assert_eq(loom_conn_send(k.c, &env), LOOM_EINVALID_ARGUMENT);
    static uint8_t big[200];
    Loom__V1__CallRequest call = LOOM__V1__CALL_REQUEST__INIT;
    call.args.data = big;
    call.args.len = sizeof big;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    env.call = &call;
    cr_assert_eq(loom_conn_send(k.c, &env), LOOM_EFRAME_TOO_LARGE);
    round_trips(&k, 0, 3);
    loom_conn_close(k.c, 0, NULL);
    server_stop(&s);
}

Test(conn, listener_port_and_unix_path)
{
    server t = {0};
    server_start(&t, "tcp", NULL);
    cr_assert_gt(loom_listener_port(t.l), 0);

    /* A stale file where the socket goes is replaced. */
    char path[400];
    snprintf(path, sizeof path, "%s/s.sock", scratch);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    server u = {0};
    server_start(&u, "unix", NULL);
    cr_assert_eq(loom_listener_port(u.l), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));

    /* A second listener on a taken TCP port says so. */
    char addr[400];
    dial_addr("tcp", t.l, addr, sizeof addr);
    loom_listener *dup = NULL;
    loom_conn_callbacks cb = {0};
    cr_assert_eq(loom_listen(&loop, addr, NULL, &cb, NULL, NULL, &dup), LOOM_EBUSY);
    cr_assert_null(dup);
    cr_assert(strstr(loom_errdetail(), addr) != NULL, "%s", loom_errdetail());

    server_stop(&t);
    server_stop(&u);
    cr_assert_neq(stat(path, &st), 0, "unix socket file left behind");
}

Test(conn, bad_addresses_are_refused_synchronously)
{
    loom_conn *c = (loom_conn *)1;
    loom_conn_callbacks cb = {0};
    cr_assert_eq(loom_conn_connect(&loop, "nowhere", NULL, &cb, NULL, &c), LOOM_EINVALID_ARGUMENT);
    cr_assert_null(c);
    loom_listener *l = (loom_listener *)1;
    cr_assert_eq(loom_listen(&loop, "tcp:1.2.3.4.5:0", NULL, &cb, NULL, NULL, &l),
                 LOOM_EINVALID_ARGUMENT);
    cr_assert_null(l);
}

static void fill_queue(loom_conn *c, size_t frames, size_t size)
{
    uint8_t *blob = calloc(1, size);
    Loom__V1__CallReply rep = LOOM__V1__CALL_REPLY__INIT;
    rep.response.data = blob;
    rep.response.len = size;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
    env.call_reply = &rep;
    for (size_t i = 0; i < frames; i++) {
        env.correlation_id = i;
        cr_assert_eq(loom_conn_send(c, &env), 0, "%s", loom_errdetail());
    }
    free(blob);
}

Test(conn, close_after_flush_delivers_queued_frames)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_raw(&s, &r, "unix", NULL);
    fill_queue(c, 8, 256 * 1024);
    cr_assert_gt(loom_conn_pending_write(c), 0);
    loom_conn_close_after_flush(c, LOOM_EPROTOCOL, "bad request, told the peer", 60000);
    Loom__V1__RemoveReply rm = LOOM__V1__REMOVE_REPLY__INIT;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REMOVE_REPLY;
    env.remove_reply = &rm;
    cr_assert_eq(loom_conn_send(c, &env), LOOM_ECLOSED, "draining refuses new frames");
    cr_assert(run_until(raw_sees_eof, &r));
    cr_assert_eq(r.frames, 8, "queued frames were dropped: %zu of 8", r.frames);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert_eq(s.close_errs[0], LOOM_EPROTOCOL);
    raw_stop(&s, &r);
}

Test(conn, close_after_flush_gives_up_after_linger)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_raw(&s, &r, "unix", NULL);
    /* Far more than a unix socket buffers: the peer never reads. */
    fill_queue(c, 16, 1024 * 1024);
    loom_conn_close_after_flush(c, 0, "done", 50);
    cr_assert(server_saw_closes(&s, 1), "linger did not bound the flush");
    cr_assert_eq(s.close_errs[0], 0);
    raw_stop(&s, &r);
}

Test(conn, close_after_flush_with_nothing_queued_closes_now)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_raw(&s, &r, "tcp", NULL);
    loom_conn_close_after_flush(c, 0, NULL, 60000);
    cr_assert(server_saw_closes(&s, 1));
    cr_assert(run_until(raw_sees_eof, &r));
    raw_stop(&s, &r);
}

typedef struct all_replied {
    client *ks;
    int n;
    size_t each;
} all_replied;

static int all_clients_replied(void *arg)
{
    all_replied *a = arg;
    for (int i = 0; i < a->n; i++)
        if (a->ks[i].replies < a->each && !a->ks[i].closed)
            return 0;
    return 1;
}

Test(conn, many_clients_on_one_listener)
{
    enum { CLIENTS = 40, EACH = 50 };
    server s = {0};
    server_start(&s, "tcp", NULL);
    char addr[400];
    dial_addr("tcp", s.l, addr, sizeof addr);
    client *ks = calloc(CLIENTS, sizeof *ks);
    for (int i = 0; i < CLIENTS; i++) {
        client_connect(&ks[i], addr, NULL);
        for (uint64_t id = 0; id < EACH; id++)
            client_send_call(&ks[i], id);
    }
    all_replied a = {ks, CLIENTS, EACH};
    cr_assert(run_until(all_clients_replied, &a));
    for (int i = 0; i < CLIENTS; i++) {
        cr_assert_eq(ks[i].closed, 0, "client %d: %s", i, ks[i].close_reason);
        cr_assert_eq(ks[i].replies, EACH, "client %d", i);
        loom_conn_close(ks[i].c, 0, NULL);
    }
    cr_assert_eq(s.n_accepted, CLIENTS);
    cr_assert_eq(s.received, CLIENTS * EACH);
    uv_run(&loop, UV_RUN_NOWAIT);
    free(ks);
    server_stop(&s);
}

Test(conn, ipv6_loopback)
{
    server s = {0};
    loom_conn_callbacks cb = {.on_envelope = server_on_envelope, .on_close = server_on_close};
    int rc = loom_listen(&loop, "tcp:[::1]:0", NULL, &cb, server_on_accept, &s, &s.l);
    if (rc != 0)
        cr_skip_test("no IPv6 loopback here: %s", loom_errdetail());
    char addr[400];
    snprintf(addr, sizeof addr, "tcp:[::1]:%d", loom_listener_port(s.l));
    cr_assert_gt(loom_listener_port(s.l), 0);
    client k;
    client_connect(&k, addr, NULL);
    round_trips(&k, 0, 10);
    cr_assert(server_saw_accepts(&s, 1));
    cr_assert(strncmp(loom_conn_peer(s.conns[0]), "tcp:[::1]:", 10) == 0, "%s",
              loom_conn_peer(s.conns[0]));
    loom_conn_close(k.c, 0, NULL);
    server_stop(&s);
}

Test(conn, closing_for_a_bad_frame_logs_one_line)
{
    char log_path[400];
    snprintf(log_path, sizeof log_path, "%s/stderr.log", scratch);
    int log_fd = open(log_path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    cr_assert_geq(log_fd, 0);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    dup2(log_fd, 2);

    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_frame = 1u << 20;
    server s = {0};
    server_start(&s, "tcp", &o);
    int fd = raw_connect("tcp", s.l);
    raw_write(fd, oversize_header, 4);
    int closed = server_saw_closes(&s, 1);
    dup2(saved, 2);
    close(saved);
    cr_assert(closed);

    char text[1024] = {0};
    ssize_t n = pread(log_fd, text, sizeof text - 1, 0);
    close(log_fd);
    unlink(log_path);
    cr_assert_gt(n, 0, "nothing was logged");
    cr_assert(strncmp(text, "loom: closing connection tcp:127.0.0.1:", 39) == 0, "%s", text);
    cr_assert(strstr(text, "exceeds the limit") != NULL, "%s", text);
    char *nl = strchr(text, '\n');
    cr_assert_not_null(nl);
    cr_assert_eq(nl[1], '\0', "more than one line: %s", text);
    close(fd);
    server_stop(&s);
}

/* ------------------------------------------------------------ coalescing */

/* Frames of a CallReply whose response is `size` bytes of a pattern keyed
 * to the id, so a frame cut, doubled or swapped with another shows. */
static void fill_pattern(uint8_t *p, size_t size, uint64_t id)
{
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)(id * 31u + i);
}

static int send_patterned(loom_conn *c, uint64_t id, size_t size)
{
    uint8_t *blob = malloc(size ? size : 1);
    cr_assert_not_null(blob);
    fill_pattern(blob, size, id);
    Loom__V1__CallReply rep = LOOM__V1__CALL_REPLY__INIT;
    rep.response.data = blob;
    rep.response.len = size;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = id;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
    env.call_reply = &rep;
    int rc = loom_conn_send(c, &env);
    free(blob);
    return rc;
}

/* The size of frame id in the mixed-size tests: mostly small, now and then
 * large enough to take a send buffer past its coalescing size. */
static size_t mixed_size(uint64_t id)
{
    return id % 97 == 0 ? 300u * 1024u : id % 7 == 0 ? 5000u : (size_t)(id % 50);
}

static void check_in_order(const raw_reader *r, const loom_envelope *env)
{
    cr_assert_eq(env->body_case, LOOM__V1__ENVELOPE__BODY_CALL_REPLY);
    uint64_t id = env->correlation_id;
    cr_assert_eq(id, r->frames, "frame %llu arrived in place %zu", (unsigned long long)id,
                 r->frames);
    size_t size = r->size_of(id);
    cr_assert_eq(env->call_reply->response.len, size, "frame %llu", (unsigned long long)id);
    uint8_t *want = malloc(size ? size : 1);
    fill_pattern(want, size, id);
    cr_assert(size == 0 || memcmp(env->call_reply->response.data, want, size) == 0,
              "frame %llu carries other bytes", (unsigned long long)id);
    free(want);
}

static loom_conn *serve_ordered(server *s, raw_reader *r, const char *transport,
                                const loom_conn_options *o, size_t (*size_of)(uint64_t))
{
    loom_conn *c = serve_raw(s, r, transport, o);
    r->size_of = size_of;
    return c;
}

static size_t small_size(uint64_t id)
{
    return (size_t)(id % 40);
}

/* Frames sent in one loop pass are held until the pass ends, then all go
 * out, whole and in order. */
static void one_pass(const char *transport, size_t n, size_t (*size_of)(uint64_t))
{
    server s;
    raw_reader r;
    loom_conn *c = serve_ordered(&s, &r, transport, NULL, size_of);
    for (uint64_t i = 0; i < n; i++) {
        size_t before = loom_conn_pending_write(c);
        cr_assert_eq(send_patterned(c, i, size_of(i)), 0, "send %llu: %s", (unsigned long long)i,
                     loom_errdetail());
        cr_assert_gt(loom_conn_pending_write(c), before);
    }
    cr_assert(raw_wait_frames(&r, n), "got %zu of %zu frames", r.frames, n);
    cr_assert_eq(r.frames, n);
    cr_assert_eq(r.eof, 0);
    cr_assert_eq(loom_conn_pending_write(c), 0);
    raw_hang_up(&s, &r);
}

Test(conn, frames_sent_in_one_pass_arrive_whole_and_in_order_unix)
{
    one_pass("unix", 5000, small_size);
}

Test(conn, frames_sent_in_one_pass_arrive_whole_and_in_order_tcp)
{
    one_pass("tcp", 5000, small_size);
}

Test(conn, frames_of_mixed_sizes_past_the_coalescing_size_keep_their_order)
{
    one_pass("unix", 1000, mixed_size);
}

Test(conn, nothing_is_written_before_the_loop_pass_ends)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_ordered(&s, &r, "unix", NULL, small_size);
    for (uint64_t i = 0; i < 10; i++)
        cr_assert_eq(send_patterned(c, i, small_size(i)), 0);
    uint8_t byte;
    cr_assert_eq(recv(r.fd, &byte, 1, MSG_DONTWAIT), -1, "a frame went out before the pass ended");
    cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "%s", strerror(errno));
    cr_assert(raw_wait_frames(&r, 10));
    cr_assert_eq(r.frames, 10);
    raw_hang_up(&s, &r);
}

static size_t kib_size(uint64_t id)
{
    (void)id;
    return 1000;
}

Test(conn, write_queue_limit_counts_frames_not_yet_written)
{
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_pending_write = 64u * 1024u;
    server s;
    raw_reader r;
    loom_conn *c = serve_ordered(&s, &r, "unix", &o, kib_size);
    uint64_t sent = 0;
    int rc = 0;
    while (sent < 1000 && (rc = send_patterned(c, sent, kib_size(sent))) == 0) {
        sent++;
        cr_assert_leq(loom_conn_pending_write(c), o.max_pending_write);
    }
    cr_assert_eq(rc, LOOM_ERESOURCE_EXHAUSTED, "send %llu: %s", (unsigned long long)sent,
                 loom_err_name(rc));
    /* ~1 KiB frames under a 64 KiB limit */
    cr_assert_geq(sent, 60);
    cr_assert_leq(sent, 65);
    cr_assert(raw_wait_frames(&r, sent), "got %zu of %llu", r.frames, (unsigned long long)sent);
    cr_assert_eq(r.frames, sent, "frames refused by the limit must not be sent");
    raw_hang_up(&s, &r);
}

Test(conn, close_hands_frames_of_this_pass_to_the_socket)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_ordered(&s, &r, "unix", NULL, small_size);
    for (uint64_t i = 0; i < 20; i++)
        cr_assert_eq(send_patterned(c, i, small_size(i)), 0);
    loom_conn_close(c, 0, NULL);
    raw_wait_frames(&r, 21);
    cr_assert_eq(r.frames, 20, "got %zu of 20 frames", r.frames);
    cr_assert(r.eof);
    raw_stop(&s, &r);
}

/* A frame queued by a callback that runs after the flush point of a loop
 * pass (here a check callback) still goes out without anything else waking
 * the loop: only the peer's socket and a watchdog can wake it. */
typedef struct late_sender {
    loom_conn *c;
    raw_reader *r;
    int sent;
    int watchdog_fired;
} late_sender;

static void late_send_cb(uv_check_t *h)
{
    late_sender *ls = h->data;
    uv_check_stop(h);
    cr_assert_eq(send_patterned(ls->c, 0, 7), 0);
    ls->sent = 1;
}

static void late_readable_cb(uv_poll_t *p, int status, int events)
{
    late_sender *ls = p->data;
    (void)status, (void)events;
    raw_drain(ls->r);
}

static void late_watchdog_cb(uv_timer_t *t)
{
    late_sender *ls = t->data;
    ls->watchdog_fired = 1;
}

static size_t seven(uint64_t id)
{
    (void)id;
    return 7;
}

Test(conn, frame_sent_from_a_late_callback_is_not_stranded)
{
    server s;
    raw_reader r;
    loom_conn *c = serve_ordered(&s, &r, "unix", NULL, seven);
    late_sender ls = {c, &r, 0, 0};
    uv_check_t check;
    uv_poll_t readable;
    uv_timer_t watchdog;
    uv_check_init(&loop, &check);
    check.data = &ls;
    uv_check_start(&check, late_send_cb);
    uv_poll_init(&loop, &readable, r.fd);
    readable.data = &ls;
    uv_poll_start(&readable, UV_READABLE, late_readable_cb);
    uv_timer_init(&loop, &watchdog);
    watchdog.data = &ls;
    uv_timer_start(&watchdog, late_watchdog_cb, WAIT_MS, 0);
    /* a pass that does not block, so the check callback runs */
    uv_run(&loop, UV_RUN_NOWAIT);
    while (r.frames < 1 && !ls.watchdog_fired)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(ls.sent, 1);
    cr_assert_eq(ls.watchdog_fired, 0, "the frame waited for an unrelated wake-up");
    cr_assert_eq(r.frames, 1);
    uv_close((uv_handle_t *)&check, NULL);
    uv_close((uv_handle_t *)&readable, NULL);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    raw_hang_up(&s, &r);
}
