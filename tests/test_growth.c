/* test_growth: heaps grow in place up to max_size, and max_size grows in
 * place (a larger one at reopen, mmh_grow); chosen bases; mmh_heap_of. */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define CHOSEN_BASE ((uintptr_t)0x300000000000ull)
#define TiB         ((size_t)1 << 40)
#define GROW_BASE   (CHOSEN_BASE + 256 * GiB) /* room for 1 TiB after it */

struct blk {
    unsigned char *p;
    size_t n;
};

/* Allocates `total` bytes in blocks of 1 KiB .. 2 MiB, checking the base
 * never moves; returns the blocks (caller frees the array). */
static struct blk *fill_heap(mmh_heap *h, size_t total, size_t *count)
{
    struct mmh_stats st0 = tu_stats(h);
    size_t cap = 1024, n = 0, sum = 0;
    struct blk *b = malloc(cap * sizeof *b);
    assert_non_null(b);
    tu_rng rng = { total };
    while (sum < total) {
        size_t len = tu_rand_log(&rng, 1024, 2 * MiB);
        unsigned char *p = mmh_alloc(h, len);
        if (!p)
            fail_msg("alloc %zu after %zu bytes failed: %s", len, sum, mmh_errmsg());
        tu_fill(p, len, (uint64_t)(uintptr_t)p);
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap * sizeof *b);
            assert_non_null(b);
        }
        b[n].p = p;
        b[n].n = len;
        n++;
        sum += len;
        struct mmh_stats st = tu_stats(h);
        if (st.base != st0.base)
            fail_msg("heap moved from %#llx to %#llx", (unsigned long long)st0.base,
                     (unsigned long long)st.base);
        assert_true(tu_in_heap(&st, p, len));
        assert_true(st.size <= st.max_size);
    }
    *count = n;
    return b;
}

static void check_blocks(struct blk *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_pattern(b[i].p, b[i].n, (uint64_t)(uintptr_t)b[i].p);
}

static void test_growth_file(void **state)
{
    (void)state;
    char *path = tu_path("grow.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 4 * MiB, 256 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct mmh_stats st0 = tu_stats(h);
    assert_true(st0.size <= 8 * MiB);
    assert_int_equal(st0.max_size, 256 * MiB);
    size_t n;
    struct blk *b = fill_heap(h, 64 * MiB, &n);
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.base, st0.base);
    assert_true(st1.size >= 64 * MiB);
    check_blocks(b, n);
    assert_int_equal(mmh_set_root(h, b[0].p), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_true(tu_file_size(path) >= (off_t)(64 * MiB));
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct mmh_stats st2 = tu_stats(h);
    assert_int_equal(st2.base, st0.base);
    assert_int_equal(st2.max_size, 256 * MiB);   /* the reservation is recorded */
    assert_int_equal(st2.allocations, n);
    check_blocks(b, n);
    assert_int_equal(mmh_set_root(h, NULL), 0); /* its block is freed next */
    for (size_t i = 0; i < n; i++)
        mmh_free(h, b[i].p);
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(mmh_close(h), 0);
    free(b);
    unlink(path);
    free(path);
}

static void test_growth_anon(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 4 * MiB, 256 * MiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    size_t n;
    struct blk *b = fill_heap(h, 64 * MiB, &n);
    check_blocks(b, n);
    for (size_t i = 0; i < n; i++)
        mmh_free(h, b[i].p);
    assert_int_equal(tu_stats(h).allocations, 0);
    /* again and again: the space is reused.  The same sequence may land a
     * little differently on a used heap (one more segment, say), but
     * refilling must not keep growing it. */
    uint64_t size1 = tu_stats(h).size;
    for (int round = 0; round < 3; round++) {
        free(b);
        b = fill_heap(h, 64 * MiB, &n);
        uint64_t sz = tu_stats(h).size;
        if (sz > size1 + size1 / 10 + 4 * MiB)
            fail_msg("refill %d of a freed heap grew it from %llu to %llu bytes",
                     round, (unsigned long long)size1, (unsigned long long)sz);
        for (size_t i = 0; i < n; i++)
            mmh_free(h, b[i].p);
        assert_int_equal(tu_stats(h).allocations, 0);
    }
    free(b);
    assert_int_equal(mmh_close(h), 0);
}

/* Allocation beyond max_size fails with ENOMEM and leaves a working heap. */
static void run_max_size(mmh_heap *h, size_t max)
{
    enum { CAP = 256 };
    void *ps[CAP];
    int n = 0;
    for (;;) {
        errno = 0;
        void *p = mmh_alloc(h, 1 * MiB);
        int e = errno;
        if (!p) {
            assert_int_equal(e, ENOMEM);
            assert_true(mmh_errmsg()[0] != '\0');
            break;
        }
        assert_true(n < CAP);
        memset(p, n, 1 * MiB);
        ps[n++] = p;
    }
    struct mmh_stats st = tu_stats(h);
    assert_true(st.size <= max);
    assert_int_equal(st.max_size, max);
    /* most of the reservation was usable */
    if ((size_t)n * MiB < max / 2)
        fail_msg("only %d MiB of %zu MiB could be allocated", n, max >> 20);
    assert_null_errno(mmh_alloc(h, 2 * MiB), ENOMEM);
    assert_null_errno(mmh_alloc(h, max), ENOMEM);
    /* small blocks may still fit; the heap keeps working */
    void *s = mmh_alloc(h, 16);
    if (s)
        mmh_free(h, s);
    mmh_free(h, ps[n - 1]);
    void *again = mmh_alloc(h, 1 * MiB);
    assert_non_null(again);
    memset(again, 0xFF, 1 * MiB);
    for (int i = 0; i < n - 1; i++) {
        unsigned char *c = ps[i];
        assert_int_equal(c[0], (unsigned char)i);
        assert_int_equal(c[MiB - 1], (unsigned char)i);
        mmh_free(h, ps[i]);
    }
    mmh_free(h, again);
    assert_int_equal(tu_stats(h).allocations, 0);
    /* and after freeing everything, a big block fits again */
    void *big = mmh_alloc(h, max / 4);
    assert_non_null(big);
    mmh_free(h, big);
}

static void test_max_size_anon(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 0, 32 * MiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    run_max_size(h, 32 * MiB);
    assert_int_equal(mmh_close(h), 0);
}

static void test_max_size_file(void **state)
{
    (void)state;
    char *path = tu_path("max.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 48 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    run_max_size(h, 48 * MiB);
    assert_int_equal(mmh_close(h), 0);
    assert_true(tu_file_size(path) <= (off_t)(48 * MiB));
    unlink(path);
    free(path);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    /* size above max_size makes no sense */
    mmh_config cfg = tu_cfg(0, 64 * MiB, 16 * MiB);
    errno = 0;
    mmh_heap *h = mmh_open(NULL, &cfg);
    if (h) {
        /* accepted only if clamped */
        struct mmh_stats st = tu_stats(h);
        assert_true(st.size <= st.max_size);
        mmh_close(h);
    } else {
        assert_int_equal(errno, EINVAL);
    }
    /* an impossible reservation fails cleanly */
    cfg = tu_cfg(0, 0, SIZE_MAX / 2);
    errno = 0;
    h = mmh_open(NULL, &cfg);
    assert_null(h);
    assert_true(errno == ENOMEM || errno == EINVAL);
    assert_true(mmh_errmsg()[0] != '\0');
}

static void test_chosen_base(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 0, 256 * MiB);
    cfg.base = (void *)CHOSEN_BASE;
    mmh_heap *h = mmh_open(NULL, &cfg);
    if (!h)
        fail_msg("open at %p: %s", cfg.base, mmh_errmsg());
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.base, CHOSEN_BASE);
    void *p = mmh_alloc(h, 100);
    assert_non_null(p);
    assert_true((uintptr_t)p > CHOSEN_BASE && (uintptr_t)p < CHOSEN_BASE + 256 * MiB);
    mmh_free(h, p);

    /* the range is taken now */
    mmh_config cfg2 = cfg;
    assert_null_errno(mmh_open(NULL, &cfg2), EADDRINUSE);
    assert_int_equal(mmh_close(h), 0);

    /* a file heap at a chosen base, reopened there */
    char *path = tu_path("base.heap");
    cfg.flags = MMH_CREATE;
    cfg.base = (void *)(CHOSEN_BASE + 64 * GiB);
    h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("open at %p: %s", cfg.base, mmh_errmsg());
    assert_int_equal(tu_stats(h).base, CHOSEN_BASE + 64 * GiB);
    char *s = mmh_alloc(h, 32);
    assert_non_null(s);
    strcpy(s, "at a chosen base");
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).base, CHOSEN_BASE + 64 * GiB);
    assert_ptr_equal(mmh_root(h), s);
    assert_string_equal(mmh_root(h), "at a chosen base");
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);

    /* misaligned */
    cfg = tu_cfg(0, 0, 0);
    cfg.base = (void *)(CHOSEN_BASE + 1);
    assert_null_errno(mmh_open(NULL, &cfg), EINVAL);
    assert_true(mmh_errmsg()[0] != '\0');
    cfg.base = (void *)(CHOSEN_BASE + 4096 + 8);
    assert_null_errno(mmh_open(NULL, &cfg), EINVAL);
    /* a file is not created for a refused base */
    char *p2 = tu_path("badbase.heap");
    cfg.flags = MMH_CREATE;
    assert_null_errno(mmh_open(p2, &cfg), EINVAL);
    assert_errmsg_contains(p2);
    free(p2);
}

/* A chosen base that is already mapped by someone else. */
static void test_chosen_base_taken(void **state)
{
    (void)state;
    uintptr_t want = CHOSEN_BASE + 128 * GiB;
    void *m = mmap((void *)(want + 8 * MiB), 4096, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m == MAP_FAILED || m != (void *)(want + 8 * MiB))
        skip();
    mmh_config cfg = tu_cfg(0, 0, 64 * MiB);
    cfg.base = (void *)want;
    assert_null_errno(mmh_open(NULL, &cfg), EADDRINUSE);
    /* our mapping is untouched */
    assert_int_equal(*(volatile char *)m, 0);
    munmap(m, 4096);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).base, want);
    assert_int_equal(mmh_close(h), 0);
}

/* Several heaps at once get disjoint reservations. */
static void test_many_heaps(void **state)
{
    (void)state;
    enum { H = 8 };
    mmh_heap *h[H];
    tu_span sp[H];
    for (int i = 0; i < H; i++) {
        h[i] = mmh_open(NULL, NULL);
        if (!h[i])
            fail_msg("heap %d: %s", i, mmh_errmsg());
        struct mmh_stats st = tu_stats(h[i]);
        sp[i].lo = st.base;
        sp[i].hi = st.base + st.max_size;
        unsigned char *p = mmh_alloc(h[i], 1000);
        assert_non_null(p);
        memset(p, i, 1000);
        assert_int_equal(mmh_set_root(h[i], p), 0);
    }
    assert_int_equal(tu_spans_sort_check(sp, H), -1);
    for (int i = 0; i < H; i++) {
        unsigned char *p = mmh_root(h[i]);
        assert_true(tu_all_bytes(p, 1000, (unsigned char)i));
        assert_int_equal(mmh_close(h[i]), 0);
    }
}

/* Resident pages of [p, p + len). */
static size_t resident_pages(void *p, size_t len)
{
    size_t pages = len / 4096, n = 0;
    unsigned char *vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

/* Freed large blocks of an anonymous heap stay mapped for a while, so an
 * allocation soon after takes them without page faults; once they have
 * been free for the purge delay (a second), a later free hands them back. */
static void test_free_returns_memory_anon(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    size_t len = 32 * MiB;
    char *big = mmh_alloc(h, len);
    char *mid = mmh_alloc(h, 3 * MiB);          /* a span inside a segment */
    assert_non_null(big);
    assert_non_null(mid);
    memset(big, 0x5a, len);
    memset(mid, 0x5a, 3 * MiB);
    assert_true(resident_pages(big, len) == len / 4096);
    mmh_free(h, mid);
    mmh_free(h, big);
    assert_true(resident_pages(big, len) == len / 4096);
    usleep(1100 * 1000);
    mmh_free(h, mmh_alloc(h, 256 * 1024));
    if (resident_pages(big, len) > len / 4096 / 64)
        fail_msg("%zu of %zu pages still resident a second after free", resident_pages(big, len),
                 len / 4096);
    assert_true(tu_stats(h).purged_bytes >= len);
    assert_int_equal(mmh_close(h), 0);
}

/* In a file heap, the freed range becomes a hole with the next commit's
 * checkpoint. */
static void test_free_punches_file(void **state)
{
    (void)state;
    char *path = tu_path("punch.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    size_t len = 32 * MiB;
    char *big = mmh_alloc(h, len);
    assert_non_null(big);
    memset(big, 0x5a, len);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_checkpoint(h), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    long long full = (long long)st.st_blocks * 512;
    assert_true(full >= (long long)len);
    mmh_free(h, big);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_checkpoint(h), 0);
    assert_int_equal(stat(path, &st), 0);
    long long after = (long long)st.st_blocks * 512;
    if (after > full - (long long)len + (long long)MiB)
        fail_msg("file uses %lld bytes after freeing %zu of %lld", after, len, full);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* A private heap on a full tmpfs (16 MiB, a private mount namespace):
 * blocks are allocated and every byte stored, until mmh_alloc fails with
 * ENOMEM naming the file; then half are freed, a commit hands their pages
 * back (holes in the file) and the heap is filled again.  Growth and reuse
 * once reserved nothing on tmpfs, where a fault on a hole of even a
 * private mapping needs a page: the stores died of SIGBUS.  Exit 77: not
 * allowed to mount (not root). */
#define TMPFS_BLOCK (256 * KiB)

static int fill(mmh_heap *h, unsigned char **blocks, size_t cap, size_t *n)
{
    while (*n < cap) {
        errno = 0;
        unsigned char *p = mmh_alloc(h, TMPFS_BLOCK);
        if (!p) {
            CK(errno == ENOMEM);
            CK(strstr(mmh_errmsg(), "tmpfs.heap") != NULL);
            return 0;
        }
        memset(p, 0x6b, TMPFS_BLOCK);
        blocks[(*n)++] = p;
    }
    fprintf(stderr, "%zu blocks of %zu bytes fit in a 16 MiB tmpfs\n", cap, (size_t)TMPFS_BLOCK);
    return 1;
}

static int tmpfs_full_child(void *arg)
{
    const char *dir = arg;
    signal(SIGBUS, SIG_DFL); /* cmocka's handler would carry on in this child */
    if (tu_private_tmpfs(dir, "size=16m") != 0)
        return 77;
    char path[4096];
    snprintf(path, sizeof path, "%s/tmpfs.heap", dir);
    mmh_config cfg = tu_cfg(MMH_CREATE, 4 * MiB, 256 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    enum { CAP = 256 };
    unsigned char *blocks[CAP];
    size_t n = 0;
    CK(fill(h, blocks, CAP, &n) == 0);
    CK(n > 4);
    for (size_t i = 0; i < n; i += 2)
        mmh_free(h, blocks[i]);
    for (size_t i = 1, j = 0; i < n; i += 2)
        blocks[j++] = blocks[i];
    n /= 2;
    (void)mmh_commit(h); /* punches the purged ranges, if it has room */
    CK(fill(h, blocks, CAP, &n) == 0);
    for (size_t i = 0; i < n; i++)
        CK(tu_all_bytes(blocks[i], TMPFS_BLOCK, 0x6b));
    mmh_close(h);
    return 0;
}

static void test_full_tmpfs_private(void **state)
{
    (void)state;
    char *dir = tu_mkdir("tmpfs");
    int st = tu_run_child(tmpfs_full_child, dir);
    rmdir(dir);
    free(dir);
    if (WIFSIGNALED(st))
        fail_msg("storing into blocks mmh_alloc returned on a full tmpfs: killed by signal %d "
                 "(%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        skip(); /* mounting a tmpfs is not allowed here */
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("full-tmpfs child failed (status %#x)", st);
}

/* ---- growth past the reservation ---------------------------------------- */

/* Allocations of 1 MiB into v[n], v[n + 1], ... until the heap is full,
 * each filled with its index; the count in v then. */
static size_t fill_to_limit(mmh_heap *h, unsigned char **v, size_t n, size_t cap)
{
    while (n < cap && (v[n] = mmh_alloc(h, MiB)) != NULL) {
        memset(v[n], (int)(n & 0xff), MiB);
        n++;
    }
    assert_true(n < cap);
    assert_int_equal(errno, ENOMEM);
    return n;
}

static void check_filled(unsigned char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_true(tu_all_bytes(v[i], MiB, (unsigned char)(i & 0xff)));
}

/* A heap made at 64 MiB, reopened at 1 TiB, takes blocks past 64 MiB at the
 * same base, its old blocks intact; the new limit is in the file from then
 * on, and the heap passes mmheap check. */
static void test_reopen_larger(void **state)
{
    (void)state;
    char *path = tu_path("grow.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 64 * MiB);
    cfg.base = (void *)GROW_BASE;
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("open at %p: %s", cfg.base, mmh_errmsg());
    unsigned char *v[256];
    size_t n = fill_to_limit(h, v, 0, 256);
    assert_int_equal(mmh_close(h), 0);

    cfg = tu_cfg(0, 0, TiB);
    h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("reopen at 1 TiB: %s", mmh_errmsg());
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.base, GROW_BASE);
    assert_int_equal(st.max_size, TiB);
    check_filled(v, n);
    unsigned char *big = mmh_alloc(h, 200 * MiB);
    assert_non_null(big);
    assert_true((size_t)(big - (unsigned char *)GROW_BASE) >= 64 * MiB);
    memset(big, 0x5a, 200 * MiB);
    assert_int_equal(mmh_set_root(h, big), 0);
    assert_int_equal(mmh_close(h), 0);
    tu_check_heap_file(path);

    h = mmh_open(path, NULL); /* the file keeps the larger limit */
    assert_non_null(h);
    assert_int_equal(tu_stats(h).max_size, TiB);
    assert_ptr_equal(mmh_root(h), big);
    assert_true(tu_all_bytes(big, 200 * MiB, 0x5a));
    check_filled(v, n);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* A larger max_size whose range after the heap is taken: EADDRINUSE naming
 * the range, the file left as it was; MMH_RELOCATE opens it elsewhere. */
static void test_reopen_larger_taken(void **state)
{
    (void)state;
    char *path = tu_path("taken.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 64 * MiB);
    cfg.base = (void *)GROW_BASE;
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *s = mmh_alloc(h, 32);
    assert_non_null(s);
    strcpy(s, "before growth");
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
    void *m = mmap((void *)(GROW_BASE + 512 * MiB), 4096, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m != (void *)(GROW_BASE + 512 * MiB))
        skip();

    cfg = tu_cfg(0, 0, TiB);
    assert_null_errno(mmh_open(path, &cfg), EADDRINUSE);
    char range[64];
    snprintf(range, sizeof range, "%p-%p", (void *)(GROW_BASE + 64 * MiB),
             (void *)(GROW_BASE + TiB));
    assert_errmsg_contains(path);
    assert_errmsg_contains(range);
    assert_errmsg_contains("in use");
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).max_size, 64 * MiB);
    assert_int_equal(mmh_close(h), 0);

    cfg.flags = MMH_RELOCATE;
    h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("relocating open at 1 TiB: %s", mmh_errmsg());
    struct mmh_stats st = tu_stats(h);
    assert_true(st.base != GROW_BASE);
    assert_int_equal(st.max_size, TiB);
    assert_string_equal(mmh_root(h), "before growth");
    assert_int_equal(mmh_close(h), 0);
    munmap(m, 4096);
    unlink(path);
    free(path);
}

/* mmh_grow on a full heap, under each tracker: blocks past the old limit
 * are written, committed and found again; the range taken, a read-only
 * heap and bad sizes are errors that change nothing. */
static void grow_running(mmh_tracker tracker)
{
    char *path = tu_path("running.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 16 * MiB);
    cfg.base = (void *)GROW_BASE;
    cfg.tracker = tracker;
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h && errno == ENOTSUP) {
        free(path);
        return;
    }
    if (!h)
        fail_msg("open at %p: %s", cfg.base, mmh_errmsg());
    unsigned char *v[256];
    size_t old = fill_to_limit(h, v, 0, 256);
    assert_int_equal(mmh_grow(h, 64 * MiB), 0);
    assert_int_equal(tu_stats(h).max_size, 64 * MiB);
    size_t n = fill_to_limit(h, v, old, 256);
    assert_true(n - old >= 30); /* 3 blocks of 1 MiB in each new 4 MiB segment */
    assert_int_equal(mmh_grow(h, 8 * MiB), 0); /* smaller: nothing to do */
    assert_int_equal(tu_stats(h).max_size, 64 * MiB);
    assert_int_equal(mmh_grow(h, 3 * TiB), -1);
    assert_int_equal(errno, EINVAL);
    void *m = mmap((void *)(GROW_BASE + 96 * MiB), 4096, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    assert_true(m == (void *)(GROW_BASE + 96 * MiB));
    assert_int_equal(mmh_grow(h, 128 * MiB), -1);
    assert_int_equal(errno, EADDRINUSE);
    assert_errmsg_contains("in use");
    munmap(m, 4096);
    assert_int_equal(tu_stats(h).max_size, 64 * MiB);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &ro);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).max_size, 64 * MiB);
    check_filled(v, n);
    assert_int_equal(mmh_grow(h, 128 * MiB), -1);
    assert_int_equal(errno, EROFS);
    assert_int_equal(mmh_close(h), 0);
    assert_int_equal(mmh_grow(NULL, 128 * MiB), -1);
    assert_int_equal(errno, EINVAL);
    unlink(path);
    free(path);
}

static void test_grow_running(void **state)
{
    (void)state;
    grow_running(MMH_TRACK_UFFD);
    grow_running(MMH_TRACK_MPROTECT);
    grow_running(MMH_TRACK_NONE);
}

static void *heap_of_in_thread(void *p)
{
    return mmh_heap_of(p);
}

/* mmh_heap_of finds the heap whose reservation holds an address, follows
 * growth, and forgets a heap closed (the thread's cached answer too). */
static void test_heap_of(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 0, 64 * MiB);
    cfg.base = (void *)GROW_BASE;
    mmh_heap *a = mmh_open(NULL, &cfg), *b = mmh_open(NULL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    char *pa = mmh_alloc(a, 100), *pb = mmh_alloc(b, 100), *base = (char *)GROW_BASE;
    assert_ptr_equal(mmh_heap_of(pa), a);
    assert_ptr_equal(mmh_heap_of(pb), b);
    assert_ptr_equal(mmh_heap_of(base), a);
    assert_ptr_equal(mmh_heap_of(base + 64 * MiB - 1), a);
    assert_null(mmh_heap_of(base + 64 * MiB));
    assert_null(mmh_heap_of(base - 1));
    assert_null(mmh_heap_of(&cfg));
    assert_null(mmh_heap_of(NULL));
    assert_int_equal(mmh_grow(a, 128 * MiB), 0);
    assert_ptr_equal(mmh_heap_of(base + 100 * MiB), a);
    pthread_t t;
    void *got;
    assert_int_equal(pthread_create(&t, NULL, heap_of_in_thread, pb), 0);
    assert_int_equal(pthread_join(t, &got), 0);
    assert_ptr_equal(got, b);
    assert_ptr_equal(mmh_heap_of(pa), a); /* cached */
    assert_int_equal(mmh_close(a), 0);
    assert_null(mmh_heap_of(pa));
    assert_ptr_equal(mmh_heap_of(pb), b);
    assert_int_equal(mmh_close(b), 0);
    assert_null(mmh_heap_of(pb));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth_file),
        cmocka_unit_test(test_growth_anon),
        cmocka_unit_test(test_max_size_anon),
        cmocka_unit_test(test_max_size_file),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_chosen_base),
        cmocka_unit_test(test_chosen_base_taken),
        cmocka_unit_test(test_many_heaps),
        cmocka_unit_test(test_free_returns_memory_anon),
        cmocka_unit_test(test_free_punches_file),
        cmocka_unit_test(test_full_tmpfs_private),
        cmocka_unit_test(test_reopen_larger),
        cmocka_unit_test(test_reopen_larger_taken),
        cmocka_unit_test(test_grow_running),
        cmocka_unit_test(test_heap_of),
    };
    return TU_RUN(tests);
}
