/* Durable timers: the store's timers index is the truth; the next
 * LOOM_TIMER_WINDOW_MS of it is loaded into an in-memory min-heap and one
 * uv_timer_t is armed for the earliest entry. An entry that comes due
 * wakes its machine, which re-reads its meta and runs what is really due
 * (so stale or duplicate heap entries are harmless). */
#include <time.h>

#include "engine_int.h"

#define RELOAD_PAGE 1024

int64_t loom__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loom__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_wake_timer(uv_timer_t *t);

static void arm(loom_engine *e)
{
    if (e->stopping)
        return;
    int64_t now = loom__now_ms();
    int64_t at = e->window_end_ms;
    const loom__wake *w = loom__wheap_peek(&e->heap);
    if (w && w->wake_ms < at)
        at = w->wake_ms;
    uint64_t delay = at > now ? (uint64_t)(at - now) : 0;
    uv_timer_start(&e->wake_timer, on_wake_timer, delay, 0);
}

/* Refills the heap from the store: every entry due before now + window, at
 * most the heap's capacity; if that many are due, the window ends at the
 * last one loaded. Entries of failed machines are passed over (their scan
 * costs a meta read each per reload, about once a minute). */
static void reload(loom_engine *e)
{
    loom__wheap_clear(&e->heap);
    int64_t now = loom__now_ms();
    e->window_end_ms = now + LOOM_TIMER_WINDOW_MS;
    loom_txn *txn;
    if (loom_store_read_begin(e->store, &txn) != 0) {
        e->window_end_ms = now + 100; /* try again soon */
        return;
    }
    loom_timer_entry page[RELOAD_PAGE];
    loom_timer_entry after;
    bool have_after = false;
    for (;;) {
        int n = loom_store_timers_due(txn, (uint64_t)e->window_end_ms, have_after ? &after : NULL,
                                      page, RELOAD_PAGE);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            /* a failed machine keeps its timer for SimpleRepair but must not
             * take heap room from live timers at every reload */
            loom_machine mm;
            if (loom_store_machine_get_by_key(txn, page[i].key, &mm) == 0 &&
                mm.status == LOOM_STATUS_FAILED)
                continue;
            if (loom__wheap_push(&e->heap, (int64_t)page[i].wake_ms, page[i].key.v) != 0) {
                e->window_end_ms = (int64_t)page[i].wake_ms;
                loom_txn_end(txn);
                return;
            }
        }
        after = page[n - 1];
        have_after = true;
        if (n < RELOAD_PAGE)
            break;
    }
    loom_txn_end(txn);
}

static void on_wake_timer(uv_timer_t *t)
{
    loom_engine *e = t->data;
    int64_t now = loom__now_ms();
    /* bounded work per pass so clients are served between bursts */
    for (int budget = 4096; budget > 0; budget--) {
        const loom__wake *w = loom__wheap_peek(&e->heap);
        if (!w || w->wake_ms > now)
            break;
        loom_machine_key key = {w->machine_key};
        loom__wheap_pop(&e->heap);
        loom__machine_wake(e, key);
    }
    if (now >= e->window_end_ms)
        reload(e);
    loom__ready_drain(e);
    arm(e);
}

void loom__timers_note(loom_engine *e, uint64_t wake_ms, loom_machine_key key)
{
    if (wake_ms == 0 || (int64_t)wake_ms > e->window_end_ms)
        return; /* a later reload finds it in the store */
    const loom__wake *w = loom__wheap_peek(&e->heap);
    bool earlier = !w || (int64_t)wake_ms < w->wake_ms;
    if (loom__wheap_push(&e->heap, (int64_t)wake_ms, key.v) != 0) {
        /* heap full: shrink the window so the entry is found by a reload */
        e->window_end_ms = (int64_t)wake_ms;
        earlier = true;
    }
    if (earlier)
        arm(e);
}

void loom__timers_start(loom_engine *e)
{
    loom__wheap_init(&e->heap, LOOM_TIMER_HEAP_MAX);
    uv_timer_init(&e->loop, &e->wake_timer);
    e->wake_timer.data = e;
    reload(e);
    arm(e);
}
