/* test_malloc_dlopen: libmmheap-malloc loaded at run time by a program that
 * is not linked to it.
 *
 * dlopen(RTLD_NOW | RTLD_LOCAL) leaves the process's malloc (glibc's) in
 * place; the library's malloc, free, realloc... are reached by dlsym and
 * used from several threads, and across fork.  The library must also take
 * pointers it never handed out: blocks glibc allocated before it was loaded
 * ("foreign" pointers) given to its free, realloc and malloc_usable_size.
 * Last, dlclose while a thread that used the library is still running.
 *
 * The library is $MMH_MALLOC_LIB (make check sets it), else
 * ../.libs/libmmheap-malloc.so beside this executable; without either the
 * program is skipped (77).
 */
#include "testutil.h"

#include <dlfcn.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

/* The library's entry points, by dlsym. */
static struct {
    void *handle;
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    size_t (*usable_size)(void *);
    mmh_heap *(*default_heap)(void);
    uint64_t (*offset)(mmh_heap *, const void *);
    int (*stats)(mmh_heap *, struct mmh_stats *);
    const char *(*errmsg)(void);
} lib;

/* testutil.h's reports call mmh_errmsg(); this program is linked to no
 * mmheap library, so the loaded library's answers. */
const char *mmh_errmsg(void)
{
    return lib.errmsg ? lib.errmsg() : "(library not loaded)";
}

static char lib_path[PATH_MAX];

/* The library's path; 0 if none is known. */
static int find_library(void)
{
    const char *env = getenv("MMH_MALLOC_LIB");
    if (env && *env) {
        snprintf(lib_path, sizeof lib_path, "%s", env);
        return 1;
    }
    char *exe = tu_self_exe();
    if (!exe)
        return 0;
    snprintf(lib_path, sizeof lib_path, "%s/../.libs/libmmheap-malloc.so", dirname(exe));
    return access(lib_path, R_OK) == 0;
}

static void *must_dlsym(const char *name)
{
    void *sym = dlsym(lib.handle, name);
    if (!sym) {
        fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());
        exit(1);
    }
    return sym;
}

static void load_library(void)
{
    lib.handle = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib.handle) {
        fprintf(stderr, "dlopen(%s): %s\n", lib_path, dlerror());
        exit(1);
    }
    *(void **)&lib.malloc = must_dlsym("malloc");
    *(void **)&lib.calloc = must_dlsym("calloc");
    *(void **)&lib.realloc = must_dlsym("realloc");
    *(void **)&lib.free = must_dlsym("free");
    *(void **)&lib.usable_size = must_dlsym("malloc_usable_size");
    *(void **)&lib.default_heap = must_dlsym("mmh_default_heap");
    *(void **)&lib.offset = must_dlsym("mmh_offset");
    *(void **)&lib.stats = must_dlsym("mmh_stats");
    *(void **)&lib.errmsg = must_dlsym("mmh_errmsg");
}

static int in_lib_heap(const void *p)
{
    return lib.offset(lib.default_heap(), p) != 0;
}

static uint64_t lib_allocations(void)
{
    struct mmh_stats st;
    assert_int_equal(lib.stats(lib.default_heap(), &st), 0);
    return st.allocations;
}

static uint64_t blk_seed(const void *p, size_t n)
{
    return (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull ^ n;
}

/* The library's functions work; the process's malloc stays glibc's. */
static void test_local_library(void **state)
{
    (void)state;
    /* RTLD_LOCAL: nothing of the library in the global scope */
    assert_null(dlsym(RTLD_DEFAULT, "mmh_default_heap"));
    uint64_t before = lib_allocations();

    char *mine = malloc(100);
    assert_non_null(mine);
    assert_false(in_lib_heap(mine));
    free(mine);

    const size_t sizes[] = { 1, 100, 5000, 200 * KiB, 3 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char *p = lib.malloc(n);
        assert_non_null(p);
        assert_true(in_lib_heap(p));
        assert_true(lib.usable_size(p) >= n);
        tu_fill(p, n, n);
        p = lib.realloc(p, 2 * n + 10);
        assert_non_null(p);
        assert_true(in_lib_heap(p));
        assert_pattern(p, n, n);
        lib.free(p);

        char *z = lib.calloc(n, 3);
        assert_non_null(z);
        assert_true(in_lib_heap(z));
        assert_true(tu_all_bytes(z, 3 * n, 0));
        lib.free(z);
    }
    assert_int_equal(lib_allocations(), before);
}

/* -------------------------------------------------------------- threads */

#define HANDOFF 2000

static char *handoff[HANDOFF];
static size_t handoff_len[HANDOFF];

static void *alloc_thread(void *arg)
{
    (void)arg;
    tu_rng rng = { 21 };
    for (int i = 0; i < HANDOFF; i++) {
        size_t n = tu_rand_log(&rng, 1, 32 * KiB);
        char *p = lib.malloc(n);
        if (!p || !in_lib_heap(p))
            return (void *)1;
        tu_fill(p, n, blk_seed(p, n));
        handoff[i] = p;
        handoff_len[i] = n;
    }
    return NULL;
}

/* Frees the odd blocks (the main thread frees the even ones). */
static void *free_thread(void *arg)
{
    (void)arg;
    for (int i = 1; i < HANDOFF; i += 2) {
        if (!tu_verify(handoff[i], handoff_len[i], blk_seed(handoff[i], handoff_len[i])))
            return (void *)1;
        lib.free(handoff[i]);
    }
    return NULL;
}

static void *churn_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        char *p = lib.malloc((size_t)i * 37 + 1);
        if (!p)
            return (void *)1;
        memset(p, i, (size_t)i * 37 + 1);
        lib.free(p);
    }
    return NULL;
}

static void join_ok(pthread_t th)
{
    void *ret = (void *)1;
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
}

static void test_threads(void **state)
{
    (void)state;
    uint64_t before = lib_allocations();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, alloc_thread, NULL), 0);
    join_ok(th);                        /* the allocating thread has exited */
    assert_int_equal(pthread_create(&th, NULL, free_thread, NULL), 0);
    for (int i = 0; i < HANDOFF; i += 2) {
        assert_pattern(handoff[i], handoff_len[i], blk_seed(handoff[i], handoff_len[i]));
        lib.free(handoff[i]);
    }
    join_ok(th);

    /* short-lived threads, some at once */
    for (int wave = 0; wave < 25; wave++) {
        pthread_t w[4];
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&w[i], NULL, churn_thread, NULL), 0);
        for (int i = 0; i < 4; i++)
            join_ok(w[i]);
    }
    assert_int_equal(lib_allocations(), before);
}

/* ----------------------------------------------------------------- fork */

static atomic_int churn_stop;

static void *churn_until_stopped(void *arg)
{
    (void)arg;
    while (!atomic_load(&churn_stop))
        if (churn_thread(NULL))
            return (void *)1;
    return NULL;
}

static int fork_child(void *arg)
{
    (void)arg;
    alarm(20);                          /* a deadlock fails, by SIGALRM */
    for (int i = 0; i < 300; i++) {
        size_t n = (size_t)(i % 60) * 500 + 1;
        char *p = lib.malloc(n);
        CK(p && in_lib_heap(p));
        memset(p, 1, n);
        lib.free(p);
    }
    pthread_t th;
    void *ret = (void *)1;
    CK(pthread_create(&th, NULL, churn_thread, NULL) == 0);
    CK(pthread_join(th, &ret) == 0 && ret == NULL);
    return 0;
}

static void test_fork(void **state)
{
    (void)state;
    atomic_store(&churn_stop, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_until_stopped, NULL), 0);
    for (long i = tu_scaled(10, 3); i > 0; i--)
        assert_child_ok(fork_child, NULL);
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < 2; i++)
        join_ok(th[i]);
}

/* ----------------------------------------------------- foreign pointers */

/* Blocks from glibc's malloc, which the library never saw, given to the
 * library: malloc_usable_size covers what was asked, realloc keeps the
 * contents, free and realloc(p, 0) do not crash.  A sanitizer's malloc
 * (not glibc's) is what the process uses in a sanitizer build: skipped
 * there. */
static void test_foreign_pointers(void **state)
{
    (void)state;
#ifdef TU_ASAN
    skip();
#endif
    const size_t sizes[] = { 1, 24, 1000, 100 * KiB, 2 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char *f = malloc(n);
        assert_non_null(f);
        assert_false(in_lib_heap(f));
        tu_fill(f, n, n + 1);
        size_t u = lib.usable_size(f);
        if (u < n)
            fail_msg("malloc_usable_size(foreign block of %zu bytes) = %zu", n, u);
        char *g = lib.realloc(f, 3 * n + 100);
        assert_non_null(g);
        assert_pattern(g, n, n + 1);
        memset(g + n, 0, 2 * n + 100);
        lib.free(g);

        f = malloc(n);                  /* freed by the library */
        assert_non_null(f);
        lib.free(f);
        f = calloc(n, 2);
        assert_non_null(f);
        assert_null(lib.realloc(f, 0));

        void *a = NULL;
        assert_int_equal(posix_memalign(&a, 4096, n), 0);
        lib.free(a);
    }
}

/* Foreign blocks freed through the library go back to glibc rather than
 * leak: glibc's count of bytes in use falls again.  Skipped where that
 * count does not see this process's malloc (valgrind's replaces it). */
static void test_foreign_free_returns_memory(void **state)
{
    (void)state;
#ifdef TU_ASAN
    skip();
#endif
    enum { N = 200 };
    const size_t n = 64 * KiB;
    char *f[N];
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < N; i++) {
        f[i] = malloc(n);
        assert_non_null(f[i]);
        memset(f[i], 1, n);
    }
    size_t held = mallinfo2().uordblks;
    if (held < before + N * n) {
        for (int i = 0; i < N; i++)
            free(f[i]);
        skip();
    }
    for (int i = 0; i < N; i++)
        lib.free(f[i]);
    size_t after = mallinfo2().uordblks;
    if (after > before + n)
        fail_msg("glibc's bytes in use: %zu before, %zu with the blocks, %zu after "
                 "the library freed them (leaked)", before, held, after);
}

/* ---------------------------------------------------------------- dlclose */

static sem_t used_lib, may_exit;

static void *plain_thread(void *arg)
{
    (void)arg;
    free(malloc(100));
    return NULL;
}

static void *uses_lib_then_waits(void *arg)
{
    (void)arg;
    lib.free(lib.malloc(100));
    sem_post(&used_lib);
    while (sem_wait(&may_exit) != 0)
        continue;
    return NULL;                        /* thread exit after the dlclose */
}

/* In a child, so that a crash is a failure report: dlclose the library
 * while a thread that used it still runs, then let the thread exit (its
 * thread-exit handling must not run unmapped code), run more threads, and
 * exit. */
static int dlclose_child(void *arg)
{
    (void)arg;
    alarm(20);
    pthread_t th;
    CK(sem_init(&used_lib, 0, 0) == 0 && sem_init(&may_exit, 0, 0) == 0);
    CK(pthread_create(&th, NULL, uses_lib_then_waits, NULL) == 0);
    while (sem_wait(&used_lib) != 0)
        continue;
    CK(dlclose(lib.handle) == 0);
    sem_post(&may_exit);
    CK(pthread_join(th, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        CK(pthread_create(&th, NULL, plain_thread, NULL) == 0);
        CK(pthread_join(th, NULL) == 0);
    }
    return 0;
}

static void test_dlclose(void **state)
{
    (void)state;
    assert_child_ok(dlclose_child, NULL);
}

int main(void)
{
    if (!find_library()) {
        fprintf(stderr, "libmmheap-malloc.so not found (set MMH_MALLOC_LIB)\n");
        return 77;
    }
    load_library();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_library),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_foreign_pointers),
        cmocka_unit_test(test_foreign_free_returns_memory),
        cmocka_unit_test(test_dlclose),
    };
    return TU_RUN(tests);
}
