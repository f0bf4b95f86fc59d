#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "helpers.h"
#include "../../storage/src/internal.h"

static th_env env;

static void teardown(void)
{
    th_teardown(&env);
}

TestSuite(store, .fini = teardown);

static char payload[100 * 1024];

/* Creates machine id with one event of `size` bytes; returns the rc. */
static int create_sized(const char *id, size_t size)
{
    memset(payload, 'p', sizeof payload);
    loom_new_event ev = {1, loom_slice_of(payload, size)};
    loom_step st = th_step(&env, id);
    st.create = true;
    st.events = &ev;
    st.n_events = 1;
    int rc = loom_store_commit(env.s, &st, 1);
    return rc != 0 ? rc : st.result;
}

/* Creates m0, m1, ... with a full payload until one fails or max are made.
 * Returns the failing rc (0 when all were made); *made gets the count made
 * and id (16 bytes, may be NULL) the last id tried. */
static int create_many(int max, int *made, char *id)
{
    char own[16];
    char *name = id ? id : own;
    int i, rc = 0;
    for (i = 0; i < max; i++) {
        snprintf(name, 16, "m%d", i);
        rc = create_sized(name, sizeof payload);
        if (rc != 0)
            break;
    }
    if (made)
        *made = i;
    return rc;
}

Test(store, map_grows_on_demand)
{
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 64 << 20};
    th_setup(&env, &o);
    int rc = create_many(100, NULL, NULL);
    cr_assert_eq(rc, 0, "%s %s", loom_err_name(rc), loom_errdetail());
    loom_store_stats st;
    cr_assert_eq(loom_store_stats_get(env.s, &st), 0);
    cr_assert_gt(st.map_grows, 0);
    cr_assert_gt(st.map_size, 8u << 20);
    cr_assert_leq(st.map_size, 64u << 20);
    cr_assert_eq(st.machines, 100);
    cr_assert_eq(st.sink_entries, 100);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(store, full_at_maximum_then_still_usable)
{
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 4 << 20};
    th_setup(&env, &o);
    char id[16];
    int i, rc = create_many(1000, &i, id);
    cr_assert_eq(rc, LOOM_ESTORAGE_FULL, "%s", loom_err_name(rc));
    cr_assert(strstr(loom_errdetail(), "maximum") != NULL, "detail: %s", loom_errdetail());
    cr_assert_gt(i, 10);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0, "consistent after a full map");

    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("m0"), &m), 0, "reads work");
    loom_txn_end(t);

    for (int j = 0; j < 5; j++) {
        snprintf(id, sizeof id, "m%d", j);
        loom_step st = th_step(&env, id);
        st.remove = true;
        st.unchecked = true;
        th_commit1(&env, st);
    }
    cr_assert_eq(create_sized("after", 1000), 0, "a smaller commit after removes works");
    loom_store_close(env.s);
    th_open(&env, &o);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

Test(store, growth_refused_while_this_thread_reads)
{
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 64 << 20};
    th_setup(&env, &o);
    loom_txn *t = th_read(&env);
    int rc = create_many(100, NULL, NULL);
    cr_assert_eq(rc, LOOM_EBUSY, "%s", loom_err_name(rc));
    loom_txn_end(t);
    cr_assert_eq(create_sized("later", sizeof payload), 0);
}

static atomic_bool stop;

static void *reader(void *arg)
{
    (void)arg;
    long reads = 0;
    while (!atomic_load(&stop)) {
        loom_txn *t;
        cr_assert_eq(loom_store_read_begin(env.s, &t), 0);
        loom_machine m;
        int rc = loom_store_machine_get(t, env.ns, loom_slice_str("m0"), &m);
        if (rc == 0) {
            loom_history it;
            loom_range r = {0};
            cr_assert_eq(loom_history_begin(t, m.key, &r, &it), 0);
            loom_event ev;
            while ((rc = loom_history_next(&it, &ev)) == 1)
                ;
            cr_assert_eq(rc, 0);
            loom_history_end(&it);
        }
        loom_txn_end(t);
        reads++;
    }
    return (void *)reads;
}

Test(store, readers_on_other_threads_during_growth)
{
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 256 << 20};
    th_setup(&env, &o);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, reader, NULL);
    int rc = create_many(200, NULL, NULL);
    cr_assert_eq(rc, 0, "%s %s", loom_err_name(rc), loom_errdetail());
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    loom_store_stats st;
    loom_store_stats_get(env.s, &st);
    cr_assert_gt(st.map_grows, 2);
}

Test(store, options_and_bad_open)
{
    memset(&env, 0, sizeof env);
    env.dir = th_mkdtemp();
    loom_store *s;
    loom_store_opts bad = {.flags = 1u << 9};
    cr_assert_eq(loom_store_open(&s, env.dir, &bad), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_store_open(&s, "/nonexistent/loom/dir", NULL), LOOM_ENOT_FOUND);
    cr_assert_str_neq(loom_errdetail(), "");
    loom_store_opts fast = {.flags = LOOM_STORE_NOSYNC | LOOM_STORE_WRITEMAP};
    th_setup(&env, &fast);
    cr_assert_eq(create_sized("m", 10), 0);
    loom_store_close(env.s);
    th_open(&env, NULL);
    loom_store_stats st;
    loom_store_stats_get(env.s, &st);
    cr_assert_eq(st.machines, 1);
}

Test(store, unknown_layout_version_refused)
{
    memset(&env, 0, sizeof env);
    th_open(&env, NULL);
    loom_store_close(env.s);
    env.s = NULL;
    MDB_env *e;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&e), 0);
    mdb_env_set_maxdbs(e, 32);
    cr_assert_eq(mdb_env_open(e, env.dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(e, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "counters", 0, &dbi), 0);
    uint8_t v[8];
    loom__put_be64(v, 99);
    MDB_val k = {6, "layout"}, d = {8, v};
    cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(e);
    loom_store *s;
    cr_assert_eq(loom_store_open(&s, env.dir, NULL), LOOM_EUNSUPPORTED);
}

/* A full disk, simulated with RLIMIT_FSIZE: LMDB's page writes beyond the
 * limit fail with EFBIG, as they would with ENOSPC. */
Test(store, full_disk_is_reported_and_the_store_stays_usable)
{
    loom_store_opts o = {.map_size_initial = 64 << 20, .map_size_max = 64 << 20};
    th_setup(&env, &o);
    cr_assert_eq(create_sized("before", 1000), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", env.dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {(rlim_t)sb.st_size, RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char id[16];
    int rc = create_many(200, NULL, id);
    cr_assert_eq(rc, LOOM_ESTORAGE_FULL, "%s %s", loom_err_name(rc), loom_errdetail());
    cr_assert_str_neq(loom_errdetail(), "");
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("before"), &m), 0);
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str(id), &m), LOOM_EMACHINE_NOT_FOUND,
                 "the failed commit left nothing");
    loom_txn_end(t);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
    lim.rlim_cur = RLIM_INFINITY;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cr_assert_eq(create_sized(id, sizeof payload), 0, "space again: commits work");
    loom_store_close(env.s);
    th_open(&env, &o);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

static void *end_txn(void *arg)
{
    loom_txn_end(arg);
    return NULL;
}

Test(store, read_transaction_may_end_on_another_thread)
{
    loom_store_opts o = {.map_size_initial = 1 << 20, .map_size_max = 64 << 20};
    th_setup(&env, &o);
    loom_txn *t = th_read(&env);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, end_txn, t), 0);
    pthread_join(th, NULL);
    int rc = create_many(30, NULL, NULL);
    cr_assert_eq(rc, 0, "growth is not blocked: %s %s", loom_err_name(rc), loom_errdetail());
    loom_store_stats st;
    loom_store_stats_get(env.s, &st);
    cr_assert_gt(st.map_grows, 0);
}
