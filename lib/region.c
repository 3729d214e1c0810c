/* Address space: the reservation of max_size, the mappings of the used
 * extent inside it, growth, and handing free memory back to the system. */
#define _GNU_SOURCE
#include "track.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* New heaps go between 32 TiB and 84 TiB: above AddressSanitizer's shadow
 * (which ends near 16 TiB) and below where x86-64 Linux loads PIE
 * executables (0x555555554000 plus up to 1 TiB of randomization, their brk
 * right after), far below the top-down mmap area under 128 TiB.  A heap
 * whose reservation covered a program's image could not be opened at its
 * base by that program. */
#define ZONE_LO 0x200000000000ull
#define ZONE_HI 0x540000000000ull

/* The end of the user address space: 47 bits on x86-64 (5-level paging
 * maps higher only on request), 48 on the other 64-bit ports. */
#if defined(__x86_64__)
#define USER_TOP 0x7ffffffff000ull
#else
#define USER_TOP 0xfffffffff000ull
#endif

/* Can a heap of max_size bytes live at base?  Not at 0 or below the first
 * segment (root maps there despite mmap_min_addr, and a mapping at 0 must
 * never be asked for), nor past the user address space. */
bool mmh_region_fits(uint64_t base, uint64_t max_size)
{
    return base >= MMH_SEG_SIZE && base < USER_TOP && max_size <= USER_TOP - base;
}

/* want must pass mmh_region_fits, so that a mapping never lands at 0 and
 * NULL only ever means failure. */
static void *reserve_at(void *want, size_t size)
{
    void *p = mmap(want, size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (p != want) { /* kernels before 4.17 treat the flag as a hint */
        munmap(p, size);
        errno = EEXIST;
        return NULL;
    }
    return p;
}

/* Reserve size bytes at want (exact) or at a random segment-aligned place in
 * the zone.  NULL with errno EEXIST when want is taken, EINVAL when it is
 * outside what mmh_region_fits allows (callers check first, with a message). */
void *mmh_region_reserve(void *want, size_t size, bool exact)
{
    if (exact && !mmh_region_fits((uintptr_t)want, size)) {
        errno = EINVAL;
        return NULL;
    }
    if (exact)
        return reserve_at(want, size);
    uint64_t slots = (ZONE_HI - ZONE_LO - size) >> MMH_SEG_SHIFT;
    int last_err = ENOMEM;
    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t addr = ZONE_LO + ((mmh_random_u64() % slots) << MMH_SEG_SHIFT);
        void *p = reserve_at((void *)addr, size);
        if (p)
            return p;
        /* Any refusal means "try elsewhere": a range the kernel or a
         * tool keeps for itself (valgrind's own memory starts near 64 TiB)
         * fails with ENOMEM or EINVAL rather than EEXIST. */
        last_err = errno;
    }
    errno = last_err == EEXIST ? ENOMEM : last_err;
    return NULL;
}

/* Raise the reservation of h to max_size (a multiple of MMH_SEG_SIZE) in
 * place: the range after it must be free, and the heap's segment map must
 * have room for it (header segmap_len: the header may not be mapped yet).
 * The caller records the limit in the header. */
int mmh_region_extend(mmh_heap *h, size_t max_size, uint32_t segmap_len)
{
    size_t old = h->max_size;
    uint64_t room = (uint64_t)segmap_len << MMH_SEG_SHIFT;
    if (max_size <= old)
        return 0;
    if (max_size > room)
        return mmh_fail(EFBIG, "%s: cannot grow past %llu bytes: the heap was made by an "
                        "earlier release, whose segment map has room for no more",
                        h->path, (unsigned long long)room);
    if (!mmh_region_fits((uintptr_t)h->base, max_size))
        return mmh_fail(EINVAL, "%s: max_size %zu at base %p leaves the user address space",
                        h->path, max_size, (void *)h->base);
    /* Any refusal: valgrind, for one, answers EINVAL or ENOMEM for a range
     * that is taken. */
    if (!reserve_at(h->base + old, max_size - old))
        return mmh_fail(EADDRINUSE, "%s: cannot grow to max_size %zu in place: the range %p-%p "
                        "after the heap is in use%s%s", h->path, max_size,
                        (void *)(h->base + old), (void *)(h->base + max_size),
                        errno == EEXIST ? "" : " or refused: ",
                        errno == EEXIST ? "" : strerror(errno));
    h->max_size = max_size;
    return 0;
}

void mmh_region_release(void *base, size_t size)
{
    munmap(base, size);
}

/* Map [from, to) of the heap over its reservation.  A volatile heap's
 * growth past its file is anonymous memory. */
int mmh_region_map(mmh_heap *h, size_t from, size_t to)
{
    int prot = (h->flags & MMH_READONLY) ? PROT_READ : PROT_READ | PROT_WRITE;
    void *want = h->base + from, *p;
    if (h->fd < 0 || ((h->flags & MMH_VOLATILE) && from >= h->file_size))
        p = mmap(want, to - from, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    else
        p = mmap(want, to - from, prot,
                 MAP_FIXED | ((h->flags & MMH_SHARED) ? MAP_SHARED : MAP_PRIVATE),
                 h->fd, (off_t)from);
    if (p == MAP_FAILED)
        return mmh_fail(errno, "%s: cannot map %zu bytes at offset %zu: %m",
                        h->path, to - from, from);
    /* A hint: a kernel without transparent huge pages refuses it, and the
     * heap works the same with small pages. */
    if (h->flags & MMH_HUGEPAGES)
        (void)madvise(p, to - from, MADV_HUGEPAGE);
    return 0;
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7 */
#endif

/* Move the pages of [from, from + len) of an anonymous heap to [to, to +
 * len) without copying them: mremap moves their page table entries.  With
 * MREMAP_DONTUNMAP the source stays mapped all along (empty), so no hole
 * opens in the reservation for another mmap to land in.  Both ranges are
 * then mappings of their own (the kernel does not merge a moved anonymous
 * mapping with its neighbours): fresh memory is mapped over the source at
 * once, and over the destination when it is purged (mmh_region_purge), so
 * that the heap's mappings stay few.  -1 when the kernel refuses (older
 * than 5.7, or a tool that does not know the flag): the caller copies. */
int mmh_region_move(mmh_heap *h, size_t from, size_t to, size_t len)
{
    mmh_assert(h->fd < 0 && !((from | to | len) & (MMH_SLICE_SIZE - 1)));
    if (mremap(h->base + from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
               h->base + to) == MAP_FAILED)
        return -1;
    (void)mmh_region_map(h, from, from + len); /* failing, the range only stays apart */
    return 0;
}

/* Hand the memory of a free range back.  Anonymous memory is replaced by a
 * fresh mapping, which also joins a range that mmh_region_move made a
 * mapping of its own to its neighbours again; private file memory is
 * dropped (falling back to the file's committed bytes, whose disk space a
 * commit punches out); a shared file gets a hole. */
void mmh_region_purge(mmh_heap *h, size_t off, size_t len)
{
    if (h->fd < 0 && mmh_region_map(h, off, off + len) == 0)
        return;
    if (h->fd >= 0 && (h->flags & MMH_SHARED))
        (void)mmh_file_punch(h, off, len); /* a failure only keeps the blocks */
    else
        madvise(h->base + off, len, MADV_DONTNEED);
}

/* Make [off, off + len) of the file a hole; a file system without holes
 * keeps its blocks, which is not an error. */
int mmh_file_punch(mmh_heap *h, size_t off, size_t len)
{
    if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0 ||
        errno == EOPNOTSUPP)
        return 0;
    return -1;
}

/* Does a fault on a hole of the file need space, even in a private mapping?
 * On tmpfs and hugetlbfs it does (the page cache is the file's only store),
 * so a full one raises SIGBUS on a plain load or store.  Disk file systems
 * read a hole of a private mapping as zeros and allocate nothing: their
 * private heaps stay sparse.  Asked once per open heap. */
static bool faults_need_space(mmh_heap *h)
{
    if (!h->fs_checked) {
        struct statfs fs;
        h->fs_faults_allocate = fstatfs(h->fd, &fs) == 0 &&
                                (fs.f_type == TMPFS_MAGIC || fs.f_type == HUGETLBFS_MAGIC);
        h->fs_checked = true;
    }
    return h->fs_faults_allocate;
}

/* Back [off, off + len) of the file with space again after a purge or
 * when it grows, where a fault could need it (a shared file; a private
 * one on tmpfs), so that a full disk fails here, with ENOMEM, instead of
 * as SIGBUS on a store. */
int mmh_region_prepare(mmh_heap *h, size_t off, size_t len)
{
    if (!mmh_writes_back(h) || (!(h->flags & MMH_SHARED) && !faults_need_space(h)))
        return 0;
    if (fallocate(h->fd, 0, (off_t)off, (off_t)len) != 0)
        return mmh_fail(errno == ENOSPC ? ENOMEM : errno,
                        "%s: cannot allocate disk space for %zu bytes: %m",
                        h->path, len);
    return 0;
}

/* Extend the used extent to `extent` bytes: grow the file (checking the
 * file size limit first, since exceeding it raises SIGXFSZ) and map it. */
int mmh_region_grow(mmh_heap *h, size_t extent)
{
    size_t old = h->mapped;
    if (extent > h->max_size)
        return mmh_fail(ENOMEM, "%s: heap full: %zu bytes needed, max_size is %zu",
                        h->path, extent, h->max_size);
    if (mmh_writes_back(h)) {
        if (mmh_beyond_fsize_limit(extent))
            return mmh_fail(ENOMEM, "%s: cannot grow to %zu bytes: beyond the file size limit",
                            h->path, extent);
        /* Only ever longer: after a fork() both processes may grow the
         * same file, and cutting it back under the other's mapping would
         * make its pages there fault with SIGBUS. */
        struct stat st;
        if (fstat(h->fd, &st) != 0 ||
            ((uint64_t)st.st_size < extent && ftruncate(h->fd, (off_t)extent) != 0))
            return mmh_fail(errno == ENOSPC ? ENOMEM : errno,
                            "%s: cannot grow to %zu bytes: %m", h->path, extent);
        if (mmh_region_prepare(h, old, extent - old) != 0) {
            int err = errno;
            (void)!ftruncate(h->fd, (off_t)old); /* best effort: the error is err */
            errno = err;
            return -1;
        }
    }
    if (mmh_region_map(h, old, extent) != 0 || mmh_track_extend(h, old, extent) != 0)
        return -1;
    h->mapped = extent;
    h->hdr->extent = extent;
    return 0;
}
