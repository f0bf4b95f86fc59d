/* Machine lookups: `machines` maps (ns id, machine id) to the internal
 * key; `meta` maps the key to the machine's meta record. */
#include "internal.h"

size_t loom__machine_name_key(uint8_t *k, loom_ns_id ns, loom_slice id)
{
    LOOM_ASSERT(id.len <= LOOM_STORE_MAX_ID_LEN);
    loom__put_be32(k, ns.v);
    if (id.len)
        memcpy(k + 4, id.ptr, id.len);
    return 4 + id.len;
}

static int check_id(loom_slice id)
{
    if (id.len == 0 || id.len > LOOM_STORE_MAX_ID_LEN)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "machine id must be 1..%u bytes, got %zu",
                           LOOM_STORE_MAX_ID_LEN, id.len);
    return 0;
}

int loom__machine_key_of(loom_store *s, MDB_txn *txn, loom_ns_id ns, loom_slice id,
                         loom_machine_key *key)
{
    int rc = check_id(id);
    if (rc != 0)
        return rc;
    uint8_t kb[LOOM__MACHINE_NAME_KEY_MAX];
    MDB_val k = loom__val(kb, loom__machine_name_key(kb, ns, id)), d;
    rc = mdb_get(txn, s->dbi[LOOM__DB_MACHINES], &k, &d);
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_EMACHINE_NOT_FOUND, "machine %.*s not found", (int)id.len,
                           (const char *)id.ptr);
    if (rc != 0)
        return loom__mdb_err(rc, "read machine name");
    if (d.mv_size != 8)
        return loom_seterr(LOOM_ECORRUPTED, "machine name entry of %zu bytes", d.mv_size);
    key->v = loom__get_be64(d.mv_data);
    return 0;
}

static int meta_found(int rc, loom_machine_key key, MDB_val d, loom_machine *out)
{
    if (rc == MDB_NOTFOUND)
        return loom_seterr(LOOM_EMACHINE_NOT_FOUND, "machine key %llu not found",
                           (unsigned long long)key.v);
    if (rc != 0)
        return loom__mdb_err(rc, "read machine");
    rc = loom__meta_decode(d.mv_data, d.mv_size, out);
    if (rc != 0)
        return loom_seterr(rc, "machine key %llu: %s", (unsigned long long)key.v, loom_errdetail());
    out->key = key;
    return 0;
}

int loom__machine_by_key(loom_store *s, MDB_txn *txn, loom_machine_key key, loom_machine *out)
{
    uint8_t kb[8];
    loom__put_be64(kb, key.v);
    MDB_val k = loom__val(kb, 8), d;
    return meta_found(mdb_get(txn, s->dbi[LOOM__DB_META], &k, &d), key, d, out);
}

int loom__machine_at(loom_store *s, MDB_cursor *cur, loom_machine_key key, loom_machine *out)
{
    (void)s;
    uint8_t kb[8];
    loom__put_be64(kb, key.v);
    MDB_val k = loom__val(kb, 8), d;
    return meta_found(mdb_cursor_get(cur, &k, &d, MDB_SET_KEY), key, d, out);
}

int loom_store_machine_get(loom_txn *t, loom_ns_id ns, loom_slice id, loom_machine *out)
{
    loom_machine_key key = {0};
    int rc = loom__machine_key_of(t->s, t->txn, ns, id, &key);
    if (rc == 0)
        rc = loom__machine_by_key(t->s, t->txn, key, out);
    if (rc == LOOM_EMACHINE_NOT_FOUND && key.v != 0)
        return loom_seterr(LOOM_ECORRUPTED, "machine %.*s: name index without a machine",
                           (int)id.len, (const char *)id.ptr);
    if (rc == 0 && (out->ns.v != ns.v || out->id.len != id.len ||
                    memcmp(out->id.ptr, id.ptr, id.len) != 0))
        return loom_seterr(LOOM_ECORRUPTED, "machine %.*s: name index points to another machine",
                           (int)id.len, (const char *)id.ptr);
    return rc;
}

int loom_store_machine_get_by_key(loom_txn *t, loom_machine_key key, loom_machine *out)
{
    return loom__machine_by_key(t->s, t->txn, key, out);
}

/* ---- listing */

struct list_walk {
    loom_txn *t;
    MDB_cursor *c;
    loom_ns_id ns;
    MDB_val k, d;
};

/* Positions on the first entry of the namespace after `after`. 0, or 1 at
 * the end of the namespace, or an error. */
static int list_seek(struct list_walk *w, loom_slice after, bool has_after)
{
    uint8_t kb[LOOM__MACHINE_NAME_KEY_MAX];
    size_t kn = has_after ? loom__machine_name_key(kb, w->ns, after) : 4;
    if (!has_after)
        loom__put_be32(kb, w->ns.v);
    w->k = loom__val(kb, kn);
    int rc = mdb_cursor_get(w->c, &w->k, &w->d, MDB_SET_RANGE);
    if (rc == 0 && has_after && w->k.mv_size == kn && memcmp(w->k.mv_data, kb, kn) == 0)
        rc = mdb_cursor_get(w->c, &w->k, &w->d, MDB_NEXT);
    if (rc == MDB_NOTFOUND)
        return 1;
    if (rc != 0)
        return loom__mdb_err(rc, "machine list");
    return (w->k.mv_size >= 4 && loom__get_be32(w->k.mv_data) == w->ns.v) ? 0 : 1;
}

static int list_next(struct list_walk *w)
{
    int rc = mdb_cursor_get(w->c, &w->k, &w->d, MDB_NEXT);
    if (rc == MDB_NOTFOUND)
        return 1;
    if (rc != 0)
        return loom__mdb_err(rc, "machine list");
    return (w->k.mv_size >= 4 && loom__get_be32(w->k.mv_data) == w->ns.v) ? 0 : 1;
}

static int list_read(struct list_walk *w, loom_machine *m)
{
    if (w->d.mv_size != 8)
        return loom_seterr(LOOM_ECORRUPTED, "machine name entry of %zu bytes", w->d.mv_size);
    loom_machine_key key = {loom__get_be64(w->d.mv_data)};
    int rc = loom__machine_by_key(w->t->s, w->t->txn, key, m);
    if (rc == LOOM_EMACHINE_NOT_FOUND)
        return loom_seterr(LOOM_ECORRUPTED, "machine key %llu: name index without a machine",
                           (unsigned long long)key.v);
    return rc;
}

int loom_store_machines_list(loom_txn *t, loom_ns_id ns, loom_status status, loom_slice after,
                             bool has_after, loom_machine *out, size_t cap, loom_slice *next_after,
                             bool *more)
{
    if (cap > INT32_MAX / 128 || (unsigned)status > LOOM_STATUS_RETRYING ||
        (has_after && after.len > LOOM_STORE_MAX_ID_LEN))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "machine list: bad status, cursor or cap");
    struct list_walk w = {.t = t, .ns = ns};
    int rc = mdb_cursor_open(t->txn, t->s->dbi[LOOM__DB_MACHINES], &w.c);
    if (rc != 0)
        return loom__mdb_err(rc, "machine cursor");
    size_t n = 0, budget = 64 * cap + 1024;
    bool maybe_more = false;
    loom_slice last = {NULL, 0};
    rc = cap ? list_seek(&w, after, has_after) : 1;
    while (rc == 0) {
        if (n == cap || budget-- == 0) {
            maybe_more = true;
            break;
        }
        loom_machine m;
        rc = list_read(&w, &m);
        if (rc != 0)
            break;
        last = m.id;
        if (status == LOOM_STATUS_NONE || m.status == status)
            out[n++] = m;
        rc = list_next(&w);
    }
    mdb_cursor_close(w.c);
    if (rc < 0)
        return rc;
    if (next_after)
        *next_after = last;
    if (more)
        *more = maybe_more;
    return (int)n;
}
