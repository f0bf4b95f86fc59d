/* The engine: store, namespaces, client listeners and the dispatch of the
 * client API. Steps and their scheduling are in machine.c, processor
 * connections in proc.c, group commit in committer.c, timers in timers.c.
 *
 * Shutdown (SIGTERM/SIGINT or loom_engine_stop): listeners and client
 * connections close, steps waiting on processors are abandoned without
 * storing anything (processor calls are at-least-once: they will run
 * again), everything already handed to the committer is committed, then
 * the store closes. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_int.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
#define PRUNE_INTERVAL_MS 60000

/* ------------------------------------------------------------ clients */

void loom__client_ref(loom__client *cl)
{
    cl->refs++;
}

void loom__client_unref(loom__client *cl)
{
    LOOM_ASSERT(cl->refs > 0);
    if (--cl->refs == 0)
        free(cl);
}

void loom__reply(loom__client *cl, loom_envelope *env)
{
    if (cl->closed)
        return;
    int rc = loom_conn_send(cl->conn, env);
    if (rc)
        loom_conn_close(cl->conn, rc, "reply could not be queued");
}

void loom__reply_error(loom__client *cl, uint64_t corr, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    loom_utf8_trim(msg); /* a character split by the cut would make it unsendable */
    Loom__V1__Error er;
    loom__v1__error__init(&er);
    er.code = loom_err_wire(err);
    er.message = msg;
    loom__reply_body(cl, corr, LOOM__V1__ENVELOPE__BODY_ERROR, &er.base);
}

void loom__reply_body(loom__client *cl, uint64_t corr, Loom__V1__Envelope__BodyCase which,
                      ProtobufCMessage *body)
{
    loom_envelope env;
    loom__v1__envelope__init(&env);
    env.correlation_id = corr;
    loom_envelope_set_body(&env, which, body);
    loom__reply(cl, &env);
}

loom__ns *loom__ns_by_id(loom_engine *e, loom_ns_id id)
{
    uint8_t k[4] = {(uint8_t)(id.v >> 24), (uint8_t)(id.v >> 16), (uint8_t)(id.v >> 8),
                    (uint8_t)id.v};
    return loom__hmap_get(&e->ns_by_id, k, 4);
}

static loom__ns *ns_by_name(loom_engine *e, const char *name)
{
    return name ? loom__hmap_get(&e->ns_by_name, name, strlen(name)) : NULL;
}

/* ------------------------------------------------------------ namespaces */

static int ns_add(loom_engine *e, loom_ns_id id, const loom_ns_config *cfg)
{
    loom__ns *ns = calloc(1, sizeof *ns);
    if (!ns)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    ns->e = e;
    ns->id = id;
    ns->id_key[0] = (uint8_t)(id.v >> 24);
    ns->id_key[1] = (uint8_t)(id.v >> 16);
    ns->id_key[2] = (uint8_t)(id.v >> 8);
    ns->id_key[3] = (uint8_t)id.v;
    if (loom_ns_config_copy(&ns->cfg, cfg) != 0) {
        free(ns);
        return LOOM_ENOMEM;
    }
    if (loom__hmap_put(&e->ns_by_name, ns->cfg.name, strlen(ns->cfg.name), ns) != 0) {
        loom_ns_config_free(&ns->cfg);
        free(ns);
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    }
    if (loom__hmap_put(&e->ns_by_id, ns->id_key, 4, ns) != 0) {
        loom__hmap_del(&e->ns_by_name, ns->cfg.name, strlen(ns->cfg.name));
        loom_ns_config_free(&ns->cfg);
        free(ns);
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    }
    return 0;
}

static bool endpoints_equal(const loom_ns_config *a, const loom_ns_config *b)
{
    if (a->n_processors != b->n_processors)
        return false;
    for (size_t i = 0; i < a->n_processors; i++)
        if (strcmp(a->processors[i], b->processors[i]) != 0)
            return false;
    return true;
}

/* Replaces a live namespace's config; new endpoints drop the old
 * connections (their steps fail as PROCESSOR_UNAVAILABLE, retryable). */
static int ns_replace(loom__ns *ns, const loom_ns_config *cfg)
{
    loom_ns_config copy;
    if (loom_ns_config_copy(&copy, cfg) != 0)
        return LOOM_ENOMEM;
    bool same = endpoints_equal(&ns->cfg, cfg);
    if (!same)
        loom__proc_close_ns(ns);
    /* the name (the map key) is equal: swap it in place of the old copy */
    char *old_name = ns->cfg.name;
    ns->cfg.name = NULL;
    free(copy.name);
    copy.name = old_name;
    loom_ns_config_free(&ns->cfg);
    ns->cfg = copy;
    if (!same)
        for (size_t i = 0; i < LOOM__MAX_ENDPOINTS; i++)
            ns->retry_at_ms[i] = 0, ns->backoff_ms[i] = 0;
    return 0;
}

/* Register (create) or update in the store, then in memory. */
static int ns_store(loom_engine *e, const loom_ns_config *cfg, bool create, bool upsert)
{
    uint8_t *bytes;
    size_t len;
    int rc = loom__nsconf_encode(cfg, &bytes, &len);
    if (rc)
        return rc;
    loom_ns_id id;
    loom_slice name = loom_slice_str(cfg->name);
    loom_slice conf = loom_slice_of(bytes, len);
    if (create) {
        rc = loom_store_ns_create(e->store, name, conf, &id);
        if (rc == LOOM_ENAMESPACE_ALREADY_EXISTS && upsert)
            create = false;
        else if (rc == 0)
            rc = ns_add(e, id, cfg);
    }
    if (!create) {
        rc = loom_store_ns_update(e->store, name, conf);
        loom__ns *ns = ns_by_name(e, cfg->name);
        if (rc == 0 && ns)
            rc = ns_replace(ns, cfg);
    }
    free(bytes);
    return rc;
}

static int load_namespaces(loom_engine *e)
{
    loom_txn *txn;
    int rc = loom_store_read_begin(e->store, &txn);
    if (rc)
        return rc;
    loom_ns_info page[64];
    char after[LOOM_STORE_MAX_NS_NAME_LEN + 1] = "";
    for (;;) {
        int n = loom_store_ns_list(txn, loom_slice_str(after), page, LOOM_ARRAY_SIZE(page));
        if (n < 0) {
            rc = n;
            break;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            loom_ns_config cfg;
            rc = loom__nsconf_decode(page[i].config.ptr, page[i].config.len, &cfg);
            if (rc == 0) {
                rc = ns_add(e, page[i].id, &cfg);
                loom_ns_config_free(&cfg);
            }
            size_t k = page[i].name.len < sizeof after - 1 ? page[i].name.len : sizeof after - 1;
            memcpy(after, page[i].name.ptr, k);
            after[k] = 0;
        }
        if (rc || n < (int)LOOM_ARRAY_SIZE(page))
            break;
    }
    loom_txn_end(txn);
    return rc;
}

/* ------------------------------------------------------------ requests */

typedef struct req_ctx {
    loom_engine *e;
    loom__client *cl;
    loom_envelope *env;
    uint64_t corr;
} req_ctx;

static void fail(req_ctx *r, int err)
{
    loom__reply_error(r->cl, r->corr, err, "%s", loom_errdetail());
}

/* ns + id checks shared by the machine operations. */
static loom__ns *check_target(req_ctx *r, const char *nsname, const char *id)
{
    if (loom_check_ns_name(nsname) || loom_check_machine_id(id)) {
        fail(r, LOOM_EINVALID_ARGUMENT);
        return NULL;
    }
    loom__ns *ns = ns_by_name(r->e, nsname);
    if (!ns)
        loom__reply_error(r->cl, r->corr, LOOM_ENAMESPACE_NOT_FOUND, "namespace %s not found",
                          nsname);
    return ns;
}

static bool check_request_id(req_ctx *r, const char *rid)
{
    if (rid && strlen(rid) > LOOM_STORE_MAX_REQUEST_ID_LEN) {
        loom__reply_error(r->cl, r->corr, LOOM_EINVALID_ARGUMENT, "request id longer than %u bytes",
                          LOOM_STORE_MAX_REQUEST_ID_LEN);
        return false;
    }
    return true;
}

static void submit_op(req_ctx *r, loom__ns *ns, const char *id, loom__op_kind kind)
{
    if (r->e->stopping) {
        loom__reply_error(r->cl, r->corr, LOOM_ESHUTTING_DOWN, "loomd is shutting down");
        return;
    }
    loom__op *op = calloc(1, sizeof *op);
    if (!op) {
        loom__reply_error(r->cl, r->corr, LOOM_ENOMEM, "out of memory");
        return;
    }
    op->kind = kind;
    op->cl = r->cl;
    op->corr = r->corr;
    op->req = r->env;
    loom__client_ref(r->cl);
    int rc = loom__machine_submit(r->e, ns, id, op);
    if (rc) {
        op->req = NULL; /* stays the dispatcher's to free */
        loom__reply_error(r->cl, r->corr, rc, "%s", loom_errdetail());
        loom__op_free(op);
        return;
    }
    r->env = NULL; /* now the op's */
}

static void on_machine_op(req_ctx *r)
{
    loom_envelope *env = r->env;
    const char *nsname, *id, *rid = NULL;
    loom__op_kind kind;
    switch (env->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
        nsname = env->start->ns, id = env->start->id, rid = env->start->request_id;
        kind = LOOM_OP_START;
        break;
    case LOOM__V1__ENVELOPE__BODY_CALL:
        nsname = env->call->ns, id = env->call->id, rid = env->call->request_id;
        kind = LOOM_OP_CALL;
        if (loom__range_check(env->call->range)) {
            fail(r, LOOM_EINVALID_ARGUMENT);
            return;
        }
        break;
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
        nsname = env->notify->ns, id = env->notify->id, rid = env->notify->request_id;
        kind = LOOM_OP_NOTIFY;
        /* stored until delivered: bounded like an event */
        if (env->notify->args.len > r->e->cfg.limits.max_event_bytes) {
            loom__reply_error(r->cl, r->corr, LOOM_EINVALID_ARGUMENT,
                              "notification args of %zu bytes (limit %u)", env->notify->args.len,
                              r->e->cfg.limits.max_event_bytes);
            return;
        }
        break;
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
        nsname = env->repair->ns, id = env->repair->id, rid = env->repair->request_id;
        kind = LOOM_OP_REPAIR;
        break;
    case LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR:
        nsname = env->simple_repair->ns, id = env->simple_repair->id;
        kind = LOOM_OP_SIMPLE_REPAIR;
        break;
    case LOOM__V1__ENVELOPE__BODY_REMOVE:
        nsname = env->remove->ns, id = env->remove->id;
        kind = LOOM_OP_REMOVE;
        break;
    default:
        LOOM_ASSERT(!"not a machine op");
        return;
    }
    loom__ns *ns = check_target(r, nsname, id);
    if (ns && check_request_id(r, rid))
        submit_op(r, ns, id, kind);
}

/* ------------------------------------------------------------ reads */

/* Fills pb's history from range within max_bytes (the reply must fit a
 * frame); *truncated when the budget, not the range, ended it. */
static int fill_history(loom_txn *txn, const loom_machine *mm, const loom_range *range,
                        Loom__V1__Machine *pb, Loom__V1__Event **evs_out, size_t max_bytes,
                        bool *truncated)
{
    loom_history it;
    int rc = loom_history_begin(txn, mm->key, range, &it);
    if (rc)
        return rc;
    size_t cap = range->limit, n = 0, bytes = 0;
    if (cap > mm->last_event_id)
        cap = mm->last_event_id ? (size_t)mm->last_event_id : 1;
    Loom__V1__Event *evs = malloc(cap * sizeof *evs);
    pb->history = malloc(cap * sizeof *pb->history);
    *evs_out = evs;
    *truncated = false;
    if (!evs || !pb->history) {
        loom_history_end(&it);
        return LOOM_ENOMEM;
    }
    loom_event ev;
    while (n < cap && (rc = loom_history_next(&it, &ev)) == 1) {
        bytes += ev.data.len + 32;
        if (bytes > max_bytes) {
            *truncated = true;
            break;
        }
        loom__v1__event__init(&evs[n]);
        evs[n].id = ev.id;
        evs[n].created_at_ms = (int64_t)ev.created_at_ms;
        evs[n].format_version = ev.format_version;
        evs[n].data.data = (uint8_t *)ev.data.ptr;
        evs[n].data.len = ev.data.len;
        pb->history[n] = &evs[n];
        n++;
    }
    loom_history_end(&it);
    pb->n_history = n;
    return rc < 0 ? rc : 0;
}

/* The meta part of a Machine; *reason is the caller's to free. */
static void meta_to_pb(const loom__ns *ns, const char *id, const loom_machine *mm,
                       Loom__V1__Machine *pb, char **reason)
{
    pb->ns = ns->cfg.name;
    pb->id = (char *)id;
    loom__meta_to_pb(mm, pb);
    *reason = mm->reason.len ? strndup(mm->reason.ptr, mm->reason.len) : NULL;
    if (*reason)
        pb->failure_reason = *reason;
}

static void reply_machine(req_ctx *r, Loom__V1__Machine *pb)
{
    Loom__V1__GetMachineReply rep;
    loom__v1__get_machine_reply__init(&rep);
    rep.machine = pb;
    loom__reply_body(r->cl, r->corr, LOOM__V1__ENVELOPE__BODY_GET_MACHINE_REPLY, &rep.base);
}

static void on_get_machine(req_ctx *r)
{
    Loom__V1__GetMachineRequest *q = r->env->get_machine;
    loom__ns *ns = check_target(r, q->ns, q->id);
    if (!ns)
        return;
    if (loom__range_check(q->range)) {
        fail(r, LOOM_EINVALID_ARGUMENT);
        return;
    }
    loom_txn *txn;
    int rc = loom_store_read_begin(r->e->store, &txn);
    if (rc) {
        fail(r, rc);
        return;
    }
    loom_machine mm;
    Loom__V1__Machine pb;
    Loom__V1__HistoryRange rpb;
    Loom__V1__Event *evs = NULL;
    char *reason = NULL;
    loom__v1__machine__init(&pb);
    loom_range range;
    loom__range_from_pb(q->range, &ns->cfg.default_range, &range);
    rc = loom_store_machine_get(txn, ns->id, loom_slice_str(q->id), &mm);
    if (rc == 0) {
        meta_to_pb(ns, q->id, &mm, &pb, &reason);
        size_t frame = r->e->cfg.limits.max_frame_bytes;
        size_t budget = frame > mm.aux_state.len + 4096 ? frame - mm.aux_state.len - 4096 : 0;
        bool truncated = false;
        rc = fill_history(txn, &mm, &range, &pb, &evs, budget, &truncated);
        /* the range says what the history answers */
        loom__v1__history_range__init(&rpb);
        rpb.after = range.after;
        rpb.has_after = range.has_after;
        rpb.limit = truncated ? (uint32_t)pb.n_history : range.limit;
        rpb.direction = (Loom__V1__Direction)range.direction;
        pb.range = &rpb;
    }
    if (rc == 0)
        reply_machine(r, &pb);
    else if (rc == LOOM_EMACHINE_NOT_FOUND)
        loom__reply_error(r->cl, r->corr, rc, "machine %s not found", q->id);
    else
        fail(r, rc);
    loom_txn_end(txn);
    free(evs);
    free(pb.history);
    free(reason);
}

static loom__ns *list_check(req_ctx *r, const Loom__V1__ListMachinesRequest *q)
{
    if (loom_check_ns_name(q->ns) != 0) {
        fail(r, LOOM_EINVALID_ARGUMENT);
        return NULL;
    }
    loom__ns *ns = ns_by_name(r->e, q->ns);
    if (!ns) {
        loom__reply_error(r->cl, r->corr, LOOM_ENAMESPACE_NOT_FOUND, "namespace %s not found",
                          q->ns);
        return NULL;
    }
    if ((unsigned)q->status > LOOM__V1__MACHINE_STATUS__STATUS_RETRYING ||
        q->limit > LIST_MAX_LIMIT || strlen(q->after) > LOOM_MACHINE_ID_MAX) {
        loom__reply_error(r->cl, r->corr, LOOM_EINVALID_ARGUMENT,
                          "status must be 0..3, limit at most %d, after at most %d bytes",
                          LIST_MAX_LIMIT, LOOM_MACHINE_ID_MAX);
        return NULL;
    }
    return ns;
}

/* One page of summaries; strings are copied NUL-terminated into strs
 * (2 per machine + the cursor), freed by the caller. */
static void list_reply(req_ctx *r, const loom_machine *mms, size_t n, size_t limit, loom_slice next,
                       bool more, Loom__V1__MachineSummary *sums, Loom__V1__MachineSummary **sp,
                       char **strs)
{
    Loom__V1__ListMachinesReply rep;
    loom__v1__list_machines_reply__init(&rep);
    for (size_t i = 0; i < n; i++) {
        loom__v1__machine_summary__init(&sums[i]);
        strs[2 * i] = strndup(mms[i].id.ptr, mms[i].id.len);
        sums[i].id = strs[2 * i] ? strs[2 * i] : "";
        sums[i].status = (Loom__V1__MachineStatus)mms[i].status;
        sums[i].last_event_id = mms[i].last_event_id;
        sums[i].timer_deadline_ms = (int64_t)mms[i].timer.deadline_ms;
        if (mms[i].reason.len) {
            strs[2 * i + 1] = strndup(mms[i].reason.ptr, mms[i].reason.len);
            if (strs[2 * i + 1])
                sums[i].failure_reason = strs[2 * i + 1];
        }
        sp[i] = &sums[i];
    }
    rep.n_machines = n;
    rep.machines = sp;
    /* a full page (or a scan cut short by the store) has a cursor */
    loom_slice last = more ? next : (n == limit && n > 0 ? mms[n - 1].id : loom_slice_of(NULL, 0));
    if (last.len) {
        strs[limit * 2] = strndup(last.ptr, last.len);
        if (strs[limit * 2])
            rep.next_after = strs[limit * 2];
    }
    loom__reply_body(r->cl, r->corr, LOOM__V1__ENVELOPE__BODY_LIST_MACHINES_REPLY, &rep.base);
}

static void on_list_machines(req_ctx *r)
{
    Loom__V1__ListMachinesRequest *q = r->env->list_machines;
    loom__ns *ns = list_check(r, q);
    if (!ns)
        return;
    size_t limit = q->limit ? q->limit : LIST_DEFAULT_LIMIT;
    loom_txn *txn;
    int rc = loom_store_read_begin(r->e->store, &txn);
    if (rc) {
        fail(r, rc);
        return;
    }
    loom_machine *mms = malloc(limit * sizeof *mms);
    Loom__V1__MachineSummary *sums = malloc(limit * sizeof *sums);
    Loom__V1__MachineSummary **sp = malloc(limit * sizeof *sp);
    char **strs = calloc(limit * 2 + 1, sizeof *strs);
    loom_slice next = {0};
    bool more = false;
    int n = loom_seterr(LOOM_ENOMEM, "out of memory");
    if (mms && sums && sp && strs)
        n = loom_store_machines_list(txn, ns->id, (loom_status)q->status, loom_slice_str(q->after),
                                     q->after[0] != 0, mms, limit, &next, &more);
    if (n < 0)
        fail(r, n);
    else
        list_reply(r, mms, (size_t)n, limit, next, more, sums, sp, strs);
    loom_txn_end(txn);
    for (size_t i = 0; strs && i < limit * 2 + 1; i++)
        free(strs[i]);
    free(mms);
    free(sums);
    free(sp);
    free(strs);
}

/* ------------------------------------------------------------ admin */

static void on_register(req_ctx *r, bool create)
{
    const Loom__V1__NamespaceConfig *pb =
        create ? (r->env->register_namespace ? r->env->register_namespace->config : NULL)
               : (r->env->update_namespace ? r->env->update_namespace->config : NULL);
    loom_ns_config cfg;
    int rc = loom__nsconf_from_pb(pb, &cfg);
    if (rc) {
        fail(r, LOOM_EINVALID_ARGUMENT);
        return;
    }
    if (!create && !ns_by_name(r->e, cfg.name)) {
        loom__reply_error(r->cl, r->corr, LOOM_ENAMESPACE_NOT_FOUND, "namespace %s not found",
                          cfg.name);
        loom_ns_config_free(&cfg);
        return;
    }
    rc = ns_store(r->e, &cfg, create, false);
    if (rc) {
        loom__reply_error(r->cl, r->corr, rc, "namespace %s: %s", cfg.name,
                          rc == LOOM_ENAMESPACE_ALREADY_EXISTS ? "already exists"
                                                               : loom_errdetail());
    } else {
        loom_log(LOOM_LOG_INFO, "namespace %s %s", cfg.name, create ? "registered" : "updated");
        Loom__V1__RegisterNamespaceReply reg;
        Loom__V1__UpdateNamespaceReply upd;
        loom__v1__register_namespace_reply__init(&reg);
        loom__v1__update_namespace_reply__init(&upd);
        if (create)
            loom__reply_body(r->cl, r->corr, LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE_REPLY,
                             &reg.base);
        else
            loom__reply_body(r->cl, r->corr, LOOM__V1__ENVELOPE__BODY_UPDATE_NAMESPACE_REPLY,
                             &upd.base);
    }
    loom_ns_config_free(&cfg);
}

static int ns_cmp(const void *a, const void *b)
{
    const loom__ns *x = *(loom__ns *const *)a, *y = *(loom__ns *const *)b;
    return strcmp(x->cfg.name, y->cfg.name);
}

static void on_list_namespaces(req_ctx *r)
{
    loom_engine *e = r->e;
    size_t n = e->ns_by_name.count, k = 0;
    loom__ns **v = malloc((n ? n : 1) * sizeof *v);
    Loom__V1__NamespaceConfig *cfgs = malloc((n ? n : 1) * sizeof *cfgs);
    Loom__V1__NamespaceConfig **cp = malloc((n ? n : 1) * sizeof *cp);
    Loom__V1__RetryPolicy *rps = malloc((n ? n : 1) * sizeof *rps);
    Loom__V1__HistoryRange *rgs = malloc((n ? n : 1) * sizeof *rgs);
    if (!v || !cfgs || !cp || !rps || !rgs) {
        loom__reply_error(r->cl, r->corr, LOOM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < e->ns_by_name.nbuckets; i++)
        for (loom__hent *h = e->ns_by_name.buckets[i]; h; h = h->next)
            v[k++] = h->val;
    qsort(v, k, sizeof *v, ns_cmp);
    for (size_t i = 0; i < k; i++) {
        loom__nsconf_to_pb(&v[i]->cfg, &cfgs[i], &rps[i], &rgs[i]);
        cp[i] = &cfgs[i];
    }
    Loom__V1__ListNamespacesReply rep;
    loom__v1__list_namespaces_reply__init(&rep);
    rep.n_namespaces = k;
    rep.namespaces = cp;
    loom__reply_body(r->cl, r->corr, LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES_REPLY, &rep.base);
out:
    free(v);
    free(cfgs);
    free(cp);
    free(rps);
    free(rgs);
}

static void dispatch(req_ctx *r)
{
    switch (r->env->body_case) {
    case LOOM__V1__ENVELOPE__BODY_START:
    case LOOM__V1__ENVELOPE__BODY_CALL:
    case LOOM__V1__ENVELOPE__BODY_NOTIFY:
    case LOOM__V1__ENVELOPE__BODY_REPAIR:
    case LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR:
    case LOOM__V1__ENVELOPE__BODY_REMOVE:
        on_machine_op(r);
        break;
    case LOOM__V1__ENVELOPE__BODY_GET_MACHINE:
        on_get_machine(r);
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_MACHINES:
        on_list_machines(r);
        break;
    case LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE:
        on_register(r, true);
        break;
    case LOOM__V1__ENVELOPE__BODY_UPDATE_NAMESPACE:
        on_register(r, false);
        break;
    case LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES:
        on_list_namespaces(r);
        break;
    default:
        loom__reply_error(r->cl, r->corr, LOOM_EPROTOCOL, "envelope body %d is not a request",
                          (int)r->env->body_case);
        break;
    }
}

static void on_client_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    (void)c;
    loom__client *cl = user;
    req_ctx r = {cl->e, cl, env, env->correlation_id};
    dispatch(&r);
    if (r.env)
        loom_envelope_free(r.env);
    loom__ready_drain(cl->e);
}

static void on_client_close(loom_conn *c, int err, const char *reason, void *user)
{
    (void)c;
    (void)err;
    (void)reason;
    loom__client *cl = user;
    loom_engine *e = cl->e;
    cl->closed = true;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        e->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    e->n_clients--;
    loom__client_unref(cl);
}

static void on_accept(loom_listener *l, loom_conn *c, void *user)
{
    (void)l;
    loom_engine *e = user;
    loom__client *cl = calloc(1, sizeof *cl);
    if (!cl || e->stopping || e->n_clients >= e->cfg.limits.max_connections) {
        free(cl);
        loom_conn_set_user(c, NULL);
        loom_conn_close(c, LOOM_ERESOURCE_EXHAUSTED,
                        e->stopping ? "shutting down" : "too many connections");
        return;
    }
    cl->e = e;
    cl->conn = c;
    cl->refs = 1;
    cl->next = e->clients;
    if (e->clients)
        e->clients->prev = cl;
    e->clients = cl;
    e->n_clients++;
    loom_conn_set_user(c, cl);
}

/* A connection refused by on_accept has no user (NULL). */
static void on_client_envelope_guard(loom_conn *c, loom_envelope *env, void *user)
{
    if (!user) {
        loom_envelope_free(env);
        return;
    }
    on_client_envelope(c, env, user);
}

static void on_client_close_guard(loom_conn *c, int err, const char *reason, void *user)
{
    if (user)
        on_client_close(c, err, reason, user);
}

static const loom_conn_callbacks listener_callbacks = {
    .on_envelope = on_client_envelope_guard,
    .on_close = on_client_close_guard,
};

/* ------------------------------------------------------------ lifecycle */

static void on_prune(uv_timer_t *t)
{
    loom_engine *e = t->data;
    uint64_t older = (uint64_t)loom__now_ms() - e->cfg.request_id_window_s * 1000;
    size_t removed = 0;
    int rc = loom_store_outcomes_prune(e->store, older, 10000, &removed);
    if (rc)
        loom_log(LOOM_LOG_WARN, "pruning request outcomes: %s", loom_errdetail());
    else if (removed)
        loom_log(LOOM_LOG_DEBUG, "pruned %zu request outcomes", removed);
}

static void begin_shutdown(loom_engine *e);

static void on_signal(uv_signal_t *h, int signum)
{
    loom_engine *e = h->data;
    loom_log(LOOM_LOG_INFO, "signal %d: shutting down", signum);
    begin_shutdown(e);
}

static void on_stop_async(uv_async_t *a)
{
    begin_shutdown(a->data);
}

static int open_store(loom_engine *e)
{
    mkdir(e->cfg.data_dir, 0700);
    loom_store_opts o = {0};
    o.map_size_initial = e->cfg.map_size_initial_mb << 20;
    o.map_size_max = e->cfg.map_size_max_mb << 20;
    o.flags = e->cfg.nosync ? LOOM_STORE_NOSYNC : 0;
    int rc = loom_store_open(&e->store, e->cfg.data_dir, &o);
    if (rc) {
        char detail[512]; /* the detail buffer is rewritten by loom_seterr */
        snprintf(detail, sizeof detail, "%s", loom_errdetail());
        return loom_seterr(rc, "store %s: %s", e->cfg.data_dir, detail);
    }
    return 0;
}

static int copy_config(loom_engine *e, const loom_config *cfg)
{
    loom_config_init(&e->cfg);
    e->cfg.log_level = cfg->log_level;
    e->cfg.limits = cfg->limits;
    e->cfg.map_size_initial_mb = cfg->map_size_initial_mb;
    e->cfg.map_size_max_mb = cfg->map_size_max_mb;
    e->cfg.nosync = cfg->nosync;
    e->cfg.request_id_window_s = cfg->request_id_window_s;
    if (loom_config_set_listen(&e->cfg, cfg->listen, cfg->n_listen) ||
        loom_config_set_string(&e->cfg.data_dir, cfg->data_dir))
        return LOOM_ENOMEM;
    return 0;
}

static int open_listeners(loom_engine *e)
{
    e->listeners = calloc(e->cfg.n_listen, sizeof *e->listeners);
    e->listen_ports = calloc(e->cfg.n_listen, sizeof *e->listen_ports);
    if (!e->listeners || !e->listen_ports)
        return LOOM_ENOMEM;
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_frame = e->cfg.limits.max_frame_bytes;
    for (size_t i = 0; i < e->cfg.n_listen; i++) {
        int rc = loom_listen(&e->loop, e->cfg.listen[i], &o, &listener_callbacks, on_accept, e,
                             &e->listeners[i]);
        if (rc) {
            char detail[512]; /* the detail buffer is rewritten by loom_seterr */
            snprintf(detail, sizeof detail, "%s", loom_errdetail());
            return loom_seterr(rc, "listen %s: %s", e->cfg.listen[i], detail);
        }
        e->n_listeners = i + 1;
        e->listen_ports[i] = loom_listener_port(e->listeners[i]);
        loom_log(LOOM_LOG_INFO, "listening on %s", e->cfg.listen[i]);
    }
    return 0;
}

/* Pending notifications are redelivered: their machines are woken, one
 * page per tick so a large backlog neither floods memory with machines
 * nor starves clients. */
#define RESUME_PAGE 512
#define RESUME_INTERVAL_MS 50

static void on_resume(uv_timer_t *t)
{
    loom_engine *e = t->data;
    loom_txn *txn;
    if (loom_store_read_begin(e->store, &txn) != 0)
        return; /* next tick */
    loom_notification page[RESUME_PAGE];
    uint64_t last_key = 0;
    int n = loom_store_notifications_from(txn, e->resume_from_id, page, RESUME_PAGE);
    for (int i = 0; i < n; i++) {
        if (page[i].key.v != last_key)
            loom__machine_wake(e, page[i].key);
        last_key = page[i].key.v;
    }
    if (n > 0)
        e->resume_from_id = page[n - 1].id + 1;
    loom_txn_end(txn);
    if (n < RESUME_PAGE) {
        uv_timer_stop(t);
        if (e->resume_from_id)
            loom_log(LOOM_LOG_INFO, "pending notifications resumed");
    }
    loom__ready_drain(e);
}

static int engine_init_maps(loom_engine *e)
{
    if (loom__hmap_init(&e->ns_by_name, 64) || loom__hmap_init(&e->ns_by_id, 64) ||
        loom__hmap_init(&e->machines, 4096) || loom__hmap_init(&e->pending_by_corr, 4096))
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    return 0;
}

static int engine_start(loom_engine *e, const loom_config *cfg)
{
    int rc = copy_config(e, cfg);
    if (rc == 0)
        rc = engine_init_maps(e);
    if (rc == 0)
        rc = open_store(e);
    if (rc == 0)
        rc = load_namespaces(e);
    for (size_t i = 0; rc == 0 && i < cfg->n_namespaces; i++)
        rc = ns_store(e, &cfg->namespaces[i], true, true);
    if (rc == 0)
        rc = loom__committer_start(e);
    if (rc == 0)
        rc = loom__proc_timer_start(e);
    if (rc == 0)
        loom__timers_start(e);
    if (rc == 0)
        rc = open_listeners(e);
    return rc;
}

int loom_engine_open(loom_engine **out, const loom_config *cfg)
{
    int rc = loom_config_check(cfg);
    if (rc)
        return rc;
    loom_engine *e = calloc(1, sizeof *e);
    if (!e)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    pthread_mutex_init(&e->cm_mutex, NULL);
    pthread_cond_init(&e->cm_cond, NULL);
    loom_rng_seed(&e->rng, (uint64_t)loom__now_ms() ^ (uint64_t)(uintptr_t)e);
    rc = uv_loop_init(&e->loop);
    if (rc) {
        free(e);
        return loom_seterr(LOOM_EINTERNAL, "uv_loop_init: %s", uv_strerror(rc));
    }
    loom_log_set_level(cfg->log_level);
    uv_async_init(&e->loop, &e->stop_async, on_stop_async);
    e->stop_async.data = e;
    uv_timer_init(&e->loop, &e->prune_timer);
    e->prune_timer.data = e;
    uv_timer_init(&e->loop, &e->resume_timer);
    e->resume_timer.data = e;
    rc = engine_start(e, cfg);
    if (rc) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", loom_errdetail());
        loom_engine_close(e);
        return loom_seterr(rc, "%s", detail);
    }
    uv_timer_start(&e->prune_timer, on_prune, 1000, PRUNE_INTERVAL_MS);
    uv_timer_start(&e->resume_timer, on_resume, 0, RESUME_INTERVAL_MS);
    *out = e;
    return 0;
}

int loom_engine_listen_port(const loom_engine *e, size_t i)
{
    return i < e->n_listeners ? e->listen_ports[i] : 0;
}

static void abandon_steps(loom_engine *e)
{
    /* processor steps will never be answered now: drop them unstored */
    while (e->inflight_head) {
        loom__step *s = e->inflight_head;
        loom__proc_forget(s);
        loom__step_fail(s, LOOM_ESHUTTING_DOWN, true, "loomd is shutting down");
    }
    for (size_t i = 0; i < e->ns_by_id.nbuckets; i++)
        for (loom__hent *h = e->ns_by_id.buckets[i]; h; h = h->next) {
            loom__ns *ns = h->val;
            while (ns->wait_head) {
                loom__step *s = ns->wait_head;
                loom__proc_forget(s);
                loom__step_fail(s, LOOM_ESHUTTING_DOWN, true, "loomd is shutting down");
            }
        }
}

/* Queued ops never started: answer SHUTTING_DOWN. */
static void drop_queues(loom_engine *e)
{
    e->ready_head = e->ready_tail = NULL;
    for (size_t i = 0; i < e->machines.nbuckets; i++) {
        for (loom__hent *h = e->machines.buckets[i]; h; h = h->next) {
            loom__machine *m = h->val;
            m->parked = false;
            m->wake = false;
            while (m->head) {
                loom__op *op = m->head;
                m->head = op->next;
                if (op->cl)
                    loom__reply_error(op->cl, op->corr, LOOM_ESHUTTING_DOWN,
                                      "loomd is shutting down");
                loom__op_free(op);
                e->ops_queued--;
            }
            m->tail = NULL;
            m->queued = 0;
        }
    }
}

static void begin_shutdown(loom_engine *e)
{
    if (e->stopping)
        return;
    e->stopping = true;
    for (size_t i = 0; i < e->n_listeners; i++)
        loom_listener_close(e->listeners[i]);
    e->n_listeners = 0;
    abandon_steps(e);
    drop_queues(e);
    /* commits already handed over finish (loom_engine_run waits for them);
     * their clients still hear back */
    uv_timer_stop(&e->sweep_timer);
    uv_timer_stop(&e->wake_timer);
    uv_timer_stop(&e->prune_timer);
    uv_timer_stop(&e->resume_timer);
    if (e->signals) {
        uv_signal_stop(&e->sigterm);
        uv_signal_stop(&e->sigint);
    }
    for (size_t i = 0; i < e->ns_by_id.nbuckets; i++)
        for (loom__hent *h = e->ns_by_id.buckets[i]; h; h = h->next)
            loom__proc_close_ns(h->val);
}

static void close_clients_when_flushed(uv_idle_t *idle)
{
    loom_engine *e = idle->data;
    for (loom__client *cl = e->clients; cl; cl = cl->next)
        loom_conn_close(cl->conn, 0, "shutting down");
    uv_idle_stop(idle);
    uv_close((uv_handle_t *)idle, (uv_close_cb)free);
}

int loom_engine_run(loom_engine *e, bool handle_signals)
{
    if (handle_signals) {
        uv_signal_init(&e->loop, &e->sigterm);
        uv_signal_init(&e->loop, &e->sigint);
        e->sigterm.data = e->sigint.data = e;
        uv_signal_start(&e->sigterm, on_signal, SIGTERM);
        uv_signal_start(&e->sigint, on_signal, SIGINT);
        e->signals = true;
        /* a caller may hold them blocked until now (loomd does) */
        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGINT);
        pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    }
    loom_log(LOOM_LOG_INFO, "ready");
    while (!e->stopping || e->steps_running > 0)
        uv_run(&e->loop, UV_RUN_ONCE);
    /* the last commit results are answered: flush, then close the clients */
    uv_run(&e->loop, UV_RUN_NOWAIT);
    uv_idle_t *idle = malloc(sizeof *idle);
    if (idle) {
        uv_idle_init(&e->loop, idle);
        idle->data = e;
        uv_idle_start(idle, close_clients_when_flushed);
    }
    uv_run(&e->loop, UV_RUN_NOWAIT);
    return e->exit_rc;
}

void loom_engine_stop(loom_engine *e)
{
    uv_async_send(&e->stop_async);
}

static void free_machines(loom_engine *e)
{
    for (size_t i = 0; i < e->machines.nbuckets; i++)
        for (loom__hent *h = e->machines.buckets[i]; h; h = h->next) {
            loom__machine *m = h->val;
            while (m->head) {
                loom__op *op = m->head;
                m->head = op->next;
                loom__op_free(op);
            }
            free(m);
        }
    loom__hmap_free(&e->machines);
}

static void free_namespaces(loom_engine *e)
{
    for (size_t i = 0; i < e->ns_by_id.nbuckets; i++)
        for (loom__hent *h = e->ns_by_id.buckets[i]; h; h = h->next) {
            loom__ns *ns = h->val;
            loom_ns_config_free(&ns->cfg);
            free(ns);
        }
    loom__hmap_free(&e->ns_by_id);
    loom__hmap_free(&e->ns_by_name);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void loom_engine_close(loom_engine *e)
{
    if (!e)
        return;
    if (!e->stopping)
        begin_shutdown(e);
    loom__committer_stop(e);
    /* let connections finish closing (their callbacks free them) */
    for (loom__client *cl = e->clients; cl; cl = cl->next)
        loom_conn_close(cl->conn, 0, "shutting down");
    uv_run(&e->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 100 && uv_loop_alive(&e->loop); i++) {
        uv_walk(&e->loop, close_walk, NULL);
        uv_run(&e->loop, UV_RUN_NOWAIT);
    }
    uv_loop_close(&e->loop);
    free_machines(e);
    loom__hmap_free(&e->pending_by_corr);
    free_namespaces(e);
    loom__wheap_free(&e->heap);
    if (e->store)
        loom_store_close(e->store);
    loom_log(LOOM_LOG_INFO, "stopped");
    pthread_mutex_destroy(&e->cm_mutex);
    pthread_cond_destroy(&e->cm_cond);
    free(e->listeners);
    free(e->listen_ports);
    loom_config_free(&e->cfg);
    free(e);
}
