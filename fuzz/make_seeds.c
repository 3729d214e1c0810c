/* make_seeds: write a seed corpus for fuzz_open into DIR.
 *
 *   make_seeds DIR
 *
 * Builds heaps and their write-ahead logs (FILE.wal) with the library
 * itself and packs each pair into fuzz_open's input format (fuzz_format.h):
 *   new         a heap created by a process that exited without a commit:
 *               its file names no log yet (wal_gen 0), its log holds no
 *               commit
 *   nolog       that heap without its log (refused, if it names one)
 *   blocks      blocks of several sizes and a root, committed and closed:
 *               checkpointed, the log holds nothing after its mark, and
 *               the heap names it (wal_gen)
 *   pending1..3 the blocks heap opened again and 1, 2 or 3 commits made by
 *               a process that exited right after the last one, without
 *               mmh_close: the commits wait in the log (the next open
 *               replays them)
 *   fresh       a heap created and given 2 commits by a process that
 *               exited: never checkpointed, so its file names no log and
 *               the log is its own by file_id only
 *   replayed    the heap file as a checkpoint of pending2 leaves it, with
 *               pending2's log, mark not yet advanced: replayed again
 *   torn        pending2 with a sector of its second commit lost (the walk
 *               ends at the first commit; the second is torn)
 *   stale       a copy of pending1's log beside the heap that went on to
 *               later commits (the log is never replayed; a writer resets it)
 *   leftover    the new heap, naming no log, beside pending2's log, made
 *               for another heap file (ignored; a writer makes its own)
 *   foreign     the blocks heap, which names its log, beside fresh's log
 *               (refused)
 *   grownpend   the blocks heap opened again and grown by a huge block, in
 *               one commit left in the log
 *   grownshort  that, with the heap file as long as before the growth (a
 *               crash lost the extension: a writer extends it, a reader
 *               cannot)
 *   grown       that heap opened and closed: checkpointed
 * Each is written once per configuration (options byte), so the fuzzer
 * starts from every way of opening it, and with the bits that mutations of
 * checksummed bytes need: OPT_FIX_SUMS and, for a log of its own heap,
 * each way of naming it (write_seeds).
 *
 * The commits of pendingN, fresh and grownpend are made in a child that
 * _exits right after its last mmh_commit: nothing checkpoints them (the
 * checkpoint thread waits for a fuller log, or a commit older than the few
 * milliseconds they take, and mmh_close is never called).  A log the
 * library made is zero-filled past its last commit; the seeds leave out
 * those zeros, which fuzz_open's OPT_ZERO_FILL puts back.  Every seed's log
 * is checked with the library's own mmh_wal_inspect to be what its name
 * says, and fuzz_open's repairs (fuzz_format.h) are checked to leave every
 * intact log unchanged: the seeds cannot drift from the format silently.
 */
#define _GNU_SOURCE
#include "mmheap.h"
#include "fuzz_format.h"
#include "persist.h" /* mmh_wal_inspect: which seeds the log accepts */

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define EXTENT_CHUNK ((size_t)32 << 10) /* fits the format's 16-bit length */

struct buf {
    unsigned char *data;
    size_t len, cap;
};

/* A heap file and its log, as the files were (wal.data NULL: no log). */
struct files {
    struct buf heap, wal;
};

static char work[] = "/tmp/mmh-seeds-XXXXXX";
static char check_path[4200];

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s (%s)\n", what, strerror(errno), mmh_errmsg());
    exit(1);
}

static void __attribute__((noreturn)) wrong(const char *seed, const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s\n", seed, what);
    exit(1);
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        if (!(b->data = realloc(b->data, b->cap)))
            die("realloc");
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_add_le(struct buf *b, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        unsigned char c = (unsigned char)(v >> (8 * i));
        buf_add(b, &c, 1);
    }
}

/* A copy (data NULL: none, as b). */
static struct buf buf_copy(const struct buf *b)
{
    struct buf c = { 0 };
    if (!b->data)
        return c;
    c.cap = b->len + 1;
    if (!(c.data = malloc(c.cap)))
        die("malloc");
    memcpy(c.data, b->data, b->len);
    c.len = b->len;
    return c;
}

/* The file's bytes; with may_miss, a missing file gives data NULL. */
static struct buf read_file(const char *path, bool may_miss)
{
    struct buf b = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && errno == ENOENT && may_miss)
        return b;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(path);
    b.cap = (size_t)st.st_size + 1;
    if (!(b.data = malloc(b.cap)))
        die("malloc");
    if (st.st_size && pread(fd, b.data, (size_t)st.st_size, 0) != st.st_size)
        die(path);
    b.len = (size_t)st.st_size;
    close(fd);
    return b;
}

static void write_file(const char *path, const struct buf *b)
{
    unlink(path);
    if (!b->data)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (b->len && write(fd, b->data, b->len) != (ssize_t)b->len) || close(fd) != 0)
        die(path);
}

static void wal_name(char *out, size_t n, const char *path)
{
    snprintf(out, n, "%s.wal", path);
}

static struct files capture(const char *path)
{
    char wal[4300];
    wal_name(wal, sizeof wal, path);
    return (struct files){ read_file(path, false), read_file(wal, true) };
}

static void restore(const char *path, const struct files *f)
{
    char wal[4300];
    wal_name(wal, sizeof wal, path);
    write_file(path, &f->heap);
    write_file(wal, &f->wal);
}

static void files_free(struct files *f)
{
    free(f->heap.data);
    free(f->wal.data);
    *f = (struct files){ 0 };
}

/* A heap file as the heap part: its size, then its non-zero pages as
 * extents (the zero ones stay holes). */
static struct buf pack_heap(const struct buf *file)
{
    static const unsigned char zero[PAGE];
    struct buf part = { 0 };
    buf_add_le(&part, file->len, 4);
    for (size_t off = 0; off < file->len;) {
        size_t n = file->len - off < PAGE ? file->len - off : PAGE;
        if (memcmp(file->data + off, zero, n) == 0) {
            off += n;
            continue;
        }
        size_t end = off + n;
        while (end < file->len && end - off < EXTENT_CHUNK) {
            size_t m = file->len - end < PAGE ? file->len - end : PAGE;
            if (memcmp(file->data + end, zero, m) == 0)
                break;
            end += m;
        }
        buf_add_le(&part, off, 4);
        buf_add_le(&part, end - off, 2);
        buf_add(&part, file->data + off, end - off);
        off = end;
    }
    return part;
}

/* The log without the zeros past its last written page: what a reader
 * sees is the same (commits need a whole page to start in). */
static struct buf trim_wal(const struct buf *wal)
{
    struct buf t = buf_copy(wal);
    if (!t.data)
        return t;
    size_t end = t.len;
    while (end && !t.data[end - 1])
        end--;
    end = mmh_align_up(end, PAGE);
    if (end < MMH_WAL_START)
        end = MMH_WAL_START;
    if (end < t.len)
        t.len = end;
    return t;
}

static void write_seed(const char *dir, const char *name, unsigned opts, const struct buf *heap,
                       const struct buf *wal)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%02x", dir, name, opts);
    struct buf part = pack_heap(heap), seed = { 0 };
    buf_add_le(&seed, opts, 1);
    buf_add_le(&seed, part.len, 4);
    buf_add(&seed, part.data, part.len);
    if (wal->data && wal->len)
        buf_add(&seed, wal->data, wal->len);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(seed.data, 1, seed.len, f) != seed.len || fclose(f) != 0)
        die(path);
    free(part.data);
    free(seed.data);
}

/* One seed per configuration, allocating, the log zero-filled as the
 * library leaves it; one with the log ending after its last page written;
 * one with checksums recomputed by the harness (what lets mutations get
 * past them); for a log of this very heap, one for each way the harness
 * makes them name each other (the bits mutations of checksummed seeds
 * keep). */
static void write_seeds(const char *dir, const char *name, const struct buf *heap,
                        const struct buf *wal, bool own_wal)
{
    const unsigned base = OPT_EXERCISE | 1u; /* writable private */
    for (unsigned config = 0; config < 8; config++)
        write_seed(dir, name, OPT_ZERO_FILL | OPT_EXERCISE | config, heap, wal);
    write_seed(dir, name, base, heap, wal);
    write_seed(dir, name, OPT_ZERO_FILL | OPT_FIX_SUMS | base, heap, wal);
    if (wal->data && own_wal) {
        write_seed(dir, name, OPT_ZERO_FILL | OPT_NAME_GEN | OPT_FIX_SUMS | base, heap, wal);
        write_seed(dir, name, OPT_ZERO_FILL | OPT_NAME_FRESH | OPT_FIX_SUMS | base, heap, wal);
    }
}

static mmh_heap *open_heap(const char *path, unsigned flags)
{
    mmh_config cfg = { .flags = flags, .max_size = (size_t)256 << 20 };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        die(path);
    return h;
}

/* Some blocks of the sizes the harness uses, a list through them, and
 * the root pointing at it. */
static void fill(mmh_heap *h, unsigned round)
{
    static const size_t sizes[] = { 16, 48, 100, 1000, 9000, 70000 };
    void **prev = mmh_root(h);
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void **p = mmh_alloc(h, sizes[i]);
        if (!p)
            die("mmh_alloc");
        memset(p, (int)(round * 16 + i + 1), sizes[i] < 64 ? sizes[i] : 64);
        p[0] = prev;
        prev = p;
    }
    if (mmh_set_root(h, prev) != 0)
        die("mmh_set_root");
}

/* What a child process does to the heap at path before it _exits, never
 * closing the heap: its commits stay in the log, not checkpointed (the
 * checkpointer waits for a fuller log or an older commit than a few
 * milliseconds make). */
enum child_op {
    CREATE,  /* create it, nothing else                 */
    FRESH,   /* create it and make n commits            */
    COMMITS, /* open it and make n commits              */
    GROW,    /* open it and commit a huge block          */
};

static void child_run(const char *path, enum child_op op, unsigned n)
{
    mmh_heap *h = open_heap(path, op == CREATE || op == FRESH ? MMH_CREATE : 0);
    if (op == GROW) {
        void *huge = mmh_alloc(h, (size_t)5 << 20);
        if (!huge)
            die("mmh_alloc (huge)");
        memset(huge, 0x5a, 64);
        if (mmh_set_root(h, huge) != 0 || mmh_commit(h) != 0)
            die("mmh_commit");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        fill(h, 1 + i);
        if (mmh_commit(h) != 0)
            die("mmh_commit");
    }
}

static void in_child(const char *path, enum child_op op, unsigned n)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        child_run(path, op, n);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        wrong(path, "the child making it failed");
}

static uint64_t wal_gen_of(const struct buf *heap)
{
    uint64_t gen;
    memcpy(&gen, heap->data + offsetof(mmh_hdr, wal_gen), sizeof gen);
    return gen;
}

/* What the library finds in the log beside heap: 0 with *v (its fd and
 * path already let go), or -1 with errno. */
static int inspect(const struct buf *heap, const struct buf *wal, mmh_wal_view *v)
{
    struct buf trimmed = trim_wal(wal);
    restore(check_path, &(struct files){ *heap, trimmed });
    int fd = open(check_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(check_path);
    int rc = mmh_wal_inspect(check_path, fd, false, v);
    int err = errno;
    mmh_wal_view_close(v);
    close(fd);
    free(trimmed.data);
    errno = err;
    return rc;
}

/* The seed's log is what its name says. */
static void expect(const char *seed, const struct buf *heap, const struct buf *wal,
                   mmh_wal_state state, uint64_t commits, bool torn)
{
    mmh_wal_view v;
    if (inspect(heap, wal, &v) != 0)
        die(seed);
    if (v.info.state != state || v.info.commits != commits || v.info.torn != torn) {
        fprintf(stderr, "make_seeds: %s: log state %d with %llu commits%s, expected state %d "
                "with %llu%s\n", seed, (int)v.info.state, (unsigned long long)v.info.commits,
                v.info.torn ? " and a torn one" : "", (int)state, (unsigned long long)commits,
                torn ? " and a torn one" : "");
        exit(1);
    }
}

/* fuzz_open's repairs leave an intact log, and the heap's header, as they
 * are, and go through every commit after the mark. */
static void expect_repairs_identity(const char *seed, const struct buf *heap,
                                    const struct buf *wal, unsigned commits)
{
    _Alignas(mmh_hdr) uint8_t page[MMH_HDR_SIZE];
    memcpy(page, heap->data, sizeof page);
    if (fuzz_fix_hdr_page(page))
        wrong(seed, "the heap header's checksum is repaired");
    struct buf t = trim_wal(wal);
    fuzz_wal_fix_slots(t.data, t.len, false, 0, false);
    mmh_wal_hdr hf;
    if (!fuzz_wal_in_force(t.data, t.len, &hf))
        wrong(seed, "no log header in force");
    unsigned n = fuzz_wal_fix_commits(t.data, t.len, &hf);
    struct buf orig = trim_wal(wal);
    if (n != commits)
        wrong(seed, "the repair does not go through every commit");
    if (memcmp(t.data, orig.data, t.len) != 0)
        wrong(seed, "the repair changes an intact log");
    free(t.data);
    free(orig.data);
}

/* The heap file as a checkpoint of f leaves it (the log's mark not yet
 * advanced): mmheap recover's checkpoint. */
static struct buf checkpointed(const struct files *f)
{
    restore(check_path, f);
    int fd = open(check_path, O_RDWR | O_CLOEXEC);
    mmh_wal_view v;
    if (fd < 0 || mmh_wal_inspect(check_path, fd, true, &v) != 0 ||
        mmh_wal_recover(check_path, fd, &v) != 0)
        die("checkpoint");
    mmh_wal_view_close(&v);
    close(fd);
    return read_file(check_path, false);
}

/* The files a child doing op leaves at path (made anew, or from the files
 * from), holding n commits after the log's mark.  A checkpoint that ran in
 * the child after all (a machine stalled for seconds) spoils that: then
 * again, a few times. */
static struct files left_by_child(const char *path, const struct files *from, enum child_op op,
                                  unsigned n)
{
    for (int tries = 0;; tries++) {
        char wal[4300];
        wal_name(wal, sizeof wal, path);
        unlink(wal);
        unlink(path);
        if (from)
            restore(path, from);
        in_child(path, op, n);
        struct files f = capture(path);
        mmh_wal_view v;
        if (inspect(&f.heap, &f.wal, &v) == 0 && v.info.state == MMH_WAL_VALID &&
            v.info.commits == n)
            return f;
        files_free(&f);
        if (tries == 4)
            wrong(path, "the child's commits did not stay in its log");
    }
}

static void seeds(const char *dir, const char *name, const struct buf *heap,
                  const struct buf *wal, bool own_wal)
{
    struct buf t = trim_wal(wal);
    write_seeds(dir, name, heap, &t, own_wal);
    free(t.data);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        die(dir);
    char path[4200], fresh[4200], new_path[4200];
    if (!mkdtemp(work))
        die("mkdtemp");
    snprintf(path, sizeof path, "%s/h.heap", work);
    snprintf(fresh, sizeof fresh, "%s/f.heap", work);
    snprintf(new_path, sizeof new_path, "%s/n.heap", work);
    snprintf(check_path, sizeof check_path, "%s/check.heap", work);
    const struct buf none = { 0 };

    /* new, nolog */
    struct files created = left_by_child(new_path, NULL, CREATE, 0);
    expect("new", &created.heap, &created.wal, MMH_WAL_VALID, 0, false);
    if (wal_gen_of(&created.heap)) { /* it names its log: refused without */
        mmh_wal_view v;
        if (inspect(&created.heap, &none, &v) == 0 || errno != ENOENT)
            wrong("nolog", "a heap that names its log opens without it");
    } else {
        expect("nolog", &created.heap, &none, MMH_WAL_ABSENT, 0, false);
    }
    seeds(dir, "new", &created.heap, &created.wal, true);
    seeds(dir, "nolog", &created.heap, &none, false);

    /* blocks: a heap that names its log (wal_gen).  One that mmh_open
     * creates does not, in this version (the header write that names it
     * goes to a mapping that create_file replaces); a heap that finds no
     * log of its own at a writable open makes one and names it. */
    if (mmh_close(open_heap(path, MMH_CREATE)) != 0)
        die("mmh_close");
    struct files made = capture(path);
    if (!wal_gen_of(&made.heap)) {
        char wal[4300];
        wal_name(wal, sizeof wal, path);
        unlink(wal);
    }
    files_free(&made);
    mmh_heap *h = open_heap(path, 0);
    fill(h, 0);
    if (mmh_commit(h) != 0 || mmh_close(h) != 0)
        die("mmh_commit");
    struct files blocks = capture(path);
    if (!wal_gen_of(&blocks.heap))
        wrong("blocks", "the heap does not name its log");
    expect("blocks", &blocks.heap, &blocks.wal, MMH_WAL_VALID, 0, false);
    expect_repairs_identity("blocks", &blocks.heap, &blocks.wal, 0);
    seeds(dir, "blocks", &blocks.heap, &blocks.wal, true);

    /* pending1..3 */
    struct files pending[4] = { 0 };
    for (unsigned n = 1; n <= 3; n++) {
        char name[16];
        snprintf(name, sizeof name, "pending%u", n);
        pending[n] = left_by_child(path, &blocks, COMMITS, n);
        expect(name, &pending[n].heap, &pending[n].wal, MMH_WAL_VALID, n, false);
        expect_repairs_identity(name, &pending[n].heap, &pending[n].wal, n);
        seeds(dir, name, &pending[n].heap, &pending[n].wal, true);
    }

    /* fresh */
    struct files fr = left_by_child(fresh, NULL, FRESH, 2);
    expect("fresh", &fr.heap, &fr.wal, MMH_WAL_VALID, 2, false);
    expect_repairs_identity("fresh", &fr.heap, &fr.wal, 2);
    seeds(dir, "fresh", &fr.heap, &fr.wal, true);

    /* replayed */
    struct buf replayed = checkpointed(&pending[2]);
    expect("replayed", &replayed, &pending[2].wal, MMH_WAL_VALID, 2, false);
    seeds(dir, "replayed", &replayed, &pending[2].wal, true);

    /* torn: a sector of the last commit never reached the disk */
    {
        mmh_wal_view v;
        if (inspect(&pending[2].heap, &pending[2].wal, &v) != 0)
            die("torn");
        /* The last sector of it that the zero-filling did not write
         * already: the log's bytes there are zeros again. */
        struct buf torn = buf_copy(&pending[2].wal);
        static const unsigned char zero[512];
        size_t at = v.end.off - sizeof zero;
        while (memcmp(torn.data + at, zero, sizeof zero) == 0)
            at -= sizeof zero;
        memset(torn.data + at, 0, sizeof zero);
        expect("torn", &pending[2].heap, &torn, MMH_WAL_VALID, 1, true);
        seeds(dir, "torn", &pending[2].heap, &torn, true);
        free(torn.data);
    }

    /* stale: the heap went on past pending1's log */
    restore(path, &pending[3]);
    if (mmh_close(open_heap(path, 0)) != 0)
        die("mmh_close");
    struct files later = capture(path);
    expect("stale", &later.heap, &pending[1].wal, MMH_WAL_STALE, 1, false);
    seeds(dir, "stale", &later.heap, &pending[1].wal, true);

    /* leftover, foreign */
    {
        /* A heap that names no log (wal_gen 0, as one never checkpointed
         * may), beside a log made for another heap file. */
        struct buf unnamed = buf_copy(&created.heap);
        memset(unnamed.data + offsetof(mmh_hdr, wal_gen), 0, sizeof(uint64_t));
        (void)fuzz_fix_hdr_page(unnamed.data);
        expect("leftover", &unnamed, &pending[2].wal, MMH_WAL_LEFTOVER, 0, false);
        seeds(dir, "leftover", &unnamed, &pending[2].wal, false);
        free(unnamed.data);
    }
    {
        mmh_wal_view v;
        if (inspect(&blocks.heap, &fr.wal, &v) == 0 || errno != EBADMSG)
            wrong("foreign", "the log of another heap is not refused");
        seeds(dir, "foreign", &blocks.heap, &fr.wal, false);
    }

    /* grownpend, grownshort, grown */
    struct files grown = left_by_child(path, &blocks, GROW, 1);
    expect("grownpend", &grown.heap, &grown.wal, MMH_WAL_VALID, 1, false);
    expect_repairs_identity("grownpend", &grown.heap, &grown.wal, 1);
    seeds(dir, "grownpend", &grown.heap, &grown.wal, true);
    struct buf short_heap = grown.heap;
    if (short_heap.len <= blocks.heap.len)
        wrong("grownshort", "the heap file did not grow");
    short_heap.len = blocks.heap.len;
    seeds(dir, "grownshort", &short_heap, &grown.wal, true);
    if (mmh_close(open_heap(path, 0)) != 0)
        die("mmh_close");
    struct files closed = capture(path);
    expect("grown", &closed.heap, &closed.wal, MMH_WAL_VALID, 0, false);
    seeds(dir, "grown", &closed.heap, &closed.wal, true);

    const char *paths[] = { path, fresh, new_path, check_path };
    for (unsigned i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char wal[4300];
        wal_name(wal, sizeof wal, paths[i]);
        unlink(wal);
        unlink(paths[i]);
    }
    rmdir(work);
    files_free(&created);
    files_free(&blocks);
    for (unsigned n = 1; n <= 3; n++)
        files_free(&pending[n]);
    files_free(&fr);
    files_free(&later);
    files_free(&grown);
    files_free(&closed);
    free(replayed.data);
    return 0;
}
