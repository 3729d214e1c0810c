/* jobutil.h: helpers shared by the tests of background jobs and fork
 * (test_snapshot, test_bgcommit, test_fork), in tests/libtestheap.la.
 *
 *  - a test state: a root with an array of objects whose every version is
 *    known exactly (struct expect), built, changed and checked in this
 *    process or in a child;
 *  - the image checker: this program run again as `--check IMAGE EXPECT
 *    FLAGS`, a fresh process, since the heap that wrote an image still
 *    occupies its base address here (main calls job_tests_init);
 *  - the jobs as processes: the newest job stopped and continued, a test
 *    child's process group killed and reaped;
 *  - small things the three share: time, a directory's listing, a file's
 *    bytes.
 */
#ifndef MMHEAP_JOBUTIL_H
#define MMHEAP_JOBUTIL_H

#include "testutil.h"

#define ST_MAGIC  0x534e415053544154ull   /* root of a test state */
#define OBJ_MAGIC 0x534e41504f424a31ull
#define EXP_MAGIC 0x534e41504558504cull
#define MAXOBJ    256

/* ------------------------------------------------------------- the state
 *
 * A root with an array of objects (raw pointers).  Each object carries its
 * id, a sequence number and a payload whose pattern depends on (id, seq),
 * so a reader can tell exactly which write of each object it sees.  An
 * optional big block filled with one byte value makes the heap grow.
 */
struct obj {
    uint64_t      magic;
    struct obj   *self;
    uint64_t      id;
    uint64_t      seq;
    uint64_t      len;
    unsigned char data[];
};

struct sroot {
    uint64_t       magic;
    uint64_t       version;
    uint64_t       nobj;
    struct obj   **objs;
    unsigned char *big;
    uint64_t       big_len;
    uint64_t       big_byte;
    uint64_t       lmin, lmax;   /* object sizes of a versioned state */
};

/* What a heap must hold, exactly. */
struct expect {
    uint64_t magic;
    uint64_t version;
    uint64_t nobj;
    uint64_t allocations;        /* live blocks; 0: not checked */
    uint64_t big_len;
    uint64_t big_byte;
    uint64_t seq[MAXOBJ];
    uint64_t len[MAXOBJ];
};

/* Rewrites object o's payload as write seq. */
void obj_rewrite(struct obj *o, uint64_t seq);

/* Replaces object i by a new one of len bytes (alloc, then free the old);
 * 0, or 1 after saying why (usable in children). */
int obj_replace(mmh_heap *h, struct sroot *s, uint64_t i, uint64_t seq, size_t len);

/* A new root of h: n objects of random sizes in [lmin, lmax] (seed);
 * version v; every object seq v.  NULL if an allocation failed. */
struct sroot *state_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax,
                          uint64_t seed, uint64_t v);

/* Versioned states: a pure function of (n, lmin, lmax, v), reached by
 * consecutive versions.  At version v every object has seq v; the objects
 * with (i + v) % 4 == 0 are replaced by new ones of a new size.
 * vstate_build makes version v as h's root; vstate_set moves s to v, its
 * next version (0, or 1 after saying why); vexpect says what version v
 * holds. */
struct sroot *vstate_build(mmh_heap *h, uint64_t n, size_t lmin, size_t lmax, uint64_t v);
int vstate_set(mmh_heap *h, struct sroot *s, uint64_t v);
void vexpect(struct expect *e, uint64_t n, size_t lmin, size_t lmax, uint64_t v);

/* Records what the heap holds now. */
void state_expect(mmh_heap *h, const struct sroot *s, struct expect *e);

/* The payload bytes e holds. */
uint64_t expect_bytes(const struct expect *e);

/* 0 when h holds exactly e; else says what differs on stderr.  Usable in
 * children. */
int state_check(mmh_heap *h, const struct expect *e);

/* e into the file at path, and back: 0, or -1. */
int write_expect(const char *path, const struct expect *e);
int read_expect(const char *path, struct expect *e);

/* ------------------------------------------------------- heaps of a state */

/* A file heap holding versioned state v, committed and closed; its path
 * (tu_path(name)), which the caller frees. */
char *make_file_heap(const char *name, uint64_t n, size_t lmin, size_t lmax, uint64_t v);

/* An anonymous heap holding versioned state v; *e gets what it holds. */
mmh_heap *anon_state(uint64_t n, size_t lmin, size_t lmax, uint64_t v, struct expect *e);

/* The file heap at path, reopened, holds exactly e. */
void check_file(const char *path, const struct expect *e);

/* ------------------------------------------------- checking an image */

/* main() calls this first.  When this program was run as the image
 * checker (`--check IMAGE EXPECT FLAGS`: a fresh process opens the image
 * with FLAGS, 0 or MMH_VOLATILE, compares it with EXPECT, allocates and
 * frees, closes), it exits with the checker's status.  Otherwise it makes
 * this process the subreaper of its descendants: the job children of a
 * test child it kills are then its to reap (kill_group). */
void job_tests_init(int argc, char **argv);

/* The checker's wait status for (path, e, flags). */
int run_checker(const char *path, const struct expect *e, unsigned flags);

/* The image at path, opened as a heap file, holds exactly e. */
void check_image(const char *path, const struct expect *e);

/* ------------------------------------------------------ process helpers */

/* cmocka setup of every test of these programs: a hang fails the program
 * instead of stalling it. */
int setup_hang_alarm(void **state);

/* In a forked child: a crash kills it rather than landing in cmocka's
 * handler, which would run the remaining tests in the child.  (SIGSEGV
 * stays: the mprotect tracker chains to the handler before it.) */
void child_init(void);

/* In a forked child: child_init, then the file heap at path opened with
 * tracker (*hp, NULL if that failed); returns its root. */
struct sroot *child_open(const char *path, mmh_tracker tracker, mmh_heap **hp);

/* Kills the process group that child pgid leads and reaps it all: the
 * job children of a killed test child are reparented to us (the
 * subreaper: job_tests_init). */
void kill_group(pid_t pgid);

/* Stops the job just started; returns its pid if it is now stopped (it
 * cannot finish until job_cont), 0 if it had already exited or was not
 * found. */
pid_t job_stop(void);
void job_cont(pid_t pid);

/* Waits for the running job, polling (*ones, unless NULL, counts the
 * polls that said 1); returns mmh_wait's final result. */
int wait_poll(mmh_heap *h, long *ones);

/* mmh_snapshot, then mmh_wait for its job if one started (*in_job, unless
 * NULL); errno is the failing call's. */
int snapshot_wait(mmh_heap *h, const char *path, int *in_job);

/* Under valgrind a process forked while other threads exist reports their
 * thread-local storage (glibc's DTV, held by an interior pointer) as
 * possibly lost: the tests that fork from a multithreaded program skip. */
int under_valgrind(void);

/* A test child's progress, through a pipe, for version v: 'b' it is set
 * and its job about to start, 'r' the job runs, 'd' the job is done. */
struct msg {
    char     c;
    uint64_t v;
} __attribute__((packed));

int send_msg(int fd, char c, uint64_t v);

/* ------------------------------------------------------------ small things */

uint64_t now_ns(void);
void sleep_ms(double ms);

/* Sorted names in dir, one per line; caller frees. */
char *dir_listing(const char *dir);

/* Does the file hold exactly these len bytes? */
int file_is(const char *path, const void *bytes, size_t len);

#endif /* MMHEAP_JOBUTIL_H */
