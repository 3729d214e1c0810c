/* test_relocate: a heap file whose recorded base is occupied.
 *
 * Without MMH_RELOCATE the open fails with EADDRINUSE and a message naming
 * the file; with it the heap maps elsewhere and data reached through
 * mmh_root / mmh_offset / mmh_at is intact, and the allocator works on.
 */
#include "testutil.h"

#include <sys/mman.h>

#define LIST_N   3000
#define R_MAGIC  0x52454c4f43415445ull

struct rnode {
    uint64_t next_off;        /* mmh_offset of the next node, 0 at the end */
    uint32_t id;
    uint32_t len;
    unsigned char data[];
};

struct rroot {
    uint64_t magic;
    uint64_t first_off;
    uint64_t count;
};

static uint64_t g_base, g_max, g_root_off;

static char *make_file(const char *name)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 64 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    struct rroot *r = mmh_alloc(h, sizeof *r);
    assert_non_null(r);
    r->magic = R_MAGIC;
    r->count = LIST_N;
    tu_rng rng = { 8 };
    struct rnode *prev = NULL;
    for (uint32_t i = 0; i < LIST_N; i++) {
        uint32_t len = (uint32_t)tu_rand_log(&rng, 1, 5000);
        struct rnode *n = mmh_alloc(h, sizeof *n + len);
        assert_non_null(n);
        n->next_off = 0;
        n->id = i;
        n->len = len;
        tu_fill(n->data, len, i);
        if (prev)
            prev->next_off = mmh_offset(h, n);
        else
            r->first_off = mmh_offset(h, n);
        prev = n;
    }
    assert_int_equal(mmh_set_root(h, r), 0);
    struct mmh_stats st = tu_stats(h);
    g_base = st.base;
    g_max = st.max_size;
    g_root_off = mmh_offset(h, r);
    assert_int_equal(mmh_close(h), 0);
    return path;
}

static int check_list_n(mmh_heap *h, uint64_t extra)
{
    struct mmh_stats st;
    struct rroot *r = tu_root_in_heap(h, sizeof *r, &st);
    CK(r != NULL);
    CK(mmh_offset(h, r) == g_root_off);
    CK(r->magic == R_MAGIC);
    CK(r->count == LIST_N);
    uint64_t off = r->first_off;
    for (uint32_t i = 0; i < LIST_N; i++) {
        struct rnode *n = mmh_at(h, off);
        CK(n != NULL);
        CK(tu_in_heap(&st, n, sizeof *n));
        CK(n->id == i);
        CK(tu_verify(n->data, n->len, i));
        CK(mmh_usable_size(h, n) >= sizeof *n + n->len);
        off = n->next_off;
    }
    CK(off == 0);
    CK(st.allocations == LIST_N + 1 + extra);
    return 0;
}

static int check_list(mmh_heap *h) { return check_list_n(h, 0); }

/* Allocator state must not hold raw pointers: allocate, free, grow. */
static int exercise(mmh_heap *h)
{
    struct mmh_stats st0;
    CK(mmh_stats(h, &st0) == 0);
    void *ps[500];
    tu_rng rng = { 17 };
    for (int i = 0; i < 500; i++) {
        size_t n = tu_rand_log(&rng, 1, 300000);
        ps[i] = mmh_alloc(h, n);
        CK(ps[i] != NULL);
        struct mmh_stats st;
        CK(mmh_stats(h, &st) == 0);
        CK(tu_in_heap(&st, ps[i], n));
        memset(ps[i], 0x6B, n);
    }
    CK(check_list_n(h, 500) == 0);
    for (int i = 0; i < 500; i++)
        mmh_free(h, ps[i]);
    struct mmh_stats st1;
    CK(mmh_stats(h, &st1) == 0);
    CK(st1.allocations == st0.allocations);
    return check_list(h);
}

static void *occupy(uintptr_t at, size_t len)
{
    void *m = mmap((void *)at, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                   MAP_FIXED_NOREPLACE, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (m != (void *)at) {
        munmap(m, len);
        return NULL;
    }
    return m;
}

struct reloc_arg {
    const char *path;
    uintptr_t   occupy_at;
};

static int child_relocate(void *argp)
{
    struct reloc_arg *a = argp;
    void *m = occupy(a->occupy_at, 4096);
    CK(m != NULL);

    errno = 0;
    mmh_heap *h = mmh_open(a->path, NULL);
    int e = errno;
    CK(h == NULL);
    CK(e == EADDRINUSE);
    CK(strstr(mmh_errmsg(), a->path) != NULL);
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    errno = 0;
    h = mmh_open(a->path, &ro);
    e = errno;
    CK(h == NULL);
    CK(e == EADDRINUSE);

    /* the refused open took no lock and left our mapping alone */
    CK(*(volatile char *)m == 0);

    mmh_config cfg = tu_cfg(MMH_RELOCATE, 0, 0);
    h = mmh_open(a->path, &cfg);
    CK(h != NULL);
    struct mmh_stats st;
    CK(mmh_stats(h, &st) == 0);
    CK(st.base != g_base);
    CK(st.max_size == g_max);
    /* the new range does not cover the occupied page */
    CK(!(a->occupy_at >= st.base && a->occupy_at < st.base + st.max_size));
    CK(check_list(h) == 0);
    CK(exercise(h) == 0);
    CK(mmh_commit(h) == 0);
    CK(mmh_close(h) == 0);

    /* reopened relocated again, still intact */
    h = mmh_open(a->path, &cfg);
    CK(h != NULL);
    CK(check_list(h) == 0);
    CK(mmh_close(h) == 0);
    munmap(m, 4096);
    return 0;
}

static void test_relocate_base_taken(void **state)
{
    (void)state;
    char *path = make_file("reloc.heap");
    struct reloc_arg a = { path, (uintptr_t)g_base };
    assert_child_ok(child_relocate, &a);

    /* back here the base is free: it opens (at whatever base) intact */
    mmh_config cfg = tu_cfg(MMH_RELOCATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(check_list(h), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

/* Only a page in the middle of the reservation is taken: still EADDRINUSE. */
static void test_relocate_middle_taken(void **state)
{
    (void)state;
    char *path = make_file("reloc-mid.heap");
    struct reloc_arg a = { path, (uintptr_t)g_base + (uintptr_t)g_max / 2 };
    assert_child_ok(child_relocate, &a);
    unlink(path);
    free(path);
}

/* Without a conflict, MMH_RELOCATE keeps the recorded base. */
static void test_relocate_not_needed(void **state)
{
    (void)state;
    char *path = make_file("reloc-free.heap");
    mmh_config cfg = tu_cfg(MMH_RELOCATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_int_equal(tu_stats(h).base, g_base);
    assert_int_equal(check_list(h), 0);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relocate_base_taken),
        cmocka_unit_test(test_relocate_middle_taken),
        cmocka_unit_test(test_relocate_not_needed),
    };
    return TU_RUN(tests);
}
