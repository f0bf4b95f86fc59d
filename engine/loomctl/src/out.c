/* loomctl output: one readable layout for people, one JSON object for
 * scripts. Payloads (event data, aux_state, responses) are msgpack by
 * convention and shown as JSON text (ctl_render_msgpack). */
#include "cli.h"

#include <string.h>
#include <time.h>

int ctl_exit_code(int err)
{
    if (err == 0)
        return CTL_EXIT_OK;
    if (err == LOOM_ECLOSED)
        return CTL_EXIT_CONNECT;
    return CTL_EXIT_ERROR_BASE + (int)loom_err_wire(err);
}

int ctl_report_error(const ctl_opts *o, int err, const char *message)
{
    const char *msg = message && *message ? message : loom_strerror(err);
    if (o->json) {
        printf("{\"ok\":false,\"error\":{\"code\":%u,\"name\":\"%s\",\"message\":",
               loom_err_wire(err), loom_err_name(err));
        ctl_render_string(stdout, msg, strlen(msg));
        printf("}}\n");
    } else {
        fprintf(stderr, "loomctl: %s: %s\n", loom_err_name(err), msg);
    }
    return ctl_exit_code(err);
}

void ctl_print_time(FILE *f, int64_t unix_ms)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (unix_ms <= 0 || gmtime_r(&secs, &tm) == NULL) {
        fprintf(f, "-");
        return;
    }
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(f, "%s.%03dZ", buf, (int)(unix_ms % 1000));
}

const char *ctl_status_name(int status)
{
    switch (status) {
    case LOOM__V1__MACHINE_STATUS__STATUS_WORKING:
        return "working";
    case LOOM__V1__MACHINE_STATUS__STATUS_FAILED:
        return "failed";
    case LOOM__V1__MACHINE_STATUS__STATUS_RETRYING:
        return "retrying";
    default:
        return "unspecified";
    }
}

static void json_str(FILE *f, const char *s)
{
    s = s ? s : "";
    ctl_render_string(f, s, strlen(s));
}

static void print_event_json(FILE *f, const Loom__V1__Event *e)
{
    fprintf(f, "{\"id\":%llu,\"created_at_ms\":%lld,\"format_version\":%u,\"data\":",
            (unsigned long long)e->id, (long long)e->created_at_ms, e->format_version);
    ctl_render_msgpack(f, e->data.data, e->data.len);
    fputc('}', f);
}

static void print_events_json(FILE *f, const Loom__V1__Machine *m)
{
    fputc('[', f);
    for (size_t i = 0; i < m->n_history; i++) {
        if (i)
            fputc(',', f);
        print_event_json(f, m->history[i]);
    }
    fputc(']', f);
}

static void print_range_human(FILE *f, const Loom__V1__HistoryRange *r)
{
    if (r == NULL)
        return;
    fprintf(f, " (%s",
            r->direction == LOOM__V1__DIRECTION__DIRECTION_BACKWARD ? "backward" : "forward");
    if (r->has_after)
        fprintf(f, ", after %llu", (unsigned long long)r->after);
    if (r->limit)
        fprintf(f, ", limit %u", r->limit);
    fputc(')', f);
}

void ctl_print_history(FILE *f, const Loom__V1__Machine *m, bool json)
{
    if (json) {
        fprintf(f, "{\"ok\":true,\"events\":");
        print_events_json(f, m);
        fprintf(f, "}\n");
        return;
    }
    for (size_t i = 0; i < m->n_history; i++) {
        const Loom__V1__Event *e = m->history[i];
        fprintf(f, "%6llu  ", (unsigned long long)e->id);
        ctl_print_time(f, e->created_at_ms);
        fprintf(f, "  v%u  ", e->format_version);
        ctl_render_msgpack(f, e->data.data, e->data.len);
        fputc('\n', f);
    }
}

static void print_machine_json(FILE *f, const Loom__V1__Machine *m)
{
    fprintf(f, "{\"ok\":true,\"machine\":{\"ns\":");
    json_str(f, m->ns);
    fprintf(f, ",\"id\":");
    json_str(f, m->id);
    fprintf(f,
            ",\"status\":\"%s\",\"last_event_id\":%llu,\"timer_deadline_ms\":%lld,"
            "\"failure_reason\":",
            ctl_status_name(m->status), (unsigned long long)m->last_event_id,
            (long long)m->timer_deadline_ms);
    json_str(f, m->failure_reason);
    fprintf(f,
            ",\"retry_attempt\":%u,\"created_at_ms\":%lld,\"updated_at_ms\":%lld,"
            "\"aux_state\":",
            m->retry_attempt, (long long)m->created_at_ms, (long long)m->updated_at_ms);
    ctl_render_msgpack(f, m->aux_state.data, m->aux_state.len);
    fprintf(f, ",\"history\":");
    print_events_json(f, m);
    fprintf(f, "}}\n");
}

void ctl_print_machine(FILE *f, const Loom__V1__Machine *m, bool json)
{
    if (json) {
        print_machine_json(f, m);
        return;
    }
    fprintf(f, "machine    %s/%s\nstatus     %s", m->ns, m->id, ctl_status_name(m->status));
    if (m->retry_attempt)
        fprintf(f, " (retry attempt %u)", m->retry_attempt);
    fprintf(f, "\nlast event %llu\n", (unsigned long long)m->last_event_id);
    if (m->failure_reason && *m->failure_reason)
        fprintf(f, "reason     %s\n", m->failure_reason);
    fprintf(f, "timer      ");
    if (m->timer_deadline_ms)
        ctl_print_time(f, m->timer_deadline_ms);
    else
        fprintf(f, "none");
    fprintf(f, "\ncreated    ");
    ctl_print_time(f, m->created_at_ms);
    fprintf(f, "\nupdated    ");
    ctl_print_time(f, m->updated_at_ms);
    fprintf(f, "\naux_state  ");
    ctl_render_msgpack(f, m->aux_state.data, m->aux_state.len);
    fprintf(f, "\nhistory    %zu event%s", m->n_history, m->n_history == 1 ? "" : "s");
    print_range_human(f, m->range);
    fprintf(f, "\n");
    ctl_print_history(f, m, false);
}

void ctl_print_list(FILE *f, Loom__V1__MachineSummary *const *ms, size_t n, const char *next,
                    bool json)
{
    if (json) {
        fprintf(f, "{\"ok\":true,\"machines\":[");
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s{\"id\":", i ? "," : "");
            json_str(f, ms[i]->id);
            fprintf(f,
                    ",\"status\":\"%s\",\"last_event_id\":%llu,\"timer_deadline_ms\":%lld,"
                    "\"failure_reason\":",
                    ctl_status_name(ms[i]->status), (unsigned long long)ms[i]->last_event_id,
                    (long long)ms[i]->timer_deadline_ms);
            json_str(f, ms[i]->failure_reason);
            fputc('}', f);
        }
        fprintf(f, "],\"next_after\":");
        json_str(f, next);
        fprintf(f, "}\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%-32s %-9s %8llu  ", ms[i]->id, ctl_status_name(ms[i]->status),
                (unsigned long long)ms[i]->last_event_id);
        if (ms[i]->timer_deadline_ms)
            ctl_print_time(f, ms[i]->timer_deadline_ms);
        else
            fprintf(f, "-");
        if (ms[i]->failure_reason && *ms[i]->failure_reason)
            fprintf(f, "  %s", ms[i]->failure_reason);
        fputc('\n', f);
    }
    if (next && *next)
        fprintf(f, "(more: --after %s)\n", next);
}

static void print_ns_json(FILE *f, const Loom__V1__NamespaceConfig *c)
{
    fprintf(f, "{\"name\":");
    json_str(f, c->name);
    fprintf(f, ",\"processors\":[");
    for (size_t i = 0; i < c->n_processor_endpoints; i++) {
        if (i)
            fputc(',', f);
        json_str(f, c->processor_endpoints[i]);
    }
    fprintf(f, "],\"step_timeout_ms\":%u", c->step_timeout_ms);
    if (c->retry)
        fprintf(f,
                ",\"retry\":{\"initial_interval_ms\":%u,\"factor\":%g,\"max_interval_ms\":%u,"
                "\"max_attempts\":%u,\"max_total_ms\":%llu,\"jitter\":%g}",
                c->retry->initial_interval_ms, c->retry->factor, c->retry->max_interval_ms,
                c->retry->max_attempts, (unsigned long long)c->retry->max_total_ms,
                c->retry->jitter);
    if (c->default_range)
        fprintf(f, ",\"default_range\":{\"limit\":%u,\"direction\":\"%s\"}",
                c->default_range->limit,
                c->default_range->direction == LOOM__V1__DIRECTION__DIRECTION_BACKWARD ? "backward"
                                                                                       : "forward");
    fprintf(f, ",\"event_sink\":%s}", c->event_sink ? "true" : "false");
}

static void print_ns_human(FILE *f, const Loom__V1__NamespaceConfig *c)
{
    fprintf(f, "%s\n  processors   ", c->name);
    for (size_t i = 0; i < c->n_processor_endpoints; i++)
        fprintf(f, "%s%s", i ? ", " : "", c->processor_endpoints[i]);
    fprintf(f, "\n  step timeout %u ms\n", c->step_timeout_ms);
    if (c->retry)
        fprintf(f,
                "  retry        initial %u ms, factor %g, max interval %u ms, "
                "max attempts %u, max total %llu ms, jitter %g\n",
                c->retry->initial_interval_ms, c->retry->factor, c->retry->max_interval_ms,
                c->retry->max_attempts, (unsigned long long)c->retry->max_total_ms,
                c->retry->jitter);
    if (c->default_range)
        fprintf(f, "  range        limit %u, %s\n", c->default_range->limit,
                c->default_range->direction == LOOM__V1__DIRECTION__DIRECTION_BACKWARD ? "backward"
                                                                                       : "forward");
    fprintf(f, "  event sink   %s\n", c->event_sink ? "on" : "off");
}

void ctl_print_namespaces(FILE *f, const Loom__V1__ListNamespacesReply *r, bool json)
{
    if (json)
        fprintf(f, "{\"ok\":true,\"namespaces\":[");
    for (size_t i = 0; i < r->n_namespaces; i++) {
        if (json) {
            if (i)
                fputc(',', f);
            print_ns_json(f, r->namespaces[i]);
        } else {
            print_ns_human(f, r->namespaces[i]);
        }
    }
    if (json)
        fprintf(f, "]}\n");
}
