/* loomctl internals: JSON to msgpack, msgpack to JSON text, small output
 * buffers. Kept in a library of its own so tests and fuzzers can drive
 * the converters without the command line. */
#ifndef LOOMCTL_CTL_H
#define LOOMCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "loom/error.h"

/* Nesting limit of both converters: deeper input is refused, so neither
 * recursion depth nor work depends on what a peer or a user sends. */
#define LOOMCTL_MAX_DEPTH 64

/* A growable byte buffer with a hard cap. Errors are sticky. */
typedef struct ctl_buf {
    uint8_t *data;
    size_t len, cap, max;
    int err; /* 0, LOOM_ENOMEM or LOOM_ERESOURCE_EXHAUSTED */
} ctl_buf;

void ctl_buf_init(ctl_buf *b, size_t max);
void ctl_buf_free(ctl_buf *b);
void ctl_buf_put(ctl_buf *b, const void *data, size_t len);

/* Converts one JSON value (RFC 8259; surrounding whitespace allowed) to
 * one msgpack object. Integers become msgpack ints (uint for >= 0), other
 * numbers float64, strings str, objects maps (keys in input order).
 * Output over max_bytes is refused. On success *out (malloc'd, caller
 * frees) holds the bytes. On failure returns LOOM_EINVALID_ARGUMENT (or
 * LOOM_ENOMEM / LOOM_ERESOURCE_EXHAUSTED) with "offset N: reason" in err. */
int ctl_json_to_msgpack(const char *text, size_t len, size_t max_bytes, uint8_t **out,
                        size_t *out_len, char *err, size_t err_len);

/* Writes one msgpack object as JSON text: bin as {"$bin":"HEX"}, ext as
 * {"$ext":TYPE,"hex":"HEX"}, non-string map keys as their JSON text in a
 * string, invalid UTF-8 bytes as \u00XX, non-finite floats as strings.
 * Bytes that are not exactly one well-formed msgpack object are written
 * as {"$raw":"HEX"}; empty input as null. */
void ctl_render_msgpack(FILE *f, const uint8_t *data, size_t len);
/* True when data is exactly one well-formed msgpack object. */
bool ctl_msgpack_valid(const uint8_t *data, size_t len);
/* Writes s as a JSON string literal (same escaping rules). */
void ctl_render_string(FILE *f, const char *s, size_t len);
/* Decodes hex text (even length, [0-9a-fA-F]) into a malloc'd buffer. */
int ctl_hex_decode(const char *hex, uint8_t **out, size_t *out_len);

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
size_t ctl_utf8_seq(const uint8_t *p, const uint8_t *end);

#endif
