/* What is due for a machine when it is woken: a timeout, a retry, the next
 * notification, or nothing (then maybe a later wake to keep). Pure: the
 * machine's stored state and the clock are arguments, so the rules are
 * unit-tested without a store or a loop (tests/engine/core/test_wake.c).
 *
 * Rules, in order:
 *   FAILED or absent                      → nothing (Repair/SimpleRepair revive)
 *   RETRYING a notification               → that notification once its next
 *                                           attempt is due (it holds back
 *                                           later notifications and the timer)
 *   timer deadline passed                 → TIMEOUT (attempt n+1 when the
 *                                           timeout itself is being retried)
 *   WORKING with a pending notification   → the first one, attempt 1
 *   otherwise                             → nothing; a future timer is
 *                                           handed back to keep in the heap */
#include "engine_int.h"

loom__due loom__wake_decide(const loom__wake_input *in)
{
    loom__due d = {0};
    if (!in->exists || in->status == LOOM_STATUS_FAILED)
        return d;
    bool retrying = in->status == LOOM_STATUS_RETRYING;
    uint32_t rkind = retrying ? in->retry.step_kind : 0;
    if (rkind == LOOM_RETRY_KIND_NOTIFICATION) {
        if (in->retry.next_attempt_ms > in->now_ms) {
            d.note_ms = in->retry.next_attempt_ms;
            return d;
        }
        d.kind = LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION;
        d.notification_id = in->retry.ref;
        d.attempt = in->retry.attempt + 1;
        return d;
    }
    if (in->timer_deadline_ms != 0 && in->timer_deadline_ms <= in->now_ms) {
        d.kind = LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT;
        d.attempt = rkind == LOOM_RETRY_KIND_TIMEOUT ? in->retry.attempt + 1 : 1;
        return d;
    }
    if (!retrying && in->first_notification_id != 0) {
        d.kind = LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION;
        d.notification_id = in->first_notification_id;
        d.attempt = 1;
        return d;
    }
    /* a future timer kept through a failure is not in the heap yet */
    if (in->timer_deadline_ms > in->now_ms)
        d.note_ms = in->timer_deadline_ms;
    return d;
}
