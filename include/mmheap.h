/* mmheap: heaps in memory-mapped regions.
 *
 * One arena allocator for persistent heaps in files, for anonymous heaps
 * (a drop-in malloc) and for fork-based snapshots.  See mmheap(3).
 *
 * Errors: functions return NULL or -1 with errno set to a standard code, and
 * mmh_errmsg() returns a human-readable reason (thread-local, never NULL).
 * Every function is thread-safe unless stated otherwise.
 */
#ifndef MMHEAP_H
#define MMHEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MMHEAP_VERSION_MAJOR 0
#define MMHEAP_VERSION_MINOR 1

typedef struct mmh_heap mmh_heap;

typedef enum {
    MMH_TRACK_AUTO = 0,   /* uffd where the kernel supports it, else mprotect */
    MMH_TRACK_UFFD,       /* userfaultfd write-protect + PAGEMAP_SCAN          */
    MMH_TRACK_MPROTECT,   /* mprotect + SIGSEGV                                */
    MMH_TRACK_NONE        /* no tracking: commit writes the whole used extent  */
} mmh_tracker;

enum {
    MMH_CREATE   = 1u << 0, /* create the file if it does not exist        */
    MMH_EXCL     = 1u << 1, /* with MMH_CREATE: fail (EEXIST) if it exists  */
    MMH_SHARED   = 1u << 2, /* MAP_SHARED: stores reach the page cache;     */
                            /* commit syncs only the dirty pages            */
    MMH_READONLY = 1u << 3, /* map read-only; alloc/commit fail with EROFS  */
    MMH_RELOCATE = 1u << 4, /* allow mapping at another base address        */
    MMH_VOLATILE = 1u << 5, /* start from an existing file (a snapshot
                               image), mapped copy-on-write and never written
                               back: the heap is volatile like an anonymous
                               one (mmh_commit fails; mmh_snapshot saves it) */
    MMH_HUGEPAGES = 1u << 6, /* anonymous heaps: ask for transparent huge
                               pages (MADV_HUGEPAGE).  A fork, the pause of
                               mmh_snapshot, copies one page-table entry per
                               huge page instead of 512 (1 GiB: under 1 ms
                               instead of about 10); copy-on-write stays per
                               4 KiB page, but splits the huge pages written
                               during a job until the kernel merges them
                               again (khugepaged: minutes).  Costs memory: a
                               touched 2 MiB range is resident whole. */
};                          /* default for a file: MAP_PRIVATE              */

typedef struct mmh_config {
    size_t      size;     /* initial size of the backing file/region; 0 = default */
    size_t      max_size; /* address space reserved: growth limit; 0 = default;
                             an existing file keeps the limit it was made with */
    unsigned    flags;    /* MMH_* above                                          */
    mmh_tracker tracker;  /* dirty tracking backend for a writable file heap;
                             one the system cannot provide fails (ENOTSUP)    */
    void       *base;     /* base address for a new heap, 4 MiB aligned;
                             NULL = library chooses                             */
    unsigned    mode;     /* permission bits for a created file; 0 = 0600         */
} mmh_config;

struct mmh_stats {
    uint64_t    base;            /* address the heap is mapped at               */
    uint64_t    size;            /* bytes of the heap in use (file size)        */
    uint64_t    max_size;        /* bytes of address space reserved             */
    uint64_t    allocated;       /* bytes in live blocks (usable sizes)         */
    uint64_t    allocations;     /* live blocks                                 */
    uint64_t    free_bytes;      /* bytes in free spans inside the used size    */
    uint64_t    used_bytes;      /* bytes in pages of small blocks and in large
                                    blocks: the heap's footprint less free
                                    space and metadata                        */
    uint64_t    used_peak;       /* most used_bytes since the heap was opened  */
    uint64_t    purged_bytes;    /* free memory handed back to the system
                                    (MADV_DONTNEED, hole punching) since open */
    uint64_t    faults;          /* mprotect tracker: write faults taken; uffd
                                    tracker: written pages found, summed at
                                    each commit; 0 when untracked             */
    uint64_t    commits;         /* completed commits since open                */
    uint64_t    bytes_written;   /* bytes commits wrote (private: to the log)    */
    uint64_t    last_commit_ns;  /* duration of the last commit                 */
    uint64_t    last_commit_time;/* CLOCK_REALTIME of the last commit, ns       */
    uint64_t    cow_pages;       /* pages copied on write while the last
                                    background job ran (its memory cost)      */
    uint64_t    last_fork_ns;    /* pause of the last mmh_commit_bg or
                                    mmh_snapshot call (ends at the fork)      */
    uint64_t    last_job_ns;     /* duration of the last finished job         */
    uint64_t    last_job_bytes;  /* bytes it wrote                            */
    uint64_t    jobs;            /* background jobs finished (ok or failed)   */
    uint64_t    jobs_failed;     /* of those, failed                          */
    int         job_running;     /* 1 while a background job runs             */
    mmh_tracker tracker;         /* tracker in use (AUTO resolved)              */
    unsigned    flags;           /* MMH_* flags the heap was opened with        */
};

/* The process's default anonymous heap, made at the first call (NULL and
 * errno if that fails).  In libmmheap-malloc.so it is the heap malloc and
 * operator new draw from, so a program can mmh_snapshot its whole malloc
 * heap.  MMHEAP_OPTIONS configures it (see mmheap-malloc(3)). */
mmh_heap *mmh_default_heap(void);

/* path NULL: anonymous heap; cfg NULL: defaults. */
mmh_heap *mmh_open(const char *path, const mmh_config *cfg);
/* Commits a writable file-backed heap, then unmaps it.  Pointers into the
 * heap are invalid afterwards.  No other thread may use h during or after.
 * If the commit fails, the heap is still closed and -1 returned with the
 * commit's errno and reason; the file keeps its last committed state. */
int       mmh_close(mmh_heap *h);

void  *mmh_alloc(mmh_heap *h, size_t size);
void  *mmh_calloc(mmh_heap *h, size_t n, size_t size);
void  *mmh_realloc(mmh_heap *h, void *p, size_t size);
void  *mmh_aligned_alloc(mmh_heap *h, size_t align, size_t size);
void   mmh_free(mmh_heap *h, void *p);
size_t mmh_usable_size(mmh_heap *h, const void *p);

void    *mmh_root(mmh_heap *h);              /* NULL until set */
int      mmh_set_root(mmh_heap *h, void *p);
uint64_t mmh_offset(mmh_heap *h, const void *p); /* 0 for NULL or outside h */
void    *mmh_at(mmh_heap *h, uint64_t off);      /* NULL for 0 or outside h */

int mmh_commit(mmh_heap *h);
/* Copy every commit still only in the heap's write-ahead log (FILE.wal)
 * into the heap file and sync it, now; a thread of the library does this
 * in the background anyway, and mmh_close does it last.  Private file heaps
 * (0 and nothing to do for others).  -1 when writing or syncing the heap
 * file fails: the commits stay in the log, and the next open applies them. */
int mmh_checkpoint(mmh_heap *h);
/* Background jobs.  Each forks a child that works on a copy-on-write view
 * of the heap as it is at the call, and returns as soon as the child runs:
 * the pause is the fork.  One job per heap; starting another, mmh_commit
 * and mmh_close wait for the running one first.
 *
 * mmh_commit_bg: the child commits the pages written since the last commit
 * (private file heaps; atomic like mmh_commit).  If the job fails or dies,
 * nothing is lost: the next commit writes its pages again.
 * mmh_snapshot: the child writes the whole heap to path as an ordinary heap
 * file (written to a temporary file, synced, renamed over path, directory
 * synced): mmh_open maps it with every pointer intact, or MMH_VOLATILE
 * starts a volatile heap from it.  Anonymous, private and volatile heaps;
 * a shared heap has no copy-on-write and is refused (EINVAL).
 * mmh_wait: 0 when the job succeeded, -1 when it failed (errno and
 * mmh_errmsg give the child's reason), 1 while it runs (nohang); -1 with
 * ECHILD when there is no job to wait for. */
int mmh_commit_bg(mmh_heap *h);
int mmh_snapshot(mmh_heap *h, const char *path);
int mmh_wait(mmh_heap *h, int nohang);
/* With the mprotect tracker, system calls that write into heap memory
 * (read(2), recv(2)) fail with EFAULT on pages not written since the last
 * commit: call mmh_touch on the range first.  That tracker installs a
 * SIGSEGV handler that passes faults outside heaps to the previous handler;
 * a handler the program installs later takes over until the next mmh_open.
 * With the uffd tracker (and untracked heaps) mmh_touch does nothing. */
int mmh_touch(mmh_heap *h, void *p, size_t len);
int mmh_stats(mmh_heap *h, struct mmh_stats *out);

const char *mmh_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* MMHEAP_H */
