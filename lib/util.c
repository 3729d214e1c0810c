/* Small system utilities, each async-signal-safe (a forked child of a
 * threaded process calls them): time, randomness, the file size limit. */
#include "internal.h"

#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

uint64_t mmh_now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds, for the age of free memory: coarse (cheap, a few ms
 * behind); wraps, so ages are differences. */
uint32_t mmh_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

uint64_t mmh_random_u64(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
        return r;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
}

/* Would a file of `size` bytes exceed RLIMIT_FSIZE?  Writing past it raises
 * SIGXFSZ, which kills the process by default: check first. */
bool mmh_beyond_fsize_limit(size_t size)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
           (rlim_t)size > rl.rlim_cur;
}
