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

TestSuite(machine, .init = setup, .fini = teardown);

Test(machine, get_by_name_and_key)
{
    loom_machine_key k = th_create(&env, "m", 2);
    loom_txn *t = th_read(&env);
    loom_machine a, b;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("m"), &a), 0);
    cr_assert_eq(loom_store_machine_get_by_key(t, k, &b), 0);
    cr_assert_eq(a.key.v, k.v);
    cr_assert_eq(b.ns.v, env.ns.v);
    cr_assert_eq(b.id.len, 1);
    cr_assert_arr_eq(b.id.ptr, "m", 1);
    cr_assert_eq(b.last_event_id, 2);
    cr_assert_eq(a.last_hash, b.last_hash);
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("x"), &a), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(loom_store_machine_get(t, (loom_ns_id){42}, loom_slice_str("m"), &a),
                 LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str(""), &a), LOOM_EINVALID_ARGUMENT);
    loom_txn_end(t);
}

Test(machine, keys_are_monotonic)
{
    uint64_t last = 0;
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "z%02d", 19 - i);
        loom_machine_key k = th_create(&env, id, 0);
        cr_assert_gt(k.v, last);
        last = k.v;
    }
}

Test(machine, list_pages_and_filters)
{
    char id[16];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        th_create(&env, id, 0);
        if (i % 5 == 0) {
            loom_step st = th_step(&env, id);
            st.unchecked = true;
            st.status = LOOM_STATUS_FAILED;
            st.reason = loom_slice_str("broken");
            th_commit1(&env, st);
        }
    }
    loom_ns_id other;
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("zzz"), loom_slice_str(""), &other), 0);
    loom_step st = th_step(&env, "m99");
    st.ns = other;
    st.create = true;
    th_commit1(&env, st);

    loom_txn *t = th_read(&env);
    loom_machine page[10];
    loom_slice next = {NULL, 0};
    bool more = false;
    int n = loom_store_machines_list(t, env.ns, LOOM_STATUS_NONE, next, false, page, 10, &next, &more);
    cr_assert_eq(n, 10);
    cr_assert(more);
    cr_assert_arr_eq(page[0].id.ptr, "m00", 3);
    cr_assert_arr_eq(next.ptr, "m09", 3);
    int total = n;
    while (more) {
        n = loom_store_machines_list(t, env.ns, LOOM_STATUS_NONE, next, true, page, 10, &next, &more);
        cr_assert_geq(n, 0);
        total += n;
    }
    cr_assert_eq(total, 25, "other namespaces are not listed");
    n = loom_store_machines_list(t, env.ns, LOOM_STATUS_FAILED, next, false, page, 10, &next, &more);
    cr_assert_eq(n, 5);
    cr_assert(!more);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "m%02d", i * 5);
        cr_assert_arr_eq(page[i].id.ptr, id, 3);
        cr_assert_eq(page[i].status, LOOM_STATUS_FAILED);
        cr_assert_eq(page[i].status_before_failure, LOOM_STATUS_WORKING);
    }
    n = loom_store_machines_list(t, env.ns, LOOM_STATUS_WORKING, loom_slice_str("m20"), true, page,
                                 10, &next, &more);
    cr_assert_eq(n, 4);
    cr_assert(!more);
    cr_assert_eq(loom_store_machines_list(t, env.ns, (loom_status)8, next, false, page, 10, NULL, NULL),
                 LOOM_EINVALID_ARGUMENT);
    loom_txn_end(t);
}
