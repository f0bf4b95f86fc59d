/* Shared set-up of the end-to-end tests (e2e.h). */
#include "e2e.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>
#include <unistd.h>

loom_harness *e2e_h;
loom_client *e2e_c;
char e2e_proc_addr[LOOM_HARNESS_PATH_MAX];

/* Short step timeout and quick retries keep failure tests fast; the
 * bounds stay generous against a loaded machine. */
static const char *const TEST_NS_YAML = "retry:\n"
                                        "  initial_interval_ms: 50\n"
                                        "  factor: 2.0\n"
                                        "  max_interval_ms: 200\n"
                                        "  max_attempts: 3\n"
                                        "  max_total_ms: 0\n"
                                        "  jitter: 0\n";

void e2e_reconnect(void)
{
    loom_client_close(e2e_c);
    e2e_c = NULL;
    int rc = loom_client_connect(loom_harness_loomd_addr(e2e_h), NULL, &e2e_c);
    cr_assert_eq(rc, 0, "connect loomd: %s", loom_errdetail());
}

void e2e_up(const char *extra_yaml)
{
    e2e_up_opts(extra_yaml, false);
}

void e2e_up_opts(const char *extra_yaml, bool tcp)
{
    cr_assert_eq(loom_harness_create(&e2e_h), 0, "%s", loom_errdetail());
    loom_harness_unix_addr(e2e_h, "proc.sock", e2e_proc_addr, sizeof e2e_proc_addr);
    const char *argv[] = {"loom-e2e-processor", "--listen", e2e_proc_addr, NULL};
    cr_assert_eq(loom_harness_spawn(e2e_h, "processor", argv, e2e_proc_addr, NULL), 0, "%s",
                 loom_errdetail());
    char dead[LOOM_HARNESS_PATH_MAX];
    loom_harness_unix_addr(e2e_h, "nobody.sock", dead, sizeof dead);
    loom_harness_ns ns[2] = {
        {.name = "test", .processor = e2e_proc_addr, .step_timeout_ms = 1500, .yaml = TEST_NS_YAML},
        {.name = "dead", .processor = dead, .step_timeout_ms = 500, .yaml = TEST_NS_YAML},
    };
    loom_harness_loomd_opts o = {
        .namespaces = ns, .n_namespaces = 2, .yaml = extra_yaml, .log_level = "debug", .tcp = tcp};
    cr_assert_eq(loom_harness_loomd_start(e2e_h, &o), 0, "loomd: %s", loom_errdetail());
    e2e_reconnect();
}

void e2e_pass(void)
{
    /* A loomd still running must stop cleanly: exit 0 on SIGTERM (under a
     * sanitizer, a leak or a race report makes it exit non-zero). A test
     * that ended loomd itself checked how it ended. Checked here, in the
     * test's body, because a failed assertion in a fini does not fail it. */
    loom_harness_proc *d = loom_harness_loomd(e2e_h);
    if (d && loom_harness_proc_alive(d)) {
        loom_client_close(e2e_c);
        e2e_c = NULL;
        int status = -1;
        cr_assert_eq(loom_harness_loomd_stop(e2e_h, &status), 0, "%s", loom_errdetail());
        cr_assert_eq(status, 0, "loomd exit status %d (see its log)", status);
    }
    loom_harness_pass(e2e_h);
}

void e2e_down(void)
{
    loom_client_close(e2e_c);
    e2e_c = NULL;
    loom_harness_destroy(e2e_h);
    e2e_h = NULL;
}

int e2e_start(const char *id, const char *args)
{
    return loom_client_start(e2e_c, "test", id, args, strlen(args), NULL, NULL);
}

int e2e_call(const char *id, const char *args, loom_client_result *res)
{
    return loom_client_call(e2e_c, "test", id, args, strlen(args), NULL, res);
}

const Loom__V1__Machine *e2e_get(const char *id, loom_client_result *res, int *rc)
{
    /* The whole history: limit 0 and forward from the start. */
    loom_client_range all = {0};
    loom_client_req req = {.range = &all};
    int r = loom_client_get_machine(e2e_c, "test", id, &req, res);
    if (rc)
        *rc = r;
    return r == 0 ? res->machine : NULL;
}

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

bool e2e_wait_status(const char *id, int status, uint32_t timeout_ms)
{
    return loom_harness_wait_status(e2e_c, "test", id, status, 0, timeout_ms) == status;
}

void e2e_event_kind(const Loom__V1__Event *e, char *kind, size_t size)
{
    kind[0] = '\0';
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)e->data.data, e->data.len, NULL) ==
            MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
                memcmp(kv->key.via.str.ptr, "kind", 4) == 0 && kv->val.type == MSGPACK_OBJECT_STR)
                snprintf(kind, size, "%.*s", (int)kv->val.via.str.size, kv->val.via.str.ptr);
        }
    }
    msgpack_unpacked_destroy(&u);
}

int e2e_count_events(const char *id, const char *kind)
{
    loom_client_result res;
    const Loom__V1__Machine *m = e2e_get(id, &res, NULL);
    int n = 0;
    for (size_t i = 0; m && i < m->n_history; i++) {
        char k[32];
        e2e_event_kind(m->history[i], k, sizeof k);
        n += strcmp(k, kind) == 0;
    }
    loom_client_result_free(&res);
    return n;
}

bool e2e_wait_event(const char *id, const char *kind, uint32_t timeout_ms)
{
    for (uint32_t waited = 0; waited <= timeout_ms; waited += 50) {
        if (e2e_count_events(id, kind) > 0)
            return true;
        sleep_ms(50);
    }
    return false;
}
