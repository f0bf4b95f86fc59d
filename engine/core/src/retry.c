/* Retry policy: exponential backoff with jitter, bounded by attempts and/or
 * total time. Pure (no clock, no global random state) so the whole
 * sequence of delays is reproducible in tests. */
#include <math.h>

#include "loom/engine.h"

/* Above this the policy is nonsense rather than patient (a week). */
#define RETRY_INTERVAL_CAP_MS (7u * 24u * 3600u * 1000u)

void loom_rng_seed(loom_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t loom_rng_next(loom_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double loom_rng_unit(loom_rng *r)
{
    return (double)(loom_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void loom_retry_policy_default(loom_retry_policy *p)
{
    p->initial_interval_ms = 100;
    p->factor = 2.0;
    p->max_interval_ms = 10000;
    p->max_attempts = 10;
    p->max_total_ms = 60000;
    p->jitter = 0.1;
}

int loom_retry_policy_check(const loom_retry_policy *p)
{
    if (p->initial_interval_ms == 0 || p->initial_interval_ms > RETRY_INTERVAL_CAP_MS)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "retry.initial_interval_ms must be 1..%u",
                           RETRY_INTERVAL_CAP_MS);
    if (!(p->factor >= 1.0 && p->factor <= 100.0))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "retry.factor must be 1.0..100.0");
    if (p->max_interval_ms < p->initial_interval_ms || p->max_interval_ms > RETRY_INTERVAL_CAP_MS)
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "retry.max_interval_ms must be initial_interval_ms..%u",
                           RETRY_INTERVAL_CAP_MS);
    if (p->max_attempts == 0 && p->max_total_ms == 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "retry needs max_attempts or max_total_ms (both 0 = retry forever)");
    if (!(p->jitter >= 0.0 && p->jitter <= 1.0))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "retry.jitter must be 0.0..1.0");
    return 0;
}

uint64_t loom_retry_base_delay_ms(const loom_retry_policy *p, uint32_t n)
{
    LOOM_ASSERT(n >= 1);
    LOOM_ASSERT(p->factor >= 1.0);
    double d = (double)p->initial_interval_ms * pow(p->factor, (double)(n - 1));
    if (!(d < (double)p->max_interval_ms))
        return p->max_interval_ms;
    return (uint64_t)d;
}

int loom_retry_next(const loom_retry_policy *p, uint32_t failed_attempts, int64_t first_failure_ms,
                    int64_t now_ms, loom_rng *rng, int64_t *next_attempt_ms)
{
    LOOM_ASSERT(failed_attempts >= 1);
    LOOM_ASSERT(now_ms >= first_failure_ms);
    if (p->max_attempts != 0 && failed_attempts >= p->max_attempts)
        return 0;
    double delay = (double)loom_retry_base_delay_ms(p, failed_attempts);
    /* Jitter spreads retries of many machines that failed together (a
     * processor outage) so they do not all come back in the same instant. */
    delay *= 1.0 - p->jitter + 2.0 * p->jitter * loom_rng_unit(rng);
    int64_t next = now_ms + (int64_t)delay;
    if (p->max_total_ms != 0 && (uint64_t)(next - first_failure_ms) > p->max_total_ms)
        return 0;
    *next_attempt_ms = next;
    return 1;
}
