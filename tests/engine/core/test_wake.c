/* The wake rules (engine/core/src/wake.c): what a woken machine runs,
 * decided from its stored state and a fake clock. */
#include <criterion/criterion.h>

#include "engine_int.h"

#define NOW 1000000u

static loom__wake_input working(void)
{
    loom__wake_input in = {.exists = true, .status = LOOM_STATUS_WORKING, .now_ms = NOW};
    return in;
}

Test(wake, nothing_due_keeps_a_future_timer)
{
    loom__wake_input in = working();
    in.timer_deadline_ms = NOW + 500;
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
    cr_assert_eq(d.note_ms, NOW + 500);
    in.timer_deadline_ms = 0;
    d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
    cr_assert_eq(d.note_ms, 0);
}

Test(wake, due_timer_fires_first_attempt)
{
    loom__wake_input in = working();
    in.timer_deadline_ms = NOW; /* exactly due */
    in.first_notification_id = 9;
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT);
    cr_assert_eq(d.attempt, 1);
}

Test(wake, pending_notification_when_no_timer_is_due)
{
    loom__wake_input in = working();
    in.timer_deadline_ms = NOW + 1;
    in.first_notification_id = 42;
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION);
    cr_assert_eq(d.notification_id, 42);
    cr_assert_eq(d.attempt, 1);
}

Test(wake, retried_timeout_counts_attempts)
{
    loom__wake_input in = working();
    in.status = LOOM_STATUS_RETRYING;
    in.retry = (loom_retry){.attempt = 3,
                            .step_kind = LOOM_RETRY_KIND_TIMEOUT,
                            .first_failure_ms = NOW - 900,
                            .next_attempt_ms = NOW - 1};
    in.timer_deadline_ms = NOW - 1; /* the retry rides on the timer */
    in.first_notification_id = 5;   /* waits: the machine is retrying */
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT);
    cr_assert_eq(d.attempt, 4);
    /* not yet due: nothing, and no notification jumps the queue */
    in.timer_deadline_ms = NOW + 300;
    d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
    cr_assert_eq(d.note_ms, NOW + 300);
}

Test(wake, retried_notification_holds_back_the_timer)
{
    loom__wake_input in = working();
    in.status = LOOM_STATUS_RETRYING;
    in.retry = (loom_retry){.attempt = 2,
                            .step_kind = LOOM_RETRY_KIND_NOTIFICATION,
                            .ref = 17,
                            .first_failure_ms = NOW - 100,
                            .next_attempt_ms = NOW + 200};
    in.timer_deadline_ms = NOW - 50; /* due, but waits for the notification */
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
    cr_assert_eq(d.note_ms, NOW + 200);
    in.now_ms = NOW + 200;
    d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION);
    cr_assert_eq(d.notification_id, 17);
    cr_assert_eq(d.attempt, 3);
}

Test(wake, failed_or_absent_machines_run_nothing)
{
    loom__wake_input in = working();
    in.status = LOOM_STATUS_FAILED;
    in.timer_deadline_ms = NOW - 10;
    in.first_notification_id = 3;
    loom__due d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
    cr_assert_eq(d.note_ms, 0);
    in = working();
    in.exists = false;
    in.timer_deadline_ms = NOW - 10;
    d = loom__wake_decide(&in);
    cr_assert_eq(d.kind, LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED);
}
