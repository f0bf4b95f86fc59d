/* Deterministic simulation for the example processors: every simulated
 * outcome (a provider declining, a remote failing an object) is a pure
 * function of the seed and the names involved, so a run is reproducible
 * whatever the order and timing of requests, and a repeated step (Loom's
 * at-least-once delivery) sees the same outcome. */
#ifndef LOOM_EXAMPLE_SIM_H
#define LOOM_EXAMPLE_SIM_H

#include <stdint.h>
#include <string.h>

static inline uint64_t sim_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull; /* splitmix64 finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Hash of the seed and up to three strings (NULL ends early). */
static inline uint64_t sim_hash(uint64_t seed, const char *a, const char *b, const char *c)
{
    uint64_t h = 0xcbf29ce484222325ull ^ sim_mix(seed);
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3 && parts[i] != NULL; i++) {
        for (const char *s = parts[i]; *s != '\0'; s++)
            h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull; /* separator: ("ab","c") != ("a","bc") */
    }
    return sim_mix(h);
}

/* Uniform in [0, 1). */
static inline double sim_unit(uint64_t h)
{
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

#endif
