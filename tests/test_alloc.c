/* test_alloc: alloc/calloc/free/usable_size edge cases, reuse, bad frees. */
#include "testutil.h"

static int setup_heap(void **state)
{
    mmh_config cfg = tu_cfg(0, 0, 1 * GiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    if (!h)
        return -1;
    *state = h;
    return 0;
}

static int teardown_heap(void **state)
{
    return mmh_close(*state);
}

static void test_alloc_zero(void **state)
{
    mmh_heap *h = *state;
    struct mmh_stats st0 = tu_stats(h);
    void *a = mmh_alloc(h, 0);
    void *b = mmh_alloc(h, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(tu_stats(h).allocations, st0.allocations + 2);
    assert_true(mmh_offset(h, a) != 0);
    mmh_free(h, a);
    mmh_free(h, b);
    assert_int_equal(tu_stats(h).allocations, st0.allocations);

    void *c = mmh_calloc(h, 0, 16);
    void *d = mmh_calloc(h, 16, 0);
    assert_non_null(c);
    assert_non_null(d);
    assert_ptr_not_equal(c, d);
    mmh_free(h, c);
    mmh_free(h, d);
    assert_int_equal(tu_stats(h).allocations, st0.allocations);
}

static void test_free_null(void **state)
{
    mmh_heap *h = *state;
    struct mmh_stats st0 = tu_stats(h);
    mmh_free(h, NULL);
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.allocations, st0.allocations);
    assert_int_equal(st1.allocated, st0.allocated);
    assert_int_equal(mmh_usable_size(h, NULL), 0);
}

static void test_calloc_overflow(void **state)
{
    mmh_heap *h = *state;
    struct mmh_stats st0 = tu_stats(h);
    assert_null_errno(mmh_calloc(h, SIZE_MAX / 2, 3), ENOMEM);
    assert_null_errno(mmh_calloc(h, (size_t)1 << 32, (size_t)1 << 32), ENOMEM);
    assert_null_errno(mmh_calloc(h, SIZE_MAX, SIZE_MAX), ENOMEM);
    assert_null_errno(mmh_calloc(h, 3, SIZE_MAX / 2), ENOMEM);
    assert_null_errno(mmh_calloc(h, ((size_t)1 << 33) + 1, (size_t)1 << 31), ENOMEM);
    assert_int_equal(tu_stats(h).allocations, st0.allocations);
    /* still usable */
    unsigned *p = mmh_calloc(h, 1000, sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(p[i], 0);
    mmh_free(h, p);
}

static void test_huge_sizes(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 0, 64 * MiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    void *keep = mmh_alloc(h, 100);
    assert_non_null(keep);
    tu_fill(keep, 100, 3);
    struct mmh_stats st0 = tu_stats(h);

    const size_t bad[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2,
                           SIZE_MAX / 2 + 1, (size_t)1 << 62, 64 * MiB + 1,
                           64 * MiB, 65 * MiB, 1 * GiB };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null_errno(mmh_alloc(h, bad[i]), ENOMEM);
        assert_null_errno(mmh_calloc(h, 1, bad[i]), ENOMEM);
        assert_null_errno(mmh_aligned_alloc(h, 64, bad[i]), ENOMEM);
        assert_null_errno(mmh_aligned_alloc(h, 1 * MiB, bad[i]), ENOMEM);
        assert_null_errno(mmh_realloc(h, keep, bad[i]), ENOMEM);
        assert_pattern(keep, 100, 3);              /* realloc failure keeps p */
    }
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.allocations, st0.allocations);
    assert_int_equal(st1.allocated, st0.allocated);
    assert_true(st1.size <= 64 * MiB);

    /* the heap is still usable, including for a block of several MiB */
    void *p = mmh_alloc(h, 4 * MiB);
    assert_non_null(p);
    memset(p, 1, 4 * MiB);
    void *q = mmh_alloc(h, 40);
    assert_non_null(q);
    mmh_free(h, p);
    mmh_free(h, q);
    assert_pattern(keep, 100, 3);
    mmh_free(h, keep);
    assert_int_equal(mmh_close(h), 0);
}

static void test_calloc_zeroes_reused(void **state)
{
    mmh_heap *h = *state;
    static const size_t sizes[] = { 1, 8, 16, 24, 100, 512, 1000, 4096, 5000,
                                    40000, 131072, 200000, 1 * MiB, 3 * MiB + 17 };
    enum { K = 16 };
    for (int round = 0; round < 3; round++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            void *ps[K];
            for (int i = 0; i < K; i++) {
                ps[i] = mmh_alloc(h, n);
                assert_non_null(ps[i]);
                memset(ps[i], 0xAA, mmh_usable_size(h, ps[i]));
            }
            for (int i = 0; i < K; i++)
                mmh_free(h, ps[i]);
            for (int i = 0; i < K; i++) {
                ps[i] = mmh_calloc(h, 1, n);
                assert_non_null(ps[i]);
                if (!tu_all_bytes(ps[i], n, 0))
                    fail_msg("calloc(1, %zu) returned non-zero memory", n);
                memset(ps[i], 0xAA, n);
            }
            for (int i = 0; i < K; i++)
                mmh_free(h, ps[i]);
            /* n x 1 too */
            unsigned char *c = mmh_calloc(h, n, 1);
            assert_non_null(c);
            assert_true(tu_all_bytes(c, n, 0));
            mmh_free(h, c);
        }
    }
}

static void test_usable_size(void **state)
{
    mmh_heap *h = *state;
    double worst = 0;
    size_t worst_n = 0;
    for (size_t n = 1; n <= 70000; n += (n < 1024 ? 1 : (n < 8192 ? 7 : 61))) {
        unsigned char *p = mmh_alloc(h, n);
        assert_non_null(p);
        size_t u = mmh_usable_size(h, p);
        if (u < n)
            fail_msg("usable_size(alloc(%zu)) = %zu", n, u);
        assert_int_equal((uintptr_t)p % 16, 0);
        p[0] = 1;
        p[u - 1] = 2;                              /* usable means writable */
        if (n >= 128 && n <= 128 * KiB) {
            double w = (double)(u - n) / (double)u;
            if (w > worst) {
                worst = w;
                worst_n = n;
            }
        }
        mmh_free(h, p);
    }
    if (worst > 0.21)
        fail_msg("internal waste %.3f at size %zu exceeds 0.21", worst, worst_n);

    /* every size just above a class boundary 128..128K */
    for (size_t b = 128; b <= 128 * KiB; b *= 2) {
        for (size_t k = 0; k < 4; k++) {
            size_t n = b + k * (b / 4) + 1;
            if (n > 128 * KiB)
                break;
            void *p = mmh_alloc(h, n);
            assert_non_null(p);
            size_t u = mmh_usable_size(h, p);
            assert_true(u >= n);
            if ((double)(u - n) / (double)u > 0.21)
                fail_msg("size %zu: usable %zu, waste %.3f", n, u,
                         (double)(u - n) / (double)u);
            mmh_free(h, p);
        }
    }

    static const size_t large[] = { 128 * KiB + 1, 200000, 1 * MiB - 1, 1 * MiB,
                                    4 * MiB + 3, 10 * MiB, 33 * MiB + 4097 };
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        unsigned char *p = mmh_alloc(h, large[i]);
        assert_non_null(p);
        size_t u = mmh_usable_size(h, p);
        assert_true(u >= large[i]);
        /* bounded by the span granularity: 64 KiB slices, 4 MiB segments */
        if (u > large[i] + large[i] / 4 + 64 * KiB && u > large[i] + 4 * MiB)
            fail_msg("usable_size(alloc(%zu)) = %zu: too large", large[i], u);
        memset(p, 0x3c, u);
        mmh_free(h, p);
    }
    assert_int_equal(mmh_usable_size(h, NULL), 0);
}

/* Small sizes are multiples of 16 up to 128: exact classes. */
static void test_small_classes(void **state)
{
    mmh_heap *h = *state;
    for (size_t n = 1; n <= 128; n++) {
        void *p = mmh_alloc(h, n);
        assert_non_null(p);
        size_t u = mmh_usable_size(h, p);
        size_t want = (n + 15) & ~(size_t)15;
        if (u != want)
            fail_msg("usable_size(alloc(%zu)) = %zu, expected %zu", n, u, want);
        mmh_free(h, p);
    }
}

static void test_distinct_blocks(void **state)
{
    mmh_heap *h = *state;
    enum { N = 5000 };
    tu_rng rng = { 77 };
    void **ps = calloc(N, sizeof *ps);
    size_t *ns = calloc(N, sizeof *ns);
    tu_span *sp = calloc(N, sizeof *sp);
    assert_non_null(ps);
    assert_non_null(ns);
    assert_non_null(sp);
    struct mmh_stats st = tu_stats(h);
    for (int i = 0; i < N; i++) {
        ns[i] = tu_rand_log(&rng, 1, 200000);
        ps[i] = mmh_alloc(h, ns[i]);
        assert_non_null(ps[i]);
        tu_fill(ps[i], ns[i], (uint64_t)i);
        size_t u = mmh_usable_size(h, ps[i]);
        sp[i].lo = (uintptr_t)ps[i];
        sp[i].hi = (uintptr_t)ps[i] + u;
    }
    st = tu_stats(h);
    for (int i = 0; i < N; i++)
        assert_true(tu_in_heap(&st, ps[i], ns[i]));
    long bad = tu_spans_sort_check(sp, N);
    if (bad >= 0)
        fail_msg("blocks overlap: [%#lx,%#lx) and [%#lx,%#lx)",
                 (unsigned long)sp[bad - 1].lo, (unsigned long)sp[bad - 1].hi,
                 (unsigned long)sp[bad].lo, (unsigned long)sp[bad].hi);
    for (int i = 0; i < N; i++) {
        assert_pattern(ps[i], ns[i], (uint64_t)i);
        mmh_free(h, ps[i]);
    }
    free(ps);
    free(ns);
    free(sp);
}

static void test_reuse(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    static const size_t sizes[] = { 16, 100, 1000, 20000, 100000, 1 * MiB, 8 * MiB };
    long iters = tu_scaled(20000, 200);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        void *p = mmh_alloc(h, sizes[s]);
        assert_non_null(p);
        mmh_free(h, p);
        struct mmh_stats st0 = tu_stats(h);
        for (long i = 0; i < iters; i++) {
            p = mmh_alloc(h, sizes[s]);
            assert_non_null(p);
            ((char *)p)[0] = (char)i;
            mmh_free(h, p);
        }
        struct mmh_stats st1 = tu_stats(h);
        if (st1.size != st0.size)
            fail_msg("alloc/free of %zu bytes grew the heap from %llu to %llu",
                     sizes[s], (unsigned long long)st0.size,
                     (unsigned long long)st1.size);
        assert_int_equal(st1.allocations, st0.allocations);
    }

    /* batches: the footprint of the first round is enough for the rest */
    enum { B = 2000 };
    void *ps[B];
    tu_rng rng = { 5 };
    size_t ns[B];
    for (int i = 0; i < B; i++)
        ns[i] = tu_rand_log(&rng, 1, 20000);
    uint64_t size1 = 0;
    long rounds = tu_scaled(20, 3);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < B; i++) {
            ps[i] = mmh_alloc(h, ns[i]);
            assert_non_null(ps[i]);
        }
        for (int i = 0; i < B; i++)
            mmh_free(h, ps[(i * 7919) % B]);
        struct mmh_stats st = tu_stats(h);
        if (r == 0)
            size1 = st.size;
        else if (st.size > size1)
            fail_msg("round %ld: heap grew from %llu to %llu", r,
                     (unsigned long long)size1, (unsigned long long)st.size);
    }
    assert_int_equal(mmh_close(h), 0);
}

static void test_free_large_reduces_allocated(void **state)
{
    mmh_heap *h = *state;
    struct mmh_stats st0 = tu_stats(h);
    void *big[4];
    size_t sz[4] = { 256 * KiB, 2 * MiB, 10 * MiB, 50 * MiB };
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        big[i] = mmh_alloc(h, sz[i]);
        assert_non_null(big[i]);
        memset(big[i], 0x42, sz[i]);
        sum += mmh_usable_size(h, big[i]);
    }
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.allocated, st0.allocated + sum);
    assert_int_equal(st1.allocations, st0.allocations + 4);
    assert_true(st1.allocated >= st0.allocated + 62 * MiB);
    for (int i = 3; i >= 0; i--) {
        uint64_t u = mmh_usable_size(h, big[i]);
        uint64_t before = tu_stats(h).allocated;
        mmh_free(h, big[i]);
        assert_int_equal(tu_stats(h).allocated, before - u);
    }
    struct mmh_stats st2 = tu_stats(h);
    assert_int_equal(st2.allocated, st0.allocated);
    assert_int_equal(st2.allocations, st0.allocations);
    /* the freed span is reused for the next large block */
    void *again = mmh_alloc(h, 50 * MiB);
    assert_non_null(again);
    assert_true(tu_stats(h).size <= st1.size);
    mmh_free(h, again);
}

/* The current message is about this bad pointer: it shows the address or at
 * least says that free got a bad pointer. */
static int errmsg_mentions(const void *ptr)
{
    const char *m = mmh_errmsg();
    if (!m || !*m)
        return 0;
    char hex[32];
    snprintf(hex, sizeof hex, "%lx", (unsigned long)(uintptr_t)ptr);
    char low[512];
    size_t i;
    for (i = 0; m[i] && i + 1 < sizeof low; i++)
        low[i] = (char)((m[i] >= 'A' && m[i] <= 'Z') ? m[i] + 32 : m[i]);
    low[i] = 0;
    if (strstr(low, hex) || strstr(low, "free") || strstr(low, "pointer"))
        return 1;
    fprintf(stderr, "errmsg \"%s\" does not mention %p\n", m, ptr);
    return 0;
}

static void test_free_invalid(void **state)
{
    mmh_heap *h = *state;
    char *p = mmh_alloc(h, 64);
    assert_non_null(p);
    tu_fill(p, 64, 11);
    struct mmh_stats st0 = tu_stats(h);

    /* leave a different message behind first, so a stale one is caught */
    char *missing = tu_path("no-such.heap");
    assert_null(mmh_open(missing, NULL));
    assert_errmsg_contains(missing);

    int local = 0;
    errno = 0;
    mmh_free(h, &local);
    assert_int_equal(errno, EINVAL);
    assert_true(errmsg_mentions(&local));
    assert_null(strstr(mmh_errmsg(), missing));
    free(missing);

    char *heapbase = (char *)(uintptr_t)st0.base;
    errno = 0;
    mmh_free(h, heapbase + 1);
    assert_int_equal(errno, EINVAL);
    assert_true(errmsg_mentions(heapbase + 1));

    errno = 0;
    mmh_free(h, p + 1);                        /* misaligned interior pointer */
    assert_int_equal(errno, EINVAL);
    assert_true(errmsg_mentions(p + 1));

    errno = 0;
    mmh_free(h, (void *)(uintptr_t)16);
    assert_int_equal(errno, EINVAL);

    char *m2 = malloc(64);
    errno = 0;
    mmh_free(h, m2);
    assert_int_equal(errno, EINVAL);
    free(m2);

    /* a block of another heap is not ours */
    mmh_heap *h2 = mmh_open(NULL, NULL);
    assert_non_null(h2);
    char *q = mmh_alloc(h2, 64);
    assert_non_null(q);
    tu_fill(q, 64, 12);
    errno = 0;
    mmh_free(h, q);
    assert_int_equal(errno, EINVAL);
    assert_pattern(q, 64, 12);
    assert_int_equal(tu_stats(h2).allocations, 1);
    mmh_free(h2, q);
    assert_int_equal(mmh_close(h2), 0);

    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.allocations, st0.allocations);
    assert_int_equal(st1.allocated, st0.allocated);
    assert_pattern(p, 64, 11);
    mmh_free(h, p);
    assert_int_equal(tu_stats(h).allocations, st0.allocations - 1);
}

/* The small sizes the bad-free tests go through: 1- and 8-slice pages. */
static const size_t bad_free_sizes[] = { 16, 32, 48, 100, 160, 1000, 4096, 9000, 70000, 131072 };
#define BAD_FREE_SIZES (sizeof bad_free_sizes / sizeof bad_free_sizes[0])

/* mmh_free(h, p) is refused: EINVAL, and a message naming p. */
static int free_refused(mmh_heap *h, void *p, const char *what)
{
    errno = 0;
    mmh_free(h, p);
    if (errno != EINVAL) {
        fprintf(stderr, "%s: mmh_free(%p): errno %d, not EINVAL\n", what, p, errno);
        return 0;
    }
    char hex[32];
    snprintf(hex, sizeof hex, "%lx", (unsigned long)(uintptr_t)p);
    if (!strstr(mmh_errmsg(), hex)) {
        fprintf(stderr, "%s: message \"%s\" does not name %p\n", what, mmh_errmsg(), p);
        return 0;
    }
    return 1;
}

/* No block among the next allocations of n bytes overlaps [a, a + len). */
static int no_overlap(mmh_heap *h, const char *a, size_t len, size_t n, const char *what)
{
    void *got[4];
    int ok = 1;
    for (int k = 0; k < 4; k++) {
        char *b = got[k] = mmh_alloc(h, n);
        if (!b || (b + n > a && b < a + len)) {
            fprintf(stderr, "%s: mmh_alloc(%zu) returned %p, inside the live block %p\n",
                    what, n, (void *)b, (const void *)a);
            ok = 0;
        }
        for (int j = 0; j < k; j++)
            if (got[j] == b) {
                fprintf(stderr, "%s: mmh_alloc(%zu) returned %p twice\n", what, n, (void *)b);
                ok = 0;
            }
    }
    for (int k = 0; k < 4; k++)
        mmh_free(h, got[k]);
    return ok;
}

/* Interior pointers of small blocks, in 1- and 8-slice pages: refused,
 * naming the pointer, and the heap is untouched (the next allocations do
 * not hand out the interior pointer, which would overlap a live block). */
static int free_interior_in(mmh_heap *h, char *const *blocks, const char *what)
{
    int ok = 1;
    for (size_t i = 0; i < BAD_FREE_SIZES; i++) {
        size_t n = bad_free_sizes[i];
        char *a = blocks[i];
        size_t offs[] = { 16, (n / 2) & ~(size_t)15, n - 16 };
        for (size_t k = 0; k < 3; k++)
            if (offs[k] && offs[k] < n) /* 16-byte blocks have no interior */
                ok &= free_refused(h, a + offs[k], what);
        ok &= no_overlap(h, a, n, n, what);
        ok &= tu_verify(a, n, n);
    }
    return ok;
}

static char **alloc_bad_free_blocks(mmh_heap *h)
{
    static char *blocks[BAD_FREE_SIZES];
    for (size_t i = 0; i < BAD_FREE_SIZES; i++) {
        blocks[i] = mmh_alloc(h, bad_free_sizes[i]);
        assert_non_null(blocks[i]);
        tu_fill(blocks[i], bad_free_sizes[i], bad_free_sizes[i]);
    }
    return blocks;
}

static void test_free_interior(void **state)
{
    mmh_heap *h = *state;
    char **blocks = alloc_bad_free_blocks(h);
    struct mmh_stats st0 = tu_stats(h);
    assert_true(free_interior_in(h, blocks, "owner"));
    assert_int_equal(tu_stats(h).allocations, st0.allocations);
    for (size_t i = 0; i < BAD_FREE_SIZES; i++)
        mmh_free(h, blocks[i]);
}

typedef struct bad_free_arg {
    mmh_heap *h;
    char    **blocks;
    int       ok;
} bad_free_arg;

static void *free_interior_thread(void *p)
{
    bad_free_arg *a = p;
    a->ok = free_interior_in(a->h, a->blocks, "other thread");
    return NULL;
}

/* Freed by a thread that does not own the blocks' pages: the remote path. */
static void test_free_interior_remote(void **state)
{
    mmh_heap *h = *state;
    bad_free_arg arg = { h, alloc_bad_free_blocks(h), 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_interior_thread, &arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(arg.ok);
    for (size_t i = 0; i < BAD_FREE_SIZES; i++)
        mmh_free(h, arg.blocks[i]);
}

/* A block past the ones a page has carved (a small page hands its blocks
 * out in order): never allocated, so refused too. */
static void test_free_uncarved(void **state)
{
    mmh_heap *h = *state;
    char *a = mmh_alloc(h, 48);
    assert_non_null(a);
    assert_true(free_refused(h, a + 48 * 1000, "uncarved"));
    mmh_free(h, a);
}

/* Freeing the block freed last, again (glibc's "double free detected"):
 * refused, and the next two allocations get two blocks, not one twice. */
static int double_free_in(mmh_heap *h, const char *what)
{
    int ok = 1;
    for (size_t i = 0; i < BAD_FREE_SIZES; i++) {
        size_t n = bad_free_sizes[i];
        char *keep = mmh_alloc(h, n), *b = mmh_alloc(h, n); /* the page stays */
        if (!keep || !b)
            return 0;
        mmh_free(h, b);
        ok &= free_refused(h, b, what);
        if (!strstr(mmh_errmsg(), "double free")) {
            fprintf(stderr, "%s: message \"%s\" does not say double free\n", what,
                    mmh_errmsg());
            ok = 0;
        }
        char *c = mmh_alloc(h, n), *d = mmh_alloc(h, n);
        if (!c || c == d) {
            fprintf(stderr, "%s: after a double free of %p, mmh_alloc(%zu) returned %p "
                    "and %p\n", what, (void *)b, n, (void *)c, (void *)d);
            ok = 0;
        }
        mmh_free(h, c);
        mmh_free(h, d);
        mmh_free(h, keep);
    }
    return ok;
}

static void test_double_free(void **state)
{
    assert_true(double_free_in(*state, "owner"));
}

/* The remote path: each block is freed twice by a thread that does not
 * own its page. */
static void *double_free_thread(void *p)
{
    bad_free_arg *a = p;
    a->ok = 1;
    for (size_t i = 0; i < BAD_FREE_SIZES; i++) {
        mmh_free(a->h, a->blocks[i]);
        a->ok &= free_refused(a->h, a->blocks[i], "other thread");
    }
    return NULL;
}

static void test_double_free_remote(void **state)
{
    mmh_heap *h = *state;
    char **keep = alloc_bad_free_blocks(h); /* the pages stay */
    char *keep_copy[BAD_FREE_SIZES];
    memcpy(keep_copy, keep, sizeof keep_copy);
    bad_free_arg arg = { h, alloc_bad_free_blocks(h), 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, double_free_thread, &arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(arg.ok);
    for (size_t i = 0; i < BAD_FREE_SIZES; i++) {
        char *c = mmh_alloc(h, bad_free_sizes[i]), *d = mmh_alloc(h, bad_free_sizes[i]);
        assert_non_null(c);
        assert_ptr_not_equal(c, d);
        mmh_free(h, c);
        mmh_free(h, d);
        mmh_free(h, keep_copy[i]);
    }
}

/* ---- the slots' span caches ---------------------------------------------- */

enum { CACHED_SPANS = 4 };

/* Allocate and free CACHED_SPANS large blocks of 300 KiB (5 slices each,
 * small enough to be kept): the spans stay in the slot of the thread that
 * freed them, so the free spans' bytes do not grow by them. */
static uint64_t free_into_cache(mmh_heap *h)
{
    void *p[CACHED_SPANS];
    for (int i = 0; i < CACHED_SPANS; i++)
        assert_non_null(p[i] = mmh_alloc(h, 300 * KiB));
    uint64_t free_before = tu_stats(h).free_bytes;
    for (int i = 0; i < CACHED_SPANS; i++)
        mmh_free(h, p[i]);
    assert_int_equal(tu_stats(h).allocations, 0);
    return free_before;
}

/* A cached span is the heap's state: mmh_check verifies it, a commit keeps
 * it, and a heap opened again gives every one back to the free spans. */
static void test_span_cache_reopen(void **state)
{
    (void)state;
    char *path = tu_path("spancache.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = tu_open(path, &cfg);
    assert_non_null(h);
    uint64_t free_before = free_into_cache(h);
    assert_true(tu_stats(h).free_bytes < free_before + CACHED_SPANS * 320 * KiB);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(tu_close(h), 0);
    h = tu_open(path, NULL);
    assert_non_null(h);
    assert_true(tu_stats(h).free_bytes >= free_before + CACHED_SPANS * 320 * KiB);
    assert_int_equal(tu_close(h), 0);
    free(path);
}

static void *cache_and_exit(void *h)
{
    free_into_cache(h);
    return NULL;
}

/* A thread that exits gives its cached spans back. */
static void test_span_cache_thread_exit(void **state)
{
    mmh_heap *h = *state;
    uint64_t free_before = tu_stats(h).free_bytes;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cache_and_exit, h), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(tu_stats(h).free_bytes >= free_before);
    assert_int_equal(mmh_check(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alloc_zero, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_free_null, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_calloc_overflow, setup_heap, teardown_heap),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test_setup_teardown(test_calloc_zeroes_reused, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_usable_size, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_small_classes, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_distinct_blocks, setup_heap, teardown_heap),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test_setup_teardown(test_free_large_reduces_allocated, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_free_invalid, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_free_interior, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_free_interior_remote, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_free_uncarved, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_double_free, setup_heap, teardown_heap),
        cmocka_unit_test_setup_teardown(test_double_free_remote, setup_heap, teardown_heap),
        cmocka_unit_test(test_span_cache_reopen),
        cmocka_unit_test_setup_teardown(test_span_cache_thread_exit, setup_heap, teardown_heap),
    };
    return TU_RUN(tests);
}
