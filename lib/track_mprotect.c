/* The mprotect tracker: the heap is mapped read-only; the first write to a
 * page raises SIGSEGV, whose handler records the page in a dirty bitmap and
 * makes it writable.  A scan reports the recorded pages and protects them
 * again.  Portable (every Linux), but each first write costs a signal and a
 * system call, and system calls that write into a protected page (read(2)
 * into the heap) fail with EFAULT instead of faulting: mmh_touch first.
 *
 * The handler is async-signal-safe: it takes no lock, allocates nothing and
 * finds the heap through a fixed registry of {start, end, state} entries
 * published with atomics.  Faults it does not own (outside every heap, a read
 * fault, a fault in the reservation beyond the mapped extent, a page that
 * stays protected after we unprotected it) go to the handler that was
 * installed before ours; if that was SIG_DFL, the default comes back and the
 * fault, executed again, ends the process with SIGSEGV as before.
 *
 * Bounded VMAs: every writable island inside a protected mapping costs the
 * kernel up to two VMAs, and a process has at most vm.max_map_count (about
 * 65530).  Islands are counted per epoch (between scans), over all heaps;
 * past a budget (a quarter of the limit) the handler unprotects ever larger
 * aligned chunks -- 64 KiB, 1 MiB, 4 MiB (a segment), 64 MiB -- and finally
 * the whole heap, reporting the whole chunk dirty.  A scan protects each
 * written segment back with one mprotect over its dirty span, so the
 * islands merge back into one VMA.  A per-segment summary bitmap lets
 * scan visit only the segments that were written. */
#define _GNU_SOURCE
#include "track.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define MP_MAX_HEAPS 256

typedef _Atomic uint64_t mp_word;

typedef struct mp_state {
    char            *base;
    _Atomic size_t   mapped;     /* [0, mapped) is tracked                 */
    _Atomic uint64_t *faults;    /* &h->track.faults                             */
    _Atomic unsigned ops;        /* unprotects this epoch (islands made)   */
    _Atomic unsigned epoch;      /* scans so far                        */
    _Atomic int      all_dirty;  /* the whole heap was unprotected         */
    mp_word         *segs;       /* a bit per segment: some page is dirty  */
    mp_word         *pages;      /* a bit per page: dirty (and writable)   */
    size_t           size;       /* of this mapping                        */
    int              reg_index;  /* in the registry                            */
} mp_state;

typedef struct mp_entry {
    _Atomic uintptr_t start, end; /* start 0: free                          */
    _Atomic(mp_state *) st;
} mp_entry;

static mp_entry registry[MP_MAX_HEAPS];
static _Atomic unsigned registry_used;        /* entries ever used: to scan */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

/* The handler before ours, double-buffered so a reinstall never tears it
 * under a handler running in another thread. */
static struct sigaction old_sa[2];
static _Atomic int old_idx;

static size_t   page_size;           /* set once, before the first install */
static unsigned page_shift;
static size_t   pages_per_seg;       /* a multiple of 64: page_size <= 64 KiB */
static _Atomic unsigned global_ops;  /* islands made by all heaps this epoch */
static unsigned budget_pages;        /* page granularity up to this many     */
static unsigned budget_step;         /* then this many per wider level       */

/* Per thread: the last page we unprotected again although it was already
 * dirty (a race with another thread's fault or with a scan); the same
 * fault twice more, in the same epoch, means something else protects it. */
static __thread uintptr_t redo_addr __attribute__((tls_model("initial-exec")));
static __thread unsigned redo_epoch __attribute__((tls_model("initial-exec")));
static __thread mp_state *redo_state __attribute__((tls_model("initial-exec")));
static __thread unsigned redo_count __attribute__((tls_model("initial-exec")));
/* Per thread: the fault being passed to the previous handler, to break a
 * loop where that handler passes it back to us. */
static __thread uintptr_t chain_addr __attribute__((tls_model("initial-exec")));
static __thread uintptr_t chain_pc __attribute__((tls_model("initial-exec")));
static __thread uintptr_t chain_frame __attribute__((tls_model("initial-exec")));

/* ---- bitmaps ----------------------------------------------------------- */

static inline bool test_bit(mp_word *w, size_t i)
{
    return (atomic_load_explicit(&w[i >> 6], memory_order_relaxed) >> (i & 63)) & 1;
}

static inline void set_bits(mp_word *w, size_t lo, size_t hi)
{
    while (lo < hi) {
        size_t n = 64 - (lo & 63);
        if (n > hi - lo)
            n = hi - lo;
        uint64_t mask = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1) << (lo & 63);
        atomic_fetch_or_explicit(&w[lo >> 6], mask, memory_order_release);
        lo += n;
    }
}

/* Pages [p0, p1) dirty: pages first, then the segment summary, so that a
 * scan that clears the summary and then takes the page bits never loses
 * a page. */
static void mark_dirty(mp_state *st, size_t p0, size_t p1)
{
    if (p0 >= p1)
        return;
    set_bits(st->pages, p0, p1);
    set_bits(st->segs, p0 / pages_per_seg, (p1 - 1) / pages_per_seg + 1);
}

/* ---- the signal handler ------------------------------------------------ */

/* 1: a write fault, 0: a read (or instruction fetch), -1: unknown. */
static int fault_is_write(const void *ctx)
{
#if defined(__x86_64__) || defined(__i386__)
    const ucontext_t *uc = ctx;
    if (!uc)
        return -1;
    return (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
    (void)ctx;
    return -1;
#endif
}

static uintptr_t fault_pc(const void *ctx)
{
#if defined(__x86_64__)
    return ctx ? (uintptr_t)((const ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP] : 0;
#elif defined(__i386__)
    return ctx ? (uintptr_t)((const ucontext_t *)ctx)->uc_mcontext.gregs[REG_EIP] : 0;
#else
    (void)ctx;
    return 0;
#endif
}

static mp_state *lookup(uintptr_t a)
{
    unsigned n = atomic_load_explicit(&registry_used, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        uintptr_t start = atomic_load_explicit(&registry[i].start, memory_order_acquire);
        if (!start || a < start || a >= atomic_load_explicit(&registry[i].end, memory_order_relaxed))
            continue;
        mp_state *st = atomic_load_explicit(&registry[i].st, memory_order_acquire);
        /* Entry still the same heap (not retired while we read it)? */
        if (st && atomic_load_explicit(&registry[i].start, memory_order_acquire) == start)
            return st;
    }
    return NULL;
}

/* Bytes to unprotect per fault at the current number of islands; 0: all. */
static size_t chunk_size(void)
{
    unsigned ops = atomic_load_explicit(&global_ops, memory_order_relaxed);
    size_t c;
    if (ops < budget_pages)
        c = page_size;
    else {
        unsigned level = (ops - budget_pages) / budget_step;
        static const size_t sizes[] = { (size_t)64 << 10, (size_t)1 << 20, MMH_SEG_SIZE,
                                        (size_t)64 << 20 };
        if (level >= sizeof sizes / sizeof sizes[0])
            return 0;
        c = sizes[level];
    }
    return c < page_size ? page_size : c;
}

static void count_island(mp_state *st)
{
    atomic_fetch_add_explicit(&st->ops, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&global_ops, 1, memory_order_relaxed);
}

static void say(const char *msg)
{
    ssize_t r = write(STDERR_FILENO, msg, strlen(msg));
    (void)r;
}

/* Making memory writable races with a scan in another thread (which the
 * commit's quiescence rules out, but a stray writer should not lose data):
 * marking, then mprotect, then checking the mark is still there, so that a
 * scan that took the mark before our mprotect leaves it marked again. */

/* Unprotect the whole heap: the last level, and the last resort when the
 * VMAs run out. */
static bool unprotect_all(mp_state *st, size_t mapped)
{
    atomic_store_explicit(&st->all_dirty, 1, memory_order_release);
    if (mprotect(st->base, mapped, PROT_READ | PROT_WRITE) != 0) {
        say("mmheap: mprotect tracker: cannot unprotect a heap after a write fault\n");
        return false;
    }
    if (!atomic_load_explicit(&st->all_dirty, memory_order_acquire))
        atomic_store_explicit(&st->all_dirty, 1, memory_order_release);
    return true;
}

/* Unprotect [lo, hi), which holds page, marking it dirty. */
static bool unprotect(mp_state *st, size_t lo, size_t hi, size_t page, size_t mapped)
{
    mark_dirty(st, lo >> page_shift, hi >> page_shift);
    if (mprotect(st->base + lo, hi - lo, PROT_READ | PROT_WRITE) != 0)
        return unprotect_all(st, mapped);
    if (!test_bit(st->pages, page) && !atomic_load_explicit(&st->all_dirty, memory_order_acquire))
        mark_dirty(st, lo >> page_shift, hi >> page_shift);
    return true;
}

/* A write fault at heap offset off.  true: handled, retry the write. */
static bool handle(mp_state *st, size_t off)
{
    size_t mapped = atomic_load_explicit(&st->mapped, memory_order_acquire);
    if (off >= mapped)
        return false;                  /* the reservation beyond the extent */
    size_t page = off >> page_shift;
    uintptr_t paddr = (uintptr_t)st->base + (page << page_shift);
    unsigned epoch = atomic_load_explicit(&st->epoch, memory_order_acquire);
    bool all = atomic_load_explicit(&st->all_dirty, memory_order_acquire);

    if (all || test_bit(st->pages, page)) {
        /* Already dirty: another thread faulted on it and has not made it
         * writable yet, or a scan is protecting it again.  Unprotect it
         * (again); if the same fault keeps coming back in the same epoch,
         * it is not our protection. */
        if (redo_addr == paddr && redo_epoch == epoch && redo_state == st) {
            /* A scan protects a page once per epoch: a second fault may
             * come from it, a third cannot. */
            if (++redo_count >= 2)
                return false;
        } else {
            redo_addr = paddr;
            redo_epoch = epoch;
            redo_state = st;
            redo_count = 0;
        }
        if (all)
            return unprotect_all(st, mapped);
        return unprotect(st, page << page_shift, (page + 1) << page_shift, page, mapped);
    }
    redo_addr = 0;

    size_t chunk = chunk_size();
    count_island(st);
    atomic_fetch_add_explicit(st->faults, 1, memory_order_relaxed);
    if (!chunk)
        return unprotect_all(st, mapped);
    size_t lo = off & ~(chunk - 1), hi = lo + chunk;
    if (hi > mapped)
        hi = mapped;
    return unprotect(st, lo, hi, page, mapped);
}

/* Pass the signal to the handler that was there before ours. */
static void chain(int sig, siginfo_t *si, void *ctx)
{
    const struct sigaction *old = &old_sa[atomic_load_explicit(&old_idx, memory_order_acquire)];
    bool fault = si && si->si_code > 0;
    uintptr_t addr = fault ? (uintptr_t)si->si_addr : 0, pc = fault_pc(ctx);
    uintptr_t frame = (uintptr_t)__builtin_frame_address(0);

    /* That handler called us back for the fault we gave it (it saved our
     * handler as its own previous one): act as the default would. */
    bool loop = fault && chain_frame && frame < chain_frame && addr == chain_addr &&
                pc == chain_pc;
    if (!loop && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        /* fall through to the call below */
    } else if (loop || old->sa_handler == SIG_DFL ||
               (old->sa_handler == SIG_IGN && fault)) {
        /* A fault cannot be ignored: the kernel kills the process.  Restore
         * the default and return: the instruction faults again and the
         * process ends with SIGSEGV as it would have without us. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (!fault)
            raise(sig);
        return;
    } else if (old->sa_handler == SIG_IGN) {
        return;                        /* sent with kill(2): ignored */
    }

    sigset_t mask = old->sa_mask, prev;
    if (!(old->sa_flags & SA_NODEFER))
        sigaddset(&mask, sig);
    uintptr_t saved_addr = chain_addr, saved_pc = chain_pc, saved_frame = chain_frame;
    chain_addr = addr;
    chain_pc = pc;
    chain_frame = frame;
    pthread_sigmask(SIG_BLOCK, &mask, &prev);
    if (old->sa_flags & SA_SIGINFO)
        old->sa_sigaction(sig, si, ctx);
    else
        old->sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    chain_addr = saved_addr;
    chain_pc = saved_pc;
    chain_frame = saved_frame;
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    int saved_errno = errno;
    if (si && si->si_code == SEGV_ACCERR && fault_is_write(ctx) != 0) {
        mp_state *st = lookup((uintptr_t)si->si_addr);
        if (st && handle(st, (size_t)((uintptr_t)si->si_addr - (uintptr_t)st->base))) {
            errno = saved_errno;
            return;
        }
    }
    chain(sig, si, ctx);
    errno = saved_errno;
}

/* ---- installation and the registry (normal context) -------------------- */

static unsigned max_map_count(void)
{
    unsigned v = 65530;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            unsigned long x = strtoul(buf, NULL, 10);
            if (x >= 1024 && x < (1ul << 30))
                v = (unsigned)x;
        }
    }
    return v;
}

static long setup_page_size;

static void set_budget(unsigned pages, unsigned step)
{
    budget_pages = pages;
    budget_step = step ? step : 1;
}

static void setup(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    setup_page_size = ps;
    if (ps <= 0 || (ps & (ps - 1)) || (size_t)ps > ((size_t)64 << 10))
        return;
    /* A quarter of the VMA limit for islands (each makes at most two): half
     * of it at page granularity, the rest in four wider levels. */
    unsigned budget = max_map_count() / 4;
    set_budget(budget / 2, budget / 8);
    page_shift = (unsigned)__builtin_ctzl((unsigned long)ps);
    pages_per_seg = MMH_SEG_SIZE >> page_shift;
    page_size = (size_t)ps;
}

static int setup_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, setup);
    if (!page_size)
        return mmh_fail(ENOTSUP, "mprotect tracker: unsupported page size %ld",
                        setup_page_size);
    return 0;
}

/* For tests: unprotect single pages for the first `pages` islands of an
 * epoch, then `step` islands per wider level; 0, 0: the defaults. */
void mmh_track_mprotect_tune(unsigned pages, unsigned step)
{
    if (setup_once() != 0)
        return;
    if (!pages && !step) {
        unsigned budget = max_map_count() / 4;
        set_budget(budget / 2, budget / 8);
    } else
        set_budget(pages, step);
}

/* Our handler in place, chaining to whatever is there now.  Called at every
 * attach: a program (or a test framework) that installed its own handler
 * since, or reset SIGSEGV to the default, would otherwise take our faults. */
static int install(void)
{
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur) != 0)
        return mmh_fail(errno, "mprotect tracker: sigaction: %m");
    /* sa_handler and sa_sigaction share their storage. */
    bool ours = cur.sa_sigaction == on_segv;
    if (ours && (cur.sa_flags & SA_SIGINFO) && (cur.sa_flags & SA_ONSTACK))
        return 0;
    if (!ours) {
        int next = !atomic_load(&old_idx);
        old_sa[next] = cur;
        atomic_store_explicit(&old_idx, next, memory_order_release);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
    if (sigaction(SIGSEGV, &sa, NULL) != 0)
        return mmh_fail(errno, "mprotect tracker: cannot install a SIGSEGV handler: %m");
    return 0;
}

/* The entry covers [base, base + mapped): the faults of this heap, which
 * mprotect_extend widens as it grows. */
static int registry_add(mp_state *st, size_t mapped, const char *path)
{
    pthread_mutex_lock(&registry_lock);
    int rc = install();
    unsigned i = 0, used = atomic_load(&registry_used);
    if (rc == 0) {
        while (i < used && atomic_load(&registry[i].start))
            i++;
        if (i == MP_MAX_HEAPS)
            rc = mmh_fail(EMFILE, "%s: the mprotect tracker follows at most %d open heaps",
                          path, MP_MAX_HEAPS);
    }
    if (rc == 0) {
        st->reg_index = (int)i;
        atomic_store_explicit(&registry[i].st, st, memory_order_relaxed);
        atomic_store_explicit(&registry[i].end, (uintptr_t)st->base + mapped,
                              memory_order_relaxed);
        atomic_store_explicit(&registry[i].start, (uintptr_t)st->base, memory_order_release);
        if (i == used)
            atomic_store_explicit(&registry_used, used + 1, memory_order_release);
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

static void registry_remove(mp_state *st)
{
    pthread_mutex_lock(&registry_lock);
    mp_entry *e = &registry[st->reg_index];
    atomic_store_explicit(&e->start, 0, memory_order_release);
    atomic_store_explicit(&e->end, 0, memory_order_relaxed);
    atomic_store_explicit(&e->st, NULL, memory_order_release);
    pthread_mutex_unlock(&registry_lock);
}

/* ---- the ops ----------------------------------------------------------- */

static int mprotect_probe(void)
{
    return setup_once();
}

static int protect(mmh_heap *h, size_t off, size_t len, int prot)
{
    if (!len || mprotect(h->base + off, len, prot) == 0)
        return 0;
    int err = errno;
    return mmh_fail(err == ENOMEM ? ENOMEM : err,
                    "%s: mprotect tracker: cannot %s %zu bytes at offset %zu: %s%s", h->path,
                    prot & PROT_WRITE ? "unprotect" : "write-protect", len, off, strerror(err),
                    err == ENOMEM ? " (too many mappings: see vm.max_map_count)" : "");
}

static int mprotect_attach(mmh_heap *h)
{
    if (setup_once() != 0)
        return -1;
    /* For every segment the heap can grow to (mmh_grow); the pages of
     * the bitmaps past the extent are never touched. */
    size_t nsegs = h->hdr->segmap_len;
    size_t seg_words = (nsegs + 63) / 64, page_words = nsegs * (pages_per_seg / 64);
    size_t hdr = mmh_align_up(sizeof(mp_state), 64);
    size_t size = mmh_align_up(hdr + (seg_words + page_words) * sizeof(uint64_t), page_size);
    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return mmh_fail(ENOMEM, "%s: mprotect tracker: cannot allocate %zu bytes of bitmaps: %m",
                        h->path, size);
    mp_state *st = (mp_state *)mem;
    st->base = h->base;
    atomic_init(&st->mapped, (size_t)h->mapped);
    st->faults = &h->track.faults;
    st->segs = (mp_word *)(mem + hdr);
    st->pages = st->segs + seg_words;
    st->size = size;
    if (registry_add(st, h->mapped, h->path) != 0) {
        munmap(mem, size);
        return -1;
    }
    if (protect(h, 0, st->mapped, PROT_READ) != 0) {
        int err = errno;
        mprotect(h->base, st->mapped, PROT_READ | PROT_WRITE);
        registry_remove(st);
        munmap(mem, size);
        errno = err;
        return -1;
    }
    h->track.state = st;
    return 0;
}

static int mprotect_extend(mmh_heap *h, size_t from, size_t to)
{
    mp_state *st = h->track.state;
    if (to <= from)
        return 0;
    size_t old = atomic_load(&st->mapped);
    /* Tracked before protected: no fault in [from, to) can miss us. */
    if (to > old) {
        atomic_store_explicit(&registry[st->reg_index].end, (uintptr_t)st->base + to,
                              memory_order_release);
        atomic_store_explicit(&st->mapped, to, memory_order_release);
    }
    if (protect(h, from, to - from, PROT_READ) != 0) {
        int err = errno;
        mprotect(h->base + from, to - from, PROT_READ | PROT_WRITE);
        atomic_store_explicit(&st->mapped, old, memory_order_release);
        errno = err;
        return -1;
    }
    return 0;
}

/* Emit the pending range before starting another. */
typedef struct mp_emit {
    mmh_heap    *h;
    mmh_range_fn fn;
    void        *arg;
    size_t       lo, hi; /* pending [lo, hi); hi 0: none */
} mp_emit;

static int emit(mp_emit *e, size_t lo, size_t hi)
{
    if (e->hi && lo == e->hi) {
        e->hi = hi;
        return 0;
    }
    int rc = e->hi ? e->fn(e->h, e->lo, e->hi - e->lo, e->arg) : 0;
    e->lo = lo;
    e->hi = hi;
    return rc;
}

/* Next set (want 1) or clear (want 0) bit of w[0..n) from i; n if none. */
static size_t next_bit(const uint64_t *w, size_t i, size_t n, int want)
{
    while (i < n) {
        uint64_t x = want ? w[i >> 6] : ~w[i >> 6];
        x &= ~(uint64_t)0 << (i & 63);
        if (x) {
            size_t j = (i & ~(size_t)63) + (size_t)__builtin_ctzll(x);
            return j < n ? j : n;
        }
        i = (i & ~(size_t)63) + 64;
    }
    return n;
}

/* Take segment idx's dirty pages, protect them again, emit their runs. */
static int scan_segment(mmh_heap *h, mp_state *st, size_t idx, size_t mapped, mp_emit *e)
{
    enum { MAXW = (MMH_SEG_SIZE >> 12) / 64 };   /* words per segment, 4 KiB pages */
    uint64_t w[MAXW];
    size_t nw = pages_per_seg / 64, first = idx * pages_per_seg;
    size_t n = pages_per_seg;
    if ((first << page_shift) >= mapped)
        return 0;
    if (((first + n) << page_shift) > mapped)
        n = (mapped >> page_shift) - first;
    uint64_t any = 0;
    for (size_t k = 0; k < nw; k++)
        any |= w[k] = atomic_exchange_explicit(&st->pages[first / 64 + k], 0, memory_order_acq_rel);
    if (!any)
        return 0;
    size_t lo = next_bit(w, 0, n, 1), hi = lo;
    for (size_t i = lo; i < n;) {
        size_t j = next_bit(w, i, n, 0);
        hi = j;
        i = next_bit(w, j, n, 1);
    }
    if (lo >= n)
        return 0;
    /* One call over the dirty span: clean pages inside it are read-only
     * already, and the islands merge back into the mapping's VMA. */
    if (protect(h, (first + lo) << page_shift, (hi - lo) << page_shift, PROT_READ) != 0) {
        atomic_store(&st->all_dirty, 1);
        return -1;
    }
    for (size_t i = lo; i < n;) {
        size_t j = next_bit(w, i, n, 0);
        if (emit(e, (first + i) << page_shift, (first + j) << page_shift) != 0) {
            atomic_store(&st->all_dirty, 1);
            return -1;
        }
        i = next_bit(w, j, n, 1);
    }
    return 0;
}

static int mprotect_scan(mmh_heap *h, mmh_range_fn fn, void *arg)
{
    mp_state *st = h->track.state;
    size_t mapped = atomic_load_explicit(&st->mapped, memory_order_acquire);
    size_t nsegs = (mapped + MMH_SEG_SIZE - 1) >> MMH_SEG_SHIFT;
    atomic_fetch_add_explicit(&st->epoch, 1, memory_order_acq_rel);
    unsigned ops = atomic_exchange(&st->ops, 0);
    atomic_fetch_sub(&global_ops, ops);

    if (atomic_exchange(&st->all_dirty, 0)) {
        /* Everything was unprotected: clear the bitmaps, protect it all. */
        for (size_t k = 0; k < (nsegs + 63) / 64; k++) {
            uint64_t bits = atomic_exchange(&st->segs[k], 0);
            for (; bits; bits &= bits - 1) {
                size_t idx = k * 64 + (size_t)__builtin_ctzll(bits);
                for (size_t q = 0; q < pages_per_seg / 64; q++)
                    atomic_store(&st->pages[idx * (pages_per_seg / 64) + q], 0);
            }
        }
        if (protect(h, 0, mapped, PROT_READ) != 0 || fn(h, 0, mapped, arg) != 0) {
            atomic_store(&st->all_dirty, 1);
            return -1;
        }
        return 0;
    }

    mp_emit e = { .h = h, .fn = fn, .arg = arg };
    for (size_t k = 0; k < (nsegs + 63) / 64; k++) {
        if (!atomic_load_explicit(&st->segs[k], memory_order_relaxed))
            continue;
        /* Summary first, then the pages (mark_dirty sets them the other way
         * round): a page marked meanwhile keeps its segment marked. */
        uint64_t bits = atomic_exchange_explicit(&st->segs[k], 0, memory_order_acq_rel);
        for (; bits; bits &= bits - 1) {
            size_t idx = k * 64 + (size_t)__builtin_ctzll(bits);
            if (scan_segment(h, st, idx, mapped, &e) != 0) {
                /* The rest stays marked; the heap is failed anyway. */
                set_bits(st->segs, idx, idx + 1);
                atomic_fetch_or(&st->segs[k], bits);
                return -1;
            }
        }
    }
    if (e.hi && fn(h, e.lo, e.hi - e.lo, arg) != 0) {
        atomic_store(&st->all_dirty, 1);
        return -1;
    }
    return 0;
}

static int mprotect_touch(mmh_heap *h, size_t off, size_t len)
{
    mp_state *st = h->track.state;
    size_t mapped = atomic_load_explicit(&st->mapped, memory_order_acquire);
    size_t lo = off & ~(page_size - 1), hi = mmh_align_up(off + len, page_size);
    if (hi > mapped)
        hi = mapped;
    if (lo >= hi)
        return 0;
    count_island(st);
    if (!unprotect(st, lo, hi, lo >> page_shift, mapped))
        return protect(h, lo, hi - lo, PROT_READ | PROT_WRITE);
    return 0;
}

static void mprotect_detach(mmh_heap *h)
{
    mp_state *st = h->track.state;
    if (!st)
        return;
    /* Writable again before we stop answering its faults. */
    mprotect(h->base, atomic_load(&st->mapped), PROT_READ | PROT_WRITE);
    registry_remove(st);
    atomic_fetch_sub(&global_ops, atomic_exchange(&st->ops, 0));
    munmap(st, st->size);
    h->track.state = NULL;
}

const mmh_track_ops mmh_track_mprotect = {
    .kind = MMH_TRACK_MPROTECT,
    .probe = mprotect_probe,
    .attach = mprotect_attach,
    .extend = mprotect_extend,
    .scan = mprotect_scan,
    .touch = mprotect_touch,
    .detach = mprotect_detach,
};
