/* The machine status table (engine/core/src/status.c). */
#include <criterion/criterion.h>

#include "loom/engine.h"

Test(status, legal_moves)
{
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_ABSENT, LOOM_MSTATE_WORKING));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_WORKING, LOOM_MSTATE_RETRYING));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_WORKING, LOOM_MSTATE_FAILED));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_RETRYING, LOOM_MSTATE_WORKING));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_RETRYING, LOOM_MSTATE_FAILED));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_FAILED, LOOM_MSTATE_WORKING));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_FAILED, LOOM_MSTATE_RETRYING));
    cr_assert(loom_mstate_move_ok(LOOM_MSTATE_FAILED, LOOM_MSTATE_ABSENT));
}

Test(status, illegal_moves)
{
    cr_assert_not(loom_mstate_move_ok(LOOM_MSTATE_ABSENT, LOOM_MSTATE_FAILED));
    cr_assert_not(loom_mstate_move_ok(LOOM_MSTATE_ABSENT, LOOM_MSTATE_RETRYING));
    cr_assert_not(loom_mstate_move_ok(LOOM_MSTATE_ABSENT, LOOM_MSTATE_ABSENT));
    cr_assert_not(loom_mstate_move_ok(LOOM_MSTATE_FAILED, LOOM_MSTATE_FAILED));
    cr_assert_not(loom_mstate_move_ok((loom_mstate)7, LOOM_MSTATE_WORKING));
    cr_assert_not(loom_mstate_move_ok(LOOM_MSTATE_WORKING, (loom_mstate)-1));
}

Test(status, names)
{
    cr_assert_str_eq(loom_mstate_name(LOOM_MSTATE_RETRYING), "retrying");
    cr_assert_str_eq(loom_mstate_name((loom_mstate)9), "invalid");
}
