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

static int check_ids(loom_client *c, const char *ns, const char *id)
{
    if (ns == NULL || id == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace and id are required");
    return 0;
}

static int send_body(loom_client *c, loom_envelope *env, const loom_client_req *req, uint64_t *corr)
{
    return loom_client__send(c, env, (int)env->body_case + 1, timeout_of(req), corr);
}

int loom_client_start_send(loom_client *c, const char *ns, const char *id, const void *args,
                           size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__StartRequest m = LOOM__V1__START_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    m.args = bin(args, args_len);
    m.request_id = str(request_id_of(req));
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START;
    env.start = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_call_send(loom_client *c, const char *ns, const char *id, const void *args,
                          size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__HistoryRange range;
    Loom__V1__CallRequest m = LOOM__V1__CALL_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    m.args = bin(args, args_len);
    m.range = range_of(req, &range);
    m.request_id = str(request_id_of(req));
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_CALL;
    env.call = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_notify_send(loom_client *c, const char *ns, const char *id, const void *args,
                            size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__NotifyRequest m = LOOM__V1__NOTIFY_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    m.args = bin(args, args_len);
    m.request_id = str(request_id_of(req));
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_NOTIFY;
    env.notify = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_repair_send(loom_client *c, const char *ns, const char *id, const void *args,
                            size_t args_len, const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__RepairRequest m = LOOM__V1__REPAIR_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    m.args = bin(args, args_len);
    m.request_id = str(request_id_of(req));
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REPAIR;
    env.repair = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_simple_repair_send(loom_client *c, const char *ns, const char *id,
                                   const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__SimpleRepairRequest m = LOOM__V1__SIMPLE_REPAIR_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_SIMPLE_REPAIR;
    env.simple_repair = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_get_machine_send(loom_client *c, const char *ns, const char *id,
                                 const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__HistoryRange range;
    Loom__V1__GetMachineRequest m = LOOM__V1__GET_MACHINE_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    m.range = range_of(req, &range);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_GET_MACHINE;
    env.get_machine = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_remove_send(loom_client *c, const char *ns, const char *id,
                            const loom_client_req *req, uint64_t *corr)
{
    int rc = check_ids(c, ns, id);
    if (rc < 0)
        return rc;
    Loom__V1__RemoveRequest m = LOOM__V1__REMOVE_REQUEST__INIT;
    m.ns = str(ns);
    m.id = str(id);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REMOVE;
    env.remove = &m;
    return send_body(c, &env, req, corr);
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

int loom_client_register_namespace_send(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                        const loom_client_req *req, uint64_t *corr)
{
    if (cfg == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace config is required");
    Loom__V1__RegisterNamespaceRequest m = LOOM__V1__REGISTER_NAMESPACE_REQUEST__INIT;
    m.config = (Loom__V1__NamespaceConfig *)(uintptr_t)cfg;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE;
    env.register_namespace = &m;
    return send_body(c, &env, req, corr);
}

int loom_client_update_namespace_send(loom_client *c, const Loom__V1__NamespaceConfig *cfg,
                                      const loom_client_req *req, uint64_t *corr)
{
    if (cfg == NULL)
        return loom_client__fail(c, LOOM_EINVALID_ARGUMENT, "namespace config is required");
    Loom__V1__UpdateNamespaceRequest m = LOOM__V1__UPDATE_NAMESPACE_REQUEST__INIT;
    m.config = (Loom__V1__NamespaceConfig *)(uintptr_t)cfg;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.body_case = LOOM__V1__ENVELOPE__BODY_UPDATE_NAMESPACE;
    env.update_namespace = &m;
    return send_body(c, &env, req, corr);
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
