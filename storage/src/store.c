/* Opening and closing the store, transactions, map growth, the LMDB error
 * table, counters and statistics. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/statvfs.h>

const char *const loom__db_names[LOOM__DB_COUNT] = {
#define LOOM__DB_NAME(name, str) str,
    LOOM__DB_MAP(LOOM__DB_NAME)
#undef LOOM__DB_NAME
};

#define DEFAULT_MAP_INITIAL (64ull << 20)
#define DEFAULT_MAP_MAX (16ull << 30)
#define DEFAULT_MAX_READERS 126u

/* Read transactions this thread holds (of any store): growing the map
 * waits for all readers, so a thread holding one must not wait for it. */
static _Thread_local _Atomic unsigned reads_held;
/* Set by loom__mdb_err when LMDB said MDB_MAP_FULL: the write path then
 * grows the map instead of failing (ENOSPC maps to the same Loom code but
 * must not trigger growth). */
static _Thread_local bool map_full_seen;

/* ------------------------------------------------------------ errors */

int loom__mdb_err(int rc, const char *what)
{
    int err;
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        err = LOOM_ENOT_FOUND;
        break;
    case MDB_MAP_FULL:
        map_full_seen = true;
        err = LOOM_ESTORAGE_FULL;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
        err = LOOM_ECORRUPTED;
        break;
    case MDB_VERSION_MISMATCH:
        err = LOOM_EUNSUPPORTED;
        break;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
        err = LOOM_EBUSY;
        break;
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
        err = LOOM_ERESOURCE_EXHAUSTED;
        break;
    case MDB_BAD_VALSIZE:
        err = LOOM_EINVALID_ARGUMENT;
        break;
    case MDB_PANIC:
        err = LOOM_EIO;
        break;
    case MDB_KEYEXIST:
    case MDB_DBS_FULL:
    case MDB_TLS_FULL:
    case MDB_BAD_RSLOT:
    case MDB_BAD_TXN:
    case MDB_BAD_DBI:
        err = LOOM_EINTERNAL;
        break;
    default:
        err = rc > 0 ? loom_err_from_errno(rc) : LOOM_EIO;
        break;
    }
    return loom_seterr(err, "%s: %s", what, mdb_strerror(rc));
}

/* ------------------------------------------------------------ map gate */

static void gate_read_enter(loom_store *s)
{
    pthread_mutex_lock(&s->gate_lock);
    while (s->gate_resizers > 0)
        pthread_cond_wait(&s->gate_cond, &s->gate_lock);
    s->gate_readers++;
    pthread_mutex_unlock(&s->gate_lock);
}

static void gate_read_leave(loom_store *s)
{
    pthread_mutex_lock(&s->gate_lock);
    LOOM_ASSERT(s->gate_readers > 0);
    if (--s->gate_readers == 0)
        pthread_cond_broadcast(&s->gate_cond);
    pthread_mutex_unlock(&s->gate_lock);
}

static void gate_resize_enter(loom_store *s)
{
    pthread_mutex_lock(&s->gate_lock);
    s->gate_resizers++;
    while (s->gate_readers > 0)
        pthread_cond_wait(&s->gate_cond, &s->gate_lock);
    pthread_mutex_unlock(&s->gate_lock);
}

static void gate_resize_leave(loom_store *s)
{
    pthread_mutex_lock(&s->gate_lock);
    LOOM_ASSERT(s->gate_resizers > 0);
    s->gate_resizers--;
    pthread_cond_broadcast(&s->gate_cond);
    pthread_mutex_unlock(&s->gate_lock);
}

/* ------------------------------------------------------------ map size */

/* Grows the map (write_lock held, no write transaction open). */
static int grow_map(loom_store *s)
{
    if (s->map_size >= s->map_size_max)
        return loom_seterr(LOOM_ESTORAGE_FULL,
                           "store map is full at its maximum of %llu bytes; remove machines or "
                           "raise the maximum",
                           (unsigned long long)s->map_size_max);
    if (reads_held > 0)
        return loom_seterr(LOOM_EBUSY, "the map must grow but this thread holds a read "
                                       "transaction; end it before writing");
    uint64_t size = s->map_size * 2;
    if (size > s->map_size_max || size < s->map_size)
        size = s->map_size_max;
    gate_resize_enter(s);
    int rc = mdb_env_set_mapsize(s->env, (size_t)size);
    gate_resize_leave(s);
    if (rc != 0)
        return loom__mdb_err(rc, "grow the map");
    s->map_size = size;
    atomic_fetch_add_explicit(&s->map_grows, 1, memory_order_relaxed);
    return 0;
}

/* Another process grew the map: adopt its size (write_lock held). */
static int adopt_map_size(loom_store *s)
{
    if (reads_held > 0)
        return loom_seterr(LOOM_EBUSY, "map resized by another process");
    gate_resize_enter(s);
    int rc = mdb_env_set_mapsize(s->env, 0);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    gate_resize_leave(s);
    s->map_size = info.me_mapsize;
    return loom__mdb_err(rc, "adopt the map size");
}

/* LMDB reports a short page write as EIO, and a filling disk usually
 * gives a short write before ENOSPC: an EIO with the disk (nearly) full is
 * reported as the full disk it most likely is. */
#define DISK_FULL_MARGIN (64ull << 20)

static int classify_io_error(loom_store *s, int rc)
{
    struct statvfs vfs;
    if (rc != LOOM_EIO || statvfs(s->dir, &vfs) != 0)
        return rc;
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (avail >= DISK_FULL_MARGIN)
        return rc;
    return loom_seterr(LOOM_ESTORAGE_FULL, "disk full: %llu bytes free (%s)",
                       (unsigned long long)avail, loom_errdetail());
}

int loom__write(loom_store *s, loom__write_fn fn, void *arg)
{
    int rc;
    pthread_mutex_lock(&s->write_lock);
    for (;;) {
        MDB_txn *txn;
        map_full_seen = false;
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) {
            rc = adopt_map_size(s);
            if (rc == 0)
                continue;
            break;
        }
        if (rc != 0) {
            rc = loom__mdb_err(rc, "begin write transaction");
            break;
        }
        rc = fn(s, txn, arg);
        if (rc == 0)
            rc = loom__mdb_err(mdb_txn_commit(txn), "commit");
        else
            mdb_txn_abort(txn);
        if (rc == 0) {
            atomic_fetch_add_explicit(&s->commits, 1, memory_order_relaxed);
            break;
        }
        if (!map_full_seen) {
            rc = classify_io_error(s, rc);
            break;
        }
        rc = grow_map(s);
        if (rc != 0)
            break;
    }
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

static int grow(uint8_t **buf, size_t *cap, size_t n, uint8_t **out)
{
    if (n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < n)
            c *= 2;
        uint8_t *p = realloc(*buf, c);
        if (!p)
            return loom_seterr(LOOM_ENOMEM, "buffer of %zu bytes", c);
        *buf = p;
        *cap = c;
    }
    *out = *buf;
    return 0;
}

int loom__scratch(loom_store *s, size_t n, uint8_t **out)
{
    return grow(&s->scratch, &s->scratch_cap, n, out);
}

int loom__hold(loom_store *s, size_t n, uint8_t **out)
{
    return grow(&s->hold, &s->hold_cap, n, out);
}

/* ------------------------------------------------------------ counters */

int loom__counter_get(loom_store *s, MDB_txn *txn, const char *name, uint64_t *v)
{
    MDB_val k = loom__val(name, strlen(name)), d;
    int rc = mdb_get(txn, s->dbi[LOOM__DB_COUNTERS], &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc != 0)
        return loom__mdb_err(rc, "read counter");
    if (d.mv_size != 8)
        return loom_seterr(LOOM_ECORRUPTED, "counter %s has %zu bytes, not 8", name, d.mv_size);
    *v = loom__get_be64(d.mv_data);
    return 0;
}

int loom__counter_put(loom_store *s, MDB_txn *txn, const char *name, uint64_t v)
{
    uint8_t b[8];
    loom__put_be64(b, v);
    MDB_val k = loom__val(name, strlen(name)), d = loom__val(b, 8);
    return loom__mdb_err(mdb_put(txn, s->dbi[LOOM__DB_COUNTERS], &k, &d, 0), "write counter");
}

uint64_t loom__chain_seed(loom_machine_key key)
{
    uint8_t b[8];
    loom__put_be64(b, key.v);
    return loom__xxh64(b, 8, 0x4c4f4f4du /* "LOOM" */);
}

/* ------------------------------------------------------------ open */

static int open_tables(loom_store *s, MDB_txn *txn, void *arg)
{
    (void)arg;
    for (int i = 0; i < LOOM__DB_COUNT; i++) {
        int rc = mdb_dbi_open(txn, loom__db_names[i], MDB_CREATE, &s->dbi[i]);
        if (rc != 0)
            return loom__mdb_err(rc, loom__db_names[i]);
    }
    uint64_t layout;
    int rc = loom__counter_get(s, txn, "layout", &layout);
    if (rc != 0)
        return rc;
    if (layout == 0)
        return loom__counter_put(s, txn, "layout", LOOM__LAYOUT_VERSION);
    if (layout != LOOM__LAYOUT_VERSION)
        return loom_seterr(LOOM_EUNSUPPORTED, "store layout version %llu, this build reads %u",
                           (unsigned long long)layout, LOOM__LAYOUT_VERSION);
    return 0;
}

static int env_open(loom_store *s, const char *dir, const loom_store_opts *o)
{
    unsigned flags = MDB_NOTLS;
    flags |= (o->flags & LOOM_STORE_NOSYNC) ? MDB_NOSYNC : 0;
    flags |= (o->flags & LOOM_STORE_NOMETASYNC) ? MDB_NOMETASYNC : 0;
    flags |= (o->flags & LOOM_STORE_WRITEMAP) ? MDB_WRITEMAP : 0;
    int rc = mdb_env_create(&s->env);
    if (rc != 0)
        return loom__mdb_err(rc, "create environment");
    mdb_env_set_maxdbs(s->env, LOOM__DB_COUNT);
    mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : DEFAULT_MAX_READERS);
    mdb_env_set_mapsize(s->env, (size_t)s->map_size);
    rc = mdb_env_open(s->env, dir, flags, 0600);
    if (rc != 0) {
        rc = loom__mdb_err(rc, dir);
        mdb_env_close(s->env);
        s->env = NULL;
        return rc;
    }
    int dead;
    mdb_reader_check(s->env, &dead); /* frees slots of readers killed earlier */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize; /* an existing store may be larger */
    if (s->map_size > s->map_size_max)
        s->map_size_max = s->map_size;
    return 0;
}

static int init_locks(loom_store *s)
{
    int rc = pthread_mutex_init(&s->write_lock, NULL);
    if (rc != 0)
        return loom_seterr(loom_err_from_errno(rc), "mutex init");
    rc = pthread_mutex_init(&s->gate_lock, NULL);
    if (rc != 0)
        goto fail_write;
    rc = pthread_cond_init(&s->gate_cond, NULL);
    if (rc != 0)
        goto fail_gate;
    return 0;
fail_gate:
    pthread_mutex_destroy(&s->gate_lock);
fail_write:
    pthread_mutex_destroy(&s->write_lock);
    return loom_seterr(loom_err_from_errno(rc), "lock init");
}

static void destroy_locks(loom_store *s)
{
    pthread_cond_destroy(&s->gate_cond);
    pthread_mutex_destroy(&s->gate_lock);
    pthread_mutex_destroy(&s->write_lock);
}

int loom_store_open(loom_store **out, const char *dir, const loom_store_opts *opts)
{
    static const loom_store_opts defaults;
    const loom_store_opts *o = opts ? opts : &defaults;
    if (!out || !dir)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "store open: NULL argument");
    if (o->flags & ~(unsigned)(LOOM_STORE_NOSYNC | LOOM_STORE_NOMETASYNC | LOOM_STORE_WRITEMAP))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "store open: unknown flags 0x%x", o->flags);
    loom_store *s = calloc(1, sizeof *s);
    if (!s)
        return loom_seterr(LOOM_ENOMEM, "store open");
    s->map_size = o->map_size_initial ? o->map_size_initial : DEFAULT_MAP_INITIAL;
    s->map_size_max = o->map_size_max ? o->map_size_max : DEFAULT_MAP_MAX;
    if (s->map_size > s->map_size_max)
        s->map_size = s->map_size_max;
    s->flags = o->flags;
    s->dir = strdup(dir);
    int rc = s->dir ? init_locks(s) : loom_seterr(LOOM_ENOMEM, "store open");
    if (rc != 0)
        goto fail_alloc;
    rc = env_open(s, dir, o);
    if (rc != 0)
        goto fail_locks;
    rc = loom__write(s, open_tables, NULL);
    if (rc != 0)
        goto fail_env;
    *out = s;
    return 0;
fail_env:
    mdb_env_close(s->env);
fail_locks:
    destroy_locks(s);
fail_alloc:
    free(s->dir);
    free(s);
    return rc;
}

void loom_store_close(loom_store *s)
{
    if (!s)
        return;
    mdb_env_close(s->env);
    destroy_locks(s);
    free(s->scratch);
    free(s->hold);
    free(s->dir);
    free(s);
}

/* ------------------------------------------------------------ read txns */

int loom_store_read_begin(loom_store *s, loom_txn **out)
{
    loom_txn *t = malloc(sizeof *t);
    if (!t)
        return loom_seterr(LOOM_ENOMEM, "read transaction");
    for (;;) {
        gate_read_enter(s);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
        if (rc == 0)
            break;
        gate_read_leave(s);
        if (rc == MDB_MAP_RESIZED && reads_held == 0) {
            pthread_mutex_lock(&s->write_lock);
            rc = adopt_map_size(s);
            pthread_mutex_unlock(&s->write_lock);
            if (rc == 0)
                continue;
        }
        free(t);
        return rc < 0 ? rc : loom__mdb_err(rc, "begin read transaction");
    }
    t->s = s;
    t->held = &reads_held;
    atomic_fetch_add(t->held, 1);
    *out = t;
    return 0;
}

void loom_txn_end(loom_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    gate_read_leave(t->s);
    LOOM_ASSERT(atomic_load(t->held) > 0);
    atomic_fetch_sub(t->held, 1);
    free(t);
}

/* ------------------------------------------------------------ stats */

int loom_store_stats_get(loom_store *s, loom_store_stats *out)
{
    memset(out, 0, sizeof *out);
    loom_txn *t;
    int rc = loom_store_read_begin(s, &t);
    if (rc != 0)
        return rc;
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    out->map_size = info.me_mapsize;
    out->map_size_max = s->map_size_max;
    out->page_size = st.ms_psize;
    out->pages_used = info.me_last_pgno + 1;
    out->map_grows = atomic_load_explicit(&s->map_grows, memory_order_relaxed);
    out->commits = atomic_load_explicit(&s->commits, memory_order_relaxed);
    out->steps = atomic_load_explicit(&s->steps, memory_order_relaxed);
    out->events = atomic_load_explicit(&s->events, memory_order_relaxed);
    if (mdb_stat(t->txn, s->dbi[LOOM__DB_META], &st) == 0)
        out->machines = st.ms_entries;
    if (mdb_stat(t->txn, s->dbi[LOOM__DB_EVENTS], &st) == 0)
        out->events_compacted = st.ms_entries;
    if (mdb_stat(t->txn, s->dbi[LOOM__DB_SINK], &st) == 0)
        out->sink_entries = st.ms_entries;
    loom_txn_end(t);
    return 0;
}
