/* Engine internals shared by the engine's source files (loom__ prefix).
 *
 * Threads: everything here lives on the loop thread except the committer's
 * queues (committer.c), which are handed over under cm_mutex. */
#ifndef LOOM_ENGINE_INT_H
#define LOOM_ENGINE_INT_H

#include <pthread.h>
#include <uv.h>

#include "loom/engine.h"
#include "loom/store.h"
#include "loom/wire.h"
#include "util.h"

/* Timers are loaded this far ahead of now into the in-memory heap. */
#define LOOM_TIMER_WINDOW_MS 60000
#define LOOM_TIMER_HEAP_MAX 65536
#define LOOM__MAX_ENDPOINTS 16
/* Step kinds stored in loom_retry.step_kind. */
#define LOOM_RETRY_KIND_TIMEOUT 1u
#define LOOM_RETRY_KIND_NOTIFICATION 2u
/* Largest history range the engine reads for a processor or a client. */
#define LOOM_RANGE_MAX 10000u
/* A deadline further than this in the future is a processor bug. */
#define LOOM_TIMER_MAX_AHEAD_MS (10ll * 366 * 24 * 3600 * 1000)

typedef struct loom_engine loom_engine;
typedef struct loom__client loom__client;
typedef struct loom__ns loom__ns;
typedef struct loom__machine loom__machine;
typedef struct loom__op loom__op;
typedef struct loom__step loom__step;
typedef struct loom__pconn loom__pconn;

/* ------------------------------------------------------------ clients */
struct loom__client {
    loom_engine *e;
    loom_conn *conn;
    int refs; /* the connection + every op waiting to answer */
    bool closed;
    loom__client *prev, *next;
};

/* ------------------------------------------------------------ namespaces */
struct loom__pconn {
    loom__ns *ns;
    size_t endpoint;
    loom_conn *conn;
    bool connected;
    loom__pconn *next;
};

struct loom__ns {
    loom_engine *e;
    loom_ns_id id;
    uint8_t id_key[4];
    loom_ns_config cfg;
    /* processor connections: at most one per endpoint */
    /* per endpoint slot (LOOM__MAX_ENDPOINTS, so an update that shrinks
     * the list never strands a closing connection's index) */
    loom__pconn *conns[LOOM__MAX_ENDPOINTS];
    int64_t retry_at_ms[LOOM__MAX_ENDPOINTS]; /* no reconnect before (monotonic) */
    uint32_t backoff_ms[LOOM__MAX_ENDPOINTS];
    size_t rr; /* round robin cursor */
    /* steps waiting for a connection, in order */
    loom__step *wait_head, *wait_tail;
};

/* ------------------------------------------------------------ machines */
typedef enum loom__op_kind {
    LOOM_OP_START,
    LOOM_OP_CALL,
    LOOM_OP_NOTIFY,
    LOOM_OP_REPAIR,
    LOOM_OP_SIMPLE_REPAIR,
    LOOM_OP_REMOVE,
    LOOM_OP_WAKE, /* internal: timer, retry or notification may be due */
} loom__op_kind;

struct loom__op {
    loom__op_kind kind;
    loom__client *cl; /* NULL for internal ops */
    uint64_t corr;
    loom_envelope *req; /* owned; args, request id and range point into it */
    loom__op *next;
};

/* Runtime state of a machine that has work queued or running; freed when
 * idle (the store holds everything durable). */
struct loom__machine {
    loom__ns *ns;
    char *id;      /* NUL-terminated copy (same allocation) */
    uint8_t *mkey; /* ns id (4 bytes BE) + id: the map key (same allocation) */
    size_t mkey_len;
    loom__op *head, *tail;
    uint32_t queued;
    bool busy;   /* a step (or its commit) is running */
    bool parked; /* waiting in the engine's ready list */
    bool wake;   /* check timers/retries/notifications when idle */
    loom__machine *ready_next;
};

/* One step: processor round trip (optional), then a commit. */
struct loom__step {
    loom_engine *e;
    loom__machine *m;
    loom__op *op;
    /* what was read at the start of the step */
    bool exists;
    loom_machine_key key;
    uint64_t last_event_id;
    loom_status status, status_before_failure;
    loom_retry retry;
    loom_timer timer;
    /* processor part */
    Loom__V1__ProcessKind kind;
    uint32_t attempt;
    uint64_t notification_id;
    uint64_t pcorr; /* correlation id towards the processor */
    loom__pconn *pc;
    int64_t deadline_ms;     /* monotonic, step timeout */
    loom__step *prev, *next; /* namespace wait list or in-flight list */
    int where;               /* LOOM__NOWHERE, LOOM__WAITING, LOOM__IN_FLIGHT */
    loom_envelope *reply;    /* processor reply, owned until committed */
    /* commit part */
    loom_step st[2];
    size_t nst;
    loom_new_event *events;
    uint8_t *outcome; /* packed reply message for request ids */
    size_t outcome_len;
    int commit_rc;        /* whole-batch result */
    char *reason;         /* failure reason stored with the step */
    loom__step *cnext;    /* committer queues */
};

/* ------------------------------------------------------------ engine */
struct loom_engine {
    uv_loop_t loop;
    loom_config cfg;
    loom_store *store;
    loom_listener **listeners;
    size_t n_listeners;
    int *listen_ports;
    uv_signal_t sigterm, sigint;
    bool signals;
    uv_async_t stop_async;
    bool stopping;
    int exit_rc;
    loom_rng rng;

    /* clients */
    loom__client *clients;
    size_t n_clients;

    /* namespaces: by name and by id (4-byte BE key) */
    loom__hmap ns_by_name, ns_by_id;

    /* machines with work */
    loom__hmap machines;
    size_t ops_queued; /* all queues together */
    size_t steps_running;
    loom__machine *ready_head, *ready_tail;

    /* processor steps in flight, oldest first (timeouts) */
    loom__hmap pending_by_corr;
    loom__step *inflight_head, *inflight_tail;
    uint64_t next_pcorr;
    uv_timer_t sweep_timer;

    /* timers */
    loom__wheap heap;
    int64_t window_end_ms;
    uv_timer_t wake_timer;

    /* outcome pruning */
    uv_timer_t prune_timer;

    /* pending notifications found at start are resumed a page per tick */
    uv_timer_t resume_timer;
    uint64_t resume_from_id;

    /* committer */
    pthread_t cm_thread;
    bool cm_started;
    pthread_mutex_t cm_mutex;
    pthread_cond_t cm_cond;
    loom__step *cm_todo_head, *cm_todo_tail;
    loom__step *cm_done_head, *cm_done_tail;
    bool cm_quit;
    uv_async_t cm_async;
    /* steps submitted during this loop iteration, handed over in one go
     * (one lock, one wake-up) by cm_check after the iteration's callbacks */
    loom__step *cm_local_head, *cm_local_tail;
    uv_check_t cm_check;
};

/* time */
int64_t loom__now_ms(void);  /* unix ms */
int64_t loom__mono_ms(void); /* monotonic ms */

/* engine.c: replies */
void loom__client_ref(loom__client *cl);
void loom__client_unref(loom__client *cl);
void loom__reply_error(loom__client *cl, uint64_t corr, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void loom__reply(loom__client *cl, loom_envelope *env);
/* Replies with an envelope whose body (case `which`) is body. */
void loom__reply_body(loom__client *cl, uint64_t corr, Loom__V1__Envelope__BodyCase which,
                      ProtobufCMessage *body);
loom__ns *loom__ns_by_id(loom_engine *e, loom_ns_id id);
/* machine.c: the meta fields of a Machine (status, last event id,
 * aux_state, timer, retry attempt, times); pointers into mm, valid while
 * the read transaction behind mm lives. */
void loom__meta_to_pb(const loom_machine *mm, Loom__V1__Machine *pb);

/* nsconf.c: NamespaceConfig protobuf <-> loom_ns_config */
int loom__nsconf_from_pb(const Loom__V1__NamespaceConfig *pb, loom_ns_config *out);
/* The caller frees *out (free). */
int loom__nsconf_encode(const loom_ns_config *ns, uint8_t **out, size_t *len);
int loom__nsconf_decode(const void *buf, size_t len, loom_ns_config *out);
/* Fills pb with pointers into ns (valid while ns lives); *endpoints is a
 * malloc'd array the caller frees. */
int loom__nsconf_to_pb(const loom_ns_config *ns, Loom__V1__NamespaceConfig *pb,
                       Loom__V1__RetryPolicy *retry, Loom__V1__HistoryRange *range);

/* validate.c */
int loom__validate_reply(const Loom__V1__ProcessReply *r, const loom_limits *l, int64_t now_ms,
                         bool is_init);
/* Converts a wire range with the namespace default and engine caps. */
void loom__range_from_pb(const Loom__V1__HistoryRange *pb, const loom_range_config *dflt,
                         loom_range *out);
int loom__range_check(const Loom__V1__HistoryRange *pb);

/* wake.c: what is due when a machine is woken (pure) */
typedef struct loom__wake_input {
    bool exists;
    loom_status status;
    loom_retry retry;
    uint64_t timer_deadline_ms;     /* 0 = none */
    uint64_t first_notification_id; /* 0 = none pending */
    uint64_t now_ms;
} loom__wake_input;

typedef struct loom__due {
    Loom__V1__ProcessKind kind; /* PROCESS_UNSPECIFIED = nothing due */
    uint32_t attempt;
    uint64_t notification_id;
    uint64_t note_ms; /* nothing due: a later wake to keep (0 none) */
} loom__due;

loom__due loom__wake_decide(const loom__wake_input *in);

/* machine.c */
int loom__machine_submit(loom_engine *e, loom__ns *ns, const char *id, loom__op *op);
void loom__machine_wake(loom_engine *e, loom_machine_key key);
void loom__machine_wake_ns(loom_engine *e, loom__ns *ns, const char *id, size_t id_len);
void loom__step_on_reply(loom__step *s, loom_envelope *env);
void loom__step_fail(loom__step *s, int err, bool retryable, const char *reason);
void loom__step_committed(loom__step *s);
void loom__ready_drain(loom_engine *e);
void loom__op_free(loom__op *op);

/* proc.c */
enum { LOOM__NOWHERE, LOOM__WAITING, LOOM__IN_FLIGHT };
/* 0 with a connected *out; LOOM_EBUSY while a connection is being made
 * (then loom__proc_wait); LOOM_EPROCESSOR_UNAVAILABLE when every endpoint
 * is backing off after failures. */
int loom__proc_conn(loom__ns *ns, loom__pconn **out);
void loom__proc_wait(loom__step *s);
/* Sends env (its correlation id is set here) and tracks the step until its
 * reply, its timeout or the connection's loss. */
int loom__proc_send(loom__step *s, loom__pconn *pc, loom_envelope *env);
void loom__proc_forget(loom__step *s); /* drop a step from wait/in-flight lists */
void loom__proc_close_ns(loom__ns *ns);
void loom__proc_sweep(uv_timer_t *t);
int loom__proc_timer_start(loom_engine *e);
/* machine.c: a waiting step's connection is up — build and send again. */
void loom__step_send(loom__step *s);

/* committer.c */
int loom__committer_start(loom_engine *e);
void loom__committer_stop(loom_engine *e);
void loom__committer_submit(loom_engine *e, loom__step *s);

/* timers.c */
void loom__timers_start(loom_engine *e);
void loom__timers_note(loom_engine *e, uint64_t wake_ms, loom_machine_key key);

#endif
