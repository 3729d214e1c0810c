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
    h->used_bytes = h->used_peak = h->mapped - free_span_bytes(h) - meta;
}

int mmh_stats(mmh_heap *h, struct mmh_stats *out)
{
    if (!h || !out)
        return mmh_fail(EINVAL, "mmh_stats: %s is NULL", h ? "out" : "heap");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&h->lock);
    const mmh_hdr *hdr = h->hdr;
    uint64_t allocs = hdr->large_allocs, frees = hdr->large_frees;
    uint64_t abytes = hdr->large_alloc_bytes, fbytes = hdr->large_free_bytes;
    for (uint32_t i = 0; i < hdr->slots_hwm; i++) {
        const mmh_slot *s = &h->slots[i];
        allocs += atomic_load_explicit(&s->allocs, memory_order_relaxed);
        frees += atomic_load_explicit(&s->frees, memory_order_relaxed);
        abytes += atomic_load_explicit(&s->alloc_bytes, memory_order_relaxed);
        fbytes += atomic_load_explicit(&s->free_bytes, memory_order_relaxed);
    }
    out->base = (uint64_t)(uintptr_t)h->base;
    out->size = h->mapped;
    out->max_size = h->max_size;
    out->allocations = allocs - frees;
    out->allocated = abytes - fbytes;
    out->free_bytes = free_span_bytes(h);
    out->used_bytes = h->used_bytes;
    out->used_peak = h->used_peak;
    out->purged_bytes = h->purged_bytes;
    out->commits = h->commits;
    out->bytes_written = h->bytes_written;
    out->last_commit_ns = h->last_commit_ns;
    out->last_commit_time = h->last_commit_time;
    out->faults = atomic_load_explicit(&h->faults, memory_order_relaxed);
    out->cow_pages = h->cow_pages;
    out->last_fork_ns = h->last_fork_ns;
    out->last_job_ns = h->last_job_ns;
    out->last_job_bytes = h->last_job_bytes;
    out->jobs = h->jobs;
    out->jobs_failed = h->jobs_failed;
    out->job_running = h->job != NULL;
    out->tracker = h->tracker;
    out->flags = h->flags;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static void class_pages_add(mmh_heap *h, uint64_t off, mmh_class_stats *cs, size_t limit)
{
    for (size_t n = 0; off && off != MMH_EMPTY_PAGE_OFF && n < limit; n++) {
        const mmh_page *pg = mmh_page_at(h, off);
        mmh_class_stats *c = &cs[pg->cls < MMH_CLASSES ? pg->cls : 0];
        c->pages++;
        c->blocks += pg->used;
        c->capacity += pg->reserved;
        off = pg->next;
    }
}

/* Pages of each size class, and their blocks in use as their owners know
 * it (frees from other threads not yet collected still count).  The walk
 * is bounded: other threads may be changing their lists meanwhile. */
void mmh_stats_classes(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES])
{
    memset(cs, 0, MMH_CLASSES * sizeof *cs);
    size_t limit = h->mapped >> MMH_SLICE_SHIFT;
    pthread_mutex_lock(&h->lock);
    for (uint32_t i = 0; i < h->hdr->slots_hwm; i++) {
        const mmh_slot *s = &h->slots[i];
        for (unsigned c = 1; c < MMH_CLASSES; c++)
            class_pages_add(h, s->pages[c], cs, limit);
        class_pages_add(h, s->full, cs, limit);
    }
    pthread_mutex_unlock(&h->lock);
}
