/* testutil.h: helpers shared by the mmheap cmocka tests.
 *
 * Everything here is static inline so each test program includes what it
 * uses without warnings about unused functions.
 *
 *  - a per-program temporary directory (mkdtemp under $TMPDIR or /tmp),
 *    created by the group setup and removed with its contents by teardown;
 *  - fork-and-check: run a function in a child process and assert it exited 0
 *    (children must not use cmocka asserts: they use CK() and return 1);
 *  - a position-dependent byte pattern (fill/verify) whose byte i depends
 *    only on (seed, i), so prefixes survive realloc;
 *  - a small deterministic RNG with log-uniform sizes;
 *  - test_scale(): MMH_TEST_SCALE (default 1.0) for scaling long loops down
 *    under valgrind;
 *  - for the drop-in malloc tests: is malloc mmheap's, and how much memory
 *    does it hold.
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

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmheap.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* ------------------------------------------------------------------ scale */

static inline double test_scale(void)
{
    const char *s = getenv("MMH_TEST_SCALE");
    if (!s || !*s)
        return 1.0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v > 0.0))
        return 1.0;
    if (v > 100.0)
        v = 100.0;
    return v;
}

/* n scaled by test_scale(), at least min. */
static inline long tu_scaled(long n, long min)
{
    double v = (double)n * test_scale();
    long r = (long)v;
    return r < min ? min : r;
}

/* -------------------------------------------------------------- tmp dirs */

static char tu_dir_buf[PATH_MAX];

static inline const char *tu_dir(void) { return tu_dir_buf; }

static inline int tu_rm_cb(const char *path, const struct stat *sb, int flag,
                           struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

/* MMH_TEST_FILTER / MMH_TEST_SKIP: cmocka name patterns (e.g. "test_touch*")
 * choosing which tests of a program run; for debugging. */
static inline void tu_apply_filter(void)
{
    const char *f = getenv("MMH_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
    const char *s = getenv("MMH_TEST_SKIP");
    if (s && *s)
        cmocka_set_skip_filter(s);
}

/* ---------------------------------------------------------- mmheap check */

/* Runs the mmheap command (MMH_MMHEAP_TOOL, which make check sets) with
 * args (NULL-terminated, after argv[0]); its stdout and stderr go to out
 * (size bytes, NUL-terminated; NULL: discarded).  The exit status, -1 if it
 * did not exit, -2 without the variable. */
static inline int tu_run_tool(const char *const args[], char *out, size_t size)
{
    const char *tool = getenv("MMH_MMHEAP_TOOL");
    if (!tool || !*tool)
        return -2;
    const char *argv[16] = { tool };
    for (size_t i = 0; args[i] && i + 2 < 16; i++)
        argv[i + 1] = args[i];
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execv(tool, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t got = 0;
    char sink[4096];
    for (;;) {
        char *to = out && got + 1 < size ? out + got : sink;
        size_t room = out && got + 1 < size ? size - 1 - got : sizeof sink;
        ssize_t n = read(pfd[0], to, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (to != sink)
            got += (size_t)n;
    }
    close(pfd[0]);
    if (out && size)
        out[got] = 0;
    int st;
    if (pid < 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every heap file a test leaves behind must pass mmheap check: exit 0, or
 * 3 for a file that is no heap at all (the tests of bad files make those).
 * 1 (problems) or a crash fails the program.  A test that damages a heap's
 * metadata on purpose removes the file itself, or (a whole program)
 * defines TU_NO_HEAP_CHECK. */
static int tu_check_failed;

#ifdef TU_NO_HEAP_CHECK
#define TU_HEAP_CHECK 0
#else
#define TU_HEAP_CHECK 1
#endif

static inline void tu_check_heap_file(const char *path)
{
    size_t n = strlen(path);
    if (!TU_HEAP_CHECK || (n > 8 && strcmp(path + n - 8, ".journal") == 0))
        return;
    static char out[16384];
    const char *args[] = { "check", "--max-problems", "20", path, NULL };
    int rc = tu_run_tool(args, out, sizeof out);
    if (rc == 0 || rc == 3 || rc == -2)
        return;
    fprintf(stderr, "mmheap check %s: exit %d\n%s", path, rc, out);
    tu_check_failed = 1;
}

/* Every file heap a test opens is checked once it is closed: mmh_open and
 * mmh_close below are these. */
#define TU_HEAPS 64
static struct {
    mmh_heap *h;
    char      path[PATH_MAX];
} tu_heaps[TU_HEAPS];
static pthread_mutex_t tu_heaps_lock = PTHREAD_MUTEX_INITIALIZER;

static inline mmh_heap *tu_open_checked(const char *path, const mmh_config *cfg)
{
    mmh_heap *h = (mmh_open)(path, cfg);
    if (!h || !path || !getenv("MMH_MMHEAP_TOOL") || strlen(path) >= PATH_MAX)
        return h;
    pthread_mutex_lock(&tu_heaps_lock);
    for (int i = 0; i < TU_HEAPS; i++)
        if (!tu_heaps[i].h) {
            tu_heaps[i].h = h;
            strcpy(tu_heaps[i].path, path);
            break;
        }
    pthread_mutex_unlock(&tu_heaps_lock);
    return h;
}

static inline int tu_close_checked(mmh_heap *h)
{
    char path[PATH_MAX] = "";
    pthread_mutex_lock(&tu_heaps_lock);
    for (int i = 0; h && i < TU_HEAPS; i++)
        if (tu_heaps[i].h == h) {
            strcpy(path, tu_heaps[i].path);
            tu_heaps[i].h = NULL;
        }
    pthread_mutex_unlock(&tu_heaps_lock);
    int rc = (mmh_close)(h), err = errno;
    if (path[0] && access(path, F_OK) == 0)
        tu_check_heap_file(path);
    errno = err;
    return rc;
}

#define mmh_open(path, cfg) tu_open_checked(path, cfg)
#define mmh_close(h)        tu_close_checked(h)

static inline int tu_check_cb(const char *path, const struct stat *sb, int flag,
                              struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_F && S_ISREG(sb->st_mode))
        tu_check_heap_file(path);
    return 0;
}

/* cmocka group setup/teardown: a fresh private directory per program. */
static inline int tu_group_setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    if (!t || !*t)
        t = "/tmp";
    snprintf(tu_dir_buf, sizeof tu_dir_buf, "%s/mmheap-test.XXXXXX", t);
    if (!mkdtemp(tu_dir_buf)) {
        fprintf(stderr, "mkdtemp(%s): %s\n", tu_dir_buf, strerror(errno));
        return -1;
    }
    return 0;
}

static inline int tu_group_teardown(void **state)
{
    (void)state;
    if (tu_dir_buf[0])
        nftw(tu_dir_buf, tu_check_cb, 16, FTW_PHYS);
    if (tu_dir_buf[0] && !getenv("MMH_TEST_KEEP"))
        nftw(tu_dir_buf, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (tu_check_failed)
        fprintf(stderr, "mmheap check found problems in heap files this program left\n");
    return tu_check_failed ? -1 : 0;
}

/* main(): run the group with the filters and the temporary directory. */
#define TU_RUN(tests) \
    (tu_apply_filter(), cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown))

/* A path inside the temporary directory; returns a malloc'd string that the
 * caller frees.  Removes any stale file of that name. */
static char *volatile tu_paths_seen[64];   /* see tu_path */
static unsigned tu_paths_next;

static inline char *tu_path(const char *name)
{
    size_t n = strlen(tu_dir_buf) + strlen(name) + 2;
    char *p = (char *)malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", tu_dir_buf, name);
    if (access(p, F_OK) == 0)
        tu_check_heap_file(p); /* an earlier test's heap */
    unlink(p);
    /* Keep a copy of the pointer in static memory: a forked child that
     * _exits while its parent's frame holds the path only in a register
     * would otherwise show it to valgrind as definitely lost. */
    tu_paths_seen[tu_paths_next++ % 64] = p;
    return p;
}

/* buf = the temporary directory + "/" + name, which must fit. */
static inline void tu_dir_join(char *buf, size_t size, const char *name)
{
    if ((size_t)snprintf(buf, size, "%s/%s", tu_dir_buf, name) >= size)
        fail_msg("path too long: %s/%s", tu_dir_buf, name);
}

static inline off_t tu_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return st.st_size;
}

static inline int tu_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *c = (const char *)data;
    while (len) {
        ssize_t w = write(fd, c, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        c += w;
        len -= (size_t)w;
    }
    return close(fd);
}

/* Reads the whole file; *len gets its size.  Caller frees. */
static inline void *tu_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = (char *)malloc(n ? n : 1);
    size_t got = 0;
    while (buf && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (buf)
        *len = n;
    return buf;
}

/* ----------------------------------------------------------- heap helpers */

static inline mmh_config tu_cfg(unsigned flags, size_t size, size_t max_size)
{
    mmh_config c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    c.size = size;
    c.max_size = max_size;
    return c;
}

static inline struct mmh_stats tu_stats(mmh_heap *h)
{
    struct mmh_stats st;
    memset(&st, 0, sizeof st);
    int rc = mmh_stats(h, &st);
    if (rc != 0)
        fail_msg("mmh_stats failed: %s", mmh_errmsg());
    return st;
}

/* Is p inside [base, base+size) of the heap? */
static inline int tu_in_heap(const struct mmh_stats *st, const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    return a >= st->base && a + len <= st->base + st->size && a + len >= a;
}

/* For checks in children: h's stats into *st and its root, or NULL unless
 * the root's len bytes lie inside the heap (a pointer to trust first). */
static inline void *tu_root_in_heap(mmh_heap *h, size_t len, struct mmh_stats *st)
{
    if (mmh_stats(h, st) != 0)
        return NULL;
    void *r = mmh_root(h);
    return r && tu_in_heap(st, r, len) ? r : NULL;
}

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
static inline int tu_run_child(tu_child_fn fn, void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int rc = fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return st;
}

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

/* MMH_TEST_SEED if set, else fallback: a randomized test's failure says its
 * seed, and the seed replays it. */
static inline uint64_t tu_test_seed(uint64_t fallback)
{
    const char *s = getenv("MMH_TEST_SEED");
    return s ? strtoull(s, NULL, 0) : fallback;
}

/* Forks a child that reports through a pipe (pfd[1] in the child, pfd[0] in
 * the parent; the other end closed).  Returns the pid, 0 in the child.
 * newgroup: the child leads a process group, so kill(-pid) takes its own
 * children (jobs) too. */
static inline pid_t tu_fork_piped(int pfd[2], int newgroup)
{
    assert_int_equal(pipe(pfd), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (newgroup)
            setpgid(0, 0);
        close(pfd[0]);
        return 0;
    }
    if (newgroup)
        setpgid(pid, pid);
    close(pfd[1]);
    return pid;
}

/* This program's executable, to run it again as a fresh process image. */
static inline char *tu_self_exe(void)
{
    static char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    return buf;
}

/* Runs this program again with args (NULL-terminated, after argv[0]) in a
 * new process and returns its wait status: a process that shares nothing
 * with this one's memory layout. */
static inline int tu_run_self(const char *const args[])
{
    char *exe = tu_self_exe();
    assert_non_null(exe);
    const char *argv[8] = { exe };
    for (size_t i = 0; args[i]; i++) {
        assert_true(i + 2 < 8);
        argv[i + 1] = args[i];
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(exe, (char *const *)argv);
        _exit(126);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    return st;
}

/* A fresh directory inside the temporary directory; caller frees. */
static inline char *tu_mkdir(const char *name)
{
    char *dir = tu_path(name);
    assert_int_equal(mkdir(dir, 0700), 0);
    return dir;
}

/* In a child: a private mount namespace with a tmpfs (mount options opts)
 * on dir, for a real full disk; -1 where that is not allowed (not root). */
static inline int tu_private_tmpfs(const char *dir, const char *opts)
{
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, opts) != 0)
        return -1;
    return 0;
}

/* Runs fn(dir) in a child on a fresh directory "tmpfs" for it to mount
 * (tu_private_tmpfs); the child's exit status 77 skips the test. */
static inline void tu_run_tmpfs_child(tu_child_fn fn, const char *what)
{
    char *dir = tu_mkdir("tmpfs");
    int st = tu_run_child(fn, dir);
    rmdir(dir);
    free(dir);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        skip();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s child failed (status %#x)", what, st);
}

/* ------------------------------------------------------------- patterns */

static inline uint64_t tu_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline uint64_t tu_word(uint64_t s, size_t i8)
{
    return s ^ ((uint64_t)i8 * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)i8 >> 7);
}

/* Byte i of the pattern depends only on (seed, i). */
static inline void tu_fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *c = (unsigned char *)p;
    uint64_t s = tu_mix(seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = tu_word(s, i);
        memcpy(c + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = tu_word(s, i);
        memcpy(c + i, &v, n - i);
    }
}

/* Returns the index of the first wrong byte, or (size_t)-1 if all match. */
static inline size_t tu_check(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *c = (const unsigned char *)p;
    uint64_t s = tu_mix(seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = tu_word(s, i), w;
        memcpy(&w, c + i, 8);
        if (v != w)
            goto slow;
    }
    if (i < n) {
        uint64_t v = tu_word(s, i);
        if (memcmp(c + i, &v, n - i) != 0)
            goto slow;
    }
    return (size_t)-1;
slow:
    for (size_t k = i; k < n && k < i + 8; k++) {
        uint64_t v = tu_word(s, k & ~(size_t)7);
        unsigned char b = (unsigned char)(v >> ((k & 7) * 8));
        if (c[k] != b)
            return k;
    }
    return i;
}

static inline int tu_verify(const void *p, size_t n, uint64_t seed)
{
    return tu_check(p, n, seed) == (size_t)-1;
}

#define assert_pattern(p, n, seed) do {                                        \
        size_t tu_at_ = tu_check((p), (n), (seed));                            \
        if (tu_at_ != (size_t)-1)                                              \
            fail_msg("pattern mismatch at byte %zu of %zu (block %p)",         \
                     tu_at_, (size_t)(n), (void *)(p));                        \
    } while (0)

static inline int tu_all_bytes(const void *p, size_t n, unsigned char b)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != b)
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ rng */

typedef struct { uint64_t s; } tu_rng;

static inline uint64_t tu_rand(tu_rng *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi] */
static inline size_t tu_rand_range(tu_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(tu_rand(r) % (uint64_t)(hi - lo + 1));
}

/* roughly log-uniform in [lo, hi], lo >= 1 */
static inline size_t tu_rand_log(tu_rng *r, size_t lo, size_t hi)
{
    unsigned hb = 0;
    while (hb < 63 && ((size_t)1 << (hb + 1)) <= hi)
        hb++;
    unsigned b = (unsigned)(tu_rand(r) % (hb + 1));
    size_t top = (size_t)1 << b;
    size_t v = top + (size_t)(tu_rand(r) % top);   /* [2^b, 2^(b+1)) */
    if (v > hi)
        v = hi;
    if (v < lo)
        v = lo;
    return v;
}

/* ------------------------------------------------------------ intervals */

typedef struct { uintptr_t lo, hi; } tu_span;   /* [lo, hi) */

static inline int tu_span_cmp(const void *a, const void *b)
{
    const tu_span *x = (const tu_span *)a, *y = (const tu_span *)b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* spans sorted by lo and pairwise disjoint; does [lo,hi) overlap any? */
static inline int tu_spans_overlap(const tu_span *s, size_t n, uintptr_t lo,
                                   uintptr_t hi)
{
    size_t a = 0, b = n;          /* first span with s.lo >= hi */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s[m].lo < hi)
            a = m + 1;
        else
            b = m;
    }
    /* candidates: spans before index a; the one with largest lo < hi */
    if (a == 0)
        return 0;
    return s[a - 1].hi > lo;
}

/* Sorts and checks that no two spans overlap; returns index of the first
 * overlapping pair or -1. */
static inline long tu_spans_sort_check(tu_span *s, size_t n)
{
    qsort(s, n, sizeof *s, tu_span_cmp);
    for (size_t i = 1; i < n; i++)
        if (s[i].lo < s[i - 1].hi)
            return (long)i;
    return -1;
}

/* ------------------------------------------------------- drop-in malloc */

/* The drop-in malloc tests run linked to libmmheap-malloc (make check
 * defines MMH_TEST_DROPIN for them) and also against plain glibc, compiled
 * by hand without that library, to test the tests; checks that hold only
 * for mmheap's allocator ask tu_malloc_is_mmheap(). */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

/* mmh_default_heap() where the process has it (libmmheap-malloc or
 * libmmheap loaded), else NULL: looked up at run time, so the same source
 * also links without the library. */
static inline mmh_heap *tu_malloc_heap(void)
{
    mmh_heap *(*fn)(void);
    *(void **)&fn = dlsym(RTLD_DEFAULT, "mmh_default_heap");
    return fn ? fn() : NULL;
}

/* Is malloc mmheap's: does a fresh block lie in the default heap? */
static inline int tu_malloc_is_mmheap(void)
{
    mmh_heap *h = tu_malloc_heap();
    if (!h)
        return 0;
    void *probe = malloc(1);
    int in = mmh_offset(h, probe) != 0;
    free(probe);
    return in;
}

/* For main() of a drop-in test: 0 (the program exits 77, skipped) where a
 * sanitizer's runtime replaced malloc ahead of every library, as in the
 * ASan build of make check-sanitizers: its allocator is neither mmheap's
 * nor has glibc's semantics (aligned_alloc sizes, huge requests). */
static inline int tu_malloc_testable(void)
{
#ifdef TU_ASAN
    fprintf(stderr, "malloc is AddressSanitizer's here: nothing to test\n");
    return 0;
#else
    return 1;
#endif
}

/* Where make check linked the library, malloc must be mmheap's. */
static inline int tu_malloc_must_be_mmheap(void)
{
#ifdef MMH_TEST_DROPIN
    return 1;
#else
    return 0;
#endif
}

/* Bytes in live malloc blocks (in_use) and bytes the allocator holds from
 * the system (footprint): mmh_stats of the default heap for mmheap,
 * mallinfo2 for glibc. */
static inline void tu_malloc_usage(size_t *in_use, size_t *footprint)
{
    if (tu_malloc_is_mmheap()) {
        struct mmh_stats st = tu_stats(tu_malloc_heap());
        *in_use = st.allocated;
        *footprint = st.size;
    } else {
        struct mallinfo2 mi = mallinfo2();
        *in_use = mi.uordblks + mi.hblkhd;
        *footprint = mi.arena + mi.hblkhd;
    }
}

#endif /* MMHEAP_TESTUTIL_H */
