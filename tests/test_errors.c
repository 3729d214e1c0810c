/* test_errors: locking, missing/existing files, and bad or damaged files.
 *
 * Every refusal must set errno and leave a message naming the file; none may
 * crash, and a refused file must be left exactly as it was.
 */
#include "testutil.h"

#include "layout.h" /* the metadata layout, for damaging it */

#include <stdbool.h>

/* Byte offset of the uint32 format version (little-endian) after the 8-byte
 * magic at the start of a heap file. */
#define VERSION_OFFSET 8
#define HEADER_SCAN    4096

static char *make_heap_file_max(const char *name, size_t payload, size_t max_size)
{
    char *path = tu_path(name);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, max_size);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    unsigned char *p = mmh_alloc(h, payload);
    assert_non_null(p);
    tu_fill(p, payload, payload);
    assert_int_equal(mmh_set_root(h, p), 0);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);
    return path;
}

static char *make_heap_file(const char *name, size_t payload)
{
    return make_heap_file_max(name, payload, 0);
}

static void check_heap_file(const char *path, size_t payload)
{
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("open %s failed: %s", path, mmh_errmsg());
    unsigned char *p = mmh_root(h);
    assert_non_null(p);
    assert_pattern(p, payload, payload);
    assert_int_equal(mmh_close(h), 0);
}

/* ---------------------------------------------------------------- EBUSY */

static int child_open_busy(void *arg)
{
    const char *path = arg;
    errno = 0;
    mmh_heap *h = mmh_open(path, NULL);
    int e = errno;
    CK(h == NULL);
    CK(e == EBUSY);
    CK(strstr(mmh_errmsg(), path) != NULL);
    return 0;
}

static void test_second_writer_busy(void **state)
{
    (void)state;
    char *path = make_heap_file("busy.heap", 1000);
    mmh_heap *h = mmh_open(path, NULL);
    assert_non_null(h);

    /* same process */
    assert_null_errno(mmh_open(path, NULL), EBUSY);
    assert_errmsg_contains(path);
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    assert_null_errno(mmh_open(path, &cfg), EBUSY);
    assert_errmsg_contains(path);
    cfg.flags = MMH_SHARED;
    assert_null_errno(mmh_open(path, &cfg), EBUSY);
    cfg.flags = MMH_RELOCATE;
    assert_null_errno(mmh_open(path, &cfg), EBUSY);
    assert_errmsg_contains(path);

    /* another process */
    assert_child_ok(child_open_busy, path);

    /* the first writer is unaffected */
    unsigned char *p = mmh_root(h);
    assert_pattern(p, 1000, 1000);
    void *q = mmh_alloc(h, 100);
    assert_non_null(q);
    mmh_free(h, q);
    assert_int_equal(mmh_commit(h), 0);
    assert_int_equal(mmh_close(h), 0);

    /* the lock goes with the close */
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);
    check_heap_file(path, 1000);
    unlink(path);
    free(path);
}

/* The lock dies with the process that held it. */
static int child_hold_and_die(void *arg)
{
    mmh_heap *h = mmh_open(arg, NULL);
    CK(h != NULL);
    _exit(0);
}

static void test_lock_released_by_exit(void **state)
{
    (void)state;
    char *path = make_heap_file("lockexit.heap", 500);
    assert_child_ok(child_hold_and_die, path);
    check_heap_file(path, 500);
    unlink(path);
    free(path);
}

/* --------------------------------------------------- ENOENT / EEXIST */

static void test_missing_file(void **state)
{
    (void)state;
    char *path = tu_path("missing.heap");
    assert_null_errno(mmh_open(path, NULL), ENOENT);
    assert_errmsg_contains(path);
    mmh_config cfg = tu_cfg(0, 0, 0);
    assert_null_errno(mmh_open(path, &cfg), ENOENT);
    assert_errmsg_contains(path);
    cfg.flags = MMH_SHARED;
    assert_null_errno(mmh_open(path, &cfg), ENOENT);
    assert_int_equal(tu_file_size(path), -1);   /* not created */

    char *deep = tu_path("no-such-dir/x.heap");
    cfg.flags = MMH_CREATE;
    assert_null_errno(mmh_open(deep, &cfg), ENOENT);
    assert_errmsg_contains(deep);
    free(deep);

    /* a directory is not a heap */
    errno = 0;
    cfg.flags = 0;
    assert_null(mmh_open(tu_dir(), &cfg));
    assert_true(errno != 0);
    assert_errmsg_contains(tu_dir());
    free(path);
}

static void test_create_excl(void **state)
{
    (void)state;
    char *path = make_heap_file("excl.heap", 2000);
    mmh_config cfg = tu_cfg(MMH_CREATE | MMH_EXCL, 0, 0);
    assert_null_errno(mmh_open(path, &cfg), EEXIST);
    assert_errmsg_contains(path);
    check_heap_file(path, 2000);

    /* EXCL on a non-heap file: still EEXIST, file untouched */
    char *other = tu_path("excl.txt");
    assert_int_equal(tu_write_file(other, "hello\n", 6), 0);
    assert_null_errno(mmh_open(other, &cfg), EEXIST);
    assert_errmsg_contains(other);
    assert_int_equal(tu_file_size(other), 6);

    /* on a new path it creates */
    char *fresh = tu_path("excl-new.heap");
    mmh_heap *h = mmh_open(fresh, &cfg);
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);
    /* CREATE without EXCL opens the existing heap and keeps its data */
    cfg.flags = MMH_CREATE;
    h = mmh_open(path, &cfg);
    assert_non_null(h);
    assert_pattern(mmh_root(h), 2000, 2000);
    assert_int_equal(mmh_close(h), 0);
    unlink(path);
    unlink(other);
    unlink(fresh);
    free(path);
    free(other);
    free(fresh);
}

/* ------------------------------------------------------- bad files */

/* Opening must fail with one of the allowed codes and leave the file as it
 * was, with and without MMH_CREATE. */
static void expect_refused(const char *path, const int *codes, int ncodes)
{
    size_t len0 = 0;
    void *before = tu_read_file(path, &len0);
    assert_non_null(before);
    static const unsigned flagsets[] = { 0, MMH_CREATE, MMH_READONLY, MMH_SHARED };
    for (size_t f = 0; f < sizeof flagsets / sizeof flagsets[0]; f++) {
        mmh_config cfg = tu_cfg(flagsets[f], 0, 0);
        errno = 0;
        mmh_heap *h = mmh_open(path, &cfg);
        int e = errno;
        if (h) {
            mmh_close(h);
            fail_msg("%s opened with flags %#x", path, flagsets[f]);
        }
        int ok = 0;
        for (int i = 0; i < ncodes; i++)
            ok |= (e == codes[i]);
        if (!ok)
            fail_msg("%s (flags %#x): errno %d (%s), expected %d (%s)", path,
                     flagsets[f], e, strerror(e), codes[0], strerror(codes[0]));
        assert_errmsg_contains(path);
    }
    size_t len1 = 0;
    void *after = tu_read_file(path, &len1);
    assert_non_null(after);
    assert_int_equal(len0, len1);
    if (len0)
        assert_memory_equal(before, after, len0);
    free(before);
    free(after);
}

static void test_empty_file(void **state)
{
    (void)state;
    char *path = tu_path("empty.heap");
    assert_int_equal(tu_write_file(path, "", 0), 0);
    mmh_config cfg = tu_cfg(0, 0, 0);
    assert_null_errno(mmh_open(path, &cfg), EINVAL);
    assert_errmsg_contains(path);
    cfg.flags = MMH_READONLY;
    assert_null_errno(mmh_open(path, &cfg), EINVAL);
    assert_errmsg_contains(path);
    cfg.flags = MMH_SHARED;
    assert_null_errno(mmh_open(path, &cfg), EINVAL);
    assert_int_equal(tu_file_size(path), 0);
    unlink(path);
    free(path);
}

static void test_foreign_files(void **state)
{
    (void)state;
    const int codes[] = { EINVAL };
    size_t n = 64 * KiB;
    char *buf = malloc(n);
    assert_non_null(buf);

    char *text = tu_path("foreign.txt");
    for (size_t i = 0; i < n; i++)
        buf[i] = "The quick brown fox jumps over the lazy dog.\n"[i % 45];
    assert_int_equal(tu_write_file(text, buf, n), 0);
    expect_refused(text, codes, 1);

    char *rnd = tu_path("foreign.bin");
    tu_fill(buf, n, 0xF00D);
    assert_int_equal(tu_write_file(rnd, buf, n), 0);
    expect_refused(rnd, codes, 1);

    char *zero = tu_path("zeros.bin");
    memset(buf, 0, n);
    assert_int_equal(tu_write_file(zero, buf, n), 0);
    expect_refused(zero, codes, 1);

    char *tiny = tu_path("tiny.bin");
    assert_int_equal(tu_write_file(tiny, "MMHEAP", 6), 0);
    expect_refused(tiny, codes, 1);

    /* an ELF binary */
    char *elf = tu_path("elf.bin");
    memset(buf, 0, n);
    memcpy(buf, "\x7f" "ELF\x02\x01\x01", 7);
    assert_int_equal(tu_write_file(elf, buf, n), 0);
    expect_refused(elf, codes, 1);

    unlink(text);
    unlink(rnd);
    unlink(zero);
    unlink(tiny);
    unlink(elf);
    free(text);
    free(rnd);
    free(zero);
    free(tiny);
    free(elf);
    free(buf);
}

static void test_truncated(void **state)
{
    (void)state;
    char *path = make_heap_file("trunc.heap", 6 * MiB);
    off_t full = tu_file_size(path);
    assert_true(full > (off_t)(6 * MiB));
    size_t len = 0;
    void *orig = tu_read_file(path, &len);
    assert_non_null(orig);

    const int codes[] = { EBADMSG };
    assert_int_equal(truncate(path, full / 2), 0);
    expect_refused(path, codes, 1);

    /* just the first page */
    assert_int_equal(truncate(path, 4096), 0);
    expect_refused(path, codes, 1);

    /* a torn header */
    const int codes2[] = { EBADMSG, EINVAL };
    assert_int_equal(truncate(path, 64), 0);
    expect_refused(path, codes2, 2);
    assert_int_equal(truncate(path, 12), 0);
    expect_refused(path, codes2, 2);

    /* restored, it opens */
    assert_int_equal(tu_write_file(path, orig, len), 0);
    check_heap_file(path, 6 * MiB);
    free(orig);
    unlink(path);
    free(path);
}

static void test_newer_version(void **state)
{
    (void)state;
    char *path = make_heap_file("version.heap", 3000);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    unsigned char old[4], v[4] = { 0xff, 0xff, 0x00, 0x00 };  /* 0xffff LE */
    assert_int_equal(pread(fd, old, 4, VERSION_OFFSET), 4);
    assert_int_equal(pwrite(fd, v, 4, VERSION_OFFSET), 4);
    const int codes[] = { EPROTONOSUPPORT };
    expect_refused(path, codes, 1);
    /* the current version is small: 1..0xfffe */
    uint32_t cur = (uint32_t)old[0] | (uint32_t)old[1] << 8 |
                   (uint32_t)old[2] << 16 | (uint32_t)old[3] << 24;
    assert_in_range(cur, 1, 0xfffe);
    uint32_t next = cur + 1;
    unsigned char nv[4] = { (unsigned char)next, (unsigned char)(next >> 8),
                            (unsigned char)(next >> 16), (unsigned char)(next >> 24) };
    assert_int_equal(pwrite(fd, nv, 4, VERSION_OFFSET), 4);
    expect_refused(path, codes, 1);
    assert_int_equal(pwrite(fd, old, 4, VERSION_OFFSET), 4);
    close(fd);
    check_heap_file(path, 3000);
    unlink(path);
    free(path);
}

/* The checksum of a header page whose checksum field is at sum_at, as
 * formats 4 to 6 compute it: the page's hash with that field zeroed. */
static uint64_t header_checksum(const unsigned char *page, size_t sum_at)
{
    unsigned char zeroed[MMH_HDR_SIZE];
    memcpy(zeroed, page, sizeof zeroed);
    memset(zeroed + sum_at, 0, 8);
    return mmh_hash64(zeroed, sizeof zeroed, 0x6d6d68656170ull);
}

/* The heap file at path rewritten as format 4, 5 or 6 wrote it.  Format 6
 * had one slot table.  Format 4 is the redo journal's: no wal_gen after
 * file_id, and no log.  Formats 4 and 5 laid out their segment maps for
 * max_size, so the heap must have been made with the largest, whose
 * layout format 6 shares; neither has names. */
static void downgrade(const char *path, unsigned version)
{
    union {
        mmh_hdr h;
        unsigned char page[MMH_HDR_SIZE];
    } cur;
    union {
        mmh_hdr4 h;
        unsigned char page[MMH_HDR_SIZE];
    } old;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, cur.page, sizeof cur.page, 0), (ssize_t)sizeof cur.page);
    assert_int_equal(cur.h.nslots, MMH_SLOTS);
    cur.h.version = 6;
    if (version <= 5) {
        assert_int_equal(cur.h.max_size, MMH_MAX_MAX_SIZE);
        assert_int_equal(cur.h.names, 0);
        cur.h.segmap_len = 0; /* format 5's padding */
        cur.h.version = 5;
    }
    cur.h.checksum = header_checksum(cur.page, offsetof(mmh_hdr, checksum));
    if (version == 4) {
        memset(&old, 0, sizeof old);
        memcpy(&old.h, &cur.h, offsetof(mmh_hdr4, segmap_off));
        old.h.version = 4;
        memcpy(&old.h.segmap_off, &cur.h.segmap_off, offsetof(mmh_hdr4, unpurged) +
               sizeof old.h.unpurged - offsetof(mmh_hdr4, segmap_off));
        old.h.empty_page = cur.h.empty_page;
        old.h.checksum = header_checksum(old.page, offsetof(mmh_hdr4, checksum));
        memcpy(cur.page, old.page, sizeof cur.page);
    }
    assert_int_equal(pwrite(fd, cur.page, sizeof cur.page, 0), (ssize_t)sizeof cur.page);
    close(fd);
    char wal[PATH_MAX];
    snprintf(wal, sizeof wal, "%s.wal", path);
    if (version == 4)
        assert_int_equal(unlink(wal), 0);
}

static uint32_t file_version(const char *path)
{
    uint32_t v = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &v, sizeof v, offsetof(mmh_hdr, version)), (ssize_t)sizeof v);
    close(fd);
    return v;
}

/* A file of format old (its root payload bytes, as make_heap_file wrote
 * it) is converted as it is read: a reader sees the current format in
 * memory, with one slot table, and leaves the file as it was; the first
 * writable open commits it as the current format. */
static void check_converted(const char *path, size_t payload, uint32_t old)
{
    mmh_config ro = tu_cfg(MMH_READONLY, 0, 0);
    mmh_heap *h = mmh_open(path, &ro);
    if (!h)
        fail_msg("read-only open of a format %u file: %s", old, mmh_errmsg());
    assert_pattern(mmh_root(h), payload, payload);
    struct mmh_stats st;
    assert_int_equal(mmh_stats(h, &st), 0);
    assert_int_equal(((const mmh_hdr *)(uintptr_t)st.base)->version, MMH_FORMAT_VERSION);
    assert_int_equal(st.slots, MMH_SLOTS);
    assert_int_equal(mmh_close(h), 0);
    assert_int_equal(file_version(path), old);
    check_heap_file(path, payload);
    assert_int_equal(file_version(path), MMH_FORMAT_VERSION);
    check_heap_file(path, payload);
}

/* A format 4 file is converted as it is read: a reader sees it, the first
 * writable open commits it as the current format.  Its FILE.journal still holding a
 * commit stops the open, naming it: only the release that wrote it can
 * replay it. */
static void test_format4_converted(void **state)
{
    (void)state;
    if (tu_under_valgrind()) /* 2 TiB: valgrind takes a minute, and gigabytes, to map it */
        skip();
    char *path = make_heap_file_max("four.heap", 5000, MMH_MAX_MAX_SIZE), journal[PATH_MAX];
    downgrade(path, 4);
    assert_int_equal(file_version(path), 4);
    snprintf(journal, sizeof journal, "%s.journal", path);
    assert_int_equal(tu_write_file(journal, "MMHJRNL1 and a commit", 21), 0);
    errno = 0;
    assert_null(mmh_open(path, NULL));
    assert_int_equal(errno, EAGAIN);
    assert_errmsg_contains(journal);
    assert_int_equal(tu_write_file(journal, "\0\0\0\0\0\0\0\0 done", 13), 0);
    check_converted(path, 5000, 4);
    unlink(journal);
    unlink(path);
    free(path);
}

/* A format 5 file is converted as it is read, its segment map's room being
 * the max_size it was made with; its log (format 5 named it) replays. */
static void test_format5_converted(void **state)
{
    (void)state;
    if (tu_under_valgrind())
        skip();
    char *path = make_heap_file_max("five.heap", 7000, MMH_MAX_MAX_SIZE);
    downgrade(path, 5);
    assert_int_equal(file_version(path), 5);
    mmh_heap *h = mmh_open(path, NULL);
    if (!h)
        fail_msg("open of a format 5 file: %s", mmh_errmsg());
    assert_pattern(mmh_root(h), 7000, 7000);
    struct mmh_stats st;
    assert_int_equal(mmh_stats(h, &st), 0);
    const mmh_hdr *hdr = (const mmh_hdr *)(uintptr_t)st.base;
    assert_int_equal(hdr->version, MMH_FORMAT_VERSION);
    assert_int_equal((uint64_t)hdr->segmap_len << MMH_SEG_SHIFT, MMH_MAX_MAX_SIZE);
    assert_int_equal(mmh_check(h), 0);
    assert_int_equal(mmh_close(h), 0);
    assert_int_equal(file_version(path), MMH_FORMAT_VERSION);
    check_heap_file(path, 7000);
    unlink(path);
    free(path);
}

/* A format 6 file is converted as it is read: its one slot table is the
 * first, and a heap that needs more adds them (test_threads). */
static void test_format6_converted(void **state)
{
    (void)state;
    char *path = make_heap_file("six.heap", 6000);
    downgrade(path, 6);
    assert_int_equal(file_version(path), 6);
    check_converted(path, 6000, 6);
    unlink(path);
    free(path);
}

/* A new heap names its log in its header from its first checkpoint on: a
 * log removed then is an open error naming it, not "nothing to replay". */
static void test_missing_log(void **state)
{
    (void)state;
    char *path = make_heap_file("named.heap", 3000), wal[PATH_MAX];
    uint64_t gen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &gen, sizeof gen, offsetof(mmh_hdr, wal_gen)), (ssize_t)sizeof gen);
    close(fd);
    assert_true(gen != 0);
    snprintf(wal, sizeof wal, "%s.wal", path);
    assert_int_equal(unlink(wal), 0);
    static const unsigned flags[] = { 0, MMH_READONLY, MMH_VOLATILE };
    for (size_t i = 0; i < 3; i++) {
        mmh_config cfg = tu_cfg(flags[i], 0, 0);
        errno = 0;
        assert_null(mmh_open(path, &cfg));
        assert_int_equal(errno, ENOENT);
        assert_errmsg_contains(wal);
    }
    unlink(path);
    free(path);
}

/* Every byte of the first 4096, flipped in turn, makes the file refused. */
static void test_header_byte_flips(void **state)
{
    (void)state;
    char *path = make_heap_file("flip.heap", 4000);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    long step = 1;
    if (test_scale() < 1.0)
        step = (long)(1.0 / test_scale());
    long tried = 0;
    for (long off = 0; off < HEADER_SCAN; off += (off < 64 ? 1 : step)) {
        unsigned char b, x;
        assert_int_equal(pread(fd, &b, 1, off), 1);
        x = b ^ 0xff;
        assert_int_equal(pwrite(fd, &x, 1, off), 1);
        for (int ro = 0; ro < 2; ro++) {
            mmh_config cfg = tu_cfg(ro ? MMH_READONLY : 0, 0, 0);
            errno = 0;
            mmh_heap *h = mmh_open(path, &cfg);
            int e = errno;
            if (h) {
                mmh_close(h);
                fail_msg("heap with byte %ld flipped (%#x -> %#x) opened%s", off,
                         b, x, ro ? " read-only" : "");
            }
            if (e != EINVAL && e != EBADMSG && e != EPROTONOSUPPORT)
                fail_msg("byte %ld flipped: errno %d (%s); %s", off, e,
                         strerror(e), mmh_errmsg());
            if (!strstr(mmh_errmsg(), path))
                fail_msg("byte %ld flipped: message \"%s\" does not name the file",
                         off, mmh_errmsg());
        }
        assert_int_equal(pwrite(fd, &b, 1, off), 1);
        tried++;
        if (off % 1024 == 0)
            check_heap_file(path, 4000);          /* restored, it opens */
    }
    close(fd);
    assert_true(tried >= 64);
    check_heap_file(path, 4000);
    unlink(path);
    free(path);
}

/* A heap file with its first page zeroed is no heap file. */
static void test_zeroed_header(void **state)
{
    (void)state;
    char *a = make_heap_file("zeroed.heap", 5000);
    int fd = open(a, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    static unsigned char page[4096];
    assert_int_equal(pwrite(fd, page, sizeof page, 0), (ssize_t)sizeof page);
    close(fd);
    const int codes[] = { EINVAL, EBADMSG };
    expect_refused(a, codes, 2);
    unlink(a);
    free(a);
}

/* ------------------------------------------------ damaged metadata */

/* Is anything mapped at address 0 (root may map there, mmap_min_addr
 * notwithstanding)? */
static bool mapped_at_zero(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    bool found = false;
    while (fgets(line, sizeof line, f))
        found |= strtoull(line, NULL, 16) == 0;
    fclose(f);
    return found;
}

/* A crafted header whose base address is 0, or whose reservation would end
 * past the user address space (checksum fixed up): refused with EBADMSG by
 * every kind of open, MMH_RELOCATE included, and nothing left mapped (as
 * root, a reservation at 0 once succeeded, was taken for a failure and
 * stayed: 64 GiB of PROT_NONE at address 0).  A config's base is bounded
 * the same way: EINVAL. */
static void test_crafted_base(void **state)
{
    (void)state;
    char *path = make_heap_file("base.heap", 5000);
    size_t len = 0;
    unsigned char *orig = tu_read_file(path, &len);
    assert_non_null(orig);
    const uint64_t top = (uint64_t)1 << 47;
    const uint64_t bases[] = { 0, top - MMH_SEG_SIZE, top, UINT64_MAX & ~(uint64_t)MMH_SEG_MASK };
    const int codes[] = { EBADMSG };
    for (size_t i = 0; i < sizeof bases / sizeof *bases; i++) {
        unsigned char *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, orig, len);
        mmh_hdr *hdr = (mmh_hdr *)copy;
        hdr->base = bases[i];
        hdr->checksum = mmh_format_checksum(hdr);
        assert_int_equal(tu_write_file(path, copy, len), 0);
        free(copy);
        print_message("base %#llx\n", (unsigned long long)bases[i]);
        expect_refused(path, codes, 1);
        mmh_config cfg = tu_cfg(MMH_RELOCATE, 0, 0);
        errno = 0;
        mmh_heap *h = mmh_open(path, &cfg);
        int e = errno;
        if (h) {
            mmh_close(h);
            fail_msg("base %#llx: opened with MMH_RELOCATE", (unsigned long long)bases[i]);
        }
        assert_int_equal(e, EBADMSG);
        assert_errmsg_contains(path);
        assert_errmsg_contains("address space");
        assert_false(mapped_at_zero());
    }
    assert_int_equal(tu_write_file(path, orig, len), 0);
    check_heap_file(path, 5000);
    free(orig);
    unlink(path);

    /* a new heap asked for at such a base */
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 1 * GiB);
    cfg.base = (void *)(uintptr_t)(top - 512 * MiB);
    errno = 0;
    assert_null(mmh_open(path, &cfg));
    assert_int_equal(errno, EINVAL);
    assert_errmsg_contains(path);
    assert_errmsg_contains("address space");
    assert_int_equal(access(path, F_OK), -1);
    free(path);
}

/* Bytes to write over a heap file at off, and what that damages. */
struct damage {
    const char *what;
    size_t      off;
    const void *bytes;
    size_t      n;
};

/* Damage beyond the checksummed header: each makes the file refused
 * (before mmh_open checked the structure, the first sent a commit into an
 * endless loop, others crashed), and the file opens again once restored. */
static void test_damaged_metadata(void **state)
{
    (void)state;
    char *path = make_heap_file("meta.heap", 4000); /* one small page, then a free span */
    size_t len = 0;
    unsigned char *orig = tu_read_file(path, &len);
    assert_non_null(orig);
    const mmh_hdr *hdr = (const mmh_hdr *)orig;
    const mmh_segment *s = (const mmh_segment *)(orig + MMH_SEGHDR_OFFSET);
    size_t first = hdr->first_slice;
    assert_int_equal(s->pages[first].kind, MMH_PAGE_SMALL);
    assert_int_equal(s->pages[first + 1].kind, MMH_PAGE_FREE);
    const size_t page = MMH_SEGHDR_OFFSET + offsetof(mmh_segment, pages) + first * sizeof(mmh_page);
    const size_t span = page + sizeof(mmh_page);
    const uint64_t outside = (uint64_t)1 << 40, self = span;
    const uint32_t bad_entry = MMH_SEGMAP(MMH_SEGMAP_HUGE, 7);
    const uint16_t zero16 = 0, big16 = 65;
    const uint8_t kind9 = 9, cls0 = 0;
    const struct damage damage[] = {
        { "span length 0", page + offsetof(mmh_page, slice_count), &zero16, 2 },
        { "span past the segment", span + offsetof(mmh_page, slice_count), &big16, 2 },
        { "unknown span kind", page + offsetof(mmh_page, kind), &kind9, 1 },
        { "small page of class 0", page + offsetof(mmh_page, cls), &cls0, 1 },
        { "free list outside the page", page + offsetof(mmh_page, free), &outside, 8 },
        { "free span linked to itself", span + offsetof(mmh_page, next), &self, 8 },
        { "bad segment map entry", hdr->segmap_off, &bad_entry, 4 },
        { "slot ring into the void", hdr->slots_off + offsetof(mmh_slot, pages) +
                                         mmh_size_class(4000) * sizeof(uint64_t), &outside, 8 },
    };
    const int codes[] = { EBADMSG };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        unsigned char *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, orig, len);
        memcpy(copy + damage[i].off, damage[i].bytes, damage[i].n);
        assert_int_equal(tu_write_file(path, copy, len), 0);
        print_message("damaged: %s\n", damage[i].what);
        expect_refused(path, codes, 1);
        free(copy);
    }
    assert_int_equal(tu_write_file(path, orig, len), 0);
    check_heap_file(path, 4000);
    free(orig);
    unlink(path);
    free(path);
}

/* A free list inside a page is not checked at open (that would read every
 * page): one damaged into a cycle must still open, and use, without a
 * crash or, in a sanitizer build, a report (the ASan hooks walk the lists
 * at open to poison the free blocks). */
static void test_damaged_block_list(void **state)
{
    (void)state;
    char *path = tu_path("blocklist.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    void *a = mmh_alloc(h, 4000), *b = mmh_alloc(h, 4000);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t a_off = mmh_offset(h, a);
    mmh_free(h, a); /* the head of its page's free list */
    assert_int_equal(mmh_set_root(h, b), 0);
    assert_int_equal(mmh_close(h), 0);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, &a_off, sizeof a_off, (off_t)a_off), (ssize_t)sizeof a_off);
    close(fd);
    tu_heap_checks = false; /* damaged on purpose: mmh_check would say so */
    for (int ro = 0; ro < 2; ro++) {
        mmh_config again = tu_cfg(ro ? MMH_READONLY : 0, 0, 0);
        h = mmh_open(path, &again);
        if (!h)
            fail_msg("a heap with a damaged free list inside a page was refused: %s",
                     mmh_errmsg());
        assert_non_null(mmh_root(h));
        errno = 0;
        assert_int_equal(mmh_check(h), -1); /* which finds the damage */
        assert_int_equal(errno, EBADMSG);
        assert_errmsg_contains("on the free lists twice");
        assert_int_equal(mmh_close(h), 0);
    }
    tu_heap_checks = true;
    unlink(path);
    free(path);
}

/* Damaged list heads and counts in a small page's descriptor: mmh_open
 * reads the descriptors, not the pages, so it checks what it can there:
 * each list head is a carved block of the page, the counts agree with
 * which lists are empty, and a remote list (rare at a quiescent point, so
 * cheap to follow one step) goes on to a block of the page.  Before these
 * checks, a remote list head damaged into a live block opened, and the
 * first allocation followed the block's contents as a link and crashed
 * (one bit flipped, found by flipping every bit of every descriptor). */
static void test_damaged_list_heads(void **state)
{
    (void)state;
    char *path = tu_path("heads.heap");
    mmh_config cfg = tu_cfg(MMH_CREATE, 0, 0);
    mmh_heap *h = mmh_open(path, &cfg);
    assert_non_null(h);
    char *a = mmh_alloc(h, 4000), *b = mmh_alloc(h, 4000), *c = mmh_alloc(h, 4000);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    tu_fill(a, 4000, 7); /* a live block's first word: no offset of the page */
    uint64_t a_off = mmh_offset(h, a);
    mmh_free(h, c); /* the owner's list: c, then the uncarved rest */
    assert_int_equal(mmh_set_root(h, b), 0);
    assert_int_equal(mmh_close(h), 0);

    size_t len = 0;
    unsigned char *orig = tu_read_file(path, &len);
    assert_non_null(orig);
    const mmh_hdr *hdr = (const mmh_hdr *)orig;
    const mmh_segment *s = (const mmh_segment *)(orig + MMH_SEGHDR_OFFSET);
    const mmh_page *pg = &s->pages[hdr->first_slice];
    assert_int_equal(pg->kind, MMH_PAGE_SMALL);
    assert_true(pg->used == 2 && pg->capacity > 2);
    const size_t page = MMH_SEGHDR_OFFSET + offsetof(mmh_segment, pages) +
                        hdr->first_slice * sizeof(mmh_page);
    const uint64_t zero = 0, free_bit62 = pg->free ^ ((uint64_t)1 << 62);
    const uint64_t xfree_bit62 = (uint64_t)1 << 62;
    const uint32_t all_used = pg->capacity, none_used = 0;
    const struct damage damage[] = {
        { "owner's list head, bit 62 flipped", offsetof(mmh_page, free), &free_bit62, 8 },
        { "remote list head, bit 62 flipped", offsetof(mmh_page, xfree), &xfree_bit62, 8 },
        { "remote list head on a live block", offsetof(mmh_page, xfree), &a_off, 8 },
        { "owner's list empty, blocks unaccounted", offsetof(mmh_page, free), &zero, 8 },
        { "every block used, yet a free list", offsetof(mmh_page, used), &all_used, 4 },
        { "no block used, yet a remote free", offsetof(mmh_page, used), &none_used, 4 },
    };
    const int codes[] = { EBADMSG };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        unsigned char *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, orig, len);
        memcpy(copy + page + damage[i].off, damage[i].bytes, damage[i].n);
        if (damage[i].bytes == &none_used) /* with a remote free to account for */
            memcpy(copy + page + offsetof(mmh_page, xfree), &a_off, 8);
        assert_int_equal(tu_write_file(path, copy, len), 0);
        print_message("damaged: %s\n", damage[i].what);
        expect_refused(path, codes, 1);
        free(copy);
    }
    assert_int_equal(tu_write_file(path, orig, len), 0);
    h = mmh_open(path, NULL);
    assert_non_null(h);
    assert_int_equal(mmh_close(h), 0);
    free(orig);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_writer_busy),
        cmocka_unit_test(test_lock_released_by_exit),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_create_excl),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_foreign_files),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_newer_version),
        cmocka_unit_test(test_format4_converted),
        cmocka_unit_test(test_format5_converted),
        cmocka_unit_test(test_format6_converted),
        cmocka_unit_test(test_missing_log),
        cmocka_unit_test(test_header_byte_flips),
        cmocka_unit_test(test_zeroed_header),
        cmocka_unit_test(test_crafted_base),
        cmocka_unit_test(test_damaged_metadata),
        cmocka_unit_test(test_damaged_block_list),
        cmocka_unit_test(test_damaged_list_heads),
    };
    return TU_RUN(tests);
}
