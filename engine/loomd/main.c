/* loomd: the Loom daemon.
 *
 *   loomd --config FILE [--listen ADDR]... [--data-dir DIR]
 *         [--log-level error|warn|info|debug]
 *   loomd --config FILE [--data-dir DIR] --verify
 *
 * --verify checks every record of the store (CRCs, history chains,
 * indexes), prints each problem and exits 0 when the store is sound, 1
 * when it is not; it only reads, so it may run beside a live loomd.
 *
 * Flags override the file (--listen given at least once replaces the
 * file's list). Exit codes: 0 ok (also after SIGTERM/SIGINT), 2 bad
 * configuration or arguments, 1 other fatal errors. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "loom/engine.h"
#include "loom/store.h"

#define MAX_LISTEN_FLAGS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: loomd --config FILE [--listen ADDR]... [--data-dir DIR]\n"
               "             [--log-level error|warn|info|debug]\n"
               "       loomd --config FILE [--data-dir DIR] --verify\n");
}

typedef struct flags {
    const char *config;
    char *listen[MAX_LISTEN_FLAGS];
    size_t n_listen;
    const char *data_dir;
    const char *log_level;
    bool verify;
} flags;

static int parse_flags(int argc, char **argv, flags *f)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"verify", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:l:d:v:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            f->config = optarg;
            break;
        case 'l':
            if (f->n_listen == MAX_LISTEN_FLAGS) {
                fprintf(stderr, "loomd: at most %d --listen\n", MAX_LISTEN_FLAGS);
                return 2;
            }
            f->listen[f->n_listen++] = optarg;
            break;
        case 'd':
            f->data_dir = optarg;
            break;
        case 'v':
            f->log_level = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            f->verify = true;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !f->config) {
        usage(stderr);
        return 2;
    }
    return -1;
}

static int apply_flags(const flags *f, loom_config *cfg)
{
    if (f->n_listen && loom_config_set_listen(cfg, f->listen, f->n_listen))
        return -1;
    if (f->data_dir && loom_config_set_string(&cfg->data_dir, f->data_dir))
        return -1;
    if (f->log_level && loom_log_level_parse(f->log_level, &cfg->log_level))
        return -1;
    return loom_config_check(cfg);
}

static void print_problem(void *user, const loom_verify_problem *p)
{
    size_t *n = user;
    (*n)++;
    fprintf(stderr, "loomd: verify: %s: machine %llu item %llu: %s: %s\n", p->table,
            (unsigned long long)p->key.v, (unsigned long long)p->item, loom_err_name(p->err),
            p->detail ? p->detail : "");
}

static int verify_store(const loom_config *cfg)
{
    loom_store *s;
    loom_store_opts o = {0};
    o.map_size_initial = cfg->map_size_initial_mb << 20;
    o.map_size_max = cfg->map_size_max_mb << 20;
    int rc = loom_store_open(&s, cfg->data_dir, &o);
    if (rc) {
        fprintf(stderr, "loomd: cannot open store %s: %s\n", cfg->data_dir, loom_errdetail());
        return 1;
    }
    size_t reported = 0;
    int bad = loom_store_verify(s, print_problem, &reported);
    loom_store_close(s);
    if (bad < 0) {
        fprintf(stderr, "loomd: verify could not run: %s\n", loom_errdetail());
        return 1;
    }
    printf("loomd: verify %s: %d problem(s)\n", cfg->data_dir, bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    flags f = {0};
    int rc = parse_flags(argc, argv, &f);
    if (rc >= 0)
        return rc;
    /* a client that vanishes mid-write must not kill the daemon */
    signal(SIGPIPE, SIG_IGN);
    loom_config cfg;
    rc = loom_config_load(f.config, &cfg);
    if (rc) {
        fprintf(stderr, "loomd: %s\n", loom_errdetail());
        return 2;
    }
    if (f.verify) {
        if (f.data_dir && loom_config_set_string(&cfg.data_dir, f.data_dir)) {
            loom_config_free(&cfg);
            return 1;
        }
        rc = cfg.data_dir ? verify_store(&cfg) : 2;
        if (!cfg.data_dir)
            fprintf(stderr, "loomd: no data directory (data_dir: or --data-dir)\n");
        loom_config_free(&cfg);
        return rc;
    }
    if (apply_flags(&f, &cfg)) {
        fprintf(stderr, "loomd: %s\n", loom_errdetail());
        loom_config_free(&cfg);
        return 2;
    }
    /* SIGTERM/SIGINT wait (pending) until loom_engine_run has its
     * handlers: loomd accepts connections before the loop runs, and a
     * SIGTERM in between must still mean a graceful stop */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    loom_engine *e;
    rc = loom_engine_open(&e, &cfg);
    loom_config_free(&cfg);
    if (rc) {
        loom_log(LOOM_LOG_ERROR, "cannot start: %s: %s", loom_err_name(rc), loom_errdetail());
        return rc == LOOM_EINVALID_ARGUMENT ? 2 : 1;
    }
    rc = loom_engine_run(e, true);
    loom_engine_close(e);
    return rc ? 1 : 0;
}
