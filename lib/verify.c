/* The structure check mmh_open runs on a heap file before anything follows
 * the links in it: the header's checksum does not cover the metadata, and
 * a damaged or crafted file must be refused (EBADMSG), not walked into a
 * crash or an endless loop.
 *
 * Checked: the segment map; every segment's header and the spans tiling
 * it (lengths, back offsets, the fields of small pages and large and huge
 * blocks); the span bins and the list of free segment runs (every free span
 * and run on exactly one, and nothing else); the slots' class rings and
 * notified stacks (every small page that is not parked in exactly one ring,
 * its own).  The cost is each segment's metadata slice, not the heap's
 * pages: the free lists of blocks inside pages are not walked (mmheap check
 * does that).
 */
#include "internal.h"

#include <errno.h>

/* What the walk found at each descriptor (one byte per slice, and one for
 * descriptor 64 of every segment). */
enum {
    AT_FREE_HEAD  = 1u << 0, /* head of a free span, or slice 0 of a free run */
    AT_SMALL_HEAD = 1u << 1,
    AT_LISTED     = 1u << 2, /* seen on a span bin or the free run list */
    AT_RINGED     = 1u << 3, /* seen on a class ring                    */
    AT_NOTIFIED   = 1u << 4, /* seen on a slot's notified stack         */
};

#define DESCS (MMH_SEG_SLICES + 1)

typedef struct walk {
    const mmh_heap *h;
    const mmh_hdr  *hdr;
    const uint32_t *segmap;
    size_t          nsegs;
    uint8_t        *at; /* nsegs * DESCS */
} walk;

static int bad(const walk *w, uint64_t off, const char *what)
{
    return mmh_fail(EBADMSG, "%s: corrupt heap file: %s (at offset %llu)", w->h->path, what,
                    (unsigned long long)off);
}

static const mmh_segment *seg(const walk *w, size_t idx)
{
    return mmh_seg_at(w->h, idx);
}

static uint64_t desc_off(const walk *w, size_t idx, size_t i)
{
    return mmh_off(w->h, &seg(w, idx)->pages[i]);
}

/* The descriptor at heap offset off, as segment and index; false when off
 * is not one. */
static bool desc_at(const walk *w, uint64_t off, size_t *idx, size_t *i)
{
    uint64_t in = (off & MMH_SEG_MASK) - MMH_SEGHDR_OFFSET - offsetof(mmh_segment, pages);
    *idx = (size_t)(off >> MMH_SEG_SHIFT);
    *i = (size_t)(in / sizeof(mmh_page));
    return *idx < w->nsegs && in % sizeof(mmh_page) == 0 && *i < DESCS;
}

static uint8_t *mark(const walk *w, size_t idx, size_t i)
{
    return &w->at[idx * DESCS + i];
}

/* Heap offset off lies in [start, start + len) on a 16-byte boundary. */
static bool inside(uint64_t off, uint64_t start, uint64_t len)
{
    return off - start < len && !(off & (MMH_MIN_ALIGN - 1));
}

static int check_small(const walk *w, const mmh_page *pg, uint64_t start, size_t n)
{
    uint64_t off = mmh_off(w->h, pg);
    if (pg->cls == 0 || pg->cls >= MMH_CLASSES)
        return bad(w, off, "small page of no size class");
    size_t bsize = mmh_class_size(pg->cls);
    if (pg->block_size != bsize || n != (bsize <= MMH_SMALL_PAGE_MAX ? 1 : MMH_MEDIUM_SLICES) ||
        pg->reserved != (n << MMH_SLICE_SHIFT) / bsize || pg->capacity > pg->reserved ||
        pg->used > pg->capacity)
        return bad(w, off, "small page with inconsistent sizes or counts");
    if (pg->slot == 0 || pg->slot > w->hdr->slots_hwm)
        return bad(w, off, "small page of no slot in use");
    uint64_t carved = (uint64_t)pg->capacity * bsize;
    uint64_t xfree = atomic_load_explicit(&pg->xfree, memory_order_relaxed) & ~(uint64_t)MMH_XF_FLAGS;
    if ((pg->free && (!inside(pg->free, start, carved) || (pg->free - start) % bsize)) ||
        (xfree && (!inside(xfree, start, carved) || (xfree - start) % bsize)))
        return bad(w, off, "small page whose free list starts outside its blocks");
    return 0;
}

/* The spans tiling sliced segment idx, from its metadata span on. */
static int check_sliced(walk *w, size_t idx)
{
    const mmh_segment *s = seg(w, idx);
    uint64_t seg_off = (uint64_t)idx << MMH_SEG_SHIFT;
    size_t first = idx == 0 ? w->hdr->first_slice : 1;
    if (s->magic != MMH_SEG_MAGIC || s->first_slice != first || s->pages[0].kind != MMH_PAGE_META ||
        s->pages[0].slice_count != first)
        return bad(w, seg_off, "bad segment header");
    for (size_t i = first; i < MMH_SEG_SLICES;) {
        const mmh_page *pg = &s->pages[i];
        size_t n = pg->slice_count;
        uint64_t start = seg_off + ((uint64_t)i << MMH_SLICE_SHIFT);
        if (n == 0 || n > MMH_SEG_SLICES - i)
            return bad(w, desc_off(w, idx, i), "span of a bad length");
        switch (pg->kind) {
        case MMH_PAGE_FREE:
            if (s->pages[i + n - 1].slice_offset != n - 1)
                return bad(w, desc_off(w, idx, i), "free span without its back offset");
            *mark(w, idx, i) |= AT_FREE_HEAD;
            break;
        case MMH_PAGE_SMALL:
        case MMH_PAGE_LARGE:
            for (size_t j = 1; j < n; j++)
                if (s->pages[i + j].slice_offset != j)
                    return bad(w, desc_off(w, idx, i + j), "span with a bad back offset");
            if (pg->kind == MMH_PAGE_LARGE) {
                if (!inside(pg->free, start, (uint64_t)n << MMH_SLICE_SHIFT))
                    return bad(w, desc_off(w, idx, i), "large block outside its span");
            } else if (check_small(w, pg, start, n) != 0) {
                return -1;
            } else {
                *mark(w, idx, i) |= AT_SMALL_HEAD;
            }
            break;
        default:
            return bad(w, desc_off(w, idx, i), "span of an unknown kind");
        }
        i += n;
    }
    return 0;
}

/* Segments [idx, idx + len) of a run headed at idx: each inner entry of
 * the segment map points back to the head (a free run's exactly only in
 * its last segment). */
static int check_run(walk *w, size_t idx, size_t len, unsigned inner_kind)
{
    uint64_t seg_off = (uint64_t)idx << MMH_SEG_SHIFT;
    if (len == 0 || len > w->nsegs - idx || seg(w, idx)->magic != MMH_SEG_MAGIC)
        return bad(w, seg_off, "bad segment run");
    for (size_t j = 1; j < len; j++) {
        uint32_t e = w->segmap[idx + j];
        if (MMH_SEGMAP_KIND(e) != inner_kind ||
            ((inner_kind == MMH_SEGMAP_HUGE_IN || j == len - 1) && MMH_SEGMAP_LEN(e) != j))
            return bad(w, seg_off, "segment map entry inside a run does not point back to it");
    }
    return 0;
}

static int check_huge(walk *w, size_t idx)
{
    const mmh_segment *s = seg(w, idx);
    const mmh_page *pg = &s->pages[1];
    uint64_t seg_off = (uint64_t)idx << MMH_SEG_SHIFT;
    if (pg->kind != MMH_PAGE_HUGE || pg->slice_count != MMH_SEG_SLICES ||
        !inside(pg->free, seg_off + MMH_SLICE_SIZE, MMH_SEG_SIZE - MMH_SLICE_SIZE + 1))
        return bad(w, seg_off, "bad huge block");
    for (size_t j = 1; j < MMH_SEG_SLICES; j++)
        if (s->pages[1 + j].slice_offset != j)
            return bad(w, desc_off(w, idx, 1 + j), "huge block with a bad back offset");
    return 0;
}

static int check_segments(walk *w)
{
    for (size_t idx = 0; idx < w->nsegs;) {
        uint32_t e = w->segmap[idx];
        size_t len = MMH_SEGMAP_LEN(e);
        int rc;
        switch (idx == 0 ? MMH_SEGMAP_SLICED : MMH_SEGMAP_KIND(e)) {
        case MMH_SEGMAP_SLICED:
            rc = e != MMH_SEGMAP(MMH_SEGMAP_SLICED, 0)
                     ? bad(w, (uint64_t)idx << MMH_SEG_SHIFT, "bad segment map entry")
                     : check_sliced(w, idx);
            len = 1;
            break;
        case MMH_SEGMAP_HUGE:
            if ((rc = check_run(w, idx, len, MMH_SEGMAP_HUGE_IN)) == 0)
                rc = check_huge(w, idx);
            break;
        case MMH_SEGMAP_FREE:
            if ((rc = check_run(w, idx, len, MMH_SEGMAP_FREE_IN)) == 0 && seg(w, idx)->nsegs != len)
                rc = bad(w, (uint64_t)idx << MMH_SEG_SHIFT, "free run of two lengths");
            *mark(w, idx, 0) |= AT_FREE_HEAD;
            break;
        default:
            rc = bad(w, (uint64_t)idx << MMH_SEG_SHIFT, "bad segment map entry");
        }
        if (rc)
            return rc;
        idx += len;
    }
    return 0;
}

static int check_bin(walk *w, unsigned bin)
{
    uint64_t prev = 0;
    for (uint64_t off = w->hdr->span_bins[bin]; off;) {
        size_t idx, i;
        if (!desc_at(w, off, &idx, &i) || (*mark(w, idx, i) & (AT_FREE_HEAD | AT_LISTED)) !=
                                              AT_FREE_HEAD)
            return bad(w, off, "span bin entry that is no free span, or a second time");
        const mmh_page *pg = &seg(w, idx)->pages[i];
        if (pg->slice_count != bin || pg->prev != prev)
            return bad(w, off, "free span in the wrong bin or with a bad back link");
        *mark(w, idx, i) |= AT_LISTED;
        prev = off;
        off = pg->next;
    }
    if (bin < 64 && !!(w->hdr->span_bitmap & (1ull << bin)) != (w->hdr->span_bins[bin] != 0))
        return bad(w, offsetof(mmh_hdr, span_bitmap), "span bitmap does not match the bins");
    return 0;
}

static int check_free_runs(walk *w)
{
    uint64_t prev = 0;
    for (uint64_t off = w->hdr->free_segs; off;) {
        size_t idx = (size_t)(off >> MMH_SEG_SHIFT);
        if ((off & MMH_SEG_MASK) != MMH_SEGHDR_OFFSET || idx >= w->nsegs ||
            MMH_SEGMAP_KIND(w->segmap[idx]) != MMH_SEGMAP_FREE ||
            (*mark(w, idx, 0) & AT_LISTED))
            return bad(w, off, "free run list entry that is no free run, or a second time");
        const mmh_segment *s = seg(w, idx);
        if (s->prev != prev)
            return bad(w, off, "free run with a bad back link");
        *mark(w, idx, 0) |= AT_LISTED;
        prev = off;
        off = s->next;
    }
    return 0;
}

/* The small page at off, of slot id and class cls; NULL (reason set) if
 * off is none. */
static const mmh_page *slot_page(walk *w, uint64_t off, uint32_t id, unsigned cls,
                                 size_t *idx, size_t *i)
{
    if (!desc_at(w, off, idx, i) || !(*mark(w, *idx, *i) & AT_SMALL_HEAD)) {
        bad(w, off, "slot list entry that is no small page");
        return NULL;
    }
    const mmh_page *pg = &seg(w, *idx)->pages[*i];
    if (pg->slot != id || (cls && pg->cls != cls)) {
        bad(w, off, "small page on the list of another slot or class");
        return NULL;
    }
    return pg;
}

static int check_ring(walk *w, uint32_t id, unsigned cls, uint64_t head)
{
    uint64_t off = head;
    do {
        size_t idx, i;
        const mmh_page *pg = slot_page(w, off, id, cls, &idx, &i);
        if (!pg)
            return -1;
        if ((pg->flags & MMH_PF_FULL) || (*mark(w, idx, i) & AT_RINGED) ||
            mmh_page_at(w->h, pg->next) == NULL)
            return bad(w, off, "class ring entry that is parked, seen twice, or ends");
        *mark(w, idx, i) |= AT_RINGED;
        size_t nidx, ni;
        if (!desc_at(w, pg->next, &nidx, &ni) || seg(w, nidx)->pages[ni].prev != off)
            return bad(w, off, "class ring with a bad back link");
        off = pg->next;
    } while (off != head);
    return 0;
}

static int check_slots(walk *w)
{
    const mmh_slot *slots = (const mmh_slot *)(w->h->base + w->hdr->slots_off);
    if (w->hdr->empty_page.free || atomic_load_explicit(&w->hdr->empty_page.xfree,
                                                        memory_order_relaxed))
        return bad(w, MMH_EMPTY_PAGE_OFF, "the empty page has blocks");
    for (uint32_t s = 0; s < w->hdr->slots_hwm; s++) {
        for (unsigned cls = 0; cls < MMH_CLASSES; cls++) {
            uint64_t head = slots[s].pages[cls];
            if (head == MMH_EMPTY_PAGE_OFF)
                continue;
            if (cls == 0)
                return bad(w, mmh_off(w->h, &slots[s]), "slot with pages of class 0");
            if (check_ring(w, s + 1, cls, head) != 0)
                return -1;
        }
        for (uint64_t off = atomic_load_explicit(&slots[s].xpages, memory_order_relaxed); off;) {
            size_t idx, i;
            const mmh_page *pg = slot_page(w, off, s + 1, 0, &idx, &i);
            if (!pg)
                return -1;
            if (*mark(w, idx, i) & AT_NOTIFIED)
                return bad(w, off, "page on a notified stack twice");
            *mark(w, idx, i) |= AT_NOTIFIED;
            off = pg->xnext;
        }
    }
    return 0;
}

/* Every free span and run listed, every small page not parked in a ring. */
static int check_all_listed(walk *w)
{
    for (size_t idx = 0; idx < w->nsegs; idx++) {
        for (size_t i = 0; i < DESCS; i++) {
            uint8_t m = *mark(w, idx, i);
            if ((m & AT_FREE_HEAD) && !(m & AT_LISTED))
                return bad(w, desc_off(w, idx, i), "free span or run on no list");
            if ((m & AT_SMALL_HEAD) && !(m & AT_RINGED) &&
                !(seg(w, idx)->pages[i].flags & MMH_PF_FULL))
                return bad(w, desc_off(w, idx, i), "small page in use on no class ring");
        }
    }
    return 0;
}

int mmh_verify(const mmh_heap *h)
{
    walk w = { .h = h, .hdr = (const mmh_hdr *)h->base, .nsegs = h->mapped >> MMH_SEG_SHIFT };
    w.segmap = (const uint32_t *)(h->base + w.hdr->segmap_off);
    if (!(w.at = mmh_meta_calloc(w.nsegs, DESCS)))
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    int rc = check_segments(&w);
    for (unsigned bin = 0; rc == 0 && bin <= MMH_SPAN_BINS; bin++)
        rc = check_bin(&w, bin);
    if (rc == 0)
        rc = check_free_runs(&w);
    if (rc == 0)
        rc = check_slots(&w);
    if (rc == 0)
        rc = check_all_listed(&w);
    mmh_meta_free(w.at);
    return rc;
}
