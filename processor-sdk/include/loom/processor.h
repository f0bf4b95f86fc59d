/* Loom processor SDK: turns a program into a Loom processor.
 *
 * Loom connects to the processor's endpoint and sends ProcessRequests
 * (proto/loom.proto); the SDK decodes them, hands each to the handler
 * registered for its kind, and sends the ProcessReply the handler built,
 * with the request's correlation id, whenever the handler finishes —
 * replies go out of order, as handlers finish.
 *
 *   loom_proc *p;
 *   loom_proc_create(NULL, NULL, &p);               // own loop, defaults
 *   loom_proc_on(p, LOOM_PROC_CALL, on_call, ctx);
 *   loom_proc_listen(p, "tcp:127.0.0.1:7000");
 *   return loom_proc_run(p, 5000);                  // until SIGINT/SIGTERM
 *
 * Handler lifecycle: the handler receives a loom_proc_req it owns until it
 * calls loom_proc_done(req) — right away or later from any callback on the
 * same loop (a timer, a reply from a remote API). Between the two it reads
 * the request and builds the result. Each request is answered exactly
 * once: with the result, with a failure (loom_proc_fail), or by the SDK
 * itself (busy, shutting down). If the connection closed meanwhile, the
 * reply is dropped and the request stays valid until loom_proc_done.
 *
 * Steps are at-least-once: Loom repeats a request whose result it did not
 * commit (processor timeout, crash of either side), so handlers must give
 * the same result for the same machine state (see docs/processor-sdk.md).
 *
 * Threads: every call on the loop's thread. */
#ifndef LOOM_PROCESSOR_H
#define LOOM_PROCESSOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "loom/error.h"

typedef struct loom_proc loom_proc;
typedef struct loom_proc_req loom_proc_req;

/* Same numbers as loom.v1.ProcessKind. */
typedef enum loom_proc_kind {
    LOOM_PROC_INIT = 1,
    LOOM_PROC_TIMEOUT = 2,
    LOOM_PROC_NOTIFICATION = 3,
    LOOM_PROC_REPAIR = 4,
    LOOM_PROC_CALL = 5,
} loom_proc_kind;
#define LOOM_PROC_KIND_MAX 5

typedef struct loom_proc_bytes {
    const uint8_t *data; /* never NULL (empty bytes point at "") */
    size_t len;
} loom_proc_bytes;

typedef struct loom_proc_event {
    uint64_t id;
    int64_t created_at_ms;
    uint32_t format_version;
    loom_proc_bytes data;
} loom_proc_event;

/* loom.v1.HistoryRange: `after` counts only when has_after; limit 0 = no
 * limit; backward = newest first. */
typedef struct loom_proc_range {
    uint64_t after;
    uint32_t limit;
    bool has_after;
    bool backward;
} loom_proc_range;

typedef struct loom_proc_options {
    /* Requests being handled at once, all connections together. Past it a
     * request is answered at once with a retryable failure
     * "processor busy". Default 1024. */
    size_t max_in_flight;
    /* Frame limit both ways (default LOOM_FRAME_MAX_DEFAULT, 16 MiB). */
    size_t max_frame;
    /* Events one result may append (default 10000). */
    size_t max_events;
    /* Connections at once; further ones are closed on accept (default 256). */
    size_t max_connections;
} loom_proc_options;

typedef void (*loom_proc_handler)(loom_proc_req *req, void *user);

LOOM_EXPORT void loom_proc_options_init(loom_proc_options *o);

/* loop NULL: the processor makes and owns its loop (loom_proc_loop).
 * o NULL: defaults. */
LOOM_EXPORT int loom_proc_create(uv_loop_t *loop, const loom_proc_options *o, loom_proc **out);
LOOM_EXPORT uv_loop_t *loom_proc_loop(const loom_proc *p);
/* One handler per kind; registering again replaces it. A request of a kind
 * without a handler gets a non-retryable failure naming the kind. */
LOOM_EXPORT int loom_proc_on(loom_proc *p, loom_proc_kind kind, loom_proc_handler h, void *user);
/* Listens on "tcp:HOST:PORT" or "unix:PATH"; may be called several
 * times (at most 8). LOOM_EINVALID_ARGUMENT (bad address), LOOM_EBUSY
 * (address in use), LOOM_EIO and other codes from loom_listen (detail in
 * loom_errdetail), LOOM_ESHUTTING_DOWN. */
LOOM_EXPORT int loom_proc_listen(loom_proc *p, const char *addr);
/* Port of the last TCP listener (useful with port 0), 0 if none. */
LOOM_EXPORT int loom_proc_port(const loom_proc *p);
LOOM_EXPORT size_t loom_proc_in_flight(const loom_proc *p);

/* Graceful shutdown: stop accepting at once; wait up to grace_ms for the
 * requests in flight; answer those still running with a retryable failure
 * "shutting down" (their later loom_proc_done is dropped); close every
 * connection; then call done(p, user). Idempotent (later calls are
 * ignored). */
typedef void (*loom_proc_shutdown_cb)(loom_proc *p, void *user);
LOOM_EXPORT void loom_proc_shutdown(loom_proc *p, uint64_t grace_ms, loom_proc_shutdown_cb done,
                                    void *user);
/* Frees p after its shutdown completed (or if it never listened).
 * Requests still held by handlers stay valid and need loom_proc_done. A
 * loop made by the processor is closed here. */
LOOM_EXPORT void loom_proc_free(loom_proc *p);
/* For binaries: runs the loop until SIGINT or SIGTERM, then shuts down
 * with grace_ms and frees p (a second signal meanwhile ends the process
 * at once: the default action is back). Returns 0, or a negative code when the loop
 * could not be run. */
LOOM_EXPORT int loom_proc_run(loom_proc *p, uint64_t grace_ms);

/* ------------------------------------------------------------ the request
 * Pointers borrow from the request: valid until loom_proc_done. */
LOOM_EXPORT loom_proc_kind loom_proc_req_kind(const loom_proc_req *r);
LOOM_EXPORT const char *loom_proc_req_ns(const loom_proc_req *r);
LOOM_EXPORT const char *loom_proc_req_id(const loom_proc_req *r);
LOOM_EXPORT loom_proc_bytes loom_proc_req_args(const loom_proc_req *r);
LOOM_EXPORT loom_proc_bytes loom_proc_req_aux_state(const loom_proc_req *r);
LOOM_EXPORT uint64_t loom_proc_req_last_event_id(const loom_proc_req *r);
/* 0 = no timer. */
LOOM_EXPORT int64_t loom_proc_req_timer_deadline_ms(const loom_proc_req *r);
/* 1 on the first try. */
LOOM_EXPORT uint32_t loom_proc_req_attempt(const loom_proc_req *r);
LOOM_EXPORT uint64_t loom_proc_req_notification_id(const loom_proc_req *r);
/* Unix ms after which Loom stops waiting for this reply (0 = unknown). */
LOOM_EXPORT int64_t loom_proc_req_deadline_ms(const loom_proc_req *r);
/* True once the reply can no longer reach Loom (connection closed, or
 * answered by shutdown): a long handler may stop early. */
LOOM_EXPORT bool loom_proc_req_abandoned(const loom_proc_req *r);

/* History sent with the request, in the order Loom sent it (the
 * request's range decides which events and which direction). */
typedef struct loom_proc_history {
    const loom_proc_req *req;
    size_t next;
} loom_proc_history;
LOOM_EXPORT size_t loom_proc_req_event_count(const loom_proc_req *r);
LOOM_EXPORT void loom_proc_req_history(const loom_proc_req *r, loom_proc_history *it);
/* 1 and *ev filled while events remain, then 0. */
LOOM_EXPORT int loom_proc_history_next(loom_proc_history *it, loom_proc_event *ev);

/* ------------------------------------------------------------ the result
 * Each returns 0 or a negative code and leaves the result as it was on
 * error: LOOM_ENOMEM; LOOM_ERESOURCE_EXHAUSTED (over max_events);
 * LOOM_EINVALID_ARGUMENT (a response to a signal other than repair, or
 * refusing something that is not a repair). Data is copied. */
LOOM_EXPORT int loom_proc_append_event(loom_proc_req *r, uint32_t format_version, const void *data,
                                       size_t len);
LOOM_EXPORT int loom_proc_set_aux_state(loom_proc_req *r, const void *data, size_t len);
/* range NULL: the namespace's default history range for the timeout. */
LOOM_EXPORT int loom_proc_set_timer_timeout(loom_proc_req *r, uint64_t timeout_ms,
                                            const loom_proc_range *range);
LOOM_EXPORT int loom_proc_set_timer_deadline(loom_proc_req *r, int64_t deadline_ms,
                                             const loom_proc_range *range);
LOOM_EXPORT int loom_proc_unset_timer(loom_proc_req *r);
LOOM_EXPORT int loom_proc_remove(loom_proc_req *r);
/* For calls and repairs. */
LOOM_EXPORT int loom_proc_respond(loom_proc_req *r, const void *data, size_t len);
/* The step could not be done; replaces whatever result was built.
 * Retryable: Loom may try again by the namespace's retry policy. */
LOOM_EXPORT int loom_proc_fail(loom_proc_req *r, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answering a repair with a refusal (a non-retryable failure). */
LOOM_EXPORT int loom_proc_refuse_repair(loom_proc_req *r, const char *reason);

/* Sends the reply and frees the request; r is invalid afterwards. If the
 * result cannot be encoded (over the frame limit) a non-retryable failure
 * saying so goes out instead. */
LOOM_EXPORT void loom_proc_done(loom_proc_req *r);

/* Current unix time in ms (the clock processors should stamp with). */
LOOM_EXPORT int64_t loom_proc_now_ms(void);

#endif
