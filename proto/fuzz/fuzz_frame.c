/* libFuzzer target for the frame reader and the Envelope decoder.
 *
 * Input: two bytes seeding the split points, then the byte stream a peer
 * would send. The stream is fed once whole and once in pseudo-random
 * pieces; both must yield the same frames and the same outcome, because a
 * socket may cut the stream anywhere. Every frame is decoded as an
 * Envelope; one that decodes must survive an encode/decode round trip with
 * a stable encoding. Any disagreement aborts, which the fuzzer reports. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loom/wire.h"

/* Small enough that the fuzzer also walks the oversize path often. */
#define FUZZ_MAX_FRAME (64u * 1024u)

typedef struct digest {
    uint64_t hash;
    size_t frames;
} digest;

static void mix(digest *d, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        d->hash ^= p[i];
        d->hash *= 0x100000001b3ull;
    }
}

static void check_round_trip(const loom_envelope *env)
{
    uint8_t *a, *b;
    size_t la, lb;
    if (loom_envelope_encode(env, UINT32_MAX, &a, &la) != 0)
        abort(); /* anything decoded must encode again */
    loom_envelope *again = NULL;
    if (loom_envelope_decode(a + LOOM_FRAME_HEADER_SIZE, la - LOOM_FRAME_HEADER_SIZE, &again) != 0)
        abort();
    if (again->correlation_id != env->correlation_id || again->body_case != env->body_case)
        abort();
    if (loom_envelope_encode(again, UINT32_MAX, &b, &lb) != 0)
        abort();
    if (la != lb || memcmp(a, b, la) != 0)
        abort();
    free(a);
    free(b);
    loom_envelope_free(again);
}

static int on_frame(void *ctx, const uint8_t *payload, size_t len)
{
    digest *d = ctx;
    uint8_t lenbuf[8];
    memcpy(lenbuf, &len, sizeof len < 8 ? sizeof len : 8);
    mix(d, lenbuf, sizeof lenbuf);
    mix(d, payload, len);
    d->frames++;
    loom_envelope *env = NULL;
    int rc = loom_envelope_decode(payload, len, &env);
    if (rc == 0) {
        check_round_trip(env);
        loom_envelope_free(env);
    } else if ((rc != LOOM_EPROTOCOL && rc != LOOM_ERESOURCE_EXHAUSTED) || env != NULL) {
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;

    loom_frame_reader whole;
    digest dw = {0xcbf29ce484222325ull, 0};
    loom_frame_reader_init(&whole, FUZZ_MAX_FRAME);
    int rc_whole = loom_frame_reader_feed(&whole, data, size, on_frame, &dw);
    loom_frame_reader_free(&whole);

    loom_frame_reader pieces;
    digest dp = {0xcbf29ce484222325ull, 0};
    loom_frame_reader_init(&pieces, FUZZ_MAX_FRAME);
    int rc_pieces = 0;
    for (size_t at = 0; at < size && rc_pieces == 0;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 64;
        if (n > size - at)
            n = size - at;
        rc_pieces = loom_frame_reader_feed(&pieces, data + at, n, on_frame, &dp);
        at += n;
    }
    loom_frame_reader_free(&pieces);

    if (rc_whole != rc_pieces || dw.frames != dp.frames || dw.hash != dp.hash)
        abort();
    if (rc_whole != 0 && rc_whole != LOOM_EFRAME_TOO_LARGE)
        abort();
    return 0;
}
