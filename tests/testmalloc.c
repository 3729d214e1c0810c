/* testmalloc.c: the drop-in malloc helpers of the tests' helper library
 * (tests/libtestheap.la; see testutil.h): is malloc mmheap's, and how much
 * memory does it hold.
 */
#include "testutil.h"

#include <dlfcn.h>
#include <malloc.h>

mmh_heap *tu_malloc_heap(void)
{
    mmh_heap *(*fn)(void);
    *(void **)&fn = dlsym(RTLD_DEFAULT, "mmh_default_heap");
    return fn ? fn() : NULL;
}

int tu_malloc_is_mmheap(void)
{
    mmh_heap *h = tu_malloc_heap();
    if (!h)
        return 0;
    void *probe = malloc(1);
    int in = mmh_offset(h, probe) != 0;
    free(probe);
    return in;
}

int tu_malloc_testable(void)
{
#ifdef TU_ASAN
    fprintf(stderr, "malloc is AddressSanitizer's here: nothing to test\n");
    return 0;
#else
    return 1;
#endif
}

void tu_malloc_usage(size_t *in_use, size_t *footprint)
{
    if (tu_malloc_is_mmheap()) {
        struct mmh_stats st = tu_stats(tu_malloc_heap());
        *in_use = st.allocated;
        *footprint = st.size;
    } else {
        struct mallinfo2 mi = mallinfo2();
        *in_use = mi.uordblks + mi.hblkhd;
        *footprint = mi.arena + mi.hblkhd;
    }
}
