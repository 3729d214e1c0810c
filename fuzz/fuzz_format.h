/* The input format of fuzz_open (see fuzz_open.c), shared with make_seeds:
 * the options byte, the heap part's limits, and the repairs that the
 * harness makes to a mutated input (OPT_FIX_SUMS, OPT_NAME_*).  The log's
 * layout on disk is lib/internal.h's (mmh_wal_hdr, mmh_wal_head,
 * mmh_wal_rec), and the repairs use lib/wal.c's own hash functions, so
 * that they follow the format wherever it goes; make_seeds checks that
 * they leave a log the library wrote unchanged. */
#ifndef FUZZ_FORMAT_H
#define FUZZ_FORMAT_H

#include "layout.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define FUZZ_HEAP_PART_MAX ((size_t)1 << 20)  /* bytes of heap part read     */
#define FUZZ_FILE_SIZE_MAX ((uint64_t)32 << 20) /* sparse heap file size cap */
#define FUZZ_EXTENT_HDR    6u                  /* offset (4) + length (2)    */
#define FUZZ_EXTENT_MAX    0xffffu
/* The size of a new log: its header page, then persist.c's WAL_INITIAL of
 * zeros.  A log shorter than its commits need is grown (zero-filled) at
 * the first commit, which a seed's log, shorn of its zeros, would pay for
 * at every run. */
#define FUZZ_WAL_FILLED    ((uint64_t)MMH_WAL_START + ((uint64_t)1 << 20))

/* The options byte (the input's first). */
#define OPT_CONFIG_MASK 0x07u /* which configuration: configs[] in fuzz_open  */
#define OPT_FIX_SUMS    0x08u /* recompute every checksum: heap header, log
                                 header slots, commit heads and their chain,
                                 data records (fuzz_wal_fix_commits)          */
#define OPT_ZERO_FILL   0x10u /* the log file is as long as a new log at least
                                 (FUZZ_WAL_FILLED), zeros past its bytes, as
                                 the library zero-fills a log; with no log
                                 bytes, an empty FILE.wal rather than none    */
#define OPT_EXERCISE    0x20u /* allocate and free after a good open          */
#define OPT_NAME_MASK   0xc0u /* how the heap and its log name each other:    */
#define OPT_NAME_KEEP   0x00u /*   as the input has them                      */
#define OPT_NAME_GEN    0x40u /*   the log is the heap's (its file_id), and
                                   the heap names it (wal_gen = the log's gen):
                                   a heap checkpointed once at least          */
#define OPT_NAME_FRESH  0x80u /*   the log is the heap's, and the heap names
                                   none (wal_gen 0): never checkpointed        */
#define OPT_NAME_OTHER  0xc0u /*   the log is the heap's, but the heap names
                                   another generation of it (refused)         */

/* ---- the log's header slots -------------------------------------------- */

/* Slot i of a log image of len bytes, or NULL if the image ends first. */
static inline uint8_t *fuzz_wal_slot(uint8_t *w, size_t len, unsigned i)
{
    size_t at = (size_t)i * MMH_WAL_SLOT;
    return len >= at + sizeof(mmh_wal_hdr) ? w + at : NULL;
}

static inline bool fuzz_wal_slot_form(const mmh_wal_hdr *s)
{
    return memcmp(s->magic, MMH_WAL_MAGIC, sizeof s->magic) == 0 &&
           s->version == MMH_WAL_VERSION;
}

/* Does slot s hash right?  wal.c's hdr_hash is static: seal a copy (magic,
 * version, hash) and compare, for a slot of the right magic and version. */
static inline bool fuzz_wal_slot_sealed(const mmh_wal_hdr *s)
{
    mmh_wal_hdr copy = *s;
    mmh_wal_hdr_seal(&copy);
    return fuzz_wal_slot_form(s) && copy.hash == s->hash;
}

/* The header in force in a log image, as wal.c's hdr_read picks it: the
 * valid slot (magic, version, hash, a mark on a commit boundary, the
 * counter of its slot) with the higher counter.  false: none. */
static inline bool fuzz_wal_in_force(const uint8_t *w, size_t len, mmh_wal_hdr *out)
{
    mmh_wal_hdr slot[2];
    bool valid[2];
    if (len < MMH_WAL_START)
        return false;
    for (unsigned i = 0; i < 2; i++) {
        memcpy(&slot[i], w + i * MMH_WAL_SLOT, sizeof slot[i]);
        valid[i] = fuzz_wal_slot_sealed(&slot[i]) && slot[i].mark >= MMH_WAL_START &&
                   slot[i].mark % MMH_WAL_ALIGN == 0 && slot[i].counter % 2 == i;
    }
    if (!valid[0] && !valid[1])
        return false;
    *out = slot[valid[1] && (!valid[0] || slot[1].counter > slot[0].counter)];
    return true;
}

/* ---- repairs ------------------------------------------------------------ */

/* A heap header page (MMH_HDR_SIZE bytes) given the checksum
 * mmh_format_check expects.  true if that changed it. */
static inline bool fuzz_fix_hdr_page(uint8_t *page)
{
    union {
        mmh_hdr hdr;
        uint8_t bytes[MMH_HDR_SIZE];
    } buf; /* page may be anywhere in a log image: not aligned */
    memcpy(buf.bytes, page, sizeof buf.bytes);
    uint64_t sum = mmh_format_checksum(&buf.hdr);
    if (sum == buf.hdr.checksum)
        return false;
    memcpy(page + offsetof(mmh_hdr, checksum), &sum, sizeof sum);
    return true;
}

/* Repair the commits after the mark of header hf in a log image, as a
 * writer that meant them would have written them: from the mark, every
 * head of the commit magic and the lap's salt gets the next sequence
 * number, the previous commit's hash as prev_chain (mark_chain for the
 * first), the head_bytes of its table, data_bytes the sum of its DATA
 * records' lengths, each DATA record the hash of its bytes, and its own
 * hash.  A DATA record holding a whole header page (offset 0) gets that
 * page's checksum first: the log's copy of the header is what an open
 * checks.  The repair stops at the first head that is not of the lap or
 * whose table or data the image does not hold, as the walk will.  Returns
 * how many commits it went through. */
static inline unsigned fuzz_wal_fix_commits(uint8_t *w, size_t len, const mmh_wal_hdr *hf)
{
    uint64_t at = hf->mark, seq = hf->mark_seq, chain = hf->mark_chain;
    unsigned n = 0;
    while (at <= len && len - at >= MMH_WAL_ALIGN) {
        mmh_wal_head head;
        memcpy(&head, w + at, sizeof head);
        if (memcmp(head.magic, MMH_WAL_COMMIT, sizeof head.magic) != 0 || head.salt != hf->salt)
            break;
        uint64_t room = len - at;
        if (head.nrecords > (room - sizeof head) / sizeof(mmh_wal_rec))
            break;
        head.seq = seq + 1;
        head.prev_chain = chain;
        head.head_bytes = mmh_wal_head_bytes((size_t)head.nrecords);
        if (head.head_bytes > room)
            break;
        uint8_t *table = w + at + sizeof head;
        uint64_t data_at = at + head.head_bytes, data = 0;
        bool fits = true;
        for (uint64_t i = 0; i < head.nrecords; i++) {
            mmh_wal_rec rec;
            memcpy(&rec, table + i * sizeof rec, sizeof rec);
            if (rec.kind != MMH_WAL_DATA)
                continue;
            data = rec.len > UINT64_MAX - data ? UINT64_MAX : data + rec.len;
            fits = fits && data_at <= len && rec.len <= len - data_at;
            if (!fits)
                continue; /* the walk refuses this commit: keep the sum only */
            if (rec.off == 0 && rec.len >= MMH_HDR_SIZE)
                (void)fuzz_fix_hdr_page(w + data_at);
            rec.hash = mmh_hash64(w + data_at, (size_t)rec.len, rec.off ^ head.seq);
            memcpy(table + i * sizeof rec, &rec, sizeof rec);
            data_at += rec.len;
        }
        head.data_bytes = data;
        head.hash = 0;
        memcpy(w + at, &head, sizeof head);
        head.hash = mmh_wal_head_hash((const mmh_wal_head *)(w + at));
        memcpy(w + at, &head, sizeof head);
        n++;
        if (!fits || head.data_bytes % MMH_WAL_ALIGN != 0)
            break; /* the walk ends here (and the next head would not be aligned) */
        chain = head.hash;
        seq = head.seq;
        at += head.head_bytes + head.data_bytes;
    }
    return n;
}

/* Reseal the slots of a log image that have the log's magic and version
 * (the others are refused on those, whatever their hash); with
 * only_sealed, only those whose hash was right before (file_id was just
 * changed).  Sets each one's file_id first when set_id. */
static inline void fuzz_wal_fix_slots(uint8_t *w, size_t len, bool set_id, uint64_t file_id,
                                      bool only_sealed)
{
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *at = fuzz_wal_slot(w, len, i);
        mmh_wal_hdr s;
        if (!at)
            continue;
        memcpy(&s, at, sizeof s);
        if (!fuzz_wal_slot_form(&s) || (only_sealed && !fuzz_wal_slot_sealed(&s)))
            continue;
        if (set_id)
            s.file_id = file_id;
        mmh_wal_hdr_seal(&s);
        memcpy(at, &s, sizeof s);
    }
}

#endif
