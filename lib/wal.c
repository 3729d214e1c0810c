/* The write-ahead log FILE.wal on disk: its header, its commits, and
 * reading them back.  The protocol that writes it is in persist.c.
 *
 * Layout.  The first 4 KiB hold the header in two 512-byte slots; a header
 * write goes to slot counter % 2, and the valid slot with the higher
 * counter is in force, so a write torn or lost by a power cut leaves the
 * previous header.  Commits follow from MMH_WAL_START, each on a 4 KiB
 * boundary: a head (salt, sequence number, the previous commit's hash,
 * the heap's extent, a table of records), then the bytes of its DATA
 * records.  A PUNCH record carries no bytes: it makes a range of the heap
 * file a hole.
 *
 * Laps.  The header's salt names the current lap; a lap starts at
 * MMH_WAL_START and overwrites the previous lap in place, so the file keeps
 * its blocks.  A commit counts only if its head names the lap's salt, the
 * next sequence number and the previous commit's hash (the chain), its
 * head hashes right and every record's bytes hash right.  The first commit
 * that fails any of these ends the log: what follows is a torn commit or an
 * older lap's leftovers.  A lap that starts when everything is checkpointed
 * seeds the chain with its salt.  One that starts while commits of the
 * older lap still wait for a checkpoint (a wrap) continues its chain; the
 * header then names the older lap (prev_salt) and where its commits end
 * (prev_end), and the mark is still in it: the log runs from the mark to
 * prev_end in the older lap, then on from MMH_WAL_START in the new one,
 * which never writes past the mark.
 */
#define _GNU_SOURCE
#include "fileio.h"
#include "persist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *mmh_wal_path(const char *heap_path)
{
    size_t n = strlen(heap_path) + sizeof ".wal";
    char *p = mmh_meta_alloc(n);
    if (p)
        snprintf(p, n, "%s.wal", heap_path);
    return p;
}

static uint64_t hdr_hash(const mmh_wal_hdr *w)
{
    return mmh_hash64(w, offsetof(mmh_wal_hdr, hash), 0x77616c68ull);
}

void mmh_wal_hdr_seal(mmh_wal_hdr *w)
{
    memcpy(w->magic, MMH_WAL_MAGIC, sizeof w->magic);
    w->version = MMH_WAL_VERSION;
    w->hash = hdr_hash(w);
}

/* Write w (sealed here) into its slot.  No sync: the caller orders it. */
int mmh_wal_hdr_write(int fd, mmh_wal_hdr *w)
{
    mmh_wal_hdr_seal(w);
    return mmh_pwrite_all(fd, w, sizeof *w, (w->counter % 2) * MMH_WAL_SLOT);
}

static bool hdr_valid(const mmh_wal_hdr *w)
{
    return memcmp(w->magic, MMH_WAL_MAGIC, sizeof w->magic) == 0 &&
           w->version == MMH_WAL_VERSION && w->hash == hdr_hash(w) &&
           w->mark >= MMH_WAL_START && w->mark % MMH_WAL_ALIGN == 0 &&
           (!w->prev_end || (w->prev_end >= w->mark && w->prev_end % MMH_WAL_ALIGN == 0));
}

/* The header in force: 1, 0 if neither slot is valid, -1 on a read error. */
static int hdr_read(int fd, uint64_t size, mmh_wal_hdr *out)
{
    mmh_wal_hdr slot[2];
    if (size < MMH_WAL_START)
        return 0;
    if (mmh_pread_all(fd, &slot[0], sizeof slot[0], 0) != 0 ||
        mmh_pread_all(fd, &slot[1], sizeof slot[1], MMH_WAL_SLOT) != 0)
        return -1;
    bool v0 = hdr_valid(&slot[0]) && slot[0].counter % 2 == 0;
    bool v1 = hdr_valid(&slot[1]) && slot[1].counter % 2 == 1;
    if (!v0 && !v1)
        return 0;
    *out = slot[v1 && (!v0 || slot[1].counter > slot[0].counter)];
    return 1;
}

uint64_t mmh_wal_head_hash(const mmh_wal_head *head)
{
    const size_t table = sizeof *head + head->nrecords * sizeof(mmh_wal_rec);
    mmh_wal_head copy = *head;
    copy.hash = 0;
    uint64_t h = mmh_hash64(&copy, sizeof copy, head->prev_chain);
    return mmh_hash64((const char *)head + sizeof *head, table - sizeof *head, h);
}

size_t mmh_wal_head_bytes(size_t nrecords)
{
    return mmh_align_up(sizeof(mmh_wal_head) + nrecords * sizeof(mmh_wal_rec), MMH_WAL_ALIGN);
}

/* Make room for a head of `bytes` in c->table. */
static bool table_fit(mmh_wal_cursor *c, size_t bytes)
{
    if (bytes <= c->table_cap)
        return true;
    char *t = mmh_meta_realloc(c->table, bytes);
    if (!t)
        return false;
    c->table = t;
    c->table_cap = bytes;
    return true;
}

static bool data_valid(mmh_wal_cursor *c, const mmh_wal_head *head, uint64_t data_at)
{
    const mmh_wal_rec *rec = (const mmh_wal_rec *)(head + 1);
    for (uint64_t i = 0; i < head->nrecords; i++) {
        if (rec[i].kind != MMH_WAL_DATA)
            continue;
        if (mmh_pread_all(c->fd, c->chunk, rec[i].len, data_at) != 0 ||
            mmh_hash64(c->chunk, rec[i].len, rec[i].off ^ head->seq) != rec[i].hash)
            return false;
        data_at += rec[i].len;
    }
    return true;
}

int mmh_wal_next(mmh_wal_cursor *c, bool verify)
{
    mmh_wal_head head;
    if (c->wrap_end && c->pos.off == c->wrap_end) {
        c->pos.off = MMH_WAL_START;
        c->salt = c->wrap_salt;
        c->wrap_end = 0;
    }
    uint64_t at = c->pos.off, limit = c->wrap_end ? c->wrap_end : c->limit;
    if (at > limit || limit - at < MMH_WAL_ALIGN)
        return 0;
    if (mmh_pread_all(c->fd, &head, sizeof head, at) != 0)
        return -1;
    if (memcmp(head.magic, MMH_WAL_COMMIT, sizeof head.magic) != 0 || head.salt != c->salt ||
        head.seq != c->pos.seq + 1 || head.prev_chain != c->pos.chain ||
        head.nrecords > (limit - at) / sizeof(mmh_wal_rec) ||
        head.head_bytes != mmh_wal_head_bytes(head.nrecords) ||
        head.head_bytes > limit - at || head.data_bytes > limit - at - head.head_bytes ||
        head.extent < MMH_SEG_SIZE || head.extent % MMH_SEG_SIZE ||
        head.extent > MMH_MAX_MAX_SIZE ||
        head.data_bytes % MMH_WAL_ALIGN != 0)
        return 0;
    if (!table_fit(c, head.head_bytes))
        return -1;
    if (mmh_pread_all(c->fd, c->table, head.head_bytes, at) != 0)
        return -1;
    const mmh_wal_head *h = (const mmh_wal_head *)c->table;
    if (memcmp(h, &head, sizeof head) != 0 || mmh_wal_head_hash(h) != h->hash)
        return 0;
    /* Records: inside the heap's extent, data adding up to data_bytes. */
    const mmh_wal_rec *rec = (const mmh_wal_rec *)(h + 1);
    uint64_t data = 0;
    for (uint64_t i = 0; i < h->nrecords; i++) {
        /* Whole pages, as commits write them: a page is the unit the
         * checkpoint writes (page 0 last). */
        if ((rec[i].kind != MMH_WAL_DATA && rec[i].kind != MMH_WAL_PUNCH) || !rec[i].len ||
            rec[i].off % MMH_WAL_ALIGN || rec[i].len % MMH_WAL_ALIGN ||
            rec[i].off > h->extent || rec[i].len > h->extent - rec[i].off ||
            (rec[i].kind == MMH_WAL_DATA && rec[i].len > MMH_WAL_CHUNK))
            return 0;
        data += rec[i].kind == MMH_WAL_DATA ? rec[i].len : 0;
    }
    if (data != h->data_bytes || (verify && !data_valid(c, h, at + h->head_bytes)))
        return 0;
    c->at = at;
    c->pos = (mmh_wal_pos){ at + h->head_bytes + h->data_bytes, h->seq, h->hash };
    return 1;
}

void mmh_wal_cursor_free(mmh_wal_cursor *c)
{
    mmh_meta_free(c->table);
    mmh_meta_free(c->chunk);
    c->table = c->chunk = NULL;
    c->table_cap = 0;
}

void mmh_wal_cursor_at_mark(mmh_wal_cursor *c, int fd, const mmh_wal_hdr *w, uint64_t limit)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->salt = w->prev_end ? w->prev_salt : w->salt;
    c->wrap_end = w->prev_end;
    c->wrap_salt = w->salt;
    c->pos = (mmh_wal_pos){ w->mark, w->mark_seq, w->mark_chain };
    c->limit = limit;
}

/* Walk the commits after the mark, checking every byte: where they end,
 * and what they hold. */
static int scan(const char *path, mmh_wal_view *v)
{
    mmh_wal_cursor c;
    mmh_wal_cursor_at_mark(&c, v->fd, &v->hdr, v->info.size);
    c.chunk = mmh_meta_alloc(MMH_WAL_CHUNK);
    int rc = c.chunk ? 0 : -1;
    while (rc == 0 && (rc = mmh_wal_next(&c, true)) == 1) {
        const mmh_wal_head *h = (const mmh_wal_head *)c.table;
        if (!v->info.commits++)
            v->info.first_seq = h->seq;
        v->info.data_bytes += h->data_bytes;
        v->info.extent = h->extent;
        rc = 0;
    }
    v->end = c.pos;
    v->info.last_seq = c.pos.seq;
    /* What ended the log: nothing, or the head of a commit that never
     * completed (the lap's, next in sequence). */
    mmh_wal_head next;
    v->info.torn = rc == 0 && c.pos.off + sizeof next <= v->info.size &&
                   mmh_pread_all(v->fd, &next, sizeof next, c.pos.off) == 0 &&
                   memcmp(next.magic, MMH_WAL_COMMIT, sizeof next.magic) == 0 &&
                   next.salt == c.salt && next.seq == c.pos.seq + 1;
    mmh_wal_cursor_free(&c);
    return rc == 0 ? 0 : mmh_fail(errno ? errno : EIO, "%s: cannot read its log %s: %m", path,
                                  v->path);
}

int mmh_wal_inspect(const char *path, int heap_fd, bool writable, mmh_wal_view *v)
{
    /* The heap's identity, log and commit are read from its header even if
     * a torn write damaged the rest: they are where every version has them. */
    uint64_t file_id = 0, gen = 0;
    char magic[8] = "";
    uint32_t version = 0;
    memset(v, 0, sizeof *v);
    v->fd = -1;
    (void)!mmh_pread_all(heap_fd, magic, sizeof magic, offsetof(mmh_hdr, magic));
    (void)!mmh_pread_all(heap_fd, &version, sizeof version, offsetof(mmh_hdr, version));
    if (memcmp(magic, MMH_MAGIC, sizeof magic) != 0 || version < 4 || version > 7)
        return 0; /* not a heap of these formats: mmh_format_check says so */
    /* Format 4 (converted as it is read) has file_id where 5 to 7 have,
     * and no wal_gen: its log is one made since, not yet checkpointed. */
    _Static_assert(MMH_FORMAT_VERSION == 7, "formats with a log");
    (void)!mmh_pread_all(heap_fd, &file_id, sizeof file_id, offsetof(mmh_hdr, file_id));
    if (version >= 5)
        (void)!mmh_pread_all(heap_fd, &gen, sizeof gen, offsetof(mmh_hdr, wal_gen));
    (void)!mmh_pread_all(heap_fd, &v->info.heap_seq, sizeof v->info.heap_seq,
                         offsetof(mmh_hdr, commit_seq));
    if (!(v->path = mmh_wal_path(path)))
        return mmh_fail(ENOMEM, "%s: out of memory", path);
    bool created;
    v->fd = mmh_open_companion(heap_fd, path, v->path, writable ? O_RDWR : O_RDONLY, &created);
    if (v->fd < 0 && errno != ENOENT)
        return -1;
    if (v->fd < 0)
        return gen == 0 ? 0 : mmh_fail(ENOENT, "%s: its write-ahead log %s is missing; the "
                                       "commits since the last checkpoint are in it (put it "
                                       "back; the heap cannot be opened without it)", path,
                                       v->path);
    struct stat st;
    if (fstat(v->fd, &st) != 0)
        return mmh_fail(errno, "%s: cannot stat %s: %m", path, v->path);
    v->info.size = (uint64_t)st.st_size;
    /* A heap names its log (wal_gen) from its first checkpoint on; before
     * that, a log made for this very file (its file_id) is its own. */
    int got = hdr_read(v->fd, v->info.size, &v->hdr);
    if (got < 0)
        return mmh_fail(errno, "%s: cannot read %s: %m", path, v->path);
    v->info.state = MMH_WAL_LEFTOVER;
    if (gen == 0 && (got == 0 || v->hdr.file_id != file_id))
        return 0;
    if (got == 0)
        return mmh_fail(EBADMSG, "%s: its write-ahead log %s has no valid header", path,
                        v->path);
    if (v->hdr.file_id != file_id || (gen != 0 && v->hdr.gen != gen))
        return mmh_fail(EBADMSG, "%s: %s is not this heap's write-ahead log (it was made "
                        "for another heap file, or is another generation of this one's)",
                        path, v->path);
    if (scan(path, v) != 0)
        return -1;
    /* The heap's header is written by a checkpoint, after every commit up to
     * it is in the log: a log that ends before it is a copy put back. */
    v->info.state = v->info.last_seq < v->info.heap_seq ? MMH_WAL_STALE : MMH_WAL_VALID;
    return 0;
}

int mmh_wal_overlay(const char *path, const mmh_wal_view *v, char *image, size_t image_size)
{
    if (!mmh_wal_has_commits(&v->info))
        return 0;
    mmh_wal_cursor c;
    mmh_wal_cursor_at_mark(&c, v->fd, &v->hdr, v->end.off);
    int rc;
    while ((rc = mmh_wal_next(&c, false)) == 1) {
        const mmh_wal_head *h = (const mmh_wal_head *)c.table;
        const mmh_wal_rec *rec = (const mmh_wal_rec *)(h + 1);
        uint64_t at = c.at + h->head_bytes;
        /* Punched ranges are free memory: their content is not defined. */
        for (uint64_t i = 0; i < h->nrecords && rc == 1; i++) {
            if (rec[i].kind != MMH_WAL_DATA)
                continue;
            size_t len = rec[i].off >= image_size ? 0
                         : rec[i].len < image_size - rec[i].off ? rec[i].len
                                                                 : image_size - rec[i].off;
            if (len && mmh_pread_all(v->fd, image + rec[i].off, len, at) != 0)
                rc = -1;
            at += rec[i].len;
        }
        if (rc != 1)
            break;
    }
    mmh_wal_cursor_free(&c);
    return rc == 0 ? 0 : mmh_fail(errno ? errno : EIO, "%s: cannot read its log %s: %m", path,
                                  v->path);
}

void mmh_wal_view_close(mmh_wal_view *v)
{
    if (v->fd >= 0)
        close(v->fd);
    v->fd = -1;
    mmh_meta_free(v->path);
    v->path = NULL;
}
