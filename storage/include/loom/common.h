/* Loom — definitions shared by every component: export macro, assertions.
 *
 * Policy (NNG's panic rule): anything a peer, a file or the disk can cause
 * returns an error code (see loom/error.h) and never crashes. A broken
 * invariant is our bug: LOOM_ASSERT aborts, in release builds too. */
#ifndef LOOM_COMMON_H
#define LOOM_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define LOOM_EXPORT __attribute__((visibility("default")))
#else
#define LOOM_EXPORT
#endif

#define LOOM_LIKELY(x) __builtin_expect(!!(x), 1)
#define LOOM_UNLIKELY(x) __builtin_expect(!!(x), 0)

LOOM_EXPORT void loom_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn));

/* Stays on in release builds. Split compound conditions into several
 * assertions so a failure names the exact broken fact. */
#define LOOM_ASSERT(expr)                                                                          \
    do {                                                                                           \
        if (LOOM_UNLIKELY(!(expr)))                                                                \
            loom_assert_fail(#expr, __FILE__, __LINE__, __func__);                                 \
    } while (0)

#define LOOM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
