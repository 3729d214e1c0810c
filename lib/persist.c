/* Persistence: how the changes of a file heap become durable.  The whole
 * commit protocol is here, and so is all of its state (struct
 * mmh_persist): nothing else writes it.
 *
 * Private mode (the default) commits through a write-ahead log, FILE.wal
 * (its format is in wal.c):
 *
 *   1. Commit.  At the quiescent point, under h->lock: the pages written
 *      since the last commit (the tracker's; every in-use range when
 *      untracked), and the free ranges handed back since, which become
 *      holes.  They are appended to the log as one commit: the pages copied
 *      once into a buffer, checksummed there and written, then the head
 *      with the record table, and one fdatasync of the log.  That sync is
 *      the commit point.  Nothing is written into the heap file.
 *   2. Checkpoint.  A thread of the process (and mmh_close, last) copies
 *      the commits after the log's mark from the log into the heap file, in
 *      commit order, page 0 (the header) last: pages, fdatasync, header,
 *      fdatasync.  Only then does it advance the mark in the log header and
 *      sync the log.  It reads the log, never the mapping, which has moved
 *      on; and it ends where the log's tail was when it began, so it can
 *      stop at any commit.
 *   3. Laps.  Once every commit is checkpointed and the mark durable, the
 *      next commit starts a new lap at the front of the log with a new salt,
 *      its header written before the commit and synced with it.  A commit
 *      that does not fit the rest of the log while older ones still wait
 *      for a checkpoint wraps: a new lap at the front that continues the
 *      chain, below the durable mark (wal.c).  Either way the mark is
 *      durable before a lap overwrites anything, so recovery never reads
 *      half-overwritten commits it would still replay.  Only a commit that
 *      finds no room even so waits for a checkpoint.  The log is zero-filled (an fdatasync of blocks not yet
 *      written commits file system metadata too), and grown, zero-filled,
 *      when commits are large for it, up to WAL_MAX; a commit larger than
 *      that extends the file as it goes.
 *   4. Recovery.  An open lays the complete commits after the mark over the
 *      private mapping (wal.c), and the checkpointer writes them into the
 *      heap file soon after; a torn commit at the end fails its checksums
 *      and is overwritten by the next commit.
 *
 * Failures.  The first failed write or sync of the log is final: later
 * commits fail rather than claim durability over lost writes (a retried
 * sync may lie).  A failed write or sync of the heap file stops checkpoints
 * for good, and with them commits; the log keeps every commit, and the next
 * open replays it.  A full disk is the exception in both: the commit fails,
 * or the checkpoint is retried later, and nothing is final.
 *
 * Background commits (mmh_commit_bg): the parent prepares the commit under
 * h->lock, deciding its place in the log (mmh_persist_job_prepare); the
 * forked child appends it (mmh_persist_job_run) and reports the result,
 * which the parent hands back here (mmh_persist_job_done).  While the child
 * owns the tail nothing else appends, starts a lap or extends the log; a
 * commit the child never reported is overwritten from its start.
 *
 * Shared mode: stores are in the page cache already; the written ranges are
 * started with sync_file_range and one fdatasync makes them durable.
 * Durable, not atomic: the kernel may write pages back at any time.
 *
 * Persistence belongs to the process that opened the heap: after a fork()
 * of the program, commits in the child fail and its mmh_close only unmaps.
 */
#define _GNU_SOURCE
#include "fileio.h"
#include "persist.h"
#include "track.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WAL_INITIAL  ((uint64_t)1 << 20)  /* zero-filled when the log is made   */
#define WAL_MAX      ((uint64_t)64 << 20) /* it grows up to this (zero-filled)  */
#define WAL_COMMITS  16                   /* to hold this many commits of a size */
#define CKPT_FILL    2                    /* checkpoint at half of the log       */
#define CKPT_AGE_NS  ((uint64_t)2000000000) /* or when a commit waited this long */
#define RETRY_NS     ((uint64_t)1000000000) /* after a full disk                  */
#define CKPT_STREAM  ((uint64_t)1 << 20)  /* a checkpoint starts write-back each */

struct mmh_persist {
    /* Fixed at open. */
    const char *path;        /* the heap's                                    */
    int         heap_fd;     /* the heap's descriptor (h->fd)                 */
    int         wal_fd;      /* the commits'; -1: shared mode, no log          */
    int         ckpt_fd;     /* the checkpoints' own open of the log: an open
                                file description reports a write error to one
                                sync only, and commits must see every one     */
    char       *wal_path;
    pid_t       owner;

    /* The commit path's (under h->lock, or in a job's child). */
    int         final_err;   /* a failed write or sync of the log: no commits */
    mmh_ranges  retry;       /* pages of a failed background commit           */
    char       *head_buf;    /* a commit's head and record table              */
    size_t      head_cap;
    char       *copy_buf;    /* MMH_WAL_CHUNK: pages on their way to the log   */

    /* Shared with the checkpointer, under mutex.  tail and the lap change
     * only on the commit path, which also holds h->lock, so it may read
     * them without the mutex. */
    pthread_mutex_t mutex;
    pthread_cond_t  cond;    /* work for the checkpointer; an extension done */
    mmh_wal_hdr hdr;         /* the log header as last written               */
    mmh_wal_pos tail;        /* after the last durable commit                */
    mmh_wal_pos done;        /* everything before it is in the heap file, and
                                the mark saying so is durable                */
    uint64_t    done_salt;   /* the lap done is in                           */
    uint64_t    cap;         /* the log's zero-filled size (commits past it
                                extend the file)                             */
    uint64_t    oldest_ns;   /* when the first commit after done was made    */
    uint64_t    ckpt_try_ns; /* when the last checkpoint failed              */
    bool        appending;   /* a commit between plan and append's end       */
    bool        stop;
    int         ckpt_err;    /* the last checkpoint's failure, 0 after success */
    bool        ckpt_final;  /* ...and it stopped checkpoints for good        */

    /* The checkpoints'. */
    pthread_mutex_t ckpt_lock; /* one at a time: the thread, a full log, close */
    char       *ckpt_buf;    /* MMH_WAL_CHUNK                                 */
    char        hdr_page[MMH_HDR_SIZE];
    pthread_t   thread;
    bool        thread_started;
};

/* One commit through the log: its ranges, its place, and its outcome. */
struct mmh_persist_job {
    mmh_ranges  ranges, punches;
    mmh_wal_pos at;          /* where it starts and what it continues        */
    uint64_t    salt;
    size_t      nrecords, head_bytes, data_bytes;
    mmh_wal_pos end;         /* after it, once appended                      */
    int         err;         /* of a failed append                           */
    bool        final;       /* ...and it is final                           */
};

/* Does a failed write or sync with err end the heap's commits?  A full
 * disk may clear up; any other failure may have lost writes that a
 * retried sync would not report. */
bool mmh_write_error_final(int err)
{
    return err != ENOSPC && err != EDQUOT;
}

/* ---- the log header and laps (under mutex) --------------------------- */

static int hdr_put(mmh_persist *p)
{
    p->hdr.counter++;
    if (mmh_wal_hdr_write(p->wal_fd, &p->hdr) == 0)
        return 0;
    return mmh_fail(errno ? errno : EIO, "%s: writing the header of its log %s failed: %m",
                    p->path, p->wal_path);
}

/* What starting a lap changes, to be put back if its header cannot be
 * written: a commit must not go where no header leads. */
typedef struct lap_state {
    mmh_wal_hdr hdr;
    mmh_wal_pos tail, done;
    uint64_t    done_salt;
} lap_state;

static lap_state lap_saved(const mmh_persist *p)
{
    return (lap_state){ p->hdr, p->tail, p->done, p->done_salt };
}

static int lap_written(mmh_persist *p, const lap_state *was)
{
    if (hdr_put(p) == 0)
        return 0;
    int err = errno;
    p->hdr = was->hdr;
    p->tail = was->tail;
    p->done = was->done;
    p->done_salt = was->done_salt;
    errno = err;
    return -1;
}

/* Everything is checkpointed: the next commit goes to the front of the log
 * under a new salt.  The header is synced with that commit. */
static int lap_restart(mmh_persist *p)
{
    const lap_state was = lap_saved(p);
    p->hdr.salt = mmh_random_u64() | 1;
    p->hdr.prev_salt = p->hdr.prev_end = 0;
    p->hdr.mark = MMH_WAL_START;
    p->hdr.mark_seq = p->tail.seq;
    p->hdr.mark_chain = p->hdr.salt;
    p->tail = p->done = (mmh_wal_pos){ MMH_WAL_START, p->tail.seq, p->hdr.salt };
    p->done_salt = p->hdr.salt;
    return lap_written(p, &was);
}

/* The lap is full and commits of it still wait for a checkpoint: the next
 * commit goes to the front of the log under a new salt all the same,
 * continuing the chain, and the header names the older lap and its end.
 * The new lap stays below the durable mark (room). */
static int lap_wrap(mmh_persist *p)
{
    const lap_state was = lap_saved(p);
    p->hdr.prev_salt = p->hdr.salt;
    p->hdr.prev_end = p->tail.off;
    p->hdr.salt = mmh_random_u64() | 1;
    p->tail.off = MMH_WAL_START;
    return lap_written(p, &was);
}

/* Bytes of commits after the durable mark. */
static uint64_t pending(const mmh_persist *p)
{
    if (p->done_salt == p->hdr.salt)
        return p->tail.off - p->done.off;
    return p->hdr.prev_end - p->done.off + p->tail.off - MMH_WAL_START;
}

/* Where the current lap must end: the log's size, or in a wrapped lap the
 * durable mark in the older one. */
static uint64_t room(const mmh_persist *p)
{
    if (!p->hdr.prev_end)
        return p->cap;
    return p->done_salt == p->hdr.prev_salt ? p->done.off : MMH_WAL_START;
}

/* ---- writing a commit ------------------------------------------------ */

static size_t data_records(const mmh_ranges *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += (r->v[i].len + MMH_WAL_CHUNK - 1) / MMH_WAL_CHUNK;
    return n;
}

static int checkpoint(mmh_persist *p);

/* Zero-fill the log from p->cap to size and sync it.  Caller holds h->lock
 * (no commit in flight) and mutex.  A failure leaves the log as it was. */
static int grow(mmh_persist *p, uint64_t size)
{
    int rc = 0;
    memset(p->copy_buf, 0, MMH_WAL_CHUNK);
    for (uint64_t at = p->cap; rc == 0 && at < size; at += MMH_WAL_CHUNK)
        rc = mmh_pwrite_all(p->wal_fd, p->copy_buf,
                            size - at < MMH_WAL_CHUNK ? size - at : MMH_WAL_CHUNK, at);
    if (rc == 0 && fdatasync(p->wal_fd) == 0) {
        p->cap = size;
        return 0;
    }
    int err = errno ? errno : EIO;
    (void)!ftruncate(p->wal_fd, (off_t)p->cap);
    return mmh_fail(err, "%s: cannot grow its log %s to %llu bytes: %s", p->path, p->wal_path,
                    (unsigned long long)size, strerrordesc_np(err));
}

/* Decide where commit c goes, after making room for it.  Caller holds
 * h->lock; no other commit is in flight. */
static int plan(mmh_heap *h, mmh_persist_job *c)
{
    mmh_persist *p = h->persist.state;
    mmh_assert_locked(h);
    mmh_assert(!p->appending); /* one commit in flight */
    c->nrecords = data_records(&c->ranges) + c->punches.n;
    c->head_bytes = mmh_wal_head_bytes(c->nrecords);
    c->data_bytes = 0;
    for (size_t i = 0; i < c->ranges.n; i++)
        c->data_bytes += c->ranges.v[i].len;
    if (c->head_bytes > p->head_cap) {
        char *buf = mmh_meta_realloc(p->head_buf, c->head_bytes);
        if (!buf)
            return mmh_fail(ENOMEM, "%s: out of memory for a commit of %zu ranges", h->path,
                            c->nrecords);
        p->head_buf = buf;
        p->head_cap = c->head_bytes;
    }
    uint64_t need = c->head_bytes + c->data_bytes;
    int rc = 0;
    pthread_mutex_lock(&p->mutex);
    /* A log that holds only a few commits of this size grows. */
    uint64_t want = need * WAL_COMMITS < WAL_MAX ? mmh_align_up(need * WAL_COMMITS, MMH_WAL_CHUNK)
                                                 : WAL_MAX;
    if (want > p->cap && need * CKPT_FILL * 2 > p->cap - MMH_WAL_START &&
        !mmh_beyond_fsize_limit(want))
        (void)grow(p, want); /* else the commit extends the log as it writes */
    bool all_done = p->done_salt == p->hdr.salt && p->done.off == p->tail.off;
    if (p->tail.off + need > room(p) && p->tail.off > MMH_WAL_START && !all_done &&
        !p->hdr.prev_end && p->done_salt == p->hdr.salt &&
        MMH_WAL_START + need <= p->done.off) {
        /* Full, but the front of the log is checkpointed: wrap. */
        if ((rc = lap_wrap(p)) != 0 && mmh_write_error_final(errno))
            p->final_err = errno;
    } else if (p->tail.off + need > room(p) && p->tail.off > MMH_WAL_START && !all_done) {
        /* The log is full: wait for a checkpoint of all of it. */
        pthread_mutex_unlock(&p->mutex);
        if ((rc = checkpoint(p)) != 0)
            rc = mmh_fail(errno, "%s: every commit so far is durable in %s but not yet in the "
                          "heap file: the checkpoint that makes room in the log failed (%s)",
                          h->path, p->wal_path, strerrordesc_np(errno));
        pthread_mutex_lock(&p->mutex);
    }
    if (rc == 0 && p->done_salt == p->hdr.salt && p->done.off == p->tail.off &&
        p->tail.off > MMH_WAL_START && (rc = lap_restart(p)) != 0 &&
        mmh_write_error_final(errno))
        p->final_err = errno;
    if (rc == 0 && mmh_beyond_fsize_limit(p->tail.off + need))
        rc = mmh_fail(EFBIG, "%s: this commit (%llu bytes in the log) would exceed the file "
                      "size limit", h->path, (unsigned long long)need);
    if (rc == 0) {
        c->at = p->tail;
        c->salt = p->hdr.salt;
        p->appending = true;
        mmh_assert(c->at.off >= MMH_WAL_START && c->at.off % MMH_WAL_ALIGN == 0);
        mmh_assert(c->head_bytes % MMH_WAL_ALIGN == 0 && c->data_bytes % MMH_WAL_ALIGN == 0);
    }
    pthread_mutex_unlock(&p->mutex);
    return rc;
}

/* Write a and b back to back at off. */
static int pwrite2(int fd, const void *a, size_t alen, const void *b, size_t blen, size_t off)
{
    struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
    ssize_t n;
    while ((n = mmh_pwritev(fd, iov, blen ? 2 : 1, (off_t)off)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -1;
    if ((size_t)n < alen)
        return mmh_pwrite_all(fd, (const char *)a + n, alen - (size_t)n, off + (size_t)n) ||
               mmh_pwrite_all(fd, b, blen, off + alen);
    size_t done_b = (size_t)n - alen;
    return done_b < blen ? mmh_pwrite_all(fd, (const char *)b + done_b, blen - done_b,
                                          off + alen + done_b)
                         : 0;
}

/* Append the planned commit c of the mapping at base to the log and sync
 * it.  Async-signal-safe and allocation-free: a job's child runs it. */
static int append(mmh_persist *p, mmh_persist_job *c, const char *base, uint64_t extent)
{
    mmh_wal_head *head = (mmh_wal_head *)p->head_buf;
    mmh_wal_rec *rec = (mmh_wal_rec *)(head + 1);
    memset(head, 0, c->head_bytes);
    memcpy(head->magic, MMH_WAL_COMMIT, sizeof head->magic);
    head->salt = c->salt;
    head->seq = c->at.seq + 1;
    head->prev_chain = c->at.chain;
    head->extent = extent;
    head->nrecords = c->nrecords;
    head->head_bytes = c->head_bytes;
    head->data_bytes = c->data_bytes;

    /* The data: each range copied once into the buffer, hashed there, and
     * written from there (the hash covers the bytes written). */
    size_t data_at = c->at.off + c->head_bytes, fill = 0, k = 0;
    bool flushed = false;
    errno = 0;
    for (size_t i = 0; i < c->ranges.n; i++) {
        for (size_t done = 0; done < c->ranges.v[i].len; done += MMH_WAL_CHUNK, k++) {
            size_t off = c->ranges.v[i].off + done, len = c->ranges.v[i].len - done;
            len = len < MMH_WAL_CHUNK ? len : MMH_WAL_CHUNK;
            if (fill + len > MMH_WAL_CHUNK) {
                if (mmh_pwrite_all(p->wal_fd, p->copy_buf, fill, data_at) != 0)
                    goto failed;
                data_at += fill;
                fill = 0;
                flushed = true;
            }
            mmh_copy_unchecked(p->copy_buf + fill, base + off, len);
            rec[k] = (mmh_wal_rec){ .off = off, .len = len, .kind = MMH_WAL_DATA,
                                    .hash = mmh_hash64(p->copy_buf + fill, len, off ^ head->seq) };
            fill += len;
        }
    }
    for (size_t i = 0; i < c->punches.n; i++, k++)
        rec[k] = (mmh_wal_rec){ .off = c->punches.v[i].off, .len = c->punches.v[i].len,
                                .kind = MMH_WAL_PUNCH };
    mmh_assert(k == c->nrecords && data_at + fill == c->at.off + c->head_bytes + c->data_bytes);
    head->hash = mmh_wal_head_hash(head);
    /* A small commit is one write: head and data are adjacent. */
    if (flushed ? mmh_pwrite_all(p->wal_fd, p->copy_buf, fill, data_at) != 0 ||
                      mmh_pwrite_all(p->wal_fd, head, c->head_bytes, c->at.off) != 0
                : pwrite2(p->wal_fd, head, c->head_bytes, p->copy_buf, fill, c->at.off) != 0)
        goto failed;
    if (fdatasync(p->wal_fd) != 0)
        goto failed;
    c->end = (mmh_wal_pos){ c->at.off + c->head_bytes + c->data_bytes, head->seq, head->hash };
    return 0;
failed:
    c->err = errno ? errno : EIO;
    c->final = mmh_write_error_final(c->err);
    /* A commit reported failed must not replay: even after a failed sync
     * its bytes may all be there. */
    static const char unmagic[sizeof head->magic];
    (void)!mmh_pwrite_all(p->wal_fd, unmagic, sizeof unmagic, c->at.off);
    errno = c->err;
    return mmh_fail(c->err, "%s: writing commit %llu to its log %s failed: %m", p->path,
                    (unsigned long long)head->seq, p->wal_path);
}

/* The commit path's end of an append: the new tail, and the checkpointer
 * woken when the log fills or a commit waits long. */
static void appended(mmh_persist *p, const mmh_persist_job *c, bool ok)
{
    pthread_mutex_lock(&p->mutex);
    p->appending = false;
    if (ok) {
        /* The commit continues the tail it was planned at, by one. */
        mmh_assert(c->at.seq == p->tail.seq && c->at.chain == p->tail.chain);
        mmh_assert(c->end.seq == c->at.seq + 1 && c->end.off > c->at.off);
        p->tail = c->end;
        if (p->tail.off > p->cap)
            p->cap = p->tail.off;
        if (!p->oldest_ns)
            p->oldest_ns = mmh_now_ns(CLOCK_MONOTONIC);
        if (pending(p) >= p->cap / CKPT_FILL)
            pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->mutex);
}

/* ---- checkpoints -------------------------------------------------------- */

/* Copy the commits from the mark of header w up to the one ending at to
 * from the log into the heap file, in order, the header page last; *out:
 * where they ended, and the lap it is in. */
static int apply(mmh_persist *p, const mmh_wal_hdr *w, mmh_wal_pos to, mmh_wal_pos *out,
                 uint64_t *out_salt)
{
    mmh_wal_cursor c;
    mmh_wal_cursor_at_mark(&c, p->ckpt_fd, w, to.off);
    bool have_hdr = false;
    struct stat st;
    int rc = fstat(p->heap_fd, &st);
    uint64_t size = (uint64_t)st.st_size, bytes = 0;
    errno = 0;
    while (rc == 0 && (rc = mmh_wal_next(&c, false)) == 1) {
        const mmh_wal_head *head = (const mmh_wal_head *)c.table;
        const mmh_wal_rec *rec = (const mmh_wal_rec *)(head + 1);
        uint64_t at = c.at + head->head_bytes;
        rc = 0;
        /* The file only grows (a shorter one would fault the mapping). */
        if (size < head->extent && (rc = ftruncate(p->heap_fd, (off_t)head->extent)) == 0)
            size = head->extent;
        for (uint64_t i = 0; rc == 0 && i < head->nrecords; i++) {
            if (rec[i].kind == MMH_WAL_PUNCH) {
                /* Holes only give blocks back: a failure keeps them. */
                (void)!fallocate(p->heap_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 (off_t)rec[i].off, (off_t)rec[i].len);
                continue;
            }
            size_t skip = 0, len = rec[i].len;
            if (mmh_beyond_fsize_limit(rec[i].off + len)) { /* SIGXFSZ otherwise */
                errno = EFBIG;
                rc = -1;
                break;
            }
            rc = mmh_pread_all(p->ckpt_fd, p->ckpt_buf, len, at);
            if (rc == 0 && rec[i].off < MMH_HDR_SIZE) {
                skip = MMH_HDR_SIZE - rec[i].off < len ? MMH_HDR_SIZE - rec[i].off : len;
                memcpy(p->hdr_page + rec[i].off, p->ckpt_buf, skip);
                have_hdr = true;
            }
            if (rc == 0 && len > skip)
                rc = mmh_pwrite_all(p->heap_fd, p->ckpt_buf + skip, len - skip,
                                    rec[i].off + skip);
            /* Write-back starts as the checkpoint goes, not all at its
             * fdatasync, whose flush a commit's own would queue behind. */
            if (rc == 0 && (bytes + len) / CKPT_STREAM != bytes / CKPT_STREAM)
                (void)sync_file_range(p->heap_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            bytes += len;
            at += len;
        }
    }
    mmh_wal_cursor_free(&c);
    const char *what = "write";
    if (rc == 0 && c.pos.seq != to.seq) {
        errno = EIO;
        rc = -1;
        what = "read of the log";
    }
    if (rc == 0 && fdatasync(p->heap_fd) != 0)
        rc = -1, what = "fdatasync";
    if (rc == 0 && have_hdr && mmh_pwrite_all(p->heap_fd, p->hdr_page, MMH_HDR_SIZE, 0) != 0)
        rc = -1;
    if (rc == 0 && have_hdr && fdatasync(p->heap_fd) != 0)
        rc = -1, what = "fdatasync";
    if (rc != 0)
        return mmh_fail(errno ? errno : EIO, "%s: checkpoint: %s of the heap file failed: %m",
                        p->path, what);
    *out = c.pos;
    *out_salt = c.salt;
    return 0;
}

/* A commit larger than WAL_MAX left the log that large: once all of it is
 * checkpointed (the mark, durable, at the tail), the next lap starts at the
 * front and the rest is cut off.  Caller holds mutex. */
static void shrink(mmh_persist *p)
{
    const uint64_t size = MMH_WAL_START + WAL_MAX;
    if (p->cap > size && p->done.seq == p->tail.seq && !p->appending &&
        ftruncate(p->ckpt_fd, (off_t)size) == 0)
        p->cap = size;
}

/* Bring the heap file up to the log's tail as it is now, and advance the
 * mark.  0, or -1 with the reason (the checkpoint's failure, or an earlier
 * one that stopped checkpoints). */
static int checkpoint(mmh_persist *p)
{
    pthread_mutex_lock(&p->ckpt_lock);
    pthread_mutex_lock(&p->mutex);
    mmh_wal_hdr from = p->hdr; /* its mark, lap and wrap */
    mmh_wal_pos to = p->tail;
    uint64_t to_salt = 0;
    int err = p->ckpt_final ? p->ckpt_err : 0;
    pthread_mutex_unlock(&p->mutex);
    bool work = from.mark_seq != to.seq;
    mmh_assert(to.seq >= from.mark_seq); /* the mark never passes the tail */
    int rc = 0;
    if (err)
        rc = mmh_fail(err, "%s: checkpoints stopped after a failure (%s); the log %s keeps "
                      "every commit since, and the next open replays them", p->path,
                      strerrordesc_np(err), p->wal_path);
    else if (work && (rc = apply(p, &from, to, &to, &to_salt)) == 0) {
        /* The heap file holds everything up to `to`: say so, durably.  A
         * mark that reached the current lap leaves the older one behind. */
        pthread_mutex_lock(&p->mutex);
        if (p->hdr.prev_end && to_salt == p->hdr.salt)
            p->hdr.prev_salt = p->hdr.prev_end = 0;
        p->hdr.mark = to.off;
        p->hdr.mark_seq = to.seq;
        p->hdr.mark_chain = to.chain;
        rc = hdr_put(p);
        pthread_mutex_unlock(&p->mutex);
        if (rc == 0 && fdatasync(p->ckpt_fd) != 0)
            rc = mmh_fail(errno, "%s: checkpoint: fdatasync of its log %s failed: %m", p->path,
                          p->wal_path);
    }
    err = rc ? errno : 0;
    pthread_mutex_lock(&p->mutex);
    if (rc == 0 && work) {
        p->done = to;
        p->done_salt = to_salt;
        p->oldest_ns = p->tail.seq == to.seq ? 0 : mmh_now_ns(CLOCK_MONOTONIC);
        shrink(p);
    }
    if (rc != 0 && !p->ckpt_final) {
        p->ckpt_err = err;
        p->ckpt_final = mmh_write_error_final(err);
        p->ckpt_try_ns = mmh_now_ns(CLOCK_MONOTONIC);
    } else if (rc == 0) {
        p->ckpt_err = 0;
    }
    pthread_mutex_unlock(&p->mutex);
    pthread_mutex_unlock(&p->ckpt_lock);
    errno = err;
    return rc;
}

static bool checkpoint_due(const mmh_persist *p, uint64_t now)
{
    if (p->ckpt_final || p->done.seq == p->tail.seq ||
        (p->ckpt_err && now - p->ckpt_try_ns < RETRY_NS))
        return false;
    return pending(p) >= p->cap / CKPT_FILL || now - p->oldest_ns >= CKPT_AGE_NS;
}

static void *checkpointer(void *arg)
{
    mmh_persist *p = arg;
    pthread_mutex_lock(&p->mutex);
    while (!p->stop) {
        if (checkpoint_due(p, mmh_now_ns(CLOCK_MONOTONIC))) {
            pthread_mutex_unlock(&p->mutex);
            (void)checkpoint(p);
            pthread_mutex_lock(&p->mutex);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&p->cond, &p->mutex, &until);
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

/* The checkpointer's waits are timed on the monotonic clock. */
static void cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* The thread runs with every signal blocked: the application's handlers
 * belong to its own threads. */
static int checkpointer_start(mmh_persist *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&p->thread, NULL, checkpointer, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        return mmh_fail(err, "%s: cannot start the checkpoint thread: %s", p->path,
                        strerrordesc_np(err));
    p->thread_started = true;
    return 0;
}

/* ---- opening and closing --------------------------------------------- */

static void persist_free(mmh_persist *p)
{
    if (p->ckpt_fd >= 0 && p->ckpt_fd != p->wal_fd)
        close(p->ckpt_fd);
    if (p->wal_fd >= 0)
        close(p->wal_fd);
    pthread_mutex_destroy(&p->mutex);
    pthread_mutex_destroy(&p->ckpt_lock);
    pthread_cond_destroy(&p->cond);
    mmh_meta_free(p->wal_path);
    mmh_meta_free(p->retry.v);
    mmh_meta_free(p->head_buf);
    mmh_meta_free(p->copy_buf);
    mmh_meta_free(p->ckpt_buf);
    mmh_meta_free(p);
}

/* No log for this heap yet (none, or one left over): make it new,
 * zero-filled and durable by name.  The heap names it (wal_gen) in its
 * header from the first commit on, and in its file from the first
 * checkpoint: the file itself is written only by checkpoints, whose header
 * write a torn page cannot hurt (the log still holds that page). */
static int wal_create(mmh_heap *h, mmh_persist *p, bool created)
{
    p->cap = 0; /* both header slots too: a leftover's may look valid */
    p->hdr = (mmh_wal_hdr){ .file_id = h->hdr->file_id, .gen = mmh_random_u64() | 1 };
    p->tail.seq = h->hdr->commit_seq;
    if (grow(p, MMH_WAL_START + WAL_INITIAL) != 0 || lap_restart(p) != 0)
        return -1;
    if (fdatasync(p->wal_fd) != 0)
        return mmh_fail(errno, "%s: fdatasync of its new log %s failed: %m", h->path,
                        p->wal_path);
    if (created && mmh_sync_parent_dir(p->wal_path) != 0)
        return -1;
    h->hdr->wal_gen = p->hdr.gen;
    h->hdr->checksum = mmh_format_checksum(h->hdr);
    return 0;
}

/* The checkpoints' own open file description of the log. */
static int reopen(int fd)
{
    char proc[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int own = open(proc, O_RDWR | O_CLOEXEC);
    return own >= 0 ? own : fd;
}

/* Take over the log of view v (writable, from mmh_wal_inspect), or make
 * one; then start checkpointing. */
static int wal_attach(mmh_heap *h, mmh_persist *p, const mmh_wal_view *v)
{
    bool created = false;
    if (v && v->fd >= 0) {
        p->wal_fd = dup(v->fd);
        if (p->wal_fd < 0)
            return mmh_fail(errno, "%s: cannot dup its log's descriptor: %m", h->path);
        fcntl(p->wal_fd, F_SETFD, FD_CLOEXEC);
    } else {
        p->wal_fd = mmh_open_companion(h->fd, h->path, p->wal_path, O_RDWR | O_CREAT, &created);
        if (p->wal_fd < 0)
            return -1;
    }
    p->ckpt_fd = reopen(p->wal_fd);
    if (!v || v->info.state == MMH_WAL_ABSENT || v->info.state == MMH_WAL_LEFTOVER) {
        if (wal_create(h, p, created) != 0)
            return -1;
    } else {
        p->hdr = v->hdr;
        p->cap = v->info.size;
        p->tail = v->end;
        p->done = (mmh_wal_pos){ v->hdr.mark, v->hdr.mark_seq, v->hdr.mark_chain };
        p->done_salt = v->hdr.prev_end ? v->hdr.prev_salt : v->hdr.salt;
        if (v->info.state == MMH_WAL_STALE) {
            /* Never replayed: the heap file is ahead of it. */
            p->tail.seq = v->info.heap_seq;
            if (lap_restart(p) != 0 || fdatasync(p->wal_fd) != 0)
                return mmh_fail(errno ? errno : EIO, "%s: cannot reset its stale log %s: %m",
                                h->path, p->wal_path);
        } else if (v->info.commits) {
            p->oldest_ns = 1; /* recovered: checkpoint them at once */
        }
        /* Commits carry the header: it names this log from now on. */
        h->hdr->wal_gen = p->hdr.gen;
        h->hdr->checksum = mmh_format_checksum(h->hdr);
    }
    return checkpointer_start(p);
}

int mmh_persist_open(mmh_heap *h, const mmh_wal_view *v)
{
    mmh_persist *p = mmh_meta_calloc(1, sizeof *p);
    if (!p)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    p->path = h->path;
    p->heap_fd = h->fd;
    p->wal_fd = p->ckpt_fd = -1;
    p->owner = getpid();
    pthread_mutex_init(&p->mutex, NULL);
    pthread_mutex_init(&p->ckpt_lock, NULL);
    cond_init(&p->cond);
    h->persist.state = p;
    if (h->flags & MMH_SHARED)
        return 0;
    p->wal_path = mmh_wal_path(h->path);
    p->copy_buf = mmh_meta_alloc(MMH_WAL_CHUNK);
    p->ckpt_buf = mmh_meta_alloc(MMH_WAL_CHUNK);
    if (!p->wal_path || !p->copy_buf || !p->ckpt_buf)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    return wal_attach(h, p, v);
}

static bool owned(const mmh_persist *p)
{
    return p->owner == getpid();
}

bool mmh_persist_owner(const mmh_heap *h)
{
    return h->persist.state && owned(h->persist.state);
}

/* Stop the checkpointer, checkpoint what is left, and let go.  In a forked
 * child the thread does not exist and nothing is written. */
int mmh_persist_close(mmh_heap *h)
{
    mmh_persist *p = h->persist.state;
    int rc = 0;
    if (!p)
        return 0;
    if (p->thread_started && owned(p)) {
        pthread_mutex_lock(&p->mutex);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mutex);
        pthread_join(p->thread, NULL);
    }
    /* A failure leaves the commits in the log, for the next open. */
    if (p->wal_fd >= 0 && owned(p) && !p->final_err)
        rc = checkpoint(p);
    persist_free(p);
    h->persist.state = NULL;
    return rc;
}

/* ---- the commit ------------------------------------------------------- */

/* Start a commit: its sequence number in the header, the ranges it
 * writes (those written since the last commit, every in-use range when
 * untracked, and those of a background commit that failed) and, in
 * private mode, the free ranges to punch. */
static int commit_ranges(mmh_heap *h, mmh_persist_job *c)
{
    mmh_persist *p = h->persist.state;
    mmh_hdr *hdr = h->hdr;
    bool shared = h->flags & MMH_SHARED;
    mmh_assert_locked(h);
    hdr->commit_seq = shared ? hdr->commit_seq + 1 : p->tail.seq + 1;
    /* Punched ranges are marked in the heap's metadata before it is
     * scanned, so that this commit carries both. */
    int rc = shared ? 0 : mmh_punch_purged(h, mmh_ranges_add, &c->punches);
    hdr->checksum = mmh_format_checksum(hdr);
    if (rc == 0)
        rc = h->track.ops ? h->track.ops->scan(h, mmh_ranges_add, &c->ranges)
                      : mmh_in_use_ranges(h, &c->ranges);
    if (rc == 0)
        rc = mmh_track_resume(h);
    if (rc == 0 && p->retry.n && (rc = mmh_ranges_merge(h, &c->ranges, &p->retry)) == 0) {
        /* They are this commit's now; if it fails, they come back (a job)
         * or the heap takes no more commits. */
        mmh_meta_free(p->retry.v);
        p->retry = (mmh_ranges){ 0 };
    }
    if (rc != 0 && !p->final_err)
        p->final_err = errno ? errno : EIO; /* the tracker's pages are lost */
    return rc;
}

static int sync_shared(mmh_heap *h, const mmh_ranges *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (sync_file_range(h->fd, (off_t)r->v[i].off, (off_t)r->v[i].len,
                            SYNC_FILE_RANGE_WRITE) != 0)
            break; /* fdatasync below writes it all anyway */
        h->persist.bytes_written += r->v[i].len;
    }
    if (fdatasync(h->fd) != 0) {
        h->persist.state->final_err = errno;
        return mmh_fail(errno, "%s: fdatasync failed: %m", h->path);
    }
    return 0;
}

/* A commit that did not happen and is not final: the next commit writes
 * its pages, which the tracker has forgotten (holes it was to punch stay
 * unpunched: free memory, only space).  Out of memory for that, no commit
 * may follow. */
static void ranges_back(mmh_heap *h, const mmh_persist_job *c)
{
    mmh_persist *p = h->persist.state;
    if (mmh_ranges_merge(h, &p->retry, &c->ranges) != 0 && !p->final_err)
        p->final_err = ENOMEM;
}

static void job_ranges_free(mmh_persist_job *c)
{
    mmh_meta_free(c->ranges.v);
    mmh_meta_free(c->punches.v);
}

int mmh_writeback(mmh_heap *h)
{
    mmh_persist *p = h->persist.state;
    mmh_persist_job c = { 0 };
    int rc = commit_ranges(h, &c);
    if (rc == 0 && (h->flags & MMH_SHARED)) {
        rc = sync_shared(h, &c.ranges);
    } else if (rc == 0) {
        if ((rc = plan(h, &c)) == 0) {
            mmh_inst_bulk_begin(); /* the copy reads free blocks too */
            rc = append(p, &c, h->base, h->mapped);
            mmh_inst_bulk_end();
            appended(p, &c, rc == 0);
        }
        int err = errno;
        if (rc == 0)
            h->persist.bytes_written += c.head_bytes + c.data_bytes;
        else if (c.final)
            p->final_err = c.err;
        else
            ranges_back(h, &c); /* a full disk, a full log, the file size limit */
        errno = err;
    }
    job_ranges_free(&c);
    return rc;
}

/* Can h commit now?  0, or -1 with the reason.  Caller holds h->lock. */
int mmh_commit_check(mmh_heap *h, const char *fn)
{
    mmh_persist *p = h->persist.state;
    mmh_assert_locked(h);
    if (h->fd < 0 || (h->flags & MMH_VOLATILE))
        return mmh_fail(EINVAL, "%s: %s: the heap has no file to commit to (mmh_snapshot saves "
                        "it)", h->path, fn);
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: %s: heap is open read-only", h->path, fn);
    if (!owned(p))
        return mmh_fail(EPERM, "%s: %s: the heap was opened by process %d, and only it commits "
                        "(this is a fork of it)", h->path, fn, (int)p->owner);
    if (!mmh_file_is_named(h->fd, h->dir_fd, mmh_base_name(h->path)))
        return mmh_fail(ESTALE, "%s: %s: the name no longer holds this heap's file (another "
                        "file was renamed over it, or it was removed); a commit would go where "
                        "no open finds it", h->path, fn);
    if (p->final_err) {
        errno = p->final_err;
        return mmh_fail(p->final_err, "%s: an earlier commit failed (%m); the file keeps "
                        "the last completed commit and the heap refuses further commits",
                        h->path);
    }
    pthread_mutex_lock(&p->mutex);
    int err = p->ckpt_final ? p->ckpt_err : 0;
    pthread_mutex_unlock(&p->mutex);
    if (err) {
        errno = err;
        return mmh_fail(err, "%s: every commit is durable in %s, but a checkpoint writing them "
                        "into the heap file failed (%m); the next open replays them, and this "
                        "heap refuses further commits", h->path, p->wal_path);
    }
    return 0;
}

void mmh_commit_done(mmh_heap *h, uint64_t ns)
{
    h->persist.commits++;
    h->persist.last_commit_ns = ns;
    h->persist.last_commit_time = mmh_now_ns(CLOCK_REALTIME);
}

int mmh_commit(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_commit: heap is NULL");
    pthread_mutex_lock(&h->job.lock);
    mmh_job_reap(h, false);
    mmh_lock(h);
    int rc = mmh_commit_check(h, "mmh_commit");
    if (rc == 0) {
        uint64_t start = mmh_now_ns(CLOCK_MONOTONIC);
        rc = mmh_writeback(h);
        if (rc == 0)
            mmh_commit_done(h, mmh_now_ns(CLOCK_MONOTONIC) - start);
    }
    mmh_unlock(h);
    pthread_mutex_unlock(&h->job.lock);
    return rc;
}

int mmh_checkpoint(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_checkpoint: heap is NULL");
    mmh_persist *p = h->persist.state;
    if (!p || p->wal_fd < 0)
        return 0;
    if (!owned(p))
        return mmh_fail(EPERM, "%s: mmh_checkpoint: the heap was opened by process %d, and "
                        "only it writes the heap file (this is a fork of it)", h->path,
                        (int)p->owner);
    /* A running background commit's pages go in with the next checkpoint. */
    return checkpoint(p);
}

/* ---- background commits ---------------------------------------------- */

mmh_persist_job *mmh_persist_job_prepare(mmh_heap *h)
{
    mmh_persist_job *c = mmh_meta_calloc(1, sizeof *c);
    if (!c)
        return mmh_fail_null(ENOMEM, "%s: out of memory", h->path);
    if (commit_ranges(h, c) != 0 || plan(h, c) != 0) {
        int err = errno;
        ranges_back(h, c);
        mmh_persist_job_free(c);
        errno = err;
        return NULL;
    }
    return c;
}

int mmh_persist_job_run(mmh_heap *h, mmh_persist_job *c, mmh_wal_pos *end, uint64_t *written,
                        int *final_err)
{
    int rc = append(h->persist.state, c, h->base, h->mapped);
    if (rc == 0) {
        *end = c->end;
        *written = c->head_bytes + c->data_bytes;
    } else {
        *final_err = c->final ? c->err : 0;
    }
    return rc;
}

/* The child's outcome, handed over by the parent: ok with the position
 * after its commit, or failed (final_err: and that is final).  A child
 * that died reported nothing: its commit, durable or not, is overwritten
 * by the next one from the same place. */
void mmh_persist_job_done(mmh_heap *h, mmh_persist_job *c, bool ok, const mmh_wal_pos *end,
                          int final_err)
{
    mmh_persist *p = h->persist.state;
    if (ok) {
        c->end = *end;
    } else {
        if (final_err && !p->final_err)
            p->final_err = final_err;
        ranges_back(h, c);
    }
    appended(p, c, ok);
}

void mmh_persist_job_free(mmh_persist_job *c)
{
    if (!c)
        return;
    job_ranges_free(c);
    mmh_meta_free(c);
}

/* ---- fork() of the program ------------------------------------------ */

void mmh_persist_fork_prepare(mmh_heap *h)
{
    if (h->persist.state)
        pthread_mutex_lock(&h->persist.state->mutex);
}

void mmh_persist_fork_parent(mmh_heap *h)
{
    if (h->persist.state)
        pthread_mutex_unlock(&h->persist.state->mutex);
}

/* The child has no checkpointer and never commits (owned() is false); the
 * thread's condition variable and lock, in whatever state the fork found
 * them, are new here, so that close can destroy them. */
void mmh_persist_fork_child(mmh_heap *h)
{
    if (!h->persist.state)
        return;
    pthread_mutex_init(&h->persist.state->mutex, NULL);
    pthread_mutex_init(&h->persist.state->ckpt_lock, NULL);
    cond_init(&h->persist.state->cond);
}

/* ---- mmheap recover --------------------------------------------------- */

int mmh_wal_recover(const char *path, int heap_fd, mmh_wal_view *v)
{
    if (!mmh_wal_has_commits(&v->info))
        return 0;
    mmh_persist *p = mmh_meta_calloc(1, sizeof *p);
    char *buf = mmh_meta_alloc(MMH_WAL_CHUNK);
    int rc = -1;
    if (!p || !buf) {
        mmh_fail(ENOMEM, "%s: out of memory", path);
        goto out;
    }
    p->path = path;
    p->wal_path = v->path;
    p->heap_fd = heap_fd;
    p->wal_fd = p->ckpt_fd = v->fd;
    p->ckpt_buf = buf;
    p->hdr = v->hdr;
    p->tail = v->end;
    p->done = (mmh_wal_pos){ v->hdr.mark, v->hdr.mark_seq, v->hdr.mark_chain };
    pthread_mutex_init(&p->mutex, NULL);
    pthread_mutex_init(&p->ckpt_lock, NULL);
    rc = checkpoint(p);
    pthread_mutex_destroy(&p->mutex);
    pthread_mutex_destroy(&p->ckpt_lock);
out:
    mmh_meta_free(buf);
    mmh_meta_free(p);
    return rc;
}
