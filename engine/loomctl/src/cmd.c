/* loomctl commands on machines, and the dispatch table. */
#include "cli.h"
#include "ns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX_PAGES 10000

typedef struct ctl_args {
    uint8_t *data;
    size_t len;
} ctl_args;

typedef struct cmd {
    const char *name;
    int min_pos, max_pos;
    unsigned allowed; /* OPT_* */
    int args_pos;     /* index of ARGS among the positionals, -1 none */
    bool args_required;
    int (*run)(const ctl_opts *o, loom_client *c, const ctl_args *a);
} cmd;

/* ------------------------------------------------------------ ARGS */

static int read_all(FILE *f, const char *name, ctl_buf *b)
{
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ctl_buf_put(b, chunk, n);
    if (ferror(f) || b->err) {
        fprintf(stderr, "loomctl: reading %s: %s\n", name,
                b->err == LOOM_ERESOURCE_EXHAUSTED ? "larger than 16 MiB" : strerror(errno));
        return CTL_EXIT_LOCAL;
    }
    return 0;
}

/* "@PATH" or "@-": the JSON text comes from a file or stdin. */
static int read_arg_text(const char *arg, ctl_buf *text)
{
    ctl_buf_init(text, CTL_ARGS_MAX_BYTES);
    if (arg[0] != '@') {
        ctl_buf_put(text, arg, strlen(arg));
        return text->err ? CTL_EXIT_LOCAL : 0;
    }
    if (strcmp(arg, "@-") == 0)
        return read_all(stdin, "stdin", text);
    FILE *f = fopen(arg + 1, "rb");
    if (f == NULL) {
        fprintf(stderr, "loomctl: %s: %s\n", arg + 1, strerror(errno));
        return CTL_EXIT_LOCAL;
    }
    int rc = read_all(f, arg + 1, text);
    fclose(f);
    return rc;
}

static int load_args(const ctl_opts *o, const cmd *k, ctl_args *a)
{
    const char *arg = k->args_pos >= 0 && k->args_pos < o->n_pos ? o->pos[k->args_pos] : NULL;
    if (o->args_hex) {
        if (arg) {
            fprintf(stderr, "loomctl: give ARGS or --args-hex, not both\n");
            return CTL_EXIT_USAGE;
        }
        if (ctl_hex_decode(o->args_hex, &a->data, &a->len) < 0) {
            fprintf(stderr, "loomctl: --args-hex: not an even-length hex string\n");
            return CTL_EXIT_USAGE;
        }
        return 0;
    }
    if (arg == NULL) {
        if (k->args_required) {
            fprintf(stderr, "loomctl: %s needs ARGS (JSON, @FILE or --args-hex)\n", k->name);
            return CTL_EXIT_USAGE;
        }
        return 0;
    }
    ctl_buf text;
    int rc = read_arg_text(arg, &text);
    if (rc == 0) {
        char err[256];
        if (ctl_json_to_msgpack((const char *)text.data, text.len, CTL_ARGS_MAX_BYTES, &a->data,
                                &a->len, err, sizeof err) < 0) {
            fprintf(stderr, "loomctl: ARGS is not valid JSON: %s\n", err);
            rc = CTL_EXIT_USAGE;
        }
    }
    ctl_buf_free(&text);
    return rc;
}

/* ------------------------------------------------------------ shared bits */

static int range_of(const ctl_opts *o, loom_client_range *r, const loom_client_range **out)
{
    *out = NULL;
    if (!(o->seen & (OPT_AFTER | OPT_LIMIT | OPT_BACKWARD | OPT_FORWARD)))
        return 0;
    if ((o->seen & OPT_BACKWARD) && (o->seen & OPT_FORWARD)) {
        fprintf(stderr, "loomctl: --backward and --forward exclude each other\n");
        return CTL_EXIT_USAGE;
    }
    memset(r, 0, sizeof *r);
    if (o->seen & OPT_AFTER) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(o->after, &end, 10);
        if (errno || *end || o->after[0] < '0' || o->after[0] > '9') {
            fprintf(stderr, "loomctl: --after wants an event id here\n");
            return CTL_EXIT_USAGE;
        }
        r->after = v;
        r->has_after = true;
    }
    r->limit = o->limit;
    r->backward = (o->seen & OPT_BACKWARD) != 0;
    *out = r;
    return 0;
}

static loom_client_req req_of(const ctl_opts *o, const loom_client_range *range)
{
    loom_client_req req = {
        .timeout_ms = o->timeout_ms, .request_id = o->request_id, .range = range};
    return req;
}

static int fail(const ctl_opts *o, loom_client *c, int rc)
{
    return ctl_report_error(o, rc, loom_client_errmsg(c));
}

static void print_response(const ctl_opts *o, const loom_client_result *res, const char *what)
{
    if (o->json) {
        printf("{\"ok\":true,\"last_event_id\":%llu,\"response\":",
               (unsigned long long)res->last_event_id);
        ctl_render_msgpack(stdout, res->response, res->response_len);
        printf("}\n");
        return;
    }
    printf("%s %s/%s (last event %llu)\n", what, o->pos[0], o->pos[1],
           (unsigned long long)res->last_event_id);
    if (res->response_len) {
        printf("response: ");
        ctl_render_msgpack(stdout, res->response, res->response_len);
        printf("\n");
    }
}

static int print_done(const ctl_opts *o, const char *what)
{
    if (o->json)
        printf("{\"ok\":true}\n");
    else
        printf("%s %s/%s\n", what, o->pos[0], o->pos[1]);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------ machines */

typedef int (*send_args_fn)(loom_client *, const char *, const char *, const void *, size_t,
                            const loom_client_req *, loom_client_result *);

static int run_with_args(const ctl_opts *o, loom_client *c, const ctl_args *a, send_args_fn fn,
                         const char *what, bool ranged)
{
    loom_client_range r;
    const loom_client_range *range = NULL;
    int rc = ranged ? range_of(o, &r, &range) : 0;
    if (rc != 0)
        return rc;
    loom_client_req req = req_of(o, range);
    loom_client_result res;
    rc = fn(c, o->pos[0], o->pos[1], a->data, a->len, &req, &res);
    if (rc < 0)
        return fail(o, c, rc);
    print_response(o, &res, what);
    loom_client_result_free(&res);
    return CTL_EXIT_OK;
}

static int cmd_start(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    return run_with_args(o, c, a, loom_client_start, "started", false);
}

static int cmd_call(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    return run_with_args(o, c, a, loom_client_call, "called", true);
}

static int cmd_repair(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    return run_with_args(o, c, a, loom_client_repair, "repaired", false);
}

static int cmd_notify(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    loom_client_req req = req_of(o, NULL);
    loom_client_result res;
    int rc = loom_client_notify(c, o->pos[0], o->pos[1], a->data, a->len, &req, &res);
    if (rc < 0)
        return fail(o, c, rc);
    if (o->json)
        printf("{\"ok\":true,\"notification_id\":%llu}\n", (unsigned long long)res.notification_id);
    else
        printf("notification %llu queued for %s/%s\n", (unsigned long long)res.notification_id,
               o->pos[0], o->pos[1]);
    loom_client_result_free(&res);
    return CTL_EXIT_OK;
}

static int cmd_simple_repair(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    (void)a;
    loom_client_req req = req_of(o, NULL);
    int rc = loom_client_simple_repair(c, o->pos[0], o->pos[1], &req, NULL);
    return rc < 0 ? fail(o, c, rc) : print_done(o, "resumed");
}

static int cmd_remove(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    (void)a;
    loom_client_req req = req_of(o, NULL);
    int rc = loom_client_remove(c, o->pos[0], o->pos[1], &req, NULL);
    return rc < 0 ? fail(o, c, rc) : print_done(o, "removed");
}

static int get_machine(const ctl_opts *o, loom_client *c, bool history_only)
{
    loom_client_range r;
    const loom_client_range *range = NULL;
    int rc = range_of(o, &r, &range);
    if (rc != 0)
        return rc;
    loom_client_req req = req_of(o, range);
    loom_client_result res;
    rc = loom_client_get_machine(c, o->pos[0], o->pos[1], &req, &res);
    if (rc < 0)
        return fail(o, c, rc);
    if (history_only)
        ctl_print_history(stdout, res.machine, o->json);
    else
        ctl_print_machine(stdout, res.machine, o->json);
    loom_client_result_free(&res);
    return CTL_EXIT_OK;
}

static int cmd_get(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    (void)a;
    return get_machine(o, c, false);
}

static int cmd_history(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    (void)a;
    return get_machine(o, c, true);
}

static int status_of(const char *s, int *out)
{
    static const char *names[] = {"any", "working", "failed", "retrying"};
    for (int i = 0; i < 4; i++)
        if (s == NULL || strcmp(s, names[i]) == 0) {
            *out = s ? i : 0;
            return 0;
        }
    fprintf(stderr, "loomctl: --status wants working, failed, retrying or any\n");
    return CTL_EXIT_USAGE;
}

/* --all: machine summaries of every page, printed as one list. */
typedef struct page_set {
    Loom__V1__MachineSummary **all;
    size_t n_all;
} page_set;

static int collect_page(page_set *ps, const loom_client_result *res)
{
    size_t n = res->machines->n_machines;
    Loom__V1__MachineSummary **grown = realloc(ps->all, (ps->n_all + n + 1) * sizeof *grown);
    if (grown == NULL)
        return LOOM_ENOMEM;
    ps->all = grown;
    if (n > 0) /* an empty page carries no array at all */
        memcpy(ps->all + ps->n_all, res->machines->machines, n * sizeof *grown);
    ps->n_all += n;
    return 0;
}

static int cmd_list(const ctl_opts *o, loom_client *c, const ctl_args *a)
{
    (void)a;
    int status = 0;
    int rc = status_of(o->status, &status);
    if (rc != 0)
        return rc;
    loom_client_req req = req_of(o, NULL);
    bool all = (o->seen & OPT_ALL) != 0;
    /* Pages stay alive until printed: the summaries point into them. */
    loom_client_result *pages = calloc(all ? LIST_MAX_PAGES : 1, sizeof *pages);
    page_set ps = {0};
    int n_pages = 0;
    const char *after = o->after;
    int exit_code = CTL_EXIT_OK;
    if (pages == NULL)
        return ctl_report_error(o, LOOM_ENOMEM, "page table");
    for (;;) {
        loom_client_result *res = &pages[n_pages];
        rc = loom_client_list_machines(c, o->pos[0], status, after, o->limit, &req, res);
        if (rc < 0) {
            exit_code = fail(o, c, rc);
            break;
        }
        n_pages++;
        if (collect_page(&ps, res) < 0) {
            exit_code = ctl_report_error(o, LOOM_ENOMEM, "machine list");
            break;
        }
        const char *next = res->machines->next_after;
        bool more = all && next && *next && n_pages < LIST_MAX_PAGES;
        if (more && after && strcmp(next, after) == 0) {
            exit_code = ctl_report_error(o, LOOM_EPROTOCOL, "server repeated a page cursor");
            break;
        }
        if (!more) {
            ctl_print_list(stdout, ps.all, ps.n_all, next, o->json);
            break;
        }
        after = next;
    }
    for (int i = 0; i < n_pages; i++)
        loom_client_result_free(&pages[i]);
    free(pages);
    free(ps.all);
    return exit_code;
}

/* ------------------------------------------------------------ dispatch */

#define RANGE_OPTS (OPT_AFTER | OPT_LIMIT | OPT_BACKWARD | OPT_FORWARD)

static const cmd commands[] = {
    {"start", 2, 3, OPT_REQUEST_ID | OPT_ARGS_HEX, 2, false, cmd_start},
    {"call", 2, 3, OPT_REQUEST_ID | OPT_ARGS_HEX | RANGE_OPTS, 2, true, cmd_call},
    {"notify", 2, 3, OPT_REQUEST_ID | OPT_ARGS_HEX, 2, true, cmd_notify},
    {"repair", 2, 3, OPT_REQUEST_ID | OPT_ARGS_HEX, 2, false, cmd_repair},
    {"simple-repair", 2, 2, 0, -1, false, cmd_simple_repair},
    {"get", 2, 2, RANGE_OPTS, -1, false, cmd_get},
    {"history", 2, 2, RANGE_OPTS, -1, false, cmd_history},
    {"remove", 2, 2, 0, -1, false, cmd_remove},
    {"list", 1, 1, OPT_STATUS | OPT_AFTER | OPT_LIMIT | OPT_ALL, -1, false, cmd_list},
    {"ns-list", 0, 0, 0, -1, false, ctl_cmd_ns_list},
    {"ns-register", 0, 1, CTL_NS_OPTS | OPT_FILE, -1, false, ctl_cmd_ns_register},
    {"ns-update", 1, 1, CTL_NS_OPTS, -1, false, ctl_cmd_ns_update},
};

static const cmd *find_command(const char *name)
{
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int check_usage(const ctl_opts *o, const cmd *k)
{
    if (o->n_pos < k->min_pos || o->n_pos > k->max_pos) {
        fprintf(stderr, "loomctl: %s takes %d to %d arguments, got %d (loomctl --help)\n", k->name,
                k->min_pos, k->max_pos, o->n_pos);
        return CTL_EXIT_USAGE;
    }
    static const char *names[] = {"--request-id",
                                  "--after",
                                  "--limit",
                                  "--backward",
                                  "--forward",
                                  "--status",
                                  "--all",
                                  "--args-hex",
                                  "--processor",
                                  "--step-timeout-ms",
                                  "--retry-*",
                                  "--range-limit",
                                  "--range-backward/--range-forward",
                                  "--event-sink/--no-event-sink",
                                  "--file"};
    unsigned extra = o->seen & ~k->allowed;
    for (unsigned i = 0; i < LOOM_ARRAY_SIZE(names); i++)
        if (extra & (1u << i)) {
            fprintf(stderr, "loomctl: %s does not take %s (loomctl --help)\n", k->name, names[i]);
            return CTL_EXIT_USAGE;
        }
    LOOM_ASSERT(extra == 0);
    return 0;
}

int ctl_run(const ctl_opts *o)
{
    const cmd *k = find_command(o->command);
    if (k == NULL) {
        fprintf(stderr, "loomctl: unknown command '%s' (loomctl --help)\n", o->command);
        return CTL_EXIT_USAGE;
    }
    int rc = check_usage(o, k);
    ctl_args a = {0};
    if (rc == 0)
        rc = load_args(o, k, &a);
    if (rc != 0)
        return rc;
    loom_client_options co;
    loom_client_options_init(&co);
    co.connect_timeout_ms = o->timeout_ms;
    co.request_timeout_ms = o->timeout_ms;
    loom_client *c = NULL;
    rc = loom_client_connect(o->addr, &co, &c);
    if (rc < 0) {
        free(a.data);
        if (rc == LOOM_EINVALID_ARGUMENT) {
            fprintf(stderr, "loomctl: --addr: %s\n", loom_errdetail());
            return CTL_EXIT_USAGE;
        }
        /* Whatever kept us from connecting, scripts see one code for it. */
        ctl_report_error(o, rc, loom_errdetail());
        return CTL_EXIT_CONNECT;
    }
    rc = k->run(o, c, &a);
    loom_client_close(c);
    free(a.data);
    return rc;
}
