/* Opening and creating the files of a heap without trusting what another
 * user may have planted.
 *
 * A heap file and its directory are trusted as far as their owner is.  A
 * file beside the heap (its journal) is not: in a directory others can
 * write, anyone may put a symbolic link, a hard link, a FIFO or a file of
 * their own under its name, to make the library truncate or fill a file of
 * their choosing, hang, leak what a commit writes, or replay old bytes.
 * So such a file is opened with O_NOFOLLOW and O_NONBLOCK, and used only
 * if it is a regular file with one link, owned by the heap file's owner,
 * giving nobody access the heap file does not.
 *
 * New files (a heap being created, a snapshot image) are made unnamed
 * (O_TMPFILE) and linked into place only when complete: nothing is left
 * behind by a crash or a kill, and no predictable name is ever opened. */
#define _GNU_SOURCE
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file opened with O_NONBLOCK (so that a FIFO cannot hang the open)
 * that turned out to be regular: make its I/O blocking again. */
static int clear_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

int mmh_open_regular(const char *path, int flags)
{
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mmh_fail(errno, "%s: cannot open: %m", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || clear_nonblock(fd) != 0) {
        int rc = mmh_fail(errno, "%s: cannot stat: %m", path);
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mmh_fail(EINVAL, "%s: not a regular file", path);
    }
    return fd;
}

/* Is the companion file fd (named path) one the heap file hs's owner made? */
static int companion_check(const char *heap, const char *path, int fd, const struct stat *hs)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return mmh_fail(errno, "%s: cannot stat %s: %m", heap, path);
    if (!S_ISREG(st.st_mode))
        return mmh_fail(EPERM, "%s: %s is not a regular file; refused", heap, path);
    if (st.st_nlink != 1)
        return mmh_fail(EPERM, "%s: %s has %llu links, so it is another file's name too; "
                        "refused", heap, path, (unsigned long long)st.st_nlink);
    if (st.st_uid != hs->st_uid)
        return mmh_fail(EPERM, "%s: %s belongs to uid %u, not to the heap file's owner (uid "
                        "%u); refused", heap, path, (unsigned)st.st_uid, (unsigned)hs->st_uid);
    if (st.st_mode & 0777 & ~hs->st_mode)
        return mmh_fail(EPERM, "%s: %s has mode 0%o, which lets others do more than the heap "
                        "file's 0%o; refused", heap, path, (unsigned)(st.st_mode & 0777),
                        (unsigned)(hs->st_mode & 0777));
    return clear_nonblock(fd) == 0 ? 0 : mmh_fail(errno, "%s: %s: %m", heap, path);
}

int mmh_open_companion(int heap_fd, const char *heap, const char *path, int flags,
                       bool *created)
{
    struct stat hs;
    if (fstat(heap_fd, &hs) != 0)
        return mmh_fail(errno, "%s: cannot stat: %m", heap);
    int open_flags = (flags & O_ACCMODE) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, fd = -1;
    *created = false;
    /* Open it, or create it; a file removed in between is tried again. */
    for (int tries = 0; fd < 0 && tries < 4; tries++) {
        if (flags & O_CREAT) {
            fd = open(path, open_flags | O_CREAT | O_EXCL, hs.st_mode & 0666);
            if (fd >= 0 || errno != EEXIST) {
                *created = fd >= 0;
                break;
            }
        }
        fd = open(path, open_flags);
        if (fd >= 0 || errno != ENOENT || !(flags & O_CREAT))
            break;
    }
    if (fd < 0) {
        if (errno == ENOENT)
            return -1; /* absent, and not to be created: no message */
        if (errno == ELOOP)
            return mmh_fail(ELOOP, "%s: %s is a symbolic link; refused", heap, path);
        return mmh_fail(errno, "%s: cannot open %s: %m", heap, path);
    }
    /* Root opening another user's heap makes the file that user's. */
    if (*created && geteuid() != hs.st_uid && fchown(fd, hs.st_uid, hs.st_gid) != 0) {
        int rc = mmh_fail(errno, "%s: cannot give %s to the heap file's owner: %m", heap, path);
        unlink(path);
        close(fd);
        return rc;
    }
    if (companion_check(heap, path, fd, &hs) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- new files -------------------------------------------------------- */

int mmh_newfile_create(mmh_newfile *nf, const char *path, unsigned mode)
{
    size_t n = strlen(path) + 48;
    memset(nf, 0, sizeof *nf);
    nf->fd = -1;
    char *dir = mmh_dir_of(path);
    nf->tmp = mmh_meta_alloc(n);
    if (!dir || !nf->tmp) {
        mmh_meta_free(dir);
        mmh_newfile_discard(nf);
        return mmh_fail(ENOMEM, "%s: out of memory", path);
    }
    snprintf(nf->tmp, n, "%s.tmp.%d.%016llx", path, (int)getpid(),
             (unsigned long long)mmh_random_u64());
    nf->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    mmh_meta_free(dir);
    if (nf->fd >= 0) {
        snprintf(nf->proc, sizeof nf->proc, "/proc/self/fd/%d", nf->fd);
        if (access(nf->proc, F_OK) == 0) {
            nf->unnamed = true;
            return 0;
        }
        close(nf->fd); /* no /proc to link it through */
    }
    /* A file system without O_TMPFILE: a fresh name nobody can predict. */
    nf->fd = open(nf->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (nf->fd < 0) {
        int rc = mmh_fail(errno, "%s: cannot create a file beside it: %m", path);
        mmh_newfile_discard(nf);
        return rc;
    }
    return 0;
}

/* Async-signal-safe: a snapshot's child calls it. */
int mmh_newfile_link(mmh_newfile *nf, const char *path, bool replace)
{
    if (nf->unnamed) {
        /* linkat never replaces: an image goes through its temporary name. */
        if (linkat(AT_FDCWD, nf->proc, AT_FDCWD, replace ? nf->tmp : path,
                   AT_SYMLINK_FOLLOW) != 0)
            return mmh_fail(errno, "%s: cannot link the new file into place: %m", path);
        nf->unnamed = false;
        if (!replace) {
            nf->tmp[0] = '\0';
            return 0;
        }
    }
    if (replace ? rename(nf->tmp, path) : link(nf->tmp, path)) {
        int err = errno;
        return mmh_fail(err, "%s: cannot %s %s into place: %s", path,
                        replace ? "rename" : "link", nf->tmp, strerrordesc_np(err));
    }
    if (!replace)
        unlink(nf->tmp);
    nf->tmp[0] = '\0';
    return 0;
}

/* Close it, and remove its temporary name if it still has one: a file
 * that was never linked, or a snapshot whose job died between linking and
 * renaming it (the name is random: it can be nobody else's file). */
void mmh_newfile_discard(mmh_newfile *nf)
{
    int err = errno;
    if (nf->fd >= 0)
        close(nf->fd);
    nf->fd = -1;
    if (nf->tmp && nf->tmp[0])
        unlink(nf->tmp);
    mmh_meta_free(nf->tmp);
    nf->tmp = NULL;
    errno = err;
}
