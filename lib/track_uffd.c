/* The userfaultfd tracker: async write-protect (UFFD_FEATURE_WP_ASYNC) plus
 * the PAGEMAP_SCAN ioctl (Linux 6.7).  The kernel resolves write faults by
 * itself and marks the page written; one scan returns the written ranges
 * and write-protects them again, atomically.  No signal handler, no VMA
 * splitting, and writes by the kernel (read(2) into the heap) count too.
 * The system headers may predate all this, so the ABI is spelled out. */
#define _GNU_SOURCE
#include "track.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

struct mmh_page_region {
    uint64_t start, end, categories;
};

struct mmh_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define MMH_PAGEMAP_SCAN          _IOWR('f', 16, struct mmh_pm_scan_arg)
#define MMH_PAGE_IS_WRITTEN       (1u << 1)
#define MMH_PM_SCAN_WP_MATCHING   (1u << 0)
#define MMH_PM_SCAN_CHECK_WPASYNC (1u << 1)
#define SCAN_REGIONS 512

struct uffd_state {
    int uffd;
    int pagemap;
};

static int uffd_create(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0)
        return mmh_fail(errno, "userfaultfd: %m");
    struct uffdio_api api = { .api = UFFD_API,
                              .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        int err = errno;
        close(fd);
        return mmh_fail(err, "userfaultfd: no asynchronous write-protect (Linux 6.7+): %s",
                        strerror(err));
    }
    return fd;
}

static int protect(int uffd, char *start, size_t len)
{
    struct uffdio_register reg = { .range = { (uintptr_t)start, len },
                                   .mode = UFFDIO_REGISTER_MODE_WP };
    struct uffdio_writeprotect wp = { .range = { (uintptr_t)start, len },
                                      .mode = UFFDIO_WRITEPROTECT_MODE_WP };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0 || ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
        return mmh_fail(errno, "userfaultfd: cannot write-protect %zu bytes at %p: %m", len,
                        (void *)start);
    return 0;
}

/* One scan of [start, end): written ranges, write-protected again.  Returns
 * the number of regions, with *next where the scan stopped. */
static long scan(int pagemap, char *start, char *end, struct mmh_page_region *vec,
                 char **next)
{
    struct mmh_pm_scan_arg arg = {
        .size = sizeof arg,
        .flags = MMH_PM_SCAN_WP_MATCHING | MMH_PM_SCAN_CHECK_WPASYNC,
        .start = (uintptr_t)start,
        .end = (uintptr_t)end,
        .vec = (uintptr_t)vec,
        .vec_len = SCAN_REGIONS,
        .category_mask = MMH_PAGE_IS_WRITTEN,
        .return_mask = MMH_PAGE_IS_WRITTEN,
    };
    long n = ioctl(pagemap, MMH_PAGEMAP_SCAN, &arg);
    *next = (char *)(uintptr_t)arg.walk_end;
    return n;
}

/* Does this kernel do it all?  One try on a scratch page: 0, or -1 with
 * errno and the reason set. */
static int uffd_try(void)
{
    int uffd = uffd_create();
    if (uffd < 0)
        return -1;
    int rc = -1, pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct mmh_page_region vec[SCAN_REGIONS];
    char *next;
    if (pagemap < 0) {
        mmh_fail(errno, "cannot open /proc/self/pagemap: %m");
    } else if (p == MAP_FAILED) {
        mmh_fail(errno, "cannot map a page to try userfaultfd on: %m");
    } else if (protect(uffd, p, (size_t)page) == 0) {
        p[0] = 1;
        long first = scan(pagemap, p, p + page, vec, &next);
        long again = first == 1 ? scan(pagemap, p, p + page, vec, &next) : first;
        if (first == 1 && again == 0)
            rc = 0;
        else if (first < 0 || again < 0)
            mmh_fail(errno, "PAGEMAP_SCAN (Linux 6.7+): %m");
        else
            mmh_fail(ENOTSUP, "PAGEMAP_SCAN does not report written pages (Linux 6.7+)");
    }
    int err = errno;
    if (p != MAP_FAILED)
        munmap(p, (size_t)page);
    if (pagemap >= 0)
        close(pagemap);
    close(uffd);
    errno = err;
    return rc;
}

/* A failure that answers for the life of the process: the kernel lacks a
 * feature (no syscall, an API or ioctl it does not know) or policy
 * (vm.unprivileged_userfaultfd) refuses this process.  Anything else (no
 * descriptors or memory left) may pass: it is reported, not remembered. */
static bool for_good(int err)
{
    return err == ENOSYS || err == EINVAL || err == ENOTTY || err == EPERM || err == ENOTSUP ||
           err == EOPNOTSUPP;
}

/* Only a lasting answer is kept.  -1 with ENOTSUP when the tracker cannot
 * work here, with another errno (EMFILE, ENOMEM...) when it could not be
 * tried now. */
static int uffd_probe(void)
{
    static _Atomic int verdict; /* 0 unknown, 1 works, -1 not */
    static char reason[256];    /* why not: written before verdict */
    int v = atomic_load(&verdict);
    if (v == 0) {
        if (uffd_try() == 0) {
            v = 1;
        } else if (!for_good(errno)) {
            return -1;
        } else {
            snprintf(reason, sizeof reason, "%s", mmh_errmsg());
            v = -1;
        }
        atomic_store(&verdict, v);
    }
    if (v < 0)
        return mmh_fail(ENOTSUP, "the uffd tracker is not available: %s", reason);
    return 0;
}

static int uffd_attach(mmh_heap *h)
{
    struct uffd_state *st = mmh_meta_alloc(sizeof *st);
    if (!st)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    st->uffd = uffd_create();
    st->pagemap = st->uffd < 0 ? -1 : open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (st->uffd >= 0 && st->pagemap < 0)
        mmh_fail(errno, "cannot open /proc/self/pagemap: %m");
    if (st->pagemap < 0 || protect(st->uffd, h->base, h->mapped) != 0) {
        int err = errno;
        char why[256]; /* the reason is in the buffer mmh_fail writes */
        snprintf(why, sizeof why, "%s", mmh_errmsg());
        if (st->uffd >= 0)
            close(st->uffd);
        if (st->pagemap >= 0)
            close(st->pagemap);
        mmh_meta_free(st);
        return mmh_fail(err, "%s: %s", h->path, why);
    }
    h->track.state = st;
    return 0;
}

static int uffd_extend(mmh_heap *h, size_t from, size_t to)
{
    struct uffd_state *st = h->track.state;
    return protect(st->uffd, h->base + from, to - from);
}

static int uffd_scan(mmh_heap *h, mmh_range_fn fn, void *arg)
{
    struct uffd_state *st = h->track.state;
    struct mmh_page_region vec[SCAN_REGIONS];
    char *at = h->base, *end = h->base + h->mapped;
    while (at < end) {
        char *next;
        long n = scan(st->pagemap, at, end, vec, &next);
        if (n < 0)
            return mmh_fail(errno, "%s: PAGEMAP_SCAN failed: %m", h->path);
        for (long i = 0; i < n; i++) {
            size_t off = (size_t)((char *)(uintptr_t)vec[i].start - h->base);
            size_t len = (size_t)(vec[i].end - vec[i].start);
            atomic_fetch_add(&h->track.faults, len / (size_t)sysconf(_SC_PAGESIZE));
            if (fn(h, off, len, arg) != 0)
                return -1;
        }
        if (next <= at)
            break;
        at = next;
    }
    return 0;
}

/* The kernel's own writes are tracked: nothing to prepare. */
static int uffd_touch(mmh_heap *h, size_t off, size_t len)
{
    (void)h, (void)off, (void)len;
    return 0;
}

static void uffd_detach(mmh_heap *h)
{
    struct uffd_state *st = h->track.state;
    close(st->uffd);
    close(st->pagemap);
    mmh_meta_free(st);
    h->track.state = NULL;
}

const mmh_track_ops mmh_track_uffd = {
    .kind = MMH_TRACK_UFFD,
    .probe = uffd_probe,
    .attach = uffd_attach,
    .extend = uffd_extend,
    .scan = uffd_scan,
    .touch = uffd_touch,
    .detach = uffd_detach,
};
