/* The allocation interface.  The fast paths (mmh_alloc_fast and
 * mmh_free_fast in internal.h: a small block from the current page of the
 * thread's slot, a small block back to a page the thread owns) take no lock
 * and no atomic operation; everything else is here, in page.c and in
 * segment.c. */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define ROOM_SLICES 4u

/* A span from the slot's cache, or under the lock from the bins or as a
 * run of segments.  With `room`, placed to grow: a cached span
 * ROOM_SLICES to twice that many times as long (the block grows inside it;
 * a shorter one would leave it to move again soon, since what follows a
 * cached span is unknown), else one cut from the largest free span. */
bool mmh_size_allowed(mmh_heap *h, size_t size)
{
    if (size <= h->max_size)
        return true;
    mmh_fail(ENOMEM, "%s: %zu bytes requested, more than max_size %zu", h->path, size,
             h->max_size);
    return false;
}

void *mmh_large_alloc(mmh_heap *h, mmh_tbind *b, size_t size, size_t align, bool room)
{
    if (!mmh_size_allowed(h, size))
        return NULL;
    size_t slices = (size + MMH_SLICE_SIZE - 1) >> MMH_SLICE_SHIFT;
    size_t align_slices = align > MMH_SLICE_SIZE ? align >> MMH_SLICE_SHIFT : 1;
    bool span = slices + align_slices - 1 < MMH_SEG_SLICES;
    char *p = NULL;
    mmh_page *pg = NULL;
    if (b && span && align_slices == 1)
        pg = room ? mmh_span_cache_take(h, b->slot, ROOM_SLICES * slices, 2 * ROOM_SLICES * slices)
                  : mmh_span_cache_take(h, b->slot, slices, slices);
    if (!pg) {
        mmh_lock(h);
        if (span)
            pg = mmh_span_alloc(h, slices, align_slices, room);
        else
            pg = mmh_huge_alloc(h, size, align < MMH_MIN_ALIGN ? MMH_MIN_ALIGN : align, room, &p);
        mmh_unlock(h);
        if (!pg)
            return NULL;
    }
    if (span) {
        p = mmh_page_start(pg);
        pg->free = mmh_off(h, p);
    }
    mmh_block_alloced(h, p, mmh_block_usable(h, pg, p), false);
    return p;
}

/* Into the slot's cache, or under the lock back to the bins or the runs. */
void mmh_large_free(mmh_heap *h, mmh_tbind *b, mmh_page *pg, void *p, unsigned flags)
{
    if (!mmh_block_freeing(h, p, mmh_block_usable(h, pg, p)))
        return;
    if (b && pg->kind == MMH_PAGE_LARGE && !flags) {
        mmh_span_cache_put(h, b->slot, b->slot_id, pg);
        return;
    }
    mmh_lock(h);
    if (pg->kind == MMH_PAGE_HUGE)
        mmh_huge_free(h, pg, flags);
    else
        mmh_span_free(h, pg, flags);
    mmh_unlock(h);
}

static void *alloc_with(mmh_heap *h, mmh_tbind *b, size_t size, size_t align)
{
    if (size <= MMH_SMALL_MAX && align <= MMH_SLICE_SIZE) {
        unsigned cls = mmh_size_class(size < align ? align : size);
        while (mmh_class_size(cls) & (align - 1))
            cls++;
        if (cls < MMH_CLASSES) {
            mmh_page *pg = (mmh_page *)(b->base + b->slot->pages[cls]);
            return pg->free ? mmh_page_pop(h, pg) : mmh_page_alloc_slow(h, b, cls);
        }
    }
    return mmh_large_alloc(h, b, size, align, false);
}

/* The thread has no slot of its own: do the call on a borrowed one. */
static __attribute__((cold)) void *alloc_borrowed(mmh_heap *h, size_t size, size_t align,
                                                  int saved_errno)
{
    mmh_tbind b;
    mmh_slot_borrow(h, &b);
    errno = saved_errno;
    void *p = alloc_with(h, &b, size, align);
    mmh_slot_return(&b);
    return p;
}

void *mmh_alloc_slow(mmh_heap *h, size_t size, size_t align)
{
    int saved = errno;
    mmh_tbind *b = mmh_bind(h);
    if (b)
        return alloc_with(h, b, size, align);
    return errno == EAGAIN ? alloc_borrowed(h, size, align, saved) : NULL;
}

void *mmh_alloc(mmh_heap *h, size_t size)
{
    if (unlikely(!h))
        return mmh_fail_null(EINVAL, "mmh_alloc: heap is NULL");
    return mmh_alloc_fast(h, size);
}

/* Is the block p of size bytes known to be zero already?  Once: it is the
 * caller's to write afterwards. */
static bool fresh_zero(void *p, size_t size)
{
    if (size <= MMH_SMALL_MAX)
        return false;
    mmh_page *pg = mmh_page_of(p);
    if (!(pg->flags & MMH_PF_ZEROED))
        return false;
    pg->flags &= (uint8_t)~MMH_PF_ZEROED;
    return true;
}

void *mmh_calloc(mmh_heap *h, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return mmh_fail_null(ENOMEM, "mmh_calloc: %zu * %zu bytes overflows", n, size);
    void *p = mmh_alloc(h, total);
    if (p && (!fresh_zero(p, total) || mmh_inst(h))) /* checkers saw it undefined */
        memset(p, 0, total);
    return p;
}

void *mmh_aligned_alloc(mmh_heap *h, size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)))
        return mmh_fail_null(EINVAL, "mmh_aligned_alloc: alignment %zu is not a power of two",
                             align);
    if (!h)
        return mmh_fail_null(EINVAL, "mmh_aligned_alloc: heap is NULL");
    if (align <= MMH_MIN_ALIGN)
        return mmh_alloc_fast(h, size);
    return mmh_alloc_slow(h, size, align);
}

/* Is p a live-looking block of h?  Cheap checks only: inside the heap,
 * 16-aligned, in a segment that holds blocks, at a block boundary. */
bool mmh_block_valid(mmh_heap *h, const void *p, mmh_page **pgp)
{
    size_t rel = (size_t)((const char *)p - h->base);
    if (rel < MMH_SLICE_SIZE || rel >= h->mapped || (rel & (MMH_MIN_ALIGN - 1)))
        return false;
    unsigned kind = MMH_SEGMAP_KIND(h->segmap[(rel - 1) >> MMH_SEG_SHIFT]);
    if (kind != MMH_SEGMAP_SLICED && kind != MMH_SEGMAP_HUGE)
        return false;
    mmh_page *pg = mmh_page_of(p);
    *pgp = pg;
    switch (pg->kind) {
    case MMH_PAGE_SMALL:
        return mmh_block_start(pg, p);
    case MMH_PAGE_LARGE:
    case MMH_PAGE_HUGE:
        return pg->free == rel;
    default:
        return false;
    }
}

/* false: p heads its page's free list, freed already */
static bool free_block(mmh_heap *h, mmh_tbind *b, mmh_page *pg, void *p)
{
    if (pg->kind != MMH_PAGE_SMALL) {
        mmh_large_free(h, b, pg, p, 0);
        return true;
    }
    if (pg->slot_id == b->slot_id)
        return mmh_page_push_own(h, b, pg, p);
    return mmh_page_free_remote(h, pg, p);
}

mmh_free_result mmh_free_slow(mmh_heap *h, void *p)
{
    mmh_page *pg;
    bool freed;
    if (!mmh_block_valid(h, p, &pg))
        return MMH_FREE_INVALID;
    int saved = errno;
    mmh_tbind *b = mmh_bind(h);
    if (b) {
        freed = free_block(h, b, pg, p);
    } else if (errno == EAGAIN) {
        mmh_tbind borrowed;
        mmh_slot_borrow(h, &borrowed);
        freed = free_block(h, &borrowed, pg, p);
        mmh_slot_return(&borrowed);
    } else {
        return MMH_FREED; /* a read-only heap: errno and the reason say so */
    }
    errno = saved;
    return freed ? MMH_FREED : MMH_FREE_DOUBLE;
}

/* What the fast path leaves: large blocks, a thread not yet bound, a
 * memcheck heap, and bad pointers, reported here. */
static void free_slow(mmh_heap *h, void *p)
{
    switch (mmh_free_slow(h, p)) {
    case MMH_FREED:
        break;
    case MMH_FREE_INVALID:
        mmh_fail(EINVAL, "mmh_free: %p is not the start of a live block of heap %s", p,
                 h->path);
        break;
    case MMH_FREE_DOUBLE:
        mmh_fail(EINVAL, "mmh_free: %p of heap %s is free already (a double free)", p, h->path);
        break;
    }
}

void mmh_free(mmh_heap *h, void *p)
{
    if (!p)
        return;
    if (unlikely(!h))
        mmh_fail(EINVAL, "mmh_free: heap is NULL");
    else if (unlikely(!mmh_free_fast(h, p)))
        free_slow(h, p);
}

size_t mmh_block_usable(const mmh_heap *h, const mmh_page *pg, const void *p)
{
    switch (pg->kind) {
    case MMH_PAGE_SMALL:
        return pg->block_size;
    case MMH_PAGE_LARGE:
        return (size_t)(mmh_page_start(pg) + ((size_t)pg->slice_count << MMH_SLICE_SHIFT) -
                        (const char *)p);
    default: {
        char *seg = (char *)mmh_segment_of(p) - MMH_SEGHDR_OFFSET;
        return (size_t)(seg + (mmh_huge_segments(h, pg) << MMH_SEG_SHIFT) - (const char *)p);
    }
    }
}

size_t mmh_usable_size(mmh_heap *h, const void *p)
{
    mmh_page *pg;
    if (!p || !h)
        return 0;
    if (!mmh_block_valid(h, p, &pg)) {
        mmh_fail(EINVAL, "mmh_usable_size: %p is not a block of heap %s", p, h->path);
        return 0;
    }
    return mmh_block_usable(h, pg, p);
}
