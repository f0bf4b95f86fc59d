/* libFuzzer target: JSON text to msgpack, and the rendering of both the
 * result and the raw input as msgpack. Neither may crash, leak or run past
 * its limits on any input, and whatever converts must be exactly one
 * well-formed msgpack object. */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void render_check(const uint8_t *mp, size_t len)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (f == NULL)
        return;
    ctl_render_msgpack(f, mp, len);
    fclose(f);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *mp = NULL;
    size_t mp_len = 0;
    char err[128];
    render_check(data, size);
    if (ctl_json_to_msgpack((const char *)data, size, 1u << 20, &mp, &mp_len, err, sizeof err) ==
        0) {
        if (!ctl_msgpack_valid(mp, mp_len))
            abort();
        render_check(mp, mp_len);
    }
    free(mp);
    return 0;
}
