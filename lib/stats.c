/* mmh_stats: sizes and counters, summed over the slots and the free lists. */
#include "internal.h"

#include <errno.h>
#include <string.h>

static uint64_t free_span_bytes(const mmh_heap *h)
{
    const mmh_hdr *hdr = h->hdr;
    uint64_t total = 0;
    for (uint64_t bits = hdr->span_bitmap; bits; bits &= bits - 1) {
        unsigned bin = (unsigned)__builtin_ctzll(bits);
        for (uint64_t off = hdr->span_bins[bin]; off;
             off = ((const mmh_page *)mmh_ptr(h, off))->next)
            total += (uint64_t)bin << MMH_SLICE_SHIFT;
    }
    for (uint64_t off = hdr->free_segs; off; off = ((const mmh_segment *)mmh_ptr(h, off))->next)
        total += (uint64_t)((const mmh_segment *)mmh_ptr(h, off))->nsegs << MMH_SEG_SHIFT;
    return total;
}

/* The bytes a heap opened again already has in pages and large blocks:
 * neither free nor slice 0 of a sliced segment (metadata). */
void mmh_stats_init(mmh_heap *h)
{
    size_t meta = (size_t)(h->hdr->first_slice - 1) << MMH_SLICE_SHIFT;
    for (size_t i = 0; i < (h->mapped >> MMH_SEG_SHIFT); i++)
        if (MMH_SEGMAP_KIND(h->segmap[i]) == MMH_SEGMAP_SLICED)
            meta += MMH_SLICE_SIZE;
    h->space.used_bytes = h->space.used_peak = h->mapped - free_span_bytes(h) - meta;
}

/* Blocks other threads freed into pg that its owner has not collected.
 * The owner may be collecting them meanwhile: the walk stays inside the
 * page and stops at anything that is not a block of it. */
static uint32_t remote_pending(const mmh_heap *h, const mmh_page *pg)
{
    uint64_t first = mmh_off(h, mmh_page_start(pg));
    uint64_t off = atomic_load_explicit(&pg->xfree, memory_order_acquire) & ~(uint64_t)MMH_XF_FLAGS;
    uint32_t n = 0;
    while (off && n < pg->capacity) {
        uint64_t in = off - first;
        if (in >= (uint64_t)pg->capacity * pg->block_size || in % pg->block_size)
            break;
        n++;
        off = mmh_link_get(h, mmh_ptr(h, off));
    }
    return n;
}

static void class_page_add(const mmh_heap *h, const mmh_page *pg, mmh_class_stats *cs)
{
    mmh_class_stats *c = &cs[pg->cls < MMH_CLASSES ? pg->cls : 0];
    uint32_t pending = remote_pending(h, pg);
    c->pages++;
    c->blocks += pg->used > pending ? pg->used - pending : 0;
    c->capacity += pg->reserved;
}

/* Every small page, found through the segments: parked pages are on no
 * list.  Owners change their pages meanwhile; the walk only reads. */
static void classes_locked(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES])
{
    memset(cs, 0, MMH_CLASSES * sizeof *cs);
    for (size_t i = 0; i < (h->mapped >> MMH_SEG_SHIFT); i++) {
        if (MMH_SEGMAP_KIND(h->segmap[i]) != MMH_SEGMAP_SLICED)
            continue;
        const mmh_segment *s = mmh_seg_at(h, i);
        for (size_t idx = s->first_slice; idx < MMH_SEG_SLICES;) {
            const mmh_page *pg = &s->pages[idx];
            if (pg->kind == MMH_PAGE_SMALL)
                class_page_add(h, pg, cs);
            idx += pg->slice_count ? pg->slice_count : 1;
        }
    }
}

void mmh_stats_classes(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES])
{
    mmh_lock(h);
    classes_locked(h, cs);
    mmh_unlock(h);
}

/* Live blocks are counted from the pages, not by the fast paths: a page
 * knows how many blocks it handed out. */
int mmh_stats(mmh_heap *h, struct mmh_stats *out)
{
    mmh_class_stats cs[MMH_CLASSES];
    if (!h || !out)
        return mmh_fail(EINVAL, "mmh_stats: %s is NULL", h ? "out" : "heap");
    memset(out, 0, sizeof *out);
    mmh_lock(h);
    const mmh_hdr *hdr = h->hdr;
    classes_locked(h, cs);
    out->allocations = hdr->large_allocs - hdr->large_frees;
    out->allocated = hdr->large_alloc_bytes - hdr->large_free_bytes;
    for (unsigned c = 1; c < MMH_CLASSES; c++) {
        out->allocations += cs[c].blocks;
        out->allocated += cs[c].blocks * mmh_class_size(c);
    }
    out->base = (uint64_t)(uintptr_t)h->base;
    out->size = h->mapped;
    out->max_size = h->max_size;
    out->free_bytes = free_span_bytes(h);
    out->used_bytes = h->space.used_bytes;
    out->used_peak = h->space.used_peak;
    out->purged_bytes = h->space.purged_bytes;
    out->commits = h->persist.commits;
    out->bytes_written = h->persist.bytes_written;
    out->last_commit_ns = h->persist.last_commit_ns;
    out->last_commit_time = h->persist.last_commit_time;
    out->faults = atomic_load_explicit(&h->track.faults, memory_order_relaxed);
    out->cow_pages = h->job.cow_pages;
    out->last_fork_ns = h->job.last_fork_ns;
    out->last_job_ns = h->job.last_ns;
    out->last_job_bytes = h->job.last_bytes;
    out->jobs = h->job.count;
    out->jobs_failed = h->job.failed;
    out->job_running = h->job.running != NULL;
    out->tracker = h->track.kind;
    out->flags = h->flags;
    mmh_unlock(h);
    return 0;
}
