/* Shared set-up of the end-to-end tests: loomd with the test processor
 * (loom-e2e-processor) behind namespace "test", and namespace "dead"
 * whose processor never answers. */
#ifndef LOOM_TEST_E2E_H
#define LOOM_TEST_E2E_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/client.h"
#include "loom/harness.h"

extern loom_harness *e2e_h;
extern loom_client *e2e_c;
extern char e2e_proc_addr[LOOM_HARNESS_PATH_MAX];

/* Starts the processor and loomd (extra_yaml: more top-level config, may
 * be NULL) and connects e2e_c. */
void e2e_up(const char *extra_yaml);
/* The same, loomd also listening on tcp:127.0.0.1:PORT when tcp. */
void e2e_up_opts(const char *extra_yaml, bool tcp);
void e2e_down(void);
/* The end of a passing test: stops a running loomd and asserts it exited
 * 0, then keeps the logs quiet. */
void e2e_pass(void);
/* Reconnects e2e_c (after a loomd restart). */
void e2e_reconnect(void);

/* Blocking operations on namespace "test" with text args. */
int e2e_start(const char *id, const char *args);
int e2e_call(const char *id, const char *args, loom_client_result *res);
/* The machine, or NULL when get fails (the code in *rc if rc). Free with
 * loom_client_result_free(res). */
const Loom__V1__Machine *e2e_get(const char *id, loom_client_result *res, int *rc);
/* Polls until the machine has the status (true) or timeout_ms passes. */
bool e2e_wait_status(const char *id, int status, uint32_t timeout_ms);
/* Polls until an event of this kind is in the machine's history. */
bool e2e_wait_event(const char *id, const char *kind, uint32_t timeout_ms);
/* The "kind" of an event written by the test processor ("" if none). */
void e2e_event_kind(const Loom__V1__Event *e, char *kind, size_t size);
/* Counts events of a kind in the machine's whole history. */
int e2e_count_events(const char *id, const char *kind);

#endif
