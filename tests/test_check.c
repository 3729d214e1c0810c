/* test_check: the mmheap command.  mmheap check passes a heap with every
 * kind of metadata in it (small pages of many classes, parked pages,
 * blocks freed by another thread and not yet collected, large and huge
 * blocks, free spans and free segment runs, a root) and catches each of a
 * set of damaged copies, one metadata field broken at a time; info reports
 * what the heap holds, its log's commits applied; recover checkpoints the
 * log and says what it did; bad usage and unreadable files get their documented exit codes.
 *
 * Linked to the library's objects for the layout of the metadata and the
 * header checksum; the command is MMH_MMHEAP_TOOL (make check sets it). */
#include "testutil.h"
#include "layout.h"

#include <stdbool.h>

#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>

/* The header of an open heap, as it is in memory. */
static const mmh_hdr *hdr_of(mmh_heap *h)
{
    struct mmh_stats st;
    assert_int_equal(mmh_stats(h, &st), 0);
    return (const mmh_hdr *)(uintptr_t)st.base;
}

static char good_path[PATH_MAX];   /* the heap every test starts from      */
static void *root_block;

/* ---- the heap under test --------------------------------------------- */

typedef struct remote_arg {
    mmh_heap *h;
    void    **blocks;
    size_t    n;
    pthread_barrier_t *freed, *committed;
} remote_arg;

/* A second thread allocates blocks that the main thread frees: its pages
 * hold remote frees it has not collected when the heap is committed. */
static void *remote_owner(void *p)
{
    remote_arg *a = p;
    for (size_t i = 0; i < a->n; i++)
        a->blocks[i] = mmh_alloc(a->h, 48 + (i % 4) * 16);
    pthread_barrier_wait(a->freed);     /* main allocates and frees */
    pthread_barrier_wait(a->committed); /* main commits */
    return NULL;
}

static int tool(const char *const args[], char *out, size_t size)
{
    int rc = tu_run_tool(args, out, size);
    if (rc == -2)
        fail_msg("MMH_MMHEAP_TOOL is not set: run through make check");
    return rc;
}

enum { GOOD_NAMES = 40 };

static void build_good_heap(void)
{
    tu_dir_join(good_path, sizeof good_path, "good.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 256 * MiB);
    mmh_heap *h = mmh_open(good_path, &cfg);
    assert_non_null(h);
    tu_rng rng = { 42 };
    enum { SMALL = 6000, REMOTE = 3000 };
    void **small = calloc(SMALL, sizeof *small), **remote = calloc(REMOTE, sizeof *remote);
    assert_non_null(small);
    assert_non_null(remote);
    pthread_barrier_t freed, committed;
    pthread_barrier_init(&freed, NULL, 2);
    pthread_barrier_init(&committed, NULL, 2);
    remote_arg ra = { h, remote, REMOTE, &freed, &committed };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, remote_owner, &ra), 0);
    for (size_t i = 0; i < SMALL; i++) {
        small[i] = mmh_alloc(h, tu_rand_log(&rng, 1, 100 * KiB));
        assert_non_null(small[i]);
    }
    for (size_t i = 0; i < SMALL; i += 2) /* half: partly used pages */
        mmh_free(h, small[i]);
    void *large[6], *huge[3];
    for (int i = 0; i < 6; i++)
        assert_non_null(large[i] = mmh_alloc(h, (size_t)(i + 1) * 300 * KiB));
    assert_non_null(huge[0] = mmh_alloc(h, 5 * MiB));
    assert_non_null(huge[1] = mmh_aligned_alloc(h, 8 * MiB, 9 * MiB));
    assert_non_null(huge[2] = mmh_alloc(h, 6 * MiB));
    mmh_free(h, large[1]);
    mmh_free(h, large[3]);
    mmh_free(h, huge[1]); /* a free segment run between huge blocks */
    root_block = small[1];
    assert_int_equal(mmh_set_root(h, root_block), 0);
    for (int i = 0; i < GOOD_NAMES; i++) { /* and some named, one removed */
        char name[32];
        snprintf(name, sizeof name, "block-%03d", i);
        assert_int_equal(mmh_name_set(h, name, small[2 * i + 1]), 0);
    }
    assert_int_equal(mmh_name_set(h, "large", large[0]), 0);
    assert_int_equal(mmh_name_set(h, "block-007", NULL), 0);
    pthread_barrier_wait(&freed);
    for (size_t i = 0; i < REMOTE; i += 3)
        mmh_free(h, remote[i]);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_checkpoint(h), 0);
    /* The committed file, with the remote frees pending, is the one kept:
     * copy it before the thread's exit and close tidy up.  The copy names
     * no log (it has none beside it, and needs none: it is checkpointed). */
    char copy[PATH_MAX];
    tu_dir_join(copy, sizeof copy, "good.copy");
    size_t len = 0;
    void *bytes = tu_read_file(good_path, &len);
    assert_non_null(bytes);
    ((mmh_hdr *)bytes)->wal_gen = 0;
    ((mmh_hdr *)bytes)->checksum = mmh_format_checksum(bytes);
    assert_int_equal(tu_write_file(copy, bytes, len), 0);
    free(bytes);
    pthread_barrier_wait(&committed);
    pthread_join(t, NULL);
    assert_int_equal(mmh_close(h), 0);
    assert_int_equal(rename(copy, good_path), 0);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s.wal", good_path);
    assert_int_equal(unlink(wal), 0);
    pthread_barrier_destroy(&freed);
    pthread_barrier_destroy(&committed);
    free(small);
    free(remote);
}

static int setup(void **state)
{
    (void)state;
    if (!getenv("MMH_MMHEAP_TOOL")) {
        fprintf(stderr, "test_check: MMH_MMHEAP_TOOL is not set (make check sets it)\n");
        return -1;
    }
    return 0;
}

/* ---- a mapping of a heap file, to read and damage it ---------------------- */

typedef struct mapped {
    char   *base;
    size_t  size;
    mmh_hdr *hdr;
    uint32_t *segmap;
} mapped;

/* A copy of the heap file src, mapped shared: stores go to the copy. */
static mapped map_copy_of(const char *src, const char *name, char *path, size_t path_size)
{
    tu_dir_join(path, path_size, name);
    size_t len = 0;
    void *bytes = tu_read_file(src, &len);
    assert_non_null(bytes);
    assert_int_equal(tu_write_file(path, bytes, len), 0);
    free(bytes);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    mapped m = { .size = len };
    m.base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(m.base != MAP_FAILED);
    close(fd);
    m.hdr = (mmh_hdr *)m.base;
    m.segmap = (uint32_t *)(m.base + m.hdr->segmap_off);
    return m;
}

static mapped map_copy(const char *name, char *path, size_t path_size)
{
    return map_copy_of(good_path, name, path, path_size);
}

static void unmap(mapped *m, bool fix_checksum)
{
    if (fix_checksum) /* a crafted file: the header's own check passes */
        m->hdr->checksum = mmh_format_checksum(m->hdr);
    assert_int_equal(munmap(m->base, m->size), 0);
}

static mmh_segment *seg(const mapped *m, size_t i)
{
    return (mmh_segment *)(m->base + (i << MMH_SEG_SHIFT) + MMH_SEGHDR_OFFSET);
}

static uint64_t page_off(const mapped *m, const mmh_page *pg)
{
    return (uint64_t)((const char *)pg - m->base);
}

static uint64_t page_start(const mapped *m, const mmh_page *pg)
{
    uint64_t off = page_off(m, pg), s = off & ~(uint64_t)MMH_SEG_MASK;
    size_t idx = (off - s - MMH_SEGHDR_OFFSET - offsetof(mmh_segment, pages)) / sizeof *pg;
    return s + ((uint64_t)idx << MMH_SLICE_SHIFT);
}

/* The first span head of the given kind in a sliced segment, meeting want
 * (NULL: any). */
static mmh_page *find_span(const mapped *m, unsigned kind, bool (*want)(const mmh_page *))
{
    for (size_t i = 0; i < (m->hdr->extent >> MMH_SEG_SHIFT); i++) {
        if (m->segmap[i] != MMH_SEGMAP(MMH_SEGMAP_SLICED, 0))
            continue;
        mmh_segment *s = seg(m, i);
        for (size_t idx = s->first_slice; idx < MMH_SEG_SLICES; idx += s->pages[idx].slice_count) {
            mmh_page *pg = &s->pages[idx];
            if (pg->kind == kind && (!want || want(pg)))
                return pg;
        }
    }
    fail_msg("no span of kind %u in the test heap", kind);
    return NULL;
}

static bool has_free_blocks(const mmh_page *pg) { return pg->free && pg->used > 2; }
static bool has_remote_frees(const mmh_page *pg) { return pg->xfree > MMH_XF_FLAGS; }
static bool is_parked(const mmh_page *pg) { return pg->flags & MMH_PF_PARKED; }
static bool in_ring(const mmh_page *pg) { return !(pg->flags & MMH_PF_PARKED) && pg->next; }
static bool several_slices(const mmh_page *pg) { return pg->slice_count > 1; }

/* ---- the good heap ------------------------------------------------------- */

static void test_good_heap_is_sound(void **state)
{
    (void)state;
    build_good_heap();
    char out[8192];
    const char *args[] = { "check", good_path, NULL };
    int rc = tool(args, out, sizeof out);
    if (rc != 0)
        fail_msg("mmheap check of a sound heap: exit %d\n%s", rc, out);
    assert_non_null(strstr(out, "sound"));
    /* The heap has what the damage tests need. */
    mapped m;
    char path[PATH_MAX];
    m = map_copy("probe.heap", path, sizeof path);
    find_span(&m, MMH_PAGE_SMALL, has_remote_frees);
    find_span(&m, MMH_PAGE_SMALL, is_parked);
    find_span(&m, MMH_PAGE_FREE, NULL);
    find_span(&m, MMH_PAGE_LARGE, NULL);
    assert_true(m.hdr->free_segs != 0);
    unmap(&m, false);
    unlink(path);

    const char *q[] = { "check", "--quiet", good_path, NULL };
    assert_int_equal(tool(q, out, sizeof out), 0);
    assert_string_equal(out, "");
    const char *j[] = { "check", "--json", good_path, NULL };
    assert_int_equal(tool(j, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"sound\": true"));
    assert_non_null(strstr(out, "\"problem_count\": 0"));
}

static void test_info(void **state)
{
    (void)state;
    char out[16384];
    const char *args[] = { "info", good_path, NULL };
    assert_int_equal(tool(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "root          offset 0x"));
    assert_non_null(strstr(out, "format        version 7"));
    assert_non_null(strstr(out, "commit        1"));
    assert_non_null(strstr(out, "size class"));
    assert_null(strstr(out, "problems"));
    const char *j[] = { "info", "--json", good_path, NULL };
    assert_int_equal(tool(j, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"commit_seq\": 1"));
    assert_non_null(strstr(out, "\"huge_blocks\": 2"));
    assert_non_null(strstr(out, "\"large_blocks\": 4"));
    assert_non_null(strstr(out, "\"wal\": {\"state\": \"none\""));
    assert_non_null(strstr(out, "\"problem_count\": 0"));
    assert_non_null(strstr(out, "{\"class\": 3, \"block_size\": 48"));
}

/* ---- damaged heaps: one field at a time ------------------------------------ */

typedef struct damage {
    const char *name;
    bool        header;    /* a header field: recompute its checksum     */
    const char *expect;    /* in the report                              */
    void      (*apply)(mapped *m);
} damage;

static void d_segment_magic(mapped *m) { seg(m, 0)->magic ^= 1; }
static void d_span_length(mapped *m) { find_span(m, MMH_PAGE_LARGE, NULL)->slice_count += 70; }
static void d_back_offset(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_LARGE, several_slices);
    pg[1].slice_offset = 0;
}
static void d_free_list_outside(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_SMALL, has_free_blocks);
    pg->free = page_start(m, pg) + MMH_SLICE_SIZE * MMH_MEDIUM_SLICES;
}
static void d_free_list_misaligned(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_SMALL, has_free_blocks);
    pg->free += 8;
}
static void d_free_list_cycle(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_SMALL, has_free_blocks);
    *(uint64_t *)(m->base + pg->free) = pg->free;
}
static void d_used_count(mapped *m) { find_span(m, MMH_PAGE_SMALL, has_free_blocks)->used++; }
static void d_block_size(mapped *m) { find_span(m, MMH_PAGE_SMALL, NULL)->block_size += 16; }
static void d_size_class(mapped *m) { find_span(m, MMH_PAGE_SMALL, NULL)->cls = MMH_CLASSES; }
static void d_remote_list(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_SMALL, has_remote_frees);
    uint64_t x = pg->xfree;
    pg->xfree = (x & MMH_XF_FLAGS) | 0x10; /* inside the header */
}
static void d_page_slot(mapped *m) { find_span(m, MMH_PAGE_SMALL, NULL)->slot_id = 999; }
static void d_large_block(mapped *m) { find_span(m, MMH_PAGE_LARGE, NULL)->free += 16; }
static void d_span_kind(mapped *m) { find_span(m, MMH_PAGE_LARGE, NULL)->kind = 9; }
static void d_span_bin_entry(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_FREE, NULL);
    m->hdr->span_bins[pg->slice_count] = page_off(m, find_span(m, MMH_PAGE_LARGE, NULL));
}
static void d_span_bitmap(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_FREE, NULL);
    m->hdr->span_bitmap &= ~(1ull << pg->slice_count);
}
static void d_free_span_prev(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_FREE, NULL);
    pg->prev = page_off(m, pg);
}
static void d_uncoalesced(mapped *m)
{
    /* A free span cut in two free spans. */
    mmh_page *pg = find_span(m, MMH_PAGE_FREE, several_slices);
    uint16_t n = pg->slice_count;
    pg->slice_count = 1;
    memset(&pg[1], 0, sizeof *pg);
    pg[1].slice_count = (uint16_t)(n - 1);
    pg[1].kind = MMH_PAGE_FREE;
}
static void d_free_run_list(mapped *m) { m->hdr->free_segs += sizeof(mmh_page); }
static void d_free_run_length(mapped *m)
{
    seg(m, (m->hdr->free_segs >> MMH_SEG_SHIFT))->nsegs += 1;
}
static void d_segmap_huge_inside(mapped *m)
{
    for (size_t i = 0; i < (m->hdr->extent >> MMH_SEG_SHIFT); i++)
        if (MMH_SEGMAP_KIND(m->segmap[i]) == MMH_SEGMAP_HUGE_IN) {
            m->segmap[i] = MMH_SEGMAP(MMH_SEGMAP_HUGE_IN, 7);
            return;
        }
    fail_msg("no huge run of two segments or more");
}
static void d_segmap_past_end(mapped *m)
{
    m->segmap[(m->hdr->extent >> MMH_SEG_SHIFT) + 1] = MMH_SEGMAP(MMH_SEGMAP_SLICED, 0);
}
static void d_huge_block(mapped *m)
{
    for (size_t i = 0; i < (m->hdr->extent >> MMH_SEG_SHIFT); i++)
        if (MMH_SEGMAP_KIND(m->segmap[i]) == MMH_SEGMAP_HUGE) {
            seg(m, i)->pages[1].free = ((uint64_t)i << MMH_SEG_SHIFT) + 8;
            return;
        }
}
static void d_ring_link(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_SMALL, in_ring);
    pg->next = page_off(m, find_span(m, MMH_PAGE_FREE, NULL));
}
static void d_parked_in_ring(mapped *m)
{
    find_span(m, MMH_PAGE_SMALL, in_ring)->flags |= MMH_PF_PARKED;
}
static void d_root_in_free_memory(mapped *m)
{
    m->hdr->root = page_start(m, find_span(m, MMH_PAGE_FREE, NULL)) + 64;
}
/* The slot that keeps a cached span (the test heap's threads freed some;
 * which thread's slot is which depends on the build). */
static mmh_slot *first_slot(mapped *m)
{
    mmh_page *pg = find_span(m, MMH_PAGE_CACHED, NULL);
    assert_true(pg->slot_id >= 1 && pg->slot_id <= MMH_SLOTS);
    mmh_slot *slot = (mmh_slot *)(m->base + m->hdr->slots_off) + (pg->slot_id - 1);
    assert_true(slot->spans[0] != 0);
    return slot;
}
static void d_cache_entry(mapped *m)
{
    first_slot(m)->spans[0] = page_off(m, find_span(m, MMH_PAGE_FREE, NULL));
}
static void d_cache_unlisted(mapped *m)
{
    mmh_slot *slot = first_slot(m);
    memset(slot->spans, 0, sizeof slot->spans);
}
static void d_empty_page(mapped *m) { m->hdr->empty_page.free = 4096; }

/* The names table of the copy, and its first slot holding a name. */
static mmh_names *names_of(mapped *m)
{
    assert_true(m->hdr->names != 0);
    return (mmh_names *)(m->base + m->hdr->names);
}
static uint64_t *first_name_slot(mapped *m)
{
    mmh_names *t = names_of(m);
    for (uint64_t i = 0; i < t->cap; i++)
        if (t->slot[i] > MMH_NAME_GONE)
            return &t->slot[i];
    fail_msg("no name in the test heap");
    return NULL;
}
static mmh_name_rec *first_name(mapped *m)
{
    return (mmh_name_rec *)(m->base + (*first_name_slot(m) & MMH_NAME_OFF_MASK));
}
static void d_names_magic(mapped *m) { names_of(m)->magic ^= 1; }
static void d_names_count(mapped *m) { names_of(m)->count--; }
static void d_names_hash(mapped *m) { *first_name_slot(m) ^= (uint64_t)1 << 60; }
static void d_names_length(mapped *m) { first_name(m)->len--; }
static void d_names_value(mapped *m) { first_name(m)->value += 8; }
/* A name moved to just before its home slot, where that slot is empty: a
 * probe from home reaches an empty slot first. */
static void d_names_probe(mapped *m)
{
    mmh_names *t = names_of(m);
    uint64_t mask = t->cap - 1;
    for (uint64_t i = 0; i < t->cap; i++) {
        if (t->slot[i] <= MMH_NAME_GONE)
            continue;
        mmh_name_rec *r = (mmh_name_rec *)(m->base + (t->slot[i] & MMH_NAME_OFF_MASK));
        uint64_t before = (mmh_hash64(r->name, r->len, t->seed) - 1) & mask;
        if (t->slot[before] == 0) {
            t->slot[before] = t->slot[i];
            t->slot[i] = MMH_NAME_GONE;
            return;
        }
    }
    fail_msg("no name with an empty slot before its home");
}

static const damage damages[] = {
    { "names table magic", false, "bad magic", d_names_magic },
    { "names count", false, "counts say", d_names_count },
    { "name's hash bits", false, "hash bits do not match", d_names_hash },
    { "name's length", false, "does not match it", d_names_length },
    { "named block", false, "starts no block", d_names_value },
    { "name out of probe order", false, "lookups miss it", d_names_probe },
    { "segment magic", false, "bad sliced segment", d_segment_magic },
    { "span length", false, "no span starts here", d_span_length },
    { "span back offset", false, "do not point back", d_back_offset },
    { "free list leaves the page", false, "leaves the page", d_free_list_outside },
    { "free list misaligned", false, "not at a block boundary", d_free_list_misaligned },
    { "free list cycle", false, "on the free lists twice", d_free_list_cycle },
    { "used count", false, "do not add up", d_used_count },
    { "block size", false, "wants", d_block_size },
    { "size class", false, "out of range", d_size_class },
    { "remote free list", false, "remote free list", d_remote_list },
    { "owning slot", false, "not a slot in use", d_page_slot },
    { "large block offset", false, "is not its start", d_large_block },
    { "span kind", false, "does not belong", d_span_kind },
    { "span bin entry", true, "is not a free span", d_span_bin_entry },
    { "span bitmap", true, "bitmap bit", d_span_bitmap },
    { "free span back link", false, "links back", d_free_span_prev },
    { "free span not coalesced", false, "not coalesced", d_uncoalesced },
    { "free run list", true, "not the head of a free run", d_free_run_list },
    { "free run length", false, "its header says", d_free_run_length },
    { "segment map inside a huge run", false, "inside the run", d_segmap_huge_inside },
    { "segment map past the end", false, "past the heap's end", d_segmap_past_end },
    { "huge block offset", false, "not inside its first segment", d_huge_block },
    { "class ring link", false, "ring link", d_ring_link },
    { "parked page in a ring", false, "a parked page", d_parked_in_ring },
    { "root in free memory", true, "root", d_root_in_free_memory },
    { "span cache entry", false, "not a cached span of the slot", d_cache_entry },
    { "cached span not listed", false, "span caches list", d_cache_unlisted },
    { "empty page", true, "empty page", d_empty_page },
};

static void test_damaged_heaps(void **state)
{
    (void)state;
    char out[16384], path[PATH_MAX];
    for (size_t i = 0; i < sizeof damages / sizeof *damages; i++) {
        const damage *d = &damages[i];
        mapped m = map_copy("damaged.heap", path, sizeof path);
        d->apply(&m);
        unmap(&m, d->header);
        const char *args[] = { "check", path, NULL };
        int rc = tool(args, out, sizeof out);
        if (rc != 1 || !strstr(out, d->expect))
            fail_msg("damage '%s': exit %d (want 1), report lacks '%s':\n%s", d->name, rc,
                     d->expect, out);
        const char *j[] = { "check", "--json", path, NULL };
        assert_int_equal(tool(j, out, sizeof out), 1);
        assert_non_null(strstr(out, "\"sound\": false"));
        unlink(path);
    }
}

/* mmheap ls lists the names sorted, with their blocks; a damaged table is
 * check's to report.  The library refuses a damaged record at lookup. */
static void test_ls(void **state)
{
    (void)state;
    char out[16384], path[PATH_MAX];
    const char *args[] = { "ls", good_path, NULL };
    assert_int_equal(tool(args, out, sizeof out), 0);
    char *a = strstr(out, "  block-000\n"), *b = strstr(out, "  block-001\n");
    assert_true(a && b && a < b);
    assert_null(strstr(out, "block-007"));
    assert_non_null(strstr(out, "  large\n"));
    const char *j[] = { "ls", "--json", good_path, NULL };
    assert_int_equal(tool(j, out, sizeof out), 0);
    const char *large = strstr(out, "{\"name\": \"large\", ");
    unsigned long long off = 0, size = 0;
    assert_non_null(large);
    assert_int_equal(sscanf(large, "{\"name\": \"large\", \"offset\": %llu, \"size\": %llu}",
                            &off, &size), 2);
    assert_true(off % MMH_MIN_ALIGN == 0 && size >= 300 * KiB && size < 400 * KiB);

    mapped m = map_copy("badname.heap", path, sizeof path);
    char name[MMH_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", first_name(&m)->name);
    d_names_length(&m);
    unmap(&m, false);
    const char *bad[] = { "ls", path, NULL };
    assert_int_equal(tool(bad, out, sizeof out), 1);
    assert_non_null(strstr(out, "run mmheap check"));
    tu_heap_checks = false;
    mmh_heap *h = mmh_open(path, NULL);
    assert_non_null(h);
    errno = 0;
    assert_null(mmh_name_get(h, name));
    assert_int_equal(errno, EBADMSG);
    assert_errmsg_contains("corrupt names table");
    assert_int_equal(mmh_close(h), 0);
    tu_heap_checks = true;
    unlink(path);
}

/* A crafted header with base 0 (checksum fixed up): info and check refuse
 * the file, naming the problem, and exit 3. */
static void test_crafted_base(void **state)
{
    (void)state;
    char out[16384], path[PATH_MAX];
    mapped m = map_copy("base0.heap", path, sizeof path);
    m.hdr->base = 0;
    unmap(&m, true);
    static const char *const cmds[] = { "info", "check" };
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = { cmds[i], path, NULL };
        int rc = tool(args, out, sizeof out);
        if (rc != 3 || !strstr(out, "outside the user address space") || !strstr(out, path))
            fail_msg("mmheap %s of a heap with base 0: exit %d (want 3):\n%s", cmds[i], rc, out);
    }
    unlink(path);
}

/* ---- slot tables after the first ------------------------------------------- */

enum { TABLE_THREADS = MMH_SLOTS + 8 };

static char tables_path[PATH_MAX]; /* a heap with two slot tables */

typedef struct table_arg {
    mmh_heap          *h;
    size_t             i;
    sem_t             *bound;
    pthread_barrier_t *all;
} table_arg;

/* Thread i binds the (i + 1)th slot or a later one (they bind one at a
 * time, and hold their slots until all have); those past the first table
 * leave a block behind, in a page of their slot. */
static void *table_thread(void *p)
{
    table_arg *a = p;
    void *block = mmh_alloc(a->h, 32);
    sem_post(a->bound);
    pthread_barrier_wait(a->all);
    if (a->i < MMH_SLOTS)
        mmh_free(a->h, block);
    return NULL;
}

static void make_tables_heap(void)
{
    tu_dir_join(tables_path, sizeof tables_path, "tables.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(tables_path, &cfg);
    assert_non_null(h);
    static table_arg args[TABLE_THREADS];
    static pthread_t th[TABLE_THREADS];
    sem_t bound;
    pthread_barrier_t all;
    pthread_attr_t attr;
    assert_int_equal(sem_init(&bound, 0, 0), 0);
    assert_int_equal(pthread_barrier_init(&all, NULL, TABLE_THREADS + 1), 0);
    pthread_attr_init(&attr);
    assert_int_equal(pthread_attr_setstacksize(&attr, 64 * KiB), 0);
    for (size_t i = 0; i < TABLE_THREADS; i++) {
        args[i] = (table_arg){ h, i, &bound, &all };
        assert_int_equal(pthread_create(&th[i], &attr, table_thread, &args[i]), 0);
        sem_wait(&bound);
    }
    pthread_barrier_wait(&all);
    for (size_t i = 0; i < TABLE_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(tu_stats(h).slots, 2 * MMH_SLOTS);
    assert_int_equal(mmh_close(h), 0); /* commits and checkpoints */
    /* Copies name no log, as the good heap's do. */
    mapped m = map_copy_of(tables_path, "tables.heap", tables_path, sizeof tables_path);
    m.hdr->wal_gen = 0;
    unmap(&m, true);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s.wal", tables_path);
    assert_int_equal(unlink(wal), 0);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&all);
    sem_destroy(&bound);
}

static void d_table_outside(mapped *m) { m->hdr->slot_tables[0] = m->hdr->extent; }
static void d_table_count(mapped *m) { m->hdr->nslots++; }
static void d_table_moved(mapped *m)
{
    uint64_t off = m->hdr->slot_tables[0];
    m->hdr->slot_tables[0] = (off & MMH_SEG_MASK) < MMH_SEG_SIZE / 2 ? off + MMH_SLICE_SIZE
                                                                     : off - MMH_SLICE_SIZE;
}
static void d_table_number(mapped *m) { find_span(m, MMH_PAGE_SLOTS, NULL)->used = 2; }
static void d_page_slot_unused(mapped *m)
{
    find_span(m, MMH_PAGE_SMALL, NULL)->slot_id = m->hdr->slots_hwm + 1;
}

typedef struct table_damage {
    damage d;
    int    tool_rc; /* 1: check reports it; 3: the header is refused */
} table_damage;

static const table_damage table_damages[] = {
    { { "slot table outside the heap", true, "slot table 1 at offset", d_table_outside }, 3 },
    { { "slot count", true, "are not whole tables", d_table_count }, 3 },
    { { "slot table moved", true, "names 1 slot tables after the first, the segments hold 0",
        d_table_moved }, 1 },
    { { "slot table number", false, "does not name it as that table", d_table_number }, 1 },
    { { "page of an unused slot", false, "not a slot in use", d_page_slot_unused }, 1 },
};

/* A heap with a second slot table passes; each damage to its tables is
 * reported by mmheap check and refused by mmh_open (EBADMSG, naming the
 * file), never followed into a crash. */
static void test_slot_tables(void **state)
{
    (void)state;
    char out[16384], path[PATH_MAX];
    if (tu_under_valgrind()) /* valgrind runs at most 500 threads */
        skip();
    make_tables_heap();
    const char *c[] = { "check", tables_path, NULL };
    assert_int_equal(tool(c, out, sizeof out), 0);
    const char *i[] = { "info", tables_path, NULL };
    assert_int_equal(tool(i, out, sizeof out), 0);
    if (!strstr(out, "of 2048 (2 tables;"))
        fail_msg("info of a heap with two slot tables:\n%s", out);
    for (size_t k = 0; k < sizeof table_damages / sizeof *table_damages; k++) {
        const table_damage *td = &table_damages[k];
        mapped m = map_copy_of(tables_path, "damaged.heap", path, sizeof path);
        td->d.apply(&m);
        unmap(&m, td->d.header);
        const char *args[] = { "check", path, NULL };
        int rc = tool(args, out, sizeof out);
        if (rc != td->tool_rc || !strstr(out, td->d.expect))
            fail_msg("damage '%s': exit %d (want %d), report lacks '%s':\n%s", td->d.name, rc,
                     td->tool_rc, td->d.expect, out);
        tu_heap_checks = false;
        errno = 0;
        mmh_heap *h = mmh_open(path, NULL);
        tu_heap_checks = true;
        if (h || errno != EBADMSG || !strstr(mmh_errmsg(), path))
            fail_msg("damage '%s': mmh_open gave %p, errno %d: %s", td->d.name, (void *)h,
                     errno, mmh_errmsg());
        unlink(path);
    }
    unlink(tables_path);
}

/* ---- logs: what check, info and recover make of them ------------------------ */

static int pending_commit_child(void *arg)
{
    mmh_heap *h = mmh_open(arg, NULL);
    CK(h != NULL);
    unsigned char *p = mmh_root(h);
    CK(p != NULL);
    memset(p + 4096, 0xa5, 8192);
    CK(mmh_alloc(h, 70000) != NULL);
    CK(mmh_commit(h) == 0);
    return 0; /* no close: the commit is only in the log */
}

/* A heap whose last commit is durable in its log and not yet in the heap
 * file: what a crash soon after a commit leaves.  *seq_before: the
 * heap file's commit. */
static void make_pending_log(const char *path, uint64_t *seq_before)
{
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 64 * MiB);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *p = mmh_alloc(h, 200 * KiB);
    assert_non_null(p);
    memset(p, 0x5a, 200 * KiB);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_close(h), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, seq_before, sizeof *seq_before, offsetof(mmh_hdr, commit_seq)),
                     sizeof *seq_before);
    close(fd);
    assert_child_ok(pending_commit_child, (void *)path);
}

static void test_log_applied(void **state)
{
    (void)state;
    char *path = tu_path("pending.heap"), out[16384];
    uint64_t seq;
    make_pending_log(path, &seq);
    const char *info[] = { "info", "--json", path, NULL };
    assert_int_equal(tool(info, out, sizeof out), 0);
    char want[96];
    snprintf(want, sizeof want, "\"commits\": 1, \"torn\": false, \"first_seq\": %llu",
             (unsigned long long)seq + 1);
    if (!strstr(out, want))
        fail_msg("info: %s", out);
    snprintf(want, sizeof want, "\"commit_seq\": %llu", (unsigned long long)seq + 1);
    assert_non_null(strstr(out, want)); /* as the next open will see it */
    const char *check[] = { "check", path, NULL };
    assert_int_equal(tool(check, out, sizeof out), 0);
    assert_non_null(strstr(out, "with its log applied"));
    /* A reader sees the commit too, laid over its mapping. */
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    mmh_heap *h = mmh_open(path, &ro);
    if (!h)
        fail_msg("read-only open with a commit in the log: %s", mmh_errmsg());
    unsigned char *p = mmh_root(h);
    assert_int_equal(p[4096], 0xa5);
    assert_int_equal(hdr_of(h)->commit_seq, seq + 1);
    assert_int_equal(mmh_close(h), 0);
    const char *rec[] = { "recover", path, NULL };
    assert_int_equal(tool(rec, out, sizeof out), 0);
    snprintf(want, sizeof want, "checkpointed commits %llu to %llu", (unsigned long long)seq + 1,
             (unsigned long long)seq + 1);
    if (!strstr(out, want))
        fail_msg("recover: %s", out);
    assert_int_equal(tool(rec, out, sizeof out), 0);
    assert_non_null(strstr(out, "every commit is checkpointed"));
    /* The heap file itself holds the commit now. */
    int fd = open(path, O_RDONLY);
    uint64_t file_seq = 0;
    assert_int_equal(pread(fd, &file_seq, sizeof file_seq, offsetof(mmh_hdr, commit_seq)),
                     sizeof file_seq);
    close(fd);
    assert_int_equal(file_seq, seq + 1);
    h = mmh_open(path, &ro);
    assert_non_null(h);
    p = mmh_root(h);
    assert_int_equal(p[0], 0x5a);
    assert_int_equal(p[4096], 0xa5);
    assert_int_equal(hdr_of(h)->commit_seq, seq + 1);
    assert_int_equal(mmh_close(h), 0);
    free(path);
}

/* The log's header in force and the first commit after its mark. */
static off_t first_data_after_mark(const char *wpath)
{
    int fd = open(wpath, O_RDONLY);
    assert_true(fd >= 0);
    mmh_wal_hdr slot[2];
    assert_int_equal(pread(fd, &slot[0], sizeof slot[0], 0), sizeof slot[0]);
    assert_int_equal(pread(fd, &slot[1], sizeof slot[1], MMH_WAL_SLOT), sizeof slot[1]);
    const mmh_wal_hdr *w = &slot[slot[1].counter > slot[0].counter];
    mmh_wal_head head;
    assert_int_equal(pread(fd, &head, sizeof head, (off_t)w->mark), sizeof head);
    assert_memory_equal(head.magic, MMH_WAL_COMMIT, 8);
    close(fd);
    return (off_t)(w->mark + head.head_bytes);
}

static void test_log_torn(void **state)
{
    (void)state;
    char *path = tu_path("torn.heap"), out[16384], wpath[PATH_MAX + 16];
    uint64_t seq;
    make_pending_log(path, &seq);
    snprintf(wpath, sizeof wpath, "%s.wal", path);
    off_t data = first_data_after_mark(wpath);
    int fd = open(wpath, O_RDWR);
    assert_true(fd >= 0);
    char byte;
    assert_int_equal(pread(fd, &byte, 1, data), 1); /* the first record's bytes */
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, data), 1);
    close(fd);
    const char *info[] = { "info", path, NULL };
    assert_int_equal(tool(info, out, sizeof out), 0);
    char want[128];
    snprintf(want, sizeof want, "commit %llu after them is torn", (unsigned long long)seq + 1);
    if (!strstr(out, want))
        fail_msg("info: %s", out);
    const char *rec[] = { "recover", "--json", path, NULL };
    assert_int_equal(tool(rec, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"action\": \"none\""));
    const char *check[] = { "check", path, NULL };
    assert_int_equal(tool(check, out, sizeof out), 0);
    /* The heap stays at its last whole commit, and takes new ones. */
    mmh_heap *h = mmh_open(path, NULL);
    assert_non_null(h);
    unsigned char *p = mmh_root(h);
    assert_int_equal(p[4096], 0x5a);
    assert_int_equal(hdr_of(h)->commit_seq, seq);
    p[4096] = 0x11;
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    h = mmh_open(path, &ro);
    assert_non_null(h);
    p = mmh_root(h);
    assert_int_equal(p[4096], 0x11);
    assert_int_equal(mmh_close(h), 0);
    free(path);
}

/* ---- usage and unreadable files --------------------------------------------- */

static void test_usage_and_errors(void **state)
{
    (void)state;
    char out[16384];
    const char *none[] = { NULL };
    assert_int_equal(tool(none, out, sizeof out), 2);
    const char *unknown[] = { "frobnicate", "x", NULL };
    assert_int_equal(tool(unknown, out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    const char *nofile[] = { "check", NULL };
    assert_int_equal(tool(nofile, out, sizeof out), 2);
    const char *badopt[] = { "info", "--bogus", good_path, NULL };
    assert_int_equal(tool(badopt, out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown option '--bogus'"));
    const char *badnum[] = { "check", "--max-problems", "many", good_path, NULL };
    assert_int_equal(tool(badnum, out, sizeof out), 2);
    static const char *const cmds[] = { "info", "check", "recover" };
    for (size_t i = 0; i < 3; i++) {
        const char *help[] = { cmds[i], "--help", NULL };
        assert_int_equal(tool(help, out, sizeof out), 0);
        assert_non_null(strstr(out, "usage: mmheap"));
        assert_non_null(strstr(out, "Exit status"));
    }
    const char *missing[] = { "check", "/nonexistent/dir/x.heap", NULL };
    assert_int_equal(tool(missing, out, sizeof out), 3);
    assert_non_null(strstr(out, "/nonexistent/dir/x.heap"));
    char *text = tu_path("text.file");
    assert_int_equal(tu_write_file(text, "hello, world\n", 13), 0);
    const char *nh[] = { "check", text, NULL };
    assert_int_equal(tool(nh, out, sizeof out), 3);
    assert_non_null(strstr(out, "not an mmheap heap file"));
    const char *rec[] = { "recover", text, NULL };
    assert_int_equal(tool(rec, out, sizeof out), 3);
    const char *json[] = { "info", "--json", text, NULL };
    assert_int_equal(tool(json, out, sizeof out), 3);
    assert_non_null(strstr(out, "\"error\": "));
    /* A heap open by a writer is refused, not read mid-commit. */
    mmh_config cfg = tu_cfg(0, 0, 0);
    mmh_heap *h = mmh_open(good_path, &cfg);
    assert_non_null(h);
    const char *busy[] = { "check", good_path, NULL };
    assert_int_equal(tool(busy, out, sizeof out), 3);
    assert_non_null(strstr(out, "in use by a writer"));
    assert_int_equal(mmh_close(h), 0);
    unlink(text);
    free(text);
}

/* ---- mmh_check on an open heap ---------------------------------------------- */

/* The descriptor of the span that holds p (a block of a sliced segment). */
static mmh_page *span_of(void *p)
{
    uintptr_t seg = ((uintptr_t)p - 1) & ~(uintptr_t)MMH_SEG_MASK;
    mmh_segment *s = (mmh_segment *)(seg + MMH_SEGHDR_OFFSET);
    mmh_page *pg = &s->pages[((uintptr_t)p - seg) >> MMH_SLICE_SHIFT];
    return pg - pg->slice_offset;
}

static void assert_check_fails(mmh_heap *h, const char *what)
{
    errno = 0;
    assert_int_equal(mmh_check(h), -1);
    assert_int_equal(errno, EBADMSG);
    assert_errmsg_contains(what);
}

static void test_live_heap(void **state)
{
    (void)state;
    mmh_heap *h = mmh_open(NULL, NULL);
    assert_non_null(h);
    void *blocks[64];
    for (size_t i = 0; i < 64; i++)
        assert_non_null(blocks[i] = mmh_alloc(h, 16u << (i % 12)));
    void *large = mmh_alloc(h, 300 << 10), *huge = mmh_alloc(h, 9 << 20);
    assert_non_null(large);
    assert_non_null(huge);
    for (size_t i = 0; i < 64; i += 3)
        mmh_free(h, blocks[i]);
    assert_int_equal(mmh_check(h), 0);

    mmh_page *pg = span_of(blocks[1]);
    uint32_t slot_id = pg->slot_id;
    pg->slot_id = 999;
    assert_check_fails(h, "owning slot 999");
    pg->slot_id = slot_id;
    assert_int_equal(mmh_check(h), 0);

    /* A free list that leads between two blocks (only metadata is damaged:
     * the memory checkers keep the test itself out of free blocks). */
    mmh_page *freed = span_of(blocks[3]);
    uint64_t head = freed->free;
    assert_true(head != 0);
    freed->free = head + 8;
    assert_check_fails(h, "is not at a block boundary");
    freed->free = head;
    assert_int_equal(mmh_check(h), 0);

    errno = 0;
    assert_int_equal(mmh_check(NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mmh_close(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_good_heap_is_sound, setup),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_ls),
        cmocka_unit_test(test_damaged_heaps),
        cmocka_unit_test(test_crafted_base),
        cmocka_unit_test(test_slot_tables),
        cmocka_unit_test(test_log_applied),
        cmocka_unit_test(test_log_torn),
        cmocka_unit_test(test_usage_and_errors),
        cmocka_unit_test(test_live_heap),
    };
    return TU_RUN(tests);
}
