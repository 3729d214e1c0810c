/* testheap.c: the heap helpers of the tests' helper library
 * (tests/libtestheap.la; see testutil.h): the checking mmh_open and
 * mmh_close wrappers, configurations, statistics.
 */
#include "config.h"
#include "testutil.h"

/* The heaps' live check, at points where the test's own thread has the
 * heap to itself (where is "open" or "close").  Other threads and forked
 * children are left out: cmocka cannot fail a test from them, and a child
 * may share a heap's memory with the test.  mmh_check comes with
 * --enable-debug (MMH_DEBUG). */
static void tu_live_check(mmh_heap *h, const char *where)
{
#if defined(MMH_DEBUG)
    if (tu_heap_checks && tu_in_test_thread() && mmh_check(h) != 0)
        fail_msg("mmh_check at %s: %s", where, mmh_errmsg());
#else
    (void)h;
    (void)where;
#endif
}

/* The open file heaps, to check their files once closed. */
#define TU_HEAPS 64
static struct {
    mmh_heap *h;
    char      path[PATH_MAX];
} tu_heaps[TU_HEAPS];
static pthread_mutex_t tu_heaps_lock = PTHREAD_MUTEX_INITIALIZER;

mmh_heap *tu_open(const char *path, const mmh_config *cfg)
{
    mmh_heap *h = (mmh_open)(path, cfg);
    if (!h)
        return h;
    tu_live_check(h, "open");
    if (!path || !getenv("MMH_MMHEAP_TOOL") || strlen(path) >= PATH_MAX)
        return h;
    pthread_mutex_lock(&tu_heaps_lock);
    for (int i = 0; i < TU_HEAPS; i++)
        if (!tu_heaps[i].h) {
            tu_heaps[i].h = h;
            strcpy(tu_heaps[i].path, path);
            break;
        }
    pthread_mutex_unlock(&tu_heaps_lock);
    return h;
}

int tu_close(mmh_heap *h)
{
    char path[PATH_MAX] = "";
    pthread_mutex_lock(&tu_heaps_lock);
    for (int i = 0; h && i < TU_HEAPS; i++)
        if (tu_heaps[i].h == h) {
            strcpy(path, tu_heaps[i].path);
            tu_heaps[i].h = NULL;
        }
    pthread_mutex_unlock(&tu_heaps_lock);
    if (h)
        tu_live_check(h, "close");
    int rc = (mmh_close)(h), err = errno;
    if (path[0] && access(path, F_OK) == 0)
        tu_check_heap_file(path);
    errno = err;
    return rc;
}

mmh_config tu_cfg(unsigned flags, size_t size, size_t max_size)
{
    mmh_config c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    c.size = size;
    c.max_size = max_size;
    return c;
}

struct mmh_stats tu_stats(mmh_heap *h)
{
    struct mmh_stats st;
    memset(&st, 0, sizeof st);
    int rc = mmh_stats(h, &st);
    if (rc != 0)
        fail_msg("mmh_stats failed: %s", mmh_errmsg());
    return st;
}

int tu_in_heap(const struct mmh_stats *st, const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    return a >= st->base && a + len <= st->base + st->size && a + len >= a;
}

void *tu_root_in_heap(mmh_heap *h, size_t len, struct mmh_stats *st)
{
    if (mmh_stats(h, st) != 0)
        return NULL;
    void *r = mmh_root(h);
    return r && tu_in_heap(st, r, len) ? r : NULL;
}
