#ifndef LOOM_HARNESS_INTERNAL_H
#define LOOM_HARNESS_INTERNAL_H

#include "loom/harness.h"

#define HARNESS_MAX_ARGS 64

struct loom_harness_proc {
    loom_harness *h;
    char name[64];
    char *argv[HARNESS_MAX_ARGS + 1]; /* owned copies, NULL-terminated */
    char wait_addr[LOOM_HARNESS_PATH_MAX];
    char log_path[LOOM_HARNESS_PATH_MAX];
    pid_t pid; /* 0 when not running */
    int last_status;
};

struct loom_harness {
    char dir[LOOM_HARNESS_PATH_MAX];
    loom_harness_proc procs[LOOM_HARNESS_MAX_PROCS];
    int n_procs;
    bool passed;
    loom_harness_proc *loomd;
    char loomd_addr[LOOM_HARNESS_PATH_MAX];
    char loomd_tcp_addr[64];
    char config_path[LOOM_HARNESS_PATH_MAX];
};

/* Kills and reaps every running child of h; they stay listed (logs). */
void loom_harness__kill_all(loom_harness *h);
/* Kills them and forgets them. */
void loom_harness__release_all(loom_harness *h);
uint64_t loom_harness__now_ms(void);
void loom_harness__sleep_ms(unsigned ms);

#endif
