/* The drop-in malloc (libmmheap-malloc.so): the process's C and C++
 * allocation interface, served by the default heap (default.c).
 *
 * glibc's semantics where allocators differ: malloc(0) is a unique block,
 * realloc(p, 0) frees p and returns NULL, free keeps errno, failures are
 * NULL with ENOMEM.  A pointer outside the default heap was handed out by
 * another allocator before this one was loaded (dlopen of this library,
 * ld.so's early allocations): it goes back to the next allocator in the
 * lookup order, glibc's, found with dlsym when first needed.
 *
 * The C++ operators are defined here under their mangled names, so the
 * library needs no C++ runtime.  std::get_new_handler and
 * std::__throw_bad_alloc are weak references: a C++ program has them, and
 * a C program never calls operator new.
 */
#define _GNU_SOURCE
#define MMH_NO_MEMCHECK /* the default heap is never a memcheck pool (default.c) */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* The C++ operators and the <malloc.h> calls have no C declaration here. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"


static inline mmh_heap *heap(void)
{
    mmh_heap *h = atomic_load_explicit(&mmh_default_ptr, memory_order_acquire);
    return likely(h) ? h : mmh_default_heap();
}

static inline bool in_default(const mmh_heap *h, const void *p)
{
    return h && (uintptr_t)p - (uintptr_t)h->base < h->max_size;
}

static __attribute__((cold)) void *alloc_failed(const char *fn, size_t size)
{
    if (mmh_opts.verbose)
        mmh_log("%s(%zu) failed: %s", fn, size, mmh_errmsg());
    errno = ENOMEM;
    return NULL;
}

/* ---- the next allocator, for pointers this one did not hand out -------- */

static struct {
    void (*free)(void *);
    size_t (*usable_size)(void *);
} next;
static pthread_once_t next_once = PTHREAD_ONCE_INIT;

static void next_resolve(void)
{
    next.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next.usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
}

static __attribute__((cold)) void free_foreign(void *p)
{
    int saved = errno;
    pthread_once(&next_once, next_resolve);
    if (next.free)
        next.free(p);
    else if (mmh_opts.verbose)
        mmh_log("free(%p): not from this allocator and no other to return it to; kept", p);
    errno = saved;
}

static __attribute__((cold)) size_t usable_size_foreign(void *p)
{
    pthread_once(&next_once, next_resolve);
    return next.usable_size ? next.usable_size(p) : 0;
}

/* ---- C ------------------------------------------------------------------- */

EXPORT void *malloc(size_t size)
{
    mmh_heap *h = heap();
    void *p = likely(h) ? mmh_alloc_fast(h, size) : NULL;
    return likely(p) ? p : alloc_failed("malloc", size);
}

/* A bad pointer to free or realloc is a bug that corrupts memory next:
 * stop here, as glibc does, with a line written without allocating. */
static __attribute__((noreturn, cold)) void bad_pointer_abort(const char *fn, const char *what,
                                                              void *p)
{
    mmh_log("%s(): %s %p", fn, what, p);
    abort();
}

static __attribute__((noinline)) void free_slow(mmh_heap *h, void *p)
{
    if (!p)
        return;
    if (!in_default(h, p)) {
        free_foreign(p);
        return;
    }
    switch (mmh_free_slow(h, p)) {
    case MMH_FREED:
        break;
    case MMH_FREE_INVALID:
        bad_pointer_abort("free", "invalid pointer", p);
    case MMH_FREE_DOUBLE:
        bad_pointer_abort("free", "double free of", p);
    }
}

EXPORT void free(void *p)
{
    mmh_heap *h = atomic_load_explicit(&mmh_default_ptr, memory_order_relaxed);
    if (likely(h && mmh_free_fast(h, p)))
        return;
    free_slow(h, p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    void *p = mmh_calloc(heap(), n, size);
    return likely(p) ? p : alloc_failed("calloc", n * size);
}

static __attribute__((cold)) void *realloc_foreign(void *p, size_t size)
{
    size_t old = usable_size_foreign(p);
    if (size == 0) {
        free_foreign(p);
        return NULL;
    }
    if (old == 0 && mmh_opts.verbose)
        mmh_log("realloc(%p): not from this allocator and its size is unknown", p);
    void *q = malloc(size);
    if (q) {
        memcpy(q, p, old < size ? old : size);
        free_foreign(p);
    }
    return q;
}

EXPORT void *realloc(void *p, size_t size)
{
    mmh_heap *h = heap();
    if (!p)
        return malloc(size);
    if (unlikely(!in_default(h, p)))
        return realloc_foreign(p, size);
    if (size == 0) {
        free(p);
        return NULL;
    }
    void *q = mmh_realloc(h, p, size);
    if (unlikely(!q)) {
        if (errno == EINVAL) /* p is no block */
            bad_pointer_abort("realloc", "invalid pointer", p);
        return alloc_failed("realloc", size);
    }
    return q;
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

/* glibc's memalign: an alignment that is not a power of two is rounded up
 * to one; one above half the address space cannot be had. */
EXPORT void *memalign(size_t align, size_t size)
{
    if (align <= MMH_MIN_ALIGN)
        return malloc(size);
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align & (align - 1))
        align = (size_t)1 << (64 - __builtin_clzll(align));
    void *p = mmh_aligned_alloc(heap(), align, size);
    return likely(p) ? p : alloc_failed("memalign", size);
}

/* C17 (and glibc since 2.38): the alignment must be a power of two. */
EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1))) {
        errno = EINVAL;
        return NULL;
    }
    return memalign(align, size);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (align == 0 || align % sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    int saved = errno;
    void *p = memalign(align, size);
    errno = saved;
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *valloc(size_t size)
{
    return memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

EXPORT void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded;
    if (__builtin_add_overflow(size, page - 1, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    return memalign(page, rounded & ~(page - 1));
}

EXPORT size_t malloc_usable_size(void *p)
{
    mmh_heap *h = atomic_load_explicit(&mmh_default_ptr, memory_order_relaxed);
    if (!p)
        return 0;
    return in_default(h, p) ? mmh_usable_size(h, p) : usable_size_foreign(p);
}

EXPORT void free_sized(void *p, size_t size)
{
    (void)size;
    free(p);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align;
    (void)size;
    free(p);
}

/* glibc's own names, which some programs and libraries call directly. */
EXPORT void *__libc_malloc(size_t n) { return malloc(n); }
EXPORT void __libc_free(void *p) { free(p); }
EXPORT void *__libc_calloc(size_t n, size_t size) { return calloc(n, size); }
EXPORT void *__libc_realloc(void *p, size_t n) { return realloc(p, n); }
EXPORT void *__libc_memalign(size_t align, size_t n) { return memalign(align, n); }
EXPORT void *__libc_valloc(size_t n) { return valloc(n); }
EXPORT void *__libc_pvalloc(size_t n) { return pvalloc(n); }

/* ---- glibc's tuning and introspection calls ------------------------------ */

/* The layouts of <malloc.h>, which is not included: it marks mallinfo
 * deprecated. */
struct mallinfo {
    int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
struct mallinfo2 {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};

/* No tuning knob of glibc's applies; accepted, as glibc accepts most. */
EXPORT int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

EXPORT struct mallinfo2 mallinfo2(void)
{
    struct mmh_stats st;
    struct mallinfo2 mi = { 0 };
    if (mmh_stats(heap(), &st) == 0) {
        mi.arena = st.size;
        mi.usmblks = st.used_peak;
        mi.uordblks = st.allocated;
        mi.fordblks = st.size - st.allocated;
        mi.keepcost = st.free_bytes;
    }
    return mi;
}

EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    return (struct mallinfo){ .arena = (int)m2.arena, .usmblks = (int)m2.usmblks,
                              .uordblks = (int)m2.uordblks, .fordblks = (int)m2.fordblks,
                              .keepcost = (int)m2.keepcost };
}
EXPORT struct mallinfo __libc_mallinfo(void) { return mallinfo(); }
EXPORT int __libc_mallopt(int param, int value) { return mallopt(param, value); }

/* Hand every free page back to the system now; 1 if there were any. */
EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    mmh_heap *h = heap();
    return h && mmh_purge_all(h) > 0;
}

EXPORT void malloc_stats(void)
{
    mmh_default_print_stats();
}

EXPORT int malloc_info(int options, FILE *fp)
{
    struct mmh_stats st;
    if (options != 0 || !fp) {
        errno = EINVAL;
        return -1;
    }
    if (mmh_stats(heap(), &st) != 0)
        return -1;
    /* The heap's mapping never shrinks: its most is its current size. */
    fprintf(fp,
            "<malloc version=\"mmheap-1\">\n<heap nr=\"0\">\n"
            "<total type=\"live\" count=\"%llu\" size=\"%llu\"/>\n"
            "<total type=\"free\" size=\"%llu\"/>\n"
            "<system type=\"current\" size=\"%llu\"/>\n"
            "<system type=\"max\" size=\"%llu\"/>\n"
            "<aspace type=\"total\" size=\"%llu\"/>\n</heap>\n</malloc>\n",
            (unsigned long long)st.allocations, (unsigned long long)st.allocated,
            (unsigned long long)st.free_bytes, (unsigned long long)st.size,
            (unsigned long long)st.size, (unsigned long long)st.max_size);
    return 0;
}

/* ---- C++ operator new and delete ----------------------------------------- */

typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

/* Out of memory in a throwing operator new: call the new-handler until it
 * makes room (or throws), and without one throw std::bad_alloc.  The
 * nothrow forms return NULL without calling it: a handler may throw, and C
 * cannot catch that on their behalf (they are noexcept: it would end the
 * program); "a pointer or NULL" is all the standard requires of a
 * replacement. */
static __attribute__((noinline)) void *new_failed(size_t size, size_t align)
{
    for (;;) {
        new_handler_fn handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!handler) {
            if (_ZSt17__throw_bad_allocv)
                _ZSt17__throw_bad_allocv();
            mmh_log("operator new(%zu): out of memory, and no C++ runtime to throw "
                    "std::bad_alloc", size);
            abort();
        }
        handler();
        void *p = align ? mmh_aligned_alloc(heap(), align, size) : mmh_alloc(heap(), size);
        if (p)
            return p;
    }
}

static inline void *cxx_new(size_t size, bool nothrow)
{
    mmh_heap *h = heap();
    void *p = likely(h) ? mmh_alloc_fast(h, size) : NULL;
    return likely(p) || nothrow ? p : new_failed(size, 0);
}

static inline void *cxx_new_aligned(size_t size, size_t align, bool nothrow)
{
    void *p = mmh_aligned_alloc(heap(), align, size);
    return likely(p) || nothrow ? p : new_failed(size, align);
}

/* operator new(size_t) and new[], nothrow_t, align_val_t forms */
EXPORT void *_Znwm(size_t n) { return cxx_new(n, false); }
EXPORT void *_Znam(size_t n) { return cxx_new(n, false); }
EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *t) { (void)t; return cxx_new(n, true); }
EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *t) { (void)t; return cxx_new(n, true); }
EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al) { return cxx_new_aligned(n, al, false); }
EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al) { return cxx_new_aligned(n, al, false); }
EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *t)
{
    (void)t;
    return cxx_new_aligned(n, al, true);
}
EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *t)
{
    (void)t;
    return cxx_new_aligned(n, al, true);
}

/* operator delete and delete[]: plain, sized, nothrow_t, align_val_t, and
 * sized align_val_t forms; the size and alignment are not needed. */
EXPORT void _ZdlPv(void *p) { free(p); }
EXPORT void _ZdaPv(void *p) { free(p); }
EXPORT void _ZdlPvm(void *p, size_t n) { (void)n; free(p); }
EXPORT void _ZdaPvm(void *p, size_t n) { (void)n; free(p); }
EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *t) { (void)t; free(p); }
EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *t) { (void)t; free(p); }
EXPORT void _ZdlPvSt11align_val_t(void *p, size_t al) { (void)al; free(p); }
EXPORT void _ZdaPvSt11align_val_t(void *p, size_t al) { (void)al; free(p); }
EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)n, (void)al; free(p); }
EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al) { (void)n, (void)al; free(p); }
EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *t)
{
    (void)al, (void)t;
    free(p);
}
EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *t)
{
    (void)al, (void)t;
    free(p);
}

/* The heap exists, and MMHEAP_OPTIONS is read, before main. */
static __attribute__((constructor)) void malloc_init(void)
{
    mmh_default_heap();
}
