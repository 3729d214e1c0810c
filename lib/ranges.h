/* Lists of heap ranges (ranges.c): what a commit writes. */
#ifndef MMH_RANGES_H
#define MMH_RANGES_H

#include "internal.h"

/* A growable list of heap ranges; adjacent ones are merged on add. */
typedef struct mmh_range {
    size_t off, len;
} mmh_range;

typedef struct mmh_ranges {
    mmh_range *v;
    size_t     n, cap;
} mmh_ranges;

MMH_HIDDEN int mmh_ranges_add(mmh_heap *h, size_t off, size_t len, void *ranges);
MMH_HIDDEN int mmh_ranges_merge(mmh_heap *h, mmh_ranges *dst, const mmh_ranges *add);
MMH_HIDDEN int mmh_in_use_ranges(mmh_heap *h, mmh_ranges *r);

#endif /* MMH_RANGES_H */
