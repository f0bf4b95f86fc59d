/* Every client operation and every error code of the engine contract,
 * through loom_client against a real loomd and the test processor
 * (loom-e2e-processor; its args language is described in
 * e2e_processor.c). */
#include <criterion/criterion.h>

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"

#define WAIT_MS 15000 /* for things that happen "soon": loose on a loaded machine */

static void up(void)
{
    e2e_up(NULL);
}

TestSuite(ops, .init = up, .fini = e2e_down, .timeout = 120);

static uint64_t last_event(const char *id)
{
    loom_client_result res;
    int rc;
    const Loom__V1__Machine *m = e2e_get(id, &res, &rc);
    cr_assert_not_null(m, "get %s: %s %s", id, loom_err_name(rc), loom_client_errmsg(e2e_c));
    uint64_t last = m->last_event_id;
    loom_client_result_free(&res);
    return last;
}

/* ------------------------------------------------------------ start */

Test(ops, start_creates_machine_with_its_init_event)
{
    loom_client_result res;
    cr_assert_eq(loom_client_start(e2e_c, "test", "m1", "ok", 2, NULL, &res), 0, "%s",
                 loom_client_errmsg(e2e_c));
    cr_assert_eq(res.last_event_id, 1);
    loom_client_result_free(&res);
    const Loom__V1__Machine *m = e2e_get("m1", &res, NULL);
    cr_assert_not_null(m);
    cr_assert_str_eq(m->ns, "test");
    cr_assert_str_eq(m->id, "m1");
    cr_assert_eq(m->status, LOOM__V1__MACHINE_STATUS__STATUS_WORKING);
    cr_assert_eq(m->last_event_id, 1);
    cr_assert_eq(m->n_history, 1);
    cr_assert_eq(m->history[0]->id, 1);
    cr_assert_eq(m->history[0]->format_version, 1);
    cr_assert_gt(m->history[0]->created_at_ms, 0);
    char kind[32];
    e2e_event_kind(m->history[0], kind, sizeof kind);
    cr_assert_str_eq(kind, "init");
    loom_client_result_free(&res);
    e2e_pass();
}

Test(ops, start_twice_is_machine_already_exists)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    cr_assert_eq(e2e_start("m1", "ok"), LOOM_EMACHINE_ALREADY_EXISTS);
    cr_assert_eq(last_event("m1"), 1);
    e2e_pass();
}

Test(ops, start_refused_by_processor_is_processor_failed)
{
    cr_assert_eq(e2e_start("m1", "fail:no credit"), LOOM_EPROCESSOR_FAILED);
    cr_assert(strstr(loom_client_errmsg(e2e_c), "no credit") != NULL, "%s",
              loom_client_errmsg(e2e_c));
    loom_client_result res;
    int rc;
    cr_assert_null(e2e_get("m1", &res, &rc));
    cr_assert_eq(rc, LOOM_EMACHINE_NOT_FOUND);
    e2e_pass();
}

Test(ops, start_without_processor_is_processor_unavailable)
{
    int rc = loom_client_start(e2e_c, "dead", "m1", "ok", 2, NULL, NULL);
    cr_assert_eq(rc, LOOM_EPROCESSOR_UNAVAILABLE, "%s: %s", loom_err_name(rc),
                 loom_client_errmsg(e2e_c));
    e2e_pass();
}

Test(ops, start_with_slow_processor_is_timeout)
{
    int rc = e2e_start("m1", "sleep:5000");
    cr_assert_eq(rc, LOOM_ETIMEOUT, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    e2e_pass();
}

Test(ops, start_with_bad_reply_is_bad_reply)
{
    int rc = e2e_start("m1", "badreply");
    cr_assert_eq(rc, LOOM_EBAD_REPLY, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    rc = e2e_start("m2", "wrongbody");
    cr_assert_eq(rc, LOOM_EBAD_REPLY, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    e2e_pass();
}

/* ------------------------------------------------------------ unknowns */

Test(ops, unknown_namespace_for_every_operation)
{
    loom_client *c = e2e_c;
    const char *ns = "nosuch";
    Loom__V1__NamespaceConfig cfg = LOOM__V1__NAMESPACE_CONFIG__INIT;
    cfg.name = (char *)ns;
    char *eps[] = {e2e_proc_addr};
    cfg.processor_endpoints = eps;
    cfg.n_processor_endpoints = 1;
    int want = LOOM_ENAMESPACE_NOT_FOUND;
    cr_assert_eq(loom_client_start(c, ns, "m", NULL, 0, NULL, NULL), want);
    cr_assert_eq(loom_client_call(c, ns, "m", "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_notify(c, ns, "m", "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_repair(c, ns, "m", NULL, 0, NULL, NULL), want);
    cr_assert_eq(loom_client_simple_repair(c, ns, "m", NULL, NULL), want);
    cr_assert_eq(loom_client_get_machine(c, ns, "m", NULL, NULL), want);
    cr_assert_eq(loom_client_remove(c, ns, "m", NULL, NULL), want);
    cr_assert_eq(loom_client_list_machines(c, ns, 0, NULL, 0, NULL, NULL), want);
    cr_assert_eq(loom_client_update_namespace(c, &cfg, NULL, NULL), want);
    e2e_pass();
}

Test(ops, unknown_machine_for_every_operation)
{
    loom_client *c = e2e_c;
    int want = LOOM_EMACHINE_NOT_FOUND;
    cr_assert_eq(loom_client_call(c, "test", "ghost", "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_notify(c, "test", "ghost", "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_repair(c, "test", "ghost", NULL, 0, NULL, NULL), want);
    cr_assert_eq(loom_client_simple_repair(c, "test", "ghost", NULL, NULL), want);
    cr_assert_eq(loom_client_get_machine(c, "test", "ghost", NULL, NULL), want);
    cr_assert_eq(loom_client_remove(c, "test", "ghost", NULL, NULL), want);
    e2e_pass();
}

Test(ops, invalid_ids_are_invalid_argument)
{
    char long_id[300];
    memset(long_id, 'x', 256);
    long_id[256] = '\0';
    int want = LOOM_EINVALID_ARGUMENT;
    cr_assert_eq(e2e_start("", "ok"), want);
    cr_assert_eq(e2e_start(long_id, "ok"), want);
    cr_assert_eq(loom_client_get_machine(e2e_c, "test", "", NULL, NULL), want);
    cr_assert_eq(loom_client_call(e2e_c, "test", long_id, "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_notify(e2e_c, "test", "", "ok", 2, NULL, NULL), want);
    cr_assert_eq(loom_client_list_machines(e2e_c, "test", 99, NULL, 0, NULL, NULL), want);
    long_id[255] = '\0'; /* 255 bytes is the largest id */
    cr_assert_eq(e2e_start(long_id, "ok"), 0, "%s", loom_client_errmsg(e2e_c));
    e2e_pass();
}

/* ------------------------------------------------------------ call */

Test(ops, call_appends_events_and_returns_response)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    loom_client_result res;
    cr_assert_eq(e2e_call("m1", "events:3", &res), 0, "%s", loom_client_errmsg(e2e_c));
    cr_assert_eq(res.last_event_id, 4);
    cr_assert_eq(res.response_len, strlen("ok:call:1"));
    cr_assert_eq(memcmp(res.response, "ok:call:1", res.response_len), 0);
    loom_client_result_free(&res);
    cr_assert_eq(e2e_count_events("m1", "call"), 3);
    e2e_pass();
}

Test(ops, call_failures_leave_machine_unchanged)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    int rc = e2e_call("m1", "fail:not now", NULL);
    cr_assert_eq(rc, LOOM_EPROCESSOR_FAILED, "%s", loom_err_name(rc));
    cr_assert(strstr(loom_client_errmsg(e2e_c), "not now") != NULL);
    rc = e2e_call("m1", "badreply", NULL);
    cr_assert_eq(rc, LOOM_EBAD_REPLY, "%s", loom_err_name(rc));
    rc = e2e_call("m1", "sleep:5000", NULL);
    cr_assert_eq(rc, LOOM_ETIMEOUT, "%s", loom_err_name(rc));
    cr_assert_eq(last_event("m1"), 1);
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_WORKING, 0));
    cr_assert_eq(e2e_call("m1", "ok", NULL), 0, "%s", loom_client_errmsg(e2e_c));
    e2e_pass();
}

/* A failure reason longer than the processor's buffer, cut inside a
 * two-byte character: the processor drops the partial character rather
 * than sending a string that is not UTF-8. */
Test(ops, long_failure_reason_is_cut_on_a_character)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    char args[1400] = "fail:x";
    size_t len = strlen(args);
    while (len + 2 < sizeof args) {
        memcpy(args + len, "\xc3\xa9", 2);
        len += 2;
    }
    args[len] = '\0';
    int rc = e2e_call("m1", args, NULL);
    cr_assert_eq(rc, LOOM_EPROCESSOR_FAILED, "%s: %s", loom_err_name(rc),
                 loom_client_errmsg(e2e_c));
    cr_assert(strstr(loom_client_errmsg(e2e_c), "x\xc3\xa9\xc3\xa9") != NULL);
    cr_assert_eq(e2e_call("m1", "ok", NULL), 0, "%s", loom_client_errmsg(e2e_c));
    e2e_pass();
}

Test(ops, call_with_request_id_runs_once)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    loom_client_req req = {.request_id = "pay-42"};
    loom_client_result a, b;
    cr_assert_eq(loom_client_call(e2e_c, "test", "m1", "events:2", 8, &req, &a), 0);
    cr_assert_eq(loom_client_call(e2e_c, "test", "m1", "events:2", 8, &req, &b), 0);
    cr_assert_eq(a.last_event_id, 3);
    cr_assert_eq(b.last_event_id, 3);
    cr_assert_eq(a.response_len, b.response_len);
    cr_assert_eq(memcmp(a.response, b.response, a.response_len), 0);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    cr_assert_eq(last_event("m1"), 3);
    e2e_pass();
}

Test(ops, call_queue_over_limit_is_resource_exhausted)
{
    /* Another loomd, with room for two waiting calls per machine. */
    e2e_down();
    e2e_up("limits:\n  max_queued_calls_per_machine: 2");
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    enum { N = 8 };
    uint64_t corr[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(loom_client_call_send(e2e_c, "test", "m1", "sleep:300", 9, NULL, &corr[i]), 0);
    int ok = 0, exhausted = 0;
    for (int i = 0; i < N; i++) {
        int rc = loom_client_wait(e2e_c, corr[i], NULL);
        ok += rc == 0;
        exhausted += rc == LOOM_ERESOURCE_EXHAUSTED;
        cr_assert(rc == 0 || rc == LOOM_ERESOURCE_EXHAUSTED, "%s: %s", loom_err_name(rc),
                  loom_client_errmsg(e2e_c));
    }
    cr_assert_geq(ok, 1);
    cr_assert_geq(exhausted, 1);
    cr_assert_eq(last_event("m1"), 1 + (uint64_t)ok);
    e2e_pass();
}

Test(ops, pipelined_calls_on_one_machine_are_serialised)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    enum { N = 20 };
    uint64_t corr[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(loom_client_call_send(e2e_c, "test", "m1", "ok", 2, NULL, &corr[i]), 0);
    bool seen[N + 2] = {0};
    for (int i = 0; i < N; i++) {
        loom_client_result res;
        cr_assert_eq(loom_client_wait(e2e_c, corr[i], &res), 0, "%s", loom_client_errmsg(e2e_c));
        cr_assert_leq(res.last_event_id, N + 1);
        cr_assert_not(seen[res.last_event_id], "two calls got event %llu",
                      (unsigned long long)res.last_event_id);
        seen[res.last_event_id] = true;
        loom_client_result_free(&res);
    }
    cr_assert_eq(last_event("m1"), N + 1);
    e2e_pass();
}

/* ------------------------------------------------------------ history ranges */

Test(ops, get_machine_honours_history_range)
{
    cr_assert_eq(e2e_start("m1", "events:5"), 0);
    loom_client_range fwd = {.after = 2, .limit = 2, .has_after = true};
    loom_client_req req = {.range = &fwd};
    loom_client_result res;
    cr_assert_eq(loom_client_get_machine(e2e_c, "test", "m1", &req, &res), 0);
    cr_assert_eq(res.machine->n_history, 2);
    cr_assert_eq(res.machine->history[0]->id, 3);
    cr_assert_eq(res.machine->history[1]->id, 4);
    loom_client_result_free(&res);
    loom_client_range back = {.limit = 2, .backward = true};
    req.range = &back;
    cr_assert_eq(loom_client_get_machine(e2e_c, "test", "m1", &req, &res), 0);
    cr_assert_eq(res.machine->n_history, 2);
    cr_assert_eq(res.machine->history[0]->id, 5);
    cr_assert_eq(res.machine->history[1]->id, 4);
    cr_assert_eq(res.machine->last_event_id, 5);
    loom_client_result_free(&res);
    e2e_pass();
}

/* ------------------------------------------------------------ notify */

Test(ops, notify_is_delivered_later)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    loom_client_result res;
    cr_assert_eq(loom_client_notify(e2e_c, "test", "m1", "ok", 2, NULL, &res), 0);
    cr_assert_gt(res.notification_id, 0);
    loom_client_result_free(&res);
    cr_assert(e2e_wait_event("m1", "notification", WAIT_MS));
    e2e_pass();
}

/* ------------------------------------------------------------ timers */

Test(ops, timer_fires_a_timeout_signal)
{
    cr_assert_eq(e2e_start("m1", "timer:200:ok"), 0);
    loom_client_result res;
    const Loom__V1__Machine *m = e2e_get("m1", &res, NULL);
    cr_assert_not_null(m);
    cr_assert_gt(m->timer_deadline_ms, 0);
    loom_client_result_free(&res);
    cr_assert(e2e_wait_event("m1", "timeout", WAIT_MS));
    e2e_pass();
}

/* ------------------------------------------------------------ failure and repair */

static void make_failed(const char *id)
{
    cr_assert_eq(e2e_start(id, "timer:100:fail:broken by test"), 0);
    cr_assert(e2e_wait_status(id, LOOM__V1__MACHINE_STATUS__STATUS_FAILED, WAIT_MS),
              "machine never failed");
}

Test(ops, failed_machine_refuses_calls_and_keeps_reason)
{
    make_failed("m1");
    loom_client_result res;
    const Loom__V1__Machine *m = e2e_get("m1", &res, NULL);
    cr_assert(strstr(m->failure_reason, "broken by test") != NULL, "%s", m->failure_reason);
    loom_client_result_free(&res);
    int rc = e2e_call("m1", "ok", NULL);
    cr_assert_eq(rc, LOOM_EMACHINE_FAILED, "%s", loom_err_name(rc));
    e2e_pass();
}

Test(ops, repair_refused_then_accepted_and_notification_delivered_after)
{
    make_failed("m1");
    cr_assert_eq(loom_client_notify(e2e_c, "test", "m1", "ok", 2, NULL, NULL), 0,
                 "notify while failed: %s", loom_client_errmsg(e2e_c));
    int rc = loom_client_repair(e2e_c, "test", "m1", "fail:still broken", 17, NULL, NULL);
    cr_assert_eq(rc, LOOM_EREPAIR_FAILED, "%s", loom_err_name(rc));
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0));
    cr_assert_eq(e2e_count_events("m1", "notification"), 0);
    loom_client_result res;
    rc = loom_client_repair(e2e_c, "test", "m1", "ok", 2, NULL, &res);
    cr_assert_eq(rc, 0, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    cr_assert(memcmp(res.response, "ok:repair", 9) == 0);
    loom_client_result_free(&res);
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_WORKING, 0));
    cr_assert(e2e_wait_event("m1", "notification", WAIT_MS));
    cr_assert_eq(e2e_call("m1", "ok", NULL), 0);
    e2e_pass();
}

Test(ops, repair_of_working_machine_is_already_working)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    cr_assert_eq(loom_client_repair(e2e_c, "test", "m1", "ok", 2, NULL, NULL),
                 LOOM_EMACHINE_ALREADY_WORKING);
    cr_assert_eq(loom_client_simple_repair(e2e_c, "test", "m1", NULL, NULL),
                 LOOM_EMACHINE_ALREADY_WORKING);
    e2e_pass();
}

Test(ops, simple_repair_resumes_failed_machine)
{
    make_failed("m1");
    int rc = loom_client_simple_repair(e2e_c, "test", "m1", NULL, NULL);
    cr_assert_eq(rc, 0, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_WORKING, 0));
    e2e_pass();
}

Test(ops, retryable_failures_exhaust_into_failed)
{
    cr_assert_eq(e2e_start("m1", "timer:50:retry:flaky remote"), 0);
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, WAIT_MS));
    loom_client_result res;
    const Loom__V1__Machine *m = e2e_get("m1", &res, NULL);
    cr_assert(strstr(m->failure_reason, "flaky remote") != NULL, "%s", m->failure_reason);
    loom_client_result_free(&res);
    e2e_pass();
}

/* ------------------------------------------------------------ remove, list */

Test(ops, remove_deletes_and_id_can_be_reused)
{
    cr_assert_eq(e2e_start("m1", "events:3"), 0);
    cr_assert_eq(loom_client_remove(e2e_c, "test", "m1", NULL, NULL), 0);
    cr_assert_eq(loom_client_get_machine(e2e_c, "test", "m1", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(loom_client_remove(e2e_c, "test", "m1", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    cr_assert_eq(last_event("m1"), 1);
    e2e_pass();
}

Test(ops, processor_can_remove_its_machine)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    int rc = e2e_call("m1", "remove", NULL);
    cr_assert_eq(rc, 0, "%s", loom_client_errmsg(e2e_c));
    cr_assert_eq(loom_client_get_machine(e2e_c, "test", "m1", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    e2e_pass();
}

Test(ops, list_machines_pages_and_filters)
{
    const char *ids[] = {"a1", "a2", "a3", "a4", "a5"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(e2e_start(ids[i], "ok"), 0);
    make_failed("a6");
    char after[64] = "";
    int seen = 0;
    for (int page = 0; page < 10; page++) {
        loom_client_result res;
        cr_assert_eq(
            loom_client_list_machines(e2e_c, "test", 0, after[0] ? after : NULL, 2, NULL, &res), 0);
        cr_assert_leq(res.machines->n_machines, 2);
        for (size_t i = 0; i < res.machines->n_machines; i++) {
            char want[16];
            snprintf(want, sizeof want, "a%d", seen + 1);
            cr_assert_str_eq(res.machines->machines[i]->id, want);
            seen++;
        }
        snprintf(after, sizeof after, "%s", res.machines->next_after);
        loom_client_result_free(&res);
        if (after[0] == '\0')
            break;
    }
    cr_assert_eq(seen, 6);
    loom_client_result res;
    cr_assert_eq(loom_client_list_machines(e2e_c, "test", LOOM__V1__MACHINE_STATUS__STATUS_FAILED,
                                           NULL, 0, NULL, &res),
                 0);
    cr_assert_eq(res.machines->n_machines, 1);
    cr_assert_str_eq(res.machines->machines[0]->id, "a6");
    cr_assert(strstr(res.machines->machines[0]->failure_reason, "broken") != NULL);
    loom_client_result_free(&res);
    e2e_pass();
}

/* ------------------------------------------------------------ namespaces */

static void ns_config(Loom__V1__NamespaceConfig *cfg, char **eps, const char *name,
                      uint32_t step_timeout_ms)
{
    loom__v1__namespace_config__init(cfg);
    cfg->name = (char *)name;
    eps[0] = e2e_proc_addr;
    cfg->processor_endpoints = eps;
    cfg->n_processor_endpoints = 1;
    cfg->step_timeout_ms = step_timeout_ms;
}

static const Loom__V1__NamespaceConfig *find_ns(const loom_client_result *res, const char *name)
{
    for (size_t i = 0; i < res->namespaces->n_namespaces; i++)
        if (strcmp(res->namespaces->namespaces[i]->name, name) == 0)
            return res->namespaces->namespaces[i];
    return NULL;
}

Test(ops, namespaces_register_update_list_and_persist)
{
    char *eps[1];
    Loom__V1__NamespaceConfig cfg;
    ns_config(&cfg, eps, "extra", 2000);
    int rc = loom_client_register_namespace(e2e_c, &cfg, NULL, NULL);
    cr_assert_eq(rc, 0, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    cr_assert_eq(loom_client_register_namespace(e2e_c, &cfg, NULL, NULL),
                 LOOM_ENAMESPACE_ALREADY_EXISTS);
    cfg.step_timeout_ms = 3000;
    cr_assert_eq(loom_client_update_namespace(e2e_c, &cfg, NULL, NULL), 0, "%s",
                 loom_client_errmsg(e2e_c));
    cr_assert_eq(loom_client_start(e2e_c, "extra", "x1", "ok", 2, NULL, NULL), 0);
    cr_assert_eq(loom_harness_loomd_stop(e2e_h, NULL), 0);
    cr_assert_eq(loom_harness_loomd_restart(e2e_h), 0, "%s", loom_errdetail());
    e2e_reconnect();
    loom_client_result res;
    cr_assert_eq(loom_client_list_namespaces(e2e_c, NULL, &res), 0);
    const Loom__V1__NamespaceConfig *got = find_ns(&res, "extra");
    cr_assert_not_null(got, "registered namespace lost over a restart");
    cr_assert_eq(got->step_timeout_ms, 3000);
    cr_assert_eq(got->n_processor_endpoints, 1);
    cr_assert_str_eq(got->processor_endpoints[0], e2e_proc_addr);
    cr_assert_not_null(find_ns(&res, "test"));
    loom_client_result_free(&res);
    cr_assert_eq(loom_client_get_machine(e2e_c, "extra", "x1", NULL, NULL), 0);
    e2e_pass();
}

Test(ops, invalid_namespace_configs_are_invalid_argument)
{
    char *eps[1];
    Loom__V1__NamespaceConfig cfg;
    ns_config(&cfg, eps, "bad name!", 1000);
    cr_assert_eq(loom_client_register_namespace(e2e_c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    ns_config(&cfg, eps, "", 1000);
    cr_assert_eq(loom_client_register_namespace(e2e_c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    ns_config(&cfg, eps, "noproc", 1000);
    cfg.n_processor_endpoints = 0;
    cr_assert_eq(loom_client_register_namespace(e2e_c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    ns_config(&cfg, eps, "test", 1000);
    eps[0] = "carrier-pigeon:coop";
    cr_assert_eq(loom_client_update_namespace(e2e_c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    e2e_pass();
}

/* ------------------------------------------------------------ protocol, lifecycle */

/* A client that sends a reply body instead of a request. */
Test(ops, non_request_body_is_protocol_error)
{
    Loom__V1__StartReply sr = LOOM__V1__START_REPLY__INIT;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 9;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START_REPLY;
    env.start_reply = &sr;
    loom_envelope *reply = loom_harness_loomd_exchange(e2e_h, &env, 15000);
    cr_assert_not_null(reply, "%s", loom_errdetail());
    cr_assert_eq(reply->correlation_id, 9);
    cr_assert_eq(reply->body_case, LOOM__V1__ENVELOPE__BODY_ERROR);
    cr_assert_eq(reply->error->code, 17); /* PROTOCOL */
    loom_envelope_free(reply);
    e2e_pass();
}

Test(ops, history_survives_kill_and_restart)
{
    cr_assert_eq(e2e_start("m1", "events:3"), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(e2e_call("m1", "ok", NULL), 0);
    cr_assert_eq(loom_harness_loomd_kill(e2e_h), 0);
    cr_assert_eq(loom_harness_loomd_restart(e2e_h), 0, "%s", loom_errdetail());
    e2e_reconnect();
    loom_client_result res;
    const Loom__V1__Machine *m = e2e_get("m1", &res, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(m->last_event_id, 8);
    cr_assert_eq(m->n_history, 8);
    for (size_t i = 0; i < m->n_history; i++)
        cr_assert_eq(m->history[i]->id, i + 1);
    loom_client_result_free(&res);
    cr_assert_eq(e2e_call("m1", "ok", NULL), 0);
    cr_assert_eq(last_event("m1"), 9);
    e2e_pass();
}

Test(ops, sigterm_with_step_in_flight_exits_cleanly)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    uint64_t corr;
    cr_assert_eq(loom_client_call_send(e2e_c, "test", "m1", "sleep:1000", 10, NULL, &corr), 0);
    usleep(200 * 1000);
    cr_assert_eq(loom_harness_proc_signal(loom_harness_loomd(e2e_h), SIGTERM), 0);
    int rc = loom_client_wait(e2e_c, corr, NULL);
    cr_assert(rc == 0 || rc == LOOM_ESHUTTING_DOWN || rc == LOOM_ECLOSED, "%s", loom_err_name(rc));
    int status = -1;
    cr_assert_eq(loom_harness_proc_wait(loom_harness_loomd(e2e_h), 30000, &status), 0);
    cr_assert_eq(status, 0);
    cr_assert_eq(loom_harness_loomd_restart(e2e_h), 0);
    e2e_reconnect();
    uint64_t last = last_event("m1");
    cr_assert(last == 1 || last == 2, "last event %llu", (unsigned long long)last);
    if (rc == 0)
        cr_assert_eq(last, 2, "an acknowledged call was lost");
    e2e_pass();
}

Test(ops, processor_crash_is_processor_unavailable_then_recovers)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    int rc = e2e_call("m1", "exit", NULL);
    cr_assert(rc == LOOM_EPROCESSOR_UNAVAILABLE || rc == LOOM_ETIMEOUT, "%s: %s", loom_err_name(rc),
              loom_client_errmsg(e2e_c));
    loom_harness_proc *p = loom_harness_proc_find(e2e_h, "processor");
    cr_assert_eq(loom_harness_proc_wait(p, 10000, NULL), 0);
    cr_assert_eq(loom_harness_proc_restart(p), 0);
    rc = LOOM_EPROCESSOR_UNAVAILABLE;
    for (int i = 0; i < 100 && rc == LOOM_EPROCESSOR_UNAVAILABLE; i++) {
        rc = e2e_call("m1", "ok", NULL);
        if (rc != 0)
            usleep(100 * 1000);
    }
    cr_assert_eq(rc, 0, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    e2e_pass();
}

Test(ops, full_storage_is_storage_full_and_loomd_keeps_serving)
{
    e2e_down();
    e2e_up("storage:\n  map_size_initial_mb: 1\n  map_size_max_mb: 2");
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = e2e_call("m1", "big:500000", NULL);
    cr_assert_eq(rc, LOOM_ESTORAGE_FULL, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    uint64_t last = last_event("m1");
    cr_assert_geq(last, 1);
    e2e_pass();
}

Test(ops, start_with_request_id_is_answered_again)
{
    loom_client_req req = {.request_id = "create-m1"};
    loom_client_result a, b;
    cr_assert_eq(loom_client_start(e2e_c, "test", "m1", "events:2", 8, &req, &a), 0);
    int rc = loom_client_start(e2e_c, "test", "m1", "events:2", 8, &req, &b);
    cr_assert_eq(rc, 0, "a retried start: %s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    cr_assert_eq(a.last_event_id, b.last_event_id);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    cr_assert_eq(last_event("m1"), 2);
    e2e_pass();
}

Test(ops, notify_with_request_id_is_delivered_once)
{
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    loom_client_req req = {.request_id = "note-1"};
    loom_client_result a, b;
    cr_assert_eq(loom_client_notify(e2e_c, "test", "m1", "ok", 2, &req, &a), 0);
    cr_assert_eq(loom_client_notify(e2e_c, "test", "m1", "ok", 2, &req, &b), 0);
    cr_assert_eq(a.notification_id, b.notification_id);
    loom_client_result_free(&a);
    loom_client_result_free(&b);
    cr_assert(e2e_wait_event("m1", "notification", WAIT_MS));
    usleep(300 * 1000); /* a second delivery would land about now */
    cr_assert_eq(e2e_count_events("m1", "notification"), 1);
    e2e_pass();
}

Test(ops, client_works_over_tcp)
{
    e2e_down();
    e2e_up_opts(NULL, true);
    const char *addr = loom_harness_loomd_tcp_addr(e2e_h);
    cr_assert(strncmp(addr, "tcp:127.0.0.1:", 14) == 0);
    cr_assert_eq(loom_harness_wait_accept(addr, 15000), 0, "%s", loom_errdetail());
    loom_client *c = NULL;
    cr_assert_eq(loom_client_connect(addr, NULL, &c), 0, "%s", loom_errdetail());
    cr_assert_eq(loom_client_start(c, "test", "m1", "ok", 2, NULL, NULL), 0);
    loom_client_result res;
    cr_assert_eq(loom_client_get_machine(c, "test", "m1", NULL, &res), 0);
    cr_assert_eq(res.machine->last_event_id, 1);
    loom_client_result_free(&res);
    loom_client_close(c);
    e2e_pass();
}

Test(ops, repair_errors_from_the_processor)
{
    make_failed("m1");
    int rc = loom_client_repair(e2e_c, "test", "m1", "badreply", 8, NULL, NULL);
    cr_assert_eq(rc, LOOM_EBAD_REPLY, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    rc = loom_client_repair(e2e_c, "test", "m1", "sleep:5000", 10, NULL, NULL);
    cr_assert_eq(rc, LOOM_ETIMEOUT, "%s: %s", loom_err_name(rc), loom_client_errmsg(e2e_c));
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0));
    cr_assert_eq(loom_harness_proc_kill(loom_harness_proc_find(e2e_h, "processor")), 0);
    rc = loom_client_repair(e2e_c, "test", "m1", "ok", 2, NULL, NULL);
    cr_assert_eq(rc, LOOM_EPROCESSOR_UNAVAILABLE, "%s: %s", loom_err_name(rc),
                 loom_client_errmsg(e2e_c));
    cr_assert(e2e_wait_status("m1", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0));
    e2e_pass();
}
