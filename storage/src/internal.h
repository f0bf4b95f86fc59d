/* Internals shared by the storage sources (loom__ prefix). Not installed. */
#ifndef LOOM_STORE_INTERNAL_H
#define LOOM_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "loom/store.h"

/* Version of the whole layout (sub-databases, keys, record formats),
 * stored in the counters table; a store of another version is refused. */
#define LOOM__LAYOUT_VERSION 1u
/* Version byte leading every record (the first msgpack array element). */
#define LOOM__RECORD_VERSION 1u

/* The sub-databases (see docs/storage.md for keys and values). */
#define LOOM__DB_MAP(X)                                                                            \
    X(NAMESPACES, "namespaces")                                                                    \
    X(NS_IDS, "ns_ids")                                                                            \
    X(MACHINES, "machines")                                                                        \
    X(META, "meta")                                                                                \
    X(EVENTS, "events")                                                                            \
    X(TIMERS, "timers")                                                                            \
    X(SINK, "sink")                                                                                \
    X(NOTIFICATIONS, "notifications")                                                              \
    X(MACHINE_NOTIFICATIONS, "machine_notifications")                                              \
    X(OUTCOMES, "outcomes")                                                                        \
    X(OUTCOME_TIMES, "outcome_times")                                                              \
    X(COUNTERS, "counters")

enum loom__db {
#define LOOM__DB_ENUM(name, str) LOOM__DB_##name,
    LOOM__DB_MAP(LOOM__DB_ENUM)
#undef LOOM__DB_ENUM
        LOOM__DB_COUNT
};

extern const char *const loom__db_names[LOOM__DB_COUNT];

struct loom_store {
    MDB_env *env;
    MDB_dbi dbi[LOOM__DB_COUNT];
    /* Serialises every write transaction and map growth. */
    pthread_mutex_t write_lock;
    /* The map gate: read transactions are counted in for their whole
     * life; growing the map waits until none is open, because LMDB may
     * only resize the map while no transaction of the process is open.
     * New readers wait while a growth waits, so a stream of readers cannot
     * starve it. A mutex and a condition rather than a rwlock: a read
     * transaction may end on another thread than the one that began it. */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    unsigned gate_readers;
    unsigned gate_resizers; /* waiting or resizing */
    uint64_t map_size;
    uint64_t map_size_max;
    unsigned flags;
    char *dir;
    /* Scratch for encoding records of a write transaction, and a second
     * buffer holding the current meta's bytes during a step (write_lock). */
    uint8_t *scratch;
    size_t scratch_cap;
    uint8_t *hold;
    size_t hold_cap;
    /* Statistics; written under write_lock, read with relaxed loads. */
    _Atomic uint64_t map_grows, commits, steps, events;
};

struct loom_txn {
    loom_store *s;
    MDB_txn *txn;
    /* The read-transaction count of the thread that began it (the
     * transaction may end on another thread). */
    _Atomic unsigned *held;
};

/* ---- errors */

/* Maps an LMDB return code (or errno) to a Loom code, keeping LMDB's text
 * and `what` in loom_errdetail(). */
int loom__mdb_err(int rc, const char *what);

/* ---- checksums */
uint32_t loom__crc32c(uint32_t crc, const void *data, size_t len);
uint32_t loom__crc32c_sw(uint32_t crc, const void *data, size_t len);
bool loom__crc32c_has_hw(void);
uint64_t loom__xxh64(const void *data, size_t len, uint64_t seed);

/* ---- big-endian keys */

static inline void loom__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline void loom__put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline uint64_t loom__get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline uint32_t loom__get_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline MDB_val loom__val(const void *p, size_t n)
{
    MDB_val v = {n, (void *)p};
    return v;
}
static inline loom_slice loom__slice(MDB_val v)
{
    return loom_slice_of(v.mv_data, v.mv_size);
}

/* Keys of 16 bytes: (a, b) both u64 BE (events, timers, notifications). */
static inline void loom__key2(uint8_t k[16], uint64_t a, uint64_t b)
{
    loom__put_be64(k, a);
    loom__put_be64(k + 8, b);
}

/* The event log. New events are appended to the `sink` table (keyed by
 * the global sequence, so a commit writes its events to a few tail pages)
 * and moved into `events` (keyed by machine, so a history is one cursor
 * walk) in one go when a machine has LOOM__LOG_COMPACT of them in the log.
 * A sink value is a header (machine key u64 BE, sink sequence of the
 * machine's previous logged event u64 BE, 0 for none) and the event record
 * exactly as `events` stores it. */
#define LOOM__LOG_COMPACT 32u
#define LOOM__SINK_HEAD 16u

/* Reads the logged event at sink sequence seq, which must be event id of
 * machine key: *rec is its event record (borrowed), *prev_seq the sink
 * sequence of the machine's logged event before it. With a cursor on
 * `sink` (else NULL) a lookup near the last one stays within its page. */
int loom__log_read(loom_store *s, MDB_txn *txn, MDB_cursor *cur, loom_machine_key key,
                   uint64_t seq, uint64_t id, MDB_val *rec, uint64_t *prev_seq);

/* Seed of a machine's chain: the "hash of event 0". Depends on the key so
 * events copied from another machine do not verify. */
uint64_t loom__chain_seed(loom_machine_key key);

/* ---- records (record.c) */

/* Event record (fixed-layout msgpack array, see docs/storage.md). */
#define LOOM__EVENT_HEAD 30u /* bytes before data */
#define LOOM__EVENT_TAIL 14u /* hash (9) + crc (5) after data */
static inline size_t loom__event_size(size_t data_len)
{
    return LOOM__EVENT_HEAD + data_len + LOOM__EVENT_TAIL;
}
/* Writes the record of the event into out[0..loom__event_size) and returns
 * its chain hash (seeded by the previous event's hash). */
uint64_t loom__event_encode(uint8_t *out, uint64_t id, const loom_new_event *ev,
                            uint64_t created_at_ms, uint64_t prev_hash);
/* Decodes and checks a record: layout, lengths, CRC32C; then, unless
 * prev_hash is NULL, the chain hash against *prev_hash. Fills *ev and
 * *hash. 0 or LOOM_ECORRUPTED with a detail naming the failed check. */
int loom__event_decode(const void *rec, size_t len, const uint64_t *prev_hash, loom_event *ev,
                       uint64_t *hash);

/* Whether a CRC-checked event record links to the event before it. */
static inline bool loom__event_chain_ok(const void *rec, const loom_event *ev, uint64_t prev_hash,
                                        uint64_t hash)
{
    return loom__xxh64(rec, LOOM__EVENT_HEAD + ev->data.len, prev_hash) == hash;
}

/* Meta record of a machine. Upper bound of its size for the encoder. */
size_t loom__meta_size_max(const loom_machine *m);
/* Encodes m into out (at least loom__meta_size_max bytes); returns length. */
size_t loom__meta_encode(uint8_t *out, const loom_machine *m);
/* Decodes and CRC-checks a meta record; slices of *m borrow rec. The key
 * is not in the record: the caller sets m->key. */
int loom__meta_decode(const void *rec, size_t len, loom_machine *m);

/* Namespace record: ns id + config bytes. */
size_t loom__ns_size(size_t config_len);
size_t loom__ns_encode(uint8_t *out, loom_ns_id id, loom_slice config);
int loom__ns_decode(const void *rec, size_t len, loom_ns_id *id, loom_slice *config);

/* Notification record: machine key, created_at, args. */
size_t loom__notification_size(size_t args_len);
size_t loom__notification_encode(uint8_t *out, const loom_notification *n);
int loom__notification_decode(const void *rec, size_t len, loom_notification *n);

/* Outcome record: stored_at, outcome bytes. LOOM__VARINT_MAX: the longest
 * base-128 varint of a uint64 (a notification id appended to an outcome). */
#define LOOM__VARINT_MAX 10u
size_t loom__outcome_size(size_t outcome_len);
size_t loom__outcome_encode(uint8_t *out, uint64_t stored_at_ms, loom_slice outcome);
int loom__outcome_decode(const void *rec, size_t len, uint64_t *stored_at_ms, loom_slice *outcome);

/* ---- store.c helpers */

/* Grows the scratch (or hold) buffer to at least n bytes (under
 * write_lock) and returns it. */
int loom__scratch(loom_store *s, size_t n, uint8_t **out);
int loom__hold(loom_store *s, size_t n, uint8_t **out);
/* Runs a write transaction: begin, fn, commit; grows the map and retries
 * when it is full (fn must be idempotent over a fresh transaction). fn
 * returns 0 to commit, a negative code to abort with that error, or a
 * positive value to abort quietly (nothing to write), returned as is. */
typedef int (*loom__write_fn)(loom_store *s, MDB_txn *txn, void *arg);
int loom__write(loom_store *s, loom__write_fn fn, void *arg);

/* Reads a u64 counter (0 when absent) / writes one. */
int loom__counter_get(loom_store *s, MDB_txn *txn, const char *name, uint64_t *v);
int loom__counter_put(loom_store *s, MDB_txn *txn, const char *name, uint64_t v);

/* Machine lookups shared by reads, commit and verify. */
int loom__machine_by_key(loom_store *s, MDB_txn *txn, loom_machine_key key, loom_machine *out);
/* The same through a cursor on `meta`, left on the machine's record. */
int loom__machine_at(loom_store *s, MDB_cursor *cur, loom_machine_key key, loom_machine *out);
int loom__machine_key_of(loom_store *s, MDB_txn *txn, loom_ns_id ns, loom_slice id,
                         loom_machine_key *key);

/* Machine key of the machines-table key ns (u32 BE) + id. */
#define LOOM__MACHINE_NAME_KEY_MAX (4 + LOOM_STORE_MAX_ID_LEN)
size_t loom__machine_name_key(uint8_t *k, loom_ns_id ns, loom_slice id);

/* Earliest non-zero of the timer deadline and the retry's next attempt. */
static inline uint64_t loom__wake_of(const loom_machine *m)
{
    uint64_t a = m->timer.deadline_ms, b = m->retry.next_attempt_ms;
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

#endif
