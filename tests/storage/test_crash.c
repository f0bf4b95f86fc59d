/* kill -9 at random moments while a child process group-commits steps.
 * The child reports every acknowledged step over a pipe; after each kill
 * the parent reopens the store and checks that every acknowledged event is
 * there, histories are gap-free and every chain and index verifies.
 * LOOM_KILL_ITERATIONS sets the number of kills (default 100). */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

#define MACHINES 40
#define MAX_BATCH 16

struct ack {
    uint32_t machine;
    uint32_t pad;
    uint64_t last_event_id;
};

static th_env env;

static void machine_name(char *buf, size_t n, uint32_t i)
{
    snprintf(buf, n, "crash-%02u", i);
}

/* The child: learns where each machine stands, then commits random
 * batches forever, acknowledging each committed step on fd. */
static void child(int fd, unsigned seed)
{
    loom_store *s;
    if (loom_store_open(&s, env.dir, NULL) != 0)
        _exit(2);
    uint64_t last[MACHINES];
    bool exists[MACHINES];
    loom_txn *t;
    if (loom_store_read_begin(s, &t) != 0)
        _exit(3);
    char names[MACHINES][16];
    for (uint32_t i = 0; i < MACHINES; i++) {
        machine_name(names[i], sizeof names[i], i);
        loom_machine m;
        int rc = loom_store_machine_get(t, env.ns, loom_slice_str(names[i]), &m);
        exists[i] = rc == 0;
        last[i] = rc == 0 ? m.last_event_id : 0;
    }
    loom_txn_end(t);
    static char payload[512];
    memset(payload, 'k', sizeof payload);
    loom_new_event evs[MAX_BATCH][3];
    loom_step steps[MAX_BATCH];
    uint32_t which[MAX_BATCH];
    for (;;) {
        size_t n = 1 + (size_t)(rand_r(&seed) % MAX_BATCH);
        for (size_t i = 0; i < n; i++) {
            uint32_t m = (uint32_t)rand_r(&seed) % MACHINES;
            which[i] = m;
            memset(&steps[i], 0, sizeof steps[i]);
            steps[i].ns = env.ns;
            steps[i].id = loom_slice_str(names[m]);
            steps[i].create = !exists[m];
            steps[i].expected_last_event_id = last[m]; /* as of the steps before it */
            steps[i].now_ms = (uint64_t)time(NULL) * 1000;
            steps[i].n_events = 1 + (uint32_t)rand_r(&seed) % 3;
            for (uint32_t e = 0; e < steps[i].n_events; e++)
                evs[i][e] = (loom_new_event){e, loom_slice_of(payload, (size_t)rand_r(&seed) % 400)};
            steps[i].events = evs[i];
            steps[i].set_aux_state = true;
            steps[i].aux_state = loom_slice_of(payload, (size_t)rand_r(&seed) % 300);
            steps[i].timer_op = rand_r(&seed) % 2 ? LOOM_TIMER_SET : LOOM_TIMER_UNSET;
            steps[i].timer.deadline_ms = 1 + (uint64_t)rand_r(&seed) % 100000;
            steps[i].notify = rand_r(&seed) % 4 == 0;
            exists[m] = true;
            last[m] += steps[i].n_events;
        }
        if (loom_store_commit(s, steps, n) != 0)
            _exit(4);
        for (size_t i = 0; i < n; i++) {
            if (steps[i].result != 0 || steps[i].last_event_id > last[which[i]])
                _exit(5);
            struct ack a = {which[i], 0, steps[i].last_event_id};
            if (write(fd, &a, sizeof a) != sizeof a)
                _exit(6);
        }
    }
}

/* Reads the acknowledgements of a dead child into acked[]. */
static size_t drain(int fd, uint64_t *acked)
{
    struct ack a;
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, &a, sizeof a)) == (ssize_t)sizeof a) {
        cr_assert_lt(a.machine, MACHINES);
        cr_assert_geq(a.last_event_id, acked[a.machine], "acks only grow");
        acked[a.machine] = a.last_event_id;
        n++;
    }
    cr_assert_eq(r, 0, "no torn acknowledgement");
    return n;
}

/* Every acknowledged event is there: each machine's history reads back
 * from its last acknowledged event (chain-checked from the one before). */
static void check_acked(loom_txn *t, const uint64_t *acked, int iteration, unsigned seed)
{
    for (uint32_t i = 0; i < MACHINES; i++) {
        char name[16];
        machine_name(name, sizeof name, i);
        loom_machine m;
        int rc = loom_store_machine_get(t, env.ns, loom_slice_str(name), &m);
        if (acked[i] == 0 && rc == LOOM_EMACHINE_NOT_FOUND)
            continue;
        cr_assert_eq(rc, 0, "iteration %d seed %u: machine %u: %s", iteration, seed, i,
                     loom_err_name(rc));
        cr_assert_geq(m.last_event_id, acked[i], "iteration %d seed %u: machine %u lost events",
                      iteration, seed, i);
        loom_history it;
        loom_range r = {acked[i] ? acked[i] - 1 : 0, 0, LOOM_DIRECTION_FORWARD, true};
        cr_assert_eq(loom_history_begin(t, m.key, &r, &it), 0);
        loom_event ev;
        uint64_t expect = r.after + 1;
        while ((rc = loom_history_next(&it, &ev)) == 1)
            cr_assert_eq(ev.id, expect++);
        cr_assert_eq(rc, 0, "iteration %d: %s", iteration, loom_errdetail());
        cr_assert_eq(expect - 1, m.last_event_id);
        loom_history_end(&it);
    }
}

/* Reopens the store after a kill; a full verify (every history from its
 * first event, every index, the sink against the histories) runs on each
 * of the first 100 iterations and then every 25th and on the last. */
static void check_store(const uint64_t *acked, int iteration, int iterations, unsigned seed)
{
    th_open(&env, NULL);
    loom_txn *t = th_read(&env);
    check_acked(t, acked, iteration, seed);
    loom_txn_end(t);
    if (iteration < 100 || iteration % 25 == 0 || iteration == iterations - 1) {
        int bad = loom_store_verify(env.s, NULL, NULL);
        cr_assert_eq(bad, 0, "iteration %d seed %u: verify found %d problems", iteration, seed, bad);
        loom_store_stats st;
        cr_assert_eq(loom_store_stats_get(env.s, &st), 0);
        t = th_read(&env);
        uint64_t events = 0, seq;
        for (uint32_t i = 0; i < MACHINES; i++) {
            char name[16];
            machine_name(name, sizeof name, i);
            loom_machine m;
            if (loom_store_machine_get(t, env.ns, loom_slice_str(name), &m) == 0)
                events += m.last_event_id;
        }
        cr_assert_eq(loom_store_sink_last(t, &seq), 0);
        cr_assert_eq(seq, events, "one sink entry per event");
        loom_txn_end(t);
    }
    loom_store_close(env.s);
    env.s = NULL;
}

Test(crash, kill_9_loses_nothing_acknowledged, .timeout = 590)
{
    const char *it_env = getenv("LOOM_KILL_ITERATIONS");
    int iterations = it_env ? atoi(it_env) : 100;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    th_setup(&env, NULL);
    loom_store_close(env.s);
    env.s = NULL;
    uint64_t acked[MACHINES] = {0};
    size_t total_acks = 0;
    for (int i = 0; i < iterations; i++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        unsigned child_seed = seed + (unsigned)i;
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            child(fds[1], child_seed);
        }
        close(fds[1]);
        /* Mostly mid-run, sometimes while the child is still opening. */
        struct timespec d = {0, (long)(rand_r(&child_seed) % 40000) * 1000};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "iteration %d: child exited by itself (status %d)", i, status);
        total_acks += drain(fds[0], acked);
        close(fds[0]);
        check_store(acked, i, iterations, seed);
    }
    cr_log_info("%d kills, %zu acknowledged steps", iterations, total_acks);
    cr_assert_gt(total_acks, 0, "the child committed something");
    th_rmtree(env.dir);
    env.dir = NULL;
}
