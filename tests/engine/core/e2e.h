/* Shared set-up of the engine's end-to-end tests: a scratch dir, one
 * loom-test-processor, loomd with namespace "t" on it, a client. */
#ifndef LOOM_TEST_E2E_H
#define LOOM_TEST_E2E_H

#include <stdint.h>

#include "loom/client.h"
#include "loom/harness.h"

typedef struct e2e {
    loom_harness *h;
    loom_client *c;
    char proc_addr[LOOM_HARNESS_PATH_MAX];
    char proc_log[LOOM_HARNESS_PATH_MAX];
} e2e;

/* ns_yaml: extra YAML for namespace "t" (retry: ...) or NULL; top_yaml:
 * extra top-level YAML or NULL. Asserts on failure. */
void e2e_start(e2e *t, uint32_t step_timeout_ms, const char *ns_yaml, const char *top_yaml);
void e2e_connect(e2e *t);
void e2e_stop(e2e *t);
int64_t e2e_now_ms(void);
void e2e_sleep_ms(int ms);

/* Blocking helpers on namespace "t" with string args. */
int e2e_start_machine(e2e *t, const char *id, const char *args);
int e2e_call(e2e *t, const char *id, const char *args, loom_client_result *res);
/* Waits until the machine's status/last event id satisfy want (polling
 * GetMachine), up to timeout_ms. Returns the final machine status or -1. */
int e2e_wait_status(e2e *t, const char *id, int status, uint64_t min_last_event, int timeout_ms);
/* Lines of the processor log that contain needle (count). */
int e2e_log_count(const e2e *t, const char *needle);

#endif
