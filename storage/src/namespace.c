/* Namespaces: name -> (id, opaque config) in `namespaces`, and the reverse
 * id -> name in `ns_ids`. */
#include "internal.h"

static int check_name(loom_slice name)
{
    if (name.len == 0 || name.len > LOOM_STORE_MAX_NS_NAME_LEN)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace name must be 1..%u bytes, got %zu",
                           LOOM_STORE_MAX_NS_NAME_LEN, name.len);
    return 0;
}

static int check_config(loom_slice config)
{
    if (config.len > LOOM_STORE_MAX_VALUE_LEN)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace config of %zu bytes is over %u",
                           config.len, LOOM_STORE_MAX_VALUE_LEN);
    return 0;
}

struct ns_write {
    loom_slice name, config;
    bool create;
    loom_ns_id id;
};

static int put_record(loom_store *s, MDB_txn *txn, struct ns_write *w)
{
    uint8_t *buf;
    int rc = loom__scratch(s, loom__ns_size(w->config.len), &buf);
    if (rc != 0)
        return rc;
    size_t n = loom__ns_encode(buf, w->id, w->config);
    MDB_val k = loom__val(w->name.ptr, w->name.len), d = loom__val(buf, n);
    return loom__mdb_err(mdb_put(txn, s->dbi[LOOM__DB_NAMESPACES], &k, &d, 0), "write namespace");
}

static int ns_write(loom_store *s, MDB_txn *txn, void *arg)
{
    struct ns_write *w = arg;
    MDB_val k = loom__val(w->name.ptr, w->name.len), d;
    int rc = mdb_get(txn, s->dbi[LOOM__DB_NAMESPACES], &k, &d);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return loom__mdb_err(rc, "read namespace");
    if (w->create && rc == 0)
        return loom_seterr(LOOM_ENAMESPACE_ALREADY_EXISTS, "namespace %.*s already exists",
                           (int)w->name.len, (const char *)w->name.ptr);
    if (!w->create && rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENAMESPACE_NOT_FOUND, "namespace %.*s not found",
                           (int)w->name.len, (const char *)w->name.ptr);
    if (!w->create) {
        loom_slice old_config;
        rc = loom__ns_decode(d.mv_data, d.mv_size, &w->id, &old_config);
        return rc != 0 ? rc : put_record(s, txn, w);
    }
    uint64_t last;
    rc = loom__counter_get(s, txn, "ns_id", &last);
    if (rc != 0)
        return rc;
    if (last >= UINT32_MAX)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "namespace ids exhausted");
    w->id.v = (uint32_t)(last + 1);
    uint8_t idk[4];
    loom__put_be32(idk, w->id.v);
    MDB_val ik = loom__val(idk, 4), iv = loom__val(w->name.ptr, w->name.len);
    rc = mdb_put(txn, s->dbi[LOOM__DB_NS_IDS], &ik, &iv, MDB_NOOVERWRITE);
    if (rc != 0)
        return loom__mdb_err(rc, "write namespace id");
    rc = loom__counter_put(s, txn, "ns_id", w->id.v);
    return rc != 0 ? rc : put_record(s, txn, w);
}

int loom_store_ns_create(loom_store *s, loom_slice name, loom_slice config, loom_ns_id *id_out)
{
    int rc = check_name(name);
    if (rc == 0)
        rc = check_config(config);
    if (rc != 0)
        return rc;
    struct ns_write w = {name, config, true, {0}};
    rc = loom__write(s, ns_write, &w);
    if (rc == 0 && id_out)
        *id_out = w.id;
    return rc;
}

int loom_store_ns_update(loom_store *s, loom_slice name, loom_slice config)
{
    int rc = check_name(name);
    if (rc == 0)
        rc = check_config(config);
    if (rc != 0)
        return rc;
    struct ns_write w = {name, config, false, {0}};
    return loom__write(s, ns_write, &w);
}

int loom_store_ns_get(loom_txn *t, loom_slice name, loom_ns_info *out)
{
    int rc = check_name(name);
    if (rc != 0)
        return rc;
    MDB_val k = loom__val(name.ptr, name.len), d;
    rc = mdb_get(t->txn, t->s->dbi[LOOM__DB_NAMESPACES], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENAMESPACE_NOT_FOUND, "namespace %.*s not found", (int)name.len,
                           (const char *)name.ptr);
    if (rc != 0)
        return loom__mdb_err(rc, "read namespace");
    out->name = loom__slice(k);
    return loom__ns_decode(d.mv_data, d.mv_size, &out->id, &out->config);
}

int loom_store_ns_get_by_id(loom_txn *t, loom_ns_id id, loom_ns_info *out)
{
    uint8_t idk[4];
    loom__put_be32(idk, id.v);
    MDB_val k = loom__val(idk, 4), d;
    int rc = mdb_get(t->txn, t->s->dbi[LOOM__DB_NS_IDS], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_ENAMESPACE_NOT_FOUND, "namespace id %u not found", id.v);
    if (rc != 0)
        return loom__mdb_err(rc, "read namespace id");
    rc = loom_store_ns_get(t, loom__slice(d), out);
    if (rc == LOOM_ENAMESPACE_NOT_FOUND || (rc == 0 && out->id.v != id.v))
        return loom_seterr(LOOM_ECORRUPTED, "namespace id %u: index and record disagree", id.v);
    return rc;
}

int loom_store_ns_list(loom_txn *t, loom_slice after, loom_ns_info *out, size_t cap)
{
    if (after.len > LOOM_STORE_MAX_NS_NAME_LEN || cap > INT32_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace list: bad cursor or cap");
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[LOOM__DB_NAMESPACES], &c);
    if (rc != 0)
        return loom__mdb_err(rc, "namespace cursor");
    MDB_val k = loom__val(after.ptr, after.len), d;
    rc = after.len ? mdb_cursor_get(c, &k, &d, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &d, MDB_FIRST);
    if (rc == 0 && after.len && k.mv_size == after.len && memcmp(k.mv_data, after.ptr, after.len) == 0)
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    size_t n = 0;
    while (rc == 0 && n < cap) {
        out[n].name = loom__slice(k);
        int drc = loom__ns_decode(d.mv_data, d.mv_size, &out[n].id, &out[n].config);
        if (drc != 0) {
            mdb_cursor_close(c);
            return drc;
        }
        n++;
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return loom__mdb_err(rc, "namespace list");
    return (int)n;
}
