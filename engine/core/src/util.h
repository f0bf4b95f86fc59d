/* Small containers for the engine: a byte-keyed hash map and a min-heap of
 * wake times. Internal (loom__ prefix). */
#ifndef LOOM_ENGINE_UTIL_H
#define LOOM_ENGINE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Chained hash map from borrowed key bytes to a value. The key memory must
 * stay valid and unchanged while the entry is in the map (it usually lives
 * in the value). */
typedef struct loom__hent {
    uint64_t hash;
    const void *key;
    size_t klen;
    void *val;
    struct loom__hent *next;
} loom__hent;

typedef struct loom__hmap {
    loom__hent **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
} loom__hmap;

uint64_t loom__hash(const void *key, size_t len);
int loom__hmap_init(loom__hmap *m, size_t nbuckets_pow2);
void loom__hmap_free(loom__hmap *m);
void *loom__hmap_get(const loom__hmap *m, const void *key, size_t klen);
/* LOOM_ENOMEM, or 0; the key must not be present. */
int loom__hmap_put(loom__hmap *m, const void *key, size_t klen, void *val);
/* Returns the removed value or NULL. */
void *loom__hmap_del(loom__hmap *m, const void *key, size_t klen);

/* Min-heap of (wake_ms, machine key). Duplicates and stale entries are
 * allowed: the engine re-reads the machine when an entry comes due, so the
 * store stays the only truth about timers. */
typedef struct loom__wake {
    int64_t wake_ms;
    uint64_t machine_key;
} loom__wake;

typedef struct loom__wheap {
    loom__wake *v;
    size_t n, cap, max;
} loom__wheap;

void loom__wheap_init(loom__wheap *h, size_t max);
void loom__wheap_free(loom__wheap *h);
void loom__wheap_clear(loom__wheap *h);
/* 0, or LOOM_ERESOURCE_EXHAUSTED when max entries are held (the caller then
 * relies on the next window reload), LOOM_ENOMEM. */
int loom__wheap_push(loom__wheap *h, int64_t wake_ms, uint64_t machine_key);
/* The earliest entry, or NULL. */
const loom__wake *loom__wheap_peek(const loom__wheap *h);
void loom__wheap_pop(loom__wheap *h);

#endif
