/* libFuzzer target for the payload reader and the example processors'
 * snapshot decoders (aux_state comes back from storage, so it is input
 * like any other). Build with -DLOOM_FUZZ=ON (clang), run
 *   build/fuzz/bin/fuzz_payload -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "loom/payload.h"
#include "payment.h"

/* Touches every value so a decoder bug that hands out a bad pointer or
 * length shows under ASan. */
static size_t walk(const loom_mp_obj *o, int depth)
{
    size_t sum = 0;
    LOOM_ASSERT(depth <= LOOM_MP_MAX_DEPTH + 1);
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        for (uint32_t i = 0; i < o->via.str.size; i++)
            sum += (uint8_t)o->via.str.ptr[i];
        return sum;
    case MSGPACK_OBJECT_BIN:
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            sum += (uint8_t)o->via.bin.ptr[i];
        return sum;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            sum += walk(&o->via.array.ptr[i], depth + 1);
        return sum;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            sum +=
                walk(&o->via.map.ptr[i].key, depth + 1) + walk(&o->via.map.ptr[i].val, depth + 1);
        return sum;
    default:
        return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_mp_doc d;
    if (loom_mp_parse(&d, data, size) == 0) {
        volatile size_t sum = walk(d.root, 0);
        (void)sum;
        int64_t i;
        const char *s;
        size_t n;
        (void)loom_mp_get_int(d.root, "amount", &i);
        (void)loom_mp_get_str(d.root, "type", &s, &n);
        /* what validated must re-embed */
        loom_mp_writer w;
        loom_mp_writer_init(&w, 0);
        loom_mp_raw(&w, data, size);
        const uint8_t *out;
        size_t len;
        LOOM_ASSERT(loom_mp_writer_finish(&w, &out, &len) == 0);
        LOOM_ASSERT(len == size);
        loom_mp_writer_free(&w);
        loom_mp_doc_free(&d);
    }
    invoice inv;
    (void)invoice_read_snapshot(&inv, data, size);
    static batch b;
    (void)batch_read_snapshot(&b, data, size);
    return 0;
}
