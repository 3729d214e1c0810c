/* test_faults: a commit that hits a failing write, a failing sync, the file
 * size limit or a full disk reports it with a clear message and leaves the
 * last completed commit readable.  A failed sync, or any failed write but
 * for a full disk, refuses every later commit; a full disk does not.  A
 * checkpoint that fails after the commit point loses nothing: the commit is
 * durable in the log, and the next open applies it.
 *
 * pwrite, pwritev and fdatasync are interposed here, in the executable: the
 * library's calls resolve to these, which fail on demand and otherwise call
 * libc's.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

/* Fail the next matching call whose path (of fd) ends with `suffix`. */
static struct {
    const char *call;   /* "pwrite" (either kind) or "fdatasync" */
    const char *suffix; /* ".wal" or ".heap"                     */
    int err;
} inject;

static bool injected(const char *call, int fd)
{
    char link[64], target[4096];
    if (!inject.call || strcmp(inject.call, call) != 0)
        return false;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    size_t sl = strlen(inject.suffix);
    if ((size_t)n < sl || strcmp(target + n - sl, inject.suffix) != 0)
        return false;
    errno = inject.err;
    inject.call = NULL; /* once */
    return true;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    return injected("pwrite", fd) ? -1 : real(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off);
ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    static ssize_t (*real)(int, const struct iovec *, int, off_t);
    if (!real)
        real = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "pwritev");
    return injected("pwrite", fd) ? -1 : real(fd, iov, n, off);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return injected("fdatasync", fd) ? -1 : real(fd);
}

#define DATA_LEN (1 * MiB)

/* A heap whose root block of DATA_LEN holds pattern `version`, committed. */
static char *make_heap(const char *name, uint64_t version)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *p = mmh_alloc(h, DATA_LEN);
    assert_non_null(p);
    tu_fill(p, DATA_LEN, version);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_close(h), 0);
    return path;
}

/* Reopen: the root block holds exactly one of the allowed versions. */
static uint64_t committed_version(const char *path, uint64_t a, uint64_t b)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen of %s failed: %s", path, mmh_errmsg());
    unsigned char *p = mmh_root(h);
    assert_non_null(p);
    uint64_t v = tu_verify(p, DATA_LEN, a) ? a : tu_verify(p, DATA_LEN, b) ? b : UINT64_MAX;
    assert_int_equal(mmh_close(h), 0);
    if (v == UINT64_MAX)
        fail_msg("%s holds neither version %llu nor %llu", path, (unsigned long long)a,
                 (unsigned long long)b);
    return v;
}

/* The heap of make_heap reopened at *path, its root (returned) holding
 * version 2, and the fault armed for the next commit. */
static unsigned char *open_armed(char **path, mmh_heap **h, const char *call,
                                 const char *suffix, int err)
{
    *path = make_heap("fault.heap", 1);
    *h = mmh_open(*path, NULL);
    assert_non_null(*h);
    unsigned char *p = mmh_root(*h);
    tu_fill(p, DATA_LEN, 2);
    inject.call = call;
    inject.suffix = suffix;
    inject.err = err;
    return p;
}

/* Version 1 committed; version 2 written and committed under a fault of
 * the log: the commit fails naming the heap, and the file holds version 1.
 * A failed sync is final: later commits fail too, and close reports it.  A
 * full disk is not: the next commit writes version 3. */
static void log_fault(const char *call, int err)
{
    char *path;
    mmh_heap *h;
    unsigned char *p = open_armed(&path, &h, call, ".wal", err);
    errno = 0;
    assert_int_equal(mmh_commit(h), -1);
    assert_int_equal(errno, err);
    if (!strstr(mmh_errmsg(), path))
        fail_msg("the message does not name the heap: %s", mmh_errmsg());
    assert_null(inject.call);                 /* the fault was hit */
    tu_fill(p, DATA_LEN, 3);
    if (err == ENOSPC) {
        assert_int_equal(mmh_commit(h), 0);
        assert_int_equal(mmh_close(h), 0);
        assert_int_equal(committed_version(path, 3, 3), 3);
    } else {
        assert_int_equal(mmh_commit(h), -1);  /* final: no later commit */
        assert_int_equal(errno, err);
        assert_int_equal(mmh_close(h), -1);
        assert_int_equal(committed_version(path, 1, 1), 1);
    }
    unlink(path);
    free(path);
}

static void test_log_write_fails(void **state)
{
    (void)state;
    log_fault("pwrite", ENOSPC);
}

static void test_log_sync_fails(void **state)
{
    (void)state;
    log_fault("fdatasync", EIO);
}

/* A background commit whose log sync fails is as final as a foreground
 * one: the job reports it, and every later commit fails. */
static void test_job_sync_fails(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h;
    (void)open_armed(&path, &h, "fdatasync", ".wal", EIO);
    assert_int_equal(mmh_commit_bg(h), 0);
    errno = 0;
    assert_int_equal(mmh_wait(h, 0), -1);
    assert_int_equal(errno, EIO);
    inject.call = NULL; /* the child took the fault; the parent's copy is armed */
    errno = 0;
    if (mmh_commit(h) != -1)
        fail_msg("a commit after a background job's failed sync succeeded");
    assert_int_equal(errno, EIO);
    assert_int_equal(mmh_close(h), -1);
    assert_int_equal(committed_version(path, 1, 1), 1);
    unlink(path);
    free(path);
}

/* Once the log is durable, the commit has happened: a failed write or sync
 * of the heap file in the checkpoint after it loses nothing.  The log keeps
 * the commit, and the next open applies it.  A full disk may clear up, so
 * the next checkpoint tries again and goes on; any other failure stops
 * checkpoints, and with them commits (a retried sync may lie). */
static void heap_fault_after_commit(const char *call, int err)
{
    char *path;
    mmh_heap *h;
    unsigned char *p = open_armed(&path, &h, call, ".heap", err);
    if (mmh_commit(h) != 0)
        fail_msg("a commit failed on a fault of the heap file: %s", mmh_errmsg());
    errno = 0;
    assert_int_equal(mmh_checkpoint(h), -1);
    assert_int_equal(errno, err);
    assert_errmsg_contains(path);
    assert_null(inject.call);                 /* the fault was hit */
    tu_fill(p, DATA_LEN, 3);
    if (err == ENOSPC) {                      /* space again: checkpointed, goes on */
        assert_int_equal(mmh_commit(h), 0);
        assert_int_equal(mmh_close(h), 0);
        assert_int_equal(committed_version(path, 3, 3), 3);
    } else {
        errno = 0;
        assert_int_equal(mmh_commit(h), -1);  /* final: no later commit */
        assert_int_equal(errno, err);
        assert_errmsg_contains("durable");
        assert_int_equal(mmh_close(h), -1);
        assert_int_equal(committed_version(path, 2, 2), 2);
    }
    unlink(path);
    free(path);
}

static void test_heap_write_fails(void **state)
{
    (void)state;
    heap_fault_after_commit("pwrite", EIO);
}

static void test_heap_sync_fails(void **state)
{
    (void)state;
    heap_fault_after_commit("fdatasync", EIO);
}

static void test_heap_write_full(void **state)
{
    (void)state;
    heap_fault_after_commit("pwrite", ENOSPC);
}

/* The log would pass RLIMIT_FSIZE: EFBIG, no SIGXFSZ, and not final: the
 * pages of the refused commit go with the next one, once the limit is
 * raised (a commit that forgot them left a heap that no longer opened). */
static int fsize_child(void *arg)
{
    const char *path = arg;
    mmh_heap *h = mmh_open(path, NULL);
    CK(h != NULL);
    unsigned char *p = mmh_root(h);
    tu_fill(p, DATA_LEN, 2);
    struct rlimit rl, old;
    CK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    rl = (struct rlimit){ DATA_LEN / 2, old.rlim_max };
    CK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno == EFBIG);
    CK(strstr(mmh_errmsg(), "file size limit") != NULL);
    CK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CK(mmh_commit(h) == 0);
    CK(mmh_close(h) == 0);
    return 0;
}

static void test_fsize_limit(void **state)
{
    (void)state;
    char *path = make_heap("fsize.heap", 1);
    assert_child_ok(fsize_child, path);
    assert_int_equal(committed_version(path, 2, 2), 2);
    unlink(path);
    free(path);
}

static int fill_disk(const char *dir, const char *name, size_t left);

/* A real full disk: a 48 MiB tmpfs in a private mount namespace. */
static int disk_full_child(void *arg)
{
    const char *dir = arg;
    if (tu_private_tmpfs(dir, "size=48m") != 0)
        return 77; /* not root here: skipped */
    char path[4096];
    snprintf(path, sizeof path, "%s/full.heap", dir);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    unsigned char *p = mmh_alloc(h, DATA_LEN);
    CK(p != NULL);
    tu_fill(p, DATA_LEN, 1);
    CK(mmh_set_root(h, p) == 0);
    CK(mmh_commit(h) == 0);
    /* 20 MiB more data: the heap's file reserves room for it on tmpfs,
     * then the disk is filled: the log (16 MiB after the first commit)
     * cannot take it.  Not final: the close's commit tries again, and fails
     * the same way. */
    unsigned char *big = mmh_alloc(h, 20 * MiB);
    CK(big != NULL);
    memset(big, 0x5a, 20 * MiB);
    tu_fill(p, DATA_LEN, 2);
    CK(fill_disk(dir, "filler", 1 * MiB) == 0);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), "full.heap") != NULL);
    CK(mmh_close(h) == -1);
    CK(errno == ENOSPC);
    h = mmh_open(path, NULL);
    CK(h != NULL);
    CK(tu_verify(mmh_root(h), DATA_LEN, 1));
    CK(mmh_close(h) == 0);
    return 0;
}

static void test_disk_full(void **state)
{
    (void)state;
    tu_run_tmpfs_child(disk_full_child, "disk-full");
}

/* In a child: a private mount namespace with a fresh ext4 file system of
 * mb MiB (a loop device) on dir.  On ext4 a private mapping reads holes as
 * zeros without taking space, as on every disk file system; tmpfs would
 * need a page.  -1 where that is not possible (not root, no mkfs.ext4). */
static int private_ext4(const char *dir, unsigned mb)
{
    char img[4096], cmd[3 * 4096];
    snprintf(img, sizeof img, "%s.img", dir);
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)mb << 20) != 0 || close(fd) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "mkfs.ext4 -q -F -m 0 %s >/dev/null 2>&1 && "
             "mount -o loop %s %s >/dev/null 2>&1", img, img, dir);
    int rc = unshare(CLONE_NEWNS) == 0 &&
             mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0 && system(cmd) == 0
                 ? 0 : -1;
    unlink(img); /* the loop device keeps it */
    return rc;
}

/* A file taking all but `left` bytes of the file system holding dir. */
static int fill_disk(const char *dir, const char *name, size_t left)
{
    struct statvfs vfs;
    CK(statvfs(dir, &vfs) == 0);
    size_t avail = (size_t)vfs.f_bavail * vfs.f_bsize;
    CK(avail > left);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CK(fd >= 0);
    CK(fallocate(fd, 0, 0, (off_t)(avail - left)) == 0);
    close(fd);
    return 0;
}

struct full_root {
    unsigned char *small, *big;
};

/* The root's blocks hold patterns small_seed and 0x5a5a. */
static bool holds(mmh_heap *h, uint64_t small_seed)
{
    struct full_root *r = mmh_root(h);
    return r && tu_verify(r->small, DATA_LEN, small_seed) && r->big &&
           tu_verify(r->big, 16 * MiB, 0x5a5a);
}

/* A full disk after the commit point: the log fits, the heap file's new
 * pages do not.  The commit succeeds; the next one, whose room in the log
 * needs a checkpoint, and close, say that it is durable but not yet in the
 * heap file; an open while the disk is still full lays the log over its
 * mapping; once there is space, a checkpoint writes it and commits go on. */
static int full_after_commit_child(void *arg)
{
    const char *dir = arg;
    if (private_ext4(dir, 64) != 0)
        return 77;
    char path[4096], filler[4096];
    snprintf(path, sizeof path, "%s/full.heap", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct full_root *r = mmh_calloc(h, 1, sizeof *r);
    CK(r && (r->small = mmh_alloc(h, DATA_LEN)) != NULL);
    tu_fill(r->small, DATA_LEN, 1);
    CK(mmh_set_root(h, r) == 0);
    CK(mmh_commit(h) == 0);
    CK((r->big = mmh_alloc(h, 16 * MiB)) != NULL);
    tu_fill(r->big, 16 * MiB, 0x5a5a);
    tu_fill(r->small, DATA_LEN, 2);
    /* The log, zero-filled to hold 16 commits like the first, takes most of
     * this 17 MiB one; the heap file's 16 MiB of new blocks do not fit. */
    CK(fill_disk(dir, "filler", 8 * MiB) == 0);
    if (mmh_commit(h) != 0) {
        fprintf(stderr, "a commit that fits the log was reported failed: %s\n",
                mmh_errmsg());
        return 1;
    }
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), "not yet in the heap file") != NULL);
    CK(mmh_close(h) == -1);

    h = mmh_open(path, NULL);            /* the disk is still full */
    if (!h) {
        fprintf(stderr, "open with a full disk: %s\n", mmh_errmsg());
        return 1;
    }
    CK(holds(h, 2));
    CK(mmh_close(h) == -1);              /* nothing written yet */

    CK(unlink(filler) == 0);
    h = mmh_open(path, NULL);
    CK(h != NULL && holds(h, 2));
    tu_fill(((struct full_root *)mmh_root(h))->small, DATA_LEN, 3);
    CK(mmh_commit(h) == 0);
    CK(mmh_close(h) == 0);
    h = mmh_open(path, NULL);
    CK(h != NULL && holds(h, 3));
    CK(mmh_close(h) == 0);
    return 0;
}

static void test_disk_full_after_commit(void **state)
{
    (void)state;
    tu_run_tmpfs_child(full_after_commit_child, "full-after-commit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_write_fails),
        cmocka_unit_test(test_log_sync_fails),
        cmocka_unit_test(test_job_sync_fails),
        cmocka_unit_test(test_heap_write_fails),
        cmocka_unit_test(test_heap_sync_fails),
        cmocka_unit_test(test_heap_write_full),
        cmocka_unit_test(test_fsize_limit),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_disk_full_after_commit),
    };
    return TU_RUN(tests);
}
