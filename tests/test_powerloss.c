/* test_powerloss: the power-loss harness (tests/powerloss/) run against the
 * commit protocol.  A workload's every file change is recorded; crash
 * states under the power-loss model are built from the record and each is
 * opened and checked (harness.h).  Per tracker, no state may violate the
 * contract; with a sync removed from the protocol (an injected fault),
 * the harness must find violations; a failed sync that loses its unsynced
 * writes must lose nothing acknowledged.
 *
 * MMH_PL_STATES: states per run (make check-powerloss: thousands);
 * MMH_PL_REPORT: violations described on stderr; MMH_PL_FAILED_STEP: which
 * syncs test_failed_sync fails.  The crash states are
 * the harness's to check, so the suite's own heap checks are off. */
#include "testutil.h"
#include "powerloss/harness.h"

#include <time.h>

static unsigned env_unsigned(const char *name, unsigned dflt)
{
    const char *s = getenv(name);
    return s && *s ? (unsigned)strtoul(s, NULL, 10) : dflt;
}

static struct pl_result run(mmh_tracker tracker, const char *skip, unsigned fail_nth,
                            unsigned states)
{
    static const char *const names[] = { "auto", "uffd", "mprotect", "none" };
    const char *tool = getenv("MMH_MMHEAP_TOOL");
    if (!tool || !*tool)
        skip();
    if (tracker == MMH_TRACK_UFFD) { /* the kernel may not have it */
        mmh_config cfg = { .tracker = MMH_TRACK_UFFD };
        mmh_heap *h = (mmh_open)(NULL, &cfg);
        if (!h)
            skip();
        (mmh_close)(h);
    }
    struct pl_options o = { .tracker = tracker, .states = states, .skip_sync = skip,
                            .fail_sync = fail_nth, .report = env_unsigned("MMH_PL_REPORT", 3),
                            .seed = env_unsigned("MMH_TEST_SEED", 20240613) };
    struct pl_result r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pl_run(tu_dir(), tool, &o, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("powerloss: tracker %s%s%s%s: %u records (%u writes, %u syncs, %u directory syncs, "
           "%u punches, %u truncations, %u names), %u crash points, %u states checked "
           "(%u duplicates skipped; %u heap files checked, the rest as checked before), "
           "%u violations, %.1f s\n",
           names[tracker],
           !skip ? "" : skip[0] == '/' ? ", the directory sync after creating " : ", the syncs of ",
           !skip ? "" : skip + (skip[0] == '/'),
           skip ? " removed" : fail_nth ? ", a failing sync" : "", r.records, r.writes, r.syncs,
           r.dirsyncs, r.punches, r.truncs, r.links, r.points, r.states, r.duplicates,
           r.file_checks, r.violations,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return r;
}

static void sound(mmh_tracker tracker)
{
    struct pl_result r = run(tracker, NULL, 0, env_unsigned("MMH_PL_STATES", 100));
    /* The workload did what it is meant to exercise. */
    assert_true(r.punches > 0);
    assert_true(r.truncs > 0);
    assert_true(r.dirsyncs > 0);
    assert_true(r.states > 0);
    assert_int_equal(r.violations, 0);
}

static void test_uffd(void **state)
{
    (void)state;
    sound(MMH_TRACK_UFFD);
}

static void test_mprotect(void **state)
{
    (void)state;
    sound(MMH_TRACK_MPROTECT);
}

static void test_untracked(void **state)
{
    (void)state;
    sound(MMH_TRACK_NONE);
}

/* The proof that the harness can fail: the log's sync (the commit point)
 * and the heap file's syncs (creation, and a checkpoint's before it
 * advances the log's mark), each removed, must each show violations. */
static void test_without_log_sync(void **state)
{
    (void)state;
    assert_true(run(MMH_TRACK_MPROTECT, "heap.wal", 0, 100).violations > 0);
}

static void test_without_heap_sync(void **state)
{
    (void)state;
    assert_true(run(MMH_TRACK_MPROTECT, "heap", 0, 100).violations > 0);
}

/* The log a writable open creates beside a snapshot image must be durable
 * by name before the image's header names it: without the directory's
 * sync after its creation, power loss can take the log while the heap
 * names it, or the commits in it. */
static void test_without_log_dirsync(void **state)
{
    (void)state;
    assert_true(run(MMH_TRACK_MPROTECT, "/image.wal", 0, 100).violations > 0);
}

/* A sync that fails loses the writes it should have made durable; the
 * library must then never have acknowledged what they carried.  The
 * workload's syncs (some 260) fail in turn, every MMH_PL_FAILED_STEP-th
 * (make check: every 40th; make check-powerloss: every 7th), until one run
 * has no sync left to fail. */
static void test_failed_sync(void **state)
{
    (void)state;
    unsigned step = env_unsigned("MMH_PL_FAILED_STEP", 40), nth = 1;
    for (;; nth += step ? step : 1) {
        struct pl_result r = run(MMH_TRACK_MPROTECT, NULL, nth, 30);
        assert_int_equal(r.violations, 0);
        if (!r.failed_syncs)
            break;
        assert_int_equal(r.failed_syncs, 1);
    }
    assert_true(nth > 1); /* the first sync, at least, did fail */
}

int main(void)
{
    tu_heap_checks = false;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uffd),
        cmocka_unit_test(test_mprotect),
        cmocka_unit_test(test_untracked),
        cmocka_unit_test(test_without_log_sync),
        cmocka_unit_test(test_without_heap_sync),
        cmocka_unit_test(test_without_log_dirsync),
        cmocka_unit_test(test_failed_sync),
    };
    return TU_RUN(tests);
}
