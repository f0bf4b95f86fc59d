/* The batch example processor: a BatchRequest that sends objects to a
 * simulated asynchronous remote and polls it by timer.
 *
 *            init            call commit           call send              timeout (poll)
 *   (none) -------> initialized ------> committed ---------> sent_to_remote ------> ongoing
 *                                  ^       |  (commit again                           |   |
 *                                  +-------+   adds objects)        timeout (poll) <--+   |
 *                                                                    remote finished      |
 *                                                        done <-------------------------+-+-> fail
 *
 * Only one machine per content type may be committed (and not yet done or
 * failed) at a time. That registry lives in this processor's memory: it
 * is right for one processor process, and is rebuilt lazily (a machine
 * re-claims its content type on its next step) after a restart. Several
 * processor processes would need a shared store for it.
 *
 * Events (msgpack maps, format_version 1):
 *   {"type":"initialized"}
 *   {"type":"committed","content_type":C,"objects":[ids]}
 *   {"type":"sent_to_remote","remote_batch_id":R}
 *   {"type":"ongoing","remote_batch_id":R,"poll":N}
 *   {"type":"object_result","object_id":O,"remote_id":X}   or ...,"error":E}
 *   {"type":"done","succeeded":S,"failed":F}
 *   {"type":"failed","reason":R}
 * aux_state is the batch snapshot (the fold of those events). */
#ifndef LOOM_EXAMPLE_BATCH_H
#define LOOM_EXAMPLE_BATCH_H

#include <stdint.h>

#include "loom/payload.h"
#include "loom/processor.h"

#define BATCH_MAX_OBJECTS 1000
#define BATCH_NAME_MAX 64      /* content types, object ids, remote ids */
#define BATCH_REGISTRY_MAX 256 /* content types committed at once */

typedef struct batch_registry {
    size_t n;
    struct {
        char content_type[BATCH_NAME_MAX];
        char holder[2 * BATCH_NAME_MAX + 2]; /* "ns/id" */
    } claims[BATCH_REGISTRY_MAX];
} batch_registry;

typedef struct batch_config {
    uint64_t remote_delay_ms;  /* the remote API's answer time */
    uint64_t poll_interval_ms; /* timer between polls */
    uint32_t remote_polls;     /* polls answered "still running" before the result */
    double fail_rate;          /* probability the remote fails a whole batch */
    double object_fail_rate;   /* probability the remote rejects one object */
    uint64_t seed;
    uv_loop_t *loop; /* set by batch_register */
    batch_registry registry;
} batch_config;

typedef enum batch_status {
    BATCH_INITIALIZED,
    BATCH_COMMITTED,
    BATCH_SENT,
    BATCH_ONGOING,
    BATCH_DONE,
    BATCH_FAILED,
} batch_status;

typedef struct batch {
    batch_status status;
    char content_type[BATCH_NAME_MAX];
    char remote_batch_id[BATCH_NAME_MAX];
    uint32_t polls;
    uint32_t succeeded, failed;
    size_t n_objects;
    char objects[BATCH_MAX_OBJECTS][BATCH_NAME_MAX];
} batch;

void batch_config_init(batch_config *c);
/* Registers the handlers on p; cfg must outlive p. */
int batch_register(loom_proc *p, batch_config *cfg);

/* State: exposed for tests. */
const char *batch_status_name(batch_status s);
int batch_apply(batch *b, const loom_mp_obj *event);
int batch_read_snapshot(batch *b, const void *data, size_t len);
void batch_write_snapshot(const batch *b, loom_mp_writer *w);
/* The machine holding a content type, or NULL. */
const char *batch_registry_holder(const batch_config *cfg, const char *content_type);

#endif
