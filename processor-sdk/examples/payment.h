/* The payment example processor: an invoice with an expiry timer, paid
 * through a simulated asynchronous provider, refundable by call.
 *
 *              init                 call pay              timeout (poll)
 *   (none) ---------> unpaid -------------------> processing ------------> paid
 *                      |  ^                            |                    |
 *          timeout at  |  +---- payment_failed --------+         call refund (repeatable,
 *          due_at_ms   v                                          total <= captured)
 *                    expired
 *
 * Events (msgpack maps, format_version 1):
 *   {"type":"invoice_created","amount":A,"currency":C,"due_at_ms":T}
 *   {"type":"payment_started","payment_id":P}
 *   {"type":"payment_captured","payment_id":P,"amount":A}
 *   {"type":"payment_failed","payment_id":P,"reason":R}
 *   {"type":"refunded","amount":N,"total_refunded":M}
 *   {"type":"invoice_expired"}
 * aux_state is the invoice snapshot; without it the state is folded from
 * the events (which then must be the whole history). */
#ifndef LOOM_EXAMPLE_PAYMENT_H
#define LOOM_EXAMPLE_PAYMENT_H

#include <stdint.h>

#include "loom/payload.h"
#include "loom/processor.h"

typedef struct payment_config {
    uint64_t provider_delay_ms; /* the provider's answer time; also the poll timer */
    double fail_rate;           /* probability that the provider declines a payment */
    uint64_t seed;
    uv_loop_t *loop; /* set by payment_register */
} payment_config;

typedef enum invoice_status {
    INVOICE_UNPAID,
    INVOICE_PROCESSING,
    INVOICE_PAID,
    INVOICE_EXPIRED,
} invoice_status;

typedef struct invoice {
    invoice_status status;
    int64_t amount;
    char currency[8];
    int64_t due_at_ms;
    int64_t captured;
    int64_t refunded;
    uint32_t payments; /* payments started so far: names the next one */
    char payment_id[64];
} invoice;

void payment_config_init(payment_config *c);
/* Registers the handlers on p; cfg must outlive p. */
int payment_register(loom_proc *p, payment_config *cfg);

/* State: exposed for tests (fold versus snapshot). */
const char *invoice_status_name(invoice_status s);
int invoice_apply(invoice *inv, const loom_mp_obj *event);
int invoice_read_snapshot(invoice *inv, const void *data, size_t len);
void invoice_write_snapshot(const invoice *inv, loom_mp_writer *w);

#endif
