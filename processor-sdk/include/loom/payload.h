/* Loom payload helpers: build and read msgpack payloads (event data,
 * args, responses, aux_state) the way processors usually shape them —
 * maps with string keys holding ints, strings, bins, bools, arrays and
 * nested maps.
 *
 * Writing: a loom_mp_writer appends to a growing buffer capped at
 * max_bytes. Errors are sticky: after the first failure every call is a
 * no-op and loom_mp_writer_finish reports it, so a builder can chain calls
 * and check once.
 *
 * Reading: loom_mp_parse checks the whole input structurally first (every
 * length fits in what is left, nesting at most LOOM_MP_MAX_DEPTH, no
 * reserved type byte, exactly one object) and only then builds msgpack-c
 * objects, so truncated, hostile or oversized-count input is an error
 * (LOOM_EINVALID_ARGUMENT with loom_errdetail() saying where), never a
 * crash or an allocation sized by the input's claims. */
#ifndef LOOM_PAYLOAD_H
#define LOOM_PAYLOAD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/error.h"

#define LOOM_MP_MAX_DEPTH 32
#define LOOM_MP_WRITER_MAX_DEFAULT (16u * 1024u * 1024u)

/* ------------------------------------------------------------ writing */
typedef struct loom_mp_writer {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    size_t max_bytes;
    int err; /* first error, sticky */
} loom_mp_writer;

/* max_bytes 0 = LOOM_MP_WRITER_MAX_DEFAULT. */
LOOM_EXPORT void loom_mp_writer_init(loom_mp_writer *w, size_t max_bytes);
/* Frees the buffer unless it was taken with loom_mp_writer_take. */
LOOM_EXPORT void loom_mp_writer_free(loom_mp_writer *w);
/* 0 or the first error (LOOM_ENOMEM, LOOM_ERESOURCE_EXHAUSTED over
 * max_bytes, LOOM_EINVALID_ARGUMENT). *data and *len borrow the buffer: valid
 * until the next write or loom_mp_writer_free. */
LOOM_EXPORT int loom_mp_writer_finish(const loom_mp_writer *w, const uint8_t **data, size_t *len);

LOOM_EXPORT void loom_mp_map(loom_mp_writer *w, uint32_t pairs);
LOOM_EXPORT void loom_mp_array(loom_mp_writer *w, uint32_t items);
LOOM_EXPORT void loom_mp_str(loom_mp_writer *w, const char *s); /* NULL is an error */
LOOM_EXPORT void loom_mp_strn(loom_mp_writer *w, const char *s, size_t len);
LOOM_EXPORT void loom_mp_int(loom_mp_writer *w, int64_t v);
LOOM_EXPORT void loom_mp_uint(loom_mp_writer *w, uint64_t v);
LOOM_EXPORT void loom_mp_bin(loom_mp_writer *w, const void *data, size_t len);
LOOM_EXPORT void loom_mp_bool(loom_mp_writer *w, bool v);
LOOM_EXPORT void loom_mp_nil(loom_mp_writer *w);
/* Appends bytes that already are one msgpack object (e.g. a nested
 * payload read elsewhere); they are validated first. */
LOOM_EXPORT void loom_mp_raw(loom_mp_writer *w, const void *data, size_t len);
/* Key/value shorthands for the common map entries. */
LOOM_EXPORT void loom_mp_kv_str(loom_mp_writer *w, const char *key, const char *value);
LOOM_EXPORT void loom_mp_kv_int(loom_mp_writer *w, const char *key, int64_t value);
LOOM_EXPORT void loom_mp_kv_bool(loom_mp_writer *w, const char *key, bool value);

/* ------------------------------------------------------------ reading */
typedef struct loom_mp_doc {
    msgpack_unpacked unpacked;
    const msgpack_object *root;
} loom_mp_doc;

typedef msgpack_object loom_mp_obj;

/* Structural check only (see the header comment). 0 or
 * LOOM_EINVALID_ARGUMENT. */
LOOM_EXPORT int loom_mp_validate(const void *data, size_t len);
/* Parses exactly one object. On success the doc owns its objects (strings
 * and bins point into data, which must outlive the doc); free with
 * loom_mp_doc_free. The doc may be copied or moved (root does not point
 * into it). On failure nothing needs freeing. */
LOOM_EXPORT int loom_mp_parse(loom_mp_doc *d, const void *data, size_t len);
LOOM_EXPORT void loom_mp_doc_free(loom_mp_doc *d);

/* Lookups in a map object by string key. LOOM_ENOT_FOUND when the key is
 * absent, LOOM_EINVALID_ARGUMENT when `map` is not a map or the value has
 * another type; loom_errdetail() names the key and both types. Returned
 * pointers borrow from the doc (and the parsed bytes). */
LOOM_EXPORT int loom_mp_get(const loom_mp_obj *map, const char *key, const loom_mp_obj **out);
LOOM_EXPORT int loom_mp_get_str(const loom_mp_obj *map, const char *key, const char **s,
                                size_t *len);
/* Copies a string value into buf (NUL-terminated); LOOM_EINVALID_ARGUMENT
 * when it does not fit or contains a NUL byte. */
LOOM_EXPORT int loom_mp_get_strcpy(const loom_mp_obj *map, const char *key, char *buf, size_t size);
LOOM_EXPORT int loom_mp_get_int(const loom_mp_obj *map, const char *key, int64_t *out);
LOOM_EXPORT int loom_mp_get_uint(const loom_mp_obj *map, const char *key, uint64_t *out);
LOOM_EXPORT int loom_mp_get_bin(const loom_mp_obj *map, const char *key, const uint8_t **data,
                                size_t *len);
LOOM_EXPORT int loom_mp_get_bool(const loom_mp_obj *map, const char *key, bool *out);
LOOM_EXPORT int loom_mp_get_map(const loom_mp_obj *map, const char *key, const loom_mp_obj **out);
LOOM_EXPORT int loom_mp_get_array(const loom_mp_obj *map, const char *key, const loom_mp_obj **out);

/* Value readers for objects at hand (array items). Same errors. */
LOOM_EXPORT int loom_mp_as_int(const loom_mp_obj *o, int64_t *out);
LOOM_EXPORT int loom_mp_as_str(const loom_mp_obj *o, const char **s, size_t *len);
/* True when o is a string equal to the NUL-terminated s. */
LOOM_EXPORT bool loom_mp_str_eq(const loom_mp_obj *o, const char *s);
/* "map", "str", "int"... for messages. */
LOOM_EXPORT const char *loom_mp_type_name(const loom_mp_obj *o);

#endif
