/* Shared between the connection half (client.c) and the typed operations
 * (ops.c) of loom_client. */
#ifndef LOOM_CLIENT_INTERNAL_H
#define LOOM_CLIENT_INTERNAL_H

#include "loom/client.h"

/* Sends env (correlation id assigned here) and registers the reply body
 * case that must answer it. */
int loom_client__send(loom_client *c, loom_envelope *env, int expect_case, uint32_t timeout_ms,
                      uint64_t *corr);
/* Records the reason of a local failure and returns err. */
int loom_client__fail(loom_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
