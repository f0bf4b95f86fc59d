#include "example.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom/wire.h"

int ex_parse_args(loom_proc_req *r, loom_mp_doc *doc, char *op, size_t op_size)
{
    loom_proc_bytes args = loom_proc_req_args(r);
    int err = loom_mp_parse(doc, args.data, args.len);
    if (err != 0) {
        loom_proc_fail(r, false, "args: %s", loom_errdetail());
        return err;
    }
    if (doc->root->type != MSGPACK_OBJECT_MAP) {
        loom_proc_fail(r, false, "args: expected a map, got %s", loom_mp_type_name(doc->root));
        loom_mp_doc_free(doc);
        return LOOM_EINVALID_ARGUMENT;
    }
    if (op == NULL)
        return 0;
    err = loom_mp_get_strcpy(doc->root, "op", op, op_size);
    if (err != 0) {
        loom_proc_fail(r, false, "args: %s", loom_errdetail());
        loom_mp_doc_free(doc);
    }
    return err;
}

static int ex_finish(loom_proc_req *r, loom_mp_writer *w, int which)
{
    const uint8_t *data;
    size_t len;
    int err = loom_mp_writer_finish(w, &data, &len);
    if (err == 0 && which == 0)
        err = loom_proc_respond(r, data, len);
    else if (err == 0 && which == 1)
        err = loom_proc_append_event(r, 1, data, len);
    else if (err == 0)
        err = loom_proc_set_aux_state(r, data, len);
    loom_mp_writer_free(w);
    if (err != 0)
        loom_proc_fail(r, false, "building the result: %s (%s)", loom_strerror(err),
                       loom_errdetail());
    return err;
}

int ex_respond(loom_proc_req *r, loom_mp_writer *w)
{
    return ex_finish(r, w, 0);
}

int ex_append(loom_proc_req *r, loom_mp_writer *w)
{
    return ex_finish(r, w, 1);
}

int ex_set_aux(loom_proc_req *r, loom_mp_writer *w)
{
    return ex_finish(r, w, 2);
}

int ex_emit(loom_proc_req *r, loom_mp_writer *w, ex_apply_fn apply, void *state)
{
    const uint8_t *data;
    size_t len;
    loom_mp_doc d;
    int err = loom_mp_writer_finish(w, &data, &len);
    if (err == 0)
        err = loom_mp_parse(&d, data, len);
    if (err == 0) {
        err = apply(state, d.root);
        loom_mp_doc_free(&d);
    }
    if (err == 0)
        err = loom_proc_append_event(r, 1, data, len);
    loom_mp_writer_free(w);
    if (err != 0)
        loom_proc_fail(r, false, "event: %s (%s)", loom_strerror(err), loom_errdetail());
    return err;
}

void ex_refuse(loom_proc_req *r, const char *code, const char *detail)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_bool(&w, "ok", false);
    loom_mp_kv_str(&w, "error", code);
    loom_mp_kv_str(&w, "detail", detail);
    ex_respond(r, &w);
}

void ex_copy_prefix(char *out, size_t size, const char *s)
{
    snprintf(out, size, "%s", s);
    loom_utf8_trim(out);
}

typedef struct later {
    uv_timer_t timer;
    void (*fn)(void *ctx);
    void *ctx;
} later;

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    later *l = t->data;
    l->fn(l->ctx);
    uv_close((uv_handle_t *)t, later_closed);
}

int ex_later(uv_loop_t *loop, uint64_t delay_ms, void (*fn)(void *ctx), void *ctx)
{
    later *l = malloc(sizeof *l);
    if (l == NULL)
        return LOOM_ENOMEM;
    l->fn = fn;
    l->ctx = ctx;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, later_fire, delay_ms, 0);
    return 0;
}

int ex_flag_u64(const char *name, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "--%s: expected a non-negative integer, got '%s'\n", name, text);
        return LOOM_EINVALID_ARGUMENT;
    }
    *out = v;
    return 0;
}

int ex_flag_rate(const char *name, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
        fprintf(stderr, "--%s: expected a probability in [0, 1], got '%s'\n", name, text);
        return LOOM_EINVALID_ARGUMENT;
    }
    *out = v;
    return 0;
}
