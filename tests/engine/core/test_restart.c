/* End-to-end restart tests: what was interrupted resumes (timers due while
 * loomd was down, retries, notifications), timers fire exactly once across
 * SIGTERM and SIGKILL, and kill -9 under concurrent load loses no
 * acknowledged step. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "loom/store.h"

static int count_kind(const e2e *t, const char *kind, const char *id)
{
    char needle[300];
    snprintf(needle, sizeof needle, " %s %s ", kind, id);
    return e2e_log_count(t, needle);
}

static void restart_loomd(e2e *t, bool kill9)
{
    loom_client_close(t->c);
    t->c = NULL;
    if (kill9) {
        cr_assert_eq(loom_harness_loomd_kill(t->h), 0);
    } else {
        int status = -1;
        cr_assert_eq(loom_harness_loomd_stop(t->h, &status), 0);
        cr_assert_eq(status, 0, "SIGTERM exit status %d", status);
    }
}

static void timer_across_restart(bool kill9)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "w", NULL), 0);
    cr_assert_eq(e2e_call(&t, "w", "timer:1000", NULL), 0);
    restart_loomd(&t, kill9);
    /* due while loomd is down */
    e2e_sleep_ms(1500);
    cr_assert_eq(count_kind(&t, "timeout", "w"), 0);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0, "%s", loom_errdetail());
    e2e_connect(&t);
    cr_assert_eq(e2e_wait_status(&t, "w", 1, 2, 10000), 1, "timer did not fire after restart");
    e2e_sleep_ms(500);
    /* fired once; a restart now does not fire it again */
    cr_assert_eq(count_kind(&t, "timeout", "w"), 1);
    restart_loomd(&t, kill9);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0);
    e2e_connect(&t);
    e2e_sleep_ms(500);
    cr_assert_eq(count_kind(&t, "timeout", "w"), 1);
    e2e_stop(&t);
}

Test(restart, timer_fires_once_across_sigterm)
{
    timer_across_restart(false);
}

Test(restart, timer_fires_once_across_sigkill)
{
    timer_across_restart(true);
}

Test(restart, retries_and_notifications_resume)
{
    e2e t;
    e2e_start(&t, 5000,
              "retry: {initial_interval_ms: 400, factor: 1.0, max_interval_ms: 400, "
              "max_attempts: 4, max_total_ms: 0, jitter: 0}",
              NULL);
    cr_assert_eq(e2e_start_machine(&t, "r", "mode:fail"), 0);
    cr_assert_eq(e2e_call(&t, "r", "timer:0", NULL), 0);
    cr_assert_eq(e2e_start_machine(&t, "n", NULL), 0);
    for (int i = 0; i < 100 && count_kind(&t, "timeout", "r") < 2; i++)
        e2e_sleep_ms(20);
    /* notification queued right before the kill is durable */
    cr_assert_eq(loom_client_notify(t.c, "t", "n", "persist", 7, NULL, NULL), 0);
    restart_loomd(&t, true);
    int before = count_kind(&t, "timeout", "r");
    cr_assert_geq(before, 2);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0);
    e2e_connect(&t);
    /* backoff continues from the stored attempt: 4 attempts in all */
    cr_assert_eq(e2e_wait_status(&t, "r", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 15000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    cr_assert_eq(count_kind(&t, "timeout", "r"), 4);
    cr_assert_eq(e2e_log_count(&t, " timeout r 4 "), 1);
    cr_assert_eq(e2e_wait_status(&t, "n", 1, 2, 10000), 1, "notification lost");
    cr_assert_geq(count_kind(&t, "notification", "n"), 1);
    e2e_stop(&t);
}

/* Clients record every acknowledged call (machine, last_event_id) while
 * loomd is killed with SIGKILL under load. */
enum { LOAD_THREADS = 4, LOAD_MACHINES = 8 };

typedef struct loader {
    const char *addr;
    int index;
    atomic_bool *stop;
    uint64_t acked[LOAD_MACHINES]; /* highest acknowledged last_event_id */
    int ok;
} loader;

static void *loader_main(void *arg)
{
    loader *l = arg;
    loom_client *c;
    if (loom_client_connect(l->addr, NULL, &c) != 0)
        return NULL;
    unsigned seed = (unsigned)l->index * 7919u + 1;
    while (!atomic_load(l->stop)) {
        seed = seed * 1103515245u + 12345u;
        int m = (int)((seed >> 8) % LOAD_MACHINES);
        char id[16];
        snprintf(id, sizeof id, "load%d", m);
        loom_client_result r = {0};
        int rc = loom_client_call(c, "t", id, "append", 6, NULL, &r);
        if (rc == 0) {
            if (r.last_event_id > l->acked[m])
                l->acked[m] = r.last_event_id;
            l->ok++;
            loom_client_result_free(&r);
        } else if (rc == LOOM_ECLOSED) {
            break;
        }
    }
    loom_client_close(c);
    return NULL;
}

Test(restart, kill9_under_load_loses_no_acknowledged_step)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    for (int m = 0; m < LOAD_MACHINES; m++) {
        char id[16];
        snprintf(id, sizeof id, "load%d", m);
        cr_assert_eq(e2e_start_machine(&t, id, NULL), 0);
    }
    uint64_t acked[LOAD_MACHINES] = {0};
    int total = 0;
    /* LOOM_ENGINE_KILLS=N for a longer soak (default 5) */
    int kills = getenv("LOOM_ENGINE_KILLS") ? atoi(getenv("LOOM_ENGINE_KILLS")) : 5;
    for (int round = 0; round < kills; round++) {
        atomic_bool stop = false;
        pthread_t th[LOAD_THREADS];
        loader ls[LOAD_THREADS];
        for (int i = 0; i < LOAD_THREADS; i++) {
            ls[i] = (loader){
                .addr = loom_harness_loomd_addr(t.h), .index = i + 10 * round, .stop = &stop};
            pthread_create(&th[i], NULL, loader_main, &ls[i]);
        }
        e2e_sleep_ms(300 + 97 * (round % 7));
        cr_assert_eq(loom_harness_loomd_kill(t.h), 0);
        atomic_store(&stop, true);
        for (int i = 0; i < LOAD_THREADS; i++) {
            pthread_join(th[i], NULL);
            total += ls[i].ok;
            for (int m = 0; m < LOAD_MACHINES; m++)
                if (ls[i].acked[m] > acked[m])
                    acked[m] = ls[i].acked[m];
        }
        cr_assert_eq(loom_harness_loomd_restart(t.h), 0, "%s", loom_errdetail());
    }
    loom_client_close(t.c);
    e2e_connect(&t);
    printf("kill -9: %d acknowledged calls over %d kills\n", total, kills);
    cr_assert_gt(total, 0);
    loom_client_range fwd = {.limit = 0, .backward = false};
    loom_client_req req = {.range = &fwd};
    for (int m = 0; m < LOAD_MACHINES; m++) {
        char id[16];
        snprintf(id, sizeof id, "load%d", m);
        loom_client_result r = {0};
        cr_assert_eq(loom_client_get_machine(t.c, "t", id, &req, &r), 0);
        cr_assert_geq(r.machine->last_event_id, acked[m], "%s lost acknowledged events", id);
        cr_assert_eq(r.machine->n_history, r.machine->last_event_id);
        for (size_t i = 0; i < r.machine->n_history; i++)
            cr_assert_eq(r.machine->history[i]->id, i + 1, "gap in %s", id);
        loom_client_result_free(&r);
    }
    loom_client_close(t.c);
    t.c = NULL;
    int status = -1;
    cr_assert_eq(loom_harness_loomd_stop(t.h, &status), 0);
    cr_assert_eq(status, 0);
    /* every record, chain and index of the store checks out */
    char data[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(t.h, "data", data, sizeof data);
    loom_store *st;
    cr_assert_eq(loom_store_open(&st, data, NULL), 0, "%s", loom_errdetail());
    cr_assert_eq(loom_store_verify(st, NULL, NULL), 0);
    loom_store_close(st);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0);
    e2e_connect(&t);
    e2e_stop(&t);
}

Test(restart, sigterm_with_steps_in_flight_answers_and_exits_cleanly)
{
    e2e t;
    e2e_start(&t, 10000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "s", NULL), 0);
    uint64_t slow, queued;
    cr_assert_eq(loom_client_call_send(t.c, "t", "s", "sleep:3000", 10, NULL, &slow), 0);
    cr_assert_eq(loom_client_call_send(t.c, "t", "s", "append", 6, NULL, &queued), 0);
    e2e_sleep_ms(300);
    loom_harness_proc *d = loom_harness_loomd(t.h);
    cr_assert_eq(loom_harness_proc_signal(d, SIGTERM), 0);
    /* both hear SHUTTING_DOWN, unless the connection closes first */
    int rc1 = loom_client_wait(t.c, slow, NULL);
    int rc2 = loom_client_wait(t.c, queued, NULL);
    printf("shutdown: in-flight call %s, queued call %s\n", loom_err_name(rc1), loom_err_name(rc2));
    cr_assert(rc1 == LOOM_ESHUTTING_DOWN || rc1 == LOOM_ECLOSED, "%s", loom_err_name(rc1));
    cr_assert(rc2 == LOOM_ESHUTTING_DOWN || rc2 == LOOM_ECLOSED, "%s", loom_err_name(rc2));
    int status = -1;
    cr_assert_eq(loom_harness_proc_wait(d, 10000, &status), 0);
    cr_assert_eq(status, 0);
    /* nothing of the abandoned step was stored */
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0);
    loom_client_close(t.c);
    e2e_connect(&t);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "s", NULL, &r), 0);
    cr_assert_eq(r.machine->last_event_id, 1);
    loom_client_result_free(&r);
    e2e_stop(&t);
}
