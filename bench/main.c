/* loom-bench: one binary, one subcommand per measured path. Adding one is
 * a line in the table below and a source in bench/CMakeLists.txt. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const struct {
    const char *name;
    bench_fn fn;
    const char *help;
} commands[] = {
    {"fold", bench_fold, "history read + decode + checks + fold vs the raw LMDB cursor walk"},
    {"append", bench_append, "durable group-commit steps/s and pages written per commit"},
    {"steps", bench_steps, "end-to-end durable steps/s and call latency through the engine"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: loom-bench COMMAND [options]   (COMMAND --help for its options)\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "loom-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
