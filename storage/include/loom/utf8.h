/* UTF-8 checks shared by every component: strings that reach the wire
 * must be UTF-8 without NUL bytes, and texts cut to fit a buffer must not
 * end inside a character. */
#ifndef LOOM_UTF8_H
#define LOOM_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "loom/common.h"

/* Length of the well-formed UTF-8 sequence at s (1-4), or 0 when the
 * bytes there are not one (overlong, surrogate, beyond U+10FFFF, cut). */
LOOM_EXPORT size_t loom_utf8_sequence(const uint8_t *s, size_t left);
/* 1 when s[0..len) is UTF-8 without NUL bytes, else 0. */
LOOM_EXPORT int loom_utf8_valid(const char *s, size_t len);
/* Drops an incomplete UTF-8 sequence at the end of s, as left by
 * snprintf truncating a longer text; call it before sending such a text. */
LOOM_EXPORT void loom_utf8_trim(char *s);

#endif
