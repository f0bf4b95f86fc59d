/* Namespace configuration as stored: the wire's NamespaceConfig message,
 * packed. One encoding for the store, the admin API and ListNamespaces. */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

int loom__nsconf_from_pb(const Loom__V1__NamespaceConfig *pb, loom_ns_config *out)
{
    memset(out, 0, sizeof *out);
    if (!pb)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace config missing");
    out->step_timeout_ms = pb->step_timeout_ms ? pb->step_timeout_ms : 5000;
    loom_retry_policy_default(&out->retry);
    if (pb->retry) {
        out->retry.initial_interval_ms = pb->retry->initial_interval_ms;
        out->retry.factor = pb->retry->factor;
        out->retry.max_interval_ms = pb->retry->max_interval_ms;
        out->retry.max_attempts = pb->retry->max_attempts;
        out->retry.max_total_ms = pb->retry->max_total_ms;
        out->retry.jitter = pb->retry->jitter;
    }
    out->default_range.limit = 100;
    out->default_range.backward = true;
    if (pb->default_range) {
        out->default_range.limit = pb->default_range->limit;
        out->default_range.backward =
            pb->default_range->direction == LOOM__V1__DIRECTION__DIRECTION_BACKWARD;
    }
    out->event_sink = pb->event_sink;
    if (pb->n_processor_endpoints > 16)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "at most 16 processor endpoints");
    out->processors =
        calloc(pb->n_processor_endpoints ? pb->n_processor_endpoints : 1, sizeof(char *));
    if (!out->processors)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    out->n_processors = pb->n_processor_endpoints;
    int rc = loom_config_set_string(&out->name, pb->name ? pb->name : "");
    for (size_t i = 0; rc == 0 && i < pb->n_processor_endpoints; i++)
        rc = loom_config_set_string(&out->processors[i], pb->processor_endpoints[i]);
    if (rc == 0)
        rc = loom_ns_config_check(out);
    if (rc)
        loom_ns_config_free(out);
    return rc;
}

int loom__nsconf_to_pb(const loom_ns_config *ns, Loom__V1__NamespaceConfig *pb,
                       Loom__V1__RetryPolicy *retry, Loom__V1__HistoryRange *range)
{
    loom__v1__namespace_config__init(pb);
    loom__v1__retry_policy__init(retry);
    loom__v1__history_range__init(range);
    pb->name = ns->name;
    pb->n_processor_endpoints = ns->n_processors;
    pb->processor_endpoints = ns->processors;
    pb->step_timeout_ms = ns->step_timeout_ms;
    retry->initial_interval_ms = ns->retry.initial_interval_ms;
    retry->factor = ns->retry.factor;
    retry->max_interval_ms = ns->retry.max_interval_ms;
    retry->max_attempts = ns->retry.max_attempts;
    retry->max_total_ms = ns->retry.max_total_ms;
    retry->jitter = ns->retry.jitter;
    pb->retry = retry;
    range->limit = ns->default_range.limit;
    range->direction = ns->default_range.backward ? LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                                                  : LOOM__V1__DIRECTION__DIRECTION_FORWARD;
    pb->default_range = range;
    pb->event_sink = ns->event_sink;
    return 0;
}

int loom__nsconf_encode(const loom_ns_config *ns, uint8_t **out, size_t *len)
{
    Loom__V1__NamespaceConfig pb;
    Loom__V1__RetryPolicy retry;
    Loom__V1__HistoryRange range;
    loom__nsconf_to_pb(ns, &pb, &retry, &range);
    size_t n = loom__v1__namespace_config__get_packed_size(&pb);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    loom__v1__namespace_config__pack(&pb, buf);
    *out = buf;
    *len = n;
    return 0;
}

int loom__nsconf_decode(const void *buf, size_t len, loom_ns_config *out)
{
    Loom__V1__NamespaceConfig *pb = loom__v1__namespace_config__unpack(NULL, len, buf);
    if (!pb)
        return loom_seterr(LOOM_ECORRUPTED, "stored namespace config does not decode");
    int rc = loom__nsconf_from_pb(pb, out);
    loom__v1__namespace_config__free_unpacked(pb, NULL);
    return rc;
}
