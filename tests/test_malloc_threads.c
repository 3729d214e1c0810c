/* test_malloc_threads: the drop-in malloc under threads, fork and thread
 * exit.
 *
 *  - threads allocate, hand blocks to each other and free (and realloc)
 *    blocks other threads allocated;
 *  - fork() while other threads allocate in loops: the child (from the main
 *    thread, and from a thread that is not main) frees the other threads'
 *    blocks, allocates, starts a thread, and exits 0 within a deadline;
 *  - more threads alive at once than the allocator has per-thread slots;
 *    2,000 of them allocating and freeing all the time, within a deadline
 *    far above what it takes (threads beyond the slots once retried in
 *    sched_yield loops: 28 s where 1,000 threads took 0.5 s);
 *  - thread exit: destructors of a pthread key created after the allocator
 *    came up (so they run after any the allocator registered at its start)
 *    free and allocate, including a _Thread_local block; thousands of
 *    short-lived threads must not leak blocks, memory or per-thread state;
 *  - mmh_snapshot of the whole malloc heap (mmh_default_heap) while another
 *    thread allocates and frees: the image holds the program's data as it
 *    was at the call.
 *
 * Linked to libmmheap-malloc by make check; also passes against glibc (see
 * test_malloc.c).
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

static uint64_t blk_seed(const void *p, size_t n)
{
    return (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull ^ n;
}

/* ------------------------------------------------- cross-thread frees */

#define XTHREADS 4
#define XLIVE    256
#define XCAP     2048

struct blk {
    unsigned char *p;
    size_t n;
};

/* Blocks handed between threads. */
static struct {
    pthread_mutex_t mu;
    struct blk items[XCAP];
    size_t n;
} xchg = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct xarg {
    int id;
    long ops;
    long handed, taken;
    char why[256];      /* empty unless the thread failed */
};

/* A block of n bytes by malloc, calloc (checked for zeroes: it may reuse
 * memory another thread wrote and freed) or aligned_alloc; NULL with why
 * filled on failure. */
static unsigned char *x_alloc(struct xarg *a, tu_rng *rng, size_t n)
{
    unsigned char *p;
    switch (tu_rand(rng) % 8) {
    case 0:
        p = calloc(1, n);
        if (p && !tu_all_bytes(p, n, 0)) {
            snprintf(a->why, sizeof a->why, "thread %d: calloc(1, %zu) not zeroed", a->id, n);
            free(p);
            return NULL;
        }
        break;
    case 1:
        p = aligned_alloc((size_t)64 << (tu_rand(rng) % 8), n);
        break;
    default:
        p = malloc(n);
    }
    if (!p && !a->why[0])
        snprintf(a->why, sizeof a->why, "thread %d: allocating %zu failed", a->id, n);
    return p;
}

/* Checks b and frees it, or reallocs it (blocks of other threads too) and
 * keeps the result in *b.  Returns 0 with why filled on a mismatch. */
static int x_release(struct xarg *a, tu_rng *rng, struct blk *b, int may_keep)
{
    size_t bad = tu_check(b->p, b->n, blk_seed(b->p, b->n));
    if (bad != (size_t)-1) {
        snprintf(a->why, sizeof a->why, "thread %d: block %p (%zu bytes) corrupt at %zu",
                 a->id, (void *)b->p, b->n, bad);
        return 0;
    }
    if (may_keep && tu_rand(rng) % 4 == 0) {
        size_t n = tu_rand_log(rng, 1, 64 * KiB);
        uint64_t seed = blk_seed(b->p, b->n);
        unsigned char *q = realloc(b->p, n);
        if (!q || tu_check(q, n < b->n ? n : b->n, seed) != (size_t)-1) {
            snprintf(a->why, sizeof a->why, "thread %d: realloc(%p, %zu) = %p lost contents",
                     a->id, (void *)b->p, n, (void *)q);
            return 0;
        }
        b->p = q;
        b->n = n;
        tu_fill(q, n, blk_seed(q, n));
        return 1;
    }
    free(b->p);
    b->p = NULL;
    return 1;
}

static void *x_worker(void *argp)
{
    struct xarg *a = argp;
    tu_rng rng = { tu_test_seed(0x77) + (uint64_t)a->id };
    struct blk live[XLIVE];
    size_t nlive = 0;
    for (long op = 0; op < a->ops; op++) {
        unsigned r = (unsigned)(tu_rand(&rng) % 100);
        if (nlive == 0 || (r < 45 && nlive < XLIVE)) {
            size_t n = tu_rand(&rng) % 1000 ? tu_rand_log(&rng, 1, 64 * KiB)
                                            : tu_rand_log(&rng, 64 * KiB, 2 * MiB);
            unsigned char *p = x_alloc(a, &rng, n);
            if (!p)
                return NULL;
            tu_fill(p, n, blk_seed(p, n));
            live[nlive++] = (struct blk){ p, n };
        } else if (r < 80) {
            size_t i = tu_rand_range(&rng, 0, nlive - 1);
            if (!x_release(a, &rng, &live[i], 1))
                return NULL;
            if (!live[i].p)
                live[i] = live[--nlive];
        } else if (r < 90) {
            size_t i = tu_rand_range(&rng, 0, nlive - 1);
            pthread_mutex_lock(&xchg.mu);
            int room = xchg.n < XCAP;
            if (room)
                xchg.items[xchg.n++] = live[i];
            pthread_mutex_unlock(&xchg.mu);
            if (room) {
                live[i] = live[--nlive];
                a->handed++;
            }
        } else {
            struct blk got[4];
            int ng = 0;
            pthread_mutex_lock(&xchg.mu);
            while (ng < 4 && xchg.n > 0)
                got[ng++] = xchg.items[--xchg.n];
            pthread_mutex_unlock(&xchg.mu);
            for (int k = 0; k < ng; k++) {
                a->taken++;
                if (!x_release(a, &rng, &got[k], nlive < XLIVE))
                    return NULL;
                if (got[k].p)
                    live[nlive++] = got[k];
            }
        }
    }
    for (size_t i = 0; i < nlive; i++)
        if (!x_release(a, &rng, &live[i], 0))
            return NULL;
    return NULL;
}

static void test_cross_thread_frees(void **state)
{
    (void)state;
    size_t used0, used1, footprint;
    tu_malloc_usage(&used0, &footprint);
    struct xarg args[XTHREADS];
    pthread_t th[XTHREADS];
    for (int i = 0; i < XTHREADS; i++) {
        args[i] = (struct xarg){ .id = i, .ops = tu_scaled(150000, 3000) };
        assert_int_equal(pthread_create(&th[i], NULL, x_worker, &args[i]), 0);
    }
    long handed = 0, taken = 0;
    for (int i = 0; i < XTHREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (args[i].why[0])
            fail_msg("%s", args[i].why);
        handed += args[i].handed;
        taken += args[i].taken;
    }
    assert_true(taken > handed / 2);
    /* the rest of the exchange is freed by the main thread, which allocated
     * none of it */
    struct xarg me = { .id = -1 };
    tu_rng rng = { 1 };
    for (size_t i = 0; i < xchg.n; i++)
        if (!x_release(&me, &rng, &xchg.items[i], 0))
            fail_msg("%s", me.why);
    xchg.n = 0;
    tu_malloc_usage(&used1, &footprint);
    if (used1 > used0 + 256 * KiB)
        fail_msg("in use %zu before the threads, %zu after every block was freed",
                 used0, used1);
}

/* ---------------------------------------------------------------- fork */

#define FTHREADS 3
#define PARKED   16

/* Blocks each worker allocated before the forks and keeps untouched: the
 * children free them, though their owners do not exist there. */
static struct blk parked[FTHREADS][PARKED];
static atomic_int fork_workers_ready;
static atomic_int fork_stop;

static void *fork_worker(void *argp)
{
    int id = (int)(intptr_t)argp;
    tu_rng rng = { 0xf0 + (uint64_t)id };
    for (int k = 0; k < PARKED; k++) {
        size_t n = tu_rand_log(&rng, 1, k < 2 ? 4 * MiB : 16 * KiB);
        unsigned char *p = malloc(n);
        if (!p)
            abort();
        tu_fill(p, n, blk_seed(p, n));
        parked[id][k] = (struct blk){ p, n };
    }
    atomic_fetch_add(&fork_workers_ready, 1);
    /* allocate and free in a loop until told to stop, so forks land while
     * the allocator is busy, in every size range */
    void *ring[64] = { 0 };
    for (unsigned long i = 0; !atomic_load(&fork_stop); i++) {
        unsigned slot = (unsigned)(tu_rand(&rng) % 64);
        free(ring[slot]);
        size_t n = i % 97 ? tu_rand_log(&rng, 1, 32 * KiB) : tu_rand_log(&rng, 256 * KiB, 3 * MiB);
        ring[slot] = malloc(n);
        if (!ring[slot])
            abort();
        memset(ring[slot], (int)i, n < 256 ? n : 256);
    }
    for (int k = 0; k < 64; k++)
        free(ring[k]);
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        char *p = malloc((size_t)(i % 50 + 1) * 100);
        if (!p)
            return (void *)1;
        memset(p, 1, (size_t)(i % 50 + 1) * 100);
        free(p);
    }
    return NULL;
}

/* In the child: the parked blocks (owned by threads the child does not
 * have) are intact and freeable, and allocating works in this thread and
 * in a new one.  An alarm turns a deadlock into a failure. */
static int fork_child_body(void *arg)
{
    (void)arg;
    alarm(20);
    for (int t = 0; t < FTHREADS; t++) {
        for (int k = 0; k < PARKED; k++) {
            struct blk *b = &parked[t][k];
            CK(tu_verify(b->p, b->n, blk_seed(b->p, b->n)));
            free(b->p);
        }
    }
    tu_rng rng = { (uint64_t)getpid() };
    void *held[128] = { 0 };
    for (int i = 0; i < 4000; i++) {
        unsigned slot = (unsigned)(tu_rand(&rng) % 128);
        size_t n = tu_rand_log(&rng, 1, i % 200 ? 64 * KiB : 4 * MiB);
        free(held[slot]);
        held[slot] = i % 5 ? malloc(n) : calloc(1, n);
        CK(held[slot] != NULL);
        CK(i % 5 || tu_all_bytes(held[slot], n, 0));
        tu_fill(held[slot], n, (uint64_t)i);
        CK(tu_verify(held[slot], n, (uint64_t)i));
    }
    for (int i = 0; i < 128; i++)
        free(held[i]);
    pthread_t th;
    void *ret = (void *)1;
    CK(pthread_create(&th, NULL, child_thread, NULL) == 0);
    CK(pthread_join(th, &ret) == 0);
    CK(ret == NULL);
    return 0;
}

static void check_fork_child(void)
{
    int st = tu_run_child(fork_child_body, NULL);
    if (st == -1)
        fail_msg("fork/wait: %s", strerror(errno));
    if (WIFSIGNALED(st))
        fail_msg("child killed by signal %d%s", WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? " (deadlocked)" : "");
    if (WEXITSTATUS(st) != 0)
        fail_msg("child exited with status %d", WEXITSTATUS(st));
}

/* Forks from a thread that is not the main one, and exits. */
static void *forking_thread(void *arg)
{
    (void)arg;
    check_fork_child();
    return NULL;
}

static void test_fork_while_allocating(void **state)
{
    (void)state;
    pthread_t th[FTHREADS];
    atomic_store(&fork_stop, 0);
    atomic_store(&fork_workers_ready, 0);
    for (int i = 0; i < FTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, fork_worker, (void *)(intptr_t)i), 0);
    while (atomic_load(&fork_workers_ready) < FTHREADS)
        sched_yield();

    long rounds = tu_scaled(40, 6);
    for (long r = 0; r < rounds; r++) {
        if (r % 2) {
            pthread_t f;
            assert_int_equal(pthread_create(&f, NULL, forking_thread, NULL), 0);
            assert_int_equal(pthread_join(f, NULL), 0);
        } else {
            check_fork_child();
        }
    }

    atomic_store(&fork_stop, 1);
    for (int i = 0; i < FTHREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* the parent's copies of the parked blocks were never touched */
    for (int t = 0; t < FTHREADS; t++) {
        for (int k = 0; k < PARKED; k++) {
            struct blk *b = &parked[t][k];
            assert_pattern(b->p, b->n, blk_seed(b->p, b->n));
            free(b->p);
        }
    }
}

/* ----------------------------------------------- more threads than slots */

/* The allocator may keep per-thread state in a fixed table (mmheap: 1024
 * slots); more threads than that, all alive at once, must still allocate,
 * and free each other's blocks. */
#define CROWD_BLOCKS 4

static pthread_barrier_t crowd_all_allocated, crowd_all_freed;
static struct blk (*crowd)[CROWD_BLOCKS];
static long crowd_size;

static void *crowd_member(void *arg)
{
    long id = (long)(intptr_t)arg;
    static const size_t sizes[CROWD_BLOCKS] = { 24, 700, 5000, 20000 };
    for (int k = 0; k < CROWD_BLOCKS; k++) {
        unsigned char *p = malloc(sizes[k]);
        if (!p)
            return (void *)1;
        tu_fill(p, sizes[k], blk_seed(p, sizes[k]));
        crowd[id][k] = (struct blk){ p, sizes[k] };
    }
    pthread_barrier_wait(&crowd_all_allocated);
    /* free the next thread's blocks */
    struct blk *b = crowd[(id + 1) % crowd_size];
    void *ret = NULL;
    for (int k = 0; k < CROWD_BLOCKS; k++) {
        if (!tu_verify(b[k].p, b[k].n, blk_seed(b[k].p, b[k].n)))
            ret = (void *)1;
        free(b[k].p);
    }
    pthread_barrier_wait(&crowd_all_freed);
    return ret;
}

static void test_more_threads_than_slots(void **state)
{
    (void)state;
    crowd_size = tu_scaled(1100, 40);
    size_t used0, used1, footprint;
    tu_malloc_usage(&used0, &footprint);
    crowd = calloc((size_t)crowd_size, sizeof *crowd);
    pthread_t *th = calloc((size_t)crowd_size, sizeof *th);
    assert_non_null(crowd);
    assert_non_null(th);
    assert_int_equal(pthread_barrier_init(&crowd_all_allocated, NULL, (unsigned)crowd_size), 0);
    assert_int_equal(pthread_barrier_init(&crowd_all_freed, NULL, (unsigned)crowd_size), 0);
    pthread_attr_t attr;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 128 * KiB), 0);
    for (long i = 0; i < crowd_size; i++)
        if (pthread_create(&th[i], &attr, crowd_member, (void *)(intptr_t)i) != 0)
            fail_msg("creating thread %ld of %ld failed", i, crowd_size);
    long bad = 0;
    for (long i = 0; i < crowd_size; i++) {
        void *ret = NULL;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        bad += ret != NULL;
    }
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&crowd_all_allocated);
    pthread_barrier_destroy(&crowd_all_freed);
    free(crowd);
    free(th);
    if (bad)
        fail_msg("%ld of %ld threads failed to allocate or found a block corrupt", bad,
                 crowd_size);
    tu_malloc_usage(&used1, &footprint);
    if (used1 > used0 + 256 * KiB)
        fail_msg("in use %zu before the threads, %zu after", used0, used1);
}

/* 2,000 threads alive at once, each replacing its HORDE_LIVE blocks over
 * and over.  Halfway, with every thread holding its blocks, main checks that
 * no two live blocks overlap; each block carries its owner's pattern until
 * freed; the counts of mallocs and frees match.  The deadline is for a
 * crawl, not a speed target (bench/bench_threads measures that): threads
 * past it stop early and the test fails. */
#define HORDE_LIVE  8
#define HORDE_STEPS 2000
#define HORDE_DEADLINE_S 15

static pthread_barrier_t horde_half, horde_checked, horde_done;
static struct blk (*horde)[HORDE_LIVE];
static atomic_long horde_mallocs, horde_frees, horde_late;
static struct timespec horde_deadline;

static bool horde_past_deadline(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > horde_deadline.tv_sec ||
           (now.tv_sec == horde_deadline.tv_sec && now.tv_nsec > horde_deadline.tv_nsec);
}

/* Replace block b by a new one of n bytes; false on a failure. */
static bool horde_replace(struct blk *b, size_t n)
{
    if (b->p) {
        if (!tu_verify(b->p, b->n, blk_seed(b->p, b->n)))
            return false;
        free(b->p);
        horde_frees++;
    }
    if (!(b->p = malloc(n)))
        return false;
    horde_mallocs++;
    b->n = n;
    tu_fill(b->p, n, blk_seed(b->p, n));
    return true;
}

static void *horde_member(void *arg)
{
    long id = (long)(intptr_t)arg;
    tu_rng rng = { (uint64_t)id * 2 + 1 };
    struct blk *mine = horde[id];
    void *ret = NULL;
    bool stopped = false; /* by a failure or the deadline: still meet the others */
    for (long s = 0; s < HORDE_STEPS; s++) {
        if (s == HORDE_STEPS / 2) {
            pthread_barrier_wait(&horde_half); /* main checks the live blocks */
            pthread_barrier_wait(&horde_checked);
        }
        if (stopped)
            continue;
        if (s % 64 == 0 && horde_past_deadline()) {
            horde_late++;
            stopped = true;
        } else if (!horde_replace(&mine[tu_rand(&rng) % HORDE_LIVE],
                                  tu_rand_log(&rng, 8, 2048))) {
            ret = (void *)1;
            stopped = true;
        }
    }
    for (int k = 0; k < HORDE_LIVE; k++) {
        if (mine[k].p && !tu_verify(mine[k].p, mine[k].n, blk_seed(mine[k].p, mine[k].n)))
            ret = (void *)1;
        free(mine[k].p);
        horde_frees += mine[k].p != NULL;
    }
    pthread_barrier_wait(&horde_done); /* nobody exits (and frees a slot) early */
    return ret;
}

static void test_thousands_of_threads(void **state)
{
    (void)state;
    long n = tu_scaled(2000, 40);
    size_t used0, used1, footprint;
    tu_malloc_usage(&used0, &footprint);
    horde = calloc((size_t)n, sizeof *horde);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    tu_span *spans = calloc((size_t)n * HORDE_LIVE, sizeof *spans);
    assert_non_null(horde);
    assert_non_null(th);
    assert_non_null(spans);
    /* main meets the threads halfway */
    assert_int_equal(pthread_barrier_init(&horde_half, NULL, (unsigned)n + 1), 0);
    assert_int_equal(pthread_barrier_init(&horde_checked, NULL, (unsigned)n + 1), 0);
    assert_int_equal(pthread_barrier_init(&horde_done, NULL, (unsigned)n), 0);
    pthread_attr_t attr;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 128 * KiB), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    horde_deadline = t0;
    horde_deadline.tv_sec += (time_t)(HORDE_DEADLINE_S / test_scale());
    for (long i = 0; i < n; i++)
        if (pthread_create(&th[i], &attr, horde_member, (void *)(intptr_t)i) != 0)
            fail_msg("creating thread %ld of %ld failed", i, n);

    pthread_barrier_wait(&horde_half);
    size_t ns = 0;
    for (long i = 0; i < n; i++)
        for (int k = 0; k < HORDE_LIVE; k++)
            if (horde[i][k].p)
                spans[ns++] = (tu_span){ (uintptr_t)horde[i][k].p,
                                         (uintptr_t)horde[i][k].p + horde[i][k].n };
    long overlap = tu_spans_sort_check(spans, ns);
    pthread_barrier_wait(&horde_checked);

    long bad = 0;
    for (long i = 0; i < n; i++) {
        void *ret = NULL;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        bad += ret != NULL;
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&horde_half);
    pthread_barrier_destroy(&horde_checked);
    pthread_barrier_destroy(&horde_done);
    free(horde);
    free(th);
    free(spans);
    if (overlap >= 0)
        fail_msg("two live blocks of different threads overlap");
    if (bad)
        fail_msg("%ld of %ld threads failed to allocate or found a block corrupt", bad, n);
    if (horde_late)
        fail_msg("%ld threads took more than %d s (%ld threads stopped early; %.1f s in all)", n,
                 HORDE_DEADLINE_S, (long)horde_late,
                 (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    assert_int_equal(horde_mallocs, horde_frees);
    tu_malloc_usage(&used1, &footprint);
    if (used1 > used0 + 256 * KiB)
        fail_msg("in use %zu before the threads, %zu after", used0, used1);
}

/* --------------------------------------------------------- thread exit */

#define BLOCK_IN_KEY 500
#define BLOCK_IN_TLS 3000

static pthread_key_t late_key;
static _Thread_local unsigned char *tls_block;
static _Thread_local int dtor_rounds;
static atomic_long dtor_calls;
static atomic_int dtor_failures;

/* Runs at thread exit, after any destructor the allocator registered when
 * it started (keys run in creation order): frees the key's block and the
 * _Thread_local one, allocates and frees, and the first time sets the key
 * again, so a second round runs. */
static void late_dtor(void *v)
{
    atomic_fetch_add(&dtor_calls, 1);
    if (!tu_verify(v, BLOCK_IN_KEY, blk_seed(v, BLOCK_IN_KEY)))
        atomic_fetch_add(&dtor_failures, 1);
    free(v);
    if (tls_block) {
        if (!tu_verify(tls_block, BLOCK_IN_TLS, blk_seed(tls_block, BLOCK_IN_TLS)))
            atomic_fetch_add(&dtor_failures, 1);
        free(tls_block);
        tls_block = NULL;
    }
    size_t n = 20000;
    char *tmp = malloc(n);
    if (!tmp) {
        atomic_fetch_add(&dtor_failures, 1);
        return;
    }
    memset(tmp, 3, n);
    free(tmp);
    if (dtor_rounds++ == 0) {
        unsigned char *again = malloc(BLOCK_IN_KEY);
        if (!again) {
            atomic_fetch_add(&dtor_failures, 1);
            return;
        }
        tu_fill(again, BLOCK_IN_KEY, blk_seed(again, BLOCK_IN_KEY));
        pthread_setspecific(late_key, again);
    }
}

static void *short_lived(void *arg)
{
    (void)arg;
    /* blocks in several size classes, so that state the allocator keeps
     * per thread and per class would show if a thread's exit leaked it */
    static const size_t sizes[] = { 16, 48, 100, 256, 1000, 5000, 40000, 200000 };
    void *b[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        b[i] = malloc(sizes[i]);
        if (!b[i])
            return (void *)1;
        memset(b[i], 1, sizes[i]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i += 2)
        free(b[i]);
    /* the others are freed by the main thread after the join */
    tls_block = malloc(BLOCK_IN_TLS);
    unsigned char *k = malloc(BLOCK_IN_KEY);
    if (!tls_block || !k)
        return (void *)1;
    tu_fill(tls_block, BLOCK_IN_TLS, blk_seed(tls_block, BLOCK_IN_TLS));
    tu_fill(k, BLOCK_IN_KEY, blk_seed(k, BLOCK_IN_KEY));
    pthread_setspecific(late_key, k);
    void **left = malloc(sizeof b / 2);
    if (!left)
        return (void *)1;
    for (size_t i = 1, j = 0; i < sizeof sizes / sizeof sizes[0]; i += 2)
        left[j++] = b[i];
    return left;
}

/* Runs at least n threads, WAVE at a time; returns how many ran. */
static long run_short_lived(long n)
{
    enum { WAVE = 8 };
    long done = 0;
    for (; done < n; done += WAVE) {
        pthread_t th[WAVE];
        for (int i = 0; i < WAVE; i++)
            assert_int_equal(pthread_create(&th[i], NULL, short_lived, NULL), 0);
        for (int i = 0; i < WAVE; i++) {
            void **left = NULL;
            assert_int_equal(pthread_join(th[i], (void **)&left), 0);
            if (left == NULL || left == (void **)1)
                fail_msg("a thread could not allocate");
            for (int j = 0; j < 4; j++)
                free(left[j]);
            free(left);
        }
    }
    return done;
}

static void test_thread_exit(void **state)
{
    (void)state;
    free(malloc(1));            /* the allocator is up before the key */
    assert_int_equal(pthread_key_create(&late_key, late_dtor), 0);
    long threads = tu_scaled(3000, 200);
    long warmup = threads / 10;
    atomic_store(&dtor_calls, 0);

    long ran = run_short_lived(warmup);
    size_t used0, fp0, used1, fp1;
    tu_malloc_usage(&used0, &fp0);
    ran += run_short_lived(threads - warmup);
    tu_malloc_usage(&used1, &fp1);

    assert_int_equal(atomic_load(&dtor_failures), 0);
    assert_int_equal(atomic_load(&dtor_calls), 2 * ran);
    /* a leak of a few hundred bytes per thread would be hundreds of KiB
     * here; the footprint may move by some slack, not by pages per thread */
    if (used1 > used0 + 128 * KiB)
        fail_msg("in use grew from %zu to %zu over %ld threads", used0, used1,
                 threads - warmup);
    if (fp1 > fp0 + 8 * MiB)
        fail_msg("footprint grew from %zu to %zu over %ld threads", fp0, fp1,
                 threads - warmup);
    assert_int_equal(pthread_key_delete(late_key), 0);
}

/* ------------------------------------------ snapshot of the malloc heap */

#define SNAP_NODES 2000

struct snap_node {
    struct snap_node *next;
    uint64_t value;
    char text[40];
};

static atomic_bool snap_stop;

static void *snap_churn(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&snap_stop); i++) {
        char *p = malloc(i % 2000 + 1);
        assert_non_null(p);
        memset(p, (int)i, i % 2000 + 1);
        free(p);
    }
    return NULL;
}

/* The library's own bookkeeping never comes from malloc, so a snapshot of
 * the heap malloc uses works from a program that mallocs on other threads
 * meanwhile.  The image is checked in place, mapped at another base: its
 * pointers are translated by offset. */
static void test_snapshot_malloc_heap(void **state)
{
    (void)state;
    if (!tu_malloc_is_mmheap())
        skip();
    mmh_heap *h = mmh_default_heap();
    struct snap_node *head = NULL;
    for (uint64_t i = 0; i < SNAP_NODES; i++) {
        struct snap_node *n = malloc(sizeof *n);
        assert_non_null(n);
        n->next = head;
        n->value = i * 7;
        snprintf(n->text, sizeof n->text, "node %llu", (unsigned long long)i);
        head = n;
    }
    assert_int_equal(mmh_set_root(h, head), 0);
    pthread_t churn;
    atomic_store(&snap_stop, false);
    assert_int_equal(pthread_create(&churn, NULL, snap_churn, NULL), 0);
    char *path = tu_path("malloc.image");
    assert_int_equal(mmh_snapshot(h, path), 0);
    for (struct snap_node *n = head; n; n = n->next) /* after the call: not in the image */
        n->value = UINT64_MAX;
    if (mmh_wait(h, 0) != 0)
        fail_msg("snapshot of the malloc heap: %s", mmh_errmsg());
    atomic_store(&snap_stop, true);
    assert_int_equal(pthread_join(churn, NULL), 0);

    mmh_config cfg = { .flags = MMH_READONLY | MMH_RELOCATE };
    mmh_heap *img = mmh_open(path, &cfg);
    if (!img)
        fail_msg("%s: %s", path, mmh_errmsg());
    uint64_t count = 0, want = SNAP_NODES;
    const struct snap_node *n = mmh_root(img);
    while (n) {
        want--;
        assert_int_equal(n->value, want * 7);
        char text[40];
        snprintf(text, sizeof text, "node %llu", (unsigned long long)want);
        assert_string_equal(n->text, text);
        n = n->next ? mmh_at(img, mmh_offset(h, n->next)) : NULL;
        count++;
    }
    assert_int_equal(count, SNAP_NODES);
    assert_int_equal(mmh_close(img), 0);
    while (head) {
        struct snap_node *next = head->next;
        free(head);
        head = next;
    }
    assert_int_equal(mmh_set_root(h, NULL), 0);
    unlink(path);
    free(path);
}

int main(void)
{
    if (!tu_malloc_testable())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_thread_frees),
        cmocka_unit_test(test_fork_while_allocating),
        cmocka_unit_test(test_more_threads_than_slots),
        cmocka_unit_test(test_thousands_of_threads),
        cmocka_unit_test(test_thread_exit),
        cmocka_unit_test(test_snapshot_malloc_heap),
    };
    return TU_RUN(tests);
}
