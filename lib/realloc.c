/* Realloc.  A block is resized where it lies whenever the memory allows it:
 * a small block within its class's slack, a span into the free slices after
 * it, a huge block into the free segments after it or past the heap's end;
 * shrinking gives the slices or segments beyond the new size back.
 *
 * Otherwise the block moves, and a move that grows it goes where it can
 * grow again without moving: a span is cut from the largest free span, so
 * free slices follow it; a huge block is placed at the end of the heap.  In
 * an anonymous heap a huge block's pages move with mremap instead of being
 * copied, so the old and the new copy never both take memory, and a move
 * costs page-table work, not a copy.
 *
 * Small blocks cannot grow in place (their neighbours are blocks of the
 * same class), so a block that the same thread grows twice in a row is
 * taken to be growing: it moves with room to double, and from
 * GROW_SPAN_MIN bytes on into a span of its own, where it grows in place.
 * A doubling chain from 32 bytes then copies six times, under 2 KiB in
 * all, however long it grows.  A block grown once (a buffer enlarged to
 * fit) keeps an exact class, so that many small blocks grown once do not
 * each take a span.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

/* A small block growing again to this size moves into a span: a 64 KiB
 * span holding at least 2 KiB touches at most twice the pages the block
 * needs (untouched pages take no memory). */
#define GROW_SPAN_MIN ((size_t)2 << 10)

/* A huge block at least this large moves by mremap rather than memcpy:
 * below it the copy is cheaper than the system call and its page-table
 * work. */
#define MOVE_PAGES_MIN ((size_t)1 << 20)

/* The block this thread's last growing move returned: growing it again
 * marks it as growing. */
static __thread const void *tls_growing __attribute__((tls_model("initial-exec")));

/* Can mremap move blocks' pages in h?  Only in an anonymous heap (a file
 * heap's pages are the file's, and a tracker watches them), and not in a
 * memcheck pool, whose checker follows bytes, not pages. */
static bool pages_movable(const mmh_heap *h)
{
    return h->fd < 0 && !mmh_memcheck(h);
}

/* Resize the large or huge block p of pg in place to size bytes, if it
 * need not move.  A block below GROW_SPAN_MIN bytes (a huge one of a small
 * block's size) belongs in a class page instead: false. */
static bool resize_in_place(mmh_heap *h, mmh_page *pg, void *p, size_t before, size_t size)
{
    size_t now, want;
    if (pg->kind == MMH_PAGE_HUGE) {
        if (size <= MMH_SMALL_MAX)
            return false;
        size_t lead = (size_t)((char *)p - ((char *)mmh_segment_of(p) - MMH_SEGHDR_OFFSET));
        now = mmh_huge_segments(h, pg);
        want = (lead + size + MMH_SEG_MASK) >> MMH_SEG_SHIFT;
    } else {
        if (size < GROW_SPAN_MIN)
            return false;
        now = pg->slice_count;
        want = (size + MMH_SLICE_SIZE - 1) >> MMH_SLICE_SHIFT;
        if (want >= MMH_SEG_SLICES)
            return false; /* a huge block's size */
    }
    /* A growing block keeps the room it was given: it would only take the
     * slices back at its next step. */
    if (want == now || (want < now && p == tls_growing))
        return true;
    bool ok = true;
    mmh_lock(h);
    if (pg->kind == MMH_PAGE_HUGE)
        ok = mmh_huge_resize(h, pg, want);
    else if (want < now)
        mmh_span_shrink(h, pg, want);
    else
        ok = mmh_span_grow(h, pg, want);
    mmh_unlock(h);
    if (ok)
        mmh_block_resized(h, p, before, mmh_block_usable(h, pg, p));
    return ok;
}

/* Where a block of `usable` bytes that must hold size bytes moves to. */
static void *destination(mmh_heap *h, const mmh_page *pg, const void *p, size_t usable,
                         size_t size)
{
    bool grows = size > usable;
    if (pg->kind == MMH_PAGE_SMALL && grows && p == tls_growing) {
        size_t room = 2 * usable > size ? 2 * usable : size;
        if (room < GROW_SPAN_MIN)
            return mmh_alloc(h, room);
        return mmh_large_alloc(h, mmh_bound(h), size, MMH_MIN_ALIGN, true);
    }
    if (size > MMH_SMALL_MAX || (pg->kind != MMH_PAGE_SMALL && grows))
        return mmh_large_alloc(h, mmh_bound(h), size, MMH_MIN_ALIGN, grows);
    return mmh_alloc(h, size);
}

/* Move p (of pg, `usable` bytes) to a block of size bytes. */
static void *move(mmh_heap *h, mmh_page *pg, void *p, size_t usable, size_t size)
{
    void *q = destination(h, pg, p, usable, size);
    if (!q)
        return NULL;
    if (size > usable) {
        tls_growing = q;
        mmh_page *qpg = mmh_page_of(q);
        if (qpg->kind == MMH_PAGE_HUGE && usable >= MOVE_PAGES_MIN && pages_movable(h) &&
            mmh_region_move(h, mmh_off(h, p), mmh_off(h, q), usable) == 0) {
            qpg->flags &= (uint8_t)~MMH_PF_ZEROED;
            mmh_large_free(h, NULL, pg, p, MMH_PF_PURGED);
            return q;
        }
    }
    memcpy(q, p, usable < size ? usable : size);
    mmh_free(h, p);
    return q;
}

void *mmh_realloc(mmh_heap *h, void *p, size_t size)
{
    mmh_page *pg;
    if (!p)
        return mmh_alloc(h, size);
    if (size == 0) {
        mmh_free(h, p);
        return NULL;
    }
    if (!h)
        return mmh_fail_null(EINVAL, "mmh_realloc: heap is NULL");
    if (!mmh_block_valid(h, p, &pg))
        return mmh_fail_null(EINVAL, "mmh_realloc: %p is not a block of heap %s", p, h->path);
    if (h->flags & MMH_READONLY) /* even in place: the metadata would change */
        return mmh_fail_null(EROFS, "%s: heap is open read-only", h->path);
    if (!mmh_size_allowed(h, size)) /* also keeps resize_in_place's sums from wrapping */
        return NULL;
    size_t usable = mmh_block_usable(h, pg, p);
    if (pg->kind == MMH_PAGE_SMALL ? size <= usable && size >= usable / 2
                                   : resize_in_place(h, pg, p, usable, size))
        return p;
    return move(h, pg, p, usable, size);
}
