/* Shared fixtures of the storage tests: scratch directories and small
 * builders for steps. Header-only so each test binary stays one file. */
#ifndef LOOM_TEST_STORAGE_HELPERS_H
#define LOOM_TEST_STORAGE_HELPERS_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/store.h"

static inline char *th_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    cr_assert_not_null(path);
    snprintf(path, 4096, "%s/loom-storage-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(path), "mkdtemp %s", path);
    return path;
}

static inline int th_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void th_rmtree(char *path)
{
    if (path)
        nftw(path, th_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

/* A store in a fresh scratch directory. */
typedef struct {
    char *dir;
    loom_store *s;
    loom_ns_id ns;
} th_env;

static inline void th_open(th_env *e, const loom_store_opts *opts)
{
    if (!e->dir)
        e->dir = th_mkdtemp();
    int rc = loom_store_open(&e->s, e->dir, opts);
    cr_assert_eq(rc, 0, "open: %s %s", loom_err_name(rc), loom_errdetail());
}

/* Opens a store (in e->dir if set, else a fresh scratch directory) with
 * one namespace "test". */
static inline void th_setup(th_env *e, const loom_store_opts *opts)
{
    char *dir = e->dir;
    memset(e, 0, sizeof *e);
    e->dir = dir;
    th_open(e, opts);
    int rc = loom_store_ns_create(e->s, loom_slice_str("test"), loom_slice_str("cfg"), &e->ns);
    cr_assert_eq(rc, 0, "ns create: %s %s", loom_err_name(rc), loom_errdetail());
}

static inline void th_teardown(th_env *e)
{
    loom_store_close(e->s);
    e->s = NULL;
    th_rmtree(e->dir);
    e->dir = NULL;
}

static inline loom_step th_step(const th_env *e, const char *id)
{
    loom_step st;
    memset(&st, 0, sizeof st);
    st.ns = e->ns;
    st.id = loom_slice_str(id);
    st.now_ms = 1000;
    return st;
}

/* Commits one step and asserts the transaction and the step succeeded. */
static inline loom_step th_commit1(th_env *e, loom_step st)
{
    int rc = loom_store_commit(e->s, &st, 1);
    cr_assert_eq(rc, 0, "commit: %s %s", loom_err_name(rc), loom_errdetail());
    cr_assert_eq(st.result, 0, "step: %s %s", loom_err_name(st.result), loom_errdetail());
    return st;
}

/* Commits one step whose transaction must succeed; returns the step's own
 * result, for tests of steps refused alone. */
static inline int th_commit_result(th_env *e, loom_step *st)
{
    int rc = loom_store_commit(e->s, st, 1);
    cr_assert_eq(rc, 0, "commit: %s %s", loom_err_name(rc), loom_errdetail());
    return st->result;
}

/* Creates machine `id` with n events whose data is "<id>:<event id>". */
static inline loom_machine_key th_create(th_env *e, const char *id, unsigned n)
{
    loom_new_event *evs = calloc(n ? n : 1, sizeof *evs);
    char (*bufs)[64] = calloc(n ? n : 1, 64);
    for (unsigned i = 0; i < n; i++) {
        snprintf(bufs[i], 64, "%s:%u", id, i + 1);
        evs[i].format_version = 1;
        evs[i].data = loom_slice_str(bufs[i]);
    }
    loom_step st = th_step(e, id);
    st.create = true;
    st.events = evs;
    st.n_events = n;
    st = th_commit1(e, st);
    free(evs);
    free(bufs);
    return st.key;
}

static inline loom_txn *th_read(th_env *e)
{
    loom_txn *t;
    int rc = loom_store_read_begin(e->s, &t);
    cr_assert_eq(rc, 0, "read begin: %s", loom_err_name(rc));
    return t;
}

#endif
