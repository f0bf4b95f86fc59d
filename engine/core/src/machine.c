/* Machines: per-machine queues, steps and their commits.
 *
 * Steps of one machine are strictly serialised: a machine runs at most one
 * step (processor round trip + commit) at a time; other requests wait in
 * its bounded queue. A machine whose step ended goes to the engine's ready
 * list, which starts the next steps while fewer than max_steps_in_flight
 * run — an iterative loop, so a long run of steps that finish at once
 * (errors) never recurses. */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

static void schedule(loom__machine *m);
static void step_send_with(loom__step *s, loom_txn *txn, const loom_machine *mm);

/* ------------------------------------------------------------ machine map */

static loom__machine *machine_get(loom_engine *e, loom__ns *ns, const char *id, size_t id_len)
{
    uint8_t stackkey[4 + LOOM_MACHINE_ID_MAX];
    LOOM_ASSERT(id_len <= LOOM_MACHINE_ID_MAX);
    memcpy(stackkey, ns->id_key, 4);
    memcpy(stackkey + 4, id, id_len);
    loom__machine *m = loom__hmap_get(&e->machines, stackkey, 4 + id_len);
    if (m)
        return m;
    /* one allocation: the struct, the id, the map key */
    m = calloc(1, sizeof *m + id_len + 1 + 4 + id_len);
    if (!m)
        return NULL;
    m->ns = ns;
    m->id = (char *)(m + 1);
    m->mkey = (uint8_t *)m->id + id_len + 1;
    memcpy(m->id, id, id_len);
    m->id[id_len] = 0;
    memcpy(m->mkey, stackkey, 4 + id_len);
    m->mkey_len = 4 + id_len;
    if (loom__hmap_put(&e->machines, m->mkey, m->mkey_len, m) == 0)
        return m;
    free(m);
    return NULL;
}

static void machine_maybe_free(loom__machine *m)
{
    if (m->busy || m->parked || m->head || m->wake)
        return;
    loom_engine *e = m->ns->e;
    void *v = loom__hmap_del(&e->machines, m->mkey, m->mkey_len);
    LOOM_ASSERT(v == m);
    free(m);
}

void loom__op_free(loom__op *op)
{
    if (!op)
        return;
    if (op->req)
        loom_envelope_free(op->req);
    if (op->cl)
        loom__client_unref(op->cl);
    free(op);
}

int loom__machine_submit(loom_engine *e, loom__ns *ns, const char *id, loom__op *op)
{
    if (e->ops_queued >= (size_t)e->cfg.limits.max_steps_in_flight * 16)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "too many requests waiting in the engine");
    loom__machine *m = machine_get(e, ns, id, strlen(id));
    if (!m)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    if (m->queued >= e->cfg.limits.max_queued_calls_per_machine) {
        machine_maybe_free(m);
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "queue of machine %s/%s is full (%u)",
                           ns->cfg.name, id, e->cfg.limits.max_queued_calls_per_machine);
    }
    op->next = NULL;
    if (m->tail)
        m->tail->next = op;
    else
        m->head = op;
    m->tail = op;
    m->queued++;
    e->ops_queued++;
    schedule(m);
    return 0;
}

void loom__machine_wake_ns(loom_engine *e, loom__ns *ns, const char *id, size_t id_len)
{
    loom__machine *m = machine_get(e, ns, id, id_len);
    if (!m) {
        loom_log(LOOM_LOG_ERROR, "out of memory waking %s/%.*s", ns->cfg.name, (int)id_len, id);
        return;
    }
    m->wake = true;
    schedule(m);
}

void loom__machine_wake(loom_engine *e, loom_machine_key key)
{
    loom_txn *txn;
    if (loom_store_read_begin(e->store, &txn) != 0) {
        loom__timers_note(e, (uint64_t)loom__now_ms() + 100, key);
        return;
    }
    loom_machine mm;
    if (loom_store_machine_get_by_key(txn, key, &mm) == 0) {
        loom__ns *ns = loom__ns_by_id(e, mm.ns);
        if (ns && mm.id.len <= LOOM_MACHINE_ID_MAX)
            loom__machine_wake_ns(e, ns, mm.id.ptr, mm.id.len);
    }
    loom_txn_end(txn);
}

/* ------------------------------------------------------------ scheduling */

static void schedule(loom__machine *m)
{
    if (m->busy || m->parked)
        return;
    if (!m->head && !m->wake) {
        machine_maybe_free(m);
        return;
    }
    loom_engine *e = m->ns->e;
    m->parked = true;
    m->ready_next = NULL;
    if (e->ready_tail)
        e->ready_tail->ready_next = m;
    else
        e->ready_head = m;
    e->ready_tail = m;
}

static void run_step(loom__step *s);

static void start_next(loom__machine *m)
{
    loom_engine *e = m->ns->e;
    loom__op *op;
    if (m->wake) {
        m->wake = false;
        op = calloc(1, sizeof *op);
        if (!op) {
            loom_log(LOOM_LOG_ERROR, "out of memory waking %s/%s", m->ns->cfg.name, m->id);
            schedule(m);
            return;
        }
        op->kind = LOOM_OP_WAKE;
    } else {
        op = m->head;
        m->head = op->next;
        if (!m->head)
            m->tail = NULL;
        m->queued--;
        e->ops_queued--;
    }
    loom__step *s = calloc(1, sizeof *s);
    if (!s) {
        if (op->cl)
            loom__reply_error(op->cl, op->corr, LOOM_ENOMEM, "out of memory");
        loom__op_free(op);
        schedule(m);
        return;
    }
    s->e = e;
    s->m = m;
    s->op = op;
    m->busy = true;
    e->steps_running++;
    run_step(s);
}

void loom__ready_drain(loom_engine *e)
{
    if (e->stopping)
        return; /* nothing new starts; machines are freed at close */
    while (e->ready_head && e->steps_running < e->cfg.limits.max_steps_in_flight) {
        loom__machine *m = e->ready_head;
        e->ready_head = m->ready_next;
        if (!e->ready_head)
            e->ready_tail = NULL;
        m->parked = false;
        LOOM_ASSERT(!m->busy);
        /* m may be freed inside: not touched afterwards */
        if (m->head || m->wake)
            start_next(m);
        else
            machine_maybe_free(m);
    }
}

static void step_done(loom__step *s)
{
    loom__machine *m = s->m;
    loom_engine *e = s->e;
    LOOM_ASSERT(s->where == LOOM__NOWHERE);
    LOOM_ASSERT(m->busy);
    m->busy = false;
    LOOM_ASSERT(e->steps_running > 0);
    e->steps_running--;
    loom__op_free(s->op);
    if (s->reply)
        loom_envelope_free(s->reply);
    free(s->events);
    free(s->outcome);
    free(s->reason);
    free(s);
    schedule(m);
}

/* ------------------------------------------------------------ replies */

static const char *op_request_id(const loom__op *op)
{
    const loom_envelope *r = op->req;
    if (!r)
        return NULL;
    const char *rid = NULL;
    switch (r->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
        rid = r->start->request_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_CALL:
        rid = r->call->request_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
        rid = r->notify->request_id;
        break;
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
        rid = r->repair->request_id;
        break;
    default:
        break;
    }
    return rid && *rid ? rid : NULL;
}

static ProtobufCBinaryData op_args(const loom__op *op)
{
    ProtobufCBinaryData none = {0, NULL};
    const loom_envelope *r = op->req;
    if (!r)
        return none;
    switch (r->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
        return r->start->args;
    case LOOM__V1__ENVELOPE__BODY_CALL:
        return r->call->args;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
        return r->notify->args;
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
        return r->repair->args;
    default:
        return none;
    }
}

/* The reply message of op: packed for the outcome record and sent. */
typedef struct reply_msg {
    Loom__V1__StartReply start;
    Loom__V1__CallReply call;
    Loom__V1__RepairReply repair;
    Loom__V1__NotifyReply notify;
    Loom__V1__SimpleRepairReply simple;
    Loom__V1__RemoveReply remove;
} reply_msg;

static void fill_reply(loom__op_kind kind, reply_msg *r, loom_envelope *env,
                       ProtobufCBinaryData response, uint64_t last_event_id, uint64_t notif_id)
{
    switch (kind) {
    case LOOM_OP_START:
        loom__v1__start_reply__init(&r->start);
        r->start.response = response;
        r->start.last_event_id = last_event_id;
        env->body_case = LOOM__V1__ENVELOPE__BODY_START_REPLY;
        env->start_reply = &r->start;
        break;
    case LOOM_OP_CALL:
        loom__v1__call_reply__init(&r->call);
        r->call.response = response;
        r->call.last_event_id = last_event_id;
        env->body_case = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
        env->call_reply = &r->call;
        break;
    case LOOM_OP_REPAIR:
        loom__v1__repair_reply__init(&r->repair);
        r->repair.response = response;
        r->repair.last_event_id = last_event_id;
        env->body_case = LOOM__V1__ENVELOPE__BODY_REPAIR_REPLY;
        env->repair_reply = &r->repair;
        break;
    case LOOM_OP_NOTIFY:
        loom__v1__notify_reply__init(&r->notify);
        r->notify.notification_id = notif_id;
        env->body_case = LOOM__V1__ENVELOPE__BODY_NOTIFY_REPLY;
        env->notify_reply = &r->notify;
        break;
    case LOOM_OP_SIMPLE_REPAIR:
        loom__v1__simple_repair_reply__init(&r->simple);
        env->body_case = LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR_REPLY;
        env->simple_repair_reply = &r->simple;
        break;
    case LOOM_OP_REMOVE:
        loom__v1__remove_reply__init(&r->remove);
        env->body_case = LOOM__V1__ENVELOPE__BODY_REMOVE_REPLY;
        env->remove_reply = &r->remove;
        break;
    case LOOM_OP_WAKE:
        LOOM_ASSERT(!"no reply for internal steps");
        break;
    }
}

/* Packs the body message of env (one of the reply kinds above). */
static int pack_body(const loom_envelope *env, uint8_t **out, size_t *len)
{
    const ProtobufCMessage *msg = NULL;
    switch (env->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START_REPLY:
        msg = &env->start_reply->base;
        break;
    case LOOM__V1__ENVELOPE__BODY_CALL_REPLY:
        msg = &env->call_reply->base;
        break;
    case LOOM__V1__ENVELOPE__BODY_REPAIR_REPLY:
        msg = &env->repair_reply->base;
        break;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY_REPLY:
        msg = &env->notify_reply->base;
        break;
    default:
        return LOOM_EINTERNAL;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    *out = malloc(n ? n : 1);
    if (!*out)
        return LOOM_ENOMEM;
    protobuf_c_message_pack(msg, *out);
    *len = n;
    return 0;
}

/* A repeated request: answer with the stored outcome, byte for byte the
 * reply message of the first run. */
static void reply_outcome(loom__op *op, loom_slice bytes)
{
    Loom__V1__Envelope__BodyCase which;
    switch (op->kind) {
    case LOOM_OP_START:
        which = LOOM__V1__ENVELOPE__BODY_START_REPLY;
        break;
    case LOOM_OP_CALL:
        which = LOOM__V1__ENVELOPE__BODY_CALL_REPLY;
        break;
    case LOOM_OP_REPAIR:
        which = LOOM__V1__ENVELOPE__BODY_REPAIR_REPLY;
        break;
    case LOOM_OP_NOTIFY:
        which = LOOM__V1__ENVELOPE__BODY_NOTIFY_REPLY;
        break;
    default:
        LOOM_ASSERT(!"only start/call/repair/notify record outcomes");
        return;
    }
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&loom__v1__envelope__descriptor, (unsigned)which);
    LOOM_ASSERT(f != NULL);
    ProtobufCMessage *msg = protobuf_c_message_unpack(f->descriptor, NULL, bytes.len, bytes.ptr);
    if (!msg) {
        loom__reply_error(op->cl, op->corr, LOOM_ECORRUPTED, "stored outcome does not decode");
        return;
    }
    loom__reply_body(op->cl, op->corr, which, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void finish_error(loom__step *s, int err, const char *fmt, const char *detail)
{
    if (s->op->cl)
        loom__reply_error(s->op->cl, s->op->corr, err, fmt, detail);
    step_done(s);
}

/* ------------------------------------------------------------ the steps */

static loom_slice mid(const loom__machine *m)
{
    return loom_slice_str(m->id);
}

static void commit_prepare(loom__step *s, loom_step *st)
{
    memset(st, 0, sizeof *st);
    st->ns = s->m->ns->id;
    st->id = mid(s->m);
    st->now_ms = (uint64_t)loom__now_ms();
    st->expected_last_event_id = s->last_event_id;
}

static void check_move(const loom__step *s, loom_status to)
{
    loom_mstate from = s->exists ? (loom_mstate)s->status : LOOM_MSTATE_ABSENT;
    if (to == LOOM_STATUS_NONE && s->exists)
        return; /* status kept: no move */
    if (to == LOOM_STATUS_NONE)
        to = LOOM_STATUS_WORKING;
    LOOM_ASSERT(loom_mstate_move_ok(from, (loom_mstate)to));
}

static void submit(loom__step *s)
{
    for (size_t i = 0; i < s->nst; i++)
        if (!s->st[i].remove)
            check_move(s, s->st[i].status);
    loom__committer_submit(s->e, s);
}

/* Outcome lookup for a repeated request id. Returns true when answered. */
static bool answer_repeat(loom__step *s, loom_txn *txn)
{
    const char *rid = op_request_id(s->op);
    if (!rid || !s->exists)
        return false;
    loom_slice out;
    uint64_t stored_at;
    if (loom_store_outcome_get(txn, s->key, loom_slice_str(rid), &out, &stored_at) != 0)
        return false;
    uint64_t window_ms = s->e->cfg.request_id_window_s * 1000;
    uint64_t now = (uint64_t)loom__now_ms();
    if (now > stored_at && now - stored_at > window_ms)
        return false; /* expired (a clock that went back keeps it fresh) */
    reply_outcome(s->op, out);
    return true;
}

static void run_simple_repair(loom__step *s)
{
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    loom_status to = s->status_before_failure == LOOM_STATUS_RETRYING ? LOOM_STATUS_RETRYING
                                                                      : LOOM_STATUS_WORKING;
    st->status = to;
    if (to == LOOM_STATUS_RETRYING && s->retry.step_kind != 0) {
        /* a fresh retry budget, first attempt now */
        st->retry_op = LOOM_RETRY_SET;
        st->retry = s->retry;
        st->retry.attempt = 1;
        st->retry.first_failure_ms = st->now_ms;
        st->retry.next_attempt_ms = st->now_ms;
    } else {
        st->status = LOOM_STATUS_WORKING;
        st->retry_op = LOOM_RETRY_CLEAR;
    }
    s->nst = 1;
    submit(s);
}

/* NotifyReply's one field, notification_id = 1, is a varint: its packed
 * form is this tag byte and the id as a varint, which the store appends to
 * the outcome in the transaction that assigns the id. */
static const uint8_t notify_reply_tag = (1u << 3) | PROTOBUF_C_WIRE_TYPE_VARINT;

static void run_notify(loom__step *s)
{
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    st->unchecked = true;
    st->notify = true;
    ProtobufCBinaryData a = op_args(s->op);
    st->notify_args = loom_slice_of(a.data, a.len);
    const char *rid = op_request_id(s->op);
    if (rid) {
        st->record_outcome = true;
        st->request_id = loom_slice_str(rid);
        st->outcome = loom_slice_of(&notify_reply_tag, 1);
        st->outcome_append_notification_id = true;
    }
    s->nst = 1;
    submit(s);
}

static void run_remove(loom__step *s)
{
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    st->unchecked = true;
    st->remove = true;
    s->nst = 1;
    submit(s);
}

static bool first_notification(loom_txn *txn, loom_machine_key key, uint64_t *id)
{
    loom_notification n;
    if (loom_store_notifications_of(txn, key, 0, &n, 1) != 1)
        return false;
    *id = n.id;
    return true;
}

/* Timer, retry or notification: what is due for this machine now
 * (wake.c decides). Sets the step's kind and returns true when a
 * processor step is due. */
static bool wake_due(loom__step *s, loom_txn *txn)
{
    loom__wake_input in = {
        .exists = s->exists,
        .status = s->status,
        .retry = s->retry,
        .timer_deadline_ms = s->timer.deadline_ms,
        .now_ms = (uint64_t)loom__now_ms(),
    };
    uint64_t first;
    if (s->exists && s->status == LOOM_STATUS_WORKING && first_notification(txn, s->key, &first))
        in.first_notification_id = first;
    loom__due d = loom__wake_decide(&in);
    if (d.kind == LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED) {
        if (d.note_ms)
            loom__timers_note(s->e, d.note_ms, s->key);
        return false;
    }
    s->kind = d.kind;
    s->attempt = d.attempt;
    s->notification_id = d.notification_id;
    return true;
}

static void read_meta(loom__step *s, const loom_machine *mm)
{
    s->exists = true;
    s->key = mm->key;
    s->last_event_id = mm->last_event_id;
    s->status = mm->status;
    s->status_before_failure = mm->status_before_failure;
    s->retry = mm->retry;
    s->timer = mm->timer;
}

/* The preconditions of a client operation on the machine as read; sets
 * the processor step kind where there is one. 0 or the error to answer. */
static int precheck(loom__step *s, loom__op_kind kind)
{
    const char *id = s->m->id;
    s->attempt = 1;
    if (kind == LOOM_OP_START) {
        s->kind = LOOM__V1__PROCESS_KIND__PROCESS_INIT;
        return s->exists
                   ? loom_seterr(LOOM_EMACHINE_ALREADY_EXISTS, "machine %s already exists", id)
                   : 0;
    }
    if (!s->exists)
        return loom_seterr(LOOM_EMACHINE_NOT_FOUND, "machine %s not found", id);
    bool failed = s->status == LOOM_STATUS_FAILED;
    if (kind == LOOM_OP_CALL) {
        s->kind = LOOM__V1__PROCESS_KIND__PROCESS_CALL;
        return failed ? loom_seterr(LOOM_EMACHINE_FAILED, "machine %s is failed", id) : 0;
    }
    if (kind == LOOM_OP_REPAIR || kind == LOOM_OP_SIMPLE_REPAIR) {
        if (kind == LOOM_OP_REPAIR)
            s->kind = LOOM__V1__PROCESS_KIND__PROCESS_REPAIR;
        return failed ? 0
                      : loom_seterr(LOOM_EMACHINE_ALREADY_WORKING, "machine %s is not failed", id);
    }
    return 0;
}

static void run_step(loom__step *s)
{
    loom_engine *e = s->e;
    loom__machine *m = s->m;
    loom_txn *txn;
    int rc = loom_store_read_begin(e->store, &txn);
    if (rc) {
        finish_error(s, rc, "store: %s", loom_errdetail());
        return;
    }
    loom_machine mm;
    rc = loom_store_machine_get(txn, m->ns->id, mid(m), &mm);
    if (rc == 0)
        read_meta(s, &mm);
    else if (rc != LOOM_EMACHINE_NOT_FOUND)
        goto error;
    s->deadline_ms = loom__mono_ms() + m->ns->cfg.step_timeout_ms;
    loom__op_kind kind = s->op->kind;
    if (kind == LOOM_OP_WAKE && wake_due(s, txn)) {
        step_send_with(s, txn, &mm);
        return;
    }
    if (kind == LOOM_OP_WAKE || answer_repeat(s, txn)) {
        loom_txn_end(txn);
        step_done(s);
        return;
    }
    rc = precheck(s, kind);
    if (rc)
        goto error;
    if (s->kind != LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED) {
        step_send_with(s, txn, s->exists ? &mm : NULL);
        return;
    }
    loom_txn_end(txn);
    switch (kind) {
    case LOOM_OP_SIMPLE_REPAIR:
        run_simple_repair(s);
        return;
    case LOOM_OP_NOTIFY:
        run_notify(s);
        return;
    case LOOM_OP_REMOVE:
        run_remove(s);
        return;
    default:
        LOOM_ASSERT(!"unexpected op kind");
        return;
    }
error:
    loom_txn_end(txn);
    finish_error(s, rc, "%s", loom_errdetail());
}

/* ------------------------------------------------------------ processor request */

typedef struct req_build {
    Loom__V1__ProcessRequest pr;
    Loom__V1__Machine mach;
    Loom__V1__HistoryRange range;
    Loom__V1__Event *evs;
    Loom__V1__Event **evp;
    char reason[1];
} req_build;

static int read_history(loom_txn *txn, loom_machine_key key, uint64_t last_event_id,
                        const loom_range *r, req_build *b)
{
    loom_history it;
    int rc = loom_history_begin(txn, key, r, &it);
    if (rc)
        return rc;
    size_t cap = r->limit ? r->limit : LOOM_RANGE_MAX;
    if (cap > last_event_id)
        cap = last_event_id ? (size_t)last_event_id : 1;
    size_t n = 0;
    b->evs = malloc(cap * sizeof *b->evs);
    b->evp = malloc(cap * sizeof *b->evp);
    if (!b->evs || !b->evp) {
        loom_history_end(&it);
        return LOOM_ENOMEM;
    }
    loom_event ev;
    while (n < cap && (rc = loom_history_next(&it, &ev)) == 1) {
        Loom__V1__Event *pe = &b->evs[n];
        loom__v1__event__init(pe);
        pe->id = ev.id;
        pe->created_at_ms = (int64_t)ev.created_at_ms;
        pe->format_version = ev.format_version;
        pe->data.data = (uint8_t *)ev.data.ptr;
        pe->data.len = ev.data.len;
        b->evp[n] = pe;
        n++;
    }
    loom_history_end(&it);
    if (rc < 0)
        return rc;
    b->mach.n_history = n;
    b->mach.history = b->evp;
    return 0;
}

void loom__meta_to_pb(const loom_machine *mm, Loom__V1__Machine *pb)
{
    pb->status = (Loom__V1__MachineStatus)mm->status;
    pb->last_event_id = mm->last_event_id;
    pb->aux_state.data = (uint8_t *)mm->aux_state.ptr;
    pb->aux_state.len = mm->aux_state.len;
    pb->timer_deadline_ms = (int64_t)mm->timer.deadline_ms;
    pb->retry_attempt = mm->retry.attempt;
    pb->created_at_ms = (int64_t)mm->created_at_ms;
    pb->updated_at_ms = (int64_t)mm->updated_at_ms;
}

static void machine_to_pb(const loom__machine *m, const loom_machine *mm, Loom__V1__Machine *pb)
{
    pb->ns = m->ns->cfg.name;
    pb->id = m->id;
    if (mm)
        loom__meta_to_pb(mm, pb);
}

static void range_to_pb(const loom_range *r, Loom__V1__HistoryRange *pb)
{
    loom__v1__history_range__init(pb);
    pb->after = r->after;
    pb->has_after = r->has_after;
    pb->limit = r->limit;
    pb->direction = r->direction == LOOM_DIRECTION_BACKWARD
                        ? LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                        : LOOM__V1__DIRECTION__DIRECTION_FORWARD;
}

/* The history sent with the step: the timer's stored range for timeouts,
 * the call's own range, else the namespace default. */
static void step_range(const loom__step *s, loom_range *r)
{
    const loom_range_config *dflt = &s->m->ns->cfg.default_range;
    if (s->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT) {
        *r = s->timer.range;
        if (r->limit == 0 || r->limit > LOOM_RANGE_MAX)
            r->limit = LOOM_RANGE_MAX;
        return;
    }
    const Loom__V1__HistoryRange *pb = NULL;
    if (s->op->req && s->op->req->body_case == LOOM__V1__ENVELOPE__BODY_CALL)
        pb = s->op->req->call->range;
    loom__range_from_pb(pb, dflt, r);
}

/* Builds the ProcessRequest and sends it. The read transaction (the
 * caller's) lives until the request is encoded: zero copies. mm is the
 * machine as read in txn, or NULL to read it here. */
static int build_and_send(loom__step *s, loom__pconn *pc, loom_txn *txn, const loom_machine *mm)
{
    req_build b;
    memset(&b, 0, sizeof b);
    loom__v1__process_request__init(&b.pr);
    loom__v1__machine__init(&b.mach);
    loom_machine read;
    loom_range r;
    int rc = 0;
    step_range(s, &r);
    if (s->exists && !mm) {
        rc = loom_store_machine_get_by_key(txn, s->key, &read);
        if (rc == 0 && read.last_event_id != s->last_event_id)
            rc = loom_seterr(LOOM_ESTALE, "machine moved on while its step waited");
        mm = rc == 0 ? &read : NULL;
    }
    if (s->exists && rc == 0) {
        rc = read_history(txn, s->key, mm->last_event_id, &r, &b);
        machine_to_pb(s->m, mm, &b.mach);
        if (rc == 0 && mm->reason.len) {
            /* failure_reason is a string: copy it NUL-terminated */
            b.mach.failure_reason = strndup(mm->reason.ptr, mm->reason.len);
        }
    } else if (rc == 0) {
        machine_to_pb(s->m, NULL, &b.mach);
        b.mach.status = LOOM__V1__MACHINE_STATUS__STATUS_WORKING;
    }
    if (rc == 0 && s->kind == LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION) {
        loom_notification n;
        int k = loom_store_notifications_of(txn, s->key, s->notification_id - 1, &n, 1);
        if (k == 1 && n.id == s->notification_id) {
            b.pr.args.data = (uint8_t *)n.args.ptr;
            b.pr.args.len = n.args.len;
        } else {
            rc = loom_seterr(LOOM_ENOT_FOUND, "notification %llu is no longer pending",
                             (unsigned long long)s->notification_id);
        }
    } else {
        b.pr.args = op_args(s->op);
    }
    if (rc == 0) {
        range_to_pb(&r, &b.range);
        b.mach.range = &b.range;
        b.pr.kind = s->kind;
        b.pr.machine = &b.mach;
        b.pr.notification_id = s->notification_id;
        b.pr.attempt = s->attempt;
        b.pr.deadline_ms = loom__now_ms() + (s->deadline_ms - loom__mono_ms());
        loom_envelope env;
        loom__v1__envelope__init(&env);
        env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
        env.process = &b.pr;
        rc = loom__proc_send(s, pc, &env);
    }
    free(b.evs);
    free(b.evp);
    if (b.mach.failure_reason != protobuf_c_empty_string)
        free(b.mach.failure_reason);
    return rc;
}

static void notification_gone(loom__step *s)
{
    /* the retried notification vanished (its machine was repaired and the
     * notification delivered meanwhile): drop the retry bookkeeping */
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    if (s->status == LOOM_STATUS_RETRYING) {
        st->status = LOOM_STATUS_WORKING;
        st->retry_op = LOOM_RETRY_CLEAR;
    }
    s->nst = 1;
    submit(s);
}

/* Sends the step to a processor; txn (ended here) and mm are the read the
 * step started with, or NULL when a parked step is sent again. */
static void step_send_with(loom__step *s, loom_txn *txn, const loom_machine *mm)
{
    loom__pconn *pc;
    int rc = loom__proc_conn(s->m->ns, &pc);
    if (rc == 0 && !txn) {
        rc = loom_store_read_begin(s->e->store, &txn);
        mm = NULL;
    }
    if (rc == 0)
        rc = build_and_send(s, pc, txn, mm);
    loom_txn_end(txn);
    if (rc == LOOM_EBUSY) {
        loom__proc_wait(s);
        return;
    }
    if (rc == LOOM_ENOT_FOUND) {
        notification_gone(s);
        return;
    }
    if (rc == LOOM_ECLOSED || rc == LOOM_ERESOURCE_EXHAUSTED)
        rc = LOOM_EPROCESSOR_UNAVAILABLE;
    if (rc)
        loom__step_fail(s, rc, rc == LOOM_EPROCESSOR_UNAVAILABLE, loom_errdetail());
}

void loom__step_send(loom__step *s)
{
    step_send_with(s, NULL, NULL);
}

/* ------------------------------------------------------------ results */

static void set_timer_from_pb(const Loom__V1__SetTimer *t, const loom__step *s, loom_step *st)
{
    st->timer_op = LOOM_TIMER_SET;
    if (t->when_case == LOOM__V1__SET_TIMER__WHEN_TIMEOUT_MS)
        st->timer.deadline_ms = st->now_ms + t->timeout_ms;
    else
        st->timer.deadline_ms = (uint64_t)t->deadline_ms;
    if (st->timer.deadline_ms == 0)
        st->timer.deadline_ms = 1; /* 0 means "no timer": fire at once instead */
    loom__range_from_pb(t->range, &s->m->ns->cfg.default_range, &st->timer.range);
}

/* How a successful step moves the status and the retry bookkeeping. */
static void success_status(const loom__step *s, loom_step *st)
{
    bool retrying = s->status == LOOM_STATUS_RETRYING;
    uint32_t rkind = s->retry.step_kind;
    switch (s->kind) {
    case LOOM__V1__PROCESS_KIND__PROCESS_REPAIR:
        st->status = LOOM_STATUS_WORKING;
        st->retry_op = LOOM_RETRY_CLEAR;
        break;
    case LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT:
        if (retrying && rkind == LOOM_RETRY_KIND_TIMEOUT) {
            st->status = LOOM_STATUS_WORKING;
            st->retry_op = LOOM_RETRY_CLEAR;
        }
        break;
    case LOOM__V1__PROCESS_KIND__PROCESS_NOTIFICATION:
        st->ack_notification_id = s->notification_id;
        if (retrying && rkind == LOOM_RETRY_KIND_NOTIFICATION) {
            st->status = LOOM_STATUS_WORKING;
            st->retry_op = LOOM_RETRY_CLEAR;
        }
        break;
    default:
        break;
    }
}

static int record_outcome(loom__step *s, loom_step *st, ProtobufCBinaryData response,
                          uint64_t last_event_id)
{
    if (!op_request_id(s->op))
        return 0;
    reply_msg r;
    loom_envelope env;
    loom__v1__envelope__init(&env);
    fill_reply(s->op->kind, &r, &env, response, last_event_id, 0);
    int rc = pack_body(&env, &s->outcome, &s->outcome_len);
    if (rc)
        return rc;
    st->record_outcome = true;
    st->request_id = loom_slice_str(op_request_id(s->op));
    st->outcome = loom_slice_of(s->outcome, s->outcome_len);
    return 0;
}

static void commit_result(loom__step *s)
{
    const Loom__V1__ProcessResult *r = s->reply->process_reply->result;
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    st->create = s->kind == LOOM__V1__PROCESS_KIND__PROCESS_INIT;
    if (r->n_events) {
        s->events = malloc(r->n_events * sizeof *s->events);
        if (!s->events) {
            loom__step_fail(s, LOOM_ENOMEM, true, "out of memory");
            return;
        }
        for (size_t i = 0; i < r->n_events; i++) {
            s->events[i].format_version = r->events[i]->format_version;
            s->events[i].data = loom_slice_of(r->events[i]->data.data, r->events[i]->data.len);
        }
        st->events = s->events;
        st->n_events = (uint32_t)r->n_events;
    }
    st->set_aux_state = r->set_aux_state;
    st->aux_state = loom_slice_of(r->aux_state.data, r->aux_state.len);
    const Loom__V1__Action *a = r->action;
    if (a && a->timer_case == LOOM__V1__ACTION__TIMER_SET_TIMER)
        set_timer_from_pb(a->set_timer, s, st);
    else if (a && a->timer_case == LOOM__V1__ACTION__TIMER_UNSET_TIMER)
        st->timer_op = LOOM_TIMER_UNSET;
    else if (s->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT)
        st->timer_op = LOOM_TIMER_UNSET; /* a fired timer is consumed */
    success_status(s, st);
    if (record_outcome(s, st, r->response, s->last_event_id + r->n_events)) {
        loom__step_fail(s, LOOM_ENOMEM, true, "out of memory");
        return;
    }
    s->nst = 1;
    if (a && a->remove) {
        loom_step *rm = &s->st[1];
        commit_prepare(s, rm);
        rm->unchecked = true;
        rm->remove = true;
        s->nst = 2;
    }
    submit(s);
}

void loom__step_on_reply(loom__step *s, loom_envelope *env)
{
    int rc;
    if (env->body_case != LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY || !env->process_reply) {
        rc = loom_seterr(LOOM_EBAD_REPLY, "processor answered with a non-ProcessReply (body %d)",
                         (int)env->body_case);
    } else {
        rc = loom__validate_reply(env->process_reply, &s->e->cfg.limits, loom__now_ms(),
                                  s->kind == LOOM__V1__PROCESS_KIND__PROCESS_INIT);
    }
    if (rc) {
        loom_envelope_free(env);
        loom__step_fail(s, LOOM_EBAD_REPLY, true, loom_errdetail());
        return;
    }
    const Loom__V1__ProcessReply *pr = env->process_reply;
    if (pr->outcome_case == LOOM__V1__PROCESS_REPLY__OUTCOME_FAILURE) {
        loom__step_fail(s, LOOM_EPROCESSOR_FAILED, pr->failure->retryable,
                        pr->failure->reason ? pr->failure->reason : "");
        loom_envelope_free(env);
        return;
    }
    s->reply = env;
    commit_result(s);
}

/* A timer or notification step failed: retry by the namespace policy, or
 * fail the machine. Committed like any step, so backoff survives restarts. */
static void commit_failure(loom__step *s, int err, bool retryable, const char *reason)
{
    loom_engine *e = s->e;
    bool timeout_kind = s->kind == LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT;
    uint32_t rkind = timeout_kind ? LOOM_RETRY_KIND_TIMEOUT : LOOM_RETRY_KIND_NOTIFICATION;
    loom_step *st = &s->st[0];
    commit_prepare(s, st);
    uint64_t now = st->now_ms;
    bool continuing = s->status == LOOM_STATUS_RETRYING && s->retry.step_kind == rkind;
    uint64_t first = continuing ? s->retry.first_failure_ms : now;
    if (first > now)
        first = now;
    size_t n = strlen(reason) + 128;
    s->reason = malloc(n);
    if (s->reason)
        snprintf(s->reason, n, "%s step, attempt %u: %s: %s",
                 timeout_kind ? "timeout" : "notification", s->attempt, loom_err_name(err), reason);
    int64_t next = 0;
    bool again = retryable && loom_retry_next(&s->m->ns->cfg.retry, s->attempt, (int64_t)first,
                                              (int64_t)now, &e->rng, &next) == 1;
    st->retry_op = LOOM_RETRY_SET;
    st->retry =
        (loom_retry){s->attempt, rkind, s->notification_id, first, again ? (uint64_t)next : 0};
    if (again) {
        st->status = LOOM_STATUS_RETRYING;
        if (timeout_kind) {
            /* the retried timeout rides on the timer: one wake time */
            st->timer_op = LOOM_TIMER_SET;
            st->timer.deadline_ms = (uint64_t)next;
            st->timer.range = s->timer.range;
        }
        loom_log(LOOM_LOG_WARN, "machine %s/%s: %s; retry in %lld ms", s->m->ns->cfg.name, s->m->id,
                 s->reason ? s->reason : reason, (long long)(next - (int64_t)now));
    } else {
        st->status = LOOM_STATUS_FAILED;
        /* The stored reason is sent back in GetMachine: cut it on a
         * character boundary or no reply carrying it could be encoded. */
        if (s->reason && strlen(s->reason) > LOOM_STORE_MAX_REASON_LEN) {
            s->reason[LOOM_STORE_MAX_REASON_LEN] = '\0';
            loom_utf8_trim(s->reason);
        }
        st->reason = loom_slice_str(s->reason ? s->reason : "step failed");
        loom_log(LOOM_LOG_WARN, "machine %s/%s failed: %s", s->m->ns->cfg.name, s->m->id,
                 s->reason ? s->reason : reason);
    }
    s->nst = 1;
    submit(s);
}

void loom__step_fail(loom__step *s, int err, bool retryable, const char *reason)
{
    LOOM_ASSERT(s->where == LOOM__NOWHERE);
    loom__op *op = s->op;
    if (op->kind == LOOM_OP_WAKE && s->kind != LOOM__V1__PROCESS_KIND__PROCESS_UNSPECIFIED &&
        !s->e->stopping) {
        commit_failure(s, err, retryable, reason);
        return;
    }
    if (op->kind == LOOM_OP_REPAIR && err == LOOM_EPROCESSOR_FAILED)
        err = LOOM_EREPAIR_FAILED;
    if (s->e->stopping && op->cl)
        err = LOOM_ESHUTTING_DOWN;
    finish_error(s, err, "%s", reason);
}

/* ------------------------------------------------------------ commit done */

static void note_wakes(loom__step *s, const loom_step *st)
{
    if (st->timer_op == LOOM_TIMER_SET)
        loom__timers_note(s->e, st->timer.deadline_ms, st->key);
    if (st->retry_op == LOOM_RETRY_SET && st->retry.next_attempt_ms)
        loom__timers_note(s->e, st->retry.next_attempt_ms, st->key);
}

static void answer(loom__step *s, const loom_step *st)
{
    loom__op *op = s->op;
    if (!op->cl)
        return;
    ProtobufCBinaryData response = {0, NULL};
    if (s->reply && s->reply->process_reply->result)
        response = s->reply->process_reply->result->response;
    reply_msg r;
    loom_envelope env;
    loom__v1__envelope__init(&env);
    env.correlation_id = op->corr;
    fill_reply(op->kind, &r, &env, response, st->last_event_id, s->notification_id);
    loom__reply(op->cl, &env);
}

void loom__step_committed(loom__step *s)
{
    const loom_step *st = &s->st[0];
    int rc = s->commit_rc ? s->commit_rc : st->result;
    if (rc == 0 && s->nst == 2 && s->st[1].result)
        rc = s->st[1].result;
    if (rc) {
        loom_log(LOOM_LOG_ERROR, "machine %s/%s: commit refused: %s", s->m->ns->cfg.name, s->m->id,
                 loom_err_name(rc));
        if (s->exists && s->op->kind == LOOM_OP_WAKE)
            loom__timers_note(s->e, (uint64_t)loom__now_ms() + 1000, s->key);
        finish_error(s, rc == LOOM_ESTALE ? LOOM_EINTERNAL : rc, "commit failed: %s",
                     loom_err_name(rc));
        return;
    }
    if (st->notify) {
        s->notification_id = st->notification_id;
        s->m->wake = true;
    }
    note_wakes(s, st);
    answer(s, st);
    /* something else may be due now: the next notification, a timer kept
     * through a repair; a wake with nothing due ends there */
    if (s->op->kind == LOOM_OP_WAKE || st->ack_notification_id || st->status != LOOM_STATUS_NONE)
        s->m->wake = true;
    step_done(s);
}
