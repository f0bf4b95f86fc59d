/* UTF-8 checks used for every string that reaches the wire. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "loom/utf8.h"

Test(utf8, sequences_are_checked_byte_for_byte)
{
    static const struct {
        const char *bytes;
        size_t len;
        size_t want;
        const char *why;
    } cases[] = {
        {"a", 1, 1, "ascii"},
        {"\xc3\xa9", 2, 2, "two bytes"},
        {"\xe2\x82\xac", 3, 3, "three bytes"},
        {"\xf0\x9f\x98\x80", 4, 4, "four bytes"},
        {"\xc3", 1, 0, "cut"},
        {"\xc0\x80", 2, 0, "overlong"},
        {"\xed\xa0\x80", 3, 0, "surrogate"},
        {"\xf4\x90\x80\x80", 4, 0, "> U+10FFFF"},
        {"\x80", 1, 0, "continuation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(loom_utf8_sequence((const uint8_t *)cases[i].bytes, cases[i].len),
                     cases[i].want, "%s", cases[i].why);
}

Test(utf8, valid_refuses_nul_and_broken_text)
{
    cr_assert(loom_utf8_valid("caf\xc3\xa9", 5));
    cr_assert(loom_utf8_valid("", 0));
    cr_assert_not(loom_utf8_valid("a\0b", 3));
    cr_assert_not(loom_utf8_valid("caf\xc3", 4));
    cr_assert_not(loom_utf8_valid("\xff", 1));
}

Test(utf8, trim_drops_only_an_incomplete_last_character)
{
    static const struct {
        const char *in, *want, *why;
    } cases[] = {
        {"caf\xc3\xa9", "caf\xc3\xa9", "a whole character stays"},
        {"caf\xc3", "caf", "a cut two-byte character goes"},
        {"x\xf0\x9f\x98", "x", "a cut four-byte character goes"},
        {"plain", "plain", "ascii stays"},
        {"", "", "empty stays empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        loom_utf8_trim(buf);
        cr_assert_str_eq(buf, cases[i].want, "%s", cases[i].why);
    }
}
