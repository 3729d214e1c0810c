/* test_malloc: the drop-in malloc's API, with glibc's semantics.
 *
 * Linked to libmmheap-malloc by make check, so every malloc of the process
 * (cmocka's and libc's own included) is mmheap's.  The same checks hold for
 * glibc's malloc: compiled by hand without the library, the program tests
 * the tests (the mmheap-only checks then skip: tu_malloc_is_mmheap).
 */
#include "testutil.h"

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <pthread.h>
#include <semaphore.h>
#include <time.h>

/* C23 and glibc-internal entry points that this glibc's headers may lack.
 * Weak: a hand build against a glibc without them still links, and the
 * tests that need them skip. */
extern void free_sized(void *p, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *p, size_t align, size_t size) __attribute__((weak));
extern void *__libc_malloc(size_t size) __attribute__((weak));
extern void __libc_free(void *p) __attribute__((weak));
extern void *__libc_calloc(size_t n, size_t size) __attribute__((weak));
extern void *__libc_realloc(void *p, size_t size) __attribute__((weak));
extern void *__libc_memalign(size_t align, size_t size) __attribute__((weak));
extern void *__libc_valloc(size_t size) __attribute__((weak));
extern void *__libc_pvalloc(size_t size) __attribute__((weak));

/* Calls meant to fail go through volatile pointers: the compiler can then
 * neither warn about the impossible sizes, nor drop a call whose result only
 * meets a NULL check (clang does), nor take a block that a failed realloc
 * left valid for freed (gcc's -Wuse-after-free). */
static void *(*volatile malloc_may_fail)(size_t) = malloc;
static void *(*volatile calloc_may_fail)(size_t, size_t) = calloc;
static void *(*volatile realloc_may_fail)(void *, size_t) = realloc;
static void *(*volatile reallocarray_may_fail)(void *, size_t, size_t) = reallocarray;
static void *(*volatile aligned_alloc_may_fail)(size_t, size_t) = aligned_alloc;
static void *(*volatile memalign_may_fail)(size_t, size_t) = memalign;
static void *(*volatile valloc_may_fail)(size_t) = valloc;
static void *(*volatile pvalloc_may_fail)(size_t) = pvalloc;
static int (*volatile posix_memalign_may_fail)(void **, size_t, size_t) = posix_memalign;

/* gcc takes free() for the builtin, which leaves errno alone, and folds a
 * check of errno after it away: the calls that check go through this. */
static void (*volatile free_checking_errno)(void *) = free;

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* p lies in the default heap wherever malloc is mmheap's. */
static void assert_from_malloc_heap(const void *p)
{
    assert_non_null(p);
    if (tu_malloc_is_mmheap() && mmh_offset(tu_malloc_heap(), p) == 0)
        fail_msg("%p is not in mmh_default_heap()", p);
}

static int is_aligned(const void *p, size_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* The test program's malloc must be the library's where make check linked
 * it, and libc's internal allocations go through it too. */
static void test_malloc_is_mmheap(void **state)
{
    (void)state;
    int mmheap = tu_malloc_is_mmheap();
    if (tu_malloc_must_be_mmheap())
        assert_true(mmheap);
    if (!mmheap)
        skip();

    void *blocks[] = {
        malloc(10), calloc(3, 10), realloc(NULL, 10), aligned_alloc(64, 10),
        memalign(4096, 10), valloc(10), pvalloc(10), reallocarray(NULL, 5, 2),
        strdup("allocated by libc"),
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        assert_from_malloc_heap(blocks[i]);
        free(blocks[i]);
    }
    void *pm = NULL;
    assert_int_equal(posix_memalign(&pm, 128, 10), 0);
    assert_from_malloc_heap(pm);
    free(pm);

    /* stdio's buffers come from malloc too, and fclose frees them */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fprintf(f, "%s %d", "memstream", 42);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(text, "memstream 42");
    assert_from_malloc_heap(text);
    free(text);
}

static void test_malloc_zero(void **state)
{
    (void)state;
    enum { N = 64 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(0);
        assert_non_null(p[i]);
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(p[i], p[j]);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);

    /* the other zero-size requests: non-NULL and freeable, as in glibc */
    void *zero[] = { calloc(0, 8), calloc(8, 0), realloc(NULL, 0),
                     aligned_alloc(64, 0), memalign(64, 0) };
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        assert_non_null(zero[i]);
        free(zero[i]);
    }
}

/* Sizes of every kind, small to unmapped on free. */
static const size_t errno_sizes[] = { 1, 100, 5000, 200 * KiB, 3 * MiB, 40 * MiB };
#define ERRNO_BLOCKS (sizeof errno_sizes / sizeof errno_sizes[0])

static void test_free_null_keeps_errno(void **state)
{
    (void)state;
    errno = 0;
    free_checking_errno(NULL);
    assert_int_equal(errno, 0);

    for (size_t i = 0; i < ERRNO_BLOCKS; i++) {
        char *p = malloc(errno_sizes[i]);
        assert_non_null(p);
        memset(p, 1, errno_sizes[i]);
        errno = EILSEQ;
        free_checking_errno(p);
        assert_int_equal(errno, EILSEQ);

        p = aligned_alloc(1 * MiB, errno_sizes[i]);
        assert_non_null(p);
        errno = ERANGE;
        free_checking_errno(p);
        assert_int_equal(errno, ERANGE);
    }
}

/* Blocks of a thread that stays alive until they are freed elsewhere: one
 * of each size, and enough small ones to empty whole pages. */
#define REMOTE_SMALL 512

static struct {
    char *blocks[ERRNO_BLOCKS];
    char *small[REMOTE_SMALL];
    sem_t allocated, freed;
} remote;

static void *remote_owner(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < ERRNO_BLOCKS; i++) {
        remote.blocks[i] = malloc(errno_sizes[i]);
        if (remote.blocks[i])
            memset(remote.blocks[i], 1, errno_sizes[i]);
    }
    for (size_t i = 0; i < REMOTE_SMALL; i++)
        remote.small[i] = malloc(48);
    sem_post(&remote.allocated);
    while (sem_wait(&remote.freed) != 0)
        continue;
    return NULL;
}

/* free keeps errno for blocks of another thread, too */
static void test_remote_free_keeps_errno(void **state)
{
    (void)state;
    pthread_t th;
    assert_int_equal(sem_init(&remote.allocated, 0, 0), 0);
    assert_int_equal(sem_init(&remote.freed, 0, 0), 0);
    assert_int_equal(pthread_create(&th, NULL, remote_owner, NULL), 0);
    while (sem_wait(&remote.allocated) != 0)
        continue;
    for (size_t i = 0; i < ERRNO_BLOCKS; i++) {
        assert_non_null(remote.blocks[i]);
        errno = EXDEV;
        free_checking_errno(remote.blocks[i]);
        assert_int_equal(errno, EXDEV);
    }
    for (size_t i = 0; i < REMOTE_SMALL; i++) {
        assert_non_null(remote.small[i]);
        errno = EXDEV;
        free_checking_errno(remote.small[i]);
        assert_int_equal(errno, EXDEV);
    }
    sem_post(&remote.freed);
    assert_int_equal(pthread_join(th, NULL), 0);
    sem_destroy(&remote.allocated);
    sem_destroy(&remote.freed);
}

static void test_realloc_null_and_zero(void **state)
{
    (void)state;
    char *p = realloc(NULL, 100);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) >= 100);
    tu_fill(p, 100, 1);
    assert_pattern(p, 100, 1);
    assert_null(realloc(p, 0));

    /* realloc(p, 0) frees: the usage returns to where it was, for a block
     * big enough to show in any allocator's accounting */
    size_t used0, used1, used2, footprint;
    tu_malloc_usage(&used0, &footprint);
    p = malloc(4 * MiB);
    assert_non_null(p);
    memset(p, 7, 4 * MiB);
    tu_malloc_usage(&used1, &footprint);
    assert_true(used1 >= used0 + 4 * MiB);
    assert_null(realloc(p, 0));
    tu_malloc_usage(&used2, &footprint);
    if (used2 >= used0 + 64 * KiB)
        fail_msg("in use %zu before malloc, %zu after realloc(p, 0)", used0, used2);
}

/* Grows one block through every size range and shrinks it back: the
 * prefix survives each step, the new tail is writable. */
static void test_realloc_keeps_contents(void **state)
{
    (void)state;
    const size_t steps[] = {
        1, 7, 8, 15, 16, 17, 24, 100, 128, 129, 200, 1000, 4095, 4096, 4097,
        8 * KiB + 1, 65536, 100000, 128 * KiB, 128 * KiB + 1, 300 * KiB,
        1 * MiB, 4 * MiB + 3, 9 * MiB, 33 * MiB,
    };
    const size_t n = sizeof steps / sizeof steps[0];
    for (uint64_t seed = 1; seed <= 2; seed++) {
        size_t have = steps[0];
        char *p = malloc(have);
        assert_non_null(p);
        tu_fill(p, have, seed);
        for (size_t i = 1; i < 2 * n - 1; i++) {
            size_t want = steps[i < n ? i : 2 * n - 2 - i];
            char *q = realloc(p, want);
            assert_non_null(q);
            size_t kept = want < have ? want : have;
            assert_pattern(q, kept, seed);
            assert_true(malloc_usable_size(q) >= want);
            tu_fill(q, want, seed);
            p = q;
            have = want;
        }
        free(p);
    }

    /* many live blocks, each grown by one byte at a time past a few class
     * boundaries, interleaved so neighbours cannot be overwritten unseen */
    enum { LIVE = 32 };
    char *b[LIVE];
    for (int i = 0; i < LIVE; i++) {
        b[i] = malloc(1);
        assert_non_null(b[i]);
        tu_fill(b[i], 1, 100 + (uint64_t)i);
    }
    for (size_t size = 2; size <= 600; size++) {
        for (int i = 0; i < LIVE; i++) {
            b[i] = realloc(b[i], size);
            assert_non_null(b[i]);
            assert_pattern(b[i], size - 1, 100 + (uint64_t)i);
            tu_fill(b[i], size, 100 + (uint64_t)i);
        }
    }
    for (int i = 0; i < LIVE; i++)
        free(b[i]);
}

static void test_calloc_zeroes(void **state)
{
    (void)state;
    const size_t sizes[] = { 1, 16, 100, 1000, 5000, 64 * KiB, 200 * KiB,
                             2 * MiB, 20 * MiB };
    const size_t n = sizeof sizes / sizeof sizes[0];
    /* reused memory: blocks filled and freed, then calloc'ed at the same
     * sizes, several times over so freed blocks come back */
    for (int round = 0; round < 4; round++) {
        char *dirty[16];
        for (size_t i = 0; i < n; i++) {
            int count = sizes[i] > 1 * MiB ? 2 : 16;
            for (int k = 0; k < count; k++) {
                dirty[k] = malloc(sizes[i]);
                assert_non_null(dirty[k]);
                memset(dirty[k], 0xa5, malloc_usable_size(dirty[k]));
            }
            for (int k = 0; k < count; k++)
                free(dirty[k]);
            for (int k = 0; k < count; k++) {
                dirty[k] = calloc(1, sizes[i]);
                assert_non_null(dirty[k]);
                if (!tu_all_bytes(dirty[k], sizes[i], 0))
                    fail_msg("calloc(1, %zu) round %d: not zeroed", sizes[i], round);
            }
            for (int k = 0; k < count; k++)
                free(dirty[k]);
        }
    }
    char *arr = calloc(1000, 24);
    assert_non_null(arr);
    assert_true(tu_all_bytes(arr, 24000, 0));
    free(arr);

    /* the product overflows size_t, or exceeds PTRDIFF_MAX */
    assert_null_errno(calloc_may_fail(SIZE_MAX / 2 + 1, 2), ENOMEM);
    assert_null_errno(calloc_may_fail((size_t)1 << 32, (size_t)1 << 32), ENOMEM);
    assert_null_errno(calloc_may_fail(SIZE_MAX, SIZE_MAX), ENOMEM);
    assert_null_errno(calloc_may_fail(PTRDIFF_MAX, 2), ENOMEM);
}

/* Requests above PTRDIFF_MAX fail with ENOMEM from every entry point, and a
 * failed realloc leaves the block as it was. */
static void test_huge_sizes(void **state)
{
    (void)state;
    const size_t huge[] = { (size_t)PTRDIFF_MAX + 1, SIZE_MAX - 4096, SIZE_MAX };
    char *keep = malloc(1000);
    assert_non_null(keep);
    tu_fill(keep, 1000, 3);
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        size_t n = huge[i];
        assert_null_errno(malloc_may_fail(n), ENOMEM);
        assert_null_errno(calloc_may_fail(1, n), ENOMEM);
        assert_null_errno(realloc_may_fail(NULL, n), ENOMEM);
        assert_null_errno(realloc_may_fail(keep, n), ENOMEM);
        assert_null_errno(reallocarray_may_fail(NULL, n, 1), ENOMEM);
        assert_null_errno(reallocarray_may_fail(keep, 1, n), ENOMEM);
        assert_null_errno(aligned_alloc_may_fail(64, n), ENOMEM);
        assert_null_errno(memalign_may_fail(4096, n), ENOMEM);
        assert_null_errno(valloc_may_fail(n), ENOMEM);
        assert_null_errno(pvalloc_may_fail(n), ENOMEM);
        void *out = &out;
        assert_int_equal(posix_memalign_may_fail(&out, 64, n), ENOMEM);
        assert_ptr_equal(out, &out);
    }
    assert_pattern(keep, 1000, 3);
    assert_true(malloc_usable_size(keep) >= 1000);
    free(keep);
}

static void test_reallocarray(void **state)
{
    (void)state;
    int *a = reallocarray(NULL, 10, sizeof *a);
    assert_non_null(a);
    for (int i = 0; i < 10; i++)
        a[i] = i * i;
    a = reallocarray(a, 100000, sizeof *a);
    assert_non_null(a);
    for (int i = 0; i < 10; i++)
        assert_int_equal(a[i], i * i);
    a[99999] = 5;

    /* n * size overflows: NULL, ENOMEM, the array untouched */
    assert_null_errno(reallocarray_may_fail(a, SIZE_MAX / 2 + 1, 2), ENOMEM);
    assert_null_errno(reallocarray_may_fail(a, (size_t)1 << 33, (size_t)1 << 31), ENOMEM);
    assert_null_errno(reallocarray_may_fail(NULL, SIZE_MAX, SIZE_MAX), ENOMEM);
    for (int i = 0; i < 10; i++)
        assert_int_equal(a[i], i * i);
    assert_int_equal(a[99999], 5);
    a = reallocarray(a, 3, sizeof *a);
    assert_non_null(a);
    assert_int_equal(a[2], 4);
    free(a);
}

static void test_posix_memalign(void **state)
{
    (void)state;
    /* EINVAL: zero, not a power of two, or not a multiple of sizeof(void*);
     * the out pointer keeps its value */
    const size_t bad[] = { 0, 1, 2, 4, 3, 12, 24, 48, 100, 4097, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = &out;
        int rc = posix_memalign_may_fail(&out, bad[i], 16);
        if (rc != EINVAL)
            fail_msg("posix_memalign(align %zu) = %d, expected EINVAL", bad[i], rc);
        assert_ptr_equal(out, &out);
    }
    /* a valid alignment too large to satisfy */
    void *out = &out;
    assert_int_equal(posix_memalign_may_fail(&out, (size_t)1 << 63, 8), ENOMEM);
    assert_ptr_equal(out, &out);

    /* alignments 8 .. 64 MiB, several live at once, whole blocks writable */
    for (size_t align = sizeof(void *); align <= 64 * MiB; align *= 2) {
        const size_t sizes[] = { 1, 100, align - 1, align + 1 };
        void *blocks[4];
        for (int k = 0; k < 4; k++) {
            blocks[k] = NULL;
            assert_int_equal(posix_memalign(&blocks[k], align, sizes[k]), 0);
            assert_non_null(blocks[k]);
            if (!is_aligned(blocks[k], align))
                fail_msg("posix_memalign(%zu, %zu) = %p", align, sizes[k], blocks[k]);
            assert_true(malloc_usable_size(blocks[k]) >= sizes[k]);
            tu_fill(blocks[k], sizes[k], align + (uint64_t)k);
        }
        for (int k = 0; k < 4; k++) {
            assert_pattern(blocks[k], sizes[k], align + (uint64_t)k);
            free(blocks[k]);
        }
    }
}

static void test_aligned_entry_points(void **state)
{
    (void)state;
    const size_t pg = page_size();
    /* aligned_alloc and memalign, several blocks live at once, each written
     * over its whole usable size (an aligned block inside a larger one must
     * not report more than it owns) */
    for (size_t align = 1; align <= 4 * MiB; align *= 2) {
        const size_t sizes[] = { align, 3 * align, align + 17 };
        char *blocks[6];
        size_t usable[6];
        for (int k = 0; k < 6; k++) {
            size_t n = sizes[k / 2];
            blocks[k] = k % 2 ? memalign(align, n) : aligned_alloc(align, n);
            assert_non_null(blocks[k]);
            if (!is_aligned(blocks[k], align))
                fail_msg("%s(%zu, %zu) = %p", k % 2 ? "memalign" : "aligned_alloc",
                         align, n, (void *)blocks[k]);
            usable[k] = malloc_usable_size(blocks[k]);
            assert_true(usable[k] >= n);
            tu_fill(blocks[k], usable[k], align + (uint64_t)k);
        }
        for (int k = 0; k < 6; k++) {
            assert_pattern(blocks[k], usable[k], align + (uint64_t)k);
            free(blocks[k]);
        }
    }

    const size_t sizes[] = { 1, 100, pg - 1, pg, pg + 1, 10 * pg + 5, 3 * MiB };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *v = valloc(sizes[k]);
        char *pv = pvalloc(sizes[k]);
        assert_non_null(v);
        assert_non_null(pv);
        assert_true(is_aligned(v, pg));
        assert_true(is_aligned(pv, pg));
        assert_true(malloc_usable_size(v) >= sizes[k]);
        /* pvalloc rounds the size up to whole pages */
        size_t whole = (sizes[k] + pg - 1) / pg * pg;
        if (malloc_usable_size(pv) < whole)
            fail_msg("pvalloc(%zu): usable %zu < %zu", sizes[k],
                     malloc_usable_size(pv), whole);
        memset(v, 0x33, sizes[k]);
        memset(pv, 0x44, whole);
        free(v);
        free(pv);
    }
}

static void test_usable_size(void **state)
{
    (void)state;
    assert_int_equal(malloc_usable_size(NULL), 0);
    tu_rng rng = { tu_test_seed(77) };
    enum { LIVE = 256 };
    char *b[LIVE];
    size_t u[LIVE];
    for (int i = 0; i < LIVE; i++) {
        size_t n = i < 8 ? (size_t)(i + 1) * 3 * MiB / 2 : tu_rand_log(&rng, 1, 512 * KiB);
        b[i] = malloc(n);
        assert_non_null(b[i]);
        u[i] = malloc_usable_size(b[i]);
        if (u[i] < n)
            fail_msg("malloc(%zu): usable size %zu", n, u[i]);
        /* every usable byte belongs to the block alone */
        tu_fill(b[i], u[i], (uint64_t)i);
    }
    for (int i = 0; i < LIVE; i++) {
        assert_pattern(b[i], u[i], (uint64_t)i);
        assert_int_equal(malloc_usable_size(b[i]), u[i]);
        /* realloc within the usable size keeps everything */
        char *q = realloc(b[i], u[i]);
        assert_non_null(q);
        assert_pattern(q, u[i], (uint64_t)i);
        free(q);
    }
}

static void test_free_sized(void **state)
{
    (void)state;
    if (tu_malloc_is_mmheap())
        assert_true(free_sized && free_aligned_sized);
    if (!free_sized || !free_aligned_sized)
        skip();

    size_t used0, used1, footprint;
    tu_malloc_usage(&used0, &footprint);
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    tu_rng rng = { tu_test_seed(5) };
    for (int i = 0; i < 2000; i++) {
        size_t n = tu_rand_log(&rng, 1, i % 100 ? 64 * KiB : 4 * MiB);
        char *p = i % 3 ? malloc(n) : calloc(1, n);
        assert_non_null(p);
        memset(p, 1, n);
        free_sized(p, n);

        size_t align = (size_t)16 << (i % 12);
        size_t an = (n + align - 1) / align * align;
        char *a = aligned_alloc(align, an);
        assert_non_null(a);
        memset(a, 2, an);
        free_aligned_sized(a, align, an);
    }
    /* nothing leaked */
    tu_malloc_usage(&used1, &footprint);
    if (used1 > used0 + 64 * KiB)
        fail_msg("in use before %zu, after %zu", used0, used1);
}

/* glibc's __libc_* names are the same allocator as the standard ones:
 * blocks cross between them. */
static void test_libc_aliases(void **state)
{
    (void)state;
    if (!__libc_malloc || !__libc_free || !__libc_calloc || !__libc_realloc ||
        !__libc_memalign || !__libc_valloc || !__libc_pvalloc) {
        assert_false(tu_malloc_is_mmheap());
        skip();
    }

    char *a = __libc_malloc(1000);
    assert_from_malloc_heap(a);
    tu_fill(a, 1000, 9);
    assert_true(malloc_usable_size(a) >= 1000);
    char *b = realloc(a, 300 * KiB);
    assert_non_null(b);
    assert_pattern(b, 1000, 9);
    free(b);

    char *c = malloc(500);
    assert_non_null(c);
    tu_fill(c, 500, 10);
    char *d = __libc_realloc(c, 5 * MiB);
    assert_from_malloc_heap(d);
    assert_pattern(d, 500, 10);
    __libc_free(d);

    char *z = __libc_calloc(100, 100);
    assert_from_malloc_heap(z);
    assert_true(tu_all_bytes(z, 10000, 0));
    __libc_free(z);

    const size_t pg = page_size();
    void *m = __libc_memalign(8192, 100);
    void *v = __libc_valloc(100);
    void *pv = __libc_pvalloc(100);
    assert_from_malloc_heap(m);
    assert_from_malloc_heap(v);
    assert_from_malloc_heap(pv);
    assert_true(is_aligned(m, 8192));
    assert_true(is_aligned(v, pg));
    assert_true(is_aligned(pv, pg));
    assert_true(malloc_usable_size(pv) >= pg);
    free(m);
    __libc_free(v);
    free(pv);
}

static void test_mallopt_mallinfo_trim(void **state)
{
    (void)state;
    int r = mallopt(M_TRIM_THRESHOLD, 256 * 1024);
    assert_true(r == 0 || r == 1);
    r = mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    assert_true(r == 0 || r == 1);
    r = mallopt(M_ARENA_MAX, 4);
    assert_true(r == 0 || r == 1);

    /* live blocks keep their contents through a trim that may give free
     * memory back to the system */
    enum { N = 400 };
    char *b[N];
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i % 40 + 1) * 1000;
        b[i] = malloc(n);
        assert_non_null(b[i]);
        tu_fill(b[i], n, (uint64_t)i);
    }
    for (int i = 0; i < N; i += 2)
        free(b[i]);
    r = malloc_trim(0);
    assert_true(r == 0 || r == 1);
    for (int i = 1; i < N; i += 2) {
        assert_pattern(b[i], (size_t)(i % 40 + 1) * 1000, (uint64_t)i);
        free(b[i]);
    }

    /* mallinfo2: the counts are consistent; where they are kept at all,
     * the bytes in use cover a block just allocated */
    char *big = malloc(3 * MiB);
    assert_non_null(big);
    memset(big, 1, 3 * MiB);
    struct mallinfo2 mi = mallinfo2();
    if (mi.uordblks + mi.hblkhd != 0)
        assert_true(mi.uordblks + mi.hblkhd >= 3 * MiB);
    assert_true(mi.fordblks <= mi.arena);
    free(big);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
    assert_true(old.uordblks >= 0 && old.fordblks >= 0);
}

/* The process's resident memory, read without allocating. */
static size_t resident_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = 0;
    unsigned long size, resident;
    assert_int_equal(sscanf(buf, "%lu %lu", &size, &resident), 2);
    return resident * page_size();
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A big block, written and freed, leaves the resident memory: at once
 * (glibc unmaps it), or within a few seconds while the program goes on
 * allocating (an allocator that hands free memory back after a delay);
 * malloc_trim(0) hands it back at once. */
static void test_free_returns_memory(void **state)
{
    (void)state;
    const size_t big = 64 * MiB, gone = 48 * MiB;
    char *p = malloc(big);
    assert_non_null(p);
    memset(p, 1, big);
    size_t with_block = resident_bytes();
    free(p);
    double start = seconds_now(), waited = 0;
    while (resident_bytes() + gone > with_block && waited < 3) {
        /* the program keeps allocating, small blocks and large */
        for (size_t i = 0; i < 10; i++) {
            char *small = malloc(i * 1000 + 1), *large = malloc(1 * MiB);
            assert_non_null(small);
            assert_non_null(large);
            memset(small, 2, i * 1000 + 1);
            memset(large, 3, 4096);
            free(small);
            free(large);
        }
        usleep(10000);
        waited = seconds_now() - start;
    }
    if (resident_bytes() + gone > with_block)
        fail_msg("%zu MiB resident with a %zu MiB block, still %zu MiB %.1f s after "
                 "it was freed", with_block / MiB, big / MiB, resident_bytes() / MiB, waited);

    p = malloc(big);
    assert_non_null(p);
    memset(p, 4, big);
    with_block = resident_bytes();
    free(p);
    malloc_trim(0);
    if (resident_bytes() + gone > with_block)
        fail_msg("%zu MiB resident with a %zu MiB block, %zu MiB after free and "
                 "malloc_trim(0)", with_block / MiB, big / MiB, resident_bytes() / MiB);
}

/* malloc_stats and malloc_info write reports; capture them. */
static void test_malloc_reports(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(malloc_info(0, f), 0);
    assert_int_equal(fclose(f), 0);
    /* an empty report is allowed; a report is glibc's XML */
    if (len > 0 && strncmp(text, "<malloc", 7) != 0)
        fail_msg("malloc_info wrote \"%.60s\"", text);
    free(text);

    /* malloc_stats prints to stderr: send it to a file for the call */
    char *path = tu_path("malloc_stats.txt");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    malloc_stats();
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(fd);
    unlink(path);
    free(path);
}

/* Run free_bad(p) in a child whose stderr is a pipe: it must die of
 * SIGABRT, as under glibc, with a line on stderr saying what and naming
 * the pointer freed, bad. */
static void expect_free_abort(void (*free_bad)(char *), char *p, const void *bad,
                              const char *what)
{
    int pfd[2];
    pid_t pid = tu_fork_piped(pfd, 0);
    if (pid == 0) {
        struct rlimit none = { 0, 0 };
        setrlimit(RLIMIT_CORE, &none);
        dup2(pfd[1], STDERR_FILENO);
        free_bad(p);
        _exit(0);
    }
    char out[1024];
    size_t len = 0;
    for (ssize_t n; len + 1 < sizeof out && (n = read(pfd[0], out + len, sizeof out - 1 - len)) > 0;)
        len += (size_t)n;
    out[len] = 0;
    close(pfd[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char hex[40];
    snprintf(hex, sizeof hex, "%p", bad);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT || !strstr(out, what) || !strstr(out, hex))
        fail_msg("free of a bad pointer %s: want SIGABRT and \"%s ... %s\" on stderr, got "
                 "%s %d and \"%s\"", hex, what, hex, WIFSIGNALED(st) ? "signal" : "exit status",
                 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), out);
}

/* Through a pointer, so that the compiler does not warn about the bug. */
static void (*volatile free_unchecked)(void *) = free;

static void free_interior(char *p)
{
    free_unchecked(p + 16);
}

static void free_twice(char *p)
{
    free_unchecked(p);
    free_unchecked(p);
}

static void *free_twice_thread(void *p)
{
    free_twice(p);
    return NULL;
}

/* The second free by a thread that does not own the block's page. */
static void free_twice_remote(char *p)
{
    pthread_t t;
    if (pthread_create(&t, NULL, free_twice_thread, p) == 0)
        pthread_join(t, NULL);
}

static void *(*volatile realloc_unchecked)(void *, size_t) = realloc;

static void realloc_interior(char *p)
{
    (void)!realloc_unchecked(p + 16, 200);
}

static void test_free_bad_pointer_aborts(void **state)
{
    (void)state;
    if (!tu_malloc_is_mmheap())
        skip();
    char *keep = malloc(100), *p = malloc(100); /* keep holds the page */
    assert_non_null(keep);
    assert_non_null(p);
    expect_free_abort(free_interior, p, p + 16, "free(): invalid pointer");
    expect_free_abort(free_twice, p, p, "free(): double free");
    expect_free_abort(free_twice_remote, p, p, "free(): double free");
    expect_free_abort(realloc_interior, p, p + 16, "realloc(): invalid pointer");
    free(p);
    free(keep);
}

/* Random malloc/calloc/realloc/aligned/free over a set of live blocks, each
 * checked against its pattern whenever it is touched. */
static void test_random_ops(void **state)
{
    (void)state;
    enum { SLOTS = 1024 };
    static char *blk[SLOTS];
    static size_t len[SLOTS];
    static uint64_t seed[SLOTS];
    uint64_t s0 = tu_test_seed(0x5eed);
    tu_rng rng = { s0 };
    long ops = tu_scaled(300000, 2000);
    uint64_t next_seed = 1;
    for (long op = 0; op < ops; op++) {
        size_t i = tu_rand(&rng) % SLOTS;
        size_t n = tu_rand(&rng) % 500 ? tu_rand_log(&rng, 1, 64 * KiB)
                                      : tu_rand_log(&rng, 64 * KiB, 6 * MiB);
        if (blk[i]) {
            size_t at = tu_check(blk[i], len[i], seed[i]);
            if (at != (size_t)-1)
                fail_msg("seed %#llx op %ld: block %p (%zu bytes) corrupt at %zu",
                         (unsigned long long)s0, op, (void *)blk[i], len[i], at);
        }
        switch (tu_rand(&rng) % 8) {
        case 0: case 1: case 2:
            free(blk[i]);
            blk[i] = NULL;
            continue;
        case 3: {
            char *q = realloc(blk[i], n);
            assert_non_null(q);
            if (blk[i])
                assert_pattern(q, n < len[i] ? n : len[i], seed[i]);
            blk[i] = q;
            break;
        }
        case 4:
            free(blk[i]);
            blk[i] = calloc(1, n);
            assert_non_null(blk[i]);
            assert_true(tu_all_bytes(blk[i], n, 0));
            break;
        case 5: {
            size_t align = (size_t)16 << (tu_rand(&rng) % 10);
            free(blk[i]);
            blk[i] = aligned_alloc(align, n);
            assert_non_null(blk[i]);
            assert_true(is_aligned(blk[i], align));
            break;
        }
        default:
            free(blk[i]);
            blk[i] = malloc(n);
            assert_non_null(blk[i]);
        }
        assert_true(malloc_usable_size(blk[i]) >= n);
        len[i] = n;
        seed[i] = next_seed++;
        tu_fill(blk[i], n, seed[i]);
    }
    for (size_t i = 0; i < SLOTS; i++) {
        if (blk[i])
            assert_pattern(blk[i], len[i], seed[i]);
        free(blk[i]);
        blk[i] = NULL;
    }
}

int main(void)
{
    if (!tu_malloc_testable())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_is_mmheap),
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_free_null_keeps_errno),
        cmocka_unit_test(test_remote_free_keeps_errno),
        cmocka_unit_test(test_realloc_null_and_zero),
        cmocka_unit_test(test_realloc_keeps_contents),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_posix_memalign),
        cmocka_unit_test(test_aligned_entry_points),
        cmocka_unit_test(test_usable_size),
        cmocka_unit_test(test_free_sized),
        cmocka_unit_test(test_libc_aliases),
        cmocka_unit_test(test_mallopt_mallinfo_trim),
        cmocka_unit_test(test_free_returns_memory),
        cmocka_unit_test(test_malloc_reports),
        cmocka_unit_test(test_random_ops),
        cmocka_unit_test(test_free_bad_pointer_aborts),
    };
    return TU_RUN(tests);
}
