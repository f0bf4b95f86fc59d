/* Loom storage: the durable home of namespaces, machines, histories,
 * timers, notifications, request outcomes and the event sink, on LMDB.
 *
 * Conventions
 * - Functions return 0 (or a count, where documented) on success and a
 *   negative LOOM_E* code on failure; loom_errdetail() then says more
 *   (LMDB's own text, the path, the record that failed its check).
 * - Every pointer this API hands out (loom_slice fields of the structs
 *   below) is BORROWED from the memory map: it is valid until the read
 *   transaction it was read with ends (loom_txn_end). Copy what must
 *   outlive it. Nothing returned here is freed by the caller except the
 *   handles, through their own close/end function.
 * - Pointers handed in (steps, slices) are only read during the call.
 * - Integer keys are big-endian so cursors walk in numeric order; times are
 *   unix milliseconds in uint64_t.
 *
 * Threads
 * - A loom_store is shared by all threads. Read transactions may be begun
 *   on any thread, several at once; one transaction is used by one thread
 *   at a time (it may move between threads: the store runs LMDB with
 *   MDB_NOTLS) and ends before the thread that began it exits.
 * - Writes (loom_store_commit, namespace create/update, outcome pruning)
 *   may come from any thread and are serialised inside the store; the
 *   intended use is one committer thread doing group commits.
 * - A thread must not hold a read transaction while it writes: growing the
 *   map waits for every read transaction of the process to end, and the
 *   store answers LOOM_EBUSY rather than wait for itself.
 *
 * Durability: with the default options an acknowledged write (the call
 * returned 0) has been fsync'ed and survives kill -9 and power loss,
 * provided the disk honours fdatasync. See docs/storage.md. */
#ifndef LOOM_STORE_H
#define LOOM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "loom/common.h"
#include "loom/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ ids, bytes */

/* Internal key of a machine: assigned monotonically at creation, never
 * reused (also not after a removal). 0 is never a valid key. */
typedef struct {
    uint64_t v;
} loom_machine_key;

/* Namespace id: assigned monotonically from 1 at namespace creation. */
typedef struct {
    uint32_t v;
} loom_ns_id;

/* A byte range. As an input it is only read during the call; as an output
 * it is borrowed (see the conventions above). len 0 may have ptr NULL. */
typedef struct {
    const void *ptr;
    size_t len;
} loom_slice;

static inline loom_slice loom_slice_of(const void *ptr, size_t len)
{
    loom_slice s = {ptr, len};
    return s;
}

/* A NUL-terminated string as a slice (without the NUL); NULL gives an
 * empty slice. */
static inline loom_slice loom_slice_str(const char *str)
{
    loom_slice s = {str, str ? strlen(str) : 0};
    return s;
}

/* ---------------------------------------------------------------- limits */

/* Longest machine id, namespace name and request id, in bytes. They are
 * parts of LMDB keys, whose size LMDB caps at 511 bytes. */
#define LOOM_STORE_MAX_ID_LEN 255u
#define LOOM_STORE_MAX_NS_NAME_LEN 255u
#define LOOM_STORE_MAX_REQUEST_ID_LEN 255u
/* Largest event data, aux_state, notification args, outcome, namespace
 * config (the default maximum frame of the wire protocol). */
#define LOOM_STORE_MAX_VALUE_LEN (16u * 1024u * 1024u)
/* Longest failure reason. */
#define LOOM_STORE_MAX_REASON_LEN (64u * 1024u)
/* Most steps in one loom_store_commit batch, most events in one step, and
 * most bytes (event data + aux_state + args + outcome) in one batch. */
#define LOOM_STORE_MAX_BATCH_STEPS 4096u
#define LOOM_STORE_MAX_STEP_EVENTS 4096u
#define LOOM_STORE_MAX_BATCH_BYTES (256u * 1024u * 1024u)

/* ------------------------------------------------------------ open/close */

typedef struct loom_store loom_store;
typedef struct loom_txn loom_txn;

/* Unsafe durability modes, for benchmarks that ask for them explicitly.
 * The default (0) fsyncs every commit. */
enum loom_store_flags {
    LOOM_STORE_NOSYNC = 1u << 0,     /* no fsync at all (MDB_NOSYNC) */
    LOOM_STORE_NOMETASYNC = 1u << 1, /* no fsync of the meta page (MDB_NOMETASYNC) */
    LOOM_STORE_WRITEMAP = 1u << 2,   /* writable mmap (MDB_WRITEMAP) */
};

typedef struct {
    uint64_t map_size_initial; /* bytes; 0 = 64 MiB. Rounded up to pages. */
    uint64_t map_size_max;     /* bytes; 0 = 16 GiB. Growth stops here. */
    unsigned flags;            /* enum loom_store_flags; 0 = durable */
    unsigned max_readers;      /* concurrent read transactions; 0 = 126 */
} loom_store_opts;

/* Opens (creating if needed) the store in directory dir, which must exist.
 * opts may be NULL for the defaults. On success *out is the handle, to be
 * closed with loom_store_close. A store whose layout version is unknown is
 * refused with LOOM_EUNSUPPORTED. */
LOOM_EXPORT int loom_store_open(loom_store **out, const char *dir, const loom_store_opts *opts);
/* Closes the store. Every transaction must have ended. NULL is a no-op. */
LOOM_EXPORT void loom_store_close(loom_store *s);

/* --------------------------------------------------------- read txns */

/* Begins a read transaction: a consistent snapshot of the whole store.
 * LOOM_EBUSY when max_readers are already open. End it with loom_txn_end;
 * every slice read through it dies then. */
LOOM_EXPORT int loom_store_read_begin(loom_store *s, loom_txn **out);
/* Ends a read transaction (NULL is a no-op). */
LOOM_EXPORT void loom_txn_end(loom_txn *txn);

/* ------------------------------------------------------------ namespaces */

typedef struct {
    loom_ns_id id;
    loom_slice name;   /* borrowed */
    loom_slice config; /* borrowed: the engine's own encoding, opaque here */
} loom_ns_info;

/* Creates a namespace (one durable write transaction). *id_out (may be
 * NULL) receives its id. LOOM_ENAMESPACE_ALREADY_EXISTS if the name is
 * taken; LOOM_EINVALID_ARGUMENT for an empty or too long name. */
LOOM_EXPORT int loom_store_ns_create(loom_store *s, loom_slice name, loom_slice config,
                                     loom_ns_id *id_out);
/* Replaces a namespace's config bytes. LOOM_ENAMESPACE_NOT_FOUND. */
LOOM_EXPORT int loom_store_ns_update(loom_store *s, loom_slice name, loom_slice config);
/* Looks a namespace up by name or by id. LOOM_ENAMESPACE_NOT_FOUND. */
LOOM_EXPORT int loom_store_ns_get(loom_txn *txn, loom_slice name, loom_ns_info *out);
LOOM_EXPORT int loom_store_ns_get_by_id(loom_txn *txn, loom_ns_id id, loom_ns_info *out);
/* Lists namespaces in name order, starting after the name `after` (empty:
 * from the first). Fills up to cap entries; returns the count. */
LOOM_EXPORT int loom_store_ns_list(loom_txn *txn, loom_slice after, loom_ns_info *out, size_t cap);

/* -------------------------------------------------------------- machines */

/* Same numbers as the wire's MachineStatus. 0 means "any" in filters and
 * "keep" in steps. */
typedef enum {
    LOOM_STATUS_NONE = 0,
    LOOM_STATUS_WORKING = 1,
    LOOM_STATUS_FAILED = 2,
    LOOM_STATUS_RETRYING = 3,
} loom_status;

typedef enum {
    LOOM_DIRECTION_FORWARD = 0,
    LOOM_DIRECTION_BACKWARD = 1,
} loom_direction;

/* Machinegun's history range. `after` is exclusive and counts only when
 * has_after; without it the range starts at the first event (forward) or
 * the last (backward). limit 0 = no limit. On events 1..100:
 * {after 5, limit 3, backward} -> 4,3,2; {after 4, limit 4, forward} ->
 * 5..8; {no after, limit 2, backward} -> 100,99. */
typedef struct {
    uint64_t after;
    uint32_t limit;
    loom_direction direction;
    bool has_after;
} loom_range;

typedef struct {
    uint64_t deadline_ms; /* 0 = no timer */
    loom_range range;     /* the history to send with the timeout signal */
} loom_timer;

/* Bookkeeping of a step that failed and waits for its next attempt. The
 * engine owns the meaning of step_kind and ref (e.g. "notification" and
 * its id); the store keeps them and schedules next_attempt_ms. */
typedef struct {
    uint32_t attempt;          /* failed attempts so far; 0 = not retrying */
    uint32_t step_kind;        /* engine-defined */
    uint64_t ref;              /* engine-defined (e.g. a notification id) */
    uint64_t first_failure_ms; /* time of the first failed attempt */
    uint64_t next_attempt_ms;  /* 0 = none scheduled */
} loom_retry;

/* A machine's state. Slices are borrowed from the read transaction. */
typedef struct {
    loom_ns_id ns;
    loom_slice id;
    loom_machine_key key;
    loom_status status;
    loom_status status_before_failure; /* set while FAILED, else NONE */
    uint64_t last_event_id;            /* 0 = empty history */
    loom_slice aux_state;
    loom_timer timer;
    loom_slice reason; /* failure reason; empty unless FAILED */
    loom_retry retry;
    uint64_t wake_ms;  /* earliest non-zero of timer deadline and retry's
                          next attempt: its key in the timers index; 0 none */
    uint64_t created_at_ms;
    uint64_t updated_at_ms;
    uint64_t last_hash; /* chain hash of the last event (seed if none) */
    /* Where the newest events sit (storage bookkeeping, see
     * docs/storage.md): the last log_count events are read from the event
     * log, the last of them at sink sequence log_tail_seq. */
    uint32_t log_count;
    uint64_t log_tail_seq;
} loom_machine;

/* Reads a machine by (namespace, id) or by key. LOOM_EMACHINE_NOT_FOUND. */
LOOM_EXPORT int loom_store_machine_get(loom_txn *txn, loom_ns_id ns, loom_slice id,
                                       loom_machine *out);
LOOM_EXPORT int loom_store_machine_get_by_key(loom_txn *txn, loom_machine_key key,
                                              loom_machine *out);
/* Lists the machines of a namespace in id order (bytewise), those with
 * status `status` (LOOM_STATUS_NONE = any), starting after the id `after`
 * (exclusive; has_after false = from the first). Fills up to cap entries
 * (borrowed slices) and returns the count. At most 64 * cap + 1024
 * machines are examined per call, so a rare status cannot make one call
 * walk a huge namespace: the count may then be short of cap while more
 * remain. *more (may be NULL) is true when machines remain after this
 * page; *next_after (may be NULL) receives the id to continue after (the
 * last one examined; borrowed). */
LOOM_EXPORT int loom_store_machines_list(loom_txn *txn, loom_ns_id ns, loom_status status,
                                         loom_slice after, bool has_after, loom_machine *out,
                                         size_t cap, loom_slice *next_after, bool *more);

/* --------------------------------------------------------------- history */

typedef struct {
    uint64_t id;
    uint64_t created_at_ms;
    uint32_t format_version;
    loom_slice data; /* borrowed from the read transaction */
} loom_event;

/* Iterator over a history range. Lives on the caller's stack; its fields
 * are private. Every record it yields has passed its CRC32C and chain-hash
 * checks; a record that fails gives LOOM_ECORRUPTED, never its bytes. */
typedef struct {
    void *cursor_;       /* on `events`, sitting on event cursor_id_ */
    void *txn_;
    loom_machine_key key_;
    uint64_t cursor_id_;
    uint64_t next_id_;   /* id of the next event to yield */
    uint64_t remaining_; /* events still to yield */
    uint64_t prev_hash_; /* forward: hash of event next_id_ - 1 */
    uint64_t log_first_; /* first event id held in the log (0: none) */
    uint64_t log_seqs_[32]; /* sink sequence of each logged event */
    int step_;           /* +1 forward, -1 backward */
    bool positioned_;    /* a neighbour has been read already */
    bool done_;
    const void *pend_rec_; /* backward: event next_id_, read ahead, CRC-checked */
    loom_event pend_ev_;
    uint64_t pend_hash_;
} loom_history;

/* Starts iterating the range of machine `key`'s history. The range is
 * clamped to the events that exist (after beyond the last event gives an
 * empty iteration, not an error). LOOM_EMACHINE_NOT_FOUND if the machine
 * does not exist, LOOM_ECORRUPTED if its meta record or the event log
 * links the range needs fail their checks. Always pair with
 * loom_history_end (also after an error). */
LOOM_EXPORT int loom_history_begin(loom_txn *txn, loom_machine_key key, const loom_range *range,
                                   loom_history *it);
/* Yields the next event: 1 and *ev filled (slices borrowed from the read
 * transaction), 0 at the end of the range, or a negative error
 * (LOOM_ECORRUPTED for a record failing its checks, a gap, or a missing
 * event). After an error the iterator yields nothing more. */
LOOM_EXPORT int loom_history_next(loom_history *it, loom_event *ev);
/* Releases the iterator (safe to call after an error, or twice). */
LOOM_EXPORT void loom_history_end(loom_history *it);

/* ----------------------------------------------------------------- steps */

typedef struct {
    uint32_t format_version;
    loom_slice data;
} loom_new_event;

typedef enum {
    LOOM_TIMER_KEEP = 0,
    LOOM_TIMER_SET = 1,   /* to step.timer */
    LOOM_TIMER_UNSET = 2,
} loom_timer_op;

typedef enum {
    LOOM_RETRY_KEEP = 0,
    LOOM_RETRY_SET = 1,   /* to step.retry */
    LOOM_RETRY_CLEAR = 2,
} loom_retry_op;

/* One step result to commit. Zero-initialise, fill the inputs; commit
 * fills the outputs. Validation happens before anything of the step is
 * written, so a refused step leaves no trace, and the other steps of the
 * batch commit regardless. */
typedef struct {
    /* --- target */
    loom_ns_id ns;
    loom_slice id;
    /* optional: the machine's key from an earlier read. Finds the machine
     * without the name lookup; a key that no longer names (ns, id) makes
     * the step LOOM_ESTALE (removed and created again) or
     * LOOM_EMACHINE_NOT_FOUND. Ignored with create. */
    loom_machine_key key_hint;
    /* create the machine (LOOM_EMACHINE_ALREADY_EXISTS if it exists); new
     * machines start WORKING with an empty history unless status is set */
    bool create;
    /* skip the expected_last_event_id check (notify, acknowledgements) */
    bool unchecked;
    /* the machine's last event id as read by this step; another value in
     * the store means the machine moved on: LOOM_ESTALE */
    uint64_t expected_last_event_id;
    /* remove the machine, its events, timer, notifications and outcomes.
     * A removing step carries no other change (LOOM_EINVALID_ARGUMENT). */
    bool remove;
    uint64_t now_ms; /* created_at of its events, updated_at, stored_at */

    /* --- change */
    const loom_new_event *events; /* appended with ids last+1, last+2... */
    uint32_t n_events;
    bool set_aux_state;
    loom_slice aux_state;
    loom_timer_op timer_op;
    loom_timer timer;
    /* NONE keeps the status. Moving to FAILED remembers the status it
     * left (status_before_failure) and stores reason; moving out of
     * FAILED clears both. */
    loom_status status;
    loom_slice reason;
    loom_retry_op retry_op;
    loom_retry retry;

    /* --- notifications and outcomes */
    bool notify;                 /* enqueue a notification ... */
    loom_slice notify_args;      /* ... with these args */
    uint64_t ack_notification_id; /* delete this pending notification of
                                     the machine (0 = none); LOOM_ENOT_FOUND
                                     if it is not pending for the machine */
    bool record_outcome;         /* store request_id -> outcome */
    loom_slice request_id;
    loom_slice outcome;
    /* with notify and record_outcome: the outcome stored is `outcome`
     * followed by the id of the notification this step enqueues, as a
     * base-128 varint (7 bits a byte, lowest first, high bit set on every
     * byte but the last; at most 10 bytes). A reply that carries the id
     * is thus recorded in the same transaction that assigns it. */
    bool outcome_append_notification_id;

    /* --- outputs */
    int result;                  /* 0 or the step's LOOM_E* code */
    loom_machine_key key;        /* the machine's key (also for create) */
    uint64_t first_event_id;     /* id of the first appended event, 0 if none */
    uint64_t last_event_id;      /* the machine's last event id after the step */
    uint64_t notification_id;    /* id of the enqueued notification, 0 if none */
} loom_step;

/* Commits a batch of steps in ONE write transaction and ONE fsync, applying
 * them in order (several may target the same machine). Returns 0 when the
 * transaction committed, even if some steps were refused (their `result`
 * says why); else the error that failed the whole batch, and then nothing
 * of it is stored: LOOM_EINVALID_ARGUMENT (n over LOOM_STORE_MAX_BATCH_STEPS
 * or the batch over LOOM_STORE_MAX_BATCH_BYTES), LOOM_ESTORAGE_FULL (the
 * map is at its maximum or the disk is full; the store stays consistent
 * and usable), LOOM_EIO, LOOM_ENOMEM, LOOM_EBUSY (this thread holds a read
 * transaction while the map must grow).
 * Per-step codes: LOOM_EMACHINE_ALREADY_EXISTS, LOOM_EMACHINE_NOT_FOUND,
 * LOOM_ENAMESPACE_NOT_FOUND, LOOM_ESTALE (also: key_hint names a machine
 * that was removed and created again), LOOM_ENOT_FOUND (ack of a
 * notification that is not pending), LOOM_EINVALID_ARGUMENT (a field over
 * its limit, an unknown enum value), LOOM_ECORRUPTED (the machine's stored
 * records fail their checks; the rest of the batch still commits). */
LOOM_EXPORT int loom_store_commit(loom_store *s, loom_step *steps, size_t n);

/* ---------------------------------------------------------------- timers */

typedef struct {
    uint64_t wake_ms;
    loom_machine_key key;
} loom_timer_entry;

/* Fills out[0..cap) with the timers index entries of wake time <= up_to_ms
 * in (wake_ms, key) order, starting after the entry *after (NULL = from the
 * beginning). Returns the count. */
LOOM_EXPORT int loom_store_timers_due(loom_txn *txn, uint64_t up_to_ms,
                                      const loom_timer_entry *after, loom_timer_entry *out,
                                      size_t cap);
/* The earliest entry of the index: 0 and *next set, or
 * LOOM_ENOT_FOUND when no machine has a timer or a retry scheduled. */
LOOM_EXPORT int loom_store_timers_next(loom_txn *txn, loom_timer_entry *next);

/* --------------------------------------------------------- notifications */

typedef struct {
    uint64_t id;
    loom_machine_key key;
    uint64_t created_at_ms;
    loom_slice args; /* borrowed */
} loom_notification;

/* The pending notifications of machine `key` with id > after_id, in id
 * order; fills up to cap, returns the count. */
LOOM_EXPORT int loom_store_notifications_of(loom_txn *txn, loom_machine_key key,
                                            uint64_t after_id, loom_notification *out,
                                            size_t cap);
/* All pending notifications with id >= from_id, in id order (the engine
 * resumes them at start); fills up to cap, returns the count. */
LOOM_EXPORT int loom_store_notifications_from(loom_txn *txn, uint64_t from_id,
                                              loom_notification *out, size_t cap);

/* -------------------------------------------------------------- outcomes */

/* The outcome recorded for request_id on machine `key`: 0 with *outcome
 * (borrowed) and *stored_at_ms (may be NULL), or LOOM_ENOT_FOUND. */
LOOM_EXPORT int loom_store_outcome_get(loom_txn *txn, loom_machine_key key, loom_slice request_id,
                                       loom_slice *outcome, uint64_t *stored_at_ms);
/* Deletes up to `limit` outcomes stored before older_than_ms (oldest first)
 * in one durable write transaction; *removed (may be NULL) gets the count.
 * limit 0 = 10000. Call again while *removed == limit. */
LOOM_EXPORT int loom_store_outcomes_prune(loom_store *s, uint64_t older_than_ms, size_t limit,
                                          size_t *removed);

/* ------------------------------------------------------------ event sink */

/* Every appended event gets the next global sequence number (1, 2, 3...
 * without gaps). Entries stay after their machine is removed (the sink
 * also serves as the write-optimised event log, see docs/storage.md). */
typedef struct {
    uint64_t seq;
    loom_machine_key key;
    uint64_t event_id;
} loom_sink_entry;

/* Fills out[0..cap) with the sink entries of seq >= from_seq; returns the
 * count. */
LOOM_EXPORT int loom_store_sink_read(loom_txn *txn, uint64_t from_seq, loom_sink_entry *out,
                                     size_t cap);
/* The last assigned sequence number (0 if none). */
LOOM_EXPORT int loom_store_sink_last(loom_txn *txn, uint64_t *seq);

/* ------------------------------------------------------------ integrity */

typedef struct {
    int err;              /* LOOM_ECORRUPTED mostly */
    const char *table;    /* sub-database name, e.g. "events" */
    loom_machine_key key; /* machine concerned (0 if none) */
    uint64_t item;        /* event id, notification id, ... (0 if none) */
    const char *detail;   /* human text; valid during the callback */
} loom_verify_problem;

typedef void (*loom_verify_cb)(void *user, const loom_verify_problem *problem);

/* Walks every record of the store: the CRC32C of every record, each
 * machine's history (ids gap-free from 1, chain hashes, the meta's last
 * event id and last hash), the name, timers, notification and outcome
 * indexes against the records they index. Calls cb (may be NULL) for each
 * problem and returns their number, or a negative error if the walk itself
 * could not run. */
LOOM_EXPORT int loom_store_verify(loom_store *s, loom_verify_cb cb, void *user);

/* ------------------------------------------------------------ statistics */

typedef struct {
    uint64_t map_size;       /* current map size, bytes */
    uint64_t map_size_max;   /* growth limit, bytes */
    uint64_t page_size;      /* bytes */
    uint64_t pages_used;     /* pages of the file in use (last page + 1) */
    uint64_t map_grows;      /* times the map grew since open */
    uint64_t commits;        /* write transactions committed since open */
    uint64_t steps;          /* steps committed (refused ones excluded) */
    uint64_t events;         /* events appended since open */
    uint64_t machines;       /* machines in the store now */
    uint64_t sink_entries;   /* events ever appended (the sink keeps all) */
    uint64_t events_compacted; /* events moved from the log into `events` */
} loom_store_stats;

LOOM_EXPORT int loom_store_stats_get(loom_store *s, loom_store_stats *out);

#ifdef __cplusplus
}
#endif

#endif
