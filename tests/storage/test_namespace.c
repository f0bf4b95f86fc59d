#include "helpers.h"

static th_env env;

static void setup(void)
{
    memset(&env, 0, sizeof env);
    th_open(&env, NULL);
}

static void teardown(void)
{
    th_teardown(&env);
}

TestSuite(namespace, .init = setup, .fini = teardown);

Test(namespace, create_get_update_list)
{
    loom_ns_id a, b;
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("invoice"), loom_slice_str("c1"), &a), 0);
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("batch"), loom_slice_str(""), &b), 0);
    cr_assert_eq(a.v, 1);
    cr_assert_eq(b.v, 2);
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("invoice"), loom_slice_str("x"), NULL),
                 LOOM_ENAMESPACE_ALREADY_EXISTS);
    cr_assert_eq(loom_store_ns_update(env.s, loom_slice_str("invoice"), loom_slice_str("c2")), 0);
    cr_assert_eq(loom_store_ns_update(env.s, loom_slice_str("nope"), loom_slice_str("c2")),
                 LOOM_ENAMESPACE_NOT_FOUND);

    loom_txn *t = th_read(&env);
    loom_ns_info info;
    cr_assert_eq(loom_store_ns_get(t, loom_slice_str("invoice"), &info), 0);
    cr_assert_eq(info.id.v, a.v);
    cr_assert_eq(info.config.len, 2);
    cr_assert_arr_eq(info.config.ptr, "c2", 2);
    cr_assert_eq(loom_store_ns_get_by_id(t, b, &info), 0);
    cr_assert_eq(info.name.len, 5);
    cr_assert_arr_eq(info.name.ptr, "batch", 5);
    cr_assert_eq(loom_store_ns_get(t, loom_slice_str("nope"), &info), LOOM_ENAMESPACE_NOT_FOUND);
    cr_assert_eq(loom_store_ns_get_by_id(t, (loom_ns_id){9}, &info), LOOM_ENAMESPACE_NOT_FOUND);
    loom_ns_info list[4];
    cr_assert_eq(loom_store_ns_list(t, loom_slice_str(""), list, 4), 2);
    cr_assert_arr_eq(list[0].name.ptr, "batch", 5, "name order");
    cr_assert_eq(loom_store_ns_list(t, loom_slice_str("batch"), list, 4), 1);
    cr_assert_eq(list[0].id.v, a.v);
    cr_assert_eq(loom_store_ns_list(t, loom_slice_str(""), list, 1), 1);
    loom_txn_end(t);
}

Test(namespace, bad_names)
{
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str(""), loom_slice_str(""), NULL),
                 LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str(name), loom_slice_str(""), NULL),
                 LOOM_EINVALID_ARGUMENT);
    cr_assert_str_neq(loom_errdetail(), "");
}

Test(namespace, ids_survive_reopen)
{
    loom_ns_id a, b;
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("x"), loom_slice_str(""), &a), 0);
    loom_store_close(env.s);
    th_open(&env, NULL);
    cr_assert_eq(loom_store_ns_create(env.s, loom_slice_str("y"), loom_slice_str(""), &b), 0);
    cr_assert_eq(b.v, a.v + 1);
}
