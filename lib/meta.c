/* The library's own memory: heap handles, paths, range lists, journal
 * tables, job records.
 *
 * Never malloc: in libmmheap-malloc.so malloc *is* the default heap, and
 * this memory is needed before that heap exists (mmh_open of it) and while
 * a heap's lock is held (a commit's range list), where malloc would
 * re-enter the heap.  Small requests come from power-of-two free lists
 * carved from 64 KiB mappings, which are kept; larger ones are mappings of
 * their own.  A 16-byte header in front of every block records its class,
 * or the length of its mapping.  Blocks are 16-byte aligned; those of
 * their own mapping start a cache line in, so that they are 64-byte
 * aligned (a heap header image, with its aligned page descriptor).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define META_HDR       16u
#define META_MIN_SHIFT 5u                            /* 32-byte blocks   */
#define META_MAX_SHIFT 12u                           /* 4 KiB blocks     */
#define META_CLASSES   (META_MAX_SHIFT - META_MIN_SHIFT + 1)
#define META_CHUNK     ((size_t)64 << 10)
#define META_MAPPED    0xffffffffu                   /* class of a mapping */
#define META_MAP_LEAD  64u                           /* mapping to block   */

typedef struct meta_hdr {
    uint32_t cls;      /* size class, or META_MAPPED */
    uint32_t pad_;
    uint64_t len;      /* META_MAPPED: bytes mapped, header included */
} meta_hdr;

_Static_assert(sizeof(meta_hdr) == META_HDR, "header keeps blocks 16-aligned");

static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;
static void *free_lists[META_CLASSES];
static char *carve, *carve_end; /* rest of the current chunk */

static size_t page_round(size_t n)
{
    return mmh_align_up(n, 4096);
}

static meta_hdr *hdr_of(void *p)
{
    return (meta_hdr *)((char *)p - META_HDR);
}

static char *mapping_of(void *p)
{
    return (char *)p - META_MAP_LEAD;
}

static size_t capacity(const meta_hdr *mh)
{
    if (mh->cls == META_MAPPED)
        return mh->len - META_MAP_LEAD;
    return ((size_t)1 << (mh->cls + META_MIN_SHIFT)) - META_HDR;
}

static void *map_block(size_t size)
{
    if (size > SIZE_MAX - META_MAP_LEAD - 4096) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = page_round(size + META_MAP_LEAD);
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    void *p = map + META_MAP_LEAD;
    *hdr_of(p) = (meta_hdr){ .cls = META_MAPPED, .len = len };
    return p;
}

/* A block of class cls, with meta_lock held. */
static void *class_block(unsigned cls)
{
    size_t bsize = (size_t)1 << (cls + META_MIN_SHIFT);
    meta_hdr *mh = free_lists[cls];
    if (mh) {
        free_lists[cls] = *(void **)((char *)mh + META_HDR);
    } else {
        if ((size_t)(carve_end - carve) < bsize) {
            char *chunk = mmap(NULL, META_CHUNK, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (chunk == MAP_FAILED)
                return NULL;
            carve = chunk;
            carve_end = chunk + META_CHUNK;
        }
        mh = (meta_hdr *)carve;
        carve += bsize;
    }
    mh->cls = cls;
    return (char *)mh + META_HDR;
}

void *mmh_meta_alloc(size_t size)
{
    if (size > ((size_t)1 << META_MAX_SHIFT) - META_HDR)
        return map_block(size);
    unsigned cls = 0;
    while (((size_t)1 << (cls + META_MIN_SHIFT)) - META_HDR < size)
        cls++;
    pthread_mutex_lock(&meta_lock);
    void *p = class_block(cls);
    pthread_mutex_unlock(&meta_lock);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *mmh_meta_calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = mmh_meta_alloc(total);
    if (p && hdr_of(p)->cls != META_MAPPED) /* mappings come zeroed */
        memset(p, 0, total);
    return p;
}

void mmh_meta_free(void *p)
{
    if (!p)
        return;
    meta_hdr *mh = hdr_of(p);
    if (mh->cls == META_MAPPED) {
        munmap(mapping_of(p), mh->len);
        return;
    }
    pthread_mutex_lock(&meta_lock);
    *(void **)p = free_lists[mh->cls];
    free_lists[mh->cls] = mh;
    pthread_mutex_unlock(&meta_lock);
}

void *mmh_meta_realloc(void *p, size_t size)
{
    if (!p)
        return mmh_meta_alloc(size);
    meta_hdr *mh = hdr_of(p);
    if (size <= capacity(mh))
        return p;
    if (mh->cls == META_MAPPED && size <= SIZE_MAX - META_MAP_LEAD - 4096) {
        size_t len = page_round(size + META_MAP_LEAD);
        char *moved = mremap(mapping_of(p), mh->len, len, MREMAP_MAYMOVE);
        if (moved == MAP_FAILED)
            return NULL;
        p = moved + META_MAP_LEAD;
        hdr_of(p)->len = len;
        return p;
    }
    void *q = mmh_meta_alloc(size);
    if (q) {
        memcpy(q, p, capacity(mh));
        mmh_meta_free(p);
    }
    return q;
}

char *mmh_meta_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = mmh_meta_alloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* fork(): the child must not inherit the lock held by a thread it lacks. */
void mmh_meta_fork_prepare(void)
{
    pthread_mutex_lock(&meta_lock);
}

void mmh_meta_fork_done(void)
{
    pthread_mutex_unlock(&meta_lock);
}
