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
#include <stdio.h>
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
        mmh_range *v = mmh_meta_realloc(r->v, cap * sizeof *v);
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
int mmh_in_use_ranges(mmh_heap *h, mmh_ranges *r)
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

/* The union of two ascending range lists, into *dst. */
int mmh_ranges_merge(mmh_heap *h, mmh_ranges *dst, const mmh_ranges *add)
{
    mmh_ranges out = { 0 };
    size_t i = 0, j = 0;
    while (i < dst->n || j < add->n) {
        const mmh_range *next = j == add->n || (i < dst->n && dst->v[i].off <= add->v[j].off)
                                    ? &dst->v[i++] : &add->v[j++];
        mmh_range *last = out.n ? &out.v[out.n - 1] : NULL;
        if (last && next->off <= last->off + last->len) {
            if (next->off + next->len > last->off + last->len)
                last->len = next->off + next->len - last->off;
        } else if (mmh_ranges_add(h, next->off, next->len, &out) != 0) {
            mmh_meta_free(out.v);
            return -1;
        }
    }
    mmh_meta_free(dst->v);
    *dst = out;
    return 0;
}

/* The commit whose journal is durable has happened, even where writing it
 * into the heap file then failed (err): its journal stays complete and is
 * replayed before it is reused, by the next commit or open.  A full disk
 * may clear up, so the next commit tries again; any other failure of the
 * heap file is final, since a retried sync may lie. */
void mmh_commit_logged(mmh_heap *h, int err)
{
    h->journal_pending = true;
    h->commit_errno = mmh_write_error_final(err) ? err : 0;
}

/* Does a failed write or sync with err end the heap's commits?  A full
 * disk may clear up; any other failure may have lost writes that a
 * retried sync would not report. */
bool mmh_write_error_final(int err)
{
    return err != ENOSPC && err != EDQUOT;
}

/* Before a commit reuses the journal: replay the one an earlier commit or
 * job left complete (or may have). */
static int replay_pending(mmh_heap *h)
{
    if (!h->journal_pending)
        return 0;
    if (mmh_journal_recover(h->path, h->fd, false, NULL) != 0) {
        int err = errno;
        char why[256];
        snprintf(why, sizeof why, "%s", mmh_errmsg());
        if (mmh_write_error_final(err))
            h->commit_errno = err;
        return mmh_fail(err, "an earlier commit is durable in %s but not yet in the heap "
                        "file, and copying it there failed: %s", h->journal_path, why);
    }
    h->journal_pending = false;
    return 0;
}

/* Start a commit: a new sequence number in the header, and the ranges to
 * write: the pages written since the last commit (every in-use range when
 * untracked) and those of a background job that failed. */
int mmh_commit_ranges(mmh_heap *h, mmh_ranges *r)
{
    mmh_hdr *hdr = h->hdr;
    if (replay_pending(h) != 0)
        return -1;
    hdr->commit_seq++;
    hdr->checksum = mmh_format_checksum(hdr);
    int rc = h->track ? h->track->collect(h, mmh_ranges_add, r) : mmh_in_use_ranges(h, r);
    if (rc == 0)
        rc = mmh_track_resume(h);
    if (rc == 0 && h->retry.n && (rc = mmh_ranges_merge(h, r, &h->retry)) == 0) {
        /* They are this commit's now; if it fails, they come back (a job)
         * or the heap takes no more commits. */
        mmh_meta_free(h->retry.v);
        h->retry = (mmh_ranges){ 0 };
    }
    if (rc != 0)
        h->commit_errno = errno;
    return rc;
}

/* Make the ranges durable.  No allocation (a job's child runs this): a
 * private heap's journal table goes in `table`, from mmh_journal_table_new.
 * 0: done; 1: committed, not yet in the heap file (mmh_journal_commit),
 * with errno the failure; -1: failed, nothing committed. */
int mmh_commit_write(mmh_heap *h, const mmh_ranges *r, void *table)
{
    if (h->flags & MMH_SHARED)
        return sync_shared(h, r);
    mmh_inst_bulk_begin(); /* the journal reads and writes free blocks too */
    int rc = mmh_journal_commit(h, r->v, r->n, table), err = errno;
    mmh_inst_bulk_end();
    errno = err;
    /* Holes go in only after the commit's pages are in place. */
    return rc != 0 ? rc : mmh_punch_purged(h, punch);
}

int mmh_writeback(mmh_heap *h)
{
    mmh_ranges r = { 0 };
    void *table = NULL;
    int rc = mmh_commit_ranges(h, &r);
    if (rc == 0 && !(h->flags & MMH_SHARED) && !(table = mmh_journal_table_new(h, &r)))
        rc = -1;
    if (rc == 0 && (rc = mmh_commit_write(h, &r, table)) == 1) {
        mmh_commit_logged(h, errno);
        rc = 0;
    }
    mmh_meta_free(table);
    mmh_meta_free(r.v);
    return rc;
}

uint64_t mmh_now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Can h commit now?  0, or -1 with the reason.  Caller holds h->lock. */
int mmh_commit_check(mmh_heap *h, const char *fn)
{
    if (h->fd < 0 || (h->flags & MMH_VOLATILE))
        return mmh_fail(EINVAL, "%s: %s: the heap has no file to commit to (mmh_snapshot saves "
                        "it)", h->path, fn);
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: %s: heap is open read-only", h->path, fn);
    if (!mmh_file_is_named(h->fd, h->dir_fd, mmh_base_name(h->path)))
        return mmh_fail(ESTALE, "%s: %s: the name no longer holds this heap's file (another "
                        "file was renamed over it, or it was removed); a commit would go where "
                        "no open finds it", h->path, fn);
    if (h->commit_errno && h->journal_pending) {
        errno = h->commit_errno;
        return mmh_fail(h->commit_errno, "%s: an earlier commit is durable in %s but writing "
                        "it into the heap file failed (%m); the next open replays it, and "
                        "this heap refuses further commits", h->path, h->journal_path);
    }
    if (h->commit_errno) {
        errno = h->commit_errno;
        return mmh_fail(h->commit_errno, "%s: an earlier commit failed (%m); the file keeps "
                        "the last completed commit and the heap refuses further commits",
                        h->path);
    }
    return 0;
}

void mmh_commit_done(mmh_heap *h, uint64_t ns)
{
    h->commits++;
    h->last_commit_ns = ns;
    h->last_commit_time = mmh_now_ns(CLOCK_REALTIME);
}

int mmh_commit(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_commit: heap is NULL");
    pthread_mutex_lock(&h->job_lock);
    mmh_job_reap(h, false);
    pthread_mutex_lock(&h->lock);
    int rc = mmh_commit_check(h, "mmh_commit");
    if (rc == 0) {
        uint64_t start = mmh_now_ns(CLOCK_MONOTONIC);
        rc = mmh_writeback(h);
        if (rc == 0)
            mmh_commit_done(h, mmh_now_ns(CLOCK_MONOTONIC) - start);
    }
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&h->job_lock);
    return rc;
}
