/** @file mmheap.h
 * @brief mmheap: heaps in memory-mapped regions.
 *
 * One arena allocator for persistent heaps in files, for anonymous heaps
 * (a drop-in malloc) and for fork-based snapshots.  mmheap(3) is the
 * manual; this header states each function's contract.
 *
 * Errors.  A function that fails returns NULL or -1 (the exceptions are
 * stated) and sets errno to a standard code; mmh_errmsg() then returns a
 * human-readable reason for the calling thread's last failure, naming the
 * file, pointer or argument at fault.  The codes listed for a function are
 * the ones the library chooses; where a system call fails, its own errno
 * is passed on (for example EACCES from open(2), EIO from fdatasync(2)),
 * and the reason names the file and the call.  A function given a NULL
 * heap fails with EINVAL, unless its description says otherwise.  Read
 * errno and the reason only after a failure: a success does not clear
 * them, and may change them (a failure the call recovered from).
 *
 * Threads.  Every function is thread-safe, except that mmh_close() must not
 * overlap any other use of its heap, and that mmh_commit(),
 * mmh_commit_bg() and mmh_snapshot() are quiescent points: while one runs,
 * no other thread may allocate from, free into or store into that heap
 * (the program arranges this, as it must anyway for its own data to be
 * consistent).  mmh_checkpoint() needs no quiescent point.  A writable
 * private file heap has a thread of the library's own, its checkpointer,
 * which mmh_open() starts with every signal blocked and mmh_close() stops.
 *
 * fork().  A program may fork(2) at any time: the library holds its heap
 * locks across the fork, so the child finds every heap consistent, and
 * only the forking thread's slots stay owned there.  A file heap commits
 * only in the process that opened it: in the child, mmh_commit(),
 * mmh_commit_bg() and mmh_checkpoint() fail with EPERM, and mmh_close()
 * only unmaps.  Every heap but an #MMH_SHARED one is the child's own copy
 * (copy-on-write); an #MMH_SHARED heap is not copied: both processes map
 * the same pages, so the child must not allocate from or free into it
 * while the parent uses it.
 *
 * ABI.  Versions 0.x may change it without notice: struct mmh_stats, for
 * one, lost its reserved dirty_pages field (always 0), which moved every
 * field after it.  Rebuild programs against the header they run with.
 */
#ifndef MMHEAP_H
#define MMHEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MMHEAP_VERSION_MAJOR 0 /**< major version of this header */
#define MMHEAP_VERSION_MINOR 1 /**< minor version of this header */

/** @defgroup config Configuration
 * How a heap is opened: its backing, its mapping, its size and its tracker.
 * @{ */

/** An open heap: the handle every function takes.  Opaque. */
typedef struct mmh_heap mmh_heap;

/** How a writable file heap finds the pages written since its last commit
 * (anonymous, volatile and read-only heaps are not tracked). */
typedef enum {
    MMH_TRACK_AUTO = 0, /**< uffd where the kernel supports it, else mprotect;
                             only a lasting answer (no kernel support, EPERM
                             by policy) makes it fall back */
    MMH_TRACK_UFFD,     /**< userfaultfd asynchronous write-protect and
                             PAGEMAP_SCAN (Linux 6.7+): no signal handler,
                             and writes by the kernel (read(2) into the heap)
                             are tracked too */
    MMH_TRACK_MPROTECT, /**< mprotect(2) and a SIGSEGV handler: portable;
                             system calls that write into the heap need
                             mmh_touch() first */
    MMH_TRACK_NONE      /**< no tracking: each commit writes every in-use
                             range of the heap */
} mmh_tracker;

/** Flags of mmh_config::flags, ORed.  A file opened without #MMH_SHARED is
 * mapped MAP_PRIVATE: nothing reaches it before a commit. */
enum {
    MMH_CREATE   = 1u << 0, /**< create the file if it does not exist (built
                                 unnamed, synced, then linked into place) */
    MMH_EXCL     = 1u << 1, /**< with #MMH_CREATE: fail with EEXIST if the
                                 file exists; no effect without it */
    MMH_SHARED   = 1u << 2, /**< map the file MAP_SHARED: stores reach the
                                 page cache at once; a commit starts
                                 write-back of the ranges written since the
                                 last one and syncs the file: durable, not
                                 atomic */
    MMH_READONLY = 1u << 3, /**< map read-only; allocating, freeing, setting
                                 the root and committing fail with EROFS */
    MMH_RELOCATE = 1u << 4, /**< if the address range recorded in the file is
                                 taken, map the heap elsewhere instead of
                                 failing with EADDRINUSE (raw pointers stored
                                 in it then point to the old place) */
    MMH_VOLATILE = 1u << 5, /**< start from an existing file (a snapshot
                                 image), mapped copy-on-write and never
                                 written back: the heap is volatile like an
                                 anonymous one (mmh_commit() fails with
                                 EINVAL; mmh_snapshot() saves it) */
    MMH_HUGEPAGES = 1u << 6, /**< anonymous heaps: ask for transparent huge
                                 pages (MADV_HUGEPAGE).  A fork, the pause of
                                 mmh_snapshot(), copies one page-table entry
                                 per huge page instead of 512 (1 GiB: under
                                 1 ms instead of about 10); copy-on-write
                                 stays per 4 KiB page, but splits the huge
                                 pages written during a job until the kernel
                                 merges them again (khugepaged: minutes).
                                 Costs memory: a touched 2 MiB range is
                                 resident whole. */
};

/** What mmh_open() is to open.  Zero means the default in every field, so
 * `{ 0 }`, or a NULL pointer, gives the defaults.  Every field is checked
 * even when an existing file is opened, whose header then decides the
 * sizes and the base. */
typedef struct mmh_config {
    size_t      size;     /**< initial size of a new heap (its file, or its
                               mapped memory), rounded up to 4 MiB; 0 = 4 MiB;
                               ignored for an existing file */
    size_t      max_size; /**< address space reserved, rounded up to 4 MiB:
                               the limit the heap grows to; 0 = 1 TiB (64 GiB
                               under valgrind, slow to map large ranges), at
                               most 2 TiB.  An existing file keeps the limit
                               it records when this is 0 or smaller; a
                               larger one raises it (see mmh_grow()) */
    unsigned    flags;    /**< MMH_* flags, ORed */
    mmh_tracker tracker;  /**< dirty tracking of a writable file heap
                               (ignored for others); one the system cannot
                               provide fails with ENOTSUP */
    void       *base;     /**< address of a new heap, 4 MiB aligned; NULL =
                               a random one chosen by the library; ignored
                               for an existing file */
    unsigned    mode;     /**< permission bits of a created file (the umask
                               applies); 0 = 0600 */
} mmh_config;

/** @} */

/** @defgroup open Opening and closing
 * A heap is opened on a file or on anonymous memory, and closed once.
 * @{ */

/** Open the heap file @p path, or make a new anonymous heap.
 *
 * An existing file is checked before anything in it is trusted, mapped at
 * the address it records (so raw pointers stored in it stay valid), and
 * the commits of its write-ahead log (path.wal) that are not yet in the
 * file are laid over the mapping.  A writable open takes an exclusive
 * flock(2) on the file; #MMH_READONLY and #MMH_VOLATILE opens take a
 * shared one.  A writable private file heap starts its checkpoint thread.
 *
 * @param[in] path the heap file; NULL for an anonymous heap (volatile
 *            memory, which only #MMH_RELOCATE and #MMH_HUGEPAGES apply to).
 * @param[in] cfg  how to open it; NULL for the defaults.  Not kept.
 * @return the heap, or NULL on error with errno set:
 *   - EINVAL: an unknown flag or tracker; flags that do not go together
 *     (#MMH_SHARED, #MMH_READONLY, #MMH_CREATE, #MMH_EXCL or #MMH_VOLATILE
 *     without a path, #MMH_HUGEPAGES with one, #MMH_VOLATILE with
 *     #MMH_SHARED, #MMH_READONLY or #MMH_CREATE, #MMH_READONLY with
 *     #MMH_CREATE); a @p cfg->base that is not 4 MiB aligned or whose
 *     reservation leaves the user address space; a size or max_size above
 *     2 TiB, or a size larger than max_size; an empty @p path; a file that
 *     is empty, not a regular file, not a heap (bad magic) or made with
 *     another page size.
 *   - ENOENT: @p path does not exist and #MMH_CREATE was not given; or the
 *     heap names its log and path.wal is missing (the commits since the
 *     last checkpoint are in it: put it back).
 *   - EEXIST: #MMH_CREATE | #MMH_EXCL and @p path exists.
 *   - EBUSY: another open holds the file's lock: a writer, or, when this
 *     open is writable, any open.
 *   - EADDRINUSE: the address range the file records (or @p cfg->base) is
 *     taken, or a larger @p cfg->max_size needs a range after it that is
 *     taken (the reason names it), and #MMH_RELOCATE was not given.
 *   - EBADMSG: the file is truncated or corrupt (shorter than its header
 *     or than the size it records, a header checksum mismatch, a bad
 *     layout, a base whose reservation leaves the user address space,
 *     damaged allocator metadata: the reason names the first problem and
 *     its offset); or path.wal has no valid header, or is not this heap's
 *     log (made for another heap file, or another generation of it).
 *   - EPROTONOSUPPORT: a format version newer than this library's, or a
 *     pre-release one (1 to 3).
 *   - EFBIG: a larger @p cfg->max_size than a heap made by an earlier
 *     release (format 5) has room to record (the limit it was made with).
 *   - EAGAIN: a file of format 4 whose redo journal (path.journal) still
 *     holds a commit not in the file (open it once with the release that
 *     wrote it); an #MMH_READONLY or #MMH_VOLATILE open of a heap whose
 *     log's last commit grew it past the file's end, or an
 *     #MMH_SHARED | #MMH_READONLY open of a heap whose log holds commits
 *     not yet in the file (open it writable once); the file kept being
 *     replaced between its open and its lock; the system refused, for
 *     now, a thread for the checkpoints or the uffd tracker's setup.
 *   - ENOMEM: out of memory or of address space; or, creating a heap, a
 *     full disk (ENOSPC) or the RLIMIT_FSIZE limit while sizing the file.
 *   - ENOSPC, EDQUOT: no room to write a new heap's first state, or to make
 *     its log (zero-filled when made), or, in a writable #MMH_SHARED open,
 *     to checkpoint the log into the heap file.
 *   - ELOOP: path.wal is a symbolic link.
 *   - EPERM: path.wal is not a regular file, has more than one link,
 *     belongs to another user than the heap file's owner, or gives access
 *     the heap file does not.
 *   - ENOTSUP: the tracker asked for is not available on this system.
 *   - EMFILE, ENFILE: more than 256 heaps open with the mprotect tracker,
 *     or out of file descriptors.
 *   - Errors of the system calls (open(2), flock(2), pread(2),
 *     ftruncate(2), mmap(2), fallocate(2), write(2), fdatasync(2),
 *     userfaultfd(2)) pass on as they are: EACCES, EROFS (a writable open
 *     on a read-only file system), EIO, ...
 *
 * Thread-safe.
 */
mmh_heap *mmh_open(const char *path, const mmh_config *cfg);

/** Close a heap.
 *
 * Waits for the heap's background job, commits a writable file heap
 * (private or shared), stops its checkpoint thread and checkpoints what the
 * log still holds into the heap file, then unmaps the heap and frees @p h.
 * Anonymous, read-only and volatile heaps are only unmapped, and so is a
 * file heap in a process forked after the open.  A failure of the last
 * checkpoint is not reported: the commits are durable in the log, and the
 * next open applies them.
 *
 * @param[in] h the heap.  Invalid afterwards, even on error, and so is
 *            every pointer into the heap.
 * @return 0 on success, -1 on error with errno set; the heap is closed all
 *         the same, and its file keeps its last completed commit:
 *   - EINVAL: @p h is NULL.
 *   - any error of mmh_commit(): the closing commit failed.
 *   - the error of the last background job (EIO if it died), when it
 *     failed and mmh_wait() never reported it.
 *
 * Not thread-safe: no other thread may use @p h while or after it runs.
 */
int mmh_close(mmh_heap *h);

/** The process's default anonymous heap, made at the first call with
 * 1 TiB of address space reserved (none of it used until needed).
 *
 * In libmmheap-malloc.so it is the heap malloc(3) and operator new draw
 * from, so a program can mmh_snapshot() its whole malloc heap.  The
 * MMHEAP_OPTIONS environment variable configures it (see
 * mmheap-malloc(3)).  Do not close it.
 *
 * @return the heap, or NULL on error with errno set:
 *   - ENOMEM: the heap cannot be made (out of memory or address space).
 *
 * Thread-safe.
 */
mmh_heap *mmh_default_heap(void);

/** Raise the heap's limit to @p new_max_size by extending its reservation
 * in place: the heap never moves, so the address range after the current
 * reservation must be free.  The new limit is recorded in the file at the
 * next commit; a heap reopened before that keeps the old one.  Reopening
 * with a larger mmh_config::max_size does the same at the open (and can
 * relocate the heap, with #MMH_RELOCATE, where the range is taken).
 *
 * @param[in] h            the heap.
 * @param[in] new_max_size the new limit, rounded up to 4 MiB; at most
 *                         2 TiB.  One no larger than the current limit
 *                         changes nothing and succeeds.
 * @return 0 on success, -1 on error with errno set:
 *   - EINVAL: @p h is NULL, or @p new_max_size is above 2 TiB or leaves the
 *     user address space.
 *   - EROFS: the heap was opened #MMH_READONLY.
 *   - EADDRINUSE: part of the range after the reservation is taken; the
 *     reason names the range.
 *   - EFBIG: the heap was made by an earlier release (format 5), whose
 *     segment map has no room past the limit it was made with.
 *   - ENOMEM: the kernel refused the reservation (out of memory for its
 *     mappings).
 *
 * Thread-safe; it may run while other threads allocate.
 */
int mmh_grow(mmh_heap *h, size_t new_max_size);

/** The open heap whose reservation holds @p p: how code that holds only a
 * pointer into a heap (an allocator stored in the heap, for one) finds the
 * handle again in a new process.
 *
 * @param[in] p any address.
 * @return the heap, or NULL (errno untouched) when no heap open in this
 *         process reserves @p p.  O(1) when the thread asked about the same
 *         heap last, O(log heaps) otherwise.
 *
 * Thread-safe.  The handle is valid until the heap is closed.
 */
mmh_heap *mmh_heap_of(const void *p);

/** @} */

/** @defgroup alloc Allocation
 * Blocks from a heap, as malloc(3) and friends give them.
 *
 * Blocks are aligned to 16 bytes.  Each thread allocating from a heap holds
 * one of its slots, and allocates and frees in its own pages without
 * locks; every function here is thread-safe.  Invalid pointers (outside
 * the heap, misaligned, in free memory or metadata, interior) are detected
 * where it is cheap and rejected with EINVAL, the heap untouched.
 * @{ */

/** Allocate a block.
 *
 * @param[in] h    the heap.
 * @param[in] size bytes wanted; 0 gives a unique 16-byte block.
 * @return the block, or NULL on error with errno set:
 *   - EINVAL: @p h is NULL.
 *   - EROFS: the heap was opened #MMH_READONLY.
 *   - ENOMEM: @p size is larger than the heap's max_size; the heap cannot
 *     grow past max_size; growing the file would pass the RLIMIT_FSIZE
 *     limit; out of memory; a full disk (ENOSPC) while growing the file or
 *     giving freed memory taken again its disk blocks (shared heaps, and
 *     private ones on tmpfs or hugetlbfs).
 *   - Errors of growing the heap (ftruncate(2), fallocate(2): EDQUOT when
 *     over quota, EIO; mmap(2); the tracker's mprotect(2) or userfaultfd(2)
 *     calls) pass on as they are.
 */
void *mmh_alloc(mmh_heap *h, size_t size);

/** Allocate a block of @p n times @p size bytes, set to zero.
 *
 * @param[in] h    the heap.
 * @param[in] n    number of elements.
 * @param[in] size bytes of each.
 * @return the block, or NULL on error with errno set:
 *   - ENOMEM: @p n * @p size overflows (checked first).
 *   - any error of mmh_alloc().
 */
void *mmh_calloc(mmh_heap *h, size_t n, size_t size);

/** Change the size of a block, keeping its contents up to the lesser of the
 * two sizes; the block may move.  Large blocks grow and shrink in place
 * where the neighbouring memory allows.
 *
 * @param[in] h    the heap.
 * @param[in] p    a block of @p h; NULL: the call is mmh_alloc(h, size).
 * @param[in] size the new size; 0 frees @p p and returns NULL, with
 *                 mmh_free()'s errors.
 * @return the block, or NULL on error with errno set, @p p left as it was:
 *   - EINVAL: @p h is NULL, or @p p is not the start of a live block of it.
 *   - EROFS: the heap was opened #MMH_READONLY and the block would change
 *     (one that already fits @p size is returned as it is).
 *   - any error of mmh_alloc().
 */
void *mmh_realloc(mmh_heap *h, void *p, size_t size);

/** Allocate a block aligned to @p align.
 *
 * @param[in] h     the heap.
 * @param[in] align a power of two.
 * @param[in] size  bytes wanted.
 * @return the block, or NULL on error with errno set:
 *   - EINVAL: @p align is not a power of two (checked first), or @p h is
 *     NULL.
 *   - any error of mmh_alloc().
 */
void *mmh_aligned_alloc(mmh_heap *h, size_t align, size_t size);

/** Free a block.
 *
 * Returns nothing: on error it sets errno and the reason, and otherwise
 * leaves errno alone.  A double free is detected for the block its page
 * freed last (as glibc and mimalloc detect it); an older block freed twice
 * is not, and mmheap(1) check reports the damage it leaves.
 *
 * @param[in] h the heap.
 * @param[in] p a block of @p h, or NULL (then nothing happens).
 *
 * @par Errors (errno)
 *   - EINVAL: @p h is NULL; @p p is not the start of a live block of @p h;
 *     or @p p is the block its page freed last (a double free).
 *   - EROFS: the heap was opened #MMH_READONLY.
 */
void mmh_free(mmh_heap *h, void *p);

/** The number of bytes block @p p can hold, which may exceed the size asked
 * for.
 *
 * @param[in] h the heap.
 * @param[in] p a block of @p h.
 * @return the size; 0 for a NULL @p h or @p p, without an error; 0 with
 *         errno set on error:
 *   - EINVAL: @p p is not the start of a live block of @p h.
 */
size_t mmh_usable_size(mmh_heap *h, const void *p);

/** @} */

/** @defgroup root The root and offsets
 * How a program finds its data in a heap again, and handles that survive
 * relocation.  Thread-safe.
 * @{ */

/** The heap's root: the pointer a program finds its data from after
 * reopening the file, recorded in the header.
 *
 * @param[in] h the heap.
 * @return the root; NULL until it is set (errno untouched); NULL with
 *         errno set on error:
 *   - EINVAL: @p h is NULL.
 */
void *mmh_root(mmh_heap *h);

/** Set the heap's root.  Like everything else, it becomes durable at the
 * next commit.
 *
 * @param[in] h the heap.
 * @param[in] p a pointer into the heap (normally a block), or NULL to clear
 *            the root.
 * @return 0 on success, -1 on error with errno set:
 *   - EINVAL: @p h is NULL, or @p p lies outside the heap's current size
 *     or in its first 64 KiB (the header and metadata).
 *   - EROFS: the heap was opened #MMH_READONLY.
 */
int mmh_set_root(mmh_heap *h, void *p);

/** The position of @p p in the heap, counted from its base: a handle that
 * stays valid when the heap is mapped elsewhere (#MMH_RELOCATE).  0 stands
 * for NULL: no block lies at offset 0.
 *
 * @param[in] h the heap.
 * @param[in] p a pointer into the heap.
 * @return the offset; 0 for a NULL @p h or @p p, without an error; 0 with
 *         errno set on error:
 *   - EINVAL: @p p lies outside the heap's current size.
 */
uint64_t mmh_offset(mmh_heap *h, const void *p);

/** The pointer at offset @p off of the heap: mmh_offset() undone.
 *
 * @param[in] h   the heap.
 * @param[in] off an offset from mmh_offset(), or 0.
 * @return the pointer; NULL for a NULL @p h or an @p off of 0, without an
 *         error; NULL with errno set on error:
 *   - EINVAL: @p off lies outside the heap's current size.
 */
void *mmh_at(mmh_heap *h, uint64_t off);

/** @} */

/** @defgroup names Names
 * A table in the heap from names to blocks, for programs that find more
 * than one object again after reopening (the root is the unnamed one).
 * It lives in the heap and commits with it: after a crash, the names are
 * those of the last completed commit.  A name is any NUL-terminated string
 * of at most #MMH_NAME_MAX bytes (the NUL not counted); a lookup costs
 * O(1), whatever the number of names.  Freeing a named block does not
 * remove its name: remove the name first.  Thread-safe.
 * @{ */

/** The longest name, in bytes, without its NUL. */
#define MMH_NAME_MAX 255

/** Give the block @p p the name @p name, replacing the block it named
 * before, or remove the name.  Like everything else, it becomes durable at
 * the next commit.
 *
 * @param[in] h    the heap.
 * @param[in] name the name: at most #MMH_NAME_MAX bytes.
 * @param[in] p    a block of @p h (as mmh_alloc() returned it), or NULL to
 *                 remove the name.
 * @return 0 on success (removing a name that is not there succeeds too),
 *         -1 on error with errno set:
 *   - EINVAL: @p h or @p name is NULL, or @p p is not a block of @p h.
 *   - ENAMETOOLONG: @p name is longer than #MMH_NAME_MAX bytes.
 *   - EROFS: the heap was opened #MMH_READONLY.
 *   - ENOMEM: the heap is full (the table and each name take heap memory).
 *   - EDEADLK: called from mmh_name_each()'s callback.
 *   - EBADMSG: the table is damaged (mmheap check reports where).
 */
int mmh_name_set(mmh_heap *h, const char *name, void *p);

/** The block named @p name.
 *
 * @param[in] h    the heap.
 * @param[in] name the name.
 * @return the block, or NULL with errno set:
 *   - ENOENT: no block has that name.
 *   - EINVAL: @p h or @p name is NULL.
 *   - ENAMETOOLONG: @p name is longer than #MMH_NAME_MAX bytes.
 *   - EBADMSG: the table is damaged (mmheap check reports where).
 */
void *mmh_name_get(mmh_heap *h, const char *name);

/** Call @p fn for every name, in no particular order, with the block it
 * names and @p arg.  @p fn may look names up with mmh_name_get() but not
 * set or remove them (that fails with EDEADLK); the name it gets is valid
 * only during the call.
 *
 * @param[in] h   the heap.
 * @param[in] fn  the callback; a nonzero return stops the walk.
 * @param[in] arg passed to @p fn.
 * @return 0 when every name was visited; @p fn's nonzero return when it
 *         stopped the walk; -1 on error with errno set:
 *   - EINVAL: @p h or @p fn is NULL.
 *   - EBADMSG: the table is damaged (mmheap check reports where).
 */
int mmh_name_each(mmh_heap *h, int (*fn)(const char *name, void *p, void *arg), void *arg);

/** @} */

/** @defgroup persist Persistence
 * Commits make a file heap's changes durable; checkpoints copy them from
 * the log into the heap file.
 *
 * Nothing a private heap does reaches its file before a commit.  A commit
 * appends the pages written since the last one to the write-ahead log
 * beside the heap file (path.wal) and syncs it once: atomic and durable,
 * after a crash at any instant, power loss included.  A shared heap's
 * commit syncs the written ranges of the file: durable, not atomic.  The
 * first failed write or sync of the log (or, shared, of the file) is final:
 * that commit and every later one fail with its error, since a retried
 * sync may report success for lost writes.  A full disk (ENOSPC, EDQUOT) is
 * the exception: the commit fails, and the next one tries again.
 * @{ */

/** Make the current state of a file heap durable.
 *
 * Waits for a running background job first.  Costs the pages written since
 * the previous commit, not the heap's size.
 *
 * @param[in] h the heap.
 * @return 0 on success, -1 on error with errno set; the heap keeps its last
 *         completed commit:
 *   - EINVAL: @p h is NULL, or the heap has no file to commit to
 *     (anonymous, or #MMH_VOLATILE: mmh_snapshot() saves those).
 *   - EROFS: the heap was opened #MMH_READONLY.
 *   - EPERM: the caller is a process that fork(2) made after the heap was
 *     opened: only the process that opened it commits.
 *   - ESTALE: the heap's path no longer names its file (another file was
 *     renamed over it, or it was removed).
 *   - EFBIG: this commit would take the log past the RLIMIT_FSIZE limit.
 *     Not final.
 *   - ENOSPC, EDQUOT: the disk is full: appending to the log failed, or
 *     the log is full and the checkpoint that makes room in it failed.  Not
 *     final: the next commit writes this one's pages too.
 *   - ENOMEM: out of memory for the commit's head (not final), or for its
 *     list of written ranges (final: the written pages it would have
 *     listed are lost to commits).
 *   - EIO, or another error of write(2) or fdatasync(2): writing or syncing
 *     the log (shared: syncing the heap file) failed.  Final: every later
 *     commit fails with the same error, the reason saying that an earlier
 *     commit failed.
 *   - an error of the tracker collecting the written pages (PAGEMAP_SCAN,
 *     mprotect(2)), or EIO for a corrupt segment map.  Final.
 *   - the error of a stopped checkpoint: a checkpoint failed to write or
 *     sync the heap file (or the log's header) with an error other than a
 *     full disk.  Every commit is durable in the log, and the next open
 *     applies it, but this commit and every later one fail with that error.
 *
 * A quiescent point: no other thread may allocate from, free into or store
 * into @p h while it runs.
 */
int mmh_commit(mmh_heap *h);

/** Copy every commit still only in the heap's write-ahead log into the
 * heap file and sync it, now.
 *
 * The checkpoint thread does this in the background anyway (when half of
 * the log is in use or a commit has waited two seconds), and mmh_close()
 * does it last; this bounds the next open's work, or has the file itself
 * hold the last commit.  It reads the log, not the heap's memory.  The
 * commit of a background job that is still running, or not yet reaped,
 * goes in with a later checkpoint.
 *
 * @param[in] h the heap.
 * @return 0 on success, also when there is nothing to checkpoint or the
 *         heap has no log (shared, anonymous, read-only, volatile); -1 on
 *         error with errno set.  Nothing is lost: the commits stay in the
 *         log.  Any failure but a full disk is final: checkpoints stop,
 *         and every later call and every later commit fail with its error.
 *   - EINVAL: @p h is NULL.
 *   - EPERM: the caller is a process that fork(2) made after the heap was
 *     opened.
 *   - ENOSPC, EDQUOT: no room in the heap file.  Not final: the checkpoint
 *     thread retries a second later.
 *   - EFBIG: a page lies past the RLIMIT_FSIZE limit.
 *   - EIO, or another error of pread(2), write(2), ftruncate(2) or
 *     fdatasync(2): reading the log, or writing, extending or syncing the
 *     heap file, or writing and syncing the log's header, failed.
 *
 * Thread-safe; needs no quiescent point.
 */
int mmh_checkpoint(mmh_heap *h);

/** @} */

/** @defgroup jobs Background jobs and snapshots
 * Work done by a forked child on a copy-on-write view of the heap.
 *
 * mmh_commit_bg() and mmh_snapshot() fork a child that works on the heap as
 * it is at the call, and return as soon as the child runs: the caller's
 * pause is the fork.  Everything that needs memory is prepared before the
 * fork, and the child uses only async-signal-safe calls, so the program
 * may be multithreaded; the fork runs no pthread_atfork(3) handlers.  The
 * child reports through a pipe, not its exit status, so a program that
 * reaps every child itself does not lose the result.  A heap runs one job
 * at a time: starting another, mmh_commit() and mmh_close() wait for the
 * running one.  Both calls are quiescent points, like mmh_commit().
 * @{ */

/** Commit a private file heap in a background job: atomic like
 * mmh_commit().
 *
 * The parent decides the commit's place in the log before the fork; the
 * child appends it and syncs the log.  A job that fails or dies loses
 * nothing: the next commit writes its pages again.  The job's own errors
 * (appending to and syncing the log, EIO when the child died) are
 * reported by mmh_wait().
 *
 * @param[in] h the heap.
 * @return 0 once the child runs, -1 on error with errno set:
 *   - EINVAL: @p h is NULL; the heap is #MMH_SHARED (a shared mapping has
 *     no copy-on-write: use mmh_commit()); or it has no file to commit to
 *     (anonymous, #MMH_VOLATILE).
 *   - EROFS, EPERM, ESTALE, EFBIG, ENOMEM: as for mmh_commit(); so are the
 *     errors of a full log whose checkpoint fails, of an earlier final
 *     failure, and of a stopped checkpoint.
 *   - EAGAIN, ENOMEM, EMFILE, ENFILE: no process or pipe for the job
 *     (fork(2), pipe2(2)).
 */
int mmh_commit_bg(mmh_heap *h);

/** Write the whole heap to @p path in a background job, as an ordinary heap
 * file.
 *
 * mmh_open() maps the image again with every pointer intact, or
 * #MMH_VOLATILE starts a new volatile heap from it.  The image is written
 * to an unnamed file, synced, renamed over @p path and the directory
 * synced, so a crash leaves any earlier image at @p path whole.  It is
 * sparse, has mode 0600 and an identity of its own, and names no log.
 * Anonymous, private, read-only and volatile heaps can be saved (a
 * volatile one even over the file it was opened from).  The job's own
 * errors (writing, syncing, linking and renaming the image; EBUSY when a
 * writer opened @p path meanwhile; EIO when the child died) are reported by
 * mmh_wait().
 *
 * @param[in] h    the heap.
 * @param[in] path where the image goes.  Copied.
 * @return 0 once the child runs, -1 on error with errno set:
 *   - EINVAL: @p h is NULL; @p path is NULL or empty; the heap is
 *     #MMH_SHARED (no copy-on-write); or @p path names the heap's own file
 *     (mmh_commit_bg() commits it).
 *   - EBUSY: a writer has the file at @p path open.
 *   - ENOMEM: out of memory for the job.
 *   - EAGAIN, ENOMEM, EMFILE, ENFILE: no process or pipe for the job.
 *   - EIO: the heap's segment map is corrupt.
 *   - errors of opening @p path, or of creating the image beside it
 *     (open(2): EACCES, ENOENT, ENOSPC, ...) pass on as they are.
 */
int mmh_snapshot(mmh_heap *h, const char *path);

/** The result of the heap's background job, once.
 *
 * Each job's result is reported once.  If mmh_commit() reaped a finished
 * job, mmh_wait() still returns its result; a result not yet reported when
 * another job starts is replaced by that job's once it is reaped.
 *
 * @param[in] h      the heap.
 * @param[in] nohang nonzero: return 1 at once if the job still runs;
 *                   0: wait for it.
 * @return 0 if the job succeeded; 1 if it still runs (@p nohang); -1 on
 *         error with errno set:
 *   - EINVAL: @p h is NULL.
 *   - ECHILD: no job result to report (none was started since the last
 *     one was reported; a process forked from the heap's owner does not
 *     see the owner's job).
 *   - the job's error, with the child's reason in mmh_errmsg(): a commit's
 *     in appending to or syncing the log, a snapshot's in writing its
 *     image, or EIO when the child died or was killed.
 */
int mmh_wait(mmh_heap *h, int nohang);

/** @} */

/** @defgroup tracking Dirty tracking
 * Which pages a commit writes: see #mmh_tracker.
 * @{ */

/** Prepare the range [@p p, @p p + @p len) of the heap for writes by the
 * kernel.
 *
 * With the mprotect tracker, system calls that write into heap memory
 * (read(2), recv(2)) fail with EFAULT on pages not written since the last
 * commit: call mmh_touch() on the range first, which marks its pages
 * written and makes them writable.  That tracker's SIGSEGV handler passes
 * faults outside heaps to the previous handler; a handler the program
 * installs later takes over until the next mmh_open() of a tracked heap.
 * With any other tracker, or an untracked heap, it does nothing.
 *
 * @param[in] h   the heap.
 * @param[in] p   start of the range.
 * @param[in] len its length; 0 does nothing.
 * @return 0 on success, -1 on error with errno set:
 *   - EINVAL: @p h is NULL, or the range does not lie inside the heap.
 *   - ENOMEM, or another error of mprotect(2): the mprotect tracker could
 *     not make the pages writable (ENOMEM: too many mappings, see
 *     vm.max_map_count).
 *
 * Thread-safe.
 */
int mmh_touch(mmh_heap *h, void *p, size_t len);

/** @} */

/** @defgroup stats Statistics
 * Sizes and counters of an open heap, since it was opened.
 * @{ */

/** What mmh_stats() reports. */
struct mmh_stats {
    uint64_t    base;            /**< address the heap is mapped at */
    uint64_t    size;            /**< bytes of the heap in use: its file's
                                      size, or an anonymous heap's mapped
                                      memory */
    uint64_t    max_size;        /**< bytes of address space reserved */
    uint64_t    allocated;       /**< bytes in live blocks, at their usable
                                      sizes */
    uint64_t    allocations;     /**< live blocks */
    uint64_t    free_bytes;      /**< bytes in free spans and free segments
                                      inside size */
    uint64_t    used_bytes;      /**< bytes in pages of small blocks, in
                                      large blocks and in the spans threads
                                      keep for their next ones: size less
                                      free space and metadata */
    uint64_t    used_peak;       /**< most used_bytes since the heap was
                                      opened */
    uint64_t    purged_bytes;    /**< free memory handed back to the system
                                      (MADV_DONTNEED, or a hole punched in
                                      a shared file) since the heap was
                                      opened */
    uint64_t    faults;          /**< mprotect tracker: write faults taken;
                                      uffd tracker: written pages found,
                                      summed at each commit; 0 when
                                      untracked */
    uint64_t    commits;         /**< completed commits since open,
                                      background ones included */
    uint64_t    bytes_written;   /**< bytes commits wrote (private: heads and
                                      pages appended to the log; shared: the
                                      ranges written back), background ones
                                      included; a heap mmh_open() just
                                      created starts with its first state's;
                                      checkpoints are not counted */
    uint64_t    last_commit_ns;  /**< duration of the last commit, in ns
                                      (background: the job's duration) */
    uint64_t    last_commit_time;/**< when the last commit completed:
                                      CLOCK_REALTIME, in ns */
    uint64_t    cow_pages;       /**< pages copied on write while the last
                                      background job ran (its memory cost) */
    uint64_t    last_fork_ns;    /**< pause of the last mmh_commit_bg() or
                                      mmh_snapshot() call (ends at the fork),
                                      in ns */
    uint64_t    last_job_ns;     /**< duration of the last finished job, in
                                      ns */
    uint64_t    last_job_bytes;  /**< bytes the last finished job wrote */
    uint64_t    jobs;            /**< background jobs finished and reaped,
                                      successful or not */
    uint64_t    jobs_failed;     /**< of those, the failed ones */
    int         job_running;     /**< 1 from the start of a job until it is
                                      reaped (by mmh_wait(), the next commit
                                      or job, or mmh_close()), else 0 */
    mmh_tracker tracker;         /**< tracker in use: #MMH_TRACK_AUTO
                                      resolved, #MMH_TRACK_NONE when
                                      untracked */
    unsigned    flags;           /**< MMH_* flags the heap was opened with */
    uint32_t    slots;           /**< thread slots the heap has: tables of
                                      1,024, one added whenever threads
                                      would hold all but 16 (kept for
                                      shared use), up to 262,144 */
    uint32_t    threads_bound;   /**< threads holding a slot of their own
                                      in the heap now */
};

/** Fill @p out with the heap's statistics.
 *
 * The block counts are read from the pages while other threads may be
 * changing them: exact only when no other thread allocates or frees.
 *
 * @param[in]  h   the heap.
 * @param[out] out where the statistics go.
 * @return 0 on success, -1 on error with errno set:
 *   - EINVAL: @p h or @p out is NULL.
 *
 * Thread-safe.
 */
int mmh_stats(mmh_heap *h, struct mmh_stats *out);

/** Walk every structure of the open heap, block lists included, as
 * `mmheap check` walks a file.
 *
 * Costs a read of every page that holds blocks: meant for tests and
 * debugging, not for every commit.  The test suite of a debug build
 * (configure --enable-debug) calls it at every quiescent point it has.
 *
 * @param[in] h the heap.
 * @return 0 if the heap is sound, -1 on error with errno set:
 *   - EINVAL: @p h is NULL.
 *   - EBADMSG: the heap is damaged (a store through a stray pointer, or a
 *     bug of the library); mmh_errmsg() names the first problem and its
 *     heap offset.
 *
 * A quiescent point: no other thread may allocate from or free into @p h
 * meanwhile.
 */
int mmh_check(mmh_heap *h);

/** @} */

/** @defgroup errors Errors
 * The reason for the last failure, beside errno.
 * @{ */

/** A human-readable reason for the calling thread's last failure, naming
 * the file and the problem (for example "data.heap: corrupt heap file:
 * header checksum mismatch").
 *
 * @return the reason: thread-local, at most 255 bytes, never NULL; "no
 *         error" before the thread's first failure.  Overwritten by the
 *         thread's next failure, and not cleared by a success (nor is
 *         errno, which is meaningful only after a failure).
 *
 * Thread-safe.
 */
const char *mmh_errmsg(void);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MMHEAP_H */
