/* test_persist: file heaps across processes.
 *
 *  - a linked structure of 20,000 nodes with raw pointers, reopened in a
 *    forked child and in a freshly exec'd process;
 *  - changes after the last commit vanish when a process exits without
 *    committing (_exit and SIGKILL);
 *  - allocations after reopen never overlap committed blocks;
 *  - shared mode, read-only mode, anonymous commit.
 */
#include "testutil.h"

#include <signal.h>

#define NODES      20000
#define ROOT_MAGIC 0x524f4f544d4d4831ull
#define NODE_MAGIC 0x4e4f44454d4d4831ull

struct node {
    uint64_t     magic;
    struct node *next;        /* list order: id+1                    */
    struct node *left;        /* a random earlier node (or NULL)     */
    struct node *right;       /* another random earlier node         */
    uint32_t     id;
    uint32_t     left_id;
    uint32_t     right_id;
    uint32_t     len;
    unsigned char payload[];
};

struct root {
    uint64_t      magic;
    uint64_t      count;
    struct node  *head;
    struct node **index;      /* index[i] == node with id i          */
    uint64_t      total_payload;
};

static uint64_t payload_seed(uint32_t id) { return 0xABCDEF00ull + id; }

/* Builds the structure in h and sets it as root; returns the root. */
static struct root *build_list(mmh_heap *h, uint64_t seed)
{
    tu_rng rng = { seed };
    struct root *r = mmh_alloc(h, sizeof *r);
    assert_non_null(r);
    memset(r, 0, sizeof *r);
    r->magic = ROOT_MAGIC;
    r->index = mmh_alloc(h, NODES * sizeof *r->index);
    assert_non_null(r->index);
    struct node *prev = NULL;
    for (uint32_t i = 0; i < NODES; i++) {
        uint32_t len = (uint32_t)tu_rand_log(&rng, 1, 3000) - 1;
        if (tu_rand(&rng) % 1000 == 0)
            len = (uint32_t)tu_rand_range(&rng, 100000, 400000);
        struct node *n = mmh_alloc(h, sizeof *n + len);
        assert_non_null(n);
        n->magic = NODE_MAGIC;
        n->next = NULL;
        n->id = i;
        n->len = len;
        n->left_id = i ? (uint32_t)tu_rand_range(&rng, 0, i - 1) : UINT32_MAX;
        n->right_id = i ? (uint32_t)tu_rand_range(&rng, 0, i - 1) : UINT32_MAX;
        n->left = i ? r->index[n->left_id] : NULL;
        n->right = i ? r->index[n->right_id] : NULL;
        tu_fill(n->payload, len, payload_seed(i));
        r->index[i] = n;
        r->total_payload += len;
        if (prev)
            prev->next = n;
        else
            r->head = n;
        prev = n;
    }
    r->count = NODES;
    assert_int_equal(mmh_set_root(h, r), 0);
    return r;
}

/* Walks the structure by raw pointers; 0 when everything is intact.
 * Usable in children (no cmocka asserts). */
static int walk_list(mmh_heap *h)
{
    struct mmh_stats st;
    struct root *r = tu_root_in_heap(h, sizeof *r, &st);
    CK(r != NULL);
    CK(r->magic == ROOT_MAGIC);
    CK(r->count == NODES);
    CK(tu_in_heap(&st, r->index, NODES * sizeof *r->index));
    CK(mmh_usable_size(h, r->index) >= NODES * sizeof *r->index);
    uint64_t total = 0;
    uint32_t i = 0;
    for (struct node *n = r->head; n; n = n->next, i++) {
        CK(i < NODES);
        CK(tu_in_heap(&st, n, sizeof *n));
        CK((uintptr_t)n % 8 == 0);
        CK(n->magic == NODE_MAGIC);
        CK(n->id == i);
        CK(r->index[i] == n);
        CK(tu_in_heap(&st, n, sizeof *n + n->len));
        CK(mmh_usable_size(h, n) >= sizeof *n + n->len);
        CK(mmh_at(h, mmh_offset(h, n)) == n);
        if (i) {
            CK(n->left_id < i && n->right_id < i);
            CK(tu_in_heap(&st, n->left, sizeof *n));
            CK(tu_in_heap(&st, n->right, sizeof *n));
            CK(n->left->id == n->left_id);
            CK(n->right->id == n->right_id);
        } else {
            CK(n->left == NULL && n->right == NULL);
        }
        if (!tu_verify(n->payload, n->len, payload_seed(i))) {
            fprintf(stderr, "node %u: payload of %u bytes corrupt at %zu\n", i,
                    n->len, tu_check(n->payload, n->len, payload_seed(i)));
            return 1;
        }
        total += n->len;
    }
    CK(i == NODES);
    CK(total == r->total_payload);
    CK(st.allocations >= NODES + 2);
    return 0;
}

static int walk_file(const char *path)
{
    mmh_heap *h = mmh_open(path, NULL);
    CK(h != NULL);
    int rc = walk_list(h);
    CK(mmh_close(h) == 0);
    return rc;
}

static int child_walk(void *arg)
{
    return walk_file(arg);
}

static void test_reopen_linked_new_process(void **state)
{
    (void)state;
    char *path = tu_path("linked.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    build_list(h, 1);
    assert_int_equal(walk_list(h), 0);
    uint64_t base = tu_stats(h).base;
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    /* a forked child */
    assert_child_ok(child_walk, path);

    /* a fresh process image: different libraries, stack and mmap layout */
    int st = tu_run_self((const char *[]){ "--walk", path, NULL });
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    /* and here again, at the same base */
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).base, base);
    assert_int_equal(walk_list(h), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* ------------------------------------------------- uncommitted changes */

#define STATE_BLOCKS 100
#define STATE_MAGIC  0x5354415445ull

struct state {
    uint64_t magic;
    uint64_t version;
    void    *blk[STATE_BLOCKS];
    size_t   len[STATE_BLOCKS];
};

/* Makes state `version` (replacing any previous one) and sets it as root. */
static int make_state(mmh_heap *h, uint64_t version)
{
    struct state *old = mmh_root(h);
    if (old) {
        for (int i = 0; i < STATE_BLOCKS; i++)
            mmh_free(h, old->blk[i]);
        mmh_free(h, old);
    }
    struct state *s = mmh_alloc(h, sizeof *s);
    CK(s != NULL);
    s->magic = STATE_MAGIC;
    s->version = version;
    tu_rng rng = { version };
    for (int i = 0; i < STATE_BLOCKS; i++) {
        s->len[i] = tu_rand_log(&rng, 1, 200000);
        s->blk[i] = mmh_alloc(h, s->len[i]);
        CK(s->blk[i] != NULL);
        tu_fill(s->blk[i], s->len[i], version * 1000 + (uint64_t)i);
    }
    CK(mmh_set_root(h, s) == 0);
    return 0;
}

static int check_state(mmh_heap *h, uint64_t version)
{
    struct state *s = mmh_root(h);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(s != NULL);
    CK(tu_in_heap(&st, s, sizeof *s));
    CK(s->magic == STATE_MAGIC);
    CK(s->version == version);
    for (int i = 0; i < STATE_BLOCKS; i++) {
        CK(tu_in_heap(&st, s->blk[i], s->len[i]));
        CK(tu_verify(s->blk[i], s->len[i], version * 1000 + (uint64_t)i));
    }
    CK(st.allocations == STATE_BLOCKS + 1);
    return 0;
}

/* Scribbles over everything after the last commit. */
static void dirty_everything(mmh_heap *h)
{
    struct state *s = mmh_root(h);
    for (int i = 0; i < STATE_BLOCKS; i += 2)
        memset(s->blk[i], 0xEE, s->len[i]);
    for (int i = 1; i < STATE_BLOCKS; i += 4) {
        mmh_free(h, s->blk[i]);
        s->blk[i] = NULL;
    }
    s->version = 12345;
    /* grow well past the committed size */
    for (int i = 0; i < 64; i++) {
        void *p = mmh_alloc(h, 256 * KiB);
        if (p)
            memset(p, 0xDD, 256 * KiB);
    }
    struct state *other = mmh_alloc(h, sizeof *other);
    if (other) {
        memset(other, 0, sizeof *other);
        mmh_set_root(h, other);
    }
}

enum exit_how { EXIT_UNDERSCORE, EXIT_SIGKILL, EXIT_ABORT };

struct dirty_arg {
    const char   *path;
    int           commits;    /* states 1..commits are committed in turn */
    enum exit_how how;
};

static int child_dirty_exit(void *argp)
{
    struct dirty_arg *a = argp;
    mmh_heap *h = mmh_open(a->path, NULL);
    CK(h != NULL);
    for (int v = 1; v <= a->commits; v++) {
        CK(make_state(h, (uint64_t)v) == 0);
        CK(mmh_commit(h) == 0);
    }
    CK(check_state(h, (uint64_t)a->commits) == 0);
    dirty_everything(h);
    switch (a->how) {
    case EXIT_UNDERSCORE:
        _exit(0);
    case EXIT_SIGKILL:
        raise(SIGKILL);
        break;
    case EXIT_ABORT:
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    return 2;
}

static void run_dirty_case(const char *name, int commits, enum exit_how how)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 1 * MiB, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);

    struct dirty_arg a = { path, commits, how };
    int st = tu_run_child(child_dirty_exit, &a);
    if (how == EXIT_UNDERSCORE) {
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    } else {
        assert_true(WIFSIGNALED(st));
    }

    h = mmh_open(path, NULL);
    if (!h)
        fail_msg("reopen after child exit failed: %s", mmh_errmsg());
    assert_int_equal(check_state(h, (uint64_t)commits), 0);
    /* and the heap works on from there */
    assert_int_equal(make_state(h, 100), 0);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(check_state(h, 100), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free((char *)path);
}

static void test_uncommitted_lost_exit(void **state)
{
    (void)state;
    run_dirty_case("dirty1.heap", 1, EXIT_UNDERSCORE);
}

static void test_uncommitted_lost_two_commits(void **state)
{
    (void)state;
    run_dirty_case("dirty2.heap", 2, EXIT_UNDERSCORE);
}

static void test_uncommitted_lost_sigkill(void **state)
{
    (void)state;
    run_dirty_case("dirty3.heap", 3, EXIT_SIGKILL);
}

static void test_uncommitted_lost_abort(void **state)
{
    (void)state;
    run_dirty_case("dirty4.heap", 1, EXIT_ABORT);
}

/* Nothing committed ever: the heap reopens empty. */
static int child_no_commit(void *arg)
{
    mmh_heap *h = mmh_open(arg, NULL);
    CK(h != NULL);
    CK(make_state(h, 1) == 0);
    _exit(0);
}

static void test_never_committed(void **state)
{
    (void)state;
    char *path = tu_path("never.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);
    assert_child_ok(child_no_commit, path);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_null(mmh_root(h));
    assert_int_equal(tu_stats(h).allocations, 0);
    assert_int_equal(tu_stats(h).allocated, 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* ------------------------------------------------------------ overlap */

struct committed {
    uint64_t magic;
    uint64_t n;
    uint64_t off[];           /* 0 for freed slots */
};

static void test_no_overlap_after_reopen(void **state)
{
    (void)state;
    char *path = tu_path("overlap.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    enum { N = 4000 };
    tu_rng rng = { 31337 };
    struct committed *c = mmh_alloc(h, sizeof *c + N * sizeof c->off[0]);
    assert_non_null(c);
    c->magic = 0xC0FFEE;
    c->n = N;
    size_t *lens = calloc(N, sizeof *lens);
    assert_non_null(lens);
    for (int i = 0; i < N; i++) {
        lens[i] = (tu_rand(&rng) % 50 == 0) ? tu_rand_log(&rng, 1, 3 * MiB)
                                            : tu_rand_log(&rng, 1, 70000);
        void *p = mmh_alloc(h, lens[i]);
        assert_non_null(p);
        tu_fill(p, lens[i], (uint64_t)i);
        c->off[i] = mmh_offset(h, p);
    }
    /* free a random half: holes between committed blocks */
    for (int i = 0; i < N; i++) {
        if (tu_rand(&rng) & 1) {
            mmh_free(h, mmh_at(h, c->off[i]));
            c->off[i] = 0;
        }
    }
    assert_int_equal(mmh_set_root(h, c), 0);
    assert_int_equal(mmh_commit(h), 0);
    uint64_t live_committed = tu_stats(h).allocations;
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    c = mmh_root(h);
    assert_non_null(c);
    assert_int_equal(c->magic, 0xC0FFEE);
    tu_span *sp = calloc(N + 1, sizeof *sp);
    assert_non_null(sp);
    size_t ns = 0;
    sp[ns].lo = (uintptr_t)c;
    sp[ns].hi = (uintptr_t)c + mmh_usable_size(h, c);
    ns++;
    for (int i = 0; i < N; i++) {
        if (!c->off[i])
            continue;
        unsigned char *p = mmh_at(h, c->off[i]);
        assert_non_null(p);
        assert_pattern(p, lens[i], (uint64_t)i);
        size_t u = mmh_usable_size(h, p);
        assert_true(u >= lens[i]);
        sp[ns].lo = (uintptr_t)p;
        sp[ns].hi = (uintptr_t)p + u;
        ns++;
    }
    assert_int_equal(tu_spans_sort_check(sp, ns), -1);

    /* many new blocks of varied sizes: none overlaps a committed one */
    long M = tu_scaled(20000, 2000);
    void **nw = calloc((size_t)M, sizeof *nw);
    size_t *nl = calloc((size_t)M, sizeof *nl);
    assert_non_null(nw);
    assert_non_null(nl);
    for (long i = 0; i < M; i++) {
        size_t n = (tu_rand(&rng) % 100 == 0) ? tu_rand_log(&rng, 1, 2 * MiB)
                                              : tu_rand_log(&rng, 1, 70000);
        unsigned char *q = (i % 7 == 3) ? mmh_aligned_alloc(h, 256, n) : mmh_alloc(h, n);
        assert_non_null(q);
        size_t u = mmh_usable_size(h, q);
        if (tu_spans_overlap(sp, ns, (uintptr_t)q, (uintptr_t)q + u))
            fail_msg("new block %p+%zu overlaps a committed block", (void *)q, u);
        memset(q, 0xA5, u);                    /* write the whole block */
        nw[i] = q;
        nl[i] = u;
    }
    for (int i = 0; i < N; i++)
        if (c->off[i])
            assert_pattern(mmh_at(h, c->off[i]), lens[i], (uint64_t)i);
    /* new blocks are disjoint among themselves */
    tu_span *ns2 = calloc((size_t)M, sizeof *ns2);
    assert_non_null(ns2);
    for (long i = 0; i < M; i++) {
        ns2[i].lo = (uintptr_t)nw[i];
        ns2[i].hi = (uintptr_t)nw[i] + nl[i];
    }
    assert_int_equal(tu_spans_sort_check(ns2, (size_t)M), -1);
    for (long i = 0; i < M; i++) {
        assert_true(tu_all_bytes(nw[i], nl[i], 0xA5));
        mmh_free(h, nw[i]);
    }
    assert_int_equal(tu_stats(h).allocations, live_committed);
    assert_int_equal(mmh_close(h), 0);
    free(ns2);
    free(nw);
    free(nl);
    free(sp);
    free(lens);
    unlink(path);
    free(path);
}

/* Freed blocks stay freed and the free lists survive reopen. */
static void test_free_persists(void **state)
{
    (void)state;
    char *path = tu_path("freed.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    void *keep = mmh_alloc(h, 1000);
    assert_non_null(keep);
    enum { N = 3000 };
    static void *ps[N];
    for (int i = 0; i < N; i++)
        assert_non_null(ps[i] = mmh_alloc(h, 100 + (size_t)(i % 50) * 16));
    void *big = mmh_alloc(h, 8 * MiB);
    assert_non_null(big);
    assert_int_equal(mmh_set_root(h, keep), 0);
    assert_int_equal(mmh_commit(h), 0);
    struct mmh_stats full = tu_stats(h);
    for (int i = 0; i < N; i++)
        mmh_free(h, ps[i]);
    mmh_free(h, big);
    assert_int_equal(mmh_close(h), 0);

    h = mmh_open(path, NULL);
    assert_non_null(h);
    struct mmh_stats st = tu_stats(h);
    assert_int_equal(st.allocations, 1);
    assert_int_equal(st.allocated, mmh_usable_size(h, keep));
    /* the space is reused: allocating it all again does not grow the heap */
    for (int i = 0; i < N; i++)
        assert_non_null(ps[i] = mmh_alloc(h, 100 + (size_t)(i % 50) * 16));
    big = mmh_alloc(h, 8 * MiB);
    assert_non_null(big);
    st = tu_stats(h);
    assert_true(st.size <= full.size);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* --------------------------------------------------------------- modes */

static void test_shared_mode(void **state)
{
    (void)state;
    char *path = tu_path("shared.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE | MMH_SHARED, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_true(tu_stats(h).flags & MMH_SHARED);
    assert_int_equal(make_state(h, 7), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(tu_stats(h).commits, 1);
    assert_int_equal(mmh_close(h), 0);

    /* private reopen sees it */
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(check_state(h, 7), 0);
    assert_int_equal(mmh_close(h), 0);

    /* shared again: change, close (which commits), reopen */
    cfg.flags = MMH_SHARED;
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(check_state(h, 7), 0);
    assert_int_equal(make_state(h, 8), 0);
    assert_int_equal(mmh_close(h), 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(check_state(h, 8), 0);
    /* growth in shared mode, past the initial size */
    assert_int_equal(make_state(h, 9), 0);
    unsigned char *big = mmh_alloc(h, 40 * MiB);
    assert_non_null(big);
    tu_fill(big, 40 * MiB, 4040);
    uint64_t off = mmh_offset(h, big);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    assert_true(tu_file_size(path) >= (off_t)(40 * MiB));
    h = mmh_open(path, NULL);
    assert_non_null(h);
    big = mmh_at(h, off);
    assert_non_null(big);
    assert_pattern(big, 40 * MiB, 4040);
    mmh_free(h, big);
    assert_int_equal(check_state(h, 9), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

static void test_readonly(void **state)
{
    (void)state;
    char *path = tu_path("ro.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(make_state(h, 3), 0);
    assert_int_equal(mmh_close(h), 0);
    size_t flen = 0;
    void *before = tu_read_file(path, &flen);
    assert_non_null(before);

    cfg = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct mmh_stats st = tu_stats(h);
    assert_true(st.flags & MMH_READONLY);
    assert_int_equal(check_state(h, 3), 0);
    struct state *s = mmh_root(h);
    assert_non_null(s);
    assert_true(mmh_usable_size(h, s->blk[0]) >= s->len[0]);
    assert_ptr_equal(mmh_at(h, mmh_offset(h, s->blk[5])), s->blk[5]);

    assert_null_errno(mmh_alloc(h, 16), EROFS);
    assert_null_errno(mmh_alloc(h, 1 * MiB), EROFS);
    assert_null_errno(mmh_calloc(h, 4, 4), EROFS);
    assert_null_errno(mmh_aligned_alloc(h, 64, 64), EROFS);
    assert_null_errno(mmh_realloc(h, NULL, 64), EROFS);
    /* Resizing in place writes metadata too: large blocks grown and shrunk. */
    for (int i = 0; i < STATE_BLOCKS; i++) {
        assert_null_errno(mmh_realloc(h, s->blk[i], s->len[i] + 300000), EROFS);
        if (mmh_usable_size(h, s->blk[i]) >= 4 * 65536) /* shrunk in place elsewhere */
            assert_null_errno(mmh_realloc(h, s->blk[i], 131073), EROFS);
    }
    assert_fail_errno(mmh_commit(h), EROFS);
    assert_fail_errno(mmh_set_root(h, s->blk[0]), EROFS);
    assert_ptr_equal(mmh_root(h), s);
    errno = 0;
    mmh_free(h, s->blk[1]);                    /* must not crash */
    assert_int_equal(errno, EROFS);
    assert_int_equal(check_state(h, 3), 0);
    assert_int_equal(mmh_stats(h, &st), 0);
    assert_int_equal(mmh_close(h), 0);

    size_t flen2 = 0;
    void *after = tu_read_file(path, &flen2);
    assert_non_null(after);
    assert_int_equal(flen, flen2);
    assert_memory_equal(before, after, flen);
    free(before);
    free(after);

    /* a missing file read-only */
    char *missing = tu_path("ro-missing.heap");
    assert_null_errno(mmh_open(missing, &cfg), ENOENT);
    assert_errmsg_contains(missing);
    free(missing);
    unlink(path);
    free(path);
}

/* A heap commits only in the process that opened it: in a child of fork()
 * commits fail with EPERM, and close only unmaps (it once hung there, on
 * the checkpoint thread's condition variable, which the fork had copied
 * in use).  The parent goes on committing. */
static int forked_child(void *arg)
{
    mmh_heap *h = arg;
    alarm(10);
    errno = 0;
    CK(mmh_commit(h) == -1 && errno == EPERM);
    CK(mmh_commit_bg(h) == -1 && errno == EPERM);
    CK(mmh_checkpoint(h) == -1 && errno == EPERM);
    CK((mmh_close)(h) == 0);
    return 0;
}

static void test_fork_child_does_not_commit(void **state)
{
    (void)state;
    char *path = tu_path("forked.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *p = mmh_alloc(h, 4096);
    assert_non_null(p);
    tu_fill(p, 4096, 1);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_commit(h), 0);
    usleep(100 * 1000); /* the checkpoint thread waits on its condition now */
    assert_child_ok(forked_child, h);
    tu_fill(p, 4096, 2);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &ro);
    assert_non_null(h);
    assert_pattern(mmh_root(h), 4096, 2);
    assert_int_equal(mmh_close(h), 0);
    free(path);
}

static void test_anon_commit(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    void *p = mmh_alloc(h, 100);
    assert_non_null(p);
    assert_fail_errno(mmh_commit(h), EINVAL);
    assert_true(mmh_errmsg()[0] != '\0');
    assert_int_equal(tu_stats(h).commits, 0);
    mmh_free(h, p);
    assert_int_equal(mmh_close(h), 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--walk") == 0)
        return walk_file(argv[2]) == 0 ? 0 : 1;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_linked_new_process),
        cmocka_unit_test(test_uncommitted_lost_exit),
        cmocka_unit_test(test_uncommitted_lost_two_commits),
        cmocka_unit_test(test_uncommitted_lost_sigkill),
        cmocka_unit_test(test_uncommitted_lost_abort),
        cmocka_unit_test(test_never_committed),
        cmocka_unit_test(test_no_overlap_after_reopen),
        cmocka_unit_test(test_free_persists),
        cmocka_unit_test(test_shared_mode),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_fork_child_does_not_commit),
        cmocka_unit_test(test_anon_commit),
    };
    return TU_RUN(tests);
}
