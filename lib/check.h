/* The checker (check.c): the full walk of a heap's structures, for mmheap
 * check and info, the open-time verification and mmh_check. */
#ifndef MMH_CHECK_H
#define MMH_CHECK_H

#include "internal.h"
#include "persist.h"

/* A view of a heap file as the next open will see it (its log applied),
 * mapped privately and read-only in effect, for mmheap check and info.
 * (An "image" is something else: a heap file a snapshot writes.) */
typedef struct mmh_fileview {
    const char       *path;
    int               fd;
    char             *base;      /* segment-aligned                        */
    size_t            size;      /* mapped: the file, or the log's extent */
    uint64_t          file_size;
    const mmh_hdr    *hdr;       /* checked by mmh_format_check            */
    mmh_wal_info      wal;
} mmh_fileview;

typedef struct mmh_check_result {
    uint64_t problems;
    uint64_t segments, sliced_segments, free_runs, free_spans, slots_used;
    uint64_t small_pages, large_blocks, huge_blocks, live_blocks;
    uint64_t live_bytes;   /* in live blocks, at their usable sizes        */
    uint64_t small_bytes;  /* in small pages                               */
    uint64_t large_bytes;  /* usable bytes of large and huge blocks        */
    uint64_t free_bytes, largest_free, meta_bytes;
    uint64_t names;        /* in the names table (a full check)            */
    mmh_class_stats classes[MMH_CLASSES];
} mmh_check_result;

/* A problem found at heap offset off; progress: segments done of total. */
typedef void (*mmh_check_report_fn)(void *arg, uint64_t off, const char *msg);
typedef void (*mmh_check_progress_fn)(void *arg, size_t done, size_t total);

MMH_HIDDEN int  mmh_fileview_open(mmh_fileview *fv, const char *path);
MMH_HIDDEN void mmh_fileview_close(mmh_fileview *fv);
/* 0, or -1 (EBADMSG, reason) if the structure of a heap file mapped at
 * h->base is corrupt: check's walk without the block lists in pages. */
MMH_HIDDEN int  mmh_verify(const mmh_heap *h);
/* 0: sound; 1: r->problems problems, each reported. */
MMH_HIDDEN int  mmh_check_fileview(const mmh_fileview *fv, mmh_check_result *r,
                                mmh_check_report_fn report, mmh_check_progress_fn progress,
                                void *arg);

/* Each name in the table of a heap whose check found no problem, with the
 * offset and size of the block it names. */
typedef void (*mmh_check_name_fn)(void *arg, const char *name, uint64_t off, uint64_t size);
MMH_HIDDEN void mmh_check_names_each(const mmh_fileview *fv, mmh_check_name_fn fn, void *arg);

#endif /* MMH_CHECK_H */
