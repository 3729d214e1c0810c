/* test_api: open/close paths, root, offset/at, touch, commit, stats, errmsg. */
#include "testutil.h"

#include <pthread.h>
#include <time.h>

static void test_open_anon_cfg_null(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    struct mmh_stats st = tu_stats(h);
    assert_true(st.base != 0);
    assert_true(st.max_size >= st.size);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(st.allocated, 0);
    assert_int_equal(st.commits, 0);
    assert_false(st.flags & MMH_READONLY);
    assert_false(st.flags & MMH_SHARED);

    char *p = mmh_alloc(h, 100);
    assert_non_null(p);
    memset(p, 0x5a, 100);
    st = tu_stats(h);
    assert_true(tu_in_heap(&st, p, 100));
    assert_int_equal(st.allocations, 1);
    mmh_free(h, p);
    assert_int_equal(mmh_close(h), 0);
}

static void test_open_anon_cfg(void **state)
{
    (void)state;
    mmh_config cfg = tu_cfg(0, 1 * MiB, 64 * MiB);
    mmh_heap *h = mmh_open(NULL, &cfg);
    assert_non_null(h);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.max_size, 64 * MiB);
    assert_true(st.size <= st.max_size);
    assert_int_equal(st.base % 4096, 0);
    assert_int_equal(mmh_close(h), 0);
}

static void test_open_file_create(void **state)
{
    (void)state;
    char *path = tu_path("create.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mode_t old = umask(022);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);       /* mode 0 = 0600 */
    struct mmh_stats st = tu_stats(h);
    assert_true(st.base != 0);
    assert_int_equal(st.base % 4096, 0);
    assert_int_equal(st.allocations, 0);
    assert_null(mmh_root(h));
    assert_int_equal(mmh_close(h), 0);
    assert_true(tu_file_size(path) > 0);

    /* cfg NULL on an existing heap file opens it */
    h = mmh_open(path, NULL);
    assert_non_null(h);
    st = tu_stats(h);
    assert_false(st.flags & MMH_READONLY);
    assert_int_equal(mmh_close(h), 0);

    /* cfg.mode is honoured */
    char *p2 = tu_path("mode.heap");
    cfg.mode = 0640;
    h = mmh_open(p2, &cfg);
    assert_non_null(h);
    assert_int_equal(stat(p2, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    assert_int_equal(mmh_close(h), 0);
    umask(old);
    unlink(path);
    unlink(p2);
    free(path);
    free(p2);
}

static void test_root(void **state)
{
    (void)state;
    char *path = tu_path("root.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_null(mmh_root(h));
    char *a = mmh_alloc(h, 64);
    char *b = mmh_alloc(h, 64);
    assert_non_null(a);
    assert_non_null(b);
    strcpy(a, "root a");
    strcpy(b, "root b");
    assert_int_equal(mmh_set_root(h, a), 0);
    assert_ptr_equal(mmh_root(h), a);
    assert_int_equal(mmh_set_root(h, b), 0);
    assert_ptr_equal(mmh_root(h), b);
    assert_int_equal(mmh_close(h), 0);          /* close commits */

    h = mmh_open(path, NULL);
    assert_non_null(h);
    char *r = mmh_root(h);
    assert_ptr_equal(r, b);                     /* same base, same pointer */
    assert_string_equal(r, "root b");
    assert_int_equal(mmh_set_root(h, NULL), 0);
    assert_null(mmh_root(h));
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_null(mmh_root(h));
    assert_int_equal(mmh_close(h), 0);

    /* anonymous heaps have a root too */
    h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_null(mmh_root(h));
    a = mmh_alloc(h, 8);
    assert_int_equal(mmh_set_root(h, a), 0);
    assert_ptr_equal(mmh_root(h), a);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

static void test_offset_at(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    enum { N = 200 };
    char *ps[N];
    uint64_t offs[N];
    tu_rng rng = { 42 };
    for (int i = 0; i < N; i++) {
        size_t n = tu_rand_log(&rng, 1, 300000);
        ps[i] = mmh_alloc(h, n);
        assert_non_null(ps[i]);
        offs[i] = mmh_offset(h, ps[i]);
        assert_true(offs[i] != 0);
        assert_ptr_equal(mmh_at(h, offs[i]), ps[i]);
        /* interior pointers map linearly */
        assert_int_equal(mmh_offset(h, ps[i] + n - 1), offs[i] + n - 1);
        assert_ptr_equal(mmh_at(h, offs[i] + n - 1), ps[i] + n - 1);
        for (int j = 0; j < i; j++)
            assert_true(offs[j] != offs[i]);
    }
    /* order is preserved: offsets are a translation of addresses */
    for (int i = 1; i < N; i++)
        assert_true((ps[i] < ps[0]) == (offs[i] < offs[0]));

    assert_int_equal(mmh_offset(h, NULL), 0);
    assert_null(mmh_at(h, 0));
    int local = 0;
    assert_int_equal(mmh_offset(h, &local), 0);
    char *m = malloc(16);
    assert_int_equal(mmh_offset(h, m), 0);
    free(m);
    assert_int_equal(mmh_offset(h, (void *)(uintptr_t)1), 0);
    assert_int_equal(mmh_offset(h, (void *)UINTPTR_MAX), 0);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(mmh_offset(h, (char *)(uintptr_t)st.base + st.max_size + 4096), 0);
    assert_null(mmh_at(h, UINT64_MAX));
    assert_null(mmh_at(h, (uint64_t)1 << 62));
    assert_null(mmh_at(h, st.max_size + 4096));

    /* a pointer of another heap is outside h */
    mmh_heap *h2 = mmh_open(NULL, NULL);
    assert_non_null(h2);
    char *q = mmh_alloc(h2, 32);
    assert_non_null(q);
    assert_int_equal(mmh_offset(h, q), 0);
    assert_true(mmh_offset(h2, q) != 0);
    assert_ptr_equal(mmh_at(h2, mmh_offset(h2, q)), q);
    assert_int_equal(mmh_close(h2), 0);

    for (int i = 0; i < N; i++)
        mmh_free(h, ps[i]);
    assert_int_equal(mmh_close(h), 0);
}

static void test_offset_stable_across_reopen(void **state)
{
    (void)state;
    char *path = tu_path("offset.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *p = mmh_alloc(h, 1000);
    assert_non_null(p);
    tu_fill(p, 1000, 7);
    uint64_t off = mmh_offset(h, p);
    assert_true(off != 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    char *q = mmh_at(h, off);
    assert_non_null(q);
    assert_pattern(q, 1000, 7);
    assert_int_equal(mmh_offset(h, q), off);
    assert_true(mmh_usable_size(h, q) >= 1000);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

static void test_touch(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    char *p = mmh_alloc(h, 3 * 4096);
    assert_non_null(p);
    assert_int_equal(mmh_touch(h, p, 3 * 4096), 0);
    memset(p, 1, 3 * 4096);
    assert_int_equal(mmh_close(h), 0);

    /* File heaps: the kernel writes into a touched range after a commit.
     * The explicit mprotect case is in test_tracker_api. */
    static const mmh_tracker trk[] = { MMH_TRACK_AUTO, MMH_TRACK_NONE };
    for (size_t t = 0; t < sizeof trk / sizeof trk[0]; t++) {
        char *path = tu_path("touch.heap");
        mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
        cfg.tracker = trk[t];
        h = mmh_open(path, &cfg);
        assert_non_null(h);
        p = mmh_alloc(h, 5 * 4096);
        assert_non_null(p);
        memset(p, 0x77, 5 * 4096);
        assert_int_equal(mmh_set_root(h, p), 0);
        assert_int_equal(mmh_commit(h), 0);
        assert_int_equal(mmh_touch(h, p + 100, 4 * 4096), 0);
        int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t r = read(fd, p + 100, 4 * 4096);
        int e = errno;
        close(fd);
        if (r != 4 * 4096)
            fail_msg("read into touched range (tracker %d): %zd, %s",
                     (int)trk[t], r, strerror(e));
        assert_true(tu_all_bytes(p + 100, 4 * 4096, 0));
        assert_int_equal(mmh_close(h), 0);      /* commits the kernel's writes */

        h = mmh_open(path, NULL);
        assert_non_null(h);
        p = mmh_root(h);
        assert_non_null(p);
        assert_true(tu_all_bytes(p, 100, 0x77));
        assert_true(tu_all_bytes(p + 100, 4 * 4096, 0));
        assert_true(tu_all_bytes(p + 100 + 4 * 4096, 4096 - 100, 0x77));
        assert_int_equal(mmh_close(h), 0);
        unlink(path);
        free(path);
    }
}

static void test_commit_stats(void **state)
{
    (void)state;
    char *path = tu_path("commit.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct mmh_stats st0 = tu_stats(h);
    assert_int_equal(st0.commits, 0);
    assert_true(st0.tracker == MMH_TRACK_UFFD || st0.tracker == MMH_TRACK_MPROTECT ||
                st0.tracker == MMH_TRACK_NONE);

    char *p = mmh_alloc(h, 100000);
    assert_non_null(p);
    tu_fill(p, 100000, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    assert_int_equal(mmh_commit(h), 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    struct mmh_stats st1 = tu_stats(h);
    assert_int_equal(st1.commits, 1);
    assert_true(st1.bytes_written >= 100000);
    assert_true(st1.last_commit_time >= before - 1000000000ull);
    assert_true(st1.last_commit_time <= after + 1000000000ull);
    assert_true(st1.size <= st1.max_size);
    assert_true(tu_file_size(path) >= (off_t)100000);

    assert_int_equal(mmh_commit(h), 0);
    struct mmh_stats st2 = tu_stats(h);
    assert_int_equal(st2.commits, 2);
    assert_true(st2.bytes_written >= st1.bytes_written);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

static void test_stats_counts(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    struct mmh_stats st0 = tu_stats(h);
    assert_true(st0.tracker != MMH_TRACK_AUTO);
    enum { N = 300 };
    void *ps[N];
    uint64_t sum = 0;
    tu_rng rng = { 9 };
    for (int i = 0; i < N; i++) {
        size_t n = tu_rand_log(&rng, 1, 2 * MiB);
        ps[i] = mmh_alloc(h, n);
        assert_non_null(ps[i]);
        sum += mmh_usable_size(h, ps[i]);
        struct mmh_stats st = tu_stats(h);
        assert_int_equal(st.allocations, st0.allocations + (uint64_t)i + 1);
        assert_int_equal(st.allocated, st0.allocated + sum);
        assert_int_equal(st.base, st0.base);
    }
    for (int i = 0; i < N; i++) {
        sum -= mmh_usable_size(h, ps[i]);
        mmh_free(h, ps[i]);
        struct mmh_stats st = tu_stats(h);
        assert_int_equal(st.allocations, st0.allocations + (uint64_t)(N - i - 1));
        assert_int_equal(st.allocated, st0.allocated + sum);
    }
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.allocations, st0.allocations);
    assert_int_equal(st.allocated, st0.allocated);
    assert_true(st.size <= st.max_size);
    assert_int_equal(mmh_close(h), 0);
}

static void test_stats_flags(void **state)
{
    (void)state;
    char *path = tu_path("flags.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE | MMH_SHARED, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct mmh_stats st = tu_stats(h);
    assert_true(st.flags & MMH_SHARED);
    assert_false(st.flags & MMH_READONLY);
    assert_true(st.tracker != MMH_TRACK_AUTO);
    assert_int_equal(mmh_close(h), 0);

    cfg = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    st = tu_stats(h);
    assert_true(st.flags & MMH_READONLY);
    assert_int_equal(mmh_close(h), 0);

    cfg = tu_cfg(0, 0, 0);
    cfg.tracker = MMH_TRACK_NONE;
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    st = tu_stats(h);
    assert_int_equal(st.tracker, MMH_TRACK_NONE);
    assert_false(st.flags & MMH_SHARED);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* ---------------------------------------------------------------- errmsg */

struct msg_arg {
    const char *path;
    int ok;
    char msg[512];
};

static void *errmsg_thread(void *arg)
{
    struct msg_arg *a = arg;
    const char *m0 = mmh_errmsg();
    a->ok = (m0 != NULL);
    mmh_config cfg = tu_cfg(0, 0, 0);
    mmh_heap *h = mmh_open(a->path, &cfg);
    if (h) {
        a->ok = 0;
        mmh_close(h);
    }
    const char *m = mmh_errmsg();
    if (!m)
        a->ok = 0;
    else
        snprintf(a->msg, sizeof a->msg, "%s", m);
    return NULL;
}

static void test_errmsg(void **state)
{
    (void)state;
    assert_non_null(mmh_errmsg());

    char *mine = tu_path("missing-main.heap");
    char *theirs = tu_path("missing-thread.heap");
    assert_null_errno(mmh_open(mine, NULL), ENOENT);
    assert_errmsg_contains(mine);

    struct msg_arg a = { theirs, 0, "" };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, errmsg_thread, &a), 0);
    pthread_join(t, NULL);
    assert_true(a.ok);
    assert_non_null(strstr(a.msg, theirs));
    /* thread-local: this thread still has its own message */
    assert_errmsg_contains(mine);
    assert_null(strstr(mmh_errmsg(), theirs));
    free(mine);
    free(theirs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_anon_cfg_null),
        cmocka_unit_test(test_open_anon_cfg),
        cmocka_unit_test(test_open_file_create),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_offset_at),
        cmocka_unit_test(test_offset_stable_across_reopen),
        cmocka_unit_test(test_touch),
        cmocka_unit_test(test_commit_stats),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_stats_flags),
        cmocka_unit_test(test_errmsg),
    };
    return TU_RUN(tests);
}
