/* test_trust: what another user can plant beside a heap is never trusted,
 * and nothing the library opens can hang it or be swapped under it.
 *
 * - FILE.wal as a symbolic link (to a file, dangling), a hard link, a
 *   FIFO, another user's file, or a file with more access than the heap:
 *   refused by mmh_open and by the mmheap command, and the file it points
 *   to is left untouched.
 * - A copy of an older log is never replayed (no rollback); one holding the
 *   very commit the header shows still is.
 * - A heap file that is a FIFO: refused, no hang.
 * - mmh_snapshot opens no predictable name, leaves no temporary file when
 *   its job is killed, and refuses a target a writer holds; a writer whose
 *   file was replaced under it fails its next commit.
 * - A log the library creates is made durable by name (a directory fsync)
 *   before the open returns.
 *
 * fsync and open are interposed here, in the executable, to see the order
 * of the library's calls.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---------------------------------------------------------- interposers */

/* The ".wal" file made by the last open(O_CREAT) that created one, and
 * whether a directory was fsynced after that. */
static struct {
    bool wal_created, dir_synced_after;
} seen;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int open(const char *path, int flags, ...)
{
    static int (*real)(const char *, int, ...);
    if (!real)
        real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    mode_t mode = 0;
    if (flags & (O_CREAT | __O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    bool existed = (flags & O_CREAT) && access(path, F_OK) == 0;
    int fd = real(path, flags, mode);
    if (fd >= 0 && (flags & O_CREAT) && !existed && ends_with(path, ".wal")) {
        seen.wal_created = true;
        seen.dir_synced_after = false;
    }
    return fd;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && seen.wal_created)
        seen.dir_synced_after = true;
    return real(fd);
}

/* ---------------------------------------------------------------- helpers */

#define PRECIOUS "precious bytes of another file\n"

static int tool(const char *const args[], char *out, size_t size)
{
    int rc = tu_run_tool(args, out, size);
    if (rc == -2)
        fail_msg("MMH_MMHEAP_TOOL is not set: run through make check");
    return rc;
}

/* A heap at name whose root block holds pattern 1, committed and closed. */
static char *make_heap(const char *name)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    void *p = mmh_alloc(h, 64 * KiB);
    assert_non_null(p);
    tu_fill(p, 64 * KiB, 1);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_close(h), 0);
    return path;
}

/* The paths wal_of made, kept reachable: a child forked while a test
 * holds one _exits without freeing it. */
static char *volatile wal_paths_kept[16];
static unsigned wal_paths_next;

static char *wal_of(const char *path)
{
    char *j = NULL;
    assert_true(asprintf(&j, "%s.wal", path) > 0);
    wal_paths_kept[wal_paths_next++ % 16] = j;
    return j;
}

/* A heap file with no log yet: the image of an anonymous heap whose one
 * block holds pattern seed. */
static void make_image(const char *img, uint64_t seed)
{
    mmh_heap *a = mmh_open(NULL, NULL);
    assert_non_null(a);
    tu_fill(mmh_alloc(a, 4096), 4096, seed);
    assert_int_equal(mmh_snapshot(a, img), 0);
    assert_int_equal(mmh_wait(a, 0), 0);
    assert_int_equal(mmh_close(a), 0);
}

static char *make_victim(const char *name)
{
    char *v = tu_path(name);
    assert_int_equal(tu_write_file(v, PRECIOUS, strlen(PRECIOUS)), 0);
    return v;
}

static void assert_victim_intact(const char *v)
{
    size_t len = 0;
    char *data = tu_read_file(v, &len);
    assert_non_null(data);
    if (len != strlen(PRECIOUS) || memcmp(data, PRECIOUS, len) != 0)
        fail_msg("%s was changed (%zu bytes now)", v, len);
    free(data);
}

/* Every way in refuses the heap with errno err and a message containing
 * `why`: writable, read-only and volatile opens, and mmheap info, check
 * and recover (exit 3, the reason on the output). */
static void assert_all_refuse(const char *path, int err, const char *why)
{
    static const unsigned flags[] = { 0, MMH_READONLY, MMH_VOLATILE };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        mmh_config cfg = tu_cfg(flags[i], 0, 0);
        errno = 0;
        mmh_heap *h = mmh_open(path, &cfg);
        if (h)
            fail_msg("open with flags %#x accepted %s", flags[i], path);
        assert_int_equal(errno, err);
        assert_errmsg_contains(why);
    }
    static const char *const cmds[] = { "info", "check", "recover" };
    for (size_t i = 0; i < 3; i++) {
        char out[4096];
        const char *args[] = { cmds[i], path, NULL };
        int rc = tool(args, out, sizeof out);
        if (rc != 3 || !strstr(out, why))
            fail_msg("mmheap %s: exit %d, output: %s", cmds[i], rc, out);
    }
}

/* ----------------------------------------------------------------- tests */

static void test_log_symlink(void **state)
{
    (void)state;
    char *path = make_heap("link.heap"), *j = wal_of(path);
    char *victim = make_victim("victim.txt");
    assert_int_equal(unlink(j), 0);
    assert_int_equal(symlink(victim, j), 0);
    assert_all_refuse(path, ELOOP, "symbolic link");
    assert_victim_intact(victim);

    char *absent = tu_path("never-made.txt");
    assert_int_equal(unlink(j), 0);
    assert_int_equal(symlink(absent, j), 0); /* dangling: not created */
    assert_all_refuse(path, ELOOP, "symbolic link");
    assert_int_equal(access(absent, F_OK), -1);
    unlink(j);
    free(absent);
    free(victim);
    free(j);
    free(path);
}

static void test_log_hard_link(void **state)
{
    (void)state;
    char *path = make_heap("hard.heap"), *j = wal_of(path);
    char *victim = make_victim("hard-victim.txt");
    assert_int_equal(chmod(victim, 0600), 0);
    assert_int_equal(unlink(j), 0);
    assert_int_equal(link(victim, j), 0);
    assert_all_refuse(path, EPERM, "links");
    assert_victim_intact(victim);
    unlink(j);
    free(victim);
    free(j);
    free(path);
}

static void test_log_fifo(void **state)
{
    (void)state;
    alarm(60); /* a hang fails the test */
    char *path = make_heap("fifo.heap"), *j = wal_of(path);
    assert_int_equal(unlink(j), 0);
    assert_int_equal(mkfifo(j, 0600), 0);
    assert_all_refuse(path, EPERM, "not a regular file");
    unlink(j);

    char *fifo = tu_path("fifo-as-heap.heap");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_all_refuse(fifo, EINVAL, "not a regular file");
    unlink(fifo);
    alarm(0);
    free(fifo);
    free(j);
    free(path);
}

/* A log with more access than the heap, or another user's: refused.
 * Another user is uid 65534 (nobody), which needs root to set up. */
static void test_log_owner_and_mode(void **state)
{
    (void)state;
    char *path = make_heap("owner.heap"), *j = wal_of(path);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(chmod(j, 0666), 0);
    assert_all_refuse(path, EPERM, "mode 0666");
    assert_int_equal(chmod(j, 0600), 0);
    if (geteuid() != 0) {
        unlink(j);
        skip();
    }
    assert_int_equal(chown(j, 65534, 65534), 0);
    assert_all_refuse(path, EPERM, "uid 65534");
    assert_int_equal(chown(j, 0, 0), 0);
    mmh_heap *h = mmh_open(path, NULL); /* its own again: fine */
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);

    /* Root opening another user's heap that has no log yet (an image)
     * gives the log it makes to that user, who can then open the heap. */
    char *img = tu_path("owner.img"), *k = wal_of(img);
    make_image(img, 4);
    assert_int_equal(chown(img, 65534, 65534), 0);
    h = mmh_open(img, NULL);
    assert_non_null(h);
    struct stat st;
    assert_int_equal(stat(k, &st), 0);
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(mmh_close(h), 0);
    free(k);
    free(img);
    free(j);
    free(path);
}

static int commit_pattern_child(void *arg)
{
    mmh_heap *h = mmh_open(arg, NULL);
    CK(h != NULL);
    tu_fill(mmh_root(h), 64 * KiB, 2);
    CK(mmh_commit(h) == 0);
    return 0; /* no close: commit 2 is only in the log */
}

static int checkpoint_child(void *arg)
{
    mmh_heap *h = mmh_open(arg, NULL);
    CK(h != NULL);
    CK(mmh_checkpoint(h) == 0);
    return 0; /* no close: no commit 3 */
}

/* The heap at path after commit 2 (pattern 2), and a copy of its log from
 * when that commit was not yet checkpointed. */
static void *log_with_commit_2(const char *path, const char *j, size_t *len)
{
    assert_child_ok(commit_pattern_child, (void *)path);
    void *copy = tu_read_file(j, len);
    assert_non_null(copy);
    return copy;
}

static void test_old_log_never_replays(void **state)
{
    (void)state;
    char *path = make_heap("rollback.heap"), *j = wal_of(path);
    size_t len;
    void *old = log_with_commit_2(path, j, &len);
    mmh_heap *h = mmh_open(path, NULL);
    assert_non_null(h);
    tu_fill(mmh_root(h), 64 * KiB, 3);
    assert_int_equal(mmh_close(h), 0);          /* commit 3, checkpointed */
    assert_int_equal(tu_write_file(j, old, len), 0);
    assert_int_equal(chmod(j, 0600), 0);

    char out[4096];
    const char *info[] = { "info", path, NULL };
    assert_int_equal(tool(info, out, sizeof out), 0);
    if (!strstr(out, "older than the heap's commit"))
        fail_msg("mmheap info does not call the log stale: %s", out);
    const char *rec[] = { "recover", path, NULL };
    assert_int_equal(tool(rec, out, sizeof out), 0);
    if (!strstr(out, "never replayed"))
        fail_msg("mmheap recover: %s", out);
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &ro);
    assert_non_null(h);
    assert_pattern(mmh_root(h), 64 * KiB, 3);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_pattern(mmh_root(h), 64 * KiB, 3);
    assert_int_equal(mmh_close(h), 0);
    free(old);
    free(j);
    free(path);
}

/* A log whose last commit is the one the heap header shows still replays
 * (rule: the log decides, and replaying the checkpointed is harmless). */
static void test_log_of_current_commit_replays(void **state)
{
    (void)state;
    char *path = make_heap("current.heap"), *j = wal_of(path);
    size_t len;
    void *copy = log_with_commit_2(path, j, &len);
    assert_child_ok(checkpoint_child, path);    /* the heap file at commit 2 */
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    mmh_heap *h = mmh_open(path, &ro);
    assert_non_null(h);
    size_t off = mmh_offset(h, mmh_root(h));
    assert_int_equal(mmh_close(h), 0);
    assert_int_equal(tu_write_file(j, copy, len), 0);
    assert_int_equal(chmod(j, 0600), 0);
    /* The data in the heap file is damaged; the log still holds it. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char zero[4096] = { 0 };
    assert_int_equal(pwrite(fd, zero, sizeof zero, (off_t)off), (ssize_t)sizeof zero);
    close(fd);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_pattern(mmh_root(h), 64 * KiB, 2);
    assert_int_equal(mmh_close(h), 0);
    free(copy);
    free(j);
    free(path);
}

/* The names a snapshot's temporary file had before: PATH.tmp.PID.UID. */
static void test_snapshot_follows_no_planted_link(void **state)
{
    (void)state;
    char *img = tu_path("planted.img"), *victim = make_victim("snap-victim.txt");
    char name[PATH_MAX];
    for (int uid = 0; uid < 64; uid++) {
        snprintf(name, sizeof name, "%s.tmp.%d.%d", img, (int)getpid(), uid);
        assert_int_equal(symlink(victim, name), 0);
    }
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    tu_fill(mmh_alloc(h, 4096), 4096, 5);
    assert_int_equal(mmh_snapshot(h, img), 0);
    if (mmh_wait(h, 0) != 0)
        fail_msg("snapshot: %s", mmh_errmsg());
    assert_victim_intact(victim);
    struct stat st;
    assert_int_equal(lstat(img, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(mmh_close(h), 0);
    for (int uid = 0; uid < 64; uid++) {
        snprintf(name, sizeof name, "%s.tmp.%d.%d", img, (int)getpid(), uid);
        unlink(name);
    }
    free(victim);
    free(img);
}

/* Files in the test directory whose name contains s. */
static int files_named_like(const char *s)
{
    DIR *d = opendir(tu_dir());
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, s) != NULL;
    closedir(d);
    return n;
}

/* The child pids of this process, from /proc. */
static pid_t a_child(void)
{
    char buf[256] = "";
    FILE *f = fopen("/proc/self/task/self/children", "r");
    if (!f) {
        snprintf(buf, sizeof buf, "/proc/self/task/%d/children", (int)gettid());
        f = fopen(buf, "r");
    }
    assert_non_null(f);
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

static void test_killed_snapshot_leaves_nothing(void **state)
{
    (void)state;
    char *img = tu_path("killed.img");
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    size_t size = (size_t)tu_scaled(256, 8) * MiB;
    char *big = mmh_alloc(h, size);
    assert_non_null(big);
    memset(big, 0x33, size);
    for (int round = 0; round < 5; round++) {
        assert_int_equal(mmh_snapshot(h, img), 0);
        pid_t child = a_child();
        assert_true(child > 0);
        usleep(20000 * (unsigned)round); /* at different points of its work */
        kill(child, SIGKILL);
        (void)mmh_wait(h, 0);
        if (files_named_like("killed.img.") != 0)
            fail_msg("round %d: the killed job left a temporary file", round);
    }
    assert_int_equal(mmh_close(h), 0);
    unlink(img);
    free(img);
}

static void test_snapshot_refuses_a_writers_file(void **state)
{
    (void)state;
    char *path = make_heap("held.heap");
    mmh_heap *w = mmh_open(path, NULL);
    assert_non_null(w);
    mmh_heap *a = mmh_open(NULL, NULL);
    assert_non_null(a);
    errno = 0;
    assert_int_equal(mmh_snapshot(a, path), -1);
    assert_int_equal(errno, EBUSY);
    assert_errmsg_contains(path);
    assert_pattern(mmh_root(w), 64 * KiB, 1);
    assert_int_equal(mmh_commit(w), 0);
    /* The command does not touch a file a writer holds either. */
    char out[4096];
    const char *rec[] = { "recover", path, NULL };
    if (tool(rec, out, sizeof out) != 3 || !strstr(out, "in use"))
        fail_msg("mmheap recover of a heap a writer holds: %s", out);

    /* Replaced all the same (by rename): the writer's next commit fails
     * loudly instead of going where no open will find it. */
    char *other = make_heap("other.heap");
    assert_int_equal(rename(other, path), 0);
    tu_fill(mmh_root(w), 64 * KiB, 2);
    errno = 0;
    assert_int_equal(mmh_commit(w), -1);
    assert_int_equal(errno, ESTALE);
    assert_errmsg_contains("no longer holds");
    assert_int_equal(mmh_commit_bg(w), -1);
    assert_int_equal(errno, ESTALE);
    assert_int_equal(mmh_close(w), -1);
    assert_int_equal(mmh_close(a), 0);
    free(other);
    free(path);
}

/* A heap opened where no log is (a snapshot image): the log it creates is
 * made durable by name before the open returns. */
static void test_new_log_is_durable(void **state)
{
    (void)state;
    char *img = tu_path("image.heap"), *j = wal_of(img);
    make_image(img, 9);
    assert_int_equal(access(j, F_OK), -1);
    seen.wal_created = false;
    mmh_heap *h = mmh_open(img, NULL);
    assert_non_null(h);
    assert_true(seen.wal_created);
    if (!seen.dir_synced_after)
        fail_msg("the log was created and its directory never synced");
    assert_int_equal(mmh_close(h), 0);
    free(j);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_symlink),
        cmocka_unit_test(test_log_hard_link),
        cmocka_unit_test(test_log_fifo),
        cmocka_unit_test(test_log_owner_and_mode),
        cmocka_unit_test(test_old_log_never_replays),
        cmocka_unit_test(test_log_of_current_commit_replays),
        cmocka_unit_test(test_snapshot_follows_no_planted_link),
        cmocka_unit_test(test_killed_snapshot_leaves_nothing),
        cmocka_unit_test(test_snapshot_refuses_a_writers_file),
        cmocka_unit_test(test_new_log_is_durable),
    };
    return TU_RUN(tests);
}
