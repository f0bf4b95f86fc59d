/* Record codecs. Every record is a msgpack array led by the record version
 * and closed by a CRC32C (uint32, 0xce) of all bytes before it. Event,
 * namespace, notification and outcome records use fixed-width elements
 * (uint32 as 0xce, uint64 as 0xcf, bytes as bin32 0xc6): an event decodes
 * with a few tag compares at known offsets instead of a generic unpack, and
 * the others can be written in place (MDB_RESERVE) at a size known ahead.
 * The meta record, rewritten by every step, uses minimal widths to stay
 * small. All of them are plain msgpack for any reader. */
#include "internal.h"

#include <stdio.h>

#define MP_U32 0xce
#define MP_U64 0xcf
#define MP_BIN32 0xc6
#define MP_ARRAY16 0xdc
#define CRC_TAIL 5u

/* ---- writer */

static uint8_t *w_array(uint8_t *p, unsigned n)
{
    if (n < 16) {
        *p++ = (uint8_t)(0x90 | n);
        return p;
    }
    *p++ = MP_ARRAY16;
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
    return p;
}

static uint8_t *w_u32(uint8_t *p, uint32_t v)
{
    *p++ = MP_U32;
    loom__put_be32(p, v);
    return p + 4;
}

static uint8_t *w_u64(uint8_t *p, uint64_t v)
{
    *p++ = MP_U64;
    loom__put_be64(p, v);
    return p + 8;
}

static uint8_t *w_bin(uint8_t *p, loom_slice b)
{
    LOOM_ASSERT(b.len <= UINT32_MAX);
    *p++ = MP_BIN32;
    loom__put_be32(p, (uint32_t)b.len);
    if (b.len)
        memcpy(p + 4, b.ptr, b.len);
    return p + 4 + b.len;
}

/* Minimal-width forms, for the meta record: every step rewrites it, so
 * its size sets how many pages a batch of steps dirties. */
static uint8_t *w_uint(uint8_t *p, uint64_t v)
{
    if (v < 0x80) {
        *p++ = (uint8_t)v;
    } else if (v <= 0xff) {
        *p++ = 0xcc;
        *p++ = (uint8_t)v;
    } else if (v <= 0xffff) {
        *p++ = 0xcd;
        *p++ = (uint8_t)(v >> 8);
        *p++ = (uint8_t)v;
    } else if (v <= 0xffffffffu) {
        return w_u32(p, (uint32_t)v);
    } else {
        return w_u64(p, v);
    }
    return p;
}

static uint8_t *w_bin_min(uint8_t *p, loom_slice b)
{
    if (b.len > 0xffff)
        return w_bin(p, b);
    if (b.len > 0xff) {
        *p++ = 0xc5;
        *p++ = (uint8_t)(b.len >> 8);
    } else {
        *p++ = 0xc4;
    }
    *p++ = (uint8_t)b.len;
    if (b.len)
        memcpy(p, b.ptr, b.len);
    return p + b.len;
}

static size_t w_seal(uint8_t *start, uint8_t *p)
{
    uint32_t crc = loom__crc32c(0, start, (size_t)(p - start));
    p = w_u32(p, crc);
    return (size_t)(p - start);
}

/* ---- reader: marks itself bad on the first mismatch, so decoders read
 * straight through and check once at the end. */

typedef struct {
    const uint8_t *p, *end;
    const char *bad;
} rd;

static void rd_init(rd *r, const void *rec, size_t len, unsigned n_elems)
{
    r->p = rec;
    r->end = r->p + len;
    r->bad = NULL;
    if (len < CRC_TAIL + 2) {
        r->bad = "record too short";
        return;
    }
    const uint8_t *tail = r->end - CRC_TAIL;
    if (tail[0] != MP_U32 || loom__get_be32(tail + 1) != loom__crc32c(0, rec, len - CRC_TAIL)) {
        r->bad = "record CRC32C mismatch";
        return;
    }
    r->end = tail;
    unsigned n = 0;
    if (n_elems < 16 && *r->p == (0x90 | n_elems)) {
        n = n_elems;
        r->p += 1;
    } else if (n_elems >= 16 && r->end - r->p >= 3 && r->p[0] == MP_ARRAY16) {
        n = (unsigned)r->p[1] << 8 | r->p[2];
        r->p += 3;
    }
    if (n != n_elems || *r->p != LOOM__RECORD_VERSION) {
        r->bad = "unknown record layout or version";
        return;
    }
    r->p++;
}

/* Reads an unsigned integer in any msgpack width up to max. */
static uint64_t rd_uint(rd *r, uint64_t max)
{
    if (r->bad)
        return 0;
    size_t avail = (size_t)(r->end - r->p), width;
    uint8_t tag = avail ? r->p[0] : 0;
    uint64_t v = 0;
    if (avail && tag < 0x80) {
        r->p++;
        return tag;
    }
    width = tag == 0xcc ? 1 : tag == 0xcd ? 2 : tag == MP_U32 ? 4 : tag == MP_U64 ? 8 : 0;
    if (width == 0 || avail < width + 1) {
        r->bad = "malformed record field";
        return 0;
    }
    for (size_t i = 1; i <= width; i++)
        v = v << 8 | r->p[i];
    r->p += width + 1;
    if (v > max)
        r->bad = "record field out of range";
    return v;
}

static uint32_t rd_u32(rd *r)
{
    return (uint32_t)rd_uint(r, UINT32_MAX);
}

static uint64_t rd_u64(rd *r)
{
    return rd_uint(r, UINT64_MAX);
}

static loom_slice rd_bin(rd *r)
{
    loom_slice s = {NULL, 0};
    if (r->bad)
        return s;
    size_t avail = (size_t)(r->end - r->p), width, n = 0;
    uint8_t tag = avail ? r->p[0] : 0;
    width = tag == 0xc4 ? 1 : tag == 0xc5 ? 2 : tag == MP_BIN32 ? 4 : 0;
    if (width == 0 || avail < width + 1) {
        r->bad = "malformed record field";
        return s;
    }
    for (size_t i = 1; i <= width; i++)
        n = n << 8 | r->p[i];
    if (avail - width - 1 < n) {
        r->bad = "record field overruns the record";
        return s;
    }
    s = loom_slice_of(r->p + 1 + width, n);
    r->p += 1 + width + n;
    return s;
}

static int rd_finish(rd *r, const char *what)
{
    if (!r->bad && r->p != r->end)
        r->bad = "trailing bytes in record";
    if (r->bad)
        return loom_seterr(LOOM_ECORRUPTED, "%s record: %s", what, r->bad);
    return 0;
}

/* ---- events: [ver, id, created_at, format_version, data, hash, crc].
 * The hash covers the bytes before it, seeded by the previous event's
 * hash; the CRC covers everything before it, the hash included. */

uint64_t loom__event_encode(uint8_t *out, uint64_t id, const loom_new_event *ev,
                            uint64_t created_at_ms, uint64_t prev_hash)
{
    uint8_t *p = w_array(out, 7);
    *p++ = LOOM__RECORD_VERSION;
    p = w_u64(p, id);
    p = w_u64(p, created_at_ms);
    p = w_u32(p, ev->format_version);
    p = w_bin(p, ev->data);
    LOOM_ASSERT((size_t)(p - out) == LOOM__EVENT_HEAD + ev->data.len);
    uint64_t hash = loom__xxh64(out, (size_t)(p - out), prev_hash);
    p = w_u64(p, hash);
    size_t n = w_seal(out, p);
    LOOM_ASSERT(n == loom__event_size(ev->data.len));
    return hash;
}

static int event_bad(const char *why)
{
    return loom_seterr(LOOM_ECORRUPTED, "event record: %s", why);
}

int loom__event_decode(const void *rec, size_t len, const uint64_t *prev_hash, loom_event *ev,
                       uint64_t *hash)
{
    const uint8_t *p = rec;
    if (LOOM_UNLIKELY(len < loom__event_size(0)))
        return event_bad("too short");
    if (LOOM_UNLIKELY(p[0] != 0x97 || p[1] != LOOM__RECORD_VERSION || p[2] != MP_U64 ||
                      p[11] != MP_U64 || p[20] != MP_U32 || p[25] != MP_BIN32))
        return event_bad("unknown layout or version");
    size_t data_len = loom__get_be32(p + 26);
    if (LOOM_UNLIKELY(data_len != len - loom__event_size(0)))
        return event_bad("data length does not match the record size");
    const uint8_t *tail = p + LOOM__EVENT_HEAD + data_len;
    if (LOOM_UNLIKELY(tail[0] != MP_U64 || tail[9] != MP_U32))
        return event_bad("malformed hash or CRC field");
    if (LOOM_UNLIKELY(loom__get_be32(tail + 10) != loom__crc32c(0, p, len - CRC_TAIL)))
        return event_bad("CRC32C mismatch");
    *hash = loom__get_be64(tail + 1);
    if (prev_hash && LOOM_UNLIKELY(loom__xxh64(p, LOOM__EVENT_HEAD + data_len, *prev_hash) != *hash))
        return event_bad("chain hash mismatch (history altered or out of order)");
    ev->id = loom__get_be64(p + 3);
    ev->created_at_ms = loom__get_be64(p + 12);
    ev->format_version = loom__get_be32(p + 21);
    ev->data = loom_slice_of(p + LOOM__EVENT_HEAD, data_len);
    return 0;
}

/* ---- machine meta */

#define META_ELEMS 24u
#define TIMER_BACKWARD 1u
#define TIMER_HAS_AFTER 2u

size_t loom__meta_size_max(const loom_machine *m)
{
    return 3 + 1 + META_ELEMS * 9 + m->id.len + m->aux_state.len + m->reason.len;
}

size_t loom__meta_encode(uint8_t *out, const loom_machine *m)
{
    uint32_t tflags = (m->timer.range.direction == LOOM_DIRECTION_BACKWARD ? TIMER_BACKWARD : 0) |
                      (m->timer.range.has_after ? TIMER_HAS_AFTER : 0);
    uint8_t *p = w_array(out, META_ELEMS);
    *p++ = LOOM__RECORD_VERSION;
    p = w_uint(p, m->ns.v);
    p = w_bin_min(p, m->id);
    p = w_uint(p, (uint32_t)m->status);
    p = w_uint(p, (uint32_t)m->status_before_failure);
    p = w_uint(p, m->last_event_id);
    p = w_bin_min(p, m->aux_state);
    p = w_uint(p, m->timer.deadline_ms);
    p = w_uint(p, m->timer.range.after);
    p = w_uint(p, m->timer.range.limit);
    p = w_uint(p, tflags);
    p = w_bin_min(p, m->reason);
    p = w_uint(p, m->retry.attempt);
    p = w_uint(p, m->retry.step_kind);
    p = w_uint(p, m->retry.ref);
    p = w_uint(p, m->retry.first_failure_ms);
    p = w_uint(p, m->retry.next_attempt_ms);
    p = w_uint(p, m->wake_ms);
    p = w_uint(p, m->created_at_ms);
    p = w_uint(p, m->updated_at_ms);
    p = w_u64(p, m->last_hash);
    p = w_uint(p, m->log_count);
    p = w_uint(p, m->log_tail_seq);
    size_t n = w_seal(out, p);
    LOOM_ASSERT(n <= loom__meta_size_max(m));
    return n;
}

static bool status_valid(uint32_t st, bool allow_none)
{
    return (allow_none && st == LOOM_STATUS_NONE) ||
           (st >= LOOM_STATUS_WORKING && st <= LOOM_STATUS_RETRYING);
}

int loom__meta_decode(const void *rec, size_t len, loom_machine *m)
{
    rd r;
    rd_init(&r, rec, len, META_ELEMS);
    memset(m, 0, sizeof *m);
    m->ns.v = rd_u32(&r);
    m->id = rd_bin(&r);
    uint32_t st = rd_u32(&r), before = rd_u32(&r);
    m->last_event_id = rd_u64(&r);
    m->aux_state = rd_bin(&r);
    m->timer.deadline_ms = rd_u64(&r);
    m->timer.range.after = rd_u64(&r);
    m->timer.range.limit = rd_u32(&r);
    uint32_t tflags = rd_u32(&r);
    m->reason = rd_bin(&r);
    m->retry.attempt = rd_u32(&r);
    m->retry.step_kind = rd_u32(&r);
    m->retry.ref = rd_u64(&r);
    m->retry.first_failure_ms = rd_u64(&r);
    m->retry.next_attempt_ms = rd_u64(&r);
    m->wake_ms = rd_u64(&r);
    m->created_at_ms = rd_u64(&r);
    m->updated_at_ms = rd_u64(&r);
    m->last_hash = rd_u64(&r);
    m->log_count = rd_u32(&r);
    m->log_tail_seq = rd_u64(&r);
    if (!r.bad && (!status_valid(st, false) || !status_valid(before, true) || tflags > 3))
        r.bad = "status or timer flags out of range";
    if (!r.bad && (m->log_count > m->last_event_id || m->log_count >= LOOM__LOG_COMPACT ||
                   (m->log_count == 0) != (m->log_tail_seq == 0)))
        r.bad = "event log bookkeeping out of range";
    m->status = (loom_status)st;
    m->status_before_failure = (loom_status)before;
    m->timer.range.direction = (tflags & TIMER_BACKWARD) ? LOOM_DIRECTION_BACKWARD
                                                         : LOOM_DIRECTION_FORWARD;
    m->timer.range.has_after = (tflags & TIMER_HAS_AFTER) != 0;
    return rd_finish(&r, "machine");
}

/* ---- namespaces: [ver, ns id, config, crc] */

size_t loom__ns_size(size_t config_len)
{
    return 1 + 1 + 5 + 5 + config_len + CRC_TAIL;
}

size_t loom__ns_encode(uint8_t *out, loom_ns_id id, loom_slice config)
{
    uint8_t *p = w_array(out, 4);
    *p++ = LOOM__RECORD_VERSION;
    p = w_u32(p, id.v);
    p = w_bin(p, config);
    size_t n = w_seal(out, p);
    LOOM_ASSERT(n == loom__ns_size(config.len));
    return n;
}

int loom__ns_decode(const void *rec, size_t len, loom_ns_id *id, loom_slice *config)
{
    rd r;
    rd_init(&r, rec, len, 4);
    id->v = rd_u32(&r);
    *config = rd_bin(&r);
    if (!r.bad && id->v == 0)
        r.bad = "namespace id 0";
    return rd_finish(&r, "namespace");
}

/* ---- notifications: [ver, machine key, created_at, args, crc] */

size_t loom__notification_size(size_t args_len)
{
    return 1 + 1 + 9 + 9 + 5 + args_len + CRC_TAIL;
}

size_t loom__notification_encode(uint8_t *out, const loom_notification *nt)
{
    uint8_t *p = w_array(out, 5);
    *p++ = LOOM__RECORD_VERSION;
    p = w_u64(p, nt->key.v);
    p = w_u64(p, nt->created_at_ms);
    p = w_bin(p, nt->args);
    size_t n = w_seal(out, p);
    LOOM_ASSERT(n == loom__notification_size(nt->args.len));
    return n;
}

int loom__notification_decode(const void *rec, size_t len, loom_notification *nt)
{
    rd r;
    rd_init(&r, rec, len, 5);
    nt->key.v = rd_u64(&r);
    nt->created_at_ms = rd_u64(&r);
    nt->args = rd_bin(&r);
    return rd_finish(&r, "notification");
}

/* ---- outcomes: [ver, stored_at, outcome, crc] */

size_t loom__outcome_size(size_t outcome_len)
{
    return 1 + 1 + 9 + 5 + outcome_len + CRC_TAIL;
}

size_t loom__outcome_encode(uint8_t *out, uint64_t stored_at_ms, loom_slice outcome)
{
    uint8_t *p = w_array(out, 4);
    *p++ = LOOM__RECORD_VERSION;
    p = w_u64(p, stored_at_ms);
    p = w_bin(p, outcome);
    size_t n = w_seal(out, p);
    LOOM_ASSERT(n == loom__outcome_size(outcome.len));
    return n;
}

int loom__outcome_decode(const void *rec, size_t len, uint64_t *stored_at_ms, loom_slice *outcome)
{
    rd r;
    rd_init(&r, rec, len, 4);
    *stored_at_ms = rd_u64(&r);
    *outcome = rd_bin(&r);
    return rd_finish(&r, "outcome");
}
