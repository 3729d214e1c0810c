/* test_snapshot: images of a heap (mmh_snapshot) and volatile heaps
 * started from an image (MMH_VOLATILE).
 *
 *  - an image holds exactly the heap at the call while 4 threads keep
 *    writing, allocating and freeing during the job;
 *  - a snapshot to a bad path says why, naming the path, and leaves no
 *    file; the next one works, to a relative path too;
 *  - repeated snapshots replace one path atomically, also when the process
 *    and its job are killed mid-snapshot;
 *  - MMH_VOLATILE round trip: never writes the image, grows past it, saves
 *    back over the same path;
 *  - a snapshot of a private file heap holds its uncommitted state and does
 *    not disturb the next commit;
 *  - an anonymous heap's image leaves out the pages never touched.
 *
 * Images are checked in a fresh process (this program exec'd with --check,
 * jobutil.h).  Background commits and what both kinds of job share are
 * test_bgcommit's; fork() by the program is test_fork's.
 *
 * The heaps hold a few tens of MiB, so that jobs take tens of ms and
 * overlap the writers.
 */
#include "jobutil.h"

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

/* ================================================ 1. image under writers */

#define T1_THREADS 4
#define T1_PER     48

struct t1 {
    mmh_heap        *h;
    struct sroot    *s;
    pthread_rwlock_t lock;
    atomic_int       stop;
    atomic_long      batches;
    size_t           lmin, lmax;
};

struct t1w {
    struct t1 *t;
    int        id;
    int        failed;
    char       why[256];
};

static struct t1 t1;
static struct t1w t1w[T1_THREADS];
static struct expect t1_exp;

static void *t1_worker(void *arg)
{
    struct t1w *w = arg;
    struct t1 *t = w->t;
    tu_rng rng = { 1000u + (uint64_t)w->id };
    while (!atomic_load(&t->stop)) {
        void *tmp[4];
        pthread_rwlock_rdlock(&t->lock);
        for (int k = 0; k < 4; k++) {
            uint64_t i = (uint64_t)w->id * T1_PER + tu_rand(&rng) % T1_PER;
            struct obj *o = t->s->objs[i];
            if (tu_rand(&rng) % 3) {
                obj_rewrite(o, o->seq + 1);
            } else {
                size_t len = tu_rand_range(&rng, t->lmin, t->lmax);
                if (obj_replace(t->h, t->s, i, o->seq + 1, len) != 0) {
                    snprintf(w->why, sizeof w->why, "thread %d: alloc(%zu): %s", w->id,
                             len, mmh_errmsg());
                    w->failed = 1;
                }
            }
            /* allocator churn inside the batch */
            size_t n = tu_rand_log(&rng, 1, 8192);
            tmp[k] = mmh_alloc(t->h, n);
            if (tmp[k])
                memset(tmp[k], 0xEE, n);
        }
        for (int k = 0; k < 4; k++)
            mmh_free(t->h, tmp[k]);
        pthread_rwlock_unlock(&t->lock);
        atomic_fetch_add(&t->batches, 1);
        if (w->failed)
            break;
    }
    return NULL;
}

static void test_image_exact_under_writers(void **state)
{
    (void)state;
    if (under_valgrind())
        skip();
    t1.lmax = (size_t)tu_scaled(256 * 1024, 4096);
    t1.lmin = t1.lmax / 16;
    const uint64_t n = T1_THREADS * T1_PER;
    t1.h = mmh_open(NULL, NULL);
    assert_non_null(t1.h);
    t1.s = state_build(t1.h, n, t1.lmin, t1.lmax, 42, 0);
    assert_non_null(t1.s);
    atomic_store(&t1.stop, 0);
    atomic_store(&t1.batches, 0);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    assert_int_equal(pthread_rwlock_init(&t1.lock, &ra), 0);
    pthread_rwlockattr_destroy(&ra);
    pthread_t th[T1_THREADS];
    for (int i = 0; i < T1_THREADS; i++) {
        t1w[i] = (struct t1w){ .t = &t1, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, t1_worker, &t1w[i]), 0);
    }

    /* a failure stops the writers first, then reports */
    char why[512] = "";
    long rounds = tu_scaled(4, 2), during_total = 0;
    for (long r = 1; r <= rounds && !why[0]; r++) {
        char name[32];
        snprintf(name, sizeof name, "threads%ld.img", r);
        char *img = tu_path(name);
        sleep_ms(5);
        pthread_rwlock_wrlock(&t1.lock);
        t1.s->version = (uint64_t)r;
        state_expect(t1.h, t1.s, &t1_exp);
        uint64_t t0 = now_ns();
        int rc = mmh_snapshot(t1.h, img);
        uint64_t pause = now_ns() - t0;
        pthread_rwlock_unlock(&t1.lock);
        long b0 = atomic_load(&t1.batches);
        int w = 0, st = 0;
        uint64_t job = 0, changed = 0;
        long during = 0;
        if (rc != 0) {
            snprintf(why, sizeof why, "mmh_snapshot: %s", mmh_errmsg());
            goto next;
        }
        if (t1_exp.allocations != n + 2) {
            snprintf(why, sizeof why, "%llu live blocks at the quiescent point, expected %llu",
                     (unsigned long long)t1_exp.allocations, (unsigned long long)n + 2);
            goto next;
        }
        t0 = now_ns();
        w = wait_poll(t1.h, NULL);
        job = now_ns() - t0;
        if (w != 0) {
            snprintf(why, sizeof why, "mmh_wait: %d, %s", w, mmh_errmsg());
            goto next;
        }
        during = atomic_load(&t1.batches) - b0;
        during_total += during;
        /* later writes exist that the image must not hold */
        while (atomic_load(&t1.batches) - b0 < 16 * T1_THREADS && !t1w[0].failed)
            sleep_ms(1);
        st = run_checker(img, &t1_exp, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            snprintf(why, sizeof why, "round %ld: image %s does not hold the state at the call "
                     "(checker status %#x)", r, img, st);
            goto next;
        }
        pthread_rwlock_wrlock(&t1.lock);
        for (uint64_t i = 0; i < n; i++)
            changed += t1.s->objs[i]->seq != t1_exp.seq[i];
        pthread_rwlock_unlock(&t1.lock);
        if (changed == 0)
            snprintf(why, sizeof why, "round %ld: no object changed after the call", r);
        print_message("round %ld: pause %.2f ms, job %.1f ms, %ld write batches during "
                      "the job, %llu objects changed since\n", r, pause / 1e6, job / 1e6,
                      during, (unsigned long long)changed);
    next:
        unlink(img);
        free(img);
    }
    atomic_store(&t1.stop, 1);
    for (int i = 0; i < T1_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (t1w[i].failed)
            fail_msg("%s", t1w[i].why);
    }
    if (why[0])
        fail_msg("%s", why);
    /* with a heap of tens of MiB the writers overlap the job */
    if (test_scale() >= 0.5)
        assert_true(during_total > 0);
    state_expect(t1.h, t1.s, &t1_exp);
    assert_int_equal(state_check(t1.h, &t1_exp), 0);
    assert_int_equal(t1_exp.allocations, n + 2);
    assert_int_equal(mmh_close(t1.h), 0);
    pthread_rwlock_destroy(&t1.lock);
}

/* ============================================================ 2. bad paths */

/* A snapshot to path fails with err, either at once or in the job; the
 * reason names the path; the directory gains no file. */
static void snapshot_fails(mmh_heap *h, const char *path, const char *dir, int err)
{
    char *before = dir_listing(dir);
    uint64_t failed0 = tu_stats(h).jobs_failed;
    int in_job;
    int r = snapshot_wait(h, path, &in_job);
    int e = errno;
    if (r != -1)
        fail_msg("snapshot to %s: %d, expected failure", path, r);
    if (e != err)
        fail_msg("snapshot to %s: errno %d (%s), expected %d (%s); %s", path, e, strerror(e),
                 err, strerror(err), mmh_errmsg());
    assert_errmsg_contains(path);
    assert_fail_errno(mmh_wait(h, 1), ECHILD);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.job_running, 0);
    if (in_job)
        assert_int_equal(st.jobs_failed, failed0 + 1);
    char *after = dir_listing(dir);
    if (strcmp(before, after) != 0)
        fail_msg("a failed snapshot left files behind in %s:\nbefore:\n%safter:\n%s", dir,
                 before, after);
    free(before);
    free(after);
}

static void test_snapshot_bad_paths(void **state)
{
    (void)state;
    char *dir = tu_mkdir("badpaths");
    char p[PATH_MAX];
    struct expect e;
    mmh_heap *h = anon_state(16, 1000, 20000, 5, &e);

    snprintf(p, sizeof p, "%s/nodir/x.img", dir);
    snapshot_fails(h, p, dir, ENOENT);

    snprintf(p, sizeof p, "%s/afile", dir);
    assert_int_equal(tu_write_file(p, "x", 1), 0);
    snprintf(p, sizeof p, "%s/afile/x.img", dir);
    snapshot_fails(h, p, dir, ENOTDIR);

    snprintf(p, sizeof p, "%s/adir", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snapshot_fails(h, p, dir, EISDIR);

    /* the heap is fine and the next snapshot works, to a relative path too */
    assert_int_equal(state_check(h, &e), 0);
    snprintf(p, sizeof p, "%s/good.img", dir);
    assert_int_equal(mmh_snapshot(h, p), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    check_image(p, &e);
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    int rc = mmh_snapshot(h, "rel.img");
    int w = rc == 0 ? mmh_wait(h, 0) : -1;
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0 || w != 0)
        fail_msg("snapshot to a relative path: %d/%d: %s", rc, w, mmh_errmsg());
    snprintf(p, sizeof p, "%s/rel.img", dir);
    check_image(p, &e);
    assert_int_equal(mmh_close(h), 0);
    free(dir);
}

/* =========================================== 3. one path, replaced atomically */

static void test_repeated_snapshots_one_path(void **state)
{
    (void)state;
    char *dir = tu_mkdir("repeat");
    char img[PATH_MAX];
    snprintf(img, sizeof img, "%s/one.img", dir);
    size_t lmin = 4 * KiB, lmax = (size_t)tu_scaled(96 * KiB, 8 * KiB);
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    struct sroot *s = vstate_build(h, 32, lmin, lmax, 0);
    assert_non_null(s);
    long n = tu_scaled(6, 3);
    struct expect e;
    for (long v = 1; v <= n; v++) {
        assert_int_equal(vstate_set(h, s, (uint64_t)v), 0);
        int oldfd = open(img, O_RDONLY | O_CLOEXEC);
        assert_true(v == 1 || oldfd >= 0);
        size_t oldlen = 0;
        void *old = v > 1 ? tu_read_file(img, &oldlen) : NULL;
        struct stat ost;
        if (oldfd >= 0)
            assert_int_equal(fstat(oldfd, &ost), 0);
        assert_int_equal(mmh_snapshot(h, img), 0);
        assert_int_equal(mmh_wait(h, 0), 0);
        vexpect(&e, 32, lmin, lmax, (uint64_t)v);
        check_image(img, &e);
        /* replaced by rename: the old file is intact under the old fd */
        if (oldfd >= 0) {
            struct stat nst;
            assert_int_equal(stat(img, &nst), 0);
            assert_true(nst.st_ino != ost.st_ino);
            char *buf = malloc(oldlen ? oldlen : 1);
            assert_non_null(buf);
            assert_int_equal(pread(oldfd, buf, oldlen, 0), (ssize_t)oldlen);
            assert_memory_equal(buf, old, oldlen);
            free(buf);
            close(oldfd);
        }
        free(old);
        /* no temporary files left (a log from the checker's open may be) */
        char *ls = dir_listing(dir);
        if (strcmp(ls, "one.img\n") != 0 && strcmp(ls, "one.img\none.img.wal\n") != 0)
            fail_msg("files beside the image:\n%s", ls);
        free(ls);
    }
    assert_int_equal(mmh_close(h), 0);
    free(dir);
}

/* The whole process group (the snapshotting process and its job) is killed
 * while the job runs: the image at the path is the old one or the new one,
 * whole. */
struct ksnap_arg {
    const char *img;
    uint64_t    v;
    size_t      lmin, lmax;
};

static int ksnap_child(const struct ksnap_arg *a, int wfd)
{
    child_init();
    mmh_heap *h = mmh_open(NULL, NULL);
    CK(h != NULL);
    struct sroot *s = vstate_build(h, 48, a->lmin, a->lmax, a->v - 1);
    CK(s != NULL);
    CK(vstate_set(h, s, a->v) == 0);
    CK(send_msg(wfd, 'b', a->v) == 0);
    CK(mmh_snapshot(h, a->img) == 0);
    CK(send_msg(wfd, 'r', a->v) == 0);
    /* writes during the job must not reach the image */
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], a->v + 1);
    CK(mmh_wait(h, 0) == 0);
    CK(send_msg(wfd, 'd', a->v) == 0);
    for (;;)
        pause();   /* killed */
}

static void test_kill_mid_snapshot(void **state)
{
    (void)state;
    char *dir = tu_mkdir("ksnap");
    char img[PATH_MAX];
    snprintf(img, sizeof img, "%s/k.img", dir);
    size_t lmax = (size_t)tu_scaled(1 * MiB, 16 * KiB);
    struct ksnap_arg a = { img, 0, lmax / 4, lmax };
    uint64_t seed = tu_test_seed((uint64_t)time(NULL) + 1);
    tu_rng rng = { seed };
    long rounds = tu_scaled(8, 3);
    uint64_t have = 0;      /* version the image holds */
    double job_us = 0;
    long kept_old = 0;
    for (long r = 0; r < rounds; r++) {
        a.v = (uint64_t)r + 1;
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 1);
        if (pid == 0)
            _exit(ksnap_child(&a, pfd[1]));
        uint64_t t_r = 0;
        int done = 0;
        struct msg m;
        for (;;) {
            if (read(pfd[0], &m, sizeof m) != (ssize_t)sizeof m)
                fail_msg("snapshotting child died early (round %ld)", r);
            if (m.c == 'r') {
                t_r = now_ns();
                if (r > 0)
                    break;           /* round 0 completes: it measures */
            } else if (m.c == 'd') {
                job_us = (double)(now_ns() - t_r) / 1e3;
                done = 1;
                break;
            }
        }
        if (!done) {
            long us = (long)tu_rand_range(&rng, 0, (size_t)(job_us * 1.1) + 1);
            sleep_ms((double)us / 1000);
        }
        kill_group(pid);
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &m, sizeof m) == (ssize_t)sizeof m)
            if (m.c == 'd')
                done = 1;
        close(pfd[0]);
        /* the image: the old version or the new one, whole */
        mmh_heap *h = mmh_open(img, NULL);
        if (!h)
            fail_msg("round %ld (MMH_TEST_SEED=%llu): the image does not open: %s", r,
                     (unsigned long long)seed, mmh_errmsg());
        struct sroot *s = mmh_root(h);
        assert_non_null(s);
        uint64_t v = s->version;
        if (v != a.v && !(v == have && !done))
            fail_msg("round %ld (MMH_TEST_SEED=%llu): image version %llu, expected %llu%s", r,
                     (unsigned long long)seed, (unsigned long long)v,
                     (unsigned long long)a.v, done ? "" : " or the previous one");
        struct expect e;
        vexpect(&e, 48, a.lmin, a.lmax, v);
        if (state_check(h, &e) != 0)
            fail_msg("round %ld: image version %llu is not whole", r, (unsigned long long)v);
        assert_int_equal(mmh_close(h), 0);
        kept_old += v == have;
        have = v;
    }
    print_message("%ld kills mid-snapshot kept the old image; a job takes %.1f ms\n",
                  kept_old, job_us / 1e3);
    free(dir);
}

/* ============================================================ 4. volatile */

struct vol_arg {
    const char *img;
    const void *bytes;    /* the image as written */
    size_t      len;
    const struct expect *e1;
    const char *epath;    /* gets the final expected state */
};

static struct expect vol_e;

static int volatile_child(void *argp)
{
    child_init();
    struct vol_arg *a = argp;
    mmh_config cfg = tu_cfg(MMH_VOLATILE, 0, 0);
    mmh_heap *h = mmh_open(a->img, &cfg);
    CK(h != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.flags & MMH_VOLATILE);
    CK(state_check(h, a->e1) == 0);
    struct sroot *s = mmh_root(h);

    /* modify, replace, grow past the file */
    for (uint64_t i = 0; i < s->nobj; i += 2) {
        if (i % 4 == 0)
            CK(obj_replace(h, s, i, 2, 3000 + i * 17) == 0);
        else
            obj_rewrite(s->objs[i], 2);
    }
    s->big_len = a->len * 2 + 5 * MiB;
    s->big = mmh_alloc(h, s->big_len);
    CK(s->big != NULL);
    s->big_byte = 0xc7;
    memset(s->big, 0xc7, s->big_len);
    s->version = 2;
    CK(mmh_stats(h, &st) == 0);
    CK(st.size > a->len);
    errno = 0;
    CK(mmh_commit(h) == -1);
    CK(errno != 0);
    errno = 0;
    CK(mmh_commit_bg(h) == -1);
    CK(file_is(a->img, a->bytes, a->len));

    /* saved back over the same path */
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    CK(!file_is(a->img, a->bytes, a->len));
    CK(tu_file_size(a->img) >= (off_t)s->big_len);
    /* untouched objects still read right: the old file stays mapped */
    state_expect(h, s, &vol_e);
    CK(state_check(h, &vol_e) == 0);

    /* and again */
    for (uint64_t i = 1; i < s->nobj; i += 4)
        obj_rewrite(s->objs[i], 3);
    s->version = 3;
    state_expect(h, s, &vol_e);
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    size_t len2 = 0;
    void *bytes2 = tu_read_file(a->img, &len2);
    CK(bytes2 != NULL);
    CK(mmh_close(h) == 0);
    CK(file_is(a->img, bytes2, len2));          /* close writes nothing */

    /* a volatile session that only scribbles leaves the file alone */
    h = mmh_open(a->img, &cfg);
    CK(h != NULL);
    CK(state_check(h, &vol_e) == 0);
    s = mmh_root(h);
    for (uint64_t i = 0; i < s->nobj; i++)
        obj_rewrite(s->objs[i], 99);
    CK(mmh_alloc(h, 3 * MiB) != NULL);
    CK(mmh_close(h) == 0);
    CK(file_is(a->img, bytes2, len2));
    free(bytes2);

    /* an ordinary open sees the saved state */
    h = mmh_open(a->img, NULL);
    CK(h != NULL);
    CK(state_check(h, &vol_e) == 0);
    CK(mmh_close(h) == 0);
    CK(write_expect(a->epath, &vol_e) == 0);
    return 0;
}

static void test_volatile_round_trip(void **state)
{
    (void)state;
    char *img = tu_path("vol.img");
    char *ep = tu_path("vol.expect");
    size_t lmax = (size_t)tu_scaled(128 * KiB, 8 * KiB);
    struct expect e1;
    mmh_heap *h = anon_state(24, 1000, lmax, 1, &e1);
    assert_int_equal(mmh_snapshot(h, img), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_int_equal(mmh_close(h), 0);   /* frees its base for the image */

    /* a missing image */
    char *missing = tu_path("missing.img");
    mmh_config cfg = tu_cfg(MMH_VOLATILE, 0, 0);
    assert_null_errno(mmh_open(missing, &cfg), ENOENT);
    assert_errmsg_contains(missing);
    assert_int_equal(tu_file_size(missing), -1);

    size_t len = 0;
    void *bytes = tu_read_file(img, &len);
    assert_non_null(bytes);
    struct vol_arg a = { img, bytes, len, &e1, ep };
    assert_child_ok(volatile_child, &a);
    struct expect e;
    assert_int_equal(read_expect(ep, &e), 0);
    check_file(img, &e);
    check_image(img, &e);
    free(bytes);
    free(missing);
    free(img);
    free(ep);
}

/* =========================================== 5. private file heap snapshot */

struct priv_arg {
    const char *path, *img;
    int         commit;
};

static int priv_child(void *argp)
{
    struct priv_arg *a = argp;
    mmh_heap *h;
    struct sroot *s = child_open(a->path, MMH_TRACK_AUTO, &h);
    CK(h != NULL);
    CK(s != NULL && s->version == 1);
    CK(vstate_set(h, s, 2) == 0);       /* uncommitted */
    CK(mmh_snapshot(h, a->img) == 0);
    CK(mmh_wait(h, 0) == 0);
    if (a->commit) {
        /* the snapshot took nothing from the next commit */
        CK(mmh_commit(h) == 0);
        raise(SIGKILL);
    }
    _exit(0);   /* no commit */
}

static void test_snapshot_private_file(void **state)
{
    (void)state;
    char *path = make_file_heap("priv.heap", 32, 2000, 60000, 1);
    char *img = tu_path("priv.img");
    struct expect e1, e2;
    vexpect(&e1, 32, 2000, 60000, 1);
    vexpect(&e2, 32, 2000, 60000, 2);
    struct priv_arg a = { path, img, 0 };
    assert_child_ok(priv_child, &a);
    check_file(path, &e1);      /* the heap file: its last commit */
    check_image(img, &e2);      /* the image: the state at the call */
    unlink(img);
    a.commit = 1;
    int st = tu_run_child(priv_child, &a);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("child did not reach its crash (status %#x)", st);
    check_file(path, &e2);
    check_image(img, &e2);
    free(path);
    free(img);
}

/* ======================================================== 6. sparse images */

/* An anonymous heap's image leaves out pages never touched: a 64 MiB
 * block with 1 MiB and one page written costs about 1 MiB of writes and of
 * disk, and reads back exactly, zeros included. */
static void test_sparse_image(void **state)
{
    (void)state;
    const size_t big = 64u << 20, head = 1u << 20, far = 40u << 20;
    char *path = tu_path("sparse.img");
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    unsigned char *b = mmh_alloc(h, big);
    assert_non_null(b);
    memset(b, 0x5a, head);
    memset(b + far, 0xa5, 4096);
    assert_int_equal(mmh_set_root(h, b), 0);
    assert_int_equal(mmh_snapshot(h, path), 0);
    assert_int_equal(mmh_wait(h, 0), 0);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(mmh_close(h), 0);
    if (st.last_job_bytes > 4 * head)
        fail_msg("the image wrote %llu bytes for %zu touched",
                 (unsigned long long)st.last_job_bytes, head + 4096);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true((size_t)sb.st_size >= big);
    assert_true((size_t)sb.st_blocks * 512 < 4 * head);
    mmh_heap *g = mmh_open(path, NULL);
    if (!g)
        fail_msg("reopen %s: %s", path, mmh_errmsg());
    const unsigned char *r = mmh_root(g);
    assert_non_null(r);
    for (size_t i = 0; i < big; i++) {
        unsigned char want = i < head ? 0x5a : i >= far && i < far + 4096 ? 0xa5 : 0;
        if (r[i] != want)
            fail_msg("byte %zu of the block: %#x, want %#x", i, r[i], want);
    }
    assert_int_equal(mmh_close(g), 0);
    unlink(path);
    free(path);
}

int main(int argc, char **argv)
{
    job_tests_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_image_exact_under_writers, setup_hang_alarm),
        cmocka_unit_test_setup(test_snapshot_bad_paths, setup_hang_alarm),
        cmocka_unit_test_setup(test_repeated_snapshots_one_path, setup_hang_alarm),
        cmocka_unit_test_setup(test_kill_mid_snapshot, setup_hang_alarm),
        cmocka_unit_test_setup(test_volatile_round_trip, setup_hang_alarm),
        cmocka_unit_test_setup(test_snapshot_private_file, setup_hang_alarm),
        cmocka_unit_test_setup(test_sparse_image, setup_hang_alarm),
    };
    return TU_RUN(tests);
}
