/* Frame codec and envelope encode/decode (proto/src/frame.c). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "loom/wire.h"

#define MAX_FRAMES 4096

typedef struct collected {
    size_t count;
    size_t len[MAX_FRAMES];
    uint8_t *data[MAX_FRAMES];
    int stop_at; /* 1-based frame index whose callback returns 7; 0 = never */
} collected;

static int collect(void *ctx, const uint8_t *payload, size_t len)
{
    collected *c = ctx;
    cr_assert(payload != NULL);
    cr_assert(c->count < MAX_FRAMES);
    c->data[c->count] = malloc(len + 1);
    memcpy(c->data[c->count], payload, len);
    c->len[c->count] = len;
    c->count++;
    return (c->stop_at != 0 && (size_t)c->stop_at == c->count) ? 7 : 0;
}

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->data[i]);
    c->count = 0;
}

/* Appends one frame with payload bytes i*7+k (k = position) to buf. */
static size_t put_frame(uint8_t *buf, size_t at, size_t len, unsigned seed)
{
    buf[at] = (uint8_t)(len >> 24);
    buf[at + 1] = (uint8_t)(len >> 16);
    buf[at + 2] = (uint8_t)(len >> 8);
    buf[at + 3] = (uint8_t)len;
    for (size_t k = 0; k < len; k++)
        buf[at + 4 + k] = (uint8_t)(seed * 7 + k);
    return at + 4 + len;
}

static void check_frame(const collected *c, size_t i, size_t len, unsigned seed)
{
    cr_assert_eq(c->len[i], len, "frame %zu: length %zu, expected %zu", i, c->len[i], len);
    for (size_t k = 0; k < len; k++)
        cr_assert_eq(c->data[i][k], (uint8_t)(seed * 7 + k), "frame %zu byte %zu", i, k);
}

static const size_t three_sizes[] = {0, 5, 300};

static size_t build_three(uint8_t *buf)
{
    size_t at = 0;
    for (unsigned i = 0; i < 3; i++)
        at = put_frame(buf, at, three_sizes[i], i);
    return at;
}

static void check_three(const collected *c)
{
    cr_assert_eq(c->count, 3);
    for (unsigned i = 0; i < 3; i++)
        check_frame(c, i, three_sizes[i], i);
}

Test(frame, whole_stream_in_one_feed)
{
    uint8_t buf[512];
    size_t n = build_three(buf);
    loom_frame_reader r;
    loom_frame_reader_init(&r, 0);
    cr_assert_eq(r.max_frame, LOOM_FRAME_MAX_DEFAULT);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, buf, n, collect, &c), 0);
    check_three(&c);
    collected_free(&c);
    loom_frame_reader_free(&r);
}

Test(frame, split_at_every_byte_position)
{
    uint8_t buf[512];
    size_t n = build_three(buf);
    for (size_t split = 0; split <= n; split++) {
        loom_frame_reader r;
        loom_frame_reader_init(&r, 1024);
        collected c = {0};
        cr_assert_eq(loom_frame_reader_feed(&r, buf, split, collect, &c), 0);
        cr_assert_eq(loom_frame_reader_feed(&r, buf + split, n - split, collect, &c), 0);
        check_three(&c);
        collected_free(&c);
        loom_frame_reader_free(&r);
    }
}

Test(frame, one_byte_at_a_time)
{
    uint8_t buf[512];
    size_t n = build_three(buf);
    loom_frame_reader r;
    loom_frame_reader_init(&r, 1024);
    collected c = {0};
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(loom_frame_reader_feed(&r, buf + i, 1, collect, &c), 0);
    check_three(&c);
    cr_assert_eq(r.header_len, 0, "reader rests at a frame boundary");
    collected_free(&c);
    loom_frame_reader_free(&r);
}

Test(frame, every_pair_of_split_points)
{
    uint8_t buf[64];
    size_t at = put_frame(buf, 0, 3, 1);
    at = put_frame(buf, at, 0, 2);
    at = put_frame(buf, at, 9, 3);
    for (size_t a = 0; a <= at; a++) {
        for (size_t b = a; b <= at; b++) {
            loom_frame_reader r;
            loom_frame_reader_init(&r, 64);
            collected c = {0};
            cr_assert_eq(loom_frame_reader_feed(&r, buf, a, collect, &c), 0);
            cr_assert_eq(loom_frame_reader_feed(&r, buf + a, b - a, collect, &c), 0);
            cr_assert_eq(loom_frame_reader_feed(&r, buf + b, at - b, collect, &c), 0);
            cr_assert_eq(c.count, 3, "splits %zu/%zu", a, b);
            check_frame(&c, 0, 3, 1);
            check_frame(&c, 1, 0, 2);
            check_frame(&c, 2, 9, 3);
            collected_free(&c);
            loom_frame_reader_free(&r);
        }
    }
}

Test(frame, many_frames_per_feed)
{
    enum { N = 3000 };
    size_t total = 0;
    for (unsigned i = 0; i < N; i++)
        total += 4 + i % 17;
    uint8_t *buf = malloc(total);
    size_t at = 0;
    for (unsigned i = 0; i < N; i++)
        at = put_frame(buf, at, i % 17, i);
    cr_assert_eq(at, total);
    loom_frame_reader r;
    loom_frame_reader_init(&r, 64);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, buf, total, collect, &c), 0);
    cr_assert_eq(c.count, N);
    for (unsigned i = 0; i < N; i++)
        check_frame(&c, i, i % 17, i);
    cr_assert_null(r.buf, "frames whole in the input are not copied");
    collected_free(&c);
    loom_frame_reader_free(&r);
    free(buf);
}

Test(frame, zero_length_frames)
{
    uint8_t buf[4 * 10] = {0};
    loom_frame_reader r;
    loom_frame_reader_init(&r, 16);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, buf, sizeof buf, collect, &c), 0);
    cr_assert_eq(c.count, 10);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(c.len[i], 0);
    collected_free(&c);
    loom_frame_reader_free(&r);
}

Test(frame, empty_feed_is_harmless)
{
    loom_frame_reader r;
    loom_frame_reader_init(&r, 16);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, NULL, 0, collect, &c), 0);
    cr_assert_eq(c.count, 0);
    loom_frame_reader_free(&r);
}

Test(frame, oversize_rejected_before_allocation)
{
    /* A 4 GiB - 1 length against the default 16 MiB limit. */
    const uint8_t header[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    loom_frame_reader r;
    loom_frame_reader_init(&r, 0);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, header, sizeof header, collect, &c),
                 LOOM_EFRAME_TOO_LARGE);
    cr_assert_null(r.buf);
    cr_assert_eq(r.cap, 0);
    cr_assert_eq(c.count, 0);
    cr_assert(strstr(loom_errdetail(), "4294967295") != NULL, "detail: %s", loom_errdetail());
    /* The stream is out of sync now: the reader refuses to go on. */
    const uint8_t zero[4] = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, zero, 4, collect, &c), LOOM_EFRAME_TOO_LARGE);
    cr_assert_eq(c.count, 0);
    loom_frame_reader_free(&r);
}

Test(frame, one_byte_over_the_limit)
{
    uint8_t buf[4 + 101];
    loom_frame_reader r;
    loom_frame_reader_init(&r, 100);
    collected c = {0};
    put_frame(buf, 0, 100, 0);
    cr_assert_eq(loom_frame_reader_feed(&r, buf, 104, collect, &c), 0);
    cr_assert_eq(c.count, 1, "exactly the limit is allowed");
    put_frame(buf, 0, 101, 0);
    cr_assert_eq(loom_frame_reader_feed(&r, buf, 2, collect, &c), 0);
    cr_assert_eq(loom_frame_reader_feed(&r, buf + 2, 2, collect, &c), LOOM_EFRAME_TOO_LARGE);
    collected_free(&c);
    loom_frame_reader_free(&r);
}

Test(frame, announced_length_alone_allocates_nothing_big)
{
    /* Even under a huge limit, memory follows the bytes that arrive, not
     * the length a peer announces. */
    const uint8_t data[] = {0x3f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    loom_frame_reader r;
    loom_frame_reader_init(&r, UINT32_MAX);
    collected c = {0};
    cr_assert_eq(loom_frame_reader_feed(&r, data, sizeof data, collect, &c), 0);
    cr_assert_eq(r.need, 0x3fffffffu);
    cr_assert_eq(r.have, 10);
    cr_assert_leq(r.cap, 4096, "allocated %zu bytes for 10 received", r.cap);
    loom_frame_reader_free(&r);
}

Test(frame, big_frame_in_small_pieces)
{
    const size_t len = 1u << 20;
    uint8_t *buf = malloc(len + 4);
    put_frame(buf, 0, len, 5);
    loom_frame_reader r;
    loom_frame_reader_init(&r, len);
    collected c = {0};
    for (size_t at = 0; at < len + 4; at += 997) {
        size_t n = len + 4 - at < 997 ? len + 4 - at : 997;
        cr_assert_eq(loom_frame_reader_feed(&r, buf + at, n, collect, &c), 0);
    }
    cr_assert_eq(c.count, 1);
    check_frame(&c, 0, len, 5);
    cr_assert_null(r.buf, "a big finished buffer is not kept");
    collected_free(&c);
    loom_frame_reader_free(&r);
    free(buf);
}

Test(frame, callback_stops_the_feed)
{
    uint8_t buf[512];
    size_t n = build_three(buf);
    loom_frame_reader r;
    loom_frame_reader_init(&r, 1024);
    collected c = {.stop_at = 2};
    cr_assert_eq(loom_frame_reader_feed(&r, buf, n, collect, &c), 7);
    cr_assert_eq(c.count, 2);
    collected_free(&c);
    loom_frame_reader_free(&r);
}

Test(frame, garbage_bytes_never_crash)
{
    uint8_t buf[4096];
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (uint8_t)(seed >> 16);
        }
        /* Small lengths keep some rounds in frame sync. */
        if (round % 2 == 0)
            buf[0] = buf[1] = buf[2] = 0;
        loom_frame_reader r;
        loom_frame_reader_init(&r, 1024);
        collected c = {0};
        int rc = loom_frame_reader_feed(&r, buf, sizeof buf, collect, &c);
        cr_assert(rc == 0 || rc == LOOM_EFRAME_TOO_LARGE, "rc %d", rc);
        for (size_t i = 0; i < c.count; i++) {
            loom_envelope *env = NULL;
            rc = loom_envelope_decode(c.data[i], c.len[i], &env);
            cr_assert(rc == 0 || rc == LOOM_EPROTOCOL || rc == LOOM_ERESOURCE_EXHAUSTED, "rc %d",
                      rc);
            cr_assert((rc == 0) == (env != NULL));
            loom_envelope_free(env);
        }
        collected_free(&c);
        loom_frame_reader_free(&r);
    }
}

/* ------------------------------------------------------------ envelopes */

/* Encodes env, checks the header, decodes the payload back. */
/* Encodes env, checks the length prefix and decodes it back. The frame is
 * freed at once: the decoded envelope owns all its memory (its arena), so a
 * copy that still pointed into the frame would show up as use-after-free. */
static loom_envelope *round_trip(const loom_envelope *env)
{
    uint8_t *frame;
    size_t frame_len;
    cr_assert_eq(loom_envelope_encode(env, 0, &frame, &frame_len), 0, "%s", loom_errdetail());
    size_t payload =
        ((size_t)frame[0] << 24) | ((size_t)frame[1] << 16) | ((size_t)frame[2] << 8) | frame[3];
    cr_assert_eq(payload + 4, frame_len);
    loom_envelope *back = NULL;
    cr_assert_eq(loom_envelope_decode(frame + 4, payload, &back), 0, "%s", loom_errdetail());
    free(frame);
    return back;
}

/* The decoded copy encodes to the very same bytes (protobuf-c writes fields
 * in number order), which compares every field at once. */
static void assert_same_encoding(const loom_envelope *a, const loom_envelope *b)
{
    uint8_t *fa, *fb;
    size_t la, lb;
    cr_assert_eq(loom_envelope_encode(a, 0, &fa, &la), 0);
    cr_assert_eq(loom_envelope_encode(b, 0, &fb, &lb), 0);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(fa, fb, la), 0);
    free(fa);
    free(fb);
}

/* A ProcessReply body whose result carries events. */
typedef struct process_reply_body {
    Loom__V1__ProcessResult res;
    Loom__V1__ProcessReply rep;
} process_reply_body;

static void set_process_reply(loom_envelope *env, process_reply_body *b, Loom__V1__NewEvent **evs,
                              size_t n)
{
    loom__v1__process_result__init(&b->res);
    b->res.n_events = n;
    b->res.events = evs;
    loom__v1__process_reply__init(&b->rep);
    b->rep.outcome_case = LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT;
    b->rep.result = &b->res;
    env->body_case = LOOM__V1__ENVELOPE__BODY_PROCESS_REPLY;
    env->process_reply = &b->rep;
}

Test(envelope, round_trip_of_every_body_type)
{
    const ProtobufCMessageDescriptor *d = &loom__v1__envelope__descriptor;
    unsigned bodies = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        cr_assert_eq(f->type, PROTOBUF_C_TYPE_MESSAGE);
        const ProtobufCMessageDescriptor *bd = f->descriptor;
        ProtobufCMessage *body = calloc(1, bd->sizeof_message);
        bd->message_init(body);
        loom_envelope env = LOOM__V1__ENVELOPE__INIT;
        env.correlation_id = 1000 + f->id;
        env.body_case = (Loom__V1__Envelope__BodyCase)f->id;
        *(ProtobufCMessage **)((char *)&env + f->offset) = body;
        loom_envelope *back = round_trip(&env);
        cr_assert_eq(back->correlation_id, 1000 + f->id);
        cr_assert_eq((unsigned)back->body_case, f->id, "%s", f->name);
        cr_assert_str_eq(loom_envelope_body_name(back), f->name);
        assert_same_encoding(&env, back);
        loom_envelope_free(back);
        free(body);
        bodies++;
    }
    cr_assert_eq(bodies, 25, "every body in loom.proto is covered (%u)", bodies);
}

Test(envelope, call_request_fields_survive)
{
    uint8_t args[300];
    for (size_t i = 0; i < sizeof args; i++)
        args[i] = (uint8_t)i;
    Loom__V1__HistoryRange range = LOOM__V1__HISTORY_RANGE__INIT;
    range.after = 41;
    range.has_after = 1;
    range.limit = 10;
    range.direction = LOOM__V1__DIRECTION__DIRECTION_BACKWARD;
    Loom__V1__CallRequest call = LOOM__V1__CALL_REQUEST__INIT;
    call.ns = "invoice";
    call.id = "inv-\xc3\xa9-1";
    call.args.data = args;
    call.args.len = sizeof args;
    call.range = &range;
    call.request_id = "req-7";
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = UINT64_MAX;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    env.call = &call;
    loom_envelope *back = round_trip(&env);
    cr_assert_eq(back->correlation_id, UINT64_MAX);
    cr_assert_str_eq(back->call->ns, "invoice");
    cr_assert_str_eq(back->call->id, "inv-\xc3\xa9-1");
    cr_assert_eq(back->call->args.len, sizeof args);
    cr_assert_eq(memcmp(back->call->args.data, args, sizeof args), 0);
    cr_assert_eq(back->call->range->after, 41);
    cr_assert(back->call->range->has_after);
    cr_assert_eq(back->call->range->direction, LOOM__V1__DIRECTION__DIRECTION_BACKWARD);
    cr_assert_str_eq(back->call->request_id, "req-7");
    loom_envelope_free(back);
}

Test(envelope, process_request_and_reply_survive)
{
    Loom__V1__Event ev[3];
    Loom__V1__Event *evp[3];
    for (int i = 0; i < 3; i++) {
        loom__v1__event__init(&ev[i]);
        ev[i].id = (uint64_t)i + 1;
        ev[i].created_at_ms = 1700000000000 + i;
        ev[i].format_version = 2;
        ev[i].data.data = (uint8_t *)"\x81\xa1k\x01";
        ev[i].data.len = 4;
        evp[i] = &ev[i];
    }
    Loom__V1__Machine m = LOOM__V1__MACHINE__INIT;
    m.ns = "batch";
    m.id = "b1";
    m.status = LOOM__V1__MACHINE_STATUS__STATUS_RETRYING;
    m.last_event_id = 3;
    m.n_history = 3;
    m.history = evp;
    m.aux_state.data = (uint8_t *)"snap";
    m.aux_state.len = 4;
    m.timer_deadline_ms = -5;
    Loom__V1__ProcessRequest pr = LOOM__V1__PROCESS_REQUEST__INIT;
    pr.kind = LOOM__V1__PROCESS_KIND__PROCESS_TIMEOUT;
    pr.machine = &m;
    pr.attempt = 4;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 9;
    env.body_case = LOOM__V1__ENVELOPE__BODY_PROCESS;
    env.process = &pr;
    loom_envelope *back = round_trip(&env);
    cr_assert_eq(back->process->machine->n_history, 3);
    cr_assert_eq(back->process->machine->history[2]->id, 3);
    cr_assert_eq(back->process->machine->timer_deadline_ms, -5);
    assert_same_encoding(&env, back);
    loom_envelope_free(back);

    Loom__V1__SetTimer st = LOOM__V1__SET_TIMER__INIT;
    st.when_case = LOOM__V1__SET_TIMER__WHEN_DEADLINE_MS;
    st.deadline_ms = 1800000000000;
    Loom__V1__Action act = LOOM__V1__ACTION__INIT;
    act.timer_case = LOOM__V1__ACTION__TIMER_SET_TIMER;
    act.set_timer = &st;
    Loom__V1__NewEvent ne = LOOM__V1__NEW_EVENT__INIT;
    Loom__V1__NewEvent *nep = &ne;
    ne.format_version = 1;
    process_reply_body body;
    set_process_reply(&env, &body, &nep, 1);
    body.res.set_aux_state = 1;
    body.res.action = &act;
    back = round_trip(&env);
    cr_assert_eq(back->process_reply->outcome_case, LOOM__V1__PROCESS_REPLY__OUTCOME_RESULT);
    cr_assert_eq(back->process_reply->result->action->timer_case,
                 LOOM__V1__ACTION__TIMER_SET_TIMER);
    cr_assert_eq(back->process_reply->result->action->set_timer->deadline_ms, 1800000000000);
    cr_assert(back->process_reply->result->set_aux_state);
    assert_same_encoding(&env, back);
    loom_envelope_free(back);
}

Test(envelope, error_reply_survives)
{
    Loom__V1__Error e = LOOM__V1__ERROR__INIT;
    e.code = loom_err_wire(LOOM_EMACHINE_NOT_FOUND);
    e.message = "machine invoice/x not found";
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 3;
    env.body_case = LOOM__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    loom_envelope *back = round_trip(&env);
    cr_assert_eq(back->error->code, 2);
    cr_assert_str_eq(back->error->message, "machine invoice/x not found");
    loom_envelope_free(back);
}

/* A refused encode hands back no frame. */
static void assert_encode_refused(const loom_envelope *env, size_t max_frame, int want)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    cr_assert_eq(loom_envelope_encode(env, max_frame, &frame, &len), want);
    cr_assert_null(frame);
}

Test(envelope, encode_without_body_is_refused)
{
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 5;
    assert_encode_refused(&env, 0, LOOM_EINVALID_ARGUMENT);
    /* A body case with a NULL message is no body either. */
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    assert_encode_refused(&env, 0, LOOM_EINVALID_ARGUMENT);
}

Test(envelope, encode_with_null_behind_a_count_is_refused)
{
    Loom__V1__ListMachinesReply r = LOOM__V1__LIST_MACHINES_REPLY__INIT;
    r.n_machines = 2;
    r.machines = NULL;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_LIST_MACHINES_REPLY;
    env.list_machines_reply = &r;
    assert_encode_refused(&env, 0, LOOM_EINVALID_ARGUMENT);
}

Test(envelope, encode_over_the_limit_is_refused)
{
    static uint8_t args[2000];
    Loom__V1__StartRequest s = LOOM__V1__START_REQUEST__INIT;
    s.args.data = args;
    s.args.len = sizeof args;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START;
    env.start = &s;
    assert_encode_refused(&env, 1000, LOOM_EFRAME_TOO_LARGE);
    uint8_t *frame;
    size_t len;
    cr_assert_eq(loom_envelope_encode(&env, 4000, &frame, &len), 0);
    free(frame);
}

Test(envelope, decode_without_body_is_protocol_error)
{
    const uint8_t only_id[] = {0x08, 0x05}; /* correlation_id = 5 */
    loom_envelope *env = (loom_envelope *)1;
    cr_assert_eq(loom_envelope_decode(only_id, sizeof only_id, &env), LOOM_EPROTOCOL);
    cr_assert_null(env);
    cr_assert_eq(loom_envelope_decode(NULL, 0, &env), LOOM_EPROTOCOL, "empty payload");
}

Test(envelope, decode_unknown_body_is_protocol_error)
{
    /* Field 99, length-delimited, empty: a body from a newer peer. */
    const uint8_t unknown[] = {0x08, 0x01, 0x9a, 0x06, 0x00};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(unknown, sizeof unknown, &env), LOOM_EPROTOCOL);
    cr_assert(strstr(loom_errdetail(), "no known body") != NULL, "%s", loom_errdetail());
}

Test(envelope, decode_truncated_and_garbage_is_protocol_error)
{
    Loom__V1__NotifyRequest n = LOOM__V1__NOTIFY_REQUEST__INIT;
    n.ns = "invoice";
    n.id = "abc";
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 77;
    env.body_case = LOOM__V1__ENVELOPE__BODY_NOTIFY;
    env.notify = &n;
    uint8_t *frame;
    size_t len;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, &len), 0);
    for (size_t cut = 0; cut < len - 4; cut++) {
        loom_envelope *back = NULL;
        int rc = loom_envelope_decode(frame + 4, cut, &back);
        cr_assert_eq(rc, LOOM_EPROTOCOL, "cut at %zu decoded", cut);
        cr_assert_null(back);
    }
    free(frame);
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    loom_envelope *back = NULL;
    cr_assert_eq(loom_envelope_decode(garbage, sizeof garbage, &back), LOOM_EPROTOCOL);
}

/* A ProcessReply of n empty events: 2 bytes each on the wire, ~56 bytes
 * each once decoded. */
static uint8_t *empty_events_frame(size_t n, size_t *len)
{
    Loom__V1__NewEvent ne = LOOM__V1__NEW_EVENT__INIT;
    Loom__V1__NewEvent **evs = malloc(n * sizeof *evs);
    for (size_t i = 0; i < n; i++)
        evs[i] = &ne;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    process_reply_body body;
    set_process_reply(&env, &body, evs, n);
    uint8_t *frame;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, len), 0, "%s", loom_errdetail());
    free(evs);
    return frame;
}

Test(envelope, decode_memory_is_capped)
{
    size_t len;
    uint8_t *frame = empty_events_frame(100000, &len);
    loom_envelope *env = (loom_envelope *)1;
    int rc = loom_envelope_decode_limited(frame + 4, len - 4, 1u << 20, &env);
    cr_assert_eq(rc, LOOM_ERESOURCE_EXHAUSTED, "%s", loom_err_name(rc));
    cr_assert_null(env);
    cr_assert(strstr(loom_errdetail(), "memory") != NULL, "%s", loom_errdetail());
    rc = loom_envelope_decode_limited(frame + 4, len - 4, 64u << 20, &env);
    cr_assert_eq(rc, 0, "%s", loom_errdetail());
    cr_assert_eq(env->process_reply->result->n_events, 100000);
    loom_envelope_free(env);
    free(frame);
}

Test(envelope, default_budget_stops_a_crafted_frame, .timeout = 60)
{
    /* 4 MB on the wire would take ~110 MB decoded: over 64 MiB + 4 * len. */
    size_t len;
    uint8_t *frame = empty_events_frame(2000000, &len);
    cr_assert_lt(len, LOOM_FRAME_MAX_DEFAULT, "a legal frame size");
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(frame + 4, len - 4, &env), LOOM_ERESOURCE_EXHAUSTED);
    cr_assert_null(env);
    cr_assert_eq(loom_envelope_decode_budget(1000), (64u << 20) + 4000);
    free(frame);
}

Test(envelope, unknown_fields_from_a_newer_peer_are_kept)
{
    /* CallRequest{ns: "x", field 99: varint 1}: a field this version does
     * not know survives decode and the next encode. */
    const uint8_t payload[] = {0x08, 0x08, 0x62, 0x06, 0x0a, 0x01, 0x78, 0x98, 0x06, 0x01};
    loom_envelope *env = NULL;
    cr_assert_eq(loom_envelope_decode(payload, sizeof payload, &env), 0, "%s", loom_errdetail());
    cr_assert_eq(env->call->base.n_unknown_fields, 1);
    uint8_t *frame;
    size_t len;
    cr_assert_eq(loom_envelope_encode(env, 0, &frame, &len), 0);
    cr_assert_eq(len - 4, sizeof payload);
    cr_assert_eq(memcmp(frame + 4, payload, sizeof payload), 0);
    free(frame);
    loom_envelope_free(env);
}

/* Decoded envelopes live in an allocation arena: one that needs many
 * chunks (thousands of small items and items larger than a chunk) must
 * come back whole, and free without a leak (the sanitizer build checks). */
Test(envelope, decode_spanning_many_arena_chunks_round_trips)
{
    enum { N = 5000, BIG = 3 * 1024 * 1024 };
    Loom__V1__NewEvent *evs = calloc(N, sizeof *evs);
    Loom__V1__NewEvent **evp = calloc(N, sizeof *evp);
    uint8_t *big = malloc(BIG);
    cr_assert(evs && evp && big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i * 7u);
    for (size_t i = 0; i < N; i++) {
        loom__v1__new_event__init(&evs[i]);
        evs[i].format_version = (uint32_t)i;
        evs[i].data.data = i % 1000 == 999 ? big : (uint8_t *)"abcdefghijklmnopqrstuvwxyz";
        evs[i].data.len = i % 1000 == 999 ? BIG - i : 1 + i % 26;
        evp[i] = &evs[i];
    }
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 77;
    process_reply_body body;
    set_process_reply(&env, &body, evp, N);
    uint8_t *frame;
    size_t len;
    cr_assert_eq(loom_envelope_encode(&env, 0, &frame, &len), 0, "%s", loom_errdetail());
    loom_envelope *back;
    cr_assert_eq(loom_envelope_decode(frame + 4, len - 4, &back), 0, "%s", loom_errdetail());
    cr_assert_eq(back->process_reply->result->n_events, N);
    for (size_t i = 0; i < N; i++) {
        const Loom__V1__NewEvent *e = back->process_reply->result->events[i];
        cr_assert_eq(e->format_version, i);
        cr_assert_eq(e->data.len, evs[i].data.len, "event %zu", i);
        cr_assert_eq(memcmp(e->data.data, evs[i].data.data, e->data.len), 0, "event %zu", i);
        cr_assert_eq((uintptr_t)e % sizeof(void *), 0, "event %zu is misaligned", i);
    }
    assert_same_encoding(&env, back);
    loom_envelope_free(back);
    loom_envelope_free(NULL);
    free(frame);
    free(big);
    free(evp);
    free(evs);
}

/* loom_envelope_set_body points the oneof at a body of the right type. */
Test(frame, set_body_fills_the_oneof)
{
    Loom__V1__CallReply rep;
    loom__v1__call_reply__init(&rep);
    rep.last_event_id = 42;
    loom_envelope env;
    loom__v1__envelope__init(&env);
    env.correlation_id = 9;
    loom_envelope_set_body(&env, LOOM__V1__ENVELOPE__BODY_CALL_REPLY, &rep.base);
    cr_assert_eq(env.body_case, LOOM__V1__ENVELOPE__BODY_CALL_REPLY);
    cr_assert_eq(env.call_reply, &rep);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(loom_envelope_encode(&env, LOOM_FRAME_MAX_DEFAULT, &buf, &len), 0);
    loom_envelope *back;
    cr_assert_eq(loom_envelope_decode(buf + LOOM_FRAME_HEADER_SIZE, len - LOOM_FRAME_HEADER_SIZE,
                                      &back),
                 0);
    cr_assert_eq(back->call_reply->last_event_id, 42);
    loom_envelope_free(back);
    free(buf);
}

/* A body of another type than the case carries is our bug: abort. */
Test(frame, set_body_with_the_wrong_type_aborts, .signal = SIGABRT)
{
    Loom__V1__StartReply rep;
    loom__v1__start_reply__init(&rep);
    loom_envelope env;
    loom__v1__envelope__init(&env);
    loom_envelope_set_body(&env, LOOM__V1__ENVELOPE__BODY_CALL_REPLY, &rep.base);
}
