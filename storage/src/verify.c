/* loom_store_verify: an offline-style walk of every table in one read
 * transaction, checking each record and each cross-reference. It reports
 * and counts problems; it never stops at the first one. */
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

struct verify {
    loom_txn *t;
    loom_verify_cb cb;
    void *user;
    int bad;
    uint64_t events_seen;
};

static void report(struct verify *v, int table, uint64_t key, uint64_t item, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void report(struct verify *v, int table, uint64_t key, uint64_t item, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    v->bad++;
    if (v->cb) {
        loom_verify_problem p = {LOOM_ECORRUPTED, loom__db_names[table], {key}, item, detail};
        v->cb(v->user, &p);
    }
}

static bool exists(struct verify *v, int db, const void *k, size_t kn, MDB_val *d)
{
    MDB_val key = loom__val(k, kn), tmp;
    return mdb_get(v->t->txn, v->t->s->dbi[db], &key, d ? d : &tmp) == 0;
}

/* Checks one record of a machine's history against the chain. */
static bool check_event(struct verify *v, const loom_machine *m, MDB_val rec, uint64_t id,
                        uint64_t *hash)
{
    loom_event ev;
    uint64_t h;
    if (loom__event_decode(rec.mv_data, rec.mv_size, hash, &ev, &h) != 0 || ev.id != id) {
        report(v, LOOM__DB_EVENTS, m->key.v, id, "%s",
               ev.id != id ? "record holds another event" : loom_errdetail());
        return false;
    }
    *hash = h;
    return true;
}

/* The compacted part of a history: ids 1..n contiguous in `events`. */
static bool verify_compacted(struct verify *v, MDB_cursor *c, const loom_machine *m, uint64_t n,
                             uint64_t *hash)
{
    uint8_t kb[16];
    loom__key2(kb, m->key.v, 0);
    MDB_val k = loom__val(kb, 16), d;
    uint64_t expect = 1;
    int rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    for (; rc == 0 && k.mv_size == 16 && loom__get_be64(k.mv_data) == m->key.v;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        uint64_t id = loom__get_be64((uint8_t *)k.mv_data + 8);
        if (id != expect || id > n) {
            report(v, LOOM__DB_EVENTS, m->key.v, id, "expected event %" PRIu64 " (of %" PRIu64 ")",
                   expect, n);
            return false;
        }
        if (!check_event(v, m, d, id, hash))
            return false;
        expect++;
    }
    if (expect - 1 != n)
        report(v, LOOM__DB_EVENTS, m->key.v, expect, "compacted history ends at %" PRIu64
               ", meta says %" PRIu64, expect - 1, n);
    return expect - 1 == n;
}

/* Walks the history of one machine: ids 1..last, CRC and chain, from
 * `events` and then from the log. */
static void verify_history(struct verify *v, MDB_cursor *c, const loom_machine *m)
{
    uint64_t hash = loom__chain_seed(m->key), first_logged = m->last_event_id - m->log_count + 1;
    uint64_t seqs[LOOM__LOG_COMPACT], seq = m->log_tail_seq;
    v->events_seen += m->last_event_id;
    if (!verify_compacted(v, c, m, first_logged - 1, &hash))
        return;
    for (uint64_t id = m->last_event_id; id >= first_logged && id > 0; id--) {
        MDB_val rec;
        seqs[id - first_logged] = seq;
        if (loom__log_read(v->t->s, v->t->txn, NULL, m->key, seq, id, &rec, &seq) != 0) {
            report(v, LOOM__DB_SINK, m->key.v, id, "%s", loom_errdetail());
            return;
        }
    }
    for (uint64_t id = first_logged; id <= m->last_event_id; id++) {
        MDB_val rec;
        uint64_t prev;
        loom__log_read(v->t->s, v->t->txn, NULL, m->key, seqs[id - first_logged], id, &rec, &prev);
        if (!check_event(v, m, rec, id, &hash))
            return;
    }
    if (hash != m->last_hash)
        report(v, LOOM__DB_META, m->key.v, m->last_event_id, "last hash differs from the chain");
}

static void verify_machine(struct verify *v, MDB_cursor *ev, const loom_machine *m)
{
    uint8_t nk[LOOM__MACHINE_NAME_KEY_MAX], tk[16];
    MDB_val d;
    if (m->id.len == 0 || m->id.len > LOOM_STORE_MAX_ID_LEN) {
        report(v, LOOM__DB_META, m->key.v, 0, "machine id of %zu bytes", m->id.len);
        return;
    }
    size_t nn = loom__machine_name_key(nk, m->ns, m->id);
    if (!exists(v, LOOM__DB_MACHINES, nk, nn, &d) || d.mv_size != 8 ||
        loom__get_be64(d.mv_data) != m->key.v)
        report(v, LOOM__DB_MACHINES, m->key.v, 0, "name index does not point to the machine");
    if (m->wake_ms != loom__wake_of(m))
        report(v, LOOM__DB_META, m->key.v, 0, "wake time disagrees with timer and retry");
    loom__key2(tk, m->wake_ms, m->key.v);
    if (m->wake_ms && !exists(v, LOOM__DB_TIMERS, tk, 16, NULL))
        report(v, LOOM__DB_TIMERS, m->key.v, m->wake_ms, "machine's wake time not indexed");
    verify_history(v, ev, m);
}

static int verify_machines(struct verify *v)
{
    MDB_cursor *c, *ev;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_META], &c);
    if (rc == 0 && (rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_EVENTS], &ev)) != 0)
        mdb_cursor_close(c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify machines");
    MDB_val k, d;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        loom_machine m;
        uint64_t key = k.mv_size == 8 ? loom__get_be64(k.mv_data) : 0;
        if (key == 0 || loom__meta_decode(d.mv_data, d.mv_size, &m) != 0) {
            report(v, LOOM__DB_META, key, 0, "%s", key ? loom_errdetail() : "bad key size");
            continue;
        }
        m.key.v = key;
        verify_machine(v, ev, &m);
    }
    mdb_cursor_close(ev);
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify machines");
}

/* Entries of `events`, `timers`, `machines` whose machine is gone. */
static int verify_orphans(struct verify *v, int db)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[db], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify orphans");
    MDB_val k, d;
    uint64_t last_key = 0;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        uint64_t key = 0;
        if (db == LOOM__DB_EVENTS && k.mv_size == 16)
            key = loom__get_be64(k.mv_data);
        else if (db == LOOM__DB_TIMERS && k.mv_size == 16)
            key = loom__get_be64((uint8_t *)k.mv_data + 8);
        else if (db == LOOM__DB_MACHINES && d.mv_size == 8)
            key = loom__get_be64(d.mv_data);
        if (key != 0 && key == last_key)
            continue;
        last_key = key;
        uint8_t kb[8];
        loom__put_be64(kb, key);
        if (key == 0 || !exists(v, LOOM__DB_META, kb, 8, NULL))
            report(v, db, key, 0, "entry for a machine that does not exist");
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify orphans");
}

static int verify_notifications(struct verify *v)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_NOTIFICATIONS], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify notifications");
    MDB_val k, d;
    size_t n = 0;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        loom_notification nt;
        uint64_t id = k.mv_size == 8 ? loom__get_be64(k.mv_data) : 0;
        n++;
        if (id == 0 || loom__notification_decode(d.mv_data, d.mv_size, &nt) != 0) {
            report(v, LOOM__DB_NOTIFICATIONS, 0, id, "%s", id ? loom_errdetail() : "bad key");
            continue;
        }
        uint8_t kb[16];
        loom__key2(kb, nt.key.v, id);
        if (!exists(v, LOOM__DB_MACHINE_NOTIFICATIONS, kb, 16, NULL) ||
            !exists(v, LOOM__DB_META, kb, 8, NULL))
            report(v, LOOM__DB_NOTIFICATIONS, nt.key.v, id, "not indexed for a live machine");
    }
    mdb_cursor_close(c);
    MDB_stat st;
    if (mdb_stat(v->t->txn, v->t->s->dbi[LOOM__DB_MACHINE_NOTIFICATIONS], &st) == 0 &&
        st.ms_entries != n)
        report(v, LOOM__DB_MACHINE_NOTIFICATIONS, 0, 0, "%zu index entries for %zu notifications",
               (size_t)st.ms_entries, n);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify notifications");
}

static int verify_outcomes(struct verify *v)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_OUTCOMES], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify outcomes");
    MDB_val k, d;
    size_t n = 0;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        uint64_t at, key = k.mv_size > 8 ? loom__get_be64(k.mv_data) : 0;
        loom_slice outcome;
        size_t rid = k.mv_size - 8;
        n++;
        if (key == 0 || rid > LOOM_STORE_MAX_REQUEST_ID_LEN ||
            loom__outcome_decode(d.mv_data, d.mv_size, &at, &outcome) != 0) {
            report(v, LOOM__DB_OUTCOMES, key, 0, "%s", key ? loom_errdetail() : "bad key");
            continue;
        }
        uint8_t tk[16 + LOOM_STORE_MAX_REQUEST_ID_LEN];
        loom__key2(tk, at, key);
        memcpy(tk + 16, (uint8_t *)k.mv_data + 8, rid);
        if (!exists(v, LOOM__DB_OUTCOME_TIMES, tk, 16 + rid, NULL) ||
            !exists(v, LOOM__DB_META, tk + 8, 8, NULL))
            report(v, LOOM__DB_OUTCOMES, key, at, "outcome not indexed for a live machine");
    }
    mdb_cursor_close(c);
    MDB_stat st;
    if (mdb_stat(v->t->txn, v->t->s->dbi[LOOM__DB_OUTCOME_TIMES], &st) == 0 && st.ms_entries != n)
        report(v, LOOM__DB_OUTCOME_TIMES, 0, 0, "%zu time entries for %zu outcomes",
               (size_t)st.ms_entries, n);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify outcomes");
}

/* The sink: sequences gap-free up to the counter, every record sound. */
static int verify_sink(struct verify *v)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_SINK], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify sink");
    MDB_val k, d;
    uint64_t expect = 1, last;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        uint64_t seq = k.mv_size == 8 ? loom__get_be64(k.mv_data) : 0, hash;
        loom_event ev;
        if (seq != expect)
            report(v, LOOM__DB_SINK, 0, seq, "expected sequence %" PRIu64, expect);
        expect = seq + 1;
        if (d.mv_size < LOOM__SINK_HEAD ||
            loom__event_decode((uint8_t *)d.mv_data + LOOM__SINK_HEAD, d.mv_size - LOOM__SINK_HEAD,
                               NULL, &ev, &hash) != 0)
            report(v, LOOM__DB_SINK, d.mv_size >= 8 ? loom__get_be64(d.mv_data) : 0, seq, "%s",
                   d.mv_size < LOOM__SINK_HEAD ? "entry too short" : loom_errdetail());
    }
    mdb_cursor_close(c);
    if (loom__counter_get(v->t->s, v->t->txn, "sink_seq", &last) == 0 && expect - 1 != last)
        report(v, LOOM__DB_SINK, 0, expect - 1, "sink ends before its counter %" PRIu64, last);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify sink");
}

static int verify_namespaces(struct verify *v)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(v->t->txn, v->t->s->dbi[LOOM__DB_NS_IDS], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "verify namespaces");
    MDB_val k, d;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        loom_ns_info info;
        uint32_t id = k.mv_size == 4 ? loom__get_be32(k.mv_data) : 0;
        if (loom_store_ns_get(v->t, loom__slice(d), &info) != 0 || info.id.v != id)
            report(v, LOOM__DB_NAMESPACES, 0, id, "namespace record bad or not matching its id");
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, "verify namespaces");
}

int loom_store_verify(loom_store *s, loom_verify_cb cb, void *user)
{
    struct verify v = {.cb = cb, .user = user};
    int rc = loom_store_read_begin(s, &v.t);
    if (rc != 0)
        return rc;
    rc = verify_machines(&v);
    if (rc == 0)
        rc = verify_orphans(&v, LOOM__DB_EVENTS);
    if (rc == 0)
        rc = verify_orphans(&v, LOOM__DB_TIMERS);
    if (rc == 0)
        rc = verify_orphans(&v, LOOM__DB_MACHINES);
    if (rc == 0)
        rc = verify_notifications(&v);
    if (rc == 0)
        rc = verify_outcomes(&v);
    if (rc == 0)
        rc = verify_sink(&v);
    if (rc == 0)
        rc = verify_namespaces(&v);
    loom_txn_end(v.t);
    return rc != 0 ? rc : v.bad;
}
