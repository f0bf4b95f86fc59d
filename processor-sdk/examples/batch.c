#include "batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example.h"
#include "sim.h"

static const char *status_names[] = {"initialized", "committed", "sent_to_remote",
                                     "ongoing",     "done",      "fail"};

void batch_config_init(batch_config *c)
{
    memset(c, 0, sizeof *c);
    c->remote_delay_ms = 100;
    c->poll_interval_ms = 500;
    c->remote_polls = 2;
    c->seed = 1;
}

const char *batch_status_name(batch_status s)
{
    return (unsigned)s < LOOM_ARRAY_SIZE(status_names) ? status_names[s] : "unknown";
}

/* ------------------------------------------------------------ registry */

static int registry_find(const batch_registry *reg, const char *content_type)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->claims[i].content_type, content_type) == 0)
            return (int)i;
    return -1;
}

const char *batch_registry_holder(const batch_config *cfg, const char *content_type)
{
    int i = registry_find(&cfg->registry, content_type);
    return i < 0 ? NULL : cfg->registry.claims[i].holder;
}

/* 0 when holder holds content_type afterwards; LOOM_EBUSY with the other
 * holder in *other; LOOM_ERESOURCE_EXHAUSTED when the registry is full. */
static int registry_claim(batch_registry *reg, const char *content_type, const char *holder,
                          const char **other)
{
    int i = registry_find(reg, content_type);
    if (i >= 0) {
        *other = reg->claims[i].holder;
        return strcmp(*other, holder) == 0 ? 0 : LOOM_EBUSY;
    }
    if (reg->n == BATCH_REGISTRY_MAX)
        return LOOM_ERESOURCE_EXHAUSTED;
    snprintf(reg->claims[reg->n].content_type, BATCH_NAME_MAX, "%s", content_type);
    snprintf(reg->claims[reg->n].holder, sizeof reg->claims[0].holder, "%s", holder);
    reg->n++;
    return 0;
}

static void registry_release(batch_registry *reg, const char *content_type, const char *holder)
{
    int i = registry_find(reg, content_type);
    if (i < 0 || strcmp(reg->claims[i].holder, holder) != 0)
        return;
    reg->claims[i] = reg->claims[--reg->n];
}

static void holder_of(const loom_proc_req *r, char *out, size_t size)
{
    char ns[BATCH_NAME_MAX], id[BATCH_NAME_MAX];
    ex_copy_prefix(ns, sizeof ns, loom_proc_req_ns(r));
    ex_copy_prefix(id, sizeof id, loom_proc_req_id(r));
    snprintf(out, size, "%s/%s", ns, id);
}

/* ------------------------------------------------------------ state */

/* A content type, object id or remote id: a non-empty string that fits. */
static int read_name(const loom_mp_obj *o, char *buf, const char *what)
{
    const char *s;
    size_t n;
    if (loom_mp_as_str(o, &s, &n) != 0 || n == 0 || n >= BATCH_NAME_MAX ||
        memchr(s, '\0', n) != NULL)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "%s: expected a string of 1..%d bytes", what,
                           BATCH_NAME_MAX - 1);
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

static int get_name(const loom_mp_obj *map, const char *key, char *buf)
{
    const loom_mp_obj *o;
    int err = loom_mp_get(map, key, &o);
    return err != 0 ? err : read_name(o, buf, key);
}

static int add_objects(batch *b, const loom_mp_obj *arr)
{
    if (arr->type != MSGPACK_OBJECT_ARRAY)
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "objects: expected an array");
    if (b->n_objects + arr->via.array.size > BATCH_MAX_OBJECTS)
        return loom_seterr(LOOM_ERESOURCE_EXHAUSTED, "more than %d objects in a batch",
                           BATCH_MAX_OBJECTS);
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        int err = read_name(&arr->via.array.ptr[i], b->objects[b->n_objects + i], "object id");
        if (err != 0)
            return err;
    }
    b->n_objects += arr->via.array.size;
    return 0;
}

static int apply_result(batch *b, const loom_mp_obj *e)
{
    const loom_mp_obj *o;
    if (loom_mp_get(e, "error", &o) == 0)
        b->failed++;
    else if (loom_mp_get(e, "remote_id", &o) == 0)
        b->succeeded++;
    else
        return loom_seterr(LOOM_EINVALID_ARGUMENT, "object_result without remote_id or error");
    return 0;
}

int batch_apply(batch *b, const loom_mp_obj *e)
{
    const loom_mp_obj *type, *objects;
    int64_t poll;
    int err = loom_mp_get(e, "type", &type);
    if (err != 0)
        return err;
    if (loom_mp_str_eq(type, "initialized")) {
        b->status = BATCH_INITIALIZED;
        return 0;
    }
    if (loom_mp_str_eq(type, "committed")) {
        b->status = BATCH_COMMITTED;
        err = get_name(e, "content_type", b->content_type);
        if (err == 0)
            err = loom_mp_get(e, "objects", &objects);
        return err != 0 ? err : add_objects(b, objects);
    }
    if (loom_mp_str_eq(type, "sent_to_remote")) {
        b->status = BATCH_SENT;
        return get_name(e, "remote_batch_id", b->remote_batch_id);
    }
    if (loom_mp_str_eq(type, "ongoing")) {
        b->status = BATCH_ONGOING;
        err = loom_mp_get_int(e, "poll", &poll);
        b->polls = (uint32_t)poll;
        return err;
    }
    if (loom_mp_str_eq(type, "object_result"))
        return apply_result(b, e);
    if (loom_mp_str_eq(type, "done")) {
        b->status = BATCH_DONE;
        return 0;
    }
    if (loom_mp_str_eq(type, "failed")) {
        b->status = BATCH_FAILED;
        return 0;
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "unknown batch event type");
}

void batch_write_snapshot(const batch *b, loom_mp_writer *w)
{
    loom_mp_map(w, 7);
    loom_mp_kv_str(w, "status", batch_status_name(b->status));
    loom_mp_kv_str(w, "content_type", b->content_type);
    loom_mp_kv_str(w, "remote_batch_id", b->remote_batch_id);
    loom_mp_kv_int(w, "polls", b->polls);
    loom_mp_kv_int(w, "succeeded", b->succeeded);
    loom_mp_kv_int(w, "failed", b->failed);
    loom_mp_str(w, "objects");
    loom_mp_array(w, (uint32_t)b->n_objects);
    for (size_t i = 0; i < b->n_objects; i++)
        loom_mp_str(w, b->objects[i]);
}

static int read_status(const loom_mp_obj *map, batch_status *out)
{
    const loom_mp_obj *o;
    int err = loom_mp_get(map, "status", &o);
    if (err != 0)
        return err;
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(status_names); i++) {
        if (loom_mp_str_eq(o, status_names[i])) {
            *out = (batch_status)i;
            return 0;
        }
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "unknown batch status");
}

static int read_counter(const loom_mp_obj *map, const char *key, uint32_t *out)
{
    int64_t v;
    int err = loom_mp_get_int(map, key, &v);
    if (err == 0 && (v < 0 || v > UINT32_MAX))
        err = loom_seterr(LOOM_EINVALID_ARGUMENT, "%s out of range", key);
    *out = err == 0 ? (uint32_t)v : 0;
    return err;
}

int batch_read_snapshot(batch *b, const void *data, size_t len)
{
    memset(b, 0, sizeof *b);
    loom_mp_doc d;
    int err = loom_mp_parse(&d, data, len);
    if (err != 0)
        return err;
    const loom_mp_obj *objects;
    err = read_status(d.root, &b->status);
    if (err == 0)
        err = loom_mp_get_strcpy(d.root, "content_type", b->content_type, BATCH_NAME_MAX);
    if (err == 0)
        err = loom_mp_get_strcpy(d.root, "remote_batch_id", b->remote_batch_id, BATCH_NAME_MAX);
    if (err == 0)
        err = read_counter(d.root, "polls", &b->polls);
    if (err == 0)
        err = read_counter(d.root, "succeeded", &b->succeeded);
    if (err == 0)
        err = read_counter(d.root, "failed", &b->failed);
    if (err == 0)
        err = loom_mp_get_array(d.root, "objects", &objects);
    if (err == 0)
        err = add_objects(b, objects);
    loom_mp_doc_free(&d);
    return err;
}

/* ------------------------------------------------------------ step context */

/* One step's working state: the batch (64 KiB of object ids, so on the
 * heap) and, for steps that wait on the remote, the request. */
typedef struct step {
    loom_proc_req *req;
    batch_config *cfg;
    batch b;
} step;

static step *load_step(loom_proc_req *r, batch_config *cfg)
{
    step *s = calloc(1, sizeof *s);
    if (s == NULL) {
        loom_proc_fail(r, true, "processor out of memory");
        return NULL;
    }
    s->req = r;
    s->cfg = cfg;
    loom_proc_bytes aux = loom_proc_req_aux_state(r);
    if (aux.len == 0) /* right after init the snapshot is the initial state */
        return s;
    if (batch_read_snapshot(&s->b, aux.data, aux.len) != 0) {
        loom_proc_fail(r, false, "batch state: %s", loom_errdetail());
        free(s);
        return NULL;
    }
    return s;
}

/* After a processor restart the registry is empty: an active batch takes
 * its content type back on its next step. */
static void reclaim(step *s)
{
    batch_status st = s->b.status;
    if (st != BATCH_COMMITTED && st != BATCH_SENT && st != BATCH_ONGOING)
        return;
    char holder[2 * BATCH_NAME_MAX + 2];
    const char *other = NULL;
    holder_of(s->req, holder, sizeof holder);
    if (registry_claim(&s->cfg->registry, s->b.content_type, holder, &other) == LOOM_EBUSY)
        fprintf(stderr, "loom-batch-processor: %s and %s both hold content type %s\n", holder,
                other, s->b.content_type);
}

static int apply_to_batch(void *state, const loom_mp_obj *event)
{
    return batch_apply(state, event);
}

static int emit(step *s, loom_mp_writer *w)
{
    return ex_emit(s->req, w, apply_to_batch, &s->b);
}

static int save(step *s)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    batch_write_snapshot(&s->b, &w);
    return ex_set_aux(s->req, &w);
}

static void finish(step *s)
{
    loom_proc_done(s->req);
    free(s);
}

static void later_or_fail(step *s, void (*fn)(void *ctx))
{
    if (ex_later(s->cfg->loop, s->cfg->remote_delay_ms, fn, s) != 0) {
        loom_proc_fail(s->req, true, "processor out of memory");
        finish(s);
    }
}

/* ------------------------------------------------------------ init */

static void on_init(loom_proc_req *r, void *user)
{
    step *s = load_step(r, user);
    if (s == NULL) {
        loom_proc_done(r);
        return;
    }
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_str(&w, "type", "initialized");
    if (emit(s, &w) == 0)
        save(s);
    finish(s);
}

/* ------------------------------------------------------------ calls */

static int check_objects(const loom_mp_obj *objects)
{
    char name[BATCH_NAME_MAX];
    for (uint32_t i = 0; i < objects->via.array.size; i++) {
        int err = read_name(&objects->via.array.ptr[i], name, "object id");
        if (err != 0)
            return err;
    }
    return 0;
}

/* The business rules of a commit: NULL when it may go ahead, else the
 * refusal code and its detail. Claims the content type on success. */
static const char *commit_refusal(step *s, const char *content_type, const loom_mp_obj *objects,
                                  const char **detail)
{
    char holder[2 * BATCH_NAME_MAX + 2];
    if (s->b.status != BATCH_INITIALIZED && s->b.status != BATCH_COMMITTED) {
        *detail = batch_status_name(s->b.status);
        return "not_committable";
    }
    if (s->b.status == BATCH_COMMITTED && strcmp(s->b.content_type, content_type) != 0) {
        *detail = s->b.content_type;
        return "content_type_mismatch";
    }
    if (objects->via.array.size == 0) {
        *detail = "commit at least one object";
        return "no_objects";
    }
    if (s->b.n_objects + objects->via.array.size > BATCH_MAX_OBJECTS) {
        *detail = "a batch holds at most 1000 objects";
        return "too_many_objects";
    }
    holder_of(s->req, holder, sizeof holder);
    int err = registry_claim(&s->cfg->registry, content_type, holder, detail);
    if (err == LOOM_EBUSY)
        return "content_type_busy";
    if (err != 0) {
        *detail = "too many content types committed at once";
        return "registry_full";
    }
    return NULL;
}

static void call_commit(step *s, const loom_mp_obj *args)
{
    char content_type[BATCH_NAME_MAX];
    const loom_mp_obj *objects;
    const char *detail = NULL;
    int err = get_name(args, "content_type", content_type);
    if (err == 0)
        err = loom_mp_get_array(args, "objects", &objects);
    if (err == 0)
        err = check_objects(objects);
    if (err != 0) {
        loom_proc_fail(s->req, false, "commit args: %s", loom_errdetail());
        return;
    }
    const char *refusal = commit_refusal(s, content_type, objects, &detail);
    if (refusal != NULL) {
        ex_refuse(s->req, refusal, detail);
        return;
    }
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "type", "committed");
    loom_mp_kv_str(&w, "content_type", content_type);
    loom_mp_str(&w, "objects");
    loom_mp_array(&w, objects->via.array.size);
    for (uint32_t i = 0; i < objects->via.array.size; i++)
        loom_mp_strn(&w, objects->via.array.ptr[i].via.str.ptr,
                     objects->via.array.ptr[i].via.str.size);
    if (emit(s, &w) != 0 || save(s) != 0)
        return;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 2);
    loom_mp_kv_bool(&w, "ok", true);
    loom_mp_kv_int(&w, "objects", (int64_t)s->b.n_objects);
    ex_respond(s->req, &w);
}

/* The remote accepted the batch and named it. */
static void sent(void *ctx)
{
    step *s = ctx;
    loom_proc_req *r = s->req;
    char remote_batch_id[BATCH_NAME_MAX];
    uint64_t h = sim_hash(s->cfg->seed, loom_proc_req_ns(r), loom_proc_req_id(r), "submit");
    snprintf(remote_batch_id, sizeof remote_batch_id, "rb-%016" PRIx64, h);
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 2);
    loom_mp_kv_str(&w, "type", "sent_to_remote");
    loom_mp_kv_str(&w, "remote_batch_id", remote_batch_id);
    if (emit(s, &w) == 0 && save(s) == 0) {
        loom_proc_set_timer_timeout(r, s->cfg->poll_interval_ms, NULL);
        loom_mp_writer_init(&w, 0);
        loom_mp_map(&w, 2);
        loom_mp_kv_bool(&w, "ok", true);
        loom_mp_kv_str(&w, "remote_batch_id", remote_batch_id);
        ex_respond(r, &w);
    }
    finish(s);
}

static void call_get(step *s)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    batch_write_snapshot(&s->b, &w);
    ex_respond(s->req, &w);
}

static void on_call(loom_proc_req *r, void *user)
{
    loom_mp_doc d;
    char op[16];
    if (ex_parse_args(r, &d, op, sizeof op) != 0) {
        loom_proc_done(r);
        return;
    }
    step *s = load_step(r, user);
    if (s == NULL) {
        loom_mp_doc_free(&d);
        loom_proc_done(r);
        return;
    }
    reclaim(s);
    bool later = false;
    if (strcmp(op, "commit") == 0)
        call_commit(s, d.root);
    else if (strcmp(op, "send") == 0 && s->b.status != BATCH_COMMITTED)
        ex_refuse(r, "not_committed", batch_status_name(s->b.status));
    else if (strcmp(op, "send") == 0)
        later = true;
    else if (strcmp(op, "get") == 0)
        call_get(s);
    else
        loom_proc_fail(r, false, "unknown op '%s' (commit, send, get)", op);
    loom_mp_doc_free(&d);
    if (later)
        later_or_fail(s, sent);
    else
        finish(s);
}

/* ------------------------------------------------------------ polling */

static int emit_object_result(step *s, size_t i)
{
    const char *object_id = s->b.objects[i];
    uint64_t h = sim_hash(s->cfg->seed, s->b.remote_batch_id, object_id, NULL);
    bool rejected = sim_unit(h) < s->cfg->object_fail_rate;
    char remote_id[BATCH_NAME_MAX];
    snprintf(remote_id, sizeof remote_id, "ro-%012" PRIx64, h >> 16);
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "type", "object_result");
    loom_mp_kv_str(&w, "object_id", object_id);
    if (rejected)
        loom_mp_kv_str(&w, "error", "rejected by the remote");
    else
        loom_mp_kv_str(&w, "remote_id", remote_id);
    return emit(s, &w);
}

static int emit_outcome(step *s)
{
    loom_mp_writer w;
    uint64_t h = sim_hash(s->cfg->seed, s->b.remote_batch_id, "batch", NULL);
    loom_mp_writer_init(&w, 0);
    if (sim_unit(h) < s->cfg->fail_rate) {
        loom_mp_map(&w, 2);
        loom_mp_kv_str(&w, "type", "failed");
        loom_mp_kv_str(&w, "reason", "the remote failed the batch");
        return emit(s, &w);
    }
    for (size_t i = 0; i < s->b.n_objects; i++) {
        int err = emit_object_result(s, i);
        if (err != 0) {
            loom_mp_writer_free(&w);
            return err;
        }
    }
    loom_mp_map(&w, 3);
    loom_mp_kv_str(&w, "type", "done");
    loom_mp_kv_int(&w, "succeeded", s->b.succeeded);
    loom_mp_kv_int(&w, "failed", s->b.failed);
    return emit(s, &w);
}

/* The remote's answer to a poll: still running, or finished. */
static void polled(void *ctx)
{
    step *s = ctx;
    loom_proc_req *r = s->req;
    char holder[2 * BATCH_NAME_MAX + 2];
    if (s->b.polls < s->cfg->remote_polls) {
        loom_mp_writer w;
        loom_mp_writer_init(&w, 0);
        loom_mp_map(&w, 3);
        loom_mp_kv_str(&w, "type", "ongoing");
        loom_mp_kv_str(&w, "remote_batch_id", s->b.remote_batch_id);
        loom_mp_kv_int(&w, "poll", s->b.polls + 1);
        if (emit(s, &w) == 0 && save(s) == 0)
            loom_proc_set_timer_timeout(r, s->cfg->poll_interval_ms, NULL);
    } else if (emit_outcome(s) == 0 && save(s) == 0) {
        loom_proc_unset_timer(r);
        holder_of(r, holder, sizeof holder);
        registry_release(&s->cfg->registry, s->b.content_type, holder);
    }
    finish(s);
}

static void on_timeout(loom_proc_req *r, void *user)
{
    step *s = load_step(r, user);
    if (s == NULL) {
        loom_proc_done(r);
        return;
    }
    reclaim(s);
    if (s->b.status == BATCH_SENT || s->b.status == BATCH_ONGOING) {
        later_or_fail(s, polled);
        return;
    }
    loom_proc_unset_timer(r); /* nothing to poll */
    finish(s);
}

static void on_repair(loom_proc_req *r, void *user)
{
    (void)user;
    loom_proc_refuse_repair(r, "batches are not repairable: start a new one");
    loom_proc_done(r);
}

int batch_register(loom_proc *p, batch_config *cfg)
{
    cfg->loop = loom_proc_loop(p);
    int err = loom_proc_on(p, LOOM_PROC_INIT, on_init, cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_CALL, on_call, cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_TIMEOUT, on_timeout, cfg);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_REPAIR, on_repair, cfg);
    return err;
}
