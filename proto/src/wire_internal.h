/* Cross-file helpers of the wire library; not part of the public API. */
#ifndef LOOM_WIRE_INTERNAL_H
#define LOOM_WIRE_INTERNAL_H

#include "loom/wire.h"

/* Validates env for sending and computes its payload size: 0,
 * LOOM_EINVALID_ARGUMENT (no body, NULL behind a count) or
 * LOOM_EFRAME_TOO_LARGE. */
int loom__envelope_check(const loom_envelope *env, size_t max_frame, size_t *payload_len);
/* Writes header + payload into out, which holds 4 + payload_len bytes;
 * payload_len comes from loom__envelope_check on the same env. */
void loom__frame_write(const loom_envelope *env, uint8_t *out, size_t payload_len);
/* Checks what protobuf-c lets through (field number 0, strings that are
 * not UTF-8 or hold a NUL): 0 or LOOM_EPROTOCOL with detail. */
int loom__payload_check(const uint8_t *payload, size_t len);
/* Every string in m (recursively) is UTF-8 without NUL: 0 or
 * LOOM_EINVALID_ARGUMENT naming the field. m must pass
 * protobuf_c_message_check first (no NULL behind a count). */
int loom__message_strings_check(const ProtobufCMessage *m);
/* Maps a negative libuv code to a negative LOOM_E* code. */
int loom__err_from_uv(int uv_err);

#endif
