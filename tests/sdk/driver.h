/* A small stand-in for the Loom engine, for processor tests: it connects
 * to a processor, sends ProcessRequests built from a machine model, waits
 * for the ProcessReplies and applies results to the model the way the
 * engine would (events numbered on, aux_state replaced, timer set or
 * cleared). Failures of the driver itself fail the test (criterion). */
#ifndef LOOM_TEST_DRIVER_H
#define LOOM_TEST_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "loom/payload.h"
#include "loom/processor.h"
#include "loom/wire.h"

typedef struct drv drv;

typedef struct drv_event {
    uint64_t id;
    int64_t created_at_ms;
    uint32_t format_version;
    uint8_t *data;
    size_t len;
} drv_event;

typedef struct drv_machine {
    char ns[64];
    char id[64];
    drv_event *events;
    size_t n_events;
    uint8_t *aux;
    size_t aux_len;
    int64_t timer_deadline_ms; /* 0 = none */
    bool removed;
    uint32_t attempt; /* sent as is; 0 means 1 */
} drv_machine;

void drv_machine_init(drv_machine *m, const char *ns, const char *id);
void drv_machine_free(drv_machine *m);
/* Applies a result as the engine commits it. */
void drv_machine_apply(drv_machine *m, const Loom__V1__ProcessResult *res);

/* Connects, retrying until timeout_ms (a spawned processor may not listen
 * yet). Runs the loop meanwhile; NULL if it never connects. */
drv *drv_connect(uv_loop_t *loop, const char *addr, uint64_t timeout_ms);
/* Closes (if still open), waits for the close, frees. */
void drv_free(drv *d);
bool drv_closed(const drv *d);
/* Why the processor side ended the connection ("" while open). */
const char *drv_close_reason(const drv *d);
/* Runs the loop until the connection closes or timeout_ms passes. */
bool drv_wait_closed(drv *d, uint64_t timeout_ms);

/* Sends a ProcessRequest for m (its whole history) and returns the
 * correlation id. */
uint64_t drv_send(drv *d, const drv_machine *m, loom_proc_kind kind, const void *args,
                  size_t args_len);
/* Sends an arbitrary envelope (for malformed-request tests). */
int drv_send_env(drv *d, const loom_envelope *env);
/* Waits for the reply with that correlation id; NULL on timeout or close.
 * The caller frees it with loom_envelope_free. */
loom_envelope *drv_wait(drv *d, uint64_t cid, uint64_t timeout_ms);
/* Send + wait + apply a successful result to m. NULL on timeout. */
loom_envelope *drv_step(drv *d, drv_machine *m, loom_proc_kind kind, const void *args,
                        size_t args_len, uint64_t timeout_ms);

/* Reply accessors: the result, or NULL when the reply is a failure. */
const Loom__V1__ProcessResult *drv_result(const loom_envelope *env);
const Loom__V1__Failure *drv_failure(const loom_envelope *env);

/* A step whose response (if any) is parsed as msgpack. */
typedef struct drv_answer {
    loom_envelope *env;
    loom_mp_doc doc;
    bool has_doc;
} drv_answer;
/* drv_step with args taken from (and freeing) a writer (NULL: no args). */
drv_answer drv_step_mp(drv *d, drv_machine *m, loom_proc_kind kind, loom_mp_writer *args);
void drv_answer_free(drv_answer *a);
/* The same for an answer the test does not look at. */
void drv_answer_discard(drv_answer a);
/* Checks an answer is the business "no" {"ok": false, "error": code}
 * with no change to the machine, then frees it. */
void drv_expect_refusal(drv_answer a, const char *code);
/* Checks an answer is a non-retryable failure whose reason holds
 * fragment, then frees it. */
void drv_expect_failure(drv_answer a, const char *fragment);
/* The "type" of the machine's last event (msgpack map). */
const char *drv_last_event_type(const drv_machine *m, char *buf, size_t size);

/* Runs the loop for about ms milliseconds. */
void drv_run_for(uv_loop_t *loop, uint64_t ms);

/* Spawned processors. argv[0] is a path; stdout and stderr are inherited. */
pid_t drv_spawn(char *const argv[]);
/* Like drv_spawn, with the child's stderr readable at *err_fd. */
pid_t drv_spawn_stderr(char *const argv[], int *err_fd);
/* Reads lines from fd until one holds needle (true, the line in line) or
 * timeout_ms pass or the stream ends (false). */
bool drv_read_line_with(int fd, const char *needle, char *line, size_t size, uint64_t timeout_ms);
/* SIGTERM, then waits up to timeout_ms; returns the exit status as
 * waitpid's, or -1 when it had to be killed. */
int drv_stop(pid_t pid, uint64_t timeout_ms);
/* The same without the signal (the process was told to stop already). */
int drv_reap(pid_t pid, uint64_t timeout_ms);
/* A fresh scratch directory under $TMPDIR or /tmp (static buffer free). */
void drv_scratch(char *out, size_t size);
void drv_scratch_remove(const char *dir);

/* A processor under test on the test's own loop: a scratch directory,
 * the processor, its Unix socket there and a driver connected to it. */
typedef struct drv_host {
    uv_loop_t loop;
    loom_proc *p;
    char dir[256];
    char addr[320];
    drv *d;
} drv_host;

/* Loop, scratch directory and processor (o may be NULL); no handlers. */
void drv_host_open(drv_host *h, const loom_proc_options *o);
/* Listens on unix:DIR/sock and connects h->d. */
void drv_host_listen(drv_host *h, const char *sock);
/* Frees h->d, shuts the processor down with grace_ms and frees it all. */
void drv_host_close(drv_host *h, uint64_t grace_ms);
/* For a suite's .fini: a test that ended early still leaves no scratch. */
void drv_host_remove_scratch(const drv_host *h);

/* A processor binary under test, driven over a Unix socket in a scratch
 * directory. */
typedef struct drv_child {
    char dir[256];
    char addr[320];
    pid_t pid;
    uv_loop_t loop;
    drv *d;
} drv_child;

/* Makes the scratch directory and addr = unix:DIR/sock (for argv). */
void drv_child_prepare(drv_child *c, const char *sock);
/* Spawns argv and connects c->d, failing the test when the processor
 * does not come up within timeout_ms. */
void drv_child_start(drv_child *c, char *const argv[], uint64_t timeout_ms);
/* Checks status (as drv_stop or drv_reap return it) is a clean exit 0,
 * then frees the driver, the loop and the scratch directory. */
void drv_child_finish(drv_child *c, int status);

#endif
