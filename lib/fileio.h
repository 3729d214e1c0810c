/* File I/O (fileio.c: whole reads and writes, syncs, heap images) and the
 * files opened or created beside a heap (fileopen.c). */
#ifndef MMH_FILEIO_H
#define MMH_FILEIO_H

#include "internal.h"
#include "ranges.h"

MMH_HIDDEN int mmh_pwrite_all(int fd, const void *buf, size_t len, size_t off);
MMH_HIDDEN int mmh_pread_all(int fd, void *buf, size_t len, size_t off);
struct iovec;
MMH_HIDDEN ssize_t mmh_pwritev(int fd, const struct iovec *iov, int n, off_t off);
MMH_HIDDEN int mmh_io_failed(mmh_heap *h, const char *what, const char *file, size_t off);
/* A complete heap file in fd, synced (see there); *written: heap bytes. */
MMH_HIDDEN int mmh_image_write(mmh_heap *h, int fd, const char *file, const mmh_range *ranges,
                               size_t n, const mmh_hdr *hdr, uint64_t *written);
MMH_HIDDEN char *mmh_dir_of(const char *path);
MMH_HIDDEN const char *mmh_base_name(const char *path);
MMH_HIDDEN int   mmh_sync_dir(const char *dir, const char *file);
MMH_HIDDEN int   mmh_sync_parent_dir(const char *path);


/* fileopen.c: files opened or created beside a heap (see there). */
/* path opened with flags, refused (EINVAL) unless a regular file; never
 * blocks on a FIFO.  An fd, or -1 with a message. */
MMH_HIDDEN int mmh_open_regular(const char *path, int flags);
/* The companion file path of the heap file heap_fd (named heap): O_RDONLY
 * or O_RDWR, with O_CREAT to create it.  -1 with errno ENOENT and no
 * message when absent and not created; ELOOP, EPERM or another errno with
 * a message when refused.  *created: this call made it. */
MMH_HIDDEN int mmh_open_companion(int heap_fd, const char *heap, const char *path, int flags,
                                  bool *created);
/* A new file that appears under its name only when complete. */
typedef struct mmh_newfile {
    int   fd;
    bool  unnamed;  /* O_TMPFILE, linked through proc                  */
    char  proc[32]; /* /proc/self/fd/N                                  */
    char *tmp;      /* the random temporary name ("" once used)         */
} mmh_newfile;

MMH_HIDDEN int  mmh_newfile_create(mmh_newfile *nf, const char *path, unsigned mode);
/* Give it the name path: never replacing a file there (EEXIST), or, with
 * replace, atomically over it.  Async-signal-safe. */
MMH_HIDDEN int  mmh_newfile_link(mmh_newfile *nf, const char *path, bool replace);
MMH_HIDDEN void mmh_newfile_discard(mmh_newfile *nf);

#endif /* MMH_FILEIO_H */
