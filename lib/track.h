/* Dirty tracking: which pages of a heap were written since the last commit
 * (track.c chooses and drives a backend; track_uffd.c, track_mprotect.c).
 * Offsets are heap offsets; ranges are page-aligned.  A heap without a file
 * (or read-only) is not tracked.  All calls but touch run with h->lock
 * held. */
#ifndef MMH_TRACK_H
#define MMH_TRACK_H

#include "internal.h"


struct mmh_track_ops {
    mmh_tracker kind;
    /* Can this process use the backend?  0, or -1 with a reason. */
    int  (*probe)(void);
    /* Start tracking [0, h->mapped): every page counts as clean. */
    int  (*attach)(mmh_heap *h);
    /* Growth mapped [from, to): track it too, clean. */
    int  (*extend)(mmh_heap *h, size_t from, size_t to);
    /* Report the ranges written since the last scan, in ascending order,
     * and count them clean again.  After a failure the heap is failed. */
    int  (*scan)(mmh_heap *h, mmh_range_fn fn, void *arg);
    /* Make [off, off + len) writable by the kernel (read(2) into it). */
    int  (*touch)(mmh_heap *h, size_t off, size_t len);
    void (*detach)(mmh_heap *h);
};

extern const mmh_track_ops mmh_track_uffd MMH_HIDDEN;
extern const mmh_track_ops mmh_track_mprotect MMH_HIDDEN;
/* Widening thresholds of the mprotect tracker, for tests. */
MMH_HIDDEN void mmh_track_mprotect_tune(unsigned pages, unsigned step);

MMH_HIDDEN int  mmh_track_start(mmh_heap *h, mmh_tracker want);
MMH_HIDDEN void mmh_track_stop(mmh_heap *h);
MMH_HIDDEN int  mmh_track_extend(mmh_heap *h, size_t from, size_t to);
MMH_HIDDEN void mmh_track_forked(mmh_heap *h);
MMH_HIDDEN int  mmh_track_resume(mmh_heap *h);

#endif /* MMH_TRACK_H */
