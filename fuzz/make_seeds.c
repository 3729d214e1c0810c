/* make_seeds: write a seed corpus for fuzz_open into DIR.
 *
 *   make_seeds DIR
 *
 * Builds a few valid heaps with the library itself and packs each, with
 * or without a journal, into fuzz_open's input format (fuzz_format.h):
 *   empty       a new, empty heap
 *   blocks      blocks of several sizes and a root, committed
 *   grown       a huge block: the file grew to a second segment
 *   pending     the heap before a commit, with that commit's complete
 *               journal: what a commit killed between syncing its journal
 *               and writing in place leaves (the next open replays it)
 *   replayed    the heap after that commit, with its journal still
 *               complete: killed before invalidating the journal
 *   torn        the pending heap with the journal cut short (discarded)
 *   foreign     the empty heap with the journal of another heap (discarded)
 * Each is written once per configuration (options byte), so the fuzzer
 * starts from every way of opening it.
 *
 * A commit zeroes its journal's magic when it is done; putting the magic
 * back yields the complete journal a commit killed at the right moment
 * would have left, deterministically.
 */
#define _GNU_SOURCE
#include "mmheap.h"
#include "fuzz_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define EXTENT_CHUNK ((size_t)32 << 10) /* fits the format's 16-bit length */

struct buf {
    unsigned char *data;
    size_t len, cap;
};

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s (%s)\n", what, strerror(errno), mmh_errmsg());
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

static struct buf read_file(const char *path)
{
    struct buf b = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
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

static void write_seed(const char *dir, const char *name, unsigned opts, const struct buf *heap,
                       const unsigned char *journal, size_t journal_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%02x", dir, name, opts);
    struct buf part = pack_heap(heap), seed = { 0 };
    buf_add_le(&seed, opts, 1);
    buf_add_le(&seed, part.len, 4);
    buf_add(&seed, part.data, part.len);
    if (journal_len)
        buf_add(&seed, journal, journal_len);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(seed.data, 1, seed.len, f) != seed.len || fclose(f) != 0)
        die(path);
    free(part.data);
    free(seed.data);
}

/* One seed per configuration, allocating; and one with checksums
 * recomputed by the harness (what lets mutations get past them).  A
 * journal of this heap also gets one with the harness setting its file_id
 * (still this heap's): the bit mutations of checksummed seeds keep. */
static void write_seeds(const char *dir, const char *name, const struct buf *heap,
                        const unsigned char *journal, size_t journal_len, bool own_journal)
{
    for (unsigned config = 0; config < 8; config++)
        write_seed(dir, name, 0x20u | config, heap, journal, journal_len);
    write_seed(dir, name, 0x08u | 0x20u | 0x01u, heap, journal, journal_len);
    if (journal_len && own_journal)
        write_seed(dir, name, 0x40u | 0x08u | 0x20u | 0x01u, heap, journal, journal_len);
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

/* The journal's bytes that count (up to its end block), magic restored. */
static struct buf complete_journal(const char *path)
{
    struct buf j = read_file(path);
    mmh_journal_hdr jh;
    if (j.len < sizeof jh)
        die("journal shorter than its header");
    memcpy(jh.magic, MMH_JOURNAL_MAGIC, sizeof jh.magic);
    memcpy(j.data, jh.magic, sizeof jh.magic);
    memcpy(&jh, j.data, sizeof jh);
    size_t used = sizeof jh + jh.nrecords * sizeof(mmh_journal_rec) + jh.data_bytes +
                  sizeof(mmh_journal_end);
    if (used > j.len)
        die("journal shorter than its table says");
    j.len = used;
    return j;
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
    char work[] = "/tmp/mmh-seeds-XXXXXX", path[4200], jpath[4300], other[4200];
    if (!mkdtemp(work))
        die("mkdtemp");
    snprintf(path, sizeof path, "%s/h.heap", work);
    snprintf(jpath, sizeof jpath, "%s.journal", path);
    snprintf(other, sizeof other, "%s/other.heap", work);

    /* empty */
    if (mmh_close(open_heap(other, MMH_CREATE)) != 0)
        die("mmh_close");
    struct buf empty = read_file(other);
    write_seeds(dir, "empty", &empty, NULL, 0, false);

    /* blocks */
    mmh_heap *h = open_heap(path, MMH_CREATE);
    fill(h, 0);
    if (mmh_commit(h) != 0)
        die("mmh_commit");
    struct buf before = read_file(path);
    write_seeds(dir, "blocks", &before, NULL, 0, false);

    /* pending, replayed, torn, foreign: one more commit's journal */
    fill(h, 1);
    if (mmh_commit(h) != 0)
        die("mmh_commit");
    struct buf after = read_file(path);
    struct buf journal = complete_journal(jpath);
    write_seeds(dir, "pending", &before, journal.data, journal.len, true);
    write_seeds(dir, "replayed", &after, journal.data, journal.len, true);
    write_seeds(dir, "torn", &before, journal.data, journal.len - 8, true);
    write_seeds(dir, "foreign", &empty, journal.data, journal.len, false);

    /* grown */
    void *huge = mmh_alloc(h, (size_t)5 << 20);
    if (!huge)
        die("mmh_alloc (huge)");
    memset(huge, 0x5a, 64);
    if (mmh_close(h) != 0)
        die("mmh_close");
    struct buf grown = read_file(path);
    write_seeds(dir, "grown", &grown, NULL, 0, false);

    unlink(jpath);
    unlink(path);
    snprintf(jpath, sizeof jpath, "%s.journal", other);
    unlink(jpath);
    unlink(other);
    rmdir(work);
    free(empty.data);
    free(before.data);
    free(after.data);
    free(journal.data);
    free(grown.data);
    return 0;
}
