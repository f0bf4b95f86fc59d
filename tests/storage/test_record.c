#include <criterion/criterion.h>
#include <msgpack.h>

#include "../../storage/src/internal.h"

static msgpack_object_type unpack_types(const uint8_t *buf, size_t len, msgpack_object *out,
                                        msgpack_unpacked *u)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, (const char *)buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, len, "one msgpack value spans the whole record");
    *out = u->data;
    return u->data.type;
}

Test(record, event_round_trip_and_msgpack_compatible)
{
    uint8_t buf[256];
    loom_new_event ev = {7, loom_slice_str("payload")};
    uint64_t h = loom__event_encode(buf, 42, &ev, 123456, 99);
    size_t n = loom__event_size(7);
    loom_event out;
    uint64_t h2;
    uint64_t prev = 99;
    cr_assert_eq(loom__event_decode(buf, n, &prev, &out, &h2), 0);
    cr_assert_eq(h2, h);
    cr_assert_eq(out.id, 42);
    cr_assert_eq(out.created_at_ms, 123456);
    cr_assert_eq(out.format_version, 7);
    cr_assert_eq(out.data.len, 7);
    cr_assert_arr_eq(out.data.ptr, "payload", 7);

    msgpack_object o;
    msgpack_unpacked u;
    cr_assert_eq(unpack_types(buf, n, &o, &u), MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(o.via.array.size, 7);
    cr_assert_eq(o.via.array.ptr[0].via.u64, LOOM__RECORD_VERSION);
    cr_assert_eq(o.via.array.ptr[1].via.u64, 42);
    cr_assert_eq(o.via.array.ptr[4].type, MSGPACK_OBJECT_BIN);
    cr_assert_eq(o.via.array.ptr[5].via.u64, h);
    msgpack_unpacked_destroy(&u);
}

Test(record, every_flipped_byte_is_detected)
{
    uint8_t buf[256];
    loom_new_event ev = {1, loom_slice_str("some event data of a machine")};
    size_t n = loom__event_size(ev.data.len);
    uint64_t prev = 5;
    loom__event_encode(buf, 3, &ev, 1, prev);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            loom_event out;
            uint64_t h;
            cr_assert_eq(loom__event_decode(buf, n, &prev, &out, &h), LOOM_ECORRUPTED,
                         "byte %zu bit %d", i, bit);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    loom_event out;
    uint64_t h;
    cr_assert_eq(loom__event_decode(buf, n - 1, &prev, &out, &h), LOOM_ECORRUPTED, "truncated");
    cr_assert_eq(loom__event_decode(buf, 3, &prev, &out, &h), LOOM_ECORRUPTED);
    uint64_t other = 6;
    cr_assert_eq(loom__event_decode(buf, n, &other, &out, &h), LOOM_ECORRUPTED, "wrong chain");
}

Test(record, meta_round_trip)
{
    loom_machine m;
    memset(&m, 0, sizeof m);
    m.ns.v = 3;
    m.id = loom_slice_str("machine-1");
    m.status = LOOM_STATUS_FAILED;
    m.status_before_failure = LOOM_STATUS_RETRYING;
    m.last_event_id = 77;
    m.aux_state = loom_slice_str("aux");
    m.timer = (loom_timer){900, {5, 6, LOOM_DIRECTION_BACKWARD, true}};
    m.reason = loom_slice_str("why");
    m.retry = (loom_retry){4, 2, 11, 100, 200};
    m.wake_ms = 200;
    m.created_at_ms = 1;
    m.updated_at_ms = 2;
    m.last_hash = 0xdeadbeef;
    uint8_t buf[512];
    size_t n = loom__meta_encode(buf, &m);
    loom_machine back;
    cr_assert_eq(loom__meta_decode(buf, n, &back), 0);
    back.key = m.key;
    cr_assert_eq(back.id.len, m.id.len);
    cr_assert_arr_eq(back.id.ptr, "machine-1", 9);
    cr_assert_arr_eq(back.aux_state.ptr, "aux", 3);
    cr_assert_arr_eq(back.reason.ptr, "why", 3);
    back.id = m.id;
    back.aux_state = m.aux_state;
    back.reason = m.reason;
    cr_assert_arr_eq(&back, &m, sizeof m, "every field survives");

    msgpack_object o;
    msgpack_unpacked u;
    cr_assert_eq(unpack_types(buf, n, &o, &u), MSGPACK_OBJECT_ARRAY);
    msgpack_unpacked_destroy(&u);
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x40;
        cr_assert_eq(loom__meta_decode(buf, n, &back), LOOM_ECORRUPTED, "byte %zu", i);
        buf[i] ^= 0x40;
    }
}

Test(record, small_records_round_trip)
{
    uint8_t buf[128];
    size_t n = loom__ns_encode(buf, (loom_ns_id){9}, loom_slice_str("cfg"));
    loom_ns_id id;
    loom_slice s;
    cr_assert_eq(loom__ns_decode(buf, n, &id, &s), 0);
    cr_assert_eq(id.v, 9);
    cr_assert_arr_eq(s.ptr, "cfg", 3);

    loom_notification nt = {5, {6}, 7, loom_slice_str("args")}, nb;
    n = loom__notification_encode(buf, &nt);
    cr_assert_eq(loom__notification_decode(buf, n, &nb), 0);
    cr_assert_eq(nb.key.v, 6);
    cr_assert_eq(nb.created_at_ms, 7);
    cr_assert_arr_eq(nb.args.ptr, "args", 4);

    uint64_t at;
    n = loom__outcome_encode(buf, 55, loom_slice_str("out"));
    cr_assert_eq(loom__outcome_decode(buf, n, &at, &s), 0);
    cr_assert_eq(at, 55);
    cr_assert_arr_eq(s.ptr, "out", 3);
    buf[n - 1] ^= 1;
    cr_assert_eq(loom__outcome_decode(buf, n, &at, &s), LOOM_ECORRUPTED);
    cr_assert_eq(loom__outcome_decode(buf, 2, &at, &s), LOOM_ECORRUPTED);
}

/* Decoders meet arbitrary bytes (a damaged page): they answer
 * LOOM_ECORRUPTED or 0, never read outside the buffer (ASan watches), and
 * what they accept lies within the input. */
Test(record, decoders_survive_random_and_truncated_input)
{
    uint64_t rng = 0x1234567;
    uint8_t buf[512];
    uint8_t valid[256];
    loom_new_event ev = {1, loom_slice_str("payload")};
    loom__event_encode(valid, 9, &ev, 5, 1);
    size_t valid_len = loom__event_size(7);
    for (int round = 0; round < 20000; round++) {
        size_t len;
        if (round % 2) {
            len = (size_t)(rng % sizeof buf);
            for (size_t i = 0; i < len; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (uint8_t)(rng >> 56);
            }
        } else { /* a valid record, cut short and with a byte changed */
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            len = (size_t)(rng >> 33) % (valid_len + 1);
            memcpy(buf, valid, len);
            if (len)
                buf[(rng >> 8) % len] ^= (uint8_t)(rng >> 16) | 1;
        }
        uint8_t *copy = malloc(len ? len : 1); /* exact size: overreads trap */
        memcpy(copy, buf, len);
        loom_event e;
        uint64_t h, prev = 1, at;
        int rc = loom__event_decode(copy, len, &prev, &e, &h);
        cr_assert(rc == 0 || rc == LOOM_ECORRUPTED);
        if (rc == 0)
            cr_assert((const uint8_t *)e.data.ptr + e.data.len <= copy + len);
        loom_machine m;
        rc = loom__meta_decode(copy, len, &m);
        cr_assert(rc == 0 || rc == LOOM_ECORRUPTED);
        loom_ns_id id;
        loom_slice sl;
        cr_assert_leq(loom__ns_decode(copy, len, &id, &sl), 0);
        loom_notification nt;
        cr_assert_leq(loom__notification_decode(copy, len, &nt), 0);
        cr_assert_leq(loom__outcome_decode(copy, len, &at, &sl), 0);
        free(copy);
    }
}
