/* loom-batch-processor: the batch example as a standalone processor. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "example.h"

#define GRACE_MS 5000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loom-batch-processor [--listen ADDR] [--remote-delay-ms N] [--fail-rate P]\n"
            "                            [--object-fail-rate P] [--poll-interval-ms N]\n"
            "                            [--remote-polls N] [--seed S]\n"
            "  --listen ADDR           tcp:HOST:PORT or unix:PATH (default tcp:127.0.0.1:7102)\n"
            "  --remote-delay-ms N     simulated remote API latency (default 100)\n"
            "  --fail-rate P           probability the remote fails a whole batch (default 0)\n"
            "  --object-fail-rate P    probability the remote rejects one object (default 0)\n"
            "  --poll-interval-ms N    timer between polls while ongoing (default 500)\n"
            "  --remote-polls N        polls answered 'still running' first (default 2)\n"
            "  --seed S                simulation seed (default 1)\n");
}

static int parse(int argc, char **argv, batch_config *cfg, const char **listen)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"remote-delay-ms", required_argument, NULL, 'd'},
                                             {"fail-rate", required_argument, NULL, 'f'},
                                             {"object-fail-rate", required_argument, NULL, 'o'},
                                             {"poll-interval-ms", required_argument, NULL, 'p'},
                                             {"remote-polls", required_argument, NULL, 'n'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    uint64_t polls = cfg->remote_polls;
    int c, err = 0;
    while (err == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            *listen = optarg;
            break;
        case 'd':
            err = ex_flag_u64("remote-delay-ms", optarg, &cfg->remote_delay_ms);
            break;
        case 'f':
            err = ex_flag_rate("fail-rate", optarg, &cfg->fail_rate);
            break;
        case 'o':
            err = ex_flag_rate("object-fail-rate", optarg, &cfg->object_fail_rate);
            break;
        case 'p':
            err = ex_flag_u64("poll-interval-ms", optarg, &cfg->poll_interval_ms);
            break;
        case 'n':
            err = ex_flag_u64("remote-polls", optarg, &polls);
            break;
        case 's':
            err = ex_flag_u64("seed", optarg, &cfg->seed);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return LOOM_EINVALID_ARGUMENT;
        }
    }
    if (err == 0 && polls > 1000) {
        fprintf(stderr, "--remote-polls: at most 1000\n");
        err = LOOM_EINVALID_ARGUMENT;
    }
    cfg->remote_polls = (uint32_t)polls;
    return err != 0 || optind != argc ? LOOM_EINVALID_ARGUMENT : 0;
}

int main(int argc, char **argv)
{
    /* The config holds the content-type registry: static, not on the stack. */
    static batch_config cfg;
    batch_config_init(&cfg);
    const char *listen = "tcp:127.0.0.1:7102";
    if (parse(argc, argv, &cfg, &listen) != 0) {
        usage(stderr);
        return 2;
    }
    loom_proc *p;
    int err = loom_proc_create(NULL, NULL, &p);
    if (err == 0)
        err = batch_register(p, &cfg);
    if (err == 0)
        err = loom_proc_listen(p, listen);
    if (err != 0) {
        fprintf(stderr, "loom-batch-processor: %s: %s\n", loom_strerror(err), loom_errdetail());
        return 1;
    }
    fprintf(stderr, "loom-batch-processor: listening on %s\n", listen);
    err = loom_proc_run(p, GRACE_MS);
    if (err != 0) {
        fprintf(stderr, "loom-batch-processor: %s: %s\n", loom_strerror(err), loom_errdetail());
        return 1;
    }
    return 0;
}
