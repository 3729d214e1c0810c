/* The heap file format: the header at offset 0, where segment 0's metadata
 * goes, and validation of a file before anything in it is trusted. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static size_t segmap_offset(void)
{
    return mmh_align_up(MMH_SEGHDR_OFFSET + sizeof(mmh_segment), 64);
}

static size_t slots_offset(uint32_t segmap_len)
{
    return mmh_align_up(segmap_offset() + (size_t)segmap_len * sizeof(uint32_t), 64);
}

/* Bytes of segment 0 taken by metadata with a segment map of segmap_len
 * entries: the first slot table last. */
static size_t meta_size(uint32_t segmap_len)
{
    return slots_offset(segmap_len) + (size_t)MMH_SLOTS * sizeof(mmh_slot);
}

static uint32_t first_slice(uint32_t segmap_len)
{
    return (uint32_t)(mmh_align_up(meta_size(segmap_len), MMH_SLICE_SIZE) >>
                      MMH_SLICE_SHIFT);
}

_Static_assert(MMH_SEGHDR_OFFSET + sizeof(mmh_segment) + MMH_SEGMAP_MAX * sizeof(uint32_t) +
               MMH_SLOTS * sizeof(mmh_slot) + MMH_SLICE_SIZE <= MMH_SEG_SIZE,
               "segment 0 holds the largest segment map, the slots and a slice");

static int corrupt(const char *path, const char *what)
{
    return mmh_fail(EBADMSG, "%s: corrupt heap file: %s", path, what);
}

/* The checksum of a header page whose checksum field is at sum_at. */
static uint64_t page_checksum(const void *page, size_t sum_at)
{
    unsigned char copy[MMH_HDR_SIZE];
    memcpy(copy, page, MMH_HDR_SIZE);
    memset(copy + sum_at, 0, sizeof(uint64_t));
    return mmh_hash64(copy, sizeof copy, 0x6d6d68656170ull);
}

uint64_t mmh_format_checksum(const mmh_hdr *hdr)
{
    return page_checksum(hdr, offsetof(mmh_hdr, checksum));
}

/* Format 4 committed through a redo journal, FILE.journal; its header
 * lacks wal_gen (after file_id) and is otherwise format 5's.  Is a commit
 * of that journal still waiting to be replayed (its magic intact)? */
static bool journal4_pending(const char *path)
{
    char jpath[4096], magic[8];
    if ((size_t)snprintf(jpath, sizeof jpath, "%s.journal", path) >= sizeof jpath)
        return false;
    int fd = open(jpath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool pending = pread(fd, magic, sizeof magic, 0) == (ssize_t)sizeof magic &&
                   memcmp(magic, "MMHJRNL1", sizeof magic) == 0;
    close(fd);
    return pending;
}

/* Format 4 to 5: wal_gen put after file_id; the fields from segmap_off to
 * unpurged follow in the same layout, and empty_page is 64-aligned in
 * both. */
static int upgrade4(const char *path, mmh_hdr *hdr)
{
    mmh_hdr4 old;
    memcpy(&old, hdr, sizeof old);
    if (page_checksum(hdr, offsetof(mmh_hdr4, checksum)) != old.checksum)
        return corrupt(path, "header checksum mismatch");
    if (journal4_pending(path))
        return mmh_fail(EAGAIN, "%s: format 4, and its journal %s.journal holds a commit not "
                        "yet in the file: open it once with the mmheap release that wrote it, "
                        "which replays it; this one converts the heap to format %u", path, path,
                        MMH_FORMAT_VERSION);
    _Static_assert(offsetof(mmh_hdr, unpurged) - offsetof(mmh_hdr, segmap_off) ==
                   offsetof(mmh_hdr4, unpurged) - offsetof(mmh_hdr4, segmap_off),
                   "format 4's middle fields as format 5's");
    memset(hdr, 0, MMH_HDR_SIZE);
    memcpy(hdr, &old, offsetof(mmh_hdr4, segmap_off)); /* magic .. file_id */
    memcpy(&hdr->segmap_off, &old.segmap_off, offsetof(mmh_hdr4, unpurged) +
           sizeof old.unpurged - offsetof(mmh_hdr4, segmap_off));
    hdr->empty_page = old.empty_page;
    hdr->version = 5;
    hdr->checksum = mmh_format_checksum(hdr);
    return 0;
}

/* Format 5 to 6: its segment map has room for the max_size it was made
 * with (segmap_len was padding, zero), and it has no names. */
static void upgrade5(mmh_hdr *hdr)
{
    hdr->segmap_len = (uint32_t)(hdr->max_size >> MMH_SEG_SHIFT);
    hdr->version = 6;
}

/* Format 6 to 7: its one slot table is the first, and the slot_tables
 * naming the others were zero. */
static void upgrade6(mmh_hdr *hdr)
{
    hdr->version = 7;
}

int mmh_format_upgrade(const char *path, mmh_hdr *hdr, uint64_t file_size)
{
    if (file_size < MMH_HDR_SIZE || memcmp(hdr->magic, MMH_MAGIC, sizeof hdr->magic) != 0 ||
        hdr->version < 4 || hdr->version > 6)
        return 0;
    if (hdr->version == 4 && upgrade4(path, hdr) != 0)
        return -1;
    /* Sealed again below: a damaged header must not pass for a sound one. */
    if (mmh_format_checksum(hdr) != hdr->checksum)
        return corrupt(path, "header checksum mismatch");
    if (hdr->version == 5)
        upgrade5(hdr);
    upgrade6(hdr);
    _Static_assert(MMH_FORMAT_VERSION == 7, "an upgrade to every format");
    hdr->checksum = mmh_format_checksum(hdr);
    return 0;
}

/* A new heap's header in the mapping [0, extent); heap.c lays out segment
 * 0 after it. */
void mmh_format_init(mmh_heap *h, size_t extent)
{
    mmh_hdr *hdr = h->hdr;
    memset(hdr, 0, MMH_HDR_SIZE);
    memcpy(hdr->magic, MMH_MAGIC, sizeof hdr->magic);
    hdr->version = MMH_FORMAT_VERSION;
    hdr->hdr_size = MMH_HDR_SIZE;
    hdr->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
    hdr->seg_size = (uint32_t)MMH_SEG_SIZE;
    hdr->base = (uint64_t)(uintptr_t)h->base;
    hdr->max_size = h->max_size;
    hdr->extent = extent;
    hdr->file_id = mmh_random_u64();
    /* Room for the largest max_size, so that the heap can grow to it:
     * the segment map's pages past the extent are never touched. */
    hdr->segmap_len = MMH_SEGMAP_MAX;
    hdr->segmap_off = segmap_offset();
    hdr->slots_off = slots_offset(hdr->segmap_len);
    hdr->nslots = MMH_SLOTS;
    hdr->first_slice = first_slice(hdr->segmap_len);
    h->segmap = (uint32_t *)(h->base + hdr->segmap_off);
}

/* The slot tables after the first: as many as nslots says, each where a
 * span of a sliced segment may be, inside the extent; none named past
 * them.  (The walk checks that each is its span, mmh_verify.) */
static int check_slot_tables(const char *path, const mmh_hdr *hdr)
{
    uint32_t tables = hdr->nslots / MMH_SLOTS;
    uint64_t bytes = (uint64_t)MMH_SLOT_TABLE_SLICES << MMH_SLICE_SHIFT;
    if (hdr->nslots % MMH_SLOTS || tables == 0 || tables > MMH_SLOT_TABLES_MAX ||
        hdr->slots_hwm > hdr->nslots)
        return mmh_fail(EBADMSG, "%s: corrupt heap file: %u thread slots (%u used) are not "
                        "whole tables of %u, at most %u", path, hdr->nslots, hdr->slots_hwm,
                        MMH_SLOTS, MMH_SLOTS_MAX);
    for (uint32_t t = 1; t < MMH_SLOT_TABLES_MAX; t++) {
        uint64_t off = hdr->slot_tables[t - 1], in_seg = off & MMH_SEG_MASK;
        bool sound = t >= tables ? off == 0
                                 : off % MMH_SLICE_SIZE == 0 && in_seg != 0 &&
                                   in_seg + bytes <= MMH_SEG_SIZE && off < hdr->extent &&
                                   off >= (uint64_t)hdr->first_slice << MMH_SLICE_SHIFT;
        if (!sound)
            return mmh_fail(EBADMSG, "%s: corrupt heap file: slot table %u at offset 0x%llx "
                            "(of %u tables) is not where a table can be", path, t,
                            (unsigned long long)off, tables);
    }
    return 0;
}

/* Validate a header read from a file of file_size bytes. */
int mmh_format_check(const char *path, const mmh_hdr *hdr, uint64_t file_size)
{
    if (file_size == 0)
        return mmh_fail(EINVAL, "%s: empty file, not an mmheap heap", path);
    if (file_size < sizeof hdr->magic || memcmp(hdr->magic, MMH_MAGIC, sizeof hdr->magic) != 0)
        return mmh_fail(EINVAL, "%s: not an mmheap heap file (bad magic)", path);
    if (file_size < MMH_HDR_SIZE)
        return mmh_fail(EBADMSG, "%s: truncated: %llu bytes, shorter than the header",
                        path, (unsigned long long)file_size);
    if (hdr->version > MMH_FORMAT_VERSION)
        return mmh_fail(EPROTONOSUPPORT,
                        "%s: format version %u is newer than this library's (%u)",
                        path, hdr->version, MMH_FORMAT_VERSION);
    if (hdr->version < MMH_FORMAT_VERSION && hdr->version != 0)
        return mmh_fail(EPROTONOSUPPORT, "%s: format version %u is from a pre-release of "
                        "mmheap and cannot be read by this one (%u; it converts formats 4 "
                        "to 6)",
                        path, hdr->version, MMH_FORMAT_VERSION);
    if (mmh_format_checksum(hdr) != hdr->checksum)
        return corrupt(path, "header checksum mismatch");
    if (hdr->version == 0 || hdr->hdr_size != MMH_HDR_SIZE || hdr->seg_size != MMH_SEG_SIZE)
        return corrupt(path, "unknown header layout");
    long page = sysconf(_SC_PAGESIZE);
    if (hdr->page_size != (uint32_t)page)
        return mmh_fail(EINVAL, "%s: made with page size %u, this system uses %ld",
                        path, hdr->page_size, page);
    if ((hdr->base & MMH_SEG_MASK) || (hdr->max_size & MMH_SEG_MASK) ||
        hdr->max_size > MMH_MAX_MAX_SIZE || hdr->max_size < MMH_SEG_SIZE)
        return corrupt(path, "bad base address or max_size");
    if (!mmh_region_fits(hdr->base, hdr->max_size))
        return mmh_fail(EBADMSG, "%s: corrupt heap file: base address 0x%llx with max_size %llu "
                        "is outside the user address space", path,
                        (unsigned long long)hdr->base, (unsigned long long)hdr->max_size);
    if ((hdr->extent & MMH_SEG_MASK) || hdr->extent < MMH_SEG_SIZE || hdr->extent > hdr->max_size)
        return corrupt(path, "bad extent");
    if (hdr->segmap_len > MMH_SEGMAP_MAX || hdr->segmap_len < hdr->max_size >> MMH_SEG_SHIFT)
        return corrupt(path, "max_size beyond the segment map");
    if (hdr->segmap_off != segmap_offset() || hdr->slots_off != slots_offset(hdr->segmap_len) ||
        hdr->first_slice != first_slice(hdr->segmap_len))
        return corrupt(path, "bad metadata layout");
    if (check_slot_tables(path, hdr) != 0)
        return -1;
    if (hdr->root >= hdr->extent)
        return corrupt(path, "root outside the heap");
    if (hdr->names >= hdr->extent || hdr->names % 8)
        return corrupt(path, "names table outside the heap");
    if (file_size < hdr->extent)
        return mmh_fail(EBADMSG, "%s: truncated: header says %llu bytes, file has %llu",
                        path, (unsigned long long)hdr->extent, (unsigned long long)file_size);
    return 0;
}
