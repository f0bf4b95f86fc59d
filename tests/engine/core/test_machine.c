/* End-to-end tests of machine steps (engine/core/src/machine.c): retries
 * observed by timestamps, FAILED, Repair and SimpleRepair, misbehaving
 * processors, notifications, request ids, per-machine serialisation and
 * the per-machine queue limit. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

#define RETRY_YAML(attempts)                                                                       \
    "retry: {initial_interval_ms: 100, factor: 2.0, max_interval_ms: 1000, "                       \
    "max_attempts: " #attempts ", max_total_ms: 0, jitter: 0}"

/* Arrival times of the requests of kind for id, in order; returns count. */
static int arrivals(const e2e *t, const char *kind, const char *id, int64_t *out, int cap,
                    unsigned *attempts)
{
    FILE *f = fopen(t->proc_log, "r");
    if (!f)
        return 0;
    char line[512], k[32], mid[300];
    long long ms;
    unsigned att;
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f))
        if (sscanf(line, "%lld %31s %299s %u", &ms, k, mid, &att) == 4 && !strcmp(k, kind) &&
            !strcmp(mid, id)) {
            if (attempts)
                attempts[n] = att;
            out[n++] = ms;
        }
    fclose(f);
    return n;
}

static Loom__V1__MachineStatus status_of(e2e *t, const char *id, char *reason, size_t len)
{
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t->c, "t", id, NULL, &r), 0);
    Loom__V1__MachineStatus s = r.machine->status;
    if (reason)
        snprintf(reason, len, "%s", r.machine->failure_reason);
    loom_client_result_free(&r);
    return s;
}

Test(machine, retry_sequence_then_failed_then_repair)
{
    e2e t;
    e2e_start(&t, 5000, RETRY_YAML(5), NULL);
    cr_assert_eq(e2e_start_machine(&t, "r", "mode:fail"), 0);
    cr_assert_eq(e2e_call(&t, "r", "timer:0", NULL), 0);
    cr_assert_eq(e2e_wait_status(&t, "r", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 20000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    int64_t at[16];
    unsigned att[16];
    int n = arrivals(&t, "timeout", "r", at, 16, att);
    cr_assert_eq(n, 5, "attempts seen: %d", n);
    int64_t want[] = {100, 200, 400, 800};
    for (int i = 1; i < n; i++) {
        int64_t gap = at[i] - at[i - 1];
        printf("retry %d: attempt %u after %lld ms (policy %lld ms)\n", i, att[i], (long long)gap,
               (long long)want[i - 1]);
        cr_assert_eq(att[i], (unsigned)i + 1);
        cr_assert_geq(gap, want[i - 1] - 5);
        cr_assert_lt(gap, want[i - 1] + 1000);
    }
    char reason[512];
    cr_assert_eq(status_of(&t, "r", reason, sizeof reason),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    cr_assert(strstr(reason, "temporary failure") != NULL, "reason: %s", reason);
    /* a failed machine refuses calls, accepts a notification for later */
    cr_assert_eq(e2e_call(&t, "r", "append", NULL), LOOM_EMACHINE_FAILED);
    loom_client_result nr = {0};
    cr_assert_eq(loom_client_notify(t.c, "t", "r", "later", 5, NULL, &nr), 0);
    cr_assert_gt(nr.notification_id, 0);
    loom_client_result_free(&nr);
    /* repair refused: stays failed */
    cr_assert_eq(loom_client_repair(t.c, "t", "r", "refuse", 6, NULL, NULL), LOOM_EREPAIR_FAILED);
    cr_assert_eq(status_of(&t, "r", NULL, 0), LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_repair(t.c, "t", "r", "ok", 2, NULL, &r), 0, "%s",
                 loom_client_errmsg(t.c));
    cr_assert_eq(r.response_len, 8);
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_repair(t.c, "t", "r", "ok", 2, NULL, NULL),
                 LOOM_EMACHINE_ALREADY_WORKING);
    cr_assert_eq(loom_client_simple_repair(t.c, "t", "r", NULL, NULL),
                 LOOM_EMACHINE_ALREADY_WORKING);
    /* the notification held while failed is delivered after the repair */
    int64_t na[4];
    for (int i = 0; i < 200 && arrivals(&t, "notification", "r", na, 4, NULL) == 0; i++)
        e2e_sleep_ms(25);
    cr_assert_eq(arrivals(&t, "notification", "r", na, 4, NULL), 1);
    cr_assert_eq(e2e_call(&t, "r", "append", NULL), 0);
    e2e_stop(&t);
}

Test(machine, simple_repair_restores_and_rearms)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "f", "mode:fatal"), 0);
    cr_assert_eq(e2e_call(&t, "f", "timer:0", NULL), 0);
    cr_assert_eq(e2e_wait_status(&t, "f", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 10000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    int64_t at[8];
    cr_assert_eq(arrivals(&t, "timeout", "f", at, 8, NULL), 1); /* not retryable: no retry */
    /* SimpleRepair: no processor call, back to WORKING, the timer fires again */
    cr_assert_eq(loom_client_simple_repair(t.c, "t", "f", NULL, NULL), 0);
    for (int i = 0; i < 400 && arrivals(&t, "timeout", "f", at, 8, NULL) < 2; i++)
        e2e_sleep_ms(25);
    cr_assert_eq(arrivals(&t, "timeout", "f", at, 8, NULL), 2);
    cr_assert_eq(arrivals(&t, "repair", "f", at, 8, NULL), 0);
    cr_assert_eq(e2e_wait_status(&t, "f", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 10000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    e2e_stop(&t);
}

/* Crash, hang past the timeout, garbage bytes, an invalid reply: each
 * machine is retried then FAILED; loomd and the other machines carry on. */
Test(machine, misbehaving_processor_fails_only_its_machines)
{
    e2e t;
    e2e_start(&t, 300, RETRY_YAML(3), NULL);
    const char *modes[] = {"hang", "garbage", "badreply"};
    for (int i = 0; i < 3; i++) {
        char args[32];
        snprintf(args, sizeof args, "mode:%s", modes[i]);
        cr_assert_eq(e2e_start_machine(&t, modes[i], args), 0);
    }
    cr_assert_eq(e2e_start_machine(&t, "healthy", NULL), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(e2e_call(&t, modes[i], "timer:200", NULL), 0);
    int healthy_calls = 0;
    for (int round = 0; round < 400; round++) {
        int failed = 0;
        for (int i = 0; i < 3; i++)
            failed += status_of(&t, modes[i], NULL, 0) == LOOM__V1__MACHINE_STATUS__STATUS_FAILED;
        if (failed == 3)
            break;
        /* a call in flight when garbage breaks the shared connection fails
         * as PROCESSOR_UNAVAILABLE (the caller may retry); never worse */
        int rc = e2e_call(&t, "healthy", "append", NULL);
        cr_assert(rc == 0 || rc == LOOM_EPROCESSOR_UNAVAILABLE, "%s", loom_client_errmsg(t.c));
        healthy_calls += rc == 0;
        e2e_sleep_ms(20);
    }
    for (int i = 0; i < 3; i++) {
        char reason[512];
        cr_assert_eq(status_of(&t, modes[i], reason, sizeof reason),
                     LOOM__V1__MACHINE_STATUS__STATUS_FAILED, "%s not failed", modes[i]);
        printf("%s: %s\n", modes[i], reason);
        int64_t at[8];
        cr_assert_eq(arrivals(&t, "timeout", modes[i], at, 8, NULL), 3, "%s attempts", modes[i]);
    }
    cr_assert_gt(healthy_calls, 0);
    cr_assert_eq(e2e_call(&t, "healthy", "append", NULL), 0);
    cr_assert_eq(status_of(&t, "healthy", NULL, 0), LOOM__V1__MACHINE_STATUS__STATUS_WORKING);
    e2e_stop(&t);
}

Test(machine, a_hanging_step_does_not_hold_up_other_machines)
{
    e2e t;
    e2e_start(&t, 10000, RETRY_YAML(2), NULL);
    cr_assert_eq(e2e_start_machine(&t, "stuck", "mode:hang"), 0);
    cr_assert_eq(e2e_start_machine(&t, "free", NULL), 0);
    cr_assert_eq(e2e_call(&t, "stuck", "timer:0", NULL), 0);
    int64_t at[4];
    for (int i = 0; i < 200 && arrivals(&t, "timeout", "stuck", at, 4, NULL) == 0; i++)
        e2e_sleep_ms(10);
    /* the stuck step waits for its 10 s timeout; the other machine runs */
    int64_t t0 = e2e_now_ms();
    for (int i = 0; i < 20; i++)
        cr_assert_eq(e2e_call(&t, "free", "append", NULL), 0);
    int64_t took = e2e_now_ms() - t0;
    printf("20 calls beside a hanging step: %lld ms\n", (long long)took);
    cr_assert_lt(took, 8000);
    cr_assert_eq(status_of(&t, "stuck", NULL, 0), LOOM__V1__MACHINE_STATUS__STATUS_WORKING);
    e2e_stop(&t);
}

Test(machine, crashing_processor_is_retried_and_engine_survives)
{
    e2e t;
    e2e_start(&t, 1000, RETRY_YAML(3), NULL);
    cr_assert_eq(e2e_start_machine(&t, "c", "mode:crash"), 0);
    cr_assert_eq(e2e_start_machine(&t, "ok", NULL), 0);
    cr_assert_eq(e2e_call(&t, "c", "timer:0", NULL), 0);
    loom_harness_proc *p = loom_harness_proc_find(t.h, "proc");
    cr_assert_not_null(p);
    for (int i = 0; i < 600; i++) {
        if (!loom_harness_proc_alive(p))
            cr_assert_eq(loom_harness_proc_restart(p), 0, "%s", loom_errdetail());
        if (status_of(&t, "c", NULL, 0) == LOOM__V1__MACHINE_STATUS__STATUS_FAILED)
            break;
        e2e_sleep_ms(20);
    }
    cr_assert_eq(status_of(&t, "c", NULL, 0), LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    if (!loom_harness_proc_alive(p))
        cr_assert_eq(loom_harness_proc_restart(p), 0);
    cr_assert(loom_harness_proc_alive(loom_harness_loomd(t.h)));
    /* the processor is back: the healthy machine works (first call may meet
     * the reconnect) */
    int rc = e2e_call(&t, "ok", "append", NULL);
    if (rc)
        rc = e2e_call(&t, "ok", "append", NULL);
    cr_assert_eq(rc, 0, "%s", loom_client_errmsg(t.c));
    e2e_stop(&t);
}

Test(machine, call_to_unreachable_processor_is_unavailable)
{
    e2e t;
    e2e_start(&t, 1000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "u", NULL), 0);
    loom_harness_proc *p = loom_harness_proc_find(t.h, "proc");
    cr_assert_eq(loom_harness_proc_kill(p), 0);
    int rc = e2e_call(&t, "u", "append", NULL);
    cr_assert_eq(rc, LOOM_EPROCESSOR_UNAVAILABLE, "got %s", loom_err_name(rc));
    /* a processor that accepts but never answers: TIMEOUT */
    cr_assert_eq(loom_harness_proc_restart(p), 0);
    cr_assert_eq(loom_harness_proc_signal(p, SIGSTOP), 0);
    /* until the reconnect backoff has passed, calls are refused at once */
    for (int i = 0; i < 100; i++) {
        rc = e2e_call(&t, "u", "append", NULL);
        if (rc != LOOM_EPROCESSOR_UNAVAILABLE)
            break;
        e2e_sleep_ms(100);
    }
    cr_assert_eq(rc, LOOM_ETIMEOUT, "got %s", loom_err_name(rc));
    cr_assert_eq(loom_harness_proc_signal(p, SIGCONT), 0);
    e2e_stop(&t);
}

Test(machine, notifications_are_durable_and_delivered_in_order)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "n", NULL), 0);
    uint64_t prev = 0;
    for (int i = 0; i < 5; i++) {
        char args[16];
        snprintf(args, sizeof args, "note%d", i);
        loom_client_result r = {0};
        cr_assert_eq(loom_client_notify(t.c, "t", "n", args, strlen(args), NULL, &r), 0);
        cr_assert_gt(r.notification_id, prev);
        prev = r.notification_id;
        loom_client_result_free(&r);
    }
    cr_assert_eq(e2e_wait_status(&t, "n", 1, 6, 10000), 1);
    loom_client_range fwd = {.limit = 0, .backward = false};
    loom_client_req req = {.range = &fwd};
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "n", &req, &r), 0);
    cr_assert_eq(r.machine->n_history, 6);
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, "note%d", i);
        cr_assert_eq(r.machine->history[i + 1]->data.len, strlen(want));
        cr_assert_eq(memcmp(r.machine->history[i + 1]->data.data, want, strlen(want)), 0);
    }
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_notify(t.c, "t", "absent", "x", 1, NULL, NULL),
                 LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(loom_client_notify(t.c, "nope", "n", "x", 1, NULL, NULL),
                 LOOM_ENAMESPACE_NOT_FOUND);
    e2e_stop(&t);
}

Test(machine, failing_notification_is_retried_then_fails_then_delivered)
{
    e2e t;
    e2e_start(&t, 5000, RETRY_YAML(3), NULL);
    cr_assert_eq(e2e_start_machine(&t, "nf", "mode:fail"), 0);
    cr_assert_eq(loom_client_notify(t.c, "t", "nf", "first", 5, NULL, NULL), 0);
    cr_assert_eq(loom_client_notify(t.c, "t", "nf", "second", 6, NULL, NULL), 0);
    cr_assert_eq(e2e_wait_status(&t, "nf", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 10000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    int64_t at[8];
    unsigned att[8];
    /* only the first notification is tried (3 attempts); the second waits */
    cr_assert_eq(arrivals(&t, "notification", "nf", at, 8, att), 3);
    cr_assert_eq(att[2], 3);
    cr_assert_eq(loom_client_repair(t.c, "t", "nf", "ok", 2, NULL, NULL), 0);
    /* both delivered after the repair, in order */
    cr_assert_eq(e2e_wait_status(&t, "nf", 1, 4, 10000), 1);
    loom_client_range fwd = {.limit = 0, .backward = false};
    loom_client_req req = {.range = &fwd};
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "nf", &req, &r), 0);
    cr_assert_eq(r.machine->n_history, 4); /* init, repaired, first, second */
    cr_assert_eq(memcmp(r.machine->history[2]->data.data, "first", 5), 0);
    cr_assert_eq(memcmp(r.machine->history[3]->data.data, "second", 6), 0);
    loom_client_result_free(&r);
    e2e_stop(&t);
}

Test(machine, request_id_repeats_run_one_step)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    loom_client_req req = {.request_id = "start-1"};
    loom_client_result a = {0}, b = {0};
    cr_assert_eq(loom_client_start(t.c, "t", "q", NULL, 0, &req, &a), 0);
    cr_assert_eq(loom_client_start(t.c, "t", "q", NULL, 0, &req, &b), 0, "%s",
                 loom_client_errmsg(t.c));
    cr_assert_eq(a.last_event_id, b.last_event_id);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    req.request_id = "call-1";
    cr_assert_eq(loom_client_call(t.c, "t", "q", "append", 6, &req, &a), 0);
    cr_assert_eq(loom_client_call(t.c, "t", "q", "append", 6, &req, &b), 0);
    cr_assert_eq(a.last_event_id, 2);
    cr_assert_eq(b.last_event_id, 2);
    cr_assert_eq(a.response_len, b.response_len);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    /* a repeat sent while the first is still running waits for it */
    req.request_id = "call-2";
    uint64_t c1, c2;
    cr_assert_eq(loom_client_call_send(t.c, "t", "q", "sleep:300", 9, &req, &c1), 0);
    cr_assert_eq(loom_client_call_send(t.c, "t", "q", "sleep:300", 9, &req, &c2), 0);
    cr_assert_eq(loom_client_wait(t.c, c1, &a), 0);
    cr_assert_eq(loom_client_wait(t.c, c2, &b), 0);
    cr_assert_eq(a.last_event_id, 3);
    cr_assert_eq(b.last_event_id, 3);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    req.request_id = "note-1";
    cr_assert_eq(loom_client_notify(t.c, "t", "q", "n", 1, &req, &a), 0);
    cr_assert_eq(loom_client_notify(t.c, "t", "q", "n", 1, &req, &b), 0);
    cr_assert_eq(a.notification_id, b.notification_id);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    cr_assert_eq(e2e_wait_status(&t, "q", 1, 4, 10000), 1);
    e2e_sleep_ms(200);
    cr_assert_eq(e2e_log_count(&t, " init q "), 1);
    cr_assert_eq(e2e_log_count(&t, " call q "), 2);
    cr_assert_eq(e2e_log_count(&t, " notification q "), 1);
    e2e_stop(&t);
}

typedef struct hammer {
    const char *addr;
    int calls;
    int ok;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    loom_client *c;
    if (loom_client_connect(h->addr, NULL, &c) != 0)
        return NULL;
    uint64_t corr[16];
    for (int done = 0; done < h->calls; done += 16) {
        int k = h->calls - done < 16 ? h->calls - done : 16;
        for (int i = 0; i < k; i++)
            if (loom_client_call_send(c, "t", "shared", "append", 6, NULL, &corr[i]) != 0)
                corr[i] = 0;
        for (int i = 0; i < k; i++)
            if (corr[i] && loom_client_wait(c, corr[i], NULL) == 0)
                h->ok++;
    }
    loom_client_close(c);
    return NULL;
}

Test(machine, concurrent_calls_to_one_machine_never_interleave)
{
    e2e t;
    e2e_start(&t, 5000, NULL, "limits: {max_queued_calls_per_machine: 1000}\n");
    cr_assert_eq(e2e_start_machine(&t, "shared", NULL), 0);
    enum { THREADS = 4, CALLS = 100 };
    pthread_t th[THREADS];
    hammer hs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        hs[i] = (hammer){loom_harness_loomd_addr(t.h), CALLS, 0};
        pthread_create(&th[i], NULL, hammer_main, &hs[i]);
    }
    int ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += hs[i].ok;
    }
    cr_assert_eq(ok, THREADS * CALLS);
    cr_assert_eq(e2e_log_count(&t, "OVERLAP"), 0);
    cr_assert_eq(e2e_log_count(&t, "MISMATCH"), 0);
    loom_client_range fwd = {.limit = 0, .backward = false};
    loom_client_req req = {.range = &fwd};
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "shared", &req, &r), 0);
    cr_assert_eq(r.machine->last_event_id, 1 + THREADS * CALLS);
    cr_assert_eq(r.machine->n_history, 1 + THREADS * CALLS);
    for (size_t i = 0; i < r.machine->n_history; i++)
        cr_assert_eq(r.machine->history[i]->id, i + 1);
    loom_client_result_free(&r);
    e2e_stop(&t);
}

Test(machine, full_queue_is_resource_exhausted)
{
    e2e t;
    e2e_start(&t, 5000, NULL, "limits: {max_queued_calls_per_machine: 2}\n");
    cr_assert_eq(e2e_start_machine(&t, "busy", NULL), 0);
    uint64_t corr[10];
    for (int i = 0; i < 10; i++)
        cr_assert_eq(loom_client_call_send(t.c, "t", "busy", "sleep:300", 9, NULL, &corr[i]), 0);
    int ok = 0, exhausted = 0;
    for (int i = 0; i < 10; i++) {
        int rc = loom_client_wait(t.c, corr[i], NULL);
        ok += rc == 0;
        exhausted += rc == LOOM_ERESOURCE_EXHAUSTED;
    }
    /* one running + two queued */
    cr_assert_eq(ok, 3, "ok %d", ok);
    cr_assert_eq(exhausted, 7);
    e2e_stop(&t);
}

Test(machine, global_limit_of_steps_in_flight_holds)
{
    e2e t;
    e2e_start(&t, 5000, NULL, "limits: {max_steps_in_flight: 2}\n");
    enum { N = 8 };
    char id[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "g%d", i);
        cr_assert_eq(e2e_start_machine(&t, id[i], NULL), 0);
    }
    uint64_t corr[N];
    int64_t t0 = e2e_now_ms();
    for (int i = 0; i < N; i++)
        cr_assert_eq(loom_client_call_send(t.c, "t", id[i], "sleep:200", 9, NULL, &corr[i]), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(loom_client_wait(t.c, corr[i], NULL), 0, "%s", loom_client_errmsg(t.c));
    int64_t took = e2e_now_ms() - t0;
    /* 8 steps of 200 ms, 2 at a time: at least 4 rounds */
    printf("8 x 200 ms steps with 2 in flight: %lld ms\n", (long long)took);
    cr_assert_geq(took, 780);
    cr_assert_eq(e2e_log_count(&t, "OVERLAP"), 0);
    e2e_stop(&t);
}

Test(machine, remove_action_deletes_the_machine)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "gone", NULL), 0);
    loom_client_result r = {0};
    cr_assert_eq(e2e_call(&t, "gone", "remove", &r), 0, "%s", loom_client_errmsg(t.c));
    cr_assert_eq(r.last_event_id, 2);
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_get_machine(t.c, "t", "gone", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    /* the id is free again */
    cr_assert_eq(e2e_start_machine(&t, "gone", NULL), 0);
    e2e_stop(&t);
}
