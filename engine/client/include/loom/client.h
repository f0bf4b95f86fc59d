/* Loom client: a small blocking client for loomd's client and admin API.
 *
 * One loom_client is one socket to loomd ("unix:PATH" or "tcp:HOST:PORT",
 * see loom_addr_parse in loom/wire.h) speaking the framed protocol of
 * proto/loom.proto. It needs no event loop: every call blocks on poll(2)
 * with a deadline. A client is not thread-safe; use one per thread.
 *
 * Two ways to use it:
 *   - one request at a time: loom_client_start(), loom_client_call(), ...
 *     send the request and wait for its reply;
 *   - pipelined: loom_client_start_send(), loom_client_call_send(), ...
 *     only send and hand back the correlation id; loom_client_wait() then
 *     collects any reply by id, in any order. Replies that arrive while
 *     waiting for another are kept until waited for. At most
 *     options.max_pending requests are outstanding (LOOM_ERESOURCE_EXHAUSTED
 *     beyond that).
 *
 * Errors: every function returns 0 or a negative LOOM_E* code
 * (loom/error.h). A reply carrying an Error body returns -code with the
 * server's message in loom_client_errmsg(); local failures (connect refused,
 * deadline passed, connection lost) put their reason there too.
 *   LOOM_ETIMEOUT  the deadline passed before the reply; the request may
 *                  still complete on the server. The connection stays
 *                  usable and a late reply is dropped.
 *   LOOM_ECLOSED   the connection is gone (peer closed, read/write error,
 *                  a send that timed out half-written); every later call
 *                  returns LOOM_ECLOSED: close and reconnect.
 *   LOOM_EPROTOCOL the server answered with a body that does not match
 *                  the request (the connection is then closed too).
 *   LOOM_EFRAME_TOO_LARGE  a request or reply over options.max_frame.
 *
 * Ownership: strings and byte buffers passed in are borrowed for the call
 * only. A loom_client_result owns the reply envelope; the views in it
 * (response, machine, machines, namespaces) point into that envelope and
 * live until loom_client_result_free(). */
#ifndef LOOM_CLIENT_H
#define LOOM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"
#include "loom/wire.h"

typedef struct loom_client loom_client;

typedef struct loom_client_options {
    uint32_t connect_timeout_ms; /* default 5000 */
    uint32_t request_timeout_ms; /* default for requests without their own; 30000 */
    size_t max_frame;            /* request and reply limit; LOOM_FRAME_MAX_DEFAULT */
    uint32_t max_pending;        /* outstanding pipelined requests; default 1024 */
} loom_client_options;

LOOM_EXPORT void loom_client_options_init(loom_client_options *o);

/* Connects to addr within o->connect_timeout_ms (o may be NULL for the
 * defaults). *out is freed with loom_client_close. On failure *out is NULL
 * and loom_errdetail() says why (there is no client to ask yet):
 * LOOM_EINVALID_ARGUMENT for a bad address, LOOM_ECLOSED when the peer
 * refused or does not exist, LOOM_ETIMEOUT when the connect did not finish
 * in time, LOOM_ENOMEM. */
LOOM_EXPORT int loom_client_connect(const char *addr, const loom_client_options *o,
                                    loom_client **out);
/* Closes the socket and frees the client and every reply not yet waited
 * for. NULL is accepted. */
LOOM_EXPORT void loom_client_close(loom_client *c);

/* The reason of the last failed call on c: the server's Error message or a
 * local reason. Valid until the next call on c. Empty after a success. */
LOOM_EXPORT const char *loom_client_errmsg(const loom_client *c);
/* The socket's file descriptor (for poll by pipelining callers). */
LOOM_EXPORT int loom_client_fd(const loom_client *c);

/* ------------------------------------------------------------ requests */

/* A history range (proto HistoryRange). */
typedef struct loom_client_range {
    uint64_t after; /* exclusive; counts only when has_after */
    uint32_t limit; /* 0 = no limit (the namespace default still applies) */
    bool backward;  /* from the newest event */
    bool has_after;
} loom_client_range;

/* Per-request options; a NULL pointer means all defaults. */
typedef struct loom_client_req {
    uint32_t timeout_ms;            /* 0 = options.request_timeout_ms */
    const char *request_id;         /* start/call/notify/repair idempotency key; NULL = none */
    const loom_client_range *range; /* call: history sent to the processor; get: history
                                       returned; NULL = the namespace's default range */
} loom_client_req;

/* What a successful request returned. Zero it (or let the call do it)
 * before first use; loom_client_result_free releases it and zeroes it
 * again, so one result can be reused across calls after freeing. */
typedef struct loom_client_result {
    loom_envelope *reply;    /* the whole reply, owned */
    const uint8_t *response; /* start/call/repair: the processor's response */
    size_t response_len;
    uint64_t last_event_id;                          /* start/call/repair */
    uint64_t notification_id;                        /* notify */
    const Loom__V1__Machine *machine;                /* get_machine */
    const Loom__V1__ListMachinesReply *machines;     /* list_machines */
    const Loom__V1__ListNamespacesReply *namespaces; /* list_namespaces */
} loom_client_result;

LOOM_EXPORT void loom_client_result_free(loom_client_result *r);

/* Blocking calls. res may be NULL when the caller needs only the code; on
 * failure res is left zeroed. ns and id must not be NULL (their length and
 * characters are checked by the server). args may be NULL with len 0. */
LOOM_EXPORT int loom_client_start(loom_client *c, const char *ns, const char *id, const void *args,
                                  size_t args_len, const loom_client_req *req,
                                  loom_client_result *res);
LOOM_EXPORT int loom_client_call(loom_client *c, const char *ns, const char *id, const void *args,
                                 size_t args_len, const loom_client_req *req,
                                 loom_client_result *res);
LOOM_EXPORT int loom_client_notify(loom_client *c, const char *ns, const char *id, const void *args,
                                   size_t args_len, const loom_client_req *req,
                                   loom_client_result *res);
LOOM_EXPORT int loom_client_repair(loom_client *c, const char *ns, const char *id, const void *args,
                                   size_t args_len, const loom_client_req *req,
                                   loom_client_result *res);
LOOM_EXPORT int loom_client_simple_repair(loom_client *c, const char *ns, const char *id,
                                          const loom_client_req *req, loom_client_result *res);
LOOM_EXPORT int loom_client_get_machine(loom_client *c, const char *ns, const char *id,
                                        const loom_client_req *req, loom_client_result *res);
LOOM_EXPORT int loom_client_remove(loom_client *c, const char *ns, const char *id,
                                   const loom_client_req *req, loom_client_result *res);
/* status: a Loom__V1__MachineStatus, STATUS_UNSPECIFIED = any. after: the
 * previous page's next_after or NULL; limit 0 = the server's default. */
LOOM_EXPORT int loom_client_list_machines(loom_client *c, const char *ns, int status,
                                          const char *after, uint32_t limit,
                                          const loom_client_req *req, loom_client_result *res);
/* cfg is borrowed; see proto NamespaceConfig. */
LOOM_EXPORT int loom_client_register_namespace(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                               const loom_client_req *req, loom_client_result *res);
LOOM_EXPORT int loom_client_update_namespace(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                             const loom_client_req *req, loom_client_result *res);
LOOM_EXPORT int loom_client_list_namespaces(loom_client *c, const loom_client_req *req,
                                            loom_client_result *res);

/* ------------------------------------------------------------ pipelining
 * The *_send forms send the same request without waiting and store its
 * correlation id in *corr; loom_client_wait collects the reply. The
 * request's deadline (req->timeout_ms or the default) starts at send and
 * is enforced by loom_client_wait. */
LOOM_EXPORT int loom_client_start_send(loom_client *c, const char *ns, const char *id,
                                       const void *args, size_t args_len,
                                       const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_call_send(loom_client *c, const char *ns, const char *id,
                                      const void *args, size_t args_len, const loom_client_req *req,
                                      uint64_t *corr);
LOOM_EXPORT int loom_client_notify_send(loom_client *c, const char *ns, const char *id,
                                        const void *args, size_t args_len,
                                        const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_repair_send(loom_client *c, const char *ns, const char *id,
                                        const void *args, size_t args_len,
                                        const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_simple_repair_send(loom_client *c, const char *ns, const char *id,
                                               const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_get_machine_send(loom_client *c, const char *ns, const char *id,
                                             const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_remove_send(loom_client *c, const char *ns, const char *id,
                                        const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_list_machines_send(loom_client *c, const char *ns, int status,
                                               const char *after, uint32_t limit,
                                               const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_register_namespace_send(loom_client *c,
                                                    const Loom__V1__NamespaceConfig *cfg,
                                                    const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_update_namespace_send(loom_client *c,
                                                  const Loom__V1__NamespaceConfig *cfg,
                                                  const loom_client_req *req, uint64_t *corr);
LOOM_EXPORT int loom_client_list_namespaces_send(loom_client *c, const loom_client_req *req,
                                                 uint64_t *corr);

/* Sends any request envelope as built by the caller (its correlation_id is
 * overwritten). The reply must be the matching *_reply body or an Error.
 * timeout_ms 0 = the default. */
LOOM_EXPORT int loom_client_send(loom_client *c, loom_envelope *request, uint32_t timeout_ms,
                                 uint64_t *corr);

/* Waits for the reply to corr until that request's deadline. Returns its
 * outcome like the blocking calls (res may be NULL). The id is consumed
 * either way: waiting twice for one id gives LOOM_ENOT_FOUND. */
LOOM_EXPORT int loom_client_wait(loom_client *c, uint64_t corr, loom_client_result *res);

/* Waits for whichever outstanding request is answered first (or whose
 * deadline passes first) and reports which in *corr. LOOM_ENOT_FOUND when
 * nothing is outstanding. */
LOOM_EXPORT int loom_client_wait_any(loom_client *c, uint64_t *corr, loom_client_result *res);

/* Outstanding requests (sent, not yet waited for). */
LOOM_EXPORT uint32_t loom_client_pending(const loom_client *c);

#endif
