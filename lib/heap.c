/* Opening and closing heaps, and the small accessors of the API. */
#define _GNU_SOURCE
#include "check.h"
#include "fileio.h"
#include "persist.h"
#include "track.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KNOWN_FLAGS (MMH_CREATE | MMH_EXCL | MMH_SHARED | MMH_READONLY | MMH_RELOCATE | MMH_VOLATILE | \
                     MMH_HUGEPAGES)

/* The limit of a heap made with cfg (checked). */
static size_t new_max_size(const mmh_config *cfg)
{
    if (cfg->max_size)
        return cfg->max_size;
    return mmh_inst_on_valgrind() ? MMH_VALGRIND_MAX_SIZE : MMH_DEFAULT_MAX_SIZE;
}

static int check_config(const char *path, const mmh_config *in, mmh_config *cfg)
{
    const char *name = path ? path : "(anonymous)";
    *cfg = in ? *in : (mmh_config){ 0 };
    if (cfg->flags & ~KNOWN_FLAGS)
        return mmh_fail(EINVAL, "%s: unknown flags 0x%x", name, cfg->flags & ~KNOWN_FLAGS);
    if ((unsigned)cfg->tracker > MMH_TRACK_NONE)
        return mmh_fail(EINVAL, "%s: unknown tracker %d", name, (int)cfg->tracker);
    if (!path && (cfg->flags & (MMH_SHARED | MMH_READONLY | MMH_CREATE | MMH_EXCL | MMH_VOLATILE)))
        return mmh_fail(EINVAL, "anonymous heap: MMH_SHARED, MMH_READONLY, MMH_CREATE, "
                                "MMH_EXCL and MMH_VOLATILE need a file");
    if (path && (cfg->flags & MMH_HUGEPAGES))
        return mmh_fail(EINVAL, "%s: MMH_HUGEPAGES is for anonymous heaps (file pages copied "
                        "on write are small pages)", name);
    if ((cfg->flags & MMH_VOLATILE) && (cfg->flags & (MMH_SHARED | MMH_READONLY | MMH_CREATE)))
        return mmh_fail(EINVAL, "%s: MMH_VOLATILE starts from an existing file and never writes "
                        "it: MMH_SHARED, MMH_READONLY and MMH_CREATE do not go with it", name);
    if ((cfg->flags & MMH_READONLY) && (cfg->flags & MMH_CREATE))
        return mmh_fail(EINVAL, "%s: MMH_READONLY cannot create a heap", name);
    if ((uintptr_t)cfg->base & MMH_SEG_MASK)
        return mmh_fail(EINVAL, "%s: base %p is not aligned to %zu bytes", name, cfg->base,
                        MMH_SEG_SIZE);
    if (cfg->max_size > MMH_MAX_MAX_SIZE || cfg->size > MMH_MAX_MAX_SIZE)
        return mmh_fail(EINVAL, "%s: sizes above %zu bytes are not supported", name,
                        MMH_MAX_MAX_SIZE);
    /* 0 stays 0: an existing file keeps its limit; a new heap gets the
     * default (new_max_size). */
    cfg->max_size = mmh_align_up(cfg->max_size, MMH_SEG_SIZE);
    cfg->size = mmh_align_up(cfg->size ? cfg->size : MMH_DEFAULT_SIZE, MMH_SEG_SIZE);
    size_t max = new_max_size(cfg);
    if (cfg->size > max)
        return mmh_fail(EINVAL, "%s: size %zu is larger than max_size %zu", name, cfg->size, max);
    if (cfg->base && !mmh_region_fits((uintptr_t)cfg->base, max))
        return mmh_fail(EINVAL, "%s: base %p with max_size %zu is outside the user address space",
                        name, cfg->base, max);
    if (!cfg->mode)
        cfg->mode = 0600;
    return 0;
}

static mmh_heap *heap_new(const char *path, unsigned flags)
{
    mmh_heap *h = mmh_meta_calloc(1, sizeof *h);
    if (!h || !(h->path = mmh_meta_strdup(path ? path : "(anonymous heap)"))) {
        mmh_meta_free(h);
        return mmh_fail_null(ENOMEM, "%s: out of memory", path ? path : "(anonymous heap)");
    }
    h->fd = -1;
    h->dir_fd = -1;
    h->flags = flags;
    h->track.kind = MMH_TRACK_NONE;
    h->track.restart = MMH_TRACK_NONE;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->job.lock, NULL);
    pthread_rwlock_init(&h->names.lock, NULL);
    return h;
}

/* Keeps errno: it runs after the failure an open reports. */
static void heap_destroy(mmh_heap *h)
{
    int err = errno;
    mmh_track_stop(h);
    (void)mmh_persist_close(h); /* a failed checkpoint leaves the log for the next open */
    if (h->base)
        mmh_region_release(h->base, h->max_size);
    if (h->fd >= 0)
        close(h->fd);
    if (h->dir_fd >= 0)
        close(h->dir_fd);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->job.lock);
    pthread_rwlock_destroy(&h->names.lock);
    mmh_slots_close(h);
    mmh_meta_free(h->path);
    mmh_meta_free(h);
    errno = err;
}

/* The mapping is final: start tracking writes and make h usable. */
static mmh_heap *heap_ready(mmh_heap *h, mmh_tracker tracker)
{
    h->hdr = (mmh_hdr *)h->base;
    h->segmap = (uint32_t *)(h->base + h->hdr->segmap_off);
    mmh_stats_init(h);
    if (mmh_slots_open(h) != 0 || mmh_track_start(h, tracker) != 0 ||
        mmh_registry_add(h) != 0) {
        heap_destroy(h);
        return NULL;
    }
    mmh_slots_uncache(h);
    mmh_inst_heap_open(h);
    return h;
}

/* The first state of a new heap goes straight into its file: nobody sees
 * the file before it is linked into place, so it needs no log. */
static int write_first_state(mmh_heap *h)
{
    mmh_ranges r = { 0 };
    uint64_t written;
    h->hdr->checksum = mmh_format_checksum(h->hdr);
    int rc = mmh_in_use_ranges(h, &r);
    if (rc == 0)
        rc = mmh_image_write(h, h->fd, h->path, r.v, r.n, h->hdr, &written);
    mmh_meta_free(r.v);
    return rc;
}

/* Reserve the address space and set up a new, empty heap in it. */
static int heap_format(mmh_heap *h, const mmh_config *cfg)
{
    h->max_size = new_max_size(cfg);
    h->base = mmh_region_reserve(cfg->base, h->max_size, cfg->base != NULL);
    if (!h->base)
        return mmh_fail(errno == EEXIST ? EADDRINUSE : ENOMEM,
                        "%s: cannot reserve %zu bytes of address space%s: %m", h->path,
                        (size_t)h->max_size, cfg->base ? " at the requested base" : "");
    h->hdr = (mmh_hdr *)h->base;
    if (mmh_region_grow(h, cfg->size) != 0)
        return -1;
    mmh_format_init(h, cfg->size);
    mmh_lock(h); /* nobody else has h yet: for segment.c's rule */
    mmh_segment_init_first(h);
    mmh_unlock(h);
    return 0;
}

/* Writers lock the file exclusively; readers, and volatile heaps whose
 * unread pages come from the file, share it. */
static int lock_file(mmh_heap *h)
{
    bool ro = h->flags & (MMH_READONLY | MMH_VOLATILE);
    if (flock(h->fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        return mmh_fail(EBUSY, "%s: heap is in use by a writer%s", h->path,
                        ro ? "" : " or reader");
    return mmh_fail(errno, "%s: cannot lock: %m", h->path);
}

/* Keep the heap file's directory open, so that a commit can tell that its
 * name still holds the file whatever the working directory is by then. */
static int dir_open(mmh_heap *h)
{
    char *dir = mmh_dir_of(h->path);
    if (!dir)
        return mmh_fail(ENOMEM, "%s: out of memory", h->path);
    h->dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int rc = h->dir_fd >= 0 ? 0 : mmh_fail(errno, "%s: cannot open its directory %s: %m",
                                           h->path, dir);
    mmh_meta_free(dir);
    return rc;
}

static mmh_heap *open_existing(const char *path, const mmh_config *cfg);

/* Build the heap in an unnamed file, sync it, then link it into place, so
 * that a crash never leaves a half-made heap under the name. */
static mmh_heap *create_file(const char *path, const mmh_config *cfg)
{
    mmh_newfile nf;
    mmh_heap *h = heap_new(path, cfg->flags);
    if (!h)
        return NULL;
    if (mmh_newfile_create(&nf, path, cfg->mode) != 0) {
        heap_destroy(h);
        return NULL;
    }
    h->fd = nf.fd;
    nf.fd = -1; /* h owns it now */
    if (lock_file(h) != 0 || heap_format(h, cfg) != 0 || write_first_state(h) != 0)
        goto fail;
    if (mmh_newfile_link(&nf, path, false) != 0) {
        int err = errno;
        mmh_newfile_discard(&nf);
        heap_destroy(h);
        if (err == EEXIST && !(cfg->flags & MMH_EXCL)) /* created meanwhile */
            return open_existing(path, cfg);
        return mmh_fail_null(err, "%s: cannot create: %s", path, strerrordesc_np(err));
    }
    mmh_newfile_discard(&nf);
    /* Map the file again under its final name, so the mappings of later
     * growth join it (valgrind, for one, trips over the mix).  Only the
     * winner of the link touches FILE.wal: one left by a heap of that name
     * that is gone is made new (the heap does not name it), and the new
     * one is named in the mapping's header (so after the remap). */
    if (dir_open(h) != 0 || mmh_sync_parent_dir(path) != 0 ||
        mmh_region_map(h, 0, h->mapped) != 0 || mmh_persist_open(h, NULL) != 0) {
        heap_destroy(h);
        return NULL;
    }
    return heap_ready(h, cfg->tracker);
fail:
    mmh_newfile_discard(&nf);
    heap_destroy(h);
    return NULL;
}

/* Does path still name the file fd has open?  Not when a snapshot (or
 * anyone) renamed another file over it: a writer of the old file would
 * make commits nobody will ever open. */
bool mmh_file_is_named(int fd, int dir_fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstatat(dir_fd, path, &b, 0) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Open path and lock it; a file replaced between the open and the lock is
 * let go, and the new one opened. */
static int open_locked(mmh_heap *h, const char *path, bool writes)
{
    for (int tries = 0; tries < 8; tries++) {
        h->fd = mmh_open_regular(path, writes ? O_RDWR : O_RDONLY);
        if (h->fd < 0 || lock_file(h) != 0)
            return -1;
        if (mmh_file_is_named(h->fd, AT_FDCWD, path))
            return dir_open(h);
        close(h->fd);
        h->fd = -1;
    }
    return mmh_fail(EAGAIN, "%s: the file keeps being replaced under the open", path);
}

/* The header the heap is opened with: the file's, or the one in the last
 * commit of its log.  The file must be as long as the header's extent: a
 * writer extends it (growth whose extension a crash lost), once the header
 * has passed its checks; a reader cannot. */
static int read_header(mmh_heap *h, bool writes, const mmh_wal_view *wv, mmh_hdr *hdr)
{
    struct stat st;
    memset(hdr, 0, MMH_HDR_SIZE);
    if (fstat(h->fd, &st) != 0)
        return mmh_fail(errno, "%s: cannot stat: %m", h->path);
    if (pread(h->fd, hdr, MMH_HDR_SIZE, 0) < 0)
        return mmh_fail(errno, "%s: cannot read the header: %m", h->path);
    uint64_t size = (uint64_t)st.st_size;
    bool logged = mmh_wal_has_commits(&wv->info);
    if (mmh_wal_overlay(h->path, wv, (char *)hdr, MMH_HDR_SIZE) != 0)
        return -1;
    /* The header the log carries is this heap's, naming this log. */
    if (logged && (hdr->file_id != wv->hdr.file_id ||
                   (hdr->wal_gen != 0 && hdr->wal_gen != wv->hdr.gen)))
        return mmh_fail(EBADMSG, "%s: the header in its log %s names another heap file or log",
                        h->path, wv->path);
    if (mmh_format_upgrade(h->path, hdr, size) != 0 ||
        mmh_format_check(h->path, hdr, logged && size >= MMH_HDR_SIZE &&
                                       hdr->extent > size ? hdr->extent : size) != 0)
        return -1;
    if (size >= hdr->extent)
        return 0;
    if (!writes)
        return mmh_fail(EAGAIN, "%s: its log's last commit grew the heap past the file's end; "
                        "open it writable once", h->path);
    if (ftruncate(h->fd, (off_t)hdr->extent) != 0)
        return mmh_fail(errno, "%s: cannot extend to %llu bytes: %m", h->path,
                        (unsigned long long)hdr->extent);
    return 0;
}

/* The commits in the log laid over the mapping, and the header read_header
 * made (a format 4 file's, converted); a read-only mapping is made
 * writable meanwhile (its pages become private copies). */
static int overlay(mmh_heap *h, const mmh_wal_view *wv, const mmh_hdr *hdr)
{
    bool ro = h->flags & MMH_READONLY, logged = mmh_wal_has_commits(&wv->info);
    size_t extent = hdr->extent;
    if (!logged && ((const mmh_hdr *)h->base)->version == hdr->version)
        return 0;
    if (ro && mprotect(h->base, extent, PROT_READ | PROT_WRITE) != 0)
        return mmh_fail(errno, "%s: cannot map its pages for the log's commits: %m", h->path);
    int rc = mmh_wal_overlay(h->path, wv, h->base, extent);
    if (rc == 0 && ((const mmh_hdr *)h->base)->version != hdr->version)
        memcpy(h->base, hdr, MMH_HDR_SIZE);
    if (ro && mprotect(h->base, extent, PROT_READ) != 0 && rc == 0)
        rc = mmh_fail(errno, "%s: cannot map it read-only again: %m", h->path);
    return rc;
}

/* Reserve the address space of the heap hdr describes at its base, raised
 * to a larger cfg->max_size in place (a writable open), or at another base
 * where MMH_RELOCATE allows it. */
static int reserve(mmh_heap *h, const mmh_hdr *hdr, const mmh_config *cfg)
{
    size_t max = hdr->max_size;
    if (!(cfg->flags & MMH_READONLY) && cfg->max_size > max)
        max = cfg->max_size;
    h->max_size = hdr->max_size;
    h->base = mmh_region_reserve((void *)(uintptr_t)hdr->base, hdr->max_size, true);
    if (h->base && mmh_region_extend(h, max, hdr->segmap_len) != 0) {
        if (errno != EADDRINUSE || !(cfg->flags & MMH_RELOCATE))
            return -1;
        mmh_region_release(h->base, h->max_size);
        h->base = NULL;
        errno = EEXIST;
    }
    /* Any refusal, not only EEXIST: valgrind, for one, answers EINVAL for a
     * range its own memory or another heap holds. */
    if (!h->base && (cfg->flags & MMH_RELOCATE)) {
        h->max_size = max;
        h->base = mmh_region_reserve(NULL, max, false);
    }
    if (!h->base)
        return mmh_fail(errno == EEXIST ? EADDRINUSE : errno,
                        "%s: cannot map the heap at its base address %p: %s%s", h->path,
                        (void *)(uintptr_t)hdr->base, errno == EEXIST ? "the range is in use" :
                        strerror(errno), errno == EEXIST ? " (MMH_RELOCATE allows another base)" : "");
    return 0;
}

static mmh_heap *open_existing(const char *path, const mmh_config *cfg)
{
    bool ro = cfg->flags & MMH_READONLY, writes = !(cfg->flags & (MMH_READONLY | MMH_VOLATILE));
    union {
        mmh_hdr hdr;
        unsigned char page[MMH_HDR_SIZE];
    } buf;
    const mmh_hdr *hdr = &buf.hdr;
    mmh_wal_view wv = { .fd = -1 };
    mmh_heap *h = heap_new(path, cfg->flags);
    if (!h)
        return NULL;
    if (open_locked(h, path, writes) != 0) {
        int err = errno;
        if (h->fd < 0 && err == ENOENT && (cfg->flags & MMH_CREATE)) {
            heap_destroy(h);
            return create_file(path, cfg);
        }
        goto fail;
    }
    if ((cfg->flags & MMH_CREATE) && (cfg->flags & MMH_EXCL)) {
        mmh_fail(EEXIST, "%s: already exists", path);
        goto fail;
    }
    if (mmh_wal_inspect(path, h->fd, writes, &wv) != 0)
        goto fail;
    /* A shared mapping has no log: the commits in it go into the file
     * first, which a reader cannot do. */
    if ((cfg->flags & MMH_SHARED) && mmh_wal_has_commits(&wv.info)) {
        if (!writes) {
            mmh_fail(EAGAIN, "%s: commits in its log %s are not yet in the file, and a shared "
                     "mapping cannot show them: open it writable once, or not shared", path,
                     wv.path);
            goto fail;
        }
        if (mmh_wal_recover(path, h->fd, &wv) != 0)
            goto fail;
        wv.info.commits = wv.info.extent = 0;
    }
    if (read_header(h, writes, &wv, &buf.hdr) != 0)
        goto fail;
    if (reserve(h, hdr, cfg) != 0)
        goto fail;
    h->file_size = hdr->extent;
    if (mmh_region_map(h, 0, hdr->extent) != 0 || overlay(h, &wv, hdr) != 0)
        goto fail;
    h->mapped = hdr->extent;
    if (mmh_verify(h) != 0)
        goto fail;
    if (!ro) { /* in the header the next commit writes */
        h->hdr = (mmh_hdr *)h->base;
        h->hdr->base = (uint64_t)(uintptr_t)h->base;
        h->hdr->max_size = h->max_size;
    }
    if (mmh_writes_back(h) && mmh_persist_open(h, &wv) != 0)
        goto fail;
    mmh_wal_view_close(&wv);
    return heap_ready(h, cfg->tracker);
fail:
    mmh_wal_view_close(&wv);
    heap_destroy(h);
    return NULL;
}

mmh_heap *mmh_open(const char *path, const mmh_config *in)
{
    mmh_config cfg;
    if (check_config(path, in, &cfg) != 0)
        return NULL;
    if (path) {
        if (!*path)
            return mmh_fail_null(EINVAL, "mmh_open: empty path");
        return open_existing(path, &cfg);
    }
    mmh_heap *h = heap_new(NULL, cfg.flags);
    if (!h)
        return NULL;
    if (heap_format(h, &cfg) != 0) {
        heap_destroy(h);
        return NULL;
    }
    return heap_ready(h, cfg.tracker);
}

/* A running job is waited for; one whose failure mmh_wait never reported
 * makes close fail with its reason, unless the final commit failed too. */
int mmh_close(mmh_heap *h)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_close: heap is NULL");
    int rc = 0;
    if (mmh_writes_back(h) && mmh_persist_owner(h)) /* not in a fork of the owner */
        rc = mmh_commit(h);
    pthread_mutex_lock(&h->job.lock);
    mmh_job_reap(h, false);
    pthread_mutex_unlock(&h->job.lock);
    if (rc == 0 && h->job.unreported && h->job.err)
        rc = mmh_fail(h->job.err, "%s", h->job.msg);
    int err = errno;
    mmh_inst_heap_close(h);
    mmh_registry_remove(h);
    heap_destroy(h);
    errno = err;
    return rc;
}

static bool in_heap(const mmh_heap *h, const void *p)
{
    return (const char *)p >= h->base && (size_t)((const char *)p - h->base) < h->mapped;
}

void *mmh_root(mmh_heap *h)
{
    if (!h)
        return mmh_fail_null(EINVAL, "mmh_root: heap is NULL");
    mmh_lock(h);
    uint64_t off = h->hdr->root;
    mmh_unlock(h);
    return off ? mmh_ptr(h, off) : NULL;
}

int mmh_set_root(mmh_heap *h, void *p)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_set_root: heap is NULL");
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: heap is open read-only", h->path);
    if (p && (!in_heap(h, p) || (char *)p < h->base + MMH_SLICE_SIZE))
        return mmh_fail(EINVAL, "mmh_set_root: %p is not inside heap %s", p, h->path);
    mmh_lock(h);
    h->hdr->root = p ? mmh_off(h, p) : 0;
    h->root = p;
    mmh_unlock(h);
    return 0;
}

int mmh_grow(mmh_heap *h, size_t new_max_size)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_grow: heap is NULL");
    if (h->flags & MMH_READONLY)
        return mmh_fail(EROFS, "%s: heap is open read-only", h->path);
    if (new_max_size > MMH_MAX_MAX_SIZE)
        return mmh_fail(EINVAL, "%s: max_size %zu is above %zu bytes", h->path, new_max_size,
                        MMH_MAX_MAX_SIZE);
    mmh_lock(h);
    int rc = mmh_region_extend(h, mmh_align_up(new_max_size, MMH_SEG_SIZE), h->hdr->segmap_len);
    if (rc == 0)
        h->hdr->max_size = h->max_size; /* in the header the next commit writes */
    mmh_unlock(h);
    return rc;
}

uint64_t mmh_offset(mmh_heap *h, const void *p)
{
    if (!h || !p)
        return 0;
    if (!in_heap(h, p)) {
        mmh_fail(EINVAL, "mmh_offset: %p is not inside heap %s", p, h->path);
        return 0;
    }
    return mmh_off(h, p);
}

void *mmh_at(mmh_heap *h, uint64_t off)
{
    if (!h || !off)
        return NULL;
    if (off >= h->mapped)
        return mmh_fail_null(EINVAL, "mmh_at: offset %llu is outside heap %s",
                             (unsigned long long)off, h->path);
    return mmh_ptr(h, off);
}

int mmh_touch(mmh_heap *h, void *p, size_t len)
{
    if (!h)
        return mmh_fail(EINVAL, "mmh_touch: heap is NULL");
    if (len && (!in_heap(h, p) || len > h->mapped - mmh_off(h, p)))
        return mmh_fail(EINVAL, "mmh_touch: range %p+%zu is not inside heap %s", p, len,
                        h->path);
    return len && h->track.ops ? h->track.ops->touch(h, mmh_off(h, p), len) : 0;
}
