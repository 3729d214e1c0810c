/* testutil.c: the part of the tests' helper library that calls no mmheap
 * function (tests/libtestutil.la; see testutil.h): scale, the program's
 * temporary directory and its heap files' check, files, child processes,
 * patterns, the RNG, intervals.
 */
#include "testutil.h"

#include <ftw.h>
#include <sched.h>
#include <sys/mount.h>

bool tu_heap_checks = true;

/* ------------------------------------------------------------------ scale */

double test_scale(void)
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

bool tu_under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

long tu_scaled(long n, long min)
{
    double v = (double)n * test_scale();
    long r = (long)v;
    return r < min ? min : r;
}

uint64_t tu_test_seed(uint64_t fallback)
{
    const char *s = getenv("MMH_TEST_SEED");
    return s ? strtoull(s, NULL, 0) : fallback;
}

/* ------------------------------------------------------- the program run */

static char tu_dir_buf[PATH_MAX];

/* Set by a heap file that fails its check: the group teardown fails. */
static int tu_check_failed;

/* The process and thread that run the tests (set by the group setup). */
static pid_t tu_test_pid;
static pthread_t tu_test_thread;

bool tu_in_test_thread(void)
{
    return tu_test_pid != 0 && getpid() == tu_test_pid &&
           pthread_equal(pthread_self(), tu_test_thread);
}

void tu_apply_filter(void)
{
    const char *f = getenv("MMH_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
    const char *s = getenv("MMH_TEST_SKIP");
    if (s && *s)
        cmocka_set_skip_filter(s);
}

int tu_group_setup(void **state)
{
    (void)state;
    tu_test_pid = getpid();
    tu_test_thread = pthread_self();
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

static int tu_check_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_F && S_ISREG(sb->st_mode))
        tu_check_heap_file(path);
    return 0;
}

static int tu_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

int tu_group_teardown(void **state)
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

/* ------------------------------------------------------ files and tools */

const char *tu_dir(void) { return tu_dir_buf; }

/* Every path tu_path handed out, in static memory: a forked child that
 * _exits while its parent's frame holds the path only in a register would
 * otherwise show it to valgrind as definitely lost. */
static char *volatile tu_paths_seen[64];
static unsigned tu_paths_next;

char *tu_path(const char *name)
{
    size_t n = strlen(tu_dir_buf) + strlen(name) + 2;
    char *p = (char *)malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", tu_dir_buf, name);
    if (access(p, F_OK) == 0)
        tu_check_heap_file(p); /* an earlier test's heap */
    unlink(p);
    tu_paths_seen[tu_paths_next++ % 64] = p;
    return p;
}

void tu_dir_join(char *buf, size_t size, const char *name)
{
    if ((size_t)snprintf(buf, size, "%s/%s", tu_dir_buf, name) >= size)
        fail_msg("path too long: %s/%s", tu_dir_buf, name);
}

char *tu_mkdir(const char *name)
{
    char *dir = tu_path(name);
    assert_int_equal(mkdir(dir, 0700), 0);
    return dir;
}

off_t tu_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return st.st_size;
}

int tu_write_file(const char *path, const void *data, size_t len)
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

void *tu_read_file(const char *path, size_t *len)
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

int tu_run_tool(const char *const args[], char *out, size_t size)
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

void tu_check_heap_file(const char *path)
{
    size_t n = strlen(path);
    if (!tu_heap_checks || (n > 8 && strcmp(path + n - 8, ".journal") == 0))
        return;
    static char out[16384];
    const char *args[] = { "check", "--max-problems", "20", path, NULL };
    int rc = tu_run_tool(args, out, sizeof out);
    if (rc == 0 || rc == 3 || rc == -2)
        return;
    fprintf(stderr, "mmheap check %s: exit %d\n%s", path, rc, out);
    tu_check_failed = 1;
}

/* --------------------------------------------------------- child process */

int tu_run_child(tu_child_fn fn, void *arg)
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

pid_t tu_fork_piped(int pfd[2], int newgroup)
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

char *tu_self_exe(void)
{
    static char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    return buf;
}

int tu_run_self(const char *const args[])
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

int tu_private_tmpfs(const char *dir, const char *opts)
{
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, opts) != 0)
        return -1;
    return 0;
}

void tu_run_tmpfs_child(tu_child_fn fn, const char *what)
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

uint64_t tu_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The pattern's 8 bytes at offset i8 (a multiple of 8) for mixed seed s. */
static uint64_t tu_word(uint64_t s, size_t i8)
{
    return s ^ ((uint64_t)i8 * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)i8 >> 7);
}

void tu_fill(void *p, size_t n, uint64_t seed)
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

size_t tu_check(const void *p, size_t n, uint64_t seed)
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

int tu_verify(const void *p, size_t n, uint64_t seed)
{
    return tu_check(p, n, seed) == (size_t)-1;
}

int tu_all_bytes(const void *p, size_t n, unsigned char b)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != b)
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ rng */

uint64_t tu_rand(tu_rng *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

size_t tu_rand_range(tu_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(tu_rand(r) % (uint64_t)(hi - lo + 1));
}

size_t tu_rand_log(tu_rng *r, size_t lo, size_t hi)
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

static int tu_span_cmp(const void *a, const void *b)
{
    const tu_span *x = (const tu_span *)a, *y = (const tu_span *)b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int tu_spans_overlap(const tu_span *s, size_t n, uintptr_t lo, uintptr_t hi)
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

long tu_spans_sort_check(tu_span *s, size_t n)
{
    qsort(s, n, sizeof *s, tu_span_cmp);
    for (size_t i = 1; i < n; i++)
        if (s[i].lo < s[i - 1].hi)
            return (long)i;
    return -1;
}
