/* loomctl namespace commands: list, register (from flags or a YAML file
 * shaped like one entry of loomd's `namespaces:`), update (the current
 * config with the given settings changed). */
#include "ns.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define NS_FILE_MAX_BYTES (1024u * 1024u)

/* A NamespaceConfig with storage for its parts. Strings are borrowed from
 * argv, a YAML document or a ListNamespaces reply that outlive it. */
typedef struct ns_cfg {
    Loom__V1__NamespaceConfig c;
    Loom__V1__RetryPolicy retry;
    Loom__V1__HistoryRange range;
    char *endpoints[CTL_MAX_PROCESSORS];
} ns_cfg;

static void ns_cfg_init(ns_cfg *n)
{
    memset(n, 0, sizeof *n);
    loom__v1__namespace_config__init(&n->c);
    loom__v1__retry_policy__init(&n->retry);
    loom__v1__history_range__init(&n->range);
}

/* Unset retry settings start from the values loomd's sample config uses. */
static Loom__V1__RetryPolicy *retry_of(ns_cfg *n)
{
    if (n->c.retry == NULL) {
        n->retry.initial_interval_ms = 100;
        n->retry.factor = 2.0;
        n->retry.max_interval_ms = 10000;
        n->retry.max_attempts = 10;
        n->retry.max_total_ms = 60000;
        n->retry.jitter = 0.1;
        n->c.retry = &n->retry;
    }
    return n->c.retry;
}

static Loom__V1__HistoryRange *range_of(ns_cfg *n)
{
    if (n->c.default_range == NULL)
        n->c.default_range = &n->range;
    return n->c.default_range;
}

static void apply_retry_flags(ns_cfg *n, const ctl_opts *o)
{
    Loom__V1__RetryPolicy *r = retry_of(n);
    if (o->retry_set & RETRY_INITIAL)
        r->initial_interval_ms = o->retry_initial_ms;
    if (o->retry_set & RETRY_FACTOR)
        r->factor = o->retry_factor;
    if (o->retry_set & RETRY_MAX_INTERVAL)
        r->max_interval_ms = o->retry_max_interval_ms;
    if (o->retry_set & RETRY_MAX_ATTEMPTS)
        r->max_attempts = o->retry_max_attempts;
    if (o->retry_set & RETRY_MAX_TOTAL)
        r->max_total_ms = o->retry_max_total_ms;
    if (o->retry_set & RETRY_JITTER)
        r->jitter = o->retry_jitter;
}

static void apply_flags(ns_cfg *n, const ctl_opts *o)
{
    if (o->seen & OPT_PROCESSOR) {
        for (int i = 0; i < o->n_processors; i++)
            n->endpoints[i] = (char *)(uintptr_t)o->processors[i];
        n->c.processor_endpoints = n->endpoints;
        n->c.n_processor_endpoints = (size_t)o->n_processors;
    }
    if (o->seen & OPT_STEP_TIMEOUT)
        n->c.step_timeout_ms = o->step_timeout_ms;
    if (o->seen & OPT_RETRY)
        apply_retry_flags(n, o);
    if (o->seen & OPT_RANGE_LIMIT)
        range_of(n)->limit = o->range_limit;
    if (o->seen & OPT_RANGE_DIR)
        range_of(n)->direction = o->range_backward ? LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                                                   : LOOM__V1__DIRECTION__DIRECTION_FORWARD;
    if (o->seen & OPT_EVENT_SINK)
        n->c.event_sink = o->event_sink;
}

/* ------------------------------------------------------------ YAML file */

typedef struct yaml_ctx {
    yaml_document_t *doc;
    const char *path;
    ns_cfg *n;
} yaml_ctx;

static int yaml_fail(const yaml_ctx *y, const yaml_node_t *node, const char *what)
{
    fprintf(stderr, "loomctl: %s:%zu: %s\n", y->path, node ? node->start_mark.line + 1 : 0, what);
    return CTL_EXIT_USAGE;
}

static const char *scalar(const yaml_node_t *node)
{
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

static int yaml_u64(const yaml_ctx *y, const yaml_node_t *node, uint64_t max, uint64_t *out)
{
    const char *s = scalar(node);
    char *end = NULL;
    errno = 0;
    unsigned long long v = s && *s >= '0' && *s <= '9' ? strtoull(s, &end, 10) : 0;
    if (s == NULL || end == NULL || *end || errno || v > max)
        return yaml_fail(y, node, "expected a non-negative integer");
    *out = v;
    return 0;
}

static int yaml_u32(const yaml_ctx *y, const yaml_node_t *node, uint32_t *out)
{
    uint64_t v;
    int rc = yaml_u64(y, node, UINT32_MAX, &v);
    *out = (uint32_t)v;
    return rc;
}

static int yaml_double(const yaml_ctx *y, const yaml_node_t *node, double *out)
{
    const char *s = scalar(node);
    char *end = NULL;
    double d = s ? strtod(s, &end) : 0;
    if (s == NULL || *s == '\0' || end == NULL || *end || !isfinite(d) || d < 0)
        return yaml_fail(y, node, "expected a non-negative number");
    *out = d;
    return 0;
}

static int yaml_bool(const yaml_ctx *y, const yaml_node_t *node, protobuf_c_boolean *out)
{
    const char *s = scalar(node);
    if (s && strcmp(s, "true") == 0)
        *out = 1;
    else if (s && strcmp(s, "false") == 0)
        *out = 0;
    else
        return yaml_fail(y, node, "expected true or false");
    return 0;
}

typedef int (*pair_fn)(yaml_ctx *y, const char *key, yaml_node_t *value);

static int each_pair(yaml_ctx *y, yaml_node_t *map, pair_fn fn)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return yaml_fail(y, map, "expected a mapping");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
        const char *key = scalar(k);
        if (key == NULL)
            return yaml_fail(y, k, "expected a string key");
        int rc = fn(y, key, yaml_document_get_node(y->doc, p->value));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int retry_pair(yaml_ctx *y, const char *key, yaml_node_t *v)
{
    Loom__V1__RetryPolicy *r = retry_of(y->n);
    if (strcmp(key, "initial_interval_ms") == 0)
        return yaml_u32(y, v, &r->initial_interval_ms);
    if (strcmp(key, "factor") == 0)
        return yaml_double(y, v, &r->factor);
    if (strcmp(key, "max_interval_ms") == 0)
        return yaml_u32(y, v, &r->max_interval_ms);
    if (strcmp(key, "max_attempts") == 0)
        return yaml_u32(y, v, &r->max_attempts);
    if (strcmp(key, "max_total_ms") == 0)
        return yaml_u64(y, v, UINT64_MAX, &r->max_total_ms);
    if (strcmp(key, "jitter") == 0)
        return yaml_double(y, v, &r->jitter);
    return yaml_fail(y, v, "unknown key in retry");
}

static int range_pair(yaml_ctx *y, const char *key, yaml_node_t *v)
{
    Loom__V1__HistoryRange *r = range_of(y->n);
    if (strcmp(key, "limit") == 0)
        return yaml_u32(y, v, &r->limit);
    if (strcmp(key, "direction") == 0) {
        const char *s = scalar(v);
        if (s && strcmp(s, "forward") == 0)
            r->direction = LOOM__V1__DIRECTION__DIRECTION_FORWARD;
        else if (s && strcmp(s, "backward") == 0)
            r->direction = LOOM__V1__DIRECTION__DIRECTION_BACKWARD;
        else
            return yaml_fail(y, v, "direction is forward or backward");
        return 0;
    }
    return yaml_fail(y, v, "unknown key in default_range");
}

static int add_endpoint(yaml_ctx *y, yaml_node_t *v)
{
    ns_cfg *n = y->n;
    const char *s = scalar(v);
    if (s == NULL)
        return yaml_fail(y, v, "a processor is an address string");
    if (n->c.n_processor_endpoints >= CTL_MAX_PROCESSORS)
        return yaml_fail(y, v, "too many processors");
    n->endpoints[n->c.n_processor_endpoints++] = (char *)(uintptr_t)s;
    n->c.processor_endpoints = n->endpoints;
    return 0;
}

static int endpoints(yaml_ctx *y, yaml_node_t *v)
{
    if (v == NULL || v->type != YAML_SEQUENCE_NODE)
        return yaml_fail(y, v, "processors is a list of addresses");
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        int rc = add_endpoint(y, yaml_document_get_node(y->doc, *i));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int ns_pair(yaml_ctx *y, const char *key, yaml_node_t *v)
{
    ns_cfg *n = y->n;
    if (strcmp(key, "name") == 0) {
        n->c.name = (char *)(uintptr_t)scalar(v);
        return n->c.name ? 0 : yaml_fail(y, v, "name is a string");
    }
    if (strcmp(key, "processor") == 0)
        return add_endpoint(y, v);
    if (strcmp(key, "processors") == 0)
        return endpoints(y, v);
    if (strcmp(key, "step_timeout_ms") == 0)
        return yaml_u32(y, v, &n->c.step_timeout_ms);
    if (strcmp(key, "retry") == 0)
        return each_pair(y, v, retry_pair);
    if (strcmp(key, "default_range") == 0)
        return each_pair(y, v, range_pair);
    if (strcmp(key, "event_sink") == 0)
        return yaml_bool(y, v, &n->c.event_sink);
    return yaml_fail(y, v,
                     "unknown key (want name, processor(s), step_timeout_ms, retry, "
                     "default_range, event_sink)");
}

/* Loads path into doc (the caller deletes it) and fills n from it. */
static int ns_from_file(const char *path, yaml_document_t *doc, ns_cfg *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "loomctl: %s: %s\n", path, strerror(errno));
        return CTL_EXIT_LOCAL;
    }
    static char text[NS_FILE_MAX_BYTES + 1];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    if (len > NS_FILE_MAX_BYTES) {
        fprintf(stderr, "loomctl: %s: larger than 1 MiB\n", path);
        return CTL_EXIT_USAGE;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, doc);
    if (!ok)
        fprintf(stderr, "loomctl: %s:%zu: %s\n", path, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "YAML error");
    yaml_parser_delete(&parser);
    if (!ok)
        return CTL_EXIT_USAGE;
    yaml_ctx y = {.doc = doc, .path = path, .n = n};
    yaml_node_t *root = yaml_document_get_root_node(doc);
    /* A copied "- name: ..." list item is accepted too. */
    if (root && root->type == YAML_SEQUENCE_NODE &&
        root->data.sequence.items.top - root->data.sequence.items.start == 1)
        root = yaml_document_get_node(doc, *root->data.sequence.items.start);
    return each_pair(&y, root, ns_pair);
}

/* ------------------------------------------------------------ commands */

int ctl_cmd_ns_list(const ctl_opts *o, loom_client *c, const struct ctl_args *a)
{
    (void)a;
    loom_client_req req = {.timeout_ms = o->timeout_ms};
    loom_client_result res;
    int rc = loom_client_list_namespaces(c, &req, &res);
    if (rc < 0)
        return ctl_report_error(o, rc, loom_client_errmsg(c));
    ctl_print_namespaces(stdout, res.namespaces, o->json);
    loom_client_result_free(&res);
    return CTL_EXIT_OK;
}

static int send_config(const ctl_opts *o, loom_client *c, const ns_cfg *n, bool update)
{
    loom_client_req req = {.timeout_ms = o->timeout_ms};
    int rc = update ? loom_client_update_namespace(c, &n->c, &req, NULL)
                    : loom_client_register_namespace(c, &n->c, &req, NULL);
    if (rc < 0)
        return ctl_report_error(o, rc, loom_client_errmsg(c));
    if (o->json)
        printf("{\"ok\":true}\n");
    else
        printf("%s namespace %s\n", update ? "updated" : "registered", n->c.name);
    return CTL_EXIT_OK;
}

int ctl_cmd_ns_register(const ctl_opts *o, loom_client *c, const struct ctl_args *a)
{
    (void)a;
    ns_cfg n;
    ns_cfg_init(&n);
    yaml_document_t doc;
    bool have_doc = false;
    int rc = 0;
    if (o->file) {
        rc = ns_from_file(o->file, &doc, &n);
        have_doc = rc == 0 || rc == CTL_EXIT_USAGE;
    }
    if (rc == 0) {
        if (o->n_pos == 1)
            n.c.name = (char *)(uintptr_t)o->pos[0];
        apply_flags(&n, o);
        if (n.c.name == NULL || *n.c.name == '\0') {
            fprintf(stderr, "loomctl: ns-register needs NAME or a file with name:\n");
            rc = CTL_EXIT_USAGE;
        }
    }
    if (rc == 0)
        rc = send_config(o, c, &n, false);
    if (have_doc)
        yaml_document_delete(&doc);
    return rc;
}

int ctl_cmd_ns_update(const ctl_opts *o, loom_client *c, const struct ctl_args *a)
{
    (void)a;
    loom_client_req req = {.timeout_ms = o->timeout_ms};
    loom_client_result res;
    int rc = loom_client_list_namespaces(c, &req, &res);
    if (rc < 0)
        return ctl_report_error(o, rc, loom_client_errmsg(c));
    const Loom__V1__NamespaceConfig *cur = NULL;
    for (size_t i = 0; i < res.namespaces->n_namespaces; i++)
        if (strcmp(res.namespaces->namespaces[i]->name, o->pos[0]) == 0)
            cur = res.namespaces->namespaces[i];
    if (cur == NULL) {
        loom_client_result_free(&res);
        return ctl_report_error(o, LOOM_ENAMESPACE_NOT_FOUND, o->pos[0]);
    }
    ns_cfg n;
    ns_cfg_init(&n);
    n.c.name = cur->name;
    n.c.n_processor_endpoints = cur->n_processor_endpoints;
    n.c.processor_endpoints = cur->processor_endpoints;
    n.c.step_timeout_ms = cur->step_timeout_ms;
    n.c.event_sink = cur->event_sink;
    if (cur->retry) {
        n.retry = *cur->retry;
        n.c.retry = &n.retry;
    }
    if (cur->default_range) {
        n.range = *cur->default_range;
        n.c.default_range = &n.range;
    }
    apply_flags(&n, o);
    rc = send_config(o, c, &n, true);
    loom_client_result_free(&res);
    return rc;
}
