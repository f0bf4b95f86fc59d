/* The SDK end to end: a processor and the test driver on one loop, over
 * TCP and Unix sockets. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"
#include "loom/processor.h"

#define WAIT_MS 10000
#define MAX_HELD 16

typedef struct fixture {
    drv_host h;                    /* its driver stays unused: tests connect their own */
    loom_proc_req *held[MAX_HELD]; /* requests whose handler finishes later */
    size_t n_held;
    int shutdown_calls;
} fixture;

static fixture fx;

static void remove_scratch(void)
{
    drv_host_remove_scratch(&fx.h);
}

TestSuite(processor, .fini = remove_scratch);

/* args "hold": keep the request for the test to finish; anything else:
 * answer at once with an event per history event + 1, aux_state = args,
 * a timer and, for calls, a response. */
static void on_any(loom_proc_req *r, void *user)
{
    fixture *f = user;
    loom_proc_bytes args = loom_proc_req_args(r);
    if (args.len == 4 && memcmp(args.data, "hold", 4) == 0) {
        cr_assert_lt(f->n_held, MAX_HELD);
        f->held[f->n_held++] = r;
        return;
    }
    loom_proc_history it;
    loom_proc_event ev;
    loom_proc_req_history(r, &it);
    uint64_t expect_id = 1;
    while (loom_proc_history_next(&it, &ev)) {
        cr_assert_eq(ev.id, expect_id++);
        cr_assert_eq(loom_proc_append_event(r, ev.format_version + 1, ev.data.data, ev.data.len),
                     0);
    }
    cr_assert_eq(loom_proc_append_event(r, 7, "new", 3), 0);
    cr_assert_eq(loom_proc_set_aux_state(r, args.data, args.len), 0);
    loom_proc_range range = {.limit = 10, .backward = true};
    cr_assert_eq(loom_proc_set_timer_timeout(r, 1500, &range), 0);
    if (loom_proc_req_kind(r) == LOOM_PROC_CALL) {
        char resp[160];
        int n = snprintf(resp, sizeof resp, "%s/%s/%u", loom_proc_req_ns(r), loom_proc_req_id(r),
                         loom_proc_req_attempt(r));
        cr_assert_eq(loom_proc_respond(r, resp, (size_t)n), 0);
    } else {
        cr_assert_eq(loom_proc_respond(r, "x", 1), LOOM_EINVALID_ARGUMENT);
    }
    loom_proc_done(r);
}

static void start_processor(const loom_proc_options *o, bool unix_socket)
{
    memset(&fx, 0, sizeof fx);
    drv_host_open(&fx.h, o);
    cr_assert_eq(loom_proc_on(fx.h.p, LOOM_PROC_CALL, on_any, &fx), 0);
    cr_assert_eq(loom_proc_on(fx.h.p, LOOM_PROC_INIT, on_any, &fx), 0);
    cr_assert_eq(loom_proc_on(fx.h.p, LOOM_PROC_TIMEOUT, on_any, &fx), 0);
    if (unix_socket) {
        snprintf(fx.h.addr, sizeof fx.h.addr, "unix:%s/proc.sock", fx.h.dir);
        cr_assert_eq(loom_proc_listen(fx.h.p, fx.h.addr), 0, "%s", loom_errdetail());
    } else {
        cr_assert_eq(loom_proc_listen(fx.h.p, "tcp:127.0.0.1:0"), 0, "%s", loom_errdetail());
        cr_assert_gt(loom_proc_port(fx.h.p), 0);
        snprintf(fx.h.addr, sizeof fx.h.addr, "tcp:127.0.0.1:%d", loom_proc_port(fx.h.p));
    }
}

static void on_shutdown(loom_proc *p, void *user)
{
    (void)p;
    ((fixture *)user)->shutdown_calls++;
}

static void stop_processor(void)
{
    loom_proc_shutdown(fx.h.p, 0, on_shutdown, &fx);
    for (int i = 0; i < 200 && fx.shutdown_calls == 0; i++)
        drv_run_for(&fx.h.loop, 10);
    cr_assert_eq(fx.shutdown_calls, 1);
    for (size_t i = 0; i < fx.n_held; i++)
        loom_proc_done(fx.held[i]);
    loom_proc_free(fx.h.p);
    uv_run(&fx.h.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&fx.h.loop), 0);
    drv_scratch_remove(fx.h.dir);
}

static drv *connect_driver(void)
{
    drv *d = drv_connect(&fx.h.loop, fx.h.addr, WAIT_MS);
    cr_assert_not_null(d);
    return d;
}

/* The start of most tests: a driver and machine ns/m. */
static drv *connect_with_machine(drv_machine *m)
{
    drv_machine_init(m, "ns", "m");
    return connect_driver();
}

/* Runs the loop until n requests are held by on_any. */
static void wait_held(size_t n)
{
    for (int i = 0; i < 500 && fx.n_held < n; i++)
        drv_run_for(&fx.h.loop, 10);
    cr_assert_geq(fx.n_held, n, "only %zu of %zu requests reached the handler", fx.n_held, n);
}

/* The end of most tests: the machine, the driver, then the processor. */
static void finish(drv *d, drv_machine *m)
{
    drv_machine_free(m);
    drv_free(d);
    stop_processor();
}

static void check_echo_round_trip(void)
{
    drv *d = connect_driver();
    drv_machine m;
    drv_machine_init(&m, "invoice", "m-1");
    loom_envelope *env = drv_step(d, &m, LOOM_PROC_INIT, "a1", 2, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    m.attempt = 3;
    env = drv_step(d, &m, LOOM_PROC_CALL, "a2", 2, WAIT_MS);
    const Loom__V1__ProcessResult *res = drv_result(env);
    cr_assert_not_null(res);
    /* the call saw event 1 and echoed it with format_version + 1, then one new */
    cr_assert_eq(res->n_events, 2);
    cr_assert_eq(res->events[0]->format_version, 8);
    cr_assert_eq(res->events[0]->data.len, 3);
    cr_assert_eq(memcmp(res->events[0]->data.data, "new", 3), 0);
    cr_assert(res->set_aux_state);
    cr_assert_eq(res->aux_state.len, 2);
    cr_assert_eq(memcmp(res->aux_state.data, "a2", 2), 0);
    cr_assert_not_null(res->action);
    cr_assert_eq(res->action->timer_case, LOOM__V1__ACTION__TIMER_SET_TIMER);
    cr_assert_eq(res->action->set_timer->when_case, LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS);
    cr_assert_eq(res->action->set_timer->timeout_ms, 1500);
    cr_assert_not_null(res->action->set_timer->range);
    cr_assert_eq(res->action->set_timer->range->limit, 10);
    cr_assert_eq(res->action->set_timer->range->direction, LOOM__V1__DIRECTION__DIRECTION_BACKWARD);
    cr_assert_eq(res->response.len, strlen("invoice/m-1/3"));
    cr_assert_eq(memcmp(res->response.data, "invoice/m-1/3", res->response.len), 0);
    cr_assert_eq(m.n_events, 3);
    loom_envelope_free(env);
    drv_machine_free(&m);
    drv_free(d);
}

Test(processor, round_trip_over_tcp)
{
    start_processor(NULL, false);
    check_echo_round_trip();
    stop_processor();
}

Test(processor, round_trip_over_unix_socket)
{
    start_processor(NULL, true);
    check_echo_round_trip();
    stop_processor();
}

/* Handlers finishing later answer in the order they finish. */
Test(processor, replies_go_out_of_order_as_handlers_finish)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t cid[3];
    for (int i = 0; i < 3; i++)
        cid[i] = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    wait_held(3);
    cr_assert_eq(fx.n_held, 3);
    cr_assert_eq(loom_proc_in_flight(fx.h.p), 3);

    /* finish the last first: its reply arrives while the others wait */
    loom_proc_respond(fx.held[2], "third", 5);
    loom_proc_done(fx.held[2]);
    loom_envelope *env = drv_wait(d, cid[2], WAIT_MS);
    cr_assert_not_null(drv_result(env));
    cr_assert_eq(memcmp(drv_result(env)->response.data, "third", 5), 0);
    loom_envelope_free(env);
    cr_assert_null(drv_wait(d, cid[0], 100));

    loom_proc_fail(fx.held[0], true, "remote said %d", 503);
    loom_proc_done(fx.held[0]);
    loom_proc_done(fx.held[1]);
    fx.n_held = 0;
    env = drv_wait(d, cid[0], WAIT_MS);
    cr_assert_not_null(drv_failure(env));
    cr_assert(drv_failure(env)->retryable);
    cr_assert_str_eq(drv_failure(env)->reason, "remote said 503");
    loom_envelope_free(env);
    env = drv_wait(d, cid[1], WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    cr_assert_eq(loom_proc_in_flight(fx.h.p), 0);
    finish(d, &m);
}

/* A reason longer than the SDK keeps is cut on a character boundary, so
 * the failure still goes out (a split character would make it unsendable). */
Test(processor, long_failure_reason_is_cut_on_a_character)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t cid = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    wait_held(1);
    char reason[2048]; /* 2-byte characters: a cut at an odd length splits one */
    for (size_t i = 0; i + 2 < sizeof reason; i += 2)
        memcpy(reason + i, "\xc3\xa9", 2);
    reason[sizeof reason - 1] = '\0';
    loom_proc_fail(fx.held[0], false, "%s", reason);
    loom_proc_done(fx.held[0]);
    fx.n_held = 0;
    loom_envelope *env = drv_wait(d, cid, WAIT_MS);
    cr_assert_not_null(drv_failure(env), "the failure must reach the engine");
    const char *got = drv_failure(env)->reason;
    size_t len = strlen(got);
    cr_assert_gt(len, 1000);
    cr_assert(loom_utf8_valid(got, len));
    cr_assert_eq(memcmp(got, reason, len), 0);
    loom_envelope_free(env);
    finish(d, &m);
}

Test(processor, over_the_in_flight_limit_requests_are_busy)
{
    loom_proc_options o;
    loom_proc_options_init(&o);
    o.max_in_flight = 2;
    start_processor(&o, false);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t a = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    uint64_t b = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    uint64_t c = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    loom_envelope *env = drv_wait(d, c, WAIT_MS);
    const Loom__V1__Failure *fail = drv_failure(env);
    cr_assert_not_null(fail);
    cr_assert(fail->retryable);
    cr_assert_str_eq(fail->reason, "processor busy");
    loom_envelope_free(env);
    cr_assert_eq(fx.n_held, 2);
    loom_proc_done(fx.held[0]);
    loom_proc_done(fx.held[1]);
    fx.n_held = 0;
    env = drv_wait(d, a, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    env = drv_wait(d, b, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    /* room again */
    env = drv_step(d, &m, LOOM_PROC_CALL, "go", 2, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    finish(d, &m);
}

/* The connection goes away while handlers run: their completion is
 * dropped, nothing touches the freed connection (ASan watches). */
Test(processor, completion_after_the_connection_closed_is_dropped)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    drv_send(d, &m, LOOM_PROC_TIMEOUT, "hold", 4);
    wait_held(2);
    cr_assert_eq(fx.n_held, 2);
    drv_free(d);
    for (int i = 0; i < 500 && !loom_proc_req_abandoned(fx.held[0]); i++)
        drv_run_for(&fx.h.loop, 10);
    cr_assert(loom_proc_req_abandoned(fx.held[0]));
    cr_assert(loom_proc_req_abandoned(fx.held[1]));
    cr_assert_eq(loom_proc_append_event(fx.held[0], 1, "late", 4), 0);
    loom_proc_done(fx.held[0]);
    loom_proc_done(fx.held[1]);
    fx.n_held = 0;
    cr_assert_eq(loom_proc_in_flight(fx.h.p), 0);
    /* the processor serves the next connection */
    d = connect_driver();
    loom_envelope *env = drv_step(d, &m, LOOM_PROC_CALL, "go", 2, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    finish(d, &m);
}

static void expect_closed_for(const loom_envelope *bad)
{
    drv *d = connect_driver();
    cr_assert_eq(drv_send_env(d, bad), 0);
    loom_envelope *env = drv_wait(d, bad->correlation_id, WAIT_MS);
    cr_assert_not_null(env, "no error reply before the close");
    cr_assert_eq(env->body_case, LOOM__V1__ENVELOPE__BODY_ERROR);
    cr_assert_eq(env->error->code, loom_err_wire(LOOM_EPROTOCOL));
    cr_assert(strlen(env->error->message) > 0);
    loom_envelope_free(env);
    cr_assert(drv_wait_closed(d, WAIT_MS), "processor kept a connection that sent garbage");
    drv_free(d);
}

Test(processor, malformed_requests_close_the_connection_only)
{
    start_processor(NULL, false);
    Loom__V1__StartRequest start = LOOM__V1__START_REQUEST__INIT;
    loom_envelope wrong_body = LOOM__V1__ENVELOPE__INIT;
    wrong_body.correlation_id = 11;
    wrong_body.body_case = LOOM__V1__ENVELOPE__BODY_START;
    wrong_body.start = &start;
    expect_closed_for(&wrong_body);

    Loom__V1__ProcessRequest no_machine = LOOM__V1__PROCESS_REQUEST__INIT;
    no_machine.kind = LOOM__V1__PROCESS_KIND__PROCESS_CALL;
    loom_envelope env_nm = LOOM__V1__ENVELOPE__INIT;
    env_nm.correlation_id = 12;
    env_nm.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
    env_nm.process = &no_machine;
    expect_closed_for(&env_nm);

    Loom__V1__Machine machine = LOOM__V1__MACHINE__INIT;
    Loom__V1__ProcessRequest bad_kind = LOOM__V1__PROCESS_REQUEST__INIT;
    bad_kind.kind = (Loom__V1__ProcessKind)77;
    bad_kind.machine = &machine;
    loom_envelope env_bk = LOOM__V1__ENVELOPE__INIT;
    env_bk.correlation_id = 13;
    env_bk.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
    env_bk.process = &bad_kind;
    expect_closed_for(&env_bk);

    cr_assert_eq(loom_proc_in_flight(fx.h.p), 0);
    check_echo_round_trip();
    stop_processor();
}

Test(processor, kind_without_handler_fails_for_good)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    loom_envelope *env = drv_step(d, &m, LOOM_PROC_REPAIR, "r", 1, WAIT_MS);
    const Loom__V1__Failure *fail = drv_failure(env);
    cr_assert_not_null(fail);
    cr_assert_not(fail->retryable);
    cr_assert(strstr(fail->reason, "repair") != NULL, "%s", fail->reason);
    loom_envelope_free(env);
    finish(d, &m);
}

static void on_repair_checks(loom_proc_req *r, void *user)
{
    (void)user;
    cr_assert_eq(loom_proc_respond(r, "ok", 2), 0);
    cr_assert_eq(loom_proc_remove(r), 0);
    cr_assert_eq(loom_proc_unset_timer(r), 0);
    cr_assert_eq(loom_proc_set_timer_deadline(r, -5, NULL), LOOM_EINVALID_ARGUMENT);
    loom_proc_bytes args = loom_proc_req_args(r);
    if (args.len == 6 && memcmp(args.data, "refuse", 6) == 0)
        cr_assert_eq(loom_proc_refuse_repair(r, "not today"), 0);
    loom_proc_done(r);
}

Test(processor, repair_is_answered_or_refused)
{
    start_processor(NULL, true);
    loom_proc_on(fx.h.p, LOOM_PROC_REPAIR, on_repair_checks, NULL);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    m.timer_deadline_ms = 123;
    loom_envelope *env = drv_step(d, &m, LOOM_PROC_REPAIR, "fix", 3, WAIT_MS);
    const Loom__V1__ProcessResult *res = drv_result(env);
    cr_assert_not_null(res);
    cr_assert_eq(res->response.len, 2);
    cr_assert(res->action->remove);
    cr_assert_eq(res->action->timer_case, LOOM__V1__ACTION__TIMER_UNSET_TIMER);
    cr_assert(m.removed);
    cr_assert_eq(m.timer_deadline_ms, 0);
    loom_envelope_free(env);
    env = drv_step(d, &m, LOOM_PROC_REPAIR, "refuse", 6, WAIT_MS);
    cr_assert_not_null(drv_failure(env));
    cr_assert_not(drv_failure(env)->retryable);
    cr_assert_str_eq(drv_failure(env)->reason, "not today");
    loom_envelope_free(env);
    finish(d, &m);
}

Test(processor, refusing_anything_but_a_repair_is_an_error)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t cid = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    wait_held(1);
    cr_assert_eq(loom_proc_refuse_repair(fx.held[0], "no"), LOOM_EINVALID_ARGUMENT);
    loom_proc_done(fx.held[0]);
    fx.n_held = 0;
    loom_envelope *env = drv_wait(d, cid, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    finish(d, &m);
}

Test(processor, limits_on_events_and_frame_size)
{
    loom_proc_options o;
    loom_proc_options_init(&o);
    o.max_events = 3;
    o.max_frame = 4096;
    start_processor(&o, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t cid = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    wait_held(1);
    loom_proc_req *r = fx.held[0];
    static uint8_t big[8000];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(loom_proc_append_event(r, 1, "e", 1), 0);
    cr_assert_eq(loom_proc_append_event(r, 1, "e", 1), LOOM_ERESOURCE_EXHAUSTED);
    cr_assert_eq(loom_proc_set_aux_state(r, big, sizeof big), 0);
    loom_proc_done(r);
    fx.n_held = 0;
    loom_envelope *env = drv_wait(d, cid, WAIT_MS);
    const Loom__V1__Failure *fail = drv_failure(env);
    cr_assert_not_null(fail);
    cr_assert_not(fail->retryable);
    cr_assert(strstr(fail->reason, "frame limit") != NULL, "%s", fail->reason);
    loom_envelope_free(env);
    finish(d, &m);
}

/* Shutdown: requests that finish within the grace period are answered;
 * the rest get "shutting down"; late completions are dropped. */
Test(processor, shutdown_drains_then_fails_what_is_left)
{
    start_processor(NULL, true);
    drv_machine m;
    drv *d = connect_with_machine(&m);
    uint64_t a = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    uint64_t b = drv_send(d, &m, LOOM_PROC_CALL, "hold", 4);
    wait_held(2);
    cr_assert_eq(fx.n_held, 2);
    loom_proc_shutdown(fx.h.p, 300, on_shutdown, &fx);
    cr_assert_eq(loom_proc_listen(fx.h.p, "tcp:127.0.0.1:0"), LOOM_ESHUTTING_DOWN);
    loom_proc_done(fx.held[0]); /* within grace */
    loom_envelope *env = drv_wait(d, a, WAIT_MS);
    cr_assert_not_null(drv_result(env));
    loom_envelope_free(env);
    env = drv_wait(d, b, WAIT_MS); /* after the grace period */
    cr_assert_not_null(drv_failure(env));
    cr_assert(drv_failure(env)->retryable);
    cr_assert_str_eq(drv_failure(env)->reason, "processor shutting down");
    loom_envelope_free(env);
    cr_assert(drv_wait_closed(d, WAIT_MS));
    for (int i = 0; i < 500 && fx.shutdown_calls == 0; i++)
        drv_run_for(&fx.h.loop, 10);
    cr_assert_eq(fx.shutdown_calls, 1);
    cr_assert(loom_proc_req_abandoned(fx.held[1]));
    loom_proc_done(fx.held[1]);
    fx.n_held = 0;
    drv_machine_free(&m);
    drv_free(d);
    loom_proc_free(fx.h.p);
    uv_run(&fx.h.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&fx.h.loop), 0);
    drv_scratch_remove(fx.h.dir);
}

Test(processor, bad_options_and_addresses_are_refused)
{
    loom_proc_options o;
    loom_proc_options_init(&o);
    o.max_in_flight = 0;
    loom_proc *p;
    cr_assert_eq(loom_proc_create(NULL, &o, &p), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_proc_create(NULL, NULL, &p), 0);
    cr_assert_eq(loom_proc_on(p, (loom_proc_kind)9, on_any, NULL), LOOM_EINVALID_ARGUMENT);
    cr_assert_neq(loom_proc_listen(p, "carrier-pigeon:1"), 0);
    cr_assert_neq(loom_proc_listen(p, "tcp:127.0.0.1:notaport"), 0);
    loom_proc_free(p);
}

/* The documented minimal example, as the spawned binary. */
Test(processor, minimal_example_binary_answers_and_stops_on_sigterm)
{
    drv_child c;
    drv_child_prepare(&c, "min.sock");
    char *argv[] = {LOOM_BIN_DIR "/loom-minimal-processor", c.addr, NULL};
    drv_child_start(&c, argv, WAIT_MS);
    drv *d = c.d;
    drv_machine m;
    drv_machine_init(&m, "ns", "min");
    drv_answer a = drv_step_mp(d, &m, LOOM_PROC_INIT, NULL);
    cr_assert_not_null(drv_result(a.env));
    drv_answer_free(&a);
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 0);
    a = drv_step_mp(d, &m, LOOM_PROC_CALL, &w);
    int64_t events = 0;
    cr_assert_eq(loom_mp_get_int(a.doc.root, "events", &events), 0);
    cr_assert_eq(events, 1);
    drv_answer_free(&a);
    cr_assert_eq(m.n_events, 1);
    drv_machine_free(&m);
    drv_child_finish(&c, drv_stop(c.pid, WAIT_MS));
}

/* Bytes that are no frame at all, through a raw socket: the processor
 * closes that connection (an oversized length before allocating) and
 * goes on serving. */
static void expect_raw_close(const uint8_t *bytes, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%.*s", (int)sizeof sa.sun_path - 1,
                     fx.h.addr + strlen("unix:"));
    cr_assert_lt(n, (int)sizeof sa.sun_path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
    bool eof = false;
    for (int i = 0; i < 1000 && !eof; i++) {
        drv_run_for(&fx.h.loop, 10);
        char buf[64];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        eof = n == 0 || (n < 0 && errno == ECONNRESET);
    }
    cr_assert(eof, "connection left open after garbage");
    close(fd);
}

Test(processor, garbage_bytes_close_the_connection_only)
{
    start_processor(NULL, true);
    static const uint8_t huge_length[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    static const uint8_t not_protobuf[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
    expect_raw_close(huge_length, sizeof huge_length);
    expect_raw_close(not_protobuf, sizeof not_protobuf);
    cr_assert_eq(loom_proc_in_flight(fx.h.p), 0);
    check_echo_round_trip();
    stop_processor();
}
