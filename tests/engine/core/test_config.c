/* loomd's YAML configuration (engine/core/src/config.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "loom/engine.h"

static const char full[] = "listen:\n"
                           "  - unix:/tmp/x.sock\n"
                           "  - tcp:127.0.0.1:7400\n"
                           "data_dir: /tmp/data\n"
                           "log_level: debug\n"
                           "limits:\n"
                           "  max_frame_bytes: 65536\n"
                           "  max_connections: 10\n"
                           "  max_queued_calls_per_machine: 3\n"
                           "  max_steps_in_flight: 7\n"
                           "  max_events_per_step: 9\n"
                           "  max_event_bytes: 1000\n"
                           "  max_aux_state_bytes: 2000\n"
                           "storage:\n"
                           "  map_size_initial_mb: 16\n"
                           "  map_size_max_mb: 128\n"
                           "  durability: nosync\n"
                           "request_id_window_s: 60\n"
                           "namespaces:\n"
                           "  - name: payment\n"
                           "    processor: unix:/tmp/p.sock\n"
                           "    step_timeout_ms: 1234\n"
                           "    retry:\n"
                           "      initial_interval_ms: 10\n"
                           "      factor: 1.5\n"
                           "      max_interval_ms: 500\n"
                           "      max_attempts: 4\n"
                           "      max_total_ms: 0\n"
                           "      jitter: 0.2\n"
                           "    default_range: { limit: 20, direction: forward }\n"
                           "    event_sink: true\n"
                           "  - name: batch\n"
                           "    processors: [unix:/tmp/a.sock, tcp:127.0.0.1:9]\n";

Test(config, every_key_is_read)
{
    loom_config c;
    cr_assert_eq(loom_config_parse(full, strlen(full), "t.yaml", &c), 0, "%s", loom_errdetail());
    cr_assert_eq(c.n_listen, 2);
    cr_assert_str_eq(c.listen[1], "tcp:127.0.0.1:7400");
    cr_assert_str_eq(c.data_dir, "/tmp/data");
    cr_assert_eq(c.log_level, LOOM_LOG_DEBUG);
    cr_assert_eq(c.limits.max_frame_bytes, 65536);
    cr_assert_eq(c.limits.max_connections, 10);
    cr_assert_eq(c.limits.max_queued_calls_per_machine, 3);
    cr_assert_eq(c.limits.max_steps_in_flight, 7);
    cr_assert_eq(c.limits.max_events_per_step, 9);
    cr_assert_eq(c.limits.max_event_bytes, 1000);
    cr_assert_eq(c.limits.max_aux_state_bytes, 2000);
    cr_assert_eq(c.map_size_initial_mb, 16);
    cr_assert_eq(c.map_size_max_mb, 128);
    cr_assert(c.nosync);
    cr_assert_eq(c.request_id_window_s, 60);
    cr_assert_eq(c.n_namespaces, 2);
    loom_ns_config *p = &c.namespaces[0];
    cr_assert_str_eq(p->name, "payment");
    cr_assert_eq(p->n_processors, 1);
    cr_assert_eq(p->step_timeout_ms, 1234);
    cr_assert_eq(p->retry.initial_interval_ms, 10);
    cr_assert_float_eq(p->retry.factor, 1.5, 1e-9);
    cr_assert_eq(p->retry.max_interval_ms, 500);
    cr_assert_eq(p->retry.max_attempts, 4);
    cr_assert_eq(p->retry.max_total_ms, 0);
    cr_assert_float_eq(p->retry.jitter, 0.2, 1e-9);
    cr_assert_eq(p->default_range.limit, 20);
    cr_assert_not(p->default_range.backward);
    cr_assert(p->event_sink);
    cr_assert_eq(c.namespaces[1].n_processors, 2);
    cr_assert_str_eq(c.namespaces[1].processors[1], "tcp:127.0.0.1:9");
    cr_assert_eq(loom_config_check(&c), 0);
    loom_config_free(&c);
}

Test(config, defaults)
{
    loom_config c;
    const char *y = "listen: unix:/tmp/s\ndata_dir: /tmp/d\n";
    cr_assert_eq(loom_config_parse(y, strlen(y), "t", &c), 0, "%s", loom_errdetail());
    cr_assert_eq(c.limits.max_frame_bytes, 16777216);
    cr_assert_eq(c.limits.max_queued_calls_per_machine, 64);
    cr_assert_eq(c.limits.max_steps_in_flight, 4096);
    cr_assert_eq(c.request_id_window_s, 86400);
    cr_assert_not(c.nosync);
    cr_assert_eq(c.log_level, LOOM_LOG_INFO);
    loom_config_free(&c);
}

static void expect_bad(const char *yaml, const char *needle)
{
    loom_config c;
    int rc = loom_config_parse(yaml, strlen(yaml), "bad.yaml", &c);
    cr_assert_eq(rc, LOOM_EINVALID_ARGUMENT, "accepted: %s", yaml);
    cr_assert(strstr(loom_errdetail(), needle) != NULL, "'%s' lacks '%s'", loom_errdetail(),
              needle);
}

Test(config, bad_input_is_named_with_its_line)
{
    expect_bad("listen: [unix:/a]\nlimitz: {}\n", "bad.yaml:2: unknown key 'limitz'");
    expect_bad("limits:\n  max_connections: -1\n", "bad.yaml:2");
    expect_bad("limits:\n  max_connections: lots\n", "not an integer");
    expect_bad("limits:\n  max_frame_bytes: 10\n", "out of range");
    expect_bad("storage: {durability: maybe}\n", "sync or nosync");
    expect_bad("namespaces:\n  - name: 'a b'\n    processor: unix:/x\n", "namespace");
    expect_bad("namespaces:\n  - name: a\n", "no processor");
    expect_bad("namespaces:\n  - name: a\n    processor: http://x\n", "unix:PATH");
    expect_bad("namespaces:\n  - name: a\n    processor: unix:/x\n    retry: {max_attempts: 0, "
               "max_total_ms: 0}\n",
               "max_attempts");
    expect_bad("namespaces:\n  - {name: a, processor: unix:/x}\n  - {name: a, processor: "
               "unix:/y}\n",
               "twice");
    expect_bad("listen: [unclosed\n", "bad.yaml");
    expect_bad("log_level: loud\n", "log_level");
    expect_bad("storage: {map_size_initial_mb: 100, map_size_max_mb: 10}\n", "exceeds");
}

Test(config, check_requires_listen_and_data_dir)
{
    loom_config c;
    cr_assert_eq(loom_config_parse("{}", 2, "t", &c), 0);
    cr_assert_eq(loom_config_check(&c), LOOM_EINVALID_ARGUMENT);
    char *addrs[] = {"unix:/tmp/z"};
    cr_assert_eq(loom_config_set_listen(&c, addrs, 1), 0);
    cr_assert_eq(loom_config_check(&c), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_config_set_string(&c.data_dir, "/tmp/d"), 0);
    cr_assert_eq(loom_config_check(&c), 0);
    loom_config_free(&c);
}

Test(config, missing_file_is_io)
{
    loom_config c;
    cr_assert_eq(loom_config_load("/nonexistent/loomd.yaml", &c), LOOM_EIO);
}

Test(config, id_rules)
{
    cr_assert_eq(loom_check_ns_name("a.b-c_9"), 0);
    cr_assert_eq(loom_check_ns_name(""), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_check_ns_name("a/b"), LOOM_EINVALID_ARGUMENT);
    char ns65[66];
    memset(ns65, 'a', 65);
    ns65[65] = 0;
    cr_assert_eq(loom_check_ns_name(ns65), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_check_machine_id("héllo ✓"), 0);
    cr_assert_eq(loom_check_machine_id("\xc0\x80"), LOOM_EINVALID_ARGUMENT);     /* overlong */
    cr_assert_eq(loom_check_machine_id("\xed\xa0\x80"), LOOM_EINVALID_ARGUMENT); /* surrogate */
    cr_assert_eq(loom_check_machine_id("\xe2\x9c"), LOOM_EINVALID_ARGUMENT);     /* truncated */
    cr_assert_eq(loom_check_machine_id(""), LOOM_EINVALID_ARGUMENT);
}
