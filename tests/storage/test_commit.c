#include "helpers.h"
#include "../../storage/src/internal.h"

static th_env env;

static void setup(void)
{
    th_setup(&env, NULL);
}

static void teardown(void)
{
    th_teardown(&env);
}

TestSuite(commit, .init = setup, .fini = teardown);

static loom_machine get(const char *id, loom_txn **t)
{
    *t = th_read(&env);
    loom_machine m;
    int rc = loom_store_machine_get(*t, env.ns, loom_slice_str(id), &m);
    cr_assert_eq(rc, 0, "get %s: %s", id, loom_err_name(rc));
    return m;
}

static uint64_t last_event_of(const char *id)
{
    loom_txn *t;
    uint64_t last = get(id, &t).last_event_id;
    loom_txn_end(t);
    return last;
}

static int machine_rc(const char *id)
{
    loom_txn *t = th_read(&env);
    loom_machine m;
    int rc = loom_store_machine_get(t, env.ns, loom_slice_str(id), &m);
    loom_txn_end(t);
    return rc;
}

Test(commit, create_assigns_ids_without_gaps)
{
    loom_new_event evs[3] = {{1, loom_slice_str("a")}, {2, loom_slice_str("b")}, {3, {NULL, 0}}};
    loom_step st = th_step(&env, "m");
    st.create = true;
    st.events = evs;
    st.n_events = 3;
    st = th_commit1(&env, st);
    cr_assert_eq(st.first_event_id, 1);
    cr_assert_eq(st.last_event_id, 3);
    cr_assert_neq(st.key.v, 0);
    for (uint64_t last = 3; last < 30; last += 2) {
        loom_step s2 = th_step(&env, "m");
        s2.expected_last_event_id = last;
        s2.events = evs;
        s2.n_events = 2;
        s2 = th_commit1(&env, s2);
        cr_assert_eq(s2.first_event_id, last + 1);
        cr_assert_eq(s2.last_event_id, last + 2);
    }
    loom_txn *t;
    loom_machine m = get("m", &t);
    cr_assert_eq(m.last_event_id, 31);
    cr_assert_eq(m.status, LOOM_STATUS_WORKING);
    loom_history it;
    loom_range r = {0};
    cr_assert_eq(loom_history_begin(t, m.key, &r, &it), 0);
    loom_event ev;
    uint64_t expect = 1;
    while (loom_history_next(&it, &ev) == 1)
        cr_assert_eq(ev.id, expect++);
    cr_assert_eq(expect, 32);
    loom_history_end(&it);
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, create_refused_if_exists)
{
    th_create(&env, "m", 1);
    loom_step st = th_step(&env, "m");
    st.create = true;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EMACHINE_ALREADY_EXISTS);
    cr_assert_eq(last_event_of("m"), 1);
}

Test(commit, create_needs_a_namespace)
{
    loom_step st = th_step(&env, "m");
    st.ns.v = 77;
    st.create = true;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_ENAMESPACE_NOT_FOUND);
}

Test(commit, stale_step_refused_alone_in_its_batch)
{
    th_create(&env, "a", 2);
    th_create(&env, "b", 2);
    loom_new_event ev = {1, loom_slice_str("x")};
    loom_step steps[3] = {th_step(&env, "a"), th_step(&env, "b"), th_step(&env, "nope")};
    for (int i = 0; i < 3; i++) {
        steps[i].events = &ev;
        steps[i].n_events = 1;
        steps[i].expected_last_event_id = 2;
    }
    steps[0].expected_last_event_id = 1; /* stale */
    cr_assert_eq(loom_store_commit(env.s, steps, 3), 0);
    cr_assert_eq(steps[0].result, LOOM_ESTALE);
    cr_assert_eq(steps[1].result, 0);
    cr_assert_eq(steps[2].result, LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(last_event_of("a"), 2);
    cr_assert_eq(last_event_of("b"), 3);
}

Test(commit, steps_on_one_machine_apply_in_order)
{
    loom_new_event ev = {1, loom_slice_str("x")};
    loom_step steps[3] = {th_step(&env, "m"), th_step(&env, "m"), th_step(&env, "m")};
    steps[0].create = true;
    for (int i = 0; i < 3; i++) {
        steps[i].events = &ev;
        steps[i].n_events = 1;
        steps[i].expected_last_event_id = (uint64_t)i;
    }
    cr_assert_eq(loom_store_commit(env.s, steps, 3), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(steps[i].result, 0);
        cr_assert_eq(steps[i].first_event_id, (uint64_t)i + 1);
    }
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, failing_transaction_stores_nothing)
{
    /* A map too small for the batch and no room to grow: the whole batch
     * fails, including steps that fit. */
    th_teardown(&env);
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 1 << 20};
    th_setup(&env, &o);
    th_create(&env, "small", 1);
    static char big[600 * 1024];
    memset(big, 'z', sizeof big);
    loom_new_event small = {1, loom_slice_str("s")}, huge = {1, loom_slice_of(big, sizeof big)};
    loom_step steps[3] = {th_step(&env, "small"), th_step(&env, "h1"), th_step(&env, "h2")};
    steps[0].events = &small;
    steps[0].n_events = 1;
    steps[0].expected_last_event_id = 1;
    for (int i = 1; i < 3; i++) {
        steps[i].create = true;
        steps[i].events = &huge;
        steps[i].n_events = 1;
    }
    int rc = loom_store_commit(env.s, steps, 3);
    cr_assert_eq(rc, LOOM_ESTORAGE_FULL, "%s %s", loom_err_name(rc), loom_errdetail());
    cr_assert_eq(machine_rc("h1"), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(last_event_of("small"), 1, "the step that fit was not stored either");
    loom_txn *t = th_read(&env);
    uint64_t seq;
    cr_assert_eq(loom_store_sink_last(t, &seq), 0);
    cr_assert_eq(seq, 1);
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, aux_state_timer_status_and_retry)
{
    th_create(&env, "m", 0);
    loom_step st = th_step(&env, "m");
    st.set_aux_state = true;
    st.aux_state = loom_slice_str("aux-1");
    st.timer_op = LOOM_TIMER_SET;
    st.timer.deadline_ms = 5000;
    st.timer.range = (loom_range){3, 10, LOOM_DIRECTION_BACKWARD, true};
    st.now_ms = 2000;
    th_commit1(&env, st);
    loom_txn *t;
    loom_machine m = get("m", &t);
    cr_assert_eq(m.aux_state.len, 5);
    cr_assert_arr_eq(m.aux_state.ptr, "aux-1", 5);
    cr_assert_eq(m.timer.deadline_ms, 5000);
    cr_assert_eq(m.timer.range.after, 3);
    cr_assert_eq(m.timer.range.limit, 10);
    cr_assert_eq(m.timer.range.direction, LOOM_DIRECTION_BACKWARD);
    cr_assert(m.timer.range.has_after);
    cr_assert_eq(m.wake_ms, 5000);
    cr_assert_eq(m.updated_at_ms, 2000);
    cr_assert_eq(m.created_at_ms, 1000);
    loom_txn_end(t);

    st = th_step(&env, "m");
    st.unchecked = true;
    st.status = LOOM_STATUS_RETRYING;
    st.retry_op = LOOM_RETRY_SET;
    st.retry = (loom_retry){2, 7, 99, 1500, 3000};
    th_commit1(&env, st);
    m = get("m", &t);
    cr_assert_eq(m.status, LOOM_STATUS_RETRYING);
    cr_assert_eq(m.retry.attempt, 2);
    cr_assert_eq(m.retry.step_kind, 7);
    cr_assert_eq(m.retry.ref, 99);
    cr_assert_eq(m.retry.first_failure_ms, 1500);
    cr_assert_eq(m.wake_ms, 3000, "the retry comes before the timer");
    cr_assert_arr_eq(m.aux_state.ptr, "aux-1", 5, "aux_state kept");
    loom_txn_end(t);

    st = th_step(&env, "m");
    st.unchecked = true;
    st.status = LOOM_STATUS_FAILED;
    st.reason = loom_slice_str("processor said no");
    st.retry_op = LOOM_RETRY_CLEAR;
    st.timer_op = LOOM_TIMER_UNSET;
    th_commit1(&env, st);
    m = get("m", &t);
    cr_assert_eq(m.status, LOOM_STATUS_FAILED);
    cr_assert_eq(m.status_before_failure, LOOM_STATUS_RETRYING);
    cr_assert_eq(m.reason.len, strlen("processor said no"));
    cr_assert_eq(m.wake_ms, 0);
    cr_assert_eq(m.retry.attempt, 0);
    loom_txn_end(t);

    st = th_step(&env, "m");
    st.unchecked = true;
    st.status = LOOM_STATUS_WORKING;
    th_commit1(&env, st);
    m = get("m", &t);
    cr_assert_eq(m.status, LOOM_STATUS_WORKING);
    cr_assert_eq(m.status_before_failure, LOOM_STATUS_NONE);
    cr_assert_eq(m.reason.len, 0);
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, remove_takes_everything_with_it)
{
    th_create(&env, "keep", 2);
    th_create(&env, "m", LOOM__LOG_COMPACT + 4); /* compacted into `events` */
    loom_step st = th_step(&env, "m");
    st.expected_last_event_id = LOOM__LOG_COMPACT + 4;
    st.timer_op = LOOM_TIMER_SET;
    st.timer.deadline_ms = 100;
    st.notify = true;
    st.notify_args = loom_slice_str("n1");
    st.record_outcome = true;
    st.request_id = loom_slice_str("req-1");
    st.outcome = loom_slice_str("ok");
    st = th_commit1(&env, st);
    loom_machine_key key = st.key;

    st = th_step(&env, "m");
    st.remove = true;
    st.expected_last_event_id = LOOM__LOG_COMPACT + 4;
    th_commit1(&env, st);
    cr_assert_eq(machine_rc("m"), LOOM_EMACHINE_NOT_FOUND);
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get_by_key(t, key, &m), LOOM_EMACHINE_NOT_FOUND);
    loom_timer_entry te;
    cr_assert_eq(loom_store_timers_next(t, &te), LOOM_ENOT_FOUND);
    loom_notification nt;
    cr_assert_eq(loom_store_notifications_from(t, 0, &nt, 1), 0);
    cr_assert_eq(loom_store_notifications_of(t, key, 0, &nt, 1), 0);
    loom_slice out;
    cr_assert_eq(loom_store_outcome_get(t, key, loom_slice_str("req-1"), &out, NULL), LOOM_ENOT_FOUND);
    loom_store_stats stats;
    loom_txn_end(t);
    cr_assert_eq(loom_store_stats_get(env.s, &stats), 0);
    cr_assert_eq(stats.machines, 1);
    cr_assert_eq(stats.events_compacted, 0, "the removed machine's events are gone");
    cr_assert_eq(stats.sink_entries, LOOM__LOG_COMPACT + 6, "its sink entries stay");
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);

    /* The id can be reused; the new machine gets a new key and history. */
    loom_machine_key again = th_create(&env, "m", 1);
    cr_assert_gt(again.v, key.v);
}

Test(commit, remove_with_other_changes_is_refused)
{
    th_create(&env, "m", 1);
    loom_new_event ev = {1, loom_slice_str("x")};
    loom_step st = th_step(&env, "m");
    st.remove = true;
    st.unchecked = true;
    st.events = &ev;
    st.n_events = 1;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(machine_rc("m"), 0);
}

/* Decodes the varint the store appends; -1 if it is malformed or does not
 * end the bytes exactly. */
static int64_t tail_varint(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80))
            return i + 1 == n ? (int64_t)v : -1;
    }
    return -1;
}

Test(commit, notify_outcome_carries_its_notification_id)
{
    /* 300 notifications in one batch: ids cross 127 -> 128, where the
     * varint grows to two bytes. */
    enum { N = 300 };
    th_create(&env, "m", 1);
    static loom_step steps[N];
    static char rids[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(rids[i], sizeof rids[i], "req-%d", i);
        steps[i] = th_step(&env, "m");
        steps[i].unchecked = true;
        steps[i].notify = true;
        steps[i].notify_args = loom_slice_str("args");
        steps[i].record_outcome = true;
        steps[i].request_id = loom_slice_str(rids[i]);
        steps[i].outcome = loom_slice_of("\x08", 1);
        steps[i].outcome_append_notification_id = true;
    }
    cr_assert_eq(loom_store_commit(env.s, steps, N), 0, "%s", loom_errdetail());
    loom_txn *t = th_read(&env);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(steps[i].result, 0);
        cr_assert_eq(steps[i].notification_id, (uint64_t)i + 1);
        loom_slice out;
        cr_assert_eq(loom_store_outcome_get(t, steps[i].key, loom_slice_str(rids[i]), &out, NULL),
                     0);
        const uint8_t *b = out.ptr;
        cr_assert_geq(out.len, 2);
        cr_assert_eq(b[0], 0x08, "the step's bytes come first");
        cr_assert_eq(tail_varint(b + 1, out.len - 1), (int64_t)steps[i].notification_id);
    }
    loom_slice out;
    cr_assert_eq(loom_store_outcome_get(t, steps[127].key, loom_slice_str(rids[127]), &out, NULL),
                 0);
    cr_assert_eq(out.len, 3);
    cr_assert_eq(memcmp(out.ptr, "\x08\x80\x01", 3), 0, "id 128");
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, notify_outcome_with_an_empty_prefix_is_the_id_alone)
{
    th_create(&env, "m", 1);
    loom_step st = th_step(&env, "m");
    st.unchecked = true;
    st.notify = true;
    st.record_outcome = true;
    st.request_id = loom_slice_str("r");
    st.outcome_append_notification_id = true;
    st = th_commit1(&env, st);
    loom_txn *t = th_read(&env);
    loom_slice out;
    cr_assert_eq(loom_store_outcome_get(t, st.key, loom_slice_str("r"), &out, NULL), 0);
    cr_assert_eq(out.len, 1);
    cr_assert_eq(*(const uint8_t *)out.ptr, st.notification_id);
    loom_txn_end(t);
}

Test(commit, notify_outcome_needs_notify_and_an_outcome)
{
    th_create(&env, "m", 1);
    loom_step st = th_step(&env, "m");
    st.unchecked = true;
    st.record_outcome = true;
    st.request_id = loom_slice_str("r");
    st.outcome_append_notification_id = true; /* no notify */
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    st.notify = true;
    st.record_outcome = false;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    static char big[LOOM_STORE_MAX_VALUE_LEN];
    st.record_outcome = true;
    st.outcome = loom_slice_of(big, sizeof big); /* no room left for the id */
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    loom_txn *t = th_read(&env);
    loom_notification nt;
    cr_assert_eq(loom_store_notifications_from(t, 0, &nt, 1), 0, "refused steps leave no trace");
    loom_slice out;
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("m"), &m), 0);
    cr_assert_eq(loom_store_outcome_get(t, m.key, loom_slice_str("r"), &out, NULL),
                 LOOM_ENOT_FOUND);
    loom_txn_end(t);
}

Test(commit, bad_input_gets_clear_errors)
{
    loom_step st = th_step(&env, "");
    st.create = true;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    char longid[300];
    memset(longid, 'i', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    st = th_step(&env, longid);
    st.create = true;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    st = th_step(&env, "m");
    st.create = true;
    st.status = (loom_status)9;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    st = th_step(&env, "m");
    st.create = true;
    st.n_events = 3; /* events NULL */
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    st = th_step(&env, "m");
    st.create = true;
    st.record_outcome = true; /* empty request id */
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_store_commit(env.s, &st, LOOM_STORE_MAX_BATCH_STEPS + 1),
                 LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_store_commit(env.s, NULL, 0), 0, "an empty batch is a no-op");
    cr_assert_eq(machine_rc("m"), LOOM_EMACHINE_NOT_FOUND);
}

Test(commit, batch_byte_limit)
{
    static char chunk[1 << 20];
    loom_new_event ev = {1, loom_slice_of(chunk, sizeof chunk)};
    loom_step *steps = calloc(300, sizeof *steps);
    char ids[300][8];
    for (int i = 0; i < 300; i++) {
        snprintf(ids[i], 8, "m%d", i);
        steps[i] = th_step(&env, ids[i]);
        steps[i].create = true;
        steps[i].events = &ev;
        steps[i].n_events = 1;
    }
    cr_assert_eq(loom_store_commit(env.s, steps, 300), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(machine_rc("m0"), LOOM_EMACHINE_NOT_FOUND);
    free(steps);
}

Test(commit, durable_across_reopen)
{
    loom_machine_key k = th_create(&env, "m", 7);
    loom_store_close(env.s);
    th_open(&env, NULL);
    loom_txn *t;
    loom_machine m = get("m", &t);
    cr_assert_eq(m.key.v, k.v);
    cr_assert_eq(m.last_event_id, 7);
    loom_txn_end(t);
    loom_machine_key k2 = th_create(&env, "m2", 1);
    cr_assert_eq(k2.v, k.v + 1, "keys stay monotonic across reopen");
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(commit, key_hint_finds_the_machine_or_reports_why_not)
{
    loom_machine_key k = th_create(&env, "m", 1);
    loom_machine_key other = th_create(&env, "other", 1);
    loom_new_event ev = {1, loom_slice_str("x")};
    loom_step st = th_step(&env, "m");
    st.key_hint = k;
    st.expected_last_event_id = 1;
    st.events = &ev;
    st.n_events = 1;
    st = th_commit1(&env, st);
    cr_assert_eq(st.last_event_id, 2);

    st = th_step(&env, "m");
    st.key_hint = other; /* names another machine: m is not what was read */
    st.expected_last_event_id = 2;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_ESTALE);

    st = th_step(&env, "m");
    st.remove = true;
    st.unchecked = true;
    th_commit1(&env, st);
    st = th_step(&env, "m");
    st.key_hint = k;
    st.unchecked = true;
    st.set_aux_state = true;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_EMACHINE_NOT_FOUND);
    th_create(&env, "m", 0);
    st.result = 0;
    cr_assert_eq(th_commit_result(&env, &st), LOOM_ESTALE, "removed and created again");
}

Test(commit, many_steps_many_machines_then_verify)
{
    enum { MACHINES = 50, ROUNDS = 40 };
    char ids[MACHINES][16];
    uint64_t last[MACHINES] = {0};
    loom_step steps[MACHINES];
    loom_new_event ev[3] = {{1, loom_slice_str("a")}, {2, loom_slice_str("bb")}, {3, {NULL, 0}}};
    unsigned seed = 3;
    for (int i = 0; i < MACHINES; i++)
        snprintf(ids[i], sizeof ids[i], "m%d", i);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < MACHINES; i++) {
            steps[i] = th_step(&env, ids[i]);
            steps[i].create = r == 0;
            steps[i].expected_last_event_id = last[i];
            steps[i].events = ev;
            steps[i].n_events = 1 + (uint32_t)(rand_r(&seed) % 3);
            steps[i].set_aux_state = rand_r(&seed) % 2;
            steps[i].aux_state = loom_slice_str(ids[(i + r) % MACHINES]);
            steps[i].timer_op = (loom_timer_op)(rand_r(&seed) % 3);
            steps[i].timer.deadline_ms = 1 + (uint64_t)(rand_r(&seed) % 1000);
            last[i] += steps[i].n_events;
        }
        cr_assert_eq(loom_store_commit(env.s, steps, MACHINES), 0);
        for (int i = 0; i < MACHINES; i++)
            cr_assert_eq(steps[i].result, 0, "%s", loom_err_name(steps[i].result));
    }
    loom_txn *t = th_read(&env);
    for (int i = 0; i < MACHINES; i++) {
        loom_machine m;
        cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str(ids[i]), &m), 0);
        cr_assert_eq(m.last_event_id, last[i]);
        cr_assert_lt(m.log_count, LOOM__LOG_COMPACT);
    }
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

static void fill_event(uint8_t *buf, size_t len, unsigned machine, uint64_t id)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(machine * 31 + id * 7 + i);
}

/* Compaction copies logged events it has just checked; small ones from a
 * bounded copy, the rest read again. Every size mix must move every event
 * intact: 16-byte events all fit the copy, 1000-byte ones partly, 9000-byte
 * ones never. */
Test(commit, compaction_moves_every_logged_event_intact)
{
    static const size_t sizes[3] = {16, 1000, 9000};
    enum { LAST = 3 * LOOM__LOG_COMPACT + 5 };
    static uint8_t data[3][4][9000];
    uint64_t last[3] = {0};
    unsigned seed = 7;
    while (last[0] < LAST || last[1] < LAST || last[2] < LAST) {
        loom_step steps[3];
        loom_new_event ev[3][4];
        for (unsigned m = 0; m < 3; m++) {
            steps[m] = th_step(&env, m == 0 ? "s0" : m == 1 ? "s1" : "s2");
            steps[m].create = last[m] == 0;
            steps[m].expected_last_event_id = last[m];
            steps[m].n_events = 1 + (uint32_t)(rand_r(&seed) % 4);
            for (uint32_t e = 0; e < steps[m].n_events; e++) {
                fill_event(data[m][e], sizes[m], m, last[m] + e + 1);
                ev[m][e] = (loom_new_event){1, loom_slice_of(data[m][e], sizes[m])};
            }
            steps[m].events = ev[m];
            last[m] += steps[m].n_events;
        }
        cr_assert_eq(loom_store_commit(env.s, steps, 3), 0, "%s", loom_errdetail());
        for (unsigned m = 0; m < 3; m++)
            cr_assert_eq(steps[m].result, 0, "%s", loom_err_name(steps[m].result));
    }
    loom_txn *t = th_read(&env);
    static uint8_t want[9000];
    for (unsigned m = 0; m < 3; m++) {
        loom_machine mm;
        const char *id = m == 0 ? "s0" : m == 1 ? "s1" : "s2";
        cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str(id), &mm), 0);
        loom_range all = {0, 0, LOOM_DIRECTION_FORWARD, false};
        loom_history it;
        cr_assert_eq(loom_history_begin(t, mm.key, &all, &it), 0);
        loom_event ev;
        uint64_t n = 0;
        int rc;
        while ((rc = loom_history_next(&it, &ev)) == 1) {
            n++;
            cr_assert_eq(ev.id, n);
            fill_event(want, sizes[m], m, n);
            cr_assert_eq(ev.data.len, sizes[m]);
            cr_assert_eq(memcmp(ev.data.ptr, want, sizes[m]), 0, "machine %u event %lu", m,
                         (unsigned long)n);
        }
        loom_history_end(&it);
        cr_assert_eq(rc, 0, "%s", loom_errdetail());
        cr_assert_eq(n, last[m]);
    }
    loom_txn_end(t);
    loom_store_stats stats;
    cr_assert_eq(loom_store_stats_get(env.s, &stats), 0);
    cr_assert_gt(stats.events_compacted, 3 * 2 * LOOM__LOG_COMPACT);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}
