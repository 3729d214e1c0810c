/* mmheap check: a read-only walk over every piece of allocator metadata of
 * a heap file (a file view), verifying its invariants, and the summary mmheap info
 * prints from the same walk.  mmh_open runs the same walk over a file it
 * maps, without the block lists inside pages (mmh_verify): the header's
 * checksum does not cover the metadata, and a damaged or crafted file must
 * be refused, not followed into a crash or an endless loop.
 *
 * The view is a private mapping of the file, with the commits in its log
 * applied in memory, so the walk sees exactly what the next mmh_open will.
 * Nothing in it is trusted: every offset is checked to lie inside the view
 * and to name the kind of thing it should before it is followed, and every
 * list walk is bounded, so a damaged file gives a report, never a crash or
 * a hang.  Lists are checked to be bijections without extra memory: each
 * node names what it should (its length, its class, its slot), links are
 * checked both ways, and the list counts must equal what the segment walk
 * found.
 */
#define _GNU_SOURCE
#include "check.h"
#include "walk.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGES_OFF   (MMH_SEGHDR_OFFSET + offsetof(mmh_segment, pages))
#define MAX_BLOCKS  (MMH_SLICE_SIZE / MMH_MIN_ALIGN) /* of a 1-slice page */

/* ---- the file view -------------------------------------------------------- */

static void fileview_unmap(mmh_fileview *fv)
{
    if (fv->base)
        munmap(fv->base, fv->size);
    fv->base = NULL;
}

/* A private, writable mapping of the file at a segment-aligned address
 * (descriptors are found by address arithmetic), size bytes long; past the
 * file's end (growth in the log), zero pages. */
static int fileview_map(mmh_fileview *fv, int fd, uint64_t file_size, size_t size)
{
    size_t span = size + MMH_SEG_SIZE;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                     MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return mmh_fail(errno, "%s: cannot map %zu bytes: %m", fv->path, size);
    char *base = (char *)mmh_align_up((uintptr_t)raw, MMH_SEG_SIZE);
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    munmap(base + size, (size_t)(raw + span - base - size));
    size_t in_file = file_size < size ? (size_t)file_size : size;
    if (in_file && mmap(base, in_file, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) ==
                   MAP_FAILED) {
        munmap(base, size);
        return mmh_fail(errno, "%s: cannot map the file: %m", fv->path);
    }
    fv->base = base;
    fv->size = size;
    return 0;
}

int mmh_fileview_open(mmh_fileview *fv, const char *path)
{
    memset(fv, 0, sizeof *fv);
    fv->path = path;
    fv->fd = mmh_open_regular(path, O_RDONLY);
    if (fv->fd < 0)
        return -1;
    struct stat st;
    int rc = -1;
    if (fstat(fv->fd, &st) != 0) {
        mmh_fail(errno, "%s: cannot stat: %m", path);
        goto out;
    }
    /* A shared lock: a writer's commit is not in flight meanwhile. */
    if (flock(fv->fd, LOCK_SH | LOCK_NB) != 0) {
        mmh_fail(errno == EWOULDBLOCK ? EBUSY : errno, "%s: %s", path, errno == EWOULDBLOCK ?
                 "heap is in use by a writer" : "cannot lock");
        goto out;
    }
    fv->file_size = (uint64_t)st.st_size;
    mmh_wal_view wv;
    if (mmh_wal_inspect(path, fv->fd, false, &wv) != 0) {
        mmh_wal_view_close(&wv);
        goto out;
    }
    fv->wal = wv.info;
    uint64_t size = fv->file_size;
    if (wv.info.extent > size)
        size = wv.info.extent;
    /* Mapped before its header is read, so bounded by what a header may
     * say: a heap is at most MMH_MAX_MAX_SIZE. */
    if (size > MMH_MAX_MAX_SIZE)
        size = MMH_MAX_MAX_SIZE;
    bool ok = fileview_map(fv, fv->fd, fv->file_size,
                        mmh_align_up(size > MMH_HDR_SIZE ? size : MMH_HDR_SIZE, 4096)) == 0 &&
              mmh_wal_overlay(path, &wv, fv->base, fv->size) == 0 &&
              mmh_format_upgrade(path, (mmh_hdr *)fv->base, size) == 0 &&
              mmh_format_check(path, (const mmh_hdr *)fv->base, size) == 0;
    mmh_wal_view_close(&wv);
    if (!ok)
        goto out;
    fv->hdr = (const mmh_hdr *)fv->base;
    rc = 0;
out:
    if (rc != 0)
        mmh_fileview_close(fv);
    return rc;
}

void mmh_fileview_close(mmh_fileview *fv)
{
    int err = errno;
    fileview_unmap(fv);
    if (fv->fd >= 0)
        close(fv->fd);
    fv->fd = -1;
    fv->hdr = NULL;
    errno = err;
}

/* ---- the walk -------------------------------------------------------------- */

typedef struct walk {
    const char       *base;
    const mmh_heap   *live;       /* an open heap (mmh_check); NULL: a file view */
    bool              full;       /* also the block lists inside pages */
    const mmh_hdr    *hdr;
    const uint32_t   *segmap;
    size_t            nsegs;
    mmh_check_result *r;
    mmh_check_report_fn report;
    void             *arg;
    uint64_t          ring_pages; /* small pages not parked: on some ring */
    uint64_t          cached_spans; /* spans kept in slots' caches */
    uint32_t          slot_tables; /* spans that are the slot tables the header names */
} walk;

static void problem(walk *w, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(walk *w, uint64_t off, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->r->problems++;
    if (w->report)
        w->report(w->arg, off, msg);
}

static const mmh_segment *seg_at(const walk *w, size_t i)
{
    return (const mmh_segment *)(w->base + (i << MMH_SEG_SHIFT) + MMH_SEGHDR_OFFSET);
}

static uint64_t seg_off(size_t i)
{
    return ((uint64_t)i << MMH_SEG_SHIFT) + MMH_SEGHDR_OFFSET;
}

static uint64_t desc_off(size_t seg, size_t idx)
{
    return ((uint64_t)seg << MMH_SEG_SHIFT) + PAGES_OFF + idx * sizeof(mmh_page);
}

/* The descriptor at heap offset off, if off names the head slot of a
 * descriptor 0..63 of a sliced segment; else NULL. */
static const mmh_page *sliced_desc(const walk *w, uint64_t off, size_t *seg, size_t *idx)
{
    size_t s = (size_t)(off >> MMH_SEG_SHIFT);
    uint64_t rel = off & MMH_SEG_MASK;
    if (s >= w->nsegs || MMH_SEGMAP_KIND(w->segmap[s]) != MMH_SEGMAP_SLICED ||
        rel < PAGES_OFF || (rel - PAGES_OFF) % sizeof(mmh_page) ||
        (rel - PAGES_OFF) / sizeof(mmh_page) >= MMH_SEG_SLICES)
        return NULL;
    *seg = s;
    *idx = (size_t)((rel - PAGES_OFF) / sizeof(mmh_page));
    return (const mmh_page *)(w->base + off);
}

/* ---- small pages ---------------------------------------------------------- */

static const char remote_list[] = "remote";

/* Walk one of a page's block lists (the owner's, or the remote one),
 * marking blocks in seen; the number of blocks, or -1 after a problem.
 * Without w->full, only the first block (two of a remote list): the rest
 * are in the pages, and mmh_open must not read every page of the heap. */
static long block_list(walk *w, const mmh_page *pg, uint64_t pg_off, uint64_t first,
                       uint8_t *seen, const char *which)
{
    mmh_list_iter l;
    uint64_t off, start;
    long n = 0;
    mmh_list_iter_init(&l, w->live, w->base, pg, first, seen);
    start = l.start;
    for (;; n++) {
        switch (mmh_list_next(&l, &off)) {
        case MMH_LIST_END:
            return n;
        case MMH_LIST_BLOCK:
            break;
        case MMH_LIST_OUTSIDE:
            problem(w, pg_off, "small page at %#llx: %s free list leaves the page's carved "
                    "blocks (%#llx)", (unsigned long long)start, which, (unsigned long long)off);
            return -1;
        case MMH_LIST_MISALIGNED:
            problem(w, pg_off, "small page at %#llx: %s free list entry %#llx is not at a block "
                    "boundary", (unsigned long long)start, which, (unsigned long long)off);
            return -1;
        case MMH_LIST_REPEAT:
            problem(w, pg_off, "small page at %#llx: block %#llx is on the free lists twice "
                    "(a cycle, or a block freed twice)", (unsigned long long)start,
                    (unsigned long long)off);
            return -1;
        }
        /* Without w->full, a remote list is followed one step: such lists
         * are rare at a quiescent point, and the allocator follows them
         * all at once when it collects them. */
        if (!w->full && (n > 0 || which != remote_list))
            return 1;
    }
}

static void check_small(walk *w, const mmh_page *pg, uint64_t pg_off, size_t slices)
{
    uint64_t start = (uint64_t)(mmh_page_start(pg) - w->base);
    unsigned cls = pg->cls;
    if (cls == 0 || cls >= MMH_CLASSES) {
        problem(w, pg_off, "small page at %#llx: size class %u out of range",
                (unsigned long long)start, cls);
        return;
    }
    size_t bsize = mmh_class_size(cls);
    size_t want_slices = bsize <= MMH_SMALL_PAGE_MAX ? 1 : MMH_MEDIUM_SLICES;
    if (pg->block_size != bsize || slices != want_slices ||
        pg->reserved != (slices << MMH_SLICE_SHIFT) / bsize) {
        problem(w, pg_off, "small page at %#llx: class %u wants %zu-byte blocks in %zu slices, "
                "the page has %u-byte blocks, %zu slices, %u blocks", (unsigned long long)start,
                cls, bsize, want_slices, pg->block_size, slices, pg->reserved);
        return;
    }
    if (pg->capacity > pg->reserved || pg->used > pg->capacity) {
        problem(w, pg_off, "small page at %#llx: counts out of range: %u used, %u carved, %u "
                "blocks", (unsigned long long)start, pg->used, pg->capacity, pg->reserved);
        return;
    }
    if (pg->slot_id == 0 || pg->slot_id > w->hdr->slots_hwm)
        problem(w, pg_off, "small page at %#llx: owning slot %u is not a slot in use (%u)",
                (unsigned long long)start, pg->slot_id, w->hdr->slots_hwm);
    uint8_t seen[MAX_BLOCKS / 8];
    memset(seen, 0, MMH_LIST_SEEN_BYTES(pg->capacity));
    uint64_t x = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    long nfree = block_list(w, pg, pg_off, pg->free, seen, "owner's");
    long nremote = nfree < 0 ? -1 : block_list(w, pg, pg_off, x & ~(uint64_t)MMH_XF_FLAGS,
                                               seen, remote_list);
    if (!w->full && nremote >= 0) {
        /* Only the lists' first blocks were looked at: the owner's list
         * holds the carved blocks not in use, the remote one some in use. */
        if ((pg->free == 0) != (pg->used == pg->capacity))
            problem(w, pg_off, "small page at %#llx: %u of %u blocks used, but the owner's "
                    "free list is %s", (unsigned long long)start, pg->used, pg->capacity,
                    pg->free ? "not empty" : "empty");
        nfree = pg->capacity - pg->used, nremote = nremote > 0;
    }
    if (nfree >= 0 && pg->used + (uint64_t)nfree != pg->capacity)
        problem(w, pg_off, "small page at %#llx: %u blocks used and %ld free do not add up to "
                "the %u carved", (unsigned long long)start, pg->used, nfree, pg->capacity);
    else if (nremote > (long)pg->used)
        problem(w, pg_off, "small page at %#llx: %ld remote frees but only %u blocks used",
                (unsigned long long)start, nremote, pg->used);
    if (pg->flags & ~(unsigned)MMH_PF_PARKED)
        problem(w, pg_off, "small page at %#llx: flags %#x are not a small page's",
                (unsigned long long)start, pg->flags);
    if (!(pg->flags & MMH_PF_PARKED))
        w->ring_pages++;
    uint64_t live = nremote >= 0 ? pg->used - (uint64_t)nremote : pg->used;
    mmh_class_stats *c = &w->r->classes[cls];
    c->pages++;
    c->blocks += live;
    c->capacity += pg->reserved;
    w->r->small_pages++;
    w->r->live_blocks += live;
    w->r->live_bytes += live * bsize;
    w->r->small_bytes += slices << MMH_SLICE_SHIFT;
}

/* ---- segments and spans ------------------------------------------------------ */

/* A slot table's span: the table its descriptor says it is, which the
 * header names at its start.  Two spans cannot both pass for one table,
 * so the count that check_slots compares makes it one table a span. */
static void check_slot_table(walk *w, const mmh_span *sp)
{
    const mmh_page *pg = sp->pg;
    uint64_t start = mmh_span_start(sp);
    uint32_t t = pg->used;
    w->r->meta_bytes += mmh_span_bytes(sp);
    if (sp->count != MMH_SLOT_TABLE_SLICES || pg->free != start || t == 0 ||
        t >= w->hdr->nslots / MMH_SLOTS || w->hdr->slot_tables[t - 1] != start) {
        problem(w, desc_off(sp->seg, sp->slice), "slot table span at %#llx (%zu slices, table "
                "%u): the header does not name it as that table", (unsigned long long)start,
                sp->count, t);
        return;
    }
    w->slot_tables++;
}

/* A sliced segment's own header: its map entry, magic and metadata slices.
 * false: its spans cannot be trusted to be walked. */
static bool check_sliced_head(walk *w, size_t i)
{
    const mmh_segment *s = seg_at(w, i);
    uint64_t so = seg_off(i);
    uint32_t first = i == 0 ? w->hdr->first_slice : 1;
    w->r->sliced_segments++;
    if (MMH_SEGMAP_LEN(w->segmap[i]) || s->magic != MMH_SEG_MAGIC) {
        problem(w, so, "segment %zu: bad sliced segment (magic %#x, map %#x)", i, s->magic,
                w->segmap[i]);
        return false;
    }
    if (s->first_slice != first || s->pages[0].kind != MMH_PAGE_META ||
        s->pages[0].slice_count != first) {
        problem(w, so, "segment %zu: metadata slices %u (descriptor says %u of kind %u), want %u",
                i, s->first_slice, s->pages[0].slice_count, s->pages[0].kind, first);
        return false;
    }
    w->r->meta_bytes += (uint64_t)first << MMH_SLICE_SHIFT;
    return true;
}

/* One span of a sliced segment after its metadata.  false: a kind that
 * does not belong there (the rest of the segment is not walked). */
static bool check_span(walk *w, const mmh_span *sp, bool prev_free)
{
    const mmh_segment *s = seg_at(w, sp->seg);
    const mmh_page *pg = sp->pg;
    size_t idx = sp->slice, n = sp->count;
    uint64_t po = desc_off(sp->seg, idx), start = mmh_span_start(sp);
    bool interior_ok = true;
    if (pg->kind == MMH_PAGE_FREE)
        interior_ok = n == 1 || s->pages[idx + n - 1].slice_offset == n - 1;
    else
        for (size_t k = 1; k < n; k++)
            interior_ok &= s->pages[idx + k].slice_offset == k;
    if (!interior_ok)
        problem(w, po, "span at %#llx (%zu slices): its slices do not point back to it",
                (unsigned long long)start, n);
    switch (pg->kind) {
    case MMH_PAGE_FREE:
        if (prev_free)
            problem(w, po, "free span at %#llx follows another free span: not coalesced",
                    (unsigned long long)start);
        w->r->free_spans++;
        w->r->free_bytes += mmh_span_bytes(sp);
        if (mmh_span_bytes(sp) > w->r->largest_free)
            w->r->largest_free = mmh_span_bytes(sp);
        return true;
    case MMH_PAGE_SMALL:
        check_small(w, pg, po, n);
        return true;
    case MMH_PAGE_SLOTS:
        check_slot_table(w, sp);
        return true;
    case MMH_PAGE_CACHED: /* check_slots finds it in its slot */
        if (pg->slot_id == 0 || pg->slot_id > w->hdr->slots_hwm)
            problem(w, po, "cached span at %#llx: slot %u is not a slot in use",
                    (unsigned long long)start, pg->slot_id);
        w->cached_spans++;
        return true;
    case MMH_PAGE_LARGE:
        if (pg->free != start)
            problem(w, po, "large block span at %#llx: block offset %#llx is not its start",
                    (unsigned long long)start, (unsigned long long)pg->free);
        w->r->large_blocks++;
        w->r->live_blocks++;
        w->r->live_bytes += mmh_span_bytes(sp);
        w->r->large_bytes += mmh_span_bytes(sp);
        return true;
    default:
        problem(w, po, "span at %#llx: kind %u does not belong among a segment's spans",
                (unsigned long long)start, pg->kind);
        return false;
    }
}

/* A huge block: segments [i, i + n), the block somewhere in the first. */
static void check_huge(walk *w, size_t i, size_t n)
{
    const mmh_segment *s = seg_at(w, i);
    const mmh_page *pg = &s->pages[1];
    uint64_t lo = ((uint64_t)i << MMH_SEG_SHIFT) + MMH_SLICE_SIZE;
    uint64_t end = (uint64_t)(i + n) << MMH_SEG_SHIFT;
    if (s->first_slice != 1 || s->pages[0].kind != MMH_PAGE_META ||
        pg->kind != MMH_PAGE_HUGE || pg->slice_count != MMH_SEG_SLICES) {
        problem(w, seg_off(i), "huge block run at segment %zu: its segment header does not "
                "describe a huge block", i);
        return;
    }
    for (size_t k = 1; k < MMH_SEG_SLICES; k++)
        if (s->pages[1 + k].slice_offset != k) {
            problem(w, desc_off(i, 1 + k), "huge block run at segment %zu: slice %zu does not "
                    "point back to its descriptor", i, 1 + k);
            return;
        }
    if (pg->free < lo || pg->free > (uint64_t)(i + 1) << MMH_SEG_SHIFT || pg->free >= end ||
        (pg->free & (MMH_MIN_ALIGN - 1))) {
        problem(w, desc_off(i, 1), "huge block run at segment %zu: block offset %#llx is not "
                "inside its first segment", i, (unsigned long long)pg->free);
        return;
    }
    w->r->huge_blocks++;
    w->r->live_blocks++;
    w->r->live_bytes += end - pg->free;
    w->r->large_bytes += end - pg->free;
}

/* A run of segments (a huge block's, or free): the map entries inside it
 * and its head's magic. */
static void check_run_map(walk *w, const mmh_span *sp)
{
    size_t i = sp->seg, n = sp->count;
    uint64_t eo = w->hdr->segmap_off + i * sizeof(uint32_t);
    /* A free run's inner entries point back exactly only in its last
     * segment, the one its right neighbour looks at. */
    unsigned in = sp->kind == MMH_SPAN_HUGE ? MMH_SEGMAP_HUGE_IN : MMH_SEGMAP_FREE_IN;
    for (size_t k = 1; k < n; k++)
        if (MMH_SEGMAP_KIND(w->segmap[i + k]) != in ||
            ((in == MMH_SEGMAP_HUGE_IN || k == n - 1) && MMH_SEGMAP_LEN(w->segmap[i + k]) != k)) {
            problem(w, eo + k * sizeof(uint32_t), "segment %zu: inside the run that starts at "
                    "segment %zu, the segment map says %#x", i + k, i, w->segmap[i + k]);
            break;
        }
    if (seg_at(w, i)->magic != MMH_SEG_MAGIC)
        problem(w, seg_off(i), "segment %zu: bad segment magic %#x", i, seg_at(w, i)->magic);
}

static void check_free_run(walk *w, const mmh_span *sp, bool prev_free)
{
    size_t i = sp->seg;
    if (prev_free)
        problem(w, w->hdr->segmap_off + i * sizeof(uint32_t), "free run at segment %zu "
                "follows another: not coalesced", i);
    if (seg_at(w, i)->nsegs != sp->count)
        problem(w, seg_off(i), "free run at segment %zu: its header says %u segments, the "
                "segment map %zu", i, seg_at(w, i)->nsegs, sp->count);
    w->r->free_runs++;
    w->r->free_bytes += mmh_span_bytes(sp);
    if (mmh_span_bytes(sp) > w->r->largest_free)
        w->r->largest_free = mmh_span_bytes(sp);
}

/* Where the span walk could not go on.  false: the segment map itself, so
 * nothing after it can be walked. */
static bool check_broken(walk *w, const mmh_span *sp)
{
    uint32_t e = w->segmap[sp->seg];
    uint64_t eo = w->hdr->segmap_off + sp->seg * sizeof(uint32_t);
    if (sp->pg) {
        if (sp->slice == 0)
            check_sliced_head(w, sp->seg);
        else
            problem(w, desc_off(sp->seg, sp->slice), "segment %zu, slice %zu: no span starts "
                    "here (length %zu, back offset %u)", sp->seg, sp->slice, sp->count,
                    sp->pg->slice_offset);
        return true;
    }
    if (MMH_SEGMAP_KIND(e) == MMH_SEGMAP_HUGE || MMH_SEGMAP_KIND(e) == MMH_SEGMAP_FREE)
        problem(w, eo, "segment %zu: a run of %zu segments does not fit the heap's %zu",
                sp->seg, sp->count, w->nsegs);
    else
        problem(w, eo, "segment %zu: segment map entry %#x starts no segment or run", sp->seg, e);
    return false;
}

/* The segment map, and each segment and span by what it says. */
static void check_segments(walk *w, mmh_check_progress_fn progress)
{
    size_t max_segs = (size_t)(w->hdr->max_size >> MMH_SEG_SHIFT);
    if (MMH_SEGMAP_KIND(w->segmap[0]) != MMH_SEGMAP_SLICED || MMH_SEGMAP_LEN(w->segmap[0]))
        problem(w, w->hdr->segmap_off, "segment 0 is not a sliced segment in the segment map");
    mmh_span_iter it;
    mmh_span sp;
    bool prev_free_run = false, prev_free_span = false;
    mmh_span_iter_init(&it, w->base, w->segmap, w->nsegs);
    while (mmh_span_next(&it, &sp)) {
        if (progress && sp.slice == 0)
            progress(w->arg, sp.seg, w->nsegs);
        switch (sp.kind) {
        case MMH_SPAN_SLICED:
            if (sp.slice == 0 ? !check_sliced_head(w, sp.seg)
                              : !check_span(w, &sp, prev_free_span))
                mmh_span_skip_segment(&it);
            prev_free_span = sp.slice && sp.pg->kind == MMH_PAGE_FREE;
            break;
        case MMH_SPAN_HUGE:
            check_run_map(w, &sp);
            check_huge(w, sp.seg, sp.count);
            w->r->meta_bytes += MMH_SLICE_SIZE;
            break;
        case MMH_SPAN_FREE_RUN:
            check_run_map(w, &sp);
            check_free_run(w, &sp, prev_free_run);
            break;
        case MMH_SPAN_BROKEN:
            if (!check_broken(w, &sp))
                return;
            break;
        }
        if (sp.slice == 0)
            prev_free_run = sp.kind == MMH_SPAN_FREE_RUN;
    }
    for (size_t i = w->nsegs; i < max_segs; i++)
        if (w->segmap[i] != MMH_SEGMAP_NONE) {
            problem(w, w->hdr->segmap_off + i * sizeof(uint32_t), "segment %zu lies past the "
                    "heap's end (%zu segments) but the segment map has %#x for it", i, w->nsegs,
                    w->segmap[i]);
            break;
        }
    if (progress)
        progress(w->arg, w->nsegs, w->nsegs);
}

/* ---- free lists ------------------------------------------------------------ */

static void check_span_bins(walk *w)
{
    uint64_t found = 0;
    for (unsigned bin = 0; bin <= MMH_SPAN_BINS; bin++) {
        uint64_t head = w->hdr->span_bins[bin], prev = 0, count = 0;
        uint64_t hoff = offsetof(mmh_hdr, span_bins) + bin * sizeof(uint64_t);
        bool bit = bin < 64 && (w->hdr->span_bitmap >> bin) & 1;
        if (bin < 64 && bit != (head != 0))
            problem(w, offsetof(mmh_hdr, span_bitmap), "span bin %u is %s but its bitmap bit "
                    "is %s", bin, head ? "not empty" : "empty", bit ? "set" : "clear");
        for (uint64_t off = head; off; count++) {
            size_t seg, idx;
            const mmh_page *pg = sliced_desc(w, off, &seg, &idx);
            if (!pg || pg->kind != MMH_PAGE_FREE || pg->slice_count != bin ||
                pg->slice_offset != 0 || idx < seg_at(w, seg)->first_slice) {
                problem(w, prev ? prev : hoff, "span bin %u: entry %#llx is not a free span of "
                        "%u slices", bin, (unsigned long long)off, bin);
                break;
            }
            if (pg->prev != prev) {
                problem(w, off, "span bin %u: free span %#llx links back to %#llx, not %#llx", bin,
                        (unsigned long long)off, (unsigned long long)pg->prev,
                        (unsigned long long)prev);
                break;
            }
            if (count > w->r->free_spans) {
                problem(w, hoff, "span bin %u: longer than the number of free spans", bin);
                break;
            }
            prev = off;
            off = pg->next;
        }
        found += count;
    }
    if (found != w->r->free_spans)
        problem(w, offsetof(mmh_hdr, span_bins), "the span bins hold %llu free spans, the "
                "segments %llu", (unsigned long long)found, (unsigned long long)w->r->free_spans);
}

static void check_free_runs(walk *w)
{
    uint64_t prev = 0, count = 0;
    for (uint64_t off = w->hdr->free_segs; off; count++) {
        size_t i = (size_t)(off >> MMH_SEG_SHIFT);
        if (i >= w->nsegs || off != seg_off(i) ||
            MMH_SEGMAP_KIND(w->segmap[i]) != MMH_SEGMAP_FREE) {
            problem(w, prev ? prev : offsetof(mmh_hdr, free_segs), "free run list: entry %#llx "
                    "is not the head of a free run", (unsigned long long)off);
            break;
        }
        const mmh_segment *s = seg_at(w, i);
        if (s->prev != prev) {
            problem(w, off, "free run list: run at segment %zu links back to %#llx, not %#llx", i,
                    (unsigned long long)s->prev, (unsigned long long)prev);
            break;
        }
        if (count > w->r->free_runs) {
            problem(w, offsetof(mmh_hdr, free_segs), "free run list: longer than the number of "
                    "free runs");
            break;
        }
        prev = off;
        off = s->next;
    }
    if (count != w->r->free_runs)
        problem(w, offsetof(mmh_hdr, free_segs), "the free run list holds %llu runs, the "
                "segment map %llu", (unsigned long long)count,
                (unsigned long long)w->r->free_runs);
}

/* ---- slots -------------------------------------------------------------------- */

/* The small page of slot id (index + 1) and class cls at off, or NULL. */
static const mmh_page *slot_page(walk *w, uint64_t off, uint32_t id, unsigned cls)
{
    size_t seg, idx;
    const mmh_page *pg = sliced_desc(w, off, &seg, &idx);
    if (!pg || pg->kind != MMH_PAGE_SMALL || pg->slice_offset != 0 || pg->slot_id != id ||
        (cls && pg->cls != cls))
        return NULL;
    return pg;
}

static void check_ring(walk *w, uint32_t id, unsigned cls, uint64_t head, uint64_t at,
                       uint64_t *members)
{
    uint64_t off = head, count = 0;
    do {
        const mmh_page *pg = slot_page(w, off, id, cls);
        if (!pg || (pg->flags & MMH_PF_PARKED)) {
            problem(w, at, "slot %u, class %u: ring entry %#llx is %s", id - 1, cls,
                    (unsigned long long)off, pg ? "a parked page" :
                    "not a small page of the slot and class");
            return;
        }
        const mmh_page *next = slot_page(w, pg->next, id, cls);
        if (!next || next->prev != off) {
            problem(w, off, "slot %u, class %u: ring link from %#llx to %#llx is not returned",
                    id - 1, cls, (unsigned long long)off, (unsigned long long)pg->next);
            return;
        }
        if (++count > w->r->small_pages) {
            problem(w, at, "slot %u, class %u: the ring does not close", id - 1, cls);
            return;
        }
        at = off;
        off = pg->next;
    } while (off != head);
    *members += count;
}

/* The heap offset of the slot at index i, in a table check_slot_table
 * found. */
static uint64_t slot_off(const walk *w, uint32_t i)
{
    return mmh_slot_table_off(w->hdr, i / MMH_SLOTS) + (uint64_t)(i % MMH_SLOTS) * sizeof(mmh_slot);
}

/* Slot id's span cache: cached spans of that slot, listed first. */
static void check_span_cache(walk *w, uint32_t id, uint64_t so, const mmh_slot *slot,
                             uint64_t *listed)
{
    bool ended = false;
    for (unsigned k = 0; k < MMH_SLOT_SPANS; k++) {
        uint64_t off = slot->spans[k], at = so + offsetof(mmh_slot, spans) + k * 8;
        size_t seg, idx;
        if (!off) {
            ended = true;
            continue;
        }
        const mmh_page *pg = sliced_desc(w, off, &seg, &idx);
        if (ended || !pg || pg->kind != MMH_PAGE_CACHED || pg->slice_offset != 0 ||
            pg->slot_id != id) {
            problem(w, at, "slot %u: cached span entry %u, %#llx, is %s", id - 1, k,
                    (unsigned long long)off, ended ? "after an empty one" :
                    "not a cached span of the slot");
            return;
        }
        (*listed)++;
    }
}

static void check_slots(walk *w)
{
    uint32_t tables = w->hdr->nslots / MMH_SLOTS;
    if (w->slot_tables != tables - 1) {
        problem(w, offsetof(mmh_hdr, slot_tables), "the header names %u slot tables after the "
                "first, the segments hold %u of them", tables - 1, w->slot_tables);
        return;
    }
    uint64_t members = 0, cached = 0;
    for (uint32_t i = 0; i < w->hdr->slots_hwm; i++) {
        uint64_t so = slot_off(w, i);
        const mmh_slot *slot = (const mmh_slot *)(w->base + so);
        bool used = false;
        check_span_cache(w, i + 1, so, slot, &cached);
        if (slot->pages[0] != MMH_EMPTY_PAGE_OFF)
            problem(w, so + offsetof(mmh_slot, pages), "slot %u has pages of size class 0", i);
        for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
            uint64_t head = slot->pages[cls];
            if (head == MMH_EMPTY_PAGE_OFF)
                continue;
            used = true;
            check_ring(w, i + 1, cls, head, so + offsetof(mmh_slot, pages) + cls * 8, &members);
        }
        uint64_t count = 0, at = so + offsetof(mmh_slot, xpages);
        for (uint64_t off = atomic_load_explicit(&slot->xpages, memory_order_relaxed); off;
             count++) {
            const mmh_page *pg = slot_page(w, off, i + 1, 0);
            if (!pg || count > w->r->small_pages ||
                !(atomic_load_explicit(&pg->xfree, memory_order_relaxed) & MMH_XF_NOTIFIED)) {
                problem(w, at, "slot %u: queued page %#llx is not a notified page of the slot",
                        i, (unsigned long long)off);
                break;
            }
            at = off;
            off = pg->xnext;
        }
        w->r->slots_used += used;
    }
    if (members != w->ring_pages)
        problem(w, w->hdr->slots_off, "the slots' class rings hold %llu pages, the segments "
                "have %llu small pages that are not parked", (unsigned long long)members,
                (unsigned long long)w->ring_pages);
    if (cached != w->cached_spans)
        problem(w, w->hdr->slots_off, "the slots' span caches list %llu spans, the segments "
                "have %llu cached spans", (unsigned long long)cached,
                (unsigned long long)w->cached_spans);
}

/* ---- the header's own fields ----------------------------------------------- */

/* The block that holds off, by the descriptors of its segment: its span's
 * descriptor, and its start and size; NULL when off is in no block. */
static const mmh_page *block_of(const walk *w, uint64_t off, uint64_t *start, uint64_t *size)
{
    size_t i = (size_t)(off >> MMH_SEG_SHIFT);
    if (off < MMH_SLICE_SIZE || i >= w->nsegs)
        return NULL;
    uint32_t e = w->segmap[i];
    if (MMH_SEGMAP_KIND(e) == MMH_SEGMAP_HUGE_IN && MMH_SEGMAP_LEN(e) <= i) {
        i -= MMH_SEGMAP_LEN(e);
        e = w->segmap[i];
    }
    if (MMH_SEGMAP_KIND(e) == MMH_SEGMAP_HUGE) {
        const mmh_page *pg = &seg_at(w, i)->pages[1];
        uint64_t end = (uint64_t)(i + MMH_SEGMAP_LEN(e)) << MMH_SEG_SHIFT;
        if (off < pg->free || pg->free >= end)
            return NULL;
        *start = pg->free;
        *size = end - pg->free;
        return pg;
    }
    if (MMH_SEGMAP_KIND(e) != MMH_SEGMAP_SLICED)
        return NULL;
    const mmh_segment *s = seg_at(w, i);
    size_t slice = (size_t)((off & MMH_SEG_MASK) >> MMH_SLICE_SHIFT), idx = s->first_slice;
    while (idx < MMH_SEG_SLICES && s->pages[idx].slice_count &&
           idx + s->pages[idx].slice_count <= slice)
        idx += s->pages[idx].slice_count;
    if (idx >= MMH_SEG_SLICES || idx > slice)
        return NULL;
    const mmh_page *pg = &s->pages[idx];
    uint64_t span = (uint64_t)(mmh_page_start(pg) - w->base);
    uint64_t span_end = span + ((uint64_t)pg->slice_count << MMH_SLICE_SHIFT);
    if (pg->kind == MMH_PAGE_LARGE) {
        if (off < pg->free || pg->free >= span_end)
            return NULL;
        *start = pg->free;
        *size = span_end - pg->free;
        return pg;
    }
    if (pg->kind != MMH_PAGE_SMALL || !pg->block_size)
        return NULL;
    uint64_t b = (off - span) / pg->block_size;
    if (b >= pg->capacity)
        return NULL;
    *start = span + b * pg->block_size;
    *size = pg->block_size;
    return pg;
}

/* Is off inside a live block?  A small block must be on no free list. */
static bool in_live_block(const walk *w, uint64_t off)
{
    uint64_t block, size;
    const mmh_page *pg = block_of(w, off, &block, &size);
    if (!pg || pg->kind != MMH_PAGE_SMALL)
        return pg != NULL;
    /* Its counts may be damaged (the root is checked after the walk that
     * reported them): the list walk stays in the page's segment. */
    uint64_t lists[2] = {
        pg->free, atomic_load_explicit(&pg->xfree, memory_order_relaxed) & ~(uint64_t)MMH_XF_FLAGS
    };
    for (int k = 0; k < 2; k++) {
        mmh_list_iter l;
        uint64_t f;
        mmh_list_iter_init(&l, w->live, w->base, pg, lists[k], NULL);
        while (mmh_list_next(&l, &f) == MMH_LIST_BLOCK)
            if (f == block)
                return false;
    }
    return true;
}

/* Does a block of at least len bytes start at off?  Not whether it is on
 * a free list: for a million names that would be a million list walks. */
static bool block_starts(const walk *w, uint64_t off, uint64_t len)
{
    uint64_t block, size;
    return block_of(w, off, &block, &size) && block == off && size >= len;
}

/* ---- the names table ------------------------------------------------------- */

/* One name's record, at the slot at index i of table t (at t_off). */
static void check_name(walk *w, const mmh_names *t, uint64_t t_off, uint64_t i)
{
    uint64_t s = t->slot[i], off = s & MMH_NAME_OFF_MASK, so = t_off + sizeof *t + i * 8;
    if (off % 8 || !block_starts(w, off, offsetof(mmh_name_rec, name) + 1)) {
        problem(w, so, "names table: slot %llu: record %#llx is not a block",
                (unsigned long long)i, (unsigned long long)off);
        return;
    }
    const mmh_name_rec *r = (const mmh_name_rec *)(w->base + off);
    if (!block_starts(w, off, offsetof(mmh_name_rec, name) + r->len + 1u) || r->name[r->len] ||
        strlen(r->name) != r->len) {
        problem(w, off, "names table: record %#llx: its name's length %u does not match it",
                (unsigned long long)off, r->len);
        return;
    }
    uint64_t hash = mmh_hash64(r->name, r->len, t->seed), mask = t->cap - 1;
    if (mmh_name_slot(off, hash) != s)
        problem(w, so, "names table: slot %llu: the hash bits do not match the name \"%s\"",
                (unsigned long long)i, r->name);
    for (uint64_t j = hash & mask; j != i; j = (j + 1) & mask)
        if (!t->slot[j]) {
            problem(w, so, "names table: \"%s\" at slot %llu is past an empty slot (%llu): "
                    "lookups miss it", r->name, (unsigned long long)i, (unsigned long long)j);
            break;
        }
    if (!block_starts(w, r->value, 1))
        problem(w, off, "names table: \"%s\" names %#llx, which starts no block", r->name,
                (unsigned long long)r->value);
}

/* The table's header always (the library trusts it at every lookup); its
 * slots and records in a full check. */
static void check_names(walk *w)
{
    uint64_t t_off = w->hdr->names, extent = w->nsegs << MMH_SEG_SHIFT;
    if (!t_off)
        return;
    const mmh_names *t = (const mmh_names *)(w->base + t_off);
    if (!block_starts(w, t_off, sizeof *t) || t->magic != MMH_NAMES_MAGIC) {
        problem(w, offsetof(mmh_hdr, names), "the names table %#llx is not a block, or has a "
                "bad magic", (unsigned long long)t_off);
        return;
    }
    if (t->cap < MMH_NAMES_MIN_CAP || (t->cap & (t->cap - 1)) || t->cap > extent / 8 ||
        !block_starts(w, t_off, sizeof *t + t->cap * 8) || t->used >= t->cap ||
        t->count > t->used) {
        problem(w, t_off, "names table: %llu slots, %llu used, %llu names: impossible in a "
                "block this size", (unsigned long long)t->cap, (unsigned long long)t->used,
                (unsigned long long)t->count);
        return;
    }
    if (!w->full)
        return;
    uint64_t names = 0, used = 0;
    for (uint64_t i = 0; i < t->cap; i++) {
        used += t->slot[i] != 0;
        if (t->slot[i] > MMH_NAME_GONE) {
            names++;
            check_name(w, t, t_off, i);
        }
    }
    if (names != t->count || used != t->used)
        problem(w, t_off, "names table: counts say %llu names in %llu used slots, the slots "
                "hold %llu in %llu", (unsigned long long)t->count, (unsigned long long)t->used,
                (unsigned long long)names, (unsigned long long)used);
    w->r->names = names;
}

static void check_header(walk *w)
{
    const mmh_hdr *hdr = w->hdr;
    static const mmh_page zero_page;
    if (memcmp(&hdr->empty_page, &zero_page, sizeof zero_page) != 0)
        problem(w, MMH_EMPTY_PAGE_OFF, "the empty page every slot starts from is not empty");
    if (!w->full)
        return;
    if (hdr->root && !in_live_block(w, hdr->root))
        problem(w, offsetof(mmh_hdr, root), "the root %#llx is not inside a live block",
                (unsigned long long)hdr->root);
}

/* A walk over the heap mapped at base (segment-aligned) whose header
 * passed mmh_format_check. */
static walk walk_of(const char *base, mmh_check_result *r)
{
    const mmh_hdr *hdr = (const mmh_hdr *)base;
    return (walk){
        .base = base, .hdr = hdr, .r = r,
        .segmap = (const uint32_t *)(base + hdr->segmap_off),
        .nsegs = (size_t)(hdr->extent >> MMH_SEG_SHIFT),
    };
}

static int check_heap(const char *base, const mmh_heap *live, bool full, mmh_check_result *r,
                      mmh_check_report_fn report, mmh_check_progress_fn progress, void *arg)
{
    memset(r, 0, sizeof *r);
    walk w = walk_of(base, r);
    w.live = live;
    w.full = full;
    w.report = report;
    w.arg = arg;
    r->segments = w.nsegs;
    check_segments(&w, progress);
    check_span_bins(&w);
    check_free_runs(&w);
    check_slots(&w);
    check_header(&w);
    check_names(&w);
    return r->problems ? 1 : 0;
}

void mmh_check_names_each(const mmh_fileview *fv, mmh_check_name_fn fn, void *arg)
{
    mmh_check_result r;
    walk w = walk_of(fv->base, &r);
    if (!w.hdr->names)
        return;
    const mmh_names *t = (const mmh_names *)(w.base + w.hdr->names);
    for (uint64_t i = 0; i < t->cap; i++) {
        if (t->slot[i] <= MMH_NAME_GONE)
            continue;
        const mmh_name_rec *rec = (const mmh_name_rec *)(w.base + (t->slot[i] & MMH_NAME_OFF_MASK));
        uint64_t block, size;
        fn(arg, rec->name, rec->value, block_of(&w, rec->value, &block, &size) ? size : 0);
    }
}

int mmh_check_fileview(const mmh_fileview *fv, mmh_check_result *r, mmh_check_report_fn report,
                    mmh_check_progress_fn progress, void *arg)
{
    return check_heap(fv->base, NULL, true, r, report, progress, arg);
}

typedef struct first_problem {
    uint64_t off;
    char     msg[256];
} first_problem;

static void keep_first(void *arg, uint64_t off, const char *msg)
{
    first_problem *fp = arg;
    if (fp->msg[0])
        return;
    fp->off = off;
    snprintf(fp->msg, sizeof fp->msg, "%s", msg);
}

/* The walk over the mapping of h; -1 with EBADMSG and the first problem
 * found if it fails.  live: its blocks are known to the memory checkers
 * (instrument.h), whose poisoning the list walks must pass through; not
 * yet at open, where the checkers' hooks must not be touched. */
static int check_open(const mmh_heap *h, bool live, bool full, const char *what)
{
    mmh_check_result r;
    first_problem fp = { 0 };
    if (check_heap(h->base, live ? h : NULL, full, &r, keep_first, NULL, &fp) == 0)
        return 0;
    return mmh_fail(EBADMSG, "%s: %s: %s (at offset %llu; mmheap check reports every problem)",
                    h->path, what, fp.msg, (unsigned long long)fp.off);
}

int mmh_verify(const mmh_heap *h)
{
    return check_open(h, false, false, "corrupt heap file");
}

int mmh_check(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_check: heap is NULL");
    mmh_lock(h);
    int rc = check_open(h, true, true, "damaged heap");
    mmh_unlock(h);
    return rc;
}
