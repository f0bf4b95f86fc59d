/* Shared plumbing of the example processors: msgpack replies, deferred
 * work on the loop, flag parsing. */
#ifndef LOOM_EXAMPLE_H
#define LOOM_EXAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/payload.h"
#include "loom/processor.h"

/* Parses the request's args as a msgpack map and reads its "op" string
 * (ops may be NULL for signals whose args carry no op). On error the
 * request is failed (non-retryable, with the reason) and the error is
 * returned; the caller then only calls loom_proc_done. */
int ex_parse_args(loom_proc_req *r, loom_mp_doc *doc, char *op, size_t op_size);

/* Finishes the writer into the response / an event / aux_state. A writer
 * error fails the request (non-retryable) and is returned. */
int ex_respond(loom_proc_req *r, loom_mp_writer *w);
int ex_append(loom_proc_req *r, loom_mp_writer *w);
int ex_set_aux(loom_proc_req *r, loom_mp_writer *w);

/* Appends the event built in w and applies that same event to state with
 * apply, so that the snapshot is by construction the fold of the events.
 * An error fails the request (non-retryable) and is returned. */
typedef int (*ex_apply_fn)(void *state, const loom_mp_obj *event);
int ex_emit(loom_proc_req *r, loom_mp_writer *w, ex_apply_fn apply, void *state);

/* The business "no": a response {"ok": false, "error": code, "detail":
 * detail}; the machine is left unchanged. */
void ex_refuse(loom_proc_req *r, const char *code, const char *detail);

/* Copies s into out, cut to fit but never inside a UTF-8 character, so
 * that texts built from it stay valid wherever they are sent. */
void ex_copy_prefix(char *out, size_t size, const char *s);

/* Runs fn(ctx) after delay_ms on loop — the simulated remote's latency.
 * LOOM_ENOMEM if it cannot be scheduled. */
int ex_later(uv_loop_t *loop, uint64_t delay_ms, void (*fn)(void *ctx), void *ctx);

/* Flag values: 0 or LOOM_EINVALID_ARGUMENT with a message on stderr. */
int ex_flag_u64(const char *name, const char *text, uint64_t *out);
int ex_flag_rate(const char *name, const char *text, double *out);

#endif
