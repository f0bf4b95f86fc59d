/* loom-client-pipeline-bench: durable calls per second through one
 * loom_client connection at a given pipeline depth, against a loomd and
 * the e2e processor started in a scratch directory by the test harness.
 * Each call appends one event (a step with fsync'd group commit).
 *
 *   loom-client-pipeline-bench [--depth N] [--calls N] [--machines N]
 *
 * Binaries come from $LOOM_BIN_DIR or the build's bin directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/client.h"
#include "loom/harness.h"

typedef struct bench_opts {
    uint32_t depth, calls, machines;
} bench_opts;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.depth = 64, .calls = 20000, .machines = 1000};
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (v <= 0 || v > 10000000)
            return -1;
        if (strcmp(argv[i], "--depth") == 0 && v <= 1024)
            o->depth = (uint32_t)v;
        else if (strcmp(argv[i], "--calls") == 0)
            o->calls = (uint32_t)v;
        else if (strcmp(argv[i], "--machines") == 0)
            o->machines = (uint32_t)v;
        else
            return -1;
    }
    return argc % 2 == 1 ? 0 : -1;
}

/* Keeps at most depth requests outstanding; counts failed replies. */
static int throttle(loom_client *c, uint32_t depth, uint32_t *errors)
{
    while (loom_client_pending(c) >= depth) {
        uint64_t corr;
        int rc = loom_client_wait_any(c, &corr, NULL);
        if (rc == LOOM_ECLOSED)
            return rc;
        *errors += rc != 0;
    }
    return 0;
}

static int run(loom_client *c, const bench_opts *o, bool start, uint32_t n, uint32_t *errors)
{
    char id[32];
    for (uint32_t i = 0; i < n; i++) {
        uint64_t corr;
        snprintf(id, sizeof id, "m%u", i % o->machines);
        int rc = throttle(c, o->depth, errors);
        if (rc == 0)
            rc = start ? loom_client_start_send(c, "bench", id, "ok", 2, NULL, &corr)
                       : loom_client_call_send(c, "bench", id, "ok", 2, NULL, &corr);
        if (rc < 0) {
            fprintf(stderr, "send: %s: %s\n", loom_err_name(rc), loom_client_errmsg(c));
            return rc;
        }
    }
    return throttle(c, 1, errors);
}

static int up(loom_harness *h, loom_client **c)
{
    char proc[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(h, "proc.sock", proc, sizeof proc);
    const char *argv[] = {"loom-e2e-processor", "--listen", proc, NULL};
    int rc = loom_harness_spawn(h, "processor", argv, proc, NULL);
    loom_harness_ns ns = {.name = "bench", .processor = proc, .step_timeout_ms = 10000};
    loom_harness_loomd_opts lo = {.namespaces = &ns, .n_namespaces = 1, .log_level = "warn"};
    if (rc == 0)
        rc = loom_harness_loomd_start(h, &lo);
    if (rc == 0)
        rc = loom_client_connect(loom_harness_loomd_addr(h), NULL, c);
    if (rc < 0)
        fprintf(stderr, "set-up: %s: %s\n", loom_err_name(rc), loom_errdetail());
    return rc;
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: loom-client-pipeline-bench [--depth 1..1024] [--calls N] "
                        "[--machines N]\n");
        return 2;
    }
    loom_harness *h = NULL;
    loom_client *c = NULL;
    uint32_t errors = 0;
    int rc = loom_harness_create(&h);
    if (rc == 0)
        rc = up(h, &c);
    if (rc == 0)
        rc = run(c, &o, true, o.machines, &errors);
    double t0 = now_s();
    if (rc == 0)
        rc = run(c, &o, false, o.calls, &errors);
    double dt = now_s() - t0;
    if (rc == 0)
        printf("depth %u: %u calls on %u machines in %.2f s = %.0f calls/s, %u errors\n", o.depth,
               o.calls, o.machines, dt, o.calls / dt, errors);
    loom_client_close(c);
    if (rc == 0 && errors == 0)
        loom_harness_pass(h);
    loom_harness_destroy(h);
    return rc == 0 && errors == 0 ? 0 : 1;
}
