/* Lists of heap ranges: what a commit writes, built from the tracker's
 * reports or from the allocator's metadata. */
#include "ranges.h"
#include "walk.h"

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

/* Segment 0's metadata without the segment map's entries past the extent,
 * zero in the file since it was made: room for growth, most of it. */
static int add_header_segment(mmh_heap *h, size_t meta_len, mmh_ranges *r)
{
    size_t page = h->hdr->page_size;
    size_t map_end = h->hdr->segmap_off + (h->mapped >> MMH_SEG_SHIFT) * sizeof(uint32_t);
    size_t slots = h->hdr->slots_off & ~(page - 1);
    map_end = mmh_align_up(map_end, page);
    if (map_end >= slots)
        return mmh_ranges_add(h, 0, meta_len, r);
    if (mmh_ranges_add(h, 0, map_end, r) != 0)
        return -1;
    return mmh_ranges_add(h, slots, meta_len - slots, r);
}

/* Untracked: every in-use range of the extent (the whole metadata slice of
 * free runs too: it holds their links). */
int mmh_in_use_ranges(mmh_heap *h, mmh_ranges *r)
{
    mmh_span_iter it;
    mmh_span sp;
    mmh_span_iter_init(&it, h->base, h->segmap, h->mapped >> MMH_SEG_SHIFT);
    while (mmh_span_next(&it, &sp)) {
        size_t len;
        switch (sp.kind) {
        case MMH_SPAN_SLICED:
            if (sp.seg == 0 && sp.slice == 0) {
                if (add_header_segment(h, mmh_span_bytes(&sp), r) != 0)
                    return -1;
                continue;
            }
            len = sp.pg->kind == MMH_PAGE_FREE ? 0 : mmh_span_bytes(&sp);
            break;
        case MMH_SPAN_HUGE:
            len = mmh_span_bytes(&sp);
            break;
        case MMH_SPAN_FREE_RUN:
            len = MMH_SLICE_SIZE;
            break;
        default:
            return mmh_fail(EIO, "%s: corrupt segment map or span at segment %zu, slice %zu",
                            h->path, sp.seg, sp.slice);
        }
        if (len && mmh_ranges_add(h, mmh_span_start(&sp), len, r) != 0)
            return -1;
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
