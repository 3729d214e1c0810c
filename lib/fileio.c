/* Writing heap memory to files: whole-buffer pread/pwrite, ranges of the
 * mapping written in place, a whole heap image, directory syncs.  All but
 * mmh_dir_of are async-signal-safe (system calls and mmh_fail only),
 * because a background job's child runs them. */
#define _GNU_SOURCE
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Every write of heap memory goes through mmh_pwrite_all or mmh_pwritev.
 * ASan's write wrappers check the buffer, and heap ranges hold poisoned
 * free blocks: the sanitizer builds suppress that check (tests/asan.supp). */
ssize_t mmh_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return pwritev(fd, iov, n, off);
}

/* All len bytes at off, through short transfers and EINTR; an early end
 * of file is EIO. */
static int transfer_all(int fd, char *buf, size_t len, size_t off, bool out)
{
    while (len) {
        ssize_t n = out ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        off += (size_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int mmh_pwrite_all(int fd, const void *buf, size_t len, size_t off)
{
    return transfer_all(fd, (char *)buf, len, off, true);
}

int mmh_pread_all(int fd, void *buf, size_t len, size_t off)
{
    return transfer_all(fd, buf, len, off, false);
}

int mmh_io_failed(mmh_heap *h, const char *what, const char *file, size_t off)
{
    errno = errno ? errno : EIO;
    return mmh_fail(errno, "%s: %s of %s at offset %zu failed: %m", h->path, what, file, off);
}

/* The heap's bytes [off, off + len) to fd at off, counted in *written. */
static int write_range(mmh_heap *h, int fd, const char *file, size_t off, size_t len,
                       uint64_t *written)
{
    if (mmh_pwrite_all(fd, h->base + off, len, off) != 0)
        return mmh_io_failed(h, "write", file, off);
    *written += len;
    return 0;
}

static int write_in_place(mmh_heap *h, int fd, const char *file, const mmh_range *ranges,
                          size_t n, uint64_t *written)
{
    for (size_t i = 0; i < n; i++)
        if (write_range(h, fd, file, ranges[i].off, ranges[i].len, written) != 0)
            return -1;
    return 0;
}

/* write_in_place for anonymous memory, leaving out the pages never
 * touched (neither present nor swapped out, says /proc/self/pagemap):
 * they read as zeros, and so does the file's hole there. */
static int write_populated(mmh_heap *h, int fd, const char *file, const mmh_range *ranges,
                           size_t n, uint64_t *written)
{
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0)
        return write_in_place(h, fd, file, ranges, n, written);
    size_t page = h->hdr->page_size;
    uint64_t entries[512];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t run = 0, run_len = 0, end = ranges[i].off + ranges[i].len;
        for (size_t off = ranges[i].off; off < end && rc == 0;) {
            size_t k = (end - off) / page < 512 ? (end - off) / page : 512;
            if (mmh_pread_all(pagemap, entries, k * sizeof *entries,
                              (uintptr_t)(h->base + off) / page * sizeof *entries) != 0)
                memset(entries, 0xff, sizeof entries); /* unknown: write it */
            for (size_t j = 0; j < k && rc == 0; j++, off += page) {
                if (entries[j] >> 62) { /* bit 63 present, 62 swapped */
                    run = run_len ? run : off;
                    run_len += page;
                } else if (run_len) {
                    rc = write_range(h, fd, file, run, run_len, written);
                    run_len = 0;
                }
            }
        }
        if (run_len && rc == 0)
            rc = write_range(h, fd, file, run, run_len, written);
    }
    close(pagemap);
    return rc;
}

/* A complete heap file in fd: the in-use ranges at their offsets (the rest
 * stays a hole; for an anonymous heap, so do its untouched pages), the
 * header page from hdr, synced.  hdr may differ from the mapping's (a
 * snapshot gives its image an identity of its own).  *written: the bytes
 * of the heap written. */
int mmh_image_write(mmh_heap *h, int fd, const char *file, const mmh_range *ranges, size_t n,
                    const mmh_hdr *hdr, uint64_t *written)
{
    *written = 0;
    errno = 0;
    if (ftruncate(fd, (off_t)h->mapped) != 0)
        return mmh_io_failed(h, "truncate", file, h->mapped);
    if ((h->fd < 0 ? write_populated : write_in_place)(h, fd, file, ranges, n, written) != 0)
        return -1;
    if (mmh_pwrite_all(fd, hdr, MMH_HDR_SIZE, 0) != 0)
        return mmh_io_failed(h, "write", file, 0);
    if (fdatasync(fd) != 0)
        return mmh_io_failed(h, "fdatasync", file, 0);
    return 0;
}

/* The directory holding path (from mmh_meta_alloc), for mmh_sync_dir. */
char *mmh_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? mmh_meta_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                 : mmh_meta_strdup(".");
}

/* The last component of path, within it. */
const char *mmh_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Make the names in dir durable: file, created, linked or renamed there. */
int mmh_sync_dir(const char *dir, const char *file)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = mmh_fail(errno, "%s: cannot sync its directory %s: %m", file, dir);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

/* mmh_sync_dir for the directory of path. */
int mmh_sync_parent_dir(const char *path)
{
    char *dir = mmh_dir_of(path);
    if (!dir)
        return mmh_fail(ENOMEM, "%s: out of memory", path);
    int rc = mmh_sync_dir(dir, path);
    mmh_meta_free(dir);
    return rc;
}
