/* loomctl: command-line options, commands and their output. */
#ifndef LOOMCTL_CLI_H
#define LOOMCTL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl.h"
#include "loom/client.h"

/* Exit codes (documented in `loomctl --help` and README.md). */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_LOCAL = 1,      /* a local failure: unreadable file, out of memory */
    CTL_EXIT_USAGE = 2,      /* bad command line or ARGS */
    CTL_EXIT_CONNECT = 3,    /* cannot connect to loomd, or the connection broke */
    CTL_EXIT_ERROR_BASE = 10 /* + the wire error code (11 NAMESPACE_NOT_FOUND, ...) */
};

#define CTL_MAX_POSITIONAL 8
#define CTL_MAX_PROCESSORS 16
#define CTL_ARGS_MAX_BYTES (16u * 1024u * 1024u)

/* One bit per option, to check which a command accepts. */
enum {
    OPT_REQUEST_ID = 1u << 0,
    OPT_AFTER = 1u << 1,
    OPT_LIMIT = 1u << 2,
    OPT_BACKWARD = 1u << 3,
    OPT_FORWARD = 1u << 4,
    OPT_STATUS = 1u << 5,
    OPT_ALL = 1u << 6,
    OPT_ARGS_HEX = 1u << 7,
    OPT_PROCESSOR = 1u << 8,
    OPT_STEP_TIMEOUT = 1u << 9,
    OPT_RETRY = 1u << 10, /* any --retry-* */
    OPT_RANGE_LIMIT = 1u << 11,
    OPT_RANGE_DIR = 1u << 12,
    OPT_EVENT_SINK = 1u << 13,
    OPT_FILE = 1u << 14,
};

/* ctl_opts.retry_set bits */
enum {
    RETRY_INITIAL = 1u << 0,
    RETRY_FACTOR = 1u << 1,
    RETRY_MAX_INTERVAL = 1u << 2,
    RETRY_MAX_ATTEMPTS = 1u << 3,
    RETRY_MAX_TOTAL = 1u << 4,
    RETRY_JITTER = 1u << 5,
};

typedef struct ctl_opts {
    const char *addr;
    bool json;
    uint32_t timeout_ms;
    unsigned seen; /* OPT_* given */
    const char *request_id;
    const char *after; /* a number for ranges, a machine id for list */
    uint32_t limit;
    const char *status;
    const char *args_hex;
    const char *processors[CTL_MAX_PROCESSORS];
    int n_processors;
    uint32_t step_timeout_ms;
    /* --retry-*: given ones only (retry_set bits) */
    unsigned retry_set;
    uint32_t retry_initial_ms, retry_max_interval_ms, retry_max_attempts;
    uint64_t retry_max_total_ms;
    double retry_factor, retry_jitter;
    uint32_t range_limit;
    bool range_backward;
    bool event_sink;
    const char *file;
    const char *command;
    const char *pos[CTL_MAX_POSITIONAL];
    int n_pos;
} ctl_opts;

/* Parses argv; on a usage error prints why and returns CTL_EXIT_USAGE.
 * Returns -1 when help was printed (exit 0). */
int ctl_parse(int argc, char **argv, ctl_opts *o);
void ctl_usage(FILE *f);

/* Runs o->command; returns the process exit code. */
int ctl_run(const ctl_opts *o);

/* Output helpers (out.c). */
int ctl_exit_code(int err);
/* Prints a failure (stderr for people, stdout JSON for scripts) and
 * returns its exit code. */
int ctl_report_error(const ctl_opts *o, int err, const char *message);
void ctl_print_time(FILE *f, int64_t unix_ms);
const char *ctl_status_name(int status);
void ctl_print_machine(FILE *f, const Loom__V1__Machine *m, bool json);
void ctl_print_history(FILE *f, const Loom__V1__Machine *m, bool json);
void ctl_print_list(FILE *f, Loom__V1__MachineSummary *const *ms, size_t n, const char *next,
                    bool json);
void ctl_print_namespaces(FILE *f, const Loom__V1__ListNamespacesReply *r, bool json);

#endif
