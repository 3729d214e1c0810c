/* Commits.  mmh_writeback is the one function that makes the heap's state
 * durable in its file; the journaled, incremental commit replaces it.
 *
 * Private mode: every in-use range of the extent is written back from the
 * mapping, free ranges whose memory was handed back become holes, and the
 * header goes last, after the data is synced.  Shared mode: msync.
 * The first failure is final: later commits fail rather than claim
 * durability over lost writes. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int write_failed(mmh_heap *h, int err, const char *what, size_t off)
{
    h->commit_errno = err;
    return mmh_fail(err, "%s: %s at offset %zu failed: %s", h->path, what, off, strerror(err));
}

static int write_range(mmh_heap *h, size_t off, size_t len)
{
    while (len) {
        ssize_t n = pwrite(h->fd, h->base + off, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return write_failed(h, n < 0 ? errno : EIO, "write", off);
        off += (size_t)n;
        len -= (size_t)n;
        h->bytes_written += (uint64_t)n;
    }
    return 0;
}

static int punch_range(mmh_heap *h, size_t off, size_t len)
{
    if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0 ||
        errno == EOPNOTSUPP)
        return 0;
    return write_failed(h, errno, "hole punch", off);
}

/* Write segment idx's in-use spans and punch its handed-back free spans. */
static int writeback_sliced(mmh_heap *h, size_t idx)
{
    mmh_segment *s = mmh_seg_at(h, idx);
    size_t seg = idx << MMH_SEG_SHIFT;
    for (size_t i = 0; i < MMH_SEG_SLICES;) {
        const mmh_page *pg = &s->pages[i];
        size_t off = seg + (i << MMH_SLICE_SHIFT), len = (size_t)pg->slice_count << MMH_SLICE_SHIFT;
        int rc = 0;
        if (pg->kind != MMH_PAGE_FREE)
            rc = i == 0 && idx == 0 ? write_range(h, MMH_HDR_SIZE, len - MMH_HDR_SIZE)
                                    : write_range(h, off, len);
        else if (pg->flags & MMH_PF_PURGED)
            rc = punch_range(h, off, len);
        if (rc)
            return rc;
        i += pg->slice_count;
    }
    return 0;
}

static int writeback_private(mmh_heap *h)
{
    size_t nsegs = h->mapped >> MMH_SEG_SHIFT;
    for (size_t idx = 0; idx < nsegs;) {
        uint32_t e = h->segmap[idx];
        size_t run = 1, seg = idx << MMH_SEG_SHIFT;
        int rc = 0;
        switch (MMH_SEGMAP_KIND(e)) {
        case MMH_SEGMAP_SLICED:
            rc = writeback_sliced(h, idx);
            break;
        case MMH_SEGMAP_HUGE:
            run = MMH_SEGMAP_LEN(e);
            rc = write_range(h, seg, run << MMH_SEG_SHIFT);
            break;
        case MMH_SEGMAP_FREE: {
            const mmh_segment *s = mmh_seg_at(h, idx);
            run = MMH_SEGMAP_LEN(e);
            rc = write_range(h, seg, MMH_SLICE_SIZE);
            if (!rc && (s->flags & MMH_PF_PURGED))
                rc = punch_range(h, seg + MMH_SLICE_SIZE, (run << MMH_SEG_SHIFT) - MMH_SLICE_SIZE);
            break;
        }
        default:
            return write_failed(h, EIO, "write-back: corrupt segment map", seg);
        }
        if (rc)
            return rc;
        idx += run;
    }
    if (fdatasync(h->fd) != 0)
        return write_failed(h, errno, "fdatasync", 0);
    if (write_range(h, 0, MMH_HDR_SIZE) != 0)
        return -1;
    if (fdatasync(h->fd) != 0)
        return write_failed(h, errno, "fdatasync", 0);
    return 0;
}

int mmh_writeback(mmh_heap *h)
{
    mmh_hdr *hdr = h->hdr;
    hdr->commit_seq++;
    hdr->checksum = mmh_format_checksum(hdr);
    if (h->flags & MMH_SHARED) {
        if (msync(h->base, h->mapped, MS_SYNC) != 0)
            return write_failed(h, errno, "msync", 0);
        h->bytes_written += h->mapped;
        return 0;
    }
    return writeback_private(h);
}

static uint64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mmh_commit(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_commit: heap is NULL");
    if (h->fd < 0)
        return mmh_fail(EINVAL, "%s: nothing to commit to (use mmh_snapshot to save it)", h->path);
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: heap is open read-only", h->path);
    pthread_mutex_lock(&h->lock);
    int rc;
    if (h->commit_errno)
        rc = mmh_fail(h->commit_errno, "%s: an earlier commit failed (%s); the heap "
                      "refuses further commits", h->path, strerror(h->commit_errno));
    else {
        uint64_t start = now_ns(CLOCK_MONOTONIC);
        rc = mmh_writeback(h);
        if (rc == 0) {
            h->commits++;
            h->last_commit_ns = now_ns(CLOCK_MONOTONIC) - start;
            h->last_commit_time = now_ns(CLOCK_REALTIME);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
