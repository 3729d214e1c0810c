/* The on-disk format: a heap file and its write-ahead log, byte for byte.
 *
 * Everything a format change touches is here, and nothing else: the tools,
 * the fuzzer and the damaged-file tests need only this file.  Everything
 * stored inside a heap refers to other parts of the heap by offsets from
 * the base, never by pointers, so a heap can be mapped again at another
 * address (MMH_RELOCATE) and its allocator state stays valid.  A change to
 * any structure here bumps MMH_FORMAT_VERSION (or MMH_WAL_VERSION).
 */
#ifndef MMH_LAYOUT_H
#define MMH_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MMH_HIDDEN __attribute__((visibility("hidden")))


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

#define MMH_MAX_MAX_SIZE  ((size_t)2 << 40) /* the largest reservation */
#define MMH_SEGMAP_MAX    ((uint32_t)(MMH_MAX_MAX_SIZE >> MMH_SEG_SHIFT))
/* Thread slots come in tables of MMH_SLOTS: the first in the header
 * segment, the others (added as threads need them) spans of kind
 * MMH_PAGE_SLOTS, named in the header.  A slot's id (index + 1, as pages
 * record their owner) picks its table and place by division. */
#define MMH_SLOTS            1024u
#define MMH_SLOT_TABLES_MAX  256u   /* the header has room for 255 more */
#define MMH_SLOTS_MAX        (MMH_SLOTS * MMH_SLOT_TABLES_MAX)
#define MMH_SLOT_TABLE_SLICES 8u    /* a table's span */

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
    MMH_PAGE_SLOTS,      /* a slot table after the first; used:
                            its number (1..), free: its offset    */
    MMH_PAGE_CACHED,     /* free span kept by the slot slot_id for
                            its next large block or page, listed
                            in its spans (spancache.c)            */
};

enum {
    MMH_PF_PURGED  = 1u << 0, /* free span: all its memory was handed back  */
    MMH_PF_HOLES   = 1u << 1, /* free span: some of it was handed back      */
    MMH_PF_PARKED  = 1u << 2, /* small page full, parked: off its class's
                                 ring until a block comes back            */
    MMH_PF_PUNCHED = 1u << 3, /* free span: a hole in the file as committed */
    MMH_PF_ZEROED  = 1u << 4, /* large block just made of memory known to be
                                 zero (purged, or never touched, in an
                                 anonymous heap): calloc need not clear it */
};

/* Low bits of mmh_page.xfree (blocks are 16-aligned), shared between the
 * owner and remote freeing threads. */
enum {
    MMH_XF_NOTIFY   = 1u << 0, /* the owner parked the page: the first remote
                                  free queues it on slot->xpages (may be
                                  stale: cleared lazily after an unpark)    */
    MMH_XF_NOTIFIED = 1u << 1, /* a remote free queued it there             */
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
    uint32_t slot_id;         /* owning slot index + 1; 0: none            */
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
#define MMH_SLOT_SPANS 6u
typedef struct __attribute__((aligned(64))) mmh_slot {
    _Atomic uint64_t owner;      /* nonzero while a thread holds the slot   */
    _Atomic uint64_t xpages;     /* full pages that got remote frees        */
    uint64_t spans[MMH_SLOT_SPANS]; /* its cached spans (MMH_PAGE_CACHED):
                                    descriptor offsets, oldest first, then
                                    zeros (formats 4 to 6: always zero)   */
    uint64_t pages[MMH_CLASSES]; /* per class: page allocated from, in a
                                    ring (next/prev) with the others that
                                    are not parked                        */
} mmh_slot;

_Static_assert(sizeof(mmh_slot) == 512, "a slot is eight cache lines");

#define MMH_MAGIC          "MMHEAP\r\n"
#define MMH_FORMAT_VERSION 7u /* 2: file_id; 3: remote-free line of mmh_page;
                                 4: a slot's class lists are rings;
                                 5: write-ahead log (wal_gen);
                                 6: segmap_len (growth), names;
                                 7: slot_tables, span caches */
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
    uint64_t slots_off;       /* the first slot table: MMH_SLOTS mmh_slot  */
    uint32_t nslots;          /* slots in the tables: MMH_SLOTS each       */
    uint32_t slots_hwm;       /* slots ever used: the ones to reset        */
    uint32_t first_slice;     /* of segment 0                              */
    uint32_t segmap_len;      /* segment map entries: the largest max_size,
                                 in segments, the heap can grow to (format
                                 5's heaps: the max_size they were made with) */
    uint64_t span_bitmap;     /* bins with free spans                      */
    uint64_t span_bins[MMH_SPAN_BINS + 1]; /* by slice count; heads of lists */
    uint64_t free_segs;       /* list of free segment runs                 */
    uint64_t once_large_[4];  /* format 6's large block counters; since 7
                                 the large blocks are counted from their
                                 spans (mmh_stats, the checker)            */
    uint64_t unpurged;        /* bytes of free memory not yet handed back  */
    mmh_page empty_page;      /* page with no free block: slots' default   */
    uint64_t checksum;
    /* Format 6 added what follows; the checksum covers the whole page, so
     * format 5's fields kept their places (and these were zero). */
    uint64_t names;           /* the names table (an mmh_names); 0: none   */
    /* Format 7: the slot tables after the first (table t at index t - 1),
     * as many as nslots says; 0 past them (format 6 had none). */
    uint64_t slot_tables[MMH_SLOT_TABLES_MAX - 1];
} mmh_hdr;

_Static_assert(sizeof(mmh_hdr) <= MMH_HDR_SIZE, "header fits its page");
_Static_assert(MMH_SLOTS * sizeof(mmh_slot) == (size_t)MMH_SLOT_TABLE_SLICES << MMH_SLICE_SHIFT,
               "a slot table fills its span");

/* The heap offset of slot table t (0: the one in segment 0). */
static inline uint64_t mmh_slot_table_off(const mmh_hdr *hdr, uint32_t t)
{
    return t ? hdr->slot_tables[t - 1] : hdr->slots_off;
}

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

/* ---- names (names.c) -------------------------------------------------
 * A hash table with open addressing and linear probing, from the name's
 * hash's low bits.  The table and each name's record are ordinary blocks
 * of the heap.  A slot is 0 (empty), MMH_NAME_GONE (a removed name: probes
 * go on past it) or a record's offset, below 2^MMH_NAME_OFF_BITS, with the
 * name's hash's high bits above it, so that a probe reads a record only
 * when those bits match. */
#define MMH_NAMES_MAGIC    0x53454d414e484d4dull /* "MMHNAMES" */
#define MMH_NAME_GONE      1u
#define MMH_NAME_OFF_BITS  41
#define MMH_NAME_OFF_MASK  (((uint64_t)1 << MMH_NAME_OFF_BITS) - 1)
#define MMH_NAMES_MIN_CAP  16u
_Static_assert(MMH_MAX_MAX_SIZE <= (size_t)1 << MMH_NAME_OFF_BITS, "offsets fit a name slot");

typedef struct mmh_names {
    uint64_t magic;
    uint64_t seed;       /* of the names' hashes, random per table         */
    uint64_t cap;        /* slots, a power of two                          */
    uint64_t count;      /* names                                          */
    uint64_t used;       /* slots not empty: names and MMH_NAME_GONE marks */
    uint64_t reserved_[3];
    uint64_t slot[];
} mmh_names;

typedef struct mmh_name_rec {
    uint64_t value;      /* offset of the named block                      */
    uint8_t  len;        /* of the name, without its NUL                   */
    char     name[];     /* NUL-terminated                                 */
} mmh_name_rec;

/* The slot of a record at rec_off for a name of this hash. */
static inline uint64_t mmh_name_slot(uint64_t rec_off, uint64_t hash)
{
    return rec_off | (hash & ~MMH_NAME_OFF_MASK);
}

/* ---- the write-ahead log FILE.wal ----------------------------------------
 * Its header has two slots, at 0 and MMH_WAL_SLOT; commits start at
 * MMH_WAL_START and at every MMH_WAL_ALIGN boundary after one another
 * (lib/wal.c has the protocol). */
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

/* ---- sealing and validating ------------------------------------------------
 * The checksums a reader verifies, and the rules a header must pass: part
 * of the format, so the tools and tests that craft files use these. */

/* hash.c: the one hash of the format (checksums, record hashes, chain). */
MMH_HIDDEN uint64_t mmh_hash64(const void *data, size_t len, uint64_t seed);
/* format.c: the header's checksum field's value. */
MMH_HIDDEN uint64_t mmh_format_checksum(const mmh_hdr *hdr);
/* format.c: 0 if hdr (of the file path, file_size bytes long) is a sound
 * format 7 header; -1 with errno and a message naming path otherwise. */
MMH_HIDDEN int      mmh_format_check(const char *path, const mmh_hdr *hdr, uint64_t file_size);
/* wal.c: set w->hash; the head's hash (the chain value); a head's bytes
 * with its record table, padded to MMH_WAL_ALIGN. */
MMH_HIDDEN void     mmh_wal_hdr_seal(mmh_wal_hdr *w);
MMH_HIDDEN uint64_t mmh_wal_head_hash(const mmh_wal_head *head);
MMH_HIDDEN size_t   mmh_wal_head_bytes(size_t nrecords);

#endif /* MMH_LAYOUT_H */
