/* The redo journal that makes private-mode commits atomic.
 *
 * A commit writes every range it will change into FILE.journal: a header,
 * a table of records (heap offset, length, checksum of the bytes), the
 * bytes, and an end block carrying a checksum of header and table.  Then:
 * fdatasync(journal), write the ranges in place, fdatasync(heap), truncate
 * invalidate the journal by zeroing its magic.  A crash before the
 * journal's sync leaves the heap file untouched (the journal fails its
 * checksums and is discarded); a crash after it leaves a complete journal
 * that the next open replays.  Replaying twice is harmless: a record holds
 * the bytes, not a change to them.  So the invalidation needs no sync: a
 * journal that survives it is complete and replays to the state its commit
 * already wrote.  The file keeps its size between commits (its blocks stay
 * allocated; bytes past the end block are ignored) and is cut back only
 * when it has grown far beyond what commits need.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define COPY_CHUNK    ((size_t)1 << 20)
#define KEEP_SIZE     ((size_t)64 << 20) /* journal size kept without question */

/* Write the mapping's ranges back to back at off, IOV_MAX at a time. */
static int pwritev_ranges(mmh_heap *h, const mmh_range *ranges, size_t n, size_t off)
{
    struct iovec iov[IOV_MAX];
    for (size_t i = 0; i < n;) {
        size_t k = 0, bytes = 0;
        for (; k < IOV_MAX && i + k < n; k++) {
            iov[k].iov_base = h->base + ranges[i + k].off;
            iov[k].iov_len = ranges[i + k].len;
            bytes += ranges[i + k].len;
        }
        ssize_t done = mmh_pwritev(h->journal_fd, iov, (int)k, (off_t)off);
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0)
            return -1;
        /* After a short write (rare), finish the batch range by range. */
        for (size_t j = 0, pos = 0; (size_t)done < bytes && j < k; pos += iov[j++].iov_len) {
            size_t skip = (size_t)done > pos ? (size_t)done - pos : 0;
            if (skip < iov[j].iov_len &&
                mmh_pwrite_all(h->journal_fd, (char *)iov[j].iov_base + skip,
                               iov[j].iov_len - skip, off + pos + skip) != 0)
                return -1;
        }
        off += bytes;
        i += k;
    }
    return 0;
}

/* Zero the magic: the journal no longer replays. */
static int invalidate(int fd)
{
    static const char zero[8];
    return mmh_pwrite_all(fd, zero, sizeof zero, 0);
}

/* FILE.journal, created if missing (and then made durable by name before
 * any commit relies on it: a power loss must not take it away while the
 * heap file holds half of a commit it was to replay). */
int mmh_journal_open(mmh_heap *h)
{
    size_t n = strlen(h->path) + sizeof ".journal";
    bool created;
    h->journal_path = mmh_meta_alloc(n);
    if (!h->journal_path)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    snprintf(h->journal_path, n, "%s.journal", h->path);
    h->journal_fd = mmh_open_companion(h->fd, h->path, h->journal_path, O_RDWR | O_CREAT,
                                       &created);
    if (h->journal_fd < 0)
        return -1;
    return created ? mmh_sync_parent_dir(h->journal_path) : 0;
}

static size_t records_of(const mmh_range *ranges, size_t n)
{
    size_t records = 0;
    for (size_t i = 0; i < n; i++)
        records += (ranges[i].len + COPY_CHUNK - 1) / COPY_CHUNK;
    return records;
}

static size_t table_size(const mmh_range *ranges, size_t n)
{
    return sizeof(mmh_journal_hdr) + records_of(ranges, n) * sizeof(mmh_journal_rec);
}

/* The buffer mmh_journal_commit builds the table of a journal for r in:
 * allocated ahead, because a background job's child cannot allocate. */
void *mmh_journal_table_new(mmh_heap *h, const mmh_ranges *r)
{
    void *table = mmh_meta_alloc(table_size(r->v, r->n));
    if (!table) {
        h->commit_errno = ENOMEM;
        return mmh_fail_null(ENOMEM, "%s: out of memory for a journal of %zu ranges", h->path,
                             r->n);
    }
    return table;
}

/* Write the journal for ranges[0..n) of the mapping and sync it, building
 * its table in buf (from mmh_journal_table_new); *size is its length.
 * Records hold at most COPY_CHUNK bytes, so recovery checks each in one
 * buffer. */
static int journal_write(mmh_heap *h, const mmh_range *ranges, size_t n, char *buf,
                         size_t *size)
{
    size_t nrec = records_of(ranges, n);
    size_t table = table_size(ranges, n);
    mmh_journal_hdr *jh = (mmh_journal_hdr *)buf;
    mmh_journal_rec *rec = (mmh_journal_rec *)(jh + 1);
    memset(jh, 0, sizeof *jh);
    memcpy(jh->magic, MMH_JOURNAL_MAGIC, sizeof jh->magic);
    jh->file_id = h->hdr->file_id;
    jh->seq = h->hdr->commit_seq;
    jh->nrecords = nrec;
    jh->extent = h->mapped;
    for (size_t i = 0, r = 0; i < n; i++) {
        for (size_t done = 0; done < ranges[i].len; done += COPY_CHUNK, r++) {
            rec[r].off = ranges[i].off + done;
            rec[r].len = ranges[i].len - done < COPY_CHUNK ? ranges[i].len - done : COPY_CHUNK;
            rec[r].hash = mmh_hash64(h->base + rec[r].off, rec[r].len, rec[r].off);
            jh->data_bytes += rec[r].len;
        }
    }
    jh->hash = mmh_journal_hdr_hash(jh);
    mmh_journal_end end = { .seq = jh->seq, .table_hash = mmh_hash64(buf, table, jh->seq) };
    memcpy(end.magic, MMH_JOURNAL_END, sizeof end.magic);
    size_t total = table + jh->data_bytes + sizeof end;
    if (mmh_beyond_fsize_limit(total)) {
        h->commit_errno = EFBIG;
        return mmh_fail(EFBIG, "%s: the journal of this commit (%zu bytes) would exceed the "
                        "file size limit", h->path, total);
    }

    int rc = -1;
    size_t at = 0;
    errno = 0;
    if (mmh_pwrite_all(h->journal_fd, buf, table, 0) != 0)
        goto out;
    at = table;
    if (pwritev_ranges(h, ranges, n, at) != 0)
        goto out;
    at += jh->data_bytes;
    if (mmh_pwrite_all(h->journal_fd, &end, sizeof end, at) != 0)
        goto out;
    if (fdatasync(h->journal_fd) != 0) {
        rc = mmh_io_failed(h, "fdatasync", h->journal_path, 0);
        goto out_nomsg;
    }
    rc = 0;
    *size = at + sizeof end;
    h->bytes_written += *size;
out:
    if (rc != 0)
        mmh_io_failed(h, "write", h->journal_path, at);
out_nomsg:
    /* A commit that failed must not take effect: even after a failed sync
     * the bytes may all be there, and the next open would replay them. */
    if (rc != 0)
        (void)!invalidate(h->journal_fd);
    return rc;
}

/* No allocation: a background job's child runs this with a table buffer
 * its parent allocated.  0: committed and in place.  1: committed, not yet
 * in the heap file: the journal was synced (the commit point), then
 * writing the heap file failed; the journal stays complete, and the next
 * commit or open replays it.  -1: failed, nothing changed. */
int mmh_journal_commit(mmh_heap *h, const mmh_range *ranges, size_t n, void *table)
{
    size_t size = 0;
    if (journal_write(h, ranges, n, table, &size) != 0)
        return -1;
    if (mmh_write_in_place(h, h->fd, h->path, ranges, n) != 0)
        return 1;
    if (fdatasync(h->fd) != 0) {
        mmh_io_failed(h, "fdatasync", h->path, 0);
        return 1;
    }
    if (invalidate(h->journal_fd) != 0) { /* in place, but it would replay */
        mmh_io_failed(h, "write", h->journal_path, 0);
        return 1;
    }
    /* Cut a journal that one big commit grew far past what commits need. */
    struct stat st;
    if (fstat(h->journal_fd, &st) == 0 && (size_t)st.st_size > KEEP_SIZE &&
        (size_t)st.st_size / 4 > size)
        (void)!ftruncate(h->journal_fd, 0);
    return 0;
}

/* ---- recovery --------------------------------------------------------- */

/* Is the journal of jsize bytes on fd complete, made for the heap file
 * file_id, and not older than the heap's commit seq?  Says which in ji;
 * when complete, reads header and table into *table_out (caller frees)
 * after checking every record's bytes. */
static void journal_classify(int fd, uint64_t jsize, uint64_t file_id, uint64_t seq,
                             mmh_journal_info *ji, char **table_out)
{
    mmh_journal_hdr jh;
    *table_out = NULL;
    ji->state = MMH_JOURNAL_TORN;
    if (jsize < sizeof jh + sizeof(mmh_journal_end) || mmh_pread_all(fd, &jh, sizeof jh, 0) != 0)
        return;
    if (memcmp(jh.magic, "\0\0\0\0\0\0\0\0", sizeof jh.magic) == 0) {
        ji->state = MMH_JOURNAL_INVALIDATED;
        return;
    }
    if (memcmp(jh.magic, MMH_JOURNAL_MAGIC, sizeof jh.magic) != 0 ||
        jh.hash != mmh_journal_hdr_hash(&jh) || jh.nrecords > jsize / sizeof(mmh_journal_rec) ||
        jh.data_bytes > jsize)
        return;
    if (jh.file_id != file_id) {
        ji->state = MMH_JOURNAL_FOREIGN;
        return;
    }
    /* The heap's header may already show the journal's own commit (its
     * page reached the file before the rest did), never a later one: a
     * journal of an earlier commit is a copy, and replaying it would roll
     * the heap back. */
    if (jh.seq < seq) {
        ji->state = MMH_JOURNAL_STALE;
        ji->seq = jh.seq;
        return;
    }
    size_t table = sizeof jh + jh.nrecords * sizeof(mmh_journal_rec);
    if (table + jh.data_bytes + sizeof(mmh_journal_end) > jsize)
        return;
    char *buf = mmh_meta_alloc(table), *chunk = mmh_meta_alloc(COPY_CHUNK);
    mmh_journal_end end;
    bool ok = buf && chunk && mmh_pread_all(fd, buf, table, 0) == 0 &&
              mmh_pread_all(fd, &end, sizeof end, table + jh.data_bytes) == 0 &&
              memcmp(end.magic, MMH_JOURNAL_END, sizeof end.magic) == 0 && end.seq == jh.seq &&
              end.table_hash == mmh_hash64(buf, table, jh.seq);
    const mmh_journal_rec *rec = ok ? (const mmh_journal_rec *)(buf + sizeof jh) : NULL;
    size_t at = table;
    for (uint64_t i = 0; ok && i < jh.nrecords; i++) {
        ok = rec[i].len <= COPY_CHUNK && rec[i].off <= jh.extent &&
             rec[i].len <= jh.extent - rec[i].off &&
             mmh_pread_all(fd, chunk, rec[i].len, at) == 0 &&
             mmh_hash64(chunk, rec[i].len, rec[i].off) == rec[i].hash;
        at += rec[i].len;
    }
    mmh_meta_free(chunk);
    if (!ok) {
        mmh_meta_free(buf);
        return;
    }
    ji->state = MMH_JOURNAL_COMPLETE;
    ji->seq = jh.seq;
    ji->nrecords = jh.nrecords;
    ji->data_bytes = jh.data_bytes;
    ji->extent = jh.extent;
    *table_out = buf;
}

/* Copy the records of the complete journal in v into the heap file
 * (heap_fd >= 0), or into image, a private mapping of [0, image_size) of
 * the heap: there, only the part of each record inside it. */
static int replay(const char *path, int heap_fd, char *image, size_t image_size,
                  const mmh_journal_view *v)
{
    const mmh_journal_hdr *jh = (const mmh_journal_hdr *)v->table;
    const mmh_journal_rec *rec = (const mmh_journal_rec *)(jh + 1);
    size_t at = sizeof *jh + jh->nrecords * sizeof *rec;
    if (image) {
        for (uint64_t i = 0; i < jh->nrecords; at += rec[i++].len) {
            size_t len = rec[i].off >= image_size ? 0
                         : rec[i].len < image_size - rec[i].off ? rec[i].len
                                                                 : image_size - rec[i].off;
            if (len && mmh_pread_all(v->fd, image + rec[i].off, len, at) != 0)
                return mmh_fail(errno ? errno : EIO, "%s: cannot read the journal: %m", path);
        }
        return 0;
    }
    char *chunk = mmh_meta_alloc(COPY_CHUNK);
    if (!chunk)
        return mmh_fail(ENOMEM, "%s: out of memory", path);
    /* Grow the file to the commit's extent, never shrink it: a live heap
     * (a background job's journal, replayed by the next commit) may have
     * grown since, and open cuts off uncommitted growth itself. */
    struct stat st;
    int rc = fstat(heap_fd, &st);
    if (rc == 0 && (uint64_t)st.st_size < jh->extent)
        rc = ftruncate(heap_fd, (off_t)jh->extent);
    for (uint64_t i = 0; rc == 0 && i < jh->nrecords; i++) {
        rc = mmh_pread_all(v->fd, chunk, rec[i].len, at) != 0 ||
             mmh_pwrite_all(heap_fd, chunk, rec[i].len, rec[i].off) != 0 ? -1 : 0;
        at += rec[i].len;
    }
    mmh_meta_free(chunk);
    if (rc != 0 || fdatasync(heap_fd) != 0) {
        errno = errno ? errno : EIO;
        return mmh_fail(errno, "%s: replaying the journal failed: %m", path);
    }
    return 0;
}

int mmh_journal_inspect(const char *path, int heap_fd, bool writable, mmh_journal_view *v)
{
    /* The heap's identity and commit are read from its header even if a
     * torn write damaged the rest: they are where every version has them. */
    uint64_t file_id = 0, seq = 0;
    (void)!mmh_pread_all(heap_fd, &file_id, sizeof file_id, offsetof(mmh_hdr, file_id));
    (void)!mmh_pread_all(heap_fd, &seq, sizeof seq, offsetof(mmh_hdr, commit_seq));
    char jpath[4096];
    bool created;
    memset(v, 0, sizeof *v);
    v->fd = -1;
    if ((size_t)snprintf(jpath, sizeof jpath, "%s.journal", path) >= sizeof jpath)
        return mmh_fail(ENAMETOOLONG, "%s: path too long", path);
    v->fd = mmh_open_companion(heap_fd, path, jpath, writable ? O_RDWR : O_RDONLY, &created);
    if (v->fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    if (fstat(v->fd, &st) != 0) {
        int rc = mmh_fail(errno, "%s: cannot stat %s: %m", path, jpath);
        mmh_journal_view_close(v);
        return rc;
    }
    v->info.size = (uint64_t)st.st_size;
    if (st.st_size == 0)
        v->info.state = MMH_JOURNAL_EMPTY;
    else
        journal_classify(v->fd, (uint64_t)st.st_size, file_id, seq, &v->info, &v->table);
    return 0;
}

/* Replay a complete journal into the heap file; then, and for a journal
 * that never replays (torn, foreign, stale), leave it empty.  v is from
 * a writable mmh_journal_inspect. */
int mmh_journal_settle(const char *path, int heap_fd, const mmh_journal_view *v)
{
    if (v->fd < 0)
        return 0;
    if (v->info.state == MMH_JOURNAL_COMPLETE && replay(path, heap_fd, NULL, 0, v) != 0)
        return -1;
    if (v->info.size > 0 && ftruncate(v->fd, 0) != 0)
        return mmh_fail(errno, "%s: cannot truncate %s.journal: %m", path, path);
    return 0;
}

/* A read-only open cannot replay, so it refuses a complete journal.  ji
 * (may be NULL) says what was found. */
int mmh_journal_recover(const char *path, int heap_fd, bool readonly, mmh_journal_info *ji)
{
    mmh_journal_view v;
    int rc = mmh_journal_inspect(path, heap_fd, !readonly, &v);
    if (rc == 0 && readonly && v.info.state == MMH_JOURNAL_COMPLETE)
        rc = mmh_fail(EAGAIN, "%s: a committed journal waits to be replayed; open the heap "
                      "writable once", path);
    else if (rc == 0 && !readonly)
        rc = mmh_journal_settle(path, heap_fd, &v);
    if (ji)
        *ji = v.info;
    mmh_journal_view_close(&v);
    return rc;
}

/* Apply the complete journal in v to image, a private mapping of the heap
 * file's first image_size bytes, leaving both files as they are. */
int mmh_journal_overlay(const char *path, const mmh_journal_view *v, char *image,
                        size_t image_size)
{
    if (v->info.state != MMH_JOURNAL_COMPLETE)
        return 0;
    return replay(path, -1, image, image_size, v);
}

void mmh_journal_view_close(mmh_journal_view *v)
{
    mmh_meta_free(v->table);
    v->table = NULL;
    if (v->fd >= 0)
        close(v->fd);
    v->fd = -1;
}
