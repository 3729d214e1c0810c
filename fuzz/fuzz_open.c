/* fuzz_open: a libFuzzer target for mmh_open of existing heap files and
 * for the recovery of their write-ahead logs (FILE.wal: lib/wal.c,
 * lib/persist.c).
 *
 * One input is a heap file and its log, written to a private directory,
 * then opened in one of several configurations.  The input format
 * (fuzz/make_seeds.c writes it; all integers little-endian):
 *
 *   byte 0       options (OPT_* in fuzz_format.h): configuration, naming,
 *                checksum repair
 *   bytes 1..4   H: length of the heap part (clamped to what follows and to
 *                HEAP_PART_MAX)
 *   heap part    4 bytes: the heap file's size (clamped to FILE_SIZE_MAX),
 *                then extents to the end of the part: 4 bytes file offset,
 *                2 bytes length, the bytes.  The file is sparse: a valid
 *                heap is at least one 4 MiB segment, and mostly holes.
 *   the rest     the log file FILE.wal, byte for byte; empty: no log file
 *                (or an empty one, with OPT_ZERO_FILL).  A log the library
 *                wrote is zero-filled past its last commit; the seeds leave
 *                those zeros out, and OPT_ZERO_FILL puts them back (as a
 *                hole: a reader cannot tell, and a writer need not grow
 *                the log).
 *
 * The heap header and the log are checksummed (the log's header slots,
 * each commit's head chained to the previous one's, each data record), so
 * mutated bytes there are almost always refused before anything deeper
 * runs.  OPT_FIX_SUMS makes the harness recompute them after mutation, as
 * a crafted (not a damaged) file would carry them, so that the checks
 * behind the checksums (the walk's bounds on heads and records, the
 * overlay, recovery and checkpoints of what it finds) are fuzzed too; see
 * fuzz_wal_fix_commits.  A log replays only onto the heap it names
 * (file_id, and the heap's wal_gen once it has one): OPT_NAME_* make the
 * two name each other, or not, whatever their bytes say.
 *
 * The checks on top of "no crash, no sanitizer report":
 * - a failed mmh_open returns NULL with errno set and a message naming the
 *   file; no failure is EIO (nothing here fails to read: a short file is
 *   not an I/O error);
 * - a writable open, commit or close that fails leaves a heap the checker
 *   opened before still open to it (recovery writes only what it saw),
 *   and its file no longer than the heap's max_size or than it was;
 * - every heap that opened writable gets a block of every size class:
 *   mmh_open checks each page descriptor's list heads and counts, so the
 *   first block a class's current page hands out is sound whatever the
 *   checker says of the rest;
 * - only heaps that the checker (lib/check.c, `mmheap check`, which sees
 *   the log applied) finds sound are allocated in further (OPT_EXERCISE):
 *   mmh_open checks a heap's structure, not the free lists of blocks inside
 *   its pages, so allocation in a heap whose free lists are damaged is not
 *   defended;
 * - a read-only heap refuses allocation with EROFS;
 * - a heap that a writable open committed and closed successfully opens
 *   again (read-only); in private mode its log is then its own and holds
 *   no commit after the mark (mmh_close checkpointed them all); its file
 *   grew to no more than its extent; and a heap the checker found sound
 *   before is still sound (check_closed);
 * - no file descriptor on the heap or its log, and no thread (the
 *   checkpointer), outlives an iteration.
 */
#define _GNU_SOURCE
#include "check.h"

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

/* The configurations.  The writable ones track written pages as a program
 * does by default (the uffd tracker, else mprotect), or not at all: then
 * a commit walks the heap's metadata for every range in use. */
static const struct {
    const char *name;
    unsigned    flags;
    mmh_tracker tracker;
} configs[8] = {
    { "read-only", MMH_READONLY, MMH_TRACK_NONE },
    { "writable private", 0, MMH_TRACK_AUTO },
    { "volatile", MMH_VOLATILE, MMH_TRACK_NONE },
    { "writable, relocatable, untracked", MMH_RELOCATE, MMH_TRACK_NONE },
    { "read-only, relocatable", MMH_READONLY | MMH_RELOCATE, MMH_TRACK_NONE },
    { "volatile, relocatable", MMH_VOLATILE | MMH_RELOCATE, MMH_TRACK_NONE },
    { "writable shared", MMH_SHARED, MMH_TRACK_AUTO },
    { "writable shared, relocatable, untracked", MMH_SHARED | MMH_RELOCATE, MMH_TRACK_NONE },
};

static char work_dir[4096];
static char heap_path[4200];
static char wal_path[4200];

static void remove_files(void)
{
    unlink(heap_path);
    unlink(wal_path);
}

static void remove_work_dir(void)
{
    remove_files();
    rmdir(work_dir);
}

/* A harness-side contract violation: report it the way a crash is.  The
 * work directory goes first (abort skips atexit): a heap file the library
 * grew wrongly may hold much of the tmpfs, and the input reproduces it. */
static void __attribute__((noreturn, format(printf, 1, 2))) violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz_open: contract violation: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    remove_work_dir();
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

/* Threads of the process: an iteration's checkpointer must be gone by its
 * end (libFuzzer starts none during one). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
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
    snprintf(wal_path, sizeof wal_path, "%s.wal", heap_path);
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

/* The heap file's header page, as far as the file has one (the rest
 * zero): what the options read and change. */
static bool load_hdr_page(uint8_t page[MMH_HDR_SIZE])
{
    memset(page, 0, MMH_HDR_SIZE);
    int fd = open(heap_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = pread(fd, page, MMH_HDR_SIZE, 0);
    close(fd);
    return n == MMH_HDR_SIZE;
}

static int store_hdr_page(const uint8_t page[MMH_HDR_SIZE])
{
    int fd = open(heap_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = pwrite(fd, page, MMH_HDR_SIZE, 0) == MMH_HDR_SIZE ? 0 : -1;
    close(fd);
    return rc;
}

static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof v); /* little-endian host: the format is its own */
}

/* Apply the naming and checksum options to the heap file's header and to
 * w, a private copy of the log image (len bytes; NULL if none).  0, or -1
 * if the harness itself could not write. */
static int repair(unsigned opts, uint8_t *w, size_t len)
{
    _Alignas(mmh_hdr) uint8_t page[MMH_HDR_SIZE];
    unsigned naming = opts & OPT_NAME_MASK;
    bool fix = opts & OPT_FIX_SUMS;
    bool whole = load_hdr_page(page); /* else no heap header to name or repair */
    uint64_t file_id = load_le64(page + offsetof(mmh_hdr, file_id));
    uint64_t sum = load_le64(page + offsetof(mmh_hdr, checksum));
    bool hdr_sealed = sum == mmh_format_checksum((const mmh_hdr *)page);
    bool hdr_changed = false;
    if (w) {
        /* The slots: named after the heap (a sealed slot stays sealed), then
         * all resealed; then the commits after the mark of the header that
         * is now in force. */
        if (naming != OPT_NAME_KEEP && whole)
            fuzz_wal_fix_slots(w, len, true, file_id, !fix);
        if (fix)
            fuzz_wal_fix_slots(w, len, false, 0, false);
        mmh_wal_hdr hf;
        bool in_force = fuzz_wal_in_force(w, len, &hf);
        if (fix && in_force)
            (void)fuzz_wal_fix_commits(w, len, &hf);
        uint64_t gen = in_force ? hf.gen : 0;
        if (!in_force && len >= sizeof hf) {
            memcpy(&hf, w, sizeof hf); /* slot 0's: the best guess */
            gen = hf.gen;
        }
        if (naming != OPT_NAME_KEEP && whole) {
            uint64_t wal_gen = naming == OPT_NAME_GEN     ? gen
                               : naming == OPT_NAME_FRESH ? 0
                                                          : (gen + 1) | 1;
            store_le64(page + offsetof(mmh_hdr, wal_gen), wal_gen);
            hdr_changed = true;
        }
    }
    if (whole && (fix || (hdr_changed && hdr_sealed)))
        hdr_changed |= fuzz_fix_hdr_page(page);
    return hdr_changed ? store_hdr_page(page) : 0;
}

static int write_wal_file(const uint8_t *w, size_t len, unsigned opts)
{
    if (len == 0 && !(opts & OPT_ZERO_FILL))
        return 0;
    int rc = -1, fd = open(wal_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        rc = len == 0 || write(fd, w, len) == (ssize_t)len ? 0 : -1;
        if (rc == 0 && len && len < FUZZ_WAL_FILLED && (opts & OPT_ZERO_FILL))
            rc = ftruncate(fd, (off_t)FUZZ_WAL_FILLED);
        close(fd);
    }
    return rc;
}

/* A failure must say why, in errno and a message.  Not EIO: the harness's
 * files are in a sound file system (tmpfs where there is one), where no
 * read or write fails, so an EIO is the library taking something else (a
 * file shorter than it expected) for a failed read. */
static void check_failure(const char *what, const char *config)
{
    int err = errno;
    const char *msg = mmh_errmsg();
    if (err == 0)
        violation("%s (%s) failed with errno 0 (message: %s)", what, config, msg ? msg : "NULL");
    if (!msg || !*msg)
        violation("%s (%s) failed (errno %d) with no message", what, config, err);
    if (err == EIO)
        violation("%s (%s) failed with EIO, and nothing here fails to read or write: %s", what,
                  config, msg);
}

/* A block of n bytes that an allocation call (what) returned, filled with
 * c; NULL is a failure, which must be reported. */
static void *use_block(mmh_heap *h, void *p, size_t n, int c, const char *what)
{
    if (!p) {
        check_failure(what, "exercise");
        return NULL;
    }
    /* Touch every page, and write its ends: ASan does not see the heap, but
     * a block that overlaps unmapped space faults here.  Not every byte: a
     * written page goes into the next commit, and the huge blocks would
     * make each commit megabytes (and the log grow 16 times that). */
    volatile const char *q = p;
    for (size_t i = 0; i < n; i += 4096)
        (void)q[i];
    size_t ends = n < 128 ? n : 64;
    memset(p, c, ends);
    memset((char *)p + n - ends, c, ends);
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

/* Can the checker open the heap as the next open will see it (its log
 * applied)?  *sound: and does it find it sound?  *max_size: the max_size
 * of the header it sees. */
static bool heap_view(bool *sound, uint64_t *max_size)
{
    mmh_fileview fv;
    mmh_check_result r;
    *sound = false;
    if (mmh_fileview_open(&fv, heap_path) != 0)
        return false;
    *max_size = fv.hdr->max_size;
    *sound = mmh_check_fileview(&fv, &r, NULL, NULL, NULL) == 0;
    mmh_fileview_close(&fv);
    return true;
}

/* What the checker saw before an open. */
typedef struct view {
    bool     viewable, sound;
    uint64_t max_size, file_size;
} view;

static uint64_t file_size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A writable open, commit or close that failed (what) may not leave a heap
 * that the checker could open unreadable: recovery and checkpoints write
 * what the log held, which the checker saw applied.  Nor may it have grown
 * the file past the heap's max_size. */
static void check_still_viewable(const view *before, const char *what, const char *config)
{
    bool sound;
    uint64_t max_size;
    char msg[4096];
    if (!before->viewable)
        return;
    snprintf(msg, sizeof msg, "%s", mmh_errmsg() ? mmh_errmsg() : "");
    uint64_t size = file_size_of(heap_path);
    if (size > before->file_size && size > before->max_size)
        violation("a failed %s (%s: %s) grew the heap file from %llu to %llu bytes, past the "
                  "heap's max_size %llu", what, config, msg,
                  (unsigned long long)before->file_size, (unsigned long long)size,
                  (unsigned long long)before->max_size);
    if (!heap_view(&sound, &max_size))
        violation("after a failed %s (%s: %s) the checker cannot open the heap it opened "
                  "before: %s", what, config, msg, mmh_errmsg());
}

static const char *wal_state_name(mmh_wal_state s)
{
    return s == MMH_WAL_VALID ? "valid" : s == MMH_WAL_STALE ? "stale"
           : s == MMH_WAL_LEFTOVER ? "leftover" : "absent";
}

/* What a writable open committed and closed successfully: it opens again
 * (read-only); in private mode its log is its own (the heap names it, or
 * it was made for the heap) and holds no commit after the mark, mmh_close
 * having checkpointed them all; the file grew to no more than the heap's
 * extent (as it was, or as committed); and a heap the checker found sound
 * before is still sound. */
static void check_closed(const char *config, bool private, const view *before)
{
    mmh_config again = { .flags = MMH_READONLY | MMH_RELOCATE };
    mmh_heap *h = mmh_open(heap_path, &again);
    if (!h)
        violation("a heap committed and closed (%s) does not open again: %s", config,
                  mmh_errmsg());
    if (mmh_close(h) != 0)
        violation("read-only mmh_close failed: %s", mmh_errmsg());
    int fd = open(heap_path, O_RDONLY | O_CLOEXEC);
    mmh_hdr hdr;
    if (fd < 0 || pread(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
        violation("a heap committed and closed (%s) has no header", config);
    mmh_wal_view v;
    if (mmh_wal_inspect(heap_path, fd, false, &v) != 0)
        violation("a heap committed and closed (%s): its log: %s", config, mmh_errmsg());
    mmh_wal_view_close(&v);
    close(fd);
    if (private && (v.info.state != MMH_WAL_VALID || v.info.commits != 0))
        violation("after a commit and close (%s) the log is %s with %llu commits after its "
                  "mark (%llu..%llu; the heap file's commit %llu)", config,
                  wal_state_name(v.info.state), (unsigned long long)v.info.commits,
                  (unsigned long long)v.info.first_seq, (unsigned long long)v.info.last_seq,
                  (unsigned long long)v.info.heap_seq);
    uint64_t size = file_size_of(heap_path);
    if (size > before->file_size && size > hdr.extent)
        violation("after a commit and close (%s) the heap file is %llu bytes: it was %llu, "
                  "and the heap's extent is %llu", config, (unsigned long long)size,
                  (unsigned long long)before->file_size, (unsigned long long)hdr.extent);
    if (!before->viewable)
        return;
    mmh_fileview fv;
    mmh_check_result r;
    if (mmh_fileview_open(&fv, heap_path) != 0)
        violation("a heap committed and closed (%s) does not open for the checker, which "
                  "opened it before: %s", config, mmh_errmsg());
    bool still_sound = mmh_check_fileview(&fv, &r, NULL, NULL, NULL) == 0;
    mmh_fileview_close(&fv);
    if (before->sound && !still_sound)
        violation("a sound heap, allocated in, committed and closed (%s), is no longer sound "
                  "(%llu problems)", config, (unsigned long long)r.problems);
}

/* Open the file in one configuration and use what opened. */
static void open_and_use(unsigned opts, const uint8_t *data, size_t size)
{
    view before = { 0 };
    before.viewable = heap_view(&before.sound, &before.max_size);
    before.file_size = file_size_of(heap_path);
    const char *config = configs[opts & OPT_CONFIG_MASK].name;
    mmh_config cfg = { .flags = configs[opts & OPT_CONFIG_MASK].flags,
                       .tracker = configs[opts & OPT_CONFIG_MASK].tracker };
    bool writable = !(cfg.flags & (MMH_READONLY | MMH_VOLATILE));
    errno = 0;
    mmh_heap *h = mmh_open(heap_path, &cfg);
    if (!h) {
        check_failure("mmh_open", config);
        if (!strstr(mmh_errmsg(), heap_path))
            violation("mmh_open (%s) error does not name the file: %s", config, mmh_errmsg());
        if (writable)
            check_still_viewable(&before, "mmh_open", config);
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
    if ((opts & OPT_EXERCISE) && before.sound)
        exercise_allocator(h, writable || (cfg.flags & MMH_VOLATILE), data, size);
    int committed = mmh_commit(h);
    if (committed != 0)
        check_failure("mmh_commit", config);
    else if (!writable)
        violation("mmh_commit of a %s heap succeeded", config);
    errno = 0;
    int closed = mmh_close(h);
    if (closed != 0)
        check_failure("mmh_close", config);
    if (writable && (closed != 0 || committed != 0))
        check_still_viewable(&before, committed ? "mmh_commit" : "mmh_close", config);
    if (!writable || committed != 0 || closed != 0)
        return;
    check_closed(config, !(cfg.flags & MMH_SHARED), &before);
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
    const uint8_t *wal = heap_part + heap_len;
    size_t wal_len = rest - heap_len;
    uint8_t *copy = NULL;
    int threads = thread_count();
    if (write_heap_file(heap_part, heap_len) != 0)
        goto out;
    if (wal_len && (opts & (OPT_FIX_SUMS | OPT_NAME_MASK))) {
        if (!(copy = malloc(wal_len)))
            goto out;
        memcpy(copy, wal, wal_len);
        wal = copy;
    }
    if (repair(opts, copy, wal_len) == 0 && write_wal_file(wal, wal_len, opts) == 0)
        open_and_use(opts, data, size);
out:
    free(copy);
    remove_files();
    int fd = leaked_fd();
    if (fd >= 0)
        violation("file descriptor %d is still open on a file of %s", fd, work_dir);
    if (thread_count() != threads)
        violation("%d threads after the iteration, %d before", thread_count(), threads);
    return 0;
}
