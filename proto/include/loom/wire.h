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
#include "loom/utf8.h"

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
    uint8_t *buf;        /* payload being assembled (malloc'd, at most N) */
    size_t need;         /* N of the frame being assembled */
    size_t have;
    size_t cap;          /* bytes allocated at buf: grows with the bytes that
                          * actually arrive, so a length prefix alone never
                          * makes the reader allocate N */
    int failed;          /* an oversize length was seen: feed refuses */
} loom_frame_reader;

/* Called once per complete frame. payload is borrowed: valid only during
 * the call. Return 0 to go on, non-zero to stop feeding (returned by feed). */
typedef int (*loom_frame_cb)(void *ctx, const uint8_t *payload, size_t len);

LOOM_EXPORT void loom_frame_reader_init(loom_frame_reader *r, size_t max_frame);
LOOM_EXPORT void loom_frame_reader_free(loom_frame_reader *r);
/* Returns 0, LOOM_EFRAME_TOO_LARGE (length over max_frame: nothing is
 * allocated, the reader is then unusable), LOOM_ENOMEM, or the callback's
 * non-zero value. A zero-length frame is delivered as (payload, 0).
 * When the callback stops the feed, the bytes after that frame are not
 * consumed (the reader stays at the frame boundary); callers stop because
 * they are closing. max_frame 0 means LOOM_FRAME_MAX_DEFAULT; it cannot
 * exceed 0xffffffff, the largest length the prefix can carry. */
LOOM_EXPORT int loom_frame_reader_feed(loom_frame_reader *r, const uint8_t *data, size_t len,
                                       loom_frame_cb cb, void *ctx);

/* Encodes env as one frame (header + payload) into a malloc'd buffer the
 * caller frees. LOOM_EFRAME_TOO_LARGE if the payload exceeds max_frame;
 * LOOM_EINVALID_ARGUMENT for no body, NULL behind a count, or a string
 * that is not UTF-8 (the detail names the field). */
LOOM_EXPORT int loom_envelope_encode(const loom_envelope *env, size_t max_frame, uint8_t **out,
                                     size_t *out_len);
/* Decodes a frame payload. *out is owned by the caller: loom_envelope_free.
 * The envelope and everything it points to live in one allocation arena:
 * free them only together, through loom_envelope_free, and never hand a
 * decoded envelope (or a part of one) to protobuf-c's free_unpacked.
 * LOOM_EPROTOCOL when the bytes are not an Envelope or carry no body;
 * LOOM_ERESOURCE_EXHAUSTED when decoding would take more memory than
 * loom_envelope_decode_budget(len) (crafted frames of tiny repeated items
 * expand ~30x in memory); LOOM_ENOMEM. */
LOOM_EXPORT int loom_envelope_decode(const uint8_t *payload, size_t len, loom_envelope **out);
/* The same with an explicit cap on the bytes decoding may allocate. */
LOOM_EXPORT int loom_envelope_decode_limited(const uint8_t *payload, size_t len,
                                             size_t max_memory, loom_envelope **out);
/* The default cap for a payload of len bytes: 64 MiB + 4 * len, enough for
 * any honest message, far below what a crafted 16 MiB frame would take. */
LOOM_EXPORT size_t loom_envelope_decode_budget(size_t len);
/* Frees an envelope from loom_envelope_decode*; NULL is a no-op. */
LOOM_EXPORT void loom_envelope_free(loom_envelope *env);
/* Points env's body oneof at body for the case `which` (borrowed: body
 * must outlive env's use). Asserts that body's message type is the one
 * the case carries. */
LOOM_EXPORT void loom_envelope_set_body(loom_envelope *env, Loom__V1__Envelope__BodyCase which,
                                        ProtobufCMessage *body);
/* The body's field name ("call", "process_reply", ...) for logs; "(none)"
 * when unset. Static storage. */
LOOM_EXPORT const char *loom_envelope_body_name(const loom_envelope *env);

/* Strings on the wire are UTF-8 without NUL bytes (proto3's rule, which
 * the Python and Go runtimes enforce): decode refuses others with
 * LOOM_EPROTOCOL, encode and send with LOOM_EINVALID_ARGUMENT. */
/* loom_utf8_valid / loom_utf8_trim (loom/utf8.h) check and mend them. */

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

/* Starts connecting to addr; callbacks fire on the loop. On a non-zero
 * return (LOOM_EINVALID_ARGUMENT for a bad address, or a libuv failure
 * mapped to a LOOM_E* code; detail in loom_errdetail) *out is NULL and no
 * callback fires. A refused or failed connect arrives as on_connect(c,
 * LOOM_ECLOSED or another code) followed by on_close.
 * The first connect or listen sets SIGPIPE to ignored if it still has its
 * default action, so a peer that goes away cannot kill the process. */
LOOM_EXPORT int loom_conn_connect(uv_loop_t *loop, const char *addr, const loom_conn_options *o,
                                  const loom_conn_callbacks *cb, void *user, loom_conn **out);
/* Queues env for sending (encoded now; env stays the caller's). Frames
 * queued during one pass of the loop are written together, in order, when
 * the pass ends; until then the loop does not sleep.
 * LOOM_ERESOURCE_EXHAUSTED when the unsent queue is over max_pending_write
 * (an empty queue always takes one frame), LOOM_ECLOSED when closing,
 * LOOM_EFRAME_TOO_LARGE, LOOM_EINVALID_ARGUMENT as for
 * loom_envelope_encode. Allowed while connecting: frames are held and sent
 * once connected. */
LOOM_EXPORT int loom_conn_send(loom_conn *c, const loom_envelope *env);
/* Closes (idempotent); on_close(c, err, reason) follows on the loop.
 * err is 0 or a negative LOOM_E* code; a non-zero err is logged to stderr
 * as one line. Frames the socket has not taken yet are dropped (see
 * loom_conn_close_after_flush for sending a last reply). */
LOOM_EXPORT void loom_conn_close(loom_conn *c, int err, const char *reason);
/* Like loom_conn_close, but frames already queued are written first: reads
 * stop and sends are refused at once, then the connection closes when the
 * queue is empty or after linger_ms, whichever comes first. For a last
 * reply (an Error before closing on a protocol violation). */
LOOM_EXPORT void loom_conn_close_after_flush(loom_conn *c, int err, const char *reason,
                                             unsigned linger_ms);
LOOM_EXPORT void loom_conn_set_user(loom_conn *c, void *user);
LOOM_EXPORT void *loom_conn_user(const loom_conn *c);
/* The peer as text for logs ("tcp:127.0.0.1:40312", "unix:/run/x.sock
 * (fd 9)"); valid as long as c. */
LOOM_EXPORT const char *loom_conn_peer(const loom_conn *c);
/* Bytes accepted by loom_conn_send and not yet written to the socket (or
 * failed); senders that want backpressure watch this. */
LOOM_EXPORT size_t loom_conn_pending_write(const loom_conn *c);

/* Accepts connections on addr ("unix:" paths are unlinked first and
 * removed again by loom_listener_close). Each accepted connection gets
 * on_accept(listener, conn, user) and starts with conn_cb and user = the
 * listener's user until loom_conn_set_user; reading starts after on_accept
 * returns (it may close the connection instead). Errors: LOOM_EINVALID_ARGUMENT
 * (bad address), LOOM_EBUSY (address in use), LOOM_EIO and others mapped
 * from libuv, with the address in loom_errdetail; *out is then NULL. */
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
