/* Small pages: the slow paths around the fast alloc/free in internal.h.
 *
 * A page belongs to one slot.  Its owner pops and pushes its free list
 * without synchronisation; other threads push freed blocks onto the atomic
 * xfree list, which the owner collects when its free list runs dry.  A page
 * with nothing left is parked: taken off its class's ring, out of the way of
 * the allocation path, and on no list at all (keeping a list of them would
 * cost cache misses on its neighbours at every park and unpark; mmh_stats
 * finds pages by walking the segments).  The owner's first free into a
 * parked page puts it back, last in the ring; the first remote free queues
 * it on the slot's xpages stack so the owner takes it back (the
 * NOTIFY/NOTIFIED bits in xfree make that happen exactly once).  A page whose
 * blocks are all free goes back to the span allocator.
 */
#include "internal.h"

#include <errno.h>

/* Bytes of blocks threaded onto the free list at a time: pages are touched
 * as they are used, not when they are created. */
#define EXTEND_BYTES 4096u

/* mmh_class_recip: ceil(2^32 / size) of each class (mmh_class_size, as a
 * constant expression). */
#define CLASS_SIZE(c) ((c) <= 8 ? (c) * 16ull : \
    (1ull << (7 + ((c) - 9) / 4)) + (((c) - 9) % 4 + 1) * (1ull << (5 + ((c) - 9) / 4)))
#define RECIP(c)  (uint32_t)((((uint64_t)1 << 32) + CLASS_SIZE(c) - 1) / CLASS_SIZE(c))
#define RECIP8(c) RECIP(c), RECIP(c + 1), RECIP(c + 2), RECIP(c + 3), \
                  RECIP(c + 4), RECIP(c + 5), RECIP(c + 6), RECIP(c + 7)

const uint32_t mmh_class_recip[256] = {
    0, RECIP8(1), RECIP8(9), RECIP8(17), RECIP8(25), RECIP8(33), RECIP8(41),
};
_Static_assert(CLASS_SIZE(MMH_CLASSES - 1) == MMH_SMALL_MAX, "the table covers the classes");

/* ---- the slot's class rings ---------------------------------------------
 * The pages of a class that are not parked form a ring (next/prev); the
 * slot's pages[cls] is the current page, the one the fast path allocates
 * from, and its prev is the last.  A page that comes back from being
 * parked goes last: by its turn it has gathered the most frees (first in,
 * first out; put up front, it would be used up and parked again at once). */

static uint64_t *class_head(mmh_slot *slot, const mmh_page *pg)
{
    mmh_assert(pg->kind == MMH_PAGE_SMALL && pg->cls >= 1 && pg->cls < MMH_CLASSES);
    return &slot->pages[pg->cls];
}

static void class_unlink(mmh_heap *h, mmh_slot *slot, mmh_page *pg)
{
    uint64_t *head = class_head(slot, pg), off = mmh_off(h, pg);
    mmh_assert(!(pg->flags & MMH_PF_PARKED) && mmh_slot_at(h, pg->slot_id) == slot);
    mmh_assert(mmh_page_at(h, pg->prev)->next == off && mmh_page_at(h, pg->next)->prev == off);
    if (pg->next == off) {
        *head = MMH_EMPTY_PAGE_OFF;
    } else {
        mmh_page_at(h, pg->prev)->next = pg->next;
        mmh_page_at(h, pg->next)->prev = pg->prev;
        if (*head == off)
            *head = pg->next;
    }
    pg->next = pg->prev = 0;
}

static void class_push_last(mmh_heap *h, mmh_slot *slot, mmh_page *pg)
{
    uint64_t *head = class_head(slot, pg), off = mmh_off(h, pg);
    mmh_assert(!(pg->flags & MMH_PF_PARKED) && mmh_slot_at(h, pg->slot_id) == slot);
    if (*head == MMH_EMPTY_PAGE_OFF) {
        pg->next = pg->prev = off;
        *head = off;
        return;
    }
    mmh_page *first = mmh_page_at(h, *head);
    pg->next = *head;
    pg->prev = first->prev;
    mmh_page_at(h, first->prev)->next = off;
    first->prev = off;
}

/* ---- parking full pages ------------------------------------------------ */

/* Park pg as full unless remote frees are already waiting in it. */
static bool park(mmh_heap *h, mmh_slot *slot, mmh_page *pg)
{
    uint64_t x = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    do {
        if (x & ~(uint64_t)MMH_XF_FLAGS)
            return false;
    } while (!atomic_compare_exchange_weak(&pg->xfree, &x, x | MMH_XF_NOTIFY));
    class_unlink(h, slot, pg);
    pg->flags |= MMH_PF_PARKED;
    return true;
}

/* The NOTIFY bit in xfree stays set: clearing it would cost an atomic
 * operation on every unpark; drain_notified and retire clear it lazily. */
static void unpark(mmh_heap *h, mmh_slot *slot, mmh_page *pg)
{
    pg->flags &= (uint8_t)~MMH_PF_PARKED;
    class_push_last(h, slot, pg);
}

/* Take back the parked pages that remote frees queued on this slot. */
static void drain_notified(mmh_heap *h, mmh_slot *slot)
{
    if (!atomic_load_explicit(&slot->xpages, memory_order_relaxed))
        return;
    uint64_t off = atomic_exchange(&slot->xpages, 0);
    while (off) {
        mmh_page *pg = mmh_page_at(h, off);
        off = pg->xnext;
        if (pg->flags & MMH_PF_PARKED) {
            atomic_fetch_and(&pg->xfree, ~(uint64_t)MMH_XF_NOTIFIED);
            unpark(h, slot, pg);
        } else { /* unparked meanwhile: its NOTIFY bit is stale */
            atomic_fetch_and(&pg->xfree, ~(uint64_t)(MMH_XF_NOTIFIED | MMH_XF_NOTIFY));
        }
    }
}

/* ---- free lists --------------------------------------------------------- */

static void push_remote(mmh_heap *h, mmh_page *pg, void *p);

/* Move the blocks other threads freed onto the owner's free list. */
static void collect(mmh_heap *h, mmh_page *pg)
{
    uint64_t x = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    do {
        if (!(x & ~(uint64_t)MMH_XF_FLAGS))
            return;
    } while (!atomic_compare_exchange_weak(&pg->xfree, &x, x & MMH_XF_FLAGS));
    uint64_t first = x & ~(uint64_t)MMH_XF_FLAGS, last = first;
    uint32_t n = 1;
    for (uint64_t next; (next = mmh_link_get(h, mmh_ptr(h, last))) != 0; last = next)
        n++;
    mmh_assert(n <= pg->used);
    mmh_link_set(h, mmh_ptr(h, last), pg->free);
    pg->free = first;
    pg->used -= n;
}

/* Thread more of the page's untouched blocks onto its free list. */
static void extend(mmh_heap *h, mmh_page *pg)
{
    uint32_t n = EXTEND_BYTES / pg->block_size;
    mmh_assert(!pg->free && pg->capacity < pg->reserved);
    if (n == 0)
        n = 1;
    if (n > pg->reserved - pg->capacity)
        n = pg->reserved - pg->capacity;
    char *start = mmh_page_start(pg) + (size_t)pg->capacity * pg->block_size;
    uint64_t off = mmh_off(h, start);
    for (uint32_t i = 0; i + 1 < n; i++, off += pg->block_size)
        mmh_link_set(h, mmh_ptr(h, off), off + pg->block_size);
    mmh_link_set(h, mmh_ptr(h, off), pg->free);
    pg->free = mmh_off(h, start);
    pg->capacity += n;
}

static mmh_page *page_new(mmh_heap *h, mmh_slot *slot, uint32_t slot_id, unsigned cls)
{
    size_t bsize = mmh_class_size(cls);
    size_t slices = bsize <= MMH_SMALL_PAGE_MAX ? 1 : MMH_MEDIUM_SLICES;
    mmh_page *pg = mmh_span_cache_take(h, slot, slices, slices);
    if (!pg) {
        mmh_lock(h);
        pg = mmh_span_alloc(h, slices, 1, false);
        mmh_unlock(h);
        if (!pg)
            return NULL;
    }
    pg->kind = MMH_PAGE_SMALL;
    pg->flags = 0;
    pg->cls = (uint8_t)cls;
    pg->block_size = (uint32_t)bsize;
    pg->reserved = (uint32_t)((slices << MMH_SLICE_SHIFT) / bsize);
    pg->slot_id = slot_id;
    return pg;
}

/* Give an empty page back to the span allocator, unless a remote free
 * still refers to it (NOTIFIED, or blocks not yet collected).  A NOTIFY bit
 * left behind by an unpark is cleared here. */
static void retire(mmh_heap *h, mmh_slot *slot, mmh_page *pg)
{
    uint64_t x = atomic_load(&pg->xfree);
    if (x == MMH_XF_NOTIFY && !(pg->flags & MMH_PF_PARKED) &&
        atomic_compare_exchange_strong(&pg->xfree, &x, 0))
        x = 0;
    if (x != 0)
        return;
    mmh_assert(pg->used == 0);
    if (pg->flags & MMH_PF_PARKED)
        pg->flags &= (uint8_t)~MMH_PF_PARKED;
    else
        class_unlink(h, slot, pg);
    mmh_span_cache_put(h, slot, pg->slot_id, pg);
}

/* The slot's cached spans back to the bins: its thread let it go. */
static void uncache_all(mmh_heap *h, mmh_slot *slot)
{
    mmh_lock(h);
    mmh_span_cache_flush(h, slot);
    mmh_unlock(h);
}

/* A block from the first page of the class's ring that has one, from the
 * current page on, parking the used-up pages it passes; NULL when none has. */
static void *class_alloc(mmh_heap *h, mmh_slot *slot, unsigned cls)
{
    while (slot->pages[cls] != MMH_EMPTY_PAGE_OFF) {
        mmh_page *pg = mmh_page_at(h, slot->pages[cls]);
        collect(h, pg);
        if (!pg->free && pg->capacity < pg->reserved)
            extend(h, pg);
        if (pg->free)
            return mmh_page_pop(h, pg);
        if (!park(h, slot, pg)) { /* remote frees came in meanwhile */
            collect(h, pg);
            return mmh_page_pop(h, pg);
        }
    }
    return NULL;
}

/* Parked pages that remote frees woke are taken back only when the
 * class's own pages have nothing left: other threads write slot->xpages,
 * and reading it at every slow path costs a cache miss each time. */
void *mmh_page_alloc_slow(mmh_heap *h, mmh_tbind *b, unsigned cls)
{
    mmh_slot *slot = b->slot;
    void *p = class_alloc(h, slot, cls);
    if (p)
        return p;
    drain_notified(h, slot);
    if ((p = class_alloc(h, slot, cls)))
        return p;
    mmh_page *pg = page_new(h, slot, b->slot_id, cls);
    if (!pg)
        return NULL;
    class_push_last(h, slot, pg);
    slot->pages[cls] = mmh_off(h, pg); /* the new page is the current one */
    extend(h, pg);
    return mmh_page_pop(h, pg);
}

/* After the owner pushed a block back: unpark a parked page, and give an
 * empty page back unless it is the one its class allocates from. */
void mmh_page_free_local(mmh_heap *h, mmh_tbind *b, mmh_page *pg)
{
    mmh_slot *slot = b->slot;
    if (pg->flags & MMH_PF_PARKED)
        unpark(h, slot, pg);
    if (pg->used != 0 || slot->pages[pg->cls] == mmh_off(h, pg))
        return;
    retire(h, slot, pg);
}

/* Push p onto its page's remote free list.  When the page's slot has no
 * owner (its thread exited), nobody would ever collect it: adopt the slot
 * for a moment and give the page back if this free emptied it.  The head
 * of the list is the double free this can see: the owner's list is the
 * owner's to read. */
bool mmh_page_free_remote(mmh_heap *h, mmh_page *pg, void *p)
{
    uint32_t slot_id = pg->slot_id; /* stable while p is live */
    uint64_t x = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    if ((x & ~(uint64_t)MMH_XF_FLAGS) == mmh_off(h, p))
        return false;
    if (!mmh_block_freeing(h, p, pg->block_size))
        return true; /* free already: the checker reported it */
    push_remote(h, pg, p);
    mmh_slot *slot = mmh_slot_at(h, slot_id);
    uint64_t none = 0;
    if (atomic_load_explicit(&slot->owner, memory_order_relaxed) != 0 ||
        !atomic_compare_exchange_strong(&slot->owner, &none, UINT64_MAX))
        return true;
    drain_notified(h, slot);
    if (pg->kind == MMH_PAGE_SMALL && pg->slot_id == slot_id) { /* not given back meanwhile */
        collect(h, pg);
        if (pg->used == 0)
            retire(h, slot, pg);
    }
    if (slot->spans[0]) /* no thread would take them again */
        uncache_all(h, slot);
    atomic_store(&slot->owner, 0);
    return true;
}

static void push_remote(mmh_heap *h, mmh_page *pg, void *p)
{
    uint64_t off = mmh_off(h, p), x = atomic_load_explicit(&pg->xfree, memory_order_relaxed);
    uint64_t want;
    do {
        mmh_link_set(h, p, x & ~(uint64_t)MMH_XF_FLAGS);
        want = off | (x & MMH_XF_FLAGS);
        if ((x & (MMH_XF_NOTIFY | MMH_XF_NOTIFIED)) == MMH_XF_NOTIFY)
            want |= MMH_XF_NOTIFIED;
    } while (!atomic_compare_exchange_weak(&pg->xfree, &x, want));
    if (!((want ^ x) & MMH_XF_NOTIFIED))
        return;
    /* This free woke a parked page: queue it for its owner.  The page
     * cannot be given back while NOTIFIED is set, so pg->slot_id is stable. */
    mmh_slot *slot = mmh_slot_at(h, pg->slot_id);
    uint64_t head = atomic_load_explicit(&slot->xpages, memory_order_relaxed);
    do
        pg->xnext = head;
    while (!atomic_compare_exchange_weak(&slot->xpages, &head, mmh_off(h, pg)));
}

/* The owner lets go of its slot: give back every page with no live block,
 * so a thread that exits leaves only the pages others still use. */
void mmh_slot_trim(mmh_heap *h, mmh_slot *slot)
{
    drain_notified(h, slot);
    for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
        uint64_t head = slot->pages[cls];
        if (head == MMH_EMPTY_PAGE_OFF)
            continue;
        /* Walk the ring once, from the last page back to the current one,
         * so that a page given back never was the walk's next step. */
        mmh_page *pg = mmh_page_at(h, mmh_page_at(h, head)->prev), *stop = mmh_page_at(h, head);
        for (;;) {
            mmh_page *prev = mmh_page_at(h, pg->prev);
            bool last = pg == stop;
            collect(h, pg);
            if (pg->used == 0)
                retire(h, slot, pg);
            if (last)
                break;
            pg = prev;
        }
    }
    uncache_all(h, slot);
}
