/* Loom error codes.
 *
 * One table (LOOM_ERRNO_MAP) makes the enum, loom_strerror() and
 * loom_err_name(). Functions return 0 on success and a negative LOOM_E*
 * value on failure (libuv's convention); some return a positive count or
 * 1 for "produced an item". The wire code is the positive number:
 * wire = -err. Codes are only ever appended — they cross the wire and
 * proto/loom.proto's ErrorCode enum carries the same numbers (a test checks). */
#ifndef LOOM_ERROR_H
#define LOOM_ERROR_H

#include "loom/common.h"

/* X(NAME, wire number, message) */
#define LOOM_ERRNO_MAP(X)                                                                          \
    X(NAMESPACE_NOT_FOUND, 1, "namespace not found")                                               \
    X(MACHINE_NOT_FOUND, 2, "machine not found")                                                   \
    X(MACHINE_ALREADY_EXISTS, 3, "machine already exists")                                         \
    X(MACHINE_FAILED, 4, "machine failed")                                                         \
    X(MACHINE_ALREADY_WORKING, 5, "machine already working")                                       \
    X(REPAIR_FAILED, 6, "repair failed")                                                           \
    X(PROCESSOR_UNAVAILABLE, 7, "processor unavailable")                                           \
    X(TIMEOUT, 8, "timed out")                                                                     \
    X(INVALID_ARGUMENT, 9, "invalid argument")                                                     \
    X(RESOURCE_EXHAUSTED, 10, "resource exhausted")                                                \
    X(NAMESPACE_ALREADY_EXISTS, 11, "namespace already exists")                                    \
    X(STALE, 12, "machine moved on since it was read")                                             \
    X(STORAGE_FULL, 13, "storage full")                                                            \
    X(CORRUPTED, 14, "stored data corrupted")                                                      \
    X(IO, 15, "i/o error")                                                                         \
    X(NOMEM, 16, "out of memory")                                                                  \
    X(PROTOCOL, 17, "malformed message")                                                           \
    X(FRAME_TOO_LARGE, 18, "frame too large")                                                      \
    X(PROCESSOR_FAILED, 19, "processor failed")                                                    \
    X(BAD_REPLY, 20, "invalid processor reply")                                                    \
    X(NOT_FOUND, 21, "not found")                                                                  \
    X(CLOSED, 22, "connection closed")                                                             \
    X(SHUTTING_DOWN, 23, "shutting down")                                                          \
    X(UNSUPPORTED, 24, "unsupported")                                                              \
    X(BUSY, 25, "resource busy")                                                                   \
    X(INTERNAL, 26, "internal error")

typedef enum loom_err {
    LOOM_OK = 0,
#define LOOM__ERR_ENUM(name, num, msg) LOOM_E##name = -(num),
    LOOM_ERRNO_MAP(LOOM__ERR_ENUM)
#undef LOOM__ERR_ENUM
} loom_err;

/* Human text for an error (negative code, or the positive wire number).
 * Never NULL; unknown codes give "unknown error". Static storage. */
LOOM_EXPORT const char *loom_strerror(int err);
/* Symbolic name without prefix, e.g. "MACHINE_NOT_FOUND"; "OK" for 0,
 * "UNKNOWN" for codes not in the table. Static storage. */
LOOM_EXPORT const char *loom_err_name(int err);
/* The wire number of err (its absolute value). */
static inline unsigned loom_err_wire(int err)
{
    return (unsigned)(err < 0 ? -err : err);
}

/* Detail of the last error raised on this thread (e.g. LMDB's own text,
 * the path, the errno string). Thread-local; valid until the next call that
 * sets it on this thread. Empty string when none. */
LOOM_EXPORT const char *loom_errdetail(void);
/* Sets the detail and returns err, so a caller can write
 * `return loom_seterr(LOOM_EIO, "write %s: %s", path, strerror(errno));` */
LOOM_EXPORT int loom_seterr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Maps an errno value (positive, as in <errno.h>) to a Loom code. */
LOOM_EXPORT int loom_err_from_errno(int errno_value);

#endif
