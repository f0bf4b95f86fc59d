/* Loom end-to-end test harness: scratch directories, loomd configs and
 * child processes (loomd, processors, anything else) for criterion tests.
 *
 * Typical test:
 *
 *     loom_harness *h;
 *     cr_assert_eq(loom_harness_create(&h), 0);
 *     char proc_addr[LOOM_HARNESS_PATH_MAX];
 *     loom_harness_unix_addr(h, "payment.sock", proc_addr, sizeof proc_addr);
 *     const char *argv[] = {"loom-payment-processor", "--listen", proc_addr, NULL};
 *     cr_assert_eq(loom_harness_spawn(h, "payment", argv, proc_addr, NULL), 0);
 *     loom_harness_ns ns = {.name = "payment", .processor = proc_addr};
 *     loom_harness_loomd_opts o = {.namespaces = &ns, .n_namespaces = 1};
 *     cr_assert_eq(loom_harness_loomd_start(h, &o), 0);
 *     ... loom_client_connect(loom_harness_loomd_addr(h), ...) ...
 *     loom_harness_pass(h);          // the last line of a passing test
 *     loom_harness_destroy(h);       // or from the suite's .fini
 *
 * Processes: every child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with
 * the test process even when that one is killed; destroy (and an atexit
 * hook, for tests that exit() early) kills what is still running. The
 * spawning thread must outlive its children (the death signal follows the
 * thread): spawn from the test's main thread.
 *
 * Logs: each child's stdout and stderr go to DIR/NAME.log (appended across
 * restarts). loom_harness_destroy prints every log to stderr unless
 * loom_harness_pass(h) was called, so a failing test shows what loomd and
 * the processors said. Set LOOM_KEEP_SCRATCH=1 to keep the directory.
 *
 * Binaries: a bare argv[0] (no '/') is looked up in $LOOM_BIN_DIR if set,
 * else in the build's bin directory (where loomd and the example
 * processors are built).
 *
 * Not thread-safe; one harness per test. Every function returns 0 or a
 * negative LOOM_E* code with the reason in loom_errdetail(). */
#ifndef LOOM_HARNESS_H
#define LOOM_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loom/client.h"
#include "loom/error.h"

#define LOOM_HARNESS_PATH_MAX 512
#define LOOM_HARNESS_MAX_PROCS 32

typedef struct loom_harness loom_harness;
typedef struct loom_harness_proc loom_harness_proc;

/* Makes a scratch directory under $TMPDIR (or /tmp). */
int loom_harness_create(loom_harness **out);
/* Kills every child still running, prints the logs unless the test
 * passed, removes the scratch directory (unless LOOM_KEEP_SCRATCH) and
 * frees h. NULL is accepted. */
void loom_harness_destroy(loom_harness *h);
/* Marks the test as passed: destroy stays quiet. */
void loom_harness_pass(loom_harness *h);
/* Prints every child's log to stderr now. */
void loom_harness_dump_logs(const loom_harness *h);

/* The scratch directory (absolute). Valid until destroy. */
const char *loom_harness_dir(const loom_harness *h);
/* DIR/name into buf; returns buf ("" if it does not fit). */
const char *loom_harness_path(const loom_harness *h, const char *name, char *buf, size_t len);
/* "unix:DIR/name" into buf, checked against the 107-byte socket path
 * limit; returns buf ("" if it does not fit). */
const char *loom_harness_unix_addr(const loom_harness *h, const char *name, char *buf, size_t len);
/* Full path of a built binary (see "Binaries" above) into buf. */
const char *loom_harness_bin(const char *name, char *buf, size_t len);
/* Writes text to DIR/name (e.g. a namespace file for loomctl). */
int loom_harness_write_file(const loom_harness *h, const char *name, const char *text);

/* ------------------------------------------------------------ processes */

/* Starts argv (NULL-terminated; copied) with its output in DIR/name.log.
 * When wait_addr is not NULL, waits until it accepts connections
 * (LOOM_ETIMEOUT after 30 s; if the child exits first its log is printed
 * and LOOM_ECLOSED returned). out may be NULL. */
int loom_harness_spawn(loom_harness *h, const char *name, const char *const argv[],
                       const char *wait_addr, loom_harness_proc **out);
/* Finds a child by name, or NULL. */
loom_harness_proc *loom_harness_proc_find(const loom_harness *h, const char *name);
/* SIGTERM, then waits up to timeout_ms (0 = 30 s) before SIGKILL. *status
 * (may be NULL) gets the exit code, or 128 + signal when killed (the
 * shell's convention). LOOM_ETIMEOUT when SIGKILL was needed. */
int loom_harness_proc_stop(loom_harness_proc *p, uint32_t timeout_ms, int *status);
/* SIGKILL and reap: the crash case. */
int loom_harness_proc_kill(loom_harness_proc *p);
/* Starts the same argv again (after stop or kill) and waits for its
 * address like spawn did. */
int loom_harness_proc_restart(loom_harness_proc *p);
/* Sends any signal (e.g. SIGSTOP to freeze a processor). */
int loom_harness_proc_signal(loom_harness_proc *p, int sig);
/* True while the child runs (reaps it when it has exited). */
bool loom_harness_proc_alive(loom_harness_proc *p);
/* Waits up to timeout_ms for the child to exit by itself; *status as in
 * stop. LOOM_ETIMEOUT if it still runs. */
int loom_harness_proc_wait(loom_harness_proc *p, uint32_t timeout_ms, int *status);
pid_t loom_harness_proc_pid(const loom_harness_proc *p);
/* DIR/name.log. */
const char *loom_harness_proc_log(const loom_harness_proc *p);

/* Polls connect(addr) until it succeeds or timeout_ms passes. */
int loom_harness_wait_accept(const char *addr, uint32_t timeout_ms);

/* Polls GetMachine(ns, id) on c until the machine has status and a last
 * event id of at least min_last_event, or timeout_ms passes. Returns the
 * last status seen (-1: the machine could not be read at all). */
int loom_harness_wait_status(loom_client *c, const char *ns, const char *id, int status,
                             uint64_t min_last_event, uint32_t timeout_ms);

/* ------------------------------------------------------------ loomd */

typedef struct loom_harness_ns {
    const char *name;
    const char *processor;    /* address of its processor */
    uint32_t step_timeout_ms; /* 0 = loomd's default */
    /* Extra YAML lines for this namespace entry (retry:, default_range:,
     * ...), written as given, each indented under the entry; may be NULL. */
    const char *yaml;
} loom_harness_ns;

typedef struct loom_harness_loomd_opts {
    const loom_harness_ns *namespaces;
    size_t n_namespaces;
    const char *log_level; /* NULL = "info" */
    /* Extra top-level YAML (limits:, storage:, ...); may be NULL. */
    const char *yaml;
    /* Also listen on tcp:127.0.0.1:PORT with a port free at start. */
    bool tcp;
    /* Extra loomd flags (NULL-terminated), e.g. {"--log-level", "debug"}. */
    const char *const *extra_args;
} loom_harness_loomd_opts;

/* Writes DIR/loomd.yaml (listen unix:DIR/loomd.sock, data_dir DIR/data)
 * and starts loomd --config DIR/loomd.yaml as child "loomd", waiting
 * until it accepts. Restart with loom_harness_loomd_restart: same config,
 * same data. */
int loom_harness_loomd_start(loom_harness *h, const loom_harness_loomd_opts *o);
/* Writes DIR/loomd.yaml without starting loomd (for config tests). */
int loom_harness_loomd_write_config(loom_harness *h, const loom_harness_loomd_opts *o);
loom_harness_proc *loom_harness_loomd(const loom_harness *h);
/* "unix:DIR/loomd.sock". */
const char *loom_harness_loomd_addr(const loom_harness *h);
/* "tcp:127.0.0.1:PORT" when opts.tcp, else "". */
const char *loom_harness_loomd_tcp_addr(const loom_harness *h);
/* Sends env to loomd over a fresh plain connection and returns loomd's
 * first reply (the caller frees it with loom_envelope_free), for what the
 * client library refuses to send. NULL on any failure or when no reply
 * comes within timeout_ms (loom_errdetail says which). */
loom_envelope *loom_harness_loomd_exchange(const loom_harness *h, const loom_envelope *env,
                                           uint32_t timeout_ms);
int loom_harness_loomd_stop(loom_harness *h, int *status);
int loom_harness_loomd_kill(loom_harness *h);
int loom_harness_loomd_restart(loom_harness *h);

#endif
