/* Group commit of step results. Each step is checked completely before any
 * of it is written (check_step), so a refused step leaves no trace and the
 * rest of the batch still commits in the same transaction; once writing a
 * step has begun (apply_step) any error is an error of the whole
 * transaction, which is then aborted and nothing of the batch is stored. */
#include "internal.h"

#include <inttypes.h>

struct counters {
    uint64_t machine_key, sink_seq, notification_id;
};

/* The cursors a batch keeps open on its hottest tables: a cursor that
 * already sits near a key finds it within its page instead of from the
 * root, and a meta record read through one is rewritten in place. */
struct cursors {
    MDB_cursor *meta, *events, *sink;
};

struct batch {
    loom_step *steps;
    size_t n;
    struct counters ctr;
    struct cursors cur;
    size_t applied, events;
};

/* Copies of the logged records check_log read, newest first, so that the
 * compaction right after moves them without a second B-tree descent each.
 * Bounded: records that do not fit are read again. */
#define LOG_COPY_BYTES 8192u
struct log_copy {
    uint32_t n;        /* records held */
    uint64_t next_seq; /* sink sequence of the next older logged event */
    uint32_t off[LOOM__LOG_COMPACT], len[LOOM__LOG_COMPACT];
    size_t used;
    uint8_t buf[LOG_COPY_BYTES];
};

/* What check_step learned, for apply_step. */
struct step_ctx {
    loom_store *s;
    MDB_txn *txn;
    struct counters *ctr;
    struct cursors *cur;
    loom_step *st;
    loom_machine m;
    bool meta_under_cursor; /* cur->meta sits on this machine's record */
    uint64_t old_wake;
    bool have_outcome; /* an outcome for request_id exists ... */
    uint64_t old_outcome_at; /* ... stored at this time */
    /* filled by check_log */
    struct log_copy *logs;
};

/* ------------------------------------------------------------ validation */

static int bad(const char *what, size_t got, size_t max)
{
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "step: %s (%zu, limit %zu)", what, got, max);
}

static int validate_change(const loom_step *st)
{
    if (st->n_events > LOOM_STORE_MAX_STEP_EVENTS)
        return bad("too many events", st->n_events, LOOM_STORE_MAX_STEP_EVENTS);
    if (st->n_events && !st->events)
        return bad("events missing", st->n_events, 0);
    for (uint32_t i = 0; i < st->n_events; i++)
        if (st->events[i].data.len > LOOM_STORE_MAX_VALUE_LEN)
            return bad("event data too large", st->events[i].data.len, LOOM_STORE_MAX_VALUE_LEN);
    if (st->aux_state.len > LOOM_STORE_MAX_VALUE_LEN)
        return bad("aux_state too large", st->aux_state.len, LOOM_STORE_MAX_VALUE_LEN);
    if (st->reason.len > LOOM_STORE_MAX_REASON_LEN)
        return bad("reason too long", st->reason.len, LOOM_STORE_MAX_REASON_LEN);
    if (st->notify_args.len > LOOM_STORE_MAX_VALUE_LEN)
        return bad("notification args too large", st->notify_args.len, LOOM_STORE_MAX_VALUE_LEN);
    size_t outcome_max = LOOM_STORE_MAX_VALUE_LEN;
    if (st->outcome_append_notification_id)
        outcome_max -= LOOM__VARINT_MAX; /* room for the id */
    if (st->outcome.len > outcome_max)
        return bad("outcome too large", st->outcome.len, outcome_max);
    if (st->outcome_append_notification_id && !(st->notify && st->record_outcome))
        return bad("notification id appended to an outcome without notify and record_outcome", 0,
                   0);
    if (st->record_outcome &&
        (st->request_id.len == 0 || st->request_id.len > LOOM_STORE_MAX_REQUEST_ID_LEN))
        return bad("request id length", st->request_id.len, LOOM_STORE_MAX_REQUEST_ID_LEN);
    if ((unsigned)st->timer_op > LOOM_TIMER_UNSET || (unsigned)st->retry_op > LOOM_RETRY_CLEAR ||
        (unsigned)st->status > LOOM_STATUS_RETRYING ||
        (unsigned)st->timer.range.direction > LOOM_DIRECTION_BACKWARD)
        return bad("unknown timer, retry, status or direction value", 0, 0);
    return 0;
}

static int validate_step(const loom_step *st)
{
    if (st->id.len == 0 || st->id.len > LOOM_STORE_MAX_ID_LEN)
        return bad("machine id length", st->id.len, LOOM_STORE_MAX_ID_LEN);
    if (st->create && st->remove)
        return bad("create and remove in one step", 0, 0);
    if (st->remove && (st->n_events || st->set_aux_state || st->timer_op || st->status ||
                       st->retry_op || st->notify || st->ack_notification_id ||
                       st->record_outcome))
        return bad("a removing step carries other changes", 0, 0);
    return validate_change(st);
}

static size_t step_bytes(const loom_step *st)
{
    size_t n = st->aux_state.len + st->notify_args.len + st->outcome.len + st->reason.len;
    for (uint32_t i = 0; i < st->n_events && st->events; i++)
        n += st->events[i].data.len;
    return n;
}

/* ------------------------------------------------------------ check */

static int check_create(struct step_ctx *c)
{
    loom_step *st = c->st;
    uint8_t idk[4];
    loom__put_be32(idk, st->ns.v);
    MDB_val k = loom__val(idk, 4), d;
    int rc = mdb_get(c->txn, c->s->dbi[LOOM__DB_NS_IDS], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENAMESPACE_NOT_FOUND, "namespace id %u not found", st->ns.v);
    if (rc != 0)
        return loom__mdb_err(rc, "read namespace id");
    loom_machine_key key;
    rc = loom__machine_key_of(c->s, c->txn, st->ns, st->id, &key);
    if (rc == 0)
        return loom_seterr(LOOM_EMACHINE_ALREADY_EXISTS, "machine %.*s already exists",
                           (int)st->id.len, (const char *)st->id.ptr);
    if (rc != LOOM_EMACHINE_NOT_FOUND)
        return rc;
    memset(&c->m, 0, sizeof c->m);
    c->m.ns = st->ns;
    c->m.id = st->id;
    c->m.status = LOOM_STATUS_WORKING;
    c->m.created_at_ms = st->now_ms;
    return 0;
}

/* Finds the target through key_hint when the step has one (it saves a
 * B-tree search per step) and through the name otherwise. */
static int find_machine(struct step_ctx *c)
{
    loom_step *st = c->st;
    if (st->key_hint.v) {
        int rc = loom__machine_at(c->s, c->cur->meta, st->key_hint, &c->m);
        c->meta_under_cursor = rc == 0;
        if (rc == 0 && c->m.ns.v == st->ns.v && c->m.id.len == st->id.len &&
            memcmp(c->m.id.ptr, st->id.ptr, st->id.len) == 0)
            return 0;
        if (rc != 0 && rc != LOOM_EMACHINE_NOT_FOUND)
            return rc;
        loom_machine_key now;
        rc = loom__machine_key_of(c->s, c->txn, st->ns, st->id, &now);
        if (rc == 0)
            return loom_seterr(LOOM_ESTALE, "machine %.*s was removed and created again",
                               (int)st->id.len, (const char *)st->id.ptr);
        return rc;
    }
    loom_machine_key key;
    int rc = loom__machine_key_of(c->s, c->txn, st->ns, st->id, &key);
    if (rc != 0)
        return rc;
    rc = loom__machine_at(c->s, c->cur->meta, key, &c->m);
    c->meta_under_cursor = rc == 0;
    if (rc == LOOM_EMACHINE_NOT_FOUND)
        return loom_seterr(LOOM_ECORRUPTED, "machine %.*s: name index without a machine",
                           (int)st->id.len, (const char *)st->id.ptr);
    return rc;
}

/* The meta's byte fields point into an LMDB page; a large transaction may
 * spill (write out and free) dirty pages before this step's meta is
 * rewritten, so the step works on its own copy. */
static int hold_meta(struct step_ctx *c)
{
    loom_machine *m = &c->m;
    uint8_t *p;
    int rc = loom__hold(c->s, m->id.len + m->aux_state.len + m->reason.len + 1, &p);
    if (rc != 0)
        return rc;
    loom_slice *fields[3] = {&m->id, &m->aux_state, &m->reason};
    for (int i = 0; i < 3; i++) {
        if (fields[i]->len)
            memcpy(p, fields[i]->ptr, fields[i]->len);
        fields[i]->ptr = p;
        p += fields[i]->len;
    }
    return 0;
}

static int check_existing(struct step_ctx *c)
{
    loom_step *st = c->st;
    int rc = find_machine(c);
    if (rc == 0)
        rc = hold_meta(c);
    if (rc != 0)
        return rc;
    if (!st->unchecked && c->m.last_event_id != st->expected_last_event_id)
        return loom_seterr(LOOM_ESTALE, "machine %.*s is at event %" PRIu64 ", step expected %" PRIu64,
                           (int)st->id.len, (const char *)st->id.ptr, c->m.last_event_id,
                           st->expected_last_event_id);
    return 0;
}

static int check_ack(struct step_ctx *c)
{
    uint8_t kb[16];
    loom__key2(kb, c->m.key.v, c->st->ack_notification_id);
    MDB_val k = loom__val(kb, 16), d;
    int rc = mdb_get(c->txn, c->s->dbi[LOOM__DB_MACHINE_NOTIFICATIONS], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENOT_FOUND, "notification %" PRIu64 " is not pending for the machine",
                           c->st->ack_notification_id);
    return loom__mdb_err(rc, "read notification index");
}

static size_t outcome_key(uint8_t *kb, loom_machine_key key, loom_slice rid)
{
    loom__put_be64(kb, key.v);
    memcpy(kb + 8, rid.ptr, rid.len);
    return 8 + rid.len;
}

static int check_outcome(struct step_ctx *c)
{
    uint8_t kb[8 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    MDB_val k = loom__val(kb, outcome_key(kb, c->m.key, c->st->request_id)), d;
    int rc = mdb_get(c->txn, c->s->dbi[LOOM__DB_OUTCOMES], &k, &d);
    c->have_outcome = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return loom__mdb_err(rc, "read outcome");
    loom_slice old;
    return loom__outcome_decode(d.mv_data, d.mv_size, &c->old_outcome_at, &old);
}

static void log_copy_add(struct log_copy *lc, uint32_t i, const MDB_val *rec, uint64_t next_seq)
{
    if (lc->n != i || rec->mv_size > LOG_COPY_BYTES - lc->used)
        return;
    memcpy(lc->buf + lc->used, rec->mv_data, rec->mv_size);
    lc->off[i] = (uint32_t)lc->used;
    lc->len[i] = (uint32_t)rec->mv_size;
    lc->used += rec->mv_size;
    lc->next_seq = next_seq;
    lc->n++;
}

/* Checks every logged event of the machine before a compaction moves
 * them, so damage there refuses this step instead of failing the batch. */
static int check_log(struct step_ctx *c)
{
    uint64_t seq = c->m.log_tail_seq, id = c->m.last_event_id;
    c->logs->n = 0;
    c->logs->used = 0;
    for (uint32_t i = 0; i < c->m.log_count; i++, id--) {
        MDB_val rec;
        loom_event ev;
        uint64_t hash;
        int rc = loom__log_read(c->s, c->txn, c->cur->sink, c->m.key, seq, id, &rec, &seq);
        if (rc == 0)
            rc = loom__event_decode(rec.mv_data, rec.mv_size, NULL, &ev, &hash);
        if (rc == 0 && ev.id != id)
            rc = loom_seterr(LOOM_ECORRUPTED, "sink holds event %" PRIu64 ", not %" PRIu64, ev.id, id);
        if (rc != 0)
            return rc;
        log_copy_add(c->logs, i, &rec, seq);
    }
    return 0;
}

static int check_step(struct step_ctx *c)
{
    int rc = validate_step(c->st);
    if (rc == 0)
        rc = c->st->create ? check_create(c) : check_existing(c);
    c->old_wake = c->m.wake_ms;
    if (rc == 0 && c->st->ack_notification_id)
        rc = c->st->create ? loom_seterr(LOOM_ENOT_FOUND, "new machine has no notification")
                           : check_ack(c);
    if (rc == 0 && c->st->record_outcome && !c->st->create)
        rc = check_outcome(c);
    if (rc == 0 && c->m.log_count && c->m.log_count + c->st->n_events >= LOOM__LOG_COMPACT)
        rc = check_log(c);
    return rc;
}

/* ------------------------------------------------------------ apply */

static int put(struct step_ctx *c, int db, const void *k, size_t kn, const void *v, size_t vn,
               unsigned flags)
{
    MDB_val key = loom__val(k, kn), val = loom__val(v, vn);
    int rc = mdb_put(c->txn, c->s->dbi[db], &key, &val, flags);
    if (rc == MDB_KEYEXIST)
        return loom_seterr(LOOM_ECORRUPTED, "%s: entry already present", loom__db_names[db]);
    return loom__mdb_err(rc, loom__db_names[db]);
}

static int del(struct step_ctx *c, int db, const void *k, size_t kn)
{
    MDB_val key = loom__val(k, kn);
    int rc = mdb_del(c->txn, c->s->dbi[db], &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, loom__db_names[db]);
}

/* Appends the event to the log (the sink): a tail append, whatever the
 * machine, so a batch of steps over many machines writes few pages. */
static int append_event(struct step_ctx *c, const loom_new_event *ev)
{
    uint64_t id = ++c->m.last_event_id;
    uint64_t seq = ++c->ctr->sink_seq;
    size_t size = loom__event_size(ev->data.len);
    uint8_t kb[8];
    loom__put_be64(kb, seq);
    MDB_val k = loom__val(kb, 8), d = loom__val(NULL, LOOM__SINK_HEAD + size);
    int rc = mdb_cursor_put(c->cur->sink, &k, &d, MDB_RESERVE | MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        return loom_seterr(LOOM_ECORRUPTED, "sink holds entries beyond its counter %" PRIu64, seq);
    if (rc != 0)
        return loom__mdb_err(rc, "append event");
    uint8_t *rec = (uint8_t *)d.mv_data + LOOM__SINK_HEAD;
    loom__key2(d.mv_data, c->m.key.v, c->m.log_count ? c->m.log_tail_seq : 0);
    uint64_t prev = c->m.last_hash;
    c->m.last_hash = loom__event_encode(rec, id, ev, c->st->now_ms, prev);
    /* Paired with the check on every read: what we write must read back. */
    loom_event back;
    uint64_t back_hash;
    LOOM_ASSERT(loom__event_decode(rec, size, &prev, &back, &back_hash) == 0);
    LOOM_ASSERT(back.id == id);
    LOOM_ASSERT(back_hash == c->m.last_hash);
    c->m.log_tail_seq = seq;
    c->m.log_count++;
    return 0;
}

/* The logged record of event id, i-th newest of the log: from this step's
 * appends or check_log's copies, else read again. */
static void log_record(struct step_ctx *c, uint32_t i, uint64_t id, uint64_t *seq, MDB_val *rec)
{
    uint32_t fresh = c->st->n_events;
    if (i >= fresh && i - fresh < c->logs->n) {
        uint32_t k = i - fresh;
        *rec = loom__val(c->logs->buf + c->logs->off[k], c->logs->len[k]);
        if (k + 1 == c->logs->n)
            *seq = c->logs->next_seq;
        return;
    }
    int rc = loom__log_read(c->s, c->txn, c->cur->sink, c->m.key, *seq, id, rec, seq);
    LOOM_ASSERT(rc == 0); /* checked by check_log or written by this step */
}

/* Moves the machine's logged events into `events`: consecutive keys, so
 * one leaf page for the lot. */
static int compact_log(struct step_ctx *c)
{
    uint64_t seq = c->m.log_tail_seq, id = c->m.last_event_id;
    for (uint32_t i = 0; i < c->m.log_count; i++, id--) {
        MDB_val rec;
        log_record(c, i, id, &seq, &rec);
        uint8_t kb[16];
        loom__key2(kb, c->m.key.v, id);
        MDB_val k = loom__val(kb, 16);
        int rc = mdb_cursor_put(c->cur->events, &k, &rec, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST)
            return loom_seterr(LOOM_ECORRUPTED, "machine %" PRIu64 ": event %" PRIu64
                                                " already compacted",
                               c->m.key.v, id);
        if (rc != 0)
            return loom__mdb_err(rc, "compact events");
    }
    c->m.log_count = 0;
    c->m.log_tail_seq = 0;
    return 0;
}

static void apply_status(loom_machine *m, const loom_step *st)
{
    if (st->status == LOOM_STATUS_NONE)
        return;
    if (st->status == LOOM_STATUS_FAILED) {
        if (m->status != LOOM_STATUS_FAILED)
            m->status_before_failure = m->status;
        m->reason = st->reason;
    } else {
        m->status_before_failure = LOOM_STATUS_NONE;
        m->reason = loom_slice_of(NULL, 0);
    }
    m->status = st->status;
}

static void apply_fields(loom_machine *m, const loom_step *st)
{
    if (st->set_aux_state)
        m->aux_state = st->aux_state;
    if (st->timer_op == LOOM_TIMER_SET)
        m->timer = st->timer;
    else if (st->timer_op == LOOM_TIMER_UNSET)
        memset(&m->timer, 0, sizeof m->timer);
    if (st->retry_op == LOOM_RETRY_SET)
        m->retry = st->retry;
    else if (st->retry_op == LOOM_RETRY_CLEAR)
        memset(&m->retry, 0, sizeof m->retry);
    apply_status(m, st);
    m->wake_ms = loom__wake_of(m);
    m->updated_at_ms = st->now_ms;
}

static int apply_wake(struct step_ctx *c)
{
    if (c->m.wake_ms == c->old_wake)
        return 0;
    uint8_t kb[16];
    if (c->old_wake) {
        loom__key2(kb, c->old_wake, c->m.key.v);
        int rc = del(c, LOOM__DB_TIMERS, kb, 16);
        if (rc != 0)
            return rc;
    }
    if (c->m.wake_ms == 0)
        return 0;
    loom__key2(kb, c->m.wake_ms, c->m.key.v);
    return put(c, LOOM__DB_TIMERS, kb, 16, "", 0, 0);
}

static int apply_notify(struct step_ctx *c)
{
    loom_step *st = c->st;
    uint8_t kb[16];
    if (st->ack_notification_id) {
        loom__put_be64(kb, st->ack_notification_id);
        int rc = del(c, LOOM__DB_NOTIFICATIONS, kb, 8);
        loom__key2(kb, c->m.key.v, st->ack_notification_id);
        if (rc == 0)
            rc = del(c, LOOM__DB_MACHINE_NOTIFICATIONS, kb, 16);
        if (rc != 0)
            return rc;
    }
    if (!st->notify)
        return 0;
    st->notification_id = ++c->ctr->notification_id;
    loom_notification nt = {st->notification_id, c->m.key, st->now_ms, st->notify_args};
    loom__put_be64(kb, nt.id);
    MDB_val k = loom__val(kb, 8), d = loom__val(NULL, loom__notification_size(nt.args.len));
    int rc = mdb_put(c->txn, c->s->dbi[LOOM__DB_NOTIFICATIONS], &k, &d, MDB_RESERVE | MDB_APPEND);
    if (rc != 0)
        return loom__mdb_err(rc, "write notification");
    loom__notification_encode(d.mv_data, &nt);
    loom__key2(kb, c->m.key.v, nt.id);
    return put(c, LOOM__DB_MACHINE_NOTIFICATIONS, kb, 16, "", 0, 0);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    LOOM_ASSERT(n <= LOOM__VARINT_MAX);
    return n;
}

/* The outcome as stored: the step's bytes, and the notification id when
 * asked for (copied into scratch, which put_meta only reuses later). */
static int outcome_bytes(struct step_ctx *c, loom_slice *out)
{
    loom_step *st = c->st;
    *out = st->outcome;
    if (!st->outcome_append_notification_id)
        return 0;
    LOOM_ASSERT(st->notification_id != 0);
    uint8_t *buf;
    int rc = loom__scratch(c->s, st->outcome.len + LOOM__VARINT_MAX, &buf);
    if (rc != 0)
        return rc;
    if (st->outcome.len)
        memcpy(buf, st->outcome.ptr, st->outcome.len);
    size_t n = st->outcome.len + put_varint(buf + st->outcome.len, st->notification_id);
    *out = loom_slice_of(buf, n);
    return 0;
}

static int apply_outcome(struct step_ctx *c)
{
    loom_step *st = c->st;
    loom_slice outcome;
    int rc = outcome_bytes(c, &outcome);
    if (rc != 0)
        return rc;
    uint8_t tk[16 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    if (c->have_outcome) {
        loom__key2(tk, c->old_outcome_at, c->m.key.v);
        memcpy(tk + 16, st->request_id.ptr, st->request_id.len);
        rc = del(c, LOOM__DB_OUTCOME_TIMES, tk, 16 + st->request_id.len);
        if (rc != 0)
            return rc;
    }
    uint8_t kb[8 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    MDB_val k = loom__val(kb, outcome_key(kb, c->m.key, st->request_id));
    MDB_val d = loom__val(NULL, loom__outcome_size(outcome.len));
    rc = mdb_put(c->txn, c->s->dbi[LOOM__DB_OUTCOMES], &k, &d, MDB_RESERVE);
    if (rc != 0)
        return loom__mdb_err(rc, "write outcome");
    loom__outcome_encode(d.mv_data, st->now_ms, outcome);
    loom__key2(tk, st->now_ms, c->m.key.v);
    memcpy(tk + 16, st->request_id.ptr, st->request_id.len);
    return put(c, LOOM__DB_OUTCOME_TIMES, tk, 16 + st->request_id.len, "", 0, 0);
}

/* Encoded into scratch, then put (copied) by LMDB. */
static int put_meta(struct step_ctx *c)
{
    uint8_t *buf;
    int rc = loom__scratch(c->s, loom__meta_size_max(&c->m), &buf);
    if (rc != 0)
        return rc;
    size_t n = loom__meta_encode(buf, &c->m);
    uint8_t kb[8];
    loom__put_be64(kb, c->m.key.v);
    if (!c->meta_under_cursor)
        return put(c, LOOM__DB_META, kb, 8, buf, n, 0);
    MDB_val k = loom__val(kb, 8), d = loom__val(buf, n);
    return loom__mdb_err(mdb_cursor_put(c->cur->meta, &k, &d, MDB_CURRENT), "write machine");
}

static int apply_create(struct step_ctx *c)
{
    c->m.key.v = ++c->ctr->machine_key;
    c->m.last_hash = loom__chain_seed(c->m.key);
    uint8_t nk[LOOM__MACHINE_NAME_KEY_MAX], kv[8];
    size_t nn = loom__machine_name_key(nk, c->m.ns, c->m.id);
    loom__put_be64(kv, c->m.key.v);
    return put(c, LOOM__DB_MACHINES, nk, nn, kv, 8, MDB_NOOVERWRITE);
}

static int apply_step(struct step_ctx *c)
{
    loom_step *st = c->st;
    int rc = st->create ? apply_create(c) : 0;
    st->first_event_id = st->n_events ? c->m.last_event_id + 1 : 0;
    for (uint32_t i = 0; rc == 0 && i < st->n_events; i++)
        rc = append_event(c, &st->events[i]);
    if (rc == 0 && c->m.log_count >= LOOM__LOG_COMPACT)
        rc = compact_log(c);
    if (rc != 0)
        return rc;
    apply_fields(&c->m, st);
    rc = apply_wake(c);
    if (rc == 0)
        rc = apply_notify(c);
    if (rc == 0 && st->record_outcome)
        rc = apply_outcome(c);
    if (rc == 0)
        rc = put_meta(c);
    st->key = c->m.key;
    st->last_event_id = c->m.last_event_id;
    return rc;
}

/* ------------------------------------------------------------ remove */

/* Deletes every entry of db whose key starts with the 8-byte prefix, and
 * calls each(c, key, value) on it first when given. Seeks afresh after
 * each delete rather than trusting the cursor position LMDB leaves. */
static int del_prefix(struct step_ctx *c, int db, uint64_t prefix,
                      int (*each)(struct step_ctx *, MDB_val *, MDB_val *))
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(c->txn, c->s->dbi[db], &cur);
    if (rc != 0)
        return loom__mdb_err(rc, loom__db_names[db]);
    uint8_t kb[8];
    loom__put_be64(kb, prefix);
    int lrc = 0;
    for (;;) {
        MDB_val k = loom__val(kb, 8), d;
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
        if (rc != 0 || k.mv_size < 8 || loom__get_be64(k.mv_data) != prefix)
            break;
        lrc = each ? each(c, &k, &d) : 0;
        if (lrc != 0)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    if (lrc != 0)
        return lrc;
    return rc == MDB_NOTFOUND ? 0 : loom__mdb_err(rc, loom__db_names[db]);
}

static int del_notification(struct step_ctx *c, MDB_val *k, MDB_val *d)
{
    (void)d;
    if (k->mv_size != 16)
        return 0;
    return del(c, LOOM__DB_NOTIFICATIONS, (uint8_t *)k->mv_data + 8, 8);
}

static int del_outcome_time(struct step_ctx *c, MDB_val *k, MDB_val *d)
{
    uint64_t at;
    loom_slice outcome;
    if (loom__outcome_decode(d->mv_data, d->mv_size, &at, &outcome) != 0)
        return 0; /* a damaged record: its time entry is pruned as an orphan */
    uint8_t tk[16 + LOOM_STORE_MAX_REQUEST_ID_LEN];
    size_t rid = k->mv_size - 8;
    if (rid > LOOM_STORE_MAX_REQUEST_ID_LEN)
        return 0;
    loom__key2(tk, at, c->m.key.v);
    memcpy(tk + 16, (uint8_t *)k->mv_data + 8, rid);
    return del(c, LOOM__DB_OUTCOME_TIMES, tk, 16 + rid);
}

static int apply_remove(struct step_ctx *c)
{
    uint64_t key = c->m.key.v;
    uint8_t nk[LOOM__MACHINE_NAME_KEY_MAX];
    size_t nn = loom__machine_name_key(nk, c->m.ns, c->m.id);
    int rc = del_prefix(c, LOOM__DB_EVENTS, key, NULL);
    if (rc == 0)
        rc = del_prefix(c, LOOM__DB_MACHINE_NOTIFICATIONS, key, del_notification);
    if (rc == 0)
        rc = del_prefix(c, LOOM__DB_OUTCOMES, key, del_outcome_time);
    c->m.wake_ms = 0;
    if (rc == 0)
        rc = apply_wake(c);
    uint8_t kb[8];
    if (rc == 0) {
        loom__put_be64(kb, key);
        rc = del(c, LOOM__DB_META, kb, 8);
    }
    if (rc == 0)
        rc = del(c, LOOM__DB_MACHINES, nk, nn);
    c->st->key = c->m.key;
    c->st->last_event_id = 0;
    return rc;
}

/* ------------------------------------------------------------ batch */

static int load_counters(loom_store *s, MDB_txn *txn, struct counters *c)
{
    int rc = loom__counter_get(s, txn, "machine_key", &c->machine_key);
    if (rc == 0)
        rc = loom__counter_get(s, txn, "sink_seq", &c->sink_seq);
    if (rc == 0)
        rc = loom__counter_get(s, txn, "notification_id", &c->notification_id);
    return rc;
}

static int store_counters(loom_store *s, MDB_txn *txn, const struct counters *c)
{
    int rc = loom__counter_put(s, txn, "machine_key", c->machine_key);
    if (rc == 0)
        rc = loom__counter_put(s, txn, "sink_seq", c->sink_seq);
    if (rc == 0)
        rc = loom__counter_put(s, txn, "notification_id", c->notification_id);
    return rc;
}

static void reset_outputs(loom_step *st)
{
    st->result = 0;
    st->key.v = 0;
    st->first_event_id = 0;
    st->last_event_id = 0;
    st->notification_id = 0;
}

static int open_cursors(loom_store *s, MDB_txn *txn, struct cursors *cur)
{
    memset(cur, 0, sizeof *cur);
    int rc = mdb_cursor_open(txn, s->dbi[LOOM__DB_META], &cur->meta);
    if (rc == 0)
        rc = mdb_cursor_open(txn, s->dbi[LOOM__DB_EVENTS], &cur->events);
    if (rc == 0)
        rc = mdb_cursor_open(txn, s->dbi[LOOM__DB_SINK], &cur->sink);
    return loom__mdb_err(rc, "open cursors");
}

static void close_cursors(struct cursors *cur)
{
    MDB_cursor *all[3] = {cur->meta, cur->events, cur->sink};
    for (int i = 0; i < 3; i++)
        if (all[i])
            mdb_cursor_close(all[i]);
}

static int apply_batch(loom_store *s, MDB_txn *txn, struct batch *b)
{
    int rc = 0;
    struct log_copy logs;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        struct step_ctx c = {
            .s = s, .txn = txn, .ctr = &b->ctr, .cur = &b->cur, .st = &b->steps[i], .logs = &logs};
        logs.n = 0;
        reset_outputs(c.st);
        c.st->result = check_step(&c);
        if (c.st->result != 0)
            continue;
        rc = c.st->remove ? apply_remove(&c) : apply_step(&c);
        b->applied++;
        b->events += c.st->n_events;
    }
    return rc;
}

static int commit_txn(loom_store *s, MDB_txn *txn, void *arg)
{
    struct batch *b = arg;
    b->applied = b->events = 0;
    int rc = load_counters(s, txn, &b->ctr);
    if (rc == 0)
        rc = open_cursors(s, txn, &b->cur);
    if (rc == 0)
        rc = apply_batch(s, txn, b);
    close_cursors(&b->cur);
    if (rc == 0 && b->applied == 0)
        return 1; /* nothing to write: skip the commit and its fsync */
    return rc != 0 ? rc : store_counters(s, txn, &b->ctr);
}

int loom_store_commit(loom_store *s, loom_step *steps, size_t n)
{
    if (n > LOOM_STORE_MAX_BATCH_STEPS || (n && !steps))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "batch of %zu steps (limit %u)", n,
                           LOOM_STORE_MAX_BATCH_STEPS);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += step_bytes(&steps[i]);
    if (bytes > LOOM_STORE_MAX_BATCH_BYTES)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "batch of %zu bytes (limit %u)", bytes,
                           LOOM_STORE_MAX_BATCH_BYTES);
    struct batch b = {.steps = steps, .n = n};
    int rc = loom__write(s, commit_txn, &b);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            steps[i].result = steps[i].result ? steps[i].result : rc;
        return rc;
    }
    atomic_fetch_add_explicit(&s->steps, b.applied, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->events, b.events, memory_order_relaxed);
    return 0;
}
