/* Loom engine core: configuration, retry policy, machine status moves and
 * the engine itself (one libuv loop for all network I/O, timers and
 * scheduling; one committer thread for durable writes).
 *
 * Ownership: a loom_config filled by loom_config_load owns every string and
 * array in it and is released by loom_config_free. loom_engine_open copies
 * what it needs, so the config may be freed after it returns. */
#ifndef LOOM_ENGINE_H
#define LOOM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"

/* ------------------------------------------------------------ logging */
typedef enum loom_log_level {
    LOOM_LOG_ERROR = 0,
    LOOM_LOG_WARN = 1,
    LOOM_LOG_INFO = 2,
    LOOM_LOG_DEBUG = 3,
} loom_log_level;

LOOM_EXPORT void loom_log_set_level(loom_log_level level);
/* One line on stderr: "<iso time> <LEVEL> loomd: <message>". */
LOOM_EXPORT void loom_log(loom_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "error"|"warn"|"info"|"debug" → level; LOOM_EINVALID_ARGUMENT otherwise. */
LOOM_EXPORT int loom_log_level_parse(const char *text, loom_log_level *out);

/* ------------------------------------------------------------ retry policy
 * Exponential backoff for timer and notification steps. The delay before
 * retry n (n = failed attempts so far, 1-based) is
 *   min(initial_interval_ms * factor^(n-1), max_interval_ms)
 * scaled by a uniform factor in [1 - jitter, 1 + jitter]. The step is given
 * up after max_attempts attempts in all (the first try included) or when
 * the next attempt would start more than max_total_ms after the first
 * failure; 0 disables a bound, at least one bound must be set. Pure: the
 * caller passes the clock and a seeded random source. */
typedef struct loom_retry_policy {
    uint32_t initial_interval_ms;
    double factor;
    uint32_t max_interval_ms;
    uint32_t max_attempts;
    uint64_t max_total_ms;
    double jitter;
} loom_retry_policy;

/* splitmix64: small, seedable, good enough for jitter. */
typedef struct loom_rng {
    uint64_t state;
} loom_rng;

LOOM_EXPORT void loom_rng_seed(loom_rng *r, uint64_t seed);
LOOM_EXPORT uint64_t loom_rng_next(loom_rng *r);
/* Uniform in [0, 1). */
LOOM_EXPORT double loom_rng_unit(loom_rng *r);

LOOM_EXPORT void loom_retry_policy_default(loom_retry_policy *p);
/* 0, or LOOM_EINVALID_ARGUMENT with a detail naming the bad field. */
LOOM_EXPORT int loom_retry_policy_check(const loom_retry_policy *p);
/* The un-jittered delay before retry n (n >= 1), capped by max_interval. */
LOOM_EXPORT uint64_t loom_retry_base_delay_ms(const loom_retry_policy *p, uint32_t n);
/* After the failed_attempts-th failure (>= 1) of a step whose first failure
 * was at first_failure_ms: returns 1 and sets *next_attempt_ms when another
 * attempt is allowed, 0 when the policy is exhausted. */
LOOM_EXPORT int loom_retry_next(const loom_retry_policy *p, uint32_t failed_attempts,
                                int64_t first_failure_ms, int64_t now_ms, loom_rng *rng,
                                int64_t *next_attempt_ms);

/* ------------------------------------------------------------ machine status
 * The legal moves (docs/semantics.md has the diagram). LOOM_MSTATE_ABSENT
 * stands for "no such machine" (before Start, after Remove). */
typedef enum loom_mstate {
    LOOM_MSTATE_ABSENT = 0,
    LOOM_MSTATE_WORKING = 1,
    LOOM_MSTATE_FAILED = 2,
    LOOM_MSTATE_RETRYING = 3,
} loom_mstate;

LOOM_EXPORT bool loom_mstate_move_ok(loom_mstate from, loom_mstate to);
LOOM_EXPORT const char *loom_mstate_name(loom_mstate s);

/* ------------------------------------------------------------ configuration */
typedef struct loom_range_config {
    uint32_t limit; /* 0 = whole history */
    bool backward;
} loom_range_config;

#define LOOM_NS_NAME_MAX 64
#define LOOM_MACHINE_ID_MAX 255

typedef struct loom_ns_config {
    char *name;
    char **processors; /* "unix:PATH" | "tcp:HOST:PORT" */
    size_t n_processors;
    uint32_t step_timeout_ms;
    loom_retry_policy retry;
    loom_range_config default_range;
    bool event_sink;
} loom_ns_config;

typedef struct loom_limits {
    uint32_t max_frame_bytes;
    uint32_t max_connections;
    uint32_t max_queued_calls_per_machine;
    uint32_t max_steps_in_flight;
    uint32_t max_events_per_step;
    uint32_t max_event_bytes;
    uint32_t max_aux_state_bytes;
} loom_limits;

typedef struct loom_config {
    char **listen;
    size_t n_listen;
    char *data_dir;
    loom_log_level log_level;
    loom_limits limits;
    uint64_t map_size_initial_mb;
    uint64_t map_size_max_mb;
    bool nosync; /* storage.durability: nosync — unsafe, benchmarks only */
    uint64_t request_id_window_s;
    loom_ns_config *namespaces;
    size_t n_namespaces;
} loom_config;

/* Defaults for everything (no listen address, no data dir, no namespace). */
LOOM_EXPORT void loom_config_init(loom_config *c);
/* Parses the YAML file at path into c (initialised here). On error c holds
 * nothing to free and the detail (file:line: what) is in loom_errdetail():
 * LOOM_EINVALID_ARGUMENT for bad content, LOOM_EIO when unreadable. */
LOOM_EXPORT int loom_config_load(const char *path, loom_config *c);
/* Same from a buffer (name is used in messages). */
LOOM_EXPORT int loom_config_parse(const char *text, size_t len, const char *name, loom_config *c);
/* Final checks after flags are applied (listen and data_dir present...). */
LOOM_EXPORT int loom_config_check(const loom_config *c);
LOOM_EXPORT void loom_config_free(loom_config *c);
/* Replaces the listen list with a copy of addrs. */
LOOM_EXPORT int loom_config_set_listen(loom_config *c, char *const *addrs, size_t n);
LOOM_EXPORT int loom_config_set_string(char **field, const char *value);

LOOM_EXPORT int loom_ns_config_check(const loom_ns_config *ns);
LOOM_EXPORT void loom_ns_config_free(loom_ns_config *ns);
LOOM_EXPORT int loom_ns_config_copy(loom_ns_config *dst, const loom_ns_config *src);

/* Machine and namespace id rules of the client API. */
LOOM_EXPORT int loom_check_ns_name(const char *name);
LOOM_EXPORT int loom_check_machine_id(const char *id);

/* ------------------------------------------------------------ the engine */
typedef struct loom_engine loom_engine;

/* Opens the store in cfg->data_dir (created if missing), loads the stored
 * namespaces, registers/updates cfg's namespaces, starts the committer
 * thread and binds every listen address (connections are accepted from
 * here on, served once the loop runs). Returns 0 or a LOOM_E* code
 * (detail set); on failure nothing is left open. */
LOOM_EXPORT int loom_engine_open(loom_engine **out, const loom_config *cfg);
/* Runs the loop until SIGTERM/SIGINT (when handle_signals) or
 * loom_engine_stop; then shuts down gracefully. Returns 0 or an error.
 * With handle_signals, SIGTERM and SIGINT are unblocked in the calling
 * thread once their handlers are in place, so a caller may block them
 * before loom_engine_open to keep a signal that arrives during start-up
 * pending rather than fatal. */
LOOM_EXPORT int loom_engine_run(loom_engine *e, bool handle_signals);
/* Asks the loop to stop. Thread-safe. */
LOOM_EXPORT void loom_engine_stop(loom_engine *e);
/* The TCP port of the i-th listener (0 for unix), for port-0 configs. */
LOOM_EXPORT int loom_engine_listen_port(const loom_engine *e, size_t i);
/* Stops the committer, closes every handle and the store, frees e. Call
 * from the thread that ran the loop, after loom_engine_run returned (or
 * instead of running it). NULL is a no-op. */
LOOM_EXPORT void loom_engine_close(loom_engine *e);

#endif
