/* Walking a heap: its spans in address order, and the block lists of a
 * small page.  Every walk of the library goes through these two: the
 * in-use ranges of a commit (ranges.c), statistics (stats.c), the memory
 * checkers' census (instrument.c) and the checker (check.c).
 *
 * Neither trusts what it steps by, so the checker walks damaged files with
 * them: a length that does not fit, or a list entry that is not a block of
 * its page, ends that part of the walk with a record saying so, and never
 * leads a read outside the mapping.
 */
#ifndef MMH_WALK_H
#define MMH_WALK_H

#include "internal.h"

/* ---- spans ---------------------------------------------------------------- */

typedef enum {
    MMH_SPAN_SLICED,   /* a span of a sliced segment: pg->kind says what;
                          each segment's first is its metadata (META)    */
    MMH_SPAN_HUGE,     /* a huge block's run of segments; pg: descriptor 1
                          of the run's head, which describes the block   */
    MMH_SPAN_FREE_RUN, /* a free run of whole segments; pg: NULL         */
    MMH_SPAN_BROKEN,   /* the walk cannot go on here: pg, the descriptor
                          whose length does not fit (the walk goes on at
                          the next segment), or NULL: the segment map's
                          entry does not start a run that fits           */
} mmh_span_kind;

typedef struct mmh_span {
    mmh_span_kind   kind;
    size_t          seg;   /* its (first) segment                         */
    size_t          slice; /* SLICED, BROKEN: its first slice             */
    size_t          count; /* SLICED: slices; HUGE, FREE_RUN: segments;
                              BROKEN: the length read                     */
    const mmh_page *pg;
} mmh_span;

typedef struct mmh_span_iter {
    const char     *base;
    const uint32_t *segmap;
    size_t          nsegs;
    size_t          seg, slice; /* where the next span starts             */
} mmh_span_iter;

static inline void mmh_span_iter_init(mmh_span_iter *it, const char *base, const uint32_t *segmap,
                                      size_t nsegs)
{
    *it = (mmh_span_iter){ .base = base, .segmap = segmap, .nsegs = nsegs };
}

/* The rest of the current segment is not walked. */
static inline void mmh_span_skip_segment(mmh_span_iter *it)
{
    it->seg++;
    it->slice = 0;
}

/* The next span into *sp; false at the end of the used extent. */
static inline bool mmh_span_next(mmh_span_iter *it, mmh_span *sp)
{
    if (it->seg >= it->nsegs)
        return false;
    uint32_t e = it->segmap[it->seg];
    const mmh_segment *s =
        (const mmh_segment *)(it->base + (it->seg << MMH_SEG_SHIFT) + MMH_SEGHDR_OFFSET);
    size_t n = MMH_SEGMAP_LEN(e);
    *sp = (mmh_span){ .kind = MMH_SPAN_BROKEN, .seg = it->seg, .slice = it->slice, .count = n };
    switch (MMH_SEGMAP_KIND(e)) {
    case MMH_SEGMAP_SLICED: {
        const mmh_page *pg = &s->pages[it->slice];
        sp->pg = pg;
        sp->count = n = pg->slice_count;
        if (n == 0 || n > MMH_SEG_SLICES - it->slice || pg->slice_offset != 0) {
            mmh_span_skip_segment(it);
            return true;
        }
        sp->kind = MMH_SPAN_SLICED;
        it->slice += n;
        if (it->slice == MMH_SEG_SLICES)
            mmh_span_skip_segment(it);
        return true;
    }
    case MMH_SEGMAP_HUGE:
    case MMH_SEGMAP_FREE:
        if (n == 0 || n > it->nsegs - it->seg)
            break;
        sp->kind = MMH_SEGMAP_KIND(e) == MMH_SEGMAP_HUGE ? MMH_SPAN_HUGE : MMH_SPAN_FREE_RUN;
        sp->pg = sp->kind == MMH_SPAN_HUGE ? &s->pages[1] : NULL;
        it->seg += n;
        return true;
    default:
        break;
    }
    it->seg = it->nsegs; /* the map cannot be followed past a bad entry */
    return true;
}

/* Heap offset of a span's start, and its length in bytes. */
static inline uint64_t mmh_span_start(const mmh_span *sp)
{
    return ((uint64_t)sp->seg << MMH_SEG_SHIFT) + ((uint64_t)sp->slice << MMH_SLICE_SHIFT);
}

static inline uint64_t mmh_span_bytes(const mmh_span *sp)
{
    return sp->kind == MMH_SPAN_SLICED ? (uint64_t)sp->count << MMH_SLICE_SHIFT
                                       : (uint64_t)sp->count << MMH_SEG_SHIFT;
}

/* ---- a small page's block lists ------------------------------------------- */

typedef enum {
    MMH_LIST_END = 0,   /* the list ended                                 */
    MMH_LIST_BLOCK,     /* *off: the next block on it                     */
    MMH_LIST_OUTSIDE,   /* *off: an entry outside the page's carved blocks */
    MMH_LIST_MISALIGNED,/* *off: an entry between two blocks              */
    MMH_LIST_REPEAT,    /* *off: a block met before (a cycle, or a block on
                           both lists); without seen, more entries than
                           the page has blocks                            */
} mmh_list_step;

typedef struct mmh_list_iter {
    const mmh_heap *h;      /* links read through mmh_link_get; NULL: a
                               mapped image, read directly               */
    const char     *base;
    uint64_t        start;  /* heap offset of the page's first block      */
    uint64_t        bytes;  /* of its carved blocks, within its segment   */
    uint32_t        block_size, steps, capacity;
    uint8_t        *seen;   /* a bit per block, shared by a page's lists, or NULL */
    uint64_t        next;
} mmh_list_iter;

/* Bytes for seen of a page that carved capacity blocks. */
#define MMH_LIST_SEEN_BYTES(capacity) (((size_t)(capacity) + 7) / 8)

/* The list of small page pg (of a heap mapped at base) that starts at
 * first.  The page's own counts may be damaged: its blocks are taken to
 * end at its segment's end at the latest. */
static inline void mmh_list_iter_init(mmh_list_iter *l, const mmh_heap *h, const char *base,
                                      const mmh_page *pg, uint64_t first, uint8_t *seen)
{
    uint64_t start = (uint64_t)(mmh_page_start(pg) - base);
    uint64_t bytes = (uint64_t)pg->capacity * pg->block_size;
    uint64_t room = MMH_SEG_SIZE - (start & MMH_SEG_MASK);
    *l = (mmh_list_iter){ .h = h, .base = base, .start = start,
                          .bytes = bytes < room ? bytes : room, .block_size = pg->block_size,
                          .capacity = pg->capacity, .seen = seen, .next = first };
}

static inline mmh_list_step mmh_list_next(mmh_list_iter *l, uint64_t *off)
{
    uint64_t at = *off = l->next, in = at - l->start;
    if (!at)
        return MMH_LIST_END;
    if (at < l->start || in >= l->bytes || !l->block_size)
        return MMH_LIST_OUTSIDE;
    if (in % l->block_size)
        return MMH_LIST_MISALIGNED;
    uint64_t b = in / l->block_size;
    if (l->seen ? (l->seen[b / 8] >> (b % 8)) & 1 : l->steps >= l->capacity)
        return MMH_LIST_REPEAT;
    if (l->seen)
        l->seen[b / 8] |= (uint8_t)(1u << (b % 8));
    l->steps++;
    const void *p = l->base + at;
    l->next = l->h ? mmh_link_get(l->h, p) : *(const uint64_t *)p;
    return MMH_LIST_BLOCK;
}

#endif /* MMH_WALK_H */
