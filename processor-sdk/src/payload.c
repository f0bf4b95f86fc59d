#include "loom/payload.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ writing */

/* msgpack-c's sbuffer grows without bound; the writer refuses to go past
 * max_bytes instead, so a runaway builder fails cleanly. */
static int writer_sink(void *data, const char *buf, size_t len)
{
    loom_mp_writer *w = data;
    if (w->err != 0)
        return -1;
    if (len > w->max_bytes || w->buf.size > w->max_bytes - len) {
        w->err = loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "payload over %zu bytes", w->max_bytes);
        return -1;
    }
    if (msgpack_sbuffer_write(&w->buf, buf, len) != 0) {
        w->err = loom_seterr(LOOM_ENOMEM, "payload buffer of %zu bytes", w->buf.size + len);
        return -1;
    }
    return 0;
}

void loom_mp_writer_init(loom_mp_writer *w, size_t max_bytes)
{
    LOOM_ASSERT(w != NULL);
    msgpack_sbuffer_init(&w->buf);
    msgpack_packer_init(&w->pk, w, writer_sink);
    w->max_bytes = max_bytes ? max_bytes : LOOM_MP_WRITER_MAX_DEFAULT;
    w->err = 0;
}

void loom_mp_writer_free(loom_mp_writer *w)
{
    msgpack_sbuffer_destroy(&w->buf);
    w->buf.data = NULL;
    w->buf.size = 0;
}

int loom_mp_writer_finish(const loom_mp_writer *w, const uint8_t **data, size_t *len)
{
    if (w->err != 0)
        return w->err;
    *data = (const uint8_t *)w->buf.data;
    *len = w->buf.size;
    return 0;
}

void loom_mp_map(loom_mp_writer *w, uint32_t pairs)
{
    if (w->err == 0)
        msgpack_pack_map(&w->pk, pairs);
}

void loom_mp_array(loom_mp_writer *w, uint32_t items)
{
    if (w->err == 0)
        msgpack_pack_array(&w->pk, items);
}

void loom_mp_strn(loom_mp_writer *w, const char *s, size_t len)
{
    if (w->err != 0)
        return;
    if (s == NULL && len > 0) {
        w->err = loom_seterr(LOOM_EINVALID_ARGUMENT, "NULL string");
        return;
    }
    if (len > UINT32_MAX) {
        w->err = loom_seterr(LOOM_EINVALID_ARGUMENT, "string of %zu bytes", len);
        return;
    }
    if (msgpack_pack_str(&w->pk, len) == 0 && len > 0)
        msgpack_pack_str_body(&w->pk, s, len);
}

void loom_mp_str(loom_mp_writer *w, const char *s)
{
    if (s == NULL) {
        if (w->err == 0)
            w->err = loom_seterr(LOOM_EINVALID_ARGUMENT, "NULL string");
        return;
    }
    loom_mp_strn(w, s, strlen(s));
}

void loom_mp_int(loom_mp_writer *w, int64_t v)
{
    if (w->err == 0)
        msgpack_pack_int64(&w->pk, v);
}

void loom_mp_uint(loom_mp_writer *w, uint64_t v)
{
    if (w->err == 0)
        msgpack_pack_uint64(&w->pk, v);
}

void loom_mp_bin(loom_mp_writer *w, const void *data, size_t len)
{
    if (w->err != 0)
        return;
    if ((data == NULL && len > 0) || len > UINT32_MAX) {
        w->err = loom_seterr(LOOM_EINVALID_ARGUMENT, "bad bin (%zu bytes)", len);
        return;
    }
    if (msgpack_pack_bin(&w->pk, len) == 0 && len > 0)
        msgpack_pack_bin_body(&w->pk, data, len);
}

void loom_mp_bool(loom_mp_writer *w, bool v)
{
    if (w->err != 0)
        return;
    if (v)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void loom_mp_nil(loom_mp_writer *w)
{
    if (w->err == 0)
        msgpack_pack_nil(&w->pk);
}

void loom_mp_raw(loom_mp_writer *w, const void *data, size_t len)
{
    if (w->err != 0)
        return;
    int err = loom_mp_validate(data, len);
    if (err != 0) {
        w->err = err;
        return;
    }
    writer_sink(w, data, len);
}

void loom_mp_kv_str(loom_mp_writer *w, const char *key, const char *value)
{
    loom_mp_str(w, key);
    loom_mp_str(w, value);
}

void loom_mp_kv_int(loom_mp_writer *w, const char *key, int64_t value)
{
    loom_mp_str(w, key);
    loom_mp_int(w, value);
}

void loom_mp_kv_bool(loom_mp_writer *w, const char *key, bool value)
{
    loom_mp_str(w, key);
    loom_mp_bool(w, value);
}

/* ------------------------------------------------------------ validation */

typedef struct scan {
    const uint8_t *p;
    size_t left;
    size_t start_len;
} scan;

static int scan_fail(const scan *s, const char *what)
{
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "malformed msgpack at byte %zu: %s",
                       s->start_len - s->left, what);
}

static int scan_take(scan *s, size_t n, const char *what)
{
    if (n > s->left)
        return scan_fail(s, what);
    s->p += n;
    s->left -= n;
    return 0;
}

/* Big-endian unsigned of width bytes (1, 2 or 4) following the type byte. */
static int scan_len(scan *s, size_t width, uint32_t *out)
{
    if (width > s->left)
        return scan_fail(s, "truncated length");
    uint32_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | s->p[i];
    s->p += width;
    s->left -= width;
    *out = v;
    return 0;
}

static int scan_object(scan *s, int depth);

/* Each item needs at least one byte, so a count over what is left is a lie
 * caught here, before msgpack-c allocates room for it. */
static int scan_items(scan *s, uint64_t items, int depth)
{
    if (depth >= LOOM_MP_MAX_DEPTH)
        return scan_fail(s, "nesting too deep");
    if (items > s->left)
        return scan_fail(s, "container count exceeds the input");
    for (uint64_t i = 0; i < items; i++) {
        int err = scan_object(s, depth + 1);
        if (err != 0)
            return err;
    }
    return 0;
}

/* Sized payloads: str/bin/ext with a length field of `width` bytes. */
static int scan_sized(scan *s, size_t width, size_t extra)
{
    uint32_t n = 0;
    int err = scan_len(s, width, &n);
    if (err != 0)
        return err;
    return scan_take(s, (size_t)n + extra, "truncated string, bin or ext");
}

static int scan_container(scan *s, uint8_t b, int depth)
{
    uint32_t n = 0;
    int err = 0;
    if (b >= 0x80 && b <= 0x8f)
        return scan_items(s, 2u * (uint64_t)(b & 0x0f), depth);
    if (b >= 0x90 && b <= 0x9f)
        return scan_items(s, b & 0x0f, depth);
    switch (b) {
    case 0xdc:
        err = scan_len(s, 2, &n);
        break;
    case 0xdd:
        err = scan_len(s, 4, &n);
        break;
    case 0xde:
        err = scan_len(s, 2, &n);
        break;
    case 0xdf:
        err = scan_len(s, 4, &n);
        break;
    default:
        LOOM_ASSERT(!"not a container type byte");
    }
    if (err != 0)
        return err;
    uint64_t items = (b == 0xde || b == 0xdf) ? 2u * (uint64_t)n : n;
    return scan_items(s, items, depth);
}

static int scan_object(scan *s, int depth)
{
    if (s->left == 0)
        return scan_fail(s, "truncated: object expected");
    uint8_t b = *s->p;
    s->p++;
    s->left--;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if ((b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf))
        return scan_container(s, b, depth);
    if (b >= 0xa0 && b <= 0xbf)
        return scan_take(s, b & 0x1f, "truncated string");
    switch (b) {
    case 0xc1:
        return scan_fail(s, "reserved type byte 0xc1");
    case 0xc4:
    case 0xd9:
        return scan_sized(s, 1, 0);
    case 0xc5:
    case 0xda:
        return scan_sized(s, 2, 0);
    case 0xc6:
    case 0xdb:
        return scan_sized(s, 4, 0);
    case 0xc7:
        return scan_sized(s, 1, 1);
    case 0xc8:
        return scan_sized(s, 2, 1);
    case 0xc9:
        return scan_sized(s, 4, 1);
    case 0xca:
        return scan_take(s, 4, "truncated float32");
    case 0xcb:
        return scan_take(s, 8, "truncated float64");
    case 0xcc:
    case 0xd0:
        return scan_take(s, 1, "truncated int");
    case 0xcd:
    case 0xd1:
        return scan_take(s, 2, "truncated int");
    case 0xce:
    case 0xd2:
        return scan_take(s, 4, "truncated int");
    case 0xcf:
    case 0xd3:
        return scan_take(s, 8, "truncated int");
    case 0xd4:
        return scan_take(s, 2, "truncated fixext");
    case 0xd5:
        return scan_take(s, 3, "truncated fixext");
    case 0xd6:
        return scan_take(s, 5, "truncated fixext");
    case 0xd7:
        return scan_take(s, 9, "truncated fixext");
    case 0xd8:
        return scan_take(s, 17, "truncated fixext");
    default:
        LOOM_ASSERT(!"msgpack type byte not covered");
    }
    return LOOM_EINTERNAL;
}

int loom_mp_validate(const void *data, size_t len)
{
    if (data == NULL && len > 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "NULL payload");
    scan s = {.p = data, .left = len, .start_len = len};
    int err = scan_object(&s, 0);
    if (err != 0)
        return err;
    if (s.left != 0)
        return scan_fail(&s, "trailing bytes after the object");
    return 0;
}

/* ------------------------------------------------------------ reading */

int loom_mp_parse(loom_mp_doc *d, const void *data, size_t len)
{
    LOOM_ASSERT(d != NULL);
    int err = loom_mp_validate(data, len);
    if (err != 0)
        return err;
    msgpack_unpacked_init(&d->unpacked);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&d->unpacked, data, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&d->unpacked);
        if (r == MSGPACK_UNPACK_NOMEM_ERROR)
            return loom_seterr(LOOM_ENOMEM, "msgpack decode of %zu bytes", len);
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "malformed msgpack (decoder status %d)", (int)r);
    }
    LOOM_ASSERT(off == len);
    /* The root lives on the heap, not in *d, so a doc may be moved (and a
     * lone scalar gets no zone at all from msgpack-c). */
    msgpack_object *root = malloc(sizeof *root);
    if (root == NULL) {
        msgpack_unpacked_destroy(&d->unpacked);
        return loom_seterr(LOOM_ENOMEM, "msgpack decode of %zu bytes", len);
    }
    *root = d->unpacked.data;
    d->root = root;
    return 0;
}

void loom_mp_doc_free(loom_mp_doc *d)
{
    msgpack_unpacked_destroy(&d->unpacked);
    free((void *)d->root);
    d->root = NULL;
}

const char *loom_mp_type_name(const loom_mp_obj *o)
{
    if (o == NULL)
        return "nothing";
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "int";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "int";
    case MSGPACK_OBJECT_FLOAT32:
        return "float";
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

bool loom_mp_str_eq(const loom_mp_obj *o, const char *s)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR)
        return false;
    size_t n = strlen(s);
    return o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

int loom_mp_get(const loom_mp_obj *map, const char *key, const loom_mp_obj **out)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "looking up '%s': expected map, got %s", key,
                           loom_mp_type_name(map));
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (loom_mp_str_eq(&kv->key, key)) {
            *out = &kv->val;
            return 0;
        }
    }
    return loom_seterr(LOOM_ENOT_FOUND, "key '%s' missing", key);
}

static int get_typed(const loom_mp_obj *map, const char *key, msgpack_object_type type,
                     const char *type_name, const loom_mp_obj **out)
{
    int err = loom_mp_get(map, key, out);
    if (err != 0)
        return err;
    if ((*out)->type != type)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "key '%s': expected %s, got %s", key, type_name,
                           loom_mp_type_name(*out));
    return 0;
}

int loom_mp_as_str(const loom_mp_obj *o, const char **s, size_t *len)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "expected str, got %s", loom_mp_type_name(o));
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
}

int loom_mp_as_int(const loom_mp_obj *o, int64_t *out)
{
    if (o != NULL && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    if (o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return loom_seterr(LOOM_EINVALID_ARGUMENT, "integer %llu out of range",
                               (unsigned long long)o->via.u64);
        *out = (int64_t)o->via.u64;
        return 0;
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "expected int, got %s", loom_mp_type_name(o));
}

int loom_mp_get_str(const loom_mp_obj *map, const char *key, const char **s, size_t *len)
{
    const loom_mp_obj *o;
    int err = get_typed(map, key, MSGPACK_OBJECT_STR, "str", &o);
    if (err != 0)
        return err;
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
}

int loom_mp_get_strcpy(const loom_mp_obj *map, const char *key, char *buf, size_t size)
{
    const char *s;
    size_t n;
    int err = loom_mp_get_str(map, key, &s, &n);
    if (err != 0)
        return err;
    if (n >= size)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "key '%s': string of %zu bytes, limit %zu", key,
                           n, size - 1);
    if (memchr(s, '\0', n) != NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "key '%s': string holds a NUL byte", key);
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

int loom_mp_get_int(const loom_mp_obj *map, const char *key, int64_t *out)
{
    const loom_mp_obj *o;
    int err = loom_mp_get(map, key, &o);
    if (err != 0)
        return err;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER && o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "key '%s': expected int, got %s", key,
                           loom_mp_type_name(o));
    return loom_mp_as_int(o, out);
}

int loom_mp_get_uint(const loom_mp_obj *map, const char *key, uint64_t *out)
{
    const loom_mp_obj *o;
    int err = get_typed(map, key, MSGPACK_OBJECT_POSITIVE_INTEGER, "unsigned int", &o);
    if (err != 0)
        return err;
    *out = o->via.u64;
    return 0;
}

int loom_mp_get_bin(const loom_mp_obj *map, const char *key, const uint8_t **data, size_t *len)
{
    const loom_mp_obj *o;
    int err = get_typed(map, key, MSGPACK_OBJECT_BIN, "bin", &o);
    if (err != 0)
        return err;
    *data = (const uint8_t *)o->via.bin.ptr;
    *len = o->via.bin.size;
    return 0;
}

int loom_mp_get_bool(const loom_mp_obj *map, const char *key, bool *out)
{
    const loom_mp_obj *o;
    int err = get_typed(map, key, MSGPACK_OBJECT_BOOLEAN, "bool", &o);
    if (err != 0)
        return err;
    *out = o->via.boolean;
    return 0;
}

int loom_mp_get_map(const loom_mp_obj *map, const char *key, const loom_mp_obj **out)
{
    return get_typed(map, key, MSGPACK_OBJECT_MAP, "map", out);
}

int loom_mp_get_array(const loom_mp_obj *map, const char *key, const loom_mp_obj **out)
{
    return get_typed(map, key, MSGPACK_OBJECT_ARRAY, "array", out);
}
