/* test_tracker_ranges: the dirty ranges each tracker reports, through
 * the trackers' internal interface.
 *
 * Linked against the convenience library so it can reach h->track.ops: every
 * test opens a file heap with one tracker (mprotect or uffd; uffd tests skip
 * where mmh_open refuses it), writes in some shape and checks what
 * h->track.ops->scan reports, under h->lock as the commit calls it.
 *
 * The mprotect tracker may widen its granularity after many faults in one
 * epoch (to keep the number of VMAs bounded); the tests that write many
 * pages accept a reported superset within stated bounds, the small ones
 * expect exact pages. */
#include "testutil.h"
#include "track.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>

static const mmh_tracker trk_mprotect = MMH_TRACK_MPROTECT;
static const mmh_tracker trk_uffd = MMH_TRACK_UFFD;

static size_t ps;   /* the system page size */

static mmh_tracker tracker_of(void **state)
{
    return *(const mmh_tracker *)*state;
}

static const char *tracker_name(mmh_tracker t)
{
    return t == MMH_TRACK_UFFD ? "uffd" : t == MMH_TRACK_MPROTECT ? "mprotect" : "other";
}

/* ---- ranges ------------------------------------------------------------- */

typedef struct {
    size_t off, len;
} rg;

typedef struct {
    rg    *v;
    size_t n, cap;
    size_t total;
    int    bad;         /* not ascending, overlapping or not page-aligned */
    int    adjacent;    /* two reported ranges touch: not coalesced       */
} rgs;

static int rgs_add(rgs *r, size_t off, size_t len)
{
    if (r->n && off == r->v[r->n - 1].off + r->v[r->n - 1].len) {
        r->v[r->n - 1].len += len;
        r->total += len;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        rg *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return -1;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (rg){ off, len };
    r->total += len;
    return 0;
}

static int scan_cb(mmh_heap *h, size_t off, size_t len, void *arg)
{
    (void)h;
    rgs *r = arg;
    if (!len || off % ps || len % ps)
        r->bad = 1;
    if (r->n) {
        size_t end = r->v[r->n - 1].off + r->v[r->n - 1].len;
        if (off < end)
            r->bad = 1;
        if (off == end)
            r->adjacent = 1;
    }
    return rgs_add(r, off, len);
}

/* The ranges written since the last scan, merged where adjacent. */
static rgs scan(mmh_heap *h)
{
    rgs r;
    memset(&r, 0, sizeof r);
    assert_non_null(h->track.ops);
    pthread_mutex_lock(&h->lock);
    int rc = h->track.ops->scan(h, scan_cb, &r);
    pthread_mutex_unlock(&h->lock);
    if (rc != 0)
        fail_msg("scan failed: %s", mmh_errmsg());
    if (r.bad)
        fail_msg("scan reported ranges out of order, overlapping or not page-aligned");
    /* Coalesced: required of the mprotect backend (uffd ranges are merged
     * here: its scans may split a run at a batch boundary). */
    if (r.adjacent && h->track.kind == MMH_TRACK_MPROTECT)
        fail_msg("scan reported adjacent ranges separately");
    return r;
}

static void drain(mmh_heap *h)
{
    rgs r = scan(h);
    free(r.v);
}

static void print_rgs(const char *what, const rgs *r)
{
    fprintf(stderr, "%s: %zu range(s), %zu bytes:", what, r->n, r->total);
    for (size_t i = 0; i < r->n && i < 16; i++)
        fprintf(stderr, " [%#zx+%#zx)", r->v[i].off, r->v[i].len);
    fprintf(stderr, "%s\n", r->n > 16 ? " ..." : "");
}

static void assert_rgs_equal(const rgs *got, const rgs *want)
{
    int same = got->n == want->n;
    for (size_t i = 0; same && i < got->n; i++)
        same = got->v[i].off == want->v[i].off && got->v[i].len == want->v[i].len;
    if (!same) {
        print_rgs("expected", want);
        print_rgs("reported", got);
        fail_msg("scan did not report exactly the pages written");
    }
}

/* Is [off, off + len) inside the reported ranges? */
static int rgs_covers(const rgs *r, size_t off, size_t len)
{
    size_t a = 0, b = r->n;
    while (a < b) {     /* last range with range.off <= off */
        size_t m = a + (b - a) / 2;
        if (r->v[m].off <= off)
            a = m + 1;
        else
            b = m;
    }
    if (!a)
        return 0;
    const rg *x = &r->v[a - 1];
    return off + len <= x->off + x->len;
}

static size_t off_of(mmh_heap *h, const void *p)
{
    return (size_t)((const char *)p - h->base);
}

static size_t page_down(size_t x) { return x & ~(ps - 1); }
static size_t page_up(size_t x) { return (x + ps - 1) & ~(ps - 1); }

/* The pages of [p, p + len) as one expected range. */
static rgs pages_of(mmh_heap *h, const void *p, size_t len)
{
    rgs r;
    memset(&r, 0, sizeof r);
    size_t lo = page_down(off_of(h, p)), hi = page_up(off_of(h, p) + len);
    assert_int_equal(rgs_add(&r, lo, hi - lo), 0);
    return r;
}

/* What was written since the last scan is exactly the pages of
 * [p, p + len). */
static void assert_dirty_exactly(mmh_heap *h, const void *p, size_t len)
{
    rgs got = scan(h), want = pages_of(h, p, len);
    assert_rgs_equal(&got, &want);
    free(got.v);
    free(want.v);
}

/* ---- heaps --------------------------------------------------------------- */

typedef struct {
    mmh_heap *h;
    char     *path;
} th;

/* A fresh heap with tracker t; skips the test if uffd is refused. */
static th open_heap(mmh_tracker t, const char *name, size_t size, size_t max_size)
{
    char file[64];
    snprintf(file, sizeof file, "%s-%s.heap", name, tracker_name(t));
    th x = { NULL, tu_path(file) };
    mmh_config cfg = tu_cfg(MMH_CREATE, size, max_size);
    cfg.tracker = t;
    x.h = mmh_open(x.path, &cfg);
    if (!x.h) {
        if (t == MMH_TRACK_UFFD) {
            fprintf(stderr, "uffd tracker refused, skipping: %s\n", mmh_errmsg());
            free(x.path);
            skip();
        }
        fail_msg("mmh_open(%s) with the %s tracker: %s", x.path, tracker_name(t),
                 mmh_errmsg());
    }
    assert_int_equal(x.h->track.kind, t);
    assert_non_null(x.h->track.ops);
    return x;
}

static void close_heap(th *x)
{
    if (mmh_close(x->h) != 0)
        fail_msg("mmh_close: %s", mmh_errmsg());
    unlink(x->path);
    free(x->path);
}

/* ---- shapes of writes ------------------------------------------------------ */

static void test_clean_after_scan(void **state)
{
    th x = open_heap(tracker_of(state), "clean", 0, 64 * MiB);
    char *p = mmh_alloc(x.h, 256 * KiB);
    assert_non_null(p);
    memset(p, 1, 256 * KiB);
    rgs r = scan(x.h);
    assert_true(rgs_covers(&r, off_of(x.h, p), 256 * KiB));
    free(r.v);
    r = scan(x.h);
    if (r.n)
        print_rgs("after a scan", &r);
    assert_int_equal(r.n, 0);
    free(r.v);
    /* Reading is not writing. */
    volatile char sum = 0;
    for (size_t i = 0; i < 256 * KiB; i += ps)
        sum += p[i];
    (void)sum;
    r = scan(x.h);
    assert_int_equal(r.n, 0);
    free(r.v);
    close_heap(&x);
}

static void test_single_byte(void **state)
{
    th x = open_heap(tracker_of(state), "byte", 0, 64 * MiB);
    char *p = mmh_alloc(x.h, 1 * MiB);
    assert_non_null(p);
    drain(x.h);
    p[3 * ps + 100] = 7;
    assert_dirty_exactly(x.h, p + 3 * ps + 100, 1);
    /* Written again: dirty again, once. */
    p[3 * ps + 200] = 8;
    p[3 * ps + 300] = 9;
    assert_dirty_exactly(x.h, p + 3 * ps, 1);
    assert_int_equal(p[3 * ps + 100], 7);
    close_heap(&x);
}

static void test_page_crossing(void **state)
{
    th x = open_heap(tracker_of(state), "cross", 0, 64 * MiB);
    char *p = mmh_alloc(x.h, 1 * MiB);
    assert_non_null(p);
    drain(x.h);
    char *q = (char *)(((uintptr_t)p + 5 * ps) & ~(uintptr_t)(ps - 1)) - 3;
    uint64_t v = 0x0102030405060708ull;
    memcpy(q, &v, sizeof v);
    rgs got = scan(x.h), want = pages_of(x.h, q, sizeof v);
    assert_int_equal(want.v[0].len, 2 * ps);
    assert_rgs_equal(&got, &want);
    free(got.v);
    free(want.v);
    close_heap(&x);
}

static void test_memset_64m(void **state)
{
    mmh_tracker t = tracker_of(state);
    th x = open_heap(t, "memset", 0, 512 * MiB);
    size_t len = 64 * MiB;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    drain(x.h);
    memset(p, 0x5a, len);
    rgs got = scan(x.h);
    size_t lo = off_of(x.h, p), hi = lo + len;
    if (!rgs_covers(&got, page_down(lo), page_up(hi) - page_down(lo))) {
        print_rgs("reported", &got);
        fail_msg("a 64 MiB memset is not reported whole");
    }
    /* Nothing far from it: mprotect may widen to aligned chunks of up to a
     * segment around it, uffd reports the pages. */
    size_t wlo = t == MMH_TRACK_MPROTECT ? lo & ~MMH_SEG_MASK : page_down(lo);
    size_t whi = t == MMH_TRACK_MPROTECT ? mmh_align_up(hi, MMH_SEG_SIZE) : page_up(hi);
    for (size_t i = 0; i < got.n; i++)
        if (got.v[i].off < wlo || got.v[i].off + got.v[i].len > whi) {
            print_rgs("reported", &got);
            fail_msg("reported beyond the memset: [%#zx, %#zx)", wlo, whi);
        }
    free(got.v);
    got = scan(x.h);
    assert_int_equal(got.n, 0);
    free(got.v);
    close_heap(&x);
}

static void test_scattered(void **state)
{
    th x = open_heap(tracker_of(state), "scatter", 0, 64 * MiB);
    size_t len = 16 * MiB, npages = len / ps;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    drain(x.h);
    unsigned char *mark = calloc(npages, 1);
    assert_non_null(mark);
    tu_rng rng = { 42 };
    for (int i = 0; i < 150; i++) {
        size_t pg = tu_rand_range(&rng, 0, npages - 1);
        size_t run = i % 10 == 0 ? 3 : 1;   /* some runs of adjacent pages */
        for (size_t k = 0; k < run && pg + k < npages; k++) {
            p[(pg + k) * ps + tu_rand_range(&rng, 0, ps - 1)] = (char)i;
            mark[pg + k] = 1;
        }
    }
    rgs want;
    memset(&want, 0, sizeof want);
    size_t base = off_of(x.h, p);
    assert_int_equal(base % ps, 0);
    for (size_t i = 0; i < npages; i++)
        if (mark[i])
            assert_int_equal(rgs_add(&want, base + i * ps, ps), 0);
    rgs got = scan(x.h);
    assert_rgs_equal(&got, &want);
    free(got.v);
    free(want.v);
    free(mark);
    close_heap(&x);
}

/* The heap grows while tracked: the new memory is tracked too. */
static void test_growth(void **state)
{
    th x = open_heap(tracker_of(state), "grow", 4 * MiB, 1 * GiB);
    size_t before = tu_stats(x.h).size;
    drain(x.h);
    size_t len = 32 * MiB;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    assert_true(tu_stats(x.h).size > before);
    assert_true(off_of(x.h, p) >= before);
    p[0] = 1;
    p[20 * MiB] = 2;
    rgs got = scan(x.h);
    assert_true(rgs_covers(&got, page_down(off_of(x.h, p)), ps));
    assert_true(rgs_covers(&got, page_down(off_of(x.h, p + 20 * MiB)), ps));
    free(got.v);
    p[5 * MiB + 7] = 3;
    p[len - 1] = 4;
    got = scan(x.h);
    rgs want = pages_of(x.h, p + 5 * MiB + 7, 1);
    assert_int_equal(rgs_add(&want, page_down(off_of(x.h, p + len - 1)), ps), 0);
    assert_rgs_equal(&got, &want);
    free(got.v);
    free(want.v);
    close_heap(&x);
}

/* read(2) into the heap: the kernel's writes.  mprotect needs mmh_touch
 * (without it the read fails with EFAULT); uffd tracks them as they are. */
static void test_read_syscall(void **state)
{
    mmh_tracker t = tracker_of(state);
    th x = open_heap(t, "read", 0, 64 * MiB);
    char *p = mmh_alloc(x.h, 1 * MiB);
    assert_non_null(p);
    memset(p, 0xab, 1 * MiB);
    drain(x.h);
    char *dst = (char *)(((uintptr_t)p + ps) & ~(uintptr_t)(ps - 1));
    size_t len = 2 * ps + 100;
    int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    if (t == MMH_TRACK_MPROTECT) {
        errno = 0;
        ssize_t r = read(fd, dst, len);
        assert_int_equal(r, -1);
        assert_int_equal(errno, EFAULT);
        assert_int_equal(mmh_touch(x.h, dst, len), 0);
    }
    ssize_t r = read(fd, dst, len);
    close(fd);
    assert_int_equal(r, (ssize_t)len);
    assert_true(tu_all_bytes(dst, len, 0));
    assert_int_equal((unsigned char)dst[len], 0xab);
    assert_dirty_exactly(x.h, dst, len);
    close_heap(&x);
}

/* Threads writing the same pages at once: every page reported, no crash
 * (for mprotect: faults racing on one page). */
typedef struct {
    char  *p;
    size_t len;
    int    id;
} writer_arg;

static void *writer(void *arg)
{
    writer_arg *w = arg;
    size_t n = w->len / ps;
    for (size_t k = 0; k < n; k++) {
        size_t pg = (k * 7 + (size_t)w->id) % n;   /* 7 is prime to n */
        w->p[pg * ps + (size_t)w->id * 8] = (char)w->id;
    }
    return NULL;
}

static void test_threads(void **state)
{
    th x = open_heap(tracker_of(state), "threads", 0, 256 * MiB);
    size_t len = 8 * MiB;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    for (int round = 0; round < 3; round++) {
        drain(x.h);
        pthread_t tid[4];
        writer_arg wa[4];
        for (int i = 0; i < 4; i++) {
            wa[i] = (writer_arg){ p, len, i };
            assert_int_equal(pthread_create(&tid[i], NULL, writer, &wa[i]), 0);
        }
        for (int i = 0; i < 4; i++)
            pthread_join(tid[i], NULL);
        rgs got = scan(x.h);
        assert_true(rgs_covers(&got, off_of(x.h, p), len));
        free(got.v);
        for (size_t k = 0; k < len / ps; k++)
            for (int i = 0; i < 4; i++)
                assert_int_equal(p[k * ps + (size_t)i * 8], i);
    }
    close_heap(&x);
}

/* ---- mprotect only ----------------------------------------------------------- */

/* VMAs of the heap's reservation: what the tracker splits and merges (the
 * rest of the process, a sanitizer's allocator say, maps as it likes). */
static size_t count_vmas(mmh_heap *h)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return 0;
    uintptr_t lo = (uintptr_t)h->base, hi = lo + h->max_size, start, end;
    size_t n = 0;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start < hi && end > lo)
            n++;
    fclose(f);
    return n;
}

/* 200,000 scattered dirty pages in one epoch: every other page of a
 * 1.6 GiB range.  No ENOMEM from the VMA limit, every page reported; the
 * granularity may widen, but nothing is reported far beyond the range. */
static void test_many_pages(void **state)
{
    (void)state;
    long n = tu_scaled(200000, 20000);
    th x = open_heap(MMH_TRACK_MPROTECT, "many", 0, 2 * GiB);
    size_t len = (size_t)n * 2 * ps;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    drain(x.h);
    size_t vmas_before = count_vmas(x.h);
    for (long i = 0; i < n; i++)
        p[(size_t)i * 2 * ps] = 1;
    size_t vmas = count_vmas(x.h);
    fprintf(stderr, "many pages: %ld pages written, %zu VMAs (%zu before), %llu faults\n",
            n, vmas, vmas_before, (unsigned long long)atomic_load(&x.h->track.faults));
    assert_true(vmas < 60000);
    rgs got = scan(x.h);
    size_t base = off_of(x.h, p);
    for (long i = 0; i < n; i++)
        if (!rgs_covers(&got, base + (size_t)i * 2 * ps, ps)) {
            print_rgs("reported", &got);
            fail_msg("page %ld of %ld (offset %#zx) not reported", i, n,
                     base + (size_t)i * 2 * ps);
        }
    /* Within the written span, give or take some chunks (and the heap's own
     * metadata). */
    size_t span = (size_t)(n - 1) * 2 * ps + ps;
    fprintf(stderr, "many pages: %zu bytes reported in %zu range(s) for a span of %zu\n",
            got.total, got.n, span);
    assert_true(got.total <= span + 64 * MiB);
    free(got.v);
    assert_true(count_vmas(x.h) <= vmas_before + 16);
    /* A new epoch starts at page granularity again. */
    p[12345 * ps + 1] = 2;
    assert_dirty_exactly(x.h, p + 12345 * ps, 1);
    mmh_free(x.h, p);
    close_heap(&x);
}

static int restore_tuning(void **state)
{
    (void)state;
    mmh_track_mprotect_tune(0, 0);
    return 0;
}

/* The granularity widens level by level as islands accumulate in an epoch:
 * page, 64 KiB, 1 MiB, 4 MiB, 64 MiB, then the whole heap; each level
 * reports exactly its aligned chunk, and a scan starts over at pages. */
static void test_widening(void **state)
{
    (void)state;
    mmh_track_mprotect_tune(4, 2);
    th x = open_heap(MMH_TRACK_MPROTECT, "widen", 0, 1 * GiB);
    size_t len = 512 * MiB;
    char *p = mmh_alloc(x.h, len);
    assert_non_null(p);
    static const size_t chunks[] = { 0, 64 * KiB, 1 * MiB, 4 * MiB, 64 * MiB, 1 };
    for (unsigned level = 0; level < 6; level++) {
        drain(x.h);
        unsigned before = level ? 4 + 2 * (level - 1) : 0;
        for (unsigned i = 0; i < before; i++)
            p[(size_t)i * 36 * MiB + 12345] = 1;   /* one island each */
        char *w = p + 500 * MiB + 12345;
        *w = 2;
        size_t mapped = x.h->mapped;
        if (level == 5) {
            /* Growth while everything is unprotected: still reported. */
            char *q = mmh_alloc(x.h, 64 * MiB);
            assert_non_null(q);
            q[64 * MiB - 1] = 3;
            mapped = x.h->mapped;
            assert_true(off_of(x.h, q + 64 * MiB) <= mapped);
        }
        rgs got = scan(x.h);
        if (level == 5) {
            if (got.n != 1 || got.v[0].off != 0 || got.v[0].len != mapped) {
                print_rgs("reported", &got);
                fail_msg("whole-heap level: expected [0, %#zx)", mapped);
            }
        } else {
            size_t c = chunks[level] ? chunks[level] : ps;
            size_t lo = off_of(x.h, w) & ~(c - 1);
            if (!rgs_covers(&got, lo, c) || rgs_covers(&got, lo - ps, ps) ||
                rgs_covers(&got, lo + c, ps)) {
                print_rgs("reported", &got);
                fail_msg("level %u: expected the %zu-byte chunk at %#zx", level, c, lo);
            }
            for (unsigned i = 0; i < before; i++)
                assert_true(rgs_covers(&got, page_down(off_of(x.h, p + (size_t)i * 36 * MiB + 12345)), ps));
        }
        free(got.v);
    }
    /* A new epoch: pages again. */
    p[7 * MiB + 1] = 4;
    assert_dirty_exactly(x.h, p + 7 * MiB + 1, 1);
    close_heap(&x);
    mmh_track_mprotect_tune(0, 0);
}

/* Children: no cmocka asserts; a real segfault must end them with SIGSEGV. */
typedef struct {
    const char *path;
    int         where;   /* 0: own PROT_NONE page, 1: beyond the heap's
                            extent, 2: kill(2) */
} crash_arg;

static void no_core(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
}

static int crash_child(void *arg)
{
    crash_arg *a = arg;
    no_core();
    signal(SIGSEGV, SIG_DFL);   /* not cmocka's handler */
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 256 * MiB);
    cfg.tracker = MMH_TRACK_MPROTECT;
    mmh_heap *h = mmh_open(a->path, &cfg);
    CK(h != NULL);
    char *p = mmh_alloc(h, 64 * KiB);
    CK(p != NULL);
    memset(p, 3, 64 * KiB);      /* tracked faults: survived */
    CK(atomic_load(&h->track.faults) > 0);
    if (a->where == 0) {
        volatile char *bad = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CK(bad != MAP_FAILED);
        bad[0] = 1;
    } else if (a->where == 1) {
        volatile char *bad = h->base + h->max_size - ps;
        bad[0] = 1;
    } else {
        kill(getpid(), SIGSEGV);
    }
    return 42;   /* survived: wrong */
}

/* Under valgrind the intended invalid writes count as errors. */
static int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static void test_segfault_kills(void **state)
{
    (void)state;
    if (under_valgrind())
        skip();
    for (int where = 0; where < 3; where++) {
        char name[32];
        snprintf(name, sizeof name, "crash%d.heap", where);
        char *path = tu_path(name);
        crash_arg a = { path, where };
        int st = tu_run_child(crash_child, &a);
        assert_true(st != -1);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
            fail_msg("case %d: child %s %d instead of dying of SIGSEGV", where,
                     WIFSIGNALED(st) ? "killed by signal" : "exited with",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        unlink(path);
        free(path);
    }
}

/* The program's own handler, installed before the heap is opened, still
 * gets the faults outside the heap and none of the heap's. */
static sigjmp_buf own_jmp;
static volatile sig_atomic_t own_calls;
static void *volatile own_addr;
static char *volatile own_page;

static void own_siginfo_handler(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    own_calls++;
    own_addr = si->si_addr;
    siglongjmp(own_jmp, 1);
}

static void own_plain_handler(int sig)
{
    (void)sig;
    own_calls++;
    mprotect(own_page, ps, PROT_READ | PROT_WRITE);  /* fix it and retry */
}

static int own_handler_child(void *arg)
{
    int plain = *(int *)arg;
    no_core();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (plain)
        sa.sa_handler = own_plain_handler;
    else {
        sa.sa_sigaction = own_siginfo_handler;
        sa.sa_flags = SA_SIGINFO;
    }
    CK(sigaction(SIGSEGV, &sa, NULL) == 0);
    own_page = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CK(own_page != MAP_FAILED);

    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/own%d.heap", tu_dir(), plain);
    unlink(path);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 256 * MiB);
    cfg.tracker = MMH_TRACK_MPROTECT;
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    char *p = mmh_alloc(h, 1 * MiB);
    CK(p != NULL);
    memset(p, 5, 1 * MiB);
    CK(own_calls == 0);
    uint64_t faults = atomic_load(&h->track.faults);
    CK(faults > 0);
    rgs r;
    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&h->lock);
    CK(h->track.ops->scan(h, scan_cb, &r) == 0);
    pthread_mutex_unlock(&h->lock);
    free(r.v);

    for (int round = 0; round < 3; round++) {
        if (plain) {
            ((volatile char *)own_page)[round] = 1;   /* handler unprotects */
            CK(((volatile char *)own_page)[round] == 1);
            CK(own_calls == 1);
            mprotect(own_page, ps, PROT_READ);
        } else if (sigsetjmp(own_jmp, 1) == 0) {
            ((volatile char *)own_page)[round] = 1;
            return 2;                        /* not reached */
        } else {
            CK(own_calls == round + 1);
            CK(own_addr == own_page + round);
        }
        if (plain)
            own_calls = 0;
        /* The heap is still tracked after the program's handler ran. */
        p[(size_t)round * 3 * ps + 1] = 6;
    }
    CK(atomic_load(&h->track.faults) == faults + 3);
    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&h->lock);
    CK(h->track.ops->scan(h, scan_cb, &r) == 0);
    pthread_mutex_unlock(&h->lock);
    /* exactly the three pages written since */
    CK(r.n == 3 && !r.bad && r.total == 3 * ps);
    CK(r.v[0].off == page_down(off_of(h, p + 1)));
    free(r.v);
    CK(mmh_close(h) == 0);
    unlink(path);
    return 0;
}

static void test_own_handler(void **state)
{
    (void)state;
    int plain = 0;
    assert_child_ok(own_handler_child, &plain);
    plain = 1;
    assert_child_ok(own_handler_child, &plain);
}

/* ---- main ------------------------------------------------------------------ */

#define BOTH(fn)                                                             \
    { #fn "_mprotect", fn, NULL, NULL, (void *)&trk_mprotect },              \
    { #fn "_uffd", fn, NULL, NULL, (void *)&trk_uffd }

int main(void)
{
    /* The tests write patterns over whole heap pages, metadata included:
     * the heaps they leave are not meant to pass a check. */
    tu_heap_checks = false;
    ps = (size_t)sysconf(_SC_PAGESIZE);
    const struct CMUnitTest tests[] = {
        BOTH(test_clean_after_scan),
        BOTH(test_single_byte),
        BOTH(test_page_crossing),
        BOTH(test_memset_64m),
        BOTH(test_scattered),
        BOTH(test_growth),
        BOTH(test_read_syscall),
        BOTH(test_threads),
        cmocka_unit_test(test_many_pages),
        cmocka_unit_test_teardown(test_widening, restore_tuning),
        cmocka_unit_test(test_segfault_kills),
        cmocka_unit_test(test_own_handler),
    };
    return TU_RUN(tests);
}
