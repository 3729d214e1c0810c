/* test_bgcommit: background commits (mmh_commit_bg) and what they share
 * with snapshot jobs: mmh_wait, one job per heap, failed jobs, refusals,
 * statistics.
 *
 *  - a background commit followed by more writes and a crash leaves exactly
 *    the state at the call; later writes reach the file by the next commit;
 *    SIGKILL of the process and its job mid-commit leaves one whole version;
 *    a job killed after its log commit is durable, then the program killed in
 *    its next commit, leaves one whole version too;
 *  - a failed job (full disk, read-only directory) says why, naming the
 *    file, and loses nothing: the next commit writes its pages; an old image
 *    stays;
 *  - refusals (shared heap, the heap's own file, bg commit of an anonymous
 *    or read-only heap) and the job statistics (pause, duration, bytes,
 *    copy-on-write pages);
 *  - mmh_wait polling (1 while running, ECHILD once reaped), one job per
 *    heap (a second job, mmh_commit and mmh_close wait for the running one)
 *    and independent jobs of two heaps; the job is held back
 *    deterministically with SIGSTOP.
 *
 * The tests of background commits run once per tracker.  pwrite, pwritev
 * and fdatasync are interposed to kill a job or the program mid-write.
 * Images are checked in a fresh process (this program exec'd with --check,
 * jobutil.h).
 */
#include "jobutil.h"

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>

/* ------------------------------------------------------ fault injection
 *
 * pwrite, pwritev and fdatasync are interposed here, in the executable:
 * the library's calls resolve to these, which kill the calling process on
 * demand (a job child right after its commit is durable in the log, or the
 * program in the middle of writing its log) and otherwise call libc's. */
static struct {
    pid_t app;            /* the program; any other pid is one of its jobs */
    int   job_after_sync; /* a job dies right after it syncs a .wal        */
    int   app_wal;        /* the program dies at its next write to a .wal  */
} trap;

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fdatasync)(int);

static void resolve_real(void)
{
    if (!real_pwrite)
        real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (!real_pwritev)
        real_pwritev = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT,
                                                                                   "pwritev");
    if (!real_fdatasync)
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

static int fd_is(int fd, const char *suffix)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    size_t sl = strlen(suffix);
    return (size_t)n >= sl && strcmp(target + n - sl, suffix) == 0;
}

static void app_wal_trap(int fd)
{
    if (trap.app_wal && getpid() == trap.app && fd_is(fd, ".wal"))
        raise(SIGKILL);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    resolve_real();
    app_wal_trap(fd);
    return real_pwrite(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    resolve_real();
    app_wal_trap(fd);
    return real_pwritev(fd, iov, iovcnt, off);
}

int fdatasync(int fd)
{
    resolve_real();
    int rc = real_fdatasync(fd);
    if (trap.job_after_sync && getpid() != trap.app && rc == 0 && fd_is(fd, ".wal"))
        raise(SIGKILL);
    return rc;
}

/* The tracker of the writable file heaps that background commits run on:
 * each of those tests runs once per tracker. */
static mmh_tracker bg_tracker = MMH_TRACK_AUTO;
static const mmh_tracker bg_trackers[] = { MMH_TRACK_AUTO, MMH_TRACK_MPROTECT, MMH_TRACK_NONE };

/* ==================================================== 1. background commit */

#define F_N    48
#define F_LMIN (8 * KiB)
#define F_LMAX (128 * KiB)

enum bg_end {
    BG_WAIT_KILL,          /* wait, crash: the state at the bg call        */
    BG_WAIT_COMMIT_KILL,   /* wait, commit, crash: the later state too     */
    BG_COMMIT_KILL,        /* commit without wait (it waits), crash        */
    BG_CLOSE,              /* close without wait (it waits and commits)    */
};

struct bg_arg {
    const char *path;
    const char *epath;
    enum bg_end end;
};

static struct expect bg_e2, bg_e3;

static int bg_child(void *argp)
{
    struct bg_arg *a = argp;
    mmh_heap *h;
    struct sroot *s = child_open(a->path, bg_tracker, &h);
    CK(h != NULL);
    CK(s != NULL && s->magic == ST_MAGIC && s->version == 1);
    /* v2: every object, a third of them replaced */
    for (uint64_t i = 0; i < s->nobj; i++) {
        if (i % 3 == 0)
            CK(obj_replace(h, s, i, 2, F_LMIN + (i * 997) % (F_LMAX - F_LMIN)) == 0);
        else
            obj_rewrite(s->objs[i], 2);
    }
    s->version = 2;
    state_expect(h, s, &bg_e2);
    CK(mmh_commit_bg(h) == 0);
    /* v3, while the job runs: half the objects, some replaced, and a big
     * block that grows the heap beyond the file */
    for (uint64_t i = 1; i < s->nobj; i += 2) {
        if (i % 6 == 1)
            CK(obj_replace(h, s, i, 3, F_LMAX + i * 31) == 0);
        else
            obj_rewrite(s->objs[i], 3);
    }
    s->big_len = 6 * MiB + 123;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    s->big_byte = 0xb3;
    memset(s->big, 0xb3, s->big_len);
    s->version = 3;
    state_expect(h, s, &bg_e3);
    struct mmh_stats st;
    switch (a->end) {
    case BG_WAIT_KILL:
        CK(mmh_wait(h, 0) == 0);
        CK(mmh_stats(h, &st) == 0);
        CK(st.jobs == 1 && st.jobs_failed == 0 && st.job_running == 0);
        CK(st.last_fork_ns > 0 && st.last_job_ns > 0 && st.last_job_bytes > 0);
        errno = 0;
        CK(mmh_wait(h, 0) == -1 && errno == ECHILD);
        CK(write_expect(a->epath, &bg_e2) == 0);
        raise(SIGKILL);
        break;
    case BG_WAIT_COMMIT_KILL:
        CK(mmh_wait(h, 0) == 0);
        CK(mmh_commit(h) == 0);
        CK(write_expect(a->epath, &bg_e3) == 0);
        raise(SIGKILL);
        break;
    case BG_COMMIT_KILL:
        CK(mmh_commit(h) == 0);
        CK(mmh_stats(h, &st) == 0);
        CK(st.jobs == 1 && st.job_running == 0);
        CK(write_expect(a->epath, &bg_e3) == 0);
        raise(SIGKILL);
        break;
    case BG_CLOSE:
        CK(write_expect(a->epath, &bg_e3) == 0);
        CK(mmh_close(h) == 0);
        return 0;
    }
    return 2;
}

static void run_bg_case(enum bg_end end)
{
    char name[32];
    snprintf(name, sizeof name, "bg%d.heap", (int)end);
    char *path = make_file_heap(name, F_N, F_LMIN, F_LMAX, 1);
    char *ep = tu_path("bg.expect");
    struct bg_arg a = { path, ep, end };
    int st = tu_run_child(bg_child, &a);
    if (end == BG_CLOSE) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("bg child failed (status %#x)", st);
    } else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        fail_msg("bg child did not reach its crash (status %#x)", st);
    }
    struct expect e;
    assert_int_equal(read_expect(ep, &e), 0);
    check_file(path, &e);
    unlink(path);
    unlink(ep);
    free(path);
    free(ep);
}

static void test_bg_commit_then_crash(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof bg_trackers / sizeof *bg_trackers; t++) {
        bg_tracker = bg_trackers[t];
        run_bg_case(BG_WAIT_KILL);
        run_bg_case(BG_WAIT_COMMIT_KILL);
        run_bg_case(BG_COMMIT_KILL);
        run_bg_case(BG_CLOSE);
    }
    bg_tracker = MMH_TRACK_AUTO;
}

/* Kill -9 of the process and its job at a random moment of background
 * commits: the file holds one whole version, the last one completed or the
 * one in progress. */
static int bgcrash_child(const char *path, int wfd)
{
    mmh_heap *h;
    struct sroot *s = child_open(path, bg_tracker, &h);
    CK(h != NULL);
    CK(s != NULL && s->magic == ST_MAGIC);
    for (uint64_t v = s->version + 1;; v++) {
        CK(vstate_set(h, s, v) == 0);
        CK(send_msg(wfd, 'b', v) == 0);
        CK(mmh_commit_bg(h) == 0);
        CK(send_msg(wfd, 'r', v) == 0);
        /* keep writing while the job runs: the next version's payloads
         * without its version number (not a consistent state) */
        for (uint64_t i = 0; i < s->nobj; i++)
            obj_rewrite(s->objs[i], v + 1);
        int w = mmh_wait(h, 0);
        CK(w == 0);
        CK(send_msg(wfd, 'd', v) == 0);
    }
}

static void bg_kill_mid_job(void)
{
    size_t lmax = (size_t)tu_scaled(256 * 1024, 8192);
    char *path = make_file_heap("bgcrash.heap", 32, lmax / 8, lmax, 0);
    uint64_t seed = tu_test_seed((uint64_t)time(NULL));
    tu_rng rng = { seed };
    long rounds = tu_scaled(10, 2);
    uint64_t committed = 0;
    double job_us = 0;
    long mid = 0;
    for (long r = 0; r < rounds; r++) {
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 1);
        if (pid == 0)
            _exit(bgcrash_child(path, pfd[1]));
        int target = (int)tu_rand_range(&rng, 0, 2);
        int completed = 0;
        uint64_t inflight = committed, t_r = 0;
        for (;;) {
            struct msg m;
            if (read(pfd[0], &m, sizeof m) != (ssize_t)sizeof m)
                fail_msg("writer died early (round %ld)", r);
            if (m.c == 'b') {
                inflight = m.v;
            } else if (m.c == 'r') {
                t_r = now_ns();
                if (completed >= target && job_us > 0)
                    break;
            } else {
                committed = m.v;
                completed++;
                double took = (double)(now_ns() - t_r) / 1e3;
                job_us = job_us ? (job_us * 3 + took) / 4 : took;
            }
        }
        long us = (long)tu_rand_range(&rng, 0, (size_t)(job_us * 1.25) + 1);
        sleep_ms((double)us / 1000);
        kill_group(pid);
        struct msg m;
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        int done_late = 0;
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &m, sizeof m) == (ssize_t)sizeof m) {
            if (m.c == 'b')
                inflight = m.v;
            else if (m.c == 'd')
                committed = m.v, done_late = 1;
        }
        close(pfd[0]);
        mmh_heap *h = mmh_open(path, NULL);
        if (!h)
            fail_msg("round %ld (tracker %d): reopen after kill: %s", r, (int)bg_tracker,
                     mmh_errmsg());
        struct sroot *s = mmh_root(h);
        assert_non_null(s);
        uint64_t v = s->version;
        if (v != committed && v != inflight)
            fail_msg("round %ld (tracker %d, MMH_TEST_SEED=%llu): version %llu, expected %llu "
                     "or %llu", r, (int)bg_tracker,
                     (unsigned long long)seed, (unsigned long long)v,
                     (unsigned long long)committed, (unsigned long long)inflight);
        struct expect e;
        vexpect(&e, s->nobj, s->lmin, s->lmax, v);
        if (state_check(h, &e) != 0)
            fail_msg("round %ld (tracker %d, MMH_TEST_SEED=%llu): version %llu is not whole",
                     r, (int)bg_tracker,
                     (unsigned long long)seed, (unsigned long long)v);
        void *q = mmh_alloc(h, 5000);
        assert_non_null(q);
        mmh_free(h, q);
        assert_int_equal(mmh_close(h), 0);
        mid += !done_late && v == committed && inflight != committed;
        committed = v;
    }
    print_message("%ld kills, %ld of them before the job's end; job %.1f ms\n", rounds, mid,
                  job_us / 1e3);
    unlink(path);
    free(path);
}

static void test_bg_commit_kill_mid_job(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof bg_trackers / sizeof *bg_trackers; t++) {
        bg_tracker = bg_trackers[t];
        bg_kill_mid_job();
    }
    bg_tracker = MMH_TRACK_AUTO;
}

/* A job killed right after its commit became durable in the log, before
 * it could report, then the program killed in the middle of its next
 * commit, which goes to the same place in the log: the file holds one
 * whole version (the last commit, or the job's, which was durable), never
 * a mix. */
static int killed_job_child(void *arg)
{
    mmh_heap *h;
    struct sroot *s = child_open(arg, bg_tracker, &h);
    CK(h != NULL);
    CK(s != NULL && s->version == 1);
    /* v2 on every other object: separate ranges */
    for (uint64_t i = 0; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 2);
    s->version = 2;
    trap.app = getpid();
    trap.job_after_sync = 1;
    CK(mmh_commit_bg(h) == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1);
    CK(strstr(mmh_errmsg(), "signal") != NULL);
    trap.job_after_sync = 0;
    for (uint64_t i = 1; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    trap.app_wal = 1;
    mmh_commit(h);          /* dies inside */
    return 2;
}

static void test_bg_job_killed_after_log_sync(void **state)
{
    (void)state;
    char *path = make_file_heap("kjob.heap", 24, 64 * KiB, 200 * KiB, 1);
    int st = tu_run_child(killed_job_child, path);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("child did not reach its crash (status %#x)", st);
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen: %s", mmh_errmsg());
    struct sroot *s = mmh_root(h);
    assert_non_null(s);
    /* the child's expectations: rebuilt here (the child died) */
    struct expect e1, e2;
    vexpect(&e1, s->nobj, s->lmin, s->lmax, 1);
    e2 = e1;
    e2.version = 2;
    for (uint64_t i = 0; i < e2.nobj; i += 2)
        e2.seq[i] = 2;
    int got = s->version == 1 ? state_check(h, &e1) : state_check(h, &e2);
    if (got != 0 || s->version != 2) {
        uint64_t at2 = 0, version = s->version;
        for (uint64_t i = 0; i < s->nobj; i += 2)
            at2 += s->objs[i]->seq == 2;
        mmh_close(h);
        fail_msg("version %llu, %llu of %llu rewritten objects at v2; the job's commit was "
                 "durable, and the program's next commit to the same place died before it "
                 "was: the file must hold exactly the job's version 2",
                 (unsigned long long)version, (unsigned long long)at2,
                 (unsigned long long)(e1.nobj + 1) / 2);
    }
    assert_int_equal(mmh_close(h), 0);
    free(path);
}

/* ======================================================== 2. failed jobs */

/* A real full disk: a tmpfs in a private mount namespace. */
static int fill_disk(const char *path, size_t keep)
{
    struct statvfs sv;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    CK(statvfs(dir, &sv) == 0);
    size_t avail = (size_t)sv.f_bavail * sv.f_frsize;
    CK(avail > keep);
    size_t left = avail - keep;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CK(fd >= 0);
    static char chunk[1 << 20];
    memset(chunk, 0x11, sizeof chunk);
    while (left) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        ssize_t w = write(fd, chunk, n);
        if (w <= 0)
            break;
        left -= (size_t)w;
    }
    close(fd);
    return 0;
}

static struct expect full_e;

static int disk_full_child(void *arg)
{
    const char *dir = arg;
    child_init();
    if (tu_private_tmpfs(dir, "size=96m") != 0)
        return 77; /* not root here: skipped */
    char path[PATH_MAX], img[PATH_MAX], filler[PATH_MAX];
    snprintf(path, sizeof path, "%s/full.heap", dir);
    snprintf(img, sizeof img, "%s/full.img", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct sroot *s = state_build(h, 16, 32 * KiB, 64 * KiB, 7, 1);
    CK(s != NULL);
    CK(mmh_commit(h) == 0);
    /* an image made while there was room */
    CK(mmh_snapshot(h, img) == 0);
    CK(mmh_wait(h, 0) == 0);
    size_t img_len = 0;
    void *img_bytes = tu_read_file(img, &img_len);
    CK(img_bytes != NULL);
    /* room for the heap's growth, then the disk is filled.  The new pages
     * are touched first: on tmpfs, the first touch of a hole in a mapped
     * file takes a page of the file system (SIGBUS when it is full), which
     * a disk does not do.  The commit is larger than the log's 16 MiB, so
     * it must extend the log, and that fails. */
    s->big_len = 24 * MiB;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    memset(s->big, 0, s->big_len);
    CK(fill_disk(filler, 3 * MiB) == 0);
    s->big_byte = 0x5a;
    memset(s->big, 0x5a, s->big_len);
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], 2);
    s->version = 2;

    CK(mmh_commit_bg(h) == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), "full.heap") != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.jobs == 2 && st.jobs_failed == 1 && st.job_running == 0);
    errno = 0;
    CK(mmh_wait(h, 0) == -1 && errno == ECHILD);

    /* a snapshot on the full disk fails too, and the old image stays */
    char *before = dir_listing(dir);
    CK(snapshot_wait(h, img, NULL) == -1);
    CK(errno == ENOSPC);
    CK(strstr(mmh_errmsg(), img) != NULL);
    CK(file_is(img, img_bytes, img_len));
    char *after = dir_listing(dir);
    if (strcmp(before, after) != 0) {
        fprintf(stderr, "failed snapshot left files:\nbefore:\n%safter:\n%s", before, after);
        return 1;
    }
    free(before);
    free(after);

    /* more writes after the failed job, then room again: one commit
     * writes the failed job's pages and the later ones */
    for (uint64_t i = 1; i < s->nobj; i += 2)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    state_expect(h, s, &full_e);
    CK(unlink(filler) == 0);
    CK(mmh_commit(h) == 0);
    CK(mmh_close(h) == 0);
    h = mmh_open(path, NULL);
    CK(h != NULL);
    CK(state_check(h, &full_e) == 0);

    /* a directory that cannot be written (root writes anywhere else) */
    char ro[PATH_MAX], roimg[PATH_MAX + 16];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    snprintf(roimg, sizeof roimg, "%s/x.img", ro);
    CK(mkdir(ro, 0700) == 0);
    CK(mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=1m") == 0);
    CK(snapshot_wait(h, roimg, NULL) == -1);
    CK(errno == EROFS);
    CK(strstr(mmh_errmsg(), roimg) != NULL);
    CK(mmh_close(h) == 0);
    free(img_bytes);
    return 0;
}

static void test_failed_job_loses_nothing(void **state)
{
    (void)state;
    tu_run_tmpfs_child(disk_full_child, "disk-full");
}

/* ================================================ 3. refusals, statistics */

static void test_refusals(void **state)
{
    (void)state;
    /* anonymous heap: no bg commit, no job to wait for, no NULL path */
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_fail_errno(mmh_commit_bg(h), EINVAL);
    assert_true(mmh_errmsg()[0] != 0);
    assert_fail_errno(mmh_snapshot(h, NULL), EINVAL);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 0);
    assert_int_equal(mmh_close(h), 0);

    /* shared heap: no copy-on-write */
    char *path = tu_path("shared.heap");
    char *img = tu_path("shared.img");
    mmh_config cfg = tu_cfg(MMH_CREATE | MMH_SHARED, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_non_null(vstate_build(h, 8, 100, 5000, 1));
    assert_fail_errno(mmh_snapshot(h, img), EINVAL);
    if (!strstr(mmh_errmsg(), path) && !strcasestr(mmh_errmsg(), "shared"))
        fail_msg("the refusal names neither the heap nor the reason: %s", mmh_errmsg());
    assert_fail_errno(mmh_commit_bg(h), EINVAL);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(tu_file_size(img), -1);
    assert_int_equal(mmh_close(h), 0);

    /* private heap: a snapshot over its own file, however spelled */
    free(path);
    path = make_file_heap("own.heap", 8, 100, 5000, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(vstate_set(h, mmh_root(h), 2), 0);
    char alt[PATH_MAX];
    assert_fail_errno(mmh_snapshot(h, path), EINVAL);
    assert_errmsg_contains(path);
    tu_dir_join(alt, sizeof alt, "./own.heap");
    assert_fail_errno(mmh_snapshot(h, alt), EINVAL);
    tu_dir_join(alt, sizeof alt, "/own.heap");
    assert_fail_errno(mmh_snapshot(h, alt), EINVAL);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    struct expect e;
    vexpect(&e, 8, 100, 5000, 2);
    check_file(path, &e);

    /* read-only heap: no bg commit */
    cfg = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_fail_errno(mmh_commit_bg(h), EROFS);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(state_check(h, &e), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
    free(img);
}

/* Touches (stores the same byte into) one byte in every page of every
 * object's payload; returns the number of pages. */
static uint64_t touch_pages(struct sroot *s)
{
    uint64_t pages = 0;
    for (uint64_t i = 0; i < s->nobj; i++) {
        struct obj *o = s->objs[i];
        uintptr_t lo = ((uintptr_t)o->data + 4095) & ~(uintptr_t)4095;
        for (uintptr_t a = lo; a < (uintptr_t)o->data + o->len; a += 4096) {
            volatile unsigned char *q = (volatile unsigned char *)a;
            *q = *q;
            pages++;
        }
    }
    return pages;
}

static void check_job_stats(mmh_heap *h, uint64_t jobs, uint64_t min_bytes, uint64_t touched)
{
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, jobs);
    assert_int_equal(st.jobs_failed, 0);
    assert_int_equal(st.job_running, 0);
    assert_true(st.last_fork_ns > 0);
    assert_true(st.last_fork_ns < 5000000000ull);
    assert_true(st.last_job_ns > 0);
    if (st.last_job_bytes < min_bytes)
        fail_msg("last_job_bytes %llu < %llu bytes of data", (unsigned long long)st.last_job_bytes,
                 (unsigned long long)min_bytes);
    if (touched) {
        if (st.cow_pages < touched / 2 || st.cow_pages > st.size / 4096 + 64)
            fail_msg("cow_pages %llu after writing %llu pages during the job",
                     (unsigned long long)st.cow_pages, (unsigned long long)touched);
    } else if (st.cow_pages > 16) {
        fail_msg("cow_pages %llu with no writes during the job",
                 (unsigned long long)st.cow_pages);
    }
}

static char *img_name(int i)
{
    char name[32];
    snprintf(name, sizeof name, "stats%d.img", i);
    return tu_path(name);
}

/* Statistics of two snapshots of h (closed after): with writes to every
 * page during the first, none during the second. */
static void job_stats_anon(mmh_heap *h, char *img, size_t lmin, size_t lmax)
{
    struct expect e;
    vexpect(&e, 32, lmin, lmax, 1);
    uint64_t data = expect_bytes(&e);
    struct sroot *s = vstate_build(h, 32, lmin, lmax, 1);
    assert_non_null(s);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, 0);
    assert_int_equal(st.job_running, 0);
    assert_int_equal(mmh_snapshot(h, img), 0);
    pid_t job = job_stop();
    uint64_t touched = 0;
    if (job) {
        touched = touch_pages(s);   /* copies while the job holds them */
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 1, data, touched);
    if (!job)
        print_message("snapshot job ended before it was stopped: cow_pages not checked\n");
    check_image(img, &e);
    /* no writes during the next job */
    assert_int_equal(mmh_snapshot(h, img), 0);
    job = job_stop();
    if (job) {
        sleep_ms(20);
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 2, data, 0);
    check_image(img, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

static void test_job_stats(void **state)
{
    (void)state;
    size_t lmin = 32 * KiB, lmax = (size_t)tu_scaled(128 * KiB, 64 * KiB);

    /* snapshot of an anonymous heap */
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    job_stats_anon(h, img_name(0), lmin, lmax);
    /* and of one in transparent huge pages: copy-on-write stays per page */
    mmh_config hcfg = tu_cfg(MMH_HUGEPAGES, 0, 0);
    h = mmh_open(NULL, &hcfg);
    assert_non_null(h);
    assert_true(tu_stats(h).flags & MMH_HUGEPAGES);
    job_stats_anon(h, img_name(1), lmin, lmax);

    /* background commit of a file heap */
    struct expect e;
    char *path = make_file_heap("stats.heap", 32, lmin, lmax, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct sroot *s = mmh_root(h);
    assert_int_equal(vstate_set(h, s, 2), 0);
    vexpect(&e, 32, lmin, lmax, 2);
    assert_int_equal(mmh_commit_bg(h), 0);
    pid_t job = job_stop();
    uint64_t touched = 0;
    if (job) {
        touched = touch_pages(s);
        job_cont(job);
    }
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 1, expect_bytes(&e) / 2, touched);
    assert_int_equal(mmh_commit_bg(h), 0);      /* only the touched pages */
    assert_int_equal(mmh_wait(h, 0), 0);
    check_job_stats(h, 2, 0, 0);
    assert_int_equal(mmh_close(h), 0);
    check_file(path, &e);
    free(path);
}

/* ============================================ 4. polling, one job at a time */

/* The call is made here while the job is held back; a helper process lets
 * the job go after 150 ms and then says so through a pipe.  The call must
 * not return before that. */
enum call_kind { CALL_SNAPSHOT, CALL_COMMIT_BG, CALL_COMMIT, CALL_CLOSE };

static void call_waits_for_job(mmh_heap *h, pid_t job, enum call_kind kind, const char *path)
{
    int pfd[2] = { -1, -1 };
    pid_t helper = -1;
    if (job) {
        assert_int_equal(pipe(pfd), 0);
        fflush(stdout);
        fflush(stderr);
        helper = fork();
        assert_true(helper >= 0);
        if (helper == 0) {
            close(pfd[0]);
            sleep_ms(150);
            (void)!write(pfd[1], "c", 1);
            kill(job, SIGCONT);
            _exit(0);
        }
        close(pfd[1]);
    }
    errno = 0;
    int rc = -1;
    switch (kind) {
    case CALL_SNAPSHOT:  rc = mmh_snapshot(h, path); break;
    case CALL_COMMIT_BG: rc = mmh_commit_bg(h); break;
    case CALL_COMMIT:    rc = mmh_commit(h); break;
    case CALL_CLOSE:     rc = mmh_close(h); break;
    }
    int err = errno;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mmh_errmsg());
    int early = 0;
    if (job) {
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        early = poll(&pf, 1, 0) != 1;      /* the job was still held */
        int st;
        waitpid(helper, &st, 0);
        close(pfd[0]);
    }
    if (early)
        fail_msg("call %d returned %d while the running job was stopped", (int)kind, rc);
    if (rc != 0)
        fail_msg("call %d: %d, errno %d: %s", (int)kind, rc, err, msg);
}

/* State v, a bg commit whose job is held back, state v + 1 meanwhile, then
 * a call of kind that must wait for the job; 1 if the job was held. */
static int bg_then_call(mmh_heap *h, struct sroot *s, uint64_t v, enum call_kind kind)
{
    assert_int_equal(vstate_set(h, s, v), 0);
    assert_int_equal(mmh_commit_bg(h), 0);
    pid_t job = job_stop();
    assert_int_equal(vstate_set(h, s, v + 1), 0);    /* the parent goes on */
    call_waits_for_job(h, job, kind, NULL);
    return job != 0;
}

static void test_wait_nohang(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(1 * MiB, 16 * KiB);
    struct expect e;
    mmh_heap *h = anon_state(48, lmax / 2, lmax, 3, &e);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    char *img = tu_path("poll.img");

    /* held back: polls say 1, deterministically */
    assert_int_equal(mmh_snapshot(h, img), 0);
    pid_t job = job_stop();
    if (job) {
        for (int k = 0; k < 5; k++) {
            assert_int_equal(mmh_wait(h, 1), 1);
            sleep_ms(2);
        }
        assert_int_equal(tu_stats(h).job_running, 1);
        job_cont(job);
    } else {
        print_message("the job ended before it could be stopped\n");
    }
    assert_int_equal(wait_poll(h, NULL), 0);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.jobs, 1);
    assert_int_equal(st.job_running, 0);
    check_image(img, &e);

    /* left alone: how long a job of this size takes (informational) */
    long ones = 0;
    uint64_t t0 = now_ns();
    assert_int_equal(mmh_snapshot(h, img), 0);
    assert_int_equal(wait_poll(h, &ones), 0);
    print_message("a %.0f MiB snapshot took %.1f ms; mmh_wait(h, 1) said 1 %ld times\n",
                  (double)expect_bytes(&e) / MiB, (now_ns() - t0) / 1e6, ones);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 2);
    check_image(img, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

static void test_one_job_at_a_time(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(512 * KiB, 16 * KiB);
    int held = 0;

    /* anonymous heap: a second snapshot waits for the first */
    struct expect e;
    mmh_heap *h = anon_state(32, lmax / 4, lmax, 9, &e);
    char *img1 = tu_path("one1.img"), *img2 = tu_path("one2.img");
    assert_int_equal(mmh_snapshot(h, img1), 0);
    pid_t job = job_stop();
    held += job != 0;
    call_waits_for_job(h, job, CALL_SNAPSHOT, img2);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_fail_errno(mmh_wait(h, 0), ECHILD);
    assert_int_equal(tu_stats(h).jobs, 2);
    check_image(img1, &e);
    check_image(img2, &e);
    assert_int_equal(mmh_close(h), 0);

    /* file heap: a second bg commit, a commit and a close wait */
    char *path = make_file_heap("one.heap", 32, lmax / 4, lmax, 1);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct sroot *s = mmh_root(h);
    assert_non_null(s);
    held += bg_then_call(h, s, 2, CALL_COMMIT_BG);
    assert_int_equal(mmh_wait(h, 0), 0);

    held += bg_then_call(h, s, 4, CALL_COMMIT);
    /* the commit reaped the job: its result is 0 or already taken */
    errno = 0;
    int w = mmh_wait(h, 0);
    assert_true(w == 0 || (w == -1 && errno == ECHILD));
    assert_int_equal(tu_stats(h).jobs, 3);
    assert_int_equal(tu_stats(h).jobs_failed, 0);

    held += bg_then_call(h, s, 6, CALL_CLOSE);
    vexpect(&e, 32, lmax / 4, lmax, 7);
    check_file(path, &e);
    print_message("%d of 4 jobs held back\n", held);
    free(img1);
    free(img2);
    free(path);
}

/* Jobs of two heaps are independent: one heap's job finishes and is
 * reported while the other's is held back. */
static void test_two_heaps_two_jobs(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(256 * KiB, 16 * KiB);
    struct expect e;
    mmh_heap *a = anon_state(24, lmax / 4, lmax, 8, &e);
    char *path = make_file_heap("two.heap", 24, lmax / 4, lmax, 1);
    mmh_heap *b = mmh_open(path, NULL);
    assert_non_null(b);
    assert_int_equal(vstate_set(b, mmh_root(b), 2), 0);
    char *img = tu_path("two.img");

    assert_int_equal(mmh_snapshot(a, img), 0);
    pid_t job = job_stop();
    assert_int_equal(mmh_commit_bg(b), 0);
    int w;
    uint64_t t0 = now_ns();
    while ((w = mmh_wait(b, 1)) == 1 && now_ns() - t0 < 20000000000ull)
        sleep_ms(1);
    if (job)
        assert_int_equal(mmh_wait(a, 1), 1);   /* still held */
    job_cont(job);
    if (w != 0)
        fail_msg("heap b's job: %d (%s)%s", w, mmh_errmsg(),
                 w == 1 ? ": it waited for heap a's job" : "");
    assert_int_equal(mmh_wait(a, 0), 0);
    assert_int_equal(tu_stats(a).jobs, 1);
    assert_int_equal(tu_stats(b).jobs, 1);
    assert_int_equal(mmh_close(a), 0);
    assert_int_equal(mmh_close(b), 0);
    check_image(img, &e);
    vexpect(&e, 24, lmax / 4, lmax, 2);
    check_file(path, &e);
    free(path);
    free(img);
}

int main(int argc, char **argv)
{
    job_tests_init(argc, argv);
    resolve_real();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_bg_commit_then_crash, setup_hang_alarm),
        cmocka_unit_test_setup(test_bg_commit_kill_mid_job, setup_hang_alarm),
        cmocka_unit_test_setup(test_bg_job_killed_after_log_sync, setup_hang_alarm),
        cmocka_unit_test_setup(test_failed_job_loses_nothing, setup_hang_alarm),
        cmocka_unit_test_setup(test_wait_nohang, setup_hang_alarm),
        cmocka_unit_test_setup(test_one_job_at_a_time, setup_hang_alarm),
        cmocka_unit_test_setup(test_two_heaps_two_jobs, setup_hang_alarm),
        cmocka_unit_test_setup(test_refusals, setup_hang_alarm),
        cmocka_unit_test_setup(test_job_stats, setup_hang_alarm),
    };
    return TU_RUN(tests);
}
