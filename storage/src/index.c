/* Reads of the ordered indexes: timers, notifications, outcomes, the event
 * sink; and the pruning of old outcomes. */
#include "internal.h"

#include <inttypes.h>

/* A cursor over one table of a read transaction. */
static int cursor(loom_txn *t, int db, MDB_cursor **c)
{
    int rc = mdb_cursor_open(t->txn, t->s->dbi[db], c);
    return rc ? loom__mdb_err(rc, loom__db_names[db]) : 0;
}

static int end_walk(MDB_cursor *c, int rc, size_t n, int db)
{
    mdb_cursor_close(c);
    if (rc < 0 && rc > -1000)
        return rc; /* a Loom code from a record check */
    if (rc != 0 && rc != MDB_NOTFOUND)
        return loom__mdb_err(rc, loom__db_names[db]);
    return (int)n;
}

static int check_cap(size_t cap)
{
    return cap > INT32_MAX ? loom_seterr(LOOM_EINVALID_ARGUMENT, "cap %zu too large", cap) : 0;
}

/* ---------------------------------------------------------------- timers */

int loom_store_timers_due(loom_txn *t, uint64_t up_to_ms, const loom_timer_entry *after,
                          loom_timer_entry *out, size_t cap)
{
    MDB_cursor *c;
    int rc = check_cap(cap);
    if (rc == 0)
        rc = cursor(t, LOOM__DB_TIMERS, &c);
    if (rc != 0)
        return rc;
    uint8_t kb[16];
    loom__key2(kb, after ? after->wake_ms : 0, after ? after->key.v : 0);
    MDB_val k = loom__val(kb, 16), d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    if (rc == 0 && after && k.mv_size == 16 && memcmp(k.mv_data, kb, 16) == 0)
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    size_t n = 0;
    for (; rc == 0 && n < cap; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 16) {
            rc = loom_seterr(LOOM_ECORRUPTED, "timers entry with a %zu-byte key", k.mv_size);
            break;
        }
        uint64_t wake = loom__get_be64(k.mv_data);
        if (wake > up_to_ms)
            break;
        out[n].wake_ms = wake;
        out[n].key.v = loom__get_be64((uint8_t *)k.mv_data + 8);
        n++;
    }
    return end_walk(c, rc, n, LOOM__DB_TIMERS);
}

int loom_store_timers_next(loom_txn *t, loom_timer_entry *next)
{
    int n = loom_store_timers_due(t, UINT64_MAX, NULL, next, 1);
    if (n == 0)
        return loom_seterr(LOOM_ENOT_FOUND, "no timer scheduled");
    return n < 0 ? n : 0;
}

/* --------------------------------------------------------- notifications */

static int read_notification(loom_txn *t, uint64_t id, loom_notification *out)
{
    uint8_t kb[8];
    loom__put_be64(kb, id);
    MDB_val k = loom__val(kb, 8), d;
    int rc = mdb_get(t->txn, t->s->dbi[LOOM__DB_NOTIFICATIONS], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ECORRUPTED, "notification %" PRIu64 " indexed but missing", id);
    if (rc != 0)
        return loom__mdb_err(rc, "read notification");
    out->id = id;
    return loom__notification_decode(d.mv_data, d.mv_size, out);
}

int loom_store_notifications_of(loom_txn *t, loom_machine_key key, uint64_t after_id,
                                loom_notification *out, size_t cap)
{
    MDB_cursor *c;
    int rc = check_cap(cap);
    if (rc == 0)
        rc = cursor(t, LOOM__DB_MACHINE_NOTIFICATIONS, &c);
    if (rc != 0)
        return rc;
    uint8_t kb[16];
    loom__key2(kb, key.v, after_id == UINT64_MAX ? after_id : after_id + 1);
    MDB_val k = loom__val(kb, 16), d;
    rc = after_id == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    size_t n = 0;
    for (; rc == 0 && n < cap; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 16 || loom__get_be64(k.mv_data) != key.v)
            break;
        rc = read_notification(t, loom__get_be64((uint8_t *)k.mv_data + 8), &out[n]);
        if (rc == 0 && out[n].key.v != key.v)
            rc = loom_seterr(LOOM_ECORRUPTED, "notification %" PRIu64 " belongs to another machine",
                             out[n].id);
        if (rc != 0)
            break;
        n++;
    }
    return end_walk(c, rc, n, LOOM__DB_MACHINE_NOTIFICATIONS);
}

int loom_store_notifications_from(loom_txn *t, uint64_t from_id, loom_notification *out,
                                  size_t cap)
{
    MDB_cursor *c;
    int rc = check_cap(cap);
    if (rc == 0)
        rc = cursor(t, LOOM__DB_NOTIFICATIONS, &c);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    loom__put_be64(kb, from_id);
    MDB_val k = loom__val(kb, 8), d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    size_t n = 0;
    for (; rc == 0 && n < cap; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size != 8) {
            rc = loom_seterr(LOOM_ECORRUPTED, "notification with a %zu-byte key", k.mv_size);
            break;
        }
        out[n].id = loom__get_be64(k.mv_data);
        rc = loom__notification_decode(d.mv_data, d.mv_size, &out[n]);
        if (rc != 0)
            break;
        n++;
    }
    return end_walk(c, rc, n, LOOM__DB_NOTIFICATIONS);
}

/* -------------------------------------------------------------- outcomes */

int loom_store_outcome_get(loom_txn *t, loom_machine_key key, loom_slice request_id,
                           loom_slice *outcome, uint64_t *stored_at_ms)
{
    if (request_id.len == 0 || request_id.len > LOOM_STORE_MAX_REQUEST_ID_LEN)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "request id must be 1..%u bytes",
                           LOOM_STORE_MAX_REQUEST_ID_LEN);
    uint8_t kb[8 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    loom__put_be64(kb, key.v);
    memcpy(kb + 8, request_id.ptr, request_id.len);
    MDB_val k = loom__val(kb, 8 + request_id.len), d;
    int rc = mdb_get(t->txn, t->s->dbi[LOOM__DB_OUTCOMES], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENOT_FOUND, "no outcome for this request id");
    if (rc != 0)
        return loom__mdb_err(rc, "read outcome");
    uint64_t at;
    rc = loom__outcome_decode(d.mv_data, d.mv_size, &at, outcome);
    if (rc == 0 && stored_at_ms)
        *stored_at_ms = at;
    return rc;
}

struct prune {
    uint64_t older_than_ms;
    size_t limit, removed;
};

/* Deletes one outcome_times entry and the outcome it names (if that
 * outcome is still the one stored at that time). */
static int prune_one(loom_store *s, MDB_txn *txn, MDB_cursor *c, MDB_val *k)
{
    uint8_t ok[8 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    size_t rid = k->mv_size - 16;
    if (k->mv_size > 16 && rid <= LOOM_STORE_MAX_REQUEST_ID_LEN) {
        memcpy(ok, (uint8_t *)k->mv_data + 8, 8 + rid);
        MDB_val okey = loom__val(ok, 8 + rid), d;
        int rc = mdb_get(txn, s->dbi[LOOM__DB_OUTCOMES], &okey, &d);
        uint64_t at = 0;
        loom_slice outcome;
        if (rc == 0 && loom__outcome_decode(d.mv_data, d.mv_size, &at, &outcome) == 0 &&
            at == loom__get_be64(k->mv_data))
            rc = mdb_del(txn, s->dbi[LOOM__DB_OUTCOMES], &okey, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return loom__mdb_err(rc, "prune outcome");
    }
    return loom__mdb_err(mdb_cursor_del(c, 0), "prune outcome time");
}

static int prune_txn(loom_store *s, MDB_txn *txn, void *arg)
{
    struct prune *p = arg;
    p->removed = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi[LOOM__DB_OUTCOME_TIMES], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "outcome times");
    while (p->removed < p->limit) {
        MDB_val k, d;
        rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
        if (rc != 0 || k.mv_size < 16 || loom__get_be64(k.mv_data) >= p->older_than_ms)
            break;
        rc = prune_one(s, txn, c, &k);
        if (rc != 0)
            break;
        p->removed++;
    }
    mdb_cursor_close(c);
    if (rc < 0 && rc > -1000)
        return rc;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return loom__mdb_err(rc, "outcome times");
    return p->removed ? 0 : 1;
}

int loom_store_outcomes_prune(loom_store *s, uint64_t older_than_ms, size_t limit,
                              size_t *removed)
{
    struct prune p = {older_than_ms, limit ? limit : 10000, 0};
    int rc = loom__write(s, prune_txn, &p);
    if (removed)
        *removed = rc >= 0 ? p.removed : 0;
    return rc > 0 ? 0 : rc;
}

/* ------------------------------------------------------------ event sink */

int loom_store_sink_read(loom_txn *t, uint64_t from_seq, loom_sink_entry *out, size_t cap)
{
    MDB_cursor *c;
    int rc = check_cap(cap);
    if (rc == 0)
        rc = cursor(t, LOOM__DB_SINK, &c);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    loom__put_be64(kb, from_seq);
    MDB_val k = loom__val(kb, 8), d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    size_t n = 0;
    for (; rc == 0 && n < cap; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        loom_event ev;
        uint64_t hash;
        if (k.mv_size != 8 || d.mv_size < LOOM__SINK_HEAD) {
            rc = loom_seterr(LOOM_ECORRUPTED, "sink entry of %zu+%zu bytes", k.mv_size, d.mv_size);
            break;
        }
        rc = loom__event_decode((uint8_t *)d.mv_data + LOOM__SINK_HEAD,
                                d.mv_size - LOOM__SINK_HEAD, NULL, &ev, &hash);
        if (rc != 0)
            break;
        out[n].seq = loom__get_be64(k.mv_data);
        out[n].key.v = loom__get_be64(d.mv_data);
        out[n].event_id = ev.id;
        n++;
    }
    return end_walk(c, rc, n, LOOM__DB_SINK);
}

int loom_store_sink_last(loom_txn *t, uint64_t *seq)
{
    return loom__counter_get(t->s, t->txn, "sink_seq", seq);
}
