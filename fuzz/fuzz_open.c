/* fuzz_open: a libFuzzer target for mmh_open of existing heap files and
 * for the recovery of their redo journals.
 *
 * One input is a heap file and its journal, written to a private directory,
 * then opened in one of several configurations.  The input format
 * (fuzz/make_seeds.c writes it; all integers little-endian):
 *
 *   byte 0       options (OPT_* below): configuration, checksum repair
 *   bytes 1..4   H: length of the heap part (clamped to what follows and to
 *                HEAP_PART_MAX)
 *   heap part    4 bytes: the heap file's size (clamped to FILE_SIZE_MAX),
 *                then extents to the end of the part: 4 bytes file offset,
 *                2 bytes length, the bytes.  The file is sparse: a valid
 *                heap is at least one 4 MiB segment, and mostly holes.
 *   the rest     the journal file, byte for byte; empty: no journal file
 *                (or an empty one, with OPT_EMPTY_JOURNAL)
 *
 * The header and the journal are checksummed, so mutated bytes there are
 * almost always refused before anything deeper runs.  OPT_FIX_SUMS makes
 * the harness recompute those checksums after mutation, as a crafted (not
 * a damaged) file would carry them, so that the checks behind the
 * checksums (sizes, offsets, the replay) are fuzzed too.
 *
 * The checks on top of "no crash, no sanitizer report":
 * - a failed mmh_open returns NULL with errno set and a message naming the
 *   file;
 * - every heap that opened writable gets a block of every size class:
 *   mmh_open checks each page descriptor's list heads and counts, so the
 *   first block a class's current page hands out is sound whatever the
 *   checker says of the rest;
 * - only heaps that the checker (lib/check.c, `mmheap check`) finds sound
 *   are allocated in further (OPT_EXERCISE): mmh_open checks a heap's
 *   structure, not the free lists of blocks inside its pages, so allocation
 *   in a heap whose free lists are damaged is not defended;
 * - a read-only heap refuses allocation with EROFS;
 * - a heap that a writable open committed and closed successfully opens
 *   again (read-only) with no journal left waiting;
 * - no file descriptor on the heap or its journal outlives an iteration.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_format.h"

/* options byte */
#define OPT_CONFIG_MASK   0x07u /* which configuration, configs[] below  */
#define OPT_FIX_SUMS      0x08u /* recompute header and journal checksums */
#define OPT_EMPTY_JOURNAL 0x10u /* no journal bytes: an empty file        */
#define OPT_EXERCISE      0x20u /* allocate and free after a good open    */
#define OPT_JOURNAL_ID    0x40u /* with OPT_FIX_SUMS: the journal names the
                                   heap file's file_id                    */

static const struct {
    const char *name;
    unsigned    flags;
} configs[8] = {
    { "read-only", MMH_READONLY },
    { "writable private", 0 },
    { "volatile", MMH_VOLATILE },
    { "writable, relocatable", MMH_RELOCATE },
    { "read-only, relocatable", MMH_READONLY | MMH_RELOCATE },
    { "volatile, relocatable", MMH_VOLATILE | MMH_RELOCATE },
    { "writable shared", MMH_SHARED },
    { "writable shared, relocatable", MMH_SHARED | MMH_RELOCATE },
};

static char work_dir[4096];
static char heap_path[4200];
static char journal_path[4200];

static void remove_files(void)
{
    unlink(heap_path);
    unlink(journal_path);
}

static void remove_work_dir(void)
{
    remove_files();
    rmdir(work_dir);
}

/* A harness-side contract violation: report it the way a crash is. */
static void __attribute__((noreturn, format(printf, 1, 2))) violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_open: contract violation: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* A descriptor still open on a file of the work directory (the files are
 * unlinked by now: the link reads "PATH (deleted)"), or -1.  Only those
 * count: libFuzzer itself opens descriptors between runs. */
static int leaked_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    if (!d)
        return -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        char link[64], target[4300];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strncmp(target, work_dir, strlen(work_dir)) == 0)
            found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs where there is one: commits fdatasync, which on a disk would
     * make each run cost milliseconds. */
    const char *base = getenv("FUZZ_TMPDIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(work_dir, sizeof work_dir, "%s/mmh-fuzz-XXXXXX", base);
    if (!mkdtemp(work_dir)) {
        perror("fuzz_open: mkdtemp");
        exit(1);
    }
    snprintf(heap_path, sizeof heap_path, "%s/f.heap", work_dir);
    snprintf(journal_path, sizeof journal_path, "%s.journal", heap_path);
    atexit(remove_work_dir);
    return 0;
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Write the heap part as a sparse file.  0, or -1 if the harness itself
 * could not write (then the input is skipped). */
static int write_heap_file(const uint8_t *part, size_t len)
{
    int fd = open(heap_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    uint64_t size = 0;
    if (len >= 4) {
        size = load_le32(part);
        part += 4;
        len -= 4;
    }
    if (size > FUZZ_FILE_SIZE_MAX)
        size = FUZZ_FILE_SIZE_MAX;
    while (len >= FUZZ_EXTENT_HDR) {
        uint64_t off = load_le32(part);
        size_t n = (size_t)part[4] | (size_t)part[5] << 8;
        part += FUZZ_EXTENT_HDR;
        len -= FUZZ_EXTENT_HDR;
        if (n > len)
            n = len;
        /* Clip rather than skip, so that most mutations of an offset still
         * land bytes in the file. */
        off %= FUZZ_FILE_SIZE_MAX;
        if (off + n > FUZZ_FILE_SIZE_MAX)
            n = (size_t)(FUZZ_FILE_SIZE_MAX - off);
        if (n && pwrite(fd, part, n, (off_t)off) != (ssize_t)n) {
            close(fd);
            return -1;
        }
        if (off + n > size)
            size = off + n;
        part += n;
        len -= n;
    }
    int rc = ftruncate(fd, (off_t)size);
    close(fd);
    return rc;
}

/* Give the header the checksum mmh_format_check expects. */
static void fix_header_checksum(void)
{
    union {
        mmh_hdr hdr;
        unsigned char page[MMH_HDR_SIZE];
    } buf;
    int fd = open(heap_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    if (pread(fd, &buf, sizeof buf, 0) == (ssize_t)sizeof buf) {
        buf.hdr.checksum = mmh_format_checksum(&buf.hdr);
        (void)!pwrite(fd, &buf.hdr.checksum, sizeof buf.hdr.checksum,
                      offsetof(mmh_hdr, checksum));
    }
    close(fd);
}

static uint64_t heap_file_id(void)
{
    uint64_t id = 0;
    int fd = open(heap_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!pread(fd, &id, sizeof id, offsetof(mmh_hdr, file_id));
        close(fd);
    }
    return id;
}

/* Give a journal image (a private copy) every checksum journal.c checks,
 * wherever the fields it names are inside the image. */
static void fix_journal_sums(uint8_t *j, size_t len, bool set_file_id)
{
    mmh_journal_hdr jh;
    if (len < sizeof jh)
        return;
    memcpy(&jh, j, sizeof jh);
    if (set_file_id)
        jh.file_id = heap_file_id();
    jh.hash = mmh_journal_hdr_hash(&jh);
    memcpy(j, &jh, sizeof jh);
    if (jh.nrecords > (len - sizeof jh) / sizeof(mmh_journal_rec))
        return;
    size_t table = sizeof jh + (size_t)jh.nrecords * sizeof(mmh_journal_rec);
    size_t at = table;
    for (uint64_t i = 0; i < jh.nrecords; i++) {
        mmh_journal_rec rec;
        uint8_t *where = j + sizeof jh + i * sizeof rec;
        memcpy(&rec, where, sizeof rec);
        if (rec.len > len - at)
            break;
        rec.hash = mmh_hash64(j + at, (size_t)rec.len, rec.off);
        memcpy(where, &rec, sizeof rec);
        at += (size_t)rec.len;
    }
    mmh_journal_end end;
    if (jh.data_bytes > len || table + jh.data_bytes + sizeof end > len)
        return;
    uint8_t *end_at = j + table + jh.data_bytes;
    memcpy(&end, end_at, sizeof end);
    end.table_hash = mmh_hash64(j, table, jh.seq);
    memcpy(end_at, &end, sizeof end);
}

static int write_journal_file(const uint8_t *j, size_t len, unsigned opts)
{
    if (len == 0 && !(opts & OPT_EMPTY_JOURNAL))
        return 0;
    uint8_t *copy = NULL;
    if (len && (opts & OPT_FIX_SUMS)) {
        if (!(copy = malloc(len)))
            return -1;
        memcpy(copy, j, len);
        fix_journal_sums(copy, len, opts & OPT_JOURNAL_ID);
        j = copy;
    }
    int rc = -1, fd = open(journal_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        rc = len == 0 || write(fd, j, len) == (ssize_t)len ? 0 : -1;
        close(fd);
    }
    free(copy);
    return rc;
}

static void check_failure(const char *what, const char *config)
{
    int err = errno;
    const char *msg = mmh_errmsg();
    if (err == 0)
        violation("%s (%s) failed with errno 0 (message: %s)", what, config, msg ? msg : "NULL");
    if (!msg || !*msg)
        violation("%s (%s) failed (errno %d) with no message", what, config, err);
}

/* A block of n bytes that an allocation call (what) returned, filled with
 * c; NULL is a failure, which must be reported. */
static void *use_block(mmh_heap *h, void *p, size_t n, int c, const char *what)
{
    if (!p) {
        check_failure(what, "exercise");
        return NULL;
    }
    /* Touch every byte: ASan does not see the heap, but a block that
     * overlaps unmapped space faults here. */
    memset(p, c, n);
    if (mmh_usable_size(h, p) < n)
        violation("%s: mmh_usable_size %zu < %zu", what, mmh_usable_size(h, p), n);
    return p;
}

/* A few blocks of sizes that reach small pages, medium pages, large spans
 * and a huge run (the heap grows); every other one freed again, the rest
 * resized across kinds; an aligned and a cleared one. */
static void exercise_allocator(mmh_heap *h, bool writable, const uint8_t *data, size_t size)
{
    static const size_t sizes[] = { 1, 24, 100, 1000, 9000, 70000, 200000, (size_t)5 << 20 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *blocks[N];
    int c = size ? data[size - 1] : 0;
    for (size_t i = 0; i < N; i++) {
        errno = 0;
        blocks[i] = mmh_alloc(h, sizes[i]);
        if (!writable) {
            if (blocks[i] || errno != EROFS)
                violation("mmh_alloc on a read-only heap: %p, errno %d", blocks[i], errno);
            continue;
        }
        use_block(h, blocks[i], sizes[i], c, "mmh_alloc");
    }
    if (!writable)
        return;
    for (size_t i = 0; i < N; i += 2)
        mmh_free(h, blocks[i]);
    static const size_t resized[N] = { [3] = 30000, [5] = 300000, [7] = (size_t)1 << 20 };
    for (size_t i = 3; i < N; i += 2)
        if (blocks[i])
            blocks[i] = use_block(h, mmh_realloc(h, blocks[i], resized[i]), resized[i], c,
                                  "mmh_realloc");
    mmh_free(h, use_block(h, mmh_aligned_alloc(h, 4096, 5000), 5000, c, "mmh_aligned_alloc"));
    unsigned char *z = mmh_calloc(h, 100, 100);
    for (size_t i = 0; z && i < 100 * 100; i++)
        if (z[i])
            violation("mmh_calloc: byte %zu is %#x", i, z[i]);
    mmh_free(h, use_block(h, z, 100 * 100, c, "mmh_calloc"));
    mmh_free(h, blocks[7]);
    if (blocks[1])
        (void)mmh_set_root(h, blocks[1]);
}

/* One block of every size class, written and freed: what any heap that
 * opened must allow. */
static void alloc_every_class(mmh_heap *h, int c)
{
    for (unsigned cls = 1; cls < MMH_CLASSES; cls++) {
        size_t n = mmh_class_size(cls);
        mmh_free(h, use_block(h, mmh_alloc(h, n), n, c, "mmh_alloc (every class)"));
    }
}

/* Does the checker find the heap as the next open will see it sound? */
static bool heap_sound(void)
{
    mmh_image img;
    mmh_check_result r;
    if (mmh_image_open(&img, heap_path) != 0)
        return false;
    bool sound = mmh_check_image(&img, &r, NULL, NULL, NULL) == 0;
    mmh_image_close(&img);
    return sound;
}

/* Open the file in one configuration and use what opened. */
static void open_and_use(unsigned opts, const uint8_t *data, size_t size)
{
    bool sound = heap_sound();
    const char *config = configs[opts & OPT_CONFIG_MASK].name;
    mmh_config cfg = { .flags = configs[opts & OPT_CONFIG_MASK].flags,
                       .tracker = MMH_TRACK_NONE };
    bool writable = !(cfg.flags & (MMH_READONLY | MMH_VOLATILE));
    errno = 0;
    mmh_heap *h = mmh_open(heap_path, &cfg);
    if (!h) {
        check_failure("mmh_open", config);
        if (!strstr(mmh_errmsg(), heap_path))
            violation("mmh_open (%s) error does not name the file: %s", config, mmh_errmsg());
        return;
    }
    struct mmh_stats st;
    if (mmh_stats(h, &st) != 0)
        violation("mmh_stats failed: %s", mmh_errmsg());
    if (st.size < MMH_SEG_SIZE || st.size > st.max_size)
        violation("mmh_stats: size %llu, max_size %llu", (unsigned long long)st.size,
                  (unsigned long long)st.max_size);
    volatile const char *root = mmh_root(h);
    if (root)
        (void)*root; /* inside the mapping: readable */
    if (writable || (cfg.flags & MMH_VOLATILE))
        alloc_every_class(h, size ? data[0] : 0);
    if ((opts & OPT_EXERCISE) && sound)
        exercise_allocator(h, writable || (cfg.flags & MMH_VOLATILE), data, size);
    int committed = mmh_commit(h);
    if (committed != 0)
        check_failure("mmh_commit", config);
    else if (!writable)
        violation("mmh_commit of a %s heap succeeded", config);
    errno = 0;
    int closed = mmh_close(h);
    if (closed != 0) {
        check_failure("mmh_close", config);
        return;
    }
    if (!writable || committed != 0)
        return;
    /* What the library itself committed must open again, with no journal
     * waiting (a read-only open would refuse one with EAGAIN). */
    mmh_config again = { .flags = MMH_READONLY | MMH_RELOCATE };
    h = mmh_open(heap_path, &again);
    if (!h)
        violation("a heap committed and closed (%s) does not open again: %s", config,
                  mmh_errmsg());
    if (mmh_close(h) != 0)
        violation("read-only mmh_close failed: %s", mmh_errmsg());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return -1; /* not in the format: keep it out of the corpus */
    unsigned opts = data[0];
    size_t heap_len = load_le32(data + 1);
    const uint8_t *heap_part = data + 5;
    size_t rest = size - 5;
    if (heap_len > rest)
        heap_len = rest;
    if (heap_len > FUZZ_HEAP_PART_MAX)
        heap_len = FUZZ_HEAP_PART_MAX;
    if (write_heap_file(heap_part, heap_len) == 0) {
        if (opts & OPT_FIX_SUMS)
            fix_header_checksum();
        if (write_journal_file(heap_part + heap_len, rest - heap_len, opts) == 0)
            open_and_use(opts, data, size);
    }
    remove_files();
    int fd = leaked_fd();
    if (fd >= 0)
        violation("file descriptor %d is still open on a file of %s", fd, work_dir);
    return 0;
}
