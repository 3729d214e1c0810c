/* The runtime: the process-side heap handle, the thread bindings, the
 * allocator's fast paths and the core modules' prototypes.
 *
 * The on-disk format is in layout.h; the modules with an interface of their
 * own declare it beside them (ranges.h, track.h, persist.h, check.h,
 * fileio.h, instrument.h).
 */
#ifndef MMH_INTERNAL_H
#define MMH_INTERNAL_H

#include "config.h"
#include "mmheap.h"
#include "layout.h"
#include "debug.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define MMH_DEFAULT_SIZE     MMH_SEG_SIZE
#define MMH_DEFAULT_MAX_SIZE ((size_t)1 << 40)
/* Under valgrind, which spends some 20 ms per GiB of a mapping when it is
 * made and again when it goes (21 s for 1 TiB, measured with valgrind
 * 3.19): the default of earlier releases. */
#define MMH_VALGRIND_MAX_SIZE ((size_t)64 << 30)

/* Flags of a free span made of two: purged (punched) if both were, holes
 * if either had some. */
static inline unsigned mmh_merge_free_flags(unsigned a, unsigned b)
{
    return (a & b & (MMH_PF_PURGED | MMH_PF_PUNCHED)) | ((a | b) & MMH_PF_HOLES);
}

/* ---- process side -------------------------------------------------- */

/* A range of a heap, reported to fn; nonzero stops the walk. */
typedef int (*mmh_range_fn)(mmh_heap *h, size_t off, size_t len, void *arg);

typedef struct mmh_track_ops mmh_track_ops; /* track.h */
typedef struct mmh_job mmh_job; /* snapshot.c */
typedef struct mmh_persist mmh_persist; /* persist.c */

/* Slots kept for threads without one of their own: never bound, each
 * taken for one call at a time under its lock (thread.c). */
#define MMH_SHARED_SLOTS 16

struct mmh_heap {
    /* The mapping: fixed while the heap is open (mapped only grows); the
     * fast paths read it without a lock. */
    char           *base;
    mmh_hdr        *hdr;
    uint32_t       *segmap;
    uint64_t        uid;       /* unique in this process, never reused  */
    _Atomic size_t  mapped;    /* bytes mapped (== extent)              */
    _Atomic size_t  max_size;  /* the reservation: only grows (mmh_grow) */
    unsigned        flags;     /* MMH_*                                 */
    bool            memcheck;  /* a memcheck pool (instrument.h)        */
    pthread_mutex_t lock;      /* spans, segments, slots, root, commit:
                                  taken through mmh_lock                */
    MMH_DEBUG_ONLY(_Atomic uintptr_t lock_owner;) /* pthread_self() or 0 */
    void           *root;      /* the root object: a real pointer, so that
                                  memcheck's leak search finds it       */

    /* The file (heap.c, region.c). */
    int             fd;        /* -1: anonymous                         */
    int             dir_fd;    /* file heaps: the file's directory (O_PATH) */
    char           *path;      /* for messages; "(anonymous)"           */
    size_t          file_size; /* MMH_VOLATILE: bytes backed by the file */
    bool            fs_checked, fs_faults_allocate; /* region.c: tmpfs-like */

    /* Threads (thread.c): the slot tables, how many threads hold a slot
     * of their own, the slots nobody holds, and the shared slots that the
     * threads without one take turns on. */
    struct {
        /* By table number (0: in segment 0): set at open and when a table
         * is added (release), read by mmh_slot_at (acquire), no lock. */
        mmh_slot *_Atomic tables[MMH_SLOT_TABLES_MAX];
        _Atomic uint32_t bound;
        /* Ids below slots_hwm that no thread holds, under h->lock: room
         * for nslots (writable heaps). */
        uint32_t        *unheld, nunheld;
        _Atomic uint64_t table_retry_ns; /* a table could not be added:
                                            binds borrow until then    */
        struct {
            pthread_mutex_t lock;
            uint32_t        id; /* slot index + 1; 0: none claimed yet */
        } share[MMH_SHARED_SLOTS];
    } threads;

    /* Dirty tracking (track.c and the backends). */
    struct {
        mmh_tracker          kind;    /* the resolved kind in use       */
        const mmh_track_ops *ops;     /* NULL: untracked (full write-back) */
        void                *state;   /* the backend's own              */
        _Atomic uint64_t     faults;  /* write faults the backend saw   */
        mmh_tracker          restart; /* to restart at the next commit
                                         (a forked child loses uffd's)  */
    } track;

    /* Persistence (persist.c owns state; heaps that write back have it). */
    struct {
        mmh_persist *state;
        uint64_t     commits, bytes_written, last_commit_ns, last_commit_time;
    } persist;

    /* Background jobs (snapshot.c).  lock serializes starting and reaping
     * them and is taken before h->lock. */
    struct {
        pthread_mutex_t lock;
        mmh_job        *running;  /* or NULL                            */
        int             err;      /* of the last finished one: 0 if it succeeded */
        bool            unreported; /* mmh_wait has not returned it yet */
        char            msg[512];
        uint64_t        last_fork_ns, last_ns, last_bytes, cow_pages, count, failed;
    } job;

    /* The names table (names.c): readers share the lock, a writer holds it
     * alone; taken before h->lock. */
    struct {
        pthread_rwlock_t lock;
    } names;

    /* Space (segment.c, under h->lock): bytes in spans given to blocks,
     * and free memory handed back to the system. */
    struct {
        size_t   used_bytes, used_peak;
        uint64_t purged_bytes;
        uint32_t purge_pass_ms;   /* when free memory was last purged   */
    } space;

    struct mmh_heap *next_open;
};

/* h->lock.  A debug build knows its owner, for mmh_assert_locked. */
static inline void mmh_lock(mmh_heap *h)
{
    pthread_mutex_lock(&h->lock);
    MMH_DEBUG_ONLY(atomic_store_explicit(&h->lock_owner, (uintptr_t)pthread_self(),
                                         memory_order_relaxed));
}

static inline void mmh_unlock(mmh_heap *h)
{
    MMH_DEBUG_ONLY(atomic_store_explicit(&h->lock_owner, 0, memory_order_relaxed));
    pthread_mutex_unlock(&h->lock);
}

#ifdef MMH_DEBUG
#define mmh_assert_locked(h)                                                       \
    mmh_assert(atomic_load_explicit(&(h)->lock_owner, memory_order_relaxed) ==     \
               (uintptr_t)pthread_self())
#else
#define mmh_assert_locked(h) ((void)(h))
#endif

/* Does h write its changes back to its file (commits, growth of the file)? */
static inline bool mmh_writes_back(const mmh_heap *h)
{
    return h->fd >= 0 && !(h->flags & (MMH_READONLY | MMH_VOLATILE));
}

/* A thread's binding to one heap: the slot it allocates from. */
typedef struct mmh_tbind {
    uint64_t  uid;
    char     *base;
    mmh_slot *slot;
    uint32_t  slot_id;        /* slot index + 1, as in mmh_page.slot_id */
    uint32_t  pad_;
} mmh_tbind;

#define MMH_TBINDS 4
extern __thread mmh_tbind mmh_tls_binds[MMH_TBINDS]
    __attribute__((tls_model("initial-exec"))) MMH_HIDDEN;

/* NULL: EROFS (reason set), or EAGAIN: the thread has no slot of its own
 * and borrows a shared one for the call (mmh_slot_borrow, then
 * mmh_slot_return on the same thread; borrows do not nest). */
MMH_HIDDEN mmh_tbind *mmh_bind_slow(mmh_heap *h) __attribute__((cold));
MMH_HIDDEN void mmh_slot_borrow(mmh_heap *h, mmh_tbind *b);
MMH_HIDDEN void mmh_slot_return(mmh_tbind *b);

/* The slot of id (index + 1, as pages name their owner): its table's
 * address, published before any page names a slot of it, and an index. */
static inline mmh_slot *mmh_slot_at(const mmh_heap *h, uint32_t id)
{
    mmh_slot *table = atomic_load_explicit(&h->threads.tables[(id - 1) / MMH_SLOTS],
                                           memory_order_acquire);
    return &table[(id - 1) % MMH_SLOTS];
}

static inline mmh_tbind *mmh_bind(mmh_heap *h)
{
    mmh_tbind *b = &mmh_tls_binds[0];
    if (likely(b->uid == h->uid))
        return b;
    return mmh_bind_slow(h);
}

/* The thread's binding to h if it is its latest, else NULL: a slow path's
 * cheap way to the slot's span cache, where it need not bind. */
static inline mmh_tbind *mmh_bound(const mmh_heap *h)
{
    mmh_tbind *b = &mmh_tls_binds[0];
    return b->uid == h->uid ? b : NULL;
}

static inline mmh_segment *mmh_segment_of(const void *p)
{
    uintptr_t seg = ((uintptr_t)p - 1) & ~(uintptr_t)MMH_SEG_MASK;
    return (mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
}

/* The span head describing p; p must lie in a sliced or huge segment. */
static inline mmh_page *mmh_page_of(const void *p)
{
    uintptr_t seg = ((uintptr_t)p - 1) & ~(uintptr_t)MMH_SEG_MASK;
    mmh_segment *s = (mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
    mmh_page *pg = &s->pages[((uintptr_t)p - seg) >> MMH_SLICE_SHIFT];
    return pg - pg->slice_offset;
}

/* p's offset from the start of its span, as mmh_page_of finds the span
 * (cheaper than p - mmh_page_start(mmh_page_of(p))). */
static inline size_t mmh_span_offset(const void *p)
{
    uintptr_t seg = ((uintptr_t)p - 1) & ~(uintptr_t)MMH_SEG_MASK;
    const mmh_segment *s = (const mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
    uintptr_t in_seg = (uintptr_t)p - seg;
    return (in_seg & (MMH_SLICE_SIZE - 1)) +
           ((size_t)s->pages[in_seg >> MMH_SLICE_SHIFT].slice_offset << MMH_SLICE_SHIFT);
}

static inline char *mmh_page_start(const mmh_page *pg)
{
    uintptr_t seg = (uintptr_t)pg & ~(uintptr_t)MMH_SEG_MASK;
    const mmh_segment *s = (const mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
    return (char *)(seg + ((size_t)(pg - s->pages) << MMH_SLICE_SHIFT));
}

static inline uint64_t mmh_off(const mmh_heap *h, const void *p)
{
    return (uint64_t)((const char *)p - h->base);
}

static inline void *mmh_ptr(const mmh_heap *h, uint64_t off)
{
    return h->base + off;
}

/* The page descriptor at a heap offset; NULL for 0 (the end of a list). */
static inline mmh_page *mmh_page_at(const mmh_heap *h, uint64_t off)
{
    return off ? (mmh_page *)mmh_ptr(h, off) : NULL;
}

static inline size_t mmh_seg_index(const mmh_heap *h, const void *seg_start)
{
    return (size_t)(((const char *)seg_start - h->base) >> MMH_SEG_SHIFT);
}

static inline mmh_segment *mmh_seg_at(const mmh_heap *h, size_t idx)
{
    return (mmh_segment *)(h->base + (idx << MMH_SEG_SHIFT) + MMH_SEGHDR_OFFSET);
}

static inline size_t mmh_align_up(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* ---- functions shared between files -------------------------------- */

/* util.c: async-signal-safe */
MMH_HIDDEN uint64_t mmh_now_ns(int clock); /* clock_gettime(clock) in ns */
MMH_HIDDEN uint32_t mmh_clock_ms(void); /* coarse, wraps: for ages */
MMH_HIDDEN uint64_t mmh_random_u64(void);
/* Would a file of size bytes exceed RLIMIT_FSIZE (writing there raises
 * SIGXFSZ)? */
MMH_HIDDEN bool     mmh_beyond_fsize_limit(size_t size);

/* meta.c: the library's own memory, never drawn from a heap */
MMH_HIDDEN void *mmh_meta_alloc(size_t size);
MMH_HIDDEN void *mmh_meta_calloc(size_t n, size_t size);
MMH_HIDDEN void *mmh_meta_realloc(void *p, size_t size);
MMH_HIDDEN void  mmh_meta_free(void *p);
MMH_HIDDEN char *mmh_meta_strndup(const char *s, size_t max);
MMH_HIDDEN void  mmh_meta_fork_prepare(void);
MMH_HIDDEN void  mmh_meta_fork_done(void);

static inline char *mmh_meta_strdup(const char *s)
{
    return mmh_meta_strndup(s, SIZE_MAX);
}

/* error.c */
MMH_HIDDEN int   mmh_fail(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
MMH_HIDDEN void *mmh_fail_null(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line to mmh_log_fd (stderr), "mmheap: " in front; no stdio, no
 * malloc. */
MMH_HIDDEN void  mmh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int mmh_log_fd MMH_HIDDEN;

/* hash.c */
/* memcpy from heap memory, free (poisoned) blocks included */
MMH_HIDDEN void     mmh_copy_unchecked(void *dst, const void *src, size_t len);

/* region.c: address space and mappings */
MMH_HIDDEN bool  mmh_region_fits(uint64_t base, uint64_t max_size);
MMH_HIDDEN void *mmh_region_reserve(void *want, size_t size, bool exact);
MMH_HIDDEN int   mmh_region_map(mmh_heap *h, size_t from, size_t to);
MMH_HIDDEN void  mmh_region_release(void *base, size_t size);
MMH_HIDDEN void  mmh_region_purge(mmh_heap *h, size_t off, size_t len);
MMH_HIDDEN int   mmh_file_punch(mmh_heap *h, size_t off, size_t len);
MMH_HIDDEN int   mmh_region_prepare(mmh_heap *h, size_t off, size_t len);
MMH_HIDDEN int   mmh_region_grow(mmh_heap *h, size_t extent);
MMH_HIDDEN int   mmh_region_extend(mmh_heap *h, size_t max_size, uint32_t segmap_len);
MMH_HIDDEN int   mmh_region_move(mmh_heap *h, size_t from, size_t to, size_t len);

/* format.c: the file header */
/* A new heap's header, and h->segmap in it. */
MMH_HIDDEN void     mmh_format_init(mmh_heap *h, size_t extent);
/* A format 4 to 6 header (read from path, file_size bytes) rewritten in
 * place as format 7; any other left alone.  -1 if it cannot be. */
MMH_HIDDEN int      mmh_format_upgrade(const char *path, mmh_hdr *hdr, uint64_t file_size);

/* segment.c: segments and spans; callers hold h->lock */
MMH_HIDDEN void      mmh_segment_init_first(mmh_heap *h);
MMH_HIDDEN mmh_page *mmh_span_alloc(mmh_heap *h, size_t slices, size_t align_slices, bool room);
MMH_HIDDEN void      mmh_span_free(mmh_heap *h, mmh_page *pg, unsigned flags);
MMH_HIDDEN bool      mmh_span_grow(mmh_heap *h, mmh_page *pg, size_t slices);
MMH_HIDDEN void      mmh_span_shrink(mmh_heap *h, mmh_page *pg, size_t slices);
MMH_HIDDEN mmh_page *mmh_huge_alloc(mmh_heap *h, size_t size, size_t align, bool room,
                                    char **block);
MMH_HIDDEN void      mmh_huge_free(mmh_heap *h, mmh_page *pg, unsigned flags);
MMH_HIDDEN bool      mmh_huge_resize(mmh_heap *h, mmh_page *pg, size_t nsegs);
MMH_HIDDEN size_t    mmh_huge_segments(const mmh_heap *h, const mmh_page *pg);
/* Is a purge pass due?  Without h->lock, a hint for a path that does not
 * take it otherwise (spancache.c). */
MMH_HIDDEN bool      mmh_purge_due(const mmh_heap *h);
MMH_HIDDEN void      mmh_purge_maybe(mmh_heap *h);
MMH_HIDDEN uint64_t  mmh_purge_all(mmh_heap *h); /* takes h->lock; bytes purged */
MMH_HIDDEN int       mmh_punch_purged(mmh_heap *h, mmh_range_fn punch, void *arg);

/* spancache.c: a slot's free spans, used by its owner (or borrower) only */
/* The oldest cached span of `slices` to `most` slices, now LARGE and as
 * mmh_span_alloc leaves a span; or NULL. */
MMH_HIDDEN mmh_page *mmh_span_cache_take(mmh_heap *h, mmh_slot *slot, size_t slices,
                                         size_t most);
/* Keep pg (a large block's or a page's span, done with) in the slot of
 * that id; or give it back to the bins, if it is too long to keep. */
MMH_HIDDEN void      mmh_span_cache_put(mmh_heap *h, mmh_slot *slot, uint32_t slot_id,
                                        mmh_page *pg);
/* Every cached span of slot back to the bins; h->lock held. */
MMH_HIDDEN void      mmh_span_cache_flush(mmh_heap *h, mmh_slot *slot);

/* page.c: small pages, owner side */
MMH_HIDDEN void *mmh_page_alloc_slow(mmh_heap *h, mmh_tbind *b, unsigned cls);
MMH_HIDDEN void  mmh_page_free_local(mmh_heap *h, mmh_tbind *b, mmh_page *pg);
/* false, nothing done, if p heads the remote free list already */
MMH_HIDDEN bool  mmh_page_free_remote(mmh_heap *h, mmh_page *pg, void *p);
MMH_HIDDEN void  mmh_slot_trim(mmh_heap *h, mmh_slot *slot);

/* thread.c: bindings and slots */
/* The mapping is final: find the slot tables and, writable, hold none of
 * the slots (owners of an earlier run mean nothing).  -1: out of memory. */
MMH_HIDDEN int  mmh_slots_open(mmh_heap *h);
MMH_HIDDEN void mmh_slots_close(mmh_heap *h);
MMH_HIDDEN void mmh_slots_uncache(mmh_heap *h);
MMH_HIDDEN int  mmh_registry_add(mmh_heap *h);
MMH_HIDDEN void mmh_registry_remove(mmh_heap *h);

/* names.c: atfork, from thread.c's handlers */
MMH_HIDDEN void mmh_names_fork_prepare(mmh_heap *h);
MMH_HIDDEN void mmh_names_fork_done(mmh_heap *h, bool child);

/* snapshot.c: caller holds h->job.lock.  1: still running (nohang). */
MMH_HIDDEN int  mmh_job_reap(mmh_heap *h, bool nohang);
MMH_HIDDEN void mmh_job_forget(mmh_heap *h);

/* heap.c: does the name path (relative to dir_fd) hold the file fd? */
MMH_HIDDEN bool mmh_file_is_named(int fd, int dir_fd, const char *path);

/* default.c: the default heap and MMHEAP_OPTIONS */
typedef struct mmh_options {
    bool stats, verbose, leaks;
} mmh_options;

extern mmh_heap *_Atomic mmh_default_ptr MMH_HIDDEN;
extern mmh_options mmh_opts MMH_HIDDEN;
MMH_HIDDEN void mmh_default_print_stats(void);
MMH_HIDDEN void mmh_options_read(void); /* once */

/* stats.c */
/* The small pages of one size class, as the statistics and the checker
 * count them. */
typedef struct mmh_class_stats {
    uint64_t pages, blocks, capacity; /* capacity: blocks the pages hold */
} mmh_class_stats;

MMH_HIDDEN void mmh_stats_init(mmh_heap *h);
MMH_HIDDEN void mmh_stats_classes(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES]);

/* alloc.c */
MMH_HIDDEN bool   mmh_block_valid(mmh_heap *h, const void *p, mmh_page **pgp);
/* Is size no more than h's max_size?  false with ENOMEM and a message. */
MMH_HIDDEN bool   mmh_size_allowed(mmh_heap *h, size_t size);
/* The usable size of p, a valid block of pg. */
MMH_HIDDEN size_t mmh_block_usable(const mmh_heap *h, const mmh_page *pg, const void *p);
/* A block in a span of its own or a huge run, however small; with `room`,
 * placed where it can grow in place (mmh_span_alloc, mmh_huge_alloc).  b:
 * the caller's binding, whose slot's span cache serves it; or NULL. */
MMH_HIDDEN void  *mmh_large_alloc(mmh_heap *h, mmh_tbind *b, size_t size, size_t align,
                                  bool room);
/* Free p, the large or huge block of pg, into b's span cache (b may be
 * NULL); flags MMH_PF_PURGED when its memory was handed back already. */
MMH_HIDDEN void   mmh_large_free(mmh_heap *h, mmh_tbind *b, mmh_page *pg, void *p,
                                 unsigned flags);

#include "instrument.h"

/* ---- the fast paths ---------------------------------------------------
 * Inline here so that malloc (malloc.c) and mmh_alloc (alloc.c) share
 * them; everything else is in the *_slow functions. */

MMH_HIDDEN void *mmh_alloc_slow(mmh_heap *h, size_t size, size_t align);

/* What mmh_free_slow made of a pointer. */
typedef enum {
    MMH_FREED = 0,    /* freed; or, errno EROFS, h is read-only      */
    MMH_FREE_INVALID, /* no block of h (errno untouched, h untouched) */
    MMH_FREE_DOUBLE,  /* the block freed last, freed again: the head
                         of its page's free list (likewise)          */
} mmh_free_result;

/* Free p (not NULL) into h. */
MMH_HIDDEN mmh_free_result mmh_free_slow(mmh_heap *h, void *p);

/* Reciprocals of the class sizes, by mmh_page.cls (all 256 values, so a
 * damaged one stays inside the table; 0 past the classes). */
extern const uint32_t mmh_class_recip[256] MMH_HIDDEN;

/* Is p the start of a block the small page pg has carved?  A multiply
 * instead of a division: (in * recip) >> 32 is the exact quotient for
 * every multiple of the block size a page holds (< 2^19), and a product
 * equal to in proves the boundary whatever the quotient. */
static inline bool mmh_block_start(const mmh_page *pg, const void *p)
{
    uint64_t in = mmh_span_offset(p), i = (in * mmh_class_recip[pg->cls]) >> 32;
    return i * pg->block_size == in && i < pg->capacity;
}

static inline void *mmh_page_pop(mmh_heap *h, mmh_page *pg)
{
    mmh_assert(pg->kind == MMH_PAGE_SMALL && pg->used < pg->capacity);
    void *p = mmh_ptr(h, pg->free);
    pg->free = mmh_link_get(h, p);
    pg->used++;
    mmh_block_alloced(h, p, pg->block_size, false);
    return p;
}

/* A small block from the thread's current page of its class. */
static inline __attribute__((always_inline)) void *mmh_alloc_fast(mmh_heap *h, size_t size)
{
    mmh_tbind *b = &mmh_tls_binds[0];
    if (likely(b->uid == h->uid && size <= MMH_SMALL_MAX && !mmh_memcheck(h))) {
        unsigned cls = mmh_size_class(size);
        mmh_page *pg = (mmh_page *)(b->base + b->slot->pages[cls]);
        if (likely(pg->free))
            return mmh_page_pop(h, pg);
        return mmh_page_alloc_slow(h, b, cls);
    }
    return mmh_alloc_slow(h, size, MMH_MIN_ALIGN);
}

/* p, a block of pg (a page of b's slot), back onto its free list; false,
 * nothing done, if p heads the list already (a double free).  The slow
 * part is needed only when a page other than its class's current one
 * empties, or a parked (full) page gets a block back. */
static inline __attribute__((always_inline)) bool mmh_page_push_own(mmh_heap *h, mmh_tbind *b,
                                                                    mmh_page *pg, void *p)
{
    uint64_t off = mmh_off(h, p);
    if (unlikely(pg->free == off))
        return false;
    if (unlikely(!mmh_block_freeing(h, p, pg->block_size)))
        return true; /* free already: the checker reported it */
    mmh_assert(pg->used > 0);
    mmh_link_set(h, p, pg->free);
    pg->free = off;
    if (unlikely((--pg->used == 0 && b->slot->pages[pg->cls] != mmh_off(h, pg)) ||
                 (pg->flags & MMH_PF_PARKED)))
        mmh_page_free_local(h, b, pg);
    return true;
}

/* A small block back onto a page the thread owns, or onto the remote-free
 * list of another thread's page; false when p is anything else, a bad
 * pointer included (mmh_free_slow's work, and its report). */
static inline __attribute__((always_inline)) bool mmh_free_fast(mmh_heap *h, void *p)
{
    mmh_tbind *b = &mmh_tls_binds[0];
    size_t rel = (size_t)((char *)p - h->base);
    if (unlikely(b->uid != h->uid || rel - MMH_SLICE_SIZE >= h->mapped - MMH_SLICE_SIZE ||
                 (rel & (MMH_MIN_ALIGN - 1)) ||
                 h->segmap[(rel - 1) >> MMH_SEG_SHIFT] != MMH_SEGMAP(MMH_SEGMAP_SLICED, 0)))
        return false;
    mmh_page *pg = mmh_page_of(p);
    if (unlikely(!mmh_block_start(pg, p))) /* large blocks too: capacity 0 */
        return false;
    if (unlikely(pg->slot_id != b->slot_id)) {
        if (pg->kind != MMH_PAGE_SMALL || !pg->slot_id)
            return false;
        return mmh_page_free_remote(h, pg, p); /* the page stays while p is live */
    }
    if (mmh_memcheck(h))
        return false;
    return mmh_page_push_own(h, b, pg, p);
}

#endif /* MMH_INTERNAL_H */
