/* The power-loss harness: a workload recorded (workload.c, recorder.c),
 * crash states built from its record under the power-loss model
 * (replay.c), each opened and checked in a child (check.c). */
#ifndef PL_HARNESS_H
#define PL_HARNESS_H

#include "record.h"

#include <mmheap.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the workload keeps in each heap, at its root: which version this
 * is, and the objects it holds, each filled from its seed (pl_fill). */
#define PL_MAGIC  0x74736566696e616dull
#define PL_MAXOBJ 40

struct pl_obj {
    uint64_t off, size, seed;
};

struct pl_manifest {
    uint64_t      magic, version, nobj;
    struct pl_obj obj[PL_MAXOBJ];
};

void     pl_fill(void *p, size_t size, uint64_t seed);
bool     pl_filled(const void *p, size_t size, uint64_t seed);
uint64_t pl_digest(const struct pl_manifest *m);
uint64_t pl_hash(uint64_t h, const void *p, size_t n);

/* The heap files the workload makes in its directory. */
#define PL_FILES 3
extern const char *const pl_files[PL_FILES];

/* Run the workload on heaps in dir, recording to log_fd.  0, or -1 when
 * something failed that no fault explains (message on stderr). */
int pl_workload(const char *dir, mmh_tracker tracker, int log_fd, uint64_t seed);

/* What a heap file may hold at a crash point. */
struct pl_expect {
    bool     acked;           /* a version was acknowledged: the file must exist */
    unsigned n;               /* allowed versions                      */
    uint64_t version[8], digest[8];
};

/* Check the heap files pl_files[i] of the crash state in dir for the bits
 * i in which: each opens (tracker), holds one allowed version, passes
 * `mmheap check` (tool), and takes allocations and a commit.  Runs in a
 * child; 0 sound, else 1 with the reason in why. */
int pl_check_state(const char *dir, const struct pl_expect exp[PL_FILES], unsigned which,
                   mmh_tracker tracker, const char *tool, char *why, size_t size);

struct pl_options {
    mmh_tracker tracker;
    unsigned    states;      /* crash states to check (at most)        */
    uint64_t    seed;
    const char *skip_sync;   /* fault: drop the syncs of the file so named;
                                "/name": the directory's sync after name
                                is created */
    unsigned    fail_sync;   /* fault: the nth sync fails               */
    unsigned    report;      /* violations to describe on stderr        */
};

struct pl_result {
    unsigned records, points, states, duplicates, violations;
    unsigned file_checks;     /* heap files checked: the others were
                                 checked before, byte for byte */
    unsigned writes, syncs, dirsyncs, punches, truncs, links, failed_syncs;
};

/* Record the workload in a fresh directory under tmp, then check crash
 * states.  0, or -1 when the harness itself failed. */
int pl_run(const char *tmp, const char *tool, const struct pl_options *o, struct pl_result *r);

#endif
