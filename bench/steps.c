/* loom-bench steps: end-to-end durable steps/s through a real engine.
 *
 * In one process: the engine (loom_engine, its own loop thread and its
 * committer thread), a null processor on its own libuv loop thread that
 * answers every step with one 64-byte event, and a client thread speaking
 * the framed protocol over a Unix socket. Every step is a Call that goes
 * client -> engine -> processor -> engine -> store commit (fsync unless
 * --nosync) -> client.
 *
 *   loom-bench steps [--machines N] [--seconds S] [--rate R] [--nosync] [--json]
 *
 * Phase 1 (throughput): each machine keeps one call outstanding (steps of
 * a machine are serialised, more would only queue) for S seconds.
 * Phase 2 (latency): calls offered at a fixed rate R/s round-robin over the
 * machines (open loop: sends follow the clock, not the replies); p50, p99,
 * p999 of call latency. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "loom/engine.h"
#include "loom/wire.h"

typedef struct steps_opts {
    uint64_t machines, seconds, rate;
    bool nosync, json;
} steps_opts;

/* ------------------------------------------------------------ null processor */

typedef struct nullproc {
    uv_loop_t loop;
    uv_async_t stop;
    loom_listener *l;
    pthread_t thread;
} nullproc;

static uint8_t event_data[64];

static void np_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    (void)user;
    Loom__V1__NewEvent ev = LOOM__V1__NEW_EVENT__INIT, *evp = &ev;
    Loom__V1__ProcessResult res = LOOM__V1__PROCESS_RESULT__INIT;
    Loom__V1__ProcessReply pr = LOOM__V1__PROCESS_REPLY__INIT;
    loom_envelope out = LOOM__V1__ENVELOPE__INIT;
    ev.format_version = 1;
    ev.data.data = event_data;
    ev.data.len = sizeof event_data;
    res.n_events = 1;
    res.events = &evp;
    pr.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
    pr.result = &res;
    out.correlation_id = env->correlation_id;
    out.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    out.process_reply = &pr;
    loom_conn_send(c, &out);
    loom_envelope_free(env);
}

static void np_close(loom_conn *c, int err, const char *reason, void *user)
{
    (void)c, (void)err, (void)reason, (void)user;
}

static void np_accept(loom_listener *l, loom_conn *c, void *user)
{
    (void)l, (void)c, (void)user;
}

static void np_stop(uv_async_t *a)
{
    nullproc *np = a->data;
    loom_listener_close(np->l);
    uv_close((uv_handle_t *)a, NULL);
    uv_stop(&np->loop);
}

static void *np_main(void *arg)
{
    nullproc *np = arg;
    pthread_setname_np(pthread_self(), "null-processor");
    uv_run(&np->loop, UV_RUN_DEFAULT);
    return NULL;
}

static const loom_conn_callbacks np_callbacks = {.on_envelope = np_envelope, .on_close = np_close};

static int nullproc_start(nullproc *np, const char *addr)
{
    uv_loop_init(&np->loop);
    uv_async_init(&np->loop, &np->stop, np_stop);
    np->stop.data = np;
    int rc = loom_listen(&np->loop, addr, NULL, &np_callbacks, np_accept, np, &np->l);
    if (rc)
        return rc;
    return pthread_create(&np->thread, NULL, np_main, np) ? LOOM_EINTERNAL : 0;
}

static void nullproc_stop(nullproc *np)
{
    uv_async_send(&np->stop);
    pthread_join(np->thread, NULL);
    uv_run(&np->loop, UV_RUN_NOWAIT);
    uv_loop_close(&np->loop);
}

/* ------------------------------------------------------------ engine */

typedef struct engine_run {
    loom_engine *e;
    pthread_t thread;
} engine_run;

static void *engine_main(void *arg)
{
    engine_run *r = arg;
    pthread_setname_np(pthread_self(), "engine-loop");
    loom_engine_run(r->e, false);
    return NULL;
}

static int engine_start(engine_run *r, const char *dir, const steps_opts *o)
{
    char text[2048];
    snprintf(text, sizeof text,
             "listen: [unix:%s/loomd.sock]\n"
             "data_dir: %s/data\n"
             "log_level: warn\n"
             "limits: {max_steps_in_flight: 65536}\n"
             "storage: {durability: %s, map_size_initial_mb: 256}\n"
             "namespaces:\n"
             "  - {name: bench, processor: unix:%s/null.sock, step_timeout_ms: 30000}\n",
             dir, dir, o->nosync ? "nosync" : "sync", dir);
    loom_config cfg;
    int rc = loom_config_parse(text, strlen(text), "bench", &cfg);
    if (rc == 0)
        rc = loom_engine_open(&r->e, &cfg);
    loom_config_free(&cfg);
    if (rc == 0 && pthread_create(&r->thread, NULL, engine_main, r))
        rc = LOOM_EINTERNAL;
    return rc;
}

/* ------------------------------------------------------------ client */

typedef struct client {
    int fd;
    loom_frame_reader rd;
    uint64_t *sent_ns; /* per machine: send time of the outstanding call */
    bool *busy;        /* per machine: a call outstanding */
    uint64_t replies, errors, skipped;
    uint64_t *lat_ns; /* latency samples (phase 2) */
    size_t n_lat, cap_lat;
    bool record, resend;
    const steps_opts *o;
    /* frames not yet written: like any pipelining client, it writes all
     * the calls it has ready in one go */
    uint8_t *out;
    size_t out_len, out_cap;
} client;

#define CLIENT_OUT_MAX (256u * 1024u)

static int client_connect(client *c, const char *path)
{
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa))
        return -1;
    loom_frame_reader_init(&c->rd, LOOM_FRAME_MAX_DEFAULT);
    return 0;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, 100);
            continue;
        }
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void client_flush(client *c)
{
    write_all(c->fd, c->out, c->out_len);
    c->out_len = 0;
}

/* Queues a frame; it goes out at the next pump (or now, past the cap). */
static void client_queue(client *c, const uint8_t *frame, size_t len)
{
    if (c->out_len + len > CLIENT_OUT_MAX)
        client_flush(c);
    if (len > c->out_cap - c->out_len) {
        size_t cap = c->out_len + len > CLIENT_OUT_MAX ? c->out_len + len : CLIENT_OUT_MAX;
        uint8_t *p = realloc(c->out, cap);
        if (!p) {
            client_flush(c);
            write_all(c->fd, frame, len);
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, frame, len);
    c->out_len += len;
}

static void send_req(client *c, uint64_t m, bool start)
{
    char id[32];
    snprintf(id, sizeof id, "m%llu", (unsigned long long)m);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    Loom__V1__StartRequest sr = LOOM__V1__START_REQUEST__INIT;
    Loom__V1__CallRequest cr = LOOM__V1__CALL_REQUEST__INIT;
    Loom__V1__HistoryRange range = LOOM__V1__HISTORY_RANGE__INIT;
    env.correlation_id = m;
    if (start) {
        sr.ns = "bench", sr.id = id;
        env.body_case = LOOM__V1__ENVELOPE__BODY_START;
        env.start = &sr;
    } else {
        /* the null processor needs no history: ask for the last event only */
        range.limit = 1;
        range.direction = LOOM__V1__DIRECTION__DIRECTION_BACKWARD;
        cr.ns = "bench", cr.id = id, cr.range = &range;
        env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
        env.call = &cr;
    }
    uint8_t *frame;
    size_t len;
    if (loom_envelope_encode(&env, LOOM_FRAME_MAX_DEFAULT, &frame, &len) == 0) {
        c->busy[m] = true;
        c->sent_ns[m] = bench_now_ns();
        client_queue(c, frame, len);
        free(frame);
    }
}

static int on_reply(void *ctx, const uint8_t *payload, size_t len)
{
    client *c = ctx;
    loom_envelope *env;
    if (loom_envelope_decode(payload, len, &env) != 0)
        return 1;
    uint64_t m = env->correlation_id;
    if (m < c->o->machines && c->busy[m]) {
        c->busy[m] = false;
        if (env->body_case == LOOM__V1__ENVELOPE__BODY_ERROR)
            c->errors++;
        else
            c->replies++;
        if (c->record && c->n_lat < c->cap_lat)
            c->lat_ns[c->n_lat++] = bench_now_ns() - c->sent_ns[m];
        if (c->resend)
            send_req(c, m, false);
    }
    loom_envelope_free(env);
    return 0;
}

/* Reads what arrived within timeout_ns (ppoll: the latency phase paces
 * sends at sub-millisecond intervals without spinning on a core the
 * engine needs). */
static int pump_ns(client *c, uint64_t timeout_ns)
{
    client_flush(c);
    struct pollfd pf = {c->fd, POLLIN, 0};
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    if (ppoll(&pf, 1, &ts, NULL) <= 0)
        return 0;
    uint8_t buf[1 << 16];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n <= 0)
        return -1;
    return loom_frame_reader_feed(&c->rd, buf, (size_t)n, on_reply, c) ? -1 : 0;
}

static int pump(client *c, int timeout_ms)
{
    return pump_ns(c, (uint64_t)timeout_ms * 1000000ull);
}

static bool any_busy(const client *c)
{
    for (uint64_t m = 0; m < c->o->machines; m++)
        if (c->busy[m])
            return true;
    return false;
}

static void drain(client *c)
{
    uint64_t end = bench_now_ns() + 30000000000ull;
    while (any_busy(c) && bench_now_ns() < end)
        if (pump(c, 100) < 0)
            return;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Steps/s with every machine busy; *cpu_us gets the CPU time of the whole
 * process (client, engine, committer, processor) per step, a figure that
 * does not depend on what else runs on the machine. */
static double throughput_phase(client *c, double *cpu_us)
{
    c->resend = true;
    for (uint64_t m = 0; m < c->o->machines; m++)
        send_req(c, m, false);
    uint64_t t0 = bench_now_ns(), end = t0 + c->o->seconds * 1000000000ull;
    double cpu0 = cpu_seconds();
    c->replies = 0;
    while (bench_now_ns() < end)
        if (pump(c, 10) < 0)
            break;
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    double rate = (double)c->replies / secs;
    *cpu_us = c->replies ? (cpu_seconds() - cpu0) * 1e6 / (double)c->replies : 0;
    c->resend = false;
    drain(c);
    return rate;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void latency_phase(client *c, double *p50, double *p99, double *p999)
{
    uint64_t n_calls = c->o->rate * c->o->seconds;
    c->cap_lat = n_calls;
    c->lat_ns = malloc(n_calls * sizeof *c->lat_ns);
    c->record = c->lat_ns != NULL;
    uint64_t t0 = bench_now_ns(), interval = 1000000000ull / c->o->rate, m = 0;
    for (uint64_t i = 0; i < n_calls; i++) {
        uint64_t due = t0 + i * interval;
        for (;;) {
            uint64_t now = bench_now_ns();
            if (now >= due)
                break;
            pump_ns(c, due - now);
        }
        if (c->busy[m])
            c->skipped++; /* its previous call is still running */
        else
            send_req(c, m, false);
        m = (m + 1) % c->o->machines;
        pump(c, 0);
    }
    drain(c);
    c->record = false;
    qsort(c->lat_ns, c->n_lat, sizeof *c->lat_ns, cmp_u64);
    size_t n = c->n_lat ? c->n_lat : 1;
    *p50 = c->n_lat ? (double)c->lat_ns[n * 50 / 100] / 1e3 : 0;
    *p99 = c->n_lat ? (double)c->lat_ns[n * 99 / 100] / 1e3 : 0;
    *p999 = c->n_lat ? (double)c->lat_ns[n * 999 / 1000] / 1e3 : 0;
}

/* ------------------------------------------------------------ main */

static void parse(int argc, char **argv, steps_opts *o)
{
    *o = (steps_opts){.machines = 1000, .seconds = 5, .rate = 10000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--machines"))
            o->machines = bench_parse_u64(a, v, 1, 1000000), i++;
        else if (!strcmp(a, "--seconds"))
            o->seconds = bench_parse_u64(a, v, 1, 3600), i++;
        else if (!strcmp(a, "--rate"))
            o->rate = bench_parse_u64(a, v, 1, 10000000), i++;
        else if (!strcmp(a, "--nosync"))
            o->nosync = true;
        else if (!strcmp(a, "--json"))
            o->json = true;
        else {
            fprintf(stderr, "usage: loom-bench steps [--machines N] [--seconds S] [--rate R] "
                            "[--nosync] [--json]\n");
            exit(strcmp(a, "--help") ? 2 : 0);
        }
    }
}

static int run(const steps_opts *o, const char *dir)
{
    char addr[600], sock[600];
    snprintf(addr, sizeof addr, "unix:%s/null.sock", dir);
    nullproc np;
    engine_run er;
    if (nullproc_start(&np, addr) || engine_start(&er, dir, o)) {
        fprintf(stderr, "loom-bench steps: start failed: %s\n", loom_errdetail());
        return 1;
    }
    client c = {.o = o};
    c.sent_ns = calloc(o->machines, sizeof *c.sent_ns);
    c.busy = calloc(o->machines, sizeof *c.busy);
    snprintf(sock, sizeof sock, "%s/loomd.sock", dir);
    if (!c.sent_ns || !c.busy || client_connect(&c, sock)) {
        fprintf(stderr, "loom-bench steps: cannot connect to the engine\n");
        return 1;
    }
    for (uint64_t m = 0; m < o->machines; m++) {
        send_req(&c, m, true);
        if (m % 256 == 255)
            drain(&c);
    }
    drain(&c);
    uint64_t start_errors = c.errors;
    double cpu_us;
    double rate = throughput_phase(&c, &cpu_us);
    double p50, p99, p999;
    latency_phase(&c, &p50, &p99, &p999);
    if (o->json)
        printf("{\"bench\":\"steps\",\"machines\":%llu,\"seconds\":%llu,\"durable\":%s,"
               "\"steps_per_s\":%.0f,\"cpu_us_per_step\":%.1f,\"rate\":%llu,\"latency_us\":{"
               "\"p50\":%.0f,\"p99\":%.0f,"
               "\"p999\":%.0f},\"samples\":%zu,\"skipped\":%llu,\"errors\":%llu}\n",
               (unsigned long long)o->machines, (unsigned long long)o->seconds,
               o->nosync ? "false" : "true", rate, cpu_us, (unsigned long long)o->rate, p50, p99,
               p999, c.n_lat, (unsigned long long)c.skipped, (unsigned long long)c.errors);
    else
        printf("steps: %llu machines, %s: %.0f steps/s, %.1f us CPU per step (all threads)\n"
               "latency at %llu calls/s: p50 %.0f us, p99 %.0f us, p999 %.0f us "
               "(%zu samples, %llu skipped, %llu errors, %llu at start)\n",
               (unsigned long long)o->machines, o->nosync ? "NOSYNC" : "durable (fsync)", rate,
               cpu_us, (unsigned long long)o->rate, p50, p99, p999, c.n_lat,
               (unsigned long long)c.skipped, (unsigned long long)c.errors,
               (unsigned long long)start_errors);
    close(c.fd);
    loom_frame_reader_free(&c.rd);
    loom_engine_stop(er.e);
    pthread_join(er.thread, NULL);
    loom_engine_close(er.e);
    nullproc_stop(&np);
    free(c.sent_ns);
    free(c.busy);
    free(c.lat_ns);
    free(c.out);
    return c.errors ? 1 : 0;
}

int bench_steps(int argc, char **argv)
{
    steps_opts o;
    parse(argc, argv, &o);
    char *dir = bench_mkdtemp("loom-bench-steps");
    if (!dir)
        return 1;
    int rc = run(&o, dir);
    bench_rmtree(dir);
    free(dir);
    return rc;
}
