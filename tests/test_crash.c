/* test_crash: kill -9 at any instant, also in the middle of a commit.
 *
 * A child rewrites a 16 MiB state in place (and churns the allocator) and
 * commits it, version after version, telling the parent through a pipe when
 * each commit starts and ends.  The parent kills it with SIGKILL at a random
 * moment, mostly inside a commit, then reopens the file: the heap must hold
 * exactly the last completed commit or the one that was in progress, never a
 * mix, and must keep working.
 *
 * The same kill loop runs other writers (struct crash_case): one that adds
 * and removes names each version (the names table commits with the heap),
 * and one that raises the heap's limit each version, by reopening with a
 * larger max_size or with mmh_grow, and allocates past the old limit.
 *
 * MMH_TEST_TRACKER=auto|uffd|mprotect|none picks the writer's tracker;
 * MMH_CRASH_ROUNDS=n runs n kills of the first case and as many of each
 * other as its default takes of the first's (make check-crash runs
 * hundreds per tracker; a growth round, filling the heap, costs ten times
 * a plain one).
 */
#include "testutil.h"

#include <signal.h>
#include <poll.h>
#include <time.h>

#define NBLK     64
#define BLK_LEN  (256 * KiB)
#define C_MAGIC  0x43524153484d4d48ull

struct cstate {
    uint64_t magic;
    uint64_t version;
    uint64_t off[NBLK];
    uint64_t len[NBLK];
    uint64_t extra_off;       /* a block reallocated each version */
    uint64_t extra_len;
};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t blk_seed(uint64_t version, int i) { return version * 1000 + (uint64_t)i; }

/* The writer's configuration: the tracker under test. */
static mmh_config writer_cfg(unsigned flags)
{
    static const char *const names[] = { "auto", "uffd", "mprotect", "none" };
    mmh_config cfg = tu_cfg(flags, 0, 0);
    const char *want = getenv("MMH_TEST_TRACKER");
    for (unsigned t = 0; want && t < 4; t++)
        if (strcmp(want, names[t]) == 0)
            cfg.tracker = (mmh_tracker)t;
    return cfg;
}

/* A writer's commit of a version: it tells the parent when the commit
 * starts ('c') and when it is complete ('d'). */
static int commit_version(mmh_heap *h, int wfd)
{
    char c = 'c';
    CK(write(wfd, &c, 1) == 1);
    CK(mmh_commit(h) == 0);
    c = 'd';
    CK(write(wfd, &c, 1) == 1);
    return 0;
}

static int child_writer(const char *path, int wfd)
{
    mmh_config cfg = writer_cfg(0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct cstate *s = mmh_root(h);
    CK(s != NULL && s->magic == C_MAGIC);
    for (uint64_t v = s->version + 1;; v++) {
        for (int i = 0; i < NBLK; i++) {
            unsigned char *p = mmh_at(h, s->off[i]);
            CK(p != NULL);
            tu_fill(p, s->len[i], blk_seed(v, i));
        }
        /* allocator churn: the metadata changes with every version */
        mmh_free(h, mmh_at(h, s->extra_off));
        s->extra_len = 1000 + (v * 7919) % 300000;
        unsigned char *e = mmh_alloc(h, s->extra_len);
        CK(e != NULL);
        tu_fill(e, s->extra_len, blk_seed(v, NBLK));
        s->extra_off = mmh_offset(h, e);
        s->version = v;
        CK(commit_version(h, wfd) == 0);
    }
}

static void make_initial(const char *path)
{
    mmh_config cfg = writer_cfg(MMH_CREATE);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct cstate *s = mmh_calloc(h, 1, sizeof *s);
    assert_non_null(s);
    s->magic = C_MAGIC;
    s->version = 0;
    for (int i = 0; i < NBLK; i++) {
        s->len[i] = BLK_LEN - (size_t)i * 16;
        unsigned char *p = mmh_alloc(h, s->len[i]);
        assert_non_null(p);
        tu_fill(p, s->len[i], blk_seed(0, i));
        s->off[i] = mmh_offset(h, p);
    }
    s->extra_len = 100;
    unsigned char *e = mmh_alloc(h, s->extra_len);
    assert_non_null(e);
    tu_fill(e, s->extra_len, blk_seed(0, NBLK));
    s->extra_off = mmh_offset(h, e);
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
}

/* The heap a writer was killed in; failing the test if it does not open. */
static mmh_heap *reopen_after_kill(const char *path)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen after kill failed: %s", mmh_errmsg());
    return h;
}

/* Returns the version found, after checking it is whole. */
static uint64_t check_whole(const char *path)
{
    mmh_heap *h = reopen_after_kill(path);
    struct cstate *s = mmh_root(h);
    assert_non_null(s);
    assert_int_equal(s->magic, C_MAGIC);
    uint64_t v = s->version;
    for (int i = 0; i < NBLK; i++) {
        unsigned char *p = mmh_at(h, s->off[i]);
        assert_non_null(p);
        size_t bad = tu_check(p, s->len[i], blk_seed(v, i));
        if (bad != (size_t)-1) {
            int other = tu_verify(p, s->len[i], blk_seed(v + 1, i));
            fail_msg("version %llu: block %d differs at byte %zu%s",
                     (unsigned long long)v, i, bad,
                     other ? " (it holds the next, uncommitted version)" : "");
        }
    }
    unsigned char *e = mmh_at(h, s->extra_off);
    assert_non_null(e);
    assert_pattern(e, s->extra_len, blk_seed(v, NBLK));
    assert_true(mmh_usable_size(h, e) >= s->extra_len);
    assert_int_equal(tu_stats(h).allocations, NBLK + 2);
    /* the allocator works on from here */
    void *q = mmh_alloc(h, 5000);
    assert_non_null(q);
    mmh_free(h, q);
    assert_int_equal(mmh_close(h), 0);
    return v;
}

/* The first case's kills by default: MMH_CRASH_ROUNDS counts in those. */
#define CRASH_ROUNDS_BASE 25

/* One kind of writer under the kill loop. */
struct crash_case {
    const char *file;
    void      (*make)(const char *path);           /* the heap at version 0 */
    int       (*writer)(const char *path, int wfd); /* the child: versions
                                                       1, 2, ... forever, each
                                                       through commit_version */
    uint64_t  (*check)(const char *path);          /* the version found, after
                                                       checking it is whole */
    long        rounds;                            /* kills by default */
};

/* Forks the writer again and again and kills it at a random moment, mostly
 * inside a commit; after each kill the heap must hold the last completed
 * commit or the one in progress. */
static void kill_loop(const struct crash_case *cc)
{
    char *path = tu_path(cc->file);
    cc->make(path);
    uint64_t seed = tu_test_seed((uint64_t)time(NULL));
    tu_rng rng = { seed };
    long rounds = getenv("MMH_CRASH_ROUNDS")
                      ? atol(getenv("MMH_CRASH_ROUNDS")) * cc->rounds / CRASH_ROUNDS_BASE
                      : tu_scaled(cc->rounds, 3);
    uint64_t committed = 0;            /* last version known complete */
    double commit_us = 20000;          /* running estimate of a commit's time */
    for (long r = 0; r < rounds; r++) {
        int pfd[2];
        pid_t pid = tu_fork_piped(pfd, 0);
        if (pid == 0)
            _exit(cc->writer(path, pfd[1]));
        /* let it complete 0..2 commits, then kill it inside the next one
         * after a random delay (sometimes before, sometimes after the end) */
        int target = (int)tu_rand_range(&rng, 0, 2);
        int completed = 0;
        uint64_t started = committed;
        double t_c = 0;
        for (;;) {
            char c;
            if (read(pfd[0], &c, 1) != 1)
                fail_msg("writer died early (round %ld)", r);
            if (c == 'c') {
                started = committed + 1;     /* the version being committed */
                t_c = now_us();
                if (completed >= target)
                    break;
            } else {
                committed = started;
                completed++;
                double took = now_us() - t_c;  /* how long a commit takes */
                commit_us = commit_us ? (commit_us * 3 + took) / 4 : took;
            }
        }
        /* kill somewhere in [0, 1.25 x commit time): mostly mid-commit */
        long us = (long)tu_rand_range(&rng, 0, (size_t)(commit_us * 1.25) + 1);
        struct timespec d = { us / 1000000, (us % 1000000) * 1000 };
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        /* a 'd' may have arrived before the kill */
        char c;
        struct pollfd pf = { pfd[0], POLLIN, 0 };
        while (poll(&pf, 1, 0) == 1 && read(pfd[0], &c, 1) == 1) {
            if (c == 'c')
                started = committed + 1;
            else
                committed = started;
        }
        close(pfd[0]);
        uint64_t v = cc->check(path);
        if (v != committed && v != started)
            fail_msg("round %ld (MMH_TEST_SEED=%llu): found version %llu, "
                     "expected %llu or %llu", r, (unsigned long long)seed,
                     (unsigned long long)v, (unsigned long long)committed,
                     (unsigned long long)started);
        committed = started = v;
    }
    unlink(path);
    free(path);
}

static void test_kill_during_commit(void **state)
{
    (void)state;
    static const struct crash_case cc = {
        "crash.heap", make_initial, child_writer, check_whole, CRASH_ROUNDS_BASE,
    };
    kill_loop(&cc);
}

/* ------------------------------------------------------------ names */

/* Each version v names N_PER new blocks "v<v>-<i>", points "latest" at the
 * first, and removes the names of version v - 2 (freeing their blocks): the
 * table holds the names of the last two versions, and "latest". */
#define N_PER    8
#define N_BLEN   200
#define N_MAGIC  0x4e414d45534d4d48ull

struct nstate {
    uint64_t magic;
    uint64_t version;
};

static void version_name(char *buf, size_t size, uint64_t v, int i)
{
    snprintf(buf, size, "v%llu-%d", (unsigned long long)v, i);
}

static void make_names(const char *path)
{
    mmh_config cfg = writer_cfg(MMH_CREATE);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct nstate *s = mmh_calloc(h, 1, sizeof *s);
    assert_non_null(s);
    s->magic = N_MAGIC;
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
}

static int child_names(const char *path, int wfd)
{
    mmh_config cfg = writer_cfg(0);
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct nstate *s = mmh_root(h);
    CK(s != NULL && s->magic == N_MAGIC);
    char name[32];
    for (uint64_t v = s->version + 1;; v++) {
        for (int i = 0; i < N_PER; i++) {
            unsigned char *p = mmh_alloc(h, N_BLEN);
            CK(p != NULL);
            tu_fill(p, N_BLEN, blk_seed(v, i));
            version_name(name, sizeof name, v, i);
            CK(mmh_name_set(h, name, p) == 0);
            if (i == 0)
                CK(mmh_name_set(h, "latest", p) == 0);
        }
        for (int i = 0; v > 2 && i < N_PER; i++) {
            version_name(name, sizeof name, v - 2, i);
            void *p = mmh_name_get(h, name);
            CK(p != NULL);
            CK(mmh_name_set(h, name, NULL) == 0);
            mmh_free(h, p);
        }
        s->version = v;
        CK(commit_version(h, wfd) == 0);
    }
}

/* Which names version v has: those of v and v - 1 (from 1 on). */
static int names_live(uint64_t v, uint64_t w) { return w >= 1 && w <= v && w + 1 >= v; }

struct names_walk {
    mmh_heap *h;
    uint64_t  version;
    long      names;
};

/* Every name in the table is one the version has, naming its block. */
static int check_name_fn(const char *name, void *p, void *arg)
{
    struct names_walk *w = arg;
    unsigned long long v;
    int i, len = 0;
    w->names++;
    if (strcmp(name, "latest") == 0)
        return 0;
    if (sscanf(name, "v%llu-%d%n", &v, &i, &len) != 2 || name[len] != '\0' ||
        i < 0 || i >= N_PER || !names_live(w->version, v)) {
        print_error("version %llu: unexpected name \"%s\"\n",
                    (unsigned long long)w->version, name);
        return 1;
    }
    if (!tu_verify(p, N_BLEN, blk_seed(v, i))) {
        print_error("version %llu: name \"%s\" names the wrong block\n",
                    (unsigned long long)w->version, name);
        return 1;
    }
    return 0;
}

static uint64_t check_names(const char *path)
{
    mmh_heap *h = reopen_after_kill(path);
    struct nstate *s = mmh_root(h);
    assert_non_null(s);
    assert_int_equal(s->magic, N_MAGIC);
    uint64_t v = s->version;
    /* the names of the versions around v: exactly those v has */
    char name[32];
    for (uint64_t w = v > 3 ? v - 3 : 1; w <= v + 1; w++)
        for (int i = 0; i < N_PER; i++) {
            version_name(name, sizeof name, w, i);
            errno = 0;
            void *p = mmh_name_get(h, name);
            if (names_live(v, w) && !p)
                fail_msg("version %llu: name %s missing: %s", (unsigned long long)v,
                         name, mmh_errmsg());
            if (!names_live(v, w) && (p || errno != ENOENT))
                fail_msg("version %llu: name %s of version %llu present (errno %d)",
                         (unsigned long long)v, name, (unsigned long long)w, errno);
            if (p)
                assert_pattern(p, N_BLEN, blk_seed(w, i));
        }
    void *latest = mmh_name_get(h, "latest");
    if (v > 0) {
        version_name(name, sizeof name, v, 0);
        assert_ptr_equal(latest, mmh_name_get(h, name));
    } else {
        assert_null(latest);
    }
    /* and no other name */
    struct names_walk w = { h, v, 0 };
    assert_int_equal(mmh_name_each(h, check_name_fn, &w), 0);
    assert_int_equal(w.names, v == 0 ? 0 : v == 1 ? N_PER + 1 : 2 * N_PER + 1);
    assert_int_equal(mmh_check(h), 0);
    /* the table works on from here */
    assert_int_equal(mmh_name_set(h, "probe", s), 0);
    assert_ptr_equal(mmh_name_get(h, "probe"), s);
    assert_int_equal(mmh_name_set(h, "probe", NULL), 0);
    assert_int_equal(mmh_close(h), 0);
    return v;
}

static void test_kill_names(void **state)
{
    (void)state;
    static const struct crash_case cc = {
        "crash-names.heap", make_names, child_names, check_names, 10,
    };
    kill_loop(&cc);
}

/* ----------------------------------------------------------- growth */

/* The heap starts with a limit of G_START.  A writer opens it with a limit
 * G_STEP larger, and raises it by G_STEP with mmh_grow for each later
 * version; each version fills the heap with blocks of G_BLK up to its
 * limit (ENOMEM), so they land past the old one.  Once the heap reaches
 * G_CAP it starts over, to keep the files small. */
#define G_START  (16 * MiB)
#define G_STEP   (4 * MiB)
#define G_CAP    (48 * MiB)
#define G_BLK    (256 * KiB)
#define G_NBLK   512                /* room for G_CAP and a few steps more */
#define G_VLEN   (64 * KiB)
#define G_MAGIC  0x47524f57534d4d48ull

struct gstate {
    uint64_t magic;
    uint64_t version;
    uint64_t max_size;          /* the limit the version committed with */
    uint64_t full;              /* the last fill reached the limit */
    uint64_t vblk_off;          /* G_VLEN bytes rewritten by each version */
    uint64_t nblk;
    uint64_t off[G_NBLK];       /* block i holds blk_seed(0, 1000 + i) */
};

static uint64_t grow_seed(uint64_t i) { return blk_seed(0, 1000 + (int)i); }

/* The limit the parent last found; each writer's fork inherits it. */
static size_t g_grow_limit;

/* A new heap at version v. */
static void make_growth_at(const char *path, uint64_t v)
{
    char wal[PATH_MAX];
    snprintf(wal, sizeof wal, "%s.wal", path);
    unlink(path);
    unlink(wal);
    mmh_config cfg = writer_cfg(MMH_CREATE);
    cfg.max_size = G_START;
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct gstate *s = mmh_calloc(h, 1, sizeof *s);
    assert_non_null(s);
    s->magic = G_MAGIC;
    s->version = v;
    s->max_size = tu_stats(h).max_size;
    assert_int_equal(s->max_size, G_START);
    unsigned char *vb = mmh_alloc(h, G_VLEN);
    assert_non_null(vb);
    tu_fill(vb, G_VLEN, blk_seed(v, 0));
    s->vblk_off = mmh_offset(h, vb);
    assert_int_equal(mmh_set_root(h, s), 0);
    assert_int_equal(mmh_close(h), 0);
    g_grow_limit = G_START;
}

static void make_growth(const char *path) { make_growth_at(path, 0); }

/* Allocates blocks until the heap is full at its limit; the first new
 * block must lie past the limit of the last full version. */
static int fill_to_limit(mmh_heap *h, struct gstate *s)
{
    uint64_t first = s->nblk;
    while (s->nblk < G_NBLK) {
        errno = 0;
        unsigned char *p = mmh_alloc(h, G_BLK);
        if (!p) {
            CK(errno == ENOMEM);
            s->full = 1;
            break;
        }
        uint64_t off = mmh_offset(h, p);
        CK(!(s->nblk == first && s->full) || off + G_BLK > s->max_size);
        tu_fill(p, G_BLK, grow_seed(s->nblk));
        s->off[s->nblk++] = off;
    }
    return 0;
}

static int child_growth(const char *path, int wfd)
{
    /* the first version grows at the open, the later ones with mmh_grow */
    mmh_config cfg = writer_cfg(0);
    cfg.max_size = g_grow_limit + G_STEP;
    mmh_heap *h = mmh_open(path, &cfg);
    CK(h != NULL);
    struct gstate *s = mmh_root(h);
    CK(s != NULL && s->magic == G_MAGIC);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.max_size == cfg.max_size);
    for (int first = 1;; first = 0) {
        if (!first) {
            CK(mmh_grow(h, st.max_size + G_STEP) == 0);
            CK(mmh_stats(h, &st) == 0);
        }
        CK(fill_to_limit(h, s) == 0);
        uint64_t v = s->version + 1;
        tu_fill(mmh_at(h, s->vblk_off), G_VLEN, blk_seed(v, 0));
        s->max_size = st.max_size;
        s->version = v;
        CK(commit_version(h, wfd) == 0);
    }
}

static uint64_t check_growth(const char *path)
{
    mmh_heap *h = reopen_after_kill(path);
    struct gstate *s = mmh_root(h);
    assert_non_null(s);
    assert_int_equal(s->magic, G_MAGIC);
    uint64_t v = s->version;
    struct mmh_stats st = tu_stats(h);
    if (st.max_size < s->max_size)
        fail_msg("version %llu: the heap's limit is %llu MiB, its commit's %llu MiB",
                 (unsigned long long)v, (unsigned long long)(st.max_size / MiB),
                 (unsigned long long)(s->max_size / MiB));
    assert_true(s->nblk <= G_NBLK);
    for (uint64_t i = 0; i < s->nblk; i++) {
        unsigned char *p = mmh_at(h, s->off[i]);
        if (!p || !tu_in_heap(&st, p, G_BLK))
            fail_msg("version %llu: block %llu at offset %llu lies outside the heap "
                     "(size %llu)", (unsigned long long)v, (unsigned long long)i,
                     (unsigned long long)s->off[i], (unsigned long long)st.size);
        assert_pattern(p, G_BLK, grow_seed(i));
    }
    unsigned char *vb = mmh_at(h, s->vblk_off);
    assert_non_null(vb);
    if (!tu_verify(vb, G_VLEN, blk_seed(v, 0)))
        fail_msg("version %llu: its block holds another version%s", (unsigned long long)v,
                 tu_verify(vb, G_VLEN, blk_seed(v + 1, 0)) ? " (the next)" : "");
    assert_int_equal(st.allocations, s->nblk + 2);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    g_grow_limit = st.max_size;
    if (g_grow_limit >= G_CAP)
        make_growth_at(path, v);   /* start over: same version, small heap */
    return v;
}

static void test_kill_growth(void **state)
{
    (void)state;
    static const struct crash_case cc = {
        "crash-growth.heap", make_growth, child_growth, check_growth, 5,
    };
    kill_loop(&cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_commit),
        cmocka_unit_test(test_kill_names),
        cmocka_unit_test(test_kill_growth),
    };
    return TU_RUN(tests);
}
