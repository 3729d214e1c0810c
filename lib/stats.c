/* mmh_stats: sizes and counters, summed over the slots and the free lists. */
#include "walk.h"

#include <errno.h>
#include <string.h>

/* Blocks other threads freed into pg that its owner has not collected.
 * The owner may be collecting them meanwhile: the walk stays inside the
 * page and stops at anything that is not a block of it. */
static uint32_t remote_pending(const mmh_heap *h, const mmh_page *pg)
{
    uint64_t first = atomic_load_explicit(&pg->xfree, memory_order_acquire) &
                     ~(uint64_t)MMH_XF_FLAGS, off;
    mmh_list_iter l;
    uint32_t n = 0;
    mmh_list_iter_init(&l, h, h->base, pg, first, NULL);
    while (mmh_list_next(&l, &off) == MMH_LIST_BLOCK)
        n++;
    return n;
}

/* What the spans hold: the small pages by class, the large and huge
 * blocks, the bytes of free spans and runs (a free run's first slice too:
 * it is free memory that holds the run's links), and the bytes given to
 * pages, blocks and slots' span caches. */
typedef struct census {
    mmh_class_stats classes[MMH_CLASSES];
    uint64_t        large_blocks, large_bytes; /* usable sizes */
    uint64_t        free_bytes, used_bytes;
} census;

/* One walk of the spans, with h->lock held (or h not yet shared).  Owners
 * change their pages meanwhile; the walk only reads. */
static void take_census(const mmh_heap *h, census *c)
{
    mmh_span_iter it;
    mmh_span sp;
    memset(c, 0, sizeof *c);
    mmh_span_iter_init(&it, h->base, h->segmap, h->mapped >> MMH_SEG_SHIFT);
    while (mmh_span_next(&it, &sp)) {
        mmh_assert(sp.kind != MMH_SPAN_BROKEN);
        if (sp.kind == MMH_SPAN_FREE_RUN || (sp.kind == MMH_SPAN_SLICED &&
                                             sp.pg->kind == MMH_PAGE_FREE)) {
            c->free_bytes += mmh_span_bytes(&sp);
        } else if (sp.kind == MMH_SPAN_HUGE || (sp.kind == MMH_SPAN_SLICED &&
                                                sp.pg->kind != MMH_PAGE_META)) {
            c->used_bytes += mmh_span_bytes(&sp);
        }
        if (sp.kind == MMH_SPAN_HUGE) { /* the block starts inside its first segment */
            c->large_blocks++;
            c->large_bytes += mmh_span_start(&sp) + mmh_span_bytes(&sp) - sp.pg->free;
        } else if (sp.kind == MMH_SPAN_SLICED && sp.pg->kind == MMH_PAGE_LARGE) {
            c->large_blocks++; /* it starts the span (pg->free may be being set) */
            c->large_bytes += mmh_span_bytes(&sp);
        }
        if (sp.kind == MMH_SPAN_SLICED && sp.pg->kind == MMH_PAGE_SMALL) {
            mmh_class_stats *cs = &c->classes[sp.pg->cls < MMH_CLASSES ? sp.pg->cls : 0];
            uint32_t pending = remote_pending(h, sp.pg);
            cs->pages++;
            cs->blocks += sp.pg->used > pending ? sp.pg->used - pending : 0;
            cs->capacity += sp.pg->reserved;
        }
    }
}

/* The bytes a heap opened again already has in pages and large blocks. */
void mmh_stats_init(mmh_heap *h)
{
    census c;
    take_census(h, &c);
    h->space.used_bytes = h->space.used_peak = c.used_bytes;
}

void mmh_stats_classes(mmh_heap *h, mmh_class_stats cs[MMH_CLASSES])
{
    census c;
    mmh_lock(h);
    take_census(h, &c);
    mmh_unlock(h);
    memcpy(cs, c.classes, sizeof c.classes);
}

/* Live blocks are counted from the pages, not by the fast paths: a page
 * knows how many blocks it handed out. */
int mmh_stats(mmh_heap *h, struct mmh_stats *out)
{
    census c;
    if (!h || !out)
        return mmh_fail(EINVAL, "mmh_stats: %s is NULL", h ? "out" : "heap");
    memset(out, 0, sizeof *out);
    mmh_lock(h);
    const mmh_hdr *hdr = h->hdr;
    take_census(h, &c);
    out->allocations = c.large_blocks;
    out->allocated = c.large_bytes;
    for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
        out->allocations += c.classes[cls].blocks;
        out->allocated += c.classes[cls].blocks * mmh_class_size(cls);
    }
    out->base = (uint64_t)(uintptr_t)h->base;
    out->size = h->mapped;
    out->max_size = h->max_size;
    out->free_bytes = c.free_bytes;
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
    out->slots = hdr->nslots;
    out->threads_bound = atomic_load(&h->threads.bound);
    mmh_unlock(h);
    return 0;
}
