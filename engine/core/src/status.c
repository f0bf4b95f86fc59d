/* Machine status: the table of legal moves, checked on every store write.
 *
 *              Start ok
 *   ABSENT ──────────────▶ WORKING ◀──────────── Repair ok / SimpleRepair
 *                          │   ▲  ╲                         │
 *      timer/notification  │   │   ╲ non-retryable failure  │
 *      step failed,        │   │    ╲ (or policy exhausted) │
 *      policy allows retry ▼   │     ▼                      │
 *                       RETRYING ──▶ FAILED ────────────────┘
 *                          ▲  retry    │
 *                          │ exhausted │ SimpleRepair (status held
 *                          └───────────┘ before the failure was RETRYING)
 *
 *   WORKING, RETRYING, FAILED ──Remove / remove action──▶ ABSENT
 *
 * Invariants: WORKING — no retry state; RETRYING — retry attempt >= 1 and a
 * next attempt time in the timers index; FAILED — a reason, no step runs
 * except Repair (SimpleRepair runs none). */
#include "loom/engine.h"

/* [from][to] */
static const bool moves[4][4] = {
    /*                 ABSENT WORKING FAILED RETRYING */
    /* ABSENT   */ {false, true, false, false},
    /* WORKING  */ {true, true, true, true},
    /* FAILED   */ {true, true, false, true},
    /* RETRYING */ {true, true, true, true},
};

bool loom_mstate_move_ok(loom_mstate from, loom_mstate to)
{
    if ((unsigned)from > LOOM_MSTATE_RETRYING || (unsigned)to > LOOM_MSTATE_RETRYING)
        return false;
    return moves[from][to];
}

const char *loom_mstate_name(loom_mstate s)
{
    switch (s) {
    case LOOM_MSTATE_ABSENT:
        return "absent";
    case LOOM_MSTATE_WORKING:
        return "working";
    case LOOM_MSTATE_FAILED:
        return "failed";
    case LOOM_MSTATE_RETRYING:
        return "retrying";
    }
    return "invalid";
}
