/* test_realloc: growth and shrink keep contents; NULL and 0 cases. */
#include "testutil.h"

static void test_realloc_ladder(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    static const size_t ladder[] = {
        1, 100, 1000, 10000, 100000, 1000000, 10000000,
        1000000, 100000, 10000, 1000, 100, 1, 70000, 3, 12 * MiB, 17,
    };
    const uint64_t seed = 99;
    unsigned char *p = NULL;
    size_t have = 0;
    for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
        size_t n = ladder[i];
        unsigned char *q = mmh_realloc(h, p, n);
        if (!q)
            fail_msg("realloc(%zu -> %zu) failed: %s", have, n, mmh_errmsg());
        size_t keep = have < n ? have : n;
        size_t bad = tu_check(q, keep, seed);
        if (bad != (size_t)-1)
            fail_msg("realloc %zu -> %zu lost contents at byte %zu", have, n, bad);
        assert_true(mmh_usable_size(h, q) >= n);
        tu_fill(q, n, seed);                       /* position-only pattern */
        assert_int_equal(tu_stats(h).allocations, 1);
        p = q;
        have = n;
    }
    mmh_free(h, p);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(tu_stats(h).allocated, 0);
    assert_int_equal(mmh_close(h), 0);
}

static void test_realloc_null_and_zero(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    void *p = mmh_realloc(h, NULL, 500);
    assert_non_null(p);
    assert_true(mmh_usable_size(h, p) >= 500);
    assert_true(mmh_offset(h, p) != 0);
    memset(p, 1, 500);
    assert_int_equal(tu_stats(h).allocations, 1);

    errno = 0;
    void *z = mmh_realloc(h, p, 0);
    assert_null(z);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(tu_stats(h).allocated, 0);

    /* large block too */
    p = mmh_realloc(h, NULL, 20 * MiB);
    assert_non_null(p);
    assert_int_equal(tu_stats(h).allocations, 1);
    assert_null(mmh_realloc(h, p, 0));
    assert_int_equal(tu_stats(h).allocations, 0);

    /* realloc(NULL, 0) behaves like alloc(0): unique pointer */
    void *a = mmh_realloc(h, NULL, 0);
    void *b = mmh_alloc(h, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    mmh_free(h, a);
    mmh_free(h, b);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

static void test_realloc_failure_keeps_block(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 0, 32 * MiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    unsigned char *p = mmh_alloc(h, 5000);
    assert_non_null(p);
    tu_fill(p, 5000, 5);
    assert_null_errno(mmh_realloc(h, p, 40 * MiB), ENOMEM);
    assert_null_errno(mmh_realloc(h, p, SIZE_MAX), ENOMEM);
    assert_null_errno(mmh_realloc(h, p, SIZE_MAX - 15), ENOMEM);
    assert_pattern(p, 5000, 5);
    assert_int_equal(tu_stats(h).allocations, 1);
    p = mmh_realloc(h, p, 6000);
    assert_non_null(p);
    assert_pattern(p, 5000, 5);
    mmh_free(h, p);
    assert_int_equal(mmh_close(h), 0);
}

/* Many blocks reallocated at random: contents follow, nothing overlaps. */
static void test_realloc_random(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    enum { SLOTS = 64 };
    unsigned char *p[SLOTS] = { 0 };
    size_t n[SLOTS] = { 0 };
    tu_rng rng = { 2024 };
    long ops = tu_scaled(20000, 500);
    for (long op = 0; op < ops; op++) {
        int s = (int)tu_rand_range(&rng, 0, SLOTS - 1);
        size_t want = (tu_rand(&rng) % 16 == 0) ? tu_rand_log(&rng, 1, 2 * MiB)
                                                : tu_rand_log(&rng, 1, 70000);
        if (p[s]) {
            size_t bad = tu_check(p[s], n[s], (uint64_t)s);
            if (bad != (size_t)-1)
                fail_msg("op %ld slot %d: block of %zu corrupt at %zu", op, s, n[s], bad);
        }
        unsigned char *q = mmh_realloc(h, p[s], want);
        assert_non_null(q);
        size_t keep = n[s] < want ? n[s] : want;
        size_t bad = tu_check(q, keep, (uint64_t)s);
        if (bad != (size_t)-1)
            fail_msg("op %ld slot %d: realloc %zu -> %zu lost byte %zu", op, s,
                     n[s], want, bad);
        tu_fill(q, want, (uint64_t)s);
        p[s] = q;
        n[s] = want;
    }
    tu_span sp[SLOTS];
    int k = 0;
    for (int s = 0; s < SLOTS; s++) {
        if (!p[s])
            continue;
        assert_pattern(p[s], n[s], (uint64_t)s);
        sp[k].lo = (uintptr_t)p[s];
        sp[k].hi = (uintptr_t)p[s] + mmh_usable_size(h, p[s]);
        k++;
    }
    assert_int_equal(tu_spans_sort_check(sp, (size_t)k), -1);
    assert_int_equal(tu_stats(h).allocations, (uint64_t)k);
    for (int s = 0; s < SLOTS; s++)
        mmh_free(h, p[s]);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

/* Shrinking in place must not lose the tail of the kept part, growing an
 * aligned block keeps its contents (alignment need not be kept). */
static void test_realloc_aligned_block(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    unsigned char *p = mmh_aligned_alloc(h, 4096, 3000);
    assert_non_null(p);
    tu_fill(p, 3000, 8);
    p = mmh_realloc(h, p, 300000);
    assert_non_null(p);
    assert_pattern(p, 3000, 8);
    tu_fill(p, 300000, 8);
    p = mmh_realloc(h, p, 100);
    assert_non_null(p);
    assert_pattern(p, 100, 8);
    mmh_free(h, p);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

/* realloc on a file heap survives reopen. */
static void test_realloc_persists(void **state)
{
    (void)state;
    char *path = tu_path("realloc.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    unsigned char *p = mmh_alloc(h, 10);
    assert_non_null(p);
    tu_fill(p, 10, 77);
    p = mmh_realloc(h, p, 3 * MiB);
    assert_non_null(p);
    tu_fill(p, 3 * MiB, 77);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    p = mmh_root(h);
    assert_non_null(p);
    assert_pattern(p, 3 * MiB, 77);
    assert_true(mmh_usable_size(h, p) >= 3 * MiB);
    p = mmh_realloc(h, p, 50);
    assert_non_null(p);
    assert_pattern(p, 50, 77);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(tu_stats(h).allocations, 1);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* A huge block shrunk in place gives its tail back as a free run, whose
 * segment header the allocator then uses (under ASan the tail is poisoned,
 * but for the metadata of the segments made of it); freeing the block
 * merges that run again. */
static void test_realloc_huge_shrink_in_place(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    unsigned char *p = mmh_alloc(h, 5 * MiB);
    assert_non_null(p);
    tu_fill(p, 5 * MiB, 5);
    unsigned char *q = mmh_realloc(h, p, 1 * MiB);
    assert_ptr_equal(q, p);
    assert_true(tu_check(q, 1 * MiB, 5) == (size_t)-1);
    unsigned char *r = mmh_alloc(h, 100);
    assert_non_null(r);
    mmh_free(h, q);
    mmh_free(h, r);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

/* A block grown by doubling copies only while it is small: from the second
 * growth on it moves into a span of its own, grows there in place (the
 * span was cut where free slices follow it), and keeps its contents. */
static void test_realloc_doubling_chain(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    for (int round = 0; round < 3; round++) {
        unsigned char *p = mmh_alloc(h, 32), *first_in_span = NULL;
        assert_non_null(p);
        tu_fill(p, 32, 7);
        unsigned moves = 0;
        for (size_t n = 64; n <= 256 * KiB; n *= 2) {
            unsigned char *q = mmh_realloc(h, p, n);
            assert_non_null(q);
            assert_true(tu_check(q, n / 2, 7) == (size_t)-1);
            tu_fill(q, n, 7);
            moves += q != p;
            if (n >= 2 * KiB && !first_in_span)
                first_in_span = q;
            p = q;
        }
        /* 32 -> 64, 128, 256, 512, 1K (classes), 2K (the span): 6 moves */
        assert_int_equal(moves, 6);
        assert_ptr_equal(p, first_in_span);
        mmh_free(h, p);
    }
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

/* A large block shrinks in place, giving its tail slices back, and grows
 * back in place into them.  (Another block grown just before, so that
 * this one is not the block the thread was last seen growing, which
 * keeps its room.) */
static void test_realloc_large_shrink_in_place(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    unsigned char *p = mmh_alloc(h, 1 * MiB), *other = mmh_realloc(h, mmh_alloc(h, 16), 64);
    assert_non_null(p);
    assert_non_null(other);
    mmh_free(h, other);
    tu_fill(p, 1 * MiB, 3);
    assert_ptr_equal(mmh_realloc(h, p, 100 * KiB), p);
    assert_int_equal(mmh_usable_size(h, p), 128 * KiB);
    assert_true(tu_check(p, 100 * KiB, 3) == (size_t)-1);
    assert_ptr_equal(mmh_realloc(h, p, 900 * KiB), p);
    assert_true(tu_check(p, 100 * KiB, 3) == (size_t)-1);
    mmh_free(h, p);
    assert_int_equal(mmh_close(h), 0);
}

static int mapping_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    int n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Huge blocks of an anonymous heap that cannot grow in place move by
 * mremap, contents kept; and the heap's mappings stay few however many
 * moves there were (a moved range is a mapping of its own, which the
 * kernel never merges with its neighbours: fresh memory is mapped over the
 * ranges left behind).  Blocks allocated after each vector force the
 * moves; only the vectors' ends are written, so that the test is quick. */
static void test_realloc_huge_moves(void **state)
{
    (void)state;
    if (tu_under_valgrind())
        skip(); /* valgrind refuses MREMAP_DONTUNMAP: realloc copies there */
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    enum { ROUNDS = 20, VECTORS = 4, STEPS = 6 };
    int before = mapping_count(), most = before;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t *v[VECTORS] = { 0 };
        void *blocker[VECTORS * STEPS];
        size_t len[VECTORS] = { 0 }, nblockers = 0;
        for (int step = 0; step < STEPS; step++) {
            for (int i = 0; i < VECTORS; i++) {
                size_t n = len[i] ? len[i] + len[i] / 2 : (4 * MiB) / 8;
                uint64_t *q = mmh_realloc(h, v[i], n * 8);
                assert_non_null(q);
                if (len[i] && (q[0] != (uint64_t)i || q[len[i] - 1] != len[i] + (uint64_t)i))
                    fail_msg("vector %d lost its contents in realloc to %zu bytes", i, n * 8);
                q[0] = (uint64_t)i;
                q[n - 1] = n + (uint64_t)i;
                v[i] = q;
                len[i] = n;
                blocker[nblockers] = mmh_alloc(h, (size_t)(1 + (step + i) % 4) * MiB);
                assert_non_null(blocker[nblockers++]);
            }
        }
        int now = mapping_count();
        most = now > most ? now : most;
        for (int i = 0; i < VECTORS; i++)
            mmh_free(h, v[i]);
        for (size_t i = 0; i < nblockers; i++)
            mmh_free(h, blocker[i]);
    }
    print_message("mappings: %d before, at most %d\n", before, most);
    if (most - before > 40)
        fail_msg("the heap's mappings grew from %d to %d over %d moves", before, most,
                 ROUNDS * VECTORS * STEPS);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realloc_ladder),
        cmocka_unit_test(test_realloc_null_and_zero),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_realloc_random),
        cmocka_unit_test(test_realloc_aligned_block),
        cmocka_unit_test(test_realloc_persists),
        cmocka_unit_test(test_realloc_huge_shrink_in_place),
        cmocka_unit_test(test_realloc_doubling_chain),
        cmocka_unit_test(test_realloc_large_shrink_in_place),
        cmocka_unit_test(test_realloc_huge_moves),
    };
    return TU_RUN(tests);
}
