/* The error table: one code, one name, one text; details stay UTF-8. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "loom/error.h"
#include "loom/utf8.h"

Test(error, every_code_has_a_distinct_name_and_text)
{
    int seen = 0;
#define CHECK(name, num, msg)                                                                      \
    cr_assert_eq(LOOM_E##name, -(num));                                                            \
    cr_assert_str_eq(loom_err_name(LOOM_E##name), #name);                                          \
    cr_assert_str_eq(loom_err_name(num), #name, "the wire number names the same code");            \
    cr_assert_str_eq(loom_strerror(LOOM_E##name), msg);                                            \
    seen++;
    LOOM_ERRNO_MAP(CHECK)
#undef CHECK
    cr_assert_gt(seen, 20);
    cr_assert_str_eq(loom_err_name(0), "OK");
    cr_assert_str_eq(loom_err_name(-9999), "UNKNOWN");
    cr_assert_str_eq(loom_strerror(-9999), "unknown error");
    cr_assert_eq(loom_err_wire(LOOM_EMACHINE_NOT_FOUND), 2);
}

Test(error, errno_values_map_to_loom_codes)
{
    cr_assert_eq(loom_err_from_errno(0), LOOM_OK);
    cr_assert_eq(loom_err_from_errno(ENOSPC), LOOM_ESTORAGE_FULL);
    cr_assert_eq(loom_err_from_errno(ENOMEM), LOOM_ENOMEM);
    cr_assert_eq(loom_err_from_errno(ECONNRESET), LOOM_ECLOSED);
    cr_assert_eq(loom_err_from_errno(EROFS), LOOM_EIO);
}

Test(error, seterr_returns_the_code_and_keeps_the_detail)
{
    cr_assert_eq(loom_seterr(LOOM_EIO, "write %s: %s", "data.mdb", "No space"), LOOM_EIO);
    cr_assert_str_eq(loom_errdetail(), "write data.mdb: No space");
}

/* Details are copied into wire messages: a long one is cut on a character
 * boundary, never inside one. */
Test(error, long_detail_is_cut_on_a_character)
{
    char text[2000];
    size_t n = 0;
    while (n + 2 < sizeof text) {
        memcpy(text + n, "\xc3\xa9", 2);
        n += 2;
    }
    text[n] = '\0';
    for (int lead = 0; lead < 2; lead++) {
        loom_seterr(LOOM_EIO, "%.*s%s", lead, "x", text);
        const char *d = loom_errdetail();
        cr_assert_gt(strlen(d), 400);
        cr_assert(loom_utf8_valid(d, strlen(d)), "lead %d", lead);
    }
}
