/* History range reads with Machinegun's semantics.
 *
 * A machine's older events are one contiguous run of `events` keyed
 * (machine key, event id), read with one cursor; its newest events (fewer
 * than LOOM__LOG_COMPACT) still sit in the event log (the sink), found
 * through the sequence numbers gathered at begin. Every record is
 * CRC-checked and chained to the one before it; the walk also reads the
 * event just below the range (its predecessor) so that the first event
 * yielded is chain-checked as well. */
#include "internal.h"

#include <inttypes.h>

_Static_assert(LOOM__LOG_COMPACT <= sizeof(((loom_history *)0)->log_seqs_) / sizeof(uint64_t),
               "the iterator holds the sequence of every logged event");

int loom__log_read(loom_store *s, MDB_txn *txn, MDB_cursor *cur, loom_machine_key key,
                   uint64_t seq, uint64_t id, MDB_val *rec, uint64_t *prev_seq)
{
    uint8_t kb[8];
    loom__put_be64(kb, seq);
    MDB_val k = loom__val(kb, 8), d;
    int rc = cur ? mdb_cursor_get(cur, &k, &d, MDB_SET_KEY)
                 : mdb_get(txn, s->dbi[LOOM__DB_SINK], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ECORRUPTED, "logged event %" PRIu64 " missing at sink %" PRIu64, id,
                           seq);
    if (rc != 0)
        return loom__mdb_err(rc, "read event log");
    const uint8_t *p = d.mv_data;
    if (d.mv_size < LOOM__SINK_HEAD + loom__event_size(0) || loom__get_be64(p) != key.v)
        return loom_seterr(LOOM_ECORRUPTED, "sink %" PRIu64 " is not event %" PRIu64 " of machine %" PRIu64,
                           seq, id, key.v);
    *prev_seq = loom__get_be64(p + 8);
    *rec = loom__val(p + LOOM__SINK_HEAD, d.mv_size - LOOM__SINK_HEAD);
    return 0;
}

/* Clamps range to the events 1..last: [*lo, *hi], *n events (0 = empty). */
static void clamp_range(const loom_range *r, uint64_t last, uint64_t *lo, uint64_t *hi,
                        uint64_t *n)
{
    *n = 0;
    if (r->direction == LOOM_DIRECTION_FORWARD) {
        if (r->has_after && r->after >= last)
            return;
        *lo = r->has_after ? r->after + 1 : 1;
        *n = last - *lo + 1;
        if (r->limit && r->limit < *n)
            *n = r->limit;
        *hi = *lo + *n - 1;
        return;
    }
    uint64_t top = last;
    if (r->has_after)
        top = r->after == 0 ? 0 : (r->after - 1 < last ? r->after - 1 : last);
    if (top == 0)
        return;
    *hi = top;
    *n = r->limit && r->limit < top ? r->limit : top;
    *lo = *hi - *n + 1;
}

static int fail(loom_history *it, int err)
{
    it->done_ = true;
    return loom_seterr(err, "machine %" PRIu64 " event %" PRIu64 ": %s", it->key_.v, it->next_id_,
                       loom_errdetail());
}

/* The record of event id from `events`, stepping the cursor when id is a
 * neighbour of where it sits. */
static int fetch_compacted(loom_history *it, uint64_t id, MDB_val *d)
{
    uint8_t kb[16];
    loom__key2(kb, it->key_.v, id);
    MDB_val k = loom__val(kb, 16);
    MDB_cursor_op op = MDB_SET_KEY;
    if (it->cursor_id_ && id == it->cursor_id_ + 1)
        op = MDB_NEXT;
    else if (it->cursor_id_ && id + 1 == it->cursor_id_)
        op = MDB_PREV;
    it->cursor_id_ = 0;
    int rc = mdb_cursor_get(it->cursor_, &k, d, op);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ECORRUPTED, "event missing from the history");
    if (rc != 0)
        return loom__mdb_err(rc, "read event");
    if (k.mv_size != 16 || loom__get_be64(k.mv_data) != it->key_.v ||
        loom__get_be64((uint8_t *)k.mv_data + 8) != id)
        return loom_seterr(LOOM_ECORRUPTED, "history has a gap (event missing)");
    it->cursor_id_ = id;
    return 0;
}

/* Reads, decodes and CRC-checks event id (not its chain link). */
static int fetch(loom_history *it, uint64_t id, const void **rec, loom_event *ev, uint64_t *hash)
{
    MDB_val d;
    int rc;
    if (it->log_first_ && id >= it->log_first_) {
        uint64_t prev;
        loom_txn *t = it->txn_;
        rc = loom__log_read(t->s, t->txn, NULL, it->key_, it->log_seqs_[id - it->log_first_], id, &d,
                            &prev);
    } else {
        rc = fetch_compacted(it, id, &d);
    }
    if (rc == 0)
        rc = loom__event_decode(d.mv_data, d.mv_size, NULL, ev, hash);
    if (rc == 0 && ev->id != id)
        rc = loom_seterr(LOOM_ECORRUPTED, "record holds event %" PRIu64, ev->id);
    *rec = d.mv_data;
    return rc;
}

/* Follows the log from the machine's newest logged event down to event
 * `low` (or the first logged one), noting each one's sink sequence. */
static int gather_log(loom_txn *t, const loom_machine *m, uint64_t low, loom_history *it)
{
    it->log_first_ = m->last_event_id - m->log_count + 1;
    uint64_t seq = m->log_tail_seq;
    for (uint64_t id = m->last_event_id; id >= it->log_first_ && id >= low; id--) {
        MDB_val rec;
        it->log_seqs_[id - it->log_first_] = seq;
        int rc = loom__log_read(t->s, t->txn, NULL, m->key, seq, id, &rec, &seq);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int loom_history_begin(loom_txn *t, loom_machine_key key, const loom_range *range,
                       loom_history *it)
{
    memset(it, 0, sizeof *it);
    it->done_ = true;
    if ((unsigned)range->direction > LOOM_DIRECTION_BACKWARD)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "history range: unknown direction %d",
                           (int)range->direction);
    loom_machine m;
    int rc = loom__machine_by_key(t->s, t->txn, key, &m);
    if (rc != 0)
        return rc;
    uint64_t lo = 0, hi = 0, n;
    clamp_range(range, m.last_event_id, &lo, &hi, &n);
    it->key_ = key;
    it->txn_ = t;
    if (n == 0)
        return 0;
    /* the predecessor of the lowest event is read too, for its hash */
    if (m.log_count && hi > m.last_event_id - m.log_count &&
        (rc = gather_log(t, &m, lo > 1 ? lo - 1 : 1, it)) != 0)
        return loom_seterr(rc, "machine %" PRIu64 ": %s", key.v, loom_errdetail());
    rc = mdb_cursor_open(t->txn, t->s->dbi[LOOM__DB_EVENTS], (MDB_cursor **)&it->cursor_);
    if (rc != 0)
        return loom__mdb_err(rc, "event cursor");
    it->remaining_ = n;
    it->done_ = false;
    it->step_ = range->direction == LOOM_DIRECTION_FORWARD ? 1 : -1;
    it->next_id_ = it->step_ > 0 ? lo : hi;
    it->prev_hash_ = loom__chain_seed(key);
    return 0;
}

static int next_forward(loom_history *it, loom_event *ev)
{
    const void *rec;
    uint64_t hash;
    if (!it->positioned_ && it->next_id_ > 1) {
        loom_event prev;
        int rc = fetch(it, it->next_id_ - 1, &rec, &prev, &it->prev_hash_);
        if (rc != 0)
            return rc;
    }
    it->positioned_ = true;
    int rc = fetch(it, it->next_id_, &rec, ev, &hash);
    if (rc != 0)
        return rc;
    if (!loom__event_chain_ok(rec, ev, it->prev_hash_, hash))
        return loom_seterr(LOOM_ECORRUPTED, "chain hash mismatch");
    it->prev_hash_ = hash;
    it->next_id_++;
    return 0;
}

static int next_backward(loom_history *it, loom_event *ev)
{
    if (!it->positioned_) {
        int rc = fetch(it, it->next_id_, &it->pend_rec_, &it->pend_ev_, &it->pend_hash_);
        if (rc != 0)
            return rc;
        it->positioned_ = true;
    }
    const void *rec = it->pend_rec_;
    *ev = it->pend_ev_;
    uint64_t hash = it->pend_hash_, prev_hash = loom__chain_seed(it->key_);
    if (ev->id > 1) {
        int rc = fetch(it, ev->id - 1, &it->pend_rec_, &it->pend_ev_, &it->pend_hash_);
        if (rc != 0)
            return rc;
        prev_hash = it->pend_hash_;
    }
    if (!loom__event_chain_ok(rec, ev, prev_hash, hash))
        return loom_seterr(LOOM_ECORRUPTED, "chain hash mismatch");
    it->next_id_--;
    return 0;
}

int loom_history_next(loom_history *it, loom_event *ev)
{
    if (it->done_ || it->remaining_ == 0)
        return 0;
    int rc = it->step_ > 0 ? next_forward(it, ev) : next_backward(it, ev);
    if (rc != 0)
        return fail(it, rc);
    it->remaining_--;
    return 1;
}

void loom_history_end(loom_history *it)
{
    if (it->cursor_)
        mdb_cursor_close(it->cursor_);
    it->cursor_ = NULL;
    it->done_ = true;
}
