/* The retry policy (engine/core/src/retry.c): delays, caps, jitter bounds,
 * exhaustion by attempts and by total time, reproducibility by seed. */
#include <criterion/criterion.h>

#include "loom/engine.h"

static loom_retry_policy policy(uint32_t initial, double factor, uint32_t max_interval,
                                uint32_t max_attempts, uint64_t max_total, double jitter)
{
    loom_retry_policy p = {initial, factor, max_interval, max_attempts, max_total, jitter};
    cr_assert_eq(loom_retry_policy_check(&p), 0, "%s", loom_errdetail());
    return p;
}

Test(retry, base_delays_grow_by_factor_then_cap)
{
    loom_retry_policy p = policy(100, 2.0, 1000, 0, 1000000, 0);
    uint64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (uint32_t n = 1; n <= 7; n++)
        cr_assert_eq(loom_retry_base_delay_ms(&p, n), want[n - 1], "n=%u", n);
    /* huge n must not overflow */
    cr_assert_eq(loom_retry_base_delay_ms(&p, 100000), 1000);
}

Test(retry, sequence_without_jitter_is_exact)
{
    loom_retry_policy p = policy(50, 3.0, 100000, 5, 0, 0);
    loom_rng rng;
    loom_rng_seed(&rng, 1);
    int64_t now = 1000000, first = now, next;
    uint64_t want[] = {50, 150, 450, 1350};
    for (uint32_t n = 1; n <= 4; n++) {
        cr_assert_eq(loom_retry_next(&p, n, first, now, &rng, &next), 1);
        cr_assert_eq(next - now, (int64_t)want[n - 1]);
        now = next;
    }
    /* the fifth failure is the fifth attempt: exhausted */
    cr_assert_eq(loom_retry_next(&p, 5, first, now, &rng, &next), 0);
}

Test(retry, exhaustion_by_total_time)
{
    loom_retry_policy p = policy(100, 2.0, 10000, 0, 1000, 0);
    loom_rng rng;
    loom_rng_seed(&rng, 7);
    int64_t first = 0, now = 0, next;
    uint32_t n = 1;
    while (loom_retry_next(&p, n, first, now, &rng, &next) == 1) {
        cr_assert_leq(next - first, 1000);
        now = next;
        n++;
        cr_assert_lt(n, 100);
    }
    /* 100 + 200 + 400 = 700 fits; + 800 = 1500 does not */
    cr_assert_eq(n, 4);
}

Test(retry, jitter_stays_within_bounds_and_varies)
{
    loom_retry_policy p = policy(1000, 1.0, 1000, 0, 1000000000, 0.25);
    loom_rng rng;
    loom_rng_seed(&rng, 42);
    int64_t lo = INT64_MAX, hi = 0, next;
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(loom_retry_next(&p, 1, 0, 0, &rng, &next), 1);
        cr_assert_geq(next, 750);
        cr_assert_leq(next, 1250);
        lo = next < lo ? next : lo;
        hi = next > hi ? next : hi;
    }
    /* uniform over the band: both ends are approached */
    cr_assert_lt(lo, 760);
    cr_assert_gt(hi, 1240);
}

Test(retry, same_seed_same_sequence)
{
    loom_retry_policy p = policy(10, 2.0, 5000, 20, 0, 0.5);
    loom_rng a, b;
    loom_rng_seed(&a, 99);
    loom_rng_seed(&b, 99);
    for (uint32_t n = 1; n < 20; n++) {
        int64_t x, y;
        cr_assert_eq(loom_retry_next(&p, n, 0, 0, &a, &x), 1);
        cr_assert_eq(loom_retry_next(&p, n, 0, 0, &b, &y), 1);
        cr_assert_eq(x, y);
    }
}

Test(retry, bad_policies_are_refused)
{
    loom_retry_policy p;
    loom_retry_policy_default(&p);
    cr_assert_eq(loom_retry_policy_check(&p), 0);
    p.max_attempts = 0;
    p.max_total_ms = 0;
    cr_assert_eq(loom_retry_policy_check(&p), LOOM_EINVALID_ARGUMENT);
    loom_retry_policy_default(&p);
    p.factor = 0.5;
    cr_assert_eq(loom_retry_policy_check(&p), LOOM_EINVALID_ARGUMENT);
    loom_retry_policy_default(&p);
    p.jitter = 1.5;
    cr_assert_eq(loom_retry_policy_check(&p), LOOM_EINVALID_ARGUMENT);
    loom_retry_policy_default(&p);
    p.initial_interval_ms = 0;
    cr_assert_eq(loom_retry_policy_check(&p), LOOM_EINVALID_ARGUMENT);
    loom_retry_policy_default(&p);
    p.max_interval_ms = 1;
    cr_assert_eq(loom_retry_policy_check(&p), LOOM_EINVALID_ARGUMENT);
}
