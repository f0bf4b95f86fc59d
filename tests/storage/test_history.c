#include "helpers.h"
#include "../../storage/src/internal.h"

static th_env env;
static loom_machine_key k100, k8, kempty;

static void setup(void)
{
    th_setup(&env, NULL);
    k100 = th_create(&env, "m100", 100);
    k8 = th_create(&env, "m8", 8);
    kempty = th_create(&env, "empty", 0);
}

static void teardown(void)
{
    th_teardown(&env);
}

/* Reads the range and returns the ids in order, terminated by 0. */
static size_t read_ids(loom_machine_key key, loom_range r, uint64_t *ids, size_t cap)
{
    loom_txn *t = th_read(&env);
    loom_history it;
    int rc = loom_history_begin(t, key, &r, &it);
    cr_assert_eq(rc, 0, "begin: %s", loom_err_name(rc));
    size_t n = 0;
    loom_event ev;
    while ((rc = loom_history_next(&it, &ev)) == 1) {
        cr_assert_lt(n, cap);
        ids[n++] = ev.id;
    }
    cr_assert_eq(rc, 0, "next: %s %s", loom_err_name(rc), loom_errdetail());
    loom_history_end(&it);
    loom_txn_end(t);
    return n;
}

static void expect_ids(loom_machine_key key, loom_range r, const uint64_t *want, size_t n_want)
{
    uint64_t got[200];
    size_t n = read_ids(key, r, got, 200);
    cr_assert_leq(n_want, 200);
    cr_assert_eq(n, n_want, "range after=%lu/%d limit=%u dir=%d: %zu events, want %zu",
                 (unsigned long)r.after, r.has_after, r.limit, r.direction, n, n_want);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "event %zu: %lu, want %lu", i, (unsigned long)got[i],
                     (unsigned long)want[i]);
}

static loom_range R(uint64_t after, bool has_after, uint32_t limit, loom_direction dir)
{
    loom_range r = {after, limit, dir, has_after};
    return r;
}

#define FWD LOOM_DIRECTION_FORWARD
#define BWD LOOM_DIRECTION_BACKWARD

TestSuite(history, .init = setup, .fini = teardown);

Test(history, machinegun_examples)
{
    expect_ids(k100, R(5, true, 3, BWD), (uint64_t[]){4, 3, 2}, 3);
    expect_ids(k100, R(4, true, 4, FWD), (uint64_t[]){5, 6, 7, 8}, 4);
    expect_ids(k8, R(0, false, 2, BWD), (uint64_t[]){8, 7}, 2);
}

Test(history, whole_history_both_ways)
{
    uint64_t want[100];
    for (int i = 0; i < 100; i++)
        want[i] = (uint64_t)i + 1;
    expect_ids(k100, R(0, false, 0, FWD), want, 100);
    for (int i = 0; i < 100; i++)
        want[i] = 100 - (uint64_t)i;
    expect_ids(k100, R(0, false, 0, BWD), want, 100);
}

Test(history, after_beyond_last_event)
{
    expect_ids(k8, R(8, true, 0, FWD), NULL, 0);
    expect_ids(k8, R(100, true, 5, FWD), NULL, 0);
    expect_ids(k8, R(UINT64_MAX, true, 0, FWD), NULL, 0);
    /* backward from beyond the end starts at the last event */
    expect_ids(k8, R(100, true, 3, BWD), (uint64_t[]){8, 7, 6}, 3);
    expect_ids(k8, R(9, true, 2, BWD), (uint64_t[]){8, 7}, 2);
}

Test(history, after_zero_and_one)
{
    expect_ids(k8, R(0, true, 3, FWD), (uint64_t[]){1, 2, 3}, 3);
    expect_ids(k8, R(0, true, 0, BWD), NULL, 0);
    expect_ids(k8, R(1, true, 0, BWD), NULL, 0);
    expect_ids(k8, R(2, true, 0, BWD), (uint64_t[]){1}, 1);
    expect_ids(k8, R(7, true, 0, FWD), (uint64_t[]){8}, 1);
}

Test(history, limit_zero_is_unlimited_and_limit_clamps)
{
    expect_ids(k8, R(5, true, 0, FWD), (uint64_t[]){6, 7, 8}, 3);
    expect_ids(k8, R(5, true, 0, BWD), (uint64_t[]){4, 3, 2, 1}, 4);
    expect_ids(k8, R(0, false, 1000, FWD), (uint64_t[]){1, 2, 3, 4, 5, 6, 7, 8}, 8);
    expect_ids(k8, R(0, false, 1, FWD), (uint64_t[]){1}, 1);
}

Test(history, empty_history)
{
    expect_ids(kempty, R(0, false, 0, FWD), NULL, 0);
    expect_ids(kempty, R(0, false, 0, BWD), NULL, 0);
    expect_ids(kempty, R(3, true, 2, BWD), NULL, 0);
}

Test(history, event_fields_round_trip)
{
    loom_txn *t = th_read(&env);
    loom_history it;
    loom_range r = R(41, true, 1, FWD);
    cr_assert_eq(loom_history_begin(t, k100, &r, &it), 0);
    loom_event ev;
    cr_assert_eq(loom_history_next(&it, &ev), 1);
    cr_assert_eq(ev.id, 42);
    cr_assert_eq(ev.created_at_ms, 1000);
    cr_assert_eq(ev.format_version, 1);
    cr_assert_eq(ev.data.len, strlen("m100:42"));
    cr_assert_arr_eq(ev.data.ptr, "m100:42", ev.data.len);
    cr_assert_eq(loom_history_next(&it, &ev), 0);
    cr_assert_eq(loom_history_next(&it, &ev), 0, "stays at the end");
    loom_history_end(&it);
    loom_history_end(&it);
    loom_txn_end(t);
}

Test(history, unknown_machine_and_bad_direction)
{
    loom_txn *t = th_read(&env);
    loom_history it;
    loom_range r = R(0, false, 0, FWD);
    cr_assert_eq(loom_history_begin(t, (loom_machine_key){999}, &r, &it), LOOM_EMACHINE_NOT_FOUND);
    loom_history_end(&it);
    r.direction = (loom_direction)7;
    cr_assert_eq(loom_history_begin(t, k8, &r, &it), LOOM_EINVALID_ARGUMENT);
    loom_history_end(&it);
    loom_txn_end(t);
}

Test(history, snapshot_isolation)
{
    loom_txn *t = th_read(&env);
    loom_new_event ev = {1, loom_slice_str("late")};
    loom_step st = th_step(&env, "m8");
    st.expected_last_event_id = 8;
    st.events = &ev;
    st.n_events = 1;
    th_commit1(&env, st);
    uint64_t ids[16];
    loom_history it;
    loom_range r = R(0, false, 0, FWD);
    cr_assert_eq(loom_history_begin(t, k8, &r, &it), 0);
    size_t n = 0;
    loom_event e;
    while (loom_history_next(&it, &e) == 1)
        ids[n++] = e.id;
    loom_history_end(&it);
    loom_txn_end(t);
    cr_assert_eq(n, 8, "an open read transaction keeps its snapshot");
    cr_assert_eq(read_ids(k8, r, ids, 16), 9);
}

/* Expected ids of a range by the definition, for the exhaustive check. */
static size_t model(uint64_t last, loom_range r, uint64_t *ids)
{
    size_t n = 0;
    if (r.direction == FWD) {
        for (uint64_t id = r.has_after ? r.after + 1 : 1; id <= last && id != 0; id++) {
            if (r.limit && n == r.limit)
                break;
            ids[n++] = id;
        }
    } else {
        uint64_t top = r.has_after ? (r.after == 0 ? 0 : r.after - 1) : last;
        for (uint64_t id = top < last ? top : last; id >= 1; id--) {
            if (r.limit && n == r.limit)
                break;
            ids[n++] = id;
        }
    }
    return n;
}

Test(history, every_range_across_log_and_compacted_events)
{
    /* One event per step: a compaction every LOOM__LOG_COMPACT events, the
     * last `logged` stay in the log. */
    const uint64_t last = 2 * LOOM__LOG_COMPACT + 8, logged = 8;
    th_create(&env, "mixed", 0);
    for (uint64_t i = 0; i < last; i++) {
        char data[16];
        snprintf(data, sizeof data, "e%lu", (unsigned long)i + 1);
        loom_new_event ev = {1, loom_slice_str(data)};
        loom_step st = th_step(&env, "mixed");
        st.expected_last_event_id = i;
        st.events = &ev;
        st.n_events = 1;
        th_commit1(&env, st);
    }
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("mixed"), &m), 0);
    cr_assert_eq(m.log_count, logged);
    loom_txn_end(t);
    uint32_t limits[] = {0, 1, 2, 5, 17, 100};
    for (uint64_t after = 0; after <= last + 3; after++)
        for (int has = 0; has < 2; has++)
            for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
                for (int dir = 0; dir < 2; dir++) {
                    loom_range r = R(after, has, limits[l], dir ? BWD : FWD);
                    uint64_t want[128];
                    size_t n = model(last, r, want);
                    expect_ids(m.key, r, want, n);
                }
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(history, data_survives_compaction)
{
    loom_new_event evs[7];
    char data[7][16];
    for (int i = 0; i < 7; i++) {
        snprintf(data[i], 16, "d%d", i);
        evs[i] = (loom_new_event){(uint32_t)i, loom_slice_str(data[i])};
    }
    th_create(&env, "c", 0);
    for (uint64_t i = 0; i < 5; i++) {
        loom_step st = th_step(&env, "c");
        st.expected_last_event_id = i * 7;
        st.events = evs;
        st.n_events = 7;
        st.now_ms = 100 + i;
        th_commit1(&env, st);
    }
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("c"), &m), 0);
    loom_history it;
    loom_range r = {0};
    cr_assert_eq(loom_history_begin(t, m.key, &r, &it), 0);
    loom_event ev;
    for (uint64_t id = 1; id <= 35; id++) {
        cr_assert_eq(loom_history_next(&it, &ev), 1);
        cr_assert_eq(ev.id, id);
        cr_assert_eq(ev.format_version, (id - 1) % 7);
        cr_assert_eq(ev.created_at_ms, 100 + (id - 1) / 7);
        cr_assert_eq(ev.data.len, 2);
        cr_assert_arr_eq(ev.data.ptr, data[(id - 1) % 7], 2);
    }
    cr_assert_eq(loom_history_next(&it, &ev), 0);
    loom_history_end(&it);
    loom_txn_end(t);
}
