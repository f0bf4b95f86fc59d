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

TestSuite(verify, .init = setup, .fini = teardown);

struct seen {
    int n;
    char table[64];
    uint64_t key, item;
};

static void on_problem(void *user, const loom_verify_problem *p)
{
    struct seen *s = user;
    if (s->n++ == 0) {
        snprintf(s->table, sizeof s->table, "%s", p->table);
        s->key = p->key.v;
        s->item = p->item;
    }
    cr_assert_eq(p->err, LOOM_ECORRUPTED);
    cr_assert_not_null(p->detail);
}

/* With the store closed, flips one byte in every copy of `needle` in
 * data.mdb (LMDB keeps old page versions, so a string may appear more than
 * once), then opens the store again. */
static int flip_in_file(const char *needle, size_t offset_in_needle)
{
    loom_store_close(env.s);
    env.s = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", env.dir);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    size_t nl = strlen(needle);
    int flips = 0;
    for (long i = 0; i + (long)nl <= size; i++) {
        if (memcmp(buf + i, needle, nl) != 0)
            continue;
        fseek(f, i + (long)offset_in_needle, SEEK_SET);
        fputc(buf[i + (long)offset_in_needle] ^ 0x20, f);
        flips++;
    }
    fclose(f);
    free(buf);
    th_open(&env, NULL);
    return flips;
}

/* Events of "good" and the first COMPACTED of "victim" are compacted into
 * `events` (created in one step); victim's last 3 stay in the event log. */
#define COMPACTED ((int)LOOM__LOG_COMPACT + 4)
#define VICTIM_LAST (COMPACTED + 3)

static void populate(void)
{
    th_create(&env, "good", COMPACTED);
    loom_new_event evs[VICTIM_LAST];
    char data[VICTIM_LAST][32];
    for (int i = 0; i < VICTIM_LAST; i++) {
        snprintf(data[i], 32, "EVENT-PAYLOAD-%02d", i + 1);
        evs[i] = (loom_new_event){1, loom_slice_str(data[i])};
    }
    loom_step st = th_step(&env, "victim");
    st.create = true;
    st.events = evs;
    st.n_events = COMPACTED;
    st.set_aux_state = true;
    st.aux_state = loom_slice_str("AUX-STATE-OF-THE-VICTIM");
    th_commit1(&env, st);
    for (int i = COMPACTED; i < VICTIM_LAST; i++) {
        st = th_step(&env, "victim");
        st.expected_last_event_id = (uint64_t)i;
        st.events = &evs[i];
        st.n_events = 1;
        th_commit1(&env, st);
    }
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 0);
}

static int read_all(const char *id, loom_range r, uint64_t *last_ok)
{
    loom_txn *t = th_read(&env);
    loom_machine m;
    int rc = loom_store_machine_get(t, env.ns, loom_slice_str(id), &m);
    if (rc == 0) {
        loom_history it;
        rc = loom_history_begin(t, m.key, &r, &it);
        loom_event ev;
        *last_ok = 0;
        while (rc == 0 && (rc = loom_history_next(&it, &ev)) == 1) {
            cr_assert(ev.data.len < 5 || memcmp(ev.data.ptr, "EVEnT", 5) != 0,
                      "never serves damaged bytes");
            *last_ok = ev.id;
            rc = 0;
        }
        loom_history_end(&it);
    }
    loom_txn_end(t);
    return rc;
}

Test(verify, flipped_event_byte_is_never_served)
{
    populate();
    /* both copies: the compacted record and its sink entry */
    cr_assert_geq(flip_in_file("EVENT-PAYLOAD-04", 3), 2);
    uint64_t last_ok;
    loom_range fwd = {0}, bwd = {0, 0, LOOM_DIRECTION_BACKWARD, false};
    cr_assert_eq(read_all("victim", fwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, 3, "events before the damage are fine");
    cr_assert(strstr(loom_errdetail(), "event 4") != NULL, "%s", loom_errdetail());
    cr_assert_eq(read_all("victim", bwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, 6, "5 cannot be checked against a damaged 4");
    /* a range that does not touch event 4 nor needs it as a predecessor */
    loom_range tail = {5, 0, LOOM_DIRECTION_FORWARD, true};
    cr_assert_eq(read_all("victim", tail, &last_ok), 0);
    cr_assert_eq(last_ok, VICTIM_LAST);
    loom_range pred = {4, 0, LOOM_DIRECTION_FORWARD, true};
    cr_assert_eq(read_all("victim", pred, &last_ok), LOOM_ECORRUPTED, "event 5 chains to 4");
    cr_assert_eq(read_all("good", fwd, &last_ok), 0);
    cr_assert_eq(last_ok, COMPACTED);

    struct seen s = {0};
    cr_assert_eq(loom_store_verify(env.s, on_problem, &s), 2, "the history and the sink entry");
    cr_assert_str_eq(s.table, "events");
    cr_assert_eq(s.item, 4);
}

Test(verify, flipped_logged_event_is_never_served)
{
    populate();
    char needle[32];
    snprintf(needle, sizeof needle, "EVENT-PAYLOAD-%02d", VICTIM_LAST - 1);
    cr_assert_geq(flip_in_file(needle, 3), 1, "in the log (and stale page copies)");
    uint64_t last_ok;
    loom_range fwd = {0}, bwd = {0, 0, LOOM_DIRECTION_BACKWARD, false};
    cr_assert_eq(read_all("victim", fwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, VICTIM_LAST - 2);
    cr_assert_eq(read_all("victim", bwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, 0, "the last cannot be checked against a damaged predecessor");
    loom_range head = {0, VICTIM_LAST - 2, LOOM_DIRECTION_FORWARD, false};
    cr_assert_eq(read_all("victim", head, &last_ok), 0);
    struct seen s = {0};
    cr_assert_eq(loom_store_verify(env.s, on_problem, &s), 2);
    cr_assert_str_eq(s.table, "events");
    cr_assert_eq(s.item, VICTIM_LAST - 1);
    /* A step that would move the damaged record out of the log is
     * refused alone; the rest of its batch commits. */
    loom_new_event ev[LOOM__LOG_COMPACT];
    for (unsigned i = 0; i < LOOM__LOG_COMPACT; i++)
        ev[i] = (loom_new_event){1, loom_slice_str("more")};
    loom_step steps[2] = {th_step(&env, "victim"), th_step(&env, "good")};
    steps[0].expected_last_event_id = VICTIM_LAST;
    steps[0].events = ev;
    steps[0].n_events = LOOM__LOG_COMPACT;
    steps[1].expected_last_event_id = COMPACTED;
    steps[1].events = ev;
    steps[1].n_events = 1;
    cr_assert_eq(loom_store_commit(env.s, steps, 2), 0);
    cr_assert_eq(steps[0].result, LOOM_ECORRUPTED);
    cr_assert_eq(steps[1].result, 0);
}

Test(verify, flipped_meta_byte_is_detected)
{
    populate();
    cr_assert_geq(flip_in_file("AUX-STATE-OF-THE-VICTIM", 5), 1);
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("victim"), &m), LOOM_ECORRUPTED);
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str("good"), &m), 0);
    loom_txn_end(t);
    struct seen s = {0};
    cr_assert_geq(loom_store_verify(env.s, on_problem, &s), 1);
    cr_assert_str_eq(s.table, "meta");
    /* a step on the damaged machine is refused alone */
    loom_step steps[2] = {th_step(&env, "victim"), th_step(&env, "good")};
    steps[0].unchecked = steps[1].unchecked = true;
    steps[0].set_aux_state = steps[1].set_aux_state = true;
    cr_assert_eq(loom_store_commit(env.s, steps, 2), 0);
    cr_assert_eq(steps[0].result, LOOM_ECORRUPTED);
    cr_assert_eq(steps[1].result, 0);
}

static loom_machine_key key_of(const char *id)
{
    loom_txn *t = th_read(&env);
    loom_machine m;
    cr_assert_eq(loom_store_machine_get(t, env.ns, loom_slice_str(id), &m), 0);
    loom_txn_end(t);
    return m.key;
}

/* Closes the store and opens a write transaction on one table of its raw
 * LMDB environment, to damage it behind the store's back. */
static void raw_open(MDB_env **e, MDB_txn **txn, MDB_dbi *dbi, const char *table)
{
    loom_store_close(env.s);
    env.s = NULL;
    cr_assert_eq(mdb_env_create(e), 0);
    mdb_env_set_maxdbs(*e, 32);
    cr_assert_eq(mdb_env_open(*e, env.dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(*e, NULL, 0, txn), 0);
    cr_assert_eq(mdb_dbi_open(*txn, table, 0, dbi), 0);
}

/* Commits the damage and opens the store again. */
static void raw_close(MDB_env *e, MDB_txn *txn)
{
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(e);
    th_open(&env, NULL);
}

Test(verify, missing_event_is_a_gap)
{
    populate();
    loom_machine_key key = key_of("victim");
    MDB_env *e;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_open(&e, &txn, &dbi, "events");
    uint8_t kb[16];
    loom__key2(kb, key.v, 2);
    MDB_val k = {16, kb};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_close(e, txn);
    uint64_t last_ok;
    loom_range fwd = {0};
    cr_assert_eq(read_all("victim", fwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, 1);
    struct seen s = {0};
    cr_assert_geq(loom_store_verify(env.s, on_problem, &s), 1);
    cr_assert_eq(s.key, key.v);
}

Test(verify, swapped_records_break_the_chain)
{
    populate();
    loom_machine_key good = key_of("good");
    loom_machine_key victim = key_of("victim");
    /* Put good's event 3 (a valid record with a valid CRC) in victim's slot 3. */
    MDB_env *e;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_open(&e, &txn, &dbi, "events");
    uint8_t kb[16], copy[256];
    loom__key2(kb, good.v, 3);
    MDB_val k = {16, kb}, d;
    cr_assert_eq(mdb_get(txn, dbi, &k, &d), 0);
    memcpy(copy, d.mv_data, d.mv_size);
    d.mv_data = copy;
    loom__key2(kb, victim.v, 3);
    cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
    raw_close(e, txn);
    uint64_t last_ok;
    loom_range fwd = {0};
    cr_assert_eq(read_all("victim", fwd, &last_ok), LOOM_ECORRUPTED);
    cr_assert_eq(last_ok, 2);
    cr_assert_eq(loom_store_verify(env.s, NULL, NULL), 1);
    loom_range from4 = {3, 0, LOOM_DIRECTION_FORWARD, true};
    cr_assert_eq(read_all("victim", from4, &last_ok), LOOM_ECORRUPTED, "4 does not chain to it");
    loom_range from5 = {4, 0, LOOM_DIRECTION_FORWARD, true};
    cr_assert_eq(read_all("victim", from5, &last_ok), 0);
}

Test(verify, orphans_and_index_mismatches)
{
    populate();
    MDB_env *e;
    MDB_txn *txn;
    MDB_dbi dbi;
    raw_open(&e, &txn, &dbi, "timers");
    uint8_t kb[16];
    loom__key2(kb, 500, 12345);
    MDB_val k = {16, kb}, d = {0, ""};
    cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
    raw_close(e, txn);
    struct seen s = {0};
    cr_assert_eq(loom_store_verify(env.s, on_problem, &s), 1);
    cr_assert_str_eq(s.table, "timers");
    cr_assert_eq(s.key, 12345);
}
