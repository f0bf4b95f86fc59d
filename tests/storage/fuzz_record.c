/* libFuzzer target for the storage record decoders (clang, -DLOOM_FUZZ=ON):
 * whatever bytes a damaged page holds, a decoder answers 0 or
 * LOOM_ECORRUPTED and what it hands out lies inside its input.
 *   build/fuzz/bin/fuzz_record -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>

#include "../../storage/src/internal.h"

static void inside(const uint8_t *data, size_t size, loom_slice s)
{
    if (s.len && ((const uint8_t *)s.ptr < data || (const uint8_t *)s.ptr + s.len > data + size))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_event ev;
    uint64_t hash, prev = 0, at;
    if (loom__event_decode(data, size, &prev, &ev, &hash) == 0)
        inside(data, size, ev.data);
    loom_machine m;
    if (loom__meta_decode(data, size, &m) == 0) {
        inside(data, size, m.id);
        inside(data, size, m.aux_state);
        inside(data, size, m.reason);
    }
    loom_ns_id id;
    loom_slice s;
    if (loom__ns_decode(data, size, &id, &s) == 0)
        inside(data, size, s);
    loom_notification nt;
    if (loom__notification_decode(data, size, &nt) == 0)
        inside(data, size, nt.args);
    if (loom__outcome_decode(data, size, &at, &s) == 0)
        inside(data, size, s);
    return 0;
}
