/* benchutil.h: helpers shared by the benchmark programs (bench_alloc,
 * bench_persist, bench_snapshot, bench_malloc, and bench_names, which is
 * C++: the header compiles as both).
 *
 * Include it after the system headers, with BENCH_NAME defined to the
 * program's name (the prefix of the messages of die and die_errno).  All
 * of it is static: each program gets its own copy, and what it does not
 * use costs nothing.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmheap.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME (the program's name) before including benchutil.h"
#endif

/* ---- errors ------------------------------------------------------------ */

/* what failed, with mmheap's message for the last failed call; exit 2. */
static inline void die(const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, mmh_errmsg());
    exit(2);
}

/* what failed, with errno's message; exit 2. */
static inline void die_errno(const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(errno));
    exit(2);
}

/* The last branch of an option loop, for an argument a that no option
 * took: -h or --help prints the usage on stdout and gives 0; anything else
 * is reported on stderr with unknown_fmt (a printf format for a), then the
 * usage, and gives 1.  The caller returns what it gives. */
static inline int help_or_unknown(const char *a, void (*usage)(FILE *), const char *unknown_fmt)
    __attribute__((format(printf, 3, 0)));
static inline int help_or_unknown(const char *a, void (*usage)(FILE *), const char *unknown_fmt)
{
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, unknown_fmt, a);
    usage(stderr);
    return 1;
}

/* ---- time -------------------------------------------------------------- */

static inline uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* ---- random numbers ---------------------------------------------------- */

/* wyrand's state: a fixed seed, so every run draws the same numbers; a
 * program may set it to start a sequence again. */
static uint64_t g_rng __attribute__((unused)) = 0x9e3779b97f4a7c15ull;

/* The next number from the sequence in *state: threads each keep their own. */
static inline uint64_t wyrand_next(uint64_t *state)
{
    *state += 0xa0761d6478bd642full;
    __uint128_t t = (__uint128_t)*state * (*state ^ 0xe7037ed1a0b428dbull);
    return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

static inline uint64_t wyrand(void)
{
    return wyrand_next(&g_rng);
}

/* ---- statistics -------------------------------------------------------- */

/* write_bytes of /proc/self/io: the bytes this process caused to be
 * written to storage (0 where the kernel does not count them). */
static inline uint64_t write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of the n values in v, which it sorts; -1 if n is 0. */
static inline double sort_median(double *v, size_t n)
{
    if (n == 0)
        return -1;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
