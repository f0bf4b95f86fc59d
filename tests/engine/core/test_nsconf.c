/* Namespace config as stored (engine/core/src/nsconf.c): the protobuf
 * round trip and the checks on what the admin API hands in. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

Test(nsconf, round_trip_keeps_every_field)
{
    char *eps[] = {"unix:/tmp/a.sock", "tcp:127.0.0.1:9"};
    loom_ns_config in = {.name = "pay",
                         .processors = eps,
                         .n_processors = 2,
                         .step_timeout_ms = 1234,
                         .default_range = {7, false},
                         .event_sink = true};
    in.retry = (loom_retry_policy){10, 1.5, 500, 4, 9000, 0.25};
    uint8_t *buf;
    size_t len;
    cr_assert_eq(loom__nsconf_encode(&in, &buf, &len), 0);
    loom_ns_config out;
    cr_assert_eq(loom__nsconf_decode(buf, len, &out), 0, "%s", loom_errdetail());
    free(buf);
    cr_assert_str_eq(out.name, "pay");
    cr_assert_eq(out.n_processors, 2);
    cr_assert_str_eq(out.processors[1], "tcp:127.0.0.1:9");
    cr_assert_eq(out.step_timeout_ms, 1234);
    cr_assert_eq(out.default_range.limit, 7);
    cr_assert_not(out.default_range.backward);
    cr_assert(out.event_sink);
    cr_assert_eq(out.retry.initial_interval_ms, 10);
    cr_assert_float_eq(out.retry.factor, 1.5, 1e-12);
    cr_assert_eq(out.retry.max_interval_ms, 500);
    cr_assert_eq(out.retry.max_attempts, 4);
    cr_assert_eq(out.retry.max_total_ms, 9000);
    cr_assert_float_eq(out.retry.jitter, 0.25, 1e-12);
    loom_ns_config_free(&out);
}

Test(nsconf, defaults_fill_what_the_admin_api_leaves_out)
{
    Loom__V1__NamespaceConfig pb = LOOM__V1__NAMESPACE_CONFIG__INIT;
    char *eps[] = {"unix:/tmp/p"};
    pb.name = "n";
    pb.processor_endpoints = eps;
    pb.n_processor_endpoints = 1;
    loom_ns_config c;
    cr_assert_eq(loom__nsconf_from_pb(&pb, &c), 0, "%s", loom_errdetail());
    cr_assert_eq(c.step_timeout_ms, 5000);
    cr_assert_eq(c.retry.max_attempts, 10);
    cr_assert_eq(c.default_range.limit, 100);
    cr_assert(c.default_range.backward);
    loom_ns_config_free(&c);
}

Test(nsconf, bad_configs_are_refused)
{
    Loom__V1__NamespaceConfig pb = LOOM__V1__NAMESPACE_CONFIG__INIT;
    Loom__V1__RetryPolicy rp = LOOM__V1__RETRY_POLICY__INIT;
    char *eps[] = {"http://nope"};
    loom_ns_config c;
    cr_assert_eq(loom__nsconf_from_pb(NULL, &c), LOOM_EINVALID_ARGUMENT);
    pb.name = "n";
    cr_assert_eq(loom__nsconf_from_pb(&pb, &c), LOOM_EINVALID_ARGUMENT); /* no endpoint */
    pb.processor_endpoints = eps;
    pb.n_processor_endpoints = 1;
    cr_assert_eq(loom__nsconf_from_pb(&pb, &c), LOOM_EINVALID_ARGUMENT); /* bad endpoint */
    eps[0] = "unix:/x";
    pb.retry = &rp; /* all zero: no interval, no bound */
    cr_assert_eq(loom__nsconf_from_pb(&pb, &c), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom__nsconf_decode("\xff\xff\xff", 3, &c), LOOM_ECORRUPTED);
}
