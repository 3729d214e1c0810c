/* A slot's cache of free spans.  A thread that frees a large block or gives
 * an empty page back keeps the span in its slot, and its next large block
 * or page of the same length takes it back: the common large allocation
 * and free, and the churn of pages, take no lock and touch nothing shared.
 *
 * A cached span stays part of the heap's state: its descriptor says
 * MMH_PAGE_CACHED with the slot's id, and the slot lists it, so a quiescent
 * point finds it and the checker verifies it.  A slot keeps at most
 * MMH_SLOT_SPANS spans, none longer than CACHE_SLICES_MAX, none for longer
 * than CACHE_AGE_MS; a span that does not fit pushes the oldest out to the
 * span bins, under the heap lock.  A thread that lets its slot go, and a
 * heap opened again, give every cached span back (mmh_span_cache_flush).
 */
#include "internal.h"

#include <string.h>

/* Spans longer than this (1 MiB) go straight back to the bins: a cache of
 * a few such spans per thread is the most memory worth holding back. */
#define CACHE_SLICES_MAX 16u

/* A span cached this long ago goes back to the bins at the slot's next put,
 * so that the heap's purge can hand its memory back. */
#define CACHE_AGE_MS 1000u

/* The number of spans slot lists (they come first). */
static unsigned cache_len(const mmh_slot *slot)
{
    unsigned n = 0;
    while (n < MMH_SLOT_SPANS && slot->spans[n])
        n++;
    return n;
}

/* Remove k entries from i on, of the n listed; the later ones move up. */
static void cache_remove(mmh_slot *slot, unsigned i, unsigned k, unsigned n)
{
    for (; i < n; i++)
        slot->spans[i] = i + k < n ? slot->spans[i + k] : 0;
}

/* Back to the span bins; h->lock held. */
static void uncache(mmh_heap *h, mmh_page *pg)
{
    mmh_assert(pg->kind == MMH_PAGE_CACHED);
    pg->kind = MMH_PAGE_LARGE;
    pg->slot_id = 0;
    mmh_span_free(h, pg, 0);
}

mmh_page *mmh_span_cache_take(mmh_heap *h, mmh_slot *slot, size_t slices, size_t most)
{
    for (unsigned i = 0; i < MMH_SLOT_SPANS && slot->spans[i]; i++) {
        mmh_page *pg = mmh_page_at(h, slot->spans[i]);
        uint16_t n = pg->slice_count;
        mmh_assert(pg->kind == MMH_PAGE_CACHED);
        if (n >= slices && n <= most) {
            cache_remove(slot, i, 1, cache_len(slot));
            pg->kind = MMH_PAGE_LARGE;
            pg->slot_id = 0;
            pg->freed_ms = 0;
            return pg;
        }
    }
    return NULL;
}

void mmh_span_cache_put(mmh_heap *h, mmh_slot *slot, uint32_t slot_id, mmh_page *pg)
{
    mmh_assert(pg->kind != MMH_PAGE_FREE && pg->kind != MMH_PAGE_HUGE && pg->slice_offset == 0);
    if (pg->slice_count > CACHE_SLICES_MAX) {
        mmh_lock(h);
        mmh_span_free(h, pg, 0);
        mmh_unlock(h);
        return;
    }
    uint32_t now = mmh_clock_ms();
    unsigned n = cache_len(slot), old = 0;
    while (old < n && now - mmh_page_at(h, slot->spans[old])->freed_ms >= CACHE_AGE_MS)
        old++;
    if (old == 0 && n == MMH_SLOT_SPANS)
        old = 1;
    if (old) { /* the oldest go, in one visit to the lock */
        mmh_lock(h);
        for (unsigned i = 0; i < old; i++)
            uncache(h, mmh_page_at(h, slot->spans[i]));
        mmh_unlock(h);
        cache_remove(slot, 0, old, n);
        n -= old;
    }
    /* Cleared as mmh_span_alloc would: a stale pointer into the span
     * (a double free) must find no block here. */
    uint16_t slices = pg->slice_count;
    memset(pg, 0, sizeof *pg);
    pg->slice_count = slices;
    pg->kind = MMH_PAGE_CACHED;
    pg->slot_id = slot_id;
    pg->freed_ms = now;
    slot->spans[n] = mmh_off(h, pg);
    /* Frees that stay in the cache never reach the lock, where free
     * memory is handed back: a thread that churns large blocks or pages
     * checks for it here. */
    if (mmh_purge_due(h)) {
        mmh_lock(h);
        mmh_purge_maybe(h);
        mmh_unlock(h);
    }
}

void mmh_span_cache_flush(mmh_heap *h, mmh_slot *slot)
{
    mmh_assert_locked(h);
    for (unsigned i = 0; i < MMH_SLOT_SPANS && slot->spans[i]; i++) {
        uncache(h, mmh_page_at(h, slot->spans[i]));
        slot->spans[i] = 0;
    }
}
