/* The smallest useful processor: every call appends an event holding the
 * call's args and answers with the number of events so far. The complete
 * example of docs/processor-sdk.md. */
#include <stdio.h>

#include "loom/payload.h"
#include "loom/processor.h"

static void on_call(loom_proc_req *req, void *user)
{
    (void)user;
    loom_proc_bytes args = loom_proc_req_args(req);
    loom_proc_append_event(req, 1, args.data, args.len);

    loom_mp_writer w;
    loom_mp_writer_init(&w, 0);
    loom_mp_map(&w, 1);
    loom_mp_kv_int(&w, "events", (int64_t)loom_proc_req_last_event_id(req) + 1);
    const uint8_t *data;
    size_t len;
    if (loom_mp_writer_finish(&w, &data, &len) == 0)
        loom_proc_respond(req, data, len);
    else
        loom_proc_fail(req, false, "response: %s", loom_errdetail());
    loom_mp_writer_free(&w);
    loom_proc_done(req); /* may also happen later, from any callback */
}

static void on_init(loom_proc_req *req, void *user)
{
    (void)user;
    loom_proc_done(req); /* an empty result: the machine starts with no events */
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "tcp:127.0.0.1:7100";
    loom_proc *p;
    int err = loom_proc_create(NULL, NULL, &p); /* its own loop, default limits */
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_INIT, on_init, NULL);
    if (err == 0)
        err = loom_proc_on(p, LOOM_PROC_CALL, on_call, NULL);
    if (err == 0)
        err = loom_proc_listen(p, addr);
    if (err == 0)
        err = loom_proc_run(p, 5000); /* until SIGINT/SIGTERM, 5 s grace */
    if (err != 0)
        fprintf(stderr, "%s: %s\n", loom_strerror(err), loom_errdetail());
    return err == 0 ? 0 : 1;
}
