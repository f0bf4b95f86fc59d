/* Containers used by the engine's loop thread only (no locking). */
#include <stdlib.h>
#include <string.h>

#include "loom/error.h"
#include "util.h"

/* FNV-1a then a 64-bit finaliser: short keys (ids) spread well. */
uint64_t loom__hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int loom__hmap_init(loom__hmap *m, size_t nbuckets_pow2)
{
    LOOM_ASSERT(nbuckets_pow2 >= 2);
    LOOM_ASSERT((nbuckets_pow2 & (nbuckets_pow2 - 1)) == 0);
    m->buckets = calloc(nbuckets_pow2, sizeof *m->buckets);
    m->nbuckets = nbuckets_pow2;
    m->count = 0;
    return m->buckets ? 0 : LOOM_ENOMEM;
}

void loom__hmap_free(loom__hmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        loom__hent *e = m->buckets[i];
        while (e) {
            loom__hent *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

static loom__hent **slot(const loom__hmap *m, uint64_t h, const void *key, size_t klen)
{
    loom__hent **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp) {
        loom__hent *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return pp;
        pp = &e->next;
    }
    return pp;
}

void *loom__hmap_get(const loom__hmap *m, const void *key, size_t klen)
{
    loom__hent **pp = slot(m, loom__hash(key, klen), key, klen);
    return *pp ? (*pp)->val : NULL;
}

static void grow(loom__hmap *m)
{
    size_t n = m->nbuckets * 2;
    loom__hent **b = calloc(n, sizeof *b);
    if (!b)
        return; /* a longer chain is slower, not wrong */
    for (size_t i = 0; i < m->nbuckets; i++) {
        loom__hent *e = m->buckets[i];
        while (e) {
            loom__hent *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

int loom__hmap_put(loom__hmap *m, const void *key, size_t klen, void *val)
{
    uint64_t h = loom__hash(key, klen);
    loom__hent **pp = slot(m, h, key, klen);
    LOOM_ASSERT(*pp == NULL);
    loom__hent *e = malloc(sizeof *e);
    if (!e)
        return LOOM_ENOMEM;
    *e = (loom__hent){h, key, klen, val, NULL};
    *pp = e;
    if (++m->count > m->nbuckets)
        grow(m);
    return 0;
}

void *loom__hmap_del(loom__hmap *m, const void *key, size_t klen)
{
    loom__hent **pp = slot(m, loom__hash(key, klen), key, klen);
    loom__hent *e = *pp;
    if (!e)
        return NULL;
    void *val = e->val;
    *pp = e->next;
    free(e);
    LOOM_ASSERT(m->count > 0);
    m->count--;
    return val;
}

void loom__wheap_init(loom__wheap *h, size_t max)
{
    memset(h, 0, sizeof *h);
    h->max = max;
}

void loom__wheap_free(loom__wheap *h)
{
    free(h->v);
    memset(h, 0, sizeof *h);
}

void loom__wheap_clear(loom__wheap *h)
{
    h->n = 0;
}

static bool less(const loom__wake *a, const loom__wake *b)
{
    return a->wake_ms < b->wake_ms || (a->wake_ms == b->wake_ms && a->machine_key < b->machine_key);
}

int loom__wheap_push(loom__wheap *h, int64_t wake_ms, uint64_t machine_key)
{
    if (h->n >= h->max)
        return LOOM_ERESOURCE_EXHAUSTED;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        loom__wake *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return LOOM_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->v[i] = (loom__wake){wake_ms, machine_key};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!less(&h->v[i], &h->v[parent]))
            break;
        loom__wake t = h->v[i];
        h->v[i] = h->v[parent];
        h->v[parent] = t;
        i = parent;
    }
    return 0;
}

const loom__wake *loom__wheap_peek(const loom__wheap *h)
{
    return h->n ? &h->v[0] : NULL;
}

void loom__wheap_pop(loom__wheap *h)
{
    LOOM_ASSERT(h->n > 0);
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && less(&h->v[l], &h->v[m]))
            m = l;
        if (r < h->n && less(&h->v[r], &h->v[m]))
            m = r;
        if (m == i)
            break;
        loom__wake t = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = t;
        i = m;
    }
}
