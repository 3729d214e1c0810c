/* Blocks of a persistent heap under valgrind's memcheck are checked like
 * malloc's (lib/instrument.h).  The test runs this program again under
 * valgrind:
 *
 *   test_memcheck bad HEAP     a leak, a use after free, a read of
 *                              uninitialised memory and a double free in a
 *                              heap file: each must be reported;
 *   test_memcheck clean HEAP   every kind of block, commits, a background
 *                              commit, a snapshot, close, reopen and use of
 *                              the blocks found there: no report at all.
 * Both with MMHEAP_OPTIONS=leaks: mmh_close searches the file for leaks.
 *
 * Linked to the library's objects, so valgrind runs the binary itself. */
#include "testutil.h"

#include <pthread.h>

/* ---- the programs valgrind runs ------------------------------------------ */

#define REQ(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); \
                               exit(2); } } while (0)

struct root {
    char *small, *large, *huge, *aligned, *zeroed, *grown, *moved, *from_thread;
};

static mmh_heap *open_heap(const char *path, unsigned flags)
{
    mmh_config cfg = { .flags = flags };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        fprintf(stderr, "mmh_open %s: %s\n", path, mmh_errmsg());
    REQ(h);
    return h;
}

/* The block is lost when this returns: nothing in the heap or the program
 * points to it (noinline: no copy of the pointer stays in the caller). */
static __attribute__((noinline)) void leak_block(mmh_heap *h)
{
    char *p = mmh_alloc(h, 200);
    REQ(p);
    memset(p, 'L', 200);
    __asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void use_after_free(mmh_heap *h)
{
    int *p = mmh_alloc(h, 64), *q = mmh_alloc(h, 64);
    REQ(p && q);
    p[0] = 1;
    mmh_free(h, p);
    fprintf(stderr, "read after free: %d\n", *(volatile int *)&p[0]);
    *(volatile int *)&p[5] = 2;
    mmh_free(h, q);
    mmh_free(h, p); /* a double free the allocator does not see: p is not the last freed */
}

static __attribute__((noinline)) void read_uninitialised(mmh_heap *h)
{
    int *p = mmh_alloc(h, 32);
    REQ(p);
    if (*(volatile int *)&p[1] == 42)
        fprintf(stderr, "uninitialised 42\n");
    mmh_free(h, p);
}

static int run_bad(const char *path)
{
    mmh_heap *h = open_heap(path, MMH_CREATE);
    struct root *r = mmh_calloc(h, 1, sizeof *r);
    REQ(r && mmh_set_root(h, r) == 0);
    r->small = mmh_alloc(h, 100); /* reachable from the root: no leak */
    REQ(r->small);
    leak_block(h);
    use_after_free(h);
    read_uninitialised(h);
    REQ(mmh_close(h) == 0);
    return 0;
}

static void *free_in_thread(void *arg)
{
    void **a = arg;
    mmh_free(a[0], a[1]); /* onto the owner's remote-free list */
    return NULL;
}

static void fill(char *p, size_t n, char c)
{
    memset(p, c, n);
}

static int same(const char *p, size_t n, char c)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

static int run_clean(const char *path)
{
    mmh_heap *h = open_heap(path, MMH_CREATE);
    struct root *r = mmh_calloc(h, 1, sizeof *r);
    REQ(r && mmh_set_root(h, r) == 0);
    r->small = mmh_alloc(h, 40);
    r->large = mmh_alloc(h, 300 << 10);
    r->huge = mmh_alloc(h, 6 << 20);
    r->aligned = mmh_aligned_alloc(h, 4096, 1000);
    r->zeroed = mmh_calloc(h, 1000, 8);
    r->grown = mmh_alloc(h, 200 << 10);
    r->moved = mmh_alloc(h, 24);
    REQ(r->small && r->large && r->huge && r->aligned && r->zeroed && r->grown && r->moved);
    fill(r->small, 40, 's');
    fill(r->large, 300 << 10, 'l');
    fill(r->huge, 6 << 20, 'h');
    fill(r->aligned, 1000, 'a');
    REQ(same(r->zeroed, 8000, 0));
    fill(r->grown, 200 << 10, 'g');
    fill(r->moved, 24, 'm');
    r->grown = mmh_realloc(h, r->grown, 600 << 10); /* in place: the span after it is free */
    r->moved = mmh_realloc(h, r->moved, 5000);
    REQ(r->grown && r->moved && same(r->grown, 200 << 10, 'g') && same(r->moved, 24, 'm'));
    fill(r->grown, 600 << 10, 'g');
    fill(r->moved, 5000, 'm');
    /* Churn through freed blocks and a remote free. */
    for (int round = 0; round < 3; round++) {
        char *v[300];
        for (int i = 0; i < 300; i++) {
            v[i] = mmh_alloc(h, (size_t)(16 + i * 7));
            REQ(v[i]);
            v[i][0] = (char)i;
        }
        for (int i = 0; i < 300; i++)
            mmh_free(h, v[i]);
    }
    r->from_thread = mmh_alloc(h, 48);
    void *arg[2] = { h, r->from_thread };
    pthread_t t;
    REQ(pthread_create(&t, NULL, free_in_thread, arg) == 0 && pthread_join(t, NULL) == 0);
    r->from_thread = mmh_alloc(h, 48); /* collects the remote free */
    REQ(r->from_thread);
    fill(r->from_thread, 48, 't');
    REQ(mmh_commit(h) == 0);
    REQ(mmh_commit_bg(h) == 0 && mmh_wait(h, 0) == 0);
    char snap[4096];
    snprintf(snap, sizeof snap, "%s.snap", path);
    REQ(mmh_snapshot(h, snap) == 0 && mmh_wait(h, 0) == 0);
    struct mmh_stats st;
    REQ(mmh_stats(h, &st) == 0);
    REQ(mmh_close(h) == 0);

    /* Reopened: the blocks found in the file are allocated and defined. */
    h = open_heap(path, 0);
    r = mmh_root(h);
    REQ(r && same(r->small, 40, 's') && same(r->large, 300 << 10, 'l') &&
       same(r->huge, 6 << 20, 'h') && same(r->aligned, 1000, 'a') &&
       same(r->zeroed, 8000, 0) && same(r->grown, 600 << 10, 'g') &&
       same(r->moved, 5000, 'm') && same(r->from_thread, 48, 't'));
    mmh_free(h, r->huge);
    mmh_free(h, r->small);
    r->huge = NULL;
    r->small = mmh_realloc(h, r->large, 100 << 10); /* shrinks in place */
    r->large = NULL;
    REQ(r->small && same(r->small, 100 << 10, 'l'));
    /* Segments made of the huge block's memory, their metadata in it. */
    char *v[40];
    for (int i = 0; i < 40; i++) {
        REQ(v[i] = mmh_alloc(h, 300 << 10));
        fill(v[i], 300 << 10, 'v');
    }
    for (int i = 0; i < 40; i++)
        mmh_free(h, v[i]);
    REQ(mmh_close(h) == 0);

    /* An anonymous heap's blocks die with it: no leak. */
    h = open_heap(NULL, 0);
    for (int i = 0; i < 10; i++)
        REQ(mmh_alloc(h, 64));
    REQ(mmh_close(h) == 0);
    h = open_heap(snap, MMH_READONLY);
    REQ(mmh_close(h) == 0);
    return 0;
}

/* ---- the tests -------------------------------------------------------------- */

static char logs[1 << 20];

/* Runs this program under memcheck in `mode`; its logs (the program's and
 * any child's) are gathered in `logs`.  The exit status. */
static int run_under_valgrind(const char *mode)
{
    char *dir = tu_mkdir(mode), logfile[PATH_MAX], heap[PATH_MAX];
    snprintf(logfile, sizeof logfile, "--log-file=%s/vg.%%p.log", dir);
    snprintf(heap, sizeof heap, "%s/heap", dir);
    /* allregs-at-mem-access: the mprotect tracker's SIGSEGV handler
     * resumes the faulting store (as in tests/valgrind.sh). */
    const char *argv[] = { "valgrind", "--vex-iropt-register-updates=allregs-at-mem-access",
                           "--leak-check=full", "--errors-for-leak-kinds=definite",
                           "--error-exitcode=99", "--child-silent-after-fork=no", logfile,
                           tu_self_exe(), mode, heap, NULL };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("MMHEAP_OPTIONS", "leaks", 1); /* blocks lost in a heap file are reported */
        execvp("valgrind", (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    logs[0] = 0;
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "cat %s/vg.*.log", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(logs, 1, sizeof logs - 1, f);
    logs[n] = 0;
    pclose(f);
    free(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void skip_without_valgrind(void)
{
#ifdef TU_ASAN
    fprintf(stderr, "test_memcheck: skipped: built with ASan, which valgrind cannot run\n");
    skip();
#endif
    if (system("valgrind --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_memcheck: skipped: valgrind is not installed\n");
        skip();
    }
}

/* Some report that starts with `what` names `fn` in its stack (a report
 * ends at valgrind's next empty line, "==PID== "). */
static void assert_reported(const char *what, const char *fn)
{
    for (const char *p = logs; (p = strstr(p, what)); p++) {
        const char *end = strstr(p, "== \n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char rec[4096];
        snprintf(rec, sizeof rec, "%.*s", (int)(len < sizeof rec - 1 ? len : sizeof rec - 1), p);
        if (strstr(rec, fn))
            return;
    }
    fprintf(stderr, "memcheck's logs:\n%s", logs);
    fail_msg("memcheck did not report \"%s\" in %s", what, fn);
}

static void test_bad_reported(void **state)
{
    (void)state;
    skip_without_valgrind();
    assert_int_equal(run_under_valgrind("bad"), 99);
    assert_reported("are definitely lost", "leak_block");
    assert_reported("Invalid read of size 4", "use_after_free");
    assert_reported("Invalid write of size 4", "use_after_free");
    assert_reported("Unaddressable byte(s) found during client check request", "mmh_free");
    assert_reported("depends on uninitialised value", "read_uninitialised");
    /* Only that one: the blocks reachable from the root are no leak. */
    const char *first = strstr(logs, "are definitely lost");
    assert_null(strstr(first + 1, "are definitely lost"));
}

static void test_clean_silent(void **state)
{
    (void)state;
    skip_without_valgrind();
    int rc = run_under_valgrind("clean");
    if (rc != 0 || strstr(logs, "ERROR SUMMARY: 0 errors") == NULL ||
        strstr(logs, "are definitely lost") != NULL)
        fail_msg("exit %d; memcheck logs:\n%s", rc, logs);
    for (const char *p = logs; (p = strstr(p, "ERROR SUMMARY: ")); p++)
        if (strncmp(p, "ERROR SUMMARY: 0 errors", 23) != 0)
            fail_msg("errors reported; memcheck logs:\n%s", logs);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "bad") == 0)
        return run_bad(argv[2]);
    if (argc == 3 && strcmp(argv[1], "clean") == 0)
        return run_clean(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_reported),
        cmocka_unit_test(test_clean_silent),
    };
    return TU_RUN(tests);
}
