/* The Python counter processor, spawned with /usr/bin/python3 and driven
 * over a Unix socket by the test driver. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"

#define WAIT_MS 20000

typedef drv_child py;

static void py_start(py *p)
{
    drv_child_prepare(p, "counter.sock");
    char *argv[] = {"/usr/bin/python3",
                    LOOM_SOURCE_DIR "/processor-sdk/python/counter_processor.py",
                    "--listen",
                    p->addr,
                    "--pb-dir",
                    LOOM_PY_GEN_DIR,
                    NULL};
    drv_child_start(p, argv, WAIT_MS);
}

static void py_stop(py *p)
{
    drv_child_finish(p, drv_stop(p->pid, WAIT_MS));
}

static drv_answer call(py *p, drv_machine *m, const char *op, const char *key, int64_t v)
{
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, key != NULL ? 2 : 1);
    loom_mp_kv_str(&w, "op", op);
    if (key != NULL)
        loom_mp_kv_int(&w, key, v);
    return drv_step_mp(p->d, m, LOOM_PROC_CALL, &w);
}

static int64_t value_of(drv_answer a)
{
    int64_t v = -1;
    cr_assert(a.has_doc, "no response");
    cr_assert_eq(loom_mp_get_int(a.doc.root, "value", &v), 0, "%s", loom_errdetail());
    drv_answer_free(&a);
    return v;
}

Test(python, counter_flow_over_a_unix_socket)
{
    py p;
    py_start(&p);
    drv_machine m;
    drv_machine_init(&m, "counter", "c-1");
    char type[32];
    drv_answer a = drv_step_mp(p.d, &m, LOOM_PROC_INIT, NULL);
    cr_assert_not_null(drv_result(a.env));
    drv_answer_free(&a);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "counter_created");
    cr_assert_eq(value_of(call(&p, &m, "inc", NULL, 0)), 1);
    cr_assert_eq(value_of(call(&p, &m, "inc", "by", 5)), 6);
    cr_assert_eq(value_of(call(&p, &m, "inc", "by", -2)), 4);
    cr_assert_eq(value_of(call(&p, &m, "get", NULL, 0)), 4);
    cr_assert_eq(m.n_events, 4);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "incremented");

    a = call(&p, &m, "arm", "ms", 50);
    cr_assert_neq(m.timer_deadline_ms, 0);
    cr_assert_eq(drv_result(a.env)->action->set_timer->timeout_ms, 50);
    drv_answer_free(&a);
    a = drv_step_mp(p.d, &m, LOOM_PROC_TIMEOUT, NULL);
    drv_answer_free(&a);
    cr_assert_str_eq(drv_last_event_type(&m, type, sizeof type), "tick");

    /* without aux_state the processor folds the history */
    free(m.aux);
    m.aux = NULL;
    m.aux_len = 0;
    cr_assert_eq(value_of(call(&p, &m, "get", NULL, 0)), 4);

    drv_expect_failure(call(&p, &m, "jump", NULL, 0), "unknown op");
    drv_answer bad = {.env = drv_step(p.d, &m, LOOM_PROC_CALL, "\xc1", 1, WAIT_MS)};
    drv_expect_failure(bad, "bad payload");
    drv_expect_failure(drv_step_mp(p.d, &m, LOOM_PROC_REPAIR, NULL), "no handler");
    drv_machine_free(&m);
    py_stop(&p);
}

Test(python, malformed_envelope_closes_only_that_connection)
{
    py p;
    py_start(&p);
    Loom__V1__StartRequest start = LOOM__V1__START_REQUEST__INIT;
    loom_envelope env = LOOM__V1__ENVELOPE__INIT;
    env.correlation_id = 5;
    env.body_case = LOOM__V1__ENVELOPE__BODY_START;
    env.start = &start;
    cr_assert_eq(drv_send_env(p.d, &env), 0);
    loom_envelope *reply = drv_wait(p.d, 5, WAIT_MS);
    cr_assert_not_null(reply);
    cr_assert_eq(reply->body_case, LOOM__V1__ENVELOPE__BODY_ERROR);
    cr_assert_eq(reply->error->code, loom_err_wire(LOOM_EPROTOCOL));
    loom_envelope_free(reply);
    cr_assert(drv_wait_closed(p.d, WAIT_MS));
    drv_free(p.d);
    p.d = drv_connect(&p.loop, p.addr, WAIT_MS);
    cr_assert_not_null(p.d);
    drv_machine m;
    drv_machine_init(&m, "counter", "c-2");
    drv_answer a = drv_step_mp(p.d, &m, LOOM_PROC_INIT, NULL);
    cr_assert_not_null(drv_result(a.env));
    drv_answer_free(&a);
    drv_machine_free(&m);
    py_stop(&p);
}

/* Over TCP on port 0: the processor says which port it got. */
Test(python, counter_over_tcp)
{
    char *argv[] = {"/usr/bin/python3",
                    LOOM_SOURCE_DIR "/processor-sdk/python/counter_processor.py",
                    "--listen",
                    "tcp:127.0.0.1:0",
                    "--pb-dir",
                    LOOM_PY_GEN_DIR,
                    NULL};
    int err_fd;
    pid_t pid = drv_spawn_stderr(argv, &err_fd);
    char line[256];
    cr_assert(drv_read_line_with(err_fd, "listening on tcp:", line, sizeof line, WAIT_MS),
              "no listening line");
    const char *addr = strstr(line, "tcp:");
    uv_loop_t loop;
    uv_loop_init(&loop);
    drv *d = drv_connect(&loop, addr, WAIT_MS);
    cr_assert_not_null(d, "cannot connect to %s", addr);
    drv_machine m;
    drv_machine_init(&m, "counter", "c-tcp");
    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_int(&w, "start", 41);
    drv_answer a = drv_step_mp(d, &m, LOOM_PROC_INIT, &w);
    drv_answer_free(&a);
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_str(&w, "op", "inc");
    a = drv_step_mp(d, &m, LOOM_PROC_CALL, &w);
    int64_t v = 0;
    cr_assert_eq(loom_mp_get_int(a.doc.root, "value", &v), 0);
    cr_assert_eq(v, 42);
    drv_answer_free(&a);
    drv_machine_free(&m);
    int status = drv_stop(pid, WAIT_MS);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(err_fd);
    drv_free(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}
