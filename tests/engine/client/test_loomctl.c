/* loomctl as a user runs it: exit codes, human and --json output, ARGS
 * conversion, namespace files; against a real loomd and the e2e
 * processor (see e2e.h). */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"

#define OUT_MAX 65536

static char out[OUT_MAX], err[OUT_MAX];

static void up(void)
{
    e2e_up(NULL);
}

TestSuite(loomctl, .init = up, .fini = e2e_down, .timeout = 120);

static void slurp(const char *path, char *buf)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, OUT_MAX - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs loomctl with argv (NULL-terminated), stdout and stderr captured in
 * out and err; returns its exit code. with_addr adds --addr for loomd. */
static int ctl_argv(bool with_addr, const char *const *args)
{
    char exe[LOOM_HARNESS_PATH_MAX], out_path[LOOM_HARNESS_PATH_MAX],
        err_path[LOOM_HARNESS_PATH_MAX];
    loom_harness_bin("loomctl", exe, sizeof exe);
    loom_harness_path(e2e_h, "ctl.out", out_path, sizeof out_path);
    loom_harness_path(e2e_h, "ctl.err", err_path, sizeof err_path);
    const char *argv[40] = {exe};
    int n = 1;
    if (with_addr) {
        argv[n++] = "--addr";
        argv[n++] = loom_harness_loomd_addr(e2e_h);
    }
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        execv(exe, (char **)argv);
        _exit(127);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    slurp(out_path, out);
    slurp(err_path, err);
    cr_assert(WIFEXITED(status), "loomctl died: status %d", status);
    return WEXITSTATUS(status);
}

#define CTL(...) ctl_argv(true, (const char *const[]){__VA_ARGS__, NULL})
#define CTL_NOADDR(...) ctl_argv(false, (const char *const[]){__VA_ARGS__, NULL})

static void contains(const char *hay, const char *needle)
{
    cr_assert(strstr(hay, needle) != NULL, "missing <%s> in <%s>", needle, hay);
}

Test(loomctl, usage_errors_exit_2_without_a_server)
{
    cr_assert_eq(CTL_NOADDR("--addr", "unix:/nonexistent", "frobnicate"), 2);
    contains(err, "unknown command");
    cr_assert_eq(CTL_NOADDR("get", "test"), 2);
    cr_assert_eq(CTL_NOADDR("list", "test", "--backward"), 2);
    contains(err, "--backward");
    cr_assert_eq(CTL_NOADDR("call", "test", "m1"), 2);
    cr_assert_eq(CTL_NOADDR("start", "test", "m1", "{\"a\":"), 2);
    contains(err, "not valid JSON");
    cr_assert_eq(CTL_NOADDR("--timeout-ms", "x", "ns-list"), 2);
    cr_assert_eq(CTL_NOADDR("--addr", "bogus", "ns-list"), 2);
    cr_assert_eq(CTL_NOADDR("start", "t", "m", "--args-hex", "abc"), 2);
    cr_assert_eq(CTL_NOADDR("--help"), 0);
    contains(out, "Exit codes");
    e2e_pass();
}

Test(loomctl, unreachable_server_exits_3)
{
    char addr[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(e2e_h, "nobody.sock", addr, sizeof addr);
    cr_assert_eq(CTL_NOADDR("--addr", addr, "ns-list"), 3);
    cr_assert_eq(CTL_NOADDR("--json", "--addr", addr, "ns-list"), 3);
    contains(out, "\"ok\":false");
    e2e_pass();
}

Test(loomctl, addr_defaults_to_loom_addr_env)
{
    setenv("LOOM_ADDR", loom_harness_loomd_addr(e2e_h), 1);
    cr_assert_eq(CTL_NOADDR("ns-list"), 0, "%s", err);
    contains(out, "test");
    unsetenv("LOOM_ADDR");
    e2e_pass();
}

Test(loomctl, machine_lifecycle_in_human_output)
{
    cr_assert_eq(CTL("start", "test", "m1", "--args-hex", "6f6b"), 0, "%s", err); /* "ok" */
    contains(out, "started test/m1 (last event 1)");
    cr_assert_eq(CTL("call", "test", "m1", "--args-hex", "6576656e74733a32"), 0, "%s", err);
    contains(out, "called test/m1 (last event 3)");
    cr_assert_eq(CTL("get", "test", "m1"), 0, "%s", err);
    contains(out, "machine    test/m1");
    contains(out, "status     working");
    contains(out, "{\"kind\":\"init\",\"args\":\"ok\",\"n\":1}");
    cr_assert_eq(CTL("history", "test", "m1", "--after", "1", "--limit", "1"), 0, "%s", err);
    contains(out, "     2  ");
    contains(out, "{\"kind\":\"call\",\"args\":\"events:2\",\"n\":1}");
    cr_assert(strstr(out, "\"n\":2") == NULL, "the limit was not applied: %s", out);
    cr_assert_eq(CTL("notify", "test", "m1", "--args-hex", "6f6b"), 0, "%s", err);
    contains(out, "queued for test/m1");
    cr_assert_eq(CTL("list", "test"), 0, "%s", err);
    contains(out, "m1");
    cr_assert_eq(CTL("remove", "test", "m1"), 0, "%s", err);
    contains(out, "removed test/m1");
    e2e_pass();
}

/* An empty namespace answers with a page that carries no array at all. */
Test(loomctl, list_all_of_an_empty_namespace)
{
    cr_assert_eq(CTL("list", "test", "--all"), 0, "%s", err);
    cr_assert_eq(CTL("--json", "list", "test", "--all"), 0, "%s", err);
    contains(out, "\"machines\":[]");
    e2e_pass();
}

Test(loomctl, json_output_for_scripts)
{
    cr_assert_eq(CTL("--json", "start", "test", "m1", "--args-hex", "6f6b"), 0, "%s", err);
    cr_assert_str_eq(out, "{\"ok\":true,\"last_event_id\":1,\"response\":{\"$raw\":"
                          "\"6f6b3a696e69743a30\"}}\n");
    cr_assert_eq(CTL("--json", "get", "test", "m1"), 0, "%s", err);
    contains(out, "{\"ok\":true,\"machine\":{\"ns\":\"test\",\"id\":\"m1\",\"status\":\"working\","
                  "\"last_event_id\":1,");
    contains(out, "\"history\":[{\"id\":1,");
    contains(out, "\"data\":{\"kind\":\"init\",\"args\":\"ok\",\"n\":1}}]}}");
    cr_assert_eq(CTL("--json", "history", "test", "m1"), 0, "%s", err);
    contains(out, "{\"ok\":true,\"events\":[{\"id\":1,");
    cr_assert_eq(CTL("--json", "list", "test", "--status", "working"), 0, "%s", err);
    contains(out, "{\"ok\":true,\"machines\":[{\"id\":\"m1\",\"status\":\"working\"");
    cr_assert_eq(CTL("--json", "notify", "test", "m1", "--args-hex", "6f6b"), 0, "%s", err);
    contains(out, "{\"ok\":true,\"notification_id\":");
    cr_assert_eq(CTL("--json", "get", "test", "ghost"), 12);
    contains(out, "{\"ok\":false,\"error\":{\"code\":2,\"name\":\"MACHINE_NOT_FOUND\"");
    e2e_pass();
}

Test(loomctl, exit_code_is_10_plus_error_code)
{
    cr_assert_eq(CTL("get", "nosuch", "m1"), 11);
    contains(err, "NAMESPACE_NOT_FOUND");
    cr_assert_eq(CTL("get", "test", "ghost"), 12);
    cr_assert_eq(CTL("start", "test", "m1", "--args-hex", "6f6b"), 0);
    cr_assert_eq(CTL("start", "test", "m1", "--args-hex", "6f6b"), 13);
    cr_assert_eq(CTL("repair", "test", "m1"), 15);
    cr_assert_eq(CTL("simple-repair", "test", "m1"), 15);
    /* "fail:x" */
    cr_assert_eq(CTL("call", "test", "m1", "--args-hex", "6661696c3a78"), 29);
    contains(err, "PROCESSOR_FAILED: x");
    cr_assert_eq(CTL("start", "dead", "m1", "--args-hex", "6f6b"), 17);
    cr_assert_eq(CTL("list", "test", "--status", "bogus"), 2);
    e2e_pass();
}

Test(loomctl, args_json_and_files_become_msgpack)
{
    /* The e2e processor echoes args into the event, so the history shows
     * the bytes loomctl sent: JSON text arrives as msgpack. */
    cr_assert_eq(e2e_start("m1", "ok"), 0);
    cr_assert_eq(loom_harness_write_file(e2e_h, "args.json", "{\"amount\": -5, \"tags\": [1.5]}"),
                 0);
    char arg[LOOM_HARNESS_PATH_MAX + 1] = "@";
    loom_harness_path(e2e_h, "args.json", arg + 1, sizeof arg - 1);
    cr_assert_eq(CTL("--json", "notify", "test", "m1", arg), 0, "%s", err);
    cr_assert(e2e_wait_event("m1", "notification", 15000));
    cr_assert_eq(CTL("--json", "history", "test", "m1", "--backward", "--limit", "1"), 0);
    /* fixmap(2) "amount" -5 "tags" [1.5] as the processor saw it (raw
     * bytes in a msgpack str: shown with \u escapes for the non-UTF-8). */
    contains(out, "\"kind\":\"notification\"");
    contains(out, "amount");
    cr_assert_eq(CTL("notify", "test", "m1", "-5"), 0, "negative number taken as an option: %s",
                 err);
    e2e_pass();
}

Test(loomctl, namespaces_from_flags_and_yaml_file)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: fromfile\nprocessor: \"%s\"\nstep_timeout_ms: 2500\nretry:\n"
             "  max_attempts: 4\n  max_total_ms: 0\ndefault_range: { limit: 10, direction: "
             "backward }\nevent_sink: false\n",
             e2e_proc_addr);
    cr_assert_eq(loom_harness_write_file(e2e_h, "ns.yaml", yaml), 0);
    char path[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(e2e_h, "ns.yaml", path, sizeof path);
    cr_assert_eq(CTL("ns-register", "--file", path), 0, "%s", err);
    contains(out, "registered namespace fromfile");
    cr_assert_eq(CTL("ns-register", "--file", path), 21);
    cr_assert_eq(CTL("ns-register", "flagged", "--processor", e2e_proc_addr, "--step-timeout-ms",
                     "1200", "--retry-max-attempts", "2"),
                 0, "%s", err);
    cr_assert_eq(CTL("ns-update", "flagged", "--step-timeout-ms", "4321"), 0, "%s", err);
    cr_assert_eq(CTL("ns-update", "nosuch", "--step-timeout-ms", "1"), 11);
    cr_assert_eq(CTL("--json", "ns-list"), 0, "%s", err);
    contains(out, "{\"name\":\"fromfile\",\"processors\":[");
    contains(out, "\"step_timeout_ms\":2500");
    contains(out, "\"max_attempts\":4");
    contains(out, "\"step_timeout_ms\":4321");
    cr_assert_eq(CTL("ns-list"), 0);
    contains(out, "step timeout 4321 ms");
    cr_assert_eq(loom_harness_write_file(e2e_h, "bad.yaml", "name: x\nprocesor: typo\n"), 0);
    loom_harness_path(e2e_h, "bad.yaml", path, sizeof path);
    cr_assert_eq(CTL("ns-register", "--file", path), 2);
    contains(err, "bad.yaml:2: unknown key");
    e2e_pass();
}
