/* Loom wire layer: frames, envelopes and libuv connections.
 *
 * A frame is a 4-byte big-endian length N followed by N bytes of a
 * protobuf-encoded loom.v1.Envelope (proto/loom.proto). The length is
 * checked against the configured maximum before anything is allocated.
 * One library serves loomd, the processor SDK and loomctl alike. */
#ifndef LOOM_WIRE_H
#define LOOM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "loom.pb-c.h"
#include "loom/error.h"

#define LOOM_FRAME_HEADER_SIZE 4
#define LOOM_FRAME_MAX_DEFAULT (16u * 1024u * 1024u)

typedef Loom__V1__Envelope loom_envelope;

/* ------------------------------------------------------------ frame codec
 * Pure, no I/O: feed it whatever bytes arrived (any split, many frames per
 * feed) and it hands out each complete frame payload. */
typedef struct loom_frame_reader {
    size_t max_frame;    /* payload limit, bytes */
    uint8_t header[4];   /* partial length prefix */
    size_t header_len;
    uint8_t *buf;        /* payload being assembled (malloc'd, exactly N) */
    size_t need;         /* N of the frame being assembled */
    size_t have;
} loom_frame_reader;

/* Called once per complete frame. payload is borrowed: valid only during
 * the call. Return 0 to go on, non-zero to stop feeding (returned by feed). */
typedef int (*loom_frame_cb)(void *ctx, const uint8_t *payload, size_t len);

LOOM_EXPORT void loom_frame_reader_init(loom_frame_reader *r, size_t max_frame);
LOOM_EXPORT void loom_frame_reader_free(loom_frame_reader *r);
/* Returns 0, LOOM_EFRAME_TOO_LARGE (length over max_frame: nothing is
 * allocated, the reader is then unusable), LOOM_ENOMEM, or the callback's
 * non-zero value. A zero-length frame is delivered as (payload, 0). */
LOOM_EXPORT int loom_frame_reader_feed(loom_frame_reader *r, const uint8_t *data, size_t len,
                                       loom_frame_cb cb, void *ctx);

/* Encodes env as one frame (header + payload) into a malloc'd buffer the
 * caller frees. LOOM_EFRAME_TOO_LARGE if the payload exceeds max_frame. */
LOOM_EXPORT int loom_envelope_encode(const loom_envelope *env, size_t max_frame, uint8_t **out,
                                     size_t *out_len);
/* Decodes a frame payload. *out is owned by the caller: loom_envelope_free.
 * LOOM_EPROTOCOL when the bytes are not an Envelope or carry no body. */
LOOM_EXPORT int loom_envelope_decode(const uint8_t *payload, size_t len, loom_envelope **out);
LOOM_EXPORT void loom_envelope_free(loom_envelope *env);

/* ------------------------------------------------------------ addresses
 * "tcp:HOST:PORT" (HOST an IPv4/IPv6 literal or "localhost"; IPv6 may be
 * bracketed) or "unix:PATH". */
typedef struct loom_addr {
    int is_unix;
    char path[108];                /* unix */
    struct sockaddr_storage inet;  /* tcp */
} loom_addr;
LOOM_EXPORT int loom_addr_parse(const char *text, loom_addr *out);

/* ------------------------------------------------------------ connections
 * A framed, pipelined connection on a libuv stream (TCP or pipe). All
 * calls on the loop's thread. */
typedef struct loom_conn loom_conn;
typedef struct loom_listener loom_listener;

typedef struct loom_conn_options {
    size_t max_frame;            /* default LOOM_FRAME_MAX_DEFAULT */
    size_t max_pending_write;    /* bytes queued, unsent; default 64 MiB */
} loom_conn_options;

typedef struct loom_conn_callbacks {
    /* One decoded envelope; ownership passes to the callee
     * (loom_envelope_free). */
    void (*on_envelope)(loom_conn *c, loom_envelope *env, void *user);
    /* Outbound connections only: status 0 or a negative LOOM_E* code
     * (on failure on_close follows). */
    void (*on_connect)(loom_conn *c, int status, void *user);
    /* The connection is gone: err 0 for a local loom_conn_close or a clean
     * EOF, otherwise why (LOOM_EFRAME_TOO_LARGE, LOOM_EPROTOCOL, LOOM_ECLOSED,
     * ...); reason is a readable text (already logged). The loom_conn is
     * freed right after this returns. */
    void (*on_close)(loom_conn *c, int err, const char *reason, void *user);
} loom_conn_callbacks;

LOOM_EXPORT void loom_conn_options_init(loom_conn_options *o);

/* Starts connecting to addr; callbacks fire on the loop. */
LOOM_EXPORT int loom_conn_connect(uv_loop_t *loop, const char *addr, const loom_conn_options *o,
                                  const loom_conn_callbacks *cb, void *user, loom_conn **out);
/* Queues env for sending (encoded now; env stays the caller's).
 * LOOM_ERESOURCE_EXHAUSTED when the unsent queue is over max_pending_write,
 * LOOM_ECLOSED when closing, LOOM_EFRAME_TOO_LARGE. */
LOOM_EXPORT int loom_conn_send(loom_conn *c, const loom_envelope *env);
/* Closes (idempotent); on_close(c, err, reason) follows on the loop. */
LOOM_EXPORT void loom_conn_close(loom_conn *c, int err, const char *reason);
LOOM_EXPORT void loom_conn_set_user(loom_conn *c, void *user);
LOOM_EXPORT void *loom_conn_user(const loom_conn *c);

/* Accepts connections on addr ("unix:" paths are unlinked first). Each
 * accepted connection gets on_accept(listener, conn, user) and starts with
 * conn_cb and user = the listener's user until loom_conn_set_user. */
typedef void (*loom_accept_cb)(loom_listener *l, loom_conn *c, void *user);
LOOM_EXPORT int loom_listen(uv_loop_t *loop, const char *addr, const loom_conn_options *o,
                            const loom_conn_callbacks *conn_cb, loom_accept_cb on_accept,
                            void *user, loom_listener **out);
/* The bound TCP port (useful with port 0), or 0 for unix listeners. */
LOOM_EXPORT int loom_listener_port(const loom_listener *l);
/* Stops listening; existing connections live on. Frees l after its libuv
 * handle closes. */
LOOM_EXPORT void loom_listener_close(loom_listener *l);

#endif
