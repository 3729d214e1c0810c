/* The slow halves of the memory checkers' hooks (instrument.h): memcheck
 * client requests and ASan poisoning, and the heap-wide work at open and
 * close.  Reached only for heaps that are checked. */
#include "walk.h"

#include <string.h>

#if MMH_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if MMH_MEMCHECK
#include <valgrind/memcheck.h>
#endif

/* Does this process run under memcheck?  Under other valgrind tools
 * (callgrind counting the fast paths, for one) memcheck's requests go
 * unanswered and the default 1 stays. */
static bool on_memcheck(void)
{
#if MMH_MEMCHECK
    static const uint64_t probe = 0;
    return RUNNING_ON_VALGRIND &&
           VALGRIND_DO_CLIENT_REQUEST_EXPR(1, VG_USERREQ__CHECK_MEM_IS_DEFINED, &probe,
                                           sizeof probe, 0, 0, 0) == 0;
#else
    return false;
#endif
}

bool mmh_inst_on_valgrind(void)
{
#if MMH_MEMCHECK
    return RUNNING_ON_VALGRIND;
#else
    return false;
#endif
}

/* Poison or unpoison, mark off limits or addressable: the two checkers'
 * views of [p, p + len). */
static void shut(const mmh_heap *h, const void *p, size_t len)
{
    (void)h, (void)p, (void)len;
#if MMH_ASAN
    ASAN_POISON_MEMORY_REGION(p, len);
#endif
#if MMH_MEMCHECK
    if (h->memcheck)
        VALGRIND_MAKE_MEM_NOACCESS(p, len);
#endif
}

static void open_up(const mmh_heap *h, const void *p, size_t len, bool defined)
{
    (void)h, (void)p, (void)len, (void)defined;
#if MMH_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, len);
#endif
#if MMH_MEMCHECK
    if (h->memcheck) {
        if (defined)
            VALGRIND_MAKE_MEM_DEFINED(p, len);
        else
            VALGRIND_MAKE_MEM_UNDEFINED(p, len);
    }
#endif
}

/* With MMHEAP_OPTIONS=leaks the blocks are memcheck's chunks: leak
 * searches see them, and reports give their allocation and free stacks.
 * Otherwise memcheck only knows which bytes may be touched. */
#if MMH_MEMCHECK
static bool pooled(const mmh_heap *h)
{
    return h->memcheck && mmh_opts.leaks;
}
#endif

uint64_t mmh_inst_link_get(const mmh_heap *h, const void *p)
{
    open_up(h, p, sizeof(uint64_t), true);
    uint64_t v = *(const uint64_t *)p;
    shut(h, p, sizeof(uint64_t));
    return v;
}

void mmh_inst_link_set(const mmh_heap *h, void *p, uint64_t v)
{
    open_up(h, p, sizeof(uint64_t), true);
    *(uint64_t *)p = v;
    shut(h, p, sizeof(uint64_t));
}

/* Memory of a huge block that becomes free, [p, p + len), covers segment
 * starts, where the metadata of segments made of it goes. */
static void open_segment_starts(const mmh_heap *h, const char *p, size_t len)
{
    for (uintptr_t s = mmh_align_up((uintptr_t)p, MMH_SEG_SIZE); s < (uintptr_t)p + len;
         s += MMH_SEG_SIZE)
        open_up(h, (void *)s, MMH_SLICE_SIZE, true);
}

void mmh_inst_alloc(const mmh_heap *h, void *p, size_t size, bool defined)
{
#if MMH_MEMCHECK
    if (pooled(h))
        VALGRIND_MEMPOOL_ALLOC(h->base, p, size);
#endif
    open_up(h, p, size, defined);
}

bool mmh_inst_free(const mmh_heap *h, void *p, size_t size)
{
    (void)size;
#if MMH_ASAN
    if (__asan_address_is_poisoned(p)) {
        *(volatile char *)p; /* ASan reports the double free as a use after poison */
        return false;
    }
    ASAN_POISON_MEMORY_REGION(p, size);
#endif
#if MMH_MEMCHECK
    if (h->memcheck) {
        /* Free already: memcheck reports the check, with the block's
         * allocation and free stacks. */
        if (VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, 1) != 0)
            return false;
        if (pooled(h))
            VALGRIND_MEMPOOL_FREE(h->base, p);
        else
            shut(h, p, size);
    }
#endif
    open_segment_starts(h, p, size);
    return true;
}

void mmh_inst_resize(const mmh_heap *h, void *p, size_t from, size_t to)
{
#if MMH_MEMCHECK
    if (pooled(h))
        VALGRIND_MEMPOOL_CHANGE(h->base, p, p, to);
#endif
    if (to > from) {
        open_up(h, (char *)p + from, to - from, false);
    } else {
        shut(h, (char *)p + to, from - to);
        open_segment_starts(h, (char *)p + to, from - to); /* a huge block's released tail */
    }
}

void mmh_inst_metadata(const mmh_heap *h, void *p, size_t len)
{
    open_up(h, p, len, true);
}

void mmh_inst_bulk_begin(void)
{
#if MMH_MEMCHECK
    VALGRIND_DISABLE_ERROR_REPORTING;
#endif
}

void mmh_inst_bulk_end(void)
{
#if MMH_MEMCHECK
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
}

void mmh_inst_copied(void *p, size_t len)
{
#if MMH_MEMCHECK
    VALGRIND_MAKE_MEM_DEFINED(p, len);
#else
    (void)p, (void)len;
#endif
}

/* ---- heaps opened and closed ------------------------------------------- */

/* Blocks a small page holds at most: 16-byte ones in one slice (mmh_open
 * checked the page's counts). */
#define PAGE_BLOCKS_MAX (MMH_SLICE_SIZE / MMH_MIN_ALIGN)

/* The free blocks of a small page's list that starts at first: off limits.
 * mmh_open does not check these lists: the walk stays inside the page and
 * takes a block once (seen: of both lists), so that a damaged list stops
 * it rather than have a free block freed again (a report). */
static void free_list(mmh_heap *h, const mmh_page *pg, uint64_t first, uint8_t *seen)
{
    mmh_list_iter l;
    uint64_t off;
    mmh_list_iter_init(&l, NULL, h->base, pg, first, seen); /* blocks still defined */
    while (mmh_list_next(&l, &off) == MMH_LIST_BLOCK)
        mmh_inst_free(h, mmh_ptr(h, off), pg->block_size);
}

/* Every block the heap holds: allocated, defined; then the free ones of
 * each small page free again. */
static void blocks_known(mmh_heap *h)
{
    mmh_span_iter it;
    mmh_span sp;
    mmh_span_iter_init(&it, h->base, h->segmap, h->mapped >> MMH_SEG_SHIFT);
    while (mmh_span_next(&it, &sp)) {
        const mmh_page *pg = sp.pg;
        if (sp.kind == MMH_SPAN_HUGE || (sp.kind == MMH_SPAN_SLICED &&
                                         pg->kind == MMH_PAGE_LARGE)) {
            void *p = mmh_ptr(h, pg->free);
            mmh_inst_alloc(h, p, mmh_usable_size(h, p), true);
        } else if (sp.kind == MMH_SPAN_SLICED && pg->kind == MMH_PAGE_SMALL) {
            char *start = mmh_page_start(pg);
            uint8_t seen[PAGE_BLOCKS_MAX / 8];
            memset(seen, 0, MMH_LIST_SEEN_BYTES(pg->capacity));
            for (uint32_t b = 0; b < pg->capacity; b++)
                mmh_inst_alloc(h, start + (size_t)b * pg->block_size, pg->block_size, true);
            free_list(h, pg, pg->free, seen);
            free_list(h, pg, atomic_load(&((mmh_page *)pg)->xfree) & ~(uint64_t)MMH_XF_FLAGS,
                      seen);
        }
    }
}

void mmh_inst_heap_open(mmh_heap *h)
{
    h->memcheck = MMH_MEMCHECK && on_memcheck();
    if (h->memcheck)
        mmh_options_read();
    h->root = h->hdr->root ? mmh_ptr(h, h->hdr->root) : NULL;
#if MMH_MEMCHECK
    if (pooled(h))
        VALGRIND_CREATE_MEMPOOL(h->base, 0, 0);
#endif
    if (mmh_inst(h))
        blocks_known(h);
}

/* At close a heap's blocks are forgotten: its file keeps them.  With
 * MMHEAP_OPTIONS=leaks, a heap file is first searched for leaks (and a heap
 * still open at exit is searched with the process's malloc blocks): a block
 * nothing points to then (not the root, h->root, nor any block reachable
 * from it, nor the program's own memory) is lost in the file for good, and
 * memcheck reports it as it reports a lost malloc block at exit.  Not by
 * default: memcheck cannot see references kept as mmh_offset values.
 * Blocks of heaps whose file does not keep them (anonymous, read-only,
 * volatile) die with the heap. */
#if MMH_MEMCHECK
/* memcheck skips its leak search when no malloc block is live (pool
 * chunks do not count): one of our own stands in, reachable, meanwhile. */
static char stand_in[16];
static char *volatile stand_in_ref = stand_in;

static void leak_search(void)
{
    VALGRIND_MALLOCLIKE_BLOCK(stand_in_ref, sizeof stand_in, 0, 0);
    VALGRIND_DO_ADDED_LEAK_CHECK;
    VALGRIND_FREELIKE_BLOCK(stand_in_ref, 0);
}
#endif

void mmh_inst_heap_close(mmh_heap *h)
{
    if (!mmh_inst(h))
        return;
#if MMH_MEMCHECK
    if (h->memcheck) {
        if (pooled(h) && mmh_writes_back(h))
            leak_search();
        if (pooled(h))
            VALGRIND_DESTROY_MEMPOOL(h->base);
        h->memcheck = false;
    }
#endif
#if MMH_ASAN
    ASAN_UNPOISON_MEMORY_REGION(h->base, h->mapped);
#endif
}
