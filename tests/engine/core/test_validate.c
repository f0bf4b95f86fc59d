/* Processor reply validation (engine/core/src/validate.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "engine_int.h"

static loom_limits limits(void)
{
    loom_config c;
    loom_config_init(&c);
    return c.limits;
}

static Loom__V1__ProcessReply result_reply(Loom__V1__ProcessResult *res)
{
    Loom__V1__ProcessReply r;
    loom__v1__process_reply__init(&r);
    loom__v1__process_result__init(res);
    r.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
    r.result = res;
    return r;
}

Test(validate, empty_result_and_failure_are_fine)
{
    loom_limits l = limits();
    Loom__V1__ProcessResult res;
    Loom__V1__ProcessReply r = result_reply(&res);
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), 0);
    Loom__V1__Failure f;
    loom__v1__failure__init(&f);
    r.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE;
    r.failure = &f;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), 0);
}

Test(validate, no_outcome_is_bad)
{
    loom_limits l = limits();
    Loom__V1__ProcessReply r;
    loom__v1__process_reply__init(&r);
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), LOOM_EBAD_REPLY);
}

Test(validate, limits_on_events_and_aux_state)
{
    loom_limits l = limits();
    l.max_events_per_step = 2;
    l.max_event_bytes = 10;
    l.max_aux_state_bytes = 5;
    Loom__V1__ProcessResult res;
    Loom__V1__ProcessReply r = result_reply(&res);
    Loom__V1__NewEvent ev[3], *evp[3];
    for (int i = 0; i < 3; i++) {
        loom__v1__new_event__init(&ev[i]);
        ev[i].data.data = (uint8_t *)"0123456789AB";
        ev[i].data.len = 10;
        evp[i] = &ev[i];
    }
    res.events = evp;
    res.n_events = 2;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), 0);
    res.n_events = 3;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), LOOM_EBAD_REPLY);
    res.n_events = 1;
    ev[0].data.len = 11;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), LOOM_EBAD_REPLY);
    ev[0].data.len = 1;
    res.set_aux_state = true;
    res.aux_state.data = (uint8_t *)"123456";
    res.aux_state.len = 6;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), LOOM_EBAD_REPLY);
    /* an oversized aux_state that is not set is not stored: fine */
    res.set_aux_state = false;
    cr_assert_eq(loom__validate_reply(&r, &l, 1000, false), 0);
}

Test(validate, timers_must_be_sane)
{
    loom_limits l = limits();
    Loom__V1__ProcessResult res;
    Loom__V1__ProcessReply r = result_reply(&res);
    Loom__V1__Action a;
    Loom__V1__SetTimer t;
    loom__v1__action__init(&a);
    loom__v1__set_timer__init(&t);
    res.action = &a;
    a.timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
    a.set_timer = &t;
    int64_t now = 1700000000000;
    t.when_case = LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS;
    t.timeout_ms = 1000;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), 0);
    t.timeout_ms = UINT64_MAX;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), LOOM_EBAD_REPLY);
    t.when_case = LOOM__V1__SET_TIMER__WHEN_DEADLINE_MS;
    t.deadline_ms = -5;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), LOOM_EBAD_REPLY);
    t.deadline_ms = now + 20ll * 366 * 86400 * 1000;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), LOOM_EBAD_REPLY);
    t.deadline_ms = now - 1000; /* in the past: fires at once, fine */
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), 0);
    a.remove = true;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), LOOM_EBAD_REPLY);
    a.remove = false;
    t.when_case = LOOM__V1__SET_TIMER__WHEN__NOT_SET;
    cr_assert_eq(loom__validate_reply(&r, &l, now, false), LOOM_EBAD_REPLY);
}

Test(validate, ranges)
{
    loom_range_config d = {50, true};
    loom_range r;
    loom__range_from_pb(NULL, &d, &r);
    cr_assert_eq(r.limit, 50);
    cr_assert_eq(r.direction, LOOM_DIRECTION_BACKWARD);
    Loom__V1__HistoryRange pb;
    loom__v1__history_range__init(&pb);
    pb.after = 7;
    pb.has_after = true;
    pb.limit = 0;
    loom__range_from_pb(&pb, &d, &r);
    cr_assert_eq(r.limit, LOOM_RANGE_MAX);
    cr_assert_eq(r.after, 7);
    cr_assert(r.has_after);
    cr_assert_eq(r.direction, LOOM_DIRECTION_FORWARD);
    pb.direction = (Loom__V1__Direction)9;
    cr_assert_eq(loom__range_check(&pb), LOOM_EINVALID_ARGUMENT);
}
