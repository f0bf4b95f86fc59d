/* loom-payment-processor: the payment example as a standalone processor. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "example.h"
#include "payment.h"

#define GRACE_MS 5000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loom-payment-processor [--listen ADDR] [--provider-delay-ms N]\n"
            "                              [--fail-rate P] [--seed S]\n"
            "  --listen ADDR          tcp:HOST:PORT or unix:PATH (default tcp:127.0.0.1:7101)\n"
            "  --provider-delay-ms N  simulated provider latency and poll period (default 200)\n"
            "  --fail-rate P          probability in [0,1] that a payment is declined (default 0)\n"
            "  --seed S               simulation seed (default 1)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"provider-delay-ms", required_argument, NULL, 'd'},
                                             {"fail-rate", required_argument, NULL, 'f'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    payment_config cfg;
    payment_config_init(&cfg);
    const char *listen = "tcp:127.0.0.1:7101";
    int c, err = 0;
    while (err == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'd':
            err = ex_flag_u64("provider-delay-ms", optarg, &cfg.provider_delay_ms);
            break;
        case 'f':
            err = ex_flag_rate("fail-rate", optarg, &cfg.fail_rate);
            break;
        case 's':
            err = ex_flag_u64("seed", optarg, &cfg.seed);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (err != 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    loom_proc *p;
    err = loom_proc_create(NULL, NULL, &p);
    if (err == 0)
        err = payment_register(p, &cfg);
    if (err == 0)
        err = loom_proc_listen(p, listen);
    if (err != 0) {
        fprintf(stderr, "loom-payment-processor: %s: %s\n", loom_strerror(err), loom_errdetail());
        return 1;
    }
    fprintf(stderr, "loom-payment-processor: listening on %s\n", listen);
    err = loom_proc_run(p, GRACE_MS);
    if (err != 0) {
        fprintf(stderr, "loom-payment-processor: %s: %s\n", loom_strerror(err), loom_errdetail());
        return 1;
    }
    return 0;
}
