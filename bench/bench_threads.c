/* bench_threads: many threads alive at once, each allocating and freeing.
 *
 *   bench_threads THREADS [STEPS]
 *
 * Starts THREADS threads (128 KiB stacks) that wait until all exist, then
 * each does STEPS (default 2000) steps of replacing one of 16 live blocks
 * of 16..1024 bytes, frees its blocks and waits until all are done before
 * it exits.  Prints the wall time
 * from the first pthread_create to the last join.  The program links no
 * allocator: run it plain for glibc and with LD_PRELOAD for the others.
 * It measures what a program with more threads than libmmheap-malloc has
 * per-thread slots (1024) costs against one with fewer.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIVE 16

static pthread_barrier_t all_alive, all_done;
static long steps = 2000;

static void *worker(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    unsigned char *live[LIVE] = { 0 };
    pthread_barrier_wait(&all_alive);
    for (long s = 0; s < steps; s++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        unsigned i = (unsigned)(r % LIVE);
        size_t n = 16 + (size_t)(r >> 32) % 1009;
        free(live[i]);
        if (!(live[i] = malloc(n))) {
            fprintf(stderr, "bench_threads: malloc(%zu) failed\n", n);
            exit(2);
        }
        live[i][0] = live[i][n - 1] = (unsigned char)s;
    }
    for (unsigned i = 0; i < LIVE; i++)
        free(live[i]);
    pthread_barrier_wait(&all_done); /* no thread exits (freeing its slot) early */
    return NULL;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    if (argc > 2)
        steps = strtol(argv[2], NULL, 10);
    if (argc > 3 || n < 1 || n > 100000 || steps < 1) {
        fprintf(stderr, "usage: bench_threads THREADS(1..100000) [STEPS(>0)]\n");
        return 1;
    }
    pthread_t *tid = calloc((size_t)n, sizeof *tid);
    pthread_attr_t attr;
    if (!tid || pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, 128 << 10) != 0 ||
        pthread_barrier_init(&all_alive, NULL, (unsigned)n) != 0 ||
        pthread_barrier_init(&all_done, NULL, (unsigned)n) != 0) {
        fprintf(stderr, "bench_threads: setup failed\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        int e = pthread_create(&tid[i], &attr, worker, (void *)(uintptr_t)i);
        if (e != 0) {
            fprintf(stderr, "bench_threads: pthread_create (thread %ld): %s\n", i, strerror(e));
            return 2;
        }
    }
    for (long i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%ld threads, %ld steps each: %.3f s\n", n, steps,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(tid);
    return 0;
}
