/* test_tracker_api: the tracker contract seen through the public API, and
 * incremental commits.  (test_tracker_ranges checks the dirty ranges
 * themselves.) */
#include "testutil.h"

#include <stdbool.h>
#include <sys/resource.h>

/* Commit cost follows the pages written, not the heap size. */
static void test_commit_incremental(void **state)
{
    (void)state;
    char *path = tu_path("incr.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    size_t big = 32 * MiB;
    char *p = mmh_alloc(h, big);
    assert_non_null(p);
    memset(p, 0x11, big);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_commit(h), 0);
    struct mmh_stats st1 = tu_stats(h);
    assert_true(st1.bytes_written >= big);
    if (st1.tracker == MMH_TRACK_NONE) {
        mmh_close(h);
        unlink(path);
        free(path);
        skip();
    }
    p[12345] = 0x22;
    p[big / 2] = 0x33;
    assert_int_equal(mmh_commit(h), 0);
    struct mmh_stats st2 = tu_stats(h);
    uint64_t delta = st2.bytes_written - st1.bytes_written;
    if (delta > 2 * MiB)
        fail_msg("commit after writing 2 bytes wrote %llu bytes (heap %llu)",
                 (unsigned long long)delta, (unsigned long long)st2.size);
    assert_true(delta >= 2);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    p = mmh_root(h);
    assert_non_null(p);
    assert_int_equal((unsigned char)p[12345], 0x22);
    assert_int_equal((unsigned char)p[big / 2], 0x33);
    assert_int_equal((unsigned char)p[12346], 0x11);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* Each explicit tracker either works or is refused cleanly. */
static void test_trackers(void **state)
{
    (void)state;
    static const mmh_tracker trk[] = { MMH_TRACK_AUTO, MMH_TRACK_UFFD,
                                       MMH_TRACK_MPROTECT, MMH_TRACK_NONE };
    for (size_t t = 0; t < sizeof trk / sizeof trk[0]; t++) {
        char name[64];
        snprintf(name, sizeof name, "trk%zu.heap", t);
        char *path = tu_path(name);
        mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
        cfg.tracker = trk[t];
        errno = 0;
        mmh_heap *h = mmh_open(path, &cfg);
        if (!h) {
            /* only the uffd backend may be unavailable */
            int e = errno;
            if (trk[t] != MMH_TRACK_UFFD)
                fail_msg("tracker %d refused: %s", (int)trk[t], mmh_errmsg());
            assert_true(e != 0);
            free(path);
            continue;
        }
        struct mmh_stats st = tu_stats(h);
        assert_true(st.tracker != MMH_TRACK_AUTO);
        char *p = mmh_alloc(h, 256 * KiB);
        assert_non_null(p);
        tu_fill(p, 256 * KiB, t);
        assert_int_equal(mmh_set_root(h, p), 0);
        assert_int_equal(mmh_commit(h), 0);
        p[1000] ^= 1;                            /* after the commit */
        assert_int_equal(mmh_commit(h), 0);
        p[1000] ^= 1;
        p[200000] ^= 1;                          /* never committed */
        struct mmh_stats st2 = tu_stats(h);
        assert_int_equal(st2.commits, 2);
        if (st2.tracker == MMH_TRACK_MPROTECT)
            assert_true(st2.faults > 0);
        assert_int_equal(mmh_close(h), 0);
        /* close committed p[1000] restored and p[200000] flipped */
        h = mmh_open(path, NULL);
        assert_non_null(h);
        p = mmh_root(h);
        assert_non_null(p);
        p[200000] ^= 1;
        assert_pattern(p, 256 * KiB, t);
        assert_int_equal(mmh_close(h), 0);
        unlink(path);
        free(path);
    }
}

/* The documented tracker choice: AUTO is uffd where the kernel supports it,
 * else mprotect; an explicit mprotect or none is honoured; an explicit uffd
 * is honoured or refused. */
static void test_tracker_contract(void **state)
{
    (void)state;
    char *path = tu_path("trkc.heap");
    static const mmh_tracker trk[] = { MMH_TRACK_AUTO, MMH_TRACK_MPROTECT,
                                       MMH_TRACK_NONE, MMH_TRACK_UFFD };
    for (size_t t = 0; t < sizeof trk / sizeof trk[0]; t++) {
        mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
        cfg.tracker = trk[t];
        mmh_heap *h = mmh_open(path, &cfg);
        if (!h && trk[t] == MMH_TRACK_UFFD)
            continue;
        if (!h)
            fail_msg("tracker %d: %s", (int)trk[t], mmh_errmsg());
        struct mmh_stats st = tu_stats(h);
        assert_int_equal(mmh_close(h), 0);
        if (trk[t] == MMH_TRACK_AUTO) {
            if (st.tracker != MMH_TRACK_UFFD && st.tracker != MMH_TRACK_MPROTECT)
                fail_msg("MMH_TRACK_AUTO on a file heap resolved to %d, expected "
                         "uffd (%d) or mprotect (%d)", (int)st.tracker,
                         (int)MMH_TRACK_UFFD, (int)MMH_TRACK_MPROTECT);
        } else if (st.tracker != trk[t]) {
            fail_msg("tracker %d requested, %d in use", (int)trk[t], (int)st.tracker);
        }
    }
    /* unknown tracker values are refused */
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    cfg.tracker = (mmh_tracker)42;
    assert_null_errno(mmh_open(path, &cfg), EINVAL);
    unlink(path);
    free(path);
}

/* Under the mprotect tracker, read(2) into a committed (re-protected) range
 * works once the range is prepared with mmh_touch. */
static void test_touch_mprotect(void **state)
{
    (void)state;
    char *path = tu_path("touchmp.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    cfg.tracker = MMH_TRACK_MPROTECT;
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("mprotect tracker refused: %s", mmh_errmsg());
    char *p = mmh_alloc(h, 5 * 4096);
    assert_non_null(p);
    memset(p, 0x77, 5 * 4096);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_touch(h, p + 100, 4 * 4096), 0);
    int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t r = read(fd, p + 100, 4 * 4096);
    close(fd);
    assert_int_equal(r, 4 * 4096);
    assert_true(tu_all_bytes(p + 100, 4 * 4096, 0));
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* In a fresh process (the probe's verdict is per process), with the
 * descriptor limit raised one at a time from 3: every open that fails,
 * with MMH_TRACK_UFFD or MMH_TRACK_AUTO, fails with EMFILE and says why;
 * AUTO never settles for mprotect because descriptors ran out; and once
 * there are enough, both get uffd (a shortage once made the first probe's
 * "no" stick: AUTO gave every later heap mprotect, and UFFD failed with
 * "not available: no error").  Exit 0, or 1 after printing why. */
static int fd_starved(const char *dir)
{
    static const mmh_tracker trk[] = { MMH_TRACK_UFFD, MMH_TRACK_AUTO };
    bool short_of_uffd = false; /* a failure reached the uffd tracker */
    struct rlimit full;
    CK(getrlimit(RLIMIT_NOFILE, &full) == 0);
    for (rlim_t limit = 3; limit < 64; limit++) {
        int opened = 0;
        for (size_t t = 0; t < 2; t++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/starved-%d-%zu.heap", dir, (int)limit, t);
            struct rlimit rl = { limit, full.rlim_max };
            CK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
            mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
            cfg.tracker = trk[t];
            errno = 0;
            mmh_heap *h = mmh_open(path, &cfg);
            int e = errno;
            CK(setrlimit(RLIMIT_NOFILE, &full) == 0);
            if (!h) {
                errno = e;
                CK(e == EMFILE);
                CK(strstr(mmh_errmsg(), "no error") == NULL);
                CK(strstr(mmh_errmsg(), dir) != NULL); /* the file or its directory */
                short_of_uffd |= strstr(mmh_errmsg(), "userfaultfd") != NULL ||
                                 strstr(mmh_errmsg(), "pagemap") != NULL;
                continue;
            }
            struct mmh_stats st = tu_stats(h);
            CK(st.tracker == MMH_TRACK_UFFD);
            CK(mmh_close(h) == 0);
            opened++;
        }
        if (opened == 2) {
            CK(short_of_uffd);
            return 0;
        }
    }
    fprintf(stderr, "no open succeeded with up to 64 descriptors\n");
    return 1;
}

static void test_uffd_probe_retried(void **state)
{
    (void)state;
    char *path = tu_path("probe.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    cfg.tracker = MMH_TRACK_UFFD;
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h) {
        assert_int_equal(errno, ENOTSUP);
        free(path);
        skip(); /* no uffd tracker on this kernel */
    }
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
    int st = tu_run_self((const char *[]){ "--fd-starved", tu_dir(), NULL });
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the fd-starved process failed (status %#x)", st);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--fd-starved") == 0)
        return fd_starved(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_incremental),
        cmocka_unit_test(test_trackers),
        cmocka_unit_test(test_tracker_contract),
        cmocka_unit_test(test_touch_mprotect),
        cmocka_unit_test(test_uffd_probe_retried),
    };
    return TU_RUN(tests);
}
