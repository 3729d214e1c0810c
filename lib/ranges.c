/* Lists of heap ranges: what a commit writes, built from the tracker's
 * reports or from the allocator's metadata. */
#include "ranges.h"

#include <errno.h>

int mmh_ranges_add(mmh_heap *h, size_t off, size_t len, void *arg)
{
    mmh_ranges *r = arg;
    if (r->n && r->v[r->n - 1].off + r->v[r->n - 1].len == off) {
        r->v[r->n - 1].len += len;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        mmh_range *v = mmh_meta_realloc(r->v, cap * sizeof *v);
        if (!v)
            return mmh_fail(ENOMEM, "%s: out of memory for the commit's range list", h->path);
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (mmh_range){ off, len };
    return 0;
}

/* Untracked: every in-use range of the extent (the whole metadata slice of
 * free runs too: it holds their links). */
int mmh_in_use_ranges(mmh_heap *h, mmh_ranges *r)
{
    size_t nsegs = h->mapped >> MMH_SEG_SHIFT;
    for (size_t idx = 0; idx < nsegs;) {
        uint32_t e = h->segmap[idx];
        size_t seg = idx << MMH_SEG_SHIFT, run = MMH_SEGMAP_LEN(e);
        int rc = 0;
        switch (MMH_SEGMAP_KIND(e)) {
        case MMH_SEGMAP_SLICED: {
            const mmh_segment *s = mmh_seg_at(h, idx);
            for (size_t i = 0; i < MMH_SEG_SLICES && rc == 0; i += s->pages[i].slice_count)
                if (s->pages[i].kind != MMH_PAGE_FREE)
                    rc = mmh_ranges_add(h, seg + (i << MMH_SLICE_SHIFT),
                                        (size_t)s->pages[i].slice_count << MMH_SLICE_SHIFT, r);
            run = 1;
            break;
        }
        case MMH_SEGMAP_HUGE:
            rc = mmh_ranges_add(h, seg, run << MMH_SEG_SHIFT, r);
            break;
        case MMH_SEGMAP_FREE:
            rc = mmh_ranges_add(h, seg, MMH_SLICE_SIZE, r);
            break;
        default:
            return mmh_fail(EIO, "%s: corrupt segment map at segment %zu", h->path, idx);
        }
        if (rc)
            return rc;
        idx += run;
    }
    return 0;
}

/* The union of two ascending range lists, into *dst. */
int mmh_ranges_merge(mmh_heap *h, mmh_ranges *dst, const mmh_ranges *add)
{
    mmh_ranges out = { 0 };
    size_t i = 0, j = 0;
    while (i < dst->n || j < add->n) {
        const mmh_range *next = j == add->n || (i < dst->n && dst->v[i].off <= add->v[j].off)
                                    ? &dst->v[i++] : &add->v[j++];
        mmh_range *last = out.n ? &out.v[out.n - 1] : NULL;
        if (last && next->off <= last->off + last->len) {
            if (next->off + next->len > last->off + last->len)
                last->len = next->off + next->len - last->off;
        } else if (mmh_ranges_add(h, next->off, next->len, &out) != 0) {
            mmh_meta_free(out.v);
            return -1;
        }
    }
    mmh_meta_free(dst->v);
    *dst = out;
    return 0;
}
