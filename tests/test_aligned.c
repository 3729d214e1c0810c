/* test_aligned: mmh_aligned_alloc for every power of two 1 B .. 16 MiB. */
#include "testutil.h"

struct blk {
    void  *p;
    size_t n;
    size_t align;
};

static void test_aligned_powers(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    struct mmh_stats st0 = tu_stats(h);
    enum { MAXB = 200 };
    struct blk b[MAXB];
    size_t nb = 0;
    for (size_t align = 8; align <= 1 * MiB; align *= 2) {
        const size_t sizes[] = { 1, align - 1, align, 3 * align + 5, 100000 };
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            unsigned char *p = mmh_aligned_alloc(h, align, n);
            if (!p)
                fail_msg("aligned_alloc(%zu, %zu) failed: %s", align, n, mmh_errmsg());
            if ((uintptr_t)p % align != 0)
                fail_msg("aligned_alloc(%zu, %zu) = %p is misaligned", align, n,
                         (void *)p);
            size_t u = mmh_usable_size(h, p);
            if (u < n)
                fail_msg("aligned_alloc(%zu, %zu): usable_size %zu", align, n, u);
            struct mmh_stats st = tu_stats(h);
            assert_true(tu_in_heap(&st, p, n));
            assert_ptr_equal(mmh_at(h, mmh_offset(h, p)), p);
            tu_fill(p, n, (uint64_t)nb * 1000003u);
            assert_true(nb < MAXB);
            b[nb].p = p;
            b[nb].n = n;
            b[nb].align = align;
            nb++;
        }
    }
    assert_int_equal(tu_stats(h).allocations, st0.allocations + nb);
    /* no block overwrote another */
    tu_span sp[MAXB];
    for (size_t i = 0; i < nb; i++) {
        assert_pattern(b[i].p, b[i].n, (uint64_t)i * 1000003u);
        sp[i].lo = (uintptr_t)b[i].p;
        sp[i].hi = (uintptr_t)b[i].p + mmh_usable_size(h, b[i].p);
    }
    assert_int_equal(tu_spans_sort_check(sp, nb), -1);
    for (size_t i = 0; i < nb; i++)
        mmh_free(h, b[i].p);
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.allocations, st0.allocations);
    assert_int_equal(st1.allocated, st0.allocated);
    assert_int_equal(mmh_close(h), 0);
}

static void test_aligned_small_powers(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    for (size_t align = 1; align < 8; align *= 2) {
        for (size_t n = 1; n < 100; n += 7) {
            void *p = mmh_aligned_alloc(h, align, n);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            assert_true(mmh_usable_size(h, p) >= n);
            memset(p, 0x5, n);
            mmh_free(h, p);
        }
    }
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

static void test_aligned_large(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    const size_t aligns[] = { 2 * MiB, 4 * MiB, 16 * MiB, 64 * MiB };
    const size_t sizes[] = { 1, 4096, 5 * MiB + 1 };
    void *keep[12];
    int k = 0;
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            unsigned char *p = mmh_aligned_alloc(h, aligns[a], sizes[s]);
            if (!p)
                fail_msg("aligned_alloc(%zu MiB, %zu) failed: %s", aligns[a] >> 20,
                         sizes[s], mmh_errmsg());
            assert_int_equal((uintptr_t)p % aligns[a], 0);
            assert_true(mmh_usable_size(h, p) >= sizes[s]);
            tu_fill(p, sizes[s], (uint64_t)k);
            keep[k++] = p;
        }
    }
    k = 0;
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            assert_pattern(keep[k], sizes[s], (uint64_t)k);
            mmh_free(h, keep[k]);
            k++;
        }
    assert_int_equal(tu_stats(h).allocations, 0);
    /* the space is reused: many large aligned blocks in turn */
    uint64_t size0 = tu_stats(h).size;
    for (int i = 0; i < 50; i++) {
        void *p = mmh_aligned_alloc(h, 4 * MiB, 3 * MiB);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % (4 * MiB), 0);
        mmh_free(h, p);
    }
    assert_true(tu_stats(h).size <= size0 + 8 * MiB);
    assert_int_equal(mmh_close(h), 0);
}

static void test_aligned_invalid(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    const size_t bad[] = { 0, 3, 24, 48, 100, 4097, 3 * MiB,
                           ((size_t)1 << 20) + 8, SIZE_MAX, SIZE_MAX / 2 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null_errno(mmh_aligned_alloc(h, bad[i], 64), EINVAL);
        assert_true(mmh_errmsg()[0] != '\0');
    }
    /* an alignment above the whole heap cannot be met */
    errno = 0;
    void *p = mmh_aligned_alloc(h, (size_t)1 << 62, 16);
    int e = errno;
    assert_null(p);
    assert_true(e == ENOMEM || e == EINVAL);
    assert_int_equal(tu_stats(h).allocations, 0);
    p = mmh_aligned_alloc(h, 64, 64);
    assert_non_null(p);
    mmh_free(h, p);
    assert_int_equal(mmh_close(h), 0);
}

/* Aligned blocks mixed with ordinary ones, freed in random order. */
static void test_aligned_mixed(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    enum { N = 3000 };
    struct blk *b = calloc(N, sizeof *b);
    assert_non_null(b);
    tu_rng rng = { 1234 };
    long rounds = tu_scaled(4, 1);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++) {
            size_t align = (size_t)1 << tu_rand_range(&rng, 3, 16);
            size_t n = tu_rand_log(&rng, 1, 70000);
            b[i].p = (tu_rand(&rng) & 1) ? mmh_aligned_alloc(h, align, n)
                                         : mmh_alloc(h, n);
            assert_non_null(b[i].p);
            b[i].n = n;
            tu_fill(b[i].p, n, (uint64_t)(uintptr_t)b[i].p);
        }
        for (int i = 0; i < N; i++) {
            int j = (int)tu_rand_range(&rng, (size_t)i, N - 1);
            struct blk t = b[i];
            b[i] = b[j];
            b[j] = t;
            assert_pattern(b[i].p, b[i].n, (uint64_t)(uintptr_t)b[i].p);
            mmh_free(h, b[i].p);
        }
        assert_int_equal(tu_stats(h).allocations, 0);
    }
    free(b);
    assert_int_equal(mmh_close(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned_powers),
        cmocka_unit_test(test_aligned_small_powers),
        cmocka_unit_test(test_aligned_large),
        cmocka_unit_test(test_aligned_invalid),
        cmocka_unit_test(test_aligned_mixed),
    };
    return TU_RUN(tests);
}
