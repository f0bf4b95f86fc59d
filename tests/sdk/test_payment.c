/* The payment example processor walked through its flows, in process and
 * as the spawned loom-payment-processor binary. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "driver.h"
#include "loom/payload.h"
#include "payment.h"

#define WAIT_MS 10000

static drv_host fx;
static payment_config fx_cfg;

static void remove_scratch(void)
{
    drv_host_remove_scratch(&fx);
}

TestSuite(payment, .fini = remove_scratch);

static void start(double fail_rate, uint64_t seed)
{
    drv_host_open(&fx, NULL);
    memset(&fx_cfg, 0, sizeof fx_cfg);
    payment_config_init(&fx_cfg);
    fx_cfg.provider_delay_ms = 10;
    fx_cfg.fail_rate = fail_rate;
    fx_cfg.seed = seed;
    cr_assert_eq(payment_register(fx.p, &fx_cfg), 0);
    drv_host_listen(&fx, "pay.sock");
}

static void stop(void)
{
    drv_host_close(&fx, 1000);
}

/* ------------------------------------------------------------ helpers */

static drv_answer init_invoice(drv *d, drv_machine *m, int64_t amount, int64_t due_in_ms)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_int(&w, "amount", amount);
    loom_mp_kv_str(&w, "currency", "EUR");
    loom_mp_kv_int(&w, "due_in_ms", due_in_ms);
    return drv_step_mp(d, m, LOOM_PROC_INIT, &w);
}

static drv_answer call(drv *d, drv_machine *m, const char *op, int64_t amount)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, amount != 0 ? 2 : 1);
    loom_mp_kv_str(&w, "op", op);
    if (amount != 0)
        loom_mp_kv_int(&w, "amount", amount);
    return drv_step_mp(d, m, LOOM_PROC_CALL, &w);
}

static invoice snapshot_of(const drv_machine *m)
{
    invoice inv;
    cr_assert_eq(invoice_read_snapshot(&inv, m->aux, m->aux_len), 0, "%s", loom_errdetail());
    return inv;
}

/* The snapshot must be exactly the fold of the events. */
static void check_fold_matches_snapshot(const drv_machine *m)
{
    invoice folded;
    memset(&folded, 0, sizeof folded);
    for (size_t i = 0; i < m->n_events; i++) {
        loom_mp_doc d;
        cr_assert_eq(loom_mp_parse(&d, m->events[i].data, m->events[i].len), 0);
        cr_assert_eq(invoice_apply(&folded, d.root), 0, "%s", loom_errdetail());
        loom_mp_doc_free(&d);
    }
    invoice snap = snapshot_of(m);
    cr_assert_eq(memcmp(&folded, &snap, sizeof snap), 0);
}

/* ------------------------------------------------------------ flows */

Test(payment, invoice_paid_captured_then_refunded)
{
    start(0.0, 1);
    drv_machine m;
    drv_machine_init(&m, "invoice", "inv-1");
    char type[32];
    int64_t before = loom_proc_now_ms();
    drv_answer_discard(init_invoice(fx.d, &m, 1000, 60000));
    cr_assert_eq(m.n_events, 1);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "invoice_created");
    cr_assert_geq(m.timer_deadline_ms, before + 60000);
    cr_assert_eq(snapshot_of(&m).status, INVOICE_UNPAID);

    drv_answer a = call(fx.d, &m, "pay", 0);
    char status[32];
    cr_assert_eq(loom_mp_get_strcpy(a.doc.root, "status", status, sizeof status), 0);
    cr_assert_str_eq(status, "payment started");
    drv_answer_free(&a);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "payment_started");
    cr_assert_eq(snapshot_of(&m).status, INVOICE_PROCESSING);
    cr_assert_str_eq(snapshot_of(&m).payment_id, "inv-1-p1");
    drv_expect_refusal(call(fx.d, &m, "pay", 0), "not_payable");

    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL)); /* the poll */
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "payment_captured");
    cr_assert_eq(snapshot_of(&m).status, INVOICE_PAID);
    cr_assert_eq(snapshot_of(&m).captured, 1000);
    cr_assert_eq(m.timer_deadline_ms, 0);

    a = call(fx.d, &m, "refund", 300);
    int64_t refunded;
    cr_assert_eq(loom_mp_get_int(a.doc.root, "refunded", &refunded), 0);
    cr_assert_eq(refunded, 300);
    drv_answer_free(&a);
    drv_expect_refusal(call(fx.d, &m, "refund", 800), "refund_too_large");
    drv_expect_refusal(call(fx.d, &m, "refund", -5), "bad_amount");
    drv_answer_discard(call(fx.d, &m, "refund", 700));
    drv_expect_refusal(call(fx.d, &m, "refund", 1), "refund_too_large");
    cr_assert_eq(snapshot_of(&m).refunded, 1000);
    cr_assert_eq(m.n_events, 5);
    check_fold_matches_snapshot(&m);

    /* without a snapshot the processor folds the history itself */
    free(m.aux);
    m.aux = NULL;
    m.aux_len = 0;
    a = call(fx.d, &m, "get", 0);
    cr_assert_eq(loom_mp_get_strcpy(a.doc.root, "status", status, sizeof status), 0);
    cr_assert_str_eq(status, "paid");
    drv_answer_free(&a);
    drv_machine_free(&m);
    stop();
}

/* The payment id keeps 40 bytes of the machine id: a character that
 * straddles the cut is left out whole. */
Test(payment, payment_id_never_splits_a_character)
{
    start(0.0, 1);
    char id[64];
    memset(id, 'a', 39);
    snprintf(id + 39, sizeof id - 39, "\xc3\xa9tail"); /* e-acute over bytes 40-41 */
    drv_machine m;
    drv_machine_init(&m, "invoice", id);
    drv_answer_discard(init_invoice(fx.d, &m, 1000, 60000));
    drv_answer_discard(call(fx.d, &m, "pay", 0));
    invoice inv = snapshot_of(&m);
    const char *pid = inv.payment_id;
    cr_assert_eq(loom_utf8_valid(pid, strlen(pid)), 1, "%s", pid);
    cr_assert_eq(strlen(pid), 39 + strlen("-p1"));
    cr_assert_str_eq(pid + 39, "-p1");
    drv_machine_free(&m);
    stop();
}

Test(payment, declined_payment_goes_back_to_unpaid)
{
    start(1.0, 1);
    drv_machine m;
    drv_machine_init(&m, "invoice", "inv-2");
    char type[32];
    drv_answer_discard(init_invoice(fx.d, &m, 500, 60000));
    int64_t due_at = snapshot_of(&m).due_at_ms;
    drv_answer_discard(call(fx.d, &m, "pay", 0));
    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "payment_failed");
    cr_assert_eq(snapshot_of(&m).status, INVOICE_UNPAID);
    cr_assert_eq(m.timer_deadline_ms, due_at, "the expiry timer is back");
    /* a second attempt gets a new payment id */
    drv_answer_discard(call(fx.d, &m, "pay", 0));
    cr_assert_str_eq(snapshot_of(&m).payment_id, "inv-2-p2");
    drv_expect_refusal(call(fx.d, &m, "refund", 10), "not_paid");
    check_fold_matches_snapshot(&m);
    drv_machine_free(&m);
    stop();
}

Test(payment, unpaid_invoice_expires_by_its_timer)
{
    start(0.0, 1);
    drv_machine m;
    drv_machine_init(&m, "invoice", "inv-3");
    char type[32];
    drv_answer_discard(init_invoice(fx.d, &m, 500, 300));
    /* a timer that fires early changes nothing and sleeps on */
    int64_t due_at = snapshot_of(&m).due_at_ms;
    if (loom_proc_now_ms() < due_at - 50) {
        drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
        cr_assert_eq(m.n_events, 1);
        cr_assert_eq(m.timer_deadline_ms, due_at);
    }
    while (loom_proc_now_ms() <= due_at)
        drv_run_for(&fx.loop, 20);
    drv_expect_refusal(call(fx.d, &m, "pay", 0), "expired");
    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "invoice_expired");
    cr_assert_eq(snapshot_of(&m).status, INVOICE_EXPIRED);
    cr_assert_eq(m.timer_deadline_ms, 0);
    drv_expect_refusal(call(fx.d, &m, "pay", 0), "not_payable");
    drv_machine_free(&m);
    stop();
}

Test(payment, invalid_requests_fail_for_good)
{
    start(0.0, 1);
    drv_machine m;
    drv_machine_init(&m, "invoice", "inv-4");
    drv_expect_failure(init_invoice(fx.d, &m, -1, 1000), "init args");
    drv_expect_failure(init_invoice(fx.d, &m, 10, 0), "init args");
    drv_answer a = {.env = drv_step(fx.d, &m, LOOM_PROC_INIT, "\xc1", 1, WAIT_MS)};
    drv_expect_failure(a, "malformed msgpack");
    cr_assert_eq(m.n_events, 0);
    drv_answer_discard(init_invoice(fx.d, &m, 10, 60000));
    drv_expect_failure(call(fx.d, &m, "teleport", 0), "unknown op");
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 2);
    loom_mp_kv_str(&w, "op", "refund");
    loom_mp_kv_str(&w, "amount", "lots");
    drv_expect_failure(drv_step_mp(fx.d, &m, LOOM_PROC_CALL, &w), "expected int");
    drv_expect_failure(drv_step_mp(fx.d, &m, LOOM_PROC_REPAIR, NULL), "not repairable");
    /* a corrupt snapshot is reported, not trusted */
    m.aux[0] = 0xc1;
    drv_expect_failure(call(fx.d, &m, "get", 0), "invoice state");
    cr_assert_eq(m.n_events, 1);
    drv_machine_free(&m);
    stop();
}

/* Same seed, same outcomes, whatever the order; and a 50% rate declines
 * some and captures some. */
Test(payment, provider_outcomes_are_reproducible_by_seed)
{
    bool first[16];
    for (int run = 0; run < 2; run++) {
        start(0.5, 42);
        int declined = 0;
        for (int i = 0; i < 16; i++) {
            int k = run == 0 ? i : 15 - i;
            char id[32];
            snprintf(id, sizeof id, "inv-%d", k);
            drv_machine m;
            drv_machine_init(&m, "invoice", id);
            drv_answer_discard(init_invoice(fx.d, &m, 100, 60000));
            drv_answer_discard(call(fx.d, &m, "pay", 0));
            drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
            bool paid = snapshot_of(&m).status == INVOICE_PAID;
            declined += !paid;
            if (run == 0)
                first[k] = paid;
            else
                cr_assert_eq(first[k], paid, "machine %d", k);
            drv_machine_free(&m);
        }
        cr_assert(declined > 0 && declined < 16, "declined %d of 16", declined);
        stop();
    }
}

/* The real binary: spawned, driven over a Unix socket, stopped by SIGTERM. */
Test(payment, binary_runs_the_flow_and_stops_on_sigterm)
{
    drv_child c;
    drv_child_prepare(&c, "pay.sock");
    char *argv[] = {LOOM_BIN_DIR "/loom-payment-processor",
                    "--listen",
                    c.addr,
                    "--provider-delay-ms",
                    "5",
                    "--fail-rate",
                    "0",
                    "--seed",
                    "9",
                    NULL};
    drv_child_start(&c, argv, WAIT_MS);
    drv *d = c.d;
    drv_machine m;
    drv_machine_init(&m, "invoice", "bin-1");
    drv_answer_discard(init_invoice(d, &m, 250, 60000));
    drv_answer_discard(call(d, &m, "pay", 0));
    drv_answer_discard(drv_step_mp(d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_eq(snapshot_of(&m).status, INVOICE_PAID);
    drv_answer_discard(call(d, &m, "refund", 250));
    drv_expect_refusal(call(d, &m, "refund", 1), "refund_too_large");
    cr_assert_eq(m.n_events, 4);
    drv_machine_free(&m);
    int status = drv_stop(c.pid, WAIT_MS);
    cr_assert(drv_wait_closed(d, WAIT_MS));
    drv_child_finish(&c, status);
}

Test(payment, binary_rejects_bad_flags)
{
    char *argv[] = {LOOM_BIN_DIR "/loom-payment-processor", "--fail-rate", "1.5", NULL};
    pid_t pid = drv_spawn(argv);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 2);
}

/* SIGTERM while the provider is being waited on: the pending call still
 * gets its result (within the grace period), then the process exits 0. */
Test(payment, binary_finishes_in_flight_work_on_sigterm)
{
    drv_child c;
    drv_child_prepare(&c, "pay.sock");
    char *argv[] = {LOOM_BIN_DIR "/loom-payment-processor",
                    "--listen",
                    c.addr,
                    "--provider-delay-ms",
                    "1000",
                    NULL};
    drv_child_start(&c, argv, WAIT_MS);
    drv *d = c.d;
    drv_machine m;
    drv_machine_init(&m, "invoice", "bin-2");
    drv_answer_discard(init_invoice(d, &m, 250, 60000));
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_str(&w, "op", "pay");
    const uint8_t *data;
    size_t len;
    cr_assert_eq(loom_mp_writer_finish(&w, &data, &len), 0);
    uint64_t cid = drv_send(d, &m, LOOM_PROC_CALL, data, len);
    loom_mp_writer_free(&w);
    /* let the request reach the handler (it then waits 1 s on the provider) */
    drv_run_for(&c.loop, 200);
    kill(c.pid, SIGTERM);
    loom_envelope *env = drv_wait(d, cid, WAIT_MS);
    cr_assert_not_null(drv_result(env), "in-flight call was not finished");
    cr_assert_eq(drv_result(env)->n_events, 1);
    loom_envelope_free(env);
    drv_machine_free(&m);
    /* a second SIGTERM would not be graceful */
    drv_child_finish(&c, drv_reap(c.pid, WAIT_MS));
}
