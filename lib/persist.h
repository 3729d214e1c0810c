/* Persistence: the commit protocol over the write-ahead log (persist.c)
 * and the log itself, read and verified (wal.c).  The log's format is in
 * layout.h. */
#ifndef MMH_PERSIST_H
#define MMH_PERSIST_H

#include "internal.h"

/* ---- wal.c: reading and verifying the log ---- */

/* A place in a lap: where the next commit goes and what it continues. */
typedef struct mmh_wal_pos {
    uint64_t off, seq, chain;
} mmh_wal_pos;

/* What inspecting FILE.wal found. */
typedef enum {
    MMH_WAL_ABSENT = 0,  /* no log, and the heap names none: nothing to do  */
    MMH_WAL_LEFTOVER,    /* a log the heap does not name (a crash before the
                            heap named it, or a removed heap's): reset      */
    MMH_WAL_VALID,       /* the heap's log; commits after the mark replay   */
    MMH_WAL_STALE,       /* the heap's log, but older than the heap's last
                            commit (a copy put back): never replayed, reset */
} mmh_wal_state;

typedef struct mmh_wal_info {
    mmh_wal_state state;
    uint64_t size;        /* of the file                                   */
    uint64_t commits;     /* VALID: complete commits after the mark        */
    uint64_t first_seq, last_seq; /* of those (last_seq: mark_seq if none)  */
    uint64_t data_bytes;  /* in those                                      */
    uint64_t extent;      /* the heap's extent at the last of them (0: none) */
    uint64_t heap_seq;    /* the heap header's commit                      */
    bool     torn;        /* VALID: the next commit after those began but
                             is incomplete (a crash while writing it)      */
} mmh_wal_info;

/* Does the log hold commits that are not yet in the heap file? */
static inline bool mmh_wal_has_commits(const mmh_wal_info *wi)
{
    return wi->state == MMH_WAL_VALID && wi->commits;
}

typedef struct mmh_wal_view {
    mmh_wal_info info;
    int          fd;      /* -1: no log                                    */
    char        *path;    /* FILE.wal                                      */
    mmh_wal_hdr  hdr;     /* VALID: the header in force                    */
    mmh_wal_pos  end;     /* VALID: after the last complete commit         */
} mmh_wal_view;

/* Reading commits one after another. */
typedef struct mmh_wal_cursor {
    int          fd;
    uint64_t     salt;    /* of the lap pos is in                          */
    mmh_wal_pos  pos;     /* the next commit starts here                   */
    uint64_t     limit;   /* commits must end by here (in the last lap)    */
    uint64_t     wrap_end, wrap_salt; /* nonzero: at wrap_end, go on at
                                         MMH_WAL_START in lap wrap_salt   */
    char        *table;   /* the current commit's head and record table    */
    size_t       table_cap;
    char        *chunk;   /* MMH_WAL_CHUNK bytes, for verifying data       */
    uint64_t     at;      /* the current commit's offset                   */
} mmh_wal_cursor;

MMH_HIDDEN char    *mmh_wal_path(const char *heap_path);
MMH_HIDDEN int      mmh_wal_hdr_write(int fd, mmh_wal_hdr *w); /* async-signal-safe */
/* 1: the next complete commit is in c->table (head, then records); 0: none;
 * -1: a read failed.  verify: read its data and check every record. */
MMH_HIDDEN int      mmh_wal_next(mmh_wal_cursor *c, bool verify);
MMH_HIDDEN void     mmh_wal_cursor_free(mmh_wal_cursor *c);
/* A cursor at the mark of header w: the lap it is in, and the wrap. */
MMH_HIDDEN void     mmh_wal_cursor_at_mark(mmh_wal_cursor *c, int fd, const mmh_wal_hdr *w,
                                           uint64_t limit);
/* Open FILE.wal beside the heap file heap_fd (writable: read-write) and
 * find what it holds; errors for a log the heap names that is missing,
 * foreign or unreadable. */
MMH_HIDDEN int      mmh_wal_inspect(const char *path, int heap_fd, bool writable,
                                    mmh_wal_view *v);
/* Lay the commits of a VALID view over image, a private mapping of the
 * heap's first image_size bytes. */
MMH_HIDDEN int      mmh_wal_overlay(const char *path, const mmh_wal_view *v, char *image,
                                    size_t image_size);
MMH_HIDDEN void     mmh_wal_view_close(mmh_wal_view *v);


/* ---- persist.c: the commit protocol (see there) ---- */

/* A background commit's share of it, prepared by the parent and run by
 * the child. */
typedef struct mmh_persist_job mmh_persist_job;

MMH_HIDDEN int      mmh_persist_open(mmh_heap *h, const mmh_wal_view *v);
MMH_HIDDEN int      mmh_persist_close(mmh_heap *h);
MMH_HIDDEN bool     mmh_persist_owner(const mmh_heap *h); /* this process commits h */
MMH_HIDDEN int      mmh_writeback(mmh_heap *h);
MMH_HIDDEN int      mmh_commit_check(mmh_heap *h, const char *fn);
MMH_HIDDEN void     mmh_commit_done(mmh_heap *h, uint64_t ns);
MMH_HIDDEN mmh_persist_job *mmh_persist_job_prepare(mmh_heap *h);
/* The child's part: 0 with *end the log after the commit and *written its
 * bytes, or -1 with *final_err the failure if it is final. */
MMH_HIDDEN int      mmh_persist_job_run(mmh_heap *h, mmh_persist_job *pj, mmh_wal_pos *end,
                                        uint64_t *written, int *final_err);
/* The child's outcome, in the parent (end: NULL unless ok). */
MMH_HIDDEN void     mmh_persist_job_done(mmh_heap *h, mmh_persist_job *pj, bool ok,
                                         const mmh_wal_pos *end, int final_err);
MMH_HIDDEN void     mmh_persist_job_free(mmh_persist_job *pj);
MMH_HIDDEN void     mmh_persist_fork_prepare(mmh_heap *h);
MMH_HIDDEN void     mmh_persist_fork_parent(mmh_heap *h);
MMH_HIDDEN void     mmh_persist_fork_child(mmh_heap *h);
MMH_HIDDEN bool     mmh_write_error_final(int err);
/* mmheap recover: checkpoint FILE.wal into the heap file heap_fd, which
 * the caller has locked for writing; v from a writable mmh_wal_inspect. */
MMH_HIDDEN int      mmh_wal_recover(const char *path, int heap_fd, mmh_wal_view *v);

#endif /* MMH_PERSIST_H */
