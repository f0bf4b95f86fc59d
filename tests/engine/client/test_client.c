/* loom_client against a scripted fake server thread that speaks the frame
 * codec. The machine id of each request picks the server's behaviour:
 *   "err:N"     Error{N, "boom N"}
 *   "slow:MS"   answer after MS milliseconds
 *   "wrong"     answer with a body that does not match the request
 *   "close"     close the connection without answering
 *   "huge"      send a length prefix of 64 MiB
 *   "garbage"   send a frame that is not an Envelope
 *   "hold"      keep the request; "flush" answers every held one, newest
 *               first, then itself
 *   anything else: the matching reply, response = args, last_event_id 7. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loom/client.h"

#define MAX_HELD 4096

static char scratch[256];
static char addr[300];
static int listen_fd = -1;
static pthread_t server_thread;

typedef struct server_conn {
    int fd;
    loom_envelope *held[MAX_HELD];
    int n_held;
    int closed;
} server_conn;

static void write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the client went away: the test decides what that means */
        p += n;
        len -= (size_t)n;
    }
}

static void send_env(server_conn *s, loom_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert_eq(loom_envelope_encode(env, LOOM_FRAME_MAX_DEFAULT, &buf, &len), 0);
    write_all(s->fd, buf, len);
    free(buf);
}

static void send_error(server_conn *s, uint64_t corr, uint32_t code, const char *msg)
{
    Loom__V1__Error e = LOOM__V1__ERROR__INIT;
    e.code = code;
    e.message = (char *)msg;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = corr;
    env.body_case = LOOM__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    send_env(s, &env);
}

static const char *request_id(const loom_envelope *req)
{
    switch (req->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
        return req->start->id;
    case LOOM__V1__ENVELOPE__BODY_CALL:
        return req->call->id;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
        return req->notify->id;
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
        return req->repair->id;
    case LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR:
        return req->simple_repair->id;
    case LOOM__V1__ENVELOPE__BODY_GET_MACHINE:
        return req->get_machine->id;
    case LOOM__V1__ENVELOPE__BODY_REMOVE:
        return req->remove->id;
    case LOOM__V1__ENVELOPE__BODY_LIST_MACHINES:
        return req->list_machines->after;
    default:
        return "";
    }
}

/* The call's response tells the test what the server saw. */
static void describe_call(const Loom__V1__CallRequest *c, char *out, size_t n)
{
    if (c->range)
        snprintf(out, n, "after=%llu limit=%u dir=%d has_after=%d rid=%s",
                 (unsigned long long)c->range->after, c->range->limit, (int)c->range->direction,
                 (int)c->range->has_after, c->request_id);
    else
        snprintf(out, n, "norange rid=%s args=%.*s", c->request_id, (int)c->args.len,
                 (const char *)c->args.data);
}

static void answer_ok(server_conn *s, const loom_envelope *req)
{
    char text[256];
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = req->correlation_id;
    env.body_case = (Loom__V1__Envelope__BodyCase)(req->body_case + 1);
    Loom__V1__StartReply sr = LOOM__V1__START_REPLY__INIT;
    Loom__V1__CallReply cr = LOOM__V1__CALL_REPLY__INIT;
    Loom__V1__RepairReply rr = LOOM__V1__REPAIR_REPLY__INIT;
    Loom__V1__NotifyReply nr = LOOM__V1__NOTIFY_REPLY__INIT;
    Loom__V1__SimpleRepairReply srr = LOOM__V1__SIMPLE_REPAIR_REPLY__INIT;
    Loom__V1__RemoveReply rmr = LOOM__V1__REMOVE_REPLY__INIT;
    Loom__V1__GetMachineReply gr = LOOM__V1__GET_MACHINE_REPLY__INIT;
    Loom__V1__Machine m = LOOM__V1__MACHINE__INIT;
    Loom__V1__ListMachinesReply lr = LOOM__V1__LIST_MACHINES_REPLY__INIT;
    Loom__V1__MachineSummary s1 = LOOM__V1__MACHINE_SUMMARY__INIT, s2 = s1;
    Loom__V1__MachineSummary *sums[2] = {&s1, &s2};
    Loom__V1__RegisterNamespaceReply regr = LOOM__V1__REGISTER_NAMESPACE_REPLY__INIT;
    Loom__V1__UpdateNamespaceReply updr = LOOM__V1__UPDATE_NAMESPACE_REPLY__INIT;
    Loom__V1__ListNamespacesReply lnr = LOOM__V1__LIST_NAMESPACES_REPLY__INIT;
    Loom__V1__NamespaceConfig nc = LOOM__V1__NAMESPACE_CONFIG__INIT;
    Loom__V1__NamespaceConfig *ncs[1] = {&nc};
    switch (req->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
        sr.response = req->start->args;
        sr.last_event_id = 7;
        env.start_reply = &sr;
        break;
    case LOOM__V1__ENVELOPE__BODY_CALL:
        describe_call(req->call, text, sizeof text);
        cr.response.data = (uint8_t *)text;
        cr.response.len = strlen(text);
        cr.last_event_id = 7;
        env.call_reply = &cr;
        break;
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
        rr.response = req->repair->args;
        rr.last_event_id = 7;
        env.repair_reply = &rr;
        break;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
        nr.notification_id = 42;
        env.notify_reply = &nr;
        break;
    case LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR:
        env.simple_repair_reply = &srr;
        break;
    case LOOM__V1__ENVELOPE__BODY_REMOVE:
        env.remove_reply = &rmr;
        break;
    case LOOM__V1__ENVELOPE__BODY_GET_MACHINE:
        m.ns = req->get_machine->ns;
        m.id = req->get_machine->id;
        m.status = LOOM__V1__MACHINE_STATUS__STATUS_WORKING;
        m.last_event_id = 3;
        gr.machine = &m;
        env.get_machine_reply = &gr;
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_MACHINES:
        s1.id = "m1";
        s2.id = "m2";
        s2.status = (Loom__V1__MachineStatus)req->list_machines->status;
        lr.n_machines = 2;
        lr.machines = sums;
        lr.next_after = "m2";
        env.list_machines_reply = &lr;
        break;
    case LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE:
        env.register_namespace_reply = &regr;
        break;
    case LOOM__V1__ENVELOPE__BODY_UPDATE_NAMESPACE:
        env.update_namespace_reply = &updr;
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES:
        nc.name = "payment";
        lnr.n_namespaces = 1;
        lnr.namespaces = ncs;
        env.list_namespaces_reply = &lnr;
        break;
    default:
        send_error(s, req->correlation_id, 17, "not a request");
        return;
    }
    send_env(s, &env);
}

static void flush_held(server_conn *s, const loom_envelope *flush)
{
    for (int i = s->n_held - 1; i >= 0; i--) {
        answer_ok(s, s->held[i]);
        loom_envelope_free(s->held[i]);
    }
    s->n_held = 0;
    answer_ok(s, flush);
}

static void misbehave_frame(server_conn *s, const char *how)
{
    if (strcmp(how, "huge") == 0) {
        uint8_t hdr[4] = {0x04, 0x00, 0x00, 0x00};
        write_all(s->fd, hdr, 4);
    } else {
        uint8_t frame[8] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
        write_all(s->fd, frame, sizeof frame);
    }
}

/* One request, by the script in the header comment. */
static void serve(server_conn *s, loom_envelope *req)
{
    const char *id = request_id(req);
    if (strncmp(id, "err:", 4) == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "boom %s", id + 4);
        send_error(s, req->correlation_id, (uint32_t)atoi(id + 4), msg);
    } else if (strncmp(id, "slow:", 5) == 0) {
        usleep((useconds_t)atoi(id + 5) * 1000);
        answer_ok(s, req);
    } else if (strcmp(id, "wrong") == 0) {
        Loom__V1__RemoveReply r = LOOM__V1__REMOVE_REPLY__INIT;
        loom_envelope env = LOOM__V1__ENVELOPE__INIT;
        env.correlation_id = req->correlation_id;
        env.body_case = LOOM__V1__ENVELOPE__BODY_REMOVE_REPLY;
        env.remove_reply = &r;
        send_env(s, &env);
    } else if (strcmp(id, "close") == 0) {
        s->closed = 1;
    } else if (strcmp(id, "huge") == 0 || strcmp(id, "garbage") == 0) {
        misbehave_frame(s, id);
    } else if (strcmp(id, "hold") == 0 && s->n_held < MAX_HELD) {
        s->held[s->n_held++] = req;
        return; /* kept */
    } else if (strcmp(id, "flush") == 0) {
        flush_held(s, req);
    } else {
        answer_ok(s, req);
    }
    loom_envelope_free(req);
}

static int on_request(void *ctx, const uint8_t *payload, size_t len)
{
    server_conn *s = ctx;
    loom_envelope *req = NULL;
    if (loom_envelope_decode(payload, len, &req) < 0) {
        send_error(s, 0, 17, "undecodable");
        return -1;
    }
    serve(s, req);
    return s->closed ? -1 : 0;
}

static void serve_conn(int fd)
{
    server_conn *s = calloc(1, sizeof *s);
    s->fd = fd;
    loom_frame_reader r;
    loom_frame_reader_init(&r, LOOM_FRAME_MAX_DEFAULT);
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || loom_frame_reader_feed(&r, buf, (size_t)n, on_request, s) != 0)
            break;
    }
    for (int i = 0; i < s->n_held; i++)
        loom_envelope_free(s->held[i]);
    loom_frame_reader_free(&r);
    close(fd);
    free(s);
}

static void *server_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* the listener was shut down */
        serve_conn(fd);
    }
}

static void server_up(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/loom-client-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(scratch));
    snprintf(addr, sizeof addr, "unix:%s/s.sock", scratch);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(scratch) + sizeof "/s.sock", sizeof un.sun_path);
    memcpy(un.sun_path, scratch, strlen(scratch));
    memcpy(un.sun_path + strlen(scratch), "/s.sock", sizeof "/s.sock");
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(listen_fd, 0);
    cr_assert_eq(bind(listen_fd, (struct sockaddr *)&un, sizeof un), 0);
    cr_assert_eq(listen(listen_fd, 16), 0);
    cr_assert_eq(pthread_create(&server_thread, NULL, server_main, NULL), 0);
}

static void server_down(void)
{
    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    char path[300];
    snprintf(path, sizeof path, "%s/s.sock", scratch);
    unlink(path);
    rmdir(scratch);
}

static loom_client *connect_ok(void)
{
    loom_client *c = NULL;
    int rc = loom_client_connect(addr, NULL, &c);
    cr_assert_eq(rc, 0, "connect: %s (%s)", loom_strerror(rc), loom_errdetail());
    return c;
}

TestSuite(client, .init = server_up, .fini = server_down, .timeout = 60);

Test(client, connect_to_missing_socket_fails_as_closed)
{
    char bad[400];
    snprintf(bad, sizeof bad, "unix:%s/nobody.sock", scratch);
    loom_client *c = (loom_client *)1;
    cr_assert_eq(loom_client_connect(bad, NULL, &c), LOOM_ECLOSED);
    cr_assert_null(c);
    cr_assert(strstr(loom_errdetail(), "nobody.sock") != NULL);
}

Test(client, connect_rejects_bad_address)
{
    loom_client *c = NULL;
    cr_assert_eq(loom_client_connect("carrier-pigeon:home", NULL, &c), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_connect("tcp:127.0.0.1:99999", NULL, &c), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_connect(NULL, NULL, &c), LOOM_EINVALID_ARGUMENT);
    cr_assert_null(c);
}

Test(client, start_returns_response_and_last_event_id)
{
    loom_client *c = connect_ok();
    loom_client_result res;
    cr_assert_eq(loom_client_start(c, "payment", "m1", "hello", 5, NULL, &res), 0);
    cr_assert_eq(res.response_len, 5);
    cr_assert_eq(memcmp(res.response, "hello", 5), 0);
    cr_assert_eq(res.last_event_id, 7);
    cr_assert_str_empty(loom_client_errmsg(c));
    loom_client_result_free(&res);
    cr_assert_null(res.reply);
    loom_client_close(c);
}

Test(client, call_sends_range_and_request_id)
{
    loom_client *c = connect_ok();
    loom_client_range range = {.after = 5, .limit = 10, .backward = true, .has_after = true};
    loom_client_req req = {.request_id = "r-1", .range = &range};
    loom_client_result res;
    cr_assert_eq(loom_client_call(c, "payment", "m1", "x", 1, &req, &res), 0);
    cr_assert_eq(res.response_len, strlen("after=5 limit=10 dir=1 has_after=1 rid=r-1"));
    cr_assert_eq(
        memcmp(res.response, "after=5 limit=10 dir=1 has_after=1 rid=r-1", res.response_len), 0);
    loom_client_result_free(&res);
    cr_assert_eq(loom_client_call(c, "payment", "m1", "abc", 3, NULL, &res), 0);
    cr_assert_eq(memcmp(res.response, "norange rid= args=abc", res.response_len), 0);
    loom_client_result_free(&res);
    loom_client_close(c);
}

Test(client, every_operation_gets_its_typed_result)
{
    loom_client *c = connect_ok();
    loom_client_result res;
    cr_assert_eq(loom_client_notify(c, "payment", "m1", "n", 1, NULL, &res), 0);
    cr_assert_eq(res.notification_id, 42);
    loom_client_result_free(&res);
    cr_assert_eq(loom_client_repair(c, "payment", "m1", "fix", 3, NULL, &res), 0);
    cr_assert_eq(memcmp(res.response, "fix", 3), 0);
    loom_client_result_free(&res);
    cr_assert_eq(loom_client_simple_repair(c, "payment", "m1", NULL, NULL), 0);
    cr_assert_eq(loom_client_remove(c, "payment", "m1", NULL, NULL), 0);
    cr_assert_eq(loom_client_get_machine(c, "payment", "m9", NULL, &res), 0);
    cr_assert_str_eq(res.machine->id, "m9");
    cr_assert_str_eq(res.machine->ns, "payment");
    cr_assert_eq(res.machine->last_event_id, 3);
    loom_client_result_free(&res);
    cr_assert_eq(loom_client_list_machines(c, "payment", 2, "m0", 10, NULL, &res), 0);
    cr_assert_eq(res.machines->n_machines, 2);
    cr_assert_eq((int)res.machines->machines[1]->status, 2);
    cr_assert_str_eq(res.machines->next_after, "m2");
    loom_client_result_free(&res);
    Loom__V1__NamespaceConfig cfg = LOOM__V1__NAMESPACE_CONFIG__INIT;
    cfg.name = "payment";
    cr_assert_eq(loom_client_register_namespace(c, &cfg, NULL, NULL), 0);
    cr_assert_eq(loom_client_update_namespace(c, &cfg, NULL, NULL), 0);
    cr_assert_eq(loom_client_list_namespaces(c, NULL, &res), 0);
    cr_assert_eq(res.namespaces->n_namespaces, 1);
    cr_assert_str_eq(res.namespaces->namespaces[0]->name, "payment");
    loom_client_result_free(&res);
    loom_client_close(c);
}

Test(client, server_error_gives_code_and_message)
{
    loom_client *c = connect_ok();
    loom_client_result res = {0};
    cr_assert_eq(loom_client_get_machine(c, "payment", "err:2", NULL, &res),
                 LOOM_EMACHINE_NOT_FOUND);
    cr_assert_str_eq(loom_client_errmsg(c), "boom 2");
    cr_assert_null(res.reply);
    cr_assert_eq(loom_client_call(c, "payment", "err:19", NULL, 0, NULL, NULL),
                 LOOM_EPROCESSOR_FAILED);
    /* The connection is still fine after an error reply. */
    cr_assert_eq(loom_client_remove(c, "payment", "m1", NULL, NULL), 0);
    cr_assert_str_empty(loom_client_errmsg(c));
    loom_client_close(c);
}

Test(client, error_code_zero_is_a_protocol_error)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_remove(c, "payment", "err:0", NULL, NULL), LOOM_EPROTOCOL);
    loom_client_close(c);
}

Test(client, mismatched_reply_body_breaks_the_connection)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_start(c, "payment", "wrong", NULL, 0, NULL, NULL), LOOM_EPROTOCOL);
    cr_assert_eq(loom_client_start(c, "payment", "m1", NULL, 0, NULL, NULL), LOOM_ECLOSED);
    cr_assert(strstr(loom_client_errmsg(c), "does not answer") != NULL, "%s",
              loom_client_errmsg(c));
    loom_client_close(c);
}

Test(client, request_timeout_leaves_connection_usable)
{
    loom_client *c = connect_ok();
    loom_client_req req = {.timeout_ms = 100};
    cr_assert_eq(loom_client_remove(c, "payment", "slow:800", &req, NULL), LOOM_ETIMEOUT);
    cr_assert_eq(loom_client_pending(c), 0);
    /* The late reply to the timed-out request is dropped, not mistaken for
     * this one. */
    loom_client_result res;
    cr_assert_eq(loom_client_start(c, "payment", "m1", "ok", 2, NULL, &res), 0);
    cr_assert_eq(memcmp(res.response, "ok", 2), 0);
    loom_client_result_free(&res);
    loom_client_close(c);
}

Test(client, pipelined_replies_out_of_order_match_by_correlation_id)
{
    loom_client *c = connect_ok();
    enum { N = 200 };
    uint64_t corr[N];
    char args[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(args[i], sizeof args[i], "a%d", i);
        cr_assert_eq(
            loom_client_start_send(c, "payment", "hold", args[i], strlen(args[i]), NULL, &corr[i]),
            0);
    }
    uint64_t flush;
    cr_assert_eq(loom_client_remove_send(c, "payment", "flush", NULL, &flush), 0);
    cr_assert_eq(loom_client_pending(c), N + 1);
    for (int i = 0; i < N; i++) {
        loom_client_result res;
        cr_assert_eq(loom_client_wait(c, corr[i], &res), 0);
        cr_assert_eq(res.response_len, strlen(args[i]));
        cr_assert_eq(memcmp(res.response, args[i], res.response_len), 0);
        loom_client_result_free(&res);
    }
    cr_assert_eq(loom_client_wait(c, flush, NULL), 0);
    cr_assert_eq(loom_client_wait(c, flush, NULL), LOOM_ENOT_FOUND);
    loom_client_close(c);
}

Test(client, wait_any_returns_each_reply_once)
{
    loom_client *c = connect_ok();
    uint64_t a, b, flush, got;
    cr_assert_eq(loom_client_start_send(c, "payment", "hold", "A", 1, NULL, &a), 0);
    cr_assert_eq(loom_client_start_send(c, "payment", "hold", "B", 1, NULL, &b), 0);
    cr_assert_eq(loom_client_remove_send(c, "payment", "flush", NULL, &flush), 0);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(loom_client_wait_any(c, &got, NULL), 0);
        seen |= got == a ? 1 : got == b ? 2 : got == flush ? 4 : 8;
    }
    cr_assert_eq(seen, 7);
    cr_assert_eq(loom_client_wait_any(c, &got, NULL), LOOM_ENOT_FOUND);
    loom_client_close(c);
}

Test(client, max_pending_is_enforced)
{
    loom_client_options o;
    loom_client_options_init(&o);
    o.max_pending = 4;
    loom_client *c = NULL;
    cr_assert_eq(loom_client_connect(addr, &o, &c), 0);
    uint64_t corr[5];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(loom_client_start_send(c, "payment", "hold", NULL, 0, NULL, &corr[i]), 0);
    cr_assert_eq(loom_client_start_send(c, "payment", "hold", NULL, 0, NULL, &corr[4]),
                 LOOM_ERESOURCE_EXHAUSTED);
    loom_client_close(c); /* frees the four unanswered requests */
}

Test(client, server_closing_fails_every_later_call)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_remove(c, "payment", "close", NULL, NULL), LOOM_ECLOSED);
    cr_assert_eq(loom_client_remove(c, "payment", "m1", NULL, NULL), LOOM_ECLOSED);
    cr_assert(strstr(loom_client_errmsg(c), "closed") != NULL, "%s", loom_client_errmsg(c));
    loom_client_close(c);
}

Test(client, oversized_reply_frame_is_refused)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_remove(c, "payment", "huge", NULL, NULL), LOOM_EFRAME_TOO_LARGE);
    cr_assert_eq(loom_client_remove(c, "payment", "m1", NULL, NULL), LOOM_ECLOSED);
    loom_client_close(c);
}

Test(client, garbage_reply_frame_is_a_protocol_error)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_remove(c, "payment", "garbage", NULL, NULL), LOOM_EPROTOCOL);
    loom_client_close(c);
}

Test(client, oversized_request_is_refused_locally)
{
    loom_client_options o;
    loom_client_options_init(&o);
    o.max_frame = 1024;
    loom_client *c = NULL;
    cr_assert_eq(loom_client_connect(addr, &o, &c), 0);
    static char big[4096];
    cr_assert_eq(loom_client_start(c, "payment", "m1", big, sizeof big, NULL, NULL),
                 LOOM_EFRAME_TOO_LARGE);
    cr_assert_eq(loom_client_start(c, "payment", "m1", "ok", 2, NULL, NULL), 0);
    loom_client_close(c);
}

Test(client, null_ids_are_invalid_arguments)
{
    loom_client *c = connect_ok();
    cr_assert_eq(loom_client_start(c, NULL, "m1", NULL, 0, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_get_machine(c, "payment", NULL, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_register_namespace(c, NULL, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START_REPLY;
    uint64_t corr;
    cr_assert_eq(loom_client_send(c, &env, 0, &corr), LOOM_EINVALID_ARGUMENT);
    loom_client_close(c);
}

/* Many large requests in flight while the server, writing large replies
 * back, blocks on a full socket: the client must read while it writes. */
Test(client, long_pipeline_of_large_frames_does_not_deadlock)
{
    loom_client *c = connect_ok();
    enum { N = 300, SIZE = 64 * 1024 };
    uint8_t *payload = malloc(SIZE);
    for (int i = 0; i < SIZE; i++)
        payload[i] = (uint8_t)(i * 31);
    uint64_t *corr = calloc(N, sizeof *corr);
    for (int i = 0; i < N; i++)
        cr_assert_eq(loom_client_start_send(c, "payment", "m", payload, SIZE, NULL, &corr[i]), 0);
    for (int i = 0; i < N; i++) {
        loom_client_result res;
        cr_assert_eq(loom_client_wait(c, corr[i], &res), 0, "%d: %s", i, loom_client_errmsg(c));
        cr_assert_eq(res.response_len, SIZE);
        cr_assert_eq(memcmp(res.response, payload, SIZE), 0);
        loom_client_result_free(&res);
    }
    free(corr);
    free(payload);
    loom_client_close(c);
}
