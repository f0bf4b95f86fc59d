#include "e2e.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t e2e_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void e2e_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void e2e_connect(e2e *t)
{
    loom_client_options o;
    loom_client_options_init(&o);
    o.request_timeout_ms = 60000;
    int rc = loom_client_connect(loom_harness_loomd_addr(t->h), &o, &t->c);
    cr_assert_eq(rc, 0, "connect: %s", loom_errdetail());
}

void e2e_start(e2e *t, uint32_t step_timeout_ms, const char *ns_yaml, const char *top_yaml)
{
    memset(t, 0, sizeof *t);
    cr_assert_eq(loom_harness_create(&t->h), 0, "%s", loom_errdetail());
    loom_harness_unix_addr(t->h, "proc.sock", t->proc_addr, sizeof t->proc_addr);
    loom_harness_path(t->h, "proc-requests.log", t->proc_log, sizeof t->proc_log);
    const char *argv[] = {"loom-test-processor", "--listen", t->proc_addr, "--log",
                          t->proc_log,           NULL};
    cr_assert_eq(loom_harness_spawn(t->h, "proc", argv, t->proc_addr, NULL), 0, "%s",
                 loom_errdetail());
    loom_harness_ns ns = {.name = "t",
                          .processor = t->proc_addr,
                          .step_timeout_ms = step_timeout_ms,
                          .yaml = ns_yaml};
    loom_harness_loomd_opts o = {.namespaces = &ns, .n_namespaces = 1, .yaml = top_yaml};
    cr_assert_eq(loom_harness_loomd_start(t->h, &o), 0, "%s", loom_errdetail());
    e2e_connect(t);
}

void e2e_stop(e2e *t)
{
    loom_client_close(t->c);
    t->c = NULL;
    /* graceful shutdown exits 0; under ASan a leak makes it exit 23 */
    int status = -1;
    cr_assert_eq(loom_harness_loomd_stop(t->h, &status), 0, "%s", loom_errdetail());
    cr_assert_eq(status, 0, "loomd exit status %d (see its log)", status);
    if (t->h) {
        loom_harness_pass(t->h);
        loom_harness_destroy(t->h);
    }
    t->h = NULL;
}

int e2e_start_machine(e2e *t, const char *id, const char *args)
{
    return loom_client_start(t->c, "t", id, args, args ? strlen(args) : 0, NULL, NULL);
}

int e2e_call(e2e *t, const char *id, const char *args, loom_client_result *res)
{
    return loom_client_call(t->c, "t", id, args, strlen(args), NULL, res);
}

int e2e_wait_status(e2e *t, const char *id, int status, uint64_t min_last_event, int timeout_ms)
{
    return loom_harness_wait_status(t->c, "t", id, status, min_last_event,
                                    timeout_ms > 0 ? (uint32_t)timeout_ms : 0);
}

int e2e_log_count(const e2e *t, const char *needle)
{
    FILE *f = fopen(t->proc_log, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}
