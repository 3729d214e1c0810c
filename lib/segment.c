/* Segments and spans: the slow-path allocator under everything else.
 *
 * Inside a sliced segment, free spans of slices are kept in bins by length
 * (one bin per length, a bitmap of non-empty bins) and coalesced with their
 * neighbours on free: a span's head descriptor knows its length, its last
 * descriptor points back to the head.  Whole segments are kept in runs,
 * coalesced through the segment map.  Free memory is handed back in batches
 * (mmh_purge_maybe); in an anonymous heap only once it has stayed free for
 * PURGE_DELAY_MS, so that memory freed and allocated again soon is not
 * faulted in again.
 *
 * Every function here but mmh_purge_all and mmh_purge_due runs with
 * h->lock held; debug builds assert it.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define PURGE_MIN      ((uint64_t)8 << 20)
#define PURGE_DELAY_MS 1000u

static mmh_segment *segment_of_page(const mmh_page *pg)
{
    uintptr_t seg = (uintptr_t)pg & ~(uintptr_t)MMH_SEG_MASK;
    return (mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
}

static size_t page_index(const mmh_page *pg)
{
    return (size_t)(pg - segment_of_page(pg)->pages);
}

static size_t seg_count(const mmh_heap *h)
{
    return h->mapped >> MMH_SEG_SHIFT;
}

/* Flags of memory the heap just grew by: in an anonymous heap it was never
 * touched, so it is zero and has nothing to hand back. */
static unsigned fresh_flags(const mmh_heap *h)
{
    return h->fd < 0 ? MMH_PF_PURGED : 0;
}

/* A large block made of memory with these free-span flags. */
static unsigned block_flags(const mmh_heap *h, unsigned flags)
{
    return h->fd < 0 && (flags & MMH_PF_PURGED) ? MMH_PF_ZEROED : 0;
}

/* Bytes handed to pages and large blocks: now, and at most so far. */
static void used_add(mmh_heap *h, size_t bytes)
{
    h->space.used_bytes += bytes;
    if (h->space.used_bytes > h->space.used_peak)
        h->space.used_peak = h->space.used_bytes;
}

/* ---- span bins ----------------------------------------------------------
 * One doubly linked list of free spans per length (next/prev offsets, 0 at
 * the ends), and a bitmap of the lengths that have any. */

static void bin_push(mmh_heap *h, mmh_page *pg)
{
    unsigned bin = pg->slice_count;
    mmh_assert_locked(h);
    mmh_assert(pg->kind == MMH_PAGE_FREE && bin >= 1 && bin <= MMH_SPAN_BINS);
    uint64_t *head = &h->hdr->span_bins[bin], off = mmh_off(h, pg);
    pg->prev = 0;
    pg->next = *head;
    if (pg->next)
        mmh_page_at(h, pg->next)->prev = off;
    *head = off;
    h->hdr->span_bitmap |= 1ull << bin;
}

static void bin_remove(mmh_heap *h, mmh_page *pg)
{
    unsigned bin = pg->slice_count;
    mmh_assert_locked(h);
    mmh_assert(pg->kind == MMH_PAGE_FREE && (h->hdr->span_bitmap >> bin) & 1);
    mmh_assert(pg->prev ? mmh_page_at(h, pg->prev)->next == mmh_off(h, pg)
                        : h->hdr->span_bins[bin] == mmh_off(h, pg));
    if (pg->prev)
        mmh_page_at(h, pg->prev)->next = pg->next;
    else
        h->hdr->span_bins[bin] = pg->next;
    if (pg->next)
        mmh_page_at(h, pg->next)->prev = pg->prev;
    pg->next = pg->prev = 0;
    if (!h->hdr->span_bins[bin])
        h->hdr->span_bitmap &= ~(1ull << bin);
}

/* Describe slices [idx, idx + n) of s as one span of the given kind. */
static mmh_page *span_mark(mmh_segment *s, size_t idx, size_t n, unsigned kind, unsigned flags)
{
    mmh_page *head = &s->pages[idx];
    /* The metadata from slice 0; a huge block from descriptor 1 on, its
     * last one the +1 of the geometry note; the others after the metadata. */
    mmh_assert(n >= 1 && (kind == MMH_PAGE_META   ? idx == 0 && n <= MMH_SEG_SLICES
                          : kind == MMH_PAGE_HUGE ? idx == 1 && n == MMH_SEG_SLICES
                          : idx >= s->first_slice && idx + n <= MMH_SEG_SLICES));
    memset(head, 0, sizeof *head);
    head->slice_count = (uint16_t)n;
    head->kind = (uint8_t)kind;
    head->flags = (uint8_t)flags;
    if (kind == MMH_PAGE_FREE) {
        if (n > 1)
            s->pages[idx + n - 1].slice_offset = (uint16_t)(n - 1);
    } else {
        for (size_t i = 1; i < n; i++)
            s->pages[idx + i].slice_offset = (uint16_t)i;
    }
    return head;
}

static void span_insert_free(mmh_heap *h, mmh_segment *s, size_t idx, size_t n, unsigned flags,
                             uint32_t freed)
{
    mmh_page *pg = span_mark(s, idx, n, MMH_PAGE_FREE, flags);
    pg->freed_ms = freed;
    bin_push(h, pg);
}

/* ---- segment runs ---------------------------------------------------- */

static void segrun_unlink(mmh_heap *h, mmh_segment *s)
{
    mmh_assert_locked(h);
    mmh_assert(MMH_SEGMAP_KIND(h->segmap[mmh_seg_index(h, s)]) == MMH_SEGMAP_FREE);
    mmh_segment *prev = s->prev ? (mmh_segment *)mmh_ptr(h, s->prev) : NULL;
    mmh_segment *next = s->next ? (mmh_segment *)mmh_ptr(h, s->next) : NULL;
    if (prev)
        prev->next = s->next;
    else
        h->hdr->free_segs = s->next;
    if (next)
        next->prev = s->prev;
}

static void segrun_insert(mmh_heap *h, size_t idx, size_t n, unsigned flags, uint32_t freed)
{
    mmh_assert_locked(h);
    mmh_assert(idx > 0 && n >= 1 && idx + n <= seg_count(h));
    mmh_segment *s = mmh_seg_at(h, idx);
    mmh_segment *head = h->hdr->free_segs ? (mmh_segment *)mmh_ptr(h, h->hdr->free_segs) : NULL;
    s->magic = MMH_SEG_MAGIC;
    s->nsegs = (uint32_t)n;
    s->flags = flags;
    s->freed_ms = freed;
    s->prev = 0;
    s->next = h->hdr->free_segs;
    if (head)
        head->prev = mmh_off(h, s);
    h->hdr->free_segs = mmh_off(h, s);
    h->segmap[idx] = MMH_SEGMAP(MMH_SEGMAP_FREE, n);
    for (size_t i = 1; i < n; i++)
        h->segmap[idx + i] = MMH_SEGMAP(MMH_SEGMAP_FREE_IN, i);
}

/* Give segments [idx, idx + n) back, merged with free neighbours. */
static void segrun_free(mmh_heap *h, size_t idx, size_t n, unsigned flags)
{
    size_t end = idx + n;
    if (end < seg_count(h) && MMH_SEGMAP_KIND(h->segmap[end]) == MMH_SEGMAP_FREE) {
        mmh_segment *next = mmh_seg_at(h, end);
        segrun_unlink(h, next);
        flags = mmh_merge_free_flags(flags, next->flags);
        end += next->nsegs;
    }
    if (idx > 0) {
        uint32_t e = h->segmap[idx - 1];
        size_t head = SIZE_MAX;
        if (MMH_SEGMAP_KIND(e) == MMH_SEGMAP_FREE)
            head = idx - 1;
        else if (MMH_SEGMAP_KIND(e) == MMH_SEGMAP_FREE_IN)
            head = idx - 1 - MMH_SEGMAP_LEN(e);
        if (head != SIZE_MAX) {
            mmh_segment *prev = mmh_seg_at(h, head);
            segrun_unlink(h, prev);
            flags = mmh_merge_free_flags(flags, prev->flags);
            idx = head;
        }
    }
    segrun_insert(h, idx, end - idx, flags, mmh_clock_ms());
}

/* Grow the heap to `segs` segments, the new ones a free run (joined to one
 * that ends the heap). */
static void purge(mmh_heap *h, uint32_t min_age);

static int grow_to(mmh_heap *h, size_t segs)
{
    size_t old = seg_count(h);
    if (segs > (h->max_size >> MMH_SEG_SHIFT))
        return mmh_fail(ENOMEM, "%s: heap full: max_size %zu reached", h->path, h->max_size);
    /* Free memory that could not serve this request is handed back before
     * the heap takes new memory: the process's footprint then follows what
     * it uses, not the heap's fragments (an anonymous heap would otherwise
     * keep them until they had been free for PURGE_DELAY_MS). */
    if (h->hdr->unpurged >= PURGE_MIN)
        purge(h, 0);
    if (mmh_region_grow(h, segs << MMH_SEG_SHIFT) != 0)
        return -1;
    segrun_free(h, old, segs - old, fresh_flags(h));
    return 0;
}

/* Take segments [start, start + n) out of the free run s, the rest of it
 * staying free; their flags and age to *flags and *freed. */
static void segrun_take(mmh_heap *h, mmh_segment *s, size_t start, size_t n, unsigned *flags,
                        uint32_t *freed)
{
    size_t idx = mmh_seg_index(h, s), len = s->nsegs;
    mmh_assert(start >= idx && start + n <= idx + len);
    *flags = s->flags;
    *freed = s->freed_ms;
    segrun_unlink(h, s);
    if (start > idx)
        segrun_insert(h, idx, start - idx, *flags, *freed);
    if (start + n < idx + len)
        segrun_insert(h, start + n, idx + len - start - n, *flags, *freed);
}

/* Find n free segments such that segment (start + lead) is aligned to
 * `modulus` segments in absolute address terms: the first free run that
 * holds them, or with `room`, preferably one that leaves as many free
 * segments again after them, or ends the heap, so that the run can grow in
 * place (mmh_huge_resize); else grow the heap.  Returns the first segment
 * index or SIZE_MAX (errno set). */
static size_t segrun_alloc(mmh_heap *h, size_t n, size_t modulus, size_t lead, bool room,
                           unsigned *flags, uint32_t *freed)
{
    size_t base_seg = (uintptr_t)h->base >> MMH_SEG_SHIFT;
    for (;;) {
        size_t tail_start = seg_count(h), fit_start = 0;
        mmh_segment *fit = NULL;
        for (uint64_t off = h->hdr->free_segs; off;) {
            mmh_segment *s = (mmh_segment *)mmh_ptr(h, off);
            size_t idx = mmh_seg_index(h, s), len = s->nsegs;
            size_t mis = (base_seg + idx + lead) % modulus;
            size_t start = idx + (mis ? modulus - mis : 0);
            bool tail = idx + len == seg_count(h);
            off = s->next;
            if (tail)
                tail_start = idx;
            if (start + n > idx + len)
                continue;
            if (!room || tail || start + 2 * n <= idx + len) {
                fit = s;
                fit_start = start;
                break;
            }
            if (!fit) {
                fit = s;
                fit_start = start;
            }
        }
        if (fit) {
            segrun_take(h, fit, fit_start, n, flags, freed);
            return fit_start;
        }
        size_t mis = (base_seg + tail_start + lead) % modulus;
        if (grow_to(h, tail_start + (mis ? modulus - mis : 0) + n) != 0)
            return SIZE_MAX;
    }
}

static mmh_segment *segment_init(mmh_heap *h, size_t idx, unsigned kind, size_t len)
{
    mmh_segment *s = mmh_seg_at(h, idx);
    memset(s, 0, sizeof *s);
    s->magic = MMH_SEG_MAGIC;
    s->first_slice = 1;
    h->segmap[idx] = MMH_SEGMAP(kind, kind == MMH_SEGMAP_HUGE ? len : 0);
    span_mark(s, 0, 1, MMH_PAGE_META, 0);
    return s;
}

void mmh_segment_init_first(mmh_heap *h)
{
    mmh_assert_locked(h);
    mmh_segment *s = segment_init(h, 0, MMH_SEGMAP_SLICED, 0);
    size_t first = h->hdr->first_slice;
    s->first_slice = (uint32_t)first;
    span_mark(s, 0, first, MMH_PAGE_META, 0);
    span_insert_free(h, s, first, MMH_SEG_SLICES - first, fresh_flags(h), mmh_clock_ms());
    if (seg_count(h) > 1)
        segrun_free(h, 1, seg_count(h) - 1, fresh_flags(h));
}

/* ---- spans ------------------------------------------------------------ */

/* A span of `slices` slices starting at a multiple of align_slices (both
 * fit in one segment), its kind left for the caller to set: from the
 * smallest free span that fits it, or with `room`, from the largest, so
 * that free slices follow it for mmh_span_grow. */
mmh_page *mmh_span_alloc(mmh_heap *h, size_t slices, size_t align_slices, bool room)
{
    size_t need = slices + align_slices - 1;
    mmh_assert_locked(h);
    mmh_assert(slices >= 1 && align_slices >= 1 && need < MMH_SEG_SLICES);
    uint64_t avail = h->hdr->span_bitmap & ~((2ull << (need - 1)) - 1);
    if (!avail) {
        unsigned flags;
        uint32_t freed;
        size_t idx = segrun_alloc(h, 1, 1, 0, false, &flags, &freed);
        if (idx == SIZE_MAX)
            return NULL;
        mmh_segment *s = segment_init(h, idx, MMH_SEGMAP_SLICED, 0);
        span_insert_free(h, s, 1, MMH_SEG_SLICES - 1, flags, freed);
        avail = h->hdr->span_bitmap & ~((2ull << (need - 1)) - 1);
    }
    unsigned bin = room ? 63u - (unsigned)__builtin_clzll(avail) : (unsigned)__builtin_ctzll(avail);
    mmh_page *pg = mmh_page_at(h, h->hdr->span_bins[bin]);
    mmh_segment *s = segment_of_page(pg);
    size_t idx = page_index(pg), n = pg->slice_count, start = mmh_align_up(idx, align_slices);
    unsigned flags = pg->flags;
    uint32_t freed = pg->freed_ms;
    mmh_assert(start + slices <= idx + n);
    bin_remove(h, pg);
    if (start > idx)
        span_insert_free(h, s, idx, start - idx, flags, freed);
    if (start + slices < idx + n)
        span_insert_free(h, s, start + slices, idx + n - start - slices, flags, freed);
    pg = span_mark(s, start, slices, MMH_PAGE_LARGE, block_flags(h, flags));
    used_add(h, slices << MMH_SLICE_SHIFT);
    if ((flags & MMH_PF_HOLES) &&
        mmh_region_prepare(h, mmh_off(h, mmh_page_start(pg)), slices << MMH_SLICE_SHIFT) != 0) {
        span_mark(s, start, slices, MMH_PAGE_FREE, flags);
        mmh_span_free(h, pg, 0);
        return NULL;
    }
    return pg;
}

/* flags: MMH_PF_PURGED when the span's memory was handed back already. */
void mmh_span_free(mmh_heap *h, mmh_page *pg, unsigned flags)
{
    mmh_segment *s = segment_of_page(pg);
    size_t idx = page_index(pg), n = pg->slice_count;
    mmh_assert_locked(h);
    mmh_assert(pg->kind != MMH_PAGE_FREE && pg->kind != MMH_PAGE_META && pg->slice_offset == 0);
    mmh_assert(h->space.used_bytes >= (size_t)n << MMH_SLICE_SHIFT);
    mmh_assert(!(flags & ~(unsigned)MMH_PF_PURGED));
    if (!(flags & MMH_PF_PURGED))
        h->hdr->unpurged += (uint64_t)n << MMH_SLICE_SHIFT;
    h->space.used_bytes -= (size_t)n << MMH_SLICE_SHIFT;
    if (idx + n < MMH_SEG_SLICES && s->pages[idx + n].kind == MMH_PAGE_FREE) {
        mmh_page *next = &s->pages[idx + n];
        bin_remove(h, next);
        flags = mmh_merge_free_flags(flags, next->flags);
        n += next->slice_count;
    }
    if (idx > s->first_slice) {
        mmh_page *prev = &s->pages[idx - 1];
        prev -= prev->slice_offset;
        if (prev->kind == MMH_PAGE_FREE) {
            bin_remove(h, prev);
            flags = mmh_merge_free_flags(flags, prev->flags);
            n += prev->slice_count;
            idx = page_index(prev);
        }
    }
    size_t seg = mmh_seg_index(h, (char *)s - MMH_SEGHDR_OFFSET);
    if (seg != 0 && idx == s->first_slice && idx + n == MMH_SEG_SLICES)
        segrun_free(h, seg, 1, flags);
    else
        span_insert_free(h, s, idx, n, flags, mmh_clock_ms());
    mmh_purge_maybe(h);
}

/* Extend a LARGE span in place to `slices` if the next span is free. */
bool mmh_span_grow(mmh_heap *h, mmh_page *pg, size_t slices)
{
    mmh_segment *s = segment_of_page(pg);
    size_t idx = page_index(pg), n = pg->slice_count;
    mmh_assert_locked(h);
    mmh_assert(pg->kind == MMH_PAGE_LARGE && slices > n);
    if (idx + n >= MMH_SEG_SLICES)
        return false;
    mmh_page *next = &s->pages[idx + n];
    if (next->kind != MMH_PAGE_FREE || n + next->slice_count < slices)
        return false;
    size_t total = n + next->slice_count;
    unsigned flags = next->flags;
    if ((flags & MMH_PF_HOLES) &&
        mmh_region_prepare(h, mmh_off(h, mmh_page_start(next)),
                           (slices - n) << MMH_SLICE_SHIFT) != 0)
        return false;
    uint32_t freed = next->freed_ms;
    bin_remove(h, next);
    if (total > slices)
        span_insert_free(h, s, idx + slices, total - slices, flags, freed);
    pg->slice_count = (uint16_t)slices;
    for (size_t i = n; i < slices; i++)
        s->pages[idx + i].slice_offset = (uint16_t)i;
    used_add(h, (slices - n) << MMH_SLICE_SHIFT);
    return true;
}

/* Give the tail of a LARGE span beyond `slices` back. */
void mmh_span_shrink(mmh_heap *h, mmh_page *pg, size_t slices)
{
    mmh_segment *s = segment_of_page(pg);
    size_t idx = page_index(pg), n = pg->slice_count;
    mmh_assert_locked(h);
    mmh_assert(pg->kind == MMH_PAGE_LARGE && slices >= 1 && slices < n);
    pg->slice_count = (uint16_t)slices;
    mmh_span_free(h, span_mark(s, idx + slices, n - slices, MMH_PAGE_LARGE, 0), 0);
}

/* ---- huge blocks: runs of whole segments ----------------------------- */

/* With `room`, where the run can grow in place (see segrun_alloc). */
mmh_page *mmh_huge_alloc(mmh_heap *h, size_t size, size_t align, bool room, char **block)
{
    mmh_assert_locked(h);
    size_t nsegs, modulus = 1, lead = 0, off;
    if (align <= MMH_SEG_SIZE / 2) {
        off = mmh_align_up(MMH_SLICE_SIZE, align);
        nsegs = (off + size + MMH_SEG_MASK) >> MMH_SEG_SHIFT;
    } else {
        /* The block starts right at the end of the head segment, where
         * descriptor 64 still maps it to the head (see internal.h). */
        off = MMH_SEG_SIZE;
        modulus = align >> MMH_SEG_SHIFT;
        lead = 1;
        nsegs = 1 + ((size + MMH_SEG_MASK) >> MMH_SEG_SHIFT);
    }
    unsigned flags;
    uint32_t freed;
    size_t idx = segrun_alloc(h, nsegs, modulus, lead, room, &flags, &freed);
    if (idx == SIZE_MAX)
        return NULL;
    if ((flags & MMH_PF_HOLES) &&
        mmh_region_prepare(h, (idx << MMH_SEG_SHIFT), nsegs << MMH_SEG_SHIFT) != 0) {
        segrun_free(h, idx, nsegs, flags);
        return NULL;
    }
    mmh_segment *s = segment_init(h, idx, MMH_SEGMAP_HUGE, nsegs);
    for (size_t i = 1; i < nsegs; i++)
        h->segmap[idx + i] = MMH_SEGMAP(MMH_SEGMAP_HUGE_IN, i);
    mmh_page *pg = span_mark(s, 1, MMH_SEG_SLICES, MMH_PAGE_HUGE, block_flags(h, flags));
    *block = (char *)s - MMH_SEGHDR_OFFSET + off;
    pg->free = mmh_off(h, *block);
    used_add(h, nsegs << MMH_SEG_SHIFT);
    return pg;
}

size_t mmh_huge_segments(const mmh_heap *h, const mmh_page *pg)
{
    size_t idx = mmh_seg_index(h, (const char *)segment_of_page(pg) - MMH_SEGHDR_OFFSET);
    return MMH_SEGMAP_LEN(h->segmap[idx]);
}

/* Segments [idx, idx + n) of a huge block are free again; flags as for
 * mmh_span_free. */
static void huge_release(mmh_heap *h, size_t idx, size_t n, unsigned flags)
{
    if (!(flags & MMH_PF_PURGED))
        h->hdr->unpurged += (uint64_t)n << MMH_SEG_SHIFT;
    h->space.used_bytes -= n << MMH_SEG_SHIFT;
    segrun_free(h, idx, n, flags);
    mmh_purge_maybe(h);
}

/* flags: as for mmh_span_free. */
void mmh_huge_free(mmh_heap *h, mmh_page *pg, unsigned flags)
{
    mmh_assert_locked(h);
    size_t idx = mmh_seg_index(h, (char *)segment_of_page(pg) - MMH_SEGHDR_OFFSET);
    huge_release(h, idx, MMH_SEGMAP_LEN(h->segmap[idx]), flags);
}

/* Resize a huge block's run to nsegs segments in place: shrink it, or
 * grow it into the free run after it (growing the heap when that run, or
 * the block, ends the heap).  False when the segments after it are taken. */
bool mmh_huge_resize(mmh_heap *h, mmh_page *pg, size_t nsegs)
{
    mmh_assert_locked(h);
    size_t idx = mmh_seg_index(h, (char *)segment_of_page(pg) - MMH_SEGHDR_OFFSET);
    size_t n = MMH_SEGMAP_LEN(h->segmap[idx]), end = idx + n;
    if (nsegs <= n) {
        if (nsegs == n)
            return true;
        h->segmap[idx] = MMH_SEGMAP(MMH_SEGMAP_HUGE, nsegs);
        huge_release(h, idx + nsegs, n - nsegs, 0);
        return true;
    }
    size_t need = nsegs - n, avail = 0;
    if (end < seg_count(h) && MMH_SEGMAP_KIND(h->segmap[end]) == MMH_SEGMAP_FREE)
        avail = mmh_seg_at(h, end)->nsegs;
    if (avail < need && end + avail == seg_count(h)) {
        if (grow_to(h, idx + nsegs) != 0)
            return false;
        avail = mmh_seg_at(h, end)->nsegs;
    }
    if (avail < need)
        return false;
    mmh_segment *run = mmh_seg_at(h, end);
    unsigned flags = run->flags;
    if ((flags & MMH_PF_HOLES) &&
        mmh_region_prepare(h, end << MMH_SEG_SHIFT, need << MMH_SEG_SHIFT) != 0)
        return false;
    segrun_unlink(h, run);
    if (avail > need)
        segrun_insert(h, end + need, avail - need, flags, run->freed_ms);
    h->segmap[idx] = MMH_SEGMAP(MMH_SEGMAP_HUGE, nsegs);
    for (size_t i = n; i < nsegs; i++)
        h->segmap[idx + i] = MMH_SEGMAP(MMH_SEGMAP_HUGE_IN, i);
    used_add(h, need << MMH_SEG_SHIFT);
    return true;
}

/* ---- handing memory back ----------------------------------------------- */

/* Call fn on every free span and free segment run whose flags have all of
 * `need` and none of `skip`, and that has been free for min_age ms, adding
 * `set` to its flags when fn succeeds; a younger one's bytes are added to
 * *young.  A run keeps its head segment's first slice: it holds the run's
 * links. */
static int free_ranges_each(mmh_heap *h, unsigned need, unsigned skip, unsigned set,
                            uint32_t min_age, uint64_t *young, mmh_range_fn fn, void *arg)
{
    mmh_hdr *hdr = h->hdr;
    uint32_t now = min_age ? mmh_clock_ms() : 0;
    for (uint64_t bits = hdr->span_bitmap; bits; bits &= bits - 1) {
        for (mmh_page *pg = mmh_page_at(h, hdr->span_bins[__builtin_ctzll(bits)]); pg;
             pg = mmh_page_at(h, pg->next)) {
            size_t len = (size_t)pg->slice_count << MMH_SLICE_SHIFT;
            if ((pg->flags & need) != need || (pg->flags & skip))
                continue;
            if (now - pg->freed_ms < min_age) {
                *young += len;
                continue;
            }
            if (fn(h, mmh_off(h, mmh_page_start(pg)), len, arg) != 0)
                return -1;
            pg->flags |= (uint8_t)set;
        }
    }
    for (uint64_t off = hdr->free_segs; off;) {
        mmh_segment *s = (mmh_segment *)mmh_ptr(h, off);
        size_t len = ((size_t)s->nsegs << MMH_SEG_SHIFT) - MMH_SLICE_SIZE;
        off = s->next;
        if ((s->flags & need) != need || (s->flags & skip))
            continue;
        if (now - s->freed_ms < min_age) {
            *young += len;
            continue;
        }
        size_t start = (mmh_seg_index(h, (char *)s - MMH_SEGHDR_OFFSET) << MMH_SEG_SHIFT) +
                       MMH_SLICE_SIZE;
        if (fn(h, start, len, arg) != 0)
            return -1;
        s->flags |= set;
    }
    return 0;
}

static int purge_range(mmh_heap *h, size_t off, size_t len, void *arg)
{
    (void)arg;
    mmh_region_purge(h, off, len);
    h->space.purged_bytes += len;
    return 0;
}

/* Hand back the free memory that has been free for min_age ms; what is
 * younger stays counted as not handed back. */
static void purge(mmh_heap *h, uint32_t min_age)
{
    uint64_t young = 0;
    free_ranges_each(h, 0, MMH_PF_PURGED, MMH_PF_PURGED | MMH_PF_HOLES, min_age, &young,
                     purge_range, NULL);
    h->hdr->unpurged = young;
    h->space.purge_pass_ms = mmh_clock_ms();
}

/* A pass when enough free memory is waiting.  In an anonymous heap only
 * memory free for PURGE_DELAY_MS goes, and passes (which walk every free
 * span) come at most a few per delay; a file heap's free memory goes at
 * once, to become holes in the file at the next commit. */
bool mmh_purge_due(const mmh_heap *h)
{
    uint64_t threshold = h->mapped / 16 > PURGE_MIN ? h->mapped / 16 : PURGE_MIN;
    return h->hdr->unpurged >= threshold &&
           (h->fd >= 0 || mmh_clock_ms() - h->space.purge_pass_ms >= PURGE_DELAY_MS / 4);
}

void mmh_purge_maybe(mmh_heap *h)
{
    mmh_assert_locked(h);
    if (mmh_purge_due(h))
        purge(h, h->fd >= 0 ? 0 : PURGE_DELAY_MS);
}

uint64_t mmh_purge_all(mmh_heap *h)
{
    mmh_lock(h);
    uint64_t before = h->space.purged_bytes;
    purge(h, 0);
    uint64_t purged = h->space.purged_bytes - before;
    mmh_unlock(h);
    return purged;
}

/* At a commit: the handed-back free memory of a private file heap not yet
 * made holes in the file, each range once. */
int mmh_punch_purged(mmh_heap *h, mmh_range_fn punch, void *arg)
{
    mmh_assert_locked(h);
    uint64_t young = 0;
    return free_ranges_each(h, MMH_PF_PURGED, MMH_PF_PUNCHED, MMH_PF_PUNCHED, 0, &young, punch,
                            arg);
}
