/* Under AddressSanitizer (configure --enable-sanitizers, make
 * check-sanitizers) free blocks of a heap are poisoned: a child that uses
 * an mmh_alloc block after mmh_free, or frees it twice, is stopped with a
 * report.  Skipped in other builds. */
#include "testutil.h"

enum { USE_AFTER_FREE, DOUBLE_FREE, CLEAN };

#ifdef TU_ASAN

/* In the child: a heap file, a block freed, then `what`. */
static void child(const char *path, int what)
{
    mmh_config cfg = { .flags = MMH_CREATE };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        _exit(3);
    int *p = mmh_alloc(h, 64), *q = mmh_alloc(h, 64), *big = mmh_alloc(h, 200 << 10);
    if (!p || !q || !big)
        _exit(3);
    p[3] = big[1000] = 7;
    mmh_free(h, big);
    mmh_free(h, p);
    mmh_free(h, q); /* p is no longer the last freed: the allocator misses a double free */
    if (what == USE_AFTER_FREE)
        fprintf(stderr, "read after free: %d\n", *(volatile int *)&p[3]);
    else if (what == DOUBLE_FREE)
        mmh_free(h, p);
    else if (mmh_commit(h) != 0 || mmh_close(h) != 0) /* reads free blocks: no report */
        _exit(4);
    _exit(0);
}

/* Runs child(what) with its stderr in `out`; its wait status. */
static int run_child(int what, char *out, size_t size)
{
    char *path = tu_path(what == CLEAN ? "clean" : "bad");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], STDERR_FILENO);
        child(path, what);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t got;
    while (n < size - 1 && (got = read(pfd[0], out + n, size - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = 0;
    close(pfd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    free(path);
    return st;
}
#endif

static void assert_stopped(int what, const char *fn)
{
#ifndef TU_ASAN
    (void)what, (void)fn;
    fprintf(stderr, "test_asan: skipped: not built with AddressSanitizer "
                    "(configure --enable-sanitizers; make check-sanitizers runs it)\n");
    skip();
#else
    static char out[1 << 16];
    int st = run_child(what, out, sizeof out);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) != 0) && !WIFSIGNALED(st))
        fail_msg("the child was not stopped; its stderr:\n%s", out);
    if (!strstr(out, "use-after-poison") && !strstr(out, "heap-use-after-free"))
        fail_msg("no ASan report; the child's stderr:\n%s", out);
    if (!strstr(out, fn))
        fail_msg("the report does not name %s:\n%s", fn, out);
#endif
}

static void test_use_after_free(void **state)
{
    (void)state;
    assert_stopped(USE_AFTER_FREE, "child");
}

static void test_double_free(void **state)
{
    (void)state;
    assert_stopped(DOUBLE_FREE, "mmh_free");
}

static void test_clean(void **state)
{
    (void)state;
#ifndef TU_ASAN
    skip();
#else
    static char out[1 << 16];
    int st = run_child(CLEAN, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("status %#x; the child's stderr:\n%s", st, out);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_use_after_free),
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_clean),
    };
    return TU_RUN(tests);
}
