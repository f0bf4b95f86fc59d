/* The harness itself, with a stand-in child (loom-test-dummy). */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loom/harness.h"

static loom_harness *h;

static void setup(void)
{
    cr_assert_eq(loom_harness_create(&h), 0, "%s", loom_errdetail());
}

static void teardown(void)
{
    loom_harness_destroy(h);
}

TestSuite(harness, .init = setup, .fini = teardown, .timeout = 90);

static loom_harness_proc *spawn_listener(const char *name, const char *flag, const char *value)
{
    char addr[LOOM_HARNESS_PATH_MAX];
    char sock[80];
    snprintf(sock, sizeof sock, "%s.sock", name);
    loom_harness_unix_addr(h, sock, addr, sizeof addr);
    const char *argv[] = {"loom-test-dummy", "--listen", addr, flag, value, NULL};
    loom_harness_proc *p = NULL;
    int rc = loom_harness_spawn(h, name, argv, addr, &p);
    cr_assert_eq(rc, 0, "spawn: %s", loom_errdetail());
    return p;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

Test(harness, scratch_dir_exists_and_is_removed)
{
    struct stat st;
    char dir[LOOM_HARNESS_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", loom_harness_dir(h));
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(loom_harness_write_file(h, "a.txt", "hi"), 0);
    loom_harness_pass(h);
    loom_harness_destroy(h);
    h = NULL;
    cr_assert_neq(stat(dir, &st), 0);
}

Test(harness, spawn_waits_for_socket_and_stop_returns_exit_code)
{
    loom_harness_proc *p = spawn_listener("one", "--term-exit", "7");
    (void)p;
    loom_harness_proc *q = loom_harness_proc_find(h, "one");
    cr_assert_eq(p, q);
    cr_assert(loom_harness_proc_alive(p));
    int status = -1;
    cr_assert_eq(loom_harness_proc_stop(p, 10000, &status), 0);
    cr_assert_eq(status, 7);
    cr_assert_not(loom_harness_proc_alive(p));
    cr_assert(file_contains(loom_harness_proc_log(p), "dummy: SIGTERM"));
    loom_harness_pass(h);
}

Test(harness, slow_starter_is_waited_for)
{
    spawn_listener("slow", "--delay-ms", "500");
    loom_harness_pass(h);
}

Test(harness, child_that_exits_early_is_reported)
{
    char addr[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(h, "never.sock", addr, sizeof addr);
    const char *argv[] = {"loom-test-dummy", "--exit", "3", NULL};
    cr_assert_eq(loom_harness_spawn(h, "early", argv, addr, NULL), LOOM_ECLOSED);
    cr_assert(strstr(loom_errdetail(), "status 3") != NULL, "%s", loom_errdetail());
    loom_harness_pass(h);
}

Test(harness, missing_binary_is_not_found)
{
    const char *argv[] = {"loom-no-such-binary", NULL};
    cr_assert_eq(loom_harness_spawn(h, "ghost", argv, NULL, NULL), LOOM_ENOT_FOUND);
    loom_harness_pass(h);
}

Test(harness, stubborn_child_is_killed_after_stop_timeout)
{
    loom_harness_proc *p = spawn_listener("stubborn", "--ignore-term", NULL);
    int status = 0;
    cr_assert_eq(loom_harness_proc_stop(p, 300, &status), LOOM_ETIMEOUT);
    cr_assert_eq(status, 128 + SIGKILL);
    loom_harness_pass(h);
}

Test(harness, kill_and_restart_on_same_address)
{
    loom_harness_proc *p = spawn_listener("phoenix", NULL, NULL);
    pid_t first = loom_harness_proc_pid(p);
    cr_assert_eq(loom_harness_proc_kill(p), 0);
    cr_assert_not(loom_harness_proc_alive(p));
    cr_assert_eq(loom_harness_proc_restart(p), 0, "%s", loom_errdetail());
    cr_assert(loom_harness_proc_alive(p));
    cr_assert_neq(loom_harness_proc_pid(p), first);
    cr_assert_eq(loom_harness_proc_restart(p), LOOM_EBUSY);
    loom_harness_pass(h);
}

Test(harness, destroy_kills_running_and_stopped_children)
{
    loom_harness_proc *a = spawn_listener("a", NULL, NULL);
    loom_harness_proc *b = spawn_listener("b", "--ignore-term", NULL);
    pid_t pa = loom_harness_proc_pid(a), pb = loom_harness_proc_pid(b);
    cr_assert_eq(loom_harness_proc_signal(b, SIGSTOP), 0);
    loom_harness_pass(h);
    loom_harness_destroy(h);
    h = NULL;
    /* Reaped by destroy: the pids no longer name our children. */
    cr_assert_eq(waitpid(pa, NULL, WNOHANG), -1);
    cr_assert_eq(waitpid(pb, NULL, WNOHANG), -1);
}

static bool process_gone(pid_t pid)
{
    char path[64], state = 'Z';
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    /* "pid (comm) S ...": a zombie has died already. */
    int n = fscanf(f, "%*d (%*[^)]) %c", &state);
    fclose(f);
    return n != 1 || state == 'Z' || state == 'X';
}

/* The test process dies without cleanup: its children must die too. */
Test(harness, children_die_with_a_killed_test_process)
{
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t mid = fork();
    cr_assert_geq(mid, 0);
    if (mid == 0) {
        loom_harness *inner = NULL;
        if (loom_harness_create(&inner) != 0)
            _exit(1);
        const char *argv[] = {"loom-test-dummy", "--ignore-term", NULL};
        loom_harness_proc *p = NULL;
        if (loom_harness_spawn(inner, "orphan", argv, NULL, &p) != 0)
            _exit(1);
        pid_t child = loom_harness_proc_pid(p);
        char dir[LOOM_HARNESS_PATH_MAX] = {0};
        snprintf(dir, sizeof dir, "%s", loom_harness_dir(inner));
        if (write(pipefd[1], &child, sizeof child) != sizeof child ||
            write(pipefd[1], dir, sizeof dir) != sizeof dir)
            _exit(1);
        raise(SIGKILL);
    }
    close(pipefd[1]);
    pid_t orphan = 0;
    char inner_dir[LOOM_HARNESS_PATH_MAX];
    cr_assert_eq(read(pipefd[0], &orphan, sizeof orphan), (ssize_t)sizeof orphan);
    cr_assert_eq(read(pipefd[0], inner_dir, sizeof inner_dir), (ssize_t)sizeof inner_dir);
    close(pipefd[0]);
    waitpid(mid, NULL, 0);
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        gone = process_gone(orphan);
        if (!gone)
            usleep(10000);
    }
    if (!gone)
        kill(orphan, SIGKILL);
    /* The killed process could not remove its scratch directory. */
    char log[LOOM_HARNESS_PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/orphan.log", inner_dir);
    unlink(log);
    rmdir(inner_dir);
    cr_assert(gone, "pid %d outlived its parent", (int)orphan);
    loom_harness_pass(h);
}

Test(harness, loomd_config_has_listen_data_dir_and_namespaces)
{
    loom_harness_ns ns[2] = {
        {.name = "payment",
         .processor = "unix:/x/p.sock",
         .step_timeout_ms = 1500,
         .yaml = "retry:\n  max_attempts: 3\n  max_total_ms: 0"},
        {.name = "batch", .processor = "tcp:127.0.0.1:1"},
    };
    loom_harness_loomd_opts o = {.namespaces = ns,
                                 .n_namespaces = 2,
                                 .tcp = true,
                                 .yaml = "limits:\n  max_frame_bytes: 65536"};
    cr_assert_eq(loom_harness_loomd_write_config(h, &o), 0);
    char cfg[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(h, "loomd.yaml", cfg, sizeof cfg);
    char want[1024];
    snprintf(want, sizeof want, "listen:\n  - \"%s\"\n  - \"%s\"\n", loom_harness_loomd_addr(h),
             loom_harness_loomd_tcp_addr(h));
    cr_assert(file_contains(cfg, want), "%s", want);
    snprintf(want, sizeof want, "data_dir: \"%s/data\"\n", loom_harness_dir(h));
    cr_assert(file_contains(cfg, want));
    cr_assert(file_contains(cfg, "limits:\n  max_frame_bytes: 65536\n"));
    cr_assert(file_contains(cfg, "  - name: \"payment\"\n    processor: \"unix:/x/p.sock\"\n"
                                 "    step_timeout_ms: 1500\n    retry:\n      max_attempts: 3\n"));
    cr_assert(file_contains(cfg, "  - name: \"batch\"\n"));
    cr_assert(strncmp(loom_harness_loomd_tcp_addr(h), "tcp:127.0.0.1:", 14) == 0);
    loom_harness_pass(h);
}

Test(harness, wait_accept_times_out_on_silence)
{
    char addr[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(h, "nobody.sock", addr, sizeof addr);
    cr_assert_eq(loom_harness_wait_accept(addr, 200), LOOM_ETIMEOUT);
    loom_harness_pass(h);
}
