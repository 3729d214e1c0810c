/* Commits.  mmh_writeback makes the heap's current state durable in its
 * file; mmh_commit wraps it with the checks, the lock and the statistics.
 *
 * Private mode: the ranges to write are the pages the tracker saw written
 * since the last commit (or, untracked, every in-use range), and they go
 * through the redo journal (journal.c), so the commit is atomic.  Free
 * memory handed back since becomes holes in the file afterwards.
 * Shared mode: stores are already in the page cache; the written ranges
 * are started with sync_file_range and one fdatasync makes them durable.
 * Durable, not atomic: the kernel may write pages back at any time.
 * The first failure is final: later commits fail rather than claim
 * durability over lost writes, and the file keeps its last commit. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int mmh_ranges_add(mmh_heap *h, size_t off, size_t len, void *arg)
{
    mmh_ranges *r = arg;
    if (r->n && r->v[r->n - 1].off + r->v[r->n - 1].len == off) {
        r->v[r->n - 1].len += len;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        mmh_range *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return mmh_fail(ENOMEM, "%s: out of memory for the commit's range list", h->path);
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (mmh_range){ off, len };
    return 0;
}

/* Untracked: every in-use range of the extent (the whole metadata slice of
 * free runs too: it holds their links). */
static int in_use_ranges(mmh_heap *h, mmh_ranges *r)
{
    size_t nsegs = h->mapped >> MMH_SEG_SHIFT;
    for (size_t idx = 0; idx < nsegs;) {
        uint32_t e = h->segmap[idx];
        size_t seg = idx << MMH_SEG_SHIFT, run = MMH_SEGMAP_LEN(e);
        int rc = 0;
        switch (MMH_SEGMAP_KIND(e)) {
        case MMH_SEGMAP_SLICED: {
            const mmh_segment *s = mmh_seg_at(h, idx);
            for (size_t i = 0; i < MMH_SEG_SLICES && rc == 0; i += s->pages[i].slice_count)
                if (s->pages[i].kind != MMH_PAGE_FREE)
                    rc = mmh_ranges_add(h, seg + (i << MMH_SLICE_SHIFT),
                                        (size_t)s->pages[i].slice_count << MMH_SLICE_SHIFT, r);
            run = 1;
            break;
        }
        case MMH_SEGMAP_HUGE:
            rc = mmh_ranges_add(h, seg, run << MMH_SEG_SHIFT, r);
            break;
        case MMH_SEGMAP_FREE:
            rc = mmh_ranges_add(h, seg, MMH_SLICE_SIZE, r);
            break;
        default:
            return mmh_fail(EIO, "%s: corrupt segment map at segment %zu", h->path, idx);
        }
        if (rc)
            return rc;
        idx += run;
    }
    return 0;
}

static int punch(mmh_heap *h, size_t off, size_t len, void *arg)
{
    (void)arg;
    if (mmh_file_punch(h, off, len) == 0)
        return 0;
    h->commit_errno = errno;
    return mmh_fail(errno, "%s: punching a hole at offset %zu failed: %m", h->path, off);
}

static int sync_shared(mmh_heap *h, const mmh_ranges *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (sync_file_range(h->fd, (off_t)r->v[i].off, (off_t)r->v[i].len,
                            SYNC_FILE_RANGE_WRITE) != 0)
            break; /* fdatasync below writes it all anyway */
        h->bytes_written += r->v[i].len;
    }
    if (fdatasync(h->fd) != 0) {
        h->commit_errno = errno;
        return mmh_fail(errno, "%s: fdatasync failed: %m", h->path);
    }
    return 0;
}

int mmh_writeback(mmh_heap *h)
{
    mmh_hdr *hdr = h->hdr;
    mmh_ranges r = { 0 };
    hdr->commit_seq++;
    hdr->checksum = mmh_format_checksum(hdr);
    int rc = h->track ? h->track->collect(h, mmh_ranges_add, &r) : in_use_ranges(h, &r);
    if (rc != 0)
        h->commit_errno = errno;
    else if (h->flags & MMH_SHARED)
        rc = sync_shared(h, &r);
    else if ((rc = mmh_journal_commit(h, r.v, r.n)) == 0)
        rc = mmh_punch_purged(h, punch);
    free(r.v);
    return rc;
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
        rc = mmh_fail(h->commit_errno, "%s: an earlier commit failed (%s); the file keeps the "
                      "last completed commit and the heap refuses further commits", h->path,
                      strerror(h->commit_errno));
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
