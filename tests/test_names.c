/* test_names: the table of names in the heap (mmh_name_set, mmh_name_get,
 * mmh_name_each).
 *
 * Names are checked against a model: each named block holds a tag that says
 * which name and which generation of it the block was made for, so a lookup
 * that returns a stale or foreign block is caught, not only a missing one.
 * The table lives in the heap and commits with it: names survive a close,
 * vanish with a crash before their commit, resolve after relocation, and
 * give their memory back when removed.
 */
#include "testutil.h"

#include <signal.h>
#include <sys/mman.h>

/* What a named block holds: the name's index and generation, and a pattern
 * derived from both. */
struct tagged {
    uint64_t id;
    uint64_t gen;
    unsigned char fill[48];
};

static uint64_t tag_seed(uint64_t id, uint64_t gen) { return id * 7919 + gen; }

static struct tagged *new_tagged(mmh_heap *h, uint64_t id, uint64_t gen)
{
    struct tagged *t = mmh_alloc(h, sizeof *t);
    if (t) {
        t->id = id;
        t->gen = gen;
        tu_fill(t->fill, sizeof t->fill, tag_seed(id, gen));
    }
    return t;
}

/* Names a new block tagged (id, gen): mmh_name_set's result, or -1 when
 * the allocation failed.  For children too. */
static int name_new(mmh_heap *h, const char *name, uint64_t id, uint64_t gen)
{
    struct tagged *t = new_tagged(h, id, gen);
    return t ? mmh_name_set(h, name, t) : -1;
}

/* Does p hold the tag (id, gen)?  For children too: no cmocka. */
static int is_tagged(const void *p, uint64_t id, uint64_t gen)
{
    const struct tagged *t = p;
    return t && t->id == id && t->gen == gen &&
           tu_verify(t->fill, sizeof t->fill, tag_seed(id, gen));
}

/* mmh_name_get(h, name) is the block tagged (id, gen). */
#define assert_named(h, name, id, gen) do {                                    \
        void *an_p_ = mmh_name_get((h), (name));                               \
        if (!an_p_)                                                            \
            fail_msg("name \"%s\" missing: %s", (name), mmh_errmsg());         \
        if (!is_tagged(an_p_, (id), (gen)))                                    \
            fail_msg("name \"%s\" names the wrong block %p", (name), an_p_);   \
    } while (0)

#define assert_unnamed(h, name) assert_null_errno(mmh_name_get((h), (name)), ENOENT)

/* A fresh file heap in the test directory; *path gets its malloc'd path. */
static mmh_heap *new_heap(const char *file, char **path)
{
    *path = tu_path(file);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(*path, &cfg);
    if (!h)
        fail_msg("creating %s: %s", *path, mmh_errmsg());
    return h;
}

static mmh_heap *reopen(const char *path, unsigned flags)
{
    mmh_config cfg = tu_cfg(flags, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        fail_msg("reopening %s: %s", path, mmh_errmsg());
    return h;
}

static void drop_heap(char *path)
{
    unlink(path);
    free(path);
}

/* ------------------------------------------------------------- basics */

static void set_get_replace_remove(mmh_heap *h)
{
    struct tagged *a = new_tagged(h, 1, 1), *b = new_tagged(h, 1, 2);
    assert_non_null(a);
    assert_non_null(b);
    assert_unnamed(h, "obj");
    assert_int_equal(mmh_name_set(h, "obj", a), 0);
    assert_named(h, "obj", 1, 1);
    /* a second name for the same block is a name of its own */
    assert_int_equal(mmh_name_set(h, "alias", a), 0);
    assert_ptr_equal(mmh_name_get(h, "alias"), a);
    /* replacing leaves the other name alone */
    assert_int_equal(mmh_name_set(h, "obj", b), 0);
    assert_named(h, "obj", 1, 2);
    assert_ptr_equal(mmh_name_get(h, "alias"), a);
    /* removing, and removing again, succeed */
    assert_int_equal(mmh_name_set(h, "obj", NULL), 0);
    assert_unnamed(h, "obj");
    assert_int_equal(mmh_name_set(h, "obj", NULL), 0);
    assert_int_equal(mmh_name_set(h, "never-set", NULL), 0);
    assert_ptr_equal(mmh_name_get(h, "alias"), a);
    /* a removed name can come back */
    assert_int_equal(mmh_name_set(h, "obj", a), 0);
    assert_ptr_equal(mmh_name_get(h, "obj"), a);
    /* names are not the root */
    assert_null(mmh_root(h));
    assert_int_equal(mmh_name_set(h, "obj", NULL), 0);
    assert_int_equal(mmh_name_set(h, "alias", NULL), 0);
    mmh_free(h, a);
    mmh_free(h, b);
}

static void test_set_get_file(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("basic.heap", &path);
    set_get_replace_remove(h);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

static void test_set_get_anonymous(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    set_get_replace_remove(h);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
}

/* Names of 0, 1 and MMH_NAME_MAX bytes are names; one byte more is not.
 * Prefixes of a name are other names. */
static void test_name_lengths(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("lengths.heap", &path);
    char longest[MMH_NAME_MAX + 2];
    memset(longest, 'x', sizeof longest);
    longest[MMH_NAME_MAX] = '\0';
    char shorter[MMH_NAME_MAX];            /* MMH_NAME_MAX - 1 bytes */
    memset(shorter, 'x', sizeof shorter);
    shorter[MMH_NAME_MAX - 1] = '\0';
    const char *names[] = { "", "x", "xx", shorter, longest };
    const size_t n = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(name_new(h, names[i], i, 0), 0);
    }
    for (size_t i = 0; i < n; i++)
        assert_named(h, names[i], i, 0);

    char too_long[MMH_NAME_MAX + 2];
    memset(too_long, 'x', sizeof too_long);
    too_long[MMH_NAME_MAX + 1] = '\0';     /* MMH_NAME_MAX + 1 bytes */
    void *p = mmh_name_get(h, longest);
    assert_fail_errno(mmh_name_set(h, too_long, p), ENAMETOOLONG);
    assert_fail_errno(mmh_name_set(h, too_long, NULL), ENAMETOOLONG);
    assert_null_errno(mmh_name_get(h, too_long), ENAMETOOLONG);
    /* a much longer one too (no length field wraps) */
    size_t huge = 70000;
    char *big = malloc(huge + 1);
    assert_non_null(big);
    memset(big, 'x', huge);
    big[huge] = '\0';
    assert_fail_errno(mmh_name_set(h, big, p), ENAMETOOLONG);
    assert_null_errno(mmh_name_get(h, big), ENAMETOOLONG);
    free(big);

    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    h = reopen(path, 0);
    for (size_t i = 0; i < n; i++)
        assert_named(h, names[i], i, 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* Binary name c of generation gen: 1, the byte c alone; 2, MMH_NAME_MAX
 * bytes, 0xff but the last, which is c. */
static const char *binary_name(char *buf, int c, int gen)
{
    size_t len = gen == 1 ? 1 : MMH_NAME_MAX;
    memset(buf, 0xff, len - 1);
    buf[len - 1] = (char)c;
    buf[len] = '\0';
    return buf;
}

/* A name is bytes, any but NUL: every one-byte name, and names that differ
 * only in a high byte or in their last byte. */
static void test_binary_names(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("binary.heap", &path);
    char name[MMH_NAME_MAX + 1];
    for (int gen = 1; gen <= 2; gen++)
        for (int c = 1; c < 256; c++)
            assert_int_equal(name_new(h, binary_name(name, c, gen), (uint64_t)c, gen), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = reopen(path, 0);
    for (int gen = 1; gen <= 2; gen++)
        for (int c = 1; c < 256; c++)
            assert_named(h, binary_name(name, c, gen), (uint64_t)c, (uint64_t)gen);
    /* the NUL ends the name: what follows it is not part of it */
    assert_named(h, "A\0B", 'A', 1);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* The reasons name what is at fault: the missing name, the limit a name
 * passes, the pointer that is no block. */
static void test_reasons(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_unnamed(h, "no-such-name");
    assert_errmsg_contains("\"no-such-name\"");
    char too_long[MMH_NAME_MAX + 2];
    memset(too_long, 'y', sizeof too_long);
    too_long[MMH_NAME_MAX + 1] = '\0';
    assert_null_errno(mmh_name_get(h, too_long), ENAMETOOLONG);
    assert_errmsg_contains("255");
    assert_fail_errno(mmh_name_set(h, too_long, NULL), ENAMETOOLONG);
    assert_errmsg_contains("255");
    int local;
    char hex[32];
    snprintf(hex, sizeof hex, "%p", (void *)&local);
    assert_fail_errno(mmh_name_set(h, "x", &local), EINVAL);
    assert_errmsg_contains(hex);
    assert_int_equal(mmh_close(h), 0);
}

static int count_names(const char *name, void *p, void *arg)
{
    (void)name;
    (void)p;
    ++*(long *)arg;
    return 0;
}

/* EINVAL for NULL arguments and for pointers that are not blocks of the
 * heap; the table is left as it was. */
static void test_bad_arguments(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("args.heap", &path);
    struct tagged *t = new_tagged(h, 1, 1);
    assert_non_null(t);
    assert_int_equal(mmh_name_set(h, "kept", t), 0);
    long calls = 0;

    assert_fail_errno(mmh_name_set(NULL, "x", t), EINVAL);
    assert_fail_errno(mmh_name_set(h, NULL, t), EINVAL);
    assert_fail_errno(mmh_name_set(h, NULL, NULL), EINVAL);
    assert_null_errno(mmh_name_get(NULL, "kept"), EINVAL);
    assert_null_errno(mmh_name_get(h, NULL), EINVAL);
    assert_fail_errno(mmh_name_each(NULL, count_names, &calls), EINVAL);
    assert_fail_errno(mmh_name_each(h, NULL, &calls), EINVAL);
    assert_int_equal(calls, 0);

    /* not blocks of h: outside any heap, the header, inside a block,
     * misaligned, and a block of another heap */
    int local;
    char *m = malloc(64);
    assert_non_null(m);
    char *big = mmh_alloc(h, 200 * KiB);   /* a large block */
    char *small = mmh_alloc(h, 256);       /* a block of a small page */
    assert_non_null(big);
    assert_non_null(small);
    mmh_heap *h2 = mmh_open(NULL, NULL);
    assert_non_null(h2);
    void *other = mmh_alloc(h2, 64);
    assert_non_null(other);
    void *not_blocks[] = {
        &local, m, (void *)(uintptr_t)tu_stats(h).base, big + 4096, big + 16,
        small + 16, small + 1, (char *)t + 8, other,
    };
    for (size_t i = 0; i < sizeof not_blocks / sizeof not_blocks[0]; i++) {
        errno = 0;
        int rc = mmh_name_set(h, "bad", not_blocks[i]);
        if (rc != -1 || errno != EINVAL)
            fail_msg("mmh_name_set(\"bad\", not_blocks[%zu] = %p): %d, errno %d (%s), "
                     "not -1 and EINVAL", i, not_blocks[i], rc, errno, strerror(errno));
        assert_unnamed(h, "bad");
        /* a refused replacement leaves the old block named */
        assert_fail_errno(mmh_name_set(h, "kept", not_blocks[i]), EINVAL);
        assert_named(h, "kept", 1, 1);
    }
    mmh_free(h2, other);
    assert_int_equal(mmh_close(h2), 0);
    free(m);
    mmh_free(h, big);
    mmh_free(h, small);

    assert_int_equal(mmh_name_each(h, count_names, &calls), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* A read-only heap's names can be read, not changed. */
static void test_readonly(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("ro.heap", &path);
    assert_int_equal(name_new(h, "five", 5, 1), 0);
    assert_int_equal(mmh_close(h), 0);

    h = reopen(path, MMH_READONLY);
    assert_named(h, "five", 5, 1);
    assert_unnamed(h, "six");
    void *p = mmh_name_get(h, "five");
    assert_fail_errno(mmh_name_set(h, "six", p), EROFS);
    assert_fail_errno(mmh_name_set(h, "five", p), EROFS);
    assert_fail_errno(mmh_name_set(h, "five", NULL), EROFS);
    assert_named(h, "five", 5, 1);
    long calls = 0;
    assert_int_equal(mmh_name_each(h, count_names, &calls), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* ------------------------------------------------------------ the walk */

#define EACH_N 1000

static void name_of(char *buf, size_t size, const char *prefix, long i)
{
    snprintf(buf, size, "%s%ld", prefix, i);
}

/* Parses "e<i>"; -1 for anything else. */
static long each_index(const char *name)
{
    char *end;
    if (name[0] != 'e')
        return -1;
    long i = strtol(name + 1, &end, 10);
    return *end == '\0' && i >= 0 && i < EACH_N ? i : -1;
}

struct walk {
    mmh_heap *h;
    int       seen[EACH_N];
    long      calls;
    long      stop_after;     /* return stop_with at this call; 0: never */
    int       stop_with;
    int       set_err;        /* errno of mmh_name_set from inside fn */
    int       set_rc;
    int       get_ok;         /* mmh_name_get from inside fn worked */
};

static int walk_fn(const char *name, void *p, void *arg)
{
    struct walk *w = arg;
    long i = each_index(name);
    w->calls++;
    if (i < 0 || !is_tagged(p, (uint64_t)i, 0))
        return -100;          /* a foreign name, or the wrong block */
    w->seen[i]++;
    return w->calls == w->stop_after ? w->stop_with : 0;
}

/* Tries to change the table from inside the walk. */
static int walk_fn_setter(const char *name, void *p, void *arg)
{
    struct walk *w = arg;
    errno = 0;
    w->set_rc = mmh_name_set(w->h, "added-in-walk", p);
    w->set_err = errno;
    w->get_ok = mmh_name_get(w->h, name) == p;
    return 1;
}

static void test_each(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("each.heap", &path);
    struct walk *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->h = h;
    /* an empty table: no calls */
    assert_int_equal(mmh_name_each(h, walk_fn, w), 0);
    assert_int_equal(w->calls, 0);

    char name[32];
    for (long i = 0; i < EACH_N; i++) {
        name_of(name, sizeof name, "e", i);
        assert_int_equal(name_new(h, name, (uint64_t)i, 0), 0);
    }
    /* every name once */
    assert_int_equal(mmh_name_each(h, walk_fn, w), 0);
    assert_int_equal(w->calls, EACH_N);
    for (long i = 0; i < EACH_N; i++)
        if (w->seen[i] != 1)
            fail_msg("name e%ld visited %d times", i, w->seen[i]);

    /* stopped at the 10th call, returning fn's value, negative too */
    int stops[] = { 7, -3 };
    for (int k = 0; k < 2; k++) {
        memset(w->seen, 0, sizeof w->seen);
        w->calls = 0;
        w->stop_after = 10;
        w->stop_with = stops[k];
        assert_int_equal(mmh_name_each(h, walk_fn, w), stops[k]);
        assert_int_equal(w->calls, 10);
    }

    /* set from inside the walk: EDEADLK; get works; nothing was added */
    assert_int_equal(mmh_name_each(h, walk_fn_setter, w), 1);
    assert_int_equal(w->set_rc, -1);
    assert_int_equal(w->set_err, EDEADLK);
    assert_true(w->get_ok);
    assert_unnamed(h, "added-in-walk");
    /* and after it, setting works again */
    void *e0 = mmh_name_get(h, "e0");
    assert_int_equal(mmh_name_set(h, "added-after-walk", e0), 0);
    assert_ptr_equal(mmh_name_get(h, "added-after-walk"), e0);

    free(w);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* ------------------------------------------------------------- threads */

#define THREADS 4

struct thread_arg {
    mmh_heap *h;
    long      id, n;
    int       ok;
};

/* Each thread names its own blocks, checks, replaces half, removes a third:
 * the table is shared, the names are not. */
static void *names_thread(void *p)
{
    struct thread_arg *a = p;
    char name[32];
    a->ok = 0;
    for (int gen = 1; gen <= 2; gen++)
        for (long i = 0; i < a->n; i += gen) {
            snprintf(name, sizeof name, "t%ld-%ld", a->id, i);
            void *old = mmh_name_get(a->h, name);
            if (name_new(a->h, name, (uint64_t)(a->id * a->n + i), (uint64_t)gen) != 0)
                return NULL;
            mmh_free(a->h, old);
        }
    for (long i = 0; i < a->n; i += 3) {
        snprintf(name, sizeof name, "t%ld-%ld", a->id, i);
        void *old = mmh_name_get(a->h, name);
        if (mmh_name_set(a->h, name, NULL) != 0)
            return NULL;
        mmh_free(a->h, old);
    }
    a->ok = 1;
    return NULL;
}

/* Walks while the others write: every name it sees is a thread's. */
static int any_name(const char *name, void *p, void *arg)
{
    (void)p;
    ++*(long *)arg;
    return name[0] == 't' ? 0 : -2;
}

static void test_threads(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("threads.heap", &path);
    struct thread_arg a[THREADS];
    pthread_t t[THREADS];
    long n = tu_scaled(5000, 200);
    for (long k = 0; k < THREADS; k++) {
        a[k] = (struct thread_arg){ h, k, n, 0 };
        assert_int_equal(pthread_create(&t[k], NULL, names_thread, &a[k]), 0);
    }
    for (int walks = 0; walks < 20; walks++) {
        long seen = 0;
        assert_int_equal(mmh_name_each(h, any_name, &seen), 0);
    }
    for (long k = 0; k < THREADS; k++) {
        assert_int_equal(pthread_join(t[k], NULL), 0);
        assert_true(a[k].ok);
    }
    char name[32];
    for (long k = 0; k < THREADS; k++)
        for (long i = 0; i < n; i++) {
            snprintf(name, sizeof name, "t%ld-%ld", k, i);
            if (i % 3 == 0)
                assert_unnamed(h, name);
            else
                assert_named(h, name, (uint64_t)(k * n + i), i % 2 == 0 ? 2 : 1);
        }
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* A child and a grandchild of a process that uses the table change it:
 * the table's lock is usable on both sides of each fork (a lock taken by
 * the fork handlers and let go wrongly in the child hangs there: the
 * alarm ends that). */
static int fork_child(void *arg)
{
    mmh_heap *h = arg;
    alarm(20);
    CK(name_new(h, "child", 2, 1) == 0);
    CK(is_tagged(mmh_name_get(h, "parent"), 1, 1));
    pid_t pid = fork();
    CK(pid >= 0);
    if (pid == 0) {
        _exit(name_new(h, "grandchild", 3, 1) == 0 &&
              is_tagged(mmh_name_get(h, "child"), 2, 1) ? 0 : 1);
    }
    int st;
    CK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CK(mmh_name_set(h, "child", NULL) == 0);
    return 0;
}

static void test_fork(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    assert_int_equal(name_new(h, "parent", 1, 1), 0);
    for (int round = 0; round < 3; round++) {
        assert_child_ok(fork_child, h);
        assert_int_equal(name_new(h, "parent", 1, 1), 0); /* and on this side */
        assert_unnamed(h, "child");
    }
    assert_int_equal(mmh_close(h), 0);
}

/* --------------------------------------------------------- persistence */

/* Names committed survive a close and reopen, and so do their removals. */
static void test_persist(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("persist.heap", &path);
    struct tagged *a = new_tagged(h, 1, 1), *b = new_tagged(h, 2, 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(mmh_name_set(h, "a", a), 0);
    assert_int_equal(mmh_name_set(h, "b", b), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_name_set(h, "b", NULL), 0);
    mmh_free(h, b);
    assert_int_equal(mmh_close(h), 0);   /* commits */

    h = reopen(path, 0);
    assert_named(h, "a", 1, 1);
    assert_unnamed(h, "b");
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* What the crashing writer leaves: committed "kept" (1, 1) and "replaced"
 * (2, 1), "removed" (3, 1); then, uncommitted, "replaced" names (2, 2),
 * "removed" is removed and "added" (4, 1) added. */
static int crash_writer(const char *path, int wfd)
{
    mmh_config cfg = tu_cfg(0, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    CK(name_new(h, "kept", 1, 1) == 0);
    CK(name_new(h, "replaced", 2, 1) == 0);
    CK(name_new(h, "removed", 3, 1) == 0);
    CK(mmh_commit(h) == 0);
    CK(name_new(h, "replaced", 2, 2) == 0);
    CK(mmh_name_set(h, "removed", NULL) == 0);
    CK(name_new(h, "added", 4, 1) == 0);
    CK(is_tagged(mmh_name_get(h, "replaced"), 2, 2));
    if (wfd >= 0) {                      /* wait for the parent's SIGKILL */
        char c = 'u';
        CK(write(wfd, &c, 1) == 1);
        for (;;)
            pause();
    }
    return 0;                            /* _exit without closing */
}

static void check_after_crash(const char *path)
{
    mmh_heap *h = reopen(path, 0);
    assert_named(h, "kept", 1, 1);
    assert_named(h, "replaced", 2, 1);
    assert_named(h, "removed", 3, 1);
    assert_unnamed(h, "added");
    long calls = 0;
    assert_int_equal(mmh_name_each(h, count_names, &calls), 0);
    assert_int_equal(calls, 3);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
}

static char *crash_heap(const char *file)
{
    char *path;
    mmh_heap *h = new_heap(file, &path);
    assert_int_equal(mmh_close(h), 0);
    return path;
}

static void test_crash_exit(void **state)
{
    (void)state;
    char *path = crash_heap("crash-exit.heap");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(crash_writer(path, -1));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    check_after_crash(path);
    drop_heap(path);
}

static void test_crash_kill(void **state)
{
    (void)state;
    char *path = crash_heap("crash-kill.heap");
    int pfd[2];
    pid_t pid = tu_fork_piped(pfd, 0);
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(crash_writer(path, pfd[1]));
    char c;
    if (read(pfd[0], &c, 1) != 1)
        fail_msg("the writer failed before its uncommitted changes");
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    close(pfd[0]);
    check_after_crash(path);
    drop_heap(path);
}

/* ---------------------------------------------------------- many names */

/* Names of 1 to about 70 bytes, all distinct: the index, then filler. */
static void many_name(char *buf, size_t size, long i)
{
    int n = snprintf(buf, size, "%ld/", i);
    int pad = (int)(tu_mix((uint64_t)i) % 64);
    for (int k = 0; k < pad && (size_t)n + 1 < size; k++)
        buf[n++] = (char)('a' + (i + k) % 26);
    buf[n] = '\0';
}

/* Name i in the model: gen[i] == 0 absent, else the generation of its
 * block. */
static void many_set(mmh_heap *h, uint8_t *gen, long i, uint8_t g)
{
    char name[96];
    many_name(name, sizeof name, i);
    void *old = gen[i] ? mmh_name_get(h, name) : NULL;
    void *p = g ? new_tagged(h, (uint64_t)i, g) : NULL;
    if (g && !p)
        fail_msg("allocating for name %ld: %s", i, mmh_errmsg());
    if (mmh_name_set(h, name, p) != 0)
        fail_msg("mmh_name_set(\"%s\", %p): %s", name, p, mmh_errmsg());
    mmh_free(h, old);     /* no longer named */
    gen[i] = g;
}

static void many_check(mmh_heap *h, const uint8_t *gen, long n)
{
    char name[96];
    long present = 0;
    for (long i = 0; i < n; i++) {
        many_name(name, sizeof name, i);
        if (gen[i]) {
            present++;
            assert_named(h, name, (uint64_t)i, gen[i]);
        } else {
            assert_unnamed(h, name);
        }
    }
    long calls = 0;
    assert_int_equal(mmh_name_each(h, count_names, &calls), 0);
    assert_int_equal(calls, present);
}

static void test_many(void **state)
{
    (void)state;
    long n = tu_scaled(200000, 2000);
    uint8_t *gen = calloc((size_t)n, 1);
    assert_non_null(gen);
    char *path;
    mmh_heap *h = new_heap("many.heap", &path);
    tu_rng rng = { tu_test_seed(15) };
    /* insert all, with a removal or replacement of an earlier name now and
     * then, so the table grows with holes in it */
    for (long i = 0; i < n; i++) {
        many_set(h, gen, i, 1);
        long j = (long)tu_rand_range(&rng, 0, (size_t)i);
        if (tu_rand(&rng) % 4 == 0)
            many_set(h, gen, j, gen[j] ? 0 : 2);
    }
    many_check(h, gen, n);
    assert_int_equal(mmh_commit(h), 0);
    /* remove two in three, re-insert half of those, replace some others */
    for (long i = 0; i < n; i++)
        if (i % 3 != 0)
            many_set(h, gen, i, 0);
    for (long i = 0; i < n; i += 2)
        many_set(h, gen, i, i % 3 != 0 ? 3 : 4);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);

    h = reopen(path, 0);
    many_check(h, gen, n);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    free(gen);
    drop_heap(path);
}

/* A full heap: setting names fails with ENOMEM at some point, and every
 * name set before is still there; removing some makes room again. */
static void test_full_heap(void **state)
{
    (void)state;
    char *path = tu_path("full.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 4 * MiB, 4 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char name[MMH_NAME_MAX + 1];
    long n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "%0*ld", MMH_NAME_MAX, n);   /* long names */
        errno = 0;
        int rc = name_new(h, name, (uint64_t)n, 0);
        if (rc != 0) {
            if (errno != ENOMEM)
                fail_msg("name %ld: errno %d (%s), expected ENOMEM: %s", n, errno,
                         strerror(errno), mmh_errmsg());
            break;
        }
        if (n > 1000000)
            fail_msg("a 4 MiB heap holds more than a million names");
    }
    assert_true(n > 100);
    assert_int_equal(mmh_check(h), 0);
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%0*ld", MMH_NAME_MAX, i);
        assert_named(h, name, (uint64_t)i, 0);
    }
    /* make room: remove every other name and free its block */
    for (long i = 0; i < n; i += 2) {
        snprintf(name, sizeof name, "%0*ld", MMH_NAME_MAX, i);
        void *p = mmh_name_get(h, name);
        assert_int_equal(mmh_name_set(h, name, NULL), 0);
        mmh_free(h, p);
    }
    snprintf(name, sizeof name, "%0*ld", MMH_NAME_MAX, 0L);
    assert_int_equal(name_new(h, name, 0, 1), 0);
    assert_named(h, name, 0, 1);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* ---------------------------------------------------------- relocation */

#define RELOC_N 500

static uint64_t g_reloc_base;
static uint64_t g_reloc_off[RELOC_N];

/* Every name resolves to the block at its recorded offset, tagged right. */
static int check_reloc_names(mmh_heap *h)
{
    char name[32];
    for (long i = 0; i < RELOC_N; i++) {
        name_of(name, sizeof name, "r", i);
        void *p = mmh_name_get(h, name);
        CK(p != NULL);
        CK(mmh_offset(h, p) == g_reloc_off[i]);
        CK(is_tagged(p, (uint64_t)i, 0));
    }
    return 0;
}

static int child_relocated(void *arg)
{
    const char *path = arg;
    /* take the heap's base, so it must map elsewhere */
    void *m = mmap((void *)(uintptr_t)g_reloc_base, 4096, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CK(m == (void *)(uintptr_t)g_reloc_base);
    mmh_config cfg = tu_cfg(MMH_RELOCATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.base != g_reloc_base);
    CK(check_reloc_names(h) == 0);
    /* the table works on at the new place, and what it records there
     * resolves at the old one */
    CK(name_new(h, "set-relocated", RELOC_N, 0) == 0);
    CK(is_tagged(mmh_name_get(h, "set-relocated"), RELOC_N, 0));
    CK(check_reloc_names(h) == 0);
    CK(mmh_close(h) == 0);
    munmap(m, 4096);
    return 0;
}

static void test_relocated(void **state)
{
    (void)state;
    char *path;
    mmh_heap *h = new_heap("reloc.heap", &path);
    char name[32];
    for (long i = 0; i < RELOC_N; i++) {
        struct tagged *t = new_tagged(h, (uint64_t)i, 0);
        assert_non_null(t);
        name_of(name, sizeof name, "r", i);
        assert_int_equal(mmh_name_set(h, name, t), 0);
        g_reloc_off[i] = mmh_offset(h, t);
    }
    g_reloc_base = tu_stats(h).base;
    assert_int_equal(mmh_close(h), 0);

    assert_child_ok(child_relocated, path);

    /* here the old base is free again: the child's changes resolve at
     * whichever base the heap now records */
    h = reopen(path, 0);
    assert_int_equal(check_reloc_names(h), 0);
    assert_named(h, "set-relocated", RELOC_N, 0);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

/* ------------------------------------------------------------- memory */

/* The table's memory comes back: naming blocks and removing every name
 * leaves the heap's blocks as they were, and a second round of the same
 * ends where the first did.  The names share a few blocks, so that the
 * records' pages hold nothing else.  used_bytes is not compared with the
 * start: the allocator keeps emptied small pages (plain blocks of the
 * records' sizes, allocated and freed, leave as much behind), but a second
 * round must reuse them. */
#define SHARED_BLOCKS 16

static void test_remove_all_frees(void **state)
{
    (void)state;
    long n = tu_scaled(50000, 1000);
    char *path;
    mmh_heap *h = new_heap("leak.heap", &path);
    void *blocks[SHARED_BLOCKS];
    for (long i = 0; i < SHARED_BLOCKS; i++) {
        blocks[i] = new_tagged(h, (uint64_t)i, 0);
        assert_non_null(blocks[i]);
    }
    struct mmh_stats st0 = tu_stats(h), st[2];
    char name[128];
    for (int round = 0; round < 2; round++) {
        for (long i = 0; i < n; i++) {
            many_name(name, sizeof name, i);
            assert_int_equal(mmh_name_set(h, name, blocks[i % SHARED_BLOCKS]), 0);
        }
        assert_true(tu_stats(h).allocations > st0.allocations + (uint64_t)n);
        for (long i = 0; i < n; i++) {
            many_name(name, sizeof name, i);
            assert_int_equal(mmh_name_set(h, name, NULL), 0);
        }
        st[round] = tu_stats(h);
    }
    print_message("names: %ld names set and removed: %llu blocks, %llu bytes allocated, "
                  "%llu used before; %llu, %llu, %llu after\n", n,
                  (unsigned long long)st0.allocations, (unsigned long long)st0.allocated,
                  (unsigned long long)st0.used_bytes, (unsigned long long)st[0].allocations,
                  (unsigned long long)st[0].allocated, (unsigned long long)st[0].used_bytes);
    /* an empty table may keep a small head, not its records or slots */
    assert_true(st[0].allocations <= st0.allocations + 1);
    assert_true(st[0].allocated <= st0.allocated + 4 * KiB);
    assert_int_equal(st[1].allocations, st[0].allocations);
    assert_int_equal(st[1].allocated, st[0].allocated);
    assert_true(st[1].used_bytes <= st[0].used_bytes);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    drop_heap(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_file),
        cmocka_unit_test(test_set_get_anonymous),
        cmocka_unit_test(test_name_lengths),
        cmocka_unit_test(test_binary_names),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_each),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_persist),
        cmocka_unit_test(test_crash_exit),
        cmocka_unit_test(test_crash_kill),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_full_heap),
        cmocka_unit_test(test_relocated),
        cmocka_unit_test(test_remove_all_frees),
    };
    return TU_RUN(tests);
}
