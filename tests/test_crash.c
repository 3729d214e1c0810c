/* test_crash: kill -9 at any instant, also in the middle of a commit.
 *
 * A child rewrites a 16 MiB state in place (and churns the allocator) and
 * commits it, version after version, telling the parent through a pipe when
 * each commit starts and ends.  The parent kills it with SIGKILL at a random
 * moment, mostly inside a commit, then reopens the file: the heap must hold
 * exactly the last completed commit or the one that was in progress, never a
 * mix, and must keep working.
 *
 * MMH_TEST_TRACKER=auto|uffd|mprotect|none picks the writer's tracker;
 * MMH_CRASH_ROUNDS overrides the number of kills (make check-crash runs
 * hundreds per tracker).
 */
#include "testutil.h"

#include <signal.h>
#include <poll.h>
#include <time.h>

#define NBLK     64
#define BLK_LEN  (256 * KiB)
#define C_MAGIC  0x43524153484d4d48ull

struct cstate {
    uint64_t magic;
    uint64_t version;
    uint64_t off[NBLK];
    uint64_t len[NBLK];
    uint64_t extra_off;       /* a block reallocated each version */
    uint64_t extra_len;
};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t blk_seed(uint64_t version, int i) { return version * 1000 + (uint64_t)i; }

/* The writer's configuration: the tracker under test. */
static mmh_config writer_cfg(unsigned flags)
{
    static const char *const names[] = { "auto", "uffd", "mprotect", "none" };
    mmh_config cfg = tu_cfg(flags, 0, 0);
    const char *want = getenv("MMH_TEST_TRACKER");
    for (unsigned t = 0; want && t < 4; t++)
        if (strcmp(want, names[t]) == 0)
            cfg.tracker = (mmh_tracker)t;
    return cfg;
}

static int child_writer(const char *path, int wfd)
{
    mmh_config cfg = writer_cfg(0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct cstate *s = mmh_root(h);
    CK(s != NULL && s->magic == C_MAGIC);
    for (uint64_t v = s->version + 1;; v++) {
        for (int i = 0; i < NBLK; i++) {
            unsigned char *p = mmh_at(h, s->off[i]);
            CK(p != NULL);
            tu_fill(p, s->len[i], blk_seed(v, i));
        }
        /* allocator churn: the metadata changes with every version */
        mmh_free(h, mmh_at(h, s->extra_off));
        s->extra_len = 1000 + (v * 7919) % 300000;
        unsigned char *e = mmh_alloc(h, s->extra_len);
        CK(e != NULL);
        tu_fill(e, s->extra_len, blk_seed(v, NBLK));
        s->extra_off = mmh_offset(h, e);
        s->version = v;
        char c = 'c';
        CK(write(wfd, &c, 1) == 1);
        CK(mmh_commit(h) == 0);
        c = 'd';
        CK(write(wfd, &c, 1) == 1);
    }
}

static void make_initial(const char *path)
{
    mmh_config cfg = writer_cfg(MMH_CREATE);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct cstate *s = mmh_calloc(h, 1, sizeof *s);
    assert_non_null(s);
    s->magic = C_MAGIC;
    s->version = 0;
    for (int i = 0; i < NBLK; i++) {
        s->len[i] = BLK_LEN - (size_t)i * 16;
        unsigned char *p = mmh_alloc(h, s->len[i]);
        assert_non_null(p);
        tu_fill(p, s->len[i], blk_seed(0, i));
        s->off[i] = mmh_offset(h, p);
    }
    s->extra_len = 100;
    unsigned char *e = mmh_alloc(h, s->extra_len);
    assert_non_null(e);
    tu_fill(e, s->extra_len, blk_seed(0, NBLK));
    s->extra_off = mmh_offset(h, e);
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
}

/* Returns the version found, after checking it is whole. */
static uint64_t check_whole(const char *path)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen after kill failed: %s", mmh_errmsg());
    struct cstate *s = mmh_root(h);
    assert_non_null(s);
    assert_int_equal(s->magic, C_MAGIC);
    uint64_t v = s->version;
    for (int i = 0; i < NBLK; i++) {
        unsigned char *p = mmh_at(h, s->off[i]);
        assert_non_null(p);
        size_t bad = tu_check(p, s->len[i], blk_seed(v, i));
        if (bad != (size_t)-1) {
            int other = tu_verify(p, s->len[i], blk_seed(v + 1, i));
            fail_msg("version %llu: block %d differs at byte %zu%s",
                     (unsigned long long)v, i, bad,
                     other ? " (it holds the next, uncommitted version)" : "");
        }
    }
    unsigned char *e = mmh_at(h, s->extra_off);
    assert_non_null(e);
    assert_pattern(e, s->extra_len, blk_seed(v, NBLK));
    assert_true(mmh_usable_size(h, e) >= s->extra_len);
    assert_int_equal(tu_stats(h).allocations, NBLK + 2);
    /* the allocator works on from here */
    void *q = mmh_alloc(h, 5000);
    assert_non_null(q);
    mmh_free(h, q);
    assert_int_equal(mmh_close(h), 0);
    return v;
}

static void test_kill_during_commit(void **state)
{
    (void)state;
    char *path = tu_path("crash.heap");
    make_initial(path);
    uint64_t seed = tu_test_seed((uint64_t)time(NULL));
    tu_rng rng = { seed };
    long rounds = getenv("MMH_CRASH_ROUNDS") ? atol(getenv("MMH_CRASH_ROUNDS"))
                                             : tu_scaled(25, 3);
    uint64_t committed = 0;            /* last version known complete */
    double commit_us = 20000;          /* running estimate of a commit's time */
    for (long r = 0; r < rounds; r++) {
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 0);
        if (pid == 0)
            _exit(child_writer(path, pfd[1]));
        /* let it complete 0..2 commits, then kill it inside the next one
         * after a random delay (sometimes before, sometimes after the end) */
        int target = (int)tu_rand_range(&rng, 0, 2);
        int completed = 0;
        uint64_t started = committed;
        double t_c = 0;
        for (;;) {
            char c;
            if (read(pfd[0], &c, 1) != 1)
                fail_msg("writer died early (round %ld)", r);
            if (c == 'c') {
                started = committed + 1;     /* the version being committed */
                t_c = now_us();
                if (completed >= target)
                    break;
            } else {
                committed = started;
                completed++;
                double took = now_us() - t_c;  /* how long a commit takes */
                commit_us = commit_us ? (commit_us * 3 + took) / 4 : took;
            }
        }
        /* kill somewhere in [0, 1.25 x commit time): mostly mid-commit */
        long us = (long)tu_rand_range(&rng, 0, (size_t)(commit_us * 1.25) + 1);
        struct timespec d = { us / 1000000, (us % 1000000) * 1000 };
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        /* a 'd' may have arrived before the kill */
        char c;
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &c, 1) == 1) {
            if (c == 'c')
                started = committed + 1;
            else
                committed = started;
        }
        close(pfd[0]);
        uint64_t v = check_whole(path);
        if (v != committed && v != started)
            fail_msg("round %ld (MMH_TEST_SEED=%llu): found version %llu, "
                     "expected %llu or %llu", r, (unsigned long long)seed,
                     (unsigned long long)v, (unsigned long long)committed,
                     (unsigned long long)started);
        committed = started = v;
    }
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_commit),
    };
    return TU_RUN(tests);
}
