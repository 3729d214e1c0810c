/* Telling memory checkers about heap blocks, so that blocks from mmh_alloc
 * are checked like malloc's: leaks, use after free, reads of uninitialised
 * memory.
 *
 * valgrind's memcheck (client requests, chosen at run time): a heap opened
 * under memcheck is checked (h->memcheck; with MMHEAP_OPTIONS=leaks its
 * blocks are a memory pool's chunks).  Elsewhere the hooks cost one test of
 * h->memcheck in the fast paths of mmh_alloc and mmh_free, which leave
 * checked heaps to the slow paths, and nothing in malloc.c: the default
 * heap is never checked (memcheck replaces malloc with its own), so
 * malloc.c compiles them out (MMH_NO_MEMCHECK).
 * AddressSanitizer (at compile time): free blocks are poisoned.
 *
 * Either way a free block is off limits, so the allocator reaches the link
 * word in it only through mmh_link_get and mmh_link_set.  Without valgrind's
 * headers and without ASan every hook compiles to nothing. */
#ifndef MMH_INSTRUMENT_H
#define MMH_INSTRUMENT_H

#if defined(__SANITIZE_ADDRESS__)
#define MMH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMH_ASAN 1
#endif
#endif
#ifndef MMH_ASAN
#define MMH_ASAN 0
#endif

#if defined(HAVE_VALGRIND_MEMCHECK_H) && !defined(MMH_NO_MEMCHECK)
#define MMH_MEMCHECK 1
#else
#define MMH_MEMCHECK 0
#endif

/* Is h a memcheck pool?  The fast paths leave such heaps to the slow
 * ones, so that (knowing it is not) they carry no memcheck hook. */
static inline bool mmh_memcheck(const mmh_heap *h)
{
    return MMH_MEMCHECK && unlikely(h->memcheck);
}

/* Is h checked at all? */
static inline bool mmh_inst(const mmh_heap *h)
{
    return MMH_ASAN || mmh_memcheck(h);
}

/* Does this process run under valgrind (any tool)? */
MMH_HIDDEN bool     mmh_inst_on_valgrind(void);

/* instrument.c: the slow halves, called only when mmh_inst(h). */
MMH_HIDDEN uint64_t mmh_inst_link_get(const mmh_heap *h, const void *p);
MMH_HIDDEN void     mmh_inst_link_set(const mmh_heap *h, void *p, uint64_t v);
MMH_HIDDEN void     mmh_inst_alloc(const mmh_heap *h, void *p, size_t size, bool defined);
MMH_HIDDEN bool     mmh_inst_free(const mmh_heap *h, void *p, size_t size);
MMH_HIDDEN void     mmh_inst_resize(const mmh_heap *h, void *p, size_t from, size_t to);
MMH_HIDDEN void     mmh_inst_metadata(const mmh_heap *h, void *p, size_t len);
/* Heap opened (the blocks already in it become known: allocated, their
 * contents defined) and closed (its blocks are forgotten; before that, a
 * heap whose file keeps them gets a leak search). */
MMH_HIDDEN void     mmh_inst_heap_open(mmh_heap *h);
MMH_HIDDEN void     mmh_inst_heap_close(mmh_heap *h);
/* Around code that reads whole heap ranges, free blocks and all (commits,
 * snapshots): memcheck reports nothing there. */
MMH_HIDDEN void     mmh_inst_bulk_begin(void);
MMH_HIDDEN void     mmh_inst_bulk_end(void);
/* [p, p + len), a copy of heap memory taken to be written out, counts as
 * defined: its bytes are what the file gets, whatever the program stored
 * (their hashes and the commit chain are then defined too). */
MMH_HIDDEN void     mmh_inst_copied(void *p, size_t len);

/* The free-list link in the free block p. */
static inline uint64_t mmh_link_get(const mmh_heap *h, const void *p)
{
    if (mmh_inst(h))
        return mmh_inst_link_get(h, p);
    return *(const uint64_t *)p;
}

static inline void mmh_link_set(const mmh_heap *h, void *p, uint64_t v)
{
    if (mmh_inst(h))
        mmh_inst_link_set(h, p, v);
    else
        *(uint64_t *)p = v;
}

/* p (size bytes) is handed out; contents undefined unless `defined`. */
static inline void mmh_block_alloced(const mmh_heap *h, void *p, size_t size, bool defined)
{
    if (mmh_inst(h))
        mmh_inst_alloc(h, p, size, defined);
}

/* p is about to be freed: false when it is free already (a double free,
 * reported by the checker; the caller leaves it be). */
static inline bool mmh_block_freeing(const mmh_heap *h, void *p, size_t size)
{
    return !mmh_inst(h) || mmh_inst_free(h, p, size);
}

/* p, live, now holds `to` bytes instead of `from`, in place. */
static inline void mmh_block_resized(const mmh_heap *h, void *p, size_t from, size_t to)
{
    if (mmh_inst(h))
        mmh_inst_resize(h, p, from, to);
}

/* [p, p + len), span memory, now holds allocator metadata (a slot table):
 * the library's to touch, and no block. */
static inline void mmh_metadata_made(const mmh_heap *h, void *p, size_t len)
{
    if (mmh_inst(h))
        mmh_inst_metadata(h, p, len);
}

#endif /* MMH_INSTRUMENT_H */
