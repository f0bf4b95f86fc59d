#include "payment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"
#include "sim.h"

#define AMOUNT_MAX 1000000000000000LL                 /* minor units */
#define DUE_IN_MAX_MS (10LL * 366 * 24 * 3600 * 1000) /* ten years */

static const char *status_names[] = {"unpaid", "processing", "paid", "expired"};

void payment_config_init(payment_config *c)
{
    c->provider_delay_ms = 200;
    c->fail_rate = 0.0;
    c->seed = 1;
    c->loop = NULL;
}

const char *invoice_status_name(invoice_status s)
{
    return (unsigned)s < LOOM_ARRAY_SIZE(status_names) ? status_names[s] : "unknown";
}

static int status_from_name(const loom_mp_obj *o, invoice_status *out)
{
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(status_names); i++) {
        if (loom_mp_str_eq(o, status_names[i])) {
            *out = (invoice_status)i;
            return 0;
        }
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "unknown invoice status");
}

/* ------------------------------------------------------------ state */

static int apply_created(invoice *inv, const loom_mp_obj *e)
{
    int err = loom_mp_get_int(e, "amount", &inv->amount);
    if (err == 0)
        err = loom_mp_get_strcpy(e, "currency", inv->currency, sizeof inv->currency);
    if (err == 0)
        err = loom_mp_get_int(e, "due_at_ms", &inv->due_at_ms);
    inv->status = INVOICE_UNPAID;
    return err;
}

int invoice_apply(invoice *inv, const loom_mp_obj *e)
{
    int64_t amount;
    int err;
    const loom_mp_obj *type;
    err = loom_mp_get(e, "type", &type);
    if (err != 0)
        return err;
    if (loom_mp_str_eq(type, "invoice_created"))
        return apply_created(inv, e);
    if (loom_mp_str_eq(type, "payment_started")) {
        inv->status = INVOICE_PROCESSING;
        inv->payments++;
        return loom_mp_get_strcpy(e, "payment_id", inv->payment_id, sizeof inv->payment_id);
    }
    if (loom_mp_str_eq(type, "payment_captured")) {
        err = loom_mp_get_int(e, "amount", &amount);
        inv->captured += err == 0 ? amount : 0;
        inv->status = INVOICE_PAID;
        return err;
    }
    if (loom_mp_str_eq(type, "payment_failed")) {
        inv->status = INVOICE_UNPAID;
        return 0;
    }
    if (loom_mp_str_eq(type, "refunded")) {
        err = loom_mp_get_int(e, "amount", &amount);
        inv->refunded += err == 0 ? amount : 0;
        return err;
    }
    if (loom_mp_str_eq(type, "invoice_expired")) {
        inv->status = INVOICE_EXPIRED;
        return 0;
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "unknown invoice event type");
}

void invoice_write_snapshot(const invoice *inv, loom_mp_writer *w)
{
    loom_mp_map(w, 8);
    loom_mp_kv_str(w, "status", invoice_status_name(inv->status));
    loom_mp_kv_int(w, "amount", inv->amount);
    loom_mp_kv_str(w, "currency", inv->currency);
    loom_mp_kv_int(w, "due_at_ms", inv->due_at_ms);
    loom_mp_kv_int(w, "captured", inv->captured);
    loom_mp_kv_int(w, "refunded", inv->refunded);
    loom_mp_kv_int(w, "payments", inv->payments);
    loom_mp_kv_str(w, "payment_id", inv->payment_id);
}

int invoice_read_snapshot(invoice *inv, const void *data, size_t len)
{
    loom_mp_doc d;
    memset(inv, 0, sizeof *inv);
    int err = loom_mp_parse(&d, data, len);
    if (err != 0)
        return err;
    const loom_mp_obj *status;
    int64_t payments = 0;
    err = loom_mp_get(d.root, "status", &status);
    if (err == 0)
        err = status_from_name(status, &inv->status);
    if (err == 0)
        err = loom_mp_get_int(d.root, "amount", &inv->amount);
    if (err == 0)
        err = loom_mp_get_strcpy(d.root, "currency", inv->currency, sizeof inv->currency);
    if (err == 0)
        err = loom_mp_get_int(d.root, "due_at_ms", &inv->due_at_ms);
    if (err == 0)
        err = loom_mp_get_int(d.root, "captured", &inv->captured);
    if (err == 0)
        err = loom_mp_get_int(d.root, "refunded", &inv->refunded);
    if (err == 0)
        err = loom_mp_get_int(d.root, "payments", &payments);
    if (err == 0)
        err = loom_mp_get_strcpy(d.root, "payment_id", inv->payment_id, sizeof inv->payment_id);
    inv->payments = (uint32_t)payments;
    loom_mp_doc_free(&d);
    return err;
}

/* The snapshot when there is one, else a fold of the history — which is
 * then only right when it is the whole history. */
static int fold_history(loom_proc_req *r, invoice *inv)
{
    memset(inv, 0, sizeof *inv);
    if (loom_proc_req_event_count(r) != loom_proc_req_last_event_id(r))
        return loom_seterr(
            LOOM_EINVALID_ARGUMENT, "no aux_state and only %zu of %llu events to rebuild it from",
            loom_proc_req_event_count(r), (unsigned long long)loom_proc_req_last_event_id(r));
    loom_proc_history it;
    loom_proc_event ev;
    loom_proc_req_history(r, &it);
    while (loom_proc_history_next(&it, &ev)) {
        loom_mp_doc d;
        int err = loom_mp_parse(&d, ev.data.data, ev.data.len);
        if (err == 0) {
            err = invoice_apply(inv, d.root);
            loom_mp_doc_free(&d);
        }
        if (err != 0)
            return loom_seterr(err, "event %llu: %s", (unsigned long long)ev.id, loom_errdetail());
    }
    return 0;
}

static int load_invoice(loom_proc_req *r, invoice *inv)
{
    loom_proc_bytes aux = loom_proc_req_aux_state(r);
    int err = aux.len > 0 ? invoice_read_snapshot(inv, aux.data, aux.len) : fold_history(r, inv);
    if (err != 0)
        loom_proc_fail(r, false, "invoice state: %s", loom_errdetail());
    return err;
}

static int apply_to_invoice(void *state, const loom_mp_obj *event)
{
    return invoice_apply(state, event);
}

static int emit(loom_proc_req *r, invoice *inv, loom_mp_writer *w)
{
    return ex_emit(r, w, apply_to_invoice, inv);
}

static int save_invoice(loom_proc_req *r, const invoice *inv)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    invoice_write_snapshot(inv, &w);
    return ex_set_aux(r, &w);
}

/* ------------------------------------------------------------ init */

static int read_init_args(loom_proc_req *r, invoice *inv, int64_t *due_in_ms)
{
    loom_mp_doc d;
    int err = ex_parse_args(r, &d, NULL, 0);
    if (err != 0)
        return err;
    err = loom_mp_get_int(d.root, "amount", &inv->amount);
    if (err == 0)
        err = loom_mp_get_strcpy(d.root, "currency", inv->currency, sizeof inv->currency);
    if (err == 0)
        err = loom_mp_get_int(d.root, "due_in_ms", due_in_ms);
    if (err != 0)
        loom_proc_fail(r, false, "init args: %s", loom_errdetail());
    loom_mp_doc_free(&d);
    if (err != 0)
        return err;
    if (inv->amount <= 0 || inv->amount > AMOUNT_MAX || *due_in_ms <= 0 ||
        *due_in_ms > DUE_IN_MAX_MS || inv->currency[0] == '\0') {
        loom_proc_fail(r, false,
                       "init args: need 0 < amount <= %lld, a currency, "
                       "0 < due_in_ms <= %lld",
                       AMOUNT_MAX, DUE_IN_MAX_MS);
        return LOOM_EINVALID_ARGUMENT;
    }
    return 0;
}

static void on_init(loom_proc_req *r, void *user)
{
    (void)user;
    invoice inv;
    memset(&inv, 0, sizeof inv);
    int64_t due_in_ms;
    if (read_init_args(r, &inv, &due_in_ms) == 0) {
        loom_mp_writer w;
        loom_mp_writer_init(&w, 0);
        loom_mp_map(&w, 4);
        loom_mp_kv_str(&w, "type", "invoice_created");
        loom_mp_kv_int(&w, "amount", inv.amount);
        loom_mp_kv_str(&w, "currency", inv.currency);
        loom_mp_kv_int(&w, "due_at_ms", loom_proc_now_ms() + due_in_ms);
        if (emit(r, &inv, &w) == 0 && save_invoice(r, &inv) == 0)
            loom_proc_set_timer_deadline(r, inv.due_at_ms, NULL);
    }
    loom_proc_done(r);
}

/* ------------------------------------------------------------ async jobs */

typedef struct job {
    loom_proc_req *req;
    const payment_config *cfg;
    invoice inv;
} job;

static job *job_new(loom_proc_req *r, const payment_config *cfg, const invoice *inv)
{
    job *j = malloc(sizeof *j);
    if (j == NULL)
        return NULL;
    j->req = r;
    j->cfg = cfg;
    j->inv = *inv;
    return j;
}

static void job_start(loom_proc_req *r, const payment_config *cfg, const invoice *inv,
                      void (*fn)(void *ctx))
{
    job *j = job_new(r, cfg, inv);
    if (j == NULL || ex_later(cfg->loop, cfg->provider_delay_ms, fn, j) != 0) {
        free(j);
        loom_proc_fail(r, true, "processor out of memory");
        loom_proc_done(r);
    }
}

/* ------------------------------------------------------------ call */

/* The provider accepted the payment request: it now processes it, and the
 * poll timer will ask how it went. */
static void pay_started(void *ctx)
{
    job *j = ctx;
    loom_proc_req *r = j->req;
    char id[41], payment_id[64];
    ex_copy_prefix(id, sizeof id, loom_proc_req_id(r));
    snprintf(payment_id, sizeof payment_id, "%s-p%u", id, j->inv.payments + 1);
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 2);
    loom_mp_kv_str(&w, "type", "payment_started");
    loom_mp_kv_str(&w, "payment_id", payment_id);
    if (emit(r, &j->inv, &w) == 0 && save_invoice(r, &j->inv) == 0) {
        loom_proc_set_timer_timeout(r, j->cfg->provider_delay_ms, NULL);
        loom_mp_writer_init(&w, 0);
        loom_mp_map(&w, 3);
        loom_mp_kv_bool(&w, "ok", true);
        loom_mp_kv_str(&w, "status", "payment started");
        loom_mp_kv_str(&w, "payment_id", payment_id);
        ex_respond(r, &w);
    }
    loom_proc_done(r);
    free(j);
}

static void call_pay(loom_proc_req *r, const payment_config *cfg, const invoice *inv)
{
    if (inv->status != INVOICE_UNPAID) {
        ex_refuse(r, "not_payable", invoice_status_name(inv->status));
        loom_proc_done(r);
        return;
    }
    if (loom_proc_now_ms() >= inv->due_at_ms) {
        ex_refuse(r, "expired", "the invoice is past its due time");
        loom_proc_done(r);
        return;
    }
    job_start(r, cfg, inv, pay_started);
}

static void call_refund(loom_proc_req *r, invoice *inv, int64_t amount)
{
    char detail[96];
    int64_t refundable = inv->captured - inv->refunded;
    if (inv->status != INVOICE_PAID) {
        ex_refuse(r, "not_paid", invoice_status_name(inv->status));
    } else if (amount <= 0) {
        ex_refuse(r, "bad_amount", "a refund must be positive");
    } else if (amount > refundable) {
        snprintf(detail, sizeof detail, "at most %lld can be refunded", (long long)refundable);
        ex_refuse(r, "refund_too_large", detail);
    } else {
        loom_mp_writer w;
        loom_mp_writer_init(&w, 0);
        loom_mp_map(&w, 3);
        loom_mp_kv_str(&w, "type", "refunded");
        loom_mp_kv_int(&w, "amount", amount);
        loom_mp_kv_int(&w, "total_refunded", inv->refunded + amount);
        if (emit(r, inv, &w) == 0 && save_invoice(r, inv) == 0) {
            loom_mp_writer_init(&w, 0);
            loom_mp_map(&w, 2);
            loom_mp_kv_bool(&w, "ok", true);
            loom_mp_kv_int(&w, "refunded", inv->refunded);
            ex_respond(r, &w);
        }
    }
    loom_proc_done(r);
}

static void call_get(loom_proc_req *r, const invoice *inv)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    invoice_write_snapshot(inv, &w);
    ex_respond(r, &w);
    loom_proc_done(r);
}

static void on_call(loom_proc_req *r, void *user)
{
    const payment_config *cfg = user;
    loom_mp_doc d;
    char op[16];
    invoice inv;
    if (ex_parse_args(r, &d, op, sizeof op) != 0) {
        loom_proc_done(r);
        return;
    }
    int64_t amount = 0;
    int err = strcmp(op, "refund") == 0 ? loom_mp_get_int(d.root, "amount", &amount) : 0;
    if (err != 0)
        loom_proc_fail(r, false, "refund args: %s", loom_errdetail());
    loom_mp_doc_free(&d);
    if (err != 0 || load_invoice(r, &inv) != 0) {
        loom_proc_done(r);
        return;
    }
    if (strcmp(op, "pay") == 0)
        call_pay(r, cfg, &inv);
    else if (strcmp(op, "refund") == 0)
        call_refund(r, &inv, amount);
    else if (strcmp(op, "get") == 0)
        call_get(r, &inv);
    else {
        loom_proc_fail(r, false, "unknown op '%s' (pay, refund, get)", op);
        loom_proc_done(r);
    }
}

/* ------------------------------------------------------------ timeout */

/* The provider's verdict on the payment in progress. */
static void poll_answered(void *ctx)
{
    job *j = ctx;
    loom_proc_req *r = j->req;
    invoice *inv = &j->inv;
    uint64_t h = sim_hash(j->cfg->seed, loom_proc_req_ns(r), inv->payment_id, NULL);
    bool declined = sim_unit(h) < j->cfg->fail_rate;
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "type", declined ? "payment_failed" : "payment_captured");
    loom_mp_kv_str(&w, "payment_id", inv->payment_id);
    if (declined)
        loom_mp_kv_str(&w, "reason", "declined by the provider");
    else
        loom_mp_kv_int(&w, "amount", inv->amount);
    if (emit(r, inv, &w) == 0 && save_invoice(r, inv) == 0) {
        if (declined) /* back to waiting for a payment, or for expiry */
            loom_proc_set_timer_deadline(r, inv->due_at_ms, NULL);
        else
            loom_proc_unset_timer(r);
    }
    loom_proc_done(r);
    free(j);
}

static void timeout_unpaid(loom_proc_req *r, invoice *inv)
{
    if (loom_proc_now_ms() < inv->due_at_ms) { /* woken early: sleep on */
        loom_proc_set_timer_deadline(r, inv->due_at_ms, NULL);
        return;
    }
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_str(&w, "type", "invoice_expired");
    if (emit(r, inv, &w) == 0 && save_invoice(r, inv) == 0)
        loom_proc_unset_timer(r);
}

static void on_timeout(loom_proc_req *r, void *user)
{
    const payment_config *cfg = user;
    invoice inv;
    if (load_invoice(r, &inv) != 0) {
        loom_proc_done(r);
        return;
    }
    if (inv.status == INVOICE_PROCESSING) {
        job_start(r, cfg, &inv, poll_answered);
        return;
    }
    if (inv.status == INVOICE_UNPAID)
        timeout_unpaid(r, &inv);
    else
        loom_proc_unset_timer(r);
    loom_proc_done(r);
}

static void on_repair(loom_proc_req *r, void *user)
{
    (void)user;
    loom_proc_refuse_repair(r, "invoices are not repairable: start a new one");
    loom_proc_done(r);
}

int payment_register(loom_proc *p, payment_config *cfg)
{
    cfg->loop = loom_proc_loop(p);
    int err = loom_proc_on(p, LOOM_PROC_INIT, on_init, (void *)cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_CALL, on_call, (void *)cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_TIMEOUT, on_timeout, (void *)cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_REPAIR, on_repair, (void *)cfg);
    return err;
}
