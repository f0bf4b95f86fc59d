#include "loom/utf8.h"

#include <string.h>

size_t loom_utf8_sequence(const uint8_t *s, size_t left)
{
    uint8_t b = s[0];
    if (b < 0x80)
        return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

int loom_utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = loom_utf8_sequence((const uint8_t *)s + i, len - i);
        if (n == 0 || s[i] == 0)
            return 0;
        i += n;
    }
    return 1;
}

void loom_utf8_trim(char *s)
{
    size_t len = strlen(s);
    /* A cut can only split the last sequence: look back at most 3 bytes
     * for its lead byte and drop it if its sequence is incomplete. */
    size_t back = 0;
    while (back < 3 && back < len && ((uint8_t)s[len - 1 - back] & 0xc0) == 0x80)
        back++;
    if (back == len)
        return;
    size_t lead = len - 1 - back;
    if (loom_utf8_sequence((const uint8_t *)s + lead, len - lead) == 0 && (uint8_t)s[lead] >= 0xc0)
        s[lead] = '\0';
}
