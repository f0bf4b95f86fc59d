#include "helpers.h"

static th_env env;

static void setup(void)
{
    th_setup(&env, NULL);
}

static void teardown(void)
{
    th_teardown(&env);
}

TestSuite(index, .init = setup, .fini = teardown);

static void set_timer(const char *id, uint64_t deadline)
{
    loom_step st = th_step(&env, id);
    st.unchecked = true;
    st.timer_op = deadline ? LOOM_TIMER_SET : LOOM_TIMER_UNSET;
    st.timer.deadline_ms = deadline;
    th_commit1(&env, st);
}

Test(index, timers_in_wake_order)
{
    loom_machine_key a = th_create(&env, "a", 0), b = th_create(&env, "b", 0),
                     c = th_create(&env, "c", 0);
    set_timer("a", 3000);
    set_timer("b", 1000);
    set_timer("c", 2000);
    loom_txn *t = th_read(&env);
    loom_timer_entry e[4];
    cr_assert_eq(loom_store_timers_next(t, e), 0);
    cr_assert_eq(e[0].wake_ms, 1000);
    cr_assert_eq(e[0].key.v, b.v);
    cr_assert_eq(loom_store_timers_due(t, 2500, NULL, e, 4), 2);
    cr_assert_eq(e[0].key.v, b.v);
    cr_assert_eq(e[1].key.v, c.v);
    cr_assert_eq(e[1].wake_ms, 2000);
    cr_assert_eq(loom_store_timers_due(t, UINT64_MAX, &e[0], e + 1, 3), 2, "paging after an entry");
    cr_assert_eq(e[1].key.v, c.v);
    cr_assert_eq(e[2].key.v, a.v);
    cr_assert_eq(loom_store_timers_due(t, 999, NULL, e, 4), 0);
    loom_txn_end(t);

    set_timer("b", 0);    /* unset */
    set_timer("a", 500);  /* move earlier */
    t = th_read(&env);
    cr_assert_eq(loom_store_timers_due(t, UINT64_MAX, NULL, e, 4), 2, "one entry per machine");
    cr_assert_eq(e[0].key.v, a.v);
    cr_assert_eq(e[0].wake_ms, 500);
    cr_assert_eq(e[1].key.v, c.v);
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(index, wake_is_earliest_of_timer_and_retry)
{
    loom_machine_key a = th_create(&env, "a", 0);
    set_timer("a", 5000);
    loom_step st = th_step(&env, "a");
    st.unchecked = true;
    st.retry_op = LOOM_RETRY_SET;
    st.retry.attempt = 1;
    st.retry.next_attempt_ms = 7000;
    th_commit1(&env, st);
    loom_txn *t = th_read(&env);
    loom_timer_entry e;
    cr_assert_eq(loom_store_timers_next(t, &e), 0);
    cr_assert_eq(e.wake_ms, 5000);
    loom_txn_end(t);
    set_timer("a", 0);
    t = th_read(&env);
    cr_assert_eq(loom_store_timers_next(t, &e), 0);
    cr_assert_eq(e.wake_ms, 7000, "the retry alone remains");
    cr_assert_eq(e.key.v, a.v);
    loom_txn_end(t);
}

Test(index, sink_is_global_ordered_and_gap_free)
{
    loom_machine_key a = th_create(&env, "a", 3);
    loom_machine_key b = th_create(&env, "b", 2);
    loom_new_event ev = {1, loom_slice_str("x")};
    loom_step steps[2] = {th_step(&env, "a"), th_step(&env, "b")};
    for (int i = 0; i < 2; i++) {
        steps[i].unchecked = true;
        steps[i].events = &ev;
        steps[i].n_events = 1;
    }
    cr_assert_eq(loom_store_commit(env.s, steps, 2), 0);
    loom_txn *t = th_read(&env);
    loom_sink_entry s[10];
    uint64_t last;
    cr_assert_eq(loom_store_sink_last(t, &last), 0);
    cr_assert_eq(last, 7);
    cr_assert_eq(loom_store_sink_read(t, 1, s, 10), 7);
    struct {
        uint64_t key, id;
    } want[7] = {{a.v, 1}, {a.v, 2}, {a.v, 3}, {b.v, 1}, {b.v, 2}, {a.v, 4}, {b.v, 3}};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(s[i].seq, (uint64_t)i + 1);
        cr_assert_eq(s[i].key.v, want[i].key);
        cr_assert_eq(s[i].event_id, want[i].id);
    }
    cr_assert_eq(loom_store_sink_read(t, 6, s, 10), 2);
    cr_assert_eq(s[0].seq, 6);
    cr_assert_eq(loom_store_sink_read(t, 8, s, 10), 0);
    loom_txn_end(t);
}

Test(index, notifications_enqueue_read_ack)
{
    loom_machine_key a = th_create(&env, "a", 0), b = th_create(&env, "b", 0);
    uint64_t ids[4];
    const char *who[4] = {"a", "b", "a", "a"};
    for (int i = 0; i < 4; i++) {
        loom_step st = th_step(&env, who[i]);
        st.unchecked = true;
        st.notify = true;
        char args[8];
        snprintf(args, sizeof args, "n%d", i);
        st.notify_args = loom_slice_str(args);
        st.now_ms = 100 + (uint64_t)i;
        ids[i] = th_commit1(&env, st).notification_id;
        cr_assert_gt(ids[i], i ? ids[i - 1] : 0, "ids increase");
    }
    loom_txn *t = th_read(&env);
    loom_notification n[5];
    cr_assert_eq(loom_store_notifications_of(t, a, 0, n, 5), 3);
    cr_assert_eq(n[0].id, ids[0]);
    cr_assert_eq(n[1].id, ids[2]);
    cr_assert_eq(n[2].id, ids[3]);
    cr_assert_eq(n[1].created_at_ms, 102);
    cr_assert_arr_eq(n[1].args.ptr, "n2", 2);
    cr_assert_eq(loom_store_notifications_of(t, a, ids[2], n, 5), 1);
    cr_assert_eq(loom_store_notifications_of(t, b, 0, n, 5), 1);
    cr_assert_eq(n[0].key.v, b.v);
    cr_assert_eq(loom_store_notifications_from(t, ids[1], n, 5), 3);
    cr_assert_eq(n[0].id, ids[1]);
    loom_txn_end(t);

    loom_step st = th_step(&env, "a");
    st.unchecked = true;
    st.ack_notification_id = ids[0];
    th_commit1(&env, st);
    st.ack_notification_id = ids[0];
    cr_assert_eq(th_commit_result(&env, &st), LOOM_ENOT_FOUND, "acknowledged twice");
    st = th_step(&env, "b");
    st.unchecked = true;
    st.ack_notification_id = ids[2]; /* belongs to a */
    cr_assert_eq(th_commit_result(&env, &st), LOOM_ENOT_FOUND);
    t = th_read(&env);
    cr_assert_eq(loom_store_notifications_from(t, 0, n, 5), 3);
    cr_assert_eq(n[0].id, ids[1]);
    loom_txn_end(t);

    /* The id counter never goes back, even after acknowledgements. */
    st = th_step(&env, "b");
    st.unchecked = true;
    st.notify = true;
    cr_assert_gt(th_commit1(&env, st).notification_id, ids[3]);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

static void record(const char *id, const char *rid, const char *outcome, uint64_t now)
{
    loom_step st = th_step(&env, id);
    st.unchecked = true;
    st.record_outcome = true;
    st.request_id = loom_slice_str(rid);
    st.outcome = loom_slice_str(outcome);
    st.now_ms = now;
    th_commit1(&env, st);
}

Test(index, outcomes_record_get_overwrite_prune)
{
    loom_machine_key a = th_create(&env, "a", 0), b = th_create(&env, "b", 0);
    record("a", "r1", "one", 100);
    record("a", "r2", "two", 200);
    record("b", "r1", "b-one", 300);
    loom_txn *t = th_read(&env);
    loom_slice out;
    uint64_t at;
    cr_assert_eq(loom_store_outcome_get(t, a, loom_slice_str("r1"), &out, &at), 0);
    cr_assert_eq(at, 100);
    cr_assert_arr_eq(out.ptr, "one", 3);
    cr_assert_eq(loom_store_outcome_get(t, b, loom_slice_str("r1"), &out, NULL), 0);
    cr_assert_arr_eq(out.ptr, "b-one", 5);
    cr_assert_eq(loom_store_outcome_get(t, b, loom_slice_str("r2"), &out, NULL), LOOM_ENOT_FOUND);
    cr_assert_eq(loom_store_outcome_get(t, b, loom_slice_str(""), &out, NULL), LOOM_EINVALID_ARGUMENT);
    loom_txn_end(t);

    record("a", "r1", "one-again", 400); /* overwrite moves its time */
    size_t removed;
    cr_assert_eq(loom_store_outcomes_prune(env.s, 250, 0, &removed), 0);
    cr_assert_eq(removed, 1, "only r2 of a was older than 250");
    t = th_read(&env);
    cr_assert_eq(loom_store_outcome_get(t, a, loom_slice_str("r2"), &out, NULL), LOOM_ENOT_FOUND);
    cr_assert_eq(loom_store_outcome_get(t, a, loom_slice_str("r1"), &out, &at), 0);
    cr_assert_eq(at, 400);
    loom_txn_end(t);
    cr_assert_eq(loom_store_outcomes_prune(env.s, 1000, 1, &removed), 0);
    cr_assert_eq(removed, 1, "limit respected");
    cr_assert_eq(loom_store_outcomes_prune(env.s, 1000, 0, &removed), 0);
    cr_assert_eq(removed, 1);
    cr_assert_eq(loom_store_outcomes_prune(env.s, 1000, 0, &removed), 0);
    cr_assert_eq(removed, 0);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}
