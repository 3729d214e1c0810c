/* test_fork: heaps across fork() by the program, and a program that
 * reaps its children itself.
 *
 *  - fork() from a multithreaded program using an anonymous and a file
 *    heap: the child allocates and frees in both, blocks of the parent's
 *    included, without deadlock;
 *  - fork() while a job runs: the child has no job to wait for, can start
 *    its own, and the parent's finishes normally;
 *  - a program that reaps its children (waitpid(-1), SIGCHLD ignored):
 *    mmh_wait still reports its job's outcome.
 *
 * Images are checked in a fresh process (this program exec'd with --check,
 * jobutil.h).
 */
#include "jobutil.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>

/* fork() from a multithreaded program: a worker thread allocates, checks
 * and frees in an anonymous and a file heap while the test thread forks;
 * each child works in both heaps and frees blocks the parent allocated
 * before forking, and must not deadlock. */
#define MT_RING 64

struct mt {
    mmh_heap   *ha, *hf;
    atomic_int  stop;
    atomic_long ops;
    int         failed;
    char        why[256];
    void       *ring[2][MT_RING];
    size_t      rlen[2][MT_RING];
};

static struct mt mt;
static void *mt_pre[64];

static void *mt_worker(void *arg)
{
    (void)arg;
    tu_rng rng = { 77 };
    for (unsigned k = 0; !atomic_load(&mt.stop); k++) {
        int which = (int)(k & 1);
        mmh_heap *h = which ? mt.hf : mt.ha;
        unsigned slot = (unsigned)(tu_rand(&rng) % MT_RING);
        if (mt.ring[which][slot]) {
            if (!tu_verify(mt.ring[which][slot], mt.rlen[which][slot], slot)) {
                snprintf(mt.why, sizeof mt.why, "worker: block corrupt");
                mt.failed = 1;
                return NULL;
            }
            mmh_free(h, mt.ring[which][slot]);
        }
        size_t n = tu_rand(&rng) % 64 == 0 ? tu_rand_range(&rng, 200 * KiB, 2 * MiB)
                                           : tu_rand_log(&rng, 1, 20000);
        void *p = mmh_alloc(h, n);
        if (!p) {
            snprintf(mt.why, sizeof mt.why, "worker: alloc(%zu): %s", n, mmh_errmsg());
            mt.failed = 1;
            return NULL;
        }
        tu_fill(p, n, slot);
        mt.ring[which][slot] = p;
        mt.rlen[which][slot] = n;
        atomic_fetch_add(&mt.ops, 1);
    }
    return NULL;
}

static int mt_child(void)
{
    child_init();
    alarm(20);   /* a deadlock kills it */
    tu_rng rng = { (uint64_t)getpid() };
    void *mine[128];
    size_t ml[128];
    memset(mine, 0, sizeof mine);
    for (int k = 0; k < 3000; k++) {
        mmh_heap *h = (k & 1) ? mt.hf : mt.ha;
        int i = (int)(tu_rand(&rng) % 64);
        int slot = i * 2 + (k & 1);
        if (mine[slot]) {
            CK(tu_verify(mine[slot], ml[slot], (uint64_t)slot + 1000));
            mmh_free(h, mine[slot]);
        }
        ml[slot] = tu_rand(&rng) % 50 == 0 ? tu_rand_range(&rng, 100 * KiB, 1 * MiB)
                                           : tu_rand_log(&rng, 1, 30000);
        mine[slot] = mmh_alloc(h, ml[slot]);
        CK(mine[slot] != NULL);
        tu_fill(mine[slot], ml[slot], (uint64_t)slot + 1000);
    }
    /* blocks the parent allocated before forking are free-able here */
    for (int i = 0; i < 64; i++)
        mmh_free((i & 1) ? mt.hf : mt.ha, mt_pre[i]);
    for (int slot = 0; slot < 128; slot++)
        if (mine[slot])
            mmh_free((slot & 1) ? mt.hf : mt.ha, mine[slot]);
    return 0;
}

static void test_app_fork_multithreaded(void **state)
{
    (void)state;
    if (under_valgrind())
        skip();
    memset(&mt, 0, sizeof mt);
    char *path = tu_path("fork.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mt.hf = mmh_open(path, &cfg);
    assert_non_null(mt.hf);
    mt.ha = mmh_open(NULL, NULL);
    assert_non_null(mt.ha);
    for (int i = 0; i < 64; i++) {
        mt_pre[i] = mmh_alloc((i & 1) ? mt.hf : mt.ha, 100 + (size_t)i * 500);
        assert_non_null(mt_pre[i]);
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, mt_worker, NULL), 0);
    long forks = tu_scaled(20, 3);
    tu_rng rng = { 5 };
    char why[256] = "";
    for (long k = 0; k < forks && !why[0] && !mt.failed; k++) {
        long before = atomic_load(&mt.ops);
        while (atomic_load(&mt.ops) - before < 50 && !mt.failed)
            sched_yield();
        sleep_ms((double)(tu_rand(&rng) % 3000) / 1000);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(why, sizeof why, "fork: %s", strerror(errno));
            break;
        }
        if (pid == 0)
            _exit(mt_child());
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (WIFSIGNALED(st))
            snprintf(why, sizeof why, "fork %ld: child killed by signal %d%s", k, WTERMSIG(st),
                     WTERMSIG(st) == SIGALRM ? " (deadlocked)" : "");
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            snprintf(why, sizeof why, "fork %ld: child exited with %d", k, WEXITSTATUS(st));
    }
    atomic_store(&mt.stop, 1);
    pthread_join(th, NULL);
    if (why[0])
        fail_msg("%s", why);
    if (mt.failed)
        fail_msg("%s", mt.why);
    for (int i = 0; i < 64; i++)
        mmh_free((i & 1) ? mt.hf : mt.ha, mt_pre[i]);
    assert_int_equal(mmh_close(mt.ha), 0);
    assert_int_equal(mmh_close(mt.hf), 0);
    unlink(path);
    free(path);
}

/* fork() by the program while a job runs: the child has no job of its own
 * to wait for (ECHILD at once, no hang), can start one, and the parent's
 * job finishes normally. */
static int fork_during_job_child(void *arg)
{
    child_init();
    alarm(20);
    mmh_heap *h = arg;
    errno = 0;
    CK(mmh_wait(h, 1) == -1 && errno == ECHILD);
    errno = 0;
    CK(mmh_wait(h, 0) == -1 && errno == ECHILD);
    char *img = tu_path("fjob2.img");
    CK(mmh_snapshot(h, img) == 0);
    CK(mmh_wait(h, 0) == 0);
    return 0;
}

static void test_app_fork_during_job(void **state)
{
    (void)state;
    size_t lmax = (size_t)tu_scaled(256 * KiB, 16 * KiB);
    struct expect e;
    mmh_heap *h = anon_state(32, lmax / 4, lmax, 4, &e);
    char *img1 = tu_path("fjob1.img");
    assert_int_equal(mmh_snapshot(h, img1), 0);
    pid_t job = job_stop();
    assert_child_ok(fork_during_job_child, h);
    job_cont(job);
    assert_int_equal(mmh_wait(h, 0), 0);
    assert_int_equal(tu_stats(h).jobs, 1);
    check_image(img1, &e);
    char img2[PATH_MAX];
    tu_dir_join(img2, sizeof img2, "fjob2.img");
    check_image(img2, &e);
    assert_int_equal(mmh_close(h), 0);
    free(img1);
}

/* The program reaps its children itself (waitpid(-1), SIGCHLD ignored):
 * mmh_wait still reports the job's outcome. */
static void test_wait_when_program_reaps(void **state)
{
    (void)state;
    struct expect e;
    mmh_heap *h = anon_state(16, 1000, 50000, 6, &e);
    char *img = tu_path("reaped.img");

    assert_int_equal(mmh_snapshot(h, img), 0);
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, 0)) < 0 && errno == EINTR)
        ;
    assert_true(r > 0);                 /* the program took the job */
    assert_int_equal(mmh_wait(h, 0), 0);
    check_image(img, &e);

    char bad[PATH_MAX];
    tu_dir_join(bad, sizeof bad, "nodir/x.img");
    errno = 0;
    int rc = mmh_snapshot(h, bad);
    if (rc == 0) {
        while ((r = waitpid(-1, &st, 0)) < 0 && errno == EINTR)
            ;
        assert_true(r > 0);
        errno = 0;
        rc = mmh_wait(h, 0);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(errno, ENOENT);
    assert_errmsg_contains(bad);

    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    sigaction(SIGCHLD, &ign, &old);
    unlink(img);
    assert_int_equal(mmh_snapshot(h, img), 0);
    sleep_ms(50);
    rc = mmh_wait(h, 0);
    sigaction(SIGCHLD, &old, NULL);
    if (rc != 0)
        fail_msg("with SIGCHLD ignored: mmh_wait %d: %s", rc, mmh_errmsg());
    check_image(img, &e);
    assert_int_equal(tu_stats(h).jobs, 2); /* the missing directory: said at the call */
    assert_int_equal(tu_stats(h).jobs_failed, 0);
    assert_int_equal(mmh_close(h), 0);
    free(img);
}

int main(int argc, char **argv)
{
    job_tests_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_app_fork_multithreaded, setup_hang_alarm),
        cmocka_unit_test_setup(test_app_fork_during_job, setup_hang_alarm),
        cmocka_unit_test_setup(test_wait_when_program_reaps, setup_hang_alarm),
    };
    return TU_RUN(tests);
}
