/* Engine containers (engine/core/src/util.c): hash map and wake heap. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "loom/error.h"
#include "util.h"

Test(util, hmap_put_get_del_many)
{
    loom__hmap m;
    cr_assert_eq(loom__hmap_init(&m, 4), 0);
    static char keys[5000][16];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        cr_assert_eq(loom__hmap_put(&m, keys[i], strlen(keys[i]), keys[i]), 0);
    }
    cr_assert_eq(m.count, 5000);
    cr_assert_gt(m.nbuckets, 4); /* grew */
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(loom__hmap_get(&m, keys[i], strlen(keys[i])), keys[i]);
    cr_assert_null(loom__hmap_get(&m, "nope", 4));
    for (int i = 0; i < 5000; i += 2)
        cr_assert_eq(loom__hmap_del(&m, keys[i], strlen(keys[i])), keys[i]);
    cr_assert_null(loom__hmap_del(&m, keys[0], strlen(keys[0])));
    cr_assert_eq(m.count, 2500);
    cr_assert_null(loom__hmap_get(&m, keys[2], strlen(keys[2])));
    cr_assert_eq(loom__hmap_get(&m, keys[3], strlen(keys[3])), keys[3]);
    loom__hmap_free(&m);
}

Test(util, wheap_orders_by_time_then_key)
{
    loom__wheap h;
    loom__wheap_init(&h, 1000);
    unsigned seed = 5;
    for (int i = 0; i < 1000; i++) {
        seed = seed * 1103515245u + 12345u;
        cr_assert_eq(loom__wheap_push(&h, (int64_t)(seed % 500), (uint64_t)i), 0);
    }
    cr_assert_eq(loom__wheap_push(&h, 1, 1), LOOM_ERESOURCE_EXHAUSTED);
    int64_t prev_t = -1;
    uint64_t prev_k = 0;
    for (int i = 0; i < 1000; i++) {
        const loom__wake *w = loom__wheap_peek(&h);
        cr_assert_not_null(w);
        cr_assert(w->wake_ms > prev_t || (w->wake_ms == prev_t && w->machine_key > prev_k));
        prev_t = w->wake_ms;
        prev_k = w->machine_key;
        loom__wheap_pop(&h);
    }
    cr_assert_null(loom__wheap_peek(&h));
    loom__wheap_free(&h);
}
