/* bench_persist: commit cost, write volume, recovery and first-write cost of
 * mmheap's file heaps, through the public API only (include/mmheap.h and
 * mmh_stats), so it measures whichever commit protocol the library has.
 *
 *   bench_persist small      [options]   commits of 1, 16, 256 dirty pages
 *   bench_persist commit     [options]   commits of 200 pages in a 1 GiB heap
 *   bench_persist sustained  [options]   200-page commits back to back
 *   bench_persist recovery   [options]   mmh_open after a crash
 *   bench_persist firstwrite [options]   first write per page, per tracker
 *   bench_persist probe --tracker=T      exit 0 if tracker T works here
 *
 * small and commit: heaps of --heap-mib MiB of data each -- private with
 * the uffd, mprotect and none trackers, and shared (MMH_SHARED, auto
 * tracker) -- plus one plain file of the same size.  Every heap is filled
 * with 1344 KiB blocks, every byte written, and committed once (untimed).
 * Each repetition, for each count k of --pages, draws k distinct random
 * pages (the same draw for every configuration), writes one byte into each
 * and times:
 *   - mmh_commit on every heap,
 *   - floor: pwrite of those pages (4 KiB each) where they lie in the plain
 *     file, then one fdatasync,
 *   - msync (commit mode): the same pages stored through a MAP_SHARED
 *     mapping of the whole plain file, then msync(MS_SYNC) of all of it.
 * The configurations run one after another inside each repetition, in an
 * order that rotates.  The none tracker writes the whole heap at every
 * commit, so it runs only in the first --none-reps repetitions.  Around
 * each configuration's stores and commit the program reads write_bytes of
 * /proc/self/io and the sectors written of the block device holding --dir
 * (/sys/dev/block/MAJ:MIN/stat): bytes written per byte of pages changed.
 * Each timed commit is followed by mmh_checkpoint, untimed but inside that
 * byte window, so that no heap's checkpoint lands in another's window.
 * At the end every heap is closed (timed), reopened read-only and byte 100
 * of every page is compared with what was committed.
 *
 * sustained: one heap (--tracker, default uffd) and the plain file; for
 * --seconds each, 200-page commits back to back, then the floor (pwrite of
 * 200 pages + fdatasync) back to back; --rounds times, order alternating.
 * Commits per second, latency percentiles, bytes written per commit (the
 * library's bytes_written, write_bytes of the process -- a checkpoint
 * thread of the library counts here -- and the device's sectors), process
 * CPU per commit.
 *
 * recovery: a heap of --heap-mib MiB; each repetition a child process opens
 * it, makes --commits commits of --pages scattered pages, stores into more
 * pages without committing, and dies by SIGKILL without mmh_close.  The
 * parent lists the files beside the heap (a log or journal), then times
 * mmh_open (writable) -- the recovery -- with the page cache as the dead
 * process left it (warm) or with the heap's files dropped from it (cold,
 * every other repetition), checks that every page holds its last committed
 * byte, and times mmh_close.
 *
 * firstwrite: one heap holding a block of --fw-pages pages.  For each round
 * and each tracker (rotating order) a child process opens the heap and times
 *   - cold: one byte stored into each page, ascending, right after the open
 *     (the pages are in the page cache but not mapped: every store takes the
 *     private mapping's copy-on-write fault, plus the tracker's work);
 *   - commit (untimed), then warm-seq: the same stores again (the pages are
 *     private copies now; what remains is the tracker's write fault);
 *   - commit (untimed), then warm-rand: the same in a random page order.
 * The child checks that each commit wrote at least the pages it stored to,
 * then exits without closing (nothing more to write).
 *
 * Output is Markdown tables; --raw FILE keeps every measurement.  Figures
 * are medians over repetitions/rounds; ratios are medians of the ratio
 * within one repetition/round.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_persist"
#include "benchutil.h"

#define PAGE 4096u
/* 21 slices of 64 KiB: three fill a 4 MiB segment's 63 usable slices */
#define BLOCK ((size_t)21 << 16)
#define MAXK 8

static const char *g_dir;
static char g_work[4096];
static FILE *g_raw;

static void minmax(const double *v, size_t n, double *lo, double *hi)
{
    *lo = *hi = n ? v[0] : -1;
    for (size_t i = 1; i < n; i++) {
        if (v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

/* Median of the n values of v that are >= 0 (v is left as it was). */
static double median_of(const double *v, size_t n)
{
    double *t = malloc((n ? n : 1) * sizeof *t);
    size_t m = 0;
    if (!t)
        die_errno("malloc");
    for (size_t i = 0; i < n; i++)
        if (v[i] >= 0)
            t[m++] = v[i];
    double r = sort_median(t, m);
    free(t);
    return r;
}

static const char *tracker_name(mmh_tracker t)
{
    switch (t) {
    case MMH_TRACK_AUTO: return "auto";
    case MMH_TRACK_UFFD: return "uffd";
    case MMH_TRACK_MPROTECT: return "mprotect";
    case MMH_TRACK_NONE: return "none";
    }
    return "?";
}

static int parse_tracker(const char *s, mmh_tracker *t)
{
    for (int i = MMH_TRACK_AUTO; i <= MMH_TRACK_NONE; i++)
        if (strcmp(s, tracker_name((mmh_tracker)i)) == 0) {
            *t = (mmh_tracker)i;
            return 0;
        }
    return -1;
}

static void work_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_work, name);
}

/* The files of the heap at path: path itself and every file beside it
 * whose name is path's name followed by a dot (FILE.journal, FILE.log, ...;
 * whatever the library keeps).  fn is called with each full name. */
static void heap_files(const char *path, void (*fn)(const char *file, void *arg), void *arg)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t bl = strlen(base);
    DIR *d = opendir(g_work);
    if (!d)
        return;
    struct dirent *e;
    char full[4400];
    while ((e = readdir(d)))
        if (strncmp(e->d_name, base, bl) == 0 && (e->d_name[bl] == 0 || e->d_name[bl] == '.')) {
            snprintf(full, sizeof full, "%s/%s", g_work, e->d_name);
            fn(full, arg);
        }
    closedir(d);
}

static void unlink_one(const char *file, void *arg)
{
    (void)arg;
    unlink(file);
}

static void unlink_heap(const char *path)
{
    heap_files(path, unlink_one, NULL);
}

/* ---- what reaches storage ----------------------------------------------- */

/* write_bytes of /proc/self/io: bytes this process (all its threads) caused
 * to be written to storage, counted when page-cache pages become dirty;
 * and the bytes the block device holding --dir completed writing (sectors
 * written, field 7 of /sys/dev/block/MAJ:MIN/stat, times 512), which counts
 * every process and the filesystem's own journal. */
struct io {
    double wb, dev;
};

static char g_devstat[128]; /* "" if --dir is on no block device */
static char g_devname[64];

static void devstat_init(void)
{
    struct stat st;
    if (stat(g_dir, &st) != 0 || major(st.st_dev) == 0)
        return;
    char link[64], target[512];
    snprintf(link, sizeof link, "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    snprintf(g_devstat, sizeof g_devstat, "%s/stat", link);
    if (access(g_devstat, R_OK) != 0) {
        g_devstat[0] = 0;
        return;
    }
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    const char *s = strrchr(target, '/');
    snprintf(g_devname, sizeof g_devname, "%s", s ? s + 1 : link);
}

static double read_counter(const char *file, const char *key, int field)
{
    char buf[1024];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *p = buf;
    if (key) {
        p = strstr(buf, key);
        return p ? strtod(p + strlen(key), NULL) : -1;
    }
    unsigned long long v = 0;
    for (int i = 0; i < field; i++) {
        char *end;
        v = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    return (double)v;
}

static void io_now(struct io *x)
{
    x->wb = read_counter("/proc/self/io", "write_bytes: ", 0);
    x->dev = *g_devstat ? read_counter(g_devstat, NULL, 7) * 512 : -1;
}

/* b - a into *d; a negative field means unknown */
static void io_delta(const struct io *a, const struct io *b, struct io *d)
{
    d->wb = a->wb >= 0 && b->wb >= 0 ? b->wb - a->wb : -1;
    d->dev = a->dev >= 0 && b->dev >= 0 ? b->dev - a->dev : -1;
}

static const char *io_note(void)
{
    static char s[300];
    if (*g_devstat)
        snprintf(s, sizeof s, "device counter: %s (%s), all processes", g_devname, g_devstat);
    else
        snprintf(s, sizeof s, "device counter: none (%s is on no block device)", g_dir);
    return s;
}

/* "%.2f" of v, or "n/a" when v < 0 */
static const char *fmt2(double v, char *buf, size_t n)
{
    if (v < 0)
        snprintf(buf, n, "n/a");
    else
        snprintf(buf, n, "%.2f", v);
    return buf;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Fork a child that runs fn(arg, wfd), which must not return, wfd being the
 * write end of a pipe; the child's pid, the read end in *rfd. */
static pid_t fork_with_pipe(int *rfd, void (*fn)(void *arg, int wfd), void *arg)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        die_errno("pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        close(pfd[0]);
        fn(arg, pfd[1]);
        _exit(3);
    }
    close(pfd[1]);
    *rfd = pfd[0];
    return pid;
}

static uint64_t lib_written(mmh_heap *h)
{
    struct mmh_stats st;
    mmh_stats(h, &st);
    return st.bytes_written;
}

/* ---- probe ------------------------------------------------------------- */

/* Does tracker t open, track a write, commit it and read it back? */
static int probe(mmh_tracker t)
{
    char path[4200];
    work_path(path, sizeof path, "probe.heap");
    unlink_heap(path);
    mmh_config cfg = { .flags = MMH_CREATE, .tracker = t };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    char *p = mmh_alloc(h, 3 * PAGE);
    if (!p || mmh_set_root(h, p) != 0 || mmh_commit(h) != 0) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    p[0] = 1;
    p[PAGE + 7] = 2;
    if (mmh_commit(h) != 0 || mmh_close(h) != 0) {
        printf("%s\n", mmh_errmsg());
        return 1;
    }
    mmh_config ro = { .flags = MMH_READONLY };
    h = mmh_open(path, &ro);
    p = h ? mmh_root(h) : NULL;
    int ok = p && p[0] == 1 && p[PAGE + 7] == 2;
    if (h)
        mmh_close(h);
    unlink_heap(path);
    if (!ok) {
        printf("tracker %s: committed bytes not read back\n", tracker_name(t));
        return 1;
    }
    printf("ok\n");
    return 0;
}

/* ---- heaps, the plain file, one commit ------------------------------------ */

enum ckind { C_PRIV, C_SHARED, C_FLOOR, C_MSYNC };

/* One sample: a configuration's stores and commit. */
struct sample {
    double ns;  /* the commit (floor: the pwrites and the fdatasync); < 0: did not run */
    double lib; /* mmh_stats bytes_written (floor, msync: the bytes of the pages)     */
    struct io io; /* over the stores and the commit                                   */
};

struct cconf {
    const char *name;
    enum ckind kind;
    mmh_tracker tracker;
    int active;           /* took part (opened fine)            */
    mmh_heap *h;
    char **blocks;        /* heaps: the data blocks             */
    size_t nblocks;
    char path[4200];
    unsigned char *shadow; /* heaps: byte 100 of each page as committed */
    struct sample *s;     /* per repetition and page count      */
    uint64_t setup_ns;
    uint64_t heap_size;
    double close_ms;
    struct io close_io;
};

static size_t g_npages;   /* pages of data in each configuration */
static int g_fd = -1;     /* the plain file                       */
static char *g_map;       /* its MAP_SHARED mapping, if any       */
static char g_pagebuf[PAGE] __attribute__((aligned(PAGE)));

static char *page_addr(struct cconf *c, size_t pg)
{
    if (c->kind == C_MSYNC)
        return g_map + pg * PAGE;
    return c->blocks[pg / (BLOCK / PAGE)] + (pg % (BLOCK / PAGE)) * PAGE;
}

/* The byte every page of block i holds after the fill. */
static unsigned char fill_byte(size_t i)
{
    return (unsigned char)(i * 7 + 1);
}

static void init_shadow(struct cconf *c)
{
    c->shadow = malloc(g_npages);
    if (!c->shadow)
        die_errno("malloc");
    for (size_t pg = 0; pg < g_npages; pg++)
        c->shadow[pg] = fill_byte(pg / (BLOCK / PAGE));
}

/* Find the data blocks of an opened heap through its root. */
static void attach_blocks(struct cconf *c, mmh_heap *h)
{
    char **list = mmh_root(h);
    if (!list)
        die("the heap has no root");
    for (size_t i = 0; i < c->nblocks; i++)
        c->blocks[i] = list[i];
}

static void setup_heap(struct cconf *c, size_t data_bytes)
{
    work_path(c->path, sizeof c->path, c->name);
    strcat(c->path, ".heap");
    unlink_heap(c->path);
    mmh_config cfg = { .flags = MMH_CREATE | (c->kind == C_SHARED ? MMH_SHARED : 0),
                       .tracker = c->tracker };
    c->h = mmh_open(c->path, &cfg);
    if (!c->h) {
        fprintf(stderr, "bench_persist: %s: skipped: %s\n", c->name, mmh_errmsg());
        if (g_raw)
            fprintf(g_raw, "skip\t%s\t%s\n", c->name, mmh_errmsg());
        return;
    }
    c->nblocks = data_bytes / BLOCK;
    c->blocks = calloc(c->nblocks, sizeof *c->blocks);
    char **list = mmh_alloc(c->h, c->nblocks * sizeof *list);
    if (!c->blocks || !list)
        die("allocating the block list");
    for (size_t i = 0; i < c->nblocks; i++) {
        if (!(c->blocks[i] = mmh_alloc(c->h, BLOCK)))
            die("allocating the data");
        memset(c->blocks[i], fill_byte(i), BLOCK);
        list[i] = c->blocks[i];
    }
    if (mmh_set_root(c->h, list) != 0)
        die("mmh_set_root");
    uint64_t t0 = now_ns();
    if (mmh_commit(c->h) != 0 || mmh_checkpoint(c->h) != 0)
        die("the first commit");
    c->setup_ns = now_ns() - t0;
    struct mmh_stats st;
    mmh_stats(c->h, &st);
    c->heap_size = st.size;
    init_shadow(c);
    c->active = 1;
}

/* The plain file of data_bytes, written and synced; with map, also mapped
 * MAP_SHARED with every page mapped and clean. */
static void setup_plain(size_t data_bytes, int map)
{
    char path[4200];
    work_path(path, sizeof path, "plain.dat");
    g_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g_fd < 0)
        die_errno(path);
    char *buf = malloc(BLOCK);
    if (!buf)
        die_errno("malloc");
    for (size_t i = 0; i < data_bytes / BLOCK; i++) {
        memset(buf, fill_byte(i), BLOCK);
        if (pwrite(g_fd, buf, BLOCK, (off_t)(i * BLOCK)) != (ssize_t)BLOCK)
            die_errno("writing the plain file");
    }
    free(buf);
    if (fdatasync(g_fd) != 0)
        die_errno("fdatasync");
    if (!map)
        return;
    g_map = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, 0);
    if (g_map == MAP_FAILED)
        die_errno("mmap of the plain file");
    /* Map every page (and dirty it), then make it all clean again. */
    for (size_t i = 0; i < data_bytes; i += PAGE)
        g_map[i + 1] = (char)i;
    if (msync(g_map, data_bytes, MS_SYNC) != 0)
        die_errno("msync");
}

static void close_plain(size_t data_bytes)
{
    if (g_map)
        munmap(g_map, data_bytes);
    g_map = NULL;
    close(g_fd);
    g_fd = -1;
    char path[4200];
    work_path(path, sizeof path, "plain.dat");
    unlink(path);
}

/* Store val at byte 100 of each page of pages[], then make it durable; the
 * time of the second part, the bytes written on the way. */
static struct sample commit_once(struct cconf *c, const size_t *pages, size_t n,
                                 unsigned char val)
{
    struct sample s;
    struct io a, b;
    uint64_t t0, lib0 = 0;
    if (c->h)
        lib0 = lib_written(c->h);
    io_now(&a);
    switch (c->kind) {
    case C_PRIV:
    case C_SHARED:
        for (size_t i = 0; i < n; i++) {
            *(volatile char *)(page_addr(c, pages[i]) + 100) = (char)val;
            c->shadow[pages[i]] = val;
        }
        t0 = now_ns();
        if (mmh_commit(c->h) != 0)
            die(c->name);
        s.ns = (double)(now_ns() - t0);
        /* The commit's checkpoint, off the clock but in the byte counts:
         * left to the library's thread, it would land in another
         * configuration's window. */
        if (mmh_checkpoint(c->h) != 0)
            die(c->name);
        break;
    case C_FLOOR:
        t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            g_pagebuf[100] = (char)val;
            if (pwrite(g_fd, g_pagebuf, PAGE, (off_t)(pages[i] * PAGE)) != PAGE)
                die_errno("pwrite");
        }
        if (fdatasync(g_fd) != 0)
            die_errno("fdatasync");
        s.ns = (double)(now_ns() - t0);
        break;
    case C_MSYNC:
        for (size_t i = 0; i < n; i++)
            *(volatile char *)(page_addr(c, pages[i]) + 100) = (char)val;
        t0 = now_ns();
        if (msync(g_map, g_npages * PAGE, MS_SYNC) != 0)
            die_errno("msync");
        s.ns = (double)(now_ns() - t0);
        break;
    }
    io_now(&b);
    io_delta(&a, &b, &s.io);
    s.lib = c->h ? (double)(lib_written(c->h) - lib0) : (double)n * PAGE;
    return s;
}

static void draw_pages(size_t *pages, size_t n, size_t range)
{
    for (size_t i = 0; i < n; i++) {
        size_t pg;
        int dup;
        do {
            pg = (size_t)(wyrand() % range);
            dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= pages[j] == pg;
        } while (dup);
        pages[i] = pg;
    }
}

/* Pages of h (attached to c's blocks) whose byte 100 differs from c's shadow. */
static size_t count_mismatches(struct cconf *c)
{
    size_t bad = 0;
    for (size_t pg = 0; pg < g_npages; pg++)
        bad += (unsigned char)*(page_addr(c, pg) + 100) != c->shadow[pg];
    return bad;
}

/* Close c's heap (timed), reopen it read-only, compare every page with the
 * shadow, close and remove it; the number of pages that differ. */
static size_t close_and_check(struct cconf *c)
{
    struct io a, b;
    io_now(&a);
    uint64_t t0 = now_ns();
    if (mmh_close(c->h) != 0)
        die("mmh_close");
    c->close_ms = (double)(now_ns() - t0) / 1e6;
    io_now(&b);
    io_delta(&a, &b, &c->close_io);
    c->h = NULL;
    mmh_config ro = { .flags = MMH_READONLY };
    mmh_heap *h = mmh_open(c->path, &ro);
    if (!h)
        die("reopening a heap read-only");
    attach_blocks(c, h);
    size_t bad = count_mismatches(c);
    mmh_close(h);
    unlink_heap(c->path);
    return bad;
}

/* Make the list of private configurations from a tracker list. */
static int parse_privs(const char *trackers, struct cconf *conf, int *nconf)
{
    static char names[4][32];
    char tl[256];
    snprintf(tl, sizeof tl, "%s", trackers);
    for (char *save, *tok = strtok_r(tl, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        mmh_tracker t;
        if (parse_tracker(tok, &t) != 0 || t == MMH_TRACK_AUTO) {
            fprintf(stderr, "bench_persist: unknown tracker %s\n", tok);
            return -1;
        }
        snprintf(names[t], sizeof names[t], "private-%s", tok);
        conf[(*nconf)++] = (struct cconf){ .name = names[t], .kind = C_PRIV, .tracker = t };
    }
    return 0;
}

/* ---- small and commit: latency against the floor ------------------------ */

struct copts {
    const char *trackers;
    size_t heap_mib;
    size_t ks[MAXK];
    int nk;
    int reps, none_reps, shared, msync;
    int small; /* the small-commit targets, else the 200-page one */
};

/* The target for a commit of k pages, as a fraction of the floor;
 * -1 when it names none. */
static double target_for(const struct copts *o, size_t k)
{
    if (o->small)
        return k == 1 ? 1.0 : k == 16 ? 0.6 : k == 256 ? 0.4 : -1;
    return k == 200 ? 0.3 : -1;
}

static int bench_commit(const struct copts *o)
{
    size_t data_bytes = (o->heap_mib << 20) / BLOCK * BLOCK;
    g_npages = data_bytes / PAGE;
    size_t kmax = 0;
    for (int i = 0; i < o->nk; i++)
        kmax = o->ks[i] > kmax ? o->ks[i] : kmax;
    if (data_bytes == 0 || kmax > g_npages / 2) {
        fprintf(stderr, "bench_persist: --pages too large for the heap\n");
        return 1;
    }
    struct cconf conf[6];
    int nconf = 0;
    memset(conf, 0, sizeof conf);
    if (parse_privs(o->trackers, conf, &nconf) != 0)
        return 1;
    if (o->shared)
        conf[nconf++] = (struct cconf){ .name = "shared", .kind = C_SHARED,
                                        .tracker = MMH_TRACK_AUTO };
    int floor_i = nconf, msync_i = -1;
    conf[nconf++] = (struct cconf){ .name = "floor", .kind = C_FLOOR, .active = 1 };
    if (o->msync) {
        msync_i = nconf;
        conf[nconf++] = (struct cconf){ .name = "msync", .kind = C_MSYNC, .active = 1 };
    }
    const char *mode = o->small ? "small" : "commit";
    size_t nsamp = (size_t)o->reps * (size_t)o->nk;

    fprintf(stderr, "bench_persist: %s: setting up %d heaps of %zu MiB in %s\n", mode,
            nconf - 1 - o->msync, o->heap_mib, g_work);
    uint64_t t0 = now_ns();
    setup_plain(data_bytes, o->msync);
    for (int i = 0; i < nconf; i++) {
        if (conf[i].kind == C_PRIV || conf[i].kind == C_SHARED)
            setup_heap(&conf[i], data_bytes);
        conf[i].s = malloc(nsamp * sizeof *conf[i].s);
        if (!conf[i].s)
            die_errno("malloc");
        for (size_t j = 0; j < nsamp; j++)
            conf[i].s[j].ns = -1;
    }
    fprintf(stderr, "bench_persist: %s: setup took %.1f s; %d repetitions\n", mode,
            (double)(now_ns() - t0) / 1e9, o->reps);

    size_t *pages = malloc(kmax * sizeof *pages);
    for (int rep = 0; rep < o->reps; rep++)
        for (int ki = 0; ki < o->nk; ki++) {
            size_t k = o->ks[ki];
            draw_pages(pages, k, g_npages);
            unsigned char val = (unsigned char)(1 + (rep * o->nk + ki) % 251);
            for (int j = 0; j < nconf; j++) {
                struct cconf *c = &conf[(j + rep + ki) % nconf];
                if (!c->active)
                    continue;
                if (c->kind == C_PRIV && c->tracker == MMH_TRACK_NONE && rep >= o->none_reps)
                    continue;
                struct sample s = commit_once(c, pages, k, val);
                c->s[rep * o->nk + ki] = s;
                if (g_raw)
                    fprintf(g_raw, "%s\t%s\t%zu\t%d\t%.0f\t%.0f\t%.0f\t%.0f\n", mode, c->name, k,
                            rep, s.ns, s.lib, s.io.wb, s.io.dev);
            }
        }
    free(pages);

    size_t bad = 0;
    for (int i = 0; i < nconf; i++)
        if (conf[i].h)
            bad += close_and_check(&conf[i]);
    if (bad) {
        fprintf(stderr, "bench_persist: %zu committed pages differ after reopen\n", bad);
        return 4;
    }

    if (o->small)
        printf("### Small commits: k scattered dirty pages in a %zu MiB heap\n\n", o->heap_mib);
    else
        printf("### Commit latency: %zu scattered dirty pages, %zu MiB of data\n\n", o->ks[0],
               o->heap_mib);
    printf("median of %d repetitions (private-none: %d); configurations interleaved, order "
           "rotated each repetition; every page's committed byte checked after reopen: OK\n\n",
           o->reps, o->none_reps < o->reps ? o->none_reps : o->reps);
    printf("- **/ floor**: median over repetitions of commit time / floor time in that "
           "repetition (floor: `pwrite` of the same pages where they lie in a plain file of "
           "the same size + one `fdatasync`)\n"
           "- **lib bytes**: `mmh_stats` bytes_written per commit (floor: the pages' bytes)\n"
           "- **write_bytes / changed**: `/proc/self/io` write_bytes over the stores and the "
           "commit, divided by the bytes of the pages changed (k x 4096): what the process "
           "dirtied in the page cache, counted a whole folio at a time\n"
           "- **device / changed**: sectors the block device completed writing over the same "
           "window x 512, divided likewise: what reached storage, the filesystem's journal "
           "included, and any other process's writes (%s)\n\n",
           io_note());
    printf("| pages | configuration | median ms | min-max ms | / floor | range |%s lib bytes "
           "per commit | write_bytes / changed | device / changed |\n"
           "|--:|---|--:|--:|--:|--:|%s--:|--:|--:|\n",
           o->msync ? " / msync whole map |" : "", o->msync ? "--:|" : "");
    double *ms = malloc((size_t)o->reps * sizeof *ms), *rf = malloc((size_t)o->reps * sizeof *rf),
           *rm = malloc((size_t)o->reps * sizeof *rm), *lb = malloc((size_t)o->reps * sizeof *lb),
           *aw = malloc((size_t)o->reps * sizeof *aw), *ad = malloc((size_t)o->reps * sizeof *ad);
    double tgt_val[2][MAXK];
    for (int ki = 0; ki < o->nk; ki++) {
        size_t k = o->ks[ki];
        double changed = (double)k * PAGE;
        tgt_val[0][ki] = tgt_val[1][ki] = -1;
        for (int i = 0; i < nconf; i++) {
            struct cconf *c = &conf[i];
            if (!c->active) {
                printf("| %zu | %s | skipped | | | |%s | | |\n", k, c->name, o->msync ? " |" : "");
                continue;
            }
            size_t n = 0;
            for (int rep = 0; rep < o->reps; rep++) {
                struct sample *s = &c->s[rep * o->nk + ki], *f = &conf[floor_i].s[rep * o->nk + ki];
                if (s->ns < 0)
                    continue;
                ms[n] = s->ns / 1e6;
                rf[n] = s->ns / f->ns;
                rm[n] = msync_i >= 0 ? s->ns / conf[msync_i].s[rep * o->nk + ki].ns : -1;
                lb[n] = s->lib;
                aw[n] = s->io.wb >= 0 ? s->io.wb / changed : -1;
                ad[n] = s->io.dev >= 0 ? s->io.dev / changed : -1;
                n++;
            }
            double lo, hi, rlo, rhi;
            char b1[32], b2[32], b3[32];
            minmax(ms, n, &lo, &hi);
            minmax(rf, n, &rlo, &rhi);
            double mrf = median_of(rf, n);
            printf("| %zu | %s | %.3f | %.3f-%.3f | ", k, c->name, median_of(ms, n), lo, hi);
            if (i == floor_i)
                printf("1 | |");
            else
                printf("%.2f | %.2f-%.2f |", mrf, rlo, rhi);
            if (o->msync)
                printf(" %s |", i == msync_i ? "1" : fmt2(median_of(rm, n), b3, sizeof b3));
            printf(" %.0f | %s | %s |\n", median_of(lb, n), fmt2(median_of(aw, n), b1, sizeof b1),
                   fmt2(median_of(ad, n), b2, sizeof b2));
            if (c->kind == C_PRIV && c->tracker == MMH_TRACK_UFFD)
                tgt_val[0][ki] = mrf;
            if (c->kind == C_PRIV && c->tracker == MMH_TRACK_MPROTECT)
                tgt_val[1][ki] = mrf;
        }
    }
    printf("\nat close (mmh_close after the last repetition, then a read-only reopen and the "
           "check):");
    for (int i = 0; i < nconf; i++)
        if (conf[i].active && (conf[i].kind == C_PRIV || conf[i].kind == C_SHARED)) {
            char b[32];
            printf(" %s %.1f ms, write_bytes %s MiB;", conf[i].name, conf[i].close_ms,
                   fmt2(conf[i].close_io.wb >= 0 ? conf[i].close_io.wb / 1048576.0 : -1, b,
                        sizeof b));
        }
    printf("\nfirst commit of the filled heap (%zu MiB):", o->heap_mib);
    for (int i = 0; i < nconf; i++)
        if (conf[i].active && conf[i].h == NULL && conf[i].setup_ns)
            printf(" %s %.2f s (heap file %.0f MiB);", conf[i].name,
                   (double)conf[i].setup_ns / 1e9, (double)conf[i].heap_size / 1048576.0);
    printf("\n\n**%s targets** (issue 13; median of per-repetition ratios to the floor):",
           mode);
    for (int t = 0; t < 2; t++) {
        printf("\n- private-%s:", t ? "mprotect" : "uffd (the default tracker)");
        for (int ki = 0; ki < o->nk; ki++) {
            double lim = target_for(o, o->ks[ki]), v = tgt_val[t][ki];
            if (lim < 0)
                continue;
            if (v < 0)
                printf(" k=%zu <= %.1fx: not measured;", o->ks[ki], lim);
            else
                printf(" k=%zu <= %.1fx: %.2fx => %s;", o->ks[ki], lim, v,
                       v <= lim ? "MET" : "NOT MET");
        }
    }
    printf("\n\n");
    free(ms), free(rf), free(rm), free(lb), free(aw), free(ad);
    close_plain(data_bytes);
    return 0;
}

/* ---- sustained: commits back to back ------------------------------------ */

struct sround {
    double commits, wall_s, cpu_s, lib;
    struct io io;
};

/* Commits (or floor writes) of npages random pages back to back for
 * seconds; latencies appended to lat (ms). */
static struct sround sustain(struct cconf *c, size_t npages, double seconds, double **lat,
                             size_t *nlat, size_t *cap, unsigned char *val)
{
    struct sround r = { 0 };
    size_t *pages = malloc(npages * sizeof *pages);
    struct io a, b;
    uint64_t lib0 = c->h ? lib_written(c->h) : 0;
    double cpu0 = cpu_s();
    io_now(&a);
    uint64_t start = now_ns(), limit = (uint64_t)(seconds * 1e9);
    while (now_ns() - start < limit) {
        draw_pages(pages, npages, g_npages);
        *val = (unsigned char)(*val % 251 + 1);
        struct sample s = commit_once(c, pages, npages, *val);
        if (*nlat == *cap) {
            *cap = *cap ? *cap * 2 : 4096;
            *lat = realloc(*lat, *cap * sizeof **lat);
            if (!*lat)
                die_errno("realloc");
        }
        (*lat)[(*nlat)++] = s.ns / 1e6;
        r.commits++;
    }
    r.wall_s = (double)(now_ns() - start) / 1e9;
    io_now(&b);
    io_delta(&a, &b, &r.io);
    r.cpu_s = cpu_s() - cpu0;
    r.lib = c->h ? (double)(lib_written(c->h) - lib0) : r.commits * (double)npages * PAGE;
    free(pages);
    return r;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return -1;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int bench_sustained(mmh_tracker t, size_t heap_mib, size_t npages, double seconds,
                           int rounds)
{
    size_t data_bytes = (heap_mib << 20) / BLOCK * BLOCK;
    g_npages = data_bytes / PAGE;
    if (data_bytes == 0 || npages > g_npages / 2) {
        fprintf(stderr, "bench_persist: --pages too large for the heap\n");
        return 1;
    }
    char hname[32];
    snprintf(hname, sizeof hname, "private-%s", tracker_name(t));
    struct cconf conf[2] = { { .name = hname, .kind = C_PRIV, .tracker = t },
                             { .name = "floor", .kind = C_FLOOR, .active = 1 } };
    fprintf(stderr, "bench_persist: sustained: setting up a %zu MiB heap in %s\n", heap_mib,
            g_work);
    setup_plain(data_bytes, 0);
    setup_heap(&conf[0], data_bytes);
    if (!conf[0].active) {
        printf("### Sustained commits\n\nskipped: tracker %s: %s\n\n", tracker_name(t),
               mmh_errmsg());
        close_plain(data_bytes);
        return 0;
    }
    fprintf(stderr, "bench_persist: sustained: %d rounds of %.0f s each for the heap and the "
            "floor\n", rounds, seconds);
    struct sround res[2][64];
    double *lat[2] = { NULL, NULL };
    size_t nlat[2] = { 0, 0 }, cap[2] = { 0, 0 };
    unsigned char val = 0;
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < 2; j++) {
            int i = (j + r) % 2;
            res[i][r] = sustain(&conf[i], npages, seconds, &lat[i], &nlat[i], &cap[i], &val);
            if (g_raw)
                fprintf(g_raw, "sustained\t%s\t%d\t%.0f\t%.3f\t%.3f\t%.0f\t%.0f\t%.0f\n",
                        conf[i].name, r, res[i][r].commits, res[i][r].wall_s, res[i][r].cpu_s,
                        res[i][r].lib, res[i][r].io.wb, res[i][r].io.dev);
        }
    size_t bad = close_and_check(&conf[0]);
    if (bad) {
        fprintf(stderr, "bench_persist: %zu committed pages differ after reopen\n", bad);
        return 4;
    }

    double changed = (double)npages * PAGE;
    printf("### Sustained commits: %zu scattered pages back to back, %.0f s per measurement, "
           "%zu MiB heap\n\n", npages, seconds, heap_mib);
    printf("%d round%s; each round runs the heap (%s) for %.0f s, then the floor (`pwrite` of "
           "%zu pages + `fdatasync`, back to back on a plain file of the same size) for %.0f s, "
           "order alternating; a fresh random draw of pages each commit; figures are medians of "
           "the rounds, latency percentiles over all commits of all rounds; every page's "
           "committed byte checked after reopen: OK\n\n",
           rounds, rounds > 1 ? "s" : "", hname, seconds, npages, seconds);
    printf("- bytes per commit: **lib** `mmh_stats` bytes_written; **write_bytes** of "
           "`/proc/self/io` (every thread of the process, a library checkpoint thread too); "
           "**device**: sectors written x 512 (%s); **/ changed**: per byte of pages changed "
           "(%zu x 4096)\n- CPU per commit: user + system time of the whole process (all "
           "threads) over the measurement / commits\n\n", io_note(), npages);
    printf("| configuration | commits/s | p50 ms | p99 ms | max ms | lib bytes per commit | "
           "write_bytes per commit | device bytes per commit | write_bytes / changed | "
           "device / changed | CPU ms per commit |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    double rate[2][64];
    for (int i = 0; i < 2; i++) {
        double v[5][64];
        for (int r = 0; r < rounds; r++) {
            struct sround *x = &res[i][r];
            rate[i][r] = x->commits / x->wall_s;
            v[0][r] = x->lib / x->commits;
            v[1][r] = x->io.wb >= 0 ? x->io.wb / x->commits : -1;
            v[2][r] = x->io.dev >= 0 ? x->io.dev / x->commits : -1;
            v[3][r] = x->cpu_s * 1e3 / x->commits;
        }
        double wb = median_of(v[1], (size_t)rounds), dev = median_of(v[2], (size_t)rounds);
        char b1[32], b2[32], b3[32], b4[32];
        printf("| %s | %.1f | %.3f | %.3f | %.3f | %.0f | %s | %s | %s | %s | %.3f |\n",
               conf[i].name, median_of(rate[i], (size_t)rounds), pct(lat[i], nlat[i], 0.5),
               pct(lat[i], nlat[i], 0.99), pct(lat[i], nlat[i], 1.0),
               median_of(v[0], (size_t)rounds),
               wb >= 0 ? (snprintf(b1, sizeof b1, "%.0f", wb), b1) : "n/a",
               dev >= 0 ? (snprintf(b2, sizeof b2, "%.0f", dev), b2) : "n/a",
               fmt2(wb >= 0 ? wb / changed : -1, b3, sizeof b3),
               fmt2(dev >= 0 ? dev / changed : -1, b4, sizeof b4),
               median_of(v[3], (size_t)rounds));
    }
    double ratio[64], lo, hi;
    for (int r = 0; r < rounds; r++)
        ratio[r] = rate[0][r] / rate[1][r];
    minmax(ratio, (size_t)rounds, &lo, &hi);
    char b[32];
    printf("\ncommits/s of the heap / floor (median of the rounds' ratios): **%.2f** "
           "(range %.2f-%.2f); at close: %.1f ms, write_bytes %s MiB\n\n",
           median_of(ratio, (size_t)rounds), lo, hi, conf[0].close_ms,
           fmt2(conf[0].close_io.wb >= 0 ? conf[0].close_io.wb / 1048576.0 : -1, b, sizeof b));
    free(lat[0]);
    free(lat[1]);
    close_plain(data_bytes);
    return 0;
}

/* ---- recovery: mmh_open after a crash ----------------------------------- */

struct rec_child {
    int ok;
    unsigned commits;
    double lib;     /* bytes_written of its commits */
    double commit_ms; /* median commit */
    char msg[200];
};

struct rec_file {
    char suffix[64];
    double size, alloc;
};

struct rec_files {
    const char *heap;
    struct rec_file f[8];
    int n;
};

static void note_file(const char *file, void *arg)
{
    struct rec_files *r = arg;
    struct stat st;
    if (r->n == 8 || stat(file, &st) != 0)
        return;
    const char *base = strrchr(r->heap, '/') + 1, *name = strrchr(file, '/') + 1;
    snprintf(r->f[r->n].suffix, sizeof r->f[r->n].suffix, "%s",
             name[strlen(base)] ? name + strlen(base) : "(heap)");
    r->f[r->n].size = (double)st.st_size;
    r->f[r->n].alloc = (double)st.st_blocks * 512;
    r->n++;
}

/* Sync a file and drop its pages from the page cache. */
static void drop_cache(const char *file, void *arg)
{
    (void)arg;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            _exit(3);
        s += w;
        n -= (size_t)w;
    }
}

struct rec_args {
    struct cconf *c;
    mmh_tracker t;
    size_t npages;
    unsigned ncommits;
};

/* The child: open, ncommits commits of npages pages, then more stores, then
 * SIGKILL.  Sends its result and the committed bytes (the shadow). */
static void rec_child(void *arg, int wfd)
{
    struct rec_args *ra = arg;
    struct cconf *c = ra->c;
    mmh_tracker t = ra->t;
    size_t npages = ra->npages;
    unsigned ncommits = ra->ncommits;
    struct rec_child r = { 0 };
    mmh_config cfg = { .tracker = t };
    mmh_heap *h = mmh_open(c->path, &cfg);
    size_t *pages = malloc(npages * sizeof *pages);
    double *ms = malloc(ncommits * sizeof *ms);
    if (!h) {
        snprintf(r.msg, sizeof r.msg, "open: %s", mmh_errmsg());
        goto out;
    }
    attach_blocks(c, h);
    c->h = h;
    uint64_t lib0 = lib_written(h);
    for (unsigned i = 0; i < ncommits; i++) {
        draw_pages(pages, npages, g_npages);
        struct sample s = commit_once(c, pages, npages, (unsigned char)(1 + i % 251));
        ms[i] = s.ns / 1e6;
        r.commits++;
    }
    r.lib = (double)(lib_written(h) - lib0);
    r.commit_ms = sort_median(ms, ncommits);
    /* stores after the last commit: the crash must lose them */
    draw_pages(pages, npages, g_npages);
    for (size_t i = 0; i < npages; i++)
        *(volatile char *)(page_addr(c, pages[i]) + 100) = (char)~c->shadow[pages[i]];
    r.ok = 1;
out:
    write_all(wfd, &r, sizeof r);
    write_all(wfd, c->shadow, g_npages);
    kill(getpid(), SIGKILL);
    _exit(9);
}

static int bench_recovery(mmh_tracker t, size_t heap_mib, size_t npages, unsigned ncommits,
                          int reps)
{
    size_t data_bytes = (heap_mib << 20) / BLOCK * BLOCK;
    g_npages = data_bytes / PAGE;
    if (data_bytes == 0 || npages > g_npages / 2 || ncommits < 1) {
        fprintf(stderr, "bench_persist: recovery: bad --pages, --heap-mib or --commits\n");
        return 1;
    }
    struct cconf c = { .name = "recovery", .kind = C_PRIV, .tracker = t };
    fprintf(stderr, "bench_persist: recovery: setting up a %zu MiB heap in %s\n", heap_mib, g_work);
    setup_heap(&c, data_bytes);
    if (!c.active) {
        printf("### Recovery\n\nskipped: tracker %s: %s\n\n", tracker_name(t), mmh_errmsg());
        return 0;
    }
    if (mmh_close(c.h) != 0)
        die("closing the recovery heap");
    c.h = NULL;
    fprintf(stderr, "bench_persist: recovery: %d repetitions of %u commits + crash + open\n",
            reps, ncommits);

    double open_ms[2][64], open_wb[2][64], open_dev[2][64], close_ms[2][64], cms[64];
    size_t nres[2] = { 0, 0 };
    struct rec_files files = { .heap = c.path };
    struct rec_child last = { 0 };
    for (int rep = 0; rep < reps; rep++) {
        int cold = rep % 2, rfd;
        struct rec_args ra = { &c, t, npages, ncommits };
        pid_t pid = fork_with_pipe(&rfd, rec_child, &ra);
        struct rec_child r;
        size_t got = 0, want = sizeof r + g_npages;
        unsigned char *buf = malloc(want);
        ssize_t n;
        while (got < want && (n = read(rfd, buf + got, want - got)) > 0)
            got += (size_t)n;
        close(rfd);
        int st;
        waitpid(pid, &st, 0);
        memcpy(&r, buf, sizeof r);
        if (got != want || !r.ok) {
            fprintf(stderr, "bench_persist: recovery: the child failed: %s (status 0x%x)\n",
                    got >= sizeof r ? r.msg : "no result", st);
            return 2;
        }
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            fprintf(stderr, "bench_persist: recovery: the child did not die by SIGKILL\n");
            return 2;
        }
        memcpy(c.shadow, buf + sizeof r, g_npages);
        free(buf);
        last = r;
        cms[rep] = r.commit_ms;
        files.n = 0;
        heap_files(c.path, note_file, &files);
        if (cold)
            heap_files(c.path, drop_cache, NULL);

        struct io a, b, d;
        mmh_config cfg = { .tracker = t };
        io_now(&a);
        uint64_t t0 = now_ns();
        mmh_heap *h = mmh_open(c.path, &cfg);
        double ms = (double)(now_ns() - t0) / 1e6;
        io_now(&b);
        if (!h)
            die("reopening the heap after the crash");
        io_delta(&a, &b, &d);
        attach_blocks(&c, h);
        size_t bad = count_mismatches(&c);
        if (bad) {
            fprintf(stderr, "bench_persist: recovery: %zu pages differ from the last commit\n",
                    bad);
            return 4;
        }
        t0 = now_ns();
        if (mmh_close(h) != 0)
            die("closing the recovered heap");
        size_t i = nres[cold]++;
        open_ms[cold][i] = ms;
        open_wb[cold][i] = d.wb >= 0 ? d.wb / 1048576.0 : -1;
        open_dev[cold][i] = d.dev >= 0 ? d.dev / 1048576.0 : -1;
        close_ms[cold][i] = (double)(now_ns() - t0) / 1e6;
        if (g_raw)
            fprintf(g_raw, "recovery\t%s\t%d\t%.3f\t%.0f\t%.0f\t%.3f\n", cold ? "cold" : "warm",
                    rep, ms, d.wb, d.dev, close_ms[cold][i]);
    }
    unlink_heap(c.path);

    printf("### Recovery: mmh_open after a crash, %zu MiB heap\n\n", heap_mib);
    printf("%d repetitions: a child process opens the heap (tracker %s), makes %u commits of "
           "%zu scattered pages (median commit %.3f ms; %.1f MiB written by them, lib "
           "bytes_written), stores into %zu more pages without committing and dies by SIGKILL "
           "without mmh_close; then mmh_open (writable) is timed -- the recovery -- with the "
           "page cache as the dead process left it (warm) or after `fdatasync` + "
           "`POSIX_FADV_DONTNEED` of the heap's files (cold); every page held its last "
           "committed byte after each open: OK. Then mmh_close, timed.\n\n",
           reps, tracker_name(t), ncommits, npages, sort_median(cms, (size_t)reps),
           last.lib / 1048576.0, npages);
    printf("files of the heap at the crash:");
    for (int i = 0; i < files.n; i++)
        printf(" `%s` %.1f MiB (allocated %.1f MiB);", files.f[i].suffix,
               files.f[i].size / 1048576.0, files.f[i].alloc / 1048576.0);
    printf("\n\n| page cache | runs | open ms (median) | min-max ms | write_bytes MiB in the open "
           "| device MiB in the open | close ms |\n|---|--:|--:|--:|--:|--:|--:|\n");
    for (int cold = 0; cold < 2; cold++) {
        size_t n = nres[cold];
        if (!n)
            continue;
        double lo, hi;
        char b1[32], b2[32];
        minmax(open_ms[cold], n, &lo, &hi);
        printf("| %s | %zu | %.2f | %.2f-%.2f | %s | %s | %.1f |\n", cold ? "cold" : "warm", n,
               median_of(open_ms[cold], n), lo, hi, fmt2(median_of(open_wb[cold], n), b1, sizeof b1),
               fmt2(median_of(open_dev[cold], n), b2, sizeof b2), median_of(close_ms[cold], n));
    }
    printf("\n");
    return 0;
}

/* ---- first write ------------------------------------------------------- */

struct fw_result {
    int ok;
    double cold, warm_seq, warm_rand; /* ns per page */
    char msg[200];
};

/* Commit, and check the commit wrote at least the n pages just stored to;
 * -1 with the reason in r->msg otherwise. */
static int commit_wrote_pages(mmh_heap *h, size_t n, const char *after, struct fw_result *r)
{
    struct mmh_stats st;
    mmh_stats(h, &st);
    uint64_t before = st.bytes_written;
    if (mmh_commit(h) != 0) {
        snprintf(r->msg, sizeof r->msg, "commit after %s: %s", after, mmh_errmsg());
        return -1;
    }
    mmh_stats(h, &st);
    if (st.bytes_written - before < n * PAGE) {
        snprintf(r->msg, sizeof r->msg, "commit after %s wrote %llu bytes < %zu pages", after,
                 (unsigned long long)(st.bytes_written - before), n);
        return -1;
    }
    return 0;
}

struct fw_args {
    const char *path;
    mmh_tracker t;
    size_t n;
    const uint32_t *perm;
};

static void fw_child(void *arg, int wfd)
{
    struct fw_args *fa = arg;
    const char *path = fa->path;
    mmh_tracker t = fa->t;
    size_t n = fa->n;
    const uint32_t *perm = fa->perm;
    struct fw_result r = { 0 };
    mmh_config cfg = { .tracker = t };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h) {
        snprintf(r.msg, sizeof r.msg, "%s", mmh_errmsg());
        goto out;
    }
    char *p = mmh_root(h);
    p = (char *)(((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    uint64_t t0;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + i * PAGE + 64) = 1;
    r.cold = (double)(now_ns() - t0) / (double)n;

    if (commit_wrote_pages(h, n, "cold", &r) != 0)
        goto out;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + i * PAGE + 64) = 2;
    r.warm_seq = (double)(now_ns() - t0) / (double)n;

    if (commit_wrote_pages(h, n, "warm-seq", &r) != 0)
        goto out;

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        *(volatile char *)(p + (size_t)perm[i] * PAGE + 64) = 3;
    r.warm_rand = (double)(now_ns() - t0) / (double)n;
    r.ok = 1;
out:
    if (write(wfd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(3);
    _exit(0); /* without mmh_close: the last writes need not be committed */
}

static int bench_firstwrite(const char *trackers, size_t n, int rounds)
{
    char path[4200];
    work_path(path, sizeof path, "firstwrite.heap");
    unlink_heap(path);
    mmh_config cfg = { .flags = MMH_CREATE };
    mmh_heap *h = mmh_open(path, &cfg);
    if (!h)
        die("creating the first-write heap");
    char *p = mmh_alloc(h, (n + 1) * PAGE);
    if (!p)
        die("allocating the first-write block");
    memset(p, 0x5a, (n + 1) * PAGE);
    if (mmh_set_root(h, p) != 0 || mmh_close(h) != 0)
        die("committing the first-write heap");

    uint32_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(wyrand() % (i + 1));
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }

    mmh_tracker tr[4];
    int ntr = 0;
    char tl[256];
    snprintf(tl, sizeof tl, "%s", trackers);
    for (char *save, *tok = strtok_r(tl, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (parse_tracker(tok, &tr[ntr]) != 0 || tr[ntr] == MMH_TRACK_AUTO || ++ntr == 4) {
            fprintf(stderr, "bench_persist: bad tracker list %s\n", trackers);
            return 1;
        }
    int none_i = -1;
    for (int i = 0; i < ntr; i++)
        if (tr[i] == MMH_TRACK_NONE)
            none_i = i;

    struct fw_result res[4][rounds];
    fprintf(stderr, "bench_persist: firstwrite: %zu pages, %d rounds, trackers %s\n", n, rounds,
            trackers);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < ntr; k++) {
            int i = (k + r) % ntr, rfd;
            struct fw_args fa = { path, tr[i], n, perm };
            pid_t pid = fork_with_pipe(&rfd, fw_child, &fa);
            struct fw_result *x = &res[i][r];
            memset(x, 0, sizeof *x);
            ssize_t got = read(rfd, x, sizeof *x);
            close(rfd);
            int status;
            waitpid(pid, &status, 0);
            if (got != (ssize_t)sizeof *x) {
                snprintf(x->msg, sizeof x->msg, "child died (status 0x%x)", status);
                x->ok = 0;
            }
            if (!x->ok && r == 0)
                fprintf(stderr, "bench_persist: firstwrite %s: %s\n", tracker_name(tr[i]),
                        x->msg);
            if (g_raw)
                fprintf(g_raw, "firstwrite\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%s\n",
                        tracker_name(tr[i]), r, x->ok, x->cold, x->warm_seq, x->warm_rand,
                        x->msg);
        }
    unlink_heap(path);

    printf("### First write per page after a commit: %zu pages, one byte each\n\n", n);
    printf("ns per page, median of %d rounds (one child process per tracker and round, "
           "order rotated)\n\n", rounds);
    printf("| tracker | cold (COW fault + tracking) | warm, ascending | warm, random order | "
           "cold - cold(none) |\n|---|--:|--:|--:|--:|\n");
    double v[3][64], d[64];
    double warm_med[4] = { -1, -1, -1, -1 }, cold_med[4] = { -1, -1, -1, -1 };
    for (int i = 0; i < ntr; i++) {
        size_t m = 0, md = 0;
        for (int r = 0; r < rounds && r < 64; r++)
            if (res[i][r].ok) {
                v[0][m] = res[i][r].cold;
                v[1][m] = res[i][r].warm_seq;
                v[2][m] = res[i][r].warm_rand;
                m++;
                if (none_i >= 0 && res[none_i][r].ok)
                    d[md++] = res[i][r].cold - res[none_i][r].cold;
            }
        if (m == 0) {
            printf("| %s | skipped: %s | | | |\n", tracker_name(tr[i]), res[i][0].msg);
            continue;
        }
        double c = sort_median(v[0], m), ws = sort_median(v[1], m), wr = sort_median(v[2], m);
        warm_med[i] = ws > wr ? ws : wr;
        cold_med[i] = c;
        printf("| %s | %.0f | %.0f | %.0f | ", tracker_name(tr[i]), c, ws, wr);
        if (md)
            printf("%+.0f |\n", sort_median(d, md));
        else
            printf(" |\n");
    }
    printf("\n**first-write targets**, after a commit (warm: the worse of the two warm "
           "columns): ");
    for (int i = 0; i < ntr; i++) {
        if (tr[i] != MMH_TRACK_UFFD && tr[i] != MMH_TRACK_MPROTECT)
            continue;
        double lim = tr[i] == MMH_TRACK_UFFD ? 1.5 : 6.0;
        if (warm_med[i] < 0)
            printf("%s < %.1f us: not measured; ", tracker_name(tr[i]), lim);
        else
            printf("%s < %.1f us: %.2f us => %s; ", tracker_name(tr[i]), lim, warm_med[i] / 1000,
                   warm_med[i] / 1000 < lim ? "MET" : "NOT MET");
    }
    printf("\nfirst write since the open (cold, COW fault included): ");
    for (int i = 0; i < ntr; i++) {
        if (tr[i] != MMH_TRACK_UFFD && tr[i] != MMH_TRACK_MPROTECT)
            continue;
        double lim = tr[i] == MMH_TRACK_UFFD ? 1.5 : 6.0;
        if (cold_med[i] >= 0)
            printf("%s < %.1f us: %.2f us => %s; ", tracker_name(tr[i]), lim, cold_med[i] / 1000,
                   cold_med[i] / 1000 < lim ? "MET" : "NOT MET");
    }
    if (none_i >= 0 && cold_med[none_i] >= 0)
        printf("(the COW fault alone, tracker none: %.2f us)", cold_med[none_i] / 1000);
    printf("\n\n");
    return 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_persist small|commit|sustained|recovery|firstwrite|probe [options]\n"
            "  --dir=DIR          where the files go (default $TMPDIR or /tmp)\n"
            "  --raw=FILE         append every measurement to FILE\n"
            "  --heap-mib=N       data per heap (small: 64; commit, sustained, recovery: 1024)\n"
            "  --pages=N[,N...]   dirty pages per commit (small: 1,16,256; others: 200;\n"
            "                     sustained and recovery take one count)\n"
            " small, commit:\n"
            "  --trackers=A,B     private trackers (default uffd,mprotect,none)\n"
            "  --reps=N           repetitions (default 30)\n"
            "  --none-reps=N      repetitions of private-none (default 3)\n"
            "  --no-shared        leave the shared heap out\n"
            "  --msync, --no-msync  whole-map msync row (default: commit yes, small no)\n"
            " sustained:\n"
            "  --tracker=T        the heap's tracker (default uffd)\n"
            "  --seconds=S        per measurement (default 30)\n"
            "  --rounds=N         rounds, heap and floor each (default 1)\n"
            " recovery:\n"
            "  --tracker=T        the heap's tracker (default uffd)\n"
            "  --commits=N        commits before the crash (default 200)\n"
            "  --reps=N           crashes and opens, cold page cache every other (default 6)\n"
            " firstwrite:\n"
            "  --trackers=A,B     trackers (default uffd,mprotect,none)\n"
            "  --fw-pages=N       pages (default 65536)\n"
            "  --rounds=N         rounds (default 5)\n"
            " probe:\n"
            "  --tracker=T        the tracker to try\n");
}

/* "1,16,256" into ks; the count, or -1 */
static int parse_pages(const char *s, size_t *ks)
{
    int n = 0;
    char tl[256];
    snprintf(tl, sizeof tl, "%s", s);
    for (char *save, *tok = strtok_r(tl, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAXK || (ks[n] = strtoull(tok, NULL, 10)) < 1)
            return -1;
        n++;
    }
    return n ? n : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "-h") == 0 || strcmp(mode, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    int small = strcmp(mode, "small") == 0;
    const char *trackers = "uffd,mprotect,none", *raw = NULL, *one = NULL, *pages = NULL;
    size_t heap_mib = 0, fw_pages = 65536;
    int reps = -1, none_reps = 3, shared = 1, rounds = -1, msync_row = -1;
    unsigned commits = 200;
    double seconds = 30;
    g_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = strchr(a, '=');
        v = v ? v + 1 : "";
#define OPT(name) (strncmp(a, name "=", sizeof name) == 0)
        if (OPT("--dir"))
            g_dir = v;
        else if (OPT("--trackers"))
            trackers = v;
        else if (OPT("--tracker"))
            one = v;
        else if (OPT("--raw"))
            raw = v;
        else if (OPT("--heap-mib"))
            heap_mib = strtoull(v, NULL, 10);
        else if (OPT("--pages"))
            pages = v;
        else if (OPT("--reps"))
            reps = atoi(v);
        else if (OPT("--none-reps"))
            none_reps = atoi(v);
        else if (strcmp(a, "--no-shared") == 0)
            shared = 0;
        else if (strcmp(a, "--msync") == 0)
            msync_row = 1;
        else if (strcmp(a, "--no-msync") == 0)
            msync_row = 0;
        else if (OPT("--fw-pages"))
            fw_pages = strtoull(v, NULL, 10);
        else if (OPT("--rounds"))
            rounds = atoi(v);
        else if (OPT("--seconds"))
            seconds = atof(v);
        else if (OPT("--commits"))
            commits = (unsigned)strtoul(v, NULL, 10);
        else
            return help_or_unknown(a, usage, "bench_persist: unknown option %s\n");
#undef OPT
    }
    struct copts co = { .trackers = trackers, .none_reps = none_reps, .shared = shared,
                        .small = small };
    co.nk = parse_pages(pages ? pages : small ? "1,16,256" : "200", co.ks);
    if (!heap_mib)
        heap_mib = small ? 64 : 1024;
    if (reps < 0)
        reps = strcmp(mode, "recovery") == 0 ? 6 : 30;
    if (rounds < 0)
        rounds = strcmp(mode, "sustained") == 0 ? 1 : 5;
    co.heap_mib = heap_mib;
    co.reps = reps;
    co.msync = msync_row >= 0 ? msync_row : !small;
    if (co.nk < 0 || reps < 1 || reps > 10000 || rounds < 1 || rounds > 64 || heap_mib < 2 ||
        fw_pages < 1 || seconds <= 0 || commits < 1 ||
        (strcmp(mode, "recovery") == 0 && reps > 64)) {
        fprintf(stderr, "bench_persist: option out of range\n");
        return 1;
    }
    mmh_tracker t1 = MMH_TRACK_UFFD;
    if (one && parse_tracker(one, &t1) != 0) {
        fprintf(stderr, "bench_persist: unknown tracker %s\n", one);
        return 1;
    }
    snprintf(g_work, sizeof g_work, "%s/mmh-persist.XXXXXX", g_dir);
    if (!mkdtemp(g_work))
        die_errno(g_work);
    if (raw && !(g_raw = fopen(raw, "a")))
        die_errno(raw);
    devstat_init();
    int rc;
    if (small || strcmp(mode, "commit") == 0)
        rc = bench_commit(&co);
    else if (strcmp(mode, "sustained") == 0)
        rc = bench_sustained(t1, heap_mib, co.ks[0], seconds, rounds);
    else if (strcmp(mode, "recovery") == 0)
        rc = bench_recovery(t1, heap_mib, co.ks[0], commits, reps);
    else if (strcmp(mode, "firstwrite") == 0)
        rc = bench_firstwrite(trackers, fw_pages, rounds);
    else if (strcmp(mode, "probe") == 0) {
        if (!one) {
            fprintf(stderr, "bench_persist: probe needs --tracker=uffd|mprotect|none\n");
            rc = 1;
        } else
            rc = probe(t1);
    } else {
        usage(stderr);
        rc = 1;
    }
    if (g_raw)
        fclose(g_raw);
    rmdir(g_work);
    return rc;
}
