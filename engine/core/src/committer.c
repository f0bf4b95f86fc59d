/* The committer thread: group commit. Every step result waiting when the
 * thread wakes goes into one loom_store_commit (one write transaction, one
 * fsync); then the loop is woken to answer the clients. A client hears
 * "ok" only from loom__step_committed, after the fsync. */
#include <stdlib.h>

#include "engine_int.h"

/* Most loom_steps per batch: the store's limit, less room for the two
 * loom_steps a step may carry. */
#define BATCH_MAX (LOOM_STORE_MAX_BATCH_STEPS - 2)

static size_t take_batch(loom_engine *e, loom__step **head)
{
    size_t n = 0;
    loom__step *h = e->cm_todo_head, *last = NULL;
    for (loom__step *s = h; s && n + s->nst <= BATCH_MAX; s = s->cnext) {
        n += s->nst;
        last = s;
    }
    LOOM_ASSERT(last != NULL);
    e->cm_todo_head = last->cnext;
    if (!e->cm_todo_head)
        e->cm_todo_tail = NULL;
    last->cnext = NULL;
    *head = h;
    return n;
}

static void commit_batch(loom_engine *e, loom__step *head, size_t n, loom_step *buf)
{
    size_t k = 0;
    for (loom__step *s = head; s; s = s->cnext)
        for (size_t i = 0; i < s->nst; i++)
            buf[k++] = s->st[i];
    LOOM_ASSERT(k == n);
    int rc = loom_store_commit(e->store, buf, n);
    if (rc)
        loom_log(LOOM_LOG_ERROR, "commit of %zu steps failed: %s (%s)", n, loom_err_name(rc),
                 loom_errdetail());
    k = 0;
    for (loom__step *s = head; s; s = s->cnext) {
        s->commit_rc = rc;
        for (size_t i = 0; i < s->nst; i++)
            s->st[i] = buf[k++];
    }
}

static void *committer_main(void *arg)
{
    loom_engine *e = arg;
    pthread_setname_np(pthread_self(), "loom-committer");
    loom_step *buf = malloc(BATCH_MAX * sizeof *buf);
    LOOM_ASSERT(buf != NULL);
    pthread_mutex_lock(&e->cm_mutex);
    for (;;) {
        while (!e->cm_todo_head && !e->cm_quit)
            pthread_cond_wait(&e->cm_cond, &e->cm_mutex);
        if (!e->cm_todo_head)
            break; /* quit with nothing left: pending work is always committed first */
        loom__step *head;
        size_t n = take_batch(e, &head);
        pthread_mutex_unlock(&e->cm_mutex);
        commit_batch(e, head, n, buf);
        pthread_mutex_lock(&e->cm_mutex);
        loom__step *tail = head;
        while (tail->cnext)
            tail = tail->cnext;
        if (e->cm_done_tail)
            e->cm_done_tail->cnext = head;
        else
            e->cm_done_head = head;
        e->cm_done_tail = tail;
        uv_async_send(&e->cm_async);
    }
    pthread_mutex_unlock(&e->cm_mutex);
    free(buf);
    return NULL;
}

static void on_committed(uv_async_t *a)
{
    loom_engine *e = a->data;
    pthread_mutex_lock(&e->cm_mutex);
    loom__step *s = e->cm_done_head;
    e->cm_done_head = e->cm_done_tail = NULL;
    pthread_mutex_unlock(&e->cm_mutex);
    while (s) {
        loom__step *next = s->cnext;
        s->cnext = NULL;
        loom__step_committed(s);
        s = next;
    }
    loom__ready_drain(e);
}

static void on_check(uv_check_t *h)
{
    loom_engine *e = h->data;
    if (!e->cm_local_head)
        return;
    pthread_mutex_lock(&e->cm_mutex);
    if (e->cm_todo_tail)
        e->cm_todo_tail->cnext = e->cm_local_head;
    else
        e->cm_todo_head = e->cm_local_head;
    e->cm_todo_tail = e->cm_local_tail;
    pthread_cond_signal(&e->cm_cond);
    pthread_mutex_unlock(&e->cm_mutex);
    e->cm_local_head = e->cm_local_tail = NULL;
}

int loom__committer_start(loom_engine *e)
{
    int rc = uv_async_init(&e->loop, &e->cm_async, on_committed);
    if (rc)
        return loom_seterr(LOOM_EINTERNAL, "uv_async_init: %s", uv_strerror(rc));
    e->cm_async.data = e;
    uv_check_init(&e->loop, &e->cm_check);
    e->cm_check.data = e;
    uv_check_start(&e->cm_check, on_check);
    rc = pthread_create(&e->cm_thread, NULL, committer_main, e);
    if (rc)
        return loom_seterr(LOOM_EINTERNAL, "pthread_create: %d", rc);
    e->cm_started = true;
    return 0;
}

/* Commits everything already submitted, then joins the thread. The loop
 * must still run afterwards to deliver the last results (cm_async). */
void loom__committer_stop(loom_engine *e)
{
    if (!e->cm_started)
        return;
    on_check(&e->cm_check);
    pthread_mutex_lock(&e->cm_mutex);
    e->cm_quit = true;
    pthread_cond_signal(&e->cm_cond);
    pthread_mutex_unlock(&e->cm_mutex);
    pthread_join(e->cm_thread, NULL);
    e->cm_started = false;
}

void loom__committer_submit(loom_engine *e, loom__step *s)
{
    LOOM_ASSERT(s->nst >= 1);
    LOOM_ASSERT(s->nst <= 2);
    s->cnext = NULL;
    if (e->cm_local_tail)
        e->cm_local_tail->cnext = s;
    else
        e->cm_local_head = s;
    e->cm_local_tail = s;
}
