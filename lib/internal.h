/* Internal types shared by the library: geometry, the in-heap structures,
 * the process-side heap handle and the thread bindings.
 *
 * Everything stored inside a heap refers to other parts of the heap by
 * offsets from the base, never by pointers, so a heap can be mapped again at
 * another address (MMH_RELOCATE) and its allocator state stays valid.
 */
#ifndef MMH_INTERNAL_H
#define MMH_INTERNAL_H

#include "config.h"
#include "mmheap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MMH_HIDDEN  __attribute__((visibility("hidden")))

/* ---- geometry ---------------------------------------------------------
 * The heap is an array of 4 MiB segments aligned to their size (the base is
 * segment-aligned).  A segment is 64 slices of 64 KiB.  Slice 0 of every
 * segment holds its metadata; segment 0 also holds the file header, the
 * segment map and the thread slots.  Small objects live in pages (spans of
 * 1 or 8 slices) of one size class; large objects get spans of slices; huge
 * objects get runs of whole segments.  A block's metadata is found by
 * arithmetic: segment = (p - 1) & ~mask, slice = (p - segment) >> 16.  The
 * "- 1" lets a huge block that needs segment alignment start exactly at the
 * end of its head segment's first slice range (descriptor 64).
 */
#define MMH_SLICE_SHIFT   16
#define MMH_SLICE_SIZE    ((size_t)1 << MMH_SLICE_SHIFT)
#define MMH_SEG_SHIFT     22
#define MMH_SEG_SIZE      ((size_t)1 << MMH_SEG_SHIFT)
#define MMH_SEG_MASK      (MMH_SEG_SIZE - 1)
#define MMH_SEG_SLICES    ((unsigned)(MMH_SEG_SIZE / MMH_SLICE_SIZE))
#define MMH_HDR_SIZE      4096u   /* file header: the first 4 KiB of the file */
#define MMH_SEGHDR_OFFSET 4096u   /* segment header, inside every segment     */
#define MMH_MIN_ALIGN     16u

#define MMH_DEFAULT_SIZE     MMH_SEG_SIZE
#define MMH_DEFAULT_MAX_SIZE ((size_t)64 << 30)
#define MMH_MAX_MAX_SIZE     ((size_t)2 << 40)
#define MMH_SLOTS            1024u

/* ---- size classes -----------------------------------------------------
 * Classes 1..8 are 16..128 bytes in steps of 16; above that, 4 classes per
 * power of two up to 128 KiB (class 48).  Worst-case waste is 20% of the
 * block just above a power of two.  Class 0 is unused.
 */
#define MMH_SMALL_MAX      ((size_t)128 << 10)
#define MMH_CLASSES        49u
#define MMH_SMALL_PAGE_MAX ((size_t)8 << 10)  /* classes up to this: 1-slice pages */
#define MMH_MEDIUM_SLICES  8u                 /* larger classes: 8-slice pages    */

static inline unsigned mmh_size_class(size_t size)
{
    if (size <= 128)
        return size <= 16 ? 1 : (unsigned)((size + 15) >> 4);
    size_t w = size - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll(w);
    return 8u + (b - 7u) * 4u + (unsigned)((w >> (b - 2u)) & 3u) + 1u;
}

static inline size_t mmh_class_size(unsigned cls)
{
    if (cls <= 8)
        return (size_t)cls * 16u;
    unsigned k = cls - 9u, b = 7u + k / 4u;
    return ((size_t)1 << b) + (size_t)(k % 4u + 1u) * ((size_t)1 << (b - 2u));
}

/* ---- in-heap structures ---------------------------------------------- */

enum mmh_page_kind {
    MMH_PAGE_FREE = 0,   /* free span of slices                 */
    MMH_PAGE_SMALL,      /* page of blocks of one size class    */
    MMH_PAGE_LARGE,      /* one block spanning slices           */
    MMH_PAGE_HUGE,       /* one block spanning whole segments   */
    MMH_PAGE_META,       /* segment metadata                    */
};

enum {
    MMH_PF_PURGED  = 1u << 0, /* free span: all its memory was handed back  */
    MMH_PF_HOLES   = 1u << 1, /* free span: some of it was handed back      */
    MMH_PF_FULL    = 1u << 2, /* small page parked: off its class's list    */
    MMH_PF_PUNCHED = 1u << 3, /* free span: a hole in the file as committed */
    MMH_PF_ZEROED  = 1u << 4, /* large block just made of memory known to be
                                 zero (purged, or never touched, in an
                                 anonymous heap): calloc need not clear it */
};

/* Flags of a free span made of two: purged (punched) if both were, holes
 * if either had some. */
static inline unsigned mmh_merge_free_flags(unsigned a, unsigned b)
{
    return (a & b & (MMH_PF_PURGED | MMH_PF_PUNCHED)) | ((a | b) & MMH_PF_HOLES);
}

/* Low bits of mmh_page.xfree (blocks are 16-aligned), shared between the
 * owner and remote freeing threads. */
enum {
    MMH_XF_FULL     = 1u << 0, /* owner parked the page as full (may be
                                  stale: cleared lazily after an unpark)    */
    MMH_XF_NOTIFIED = 1u << 1, /* a remote free queued it on slot->xpages   */
    MMH_XF_FLAGS    = 15u,
};

/* Descriptor of one slice; the first slice of a span describes the span.
 * Two cache lines: the first has what the owner uses, the second what other
 * threads write (a remote free's compare-and-swap), so remote frees do not
 * take the owner's line away from it.  Pages of different threads never
 * share a line. */
typedef struct __attribute__((aligned(64))) mmh_page {
    uint64_t free;            /* SMALL: owner's free list (heap offset);
                                 LARGE, HUGE: heap offset of the block     */
    uint32_t used;            /* blocks handed out, as the owner knows it  */
    uint32_t block_size;
    uint32_t capacity;        /* blocks carved so far                      */
    uint32_t reserved;        /* blocks the page holds                     */
    uint32_t slot;            /* owning slot index + 1; 0: none            */
    uint16_t slice_count;     /* span head: slices in the span             */
    uint16_t slice_offset;    /* slices back to the span head              */
    uint8_t  kind;
    uint8_t  cls;
    uint8_t  flags;           /* MMH_PF_*, owner or heap lock              */
    uint8_t  pad_;
    uint32_t freed_ms;        /* FREE: when it was freed                   */
    uint64_t next, prev;      /* span bin or slot list links               */
    _Alignas(64) _Atomic uint64_t xfree; /* blocks freed by other threads:
                                 heap offset of the first, low bits MMH_XF_* */
    uint64_t xnext;           /* link on the slot's notified stack         */
} mmh_page;

_Static_assert(sizeof(mmh_page) == 128, "a page descriptor is two cache lines");

#define MMH_SEG_MAGIC 0x4d4d5347u /* "MMSG" */

typedef struct mmh_segment {
    uint32_t magic;
    uint32_t first_slice;     /* first slice after the metadata            */
    uint32_t nsegs;           /* free run head: segments in the run        */
    uint32_t flags;           /* MMH_PF_PURGED for a free run              */
    uint64_t next, prev;      /* free run list: heap offsets of segments   */
    uint32_t freed_ms;        /* free run head: when it was freed          */
    uint32_t pad_;
    uint64_t reserved_[4];
    mmh_page pages[MMH_SEG_SLICES + 1]; /* +1: see the geometry note       */
} mmh_segment;

/* Segment map: one entry per segment of the reservation. */
#define MMH_SEGMAP_KIND(e) ((e) >> 28)
#define MMH_SEGMAP_LEN(e)  ((e) & 0x0fffffffu)
enum {
    MMH_SEGMAP_NONE = 0,  /* outside the used extent                      */
    MMH_SEGMAP_SLICED,    /* segment of spans                              */
    MMH_SEGMAP_HUGE,      /* head of a huge block run; LEN = segments      */
    MMH_SEGMAP_HUGE_IN,   /* inside a huge block run; LEN = back to head   */
    MMH_SEGMAP_FREE,      /* head of a free run; LEN = segments            */
    MMH_SEGMAP_FREE_IN,   /* inside a free run; LEN = back to the head,
                             exact only in the run's last segment          */
};
#define MMH_SEGMAP(kind, len) (((uint32_t)(kind) << 28) | (uint32_t)(len))

/* A thread's share of the heap.  Stored in the heap so that every block's
 * state survives a commit; reopening only clears the owners. */
typedef struct __attribute__((aligned(64))) mmh_slot {
    _Atomic uint64_t owner;      /* nonzero while a thread holds the slot   */
    _Atomic uint64_t xpages;     /* full pages that got remote frees        */
    uint64_t full_;              /* once the list of parked pages           */
    uint64_t reserved_[5];       /* once counters: mmh_stats counts pages  */
    uint64_t pages[MMH_CLASSES]; /* per class: page allocated from, in a
                                    ring (next/prev) with the others that
                                    are not parked                        */
} mmh_slot;

#define MMH_MAGIC          "MMHEAP\r\n"
#define MMH_FORMAT_VERSION 5u /* 2: file_id; 3: remote-free line of mmh_page;
                                 4: a slot's class lists are rings;
                                 5: write-ahead log (wal_gen) */
#define MMH_SPAN_BINS      (MMH_SEG_SLICES)
#define MMH_EMPTY_PAGE_OFF offsetof(mmh_hdr, empty_page)

/* The file header: offset 0 of the file and of the heap.  The checksum
 * covers the whole MMH_HDR_SIZE bytes with the checksum field zeroed. */
typedef struct mmh_hdr {
    char     magic[8];
    uint32_t version;
    uint32_t hdr_size;
    uint32_t page_size;
    uint32_t seg_size;
    uint64_t base;            /* address the heap was last mapped at       */
    uint64_t max_size;        /* reservation                               */
    uint64_t extent;          /* bytes in use: the file size               */
    uint64_t root;            /* offset of the root object; 0: none        */
    uint64_t commit_seq;
    uint64_t file_id;         /* random, fixed at creation: a log replays
                                 only onto the file it was made for        */
    uint64_t wal_gen;         /* the generation of FILE.wal this file's
                                 commits go through; 0: none made yet      */
    uint64_t segmap_off;      /* segment map (uint32 per segment)          */
    uint64_t slots_off;       /* MMH_SLOTS mmh_slot                        */
    uint32_t nslots;
    uint32_t slots_hwm;       /* slots ever used: the ones to reset        */
    uint32_t first_slice;     /* of segment 0                              */
    uint32_t pad_;
    uint64_t span_bitmap;     /* bins with free spans                      */
    uint64_t span_bins[MMH_SPAN_BINS + 1]; /* by slice count; heads of lists */
    uint64_t free_segs;       /* list of free segment runs                 */
    uint64_t large_allocs, large_frees, large_alloc_bytes, large_free_bytes;
    uint64_t unpurged;        /* bytes of free memory not yet handed back  */
    mmh_page empty_page;      /* page with no free block: slots' default   */
    uint64_t checksum;
} mmh_hdr;

_Static_assert(sizeof(mmh_hdr) <= MMH_HDR_SIZE, "header fits its page");

/* Format 4's header (the redo journal's), read and converted by
 * mmh_format_upgrade: format 5 added wal_gen after file_id. */
typedef struct mmh_hdr4 {
    char     magic[8];
    uint32_t version, hdr_size, page_size, seg_size;
    uint64_t base, max_size, extent, root, commit_seq, file_id;
    uint64_t segmap_off, slots_off;
    uint32_t nslots, slots_hwm, first_slice, pad_;
    uint64_t span_bitmap;
    uint64_t span_bins[MMH_SPAN_BINS + 1];
    uint64_t free_segs;
    uint64_t large_allocs, large_frees, large_alloc_bytes, large_free_bytes;
    uint64_t unpurged;
    mmh_page empty_page;
    uint64_t checksum;
} mmh_hdr4;
_Static_assert(MMH_SEGHDR_OFFSET + sizeof(mmh_segment) <= MMH_SLICE_SIZE,
               "segment header fits slice 0");

/* ---- process side -------------------------------------------------- */

/* A growable list of heap ranges; adjacent ones are merged on add. */
typedef struct mmh_range {
    size_t off, len;
} mmh_range;

typedef struct mmh_ranges {
    mmh_range *v;
    size_t     n, cap;
} mmh_ranges;

/* Dirty tracking backends (lib/track_*.c).  Offsets are heap offsets;
 * ranges are page-aligned.  A heap without a file (or read-only) is not
 * tracked.  All calls but touch run with h->lock held. */
typedef int (*mmh_range_fn)(mmh_heap *h, size_t off, size_t len, void *arg);

typedef struct mmh_track_ops {
    mmh_tracker kind;
    /* Can this process use the backend?  0, or -1 with a reason. */
    int  (*probe)(void);
    /* Start tracking [0, h->mapped): every page counts as clean. */
    int  (*attach)(mmh_heap *h);
    /* Growth mapped [from, to): track it too, clean. */
    int  (*extend)(mmh_heap *h, size_t from, size_t to);
    /* Report the ranges written since the last collect, in ascending order,
     * and count them clean again.  After a failure the heap is failed. */
    int  (*collect)(mmh_heap *h, mmh_range_fn fn, void *arg);
    /* Make [off, off + len) writable by the kernel (read(2) into it). */
    int  (*touch)(mmh_heap *h, size_t off, size_t len);
    void (*detach)(mmh_heap *h);
} mmh_track_ops;

extern const mmh_track_ops mmh_track_uffd MMH_HIDDEN;
extern const mmh_track_ops mmh_track_mprotect MMH_HIDDEN;
/* Widening thresholds of the mprotect tracker, for tests. */
MMH_HIDDEN void mmh_track_mprotect_tune(unsigned pages, unsigned step);

typedef struct mmh_job mmh_job; /* snapshot.c */
typedef struct mmh_persist mmh_persist; /* persist.c */

/* Slots kept for threads without one of their own: never bound, each
 * taken for one call at a time under its lock (thread.c). */
#define MMH_SHARED_SLOTS 16

struct mmh_heap {
    char           *base;
    mmh_hdr        *hdr;
    uint32_t       *segmap;
    mmh_slot       *slots;
    uint64_t        uid;       /* unique in this process, never reused */
    int             fd;        /* -1: anonymous                        */
    int             dir_fd;    /* file heaps: the file's directory (O_PATH) */
    unsigned        flags;
    bool            memcheck;  /* a memcheck pool (instrument.h)         */
    mmh_tracker     tracker;   /* resolved kind in use                  */
    const mmh_track_ops *track; /* NULL: untracked (full write-back)     */
    void           *track_state; /* the backend's own                     */
    _Atomic uint64_t faults;   /* write faults the tracker saw          */
    size_t          max_size;
    _Atomic size_t  mapped;    /* bytes mapped (== extent)              */
    pthread_mutex_t lock;      /* spans, segments, slots, root, commit  */
    /* Slots (thread.c): how many threads hold one of their own, and the
     * shared slots that the threads without one take turns on. */
    _Atomic uint32_t slots_bound;
    struct {
        pthread_mutex_t lock;
        uint32_t        id;    /* slot index + 1; 0: none claimed yet */
    } share[MMH_SHARED_SLOTS];
    char           *path;      /* for messages; "(anonymous)"           */
    mmh_persist    *persist;   /* heaps that write back: the commit
                                  protocol's state (persist.c owns it)  */
    uint64_t        commits, bytes_written, last_commit_ns, last_commit_time;
    mmh_tracker     retrack;   /* tracker to restart at the next commit
                                  (a forked child loses uffd's)         */
    size_t          file_size; /* MMH_VOLATILE: bytes backed by the file */
    bool            fs_checked, fs_faults_allocate; /* region.c: tmpfs-like */
    /* Background jobs (snapshot.c).  job_lock serializes starting and
     * reaping them and is taken before lock. */
    pthread_mutex_t job_lock;
    mmh_job        *job;       /* running, or NULL                      */
    int             job_err;   /* of the last finished one: 0 if it succeeded */
    bool            job_unreported; /* mmh_wait has not returned it yet */
    char            job_msg[512];
    uint64_t        last_fork_ns, last_job_ns, last_job_bytes, cow_pages, jobs, jobs_failed;
    size_t          used_bytes, used_peak; /* in spans given to blocks (lock) */
    uint64_t        purged_bytes; /* free memory handed back to the system */
    uint32_t        purge_pass_ms; /* when free memory was last purged      */
    void           *root;      /* the root object: a real pointer, so that
                                  memcheck's leak search finds it         */
    struct mmh_heap *next_open;
};

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
    uint32_t  slot_id;        /* slot index + 1, as in mmh_page.slot */
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

static inline mmh_tbind *mmh_bind(mmh_heap *h)
{
    mmh_tbind *b = &mmh_tls_binds[0];
    if (likely(b->uid == h->uid))
        return b;
    return mmh_bind_slow(h);
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
MMH_HIDDEN uint64_t mmh_hash64(const void *data, size_t len, uint64_t seed);
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
MMH_HIDDEN bool  mmh_beyond_fsize_limit(size_t size);
MMH_HIDDEN uint64_t mmh_random_u64(void); /* async-signal-safe */

/* format.c: the file header */
MMH_HIDDEN void     mmh_format_init(mmh_heap *h, size_t extent);
MMH_HIDDEN int      mmh_format_check(const char *path, const mmh_hdr *hdr,
                                     uint64_t file_size);
MMH_HIDDEN uint64_t mmh_format_checksum(const mmh_hdr *hdr);
/* A format 4 header (read from path, file_size bytes) rewritten in place
 * as format 5; any other left alone.  -1 if it cannot be. */
MMH_HIDDEN int      mmh_format_upgrade(const char *path, mmh_hdr *hdr, uint64_t file_size);
MMH_HIDDEN size_t   mmh_format_meta_size(size_t max_size);


/* segment.c: segments and spans; callers hold h->lock */
MMH_HIDDEN void      mmh_segment_init_first(mmh_heap *h);
MMH_HIDDEN mmh_page *mmh_span_alloc(mmh_heap *h, size_t slices, size_t align_slices);
MMH_HIDDEN void      mmh_span_free(mmh_heap *h, mmh_page *pg);
MMH_HIDDEN bool      mmh_span_grow(mmh_heap *h, mmh_page *pg, size_t slices);
MMH_HIDDEN void      mmh_span_shrink(mmh_heap *h, mmh_page *pg, size_t slices);
MMH_HIDDEN mmh_page *mmh_huge_alloc(mmh_heap *h, size_t size, size_t align, char **block);
MMH_HIDDEN void      mmh_huge_free(mmh_heap *h, mmh_page *pg);
MMH_HIDDEN bool      mmh_huge_resize(mmh_heap *h, mmh_page *pg, size_t nsegs);
MMH_HIDDEN size_t    mmh_huge_segments(const mmh_heap *h, const mmh_page *pg);
MMH_HIDDEN void      mmh_purge_maybe(mmh_heap *h);
MMH_HIDDEN uint64_t  mmh_purge_all(mmh_heap *h); /* takes h->lock; bytes purged */
MMH_HIDDEN int       mmh_punch_purged(mmh_heap *h, mmh_range_fn punch, void *arg);

/* page.c: small pages, owner side */
MMH_HIDDEN void *mmh_page_alloc_slow(mmh_heap *h, mmh_tbind *b, unsigned cls);
MMH_HIDDEN void  mmh_page_free_local(mmh_heap *h, mmh_tbind *b, mmh_page *pg);
/* false, nothing done, if p heads the remote free list already */
MMH_HIDDEN bool  mmh_page_free_remote(mmh_heap *h, mmh_page *pg, void *p);
MMH_HIDDEN void  mmh_slot_trim(mmh_heap *h, mmh_slot *slot);

/* thread.c: bindings and slots */
MMH_HIDDEN void mmh_slots_reset(mmh_heap *h);
MMH_HIDDEN int  mmh_registry_add(mmh_heap *h);
MMH_HIDDEN void mmh_registry_remove(mmh_heap *h);

/* ranges.c: lists of heap ranges */
MMH_HIDDEN int mmh_ranges_add(mmh_heap *h, size_t off, size_t len, void *ranges);
MMH_HIDDEN int mmh_ranges_merge(mmh_heap *h, mmh_ranges *dst, const mmh_ranges *add);
MMH_HIDDEN int mmh_in_use_ranges(mmh_heap *h, mmh_ranges *r);

/* persist.c: the commit protocol (see there).  A background commit's
 * share of it, prepared by the parent and run by the child. */
typedef struct mmh_persist_job mmh_persist_job;
struct mmh_wal_view;
struct mmh_wal_pos;

MMH_HIDDEN int      mmh_persist_open(mmh_heap *h, const struct mmh_wal_view *v);
MMH_HIDDEN int      mmh_persist_close(mmh_heap *h);
MMH_HIDDEN bool     mmh_persist_owner(const mmh_heap *h); /* this process commits h */
MMH_HIDDEN int      mmh_writeback(mmh_heap *h);
MMH_HIDDEN int      mmh_commit_check(mmh_heap *h, const char *fn);
MMH_HIDDEN void     mmh_commit_done(mmh_heap *h, uint64_t ns);
MMH_HIDDEN mmh_persist_job *mmh_persist_job_prepare(mmh_heap *h);
/* The child's part: 0 with *end the log after the commit, or -1 with
 * *final_err the failure if it is final. */
MMH_HIDDEN int      mmh_persist_job_run(mmh_heap *h, mmh_persist_job *pj,
                                        struct mmh_wal_pos *end, int *final_err);
/* The child's outcome, in the parent (end: NULL unless ok). */
MMH_HIDDEN void     mmh_persist_job_done(mmh_heap *h, mmh_persist_job *pj, bool ok,
                                         const struct mmh_wal_pos *end, int final_err);
MMH_HIDDEN void     mmh_persist_job_free(mmh_persist_job *pj);
MMH_HIDDEN void     mmh_persist_fork_prepare(mmh_heap *h);
MMH_HIDDEN void     mmh_persist_fork_parent(mmh_heap *h);
MMH_HIDDEN void     mmh_persist_fork_child(mmh_heap *h);
MMH_HIDDEN bool     mmh_write_error_final(int err);
MMH_HIDDEN uint64_t mmh_now_ns(int clock); /* async-signal-safe */
/* mmheap recover: checkpoint FILE.wal into the heap file heap_fd, which
 * the caller has locked for writing; v from a writable mmh_wal_inspect. */
MMH_HIDDEN int      mmh_wal_recover(const char *path, int heap_fd, struct mmh_wal_view *v);

/* snapshot.c: caller holds h->job_lock.  1: still running (nohang). */
MMH_HIDDEN int  mmh_job_reap(mmh_heap *h, bool nohang);
MMH_HIDDEN void mmh_job_forget(mmh_heap *h);

/* fileio.c: async-signal-safe */
MMH_HIDDEN int mmh_pwrite_all(int fd, const void *buf, size_t len, size_t off);
MMH_HIDDEN int mmh_pread_all(int fd, void *buf, size_t len, size_t off);
struct iovec;
MMH_HIDDEN ssize_t mmh_pwritev(int fd, const struct iovec *iov, int n, off_t off);
MMH_HIDDEN int mmh_io_failed(mmh_heap *h, const char *what, const char *file, size_t off);
MMH_HIDDEN int mmh_write_in_place(mmh_heap *h, int fd, const char *file,
                                  const mmh_range *ranges, size_t n);
MMH_HIDDEN int mmh_image_write(mmh_heap *h, int fd, const char *file, const mmh_range *ranges,
                               size_t n, const mmh_hdr *hdr);
MMH_HIDDEN char *mmh_dir_of(const char *path);
MMH_HIDDEN const char *mmh_base_name(const char *path);
MMH_HIDDEN int   mmh_sync_dir(const char *dir, const char *file);
MMH_HIDDEN int   mmh_sync_parent_dir(const char *path);

/* heap.c: does the name path (relative to dir_fd) hold the file fd? */
MMH_HIDDEN bool mmh_file_is_named(int fd, int dir_fd, const char *path);

/* fileopen.c: files opened or created beside a heap (see there). */
/* path opened with flags, refused (EINVAL) unless a regular file; never
 * blocks on a FIFO.  An fd, or -1 with a message. */
MMH_HIDDEN int mmh_open_regular(const char *path, int flags);
/* The companion file path of the heap file heap_fd (named heap): O_RDONLY
 * or O_RDWR, with O_CREAT to create it.  -1 with errno ENOENT and no
 * message when absent and not created; ELOOP, EPERM or another errno with
 * a message when refused.  *created: this call made it. */
MMH_HIDDEN int mmh_open_companion(int heap_fd, const char *heap, const char *path, int flags,
                                  bool *created);
/* A new file that appears under its name only when complete. */
typedef struct mmh_newfile {
    int   fd;
    bool  unnamed;  /* O_TMPFILE, linked through proc                  */
    char  proc[32]; /* /proc/self/fd/N                                  */
    char *tmp;      /* the random temporary name ("" once used)         */
} mmh_newfile;

MMH_HIDDEN int  mmh_newfile_create(mmh_newfile *nf, const char *path, unsigned mode);
/* Give it the name path: never replacing a file there (EEXIST), or, with
 * replace, atomically over it.  Async-signal-safe. */
MMH_HIDDEN int  mmh_newfile_link(mmh_newfile *nf, const char *path, bool replace);
MMH_HIDDEN void mmh_newfile_discard(mmh_newfile *nf);

/* wal.c: the write-ahead log FILE.wal on disk (see there).  Its header
 * has two slots, at 0 and MMH_WAL_SLOT; commits start at MMH_WAL_START and
 * at every 4 KiB boundary after one another. */
#define MMH_WAL_MAGIC   "MMHWAL1\n"
#define MMH_WAL_COMMIT  "MMHWALC\n"
#define MMH_WAL_VERSION 1u
#define MMH_WAL_SLOT    512u
#define MMH_WAL_START   4096u
#define MMH_WAL_ALIGN   4096u
#define MMH_WAL_CHUNK   ((size_t)1 << 20) /* largest data record */

typedef struct mmh_wal_hdr {
    char     magic[8];
    uint32_t version, pad_;
    uint64_t file_id;    /* the heap file's                                */
    uint64_t gen;        /* the log's, named by the heap header's wal_gen  */
    uint64_t counter;    /* header writes; this one went to slot counter % 2 */
    uint64_t salt;       /* the lap's: every commit of the lap carries it  */
    uint64_t prev_salt;  /* a lap that wrapped: the older one, where the
                            mark still is, whose commits end at prev_end;
                            the current lap follows it from MMH_WAL_START */
    uint64_t prev_end;   /* 0: no older lap left                           */
    uint64_t mark;       /* offset of the first commit not checkpointed    */
    uint64_t mark_seq;   /* the last checkpointed commit's sequence number */
    uint64_t mark_chain; /* the chain value the commit at mark continues   */
    uint64_t hash;       /* of the fields above                            */
} mmh_wal_hdr;

_Static_assert(sizeof(mmh_wal_hdr) <= MMH_WAL_SLOT, "a header slot is one sector");

/* A commit: this head, its record table, padding to MMH_WAL_ALIGN, then the
 * data of its DATA records back to back. */
typedef struct mmh_wal_head {
    char     magic[8];
    uint64_t salt, seq;
    uint64_t prev_chain; /* the previous commit's hash (the lap's salt for the first) */
    uint64_t extent;     /* the heap's extent at this commit               */
    uint64_t nrecords, head_bytes, data_bytes;
    uint64_t hash;       /* of head and table with this field zero: the chain value */
} mmh_wal_head;

enum { MMH_WAL_DATA = 1, MMH_WAL_PUNCH = 2 };

typedef struct mmh_wal_rec {
    uint64_t off, len;
    uint32_t kind, pad_;
    uint64_t hash;       /* DATA: of the bytes, seeded with off and seq    */
} mmh_wal_rec;

/* A place in a lap: where the next commit goes and what it continues. */
typedef struct mmh_wal_pos {
    uint64_t off, seq, chain;
} mmh_wal_pos;

/* What inspecting FILE.wal found. */
typedef enum {
    MMH_WAL_ABSENT = 0,  /* no log, and the heap names none: nothing to do  */
    MMH_WAL_LEFTOVER,    /* a log the heap does not name (a crash before the
                            heap named it, or a removed heap's): reset      */
    MMH_WAL_VALID,       /* the heap's log; commits after the mark replay   */
    MMH_WAL_STALE,       /* the heap's log, but older than the heap's last
                            commit (a copy put back): never replayed, reset */
} mmh_wal_state;

typedef struct mmh_wal_info {
    mmh_wal_state state;
    uint64_t size;        /* of the file                                   */
    uint64_t commits;     /* VALID: complete commits after the mark        */
    uint64_t first_seq, last_seq; /* of those (last_seq: mark_seq if none)  */
    uint64_t data_bytes;  /* in those                                      */
    uint64_t extent;      /* the heap's extent at the last of them (0: none) */
    uint64_t heap_seq;    /* the heap header's commit                      */
    bool     torn;        /* VALID: the next commit after those began but
                             is incomplete (a crash while writing it)      */
} mmh_wal_info;

/* Does the log hold commits that are not yet in the heap file? */
static inline bool mmh_wal_has_commits(const mmh_wal_info *wi)
{
    return wi->state == MMH_WAL_VALID && wi->commits;
}

typedef struct mmh_wal_view {
    mmh_wal_info info;
    int          fd;      /* -1: no log                                    */
    char        *path;    /* FILE.wal                                      */
    mmh_wal_hdr  hdr;     /* VALID: the header in force                    */
    mmh_wal_pos  end;     /* VALID: after the last complete commit         */
} mmh_wal_view;

/* Reading commits one after another. */
typedef struct mmh_wal_cursor {
    int          fd;
    uint64_t     salt;    /* of the lap pos is in                          */
    mmh_wal_pos  pos;     /* the next commit starts here                   */
    uint64_t     limit;   /* commits must end by here (in the last lap)    */
    uint64_t     wrap_end, wrap_salt; /* nonzero: at wrap_end, go on at
                                         MMH_WAL_START in lap wrap_salt   */
    char        *table;   /* the current commit's head and record table    */
    size_t       table_cap;
    char        *chunk;   /* MMH_WAL_CHUNK bytes, for verifying data       */
    uint64_t     at;      /* the current commit's offset                   */
} mmh_wal_cursor;

MMH_HIDDEN char    *mmh_wal_path(const char *heap_path);
MMH_HIDDEN void     mmh_wal_hdr_seal(mmh_wal_hdr *w);
MMH_HIDDEN int      mmh_wal_hdr_write(int fd, mmh_wal_hdr *w); /* async-signal-safe */
MMH_HIDDEN uint64_t mmh_wal_head_hash(const mmh_wal_head *head);
MMH_HIDDEN size_t   mmh_wal_head_bytes(size_t nrecords);
/* 1: the next complete commit is in c->table (head, then records); 0: none;
 * -1: a read failed.  verify: read its data and check every record. */
MMH_HIDDEN int      mmh_wal_next(mmh_wal_cursor *c, bool verify);
MMH_HIDDEN void     mmh_wal_cursor_free(mmh_wal_cursor *c);
/* A cursor at the mark of header w: the lap it is in, and the wrap. */
MMH_HIDDEN void     mmh_wal_cursor_at_mark(mmh_wal_cursor *c, int fd, const mmh_wal_hdr *w,
                                           uint64_t limit);
/* Open FILE.wal beside the heap file heap_fd (writable: read-write) and
 * find what it holds; errors for a log the heap names that is missing,
 * foreign or unreadable. */
MMH_HIDDEN int      mmh_wal_inspect(const char *path, int heap_fd, bool writable,
                                    mmh_wal_view *v);
/* Lay the commits of a VALID view over image, a private mapping of the
 * heap's first image_size bytes. */
MMH_HIDDEN int      mmh_wal_overlay(const char *path, const mmh_wal_view *v, char *image,
                                    size_t image_size);
MMH_HIDDEN void     mmh_wal_view_close(mmh_wal_view *v);

/* track.c */
MMH_HIDDEN int  mmh_track_start(mmh_heap *h, mmh_tracker want);
MMH_HIDDEN void mmh_track_stop(mmh_heap *h);
MMH_HIDDEN int  mmh_track_extend(mmh_heap *h, size_t from, size_t to);
MMH_HIDDEN void mmh_track_forked(mmh_heap *h);
MMH_HIDDEN int  mmh_track_resume(mmh_heap *h);

/* default.c: the default heap and MMHEAP_OPTIONS */
typedef struct mmh_options {
    bool stats, verbose, leaks;
} mmh_options;

extern mmh_heap *_Atomic mmh_default_ptr MMH_HIDDEN;
extern mmh_options mmh_opts MMH_HIDDEN;
MMH_HIDDEN void mmh_default_print_stats(void);
MMH_HIDDEN void mmh_options_read(void); /* once */

/* stats.c */
typedef struct mmh_class_stats {
    uint64_t pages, blocks, capacity;
} mmh_class_stats;

MMH_HIDDEN void mmh_stats_init(mmh_heap *h);
MMH_HIDDEN void mmh_stats_classes(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES]);

/* check.c: a heap file as the next open will see it (its log applied), mapped privately and read-only in effect, for mmheap check and
 * info. */
typedef struct mmh_image {
    const char       *path;
    int               fd;
    char             *base;      /* segment-aligned                        */
    size_t            size;      /* mapped: the file, or the log's extent */
    uint64_t          file_size;
    const mmh_hdr    *hdr;       /* checked by mmh_format_check            */
    mmh_wal_info      wal;
} mmh_image;

typedef struct mmh_check_class {
    uint64_t pages, blocks, capacity; /* capacity: blocks the pages hold */
} mmh_check_class;

typedef struct mmh_check_result {
    uint64_t problems;
    uint64_t segments, sliced_segments, free_runs, free_spans, slots_used;
    uint64_t small_pages, large_blocks, huge_blocks, live_blocks;
    uint64_t live_bytes;   /* in live blocks, at their usable sizes        */
    uint64_t small_bytes;  /* in small pages                               */
    uint64_t large_bytes;  /* usable bytes of large and huge blocks        */
    uint64_t free_bytes, largest_free, meta_bytes;
    mmh_check_class classes[MMH_CLASSES];
} mmh_check_result;

/* A problem found at heap offset off; progress: segments done of total. */
typedef void (*mmh_check_report_fn)(void *arg, uint64_t off, const char *msg);
typedef void (*mmh_check_progress_fn)(void *arg, size_t done, size_t total);

MMH_HIDDEN int  mmh_image_open(mmh_image *img, const char *path);
MMH_HIDDEN void mmh_image_close(mmh_image *img);
/* 0, or -1 (EBADMSG, reason) if the structure of a heap file mapped at
 * h->base is corrupt: check's walk without the block lists in pages. */
MMH_HIDDEN int  mmh_verify(const mmh_heap *h);
/* 0: sound; 1: r->problems problems, each reported. */
MMH_HIDDEN int  mmh_check_image(const mmh_image *img, mmh_check_result *r,
                                mmh_check_report_fn report, mmh_check_progress_fn progress,
                                void *arg);

/* alloc.c */
MMH_HIDDEN bool mmh_block_valid(mmh_heap *h, const void *p, mmh_page **pgp);

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
    mmh_link_set(h, p, pg->free);
    pg->free = off;
    if (unlikely((--pg->used == 0 && b->slot->pages[pg->cls] != mmh_off(h, pg)) ||
                 (pg->flags & MMH_PF_FULL)))
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
    if (unlikely(pg->slot != b->slot_id)) {
        if (pg->kind != MMH_PAGE_SMALL || !pg->slot)
            return false;
        return mmh_page_free_remote(h, pg, p); /* the page stays while p is live */
    }
    if (mmh_memcheck(h))
        return false;
    return mmh_page_push_own(h, b, pg, p);
}

#endif /* MMH_INTERNAL_H */
