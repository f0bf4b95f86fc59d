/* Helpers shared by the loom-bench subcommands. */
#ifndef LOOM_BENCH_H
#define LOOM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A subcommand: argc/argv start at the subcommand's name. Returns the
 * process exit code. */
typedef int (*bench_fn)(int argc, char **argv);

int bench_fold(int argc, char **argv);
int bench_append(int argc, char **argv);
int bench_steps(int argc, char **argv);

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);
/* Wall clock in unix milliseconds, as an engine stamps its steps (the
 * width of these numbers is part of every record's size). */
uint64_t bench_wall_ms(void);
/* xorshift64*: fast, seeded, good enough to pick random machines. */
uint64_t bench_rand(uint64_t *state);
/* Bytes this process passed to write(2)-family calls so far (wchar of
 * /proc/self/io): LMDB writes its dirty pages with pwrite, so the delta
 * over a commit is the bytes that commit wrote. 0 if unavailable. */
uint64_t bench_proc_wchar(void);
/* Parses a positive integer option value; exits with a message if bad. */
uint64_t bench_parse_u64(const char *opt, const char *value, uint64_t min, uint64_t max);
/* A scratch directory under $TMPDIR (or /tmp); malloc'ed path. */
char *bench_mkdtemp(const char *prefix);
/* Removes a directory tree (the scratch directories made above). */
void bench_rmtree(const char *path);
/* Shuffles a[0..n) in place. */
void bench_shuffle(uint64_t *a, size_t n, uint64_t *rng);

#endif
