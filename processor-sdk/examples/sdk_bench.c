/* loom-sdk-bench: request/reply throughput of the processor SDK.
 *
 * A processor (one handler: append a 64-byte event, set aux_state,
 * respond) and a client playing Loom share one loop and talk over a Unix
 * socket (or TCP), the client keeping --pipeline requests in flight, each
 * carrying --history events. Prints requests/s and the mean round trip. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "example.h"
#include "loom/processor.h"
#include "loom/wire.h"

typedef struct bench {
    uv_loop_t loop;
    loom_proc *p;
    loom_conn *conn;
    uint64_t total, sent, answered, failed;
    uint64_t pipeline;
    uint8_t *request; /* one encoded ProcessRequest envelope, resent */
    Loom__V1__ProcessRequest pr;
    Loom__V1__Machine machine;
    Loom__V1__Event *events;
    Loom__V1__Event **event_ptrs;
    int connected;
} bench;

static void on_call(loom_proc_req *r, void *user)
{
    static const uint8_t event[64] = {0x81, 0xa4, 't', 'y', 'p', 'e'};
    (void)user;
    loom_proc_append_event(r, 1, event, sizeof event);
    loom_proc_set_aux_state(r, "state", 5);
    loom_proc_respond(r, "ok", 2);
    loom_proc_done(r);
}

static void send_one(bench *b)
{
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = ++b->sent;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
    env.process = &b->pr;
    int err = loom_conn_send(b->conn, &env);
    if (err != 0) {
        fprintf(stderr, "send: %s\n", loom_strerror(err));
        exit(1);
    }
}

static void on_reply(loom_conn *c, loom_envelope *env, void *user)
{
    bench *b = user;
    if (env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY ||
        env->process_reply->outcome_case != LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT)
        b->failed++;
    loom_envelope_free(env);
    b->answered++;
    if (b->sent < b->total)
        send_one(b);
    else if (b->answered == b->total)
        loom_conn_close(c, 0, "done");
}

static void on_connect(loom_conn *c, int status, void *user)
{
    bench *b = user;
    (void)c;
    if (status != 0) {
        fprintf(stderr, "connect: %s\n", loom_strerror(status));
        exit(1);
    }
    b->connected = 1;
    for (uint64_t i = 0; i < b->pipeline && b->sent < b->total; i++)
        send_one(b);
}

static void on_close(loom_conn *c, int err, const char *reason, void *user)
{
    bench *b = user;
    (void)c;
    b->conn = NULL;
    if (b->answered != b->total)
        fprintf(stderr, "closed early: %s (%d)\n", reason, err);
    loom_proc_shutdown(b->p, 0, NULL, NULL);
}

static void build_request(bench *b, uint64_t history)
{
    static uint8_t data[64];
    b->events = calloc(history + 1, sizeof *b->events);
    b->event_ptrs = calloc(history + 1, sizeof *b->event_ptrs);
    if (b->events == NULL || b->event_ptrs == NULL)
        exit(1);
    for (uint64_t i = 0; i < history; i++) {
        Loom__V1__Event e = LOOM__V1__EVENT__INIT;
        e.id = i + 1;
        e.format_version = 1;
        e.data.data = data;
        e.data.len = sizeof data;
        b->events[i] = e;
        b->event_ptrs[i] = &b->events[i];
    }
    Loom__V1__Machine m = LOOM__V1__MACHINE__INIT;
    m.ns = "bench";
    m.id = "machine-1";
    m.n_history = history;
    m.history = b->event_ptrs;
    m.last_event_id = history;
    b->machine = m;
    Loom__V1__ProcessRequest pr = LOOM__V1__PROCESS_REQUEST__INIT;
    pr.kind = LOOM__V1__PROCESS_KIND__PROCESS_CALL;
    pr.machine = &b->machine;
    pr.attempt = 1;
    b->pr = pr;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"requests", required_argument, NULL, 'n'},
                                             {"pipeline", required_argument, NULL, 'p'},
                                             {"history", required_argument, NULL, 'e'},
                                             {"tcp", no_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    static bench b;
    uint64_t history = 10;
    int tcp = 0, c, err = 0;
    b.total = 200000;
    b.pipeline = 128;
    while (err == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            err = ex_flag_u64("requests", optarg, &b.total);
            break;
        case 'p':
            err = ex_flag_u64("pipeline", optarg, &b.pipeline);
            break;
        case 'e':
            err = ex_flag_u64("history", optarg, &history);
            break;
        case 't':
            tcp = 1;
            break;
        default:
            err = LOOM_EINVALID_ARGUMENT;
        }
    }
    if (err != 0 || b.total == 0 || b.pipeline == 0 || history > 100000) {
        fprintf(stderr,
                "usage: loom-sdk-bench [--requests N] [--pipeline N] [--history N] [--tcp]\n");
        return 2;
    }
    build_request(&b, history);
    uv_loop_init(&b.loop);
    loom_proc_options o;
    loom_proc_options_init(&o);
    o.max_in_flight = b.pipeline;
    char addr[128];
    snprintf(addr, sizeof addr, "unix:/tmp/loom-sdk-bench-%d.sock", (int)getpid());
    err = loom_proc_create(&b.loop, &o, &b.p);
    if (err == 0)
        err = loom_proc_on(b.p, LOOM_PROC_CALL, on_call, NULL);
    if (err == 0)
        err = loom_proc_listen(b.p, tcp ? "tcp:127.0.0.1:0" : addr);
    if (err != 0) {
        fprintf(stderr, "processor: %s\n", loom_errdetail());
        return 1;
    }
    if (tcp)
        snprintf(addr, sizeof addr, "tcp:127.0.0.1:%d", loom_proc_port(b.p));
    static const loom_conn_callbacks cb = {
        .on_envelope = on_reply, .on_connect = on_connect, .on_close = on_close};
    if (loom_conn_connect(&b.loop, addr, NULL, &cb, &b, &b.conn) != 0) {
        fprintf(stderr, "connect: %s\n", loom_errdetail());
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%s, %llu requests, pipeline %llu, history %llu events: %.0f requests/s, "
           "mean round trip %.1f us, %llu failed\n",
           tcp ? "tcp" : "unix", (unsigned long long)b.answered, (unsigned long long)b.pipeline,
           (unsigned long long)history, (double)b.answered / s,
           s * 1e6 * (double)b.pipeline / (double)b.answered, (unsigned long long)b.failed);
    loom_proc_free(b.p);
    uv_loop_close(&b.loop);
    if (!tcp)
        unlink(addr + strlen("unix:"));
    free(b.events);
    free(b.event_ptrs);
    return b.failed == 0 && b.answered == b.total ? 0 : 1;
}
