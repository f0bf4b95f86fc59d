/* End-to-end tests of loomd's client API (engine.c dispatch, machine.c
 * steps): the Start/Call/GetMachine pipeline and the engine-side error
 * codes, against a real loomd and a real processor process. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"

Test(engine, start_call_get_pipeline)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "m1", "hello"), 0, "%s", loom_client_errmsg(t.c));
    loom_client_result r = {0};
    cr_assert_eq(e2e_call(&t, "m1", "append", &r), 0, "%s", loom_client_errmsg(t.c));
    cr_assert_eq(r.last_event_id, 2);
    cr_assert_eq(r.response_len, 2);
    cr_assert_eq(memcmp(r.response, "ok", 2), 0);
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_get_machine(t.c, "t", "m1", NULL, &r), 0);
    cr_assert_eq(r.machine->last_event_id, 2);
    cr_assert_eq(r.machine->status, LOOM__V1__MACHINE_STATUS__STATUS_WORKING);
    cr_assert_eq(r.machine->n_history, 2);
    /* default range is backward: newest first */
    cr_assert_eq(r.machine->history[0]->id, 2);
    cr_assert_eq(r.machine->history[0]->data.len, 6);
    cr_assert_eq(memcmp(r.machine->history[1]->data.data, "init", 4), 0);
    cr_assert_eq(r.machine->aux_state.len, 2);
    loom_client_result_free(&r);
    e2e_stop(&t);
}

Test(engine, error_codes_of_the_engine)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(loom_client_call(t.c, "nope", "m", "x", 1, NULL, NULL), LOOM_ENAMESPACE_NOT_FOUND);
    cr_assert_eq(e2e_call(&t, "absent", "append", NULL), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(e2e_start_machine(&t, "m", NULL), 0);
    cr_assert_eq(e2e_start_machine(&t, "m", NULL), LOOM_EMACHINE_ALREADY_EXISTS);
    cr_assert_eq(e2e_start_machine(&t, "", NULL), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_start(t.c, "bad ns!", "m", NULL, 0, NULL, NULL),
                 LOOM_EINVALID_ARGUMENT);
    char longid[300];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    cr_assert_eq(e2e_start_machine(&t, longid, NULL), LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(e2e_start_machine(&t, "\xff\xfe", NULL), LOOM_EINVALID_ARGUMENT);
    /* processor refuses: PROCESSOR_FAILED, message = its reason, no event */
    cr_assert_eq(e2e_call(&t, "m", "fail", NULL), LOOM_EPROCESSOR_FAILED);
    cr_assert(strstr(loom_client_errmsg(t.c), "refused") != NULL, "%s", loom_client_errmsg(t.c));
    cr_assert_eq(e2e_start_machine(&t, "m2", "fail"), LOOM_EPROCESSOR_FAILED);
    cr_assert_eq(e2e_call(&t, "m2", "append", NULL), LOOM_EMACHINE_NOT_FOUND);
    /* invalid replies: BAD_REPLY, machine unchanged */
    cr_assert_eq(e2e_call(&t, "m", "events:5000", NULL), LOOM_EBAD_REPLY);
    cr_assert_eq(e2e_call(&t, "m", "badtimer", NULL), LOOM_EBAD_REPLY);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "m", NULL, &r), 0);
    cr_assert_eq(r.machine->last_event_id, 1);
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_get_machine(t.c, "t", "zzz", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    cr_assert_eq(loom_client_remove(t.c, "t", "zzz", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    /* a notification is stored until delivered: bounded like an event */
    size_t big = 1024 * 1024 + 1;
    char *args = calloc(1, big);
    cr_assert_eq(loom_client_notify(t.c, "t", "m", args, big, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    free(args);
    cr_assert_eq(loom_client_remove(t.c, "t", "m", NULL, NULL), 0);
    cr_assert_eq(loom_client_get_machine(t.c, "t", "m", NULL, NULL), LOOM_EMACHINE_NOT_FOUND);
    e2e_stop(&t);
}

Test(engine, admin_namespaces_register_update_list_and_persist)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    Loom__V1__NamespaceConfig cfg = LOOM__V1__NAMESPACE_CONFIG__INIT;
    char *eps[] = {t.proc_addr};
    cfg.name = "extra";
    cfg.processor_endpoints = eps;
    cfg.n_processor_endpoints = 1;
    cfg.step_timeout_ms = 2000;
    cr_assert_eq(loom_client_register_namespace(t.c, &cfg, NULL, NULL), 0, "%s",
                 loom_client_errmsg(t.c));
    cr_assert_eq(loom_client_register_namespace(t.c, &cfg, NULL, NULL),
                 LOOM_ENAMESPACE_ALREADY_EXISTS);
    cr_assert_eq(loom_client_start(t.c, "extra", "x1", NULL, 0, NULL, NULL), 0);
    cfg.step_timeout_ms = 3000;
    cr_assert_eq(loom_client_update_namespace(t.c, &cfg, NULL, NULL), 0);
    cfg.name = "missing";
    cr_assert_eq(loom_client_update_namespace(t.c, &cfg, NULL, NULL), LOOM_ENAMESPACE_NOT_FOUND);
    cfg.name = "bad name";
    cr_assert_eq(loom_client_register_namespace(t.c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    cfg.name = "noproc";
    cfg.n_processor_endpoints = 0;
    cr_assert_eq(loom_client_register_namespace(t.c, &cfg, NULL, NULL), LOOM_EINVALID_ARGUMENT);
    /* persists across a restart, with the updated config */
    loom_client_close(t.c);
    int status;
    cr_assert_eq(loom_harness_loomd_stop(t.h, &status), 0);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0, "%s", loom_errdetail());
    e2e_connect(&t);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_list_namespaces(t.c, NULL, &r), 0);
    cr_assert_eq(r.namespaces->n_namespaces, 2);
    cr_assert_str_eq(r.namespaces->namespaces[0]->name, "extra");
    cr_assert_eq(r.namespaces->namespaces[0]->step_timeout_ms, 3000);
    cr_assert_str_eq(r.namespaces->namespaces[1]->name, "t");
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_call(t.c, "extra", "x1", "append", 6, NULL, NULL), 0);
    e2e_stop(&t);
}

Test(engine, list_machines_pages_and_filters)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    char id[16];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "L%02d", i);
        cr_assert_eq(e2e_start_machine(&t, id, i == 7 ? "mode:fatal" : NULL), 0);
    }
    cr_assert_eq(e2e_call(&t, "L07", "timer:0", NULL), 0);
    cr_assert_eq(e2e_wait_status(&t, "L07", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, 0, 10000),
                 LOOM__V1__MACHINE_STATUS__STATUS_FAILED);
    int seen = 0;
    char after[64] = "";
    for (int page = 0; page < 10; page++) {
        loom_client_result r = {0};
        cr_assert_eq(loom_client_list_machines(t.c, "t", 0, after[0] ? after : NULL, 10, NULL, &r),
                     0, "%s", loom_client_errmsg(t.c));
        for (size_t i = 0; i < r.machines->n_machines; i++) {
            snprintf(id, sizeof id, "L%02d", seen);
            cr_assert_str_eq(r.machines->machines[i]->id, id);
            seen++;
        }
        snprintf(after, sizeof after, "%s", r.machines->next_after);
        loom_client_result_free(&r);
        if (!after[0])
            break;
    }
    cr_assert_eq(seen, 25);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_list_machines(t.c, "t", LOOM__V1__MACHINE_STATUS__STATUS_FAILED, NULL,
                                           0, NULL, &r),
                 0);
    cr_assert_eq(r.machines->n_machines, 1);
    cr_assert_str_eq(r.machines->machines[0]->id, "L07");
    cr_assert(strstr(r.machines->machines[0]->failure_reason, "permanent") != NULL);
    loom_client_result_free(&r);
    cr_assert_eq(loom_client_list_machines(t.c, "nope", 0, NULL, 0, NULL, NULL),
                 LOOM_ENAMESPACE_NOT_FOUND);
    cr_assert_eq(loom_client_list_machines(t.c, "t", 9, NULL, 0, NULL, NULL),
                 LOOM_EINVALID_ARGUMENT);
    cr_assert_eq(loom_client_list_machines(t.c, "t", 0, NULL, 100000, NULL, NULL),
                 LOOM_EINVALID_ARGUMENT);
    e2e_stop(&t);
}

/* A raw socket: the client library refuses to send a reply body. */
Test(engine, reply_body_as_request_is_protocol_error)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    Loom__V1__StartReply sr = LOOM__V1__START_REPLY__INIT;
    env.correlation_id = 77;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START_REPLY;
    env.start_reply = &sr;
    loom_envelope *rep = loom_harness_loomd_exchange(t.h, &env, 15000);
    cr_assert_not_null(rep, "%s", loom_errdetail());
    cr_assert_eq(rep->correlation_id, 77);
    cr_assert_eq(rep->body_case, LOOM__V1__ENVELOPE__BODY_ERROR);
    cr_assert_eq(rep->error->code, loom_err_wire(LOOM_EPROTOCOL));
    loom_envelope_free(rep);
    /* the engine serves on */
    cr_assert_eq(e2e_start_machine(&t, "p", NULL), 0);
    e2e_stop(&t);
}

Test(engine, full_store_is_reported_and_reads_go_on)
{
    e2e t;
    e2e_start(&t, 5000, NULL, "storage: {map_size_initial_mb: 1, map_size_max_mb: 2}\n");
    cr_assert_eq(e2e_start_machine(&t, "big", NULL), 0);
    int rc = 0, ok = 0;
    for (int i = 0; i < 40 && rc == 0; i++) {
        rc = e2e_call(&t, "big", "big:200000", NULL);
        ok += rc == 0;
    }
    cr_assert_eq(rc, LOOM_ESTORAGE_FULL, "got %s after %d calls", loom_err_name(rc), ok);
    loom_client_result r = {0};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "big", NULL, &r), 0);
    cr_assert_eq(r.machine->last_event_id, (uint64_t)ok + 1);
    loom_client_result_free(&r);
    /* small steps still fit */
    cr_assert_eq(e2e_call(&t, "big", "mode:x", NULL), 0, "%s", loom_client_errmsg(t.c));
    e2e_stop(&t);
}

Test(engine, tcp_listener_and_connection_limit)
{
    loom_harness *h;
    cr_assert_eq(loom_harness_create(&h), 0);
    char proc[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(h, "p.sock", proc, sizeof proc);
    const char *argv[] = {"loom-test-processor", "--listen", proc, NULL};
    cr_assert_eq(loom_harness_spawn(h, "proc", argv, proc, NULL), 0);
    loom_harness_ns ns = {.name = "t", .processor = proc};
    loom_harness_loomd_opts o = {.namespaces = &ns,
                                 .n_namespaces = 1,
                                 .tcp = true,
                                 .yaml = "limits: {max_connections: 2}\n"};
    cr_assert_eq(loom_harness_loomd_start(h, &o), 0, "%s", loom_errdetail());
    loom_client *a, *b, *c;
    cr_assert_eq(loom_client_connect(loom_harness_loomd_tcp_addr(h), NULL, &a), 0);
    cr_assert_eq(loom_client_start(a, "t", "viatcp", NULL, 0, NULL, NULL), 0);
    cr_assert_eq(loom_client_connect(loom_harness_loomd_addr(h), NULL, &b), 0);
    cr_assert_eq(loom_client_get_machine(b, "t", "viatcp", NULL, NULL), 0);
    /* the third connection is closed at once */
    cr_assert_eq(loom_client_connect(loom_harness_loomd_addr(h), NULL, &c), 0);
    cr_assert_neq(loom_client_get_machine(c, "t", "viatcp", NULL, NULL), 0);
    loom_client_close(c);
    loom_client_close(b);
    loom_client_close(a);
    int status = -1;
    cr_assert_eq(loom_harness_loomd_stop(h, &status), 0);
    cr_assert_eq(status, 0);
    loom_harness_pass(h);
    loom_harness_destroy(h);
}

Test(engine, bad_config_exits_2_with_a_message)
{
    loom_harness *h;
    cr_assert_eq(loom_harness_create(&h), 0);
    cr_assert_eq(loom_harness_write_file(h, "bad.yaml", "listen: [unix:/x]\nlimitz: 1\n"), 0);
    char path[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(h, "bad.yaml", path, sizeof path);
    const char *argv[] = {"loomd", "--config", path, NULL};
    loom_harness_proc *p;
    cr_assert_eq(loom_harness_spawn(h, "badloomd", argv, NULL, &p), 0);
    int status = -1;
    cr_assert_eq(loom_harness_proc_wait(p, 20000, &status), 0);
    cr_assert_eq(status, 2);
    const char *noconf[] = {"loomd", NULL};
    cr_assert_eq(loom_harness_spawn(h, "noconf", noconf, NULL, &p), 0);
    cr_assert_eq(loom_harness_proc_wait(p, 20000, &status), 0);
    cr_assert_eq(status, 2);
    FILE *f = fopen(loom_harness_proc_log(loom_harness_proc_find(h, "badloomd")), "r");
    cr_assert_not_null(f);
    char line[512] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strstr(line, "unknown key 'limitz'") != NULL, "%s", line);
    loom_harness_pass(h);
    loom_harness_destroy(h);
}

static int run_verify(loom_harness *h)
{
    char conf[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(h, "loomd.yaml", conf, sizeof conf);
    const char *argv[] = {"loomd", "--config", conf, "--verify", NULL};
    static int runs;
    char name[32];
    snprintf(name, sizeof name, "verify%d", ++runs); /* child names are unique */
    loom_harness_proc *p;
    cr_assert_eq(loom_harness_spawn(h, name, argv, NULL, &p), 0, "%s", loom_errdetail());
    int status = -1;
    cr_assert_eq(loom_harness_proc_wait(p, 30000, &status), 0);
    return status;
}

/* loomd --verify: a sound store passes; a flipped byte in an event is
 * found (and loomd serves CORRUPTED, not the bad bytes). */
Test(engine, verify_flag_checks_the_store)
{
    e2e t;
    e2e_start(&t, 5000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "v", NULL), 0);
    const char *marker = "append-MARKER-0123456789-MARKER";
    cr_assert_eq(e2e_call(&t, "v", marker, NULL), 0);
    loom_client_close(t.c);
    t.c = NULL;
    int status = -1;
    cr_assert_eq(loom_harness_loomd_stop(t.h, &status), 0);
    cr_assert_eq(run_verify(t.h), 0);
    /* flip one byte of the event's data in the data file */
    char path[LOOM_HARNESS_PATH_MAX];
    loom_harness_path(t.h, "data/data.mdb", path, sizeof path);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    char *hit = memmem(buf, (size_t)size, marker, strlen(marker));
    cr_assert_not_null(hit, "event bytes not found in data.mdb");
    fseek(f, (long)(hit - buf) + 10, SEEK_SET);
    fputc(hit[10] ^ 0x55, f);
    fclose(f);
    free(buf);
    cr_assert_eq(run_verify(t.h), 1);
    cr_assert_eq(loom_harness_loomd_restart(t.h), 0);
    e2e_connect(&t);
    loom_client_range fwd = {.limit = 0, .backward = false};
    loom_client_req req = {.range = &fwd};
    cr_assert_eq(loom_client_get_machine(t.c, "t", "v", &req, NULL), LOOM_ECORRUPTED);
    e2e_stop(&t);
}

/* Random requests with random fields (ids of any bytes and length, odd
 * ranges and statuses, huge limits, random configs): every one gets an
 * answer and loomd keeps serving. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static char *rnd_str(uint64_t *s, char *buf, size_t cap)
{
    /* valid UTF-8 only: the wire library refuses to send anything else */
    static const char *pool[] = {"t",  "m", "", "nope", "a.b-c_d", "h\xc3\xa9", "\xe2\x9c\x93",
                                 "x y"};
    if (rnd(s) % 4) {
        snprintf(buf, cap, "%s", pool[rnd(s) % LOOM_ARRAY_SIZE(pool)]);
        return buf;
    }
    size_t n = rnd(s) % (cap - 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(1 + rnd(s) % 127);
    buf[n] = 0;
    return buf;
}

Test(engine, random_requests_never_hurt_the_engine)
{
    e2e t;
    e2e_start(&t, 2000, NULL, NULL);
    cr_assert_eq(e2e_start_machine(&t, "m", NULL), 0);
    /* LOOM_ENGINE_SEED=N replays or explores other sequences */
    const char *env_seed = getenv("LOOM_ENGINE_SEED");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) | 1 : 0x9e3779b97f4a7c15ull;
    char ns[300], id[300], rid[300];
    uint8_t bytes[64];
    int answered = 0;
    for (int i = 0; i < 1500; i++) {
        loom_envelope env = LOOM__V1__ENVELOPE__INIT;
        Loom__V1__StartRequest st = LOOM__V1__START_REQUEST__INIT;
        Loom__V1__CallRequest ca = LOOM__V1__CALL_REQUEST__INIT;
        Loom__V1__NotifyRequest no = LOOM__V1__NOTIFY_REQUEST__INIT;
        Loom__V1__RepairRequest re = LOOM__V1__REPAIR_REQUEST__INIT;
        Loom__V1__GetMachineRequest gm = LOOM__V1__GET_MACHINE_REQUEST__INIT;
        Loom__V1__ListMachinesRequest lm = LOOM__V1__LIST_MACHINES_REQUEST__INIT;
        Loom__V1__HistoryRange hr = LOOM__V1__HISTORY_RANGE__INIT;
        Loom__V1__RegisterNamespaceRequest rn = LOOM__V1__REGISTER_NAMESPACE_REQUEST__INIT;
        Loom__V1__NamespaceConfig nc = LOOM__V1__NAMESPACE_CONFIG__INIT;
        Loom__V1__RetryPolicy rp = LOOM__V1__RETRY_POLICY__INIT;
        char *eps[1] = {rnd_str(&seed, rid, 40)};
        hr.after = rnd(&seed) % 5;
        hr.has_after = rnd(&seed) % 2;
        hr.limit = (uint32_t)(rnd(&seed) % 3 == 0 ? rnd(&seed) : rnd(&seed) % 4);
        hr.direction = (Loom__V1__Direction)(rnd(&seed) % 3);
        for (size_t k = 0; k < sizeof bytes; k++)
            bytes[k] = (uint8_t)rnd(&seed);
        ProtobufCBinaryData args = {rnd(&seed) % sizeof bytes, bytes};
        rnd_str(&seed, ns, 80);
        rnd_str(&seed, id, 290);
        switch (rnd(&seed) % 7) {
        case 0:
            st.ns = ns, st.id = id, st.args = args;
            env.body_case = LOOM__V1__ENVELOPE__BODY_START, env.start = &st;
            break;
        case 1:
            ca.ns = ns, ca.id = id, ca.args = args, ca.range = rnd(&seed) % 2 ? &hr : NULL;
            ca.request_id = rnd_str(&seed, rid, 290);
            env.body_case = LOOM__V1__ENVELOPE__BODY_CALL, env.call = &ca;
            break;
        case 2:
            no.ns = ns, no.id = id, no.args = args;
            env.body_case = LOOM__V1__ENVELOPE__BODY_NOTIFY, env.notify = &no;
            break;
        case 3:
            re.ns = ns, re.id = id, re.args = args;
            env.body_case = LOOM__V1__ENVELOPE__BODY_REPAIR, env.repair = &re;
            break;
        case 4:
            gm.ns = ns, gm.id = id, gm.range = rnd(&seed) % 2 ? &hr : NULL;
            env.body_case = LOOM__V1__ENVELOPE__BODY_GET_MACHINE, env.get_machine = &gm;
            break;
        case 5:
            lm.ns = ns, lm.status = (Loom__V1__MachineStatus)(rnd(&seed) % 6);
            lm.after = id, lm.limit = (uint32_t)(rnd(&seed) % 2000);
            env.body_case = LOOM__V1__ENVELOPE__BODY_LIST_MACHINES, env.list_machines = &lm;
            break;
        default:
            nc.name = ns, nc.processor_endpoints = eps, nc.n_processor_endpoints = rnd(&seed) % 2;
            nc.step_timeout_ms = (uint32_t)rnd(&seed);
            rp.initial_interval_ms = (uint32_t)(rnd(&seed) % 1000);
            rp.factor = (double)(rnd(&seed) % 300) / 10.0 - 5.0;
            rp.max_interval_ms = (uint32_t)rnd(&seed);
            rp.max_attempts = (uint32_t)(rnd(&seed) % 5);
            rp.jitter = (double)(rnd(&seed) % 30) / 10.0;
            nc.retry = rnd(&seed) % 2 ? &rp : NULL;
            rn.config = rnd(&seed) % 5 ? &nc : NULL;
            env.body_case = LOOM__V1__ENVELOPE__BODY_REGISTER_NAMESPACE;
            env.register_namespace = &rn;
            break;
        }
        uint64_t corr;
        int rc = loom_client_send(t.c, &env, 10000, &corr);
        if (rc == 0) {
            rc = loom_client_wait(t.c, corr, NULL);
            cr_assert(rc != LOOM_ECLOSED && rc != LOOM_ETIMEOUT, "request %d: %s", i,
                      loom_err_name(rc));
            answered++;
        }
    }
    fprintf(stderr, "random requests: %d answered\n", answered);
    cr_assert_gt(answered, 1000);
    cr_assert_eq(e2e_call(&t, "m", "append", NULL), 0, "%s", loom_client_errmsg(t.c));
    e2e_stop(&t);
}
