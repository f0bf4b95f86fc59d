/* Processor connections: per namespace, one connection per endpoint, made
 * lazily, re-made with exponential backoff after a failure. Requests are
 * pipelined with correlation ids; every step in flight has a deadline
 * (the namespace's step timeout) swept by one timer. */
#include <stdlib.h>

#include "engine_int.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 5000u
#define SWEEP_INTERVAL_MS 20

static void list_push(loom__step **head, loom__step **tail, loom__step *s)
{
    s->next = NULL;
    s->prev = *tail;
    if (*tail)
        (*tail)->next = s;
    else
        *head = s;
    *tail = s;
}

static void list_del(loom__step **head, loom__step **tail, loom__step *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        *tail = s->prev;
    s->prev = s->next = NULL;
}

void loom__proc_forget(loom__step *s)
{
    loom_engine *e = s->e;
    if (s->where == LOOM__WAITING) {
        list_del(&s->m->ns->wait_head, &s->m->ns->wait_tail, s);
    } else if (s->where == LOOM__IN_FLIGHT) {
        list_del(&e->inflight_head, &e->inflight_tail, s);
        void *v = loom__hmap_del(&e->pending_by_corr, &s->pcorr, sizeof s->pcorr);
        LOOM_ASSERT(v == s);
    }
    s->where = LOOM__NOWHERE;
    s->pc = NULL;
}

static void fail_waiting(loom__ns *ns, const char *why)
{
    while (ns->wait_head) {
        loom__step *s = ns->wait_head;
        loom__proc_forget(s);
        loom__step_fail(s, LOOM_EPROCESSOR_UNAVAILABLE, true, why);
    }
}

static bool any_connecting(const loom__ns *ns)
{
    for (size_t i = 0; i < LOOM__MAX_ENDPOINTS; i++)
        if (ns->conns[i] && !ns->conns[i]->connected)
            return true;
    return false;
}

static void on_proc_envelope(loom_conn *c, loom_envelope *env, void *user)
{
    (void)c;
    loom__pconn *pc = user;
    loom_engine *e = pc->ns->e;
    loom__step *s =
        loom__hmap_get(&e->pending_by_corr, &env->correlation_id, sizeof env->correlation_id);
    if (!s || s->pc != pc) {
        loom_log(LOOM_LOG_DEBUG, "namespace %s: reply %llu for no step in flight (late)",
                 pc->ns->cfg.name, (unsigned long long)env->correlation_id);
        loom_envelope_free(env);
        return;
    }
    loom__proc_forget(s);
    loom__step_on_reply(s, env);
    loom__ready_drain(e);
}

static void on_proc_connect(loom_conn *c, int status, void *user)
{
    (void)c;
    loom__pconn *pc = user;
    loom__ns *ns = pc->ns;
    if (status != 0)
        return; /* on_close follows and handles it */
    pc->connected = true;
    ns->backoff_ms[pc->endpoint] = 0;
    loom_log(LOOM_LOG_INFO, "namespace %s: connected to processor %s", ns->cfg.name,
             ns->cfg.processors[pc->endpoint]);
    /* Steps parked while connecting are rebuilt and sent now. */
    loom__step *list = ns->wait_head;
    ns->wait_head = ns->wait_tail = NULL;
    while (list) {
        loom__step *s = list;
        list = s->next;
        s->prev = s->next = NULL;
        s->where = LOOM__NOWHERE;
        loom__step_send(s);
    }
    loom__ready_drain(ns->e);
}

static void on_proc_close(loom_conn *c, int err, const char *reason, void *user)
{
    (void)c;
    loom__pconn *pc = user;
    loom__ns *ns = pc->ns;
    loom_engine *e = ns->e;
    if (ns->conns[pc->endpoint] == pc) {
        ns->conns[pc->endpoint] = NULL;
        uint32_t b = ns->backoff_ms[pc->endpoint];
        b = b ? (b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2) : BACKOFF_MIN_MS;
        ns->backoff_ms[pc->endpoint] = b;
        /* a connection that worked may be re-made at once */
        ns->retry_at_ms[pc->endpoint] = loom__mono_ms() + (pc->connected ? 0 : b);
    }
    char why[256];
    snprintf(why, sizeof why, "processor %s: %s",
             pc->endpoint < ns->cfg.n_processors ? ns->cfg.processors[pc->endpoint] : "?",
             reason && *reason ? reason : (err ? loom_strerror(err) : "connection closed"));
    if (!e->stopping)
        loom_log(LOOM_LOG_WARN, "namespace %s: %s", ns->cfg.name, why);
    /* Steps in flight on this connection will never be answered. */
    loom__step *s = e->inflight_head;
    while (s) {
        loom__step *next = s->next;
        if (s->pc == pc) {
            loom__proc_forget(s);
            loom__step_fail(s, LOOM_EPROCESSOR_UNAVAILABLE, true, why);
        }
        s = next;
    }
    if (!any_connecting(ns))
        fail_waiting(ns, why);
    free(pc);
    loom__ready_drain(e);
}

static const loom_conn_callbacks proc_callbacks = {
    .on_envelope = on_proc_envelope,
    .on_connect = on_proc_connect,
    .on_close = on_proc_close,
};

static int start_connect(loom__ns *ns, size_t i)
{
    loom_engine *e = ns->e;
    loom__pconn *pc = calloc(1, sizeof *pc);
    if (!pc)
        return LOOM_ENOMEM;
    pc->ns = ns;
    pc->endpoint = i;
    loom_conn_options o;
    loom_conn_options_init(&o);
    o.max_frame = e->cfg.limits.max_frame_bytes;
    int rc = loom_conn_connect(&e->loop, ns->cfg.processors[i], &o, &proc_callbacks, pc, &pc->conn);
    if (rc) {
        free(pc);
        ns->backoff_ms[i] = ns->backoff_ms[i] ? ns->backoff_ms[i] : BACKOFF_MIN_MS;
        ns->retry_at_ms[i] = loom__mono_ms() + ns->backoff_ms[i];
        return rc;
    }
    ns->conns[i] = pc;
    return 0;
}

int loom__proc_conn(loom__ns *ns, loom__pconn **out)
{
    size_t n = ns->cfg.n_processors;
    for (size_t k = 0; k < n; k++) {
        size_t i = (ns->rr + k) % n;
        if (ns->conns[i] && ns->conns[i]->connected) {
            ns->rr = i + 1;
            *out = ns->conns[i];
            return 0;
        }
    }
    int64_t now = loom__mono_ms();
    for (size_t i = 0; i < n; i++)
        if (!ns->conns[i] && now >= ns->retry_at_ms[i])
            start_connect(ns, i);
    if (any_connecting(ns))
        return LOOM_EBUSY;
    return loom_seterr(LOOM_EPROCESSOR_UNAVAILABLE, "namespace %s: no processor reachable (%s)",
                       ns->cfg.name, ns->cfg.processors[0]);
}

/* The sweep runs only while steps wait on processors: an idle loomd does
 * not wake up. */
static void sweep_arm(loom_engine *e)
{
    if (!e->stopping && !uv_is_active((uv_handle_t *)&e->sweep_timer))
        uv_timer_start(&e->sweep_timer, loom__proc_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
}

void loom__proc_wait(loom__step *s)
{
    LOOM_ASSERT(s->where == LOOM__NOWHERE);
    list_push(&s->m->ns->wait_head, &s->m->ns->wait_tail, s);
    s->where = LOOM__WAITING;
    sweep_arm(s->e);
}

int loom__proc_send(loom__step *s, loom__pconn *pc, loom_envelope *env)
{
    loom_engine *e = s->e;
    LOOM_ASSERT(s->where == LOOM__NOWHERE);
    LOOM_ASSERT(pc->connected);
    s->pcorr = ++e->next_pcorr;
    env->correlation_id = s->pcorr;
    int rc = loom_conn_send(pc->conn, env);
    if (rc)
        return rc;
    rc = loom__hmap_put(&e->pending_by_corr, &s->pcorr, sizeof s->pcorr, s);
    if (rc)
        return rc;
    s->pc = pc;
    list_push(&e->inflight_head, &e->inflight_tail, s);
    s->where = LOOM__IN_FLIGHT;
    sweep_arm(e);
    return 0;
}

static void sweep_list(loom__step *s, int64_t now, bool waiting)
{
    while (s) {
        loom__step *next = s->next;
        if (now >= s->deadline_ms) {
            loom__proc_forget(s);
            loom__step_fail(s, LOOM_ETIMEOUT, true,
                            waiting ? "no processor connection within the step timeout"
                                    : "processor did not answer within the step timeout");
        }
        s = next;
    }
}

void loom__proc_sweep(uv_timer_t *t)
{
    loom_engine *e = t->data;
    int64_t now = loom__mono_ms();
    bool waiting = false;
    sweep_list(e->inflight_head, now, false);
    loom__hent **b = e->ns_by_id.buckets;
    for (size_t i = 0; i < e->ns_by_id.nbuckets; i++)
        for (loom__hent *h = b[i]; h; h = h->next) {
            sweep_list(((loom__ns *)h->val)->wait_head, now, true);
            waiting = waiting || ((loom__ns *)h->val)->wait_head != NULL;
        }
    if (!e->inflight_head && !waiting)
        uv_timer_stop(t);
    loom__ready_drain(e);
}

void loom__proc_close_ns(loom__ns *ns)
{
    for (size_t i = 0; i < LOOM__MAX_ENDPOINTS; i++)
        if (ns->conns[i])
            loom_conn_close(ns->conns[i]->conn, 0, "namespace closing");
}

int loom__proc_timer_start(loom_engine *e)
{
    int rc = uv_timer_init(&e->loop, &e->sweep_timer);
    e->sweep_timer.data = e;
    return rc ? loom_seterr(LOOM_EINTERNAL, "sweep timer: %s", uv_strerror(rc)) : 0;
}
