/* The recorder: definitions of the libc calls by which the library changes
 * files, linked into the harness's program so that they take the place of
 * libc's for libmmheap.so too.  Each performs the call (through the next
 * definition, libc's) and, if it changed a file in the watched directory,
 * appends a record (record.h).
 *
 * Background jobs' children call these after _Fork, so the recording path
 * is async-signal-safe: system calls only, one writev to an O_APPEND file
 * per record, no allocation, no stdio.  The real functions are looked up
 * once, when the program starts. */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static struct {
    int (*open)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    int (*ftruncate)(int, off_t);
    int (*fallocate)(int, int, off_t, off_t);
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*sync_file_range)(int, off_t, off_t, unsigned);
    int (*rename)(const char *, const char *);
    int (*link)(const char *, const char *);
    int (*linkat)(int, const char *, int, const char *, int);
    int (*unlink)(const char *);
} real;

static int log_fd = -1;
static char dir[PATH_MAX];
static size_t dir_len;
static char skip_name[64]; /* a file in dir whose syncs are dropped; "/name":
                              the directory's sync after name's creation */
static bool skip_dirsync;  /* that file was created: drop the next one */
static unsigned fail_nth;
static unsigned *sync_count; /* shared with the children */
static bool no_syncs;

__attribute__((constructor)) static void resolve(void)
{
#define R(f) real.f = (__typeof__(real.f))dlsym(RTLD_NEXT, #f)
    R(open); R(openat); R(write); R(pwrite); R(pwritev); R(ftruncate);
    R(fallocate); R(fsync); R(fdatasync); R(sync_file_range); R(rename); R(link);
    R(linkat); R(unlink);
#undef R
}

/* The real f, for a call made before the constructor ran. */
#define REAL(f) (real.f ? real.f : (resolve(), real.f))

void pl_record_start(int fd, const char *path)
{
    dir_len = strlen(path);
    memcpy(dir, path, dir_len + 1);
    log_fd = fd;
}

void pl_record_stop(void)
{
    log_fd = -1;
}

void pl_record_faults(const char *name, unsigned nth)
{
    strncpy(skip_name, name ? name : "", sizeof skip_name - 1);
    fail_nth = nth;
    if (!sync_count) {
        void *p = mmap(NULL, sizeof *sync_count, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        sync_count = p == MAP_FAILED ? NULL : p;
    }
    if (sync_count)
        *sync_count = 0;
}

void pl_record_no_syncs(void)
{
    no_syncs = true;
}

/* ---- the recording path: async-signal-safe ---------------------------- */

static void emit(struct pl_rec *r, const struct iovec *data, int n)
{
    struct iovec iov[64];
    int k = 0;
    r->pid = getpid();
    iov[k++] = (struct iovec){ r, sizeof *r };
    for (int i = 0; i <= n; i++) {
        if (k == 64 || (i == n && k)) {
            for (int j = 0; j < k;) { /* finish short writes */
                /* The system call itself: a sanitizer's writev would check
                 * the heap bytes, poisoned free blocks and all. */
                ssize_t w = syscall(SYS_writev, log_fd, iov + j, k - j);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0)
                    break;
                for (; j < k && (size_t)w >= iov[j].iov_len; w -= (ssize_t)iov[j++].iov_len)
                    ;
                if (j < k) {
                    iov[j].iov_base = (char *)iov[j].iov_base + w;
                    iov[j].iov_len -= (size_t)w;
                }
            }
            k = 0;
        }
        if (i < n)
            iov[k++] = data[i];
    }
}

static void set_name(char *to, const char *from)
{
    size_t n = strlen(from);
    memcpy(to, from, n < PL_NAME - 1 ? n : PL_NAME - 1);
}

/* A path in the watched directory: its last component, else NULL. */
static const char *watched_name(const char *path)
{
    if (log_fd < 0 || strncmp(path, dir, dir_len) != 0 || path[dir_len] != '/' ||
        strchr(path + dir_len + 1, '/'))
        return NULL;
    return path + dir_len + 1;
}

/* Is fd open on a regular file in the watched directory (*is_dir: on the
 * directory itself)?  Its inode in *ino; its name (by /proc) in link. */
static bool watched_fd(int fd, uint64_t *ino, bool *is_dir, char *link, size_t size)
{
    char proc[32] = "/proc/self/fd/", digits[12];
    int nd = 0;
    struct stat st;
    if (log_fd < 0 || fd < 0 || fstat(fd, &st) != 0)
        return false;
    for (unsigned v = (unsigned)fd; nd == 0 || v; v /= 10)
        digits[nd++] = (char)('0' + v % 10);
    for (size_t at = strlen(proc); nd;)
        proc[at++] = digits[--nd], proc[at] = '\0';
    ssize_t n = readlink(proc, link, size - 1);
    if (n < 0)
        return false;
    link[n] = '\0';
    *ino = st.st_ino;
    *is_dir = S_ISDIR(st.st_mode) && strcmp(link, dir) == 0;
    return *is_dir || (S_ISREG(st.st_mode) && strncmp(link, dir, dir_len) == 0 &&
                       link[dir_len] == '/');
}

static void record_fd(uint32_t op, int fd, uint64_t off, uint64_t len, uint64_t arg,
                      const struct iovec *data, int n)
{
    char link[PATH_MAX];
    bool is_dir;
    struct pl_rec r = { .op = op, .off = off, .len = len, .arg = arg };
    if (watched_fd(fd, &r.ino, &is_dir, link, sizeof link) && !is_dir)
        emit(&r, data, n);
}

static void record_name(uint32_t op, const char *name, const char *name2, const char *path)
{
    struct pl_rec r = { .op = op };
    struct stat st;
    if (path && lstat(path, &st) == 0)
        r.ino = st.st_ino;
    set_name(r.name, name);
    if (name2)
        set_name(r.name2, name2);
    emit(&r, NULL, 0);
}

void pl_record_mark(uint32_t op, const char *name, uint64_t version, uint64_t digest)
{
    struct pl_rec r = { .op = op, .off = version, .arg = digest };
    if (log_fd < 0)
        return;
    set_name(r.name, name);
    emit(&r, NULL, 0);
}

/* ---- the calls ---------------------------------------------------------- */

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    const char *name = dirfd == AT_FDCWD && (flags & O_CREAT) && (flags & O_TMPFILE) != O_TMPFILE
                       ? watched_name(path) : NULL;
    struct stat st;
    bool existed = name && lstat(path, &st) == 0;
    int fd = REAL(openat)(dirfd, path, flags, mode), err = errno;
    if (fd >= 0 && name && !existed) {
        record_name(PL_CREATE, name, NULL, path);
        skip_dirsync |= skip_name[0] == '/' && strcmp(name, skip_name + 1) == 0;
    }
    /* An unnamed file: a new inode, maybe of a number a removed file had. */
    if (fd >= 0 && log_fd >= 0 && (flags & O_TMPFILE) == O_TMPFILE && dirfd == AT_FDCWD &&
        strcmp(path, dir) == 0 && fstat(fd, &st) == 0)
        emit(&(struct pl_rec){ .op = PL_CREATE, .ino = st.st_ino }, NULL, 0);
    errno = err;
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

/* The iovecs of the first `done` bytes of iov[0..n), into out (at most n). */
static int iov_prefix(const struct iovec *iov, int n, size_t done, struct iovec *out)
{
    int k = 0;
    for (; k < n && done; k++) {
        out[k] = iov[k];
        if (out[k].iov_len > done)
            out[k].iov_len = done;
        done -= out[k].iov_len;
    }
    return k;
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    ssize_t done = REAL(pwritev)(fd, iov, n, off);
    int err = errno;
    if (done > 0 && n <= IOV_MAX) {
        struct iovec part[IOV_MAX];
        record_fd(PL_WRITE, fd, (uint64_t)off, (uint64_t)done, 0, part,
                  iov_prefix(iov, n, (size_t)done, part));
    }
    errno = err;
    return done;
}

ssize_t pwritev64(int, const struct iovec *, int, off_t) __attribute__((alias("pwritev")));

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t done = REAL(pwrite)(fd, buf, len, off);
    int err = errno;
    if (done > 0)
        record_fd(PL_WRITE, fd, (uint64_t)off, (uint64_t)done, 0,
                  &(struct iovec){ (void *)buf, (size_t)done }, 1);
    errno = err;
    return done;
}

ssize_t pwrite64(int, const void *, size_t, off_t) __attribute__((alias("pwrite")));

ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t done = REAL(write)(fd, buf, len);
    int err = errno;
    off_t end;
    if (done > 0 && log_fd >= 0 && fd != log_fd && (end = lseek(fd, 0, SEEK_CUR)) >= done)
        record_fd(PL_WRITE, fd, (uint64_t)(end - done), (uint64_t)done, 0,
                  &(struct iovec){ (void *)buf, (size_t)done }, 1);
    errno = err;
    return done;
}

int ftruncate(int fd, off_t len)
{
    int rc = REAL(ftruncate)(fd, len), err = errno;
    if (rc == 0)
        record_fd(PL_TRUNC, fd, (uint64_t)len, 0, 0, NULL, 0);
    errno = err;
    return rc;
}

int ftruncate64(int, off_t) __attribute__((alias("ftruncate")));

int fallocate(int fd, int mode, off_t off, off_t len)
{
    int rc = REAL(fallocate)(fd, mode, off, len), err = errno;
    if (rc == 0)
        record_fd(PL_FALLOC, fd, (uint64_t)off, (uint64_t)len, (uint64_t)mode, NULL, 0);
    errno = err;
    return rc;
}

int fallocate64(int, int, off_t, off_t) __attribute__((alias("fallocate")));

/* Is name in the watched directory the file ino?  By inode: /proc shows
 * an O_TMPFILE linked into place under its first, unnamed path. */
static bool named(const char *name, uint64_t ino)
{
    char path[PATH_MAX];
    size_t n = strlen(name);
    struct stat st;
    if (dir_len + 1 + n >= sizeof path)
        return false;
    memcpy(path, dir, dir_len);
    path[dir_len] = '/';
    memcpy(path + dir_len + 1, name, n + 1);
    return lstat(path, &st) == 0 && st.st_ino == ino;
}

/* fsync and fdatasync: a sync of a file or of the watched directory, or an
 * injected fault in its place. */
static int sync_common(int fd, int (*fn)(int))
{
    char link[PATH_MAX];
    uint64_t ino;
    bool is_dir;
    if (no_syncs)
        return 0;
    if (!watched_fd(fd, &ino, &is_dir, link, sizeof link))
        return fn(fd);
    struct pl_rec r = { .op = is_dir ? PL_DIRSYNC : PL_SYNC, .ino = ino };
    if (!is_dir && skip_name[0] && named(skip_name, ino))
        return 0;
    if (is_dir && skip_dirsync) {
        skip_dirsync = false;
        return 0;
    }
    if (!is_dir && fail_nth && sync_count &&
        __atomic_add_fetch(sync_count, 1, __ATOMIC_SEQ_CST) == fail_nth) {
        r.op = PL_FAILSYNC;
        emit(&r, NULL, 0);
        errno = EIO;
        return -1;
    }
    int rc = fn(fd), err = errno;
    if (rc == 0)
        emit(&r, NULL, 0);
    errno = err;
    return rc;
}

int fsync(int fd)
{
    return sync_common(fd, REAL(fsync));
}

int fdatasync(int fd)
{
    return sync_common(fd, REAL(fdatasync));
}

int sync_file_range(int fd, off_t off, off_t len, unsigned flags)
{
    int rc = REAL(sync_file_range)(fd, off, len, flags), err = errno;
    if (rc == 0)
        record_fd(PL_RANGE, fd, (uint64_t)off, (uint64_t)len, flags, NULL, 0);
    errno = err;
    return rc;
}

int rename(const char *from, const char *to)
{
    int rc = REAL(rename)(from, to), err = errno;
    const char *a = watched_name(from), *b = watched_name(to);
    if (rc == 0 && b)
        record_name(a ? PL_RENAME : PL_LINK, a ? a : b, a ? b : NULL, to);
    errno = err;
    return rc;
}

int link(const char *from, const char *to)
{
    int rc = REAL(link)(from, to), err = errno;
    const char *b = watched_name(to);
    if (rc == 0 && b)
        record_name(PL_LINK, b, NULL, to);
    errno = err;
    return rc;
}

/* linkat from /proc/self/fd/N: how an O_TMPFILE file gets its name. */
int linkat(int fromdir, const char *from, int todir, const char *to, int flags)
{
    int rc = REAL(linkat)(fromdir, from, todir, to, flags), err = errno;
    const char *b = todir == AT_FDCWD ? watched_name(to) : NULL;
    if (rc == 0 && b)
        record_name(PL_LINK, b, NULL, to);
    errno = err;
    return rc;
}

int unlink(const char *path)
{
    int rc = REAL(unlink)(path), err = errno;
    const char *a = watched_name(path);
    if (rc == 0 && a)
        record_name(PL_UNLINK, a, NULL, NULL);
    errno = err;
    return rc;
}
