/* loom_client: one request builder per operation, and the blocking forms
 * (send, then wait for that reply). Requests are built on the stack from
 * borrowed strings and bytes; nothing here allocates. */
#include "client_internal.h"

#include <stdint.h>
#include <string.h>

/* protobuf-c's generated structs take non-const pointers even for packing:
 * the casts below never lead to a write. */
static char *str(const char *s)
{
    return (char *)(uintptr_t)(s ? s : "");
}

static ProtobufCBinaryData bin(const void *data, size_t len)
{
    ProtobufCBinaryData b = {.len = data ? len : 0, .data = (uint8_t *)(uintptr_t)data};
    return b;
}

static uint32_t timeout_of(const loom_client_req *req)
{
    return req ? req->timeout_ms : 0;
}

static const char *request_id_of(const loom_client_req *req)
{
    return req ? req->request_id : NULL;
}

static Loom__V1__HistoryRange *range_of(const loom_client_req *req, Loom__V1__HistoryRange *out)
{
    if (req == NULL || req->range == NULL)
        return NULL;
    loom__v1__history_range__init(out);
    out->after = req->range->after;
    out->limit = req->range->limit;
    out->has_after = req->range->has_after;
    out->direction = req->range->backward ? LOOM__V1__DIRECTION__DIRECTION_BACKWARD
                                          : LOOM__V1__DIRECTION__DIRECTION_FORWARD;
    return out;
}

static int send_body(loom_client *c, loom_envelope *env, const loom_client_req *req, uint64_t *corr)
{
    return loom_client__send(c, env, (int)env->body_case + 1, timeout_of(req), corr);
}

/* The requests addressed to one machine differ only in which of the
 * fields args, request_id and range they have: one builder fills each by
 * name through protobuf-c's descriptors, and the envelope's body field is
 * found by its number (a body case is its field number). */
static void *field_at(ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    return f ? (char *)m + f->offset : NULL;
}

static void fill_machine_request(ProtobufCMessage *m, const char *ns, const char *id,
                                 ProtobufCBinaryData args, const loom_client_req *req,
                                 Loom__V1__HistoryRange *range)
{
    char **ns_f = field_at(m, "ns"), **id_f = field_at(m, "id"), **rid_f;
    LOOM_ASSERT(ns_f != NULL && id_f != NULL);
    *ns_f = str(ns);
    *id_f = str(id);
    ProtobufCBinaryData *args_f = field_at(m, "args");
    if (args_f != NULL)
        *args_f = args;
    if ((rid_f = field_at(m, "request_id")) != NULL)
        *rid_f = str(request_id_of(req));
    Loom__V1__HistoryRange **range_f = field_at(m, "range");
    if (range_f != NULL)
        *range_f = range_of(req, range);
}

static int send_machine_request(loom_client *c, Loom__V1__Envelope__BodyCase body, const char *ns,
                                const char *id, ProtobufCBinaryData args,
                                const loom_client_req *req, uint64_t *corr)
{
    if (ns == NULL || id == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace and id are required");
    union {
        ProtobufCMessage base;
        Loom__V1__StartRequest start;
        Loom__V1__CallRequest call;
        Loom__V1__NotifyRequest notify;
        Loom__V1__RepairRequest repair;
        Loom__V1__SimpleRepairRequest simple_repair;
        Loom__V1__GetMachineRequest get_machine;
        Loom__V1__RemoveRequest remove;
    } m;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&loom__v1__envelope__descriptor, (unsigned)body);
    LOOM_ASSERT(f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE);
    const ProtobufCMessageDescriptor *desc = f->descriptor;
    LOOM_ASSERT(desc->sizeof_message <= sizeof m);
    protobuf_c_message_init(desc, &m);
    Loom__V1__HistoryRange range;
    fill_machine_request(&m.base, ns, id, args, req, &range);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    loom_envelope_set_body(&env, body, &m.base);
    return send_body(c, &env, req, corr);
}

int loom_client_start_send(loom_client *c, const char *ns, const char *id, const void *args,
                           size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_START, ns, id, bin(args, args_len), req,
                                corr);
}

int loom_client_call_send(loom_client *c, const char *ns, const char *id, const void *args,
                          size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_CALL, ns, id, bin(args, args_len), req,
                                corr);
}

int loom_client_notify_send(loom_client *c, const char *ns, const char *id, const void *args,
                            size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_NOTIFY, ns, id, bin(args, args_len),
                                req, corr);
}

int loom_client_repair_send(loom_client *c, const char *ns, const char *id, const void *args,
                            size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_REPAIR, ns, id, bin(args, args_len),
                                req, corr);
}

int loom_client_simple_repair_send(loom_client *c, const char *ns, const char *id,
                                   const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR, ns, id, bin(NULL, 0),
                                req, corr);
}

int loom_client_get_machine_send(loom_client *c, const char *ns, const char *id,
                                 const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_GET_MACHINE, ns, id, bin(NULL, 0), req,
                                corr);
}

int loom_client_remove_send(loom_client *c, const char *ns, const char *id,
                            const loom_client_req *req, uint64_t *corr)
{
    return send_machine_request(c, LOOM__V1__ENVELOPE__BODY_REMOVE, ns, id, bin(NULL, 0), req,
                                corr);
}

int loom_client_list_machines_send(loom_client *c, const char *ns, int status, const char *after,
                                   uint32_t limit, const loom_client_req *req, uint64_t *corr)
{
    if (ns == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace is required");
    Loom__V1__ListMachinesRequest m = LOOM__V1__LIST_MACHINES_REQUEST__INIT;
    m.ns = str(ns);
    m.status = (Loom__V1__MachineStatus)status;
    m.after = str(after);
    m.limit = limit;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_LIST_MACHINES;
    env.list_machines = &m;
    return send_body(c, &env, req, corr);
}

/* Register and Update carry the same single field: the config. */
static int send_ns_config(loom_client *c, Loom__V1__Envelope__BodyCase which,
                          const Loom__V1__NamespaceConfig *cfg, const loom_client_req *req,
                          uint64_t *corr)
{
    if (cfg == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace config is required");
    union {
        ProtobufCMessage base;
        Loom__V1__RegisterNamespaceRequest reg;
        Loom__V1__UpdateNamespaceRequest upd;
    } m;
    Loom__V1__NamespaceConfig *config = (Loom__V1__NamespaceConfig *)(uintptr_t)cfg;
    if (which == LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE) {
        loom__v1__register_namespace_request__init(&m.reg);
        m.reg.config = config;
    } else {
        loom__v1__update_namespace_request__init(&m.upd);
        m.upd.config = config;
    }
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    loom_envelope_set_body(&env, which, &m.base);
    return send_body(c, &env, req, corr);
}

int loom_client_register_namespace_send(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                        const loom_client_req *req, uint64_t *corr)
{
    return send_ns_config(c, LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE, cfg, req, corr);
}

int loom_client_update_namespace_send(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                      const loom_client_req *req, uint64_t *corr)
{
    return send_ns_config(c, LOOM__V1__ENVELOPE__BODY_UPDATE_NAMESPACE, cfg, req, corr);
}

int loom_client_list_namespaces_send(loom_client *c, const loom_client_req *req, uint64_t *corr)
{
    Loom__V1__ListNamespacesRequest m = LOOM__V1__LIST_NAMESPACES_REQUEST__INIT;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_LIST_NAMESPACES;
    env.list_namespaces = &m;
    return send_body(c, &env, req, corr);
}

/* ------------------------------------------------------------ blocking forms */

static int settle_sent(loom_client *c, int rc, uint64_t corr, loom_client_result *res)
{
    if (rc < 0) {
        if (res)
            memset(res, 0, sizeof *res);
        return rc;
    }
    return loom_client_wait(c, corr, res);
}

int loom_client_start(loom_client *c, const char *ns, const char *id, const void *args,
                      size_t args_len, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_start_send(c, ns, id, args, args_len, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_call(loom_client *c, const char *ns, const char *id, const void *args,
                     size_t args_len, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_call_send(c, ns, id, args, args_len, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_notify(loom_client *c, const char *ns, const char *id, const void *args,
                       size_t args_len, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_notify_send(c, ns, id, args, args_len, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_repair(loom_client *c, const char *ns, const char *id, const void *args,
                       size_t args_len, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_repair_send(c, ns, id, args, args_len, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_simple_repair(loom_client *c, const char *ns, const char *id,
                              const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_simple_repair_send(c, ns, id, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_get_machine(loom_client *c, const char *ns, const char *id,
                            const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_get_machine_send(c, ns, id, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_remove(loom_client *c, const char *ns, const char *id, const loom_client_req *req,
                       loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_remove_send(c, ns, id, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_list_machines(loom_client *c, const char *ns, int status, const char *after,
                              uint32_t limit, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_list_machines_send(c, ns, status, after, limit, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_register_namespace(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                   const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_register_namespace_send(c, cfg, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_update_namespace(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                 const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_update_namespace_send(c, cfg, req, &corr);
    return settle_sent(c, rc, corr, res);
}

int loom_client_list_namespaces(loom_client *c, const loom_client_req *req, loom_client_result *res)
{
    uint64_t corr = 0;
    int rc = loom_client_list_namespaces_send(c, req, &corr);
    return settle_sent(c, rc, corr, res);
}
