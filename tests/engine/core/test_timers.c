/* End-to-end tests of durable timers (engine/core/src/timers.c): firing on
 * time (lateness measured and printed), consumption, many timers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"

/* Arrival time (unix ms) of the n-th (1-based) "timeout <id>" request in
 * the processor log, or 0. */
static int64_t timeout_arrival(const e2e *t, const char *id, int n)
{
    FILE *f = fopen(t->proc_log, "r");
    if (!f)
        return 0;
    char line[512], kind[32], mid[300];
    long long ms;
    int seen = 0;
    int64_t found = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lld %31s %299s", &ms, kind, mid) == 3 && !strcmp(kind, "timeout") &&
            !strcmp(mid, id) && ++seen == n) {
            found = ms;
            break;
        }
    }
    fclose(f);
    return found;
}

static int64_t deadline_of(e2e *t, const char *id)
{
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t->c, "t", id, NULL, &r), 0);
    int64_t d = r.machine->timer_deadline_ms;
    loom_client_result_free(&r);
    return d;
}

Test(timers, fire_on_time_and_are_consumed)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    enum { N = 20 };
    char id[N][16];
    int64_t deadline[N];
    for (int i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "tm%d", i);
        cr_assert_eq(e2e_start_machine(&t, id[i], NULL), 0);
        char args[32];
        snprintf(args, sizeof args, "timer:%d", 200 + 50 * i);
        cr_assert_eq(e2e_call(&t, id[i], args, NULL), 0, "%s", loom_client_errmsg(t.c));
        deadline[i] = deadline_of(&t, id[i]);
        cr_assert_gt(deadline[i], 0);
    }
    int64_t worst = 0, sum = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(e2e_wait_status(&t, id[i], 1, 2, 20000), 1, "timer of %s did not fire", id[i]);
        int64_t at = timeout_arrival(&t, id[i], 1);
        cr_assert_gt(at, 0);
        int64_t late = at - deadline[i];
        cr_assert_geq(late, 0, "%s fired %lld ms early", id[i], (long long)-late);
        worst = late > worst ? late : worst;
        sum += late;
        /* consumed: no timer left, fired once */
        cr_assert_eq(deadline_of(&t, id[i]), 0);
    }
    printf("timers: %d timers, lateness mean %lld ms, max %lld ms\n", N, (long long)(sum / N),
           (long long)worst);
    /* loose bound: a loaded 2-core machine under ASan */
    cr_assert_lt(worst, 1500, "worst lateness %lld ms", (long long)worst);
    e2e_sleep_ms(300);
    for (int i = 0; i < N; i++)
        cr_assert_eq(timeout_arrival(&t, id[i], 2), 0, "%s fired twice", id[i]);
    e2e_stop(&t);
}

Test(timers, a_new_timer_replaces_the_old_and_unset_keeps_none)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "r", NULL), 0);
    cr_assert_eq(e2e_call(&t, "r", "timer:60000", NULL), 0);
    int64_t far = deadline_of(&t, "r");
    cr_assert_eq(e2e_call(&t, "r", "timer:100", NULL), 0);
    int64_t near = deadline_of(&t, "r");
    cr_assert_lt(near, far);
    cr_assert_eq(e2e_wait_status(&t, "r", 1, 2, 10000), 1);
    e2e_sleep_ms(200);
    cr_assert_eq(timeout_arrival(&t, "r", 2), 0);
    cr_assert_eq(deadline_of(&t, "r"), 0);
    e2e_stop(&t);
}
