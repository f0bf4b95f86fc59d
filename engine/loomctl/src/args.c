/* loomctl's command line: options may come before or after the command;
 * each command then checks that it got only the options it understands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ctl_usage(FILE *f)
{
    fputs("usage: loomctl [--addr ADDR] [--json] [--timeout-ms N] COMMAND ...\n"
          "\n"
          "Machines (ARGS is JSON sent as msgpack; @FILE reads it from a file, @- from\n"
          "stdin; --args-hex HEX sends raw bytes instead):\n"
          "  start NS ID [ARGS] [--request-id R]\n"
          "  call NS ID ARGS [--request-id R] [--after N] [--limit N] [--backward|--forward]\n"
          "  notify NS ID ARGS [--request-id R]\n"
          "  repair NS ID [ARGS] [--request-id R]\n"
          "  simple-repair NS ID\n"
          "  get NS ID [--after N] [--limit N] [--backward|--forward]\n"
          "  history NS ID [--after N] [--limit N] [--backward|--forward]\n"
          "  remove NS ID\n"
          "  list NS [--status working|failed|retrying] [--after ID] [--limit N] [--all]\n"
          "Namespaces:\n"
          "  ns-list\n"
          "  ns-register NAME --processor ADDR [NAMESPACE FLAGS]\n"
          "  ns-register --file FILE      (YAML: one entry of loomd's `namespaces:`)\n"
          "  ns-update NAME [NAMESPACE FLAGS]   (changes only the given settings)\n"
          "  namespace flags: --processor ADDR (repeatable) --step-timeout-ms N\n"
          "    --retry-initial-ms N --retry-factor F --retry-max-interval-ms N\n"
          "    --retry-max-attempts N --retry-max-total-ms N --retry-jitter F\n"
          "    --range-limit N --range-backward|--range-forward --event-sink|--no-event-sink\n"
          "\n"
          "--addr defaults to $LOOM_ADDR, else unix:./loomd.sock; ADDR is unix:PATH or\n"
          "tcp:HOST:PORT. --timeout-ms (default 30000) bounds connecting and the reply.\n"
          "--json prints one JSON object on stdout, errors included.\n"
          "\n"
          "Exit codes: 0 ok, 1 local failure, 2 usage, 3 cannot connect or connection\n"
          "lost, 10 + Loom error code otherwise: 11 NAMESPACE_NOT_FOUND,\n"
          "12 MACHINE_NOT_FOUND, 13 MACHINE_ALREADY_EXISTS, 14 MACHINE_FAILED,\n"
          "15 MACHINE_ALREADY_WORKING, 16 REPAIR_FAILED, 17 PROCESSOR_UNAVAILABLE,\n"
          "18 TIMEOUT, 19 INVALID_ARGUMENT, 20 RESOURCE_EXHAUSTED,\n"
          "21 NAMESPACE_ALREADY_EXISTS, 23 STORAGE_FULL, 25 IO, 27 PROTOCOL,\n"
          "29 PROCESSOR_FAILED, 30 BAD_REPLY, 33 SHUTTING_DOWN (see loom/error.h).\n",
          f);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "loomctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(loomctl --help for usage)\n");
    return CTL_EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(s, UINT32_MAX, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(d) || d < 0)
        return false;
    *out = d;
    return true;
}

/* Options that take a value. Returns 1 when name was one of them. */
static int value_option(ctl_opts *o, const char *name, const char *v, int *rc)
{
    bool ok = true;
    if (strcmp(name, "--addr") == 0) {
        o->addr = v;
    } else if (strcmp(name, "--timeout-ms") == 0) {
        ok = parse_u32(v, &o->timeout_ms) && o->timeout_ms > 0;
    } else if (strcmp(name, "--request-id") == 0) {
        o->request_id = v;
        o->seen |= OPT_REQUEST_ID;
    } else if (strcmp(name, "--after") == 0) {
        o->after = v;
        o->seen |= OPT_AFTER;
    } else if (strcmp(name, "--limit") == 0) {
        ok = parse_u32(v, &o->limit);
        o->seen |= OPT_LIMIT;
    } else if (strcmp(name, "--status") == 0) {
        o->status = v;
        o->seen |= OPT_STATUS;
    } else if (strcmp(name, "--args-hex") == 0) {
        o->args_hex = v;
        o->seen |= OPT_ARGS_HEX;
    } else if (strcmp(name, "--file") == 0) {
        o->file = v;
        o->seen |= OPT_FILE;
    } else if (strcmp(name, "--processor") == 0) {
        if (o->n_processors >= CTL_MAX_PROCESSORS)
            ok = false;
        else
            o->processors[o->n_processors++] = v;
        o->seen |= OPT_PROCESSOR;
    } else if (strcmp(name, "--step-timeout-ms") == 0) {
        ok = parse_u32(v, &o->step_timeout_ms);
        o->seen |= OPT_STEP_TIMEOUT;
    } else if (strcmp(name, "--range-limit") == 0) {
        ok = parse_u32(v, &o->range_limit);
        o->seen |= OPT_RANGE_LIMIT;
    } else {
        return 0;
    }
    if (!ok)
        *rc = CTL_EXIT_USAGE;
    return 1;
}

static int retry_option(ctl_opts *o, const char *name, const char *v, int *rc)
{
    bool ok;
    unsigned bit;
    if (strcmp(name, "--retry-initial-ms") == 0) {
        ok = parse_u32(v, &o->retry_initial_ms);
        bit = RETRY_INITIAL;
    } else if (strcmp(name, "--retry-factor") == 0) {
        ok = parse_double(v, &o->retry_factor);
        bit = RETRY_FACTOR;
    } else if (strcmp(name, "--retry-max-interval-ms") == 0) {
        ok = parse_u32(v, &o->retry_max_interval_ms);
        bit = RETRY_MAX_INTERVAL;
    } else if (strcmp(name, "--retry-max-attempts") == 0) {
        ok = parse_u32(v, &o->retry_max_attempts);
        bit = RETRY_MAX_ATTEMPTS;
    } else if (strcmp(name, "--retry-max-total-ms") == 0) {
        ok = parse_u64(v, UINT64_MAX, &o->retry_max_total_ms);
        bit = RETRY_MAX_TOTAL;
    } else if (strcmp(name, "--retry-jitter") == 0) {
        ok = parse_double(v, &o->retry_jitter) && o->retry_jitter <= 1.0;
        bit = RETRY_JITTER;
    } else {
        return 0;
    }
    o->retry_set |= bit;
    o->seen |= OPT_RETRY;
    if (!ok)
        *rc = CTL_EXIT_USAGE;
    return 1;
}

static int flag_option(ctl_opts *o, const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } flags[] = {
        {"--backward", OPT_BACKWARD},
        {"--forward", OPT_FORWARD},
        {"--all", OPT_ALL},
        {"--range-backward", OPT_RANGE_DIR},
        {"--range-forward", OPT_RANGE_DIR},
        {"--event-sink", OPT_EVENT_SINK},
        {"--no-event-sink", OPT_EVENT_SINK},
    };
    if (strcmp(name, "--json") == 0) {
        o->json = true;
        return 1;
    }
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(flags); i++) {
        if (strcmp(name, flags[i].name) != 0)
            continue;
        o->seen |= flags[i].bit;
        if (flags[i].bit == OPT_RANGE_DIR)
            o->range_backward = strcmp(name, "--range-backward") == 0;
        if (flags[i].bit == OPT_EVENT_SINK)
            o->event_sink = strcmp(name, "--event-sink") == 0;
        return 1;
    }
    return 0;
}

/* "-5" is a JSON number (ARGS), not an option. */
static bool is_option(const char *a)
{
    return a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
}

static int add_positional(ctl_opts *o, const char *a)
{
    if (o->command == NULL) {
        o->command = a;
        return 0;
    }
    if (o->n_pos >= CTL_MAX_POSITIONAL)
        return usage_error("too many arguments at '%s'", a);
    o->pos[o->n_pos++] = a;
    return 0;
}

static int parse_one_option(ctl_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        ctl_usage(stdout);
        return -1;
    }
    if (flag_option(o, a))
        return 0;
    int rc = 0;
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    bool takes = value_option(o, a, v, &rc) || retry_option(o, a, v, &rc);
    if (!takes)
        return usage_error("unknown option %s", a);
    if (v == NULL)
        return usage_error("%s needs a value", a);
    if (rc != 0)
        return usage_error("bad value for %s", a);
    (*i)++;
    return 0;
}

int ctl_parse(int argc, char **argv, ctl_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *env = getenv("LOOM_ADDR");
    o->addr = env && *env ? env : "unix:./loomd.sock";
    o->timeout_ms = 30000;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (!options_done && strcmp(a, "--") == 0)
            options_done = true;
        else if (!options_done && is_option(a))
            rc = parse_one_option(o, argc, argv, &i);
        else
            rc = add_positional(o, a);
        if (rc != 0)
            return rc;
    }
    if (o->command == NULL) {
        ctl_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    return 0;
}
