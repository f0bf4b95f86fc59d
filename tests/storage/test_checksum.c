#include <criterion/criterion.h>
#include <stdlib.h>

#include "../../storage/src/internal.h"

Test(checksum, crc32c_check_value)
{
    /* The CRC-32C check value of "123456789" (RFC 3720 / iSCSI). */
    cr_assert_eq(loom__crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(loom__crc32c_sw(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(loom__crc32c(0, "", 0), 0u);
    uint8_t zeros[32] = {0};
    cr_assert_eq(loom__crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
}

Test(checksum, crc32c_hw_and_sw_agree_at_every_length_and_alignment)
{
    uint8_t buf[300];
    srand(7);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= sizeof buf; len++)
            cr_assert_eq(loom__crc32c(0, buf + off, len), loom__crc32c_sw(0, buf + off, len),
                         "off %zu len %zu", off, len);
}

Test(checksum, crc32c_is_incremental)
{
    const char *s = "the quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = loom__crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++)
        cr_assert_eq(loom__crc32c(loom__crc32c(0, s, cut), s + cut, n - cut), whole);
}

Test(checksum, xxh64_reference_values)
{
    uint8_t seq[100];
    for (int i = 0; i < 100; i++)
        seq[i] = (uint8_t)i;
    /* Values of the reference implementation (libxxhash 0.8). */
    cr_assert_eq(loom__xxh64("", 0, 0), 0xef46db3751d8e999ull);
    cr_assert_eq(loom__xxh64("a", 1, 0), 0xd24ec4f1a98c6e5bull);
    cr_assert_eq(loom__xxh64("abc", 3, 0), 0x44bc2cf5ad770999ull);
    cr_assert_eq(loom__xxh64(seq, 100, 0), 0x6ac1e58032166597ull);
    cr_assert_eq(loom__xxh64(seq, 100, 0x9e3779b97f4a7c15ull), 0x3b97d91eba03e785ull);
    cr_assert_eq(loom__xxh64("Loom event chain hash test vector!!", 35, 12345),
                 0x3c5cddd902657247ull);
}
