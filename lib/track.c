/* Dirty tracking: which backend a heap uses, and the calls around it. */
#include "track.h"

#include <errno.h>
#include <stdio.h>

static const mmh_track_ops *backend(mmh_tracker kind)
{
    return kind == MMH_TRACK_UFFD       ? &mmh_track_uffd
           : kind == MMH_TRACK_MPROTECT ? &mmh_track_mprotect
                                        : NULL;
}

/* Start tracking a heap whose mapping is final.  Anonymous, volatile and
 * read-only heaps are not tracked: nothing is ever written back from them. */
int mmh_track_start(mmh_heap *h, mmh_tracker want)
{
    h->track.kind = MMH_TRACK_NONE;
    if (!mmh_writes_back(h) || want == MMH_TRACK_NONE)
        return 0;
    const mmh_track_ops *ops = want == MMH_TRACK_AUTO ? &mmh_track_uffd : backend(want);
    if (ops->probe() != 0) {
        /* AUTO falls back only where uffd cannot work at all: a shortage
         * (EMFILE, ENOMEM) fails the open rather than quietly give this
         * heap the tracker under which read(2) into it fails. */
        if (want == MMH_TRACK_AUTO && errno == ENOTSUP) {
            ops = &mmh_track_mprotect;
        } else {
            int err = errno;
            char why[256]; /* the reason is in the buffer mmh_fail writes */
            snprintf(why, sizeof why, "%s", mmh_errmsg());
            return mmh_fail(err, "%s: %s", h->path, why);
        }
    }
    if (ops->attach(h) != 0)
        return -1;
    h->track.ops = ops;
    h->track.kind = ops->kind;
    return 0;
}

void mmh_track_stop(mmh_heap *h)
{
    if (h->track.ops)
        h->track.ops->detach(h);
    h->track.ops = NULL;
}

int mmh_track_extend(mmh_heap *h, size_t from, size_t to)
{
    return h->track.ops ? h->track.ops->extend(h, from, to) : 0;
}

/* In the child of a fork(): userfaultfd registrations belong to the parent's
 * process and did not come along, and /proc/self/pagemap opened by the
 * parent reads the parent's pages.  Drop the tracker: commits write every
 * in-use range until the next one, which starts a fresh tracker.  The
 * mprotect tracker's state is plain memory and protections, both copied. */
void mmh_track_forked(mmh_heap *h)
{
    if (h->track.ops != &mmh_track_uffd)
        return;
    mmh_track_stop(h);
    h->track.restart = MMH_TRACK_UFFD;
    h->track.kind = MMH_TRACK_NONE;
}

/* At a commit, once its ranges are known: restart a dropped tracker. */
int mmh_track_resume(mmh_heap *h)
{
    mmh_tracker want = h->track.restart;
    h->track.restart = MMH_TRACK_NONE;
    return want == MMH_TRACK_NONE ? 0 : mmh_track_start(h, want);
}
