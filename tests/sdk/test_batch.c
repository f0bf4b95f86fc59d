/* The batch example processor walked through its flows, in process and
 * as the spawned loom-batch-processor binary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "batch.h"
#include "driver.h"

#define WAIT_MS 10000

static drv_host fx;
static batch_config fx_cfg;

static void remove_scratch(void)
{
    drv_host_remove_scratch(&fx);
}

TestSuite(batch, .fini = remove_scratch);

static void start(double fail_rate, double object_fail_rate)
{
    drv_host_open(&fx, NULL);
    batch_config_init(&fx_cfg);
    fx_cfg.remote_delay_ms = 5;
    fx_cfg.poll_interval_ms = 10;
    fx_cfg.remote_polls = 2;
    fx_cfg.fail_rate = fail_rate;
    fx_cfg.object_fail_rate = object_fail_rate;
    fx_cfg.seed = 3;
    cr_assert_eq(batch_register(fx.p, &fx_cfg), 0);
    drv_host_listen(&fx, "batch.sock");
}

static void stop(void)
{
    drv_host_close(&fx, 1000);
}

static drv_answer commit(drv *d, drv_machine *m, const char *content_type, int first, int count)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "op", "commit");
    loom_mp_kv_str(&w, "content_type", content_type);
    loom_mp_str(&w, "objects");
    loom_mp_array(&w, (uint32_t)count);
    for (int i = first; i < first + count; i++) {
        char id[32];
        snprintf(id, sizeof id, "sku-%d", i);
        loom_mp_str(&w, id);
    }
    return drv_step_mp(d, m, LOOM_PROC_CALL, &w);
}

static drv_answer op(drv *d, drv_machine *m, const char *name)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_str(&w, "op", name);
    return drv_step_mp(d, m, LOOM_PROC_CALL, &w);
}

static batch *snapshot_of(const drv_machine *m)
{
    static batch b;
    cr_assert_eq(batch_read_snapshot(&b, m->aux, m->aux_len), 0, "%s", loom_errdetail());
    return &b;
}

static void check_fold_matches_snapshot(const drv_machine *m)
{
    static batch folded;
    memset(&folded, 0, sizeof folded);
    for (size_t i = 0; i < m->n_events; i++) {
        loom_mp_doc d;
        cr_assert_eq(loom_mp_parse(&d, m->events[i].data, m->events[i].len), 0);
        cr_assert_eq(batch_apply(&folded, d.root), 0, "%s", loom_errdetail());
        loom_mp_doc_free(&d);
    }
    cr_assert_eq(memcmp(&folded, snapshot_of(m), sizeof folded), 0);
}

/* init, commit, send, then timeouts until the batch settles. */
static void run_to_the_end(drv_machine *m, const char *content_type, int objects)
{
    drv_answer_discard(drv_step_mp(fx.d, m, LOOM_PROC_INIT, NULL));
    drv_answer_discard(commit(fx.d, m, content_type, 0, objects));
    drv_answer_discard(op(fx.d, m, "send"));
    for (int i = 0; i < 10 && m->timer_deadline_ms != 0; i++)
        drv_answer_discard(drv_step_mp(fx.d, m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_eq(m->timer_deadline_ms, 0, "batch never settled");
}

Test(batch, commit_send_poll_done_with_per_object_results)
{
    start(0.0, 0.3);
    drv_machine m;
    drv_machine_init(&m, "batch", "b-1");
    char type[32];
    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_INIT, NULL));
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "initialized");
    drv_answer a = commit(fx.d, &m, "product", 0, 6);
    int64_t n;
    cr_assert_eq(loom_mp_get_int(a.doc.root, "objects", &n), 0);
    cr_assert_eq(n, 6);
    drv_answer_free(&a);
    a = commit(fx.d, &m, "product", 6, 4); /* committing again adds objects */
    cr_assert_eq(loom_mp_get_int(a.doc.root, "objects", &n), 0);
    cr_assert_eq(n, 10);
    drv_answer_free(&a);
    cr_assert_str_eq(batch_registry_holder(&fx_cfg, "product"), "batch/b-1");

    a = op(fx.d, &m, "send");
    char remote[64];
    cr_assert_eq(loom_mp_get_strcpy(a.doc.root, "remote_batch_id", remote, sizeof remote), 0);
    cr_assert_eq(strncmp(remote, "rb-", 3), 0);
    drv_answer_free(&a);
    cr_assert_eq(snapshot_of(&m)->status, BATCH_SENT);
    cr_assert_neq(m.timer_deadline_ms, 0);
    drv_expect_refusal(commit(fx.d, &m, "product", 10, 1), "not_committable");

    for (uint32_t poll = 1; poll <= 2; poll++) {
        drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
        cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "ongoing");
        cr_assert_eq(snapshot_of(&m)->polls, poll);
        cr_assert_neq(m.timer_deadline_ms, 0);
    }
    size_t before = m.n_events;
    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_eq(m.n_events, before + 10 + 1, "one result per object, then done");
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "done");
    batch *b = snapshot_of(&m);
    cr_assert_eq(b->status, BATCH_DONE);
    cr_assert_eq(b->succeeded + b->failed, 10);
    cr_assert(b->failed > 0 && b->succeeded > 0, "30%% rejection: %u failed", b->failed);
    cr_assert_eq(m.timer_deadline_ms, 0);
    cr_assert_null(batch_registry_holder(&fx_cfg, "product"));

    /* every object has its own result: a remote id or an error */
    for (size_t i = before; i < before + 10; i++) {
        loom_mp_doc d;
        cr_assert_eq(loom_mp_parse(&d, m.events[i].data, m.events[i].len), 0);
        char object_id[32], value[64];
        cr_assert_eq(loom_mp_get_strcpy(d.root, "object_id", object_id, sizeof object_id), 0);
        bool has_remote = loom_mp_get_strcpy(d.root, "remote_id", value, sizeof value) == 0;
        bool has_error = loom_mp_get_strcpy(d.root, "error", value, sizeof value) == 0;
        cr_assert(has_remote != has_error);
        loom_mp_doc_free(&d);
    }
    check_fold_matches_snapshot(&m);
    drv_machine_free(&m);
    stop();
}

Test(batch, remote_failure_fails_the_batch_and_frees_the_content_type)
{
    start(1.0, 0.0);
    drv_machine m;
    drv_machine_init(&m, "batch", "b-f");
    char type[32];
    run_to_the_end(&m, "stock", 3);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "failed");
    cr_assert_eq(snapshot_of(&m)->status, BATCH_FAILED);
    cr_assert_null(batch_registry_holder(&fx_cfg, "stock"));
    check_fold_matches_snapshot(&m);
    /* the content type is free for another batch */
    drv_machine other;
    drv_machine_init(&other, "batch", "b-g");
    drv_answer_discard(drv_step_mp(fx.d, &other, LOOM_PROC_INIT, NULL));
    drv_answer_discard(commit(fx.d, &other, "stock", 0, 1));
    cr_assert_eq(snapshot_of(&other)->status, BATCH_COMMITTED);
    drv_machine_free(&other);
    drv_machine_free(&m);
    stop();
}

Test(batch, second_commit_for_a_busy_content_type_is_refused)
{
    start(0.0, 0.0);
    drv_machine a, b;
    drv_machine_init(&a, "batch", "b-a");
    drv_machine_init(&b, "batch", "b-b");
    drv_answer_discard(drv_step_mp(fx.d, &a, LOOM_PROC_INIT, NULL));
    drv_answer_discard(drv_step_mp(fx.d, &b, LOOM_PROC_INIT, NULL));
    drv_answer_discard(commit(fx.d, &a, "price", 0, 2));
    drv_answer r = commit(fx.d, &b, "price", 0, 2);
    char holder[64];
    cr_assert_eq(loom_mp_get_strcpy(r.doc.root, "detail", holder, sizeof holder), 0);
    cr_assert_str_eq(holder, "batch/b-a");
    drv_expect_refusal(r, "content_type_busy");
    cr_assert_eq(snapshot_of(&b)->status, BATCH_INITIALIZED);
    /* another content type is fine meanwhile */
    drv_answer_discard(commit(fx.d, &b, "product", 0, 1));
    drv_expect_refusal(commit(fx.d, &b, "price", 0, 1), "content_type_mismatch");
    drv_machine_free(&a);
    drv_machine_free(&b);
    stop();
}

/* After a processor restart the registry is empty; an active batch takes
 * its content type back on its next step. */
Test(batch, registry_is_rebuilt_lazily_after_a_restart)
{
    start(0.0, 0.0);
    drv_machine a, b;
    drv_machine_init(&a, "batch", "b-a");
    drv_machine_init(&b, "batch", "b-b");
    drv_answer_discard(drv_step_mp(fx.d, &a, LOOM_PROC_INIT, NULL));
    drv_answer_discard(commit(fx.d, &a, "price", 0, 2));
    memset(&fx_cfg.registry, 0, sizeof fx_cfg.registry); /* the restart */
    drv_answer_discard(op(fx.d, &a, "get"));
    cr_assert_str_eq(batch_registry_holder(&fx_cfg, "price"), "batch/b-a");
    drv_answer_discard(drv_step_mp(fx.d, &b, LOOM_PROC_INIT, NULL));
    drv_expect_refusal(commit(fx.d, &b, "price", 0, 1), "content_type_busy");
    drv_machine_free(&a);
    drv_machine_free(&b);
    stop();
}

Test(batch, invalid_calls)
{
    start(0.0, 0.0);
    drv_machine m;
    drv_machine_init(&m, "batch", "b-x");
    drv_answer_discard(drv_step_mp(fx.d, &m, LOOM_PROC_INIT, NULL));
    drv_expect_refusal(op(fx.d, &m, "send"), "not_committed");
    drv_expect_refusal(commit(fx.d, &m, "product", 0, 0), "no_objects");
    drv_expect_refusal(commit(fx.d, &m, "product", 0, BATCH_MAX_OBJECTS + 1), "too_many_objects");
    drv_expect_failure(op(fx.d, &m, "explode"), "unknown op");
    drv_expect_failure(op(fx.d, &m, "commit"), "commit args");
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "op", "commit");
    loom_mp_kv_str(&w, "content_type", "product");
    loom_mp_str(&w, "objects");
    loom_mp_array(&w, 2);
    loom_mp_str(&w, "ok-id");
    loom_mp_int(&w, 5);
    drv_expect_failure(drv_step_mp(fx.d, &m, LOOM_PROC_CALL, &w), "object id");
    cr_assert_null(batch_registry_holder(&fx_cfg, "product"), "a refused commit claims nothing");
    drv_expect_failure(drv_step_mp(fx.d, &m, LOOM_PROC_REPAIR, NULL), "not repairable");
    cr_assert_eq(m.n_events, 1);
    drv_machine_free(&m);
    stop();
}

Test(batch, binary_runs_the_flow_and_stops_on_sigterm)
{
    drv_child c;
    drv_child_prepare(&c, "batch.sock");
    char *argv[] = {LOOM_BIN_DIR "/loom-batch-processor",
                    "--listen",
                    c.addr,
                    "--remote-delay-ms",
                    "5",
                    "--poll-interval-ms",
                    "10",
                    "--remote-polls",
                    "1",
                    "--object-fail-rate",
                    "0",
                    "--seed",
                    "5",
                    NULL};
    drv_child_start(&c, argv, WAIT_MS);
    drv *d = c.d;
    drv_machine m;
    drv_machine_init(&m, "batch", "bin-1");
    char type[32];
    drv_answer_discard(drv_step_mp(d, &m, LOOM_PROC_INIT, NULL));
    drv_answer_discard(commit(d, &m, "product", 0, 3));
    drv_answer_discard(op(d, &m, "send"));
    drv_answer_discard(drv_step_mp(d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "ongoing");
    drv_answer_discard(drv_step_mp(d, &m, LOOM_PROC_TIMEOUT, NULL));
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "done");
    cr_assert_eq(snapshot_of(&m)->succeeded, 3);
    drv_machine_free(&m);
    drv_child_finish(&c, drv_stop(c.pid, WAIT_MS));
}
