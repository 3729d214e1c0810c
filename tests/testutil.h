/* testutil.h: the mmheap cmocka tests' helper library and the macros that
 * must stay macros.
 *
 * mmh_open and mmh_close are redirected, by the two macros below, to
 * tu_open and tu_close, which check every heap a test opens:
 *  - every file heap, once closed, with `mmheap check` (the program
 *    MMH_MMHEAP_TOOL names; make check sets it): exit 0, or 3 for a file
 *    that is no heap at all (the tests of bad files make those); anything
 *    else fails the program at its group teardown;
 *  - in a --enable-debug build (MMH_DEBUG), every heap, right after it is
 *    opened and right before it is closed, with mmh_check, when the test's
 *    own thread calls (the heap is then its own): a problem fails the test.
 * (mmh_open) and (mmh_close), in parentheses, are the library's own.  A
 * program whose heaps are damaged on purpose sets tu_heap_checks to false;
 * a single test that damages one removes the file itself.
 *
 * The library, built only by make check, is in two parts:
 *  - tests/libtestutil.la (testutil.c) calls no mmheap function: the
 *    temporary directory, files, child processes, patterns, a small RNG,
 *    intervals.  test_malloc_dlopen, linked to no mmheap library, links
 *    only this part.
 *  - tests/libtestheap.la (testheap.c, testmalloc.c, jobutil.c) calls
 *    mmheap, through whichever library the program links: libmmheap,
 *    libmmheap-core or libmmheap-malloc.  It adds none of its own.
 *
 * C and C++ (test_malloc_cxx) include it.
 */
#ifndef MMHEAP_TESTUTIL_H
#define MMHEAP_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The system headers the tests share. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmheap.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* ------------------------------------------------------------------ scale */

/* MMH_TEST_SCALE (default 1.0, at most 100): scales long loops down under
 * valgrind. */
double test_scale(void);

/* n scaled by test_scale(), at least min. */
long tu_scaled(long n, long min);

/* Does the test run under valgrind (which preloads its vgpreload
 * libraries into the program)? */
bool tu_under_valgrind(void);

/* MMH_TEST_SEED if set, else fallback: a randomized test's failure says its
 * seed, and the seed replays it. */
uint64_t tu_test_seed(uint64_t fallback);

/* ------------------------------------------------------- the program run */

/* cmocka group setup and teardown: a fresh private directory per program
 * (under $TMPDIR or /tmp), whose files are checked and then removed
 * (MMH_TEST_KEEP=1 keeps them). */
int tu_group_setup(void **state);
int tu_group_teardown(void **state);

/* MMH_TEST_FILTER / MMH_TEST_SKIP: cmocka name patterns (e.g. "test_touch*")
 * choosing which tests of a program run; for debugging. */
void tu_apply_filter(void);

/* main(): run the group with the filters and the temporary directory. */
#define TU_RUN(tests) \
    (tu_apply_filter(), cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown))

/* Whether tu_open, tu_close and the group teardown check heaps (see the
 * top); true unless the program sets it false. */
extern bool tu_heap_checks;

/* Is the caller the test's own thread in the test's own process (not a
 * forked child, not another thread)?  Only there can a check fail the
 * test. */
bool tu_in_test_thread(void);

/* ------------------------------------------------------ files and tools */

/* The temporary directory. */
const char *tu_dir(void);

/* A path inside the temporary directory; a malloc'd string that the
 * caller frees.  A stale file of that name is checked and removed. */
char *tu_path(const char *name);

/* buf = the temporary directory + "/" + name, which must fit. */
void tu_dir_join(char *buf, size_t size, const char *name);

/* A fresh directory inside the temporary directory; caller frees. */
char *tu_mkdir(const char *name);

/* The file's size, -1 if it cannot be stat'ed. */
off_t tu_file_size(const char *path);

/* Writes len bytes as the whole file: 0, or -1 with errno. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Reads the whole file; *len gets its size.  Caller frees; NULL on error. */
void *tu_read_file(const char *path, size_t *len);

/* Runs the mmheap command (MMH_MMHEAP_TOOL) with args (NULL-terminated,
 * after argv[0]); its stdout and stderr go to out (size bytes,
 * NUL-terminated; NULL: discarded).  The exit status, -1 if it did not
 * exit, -2 without the variable. */
int tu_run_tool(const char *const args[], char *out, size_t size);

/* `mmheap check` of the file, unless tu_heap_checks is false or it is a
 * journal: exit 0 or 3 passes; anything else is reported on stderr and
 * fails the program at its group teardown. */
void tu_check_heap_file(const char *path);

/* ----------------------------------------------------------- heap helpers */

/* The heap wrappers; see the top. */
mmh_heap *tu_open(const char *path, const mmh_config *cfg);
int tu_close(mmh_heap *h);

#define mmh_open(path, cfg) tu_open(path, cfg)
#define mmh_close(h)        tu_close(h)

mmh_config tu_cfg(unsigned flags, size_t size, size_t max_size);

/* mmh_stats of h; a failure fails the test. */
struct mmh_stats tu_stats(mmh_heap *h);

/* Is [p, p+len) inside the heap? */
int tu_in_heap(const struct mmh_stats *st, const void *p, size_t len);

/* For checks in children: h's stats into *st and its root, or NULL unless
 * the root's len bytes lie inside the heap (a pointer to trust first). */
void *tu_root_in_heap(mmh_heap *h, size_t len, struct mmh_stats *st);

/* ------------------------------------------------------------ assertions */

#define assert_null_errno(expr, err) do {                                      \
        errno = 0;                                                             \
        void *tu_p_ = (void *)(expr);                                          \
        int tu_e_ = errno;                                                     \
        if (tu_p_ != NULL)                                                     \
            fail_msg("%s: expected NULL, got %p", #expr, tu_p_);               \
        if (tu_e_ != (err))                                                    \
            fail_msg("%s: errno %d (%s), expected %d (%s); errmsg: %s", #expr, \
                     tu_e_, strerror(tu_e_), (int)(err), strerror(err),        \
                     mmh_errmsg());                                            \
    } while (0)

#define assert_fail_errno(expr, err) do {                                      \
        errno = 0;                                                             \
        int tu_r_ = (int)(expr);                                               \
        int tu_e_ = errno;                                                     \
        if (tu_r_ != -1)                                                       \
            fail_msg("%s: expected -1, got %d", #expr, tu_r_);                 \
        if (tu_e_ != (err))                                                    \
            fail_msg("%s: errno %d (%s), expected %d (%s); errmsg: %s", #expr, \
                     tu_e_, strerror(tu_e_), (int)(err), strerror(err),        \
                     mmh_errmsg());                                            \
    } while (0)

#define assert_errmsg_contains(s) do {                                         \
        const char *tu_m_ = mmh_errmsg();                                      \
        if (tu_m_ == NULL)                                                     \
            fail_msg("mmh_errmsg() returned NULL");                            \
        if (strstr(tu_m_, (s)) == NULL)                                        \
            fail_msg("mmh_errmsg() \"%s\" does not contain \"%s\"", tu_m_, (s)); \
    } while (0)

/* --------------------------------------------------------- child process */

/* For code running in a forked child: report and return 1 on failure. */
#define CK(cond) do {                                                          \
        if (!(cond)) {                                                         \
            int ck_e_ = errno;                                                 \
            fprintf(stderr, "%s:%d: child check failed: %s "                   \
                    "(errno %d %s; errmsg: %s)\n", __FILE__, __LINE__, #cond,  \
                    ck_e_, strerror(ck_e_), mmh_errmsg());                     \
            return 1;                                                          \
        }                                                                      \
    } while (0)

typedef int (*tu_child_fn)(void *arg);

/* Forks, runs fn(arg) in the child, _exits with its result; returns the
 * wait status (or -1 if fork failed). */
int tu_run_child(tu_child_fn fn, void *arg);

#define assert_child_ok(fn, arg) do {                                          \
        int tu_st_ = tu_run_child((fn), (arg));                                \
        if (tu_st_ == -1)                                                      \
            fail_msg("fork/wait failed: %s", strerror(errno));                 \
        if (WIFSIGNALED(tu_st_))                                               \
            fail_msg("child %s killed by signal %d", #fn, WTERMSIG(tu_st_));   \
        if (!WIFEXITED(tu_st_) || WEXITSTATUS(tu_st_) != 0)                    \
            fail_msg("child %s exited with status %d", #fn,                    \
                     WEXITSTATUS(tu_st_));                                     \
    } while (0)

/* Forks a child that reports through a pipe (pfd[1] in the child, pfd[0] in
 * the parent; the other end closed).  Returns the pid, 0 in the child.
 * newgroup: the child leads a process group, so kill(-pid) takes its own
 * children (jobs) too. */
pid_t tu_fork_piped(int pfd[2], int newgroup);

/* This program's executable, to run it again as a fresh process image;
 * NULL if unknown. */
char *tu_self_exe(void);

/* Runs this program again with args (NULL-terminated, after argv[0]; at
 * most 6) in a new process and returns its wait status: a process that
 * shares nothing with this one's memory layout. */
int tu_run_self(const char *const args[]);

/* In a child: a private mount namespace with a tmpfs (mount options opts)
 * on dir, for a real full disk; -1 where that is not allowed (not root). */
int tu_private_tmpfs(const char *dir, const char *opts);

/* Runs fn(dir) in a child on a fresh directory "tmpfs" for it to mount
 * (tu_private_tmpfs); the child's exit status 77 skips the test. */
void tu_run_tmpfs_child(tu_child_fn fn, const char *what);

/* ------------------------------------------------------------- patterns */

/* A 64-bit mix (splitmix64's finalizer). */
uint64_t tu_mix(uint64_t x);

/* Byte i of the pattern depends only on (seed, i), so prefixes survive
 * realloc. */
void tu_fill(void *p, size_t n, uint64_t seed);

/* Returns the index of the first wrong byte, or (size_t)-1 if all match. */
size_t tu_check(const void *p, size_t n, uint64_t seed);

/* Do the n bytes hold the pattern? */
int tu_verify(const void *p, size_t n, uint64_t seed);

#define assert_pattern(p, n, seed) do {                                        \
        size_t tu_at_ = tu_check((p), (n), (seed));                            \
        if (tu_at_ != (size_t)-1)                                              \
            fail_msg("pattern mismatch at byte %zu of %zu (block %p)",         \
                     tu_at_, (size_t)(n), (void *)(p));                        \
    } while (0)

/* Are all n bytes b? */
int tu_all_bytes(const void *p, size_t n, unsigned char b);

/* ------------------------------------------------------------------ rng */

/* A small deterministic RNG (splitmix64); { seed } starts it. */
typedef struct { uint64_t s; } tu_rng;

uint64_t tu_rand(tu_rng *r);

/* uniform in [lo, hi] */
size_t tu_rand_range(tu_rng *r, size_t lo, size_t hi);

/* roughly log-uniform in [lo, hi], lo >= 1 */
size_t tu_rand_log(tu_rng *r, size_t lo, size_t hi);

/* ------------------------------------------------------------ intervals */

typedef struct { uintptr_t lo, hi; } tu_span;   /* [lo, hi) */

/* spans sorted by lo and pairwise disjoint; does [lo,hi) overlap any? */
int tu_spans_overlap(const tu_span *s, size_t n, uintptr_t lo, uintptr_t hi);

/* Sorts and checks that no two spans overlap; returns index of the first
 * overlapping pair or -1. */
long tu_spans_sort_check(tu_span *s, size_t n);

/* ------------------------------------------------------- drop-in malloc */

/* The drop-in malloc tests run linked to libmmheap-malloc (make check
 * defines MMH_TEST_DROPIN for them) and also against plain glibc, compiled
 * by hand with this library but without libmmheap-malloc, to test the
 * tests; checks that hold only for mmheap's allocator ask
 * tu_malloc_is_mmheap().  (testmalloc.c) */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

/* mmh_default_heap() where the process has it (libmmheap-malloc or
 * libmmheap loaded), else NULL: looked up at run time. */
mmh_heap *tu_malloc_heap(void);

/* Is malloc mmheap's: does a fresh block lie in the default heap? */
int tu_malloc_is_mmheap(void);

/* For main() of a drop-in test: 0 (the program exits 77, skipped) where a
 * sanitizer's runtime replaced malloc ahead of every library, as in the
 * ASan build of make check-sanitizers: its allocator is neither mmheap's
 * nor has glibc's semantics (aligned_alloc sizes, huge requests). */
int tu_malloc_testable(void);

/* Bytes in live malloc blocks (in_use) and bytes the allocator holds from
 * the system (footprint): mmh_stats of the default heap for mmheap,
 * mallinfo2 for glibc. */
void tu_malloc_usage(size_t *in_use, size_t *footprint);

#ifdef __cplusplus
}
#endif

/* Where make check linked the library, malloc must be mmheap's.  Inline:
 * it is the program's build that says so. */
static inline int tu_malloc_must_be_mmheap(void)
{
#ifdef MMH_TEST_DROPIN
    return 1;
#else
    return 0;
#endif
}

#endif /* MMHEAP_TESTUTIL_H */
