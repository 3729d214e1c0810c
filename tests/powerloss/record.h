/* The power-loss harness's record of file changes (tests/powerloss/).
 *
 * The recorder (recorder.c) appends one record per call by which a process
 * changed a file in the watched directory, after the call succeeded: the
 * record order is the order the changes reached the page cache.  The
 * workload adds marks: a commit begun (with the digest of the version it
 * writes) and acknowledged.  The replayer reads them back to build the
 * crash states.  Only file operations are seen, so any commit protocol
 * (the log and its checkpoints) is recorded the same way. */
#ifndef PL_RECORD_H
#define PL_RECORD_H

#include <stdint.h>

enum pl_op {
    PL_WRITE = 1,  /* ino, off, len; len bytes of data follow            */
    PL_TRUNC,      /* ino, off = new size                                 */
    PL_FALLOC,     /* ino, arg = mode, off, len                           */
    PL_SYNC,       /* ino: fsync or fdatasync of a regular file           */
    PL_FAILSYNC,   /* ino: a sync that failed: its unsynced writes are gone */
    PL_RANGE,      /* ino: sync_file_range, which makes nothing durable    */
    PL_CREATE,     /* a new inode ino, named name (open O_CREAT) or not   */
                   /* (O_TMPFILE: name empty)                             */
    PL_LINK,       /* name = ino (link, linkat, an O_TMPFILE made visible) */
    PL_RENAME,     /* name -> name2, ino                                  */
    PL_UNLINK,     /* name                                                */
    PL_DIRSYNC,    /* fsync of the watched directory                      */
    PL_BEGIN,      /* mark: name's next version off, digest arg           */
    PL_ACK,        /* mark: the version off of name is acknowledged       */
    PL_FAILED,     /* mark: the commit of version off of name failed      */
};

#define PL_NAME 56

struct pl_rec {
    uint32_t op;
    int32_t  pid;
    uint64_t ino;
    uint64_t off, len, arg;
    char     name[PL_NAME], name2[PL_NAME];
};

/* Recorder: start appending to the record file log_fd, watching dir (an
 * absolute path without a trailing slash).  Children inherit it. */
void pl_record_start(int log_fd, const char *dir);
void pl_record_stop(void);
void pl_record_mark(uint32_t op, const char *name, uint64_t version, uint64_t digest);

/* Faults, for the proof that the harness catches a broken protocol:
 * every sync of the file named skip_name in the directory is dropped
 * (reports success, does nothing); the fail_nth-th sync of a file (from 1,
 * counted across processes) fails with EIO and its unsynced writes are
 * lost (fsyncgate); 0 = none. */
void pl_record_faults(const char *skip_name, unsigned fail_nth);

/* Make every fsync and fdatasync of this process and its children a
 * no-op: a checker's writes are thrown away, and syncing them to a disk
 * would only make each state cost milliseconds. */
void pl_record_no_syncs(void);

#endif
