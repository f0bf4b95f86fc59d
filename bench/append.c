/* loom-bench append: durable throughput of group commits. Every step
 * appends one event to a random live machine and rewrites its meta (as an
 * engine step does); batches of 1, 10, 100 and 1000 steps each go into one
 * write transaction with fsync. The raw LMDB peer puts the same kind of
 * records (a precomputed event record and meta record per step) into an
 * environment of the same shape, with the same durability, so the ratio
 * shows what Loom's checks, indexes and bookkeeping cost. Bytes written per
 * commit come from /proc/self/io (wchar): LMDB writes dirty pages with
 * pwrite, so this is the data each commit sends to the disk. */
#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "internal.h"

#define MAX_SIZES 8
#define EVENT_BYTES 64

struct append_opts {
    uint64_t machines, initial_events, seconds_ms;
    uint64_t sizes[MAX_SIZES];
    size_t n_sizes;
    const char *dir;
    bool json, raw, nosync;
};

struct result {
    uint64_t batch, steps, commits, ns, bytes;
    double raw_steps_per_s, raw_bytes_per_commit;
};

static void append_usage(FILE *f)
{
    fprintf(f, "usage: loom-bench append [--machines N] [--initial-events E] [--seconds S]\n"
               "                         [--batches 1,10,100,1000] [--dir D] [--no-raw] [--json]\n"
               "                         [--unsafe-nosync]\n"
               "  defaults: 10000 machines with 10 events each, 2 s per batch size\n"
               "  --unsafe-nosync: no fsync (to split CPU from disk cost; not durable)\n");
}

static void parse_sizes(struct append_opts *o, char *list)
{
    o->n_sizes = 0;
    for (char *tok = strtok(list, ","); tok && o->n_sizes < MAX_SIZES; tok = strtok(NULL, ","))
        o->sizes[o->n_sizes++] = bench_parse_u64("--batches", tok, 1, LOOM_STORE_MAX_BATCH_STEPS);
}

static int parse(int argc, char **argv, struct append_opts *o)
{
    static const struct option longopts[] = {
        {"machines", required_argument, 0, 'n'}, {"initial-events", required_argument, 0, 'e'},
        {"seconds", required_argument, 0, 's'},  {"batches", required_argument, 0, 'b'},
        {"dir", required_argument, 0, 'd'},      {"json", no_argument, 0, 'j'},
        {"no-raw", no_argument, 0, 'r'},         {"help", no_argument, 0, 'h'},
        {"unsafe-nosync", no_argument, 0, 'u'},
        {0, 0, 0, 0}};
    *o = (struct append_opts){10000, 10, 2000, {1, 10, 100, 1000}, 4, NULL, false, true, false};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->machines = bench_parse_u64("--machines", optarg, 1, 10000000); break;
        case 'e': o->initial_events = bench_parse_u64("--initial-events", optarg, 0, 1000); break;
        case 's': o->seconds_ms = 1000 * bench_parse_u64("--seconds", optarg, 1, 600); break;
        case 'b': parse_sizes(o, optarg); break;
        case 'd': o->dir = optarg; break;
        case 'j': o->json = true; break;
        case 'r': o->raw = false; break;
        case 'u': o->nosync = true; break;
        case 'h': append_usage(stdout); exit(0);
        default: append_usage(stderr); return 2;
        }
    }
    return o->n_sizes ? 0 : 2;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "loom-bench append: %s: %s (%s)\n", what, loom_strerror(rc), loom_errdetail());
    return 1;
}

/* ------------------------------------------------------------ Loom */

struct loom_side {
    loom_store *s;
    loom_ns_id ns;
    char (*ids)[24];
    uint64_t *last; /* each machine's last event id */
    loom_machine_key *keys; /* as an engine knows them from its reads */
};

static int populate(struct loom_side *l, const struct append_opts *o, const char *dir)
{
    loom_store_opts fast = {.map_size_max = 1ull << 40,
                            .flags = LOOM_STORE_NOSYNC | LOOM_STORE_WRITEMAP};
    int rc = loom_store_open(&l->s, dir, &fast);
    if (rc == 0)
        rc = loom_store_ns_create(l->s, loom_slice_str("bench-append"), loom_slice_str(""), &l->ns);
    static uint8_t payload[EVENT_BYTES];
    loom_new_event *evs = calloc(o->initial_events + 1, sizeof *evs);
    loom_step *steps = calloc(1000, sizeof *steps);
    for (uint64_t e = 0; evs && e < o->initial_events; e++)
        evs[e] = (loom_new_event){1, loom_slice_of(payload, EVENT_BYTES)};
    for (uint64_t done = 0; rc == 0 && done < o->machines;) {
        size_t n = o->machines - done < 1000 ? (size_t)(o->machines - done) : 1000;
        for (size_t i = 0; i < n; i++)
            steps[i] = (loom_step){.ns = l->ns, .id = loom_slice_str(l->ids[done + i]),
                                   .create = true, .now_ms = bench_wall_ms(), .events = evs,
                                   .n_events = (uint32_t)o->initial_events};
        rc = loom_store_commit(l->s, steps, n);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = steps[i].result;
            l->keys[done + i] = steps[i].key;
        }
        done += n;
    }
    free(evs);
    free(steps);
    loom_store_close(l->s);
    l->s = NULL;
    if (rc != 0)
        return fail("populate", rc);
    /* --unsafe-nosync separates CPU cost from fsync cost; never a result. */
    loom_store_opts durable = {.map_size_max = 1ull << 40,
                               .flags = o->nosync ? LOOM_STORE_NOSYNC : 0};
    rc = loom_store_open(&l->s, dir, &durable);
    return rc ? fail("reopen durable", rc) : 0;
}

static int run_loom(struct loom_side *l, const struct append_opts *o, uint64_t batch,
                    struct result *res, uint64_t *rng)
{
    static uint8_t payload[EVENT_BYTES];
    loom_new_event ev = {1, loom_slice_of(payload, EVENT_BYTES)};
    loom_step *steps = calloc(batch, sizeof *steps);
    uint64_t *which = calloc(batch, sizeof *which);
    if (!steps || !which)
        return fail("alloc", LOOM_ENOMEM);
    *res = (struct result){.batch = batch};
    uint64_t start = bench_now_ns(), wchar0 = bench_proc_wchar();
    while (bench_now_ns() - start < o->seconds_ms * 1000000ull) {
        uint64_t now_ms = bench_wall_ms();
        for (uint64_t i = 0; i < batch; i++) {
            uint64_t m = bench_rand(rng) % o->machines;
            which[i] = m;
            steps[i] = (loom_step){.ns = l->ns, .id = loom_slice_str(l->ids[m]),
                                   .key_hint = l->keys[m],
                                   .expected_last_event_id = l->last[m], .now_ms = now_ms,
                                   .events = &ev, .n_events = 1};
            l->last[m]++;
        }
        int rc = loom_store_commit(l->s, steps, batch);
        for (uint64_t i = 0; rc == 0 && i < batch; i++)
            rc = steps[i].result;
        if (rc != 0) {
            free(steps);
            free(which);
            return fail("commit", rc);
        }
        res->steps += batch;
        res->commits++;
    }
    res->ns = bench_now_ns() - start;
    res->bytes = bench_proc_wchar() - wchar0;
    free(steps);
    free(which);
    return 0;
}

/* ------------------------------------------------------------ raw LMDB */

struct raw_side {
    MDB_env *env;
    MDB_dbi events, meta;
    uint64_t *last;
    uint8_t event_rec[128], meta_rec[256];
    size_t event_len, meta_len;
};

static int raw_put_machine(struct raw_side *r, MDB_txn *txn, uint64_t key, uint64_t n_events)
{
    uint8_t kb[16];
    loom__put_be64(kb, key + 1);
    MDB_val mk = {8, kb}, md = {r->meta_len, r->meta_rec};
    int rc = mdb_put(txn, r->meta, &mk, &md, 0);
    for (uint64_t e = 1; rc == 0 && e <= n_events; e++) {
        loom__key2(kb, key + 1, e);
        MDB_val k = {16, kb}, d = {r->event_len, r->event_rec};
        rc = mdb_put(txn, r->events, &k, &d, 0);
    }
    return rc;
}

static int raw_open(struct raw_side *r, const struct append_opts *o, const char *dir)
{
    static uint8_t payload[EVENT_BYTES];
    loom_new_event ev = {1, loom_slice_of(payload, EVENT_BYTES)};
    loom__event_encode(r->event_rec, 1, &ev, bench_wall_ms(), 0);
    r->event_len = loom__event_size(EVENT_BYTES);
    /* a meta record of the size Loom's take in this run */
    loom_machine m = {.id = loom_slice_str("m1234"), .status = LOOM_STATUS_WORKING,
                      .last_event_id = 30, .created_at_ms = bench_wall_ms(),
                      .updated_at_ms = bench_wall_ms(), .last_hash = 0x0123456789abcdefull,
                      .log_count = 5, .log_tail_seq = 1000000};
    r->meta_len = loom__meta_encode(r->meta_rec, &m);
    MDB_txn *txn;
    int rc = mdb_env_create(&r->env);
    if (rc == 0) {
        mdb_env_set_maxdbs(r->env, 4);
        mdb_env_set_mapsize(r->env, 16ull << 30);
        rc = mdb_env_open(r->env, dir, MDB_NOTLS | (o->nosync ? MDB_NOSYNC : 0), 0600);
    }
    if (rc == 0)
        rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc == 0 && (rc = mdb_dbi_open(txn, "events", MDB_CREATE, &r->events)) == 0)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &r->meta);
    for (uint64_t i = 0; rc == 0 && i < o->machines; i++)
        rc = raw_put_machine(r, txn, i, o->initial_events);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    for (uint64_t i = 0; i < o->machines; i++)
        r->last[i] = o->initial_events;
    return rc ? fail("raw populate", loom__mdb_err(rc, "raw")) : 0;
}

static int run_raw(struct raw_side *r, const struct append_opts *o, uint64_t batch,
                   struct result *res, uint64_t *rng)
{
    uint64_t start = bench_now_ns(), wchar0 = bench_proc_wchar(), steps = 0, commits = 0;
    while (bench_now_ns() - start < o->seconds_ms * 1000000ull) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
        for (uint64_t i = 0; rc == 0 && i < batch; i++) {
            uint64_t m = bench_rand(rng) % o->machines;
            uint8_t kb[16];
            loom__key2(kb, m + 1, ++r->last[m]);
            MDB_val k = {16, kb}, d = {r->event_len, r->event_rec};
            rc = mdb_put(txn, r->events, &k, &d, 0);
            MDB_val mk = {8, kb}, md = {r->meta_len, r->meta_rec};
            if (rc == 0)
                rc = mdb_put(txn, r->meta, &mk, &md, 0);
        }
        rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
        if (rc != 0)
            return fail("raw commit", loom__mdb_err(rc, "raw"));
        steps += batch;
        commits++;
    }
    uint64_t ns = bench_now_ns() - start;
    res->raw_steps_per_s = steps / (ns / 1e9);
    res->raw_bytes_per_commit = (double)(bench_proc_wchar() - wchar0) / (double)commits;
    return 0;
}

/* ------------------------------------------------------------ report */

static void report(const struct append_opts *o, const struct result *r, size_t n)
{
    if (!o->json)
        printf("append: %llu machines (%llu events each at start), one %d-byte event + meta "
               "rewrite per step, %s, %.0f s per batch size\n"
               "  %6s %12s %10s %12s %14s %10s %14s %7s\n",
               (unsigned long long)o->machines, (unsigned long long)o->initial_events,
               EVENT_BYTES, o->nosync ? "NO FSYNC (unsafe)" : "fsync per commit",
               o->seconds_ms / 1000.0, "batch", "steps/s", "commits/s",
               "ms/commit", "bytes/commit", "pages", "raw steps/s", "ratio");
    else
        printf("{\"bench\":\"append\",\"machines\":%llu,\"initial_events\":%llu,"
               "\"event_size\":%d,\"fsync\":%s,\"results\":[",
               (unsigned long long)o->machines, (unsigned long long)o->initial_events,
               EVENT_BYTES, o->nosync ? "false" : "true");
    for (size_t i = 0; i < n; i++) {
        double secs = r[i].ns / 1e9, sps = r[i].steps / secs, cps = r[i].commits / secs;
        double bpc = (double)r[i].bytes / (double)r[i].commits;
        double ratio = r[i].raw_steps_per_s > 0 ? sps / r[i].raw_steps_per_s : 0;
        if (o->json)
            printf("%s{\"batch\":%llu,\"steps_per_s\":%.0f,\"events_per_s\":%.0f,"
                   "\"commits_per_s\":%.1f,\"ms_per_commit\":%.3f,\"bytes_per_commit\":%.0f,"
                   "\"pages_per_commit\":%.1f,\"raw_steps_per_s\":%.0f,"
                   "\"raw_bytes_per_commit\":%.0f,\"ratio_to_raw\":%.3f}",
                   i ? "," : "", (unsigned long long)r[i].batch, sps, sps, cps, 1000.0 / cps,
                   bpc, bpc / 4096, r[i].raw_steps_per_s, r[i].raw_bytes_per_commit, ratio);
        else
            printf("  %6llu %12.0f %10.1f %12.3f %14.0f %10.1f %14.0f %7.2f\n",
                   (unsigned long long)r[i].batch, sps, cps, 1000.0 / cps, bpc, bpc / 4096,
                   r[i].raw_steps_per_s, ratio);
    }
    if (o->json)
        printf("]}\n");
}

static char *subdir(const char *base, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", base, name);
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        perror(p);
        exit(1);
    }
    return p;
}

int bench_append(int argc, char **argv)
{
    struct append_opts o;
    if (parse(argc, argv, &o) != 0) {
        append_usage(stderr);
        return 2;
    }
    char *scratch = o.dir ? NULL : bench_mkdtemp("loom-bench-append");
    const char *base = o.dir ? o.dir : scratch;
    char *loom_dir = subdir(base, "loom"), *raw_dir = subdir(base, "raw");
    struct loom_side l = {0};
    struct raw_side r = {0};
    l.ids = calloc(o.machines, 24);
    l.last = calloc(o.machines, sizeof *l.last);
    l.keys = calloc(o.machines, sizeof *l.keys);
    r.last = calloc(o.machines, sizeof *r.last);
    for (uint64_t i = 0; i < o.machines; i++) {
        snprintf(l.ids[i], 24, "m%llu", (unsigned long long)i);
        l.last[i] = o.initial_events;
    }
    struct result res[MAX_SIZES];
    int rc = populate(&l, &o, loom_dir);
    if (rc == 0 && o.raw)
        rc = raw_open(&r, &o, raw_dir);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; rc == 0 && i < o.n_sizes; i++) {
        rc = run_loom(&l, &o, o.sizes[i], &res[i], &rng);
        if (rc == 0 && o.raw)
            rc = run_raw(&r, &o, o.sizes[i], &res[i], &rng);
    }
    if (rc == 0)
        report(&o, res, o.n_sizes);
    loom_store_close(l.s);
    if (r.env)
        mdb_env_close(r.env);
    if (scratch)
        bench_rmtree(scratch);
    free(scratch);
    free(loom_dir);
    free(raw_dir);
    free(l.ids);
    free(l.last);
    free(l.keys);
    free(r.last);
    return rc;
}
