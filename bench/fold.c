/* loom-bench fold: how fast Loom folds histories compared with the
 * physical limit, a raw LMDB cursor walk over the same records.
 *
 * Both walks visit the same machines in the same random order, inside one
 * read transaction, and add up every payload byte (so both touch the same
 * data). The raw walk reuses one cursor and finds the payload at its fixed
 * offset with no checks (histories shorter than the log's compaction
 * threshold still sit in the event log: it fetches those by sequence);
 * Loom's walk is what a reader does: read the machine's meta, begin a
 * history range, decode each record, verify its CRC32C and chain hash, and
 * hand out the event. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "internal.h"

struct fold_opts {
    uint64_t machines, events, event_size, rounds;
    const char *dir;
    bool json;
};

static void fold_usage(FILE *f)
{
    fprintf(f, "usage: loom-bench fold [--machines N] [--events M] [--event-size B] [--rounds R]\n"
               "                       [--dir D] [--json]\n"
               "  defaults: 10000 machines, 100 events of 64 bytes, 3 rounds, a scratch dir\n"
               "  --dir reuses a store built earlier with the same N, M and B\n");
}

static int parse(int argc, char **argv, struct fold_opts *o)
{
    static const struct option longopts[] = {
        {"machines", required_argument, 0, 'n'}, {"events", required_argument, 0, 'm'},
        {"event-size", required_argument, 0, 'b'}, {"rounds", required_argument, 0, 'r'},
        {"dir", required_argument, 0, 'd'},      {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    *o = (struct fold_opts){10000, 100, 64, 3, NULL, false};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->machines = bench_parse_u64("--machines", optarg, 1, 100000000); break;
        case 'm': o->events = bench_parse_u64("--events", optarg, 1, LOOM_STORE_MAX_STEP_EVENTS); break;
        case 'b': o->event_size = bench_parse_u64("--event-size", optarg, 0, 1 << 20); break;
        case 'r': o->rounds = bench_parse_u64("--rounds", optarg, 1, 100); break;
        case 'd': o->dir = optarg; break;
        case 'j': o->json = true; break;
        case 'h': fold_usage(stdout); exit(0);
        default: fold_usage(stderr); return 2;
        }
    }
    return 0;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "loom-bench fold: %s: %s (%s)\n", what, loom_strerror(rc), loom_errdetail());
    return 1;
}

/* Machines are built in batches; the namespace config records N/M/B so a
 * later run with --dir can tell whether the store matches. */
static int build(loom_store *s, loom_ns_id ns, const struct fold_opts *o)
{
    uint8_t *payload = malloc(o->event_size + 1);
    loom_new_event *evs = malloc(o->events * sizeof *evs);
    size_t batch = 100000 / o->events + 1;
    batch = batch > LOOM_STORE_MAX_BATCH_STEPS ? LOOM_STORE_MAX_BATCH_STEPS : batch;
    loom_step *steps = calloc(batch, sizeof *steps);
    char (*ids)[24] = calloc(batch, 24);
    int rc = payload && evs && steps && ids ? 0 : LOOM_ENOMEM;
    for (uint64_t i = 0; i < o->event_size; i++)
        payload[i] = (uint8_t)(i * 131 + 7);
    for (uint64_t e = 0; e < o->events; e++)
        evs[e] = (loom_new_event){1, loom_slice_of(payload, o->event_size)};
    for (uint64_t done = 0; rc == 0 && done < o->machines;) {
        size_t n = o->machines - done < batch ? (size_t)(o->machines - done) : batch;
        for (size_t i = 0; i < n; i++) {
            snprintf(ids[i], 24, "m%llu", (unsigned long long)(done + i));
            steps[i] = (loom_step){.ns = ns, .id = loom_slice_str(ids[i]), .create = true,
                                   .now_ms = bench_wall_ms(), .events = evs, .n_events = (uint32_t)o->events};
        }
        rc = loom_store_commit(s, steps, n);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = steps[i].result;
        done += n;
    }
    free(payload);
    free(evs);
    free(steps);
    free(ids);
    return rc;
}

static int open_store(const struct fold_opts *o, loom_store **s, loom_ns_id *ns, bool *built)
{
    /* Building is not what is measured: no fsync while loading. */
    loom_store_opts so = {.map_size_max = 1ull << 40,
                          .flags = LOOM_STORE_NOSYNC | LOOM_STORE_WRITEMAP};
    int rc = loom_store_open(s, o->dir, &so);
    if (rc != 0)
        return fail("open", rc);
    char cfg[96];
    snprintf(cfg, sizeof cfg, "fold %llu/%llu/%llu", (unsigned long long)o->machines,
             (unsigned long long)o->events, (unsigned long long)o->event_size);
    loom_txn *t;
    loom_ns_info info;
    if ((rc = loom_store_read_begin(*s, &t)) != 0)
        return fail("read", rc);
    rc = loom_store_ns_get(t, loom_slice_str("bench-fold"), &info);
    bool match = rc == 0 && info.config.len == strlen(cfg) && memcmp(info.config.ptr, cfg, strlen(cfg)) == 0;
    *ns = info.id;
    loom_txn_end(t);
    *built = false;
    if (rc == 0 && !match) {
        fprintf(stderr, "loom-bench fold: %s holds a store built with other parameters\n", o->dir);
        return 1;
    }
    if (rc == 0)
        return 0;
    if ((rc = loom_store_ns_create(*s, loom_slice_str("bench-fold"), loom_slice_str(cfg), ns)) != 0)
        return fail("namespace", rc);
    *built = true;
    return (rc = build(*s, *ns, o)) != 0 ? fail("build", rc) : 0;
}

/* The machine keys, from the machines table, shuffled. */
static uint64_t *machine_keys(loom_store *s, loom_ns_id ns, uint64_t n)
{
    uint64_t *keys = malloc(n * sizeof *keys), count = 0, rng = 42;
    loom_machine *page = malloc(1000 * sizeof *page);
    loom_txn *t;
    if (!keys || !page || loom_store_read_begin(s, &t) != 0)
        exit(1);
    loom_slice after = {NULL, 0};
    bool more = true, has_after = false;
    while (more) {
        int got = loom_store_machines_list(t, ns, LOOM_STATUS_NONE, after, has_after, page, 1000,
                                           &after, &more);
        if (got < 0)
            exit(fail("list", got));
        for (int i = 0; i < got && count < n; i++)
            keys[count++] = page[i].key.v;
        has_after = true;
    }
    loom_txn_end(t);
    free(page);
    if (count != n)
        exit(fail("store has fewer machines than asked", LOOM_EINTERNAL));
    bench_shuffle(keys, n, &rng);
    return keys;
}

static inline uint64_t sum_bytes(const uint8_t *p, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

/* The newest (< 32) events of a machine sit in the event log; the raw
 * walk fetches them by sequence, newest first, without checks. */
static uint64_t walk_raw_log(loom_store *s, loom_txn *t, uint64_t key, uint64_t *count)
{
    loom_machine m;
    uint64_t sum = 0;
    if (loom__machine_by_key(s, t->txn, (loom_machine_key){key}, &m) != 0)
        exit(1);
    uint64_t seq = m.log_tail_seq;
    for (uint32_t i = 0; i < m.log_count; i++) {
        uint8_t kb[8];
        loom__put_be64(kb, seq);
        MDB_val k = {8, kb}, d;
        if (mdb_get(t->txn, s->dbi[LOOM__DB_SINK], &k, &d) != 0)
            exit(1);
        const uint8_t *p = d.mv_data;
        sum += sum_bytes(p + LOOM__SINK_HEAD + LOOM__EVENT_HEAD,
                         d.mv_size - LOOM__SINK_HEAD - loom__event_size(0));
        seq = loom__get_be64(p + 8);
        (*count)++;
    }
    return sum;
}

static uint64_t walk_raw(loom_store *s, const uint64_t *keys, uint64_t n, uint64_t per_machine,
                         uint64_t *events)
{
    loom_txn *t;
    MDB_cursor *c;
    if (loom_store_read_begin(s, &t) != 0 || mdb_cursor_open(t->txn, s->dbi[LOOM__DB_EVENTS], &c))
        exit(1);
    uint64_t sum = 0, count = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t kb[16];
        uint64_t before = count;
        loom__key2(kb, keys[i], 1);
        MDB_val k = {16, kb}, d;
        int rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        while (rc == 0 && loom__get_be64(k.mv_data) == keys[i]) {
            sum += sum_bytes((uint8_t *)d.mv_data + LOOM__EVENT_HEAD, d.mv_size - loom__event_size(0));
            count++;
            rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
        }
        if (count - before < per_machine)
            sum += walk_raw_log(s, t, keys[i], &count);
    }
    mdb_cursor_close(c);
    loom_txn_end(t);
    *events = count;
    return sum;
}

static uint64_t walk_loom(loom_store *s, const uint64_t *keys, uint64_t n, uint64_t *events)
{
    loom_txn *t;
    if (loom_store_read_begin(s, &t) != 0)
        exit(1);
    uint64_t sum = 0, count = 0;
    loom_range all = {0};
    for (uint64_t i = 0; i < n; i++) {
        loom_history it;
        loom_event ev;
        int rc = loom_history_begin(t, (loom_machine_key){keys[i]}, &all, &it);
        while (rc == 0 && (rc = loom_history_next(&it, &ev)) == 1) {
            sum += sum_bytes(ev.data.ptr, ev.data.len);
            count++;
            rc = 0;
        }
        loom_history_end(&it);
        if (rc < 0)
            exit(fail("history", rc));
    }
    loom_txn_end(t);
    *events = count;
    return sum;
}

static void report(const struct fold_opts *o, double raw, double loom, bool built)
{
    if (o->json) {
        printf("{\"bench\":\"fold\",\"machines\":%llu,\"events_per_machine\":%llu,"
               "\"event_size\":%llu,\"rounds\":%llu,\"built\":%s,\"raw_events_per_s\":%.0f,"
               "\"loom_events_per_s\":%.0f,\"ratio\":%.3f}\n",
               (unsigned long long)o->machines, (unsigned long long)o->events,
               (unsigned long long)o->event_size, (unsigned long long)o->rounds,
               built ? "true" : "false", raw, loom, loom / raw);
        return;
    }
    printf("fold: %llu machines x %llu events of %llu bytes, random machine order, best of %llu\n",
           (unsigned long long)o->machines, (unsigned long long)o->events,
           (unsigned long long)o->event_size, (unsigned long long)o->rounds);
    printf("  raw LMDB cursor walk   %12.0f events/s\n", raw);
    printf("  loom history fold      %12.0f events/s  (%.1f%% of raw)\n", loom, 100.0 * loom / raw);
}

int bench_fold(int argc, char **argv)
{
    struct fold_opts o;
    if (parse(argc, argv, &o) != 0)
        return 2;
    char *scratch = o.dir ? NULL : bench_mkdtemp("loom-bench-fold");
    if (!o.dir && !scratch)
        return 1;
    o.dir = o.dir ? o.dir : scratch;
    loom_store *s = NULL;
    loom_ns_id ns;
    bool built;
    int rc = open_store(&o, &s, &ns, &built);
    if (rc == 0) {
        uint64_t *keys = machine_keys(s, ns, o.machines), raw_n, loom_n;
        walk_raw(s, keys, o.machines, o.events, &raw_n); /* warm the page cache */
        double best_raw = 0, best_loom = 0;
        for (uint64_t r = 0; r < o.rounds; r++) {
            uint64_t t0 = bench_now_ns();
            uint64_t raw_sum = walk_raw(s, keys, o.machines, o.events, &raw_n);
            uint64_t t1 = bench_now_ns();
            uint64_t loom_sum = walk_loom(s, keys, o.machines, &loom_n);
            uint64_t t2 = bench_now_ns();
            if (raw_sum != loom_sum || raw_n != loom_n || raw_n != o.machines * o.events) {
                fprintf(stderr, "loom-bench fold: walks disagree\n");
                rc = 1;
                break;
            }
            double raw = raw_n / ((t1 - t0) / 1e9), loom = loom_n / ((t2 - t1) / 1e9);
            best_raw = raw > best_raw ? raw : best_raw;
            best_loom = loom > best_loom ? loom : best_loom;
        }
        if (rc == 0)
            report(&o, best_raw, best_loom, built);
        free(keys);
    }
    loom_store_close(s);
    if (scratch) {
        bench_rmtree(scratch);
        free(scratch);
    }
    return rc;
}
