/* test_threads: concurrent alloc/free with cross-thread frees, and more
 * threads at once than a slot table holds.
 *
 * 8 threads each do 1,000,000 x MMH_TEST_SCALE random operations on one
 * shared heap (anonymous, then a file heap): allocations of 1 B .. 64 KiB
 * (log-uniform), frees of their own blocks, and frees of blocks other
 * threads allocated, handed over through a lock-protected exchange.  Each
 * block is filled with a pattern derived from its address and size when
 * allocated and verified before it is freed, so overlapping blocks or
 * allocator writes into live blocks are caught.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS  8
#define LIVE_MAX  512
#define XCHG_CAP  4096
#define MAX_BLOCK (64 * KiB)

struct blk {
    unsigned char *p;
    size_t n;
    int owner;
};

struct xchg {
    pthread_mutex_t mu;
    struct blk items[XCHG_CAP];
    size_t n;
};

struct targ {
    mmh_heap    *h;
    struct xchg *x;
    int          id;
    long         ops;
    uintptr_t    lo, hi;       /* the heap's reservation */
    int          failed;
    char         why[256];
    long         allocs, frees, cross_frees;
};

static uint64_t blk_seed(const void *p, size_t n)
{
    return (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull ^ n;
}

#define TFAIL(a, ...) do {                                                     \
        snprintf((a)->why, sizeof (a)->why, __VA_ARGS__);                      \
        (a)->failed = 1;                                                       \
        return 0;                                                              \
    } while (0)

static int t_alloc(struct targ *a, tu_rng *rng, struct blk *out)
{
    size_t n = tu_rand_log(rng, 1, MAX_BLOCK);
    unsigned char *p;
    switch (tu_rand(rng) % 16) {
    case 0:
        p = mmh_calloc(a->h, 1, n);
        if (p && !tu_all_bytes(p, n, 0))
            TFAIL(a, "thread %d: calloc(%zu) not zeroed", a->id, n);
        break;
    case 1:
        p = mmh_aligned_alloc(a->h, (size_t)64 << (tu_rand(rng) % 6), n);
        break;
    default:
        p = mmh_alloc(a->h, n);
    }
    if (!p)
        TFAIL(a, "thread %d: alloc(%zu) failed: %s", a->id, n, mmh_errmsg());
    if ((uintptr_t)p < a->lo || (uintptr_t)p + n > a->hi)
        TFAIL(a, "thread %d: block %p outside the heap", a->id, (void *)p);
    size_t u = mmh_usable_size(a->h, p);
    if (u < n)
        TFAIL(a, "thread %d: usable_size %zu < %zu", a->id, u, n);
    tu_fill(p, n, blk_seed(p, n));
    out->p = p;
    out->n = n;
    out->owner = a->id;
    a->allocs++;
    return 1;
}

static int t_free(struct targ *a, struct blk *b)
{
    size_t bad = tu_check(b->p, b->n, blk_seed(b->p, b->n));
    if (bad != (size_t)-1)
        TFAIL(a, "thread %d: block %p (%zu bytes, from thread %d) corrupt at %zu",
              a->id, (void *)b->p, b->n, b->owner, bad);
    if (b->owner != a->id)
        a->cross_frees++;
    mmh_free(a->h, b->p);
    a->frees++;
    return 1;
}

static void *worker(void *argp)
{
    struct targ *a = argp;
    tu_rng rng = { 0x1000u + (uint64_t)a->id };
    struct blk live[LIVE_MAX];
    size_t nlive = 0;
    for (long op = 0; op < a->ops; op++) {
        unsigned r = (unsigned)(tu_rand(&rng) % 100);
        if (nlive == 0 || (r < 48 && nlive < LIVE_MAX)) {
            if (!t_alloc(a, &rng, &live[nlive]))
                return NULL;
            nlive++;
        } else if (r < 88) {
            size_t i = tu_rand_range(&rng, 0, nlive - 1);
            if (!t_free(a, &live[i]))
                return NULL;
            live[i] = live[--nlive];
        } else if (r < 94) {
            /* hand a block to the other threads */
            size_t i = tu_rand_range(&rng, 0, nlive - 1);
            pthread_mutex_lock(&a->x->mu);
            int pushed = 0;
            if (a->x->n < XCHG_CAP) {
                a->x->items[a->x->n++] = live[i];
                pushed = 1;
            }
            pthread_mutex_unlock(&a->x->mu);
            if (pushed)
                live[i] = live[--nlive];
        } else {
            /* free up to 4 blocks from the exchange, preferring others' */
            struct blk got[4];
            int ng = 0;
            pthread_mutex_lock(&a->x->mu);
            for (size_t k = a->x->n; k > 0 && ng < 4; k--) {
                if (a->x->items[k - 1].owner != a->id || ng == 0) {
                    got[ng++] = a->x->items[k - 1];
                    a->x->items[k - 1] = a->x->items[--a->x->n];
                }
            }
            pthread_mutex_unlock(&a->x->mu);
            for (int k = 0; k < ng; k++)
                if (!t_free(a, &got[k]))
                    return NULL;
        }
    }
    for (size_t i = 0; i < nlive; i++)
        if (!t_free(a, &live[i]))
            return NULL;
    return NULL;
}

static void run_threads(mmh_heap *h, long per_thread)
{
    struct mmh_stats st0 = tu_stats(h);
    static struct xchg x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.mu, NULL);
    struct targ args[NTHREADS];
    pthread_t th[NTHREADS];
    long ops = tu_scaled(per_thread, 2000);
    for (int i = 0; i < NTHREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].h = h;
        args[i].x = &x;
        args[i].id = i;
        args[i].ops = ops;
        args[i].lo = st0.base;
        args[i].hi = st0.base + st0.max_size;
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    long allocs = 0, frees = 0, cross = 0;
    int failed = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (args[i].failed) {
            fprintf(stderr, "%s\n", args[i].why);
            failed = 1;
        }
        allocs += args[i].allocs;
        frees += args[i].frees;
        cross += args[i].cross_frees;
    }
    if (failed)
        fail_msg("a worker thread failed");
    /* what is left in the exchange is freed here, by yet another thread */
    struct targ me;
    memset(&me, 0, sizeof me);
    me.h = h;
    me.id = -1;
    for (size_t i = 0; i < x.n; i++)
        if (!t_free(&me, &x.items[i]))
            fail_msg("%s", me.why);
    frees += me.frees;
    cross += me.cross_frees;
    pthread_mutex_destroy(&x.mu);

    assert_int_equal(allocs, frees);
    assert_true(cross > ops / 100);
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.base, st0.base);
    if (st1.allocations != st0.allocations)
        fail_msg("allocations %llu after all frees, %llu before",
                 (unsigned long long)st1.allocations,
                 (unsigned long long)st0.allocations);
    assert_int_equal(st1.allocated, st0.allocated);
}

static void test_threads_anon(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    void *pre = mmh_alloc(h, 123);              /* a block that outlives it all */
    assert_non_null(pre);
    tu_fill(pre, 123, 5);
    run_threads(h, 1000000);
    assert_pattern(pre, 123, 5);
    mmh_free(h, pre);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

static void test_threads_file(void **state)
{
    (void)state;
    char *path = tu_path("threads.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *pre = mmh_alloc(h, 64);
    assert_non_null(pre);
    strcpy(pre, "before the threads");
    assert_int_equal(mmh_set_root(h, pre), 0);
    assert_int_equal(mmh_commit(h), 0);
    run_threads(h, 1000000);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_string_equal(mmh_root(h), "before the threads");
    assert_int_equal(tu_stats(h).allocations, 1);
    /* and threads work on the reopened heap too */
    run_threads(h, 100000);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* ---------------------------------------- blocks of threads across reopen */

#define PER_THREAD 2000

struct keep_arg {
    mmh_heap  *h;
    int        id;
    uint64_t  *offs;           /* in the heap: PER_THREAD offsets */
    int        failed;
};

static size_t keep_len(int id, int i) { return 1 + (size_t)((id * 7919 + i * 104729) % 20000); }

static void *keeper(void *argp)
{
    struct keep_arg *a = argp;
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = keep_len(a->id, i);
        unsigned char *p = mmh_alloc(a->h, n);
        if (!p) {
            a->failed = 1;
            return NULL;
        }
        tu_fill(p, n, (uint64_t)a->id << 32 | (uint64_t)i);
        a->offs[i] = mmh_offset(a->h, p);
        /* some churn so pages have holes */
        void *t = mmh_alloc(a->h, n);
        mmh_free(a->h, t);
    }
    return NULL;
}

static void test_thread_blocks_survive_reopen(void **state)
{
    (void)state;
    char *path = tu_path("keep.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    uint64_t *offs = mmh_calloc(h, (size_t)NTHREADS * PER_THREAD, sizeof *offs);
    assert_non_null(offs);
    assert_int_equal(mmh_set_root(h, offs), 0);
    struct keep_arg ka[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        ka[i] = (struct keep_arg){ h, i, offs + (size_t)i * PER_THREAD, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, keeper, &ka[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        assert_false(ka[i].failed);
    }
    assert_int_equal(tu_stats(h).allocations, 1 + NTHREADS * PER_THREAD);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    offs = mmh_root(h);
    assert_non_null(offs);
    assert_int_equal(tu_stats(h).allocations, 1 + NTHREADS * PER_THREAD);
    /* this thread frees what eight others allocated in an earlier life */
    for (int t = 0; t < NTHREADS; t++) {
        for (int i = 0; i < PER_THREAD; i += 2) {
            unsigned char *p = mmh_at(h, offs[(size_t)t * PER_THREAD + (size_t)i]);
            assert_non_null(p);
            assert_pattern(p, keep_len(t, i), (uint64_t)t << 32 | (uint64_t)i);
            mmh_free(h, p);
            offs[(size_t)t * PER_THREAD + (size_t)i] = 0;
        }
    }
    /* and allocates into the holes without touching the survivors */
    for (int i = 0; i < NTHREADS * PER_THREAD / 2; i++) {
        void *p = mmh_alloc(h, keep_len(i % NTHREADS, i));
        assert_non_null(p);
        memset(p, 0xC3, keep_len(i % NTHREADS, i));
    }
    for (int t = 0; t < NTHREADS; t++)
        for (int i = 1; i < PER_THREAD; i += 2) {
            unsigned char *p = mmh_at(h, offs[(size_t)t * PER_THREAD + (size_t)i]);
            assert_pattern(p, keep_len(t, i), (uint64_t)t << 32 | (uint64_t)i);
        }
    assert_int_equal(tu_stats(h).allocations, 1 + NTHREADS * PER_THREAD);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* ------------------------------------------------ many short-lived threads */

struct short_arg {
    mmh_heap *h;
    void     *kept[5];
    int       failed;
};

static void *short_lived(void *argp)
{
    struct short_arg *a = argp;
    void *p[10];
    for (int i = 0; i < 10; i++) {
        p[i] = mmh_alloc(a->h, 16 + (size_t)i * 300);
        if (!p[i]) {
            a->failed = 1;
            return NULL;
        }
        memset(p[i], i, 16);
    }
    for (int i = 0; i < 5; i++) {
        mmh_free(a->h, p[2 * i]);
        a->kept[i] = p[2 * i + 1];
    }
    return NULL;
}

static void test_short_lived_threads(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    long n = tu_scaled(3000, 100);
    struct short_arg a;
    for (long i = 0; i < n; i++) {
        memset(&a, 0, sizeof a);
        a.h = h;
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, short_lived, &a), 0);
        pthread_join(t, NULL);
        if (a.failed)
            fail_msg("thread %ld of %ld could not allocate: %s", i, n, mmh_errmsg());
        for (int k = 0; k < 5; k++) {
            unsigned char *c = a.kept[k];
            assert_true(tu_all_bytes(c, 16, (unsigned char)(2 * k + 1)));
            mmh_free(h, c);
        }
    }
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

/* ------------------------------------ more threads than a slot table holds */

#define MANY_THREADS 2500
#define MANY_BLOCKS  4             /* each thread's: sizes 16 .. 1024 B */
#define MANY_STACK   (64 * KiB)

static size_t many_len(size_t i, int k) { return 16u << ((i + (size_t)k) % 7); }

struct many {
    mmh_heap          *h;
    size_t             n;
    uint64_t          *offs;       /* n * MANY_BLOCKS; 0: freed */
    pthread_barrier_t  bound, freed;
    atomic_int         failed;
};

struct many_arg {
    struct many *m;
    size_t       i;
};

/* The blocks thread i allocated: filled, or checked and freed (by any
 * thread: a remote free unless it is i). */
static int many_fill(struct many *m, size_t i)
{
    for (int k = 0; k < MANY_BLOCKS; k++) {
        unsigned char *p = mmh_alloc(m->h, many_len(i, k));
        if (!p)
            return 0;
        tu_fill(p, many_len(i, k), i * MANY_BLOCKS + (size_t)k);
        m->offs[i * MANY_BLOCKS + (size_t)k] = mmh_offset(m->h, p);
    }
    return 1;
}

static int many_free(struct many *m, size_t i, int from, int to)
{
    for (int k = from; k < to; k++) {
        uint64_t *off = &m->offs[i * MANY_BLOCKS + (size_t)k];
        unsigned char *p = mmh_at(m->h, *off);
        if (!*off || tu_check(p, many_len(i, k), i * MANY_BLOCKS + (size_t)k) != (size_t)-1)
            return 0;
        mmh_free(m->h, p);
        *off = 0;
    }
    return 1;
}

/* All alive at once: each allocates (holding a slot from then on), waits
 * until all have, frees half the blocks of the thread half the count
 * away (in another slot table), waits again, and allocates and frees a
 * block of each size, collecting what the others freed into its pages.
 * The other half of its blocks outlive it. */
static void *many_worker(void *argp)
{
    struct many_arg *a = argp;
    struct many *m = a->m;
    int ok = many_fill(m, a->i);
    pthread_barrier_wait(&m->bound);
    ok = ok && many_free(m, (a->i + m->n / 2) % m->n, 0, MANY_BLOCKS / 2);
    pthread_barrier_wait(&m->freed);
    for (int k = 0; ok && k < 7; k++) {
        void *p = mmh_alloc(m->h, 16u << k);
        ok = p != NULL;
        mmh_free(m->h, p);
    }
    if (!ok)
        atomic_store(&m->failed, 1);
    return NULL;
}

/* n threads on h, all alive at once; each has a slot of its own (none
 * borrows: threads_bound counts them all), and no allocation fails.  The
 * blocks they leave are in m->offs. */
static void run_many(struct many *m, mmh_heap *h, size_t n, uint64_t *offs)
{
    memset(m, 0, sizeof *m);
    m->h = h;
    m->n = n;
    m->offs = offs;
    pthread_barrier_init(&m->bound, NULL, (unsigned)n + 1);
    pthread_barrier_init(&m->freed, NULL, (unsigned)n + 1); /* and stats read meanwhile */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    assert_int_equal(pthread_attr_setstacksize(&attr, MANY_STACK), 0);
    uint32_t before = tu_stats(h).threads_bound; /* this one's, if it allocated */
    pthread_t *th = calloc(n, sizeof *th);
    struct many_arg *args = calloc(n, sizeof *args);
    assert_true(th && args);
    for (size_t i = 0; i < n; i++) {
        args[i] = (struct many_arg){ m, i };
        if (pthread_create(&th[i], &attr, many_worker, &args[i]) != 0)
            fail_msg("thread %zu of %zu: pthread_create: %s", i, n, strerror(errno));
    }
    pthread_barrier_wait(&m->bound);
    struct mmh_stats st = tu_stats(h);
    if (st.threads_bound != before + n || st.slots < before + n + 16)
        fail_msg("%zu threads alive: %u hold a slot of their own (%u before), of %u slots", n,
                 st.threads_bound, before, st.slots);
    pthread_barrier_wait(&m->freed);
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    assert_false(atomic_load(&m->failed));
    assert_int_equal(tu_stats(h).threads_bound, before);
    pthread_barrier_destroy(&m->bound);
    pthread_barrier_destroy(&m->freed);
    pthread_attr_destroy(&attr);
    free(th);
    free(args);
}

/* The blocks the threads left are freed by this thread: frees into slots
 * that nobody holds, in every table. */
static void free_many(struct many *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (!many_free(m, i, MANY_BLOCKS / 2, MANY_BLOCKS))
            fail_msg("thread %zu's blocks damaged", i);
}

static void test_many_threads(void **state)
{
    (void)state;
    if (tu_under_valgrind()) /* valgrind runs at most 500 threads */
        skip();
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    uint64_t *offs = calloc((size_t)MANY_THREADS * MANY_BLOCKS, sizeof *offs);
    assert_non_null(offs);
    struct many m;
    run_many(&m, h, MANY_THREADS, offs);
    assert_int_equal(tu_stats(h).allocations, (uint64_t)MANY_THREADS * MANY_BLOCKS / 2);
    assert_int_equal(mmh_check(h), 0);
    free_many(&m);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_check(h), 0);
    /* the slots are there for the next threads, no table added */
    uint32_t slots = tu_stats(h).slots;
    run_many(&m, h, MANY_THREADS, offs);
    assert_int_equal(tu_stats(h).slots, slots);
    free_many(&m);
    assert_int_equal(mmh_close(h), 0);
    free(offs);
}

/* A file heap whose threads' pages, in every slot table, outlive them:
 * committed, reopened (the tables with it), checked, and freed into. */
static void test_many_threads_file(void **state)
{
    (void)state;
    if (tu_under_valgrind())
        skip();
    char *path = tu_path("many.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    size_t n = 2100;
    uint64_t *offs = mmh_calloc(h, n * MANY_BLOCKS, sizeof *offs);
    assert_non_null(offs);
    assert_int_equal(mmh_set_root(h, offs), 0);
    struct many m;
    run_many(&m, h, n, offs);
    uint32_t slots = tu_stats(h).slots;
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen: %s", mmh_errmsg());
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(tu_stats(h).slots, slots);
    assert_int_equal(tu_stats(h).allocations, 1 + n * MANY_BLOCKS / 2);
    m.h = h;
    m.offs = mmh_root(h);
    free_many(&m);
    assert_int_equal(tu_stats(h).allocations, 1);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_anon),
        cmocka_unit_test(test_threads_file),
        cmocka_unit_test(test_thread_blocks_survive_reopen),
        cmocka_unit_test(test_short_lived_threads),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_many_threads_file),
    };
    return TU_RUN(tests);
}
