/* test_faults: a commit that hits a failing write, a failing sync, the file
 * size limit or a full disk reports it with a clear message, refuses every
 * later commit, and leaves the last completed commit readable.
 *
 * pwrite and fdatasync are interposed here, in the executable: the library's
 * calls resolve to these, which fail on demand and otherwise call libc's.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* Fail the next matching call whose path (of fd) ends with `suffix`. */
static struct {
    const char *call;   /* "pwrite" or "fdatasync" */
    const char *suffix; /* ".journal" or ".heap"    */
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

/* Version 1 committed; version 2 written and committed under the fault:
 * the commit fails naming `names`, later commits fail too, close reports
 * it, and the file holds version 1 (or 2, where `may_survive`). */
static void commit_under_fault(const char *call, const char *suffix, int err, bool may_survive)
{
    char *path = make_heap("fault.heap", 1);
    mmh_heap *h = mmh_open(path, NULL);
    assert_non_null(h);
    unsigned char *p = mmh_root(h);
    tu_fill(p, DATA_LEN, 2);
    inject.call = call;
    inject.suffix = suffix;
    inject.err = err;
    errno = 0;
    assert_int_equal(mmh_commit(h), -1);
    assert_int_equal(errno, err);
    if (!strstr(mmh_errmsg(), path))
        fail_msg("the message does not name the heap: %s", mmh_errmsg());
    assert_null(inject.call);                 /* the fault was hit */
    tu_fill(p, DATA_LEN, 3);
    assert_int_equal(mmh_commit(h), -1);      /* final: no later commit */
    assert_int_equal(errno, err);
    assert_int_equal(mmh_close(h), -1);
    uint64_t v = committed_version(path, 1, may_survive ? 2 : 1);
    assert_true(v == 1 || may_survive);
    unlink(path);
    free(path);
}

static void test_journal_write_fails(void **state)
{
    (void)state;
    commit_under_fault("pwrite", ".journal", ENOSPC, false);
}

static void test_journal_sync_fails(void **state)
{
    (void)state;
    commit_under_fault("fdatasync", ".journal", EIO, false);
}

/* Once the journal is durable, the commit is: a failed write or sync of the
 * heap file is repaired from the journal at the next open. */
static void test_heap_write_fails(void **state)
{
    (void)state;
    commit_under_fault("pwrite", ".heap", EIO, true);
}

static void test_heap_sync_fails(void **state)
{
    (void)state;
    commit_under_fault("fdatasync", ".heap", EIO, true);
}

/* The journal would pass RLIMIT_FSIZE: EFBIG, no SIGXFSZ. */
static int fsize_child(void *arg)
{
    const char *path = arg;
    mmh_heap *h = mmh_open(path, NULL);
    CK(h != NULL);
    unsigned char *p = mmh_root(h);
    tu_fill(p, DATA_LEN, 2);
    struct rlimit rl = { DATA_LEN / 2, DATA_LEN / 2 };
    CK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno == EFBIG);
    CK(strstr(mmh_errmsg(), "file size limit") != NULL);
    return 0;
}

static void test_fsize_limit(void **state)
{
    (void)state;
    char *path = make_heap("fsize.heap", 1);
    assert_child_ok(fsize_child, path);
    assert_int_equal(committed_version(path, 1, 1), 1);
    unlink(path);
    free(path);
}

/* A real full disk: a 24 MiB tmpfs in a private mount namespace. */
static int disk_full_child(void *arg)
{
    const char *dir = arg;
    if (tu_private_tmpfs(dir, "size=24m") != 0)
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
    /* 10 MiB more data: the heap's file reserves room for it on tmpfs
     * (about 20 MiB in all), its journal does not fit */
    unsigned char *big = mmh_alloc(h, 10 * MiB);
    CK(big != NULL);
    memset(big, 0x5a, 10 * MiB);
    tu_fill(p, DATA_LEN, 2);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), "full.heap") != NULL);
    CK(mmh_close(h) == -1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_write_fails),
        cmocka_unit_test(test_journal_sync_fails),
        cmocka_unit_test(test_heap_write_fails),
        cmocka_unit_test(test_heap_sync_fails),
        cmocka_unit_test(test_fsize_limit),
        cmocka_unit_test(test_disk_full),
    };
    return TU_RUN(tests);
}
