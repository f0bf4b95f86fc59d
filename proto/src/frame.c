/* Frame codec and envelope encode/decode (loom/wire.h).
 *
 * The reader never trusts a length prefix with memory: the limit is checked
 * first, and the payload buffer grows only with the bytes that actually
 * arrive, so a peer that announces 16 MiB and sends 10 bytes costs 10 bytes
 * (rounded up), not 16 MiB. Frames that arrive whole inside one feed are
 * handed out straight from the caller's bytes without a copy. */
#include "loom/wire.h"
#include "wire_internal.h"

#include <string.h>

/* Below this a finished payload buffer is kept for the next frame; above it
 * it is freed so an idle connection does not pin a big buffer. */
#define FRAME_BUF_KEEP (64u * 1024u)
#define FRAME_BUF_MIN 4096u

static const uint8_t empty_payload[1];

void loom_frame_reader_init(loom_frame_reader *r, size_t max_frame)
{
    LOOM_ASSERT(r != NULL);
    memset(r, 0, sizeof *r);
    if (max_frame == 0)
        max_frame = LOOM_FRAME_MAX_DEFAULT;
    if (max_frame > UINT32_MAX)
        max_frame = UINT32_MAX;
    r->max_frame = max_frame;
}

void loom_frame_reader_free(loom_frame_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->have = 0;
    r->need = 0;
    r->header_len = 0;
}

static uint32_t read_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Makes room for `want` payload bytes in total (want <= need). Geometric
 * growth keeps a slowly arriving big frame at O(log N) reallocations. */
static int reserve(loom_frame_reader *r, size_t want)
{
    LOOM_ASSERT(want <= r->need);
    if (want <= r->cap)
        return 0;
    size_t cap = r->cap < FRAME_BUF_MIN ? FRAME_BUF_MIN : r->cap;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > r->need)
        cap = r->need;
    uint8_t *p = realloc(r->buf, cap);
    if (p == NULL)
        return loom_seterr(LOOM_ENOMEM, "frame buffer of %zu bytes", cap);
    r->buf = p;
    r->cap = cap;
    return 0;
}

static void frame_done(loom_frame_reader *r)
{
    r->need = 0;
    r->have = 0;
    r->header_len = 0;
    if (r->cap > FRAME_BUF_KEEP) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
}

/* Consumes header bytes; returns how many were used, or a negative error
 * once a complete header announces an oversize frame. */
static long take_header(loom_frame_reader *r, const uint8_t *data, size_t len)
{
    size_t n = LOOM_FRAME_HEADER_SIZE - r->header_len;
    if (n > len)
        n = len;
    memcpy(r->header + r->header_len, data, n);
    r->header_len += n;
    if (r->header_len < LOOM_FRAME_HEADER_SIZE)
        return (long)n;
    uint32_t size = read_be32(r->header);
    if (size > r->max_frame) {
        r->failed = 1;
        return loom_seterr(LOOM_EFRAME_TOO_LARGE, "frame length %u exceeds the limit of %zu bytes",
                           size, r->max_frame);
    }
    r->need = size;
    r->have = 0;
    return (long)n;
}

int loom_frame_reader_feed(loom_frame_reader *r, const uint8_t *data, size_t len, loom_frame_cb cb,
                           void *ctx)
{
    LOOM_ASSERT(r != NULL);
    LOOM_ASSERT(cb != NULL);
    LOOM_ASSERT(data != NULL || len == 0);
    if (r->failed)
        return loom_seterr(LOOM_EFRAME_TOO_LARGE,
                           "frame reader already failed on an oversize frame");
    size_t pos = 0;
    for (;;) {
        if (r->header_len < LOOM_FRAME_HEADER_SIZE) {
            if (pos == len)
                return 0;
            long used = take_header(r, data + pos, len - pos);
            if (used < 0)
                return (int)used;
            pos += (size_t)used;
            if (r->header_len < LOOM_FRAME_HEADER_SIZE)
                return 0;
        }
        size_t avail = len - pos;
        size_t missing = r->need - r->have;
        if (r->have == 0 && avail >= missing) {
            /* Whole payload in hand: no copy. */
            const uint8_t *payload = r->need == 0 ? empty_payload : data + pos;
            size_t n = r->need;
            pos += n;
            frame_done(r);
            int rc = cb(ctx, payload, n);
            if (rc != 0)
                return rc;
            continue;
        }
        if (avail == 0)
            return 0;
        size_t n = avail < missing ? avail : missing;
        int rc = reserve(r, r->have + n);
        if (rc != 0)
            return rc;
        memcpy(r->buf + r->have, data + pos, n);
        r->have += n;
        pos += n;
        if (r->have < r->need)
            return 0;
        size_t size = r->need;
        /* The buffer stays ours during the callback; frame_done may free it
         * only afterwards, so the payload pointer stays valid. */
        r->need = 0;
        r->have = 0;
        r->header_len = 0;
        rc = cb(ctx, r->buf, size);
        frame_done(r);
        if (rc != 0)
            return rc;
    }
}

/* Pointer to the message the body oneof points at, NULL when unset. */
static const ProtobufCMessage *envelope_body(const loom_envelope *env)
{
    if (env->body_case == LOOM__V1__ENVELOPE__BODY__NOT_SET)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&loom__v1__envelope__descriptor, env->body_case);
    if (f == NULL)
        return NULL;
    LOOM_ASSERT(f->type == PROTOBUF_C_TYPE_MESSAGE);
    return *(const ProtobufCMessage *const *)((const char *)env + f->offset);
}

void loom_envelope_set_body(loom_envelope *env, Loom__V1__Envelope__BodyCase which,
                            ProtobufCMessage *body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&loom__v1__envelope__descriptor, (unsigned)which);
    LOOM_ASSERT(f != NULL);
    LOOM_ASSERT(f->type == PROTOBUF_C_TYPE_MESSAGE);
    LOOM_ASSERT(body != NULL);
    LOOM_ASSERT(body->descriptor == f->descriptor); /* the body fits its case */
    env->body_case = which;
    *(ProtobufCMessage **)(void *)((char *)env + f->offset) = body;
}

const char *loom_envelope_body_name(const loom_envelope *env)
{
    if (env == NULL || env->body_case == LOOM__V1__ENVELOPE__BODY__NOT_SET)
        return "(none)";
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&loom__v1__envelope__descriptor, env->body_case);
    return f != NULL ? f->name : "(unknown)";
}

int loom__envelope_check(const loom_envelope *env, size_t max_frame, size_t *payload_len)
{
    LOOM_ASSERT(env != NULL);
    LOOM_ASSERT(env->base.descriptor == &loom__v1__envelope__descriptor);
    if (envelope_body(env) == NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "envelope %llu has no body",
                           (unsigned long long)env->correlation_id);
    /* Catches NULL pointers behind non-zero counts, which would crash the
     * packer. */
    if (!protobuf_c_message_check(&env->base))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "envelope %llu (%s) is malformed",
                           (unsigned long long)env->correlation_id, loom_envelope_body_name(env));
    int rc = loom__message_strings_check(&env->base);
    if (rc != 0)
        return rc;
    if (max_frame == 0)
        max_frame = LOOM_FRAME_MAX_DEFAULT;
    if (max_frame > UINT32_MAX)
        max_frame = UINT32_MAX;
    size_t n = loom__v1__envelope__get_packed_size(env);
    if (n > max_frame)
        return loom_seterr(LOOM_EFRAME_TOO_LARGE,
                           "%s envelope of %zu bytes exceeds the limit of %zu",
                           loom_envelope_body_name(env), n, max_frame);
    *payload_len = n;
    return 0;
}

void loom__frame_write(const loom_envelope *env, uint8_t *out, size_t payload_len)
{
    out[0] = (uint8_t)(payload_len >> 24);
    out[1] = (uint8_t)(payload_len >> 16);
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
    size_t packed = loom__v1__envelope__pack(env, out + LOOM_FRAME_HEADER_SIZE);
    LOOM_ASSERT(packed == payload_len);
}

int loom_envelope_encode(const loom_envelope *env, size_t max_frame, uint8_t **out, size_t *out_len)
{
    LOOM_ASSERT(out != NULL);
    LOOM_ASSERT(out_len != NULL);
    size_t n;
    int rc = loom__envelope_check(env, max_frame, &n);
    if (rc != 0)
        return rc;
    uint8_t *buf = malloc(LOOM_FRAME_HEADER_SIZE + n);
    if (buf == NULL)
        return loom_seterr(LOOM_ENOMEM, "frame of %zu bytes", n);
    loom__frame_write(env, buf, n);
    *out = buf;
    *out_len = LOOM_FRAME_HEADER_SIZE + n;
    return 0;
}

/* Decoding allocates from an arena through a budget. Small protobuf items
 * expand in memory (a 2-byte empty repeated message becomes a pointer plus
 * a ~50-byte struct), so without a cap one 16 MiB frame could cost
 * ~500 MB. An envelope takes ~5-20 allocations; the arena makes that one
 * or two mallocs, and loom_envelope_free one free per chunk instead of a
 * walk over the message. The first chunk starts with the envelope itself
 * (protobuf-c allocates the top message first, checked on every decode),
 * so the envelope pointer leads back to its chunks. */
typedef struct arena_chunk {
    struct arena_chunk *next; /* the first chunk links all later ones */
    size_t used;
    size_t cap;
} arena_chunk;

#define ARENA_ALIGN 16u
#define ARENA_HDR ((sizeof(arena_chunk) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))
#define ARENA_FIRST_MIN 1024u
#define ARENA_CHUNK_MAX (1024u * 1024u)

typedef struct decode_arena {
    arena_chunk *first;
    arena_chunk *cur;
    size_t next_cap; /* size of the next chunk unless one item needs more */
    size_t left;     /* budget */
    int over;
    int oom;
} decode_arena;

static uint8_t *chunk_data(arena_chunk *c)
{
    return (uint8_t *)c + ARENA_HDR;
}

static int budget_fits(const decode_arena *a, size_t cap)
{
    return cap <= a->left && ARENA_HDR <= a->left - cap;
}

static arena_chunk *arena_grow(decode_arena *a, size_t size)
{
    size_t cap = size > a->next_cap ? size : a->next_cap;
    if (!budget_fits(a, cap))
        cap = size; /* the budget may still have room for this item alone */
    if (!budget_fits(a, cap)) {
        a->over = 1;
        return NULL;
    }
    arena_chunk *c = malloc(ARENA_HDR + cap);
    if (c == NULL) {
        a->oom = 1;
        return NULL;
    }
    a->left -= ARENA_HDR + cap;
    c->used = 0;
    c->cap = cap;
    c->next = NULL;
    if (a->first == NULL) {
        a->first = c;
    } else {
        c->next = a->first->next;
        a->first->next = c;
    }
    a->cur = c;
    a->next_cap = cap * 2 < ARENA_CHUNK_MAX ? cap * 2 : ARENA_CHUNK_MAX;
    return c;
}

static void *arena_alloc(void *ctx, size_t size)
{
    decode_arena *a = ctx;
    size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < size) {
        a->over = 1;
        return NULL;
    }
    arena_chunk *c = a->cur;
    if (c == NULL || c->cap - c->used < need)
        c = arena_grow(a, need);
    if (c == NULL)
        return NULL;
    void *p = chunk_data(c) + c->used;
    c->used += need;
    return p;
}

/* Items die with the arena. */
static void arena_free_item(void *ctx, void *p)
{
    (void)ctx;
    (void)p;
}

static void arena_drop(arena_chunk *first)
{
    while (first != NULL) {
        arena_chunk *next = first->next;
        free(first);
        first = next;
    }
}

static int unpack_failed(const decode_arena *a, size_t len, size_t max_memory)
{
    if (a->oom)
        return loom_seterr(LOOM_ENOMEM, "decoding an envelope of %zu bytes", len);
    if (a->over)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED,
                           "envelope of %zu bytes needs more than %zu bytes of memory to decode",
                           len, max_memory);
    return loom_seterr(LOOM_EPROTOCOL, "%zu bytes are not a valid Envelope", len);
}

size_t loom_envelope_decode_budget(size_t len)
{
    const size_t fixed = 64u * 1024u * 1024u;
    if (len > (SIZE_MAX - fixed) / 4)
        return SIZE_MAX;
    return fixed + 4 * len;
}

int loom_envelope_decode_limited(const uint8_t *payload, size_t len, size_t max_memory,
                                 loom_envelope **out)
{
    LOOM_ASSERT(out != NULL);
    LOOM_ASSERT(payload != NULL || len == 0);
    *out = NULL;
    int rc = loom__payload_check(payload, len);
    if (rc != 0)
        return rc;
    decode_arena a = {.left = max_memory};
    /* Room for the payload's bytes and strings plus the structs of a
     * typical body in one chunk; bodies of many small items take more
     * chunks, each twice the last. */
    a.next_cap = len < ARENA_CHUNK_MAX - ARENA_FIRST_MIN ? len + ARENA_FIRST_MIN : ARENA_CHUNK_MAX;
    ProtobufCAllocator alloc = {
        .alloc = arena_alloc, .free = arena_free_item, .allocator_data = &a};
    loom_envelope *env = loom__v1__envelope__unpack(&alloc, len, payload);
    if (env == NULL) {
        arena_drop(a.first);
        return unpack_failed(&a, len, max_memory);
    }
    if ((uint8_t *)env != chunk_data(a.first)) {
        arena_drop(a.first);
        return loom_seterr(LOOM_EINTERNAL, "protobuf-c did not allocate the envelope first");
    }
    if (envelope_body(env) == NULL) {
        /* An unknown body number (a newer peer) lands here too: protobuf-c
         * keeps it as an unknown field and leaves the oneof unset. */
        rc = loom_seterr(LOOM_EPROTOCOL, "envelope %llu has no known body",
                         (unsigned long long)env->correlation_id);
        arena_drop(a.first);
        return rc;
    }
    *out = env;
    return 0;
}

int loom_envelope_decode(const uint8_t *payload, size_t len, loom_envelope **out)
{
    return loom_envelope_decode_limited(payload, len, loom_envelope_decode_budget(len), out);
}

void loom_envelope_free(loom_envelope *env)
{
    if (env != NULL)
        arena_drop((arena_chunk *)((uint8_t *)env - ARENA_HDR));
}
