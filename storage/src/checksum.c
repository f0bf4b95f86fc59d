/* CRC32C (Castagnoli) and XXH64, the two checksums of stored records.
 *
 * CRC32C guards every record against torn or flipped bytes; it uses the
 * SSE4.2 crc32 instruction when the CPU has it (checked once at run time)
 * and slicing-by-8 tables otherwise. XXH64 links each event to the one
 * before it (the chain hash): it is fast on short inputs and 64 bits wide,
 * so a spliced or reordered history is caught with negligible odds of a
 * collision. Both follow their reference definitions bit for bit; the
 * tests hold the published check values. */
#include "internal.h"

#include <pthread.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_have_hw;

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t load_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

uint32_t loom__crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint64_t w = load_le64(p) ^ crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                           size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        c = _mm_crc32_u64(c, load_le64(p));
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    if (len >= 4) {
        c32 = _mm_crc32_u32(c32, load_le32(p));
        p += 4;
        len -= 4;
    }
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

bool loom__crc32c_has_hw(void)
{
    pthread_once(&crc_once, crc_init);
    return crc_have_hw;
}

uint32_t loom__crc32c(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__)
    if (LOOM_LIKELY(loom__crc32c_has_hw()))
        return crc32c_hw(crc, data, len);
#endif
    return loom__crc32c_sw(crc, data, len);
}

/* ---------------------------------------------------------------- XXH64 */

#define P64_1 0x9E3779B185EBCA87ull
#define P64_2 0xC2B2AE3D27D4EB4Full
#define P64_3 0x165667B19E3779F9ull
#define P64_4 0x85EBCA77C2B2AE63ull
#define P64_5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P64_2;
    acc = rotl64(acc, 31);
    return acc * P64_1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * P64_1 + P64_4;
}

static uint64_t xxh_long(const uint8_t **pp, const uint8_t *end, uint64_t seed)
{
    const uint8_t *p = *pp;
    uint64_t v1 = seed + P64_1 + P64_2, v2 = seed + P64_2, v3 = seed, v4 = seed - P64_1;
    do {
        v1 = xxh_round(v1, load_le64(p));
        v2 = xxh_round(v2, load_le64(p + 8));
        v3 = xxh_round(v3, load_le64(p + 16));
        v4 = xxh_round(v4, load_le64(p + 24));
        p += 32;
    } while (p + 32 <= end);
    uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh_merge(h, v1);
    h = xxh_merge(h, v2);
    h = xxh_merge(h, v3);
    h = xxh_merge(h, v4);
    *pp = p;
    return h;
}

uint64_t loom__xxh64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data, *end = p + len;
    uint64_t h = len >= 32 ? xxh_long(&p, end, seed) : seed + P64_5;
    h += (uint64_t)len;
    while (p + 8 <= end) {
        h ^= xxh_round(0, load_le64(p));
        h = rotl64(h, 27) * P64_1 + P64_4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)load_le32(p) * P64_1;
        h = rotl64(h, 23) * P64_2 + P64_3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p++) * P64_5;
        h = rotl64(h, 11) * P64_1;
    }
    h ^= h >> 33;
    h *= P64_2;
    h ^= h >> 29;
    h *= P64_3;
    h ^= h >> 32;
    return h;
}
