/* UTF-8 checks used for every string that reaches the wire. */
#include <criterion/criterion.h>
#include <string.h>

#include "loom/utf8.h"

Test(utf8, sequences_are_checked_byte_for_byte)
{
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"a", 1), 1);
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xc3\xa9", 2), 2);
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xe2\x82\xac", 3), 3);
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xf0\x9f\x98\x80", 4), 4);
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xc3", 1), 0, "cut");
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xc0\x80", 2), 0, "overlong");
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xed\xa0\x80", 3), 0, "surrogate");
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\xf4\x90\x80\x80", 4), 0, "> U+10FFFF");
    cr_assert_eq(loom_utf8_sequence((const uint8_t *)"\x80", 1), 0, "continuation");
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
    char a[] = "caf\xc3\xa9";
    loom_utf8_trim(a);
    cr_assert_str_eq(a, "caf\xc3\xa9", "a whole character stays");
    char b[] = "caf\xc3";
    loom_utf8_trim(b);
    cr_assert_str_eq(b, "caf");
    char c[] = "x\xf0\x9f\x98";
    loom_utf8_trim(c);
    cr_assert_str_eq(c, "x");
    char d[] = "plain";
    loom_utf8_trim(d);
    cr_assert_str_eq(d, "plain");
    char e[] = "";
    loom_utf8_trim(e);
    cr_assert_str_eq(e, "");
}
