/* loomd configuration: one YAML file (libyaml document API), every key
 * checked against a table of known keys and bounds so a typo is an error
 * with file:line rather than a silently ignored setting. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "loom/engine.h"

#define CONFIG_FILE_MAX (4u * 1024u * 1024u)
#define MAX_LISTEN 16
#define MAX_NAMESPACES 1024
#define MAX_PROCESSORS 16

typedef struct parse_ctx {
    yaml_document_t *doc;
    const char *name;
} parse_ctx;

static int bad(const parse_ctx *p, const yaml_node_t *n, const char *what)
{
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "%s:%lu: %s", p->name,
                       (unsigned long)n->start_mark.line + 1, what);
}

static const char *scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_u64(const parse_ctx *p, const yaml_node_t *n, uint64_t lo, uint64_t hi,
                   uint64_t *out)
{
    const char *s = scalar(n);
    char msg[160];
    if (!s || !*s || s[0] == '-')
        return bad(p, n, "expected a non-negative integer");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) {
        snprintf(msg, sizeof msg, "'%s' is not an integer", s);
        return bad(p, n, msg);
    }
    if (v < lo || v > hi) {
        snprintf(msg, sizeof msg, "%llu out of range %llu..%llu", v, (unsigned long long)lo,
                 (unsigned long long)hi);
        return bad(p, n, msg);
    }
    *out = v;
    return 0;
}

static int get_u32(const parse_ctx *p, const yaml_node_t *n, uint32_t lo, uint32_t hi,
                   uint32_t *out)
{
    uint64_t v;
    int rc = get_u64(p, n, lo, hi, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

static int get_double(const parse_ctx *p, const yaml_node_t *n, double *out)
{
    const char *s = scalar(n);
    if (!s || !*s)
        return bad(p, n, "expected a number");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || v != v)
        return bad(p, n, "expected a number");
    *out = v;
    return 0;
}

static int get_bool(const parse_ctx *p, const yaml_node_t *n, bool *out)
{
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))) {
        *out = false;
        return 0;
    }
    return bad(p, n, "expected true or false");
}

static int get_str(const parse_ctx *p, const yaml_node_t *n, char **out)
{
    const char *s = scalar(n);
    if (!s)
        return bad(p, n, "expected a string");
    return loom_config_set_string(out, s);
}

int loom_config_set_string(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A scalar or a sequence of scalars into a fresh array. */
static int get_strings(const parse_ctx *p, const yaml_node_t *n, size_t max, char ***out,
                       size_t *count)
{
    if (n->type == YAML_SCALAR_NODE) {
        char **v = calloc(1, sizeof *v);
        if (!v || loom_config_set_string(&v[0], scalar(n))) {
            free(v);
            return loom_seterr(LOOM_ENOMEM, "out of memory");
        }
        free_strings(*out, *count);
        *out = v;
        *count = 1;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return bad(p, n, "expected a list of strings");
    size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (k > max)
        return bad(p, n, "too many entries");
    char **v = calloc(k ? k : 1, sizeof *v);
    if (!v)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        int rc = get_str(p, item, &v[i]);
        if (rc) {
            free_strings(v, k);
            return rc;
        }
    }
    free_strings(*out, *count);
    *out = v;
    *count = k;
    return 0;
}

typedef int (*key_fn)(const parse_ctx *p, const char *key, const yaml_node_t *val, void *obj);

/* Walks a mapping, handing each key/value to fn; unknown keys are errors
 * reported by fn returning 1. */
static int walk_map(const parse_ctx *p, const yaml_node_t *n, key_fn fn, void *obj)
{
    if (n->type != YAML_MAPPING_NODE)
        return bad(p, n, "expected a mapping");
    for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top; kv++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, kv->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, kv->value);
        const char *key = scalar(k);
        if (!key)
            return bad(p, k, "expected a key");
        int rc = fn(p, key, v, obj);
        if (rc == 1) {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown key '%.80s'", key);
            return bad(p, k, msg);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int limits_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_limits *l = obj;
    if (!strcmp(key, "max_frame_bytes"))
        return get_u32(p, v, 1024, 1u << 30, &l->max_frame_bytes);
    if (!strcmp(key, "max_connections"))
        return get_u32(p, v, 1, 1000000, &l->max_connections);
    if (!strcmp(key, "max_queued_calls_per_machine"))
        return get_u32(p, v, 1, 1000000, &l->max_queued_calls_per_machine);
    if (!strcmp(key, "max_steps_in_flight"))
        return get_u32(p, v, 1, 1000000, &l->max_steps_in_flight);
    if (!strcmp(key, "max_events_per_step"))
        return get_u32(p, v, 1, 100000, &l->max_events_per_step);
    if (!strcmp(key, "max_event_bytes"))
        return get_u32(p, v, 1, 64u << 20, &l->max_event_bytes);
    if (!strcmp(key, "max_aux_state_bytes"))
        return get_u32(p, v, 1, 64u << 20, &l->max_aux_state_bytes);
    return 1;
}

static int storage_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_config *c = obj;
    if (!strcmp(key, "map_size_initial_mb"))
        return get_u64(p, v, 1, 1u << 24, &c->map_size_initial_mb);
    if (!strcmp(key, "map_size_max_mb"))
        return get_u64(p, v, 1, 1u << 24, &c->map_size_max_mb);
    if (!strcmp(key, "durability")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "sync"))
            c->nosync = false;
        else if (s && !strcmp(s, "nosync"))
            c->nosync = true;
        else
            return bad(p, v, "durability must be sync or nosync");
        return 0;
    }
    return 1;
}

static int retry_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_retry_policy *r = obj;
    if (!strcmp(key, "initial_interval_ms"))
        return get_u32(p, v, 1, UINT32_MAX, &r->initial_interval_ms);
    if (!strcmp(key, "factor"))
        return get_double(p, v, &r->factor);
    if (!strcmp(key, "max_interval_ms"))
        return get_u32(p, v, 1, UINT32_MAX, &r->max_interval_ms);
    if (!strcmp(key, "max_attempts"))
        return get_u32(p, v, 0, 1000000, &r->max_attempts);
    if (!strcmp(key, "max_total_ms"))
        return get_u64(p, v, 0, UINT64_MAX / 4, &r->max_total_ms);
    if (!strcmp(key, "jitter"))
        return get_double(p, v, &r->jitter);
    return 1;
}

static int range_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_range_config *r = obj;
    if (!strcmp(key, "limit"))
        return get_u32(p, v, 0, UINT32_MAX, &r->limit);
    if (!strcmp(key, "direction")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "forward"))
            r->backward = false;
        else if (s && !strcmp(s, "backward"))
            r->backward = true;
        else
            return bad(p, v, "direction must be forward or backward");
        return 0;
    }
    return 1;
}

static int ns_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_ns_config *ns = obj;
    if (!strcmp(key, "name"))
        return get_str(p, v, &ns->name);
    if (!strcmp(key, "processor") || !strcmp(key, "processors"))
        return get_strings(p, v, MAX_PROCESSORS, &ns->processors, &ns->n_processors);
    if (!strcmp(key, "step_timeout_ms"))
        return get_u32(p, v, 1, 3600u * 1000u, &ns->step_timeout_ms);
    if (!strcmp(key, "retry"))
        return walk_map(p, v, retry_key, &ns->retry);
    if (!strcmp(key, "default_range"))
        return walk_map(p, v, range_key, &ns->default_range);
    if (!strcmp(key, "event_sink"))
        return get_bool(p, v, &ns->event_sink);
    return 1;
}

static void ns_config_init(loom_ns_config *ns)
{
    memset(ns, 0, sizeof *ns);
    ns->step_timeout_ms = 5000;
    loom_retry_policy_default(&ns->retry);
    ns->default_range.limit = 100;
    ns->default_range.backward = true;
}

static int get_namespaces(const parse_ctx *p, const yaml_node_t *n, loom_config *c)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return bad(p, n, "namespaces: expected a list");
    size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (k > MAX_NAMESPACES)
        return bad(p, n, "too many namespaces");
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, n->data.sequence.items.start[i]);
        loom_ns_config ns;
        ns_config_init(&ns);
        int rc = walk_map(p, item, ns_key, &ns);
        if (rc == 0 && loom_ns_config_check(&ns) != 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", loom_errdetail());
            rc = bad(p, item, msg);
        }
        for (size_t j = 0; rc == 0 && j < c->n_namespaces; j++)
            if (!strcmp(c->namespaces[j].name, ns.name))
                rc = bad(p, item, "namespace listed twice");
        if (rc) {
            loom_ns_config_free(&ns);
            return rc;
        }
        loom_ns_config *grown = realloc(c->namespaces, (c->n_namespaces + 1) * sizeof *grown);
        if (!grown) {
            loom_ns_config_free(&ns);
            return loom_seterr(LOOM_ENOMEM, "out of memory");
        }
        c->namespaces = grown;
        c->namespaces[c->n_namespaces++] = ns;
    }
    return 0;
}

static int top_key(const parse_ctx *p, const char *key, const yaml_node_t *v, void *obj)
{
    loom_config *c = obj;
    if (!strcmp(key, "listen"))
        return get_strings(p, v, MAX_LISTEN, &c->listen, &c->n_listen);
    if (!strcmp(key, "data_dir"))
        return get_str(p, v, &c->data_dir);
    if (!strcmp(key, "log_level")) {
        const char *s = scalar(v);
        if (!s || loom_log_level_parse(s, &c->log_level))
            return bad(p, v, "log_level must be error|warn|info|debug");
        return 0;
    }
    if (!strcmp(key, "limits"))
        return walk_map(p, v, limits_key, &c->limits);
    if (!strcmp(key, "storage"))
        return walk_map(p, v, storage_key, c);
    if (!strcmp(key, "request_id_window_s"))
        return get_u64(p, v, 1, 365u * 86400u, &c->request_id_window_s);
    if (!strcmp(key, "namespaces"))
        return get_namespaces(p, v, c);
    return 1;
}

void loom_config_init(loom_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = LOOM_LOG_INFO;
    c->limits.max_frame_bytes = 16u * 1024u * 1024u;
    c->limits.max_connections = 1024;
    c->limits.max_queued_calls_per_machine = 64;
    c->limits.max_steps_in_flight = 4096;
    c->limits.max_events_per_step = 1000;
    c->limits.max_event_bytes = 1024u * 1024u;
    c->limits.max_aux_state_bytes = 1024u * 1024u;
    c->map_size_initial_mb = 64;
    c->map_size_max_mb = 8192;
    c->request_id_window_s = 86400;
}

int loom_config_parse(const char *text, size_t len, const char *name, loom_config *c)
{
    loom_config_init(c);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = loom_seterr(LOOM_EINVALID_ARGUMENT, "%s:%lu: %s", name,
                             (unsigned long)parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        return rc;
    }
    parse_ctx p = {&doc, name};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    if (root)
        rc = walk_map(&p, root, top_key, c);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc == 0 && c->map_size_initial_mb > c->map_size_max_mb)
        rc = loom_seterr(LOOM_EINVALID_ARGUMENT,
                         "%s: storage.map_size_initial_mb exceeds map_size_max_mb", name);
    if (rc)
        loom_config_free(c);
    return rc;
}

int loom_config_load(const char *path, loom_config *c)
{
    loom_config_init(c);
    FILE *f = fopen(path, "rb");
    if (!f)
        return loom_seterr(LOOM_EIO, "%s: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    int read_error = ferror(f);
    fclose(f);
    int rc;
    if (read_error)
        rc = loom_seterr(LOOM_EIO, "%s: read error", path);
    else if (n > CONFIG_FILE_MAX)
        rc = loom_seterr(LOOM_EINVALID_ARGUMENT, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
    else
        rc = loom_config_parse(buf, n, path, c);
    free(buf);
    return rc;
}

int loom_config_check(const loom_config *c)
{
    if (c->n_listen == 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "no listen address (listen: or --listen)");
    if (!c->data_dir || !*c->data_dir)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "no data directory (data_dir: or --data-dir)");
    return 0;
}

void loom_config_free(loom_config *c)
{
    free_strings(c->listen, c->n_listen);
    free(c->data_dir);
    for (size_t i = 0; i < c->n_namespaces; i++)
        loom_ns_config_free(&c->namespaces[i]);
    free(c->namespaces);
    memset(c, 0, sizeof *c);
}

int loom_config_set_listen(loom_config *c, char *const *addrs, size_t n)
{
    if (n > MAX_LISTEN)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "at most %d listen addresses", MAX_LISTEN);
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return loom_seterr(LOOM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (loom_config_set_string(&v[i], addrs[i])) {
            free_strings(v, n);
            return LOOM_ENOMEM;
        }
    }
    free_strings(c->listen, c->n_listen);
    c->listen = v;
    c->n_listen = n;
    return 0;
}

int loom_check_ns_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > LOOM_NS_NAME_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace name must be 1..%d bytes",
                           LOOM_NS_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
        if (!ok)
            return loom_seterr(LOOM_EINVALID_ARGUMENT,
                               "namespace name may hold only [A-Za-z0-9_.-]");
    }
    return 0;
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + k >= n)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

int loom_check_machine_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > LOOM_MACHINE_ID_MAX)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "machine id must be 1..%d bytes",
                           LOOM_MACHINE_ID_MAX);
    if (!utf8_valid((const unsigned char *)id, n))
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "machine id is not valid UTF-8");
    return 0;
}

int loom_ns_config_check(const loom_ns_config *ns)
{
    int rc = loom_check_ns_name(ns->name);
    if (rc)
        return rc;
    if (ns->n_processors == 0)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace %s: no processor endpoint", ns->name);
    if (ns->n_processors > MAX_PROCESSORS)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "namespace %s: at most %d processors", ns->name,
                           MAX_PROCESSORS);
    for (size_t i = 0; i < ns->n_processors; i++) {
        const char *e = ns->processors[i];
        if (!e || (strncmp(e, "unix:", 5) != 0 && strncmp(e, "tcp:", 4) != 0) || strlen(e) > 200)
            return loom_seterr(LOOM_EINVALID_ARGUMENT,
                               "namespace %s: processor '%s' is not unix:PATH or tcp:HOST:PORT",
                               ns->name, e ? e : "");
    }
    if (ns->step_timeout_ms == 0 || ns->step_timeout_ms > 3600u * 1000u)
        return loom_seterr(LOOM_EINVALID_ARGUMENT,
                           "namespace %s: step_timeout_ms must be 1..3600000", ns->name);
    rc = loom_retry_policy_check(&ns->retry);
    if (rc) {
        char detail[256]; /* the detail buffer is rewritten by loom_seterr */
        snprintf(detail, sizeof detail, "%s", loom_errdetail());
        return loom_seterr(rc, "namespace %s: %s", ns->name, detail);
    }
    return 0;
}

void loom_ns_config_free(loom_ns_config *ns)
{
    free(ns->name);
    free_strings(ns->processors, ns->n_processors);
    memset(ns, 0, sizeof *ns);
}

int loom_ns_config_copy(loom_ns_config *dst, const loom_ns_config *src)
{
    *dst = *src;
    dst->name = NULL;
    dst->processors = calloc(src->n_processors ? src->n_processors : 1, sizeof(char *));
    if (!dst->processors)
        dst->n_processors = 0;
    if (!dst->processors || loom_config_set_string(&dst->name, src->name))
        goto fail;
    for (size_t i = 0; i < src->n_processors; i++)
        if (loom_config_set_string(&dst->processors[i], src->processors[i]))
            goto fail;
    return 0;
fail:
    loom_ns_config_free(dst);
    return loom_seterr(LOOM_ENOMEM, "out of memory");
}
