/* Checks on a payload's raw bytes that protobuf-c does not make.
 *
 * protobuf-c accepts, and other implementations refuse or cannot even
 * represent:
 *  - an over-long varint tag that spells field number 0 (e.g. 85 00); it
 *    is kept as an unknown field and re-encoded into bytes no decoder reads;
 *  - string fields that are not UTF-8: proto3 requires UTF-8, and the
 *    Python and Go runtimes fail the whole message on such a string, so a
 *    client could make every processor request for a machine unreadable;
 *  - a NUL byte inside a string: protobuf-c hands strings out as C strings,
 *    so "inv\0x" would silently become "inv" — another machine's id.
 * The walk follows the descriptors, so it knows which length-delimited
 * fields are strings and which are nested messages; unknown fields are
 * skipped after their number is checked. */
#include "loom/wire.h"
#include "wire_internal.h"

#include <string.h>

#define FIELD_NUMBER_MAX 536870911u /* 2^29 - 1, protobuf's largest */
/* loom.proto nests at most five deep; unknown nested bytes are not
 * entered, so this only bounds a descriptor bug. */
#define DEPTH_MAX 16

typedef struct cursor {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static int read_varint(cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (c->p == c->end)
            return -1;
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int skip(cursor *c, uint64_t n)
{
    if (n > (uint64_t)(c->end - c->p))
        return -1;
    c->p += n;
    return 0;
}

/* Length of the UTF-8 sequence at s (at most `left` bytes), 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */

static int check_string(const uint8_t *s, size_t len, const char *field)
{
    for (size_t i = 0; i < len;) {
        if (s[i] == 0)
            return loom_seterr(LOOM_EPROTOCOL, "string field '%s' contains a NUL byte", field);
        size_t n = loom_utf8_sequence(s + i, len - i);
        if (n == 0)
            return loom_seterr(LOOM_EPROTOCOL, "string field '%s' is not valid UTF-8 (byte %zu)",
                               field, i);
        i += n;
    }
    return 0;
}

static int check_message(const ProtobufCMessageDescriptor *d, cursor c, int depth);

static int check_length_delimited(const ProtobufCMessageDescriptor *d, uint32_t number, cursor *c,
                                  int depth)
{
    uint64_t len;
    if (read_varint(c, &len) != 0 || len > (uint64_t)(c->end - c->p))
        return loom_seterr(LOOM_EPROTOCOL, "truncated field %u", number);
    cursor inner = {c->p, c->p + len};
    c->p += len;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, number);
    if (f == NULL)
        return 0;
    if (f->type == PROTOBUF_C_TYPE_STRING)
        return check_string(inner.p, (size_t)len, f->name);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return check_message(f->descriptor, inner, depth + 1);
    return 0; /* bytes, or a packed repeated scalar */
}

static int check_message(const ProtobufCMessageDescriptor *d, cursor c, int depth)
{
    if (depth > DEPTH_MAX)
        return loom_seterr(LOOM_EPROTOCOL, "messages nested deeper than %d", DEPTH_MAX);
    while (c.p < c.end) {
        uint64_t key;
        if (read_varint(&c, &key) != 0)
            return loom_seterr(LOOM_EPROTOCOL, "truncated field key");
        uint64_t number = key >> 3;
        if (number == 0 || number > FIELD_NUMBER_MAX)
            return loom_seterr(LOOM_EPROTOCOL, "invalid field number %llu in %s",
                               (unsigned long long)number, d->name);
        int rc = 0;
        uint64_t ignored;
        switch (key & 7) {
        case 0:
            rc = read_varint(&c, &ignored) != 0 ? -1 : 0;
            break;
        case 1:
            rc = skip(&c, 8);
            break;
        case 5:
            rc = skip(&c, 4);
            break;
        case 2:
            rc = check_length_delimited(d, (uint32_t)number, &c, depth);
            if (rc != 0)
                return rc;
            break;
        default:
            rc = -1;
        }
        if (rc != 0)
            return loom_seterr(LOOM_EPROTOCOL, "malformed field %llu in %s",
                               (unsigned long long)number, d->name);
    }
    return 0;
}

int loom__payload_check(const uint8_t *payload, size_t len)
{
    if (len == 0)
        return 0;
    cursor c = {payload, payload + len};
    return check_message(&loom__v1__envelope__descriptor, c, 0);
}

/* The sending side of the same rule: every string in a message we are about
 * to encode must be UTF-8, or the peer would refuse the whole frame. */
static int check_string_member(const char *str, const ProtobufCFieldDescriptor *f)
{
    if (str == NULL || loom_utf8_valid(str, strlen(str)))
        return 0;
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "string field '%s' is not valid UTF-8", f->name);
}

static int check_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *member = (const char *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
        void *const *items = *(void *const *const *)member;
        for (size_t k = 0; k < n; k++) {
            int rc = f->type == PROTOBUF_C_TYPE_STRING ? check_string_member(items[k], f)
                                                       : loom__message_strings_check(items[k]);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
        if (which != f->id)
            return 0;
    }
    const void *value = *(const void *const *)member;
    if (f->type == PROTOBUF_C_TYPE_STRING)
        return check_string_member(value, f);
    return value != NULL ? loom__message_strings_check(value) : 0;
}

int loom__message_strings_check(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        int rc = check_field(m, f);
        if (rc != 0)
            return rc;
    }
    return 0;
}
