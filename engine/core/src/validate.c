/* Checks a processor's reply before anything of it is stored: a reply that
 * breaks a limit or asks for nonsense fails its step (BAD_REPLY). */
#include "engine_int.h"

static int bad(const char *what)
{
    return loom_seterr(LOOM_EBAD_REPLY, "%s", what);
}

int loom__range_check(const Loom__V1__HistoryRange *pb)
{
    if (!pb)
        return 0;
    if (pb->direction != LOOM__V1__DIRECTION__DIRECTION_FORWARD &&
        pb->direction != LOOM__V1__DIRECTION__DIRECTION_BACKWARD)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "range direction %d unknown",
                           (int)pb->direction);
    return 0;
}

void loom__range_from_pb(const Loom__V1__HistoryRange *pb, const loom_range_config *dflt,
                         loom_range *out)
{
    out->after = 0;
    out->has_after = false;
    out->limit = dflt->limit;
    out->direction = dflt->backward ? LOOM_DIRECTION_BACKWARD : LOOM_DIRECTION_FORWARD;
    if (pb) {
        out->after = pb->after;
        out->has_after = pb->has_after;
        out->limit = pb->limit;
        out->direction = pb->direction == LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                             ? LOOM_DIRECTION_BACKWARD
                             : LOOM_DIRECTION_FORWARD;
    }
    if (out->limit == 0 || out->limit > LOOM_RANGE_MAX)
        out->limit = LOOM_RANGE_MAX;
}

static int check_timer(const Loom__V1__SetTimer *t, int64_t now_ms)
{
    switch (t->when_case) {
    case LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS:
        if ((int64_t)t->timeout_ms > LOOM_TIMER_MAX_AHEAD_MS || t->timeout_ms > INT64_MAX / 2)
            return bad("set_timer.timeout_ms is more than ten years");
        break;
    case LOOM__V1__SET_TIMER__WHEN_DEADLINE_MS:
        if (t->deadline_ms <= 0)
            return bad("set_timer.deadline_ms must be a positive unix time in ms");
        if (t->deadline_ms > now_ms + LOOM_TIMER_MAX_AHEAD_MS)
            return bad("set_timer.deadline_ms is more than ten years ahead");
        break;
    default:
        return bad("set_timer has neither timeout_ms nor deadline_ms");
    }
    if (t->range && loom__range_check(t->range))
        return bad("set_timer.range has an unknown direction");
    return 0;
}

int loom__validate_reply(const Loom__V1__ProcessReply *r, const loom_limits *l, int64_t now_ms,
                         bool is_init)
{
    (void)is_init;
    if (r->outcome_case == LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE) {
        if (!r->failure)
            return bad("failure without body");
        return 0;
    }
    if (r->outcome_case != LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT || !r->result)
        return bad("reply has neither result nor failure");
    const Loom__V1__ProcessResult *res = r->result;
    if (res->n_events > l->max_events_per_step || res->n_events > LOOM_STORE_MAX_STEP_EVENTS)
        return loom_seterr(LOOM_EBAD_REPLY, "%zu events in one step (limit %u)", res->n_events,
                           l->max_events_per_step);
    size_t total = 0;
    for (size_t i = 0; i < res->n_events; i++) {
        if (!res->events[i])
            return bad("null event");
        size_t n = res->events[i]->data.len;
        if (n > l->max_event_bytes)
            return loom_seterr(LOOM_EBAD_REPLY, "event %zu is %zu bytes (limit %u)", i, n,
                               l->max_event_bytes);
        total += n;
    }
    if (res->set_aux_state && res->aux_state.len > l->max_aux_state_bytes)
        return loom_seterr(LOOM_EBAD_REPLY, "aux_state is %zu bytes (limit %u)", res->aux_state.len,
                           l->max_aux_state_bytes);
    total += res->aux_state.len + res->response.len;
    if (total > LOOM_STORE_MAX_BATCH_BYTES / 4)
        return bad("step result too large");
    if (res->response.len > l->max_frame_bytes / 2)
        return bad("response too large");
    const Loom__V1__Action *a = res->action;
    if (a && a->timer_case == LOOM__V1__ACTION__TIMER_SET_TIMER) {
        if (!a->set_timer)
            return bad("set_timer without body");
        if (a->remove)
            return bad("action both sets a timer and removes the machine");
        int rc = check_timer(a->set_timer, now_ms);
        if (rc)
            return rc;
    }
    return 0;
}
